"""The "reclaim" section: reclaim's parameters and every shared record it keeps.

Models: include/linux/mmzone.h (struct lruvec, struct lru_gen_folio, pglist_data's
kswapd fields), include/linux/swap.h (swap_info_struct, swap_cluster_info), the 6.18
swap table (one word per slot: empty, a folio, or a shadow), mm/zsmalloc.c's size
classes.  Unit: one arena; offsets are fixed at boot (reclaim_init) from the config's
"reclaim" table (the scenario's [reclaim], defaults in reclaim_params).

Section map (byte offsets from the section start)::

    0      header (HDR_SIZE): parameters, lock-class ids, kthread CPUs and control
           words, the swap device header and cluster lists, ZMM statistics, the last
           OOM report (text)
    LRUVEC one record per node (LRUVEC_SIZE): lru_lock, 13 lists, MGLRU sequence
           numbers, timestamps and refault statistics, kswapd's wake word and state
           (the watermark boost kswapd works off is the zones' watermark_boost, in
           mmzones: pmm/mmzone.py)
    PCPU   one record per CPU (PCPU_SIZE): its lru_add folio batch (owner only), its
           current swap cluster (owner only)
    LRUID  one byte per pfn: which list a PG_lru folio is linked on (under lru_lock)
    CLUS   one record per swap cluster (CLUSTER_REC): &ci->lock, used slots, list
    SMAP   u32 per swap slot: the swap_map count | SWAP_HAS_CACHE (under &ci->lock)
    STAB   u64 per slot: the swap table entry (0, a folio pfn << 2, or a shadow value)
    SZMM   u64 per slot: the ZMM handle of a slot stored compressed (0: none)
    SZLRU  2 x u32 per slot: the ZMM pool's LRU links (under &zmm->lock)
    ZCLS   one record per ZMM size class (ZCLASS_REC)

Lists (head u32, tail u32, count u64; links in struct page next/prev, NIL-terminated):
0..4 the classic LRU lists in enum lru_list order (inactive_anon, active_anon,
inactive_file, active_file, unevictable); 5 + gen * 2 + type the MGLRU lists
(type 0 anon, 1 file; gen = seq % MAX_NR_GENS).

Folio flags used (mm/pmm/page.py): PG_lru, PG_active (classic), PG_referenced,
PG_workingset, PG_swapcache, PG_swapbacked, PG_reclaim (PG_readahead on swap-cache
folios), PG_locked, PG_dirty, PG_writeback; bits 20-22 the MGLRU generation + 1 (0 = not
on an MGLRU list), bits 23-24 the tier refs (LRU_REFS).  Flags of folios other CPUs can
see change with atomic fetch_or32 / fetch_and32 / cas32 only.
"""

from __future__ import annotations

import os
from typing import Any

from aerosync.arena.layout import SectionSpec, align_up
from aerosync.params import CACHE_LINE, PAGE_SIZE

__all__ = ["reclaim_params", "reclaim_sections", "reclaim_ready", "RMAGIC", "Off", "default_swap_path",
           "nr_swap_slots", "pcpu_batch_pfns"]

RMAGIC = 0x4D49_414C_4345_5241            # "ARECLAIM"
HDR_SIZE = 4 * PAGE_SIZE
LRUVEC_SIZE = 1024
PCPU_SIZE = 256
CLUSTER_REC = 32
ZCLASS_REC = 64
SWAPFILE_CLUSTER = 512                    # slots per cluster (HPAGE_PMD_NR)
NR_ZS_CLASSES = 255                       # 32 .. 4096 in steps of 16
ZS_MIN_ALLOC = 32
ZS_CLASS_DELTA = 16
OOM_TEXT_OFF, OOM_TEXT_MAX = PAGE_SIZE, 3 * PAGE_SIZE

