"""Invariant checker for vmalloc: the slices' trees, the kernel mappings, the blocks.

Models: CONFIG_DEBUG_VM-style validation of mm/vmalloc.c's state (the augmented tree's
own checks, vmap_block accounting) gathered into one stop-the-world pass, run by
mm/vm/check.py on init_mm's kernel-half leaves.  Unit: a quiescent arena (no CPU inside
vmalloc).  Reads only.  The IDs (VA1..VA5) are stated in mm/vm/vmalloc.py's docstring;
tests/test_vmalloc.py breaks each on purpose.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from aerosync.lib.maple_tree import MapleTree
from aerosync.mm.pmm.check import _Sink
from aerosync.mm.vm import vmalloc_layout as VL
from aerosync.mm.vm.pgtable import _PAGE_PRESENT, _PAGE_PSE, PTE_PFN_MASK
from aerosync.mm.vm.vmalloc import vmalloc_areas, vmalloc_ready
from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = ["VMALLOC_INVARIANTS", "check_vmalloc", "block_allocations", "vmalloc_tree_nodes"]

VMALLOC_INVARIANTS = ("VA1", "VA2", "VA3", "VA4", "VA5")
_BITS = VL.VMAP_BBMAP_BITS


def _bits(q: Any, off: int) -> list[int]:
    w = [q[(off >> 3) + i] for i in range(_BITS // 64)]
    return [(w[i >> 6] >> (i & 63)) & 1 for i in range(_BITS)]


def block_allocations(arena: Any, vb: int) -> list[tuple[int, int]]:
    """(first page, pages incl. the guard) of each live allocation of a vmap_block."""
    q = arena.u64
    used, starts = _bits(q, vb + VL.VB_USED), _bits(q, vb + VL.VB_STARTS)
    out, i = [], 0
    while i < _BITS:
        if starts[i] and used[i]:
            n = 1
            while i + n < _BITS and used[i + n] and not starts[i + n]:
                n += 1
            out.append((i, n))
            i += n
        else:
            i += 1
    return out


def vmalloc_tree_nodes(arena: Any) -> int:
    """maple_node objects the slices' trees use (LK1 counts them with the mms')."""
    if not vmalloc_ready(arena):
        return 0
    q = arena.u64
    base = arena.off("vmalloc")
    n = 0
    for nid in range(q[(base + VL.H_NR_NODES) >> 3]):
        with contextlib.suppress(IndexError, ValueError, RecursionError):
            n += MapleTree(arena, VL.node_off(base, nid) + VL.VN_MT).mt_nr_nodes()
    return n


def check_vmalloc(arena: Any, s: _Sink, va: np.ndarray, pte: np.ndarray, allocated: np.ndarray, final: bool) -> None:
    """VA1..VA5.  `va` / `pte`: init_mm's kernel-half leaves (va without the sign
    extension, as the table walk computes it); `allocated`: per pfn, an allocated page."""
    if not vmalloc_ready(arena):
        return
    q, u32 = arena.u64, arena.u32
    base = arena.off("vmalloc")
    start, size = q[(base + VL.H_START) >> 3], q[(base + VL.H_SIZE) >> 3]
    end = start + size
    nr_nodes = q[(base + VL.H_NR_NODES) >> 3]
    partitioned = bool(q[(base + VL.H_FLAGS) >> 3] & VL.VMF_NUMA_PARTITION)
    nslices = nr_nodes if partitioned else 1
    # ---- VA1: trees and records
    for nid in range(nslices):
        t = MapleTree(arena, VL.node_off(base, nid) + VL.VN_MT)
        for err in t.mt_validate():
            s.add("VA1", f"vmalloc slice {nid} tree", "mt_validate() clean", err)
    areas = vmalloc_areas(arena)
    lazy_pages = 0
    lazy_by_node: dict[int, set[int]] = {}
    busy, blocks = [], []
    for d in areas:
        where = f"vmap_area {d['rec']:#x} [{d['start']:#x}, {d['end']:#x})"
        no = VL.node_off(base, d["node"])
        lo, hi = q[(no + VL.VN_START) >> 3], q[(no + VL.VN_END) >> 3]
        if d["va_start"] != d["start"] or d["va_end"] != d["end"] or not lo <= d["start"] < d["end"] <= hi:
            s.add("VA1", where, f"va_start/va_end == its tree range, inside the slice [{lo:#x}, {hi:#x})",
                  f"[{d['va_start']:#x}, {d['va_end']:#x})")
        fl = d["flags"]
        if not fl & (VL.VA_BUSY | VL.VA_LAZY) or (fl & VL.VA_BUSY and fl & VL.VA_LAZY):
            s.add("VA1", where, "BUSY or LAZY at a quiescent point", f"flags {fl:#x}")
        if fl & VL.VA_LAZY:
            lazy_pages += (d["end"] - d["start"]) >> PAGE_SHIFT
            lazy_by_node.setdefault(d["node"], set()).add(d["rec"])
        elif fl & VL.VA_BLOCK:
            blocks.append(d)
        elif fl & VL.VA_BUSY:
            busy.append(d)
    # ---- VA3: counters and purge lists
    got = q[(base + VL.H_LAZY_NR) >> 3]
    if got != lazy_pages:
        s.add("VA3", "vmap_lazy_nr", f"{lazy_pages} pages of lazy areas", got)
    for nid in range(nslices):
        no = VL.node_off(base, nid)
        listed, pages, v, n = set(), 0, q[(no + VL.VN_PURGE) >> 3], 0
        while v and n < 1 << 20:
            listed.add(v)
            pages += (q[(v + VL.VA_END) >> 3] - q[(v + VL.VA_START) >> 3]) >> PAGE_SHIFT
            v = q[(v + VL.VA_NEXT) >> 3]
            n += 1
        if listed != lazy_by_node.get(nid, set()) or pages != q[(no + VL.VN_NR_LAZY) >> 3]:
            s.add("VA3", f"vmap_node {nid} purge list", f"the node's {len(lazy_by_node.get(nid, ()))} lazy areas, "
                  f"{pages} pages counted", f"{len(listed)} listed, lazy count {q[(no + VL.VN_NR_LAZY) >> 3]}")
    # ---- mappable ranges: busy areas' mapped pages and live block allocations
    ranges: list[tuple[int, int]] = []
    mapped_pages = 0
    for d in busy:
        lead = PAGE_SIZE if d["flags"] & VL.VA_STACK else 0
        a = d["start"] + lead
        ranges.append((a, a + (d["nr_pages"] << PAGE_SHIFT)))
        if d["flags"] & VL.VA_ALLOC:
            mapped_pages += d["nr_pages"]
    # ---- VA4: blocks
    table = VL.table_off(base, nr_nodes, int(arena.config["nr_cpus"])) >> 3
    nr_cpus = int(arena.config["nr_cpus"])
    queued: dict[int, int] = {}
    for c in range(nr_cpus):
        qo = VL.vbq_off(base, nr_nodes, c)
        v, n = q[(qo + VL.VBQ_HEAD) >> 3], 0
        while v and n < 1 << 16:
            queued[v] = c
            v = q[(v + VL.VB_NEXT) >> 3]
            n += 1
        if n != q[(qo + VL.VBQ_NR) >> 3]:
            s.add("VA4", f"cpu{c} vmap_block_queue", f"count == {n} blocks on it", q[(qo + VL.VBQ_NR) >> 3])
    for d in blocks:
        vb = d["vb"]
        where = f"vmap_block {vb:#x} at {d['start']:#x}"
        if vb <= 0 or vb + VL.VB_REC > arena.size or q[(vb + VL.VB_VA) >> 3] != d["rec"]:
            s.add("VA4", where, "a block record naming its area", f"vb {vb:#x}")
            continue
        used, starts = _bits(q, vb + VL.VB_USED), _bits(q, vb + VL.VB_STARTS)
        free, dirty, nused = u32[(vb + VL.VB_FREE) >> 2], u32[(vb + VL.VB_DIRTY) >> 2], u32[(vb + VL.VB_NR_USED) >> 2]
        if nused != sum(used) or free + dirty + nused != _BITS or any(st and not u for st, u in zip(starts, used)):
            s.add("VA4", where, "nr_used == used bits, free + dirty + used == 256, starts on used pages",
                  f"free {free} dirty {dirty} nr_used {nused} used bits {sum(used)}")
        on_q = vb in queued
        st = u32[(vb + VL.VB_STATE) >> 2]
        if on_q != (free > 0) or (st == VL.VB_QUEUED) != on_q:
            s.add("VA4", where, "on its CPU's queue iff free > 0 (state QUEUED)",
                  f"free {free}, state {st}, queued {on_q}")
        if q[table + ((d["start"] - start) >> 20)] != vb:
            s.add("VA4", where, "its block-table entry names it", f"{q[table + ((d['start'] - start) >> 20)]:#x}")
        for off, n in block_allocations(arena, vb):
            a = d["start"] + (off << PAGE_SHIFT)
            ranges.append((a, a + ((n - 1) << PAGE_SHIFT)))
            mapped_pages += n - 1
    got = q[(base + VL.H_NR_PAGES) >> 3]
    if got != mapped_pages:
        s.add("VA3", "nr_vmalloc_pages", f"{mapped_pages} pages of busy areas and block allocations", got)
    # ---- VA2: every kernel leaf inside a mappable range, mapping allocated memory
    if len(va):
        bits = 57 if start == VL.VMALLOC_START_5 else 48             # the sign extension the walk leaves out
        full = va | np.uint64(((1 << 64) - 1) ^ ((1 << bits) - 1))
        present = (pte & np.uint64(_PAGE_PRESENT)) != 0
        huge = (pte & np.uint64(_PAGE_PSE)) != 0
        pfn = ((pte & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        rs = sorted(ranges)
        starts_ = np.array([r[0] for r in rs], dtype=np.uint64)
        ends_ = np.array([r[1] for r in rs], dtype=np.uint64)
        k = np.searchsorted(starts_, full, side="right").astype(np.int64) - 1
        last = full + np.where(huge, np.uint64(VL.PMD_SIZE - 1), np.uint64(PAGE_SIZE - 1))
        inside = (k >= 0) & (last < ends_[np.maximum(k, 0)]) if rs else np.zeros(len(full), dtype=bool)
        inside &= (full >= np.uint64(start)) & (full < np.uint64(end))
        for i in np.flatnonzero(present & ~inside)[: s.limit].tolist():
            s.add("VA2", f"init_mm va {int(full[i]):#x}", "a kernel leaf inside a busy vmalloc area's mapped pages",
                  f"entry {int(pte[i]):#x}")
        n = len(allocated)
        okp = (pfn < n) & present
        ok_alloc = np.zeros(len(pfn), dtype=bool)
        ok_alloc[okp] = allocated[pfn[okp]]
        for i in np.flatnonzero(present & ~ok_alloc)[: s.limit].tolist():
            s.add("VA2", f"init_mm va {int(full[i]):#x}", "maps an allocated page", f"pfn {int(pfn[i])}")
    # ---- VA5: the caches hold exactly the live records
    if final:
        from aerosync.mm.slab.slab_common import slab_stats

        caches = q[(base + VL.H_CACHES) >> 3]
        for cid, name, want in ((caches & 0xFFFF_FFFF, "vmap_area", len(areas)),
                                (caches >> 32, "vmap_block", len(blocks))):
            st = slab_stats(arena, cid)
            if st["alloc"] - st["free"] != want:
                s.add("VA5", f"kmem_cache {name}", f"{want} objects allocated (the live records)",
                      st["alloc"] - st["free"])
