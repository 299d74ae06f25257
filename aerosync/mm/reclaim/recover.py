"""Repairing a node's LRU lists after a simulated CPU died holding its lru_lock.

Models: nothing in Linux (a CPU does not die inside a list update); the LRU side of the
repair mm/pmm/recover.py's rebuild_free_lists does for a zone.lock.  Unit: one node's
lruvec; the caller holds its lru_lock -- the dead CPU's hold, taken over and not yet
released (mm/recovery.py takeover), so live CPUs may run but none touches the lists.

Only a CPU killed from outside needs it: no fault point lies inside an lru_lock hold,
so a named-point death leaves the lists whole.  A kill from outside can tear a link
(lru_add_drain's head insert, isolate's unlink, MGLRU's sorting) and leave list counts
and the node's LRU stats a hold behind (account_hold applies them at the unlock).

`rebuild_lru_lists(arena, nid, cpu)`: every list is walked from its head and kept up to
the first folio that cannot be on it (not PG_lru, another node, seen already, flags
LRU2 forbids there, refcount 0; a prev link that disagrees is tolerated: links are
rewritten); a PG_lru folio with refcount 0 was being freed (lru_del's unlink under the
lock): it leaves the LRU, and mm/pmm/recover.py reclaim_pages finishes its free; every
other PG_lru folio of the node (linked at one end only, or behind a torn link) is put
back at the head of the list its flags name (as place() would: unevictable if mlocked;
classic by PG_active and type; MGLRU its generation if that is live for its type, else
the youngest); then links, tails, LRUID
bytes and counts are rewritten, and the node's LRU stats move by what the counts moved
(into `cpu`'s node-stat deltas: they are sums over CPUs).  A folio isolated by the dead
CPU (PG_lru clear) is on no list and stays so here; mm/vm/recover.py settle_counts puts
a user folio on no list and in no batch back (LRU4) once the world is stopped.
Returns the folios listed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import (
    NIL,
    PG_active,
    PG_lru,
    PG_mlocked,
    PG_swapbacked,
    PG_unevictable,
    link_list,
    page_array,
)
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.swap import GEN_MASK, GEN_SHIFT, MAX_NR_GENS, lru_stat_item
from aerosync.params import PAGE_META_SIZE

__all__ = ["lru_nodes_of_locks", "rebuild_lru_lists", "drop_freeing"]

_MW4 = PAGE_META_SIZE >> 2
_ALL32 = 0xFFFF_FFFF


def lru_nodes_of_locks(arena: Any, offs: list[int]) -> list[int]:
    """The nodes whose lru_lock word is one of the embedded lock offsets `offs`."""
    if not R.reclaim_ready(arena):
        return []
    off = R.Off(arena)
    want = set(offs)
    return [n for n in range(off.nr_nodes) if off.lruvec(n) + R.L_LOCK in want]


def _fits(li: int, fl: int) -> bool:
    """May a folio with flags `fl` be on list `li` (LRU2): a classic list by type and
    PG_active, no generation; an MGLRU list by generation and type; unevictable with no
    generation."""
    g1 = (fl & GEN_MASK) >> GEN_SHIFT
    if li == R.LRU_UNEVICTABLE:
        return not g1
    typ = 0 if fl & PG_swapbacked else 1
    if li < R.MG_LIST0:
        return not g1 and li >> 1 == typ and li & 1 == (1 if fl & PG_active else 0)
    k = li - R.MG_LIST0
    return g1 == (k >> 1) + 1 and k & 1 == typ


def _home(fl: int, mglru: bool, max_seq: int, min_seq: list[int]) -> tuple[int, int]:
    """(list id, generation bits) of a folio put back from its flags alone, as the
    policies' place() would: PG_mlocked / PG_unevictable unevictable; classic by type
    and PG_active; MGLRU its generation when that is live for its type, else the
    youngest."""
    if fl & (PG_mlocked | PG_unevictable):
        return R.LRU_UNEVICTABLE, 0
    typ = 0 if fl & PG_swapbacked else 1
    if not mglru:
        return R.LRU_INACTIVE_ANON + 2 * typ + (1 if fl & PG_active else 0), 0
    g1 = (fl & GEN_MASK) >> GEN_SHIFT
    if g1:
        gen = g1 - 1
        if max_seq - ((max_seq - gen) % MAX_NR_GENS) >= min_seq[typ]:
            return R.MG_LIST0 + 2 * gen + typ, g1 << GEN_SHIFT
    gen = max_seq % MAX_NR_GENS
    return R.MG_LIST0 + 2 * gen + typ, (gen + 1) << GEN_SHIFT


def rebuild_lru_lists(arena: Any, nid: int, cpu: int) -> int:
    """Node `nid`'s LRU lists rebuilt (module docstring); stats deltas to `cpu`."""
    off = R.Off(arena)
    q, u32, u8, i64, at = arena.u64, arena.u32, arena.u8, arena.i64, arena.atomic
    PM4 = arena.off("pagemeta") >> 2
    lv = off.lruvec(nid)
    lruid = off.lruid
    mglru = q[(off.base + R.H_LRU_MODE) >> 3] == R.LRU_MGLRU
    max_seq = q[(lv + R.L_MAX_SEQ) >> 3]
    min_seq = [q[(lv + R.L_MIN_SEQ + 8 * t) >> 3] for t in (0, 1)]
    pages = page_array(arena)
    nr = len(pages)
    flags = pages["flags"].copy()
    node = pages["node"].copy()
    del pages
    on_node = np.flatnonzero(((flags & PG_lru) != 0) & (node == nid))
    seen = np.zeros(nr, dtype=bool)
    lists: list[list[int]] = []
    for li in range(R.NR_LISTS):
        h = lv + R.L_LISTS + 16 * li
        out: list[int] = []
        pfn = u32[h >> 2]
        while pfn != NIL and pfn < nr and not seen[pfn]:
            fl = u32[PM4 + pfn * _MW4]
            if not fl & PG_lru or u8[(PM4 + pfn * _MW4) * 4 + 7] != nid or not u32[PM4 + pfn * _MW4 + 2]:
                break
            if not _fits(li, fl):
                break
            seen[pfn] = True
            out.append(pfn)
            pfn = u32[PM4 + pfn * _MW4 + 4]
        lists.append(out)
    front: list[list[int]] = [[] for _ in range(R.NR_LISTS)]
    for pfn in on_node[~seen[on_node]].tolist():
        b = PM4 + pfn * _MW4
        if not u32[b + 2]:                               # refcount 0: its free was unlinking it --
            at.fetch_and32(b << 2, ~PG_lru & _ALL32)     # off the LRU, the free finished by the
            continue                                     # page allocator's recovery (reclaim_pages)
        fl = u32[b]
        li, gen = _home(fl, mglru, max_seq, min_seq)
        if fl & GEN_MASK != gen:                         # gen bits change under lru_lock only;
            at.fetch_and32(b << 2, ~GEN_MASK & _ALL32)   # other bits may move meanwhile
            if gen:
                at.fetch_or32(b << 2, gen)
        front[li].append(pfn)
    ns = VE.node_stat_base(arena, cpu) + nid * VE.NR_NODE_STATS
    for li in range(R.NR_LISTS):
        pfns = front[li] + lists[li]
        h = lv + R.L_LISTS + 16 * li
        link_list(u32, PM4, h >> 2, pfns)
        for pfn in pfns:
            u8[lruid + pfn] = li
        old = q[(h + 8) >> 3]
        q[(h + 8) >> 3] = len(pfns)
        d = len(pfns) - (old if old < 1 << 63 else old - (1 << 64))
        if d:
            i64[ns + lru_stat_item(li, max_seq)] += d
    return sum(len(x) for x in lists) + sum(len(x) for x in front)


def drop_freeing(arena: Any, cpu: int) -> int:
    """World stopped, after a death: a PG_lru folio with refcount 0 is a free the dead
    CPU left between its put and its unlink (folios_put drops every reference of a
    batch, then lru_del_many unlinks them under lru_lock -- a kill in between, or while
    acquiring that lock, leaves them listed).  Their nodes' lists are rebuilt without
    them (rebuild_lru_lists), so the page allocator's recovery can finish their free
    (reclaim_pages) without a list still naming them.  Returns the folios dropped."""
    if not R.reclaim_ready(arena):
        return 0
    pages = page_array(arena)
    freeing = ((pages["flags"] & PG_lru) != 0) & (pages["refcount"] == 0)
    nodes = sorted(set(pages["node"][freeing].tolist()))
    n = int(freeing.sum())
    del pages
    for nid in nodes:
        rebuild_lru_lists(arena, nid, cpu)
    return n
