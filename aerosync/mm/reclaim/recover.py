"""Repairing reclaim's shared state after a simulated CPU died: a node's LRU lists (its
lru_lock held), the swap device's cluster counts and lists, the compressed pool.

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

`rebuild_swap_clusters(arena, cpu)` and `rebuild_zmm(arena, mm, cpu)`: the swap device
and the compressed pool set from their truth -- the slot map, the handle words -- at the
start of a dead CPU's recovery (their docstrings; mm/reclaim/zmm.py "Crash tolerance").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.arena import layout as L
from aerosync.mm import intent as I
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import (
    NIL,
    P_INDEX,
    P_PRIVATE,
    PG_active,
    PG_buddy,
    PG_lru,
    PG_mlocked,
    PG_pcp,
    PG_swapbacked,
    PG_unevictable,
    link_list,
    page_array,
)
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.swap import GEN_MASK, GEN_SHIFT, MAX_NR_GENS, lru_stat_item
from aerosync.mm.reclaim.zmm import NOFREE, zmm_handles, zs_class, zspage_partial
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT

__all__ = ["lru_nodes_of_locks", "rebuild_lru_lists", "drop_freeing", "rebuild_zmm", "rebuild_swap_clusters"]

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


def rebuild_zmm(arena: Any, mm: Any, cpu: int) -> dict[str, int]:
    """The compressed pool made whole from its handles (zmm.py "Crash tolerance"), after
    CPU `cpu` died: every zspage a handle or a partial list names, and the dead CPU's
    new zspage (WINDOW_ZSPAGE) or zspage being freed (H_ZMM_FREEING) if still allocated,
    gets its inuse, free list and partial-list place from the handles -- an empty one is
    freed with `mm` (the dead CPU's handle) -- and the class and pool counts and the LRU
    are set from them (ZM1-ZM4).  Objects never move, so handles and contents stay.
    Runs with the world stopped, before the dead CPU's records are resolved (they may
    load or drop copies), and only while no live CPU holds the pool lock.  Returns what
    it did ({} when the pool has no lock free or no slots)."""
    if not R.reclaim_ready(arena):
        return {}
    off = R.Off(arena)
    q, u32, u8 = arena.u64, arena.u32, arena.u8
    base = off.base
    if not off.nr_slots or q[(base + R.H_ZMM_LOCK) >> 3] & ((1 << 48) - 1):
        return {}
    pm, phys = arena.off("pagemeta"), arena.off("physmem")
    nr_pages = int(arena.config["nr_pages"])
    pages = page_array(arena)
    refc, flags = pages["refcount"], pages["flags"]

    def allocated(zp: int) -> bool:
        return 0 <= zp < nr_pages and bool(refc[zp]) and not int(flags[zp]) & (PG_buddy | PG_pcp)

    handles = zmm_handles(arena, off)
    zclass: dict[int, int] = {}
    for zp in handles:                                    # (a handle naming no zspage: ZM1's)
        c = q[(pm + zp * PAGE_META_SIZE + P_PRIVATE) >> 3] & 0xFFFF if allocated(zp) else R.NR_ZS_CLASSES
        if c < R.NR_ZS_CLASSES:
            zclass[zp] = c
    walked: dict[int, list[int]] = {}
    for c in range(R.NR_ZS_CLASSES):
        walked[c] = [zp for zp in zspage_partial(arena, off, c, nr_pages)[0] if allocated(zp)]
        for zp in walked[c]:
            zclass.setdefault(zp, c)
    extra = []
    for ctx in range(L.INTENT_CTX):
        pending, item = I.peek_handoff_ctx(arena, cpu, ctx)
        if pending & 0xFF == I.WINDOW_ZSPAGE:
            I.take_handoff_ctx(arena, cpu, ctx, pending)
            kind, pfn = I.decode_item(arena, item)
            if kind == I.ITEM_PAGE:
                extra.append((pfn, pending >> 8))
    fr = q[(base + R.H_ZMM_FREEING) >> 3]
    if fr:
        extra.append(((fr & 0xFFFF_FFFF) - 1, fr >> 32))
        q[(base + R.H_ZMM_FREEING) >> 3] = 0
    for zp, c in extra:
        if allocated(zp) and c < R.NR_ZS_CLASSES:
            zclass.setdefault(zp, c)
    inuse = [0] * R.NR_ZS_CLASSES
    nr_zs = [0] * R.NR_ZS_CLASSES
    partial: dict[int, list[int]] = {c: [] for c in range(R.NR_ZS_CLASSES)}
    pool_pages = freed = 0
    for zp, c in zclass.items():
        size, k, nobj = zs_class(arena, off, c)
        m = (pm + zp * PAGE_META_SIZE) >> 3
        used = {obj for obj, _s, _n in handles.get(zp, [])}
        if not used:                                      # empty: freed (zs_free's end)
            q[m + (P_PRIVATE >> 3)] = q[m + (P_INDEX >> 3)] = 0
            mm.free_pages(zp, k.bit_length() - 1)
            freed += 1
            continue
        free = [i for i in range(nobj) if i not in used]
        o = phys + (zp << PAGE_SHIFT)
        for i, obj in enumerate(free):
            nxt = free[i + 1] if i + 1 < len(free) else NOFREE
            u8[o + obj * size : o + obj * size + 2] = nxt.to_bytes(2, "little")
        q[m + (P_PRIVATE >> 3)] = c | len(used) << 16 | (free[0] if free else NOFREE) << 32
        q[m + (P_INDEX >> 3)] = 0
        if free:
            partial[c].append(zp)
        inuse[c] += len(used)
        nr_zs[c] += 1
        pool_pages += k
    for c in range(R.NR_ZS_CLASSES):                      # the walked order kept, then the rest
        want = set(partial[c])
        order = [zp for zp in walked[c] if zp in want]
        order += [zp for zp in partial[c] if zp not in set(order)]
        for a, b in zip(order, [*order[1:], -1]):
            q[(pm + a * PAGE_META_SIZE + P_INDEX) >> 3] = b + 1
        zc = off.zcls + c * R.ZCLASS_REC
        q[(zc + R.ZC_PARTIAL) >> 3] = order[0] + 1 if order else 0
        q[(zc + R.ZC_INUSE) >> 3] = inuse[c]
        q[(zc + R.ZC_NR_ZSPAGES) >> 3] = nr_zs[c]
    slots = sorted(s for objs in handles.values() for _o, s, _n in objs)
    q[(base + R.H_ZMM_POOL_PAGES) >> 3] = pool_pages
    q[(base + R.H_ZMM_STORED) >> 3] = len(slots)
    q[(base + R.H_ZMM_BYTES) >> 3] = sum(n for objs in handles.values() for _o, _s, n in objs)
    # the LRU: its walk from the head kept while it names stored slots, then the rest
    want_s = set(slots)
    szlru = off.szlru >> 2
    lru: list[int] = []
    seen: set[int] = set()
    cur = q[(base + R.H_ZMM_LRU_HEAD) >> 3]
    while cur in want_s and cur not in seen:
        lru.append(cur)
        seen.add(cur)
        cur = u32[szlru + 2 * cur]
    lru += [s for s in slots if s not in seen]
    lru_view = np.frombuffer(arena.view(off.szlru, 8 * off.nr_slots), dtype=np.uint32)
    lru_view[:] = NIL
    del lru_view
    for i, s in enumerate(lru):
        u32[szlru + 2 * s] = lru[i + 1] if i + 1 < len(lru) else NIL
        u32[szlru + 2 * s + 1] = lru[i - 1] if i else NIL
    q[(base + R.H_ZMM_LRU_HEAD) >> 3] = lru[0] if lru else NIL
    q[(base + R.H_ZMM_LRU_TAIL) >> 3] = lru[-1] if lru else NIL
    return {"zspages": len(zclass) - freed, "zspages_freed": freed, "stored": len(slots)}


def rebuild_swap_clusters(arena: Any, cpu: int) -> int:
    """The swap device's cluster counts, inuse_pages and cluster lists set from the slot
    map (SW3), after CPU `cpu` died: a slot's map word changes alone under &ci->lock,
    but its cluster's count, the device's inuse count and the list links (si->lock)
    follow it a few stores later, and a CPU killed from outside in between leaves them
    behind.  First, a slot with SWAP_HAS_CACHE whose table word is no folio -- taken
    by add_to_swap and not yet given its folio, or left by delete_from_cache before
    its put_cache (the only two places: a CPU parks outside both) -- loses the bit,
    and is freed if nothing else references it (its ZMM handle dropped: rebuild_zmm,
    after, frees the copy).  The dead CPU's current cluster goes back to the lists; a
    live CPU's stays its own.  Each cluster is listed by its count (free, nonfull,
    full; one on the frag list stays there while it has room), the lists' old order
    kept.  World stopped, before the dead CPU's records (they free and take slots).
    Returns the slots and clusters it changed."""
    if not R.reclaim_ready(arena):
        return 0
    off = R.Off(arena)
    n, nc = off.nr_slots, off.nr_clusters
    if not n:
        return 0
    q, u32 = arena.u64, arena.u32
    cl = R.SWAPFILE_CLUSTER
    smap = np.frombuffer(arena.view(off.smap, 4 * n), dtype=np.uint32).copy()
    stab = np.frombuffer(arena.view(off.stab, 8 * n), dtype=np.uint64).copy()
    changed = 0
    orphan = ((smap & np.uint32(R.SWAP_HAS_CACHE)) != 0) & ((stab == 0) | ((stab & np.uint64(3)) != 0))
    orphan[0] = False                                                    # the header slot
    for s in np.flatnonzero(orphan).tolist():
        w = int(smap[s]) & ~R.SWAP_HAS_CACHE
        u32[(off.smap >> 2) + s] = w
        smap[s] = w
        if not w:                                                        # free_slot_locked's stores
            q[(off.stab >> 3) + s] = 0
            q[(off.szmm >> 3) + s] = 0
        changed += 1
    nz = np.count_nonzero
    counts = [int(nz(smap[c * cl : min(n, (c + 1) * cl)])) + (cl - (min(n, (c + 1) * cl) - c * cl)) for c in range(nc)]
    q[(off.base + R.H_SWAP_INUSE) >> 3] = int(nz(smap)) - 1             # (slot 0: the header, SWAP_MAP_BAD)
    nr_cpus = int(arena.config["nr_cpus"])
    pcl = (off.pcpu(cpu) + R.PC_CLUSTER) >> 3
    if q[pcl]:
        u32[(off.clus + (q[pcl] - 1) * R.CLUSTER_REC + R.CI_FLAGS) >> 2] = R.CL_NONE
        q[pcl] = 0
    current = {q[(off.pcpu(c) + R.PC_CLUSTER) >> 3] - 1 for c in range(nr_cpus)} - {-1}
    walked: dict[int, list[int]] = {}
    for which, h in R.CL_HEADS.items():
        seen: list[int] = []
        c = u32[(off.base + h) >> 2]
        while c != NIL and c < nc and c not in seen:
            seen.append(c)
            c = u32[(off.clus + c * R.CLUSTER_REC + R.CI_NEXT) >> 2]
        walked[which] = seen
    on: dict[int, list[int]] = {w: [] for w in R.CL_HEADS}
    for c in range(nc):
        ci = off.clus + c * R.CLUSTER_REC
        if u32[(ci + R.CI_COUNT) >> 2] != counts[c]:
            u32[(ci + R.CI_COUNT) >> 2] = counts[c]
            changed += 1
        if c in current:
            continue
        was = u32[(ci + R.CI_FLAGS) >> 2]
        want = R.CL_FREE if not counts[c] else R.CL_FULL if counts[c] >= cl else R.CL_NONFULL
        if was == R.CL_FRAG and want == R.CL_NONFULL:
            want = R.CL_FRAG
        on[want].append(c)
        changed += want != was
    for which, h in R.CL_HEADS.items():
        members = set(on[which])
        order = [c for c in walked[which] if c in members]
        order += [c for c in on[which] if c not in set(order)]
        for i, c in enumerate(order):
            ci = off.clus + c * R.CLUSTER_REC
            u32[(ci + R.CI_FLAGS) >> 2] = which
            u32[(ci + R.CI_NEXT) >> 2] = order[i + 1] if i + 1 < len(order) else NIL
            u32[(ci + R.CI_PREV) >> 2] = order[i - 1] if i else NIL
        u32[(off.base + h) >> 2] = order[0] if order else NIL
        u32[(off.base + h + 4) >> 2] = order[-1] if order else NIL
        q[(off.base + h + 8) >> 3] = len(order)
    return changed
