"""KASAN's shadow memory: one byte per 8-byte granule of simulated physical memory.

Models: mm/kasan/kasan.h (KASAN_GRANULE_SIZE, the generic shadow values), mm/kasan/
shadow.c (kasan_poison, kasan_unpoison with its partial last granule), generic.c
(memory_is_poisoned_1/n: the access check).  Unit: a granule; a direct-map address
(VBASE + pfn * 4096 + offset, mm/slab/layout.py) or the arena offset of physical memory.

Encoding (generic mode, linux-mm.md 8.7)::

    00        all 8 bytes accessible          01..07  only the first N bytes are
    FF  KASAN_PAGE_FREE  (a free page)        FE  KASAN_PAGE_REDZONE (kmalloc_large tail)
    FC  KASAN_SLAB_REDZONE (slab redzone,     FB  KASAN_SLAB_FREE (a freed object)
        never-allocated objects)              FA  KASAN_SLAB_FREETRACK
    F8  KASAN_VMALLOC_INVALID                 F9  global redzone; F1..F4 stack; CA/CB alloca

Where the shadow lives (the one deviation from Linux, for the arena's sake): Linux maps
a shadow for the whole kernel address space at KASAN_SHADOW_OFFSET + (addr >> 3) and
populates the vmalloc part on demand (kasan_populate_vmalloc).  Here the shadow is one
flat section over physical memory, "kasanshadow" (nr_pages x 512 bytes), indexed by
physical offset; the direct map, being linear, reads it directly, and a vmalloc
address reads the shadow of the page its PTE maps -- an unmapped vmalloc address (a
guard page, a freed area) reads as F8.  So the vmalloc part costs nothing until pages
are mapped, and an area's shadow follows its pages (vmalloc.py poisons the tail of the
last page F8 and the page allocator poisons freed pages FF).

Ownership: the shadow of a granule is written by the CPU that owns the memory at that
moment -- the allocator handing it out or taking it back -- and read without locks by
checks; a check racing with a free may see either state (as KASAN's shadow reads are
plain loads).

`Shadow(arena)` binds the section once: poison(off, size, value), unpoison(off, size),
byte(off), first_bad(off, size) over arena offsets of physical memory (granule-aligned
where the kernel's are).
"""

from __future__ import annotations

from typing import Any

from aerosync.arena.layout import SectionSpec, align_up
from aerosync.params import PAGE_SIZE

__all__ = ["KASAN_GRANULE_SIZE", "KASAN_PAGE_FREE", "KASAN_PAGE_REDZONE", "KASAN_SLAB_REDZONE", "KASAN_SLAB_FREE",
           "KASAN_SLAB_FREETRACK", "KASAN_VMALLOC_INVALID", "KASAN_GLOBAL_REDZONE", "SHADOW_NAMES", "Shadow",
           "shadow_sections", "shadow_init", "has_shadow"]

KASAN_GRANULE_SIZE = 8
KASAN_PAGE_FREE = 0xFF
KASAN_PAGE_REDZONE = 0xFE
KASAN_SLAB_REDZONE = 0xFC
KASAN_SLAB_FREE = 0xFB
KASAN_SLAB_FREETRACK = 0xFA
KASAN_GLOBAL_REDZONE = 0xF9
KASAN_VMALLOC_INVALID = 0xF8
SHADOW_NAMES = {KASAN_PAGE_FREE: "free page", KASAN_PAGE_REDZONE: "kmalloc large redzone",
                KASAN_SLAB_REDZONE: "slab redzone", KASAN_SLAB_FREE: "freed slab object",
                KASAN_SLAB_FREETRACK: "freed slab object (free meta)", KASAN_VMALLOC_INVALID: "vmalloc invalid",
                KASAN_GLOBAL_REDZONE: "global redzone"}


def shadow_sections(config: dict[str, Any]) -> list[SectionSpec]:
    """The shadow section of a KASAN machine: one byte per granule of physical memory."""
    return [SectionSpec("kasanshadow", align_up(int(config["nr_pages"]) * (PAGE_SIZE // KASAN_GRANULE_SIZE),
                                                 PAGE_SIZE))]


def has_shadow(arena: Any) -> bool:
    return "kasanshadow" in arena.sections


def shadow_init(arena: Any) -> None:
    """Boot: every page that is not allocated reads as KASAN_PAGE_FREE, allocated ones as
    accessible (the page allocator's hooks keep it so from then on)."""
    import numpy as np

    from aerosync.mm.pmm.page import page_array

    pages = page_array(arena)
    sh = arena.array("kasanshadow", np.uint8)
    per = PAGE_SIZE // KASAN_GRANULE_SIZE
    n = min(len(pages), len(sh) // per)
    live = (pages["refcount"][:n] > 0)
    sh[: n * per].reshape(n, per)[:] = np.where(live, 0, KASAN_PAGE_FREE)[:, None].astype(np.uint8)
    del sh, pages


class Shadow:
    """The shadow section bound once (offsets are arena offsets of physical memory)."""

    __slots__ = ("arena", "base", "phys", "end", "mv", "poison", "unpoison", "byte", "first_bad", "row")

    def __init__(self, arena: Any) -> None:
        self.arena = arena
        base = arena.off("kasanshadow")
        phys = arena.off("physmem")
        self.base, self.phys = base, phys
        self.end = phys + arena.sections["physmem"][1]
        u8 = arena.u8
        self.mv = u8
        zero8 = bytes(8)
        fills: dict[int, bytes] = {}

        def fill(v: int, n: int) -> bytes:
            b = fills.get(v)
            if b is None or len(b) < n:
                b = fills[v] = bytes([v]) * max(n, 512)
            return b if len(b) == n else b[:n]

        def poison(off: int, size: int, value: int) -> None:
            """kasan_poison(): granules [off, off + size) (both granule-aligned) get value."""
            s = base + ((off - phys) >> 3)
            n = (size + 7) >> 3
            u8[s : s + n] = fill(value, n)

        def unpoison(off: int, size: int) -> None:
            """kasan_unpoison(): size bytes accessible from off; a partial last granule
            records how many of its bytes are."""
            s = base + ((off - phys) >> 3)
            n = size >> 3
            if n <= 8:
                u8[s : s + n] = zero8[:n]
            else:
                u8[s : s + n] = fill(0, n)
            if size & 7:
                u8[s + n] = size & 7

        def byte(off: int) -> int:
            return u8[base + ((off - phys) >> 3)]

        def first_bad(off: int, size: int) -> int:
            """kasan_find_first_bad_addr(): the first offset of [off, off + size) that is
            not accessible, or -1."""
            for o in range(off, off + size):
                v = u8[base + ((o - phys) >> 3)]
                if v and (v >= 0x80 or (o & 7) >= v):
                    return o
            return -1

        def row(off: int) -> bytes:
            """16 shadow bytes covering the 128-byte row at off (META_BYTES_PER_ROW)."""
            s = base + ((off - phys) >> 3)
            if off < phys or off + 128 > self.end:
                return b""
            return bytes(u8[s : s + 16])

        self.poison, self.unpoison, self.byte, self.first_bad, self.row = poison, unpoison, byte, first_bad, row
