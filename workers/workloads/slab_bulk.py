"""Bulk and sheaf users: objects taken and given back `batch` at a time.

mode = "bulk": kmem_cache_alloc_bulk(batch) then kmem_cache_free_bulk — one trip through
the per-CPU state for many objects.  mode = "sheaf": kmem_cache_prefill_sheaf(batch),
allocate the whole sheaf for a "critical section", free the objects, return the sheaf
(the slab_sheaf API).  `cross_cpu_pct` % of the objects are freed by the next CPU.
Operation = one batch (`batch` objects allocated, stamped, verified, freed).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aerosync.arena.segment import Arena
from workers.workloads import _slab

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

COUNTERS = _slab.COUNTERS


@dataclass(frozen=True, slots=True)
class Params:
    mode: Literal["bulk", "sheaf"] = "bulk"
    size: int = 128
    batch: int = 16
    cross_cpu_pct: int = 0

    def validate(self) -> str | None:
        if not 1 <= self.batch <= 64:
            return f"batch = {self.batch}: allowed 1..64 (a sheaf holds at most 64)"
        return _slab.check_params(self)


sections, setup, report = _slab.workload_sections, _slab.cache_setup, _slab.workload_report


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    e = _slab.Engine(arena, cpu)
    cache = e.slub.cache(_slab.cache_name(params.size))
    stamp, check, push, pop_all = e.stamp, e.check, e.ring.push, e.ring.pop_all
    q, c, size, k = e.q, e.c, params.size, params.batch
    cross = params.cross_cpu_pct if e.nr_cpus > 1 else 0
    randrange = rng.randrange
    pack, unpack = _slab.pack, _slab.unpack
    alloc_bulk, free_bulk, free = cache.alloc_bulk, cache.free_bulk, cache.free
    prefill, from_sheaf, give_back = cache.prefill_sheaf, cache.alloc_from_sheaf, cache.return_sheaf
    sheaf_mode = params.mode == "sheaf"
    seq = 0

    def take() -> list[int]:
        if not sheaf_mode:
            return [a for a in alloc_bulk(k) if a]
        sheaf = prefill(k)
        objs = [from_sheaf(sheaf) for _ in range(k)]
        give_back(sheaf)
        return [a for a in objs if a]

    def batch(n: int) -> None:
        nonlocal seq
        for entry in pop_all() if n > 1 else ():   # per batch, not in the timed single op
            free(unpack(entry)[0])
            q[c + 1] += 1
        for _ in range(n):
            objs = take()
            q[c] += len(objs)
            q[c + 2] += k - len(objs)
            local = []
            for addr in objs:
                seq += 1
                stamp(addr, size, cpu << 48 | seq)
            for addr in objs:
                value = q[(arena.off("physmem") - _slab.VBASE + addr) >> 3]
                if not check(addr, size, value) or value >> 48 != cpu:
                    q[c + 4] += 1
                if cross and randrange(100) < cross and push(pack(addr, size)):
                    q[c + 3] += 1
                else:
                    local.append(addr)
            free_bulk(local)
            q[c + 1] += len(local)

    return batch

