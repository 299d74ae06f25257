"""Nodes and zones: where they lie, their watermarks, free areas and zonelists.

Models: include/linux/mmzone.h (pglist_data, zone, free_area, per_cpu_pages),
mm/page_alloc.c (__setup_per_zone_wmarks, setup_per_zone_lowmem_reserve,
calculate_totalreserve_pages, zone_batchsize, zone_highsize, nr_pcp_alloc, nr_pcp_high,
nr_pcp_free, decay_pcp_high, boost_watermark, build_zonelists, find_next_best_node),
mm/khugepaged.c (set_recommended_min_free_kbytes), mm/mm_init.c (zone placement).
The formulas are pure functions of ints (page_alloc.py's slow paths and the fidelity
self-check, aerosync/fidelity.py, call the same code).  Unit: a zone id `zid = nid * MAX_NR_ZONES + zone_idx`.

Arena sections (all laid out by mm/pmm/init.py:mm_sections):

  mmzones    a MM_HDR_SIZE header (G_*: magic, nr_pages, max_order, pageblock_order,
             nr_nodes, nr_zones, nr_cpus, pcp_enabled, min_free_kbytes, zone boundaries,
             thp, pcp_autotune, totalreserve_pages; fixed at init, magic written
             last), then one ZONE_REC_SIZE record per zone id (nr_nodes *
             MAX_NR_ZONES; an empty zone has present == 0).  Record::

       0 start_pfn  8 spanned  16 present  24 managed           (fixed at init)
      32 wmark_min 40 wmark_low 48 wmark_high 56 wmark_promo    (fixed at init)
      64 lowmem_reserve[MAX_NR_ZONES] u64                       (fixed at init)
      88 lock_slot 96 nid 104 zone_idx                           (fixed at init)
     112 pcp_high_min (zone->pageset_high_min) 120 pcp_batch     (fixed at init)
     128 nr_free_pages (NR_FREE_PAGES)                           guarded by zone.lock
     136 nr_reserved_highatomic 144 nr_free_highatomic          guarded by zone.lock
     152 flags u64 (atomic fetch_or/and, any CPU): ZONE_BOOSTED_WATERMARK,
         ZONE_RECLAIM_ACTIVE, ZONE_BELOW_HIGH (enum zone_flags bits)
     160 watermark_boost                                         guarded by zone.lock
     168 pcp_high_max (zone->pageset_high_max)                   (fixed at init)
     192 free_area[order] (FA_SIZE bytes each):                  guarded by zone.lock
           +0 nr_free u64 (blocks, all types)
           +8 + 8*mt: head u32, tail u32 (pfn, NIL when empty) for mt in MIGRATE_TYPES

  mmpcp      one PCP_REC_SIZE record per (cpu, zone id), at (cpu*nr_zones + zid)*size::

       0 state u64 (atomic)  PCP_IDLE 0 / PCP_BUSY 1 (owner inside) / PCP_OFFLINE 2
       8 count (pages on all lists)  16 high  24 batch              owner while BUSY
      32 high_min  40 high_max (fixed at init)  48 free_count  56 alloc_factor
      64 flags (PCPF_PREV_FREE_HIGH_ORDER, PCPF_FREE_HIGH_BATCH)    owner while BUSY
      72 free_thr: the count at which the inlined order-0 free leaves its fast path
         (== high, or 0 while the zone is ZONE_BELOW_HIGH: every free then runs
         nr_pcp_high); the owner stores it, a CPU setting ZONE_BELOW_HIGH stores 0
         (atomic stores; page_alloc.py "PCP high autotune")
      80 snap_pgfree 88 snap_alloc (pcp_autotune "batched": the CPU's pgfree / this
         zone's allocation counters at the last catch-up)  96 decay_ns (last
         decay_pcp_high)                                           owner while BUSY
     128 lists[NR_PCP_LISTS]: head u32, tail u32; pindex = order*MIGRATE_PCPTYPES + mt
         for orders 0..3, NR_LOWORDER_PCP_LISTS + (mt == MOVABLE) for HPAGE_PMD_ORDER

  mmstat     one stat_rec_size() record per CPU of u64 counters, owner-only plain
             increments, summed over CPUs on read (vmstat's fold-on-read)::

       [0, NR_MM_EVENTS)                      EV_* events
       STAT_NUMA + nid*8 + NUMA_*             numastat items counted directly on node nid
                                              (numa_foreign; interleave_hit from mempolicy)
       STAT_NUMA + nr_nodes*8                 allocations from zone zid, by category
         + zid*ZS_WORDS + ZS_*                ZS_HIT_LOCAL, ZS_HIT_OTHER, ZS_MISS_LOCAL,
                                              ZS_MISS_OTHER (hit = zone on the preferred
                                              node; local = zone on the allocating CPU's),
                                              ZS_PAGES_EXTRA: the pages beyond the first
                                              of each allocation, sum of 2^order - 1;
                                              ZS_FOREIGN: numa_foreign counted on the
                                              preferred zone, ZS_INTERLEAVE: numa_interleave
                                              on the zone of the page (zone_statistics)

             numastat counts allocations, not pages, as Linux's rmqueue_buddy /
             rmqueue_pcplist do (zone_statistics(preferred, zone, 1)): numa_hit/miss/
             local_node/other_node (and numa_foreign, interleave_hit) go up by one per
             allocation whatever its order.  pgalloc_<zone> counts pages (2^order):
             pgalloc = sum of the four categories + ZS_PAGES_EXTRA.  All are derived on
             read, so an order-0 allocation costs one increment (its category) instead of
             three, and a higher order one a second increment (measured ~0.12 us saved
             per order-0 alloc).

  mmpageblock one u8 per pageblock (pfn >> pageblock_order): its migratetype, changed
             only under the zone.lock of the zone holding it.

  vmevents   per-CPU vm event and node stat counters (mm/pmm/vm_event.py): the names of
             /proc/vmstat beyond the page allocator's own (pgfault, nr_anon_pages, ...).

Zone placement (zone_boundaries): by simulated physical address as on x86-64, ZONE_DMA
below 16 MiB and ZONE_DMA32 below 4 GiB, when the machine has at least 8 GiB (so
ZONE_NORMAL holds half or more).  Smaller machines are scaled so that all three zones
exist: DMA = the first 1/64 of memory, DMA32 up to 1/4, NORMAL the rest (64 MiB ->
DMA 1 MiB, DMA32 to 16 MiB), boundaries rounded down to 16 pages.  Nodes split the pfn
range in proportion to node_mem_weight (rounded to MAX_ORDER_NR_PAGES when every node
still gets at least one such block); a node holds the zones its range intersects, so on
a two-node machine node 1 has NORMAL only, as on a real x86-64 box.
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.pmm.gfp import (
    MAX_NR_ZONES,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_NAMES,
    ZONE_NORMAL,
)
from aerosync.params import CACHE_LINE, PAGE_SHIFT

__all__ = [
    "MM_HDR_SIZE", "MM_MAGIC", "G_MAGIC", "G_NR_PAGES", "G_MAX_ORDER", "G_PB_ORDER", "G_NR_NODES",
    "G_NR_ZONES", "G_NR_CPUS", "G_PCP_ENABLED", "G_MIN_FREE_KBYTES", "G_DMA_END", "G_DMA32_END",
    "G_THP", "G_PCP_AUTOTUNE", "G_TOTALRESERVE", "PCP_AUTOTUNE_OFF", "PCP_AUTOTUNE_BATCHED",
    "PCP_AUTOTUNE_EXACT", "PCP_AUTOTUNE_NAMES",
    "zone_off", "pcp_off", "stat_off", "zone_info", "numastat", "vm_events", "zone_pgalloc",
    "ZONE_REC_SIZE", "Z_START", "Z_SPANNED", "Z_PRESENT", "Z_MANAGED", "Z_WMARK", "Z_WMARK_MIN",
    "Z_WMARK_LOW", "Z_WMARK_HIGH", "Z_WMARK_PROMO", "Z_LOWMEM_RESERVE", "Z_LOCK_SLOT", "Z_NID",
    "Z_ZONE_IDX", "Z_PCP_HIGH", "Z_PCP_BATCH", "Z_NR_FREE_PAGES", "Z_NR_RESERVED_HIGHATOMIC",
    "Z_NR_FREE_HIGHATOMIC", "Z_FLAGS", "Z_WMARK_BOOST", "Z_PCP_HIGH_MAX", "Z_FREE_AREA", "FA_SIZE",
    "FA_NR_FREE", "FA_LISTS", "MAX_ORDER_LIMIT",
    "ZONE_BOOSTED_WATERMARK", "ZONE_RECLAIM_ACTIVE", "ZONE_BELOW_HIGH",
    "PCP_REC_SIZE", "PCP_STATE", "PCP_COUNT", "PCP_HIGH", "PCP_BATCH", "PCP_HIGH_MIN", "PCP_HIGH_MAX",
    "PCP_FREE_COUNT", "PCP_ALLOC_FACTOR", "PCP_FLAGS", "PCP_FREE_THR", "PCP_SNAP_PGFREE", "PCP_SNAP_ALLOC",
    "PCP_DECAY_NS", "PCP_LISTS", "PCPF_PREV_FREE_HIGH_ORDER", "PCPF_FREE_HIGH_BATCH",
    "PCP_IDLE", "PCP_BUSY", "PCP_OFFLINE", "PAGE_ALLOC_COSTLY_ORDER", "HPAGE_PMD_ORDER",
    "NR_LOWORDER_PCP_LISTS", "NR_PCP_LISTS", "PCP_BATCH_SCALE_MAX", "MIN_PERCPU_PAGELIST_HIGH_FRACTION",
    "pcp_allowed_order", "order_to_pindex", "pindex_to_order",
    "NR_MM_EVENTS", "EV_PGALLOC_FAIL", "EV_ALLOC_WARN", "EV_PGFREE", "EV_PCP_REFILL",
    "EV_PCP_DRAIN", "EV_PGALLOC", "EV_SLOWPATH", "EV_CLAIM", "EV_STEAL", "EV_WMARK_BOOST",
    "EV_KSWAPD_WAKE", "EV_ALLOC_WARN_SUPPRESSED", "EV_NAMES",
    "NUMA_HIT", "NUMA_MISS", "NUMA_FOREIGN", "NUMA_INTERLEAVE_HIT", "NUMA_LOCAL", "NUMA_OTHER",
    "NUMA_NAMES", "STAT_NUMA", "ZS_HIT_LOCAL", "ZS_HIT_OTHER", "ZS_MISS_LOCAL", "ZS_MISS_OTHER",
    "ZS_PAGES_EXTRA", "ZS_FOREIGN", "ZS_INTERLEAVE", "ZS_WORDS",
    "stat_rec_size", "zone_boundaries", "node_ranges",
    "calculate_min_free_kbytes", "set_recommended_min_free_kbytes", "nr_free_buffer_pages",
    "setup_watermarks", "setup_lowmem_reserve", "calculate_totalreserve_pages", "zone_batchsize",
    "zone_highsize", "nr_pcp_alloc", "nr_pcp_free", "nr_pcp_high", "decay_pcp_high", "boost_watermark",
    "build_node_orders", "zone_name", "LOWMEM_RESERVE_RATIO",
]

# ---------------------------------------------------------------- mm header
MM_HDR_SIZE = 1024
MM_MAGIC = 0x4D4D_5A4F_4E45_5331       # "MMZONES1"
G_MAGIC, G_NR_PAGES, G_MAX_ORDER, G_PB_ORDER, G_NR_NODES, G_NR_ZONES = 0, 8, 16, 24, 32, 40
G_NR_CPUS, G_PCP_ENABLED, G_MIN_FREE_KBYTES, G_DMA_END, G_DMA32_END = 48, 56, 64, 72, 80
G_THP, G_PCP_AUTOTUNE, G_TOTALRESERVE = 88, 96, 104   # THP on, PCP_AUTOTUNE_*, totalreserve_pages
PCP_AUTOTUNE_OFF, PCP_AUTOTUNE_BATCHED, PCP_AUTOTUNE_EXACT = 0, 1, 2
PCP_AUTOTUNE_NAMES = ("off", "batched", "exact")

MAX_ORDER_LIMIT = 15                  # max_page_order configurable up to this (u8 fields, 16 free areas)

# ---------------------------------------------------------------- zone record
ZONE_REC_SIZE = 1024
Z_START, Z_SPANNED, Z_PRESENT, Z_MANAGED = 0, 8, 16, 24
Z_WMARK = 32                          # + 8 * WMARK_* (min, low, high, promo)
Z_WMARK_MIN, Z_WMARK_LOW, Z_WMARK_HIGH, Z_WMARK_PROMO = 32, 40, 48, 56
Z_LOWMEM_RESERVE = 64                 # + 8 * zone_idx
Z_LOCK_SLOT, Z_NID, Z_ZONE_IDX, Z_PCP_HIGH, Z_PCP_BATCH = 88, 96, 104, 112, 120
Z_NR_FREE_PAGES, Z_NR_RESERVED_HIGHATOMIC, Z_NR_FREE_HIGHATOMIC = 128, 136, 144
Z_FLAGS, Z_WMARK_BOOST, Z_PCP_HIGH_MAX = 152, 160, 168
# enum zone_flags (include/linux/mmzone.h), bits of the Z_FLAGS word
ZONE_BOOSTED_WATERMARK, ZONE_RECLAIM_ACTIVE, ZONE_BELOW_HIGH = 1 << 0, 1 << 1, 1 << 2
Z_FREE_AREA = 192
FA_NR_FREE = 0
FA_LISTS = 8                          # + 8 * mt: head u32, tail u32
FA_SIZE = FA_LISTS + 8 * MIGRATE_TYPES
assert Z_FREE_AREA + (MAX_ORDER_LIMIT + 1) * FA_SIZE <= ZONE_REC_SIZE

# ---------------------------------------------------------------- per_cpu_pages record
PAGE_ALLOC_COSTLY_ORDER = 3
HPAGE_PMD_ORDER = 9                   # x86-64 PMD-sized THP (2 MiB)
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + 2          # + NR_PCP_THP (CONFIG_TRANSPARENT_HUGEPAGE)
PCP_BATCH_SCALE_MAX = 5               # CONFIG_PCP_BATCH_SCALE_MAX default
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
PCP_REC_SIZE = 256
PCP_STATE, PCP_COUNT, PCP_HIGH, PCP_BATCH = 0, 8, 16, 24
PCP_HIGH_MIN, PCP_HIGH_MAX, PCP_FREE_COUNT, PCP_ALLOC_FACTOR = 32, 40, 48, 56
PCP_FLAGS, PCP_FREE_THR, PCP_SNAP_PGFREE, PCP_SNAP_ALLOC, PCP_DECAY_NS = 64, 72, 80, 88, 96
PCP_LISTS = 128
PCPF_PREV_FREE_HIGH_ORDER, PCPF_FREE_HIGH_BATCH = 1, 2
PCP_IDLE, PCP_BUSY, PCP_OFFLINE = 0, 1, 2
assert PCP_LISTS + NR_PCP_LISTS * 8 <= PCP_REC_SIZE and PCP_REC_SIZE % CACHE_LINE == 0


def pcp_allowed_order(order: int, thp: bool) -> bool:
    """mm/page_alloc.c:pcp_allowed_order(): orders 0..3, and HPAGE_PMD_ORDER with THP."""
    return order <= PAGE_ALLOC_COSTLY_ORDER or (thp and order == HPAGE_PMD_ORDER)


def order_to_pindex(mt: int, order: int) -> int:
    """mm/page_alloc.c:order_to_pindex(): the PCP list of (order, migratetype)."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (mt == 1)          # MIGRATE_MOVABLE
    return order * MIGRATE_PCPTYPES + mt


