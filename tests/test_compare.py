"""Comparisons: a 2x difference is flagged, two draws of the same distribution are not.

Synthetic results (fixed seeds) stand in for runs: real re-runs on a small noisy host
could differ by more than their own noise and make the test flaky.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import pytest

from aerosync.errors import UsageError
from aerosync.report.compare import add_compare_parser, compare, load
from aerosync.report.schema import validate_result


def synthetic(rate: float, seed: int, *, n: int = 30, cpus: int = 2, noise: float = 0.05,
              views: dict[str, Any] | None = None) -> dict[str, Any]:
    """A schema-valid result whose per-CPU ops/s per 0.1 s interval are rate x (1 ± noise)."""
    rng = random.Random(seed)
    ops, t, samples = [0] * cpus, 0.0, [{"t": 0.0, "ops": [0] * cpus}]
    for _ in range(n):
        t += 0.1
        ops = [o + int(rate * 0.1 * rng.gauss(1.0, noise)) for o in ops]
        samples.append({"t": round(t, 6), "ops": list(ops)})
    total = sum(ops)
    cpu = [{"cpu": c, "node": 0, "host_cpu": c, "pid": 1000 + c, "ops": ops[c], "ops_per_s": ops[c] / t,
            "ops_per_s_min": 0.0, "ops_per_s_median": 0.0, "ops_per_s_max": 0.0, "state": "stopped"}
           for c in range(cpus)]
    views = views or {}
    d = {
        "schema_version": 1,
        "scenario": {"name": "synthetic", "description": "", "file": "",
                     "run": {"workload": "lock_storm", "duration": t, "warmup": 0.25, "sample_interval": 0.1,
                             "seed": seed},
                     "machine": {"cpus": cpus, "memory": 4 << 20}, "workload": {}},
        "environment": {"allowed_cpus": list(range(cpus)), "host_topology": {}, "python": "3.11",
                        "git_revision": "test"},
        "simulated_topology": {"nr_cpus": cpus, "nr_nodes": 1, "cpu_to_node": [0] * cpus,
                               "host_cpu": list(range(cpus))},
        "elapsed_s": t + 0.5, "measured_s": t - 0.25, "ready_s": 0.3, "total_ops": total, "ops_per_s": total / t,
        "cpus": cpu, "samples": samples,
        "lock_stat": [{"lock_class": "lock_storm_lock", "acquisitions": total, "contentions": total // 4,
                       "wait_total": 1000 * (total // 4), "wait_max": 50000}],
        "workload": {"lost_updates": 0}, "notes": [],
        "latency": {"all": {"samples": 100, "p50_ns": 1000.0, "p99_ns": 5000.0, "p999_ns": 9000.0,
                            "max_ns": 9000.0}},
        "pid_map": {str(1000 + c): c for c in range(cpus)},
        "views_before": {k: {"text": "", "json": v[0]} for k, v in views.items()},
        "views_after": {k: {"text": "", "json": v[1]} for k, v in views.items()},
    }
    validate_result(d)
    return d


def _write(tmp_path: Path, name: str, d: dict[str, Any]) -> Path:
    p = tmp_path / name
    p.mkdir()
    (p / "result.json").write_text(json.dumps(d))
    return p


def _rows(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {r.name: r for r in compare(("run", a), ("run", b))}


def test_flags_a_2x_difference() -> None:
    rows = _rows(synthetic(1e6, seed=1), synthetic(2e6, seed=2))
    for name in ("ops/s total", "ops/s cpu0", "ops/s cpu1"):
        assert rows[name].significant, name
        assert rows[name].p < 0.001
    assert not rows["latency p99"].significant           # one value per run: shown, never flagged
    assert rows["latency p99"].p is None


def test_does_not_flag_a_rerun_of_the_same_distribution() -> None:
    rows = _rows(synthetic(1e6, seed=11, noise=0.1), synthetic(1e6, seed=12, noise=0.1))
    assert not any(r.significant for r in rows.values()), [(r.name, r.p) for r in rows.values()]


def test_cli_prints_marks_footer_and_view_deltas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vm = ({"pgalloc": 10, "pgfree": 5}, {"pgalloc": 110, "pgfree": 45})
    a = _write(tmp_path, "a", synthetic(1e6, seed=3, views={"vmstat": vm}))
    b = _write(tmp_path, "b", synthetic(2e6, seed=4, views={"vmstat": (vm[0], {"pgalloc": 210, "pgfree": 85})}))
    p = argparse.ArgumentParser()
    add_compare_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(["compare", str(a), str(b / "result.json")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("ops/s total"))
    assert total.rstrip().endswith("*")
    assert "Welch" in out and "p < 0.05" in out
    assert "vmstat deltas" in out and "pgalloc" in out and "200" in out


@pytest.mark.parametrize("make,what", [
    (lambda t: t / "missing", "no such file"),
    (lambda t: t, "no result.json"),
    (lambda t: (t / "x.json").write_text("{not json") and t / "x.json", "cannot read JSON"),
    (lambda t: (t / "y.json").write_text('{"a": 1}') and t / "y.json", "not an AeroSync result"),
])
def test_bad_paths_are_usage_errors(tmp_path: Path, make: Any, what: str) -> None:
    path = make(tmp_path)
    with pytest.raises(UsageError, match=what) as ei:
        load(path)
    assert str(path) in str(ei.value)


def test_run_against_sweep_is_a_usage_error(tmp_path: Path) -> None:
    sweep = {"kind": "aerosync-sweep", "vary": [], "points": []}
    with pytest.raises(UsageError, match="two runs or two sweeps"):
        compare(("run", synthetic(1e6, seed=5)), ("sweep", sweep))
