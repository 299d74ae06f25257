"""Slab figures (issue 4): SLUB's paths in-process, its scaling and CAS retries in runs.

  * kmalloc64_fastpath_pair_us: kmalloc(64) + kfree on a warm CPU slab (timeit);
  * slub_slowpath_pair_us: alloc + free forced through the node partial list under
    list_lock and the slab-word CAS (no CPU slab, no magazine), and the fast ÷ slow ratio;
  * slub_remote_free_us: one object freed by a CPU that is not its slab's (a second
    handle in the same process, magazines off: every free is the slab-word CAS);
  * kmalloc64_debug_pair_us: the pair with poisoning, red zones and user tracking on;
  * slub_scaling_2cpu: SLUB churn, 2 CPUs over 1 CPU (one repetition measures both);
  * slub_cas_retry_pct: CAS failures per 100 SLUB operations under larson at 2 CPUs;
  * xmalloc_2cpu_objs_s: objects per second through a producer/consumer pair.
"""

from __future__ import annotations

import timeit
from pathlib import Path
from typing import Any

from aerosync.arena.segment import Arena
from aerosync.mm.boot import create_machine
from aerosync.mm.pmm.init import single_node_sim
from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.slab_common import (
    SLAB_POISON,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    VBASE,
    kmem_cache_create,
)
from aerosync.mm.slab.slub import Slub

__all__ = ["GROUPS"]

_SCEN = Path(__file__).resolve().parent.parent.parent / "scenarios"


def _machine(nr_cpus: int = 2, **config: Any) -> Arena:
    return create_machine({"nr_cpus": nr_cpus, "nr_pages": 16384, "sim": single_node_sim(nr_cpus), **config})


def _pair_us(stmt: str, g: dict[str, Any], number: int = 20_000) -> float:
    base = min(timeit.repeat("pass", globals=g, number=number, repeat=3))
    t = min(timeit.repeat(stmt, globals=g, number=number, repeat=3))
    return (t - base) / number * 1e6


def _paths(arena: Arena) -> dict[str, float]:
    s0 = Slub(arena, 0)
    km = Kmalloc(s0)
    km.kfree(km.kmalloc(64))
    fast = _pair_us("f(a(64))", {"a": km.kmalloc, "f": km.kfree})
    c = s0.cache(kmem_cache_create(arena, "bench-slow-64", 64))

    def slow_free(x: int) -> None:                    # __slab_free: no cpu slab, no magazine
        pfn = (x - VBASE) >> 12
        c.free_slow(pfn, c.obj_index(pfn, x))

    slow = _pair_us("f(a(0, 0))", {"a": c.alloc_slow, "f": slow_free})
    d = s0.cache(kmem_cache_create(arena, "bench-dbg-64", 64, 0, SLAB_POISON | SLAB_RED_ZONE | SLAB_STORE_USER))
    dbg = _pair_us("f(a())", {"a": d.alloc, "f": d.free}, number=3000)
    return {"kmalloc64_fastpath_pair_us": fast, "slub_slowpath_pair_us": slow,
            "slub_fast_over_slow": fast / slow, "kmalloc64_debug_pair_us": dbg}


def bench_paths() -> dict[str, float]:
    arena = _machine()
    try:
        return _paths(arena)
    finally:
        arena.close()
        arena.unlink()


def _remote(arena: Arena) -> float:
    c0 = Slub(arena, 0).cache(kmem_cache_create(arena, "bench-remote-64", 64))
    c1 = Slub(arena, 1).cache("bench-remote-64")
    free1, n, best = c1.free, 20_000, float("inf")
    for _ in range(3):
        objs = [c0.alloc() for _ in range(n)]
        t = timeit.timeit(lambda objs=objs: [free1(o) for o in objs], number=1)
        best = min(best, t / n * 1e6)
    return best


def bench_remote_free() -> dict[str, float]:
    arena = _machine(slab_mag_size=0)
    try:
        return {"slub_remote_free_us": _remote(arena)}
    finally:
        arena.close()
        arena.unlink()


def _run(scenario: str, *overrides: str) -> Any:
    from aerosync import coordinator
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    scn = load_scenario(_SCEN / scenario, registry(), ["run.duration=1.5", "run.warmup=0.3", *overrides])
    return coordinator.run(scn)


def bench_runs() -> dict[str, float]:
    one = _run("slub-churn.toml", "machine.cpus=1").ops_per_s
    two = _run("slub-churn.toml", "machine.cpus=2").ops_per_s
    larson = _run("larson.toml", "machine.cpus=2")
    xm = _run("xmalloc.toml", "machine.cpus=2")
    return {"slub_scaling_2cpu": two / one, "slub_cas_retry_pct": larson.workload["slub_cas_retry_pct"],
            "larson_2cpu_ops_s": larson.ops_per_s,
            "xmalloc_2cpu_objs_s": xm.workload["frees"] / xm.measured_s}


GROUPS = {
    "paths": (bench_paths, [("kmalloc64_fastpath_pair_us", "us", "<= 1.5"),
                            ("slub_slowpath_pair_us", "us", "reported"),
                            ("slub_fast_over_slow", "x", "reported"),
                            ("kmalloc64_debug_pair_us", "us", "reported")]),
    "remote": (bench_remote_free, [("slub_remote_free_us", "us", "reported")]),
    "runs": (bench_runs, [("slub_scaling_2cpu", "x", ">= 1.7"), ("slub_cas_retry_pct", "%", "reported"),
                          ("larson_2cpu_ops_s", "ops/s", "reported"), ("xmalloc_2cpu_objs_s", "obj/s", "reported")]),
}
