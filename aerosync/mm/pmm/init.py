"""Boot-time set-up of the memory manager in a fresh arena (the coordinator runs it once).

Models: mm/mm_init.c (free_area_init, memmap_init, zone sizes), mm/page_alloc.c
(__free_pages_core at boot, setup_per_zone_wmarks, setup_per_zone_lowmem_reserve,
zone_pcp_init, build_all_zonelists).  Unit: the whole arena, before any worker runs.

Configuration keys read from arena.config (defaults in brackets):

  nr_pages               simulated RAM in 4 KiB pages (required; base layout key)
  nr_cpus                simulated CPUs (required; base layout key)
  sim                    SimTopology.to_dict() [one node holding every CPU]
  max_page_order         MAX_PAGE_ORDER, 1..15 [10]; pageblock_order = min(9, it)
  min_free_kbytes        [calculate_min_free_kbytes(total managed), Linux's formula]
  thp                    CONFIG_TRANSPARENT_HUGEPAGE enabled [True]: khugepaged's
                         set_recommended_min_free_kbytes raise of min_free_kbytes, and
                         order-9 (HPAGE_PMD_ORDER) blocks on their own PCP lists; needs
                         max_page_order >= 9 (else off)
  watermark_scale_factor [10]
  pcp_enabled            pcp_allowed_order() allocations go through per-CPU lists [True]
  pcp_batch              override every PCP's batch [zone_batchsize]
  pcp_high               fix every PCP's high (high_min = high_max, no autotune, as
                         percpu_pagelist_high_fraction does) [zone_highsize]
  pcp_autotune           "exact" | "batched" | "off" [the kernel profile's, params.py]
  kernel_profile         "aerosync" | "linux": defaults of the knobs above that differ

Boot order as Linux's init_per_zone_wmark_min + khugepaged start: min_free_kbytes from
the managed pages, watermarks, then (THP) the khugepaged raise from the pages above the
HIGH marks and the watermarks again; lowmem_reserve, totalreserve_pages; PCP batch and
high_min/high_max from the final LOW marks (zone_pcp_update).  pcp->high starts at 0
as after per_cpu_pages_init()'s memset (zoneinfo prints 0 for a PCP never used) and is
clamped into [high_min, high_max] on first use.

`mm_init` is single-process and lock-free (no worker exists yet); everything it writes
is bulk numpy.  pfn 0 is reserved (PG_reserved, refcount 1), as x86-64 reserves the
first page, so present - managed = 1 in node 0's DMA zone; with KFENCE the pool (the
last pages of memory, san/config.kfence_pool_pfns) is reserved as well.  Every other page is put on
the buddy free lists as maximal naturally aligned blocks, MIGRATE_MOVABLE (all
pageblocks start movable), lists in ascending pfn order.  Measured on the 2-core box:
1 GiB (262144 pages, two nodes) in ~0.013 s (tests/test_page_alloc.py::
test_mm_init_1gib_fast asserts < 1 s); physmem itself is never touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.arch.topology import SimTopology
from aerosync.arena.layout import SectionSpec
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.gfp import MAX_NR_ZONES, MIGRATE_MOVABLE, MIGRATE_TYPES
from aerosync.mm.pmm.page import NIL, PG_buddy, PG_reserved, page_array
from aerosync.mm.pmm.vm_event import vmevents_section
from aerosync.params import profile_default
from aerosync.sync.lockstat import lock_alloc

__all__ = ["mm_sections", "mm_init", "mm_params", "single_node_sim", "sim_of", "DEFAULT_MAX_PAGE_ORDER",
           "PAGEBLOCK_ORDER_MAX"]

DEFAULT_MAX_PAGE_ORDER = 10
PAGEBLOCK_ORDER_MAX = 9                # HUGETLB_PAGE_ORDER on x86-64


def single_node_sim(nr_cpus: int, nr_nodes: int = 1, weights: list[int] | None = None,
                    distance: list[list[int]] | None = None) -> dict[str, Any]:
    """A SimTopology dict for tests and defaults: CPUs spread in blocks over nodes."""
    q, r = divmod(nr_cpus, nr_nodes)
    cpu_to_node = [nid for nid in range(nr_nodes) for _ in range(q + (1 if nid < r else 0))]
    dist = distance or [[10 if i == j else 20 for j in range(nr_nodes)] for i in range(nr_nodes)]
    host = [c % max(1, len(__import__("os").sched_getaffinity(0))) for c in range(nr_cpus)]
    t = SimTopology(
        source=f"fake:{nr_nodes}", nr_nodes=nr_nodes, nr_cpus=nr_cpus, cpu_to_node=tuple(cpu_to_node),
        node_cpus=tuple(tuple(c for c, n in enumerate(cpu_to_node) if n == nid) for nid in range(nr_nodes)),
        distance=tuple(tuple(r) for r in dist), host_cpu=tuple(host),
        node_mem_weight=tuple(weights or [1] * nr_nodes), oversubscribed=nr_cpus > len(set(host)))
    return t.to_dict()


def sim_of(config: dict[str, Any]) -> SimTopology:
    """The simulated topology of a configuration (one node if `sim` is absent)."""
    d = config.get("sim") or single_node_sim(int(config["nr_cpus"]))
    return SimTopology.from_dict(d)


def mm_params(config: dict[str, Any]) -> dict[str, Any]:
    """Validated mm configuration with defaults applied (see the module docstring)."""
    nr_pages = int(config["nr_pages"])
    max_order = int(config.get("max_page_order", DEFAULT_MAX_PAGE_ORDER))
    if not 1 <= max_order <= Z.MAX_ORDER_LIMIT:
        raise ValueError(f"max_page_order = {max_order}: allowed 1..{Z.MAX_ORDER_LIMIT}")
    if nr_pages >= 1 << 32 or nr_pages < 64:
        raise ValueError(f"nr_pages = {nr_pages}: allowed 64..2^32-1 (pfns are u32 links)")
    sim = sim_of(config)
    autotune = str(profile_default(config, "pcp_autotune"))
    if autotune not in Z.PCP_AUTOTUNE_NAMES:
        raise ValueError(f"pcp_autotune = {autotune!r}: allowed {', '.join(Z.PCP_AUTOTUNE_NAMES)}")
    thp = config.get("thp")
    return {
        "nr_pages": nr_pages, "nr_cpus": int(config["nr_cpus"]), "sim": sim,
        "max_order": max_order, "pb_order": min(PAGEBLOCK_ORDER_MAX, max_order),
        "min_free_kbytes": config.get("min_free_kbytes"),
        "watermark_scale_factor": int(config.get("watermark_scale_factor", 10)),
        "pcp_enabled": bool(config.get("pcp_enabled", True)),
        "pcp_high": config.get("pcp_high"), "pcp_batch": config.get("pcp_batch"),
        "thp": (True if thp is None else bool(thp)) and max_order >= Z.HPAGE_PMD_ORDER,
        "pcp_autotune": Z.PCP_AUTOTUNE_NAMES.index(autotune),
    }


def mm_sections(config: dict[str, Any]) -> list[SectionSpec]:
    """The arena sections mm needs beyond the base layout (see mm/pmm/mmzone.py for each)."""
    p = mm_params(config)
    nr_nodes, nr_cpus = p["sim"].nr_nodes, p["nr_cpus"]
    if nr_cpus != p["sim"].nr_cpus:
        raise ValueError(f"nr_cpus = {nr_cpus} but the topology has {p['sim'].nr_cpus} CPUs")
    nr_zones = nr_nodes * MAX_NR_ZONES
    nr_pb = (p["nr_pages"] + (1 << p["pb_order"]) - 1) >> p["pb_order"]
    return [
        SectionSpec("mmzones", Z.MM_HDR_SIZE + nr_zones * Z.ZONE_REC_SIZE),
        SectionSpec("mmpcp", nr_cpus * nr_zones * Z.PCP_REC_SIZE),
        SectionSpec("mmstat", nr_cpus * Z.stat_rec_size(nr_nodes)),
        SectionSpec("mmpageblock", max(64, nr_pb), align=64),
        vmevents_section(nr_cpus, nr_nodes),
    ]


def _maximal_blocks(start: int, end: int, max_order: int) -> tuple[list[int], list[int]]:
    """Greedy cover of [start, end) by naturally aligned blocks of order <= max_order."""
    pfns, orders = [], []
    pfn = start
    while pfn < end:
        o = max_order
        if pfn:
            o = min(o, (pfn & -pfn).bit_length() - 1)
        while pfn + (1 << o) > end:
            o -= 1
        pfns.append(pfn)
        orders.append(o)
        pfn += 1 << o
    return pfns, orders


def mm_init(arena: Any) -> None:
    """Lay out nodes and zones, initialise every struct page, fill the free lists.

    Runs once, in the creating process, before any worker attaches.
    """
    p = mm_params(arena.config)
    sim: SimTopology = p["sim"]
    nr_pages, max_order, pb_order = p["nr_pages"], p["max_order"], p["pb_order"]
    nr_nodes, nr_cpus = sim.nr_nodes, p["nr_cpus"]
    nr_zones = nr_nodes * MAX_NR_ZONES
    q = arena.u64
    hdr = arena.off("mmzones")

    dma_end, dma32_end = Z.zone_boundaries(nr_pages)
    bounds = (0, dma_end, dma32_end, nr_pages)
    nodes = Z.node_ranges(nr_pages, sim.node_mem_weight, max_order)
    zr = []                                        # (start, end) per zid; empty: start == end
    for ns, ne in nodes:
        for zi in range(MAX_NR_ZONES):
            s, e = max(ns, bounds[zi]), min(ne, bounds[zi + 1])
            if s >= e:                               # empty zone: a point inside the node
                s = e = max(ns, min(ne, bounds[zi]))
            zr.append((s, e))

    # ---- struct pages, bulk
    pages = page_array(arena)
    pages["flags"] = 0
    pages["order"] = 0
    pages["mt"] = 0
    pages["refcount"] = 0
    pages["mapcount"] = 0
    pages["next"] = NIL
    pages["prev"] = NIL
    pages["head"] = NIL
    pages["spare"] = 0
    pages["private"] = 0
    zone_of = np.empty(nr_pages, dtype=np.uint8)
    node_of = np.empty(nr_pages, dtype=np.uint8)
    for zid, (s, e) in enumerate(zr):
        zone_of[s:e] = zid
        node_of[s:e] = zid // MAX_NR_ZONES
    pages["zone"] = zone_of
    pages["node"] = node_of
    reserved = [0]                                 # pfn 0, as x86-64 reserves page 0
    if "kfence" in arena.sections:                 # the KFENCE pool: memblock memory, never the buddy's
        from aerosync.mm.san import config as SC

        reserved += range(*SC.kfence_pool_pfns(nr_pages, SC.debug_params(arena.config)["kfence_num_objects"]))
    pages["flags"][reserved] = PG_reserved
    pages["refcount"][reserved] = 1

    pb = arena.array("mmpageblock", np.uint8)
    pb[:] = MIGRATE_MOVABLE

    # ---- free lists: maximal aligned blocks per zone, MOVABLE, ascending pfn order
    managed = []
    for zid, (s, e) in enumerate(zr):
        zoff = Z.zone_off(arena, zid)
        arena.u8[zoff : zoff + Z.ZONE_REC_SIZE] = bytes(Z.ZONE_REC_SIZE)
        fa = zoff + Z.Z_FREE_AREA
        for o in range(Z.MAX_ORDER_LIMIT + 1):       # every list head/tail NIL
            lo = (fa + o * Z.FA_SIZE + Z.FA_LISTS) >> 2
            arena.u32[lo : lo + 2 * MIGRATE_TYPES] = _nil_words(2 * MIGRATE_TYPES)
        nres = sum(1 for r in reserved if s <= r < e)
        managed.append(e - s - nres)
        q[(zoff + Z.Z_START) >> 3] = s
        q[(zoff + Z.Z_SPANNED) >> 3] = e - s
        q[(zoff + Z.Z_PRESENT) >> 3] = e - s
        q[(zoff + Z.Z_MANAGED) >> 3] = e - s - nres
        q[(zoff + Z.Z_NID) >> 3] = zid // MAX_NR_ZONES
        q[(zoff + Z.Z_ZONE_IDX) >> 3] = zid % MAX_NR_ZONES
        q[(zoff + Z.Z_LOCK_SLOT) >> 3] = lock_alloc(arena, "&zone->lock", Z.zone_name(zid))
        if e == s:
            continue
        # runs of non-reserved pfns
        cuts = sorted(r for r in reserved if s <= r < e)
        runs, a = [], s
        for r in cuts:
            if a < r:
                runs.append((a, r))
            a = r + 1
        if a < e:
            runs.append((a, e))
        bp, bo = [], []
        for a, b in runs:
            x, y = _maximal_blocks(a, b, max_order)
            bp += x
            bo += y
        bpfn = np.array(bp, dtype=np.int64)
        bord = np.array(bo, dtype=np.int64)
        pages["flags"][bpfn] = PG_buddy
        pages["order"][bpfn] = bord
        pages["mt"][bpfn] = MIGRATE_MOVABLE
        nr_free_pages = int((np.int64(1) << bord).sum())
        q[(zoff + Z.Z_NR_FREE_PAGES) >> 3] = nr_free_pages
        for o in range(max_order + 1):
            sel = bpfn[bord == o]
            n = len(sel)
            fa_o = fa + o * Z.FA_SIZE
            q[(fa_o + Z.FA_NR_FREE) >> 3] = n
            if not n:
                continue
            nxt = np.empty(n, dtype=np.uint32)
            prv = np.empty(n, dtype=np.uint32)
            nxt[:-1] = sel[1:]
            nxt[-1] = NIL
            prv[1:] = sel[:-1]
            prv[0] = NIL
            pages["next"][sel] = nxt
            pages["prev"][sel] = prv
            li = (fa_o + Z.FA_LISTS + 8 * MIGRATE_MOVABLE) >> 2
            arena.u32[li] = int(sel[0])
            arena.u32[li + 1] = int(sel[-1])
    del pages, pb, zone_of, node_of

    # ---- min_free_kbytes, watermarks (+ khugepaged raise), lowmem_reserve, pcp high/batch
    mfk = p["min_free_kbytes"]
    mfk = Z.calculate_min_free_kbytes(sum(managed)) if mfk is None else int(mfk)
    wm = Z.setup_watermarks(managed, mfk, p["watermark_scale_factor"])
    if p["thp"]:
        populated = sum(1 for m in managed if m)
        raised = Z.set_recommended_min_free_kbytes(
            mfk, populated, Z.nr_free_buffer_pages(managed, [w[2] for w in wm]), pb_order)
        if raised != mfk:
            mfk = raised
            wm = Z.setup_watermarks(managed, mfk, p["watermark_scale_factor"])
    reserves = []
    for nid in range(nr_nodes):
        reserves += Z.setup_lowmem_reserve(managed[nid * MAX_NR_ZONES : (nid + 1) * MAX_NR_ZONES])
    totalreserve = Z.calculate_totalreserve_pages(managed, [w[2] for w in wm], reserves)
    autotune = p["pcp_autotune"]
    for nid in range(nr_nodes):
        for zi in range(MAX_NR_ZONES):
            zid = nid * MAX_NR_ZONES + zi
            zoff = Z.zone_off(arena, zid)
            for w in range(4):
                q[(zoff + Z.Z_WMARK + 8 * w) >> 3] = wm[zid][w]
            for j in range(MAX_NR_ZONES):
                q[(zoff + Z.Z_LOWMEM_RESERVE + 8 * j) >> 3] = reserves[zid][j]
            batch = p["pcp_batch"] if p["pcp_batch"] is not None else Z.zone_batchsize(managed[zid])
            ncpu = len(sim.node_cpus[nid]) or nr_cpus
            if p["pcp_high"] is not None:                       # fixed high, no autotune
                high_min = high_max = int(p["pcp_high"])
            else:
                high_min = Z.zone_highsize(wm[zid][1], managed[zid], batch, ncpu)
                high_max = (Z.zone_highsize(wm[zid][1], managed[zid], batch, ncpu,
                                            Z.MIN_PERCPU_PAGELIST_HIGH_FRACTION)
                            if autotune != Z.PCP_AUTOTUNE_OFF else high_min)
            q[(zoff + Z.Z_PCP_BATCH) >> 3] = int(batch)
            q[(zoff + Z.Z_PCP_HIGH) >> 3] = int(high_min)
            q[(zoff + Z.Z_PCP_HIGH_MAX) >> 3] = int(high_max)
            for cpu in range(nr_cpus):
                po = Z.pcp_off(arena, cpu, zid, nr_zones)
                arena.u8[po : po + Z.PCP_REC_SIZE] = bytes(Z.PCP_REC_SIZE)
                q[(po + Z.PCP_BATCH) >> 3] = int(batch)
                q[(po + Z.PCP_HIGH_MIN) >> 3] = int(high_min)
                q[(po + Z.PCP_HIGH_MAX) >> 3] = int(high_max)
                q[(po + Z.PCP_FREE_THR) >> 3] = int(high_min)     # clamp(0, high_min, high_max)
                lo = (po + Z.PCP_LISTS) >> 2
                arena.u32[lo : lo + 2 * Z.NR_PCP_LISTS] = _nil_words(2 * Z.NR_PCP_LISTS)

    so, ss = arena.sections["mmstat"]
    arena.u8[so : so + ss] = bytes(ss)
    for field, val in ((Z.G_NR_PAGES, nr_pages), (Z.G_MAX_ORDER, max_order), (Z.G_PB_ORDER, pb_order),
                       (Z.G_NR_NODES, nr_nodes), (Z.G_NR_ZONES, nr_zones), (Z.G_NR_CPUS, nr_cpus),
                       (Z.G_PCP_ENABLED, int(p["pcp_enabled"])), (Z.G_MIN_FREE_KBYTES, mfk),
                       (Z.G_DMA_END, dma_end), (Z.G_DMA32_END, dma32_end), (Z.G_THP, int(p["thp"])),
                       (Z.G_PCP_AUTOTUNE, autotune), (Z.G_TOTALRESERVE, totalreserve)):
        q[(hdr + field) >> 3] = val
    arena.atomic.store64(hdr + Z.G_MAGIC, Z.MM_MAGIC)   # last: an attacher seeing it sees all


def _nil_words(n: int) -> memoryview:
    return memoryview(b"\xff" * (4 * n)).cast("I")
