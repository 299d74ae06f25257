"""The kmalloc family over the kmalloc-<size> SLUB caches and the page allocator.

Models: include/linux/slab.h (kmalloc, kmalloc_node, kzalloc, kmalloc_index),
mm/slab_common.c (kmalloc_caches, __kmalloc_large_node, kfree, ksize, krealloc).
Unit: a simulated virtual address (slab_common.VBASE + pfn * 4096 + offset); 0 is NULL.

Size classes (linux-mm.md 3.9): kmalloc-8 ... kmalloc-8k plus kmalloc-96 and -192,
created by slab_common.slab_init (create_kmalloc_caches: 96, 192, then 8 .. 8k; each
aligned to the largest power of two dividing its size); each cache has per-node partial
lists, so kmalloc_node(size, nid) places the object on node nid.  Requests above
KMALLOC_MAX_CACHE_SIZE (8192) are compound pages from the page allocator
(get_order(size)), counted in the node's nr_slab_unreclaimable as ___kmalloc_large_node
does (meminfo's SUnreclaim); kfree finds which from the page: PG_slab head -> its cache
(slabmeta cache id, tail pages resolved through compound head); other compound head ->
the pages; a reserved page in the KFENCE pool -> KFENCE (kfree_other, off the fast path).
With slub_debug user tracking on a kmalloc cache, the requested size is kept as the
object's orig_size (the bytes beyond it are a kmalloc red zone): kmalloc then takes a
general path that passes the size (machines without debug keep the table one); with
KFENCE's inline gates the table calls pass it too, for a sampled object.
A kfree of anything else warns (BadKfreeWarning) and changes nothing (AeroSync's C
kfree ignores it silently: aerosync-c.md hazard list).

`Kmalloc(slub)` is one CPU context's handle: closures bound once.  Fast path
(kmalloc(64) + kfree, warm cpu slab): size -> class by table lookup, the cache's
lockless alloc; kfree reads the page flags and slab meta (three memoryview loads) and
calls the cache's free.
"""

from __future__ import annotations

import warnings
from typing import Any

from aerosync.mm.pmm.gfp import __GFP_COMP as _GFP_COMP
from aerosync.mm.pmm.gfp import __GFP_ZERO as _GFP_ZERO
from aerosync.mm.pmm.page import PG_head, PG_reserved, PG_slab, PG_tail
from aerosync.mm.pmm.vm_event import NR_NODE_STATS, NR_SLAB_UNRECLAIMABLE, node_stat_base
from aerosync.mm.slab.slab_common import KMALLOC_SIZES, M_CACHE, SMETA, VBASE, _size_name, kmem_cache_lookup
from aerosync.mm.slab.slub import Slub
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["Kmalloc", "KMALLOC_MAX_CACHE_SIZE", "kmalloc_index", "kmalloc_cache_name", "BadKfreeWarning"]

KMALLOC_MAX_CACHE_SIZE = 8192


class BadKfreeWarning(RuntimeWarning):
    """kfree() of an address that is neither a slab object nor a large kmalloc."""


def kmalloc_index(size: int) -> int:
    """Class size for a request (kmalloc_index/kmalloc_slab): 0 for size 0 or > 8192."""
    if size <= 0 or size > KMALLOC_MAX_CACHE_SIZE:
        return 0
    if size <= 8:
        return 8
    if 64 < size <= 96:
        return 96
    if 128 < size <= 192:
        return 192
    return 1 << (size - 1).bit_length()


def kmalloc_cache_name(size: int) -> str:
    return f"kmalloc-{_size_name(kmalloc_index(size))}"


def _get_order(size: int) -> int:
    return max(0, (size - 1) >> PAGE_SHIFT).bit_length()


