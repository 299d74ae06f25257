"""Reclaim's walks over a folio's mappings: referenced, unmap, mkclean.

Models: mm/rmap.c folio_referenced (test-and-clear the accessed bit of every PTE mapping
the folio), try_to_unmap (each PTE becomes a swap PTE for private anonymous memory, or
none for file and shmem pages; the dirty bit moves to the folio), folio_mkclean (write-
protect and clean every PTE before writeback).  Unit: one folio, isolated and locked
by the caller (PG_locked), which also holds a reference.

Each PTE is changed under its PTE lock (mm/vm/rmap.py calls back with it held) with an
atomic exchange or CAS (a concurrent hardware walk's A/D update is never lost).  TLB
entries of the changed PTEs are flushed per mm after the walk and before the caller
reads the folio's data or frees it (a CPU may use a stale translation until then: the
folio is still allocated).  Unlike x86's ptep_clear_flush_young, clearing the accessed
bit flushes too: the simulated TLB is large against the simulated RAM, and an entry
kept in it would hide every later access from aging.

Accounting of an unmapped PTE: hiwater_rss raised to the RSS first (update_hiwater_rss,
as try_to_unmap_one does), mapcount - 1 (nr_anon_pages / nr_mapped when it reaches
0), the PTE's reference dropped (never the last one: the caller holds its own), rss of
its kind - 1, and MM_SWAPENTS + 1 with one more swap_map count for a swap PTE.
"""

from __future__ import annotations

from typing import Any

from aerosync.mm import hooks
from aerosync.mm.pmm.page import PG_dirty, PG_swapbacked
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_RW,
    swp_entry_to_pte,
)
from aerosync.params import PAGE_META_SIZE, PAGE_SIZE

__all__ = ["RmapOps"]

_U64 = (1 << 64) - 1
_FLUSH_BATCH = 33


