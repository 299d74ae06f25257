"""`aerosync profile`: run a scenario under py-spy and cut the samples per simulated CPU.

Why this shape (python-shm-pitfalls.md section 7):
  * one py-spy launches the run (`record --subprocesses -- python -m aerosync.cli run`),
    which is permitted even where attaching to a running process is not (Yama scope 1),
    and follows every worker the coordinator spawns;
  * `--idle` because a lock waiter parked in `sleep_wait` is off-CPU and would otherwise
    vanish from the profile; `--nonblocking` because stopping a lock holder for every
    sample inflates everyone else's spinning (17-28 % slower at 1 kHz, measured);
  * `--format raw` gives collapsed stacks whose first frames are `process PID:"cmdline"`
    (the coordinator, then the worker), so one recording is split per process and
    mapped to simulated CPUs with result.json's `pid_map`.

Frames are aggregated per function ("func (file)", line numbers dropped), so a function
is one box in the flame graph and one row in the summary whatever line it sampled on.

Outputs in the profile directory::

    raw.txt                 py-spy's collapsed stacks (kept for other tools)
    result.json             the run's result (`aerosync run --json`)
    flame-cpuN.svg          one flame graph per simulated CPU
    flame-coordinator.svg   the coordinator process
    flame-all.svg           every process merged (process frames stripped)
    profile.speedscope.json speedscope file, one "sampled" profile per CPU (+ coordinator)
    summary.txt             per CPU: top functions (self / total) and lock-wait shares
    pyspy.log               py-spy's and the run's stderr

Where py-spy is missing or may not trace, the run still happens without profiling
(result.json is written), and the message names the missing permission and its fix.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aerosync import flamegraph
from aerosync.pyspy import PERMISSION_FIX, looks_like_permission_error, ptrace_problem, pyspy_path

__all__ = [
    "DEFAULT_RATE",
    "RawStack",
    "Profile",
    "split_raw_line",
    "read_raw",
    "normalize_frame",
    "build_profile",
    "speedscope",
    "summary_text",
    "write_outputs",
    "pyspy_command",
    "run_command",
    "add_profile_parser",
    "cmd_profile",
]

DEFAULT_RATE = 100
TOP_N = 10
COORDINATOR = "coordinator"
OTHER = "other"          # helper processes (multiprocessing's resource tracker)

_PROC_RE = re.compile(r'process (\d+):"')
_FRAME_RE = re.compile(r"^(?P<name>.*) \((?P<file>.*):(?P<line>\d+)\)$")


# ----------------------------------------------------------------------------- parsing
@dataclass(frozen=True, slots=True)
class RawStack:
    """One line of py-spy's raw output: the process chain, the Python frames, the count."""

    pids: tuple[int, ...]           # outermost (coordinator) first; the last is the sampled one
    frames: tuple[str, ...]         # root first
    count: int


def split_raw_line(line: str) -> RawStack | None:
    """Parse `process P:"cmd";process Q:"cmd";f1;f2 N`; None for lines that are not stacks.

    Command lines may hold ";" (multiprocessing's `-c "...; spawn_main(...)"`), so a
    process frame ends at the next `";`, not at the next ";".
    """
    body, _, n = line.rstrip("\n").rpartition(" ")
    if not body or not n.isdigit():
        return None
    pids: list[int] = []
    rest = body
    while (m := _PROC_RE.match(rest)) is not None:
        end = rest.find('";', m.end())
        pids.append(int(m.group(1)))
        if end < 0:                      # a stack of process frames only
            rest = ""
            break
        rest = rest[end + 2:]
    frames = tuple(rest.split(";")) if rest else ()
    return RawStack(tuple(pids), frames, int(n))


