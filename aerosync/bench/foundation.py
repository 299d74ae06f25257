"""Foundation figures (issue 2): atomics, the spinlock, counter and lock storms, the
arena and worker start-up.  Run with `aerosync bench foundation`."""

from __future__ import annotations

import time
import timeit
from typing import Any

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.params import PAGE_META_SIZE

__all__ = ["GROUPS"]


def _timeit_ns(stmt: str, g: dict[str, Any], number: int = 200_000) -> float:
    base = min(timeit.repeat("pass", globals=g, number=number, repeat=3))
    t = min(timeit.repeat(stmt, globals=g, number=number, repeat=3))
    return max(0.0, (t - base) / number * 1e9)


def _small_arena(**config: Any) -> Arena:
    cfg = {"nr_cpus": 1, "bench": True, **config}
    return Arena.create(cfg, L.base_sections(1, 16))


def bench_atomic() -> dict[str, float]:
    arena = _small_arena()
    try:
        cas = arena.atomic.cas64
        off = arena.off("cpu")
        return {"atomic_cas_ns": _timeit_ns("cas(off, 0, 0)", {"cas": cas, "off": off})}
    finally:
        arena.close()
        arena.unlink()


def bench_spinlock() -> dict[str, float]:
    from aerosync.sync.lockstat import lock_alloc
    from aerosync.sync.spinlock import SpinLock

    out = {}
    for key, cfg in (("spinlock_uncontended_ns", {}),
                     ("spinlock_uncontended_fullstat_ns", {"lock_hold_sample": 1}),
                     ("spinlock_uncontended_nostat_ns", {"lock_stat": False})):
        arena = _small_arena(**cfg)
        try:
            lock = SpinLock(arena, lock_alloc(arena, "bench", "b"), 0)
            a, r = lock.acquire, lock.release
            out[key] = _timeit_ns("a(); r()", {"a": a, "r": r})
            del lock, a, r
        finally:
            arena.close()
            arena.unlink()
    return out


def _scenario(workload: str, cpus: int, duration: float, **params: Any) -> Any:
    import tempfile
    from pathlib import Path

    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    body = [f'[run]\nworkload = "{workload}"\nduration = {duration}\nwarmup = {duration / 4}\n',
            f"[machine]\ncpus = {cpus}\nmemory = \"8M\"\n", "[workload]\n"]
    for k, v in params.items():
        body.append(f"{k} = {v!r}\n".replace("'", '"') if isinstance(v, str) else f"{k} = {str(v).lower()}\n")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"bench-{workload}.toml"
        p.write_text("".join(body))
        return load_scenario(p, registry())


def _run(workload: str, cpus: int, duration: float = 1.2, **params: Any) -> Any:
    from aerosync import coordinator

    return coordinator.run(_scenario(workload, cpus, duration, **params))


def bench_counter_storm() -> dict[str, float]:
    one = _run("counter_storm", 1, mode="percpu").ops_per_s
    two = _run("counter_storm", 2, mode="percpu").ops_per_s
    shared = _run("counter_storm", 2, mode="shared").ops_per_s
    false_sh = _run("counter_storm", 2, mode="percpu", false_sharing=True).ops_per_s
    return {
        "counter_storm_percpu_scaling": two / one,
        "counter_storm_shared_vs_percpu": shared / two,
        "counter_storm_false_sharing_vs_percpu": false_sh / two,
        "counter_storm_percpu_2cpu_ops_s": two,
    }


def bench_lock_storm() -> dict[str, float]:
    res = _run("lock_storm", 2, cs_iters=1, think_iters=0)
    s = next(s for s in res.lock_stat if s["lock_class"] == "lock_storm_lock")
    return {
        "lock_storm_contentions_pct": 100.0 * s["contentions"] / max(1, s["acquisitions"]),
        "lock_storm_2cpu_ops_s": res.ops_per_s,
    }


def bench_arena() -> dict[str, float]:
    nr_pages = (1 << 30) // 4096
    t0 = time.perf_counter()
    arena = Arena.create({"bench": "arena_1gib"}, L.base_sections(2, nr_pages))
    try:
        _init_hook(arena)
        t1 = time.perf_counter()
        meta = arena.sections["pagemeta"][1] / nr_pages
    finally:
        arena.close()
        arena.unlink()
    return {"arena_1gib_create_s": t1 - t0, "page_meta_bytes": meta}


def _init_hook(arena: Arena) -> None:
    """Initialise struct pages the way a run does (all zero until mm exists)."""
    import numpy as np

    meta = arena.array("pagemeta", np.uint64)
    meta[:] = 0
    del meta


def bench_ready() -> dict[str, float]:
    from aerosync import coordinator

    res = coordinator.run(_scenario("null", 2, 1.0), ready_only=True)
    return {"workers_2_ready_s": res.ready_s}


GROUPS = {
    "atomics": (bench_atomic, [("atomic_cas_ns", "ns", "<= 100")]),
    "spinlock": (bench_spinlock, [("spinlock_uncontended_ns", "ns", "<= 250"),
                                  ("spinlock_uncontended_fullstat_ns", "ns", "reported (every hold timed)"),
                                  ("spinlock_uncontended_nostat_ns", "ns", "reported (lock_stat off)")]),
    "counter_storm": (bench_counter_storm, [("counter_storm_percpu_scaling", "x", ">= 1.7"),
                                            ("counter_storm_shared_vs_percpu", "x", "reported (< 1 expected)"),
                                            ("counter_storm_false_sharing_vs_percpu", "x", "reported"),
                                            ("counter_storm_percpu_2cpu_ops_s", "ops/s", "reported")]),
    "lock_storm": (bench_lock_storm, [("lock_storm_contentions_pct", "%", "reported, > 0"),
                                      ("lock_storm_2cpu_ops_s", "ops/s", "reported")]),
    "arena": (bench_arena, [("arena_1gib_create_s", "s", "<= 1.5"), ("page_meta_bytes", "B", "<= 64")]),
    "workers": (bench_ready, [("workers_2_ready_s", "s", "<= 1.5")]),
}

assert PAGE_META_SIZE <= 64
