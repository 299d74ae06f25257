"""NUMA invariants of process memory, checked on a quiescent machine (after a run, or
mid-flight with every CPU parked at a batch boundary).

Models: what CONFIG_DEBUG_VM checks would say after page migration and NUMA balancing:
every mapping of a folio is counted once, on the folio's node.  Unit: a whole arena.

  NC1  for every page, folio_mapcount == the PTEs (present or NUMA-hinting PROT_NONE,
       not the zero page) that map it, over every live mm's page tables;
  NC2  per node, nr_anon_pages == the mapped anonymous folios on that node and
       nr_mapped == the mapped file / shmem folios on it (the node stat counters follow
       a page that migration moved);
  NC3  no migration entry is left in a page table and no user folio is PG_locked (every
       migration finished or backed out);
  NC4  each live mm's rss counters (anon, file, shmem) == its mapped PTEs by kind;
  NC5  published policy records are distinct (interning: mpol_equal is id equality) and
       every task / VMA policy id names a published record.
A racy read of a live machine would report half-done operations: callers park every CPU
first (the coordinator's live check, the tests' pause protocol).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from aerosync.lib.maple_tree import MapleTree
from aerosync.mm.numa import numa_types as N
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import PAGE_MAPPING_ANON, PG_locked, page_array
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_SPECIAL,
    PTE_PFN_MASK,
    is_migration_entry,
)
from aerosync.mm.vm.task import live_tasks
from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = ["numa_check"]

_P_OR_NONE = _PAGE_PRESENT | _PAGE_PROTNONE


def _live_mms(arena: Any) -> list[int]:
    q = arena.u64
    n = q[(arena.off("vmhdr") + T.H_MAX_MMS) >> 3]
    return [m for m in range(1, n) if q[(T.mm_off(arena, m) + T.M_STATE) >> 3] == T.MM_LIVE]


def _ptes(arena: Any, mm_id: int) -> list[tuple[int, int]]:
    """(va, entry) of every non-empty PTE inside mm_id's VMAs."""
    q = arena.u64
    P8 = arena.off("physmem") >> 3
    levels = q[(arena.off("vmhdr") + T.H_LEVELS) >> 3]
    mo = T.mm_off(arena, mm_id)
    root = q[(mo + T.M_PGD) >> 3]
    out = []
    for _f, _l, v in MapleTree(arena, mo + T.M_MT).mt_for_each(0, (1 << 64) - 1):
        a, end = q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3]
        while a < end:
            nxt = min(end, (a | ((1 << 21) - 1)) + 1)
            t = root
            for lvl in range(levels, 1, -1):
                e = q[P8 + (t << 9) + ((a >> (PAGE_SHIFT + 9 * (lvl - 1))) & 511)]
                if not e & _PAGE_PRESENT or e & _PAGE_PSE:
                    t = -1
                    break
                t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            if t >= 0:
                base = P8 + (t << 9)
                for va in range(a, nxt, PAGE_SIZE):
                    e = q[base + ((va >> PAGE_SHIFT) & 511)]
                    if e:
                        out.append((va, e))
            a = nxt
    return out


