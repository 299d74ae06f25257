"""xmalloc: producer CPUs allocate, consumer CPUs free (the classic cross-thread test).

The first `producers` simulated CPUs (default: half, rounded up) allocate `size`-byte
kmalloc objects and hand `cross_cpu_pct` % of them to a consumer CPU through its ring;
the rest they free themselves.  Consumer CPUs only free what they receive, so every one
of their frees is a remote free (slab CAS, list moves under list_lock).
Operation: producer = one allocation (and a hand-off or local free); consumer = one
poll of its ring (freeing an object, or an idle poll when the ring is empty).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.segment import Arena
from workers.workloads import _slab

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "roles"]

COUNTERS = _slab.COUNTERS


@dataclass(frozen=True, slots=True)
class Params:
    size: int = 64
    producers: int = 0            # 0: half of the CPUs, rounded up
    cross_cpu_pct: int = 100      # % of objects handed to a consumer

    def validate(self) -> str | None:
        if self.producers < 0:
            return f"producers = {self.producers}: >= 0 (0 = half the CPUs)"
        return _slab.check_params(self)


def roles(params: Params, nr_cpus: int) -> tuple[int, int]:
    """(producers, consumers); a machine of one CPU only produces (and frees locally)."""
    p = min(nr_cpus, params.producers or (nr_cpus + 1) // 2)
    return p, nr_cpus - p


sections, setup = _slab.workload_sections, _slab.no_setup


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    nr_cpus = int(arena.config["nr_cpus"])
    prod, cons = roles(params, nr_cpus)
    consumer = cpu if cpu >= prod else (prod + cpu % cons if cons else cpu)
    e = _slab.Engine(arena, cpu, to_cpu=consumer)
    kmalloc, kfree = e.km.kmalloc, e.km.kfree
    stamp, check, push, pop = e.stamp, e.check, e.ring.push, e.ring.pop
    q, c, size = e.q, e.c, params.size
    cross = params.cross_cpu_pct if cons else 0
    randrange = rng.randrange
    pack, unpack = _slab.pack, _slab.unpack
    seq = 0

    def produce(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            addr = kmalloc(size)
            if not addr:
                q[c + 2] += 1
                continue
            q[c] += 1
            seq += 1
            stamp(addr, size, cpu << 48 | seq)
            if cross and randrange(100) < cross and push(pack(addr, size)):
                q[c + 3] += 1
            else:
                kfree(addr)
                q[c + 1] += 1

    def consume(n: int) -> None:
        for _ in range(n):
            entry = pop()
            if entry < 0:
                q[c + 5] += 1
                continue
            addr, sz = unpack(entry)
            v = q[(arena.off("physmem") - _slab.VBASE + addr) >> 3]
            if not check(addr, sz, v) or v >> 48 >= prod:      # both ends written by a producer
                q[c + 4] += 1
            kfree(addr)
            q[c + 1] += 1

    return produce if cpu < prod else consume


def report(arena: Arena, params: Params, result: dict) -> dict:
    out = _slab.report(arena, result)
    prod, cons = roles(params, len(result["cpus"]))
    return {"producers": prod, "consumers": cons, **out}
