"""Folded statistics of the memory manager: what /proc's mm views print, as numbers.

Models: mm/vmstat.c (sum_vm_events / global_zone_page_state fold-on-read, vmstat_text
order, frag_show / pagetypeinfo_show* counting, zone_numa_event_state).  Unit: a
snapshot of the whole arena; procfs.py formats it, this module only counts.

Every reader here is lock-free and read-only.  On a live run the figures are a racy
snapshot, like /proc's: each 8-byte word is read untorn (aligned u64 loads), but two
words may come from different instants.  One `fold()` reads the per-CPU mmstat
records once, so every figure derived from it (numastat, vmstat, per-zone NUMA events)
is consistent with the others; mmzone.numastat/vm_events/zone_pgalloc each fold
separately, which is fine for one figure and not for a view that prints several.

Free-block counts per (zone, migratetype, order) come from struct page, not from the
free lists: every free block's head carries PG_buddy, its order and the migratetype of
its list in word0 (page.py), so one vectorised pass over word0 gives what
pagetypeinfo_showfree_print counts by walking lists -- without the zone lock the kernel
takes and without following links another CPU may be rewriting.  word0 is read as one
u64 per page, so flags, order and migratetype of a page always agree.

Names and order (`vmstat()`): the whole v6.19 /proc/vmstat sequence (mm/vmstat.c
vmstat_text): the zone items (ZONE_STAT_NAMES), the NUMA events, the node items
(vm_event.NODE_STAT_NAMES, folded from the per-CPU deltas in the "vmevents" section),
the vm_stat items (dirty limits, memmap pages), the vm events (vm_event.VM_EVENT_NAMES,
with pgalloc_<zone> and pgfree from the page allocator's mmstat record in their kernel
places), and the deprecated "nr_unstable 0" Linux still appends.  Events Linux has no
vmstat name for follow as `aerosync_<event>` (see AEROSYNC_EVENTS) so no script mistakes
them for a kernel figure.  `pgalloc_<zone>` (pages, 2^order per allocation) is derived
from the per-zone NUMA categories (allocations) plus the zone's extra-pages word
(mmzone.py: one increment per order-0 allocation, two for higher orders), so EV_PGALLOC
is not printed.  The numa_* figures count allocations, whatever their order, as Linux's
do.  Items no subsystem provides yet print what Linux prints without them (0); the
LRU-derived zone items take the node's LRU sizes (zone_stat_values says how).

meminfo_values() / node_meminfo_values() are /proc/meminfo and
/sys/devices/system/node/nodeN/meminfo as numbers (fs/proc/meminfo.c,
drivers/base/node.c, mm/show_mem.c:si_mem_available): everything the kernel derives
from the counters above.  What other subsystems own (swap, vmalloc, hugetlb, committed
memory, zswap) comes from MEMINFO_SOURCES: a subsystem with an arena section registers
`MEMINFO_SOURCES[section] = fn(arena) -> {meminfo field: kB}`; without one the field
is what a kernel without that feature prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import MAX_NR_ZONES, MIGRATE_TYPES, ZONE_NAMES
from aerosync.mm.pmm.page import PG_buddy
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = [
    "MMStat", "MMGeometry", "geometry", "mm_ready", "fold", "vmstat", "AEROSYNC_EVENTS",
    "VMSTAT_NUMA_NAMES", "ZONE_NUMA_NAMES", "ZONE_STAT_NAMES", "VM_STAT_NAMES", "THP_UNIT_ITEMS",
    "free_blocks", "pageblock_counts", "zone_pcp", "PCP_ONLINE_STATES", "zone_stat_values",
    "node_stat_values", "global_dirty_limits", "meminfo_values", "node_meminfo_values", "MEMINFO_SOURCES",
    "VMALLOC_TOTAL_KB",
]

# numastat item -> /proc/vmstat (and zoneinfo) name (linux-mm.md 4.4)
VMSTAT_NUMA_NAMES = {
    "numa_hit": "numa_hit", "numa_miss": "numa_miss", "numa_foreign": "numa_foreign",
    "interleave_hit": "numa_interleave", "local_node": "numa_local", "other_node": "numa_other",
}
# enum numa_stat_item, per zone, in zoneinfo / vmstat order
ZONE_NUMA_NAMES = ("numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other")
# enum zone_stat_item as a v6.18/6.19 x86-64 kernel prints it (CONFIG_ZSMALLOC, no
# CONFIG_UNACCEPTED_MEMORY; nr_bounce is gone since 6.18)
ZONE_STAT_NAMES = ("nr_free_pages", "nr_free_pages_blocks", "nr_zone_inactive_anon", "nr_zone_active_anon",
                   "nr_zone_inactive_file", "nr_zone_active_file", "nr_zone_unevictable", "nr_zone_write_pending",
                   "nr_mlock", "nr_zspages", "nr_free_cma")
# enum vm_stat_item (system-wide)
VM_STAT_NAMES = ("nr_dirty_threshold", "nr_dirty_background_threshold", "nr_memmap_pages", "nr_memmap_boot_pages")
# node items counted in pages, printed in THP units (vmstat_item_print_in_thp)
THP_UNIT_ITEMS = frozenset({"nr_anon_transparent_hugepages", "nr_file_hugepages", "nr_shmem_hugepages",
                            "nr_shmem_pmdmapped", "nr_file_pmdmapped"})
_LRU_ZONE_ITEMS = (("nr_zone_inactive_anon", "nr_inactive_anon"), ("nr_zone_active_anon", "nr_active_anon"),
                   ("nr_zone_inactive_file", "nr_inactive_file"), ("nr_zone_active_file", "nr_active_file"),
                   ("nr_zone_unevictable", "nr_unevictable"))
HPAGE_PMD_NR = 1 << Z.HPAGE_PMD_ORDER
VMALLOC_TOTAL_KB = (32 << 30) - 1          # x86-64 4-level VMALLOC_END - VMALLOC_START + 1 (32 TiB) >> 10

# EV_* events that Linux's /proc/vmstat has no name for: printed with an aerosync_ prefix.
_KERNEL_EVENTS = {"pgfree": "pgfree"}
_SKIPPED_EVENTS = {"pgalloc"}          # derived per zone as pgalloc_<zone>
AEROSYNC_EVENTS = tuple(f"aerosync_{n}" for n in Z.EV_NAMES if n not in _KERNEL_EVENTS and n not in _SKIPPED_EVENTS)

PCP_ONLINE_STATES = (Z.PCP_IDLE, Z.PCP_BUSY)


@dataclass(frozen=True)
class MMGeometry:
    """The facts mm_init fixed in the mmzones header."""

    nr_pages: int
    max_order: int
    pb_order: int
    nr_nodes: int
    nr_zones: int
    nr_cpus: int


def mm_ready(arena: Any) -> bool:
    """True when the arena has mm sections and mm_init has finished (magic written last)."""
    if "mmzones" not in arena.sections:
        return False
    return arena.atomic.load64(arena.off("mmzones") + Z.G_MAGIC) == Z.MM_MAGIC


def geometry(arena: Any) -> MMGeometry:
    q = arena.u64
    h = arena.off("mmzones") >> 3
    return MMGeometry(nr_pages=q[h + Z.G_NR_PAGES // 8], max_order=q[h + Z.G_MAX_ORDER // 8],
                      pb_order=q[h + Z.G_PB_ORDER // 8], nr_nodes=q[h + Z.G_NR_NODES // 8],
                      nr_zones=q[h + Z.G_NR_ZONES // 8], nr_cpus=q[h + Z.G_NR_CPUS // 8])


@dataclass(frozen=True)
class MMStat:
    """One fold of every CPU's mmstat record.

    events      EV_NAMES -> pages/events summed over CPUs
    node        per node: numastat items with the kernel's meanings (mmzone.NUMA_NAMES),
                in allocations
    zone_numa   per zone id: ZONE_NUMA_NAMES -> allocations (numa_hit/miss on the zone
                that supplied them, numa_local/other by the allocating CPU's node)
    zone_pgalloc per zone id: pages allocated from it
    """

    events: dict[str, int]
    node: list[dict[str, int]]
    zone_numa: list[dict[str, int]]
    zone_pgalloc: list[int]


def fold(arena: Any) -> MMStat:
    """Sum the per-CPU mmstat records once (vmstat's fold-on-read) and derive every figure."""
    g = geometry(arena)
    words = Z.stat_rec_size(g.nr_nodes) // 8
    a = arena.array("mmstat", np.uint64, count=g.nr_cpus * words)
    try:
        s = a.reshape(g.nr_cpus, words).sum(axis=0, dtype=np.uint64).tolist()
    finally:
        del a
    events = {name: int(s[i]) for i, name in enumerate(Z.EV_NAMES)}
    zb = Z.STAT_NUMA + g.nr_nodes * 8
    zone_numa, zone_pgalloc = [], []
    for zid in range(g.nr_zones):
        c = s[zb + zid * Z.ZS_WORDS : zb + (zid + 1) * Z.ZS_WORDS]
        hl, ho, ml, mo = (int(c[Z.ZS_HIT_LOCAL]), int(c[Z.ZS_HIT_OTHER]), int(c[Z.ZS_MISS_LOCAL]),
                          int(c[Z.ZS_MISS_OTHER]))
        zone_numa.append({"numa_hit": hl + ho, "numa_miss": ml + mo, "numa_foreign": int(c[Z.ZS_FOREIGN]),
                          "numa_interleave": int(c[Z.ZS_INTERLEAVE]), "numa_local": hl + ml,
                          "numa_other": ho + mo})
        zone_pgalloc.append(hl + ho + ml + mo + int(c[Z.ZS_PAGES_EXTRA]))
    node = []
    for nid in range(g.nr_nodes):
        # numastat items counted per node (MM.count_numa_event without a zone) + the zones'
        d = {name: int(s[Z.STAT_NUMA + nid * 8 + i]) for i, name in enumerate(Z.NUMA_NAMES)}
        for zi in range(MAX_NR_ZONES):
            zn = zone_numa[nid * MAX_NR_ZONES + zi]
            d["numa_hit"] += zn["numa_hit"]
            d["numa_miss"] += zn["numa_miss"]
            d["numa_foreign"] += zn["numa_foreign"]
            d["interleave_hit"] += zn["numa_interleave"]
            d["local_node"] += zn["numa_local"]
            d["other_node"] += zn["numa_other"]
        node.append(d)
    return MMStat(events=events, node=node, zone_numa=zone_numa, zone_pgalloc=zone_pgalloc)


def _zone_u64(arena: Any, zid: int, field: int) -> int:
    return arena.u64[(Z.zone_off(arena, zid) + field) >> 3]


def node_stat_values(arena: Any) -> list[dict[str, int]]:
    """node_page_state() of every node item, per node, as /proc prints them: the per-CPU
    deltas folded (vm_event.fold_node_stats), THP items in THP units when THP is on."""
    thp = bool(arena.u64[(arena.off("mmzones") + Z.G_THP) >> 3])
    out = []
    for d in VE.fold_node_stats(arena):
        out.append({k: (v // HPAGE_PMD_NR if thp and k in THP_UNIT_ITEMS else v) for k, v in d.items()})
    return out


def zone_stat_values(arena: Any, nodes: list[dict[str, int]] | None = None) -> list[dict[str, int]]:
    """zone_page_state() of every zone item, per zone id (the subsystems' plug-in point
    for per-zone counters).

    nr_free_pages is NR_FREE_PAGES; nr_free_pages_blocks the free pages in blocks of
    pageblock order or more (account_freepages), from free_area.  No subsystem keeps
    LRU sizes per zone yet: the node's LRU items (nr_inactive_anon ...) and write-pending
    pages (nr_dirty + nr_writeback) are reported on the node's highest populated zone,
    where user memory comes from (GFP_HIGHUSER_MOVABLE prefers it), so that each zone
    item summed over a node's zones equals the node item, as in Linux.  nr_mlock,
    nr_zspages and nr_free_cma are 0 (no mlock, ZMM, CMA counters exist yet)."""
    g = geometry(arena)
    nodes = nodes if nodes is not None else VE.fold_node_stats(arena)
    out = []
    for zid in range(g.nr_zones):
        info = Z.zone_info(arena, zid)
        blocks = sum(n << o for o, n in enumerate(info["nr_free"]) if o >= g.pb_order)
        d = dict.fromkeys(ZONE_STAT_NAMES, 0)
        d["nr_free_pages"] = info["nr_free_pages"]
        d["nr_free_pages_blocks"] = blocks
        out.append(d)
    for nid in range(g.nr_nodes):
        zids = [nid * MAX_NR_ZONES + zi for zi in range(MAX_NR_ZONES)
                if _zone_u64(arena, nid * MAX_NR_ZONES + zi, Z.Z_PRESENT)]
        if not zids:
            continue
        top = out[zids[-1]]
        ns = nodes[nid]
        for zname, nname in _LRU_ZONE_ITEMS:
            top[zname] = ns[nname]
        top["nr_zone_write_pending"] = ns["nr_dirty"] + ns["nr_writeback"]
    return out


def global_dirty_limits(free: int, file_lru: int, totalreserve: int, dirty_ratio: int = 20,
                        background_ratio: int = 10) -> tuple[int, int]:
    """mm/page-writeback.c:global_dirty_limits() for the default sysctls: (threshold,
    background threshold) in pages of global_dirtyable_memory() (free pages above
    totalreserve_pages plus the file LRU); the ratios become per-PAGE_SIZE fractions
    first ((ratio * PAGE_SIZE) / 100), so 20 % is 819/4096."""
    avail = free - min(free, totalreserve) + file_lru + 1
    thresh = (dirty_ratio * PAGE_SIZE // 100) * avail // PAGE_SIZE
    bg = (background_ratio * PAGE_SIZE // 100) * avail // PAGE_SIZE
    if bg >= thresh:
        bg = thresh // 2
    return thresh, bg


def vmstat(arena: Any, st: MMStat | None = None) -> dict[str, int]:
    """/proc/vmstat in the kernel's order (module docstring), then the aerosync_ events."""
    g = geometry(arena)
    st = st or fold(arena)
    nodes = node_stat_values(arena)
    raw_nodes = VE.fold_node_stats(arena)
    zones = zone_stat_values(arena, raw_nodes)
    out: dict[str, int] = {name: sum(z[name] for z in zones) for name in ZONE_STAT_NAMES}
    for item, name in VMSTAT_NUMA_NAMES.items():
        out[name] = sum(n[item] for n in st.node)
    for name in VE.NODE_STAT_NAMES:
        out[name] = sum(n[name] for n in nodes)
    total = sum(raw_nodes[n][k] for n in range(g.nr_nodes) for k in ("nr_inactive_file", "nr_active_file"))
    thresh, bg = global_dirty_limits(out["nr_free_pages"], total,
                                     arena.u64[(arena.off("mmzones") + Z.G_TOTALRESERVE) >> 3])
    out["nr_dirty_threshold"], out["nr_dirty_background_threshold"] = thresh, bg
    out["nr_memmap_pages"] = 0
    out["nr_memmap_boot_pages"] = g.nr_pages * PAGE_META_SIZE // PAGE_SIZE
    ev = VE.fold_vm_events(arena)
    for name in VE.VM_EVENT_NAMES:
        v = ev[name]
        if name in ("pgpgin", "pgpgout"):
            v //= 2                                        # sectors -> kbytes, as vmstat_start()
        out[name] = v
        if name == "pswpout":
            for zi, zname in enumerate(ZONE_NAMES):
                out[f"pgalloc_{zname.lower()}"] = sum(st.zone_pgalloc[n * MAX_NR_ZONES + zi]
                                                      for n in range(g.nr_nodes))
            out["pgalloc_movable"] = out["pgalloc_device"] = 0     # no ZONE_MOVABLE / ZONE_DEVICE
        elif name == "pgskip_device":
            out["pgfree"] = st.events["pgfree"]
    out["nr_unstable"] = 0
    for name, v in st.events.items():
        if name not in _KERNEL_EVENTS and name not in _SKIPPED_EVENTS:
            out[f"aerosync_{name}"] = v
    return out


# ---------------------------------------------------------------- /proc/meminfo
# MEMINFO_SOURCES[section] = fn(arena) -> {field: kB}: a subsystem whose state lives in arena
# section `section` supplies these fields (swap: SwapTotal, SwapFree, SwapCached; vmalloc:
# VmallocTotal, VmallocUsed, VmallocChunk; hugetlb: HugePages_*; the VM core: Committed_AS;
# zmm: Zswap, Zswapped ...).  The plug-in point of meminfo_values(); empty until they land.
MEMINFO_SOURCES: dict[str, Any] = {}


def _meminfo_extra(arena: Any) -> dict[str, int]:
    extra: dict[str, int] = {}
    for section, fn in MEMINFO_SOURCES.items():
        if section in arena.sections:
            extra.update(fn(arena))
    return extra


def _k(pages: int) -> int:
    return pages << (PAGE_SHIFT - 10)


def meminfo_values(arena: Any) -> dict[str, int]:
    """/proc/meminfo fields (kB, except HugePages_* counts) in fs/proc/meminfo.c's order
    for an x86-64 6.19 kernel with swap, zswap and THP (no HIGHMEM, CMA, memory
    failure, unaccepted memory): si_meminfo, si_mem_available and the node items.
    Buffers is 0 (no block devices); Cached = nr_file_pages - swapcache - buffers;
    CommitLimit = (totalram - hugetlb) * overcommit_ratio 50 % + swap."""
    g = geometry(arena)
    managed = [_zone_u64(arena, z, Z.Z_MANAGED) for z in range(g.nr_zones)]
    free = sum(_zone_u64(arena, z, Z.Z_NR_FREE_PAGES) for z in range(g.nr_zones))
    low = sum(_zone_u64(arena, z, Z.Z_WMARK_LOW) + _zone_u64(arena, z, Z.Z_WMARK_BOOST) for z in range(g.nr_zones))
    reserve = arena.u64[(arena.off("mmzones") + Z.G_TOTALRESERVE) >> 3]
    raw = VE.fold_node_stats(arena)
    n = {k: sum(d[k] for d in raw) for k in VE.NODE_STAT_NAMES}
    extra = _meminfo_extra(arena)
    totalram = sum(managed)
    swapcached = n["nr_swapcached"]
    buffers = 0
    cached = max(n["nr_file_pages"] - swapcached - buffers, 0)
    pagecache = n["nr_active_file"] + n["nr_inactive_file"]
    available = free - reserve + pagecache - min(pagecache // 2, low)          # si_mem_available()
    reclaimable = n["nr_slab_reclaimable"] + n["nr_kernel_misc_reclaimable"]
    available = max(available + reclaimable - min(reclaimable // 2, low), 0)
    swap_total = extra.get("SwapTotal", 0)
    hugetlb = extra.get("Hugetlb", 0)
    out = {
        "MemTotal": _k(totalram), "MemFree": _k(free), "MemAvailable": _k(available), "Buffers": _k(buffers),
        "Cached": _k(cached), "SwapCached": _k(swapcached),
        "Active": _k(n["nr_active_anon"] + n["nr_active_file"]),
        "Inactive": _k(n["nr_inactive_anon"] + n["nr_inactive_file"]),
        "Active(anon)": _k(n["nr_active_anon"]), "Inactive(anon)": _k(n["nr_inactive_anon"]),
        "Active(file)": _k(n["nr_active_file"]), "Inactive(file)": _k(n["nr_inactive_file"]),
        "Unevictable": _k(n["nr_unevictable"]), "Mlocked": 0,
        "SwapTotal": swap_total, "SwapFree": extra.get("SwapFree", 0),
        "Zswap": extra.get("Zswap", 0), "Zswapped": extra.get("Zswapped", 0),
        "Dirty": _k(n["nr_dirty"]), "Writeback": _k(n["nr_writeback"]), "AnonPages": _k(n["nr_anon_pages"]),
        "Mapped": _k(n["nr_mapped"]), "Shmem": _k(n["nr_shmem"]), "KReclaimable": _k(reclaimable),
        "Slab": _k(n["nr_slab_reclaimable"] + n["nr_slab_unreclaimable"]),
        "SReclaimable": _k(n["nr_slab_reclaimable"]), "SUnreclaim": _k(n["nr_slab_unreclaimable"]),
        "KernelStack": n["nr_kernel_stack"], "PageTables": _k(n["nr_page_table_pages"]),
        "SecPageTables": _k(n["nr_sec_page_table_pages"]), "NFS_Unstable": 0, "Bounce": 0,
        "WritebackTmp": 0,                                  # v6.19 prints a constant 0
        "CommitLimit": (_k(totalram) - hugetlb) * 50 // 100 + swap_total,
        "Committed_AS": extra.get("Committed_AS", 0),
        "VmallocTotal": extra.get("VmallocTotal", VMALLOC_TOTAL_KB), "VmallocUsed": extra.get("VmallocUsed", 0),
        "VmallocChunk": 0, "Percpu": 0,
        "AnonHugePages": _k(n["nr_anon_transparent_hugepages"]), "ShmemHugePages": _k(n["nr_shmem_hugepages"]),
        "ShmemPmdMapped": _k(n["nr_shmem_pmdmapped"]), "FileHugePages": _k(n["nr_file_hugepages"]),
        "FilePmdMapped": _k(n["nr_file_pmdmapped"]), "Balloon": _k(n["nr_balloon_pages"]),
        "HugePages_Total": extra.get("HugePages_Total", 0), "HugePages_Free": extra.get("HugePages_Free", 0),
        "HugePages_Rsvd": extra.get("HugePages_Rsvd", 0), "HugePages_Surp": extra.get("HugePages_Surp", 0),
        "Hugepagesize": 2048, "Hugetlb": hugetlb,
    }
    out.update(_direct_map(g.nr_pages))
    return out


def _direct_map(nr_pages: int) -> dict[str, int]:
    """arch_report_meminfo() (x86-64): the direct map of the simulated RAM, 1 GiB pages
    for whole gigabytes, 2 MiB pages for the rest of it, 4 KiB pages for the tail."""
    size = nr_pages << PAGE_SHIFT
    g1 = size >> 30 << 30
    m2 = (size - g1) >> 21 << 21
    return {"DirectMap4k": (size - g1 - m2) >> 10, "DirectMap2M": m2 >> 10, "DirectMap1G": g1 >> 10}


def node_meminfo_values(arena: Any, nid: int) -> dict[str, int]:
    """/sys/devices/system/node/node<nid>/meminfo fields (kB; HugePages_* counts) in
    drivers/base/node.c:node_read_meminfo()'s order (si_meminfo_node + node items)."""
    g = geometry(arena)
    zids = range(nid * MAX_NR_ZONES, (nid + 1) * MAX_NR_ZONES)
    total = sum(_zone_u64(arena, z, Z.Z_MANAGED) for z in zids)
    free = sum(_zone_u64(arena, z, Z.Z_NR_FREE_PAGES) for z in zids)
    n = VE.fold_node_stats(arena)[nid]
    sre, sun = n["nr_slab_reclaimable"], n["nr_slab_unreclaimable"]
    _ = g
    return {
        "MemTotal": _k(total), "MemFree": _k(free), "MemUsed": _k(total - free), "SwapCached": _k(n["nr_swapcached"]),
        "Active": _k(n["nr_active_anon"] + n["nr_active_file"]),
        "Inactive": _k(n["nr_inactive_anon"] + n["nr_inactive_file"]),
        "Active(anon)": _k(n["nr_active_anon"]), "Inactive(anon)": _k(n["nr_inactive_anon"]),
        "Active(file)": _k(n["nr_active_file"]), "Inactive(file)": _k(n["nr_inactive_file"]),
        "Unevictable": _k(n["nr_unevictable"]), "Mlocked": 0,
        "Dirty": _k(n["nr_dirty"]), "Writeback": _k(n["nr_writeback"]), "FilePages": _k(n["nr_file_pages"]),
        "Mapped": _k(n["nr_mapped"]), "AnonPages": _k(n["nr_anon_pages"]), "Shmem": _k(n["nr_shmem"]),
        "KernelStack": n["nr_kernel_stack"], "PageTables": _k(n["nr_page_table_pages"]),
        "SecPageTables": _k(n["nr_sec_page_table_pages"]), "NFS_Unstable": 0, "Bounce": 0,
        "WritebackTmp": 0, "KReclaimable": _k(sre + n["nr_kernel_misc_reclaimable"]),
        "Slab": _k(sre + sun), "SReclaimable": _k(sre), "SUnreclaim": _k(sun),
        "AnonHugePages": _k(n["nr_anon_transparent_hugepages"]), "ShmemHugePages": _k(n["nr_shmem_hugepages"]),
        "ShmemPmdMapped": _k(n["nr_shmem_pmdmapped"]), "FileHugePages": _k(n["nr_file_hugepages"]),
        "FilePmdMapped": _k(n["nr_file_pmdmapped"]),
        "HugePages_Total": 0, "HugePages_Free": 0, "HugePages_Surp": 0,
    }


def _word0(arena: Any, g: MMGeometry) -> np.ndarray:
    """A private copy of every struct page's word0 (flags | order<<32 | mt<<40 | zone<<48)."""
    stride = PAGE_META_SIZE // 8
    a = arena.array("pagemeta", np.uint64, count=g.nr_pages * stride)
    try:
        return a[::stride].copy()
    finally:
        del a


def free_blocks(arena: Any) -> np.ndarray:
    """int64 [nr_zones, MIGRATE_TYPES, max_order + 1]: free buddy blocks per zone, list
    type and order, counted from the PG_buddy heads in struct page (lock-free)."""
    g = geometry(arena)
    w = _word0(arena, g)
    buddy = w[(w & PG_buddy) != 0]
    order = ((buddy >> 32) & 0xFF).astype(np.int64)
    mt = ((buddy >> 40) & 0xFF).astype(np.int64)
    zone = ((buddy >> 48) & 0xFF).astype(np.int64)
    nord = g.max_order + 1
    ok = (order < nord) & (mt < MIGRATE_TYPES) & (zone < g.nr_zones)     # a torn/odd word: not counted
    idx = (zone[ok] * MIGRATE_TYPES + mt[ok]) * nord + order[ok]
    counts = np.bincount(idx, minlength=g.nr_zones * MIGRATE_TYPES * nord)
    return counts.astype(np.int64).reshape(g.nr_zones, MIGRATE_TYPES, nord)


def pageblock_counts(arena: Any) -> np.ndarray:
    """int64 [nr_zones, MIGRATE_TYPES]: pageblocks of each migratetype per zone, counted as
    pagetypeinfo_showblockcount_print does (pfn = zone_start_pfn, step pageblock_nr_pages,
    the pageblock holding each such pfn)."""
    g = geometry(arena)
    pb = arena.array("mmpageblock", np.uint8)
    try:
        out = np.zeros((g.nr_zones, MIGRATE_TYPES), dtype=np.int64)
        for zid in range(g.nr_zones):
            start = _zone_u64(arena, zid, Z.Z_START)
            end = start + _zone_u64(arena, zid, Z.Z_SPANNED)
            if end <= start:
                continue
            types = pb[np.arange(start, end, 1 << g.pb_order) >> g.pb_order].astype(np.int64)
            types = types[types < MIGRATE_TYPES]
            out[zid] = np.bincount(types, minlength=MIGRATE_TYPES)
    finally:
        del pb
    return out


def zone_pcp(arena: Any, zid: int) -> list[dict[str, int]]:
    """Every CPU's per_cpu_pages of zone `zid`: {cpu, state, count, high, batch, high_min,
    high_max, free_count, alloc_factor} (racy reads of owner-only words, as /proc's)."""
    g = geometry(arena)
    q = arena.u64
    out = []
    for cpu in range(g.nr_cpus):
        po = Z.pcp_off(arena, cpu, zid, g.nr_zones) >> 3
        out.append({"cpu": cpu, "state": q[po + Z.PCP_STATE // 8], "count": q[po + Z.PCP_COUNT // 8],
                    "high": q[po + Z.PCP_HIGH // 8], "batch": q[po + Z.PCP_BATCH // 8],
                    "high_min": q[po + Z.PCP_HIGH_MIN // 8], "high_max": q[po + Z.PCP_HIGH_MAX // 8],
                    "free_count": q[po + Z.PCP_FREE_COUNT // 8], "alloc_factor": q[po + Z.PCP_ALLOC_FACTOR // 8]})
    return out
