"""The zoned buddy allocator with per-CPU page lists, GFP placement and folio refcounts.

Models: mm/page_alloc.c (__rmqueue_smallest, expand, __free_one_page, __rmqueue with its
claim/steal fallback, rmqueue_pcplist, rmqueue_bulk, free_pcppages_bulk,
free_frozen_page_commit, drain_pages, __zone_watermark_ok, get_page_from_freelist,
__alloc_pages_slowpath, warn_alloc, zone_statistics), mm/swap.c (folio_put),
include/linux/mm.h (folio_get, prep_compound_page).  Unit: a pfn; an order.

API: `MM(arena, cpu)` is one simulated CPU's handle (offsets bound once, no state of its
own besides caches of facts fixed at init).  Its attributes are closures taking ints:
  alloc_pages(gfp, order) -> pfn | -1          alloc_pages_node(nid, gfp, order) -> pfn | -1
  alloc_pages_nodemask(gfp, order, preferred_nid, nodemask: int | None) -> pfn | -1
  folio_alloc(gfp, order) -> pfn | -1          free_pages(pfn, order=0, cold=False)
  free_pages_ (= __free_pages)                folio_get(pfn) / folio_put(pfn)
  drain_local_pages()                          drain_cpu_pages(dead_cpu) / pcp_cpu_online(cpu)
  count_numa_event(nid, item, nr)              zone_watermark_ok(zid, order, mark, hz, flags, free)
  rmqueue_locked / rmqueue_smallest_locked / expand_locked / free_one_page_locked (zone.lock held)
Allocation never raises: failure returns -1, counts EV_PGALLOC_FAIL, and (unless
__GFP_NOWARN) warns AllocFailureWarning with the state of every zone tried.  A bad free
(refcount underflow, a free/reserved/tail page, an order different from the one the
block was allocated with) warns BadPageWarning and changes nothing, as bad_page() does.
Allocated blocks keep their order in the head's order byte (the checker needs extents;
Linux only records it for compound pages).

Lock order (outer first):
  1. per_cpu_pages "lock" of (cpu, zone): the pcp state word, taken by CAS IDLE->BUSY by
     its owner (trylock, as pcp_spin_trylock), or IDLE/OFFLINE->DRAINING by a remote
     drainer (one load, then a CAS from exactly the value seen);
     protects the pcp's count and lists and the PG_pcp pages on them.
  2. zone.lock ("&zone->lock", SpinLock): free_area lists and nr_free, NR_FREE_PAGES,
     PG_buddy pages' word0 and links, pageblock migratetypes of the zone.
A pcp is never held while taking another pcp; the zone lock is never held while
taking a pcp.  Two zone locks are never held at once.  A block unlinked from a free
list has its word0 rewritten (PG_buddy off) before zone.lock is dropped: another CPU's
merge (page_is_buddy) or claim scan (move_freepages_block) trusts PG_buddy alone.

Lock-held entry points: every *_locked function (caller holds that zone's lock; with
_internal.DEBUG_VM they start with zone_lock.assert_held()).

PCP protocol (the state word at pcp+0, u64, atomic):
  IDLE 0 -- nobody inside.  BUSY 1 -- the owner CPU is inside (alloc, free, drain).
  OFFLINE 2 -- the CPU is offline: a drainer owns the lists; the owner's CAS fails and
  it goes straight to the buddy lists (pcp trylock failure), so a CPU that is "offline"
  but still running stays correct.  DRAINING 3 -- a drainer is inside (its private
  state: not in mmzone's list, never seen quiescent).  drain_cpu_pages(dead) CASes
  IDLE->DRAINING or OFFLINE->DRAINING (waiting with backoff while BUSY or DRAINING; an
  owner stuck for 5 s is reported as an AeroSyncError, the lists cannot be trusted
  then), drains every list under the zone lock, and stores OFFLINE.  pcp_cpu_online(cpu)
  CASes OFFLINE->IDLE (the CPU's handle may then use its lists), waiting while DRAINING:
  with only OFFLINE, an online (or a second drainer's IDLE->OFFLINE it races with) in
  the middle of a drain handed the lists back to the owner while the drainer was still
  unlinking from them -- the owner's lock-free push/pop against the drainer's
  free_pcppages_bulk, a PCP list linked into a buddy list.  Only the owner CPU ever
  CASes IDLE->BUSY, so count/lists are single-writer at any time.

Owner-only data: the CPU's mmstat record (plain increments; summed on read), its pcp
records while BUSY.

Invariants (mm/pmm/check.py): B1..B8 buddy, P1..P4 PCP, Z1..Z3 zone, F1..F3 folio/refcount.
Deliberate races: watermark checks read NR_FREE_PAGES without the zone lock (as the
kernel's zone_page_state does); a stale value can only make one allocation pass or fail
a mark it was near.  numastat counters are per-CPU, their sum is exact when quiescent.
Not modelled (yet): HIGHATOMIC reserve creation (reserve_highatomic_pageblock: the
HIGHATOMIC lists stay empty), watermark boost, CMA, PCP high auto-tuning, reclaim.

Size: ~1000 lines in one module (style-anchors 5.1 asks for a split past ~800): the
PCP and buddy paths are closures sharing offsets bound once per handle, and the order-0
fast paths inline the PCP pop/push; a separate pcp.py would put a call (~60-80 ns,
measured) back on every operation.  Measured medians (2-core box, 16384-page machine,
tests/test_page_alloc.py::test_hot_path_timings): order-0 alloc+free through the PCP
~1.4 us, with PCP disabled (zone.lock each time) ~2.7 us, order 3 ~3.0 / ~6.4 us.

Allocation plans: alloc_pages_nodemask caches, per (gfp, preferred_nid, nodemask), the
nodemask-filtered zonelist with each zone's order-0 threshold and the PCP fast-path
facts of its first zone (all fixed at init, see make_plan), so a nodemask costs no
per-call filtering and a non-local order-0 request is served by the same inlined PCP
pop as a local one.  Measured (2-core box, loaded, 2-node 16384-page machine, cpu 0,
mempolicy.PolicyAllocator order-0 alloc+free pairs, best of 11 x 20000): bind=1
3.45 -> 1.55 us, preferred=1 2.21 -> 1.58 us, preferred-many=1 3.48 -> 1.60 us; the
local pairs unchanged (PCP 1.44-1.50, buddy 2.65-2.85 us before and after).

numastat (zone_statistics) counts one per allocation whatever its order, as Linux's
rmqueue paths do; pgalloc_<zone> counts 2^order pages (mmzone.py: "mmstat").
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

from aerosync.errors import AeroSyncError
from aerosync.mm.pmm import _internal
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.gfp import __GFP_COMP as _GFP_COMP
from aerosync.mm.pmm.gfp import __GFP_NOWARN as _GFP_NOWARN
from aerosync.mm.pmm.gfp import __GFP_THISNODE as _GFP_THISNODE
from aerosync.mm.pmm.gfp import __GFP_ZERO as _GFP_ZERO
from aerosync.mm.pmm.gfp import (
    ALLOC_HIGHATOMIC,
    ALLOC_MIN_RESERVE,
    ALLOC_NON_BLOCK,
    ALLOC_OOM,
    ALLOC_RESERVES,
    MAX_NR_ZONES,
    MIGRATE_HIGHATOMIC,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    MIGRATETYPE_NAMES,
    ZONE_NAMES,
    format_gfp,
    gfp_migratetype,
    gfp_to_alloc_flags,
    gfp_zone,
)
from aerosync.mm.pmm.gfp import ALLOC_WMARK_LOW as _ALLOC_WMARK_LOW
from aerosync.mm.pmm.page import NIL, PG_buddy, PG_head, PG_lru, PG_pcp, PG_reserved, PG_tail, format_flags
from aerosync.params import PAGE_SHIFT, PAGE_SIZE
from aerosync.sync.spinlock import SpinLock

__all__ = ["MM", "AllocFailureWarning", "BadPageWarning", "mm_ready"]

_PCPTYPES = MIGRATE_PCPTYPES
_NR_PCP = Z.NR_PCP_LISTS
_COSTLY = Z.PAGE_ALLOC_COSTLY_ORDER
_FA32 = Z.FA_SIZE // 4                # free_area stride in u32 words
_FA64 = Z.FA_SIZE // 8
_BAD_FREE = PG_buddy | PG_pcp | PG_reserved | PG_tail
_BAD_FREE_OR_HEAD_ORDER = _BAD_FREE | PG_head | PG_lru | 0xFF << 32   # word0: slow-path frees (PG_lru: reclaim hook)
_PCP_WAIT_S = 5.0
_PCP_DRAINING = 3                     # a remote drainer is inside (see PCP protocol)


class AllocFailureWarning(RuntimeWarning):
    """warn_alloc(): an allocation failed; the message carries the zones' state."""


