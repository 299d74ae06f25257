"""Invariant checker for SLUB: every cache's objects accounted for, every slab page sane.

Models: mm/slub.c validate_slab_cache() / validate_slab() / on_freelist() (the
`slabinfo -v` validation), extended with the cross-checks against the page checker.
Unit: a quiescent arena (no CPU inside the allocator).  Reads only.  The invariant IDs
(S1..S7) are stated in mm/slab/slub.py's module docstring; this module checks exactly those.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.mm.pmm.check import CheckReport, _Sink, run_checker
from aerosync.mm.pmm.page import PG_buddy, PG_head, PG_pcp, PG_reserved, PG_slab, PG_tail, page_array
from aerosync.mm.san.kfence import kfence_live
from aerosync.mm.slab import slab_common as S

__all__ = ["slab_check", "SLAB_INVARIANTS", "s5_gaps"]

SLAB_INVARIANTS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7")


def slab_check(arena: Any, raise_first: bool = False, limit: int = 20) -> CheckReport:
    """Check S1..S7 for every live cache; report (or raise) violations."""
    return run_checker(_check, arena, raise_first, limit)


class _GapSink(_Sink):
    """A sink that also keeps S5's gap per cache (`s5_gaps`)."""

    def __init__(self) -> None:
        super().__init__(False, 0)
        self.gaps: dict[int, int] = {}


def s5_gaps(arena: Any) -> dict[int, int]:
    """Per cache whose S5 fails: objects found in use minus allocations counted net
    (positive: an allocation not yet counted; negative: a free counted before it
    happened) -- what a CPU killed between an object's take and its count leaves."""
    s = _GapSink()
    _check(arena, s)
    return s.gaps


def _walk(arena: Any, pfn: int, head: int, size: int, fpo: int, limit: int, rnd: int = 0) -> tuple[list[int], bool]:
    """Indices on a freelist starting at `head` in slab pfn; (indices, ok) -- ok False on a
    cycle or an out-of-range index.  `rnd`: the cache's SLAB_FREELIST_HARDENED random
    (free pointers stored as index ^ random ^ (their offset >> 2), slub.py)."""
    out, seen = [], set()
    base = arena.off("physmem") + (pfn << 12)
    i = head
    while i != S.NIL32:
        if i in seen or i >= limit:
            return out, False
        seen.add(i)
        out.append(i)
        o = base + i * size + fpo
        i = arena.u32[o >> 2] ^ (rnd ^ (o >> 2) & S._LO if rnd else 0)
    return out, True