def numa_check(arena: Any) -> list[str]:
    """Every NC* violation found (empty: all hold).  See the module docstring."""
    bad: list[str] = []
    mapped: Counter[int] = Counter()
    q = arena.u64
    for mm_id in _live_mms(arena):
        rss = [0, 0, 0, 0]
        for va, e in _ptes(arena, mm_id):
            if is_migration_entry(e):
                bad.append(f"NC3 mm {mm_id}: a migration entry is left at {va:#x} ({e:#x})")
                continue
            if not e & _P_OR_NONE or e & _PAGE_SPECIAL:
                continue
            pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            mapped[pfn] += 1
            m = q[(arena.off("pagemeta") + pfn * 64 + 40) >> 3]
            if m & PAGE_MAPPING_ANON:
                rss[T.MM_ANONPAGES] += 1
            elif m and (arena.u32[((m & ~3) + 0) >> 2] & 0xFFFF) == 1:
                rss[T.MM_SHMEMPAGES] += 1
            else:
                rss[T.MM_FILEPAGES] += 1
        got = T.get_mm_counters(q, T.mm_off(arena, mm_id), int(arena.config["nr_cpus"]))
        for k in (T.MM_FILEPAGES, T.MM_ANONPAGES, T.MM_SHMEMPAGES):
            if got[k] != rss[k]:
                bad.append(f"NC4 mm {mm_id}: {T.MM_COUNTER_NAMES[k]} = {got[k]} but {rss[k]} PTEs map such pages")
    pages = page_array(arena)
    try:
        mc = pages["mapcount"].astype(np.int64)
        want = np.zeros_like(mc)
        for pfn, n in mapped.items():
            want[pfn] = n
        diff = np.flatnonzero(mc != want)
        for pfn in diff[:20].tolist():
            bad.append(f"NC1 pfn {pfn}: mapcount {int(mc[pfn])} but {int(want[pfn])} PTEs map it")
        mapping = pages["mapping"]
        node = pages["node"].astype(np.int64)
        flags = pages["flags"]
        is_mapped = mc > 0
        anon = (mapping & PAGE_MAPPING_ANON).astype(bool)
        nr_nodes = int(node.max()) + 1 if len(node) else 1
        anon_per = np.bincount(node[is_mapped & anon], minlength=nr_nodes)
        other_per = np.bincount(node[is_mapped & ~anon], minlength=nr_nodes)
        locked = np.flatnonzero((flags & PG_locked).astype(bool) & (mapping != 0))
        for pfn in locked[:5].tolist():
            bad.append(f"NC3 pfn {pfn}: a user folio is still PG_locked")
    finally:
        del pages
    stats = VE.fold_node_stats(arena)
    for nid, st in enumerate(stats):
        a = int(anon_per[nid]) if nid < len(anon_per) else 0
        o = int(other_per[nid]) if nid < len(other_per) else 0
        if st["nr_anon_pages"] != a:
            bad.append(f"NC2 node {nid}: nr_anon_pages {st['nr_anon_pages']} but {a} mapped anonymous pages there")
        if st["nr_mapped"] != o:
            bad.append(f"NC2 node {nid}: nr_mapped {st['nr_mapped']} but {o} mapped file/shmem pages there")
    if N.numa_ready(arena):
        bad += _policy_check(arena)
    return bad


def _policy_check(arena: Any) -> list[str]:
    q = arena.u64
    base = arena.off("numa")
    n = q[(base + N.H_NR_POLICIES) >> 3]
    seen: dict[tuple[int, int, int], int] = {}
    bad = []
    for i in range(n):
        o = N.policy_off(arena, i)
        if not q[(o + N.P_USED) >> 3]:
            bad.append(f"NC5 policy {i}: below the published count but not published")
            continue
        key = (q[(o + N.P_MODE) >> 3], q[(o + N.P_NODES) >> 3], q[(o + N.P_USER) >> 3])
        if key in seen:
            bad.append(f"NC5 policies {seen[key]} and {i} are equal (interning broken)")
        seen[key] = i
    for tid in live_tasks(arena):
        p = q[(T.task_off(arena, tid) + T.T_MEMPOLICY) >> 3]
        if p and not 0 < p <= n:
            bad.append(f"NC5 task slot {tid}: mempolicy id {p - 1} is not a published policy")
    for mm_id in _live_mms(arena):
        for _f, _l, v in MapleTree(arena, T.mm_off(arena, mm_id) + T.M_MT).mt_for_each(0, (1 << 64) - 1):
            p = q[(v + V.V_POLICY) >> 3]
            if p and not 0 < p <= n:
                bad.append(f"NC5 mm {mm_id} VMA {q[(v + V.V_START) >> 3]:#x}: policy id {p - 1} is not published")
    return bad
