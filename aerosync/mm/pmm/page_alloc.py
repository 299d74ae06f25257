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
  free_pages_bulk(pfns)                       (folios_put: one reference of each order-0 page)
  alloc_page_fn(gfp) -> (() -> pfn | -1)       (order-0 allocations of one gfp, plan bound)
  drain_local_pages()                          drain_cpu_pages(dead_cpu) / pcp_cpu_online(cpu)
  count_numa_event(nid, item, nr)              zone_watermark_ok(zid, order, mark, hz, flags, free)
  rmqueue_locked / rmqueue_smallest_locked / expand_locked / free_one_page_locked (zone.lock held)
Allocation never raises: failure returns -1, counts EV_PGALLOC_FAIL, and (unless
__GFP_NOWARN) warns AllocFailureWarning with the state of every zone tried -- rate-limited
as warn_alloc()'s `static DEFINE_RATELIMIT_STATE(nopage_rs, 10*HZ, 1)` (v6.19): at most
one warning per 10 s, per process (`nopage_rs`, lib/ratelimit.py: each simulated CPU's
worker has its own, Linux one for all CPUs); a held warning counts
EV_ALLOC_WARN_SUPPRESSED, and the next printed one says "warn_alloc: N callbacks
suppressed" first, as ___ratelimit() does.  A bad free
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
HIGHATOMIC lists stay empty), CMA, reclaim (kswapd: see boost below).

