"""Reverse mapping: from a folio to every PTE that maps it, through its object.

Models: mm/rmap.c (rmap_walk: rmap_walk_anon over the anon_vma tree, rmap_walk_file over
the file's i_mmap; page_vma_mapped_walk; vma_address), for the seed's objects instead of
anon_vmas: a folio names its object (folio->mapping) and its index in it
(folio->index).  Unit: one folio (pfn).

Who can map a folio at index i of object O:
  * a private anonymous O: every VMA on O's list, at vm_start + (i - vm_pgoff) pages;
    and, recursively, every VMA of every shadow child C of O at C's index
    i - C.backing_offset -- unless C holds its own entry there (a private copy or a
    ZERO marker hides O's page from C and from C's own children);
  * shared anonymous memory (OBJF_SHARED): the VMAs on O's list;
  * a file's vnode object: every VMA on the file's i_mmap list (private mappings
    included: they map cache pages until they write).
Each candidate address is confirmed by the page table itself (the entry present and
naming this pfn) under that table's PTE lock, which is held while the callback runs.

Locking: the walk runs in an RCU read-side section (objects and VMAs are freed through
RCU, so the lists can be followed), takes each object's lock while it reads that
object's VMA list and calls the callback for it, and never holds two object locks:
children are visited after the parent's lock is released (the chain's lock order is
top-down; a walk upwards must not nest).  A VMA being torn down is unlinked from its
object before its page tables go (mmap.py: unmap_vmas), so the walk never reaches a
freed table.  Callers that need the mapping stable against concurrent faults hold the
folio's lock (PG_locked: migration) -- new mappings of a folio are made only by faults
that look it up in its object.

Invariant (tests/test_vm_rmap.py): RM1 for every mapped folio, the PTEs the walk finds
are exactly folio_mapcount of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.mm.pmm.page import P_INDEX, P_MAPPING, PAGE_MAPPING_ANON
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import _PAGE_PRESENT, _PAGE_PROTNONE, PTE_PFN_MASK
from aerosync.mm.vm.vm_object import (
    O_BACKING_OFF,
    O_CHILDREN,
    O_SIBLING,
    O_SIZE,
    O_TREE,
    O_TYPE,
    O_VMA_HEAD,
    OBJ_VNODE,
    OBJF_DEAD,
)
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT

__all__ = ["Rmap"]

RmapFn = Callable[[int, int, int, int, int], bool]   # (mm_id, vma, va, entry_index, entry) -> keep going


class Rmap:
    """Simulated CPU `cpu`'s reverse-mapping walks (closures):
      rmap_walk(pfn, fn) -> number of PTEs found; fn(mm_id, vma, va, i, e) is called for
          each (entry index i into arena.u64, entry e) under that table's PTE lock and
          returns False to stop the walk
      mapped_ptes(pfn) -> [(mm_id, va)]      every mapping, for checks and views
    """

    def __init__(self, arena: Any, cpu: int, pt: Any, objs: Any, locks: Any, rcu: Any) -> None:
        self.arena, self.cpu = arena, cpu
        q, u32 = arena.u64, arena.u32
        PM = arena.off("pagemeta")
        P8 = arena.off("physmem") >> 3
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        obj_lock, obj_unlock = locks.obj_lock.lock, locks.obj_lock.unlock
        ptl_lock, ptl_unlock = locks.ptlock.lock, locks.ptlock.unlock
        walk, ptlock_off = pt.walk, pt.ptlock_off
        xa_load = objs.xa_load

        def try_vma(vma: int, idx: int, pfn: int, fn: RmapFn) -> int:
            """vma_address + page_vma_mapped_walk for one VMA: 1 if it maps pfn at idx."""
            start, end = q[(vma + V.V_START) >> 3], q[(vma + V.V_END) >> 3]
            off = idx - q[(vma + V.V_PGOFF) >> 3]
            va = start + (off << PAGE_SHIFT)
            if off < 0 or va >= end:
                return 0
            mm_id = q[(vma + V.V_MM) >> 3]
            table = walk(q[(mm_base + mm_id * mm_size + T.M_PGD) >> 3], va)
            if table < 0:
                return 0
            i = P8 + (table << 9) + ((va >> PAGE_SHIFT) & 511)
            lo = ptlock_off(table)
            ptl_lock(lo)
            try:
                e = q[i]
                if not e & (_PAGE_PRESENT | _PAGE_PROTNONE) or (e & PTE_PFN_MASK) >> PAGE_SHIFT != pfn:
                    return 0
                return 1 if fn(mm_id, vma, va, i, e) else -1
            finally:
                ptl_unlock(lo)

        def walk_list(o: int, head_field: int, link: int, idx: int, pfn: int, fn: RmapFn) -> tuple[int, bool]:
            n = 0
            obj_lock(o + 16)
            try:
                if (u32[(o + O_TYPE) >> 2] >> 16) & OBJF_DEAD:
                    return 0, True
                v = q[(o + head_field) >> 3]
                guard = 0
                while v and guard < 1 << 20:
                    r = try_vma(v, idx, pfn, fn)
                    if r < 0:
                        return n + 1, False
                    n += r
                    v = q[(v + link) >> 3]
                    guard += 1
            finally:
                obj_unlock(o + 16)
            return n, True

        def walk_anon(o: int, idx: int, pfn: int, fn: RmapFn, depth: int) -> tuple[int, bool]:
            n, go_on = walk_list(o, O_VMA_HEAD, V.V_OBJ_NEXT, idx, pfn, fn)
            if not go_on or depth > 64:
                return n, go_on
            c = q[(o + O_CHILDREN) >> 3]
            while c:
                cidx = idx - q[(c + O_BACKING_OFF) >> 3]
                if 0 <= cidx < q[(c + O_SIZE) >> 3] and not xa_load(c + O_TREE, cidx):
                    k, go_on = walk_anon(c, cidx, pfn, fn, depth + 1)
                    n += k
                    if not go_on:
                        return n, False
                c = q[(c + O_SIBLING) >> 3]
            return n, True

        def rmap_walk(pfn: int, fn: RmapFn) -> int:
            b = (PM + pfn * PAGE_META_SIZE) >> 3
            m = q[b + (P_MAPPING >> 3)]
            if not m:
                return 0
            idx = q[b + (P_INDEX >> 3)]
            o = m & ~3
            rcu.read_lock()
            try:
                if m & PAGE_MAPPING_ANON:
                    return walk_anon(o, idx, pfn, fn, 0)[0]
                if (u32[(o + O_TYPE) >> 2] & 0xFFFF) == OBJ_VNODE:
                    return walk_list(o, O_VMA_HEAD, V.V_FNEXT, idx, pfn, fn)[0]
                return walk_list(o, O_VMA_HEAD, V.V_OBJ_NEXT, idx, pfn, fn)[0]
            finally:
                rcu.read_unlock()

        def mapped_ptes(pfn: int) -> list[tuple[int, int]]:
            out: list[tuple[int, int]] = []

            def note(mm_id: int, vma: int, va: int, i: int, e: int) -> bool:
                out.append((mm_id, va))
                return True

            rmap_walk(pfn, note)
            return out

        self.rmap_walk, self.mapped_ptes = rmap_walk, mapped_ptes
