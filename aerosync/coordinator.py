"""The coordinator: create the arena, start pinned workers, sample, stop, clean up.

Data flow::

    scenario ──► host + simulated topology ──► config ──► Arena.create ──► workload.setup
        │                                                            │
        │        spawn one process per simulated CPU (workers/cpu.py)◄┘
        │            each: pin, attach, READY ──► nr_ready == n ──► run_state = GO
        ▼
    sampling loop: wait(worker sentinels, sample_interval)
        • a sentinel fires before STOP  → WorkerDied(cpu, pid, cause, traceback)
        • every tick: per-CPU ops + counters ──► samples (throughput over time)
        • [[events]] due and `aerosync hotplug` requests → a CPU offline / online
          (aerosync/hotplug.py: its worker leaves, mm/cpuhp.py; or a new worker joins)
        • duration over / every CPU DONE → run_state = STOP
    stop: join (grace) → terminate → kill; lock_stat + workload report; close + unlink

Ownership: the coordinator is the only writer of the header's run control words
(run_state: INIT -> GO -> [PAUSE <-> GO] -> STOP/ABORT, pause_seq, start/stop times),
stored with SEQ_CST atomics; workers only read them (and bump nr_ready once each).  It
only reads the per-CPU areas, which their owners write.  It takes no arena lock.  The
live invariant check runs while every RUNNING worker has acknowledged the pause at a
batch boundary (no operation in flight), so the checkers see a quiescent machine.

A CPU killed during the run ([run] on_cpu_death, aerosync/crash.py, mm/recovery.py)::

    sentinel fires (exit by a signal) ─► takeover: its locks taken over and released,
        its mmap_lock holds kept (live CPUs still run) ─► park every live CPU (one
        queued on a kept mmap_lock parks in its wait; if one cannot, the kept holds
        are released and it parks anew) ─► recover: its intent records rolled
        forward/back, its held items given back (workload.recover), CPU taken
        offline (mm/cpuhp.py), state scans; kept holds released; checkers ─►
        "continue": a new worker for
        the CPU (fork: ~50 ms, not spawn's ~1 s), GO │ "stop": the run ends as at its
        deadline │ "fail" (default): WorkerDied, as before
    A second death while parking is recovered in the same round.  `[fault]` kills are
    armed by crash.FaultDriver from the sampling loop.

Only this module and cli.py import `workers`.  The coordinator never pins itself (a
pinned parent would hand its mask to the workers: pitfalls 4.3) and starts workers from
its main thread (PDEATHSIG follows the parent thread).  A Ctrl-C or SIGTERM after the
start barrier ends the run as its deadline would (workers finish their batch, the
closing sample, views, report and check are taken) and raises RunInterrupted carrying
that result, marked interrupted.  Whatever happens — an error, Ctrl-C (SIGINT), SIGTERM,
a second signal while stopping — the `finally` stops every worker and unlinks the segment;
after a SIGKILL of the coordinator the workers die with it (PDEATHSIG) and
`cleanup_stale()` (run at every start and by `aerosync cleanup`) removes the segment.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any

from aerosync import procfs
from aerosync.arch import topology as topo
from aerosync.arena import layout as L
from aerosync.arena.cleanup import cleanup_stale, remove_run_files
from aerosync.arena.segment import SHM_DIR, Arena, shm_free_bytes
from aerosync.crash import CrashLog, FaultDriver, check_fault, check_recovery
from aerosync.errors import (
    AeroSyncError,
    InvariantViolation,
    ScenarioError,
    ShmSpaceError,
    SoftLockup,
    Terminated,
    WorkerDied,
)
from aerosync.hotplug import Hotplug, check_events
from aerosync.mm import recovery
from aerosync.mm.boot import boot, machine_sections
from aerosync.mm.cpuhp import cpuhp_check, cpuhp_offline_mm, hp_state
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.check import check as mm_check
from aerosync.mm.reclaim.check import reclaim_report
from aerosync.mm.san.report import bug_counts
from aerosync.mm.slab.slab_check import slab_check
from aerosync.mm.slab.slab_common import slab_config_problem
from aerosync.mm.vm.check import vm_check
from aerosync.params import CPU_AREA_SIZE, ERRTEXT_SIZE, MAX_CPUS, NR_LAT_BUCKETS, PAGE_SIZE
from aerosync.pyspy import dump_stack, stopped_note
from aerosync.scenario import Scenario, scenario_to_dict
from aerosync.sync import lockstat
from aerosync.sync.spinlock import locks_held_by

__all__ = ["RunResult", "RunInterrupted", "run", "build_machine", "plan_arena", "environment", "Terminated",
           "READY_TIMEOUT_S",
           "STOP_GRACE_S"]

RESULT_SCHEMA_VERSION = 1
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
# A dead CPU's mmap_lock is kept over its recovery; a live CPU queued on it parks inside
# the wait.  One that cannot (it holds something) shows as a pause this slow: then the
# lock is released early (mm/recovery.py).  Generous against an oversubscribed host.
KEPT_STALL_S = 0.5


@dataclass
class RunResult:
    """What a run produced; `to_dict()` is the JSON of `aerosync run --json`."""

    scenario: dict[str, Any]
    environment: dict[str, Any]
    sim: dict[str, Any]
    elapsed_s: float
    measured_s: float
    cpus: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    lock_stat: list[dict[str, Any]]
    lock_stat_text: str
    workload: dict[str, Any]
    ready_s: float
    notes: list[str] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    views_before: dict[str, Any] = field(default_factory=dict)
    views_after: dict[str, Any] = field(default_factory=dict)
    mm_check: dict[str, Any] = field(default_factory=dict)
    numa: dict[str, Any] = field(default_factory=dict)
    mm: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False       # stopped by Ctrl-C / SIGTERM: the figures cover the run up to then
    crash: dict[str, Any] = field(default_factory=dict)     # CPU deaths and recoveries (on_cpu_death)
    hotplug: list[dict[str, Any]] = field(default_factory=list)   # CPU offline/online events (hotplug.py)

    @property
    def total_ops(self) -> int:
        return sum(c["ops"] for c in self.cpus)

    @property
    def ops_per_s(self) -> float:
        return sum(c["ops_per_s"] for c in self.cpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "scenario": self.scenario, "environment": self.environment, "simulated_topology": self.sim,
            "elapsed_s": self.elapsed_s, "measured_s": self.measured_s, "ready_s": self.ready_s,
            "total_ops": self.total_ops, "ops_per_s": self.ops_per_s, "cpus": self.cpus,
            "samples": self.samples, "lock_stat": self.lock_stat, "workload": self.workload,
            "notes": self.notes, "latency": self.latency,
            "pid_map": {str(c["pid"]): c["cpu"] for c in self.cpus},
            "views_before": self.views_before, "views_after": self.views_after,
            "mm_check": self.mm_check, "numa": self.numa, "mm": self.mm, "interrupted": self.interrupted,
            **({"crash": self.crash} if self.crash else {}),
            "hotplug": self.hotplug,
        }


def _git_revision() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        rev = out.stdout.strip()
        if rev:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "-uno"],
                                   capture_output=True, text=True, timeout=5, check=False).stdout.strip()
            return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment(host: topo.HostTopology) -> dict[str, Any]:
    """The facts a result needs to be explained later (DESIGN.md: record everything)."""
    versions = {}
    for pkg in ("aerosync", "numpy", "psutil", "posix-ipc", "atomicshm", "setproctitle"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    st = os.statvfs(SHM_DIR)
    return {
        "cpu_model": host.cpu_model,
        "allowed_cpus": list(host.allowed_cpus),
        "cpu_quota": host.quota,
        "host_topology": host.to_dict(),
        "dev_shm_bytes": st.f_blocks * st.f_frsize,
        "dev_shm_free_bytes": shm_free_bytes(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_revision": _git_revision(),
        "hostname": platform.node(),
    }


def build_machine(scn: Scenario, host: topo.HostTopology) -> topo.SimTopology:
    """Resolve [machine] cpus/topology into the simulated topology.

    What the host refuses is a ScenarioError naming the key and where it came from (the
    scenario file or the command line): a CPU outside this process's affinity mask
    (machine.cpus), a topology the host cannot simulate (machine.topology).
    """
    from aerosync.errors import TopologyError

    m = scn.machine
    nr_cpus: int | None = None
    cpu_list: tuple[int, ...] | None = None
    if m.cpus == "all":
        nr_cpus = len(host.allowed_cpus)
    elif isinstance(m.cpus, int):
        nr_cpus = m.cpus
    else:
        cpu_list = tuple(m.cpus)
        outside = [c for c in cpu_list if c not in host.allowed_cpus]
        if outside:
            allowed = topo.format_cpulist(host.allowed_cpus)
            raise ScenarioError(scn.blame("machine.cpus"), "machine.cpus", list(cpu_list),
                                f"host CPU ids this process may use ({allowed}, its taskset/cpuset affinity); "
                                f"CPU {topo.format_cpulist(outside)} is not allowed")
    if nr_cpus is not None and nr_cpus > MAX_CPUS:
        raise ScenarioError(scn.blame("machine.cpus"), "machine.cpus", nr_cpus, f"at most {MAX_CPUS} simulated CPUs")
    base = str(Path(scn.file).parent) if scn.file else "."
    try:
        return topo.build_sim(m.topology, host, nr_cpus=nr_cpus, cpu_list=cpu_list, base_dir=base)
    except TopologyError as e:
        raise ScenarioError(scn.blame("machine.topology", "machine.cpus"), "machine.topology", m.topology,
                            f"a topology this host can simulate with machine.cpus = "
                            f"{list(m.cpus) if isinstance(m.cpus, tuple) else m.cpus!r}: {e}") from None


def _check_policies(scn: Scenario, sim: topo.SimTopology) -> None:
    """[numa] policies parse for this machine's nodes (before anything is created)."""
    from aerosync.mm.numa.mempolicy import PolicyError, policy_for_cpu

    for cpu, _ in scn.numa.cpu_policy:
        if cpu >= sim.nr_cpus:
            key = f"numa.cpu_policy.{cpu}"
            raise ScenarioError(scn.blame(key, "machine.cpus"), key, cpu, f"a simulated CPU id 0..{sim.nr_cpus - 1}")
    for cpu in range(sim.nr_cpus):
        try:
            policy_for_cpu(scn.numa.policy, scn.numa.cpu_policy, cpu, sim.nr_nodes, scn.numa.weights)
        except PolicyError as e:
            raise ScenarioError(scn.blame(e.key, "machine.topology"), e.key, e.value, e.allowed) from None


