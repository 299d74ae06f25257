"""`aerosync doctor [SCENARIO]`: can this host run (and profile) a scenario, before it runs?
(`aerosync doctor --fidelity` is the other question -- does the model reproduce this
host's kernel sizing? -- answered by aerosync/fidelity.py.)

Why: the ways a testbed run goes wrong on a new host are environmental and found late —
an arena bigger than /dev/shm dies of SIGBUS or is refused, a cpuset or CPU quota
smaller than the scenario turns lock waits into throttling, a container without
CAP_SYS_PTRACE makes py-spy useless, a host without NUMA sysfs silently has one node.
Each check here names what it found, and when it is not OK, the fix.

Levels: OK; WARN (the run works but is not what you may expect: oversubscribed CPUs,
no profiling, one NUMA node, stale segments); FAIL (the run cannot work: no room in
/dev/shm, an impossible machine, a missing package).  Exit status 0 when nothing
FAILs, else 1; a scenario that does not load is a usage error (exit 2) as elsewhere.

The arena size is computed exactly as the coordinator lays it out
(`layout.base_sections` + the workload's sections, `layout.build_layout`), plus the
margin `Arena.create` keeps free in /dev/shm.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aerosync.arch import cpu as arch_cpu
from aerosync.arch import topology as topo
from aerosync.arena import layout as L
from aerosync.arena import segment
from aerosync.errors import UsageError

__all__ = ["Check", "OK", "WARN", "FAIL", "run_checks", "render", "add_doctor_parser", "cmd_doctor",
           "arena_bytes"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: what was checked, the verdict, what was found, the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _mib(n: int) -> str:
    return f"{n / _MiB:,.1f} MiB"


# ----------------------------------------------------------------------------- checks
def check_python() -> Check:
    v = sys.version_info
    text = f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):
        return Check("python", FAIL, text, "install Python 3.11 or newer and recreate the venv (scripts/run does)")
    return Check("python", OK, text)


def check_packages() -> Check:
    missing = []
    for mod in ("numpy", "posix_ipc", "atomicshm", "psutil", "setproctitle"):
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        return Check("packages", FAIL, "missing: " + ", ".join(missing),
                     "pip install -e . (or run scripts/run, which sets up .venv)")
    return Check("packages", OK, "numpy, posix_ipc, atomicshm, psutil, setproctitle importable")


def arena_bytes(scn: Any, sim: Any) -> int:
    """Bytes of the arena the coordinator would create for `scn` on machine `sim`
    (the coordinator's own plan: base, mm and workload sections)."""
    from aerosync.coordinator import plan_arena

    return L.build_layout(plan_arena(scn, sim)[1]).total


def check_shm(need: int | None) -> Check:
    """/dev/shm room against the arena (or just its free space without a scenario)."""
    try:
        free = segment.shm_free_bytes()
    except OSError as e:
        return Check("/dev/shm", FAIL, f"cannot statvfs {segment.SHM_DIR}: {e}",
                     "mount a tmpfs on /dev/shm (docker: it is there by default; --shm-size sets its size)")
    if need is None:
        return Check("/dev/shm", OK, f"{_mib(free)} free")
    want = need + segment.SHM_MARGIN
    found = f"arena {_mib(need)} (+ {_mib(segment.SHM_MARGIN)} margin) against {_mib(free)} free"
    fix = (f"lower [machine] memory, or give {segment.SHM_DIR} more room: docker run --shm-size=SIZE, "
           f"a Kubernetes emptyDir with medium: Memory, or mount -o remount,size=SIZE {segment.SHM_DIR}")
    if want > free:
        return Check("/dev/shm", FAIL, found, fix)
    if want > 0.8 * free:
        return Check("/dev/shm", WARN, found + " (over 80 %: other runs or tests may not fit beside it)", fix)
    return Check("/dev/shm", OK, found)


def check_cpus(host: topo.HostTopology, sim: topo.SimTopology | None) -> Check:
    allowed = arch_cpu.format_cpulist(host.allowed_cpus)
    quota = host.quota
    qtext = f", cgroup quota {quota:g} CPUs" if quota is not None else ""
    base = f"{len(host.allowed_cpus)} allowed host CPUs ({allowed}){qtext}"
    if sim is None:
        return Check("cpus", OK, base)
    n = sim.nr_cpus
    text = f"{n} simulated CPUs on {base}"
    if sim.oversubscribed:
        return Check("cpus", WARN, text + ": oversubscribed (workers share host CPUs; lock waits grow)",
                     f"use at most {len(host.allowed_cpus)} CPUs ([machine] cpus or --set machine.cpus=N), "
                     "or widen the affinity (taskset / docker --cpuset-cpus)")
    if quota is not None and n > quota:
        return Check("cpus", WARN, text + f": the quota ({quota:g} CPUs) throttles {n} spinning workers",
                     f"use at most {int(quota)} CPUs, or raise the quota (docker --cpus, cgroup cpu.max)")
    return Check("cpus", OK, text)


def check_ptrace() -> Check:
    from aerosync.pyspy import ptrace_problem, ptrace_scope, pyspy_path

    problem = ptrace_problem()
    if problem is not None:
        return Check("py-spy", WARN, f"profiling unavailable: {problem}",
                     "runs still work; `aerosync profile` falls back to an unprofiled run. "
                     "Grant ptrace: run as root/CAP_SYS_PTRACE, docker --cap-add SYS_PTRACE, "
                     "or sysctl kernel.yama.ptrace_scope=1")
    scope = ptrace_scope()
    stext = "no Yama" if scope is None else f"kernel.yama.ptrace_scope = {scope}"
    return Check("py-spy", OK, f"{pyspy_path()} can trace runs it launches ({stext})")


def check_numa(host: topo.HostTopology) -> Check:
    nodes = [n for n in host.nodes if n.cpus]
    text = f"{len(host.nodes)} node(s) visible, {len(nodes)} with allowed CPUs"
    if not host.numa_sysfs:
        return Check("numa", WARN, "no /sys/devices/system/node: one node assumed",
                     "for placement experiments use [machine] topology = \"fake:N\" or a topology TOML file")
    if len(host.nodes) == 1:
        return Check("numa", OK, text + " (for placement experiments: topology = \"fake:N\")")
    return Check("numa", OK, text)


def check_stale() -> Check:
    from aerosync.arena.cleanup import find_project_objects

    stale = [n for n, pid in find_project_objects() if not arch_cpu.proc_alive(pid)]
    if stale:
        shown = ", ".join(stale[:4]) + (", ..." if len(stale) > 4 else "")
        return Check("stale segments", WARN, f"{len(stale)} AeroSync object(s) whose creator is gone: {shown}",
                     "aerosync cleanup (removes only objects no live process maps)")
    return Check("stale segments", OK, "none")


# ----------------------------------------------------------------------------- driver
def _guard(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except UsageError as e:
        return Check(name, FAIL, str(e), "change the scenario so the machine fits this host")
    except Exception as e:   # a check must report, not crash the doctor
        return Check(name, WARN, f"check failed: {e!r}")


def run_checks(scenario: str | None = None, overrides: list[str] | None = None) -> list[Check]:
    """Every check, in report order; loads `scenario` (UsageError if it does not load)."""
    scn = None
    if scenario is not None:
        from aerosync.scenario import load_scenario
        from workers.workloads import registry

        scn = load_scenario(scenario, registry(), overrides or [])
    host = topo.read_host()
    sim = None
    checks = [check_python(), _guard("packages", check_packages)]
    if scn is not None:
        from aerosync.coordinator import build_machine

        try:
            sim = build_machine(scn, host)
        except UsageError as e:
            checks.append(Check("machine", FAIL, str(e), "change [machine] cpus/topology to fit this host"))
    need = arena_bytes(scn, sim) if scn is not None and sim is not None else None
    checks += [
        _guard("/dev/shm", lambda: check_shm(need)),
        _guard("cpus", lambda: check_cpus(host, sim)),
        _guard("py-spy", check_ptrace),
        _guard("numa", lambda: check_numa(host)),
        _guard("stale segments", check_stale),
    ]
    return checks


def render(checks: list[Check], scenario: str | None = None) -> str:
    lines = [f"aerosync doctor: {scenario or 'this host'}"]
    for c in checks:
        lines.append(f"  {c.status:<4}  {c.name:<15} {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"  {'':<4}  {'':<15} fix: {c.fix}")
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    verdict = "cannot run here" if fails else "ready to run" + (" (see warnings)" if warns else "")
    lines.append(f"  => {verdict}: {fails} FAIL, {warns} WARN")
    return "\n".join(lines) + "\n"


def cmd_doctor(args: argparse.Namespace) -> int:
    """`aerosync doctor [SCENARIO] [--set k=v ...]`: 0 if nothing FAILs, else 1.
    `--fidelity [--root DIR]`: the host self-check of aerosync/fidelity.py instead."""
    if getattr(args, "fidelity", False):
        from aerosync.fidelity import cmd_fidelity

        return cmd_fidelity(args)
    if getattr(args, "fault_points", False):
        sys.stdout.write(render_fault_points(getattr(args, "json", False)))
        return 0
    checks = run_checks(args.scenario, list(getattr(args, "set", None) or []))
    sys.stdout.write(render(checks, args.scenario))
    return 1 if any(c.status == FAIL for c in checks) else 0


def render_fault_points(as_json: bool = False) -> str:
    """Every named fault point ([fault] kill_at; mm/intent.py POINTS), grouped by the
    operation it interrupts, with what the state is when a CPU dies there."""
    from aerosync.mm import intent as I

    if as_json:
        import json

        return json.dumps([{"point": n, "id": i, "state": doc} for i, (n, doc) in enumerate(I.POINTS)], indent=1) + "\n"
    lines = [f"Fault points ({len(I.POINTS)}): [fault] kill_at = \"<point>\" kills a CPU there; "
             "kill_random picks among those a run passes", ""]
    width = max(len(n) for n, _ in I.POINTS)
    group = ""
    for name, doc in I.POINTS:
        g = name.split(":")[0]
        if g != group:
            if group:
                lines.append("")
            group = g
        lines.append(f"  {name:<{width}}  {doc}")
    return "\n".join(lines) + "\n"


def add_doctor_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `doctor` on an argparse subparsers object."""
    p = sub.add_parser("doctor", help="check that this host can run and profile a scenario")
    p.add_argument("scenario", nargs="?", help="scenario TOML to check against (default: host checks only)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a scenario key")
    p.add_argument("--fidelity", action="store_true",
                   help="self-check: AeroSync's formulas fed with this host's zone sizes, CPUs and settings "
                        "against the host kernel's watermarks, lowmem_reserve, min_free_kbytes, PCP sizes and "
                        "kmalloc geometry (exit 1 on a mismatch the model should not have)")
    p.add_argument("--root", default="/", help="with --fidelity: directory holding the host's proc/ and sys/ "
                                               "(default: %(default)s; a saved tree works too)")
    p.add_argument("--json", action="store_true", help="with --fidelity or --fault-points: the rows as JSON")
    p.add_argument("--fault-points", action="store_true",
                   help="list the named fault points [fault] kill_at accepts (every step of every logged "
                        "mm operation) and the state each leaves behind")
    p.set_defaults(func=cmd_doctor)
    return p
