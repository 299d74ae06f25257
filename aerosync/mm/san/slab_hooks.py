"""SLUB's sanitizer and hardening closures: what slab_post_alloc_hook / slab_free_hook
do in Linux, chosen once per cache handle.

Models: mm/slub.c slab_post_alloc_hook (kasan_slab_alloc, kfence_alloc, init_on_alloc's
memset), slab_free_hook (init_on_free's memset, kasan_slab_free, is_kfence_address ->
__kfence_free), __kmalloc_large_node's kasan_kmalloc_large, kfree's kfence path.
Unit: one KmemCache handle (one cache as seen from one CPU context).

`SlabSan(slub)` is built by the Slub handle when [debug] turns on any of kasan,
kfence_sample_interval, init_on_alloc, init_on_free (config.san_active); slub.py's
_build calls `install(kc, raw)` at its end with SLUB's own closures in `raw`, and
Kmalloc calls `wrap_kmalloc(km)`.  The wrappers are layered innermost first:
init_on_* (zeroing), KASAN (poison, tracks, quarantine), KFENCE (sampling, the pool's
frees); `kc.free_raw` stays SLUB's own free (the quarantine releases through it, and
slub.py's internal frees -- a failed bulk allocation, a returned sheaf -- use it, so
objects the caller never saw are not taken for double frees).

SLAB_FREELIST_HARDENED is not here: it changes how SLUB itself reads and writes free
pointers, so slub.py's _build swaps its free-pointer closures (see its docstring).
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.san import config as C

__all__ = ["SlabSan"]

_GFP_ZERO = 0x100


class SlabSan:
    """The sanitizers of one Slub handle (one CPU context)."""

    __slots__ = ("slub", "kasan", "kfence", "init_on_alloc", "init_on_free", "interval", "new_slab")

    def __init__(self, slub: Any) -> None:
        arena = slub.arena
        p = C.debug_params(arena.config)
        self.slub = slub
        self.init_on_alloc, self.init_on_free = p["init_on_alloc"], p["init_on_free"]
        self.interval = p["kfence_sample_interval"]
        self.kasan: Any = None
        self.kfence: Any = None
        if p["kasan"] and "kasanq" in arena.sections:
            from aerosync.mm.san.kasan import Kasan

            self.kasan = Kasan(arena, slub.cpu, slub)
        if self.interval:
            from aerosync.mm.san.kfence import Kfence, kfence_ready

            if kfence_ready(arena):
                self.kfence = Kfence(arena, slub.cpu)
        self.new_slab = self.kasan.new_slab if self.kasan is not None else None

    def install(self, kc: Any, raw: dict[str, Any]) -> None:
        """Replace the cache handle's entry points by the sanitizers' (see module doc)."""
        from aerosync.mm.slab.layout import ST_ALLOC, ST_FREE
        from aerosync.mm.slab.slab_common import cache_info

        kc.free_raw = raw["free"]
        osz = kc.object_size
        if self.init_on_alloc:
            for k in ("alloc", "alloc_node", "alloc_bulk", "alloc_from_sheaf", "alloc_orig"):
                f = raw.get(k)
                if f is not None:
                    raw[k] = _zeroing(k, f)
        if self.kasan is not None:
            self.kasan.slab_install(kc, raw, self.init_on_free)
        elif self.init_on_free:
            zero = bytes(osz)
            u8 = kc.slub.arena.u8
            voff = _voff(kc.slub.arena)
            r_free, r_free_pfn = raw["free"], raw["free_pfn"]

            def free(addr: int) -> None:
                u8[addr - voff : addr - voff + osz] = zero
                r_free(addr)

            def free_pfn(pfn: int, addr: int) -> None:
                u8[addr - voff : addr - voff + osz] = zero
                r_free_pfn(pfn, addr)

            kc.free, kc.free_pfn = free, free_pfn
            for k in ("alloc", "alloc_node", "alloc_bulk", "alloc_from_sheaf"):
                setattr(kc, k, raw[k])
        else:
            for k in ("alloc", "alloc_node", "alloc_bulk", "alloc_from_sheaf"):
                setattr(kc, k, raw[k])
            if raw.get("alloc_orig") is not None:
                kc.alloc_orig = raw["alloc_orig"]
        if self.kfence is not None and osz <= 4096 and not raw.get("kfence_inline"):
            kf = self.kfence
            lo, hi = kf.lo, kf.hi
            kf_alloc, kf_free = kf.alloc, kf.free
            interval = self.interval
            cid = kc.id
            align = cache_info(kc.slub.arena, cid)["align"]
            stat = kc.stat
            b_alloc, b_alloc_node, b_free, b_orig = kc.alloc, kc.alloc_node, kc.free, kc.alloc_orig
            left = interval

            def alloc(gfp: int = 0) -> int:
                """kfence_alloc() gate: one allocation in `interval` tries the pool."""
                nonlocal left
                left -= 1
                if left:
                    return b_alloc(gfp)
                left = interval
                a = kf_alloc(cid, osz, align, gfp, 1)
                if a:
                    stat(ST_ALLOC)
                    return a
                return b_alloc(gfp)

            def alloc_node(nid: int, gfp: int = 0) -> int:
                nonlocal left
                left -= 1
                if left:
                    return b_alloc_node(nid, gfp)
                left = interval
                a = kf_alloc(cid, osz, align, gfp, 1)
                if a:
                    stat(ST_ALLOC)
                    return a
                return b_alloc_node(nid, gfp)

            def alloc_orig(size: int, gfp: int = 0) -> int:
                nonlocal left
                left -= 1
                if not left:
                    left = interval
                    a = kf_alloc(cid, min(size, osz), align, gfp, 1)
                    if a:
                        stat(ST_ALLOC)
                        return a
                return b_orig(size, gfp) if b_orig is not None else b_alloc(gfp)

            def free(addr: int) -> None:
                if lo <= addr < hi:
                    kf_free(addr, False, 1)
                    stat(ST_FREE)
                    return
                b_free(addr)

            kc.alloc, kc.alloc_node, kc.free = alloc, alloc_node, free
            if b_orig is not None:              # KASAN's kmalloc path: place by the requested size
                kc.alloc_orig = alloc_orig

    def wrap_kmalloc(self, km: Any) -> None:
        """kmalloc's own paths: KASAN's large-kmalloc tail and its double free; KFENCE
        addresses in ksize (kmalloc.py's kfree checks them itself)."""
        from aerosync.mm.pmm.page import PG_reserved, PG_slab, PG_tail
        from aerosync.mm.slab.layout import VBASE

        arena = km.slub.arena
        k_ksize, k_kfree = km.ksize, km.kfree
        if self.kfence is not None:
            kf = self.kfence
            lo, hi = kf.lo, kf.hi

            def ksize(addr: int) -> int:
                if lo <= addr < hi:
                    return kf.ksize(addr)               # kfence_ksize(): the size asked for
                return k_ksize(addr)

            km.ksize = ksize
        if self.kasan is None:
            return
        large, large_check = self.kasan.kmalloc_large, self.kasan.kfree_large_check
        k_kmalloc = km.kmalloc
        nr_pages = arena.sections["physmem"][1] >> 12
        pm32 = arena.off("pagemeta") >> 2
        u32 = arena.u32

        def kmalloc(size: int, gfp: int = 0) -> int:
            a = k_kmalloc(size, gfp)
            if a and size > 8192:
                large(a, size)
            return a

        def kfree(addr: int) -> None:
            """kfree(): KASAN checks a large kmalloc's free (slab objects: the cache's hook)."""
            if addr:
                pfn = (addr - VBASE) >> 12
                if 0 <= pfn < nr_pages:
                    fl = u32[pm32 + pfn * 16]
                    if fl & PG_tail:
                        fl = u32[pm32 + u32[pm32 + pfn * 16 + 6] * 16]
                    if not fl & (PG_slab | PG_reserved):    # reserved: the KFENCE pool, not KASAN's
                        large_check(addr)
            k_kfree(addr)

        km.kmalloc, km.kfree = kmalloc, kfree
        km.kzalloc = lambda size, gfp=0: kmalloc(size, gfp | _GFP_ZERO)


def _zeroing(name: str, f: Any) -> Any:
    """init_on_alloc: every allocation entry point asks for __GFP_ZERO."""
    if name == "alloc":
        return lambda gfp=0: f(gfp | _GFP_ZERO)
    return lambda x, gfp=0: f(x, gfp | _GFP_ZERO)      # alloc_node(nid), alloc_bulk(n), *_sheaf(s), alloc_orig(size)


def _voff(arena: Any) -> int:
    from aerosync.mm.slab.layout import VBASE

    return VBASE - arena.off("physmem")