PCP high auto-tuning (6.7+, issue 14 point 4): each pcp has high_min/high_max
(zone_highsize; both = `pcp_high` when that knob fixes it), `high` moving between them,
`alloc_factor` scaling refills (nr_pcp_alloc, at each refill), `free_count` scaling
frees (nr_pcp_high / nr_pcp_free, at the free that reaches the threshold), decay once a
second (decay_pcp_high, run by the owner at a refill or commit when due), ZONE_BELOW_HIGH
set by get_page_from_freelist when a zone is below its HIGH mark (then every free
commits, as Linux's does).  The inlined order-0 fast paths compare count with the pcp's
free_thr word (= high, or 0 while ZONE_BELOW_HIGH) and do nothing else; `pcp_autotune`
chooses how free_count/alloc_factor are kept: "exact" per operation as Linux (the
"linux" profile), "batched" caught up from the CPU's pgfree/pgalloc counters at each
refill and commit (the "aerosync" profile; same figures for runs of frees, net figures
when allocations interleave; a high-order free below the threshold does not commit, so
a burst of them is judged free_high at the next commit, not at once), "off" (fixed
high, batch-sized refills).  Order-9 blocks
(HPAGE_PMD_ORDER, with THP) have their own two lists (pcp_allowed_order).

ALLOC_NOFRAGMENT (point 5): alloc_flags_nofragment sets it for allocations whose
preferred zone is Normal on a node that has DMA32; __rmqueue then only claims whole
pageblocks from other migratetypes (min_order = pageblock_order) and never steals; the
zonelist walk restarts without the flag when it fails (and first tries remote nodes
with it, as Linux).  A claim from another type boosts the zone's watermarks
(boost_watermark: ZONE_BOOSTED_WATERMARK, watermark_boost, counted as
aerosync_watermark_boost); rmqueue then clears the flag and wakes kswapd for the zone
(boost_done, counted as aerosync_kswapd_wake) through the reclaim hook
mm.wakeup_kswapd; kswapd's balance_pgdat reclaims to high + boost and takes the boost
away (mm/reclaim/vmscan.py).  Without a kswapd (no reclaim, or no kthreads) the boost
is dropped right there, standing in for a balance_pgdat with nothing to do.

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
from aerosync.lib.ratelimit import RatelimitState
from aerosync.mm import intent as I
from aerosync.mm.pmm import _internal
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.gfp import __GFP_COMP as _GFP_COMP
from aerosync.mm.pmm.gfp import __GFP_KSWAPD_RECLAIM as _GFP_KSWAPD_RECLAIM
from aerosync.mm.pmm.gfp import __GFP_NOWARN as _GFP_NOWARN
from aerosync.mm.pmm.gfp import __GFP_THISNODE as _GFP_THISNODE
from aerosync.mm.pmm.gfp import __GFP_ZERO as _GFP_ZERO
from aerosync.mm.pmm.gfp import (
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NOFRAGMENT,
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
    ZONE_NORMAL,
    format_gfp,
    gfp_migratetype,
    gfp_to_alloc_flags,
    gfp_zone,
)
from aerosync.mm.pmm.gfp import ALLOC_WMARK_LOW as _ALLOC_WMARK_LOW
from aerosync.mm.pmm.page import NIL, PG_buddy, PG_head, PG_lru, PG_pcp, PG_reserved, PG_tail, format_flags
from aerosync.mm.san import page_hooks
from aerosync.params import PAGE_SHIFT, PAGE_SIZE
from aerosync.sync.spinlock import SpinLock

__all__ = ["MM", "AllocFailureWarning", "BadPageWarning", "mm_ready"]

_PCPTYPES = MIGRATE_PCPTYPES
_NR_PCP = Z.NR_PCP_LISTS
_NR_LOWORDER = Z.NR_LOWORDER_PCP_LISTS
_COSTLY = Z.PAGE_ALLOC_COSTLY_ORDER
_FA32 = Z.FA_SIZE // 4                # free_area stride in u32 words
_FA64 = Z.FA_SIZE // 8
_BAD_FREE = PG_buddy | PG_pcp | PG_reserved | PG_tail
_BAD_FREE_OR_HEAD_ORDER = _BAD_FREE | PG_head | PG_lru | 0xFF << 32   # word0: slow-path frees (PG_lru: reclaim hook)
_PCP_WAIT_S = 5.0
_PCP_DRAINING = 3                     # a remote drainer is inside (see PCP protocol)
RMQUEUE_NORMAL, RMQUEUE_CLAIM, RMQUEUE_STEAL = 0, 2, 3   # enum rmqueue_mode (no CMA: 1 unused)
_DECAY_NS = 1_000_000_000             # decay_pcp_high: once a second (vmstat_update's interval)
_PREV_FREE_HIGH = Z.PCPF_PREV_FREE_HIGH_ORDER
_IRQ_LOCK_CPU = 0x8000                # mm/slab/slub.py IRQ_LOCK_CPU: the irq context's lock owner id
# intent log ops and fault points (mm/intent.py)
_OP_BUDDY_ALLOC, _OP_BUDDY_FREE, _OP_MOVE = I.OP["buddy_alloc"], I.OP["buddy_free"], I.OP["move_freepages"]
_OP_REFILL, _OP_DRAIN = I.OP["pcp_refill"], I.OP["pcp_drain"]
_P = I.POINT_IDS
P_UNLINKED, P_SPLIT, P_TAKEN = _P["buddy:alloc:unlinked"], _P["buddy:alloc:split"], _P["buddy:alloc:taken"]
P_MERGED, P_LINKED = _P["buddy:free:merged"], _P["buddy:free:linked"]
P_MOVED, P_RETAGGED, P_CLAIMED = _P["buddy:move:moved"], _P["buddy:move:retagged"], _P["buddy:claim:claimed"]
P_STEAL = _P["buddy:steal:split"]
P_REFILL_LINKED, P_REFILL_COUNTED = _P["pcp:refill:linked"], _P["pcp:refill:counted"]
P_DRAIN_POPPED, P_DRAIN_FREED = _P["pcp:drain:popped"], _P["pcp:drain:freed"]
P_BUDDY_TAKEN = _P["alloc:buddy:taken"]


class AllocFailureWarning(RuntimeWarning):
    """warn_alloc(): an allocation failed; the message carries the zones' state."""


# warn_alloc(): static DEFINE_RATELIMIT_STATE(nopage_rs, 10*HZ, 1) -- one per process
nopage_rs = RatelimitState(10.0, 1)


class BadPageWarning(RuntimeWarning):
    """bad_page(): a free of a page that is not allocated (double free, refcount underflow)."""


def mm_ready(arena: Any) -> bool:
    """True once mm_init has finished writing the arena."""
    return arena.atomic.load64(arena.off("mmzones") + Z.G_MAGIC) == Z.MM_MAGIC


class MM:
    """Simulated CPU `cpu`'s handle on the memory manager of `arena` (see module docstring)."""

    __slots__ = (
        "arena", "cpu", "nid", "nr_nodes", "nr_zones", "nr_cpus", "nr_pages", "max_order", "pb_order",
        "pcp_enabled", "thp", "pcp_autotune", "node_order", "zone_locks", "populated",
        "alloc_pages", "alloc_pages_node", "alloc_pages_nodemask", "folio_alloc", "free_pages",
        "free_pages_", "folio_get", "folio_put", "drain_local_pages", "drain_cpu_pages",
        "pcp_cpu_online", "count_numa_event", "zone_watermark_ok", "rmqueue_locked",
        "rmqueue_smallest_locked", "expand_locked", "free_one_page_locked",
        "warn_state", "decay_pcp_high", "reclaim", "reclaim_lru_del", "irq", "move_freepages_block_locked",
        "log", "free_pages_bulk", "reclaim_lru_del_many", "alloc_page_fn",
        "wakeup_kswapd", "free_frozen_pages", "give_back",
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
        self.irq = lock_cpu is not None and bool(lock_cpu & _IRQ_LOCK_CPU)
        self.nr_pages = q[(hdr + Z.G_NR_PAGES) >> 3]
        self.max_order = q[(hdr + Z.G_MAX_ORDER) >> 3]
        self.pb_order = q[(hdr + Z.G_PB_ORDER) >> 3]
        self.nr_nodes = q[(hdr + Z.G_NR_NODES) >> 3]
        self.nr_zones = q[(hdr + Z.G_NR_ZONES) >> 3]
        self.nr_cpus = q[(hdr + Z.G_NR_CPUS) >> 3]
        self.pcp_enabled = bool(q[(hdr + Z.G_PCP_ENABLED) >> 3])
        self.thp = bool(q[(hdr + Z.G_THP) >> 3])
        self.pcp_autotune = q[(hdr + Z.G_PCP_AUTOTUNE) >> 3]
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
        self.reclaim_lru_del_many: Any = None        # the same for a batch (free_pages_bulk)
        # wakeup_kswapd(zid) -> bool: rmqueue's wake of kswapd for a ZONE_BOOSTED_WATERMARK
        # zone (mm/reclaim sets it; False: no kswapd runs, boost_done's stand-in applies)
        self.wakeup_kswapd: Any = None
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
    fetch_add32, fetch_sub32, cas32 = at.fetch_add32, at.fetch_sub32, at.cas32
    fetch_add64, fetch_sub64 = at.fetch_add64, at.fetch_sub64
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
    zmanaged = [u64[(o + Z.Z_MANAGED) >> 3] for o in zoffs]
    zfa32 = [(o + Z.Z_FREE_AREA) >> 2 for o in zoffs]           # + order*_FA32: nr_free(2 words), lists
    fa_end = (max_order + 1) * _FA32                            # zfa32[z] + fa_end: past the last order
    zfa64 = [(o + Z.Z_FREE_AREA) >> 3 for o in zoffs]
    nfp = [(o + Z.Z_NR_FREE_PAGES) >> 3 for o in zoffs]
    wmarks = [tuple(u64[(o + Z.Z_WMARK + 8 * w) >> 3] for w in range(4)) for o in zoffs]
    lowres = [tuple(u64[(o + Z.Z_LOWMEM_RESERVE + 8 * j) >> 3] for j in range(MAX_NR_ZONES)) for o in zoffs]
    zn64 = [_internal.zn_word(z, z // MAX_NR_ZONES) for z in range(nr_zones)]
    znid = [z // MAX_NR_ZONES for z in range(nr_zones)]
    locks = mm.zone_locks
    lock_acq = [lk.acquire for lk in locks]
    lock_rel = [lk.release for lk in locks]
    lg = mm.log = I.IntentLog(arena, cpu, mm.irq)
    ho = lg.handoff                 # hand-off word: the block being handed out (mm/intent.py)
    pend = lg.pending               # its caller's window (closed around reclaim: alloc_pages_slow)
    lg_begin, lg_end, fp = lg.begin, lg.end, lg.fp

    thp_order = Z.HPAGE_PMD_ORDER if mm.thp else -1          # pcp_allowed_order(): <= 3 or this
    autotune = mm.pcp_autotune
    exact = autotune == Z.PCP_AUTOTUNE_EXACT
    batched = autotune == Z.PCP_AUTOTUNE_BATCHED
    zflag = [o + Z.Z_FLAGS for o in zoffs]                     # byte offsets (atomic fetch_or/and)
    zflag_i = [f >> 3 for f in zflag]                          # u64 indices: plain (test_bit) reads
    zboost = [(o + Z.Z_WMARK_BOOST) >> 3 for o in zoffs]
    BELOW_HIGH, BOOSTED = Z.ZONE_BELOW_HIGH, Z.ZONE_BOOSTED_WATERMARK
    fetch_or64, fetch_and64 = at.fetch_or64, at.fetch_and64
    monotonic_ns = time.monotonic_ns

    def pcp_offs(c: int) -> list[int]:
        return [Z.pcp_off(arena, c, z, nr_zones) for z in range(nr_zones)]

    my_pcp = pcp_offs(cpu)
    my_pcp_cnt = [(o + Z.PCP_COUNT) >> 3 for o in my_pcp]     # count; +1 high, +2 batch, +3 high_min,
    my_pcp_lists = [(o + Z.PCP_LISTS) >> 2 for o in my_pcp]   # +4 high_max, +5 free_count, +6 alloc_factor,
    pcp_fast = [(my_pcp[z], my_pcp_lists[z], my_pcp_cnt[z]) for z in range(nr_zones)]   # +7 flags, +8 free_thr
    all_thr = [[Z.pcp_off(arena, c, z, nr_zones) + Z.PCP_FREE_THR for c in range(mm.nr_cpus)]
               for z in range(nr_zones)]

    ST = Z.stat_off(arena, cpu, nr_nodes) >> 3
    ev_fail, ev_warn, ev_pgfree = ST + Z.EV_PGALLOC_FAIL, ST + Z.EV_ALLOC_WARN, ST + Z.EV_PGFREE
    ev_refill, ev_drain, ev_slow = ST + Z.EV_PCP_REFILL, ST + Z.EV_PCP_DRAIN, ST + Z.EV_SLOWPATH
    ev_claim, ev_steal, ev_pgalloc = ST + Z.EV_CLAIM, ST + Z.EV_STEAL, ST + Z.EV_PGALLOC
    ev_boost, ev_kswapd = ST + Z.EV_WMARK_BOOST, ST + Z.EV_KSWAPD_WAKE
    ev_warn_held = ST + Z.EV_ALLOC_WARN_SUPPRESSED
    numa0 = ST + Z.STAT_NUMA
    st_zone = [numa0 + nr_nodes * 8 + z * Z.ZS_WORDS for z in range(nr_zones)]   # + ZS_* category
    zs_extra, zs_foreign = Z.ZS_PAGES_EXTRA, Z.ZS_FOREIGN
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
            if fp:
                fp(P_UNLINKED)
            while cur > order:                       # expand(), inlined
                cur -= 1
                add_to_free_list(pfn + (1 << cur), cur, mt, zid, False)
                if fp:
                    fp(P_SPLIT)
            u64[nfp[zid]] -= 1 << order
            if fp:
                fp(P_TAKEN)
            return pfn
        return -1

    def move_freepages_block_locked(zid: int, pfn: int, new_mt: int) -> int:
        """__move_freepages_block() + set_pageblock_migratetype(); returns pages moved."""
        start = pfn >> pb_order << pb_order
        end = start + (1 << pb_order)
        p, moved = start, 0
        r = lg_begin(_OP_MOVE, zid, start, new_mt)      # recovery redoes it (idempotent)
        while p < end:
            w = u64[pm64 + (p << 3)]
            if w & PG_buddy:
                o = (w >> 32) & 0xFF
                del_from_free_list(p, o, (w >> 40) & 0xFF, zid)
                add_to_free_list(p, o, new_mt, zid, True)
                moved += 1 << o
                p += 1 << o
                if fp:
                    fp(P_MOVED)
            else:
                p += 1
        set_pageblocks(start, pb_order, new_mt)
        if fp:
            fp(P_RETAGGED)
        lg_end(r)
        return moved

    def try_to_claim_block_locked(zid: int, pfn: int, cur: int, order: int, mt: int, fb: int, af: int) -> int:
        """Models try_to_claim_block(): take a whole block, or the pageblock if half is alike.
        A claim below pageblock order first boosts the zone's watermarks
        (boost_watermark) and, for a kswapd-waking allocation, flags the zone
        ZONE_BOOSTED_WATERMARK (rmqueue then "wakes kswapd", see boost_done)."""
        if cur >= pb_order:
            del_from_free_list(pfn, cur, fb, zid)
            set_pageblocks(pfn, cur, mt)
            if fp:
                fp(P_CLAIMED)
            while cur > order:
                cur -= 1
                add_to_free_list(pfn + (1 << cur), cur, mt, zid, False)
            u64[nfp[zid]] -= 1 << order
            return pfn
        bi = zboost[zid]
        nb = Z.boost_watermark(u64[bi], wmarks[zid][2], zmanaged[zid], pb_order)
        if nb != u64[bi]:
            u64[bi] = nb
            u64[ev_boost] += 1
            if af & ALLOC_KSWAPD:
                fetch_or64(zflag[zid], BOOSTED)
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
        """Models __rmqueue() from RMQUEUE_NORMAL: its own lists, then CLAIM (largest
        fallback block first), then STEAL (not under ALLOC_NOFRAGMENT)."""
        pfn = rmqueue_smallest_locked(zid, order, mt)       # RMQUEUE_NORMAL, without the tuple
        if pfn >= 0 or mt >= _PCPTYPES:
            return pfn
        return rmqueue_mode_locked(zid, order, mt, alloc_flags, RMQUEUE_CLAIM)[0]

    def rmqueue_mode_locked(zid: int, order: int, mt: int, af: int, mode: int) -> tuple[int, int]:
        """Models __rmqueue() with its enum rmqueue_mode: (pfn, the mode to start from next
        time).  rmqueue_bulk passes the mode back in, so a batch that had to claim or
        steal does not search the empty lists again (the zone lock is held throughout).
        ALLOC_NOFRAGMENT (alloc_flags_nofragment): claim only whole pageblocks or larger,
        never steal; the zonelist walk retries without it."""
        if debug:
            locks[zid].assert_held()
        if mode == RMQUEUE_NORMAL:
            pfn = rmqueue_smallest_locked(zid, order, mt)
            if pfn >= 0 or mt >= _PCPTYPES:
                return pfn, mode
        fa = zfa32[zid] + 2
        fbs = FALLBACKS[mt]
        if mode <= RMQUEUE_CLAIM:
            # CLAIM (__rmqueue_claim): orders from max down to min_order; should_try_claim_block()
            min_order = pb_order if af & ALLOC_NOFRAGMENT and order < pb_order else order
            for cur in range(max_order, min_order - 1, -1):
                hi = fa + cur * _FA32
                for fb in fbs:
                    if u32[hi + fb * 2] != NIL:
                        break
                else:
                    continue
                if cur < pb_half and mt == MIGRATE_MOVABLE:
                    break
                got = try_to_claim_block_locked(zid, u32[hi + fb * 2], cur, order, mt, fb, af)
                if got >= 0:
                    u64[ev_claim] += 1
                    return got, RMQUEUE_NORMAL        # replenished its own lists
        if af & ALLOC_NOFRAGMENT:
            return -1, RMQUEUE_CLAIM
        # STEAL (__rmqueue_steal): smallest fallback block, its pageblock keeps its type.
        for cur in range(order, max_order + 1):
            hi = fa + cur * _FA32
            for fb in fbs:
                pfn = u32[hi + fb * 2]
                if pfn != NIL:
                    del_from_free_list(pfn, cur, fb, zid)
                    while cur > order:
                        cur -= 1
                        add_to_free_list(pfn + (1 << cur), cur, fb, zid, False)
                        if fp:
                            fp(P_STEAL)
                    u64[nfp[zid]] -= 1 << order
                    u64[ev_steal] += 1
                    return pfn, RMQUEUE_STEAL
        return -1, RMQUEUE_STEAL

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
            if fp:
                fp(P_MERGED)
        if not to_tail and order < max_order - 1:
            # buddy_merge_likely(): the order+1 buddy is free -> keep this one cold.
            hb = (pfn & ~(1 << order)) ^ (2 << order)
            if zs <= hb < ze:
                w = u64[pm64 + (hb << 3)]
                to_tail = bool(w & PG_buddy) and (w >> 32) & 0xFF == order + 1
        add_to_free_list(pfn, order, mt, zid, to_tail)
        if fp:
            fp(P_LINKED)

    def free_one_page(zid: int, pfn: int, order: int, cold: bool) -> None:
        """Models free_one_page()/split_large_buddy(): lock, free per pageblock piece."""
        acq, rel = lock_acq[zid], lock_rel[zid]
        acq()
        r = lg_begin(_OP_BUDDY_FREE, zid, pfn, order)
        try:
            if order > pb_order:
                step = 1 << pb_order
                for p in range(pfn, pfn + (1 << order), step):
                    free_one_page_locked(zid, p, pb_order, u8[PB + (p >> pb_order)], cold)
            else:
                free_one_page_locked(zid, pfn, order, u8[PB + (pfn >> pb_order)], cold)
        finally:
            lg_end(r)
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
        r = lg_begin(_OP_DRAIN, zid, po, count)
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
                order = pindex // _PCPTYPES if pindex < _NR_LOWORDER else Z.HPAGE_PMD_ORDER
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
                    if fp:
                        fp(P_DRAIN_POPPED)
                    free_one_page_locked(zid, pfn, order, u8[PB + (pfn >> pb_order)], False)
                    freed += nr
                    u64[r + 7] = freed
                    if fp:
                        fp(P_DRAIN_FREED)
                    if freed >= count or pv == NIL:
                        break
        finally:
            lg_end(r)
            rel()
        u64[ev_drain] += 1
        return freed

    def free_pcppages_chunked(zid: int, po: int, to_free: int, pindex: int, batch: int) -> int:
        """free_frozen_page_commit()'s loop (6.19): to_free pages in chunks of batch, one
        zone.lock hold per chunk."""
        cidx = (po + Z.PCP_COUNT) >> 3
        freed = 0
        step = max(1, batch)
        while to_free > 0 and u64[cidx]:
            n = free_pcppages_bulk(zid, po, min(to_free, step), pindex)
            if not n:
                break
            freed += n
            to_free -= n
        return freed

    def rmqueue_bulk(zid: int, order: int, count: int, li: int, mt: int, alloc_flags: int) -> int:
        """Models rmqueue_bulk(): `count` blocks under one zone.lock hold, appended at the
        tail; the rmqueue mode reached is carried from one block to the next."""
        got = 0
        mode = RMQUEUE_NORMAL
        pcp_word = PG_pcp | order << 32 | mt << 40
        acq, rel = lock_acq[zid], lock_rel[zid]
        acq()
        r = lg_begin(_OP_REFILL, zid, order, li)
        try:
            for _ in range(count):
                pfn, mode = rmqueue_mode_locked(zid, order, mt, alloc_flags, mode)
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
                u64[r + 7] = got
                if fp:
                    fp(P_REFILL_LINKED)
        finally:
            lg_end(r)
            rel()
        u64[ev_refill] += 1
        return got

    # -------------------------------------------------------- PCP high autotune (6.7+)
    # pcp->high moves between high_min and high_max (mmzone.nr_pcp_alloc / nr_pcp_high /
    # nr_pcp_free / decay_pcp_high are the formulas).  The inlined order-0 fast paths
    # compare count with free_thr, which is high -- or 0 while the zone is below its
    # HIGH mark, so that every free then runs nr_pcp_high as Linux's does.  The tuning
    # state free_count / alloc_factor is kept per operation ("exact": Linux's) or, with
    # pcp_autotune "batched", caught up at each refill and drain from the CPU's counters
    # (catch_up): the fast paths then cost what they cost before autotune existed.
    def zone_below_high(zid: int) -> int:
        return u64[zflag_i[zid]] & BELOW_HIGH

    def mark_below_high(zid: int) -> None:
        """set_bit(ZONE_BELOW_HIGH): on the transition, every CPU's free_thr of the zone
        goes to 0 (their next free runs nr_pcp_high).  Flag first, thresholds after; an
        owner stores its threshold, then re-reads the flag (set_thr): one of the two
        ends with 0."""
        if u64[zflag_i[zid]] & BELOW_HIGH:
            return
        if not fetch_or64(zflag[zid], BELOW_HIGH) & BELOW_HIGH:
            for o in all_thr[zid]:
                store64(o, 0)

    def set_thr(cidx: int, zid: int, high: int) -> None:
        o = (cidx + 8) << 3
        store64(o, high)
        if load64(zflag[zid]) & BELOW_HIGH:          # atomic load: ordered after the store
            store64(o, 0)

    def catch_up(zid: int, cidx: int) -> None:
        """pcp_autotune "batched": bring free_count and alloc_factor up to date from the
        pages this CPU freed (pgfree, every zone) and the allocations it made from the
        zone since the last catch-up.  Exact while only frees happened (a free burst:
        free_count += pages; alloc_factor >>= frees); with allocations in between,
        free_count is the net number of pages freed (the interleaving is not known)."""
        pgf = u64[ev_pgfree]
        i = st_zone[zid]
        al = u64[i] + u64[i + 1] + u64[i + 2] + u64[i + 3]
        df, da = pgf - u64[cidx + 9], al - u64[cidx + 10]
        if not df and not da:
            return
        u64[cidx + 9] = pgf
        u64[cidx + 10] = al
        if df:
            u64[cidx + 6] >>= min(df, 8)
        cap = u64[cidx + 2] << Z.PCP_BATCH_SCALE_MAX
        fc = u64[cidx + 5]
        if not da:
            if fc < cap:
                u64[cidx + 5] = min(fc + df, cap)
        else:
            u64[cidx + 5] = min(max(df - da, 0), cap)

    def decay_locked(zid: int, po: int, cidx: int, now: int) -> None:
        """decay_pcp_high() (vmstat_update, once a second), run by the owner on a refill or
        drain when a second has passed; pcp owned by the caller."""
        u64[cidx + 11] = now
        high = u64[cidx + 1]
        high_min = u64[cidx + 3]
        batch = u64[cidx + 2]
        new, to_drain = Z.decay_pcp_high(u64[cidx], max(high, high_min), high_min, batch)
        if new != high:
            u64[cidx + 1] = new
            set_thr(cidx, zid, new)
        while to_drain > 0:
            n = free_pcppages_bulk(zid, po, min(to_drain, max(1, batch)), 0)
            if not n:
                break
            to_drain -= n

    def decay_pcp_high() -> int:
        """Run decay_pcp_high on every zone's pcp of this CPU now (tests, a CPU's periodic
        work); returns the pages drained."""
        total = 0
        for zid in range(nr_zones):
            po = my_pcp[zid]
            if cas64(po, 0, 1) != 0:
                continue
            try:
                cidx = my_pcp_cnt[zid]
                before = u64[cidx]
                decay_locked(zid, po, cidx, monotonic_ns())
                total += before - u64[cidx]
            finally:
                store64(po, 0)
        return total

    def rmqueue_pcplist(zid: int, order: int, mt: int, alloc_flags: int) -> int:
        """Models rmqueue_pcplist() + __rmqueue_pcplist(): pop the head; refill
        nr_pcp_alloc() blocks when the list is empty (not for ALLOC_HIGHATOMIC: those go to
        the reserves in rmqueue_buddy).

        Returns pfn, -1 if the zone had nothing, -2 if the pcp is offline (trylock failed).
        """
        po = my_pcp[zid]
        if cas64(po, 0, 1) != 0:
            return -2
        cidx = my_pcp_cnt[zid]
        if exact:
            fc = u64[cidx + 5]
            if fc:
                u64[cidx + 5] = fc >> 1
        li = my_pcp_lists[zid] + (order * _PCPTYPES + mt if order <= _COSTLY
                                  else _NR_LOWORDER + (mt == MIGRATE_MOVABLE)) * 2
        pfn = u32[li]
        if pfn == NIL:
            if alloc_flags & ALLOC_HIGHATOMIC and order:
                store64(po, 0)
                return -1
            if batched:
                catch_up(zid, cidx)
            now = monotonic_ns()
            if now - u64[cidx + 11] >= _DECAY_NS and u64[cidx + 1] > u64[cidx + 3]:
                decay_locked(zid, po, cidx, now)
            count = u64[cidx]
            b, high, af = Z.nr_pcp_alloc(u64[cidx + 1], u64[cidx + 3], u64[cidx + 4], u64[cidx + 2], count,
                                         u64[cidx + 6], order, bool(zone_below_high(zid)))
            if autotune:                                  # "off": refills stay batch-sized
                u64[cidx + 6] = af
            if high != u64[cidx + 1]:
                u64[cidx + 1] = high
                set_thr(cidx, zid, high)
            got = rmqueue_bulk(zid, order, b, li, mt, alloc_flags)
            u64[cidx] = u64[cidx] + (got << order)
            if fp:
                fp(P_REFILL_COUNTED)
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
        u64[cidx] -= 1 << order
        store64(po, 0)
        return pfn

    def rmqueue(zid: int, order: int, mt: int, alloc_flags: int) -> int:
        """Models rmqueue(): PCP for pcp_allowed_order(), else (or pcp offline, or
        nothing there) rmqueue_buddy; then a boosted zone wakes "kswapd" (boost_done)."""
        pfn = -1
        if pcp_on and (order <= _COSTLY or order == thp_order):
            pfn = rmqueue_pcplist(zid, order, mt, alloc_flags)
        if pfn < 0:
            acq, rel = lock_acq[zid], lock_rel[zid]
            acq()
            r = lg_begin(_OP_BUDDY_ALLOC, zid, order, mt)
            try:
                pfn = -1
                if order > 0 and alloc_flags & ALLOC_HIGHATOMIC:
                    pfn = rmqueue_smallest_locked(zid, order, MIGRATE_HIGHATOMIC)
                if pfn < 0:
                    pfn = rmqueue_locked(zid, order, mt, alloc_flags)
                if pfn < 0 and alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
                    pfn = rmqueue_smallest_locked(zid, order, MIGRATE_HIGHATOMIC)
            finally:
                lg_end(r)
                rel()
            if fp and pfn >= 0:
                fp(P_BUDDY_TAKEN)
        if alloc_flags & ALLOC_KSWAPD and u64[zflag_i[zid]] & BOOSTED:
            boost_done(zid)
        return pfn

    def boost_done(zid: int) -> None:
        """rmqueue()'s clear_bit(ZONE_BOOSTED_WATERMARK) + wakeup_kswapd() for a boosted
        zone.  With a kswapd (mm.wakeup_kswapd answers True) the boost stays until its
        balance_pgdat() ends; without one this stands in for that balance_pgdat() (no
        reclaim to do): the boost lasts from the fallback that raised it to the end of
        that rmqueue (zoneinfo "boost" shows it only there)."""
        fetch_and64(zflag[zid], ~BOOSTED & 0xFFFF_FFFF_FFFF_FFFF)
        u64[ev_kswapd] += 1
        wk = mm.wakeup_kswapd
        if wk is not None and wk(zid):
            return
        lock_acq[zid]()
        try:
            u64[zboost[zid]] = 0
        finally:
            lock_rel[zid]()

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
        # One suitable free block of order >= `order`: a MIGRATE_PCPTYPES list (or, for
        # HIGHATOMIC/OOM requests, the HIGHATOMIC one) non-empty.  No pageblock is ever
        # MIGRATE_HIGHATOMIC here (reserve_highatomic_pageblock is not modelled), so an
        # order's nr_free > 0 means one of the PCPTYPES lists holds a block: the test is
        # any(nr_free[order:]), one C-level pass over the low words (~0.6 us less than
        # walking the lists for the 8 orders of a steady-state order-3 request).
        fa = zfa32[zid]
        return any(u32[fa + order * _FA32 : fa + fa_end : _FA32])

    # ------------------------------------------------------------ allocation
    # Allocation plans, keyed (gfp, preferred_nid, nodemask): the zonelist filtered by the
    # nodemask, each zone's order-0 LOW and HIGH thresholds (mark + lowmem_reserve[hz]),
    # mt, hz, `fast`: the order-0 PCP fast path's facts for the first zone, or (), and
    # the fast-path alloc_flags (ALLOC_WMARK_LOW | alloc_flags_nofragment()).  Every
    # figure in a plan is fixed at init (zone ids, populated zones, node order, watermarks
    # and lowmem_reserve, which only mm_init writes, pcp/stat offsets); free counts, the
    # zone flags and watermark_boost are read on every call.  So a per-handle cache never
    # goes stale -- unless watermarks become tunable at run time (min_free_kbytes,
    # watermark_scale_factor), which would have to clear `plans` and `local_plans` (and
    # rebuild the closures alloc_page_fn handed out).
    # Bounded (FIFO) against callers cycling through many nodemasks.
    Plan = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int, int, tuple[int, ...], int]
    plans: dict[tuple[int, int, int | None], Plan] = {}
    PLANS_MAX = 1024

    def alloc_flags_nofragment(zid: int, gfp: int) -> int:
        """Models alloc_flags_nofragment(): ALLOC_KSWAPD for a kswapd-waking gfp, and
        ALLOC_NOFRAGMENT when the preferred zone is ZONE_NORMAL and a DMA32 zone exists
        (on a NUMA machine: the preferred node's own DMA32)."""
        af = ALLOC_KSWAPD if gfp & _GFP_KSWAPD_RECLAIM else 0
        if zid % MAX_NR_ZONES != ZONE_NORMAL:
            return af
        if nr_nodes > 1 and not mm.populated[zid - 1]:
            return af
        return af | ALLOC_NOFRAGMENT

    def make_plan(gfp: int, nid: int, nodemask: int | None) -> Plan:
        hz = gfp_zone(gfp)
        mt = gfp_migratetype(gfp)
        zids = tuple(z for z in mm.zonelist(nid, gfp) if nodemask is None or nodemask >> znid[z] & 1)
        thr = tuple(wmarks[z][1] + lowres[z][hz] for z in zids)
        thr_hi = tuple(wmarks[z][2] + lowres[z][hz] for z in zids)
        af = _ALLOC_WMARK_LOW | (alloc_flags_nofragment(zids[0], gfp) if zids else 0)
        fast: tuple[int, ...] = ()
        # The inlined order-0 PCP pop in alloc_pages_nodemask, for every plan but the
        # plain local one (alloc_pages has its own fast path for it; its fallbacks come
        # here, where a second try of the same pop would be wasted).  The first zone is
        # the preferred zone, so the allocation is a numa_hit: its category is fixed.
        if zids and pcp_on and not gfp & (_GFP_ZERO | _GFP_COMP) and (nid != mynid or nodemask is not None):
            z = zids[0]
            fast = (nfp[z], thr_hi[0], my_pcp[z], my_pcp_lists[z] + mt * 2, my_pcp_cnt[z],
                    st_zone[z] + (Z.ZS_HIT_LOCAL if znid[z] == mynid else Z.ZS_HIT_OTHER))
        plan = (zids, thr, thr_hi, mt, hz, fast, af)
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

    def get_page_from_freelist(zids: tuple[int, ...], thr: tuple[int, ...], thr_hi: tuple[int, ...], order: int,
                               mt: int, hz: int, af: int, start: int = 0) -> tuple[int, int]:
        """Models get_page_from_freelist() at the LOW mark: a zone not flagged
        ZONE_BELOW_HIGH that passes its HIGH mark is taken at once, else it is flagged and
        checked against LOW.  With ALLOC_NOFRAGMENT the walk restarts without it when it
        reaches another node's zone, and once more at the end (a fragmenting fallback
        beats failing).  Marks include watermark_boost.  `start`: zones before it were
        tried already (alloc_pages_nodemask's inline first step), in the first pass only.
        (pfn, zid) or (-1, -1)."""
        while True:
            no_fallback = af & ALLOC_NOFRAGMENT
            restart = False
            for i, zid in enumerate(zids):
                if i < start:
                    continue
                if no_fallback and nr_nodes > 1 and znid[zid] != znid[zids[0]]:
                    af &= ~ALLOC_NOFRAGMENT                # locality beats fragmentation
                    restart = True
                    break
                free = u64[nfp[zid]]
                boost = u64[zboost[zid]]
                if order == 0:
                    if not u64[zflag_i[zid]] & BELOW_HIGH and free > thr_hi[i] + boost:
                        ok = True
                    else:
                        mark_below_high(zid)
                        ok = free > thr[i] + boost
                else:
                    if not u64[zflag_i[zid]] & BELOW_HIGH and zone_watermark_ok(
                            zid, order, wmarks[zid][2] + boost, hz, af, free):
                        ok = True
                    else:
                        mark_below_high(zid)
                        ok = zone_watermark_ok(zid, order, wmarks[zid][1] + boost, hz, af, free)
                if ok:
                    pfn = rmqueue(zid, order, mt, af)
                    if pfn >= 0:
                        return pfn, zid
            start = 0
            if restart:
                continue
            if no_fallback:
                af &= ~ALLOC_NOFRAGMENT
                continue
            return -1, -1

    def alloc_pages_nodemask(gfp: int, order: int, preferred_nid: int, nodemask: int | None) -> int:
        """Models __alloc_pages(): fast path at the LOW mark (get_page_from_freelist),
        then the slow path at MIN with the caller's reserves; returns pfn or -1 (never
        raises on failure).

        The plan (filtered zonelist, thresholds) is cached per (gfp, preferred_nid,
        nodemask); an order-0 request whose first zone is above its HIGH mark and whose
        PCP list is non-empty is served inline, as alloc_pages' local fast path.
        """
        plan = plans.get((gfp, preferred_nid, nodemask))
        if plan is None:
            if order > max_order or order < 0:
                return alloc_failed(gfp, order, preferred_nid, nodemask, ())
            plan = make_plan(gfp, preferred_nid, nodemask)
        elif order > max_order:
            return alloc_failed(gfp, order, preferred_nid, nodemask, ())
        zids, thr, thr_hi, mt, hz, fast, af = plan
        if fast and not order:
            i_nfp, th, po, li, cidx, i_stat = fast
            if u64[i_nfp] > th and cas64(po, 0, 1) == 0:
                pfn = u32[li]
                if pfn != NIL:
                    if exact:
                        u64[cidx + 5] >>= 1
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
                    u64[ho] = b             # hand-off (mm/intent.py): its struct page
                    u32[b + 2] = 1          # refcount
                    u64[i_stat] += 1
                    return pfn
                store64(po, 0)
        if not zids:
            return alloc_failed(gfp, order, preferred_nid, nodemask, zids)
        # get_page_from_freelist()'s first step inline: the preferred zone, not below its
        # HIGH mark, passing it (the common case pays no walk, no call)
        zid = zids[0]
        pfn = tried = -1
        if not u64[zflag_i[zid]] & BELOW_HIGH:
            mark = thr_hi[0] + u64[zboost[zid]]
            if not order:
                ok = u64[nfp[zid]] > mark
            else:
                # zone_watermark_ok() inline for the plan's flags (never ALLOC_RESERVES): the
                # free pages net of the request above mark (lowmem_reserve[hz] is in it) and
                # a free block of order >= `order` -- one call less per order 1..3 PCP pair
                fa = zfa32[zid]
                ok = (u64[nfp[zid]] - (1 << order) + 1 > mark
                      and any(u32[fa + order * _FA32 : fa + fa_end : _FA32]))
            if ok:
                pfn = rmqueue(zid, order, mt, af)
                tried = 0
        if pfn < 0:
            pfn, zid = get_page_from_freelist(zids, thr, thr_hi, order, mt, hz, af, tried + 1)
        if pfn < 0:
            pfn, zid = alloc_pages_slow(gfp, order, zids, mt, hz)
            if pfn < 0:
                return alloc_failed(gfp, order, preferred_nid, nodemask, zids)
        # prep_new_page(): refcount 1, flags clear, order kept for the checker
        u64[pm64 + (pfn << 3)] = order << 32 | zn64[zid]
        u64[ho] = pm32 + (pfn << 4)               # hand-off (mm/intent.py): its struct page
        u32[pm32 + (pfn << 4) + 2] = 1
        if gfp & (_GFP_ZERO | _GFP_COMP):
            prep_slow(pfn, order, gfp)
        # zone_statistics(preferred_zone, zone, 1): one per allocation, whatever the order
        # (preferred zone = first zone of the filtered zonelist); pgalloc counts the pages,
        # sum of the categories + ZS_PAGES_EXTRA (mmzone.py).
        zn, pz = znid[zid], zids[0]
        pn = znid[pz]
        i = st_zone[zid]
        if zn == pn:
            u64[i + (0 if zn == mynid else 1)] += 1          # ZS_HIT_LOCAL / _OTHER
        else:
            u64[i + (2 if zn == mynid else 3)] += 1          # ZS_MISS_LOCAL / _OTHER
            u64[st_zone[pz] + zs_foreign] += 1               # numa_foreign on the preferred zone
        if order:
            u64[i + zs_extra] += (1 << order) - 1
        return pfn

    def alloc_pages_slow(gfp: int, order: int, zids: tuple[int, ...], mt: int, hz: int) -> tuple[int, int]:
        """Models __alloc_pages_slowpath() without compaction: a retry at the MIN mark
        (+ boost) with gfp_to_alloc_flags() reserves (ALLOC_MIN_RESERVE,
        ALLOC_NON_BLOCK...); no ALLOC_NOFRAGMENT (as the kernel's slow path).  With
        reclaim booted (mm/reclaim), its hook wakes kswapd and runs direct reclaim / the
        OOM killer around `attempt`."""
        u64[ev_slow] += 1
        af = gfp_to_alloc_flags(gfp, order)

        def attempt() -> tuple[int, int]:
            for zid in zids:
                if zone_watermark_ok(zid, order, wmarks[zid][0] + u64[zboost[zid]], hz, af, u64[nfp[zid]]):
                    pfn = rmqueue(zid, order, mt, af)
                    if pfn >= 0:
                        return pfn, zid
            return -1, -1

        if mm.reclaim is not None:                  # reclaim hook: kswapd, direct reclaim, OOM
            # A caller's hand-off window (mm/intent.py) is closed while reclaim runs: its
            # own allocations (compressed-pool pages...) store the hand-off word too, and
            # a recovery must not take one of them for the caller's page.  Reopened empty:
            # this allocation's hand-off is stored after the slow path returns.
            saved = u64[pend]
            u64[pend] = 0
            try:
                return mm.reclaim(gfp, order, zids, attempt)
            finally:
                u64[ho] = 0
                u64[pend] = saved
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
        if gfp & _GFP_NOWARN:
            return -1
        rs = nopage_rs                              # the module's, looked up now (tests swap it)
        if not rs():
            u64[ev_warn_held] += 1
        else:
            u64[ev_warn] += 1
            missed = rs.reset_miss()
            held = f"warn_alloc: {missed} callbacks suppressed\n" if missed else ""
            mask = "(null)" if nodemask is None else f"{nodemask:#x}"
            tried = zids or tuple(z for z in range(nr_zones) if mm.populated[z])
            warnings.warn(
                f"{held}cpu{cpu}: page allocation failure: order:{order}, mode:{format_gfp(gfp)}, "
                f"preferred_nid={nid}, nodemask={mask}\n{warn_state(tried)}",
                AllocFailureWarning, stacklevel=3)
        return -1

    local_plans: dict[int, tuple[Any, ...]] = {}

    def local_plan(gfp: int) -> tuple[Any, ...]:
        """The fast-path facts for an order-0 `gfp` allocation on the local node, or ()
        when this gfp always takes the general path (__GFP_ZERO/__GFP_COMP, no zone).
        The threshold is the first zone's HIGH mark (+ lowmem_reserve): at or below it
        the general path runs, which marks the zone ZONE_BELOW_HIGH and checks LOW, as
        get_page_from_freelist() does -- above it that check cannot fail."""
        zids, _thr, thr_hi, mt, _hz, _fast, af = plans.get((gfp, mynid, None)) or make_plan(gfp, mynid, None)
        fast: tuple[Any, ...] = ()
        if zids and not gfp & (_GFP_ZERO | _GFP_COMP):
            z = zids[0]
            i_stat = st_zone[z] + (Z.ZS_HIT_LOCAL if znid[z] == mynid else Z.ZS_HIT_OTHER)
            if pcp_on:
                fast = (nfp[z], thr_hi[0], my_pcp[z], my_pcp_lists[z] + mt * 2, my_pcp_cnt[z], i_stat)
            else:
                fast = (nfp[z], thr_hi[0], z, zfa32[z] + 2 + mt * 2, zfa64[z], i_stat, lock_acq[z], lock_rel[z],
                        mt, zn64[z], af)
        local_plans[gfp] = fast
        return fast

    def alloc_pages_pcp(gfp: int, order: int) -> int:
        """alloc_pages(): on the local node, no nodemask (PCP enabled).

        Fast path (order 0, first zone of the local zonelist above its HIGH mark, its PCP
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
        u64[ho] = b                     # hand-off (mm/intent.py): its struct page
        u32[b + 2] = 1                  # refcount
        u64[i_stat] += 1
        return pfn

    def alloc_pages_pcp_exact(gfp: int, order: int) -> int:
        """alloc_pages_pcp with pcp_autotune "exact": the inlined pop also halves
        free_count, as rmqueue_pcplist() does on every allocation."""
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
        fc = u64[cidx + 5]
        if fc:
            u64[cidx + 5] = fc >> 1
        b = pm32 + (pfn << 4)
        nx = u32[b + 4]
        u32[li] = nx
        if nx == NIL:
            u32[li + 1] = NIL
        else:
            u32[pm32 + (nx << 4) + 5] = NIL
        u64[cidx] -= 1
        store64(po, 0)
        u32[b] = 0
        u64[ho] = b
        u32[b + 2] = 1
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
        i_nfp, thr, zid, hi, i_nr0, i_stat, acq, rel, mt, zn, af = fast
        if u64[i_nfp] <= thr:
            return alloc_pages_nodemask(gfp, order, mynid, None)
        acq()
        try:
            pfn = u32[hi]
            if pfn == NIL:
                pfn = rmqueue_locked(zid, 0, mt, af)      # word0 cleared inside
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
        if af & ALLOC_KSWAPD and u64[zflag_i[zid]] & BOOSTED:
            boost_done(zid)
        u64[ho] = pm32 + (pfn << 4)               # hand-off (mm/intent.py): its struct page
        u32[pm32 + (pfn << 4) + 2] = 1            # refcount
        u64[i_stat] += 1
        return pfn

    alloc_pages = (alloc_pages_pcp_exact if exact else alloc_pages_pcp) if pcp_on else alloc_pages_buddy

    def alloc_page_fn(gfp: int) -> Any:
        """An order-0 allocator for `gfp` on this CPU's node, as a zero-argument closure
        with its local plan bound (a caller allocating one page at a time, the page
        fault).  The same PCP pop as alloc_pages' fast path, minus the per-call plan
        lookup, with the count and numastat bumps as fetch_add calls (one C call each
        instead of a memoryview read-modify-write: ~40 ns each, measured); anything else
        is alloc_pages(gfp, 0).  When mm.alloc_pages has been wrapped (mm/san's page
        hooks install wrappers after the build), every allocation goes through the
        wrapper instead: the check is made here, once, not per page."""
        ap = mm.alloc_pages
        if ap is not alloc_pages:
            return lambda: ap(gfp, 0)
        fast = local_plans.get(gfp)
        if fast is None:
            fast = local_plan(gfp)
        if not fast or not pcp_on:
            return lambda: alloc_pages(gfp, 0)
        i_nfp, thr, po, li, cidx, i_stat = fast
        count_b, stat_b = cidx << 3, i_stat << 3

        def alloc_page() -> int:
            if u64[i_nfp] <= thr or cas64(po, 0, 1) != 0:
                return alloc_pages(gfp, 0)
            pfn = u32[li]
            if pfn == NIL:
                store64(po, 0)
                return alloc_pages(gfp, 0)
            if exact:                               # rmqueue_pcplist's free_count >>= 1
                fc = u64[cidx + 5]
                if fc:
                    u64[cidx + 5] = fc >> 1
            b = pm32 + (pfn << 4)
            nx = u32[b + 4]
            u32[li] = nx
            if nx == NIL:
                u32[li + 1] = NIL
            else:
                u32[pm32 + (nx << 4) + 5] = NIL
            fetch_sub64(count_b, 1)                 # pcp->count (the pcp lock is held)
            store64(po, 0)
            u32[b] = 0                              # flags: PG_pcp off (order byte is already 0)
            u64[ho] = b                             # hand-off (mm/intent.py): its struct page
            u32[b + 2] = 1                          # refcount
            fetch_add64(stat_b, 1)
            return pfn

        return alloc_page

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

    def pcp_free_commit(zid: int, po: int, cidx: int, order: int, pindex: int) -> None:
        """The tuning half of free_frozen_page_commit(), after the page is on its list and
        counted (pcp owned by the caller): free_high detection for orders 1..3,
        nr_pcp_high, and nr_pcp_free pages back to the buddy in batch chunks; a zone
        back above its HIGH mark after that loses ZONE_BELOW_HIGH."""
        batch = u64[cidx + 2]
        if batched:
            catch_up(zid, cidx)
        free_high = False
        if order and order <= _COSTLY:
            fl = u64[cidx + 7]
            free_high = bool(u64[cidx + 5] >= batch + (u64[cidx + 3] >> 1) and fl & Z.PCPF_PREV_FREE_HIGH_ORDER
                             and (not fl & Z.PCPF_FREE_HIGH_BATCH or u64[cidx] >= batch))
            u64[cidx + 7] = fl | Z.PCPF_PREV_FREE_HIGH_ORDER
        elif exact and u64[cidx + 7] & Z.PCPF_PREV_FREE_HIGH_ORDER:
            u64[cidx + 7] &= ~Z.PCPF_PREV_FREE_HIGH_ORDER
        if exact:
            u64[cidx + 6] >>= 1
            if u64[cidx + 5] < batch << Z.PCP_BATCH_SCALE_MAX:
                u64[cidx + 5] += 1 << order
        now = monotonic_ns()
        if now - u64[cidx + 11] >= _DECAY_NS and u64[cidx + 1] > u64[cidx + 3]:
            decay_locked(zid, po, cidx, now)
        count = u64[cidx]
        below = zone_below_high(zid)
        high, new = Z.nr_pcp_high(u64[cidx + 1], u64[cidx + 3], u64[cidx + 4], batch, count, u64[cidx + 5],
                                  free_high, bool(below))
        if new != u64[cidx + 1]:
            u64[cidx + 1] = new
        set_thr(cidx, zid, new)
        if count < high:
            return
        free_pcppages_chunked(zid, po, Z.nr_pcp_free(count, batch, high, u64[cidx + 5], free_high), pindex, batch)
        if below and u64[nfp[zid]] > wmarks[zid][2] + u64[zboost[zid]] + lowres[zid][MAX_NR_ZONES - 1]:
            fetch_and64(zflag[zid], ~BELOW_HIGH & 0xFFFF_FFFF_FFFF_FFFF)
            set_thr(cidx, zid, u64[cidx + 1])

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
        if pcp_on and (order <= _COSTLY or order == thp_order):
            mt = u8[PB + (pfn >> pb_order)]
            po = my_pcp[zid]
            if mt < _PCPTYPES and cas64(po, 0, 1) == 0:
                # free_frozen_page_commit()
                u64[pm64 + (pfn << 3)] = PG_pcp | order << 32 | mt << 40 | (w & ZN_MASK)
                pindex = order * _PCPTYPES + mt if order <= _COSTLY else _NR_LOWORDER + (mt == MIGRATE_MOVABLE)
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
                if batched and count < u64[cidx + 8]:
                    # "batched": below the threshold the tuning waits for the next commit,
                    # as on the order-0 fast path (a high-order burst is judged there)
                    if order <= _COSTLY:
                        u64[cidx + 7] |= _PREV_FREE_HIGH
                    store64(po, 0)
                    return
                try:
                    pcp_free_commit(zid, po, cidx, order, pindex)
                finally:
                    store64(po, 0)
                return
        free_one_page(zid, pfn, order, cold)

    def free_pages_pcp(pfn: int, order: int = 0, cold: bool = False) -> None:
        """__free_pages(): drop a reference; at zero the block goes back (hot, or cold).

        The hot order-0 free to this CPU's PCP head is inlined (free_frozen_pages has
        the general case), for the same reason as alloc_pages' fast path.  It leaves the
        fast path when count reaches free_thr (pcp->high, or 0 while the zone is below
        its HIGH mark): pcp_free_commit then tunes high and drains.
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
        if count >= u64[cidx + 8]:
            try:
                pcp_free_commit((w >> 48) & 0xFF, po, cidx, 0, mt)
            finally:
                store64(po, 0)
            return
        store64(po, 0)

    def free_pages_pcp_exact(pfn: int, order: int = 0, cold: bool = False) -> None:
        """free_pages_pcp with pcp_autotune "exact": the inlined order-0 free also keeps
        Linux's per-free bookkeeping (alloc_factor >>= 1, free_count += 1, the previous
        free no longer high-order)."""
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
        if count >= u64[cidx + 8]:
            try:
                pcp_free_commit((w >> 48) & 0xFF, po, cidx, 0, mt)
            finally:
                store64(po, 0)
            return
        if u64[cidx + 6]:
            u64[cidx + 6] >>= 1
        fc = u64[cidx + 5]
        if fc < u64[cidx + 2] << 5:
            u64[cidx + 5] = fc + 1
        if u64[cidx + 7] & 1:                             # PCPF_PREV_FREE_HIGH_ORDER
            u64[cidx + 7] &= ~1
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

    free_pages = (free_pages_pcp_exact if exact else free_pages_pcp) if pcp_on else free_pages_buddy

    def free_pages_bulk(pfns: list[int]) -> None:
        """folios_put() + free_unref_folios() for order-0 pages (the mmu_gather's and an
        object's pages): drop one reference of each; the pages whose last reference this
        was are freed as one batch.  Those on an LRU are unlinked first, all together
        (reclaim_lru_del_many: __page_cache_release under one lruvec lock hold), then
        each goes to this CPU's PCP under one pcp hold per run of one zone, with the
        per-page free_frozen_page_commit (the commit -- nr_pcp_high, drain to the buddy
        -- whenever count reaches free_thr, as free_pages does).  Anything else (a
        compound head, a bad page, a non-PCP pageblock type, the pcp not ours: offline
        or draining) takes free_frozen_pages, one page at a time.  Measured against a
        free_pages call per page (page_fault1's munmap, 4096 pages, bytecode counts):
        ~600 -> ~90 bytecodes a freed LRU page.  When mm.free_pages has been wrapped
        (mm/san's page hooks), each page goes through the wrapper instead (checked once
        a call, not per page)."""
        wrapped = mm.free_pages
        if wrapped is not free_pages:
            for pfn in pfns:
                wrapped(pfn, 0)
            return
        dead: list[int] = []
        on_lru: list[int] = []
        for pfn in pfns:
            old = fetch_sub32(pm8 + (pfn << 6) + 8, 1)
            if old == 1:
                dead.append(pfn)
                if u32[pm32 + (pfn << 4)] & PG_lru:
                    on_lru.append(pfn)
            elif old == 0:
                fetch_add32(pm8 + (pfn << 6) + 8, 1)
                bad_page(pfn, "refcount underflow (double free?)")
        if not dead:
            return
        if on_lru:
            many = mm.reclaim_lru_del_many
            if many is not None:
                many(on_lru)
            elif mm.reclaim_lru_del is not None:
                for pfn in on_lru:
                    mm.reclaim_lru_del(pfn)
            # else: free_frozen_pages below reports the LRU page (no reclaim attached)
        if not pcp_on:
            for pfn in dead:
                free_frozen_pages(pfn, 0, False)
            return
        # Inside one pcp hold the count and pgfree live in locals and are written back
        # before a commit (it reads both: nr_pcp_high, the batched catch_up) and at the
        # release: a memoryview += costs ~70 ns, a store ~25 (measured).  free_thr is
        # read for every page (another CPU's mark_below_high may zero it meanwhile).
        po = li0 = cidx = zcur = -1
        count = nfree = 0
        try:
            for pfn in dead:
                w = u64[pm64 + (pfn << 3)]
                mt = u8[PB + (pfn >> pb_order)]
                zid = (w >> 48) & 0xFF
                if w & _BAD_FREE_OR_HEAD_ORDER or mt >= _PCPTYPES or zid != zcur:
                    if po >= 0:                                # leave the pcp held so far
                        u64[cidx] = count                      # (>= 0: no commit is running)
                        u64[ev_pgfree] += nfree
                        nfree = 0
                        store64(po, 0)
                        po = zcur = -1
                    if w & _BAD_FREE_OR_HEAD_ORDER or mt >= _PCPTYPES:
                        free_frozen_pages(pfn, 0, False)
                        continue
                    p, li, c = pcp_fast[zid]
                    if cas64(p, 0, 1) != 0:
                        free_frozen_pages(pfn, 0, False)       # pcp_spin_trylock failed: the buddy
                        continue
                    po, li0, cidx, zcur = p, li, c, zid
                    count = u64[cidx]
                b = pm32 + (pfn << 4)
                u32[b] = PG_pcp
                u8[pm8 + (pfn << 6) + 5] = mt
                li = li0 + mt * 2
                old = u32[li]
                u32[b + 4] = old
                u32[b + 5] = NIL
                if old == NIL:
                    u32[li + 1] = pfn
                else:
                    u32[pm32 + (old << 4) + 5] = pfn
                u32[li] = pfn
                count += 1
                nfree += 1
                if count >= u64[cidx + 8]:
                    u64[cidx] = count
                    u64[ev_pgfree] += nfree
                    count = -1                                 # (the commit owns the count now)
                    nfree = 0
                    pcp_free_commit(zid, po, cidx, 0, mt)
                    count = u64[cidx]
                elif exact:                                    # free_pages_pcp_exact's bookkeeping
                    if u64[cidx + 6]:
                        u64[cidx + 6] >>= 1
                    fc = u64[cidx + 5]
                    if fc < u64[cidx + 2] << 5:
                        u64[cidx + 5] = fc + 1
                    if u64[cidx + 7] & 1:
                        u64[cidx + 7] &= ~1
        finally:
            if po >= 0:
                if count >= 0:
                    u64[cidx] = count
                u64[ev_pgfree] += nfree
                store64(po, 0)

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

    def give_back(pfn: int, step: int = -1) -> None:
        """An order-0 page its caller never published goes back (a fault's new page that
        lost its index, a page-cache fill that lost the race): frozen first (refcount
        1 -> 0 by CAS: a stale try-get of the pfn's previous life fails from then on),
        then the u64 word `step` cleared (the caller's record step; -1: none), then the
        page freed frozen -- a kill from outside before the step finds it frozen (the
        record's recovery frees it), one after leaves it in no state (pmm/recover.py
        reclaim_pages).  A try-get holding it at that moment: the step, then a plain put
        (a kill between those two leaks the page)."""
        if cas32(pm8 + (pfn << 6) + 8, 1, 0) == 1:
            if step >= 0:
                u64[step] = 0
            mm.free_frozen_pages(pfn, 0, False)      # (the handle's: a sanitizer may wrap it)
            return
        if step >= 0:
            u64[step] = 0
        mm.free_pages(pfn, 0)

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
    mm.free_frozen_pages = free_frozen_pages
    mm.give_back = give_back
    mm.free_pages_ = free_pages
    mm.free_pages_bulk = free_pages_bulk
    mm.alloc_page_fn = alloc_page_fn
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
    mm.move_freepages_block_locked = move_freepages_block_locked
    mm.warn_state = warn_state
    mm.decay_pcp_high = decay_pcp_high
    if page_hooks.wanted(arena.config):       # [debug] kasan / init_on_*: wrappers, chosen once
        page_hooks.install(mm)
    _ = (ev_pgalloc, load64, Z.NUMA_HIT, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE, MIGRATETYPE_NAMES)
