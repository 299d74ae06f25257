"""Fragmentation: scatter long-lived pages through memory, then ask for big blocks.

Models the external fragmentation that compaction exists for (mm/compaction.c): with
one pinned order-0 page every `keep_stride` pages, no naturally aligned block larger
than the stride's order stays free, whatever the number of free pages.

Set-up (each CPU, before the start barrier): allocate order-0 pages with `pin_gfp`
until allocation fails at the watermark (or `fill_pct` % of managed memory), then free
all but every `keep_stride`-th of them (by pfn), so the survivors sit spread through
every pageblock they came from.
Operation: one request of the next order in `orders` (GFP_NOWAIT | __GFP_NOWARN, the
`request_gfp` migratetype); on success the block is stamped, checked and freed at once.
Figures: per-order success and failure counts and the failure rate; the pinned count.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm.mmzone import zone_info
from aerosync.mm.pmm.page_alloc import MM
from workers.workloads._common import counter_index
from workers.workloads._pages import Stamper

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

MAX_ORDERS = 11
COUNTERS: tuple[str, ...] = ("pinned", "corrupt", *(f"ok_o{o}" for o in range(MAX_ORDERS)),
                             *(f"fail_o{o}" for o in range(MAX_ORDERS)))
_GFP = {"unmovable": G.GFP_KERNEL, "movable": G.GFP_HIGHUSER_MOVABLE,
        "reclaimable": G.GFP_KERNEL | G.__GFP_RECLAIMABLE}


@dataclass(frozen=True, slots=True)
class Params:
    fill_pct: int = 100                 # % of managed memory touched during set-up (all CPUs)
    keep_stride: int = 16               # keep 1 page in this many: no free block above this order
    pin_gfp: str = "unmovable"          # migratetype of the pinned pages
    request_gfp: str = "movable"        # migratetype of the high-order requests
    orders: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10)

    def validate(self) -> str | None:
        if not 1 <= self.fill_pct <= 100:
            return f"fill_pct = {self.fill_pct}: a percentage 1..100"
        if not 2 <= self.keep_stride <= 1 << 20:
            return f"keep_stride = {self.keep_stride}: allowed 2..1048576"
        for k in ("pin_gfp", "request_gfp"):
            if getattr(self, k) not in _GFP:
                return f"{k} = {getattr(self, k)!r}: one of {', '.join(_GFP)}"
        if not self.orders or any(not 0 <= o < MAX_ORDERS for o in self.orders):
            return f"orders = {list(self.orders)}: a non-empty list of orders 0..{MAX_ORDERS - 1}"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return []


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    pass


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    mm = MM(arena, cpu)
    alloc_pages, free_pages = mm.alloc_pages, mm.free_pages
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_pinned, c_corrupt, c_ok, c_fail = c0, c0 + 1, c0 + 2, c0 + 2 + MAX_ORDERS
    managed = sum(zone_info(arena, z)["managed"] for z in range(mm.nr_zones))
    # Each CPU fills until allocation fails (or fill_pct of all memory): whatever order
    # the CPUs' set-ups run in, every region of memory ends up holding pins.
    share = managed * params.fill_pct // 100
    pin_gfp = _GFP[params.pin_gfp] | G.__GFP_NOWARN
    got = []
    for _ in range(share):
        pfn = alloc_pages(pin_gfp, 0)
        if pfn < 0:
            break
        got.append(pfn)
    got.sort()
    pinned = got[:: params.keep_stride]
    keep = set(pinned)
    for pfn in got:
        if pfn not in keep:
            free_pages(pfn, 0)
    mm.drain_local_pages()
    q[c_pinned] = len(pinned)
    st = Stamper(arena)
    stamp, check = st.stamp, st.check
    req_gfp = G.GFP_NOWAIT | G.__GFP_NOWARN | (_GFP[params.request_gfp] & G.GFP_MOVABLE_MASK)
    orders = params.orders
    nr_orders = len(orders)
    i = rng.randrange(nr_orders)
    seq = 0

    def batch(n: int) -> None:
        nonlocal i, seq
        for _ in range(n):
            order = orders[i]
            i = i + 1 if i + 1 < nr_orders else 0
            pfn = alloc_pages(req_gfp, order)
            if pfn < 0:
                q[c_fail + order] += 1
                continue
            seq += 1
            value = cpu << 48 | seq
            stamp(pfn, order, value)
            if not check(pfn, order, value):
                q[c_corrupt] += 1
            free_pages(pfn, order)
            q[c_ok + order] += 1

    def teardown() -> None:
        for pfn in pinned:
            free_pages(pfn, 0)
        mm.drain_local_pages()

    batch.teardown = teardown  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    tot = {k: sum(c["counters"][k] for c in result["cpus"]) for k in COUNTERS}
    per_order = {}
    for o in sorted(set(params.orders)):
        ok, fail = tot[f"ok_o{o}"], tot[f"fail_o{o}"]
        per_order[str(o)] = {"ok": ok, "fail": fail, "fail_pct": round(100.0 * fail / max(1, ok + fail), 2)}
    return {"pinned_pages": tot["pinned"], "corrupt": tot["corrupt"], "per_order": per_order}