def pindex_to_order(pindex: int) -> int:
    """mm/page_alloc.c:pindex_to_order()."""
    return HPAGE_PMD_ORDER if pindex >= NR_LOWORDER_PCP_LISTS else pindex // MIGRATE_PCPTYPES

# ---------------------------------------------------------------- per-CPU statistics
(EV_PGALLOC_FAIL, EV_ALLOC_WARN, EV_PGFREE, EV_PCP_REFILL, EV_PCP_DRAIN, EV_PGALLOC,
 EV_SLOWPATH, EV_CLAIM, EV_STEAL, EV_WMARK_BOOST, EV_KSWAPD_WAKE, EV_ALLOC_WARN_SUPPRESSED) = range(12)
EV_NAMES = ("pgalloc_fail", "alloc_warn", "pgfree", "pcp_refill", "pcp_drain", "pgalloc",
            "allocstall_slowpath", "pgblock_claim", "pgblock_steal", "watermark_boost", "kswapd_wake",
            "alloc_warn_suppressed")   # alloc_warn: warn_alloc printed; _suppressed: its rate limit held it
NR_MM_EVENTS = 16
NUMA_HIT, NUMA_MISS, NUMA_FOREIGN, NUMA_INTERLEAVE_HIT, NUMA_LOCAL, NUMA_OTHER = range(6)
NUMA_NAMES = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node")
STAT_NUMA = NR_MM_EVENTS              # in u64 units