# ---- header fields (u64 each)
(H_MAGIC, H_LRU_MODE, H_SWAPPINESS, H_CLS_LRU, H_CLS_SI, H_CLS_CI, H_CLS_ZMM, H_NR_NODES, H_NR_CPUS,
 H_KT_BASE, H_NR_KT, H_KT_STOP, H_FLUSH_WAKE, H_MIN_TTL, H_PAGE_CLUSTER, H_DIRTY_RATIO, H_DIRTY_BG_RATIO,
 H_DIRTY_WB_CS, H_DIRTY_EXPIRE_CS, H_OOM_KILL, H_ZMM_FLAGS, H_ZMM_COMP, H_ZMM_MAX_PAGES, H_ZMM_ACCEPT_PAGES,
 H_OOM_LOCK, H_OOM_KILLS, H_OOM_TEXT_LEN, H_SWAP_SLOTS, H_SWAP_CLUSTERS, H_SWAP_FLAGS, H_SWAP_INUSE,
 H_SI_LOCK, H_CL_FREE, H_CL_FREE_T, H_CL_FREE_N, H_CL_NONFULL, H_CL_NONFULL_T, H_CL_NONFULL_N, H_CL_FULL,
 H_CL_FULL_T, H_CL_FULL_N, H_CL_FRAG, H_CL_FRAG_T, H_CL_FRAG_N, H_SWAP_PRIO, H_ZMM_STORED, H_ZMM_POOL_PAGES,
 H_ZMM_REJ_POOR, H_ZMM_REJ_ALLOC, H_ZMM_REJ_LIMIT, H_ZMM_WB, H_ZMM_BYTES, H_ZMM_LIMIT_HIT, H_ZMM_LRU_HEAD,
 H_ZMM_LRU_TAIL, H_ZMM_LOCK, H_ZMM_FULL, H_ZMM_THRESHOLD, H_WB_RUNS, H_DIRTY_THRESH, H_BG_THRESH,
 H_THROTTLED, H_PAUSE_NS, H_SWAP_PATH) = (8 * i for i in range(64))
SWAP_PATH_MAX = 512
H_ZMM_FREEING = H_SWAP_PATH + SWAP_PATH_MAX     # a zspage being freed (zmm.py "Crash tolerance")
H_END = H_ZMM_FREEING + 8
assert H_END <= OOM_TEXT_OFF

LRU_CLASSIC, LRU_MGLRU = 0, 1
SWP_USED, SWP_WRITEOK, SWP_GHOST = 1, 2, 4      # GHOST: no backing file (ZMM only)
ZMM_ON, ZMM_WRITEBACK = 1, 2
COMPRESSORS = ("lz4", "zstd")

# ---- lruvec fields
NR_LISTS = 13
LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE, LRU_UNEVICTABLE = range(5)
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
MG_LIST0 = 5
L_LOCK, L_LISTS = 0, 16
L_MAX_SEQ, L_MIN_SEQ = 224, 232                      # min_seq[type] at 232 + 8 * type
L_TIMESTAMPS = 248                                   # [MAX_NR_GENS]
L_AVG_REFAULTED, L_AVG_TOTAL = 280, 344              # [type][tier]
L_REFAULTED, L_EVICTED, L_PROTECTED = 408, 536, 664  # [hist][type][tier]
L_NONRES_AGE = 792
L_KSWAPD_WAIT, L_KSWAPD_ORDER, L_KSWAPD_HZ, L_KSWAPD_FAILURES, L_KSWAPD_ACTIVE = 800, 808, 816, 824, 832
L_ANON_COST, L_FILE_COST = 840, 848
L_KSWAPD_RECLAIMED, L_KSWAPD_RUNS, L_KSWAPD_NS = 856, 864, 872
L_KSWAPD_BOOSTED, L_WALK_CURSOR, L_AGING = 880, 888, 896   # boosted: balance_pgdat runs owning a zone boost
L_STEAL_TOTAL = 904

# ---- per-CPU fields
PC_BATCH_N, PC_BATCH = 0, 8                          # count, then FOLIO_BATCH u32 pfns
# PAGEVEC_SIZE of v6.19 (31 since v6.10: "31 pointers + header align the folio_batch
# structure to a power of two"): a fault-heavy CPU takes lru_lock once per 31 new folios
# and once per 31 freed ones, the lock two faulting CPUs share per node
FOLIO_BATCH = 31
PC_CLUSTER, PC_CL_NEXT = 136, 144                   # current swap cluster + 1, next offset in it
PC_DIRTIED = 152

