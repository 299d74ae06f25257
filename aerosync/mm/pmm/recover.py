"""Repairing the page allocator after a simulated CPU died inside it.

Models: what hot-unplug does for a CPU that is gone (page_alloc_cpu_dead: its PCP lists
drained by another CPU), plus the repair Linux never needs -- a CPU stopped for good
half-way through a buddy split or merge.  Unit: a dead CPU; the whole machine, stopped
(every live CPU parked at a batch boundary: no operation in flight but the dead CPU's).

How (mm/intent.py has the log protocol; mm/recovery.py calls these in order):
  1. `pcp_repair(cpu)`: the dead CPU's PCP lists are walked from their heads, prev links
     and tails set, each list cut at the first page that is not a PG_pcp block of the
     list's order (so it ends where the dead owner left it), count recomputed, the
     state word (BUSY: the owner died inside) back to IDLE.  At a fault point a list is
     always whole (links move inside one step); the count may lag (rmqueue_bulk counts
     after its loop).
  2. `redo_move(...)`: an open move_freepages record is rolled forward: the pageblock's
     free blocks moved to the new type's lists again (idempotent) and the pageblock
     retagged (else B7 fails: free blocks on lists of two types in one pageblock).
  3. `reclaim_pages()`: the state scan.  Every page in no state at all (B1: not inside
     a free block, not a listed PCP block, not an allocated block, not reserved) and
     every PG_pcp block on no CPU's list is an item the dead CPU had in flight: a block
     half-split (its unsplit rest), half-merged (the block built so far), popped off a
     PCP list on its way to the buddy, or a page it was freeing.  Each is cleaned (flags,
     order, refcount, mapcount, links, compound head, mapping cleared: a compound folio
     half-way through its free keeps PG_tail on its tails) and freed to the buddy in
     aligned chunks of at most pageblock order, with the pageblock's type, merging as
     any free does: a split or merge interrupted at any step is rolled back (split) or
     finished (merge).  Then NR_FREE_PAGES of every zone is recomputed from its
     nr_free (interrupted splits and merges leave it off by the block in flight).
A page the dead CPU had *allocated* (refcount 1, prepared) but not yet handed to its
caller's record is in a valid state and is not found here: the points are placed so
that no death at one leaves one (mm/intent.py "take, record, point"), and after a kill
from outside the hand-off word names it for the caller's recovery (`plain_allocated`
says whether it is still the caller's).
  4. `rebuild_free_lists(zid)`, at takeover (mm/recovery.py), for the zones whose lock a
     CPU killed from outside held: a list update between fault points may be torn, so
     the lists and counts are rebuilt from the PG_buddy heads before a live CPU takes
     the lock.

Needs the world stopped: a live CPU's own in-flight page would look like an orphan.
Lock use: each zone's lock around its frees (the caller acts as the dead CPU through an
`MM` handle); nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.gfp import (
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
)
from aerosync.mm.pmm.page import (
    NIL,
    P_FLAGS,
    P_MAPPING,
    P_ORDER,
    P_REFCOUNT,
    PG_buddy,
    PG_head,
    PG_pcp,
    PG_reserved,
    PG_tail,
    link_list,
    page_array,
    page_off,
)
from aerosync.params import PAGE_META_SIZE

__all__ = ["pcp_repair", "redo_move", "reclaim_pages", "orphan_runs", "recount_free_pages", "plain_allocated",
           "rebuild_free_lists", "zones_of_locks"]

_PMW = PAGE_META_SIZE >> 2        # u32 words per struct page
_PCP_DRAINING = 3


def _pcp_list_mts(idx: int) -> tuple[int, ...]:
    if idx < Z.NR_LOWORDER_PCP_LISTS:
        return (idx % MIGRATE_PCPTYPES,)
    if idx > Z.NR_LOWORDER_PCP_LISTS:
        return (MIGRATE_MOVABLE,)
    return (MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE)


def _geo(arena: Any) -> tuple[int, int, int, int, int]:
    q = arena.u64
    hdr = arena.off("mmzones")
    g = lambda f: int(q[(hdr + f) >> 3])
    return g(Z.G_NR_PAGES), g(Z.G_NR_ZONES), g(Z.G_NR_CPUS), g(Z.G_MAX_ORDER), g(Z.G_PB_ORDER)


def pcp_repair(arena: Any, cpu: int) -> int:
    """Make `cpu`'s PCP lists whole and counted (see the module docstring, step 1);
    returns the pages left on them.  World stopped, `cpu` dead."""
    nr_pages, nr_zones, _, _, _ = _geo(arena)
    q32, q64, at = arena.u32, arena.u64, arena.atomic
    pm32 = arena.off("pagemeta") >> 2
    total = 0
    for z in range(nr_zones):
        po = Z.pcp_off(arena, cpu, z, nr_zones)
        pages = 0
        for idx in range(Z.NR_PCP_LISTS):
            o, mts = Z.pindex_to_order(idx), _pcp_list_mts(idx)
            li = (po + Z.PCP_LISTS + 8 * idx) >> 2
            prev, p, n = NIL, q32[li], 0
            while p != NIL and p < nr_pages and n <= nr_pages:
                b = pm32 + p * _PMW
                w0 = q64[b >> 1]
                if not (w0 & PG_pcp) or (w0 >> 32) & 0xFF != o or (w0 >> 40) & 0xFF not in mts \
                        or (w0 >> 48) & 0xFF != z:
                    break
                q32[b + 5] = prev                       # prev link
                prev, p, n = p, q32[b + 4], n + 1
            if prev == NIL:
                q32[li] = NIL
            else:
                q32[pm32 + prev * _PMW + 4] = NIL       # cut after the last good member
            q32[li + 1] = prev
            pages += n << o
        q64[(po + Z.PCP_COUNT) >> 3] = pages
        st = at.load64(po + Z.PCP_STATE)
        if st in (Z.PCP_BUSY, _PCP_DRAINING):
            at.store64(po + Z.PCP_STATE, Z.PCP_IDLE)
        total += pages
    return total


def redo_move(mm: Any, zid: int, pfn: int, new_mt: int) -> None:
    """Roll an open move_freepages record forward (idempotent), under the zone lock."""
    lk = mm.zone_locks[zid]
    lk.acquire()
    try:
        mm.move_freepages_block_locked(zid, pfn, new_mt)
    finally:
        lk.release()


def _listed_pcp(arena: Any, nr_pages: int, nr_zones: int, nr_cpus: int) -> np.ndarray:
    """Bool per pfn: the head of a block on some CPU's PCP list (lists walked as is)."""
    q32 = arena.u32
    pm32 = arena.off("pagemeta") >> 2
    listed = np.zeros(nr_pages, dtype=bool)
    for c in range(nr_cpus):
        for z in range(nr_zones):
            po = Z.pcp_off(arena, c, z, nr_zones)
            for idx in range(Z.NR_PCP_LISTS):
                li = (po + Z.PCP_LISTS + 8 * idx) >> 2
                p, n = q32[li], 0
                while p != NIL and p < nr_pages and n <= nr_pages:
                    listed[p] = True
                    p, n = q32[pm32 + p * _PMW + 4], n + 1
    return listed


