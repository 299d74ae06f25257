"""Reclaim invariants, checked on a quiescent machine (after a run, in tests, or at the
coordinator's live-check pause).

Invariants:
  LRU1  every folio on an LRU list has PG_lru, is allocated (refcount > 0) and is not
        free (no PG_buddy / PG_pcp); every PG_lru page is on exactly one list, the list
        its LRUID byte names; list counts equal the folios linked (prev links agree).
  LRU2  an MGLRU list holds folios whose generation bits name that list's generation
        and type; classic lists hold folios with PG_active matching the list.
  LRU3  MGLRU sequence numbers: min_seq[type] <= max_seq, max_seq - min_seq[type] <
        MAX_NR_GENS, and generation lists outside [min_seq, max_seq] are empty.
  SW1   each swap slot's count equals the swap PTEs naming it plus the object-tree
        swap values naming it (every mm's page tables and every object tree walked).
  SW2   SWAP_HAS_CACHE iff the slot's swap-table word is a folio whose PG_swapcache is
        set and whose private names the slot; a free slot (map 0) has no table word
        and no ZMM handle.
  SW3   each cluster's count equals its used slots; inuse_pages equals their sum.
  SW4   the cluster lists' links, counts and flags agree; a listed cluster is on the
        list its count asks for (frag: any below full); one on no list is a CPU's
        current cluster.
  ZM1-ZM4  the compressed pool (mm/reclaim/zmm.py "Invariants"): handles, zspages,
        counts and LRU agree.
  LRU4  every user folio -- mapped by a user PTE (the zero page's special PTEs aside),
        in a live vm_object's tree, or in the swap cache -- is on an LRU list (PG_lru) or
        in a CPU's folio batch: none is lost to reclaim (at a quiescent point nothing is
        isolated: reclaim and migration isolate only inside an operation).
Per-CPU folio batches should be drained first (Reclaim.leave / lru_add_drain; a worker
parked for the coordinator's live check drains its own, workers/cpu.py): a batched folio
holds a reference and is on no list (no invariant here is broken by one, but a stale
batch hides a folio from the LRU view the checks describe).

SW1 and LRU4 walk every live mm's page tables and every vm_object reachable from a live VMA (down
its backing chain) or a file, through mm/vm/snapshot.py's bounded readers, so the check
needs no CPU handle and runs in the coordinator (live, with the CPUs parked, and after
the run: `reclaim_report`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.mm.pmm.page import NIL, P_PRIVATE, PG_active, PG_buddy, PG_lru, PG_pcp, PG_swapcache, page_array
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.layout import pcpu_batch_pfns
from aerosync.mm.reclaim.swap import GEN_MASK, GEN_SHIFT, MAX_NR_GENS
from aerosync.mm.reclaim.swap_state import is_swap_value, swap_value_offset
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.pgtable import _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_SPECIAL, PTE_PFN_MASK, swp_offset, swp_type
from aerosync.mm.vm.snapshot import VmSnapshot
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT

__all__ = ["reclaim_check", "reclaim_report", "INVARIANTS"]

INVARIANTS = ("LRU1", "LRU2", "LRU3", "LRU4", "SW1", "SW2", "SW3", "SW4", "ZM1", "ZM2", "ZM3", "ZM4")


def _walk_list(arena: Any, head: int, tail: int, limit: int) -> tuple[list[int], bool]:
    u32 = arena.u32
    PM4 = arena.off("pagemeta") >> 2
    out, prev, pfn, ok = [], NIL, head, True
    while pfn != NIL and len(out) <= limit:
        if u32[PM4 + pfn * 16 + 5] != prev:
            ok = False
        out.append(pfn)
        prev, pfn = pfn, u32[PM4 + pfn * 16 + 4]
    return out, ok and prev == tail


def reclaim_check(arena: Any, vm: Any = None, summary: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """[(invariant id, message)] -- empty when everything holds.  `vm` is accepted for
    the callers that pass a CPU handle; the walks need none.  `summary`, when given,
    receives what was counted (folios on LRU lists, swap slots in use, references)."""
    if not R.reclaim_ready(arena):
        return []
    bad: list[tuple[str, str]] = []
    off = R.Off(arena)
    q, u32, u8 = arena.u64, arena.u32, arena.u8
    pages = page_array(arena)
    flags = pages["flags"].copy()
    refc = pages["refcount"].copy()
    nr_pages = len(flags)
    on_list = np.zeros(nr_pages, dtype=np.int16) - 1
    mglru = q[(off.base + R.H_LRU_MODE) >> 3] == R.LRU_MGLRU
    for nid in range(off.nr_nodes):
        lv = off.lruvec(nid)
        max_seq = q[(lv + R.L_MAX_SEQ) >> 3]
        mins = [q[(lv + R.L_MIN_SEQ + 8 * t) >> 3] for t in (0, 1)]
        for t in (0, 1):
            if not mins[t] <= max_seq or max_seq - mins[t] >= MAX_NR_GENS:
                bad.append(("LRU3", f"node {nid}: max_seq {max_seq}, min_seq[{t}] {mins[t]}"))
        for li in range(R.NR_LISTS):
            h = lv + R.L_LISTS + 16 * li
            head, tail, cnt = u32[h >> 2], u32[(h >> 2) + 1], q[(h + 8) >> 3]
            pfns, links_ok = _walk_list(arena, head, tail, nr_pages)
            if not links_ok or len(pfns) != cnt:
                bad.append(("LRU1", f"node {nid} list {li}: {len(pfns)} folios linked, count {cnt}, "
                                    f"links {'ok' if links_ok else 'broken'}"))
            for pfn in pfns:
                fl = int(flags[pfn])
                if on_list[pfn] >= 0:
                    bad.append(("LRU1", f"pfn {pfn} on two lists ({on_list[pfn]}, {li})"))
                on_list[pfn] = li
                if not fl & PG_lru or fl & (PG_buddy | PG_pcp) or not refc[pfn] or u8[off.lruid + pfn] != li:
                    bad.append(("LRU1", f"pfn {pfn} on list {li}: flags {fl:#x} refcount {refc[pfn]} "
                                        f"lruid {u8[off.lruid + pfn]}"))
                if li >= R.MG_LIST0:
                    gen, typ = (li - R.MG_LIST0) >> 1, (li - R.MG_LIST0) & 1
                    if ((fl & GEN_MASK) >> GEN_SHIFT) - 1 != gen:
                        bad.append(("LRU2", f"pfn {pfn} on gen {gen} list has gen bits {(fl & GEN_MASK) >> GEN_SHIFT}"))
                    seq_ok = any(s % MAX_NR_GENS == gen for s in range(mins[typ], max_seq + 1))
                    if not seq_ok:
                        bad.append(("LRU3", f"pfn {pfn} in gen {gen} outside [{mins[typ]}, {max_seq}]"))
                elif li < 4 and bool(fl & PG_active) != bool(li & 1):
                    bad.append(("LRU2", f"pfn {pfn} on list {R.LRU_NAMES[li]} with PG_active {bool(fl & PG_active)}"))
                elif li < 4 and mglru:
                    bad.append(("LRU2", f"pfn {pfn} on a classic list under MGLRU"))
    stray = np.nonzero((flags & PG_lru).astype(bool) & (on_list < 0))[0]
    for pfn in stray[:8]:
        bad.append(("LRU1", f"pfn {int(pfn)} has PG_lru but is on no list"))
    if summary is not None:
        summary["reclaim_lru_folios"] = int(np.count_nonzero(on_list >= 0))
    refs, user, walk_bad = _users(arena, off.nr_slots, nr_pages)
    bad += walk_bad
    if off.nr_slots:
        n = off.nr_slots
        stab = np.frombuffer(arena.view(off.stab, 8 * n), dtype=np.uint64).copy()
        cached = stab[(stab != 0) & ((stab & np.uint64(3)) == 0)] >> np.uint64(2)
        user[cached[cached < nr_pages].astype(np.int64)] = True
    batched = np.zeros(nr_pages, dtype=bool)
    bp = np.array(pcpu_batch_pfns(arena), dtype=np.int64)
    batched[bp[(bp >= 0) & (bp < nr_pages)]] = True
    lost = np.flatnonzero(user & ~(flags & PG_lru).astype(bool) & ~batched)
    for pfn in lost[:8].tolist():
        bad.append(("LRU4", f"pfn {pfn} (flags {int(flags[pfn]):#x}, refcount {int(refc[pfn])}) is a user folio "
                            f"on no LRU list and in no folio batch"))
    if off.nr_slots:
        bad += _check_swap(arena, off, flags, refs, summary)
        bad += _check_zmm(arena, off, flags, refc)
    return bad


def _check_zmm(arena: Any, off: R.Off, flags: np.ndarray, refc: np.ndarray) -> list[tuple[str, str]]:
    """ZM1-ZM4 (mm/reclaim/zmm.py "Invariants")."""
    from aerosync.mm.reclaim.zmm import NIL as ZNIL
    from aerosync.mm.reclaim.zmm import zmm_handles, zs_class, zspage_free_objs, zspage_partial

    bad: list[tuple[str, str]] = []
    q, u32 = arena.u64, arena.u32
    base, nr_pages = off.base, len(flags)
    pm = arena.off("pagemeta")
    handles = zmm_handles(arena, off)
    zclass: dict[int, int] = {}
    for zp, objs in handles.items():
        c = q[(pm + zp * PAGE_META_SIZE + P_PRIVATE) >> 3] & 0xFFFF if 0 <= zp < nr_pages else R.NR_ZS_CLASSES
        if c >= R.NR_ZS_CLASSES or not refc[zp] or int(flags[zp]) & (PG_buddy | PG_pcp):
            bad.append(("ZM1", f"handles of slots {[s for _o, s, _n in objs][:4]} name zspage {zp}: not an "
                               f"allocated zspage (class {c})"))
            continue
        zclass[zp] = c
        size, _k, nobj = zs_class(arena, off, c)
        idx = [o for o, _s, _n in objs]
        if len(set(idx)) != len(idx) or any(o >= nobj for o in idx) or any(n > size for _o, _s, n in objs):
            bad.append(("ZM1", f"zspage {zp} (class {c}, {nobj} objects of {size} bytes): handles name "
                               f"objects {sorted(idx)[:8]} of lengths {[n for _o, _s, n in objs][:8]}"))
    inuse = [0] * R.NR_ZS_CLASSES
    nr_zs = [0] * R.NR_ZS_CLASSES
    pool_pages = 0
    on_partial: dict[int, int] = {}
    for c in range(R.NR_ZS_CLASSES):
        members, whole = zspage_partial(arena, off, c, nr_pages)
        if not whole:
            bad.append(("ZM2", f"class {c}: partial list broken after {len(members)} zspages"))
        for zp in members:
            on_partial[zp] = c
            zclass.setdefault(zp, c)
    for zp, c in zclass.items():
        size, k, nobj = zs_class(arena, off, c)
        used = {o for o, _s, _n in handles.get(zp, [])}
        w = q[(pm + zp * PAGE_META_SIZE + P_PRIVATE) >> 3]
        free, whole = zspage_free_objs(arena, zp, size, nobj)
        if (w >> 16) & 0xFFFF != len(used) or not used:
            bad.append(("ZM2", f"zspage {zp} (class {c}): inuse {(w >> 16) & 0xFFFF}, handles {len(used)}"))
        if not whole or set(free) != set(range(nobj)) - used:
            bad.append(("ZM2", f"zspage {zp} (class {c}): free list {free[:8]} (whole {whole}), "
                               f"{nobj - len(used)} objects free"))
        if (zp in on_partial) != (len(used) < nobj):
            bad.append(("ZM2", f"zspage {zp} (class {c}): {len(used)}/{nobj} in use, on the partial list "
                               f"{zp in on_partial}"))
        inuse[c] += len(used)
        nr_zs[c] += 1
        pool_pages += k
    for c in range(R.NR_ZS_CLASSES):
        zc = off.zcls + c * R.ZCLASS_REC
        got = q[(zc + R.ZC_INUSE) >> 3], q[(zc + R.ZC_NR_ZSPAGES) >> 3]
        if got != (inuse[c], nr_zs[c]):
            bad.append(("ZM3", f"class {c}: inuse {got[0]}, zspages {got[1]}; found {inuse[c]}, {nr_zs[c]}"))
    nbytes = sum(n for objs in handles.values() for _o, _s, n in objs)
    slots = {s for objs in handles.values() for _o, s, _n in objs}
    got = (q[(base + R.H_ZMM_POOL_PAGES) >> 3], q[(base + R.H_ZMM_STORED) >> 3], q[(base + R.H_ZMM_BYTES) >> 3])
    if got != (pool_pages, len(slots), nbytes):
        bad.append(("ZM3", f"pool pages, stored pages, compressed bytes {got}; found "
                           f"{(pool_pages, len(slots), nbytes)}"))
    szlru = off.szlru >> 2
    lru: list[int] = []
    seen: set[int] = set()
    prev, cur = ZNIL, q[(base + R.H_ZMM_LRU_HEAD) >> 3]
    while cur != ZNIL:
        if cur >= off.nr_slots or cur in seen or u32[szlru + 2 * cur + 1] != prev:
            bad.append(("ZM4", f"LRU broken at slot {cur} after {len(lru)} slots"))
            break
        lru.append(cur)
        seen.add(cur)
        prev, cur = cur, u32[szlru + 2 * cur]
    if seen != slots or (lru and q[(base + R.H_ZMM_LRU_TAIL) >> 3] != lru[-1]):
        bad.append(("ZM4", f"LRU holds {len(lru)} slots (tail {q[(base + R.H_ZMM_LRU_TAIL) >> 3]}), "
                           f"{len(slots)} stored; {sorted(seen ^ slots)[:8]} differ"))
    return bad


def _users(arena: Any, nr_slots: int, nr_pages: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """One pass over every live mm's user page tables and every reachable object tree:
    (swap references per slot, user-folio mask, what could not be walked)."""
    bad: list[tuple[str, str]] = []
    q = arena.u64
    refs = np.zeros(max(nr_slots, 1), dtype=np.int64)
    user = np.zeros(nr_pages, dtype=bool)
    P8 = arena.off("physmem") >> 3
    max_mms = q[(arena.off("vmhdr") + T.H_MAX_MMS) >> 3]
    levels = q[(arena.off("vmhdr") + T.H_LEVELS) >> 3]
    mapped_bits = np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE)

    def walk(table: int, level: int) -> None:
        ents = np.array(q[P8 + (table << 9) : P8 + (table << 9) + 512], dtype=np.uint64)
        if level == 1:
            m = (ents & mapped_bits) != 0
            pf = ((ents[m & ((ents & np.uint64(_PAGE_SPECIAL)) == 0)] & np.uint64(PTE_PFN_MASK))
                  >> np.uint64(PAGE_SHIFT)).astype(np.int64)
            user[pf[pf < nr_pages]] = True
            for e in ents[(ents != 0) & ~m].tolist():
                if swp_type(e) == 0 and swp_offset(e) < nr_slots:
                    refs[swp_offset(e)] += 1
            return
        lim = 256 if level == levels else 512                  # user half of the root
        for e in ents[:lim].tolist():
            if e & _PAGE_PRESENT:
                walk((e & PTE_PFN_MASK) >> PAGE_SHIFT, level - 1)

    for mm_id in range(1, max_mms):
        mo = T.mm_off(arena, mm_id)
        if q[(mo + T.M_STATE) >> 3] == T.MM_LIVE and q[(mo + T.M_PGD) >> 3]:
            walk(q[(mo + T.M_PGD) >> 3], levels)
    # object trees: folios (user) and swap values (references)
    snap = VmSnapshot(arena)
    try:
        for o in _all_objects(snap):
            xw = snap.xa_walk(o)
            for msg in xw.bad[:2]:
                bad.append(("SW1", f"object {o:#x}: tree not walkable: {msg}"))
            for _idx, e in xw.items:
                if e and not e & 3:
                    if e >> 2 < nr_pages:
                        user[e >> 2] = True
                elif is_swap_value(e):
                    s = swap_value_offset(e)
                    if s < nr_slots:
                        refs[s] += 1
    finally:
        snap.close()
    return refs, user, bad


def reclaim_report(arena: Any, raise_first: bool = False, limit: int = 20) -> Any:
    """reclaim_check as a CheckReport (mm/pmm/check.py), the form the coordinator's live
    and final checks collect beside the page, slab and VM checkers.  An arena without
    reclaim passes with an empty summary."""
    from aerosync.mm.pmm.check import run_checker

    def body(a: Any, sink: Any) -> None:
        summary: dict[str, Any] = {}
        for inv, msg in reclaim_check(a, summary=summary):
            sink.add(inv, "reclaim", "the invariant (mm/reclaim/check.py)", msg)
        sink.report.summary = summary

    return run_checker(body, arena, raise_first, limit)


def _check_swap(arena: Any, off: R.Off, flags: Any, refs: np.ndarray,
                summary: dict[str, Any] | None) -> list[tuple[str, str]]:
    bad: list[tuple[str, str]] = []
    q, u32 = arena.u64, arena.u32
    n = off.nr_slots
    smap = np.frombuffer(arena.view(off.smap, 4 * n), dtype=np.uint32).copy()
    stab = np.frombuffer(arena.view(off.stab, 8 * n), dtype=np.uint64).copy()
    szmm = np.frombuffer(arena.view(off.szmm, 8 * n), dtype=np.uint64).copy()
    cnt = (smap & np.uint32(R.SWAP_COUNT_MASK)).astype(np.int64)
    cnt[0] = refs[0]                                         # the header slot (SWAP_MAP_BAD)
    for s in np.nonzero(cnt != refs)[0][:8].tolist():
        bad.append(("SW1", f"slot {s}: swap_map count {int(cnt[s])}, references found {int(refs[s])}"))
    if summary is not None:
        summary["reclaim_swap_slots_used"] = int(np.count_nonzero(smap[1:]))
        summary["reclaim_swap_references"] = int(refs[1:].sum())
    for s in range(1, n):
        w, e = int(smap[s]), int(stab[s])
        has = bool(w & R.SWAP_HAS_CACHE)
        folio = e != 0 and not e & 3
        if has != folio:
            bad.append(("SW2", f"slot {s}: SWAP_HAS_CACHE {has}, table word {e:#x}"))
        elif folio:
            pfn = e >> 2
            priv = q[(arena.off("pagemeta") + pfn * 64 + 32) >> 3]
            if not int(flags[pfn]) & PG_swapcache or priv != s + 1:
                bad.append(("SW2", f"slot {s}: cached pfn {pfn} flags {int(flags[pfn]):#x} private {priv}"))
        if not w and (e or int(szmm[s])):
            bad.append(("SW2", f"free slot {s}: table {e:#x} zmm {int(szmm[s]):#x}"))
        if len(bad) > 32:
            break
    total = 0
    for c in range(off.nr_clusters):
        ci = off.clus + c * R.CLUSTER_REC
        lo, hi = c * R.SWAPFILE_CLUSTER, min(n, (c + 1) * R.SWAPFILE_CLUSTER)
        used = int(np.count_nonzero(smap[lo:hi])) + (R.SWAPFILE_CLUSTER - (hi - lo))
        if u32[(ci + R.CI_COUNT) >> 2] != used:
            bad.append(("SW3", f"cluster {c}: count {u32[(ci + R.CI_COUNT) >> 2]}, used slots {used}"))
        total += int(np.count_nonzero(smap[lo:hi]))
    if q[(off.base + R.H_SWAP_INUSE) >> 3] + 1 != total:
        bad.append(("SW3", f"inuse_pages {q[(off.base + R.H_SWAP_INUSE) >> 3]}, used slots {total - 1}"))
    bad += _check_clusters(arena, off)
    return bad


def _check_clusters(arena: Any, off: R.Off) -> list[tuple[str, str]]:
    """SW4: the cluster lists' links, counts and flags agree; a listed cluster is on the
    list its count asks for (free: none used; full: all; nonfull, or frag, between);
    a cluster on no list is a CPU's current one."""
    bad: list[tuple[str, str]] = []
    q, u32 = arena.u64, arena.u32
    nc, cl = off.nr_clusters, R.SWAPFILE_CLUSTER
    listed: dict[int, int] = {}
    for which, h in R.CL_HEADS.items():
        prev, c, k = NIL, u32[(off.base + h) >> 2], 0
        while c != NIL:
            ci = off.clus + c * R.CLUSTER_REC
            if c >= nc or c in listed or u32[(ci + R.CI_PREV) >> 2] != prev or u32[(ci + R.CI_FLAGS) >> 2] != which:
                bad.append(("SW4", f"cluster list {which} broken at cluster {c} after {k}"))
                break
            listed[c] = which
            prev, c, k = c, u32[(ci + R.CI_NEXT) >> 2], k + 1
        if k != q[(off.base + h + 8) >> 3] or u32[(off.base + h + 4) >> 2] != prev:
            bad.append(("SW4", f"cluster list {which}: {k} linked, count {q[(off.base + h + 8) >> 3]}, tail "
                               f"{u32[(off.base + h + 4) >> 2]} (last {prev})"))
    current = {q[(off.pcpu(c) + R.PC_CLUSTER) >> 3] - 1 for c in range(off.nr_cpus)}
    for c in range(nc):
        n = u32[(off.clus + c * R.CLUSTER_REC + R.CI_COUNT) >> 2]
        which = listed.get(c)
        if which is None:
            if c not in current:
                bad.append(("SW4", f"cluster {c} (count {n}) is on no list and no CPU's current cluster"))
            continue
        want = {R.CL_FREE} if not n else {R.CL_FULL} if n >= cl else {R.CL_NONFULL, R.CL_FRAG}
        if which not in want:
            bad.append(("SW4", f"cluster {c}: count {n} on list {which}"))
    return bad


def _all_objects(snap: VmSnapshot) -> list[int]:
    """Every vm_object: from each live mm's VMAs down their backing chains, and each
    file's vnode object (bounded: a chain that loops is cut where it repeats)."""
    from aerosync.mm.vm import vma as V
    from aerosync.mm.vm.vm_object import O_BACKING

    arena = snap.arena
    q = arena.u64
    seen: set[int] = set()
    out: list[int] = []

    def add(o: int) -> None:
        while o and o not in seen and 0 < o < arena.size:
            seen.add(o)
            out.append(o)
            o = int(q[(o + O_BACKING) >> 3])

    for fid in range(snap.max_files):
        fo = T.file_off(arena, fid)
        if q[(fo + T.F_STATE) >> 3] == 1:
            add(int(q[(fo + T.F_OBJ) >> 3]))
    for mm_id in snap.live_mms():
        if mm_id == 0:
            continue
        vmas, _err = snap.vmas(mm_id)
        for _f, _l, vma in vmas:
            add(int(q[(vma + V.V_OBJECT) >> 3]))
    return out
