"""NUMA views of process memory: /proc/<pid>/numa_maps and a task's locality (each
node's meminfo is procfs.py's node_meminfo, mm/pmm/vmstat.py node_meminfo_values).

Models: fs/proc/task_mmu.c (show_numa_map, gather_pte_stats, gather_stats,
can_gather_numa_stats), mm/mempolicy.c (mpol_to_str, __get_vma_policy).  Unit: one
task (by pid) of an arena.

numa_maps, one line per VMA, exactly as the kernel prints it::

    <vm_start %08lx> <policy>[ file=<path> | heap | stack][ anon=N][ dirty=N][ mapped=N]
        [ mapmax=N][ swapcache=N][ active=N][ writeback=N][ N<node>=pages ...]
        kernelpagesize_kB=4

  policy: the VMA's (or, for MAP_SHARED anonymous memory, the shared policy at the
  VMA's start), else the task's, in mpol_to_str's words ("default", "interleave:0-1",
  "bind=static:0", "prefer:1", "prefer (many):0-1", "weighted interleave:0-1", "local");
  the counts cover the pages its PTEs map (present or NUMA-hinting PROT_NONE, not the
  zero page): anon (anonymous folios), dirty (PTE or folio dirty), mapped (printed only
  when it differs from both anon and dirty), mapmax (the largest mapcount, when > 1),
  active (PG_active or PG_unevictable; printed when fewer than the pages), N<node>;
  nothing after the policy when the VMA maps no page.  "heap" is the brk area
  (vma_is_initial_heap); the simulated machine has no stack VMA.

Locking: a view reads without locks (the maple tree and page tables are RCU-readable;
the figures of a live task are a racy snapshot, as /proc's under a concurrent fault);
the task's own CPU may render its numa_maps at any time.
"""

from __future__ import annotations

from typing import Any

from aerosync.lib.maple_tree import MapleTree
from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa import numa_types as N
from aerosync.mm.pmm.page import (
    P_MAPPING,
    PAGE_MAPPING_ANON,
    PG_active,
    PG_dirty,
    PG_swapcache,
    PG_unevictable,
    PG_writeback,
)
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_SPECIAL, PTE_PFN_MASK
from aerosync.mm.vm.task import task_by_pid
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["show_numa_map", "numa_map_record", "numa_maps_text", "numa_maps_json", "numa_maps_format",
           "task_locality"]

_P_OR_NONE = _PAGE_PRESENT | _PAGE_PROTNONE


def _policy_of(arena: Any, pid1: int) -> tuple[int, int, int]:
    o = N.policy_off(arena, pid1 - 1)
    w = arena.u64[(o + N.P_MODE) >> 3]
    return w & 0xFFFF, (w >> 16) & 0xFFFF, arena.u64[(o + N.P_NODES) >> 3]


def _sp_lookup(arena: Any, obj: int, idx: int) -> int:
    """The shared policy at idx (lock-free read of the sorted range list)."""
    q, u32 = arena.u64, arena.u32
    n = q[(obj + 24) >> 3]
    guard = 0
    while n and guard < 1 << 20:
        o = N.sp_off(arena, n - 1)
        if q[(o + N.S_START) >> 3] > idx:
            return 0
        if idx < q[(o + N.S_END) >> 3]:
            return u32[(o + N.S_POL) >> 2]
        n = u32[(o + N.S_NEXT) >> 2]
        guard += 1
    return 0


def _vma_policy_id(arena: Any, vma: int) -> int:
    """__get_vma_policy(vma, vm_start): shmem's shared policy, else vm_policy."""
    q = arena.u64
    fl = q[(vma + V.V_FLAGS) >> 3]
    if fl & V.VM_SHARED and not q[(vma + V.V_FILE) >> 3]:
        obj = q[(vma + V.V_OBJECT) >> 3]
        return _sp_lookup(arena, obj, q[(vma + V.V_PGOFF) >> 3]) if obj else 0
    return q[(vma + V.V_POLICY) >> 3]


