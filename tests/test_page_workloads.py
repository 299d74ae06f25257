"""Page workloads through the whole harness: pinned workers, verified pages, the checker
after (and during) the run, NUMA policies end to end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aerosync import coordinator
from aerosync.arena.cleanup import find_project_objects
from aerosync.errors import ScenarioError
from aerosync.scenario import load_scenario
from workers.workloads import registry

REPO = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, body: str, *overrides: str):
    p = tmp_path / "s.toml"
    p.write_text(body)
    return coordinator.run(load_scenario(p, registry(), overrides)).to_dict()


def test_cross_cpu_page_stress_1e5_ops_then_checker(tmp_path: Path, soak: bool) -> None:
    """Invariant: no page is ever handed to two owners (stamps verified before every free),
    every block allocated is freed exactly once, and the machine passes the checker
    during (live, workers parked) and after the run."""
    ops = 250_000 if soak else 50_000
    d = _run(tmp_path, f'[run]\nworkload = "page_storm"\nops = {ops}\ncheck_interval = 0.3\n'
                       '[machine]\ncpus = 2\nmemory = "16M"\n'
                       '[workload]\norders = [0, 0, 0, 1, 2, 3]\nmax_held = 96\ncross_cpu_pct = 50\n')
    w = d["workload"]
    assert sum(c["ops"] for c in d["cpus"]) >= 2 * ops
    assert w["corrupt"] == 0
    assert w["remote_frees"] > 0
    assert w["allocs"] == w["frees"] + w["ring_leftovers_freed"]
    assert d["mm_check"]["ok"], d["mm_check"]["violations"]
    assert [n for n, pid in find_project_objects() if pid == os.getpid()] == []


def test_fragmentation_fails_high_orders(tmp_path: Path) -> None:
    d = _run(tmp_path, '[run]\nworkload = "fragmentation"\nops = 400\n[machine]\ncpus = 1\nmemory = "16M"\n'
                       "[workload]\nkeep_stride = 16\norders = [2, 8, 10]\n")
    per = d["workload"]["per_order"]
    assert per["8"]["fail_pct"] == 100.0 and per["10"]["fail_pct"] == 100.0   # a pin every 16 pages
    assert per["2"]["ok"] > 0
    assert d["workload"]["corrupt"] == 0 and d["mm_check"]["ok"]


@pytest.mark.parametrize("policy,remote_pct", [("local", 0.0), ("bind=1", 50.0), ("interleave=all", 50.0)])
def test_numa_policy_placement_end_to_end(tmp_path: Path, policy: str, remote_pct: float) -> None:
    """Two fake nodes, one CPU each, the same op count per CPU: local keeps every page on
    the CPU's node; bind=1 sends all of cpu0's pages to node 1; interleave splits both."""
    d = _run(tmp_path, '[run]\nworkload = "page_storm"\nops = 4000\n'
                       '[machine]\ncpus = 2\nmemory = "16M"\ntopology = "fake:2:21"\nremote_access_ns = 50\n'
                       f'[numa]\npolicy = "{policy}"\n'
                       "[workload]\norders = [0]\nmax_held = 32\nlong_lived_pct = 0\n")
    assert d["workload"]["remote_node_pct"] == pytest.approx(remote_pct, abs=1.0)
    numastat = d["views_after"]["numastat"]["json"]
    if policy == "interleave=all":
        assert numastat["node0"]["interleave_hit"] > 0 and numastat["node1"]["interleave_hit"] > 0
    if policy == "bind=1":
        assert numastat["node1"]["other_node"] > 0
    assert d["mm_check"]["ok"]


def test_bad_policy_is_a_usage_error_naming_the_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[run]\nworkload = "page_storm"\n[machine]\ncpus = 2\nmemory = "16M"\ntopology = "fake:2"\n'
                 '[numa]\npolicy = "bind=5"\n')
    with pytest.raises(ScenarioError) as ei:
        coordinator.run(load_scenario(p, registry()))
    assert ei.value.key == "numa.policy" and str(p) in str(ei.value)
    assert [n for n, pid in find_project_objects() if pid == os.getpid()] == []


def test_views_saved_before_and_after(tmp_path: Path) -> None:
    d = _run(tmp_path, '[run]\nworkload = "page_storm"\nops = 2000\n[machine]\ncpus = 1\nmemory = "8M"\n')
    for view in ("buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat", "numastat", "lock_stat"):
        assert view in d["views_before"] and view in d["views_after"]
    assert d["views_after"]["vmstat"]["json"]["pgfree"] > d["views_before"]["vmstat"]["json"]["pgfree"]