def orphan_runs(arena: Any) -> tuple[list[tuple[int, int]], int]:
    """The pages in no state: (start pfn, number of pages) runs, each inside one zone,
    and how many of those pages were PG_pcp blocks on no list.  Reads only."""
    nr_pages, nr_zones, nr_cpus, _, _ = _geo(arena)
    pages = page_array(arena)
    flags = pages["flags"].copy()
    order = pages["order"].astype(np.int64)
    ref = pages["refcount"].copy()
    zone = pages["zone"].astype(np.int64)
    del pages
    listed = _listed_pcp(arena, nr_pages, nr_zones, nr_cpus)
    is_buddy = (flags & PG_buddy) != 0
    is_pcp = ((flags & PG_pcp) != 0) & listed
    stray_pcp = ((flags & PG_pcp) != 0) & ~listed
    is_res = (flags & PG_reserved) != 0
    is_alloc = ~is_buddy & ((flags & PG_pcp) == 0) & ~is_res & ((flags & PG_tail) == 0) & (ref > 0)
    size = np.int64(1) << np.minimum(order, 62)
    cover = np.zeros(nr_pages + 1, dtype=np.int32)
    for heads in (np.flatnonzero(is_buddy), np.flatnonzero(is_pcp), np.flatnonzero(is_alloc)):
        np.add.at(cover, heads, 1)
        np.add.at(cover, np.minimum(heads + size[heads], nr_pages), -1)
    cover = np.cumsum(cover[:nr_pages]) + is_res
    orphan = cover == 0
    stray_pages = int(np.count_nonzero(orphan & _extent(stray_pcp, size, nr_pages)))
    idx = np.flatnonzero(orphan)
    runs: list[tuple[int, int]] = []
    if len(idx):
        # split where pfns are not consecutive or the zone changes
        brk = np.flatnonzero((np.diff(idx) != 1) | (np.diff(zone[idx]) != 0)) + 1
        for part in np.split(idx, brk):
            runs.append((int(part[0]), len(part)))
    return runs, stray_pages


def _extent(heads: np.ndarray, size: np.ndarray, n: int) -> np.ndarray:
    d = np.zeros(n + 1, dtype=np.int32)
    h = np.flatnonzero(heads)
    np.add.at(d, h, 1)
    np.add.at(d, np.minimum(h + size[h], n), -1)
    return np.cumsum(d[:n]) > 0


def _clean(arena: Any, pfn: int, n: int) -> None:
    """A struct page fit to go on a free list: everything but mt/zone/node cleared."""
    q32, q64 = arena.u32, arena.u64
    pm32 = arena.off("pagemeta") >> 2
    for p in range(pfn, pfn + n):
        b = pm32 + p * _PMW
        q32[b] = 0                                   # flags
        arena.u8[(b << 2) + 4] = 0                   # order
        q32[b + 2] = q32[b + 3] = 0                  # refcount, mapcount
        q32[b + 4] = q32[b + 5] = q32[b + 6] = NIL   # next, prev, head
        q32[b + 7] = 0
        q64[(b >> 1) + 4] = q64[(b >> 1) + 5] = q64[(b >> 1) + 6] = 0   # private, mapping, index