def _leaf_walk(arena: Any, root: int, va: int) -> int:
    """The PTE table pfn covering va (lock-free, as a hardware walk), or -1."""
    q = arena.u64
    P8 = arena.off("physmem") >> 3
    levels = q[(arena.off("vmhdr") + T.H_LEVELS) >> 3]
    t = root
    for lvl in range(levels, 1, -1):
        e = q[P8 + (t << 9) + ((va >> (PAGE_SHIFT + 9 * (lvl - 1))) & 511)]
        if not e & _PAGE_PRESENT or e & _PAGE_PSE:
            return -1
        t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
    return t


def _mm_vmas(arena: Any, mm_id: int) -> list[int]:
    tree = MapleTree(arena, T.mm_off(arena, mm_id) + T.M_MT)
    return [e for _f, _l, e in tree.mt_for_each(0, (1 << 64) - 1)]


def _gather(arena: Any, root: int, start: int, end: int) -> dict[str, Any]:
    """gather_pte_stats + gather_stats over [start, end)."""
    q, u32, u8 = arena.u64, arena.u32, arena.u8
    P8 = arena.off("physmem") >> 3
    PM = arena.off("pagemeta")
    md: dict[str, Any] = {"pages": 0, "anon": 0, "active": 0, "writeback": 0, "mapcount_max": 0, "dirty": 0,
                          "swapcache": 0, "node": {}}
    node = md["node"]
    a = start
    while a < end:
        nxt = min(end, (a | ((1 << 21) - 1)) + 1)
        table = _leaf_walk(arena, root, a)
        if table >= 0:
            base = P8 + (table << 9)
            for va in range(a, nxt, PAGE_SIZE):
                e = q[base + ((va >> PAGE_SHIFT) & 511)]
                if not e & _P_OR_NONE or e & _PAGE_SPECIAL:
                    continue                      # can_gather_numa_stats: present, not the zero page
                pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                pm = PM + pfn * PAGE_META_SIZE
                flags = u32[pm >> 2]
                md["pages"] += 1
                if e & _PAGE_DIRTY or flags & PG_dirty:
                    md["dirty"] += 1
                if flags & PG_swapcache:
                    md["swapcache"] += 1
                if flags & (PG_active | PG_unevictable):
                    md["active"] += 1
                if flags & PG_writeback:
                    md["writeback"] += 1
                if q[(pm + P_MAPPING) >> 3] & PAGE_MAPPING_ANON:
                    md["anon"] += 1
                mc = u32[(pm + 12) >> 2]
                if mc > md["mapcount_max"]:
                    md["mapcount_max"] = mc
                nid = u8[pm + 7]
                node[nid] = node.get(nid, 0) + 1
        a = nxt
    return md


def _task_policy_text(arena: Any, tid: int) -> str:
    pid1 = arena.u64[(T.task_off(arena, tid) + T.T_MEMPOLICY) >> 3]
    if not pid1:
        return "default"
    return MP.mpol_to_str(*_policy_of(arena, pid1))


def numa_map_record(arena: Any, tid: int, vma: int) -> dict[str, Any]:
    """show_numa_map()'s figures for one VMA of task `tid` (start, policy, kind, the
    gathered counts, pages per node)."""
    q = arena.u64
    mm_id = q[(T.task_off(arena, tid) + T.T_MM) >> 3] - 1
    mo = T.mm_off(arena, mm_id)
    start, end = q[(vma + V.V_START) >> 3], q[(vma + V.V_END) >> 3]
    pid1 = _vma_policy_id(arena, vma)
    rec: dict[str, Any] = {"start": start,
                           "policy": MP.mpol_to_str(*_policy_of(arena, pid1)) if pid1 else _task_policy_text(arena,
                                                                                                             tid)}
    fid1 = q[(vma + V.V_FILE) >> 3]
    if fid1:
        from aerosync.mm.vm.filemap import _name_of, file_path

        rec["file"] = file_path(arena, fid1 - 1) or _name_of(arena, fid1 - 1)
    elif start <= q[(mo + T.M_BRK) >> 3] and end >= q[(mo + T.M_START_BRK) >> 3]:
        rec["kind"] = "heap"
    elif q[(vma + V.V_FLAGS) >> 3] & V.VM_GROWSDOWN:
        rec["kind"] = "stack"
    md = _gather(arena, q[(mo + T.M_PGD) >> 3], start, end)
    mem = arena.u64[(arena.off("numa") + N.H_MEM_NODES) >> 3]
    md["node"] = {nid: n for nid, n in sorted(md["node"].items()) if mem >> nid & 1}
    rec.update(md)
    return rec


