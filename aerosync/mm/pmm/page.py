"""struct page in the arena: one 64-byte record per pfn in the "pagemeta" section.

Models: include/linux/mm_types.h (struct page, struct folio), include/linux/page-flags.h
(PG_* bits, PageBuddy, compound head/tail), include/linux/page_ref.h (refcount).
Unit: a pfn; a page is never a Python object (style-anchors 5.2).

Layout (byte offsets inside the record; the first 32 bytes are the hot half)::

     0 flags    u32   PG_* bits below
     4 order    u8    buddy order of a free block / order of a PCP block / allocation
                      order (folio order on a PG_head page)
     5 mt       u8    migratetype of the free list the block is on (buddy or PCP list)
     6 zone     u8    global zone id = nid * MAX_NR_ZONES + zone_idx (fixed at init)
     7 node     u8    nid (fixed at init)
     8 refcount u32   _refcount: atomic (arena.atomic *32) -- folio_get/put from any CPU
    12 mapcount u32   _mapcount + 1 (0 = unmapped); atomic for later users (rmap)
    16 next     u32   list link (pfn, NIL = 0xFFFFFFFF): buddy free list or PCP list
    20 prev     u32   list link
    24 head     u32   compound_head pfn on PG_tail pages, NIL otherwise
    28 spare    u32   last_cpupid of a user folio (NUMA balancing); on a page-table
                      page: its level (1 = PTE table .. 5 = PML5)
    32 private  u64   page_private(): owner's word (slab, swap entry...); on a page-table
                      page: its split lock word (ptlock, sync/objlock.py ObjSpinLock)
    40 mapping  u64   folio->mapping: the arena offset of the vm_object holding the folio,
                      | PAGE_MAPPING_ANON (bit 0) for anonymous memory (mm/vm/vm_object.py);
                      on a page-table page: the owning mm id + 1 (0 = init_mm's)
    48 index    u64   folio->index: the page offset in that object; page-table page: the
                      first virtual address it maps
    56 ..63           reserved

Bytes 0-7 read as one u64 (`word0`) give flags | order<<32 | mt<<40 | zone<<48 |
node<<56: page_is_buddy() is one memoryview load.

Flags (u32)::

    bit 0 PG_reserved   bit 1 PG_buddy     bit 2 PG_active   bit 3 PG_slab
    bit 4 PG_referenced bit 5 PG_lru       bit 6 PG_head     bit 7 PG_tail
    bit 8 PG_pcp        (head of a block on some CPU's PCP list; Linux: no flag,
                         page->pcp_list membership -- kept so the checker sees it)
    bit 9 PG_table      a page-table page (Linux: page_type PGTY_table)
    bit 10 PG_locked    bit 11 PG_dirty    bit 12 PG_uptodate bit 13 PG_writeback
    bit 14 PG_swapbacked bit 15 PG_swapcache bit 16 PG_mlocked bit 17 PG_unevictable
    bit 18 PG_workingset bit 19 PG_reclaim
    bits 20-31          reserved (MGLRU generation and tier)
  Flags of a mapped folio can be changed by several CPUs at once (PG_locked by
  folio_trylock, PG_dirty by a shared write fault): those use atomic fetch_or32 /
  fetch_and32 on the flags word, never a plain store.

Who writes what:
  * guarded by the page's zone.lock: flags/order/mt/next/prev of PG_buddy pages and of
    pages being moved on or off a buddy list;
  * owner CPU only: PG_pcp pages and their links (per_cpu_pages protocol, page_alloc.py);
  * the allocating caller: an allocated page's flags and fields (no one else can see it
    yet; later users that flip flags on shared pages use atomic fetch_or32/fetch_and32
    on `flags`);
  * atomic from any CPU: refcount, mapcount.

Invariants (mm/pmm/check.py): F1 a PG_head page has order >= 1 and its 2^order - 1
following pages are PG_tail with head == its pfn; F2 every PG_tail page's head covers
it; F3 free pages (buddy or PCP, heads and tails) have refcount 0 and mapcount 0,
allocated heads have refcount >= 1, tails of allocated blocks refcount 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = [
    "PG_reserved", "PG_buddy", "PG_active", "PG_slab", "PG_referenced", "PG_lru", "PG_head",
    "PG_tail", "PG_pcp", "PG_table", "PG_locked", "PG_dirty", "PG_uptodate", "PG_writeback", "PG_swapbacked",
    "PG_swapcache", "PG_mlocked", "PG_unevictable", "PG_workingset", "PG_reclaim", "PAGEFLAG_NAMES",
    "PAGE_MAPPING_ANON", "NIL", "link_list",
    "P_FLAGS", "P_ORDER", "P_MT", "P_ZONE", "P_NODE", "P_REFCOUNT", "P_MAPCOUNT", "P_NEXT",
    "P_PREV", "P_HEAD", "P_SPARE", "P_PRIVATE", "P_MAPPING", "P_INDEX", "PAGE_DTYPE", "page_array", "page_off",
    "page_address", "page_view", "format_flags", "node_of_pfn", "folio_try_get_fn",
]

PG_reserved = 1 << 0
PG_buddy = 1 << 1
PG_active = 1 << 2
PG_slab = 1 << 3
PG_referenced = 1 << 4
PG_lru = 1 << 5
PG_head = 1 << 6
PG_tail = 1 << 7
PG_pcp = 1 << 8
PG_table = 1 << 9
PG_locked = 1 << 10
PG_dirty = 1 << 11
PG_uptodate = 1 << 12
PG_writeback = 1 << 13
PG_swapbacked = 1 << 14
PG_swapcache = 1 << 15
PG_mlocked = 1 << 16
PG_unevictable = 1 << 17
PG_workingset = 1 << 18
PG_reclaim = 1 << 19
PAGEFLAG_NAMES = ("reserved", "buddy", "active", "slab", "referenced", "lru", "head", "tail", "pcp", "table",
                  "locked", "dirty", "uptodate", "writeback", "swapbacked", "swapcache", "mlocked", "unevictable",
                  "workingset", "reclaim")
PAGE_MAPPING_ANON = 1                # folio->mapping low bit: anonymous (object of anon memory)

NIL = 0xFFFF_FFFF                    # "no pfn" in a u32 link

P_FLAGS, P_ORDER, P_MT, P_ZONE, P_NODE = 0, 4, 5, 6, 7
P_REFCOUNT, P_MAPCOUNT = 8, 12
P_NEXT, P_PREV, P_HEAD, P_SPARE = 16, 20, 24, 28
P_PRIVATE = 32
P_MAPPING, P_INDEX = 40, 48

PAGE_DTYPE = np.dtype([
    ("flags", "<u4"), ("order", "u1"), ("mt", "u1"), ("zone", "u1"), ("node", "u1"),
    ("refcount", "<u4"), ("mapcount", "<u4"),
    ("next", "<u4"), ("prev", "<u4"), ("head", "<u4"), ("spare", "<u4"),
    ("private", "<u8"), ("mapping", "<u8"), ("index", "<u8"), ("_rsvd", "V8"),
])
assert PAGE_DTYPE.itemsize == PAGE_META_SIZE
assert PAGE_DTYPE.fields["next"][1] == P_NEXT and PAGE_DTYPE.fields["private"][1] == P_PRIVATE
assert PAGE_DTYPE.fields["mapping"][1] == P_MAPPING and PAGE_DTYPE.fields["index"][1] == P_INDEX


def link_list(u32: Any, pm4: int, hi: int, pfns: list[int]) -> None:
    """Rewrite a NIL-terminated list linked through struct page next / prev (u32 words 4
    and 5 of each page, from u32 index pm4) to hold `pfns` in order, its head and tail
    at u32[hi] and u32[hi + 1] -- the lists the recoveries rebuild after a death
    (mm/pmm/recover.py's free lists, mm/reclaim/recover.py's LRU lists)."""
    mw4 = PAGE_META_SIZE >> 2
    prev = NIL
    for pfn in pfns:
        u32[pm4 + pfn * mw4 + 5] = prev
        if prev != NIL:
            u32[pm4 + prev * mw4 + 4] = pfn
        prev = pfn
    if prev != NIL:
        u32[pm4 + prev * mw4 + 4] = NIL
    u32[hi] = pfns[0] if pfns else NIL
    u32[hi + 1] = prev


def page_array(arena) -> np.ndarray:
    """Structured numpy view of every struct page (init, checker, stats only)."""
    return arena.array("pagemeta", PAGE_DTYPE)


def page_off(arena, pfn: int) -> int:
    """Byte offset of pfn's struct page (pfn_to_page)."""
    return arena.off("pagemeta") + pfn * PAGE_META_SIZE