def read_raw(path: str | Path) -> list[RawStack]:
    """Every stack in a py-spy `--format raw` file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [s for s in map(split_raw_line, f) if s is not None]


def normalize_frame(frame: str) -> str:
    """'func (path/file.py:123)' -> 'func (path/file.py)': one box per function."""
    m = _FRAME_RE.match(frame)
    return f"{m.group('name')} ({m.group('file')})" if m else frame


def _func(frame: str) -> str:
    return frame.split(" (", 1)[0]


# ----------------------------------------------------------------------------- model
@dataclass
class Profile:
    """Samples per label ("cpu0", "cpu1", ..., "coordinator", "other"), stacks normalised."""

    by_label: dict[str, Counter[tuple[str, ...]]] = field(default_factory=dict)
    pids: dict[str, set[int]] = field(default_factory=dict)

    def labels(self) -> list[str]:
        """CPUs in numeric order, then the coordinator, then anything else."""
        cpus = sorted((k for k in self.by_label if k.startswith("cpu")), key=lambda k: int(k[3:]))
        rest = [k for k in (COORDINATOR, OTHER) if k in self.by_label]
        return cpus + rest

    def merged(self) -> Counter[tuple[str, ...]]:
        out: Counter[tuple[str, ...]] = Counter()
        for c in self.by_label.values():
            out.update(c)
        return out

    def total(self, label: str) -> int:
        return sum(self.by_label.get(label, Counter()).values())


def _label_of(pids: tuple[int, ...], pid_map: dict[str, int]) -> tuple[str, int]:
    if not pids:
        return OTHER, 0
    pid = pids[-1]
    if str(pid) in pid_map:
        return f"cpu{pid_map[str(pid)]}", pid
    if len(pids) == 1:
        return COORDINATOR, pid
    return OTHER, pid


def build_profile(stacks: Iterable[RawStack], pid_map: dict[str, int]) -> Profile:
    """Group stacks by simulated CPU using `pid_map` ({"pid": cpu} from result.json)."""
    prof = Profile()
    for s in stacks:
        label, pid = _label_of(s.pids, pid_map)
        frames = tuple(normalize_frame(f) for f in s.frames)
        prof.by_label.setdefault(label, Counter())[frames] += s.count
        prof.pids.setdefault(label, set()).add(pid)
    return prof


# ----------------------------------------------------------------------------- outputs
def _shares(stacks: Counter[tuple[str, ...]]) -> tuple[int, Counter[str], Counter[str]]:
    """(total samples, self samples per function, total samples per function)."""
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    total = 0
    for stack, n in stacks.items():
        total += n
        if stack:
            self_c[stack[-1]] += n
        for f in set(stack):
            total_c[f] += n
    return total, self_c, total_c


def lock_wait_shares(stacks: Counter[tuple[str, ...]]) -> dict[str, float]:
    """Share of samples (0..1) inside spin_wait / yield_wait / sleep_wait, and their sum."""
    total = sum(stacks.values()) or 1
    out = dict.fromkeys(flamegraph.LOCK_WAIT_FUNCS, 0.0)
    for stack, n in stacks.items():
        names = {_func(f) for f in stack}
        for w in flamegraph.LOCK_WAIT_FUNCS:
            if w in names:
                out[w] += n / total
    out["lock_wait"] = sum(out[w] for w in flamegraph.LOCK_WAIT_FUNCS)
    return out


def _top_lines(counter: Counter[str], total: int, what: str) -> list[str]:
    lines = [f"    top {TOP_N} by {what}:"]
    for name, n in counter.most_common(TOP_N):
        lines.append(f"      {100 * n / total:6.2f}%  {n:>7,}  {name}")
    return lines


def summary_text(prof: Profile, scenario: str, rate: int) -> str:
    """Per CPU: samples, lock-wait shares, top functions by self and total share."""
    lines = [f"AeroSync profile: {scenario} (py-spy --idle --nonblocking, {rate} Hz)", ""]
    for label in prof.labels():
        stacks = prof.by_label[label]
        total, self_c, total_c = _shares(stacks)
        if not total:
            continue
        pids = ",".join(str(p) for p in sorted(prof.pids.get(label, ())))
        lw = lock_wait_shares(stacks)
        lines.append(f"{label} (pid {pids}): {total:,} samples")
        lines.append(f"    lock waiting: {100 * lw['lock_wait']:.1f}% of samples "
                     f"(spin_wait {100 * lw['spin_wait']:.1f}%, yield_wait {100 * lw['yield_wait']:.1f}%, "
                     f"sleep_wait {100 * lw['sleep_wait']:.1f}%)")
        lines += _top_lines(self_c, total, "self")
        lines += _top_lines(total_c, total, "total")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def speedscope(prof: Profile, name: str) -> dict[str, Any]:
    """A speedscope file (https://www.speedscope.app/file-format-schema.json)."""
    frames: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def idx(frame: str) -> int:
        i = index.get(frame)
        if i is None:
            fn, _, rest = frame.partition(" (")
            entry: dict[str, Any] = {"name": fn}
            if rest:
                entry["file"] = rest.rstrip(")")
            i = index[frame] = len(frames)
            frames.append(entry)
        return i

    profiles = []
    for label in prof.labels():
        stacks = prof.by_label[label]
        samples, weights = [], []
        for stack, n in sorted(stacks.items()):
            samples.append([idx(f) for f in stack])
            weights.append(n)
        pids = ",".join(str(p) for p in sorted(prof.pids.get(label, ())))
        profiles.append({"type": "sampled", "name": f"{label} (pid {pids})", "unit": "none",
                         "startValue": 0, "endValue": sum(weights), "samples": samples, "weights": weights})
    return {"$schema": "https://www.speedscope.app/file-format-schema.json", "name": name,
            "exporter": "aerosync profile", "activeProfileIndex": 0,
            "shared": {"frames": frames}, "profiles": profiles}


def write_outputs(prof: Profile, out: Path, scenario: str, rate: int) -> list[Path]:
    """Flame graphs, speedscope JSON and summary.txt; returns the files written."""
    written = []
    for label in prof.labels():
        if label == OTHER:
            continue
        path = out / f"flame-{label}.svg"
        n = prof.total(label)
        flamegraph.write_svg(str(path), prof.by_label[label], f"{scenario}: {label}",
                             subtitle=f"{n:,} samples at {rate} Hz (py-spy --idle --nonblocking)")
        written.append(path)
    path = out / "flame-all.svg"
    merged = prof.merged()
    flamegraph.write_svg(str(path), merged, f"{scenario}: all processes",
                         subtitle=f"{sum(merged.values()):,} samples at {rate} Hz")
    written.append(path)
    path = out / "profile.speedscope.json"
    path.write_text(json.dumps(speedscope(prof, scenario)) + "\n")
    written.append(path)
    path = out / "summary.txt"
    path.write_text(summary_text(prof, scenario, rate))
    written.append(path)
    return written


# ----------------------------------------------------------------------------- running
def run_command(scenario: str, result: Path, overrides: Sequence[str]) -> list[str]:
    """`python -m aerosync.cli run SCENARIO --json -o result.json [--set ...]`."""
    cmd = [sys.executable, "-m", "aerosync.cli", "run", scenario, "--json", "--no-save", "-o", str(result)]
    return cmd + [f"--set={o}" for o in overrides]          # "=": a value may start with "-"


def pyspy_command(exe: str, raw: Path, rate: int, run_cmd: Sequence[str]) -> list[str]:
    return [exe, "record", "--subprocesses", "--idle", "--nonblocking", "--rate", str(rate),
            "--format", "raw", "-o", str(raw), "--", *run_cmd]


def _env() -> dict[str, str]:
    """The child must import this checkout's aerosync and workers even outside the venv."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_child(cmd: Sequence[str], log: Path) -> int:
    """Run a child with stdout discarded and stderr in `log`; its exit status.

    Ctrl-C from a terminal reaches the child too; a SIGTERM sent to us reaches only us,
    so it is passed on to the run the child is (or runs under py-spy).  Either way we
    wait for the run to stop its workers, save what it measured and unlink its arena.
    """
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env())
        try:
            return proc.wait()
        except KeyboardInterrupt as e:
            signum = int(getattr(e, "signum", signal.SIGINT))
            if signum != signal.SIGINT:
                _stop_runs(proc.pid, signum)
            proc.wait()
            raise


def _stop_runs(pid: int, signum: int) -> None:
    """Send `signum` to the `python -m aerosync.cli run` processes among `pid` and its
    descendants (not to py-spy, whose command line names the run too) and wait for them."""
    import psutil

    try:
        top = psutil.Process(pid)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        return
    runs = []
    for p in procs:
        try:
            cmd = p.cmdline()
            if len(cmd) > 3 and cmd[1:4] == ["-m", "aerosync.cli", "run"]:
                p.send_signal(signum)
                runs.append(p)
        except psutil.Error:
            pass
    psutil.wait_procs(runs, timeout=120)


def _warn(msg: str) -> None:
    print(f"aerosync profile: WARNING: {msg}", file=sys.stderr)


def _log_tail(log: Path, n: int = 15) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in lines[-n:])


def _validate(scenario: str, overrides: Sequence[str]) -> str:
    """Load the scenario now so a bad file or key fails before anything starts (exit 2)."""
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    return load_scenario(scenario, registry(), overrides).name


def _run_unprofiled(scenario: str, out: Path, overrides: Sequence[str], why: str) -> int:
    _warn(f"cannot profile: {why}")
    _warn("running the scenario without profiling so the run is not lost")
    rc = run_child(run_command(scenario, out / "result.json", overrides), out / "pyspy.log")
    if (out / "result.json").exists():
        print(f"aerosync profile: result (no profile) in {out / 'result.json'}")
    else:
        print(f"aerosync profile: the run failed (exit {rc}):\n{_log_tail(out / 'pyspy.log')}", file=sys.stderr)
    return rc


def profile_scenario(scenario: str, out: Path, rate: int = DEFAULT_RATE,
                     overrides: Sequence[str] = ()) -> int:
    """Run `scenario` under py-spy into `out`; the exit status of `aerosync profile`."""
    name = _validate(scenario, overrides)
    out.mkdir(parents=True, exist_ok=True)
    problem = ptrace_problem()
    exe = pyspy_path()
    if problem is not None or exe is None:
        return _run_unprofiled(scenario, out, overrides, problem or "py-spy is not installed")
    raw, result, log = out / "raw.txt", out / "result.json", out / "pyspy.log"
    for p in (raw, result, log):
        p.unlink(missing_ok=True)
    rc = run_child(pyspy_command(exe, raw, rate, run_command(scenario, result, overrides)), log)
    log_text = log.read_text(errors="replace") if log.exists() else ""
    have_raw = raw.exists() and raw.stat().st_size > 0
    refused = looks_like_permission_error(log_text)
    if not have_raw:
        why = (f"py-spy was refused permission to trace the run: {PERMISSION_FIX}" if refused
               else f"py-spy wrote no samples (exit {rc}):\n{_log_tail(log)}")
        if not result.exists():
            return _run_unprofiled(scenario, out, overrides, why)
        _warn(why)
        _warn(f"the run completed without a profile: {result}")
        return 0
    if not result.exists():
        print(f"aerosync profile: the run failed (exit {rc}); partial samples kept in {raw}\n"
              f"{_log_tail(log)}", file=sys.stderr)
        return rc or 1
    pid_map = json.loads(result.read_text()).get("pid_map", {})
    prof = build_profile(read_raw(raw), pid_map)
    if not any(k.startswith("cpu") for k in prof.by_label):
        _warn("no worker was sampled" + (f": {PERMISSION_FIX}" if refused else " (run too short?)"))
    written = write_outputs(prof, out, name, rate)
    sys.stdout.write((out / "summary.txt").read_text())
    print(f"\naerosync profile: wrote {', '.join(p.name for p in written)} in {out}")
    return rc


# ----------------------------------------------------------------------------- CLI
def _default_out(scenario: str) -> Path:
    stem = Path(scenario).stem or "scenario"
    return Path("profiles") / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}"


def cmd_profile(args: argparse.Namespace) -> int:
    """`aerosync profile SCENARIO [--rate HZ] [--out DIR] [--set k=v ...]`."""
    from aerosync.errors import UsageError

    if not 1 <= args.rate <= 10_000:
        raise UsageError(f"--rate {args.rate}: allowed 1..10000 samples per second (100-250 for contention runs)")
    out = Path(args.out) if args.out else _default_out(args.scenario)
    return profile_scenario(args.scenario, out, args.rate, list(args.set or []))


def add_profile_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `profile` on an argparse subparsers object."""
    p = sub.add_parser("profile", help="run a scenario under py-spy: flame graphs per simulated CPU",
                       description="Run SCENARIO under py-spy (--subprocesses --idle --nonblocking) and "
                                   "write per-CPU flame graphs, speedscope JSON and a summary.")
    p.add_argument("scenario", help="scenario TOML")
    p.add_argument("--rate", type=int, default=DEFAULT_RATE, help="samples per second (default: %(default)s)")
    p.add_argument("--out", help="output directory (default: profiles/<time>-<scenario>)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a scenario key")
    p.set_defaults(func=cmd_profile)
    return p

