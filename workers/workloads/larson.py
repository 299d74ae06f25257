"""Larson (the server benchmark): each CPU keeps a pool of kmalloc objects of random
sizes; each operation frees a random pool entry — `cross_cpu_pct` % of them handed to
the next CPU to free, as a server hands buffers between threads — and allocates a new
one in its place.  Stresses remote frees, partial lists and list_lock.
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
    min_size: int = 16
    max_size: int = 256
    pool: int = 256               # objects each CPU keeps
    cross_cpu_pct: int = 50

    def validate(self) -> str | None:
        if not 8 <= self.min_size <= self.max_size <= 8192:
            return f"min_size/max_size = {self.min_size}/{self.max_size}: 8 <= min_size <= max_size <= 8192"
        if not 1 <= self.pool <= 1 << 16:
            return f"pool = {self.pool}: allowed 1..65536"
        return _slab.check_params(self)


sections, setup, report = _slab.workload_sections, _slab.no_setup, _slab.workload_report


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    e = _slab.Engine(arena, cpu)
    kmalloc, kfree, ksize = e.km.kmalloc, e.km.kfree, e.km.ksize
    stamp, check, push, pop_all = e.stamp, e.check, e.ring.push, e.ring.pop_all
    q, c = e.q, e.c
    cross = params.cross_cpu_pct if e.nr_cpus > 1 else 0
    lo, hi = params.min_size // 8, params.max_size // 8
    randrange, randint = rng.randrange, rng.randint
    pack, unpack = _slab.pack, _slab.unpack
    pool: list[tuple[int, int, int]] = []
    seq = 0

    def new() -> None:
        nonlocal seq
        size = randint(lo, hi) * 8
        addr = kmalloc(size)
        if not addr:
            q[c + 2] += 1
            return
        seq += 1
        value = cpu << 48 | seq
        stamp(addr, size, value)
        pool.append((addr, size, value))
        q[c] += 1

    for _ in range(params.pool):
        new()

    def batch(n: int) -> None:
        for entry in pop_all() if n > 1 else ():   # per batch, not in the timed single op
            kfree(unpack(entry)[0])
            q[c + 1] += 1
        for _ in range(n):
            if pool:
                i = randrange(len(pool))
                addr, size, value = pool[i]
                pool[i] = pool[-1]
                pool.pop()
                if not check(addr, size, value):
                    q[c + 4] += 1
                if cross and randrange(100) < cross and push(pack(addr, size)):
                    q[c + 3] += 1
                else:
                    kfree(addr)
                    q[c + 1] += 1
            new()

    def teardown() -> None:
        for addr, size, value in pool:
            if not check(addr, size, value):
                q[c + 4] += 1
            kfree(addr)
            q[c + 1] += 1
        pool.clear()

    batch.teardown = teardown  # type: ignore[attr-defined]
    del ksize
    return batch

