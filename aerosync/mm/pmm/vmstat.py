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

Names (`vmstat()`): Linux's /proc/vmstat names where the counter exists in Linux
(nr_free_pages, numa_*, pgalloc_<zone>, pgfree); events Linux has no vmstat name for are
printed as `aerosync_<event>` (see AEROSYNC_EVENTS) so no script mistakes them for a
kernel figure.  `pgalloc_<zone>` (pages, 2^order per allocation) is derived from the
per-zone NUMA categories (allocations) plus the zone's extra-pages word (mmzone.py: one
increment per order-0 allocation, two for higher orders), so EV_PGALLOC is not printed.
The numa_* figures count allocations, whatever their order, as Linux's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.gfp import MAX_NR_ZONES, MIGRATE_TYPES, ZONE_NAMES
from aerosync.mm.pmm.page import PG_buddy
from aerosync.params import PAGE_META_SIZE

__all__ = [
    "MMStat", "MMGeometry", "geometry", "mm_ready", "fold", "vmstat", "AEROSYNC_EVENTS",
    "VMSTAT_NUMA_NAMES", "ZONE_NUMA_NAMES", "free_blocks", "pageblock_counts", "zone_pcp",
    "PCP_ONLINE_STATES",
]

# numastat item -> /proc/vmstat (and zoneinfo) name (linux-mm.md 4.4)
VMSTAT_NUMA_NAMES = {
    "numa_hit": "numa_hit", "numa_miss": "numa_miss", "numa_foreign": "numa_foreign",
    "interleave_hit": "numa_interleave", "local_node": "numa_local", "other_node": "numa_other",
}
# the NUMA events this model counts per zone (numa_foreign and interleave_hit are per node)
ZONE_NUMA_NAMES = ("numa_hit", "numa_miss", "numa_local", "numa_other")

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
        zone_numa.append({"numa_hit": hl + ho, "numa_miss": ml + mo, "numa_local": hl + ml, "numa_other": ho + mo})
        zone_pgalloc.append(hl + ho + ml + mo + int(c[Z.ZS_PAGES_EXTRA]))
    node = []
    for nid in range(g.nr_nodes):
        d = {name: int(s[Z.STAT_NUMA + nid * 8 + i]) for i, name in enumerate(Z.NUMA_NAMES)}
        for zi in range(MAX_NR_ZONES):
            zn = zone_numa[nid * MAX_NR_ZONES + zi]
            d["numa_hit"] += zn["numa_hit"]
            d["numa_miss"] += zn["numa_miss"]
            d["local_node"] += zn["numa_local"]
            d["other_node"] += zn["numa_other"]
        node.append(d)
    return MMStat(events=events, node=node, zone_numa=zone_numa, zone_pgalloc=zone_pgalloc)


def _zone_u64(arena: Any, zid: int, field: int) -> int:
    return arena.u64[(Z.zone_off(arena, zid) + field) >> 3]


def vmstat(arena: Any, st: MMStat | None = None) -> dict[str, int]:
    """/proc/vmstat figures in the kernel's order (zone stats, NUMA events, vm events),
    then the aerosync_ events Linux has no name for."""
    g = geometry(arena)
    st = st or fold(arena)
    out = {"nr_free_pages": sum(_zone_u64(arena, z, Z.Z_NR_FREE_PAGES) for z in range(g.nr_zones))}
    for item, name in VMSTAT_NUMA_NAMES.items():
        out[name] = sum(n[item] for n in st.node)
    for zi, zname in enumerate(ZONE_NAMES):
        out[f"pgalloc_{zname.lower()}"] = sum(st.zone_pgalloc[n * MAX_NR_ZONES + zi] for n in range(g.nr_nodes))
    out["pgfree"] = st.events["pgfree"]
    for name, v in st.events.items():
        if name not in _KERNEL_EVENTS and name not in _SKIPPED_EVENTS:
            out[f"aerosync_{name}"] = v
    return out


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
    """Every CPU's per_cpu_pages of zone `zid`: {cpu, state, count, high, batch}."""
    g = geometry(arena)
    q = arena.u64
    out = []
    for cpu in range(g.nr_cpus):
        po = Z.pcp_off(arena, cpu, zid, g.nr_zones) >> 3
        out.append({"cpu": cpu, "state": q[po + Z.PCP_STATE // 8], "count": q[po + Z.PCP_COUNT // 8],
                    "high": q[po + Z.PCP_HIGH // 8], "batch": q[po + Z.PCP_BATCH // 8]})
    return out