class BadPageWarning(RuntimeWarning):
    """bad_page(): a free of a page that is not allocated (double free, refcount underflow)."""


def mm_ready(arena: Any) -> bool:
    """True once mm_init has finished writing the arena."""
    return arena.atomic.load64(arena.off("mmzones") + Z.G_MAGIC) == Z.MM_MAGIC


class MM:
    """Simulated CPU `cpu`'s handle on the memory manager of `arena` (see module docstring)."""

    __slots__ = (
        "arena", "cpu", "nid", "nr_nodes", "nr_zones", "nr_cpus", "nr_pages", "max_order", "pb_order",
        "pcp_enabled", "node_order", "zone_locks", "populated",
        "alloc_pages", "alloc_pages_node", "alloc_pages_nodemask", "folio_alloc", "free_pages",
        "free_pages_", "folio_get", "folio_put", "drain_local_pages", "drain_cpu_pages",
        "pcp_cpu_online", "count_numa_event", "zone_watermark_ok", "rmqueue_locked",
        "rmqueue_smallest_locked", "expand_locked", "free_one_page_locked",
        "warn_state", "reclaim", "reclaim_lru_del",
    )

    def __init__(self, arena: Any, cpu: int, lock_cpu: int | None = None) -> None:
        """`lock_cpu`: the owner id this handle's zone locks record (default `cpu`); the
        CPU's interrupt context (a second thread, mm/slab/slub.py Slub(irq=True)) passes its own
        id so that it waits for a zone lock its task context holds instead of mistaking
        it for a recursive acquire (the two threads share pid and cpu)."""
        if not mm_ready(arena):
            raise AeroSyncError(f"MM: arena {arena.name} has no initialised memory manager (run mm_init)")
        q = arena.u64
        hdr = arena.off("mmzones")
        self.arena, self.cpu = arena, cpu
        self.nr_pages = q[(hdr + Z.G_NR_PAGES) >> 3]
        self.max_order = q[(hdr + Z.G_MAX_ORDER) >> 3]
        self.pb_order = q[(hdr + Z.G_PB_ORDER) >> 3]
        self.nr_nodes = q[(hdr + Z.G_NR_NODES) >> 3]
        self.nr_zones = q[(hdr + Z.G_NR_ZONES) >> 3]
        self.nr_cpus = q[(hdr + Z.G_NR_CPUS) >> 3]
        self.pcp_enabled = bool(q[(hdr + Z.G_PCP_ENABLED) >> 3])
        if not 0 <= cpu < self.nr_cpus:
            raise AeroSyncError(f"MM: cpu {cpu} outside 0..{self.nr_cpus - 1}")
        from aerosync.mm.pmm.init import sim_of

        sim = sim_of(arena.config)
        self.nid = sim.cpu_to_node[cpu]
        self.populated = [q[(Z.zone_off(arena, z) + Z.Z_PRESENT) >> 3] > 0 for z in range(self.nr_zones)]
        has_mem = [any(self.populated[n * MAX_NR_ZONES + i] for i in range(MAX_NR_ZONES))
                   for n in range(self.nr_nodes)]
        self.node_order = Z.build_node_orders(self.nr_nodes, sim.distance, sim.node_cpus, has_mem)
        self.zone_locks = [SpinLock(arena, q[(Z.zone_off(arena, z) + Z.Z_LOCK_SLOT) >> 3],
                                    cpu if lock_cpu is None else lock_cpu)
                           for z in range(self.nr_zones)]
        # ---- reclaim hook (mm/reclaim/reclaim.py sets both when a VM attaches reclaim):
        # reclaim(gfp, order, zids, attempt) -> (pfn, zid): kswapd wakeup, direct reclaim,
        # OOM around `attempt` (the MIN-mark retry); reclaim_lru_del(pfn): unlink a PG_lru
        # page whose last reference went (__folio_put's lruvec_del_folio).
        self.reclaim: Any = None
        self.reclaim_lru_del: Any = None
        _build(self)

    def zonelist(self, nid: int, gfp: int) -> list[int]:
        """Zone ids in fallback order for an allocation on node `nid` (ZONELIST_FALLBACK,
        or ZONELIST_NOFALLBACK with __GFP_THISNODE): nodes nearest first, in each node
        zones from gfp_zone(gfp) down to DMA, populated zones only."""
        hz = gfp_zone(gfp)
        nodes = [nid] if gfp & _GFP_THISNODE else self.node_order[nid]
        return [n * MAX_NR_ZONES + zi for n in nodes for zi in range(hz, -1, -1)
                if self.populated[n * MAX_NR_ZONES + zi]]

    def zone_lock(self, zid: int) -> SpinLock:
        return self.zone_locks[zid]

    def page_address(self, pfn: int) -> int:
        """Byte offset of the page frame in the arena (the kernel's page_address())."""
        return self.arena.off("physmem") + (pfn << PAGE_SHIFT)

    def page_view(self, pfn: int, order: int = 0) -> memoryview:
        """memoryview of the 4 KiB << order bytes of pfn's block (released by Arena.close)."""
        return self.arena.view(self.page_address(pfn), PAGE_SIZE << order)