def _check_machine_fit(scn: Scenario, config: dict[str, Any]) -> None:
    """What each section allows alone but not together with machine.max_page_order: SLUB's
    largest caches, and a workload's `orders` parameter (buddy orders it allocates)."""
    mpo = scn.machine.max_page_order
    slab_problem = slab_config_problem(config)
    if slab_problem:
        raise ScenarioError(scn.blame("machine.max_page_order", "slab.debug"), "machine.max_page_order", mpo,
                            slab_problem)
    orders = getattr(scn.workload, "orders", None)
    if orders and max(orders) > mpo:
        raise ScenarioError(scn.blame("workload.orders", "machine.max_page_order"), "workload.orders", list(orders),
                            f"orders 0..{mpo}: the machine's MAX_PAGE_ORDER (machine.max_page_order = {mpo})")


def _shm_error(scn: Scenario, e: ShmSpaceError) -> ScenarioError:
    """/dev/shm too small for this machine.memory: the key, where it was set, and the way out."""
    mem = scn.machine.memory
    shown = f"{mem >> 30}G" if mem % (1 << 30) == 0 else f"{mem >> 20}M" if mem % (1 << 20) == 0 else mem
    return ScenarioError(scn.blame("machine.memory"), "machine.memory", shown,
                         f"a memory that fits in {e.path}: {e}")


def plan_arena(scn: Scenario, sim: topo.SimTopology) -> tuple[dict[str, Any], list[L.SectionSpec]]:
    """The arena a run of `scn` on `sim` creates: its configuration and its sections."""
    from workers.workloads import WORKLOADS

    config = _config(scn, sim)
    n = sim.nr_cpus
    specs = [*machine_sections(config), *WORKLOADS[scn.run.workload].sections(scn.workload, n)]
    return config, specs