class RmapOps:
    """referenced(pfn) -> young PTEs found (bits cleared, TLBs flushed)
    unmap(pfn, swap_offset or -1) -> (dirty, ptes left mapped is the folio's mapcount)
    mkclean(pfn) -> dirty    (write-protect + clean every PTE)
    unmap_lazyfree(pfn, extra) -> 1 unmapped, 0 kept (extra reference), -1 redirtied
    look_around(mm_id, va, fn) -> young neighbours promoted by fn(pfn) (MGLRU)"""

    def __init__(self, vm: Any, swap_dup: Any) -> None:
        arena = vm.arena
        q, u32, at = arena.u64, arena.u32, arena.atomic
        cas, xchg, fetch_add, fetch_sub32 = at.cas64, at.xchg64, at.fetch_add64, at.fetch_sub32
        fetch_or32 = at.fetch_or32
        rmap_walk = vm.rmap.rmap_walk
        flush = vm.tlb.flush_tlb_mm_range
        memory = vm.memory
        unmap_account, kind_of = memory.unmap_account, memory.kind_of
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        PM4 = arena.off("pagemeta") >> 2
        MW4 = PAGE_META_SIZE >> 2
        swapents = T.M_RSS + 8 * T.MM_SWAPENTS
        hiwater = T.update_hiwater_rss
        tp = hooks.point_fn()                    # test points: None in production (mm/hooks.py)

        def flush_all(touched: dict[int, list[int]]) -> None:
            for mm_id, vas in touched.items():
                lo, hi = min(vas), max(vas) + PAGE_SIZE
                flush(mm_id, lo, hi)

        def referenced(pfn: int) -> int:
            n = [0]
            touched: dict[int, list[int]] = {}

            def one(mm_id: int, vma: int, va: int, i: int, e: int) -> bool:
                while e & _PAGE_ACCESSED:
                    seen = cas(i << 3, e, e & ~_PAGE_ACCESSED & _U64)
                    if seen == e:
                        n[0] += 1
                        touched.setdefault(mm_id, []).append(va)
                        break
                    e = seen
                return True

            rmap_walk(pfn, one)
            if touched:
                flush_all(touched)
            return n[0]

        def unmap(pfn: int, swap_off: int) -> bool:
            """try_to_unmap(): every PTE mapping pfn goes (a swap PTE when swap_off >= 0
            and the PTE is a private anonymous one).  Returns whether any was dirty."""
            dirty = [False]
            touched: dict[int, list[int]] = {}
            swp = swp_entry_to_pte(0, swap_off) if swap_off >= 0 else 0
            kind = kind_of(pfn)
            to_swap = swap_off >= 0 and kind == T.MM_ANONPAGES

            def one(mm_id: int, vma: int, va: int, i: int, e: int) -> bool:
                if to_swap:
                    swap_dup(swap_off)
                old = xchg(i << 3, swp if to_swap else 0)
                if old & _PAGE_DIRTY:
                    dirty[0] = True
                hiwater(arena, mm_base + mm_id * mm_size)           # before we lower rss
                unmap_account(mm_id, pfn, kind, False)
                fetch_sub32((PM4 + pfn * MW4 + 2) << 2, 1)      # the PTE's reference
                if to_swap:
                    fetch_add(mm_base + mm_id * mm_size + swapents, 1)
                touched.setdefault(mm_id, []).append(va)
                return True

            rmap_walk(pfn, one)
            if tp:
                tp("unmap:before_flush")
            if touched:
                flush_all(touched)
            return dirty[0]

        def unmap_lazyfree(pfn: int, extra: int) -> int:
            """try_to_unmap() of a MADV_FREE folio (anonymous, PG_swapbacked clear): each
            PTE is cleared (xchg), then try_to_unmap_one's MADV_FREE check decides -- a
            dirty PTE or PG_dirty means the folio was written again: the PTE is put back,
            PG_swapbacked set again, the walk stops (-1); a reference beyond `extra`
            (the caller's and the tree's) + the mapcount means a user we cannot see: the
            PTE is put back, the walk stops (0); else the PTE stays none and is accounted
            as unmapped.  1: every PTE went.  A stale TLB entry cannot write behind the
            check: MADV_FREE flushed the clean PTEs, and a store through an entry without
            D walks again (to a none PTE now, so it faults and waits for the PTE lock)."""
            res = [1]
            touched: dict[int, list[int]] = {}
            b4 = PM4 + pfn * MW4
            kind = T.MM_ANONPAGES

            def one(mm_id: int, vma: int, va: int, i: int, e: int) -> bool:
                old = xchg(i << 3, 0)
                if old & _PAGE_DIRTY or u32[b4] & PG_dirty:
                    xchg(i << 3, old)                            # set_ptes(pteval): kept
                    fetch_or32(b4 << 2, PG_swapbacked)
                    res[0] = -1
                    return False
                if u32[b4 + 2] != extra + u32[b4 + 3]:
                    xchg(i << 3, old)
                    res[0] = 0
                    return False
                hiwater(arena, mm_base + mm_id * mm_size)
                unmap_account(mm_id, pfn, kind, False)
                fetch_sub32((b4 + 2) << 2, 1)                    # the PTE's reference
                touched.setdefault(mm_id, []).append(va)
                return True

            rmap_walk(pfn, one)
            if touched:
                flush_all(touched)
            return res[0]

        def mkclean(pfn: int) -> bool:
            dirty = [False]
            touched: dict[int, list[int]] = {}

            def one(mm_id: int, vma: int, va: int, i: int, e: int) -> bool:
                while e & (_PAGE_DIRTY | _PAGE_RW):
                    seen = cas(i << 3, e, e & ~(_PAGE_DIRTY | _PAGE_RW) & _U64)
                    if seen == e:
                        if e & _PAGE_DIRTY:
                            dirty[0] = True
                        touched.setdefault(mm_id, []).append(va)
                        break
                    e = seen
                return True

            rmap_walk(pfn, one)
            if touched:
                flush_all(touched)
            return dirty[0]

        self.referenced, self.unmap, self.mkclean = referenced, unmap, mkclean
        self.unmap_lazyfree = unmap_lazyfree
        _ = q