class Kmalloc:
    """kmalloc for one CPU context (`slub` is that context's Slub handle)."""

    __slots__ = ("slub", "kmalloc", "kmalloc_node", "kzalloc", "kfree", "ksize", "krealloc", "caches")

    def __init__(self, slub: Slub) -> None:
        self.slub = slub
        arena = slub.arena
        caches = {s: slub.cache(kmem_cache_lookup(arena, f"kmalloc-{_size_name(s)}")) for s in KMALLOC_SIZES}
        self.caches = caches
        # size -> cache alloc, for sizes 1..192 by (size + 7) >> 3, then by bit length
        small = [None] + [caches[kmalloc_index(8 * i)] for i in range(1, 25)]
        big = {b: caches[1 << b] for b in range(8, 14)}
        small_alloc = [c.alloc if c else None for c in small]
        big_alloc = {b: c.alloc for b, c in big.items()}
        u32 = arena.u32
        PM32 = arena.off("pagemeta") >> 2
        PMW = PAGE_META_SIZE >> 2
        SM32 = arena.off("slabmeta") >> 2
        SMW = SMETA >> 2
        MC = M_CACHE >> 2
        frees: dict[int, Any] = {}
        osizes: dict[int, int] = {}
        mm = slub.mm
        alloc_pages_node, free_pages = mm.alloc_pages_node, mm.free_pages
        u8 = arena.u8
        PHYS = arena.off("physmem")

        def cache_for(size: int) -> Any:
            return caches[kmalloc_index(size)]

        nsw = (node_stat_base(arena, slub.cpu) + NR_SLAB_UNRECLAIMABLE) << 3
        fetch_add64 = arena.atomic.fetch_add64

        def kmalloc_large(size: int, gfp: int, nid: int) -> int:
            """__kmalloc_large_node(): a compound block of get_order(size), counted in
            NR_SLAB_UNRECLAIMABLE of its node."""
            order = _get_order(size)
            pfn = alloc_pages_node(nid, gfp | (_GFP_COMP if order else 0), order)
            if pfn < 0:
                return 0
            fetch_add64(nsw + u8[(PM32 + pfn * PMW) * 4 + 7] * NR_NODE_STATS * 8, 1 << order)
            return VBASE + (pfn << PAGE_SHIFT)

        def free_large(pfn: int, order: int) -> None:
            fetch_add64(nsw + u8[(PM32 + pfn * PMW) * 4 + 7] * NR_NODE_STATS * 8, (1 << 64) - (1 << order))
            free_pages(pfn, order)

        def kmalloc(size: int, gfp: int = 0) -> int:
            """kmalloc(): an object of >= size bytes on the local node, or 0."""
            if size <= 192:
                if size <= 0:
                    return 0
                if gfp:
                    return small_alloc[(size + 7) >> 3](gfp & _GFP_ZERO)
                return small_alloc[(size + 7) >> 3]()
            if size <= KMALLOC_MAX_CACHE_SIZE:
                return big_alloc[(size - 1).bit_length()](gfp & _GFP_ZERO)
            return kmalloc_large(size, gfp, -1)

        def kmalloc_node(size: int, nid: int, gfp: int = 0) -> int:
            """kmalloc_node(): from node nid's slabs (nid -1: local)."""
            if size <= 0:
                return 0
            if size <= KMALLOC_MAX_CACHE_SIZE:
                return cache_for(size).alloc_node(nid, gfp & _GFP_ZERO)
            return kmalloc_large(size, gfp, nid)

        if any(c.alloc_orig is not None for c in caches.values()):
            def kmalloc(size: int, gfp: int = 0) -> int:  # debug kmalloc caches: keep orig_size
                """kmalloc() passing the requested size to debug caches (orig_size)."""
                if size <= 0:
                    return 0
                if size > KMALLOC_MAX_CACHE_SIZE:
                    return kmalloc_large(size, gfp, -1)
                c = cache_for(size)
                if c.alloc_orig is not None:
                    return c.alloc_orig(size, gfp & _GFP_ZERO)
                return c.alloc(gfp & _GFP_ZERO)

        gated = {c.id for c in caches.values() if c.alloc_req is not None and c.alloc is c.alloc_req}
        if gated and all(c.alloc_orig is None for c in caches.values()):
            def sized(c: Any) -> Any:
                """alloc(gfp, req): the gated closure itself, else one that drops req."""
                if c.id in gated:
                    return c.alloc
                f = c.alloc
                return lambda gfp=0, req=0: f(gfp)

            small_req = [sized(c) if c else None for c in small]
            big_req = {b: sized(c) for b, c in big.items()}

            def kmalloc(size: int, gfp: int = 0) -> int:  # KFENCE's inline gates: pass the size
                """kmalloc() telling a KFENCE sample the requested size (kfence_alloc's
                orig_size: the object is placed and its canary checked by it, so a write
                one byte past a 13-byte kmalloc is caught at free, as in Linux)."""
                if size <= 192:
                    if size <= 0:
                        return 0
                    return small_req[(size + 7) >> 3](gfp & _GFP_ZERO, size)
                if size <= KMALLOC_MAX_CACHE_SIZE:
                    return big_req[(size - 1).bit_length()](gfp & _GFP_ZERO, size)
                return kmalloc_large(size, gfp, -1)

        def kzalloc(size: int, gfp: int = 0) -> int:
            return kmalloc(size, gfp | _GFP_ZERO)

        def slab_free_fn(cid: int) -> Any:
            f = frees.get(cid)
            if f is None:
                kc = slub.cache(cid)
                f = frees[cid] = kc.free_pfn
                osizes[cid] = kc.object_size
            return f

        kf = slub.san.kfence if slub.san is not None else None
        kf_lo, kf_hi, kf_free = (kf.lo, kf.hi, kf.free) if kf is not None else (0, 0, None)

        def kfree_other(addr: int, pfn: int, fl: int) -> None:
            """kfree's cases past the slab: a reserved page (the KFENCE pool's -- its pages
            are reserved, not PG_slab, so a pool object costs kfree's fast path nothing --
            else a bad address), a large kmalloc's pages, else a bad address."""
            if fl & PG_reserved:
                if kf_lo <= addr < kf_hi:               # is_kfence_address()
                    if not kf_free(addr, True, 2):     # (frames: this, kfree) no counter: the cache's own free
                        slub.cache(kf.cache_of(addr)).free(addr)
                    return
            elif fl & PG_head and addr == VBASE + (pfn << PAGE_SHIFT):
                free_large(pfn, u8[(PM32 + pfn * PMW) * 4 + 4])
                return
            elif not fl & (PG_head | PG_tail) and addr == VBASE + (pfn << PAGE_SHIFT) and u32[PM32 + pfn * PMW + 2]:
                free_large(pfn, 0)                      # an order-0 large kmalloc (not compound)
                return
            warnings.warn(f"cpu{slub.cpu}: kfree: bad address {addr:#x} (pfn {pfn} flags {fl:#x}): "
                          "not a slab object or a large kmalloc", BadKfreeWarning, stacklevel=3)

        def kfree(addr: int) -> None:
            """kfree(): slab object -> its cache; large kmalloc -> the pages; 0 -> nothing."""
            if not addr:
                return
            pfn = (addr - VBASE) >> PAGE_SHIFT
            fl = u32[PM32 + pfn * PMW]
            if fl & PG_tail:
                pfn = u32[PM32 + pfn * PMW + 6]
                fl = u32[PM32 + pfn * PMW]
            if fl & PG_slab:
                cid = u32[SM32 + pfn * SMW + MC] - 1
                f = frees.get(cid)
                if f is None:
                    f = slab_free_fn(cid)
                f(pfn, addr)
                return
            kfree_other(addr, pfn, fl)

        def ksize(addr: int) -> int:
            """ksize(): usable bytes of an allocation (object_size, or the pages)."""
            pfn = (addr - VBASE) >> PAGE_SHIFT
            fl = u32[PM32 + pfn * PMW]
            if fl & PG_tail:
                pfn = u32[PM32 + pfn * PMW + 6]
                fl = u32[PM32 + pfn * PMW]
            if fl & PG_slab:
                cid = u32[SM32 + pfn * SMW + MC] - 1
                slab_free_fn(cid)
                return osizes[cid]
            return PAGE_SIZE << (u8[(PM32 + pfn * PMW) * 4 + 4] if fl & PG_head else 0)

        def krealloc(addr: int, new_size: int, gfp: int = 0) -> int:
            """krealloc(): same address while it fits; else copy into a new object.
            new_size 0 frees and returns 0; failure returns 0 and keeps the old object."""
            if not addr:
                return kmalloc(new_size, gfp)
            if new_size <= 0:
                kfree(addr)
                return 0
            old = ksize(addr)
            if new_size <= old:
                return addr
            new = kmalloc(new_size, gfp)
            if not new:
                return 0
            so, do = addr - VBASE + PHYS, new - VBASE + PHYS
            u8[do : do + old] = u8[so : so + old]
            if gfp & _GFP_ZERO:
                u8[do + old : do + new_size] = bytes(new_size - old)
            kfree(addr)
            return new

        self.kmalloc, self.kmalloc_node, self.kzalloc, self.kfree = kmalloc, kmalloc_node, kzalloc, kfree
        self.ksize, self.krealloc = ksize, krealloc
        if slub.san is not None:                      # [debug]: KFENCE frees, KASAN's large kmalloc
            slub.san.wrap_kmalloc(self)
