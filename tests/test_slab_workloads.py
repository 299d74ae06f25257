"""Slab workloads through the whole harness: objects stamped with (cpu, seq) and verified
before every free, remote frees through rings, and the page + slab checkers after."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aerosync import coordinator
from aerosync.arena.cleanup import find_project_objects
from aerosync.scenario import load_scenario
from workers.workloads import registry


def _run(tmp_path: Path, body: str) -> dict:
    p = tmp_path / "s.toml"
    p.write_text(body)
    return coordinator.run(load_scenario(p, registry())).to_dict()


def _ok(d: dict) -> dict:
    w = d["workload"]
    assert w["corrupt"] == 0, "an object was handed to two owners"
    assert w["allocs"] == w["frees"] + w["ring_leftovers_freed"], w
    assert w.get("leaked_objects", 0) == 0, w
    assert d["mm_check"]["ok"], d["mm_check"]["violations"]
    assert [n for n, pid in find_project_objects() if pid == os.getpid()] == []
    return w


@pytest.mark.parametrize("workload,params,mag,spinlock", [
    ("larson", "cross_cpu_pct = 50\npool = 128\n", 16, "tas"),
    ("xmalloc", "cross_cpu_pct = 100\n", 16, "tas"),
    ("xmalloc", "cross_cpu_pct = 100\n", 0, "tas"),
    ("xmalloc", "cross_cpu_pct = 100\n", 0, "qspinlock"),
])
def test_remote_free_stress_1e5_ops(tmp_path: Path, workload: str, params: str, mag: int, spinlock: str,
                                    soak: bool) -> None:
    """Invariant S5 of mm/slab/slub.py (objects in slabs = free + per-CPU + magazines +
    allocated) and the page checker hold after >= 1e5 operations with remote frees
    (list_lock, zone lock and slab_mutex as queued spinlocks too)."""
    ops = 300_000 if soak else 50_000
    w = _ok(_run(tmp_path, f'[run]\nworkload = "{workload}"\nops = {ops}\ncheck_interval = 0.4\n'
                           f'[machine]\ncpus = 2\nmemory = "16M"\n[slab]\nmag_size = {mag}\n'
                           f'[locks]\nspinlock = "{spinlock}"\n[workload]\n{params}'))
    assert w["remote_frees"] > 0
    if mag:      # remote frees of local-node objects land in the freeing CPU's magazine
        assert w["slub_free_mag"] > 0
    else:        # no magazine: each remote free is a CAS on the slab word (__slab_free)
        assert w["slub_free_slowpath"] > 0


@pytest.mark.parametrize("workload,params", [
    ("slub_churn", "cross_cpu_pct = 25\n"),
    ("slab_bulk", 'mode = "bulk"\ncross_cpu_pct = 25\n'),
    ("slab_bulk", 'mode = "sheaf"\n'),
    ("kmalloc_sweep", "cross_cpu_pct = 20\n"),
])
def test_slab_workloads_verified(tmp_path: Path, workload: str, params: str) -> None:
    w = _ok(_run(tmp_path, f'[run]\nworkload = "{workload}"\nops = 4000\n'
                           f'[machine]\ncpus = 2\nmemory = "16M"\n[workload]\n{params}'))
    assert w["allocs"] > 0
    if workload == "kmalloc_sweep":
        assert all(n > 0 for n in w["ops_per_size"].values())      # 16 KiB goes to the page allocator


def test_slub_debug_run_stays_clean(tmp_path: Path) -> None:
    d = _run(tmp_path, '[run]\nworkload = "larson"\nops = 3000\n[machine]\ncpus = 2\nmemory = "16M"\n'
                       '[slab]\ndebug = "FZPU"\n[workload]\ncross_cpu_pct = 50\npool = 64\n')
    _ok(d)
    caches = {c["name"]: c for c in d["views_after"]["slabinfo"]["json"]}
    assert caches["kmalloc-64"]["nr_bugs"] == 0
    assert "slabinfo - version: 2.1" in d["views_after"]["slabinfo"]["text"]


@pytest.mark.parametrize("workload,spinlock", [("larson", "tas"), ("page_storm", "tas"), ("larson", "qspinlock")])
def test_real_paths_obey_the_lock_order_under_lockdep(tmp_path: Path, workload: str, spinlock: str) -> None:
    """With [machine] lockdep = true every SpinLock acquisition checks the documented order
    (sync/lockdep.py): SLUB's and the page allocator's real paths never break it."""
    _ok(_run(tmp_path, f'[run]\nworkload = "{workload}"\nops = 5000\n'
                       '[machine]\ncpus = 2\nmemory = "16M"\nlockdep = true\n'
                       f'[locks]\nspinlock = "{spinlock}"\n'))


@pytest.mark.parametrize("spinlock", ["tas", "qspinlock"])
def test_interrupt_context_thread_shares_the_cpu_slab(tmp_path: Path, spinlock: str) -> None:
    """slub_churn with irq_hz: a second thread per worker allocates from the same caches
    through the same per-CPU freelist|tid word (Slub(irq=True)); nothing is handed out
    twice, nothing leaks, and both checkers pass.  (qspinlock: the irq context queues on
    its own MCS node, as Linux's nesting index gives an interrupt its own.)"""
    w = _ok(_run(tmp_path, '[run]\nworkload = "slub_churn"\nduration = 1.5\nwarmup = 0.2\n'
                           '[machine]\ncpus = 2\nmemory = "16M"\n'
                           f'[locks]\nspinlock = "{spinlock}"\n'
                           "[workload]\nirq_hz = 500\nirq_batch = 16\ncross_cpu_pct = 20\n"))
    assert w["irq_allocs"] > 0 and w["irq_allocs"] == w["irq_frees"]