# ---- cluster record
CI_LOCK, CI_COUNT, CI_FLAGS, CI_NEXT, CI_PREV = 0, 8, 12, 16, 20
CL_NONE, CL_FREE, CL_NONFULL, CL_FULL, CL_FRAG = 0, 1, 2, 3, 4
CL_HEADS = {CL_FREE: H_CL_FREE, CL_NONFULL: H_CL_NONFULL, CL_FULL: H_CL_FULL, CL_FRAG: H_CL_FRAG}

# ---- ZMM class record
ZC_SIZE, ZC_PAGES, ZC_OBJS, ZC_PARTIAL, ZC_NR_ZSPAGES, ZC_INUSE = 0, 4, 8, 16, 24, 32

SWAP_HAS_CACHE = 1 << 30
SWAP_COUNT_MASK = SWAP_HAS_CACHE - 1
SWAP_MAP_BAD = 1 << 31


class Off:
    """Absolute arena offsets of the section's parts (computed once per handle)."""

    def __init__(self, arena: Any) -> None:
        base = arena.off("reclaim")
        q = arena.u64
        self.base = base
        self.nr_nodes = q[(base + H_NR_NODES) >> 3]
        self.nr_cpus = q[(base + H_NR_CPUS) >> 3]
        self.nr_slots = q[(base + H_SWAP_SLOTS) >> 3]
        self.nr_clusters = q[(base + H_SWAP_CLUSTERS) >> 3]
        nr_pages = int(arena.config["nr_pages"])
        parts = _parts(self.nr_nodes, self.nr_cpus, nr_pages, self.nr_slots, self.nr_clusters)
        for name, off in parts.items():
            setattr(self, name, base + off)

    def lruvec(self, nid: int) -> int:
        return self.lruvec0 + nid * LRUVEC_SIZE

    def pcpu(self, cpu: int) -> int:
        return self.pcpu0 + cpu * PCPU_SIZE

    def hdr(self, field: int) -> int:
        return self.base + field


def _parts(nr_nodes: int, nr_cpus: int, nr_pages: int, nr_slots: int, nr_clusters: int) -> dict[str, int]:
    off = HDR_SIZE
    out = {}
    for name, size in (("lruvec0", nr_nodes * LRUVEC_SIZE), ("pcpu0", nr_cpus * PCPU_SIZE),
                       ("lruid", nr_pages), ("clus", nr_clusters * CLUSTER_REC), ("smap", 4 * nr_slots),
                       ("stab", 8 * nr_slots), ("szmm", 8 * nr_slots), ("szlru", 8 * nr_slots),
                       ("zcls", NR_ZS_CLASSES * ZCLASS_REC), ("end", 0)):
        off = align_up(off, CACHE_LINE)
        out[name] = off
        off += size
    return out