def _config(scn: Scenario, sim: topo.SimTopology) -> dict[str, Any]:
    m = scn.machine
    sim_d, reclaim = sim.to_dict(), scn.reclaim.as_dict()
    if scn.reclaim.present and (reclaim.get("kswapd", True) or reclaim.get("flusher", True)):
        from aerosync.mm.reclaim.kthread import kthread_machine  # kswapd / flusher CPUs appended

        sim_d, reclaim = kthread_machine(sim_d, reclaim)
    return {
        "nr_cpus": sim_d["nr_cpus"],
        "nr_pages": m.memory // PAGE_SIZE,
        "memory": m.memory,
        "sim": sim_d,
        "reclaim": reclaim,
        "lock_stat": m.lock_stat,
        "lock_hold_sample": m.lock_hold_sample,
        "lockdep": m.lockdep,
        "locks": scn.locks.to_config(),      # sync/spinlock.py: spinlock kind per lock class
        # crash tolerance (mm/intent.py, sync/robust.py): robust lock waiting, fault points
        **({"on_cpu_death": scn.run.on_cpu_death} if scn.run.on_cpu_death != "fail" else {}),
        **({"fault": scn.fault.to_config()} if scn.fault.active else {}),
        "remote_access_ns": m.remote_access_ns,
        "workload": scn.run.workload,
        "seed": scn.run.seed,
        # mm/pmm/init.py reads these (mm_params)
        "max_page_order": m.max_page_order,
        "min_free_kbytes": m.min_free_kbytes,
        "watermark_scale_factor": m.watermark_scale_factor,
        "pcp_enabled": m.pcp,
        "pcp_high": m.pcp_high,
        "pcp_batch": m.pcp_batch,
        "pcp_autotune": m.pcp_autotune,
        "thp": m.thp,
        # the kernel profile supplies the defaults of the knobs left None (params.profile_default)
        "kernel_profile": scn.kernel.profile,
        "slab_percpu_sheaves": scn.slab.percpu_sheaves,
        # mm/slab/slab_common.py:slab_params reads these
        "slab_mag_size": scn.slab.mag_size, "slab_max_order": scn.slab.max_order,
        "slab_min_partial": scn.slab.min_partial, "slab_min_objects": scn.slab.min_objects,
        "slub_debug": scn.slab.debug, "slab_max_caches": scn.slab.max_caches,
        "slab_nr_sheaves": scn.slab.nr_sheaves,
        # mm/vm/mm_types.py:vm_params reads this ([vm]; its presence boots the VM)
        "vm": scn.vm.as_dict(),
        # mm/san/config.py:debug_params and mm/vm/vmalloc_layout.py:vmalloc_params read these
        "debug": scn.debug.as_dict(),
        "vmalloc": scn.vmalloc.as_dict(),
        # workers build their PolicyAllocator from these (mm/numa/mempolicy.py); the
        # process-memory keys (balancing...) go to mm/numa/numa_types.py numa_params
        "numa": scn.numa.as_dict(),
    }


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during the measured run.  The run was stopped as if its time
    were up and `result` holds what was measured until then (`interrupted` set), so a
    soak that had to be stopped still leaves its figures; `signum` is the signal.  A
    second signal while stopping ends the run at once (a plain KeyboardInterrupt)."""

    def __init__(self, signum: int, result: RunResult) -> None:
        super().__init__(f"run interrupted by {signal.Signals(signum).name}")
        self.signum, self.result = signum, result


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (shared memory exhausted?)" if -code == signal.SIGBUS else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


def _errtext(arena: Arena, cpu: int) -> str:
    off = arena.off("errtext") + cpu * ERRTEXT_SIZE
    raw = bytes(arena.u8[off : off + ERRTEXT_SIZE])
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def run(scn: Scenario, *, on_sample: Any = None, on_tick: Any = None, ready_only: bool = False) -> RunResult:
    """Run a scenario to completion and return its figures.

    `on_sample(elapsed_s, total_ops)` is called at each sampling tick (progress display);
    `on_tick(arena, samples)` too, with the live arena (read-only use: live views).
    `ready_only` starts the workers, waits for the barrier, and stops them without
    running (used by the benchmark of worker start-up).
    Raises WorkerDied when a simulated CPU dies, UsageError for an impossible machine.
    """
    from workers.cpu import WorkerSpec
    from workers.cpu import main as worker_main
    from workers.workloads import WORKLOADS

    t_begin = time.perf_counter()
    mod = WORKLOADS[scn.run.workload]
    host = topo.read_host()
    sim = build_machine(scn, host)
    cleanup_stale()
    n = sim.nr_cpus
    _check_policies(scn, sim)
    check_events(scn, n)
    config, specs = plan_arena(scn, sim)
    _check_machine_fit(scn, config)
    if scn.fault.active:
        check_fault(scn, n)
    notes: list[str] = []
    check_recovery(scn, mod, notes)
    if sim.oversubscribed:
        notes.append(f"oversubscribed: {n} simulated CPUs on {len(set(sim.host_cpu))} host CPUs")
    quota = host.quota
    if quota is not None and n > quota:
        notes.append(f"cgroup CPU quota is {quota:g} CPUs, below the {n} workers: expect throttling")

    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        arena = Arena.create(config, specs)
    except BaseException as e:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if isinstance(e, ShmSpaceError):
            raise _shm_error(scn, e) from None
        raise
    procs: list[mp.process.BaseProcess] = []
    hp: Hotplug | None = None
    kthreads = None
    try:
        boot(arena)
        mod.setup(arena, scn.workload, n)
        from aerosync.mm.reclaim.kthread import start_kthreads

        kthreads = start_kthreads(arena)                   # kswapd per node, the flusher (mm/reclaim)
        ctx = mp.get_context("spawn")
        from dataclasses import asdict

        params = asdict(scn.workload)

        def worker_spec(c: int, hotplug: bool = False, standby: bool = False) -> WorkerSpec:
            return WorkerSpec(arena.name, arena.config_hash, c, sim.host_cpu[c], os.getpid(),
                              scn.run.workload, params, scn.run.seed, scn.run.ops, hotplug, standby)

        def start_worker(c: int, standby: bool = False) -> mp.process.BaseProcess:
            spec = worker_spec(c, standby, standby)
            p = ctx.Process(target=worker_main, args=(spec,), name=f"aerosync-cpu{c}", daemon=True)
            p.start()
            return p

        for c in range(n):
            procs.append(start_worker(c))
        hp = Hotplug(arena, scn, procs, lambda c: start_worker(c, True), lambda c, p: _worker_died(arena, c, p))
        deaths = (_Deaths(arena, scn, mod, procs, worker_spec, worker_main) if scn.run.on_cpu_death != "fail"
                  else None)
        t_ready = _wait_ready(arena, procs)
        ready_s = t_ready - t_begin
        if ready_only:
            arena.atomic.store64(L.H_RUN_STATE, L.RUN_STOP)
            _stop(arena, procs)
            return RunResult(scenario_to_dict(scn), {}, sim.to_dict(), time.perf_counter() - t_begin, 0.0,
                             [], [], [], "", {}, ready_s, notes)
        views_before = procfs.snapshot_all(arena)
        proc_before, ev_before = procfs.snapshot_tasks(arena), _vm_counters(arena)
        if proc_before.get("tasks", {}).get("json"):
            views_before["proc"] = proc_before
        samples, t_go, t_end, live_checks, proc_after, stopped_by = _run_loop(arena, scn, procs, on_sample,
                                                                              on_tick, hp, deaths)
        hp.settle()             # (interrupted: a CPU coming up meets STOP, gives back, is DONE)
        hp.finish()
        _stop(arena, procs, deaths)
        if kthreads is not None:
            kthreads.stop()
        _san_offline(arena, n)
        # The closing sample is taken once every worker has left: each finishes the batch
        # it was in when STOP came, and those operations count (and are counted).
        samples.append(_sample(arena, n, t_go))
        views_after = procfs.snapshot_all(arena)
        if "proc" in views_before:
            # taken before the stop (duration runs); an ops run's tasks exited on their own:
            # their list after the run, without address spaces
            views_after["proc"] = proc_after or procfs.snapshot_tasks(arena)
        cpus = _collect(arena, mod, sim, samples, scn, t_go, t_end)
        stats = lockstat.snapshot(arena)
        result = RunResult(
            scenario=scenario_to_dict(scn), environment=environment(host), sim=sim.to_dict(),
            elapsed_s=time.perf_counter() - t_begin, measured_s=_measured_window(scn, t_go, t_end),
            cpus=cpus, samples=samples, lock_stat=lockstat.lock_stat_dict(stats),
            lock_stat_text=lockstat.render_lock_stat(stats), workload={}, ready_s=ready_s, notes=notes,
            latency=_latency(arena, sim.nr_cpus), views_before=views_before, views_after=views_after,
            numa=_numa_summary(scn, views_before, views_after),
            mm={"free_area_samples": [s.pop("free") for s in samples if "free" in s],
                **({"pressure_samples": ps} if (ps := [s.pop("pressure") for s in samples if "pressure" in s])
                   else {}),
                "vm_events": {k: v - ev_before.get(k, 0) for k, v in _vm_counters(arena).items()},
                "sanitizer_reports": bug_counts(arena)},
            hotplug=hp.log,
        )
        result.notes.extend(f"hotplug: cpu{e['cpu']} {e['action']} at {e['t']:.2f} s "
                            + (f"refused: {e['refused']}" if "refused" in e else f"not run: {e['skipped']}")
                            for e in hp.log if "refused" in e or "skipped" in e)
        result.workload = mod.report(arena, scn.workload, result.to_dict())
        # The report acts as CPU 0, which may be offline (dead with on_cpu_death = "stop",
        # or unplugged): what its frees left in that CPU's PCP lists and magazines goes
        # back as the unplug's teardown would (idempotent), before H1 looks.
        for c in range(sim.nr_cpus):
            if hp_state(arena, c) == L.HP_OFFLINE:
                cpuhp_offline_mm(arena, c)
        # After the workload gave back what it could: the whole-machine invariant check.
        reports = (mm_check(arena), slab_check(arena), vm_check(arena, final=True), reclaim_report(arena))
        offline_held = cpuhp_check(arena)       # H1: an offline CPU holds nothing
        result.mm_check = {"ok": all(r.ok for r in reports) and not offline_held,
                           "elapsed_s": sum(r.elapsed_s for r in reports),
                           "summary": {k: v for r in reports for k, v in r.summary.items()},
                           "counts": {k: v for r in reports for k, v in r.counts.items()},
                           "violations": [str(v) for r in reports for v in r.violations] + offline_held,
                           "live_checks": live_checks}
        if deaths is not None:
            result.crash = deaths.log.to_dict()
        if stopped_by is not None:
            signum = int(getattr(stopped_by, "signum", signal.SIGINT))
            result.interrupted = True
            result.notes.append(f"interrupted by {signal.Signals(signum).name} {t_end - t_go:.2f} s into the run: "
                                "the figures cover the run up to then")
            raise RunInterrupted(signum, result) from stopped_by
        return result
    finally:
        arena.atomic.store64(L.H_RUN_STATE, L.RUN_ABORT)   # workers still looping leave
        _kill_all(procs)
        if hp is not None:
            hp.close()                                       # hotplug standbys
        arena.unlink()      # first: a refused close (a view alive in a traceback) must not leak the name
        try:
            _stop_reclaim(arena, kthreads)
        finally:
            arena.close()
            remove_run_files(arena.name)                     # workers' backing files (a failed run's too)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _san_offline(arena: Arena, n: int) -> None:
    """Every CPU has left: what it held for the sanitizers goes back (kasan_cpu_offline:
    its KASAN quarantine to SLUB), so the final checks see every object freed."""
    if "kasanq" not in arena.sections:
        return
    from aerosync.mm.san.kasan import kasan_cpu_offline
    from aerosync.mm.slab.slub import Slub

    slub = Slub(arena, 0)
    for c in range(n):
        kasan_cpu_offline(arena, c, slub)


def _stop_reclaim(arena: Arena, kthreads: Any) -> None:
    """kswapd and the flusher stopped, the swap file removed (every exit path)."""
    from aerosync.mm.reclaim.swapfile import swapoff

    try:
        if kthreads is not None:
            kthreads.stop(2.0)
    except AeroSyncError:
        pass
    finally:
        swapoff(arena)


def _killed(p: mp.process.BaseProcess) -> bool:
    """Ended by a signal (SIGKILL at a fault point or from outside, SIGSEGV...): a death
    recovery can repair.  A worker that raised (exit code 1) unwound its `finally`
    blocks half-way through an operation: not recoverable, reported as before."""
    return p.exitcode is not None and p.exitcode < 0


class _Deaths:
    """The run's CPU deaths under [run] on_cpu_death = "stop" | "continue" (module
    docstring): recovery of each, restarts, the fault driver, the crash log."""

    def __init__(self, arena: Arena, scn: Scenario, mod: Any, procs: list[mp.process.BaseProcess],
                 worker_spec: Any, worker_main: Any) -> None:
        self.arena, self.procs, self.worker_spec, self.worker_main = arena, procs, worker_spec, worker_main
        self.mode = scn.run.on_cpu_death
        self.log = CrashLog(self.mode)
        self.driver = (FaultDriver(arena, arena.config.get("fault") or {}, len(procs), scn.run.seed)
                       if scn.fault.active else None)
        rec = getattr(mod, "recover", None)
        params = scn.workload
        self.workload_recover = ((lambda a, c, r, m, s: rec(a, params, c, r, m, s)) if rec is not None else None)
        self.dead: set[int] = set()
        # Restarts fork the coordinator (~50 ms to a running worker, measured) instead of
        # spawning a fresh interpreter (~1 s of imports on the 2-core box): a soak with
        # 100+ kills would spend most of its time starting Pythons.
        self.ctx = mp.get_context("fork")

    def survive(self, died: list[int], t_noticed: float) -> bool:
        """Recover the CPUs in `died` (and any that dies meanwhile); restart them and
        return False ("continue"), or return True: the run stops ("stop")."""
        arena, procs = self.arena, self.procs
        recs: dict[int, recovery.CpuRecovery] = {}
        todo = list(died)
        while True:
            for c in todo:
                if self.driver is not None:
                    self.driver.on_death(c, time.perf_counter())
                arena.atomic.store64(arena.off("cpu") + c * CPU_AREA_SIZE + L.CPU_STATE, L.CPUST_OFFLINE)
                recs[c] = recovery.takeover(arena, procs[c].pid or 0, c)
            kept = any(r.kept or r.pending_lock is not None for r in recs.values())
            try:
                _park_all(arena, procs, "recovery", stall_s=KEPT_STALL_S if kept else None)
                break
            except _ParkStalled:                   # a CPU queued on a kept mmap_lock cannot park there
                for r in recs.values():
                    recovery.release_kept(arena, r, early=True)
                todo = []
            except WorkerDied as e:                # a second death while parking: same round
                if not _killed(procs[e.cpu]):
                    raise
                todo = [e.cpu]
        # (an AeroSyncError names the CPU whose records it followed: state no step of its
        # log explains, after a kill from outside)
        recovery.recover_round(arena, list(recs.values()), self.workload_recover, offline=cpuhp_offline_mm)
        for r in (mm_check(arena), slab_check(arena), vm_check(arena)):
            if r.violations:                       # say which death and records it followed
                v = r.violations[0]
                ctx = "; ".join(f"cpu{x.cpu} (died at {x.died_at or 'a signal'}, records {x.records})"
                                for x in recs.values())
                raise InvariantViolation(v.inv_id, f"{v.where} after recovering {ctx}", v.expected, v.found)
        if self.mode == "stop":
            self.dead |= set(recs)
            for rec in recs.values():
                self.log.add(rec, (time.perf_counter() - t_noticed) * 1e3)
            return True
        for c in recs:
            procs[c] = self._restart(c)
        arena.atomic.store64(L.H_RUN_STATE, L.RUN_GO)
        t = time.perf_counter()
        for rec in recs.values():
            self.log.add(rec, (t - t_noticed) * 1e3)
        self.log.restarts += len(recs)
        return False

    def recover_stopped(self, cpus: list[int]) -> None:
        """CPUs killed while the run was stopping, every worker gone: recover them alone
        (the world is stopped already); they stay dead."""
        t0 = time.perf_counter()
        for c in cpus:
            rec = recovery.takeover(self.arena, self.procs[c].pid or 0, c)
            recovery.recover_cpu(self.arena, rec, self.workload_recover, offline=cpuhp_offline_mm)
            self.log.add(rec, (time.perf_counter() - t0) * 1e3)
            self.dead.add(c)

    def _restart(self, c: int) -> mp.process.BaseProcess:
        """A new worker for CPU c (WorkerSpec.hotplug: it brings the CPU online itself,
        cpuhp_online_mm; hp_state COMING_UP at once, so it does not wait as a hotplug
        standby does)."""
        from aerosync.mm.cpuhp import set_hp_state

        area = self.arena.off("cpu") + c * CPU_AREA_SIZE
        self.arena.atomic.store64(area + L.CPU_PID, 0)
        self.arena.atomic.store64(area + L.CPU_STATE, L.CPUST_STARTING)
        set_hp_state(self.arena, c, L.HP_COMING_UP)
        spec = self.worker_spec(c, True)
        p = self.ctx.Process(target=self.worker_main, args=(spec,), name=f"aerosync-cpu{c}", daemon=True)
        p.start()
        return p


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _worker_died(arena: Arena, c: int, p: mp.process.BaseProcess, when: str = "") -> WorkerDied:
    """Name the dead CPU, its pid, how it ended, its traceback, the locks it held and
    (`when`) the phase of the run the death was met in."""
    p.join(1.0)
    tb = _errtext(arena, c)
    cause = _describe_exit(p.exitcode)
    if tb:
        cause = f"{cause}: raised {tb.strip().splitlines()[-1]}"
    held = locks_held_by(arena, p.pid or 0)
    if held:
        cause += "; it held " + ", ".join(name for _, name, _ in held)
    if when:
        cause += f" ({when})"
    return WorkerDied(c, p.pid or 0, cause, tb)


def _check_dead(arena: Arena, procs: list[mp.process.BaseProcess], ready: list[Any]) -> None:
    """Raise WorkerDied for the first worker whose sentinel fired."""
    for c, p in enumerate(procs):
        if p.sentinel in ready or not p.is_alive():
            raise _worker_died(arena, c, p)


def _wait_ready(arena: Arena, procs: list[mp.process.BaseProcess]) -> float:
    deadline = time.perf_counter() + READY_TIMEOUT_S
    sentinels = [p.sentinel for p in procs]
    while arena.atomic.load64(L.H_NR_READY) < len(procs):
        ready = mp_wait(sentinels, timeout=0.002)
        if ready:
            _check_dead(arena, procs, ready)
        if time.perf_counter() > deadline:
            raise AeroSyncError(f"workers not ready after {READY_TIMEOUT_S:.0f} s "
                                f"({arena.atomic.load64(L.H_NR_READY)} of {len(procs)} at the barrier)")
    return time.perf_counter()


def _cpu_word(arena: Arena, cpu: int, field_off: int) -> int:
    return arena.u64[(arena.off("cpu") + cpu * CPU_AREA_SIZE + field_off) >> 3]


def _sample(arena: Arena, n: int, t0: float) -> dict[str, Any]:
    """Per-CPU op counts, and each zone's free blocks per order (racy reads of counters the
    zone lock guards: a snapshot, as /proc/buddyinfo is) for the free-area plot."""
    t = time.perf_counter() - t0
    q = arena.u64
    hdr = arena.off("mmzones")
    nr_zones, nr_orders = q[(hdr + Z.G_NR_ZONES) >> 3], q[(hdr + Z.G_MAX_ORDER) >> 3] + 1
    free = []
    for z in range(nr_zones):
        fa = (Z.zone_off(arena, z) + Z.Z_FREE_AREA + Z.FA_NR_FREE) >> 3
        free.append([q[fa + o * (Z.FA_SIZE >> 3)] for o in range(nr_orders)])
    out = {"t": t, "ops": [_cpu_word(arena, c, L.CPU_OPS) for c in range(n)], "free": {"t": t, "free": free}}
    if arena.config.get("reclaim"):              # the scenario has [reclaim] (every machine has the section)
        out["pressure"] = _pressure_sample(arena, t, nr_zones)
    return out


# vm events and node stats the memory-pressure plot follows (cumulative counters)
_PRESSURE_EVENTS = ("pgscan_kswapd", "pgsteal_kswapd", "pgscan_direct", "pgsteal_direct", "allocstall")
_PRESSURE_NODE_STATS = ("workingset_refault_anon", "workingset_refault_file")


def _pressure_sample(arena: Arena, t: float, nr_zones: int) -> dict[str, Any]:
    """A reclaim machine's memory pressure at one tick (the memory_pressure plot): free
    pages and the min/low/high watermarks (boost included, as zone_watermark_ok sees
    them) per node, and the reclaim counters summed over CPUs (kswapd's records
    included) -- racy reads, as /proc/zoneinfo and /proc/vmstat are."""
    import numpy as np

    from aerosync.mm.pmm import vm_event as VE

    q = arena.u64
    sim = arena.config.get("sim") or {}
    nn = int(sim.get("nr_nodes", 1)) if sim else 1
    free, wmark = [0] * nn, [[0, 0, 0] for _ in range(nn)]
    for z in range(nr_zones):
        zo = Z.zone_off(arena, z) >> 3
        nid = q[zo + (Z.Z_NID >> 3)]
        if nid >= nn:
            continue
        boost = q[zo + (Z.Z_WMARK_BOOST >> 3)]
        free[nid] += q[zo + (Z.Z_NR_FREE_PAGES >> 3)]
        for i, w in enumerate((Z.Z_WMARK_MIN, Z.Z_WMARK_LOW, Z.Z_WMARK_HIGH)):
            wmark[nid][i] += q[zo + (w >> 3)] + boost
    ev: dict[str, int] = {}
    if "vmevents" in arena.sections:
        recs = VE._records(arena)
        cols = [VE.VM_EVENT_NAMES.index(k) for k in ("pgscan_kswapd", "pgsteal_kswapd", "pgscan_direct",
                                                    "pgsteal_direct")]
        stall = list(range(VE.ALLOCSTALL_DMA, VE.ALLOCSTALL_DEVICE + 1))
        sums = recs[:, cols + stall].astype(np.uint64).sum(axis=0)
        ev = {k: int(v) for k, v in zip(_PRESSURE_EVENTS[:4], sums[:4])}
        ev["allocstall"] = int(sums[4:].sum())
        for k in _PRESSURE_NODE_STATS:
            i = VE.NODE_STAT_NAMES.index(k)
            ev[k] = int(sum(int(recs[:, VE.NR_VM_EVENTS + nid * VE.NR_NODE_STATS + i].sum()) for nid in range(nn)))
        del recs
    return {"t": t, "free": free, "wmark": wmark, "events": ev}


def _numa_summary(scn: Scenario, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The run's locality from numastat deltas: local_pct = local_node / (local + other)
    allocations, with the policy that produced it (for placement experiments)."""
    b = (before.get("numastat") or {}).get("json") or {}
    a = (after.get("numastat") or {}).get("json") or {}
    per = {node: {k: v - b.get(node, {}).get(k, 0) for k, v in items.items()} for node, items in a.items()}
    local = sum(x["local_node"] for x in per.values())
    other = sum(x["other_node"] for x in per.values())
    return {"policy": scn.numa.policy, "cpu_policy": {str(c): p for c, p in scn.numa.cpu_policy},
            "local_pct": round(100.0 * local / (local + other), 2) if local + other else None,
            "numastat_delta": per}