def reclaim_pages(arena: Any, mm: Any) -> dict[str, int]:
    """Free every page in no state to the buddy (module docstring, step 3) and recount
    NR_FREE_PAGES.  `mm`: an MM handle (the dead CPU's) for the frees.  World stopped."""
    _, _, _, max_order, pb_order = _geo(arena)
    runs, stray = orphan_runs(arena)
    pb = arena.off("mmpageblock")
    u8 = arena.u8
    total = 0
    for start, n in runs:
        _clean(arena, start, n)
        zid = u8[arena.off("pagemeta") + start * PAGE_META_SIZE + 6]
        lk = mm.zone_locks[zid]
        lk.acquire()
        try:
            p, end = start, start + n
            while p < end:
                o = min(pb_order, max_order)
                while o and (p & ((1 << o) - 1) or p + (1 << o) > end):
                    o -= 1
                mm.free_one_page_locked(zid, p, o, u8[pb + (p >> pb_order)], False)
                p += 1 << o
        finally:
            lk.release()
        total += n
    recount_free_pages(arena)
    return {"orphan_pages": total, "stray_pcp_pages": stray}


def recount_free_pages(arena: Any) -> None:
    """NR_FREE_PAGES of every zone := the pages its nr_free[] blocks hold."""
    _, nr_zones, _, max_order, _ = _geo(arena)
    q = arena.u64
    for z in range(nr_zones):
        zo = Z.zone_off(arena, z)
        fa = (zo + Z.Z_FREE_AREA + Z.FA_NR_FREE) >> 3
        q[(zo + Z.Z_NR_FREE_PAGES) >> 3] = sum(q[fa + o * (Z.FA_SIZE >> 3)] << o for o in range(max_order + 1))


def plain_allocated(arena: Any, pfn: int, order: int) -> bool:
    """Whether pfn heads an allocated block of `order` with no owner's marks (no slab,
    page table, LRU or mapping: what alloc_pages hands out, PG_head for __GFP_COMP):
    a hand-off or a free a dead CPU left half done (mm/intent.py "Hand-off") is still
    the caller's.  False for a free page, or one in no state (reclaim_pages' then)."""
    if not 0 <= pfn < arena.config["nr_pages"]:
        return False
    o = page_off(arena, pfn)
    flags = arena.u32[(o + P_FLAGS) >> 2]
    return (flags & ~PG_head == 0 and (flags == 0 or order > 0) and arena.u32[(o + P_REFCOUNT) >> 2] > 0
            and arena.u8[o + P_ORDER] == order and arena.u64[(o + P_MAPPING) >> 3] == 0)


def zones_of_locks(arena: Any, slots: list[int]) -> list[int]:
    """The zones whose zone.lock is one of the lock slots `slots`."""
    _, nr_zones, _, _, _ = _geo(arena)
    q = arena.u64
    want = set(slots)
    return [z for z in range(nr_zones) if q[(Z.zone_off(arena, z) + Z.Z_LOCK_SLOT) >> 3] in want]


def rebuild_free_lists(arena: Any, zid: int) -> int:
    """Zone `zid`'s free lists, nr_free[] and NR_FREE_PAGES rebuilt from its PG_buddy
    heads (each names its order and migratetype in word0, written before any link);
    returns the blocks listed.  For a zone.lock taken over from a CPU that died holding
    it between fault points (a SIGKILL from outside): its list update may be torn -- a
    block linked at one end only, a head naming a block that left -- and live CPUs take
    the lock next, so this runs before the lock is released.  A block in flight (a split
    or merge) is in no state and stays for reclaim_pages; one unlinked but still
    PG_buddy goes back on its list (its allocation had not happened).  Lists come out
    in pfn order.  The caller holds the zone's lock (or the world is stopped)."""
    _, _, _, max_order, _ = _geo(arena)
    pages = page_array(arena)
    flags = pages["flags"].copy()
    zone = pages["zone"].copy()
    order = pages["order"].copy()
    mt = pages["mt"].copy()
    del pages
    heads = np.flatnonzero(((flags & PG_buddy) != 0) & (zone == zid))
    q32, q64 = arena.u32, arena.u64
    pm32 = arena.off("pagemeta") >> 2
    fa = Z.zone_off(arena, zid) + Z.Z_FREE_AREA
    free_pages = 0
    for o in range(max_order + 1):
        of = heads[order[heads] == o]
        q64[(fa + o * Z.FA_SIZE + Z.FA_NR_FREE) >> 3] = len(of)
        free_pages += len(of) << o
        for m in range(MIGRATE_TYPES):
            li = (fa + o * Z.FA_SIZE + Z.FA_LISTS + 8 * m) >> 2
            link_list(q32, pm32, li, of[mt[of] == m].tolist())
    q64[(Z.zone_off(arena, zid) + Z.Z_NR_FREE_PAGES) >> 3] = free_pages
    return len(heads)
