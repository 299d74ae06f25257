"""Invariant checker for virtual memory: VMAs, page tables, rmap, RSS, vm_objects.

Models: CONFIG_DEBUG_VM's checks spread over mm/ (validate_mm, mt_validate,
check_mm's "BUG: Bad rss-counter state", page_table_check, folio_mapcount sanity)
gathered into one stop-the-world pass, as mm/pmm/check.py does for physical memory.
Unit: a quiescent arena -- no CPU inside a system call or a fault: after a run, in
tests, or with the workers parked at the pause barrier (batch boundaries).  Reads only
(mm/vm/snapshot.py's readers; numpy over struct page and the PTE tables).

Invariant IDs (InvariantViolation.inv_id; tests/test_vm_check.py breaks each on purpose;
the IDs the VM modules' docstrings already name keep their meaning):

  VT1 each mm's maple tree passes mt_validate (MT1..MT8: ordered, non-overlapping
      ranges, gaps right -- the arange gap words used by get_unmapped_area).
  VT2 every tree entry is an attached VMA record (state VMA_ATTACHED) whose vm_mm is
      the mm, stored exactly over [vm_start, vm_end - 1]; no VMA is in two places.
  VT3 vm_start < vm_end, both page aligned, mmap_min_addr <= vm_start and
      vm_end <= the mm's task_size.
  VT4 map_count == the number of VMAs in the tree.
  VT5 total_vm, locked_vm, data_vm, exec_vm, stack_vm == the sums over the VMAs
      (vm_stat_account's split), and hiwater_vm >= total_vm.
  MM1 no mm record in a transient state; a live mm has mm_users >= 1 and >= the tasks
      using it; every task's mm is a live mm; live files name a live vnode object.
  PT1 every page-table page is PG_table with its level, owner (mapping = mm id + 1)
      and first address (index) set, reachable exactly once from one mm's root (the
      user half of a user PGD; init_mm's whole), through present _PAGE_TABLE entries
      (no huge leaves); no PG_table page is unreachable; a user PGD's kernel half is
      init_mm's.
  PT2 every present PTE maps an allocated page (refcount > 0, not free, reserved,
      slab or a table) or the zero page with _PAGE_SPECIAL and without _PAGE_RW;
      _PAGE_SPECIAL marks only the zero page; the zero page keeps its one reference.
  PT3 an mm's pgtables_bytes == 4096 x its tables; nr_page_table_pages of each node ==
      the PG_table pages on that node.
  PT4 every non-none PTE lies inside a VMA of its mm, and is writable only where the
      VMA has VM_WRITE.
  R1  every page's mapcount == the PTEs mapping it (all mms; the zero page: none).
  R2  refcount == (1 if in an object's tree) + mapcount (+ 1 per per-CPU lru_add batch
      slot holding it, + 1 while in the swap cache: mm/reclaim) for every mapped or
      cached folio, and every mapped folio (but the zero page) is in an object's tree.
      (A folio is in a tree and the swap cache at once when a swap-in leaves counts on
      its slot: a forked child's swap-in while the parent keeps its swap PTE.)
  R3  every present PTE maps the folio the VMA's object chain (or the file's page
      cache) holds at that address's index; a zero-page PTE only where the chain
      holds no folio; a writable PTE of a private mapping maps a folio of the VMA's
      own top object (COW was broken before the write was allowed).
  R4  nr_anon_pages / nr_mapped of each node == the mapped anonymous / other folios
      on that node (memory.py counts at mapcount 0 -> 1 -> 0).
  RSS1 each mm's MM_ANONPAGES / MM_FILEPAGES / MM_SHMEMPAGES == its present PTEs by
      kind (memory.py's kind_of: anonymous folio / a page of an anonymous shared
      object / anything else), and MM_SWAPENTS == its swap entries -- each counter
      summed as percpu_counter_sum: the shared word plus every CPU's part
      (mm_types.py get_mm_counters).
  O1  a folio in an object's tree has mapping == the object (| PAGE_MAPPING_ANON for
      private anonymous objects) and index == its tree index; a page whose mapping
      names an object is in that object's tree at its index.
  O2  shadow chains are acyclic and depth == 1 + the backing's depth (0 without one);
      no object's collapse sequence is odd (a collapse in flight).
  O3  refcount == VMAs whose vm_object it is + shadow children (+ 1 for a live file's
      vnode object); no dead (OBJF_DEAD) object is reachable.
  O4  no folio is in two object trees (nor twice in one).
  O5  nr_pages == the folios in the tree, and the tree is well formed (node counts,
      parent links, shifts).
  O6  every VMA on an object's list (vm_object links; a vnode object's: the file's
      i_mmap links) points back at it with consistent prev links, and every VMA is on
      the list of its object and of its file.
  O7  shadow depth within [vm] shadow_depth_limit + SHADOW_DEPTH_MARGIN, counting only
      what a collapse could remove (see below).
  O8  an object's children list holds exactly the objects whose backing it is, once
      each, and nr_children == its length.
  FR1 no free page (inside a buddy or PCP block) has a mapping or an index.
  LK1 (final=True: after every CPU left, RCU drained) the VM's caches hold exactly the
      live records: vm_area_struct == VMAs in trees, vm_object == reachable objects,
      maple_node == nodes of live trees (the vmalloc slices' too), radix_tree_node ==
      nodes of live page trees.
  VA1..VA5 init_mm's kernel half: vmalloc's trees, mappings and blocks (mm/vm/vmalloc.py
      states them, mm/vm/vmalloc_check.py checks them); PT2/PT4/R1/RSS1 apply to user
      leaves only -- kernel mappings take no mapcount and belong to no VMA, as in Linux.

The depth limit (O7).  collapse (vm_object.py) folds a backing into its only child
when the backing is private anonymous with refcount 1 and one child; a link whose
backing is shared by two live children (a fork whose child still runs), referenced
otherwise, or a vnode object can never be collapsed.  A correct kernel collapses
whenever a chain it changes exceeds the limit; between two such points one fork adds
exactly one level to every private chain (dup_mmap shadows the current top), so at a
quiescent point a chain may exceed the limit by one: SHADOW_DEPTH_MARGIN = 1.  O7
fires when depth > max(limit, irreducible links) + 1, i.e. when collapses that were
possible were not done -- a chain made only of links no collapse may touch is not a
violation however deep it is.  (This assumes collapse also runs where a chain becomes
collapsible -- at fork over a chain at the limit, or when a backing loses its second
child, as BSD's vm_object_deallocate does.  If it runs only at fault time, a task that
forks and lets the child exit k times without touching the region reaches limit + k
legitimately, and the margin would have to count forks since the last fault.)

Quiescence: R1/R2/O3/LK1 compare counts that are in flux inside a fault, a munmap
(an mmu_gather holds pages between zap and flush) or an RCU grace period; the
coordinator runs this only with every CPU parked between operations, LK1 only at the
end.  Cost (2-core box, 64 MiB written then forked and half re-written: 3 mms, 32768
PTEs, 24576 folios, 73 tables): 0.12 s, 0.09 s without the final counts; numpy over
struct page, the PTE tables and each page tree's entries (R3 resolves whole VMAs at
once, chain level by chain level); the page-tree nodes themselves are read in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.mm.pmm.check import CheckReport, _extent_cover, _Sink, run_checker
from aerosync.mm.pmm.page import (
    PAGE_MAPPING_ANON,
    PG_buddy,
    PG_pcp,
    PG_reserved,
    PG_slab,
    PG_swapcache,
    PG_table,
    PG_tail,
)
from aerosync.mm.pmm.vm_event import fold_node_stats
from aerosync.mm.reclaim.layout import pcpu_batch_pfns
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import (
    _PAGE_GLOBAL,
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_SPECIAL,
    MAX_SWAPFILES,
    PTE_PFN_MASK,
    SWP_MIGRATION_READ,
    SWP_MIGRATION_WRITE,
    level_shift,
    swp_offset,
    swp_type,
)
from aerosync.mm.vm.snapshot import KERNEL_HALF, VmSnapshot
from aerosync.mm.vm.vm_object import (
    O_BACKING,
    O_BACKING_OFF,
    O_CHILDREN,
    O_DEPTH,
    O_NR_CHILDREN,
    O_NR_PAGES,
    O_REF,
    O_SIBLING,
    O_TYPE,
    O_VMA_HEAD,
    OBJ_ANON,
    OBJ_VNODE,
    OBJF_DEAD,
    OBJF_SHARED,
)
from aerosync.mm.vm.vmalloc_check import check_vmalloc, vmalloc_tree_nodes
from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = ["vm_check", "vm_counts", "VM_INVARIANTS", "SHADOW_DEPTH_MARGIN"]

VM_INVARIANTS = ("VT1", "VT2", "VT3", "VT4", "VT5", "MM1", "PT1", "PT2", "PT3", "PT4", "R1", "R2", "R3", "R4",
                 "RSS1", "O1", "O2", "O3", "O4", "O5", "O6", "O7", "O8", "FR1", "LK1")
SHADOW_DEPTH_MARGIN = 1
_CHAIN_MAX = 256                      # longer than any sane chain: a walk past it is a cycle
_U64 = (1 << 64) - 1
_P_OR_NONE = _PAGE_PRESENT | _PAGE_GLOBAL          # pte_present(): P, or PROT_NONE (G without P)
KIND_FILE, KIND_ANON, KIND_SWAP, KIND_SHMEM = T.MM_FILEPAGES, T.MM_ANONPAGES, T.MM_SWAPENTS, T.MM_SHMEMPAGES


def vm_check(arena: Any, raise_first: bool = False, limit: int = 20, final: bool = False) -> CheckReport:
    """Check every invariant in the module docstring (LK1 only with final=True);
    report (or raise) violations.  An arena without virtual memory passes trivially."""
    if not T.vm_ready(arena):
        rep = CheckReport()
        rep.summary = {"vm": "not booted"}
        return rep
    return run_checker(lambda a, s: _check(a, s, final), arena, raise_first, limit)


def vm_counts(arena: Any, sink: _Sink | None = None) -> Any:
    """One checker pass (violations to `sink`, or dropped) returning what the counts
    should be, for a recovery that settles them (mm/vm/recover.py settle_counts): the
    pass's per-pfn arrays (`mapped` PTEs, `in_tree`, `batched`, `cached`, `mapc`,
    `ref`, `flags`, `node`, `free`, `allocated`), `objs` (every reachable object) and
    `xa_nodes` (their page trees' nodes), `rss_want` / `tables_want` / `vm_want` per live mm,
    `nr_pages_want` / `ref_want` per reachable object, and `nr_anon_mapped` / `nr_other_mapped` per
    node (R4's counts).  Same quiescence as vm_check."""
    snap = VmSnapshot(arena)
    try:
        c = _Checker(snap, sink or _Sink(False, 0), False)
        c.run()
    finally:
        snap.close()
    return c


def _check(arena: Any, s: _Sink, final: bool) -> None:
    snap = VmSnapshot(arena)
    try:
        _Checker(snap, s, final).run()
    finally:
        snap.close()


class _Checker:
    def __init__(self, snap: VmSnapshot, s: _Sink, final: bool) -> None:
        self.snap, self.s, self.final = snap, s, final
        self.arena = snap.arena
        self.q, self.u32 = snap.arena.u64, snap.arena.u32
        n = snap.nr_pages
        pages = snap.pages
        self.flags = pages["flags"][:n].copy()
        self.ref = pages["refcount"][:n].astype(np.int64)
        # references parked in per-CPU lru_add batches (mm/reclaim; Linux's folio_batch
        # in lru_add: each batched folio holds one until the batch drains)
        self.batched = np.zeros(n, dtype=np.int64)
        bp = np.array(pcpu_batch_pfns(snap.arena), dtype=np.int64)
        np.add.at(self.batched, bp[(bp >= 0) & (bp < n)], 1)
        self.mapc = pages["mapcount"][:n].astype(np.int64)
        self.mapping = pages["mapping"][:n].copy()
        self.index = pages["index"][:n].copy()
        self.node = pages["node"][:n].astype(np.int64)
        self.level = pages["spare"][:n].copy()
        order = pages["order"][:n].astype(np.int64)
        f = self.flags
        heads_free = np.flatnonzero((f & (PG_buddy | PG_pcp)) != 0)
        size = np.int64(1) << np.minimum(order[heads_free], 62)
        self.free = _extent_cover(n, heads_free, size) > 0
        self.allocated = ((self.ref > 0) & ~self.free & ((f & (PG_reserved | PG_tail | PG_slab | PG_table)) == 0))
        self.nr_pages = n
        self.vmas_all: dict[int, tuple[int, int]] = {}             # vma -> (mm, start)
        self.vma_rec: dict[int, dict[str, int]] = {}
        self.mm_vmas: dict[int, list[dict[str, int]]] = {}
        self.objs: dict[int, dict[str, int]] = {}
        self.obj_items: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # object -> (indices, entries), sorted
        self.obj_nodes = 0
        self.xa_nodes: set[int] = set()                           # the page trees' nodes (arena offsets)
        self.maple_nodes = 0
        self.in_tree = np.zeros(n, dtype=np.int64)
        self.tree_ok = np.zeros(n, dtype=bool)                    # in the tree its mapping/index name
        self._folios: list[tuple[int, np.ndarray, np.ndarray]] = []   # (object, indices, pfns) per tree
        self.mapped = np.zeros(n, dtype=np.int64)                 # PTEs mapping each pfn (R1)
        self.tables_reached: dict[int, str] = {}
        self.files: dict[int, int] = {}                           # fid -> vnode object
        self.kernel_leaves = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64))
        self.summary: dict[str, Any] = {}
        # what the counters should say (vm_counts: mm/vm/recover.py settle_counts)
        self.rss_want: dict[int, list[int]] = {}                 # mm -> rss by kind (RSS1)
        self.vm_want: dict[int, tuple[int, dict[str, int]]] = {}  # mm -> (map_count, *_vm) (VT4/VT5)
        self.tables_want: dict[int, int] = {}                     # mm -> its tables (PT3)
        self.nr_pages_want: dict[int, int] = {}                   # object -> its folios (O5)
        self.ref_want: dict[int, int] = {}                        # object -> its references (O3)
        self.cached = np.zeros(n, dtype=np.int64)                 # in the swap cache (R2)

    # ------------------------------------------------------------------ driver
    def run(self) -> None:
        snap = self.snap
        self._files()
        states = snap.mm_states()
        live = [m for m, st in enumerate(states) if st == T.MM_LIVE]
        for m, st in enumerate(states):
            if st not in (T.MM_FREE, T.MM_LIVE):
                self.s.add("MM1", f"mm {m}", "state MM_FREE or MM_LIVE at a quiescent point", f"state {st}")
        self._tasks(set(live))
        walks = {}
        for m in live:
            self._vma_tree(m)
        for m in live:
            walks[m] = self._tables(m)
        self._orphan_tables()
        self._objects()
        for m in live:
            self._leaves(m, walks[m])
        self._pages()
        check_vmalloc(self.arena, self.s, *self.kernel_leaves, self.allocated, self.final)
        if self.final:
            self._leaks()
        self.s.report.summary.update({
            "vm_mms": len(live), "vm_vmas": len(self.vmas_all), "vm_objects": len(self.objs),
            "vm_tables": len(self.tables_reached), "vm_mapped_pages": int((self.mapped > 0).sum()),
            "vm_cached_pages": int((self.in_tree > 0).sum())})

    # ------------------------------------------------------------------ files, tasks, mms
    def _files(self) -> None:
        from aerosync.mm.vm.filemap import FILE_CLAIMED, FILE_LIVE

        q = self.q
        for fid in range(self.snap.max_files):
            fo = T.file_off(self.arena, fid)
            st = q[(fo + T.F_STATE) >> 3]
            if st == FILE_CLAIMED:
                self.s.add("MM1", f"file {fid}", "file records FREE or LIVE at a quiescent point", "CLAIMED")
            if st != FILE_LIVE:
                continue
            o = q[(fo + T.F_OBJ) >> 3]
            if not self._obj_ok(o) or (self.u32[(o + O_TYPE) >> 2] & 0xFFFF) != OBJ_VNODE:
                self.s.add("MM1", f"file {fid}", "a live file names its vnode object", f"object {o:#x}")
                continue
            self.files[fid] = o

    def _tasks(self, live: set[int]) -> None:
        q, u32 = self.q, self.u32
        users: dict[int, int] = {}
        for tid in range(self.snap.max_tasks):
            to = T.task_off(self.arena, tid)
            st = u32[(to + T.T_STATE) >> 2]
            if st == T.TASK_FREE:
                continue
            mm = q[(to + T.T_MM) >> 3] - 1
            if mm < 0:
                continue
            if mm not in live:
                self.s.add("MM1", f"task slot {tid} (pid {q[(to + T.T_PID) >> 3]})", "its mm is a live mm",
                           f"mm {mm}")
                continue
            users[mm] = users.get(mm, 0) + 1
        for m in live:
            u = self.snap.mm_word(m, T.M_USERS)
            if u < 1 or u >= 1 << 63 or u < users.get(m, 0):
                self.s.add("MM1", f"mm {m}", f"mm_users >= 1 and >= the {users.get(m, 0)} tasks using it", u)

    def _obj_ok(self, o: int) -> bool:
        return o > 0 and o % 8 == 0 and o + 128 <= self.arena.size

    # ------------------------------------------------------------------ VT: the VMA tree
    def _vma_tree(self, m: int) -> None:
        s, snap = self.s, self.snap
        t = snap.tree(m)
        for err in t.mt_validate():
            s.add("VT1", f"mm {m} maple tree", "mt_validate() clean", err)
        entries, err = snap.vmas(m)
        if err:
            s.add("VT1", f"mm {m} maple tree", "a walk in index order", err)
        self.maple_nodes += _safe_nodes(t)
        mo = snap.mm_off(m)
        task_size = snap.mm_word(m, T.M_TASK_SIZE)
        recs = []
        acct = {"total": 0, "locked": 0, "data": 0, "exec": 0, "stack": 0}
        for first, last, v in entries:
            where = f"mm {m} VMA {v:#x} [{first:#x}, {last + 1:#x})"
            rec = snap.vma(v)
            if not rec:
                s.add("VT2", where, "an arena offset of a VMA record", f"entry {v:#x}")
                continue
            if v in self.vmas_all:
                s.add("VT2", where, "each VMA in one tree, once", f"also in mm {self.vmas_all[v][0]} at "
                                                                   f"{self.vmas_all[v][1]:#x}")
                continue
            self.vmas_all[v] = (m, first)
            if rec["state"] != V.VMA_ATTACHED or rec["mm"] != m or rec["start"] != first or rec["end"] != last + 1:
                s.add("VT2", where, f"attached, vm_mm {m}, [vm_start, vm_end) == the tree range",
                      f"state {rec['state']}, vm_mm {rec['mm']}, [{rec['start']:#x}, {rec['end']:#x})")
            st, en = rec["start"], rec["end"]
            if not (st < en and not st % PAGE_SIZE and not en % PAGE_SIZE and st >= snap.mmap_min_addr
                    and en <= task_size):
                s.add("VT3", where, f"start < end, page aligned, inside [{snap.mmap_min_addr:#x}, {task_size:#x}]",
                      f"[{st:#x}, {en:#x})")
            self.vma_rec[v] = rec
            recs.append(rec | {"vma": v})
            if st < en:
                n, fl = (en - st) >> PAGE_SHIFT, rec["flags"]
                acct["total"] += n
                if fl & (V.VM_EXEC | V.VM_WRITE) == V.VM_EXEC:
                    acct["exec"] += n
                elif fl & V.VM_STACK:
                    acct["stack"] += n
                elif fl & (V.VM_WRITE | V.VM_SHARED | V.VM_STACK) == V.VM_WRITE:
                    acct["data"] += n
                if fl & V.VM_LOCKED:
                    acct["locked"] += n
        self.mm_vmas[m] = recs
        self.vm_want[m] = (len(entries), dict(acct))
        mc = self.q[(mo + T.M_MAP_COUNT) >> 3]
        if mc != len(entries):
            s.add("VT4", f"mm {m}", f"map_count == {len(entries)} VMAs", mc)
        if m == 0:
            return
        got = {k: self.q[(mo + off) >> 3] for k, off in (("total", T.M_TOTAL_VM), ("locked", T.M_LOCKED_VM),
                                                          ("data", T.M_DATA_VM), ("exec", T.M_EXEC_VM),
                                                          ("stack", T.M_STACK_VM))}
        bad = {k: (acct[k], got[k]) for k in acct if acct[k] != got[k]}
        if bad:
            s.add("VT5", f"mm {m}", "the *_vm counters == sums over the VMAs",
                  ", ".join(f"{k}_vm {g} (VMAs: {w})" for k, (w, g) in bad.items()))
        hw = self.q[(mo + T.M_HIWATER_VM) >> 3]
        if hw < got["total"]:
            s.add("VT5", f"mm {m}", f"hiwater_vm >= total_vm ({got['total']})", hw)

    # ------------------------------------------------------------------ PT: tables
    def _tables(self, m: int) -> Any:
        s, snap = self.s, self.snap
        w = snap.walk(m, seen=self.tables_reached)
        for where, exp, found in w.bad:
            s.add("PT1", where, exp, found)
        for pfn, level, base, where in w.tables:
            f = int(self.flags[pfn])
            bad = []
            if not f & PG_table:
                bad.append(f"flags {f:#x} without PG_table")
            if self.level[pfn] != level:
                bad.append(f"level {int(self.level[pfn])}")
            if self.mapping[pfn] != m + 1:
                bad.append(f"owner (mapping) {int(self.mapping[pfn])}")
            if self.index[pfn] != base:
                bad.append(f"index {int(self.index[pfn]):#x}")
            if bad:
                s.add("PT1", f"{where}: table pfn {pfn}",
                      f"PG_table, level {level}, mapping {m + 1}, index {base:#x}", "; ".join(bad))
        ptb = snap.mm_word(m, T.M_PGTABLES_BYTES)
        self.tables_want[m] = len(w.tables)
        if ptb != PAGE_SIZE * len(w.tables):
            s.add("PT3", f"mm {m}", f"pgtables_bytes == 4096 x {len(w.tables)} tables", ptb)
        if m != 0:
            root, init_root = snap.mm_word(m, T.M_PGD), snap.mm_word(0, T.M_PGD)
            if root < snap.nr_pages and init_root < snap.nr_pages and not np.array_equal(
                    snap.table(root)[KERNEL_HALF:], snap.table(init_root)[KERNEL_HALF:]):
                s.add("PT1", f"mm {m} root pfn {root}", "the kernel half of the PGD == init_mm's",
                      "entries 256..511 differ")
        return w

    def _orphan_tables(self) -> None:
        s = self.s
        tables = np.flatnonzero((self.flags & PG_table) != 0)
        reached = np.zeros(self.nr_pages, dtype=bool)
        reached[list(self.tables_reached)] = True
        s.many("PT1", tables[~reached[tables]], "a PG_table page reachable from an mm's root",
               lambda p: f"unreachable table (owner mapping {int(self.mapping[p])}, level {int(self.level[p])})")
        per_node = np.bincount(self.node[tables], minlength=_nr_nodes(self.arena))
        stats = fold_node_stats(self.arena)
        for nid, st in enumerate(stats):
            want = int(per_node[nid]) if nid < len(per_node) else 0
            if st["nr_page_table_pages"] != want:
                s.add("PT3", f"node {nid}", f"nr_page_table_pages == {want} PG_table pages",
                      st["nr_page_table_pages"])

    # ------------------------------------------------------------------ O: objects
    def _objects(self) -> None:
        s, q, u32 = self.s, self.q, self.u32
        roots: list[int] = list(self.files.values())
        for v, rec in self.vma_rec.items():
            o = rec["object"]
            if o:
                if not self._obj_ok(o):
                    s.add("O6", f"VMA {v:#x}", "vm_object an arena offset of an object", f"{o:#x}")
                    continue
                roots.append(o)
        # discover: roots, their backing chains and children lists
        todo = list(dict.fromkeys(roots))
        while todo:
            o = todo.pop()
            if o in self.objs or not self._obj_ok(o):
                continue
            rec = _obj_rec(q, u32, o)
            self.objs[o] = rec
            if rec["backing"] and self._obj_ok(rec["backing"]) and rec["backing"] not in self.objs:
                todo.append(rec["backing"])
            c, n = rec["children"], 0
            while c and n < _CHAIN_MAX and self._obj_ok(c):
                if c not in self.objs:
                    todo.append(c)
                c, n = q[(c + O_SIBLING) >> 3], n + 1
        vnode_of = {o: fid for fid, o in self.files.items()}
        for o, rec in self.objs.items():
            where = f"object {o:#x} ({_obj_kind(rec)})"
            if rec["flags"] & OBJF_DEAD:
                s.add("O3", where, "no dead object reachable", f"OBJF_DEAD, refcount {rec['ref']}")
            if rec["type"] == OBJ_VNODE and o not in vnode_of:
                s.add("O3", where, "a vnode object belongs to a live file", f"file id {rec['file'] - 1}")
            self._tree(o, rec, where)
        self._two_trees()
        self._chains()
        self._children()
        self._vma_lists(vnode_of)
        # O3: references
        vmas_of: dict[int, int] = {}
        for rec in self.vma_rec.values():
            if rec["object"]:
                vmas_of[rec["object"]] = vmas_of.get(rec["object"], 0) + 1
        kids: dict[int, int] = {}
        for rec in self.objs.values():
            if rec["backing"]:
                kids[rec["backing"]] = kids.get(rec["backing"], 0) + 1
        for o, rec in self.objs.items():
            want = vmas_of.get(o, 0) + kids.get(o, 0) + (1 if o in vnode_of else 0)
            self.ref_want[o] = want
            if rec["ref"] != want:
                s.add("O3", f"object {o:#x} ({_obj_kind(rec)})",
                      f"refcount == {vmas_of.get(o, 0)} VMAs + {kids.get(o, 0)} children"
                      + (" + 1 (file)" if o in vnode_of else ""), rec["ref"])

    def _tree(self, o: int, rec: dict[str, int], where: str) -> None:
        s = self.s
        xw = self.snap.xa_walk(o)
        self.obj_nodes += len(xw.nodes)
        self.xa_nodes.update(xw.nodes)
        for b in xw.bad:
            s.add("O5", where, "a well-formed page tree", b)
        idx = np.array([i for i, _e in xw.items], dtype=np.int64)
        ent = np.array([e for _i, e in xw.items], dtype=np.uint64)
        self.obj_items[o] = (idx, ent)
        folio = (ent & np.uint64(3)) == 0                      # the rest: value entries (ZERO markers...)
        fidx, pfn = idx[folio], (ent[folio] >> np.uint64(2)).astype(np.int64)
        self.nr_pages_want[o] = len(pfn)
        if rec["nr_pages"] != len(pfn):
            s.add("O5", where, f"nr_pages == {len(pfn)} folios in the tree", rec["nr_pages"])
        out = pfn >= self.nr_pages
        for i in np.flatnonzero(out)[: self.s.limit].tolist():
            s.add("O1", f"{where} index {int(fidx[i])}", "a folio of the machine", f"pfn {int(pfn[i])}")
        fidx, pfn = fidx[~out], pfn[~out]
        anon = rec["type"] == OBJ_ANON and not rec["flags"] & OBJF_SHARED
        want_map = np.uint64(o | (PAGE_MAPPING_ANON if anon else 0))
        bad = np.flatnonzero(~self.allocated[pfn])
        s.many("O1", pfn[bad], f"an allocated page in the tree of {where}",
               lambda p: f"flags {int(self.flags[p]):#x} refcount {int(self.ref[p])}")
        match = (self.mapping[pfn] == want_map) & (self.index[pfn] == fidx.astype(np.uint64))
        for i in np.flatnonzero(~match)[: self.s.limit].tolist():
            p = int(pfn[i])
            s.add("O1", f"{where} index {int(fidx[i])}: pfn {p}", f"mapping {int(want_map):#x} index {int(fidx[i])}",
                  f"mapping {int(self.mapping[p]):#x} index {int(self.index[p])}")
        self.tree_ok[pfn[match]] = True
        np.add.at(self.in_tree, pfn, 1)
        self._folios.append((o, fidx, pfn))

    def _two_trees(self) -> None:
        """O4: a pfn in more than one tree entry (two objects, or twice in one)."""
        twice = np.flatnonzero(self.in_tree > 1)
        if not len(twice):
            return
        holders: dict[int, list[str]] = {int(p): [] for p in twice[: self.s.limit].tolist()}
        for o, fidx, pfn in self._folios:
            for i in np.flatnonzero(np.isin(pfn, twice[: self.s.limit])).tolist():
                holders[int(pfn[i])].append(f"object {o:#x} index {int(fidx[i])}")
        self.s.many("O4", twice, "in one object tree, once", lambda p: ", ".join(holders.get(p, ["?"])))

    def _chains(self) -> None:
        s, objs = self.s, self.objs
        limit = self.snap.shadow_depth_limit
        cyc_reported: set[int] = set()
        for o, rec in objs.items():
            back = rec["backing"]
            want = 0 if not back else (objs[back]["depth"] + 1 if back in objs else None)
            if want is not None and rec["depth"] != want:
                s.add("O2", f"object {o:#x} ({_obj_kind(rec)})", f"depth {want} (1 + the backing's)", rec["depth"])
            if rec["flags"] >> 3 & 1:
                s.add("O2", f"object {o:#x} ({_obj_kind(rec)})", "an even collapse sequence (no collapse in flight)",
                      rec["flags"] >> 3)
            seen, x, n = {o}, back, 0
            while x:
                if x in seen or n > _CHAIN_MAX or x not in objs:
                    if x in seen and not (seen & cyc_reported):
                        s.add("O2", f"object {o:#x}", "an acyclic backing chain", f"object {x:#x} repeats")
                        cyc_reported |= seen
                    break
                seen.add(x)
                x, n = objs[x]["backing"], n + 1
        # O7: depth beyond what collapse could have removed
        tops = {rec["object"] for rec in self.vma_rec.values() if rec["object"] in objs}
        for o in sorted(tops):
            depth, irreducible, x, n = 0, 0, o, 0
            while objs.get(x, {}).get("backing") and n < _CHAIN_MAX:
                b = objs[x]["backing"]
                if b not in objs:
                    break
                depth += 1
                br = objs[b]
                if not (br["type"] == OBJ_ANON and not br["flags"] & OBJF_SHARED and br["ref"] == 1
                        and br["nr_children"] == 1):
                    irreducible += 1
                x, n = b, n + 1
            if n >= _CHAIN_MAX:
                continue                                     # a cycle: O2 reported it
            allowed = max(limit, irreducible) + SHADOW_DEPTH_MARGIN
            if depth > allowed:
                s.add("O7", f"object {o:#x} (a VMA's top object)",
                      f"shadow depth <= max(limit {limit}, {irreducible} irreducible links) + {SHADOW_DEPTH_MARGIN}",
                      f"depth {depth} ({depth - irreducible} collapsible links left)")

    def _children(self) -> None:
        s, q, objs = self.s, self.q, self.objs
        for o, rec in objs.items():
            listed, c, n = [], rec["children"], 0
            while c and n <= _CHAIN_MAX:
                listed.append(c)
                if not self._obj_ok(c):
                    break
                c, n = q[(c + O_SIBLING) >> 3], n + 1
            want = sorted(x for x, r in objs.items() if r["backing"] == o)
            if sorted(listed) != want or len(listed) != rec["nr_children"]:
                s.add("O8", f"object {o:#x} ({_obj_kind(rec)})",
                      f"children list == the {len(want)} objects backed by it, nr_children == its length",
                      f"list {[hex(x) for x in listed[:8]]}{'...' if len(listed) > 8 else ''}, "
                      f"nr_children {rec['nr_children']}")

    def _vma_lists(self, vnode_of: dict[int, int]) -> None:
        s, q, objs = self.s, self.q, self.objs
        on_obj: dict[int, int] = {}
        on_file: dict[int, int] = {}
        for o, rec in objs.items():
            vnode = rec["type"] == OBJ_VNODE
            nxt_f, prv_f = (V.V_FNEXT, V.V_FPREV) if vnode else (V.V_OBJ_NEXT, V.V_OBJ_PREV)
            v, prev, n = rec["vma_head"], 0, 0
            where = f"object {o:#x} ({_obj_kind(rec)}) VMA list"
            while v and n <= len(self.vma_rec) + 1:
                if v not in self.vma_rec:
                    s.add("O6", where, "attached VMAs only", f"VMA {v:#x} is in no tree")
                    break
                rec_v = self.vma_rec[v]
                back = rec_v["file"] == vnode_of.get(o, -2) + 1 if vnode else rec_v["object"] == o
                if not back:
                    s.add("O6", f"{where}: VMA {v:#x}", "a VMA pointing back at the object",
                          f"vm_object {rec_v['object']:#x} vm_file {rec_v['file']}")
                if q[(v + prv_f) >> 3] != prev:
                    s.add("O6", f"{where}: VMA {v:#x}", f"prev link {prev:#x}", f"{q[(v + prv_f) >> 3]:#x}")
                (on_file if vnode else on_obj)[v] = o
                prev, v, n = v, q[(v + nxt_f) >> 3], n + 1
            if v and n > len(self.vma_rec) + 1:
                s.add("O6", where, "a list without a cycle", f"more than {len(self.vma_rec)} entries")
        for v, rec in self.vma_rec.items():
            if rec["object"] and on_obj.get(v) != rec["object"]:
                s.add("O6", f"VMA {v:#x} [{rec['start']:#x}, {rec['end']:#x})",
                      f"on the VMA list of its object {rec['object']:#x}", f"on {on_obj.get(v, 0):#x}")
            if rec["file"]:
                fobj = self.files.get(rec["file"] - 1)
                if fobj is None:
                    s.add("O6", f"VMA {v:#x}", "vm_file names a live file", f"file id {rec['file'] - 1}")
                elif on_file.get(v) != fobj:
                    s.add("O6", f"VMA {v:#x} [{rec['start']:#x}, {rec['end']:#x})",
                          f"on the i_mmap list of file {rec['file'] - 1}", "missing")

    # ------------------------------------------------------------------ leaves: PT2/PT4/RSS1/R3
    def _kinds(self, pfns: np.ndarray) -> np.ndarray:
        """memory.py's kind_of() for an array of pfns."""
        m = self.mapping[pfns]
        kinds = np.full(len(pfns), KIND_FILE, dtype=np.int64)
        anon = (m & np.uint64(PAGE_MAPPING_ANON)) != 0
        kinds[anon] = KIND_ANON
        objs = (m & ~np.uint64(3)).astype(np.uint64)
        for o in np.unique(objs[~anon]).tolist():
            if o and self._obj_ok(o) and (self.u32[(o + O_TYPE) >> 2] & 0xFFFF) == OBJ_ANON:
                kinds[~anon & (objs == o)] = KIND_SHMEM
        return kinds

    def _leaves(self, m: int, w: Any) -> None:
        s, snap = self.s, self.snap
        va, pte = w.va, w.pte
        if m == 0 and len(va):                   # init_mm's kernel half: vmalloc's (VA1..VA5)
            kern = va >= np.uint64(KERNEL_HALF << level_shift(snap.levels))
            self.kernel_leaves = (va[kern], pte[kern])
            va, pte = va[~kern], pte[~kern]
        rss = np.zeros(4, dtype=np.int64)
        if len(pte):
            present = (pte & np.uint64(_P_OR_NONE)) != 0
            swap = ~present
            pfn = ((pte & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
            special = (pte & np.uint64(_PAGE_SPECIAL)) != 0
            # swap / migration entries
            for i in np.flatnonzero(swap).tolist():
                e = int(pte[i])
                t = swp_type(e)
                if t < MAX_SWAPFILES:
                    rss[KIND_SWAP] += 1
                elif SWP_MIGRATION_READ <= t <= SWP_MIGRATION_WRITE and swp_offset(e) < self.nr_pages:
                    rss[int(self._kinds(np.array([swp_offset(e)]))[0])] += 1
            # PT2
            p_idx = np.flatnonzero(present)
            out = p_idx[pfn[p_idx] >= self.nr_pages]
            s.many("PT2", out, "a pfn of the machine",
                   lambda i: f"mm {m} va {int(va[i]):#x}: entry {int(pte[i]):#x}")
            p_idx = p_idx[pfn[p_idx] < self.nr_pages]
            sp = p_idx[special[p_idx]]
            zero = snap.zero_pfn
            bad = sp[(pfn[sp] != zero) | ((pte[sp] & np.uint64(_PAGE_RW)) != 0)]
            s.many("PT2", bad, "_PAGE_SPECIAL only on the zero page, read-only",
                   lambda i: f"mm {m} va {int(va[i]):#x}: entry {int(pte[i]):#x}")
            norm = p_idx[~special[p_idx]]
            bad = norm[(pfn[norm] == zero) | ~self.allocated[pfn[norm]]]
            s.many("PT2", bad, "an allocated page (or the zero page with _PAGE_SPECIAL)",
                   lambda i: f"mm {m} va {int(va[i]):#x} -> pfn {int(pfn[i])}: flags "
                             f"{int(self.flags[pfn[i]]):#x} refcount {int(self.ref[pfn[i]])}")
            np.add.at(self.mapped, pfn[norm], 1)
            counts = np.bincount(self._kinds(pfn[norm]), minlength=4)
            for kind in (KIND_FILE, KIND_ANON, KIND_SHMEM):
                rss[kind] += counts[kind]
            self._pt4_r3(m, va, pte, present, special, pfn)
        mo = snap.mm_off(m)
        self.rss_want[m] = [int(x) for x in rss]
        got = T.get_mm_counters(self.q, mo, snap.nr_cpus)      # shared word + every CPU's part
        if [int(x) for x in rss] != got:
            s.add("RSS1", f"mm {m}", "rss counters == PTEs by kind " + str(dict(zip(T.MM_COUNTER_NAMES,
                                                                                    rss.tolist()))),
                  dict(zip(T.MM_COUNTER_NAMES, [x if x < 1 << 63 else x - (1 << 64) for x in got])))

    def _pt4_r3(self, m: int, va: np.ndarray, pte: np.ndarray, present: np.ndarray, special: np.ndarray,
                pfn: np.ndarray) -> None:
        s = self.s
        recs = sorted(self.mm_vmas.get(m, []), key=lambda r: r["start"])
        starts = np.array([r["start"] for r in recs], dtype=np.uint64)
        ends = np.array([r["end"] for r in recs], dtype=np.uint64)
        k = np.searchsorted(starts, va, side="right").astype(np.int64) - 1
        inside = (k >= 0) & (va < ends[np.maximum(k, 0)]) if recs else np.zeros(len(va), dtype=bool)
        s.many("PT4", np.flatnonzero(~inside), "a PTE inside a VMA of its mm",
               lambda i: f"mm {m} va {int(va[i]):#x}: entry {int(pte[i]):#x} outside every VMA")
        writable = (pte & np.uint64(_PAGE_RW)) != 0
        valid = present & (pfn < self.nr_pages)
        for r in recs:
            lo, hi = np.searchsorted(va, np.uint64(r["start"])), np.searchsorted(va, np.uint64(r["end"]))
            if lo == hi:
                continue

            def where(i: int, r: dict[str, int] = r) -> str:
                return (f"mm {m} va {int(va[i]):#x} (VMA [{r['start']:#x}, {r['end']:#x}) "
                        f"{V.format_vm_flags(r['flags'] & 0xFF)})")

            sl = np.arange(lo, hi)
            if not r["flags"] & V.VM_WRITE:
                for i in sl[writable[lo:hi]][: s.limit].tolist():
                    s.add("PT4", where(i), "no writable PTE in a VMA without VM_WRITE", f"entry {int(pte[i]):#x}")
            sl = sl[valid[lo:hi]]
            if not len(sl):
                continue
            idx = r["pgoff"] + ((va[sl] - np.uint64(r["start"])) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
            holder, want = self._resolve(r, idx)
            sp = special[sl]
            bad = sl[sp & (want >= 0)]
            for i in bad[: s.limit].tolist():
                x = int(np.searchsorted(sl, i))
                s.add("R3", where(i), f"no folio at index {int(idx[x])} (a zero-page PTE)",
                      f"object {int(holder[x]):#x} holds pfn {int(want[x])}")
            got = pfn[sl]
            bad = np.flatnonzero(~sp & (want != got))
            for x in bad[: s.limit].tolist():
                w = int(want[x])
                s.add("R3", where(int(sl[x])), f"the folio its chain holds at index {int(idx[x])}: "
                      + (f"pfn {w} (object {int(holder[x]):#x})" if w >= 0 else "none"), f"maps pfn {int(got[x])}")
            if not r["flags"] & V.VM_SHARED:
                bad = np.flatnonzero(~sp & (want == got) & writable[sl] & (holder != r["object"]))
                for x in bad[: s.limit].tolist():
                    s.add("R3", where(int(sl[x])), f"a writable private PTE maps its top object's folio "
                                                    f"({r['object']:#x})", f"pfn {int(got[x])} of object "
                                                                           f"{int(holder[x]):#x}")

    def _resolve(self, r: dict[str, int], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(holder, pfn) the VMA's object chain / file cache gives for each index (pfn -1:
        no folio there: nothing down the chain, or a value entry such as a ZERO marker)."""
        if r["file"] and (r["flags"] & V.VM_SHARED or not r["object"]):
            o = self.files.get(r["file"] - 1, 0)             # the page cache itself
        else:
            o = r["object"]                                  # private: the shadow chain (ends at the vnode)
        want = np.full(len(idx), -2, dtype=np.int64)
        holder = np.zeros(len(idx), dtype=np.int64)
        keys = idx.copy()
        n = 0
        while o and n < _CHAIN_MAX and (want == -2).any():
            items = self.obj_items.get(o)
            rec = self.objs.get(o)
            if items is None or rec is None:
                break
            ii, ee = items
            if len(ii):
                pos = np.minimum(np.searchsorted(ii, keys), len(ii) - 1)
                hit = (ii[pos] == keys) & (want == -2)
                e = ee[pos[hit]]
                want[hit] = np.where((e & np.uint64(3)) == 0, (e >> np.uint64(2)).astype(np.int64), -3)
                holder[hit] = o
            keys = keys + int(rec["backing_off"])
            o, n = rec["backing"], n + 1
        marker = want == -3
        if r["file"] and marker.any():
            # A value entry (MADV_DONTNEED's ZERO marker) above the file in a private file
            # mapping hides inherited copies: the fault reads the file again (memory.py
            # do_fault), so the PTE maps the page cache's folio at the same index.
            fo = self.files.get(r["file"] - 1, 0)
            ho, wf = self._resolve_in(fo, idx[marker])
            want[marker], holder[marker] = wf, ho
        want[want < 0] = -1
        return holder, want

    def _resolve_in(self, o: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(holder, pfn) of one object's own folio entries at `keys` (-1: none / a value)."""
        want = np.full(len(keys), -1, dtype=np.int64)
        holder = np.zeros(len(keys), dtype=np.int64)
        items = self.obj_items.get(o) if o else None
        if items is not None and len(items[0]):
            ii, ee = items
            pos = np.minimum(np.searchsorted(ii, keys), len(ii) - 1)
            hit = ii[pos] == keys
            e = ee[pos[hit]]
            want[hit] = np.where((e & np.uint64(3)) == 0, (e >> np.uint64(2)).astype(np.int64), -1)
            holder[hit] = o
        return holder, want

    # ------------------------------------------------------------------ pages: R1/R2/R4/O1/FR1
    def _pages(self) -> None:
        s = self.s
        zero = self.snap.zero_pfn
        bad = np.flatnonzero(self.mapc != self.mapped)
        s.many("R1", bad, "mapcount == PTEs mapping the page",
               lambda p: f"mapcount {int(self.mapc[p])}, {int(self.mapped[p])} PTEs")
        live = (self.in_tree > 0) | (self.mapped > 0)
        live[zero] = False
        self.cached = cached = ((self.flags & PG_swapcache) != 0).astype(np.int64)
        want = self.in_tree + self.mapped + self.batched + cached
        bad = np.flatnonzero(live & (self.ref != want))
        s.many("R2", bad, "refcount == (in a tree) + PTEs + lru_add batch slots + (in the swap cache)",
               lambda p: f"refcount {int(self.ref[p])}, in {int(self.in_tree[p])} tree(s), {int(self.mapped[p])} PTEs, "
                         f"{int(self.batched[p])} batch slots, {'in' if cached[p] else 'not in'} the swap cache")
        bad = np.flatnonzero((self.mapped > 0) & (self.in_tree == 0))
        bad = bad[bad != zero]
        s.many("R2", bad, "a mapped folio is in an object's tree",
               lambda p: f"mapped {int(self.mapped[p])} times, mapping {int(self.mapping[p]):#x}, in no tree")
        if zero < self.nr_pages and (self.ref[zero] != 1 or self.mapc[zero] or self.mapping[zero]):
            s.add("PT2", f"zero page pfn {zero}", "refcount 1, mapcount 0, no mapping",
                  f"refcount {int(self.ref[zero])} mapcount {int(self.mapc[zero])}")
        # O1 reverse: a page naming an object is in that object's tree at its index
        named = np.flatnonzero((self.mapping != 0) & ((self.flags & PG_table) == 0) & ~self.free & ~self.tree_ok)
        s.many("O1", named, "in the tree of the object its mapping names, at its index",
               lambda p: f"mapping {int(self.mapping[p]):#x} index {int(self.index[p])}: not there"
                         + ("" if int(self.mapping[p]) & ~3 in self.objs else " (no such live object)"))
        # FR1
        bad = np.flatnonzero(self.free & ((self.mapping != 0) | (self.index != 0)))
        s.many("FR1", bad, "no mapping or index on a free page",
               lambda p: f"mapping {int(self.mapping[p]):#x} index {int(self.index[p])}")
        # R4
        mp = np.flatnonzero(self.mapped > 0)
        kinds = self._kinds(mp)
        nn = _nr_nodes(self.arena)
        self.nr_anon_mapped = anon = np.bincount(self.node[mp[kinds == KIND_ANON]], minlength=nn)
        self.nr_other_mapped = other = np.bincount(self.node[mp[kinds != KIND_ANON]], minlength=nn)
        for nid, st in enumerate(fold_node_stats(self.arena)):
            for name, arr in (("nr_anon_pages", anon), ("nr_mapped", other)):
                if st[name] != int(arr[nid]):
                    s.add("R4", f"node {nid}", f"{name} == {int(arr[nid])} mapped folios", st[name])

    # ------------------------------------------------------------------ LK1
    def _leaks(self) -> None:
        from aerosync.mm.slab.slab_common import slab_stats

        hdr = self.snap.hdr
        want = {T.H_CACHE_VMA: ("vm_area_struct", len(self.vmas_all)),
                T.H_CACHE_OBJ: ("vm_object", len(self.objs)),
                T.H_CACHE_MAPLE: ("maple_node", self.maple_nodes + vmalloc_tree_nodes(self.arena)),
                T.H_CACHE_XA: ("radix_tree_node", self.obj_nodes)}
        for fld, (name, n) in want.items():
            st = slab_stats(self.arena, int(self.q[(hdr + fld) >> 3]))
            got = st["alloc"] - st["free"]
            if got != n:
                self.s.add("LK1", f"kmem_cache {name}", f"{n} objects allocated (the live records)", got)


def _safe_nodes(t: Any) -> int:
    try:
        return int(t.mt_nr_nodes())
    except (IndexError, ValueError, RecursionError):
        return 0


def _nr_nodes(arena: Any) -> int:
    sim = arena.config.get("sim")
    return int(sim["nr_nodes"]) if sim else 1


def _obj_rec(q: Any, u32: Any, o: int) -> dict[str, int]:
    t = u32[(o + O_TYPE) >> 2]
    return {"type": t & 0xFFFF, "flags": t >> 16, "file": u32[(o + 4) >> 2], "ref": q[(o + O_REF) >> 3],
            "backing": q[(o + O_BACKING) >> 3], "backing_off": q[(o + O_BACKING_OFF) >> 3],
            "depth": u32[(o + O_DEPTH) >> 2], "nr_children": u32[(o + O_NR_CHILDREN) >> 2],
            "nr_pages": q[(o + O_NR_PAGES) >> 3], "vma_head": q[(o + O_VMA_HEAD) >> 3],
            "children": q[(o + O_CHILDREN) >> 3]}


def _obj_kind(rec: dict[str, int]) -> str:
    if rec["type"] == OBJ_VNODE:
        return f"vnode of file {rec['file'] - 1}"
    if rec["type"] == OBJ_ANON:
        return "anon shared" if rec["flags"] & OBJF_SHARED else ("shadow" if rec["backing"] else "anon")
    return f"type {rec['type']}"