def _obj_ref(s: _Sink, flags: np.ndarray, head: np.ndarray, addr: int, where: str, name: str, size: int,
             red_left: int, free_in: dict[int, set[int]], held: set[tuple[int, int]]) -> None:
    """S4 for one magazine / sheaf entry: an object start of this cache, on no freelist,
    referenced once."""
    rel = addr - S.VBASE
    pfn = rel >> 12
    if 0 <= pfn < len(flags) and flags[pfn] & PG_tail:
        pfn = int(head[pfn])
    off = rel - (pfn << 12) - red_left
    if pfn not in free_in or off < 0 or off % size:
        s.add("S4", f"{name} {where}", "an object start of this cache", f"{addr:#x}")
        return
    key = (pfn, off // size)
    if key[1] in free_in[pfn] or key in held:
        s.add("S4", f"{name} {where}", "object on no freelist, held once", f"{addr:#x}")
        return
    held.add(key)


def _check(arena: Any, s: _Sink) -> None:
    u64, u32, u8 = arena.u64, arena.u32, arena.u8
    _, nr_cpus, nr_nodes, mag, _ = S._geo(arena)
    pages = page_array(arena)
    flags = pages["flags"].copy()
    porder = pages["order"].copy()
    ref = pages["refcount"].copy()
    head = pages["head"].copy()
    del pages
    smv = arena.array("slabmeta", np.uint32).reshape(-1, S.SMETA // 4)
    cache_of = smv[:, S.M_CACHE // 4].astype(np.int64) - 1
    del smv
    live = set(S.live_caches(arena))
    SM = arena.off("slabmeta")
    slab_pfns = np.flatnonzero(cache_of >= 0)
    # ---- S1: slab pages vs struct page; no orphan PG_slab pages
    for p in np.flatnonzero((flags & PG_slab) != 0).tolist():
        if cache_of[p] not in live:
            s.add("S1", f"pfn {p}", "PG_slab page is a slab of a live cache", f"cache id {cache_of[p]}")
    for p in slab_pfns.tolist():
        cid = int(cache_of[p])
        if cid not in live:
            s.add("S1", f"pfn {p}", "slabmeta names a live cache", f"cache id {cid}")
            continue
        o = u8[SM + p * S.SMETA + S.M_ORDER]
        info_order = (S.cache_info(arena, cid)["order"], S.cache_info(arena, cid)["min_order"])
        if not flags[p] & PG_slab or ref[p] < 1 or o not in info_order:
            s.add("S1", f"pfn {p}", "PG_slab head, refcount >= 1, cache order",
                  f"flags {int(flags[p]):#x} ref {int(ref[p])} order {o}")
        if o and (not flags[p] & PG_head or any(not flags[t] & PG_tail or head[t] != p
                                                for t in range(p + 1, p + (1 << o)))):
            s.add("S1", f"pfn {p}", "compound slab: head + tails naming it", f"flags {int(flags[p]):#x}")
        # ---- S7: the page checker counts the head as allocated with the slab's extent
        if flags[p] & (PG_buddy | PG_pcp | PG_reserved | PG_tail) or porder[p] != o:
            s.add("S7", f"pfn {p}", f"allocated block of order {o} for mm/pmm/check.py",
                  f"flags {int(flags[p]):#x} order byte {int(porder[p])}")

    for cid in sorted(live):
        info = S.cache_info(arena, cid)
        name, size = info["name"], info["size"]
        fpo = info["red_left_pad"] + info["offset"]
        rnd = info["random"]
        mine = [p for p in slab_pfns.tolist() if cache_of[p] == cid]
        free_in: dict[int, set[int]] = {}
        total = slab_free = isolated = 0
        node_slabs = [0] * nr_nodes
        node_objs = [0] * nr_nodes
        listb: dict[int, int] = {}
        frozen: dict[int, bool] = {}
        for p in mine:
            m = SM + p * S.SMETA
            w = u64[m >> 3]
            fl, inuse, n = w & S._LO, (w >> 32) & 0xFFFF, (w >> 48) & 0x7FFF
            total += n
            nid = u8[m + S.M_NID]
            node_slabs[nid] += 1
            node_objs[nid] += n
            isolated += u32[(m + S.M_ISOLATED) >> 2]
            listb[p] = u8[m + S.M_LIST]
            frozen[p] = bool(w & S.FROZEN)
            idxs, ok = _walk(arena, p, fl, size, fpo, n, rnd)
            free_in[p] = set(idxs)
            slab_free += len(idxs)
            # ---- S2
            if not ok or inuse != n - len(idxs):
                s.add("S2", f"{name} slab pfn {p}", f"acyclic freelist, inuse == objects - {len(idxs)}",
                      f"inuse {inuse} objects {n} ok {ok}")
        # ---- S3: node partial lists
        for nid in range(nr_nodes):
            no = S._node_off(arena, cid, nid, nr_nodes)
            p, walked, prev = u32[(no + S.N_HEAD) >> 2], 0, S.NIL32
            while p != S.NIL32 and walked <= len(mine):
                m = SM + p * S.SMETA
                if listb.get(p) != S.LIST_NODE_PARTIAL or frozen.get(p) or u32[(m + S.M_PREV) >> 2] != prev:
                    s.add("S3", f"{name} node {nid} partial pfn {p}", "unfrozen NODE_PARTIAL slab, prev link",
                          f"list {listb.get(p)} frozen {frozen.get(p)}")
                walked += 1
                prev, p = p, u32[(m + S.M_NEXT) >> 2]
            if walked != u64[(no + S.N_NR_PARTIAL) >> 3] or u32[(no + S.N_TAIL) >> 2] != prev:
                s.add("S3", f"{name} node {nid}", f"nr_partial == {walked} walked, tail",
                      u64[(no + S.N_NR_PARTIAL) >> 3])
            # ---- S6
            counters = (u64[(no + S.N_NR_SLABS) >> 3], u64[(no + S.N_TOTAL_OBJS) >> 3])
            if counters != (node_slabs[nid], node_objs[nid]):
                s.add("S6", f"{name} node {nid}", f"nr_slabs/total_objects {node_slabs[nid]}/{node_objs[nid]}",
                      f"{u64[(no + S.N_NR_SLABS) >> 3]}/{u64[(no + S.N_TOTAL_OBJS) >> 3]}")
        n_partial_lists = {p for p, lb in listb.items() if lb == S.LIST_NODE_PARTIAL}
        cpu_owned: set[int] = set()
        cpu_free = mag_objs = 0
        held: set[tuple[int, int]] = set()
        pcs_refs: dict[int, list[str]] = {}

        def obj_ref(addr: int, where: str, ctx=(name, size, info["red_left_pad"], free_in, held)) -> None:
            _obj_ref(s, flags, head, addr, where, *ctx)

        for c in range(nr_cpus):
            ko = S._cpu_off(arena, cid, c, nr_cpus, mag)
            w, cs = u64[(ko + S.K_FREELIST_TID) >> 3], u64[(ko + S.K_SLAB) >> 3]
            if cs != S.NIL64:
                cpu_owned.add(cs)
                if listb.get(cs) != S.LIST_CPU_SLAB or not frozen.get(cs):
                    s.add("S3", f"{name} cpu{c} slab {cs}", "frozen CPU_SLAB", f"list {listb.get(cs)}")
                idxs, ok = _walk(arena, cs, w & S._LO, size, fpo, info["objects"] if cs in free_in else 0, rnd)
                if not ok or set(idxs) & free_in.get(cs, set()):
                    s.add("S4", f"{name} cpu{c} freelist", "distinct objects of c->slab off its slab freelist",
                          f"{len(idxs)} objects ok {ok}")
                for i in idxs:
                    held.add((cs, i))
                cpu_free += len(idxs)
            elif w & S._LO != S.NIL32:
                s.add("S4", f"{name} cpu{c}", "no cpu freelist without c->slab", f"word {w:#x}")
            if u64[(ko + S.K_LOCK) >> 3]:
                s.add("S3", f"{name} cpu{c}", "c->lock free when quiescent", u64[(ko + S.K_LOCK) >> 3])
            p, nparts = u64[(ko + S.K_PARTIAL) >> 3], 0
            while p != S.NIL64 and nparts <= len(mine):
                cpu_owned.add(p)
                if listb.get(p) != S.LIST_CPU_PARTIAL or frozen.get(p):
                    s.add("S3", f"{name} cpu{c} partial {p}", "unfrozen CPU_PARTIAL (6.8+)",
                          f"list {listb.get(p)} frozen {frozen.get(p)}")
                nparts += 1
                p = u32[(SM + p * S.SMETA + S.M_NEXT) >> 2]
            if nparts != u64[(ko + S.K_NR_PARTIAL) >> 3]:
                s.add("S3", f"{name} cpu{c}", f"nr cpu partial == {nparts}", u64[(ko + S.K_NR_PARTIAL) >> 3])
            nm = u64[(ko + S.K_MAG_COUNT) >> 3] if mag else 0
            for i in range(nm):
                obj_ref(u64[((ko + S.K_MAG) >> 3) + i], f"cpu{c} magazine[{i}]")
            mag_objs += nm
            if u64[(ko + S.K_PCS_LOCK) >> 3]:
                s.add("S3", f"{name} cpu{c}", "pcs lock free when quiescent", u64[(ko + S.K_PCS_LOCK) >> 3])
            v = u64[(ko + S.K_PCS) >> 3]
            for which, sh in (("main", (v & S._LO) - 1), ("spare", (v >> 32) - 1)):
                if sh >= 0:
                    pcs_refs.setdefault(sh, []).append(f"cpu{c} {which}")
        for p, lb in listb.items():
            if p in n_partial_lists or p in cpu_owned:
                continue
            if frozen[p] or lb != S.LIST_NONE or free_in[p]:
                s.add("S3", f"{name} slab pfn {p}", "off-list slab: unfrozen, full",
                      f"list {lb} frozen {frozen[p]} free {len(free_in[p])}")
        so, ssz = arena.sections["slabsheaf"]
        # per-CPU sheaves on the barns' lists (each sheaf referenced once: a CPU's main or
        # spare, or one barn list), and their counts
        for nid in range(nr_nodes):
            no = S._node_off(arena, cid, nid, nr_nodes)
            for what, bhead, bcnt in (("full", S.N_BARN_FULL, S.N_BARN_NR_FULL),
                                      ("empty", S.N_BARN_EMPTY, S.N_BARN_NR_EMPTY)):
                sh, n = u32[(no + bhead) >> 2] if info["sheaf_capacity"] else S.NIL32, 0
                while sh != S.NIL32 and n <= ssz // S.SHEAF_REC:
                    pcs_refs.setdefault(sh, []).append(f"node {nid} barn {what}")
                    o = so + sh * S.SHEAF_REC
                    if (what == "empty") != (u64[(o + S.SH_SIZE) >> 3] == 0):
                        s.add("S4", f"{name} node {nid} barn {what} sheaf {sh}", f"a {what} sheaf",
                              f"size {u64[(o + S.SH_SIZE) >> 3]}")
                    n += 1
                    sh = u64[(o + S.SH_NEXT) >> 3]
                if info["sheaf_capacity"] and n != u32[(no + bcnt) >> 2]:
                    s.add("S4", f"{name} node {nid} barn", f"nr_{what} == {n} walked", u32[(no + bcnt) >> 2])
        pcs_objs = 0
        for sh in range(ssz // S.SHEAF_REC):
            o = so + sh * S.SHEAF_REC
            state = u64[o >> 3]
            if state and u64[(o + S.SH_CACHE) >> 3] == cid:
                for i in range(u64[(o + S.SH_SIZE) >> 3]):
                    obj_ref(u64[((o + S.SH_OBJS) >> 3) + i], f"sheaf {sh}[{i}]")
                if state & S.SHEAF_PCS:
                    pcs_objs += u64[(o + S.SH_SIZE) >> 3]
                    if len(pcs_refs.get(sh, ())) != 1:
                        s.add("S4", f"{name} per-CPU sheaf {sh}", "referenced once (main/spare/barn)",
                              ", ".join(pcs_refs.get(sh, ())) or "nowhere")
        for sh in pcs_refs:
            o = so + sh * S.SHEAF_REC
            if not u64[o >> 3] & S.SHEAF_PCS or u64[(o + S.SH_CACHE) >> 3] != cid:
                s.add("S4", f"{name} per-CPU sheaf {sh}", "a live per-CPU sheaf of this cache",
                      f"state {u64[o >> 3]:#x}")
        st = S.slab_stats(arena, cid)
        net = st["alloc"] - st["free"] - kfence_live(arena, cid)     # KFENCE objects live in its pool
        # ---- S5: the accounting identity
        gap = total - (slab_free + cpu_free + mag_objs + pcs_objs + net + isolated)
        if gap and isinstance(s, _GapSink):
            s.gaps[cid] = gap
        if gap:
            s.add("S5", name, f"objects {total} == slab free {slab_free} + cpu {cpu_free} + magazines {mag_objs} "
                  f"+ per-CPU sheaves {pcs_objs} + allocated {net} + isolated {isolated}",
                  slab_free + cpu_free + mag_objs + pcs_objs + net + isolated)