def reclaim_params(config: dict[str, Any]) -> dict[str, Any]:
    """The [reclaim] configuration (config key "reclaim") with defaults; ValueError names
    a bad key (the scenario parser checked the types)."""
    r = dict(config.get("reclaim") or {})
    p = {
        "lru": r.get("lru", "mglru"),
        "swappiness": int(r.get("swappiness", 60)),
        "swap_file": str(r.get("swap_file", "")),
        "swap_size": int(r.get("swap_size", 0)),
        "zmm": bool(r.get("zmm", True)),
        "zmm_compressor": r.get("zmm_compressor", "lz4"),
        "zmm_max_pool_percent": int(r.get("zmm_max_pool_percent", 20)),
        "zmm_accept_threshold_percent": int(r.get("zmm_accept_threshold_percent", 90)),
        "zmm_threshold_percent": int(r.get("zmm_threshold_percent", 75)),
        "zmm_writeback": bool(r.get("zmm_writeback", True)),
        "dirty_ratio": int(r.get("dirty_ratio", 20)),
        "dirty_background_ratio": int(r.get("dirty_background_ratio", 10)),
        "dirty_writeback_centisecs": int(r.get("dirty_writeback_centisecs", 500)),
        "dirty_expire_centisecs": int(r.get("dirty_expire_centisecs", 3000)),
        "kswapd": bool(r.get("kswapd", True)),
        "flusher": bool(r.get("flusher", True)),
        "min_ttl_ms": int(r.get("min_ttl_ms", 0)),
        "page_cluster": int(r.get("page_cluster", 3)),
        "oom_kill": bool(r.get("oom_kill", True)),
        "kthread_cpu": int(r.get("kthread_cpu", -1)),     # first kthread CPU (the machine builder sets it)
    }
    checks = {
        "lru": (p["lru"] in ("mglru", "classic"), '"mglru" or "classic"'),
        "swappiness": (0 <= p["swappiness"] <= 200, "0..200"),
        "swap_size": (0 <= p["swap_size"] <= 1 << 40 and p["swap_size"] % PAGE_SIZE == 0,
                      "0 or a multiple of 4096 up to 1 TiB"),
        "zmm_compressor": (p["zmm_compressor"] in COMPRESSORS, '"lz4" or "zstd"'),
        "zmm_max_pool_percent": (1 <= p["zmm_max_pool_percent"] <= 100, "1..100"),
        "zmm_accept_threshold_percent": (1 <= p["zmm_accept_threshold_percent"] <= 100, "1..100"),
        "zmm_threshold_percent": (10 <= p["zmm_threshold_percent"] <= 100, "10..100"),
        "dirty_ratio": (1 <= p["dirty_ratio"] <= 100, "1..100"),
        "dirty_background_ratio": (0 <= p["dirty_background_ratio"] <= 100, "0..100"),
        "dirty_writeback_centisecs": (0 <= p["dirty_writeback_centisecs"] <= 100_000, "0..100000"),
        "dirty_expire_centisecs": (0 <= p["dirty_expire_centisecs"] <= 1_000_000, "0..1000000"),
        "min_ttl_ms": (0 <= p["min_ttl_ms"] <= 100_000, "0..100000"),
        "page_cluster": (0 <= p["page_cluster"] <= 6, "0..6"),
    }
    for key, (ok, allowed) in checks.items():
        if not ok:
            raise ValueError(f"reclaim.{key} = {p[key]!r}: allowed {allowed}")
    return p


def nr_swap_slots(p: dict[str, Any]) -> int:
    """Slots of the swap device: the file's pages (slot 0 is the header page, as
    mkswap's); a ZMM-only machine gets a ghost device of 4 x RAM... sized by the caller."""
    return p["swap_size"] // PAGE_SIZE


def reclaim_sections(config: dict[str, Any]) -> list[SectionSpec]:
    p = reclaim_params(config)
    from aerosync.mm.pmm.init import sim_of

    nr_nodes = sim_of(config).nr_nodes
    nr_cpus = int(config["nr_cpus"])
    slots = nr_swap_slots(p)
    clusters = (slots + SWAPFILE_CLUSTER - 1) // SWAPFILE_CLUSTER
    size = _parts(nr_nodes, nr_cpus, int(config["nr_pages"]), slots, clusters)["end"]
    return [SectionSpec("reclaim", align_up(size, PAGE_SIZE))]


def reclaim_ready(arena: Any) -> bool:
    return "reclaim" in arena.sections and arena.atomic.load64(arena.off("reclaim") + H_MAGIC) == RMAGIC


def pcpu_batch_pfns(arena: Any) -> list[int]:
    """The folios every CPU's lru_add batch holds (one reference each; read on a quiescent
    machine: the checkers count these references instead of requiring a drain)."""
    if not reclaim_ready(arena):
        return []
    off = Off(arena)
    q, u32 = arena.u64, arena.u32
    out: list[int] = []
    for c in range(off.nr_cpus):
        b = off.pcpu(c)
        n = min(int(q[(b + PC_BATCH_N) >> 3]), FOLIO_BATCH)
        out.extend(int(u32[((b + PC_BATCH) >> 2) + i]) for i in range(n))
    return out


def default_swap_path(arena: Any) -> str:
    """A swap file for this arena in the temporary directory (removed at swapoff)."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"{arena.name}.swap")
