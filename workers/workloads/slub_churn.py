"""SLUB churn: each CPU allocates and frees objects of one cache, mostly on its own.

The per-CPU fast path at work (one CAS on the freelist|tid word per operation), with
`cross_cpu_pct` % of the frees handed to the next CPU (remote frees onto its slabs).
Operation = allocate one object (freeing a held one first when `max_held` are held).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.segment import Arena
from workers.workloads import _slab

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

COUNTERS = _slab.COUNTERS


@dataclass(frozen=True, slots=True)
class Params:
    size: int = 64                # object size (a dedicated cache "aero-obj-<size>")
    max_held: int = 64            # objects held per CPU
    cross_cpu_pct: int = 0        # % of frees done by the next CPU

    validate = _slab.check_params


sections, setup, report = _slab.workload_sections, _slab.cache_setup, _slab.workload_report


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    e = _slab.Engine(arena, cpu)
    cache = e.slub.cache(_slab.cache_name(params.size))
    alloc, free = cache.alloc, cache.free
    stamp, check, push, pop_all = e.stamp, e.check, e.ring.push, e.ring.pop_all
    q, c = e.q, e.c
    size, max_held = params.size, params.max_held
    cross = params.cross_cpu_pct if e.nr_cpus > 1 else 0
    randrange = rng.randrange
    pack, unpack = _slab.pack, _slab.unpack
    held: list[tuple[int, int]] = []
    seq = 0

    def release(addr: int, value: int) -> None:
        if not check(addr, size, value):
            q[c + 4] += 1
        if cross and randrange(100) < cross and push(pack(addr, size)):
            q[c + 3] += 1
            return
        free(addr)
        q[c + 1] += 1

    def batch(n: int) -> None:
        nonlocal seq
        for entry in pop_all():                       # objects other CPUs handed us
            free(unpack(entry)[0])
            q[c + 1] += 1
        for _ in range(n):
            if len(held) >= max_held:
                release(*held.pop(randrange(len(held))))
            addr = alloc()
            if not addr:
                q[c + 2] += 1
                continue
            seq += 1
            value = cpu << 48 | seq
            stamp(addr, size, value)
            held.append((addr, value))
            q[c] += 1

    def teardown() -> None:
        for addr, value in held:
            if not check(addr, size, value):
                q[c + 4] += 1
            free(addr)
            q[c + 1] += 1
        held.clear()

    batch.teardown = teardown  # type: ignore[attr-defined]
    return batch

