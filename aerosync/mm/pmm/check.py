"""Invariant checker for physical memory: numpy over every struct page, stop-the-world.

Models: nothing single in the kernel -- the union of mm/debug.c dump checks,
CONFIG_DEBUG_VM's free-list type checks and page_is_buddy().  Unit: a quiescent arena
(no CPU inside the allocator: run it after a run, in tests, or with workers parked at
the pause barrier).  Reads only.

Invariants (IDs used in InvariantViolation.inv_id and in the test that breaks each):
  B1  every pfn is in exactly one state: inside a free buddy block, inside a block on a
      PCP list, inside an allocated block (head: refcount > 0, not buddy/pcp/reserved/
      tail; extent 2^order) or reserved; and a head carries at most one state flag.
  B2  a free block (PG_buddy head) has order <= MAX_PAGE_ORDER, is aligned to its order,
      and lies inside its zone.
  B3  pages of a free block other than its head have no flags and refcount 0.
  B4  walking free_area[order].free_list[mt] of each zone visits exactly the PG_buddy
      heads of that zone, order and mt, with consistent prev links and tail pointer.
  B5  free_area[order].nr_free equals the number of free blocks of that order, and
      NR_FREE_PAGES equals the pages they hold.
  B6  no free block has a free buddy of the same order in the same zone that it could
      have merged with (same migratetype, or both mergeable, at >= pageblock_order).
  B7  a free block's list migratetype equals its pageblock's (every pageblock it spans).
  B8  the pageblock array holds only valid migratetypes.
  P1  a PCP's count equals the pages on its lists.
  P2  walking a PCP list visits PG_pcp heads of the list's order, migratetype and the
      PCP's zone, with consistent prev links and tail pointer.
  P3  every PG_pcp page is on exactly one PCP list (walked total == flagged total).
  P4  quiescent PCP state is IDLE or OFFLINE, and an OFFLINE PCP is empty.
  Z1  per zone: free + PCP + allocated == managed, and present - managed == reserved.
  Z2  each page's zone and node bytes name the zone whose pfn range holds it.
  F1  a PG_head page has order >= 1 and its 2^order - 1 following pages are PG_tail
      with head == its pfn.
  F2  every PG_tail page lies inside the block of the PG_head page it names.
  F3  free pages (buddy or PCP, heads and tails) have refcount 0 and mapcount 0;
      compound tails have refcount 0.

Measured on the 2-core box: 1 GiB (262144 pages, two nodes) in ~0.13-0.16 s freshly
initialised, ~0.11 s after 120k order-0 allocations with half freed back in random order
(tests/test_check.py::test_checker_1gib_fast asserts < 1 s).  Free and PCP lists are
walked in Python over numpy .tolist() copies (~30 ns a link).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aerosync.errors import InvariantViolation
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.gfp import (
    MAX_NR_ZONES,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
)
from aerosync.mm.pmm.page import NIL, PG_buddy, PG_head, PG_pcp, PG_reserved, PG_tail, page_array

__all__ = ["CheckReport", "check", "INVARIANTS"]

INVARIANTS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "P1", "P2", "P3", "P4",
              "Z1", "Z2", "F1", "F2", "F3")


@dataclass
class CheckReport:
    """What a check found: `violations` (capped per invariant) and summary counts."""

    violations: list[InvariantViolation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)       # violations per invariant id
    summary: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def ids(self) -> set[str]:
        return {v.inv_id for v in self.violations}

    def raise_first(self) -> None:
        if self.violations:
            raise self.violations[0]

    def __str__(self) -> str:
        if self.ok:
            return f"mm check: OK ({self.summary}) in {self.elapsed_s:.3f} s"
        head = ", ".join(f"{k}:{n}" for k, n in sorted(self.counts.items()))
        return f"mm check: {len(self.violations)} violations ({head})\n" + "\n".join(
            f"  {v}" for v in self.violations[:50])


class _Sink:
    def __init__(self, raise_first: bool, limit: int) -> None:
        self.raise_first, self.limit = raise_first, limit
        self.report = CheckReport()

    def add(self, inv: str, where: str, expected: object, found: object) -> None:
        v = InvariantViolation(inv, where, expected, found)
        if self.raise_first:
            raise v
        n = self.report.counts.get(inv, 0)
        self.report.counts[inv] = n + 1
        if n < self.limit:
            self.report.violations.append(v)

    def many(self, inv: str, pfns: np.ndarray, expected: object, found: Any) -> None:
        """Report each pfn of `pfns` (capped); `found` is a callable pfn -> text or a value."""
        for p in pfns[: self.limit if not self.raise_first else 1].tolist():
            self.add(inv, f"pfn {p}", expected, found(p) if callable(found) else found)
        extra = len(pfns) - min(len(pfns), self.limit)
        if extra > 0:
            self.report.counts[inv] = self.report.counts.get(inv, 0) + extra


def _extent_cover(n: int, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """How many of the blocks [start, start+size) cover each pfn (difference array)."""
    d = np.zeros(n + 1, dtype=np.int32)
    ends = np.minimum(starts + sizes, n)
    np.add.at(d, starts, 1)
    np.add.at(d, ends, -1)
    return np.cumsum(d[:n], dtype=np.int32)


def check(arena: Any, raise_first: bool = False, limit: int = 20) -> CheckReport:
    """Check every invariant in the module docstring; report (or raise) violations."""
    return run_checker(_check, arena, raise_first, limit)


def run_checker(body: Any, arena: Any, raise_first: bool, limit: int) -> CheckReport:
    """Run a checker body `body(arena, sink)` into a timed CheckReport (shared by
    mm/slab/slab_check.py)."""
    import time

    t0 = time.perf_counter()
    sink = _Sink(raise_first, limit)
    body(arena, sink)
    rep = sink.report
    rep.elapsed_s = time.perf_counter() - t0
    return rep


def _check(arena: Any, s: _Sink) -> None:
    q32, q64 = arena.u32, arena.u64
    hdr = arena.off("mmzones")
    g = lambda f: int(q64[(hdr + f) >> 3])
    nr_pages, max_order, pb_order = g(Z.G_NR_PAGES), g(Z.G_MAX_ORDER), g(Z.G_PB_ORDER)
    nr_zones, nr_cpus = g(Z.G_NR_ZONES), g(Z.G_NR_CPUS)

    pages = page_array(arena)
    flags = pages["flags"].copy()
    order = pages["order"].astype(np.int64)
    mt = pages["mt"].copy()
    zone = pages["zone"].copy()
    node = pages["node"].copy()
    ref = pages["refcount"].copy()
    mapc = pages["mapcount"].copy()
    nxt = pages["next"].tolist()
    prv = pages["prev"].tolist()
    head = pages["head"].astype(np.int64)
    del pages
    pbv = arena.array("mmpageblock", np.uint8)
    pb = pbv[: (nr_pages + (1 << pb_order) - 1) >> pb_order].copy()
    del pbv
    zinfo = [Z.zone_info(arena, z) for z in range(nr_zones)]
    zstart = np.array([z["start_pfn"] for z in zinfo], dtype=np.int64)
    zend = zstart + np.array([z["spanned"] for z in zinfo], dtype=np.int64)

    # ---- Z2: zone/node bytes
    want_zone = np.empty(nr_pages, dtype=np.int64)
    want_zone[:] = -1
    for z in range(nr_zones):
        want_zone[zstart[z]:zend[z]] = z
    bad = np.flatnonzero((zone != want_zone) | (node != want_zone // MAX_NR_ZONES))
    s.many("Z2", bad, "zone/node of the zone range holding the pfn",
           lambda p: f"zone {zone[p]} node {node[p]} (range says zone {want_zone[p]})")

    is_buddy = (flags & PG_buddy) != 0
    is_pcp = (flags & PG_pcp) != 0
    is_res = (flags & PG_reserved) != 0
    is_tail = (flags & PG_tail) != 0
    is_headf = (flags & PG_head) != 0
    is_alloc = ~is_buddy & ~is_pcp & ~is_res & ~is_tail & (ref > 0)

    # ---- B1: one state per head, exactly one cover per pfn
    nstate = is_buddy.astype(np.int8) + is_pcp + is_res + is_tail
    bad = np.flatnonzero(nstate > 1)
    s.many("B1", bad, "at most one of buddy/pcp/reserved/tail", lambda p: f"flags {int(flags[p]):#x}")
    bh = np.flatnonzero(is_buddy)
    ph = np.flatnonzero(is_pcp)
    ah = np.flatnonzero(is_alloc)
    size = np.int64(1) << np.minimum(order, 62)
    cover = (_extent_cover(nr_pages, bh, size[bh]) + _extent_cover(nr_pages, ph, size[ph])
             + _extent_cover(nr_pages, ah, size[ah]) + is_res)
    bad = np.flatnonzero(cover != 1)
    s.many("B1", bad, "exactly one state (free/pcp/allocated/reserved)",
           lambda p: f"{int(cover[p])} states (flags {int(flags[p]):#x} refcount {int(ref[p])})")

    # ---- B2: free blocks aligned, bounded, inside their zone
    bo = order[bh]
    bz = zone[bh].astype(np.int64)
    bad = bh[(bo > max_order) | ((bh & (size[bh] - 1)) != 0) | (bh < zstart[np.minimum(bz, nr_zones - 1)])
             | (bh + size[bh] > zend[np.minimum(bz, nr_zones - 1)])]
    s.many("B2", bad, "free block aligned to its order, <= MAX_PAGE_ORDER, inside its zone",
           lambda p: f"order {int(order[p])}")

    # ---- B3 / F3: insides of free blocks clean; free pages refcount/mapcount 0
    in_buddy = _extent_cover(nr_pages, bh, size[bh]) > 0
    in_pcp = _extent_cover(nr_pages, ph, size[ph]) > 0
    inner = in_buddy & ~is_buddy
    bad = np.flatnonzero(inner & ((flags != 0) | (ref != 0)))
    s.many("B3", bad, "no flags, refcount 0 inside a free block",
           lambda p: f"flags {int(flags[p]):#x} refcount {int(ref[p])}")
    bad = np.flatnonzero(((in_buddy | in_pcp) & ((ref != 0) | (mapc != 0))) | (is_tail & (ref != 0)))
    s.many("F3", bad, "refcount 0 and mapcount 0 on free pages and compound tails",
           lambda p: f"refcount {int(ref[p])} mapcount {int(mapc[p])}")

    # ---- B4 / B5: free lists
    key_b = (bz * (Z.MAX_ORDER_LIMIT + 1) + np.minimum(bo, Z.MAX_ORDER_LIMIT)) * MIGRATE_TYPES + np.minimum(
        mt[bh], MIGRATE_TYPES - 1)
    uk, uc = np.unique(key_b, return_counts=True)
    expect_len = dict(zip(uk.tolist(), uc.tolist()))
    free_pages_z = np.bincount(bz, weights=size[bh], minlength=nr_zones)
    blocks_zo = np.zeros((nr_zones, max_order + 1), dtype=np.int64)
    ok_o = bo <= max_order
    np.add.at(blocks_zo, (bz[ok_o], bo[ok_o]), 1)
    for z in range(nr_zones):
        fa = (Z.zone_off(arena, z) + Z.Z_FREE_AREA)
        for o in range(max_order + 1):
            nr_free = int(q64[(fa + o * Z.FA_SIZE) >> 3])
            if nr_free != blocks_zo[z, o]:
                s.add("B5", f"{Z.zone_name(z)} free_area[{o}].nr_free", int(blocks_zo[z, o]), nr_free)
            for m in range(MIGRATE_TYPES):
                li = (fa + o * Z.FA_SIZE + Z.FA_LISTS + 8 * m) >> 2
                want = expect_len.get((z * (Z.MAX_ORDER_LIMIT + 1) + o) * MIGRATE_TYPES + m, 0)
                _walk(s, "B4", f"{Z.zone_name(z)} order {o} {m}", int(q32[li]), int(q32[li + 1]), want, nxt, prv,
                      lambda p, z=z, o=o, m=m: bool(is_buddy[p]) and zone[p] == z and order[p] == o and mt[p] == m,
                      nr_pages)
        nfp = zinfo[z]["nr_free_pages"]
        if nfp != int(free_pages_z[z]):
            s.add("B5", f"{Z.zone_name(z)} NR_FREE_PAGES", int(free_pages_z[z]), nfp)

    # ---- B6: no mergeable free buddy pairs
    sel = bh[(bo < max_order) & (bo <= max_order)]
    if len(sel):
        so = order[sel]
        bud = sel ^ (np.int64(1) << so)
        inr = bud < nr_pages
        sel, so, bud = sel[inr], so[inr], bud[inr]
        m1 = is_buddy[bud] & (order[bud] == so) & (zone[bud] == zone[sel])
        mm1, mm2 = mt[sel], mt[bud]
        mergeable = (mm1 == mm2) | ((so >= pb_order) & (mm1 < MIGRATE_PCPTYPES) & (mm2 < MIGRATE_PCPTYPES))
        bad = sel[m1 & mergeable & (sel < bud)]
        s.many("B6", bad, "no free buddy of the same order left unmerged",
               lambda p: f"order {int(order[p])} buddy pfn {p ^ (1 << int(order[p]))} also free")

    # ---- B7 / B8: migratetypes
    bad = np.flatnonzero(pb >= MIGRATE_TYPES)
    for i in bad[:limit_of(s)].tolist():
        s.add("B8", f"pageblock {i} (pfn {i << pb_order})", f"< {MIGRATE_TYPES}", int(pb[i]))
    pbi = bh >> pb_order
    bad = bh[(pb[np.minimum(pbi, len(pb) - 1)] != mt[bh])]
    big = bh[bo > pb_order]
    extra = [p for p in big.tolist()
             if (pb[p >> pb_order:(p + (1 << int(order[p]))) >> pb_order] != mt[p]).any()]
    bad = np.union1d(bad, np.array(extra, dtype=np.int64))
    s.many("B7", bad, "free list migratetype == pageblock migratetype",
           lambda p: f"list mt {int(mt[p])}, pageblock mt {int(pb[p >> pb_order])}")

    # ---- P1..P4: per-CPU lists
    walked = 0
    pcp_pages_z = np.zeros(nr_zones, dtype=np.int64)
    for cpu in range(nr_cpus):
        for z in range(nr_zones):
            po = Z.pcp_off(arena, cpu, z, nr_zones)
            state = int(q64[(po + Z.PCP_STATE) >> 3])
            count = int(q64[(po + Z.PCP_COUNT) >> 3])
            where = f"cpu{cpu} pcp {Z.zone_name(z)}"
            if state not in (Z.PCP_IDLE, Z.PCP_OFFLINE) or (state == Z.PCP_OFFLINE and count):
                s.add("P4", where, "state IDLE, or OFFLINE and empty", f"state {state} count {count}")
            pages_on = 0
            for idx in range(Z.NR_PCP_LISTS):
                o = Z.pindex_to_order(idx)
                # the two THP lists (order_to_pindex): movable, and unmovable + reclaimable
                mts = ((idx % MIGRATE_PCPTYPES,) if idx < Z.NR_LOWORDER_PCP_LISTS else
                       (MIGRATE_MOVABLE,) if idx > Z.NR_LOWORDER_PCP_LISTS else
                       (MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE))
                li = (po + Z.PCP_LISTS + 8 * idx) >> 2
                n = _walk(s, "P2", f"{where} list order {o} mt {mts}", int(q32[li]), int(q32[li + 1]), None, nxt,
                          prv, lambda p, z=z, o=o, mts=mts: bool(is_pcp[p]) and zone[p] == z and order[p] == o
                          and int(mt[p]) in mts, nr_pages,
                          lambda p: f"flags {int(flags[p]):#x} order {int(order[p])} mt {int(mt[p])} zone "
                                    f"{int(zone[p])} refcount {int(ref[p])}")
                walked += n
                pages_on += n << o
            if pages_on != count:
                s.add("P1", where, f"count == pages on lists ({pages_on})", count)
            pcp_pages_z[z] += pages_on
    if walked != len(ph):
        s.add("P3", "all PCP lists", f"{len(ph)} PG_pcp pages on lists", f"{walked} walked")

    # ---- Z1: accounting per zone
    alloc_pages_z = np.bincount(zone[ah].astype(np.int64), weights=size[ah], minlength=nr_zones)
    pcp_pages_flag = np.bincount(zone[ph].astype(np.int64), weights=size[ph], minlength=nr_zones)
    res_z = np.bincount(zone[is_res].astype(np.int64), minlength=nr_zones)
    for z in range(nr_zones):
        managed, present = zinfo[z]["managed"], zinfo[z]["present"]
        tot = int(free_pages_z[z] + pcp_pages_flag[z] + alloc_pages_z[z])
        if tot != managed:
            s.add("Z1", Z.zone_name(z), f"free+pcp+allocated == managed ({managed})",
                  f"{int(free_pages_z[z])}+{int(pcp_pages_flag[z])}+{int(alloc_pages_z[z])} = {tot}")
        if present - managed != int(res_z[z]):
            s.add("Z1", Z.zone_name(z), f"present-managed == reserved ({int(res_z[z])})", present - managed)

    # ---- F1 / F2: compound pages
    hh = np.flatnonzero(is_headf)
    bad = hh[order[hh] < 1]
    s.many("F1", bad, "PG_head with order >= 1", lambda p: f"order {int(order[p])}")
    hh = hh[order[hh] >= 1]
    tail_cov = _extent_cover(nr_pages, hh + 1, size[hh] - 1) > 0
    bad = np.flatnonzero(tail_cov & ~is_tail)
    s.many("F1", bad, "PG_tail inside a compound page", lambda p: f"flags {int(flags[p]):#x}")
    tp = np.flatnonzero(is_tail)
    th = head[tp]
    okh = (th >= 0) & (th < tp)
    thc = np.where(okh, th, 0)
    good = okh & is_headf[thc] & (thc + size[thc] > tp)
    bad = tp[~good]
    s.many("F2", bad, "PG_tail inside the block of the PG_head it names",
           lambda p: f"head {int(head[p])}")


def limit_of(s: _Sink) -> int:
    return 1 if s.raise_first else s.limit


def _walk(s: _Sink, inv: str, where: str, first: int, last: int, want: int | None, nxt: list[int], prv: list[int],
          good: Any, nr_pages: int, state: Any = None) -> int:
    """Walk a pfn list; report bad members (with `state(pfn)`, what the page says),
    broken prev links, wrong tail or length."""
    n, prev, p = 0, NIL, first
    while p != NIL:
        if p >= nr_pages:
            s.add(inv, where, "link to a pfn < nr_pages", f"pfn {p} after {prev}")
            return n
        if not good(p):
            s.add(inv, f"pfn {p}", f"member of {where}", "page state does not match the list" +
                  (f" ({state(p)})" if state is not None else ""))
        if prv[p] != prev:
            s.add(inv, f"pfn {p}", f"prev {prev} ({where})", f"prev {prv[p]}")
        n += 1
        if n > nr_pages:
            s.add(inv, where, "an acyclic list", "a cycle")
            return n
        prev, p = p, nxt[p]
    if last != prev:
        s.add(inv, where, f"tail {prev}", f"tail {last}")
    if want is not None and n != want:
        s.add(inv, where, f"{want} blocks (PG_buddy heads of this zone/order/mt)", f"{n} on the list")
    return n
