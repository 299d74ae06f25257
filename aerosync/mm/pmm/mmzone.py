"""Nodes and zones: where they lie, their watermarks, free areas and zonelists.

Models: include/linux/mmzone.h (pglist_data, zone, free_area, per_cpu_pages),
mm/page_alloc.c (__setup_per_zone_wmarks, setup_per_zone_lowmem_reserve,
zone_batchsize, zone_highsize, build_zonelists, find_next_best_node),
mm/mm_init.c (zone placement).  Unit: a zone id `zid = nid * MAX_NR_ZONES + zone_idx`.

Arena sections (all laid out by mm/pmm/init.py:mm_sections):

  mmzones    a MM_HDR_SIZE header (G_*: magic, nr_pages, max_order, pageblock_order,
             nr_nodes, nr_zones, nr_cpus, pcp_enabled, min_free_kbytes, zone boundaries;
             fixed at init, magic written last), then one ZONE_REC_SIZE record per zone
             id (nr_nodes * MAX_NR_ZONES; an empty zone has present == 0).  Record::

       0 start_pfn  8 spanned  16 present  24 managed           (fixed at init)
      32 wmark_min 40 wmark_low 48 wmark_high 56 wmark_promo    (fixed at init)
      64 lowmem_reserve[MAX_NR_ZONES] u64                       (fixed at init)
      88 lock_slot 96 nid 104 zone_idx 112 pcp_high 120 pcp_batch (fixed at init)
     128 nr_free_pages (NR_FREE_PAGES)                           guarded by zone.lock
     136 nr_reserved_highatomic 144 nr_free_highatomic          guarded by zone.lock
     192 free_area[order] (FA_SIZE bytes each):                  guarded by zone.lock
           +0 nr_free u64 (blocks, all types)
           +8 + 8*mt: head u32, tail u32 (pfn, NIL when empty) for mt in MIGRATE_TYPES

  mmpcp      one PCP_REC_SIZE record per (cpu, zone id), at (cpu*nr_zones + zid)*size::

       0 state u64 (atomic)  PCP_IDLE 0 / PCP_BUSY 1 (owner inside) / PCP_OFFLINE 2
       8 count u64 (pages on all lists)  16 high  24 batch        owner while BUSY
      64 lists[NR_PCP_LISTS]: head u32, tail u32; pindex = order*MIGRATE_PCPTYPES + mt

  mmstat     one stat_rec_size() record per CPU of u64 counters, owner-only plain
             increments, summed over CPUs on read (vmstat's fold-on-read)::

       [0, NR_MM_EVENTS)                      EV_* events
       STAT_NUMA + nid*8 + NUMA_*             numastat items counted directly on node nid
                                              (numa_foreign; interleave_hit from mempolicy)
       STAT_NUMA + nr_nodes*8                 allocations from zone zid, by category
         + zid*ZS_WORDS + ZS_*                ZS_HIT_LOCAL, ZS_HIT_OTHER, ZS_MISS_LOCAL,
                                              ZS_MISS_OTHER (hit = zone on the preferred
                                              node; local = zone on the allocating CPU's),
                                              and ZS_PAGES_EXTRA: the pages beyond the
                                              first of each allocation, sum of 2^order - 1

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
    "zone_off", "pcp_off", "stat_off", "zone_info", "numastat", "vm_events", "zone_pgalloc",
    "ZONE_REC_SIZE", "Z_START", "Z_SPANNED", "Z_PRESENT", "Z_MANAGED", "Z_WMARK", "Z_WMARK_MIN",
    "Z_WMARK_LOW", "Z_WMARK_HIGH", "Z_WMARK_PROMO", "Z_LOWMEM_RESERVE", "Z_LOCK_SLOT", "Z_NID",
    "Z_ZONE_IDX", "Z_PCP_HIGH", "Z_PCP_BATCH", "Z_NR_FREE_PAGES", "Z_NR_RESERVED_HIGHATOMIC",
    "Z_NR_FREE_HIGHATOMIC", "Z_FREE_AREA", "FA_SIZE", "FA_NR_FREE", "FA_LISTS", "MAX_ORDER_LIMIT",
    "PCP_REC_SIZE", "PCP_STATE", "PCP_COUNT", "PCP_HIGH", "PCP_BATCH", "PCP_LISTS",
    "PCP_IDLE", "PCP_BUSY", "PCP_OFFLINE", "PAGE_ALLOC_COSTLY_ORDER", "NR_PCP_LISTS",
    "NR_MM_EVENTS", "EV_PGALLOC_FAIL", "EV_ALLOC_WARN", "EV_PGFREE", "EV_PCP_REFILL",
    "EV_PCP_DRAIN", "EV_PGALLOC", "EV_SLOWPATH", "EV_CLAIM", "EV_STEAL", "EV_NAMES",
    "NUMA_HIT", "NUMA_MISS", "NUMA_FOREIGN", "NUMA_INTERLEAVE_HIT", "NUMA_LOCAL", "NUMA_OTHER",
    "NUMA_NAMES", "STAT_NUMA", "ZS_HIT_LOCAL", "ZS_HIT_OTHER", "ZS_MISS_LOCAL", "ZS_MISS_OTHER",
    "ZS_PAGES_EXTRA", "ZS_WORDS",
    "stat_rec_size", "zone_boundaries", "node_ranges",
    "calculate_min_free_kbytes", "setup_watermarks", "setup_lowmem_reserve", "zone_batchsize",
    "zone_highsize", "build_node_orders", "zone_name", "LOWMEM_RESERVE_RATIO",
]

# ---------------------------------------------------------------- mm header
MM_HDR_SIZE = 1024
MM_MAGIC = 0x4D4D_5A4F_4E45_5331       # "MMZONES1"
G_MAGIC, G_NR_PAGES, G_MAX_ORDER, G_PB_ORDER, G_NR_NODES, G_NR_ZONES = 0, 8, 16, 24, 32, 40
G_NR_CPUS, G_PCP_ENABLED, G_MIN_FREE_KBYTES, G_DMA_END, G_DMA32_END = 48, 56, 64, 72, 80

MAX_ORDER_LIMIT = 15                  # max_page_order configurable up to this (u8 fields, 16 free areas)

# ---------------------------------------------------------------- zone record
ZONE_REC_SIZE = 1024
Z_START, Z_SPANNED, Z_PRESENT, Z_MANAGED = 0, 8, 16, 24
Z_WMARK = 32                          # + 8 * WMARK_* (min, low, high, promo)
Z_WMARK_MIN, Z_WMARK_LOW, Z_WMARK_HIGH, Z_WMARK_PROMO = 32, 40, 48, 56
Z_LOWMEM_RESERVE = 64                 # + 8 * zone_idx
Z_LOCK_SLOT, Z_NID, Z_ZONE_IDX, Z_PCP_HIGH, Z_PCP_BATCH = 88, 96, 104, 112, 120
Z_NR_FREE_PAGES, Z_NR_RESERVED_HIGHATOMIC, Z_NR_FREE_HIGHATOMIC = 128, 136, 144
Z_FREE_AREA = 192
FA_NR_FREE = 0
FA_LISTS = 8                          # + 8 * mt: head u32, tail u32
FA_SIZE = FA_LISTS + 8 * MIGRATE_TYPES
assert Z_FREE_AREA + (MAX_ORDER_LIMIT + 1) * FA_SIZE <= ZONE_REC_SIZE

# ---------------------------------------------------------------- per_cpu_pages record
PAGE_ALLOC_COSTLY_ORDER = 3
NR_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
PCP_REC_SIZE = 192
PCP_STATE, PCP_COUNT, PCP_HIGH, PCP_BATCH = 0, 8, 16, 24
PCP_LISTS = 64
PCP_IDLE, PCP_BUSY, PCP_OFFLINE = 0, 1, 2
assert PCP_LISTS + NR_PCP_LISTS * 8 <= PCP_REC_SIZE and PCP_REC_SIZE % CACHE_LINE == 0

# ---------------------------------------------------------------- per-CPU statistics
(EV_PGALLOC_FAIL, EV_ALLOC_WARN, EV_PGFREE, EV_PCP_REFILL, EV_PCP_DRAIN, EV_PGALLOC,
 EV_SLOWPATH, EV_CLAIM, EV_STEAL) = range(9)
EV_NAMES = ("pgalloc_fail", "alloc_warn", "pgfree", "pcp_refill", "pcp_drain", "pgalloc",
            "allocstall_slowpath", "pgblock_claim", "pgblock_steal")
NR_MM_EVENTS = 16
NUMA_HIT, NUMA_MISS, NUMA_FOREIGN, NUMA_INTERLEAVE_HIT, NUMA_LOCAL, NUMA_OTHER = range(6)
NUMA_NAMES = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node")
STAT_NUMA = NR_MM_EVENTS              # in u64 units


ZS_HIT_LOCAL, ZS_HIT_OTHER, ZS_MISS_LOCAL, ZS_MISS_OTHER, ZS_PAGES_EXTRA = range(5)
ZS_WORDS = 5                          # u64 words per zone in the mmstat record


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


def setup_lowmem_reserve(managed: list[int]) -> list[list[int]]:
    """lowmem_reserve[i][j] for the zones of ONE node (setup_per_zone_lowmem_reserve)."""
    nz = len(managed)
    res = [[0] * nz for _ in range(nz)]
    for i in range(nz):
        ratio = LOWMEM_RESERVE_RATIO[i]
        if not ratio or not managed[i]:
            continue
        acc = 0
        for j in range(i + 1, nz):
            acc += managed[j]
            res[i][j] = acc // ratio
    return res


def zone_batchsize(managed: int) -> int:
    """mm/page_alloc.c:zone_batchsize(), scaled for small zones.

    Linux: b = min(managed >> 12, 64) (zones below 8 MiB get batch 1, a useless PCP).
    Here zones below 64 MiB use b = min(managed >> 7, 8) instead, so a 16 MiB test
    arena still batches (batch 7); from 64 MiB on the formula is Linux's.
    """
    b = min(managed >> 12, 64)
    if b < 16:
        b = max(b, min(managed >> 7, 8))
    if b <= 1:
        return 1
    b = b + b // 2
    return (1 << (b.bit_length() - 1)) - 1


def zone_highsize(low_wmark: int, managed: int, batch: int, nr_cpus_local: int, fraction: int = 0) -> int:
    """mm/page_alloc.c:zone_highsize(): per-CPU share of the LOW mark (fraction 0)."""
    total = low_wmark if fraction == 0 else managed // fraction
    return max(total // max(1, nr_cpus_local), batch * 4)


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
    return [int(sum(s[base + z * ZS_WORDS : base + (z + 1) * ZS_WORDS])) for z in range(nr_nodes * MAX_NR_ZONES)]


_ = (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL)