def _run_loop(arena: Arena, scn: Scenario, procs: list[mp.process.BaseProcess],
              on_sample: Any, on_tick: Any = None, hp: Hotplug | None = None, deaths: _Deaths | None = None
              ) -> tuple[list[dict[str, Any]], float, float, list[dict[str, Any]], dict[str, Any],
                         KeyboardInterrupt | None]:
    """Release the barrier and sample until the run is over; the fifth value is the task
    views taken with the CPUs parked at the stop ({} when not taken).  A Ctrl-C / SIGTERM
    after the barrier ends the run early as the deadline would, and is returned (last)
    so the run can be reported as interrupted with what it measured; before it, nothing
    was measured and it propagates."""
    state: dict[str, Any] = {}
    try:
        return (*_run_loop_body(arena, scn, procs, on_sample, on_tick, state, hp, deaths), None)
    except KeyboardInterrupt as e:
        if "t_go" not in state:
            raise
        arena.atomic.store64(L.H_RUN_STATE, L.RUN_STOP)
        t_end = time.perf_counter()
        arena.u64[L.H_STOP_NS >> 3] = time.monotonic_ns()
        return state["samples"], state["t_go"], t_end, state["live_checks"], {}, e


def _run_loop_body(arena: Arena, scn: Scenario, procs: list[mp.process.BaseProcess],
                   on_sample: Any, on_tick: Any, state: dict[str, Any], hp: Hotplug | None = None,
                   deaths: _Deaths | None = None
                   ) -> tuple[list[dict[str, Any]], float, float, list[dict[str, Any]], dict[str, Any]]:
    n = len(procs)
    at = arena.atomic
    sentinels = [p.sentinel for p in procs]
    interval = scn.run.sample_interval
    t_go = time.perf_counter()
    arena.u64[L.H_START_NS >> 3] = time.monotonic_ns()
    at.store64(L.H_RUN_STATE, L.RUN_GO)          # release the barrier
    samples = [_sample(arena, n, t_go)]
    deadline = t_go + scn.run.duration if scn.run.duration is not None else None
    next_tick = t_go + interval
    next_check = t_go + scn.run.check_interval
    live_checks: list[dict[str, Any]] = []
    state.update(samples=samples, t_go=t_go, live_checks=live_checks)   # what an interrupt keeps
    driver = deaths.driver if deaths is not None else None
    if driver is not None:
        driver.start(t_go)
    wait_max = 0.5 if driver is None else 0.01
    while True:
        wake = next_tick
        if hp is not None and (hp_at := hp.next_at(time.perf_counter() - t_go)) is not None:
            wake = min(wake, t_go + hp_at)              # an event due, or a CPU coming up
        ready = mp_wait(sentinels, timeout=max(0.0, min(wake - time.perf_counter(), wait_max)))
        if ready:
            # A worker exits on its own only in ops mode after DONE; anything else is a death.
            died = []
            for c, p in enumerate(procs):
                if p.sentinel in ready:
                    p.join(1.0)
                    if p.exitcode != 0 or _cpu_word(arena, c, L.CPU_STATE) != L.CPUST_DONE:
                        if deaths is None or not _killed(p):
                            raise _worker_died(arena, c, p)
                        died.append(c)
            if died and deaths is not None and deaths.survive(died, time.perf_counter()):
                break                                 # "stop": the run ends here
            sentinels = [p.sentinel for p in procs if p.exitcode is None]
        if hp is not None and hp.poll(time.perf_counter() - t_go):
            sentinels = [p.sentinel for p in procs if p.exitcode is None]   # a CPU left or joined
        now = time.perf_counter()
        if driver is not None:
            driver.tick(now, [c for c in range(n) if _cpu_word(arena, c, L.CPU_STATE) == L.CPUST_RUNNING])
        if now >= next_tick:
            samples.append(_sample(arena, n, t_go))
            next_tick += interval
            if next_tick < now:
                next_tick = now + interval
            if on_sample is not None:
                on_sample(now - t_go, sum(samples[-1]["ops"]))
            if on_tick is not None:
                on_tick(arena, samples)
        if scn.run.watchdog:
            _watchdog(arena, procs, scn.run.watchdog)
        if scn.run.check_interval and now >= next_check:
            try:
                live_checks.append(_live_check(arena, procs))
            except WorkerDied as e:
                if deaths is None or not _killed(procs[e.cpu]):
                    raise
                # killed (a fault point) while the world stopped for the check: the check
                # is skipped and the next wait above recovers the death
            next_check = time.perf_counter() + scn.run.check_interval
        if deadline is not None and now >= deadline:
            break
        if deadline is None and all(_cpu_word(arena, c, L.CPU_STATE) == L.CPUST_DONE or
                                    (_cpu_word(arena, c, L.CPU_STATE) == L.CPUST_OFFLINE and
                                     (hp is None or not hp.comes_back(c))) for c in range(n)):
            break           # ops mode: every CPU did its ops, or is offline for good
    if hp is not None:
        hp.settle()             # a CPU coming up runs before it sees STOP
    t_end = time.perf_counter()
    arena.u64[L.H_STOP_NS >> 3] = time.monotonic_ns()
    if driver is not None:
        driver.stop()                                 # no kill during the stop (a late one: _stop)
    proc_after = _proc_at_stop(arena, procs) if deadline is not None else {}
    at.store64(L.H_RUN_STATE, L.RUN_STOP)
    return samples, t_go, t_end, live_checks, proc_after


