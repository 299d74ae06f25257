"""vmalloc: virtually contiguous kernel memory in init_mm's page tables.

Models: mm/vmalloc.c v6.19 (alloc_vmap_area with find_vmap_lowest_match's lowest fit,
vmap_node, vb_alloc / vb_free / purge_fragmented_blocks, free_vmap_area_noflush,
purge_vmap_area_lazy / __purge_vmap_area_lazy, lazy_max_pages, __vmalloc_node_range,
vmap_pages_range / vunmap_range_noflush, vmap_try_huge_pmd, vmalloc_to_page, vfree,
vmap / vunmap, vm_unmap_aliases, /proc/vmallocinfo) with the C kernel's per-node address
slices (aerosync-c.md 5: NUMA_PARTITION, 1 MiB vmap_blocks, purge at 32 MiB) built
working.  Unit: a kernel virtual address; a vmap_area (record at an arena offset);
pages of 4 KiB (PMD leaves of 2 MiB for vmalloc_huge).  Layout constants and the
records: mm/vm/vmalloc_layout.py.

API: `Vmalloc(arena, cpu, mm, slub, tlb)` -- one simulated CPU's handle, closures
bound once; `tlb` must be that CPU's Tlb (the VM handle's: its kernel entries are the
ones the purge flushes):
  vmalloc(size) / vzalloc(size) / vmalloc_node(size, nid) / vzalloc_node(size, nid)
  vmalloc_huge(size) -> addr | 0         vfree(addr)          vmalloc_to_page(addr) -> pfn | -1
  vmap(pfns) -> addr | 0                 vunmap(addr)         vm_unmap_aliases()
  vmalloc_stack(nid, tid) -> stack base | 0 (kstack.py)      find_vmap_area(addr) -> va | 0
  purge_vmap_area_lazy() -> areas purged
Module level: vmalloc_init(arena) (boot), vmallocinfo_text(arena), vmalloc_meminfo(arena),
vmalloc_areas(arena) (a racy list for views and the checker).
Failure: an allocation that finds no address space (after one purge and every slice)
or no pages returns 0 with a "vmalloc error" warning, nothing left behind.  A vfree of
an address that is no area's start is a WARN (san/report.py kind "vfree"), nothing freed.

How a request is served (vmalloc_node_range):
  1. size <= [vmalloc] vmap_block_max_kb (512 KiB): a sub-range of one of this CPU's
     vmap_blocks for that node (1 MiB areas, bitmap sub-allocation: used_map / start_map;
     the range includes a trailing guard page, left unmapped); a new block when none of
     the CPU's blocks has room.  Freed sub-ranges are never handed out again (they are
     "dirty": their TLB entries may live on); a block whose every page is dirty, or
     that has nothing in use and less than a quarter never handed out
     (purge_fragmented_block: at the free that empties it, or when a CPU's search
     passes it), is freed as a whole -- its area goes lazy, and the purge's one flush
     covers its dirty range.
  2. otherwise its own vmap_area: a trailing guard page (kernel stacks a leading one as
     well), the lowest fitting gap of the node's slice (the slice's maple tree: its
     arange gap words are the augmented largest-gap of Linux's free_vmap_area_root, so
     the lowest fit is O(log n); alignment by searching size + align - 1, as Linux),
     then the other slices nearest first, then one purge and a second round.
  3. pages from the node (alloc_pages_node), mapped PAGE_KERNEL (global, NX) into
     init_mm; vmalloc_huge maps 2 MiB PMD leaves (order-9 blocks) wherever a whole
     aligned 2 MiB fits and its PMD slot holds no PTE table, order-0 pages elsewhere.
  vfree: unmap (the PTEs cleared, no flush) and free the pages at once, then the area
  goes lazy -- still reserved in its tree, on its node's purge list.  When the lazy
  pages pass lazy_max_pages (or an allocation finds no room) one CPU purges: it takes
  every node's list, flushes [lowest start, highest end) with ONE kernel-range TLB
  shootdown (every online CPU), and only then erases the areas from their trees.  So an
  address is never handed out again while a stale TLB entry for it may live anywhere.
  Unmapping happens before an area (or a block range) is marked lazy (dirty): once it
  is, a concurrent purge may flush, erase and hand it out, and a late unmap would clear
  the new owner's PTEs.

Lock order (outer first; sync/__init__.py has the whole system's tree):
  1. vmap_purge_lock ("vmap_purge_lock", SpinLock; Linux's mutex): one purger at a time.
  2. &vbq->lock (ObjSpinLock in the per-CPU record): the CPU's block queue (links,
     count); taken by its owner to allocate and by anyone retiring its blocks.
  3. &vb->lock (ObjSpinLock in the block): free, dirty, used/start maps, state.
  4. free_vmap_area_lock (SpinLock, one per slice): the slice's maple tree (free space =
     its gaps; busy and lazy areas = its entries), its purge list and counters, the
     flags of its areas.
  5. init_mm's page_table_lock (populating kernel table levels), then SLUB and the page
     allocator (vmap_area / vmap_block / maple_node objects, pages).
  vb->lock is never held while taking a slice lock (vb_free drops it first).

Lock-free: the block table (one u64 per 1 MiB: written under the slice lock when a block
is made or retired, read by vb_free -- an address inside a live allocation of a block
keeps that block alive), vmap_lazy_nr and nr_vmalloc_pages (atomics), PTEs of an area
(its owner alone writes them; table pages are shared but entries are distinct words).

Invariants (mm/vm/check.py, kernel half of init_mm; "VA" IDs):
  VA1 every slice's tree passes mt_validate; every entry is a vmap_area record whose
      [va_start, va_end) is its range, inside the slice; flags BUSY or LAZY (never 0 at
      a quiescent point).
  VA2 every present kernel leaf in the vmalloc range lies inside a BUSY area (not in a
      guard page) and maps an allocated page (an allocated order-9 block for a PMD
      leaf); no leaf inside a LAZY area.
  VA3 nr_vmalloc_pages == pages mapped by BUSY non-block areas and live block ranges;
      vmap_lazy_nr == the pages of LAZY areas; each node's lazy count == its list.
  VA4 a vmap_block: nr_used == used_map bits, free + dirty + nr_used == VMAP_BBMAP_BITS,
      start bits only on used pages, on its CPU's queue iff free > 0, its table entry set.
  VA5 (final) the vmap_area / vmap_block caches hold exactly the live records.
Deliberate races: vmallocinfo and meminfo read without locks (as /proc is approximate).

Crash tolerance (robust mode; records in mm/intent.py, recovery in mm/vm/recover.py):
an area's allocation, vfree and the purge log as vm_vmalloc / vm_vfree / vm_purge; the
block path as vm_vb_alloc (the new block's area, then the carved range filled page by
page), vm_vb_free (claimed, unmapped, then marked dirty) and vm_vb_retire
(free_vmap_block: the area made lazy before the block record is freed).  Blocks marked
dead for retirement but not yet freed when their CPU died stay in the block table:
recovery frees them (dead_blocks).  A carve lands under a step-3 record with a5 set
(carve_finish completes it); a queue a dead CPU was changing is made to agree with its
blocks again (repair_block_queues).  vmap() is not logged.
"""

from __future__ import annotations

import warnings
from typing import Any

from aerosync.arena.layout import robust_mode
from aerosync.mm import intent as I
from aerosync.mm.pmm.gfp import __GFP_NOWARN as _GFP_NOWARN
from aerosync.mm.pmm.gfp import __GFP_THISNODE as _GFP_THISNODE
from aerosync.mm.pmm.gfp import __GFP_ZERO as _GFP_ZERO
from aerosync.mm.pmm.gfp import GFP_KERNEL
from aerosync.mm.pmm.vmstat import MEMINFO_SOURCES
from aerosync.mm.vm import vmalloc_layout as VL
from aerosync.mm.vm.pgtable import _KERNPG_TABLE, _PAGE_PRESENT, _PAGE_PSE, PAGE_KERNEL, PTE_PFN_MASK, level_shift
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["Vmalloc", "vmalloc_init", "vmallocinfo_text", "vmallocinfo_json", "vmalloc_meminfo", "vmalloc_areas",
           "vmalloc_ready", "VmallocWarning", "is_vmalloc_addr", "dead_blocks", "repair_block_queues"]

_P_PSE = _PAGE_PRESENT | _PAGE_PSE
_OP_VMALLOC = I.OP["vm_vmalloc"]
P_VMALLOC_PAGE = I.POINT_IDS["vm:vmalloc:page"]
_OP_VFREE, _OP_PURGE = I.OP["vm_vfree"], I.OP["vm_purge"]
P_VFREE_UNMAPPED, P_PURGE_ERASED = I.POINT_IDS["vm:vfree:unmapped"], I.POINT_IDS["vm:purge:erased"]
_OP_VB_ALLOC, _OP_VB_FREE, _OP_VB_RETIRE = I.OP["vm_vb_alloc"], I.OP["vm_vb_free"], I.OP["vm_vb_retire"]
P_VB_PAGE, P_VB_FREE_UNMAPPED, P_VB_RETIRE_LAZY = (I.POINT_IDS["vm:vb_alloc:page"], I.POINT_IDS["vm:vb_free:unmapped"],
                                                   I.POINT_IDS["vm:vb_retire:lazy"])
_PMD_PAGES = 1 << VL.PMD_ORDER
_PAGE_KERNEL_LARGE = PAGE_KERNEL | _PAGE_PSE
_BITS = VL.VMAP_BBMAP_BITS
_FULL64 = (1 << 64) - 1


class VmallocWarning(RuntimeWarning):
    """warn_alloc()'s "vmalloc error: size N, ..." -- an allocation that failed."""


def vmalloc_ready(arena: Any) -> bool:
    return "vmalloc" in arena.sections and arena.u64[arena.off("vmalloc") >> 3] == VL.VMALLOC_MAGIC


def is_vmalloc_addr(arena: Any, addr: int) -> bool:
    base = arena.off("vmalloc")
    q = arena.u64
    start = q[(base + VL.H_START) >> 3]
    return start <= addr < start + q[(base + VL.H_SIZE) >> 3]


