"""Reliability figures (issue 13): the queued spinlock's fairness and cost; the crash
tolerance figures (crash_soak_*, crash_recovery_ms, hotplug_cycle_ms) join this suite as
more GROUPS entries.  Run with `aerosync bench reliability`.

Storm figures come from the lock_storm workload on 2 simulated CPUs (a 1-iteration
critical section, no think time): `qspinlock_wait_max_ms` is lock_stat's waittime-max of
lock_storm_lock, `qspinlock_fairness` is Jain's index (sum x)^2 / (n sum x^2) of the
acquisitions per CPU (1.0 = equal shares).  The same storm with the TAS lock is reported
beside them, measured in the same repetition.  The uncontended pair is acquire + release
on one CPU with lock_stat on (hold sampled 1 in 8), both kinds timed alternately in one
process so their ratio is taken within one run.
"""

from __future__ import annotations

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.bench.foundation import _scenario, _timeit_ns

__all__ = ["GROUPS", "jain_index"]

STORM_S = 1.2


def jain_index(xs: list[float]) -> float:
    """Jain's fairness index of the shares xs: 1/n (one gets all) .. 1 (all equal)."""
    total, sq = sum(xs), sum(x * x for x in xs)
    return total * total / (len(xs) * sq) if sq else 1.0


def _storm(spinlock: str) -> dict[str, float]:
    from aerosync import coordinator
    from aerosync.scenario import with_overrides
    from workers.workloads import registry
    from workers.workloads.lock_storm import LOCK_CLASS

    scn = _scenario("lock_storm", 2, STORM_S, cs_iters=1, think_iters=0)
    scn = with_overrides(scn, registry(), [f"locks.spinlock={spinlock}"])
    res = coordinator.run(scn)
    s = next(s for s in res.lock_stat if s["lock_class"] == LOCK_CLASS)
    acq = [c["counters"]["acquisitions"] for c in res.to_dict()["cpus"]]
    return {"wait_max_ms": s["wait_max"] / 1e6, "fairness": jain_index(acq), "ops_s": res.ops_per_s}


def bench_storm() -> dict[str, float]:
    q, t = _storm("qspinlock"), _storm("tas")
    return {"qspinlock_wait_max_ms": q["wait_max_ms"], "qspinlock_fairness": q["fairness"],
            "qspinlock_storm_ops_s": q["ops_s"], "tas_storm_wait_max_ms": t["wait_max_ms"],
            "tas_storm_fairness": t["fairness"], "tas_storm_ops_s": t["ops_s"]}


def bench_uncontended() -> dict[str, float]:
    from aerosync.sync.lockstat import lock_alloc
    from aerosync.sync.spinlock import SpinLock

    cfg = {"nr_cpus": 1, "bench": "reliability", "locks": {"spinlock": "tas", "classes": {"bench_q": "qspinlock"}}}
    arena = Arena.create(cfg, L.base_sections(1, 16))
    try:
        t_lock = SpinLock(arena, lock_alloc(arena, "bench_t", "t"), 0)
        q_lock = SpinLock(arena, lock_alloc(arena, "bench_q", "q"), 0)
        tg, qg = {"a": t_lock.acquire, "r": t_lock.release}, {"a": q_lock.acquire, "r": q_lock.release}
        tas = q = float("inf")
        for _ in range(3):                       # alternate: both see the same machine
            tas = min(tas, _timeit_ns("a(); r()", tg))
            q = min(q, _timeit_ns("a(); r()", qg))
        del t_lock, q_lock, tg, qg
    finally:
        arena.close()
        arena.unlink()
    return {"qspinlock_uncontended_ns": q, "tas_uncontended_ns": tas,
            "qspinlock_vs_tas_uncontended": q / tas if tas else 0.0}


GROUPS = {
    "qspinlock_storm": (bench_storm, [
        ("qspinlock_wait_max_ms", "ms", "<= 1 (2-CPU lock storm, lock_stat wait-max)"),
        ("qspinlock_fairness", "", ">= 0.95 (Jain's index of acquisitions per CPU)"),
        ("qspinlock_storm_ops_s", "ops/s", "reported"),
        ("tas_storm_wait_max_ms", "ms", "reported (the TAS lock, same storm)"),
        ("tas_storm_fairness", "", "reported (the TAS lock, same storm)"),
        ("tas_storm_ops_s", "ops/s", "reported"),
    ]),
    "qspinlock_uncontended": (bench_uncontended, [
        ("qspinlock_uncontended_ns", "ns", "<= 1.2 x tas_uncontended_ns (acquire + release)"),
        ("tas_uncontended_ns", "ns", "reported (same run)"),
        ("qspinlock_vs_tas_uncontended", "x", "<= 1.2"),
    ]),
}
