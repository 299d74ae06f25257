"""SLUB churn: each CPU allocates and frees objects of one cache, mostly on its own.

The per-CPU fast path at work (one CAS on the freelist|tid word per operation), with
`cross_cpu_pct` % of the frees handed to the next CPU (remote frees onto its slabs).
Operation = allocate one object (freeing a held one first when `max_held` are held).

`irq_hz` > 0 adds the CPU's interrupt context: a second thread of the worker (pinned
with it) that wakes `irq_hz` times a second and allocates, stamps, checks and frees
`irq_batch` objects of the same cache through Slub(irq=True) — the same per-CPU
freelist|tid word as the task context, so the GIL's thread switches land between the
task's read of that word and its CAS, and the tid must make those CASes fail
(slub_cmpxchg_fail counts them).  Its counters are its own (irq_allocs, irq_frees,
irq_corrupt): two threads never bump one word.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.segment import Arena
from workers.workloads import _slab

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

COUNTERS = (*_slab.COUNTERS, "irq_allocs", "irq_frees", "irq_corrupt")


@dataclass(frozen=True, slots=True)
class Params:
    size: int = 64                # object size (a dedicated cache "aero-obj-<size>")
    max_held: int = 64            # objects held per CPU
    cross_cpu_pct: int = 0        # % of frees done by the next CPU
    irq_hz: int = 0               # interrupt-context allocations per second (0: none)
    irq_batch: int = 8            # objects each interrupt allocates and frees

    def validate(self) -> str | None:
        if not 0 <= self.irq_hz <= 10_000:
            return f"irq_hz = {self.irq_hz}: allowed 0..10000 (0 = no interrupt context)"
        if not 1 <= self.irq_batch <= 1024:
            return f"irq_batch = {self.irq_batch}: allowed 1..1024"
        return _slab.check_params(self)


sections, setup = _slab.workload_sections, _slab.cache_setup


def report(arena: Arena, params: Params, result: dict) -> dict:
    out = _slab.report(arena, result)
    for k in ("irq_allocs", "irq_frees", "irq_corrupt"):
        out[k] = sum(c["counters"][k] for c in result["cpus"])
    out["corrupt"] += out["irq_corrupt"]
    return out


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
        # Housekeeping once per batch, not in the harness's timed single op (batch(1)).
        for entry in pop_all() if n > 1 else ():      # objects other CPUs handed us
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

    stop_irq = _start_irq(arena, cpu, params, e) if params.irq_hz else None

    def teardown() -> None:
        if stop_irq is not None:
            stop_irq()
        for addr, value in held:
            if not check(addr, size, value):
                q[c + 4] += 1
            free(addr)
            q[c + 1] += 1
        held.clear()

    batch.teardown = teardown  # type: ignore[attr-defined]
    return batch


def _start_irq(arena: Arena, cpu: int, params: Params, e: _slab.Engine) -> Callable[[], None]:
    """Start the interrupt-context thread; returns the function that stops and joins it."""
    import threading

    from aerosync.mm.slab.slub import Slub

    irq_cache = Slub(arena, cpu, irq=True).cache(_slab.cache_name(params.size))
    alloc, free = irq_cache.alloc, irq_cache.free
    stamp, check, q = e.stamp, e.check, e.q
    base = e.c + len(_slab.COUNTERS)
    size, k, period = params.size, params.irq_batch, 1.0 / params.irq_hz
    stop = threading.Event()
    errors: list[BaseException] = []

    def handler() -> None:
        seq = 0
        try:
            while not stop.wait(period):
                objs = []
                for _ in range(k):
                    addr = alloc()
                    if addr:
                        seq += 1
                        stamp(addr, size, cpu << 48 | 1 << 47 | seq)
                        objs.append((addr, cpu << 48 | 1 << 47 | seq))
                q[base] += len(objs)
                for addr, value in objs:
                    if not check(addr, size, value):
                        q[base + 2] += 1
                    free(addr)
                q[base + 1] += len(objs)
        except BaseException as exc:  # reported by the task thread at teardown
            errors.append(exc)

    t = threading.Thread(target=handler, name=f"cpu{cpu}-irq", daemon=True)
    t.start()

    def stop_and_join() -> None:
        stop.set()
        t.join(10)
        if errors:
            raise RuntimeError(f"cpu{cpu} interrupt context failed: {errors[0]!r}") from errors[0]

    return stop_and_join