def _live_check(arena: Arena, procs: list[mp.process.BaseProcess]) -> dict[str, Any]:
    """Stop the world at batch boundaries, run the invariant checkers (page allocator,
    SLUB, VM, reclaim), resume.

    Workers see RUN_PAUSE after their current batch (no operation in flight), drain
    their per-CPU LRU batch, ack with the pause generation and park; DONE workers are
    not waited for.
    """
    at = arena.atomic
    t0 = time.perf_counter()
    try:
        _park_all(arena, procs, "live check")
        reports = (mm_check(arena), slab_check(arena), vm_check(arena), reclaim_report(arena))
    finally:
        at.store64(L.H_RUN_STATE, L.RUN_GO)
    out = {"t": t0, "paused_s": time.perf_counter() - t0, "ok": all(r.ok for r in reports),
           "violations": [str(v) for r in reports for v in r.violations]}
    if reports[3].summary:                     # mm/reclaim's LRU and swap counts, when it runs
        out["reclaim"] = reports[3].summary
    for r in reports:
        r.raise_first()
    return out


class _ParkStalled(Exception):
    """_park_all's `stall_s` passed with CPUs still running (one may be queued on a kept
    lock while holding something: it cannot park in the wait)."""


def _park_all(arena: Arena, procs: list[mp.process.BaseProcess], why: str, stall_s: float | None = None) -> None:
    """Store RUN_PAUSE (a new pause generation) and wait until every RUNNING CPU parked
    at a batch boundary (or inside the wait for a lock kept for a dead CPU's recovery:
    workers/cpu.py _lock_park); the caller stores GO (or STOP) afterwards.  With
    `stall_s`, raise _ParkStalled when CPUs are still pending after it."""
    at = arena.atomic
    seq = at.fetch_add64(L.H_PAUSE_SEQ, 1) + 1
    at.store64(L.H_RUN_STATE, L.RUN_PAUSE)
    t0 = time.perf_counter()
    deadline = t0 + 30.0
    stall = t0 + stall_s if stall_s is not None else deadline
    while True:
        pending = _pause_pending(arena, procs, seq)
        if not pending:
            return
        for c in pending:
            if c < len(procs) and not procs[c].is_alive():      # (kthread CPUs come after the workers)
                raise _worker_died(arena, c, procs[c], f"met while the world stopped for the {why}")
        if stall_s is not None and time.perf_counter() > stall:
            raise _ParkStalled(pending)
        if time.perf_counter() > deadline:
            raise AeroSyncError(f"{why}: cpu{pending[0]} did not reach the pause barrier in 30 s")
        time.sleep(0.0005)


