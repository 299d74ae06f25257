"""Profiling figures (issue 5): what watching a run costs.

  * pyspy_overhead_pct: throughput lost when the run is recorded the way `aerosync
    profile` records it (py-spy record --subprocesses --idle --nonblocking, default
    rate 100 Hz), against the same command without py-spy;
  * sampling_overhead_pct: coordinator sampling at 10 Hz against (almost) none
    (sample_interval = 10 s, longer than the run: only the opening and closing samples).

Each measurement runs the two sides in A B B A order, back to back, on a CPU-bound
workload (counter_storm per-CPU, 2 CPUs), so that drift on this shared machine cancels
and noise hits both sides alike; the runner reports the median over repetitions.
Negative values mean "no measurable cost" (the noise is larger than the cost).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from aerosync.bench.skip import SkipFigure
from aerosync.profile import pyspy_command, run_child, run_command
from aerosync.pyspy import ptrace_problem, pyspy_path

__all__ = ["GROUPS"]

_SCENARIO = Path(__file__).resolve().parent.parent.parent / "scenarios" / "counter-storm.toml"
_OVERRIDES = ("machine.cpus=2", "run.duration=2.0", "run.warmup=0.4", 'machine.memory="8M"')


def _ops(cmd: list[str], result: Path) -> float:
    log = result.with_name("run.log")
    rc = run_child(cmd, log)          # a Ctrl-C / SIGTERM of the bench stops the child run cleanly too
    if rc:
        raise RuntimeError(f"exit {rc}: {' '.join(cmd)}\n{log.read_text(errors='replace')[-2000:]}")
    return float(json.loads(result.read_text())["ops_per_s"])


def bench_pyspy() -> dict[str, float]:
    problem = ptrace_problem()
    if problem or pyspy_path() is None:
        raise SkipFigure(problem or "py-spy is not installed")
    with tempfile.TemporaryDirectory() as d:
        res = Path(d) / "result.json"
        run = run_command(str(_SCENARIO), res, _OVERRIDES)
        traced_cmd = pyspy_command(str(pyspy_path()), Path(d) / "raw.txt", 100, run)
        plain = _ops(run, res)
        traced = _ops(traced_cmd, res) + _ops(traced_cmd, res)
        plain += _ops(run, res)
    return {"pyspy_overhead_pct": 100.0 * (1 - traced / plain)}


def bench_sampling() -> dict[str, float]:
    from aerosync import coordinator
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    def ops(interval: float) -> float:
        scn = load_scenario(_SCENARIO, registry(),
                            [*_OVERRIDES, "run.warmup=0", f"run.sample_interval={interval}"])
        return coordinator.run(scn).ops_per_s

    none = ops(10.0)
    ten_hz = ops(0.1) + ops(0.1)
    none += ops(10.0)
    return {"sampling_overhead_pct": 100.0 * (1 - ten_hz / none)}


GROUPS = {
    "pyspy": (bench_pyspy, [("pyspy_overhead_pct", "%", "<= 10")]),
    "sampling": (bench_sampling, [("sampling_overhead_pct", "%", "<= 2")]),
}

if __name__ == "__main__":  # pragma: no cover
    print(bench_pyspy(), bench_sampling(), file=sys.stderr)