def page_address(arena, pfn: int) -> int:
    """Byte offset of the page frame itself in the arena (page_address / __va)."""
    return arena.off("physmem") + (pfn << PAGE_SHIFT)


def page_view(arena, pfn: int, nr_pages: int = 1) -> memoryview:
    """A byte memoryview of nr_pages frames starting at pfn (a folio: 1 << order).

    Made with arena.view(), so Arena.close() releases it; callers drop it when done.
    """
    return arena.view(page_address(arena, pfn), nr_pages * PAGE_SIZE)


def format_flags(flags: int) -> str:
    """`buddy|head`-style text of a flags word (for messages and dumps)."""
    names = [n for i, n in enumerate(PAGEFLAG_NAMES) if flags >> i & 1]
    rest = flags & ~((1 << len(PAGEFLAG_NAMES)) - 1)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "none"


def node_of_pfn(arena: Any) -> Callable[[int], int]:
    """`page_to_nid` as a closure: pfn -> nid byte of its struct page (fixed at init, so
    read without a lock).  One memoryview load; bind it once per worker."""
    u8 = arena.u8
    base = arena.off("pagemeta") + P_NODE

    def page_to_nid(pfn: int) -> int:
        return u8[base + pfn * PAGE_META_SIZE]

    return page_to_nid


def folio_try_get_fn(arena: Any) -> Callable[[int], bool]:
    """`folio_try_get` as a closure: pfn -> a reference taken (CAS on the refcount), unless
    the refcount is 0 -- the folio free, or frozen by reclaim or migration (folio_ref_freeze).
    A lockless lookup (page cache, LRU isolation) must re-check what it found after it."""
    u32 = arena.u32
    cas32 = arena.atomic.cas32
    base = arena.off("pagemeta") + P_REFCOUNT

    def folio_try_get(pfn: int) -> bool:
        o = base + pfn * PAGE_META_SIZE
        c = u32[o >> 2]
        while c:
            seen = cas32(o, c, c + 1)
            if seen == c:
                return True
            c = seen
        return False

    return folio_try_get
