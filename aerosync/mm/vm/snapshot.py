"""Read-only, stop-the-world readers of the VM records: the checker's and the views' eyes.

Models: mm/pagewalk.c (walk_page_range over a mm's tables) and the record readers
fs/proc and mm/debug.c use.  Unit: one arena, read without locks.  On a quiescent arena
(workers parked, or gone) every answer is exact; on a live one the readers see a racy
but untorn snapshot, as /proc's are, and never crash or loop on what a concurrent
writer leaves half-done: every walk bounds its depth, checks every pfn and offset
against the arena, and reports what does not parse instead of following it.

What is read (layouts in mm_types.py, vma.py, vm_object.py, pgtable.py, lib/):
  * mm records (live ones: state MM_LIVE), their maple tree of VMAs (read with a
    lib/maple_tree.MapleTree handle without callbacks: readers only), their tables;
  * page tables from an mm's root: the user half only for user mms (PGD entries
    0..255: the kernel half is init_mm's, copied by pgd_alloc), everything for
    init_mm (mm id 0);
  * vm_object page trees (lib/xarray.py nodes), walked here with cycle and bound
    checks rather than through XArray.items (which trusts the tree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aerosync.lib.maple_tree import MapleTree
from aerosync.mm.pmm.page import page_array
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import (
    _KERNPG_TABLE,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_TABLE,
    PTE_PFN_MASK,
    PTRS_PER_TABLE,
    level_shift,
)
from aerosync.mm.vm.vm_object import O_TREE
from aerosync.params import PAGE_SHIFT

__all__ = ["VmSnapshot", "MmWalk", "XaWalk", "KERNEL_HALF", "vma_fields"]

KERNEL_HALF = PTRS_PER_TABLE // 2            # root-table entries >= this belong to init_mm
_XA_HEAD, _XA_SLOTS, _XA_NODE_WORDS, _XA_CHUNK = 1, 5, 72, 64     # lib/xarray.py's layout
_U64 = (1 << 64) - 1

# the VMA fields every reader wants, as (name, byte offset)
_VMA_FIELDS = (("start", V.V_START), ("end", V.V_END), ("mm", V.V_MM), ("flags", V.V_FLAGS),
               ("prot", V.V_PROT), ("pgoff", V.V_PGOFF), ("object", V.V_OBJECT), ("file", V.V_FILE),
               ("state", V.V_STATE), ("obj_next", V.V_OBJ_NEXT), ("obj_prev", V.V_OBJ_PREV),
               ("fnext", V.V_FNEXT), ("fprev", V.V_FPREV))


def vma_fields(arena: Any, vma: int) -> dict[str, int]:
    """One VMA record as a dict (see _VMA_FIELDS); {} when vma is not an arena offset."""
    if vma <= 0 or vma % 8 or vma + V.VMA_SIZE > arena.size:
        return {}
    q = arena.u64
    return {k: q[(vma + o) >> 3] for k, o in _VMA_FIELDS}


@dataclass
class MmWalk:
    """What a walk of one mm's tables found.

    tables: (pfn, level, first va, where) of every table reached, the root first;
    bad:    (where, expected, found) of entries that do not parse (not-present upper
            entries, huge leaves, pfns outside the machine, a table reached twice);
    va, pte: every non-none leaf entry (uint64 arrays, in address order)."""

    mm_id: int
    tables: list[tuple[int, int, int, str]] = field(default_factory=list)
    bad: list[tuple[str, str, str]] = field(default_factory=list)
    va: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    pte: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))


@dataclass
class XaWalk:
    """An object's page tree: items (index, entry) in index order, node offsets, and the
    structural faults found (count word, parent link, shift, cycles)."""

    items: list[tuple[int, int]] = field(default_factory=list)
    nodes: list[int] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


class VmSnapshot:
    """Readers over one arena's VM (see the module docstring).  `close()` (or use as a
    context manager) drops the numpy views so that the arena can be closed."""

    def __init__(self, arena: Any) -> None:
        T.require_vm(arena)
        self.arena = arena
        q = arena.u64
        hdr = arena.off("vmhdr")
        self.hdr = hdr

        def H(f: int) -> int:
            return int(q[(hdr + f) >> 3])

        self.levels = H(T.H_LEVELS)
        self.zero_pfn = H(T.H_ZERO_PFN)
        self.max_mms, self.max_tasks, self.max_files = H(T.H_MAX_MMS), H(T.H_MAX_TASKS), H(T.H_MAX_FILES)
        self.mmap_min_addr = H(T.H_MMAP_MIN_ADDR)
        self.shadow_depth_limit = H(T.H_SHADOW_DEPTH)
        self.nr_cpus = int(arena.config["nr_cpus"])
        self.phys_off = arena.off("physmem")
        self.phys = arena.array("physmem", np.uint64)
        self.pages = page_array(arena)
        self.nr_pages = min(len(self.phys) // PTRS_PER_TABLE, len(self.pages))

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        self.phys = np.zeros(0, dtype=np.uint64)
        self.pages = np.zeros(0, dtype=self.pages.dtype)

    def __enter__(self) -> VmSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ records
    def mm_off(self, mm_id: int) -> int:
        return T.mm_off(self.arena, mm_id)

    def mm_word(self, mm_id: int, field_off: int) -> int:
        return int(self.arena.u64[(self.mm_off(mm_id) + field_off) >> 3])

    def mm_states(self) -> list[int]:
        return [self.mm_word(m, T.M_STATE) for m in range(self.max_mms)]

    def live_mms(self) -> list[int]:
        return [m for m, st in enumerate(self.mm_states()) if st == T.MM_LIVE]

    def tree(self, mm_id: int) -> MapleTree:
        return MapleTree(self.arena, self.mm_off(mm_id) + T.M_MT)

    def vmas(self, mm_id: int, bound: int = 1 << 22) -> tuple[list[tuple[int, int, int]], str]:
        """The mm's tree entries as (first, last, entry) in index order, and an error
        text when the walk went backwards or ran past `bound` entries ('' if fine)."""
        t = self.tree(mm_id)
        out: list[tuple[int, int, int]] = []
        index = 0
        while len(out) < bound:
            try:
                e, f, last = t.mt_find(index)
            except (IndexError, ValueError) as exc:        # a garbage node reference
                return out, f"walk failed at index {index:#x}: {exc}"
            if not e:
                return out, ""
            if last < index or f > last:
                return out, f"entry {e:#x} at [{f:#x}, {last:#x}] after index {index:#x}"
            out.append((f, last, e))
            if last == _U64:
                return out, ""
            index = last + 1
        return out, f"more than {bound} entries"

    def vma(self, vma: int) -> dict[str, int]:
        return vma_fields(self.arena, vma)

    # ------------------------------------------------------------------ page tables
    def table(self, pfn: int) -> np.ndarray:
        return self.phys[pfn * PTRS_PER_TABLE : (pfn + 1) * PTRS_PER_TABLE]

    def walk(self, mm_id: int, root: int | None = None, seen: dict[int, str] | None = None) -> MmWalk:
        """Every table and leaf entry reachable from mm_id's root (the user half of it for
        a user mm).  `seen` (pfn -> where), shared across mms, reports a table reached
        twice (from two mms, or twice in one)."""
        w = MmWalk(mm_id)
        if root is None:
            root = self.mm_word(mm_id, T.M_PGD)
        seen = {} if seen is None else seen
        if not 0 <= root < self.nr_pages:
            w.bad.append((f"mm {mm_id} root", "a pfn of the machine", f"pfn {root}"))
            return w
        vas: list[np.ndarray] = []
        ptes: list[np.ndarray] = []
        top = self.levels
        stack = [(root, top, 0, f"mm {mm_id} root (level {top})")]
        while stack:
            pfn, level, base, where = stack.pop()
            if pfn in seen:
                w.bad.append((where, "a table reached once", f"pfn {pfn} also reached as {seen[pfn]}"))
                continue
            seen[pfn] = where
            w.tables.append((pfn, level, base, where))
            ents = self.table(pfn)
            nz = np.flatnonzero(ents)
            if level == top and mm_id != 0:
                nz = nz[nz < KERNEL_HALF]
            if level == 1:
                if len(nz):
                    vas.append(np.uint64(base) + (nz.astype(np.uint64) << np.uint64(PAGE_SHIFT)))
                    ptes.append(ents[nz].copy())
                continue
            sh = level_shift(level)
            kids = []
            for i in nz.tolist():
                e = int(ents[i])
                cbase = base + (i << sh)
                cw = f"mm {mm_id} level {level} table pfn {pfn} entry {i} (va {cbase:#x})"
                if not e & _PAGE_PRESENT:
                    w.bad.append((cw, "a present table entry or none", f"entry {e:#x}"))
                    continue
                if e & _PAGE_PSE:
                    w.bad.append((cw, "a table (huge leaves are not modelled)", f"PSE entry {e:#x}"))
                    continue
                if (e & ~PTE_PFN_MASK & _U64) not in (_PAGE_TABLE, _KERNPG_TABLE):
                    w.bad.append((cw, "_PAGE_TABLE flags (P|RW|U|A|D)", f"entry {e:#x}"))
                child = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                if child >= self.nr_pages:
                    w.bad.append((cw, "a table pfn of the machine", f"pfn {child}"))
                    continue
                kids.append((child, level - 1, cbase, cw))
            stack.extend(reversed(kids))
        if vas:
            w.va = np.concatenate(vas)
            w.pte = np.concatenate(ptes)
        return w

    # ------------------------------------------------------------------ object trees
    def xa_walk(self, obj: int, limit_nodes: int = 1 << 20) -> XaWalk:
        """The page tree of object `obj` (root record at obj + O_TREE)."""
        q = self.arena.u64
        size = self.arena.size
        out = XaWalk()
        head_word = obj + O_TREE + 8 * _XA_HEAD
        root = int(q[head_word >> 3])
        if not root:
            return out
        if root & 3 != 2:
            out.items.append((0, root))                # a lone entry at index 0 lives in xa_head
            return out
        seen: set[int] = set()
        stack = [(root & ~3, 0, -1, 0, 0)]    # (node off, first index, expected shift, parent off, slot)
        while stack:
            off, base, want_sh, parent, slot = stack.pop()
            if off in seen or off % 64 or off + _XA_NODE_WORDS * 8 > size or len(seen) >= limit_nodes:
                out.bad.append(f"node {off:#x}: repeated, misaligned or outside the arena")
                continue
            seen.add(off)
            out.nodes.append(off)
            n = off >> 3
            w0 = int(q[n])
            sh, poff, count = w0 & 0xFF, (w0 >> 8) & 0xFF, (w0 >> 16) & 0xFF
            if sh % 6 or sh >= 64 or (want_sh >= 0 and sh != want_sh):
                out.bad.append(f"node {off:#x}: shift {sh}" + (f", expected {want_sh}" if want_sh >= 0 else ""))
                continue
            pw = int(q[n + 1])
            if pw != parent or (parent and poff != slot):
                out.bad.append(f"node {off:#x}: parent {pw:#x} slot {poff}, expected {parent:#x} slot {slot}")
            if int(q[n + 2]) != obj + O_TREE:
                out.bad.append(f"node {off:#x}: array word {int(q[n + 2]):#x}, expected {obj + O_TREE:#x}")
            slots = q[n + _XA_SLOTS : n + _XA_SLOTS + _XA_CHUNK].tolist()
            used = [(i, s) for i, s in enumerate(slots) if s]
            if count != len(used):
                out.bad.append(f"node {off:#x}: count {count}, {len(used)} slots in use")
            if not used:
                out.bad.append(f"node {off:#x}: an empty node left in the tree")
            kids = []
            for i, s in used:
                idx = base + (i << sh)
                if sh:
                    if s & 3 != 2:
                        out.bad.append(f"node {off:#x} slot {i}: {s:#x} is not a node reference")
                        continue
                    kids.append((s & ~3, idx, sh - 6, off, i))
                elif s & 3 == 2:
                    out.bad.append(f"node {off:#x} slot {i}: an internal entry in a leaf")
                else:
                    out.items.append((idx, s))
            stack.extend(reversed(kids))
        out.items.sort()
        return out
