"""kmalloc size sweep: every operation allocates the next size of `sizes` (kmalloc caches
8 .. 8192 plus 96 and 192, and a large request served by the page allocator), stamps
it, verifies it and frees it; `cross_cpu_pct` % of the frees go to the next CPU.
Per-size operation counts are published, so the run shows the cost of each class.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.segment import Arena
from workers.workloads import _slab

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

MAX_SIZES = 24
COUNTERS = (*_slab.COUNTERS, *(f"size{i}" for i in range(MAX_SIZES)))
DEFAULT_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384)


@dataclass(frozen=True, slots=True)
class Params:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    cross_cpu_pct: int = 0

    def validate(self) -> str | None:
        if not self.sizes or len(self.sizes) > MAX_SIZES or any(not 8 <= s <= 1 << 20 for s in self.sizes):
            return f"sizes = {list(self.sizes)}: 1..{MAX_SIZES} sizes, each 8..1048576"
        return _slab.check_params(self)


sections, setup = _slab.workload_sections, _slab.no_setup


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    e = _slab.Engine(arena, cpu)
    kmalloc, kfree = e.km.kmalloc, e.km.kfree
    stamp, check, push, pop_all = e.stamp, e.check, e.ring.push, e.ring.pop_all
    q, c = e.q, e.c
    cross = params.cross_cpu_pct if e.nr_cpus > 1 else 0
    sizes = [(s + 7) // 8 * 8 for s in params.sizes]
    nsz = len(sizes)
    size_ctr = c + len(_slab.COUNTERS)
    randrange = rng.randrange
    pack, unpack = _slab.pack, _slab.unpack
    state = [rng.randrange(nsz), 0]          # next size index, seq

    def batch(n: int) -> None:
        for entry in pop_all() if n > 1 else ():   # per batch, not in the timed single op
            kfree(unpack(entry)[0])
            q[c + 1] += 1
        i, seq = state
        for _ in range(n):
            size = sizes[i]
            addr = kmalloc(size)
            if not addr:
                q[c + 2] += 1
            else:
                q[c] += 1
                q[size_ctr + i] += 1
                seq += 1
                value = cpu << 48 | seq
                stamp(addr, size, value)
                if not check(addr, size, value):
                    q[c + 4] += 1
                if cross and randrange(100) < cross and push(pack(addr, min(size, 0xFFFF))):
                    q[c + 3] += 1
                else:
                    kfree(addr)
                    q[c + 1] += 1
            i = i + 1 if i + 1 < nsz else 0
        state[0], state[1] = i, seq

    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    out = _slab.report(arena, result)
    per = {str(s): sum(c["counters"][f"size{i}"] for c in result["cpus"]) for i, s in enumerate(params.sizes)}
    return {**out, "ops_per_size": per}
