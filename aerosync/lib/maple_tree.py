"""Maple tree: an RCU-safe B-tree of ranges in the arena (the index of an mm's VMAs).

Models: lib/maple_tree.c and include/linux/maple_tree.h (v6.19): mtree_load, mas_walk,
mt_find, mas_store_range / mtree_store_range, mtree_insert_range, mtree_erase, mas_next,
mas_prev, mt_for_each, mas_empty_area, mas_empty_area_rev, mtree_destroy, mt_validate,
mt_dump.  Unit: an index (u64); an entry (a non-zero u64 the caller chooses: the arena
address of a VMA, a vmap_area, ...); a node (256 bytes at a 256-aligned arena offset).

API.  `mt_init(arena, root_off, flags)` makes an empty tree in a root record of
MT_ROOT_WORDS u64 words the caller embeds in its own structure (struct maple_tree:
ma_root, ma_flags; the lock is the caller's).  `MapleTree(arena, root_off, alloc_node,
free_node, rcu_free_node)` is a handle with closures bound once (a handle without
callbacks can only read).  Readers (lock-free, any process):
  mtree_load(index) -> entry | 0            mas_walk(index) -> (entry | 0, first, last)
  mt_find(index, max=ULONG_MAX) -> (entry, first, last) of the first entry whose range
      ends at or after index and starts at or before max; (0, 0, 0) if none
  mt_find_entry(index) -> entry | 0         mt_find(index)[0] (find_vma: no bounds built)
  mas_next(index, max) / mas_prev(index, min) -> (entry, first, last) | (0, 0, 0)
  mt_for_each(start, last) -> iterator of (first, last, entry)
Writers (caller holds the tree's writer lock; errors are negative errnos):
  mas_store_range(first, last, entry) -> 0 | -EINVAL | -ENOMEM  (entry 0 erases)
  mtree_insert_range(first, last, entry) -> 0 | -EEXIST | -EINVAL | -ENOMEM
  mtree_erase(index) -> old entry | 0 | -ENOMEM
  mas_empty_area(min, max, size) / mas_empty_area_rev(...) -> start | -EBUSY | -EINVAL
  mt_destroy(), mt_validate() -> [violations], mt_dump() -> str, mt_nr_nodes(), mt_height(), mt_repair()
Callbacks: alloc_node() -> off | -1 (256 bytes, 256-aligned; contents need not be
zeroed: every word of a new node is written here), free_node(off) for nodes never
reachable, rcu_free_node(off) for nodes that were (the caller defers the free until no
lock-free reader can be inside; in a tree without MT_FLAGS_USE_RCU free_node is used).

Node layout (256 bytes = 32 u64 words; node offsets are 256-aligned, so the low 8 bits
of a node reference are free, as in Linux):

    encoded node (slot of a parent, ma_root):  off | type << 3 | 0x4 (MAPLE_ENODE_NULL)
                                                 | 0x2 in ma_root only (MAPLE_ROOT_NODE)
    type: 1 maple_leaf_64, 2 maple_range_64, 3 maple_arange_64 (0 maple_dense: unused)

    leaf_64 / range_64            arange_64 (MT_FLAGS_ALLOC_RANGE trees' internal nodes)
    w0      parent                w0       parent
    w1-15   pivot[0..14]          w1-9     pivot[0..8]
    w16-31  slot[0..15]           w10-19   slot[0..9]
            (w31 = metadata       w20-29   gap[0..9]
             when end < 15)       w30      metadata: end (bits 0-7), gap offset (8-15)
                                  w31      0

    parent word: parent off | slot << 3 | 0x6 (MAPLE_PARENT_RANGE64); the root node's
    is root_off | 1 (MA_ROOT_PARENT); a node taken out of the tree points at itself
    (dead, as mte_set_node_dead).  ma_flags: bit 0 ALLOC_RANGE, bit 1 USE_RCU, bits 2-6
    the height (MT_FLAGS_HEIGHT_MASK), as Linux.

Pivots are inclusive maxima: slot i covers [pivot[i-1] + 1, pivot[i]], slot 0 starts at
the node's min and the last used slot ("end") ends at its max, both from the parent
(the root spans 0..ULONG_MAX).  Leaves hold entries, 0 for a gap; internal nodes hold
encoded children.  Deviations from Linux, each for one reason: unused pivots hold the
node's max (Linux: 0), so a reader bisects all pivots without reading the end first;
a lone entry at index 0 still gets a leaf (Linux keeps it in ma_root); gaps (NULL
ranges) are maximal everywhere, across leaves too, so per-node gap tracking is exact
and the slot after a gap always holds an entry.  "end" of a leaf/range node is its
metadata byte unless pivot[14] < max (a full node), as ma_data_end.

Writes.  mas_store_range of a non-zero entry over exactly the range of a non-zero entry
is one release store into the leaf (mas_wr_slot_store; the handle's closure tries it
first).  Anything else rebuilds bottom-up (_rebuild): the leaves holding `first` and
`last` become one list of ranges -- their data left of first, the new range, their
data right of last; a gap store first widens over the gaps beside it -- packed into
new leaves of up to 16 slots; the level above takes the new nodes in place of the old
ones, and so on up.  A level below the minimum fill (mt_min_slots: 6; arange 4) pulls
in a neighbouring node; an overflowing node first shares its data with a sibling that
has room (mas_push_data: nodes stay ~14/16 full instead of ~9 after even splits, and
a top-down mmap pattern keeps 10,000 ranges at height 5 instead of 6); a level that
fits one node replacing exactly one old node ends the climb; the root level may grow a
new root or drop single-child roots.  Every node of the plan is allocated before
anything is written (mas_preallocate): -ENOMEM leaves the tree untouched.  A tree
without MT_FLAGS_USE_RCU frees replaced nodes at once (free_node), as Linux does.

RCU publication protocol (what a lock-free reader can see):
  * new nodes are written completely while unreachable, then published by ONE release
    store: the parent's slot word, or ma_root (with the height in ma_flags after it;
    readers never use the height, they stop at a leaf-typed reference);
  * the only other stores into reachable nodes are single aligned words that leave the
    node consistent: an entry replaced for an unchanged range, the gap words and
    metadata of arange nodes, the parent words of adopted children (readers read
    neither gaps nor parent words);
  * a node's pivots never change while it is in the tree, so a kept node keeps its
    range, and the range a reader derives from any parent it passed is right;
  * replaced nodes are unchanged after the publication except their parent word (the
    dead mark, mte_set_node_dead), then go to rcu_free_node.
So a single walk (mtree_load, mas_walk) returns what the tree held at some instant
during the walk.  mt_find may take a second step (a gap that ends a leaf continues in
the next leaf, through the parent or a second walk) and mt_for_each walks per entry:
their answers can mix instants; callers validate (per-VMA lock and range re-check, or
a sequence count).  Readers bound every loop by MAPLE_HEIGHT_MAX, mask node references
to 256-byte alignment, and turn an offset past the arena (IndexError) into a NULL
answer: a recycled node gives a wrong answer, never an exception or a hang.  Memory
ordering: x86-TSO keeps a node's plain stores before the publishing store and a
reader's loads in order (rcu_dereference is a plain load in Linux too); the publishing
store is a RELEASE atomic for weaker machines.  Gap searches (mas_empty_area*) read gap
words and run under the writers' lock, as get_unmapped_area runs under mmap_lock.

Invariants (mt_validate, for the invariant checker; stop-the-world):
  MT1 ma_root is 0 (height 0) or an encoded root node; the height in ma_flags equals
      the depth of every leaf.
  MT2 every node is 256-aligned inside the arena; leaves are maple_leaf_64, internal
      nodes maple_arange_64 in ALLOC_RANGE trees and maple_range_64 otherwise.
  MT3 used pivots strictly increase from >= the node's min to < its max; unused pivots
      equal the max; leaves cover 0..ULONG_MAX in order without holes.
  MT4 the node's end (metadata or fullness) matches its data; slots (and gaps) past the
      end are 0; internal slots are non-zero.
  MT5 every node's parent word names its parent and slot (the root: root_off | 1).
  MT6 non-root nodes hold at least mt_min_slots (6, arange 4) slots.
  MT7 no two adjacent NULL ranges in index order; a root leaf is not one NULL range.
  MT8 arange gap[i] equals the largest NULL range in child i's subtree; the metadata
      gap offset names a largest gap.

Deliberate races: none among writers (serialised by the caller).  A reader's answer may
be stale by the time it returns (RCU); that is the caller's to validate.

Measured (`aerosync bench lib --repeat 7`, 2-core box shared with other jobs, load
average 2.3; 10,000 ranges laid out like an mm: height 5, 30 B of nodes per range):
mt_find 1.53 us (target 1.2), mtree_load 1.24 us, mas_walk 1.48 us, same-range replace
2.1 us, storing a one-page range into a gap 22.6 us and erasing it 22.9 us (SLUB alloc
and free included).  A lookup is ~26 memoryview loads (5 levels x a 4-probe bisect plus
the slot), ~0.7 us of loads alone at the box's ~27 ns a load; the rest is the loop.

Size: ~1000 lines in one module (style-anchors 5.1 asks for a split past ~800): the
read closures, the writer and the validator share one node layout, and splitting the
validator out would need the tree to import it back (a cycle) or callers to find it
elsewhere.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Callable, Iterator
from errno import EBUSY, EEXIST, EINVAL, ENOMEM
from itertools import pairwise
from typing import Any

from aerosync.arch.atomic import RELEASE

__all__ = [
    "MapleTree", "mt_init", "ULONG_MAX", "MT_ROOT_WORDS", "MAPLE_NODE_SIZE",
    "MT_FLAGS_ALLOC_RANGE", "MT_FLAGS_USE_RCU", "MAPLE_HEIGHT_MAX",
    "maple_leaf_64", "maple_range_64", "maple_arange_64",
]

ULONG_MAX = (1 << 64) - 1

# enum maple_type
maple_dense, maple_leaf_64, maple_range_64, maple_arange_64 = 0, 1, 2, 3

MAPLE_NODE_SIZE = 256
MAPLE_RANGE64_SLOTS = 16
MAPLE_ARANGE64_SLOTS = 10
MAPLE_HEIGHT_MAX = 31
MT_FLAGS_ALLOC_RANGE = 0x01
MT_FLAGS_USE_RCU = 0x02
MT_FLAGS_HEIGHT_OFFSET = 0x02
MT_FLAGS_HEIGHT_MASK = 0x7C
MAPLE_ROOT_NODE = 0x02
MAPLE_ENODE_TYPE_SHIFT = 0x03
MAPLE_ENODE_NULL = 0x04
MA_ROOT_PARENT = 0x01
MAPLE_PARENT_SLOT_SHIFT = 0x03
MAPLE_PARENT_RANGE64 = 0x06

MT_ROOT_WORDS = 2                 # ma_root, ma_flags
_ROOT, _FLAGS = 0, 1

# Word indices inside a node (see the layout above).
_PARENT = 0
_R_SLOT, _R_META = 16, 31          # leaf_64 / range_64: pivots w1-15
_A_SLOT, _A_GAP, _A_META = 10, 20, 30   # arange_64: pivots w1-9

# mt_min_slots: (MAPLE_RANGE64_SLOTS / 2) - 2, (MAPLE_ARANGE64_SLOTS / 2) - 1
_MIN_RANGE, _MIN_ARANGE = MAPLE_RANGE64_SLOTS // 2 - 2, MAPLE_ARANGE64_SLOTS // 2 - 1

_NONE = (0, 0, 0)
_NODE_WORDS = struct.Struct("<32Q")    # a whole node in one pack_into (0.9 us vs 1.8 us via array)

Path = list[tuple[int, int, int, int, int]]     # per depth: (off, type, min, max, slot taken)


def mt_init(arena: Any, root_off: int, flags: int = MT_FLAGS_ALLOC_RANGE | MT_FLAGS_USE_RCU) -> None:
    """mt_init_flags(): an empty tree in the MT_ROOT_WORDS words at root_off."""
    if root_off % 8:
        raise ValueError(f"mt_init: root offset {root_off:#x} is not 8-byte aligned")
    if flags & ~(MT_FLAGS_ALLOC_RANGE | MT_FLAGS_USE_RCU):
        raise ValueError(f"mt_init: flags {flags:#x}: allowed MT_FLAGS_ALLOC_RANGE | MT_FLAGS_USE_RCU")
    w = root_off >> 3
    arena.u64[w + _ROOT] = 0
    arena.u64[w + _FLAGS] = flags


def _enode(off: int, t: int) -> int:
    return off | t << MAPLE_ENODE_TYPE_SHIFT | MAPLE_ENODE_NULL


def _pack(n: int, cap: int) -> list[tuple[int, int]]:
    """Split n slots into the fewest nodes of <= cap, as evenly as possible."""
    k = -(-n // cap)
    q, r = divmod(n, k)
    out, s = [], 0
    for g in range(k):
        e = s + q + (g < r)
        out.append((s, e))
        s = e
    return out


def _merge_nulls(vals: list[int], maxs: list[int]) -> tuple[list[int], list[int]]:
    ov: list[int] = []
    om: list[int] = []
    for v, m in zip(vals, maxs):
        if not v and ov and not ov[-1]:
            om[-1] = m
        else:
            ov.append(v)
            om.append(m)
    return ov, om


def _leaf_gap(vals: list[int], maxs: list[int], s: int, e: int, lo: int) -> int:
    """Largest NULL range among slots s..e-1, the first starting at lo (mas_leaf_max_gap)."""
    g = 0
    for i in range(s, e):
        if not vals[i] and maxs[i] - lo + 1 > g:
            g = maxs[i] - lo + 1
        lo = maxs[i] + 1
    return g


def _make_readers(u64: memoryview, rw: int, itype: int) -> tuple[Callable[..., Any], ...]:
    """The lock-free read side, bound once per handle (see the RCU protocol above).

    Descent: x = enode >> 3 is the node's word index plus its type (the type sits in bits
    3-6 of a 256-aligned offset), so `x & 2` tells an internal node from a leaf (types 2
    and 3 vs 1) and the pivots of an arange node are the words x-2 .. x+6, of a leaf
    x .. x+14.  bisect_left over all pivots finds the slot (unused pivots equal the node's
    max) and the slot word is the pivot position plus the number of pivots.  Only the
    leaf's bounds need the node's min/max; they are read from the pivots when the slot is
    not the first or last of a full leaf, and otherwise a second walk tracks min/max
    (`_slow`).  References are 256-aligned by construction; an offset past the arena
    raises IndexError inside bisect or the view and is answered NULL; every loop is
    bounded by MAPLE_HEIGHT_MAX.
    """
    d0, d1, inp = (2, 7, 9) if itype == maple_arange_64 else (1, 14, 15)
    alloc = itype == maple_arange_64
    amet = _A_META - 3                      # arange metadata word, from x = off / 8 + 3
    hrange = range(MAPLE_HEIGHT_MAX)
    none = _NONE

    def mtree_load(index: int) -> int:
        x = u64[rw] >> 3
        try:
            for _ in hrange:
                if not x & 2:
                    return u64[bisect_left(u64, index, x, x + 15) + 15] if x else 0
                x = u64[bisect_left(u64, index, x - d0, x + d1) + inp] >> 3
        except IndexError:
            pass
        return 0

    def _slow(index: int) -> tuple[int, int, int, int, int]:
        """Walk tracking the node bounds: (pivot position p, leaf word x, slot first,
        slot last, leaf max), or p = -1 when the tree is empty or garbage was met."""
        x = u64[rw] >> 3
        if not x:
            return (-1, 0, 0, 0, 0)
        lo, hi = 0, ULONG_MAX
        try:
            for _ in hrange:
                if not x & 2:
                    p = bisect_left(u64, index, x, x + 15)
                    return (p, x, u64[p - 1] + 1 if p > x else lo, u64[p] if p < x + 15 else hi, hi)
                p = bisect_left(u64, index, x - d0, x + d1)
                if p > x - d0:
                    lo = u64[p - 1] + 1
                if p < x + d1:
                    hi = u64[p]
                x = u64[p + inp] >> 3
        except IndexError:
            pass
        return (-1, 0, 0, 0, 0)

    def mas_walk(index: int) -> tuple[int, int, int]:
        x = u64[rw] >> 3
        xp = pp = 0
        try:
            for _ in hrange:
                if not x & 2:
                    break
                xp = x
                pp = bisect_left(u64, index, x - d0, x + d1)
                x = u64[pp + inp] >> 3
            else:
                return (0, index, index)
            if not x:
                return (0, 0, ULONG_MAX)
            p = bisect_left(u64, index, x, x + 15)
            if p > x:
                first = u64[p - 1] + 1
            elif xp and pp > xp - d0:               # slot 0: the leaf's min from the parent
                first = u64[pp - 1] + 1
            else:
                first = -1
            if p < x + 15:
                last = u64[p]
            elif xp and pp < xp + d1:               # slot 15 of a full leaf: the leaf's max
                last = u64[pp]
            else:
                last = -1
            if first < 0 or last < 0:
                p, x, first, last, _ = _slow(index)
                if p < 0:
                    return (0, index, index)
            return (u64[p + 15], first, last)
        except IndexError:
            return (0, index, index)

    def mt_find(index: int, limit: int = ULONG_MAX) -> tuple[int, int, int]:
        if index > limit:
            return none
        x = u64[rw] >> 3
        xp = pp = 0
        try:
            for _ in hrange:
                if not x & 2:
                    break
                xp = x
                pp = bisect_left(u64, index, x - d0, x + d1)
                x = u64[pp + inp] >> 3
            else:
                return none
            if not x:
                return none
            p = bisect_left(u64, index, x, x + 15)
            e = u64[p + 15]
            if e:
                if x < p < x + 15:                  # slot 1..14: its bounds are pivots
                    return (e, u64[p - 1] + 1, u64[p])
                # Slot 0 or 15: that bound is the leaf's, a pivot of the parent (0 and
                # ULONG_MAX for a root leaf); -1 when the parent's own bound is needed.
                first = u64[p - 1] + 1 if p > x else (u64[pp - 1] + 1 if pp > xp - d0 else -1) if xp else 0
                last = u64[p] if p < x + 15 else (u64[pp] if pp < xp + d1 else -1) if xp else ULONG_MAX
                if first >= 0 and last >= 0:
                    return (e, first, last)
            elif p < x + 15:                        # a gap: the entry after it
                last = u64[p]
                if last >= limit:
                    return none
                if p < x + 14 and u64[p + 1] != last:   # a used slot follows the gap
                    return (u64[p + 16], last + 1, u64[p + 1])
                if xp and pp < xp + d1:
                    lmax = u64[pp]                  # the leaf's max, from the parent
                    if last != lmax:                # slot 15 of a full leaf follows
                        return (u64[p + 16], last + 1, lmax)
                    if alloc and pp - xp + d0 < (u64[xp + amet] & 0xFF):
                        x = u64[pp + inp + 1] >> 3  # the gap ends the leaf: next leaf, slot 0
                        return (u64[x + 15], last + 1, u64[x])
            for _ in range(4):                      # the general case, tracking bounds
                p, x, first, last, hi = _slow(index)
                if p < 0:
                    return none
                e = u64[p + 15]
                if e:
                    return (e, first, last)
                if last >= limit:
                    return none
                if last == hi:                      # the gap ends the leaf: go on in the next
                    if hi == ULONG_MAX:
                        return none
                    index = hi + 1
                    continue
                return (u64[p + 16], last + 1, u64[p + 1] if p + 1 < x + 15 else hi)
        except IndexError:
            pass
        return none

    def mt_find_entry(index: int) -> int:
        """mt_find(index)[0] with no limit: the entry at index or the first after it
        (find_vma).  An entry in index's slot needs no bounds, so it is returned from
        the plain descent; a gap takes mt_find.  Measured (bench vm's find_vma, 10,000
        VMAs, f_trace_opcodes): ~200 -> ~160 bytecodes a lookup, 2.07 -> 1.67 us (CPU
        time, A-B in one process)."""
        x = u64[rw] >> 3
        try:
            for _ in hrange:
                if not x & 2:
                    if x:
                        e = u64[bisect_left(u64, index, x, x + 15) + 15]
                        if e:
                            return e
                    break
                x = u64[bisect_left(u64, index, x - d0, x + d1) + inp] >> 3
            else:
                return 0
        except IndexError:
            return 0
        return mt_find(index)[0]

    return mtree_load, mas_walk, mt_find, mt_find_entry


def _make_store(u64: memoryview, rw: int, itype: int, store64: Callable[..., Any],
                slow: Callable[[int, int, int], int]) -> Callable[[int, int, int], int]:
    """mas_store_range's fast path (writer side, bound once): a non-zero entry stored
    over exactly the range of a non-zero entry is one release store of its leaf slot
    (mas_wr_slot_store); everything else goes to `slow` (_rebuild)."""
    d0, d1, inp = (2, 7, 9) if itype == maple_arange_64 else (1, 14, 15)
    hrange = range(MAPLE_HEIGHT_MAX)

    def mas_store_range(first: int, last: int, entry: int) -> int:
        if 0 < entry <= ULONG_MAX and 0 <= first <= last <= ULONG_MAX:
            x = u64[rw] >> 3
            xp = pp = 0
            for _ in hrange:
                if not x & 2:
                    break
                xp = x
                pp = bisect_left(u64, first, x - d0, x + d1)
                x = u64[pp + inp] >> 3
            if x and not x & 2:
                p = bisect_left(u64, first, x, x + 15)
                lo = u64[p - 1] + 1 if p > x else (u64[pp - 1] + 1 if pp > xp - d0 else -1) if xp else 0
                hi = u64[p] if p < x + 15 else (u64[pp] if pp < xp + d1 else -1) if xp else ULONG_MAX
                if lo == first and hi == last and u64[p + 15]:
                    store64((p + 15) << 3, entry, RELEASE)
                    return 0
        return slow(first, last, entry)

    return mas_store_range


class MapleTree:
    """Handle on the maple tree whose root record is at arena offset `root_off`.

    Readers are closures bound at init; writers are methods (the caller serialises
    them).  ALLOC_RANGE is fixed at mt_init, so the internal node type is read once.
    """

    __slots__ = ("arena", "root_off", "alloc_node", "free_node", "rcu_free_node", "alloc_range",
                 "itype", "_u64", "_rw", "mtree_load", "mas_walk", "mt_find", "mt_find_entry",
                 "mas_store_range")

    def __init__(self, arena: Any, root_off: int, alloc_node: Callable[[], int] | None = None,
                 free_node: Callable[[int], None] | None = None,
                 rcu_free_node: Callable[[int], None] | None = None) -> None:
        if root_off % 8 or not 0 <= root_off <= arena.size - 8 * MT_ROOT_WORDS:
            raise ValueError(f"MapleTree: root offset {root_off:#x} not an aligned arena offset")
        self.arena, self.root_off = arena, root_off
        self.alloc_node, self.free_node, self.rcu_free_node = alloc_node, free_node, rcu_free_node
        self._u64 = arena.u64
        self._rw = root_off >> 3
        self.alloc_range = bool(self._u64[self._rw + _FLAGS] & MT_FLAGS_ALLOC_RANGE)
        self.itype = maple_arange_64 if self.alloc_range else maple_range_64
        self.mtree_load, self.mas_walk, self.mt_find, self.mt_find_entry = _make_readers(self._u64, self._rw,
                                                                                         self.itype)
        self.mas_store_range = _make_store(self._u64, self._rw, self.itype, arena.atomic.store64, self._store_slow)

    # ------------------------------------------------------------------ small facts
    def mt_height(self) -> int:
        return (self._u64[self._rw + _FLAGS] & MT_FLAGS_HEIGHT_MASK) >> MT_FLAGS_HEIGHT_OFFSET

    def _set_height(self, h: int) -> None:
        f = self._u64[self._rw + _FLAGS]
        self._u64[self._rw + _FLAGS] = (f & ~MT_FLAGS_HEIGHT_MASK) | (h << MT_FLAGS_HEIGHT_OFFSET)

    def _in_rcu(self) -> bool:
        return bool(self._u64[self._rw + _FLAGS] & MT_FLAGS_USE_RCU)

    def _publish(self, word: int, value: int) -> None:
        """rcu_assign_pointer: one RELEASE store of an aligned word."""
        self.arena.atomic.store64(word << 3, value, RELEASE)

    # ------------------------------------------------------------------ read side (more)
    def mas_next(self, index: int, limit: int = ULONG_MAX) -> tuple[int, int, int]:
        """The first entry starting after the range that holds index (mt_next)."""
        _, _, hi = self.mas_walk(index)
        if hi >= limit or hi == ULONG_MAX:
            return _NONE
        return self.mt_find(hi + 1, limit)

    def mas_prev(self, index: int, limit: int = 0) -> tuple[int, int, int]:
        """The last entry ending before the range that holds index, ending >= limit (mt_prev)."""
        _, lo, _ = self.mas_walk(index)
        for _ in range(2):                  # gaps are maximal: at most one gap to step over
            if lo == 0 or lo - 1 < limit:
                return _NONE
            e, lo2, hi2 = self.mas_walk(lo - 1)
            if e:
                return (e, lo2, hi2)
            lo = lo2
        return _NONE

    def mt_for_each(self, start: int = 0, last: int = ULONG_MAX) -> Iterator[tuple[int, int, int]]:
        """Every entry whose range meets [start, last], in order, as (first, last, entry)."""
        index, find = start, self.mt_find
        while index <= last:
            e, f, l = find(index, last)
            if not e:
                return
            yield (f, l, e)
            if l >= last:
                return
            index = l + 1

    # ------------------------------------------------------------------ writer helpers
    def _path(self, index: int) -> tuple[Path, int, int, int]:
        """Walk from the root: per depth (off, type, min, max, slot), then the leaf slot's
        (first, last, entry).  Writer side: the tree is consistent and not changing."""
        u64 = self._u64
        enode = u64[self._rw]
        nmin, nmax = 0, ULONG_MAX
        path: Path = []
        for _ in range(MAPLE_HEIGHT_MAX + 1):
            off, t = enode & ~0xFF, enode >> 3 & 15
            b = off >> 3
            np_ = 9 if t == maple_arange_64 else 15
            p = bisect_left(u64, index, b + 1, b + 1 + np_)
            i = p - b - 1
            smin = u64[p - 1] + 1 if i else nmin
            smax = u64[p] if i < np_ else nmax
            path.append((off, t, nmin, nmax, i))
            if t == maple_leaf_64:
                return path, smin, smax, u64[b + _R_SLOT + i]
            enode = u64[b + 1 + np_ + i]
            nmin, nmax = smin, smax
        raise AssertionError(f"maple tree at {self.root_off:#x}: deeper than MAPLE_HEIGHT_MAX")

    def _read(self, off: int, t: int, nmax: int) -> tuple[list[int], list[int], list[int] | None]:
        """A node's used slots as (values, inclusive maxima, gaps or None)."""
        u64 = self._u64
        b = off >> 3
        if t == maple_arange_64:
            end = u64[b + _A_META] & 0xFF
            return (u64[b + _A_SLOT: b + _A_SLOT + end + 1].tolist(),
                    [*u64[b + 1: b + 1 + end].tolist(), nmax],
                    u64[b + _A_GAP: b + _A_GAP + end + 1].tolist())
        end = 15 if u64[b + 15] != nmax else u64[b + _R_META] & 0xFF
        return (u64[b + _R_SLOT: b + _R_SLOT + end + 1].tolist(), [*u64[b + 1: b + 1 + end].tolist(), nmax], None)

    def _write(self, off: int, t: int, vals: list[int], maxs: list[int], gaps: list[int] | None,
               parent: int) -> None:
        """Write a whole node image (every word) for slots vals/maxs (maxs[-1] = node max)."""
        n = len(vals)
        end, nmax = n - 1, maxs[-1]
        if t == maple_arange_64:
            assert gaps is not None and n <= MAPLE_ARANGE64_SLOTS
            goff = n - 1 - gaps[::-1].index(max(gaps))          # the last largest gap
            words = [parent, *maxs[:end], *([nmax] * (9 - end)), *vals, *([0] * (10 - n)),
                     *gaps, *([0] * (10 - n)), end | goff << 8, 0]
        else:
            assert n <= MAPLE_RANGE64_SLOTS
            words = [parent, *maxs[:end], *([nmax] * (15 - end)), *vals, *([0] * (16 - n))]
            if n < 16:
                words[_R_META] = end
        _NODE_WORDS.pack_into(self.arena.buf, off, *words)

    def _alloc(self, n: int) -> list[int] | None:
        """mas_preallocate: n nodes or none at all."""
        if n and self.alloc_node is None:
            raise RuntimeError("MapleTree: read-only handle (no alloc_node callback)")
        got: list[int] = []
        for _ in range(n):
            off = self.alloc_node()  # type: ignore[misc]
            if off < 0:
                for o in got:
                    self.free_node(o)  # type: ignore[misc]
                return None
            if off & 0xFF or off + MAPLE_NODE_SIZE > self.arena.size:
                raise ValueError(f"MapleTree: alloc_node gave {off:#x}: not a 256-aligned node in the arena")
            got.append(off)
        return got

    def _retire(self, off: int) -> None:
        """Take a node out for good: dead mark (parent = self), then (RCU-)free it."""
        self._u64[off >> 3] = off
        if self._in_rcu():
            self.rcu_free_node(off)  # type: ignore[misc]
        else:
            self.free_node(off)  # type: ignore[misc]

    # ------------------------------------------------------------------ stores
    def _store_slow(self, first: int, last: int, entry: int) -> int:
        """mtree_store_range(): [first, last] -> entry, overwriting whatever is there
        (partially covered neighbours are trimmed or split); entry 0 erases.  The
        handle's mas_store_range tries the one-slot store first (_make_store)."""
        if not 0 <= first <= last <= ULONG_MAX or not 0 <= entry <= ULONG_MAX:
            return -EINVAL
        u64 = self._u64
        if not u64[self._rw]:
            return self._store_empty(first, last, entry) if entry else 0
        return self._rebuild(first, last, entry)

    def mtree_insert_range(self, first: int, last: int, entry: int) -> int:
        """Store only if [first, last] is all gap (-EEXIST otherwise)."""
        if not entry or not 0 <= first <= last <= ULONG_MAX:
            return -EINVAL
        if self.mt_find(first, last)[0]:
            return -EEXIST
        return self.mas_store_range(first, last, entry)

    def mtree_erase(self, index: int) -> int:
        """Erase the whole range of the entry at index; return that entry (0 if none)."""
        e, lo, hi = self.mas_walk(index)
        if not e:
            return 0
        r = self.mas_store_range(lo, hi, 0)
        return r if r < 0 else e

    def _store_empty(self, first: int, last: int, entry: int) -> int:
        vals, maxs = [], []
        if first:
            vals.append(0)
            maxs.append(first - 1)
        vals.append(entry)
        maxs.append(last)
        if last < ULONG_MAX:
            vals.append(0)
            maxs.append(ULONG_MAX)
        got = self._alloc(1)
        if got is None:
            return -ENOMEM
        self._write(got[0], maple_leaf_64, vals, maxs, None, self.root_off | MA_ROOT_PARENT)
        self._publish(self._rw + _ROOT, _enode(got[0], maple_leaf_64) | MAPLE_ROOT_NODE)
        self._set_height(1)
        return 0

    def _rebuild(self, first: int, last: int, entry: int) -> int:
        """The general store: rebuild bottom-up, allocate, write, publish once, retire."""
        u64, alloc, itype = self._u64, self.alloc_range, self.itype
        lpath, _, hi, e = self._path(first)
        height = len(lpath)                         # (not ma_flags': a writer killed between
                                                    # its root's publish and the height's store)
        if not entry:
            if not e and hi >= last:
                return 0                                  # already a gap
            # A gap store widens over neighbouring gaps (gaps stay maximal); inside the
            # leaves _merge_nulls does it, across a leaf boundary it takes a walk.
            if first == lpath[-1][2] and first:
                e, lo, _ = self.mas_walk(first - 1)
                if not e:
                    first = lo
                    lpath = self._path(first)[0]
        rpath = lpath if lpath[-1][3] >= last else self._path(last)[0]
        if not entry and last == rpath[-1][3] and last < ULONG_MAX:
            e, _, hi = self.mas_walk(last + 1)
            if not e:
                last = hi
                rpath = self._path(last)[0]
        known = [lpath, rpath]

        def path_of(index: int, depth: int) -> Path:
            """A root path whose nodes at depths 0..depth hold index (walks are reused)."""
            for p in known:
                if p[depth][2] <= index <= p[depth][3]:
                    return p
            p = self._path(index)[0]
            known.append(p)
            return p
        loff, lt, lmin, lmax, _ = lpath[-1]
        roff, rt, _, rmax, _ = rpath[-1]
        # Level 0: left leaf's data before first, the new range, right leaf's data after last.
        vals: list[int] = []
        maxs: list[int] = []
        lv, lm, _ = self._read(loff, lt, lmax)
        prev = lmin
        for v, m in zip(lv, lm):
            if m < first:
                vals.append(v)
                maxs.append(m)
            else:
                if prev < first:
                    vals.append(v)
                    maxs.append(first - 1)
                break
            prev = m + 1
        vals.append(entry)
        maxs.append(last)
        rv, rm, _ = self._read(roff, rt, rmax) if roff != loff else (lv, lm, None)
        for v, m in zip(rv, rm):
            if m > last:
                vals.append(v)
                maxs.append(m)
        if not entry:                               # only a new gap can touch another gap
            vals, maxs = _merge_nulls(vals, maxs)
        gaps: list[int] | None = None
        wlo, whi = lmin, rmax
        # plan[j] = (type, vals, maxs, gaps, groups, group_gaps, wlo): new nodes of level j
        plan: list[tuple[int, list[int], list[int], list[int] | None, list[tuple[int, int]], list[int], int]] = []
        windows: list[tuple[int, int]] = []        # old nodes of level j replaced: [wlo, whi]
        j = 0
        publish_at = -1                             # depth of the replaced node, -1: the root
        while True:
            depth = height - 1 - j
            t = maple_leaf_64 if j == 0 else itype
            cap, minfill = ((MAPLE_ARANGE64_SLOTS, _MIN_ARANGE) if t == maple_arange_64
                            else (MAPLE_RANGE64_SLOTS, _MIN_RANGE))
            side = -1
            if depth > 0 and len(vals) < minfill and (wlo or whi != ULONG_MAX):
                side = wlo - 1 if wlo else whi + 1  # too few slots: take in a neighbour
            elif depth > 0 and len(vals) > cap:
                side = self._push_side(path_of(wlo, depth), whi, depth, len(vals), cap)
            if side >= 0:
                noff, nt, nmin, nmax, _ = path_of(side, depth)[depth]
                nv, nm, ng = self._read(noff, nt, nmax)
                if side < wlo:
                    vals, maxs, wlo = nv + vals, nm + maxs, nmin
                    gaps = None if gaps is None or ng is None else ng + gaps
                else:
                    vals, maxs, whi = vals + nv, maxs + nm, nmax
                    gaps = None if gaps is None or ng is None else gaps + ng
                if j == 0 and not entry:
                    vals, maxs = _merge_nulls(vals, maxs)
            groups = _pack(len(vals), cap)
            ggaps: list[int] = []
            if alloc:
                lo = wlo
                for s, e in groups:
                    ggaps.append(_leaf_gap(vals, maxs, s, e, lo) if j == 0 else max(gaps[s:e]))  # type: ignore[index]
                    lo = maxs[e - 1] + 1
            plan.append((t, vals, maxs, gaps, groups, ggaps, wlo))
            windows.append((wlo, whi))
            if depth == 0:
                break
            wpath = path_of(wlo, depth)
            if len(groups) == 1 and len(vals) >= minfill and wpath[depth][3] == whi:
                publish_at = depth                  # one node replaces one node
                break
            # The level above: its slots left of the window, the new nodes, those right of it.
            poff, pt, pmin, pmax, _ = wpath[depth - 1]
            qoff, qt, _, qmax, _ = path_of(whi, depth - 1)[depth - 1]
            pv, pm, pg = self._read(poff, pt, pmax)
            nvals, nmaxs, ngaps = [], [], []
            for k, (v, m) in enumerate(zip(pv, pm)):
                if m < wlo:
                    nvals.append(v)
                    nmaxs.append(m)
                    if pg is not None:
                        ngaps.append(pg[k])
            for k, (_, e) in enumerate(groups):
                nvals.append(-(k + 1))              # reference to new node k of level j
                nmaxs.append(maxs[e - 1])
                if alloc:
                    ngaps.append(ggaps[k])
            qv, qm, qg = self._read(qoff, qt, qmax) if qoff != poff else (pv, pm, pg)
            for k, (v, m) in enumerate(zip(qv, qm)):
                if m > whi:
                    nvals.append(v)
                    nmaxs.append(m)
                    if qg is not None:
                        ngaps.append(qg[k])
            vals, maxs, gaps = nvals, nmaxs, (ngaps if alloc else None)
            wlo, whi = pmin, qmax
            j += 1
        if publish_at < 0:
            # Root level: grow while it needs more than one node, then drop single-child roots.
            while len(plan[-1][4]) > 1:
                _, _, pm_, _, pgroups, pggaps, _ = plan[-1]
                t = itype
                cap = MAPLE_ARANGE64_SLOTS if t == maple_arange_64 else MAPLE_RANGE64_SLOTS
                nv_ = [-(k + 1) for k in range(len(pgroups))]
                nm_ = [pm_[e - 1] for _, e in pgroups]
                ng_ = list(pggaps) if alloc else None
                groups = _pack(len(nv_), cap)
                gg = [max(ng_[s:e]) for s, e in groups] if ng_ is not None else []
                plan.append((t, nv_, nm_, ng_, groups, gg, 0))
            while len(plan) > 1 and len(plan[-1][1]) == 1:
                plan.pop()
            if len(plan) == 1 and len(plan[0][1]) == 1 and not plan[0][1][0]:
                return self._make_empty(windows)
        # Preallocate every node of the plan, then write them bottom-up.
        got = self._alloc(sum(len(p[4]) for p in plan))
        if got is None:
            return -ENOMEM
        offs: list[list[int]] = []
        it = iter(got)
        for p in plan:
            offs.append([next(it) for _ in p[4]])
        for j, (t, vals, maxs, gaps, groups, _, _) in enumerate(plan):
            for k, (s, e) in enumerate(groups):
                off = offs[j][k]
                if j:
                    below_t = maple_leaf_64 if j == 1 else itype
                    sv = [v if v > 0 else _enode(offs[j - 1][-v - 1], below_t) for v in vals[s:e]]
                    pw = off | MAPLE_PARENT_RANGE64
                    for slot, v in enumerate(sv):            # adopt children (kept and new)
                        u64[(v & ~0xFF) >> 3] = pw | slot << MAPLE_PARENT_SLOT_SHIFT
                else:
                    sv = vals[s:e]
                self._write(off, t, sv, maxs[s:e], gaps[s:e] if gaps is not None else None, 0)
        top_t, top = plan[-1][0], offs[-1][0]
        old_top: tuple[int, int, int, int]
        if publish_at < 0:
            r = u64[self._rw]
            old_top = (r & ~0xFF, r >> 3 & 15, 0, ULONG_MAX)
            u64[top >> 3] = self.root_off | MA_ROOT_PARENT
            self._publish(self._rw + _ROOT, _enode(top, top_t) | MAPLE_ROOT_NODE)
            self._set_height(len(plan))
        else:
            wpath = path_of(windows[-1][0], publish_at)
            poff, pt, _, _, slot = wpath[publish_at - 1]
            o = wpath[publish_at]
            old_top = (o[0], o[1], o[2], o[3])
            u64[top >> 3] = poff | slot << MAPLE_PARENT_SLOT_SHIFT | MAPLE_PARENT_RANGE64
            sb = _A_SLOT if pt == maple_arange_64 else _R_SLOT
            self._publish((poff >> 3) + sb + slot, _enode(top, top_t))
            if alloc:
                self._propagate_gap(wpath, publish_at, plan[-1][5][0])
        self._retire_windows(old_top, windows)
        return 0

    def _push_side(self, path: Path, whi: int, depth: int, n: int, cap: int) -> int:
        """mas_push_data: an overflowing node that is one old node (path[depth]) shares its
        data with a sibling (same parent; left first) that has room, instead of
        splitting: two fuller nodes replace two, and the parent keeps its slot count.
        Returns an index inside the sibling, or -1 (split)."""
        if path[depth][3] != whi:
            return -1
        poff, pt, _, pmax, s = path[depth - 1]
        pv, pm, _ = self._read(poff, pt, pmax)
        for k in (s - 1, s + 1):
            if 0 <= k < len(pv):
                c = pv[k]
                cmax = pm[k]
                if n + len(self._read(c & ~0xFF, c >> 3 & 15, cmax)[0]) <= 2 * cap - 2:
                    return cmax if k < s else pm[k - 1] + 1
        return -1

    def _make_empty(self, windows: list[tuple[int, int]]) -> int:
        r = self._u64[self._rw]
        self._publish(self._rw + _ROOT, 0)
        self._set_height(0)
        self._retire_windows((r & ~0xFF, r >> 3 & 15, 0, ULONG_MAX), windows)
        return 0

    def _propagate_gap(self, path: Path, depth: int, gap: int) -> None:
        """mas_update_gap / mas_parent_gap: the child at `depth` now has largest gap `gap`."""
        u64 = self._u64
        for d in range(depth - 1, -1, -1):
            off, _, _, _, i = path[d]
            b = off >> 3
            if u64[b + _A_GAP + i] == gap:
                return
            meta = u64[b + _A_META]
            end = meta & 0xFF
            old_max = u64[b + _A_GAP + (meta >> 8 & 0xFF)]
            u64[b + _A_GAP + i] = gap
            gs = u64[b + _A_GAP: b + _A_GAP + end + 1].tolist()
            mx = max(gs)
            u64[b + _A_META] = end | (end - gs[::-1].index(mx)) << 8
            if mx == old_max:
                return
            gap = mx

    def _retire_windows(self, top: tuple[int, int, int, int], windows: list[tuple[int, int]]) -> None:
        """Retire the old nodes the new ones replaced: at level j, those inside windows[j]."""
        stack = [(*top, len(windows) - 1)]
        while stack:
            off, t, nmin, nmax, j = stack.pop()
            if j > 0:
                v, m, _ = self._read(off, t, nmax)
                wlo, whi = windows[j - 1]
                cmin = nmin
                for c, cmax in zip(v, m):
                    if cmax >= wlo and cmin <= whi:
                        stack.append((c & ~0xFF, c >> 3 & 15, cmin, cmax, j - 1))
                    cmin = cmax + 1
            self._retire(off)

    # ------------------------------------------------------------------ gap search
    def mas_empty_area(self, min_: int, max_: int, size: int) -> int:
        """Lowest start of `size` free indices inside [min_, max_] (mas_empty_area)."""
        if min_ > max_ or size == 0 or max_ - min_ < size - 1:
            return -EINVAL
        r = self._u64[self._rw]
        if not r:
            return min_
        got = self._awalk(r, 0, ULONG_MAX, min_, max_, size, False)
        return -EBUSY if got is None else got

    def mas_empty_area_rev(self, min_: int, max_: int, size: int) -> int:
        """Highest start of `size` free indices inside [min_, max_] (mas_empty_area_rev)."""
        if min_ > max_ or size == 0 or max_ - min_ < size - 1:
            return -EINVAL
        r = self._u64[self._rw]
        if not r:
            return max_ - size + 1
        got = self._awalk(r, 0, ULONG_MAX, min_, max_, size, True)
        return -EBUSY if got is None else got

    def _awalk(self, enode: int, nmin: int, nmax: int, lo: int, hi: int, size: int, rev: bool) -> int | None:
        """Depth-first over children whose range meets [lo, hi] and whose gap fits, in
        index order (or reverse).  Only the two boundary paths can fail after descending
        (a gap partly outside [lo, hi]), so this is O(height * fanout)."""
        off, t = enode & ~0xFF, enode >> 3 & 15
        vals, maxs, gaps = self._read(off, t, nmax)
        mins = [nmin, *(m + 1 for m in maxs[:-1])]
        order = range(len(vals) - 1, -1, -1) if rev else range(len(vals))
        for i in order:
            cmin, cmax = mins[i], maxs[i]
            if cmax < lo:
                if rev:
                    return None
                continue
            if cmin > hi:
                if rev:
                    continue
                return None
            if t == maple_leaf_64:
                if vals[i]:
                    continue
                a, z = max(cmin, lo), min(cmax, hi)
                if z - a + 1 >= size:
                    return z - size + 1 if rev else a
            elif gaps is None or gaps[i] >= size:
                got = self._awalk(vals[i], cmin, cmax, lo, hi, size, rev)
                if got is not None:
                    return got
        return None

    # ------------------------------------------------------------------ whole tree
    def _nodes(self) -> Iterator[tuple[int, int, int, int, int, int]]:
        """Every node as (off, type, min, max, depth, parent word expected), pre-order."""
        r = self._u64[self._rw]
        if not r:
            return
        stack = [(r & ~0xFF, r >> 3 & 15, 0, ULONG_MAX, 0, self.root_off | MA_ROOT_PARENT)]
        while stack:
            off, t, nmin, nmax, d, pw = stack.pop()
            yield off, t, nmin, nmax, d, pw
            if t != maple_leaf_64:
                v, m, _ = self._read(off, t, nmax)
                cmin = nmin
                kids = []
                for i, (c, cmax) in enumerate(zip(v, m)):
                    kids.append((c & ~0xFF, c >> 3 & 15, cmin, cmax, d + 1,
                                 off | i << MAPLE_PARENT_SLOT_SHIFT | MAPLE_PARENT_RANGE64))
                    cmin = cmax + 1
                stack.extend(reversed(kids))

    def mt_nr_nodes(self) -> int:
        return sum(1 for _ in self._nodes())

    def mt_nodes(self) -> list[int]:
        """Every node reachable from the root (stop-the-world: a recovery's sweep)."""
        return [n[0] for n in self._nodes()]

    def mt_repair(self) -> int:
        """Rewrite every reachable node's parent word, and the height in ma_flags, to
        what the tree says.  A store adopts the children it keeps (their parent words
        name the new node) before it publishes that node, and stores the height after
        it publishes a new root: a writer killed in between leaves kept children naming
        a node that never got in, or a height that is not the tree's (MT1).
        Stop-the-world (recovery); returns the words rewritten."""
        u64, n, depth = self._u64, 0, 0
        for off, _t, _mn, _mx, d, pw in self._nodes():
            depth = max(depth, d + 1)
            if u64[off >> 3] != pw:
                u64[off >> 3] = pw
                n += 1
        if self.mt_height() != depth:
            self._set_height(depth)
            n += 1
        return n

    def mt_destroy(self) -> None:
        """mtree_destroy(): empty the tree and retire every node."""
        offs = [n[0] for n in self._nodes()]
        self._publish(self._rw + _ROOT, 0)
        self._set_height(0)
        for off in offs:
            self._retire(off)

    def mt_dump(self) -> str:
        """mt_dump(): one line per node, its slots as [first, last] -> value."""
        lines = [f"maple_tree({self.root_off:#x}) flags {self._u64[self._rw + _FLAGS]:#x} "
                 f"height {self.mt_height()} root {self._u64[self._rw]:#x}"]
        names = {1: "leaf_64", 2: "range_64", 3: "arange_64"}
        for off, t, nmin, nmax, d, _ in self._nodes():
            v, m, g = self._read(off, t, nmax)
            lines.append(f"{'  ' * d}{names.get(t, t)} {off:#x} [{nmin:#x}, {nmax:#x}] end {len(v) - 1}")
            lo = nmin
            for i, (x, hi) in enumerate(zip(v, m)):
                gap = f" gap {g[i]:#x}" if g is not None else ""
                lines.append(f"{'  ' * d}  {i:2d}: [{lo:#x}, {hi:#x}] -> {x:#x}{gap}")
                lo = hi + 1
        return "\n".join(lines)

    def mt_validate(self) -> list[str]:
        """Check MT1..MT8 (module docstring); return the violations found (none: []).

        Stop-the-world (no writer running); never raises on a corrupt tree: a bad node
        is reported and not descended into.
        """
        u64, size, itype = self._u64, self.arena.size, self.itype
        errs: list[str] = []
        r, height = u64[self._rw], self.mt_height()
        if not r:
            if height:
                errs.append(f"MT1 empty tree with height {height}")
            return errs
        if r & (MAPLE_ROOT_NODE | MAPLE_ENODE_NULL) != MAPLE_ROOT_NODE | MAPLE_ENODE_NULL:
            errs.append(f"MT1 ma_root {r:#x} is not an encoded root node")
        seen: set[int] = set()
        state = {"next": 0, "null": False}

        def check(enode: int, nmin: int, nmax: int, depth: int, pw: int) -> int:
            off, t = enode & ~0xFF, enode >> 3 & 15
            where = f"node {off:#x} [{nmin:#x}, {nmax:#x}] depth {depth}"
            if off in seen or off + MAPLE_NODE_SIZE > size or depth >= MAPLE_HEIGHT_MAX:
                errs.append(f"MT2 {where}: reference {enode:#x} repeated, outside the arena or too deep")
                return 0
            seen.add(off)
            leaf = depth == height - 1
            if t not in (maple_leaf_64, itype):
                errs.append(f"MT2 {where}: node type {t}, allowed {maple_leaf_64} (leaf) and {itype}")
                return 0
            if (t == maple_leaf_64) != leaf:
                errs.append(f"MT1 {where}: {'leaf' if t == maple_leaf_64 else 'internal node'} at depth "
                            f"{depth} of a tree of height {height}")
                return 0
            b = off >> 3
            if u64[b] != pw:
                errs.append(f"MT5 {where}: parent word {u64[b]:#x}, expected {pw:#x}")
            if t == maple_arange_64:
                np_, sb, end = 9, _A_SLOT, u64[b + _A_META] & 0xFF
                if end > 9:
                    errs.append(f"MT4 {where}: metadata end {end}")
                    return 0
                tail = [*u64[b + _A_SLOT + end + 1: b + _A_SLOT + 10].tolist(),
                        *u64[b + _A_GAP + end + 1: b + _A_GAP + 10].tolist(), u64[b + 31]]
            else:
                np_, sb = 15, _R_SLOT
                end = 15 if u64[b + 15] != nmax else u64[b + _R_META] & 0xFF
                if end > 14 and u64[b + 15] == nmax:
                    errs.append(f"MT4 {where}: metadata end {end} in a node that is not full")
                    return 0
                tail = u64[b + _R_SLOT + end + 1: b + _R_SLOT + 15].tolist()
            if any(tail):
                errs.append(f"MT4 {where}: non-zero words past end {end}")
            piv = u64[b + 1: b + 1 + np_].tolist()
            used = piv[:end]
            if used and (used[0] < nmin or used[-1] >= nmax or any(x >= y for x, y in pairwise(used))):
                errs.append(f"MT3 {where}: pivots {[hex(x) for x in used]} not increasing inside the node")
                return 0
            if any(x != nmax for x in piv[end:]):
                errs.append(f"MT3 {where}: unused pivots {[hex(x) for x in piv[end:]]} != max")
            minfill = _MIN_ARANGE if t == maple_arange_64 else _MIN_RANGE
            if depth and end + 1 < minfill:
                errs.append(f"MT6 {where}: {end + 1} slots, fewer than {minfill}")
            vals = u64[b + sb: b + sb + end + 1].tolist()
            maxs = [*used, nmax]
            lo, best = nmin, 0
            if leaf:
                if depth == 0 and end == 0 and not vals[0]:
                    errs.append(f"MT7 {where}: the root leaf is one NULL range")
                for v, hi in zip(vals, maxs):
                    if lo != state["next"]:
                        errs.append(f"MT3 {where}: range starts at {lo:#x}, expected {state['next']:#x}")
                    if not v:
                        if state["null"]:
                            errs.append(f"MT7 {where}: NULL range [{lo:#x}, {hi:#x}] follows another")
                        best = max(best, hi - lo + 1)
                    state["next"], state["null"], lo = hi + 1, not v, hi + 1
                return best
            gaps = u64[b + _A_GAP: b + _A_GAP + end + 1].tolist() if t == maple_arange_64 else None
            for i, (v, hi) in enumerate(zip(vals, maxs)):
                if not v:
                    errs.append(f"MT4 {where}: slot {i} of an internal node is 0")
                    continue
                g = check(v, lo, hi, depth + 1, off | i << MAPLE_PARENT_SLOT_SHIFT | MAPLE_PARENT_RANGE64)
                if gaps is not None and gaps[i] != g:
                    errs.append(f"MT8 {where}: gap[{i}] = {gaps[i]:#x}, child's largest gap {g:#x}")
                best = max(best, g)
                lo = hi + 1
            if gaps is not None:
                goff = u64[b + _A_META] >> 8 & 0xFF
                if goff > end or gaps[goff] != max(gaps):
                    errs.append(f"MT8 {where}: metadata gap offset {goff} is not a largest gap")
            return best

        check(r, 0, ULONG_MAX, 0, self.root_off | MA_ROOT_PARENT)
        return errs
