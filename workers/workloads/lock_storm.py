"""Lock storm: every CPU takes one shared spinlock and runs a critical section.

Models the zone->lock pattern at its simplest: one hot lock, a critical section of
`cs_iters` read-modify-writes of a plain (non-atomic) shared word, and `think_iters` of
private work between acquisitions.  lock_stat shows the wait time and bounces.

Check (mutual exclusion, invariant L1 of sync/spinlock.py): the plain word ends at
exactly acquisitions x cs_iters; any lost update means two CPUs were inside at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.params import CACHE_LINE
from aerosync.sync.lockstat import lock_alloc
from aerosync.sync.spinlock import SpinLock

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "LOCK_CLASS"]

LOCK_CLASS = "lock_storm_lock"
COUNTERS: tuple[str, ...] = ("acquisitions",)


@dataclass(frozen=True, slots=True)
class Params:
    cs_iters: int = 1          # plain increments of the shared word inside the lock
    think_iters: int = 0       # private loop iterations outside the lock

    def validate(self) -> str | None:
        if not 1 <= self.cs_iters <= 100_000:
            return f"cs_iters = {self.cs_iters}: allowed 1..100000"
        if not 0 <= self.think_iters <= 1_000_000:
            return f"think_iters = {self.think_iters}: allowed 0..1000000"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    # line 0: the lock's slot index; line 1: the plain shared word (its own line)
    return [SectionSpec("storm", 2 * CACHE_LINE)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    slot = lock_alloc(arena, LOCK_CLASS, "storm")
    arena.u64[arena.off("storm") >> 3] = slot


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    from workers.workloads._common import counter_index

    base = arena.off("storm")
    lock = SpinLock(arena, arena.u64[base >> 3], cpu)
    acquire, release = lock.acquire, lock.release
    q = arena.u64
    word = (base + CACHE_LINE) >> 3
    acq_idx = counter_index(arena, cpu, 0)
    cs, think = range(params.cs_iters), range(params.think_iters)

    def batch(n: int) -> None:
        for _ in range(n):
            acquire()
            for _ in cs:
                q[word] += 1
            release()
            for _ in think:
                pass
        q[acq_idx] += n

    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    base = arena.off("storm")
    acq = sum(c["counters"]["acquisitions"] for c in result["cpus"])
    value = arena.atomic.load64(base + CACHE_LINE)
    return {"expected": acq * params.cs_iters, "counted": value,
            "lost_updates": acq * params.cs_iters - value}