def _proc_at_stop(arena: Arena, procs: list[mp.process.BaseProcess]) -> dict[str, Any]:
    """The per-task views (maps, smaps, status...) of every task with an address space,
    taken with the CPUs parked just before STOP: once stopped, each worker's teardown
    exits its task and the address space is gone.  The caller stores STOP next (parked
    workers leave the barrier on any state but PAUSE).  Nothing to do without VM tasks."""
    from aerosync.mm.vm.mm_types import vm_ready
    from aerosync.mm.vm.task_mmu import tasks_json

    if not vm_ready(arena) or not any(t["mm"] > 0 for t in tasks_json(arena)):
        return {}
    try:
        _park_all(arena, procs, "task views at stop")
    except WorkerDied as e:
        if not _killed(procs[e.cpu]):
            raise
        return {}           # a kill armed before the stop fired: _stop recovers it (no views)
    return procfs.snapshot_tasks(arena)


def _vm_counters(arena: Arena) -> dict[str, int]:
    """The VM's vm events a run reports as deltas (result["mm"]["vm_events"]: faults, TLB
    flushes, per-VMA lock outcomes, AeroSync's COW/SPF events; /proc/vmstat has them all)."""
    from aerosync.mm.pmm.vm_event import fold_vm_events

    if "vmevents" not in arena.sections:
        return {}
    return {k: v for k, v in fold_vm_events(arena).items()
            if k in ("pgfault", "pgmajfault") or k.startswith(("nr_tlb_", "vma_lock_", "aerosync_"))}