def _line(rec: dict[str, Any]) -> str:
    out = [f"{rec['start']:08x} {rec['policy']}"]
    if "file" in rec:
        out.append(f" file={rec['file']}")
    elif "kind" in rec:
        out.append(f" {rec['kind']}")
    if rec["pages"]:
        if rec["anon"]:
            out.append(f" anon={rec['anon']}")
        if rec["dirty"]:
            out.append(f" dirty={rec['dirty']}")
        if rec["pages"] != rec["anon"] and rec["pages"] != rec["dirty"]:
            out.append(f" mapped={rec['pages']}")
        if rec["mapcount_max"] > 1:
            out.append(f" mapmax={rec['mapcount_max']}")
        if rec["swapcache"]:
            out.append(f" swapcache={rec['swapcache']}")
        if rec["active"] < rec["pages"]:
            out.append(f" active={rec['active']}")
        if rec["writeback"]:
            out.append(f" writeback={rec['writeback']}")
        for nid, n in rec["node"].items():
            out.append(f" N{nid}={n}")
        out.append(f" kernelpagesize_kB={PAGE_SIZE >> 10}")
    return "".join(out) + "\n"


def show_numa_map(arena: Any, tid: int, vma: int) -> str:
    """One numa_maps line of task `tid` for `vma` (show_numa_map)."""
    return _line(numa_map_record(arena, tid, vma))


def numa_maps_json(arena: Any, pid: int) -> list[dict[str, Any]]:
    """/proc/<pid>/numa_maps as records (LookupError: no such task)."""
    tid = task_by_pid(arena, pid)
    if tid < 0:
        raise LookupError(f"numa_maps: no task with pid {pid}")
    mm_id = arena.u64[(T.task_off(arena, tid) + T.T_MM) >> 3] - 1
    if mm_id <= 0:
        return []
    return [numa_map_record(arena, tid, v) for v in _mm_vmas(arena, mm_id)]


def numa_maps_format(records: list[dict[str, Any]]) -> str:
    """numa_maps_json's records as the file's text."""
    return "".join(_line(r) for r in records)


def numa_maps_text(arena: Any, pid: int) -> str:
    """/proc/<pid>/numa_maps of a task of the arena (LookupError: no such task)."""
    return numa_maps_format(numa_maps_json(arena, pid))


def task_locality(arena: Any, tid: int, nid: int, start: int = 0, end: int = 1 << 64) -> tuple[int, int]:
    """(pages on node nid, pages) mapped by task `tid` in [start, end): the share of its
    memory that is local to a CPU of node nid."""
    q = arena.u64
    mm_id = q[(T.task_off(arena, tid) + T.T_MM) >> 3] - 1
    if mm_id <= 0:
        return 0, 0
    root = q[(T.mm_off(arena, mm_id) + T.M_PGD) >> 3]
    local = total = 0
    for v in _mm_vmas(arena, mm_id):
        s, e = max(start, q[(v + V.V_START) >> 3]), min(end, q[(v + V.V_END) >> 3])
        if s >= e:
            continue
        md = _gather(arena, root, s, e)
        total += md["pages"]
        local += md["node"].get(nid, 0)
    return local, total
