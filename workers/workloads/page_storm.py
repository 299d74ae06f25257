"""Page storm: every CPU allocates and frees blocks of mixed orders and lifetimes.

Models the page allocator's daily load: mostly order-0 with some higher orders, most
blocks short-lived, a share kept long.  With `cross_cpu_pct` > 0 a share of the frees
happens on another CPU (the block travels through the "pgring" ring), which is what
makes pages move between per-CPU lists and zones' free lists.  Every block is stamped
with (cpu, seq) and verified before it is freed (workers/workloads/_pages.py), so a page
handed out twice is caught and counted as `corrupt`.

Allocations follow this CPU's [numa] policy (mm/numa/mempolicy.py); with [machine]
remote_access_ns each touch of a block (stamp on allocation, check before the free)
costs extra time in proportion to the node distance, so placement shows in throughput.

Operation = one allocation attempt plus, when the CPU holds `max_held` blocks, one free.
Counters: allocs, frees, alloc_fail, remote_frees (pushed to another CPU), corrupt,
remote_node (pages that came from another node), touched_remote_ns (remote-access cost
paid, with [machine] remote_access_ns).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm.page import node_of_pfn
from aerosync.mm.pmm.page_alloc import MM
from workers.workloads._common import counter_index
from workers.workloads._pages import Ring, Stamper, drain_rings, policy_alloc, ring_section, touch_fn

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

COUNTERS: tuple[str, ...] = ("allocs", "frees", "alloc_fail", "remote_frees", "corrupt", "remote_node")
_GFP = {"kernel": G.GFP_KERNEL, "movable": G.GFP_HIGHUSER_MOVABLE, "atomic": G.GFP_ATOMIC,
        "reclaimable": G.GFP_KERNEL | G.__GFP_RECLAIMABLE, "dma32": G.GFP_KERNEL | G.__GFP_DMA32}


@dataclass(frozen=True, slots=True)
class Params:
    orders: tuple[int, ...] = (0, 0, 0, 0, 0, 0, 1, 2, 3)   # drawn uniformly per allocation
    max_held: int = 64            # blocks a CPU holds before each allocation forces a free
    long_lived_pct: int = 10      # % of blocks kept for the whole run (never freed by the storm)
    cross_cpu_pct: int = 0        # % of frees done by another CPU (through the ring)
    gfp: str = "kernel"           # kernel | movable | atomic | reclaimable | dma32
    verify: bool = True           # stamp and check every page

    def validate(self) -> str | None:
        if not self.orders or any(not 0 <= o <= 10 for o in self.orders):
            return f"orders = {list(self.orders)}: a non-empty list of orders 0..10"
        if not 1 <= self.max_held <= 1 << 16:
            return f"max_held = {self.max_held}: allowed 1..65536"
        for k in ("long_lived_pct", "cross_cpu_pct"):
            if not 0 <= getattr(self, k) <= 100:
                return f"{k} = {getattr(self, k)}: a percentage 0..100"
        if self.gfp not in _GFP:
            return f"gfp = {self.gfp!r}: one of {', '.join(_GFP)}"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [ring_section(nr_cpus)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    pass


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    mm = MM(arena, cpu)
    nr_cpus = int(arena.config["nr_cpus"])
    alloc_pages, free_pages = policy_alloc(arena, mm), mm.free_pages
    touch = touch_fn(arena, mm)
    ring = Ring(arena, cpu, nr_cpus)
    push, pop_all = ring.push, ring.pop_all
    st = Stamper(arena)
    stamp, check = st.stamp, st.check
    gfp, orders, verify = _GFP[params.gfp], params.orders, params.verify
    max_held = params.max_held
    long_pct, cross_pct = params.long_lived_pct, params.cross_cpu_pct if nr_cpus > 1 else 0
    rand, choice = rng.random, rng.choice
    randrange = rng.randrange
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_alloc, c_free, c_fail, c_remote, c_corrupt, c_rnode = range(c0, c0 + 6)
    node_of = node_of_pfn(arena)
    mynid = mm.nid
    held: list[tuple[int, int, int]] = []      # (pfn, order, stamp)
    kept: list[tuple[int, int, int]] = []
    seq = 0

    def release(blk: tuple[int, int, int]) -> None:
        pfn, order, value = blk
        if touch is not None:
            touch(pfn)
        if verify and not check(pfn, order, value):
            q[c_corrupt] += 1
        if cross_pct and randrange(100) < cross_pct and push(pfn << 8 | order):
            q[c_remote] += 1
            return
        free_pages(pfn, order)
        q[c_free] += 1

    def batch(n: int) -> None:
        nonlocal seq
        # Housekeeping once per batch, not in the harness's timed single op (batch(1)).
        for entry in pop_all() if n > 1 else ():  # blocks other CPUs sent us to free
            free_pages(entry >> 8, entry & 0xFF)
            q[c_free] += 1
        for _ in range(n):
            if len(held) >= max_held:
                release(held.pop(randrange(len(held))))
            order = choice(orders)
            pfn = alloc_pages(gfp, order)
            if pfn < 0:
                q[c_fail] += 1
                if held:
                    release(held.pop())
                continue
            q[c_alloc] += 1
            if node_of(pfn) != mynid:
                q[c_rnode] += 1
            seq += 1
            value = cpu << 48 | seq
            if verify:
                stamp(pfn, order, value)
            if touch is not None:
                touch(pfn)
            if long_pct and rand() * 100 < long_pct and len(kept) < max_held:
                kept.append((pfn, order, value))
            else:
                held.append((pfn, order, value))

    def teardown() -> None:
        for blk in held + kept:
            pfn, order, value = blk
            if verify and not check(pfn, order, value):
                q[c_corrupt] += 1
            free_pages(pfn, order)
            q[c_free] += 1
        held.clear()
        kept.clear()
        mm.drain_local_pages()

    batch.teardown = teardown  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    """Free what is still queued in the rings, then sum the per-CPU counters."""
    nr_cpus = len(result["cpus"])
    mm = MM(arena, 0)            # every worker has left: cpu 0's lists are ours to use
    leftovers = drain_rings(arena, nr_cpus, mm.free_pages)
    mm.drain_local_pages()
    tot = {k: sum(c["counters"][k] for c in result["cpus"]) for k in COUNTERS}
    allocs = tot["allocs"]
    return {**tot, "ring_leftovers_freed": leftovers,
            "remote_node_pct": round(100.0 * tot["remote_node"] / allocs, 2) if allocs else 0.0,
            "alloc_fail_pct": round(100.0 * tot["alloc_fail"] / max(1, allocs + tot["alloc_fail"]), 3)}