# ------------------------------------------------------------------ boot
def vmalloc_init(arena: Any) -> None:
    """Boot (after vm_init): the header, one slice per node, the caches, the locks, and
    init_mm's top-level entries for the whole range (preallocate_vmalloc_pages)."""
    from aerosync.lib.maple_tree import MT_FLAGS_ALLOC_RANGE, mt_init
    from aerosync.mm.pmm.page_alloc import MM
    from aerosync.mm.slab.slab_common import kmem_cache_create
    from aerosync.mm.vm import mm_types as T
    from aerosync.mm.vm.pgtable import PageTables, levels_of
    from aerosync.sync.lockclass import OBJ_SPIN, objlock_class
    from aerosync.sync.lockstat import lock_alloc
    from aerosync.sync.objlock import ObjSpinLock

    p = VL.vmalloc_params(arena.config)
    q = arena.u64
    base = arena.off("vmalloc")
    o, s = arena.sections["vmalloc"]
    arena.u8[o : o + s] = bytes(s)
    nr_cpus, nr_nodes = int(arena.config["nr_cpus"]), VL.nr_nodes_of(arena.config)
    levels = q[(arena.off("vmhdr") + T.H_LEVELS) >> 3]
    start = VL.vmalloc_start(levels)
    size = p["size_gb"] << 30
    nslices = nr_nodes if p["numa_partition"] else 1
    slice_ = (size // nslices) & ~(VL.PMD_SIZE - 1)

    def put(f: int, v: int) -> None:
        q[(base + f) >> 3] = v

    put(VL.H_START, start)
    put(VL.H_SIZE, size)
    put(VL.H_SLICE, slice_)
    put(VL.H_NR_NODES, nr_nodes)
    put(VL.H_LAZY_MAX, p["lazy_max_pages"])
    kb = p["vmap_block_max_kb"]
    put(VL.H_BLOCK_MAX, kb // 4 + 1 if kb else 0)
    va_cache = kmem_cache_create(arena, "vmap_area", VL.VA_REC, 64)
    vb_cache = kmem_cache_create(arena, "vmap_block", VL.VB_REC, 64)
    put(VL.H_CACHES, va_cache | vb_cache << 32)
    put(VL.H_PURGE_LOCK, lock_alloc(arena, "vmap_purge_lock", "vmap_purge_lock"))
    put(VL.H_CLS, objlock_class(arena, "&vbq->lock", OBJ_SPIN) | objlock_class(arena, "&vb->lock", OBJ_SPIN) << 16)
    put(VL.H_FLAGS, (VL.VMF_HUGE if p["huge"] else 0) | (VL.VMF_NUMA_PARTITION if p["numa_partition"] else 0))
    for nid in range(nr_nodes):
        no = VL.node_off(base, nid)
        sl = nid if nid < nslices else 0
        q[(no + VL.VN_LOCK) >> 3] = lock_alloc(arena, "free_vmap_area_lock", f"vmap_node{nid}")
        q[(no + VL.VN_START) >> 3] = start + sl * slice_
        q[(no + VL.VN_END) >> 3] = start + (sl + 1) * slice_
        mt_init(arena, no + VL.VN_MT, MT_FLAGS_ALLOC_RANGE)
    # preallocate_vmalloc_pages(): the tables under init_mm's PGD entries of the range
    mm = MM(arena, 0)
    hdr = arena.off("vmhdr")
    ptl = ObjSpinLock(arena, q[(hdr + T.H_CLS_PTL) >> 3], 0)
    pt = PageTables(arena, 0, mm, ptl, levels)
    phys = arena.off("physmem")
    root = q[(T.mm_off(arena, 0) + T.M_PGD) >> 3]
    top = levels_of(levels)[0]
    sh = level_shift(top)
    for idx in sorted({(a >> sh) & 511 for a in range(start, start + size, 1 << sh)} |
                      {((start + size - 1) >> sh) & 511}):
        i = (phys >> 3) + (root << 9) + idx
        if not q[i] & _PAGE_PRESENT:
            t = pt.alloc_table(top - 1, 0, idx << sh)      # index: the checker's (canonical-less) base
            if t < 0:
                raise T.VMError("ENOMEM", f"vmalloc_init: arena {arena.name}: no page for the vmalloc tables")
            q[i] = (t << PAGE_SHIFT) | _KERNPG_TABLE
    arena.atomic.store64(base + VL.H_MAGIC, VL.VMALLOC_MAGIC)
    _ = nr_cpus


# ------------------------------------------------------------------ the per-CPU handle
class Vmalloc:
    """Simulated CPU `cpu`'s vmalloc (see the module docstring)."""

    def __init__(self, arena: Any, cpu: int, mm: Any, slub: Any, tlb: Any) -> None:
        from aerosync.lib.maple_tree import MapleTree
        from aerosync.mm import hooks
        from aerosync.mm.san.report import call_site, warn
        from aerosync.mm.san.shadow import KASAN_VMALLOC_INVALID, Shadow, has_shadow
        from aerosync.mm.slab.slab_common import VBASE
        from aerosync.mm.slab.slab_debug import depot_save
        from aerosync.mm.vm import mm_types as T
        from aerosync.mm.vm.pgtable import PageTables
        from aerosync.sync.objlock import ObjSpinLock
        from aerosync.sync.spinlock import SpinLock

        if not vmalloc_ready(arena):
            raise T.VMError("ENOSYS", f"arena {arena.name}: no vmalloc (vmalloc_init was not run)")
        self.arena, self.cpu = arena, cpu
        q, u32, u8, at = arena.u64, arena.u32, arena.u8, arena.atomic
        load64, fetch_add = at.load64, at.fetch_add64
        fetch_add32, fetch_sub32 = at.fetch_add32, at.fetch_sub32
        base = arena.off("vmalloc")
        hdr = arena.off("vmhdr")

        def H(f: int) -> int:
            return q[(base + f) >> 3]

        START, SIZE, SLICE = H(VL.H_START), H(VL.H_SIZE), H(VL.H_SLICE)
        END = START + SIZE
        self.start, self.end = START, END
        nr_nodes = H(VL.H_NR_NODES)
        nr_cpus = int(arena.config["nr_cpus"])
        lazy_max = H(VL.H_LAZY_MAX)
        block_max = H(VL.H_BLOCK_MAX)
        vmf = H(VL.H_FLAGS)
        huge_ok = bool(vmf & VL.VMF_HUGE)
        partitioned = bool(vmf & VL.VMF_NUMA_PARTITION)
        caches = H(VL.H_CACHES)
        cls = H(VL.H_CLS)
        va_cache = slub.cache(caches & 0xFFFF_FFFF)
        vb_cache = slub.cache(caches >> 32)
        maple = slub.cache(q[(hdr + T.H_CACHE_MAPLE) >> 3])
        PHYS = arena.off("physmem")
        P8 = PHYS >> 3
        VOFF = VBASE - PHYS
        levels = q[(hdr + T.H_LEVELS) >> 3]
        shifts = {lv: level_shift(lv) for lv in range(1, 6)}
        canon = (1 << level_shift(levels + 1)) - 1      # a table's index word: the address bits below the sign
        mo0 = T.mm_off(arena, 0)
        root = q[(mo0 + T.M_PGD) >> 3]
        ptl = ObjSpinLock(arena, q[(hdr + T.H_CLS_PTL) >> 3], cpu)
        ptl_off = mo0 + T.M_PTL
        pt = PageTables(arena, cpu, mm, ptl, levels)
        alloc_table, free_table = pt.alloc_table, pt.free_table
        alloc_pages_node, free_pages, free_frozen_pages = mm.alloc_pages_node, mm.free_pages, mm.free_frozen_pages
        # intent log (robust mode only: mm/intent.py vm_vmalloc, recovery in vmalloc_undo)
        lg = mm.log if robust_mode(arena.config) else None
        begin, log_end, fp = (lg.begin, lg.end, lg.fp) if lg is not None else (None, None, None)
        ho, pend = (lg.handoff, lg.pending) if lg is not None else (0, 0)   # mm/intent.py "Hand-off"
        PM = arena.off("pagemeta")
        mynid = mm.nid
        node_order = mm.node_order
        purge_lock = SpinLock(arena, H(VL.H_PURGE_LOCK), cpu)
        vbq_lock = ObjSpinLock(arena, cls & 0xFFFF, cpu)
        vb_lock = ObjSpinLock(arena, cls >> 16, cpu)
        qlock, qunlock = vbq_lock.lock, vbq_lock.unlock
        block_lock, block_unlock = vb_lock.lock, vb_lock.unlock
        flush_kernel = tlb.flush_tlb_kernel_range
        nodes = [VL.node_off(base, n) for n in range(nr_nodes)]
        node_locks = [SpinLock(arena, q[(no + VL.VN_LOCK) >> 3], cpu) for no in nodes]
        my_vbq = VL.vbq_off(base, nr_nodes, cpu)
        vbqs = [VL.vbq_off(base, nr_nodes, c) for c in range(nr_cpus)]
        TABLE = VL.table_off(base, nr_nodes, nr_cpus) >> 3
        nr_table = SIZE // VL.VMAP_BLOCK_SIZE
        shadow = Shadow(arena) if has_shadow(arena) else None
        va_alloc, va_free = va_cache.alloc, va_cache.free
        zero_va = bytes(VL.VA_REC)
        zero_vb = bytes(VL.VB_REC)
        tp = hooks.point_fn()                    # tests: forced interleavings (mm/hooks.py)

        def node_alloc() -> int:
            a = maple.alloc()
            return PHYS + (a - VBASE) if a else -1

        def node_free(off: int) -> None:
            maple.free(VBASE + (off - PHYS))

        trees = [MapleTree(arena, no + VL.VN_MT, node_alloc, node_free, None) for no in nodes]
        self.trees, self.node_locks = trees, node_locks

        def slice_of(addr: int) -> int:
            """The node whose slice holds addr (-1 outside the range)."""
            if not START <= addr < END:
                return -1
            if not partitioned:
                return 0
            n = (addr - START) // SLICE
            return n if n < nr_nodes else -1

        # -------------------------------------------------------- kernel page tables
        def table_for(va: int, level: int, alloc: bool) -> int:
            """The table of `level` covering va (2 = the PMD table, 1 = a PTE table) in
            init_mm, populating missing levels when `alloc`; -1 if missing, -2 if a PMD
            leaf sits where a PTE table was asked for."""
            t = root
            for lvl in range(levels, level, -1):
                i = P8 + (t << 9) + ((va >> shifts[lvl]) & 511)
                e = q[i]
                if not e & _PAGE_PRESENT:
                    if not alloc:
                        return -1
                    new = alloc_table(lvl - 1, 0, va & ~((1 << shifts[lvl]) - 1) & canon)
                    if new < 0:
                        return -1
                    ptl.lock(ptl_off)
                    e = q[i]
                    if not e & _PAGE_PRESENT:
                        e = (new << PAGE_SHIFT) | _KERNPG_TABLE
                        q[i] = e
                        new = -1
                    ptl.unlock(ptl_off)
                    if new >= 0:
                        free_table(new)
                elif e & _PAGE_PSE:
                    return -2
                t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            return t

        def map_small(va: int, pfns: list[int]) -> bool:
            """vmap_pages_range(): PTEs for pfns from va; False when a table page could not be had."""
            t, tva = -1, -1
            for i, pfn in enumerate(pfns):
                a = va + (i << PAGE_SHIFT)
                if a >> 21 != tva:
                    t = table_for(a, 1, True)
                    if t < 0:
                        return False
                    tva = a >> 21
                q[P8 + (t << 9) + ((a >> PAGE_SHIFT) & 511)] = (pfn << PAGE_SHIFT) | PAGE_KERNEL
            return True

        def put_named(hand: int, pfn: int, order: int) -> None:
            """Free the block named in the record word `hand`: its reference dropped
            first (put_page_testzero), the word cleared, then the block given back
            (free_frozen_pages) -- so a block still named was never the allocator's:
            refcount 1, not yet dropped; 0, dropped and on no list (unmap_finish)."""
            rc = PM + pfn * PAGE_META_SIZE + 8
            if fetch_sub32(rc, 1) != 1:                   # not vmalloc's alone (or a double free):
                fetch_add32(rc, 1)                        # free_pages says which, as it would
                q[hand] = 0
                free_pages(pfn, order)
                return
            q[hand] = 0
            free_frozen_pages(pfn, order, False)

        def unmap_range(va: int, npages: int, free: bool, hand: int = -1) -> int:
            """vunmap_range_noflush() (+ the page frees of vfree when `free`): clear the
            leaves of [va, va + npages pages); no TLB flush.  Returns pages unmapped.
            `hand` (a record's a5 word, robust mode): each page being freed is named
            there (pfn + 1 | order << 56) before its leaf is cleared and until its
            reference is dropped (put_named) -- a kill in between leaves the page
            unmapped and named, its refcount saying whether it was dropped yet
            (unmap_finish frees it, or pmm recovery's scan of pages in no state)."""
            done, i, end = 0, 0, npages
            while i < end:
                a = va + (i << PAGE_SHIFT)
                pmd = table_for(a, 2, False)
                to_pmd_end = 512 - ((a >> PAGE_SHIFT) & 511)
                if pmd < 0:
                    i += to_pmd_end
                    continue
                pi = P8 + (pmd << 9) + ((a >> 21) & 511)
                e = q[pi]
                if e & _P_PSE == _P_PSE:
                    if free and hand >= 0:
                        q[hand] = ((e & PTE_PFN_MASK) >> PAGE_SHIFT) + 1 | VL.PMD_ORDER << 56
                    q[pi] = 0
                    if free:
                        if hand >= 0:
                            put_named(hand, (e & PTE_PFN_MASK) >> PAGE_SHIFT, VL.PMD_ORDER)
                        else:
                            free_pages((e & PTE_PFN_MASK) >> PAGE_SHIFT, VL.PMD_ORDER)
                    done += _PMD_PAGES
                    i += to_pmd_end
                    continue
                if not e & _PAGE_PRESENT:
                    i += to_pmd_end
                    continue
                t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                stop = min(end, i + 512 - ((a >> PAGE_SHIFT) & 511))
                while i < stop:
                    k = P8 + (t << 9) + (((va >> PAGE_SHIFT) + i) & 511)
                    e = q[k]
                    if e & _PAGE_PRESENT:
                        if free and hand >= 0:
                            q[hand] = ((e & PTE_PFN_MASK) >> PAGE_SHIFT) + 1
                        q[k] = 0
                        if free:
                            if hand >= 0:
                                put_named(hand, (e & PTE_PFN_MASK) >> PAGE_SHIFT, 0)
                            else:
                                free_pages((e & PTE_PFN_MASK) >> PAGE_SHIFT, 0)
                        done += 1
                    i += 1
            return done

        def unmap_finish(hand: int, va: int, npages: int, free: bool) -> None:
            """Recovery of an unmap_range killed with a page in `hand` (its a5 word's
            value): the rest of the range unmapped (and freed), and the named page freed
            unless a leaf of the range still maps it (then that unmap freed it now) or
            its reference was dropped already (put_named: on no free list, the pmm
            scan's to free)."""
            if hand and free:
                pfn, order = (hand & ((1 << 56) - 1)) - 1, hand >> 56
                still = any(vmalloc_to_page(va + (i << PAGE_SHIFT)) == pfn for i in range(npages))
                unmap_range(va, npages, free)
                if not still and u32[(PM + pfn * PAGE_META_SIZE + 8) >> 2]:
                    free_pages(pfn, order)
                return
            unmap_range(va, npages, free)

        def vmalloc_to_page(addr: int) -> int:
            """vmalloc_to_page(): the pfn mapped at addr (-1 if none)."""
            if not START <= addr < END:
                return -1
            pmd = table_for(addr, 2, False)
            if pmd < 0:
                return -1
            e = q[P8 + (pmd << 9) + ((addr >> 21) & 511)]
            if e & _P_PSE == _P_PSE:
                return ((e & PTE_PFN_MASK) >> PAGE_SHIFT) + ((addr >> PAGE_SHIFT) & 511)
            if not e & _PAGE_PRESENT:
                return -1
            e = q[P8 + (((e & PTE_PFN_MASK) >> PAGE_SHIFT) << 9) + ((addr >> PAGE_SHIFT) & 511)]
            return (e & PTE_PFN_MASK) >> PAGE_SHIFT if e & _PAGE_PRESENT else -1

        # -------------------------------------------------------- areas (the slices' trees)
        def try_slice(n: int, size: int, align: int, flags: int, r: int = -1) -> int:
            """The lowest fitting gap of node n's slice; the new area's record or 0.
            With a vm_vmalloc record r: a0 and step 1 once the record is had, step 2
            once it is in the tree."""
            no = nodes[n]
            lo, hi = q[(no + VL.VN_START) >> 3], q[(no + VL.VN_END) >> 3]
            need = size + (align - PAGE_SIZE if align > PAGE_SIZE else 0)
            a = va_alloc()
            if not a:
                return 0
            va = a - VOFF
            if r >= 0:
                q[r + 1] = va
                q[r + 7] = 1
            u8[va : va + VL.VA_REC] = zero_va
            acq, rel = node_locks[n].acquire, node_locks[n].release
            acq()
            try:
                t = trees[n]
                s = t.mas_empty_area(lo, hi - 1, need)
                if s >= 0:
                    s = (s + align - 1) & ~(align - 1)
                    # the range first (nobody sees the record before the insert): a death
                    # in the insert -- freeing the nodes it replaced -- after its store
                    # landed is told from one before it by area_landed()
                    q[(va + VL.VA_START) >> 3] = s
                    q[(va + VL.VA_END) >> 3] = s + size
                    u32[(va + VL.VA_NID) >> 2] = n
                    if t.mtree_insert_range(s, s + size - 1, va) == 0:
                        u32[(va + VL.VA_FLAGS) >> 2] = flags        # BUSY is set once mapped
                        q[(no + VL.VN_NR_BUSY) >> 3] += 1
                        if r >= 0:
                            q[r + 7] = 2
                        return va
            finally:
                rel()
            if r >= 0:
                q[r + 7] = 0
            va_free(a)
            return 0

        def alloc_vmap_area(size: int, align: int, nid: int, flags: int, r: int = -1) -> int:
            """alloc_vmap_area(): the node's slice, then the others nearest first; one
            purge of the lazy areas and a second round when nothing fits."""
            order = [nid, *[n for n in node_order[nid] if n != nid]] if partitioned else [0]
            for attempt in (0, 1):
                for n in order:
                    va = try_slice(n, size, align, flags, r)
                    if va:
                        return va
                if attempt == 0 and not purge_vmap_area_lazy(True):
                    break
            return 0

        def remove_area(va: int, r: int = -1) -> None:
            """Erase an area that was never visible to anyone (a failed allocation); with
            its vm_vmalloc record r, step 0 once it is out of the tree (its record's free
            then owns it)."""
            n = u32[(va + VL.VA_NID) >> 2]
            acq, rel = node_locks[n].acquire, node_locks[n].release
            acq()
            try:
                trees[n].mtree_erase(q[(va + VL.VA_START) >> 3])
                q[(nodes[n] + VL.VN_NR_BUSY) >> 3] -= 1
            finally:
                rel()
            if r >= 0:
                q[r + 7] = 0
            va_free(va + VOFF)

        def find_vmap_area(addr: int) -> int:
            """find_vmap_area(): the area record whose range holds addr, or 0."""
            n = slice_of(addr)
            if n < 0:
                return 0
            acq, rel = node_locks[n].acquire, node_locks[n].release
            acq()
            try:
                return trees[n].mtree_load(addr)
            finally:
                rel()

        def free_area_lazy(va: int, pages: int, r: int = -1) -> None:
            """free_vmap_area_noflush(): the (already unmapped) area joins its node's purge
            list and stays reserved; a purge when the lazy pages pass lazy_max_pages.
            With a vm_vfree record r: step 3 once the area is lazy and counted."""
            n = u32[(va + VL.VA_NID) >> 2]
            no = nodes[n]
            acq, rel = node_locks[n].acquire, node_locks[n].release
            acq()
            try:
                u32[(va + VL.VA_FLAGS) >> 2] = (u32[(va + VL.VA_FLAGS) >> 2] & ~VL.VA_BUSY) | VL.VA_LAZY
                q[(va + VL.VA_NEXT) >> 3] = q[(no + VL.VN_PURGE) >> 3]
                q[(no + VL.VN_PURGE) >> 3] = va
                q[(no + VL.VN_NR_LAZY) >> 3] += pages
                q[(no + VL.VN_NR_BUSY) >> 3] -= 1
            finally:
                rel()
            over = fetch_add(base + VL.H_LAZY_NR, pages) + pages > lazy_max
            if r >= 0:
                q[r + 7] = 3
            if over and not purge_lock.is_locked():
                purge_vmap_area_lazy(False)

        def purge_vmap_area_lazy(wait: bool = True, extra: tuple[int, int] = (0, 0)) -> int:
            """__purge_vmap_area_lazy(): take every node's lazy list, ONE kernel-range TLB
            shootdown over [lowest start, highest end) (widened to `extra`, vm_unmap_aliases'
            dirty block ranges), then erase the areas (their address space is free again).
            Returns how many areas were purged."""
            if not wait and purge_lock.is_locked():
                return 0
            purge_lock.acquire()
            try:
                if begin is not None:
                    return purge_logged(extra)
                taken: list[tuple[int, int]] = []
                for n in range(nr_nodes):
                    no = nodes[n]
                    if not q[(no + VL.VN_PURGE) >> 3]:
                        continue
                    acq, rel = node_locks[n].acquire, node_locks[n].release
                    acq()
                    try:
                        head, nr = q[(no + VL.VN_PURGE) >> 3], q[(no + VL.VN_NR_LAZY) >> 3]
                        q[(no + VL.VN_PURGE) >> 3] = 0
                        q[(no + VL.VN_NR_LAZY) >> 3] = 0
                    finally:
                        rel()
                    if head:
                        taken.append((n, head))
                        _ = nr
                if not taken:
                    if extra[0] < extra[1]:
                        flush_kernel(extra[0], extra[1])
                        fetch_add(base + VL.H_NR_FLUSHES, 1)
                    return 0
                lo, hi, total, areas = END, START, 0, []
                if extra[0] < extra[1]:
                    lo, hi = extra
                for n, head in taken:
                    va = head
                    while va:
                        s, e = q[(va + VL.VA_START) >> 3], q[(va + VL.VA_END) >> 3]
                        lo, hi = min(lo, s), max(hi, e)
                        total += (e - s) >> PAGE_SHIFT
                        areas.append((n, va))
                        va = q[(va + VL.VA_NEXT) >> 3]
                if tp:
                    tp("vmalloc:purge_taken")
                flush_kernel(lo, hi)
                fetch_add(base + VL.H_NR_FLUSHES, 1)
                fetch_add(base + VL.H_NR_PURGES, 1)
                if tp:
                    tp("vmalloc:purge_flushed")
                done, keep = 0, []
                for n in range(nr_nodes):
                    mine = [va for m, va in areas if m == n]
                    if not mine:
                        continue
                    acq, rel = node_locks[n].acquire, node_locks[n].release
                    acq()
                    try:
                        for va in mine:
                            if trees[n].mtree_erase(q[(va + VL.VA_START) >> 3]) == va:
                                done += 1
                            else:                          # -ENOMEM: stays lazy for the next purge
                                keep.append((n, va))
                    finally:
                        rel()
                for n, va in keep:
                    total -= (q[(va + VL.VA_END) >> 3] - q[(va + VL.VA_START) >> 3]) >> PAGE_SHIFT
                    _relink_lazy(n, va)
                for m, va in areas:
                    if (m, va) not in keep:
                        va_free(va + VOFF)
                fetch_add(base + VL.H_LAZY_NR, (-total) & _FULL64)
                return done
            finally:
                purge_lock.release()

        def purge_logged(extra: tuple[int, int]) -> int:
            """The purge of robust mode (purge_lock held): node by node, that node's
            detached lazy chain under a vm_purge record (a0 node, a1 the cursor: the
            first area not yet erased, a2 the area being erased) -- one shootdown per
            node's chain, then each area erased, uncounted and its record freed in
            turn, so a death leaves the chain from the cursor for recovery to relink
            (purge_undo).  The extra range (vm_unmap_aliases) is flushed once."""
            done = 0
            flushed = False
            for n in range(nr_nodes):
                no = nodes[n]
                if not q[(no + VL.VN_PURGE) >> 3]:
                    continue
                r = begin(_OP_PURGE, n)
                try:
                    acq, rel = node_locks[n].acquire, node_locks[n].release
                    acq()
                    try:
                        head = q[(no + VL.VN_PURGE) >> 3]
                        q[(no + VL.VN_PURGE) >> 3] = 0
                        q[(no + VL.VN_NR_LAZY) >> 3] = 0
                        q[r + 2] = head
                        q[r + 7] = 1
                    finally:
                        rel()
                    if not head:
                        continue
                    lo, hi = (extra if extra[0] < extra[1] and not flushed else (END, START))
                    va = head
                    while va:
                        lo, hi = min(lo, q[(va + VL.VA_START) >> 3]), max(hi, q[(va + VL.VA_END) >> 3])
                        va = q[(va + VL.VA_NEXT) >> 3]
                    flush_kernel(lo, hi)
                    fetch_add(base + VL.H_NR_FLUSHES, 1)
                    if not flushed:                        # (one purge, however many chains)
                        fetch_add(base + VL.H_NR_PURGES, 1)
                    flushed = True
                    q[r + 7] = 2
                    va = head
                    while va:
                        nxt = q[(va + VL.VA_NEXT) >> 3]
                        pages = (q[(va + VL.VA_END) >> 3] - q[(va + VL.VA_START) >> 3]) >> PAGE_SHIFT
                        q[r + 3] = va
                        acq()
                        try:
                            erased = trees[n].mtree_erase(q[(va + VL.VA_START) >> 3]) == va
                        finally:
                            rel()
                        if not erased:                     # -ENOMEM: stays lazy for the next purge
                            q[r + 2] = nxt
                            _relink_lazy(n, va)
                            va = nxt
                            continue
                        q[r + 2] = nxt
                        q[r + 7] = 3
                        fetch_add(base + VL.H_LAZY_NR, (-pages) & _FULL64)
                        if fp:
                            fp(P_PURGE_ERASED)
                        q[r + 7] = 2                       # va forgotten before its release
                        va_free(va + VOFF)
                        done += 1
                        va = nxt
                finally:
                    log_end(r)
            if not flushed and extra[0] < extra[1]:
                flush_kernel(extra[0], extra[1])
                fetch_add(base + VL.H_NR_FLUSHES, 1)
            return done

        def purge_undo(n: int, cursor: int, va: int, step: int) -> None:
            """Recovery of a vm_purge record: an area whose erase landed (step 2, the
            tree no longer has it) is uncounted and freed, one erased and uncounted
            (step 3, va) freed; the chain from the first area not erased goes back on
            node n's purge list, still lazy (a later purge flushes it again)."""
            if step == 2 and cursor and find_vmap_area(q[(cursor + VL.VA_START) >> 3]) != cursor:
                nxt = q[(cursor + VL.VA_NEXT) >> 3]
                pages = (q[(cursor + VL.VA_END) >> 3] - q[(cursor + VL.VA_START) >> 3]) >> PAGE_SHIFT
                fetch_add(base + VL.H_LAZY_NR, (-pages) & _FULL64)
                va_free(cursor + VOFF)
                cursor = nxt
            if step == 3:                                  # erased and uncounted, not yet released
                va_free(va + VOFF)
            if step >= 1:
                while cursor:
                    nxt = q[(cursor + VL.VA_NEXT) >> 3]
                    _relink_lazy(n, cursor)
                    cursor = nxt

        def vfree_finish(va: int, addr: int, npages: int, want_vmap: bool, step: int, hand: int = 0) -> None:
            """Recovery of a vm_vfree record: at step 0 the vfree is done (the area still
            BUSY) or resumed at step 1 (BUSY cleared); from step 1 the area is unmapped
            (what is still mapped, and the page a5 names: its pages freed unless vunmap)
            and uncounted, from step 2 it goes lazy; at step 3 it is lazy already."""
            if step == 0:
                if u32[(va + VL.VA_FLAGS) >> 2] & VL.VA_BUSY:    # not begun: the vfree is done
                    remove_vm_area(addr, want_vmap)
                    return
                step = 1                                      # BUSY cleared, its step not stored
            if step == 1:
                unmap_finish(hand, addr, npages, not want_vmap)
                if not want_vmap:
                    fetch_add(base + VL.H_NR_PAGES, (-npages) & _FULL64)
            if step in (1, 2):
                free_area_lazy(va, (q[(va + VL.VA_END) >> 3] - q[(va + VL.VA_START) >> 3]) >> PAGE_SHIFT)

        def _relink_lazy(n: int, va: int) -> None:
            no = nodes[n]
            acq, rel = node_locks[n].acquire, node_locks[n].release
            acq()
            try:
                q[(va + VL.VA_NEXT) >> 3] = q[(no + VL.VN_PURGE) >> 3]
                q[(no + VL.VN_PURGE) >> 3] = va
                q[(no + VL.VN_NR_LAZY) >> 3] += (q[(va + VL.VA_END) >> 3] - q[(va + VL.VA_START) >> 3]) >> PAGE_SHIFT
            finally:
                rel()

        # -------------------------------------------------------- pages
        def alloc_pages_for(n: int, nid: int, gfp: int) -> list[int] | None:
            """n order-0 pages on node nid (any node when it has none), or None.  With
            __GFP_NOWARN, as __vmalloc_area_node: the failure is vmalloc's own warning."""
            out = []
            gfp |= _GFP_NOWARN
            for _ in range(n):
                pfn = alloc_pages_node(nid, gfp, 0)
                if pfn < 0:
                    for p in out:
                        free_pages(p, 0)
                    return None
                out.append(pfn)
            return out

        def poison_tail(addr: int, size: int, npages: int) -> None:
            """kasan_unpoison_vmalloc(): the last page's bytes past `size` read as
            KASAN_VMALLOC_INVALID (the pages came unpoisoned from the page allocator)."""
            rem = size - ((npages - 1) << PAGE_SHIFT)
            if rem >= PAGE_SIZE:
                return
            pfn = vmalloc_to_page(addr + ((npages - 1) << PAGE_SHIFT))
            o = PHYS + (pfn << PAGE_SHIFT)
            shadow.unpoison(o, rem)
            g = (rem + 7) & ~7
            if g < PAGE_SIZE:
                shadow.poison(o + g, PAGE_SIZE - g, KASAN_VMALLOC_INVALID)

        def fail(size: int, why: str) -> int:
            warnings.warn(f"cpu{cpu}: vmalloc error: size {size}, {why}, mode:GFP_KERNEL", VmallocWarning,
                          stacklevel=3)
            return 0

        # -------------------------------------------------------- vmap_blocks
        def bits_set(w: int, off: int, n: int) -> None:
            for i in range(off, off + n):
                k = w + ((i >> 6) << 3)
                q[k >> 3] |= 1 << (i & 63)

        def bits_clear(w: int, off: int, n: int) -> None:
            for i in range(off, off + n):
                k = w + ((i >> 6) << 3)
                q[k >> 3] &= _FULL64 ^ (1 << (i & 63))

        def bit(w: int, i: int) -> int:
            return (q[(w >> 3) + (i >> 6)] >> (i & 63)) & 1

        def carve(vb: int, n: int, r: int = -1) -> int:
            """Take n pages from the block's free tail (vb->lock held); page offset or -1.
            With a vm_vb_alloc record r: vb, the address and n, step 3 and a5 = 1
            ("carving") are stored before any of the carve lands, a5 cleared after --
            carve_finish completes a carve a5 still marks."""
            free = u32[(vb + VL.VB_FREE) >> 2]
            if free < n:
                return -1
            off = _BITS - free
            if r >= 0:
                q[r + 6] = 1
                q[r + 2], q[r + 3], q[r + 4] = vb, q[(vb + VL.VB_START) >> 3] + (off << PAGE_SHIFT), n
                q[r + 7] = 3
            u32[(vb + VL.VB_FREE) >> 2] = free - n
            bits_set(vb + VL.VB_USED, off, n)
            bits_set(vb + VL.VB_STARTS, off, 1)
            u32[(vb + VL.VB_NR_USED) >> 2] += n
            if r >= 0:
                q[r + 6] = 0
            return off

        def carve_finish(vb: int, addr: int, n: int) -> None:
            """Recovery of a vm_vb_alloc record whose a5 says a carve was in flight (its
            CPU held vb->lock, or the block was not queued yet: nobody else changed it):
            the carve completed -- the tail moved if it had not, the bits set, nr_used
            recounted from them (VA4) -- so that the step-3 undo frees it as a whole."""
            off = (addr - q[(vb + VL.VB_START) >> 3]) >> PAGE_SHIFT
            if u32[(vb + VL.VB_FREE) >> 2] == _BITS - off:
                u32[(vb + VL.VB_FREE) >> 2] = _BITS - off - n
            bits_set(vb + VL.VB_USED, off, n)
            bits_set(vb + VL.VB_STARTS, off, 1)
            u32[(vb + VL.VB_NR_USED) >> 2] = used_bits(vb)

        def used_bits(vb: int) -> int:
            """The block's used pages, counted from its bitmap (recovery)."""
            return sum(int(q[((vb + VL.VB_USED) >> 3) + w]).bit_count() for w in range(_BITS // 64))

        def new_vmap_block(nid: int, r: int = -1) -> int:
            """new_vmap_block(): a 1 MiB area of the node's slice and its record (not on a
            queue yet); 0 without address space or memory.  With a vm_vb_alloc record r:
            its a0 and steps 1-2 (try_slice's), back to 0 if no block record came."""
            va = alloc_vmap_area(VL.VMAP_BLOCK_SIZE, VL.VMAP_BLOCK_SIZE, nid, VL.VA_BLOCK, r)
            if not va:
                return 0
            if r >= 0:                                   # the hand-off window: the record until a1 has it
                q[ho] = 0
                q[pend] = 1
            a = vb_cache.alloc()
            if r >= 0:
                q[r + 2] = a - VOFF if a else 0         # a1 at step 2: the block record (vb_alloc_undo)
                q[pend] = 0
            if not a:
                remove_area(va, r)
                return 0
            vb = a - VOFF
            u8[vb : vb + VL.VB_REC] = zero_vb
            s = q[(va + VL.VA_START) >> 3]
            q[(vb + VL.VB_VA) >> 3] = va
            q[(vb + VL.VB_START) >> 3] = s
            u32[(vb + VL.VB_FREE) >> 2] = _BITS
            u32[(vb + VL.VB_DIRTY_MIN) >> 2] = _BITS
            u32[(vb + VL.VB_CPU) >> 2] = cpu
            u32[(vb + VL.VB_NID) >> 2] = nid
            q[(va + VL.VA_VB) >> 3] = vb
            q[(va + VL.VA_PAGES) >> 3] = 0
            q[(va + VL.VA_SIZE) >> 3] = VL.VMAP_BLOCK_SIZE
            u32[(va + VL.VA_FLAGS) >> 2] = VL.VA_BLOCK | VL.VA_BUSY
            q[TABLE + ((s - START) >> 20)] = vb
            fetch_add(base + VL.H_NR_BLOCKS, 1)
            return vb

        def free_vmap_block(vb: int) -> None:
            """free_vmap_block(): every page of the block is dirty (or none is used and it
            is being purged): its table entry goes, its area goes lazy (the purge's flush
            covers the dirty range), then its record is freed -- the area first, so that a
            vm_vb_retire record (robust mode) names a record still to be freed."""
            va = q[(vb + VL.VB_VA) >> 3]
            s = q[(vb + VL.VB_START) >> 3]
            r = begin(_OP_VB_RETIRE, vb, va) if begin is not None else -1
            try:
                q[TABLE + ((s - START) >> 20)] = 0
                u32[(vb + VL.VB_STATE) >> 2] = VL.VB_DEAD
                fetch_add(base + VL.H_NR_BLOCKS, _FULL64)
                if r >= 0:
                    q[r + 7] = 1
                free_area_lazy(va, _BITS, r)               # step 3 once lazy (a purge may follow)
                if r >= 0:
                    if fp:
                        fp(P_VB_RETIRE_LAZY)
                    q[r + 7] = 0                           # the record forgotten before its free
                vb_cache.free(vb + VOFF)
            finally:
                if r >= 0:
                    log_end(r)

        def retire_finish(vb: int, va: int, step: int) -> None:
            """Recovery of a vm_vb_retire record: at step 1 the area is made lazy, then
            (steps 1 and 3) the block record freed."""
            if step == 1:
                free_area_lazy(va, _BITS)
            if step in (1, 3):
                vb_cache.free(vb + VOFF)

        def retire_orphans(blocks: list[int]) -> int:
            """Free `blocks` (dead_blocks(arena): marked dead, still in the table -- a CPU
            died between choosing them for retirement and freeing them).  Recovery only
            (the world stopped).  Returns how many were freed."""
            for vb in blocks:
                free_vmap_block(vb)
            return len(blocks)

        def vbq_unlink(qo: int, prev: int, vb: int) -> None:
            """Take vb (after prev; 0: vb is the head) off the CPU queue at qo (its
            &vbq->lock held)."""
            nxt = q[(vb + VL.VB_NEXT) >> 3]
            if prev:
                q[(prev + VL.VB_NEXT) >> 3] = nxt
            else:
                q[(qo + VL.VBQ_HEAD) >> 3] = nxt
            q[(qo + VL.VBQ_NR) >> 3] -= 1

        def vb_alloc(n: int, nid: int, r: int = -1) -> int:
            """vb_alloc(): n pages (the guard included) from this CPU's blocks of node nid,
            first fit; a new block when none fits.  Returns the address or 0.  With a
            vm_vb_alloc record r: the new block's area (steps 1-2), then vb, addr, n and
            step 3 stored with the carve (no fault point between)."""
            retire: list[int] = []
            addr = 0
            qlock(my_vbq + VL.VBQ_LOCK)
            try:
                prev, vb = 0, q[(my_vbq + VL.VBQ_HEAD) >> 3]
                while vb:
                    nxt = q[(vb + VL.VB_NEXT) >> 3]
                    if u32[(vb + VL.VB_NID) >> 2] == nid:
                        block_lock(vb + VL.VB_LOCK)
                        off = carve(vb, n, r)
                        unlink = False
                        if off >= 0:
                            addr = q[(vb + VL.VB_START) >> 3] + (off << PAGE_SHIFT)
                            if not u32[(vb + VL.VB_FREE) >> 2]:
                                u32[(vb + VL.VB_STATE) >> 2] = VL.VB_FULL
                                unlink = True
                        elif not u32[(vb + VL.VB_NR_USED) >> 2] and \
                                u32[(vb + VL.VB_FREE) >> 2] < VL.VMAP_PURGE_THRESHOLD:
                            u32[(vb + VL.VB_STATE) >> 2] = VL.VB_DEAD     # purge_fragmented_block()
                            retire.append(vb)
                            unlink = True
                        block_unlock(vb + VL.VB_LOCK)
                        if unlink:
                            vbq_unlink(my_vbq, prev, vb)
                            vb = prev
                        if addr:
                            break
                    prev, vb = vb, nxt
            finally:
                qunlock(my_vbq + VL.VBQ_LOCK)
            for vb in retire:
                free_vmap_block(vb)
            if addr:
                return addr
            vb = new_vmap_block(nid, r)
            if not vb:
                return 0
            off = carve(vb, n, r)                   # not queued yet: no lock needed
            addr = q[(vb + VL.VB_START) >> 3] + (off << PAGE_SHIFT)
            qlock(my_vbq + VL.VBQ_LOCK)
            try:
                if u32[(vb + VL.VB_FREE) >> 2]:
                    u32[(vb + VL.VB_STATE) >> 2] = VL.VB_QUEUED
                    q[(vb + VL.VB_NEXT) >> 3] = q[(my_vbq + VL.VBQ_HEAD) >> 3]
                    q[(my_vbq + VL.VBQ_HEAD) >> 3] = vb
                    q[(my_vbq + VL.VBQ_NR) >> 3] += 1
                else:
                    u32[(vb + VL.VB_STATE) >> 2] = VL.VB_FULL
            finally:
                qunlock(my_vbq + VL.VBQ_LOCK)
            return addr

        def block_of(addr: int) -> int:
            if not START <= addr < END:
                return 0
            i = (addr - START) >> 20
            return q[TABLE + i] if i < nr_table else 0

        def vb_free(addr: int, vb: int, free: bool) -> bool:
            """vb_free(): claim the allocation, unmap and free its pages, then mark them
            dirty; a block whose pages are all dirty is freed.  False when addr starts no
            allocation of the block.  The claim clears the used bit of the allocation's
            first page and keeps its start bit: a second vfree of it fails on the used
            bit, and a concurrent vb_free of the allocation before it still stops its
            length scan at this start bit (clearing the start bit first let that scan run
            on into this allocation, which was then freed twice)."""
            s = q[(vb + VL.VB_START) >> 3]
            off = (addr - s) >> PAGE_SHIFT
            if addr & (PAGE_SIZE - 1) or not 0 <= off < _BITS:
                return False
            # a3 = free from the start: a kill before the claim is rolled forward (vb_free_finish)
            r = begin(_OP_VB_FREE, vb, addr, 0, int(free)) if begin is not None else -1
            if r >= 0:
                q[r + 6] = 0                                  # a5: the page in hand (unmap_range)
            try:
                block_lock(vb + VL.VB_LOCK)
                try:
                    if u32[(vb + VL.VB_STATE) >> 2] == VL.VB_DEAD or not bit(vb + VL.VB_STARTS, off) \
                            or not bit(vb + VL.VB_USED, off):
                        return False
                    n = 1
                    while off + n < _BITS and bit(vb + VL.VB_USED, off + n) and \
                            not bit(vb + VL.VB_STARTS, off + n):
                        n += 1
                    if r >= 0:
                        q[r + 3] = n                          # before the claim: step 0 + claimed
                    bits_clear(vb + VL.VB_USED, off, 1)       # claimed: a second vfree fails here
                    if r >= 0:
                        q[r + 7] = 1
                finally:
                    block_unlock(vb + VL.VB_LOCK)
                got = unmap_range(addr, n - 1, free, r + 6 if r >= 0 else -1)
                if free:
                    fetch_add(base + VL.H_NR_PAGES, (-got) & _FULL64)
                if r >= 0:
                    q[r + 7] = 2
                    if fp:
                        fp(P_VB_FREE_UNMAPPED)
                vb_free_tail(vb, off, n, r)
            finally:
                if r >= 0:
                    log_end(r)
            return True

        def vb_free_finish(vb: int, addr: int, n: int, free: bool, step: int, hand: int = 0) -> None:
            """Recovery of a vm_vb_free record (no block: finished): at step 0 the free
            is done (vb_free), or, claimed already (n known, the used bit clear), resumed
            at step 1 -- while the allocation's start bit is set; at step 1 what is still
            mapped is unmapped (pages freed when `free`, and the page a5 names) and the
            allocation's pages uncounted (the dead CPU uncounts them all at once, after
            the unmap); then (steps 1-2) the range is marked dirty and the block retired
            if that emptied it."""
            if not vb:                                        # done (vb_free_tail's end)
                return
            if step == 0:
                # not claimed (its used bit set), or claimed (n stored first) without its
                # step: the vfree the dead CPU began is done -- vfree cannot fail
                off = (addr - q[(vb + VL.VB_START) >> 3]) >> PAGE_SHIFT
                if not bit(vb + VL.VB_STARTS, off):
                    return
                if not n or bit(vb + VL.VB_USED, off):
                    vb_free(addr, vb, free)
                    return
                step = 1
            if step == 1:
                unmap_finish(hand, addr, n - 1, free)
                if free:
                    fetch_add(base + VL.H_NR_PAGES, (-(n - 1)) & _FULL64)
            if step in (1, 2):
                vb_free_tail(vb, (addr - q[(vb + VL.VB_START) >> 3]) >> PAGE_SHIFT, n, -1, True)

        def vb_free_tail(vb: int, off: int, n: int, r: int, redo: bool = False) -> None:
            """vb_free's second half: the claimed, unmapped range [off, off + n) marked
            dirty; the block freed when every page is dirty, retired when it is idle
            (record r, if any, back to step 0 first: the retirement logs itself).
            Recovery's `redo` (the dead CPU may have died with part of this done, under
            the lock) sets the counts from the bits instead of moving them by n
            (VA4: nr_used == used bits, free + dirty + used == 256) -- exact once every
            dead CPU's claim in the block is resolved, as no live CPU is inside one."""
            block_lock(vb + VL.VB_LOCK)
            try:
                bits_clear(vb + VL.VB_STARTS, off, 1)
                bits_clear(vb + VL.VB_USED, off + 1, n - 1)
                if not redo:
                    u32[(vb + VL.VB_NR_USED) >> 2] -= n
                    dirty = u32[(vb + VL.VB_DIRTY) >> 2] + n
                else:
                    nused = used_bits(vb)
                    u32[(vb + VL.VB_NR_USED) >> 2] = nused
                    dirty = _BITS - u32[(vb + VL.VB_FREE) >> 2] - nused
                u32[(vb + VL.VB_DIRTY) >> 2] = dirty
                u32[(vb + VL.VB_DIRTY_MIN) >> 2] = min(u32[(vb + VL.VB_DIRTY_MIN) >> 2], off)
                u32[(vb + VL.VB_DIRTY_MAX) >> 2] = max(u32[(vb + VL.VB_DIRTY_MAX) >> 2], off + n)
                dead = dirty == _BITS
                if dead:
                    u32[(vb + VL.VB_STATE) >> 2] = VL.VB_DEAD
                idle = not dead and not u32[(vb + VL.VB_NR_USED) >> 2] and \
                    u32[(vb + VL.VB_FREE) >> 2] < VL.VMAP_PURGE_THRESHOLD
                if r >= 0:
                    q[r + 1] = 0                              # done: step 0 with no block is
                    q[r + 7] = 0                              # not the step 0 of a free not begun
            finally:
                block_unlock(vb + VL.VB_LOCK)
            if dead:
                free_vmap_block(vb)
            elif idle:
                retire_idle_block(vb)

        def retire_idle_block(vb: int) -> None:
            """purge_fragmented_block() at the free that left the block with nothing in use
            and less than a quarter never handed out: off its CPU's queue (&vbq->lock, then
            &vb->lock, the state re-checked) and freed -- its pages are all unmapped, so
            its area goes lazy and the next purge flushes its dirty range."""
            qo = vbqs[u32[(vb + VL.VB_CPU) >> 2]]
            qlock(qo + VL.VBQ_LOCK)
            try:
                block_lock(vb + VL.VB_LOCK)
                try:
                    ok = u32[(vb + VL.VB_STATE) >> 2] != VL.VB_DEAD and not u32[(vb + VL.VB_NR_USED) >> 2]
                    queued = u32[(vb + VL.VB_STATE) >> 2] == VL.VB_QUEUED
                    if ok:
                        u32[(vb + VL.VB_STATE) >> 2] = VL.VB_DEAD
                finally:
                    block_unlock(vb + VL.VB_LOCK)
                if ok and queued:
                    prev, cur = 0, q[(qo + VL.VBQ_HEAD) >> 3]
                    while cur and cur != vb:
                        prev, cur = cur, q[(cur + VL.VB_NEXT) >> 3]
                    if cur:
                        vbq_unlink(qo, prev, vb)
            finally:
                qunlock(qo + VL.VBQ_LOCK)
            if ok:
                free_vmap_block(vb)

        # -------------------------------------------------------- vmalloc / vfree
        def vmalloc_node_range(size: int, align: int, nid: int, gfp: int, kind: int, lead: int = 0,
                               owner: int = 0) -> int:
            """__vmalloc_node_range(): see the module docstring.  kind: VA_ALLOC (| VA_HUGE
            for vmalloc_huge, | VA_STACK with lead = 1 leading guard page)."""
            if size <= 0 or size > SLICE:
                return fail(size, "invalid size") if size > 0 else 0
            npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
            if nid < 0:
                nid = mynid
            if npages < block_max and not kind & (VL.VA_HUGE | VL.VA_STACK):
                if begin is not None:
                    r = begin(_OP_VB_ALLOC)
                    q[r + 5] = 0                              # no page in hand (begin leaves a3, a4)
                    try:
                        addr = vb_alloc(npages + 1, nid, r)
                        if not addr:
                            return fail(size, "vm_struct allocation failed")
                        return vb_fill_logged(q[r + 2], addr, size, npages, nid, gfp, r)
                    finally:
                        log_end(r)
                addr = vb_alloc(npages + 1, nid)
                if not addr:
                    return fail(size, "vm_struct allocation failed")
                pfns = alloc_pages_for(npages, nid, gfp)
                if pfns is None or not map_small(addr, pfns):
                    if pfns is not None:
                        unmap_range(addr, npages, False)
                        for p in pfns:
                            free_pages(p, 0)
                    vb_free(addr, block_of(addr), False)
                    return fail(size, "page allocation failure")
                fetch_add(base + VL.H_NR_PAGES, npages)
                if shadow is not None:
                    poison_tail(addr, size, npages)
                return addr
            huge = bool(kind & VL.VA_HUGE) and huge_ok and npages >= _PMD_PAGES
            if huge:
                align = max(align, VL.PMD_SIZE)
            total = (npages + 1 + lead) << PAGE_SHIFT
            if begin is not None:
                r = begin(_OP_VMALLOC)
                q[r + 4] = 0                                  # no page in hand (begin leaves a3, a4)
                q[r + 5] = 0
                try:
                    va = alloc_vmap_area(total, max(align, PAGE_SIZE), nid, kind & ~VL.VA_BUSY, r)
                    if not va:
                        return fail(size, "vm_struct allocation failed")
                    addr = q[(va + VL.VA_START) >> 3] + (lead << PAGE_SHIFT)
                    q[r + 2] = addr
                    q[r + 3] = npages
                    return vmalloc_logged(va, addr, size, npages, nid, gfp, kind, owner, r, huge)
                finally:
                    log_end(r)
            va = alloc_vmap_area(total, max(align, PAGE_SIZE), nid, kind & ~VL.VA_BUSY)
            if not va:
                return fail(size, "vm_struct allocation failed")
            addr = q[(va + VL.VA_START) >> 3] + (lead << PAGE_SHIFT)
            i, mapped, ok = 0, 0, True
            while i < npages:
                a = addr + (i << PAGE_SHIFT)
                if huge and not a & (VL.PMD_SIZE - 1) and npages - i >= _PMD_PAGES:
                    pmd = table_for(a, 2, True)
                    if pmd >= 0 and not q[P8 + (pmd << 9) + ((a >> 21) & 511)]:
                        pfn = alloc_pages_node(nid, gfp | _GFP_NOWARN, VL.PMD_ORDER)
                        if pfn >= 0:
                            q[P8 + (pmd << 9) + ((a >> 21) & 511)] = (pfn << PAGE_SHIFT) | _PAGE_KERNEL_LARGE
                            i += _PMD_PAGES
                            mapped += _PMD_PAGES
                            continue
                run = min(npages - i, 512 - ((a >> PAGE_SHIFT) & 511))   # up to the next PMD boundary
                pfns = alloc_pages_for(run, nid, gfp)
                if pfns is None or not map_small(a, pfns):
                    if pfns is not None:
                        unmap_range(a, run, False)
                        for p in pfns:
                            free_pages(p, 0)
                    ok = False
                    break
                i += run
                mapped += run
            if not ok:
                unmap_range(addr, npages, True)
                remove_area(va)
                return fail(size, "page allocation failure")
            q[(va + VL.VA_SIZE) >> 3] = size
            q[(va + VL.VA_PAGES) >> 3] = npages
            q[(va + VL.VA_VB) >> 3] = owner
            q[(va + VL.VA_CALLER) >> 3] = depot_save(arena, call_site())[0]
            fetch_add(base + VL.H_NR_PAGES, npages)
            if shadow is not None:
                poison_tail(addr, size, npages)
            u32[(va + VL.VA_FLAGS) >> 2] = kind | VL.VA_BUSY | (VL.VA_HUGE if huge else 0)
            _ = mapped
            return addr

        def vmalloc_logged(va: int, addr: int, size: int, npages: int, nid: int, gfp: int, kind: int,
                           owner: int, r: int, huge: bool = False) -> int:
            """vmalloc_node_range's filling in robust mode, inside a vm_vmalloc record r
            (a0 area, a1 address, a2 pages): each page -- or, for a huge area, each
            PMD-sized block where one fits -- is mapped as soon as it is had, and the
            block in hand (allocated, its PTE or PMD not yet stored) is the record's a3,
            its order a4 -- so the area's page tables and a3 say exactly what it holds;
            each allocation is a hand-off window (mm/intent.py) until a3 names its
            block (a4, the order, stored before it opens)."""
            gfp |= _GFP_NOWARN                                 # (alloc_pages_for's reason)
            i = 0
            while i < npages:
                a = addr + (i << PAGE_SHIFT)
                if huge and not a & (VL.PMD_SIZE - 1) and npages - i >= _PMD_PAGES:
                    pmd = table_for(a, 2, True)
                    if pmd >= 0 and not q[P8 + (pmd << 9) + ((a >> 21) & 511)]:
                        q[r + 5] = VL.PMD_ORDER                # the window's order, then the window
                        q[ho] = 0
                        q[pend] = 1
                        pfn = alloc_pages_node(nid, gfp, VL.PMD_ORDER)
                        if pfn >= 0:
                            q[r + 4] = pfn
                            q[pend] = 0
                            q[P8 + (pmd << 9) + ((a >> 21) & 511)] = (pfn << PAGE_SHIFT) | _PAGE_KERNEL_LARGE
                            q[r + 4] = 0
                            q[r + 5] = 0
                            i += _PMD_PAGES
                            if fp:
                                fp(P_VMALLOC_PAGE)
                            continue
                        q[pend] = 0
                        q[r + 5] = 0
                q[ho] = 0                            # the hand-off window: the page until a3 has it
                q[pend] = 1
                pfn = alloc_pages_node(nid, gfp, 0)
                if pfn < 0:
                    q[pend] = 0
                    return vmalloc_undo(va, addr, npages, 0, r, size)
                q[r + 4] = pfn
                q[pend] = 0
                if not map_small(a, [pfn]):
                    return vmalloc_undo(va, addr, npages, pfn, r, size)
                q[r + 4] = 0
                i += 1
                if fp:
                    fp(P_VMALLOC_PAGE)
            q[(va + VL.VA_SIZE) >> 3] = size
            q[(va + VL.VA_PAGES) >> 3] = npages
            q[(va + VL.VA_VB) >> 3] = owner
            q[(va + VL.VA_CALLER) >> 3] = depot_save(arena, call_site())[0]
            if shadow is not None:
                poison_tail(addr, size, npages)
            u32[(va + VL.VA_FLAGS) >> 2] = kind | VL.VA_BUSY
            fetch_add(base + VL.H_NR_PAGES, npages)          # after BUSY: the record's end is the area's
            return addr

        def vb_fill_logged(vb: int, addr: int, size: int, npages: int, nid: int, gfp: int, r: int) -> int:
            """The small path's filling in robust mode, inside a vm_vb_alloc record r at
            step 3: each page mapped as soon as it is had, the page in hand in a4 -- so
            the range's PTEs and a4 say exactly what it holds.  Counted once full (no
            fault point after: the record's end is the allocation's)."""
            gfp |= _GFP_NOWARN
            for i in range(npages):
                q[ho] = 0                    # the hand-off window: the page until a4 has it
                q[pend] = 1
                pfn = alloc_pages_node(nid, gfp, 0)
                if pfn < 0:
                    q[pend] = 0
                    return vb_alloc_undo(vb, addr, npages + 1, 0, r, size)
                q[r + 5] = pfn
                q[pend] = 0
                if not map_small(addr + (i << PAGE_SHIFT), [pfn]):
                    return vb_alloc_undo(vb, addr, npages + 1, pfn, r, size)
                q[r + 5] = 0
                if fp:
                    fp(P_VB_PAGE)
            fetch_add(base + VL.H_NR_PAGES, npages)
            if shadow is not None:
                poison_tail(addr, size, npages)
            return addr

        def area_landed(va: int) -> bool:
            """Recovery of a step-1 area record (its tree insert in flight): did the
            insert's store land (the slice's tree maps the record's range to it)?  Then
            the insert's own bookkeeping (the busy count) is done here and the caller
            undoes it as an area in its tree."""
            s = q[(va + VL.VA_START) >> 3]
            if not s:
                return False
            n = u32[(va + VL.VA_NID) >> 2]
            if n >= len(trees) or trees[n].mtree_load(s) != va:
                return False
            q[(nodes[n] + VL.VN_NR_BUSY) >> 3] += 1
            return True

        def vb_alloc_undo(vb: int, addr: int, n: int, inhand: int, r: int = -1, size: int = 0,
                          va: int = 0, step: int = 3) -> int:
            """A logged block allocation that failed, or that a dead CPU left (recovery,
            r = -1, its record's step): at step 3 the range's mapped pages and the page
            in hand are freed and the range given back to its block (vb_free without
            page frees: marked dirty, never visible to anyone else); at step 1 the new
            block's area record is freed, at step 2 its unpublished area erased -- and
            its block record, if new_vmap_block had one (`vb`: a1 from its allocation on,
            or the one the hand-off window names), taken out of the table and freed, the
            blocks recounted.
            Returns 0 (the failed allocation's address)."""
            if step == 1 and not area_landed(va):
                va_free(va + VOFF)
            elif step in (1, 2):
                if step == 2 and vb:                  # new_vmap_block's record (a1): out of the table, freed
                    i = TABLE + ((q[(va + VL.VA_START) >> 3] - START) >> 20)
                    if q[i] == vb:
                        q[i] = 0
                    vb_cache.free(vb + VOFF)
                    q[(base + VL.H_NR_BLOCKS) >> 3] = len(_table_blocks(arena))   # (its count may have landed)
                remove_area(va)
            elif step == 3:
                unmap_range(addr, n - 1, True)
                if inhand and u32[(PM + inhand * PAGE_META_SIZE + 8) >> 2]:    # not freed with the mapped ones
                    if r >= 0:
                        q[r + 5] = 0
                    free_pages(inhand, 0)
                if r >= 0:
                    q[r + 7] = 0
                vb_free(addr, vb, False)
            return fail(size, "page allocation failure") if r >= 0 else 0

        def vmalloc_undo(va: int, addr: int, npages: int, inhand: int, r: int = -1, size: int = 0,
                         step: int = 2, inhand_order: int = 0) -> int:
            """A logged vmalloc that failed, or that a dead CPU left (recovery, r = -1,
            its record's step): an area not yet BUSY loses its mapped pages (PTEs and
            huge PMDs; a vmap's are unmapped only), the block in hand (of
            `inhand_order`) and its range (never visible to anyone: no flush); at step 1
            only the record was had (not in a tree).  A BUSY area is complete (nothing undone).  Returns 0 (the failed
            allocation's address)."""
            if step < 1:
                return 0
            if step == 1 and not area_landed(va):
                va_free(va + VOFF)
                return 0
            fl = u32[(va + VL.VA_FLAGS) >> 2]
            if fl & VL.VA_BUSY:
                return 0
            start = q[(va + VL.VA_START) >> 3]                # the whole range: the record's
            unmap_range(start, (q[(va + VL.VA_END) >> 3] - start) >> PAGE_SHIFT,   # a1/a2 may lag
                        not fl & VL.VA_VMAP)                  # a vmap's pages are its caller's
            if inhand and u32[(PM + inhand * PAGE_META_SIZE + 8) >> 2]:    # not freed with the mapped ones
                if r >= 0:
                    q[r + 4] = 0
                free_pages(inhand, inhand_order)
            remove_area(va, r)
            return fail(size, "page allocation failure") if r >= 0 else 0

        def vmalloc(size: int) -> int:
            return vmalloc_node_range(size, PAGE_SIZE, -1, GFP_KERNEL, VL.VA_ALLOC)

        def vzalloc(size: int) -> int:
            return vmalloc_node_range(size, PAGE_SIZE, -1, GFP_KERNEL | _GFP_ZERO, VL.VA_ALLOC)

        def vmalloc_node(size: int, nid: int) -> int:
            return vmalloc_node_range(size, PAGE_SIZE, nid, GFP_KERNEL, VL.VA_ALLOC)

        def vzalloc_node(size: int, nid: int) -> int:
            return vmalloc_node_range(size, PAGE_SIZE, nid, GFP_KERNEL | _GFP_ZERO, VL.VA_ALLOC)

        def vmalloc_huge(size: int, nid: int = -1) -> int:
            return vmalloc_node_range(size, PAGE_SIZE, nid, GFP_KERNEL, VL.VA_ALLOC | VL.VA_HUGE)

        def vmalloc_stack(nid: int, owner: int) -> int:
            """A kernel stack (alloc_thread_stack_node with VMAP_STACK): THREAD_SIZE with a
            guard page on each side; returns the stack's lowest address."""
            return vmalloc_node_range(VL.THREAD_SIZE, PAGE_SIZE, nid, GFP_KERNEL, VL.VA_ALLOC | VL.VA_STACK,
                                      lead=1, owner=owner)

        def vmap(pfns: list[int]) -> int:
            """vmap(): the caller's pages at a new area (theirs: vunmap leaves them).
            Robust mode logs it as a vm_vmalloc record with no page in hand: a death
            before the area is BUSY unmaps it and gives its range back, the pages stay
            the caller's (vmalloc_undo of a VA_VMAP area frees none)."""
            if not pfns:
                return 0
            r = begin(_OP_VMALLOC) if begin is not None else -1
            try:
                if r >= 0:
                    q[r + 4] = 0
                    q[r + 5] = 0
                va = alloc_vmap_area((len(pfns) + 1) << PAGE_SHIFT, PAGE_SIZE, mynid, VL.VA_VMAP, r)
                if not va:
                    return fail(len(pfns) << PAGE_SHIFT, "vm_struct allocation failed")
                addr = q[(va + VL.VA_START) >> 3]
                if r >= 0:
                    q[r + 2] = addr
                    q[r + 3] = len(pfns)
                if not map_small(addr, pfns):
                    unmap_range(addr, len(pfns), False)
                    remove_area(va, r)
                    return fail(len(pfns) << PAGE_SHIFT, "page table allocation failure")
                q[(va + VL.VA_SIZE) >> 3] = len(pfns) << PAGE_SHIFT
                q[(va + VL.VA_PAGES) >> 3] = len(pfns)
                q[(va + VL.VA_CALLER) >> 3] = depot_save(arena, call_site())[0]
                u32[(va + VL.VA_FLAGS) >> 2] = VL.VA_VMAP | VL.VA_BUSY
                return addr
            finally:
                if r >= 0:
                    log_end(r)

        def remove_vm_area(addr: int, want_vmap: bool) -> None:
            """vfree / vunmap of an area: unmap (and free the pages of a VM_ALLOC area),
            then the area goes lazy."""
            va = find_vmap_area(addr)
            fl = u32[(va + VL.VA_FLAGS) >> 2] if va else 0
            lead = PAGE_SIZE if fl & VL.VA_STACK else 0
            if not va or not fl & VL.VA_BUSY or fl & VL.VA_BLOCK or q[(va + VL.VA_START) >> 3] + lead != addr \
                    or bool(fl & VL.VA_VMAP) != want_vmap:
                warn(arena, "vfree", f"WARNING: CPU: {cpu} at mm/vmalloc.c vfree\n"
                                     f"Trying to {'vunmap' if want_vmap else 'vfree'}() nonexistent vm area "
                                     f"({addr:#018x})\nCall Trace:\n {call_site()}")
                return
            npages = q[(va + VL.VA_PAGES) >> 3]
            # the area is ours until it is marked lazy: clear the flag first so a second
            # vfree racing with this one finds no busy area
            n = u32[(va + VL.VA_NID) >> 2]
            acq, rel = node_locks[n].acquire, node_locks[n].release
            # a3 = vmap from the start: a kill before the BUSY clear is rolled forward
            r = begin(_OP_VFREE, va, addr, npages, int(want_vmap)) if begin is not None else -1
            if r >= 0:
                q[r + 6] = 0                                  # a5: the page in hand (unmap_range)
            try:
                acq()
                try:
                    if not u32[(va + VL.VA_FLAGS) >> 2] & VL.VA_BUSY:
                        return
                    u32[(va + VL.VA_FLAGS) >> 2] &= ~VL.VA_BUSY
                    if r >= 0:
                        q[r + 7] = 1
                finally:
                    rel()
                unmap_range(addr, npages, not want_vmap, r + 6 if r >= 0 else -1)
                if not want_vmap:
                    fetch_add(base + VL.H_NR_PAGES, (-npages) & _FULL64)
                if r >= 0:
                    q[r + 7] = 2
                    if fp:
                        fp(P_VFREE_UNMAPPED)
                free_area_lazy(va, (q[(va + VL.VA_END) >> 3] - q[(va + VL.VA_START) >> 3]) >> PAGE_SHIFT, r)
            finally:
                if r >= 0:
                    log_end(r)

        def vfree(addr: int) -> None:
            """vfree(): see the module docstring (0: nothing)."""
            if not addr:
                return
            vb = block_of(addr)
            if vb and q[(vb + VL.VB_START) >> 3] <= addr < q[(vb + VL.VB_START) >> 3] + VL.VMAP_BLOCK_SIZE:
                if not vb_free(addr, vb, True):
                    warn(arena, "vfree", f"WARNING: CPU: {cpu} at mm/vmalloc.c vfree\n"
                                         f"Trying to vfree() nonexistent vm area ({addr:#018x})\nCall Trace:\n"
                                         f" {call_site()}")
                return
            remove_vm_area(addr, False)

        def vunmap(addr: int) -> None:
            if addr:
                remove_vm_area(addr, True)

        def purge_fragmented_blocks(c: int) -> int:
            """purge_fragmented_blocks(c) as _vm_unmap_aliases runs it (force_purge):
            every block on CPU c's queue with nothing in use (free + dirty == 256, not
            all dirty) is taken off the queue (&vbq->lock, then &vb->lock) and freed --
            its area goes lazy, so the purge that follows flushes it.  Returns how many."""
            qo = vbqs[c]
            retire: list[int] = []
            qlock(qo + VL.VBQ_LOCK)
            try:
                prev, vb = 0, q[(qo + VL.VBQ_HEAD) >> 3]
                while vb:
                    nxt = q[(vb + VL.VB_NEXT) >> 3]
                    block_lock(vb + VL.VB_LOCK)
                    take = u32[(vb + VL.VB_STATE) >> 2] == VL.VB_QUEUED and not u32[(vb + VL.VB_NR_USED) >> 2]
                    if take:
                        u32[(vb + VL.VB_STATE) >> 2] = VL.VB_DEAD
                    block_unlock(vb + VL.VB_LOCK)
                    if take:
                        vbq_unlink(qo, prev, vb)
                        retire.append(vb)
                    else:
                        prev = vb
                    vb = nxt
            finally:
                qunlock(qo + VL.VBQ_LOCK)
            for vb in retire:                       # (a death here: recovery's retire_orphans)
                free_vmap_block(vb)
            return len(retire)

        def vm_unmap_aliases() -> int:
            """vm_unmap_aliases(): the blocks with nothing in use freed on every CPU
            (purge_fragmented_blocks_allcpus), then every block's dirty range and the
            lazy areas flushed with one shootdown (the purge's); returns the areas purged."""
            for c in range(nr_cpus):
                purge_fragmented_blocks(c)
            lo, hi = END, START
            for i in range(nr_table):
                vb = q[TABLE + i]
                if not vb:
                    continue
                block_lock(vb + VL.VB_LOCK)
                try:
                    if u32[(vb + VL.VB_STATE) >> 2] != VL.VB_DEAD and u32[(vb + VL.VB_DIRTY_MAX) >> 2]:
                        s = q[(vb + VL.VB_START) >> 3]
                        lo = min(lo, s + (u32[(vb + VL.VB_DIRTY_MIN) >> 2] << PAGE_SHIFT))
                        hi = max(hi, s + (u32[(vb + VL.VB_DIRTY_MAX) >> 2] << PAGE_SHIFT))
                        u32[(vb + VL.VB_DIRTY_MIN) >> 2] = _BITS
                        u32[(vb + VL.VB_DIRTY_MAX) >> 2] = 0
                finally:
                    block_unlock(vb + VL.VB_LOCK)
            return purge_vmap_area_lazy(True, (lo, hi) if lo < hi else (0, 0))

        def stack_cache_get() -> int:
            """A cached kernel stack of this CPU (kernel/fork.c cached_stacks), or 0."""
            for k in range(VL.NR_CACHED_STACKS):
                i = (my_vbq + VL.VBQ_STACK + 8 * k) >> 3
                s = q[i]
                if s:
                    q[i] = 0
                    return s
            return 0

        def stack_cache_put(stack: int) -> bool:
            for k in range(VL.NR_CACHED_STACKS):
                i = (my_vbq + VL.VBQ_STACK + 8 * k) >> 3
                if not q[i]:
                    q[i] = stack
                    return True
            return False

        def drain_stack_cache(c: int) -> int:
            """The cached stacks of CPU c back to vmalloc (its teardown, or a dead CPU)."""
            n = 0
            for k in range(VL.NR_CACHED_STACKS):
                i = (vbqs[c] + VL.VBQ_STACK + 8 * k) >> 3
                s = q[i]
                if s:
                    q[i] = 0
                    vfree(s)
                    n += 1
            return n

        self.vmalloc, self.vzalloc, self.vmalloc_node, self.vzalloc_node = vmalloc, vzalloc, vmalloc_node, vzalloc_node
        self.vmalloc_huge, self.vfree, self.vmap, self.vunmap = vmalloc_huge, vfree, vmap, vunmap
        self.vmalloc_to_page, self.find_vmap_area, self.vm_unmap_aliases = vmalloc_to_page, find_vmap_area, \
            vm_unmap_aliases
        self.purge_vmap_area_lazy, self.vmalloc_stack, self.vmalloc_node_range = (purge_vmap_area_lazy,
                                                                                  vmalloc_stack, vmalloc_node_range)
        self.alloc_vmap_area, self.block_of, self.slice_of = alloc_vmap_area, block_of, slice_of
        self.free_vmap_area = remove_area          # a never-mapped area, erased at once (tests, errors)
        self.vmalloc_undo = vmalloc_undo
        self.purge_undo, self.vfree_finish = purge_undo, vfree_finish
        self.vb_alloc_undo, self.vb_free_finish, self.retire_finish, self.retire_orphans = (
            vb_alloc_undo, vb_free_finish, retire_finish, retire_orphans)
        self.carve_finish = carve_finish
        self.stack_cache_get, self.stack_cache_put, self.drain_stack_cache = (stack_cache_get, stack_cache_put,
                                                                              drain_stack_cache)
        self.table_for = table_for
        _ = (load64, _GFP_THISNODE)


# ------------------------------------------------------------------ views (racy, read-only)
def _table_blocks(arena: Any) -> list[int]:
    """The block records the block table names, in address order."""
    import numpy as np

    q = arena.u64
    base = arena.off("vmalloc")
    nr_nodes = q[(base + VL.H_NR_NODES) >> 3]
    nr_table = q[(base + VL.H_SIZE) >> 3] // VL.VMAP_BLOCK_SIZE
    t = VL.table_off(base, nr_nodes, int(arena.config["nr_cpus"]))
    tab = arena.array("vmalloc", np.uint64, nr_table, t - base)
    live = np.flatnonzero(tab).tolist()
    del tab
    return [q[(t >> 3) + i] for i in live]


def repair_block_queues(arena: Any, dead_cpu: int) -> int:
    """Recovery (the world stopped, after the dead CPU's records): every CPU's
    vmap_block queue whose lock is free is made to hold exactly its blocks with free
    pages (VA4), state QUEUED -- and FULL those with none.  A CPU killed from outside
    between a carve and its unlink (vb_alloc), between marking a block and unlinking it
    (retire_idle_block, on any CPU's queue), or between making a block and queueing it
    leaves a queue that disagrees with its blocks: a FULL or DEAD block on it (freed
    later under the queue's feet), or a block with room on none.  Blocks not yet
    queued (state 0) are only the dead CPU's to queue: a live CPU's is in its own
    vb_alloc, which queues it.  A queue whose lock a live CPU holds is left to it.  The
    queue's order is kept; blocks added go to its tail.  Returns the blocks moved."""
    if not vmalloc_ready(arena):
        return 0
    q, u32 = arena.u64, arena.u32
    base = arena.off("vmalloc")
    nr_nodes = q[(base + VL.H_NR_NODES) >> 3]
    nr_cpus = int(arena.config["nr_cpus"])
    blocks = [vb for vb in _table_blocks(arena) if u32[(vb + VL.VB_STATE) >> 2] != VL.VB_DEAD]
    known = set(blocks)
    moved = 0
    for c in range(nr_cpus):
        qo = VL.vbq_off(base, nr_nodes, c)
        if q[(qo + VL.VBQ_LOCK) >> 3] & ((1 << 48) - 1):
            continue                                         # a live CPU's, under its lock
        mine = [vb for vb in blocks if u32[(vb + VL.VB_CPU) >> 2] == c
                and (u32[(vb + VL.VB_STATE) >> 2] or c == dead_cpu)]
        room = {vb for vb in mine if u32[(vb + VL.VB_FREE) >> 2]}
        was: list[int] = []
        seen: set[int] = set()
        vb = q[(qo + VL.VBQ_HEAD) >> 3]
        while vb in known and vb not in seen:               # (a freed or foreign link ends it)
            was.append(vb)
            seen.add(vb)
            vb = q[(vb + VL.VB_NEXT) >> 3]
        order = [vb for vb in was if vb in room] + [vb for vb in mine if vb in room and vb not in seen]
        moved += len(seen ^ set(order))
        for vb in mine:
            u32[(vb + VL.VB_STATE) >> 2] = VL.VB_QUEUED if vb in room else VL.VB_FULL
        for a, b in zip(order, [*order[1:], 0]):
            q[(a + VL.VB_NEXT) >> 3] = b
        q[(qo + VL.VBQ_HEAD) >> 3] = order[0] if order else 0
        q[(qo + VL.VBQ_NR) >> 3] = len(order)
    return moved


def dead_blocks(arena: Any) -> list[int]:
    """The vmap_blocks marked dead (VB_DEAD) but still in the block table: chosen for
    retirement by a CPU that died before freeing them (vb_alloc's fragmented blocks,
    purge_fragmented_blocks' list).  Only meaningful with the world stopped (a live CPU
    holds such a block only inside a logged operation, and parks outside one)."""
    if not vmalloc_ready(arena):
        return []
    u32 = arena.u32
    return [vb for vb in _table_blocks(arena) if u32[(vb + VL.VB_STATE) >> 2] == VL.VB_DEAD]


def vmalloc_areas(arena: Any) -> list[dict[str, Any]]:
    """Every area of every slice in address order (busy, lazy and blocks), read without
    locks: {start, end, size, flags, nid, nr_pages, caller, vb, rec}."""
    from aerosync.lib.maple_tree import MapleTree

    q, u32 = arena.u64, arena.u32
    base = arena.off("vmalloc")
    nr_nodes = q[(base + VL.H_NR_NODES) >> 3]
    partitioned = bool(q[(base + VL.H_FLAGS) >> 3] & VL.VMF_NUMA_PARTITION)
    out = []
    for n in range(nr_nodes if partitioned else 1):
        t = MapleTree(arena, VL.node_off(base, n) + VL.VN_MT)
        try:
            items = list(t.mt_for_each())
        except (IndexError, ValueError):
            continue
        for first, last, va in items:
            if va <= 0 or va % 8 or va + VL.VA_REC > arena.size:
                continue
            out.append({"start": first, "end": last + 1, "rec": va, "va_start": q[(va + VL.VA_START) >> 3],
                        "va_end": q[(va + VL.VA_END) >> 3], "flags": u32[(va + VL.VA_FLAGS) >> 2],
                        "nid": u32[(va + VL.VA_NID) >> 2], "size": q[(va + VL.VA_SIZE) >> 3],
                        "nr_pages": q[(va + VL.VA_PAGES) >> 3], "caller": q[(va + VL.VA_CALLER) >> 3],
                        "vb": q[(va + VL.VA_VB) >> 3], "node": n})
    out.sort(key=lambda d: d["start"])
    return out


def _page_nodes(arena: Any, start: int, npages: int) -> dict[int, int]:
    """show_numa_info(): pages of [start, +npages) per node, through init_mm's tables."""
    from aerosync.mm.vm import mm_types as T

    q, u8 = arena.u64, arena.u8
    phys = arena.off("physmem")
    pm = arena.off("pagemeta")
    levels = q[(arena.off("vmhdr") + T.H_LEVELS) >> 3]
    root = q[(T.mm_off(arena, 0) + T.M_PGD) >> 3]
    nr_pages = arena.sections["physmem"][1] >> PAGE_SHIFT
    counts: dict[int, int] = {}
    i = 0
    while i < npages:
        a = start + (i << PAGE_SHIFT)
        t, ok = root, True
        for lvl in range(levels, 1, -1):
            e = q[(phys >> 3) + (t << 9) + ((a >> level_shift(lvl)) & 511)]
            if not e & _PAGE_PRESENT:
                ok = False
                break
            if e & _PAGE_PSE:
                pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                if pfn < nr_pages:
                    nid = u8[pm + pfn * 64 + 7]
                    counts[nid] = counts.get(nid, 0) + _PMD_PAGES
                i += _PMD_PAGES
                ok = False
                t = -1
                break
            t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            if t >= nr_pages:
                ok = False
                break
        if t == -1:
            continue
        if ok:
            e = q[(phys >> 3) + (t << 9) + ((a >> PAGE_SHIFT) & 511)]
            pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            if e & _PAGE_PRESENT and pfn < nr_pages:
                nid = u8[pm + pfn * 64 + 7]
                counts[nid] = counts.get(nid, 0) + 1
        i += 1
    return counts


def vmallocinfo_json(arena: Any) -> list[dict[str, Any]]:
    """The areas /proc/vmallocinfo shows, in its order (busy, then unpurged)."""
    from aerosync.mm.slab.slab_debug import depot_fetch

    busy, lazy = [], []
    for d in vmalloc_areas(arena):
        s, e, fl = d["va_start"], d["va_end"], d["flags"]
        if fl & VL.VA_LAZY:
            lazy.append({"start": s, "end": e, "size": e - s, "kind": "unpurged", "caller": "", "pages": 0,
                         "nodes": {}})
        elif not fl & VL.VA_BUSY:
            continue                               # VM_UNINITIALIZED: being set up
        elif fl & VL.VA_BLOCK:
            busy.append({"start": s, "end": e, "size": e - s, "kind": "vm_map_ram", "caller": "", "pages": 0,
                         "nodes": {}})
        else:
            addr = s + (PAGE_SIZE if fl & VL.VA_STACK else 0)
            busy.append({"start": addr, "end": e, "size": e - addr, "kind": "vmap" if fl & VL.VA_VMAP else "vmalloc",
                         "caller": depot_fetch(arena, d["caller"]).split(" ")[0], "pages": d["nr_pages"],
                         "nodes": _page_nodes(arena, addr, d["nr_pages"])})
    return [*busy, *lazy]


def vmallocinfo_text(arena: Any) -> str:
    """/proc/vmallocinfo (mm/vmalloc.c vmalloc_info_show): one line per busy area,
    "0x<start>-0x<end> <size> <caller> pages=N vmalloc|vmap N<nid>=<pages>...",
    vm_map_ram for the blocks, then the unpurged (lazy) areas."""
    out = []
    for d in vmallocinfo_json(arena):
        head = f"0x{d['start']:016x}-0x{d['end']:016x} {d['size']:7d}"
        if d["kind"] in ("unpurged", "vm_map_ram"):
            out.append(f"{head} {'unpurged vm_area' if d['kind'] == 'unpurged' else 'vm_map_ram'}")
            continue
        if d["caller"]:
            head += f" {d['caller']}"
        if d["pages"]:
            head += f" pages={d['pages']}"
        head += f" {d['kind']}"
        for nid, n in sorted(d["nodes"].items()):
            head += f" N{nid}={n}"
        out.append(head)
    return "".join(ln + "\n" for ln in out)


def vmalloc_meminfo(arena: Any) -> dict[str, int]:
    """meminfo's VmallocTotal / VmallocUsed / VmallocChunk (kB; Chunk is 0 since 4.x)."""
    q = arena.u64
    base = arena.off("vmalloc")
    if q[base >> 3] != VL.VMALLOC_MAGIC:
        return {}
    return {"VmallocTotal": q[(base + VL.H_SIZE) >> 3] >> 10, "VmallocUsed": q[(base + VL.H_NR_PAGES) >> 3] << 2,
            "VmallocChunk": 0}


MEMINFO_SOURCES["vmalloc"] = vmalloc_meminfo      # /proc/meminfo's VmallocTotal / VmallocUsed