ZS_HIT_LOCAL, ZS_HIT_OTHER, ZS_MISS_LOCAL, ZS_MISS_OTHER, ZS_PAGES_EXTRA, ZS_FOREIGN, ZS_INTERLEAVE = range(7)
ZS_WORDS = 7                          # u64 words per zone in the mmstat record


def stat_rec_size(nr_nodes: int) -> int:
    """Bytes of one CPU's mmstat record (padded to a cache line)."""
    words = STAT_NUMA + nr_nodes * 8 + nr_nodes * MAX_NR_ZONES * ZS_WORDS
    return (words * 8 + CACHE_LINE - 1) // CACHE_LINE * CACHE_LINE


def zone_name(zid: int) -> str:
    return f"node{zid // MAX_NR_ZONES}/{ZONE_NAMES[zid % MAX_NR_ZONES]}"


# ---------------------------------------------------------------- placement
_X86_DMA_END = (16 << 20) >> PAGE_SHIFT
_X86_DMA32_END = (4 << 30) >> PAGE_SHIFT


def zone_boundaries(nr_pages: int) -> tuple[int, int]:
    """(dma_end_pfn, dma32_end_pfn): ZONE_DMA is [0, dma_end), DMA32 [dma_end, dma32_end).

    x86-64 boundaries (16 MiB, 4 GiB) for machines of 8 GiB or more; otherwise the
    scaled ones (1/64 and 1/4 of memory, rounded down to 16 pages) so all zones exist.
    """
    if nr_pages >= 2 * _X86_DMA32_END:
        return _X86_DMA_END, _X86_DMA32_END
    dma = max(16, nr_pages // 64 // 16 * 16)
    dma32 = max(dma + 16, nr_pages // 4 // 16 * 16)
    return dma, dma32


def node_ranges(nr_pages: int, weights: tuple[int, ...] | list[int], max_order: int) -> list[tuple[int, int]]:
    """[start, end) pfns per node, in proportion to weights (node 0 lowest)."""
    n = len(weights)
    total = sum(weights)
    align = 1 << max_order
    if nr_pages // align < n:
        align = 1
    out, start, acc = [], 0, 0
    for i, w in enumerate(weights):
        acc += w
        end = nr_pages if i == n - 1 else (nr_pages * acc // total) // align * align
        end = max(end, start)
        out.append((start, end))
        start = end
    return out


# ---------------------------------------------------------------- watermarks
LOWMEM_RESERVE_RATIO = (256, 256, 32)


def _int_sqrt(x: int) -> int:
    import math

    return math.isqrt(x)


def calculate_min_free_kbytes(lowmem_pages: int) -> int:
    """mm/page_alloc.c:calculate_min_free_kbytes(): clamp(sqrt(lowmem_kbytes*16), 128, 262144)."""
    lowmem_kbytes = lowmem_pages << (PAGE_SHIFT - 10)
    return min(max(_int_sqrt(lowmem_kbytes * 16), 128), 262144)


def setup_watermarks(managed: list[int], min_free_kbytes: int,
                     scale_factor: int = 10) -> list[tuple[int, int, int, int]]:
    """(min, low, high, promo) per zone (__setup_per_zone_wmarks; every zone is lowmem here)."""
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem = sum(managed) or 1
    out = []
    for m in managed:
        tmp = pages_min * m // lowmem
        gap = max(tmp >> 2, m * scale_factor // 10000)
        lo = tmp + gap
        out.append((tmp, lo, lo + gap, lo + 2 * gap))
    return out


def setup_lowmem_reserve(managed: list[int], ratios: tuple[int, ...] | list[int] = LOWMEM_RESERVE_RATIO
                         ) -> list[list[int]]:
    """lowmem_reserve[i][j] for the zones of ONE node (setup_per_zone_lowmem_reserve);
    `ratios` is sysctl_lowmem_reserve_ratio, one per zone (the doctor's self-check feeds
    a host's, with all of its zones)."""
    nz = len(managed)
    res = [[0] * nz for _ in range(nz)]
    for i in range(nz):
        ratio = ratios[i] if i < len(ratios) else 0
        if not ratio or not managed[i]:
            continue
        acc = 0
        for j in range(i + 1, nz):
            acc += managed[j]
            res[i][j] = acc // ratio
    return res


def zone_batchsize(managed: int) -> int:
    """mm/page_alloc.c:zone_batchsize(): min(managed >> 12, 256 KiB / PAGE_SIZE) rounded
    down to 2^n - 1 (2^n batches alias in the cache), 1 when that is <= 1.

    Exactly Linux's for every zone size: a zone below 8 MiB gets batch 1 (its PCP then
    holds single pages, as on a real small zone); tests that want a batching PCP on a
    small machine set the pcp_batch knob."""
    b = min(managed >> 12, (256 << 10) >> PAGE_SHIFT)
    if b <= 1:
        return 1
    b = b + b // 2
    return (1 << (b.bit_length() - 1)) - 1


def zone_highsize(low_wmark: int, managed: int, batch: int, nr_split_cpus: int, fraction: int = 0) -> int:
    """mm/page_alloc.c:zone_highsize(): the LOW mark (fraction 0) or managed / fraction,
    split over the CPUs of the zone's node (all online CPUs for a CPU-less node, which
    the caller passes), at least batch * 4."""
    total = low_wmark if fraction == 0 else managed // fraction
    return max(total // max(1, nr_split_cpus), batch << 2)


def nr_free_buffer_pages(managed: list[int], high: list[int]) -> int:
    """mm/page_alloc.c:nr_free_buffer_pages(): sum of managed - high over the zones a
    GFP_USER allocation may use (every zone here: no HIGHMEM/MOVABLE)."""
    return sum(m - h for m, h in zip(managed, high) if m > h)


def set_recommended_min_free_kbytes(min_free_kbytes: int, nr_zones_lowmem: int, free_buffer_pages: int,
                                    pb_order: int) -> int:
    """mm/khugepaged.c:set_recommended_min_free_kbytes() with THP enabled: two free
    pageblocks per populated zone plus MIGRATE_PCPTYPES^2 per zone for fallbacks, capped
    at 5 % of nr_free_buffer_pages(); min_free_kbytes only ever rises."""
    pb = 1 << pb_order
    recommended = pb * nr_zones_lowmem * 2 + pb * nr_zones_lowmem * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    recommended = min(recommended, free_buffer_pages // 20) << (PAGE_SHIFT - 10)
    return max(min_free_kbytes, recommended)


def calculate_totalreserve_pages(managed: list[int], high: list[int], lowmem_reserve: list[list[int]]) -> int:
    """mm/page_alloc.c:calculate_totalreserve_pages() for the zones of the machine (zone
    id order, lowmem_reserve[zid][j]): per zone the largest reserve it keeps for higher
    zones plus its HIGH mark, capped at its managed pages."""
    total = 0
    for z, m in enumerate(managed):
        res = lowmem_reserve[z]
        mx = max((res[j] for j in range(len(res)) if j > z % MAX_NR_ZONES), default=0) + high[z]
        total += min(mx, m)
    return total


# ---------------------------------------------------------------- PCP high autotune (6.7+)
def nr_pcp_alloc(high: int, high_min: int, high_max: int, batch: int, count: int, alloc_factor: int,
                 order: int, below_high: bool) -> tuple[int, int, int]:
    """mm/page_alloc.c:nr_pcp_alloc(): blocks to refill, the new pcp->high and the new
    alloc_factor.  high is clamped to [high_min, high_max]; with autotune (high_min !=
    high_max) and the zone not below its HIGH mark it grows by the refill size; order-0
    refills grow (alloc_factor, up to PCP_BATCH_SCALE_MAX) while they stay below
    high - count - batch."""
    high = min(max(high, high_min), high_max)
    if high < batch:
        return 1, high, alloc_factor
    b = batch if order else batch << alloc_factor
    if high_min != high_max and not below_high:
        high = min(high + b, high_max)
    if not order:
        max_nr_alloc = max(high - count - batch, batch)
        if b <= max_nr_alloc and alloc_factor < PCP_BATCH_SCALE_MAX:
            alloc_factor += 1
        b = min(b, max_nr_alloc)
    if b > 1:
        b = max(b >> order, 2)
    return b, high, alloc_factor


def nr_pcp_high(high: int, high_min: int, high_max: int, batch: int, count: int, free_count: int,
                free_high: bool, below_high: bool, reclaim_active: bool = False) -> tuple[int, int]:
    """mm/page_alloc.c:nr_pcp_high(): (the count at which this free drains, the new
    pcp->high).  A burst of high-order frees lowers high by batch << 5 and drains; a zone
    below its HIGH mark shrinks high by max(free_count, batch) per free and drains above
    max(count, high_min); otherwise a full PCP grows high to hold free_count + batch."""
    high = min(max(high, high_min), high_max)
    if not high:
        return 0, high
    if free_high:
        return 0, max(high - (batch << PCP_BATCH_SCALE_MAX), high_min)
    if reclaim_active:
        new = max(high - max(free_count, batch), high_min)
        return min(batch << 2, new), new
    if high_min == high_max:
        return high, high
    if below_high:
        new = max(high - max(free_count, batch), high_min)
        return max(count, high_min), new
    new = high
    if count >= high:
        need = free_count + batch
        if high < need:
            new = min(max(need, high_min), high_max)
    return high, new


def nr_pcp_free(count: int, batch: int, high: int, free_count: int, free_high: bool) -> int:
    """mm/page_alloc.c:nr_pcp_free(): pages to free once count >= high: everything up
    to batch << 5 for a high-order burst, 1 for a disabled (boot) PCP, else the recent
    run of frees clamped to [batch, high - batch]."""
    if free_high:
        return min(count, batch << PCP_BATCH_SCALE_MAX)
    if high < batch:
        return 1
    lo, hi = batch, high - batch              # clamp_t(): hi wins when the bounds cross
    return hi if free_count >= hi else lo if free_count <= lo else free_count


def decay_pcp_high(count: int, high: int, high_min: int, batch: int) -> tuple[int, int]:
    """mm/page_alloc.c:decay_pcp_high() (the vmstat worker, once a second): (new high,
    pages to drain).  high falls by an eighth (not below count - batch << 5 or
    high_min) and anything above it is drained."""
    if high > high_min:
        high = max(count - (batch << PCP_BATCH_SCALE_MAX), high - (high >> 3), high_min)
    return high, max(count - high, 0)


def boost_watermark(boost: int, high_wmark: int, managed: int, pb_order: int,
                    watermark_boost_factor: int = 15000) -> int:
    """mm/page_alloc.c:boost_watermark(): the new zone->watermark_boost after a fallback
    that fragments a pageblock (unchanged for zones under 4 pageblocks or a 0 factor)."""
    pb = 1 << pb_order
    if not watermark_boost_factor or pb * 4 > managed:
        return boost
    max_boost = high_wmark * watermark_boost_factor // 10000
    if not max_boost:
        return boost
    return min(boost + pb, max(pb, max_boost))


# ---------------------------------------------------------------- zonelists
def build_node_orders(nr_nodes: int, distance: Any, node_cpus: Any, has_mem: list[bool]) -> list[list[int]]:
    """Fallback node order of every node (build_zonelists + find_next_best_node).

    node_load persists across nodes, as in __build_all_zonelists, so ties are spread
    round-robin.  Memoryless nodes are skipped as targets.
    """
    node_load = [0] * nr_nodes
    orders = []
    for local in range(nr_nodes):
        used = [False] * nr_nodes
        order: list[int] = []
        prev = local
        load = nr_nodes
        while (n := _next_best_node(local, used, nr_nodes, distance, node_cpus, has_mem, node_load)) >= 0:
            if distance[local][n] != distance[local][prev]:
                node_load[n] += load
            order.append(n)
            prev = n
            load -= 1
        orders.append(order)
    return orders


def _next_best_node(local: int, used: list[bool], nr_nodes: int, distance: Any, node_cpus: Any,
                    has_mem: list[bool], node_load: list[int]) -> int:
    """find_next_best_node(): the local node first, then the cheapest unused memory node."""
    from aerosync.params import MAX_NUMNODES

    if has_mem[local] and not used[local]:
        used[local] = True
        return local
    best_n, best_val = -1, None
    for n in range(nr_nodes):
        if used[n] or not has_mem[n]:
            continue
        val = distance[local][n] + (1 if n < local else 0) + (1 if node_cpus[n] else 0)
        val = val * MAX_NUMNODES + node_load[n]
        if best_val is None or val < best_val:
            best_n, best_val = n, val
    if best_n >= 0:
        used[best_n] = True
    return best_n


# ---------------------------------------------------------------- readers (any process)
def zone_off(arena: Any, zid: int) -> int:
    """Byte offset of zone `zid`'s record."""
    return arena.off("mmzones") + MM_HDR_SIZE + zid * ZONE_REC_SIZE


def pcp_off(arena: Any, cpu: int, zid: int, nr_zones: int) -> int:
    """Byte offset of cpu's per_cpu_pages record for zone `zid`."""
    return arena.off("mmpcp") + (cpu * nr_zones + zid) * PCP_REC_SIZE


def stat_off(arena: Any, cpu: int, nr_nodes: int) -> int:
    """Byte offset of cpu's mmstat record."""
    return arena.off("mmstat") + cpu * stat_rec_size(nr_nodes)


def _hdr(arena: Any, field: int) -> int:
    return arena.u64[(arena.off("mmzones") + field) >> 3]


def zone_info(arena: Any, zid: int) -> dict[str, Any]:
    """A zone's fixed facts and (racy, unlocked) free counts, for reports and warnings."""
    q = arena.u64
    z = zone_off(arena, zid) >> 3
    max_order = _hdr(arena, G_MAX_ORDER)
    fa = (zone_off(arena, zid) + Z_FREE_AREA) >> 3
    nr_zones = _hdr(arena, G_NR_ZONES)
    return {
        "zid": zid, "name": zone_name(zid), "nid": q[z + Z_NID // 8], "zone_idx": q[z + Z_ZONE_IDX // 8],
        "start_pfn": q[z], "spanned": q[z + 1], "present": q[z + 2], "managed": q[z + 3],
        "min": q[z + 4], "low": q[z + 5], "high": q[z + 6], "promo": q[z + 7],
        "lowmem_reserve": [q[z + 8 + i] for i in range(MAX_NR_ZONES)],
        "nr_free_pages": q[z + Z_NR_FREE_PAGES // 8],
        "nr_free": [q[fa + o * (FA_SIZE // 8)] for o in range(max_order + 1)],
        "pcp_high": q[z + Z_PCP_HIGH // 8], "pcp_batch": q[z + Z_PCP_BATCH // 8],
        "pcp_high_min": q[z + Z_PCP_HIGH // 8], "pcp_high_max": q[z + Z_PCP_HIGH_MAX // 8],
        "flags": q[z + Z_FLAGS // 8], "watermark_boost": q[z + Z_WMARK_BOOST // 8],
        "lock_slot": q[z + Z_LOCK_SLOT // 8], "nr_zones": nr_zones,
    }


def _stat_sum(arena: Any) -> Any:
    import numpy as np

    nr_nodes, nr_cpus = _hdr(arena, G_NR_NODES), _hdr(arena, G_NR_CPUS)
    words = stat_rec_size(nr_nodes) // 8
    a = arena.array("mmstat", np.uint64, count=nr_cpus * words).reshape(nr_cpus, words)
    s = a.sum(axis=0, dtype=np.uint64).tolist()
    del a
    return s, nr_nodes


def numastat(arena: Any) -> list[dict[str, int]]:
    """Per node {numa_hit, numa_miss, numa_foreign, interleave_hit, local_node, other_node}
    with the kernel's meanings (linux-mm.md 4.4), folded over CPUs and zones: allocations
    (one per successful allocation whatever its order), as Linux's zone_statistics()."""
    s, nr_nodes = _stat_sum(arena)
    out = []
    zb = STAT_NUMA + nr_nodes * 8
    for nid in range(nr_nodes):
        d = {name: int(s[STAT_NUMA + nid * 8 + i]) for i, name in enumerate(NUMA_NAMES)}
        for zi in range(MAX_NR_ZONES):
            o = zb + (nid * MAX_NR_ZONES + zi) * ZS_WORDS
            c = s[o : o + ZS_WORDS]
            d["numa_hit"] += int(c[ZS_HIT_LOCAL] + c[ZS_HIT_OTHER])
            d["numa_miss"] += int(c[ZS_MISS_LOCAL] + c[ZS_MISS_OTHER])
            d["numa_foreign"] += int(c[ZS_FOREIGN])
            d["interleave_hit"] += int(c[ZS_INTERLEAVE])
            d["local_node"] += int(c[ZS_HIT_LOCAL] + c[ZS_MISS_LOCAL])
            d["other_node"] += int(c[ZS_HIT_OTHER] + c[ZS_MISS_OTHER])
        out.append(d)
    return out


def vm_events(arena: Any) -> dict[str, int]:
    """EV_* events summed over CPUs."""
    s, _ = _stat_sum(arena)
    return {name: int(s[i]) for i, name in enumerate(EV_NAMES)}


def zone_pgalloc(arena: Any) -> list[int]:
    """pgalloc pages per zone id (2^order per allocation), summed over CPUs."""
    s, nr_nodes = _stat_sum(arena)
    base = STAT_NUMA + nr_nodes * 8
    return [int(sum(s[base + z * ZS_WORDS : base + z * ZS_WORDS + ZS_PAGES_EXTRA + 1]))
            for z in range(nr_nodes * MAX_NR_ZONES)]


_ = (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL)