def _pause_pending(arena: Arena, procs: list[Any], seq: int) -> list[int]:
    """CPUs the pause `seq` still waits for: RUNNING and not yet acked.  A CPU still READY
    is not waited for: it stores RUNNING (SEQ_CST) and then reads run_state, so it parks
    before its first operation (workers/cpu.py).  A FAILED CPU raised in the middle of an
    operation, maybe holding locks or half-way through a list: checking that machine
    would report its wreckage as invariant violations, so it is reported as the death it
    is, here."""
    at = arena.atomic
    pending = []
    for c in range(len(procs)):
        st = _cpu_word(arena, c, L.CPU_STATE)
        if st == L.CPUST_FAILED:
            raise _worker_died(arena, c, procs[c])
        if st == L.CPUST_RUNNING and at.load64(arena.off("cpu") + c * CPU_AREA_SIZE + L.CPU_PAUSE_ACK) != seq:
            pending.append(c)
        elif st == L.CPUST_STARTING and procs[c].exitcode is None:
            pending.append(c)         # a CPU coming back: its start-up writes (cpuhp_online_mm, make_batch)
    from aerosync.mm.reclaim.kthread import kthread_pause_pending

    return pending + kthread_pause_pending(arena, seq)


def _watchdog(arena: Arena, procs: list[mp.process.BaseProcess], limit_s: float) -> None:
    """Soft-lockup detector (kernel/watchdog.c in spirit): RUNNING CPUs whose heartbeat
    is older than `limit_s` are reported with their stacks, the lock each waits on, that
    lock's owner, and the locks each holds.  A waiting CPU is named first: it is the
    victim, the owner is the culprit."""
    now = time.monotonic_ns()
    stuck = []
    for c, p in enumerate(procs):
        if _cpu_word(arena, c, L.CPU_STATE) != L.CPUST_RUNNING:
            continue
        age = (now - _cpu_word(arena, c, L.CPU_HEARTBEAT)) / 1e9
        if age >= limit_s:
            stuck.append((not _cpu_word(arena, c, L.CPU_WAITING_ON), c, p, age))
    if not stuck:
        return
    stuck.sort(key=lambda x: (x[0], x[1]))
    lines = []
    dumped: set[int] = set()
    for _, c, p, age in stuck:
        pid = p.pid or 0
        lines.append(f"cpu{c} pid {pid}: no operation finished for {age:.1f} s (watchdog = {limit_s:g} s)")
        stopped = stopped_note(pid) if pid else None
        if stopped:
            lines.append(f"  {stopped}")
        slot1 = _cpu_word(arena, c, L.CPU_WAITING_ON)
        owner_pid = 0
        if slot1:
            name = "{}[{}]".format(*lockstat.slot_names(arena, slot1 - 1))
            since = (now - _cpu_word(arena, c, L.CPU_WAITING_SINCE)) / 1e9
            word = arena.atomic.load64(lockstat.slot_off(arena, slot1 - 1))
            if lockstat.decode_owner(word)[1]:
                ocpu, owner_pid = lockstat.decode_owner(word)
                lines.append(f"  waiting {since:.1f} s on lock {name}, held by cpu{ocpu} pid {owner_pid}")
            else:
                lines.append(f"  waiting {since:.1f} s on lock {name} (free now)")
        else:
            lines.append("  not waiting on a lock" + ("" if stopped else " (busy or blocked inside its workload)"))
        held = locks_held_by(arena, pid)
        if held:
            lines.append("  holding " + ", ".join(name for _, name, _ in held))
        for who, wpid in ((f"cpu{c}", pid), ("the lock owner", owner_pid)):
            if wpid and wpid not in dumped:
                dumped.add(wpid)
                lines.append(f"  --- stack of {who} (pid {wpid}) ---")
                lines.append("  " + dump_stack(wpid).replace("\n", "\n  "))
    _, c, p, age = stuck[0]
    raise SoftLockup(c, p.pid or 0, age, "\n".join(lines))