def _build(mm: MM) -> None:
    arena = mm.arena
    u64, u32, u8 = arena.u64, arena.u32, arena.u8
    at = arena.atomic
    cas64, store64, load64 = at.cas64, at.store64, at.load64
    fetch_add32, fetch_sub32 = at.fetch_add32, at.fetch_sub32
    cpu, mynid = mm.cpu, mm.nid
    nr_zones, nr_nodes = mm.nr_zones, mm.nr_nodes
    max_order, pb_order = mm.max_order, mm.pb_order
    pb_half = pb_order // 2
    pcp_on = mm.pcp_enabled
    debug = _internal.DEBUG_VM
    FALLBACKS = _internal.FALLBACKS
    ZN_MASK = _internal.ZN_MASK

    PM = arena.off("pagemeta")
    pm8, pm32, pm64 = PM, PM >> 2, PM >> 3
    PHYS = arena.off("physmem")
    PB = arena.off("mmpageblock")
    zoffs = [Z.zone_off(arena, z) for z in range(nr_zones)]
    zstart = [u64[(o + Z.Z_START) >> 3] for o in zoffs]
    zend = [zstart[i] + u64[(o + Z.Z_SPANNED) >> 3] for i, o in enumerate(zoffs)]
    zfa32 = [(o + Z.Z_FREE_AREA) >> 2 for o in zoffs]           # + order*_FA32: nr_free(2 words), lists
    zfa64 = [(o + Z.Z_FREE_AREA) >> 3 for o in zoffs]
    nfp = [(o + Z.Z_NR_FREE_PAGES) >> 3 for o in zoffs]
    wmarks = [tuple(u64[(o + Z.Z_WMARK + 8 * w) >> 3] for w in range(4)) for o in zoffs]
    lowres = [tuple(u64[(o + Z.Z_LOWMEM_RESERVE + 8 * j) >> 3] for j in range(MAX_NR_ZONES)) for o in zoffs]
    zn64 = [_internal.zn_word(z, z // MAX_NR_ZONES) for z in range(nr_zones)]
    znid = [z // MAX_NR_ZONES for z in range(nr_zones)]
    locks = mm.zone_locks
    lock_acq = [lk.acquire for lk in locks]
    lock_rel = [lk.release for lk in locks]

    def pcp_offs(c: int) -> list[int]:
        return [Z.pcp_off(arena, c, z, nr_zones) for z in range(nr_zones)]

    my_pcp = pcp_offs(cpu)
    my_pcp_cnt = [(o + Z.PCP_COUNT) >> 3 for o in my_pcp]
    my_pcp_lists = [(o + Z.PCP_LISTS) >> 2 for o in my_pcp]
    pcp_fast = [(my_pcp[z], my_pcp_lists[z], my_pcp_cnt[z]) for z in range(nr_zones)]

    ST = Z.stat_off(arena, cpu, nr_nodes) >> 3
    ev_fail, ev_warn, ev_pgfree = ST + Z.EV_PGALLOC_FAIL, ST + Z.EV_ALLOC_WARN, ST + Z.EV_PGFREE
    ev_refill, ev_drain, ev_slow = ST + Z.EV_PCP_REFILL, ST + Z.EV_PCP_DRAIN, ST + Z.EV_SLOWPATH
    ev_claim, ev_steal, ev_pgalloc = ST + Z.EV_CLAIM, ST + Z.EV_STEAL, ST + Z.EV_PGALLOC
    numa0 = ST + Z.STAT_NUMA
    st_foreign = [numa0 + n * 8 + Z.NUMA_FOREIGN for n in range(nr_nodes)]
    st_zone = [numa0 + nr_nodes * 8 + z * Z.ZS_WORDS for z in range(nr_zones)]   # + ZS_* category
    zs_extra = Z.ZS_PAGES_EXTRA
    zeros: dict[int, bytes] = {}

    # ------------------------------------------------------------ free lists (zone.lock)
    def add_to_free_list(pfn: int, order: int, mt: int, zid: int, tail: bool) -> None:
        """__add_to_free_list(): mark pfn a free block of `order` and link it."""
        u64[pm64 + (pfn << 3)] = PG_buddy | order << 32 | mt << 40 | zn64[zid]
        hi = zfa32[zid] + order * _FA32 + 2 + mt * 2
        b = pm32 + (pfn << 4)
        if tail:
            old = u32[hi + 1]
            u32[b + 4] = NIL
            u32[b + 5] = old
            if old == NIL:
                u32[hi] = pfn
            else:
                u32[pm32 + (old << 4) + 4] = pfn
            u32[hi + 1] = pfn
        else:
            old = u32[hi]
            u32[b + 4] = old
            u32[b + 5] = NIL
            if old == NIL:
                u32[hi + 1] = pfn
            else:
                u32[pm32 + (old << 4) + 5] = pfn
            u32[hi] = pfn
        u64[zfa64[zid] + order * _FA64] += 1

    def del_from_free_list(pfn: int, order: int, mt: int, zid: int) -> None:
        """__del_page_from_free_list(): unlink and clear PG_buddy (word0 = zone/node only)."""
        b = pm32 + (pfn << 4)
        nx, pv = u32[b + 4], u32[b + 5]
        hi = zfa32[zid] + order * _FA32 + 2 + mt * 2
        if pv == NIL:
            u32[hi] = nx
        else:
            u32[pm32 + (pv << 4) + 4] = nx
        if nx == NIL:
            u32[hi + 1] = pv
        else:
            u32[pm32 + (nx << 4) + 5] = pv
        u64[pm64 + (pfn << 3)] = zn64[zid]
        u64[zfa64[zid] + order * _FA64] -= 1

    def set_pageblocks(pfn: int, order: int, mt: int) -> None:
        """change_pageblock_range(): retag the pageblock(s) covering [pfn, pfn + 2^order)."""
        i = pfn >> pb_order
        n = max(1, 1 << (order - pb_order)) if order >= pb_order else 1
        u8[PB + i : PB + i + n] = bytes((mt,)) * n

    def expand_locked(zid: int, pfn: int, low: int, high: int, mt: int) -> None:
        """Models expand(): give back the upper halves while splitting order high -> low."""
        if debug:
            locks[zid].assert_held()
        while high > low:
            high -= 1
            add_to_free_list(pfn + (1 << high), high, mt, zid, False)

    def rmqueue_smallest_locked(zid: int, order: int, mt: int) -> int:
        """Models __rmqueue_smallest(): first block of the smallest order >= order of type mt."""
        if debug:
            locks[zid].assert_held()
        fa = zfa32[zid] + 2 + mt * 2
        for cur in range(order, max_order + 1):
            hi = fa + cur * _FA32
            pfn = u32[hi]
            if pfn == NIL:
                continue
            nx = u32[pm32 + (pfn << 4) + 4]
            u32[hi] = nx
            if nx == NIL:
                u32[hi + 1] = NIL
            else:
                u32[pm32 + (nx << 4) + 5] = NIL
            u64[zfa64[zid] + cur * _FA64] -= 1
            u64[pm64 + (pfn << 3)] = zn64[zid]
            while cur > order:                       # expand(), inlined
                cur -= 1
                add_to_free_list(pfn + (1 << cur), cur, mt, zid, False)
            u64[nfp[zid]] -= 1 << order
            return pfn
        return -1

    def move_freepages_block_locked(zid: int, pfn: int, new_mt: int) -> int:
        """__move_freepages_block() + set_pageblock_migratetype(); returns pages moved."""
        start = pfn >> pb_order << pb_order
        end = start + (1 << pb_order)
        p, moved = start, 0
        while p < end:
            w = u64[pm64 + (p << 3)]
            if w & PG_buddy:
                o = (w >> 32) & 0xFF
                del_from_free_list(p, o, (w >> 40) & 0xFF, zid)
                add_to_free_list(p, o, new_mt, zid, True)
                moved += 1 << o
                p += 1 << o
            else:
                p += 1
        set_pageblocks(start, pb_order, new_mt)
        return moved

    def try_to_claim_block_locked(zid: int, pfn: int, cur: int, order: int, mt: int, fb: int) -> int:
        """Models try_to_claim_block(): take a whole block, or the pageblock if half is alike."""
        if cur >= pb_order:
            del_from_free_list(pfn, cur, fb, zid)
            set_pageblocks(pfn, cur, mt)
            while cur > order:
                cur -= 1
                add_to_free_list(pfn + (1 << cur), cur, mt, zid, False)
            u64[nfp[zid]] -= 1 << order
            return pfn
        start = pfn >> pb_order << pb_order
        end = start + (1 << pb_order)
        if start < zstart[zid] or end > zend[zid]:
            return -1                                # prep_move_freepages_block() refuses
        free = movable = 0
        p = start
        while p < end:
            w = u64[pm64 + (p << 3)]
            if w & PG_buddy:
                free += 1 << ((w >> 32) & 0xFF)
                p += 1 << ((w >> 32) & 0xFF)
                continue
            if w & PG_lru:
                movable += 1
            p += 1
        if mt == MIGRATE_MOVABLE:
            alike = movable
        elif fb == MIGRATE_MOVABLE:
            alike = (1 << pb_order) - (free + movable)
        else:
            alike = 0
        if free + alike >= 1 << (pb_order - 1):
            move_freepages_block_locked(zid, pfn, mt)
            return rmqueue_smallest_locked(zid, order, mt)
        return -1

    def rmqueue_locked(zid: int, order: int, mt: int, alloc_flags: int) -> int:
        """Models __rmqueue(): NORMAL, then CLAIM (largest fallback block first), then STEAL."""
        if debug:
            locks[zid].assert_held()
        pfn = rmqueue_smallest_locked(zid, order, mt)
        if pfn >= 0 or mt >= _PCPTYPES:
            return pfn
        fa = zfa32[zid] + 2
        fbs = FALLBACKS[mt]
        # CLAIM: orders from max down; should_try_claim_block() on the block's order.
        for cur in range(max_order, order - 1, -1):
            hi = fa + cur * _FA32
            for fb in fbs:
                if u32[hi + fb * 2] != NIL:
                    break
            else:
                continue
            if cur < pb_half and mt == MIGRATE_MOVABLE:
                break
            got = try_to_claim_block_locked(zid, u32[hi + fb * 2], cur, order, mt, fb)
            if got >= 0:
                u64[ev_claim] += 1
                return got
        # STEAL: smallest fallback block, its pageblock keeps its type.
        for cur in range(order, max_order + 1):
            hi = fa + cur * _FA32
            for fb in fbs:
                pfn = u32[hi + fb * 2]
                if pfn != NIL:
                    del_from_free_list(pfn, cur, fb, zid)
                    while cur > order:
                        cur -= 1
                        add_to_free_list(pfn + (1 << cur), cur, fb, zid, False)
                    u64[nfp[zid]] -= 1 << order
                    u64[ev_steal] += 1
                    return pfn
        return -1

    def free_one_page_locked(zid: int, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        """Models __free_one_page(): merge with free buddies, then link the result.

        page_is_buddy(): PG_buddy, same order, same zone -- the zone test is the range
        check [zstart, zend), equivalent because zones are contiguous pfn ranges.
        """
        if debug:
            locks[zid].assert_held()
        u64[nfp[zid]] += 1 << order
        u64[pm64 + (pfn << 3)] = zn64[zid]
        zs, ze = zstart[zid], zend[zid]
        while order < max_order:
            buddy = pfn ^ (1 << order)
            if buddy < zs or buddy >= ze:
                break
            w = u64[pm64 + (buddy << 3)]
            if not w & PG_buddy or (w >> 32) & 0xFF != order:
                break
            bmt = (w >> 40) & 0xFF
            if bmt != mt:
                if order >= pb_order:
                    if bmt >= _PCPTYPES or mt >= _PCPTYPES:
                        break
                    del_from_free_list(buddy, order, bmt, zid)
                    set_pageblocks(buddy, order, mt)
                else:                                  # same pageblock: cannot differ (B7)
                    del_from_free_list(buddy, order, bmt, zid)
            else:
                del_from_free_list(buddy, order, bmt, zid)
            pfn &= buddy
            order += 1
        if not to_tail and order < max_order - 1:
            # buddy_merge_likely(): the order+1 buddy is free -> keep this one cold.
            hb = (pfn & ~(1 << order)) ^ (2 << order)
            if zs <= hb < ze:
                w = u64[pm64 + (hb << 3)]
                to_tail = bool(w & PG_buddy) and (w >> 32) & 0xFF == order + 1
        add_to_free_list(pfn, order, mt, zid, to_tail)

    def free_one_page(zid: int, pfn: int, order: int, cold: bool) -> None:
        """Models free_one_page()/split_large_buddy(): lock, free per pageblock piece."""
        acq, rel = lock_acq[zid], lock_rel[zid]
        acq()
        try:
            if order > pb_order:
                step = 1 << pb_order
                for p in range(pfn, pfn + (1 << order), step):
                    free_one_page_locked(zid, p, pb_order, u8[PB + (p >> pb_order)], cold)
            else:
                free_one_page_locked(zid, pfn, order, u8[PB + (pfn >> pb_order)], cold)
        finally:
            rel()

    # ------------------------------------------------------------ PCP (owner CPU)
    def free_pcppages_bulk(zid: int, po: int, count: int, pindex: int) -> int:
        """Models free_pcppages_bulk(): free `count` pages from the tails, list by list,
        starting with pindex, under one zone.lock hold.  Caller owns the pcp."""
        lists = (po + Z.PCP_LISTS) >> 2
        cidx = (po + Z.PCP_COUNT) >> 3
        freed = 0
        acq, rel = lock_acq[zid], lock_rel[zid]
        acq()
        try:
            pindex -= 1
            while freed < count:
                for _ in range(_NR_PCP):
                    pindex += 1
                    if pindex >= _NR_PCP:
                        pindex = 0
                    if u32[lists + pindex * 2] != NIL:
                        break
                else:
                    break
                li = lists + pindex * 2
                order = pindex // _PCPTYPES
                nr = 1 << order
                while True:
                    pfn = u32[li + 1]
                    pv = u32[pm32 + (pfn << 4) + 5]
                    u32[li + 1] = pv
                    if pv == NIL:
                        u32[li] = NIL
                    else:
                        u32[pm32 + (pv << 4) + 4] = NIL
                    u64[cidx] -= nr
                    free_one_page_locked(zid, pfn, order, u8[PB + (pfn >> pb_order)], False)
                    freed += nr
                    if freed >= count or pv == NIL:
                        break
        finally:
            rel()
        u64[ev_drain] += 1
        return freed

    def rmqueue_bulk(zid: int, order: int, count: int, li: int, mt: int, alloc_flags: int) -> int:
        """Models rmqueue_bulk(): `count` blocks under one zone.lock hold, appended at the tail."""
        got = 0
        pcp_word = PG_pcp | order << 32 | mt << 40
        acq, rel = lock_acq[zid], lock_rel[zid]
        acq()
        try:
            for _ in range(count):
                pfn = rmqueue_locked(zid, order, mt, alloc_flags)
                if pfn < 0:
                    break
                u64[pm64 + (pfn << 3)] = pcp_word | zn64[zid]
                b = pm32 + (pfn << 4)
                old = u32[li + 1]
                u32[b + 4] = NIL
                u32[b + 5] = old
                if old == NIL:
                    u32[li] = pfn
                else:
                    u32[pm32 + (old << 4) + 4] = pfn
                u32[li + 1] = pfn
                got += 1
        finally:
            rel()
        u64[ev_refill] += 1
        return got

    def rmqueue_pcplist(zid: int, order: int, mt: int, alloc_flags: int) -> int:
        """Models rmqueue_pcplist(): pop the head; refill a batch when empty.

        Returns pfn, -1 if the zone had nothing, -2 if the pcp is offline (trylock failed).
        """
        po = my_pcp[zid]
        if cas64(po, 0, 1) != 0:
            return -2
        li = my_pcp_lists[zid] + (order * _PCPTYPES + mt) * 2
        pfn = u32[li]
        if pfn == NIL:
            cidx = my_pcp_cnt[zid]
            batch, high, count = u64[cidx + 2], u64[cidx + 1], u64[cidx]
            b = batch if high >= batch else 1
            max_alloc = max(high - count - batch, batch)
            if b > max_alloc:
                b = max_alloc
            if b > 1:
                b = max(b >> order, 2)
            got = rmqueue_bulk(zid, order, b, li, mt, alloc_flags)
            u64[cidx] = count + (got << order)
            pfn = u32[li]
            if pfn == NIL:
                store64(po, 0)
                return -1
        nx = u32[pm32 + (pfn << 4) + 4]
        u32[li] = nx
        if nx == NIL:
            u32[li + 1] = NIL
        else:
            u32[pm32 + (nx << 4) + 5] = NIL
        u64[my_pcp_cnt[zid]] -= 1 << order
        store64(po, 0)
        return pfn

    def rmqueue(zid: int, order: int, mt: int, alloc_flags: int) -> int:
        """Models rmqueue(): PCP for order <= 3, else (or pcp offline) the buddy lists."""
        if order <= _COSTLY and pcp_on:
            pfn = rmqueue_pcplist(zid, order, mt, alloc_flags)
            if pfn != -2:
                return pfn
        acq, rel = lock_acq[zid], lock_rel[zid]
        acq()
        try:
            pfn = -1
            if order > 0 and alloc_flags & ALLOC_HIGHATOMIC:
                pfn = rmqueue_smallest_locked(zid, order, MIGRATE_HIGHATOMIC)
            if pfn < 0:
                pfn = rmqueue_locked(zid, order, mt, alloc_flags)
            if pfn < 0 and alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM):
                pfn = rmqueue_smallest_locked(zid, order, MIGRATE_HIGHATOMIC)
        finally:
            rel()
        return pfn

    # ------------------------------------------------------------ watermarks
    def zone_watermark_ok(zid: int, order: int, mark: int, hz: int, alloc_flags: int, free: int) -> bool:
        """Models __zone_watermark_ok() (linux-mm.md 1.9)."""
        free -= (1 << order) - 1
        m = mark
        if alloc_flags & ALLOC_RESERVES:
            if alloc_flags & ALLOC_MIN_RESERVE:
                m -= m // 2
                if alloc_flags & ALLOC_NON_BLOCK:
                    m -= m // 4
            if alloc_flags & ALLOC_OOM:
                m -= m // 2
        if free <= m + lowres[zid][hz]:
            return False
        if order == 0:
            return True
        fa = zfa32[zid] + 2
        for o in range(order, max_order + 1):
            hi = fa + o * _FA32
            if u32[hi] != NIL or u32[hi + 2] != NIL or u32[hi + 4] != NIL:
                return True
            if alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM) and u32[hi + 6] != NIL:
                return True
        return False

    # ------------------------------------------------------------ allocation
    # Allocation plans, keyed (gfp, preferred_nid, nodemask): the zonelist filtered by the
    # nodemask, each zone's order-0 LOW threshold (LOW mark + lowmem_reserve[hz]), mt, hz,
    # and `fast`: the order-0 PCP fast path's facts for the first zone, or ().  Every
    # figure in a plan is fixed at init (zone ids, populated zones, node order, watermarks
    # and lowmem_reserve, which only mm_init writes, pcp/stat offsets); free counts are
    # read on every call.  So a per-handle cache never goes stale -- unless watermarks
    # become tunable at run time (min_free_kbytes, watermark_scale_factor), which would
    # have to clear `plans` and `local_plans`.  Bounded (FIFO) against callers cycling
    # through many nodemasks.
    Plan = tuple[tuple[int, ...], tuple[int, ...], int, int, tuple[int, ...]]
    plans: dict[tuple[int, int, int | None], Plan] = {}
    PLANS_MAX = 1024

    def make_plan(gfp: int, nid: int, nodemask: int | None) -> Plan:
        hz = gfp_zone(gfp)
        mt = gfp_migratetype(gfp)
        zids = tuple(z for z in mm.zonelist(nid, gfp) if nodemask is None or nodemask >> znid[z] & 1)
        thr = tuple(wmarks[z][1] + lowres[z][hz] for z in zids)
        fast: tuple[int, ...] = ()
        # The inlined order-0 PCP pop in alloc_pages_nodemask, for every plan but the
        # plain local one (alloc_pages has its own fast path for it; its fallbacks come
        # here, where a second try of the same pop would be wasted).  The first zone is
        # the preferred zone, so the allocation is a numa_hit: its category is fixed.
        if zids and pcp_on and not gfp & (_GFP_ZERO | _GFP_COMP) and (nid != mynid or nodemask is not None):
            z = zids[0]
            fast = (nfp[z], thr[0], my_pcp[z], my_pcp_lists[z] + mt * 2, my_pcp_cnt[z],
                    st_zone[z] + (Z.ZS_HIT_LOCAL if znid[z] == mynid else Z.ZS_HIT_OTHER))
        plan = (zids, thr, mt, hz, fast)
        if len(plans) >= PLANS_MAX:
            del plans[next(iter(plans))]
        plans[(gfp, nid, nodemask)] = plan
        return plan

    def prep_slow(pfn: int, order: int, gfp: int) -> None:
        """prep_new_page() extras: __GFP_ZERO and prep_compound_page() for __GFP_COMP."""
        if gfp & _GFP_ZERO:
            z = zeros.get(order)
            if z is None:
                z = zeros[order] = bytes(PAGE_SIZE << order)
            a = PHYS + (pfn << PAGE_SHIFT)
            u8[a : a + (PAGE_SIZE << order)] = z
        if gfp & _GFP_COMP and order > 0:
            u32[pm32 + (pfn << 4)] = PG_head
            for t in range(pfn + 1, pfn + (1 << order)):
                b = pm32 + (t << 4)
                u32[b] = PG_tail
                u8[pm8 + (t << 6) + 4] = 0
                u32[b + 6] = pfn

    def alloc_pages_nodemask(gfp: int, order: int, preferred_nid: int, nodemask: int | None) -> int:
        """Models __alloc_pages(): fast path at the LOW mark, then the slow path at MIN
        with the caller's reserves; returns pfn or -1 (never raises on failure).

        The plan (filtered zonelist, thresholds) is cached per (gfp, preferred_nid,
        nodemask); an order-0 request whose first zone is above its LOW mark and whose
        PCP list is non-empty is served inline, as alloc_pages' local fast path.
        """
        plan = plans.get((gfp, preferred_nid, nodemask))
        if plan is None:
            if order > max_order or order < 0:
                return alloc_failed(gfp, order, preferred_nid, nodemask, ())
            plan = make_plan(gfp, preferred_nid, nodemask)
        elif order > max_order:
            return alloc_failed(gfp, order, preferred_nid, nodemask, ())
        zids, thr, mt, hz, fast = plan
        if fast and not order:
            i_nfp, th, po, li, cidx, i_stat = fast
            if u64[i_nfp] > th and cas64(po, 0, 1) == 0:
                pfn = u32[li]
                if pfn != NIL:
                    b = pm32 + (pfn << 4)
                    nx = u32[b + 4]
                    u32[li] = nx
                    if nx == NIL:
                        u32[li + 1] = NIL
                    else:
                        u32[pm32 + (nx << 4) + 5] = NIL
                    u64[cidx] -= 1
                    store64(po, 0)
                    u32[b] = 0              # flags: PG_pcp off (order byte is already 0)
                    u32[b + 2] = 1          # refcount
                    u64[i_stat] += 1
                    return pfn
                store64(po, 0)
        if not zids:
            return alloc_failed(gfp, order, preferred_nid, nodemask, zids)
        for i, zid in enumerate(zids):
            free = u64[nfp[zid]]
            if order == 0:
                ok = free > thr[i]
            else:
                ok = zone_watermark_ok(zid, order, wmarks[zid][1], hz, _ALLOC_WMARK_LOW, free)
            if ok:
                pfn = rmqueue(zid, order, mt, _ALLOC_WMARK_LOW)
                if pfn >= 0:
                    break
        else:
            pfn, zid = alloc_pages_slow(gfp, order, zids, mt, hz)
            if pfn < 0:
                return alloc_failed(gfp, order, preferred_nid, nodemask, zids)
        # prep_new_page(): refcount 1, flags clear, order kept for the checker
        u64[pm64 + (pfn << 3)] = order << 32 | zn64[zid]
        u32[pm32 + (pfn << 4) + 2] = 1
        if gfp & (_GFP_ZERO | _GFP_COMP):
            prep_slow(pfn, order, gfp)
        # zone_statistics(preferred_zone, zone, 1): one per allocation, whatever the order
        # (preferred zone = first zone of the filtered zonelist); pgalloc counts the pages,
        # sum of the categories + ZS_PAGES_EXTRA (mmzone.py).
        zn, pn = znid[zid], znid[zids[0]]
        i = st_zone[zid]
        if zn == pn:
            u64[i + (0 if zn == mynid else 1)] += 1          # ZS_HIT_LOCAL / _OTHER
        else:
            u64[i + (2 if zn == mynid else 3)] += 1          # ZS_MISS_LOCAL / _OTHER
            u64[st_foreign[pn]] += 1
        if order:
            u64[i + zs_extra] += (1 << order) - 1
        return pfn

    def alloc_pages_slow(gfp: int, order: int, zids: tuple[int, ...], mt: int, hz: int) -> tuple[int, int]:
        """Models __alloc_pages_slowpath() without reclaim/compaction: one retry at the MIN
        mark with gfp_to_alloc_flags() reserves (ALLOC_MIN_RESERVE, ALLOC_NON_BLOCK...)."""
        u64[ev_slow] += 1
        af = gfp_to_alloc_flags(gfp, order)

        def attempt() -> tuple[int, int]:
            for zid in zids:
                if zone_watermark_ok(zid, order, wmarks[zid][0], hz, af, u64[nfp[zid]]):
                    pfn = rmqueue(zid, order, mt, af)
                    if pfn >= 0:
                        return pfn, zid
            return -1, -1

        if mm.reclaim is not None:                  # reclaim hook: kswapd, direct reclaim, OOM
            return mm.reclaim(gfp, order, zids, attempt)
        return attempt()

    def warn_state(zids: tuple[int, ...] | list[int]) -> str:
        """show_free_areas()-style lines for the zones of a failed allocation."""
        lines = []
        for zid in zids:
            info = Z.zone_info(arena, zid)
            k = PAGE_SIZE >> 10
            lines.append(
                f"Node {info['nid']} {ZONE_NAMES[zid % MAX_NR_ZONES]} free:{info['nr_free_pages'] * k}kB "
                f"min:{info['min'] * k}kB low:{info['low'] * k}kB high:{info['high'] * k}kB "
                f"lowmem_reserve[]:{' '.join(str(x) for x in info['lowmem_reserve'])} "
                f"managed:{info['managed'] * k}kB")
            lines.append(f"Node {info['nid']} {ZONE_NAMES[zid % MAX_NR_ZONES]}: " + " ".join(
                f"{n}*{k << o}kB" for o, n in enumerate(info["nr_free"])) + f" = {info['nr_free_pages'] * k}kB")
        return "\n".join(lines)

    def alloc_failed(gfp: int, order: int, nid: int, nodemask: int | None, zids: tuple[int, ...]) -> int:
        u64[ev_fail] += 1
        if not gfp & _GFP_NOWARN:
            u64[ev_warn] += 1
            mask = "(null)" if nodemask is None else f"{nodemask:#x}"
            tried = zids or tuple(z for z in range(nr_zones) if mm.populated[z])
            warnings.warn(
                f"cpu{cpu}: page allocation failure: order:{order}, mode:{format_gfp(gfp)}, "
                f"preferred_nid={nid}, nodemask={mask}\n{warn_state(tried)}",
                AllocFailureWarning, stacklevel=3)
        return -1

    local_plans: dict[int, tuple[Any, ...]] = {}

    def local_plan(gfp: int) -> tuple[Any, ...]:
        """The fast-path facts for an order-0 `gfp` allocation on the local node, or ()
        when this gfp always takes the general path (__GFP_ZERO/__GFP_COMP, no zone)."""
        zids, thr, mt, _hz, _fast = plans.get((gfp, mynid, None)) or make_plan(gfp, mynid, None)
        fast: tuple[Any, ...] = ()
        if zids and not gfp & (_GFP_ZERO | _GFP_COMP):
            z = zids[0]
            i_stat = st_zone[z] + (Z.ZS_HIT_LOCAL if znid[z] == mynid else Z.ZS_HIT_OTHER)
            if pcp_on:
                fast = (nfp[z], thr[0], my_pcp[z], my_pcp_lists[z] + mt * 2, my_pcp_cnt[z], i_stat)
            else:
                fast = (nfp[z], thr[0], z, zfa32[z] + 2 + mt * 2, zfa64[z], i_stat, lock_acq[z], lock_rel[z],
                        mt, zn64[z])
        local_plans[gfp] = fast
        return fast

    def alloc_pages_pcp(gfp: int, order: int) -> int:
        """alloc_pages(): on the local node, no nodemask (PCP enabled).

        Fast path (order 0, first zone of the local zonelist above its LOW mark, its PCP
        list non-empty) inlined here: measured 2.5 -> ~1.5 us per alloc+free pair
        against going through alloc_pages_nodemask + rmqueue + rmqueue_pcplist calls.
        """
        fast = local_plans.get(gfp)
        if fast is None:
            fast = local_plan(gfp)
        if order or not fast:
            return alloc_pages_nodemask(gfp, order, mynid, None)
        i_nfp, thr, po, li, cidx, i_stat = fast
        if u64[i_nfp] <= thr or cas64(po, 0, 1) != 0:
            return alloc_pages_nodemask(gfp, order, mynid, None)
        pfn = u32[li]
        if pfn == NIL:
            store64(po, 0)
            return alloc_pages_nodemask(gfp, order, mynid, None)
        b = pm32 + (pfn << 4)
        nx = u32[b + 4]
        u32[li] = nx
        if nx == NIL:
            u32[li + 1] = NIL
        else:
            u32[pm32 + (nx << 4) + 5] = NIL
        u64[cidx] -= 1
        store64(po, 0)
        u32[b] = 0                      # flags: PG_pcp off (order byte is already 0)
        u32[b + 2] = 1                  # refcount
        u64[i_stat] += 1
        return pfn

    def alloc_pages_buddy(gfp: int, order: int) -> int:
        """alloc_pages() with PCP disabled: zone.lock every time; order 0 inlined.

        The popped page's word0 (PG_buddy, order, mt) is cleared before zone.lock is
        dropped, as every other path does (rmqueue_smallest_locked, del_from_free_list):
        a page off the list that still looked like a free order-0 buddy would be merged
        by a concurrent free of its buddy (free_one_page_locked) or moved by a claim
        (move_freepages_block_locked) -- unlinked from a list it is not on, nr_free[0]
        decremented twice, an allocated page put back on a free list.
        """
        fast = local_plans.get(gfp)
        if fast is None:
            fast = local_plan(gfp)
        if order or not fast:
            return alloc_pages_nodemask(gfp, order, mynid, None)
        i_nfp, thr, zid, hi, i_nr0, i_stat, acq, rel, mt, zn = fast
        if u64[i_nfp] <= thr:
            return alloc_pages_nodemask(gfp, order, mynid, None)
        acq()
        try:
            pfn = u32[hi]
            if pfn == NIL:
                pfn = rmqueue_locked(zid, 0, mt, _ALLOC_WMARK_LOW)   # word0 cleared inside
            else:
                nx = u32[pm32 + (pfn << 4) + 4]
                u32[hi] = nx
                if nx == NIL:
                    u32[hi + 1] = NIL
                else:
                    u32[pm32 + (nx << 4) + 5] = NIL
                u64[pm64 + (pfn << 3)] = zn       # PG_buddy, order, mt off; zone/node kept
                u64[i_nr0] -= 1
                u64[i_nfp] -= 1
        finally:
            rel()
        if pfn < 0:
            return alloc_pages_nodemask(gfp, order, mynid, None)
        u32[pm32 + (pfn << 4) + 2] = 1            # refcount
        u64[i_stat] += 1
        return pfn

    alloc_pages = alloc_pages_pcp if pcp_on else alloc_pages_buddy

    def alloc_pages_node(nid: int, gfp: int, order: int) -> int:
        """alloc_pages_node(): preferred node nid (NUMA_NO_NODE = -1 means local)."""
        if nid < 0 or nid == mynid:
            return alloc_pages(gfp, order)
        return alloc_pages_nodemask(gfp, order, nid, None)

    def folio_alloc(gfp: int, order: int) -> int:
        """folio_alloc(): a compound block (PG_head + PG_tail pages) of 2^order pages."""
        return alloc_pages_nodemask(gfp | _GFP_COMP, order, mynid, None)

    # ------------------------------------------------------------ free
    def bad_page(pfn: int, why: str) -> None:
        w = u64[pm64 + (pfn << 3)]
        warnings.warn(f"cpu{cpu}: BUG: Bad page state: pfn:{pfn} {why}; flags:{format_flags(w & 0xFFFFFFFF)} "
                      f"order:{(w >> 32) & 0xFF} refcount:{u32[pm32 + (pfn << 4) + 2]}",
                      BadPageWarning, stacklevel=3)

    def free_frozen_pages(pfn: int, order: int, cold: bool) -> None:
        """Models free_frozen_pages(): refcount already 0; to this CPU's PCP or the buddy."""
        w = u64[pm64 + (pfn << 3)]
        if w & PG_lru:                              # reclaim hook: off its LRU first
            if mm.reclaim_lru_del is None:
                raise AeroSyncError(f"cpu{cpu}: freeing LRU page {pfn} on a CPU without reclaim attached")
            mm.reclaim_lru_del(pfn)
            w = u64[pm64 + (pfn << 3)]
        if w & _BAD_FREE:
            bad_page(pfn, "freeing a page that is free, reserved or a tail")
            return
        if not w & PG_head and (w >> 32) & 0xFF != order:
            bad_page(pfn, f"freed as order {order}, allocated as order {(w >> 32) & 0xFF}")
            return
        if w & PG_head:
            order = (w >> 32) & 0xFF
            for t in range(pfn + 1, pfn + (1 << order)):
                b = pm32 + (t << 4)
                u32[b] = 0
                u32[b + 6] = NIL
        zid = (w >> 48) & 0xFF
        u64[ev_pgfree] += 1 << order
        if order <= _COSTLY and pcp_on:
            mt = u8[PB + (pfn >> pb_order)]
            po = my_pcp[zid]
            if mt < _PCPTYPES and cas64(po, 0, 1) == 0:
                # free_frozen_page_commit()
                u64[pm64 + (pfn << 3)] = PG_pcp | order << 32 | mt << 40 | (w & ZN_MASK)
                pindex = order * _PCPTYPES + mt
                li = my_pcp_lists[zid] + pindex * 2
                b = pm32 + (pfn << 4)
                if cold:                                  # FPI_TO_TAIL: coldest end
                    old = u32[li + 1]
                    u32[b + 4] = NIL
                    u32[b + 5] = old
                    if old == NIL:
                        u32[li] = pfn
                    else:
                        u32[pm32 + (old << 4) + 4] = pfn
                    u32[li + 1] = pfn
                else:
                    old = u32[li]
                    u32[b + 4] = old
                    u32[b + 5] = NIL
                    if old == NIL:
                        u32[li + 1] = pfn
                    else:
                        u32[pm32 + (old << 4) + 5] = pfn
                    u32[li] = pfn
                cidx = my_pcp_cnt[zid]
                count = u64[cidx] + (1 << order)
                u64[cidx] = count
                high = u64[cidx + 1]
                if count >= high:
                    batch = u64[cidx + 2]
                    free_pcppages_bulk(zid, po, count - max(high - batch, 0), pindex)
                store64(po, 0)
                return
        free_one_page(zid, pfn, order, cold)

    def free_pages_pcp(pfn: int, order: int = 0, cold: bool = False) -> None:
        """__free_pages(): drop a reference; at zero the block goes back (hot, or cold).

        The hot order-0 free to this CPU's PCP head is inlined (free_frozen_pages has
        the general case), for the same reason as alloc_pages' fast path.
        """
        old = fetch_sub32(pm8 + (pfn << 6) + 8, 1)
        if old != 1:
            if old == 0:
                fetch_add32(pm8 + (pfn << 6) + 8, 1)
                bad_page(pfn, "refcount underflow (double free?)")
            return
        if order or cold:
            return free_frozen_pages(pfn, order, cold)
        b = pm32 + (pfn << 4)
        w = u64[pm64 + (pfn << 3)]
        mt = u8[PB + (pfn >> pb_order)]
        po, li, cidx = pcp_fast[(w >> 48) & 0xFF]
        if w & _BAD_FREE_OR_HEAD_ORDER or mt >= _PCPTYPES or cas64(po, 0, 1) != 0:
            return free_frozen_pages(pfn, order, cold)
        u32[b] = PG_pcp
        u8[pm8 + (pfn << 6) + 5] = mt
        li += mt * 2
        old = u32[li]
        u32[b + 4] = old
        u32[b + 5] = NIL
        if old == NIL:
            u32[li + 1] = pfn
        else:
            u32[pm32 + (old << 4) + 5] = pfn
        u32[li] = pfn
        count = u64[cidx] + 1
        u64[cidx] = count
        u64[ev_pgfree] += 1
        if count >= u64[cidx + 1]:
            free_pcppages_bulk(zid_of(pfn), po, count - max(u64[cidx + 1] - u64[cidx + 2], 0), mt)
        store64(po, 0)

    def free_pages_buddy(pfn: int, order: int = 0, cold: bool = False) -> None:
        """__free_pages() with PCP disabled: zone.lock every time."""
        old = fetch_sub32(pm8 + (pfn << 6) + 8, 1)
        if old != 1:
            if old == 0:
                fetch_add32(pm8 + (pfn << 6) + 8, 1)
                bad_page(pfn, "refcount underflow (double free?)")
            return
        w = u64[pm64 + (pfn << 3)]
        if order or w & _BAD_FREE_OR_HEAD_ORDER:
            return free_frozen_pages(pfn, order, cold)
        zid = (w >> 48) & 0xFF
        u64[ev_pgfree] += 1
        lock_acq[zid]()
        try:
            free_one_page_locked(zid, pfn, 0, u8[PB + (pfn >> pb_order)], cold)
        finally:
            lock_rel[zid]()

    def zid_of(pfn: int) -> int:
        return u8[pm8 + (pfn << 6) + 6]

    free_pages = free_pages_pcp if pcp_on else free_pages_buddy

    def folio_get(pfn: int) -> None:
        """folio_get(): one more reference (atomic, any CPU)."""
        fetch_add32(pm8 + (pfn << 6) + 8, 1)

    def folio_put(pfn: int) -> None:
        """folio_put(): drop a reference; the last one frees the whole folio."""
        old = fetch_sub32(pm8 + (pfn << 6) + 8, 1)
        if old == 1:
            free_frozen_pages(pfn, u8[pm8 + (pfn << 6) + 4], False)
        elif old == 0:
            fetch_add32(pm8 + (pfn << 6) + 8, 1)
            bad_page(pfn, "folio_put on a folio with refcount 0")

    # ------------------------------------------------------------ drain / hotplug
    def drain_pages_zone(zid: int, po: int) -> int:
        cidx = (po + Z.PCP_COUNT) >> 3
        total = 0
        while u64[cidx]:
            batch = max(1, u64[cidx + 2])
            n = free_pcppages_bulk(zid, po, min(u64[cidx], batch << 5), 0)
            if not n:
                break
            total += n
        return total

    def drain_local_pages() -> int:
        """drain_local_pages(): give every page on this CPU's lists back to the buddy."""
        total = 0
        for zid in range(nr_zones):
            po = my_pcp[zid]
            if cas64(po, 0, 1) != 0:
                continue                              # offline: a drainer owns it
            try:
                total += drain_pages_zone(zid, po)
            finally:
                store64(po, 0)
        return total

    def pcp_claim(c: int, zid: int, po: int, frm: tuple[int, ...], to: int, wait: tuple[int, ...], what: str) -> int:
        """CAS the pcp state from one of `frm` to `to`, waiting (backoff) while it is in
        `wait`; returns the state found: one of `frm` (claimed) or another that ends the
        wait (nothing claimed).

        One load, then a CAS from exactly the value seen: trying each of `frm` in turn
        would let the state move between two CASes (BUSY, then IDLE when the owner
        leaves) and end the wait on a value in `frm` that was never claimed -- a drainer
        then emptied the lists while the owner was back inside (test_page_alloc.py::
        test_remote_drain_while_owner_runs caught it, about 1 run in 15)."""
        deadline = time.monotonic() + _PCP_WAIT_S
        delay = 1e-5
        while True:
            st = load64(po)
            if st in frm:
                if cas64(po, st, to) == st:
                    return st
                continue                      # moved under us: look again at once
            if st not in wait:
                return st
            if time.monotonic() > deadline:
                raise AeroSyncError(f"{what}: cpu{c}'s pcp of {Z.zone_name(zid)} stayed "
                                    f"{'BUSY' if st == 1 else 'DRAINING'} for {_PCP_WAIT_S} s (owner or drainer "
                                    f"died inside?); its lists cannot be trusted")
            os.sched_yield() if delay < 1e-4 else time.sleep(delay)
            delay = min(delay * 2, 1e-3)

    def drain_cpu_pages(dead_cpu: int) -> int:
        """page_alloc_cpu_dead(): mark dead_cpu's pcps OFFLINE and drain them (any CPU)."""
        total = 0
        for zid, po in enumerate(pcp_offs(dead_cpu)):
            pcp_claim(dead_cpu, zid, po, (0, 2), _PCP_DRAINING, (1, _PCP_DRAINING), "drain_cpu_pages")
            try:
                total += drain_pages_zone(zid, po)
            finally:
                store64(po, 2)
        return total

    def pcp_cpu_online(c: int) -> None:
        """page_alloc_cpu_online(): hand cpu c's (empty) pcps back to their owner, once
        any drain of them has finished."""
        for zid, po in enumerate(pcp_offs(c)):
            pcp_claim(c, zid, po, (2,), 0, (_PCP_DRAINING,), "pcp_cpu_online")

    def count_numa_event(nid: int, item: int, nr: int = 1) -> None:
        """Bump a numastat item (e.g. NUMA_INTERLEAVE_HIT from mempolicy) on this CPU."""
        u64[numa0 + nid * 8 + item] += nr

    mm.alloc_pages = alloc_pages
    mm.alloc_pages_node = alloc_pages_node
    mm.alloc_pages_nodemask = alloc_pages_nodemask
    mm.folio_alloc = folio_alloc
    mm.free_pages = free_pages
    mm.free_pages_ = free_pages
    mm.folio_get = folio_get
    mm.folio_put = folio_put
    mm.drain_local_pages = drain_local_pages
    mm.drain_cpu_pages = drain_cpu_pages
    mm.pcp_cpu_online = pcp_cpu_online
    mm.count_numa_event = count_numa_event
    mm.zone_watermark_ok = zone_watermark_ok
    mm.rmqueue_locked = rmqueue_locked
    mm.rmqueue_smallest_locked = rmqueue_smallest_locked
    mm.expand_locked = expand_locked
    mm.free_one_page_locked = free_one_page_locked
    mm.warn_state = warn_state
    _ = (ev_pgalloc, load64, Z.NUMA_HIT, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE, MIGRATETYPE_NAMES)
