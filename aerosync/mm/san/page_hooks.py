"""The page allocator's sanitizer and hardening hooks: KASAN page poisoning and
init_on_alloc / init_on_free for whole pages.

Models: mm/page_alloc.c post_alloc_hook() (kasan_unpoison_pages, kernel_init_pages when
want_init_on_alloc) and free_pages_prepare() (want_init_on_free, kasan_poison_pages with
KASAN_PAGE_FREE).  Unit: a block of 2^order pages at a pfn.

`install(mm)` runs at the end of page_alloc.py's MM handle build when [debug] asks for
any of them: the handle's public entry points (alloc_pages, alloc_pages_node,
alloc_pages_nodemask, folio_alloc, free_pages / free_pages_, folio_put, free_frozen_pages) become wrappers
calling the originals, so a machine without the switches keeps its closures untouched.
A free poisons (and zeroes) only when it drops the last reference (refcount 1 before
the put): a page another holder still uses keeps its contents and shadow.  Two holders
putting a page at the same moment may both see 2 and neither poison it -- a missed
poisoning, never a wrong one (the deliberate race of this hook).
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.san import config as C
from aerosync.mm.san import shadow as SH
from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = ["install", "wanted"]

_GFP_ZERO = 0x100                 # gfp.__GFP_ZERO (checked equal in tests/test_san.py)


def wanted(config: dict[str, Any]) -> bool:
    p = C.debug_params(config)
    return bool(p["kasan"] or p["init_on_alloc"] or p["init_on_free"])


def install(mm: Any) -> None:
    arena = mm.arena
    p = C.debug_params(arena.config)
    kasan = p["kasan"] and SH.has_shadow(arena)
    ioa, iof = p["init_on_alloc"], p["init_on_free"]
    if not (kasan or ioa or iof):
        return
    u8, u32 = arena.u8, arena.u32
    PHYS = arena.off("physmem")
    PM32 = arena.off("pagemeta") >> 2
    sh = SH.Shadow(arena) if kasan else None
    zeros = bytes(PAGE_SIZE)
    ap, apn, apm, fa = mm.alloc_pages, mm.alloc_pages_node, mm.alloc_pages_nodemask, mm.folio_alloc
    fp, fput, ffp = mm.free_pages, mm.folio_put, mm.free_frozen_pages

    def post_alloc(pfn: int, order: int, gfp: int) -> int:
        """post_alloc_hook()."""
        if pfn >= 0:
            o, n = PHYS + (pfn << PAGE_SHIFT), PAGE_SIZE << order
            if sh is not None:
                sh.unpoison(o, n)
            if ioa and not gfp & _GFP_ZERO:
                for k in range(1 << order):
                    u8[o + (k << PAGE_SHIFT) : o + ((k + 1) << PAGE_SHIFT)] = zeros
        return pfn

    def free_prepare(pfn: int, order: int) -> None:
        """free_pages_prepare(): only for the last reference."""
        if u32[PM32 + (pfn << 4) + 2] == 1:
            prepare(pfn, order)

    def prepare(pfn: int, order: int) -> None:
        o, n = PHYS + (pfn << PAGE_SHIFT), PAGE_SIZE << order
        if iof:
            for k in range(1 << order):
                u8[o + (k << PAGE_SHIFT) : o + ((k + 1) << PAGE_SHIFT)] = zeros
        if sh is not None:
            sh.poison(o, n, SH.KASAN_PAGE_FREE)

    def alloc_pages(gfp: int, order: int) -> int:
        return post_alloc(ap(gfp, order), order, gfp)

    def alloc_pages_node(nid: int, gfp: int, order: int) -> int:
        return post_alloc(apn(nid, gfp, order), order, gfp)

    def alloc_pages_nodemask(gfp: int, order: int, preferred_nid: int, nodemask: int | None) -> int:
        return post_alloc(apm(gfp, order, preferred_nid, nodemask), order, gfp)

    def folio_alloc(gfp: int, order: int) -> int:
        return post_alloc(fa(gfp, order), order, gfp)

    def free_pages(pfn: int, order: int = 0, cold: bool = False) -> None:
        free_prepare(pfn, order)
        fp(pfn, order, cold)

    def folio_put(pfn: int) -> None:
        free_prepare(pfn, u8[((PM32 + (pfn << 4)) << 2) + 4])
        fput(pfn)

    def free_frozen_pages(pfn: int, order: int, cold: bool) -> None:
        """A frozen block (refcount 0: reclaim's freeze, a fault's or a table's give-back,
        vmalloc, zsmalloc) is always the last reference."""
        prepare(pfn, order)
        ffp(pfn, order, cold)

    mm.alloc_pages, mm.alloc_pages_node, mm.alloc_pages_nodemask, mm.folio_alloc = (alloc_pages, alloc_pages_node,
                                                                                    alloc_pages_nodemask, folio_alloc)
    mm.free_pages = mm.free_pages_ = free_pages
    mm.folio_put = folio_put
    mm.free_frozen_pages = free_frozen_pages