def _latency(arena: Arena, n: int) -> dict[str, Any]:
    """p50/p99/p99.9 of the sampled operations, per CPU and over all CPUs (ns)."""
    import numpy as np

    hists = []
    for c in range(n):
        base = (arena.off("cpu") + c * CPU_AREA_SIZE + L.CPU_LAT_HIST) >> 3
        hists.append(np.array(arena.u64[base : base + NR_LAT_BUCKETS], dtype=np.int64))
    mids = np.array([L.lat_bucket_ns(b) for b in range(NR_LAT_BUCKETS)])

    def pct(h: Any) -> dict[str, float]:
        total = int(h.sum())
        if not total:
            return {"samples": 0}
        cum = np.cumsum(h)
        out: dict[str, float] = {"samples": total}
        for name, q in (("p50_ns", 0.5), ("p99_ns", 0.99), ("p999_ns", 0.999)):
            out[name] = float(mids[int(np.searchsorted(cum, q * total))])
        out["max_ns"] = float(mids[int(np.nonzero(h)[0][-1])])
        return out

    return {"all": pct(sum(hists)), "cpus": [pct(h) for h in hists]}


def _stop(arena: Arena, procs: list[mp.process.BaseProcess], deaths: _Deaths | None = None) -> None:
    """Wait for workers to leave after STOP; a worker that failed while stopping is
    reported -- or, killed under on_cpu_death, recovered (CPUs recovered earlier and
    left dead by "stop" are skipped)."""
    deadline = time.perf_counter() + STOP_GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.perf_counter()))
    if deaths is not None:
        late = [c for c, p in enumerate(procs) if c not in deaths.dead and _killed(p)]
        if late and all(p.exitcode is not None for p in procs):
            deaths.recover_stopped(late)
    for c, p in enumerate(procs):
        if p.exitcode not in (0, None) and (deaths is None or c not in deaths.dead):
            raise _worker_died(arena, c, p, "met while the run was stopping" + (
                "; a death there is recovered only once every worker has left" if deaths is not None else ""))
    # What follows (closing sample, workload.report freeing ring leftovers as cpu 0 with
    # MM(arena, 0), the final check) needs every worker gone: a worker still in its
    # teardown would race the report on cpu 0's lists and the rings.  The caller's
    # `finally` kills it.
    late = [c for c, p in enumerate(procs) if p.exitcode is None]
    if late:
        raise AeroSyncError(f"cpu{late[0]} (pid {procs[late[0]].pid}) still running {STOP_GRACE_S:g} s after STOP "
                            f"(stuck in its teardown?); {len(late)} worker(s) late, run abandoned")


def _kill_all(procs: list[mp.process.BaseProcess]) -> None:
    for p in procs:
        if p.exitcode is None:
            p.terminate()
    for p in procs:
        p.join(2.0)
        if p.exitcode is None:
            p.kill()
            p.join(2.0)


def _measured_window(scn: Scenario, t_go: float, t_end: float) -> float:
    return max(1e-9, (t_end - t_go) - scn.run.warmup)


def _collect(arena: Arena, mod: Any, sim: topo.SimTopology, samples: list[dict[str, Any]],
             scn: Scenario, t_go: float, t_end: float) -> list[dict[str, Any]]:
    from workers.workloads._common import cpu_counters

    warm = scn.run.warmup
    last = samples[-1]
    first = next((s for s in samples if s["t"] >= warm), last)
    if first is last:           # no sample after the warm-up: fall back to the opening one
        first = samples[0]
    window = max(1e-9, last["t"] - first["t"])
    cpus = []
    for c in range(sim.nr_cpus):
        ops = last["ops"][c]
        rates = []
        prev = None
        for s in samples:
            if s["t"] < warm:
                continue
            if prev is not None and s["t"] - prev["t"] < scn.run.sample_interval / 2:
                continue       # the closing sample right after STOP: too short to rate
            if prev is not None:
                rates.append((s["ops"][c] - prev["ops"][c]) / (s["t"] - prev["t"]))
            prev = s
        rates.sort()
        cpus.append({
            "cpu": c, "node": sim.cpu_to_node[c], "host_cpu": sim.host_cpu[c],
            "pid": _cpu_word(arena, c, L.CPU_PID), "ops": ops,
            "ops_per_s": (ops - first["ops"][c]) / window,
            "ops_per_s_min": rates[0] if rates else 0.0,
            "ops_per_s_median": rates[len(rates) // 2] if rates else 0.0,
            "ops_per_s_max": rates[-1] if rates else 0.0,
            "state": L.CPUST_NAMES[_cpu_word(arena, c, L.CPU_STATE)],
            "harness_ns_per_op": _cpu_word(arena, c, L.CPU_HARNESS_PS) / 1000,
            "counters": cpu_counters(arena, c, mod.COUNTERS),
        })
    return cpus
