"""XArray: an RCU-safe radix tree of 64-slot nodes in the arena (page cache, vm_object pages).

Models: lib/xarray.c and include/linux/xarray.h (v6.19): xa_load, xa_store, xa_erase,
xa_cmpxchg, xa_find, xa_find_after, xa_for_each / xa_for_each_marked, xa_set_mark,
xa_clear_mark, xa_get_mark, xa_marked, xa_destroy; xas_expand, xas_create,
xas_delete_node, xas_shrink, xas_set_mark / xas_clear_mark as the internals.  Unit: an
index (u64); an entry (a non-zero u64 that is not an internal entry: a 4-aligned
arena address, a pfn-encoded folio word with the low two bits 00, or a value entry
xa_mk_value(v) = v << 1 | 1); a node (struct xa_node, 576 bytes, 64-aligned).

API.  `xa_init(arena, root_off, flags=0)` makes an empty array in XA_ROOT_WORDS u64
words the caller embeds (struct xarray: xa_flags, xa_head; the xa_lock is the
caller's).  `XArray(arena, root_off, alloc_node, free_node, rcu_free_node)` is a
handle with the read side bound once as closures; without callbacks it can only read.
Readers (lock-free, any process):
  xa_load(index) -> entry | 0          xa_get_mark(index, mark) -> bool
  xa_find(start, max=ULONG_MAX, mark=None) -> (index, entry) | None   (first present >= start)
  xa_find_after(index, max, mark) -> (index, entry) | None             (first present > index)
  xa_for_each(start=0, last=ULONG_MAX, mark=None) -> iterator of (index, entry)
  xa_marked(mark) -> bool               xa_count() -> entries (walks the tree)
Leaf insert without the array's lock (inside an RCU read-side section):
  xa_insert_leaf(index, entry) -> 0 | 1 (inserted after waiting for the leaf's lock)
      | -EBUSY (index occupied) | -EAGAIN (no shift-0 node there yet: use xa_insert
      under the array's lock)
Writers (caller holds the array's lock; errors are negative errnos, never entries):
  xa_store(index, entry) -> old entry | -EINVAL | -ENOMEM   (entry 0 erases)
  xa_insert(index, entry) -> 0 | -EBUSY (index occupied) | -EINVAL | -ENOMEM
  xa_erase(index) -> old entry          xa_cmpxchg(index, old, entry) -> current entry | -errno
  xa_erase_range(first, last, limit) -> ([(index, entry)], resume index)   (bounded steps)
  xa_set_mark(index, mark), xa_clear_mark(index, mark)     (marks of present entries)
  xa_destroy(callback=None)   (callback(index, entry) for every entry, then all nodes go)
  xa_drain() -> [(index, entry)]   (xa_destroy returning the entries)
  xa_validate() -> [violations], xa_dump() -> str, xa_nr_nodes()
  xa_repair() -> (nodes rewritten, [nodes unlinked])   (counts and parent words from the
      slots, emptied nodes unlinked: after a writer died mid-store, its lock held for it)
Callbacks: alloc_node() -> off | -1 (576 bytes, 64-aligned -- the "radix_tree_node"
kmem_cache with align 64 or SLAB_HWCACHE_ALIGN; contents need not be zeroed, every word
of a new node is written here); free_node(off) for a node never made reachable;
rcu_free_node(off) for a node that was (freed after a grace period); track(root, off),
if given, hears each node a store allocated and then (root, -1) once they are published
(or freed on ENOMEM): a crash-tolerant caller logs the nodes in its hands (mm/vm/vm.py).

Node layout (576 bytes = 72 u64 words, as struct xa_node):

    w0      shift (bits 0-7) | offset in parent (8-15) | count (16-23) | nr_values (24-31)
            | XA_LEAF_LOCKED (bit 32, shift-0 nodes: the leaf lock, below)
    w1      parent node offset (0: the top node)
    w2      array: root record offset; XA_RCU_FREE (1) once retired
    w3-4    private_list (unused, 0) / rcu_head
    w5-68   slots[64]
    w69-71  marks[0..2]: one 64-bit bitmap per mark (XA_MARK_0..2 =
            PAGECACHE_TAG_DIRTY / _WRITEBACK / _TOWRITE)
    entries: 0 NULL; bit 0 set: value entry; bits 1-0 = 10: internal -- a node is
    node_off | 2 (xa_mk_node, > 4096), XA_RETRY_ENTRY = 0x402, XA_ZERO_ENTRY = 0x406.
    xa_flags: XA_FLAGS_MARK(m) = 1 << (GFP_BITS_SHIFT + m) is set while any entry has
    mark m (Linux keeps the same bits above the gfp flags).

A node of shift s holds indices [base, base + 64 << s); the top node's shift is the
smallest that covers the largest index (tree growth: xas_expand puts the old head in
slot 0 of a new top), a lone entry at index 0 lives in xa_head itself, and erasing
shrinks the tree (xas_shrink) and deletes emptied nodes (xas_delete_node).  Multi-index
(sibling) entries are not supported: every entry covers one index.

Writes.  xa_store into a shift-0 node that exists is one release store of the slot, plus
one store of the node's count word when the slot was empty or the entry changes kind
(the handle's closure: _make_store).  Otherwise (_store_slow): a missing path is built
as a chain of new nodes hanging from the deepest existing node, and growth builds the
new top levels with the old head in slot 0 of the lowest and index's path off the new
top -- every node allocated first (-ENOMEM changes nothing), published by one store.

RCU publication protocol (what a lock-free reader can see):
  * a store into an existing slot, a mark bit, a count: one aligned 8-byte store;
  * new nodes (growth or a new path) are written completely while unreachable and
    published by ONE release store of the parent's slot or xa_head;
  * a deleted node is unlinked by one store (NULL into the parent's slot, or xa_head),
    then retired (array = XA_RCU_FREE, rcu_free_node); a node removed by shrinking keeps
    its slots, except slot 0 of a shift-0 node, which becomes XA_RETRY_ENTRY (readers
    restart from the head) as in xas_shrink;
  * marks are cleared before the entry is erased (xas_init_marks), so a marked search
    never returns an erased slot as marked.
Readers bound every loop (the shift falls by 6 per level; a garbage shift raises
ValueError), follow only references that are 64-aligned internal words above 4096, and
turn IndexError/ValueError (a reference outside the arena) into a NULL answer.  Memory
ordering: as in maple_tree.py (release store to publish, plain loads to read).

Invariants (xa_validate):
  XA1 xa_head is 0, a non-internal entry (index 0), or a node reference; every node is
      64-aligned inside the arena, its shift a multiple of 6, a child's shift its
      parent's minus 6, and its array word the root record.
  XA2 every node's parent word and offset name the node and slot that hold it (the top
      node's parent is 0).
  XA3 count = non-NULL slots and nr_values = value entries, in every node; no node is
      empty (count >= 1).
  XA4 shift-0 slots hold entries (no internal entries), higher slots hold node
      references or NULL.
  XA5 marks: a shift-0 node's mark bits are set only on present entries; an internal
      node's bit o of mark m is set iff child o has any bit of m; xa_flags' mark m is
      set iff the top node has any bit of m (or, for a lone head entry, it is marked).
  XA6 the tree is shrunk: the top node does not hold exactly one entry in slot 0 that
      could be the head (xas_shrink would have removed it).

The leaf lock (an index-range shard of the array's lock, 64 indices a shard).  Every
write to a shift-0 node's slots or info word happens under that node's bit lock
(XA_LEAF_LOCKED in its info word: fetch_or to take it, test-and-test-and-set while
held) -- but for two writes that cannot collide with a leaf insert: the replacement
of a present entry by one of the same kind (one slot store: a leaf insert writes only
empty slots, and only array-lock holders empty one), and the fill of an empty slot of
an existing leaf (xa_store / xa_insert: CAS 0 -> entry on the slot, then an atomic add
to the count word, as the leaf insert does under its lock) --, as well as under the
array's lock for every writer but xa_insert_leaf, which
takes the leaf's lock alone: it walks to the leaf lock-free, locks it, and inserts only
if the leaf is still in the tree (array word not XA_RCU_FREE: a writer retires a leaf,
by xa_erase / xa_erase_range / _shrink, with its lock held and releases the lock only
after the array word says so) and the slot is empty.  Two CPUs inserting into
different leaves of one array therefore share no lock and write no common word; the
array's lock still orders everything that changes the tree's shape (new nodes, growth,
deletion, marks of internal nodes), and those writers find a leaf's slots and count
exactly as the leaf's last lock holder left them.  The leaf lock is innermost: nothing
is taken, and no grace period awaited (call_rcu after the unlock), while holding it.
A handle made with leaf_locks=False (robust mode: a bit lock names no owner, so a CPU
killed holding one could not have it taken over) takes none and its xa_insert_leaf
always answers -EAGAIN: every writer then goes through the array's lock.
Why: a vm_object's tree is written by every fault into it (mm/vm/vm_object.py); threads
faulting in one merged VMA insert into one object at indices far apart.

Deliberate races: none among writers (serialised by the caller, or by the leaf lock for
xa_insert_leaf); readers may return an entry that was erased after they loaded it (RCU);
callers re-check (folio_try_get + xa_load again, or a sequence count).

Measured (`aerosync bench lib --repeat 7`, 2-core box shared with other jobs, load
average 2.3; 40,000 entries below 2^18: top shift 12, depth 3, 4,161 nodes): xa_load
0.45 us (target 0.3), xa_store over a present entry 0.68 us (target 0.6), into an
empty slot of an existing node 0.81 us.  A depth-3 load is 5 memoryview loads (head,
top shift, 3 slots) plus ~60 bytecodes of index arithmetic and checks.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterator
from errno import EAGAIN, EBUSY, EINVAL, ENOMEM
from typing import Any

from aerosync.arch.atomic import RELEASE

__all__ = [
    "XArray", "xa_init", "xa_mk_value", "xa_to_value", "xa_is_value", "xa_is_err",
    "XA_ROOT_WORDS", "XA_NODE_SIZE", "XA_NODE_ALIGN", "XA_CHUNK_SHIFT", "XA_CHUNK_SIZE",
    "XA_MARK_0", "XA_MARK_1", "XA_MARK_2", "XA_RETRY_ENTRY", "XA_FLAGS_MARK", "ULONG_MAX",
]

ULONG_MAX = (1 << 64) - 1
XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK = XA_CHUNK_SIZE - 1
XA_MAX_MARKS = 3
XA_MARK_0, XA_MARK_1, XA_MARK_2 = 0, 1, 2          # PAGECACHE_TAG_DIRTY/WRITEBACK/TOWRITE
XA_NODE_SIZE = 576
XA_NODE_ALIGN = 64
XA_RETRY_ENTRY = 256 << 2 | 2                       # xa_mk_internal(256)
XA_ZERO_ENTRY = 257 << 2 | 2                        # xa_mk_internal(257)
XA_RCU_FREE = 1
XA_LEAF_LOCKED = 1 << 32                            # info word bit 32 of a shift-0 node: its lock
GFP_BITS_SHIFT = 26                                 # __GFP_BITS_SHIFT (config-dependent in Linux)
XA_ROOT_WORDS = 2                                   # xa_flags, xa_head
_FLAGS, _HEAD = 0, 1

# Word indices inside a node.
_INFO, _PARENT, _ARRAY, _SLOTS, _MARKS = 0, 1, 2, 5, 69
_MAX_SHIFT = 60                                     # 64-bit indices: shifts 0, 6, .., 60


def XA_FLAGS_MARK(mark: int) -> int:
    return 1 << (GFP_BITS_SHIFT + mark)


_ALL_MARKS = XA_FLAGS_MARK(0) | XA_FLAGS_MARK(1) | XA_FLAGS_MARK(2)


def xa_mk_value(v: int) -> int:
    return v << 1 | 1


def xa_to_value(entry: int) -> int:
    return entry >> 1


def xa_is_value(entry: int) -> bool:
    return bool(entry & 1)


def xa_is_err(r: int) -> bool:
    """Writers return negative errnos; entries are never negative."""
    return r < 0


def _is_node(entry: int) -> bool:
    return entry & 3 == 2 and entry > 4096


def _shift_for(index: int) -> int:
    """The smallest top shift whose node covers index (max_index >= index)."""
    s = 0
    while index >> s > XA_CHUNK_MASK:
        s += XA_CHUNK_SHIFT
    return s


def xa_init(arena: Any, root_off: int, flags: int = 0) -> None:
    """xa_init_flags(): an empty array in the XA_ROOT_WORDS words at root_off."""
    if root_off % 8:
        raise ValueError(f"xa_init: root offset {root_off:#x} is not 8-byte aligned")
    w = root_off >> 3
    arena.u64[w + _FLAGS] = flags & ~_ALL_MARKS
    arena.u64[w + _HEAD] = 0


def _make_readers(u64: memoryview, hw: int) -> tuple[Callable[..., Any], ...]:
    """The lock-free read side (see the RCU protocol above), bound once per handle."""
    retry = XA_RETRY_ENTRY
    levels = range(_MAX_SHIFT // XA_CHUNK_SHIFT + 2)

    def xa_load(index: int) -> int:
        e = u64[hw]
        if e & 3 != 2:
            return 0 if index else e
        try:
            shift = u64[e >> 3] & 0xFF
            # Depths 2 and 3 (indices below 2^12 / 2^18: files up to 1 GiB) unrolled, no
            # loop variables: at depth 3, 0.50 -> 0.46 us (A/B medians in one process).
            if shift == 12:
                if index >> 18:
                    return 0
                e = u64[(e >> 3) + 5 + (index >> 12)]
                if e & 63 != 2:                  # above shift 0 only nodes (64-aligned | 2) or NULL
                    return 0
                e = u64[(e >> 3) + 5 + (index >> 6 & 63)]
                if e & 63 != 2:
                    return 0
                e = u64[(e >> 3) + 5 + (index & 63)]
            elif shift == 6:
                if index >> 12:
                    return 0
                e = u64[(e >> 3) + 5 + (index >> 6)]
                if e & 63 != 2:
                    return 0
                e = u64[(e >> 3) + 5 + (index & 63)]
            else:
                if index >> shift > 63:
                    return 0
                b = e >> 3
                while shift:                     # shift falls by 6: bounded; garbage -> ValueError
                    e = u64[b + 5 + (index >> shift & 63)]
                    if e & 63 != 2:
                        return 0
                    b = e >> 3
                    shift -= 6
                e = u64[b + 5 + (index & 63)]
        except (IndexError, ValueError):
            return 0
        if e & 3 == 2:                           # XA_RETRY_ENTRY (a shrunk node): start again
            return _load_retry(index)
        return e

    def _load_retry(index: int) -> int:
        for _ in range(8):
            entry = u64[hw]
            if entry & 3 != 2:
                return 0 if index else entry
            try:
                b = entry >> 3
                shift = u64[b] & 0xFF
                if index >> shift > 63:
                    return 0
                while shift:
                    entry = u64[b + 5 + (index >> shift & 63)]
                    if entry & 63 != 2:
                        return 0
                    b = entry >> 3
                    shift -= 6
                entry = u64[b + 5 + (index & 63)]
            except (IndexError, ValueError):
                return 0
            if entry != retry:
                return 0 if entry & 3 == 2 else entry
        return 0

    def xa_find(start: int, limit: int = ULONG_MAX, mark: int | None = None) -> tuple[int, int] | None:
        """The first present (marked) entry at an index in [start, limit]: (index, entry)."""
        if start > limit:
            return None
        for _ in range(3):
            head = u64[hw]
            if head & 3 != 2:
                if start or not head or (mark is not None and not u64[hw - 1] & XA_FLAGS_MARK(mark)):
                    return None
                return (0, head)
            try:
                got = _find_tree(head, start, limit, mark)
            except (IndexError, ValueError):
                return None
            if got is not retry:
                return got                       # type: ignore[return-value]
        return None

    def _find_tree(head: int, start: int, limit: int, mark: int | None) -> tuple[int, int] | int | None:
        b = head >> 3
        shift = u64[b] & 0xFF
        if start >> shift > 63:
            return None
        base = 0
        o = start >> shift
        stack: list[tuple[int, int, int, int]] = []
        mw = None if mark is None else _MARKS + mark
        for _ in range(64 * 4 * len(levels)):   # bounded: a consistent tree needs far fewer
            if o > 63:
                if not stack:
                    return None
                b, shift, base, o = stack.pop()
                o += 1
                continue
            if mw is not None:
                bits = u64[b + mw] >> o
                if not bits:
                    o = 64
                    continue
                o += (bits & -bits).bit_length() - 1
            idx = base + (o << shift)
            if idx > limit:
                return None
            entry = u64[b + 5 + o]
            if not entry:
                o += 1
                continue
            if entry & 3 == 2:
                if entry == retry:
                    return retry
                if entry & 63 != 2 or entry < 4096 or not shift:
                    o += 1
                    continue
                stack.append((b, shift, base, o))
                b, shift, base = entry >> 3, shift - 6, idx
                o = (start - base) >> shift if start > base else 0
                continue
            if shift:
                o += 1                           # an entry above shift 0: not ours (no multi-index)
                continue
            return (idx, entry)
        return None

    def xa_get_mark(index: int, mark: int) -> bool:
        entry = u64[hw]
        if entry & 3 != 2:
            return not index and bool(entry) and bool(u64[hw - 1] & XA_FLAGS_MARK(mark))
        try:
            b = entry >> 3
            shift = u64[b] & 0xFF
            if index >> shift > 63:
                return False
            for _ in levels:
                o = index >> shift & 63
                entry = u64[b + 5 + o]
                if not shift:
                    return bool(entry) and bool(u64[b + _MARKS + mark] >> o & 1)
                if entry & 63 != 2 or entry < 4096:
                    return False
                b = entry >> 3
                shift -= 6
        except (IndexError, ValueError):
            pass
        return False

    return xa_load, xa_find, xa_get_mark


def _make_leaf_lock(u64: memoryview, atomic: Any) -> tuple[Callable[[int], int], Callable[[int], None]]:
    """leaf_lock(b) / leaf_unlock(b) on the shift-0 node at word index b: a bit spinlock
    (XA_LEAF_LOCKED) in its info word, test-and-test-and-set, yielding the host CPU every
    64 spins (the holder may be a descheduled process).  leaf_lock returns 1 if it had
    to wait (a contention), else 0."""
    fetch_or, fetch_and = atomic.fetch_or64, atomic.fetch_and64
    locked, unlocked = XA_LEAF_LOCKED, ULONG_MAX ^ XA_LEAF_LOCKED
    yield_ = os.sched_yield

    def leaf_lock(b: int) -> int:
        if not fetch_or(b << 3, locked) & locked:
            return 0
        n = 0
        while True:
            while u64[b] & locked:
                n += 1
                if not n & 63:
                    yield_()
            if not fetch_or(b << 3, locked) & locked:
                return 1

    def leaf_unlock(b: int) -> None:
        fetch_and(b << 3, unlocked)

    return leaf_lock, leaf_unlock


def _no_leaf_lock(b: int) -> int:
    return 0


def _no_leaf_unlock(b: int) -> None:
    pass


def _no_insert_leaf(index: int, entry: int) -> int:
    return -EAGAIN


def _make_insert_leaf(u64: memoryview, hw: int, root_off: int, atomic: Any,
                      leaf_lock: Callable[[int], int]) -> Callable[[int, int], int]:
    """xa_insert_leaf (module docstring: the leaf lock), bound once.  The caller is in an
    RCU read-side section (the leaf it finds cannot be freed under it) and holds no lock
    of the array: the walk is lock-free, the insert is under the leaf's lock alone."""
    retired = XA_RCU_FREE
    cas, fetch_add = atomic.cas64, atomic.fetch_add64
    unlock_add = (-XA_LEAF_LOCKED) & ULONG_MAX      # + this clears the held lock bit

    def xa_insert_leaf(index: int, entry: int) -> int:
        if (entry | index) >> 64 or not entry or entry & 3 == 2:
            return -EINVAL
        e = u64[hw]
        if e & 63 != 2 or e <= 4096:
            return -EAGAIN
        try:
            b = e >> 3
            shift = u64[b] & 0xFF
            if index >> shift > 63:
                return -EAGAIN                   # growth: under the array's lock
            while shift:                         # falls by 6 a level: bounded
                e = u64[b + 5 + (index >> shift & 63)]
                if e & 63 != 2:
                    return -EAGAIN               # no path yet: new nodes, the array's lock
                b = e >> 3
                shift -= 6
        except (IndexError, ValueError):
            return -EAGAIN
        waited = leaf_lock(b)
        if u64[b + 2] == retired or u64[b] & 0xFF:
            fetch_add(b << 3, unlock_add)
            return -EAGAIN
        if cas((b + 5 + (index & 63)) << 3, 0, entry):     # (a locked writer's fill won)
            fetch_add(b << 3, unlock_add)
            return -EBUSY
        # count + 1 (nr_values + 1 for a value entry) and the unlock, one atomic add
        fetch_add(b << 3, ((1 << 16 | (entry & 1) << 24) + unlock_add) & ULONG_MAX)
        return waited

    return xa_insert_leaf


def _make_store(u64: memoryview, hw: int, atomic: Any,
                slow: Callable[[int, int], int], leaf_lock: Callable[[int], int],
                leaf_unlock: Callable[[int], None]) -> Callable[[int, int], int]:
    """xa_store's fast path (writer side, bound once): a store into a shift-0 node that
    already exists is one release store of the slot plus, when the slot was empty or
    the entry changes kind, one store of the node's count word; the rest goes to
    `slow` (erase, bad arguments, growth, new nodes)."""
    store64, cas, fetch_add = atomic.store64, atomic.cas64, atomic.fetch_add64

    def xa_store(index: int, entry: int) -> int:
        if entry & 3 == 2 or not 0 < entry <= ULONG_MAX or not 0 <= index <= ULONG_MAX:
            return slow(index, entry)
        e = u64[hw]
        if e & 63 == 2 and e > 4096:
            shift = u64[e >> 3] & 0xFF
            if shift == 12 and not index >> 18:  # depth 3 unrolled, as in xa_load
                e = u64[(e >> 3) + 5 + (index >> 12)]
                if e & 63 != 2:
                    return slow(index, entry)
                e = u64[(e >> 3) + 5 + (index >> 6 & 63)]
                if e & 63 != 2:
                    return slow(index, entry)
                b = e >> 3
            elif index >> shift <= 63:
                b = e >> 3
                while shift:
                    e = u64[b + 5 + (index >> shift & 63)]
                    if e & 63 != 2:
                        return slow(index, entry)
                    b = e >> 3
                    shift -= 6
            else:
                return slow(index, entry)
            w = b + 5 + (index & 63)
            cur = u64[w]
            if cur and not (cur ^ entry) & 1:
                # present, same kind: one slot store, no count change -- no leaf lock (an
                # xa_insert_leaf writes only empty slots, and only array-lock holders
                # empty one)
                store64(w << 3, entry, RELEASE)
                return cur
            if not cur and not cas(w << 3, 0, entry):
                # an empty slot filled by CAS, the count by an atomic add: what a leaf
                # insert does under the leaf lock, so the two need not exclude each other
                fetch_add(b << 3, 1 << 16 | (entry & 1) << 24)
                return 0
            leaf_lock(b)
            cur = u64[w]
            store64(w << 3, entry, RELEASE)
            if not cur:
                u64[b] += 1 << 16 | (entry & 1) << 24
            elif (cur ^ entry) & 1:
                u64[b] += ((entry & 1) - (cur & 1)) << 24
            leaf_unlock(b)
            return cur
        return slow(index, entry)

    return xa_store


def _make_insert(u64: memoryview, hw: int, atomic: Any, load: Callable[[int], int],
                 slow: Callable[[int, int], int]) -> Callable[[int, int], int]:
    """xa_insert (writer side, bound once): store entry at index only if the index is
    empty -- one walk where xa_load + xa_store take two (a fault inserting its new
    page).  Depth 2 (indices below 2^12) and 3 (below 2^18) unrolled; a missing leaf
    or tree growth goes to `slow` (xa_store's) after a load.  Measured (page_fault1,
    16 MiB): xa_load + xa_store ~205 -> ~75 bytecodes a fault."""
    cas, fetch_add = atomic.cas64, atomic.fetch_add64

    def xa_insert(index: int, entry: int) -> int:
        if (entry | index) >> 64 or not entry or entry & 3 == 2:   # negative or > ULONG_MAX: >> 64 != 0
            return -EINVAL
        e = u64[hw]
        if e & 63 == 2 and e > 4096:
            b = e >> 3
            shift = u64[b] & 0xFF
            if shift == 6 and not index >> 12:
                e = u64[b + 5 + (index >> 6)]
            elif not shift:
                if index >> 6:
                    e = 0                        # growth: slow
            elif shift == 12 and not index >> 18:
                e = u64[b + 5 + (index >> 12)]
                if e & 63 == 2:
                    e = u64[(e >> 3) + 5 + (index >> 6 & 63)]
            elif index >> shift <= 63:
                shift -= 6
                e = u64[b + 5 + (index >> (shift + 6) & 63)]
                while shift and e & 63 == 2:
                    e = u64[(e >> 3) + 5 + (index >> shift & 63)]
                    shift -= 6
            else:
                e = 0                            # beyond the top: growth, slow
            if e & 63 == 2:                      # the leaf: store only into an empty slot
                b = e >> 3
                if cas((b + 5 + (index & 63)) << 3, 0, entry):
                    return -EBUSY
                fetch_add(b << 3, 0x1010000 if entry & 1 else 0x10000)   # count (+ value count), atomic
                return 0
        if load(index):
            return -EBUSY
        r = slow(index, entry)
        return r if r < 0 else 0

    return xa_insert


class XArray:
    """Handle on the XArray whose root record is at arena offset `root_off`."""

    __slots__ = ("arena", "root_off", "alloc_node", "free_node", "rcu_free_node", "_u64", "_hw", "_fw",
                 "xa_load", "xa_find", "xa_get_mark", "xa_store", "xa_insert", "xa_insert_leaf",
                 "_leaf_lock", "_leaf_unlock", "track")

    def __init__(self, arena: Any, root_off: int, alloc_node: Callable[[], int] | None = None,
                 free_node: Callable[[int], None] | None = None,
                 rcu_free_node: Callable[[int], None] | None = None, leaf_locks: bool = True,
                 track: Callable[[int, int], None] | None = None) -> None:
        if root_off % 8 or not 0 <= root_off <= arena.size - 8 * XA_ROOT_WORDS:
            raise ValueError(f"XArray: root offset {root_off:#x} not an aligned arena offset")
        self.arena, self.root_off = arena, root_off
        self.alloc_node, self.free_node, self.rcu_free_node = alloc_node, free_node, rcu_free_node
        self.track = track
        self._u64 = arena.u64
        self._fw = (root_off >> 3) + _FLAGS
        self._hw = (root_off >> 3) + _HEAD
        self.xa_load, self.xa_find, self.xa_get_mark = _make_readers(self._u64, self._hw)
        if leaf_locks:
            ll, lu = _make_leaf_lock(self._u64, arena.atomic)
            self.xa_insert_leaf = _make_insert_leaf(self._u64, self._hw, root_off, arena.atomic, ll)
        else:                     # every writer holds the array's lock: the leaf locks go
            ll, lu = _no_leaf_lock, _no_leaf_unlock
            self.xa_insert_leaf = _no_insert_leaf
        self._leaf_lock, self._leaf_unlock = ll, lu
        self.xa_store = _make_store(self._u64, self._hw, arena.atomic, self._store_slow, ll, lu)
        self.xa_insert = _make_insert(self._u64, self._hw, arena.atomic, self.xa_load, self._store_slow)

    # ------------------------------------------------------------------ read side (more)
    def xa_find_after(self, index: int, limit: int = ULONG_MAX, mark: int | None = None) -> tuple[int, int] | None:
        if index >= limit:
            return None
        return self.xa_find(index + 1, limit, mark)

    def xa_for_each(self, start: int = 0, last: int = ULONG_MAX,
                    mark: int | None = None) -> Iterator[tuple[int, int]]:
        """xa_for_each_range / xa_for_each_marked: (index, entry) in index order; each step
        is a fresh xa_find (safe against concurrent change, as Linux's)."""
        got = self.xa_find(start, last, mark)
        while got is not None:
            yield got
            got = self.xa_find_after(got[0], last, mark)

    def xa_marked(self, mark: int) -> bool:
        return bool(self._u64[self._fw] & XA_FLAGS_MARK(mark))

    def xa_empty(self) -> bool:
        return not self._u64[self._hw]

    # ------------------------------------------------------------------ writer helpers
    def _publish(self, word: int, value: int) -> None:
        self.arena.atomic.store64(word << 3, value, RELEASE)

    def _alloc(self, n: int) -> list[int] | None:
        if n and self.alloc_node is None:
            raise RuntimeError("XArray: read-only handle (no alloc_node callback)")
        got: list[int] = []
        track = self.track
        for _ in range(n):
            off = self.alloc_node()  # type: ignore[misc]
            if off < 0:
                for o in got:
                    self.free_node(o)  # type: ignore[misc]
                if track is not None and got:
                    track(self.root_off, -1)
                return None
            if off & (XA_NODE_ALIGN - 1) or off <= 4096 or off + XA_NODE_SIZE > self.arena.size:
                raise ValueError(f"XArray: alloc_node gave {off:#x}: not a 64-aligned node in the arena")
            got.append(off)
            if track is not None:
                track(self.root_off, off)
        return got

    def _published(self) -> None:
        """The nodes _alloc gave are reachable now (the `track` callback hears -1)."""
        if self.track is not None:
            self.track(self.root_off, -1)

    def _write_node(self, off: int, shift: int, offset: int, parent: int, slots: dict[int, int],
                    marks: tuple[int, int, int] = (0, 0, 0)) -> None:
        """A whole node image (xas_alloc + the slots it starts with)."""
        count = sum(1 for v in slots.values() if v)
        values = sum(1 for v in slots.values() if v and v & 1)
        words = [0] * (XA_NODE_SIZE // 8)
        words[_INFO] = shift | offset << 8 | count << 16 | values << 24
        words[_PARENT] = parent
        words[_ARRAY] = self.root_off
        for o, v in slots.items():
            words[_SLOTS + o] = v
        words[_MARKS: _MARKS + 3] = marks
        b = off >> 3
        self._u64[b: b + XA_NODE_SIZE // 8] = array("Q", words)

    def _chain(self, offs: list[int], top_shift: int, index: int, entry: int, parent: int, offset: int) -> int:
        """Write nodes offs[0..] of shifts top_shift, top_shift-6, .., 0 on index's path,
        entry at the bottom; return the reference of the first."""
        for k, off in enumerate(offs):
            shift = top_shift - XA_CHUNK_SHIFT * k
            child = offs[k + 1] | 2 if k + 1 < len(offs) else entry
            self._write_node(off, shift, offset, parent, {index >> shift & XA_CHUNK_MASK: child})
            parent, offset = off, index >> shift & XA_CHUNK_MASK
        return offs[0] | 2

    def _info_add(self, b: int, count: int, values: int) -> int:
        """update_node(): adjust count and nr_values in one word store; return the new count."""
        u64 = self._u64
        w = u64[b]
        c = (w >> 16 & 0xFF) + count
        v = (w >> 24 & 0xFF) + values
        u64[b] = (w & ~0xFFFF0000) | c << 16 | v << 24
        return c

    def _retire(self, off: int) -> None:
        """xa_node_free(): array = XA_RCU_FREE, then free after a grace period."""
        self._u64[(off >> 3) + _ARRAY] = XA_RCU_FREE
        self.rcu_free_node(off)  # type: ignore[misc]

    def _retire_leaf(self, off: int) -> None:
        """_retire of a shift-0 node whose lock the caller holds: the array word says
        retired before the lock goes (a waiting xa_insert_leaf then backs off), and
        call_rcu only after it (no grace period is awaited under the lock)."""
        self._u64[(off >> 3) + _ARRAY] = XA_RCU_FREE
        self._leaf_unlock(off >> 3)
        self.rcu_free_node(off)  # type: ignore[misc]

    def _walk(self, index: int) -> list[tuple[int, int]] | None:
        """Writer walk: [(node word index b, offset)] from the top to the shift-0 node, or
        None when index is beyond the tree or a node on its path is missing."""
        u64 = self._u64
        head = u64[self._hw]
        if not _is_node(head):
            return None
        b = head >> 3
        shift = u64[b] & 0xFF
        if index >> shift > XA_CHUNK_MASK:
            return None
        path = []
        while True:
            o = index >> shift & XA_CHUNK_MASK
            path.append((b, o))
            if not shift:
                return path
            e = u64[b + _SLOTS + o]
            if not _is_node(e):
                return None
            b, shift = e >> 3, shift - XA_CHUNK_SHIFT

    # ------------------------------------------------------------------ stores
    def _store_slow(self, index: int, entry: int) -> int:
        """xa_store() when the fast path cannot: bad arguments, erase, growth, new nodes."""
        if not 0 <= index <= ULONG_MAX or not 0 <= entry <= ULONG_MAX or entry & 3 == 2:
            return -EINVAL
        if not entry:
            return self.xa_erase(index)
        u64 = self._u64
        head = u64[self._hw]
        need = _shift_for(index)
        if not _is_node(head):
            if not index:
                self._publish(self._hw, entry)
                return head
            if head:                               # the index-0 entry moves into a node
                return self._expand_store(head, 0, need, index, entry)
            got = self._alloc(need // XA_CHUNK_SHIFT + 1)
            if got is None:
                return -ENOMEM
            self._publish(self._hw, self._chain(got, need, index, entry, 0, 0))
            self._published()
            return 0
        hs = u64[head >> 3] & 0xFF
        if need > hs:
            return self._expand_store(head, hs + XA_CHUNK_SHIFT, need, index, entry)
        b, shift = head >> 3, hs
        while True:
            o = index >> shift & XA_CHUNK_MASK
            w = b + _SLOTS + o
            cur = u64[w]
            if not shift:
                self._leaf_lock(b)
                cur = u64[w]
                self._publish(w, entry)
                self._info_add(b, 0 if cur else 1, (entry & 1) - (cur & 1))
                self._leaf_unlock(b)
                return cur
            if not cur:
                got = self._alloc(shift // XA_CHUNK_SHIFT)
                if got is None:
                    return -ENOMEM
                ref = self._chain(got, shift - XA_CHUNK_SHIFT, index, entry, b << 3, o)
                self._publish(w, ref)
                self._info_add(b, 1, 0)
                self._published()
                return 0
            b, shift = cur >> 3, shift - XA_CHUNK_SHIFT

    def _expand_store(self, head: int, low: int, top: int, index: int, entry: int) -> int:
        """xas_expand + xas_create in one publication: new nodes of shifts low..top with the
        old head in slot 0 of the lowest, index's path hanging off the new top."""
        u64 = self._u64
        nexp = (top - low) // XA_CHUNK_SHIFT + 1
        got = self._alloc(nexp + top // XA_CHUNK_SHIFT)
        if got is None:
            return -ENOMEM
        exp, below = got[:nexp], got[nexp:]
        flags = u64[self._fw]
        marks = tuple(int(bool(flags & XA_FLAGS_MARK(m))) for m in range(XA_MAX_MARKS))
        o_top = index >> top & XA_CHUNK_MASK
        for k, off in enumerate(exp):              # exp[0] is the new top
            shift = top - XA_CHUNK_SHIFT * k
            child = exp[k + 1] | 2 if k + 1 < nexp else head
            slots = {0: child}
            if k == 0:
                slots[o_top] = (self._chain(below, top - XA_CHUNK_SHIFT, index, entry, off, o_top)
                                if below else entry)
            self._write_node(off, shift, 0, exp[k - 1] if k else 0, slots, marks)  # type: ignore[arg-type]
        if _is_node(head):                         # the old top gets a parent
            hb = head >> 3
            if u64[hb] & 0xFF00:                   # (a top's offset is 0 already)
                leaf = not u64[hb] & 0xFF
                if leaf:
                    self._leaf_lock(hb)
                u64[hb] &= ~0xFF00
                if leaf:
                    self._leaf_unlock(hb)
            u64[hb + _PARENT] = exp[-1]
        self._publish(self._hw, exp[0] | 2)
        self._published()
        return 0

    def xa_erase(self, index: int) -> int:
        """xa_erase(): remove the entry at index; return it (0 if none)."""
        if not 0 <= index <= ULONG_MAX:
            return -EINVAL
        u64 = self._u64
        head = u64[self._hw]
        if not _is_node(head):
            if index or not head:
                return 0
            u64[self._fw] &= ~_ALL_MARKS
            self._publish(self._hw, 0)
            return head
        path = self._walk(index)
        if path is None:
            return 0
        b, o = path[-1]
        self._leaf_lock(b)
        cur = u64[b + _SLOTS + o]
        if not cur:
            self._leaf_unlock(b)
            return 0
        for m in range(XA_MAX_MARKS):              # xas_init_marks before the NULL store
            self._clear_mark_path(path, m)
        self._publish(b + _SLOTS + o, 0)
        count = self._info_add(b, -1, -(cur & 1))
        if count:
            self._leaf_unlock(b)
            d = len(path) - 1
        else:
            d = self._delete_nodes(path)               # xas_delete_node
        if d == 0:
            self._shrink()                             # then shrink from the top
        return cur

    def _delete_nodes(self, path: list[tuple[int, int]]) -> int:
        """xas_delete_node(): the emptied shift-0 node at the end of `path` (its lock
        held) and every ancestor it empties leave the tree, each unlinked -- its
        parent's slot, or the head, cleared -- before it is retired: a retire may run
        RCU callbacks at once (call_rcu polls when its batch is full), and with robust
        mode's fault points inside those frees a CPU may die there, so the tree must
        never point at a node by then.  Returns the depth of the first node that kept
        entries, or -1 when the array emptied."""
        d = len(path) - 1
        b = path[d][0]
        leaf = True
        while True:
            nb = b
            if d == 0:
                self._publish(self._hw, 0)
                count = -1
            else:
                d -= 1
                b, o = path[d]
                self._publish(b + _SLOTS + o, 0)
                count = self._info_add(b, -1, 0)
            if leaf:
                self._retire_leaf(nb << 3)
                leaf = False
            else:
                self._retire(nb << 3)
            if count:
                return d if count > 0 else -1

    def xa_erase_range(self, first: int, last: int, limit: int) -> tuple[list[tuple[int, int]], int]:
        """Erase the present entries at [first, last], at most `limit` of them, in index
        order: xa_store_range(first, last, NULL) in bounded steps, so that a caller can
        drop its lock between steps.  Returns (the erased (index, entry) pairs, the index
        to resume from; last + 1 once the range is done).  One writer walk per leaf node,
        its slots read in one slice, its count word stored once; marks are cleared before
        each entry and emptied nodes are deleted and the tree shrunk as xa_erase does,
        so a lock-free reader sees every step as a series of single erases."""
        u64 = self._u64
        store = self.arena.atomic.store64
        got: list[tuple[int, int]] = []
        idx = first
        while idx <= last and len(got) < limit:
            head = u64[self._hw]
            if not _is_node(head):
                if not idx and head:
                    got.append((0, self.xa_erase(0)))
                return got, last + 1
            path = self._walk(idx)
            if path is None:
                f = self.xa_find(idx, last)
                if f is None:
                    return got, last + 1
                idx = f[0]
                path = self._walk(idx)
                if path is None:                      # (a consistent tree has one)
                    raise RuntimeError(f"XArray: entry at {idx:#x} found but no writer path")
            b, o = path[-1]
            base = idx - o
            hi = min(XA_CHUNK_MASK, last - base)
            self._leaf_lock(b)
            marks = u64[b + _MARKS] | u64[b + _MARKS + 1] | u64[b + _MARKS + 2]
            room = limit - len(got)
            n = nv = 0
            nxt = base + hi + 1
            for k, e in enumerate(u64[b + _SLOTS + o: b + _SLOTS + hi + 1].tolist()):
                if not e:
                    continue
                j = o + k
                if n == room:
                    nxt = base + j
                    break
                if marks >> j & 1:
                    p = [*path[:-1], (b, j)]
                    for m in range(XA_MAX_MARKS):
                        self._clear_mark_path(p, m)
                store((b + _SLOTS + j) << 3, 0, RELEASE)
                got.append((base + j, e))
                n += 1
                nv += e & 1
            idx = nxt
            if not n:
                self._leaf_unlock(b)
                continue
            count = self._info_add(b, -n, -nv)
            if count:
                self._leaf_unlock(b)
                d = len(path) - 1
            else:
                d = self._delete_nodes(path)           # as in xa_erase
                if d < 0:
                    return got, last + 1
            if d == 0:
                self._shrink()
        return got, (idx if idx <= last else last + 1)

    def _shrink(self) -> None:
        """xas_shrink(): while the top holds only slot 0, make that the head."""
        u64 = self._u64
        while True:
            head = u64[self._hw]
            if not _is_node(head):
                return
            b = head >> 3
            leaf = not u64[b] & 0xFF
            if leaf:
                self._leaf_lock(b)
            info = u64[b]
            e = u64[b + _SLOTS]
            if info >> 16 & 0xFF != 1 or not e or (not _is_node(e) and info & 0xFF):
                if leaf:
                    self._leaf_unlock(b)
                return
            self._publish(self._hw, e)
            u64[b] = info & (0xFFFF | XA_LEAF_LOCKED)
            if _is_node(e):
                u64[(e >> 3) + _PARENT] = 0
            else:
                u64[b + _SLOTS] = XA_RETRY_ENTRY
            if leaf:
                self._retire_leaf(b << 3)
            else:
                self._retire(b << 3)

    def xa_cmpxchg(self, index: int, old: int, entry: int) -> int:
        """Store entry only if the current entry is old; return the current entry."""
        cur = self.xa_load(index)
        if cur != old:
            return cur
        r = self.xa_store(index, entry)
        return r if r < 0 else cur

    # ------------------------------------------------------------------ marks
    def xa_set_mark(self, index: int, mark: int) -> None:
        """xa_set_mark(): mark a present entry, and every ancestor up to xa_flags."""
        if not 0 <= mark < XA_MAX_MARKS:
            raise ValueError(f"xa_set_mark: mark {mark}: allowed 0..{XA_MAX_MARKS - 1}")
        u64 = self._u64
        head = u64[self._hw]
        if not _is_node(head):
            if not index and head:
                u64[self._fw] |= XA_FLAGS_MARK(mark)
            return
        path = self._walk(index)
        if path is None or not u64[path[-1][0] + _SLOTS + path[-1][1]]:
            return
        for b, o in reversed(path):
            w = b + _MARKS + mark
            if u64[w] >> o & 1:
                return
            u64[w] |= 1 << o
        u64[self._fw] |= XA_FLAGS_MARK(mark)

    def xa_clear_mark(self, index: int, mark: int) -> None:
        if not 0 <= mark < XA_MAX_MARKS:
            raise ValueError(f"xa_clear_mark: mark {mark}: allowed 0..{XA_MAX_MARKS - 1}")
        head = self._u64[self._hw]
        if not _is_node(head):
            if not index:
                self._u64[self._fw] &= ~XA_FLAGS_MARK(mark)
            return
        path = self._walk(index)
        if path is not None:
            self._clear_mark_path(path, mark)

    def _clear_mark_path(self, path: list[tuple[int, int]], mark: int) -> None:
        u64 = self._u64
        for b, o in reversed(path):
            w = b + _MARKS + mark
            if not u64[w] >> o & 1:
                return
            u64[w] &= ~(1 << o)
            if u64[w]:
                return
        u64[self._fw] &= ~XA_FLAGS_MARK(mark)

    # ------------------------------------------------------------------ whole array
    def _nodes(self) -> Iterator[tuple[int, int, int, int, int]]:
        """Every node as (off, shift, base index, parent off, offset in parent), pre-order."""
        u64 = self._u64
        head = u64[self._hw]
        if not _is_node(head):
            return
        stack = [(head - 2, u64[head >> 3] & 0xFF, 0, 0, 0)]
        while stack:
            off, shift, base, parent, offset = stack.pop()
            yield off, shift, base, parent, offset
            if shift:
                b = off >> 3
                for o in range(XA_CHUNK_SIZE - 1, -1, -1):
                    e = u64[b + _SLOTS + o]
                    if _is_node(e):
                        stack.append((e - 2, shift - XA_CHUNK_SHIFT, base + (o << shift), off, o))

    def xa_nr_nodes(self) -> int:
        return sum(1 for _ in self._nodes())

    def xa_count(self) -> int:
        """Present entries (walks every node)."""
        u64 = self._u64
        head = u64[self._hw]
        if not _is_node(head):
            return 1 if head else 0
        return sum(u64[off >> 3] >> 16 & 0xFF for off, shift, *_ in self._nodes() if not shift)

    def xa_destroy(self, callback: Callable[[int, int], None] | None = None) -> None:
        """xa_destroy(): empty the array; callback(index, entry) for every entry first."""
        u64 = self._u64
        head = u64[self._hw]
        nodes = list(self._nodes())
        self._lock_leaves(nodes)
        if callback is not None:
            if head and not _is_node(head):
                callback(0, head)
            for off, shift, base, _, _ in nodes:
                if not shift:
                    for o in range(XA_CHUNK_SIZE):
                        e = u64[(off >> 3) + _SLOTS + o]
                        if e:
                            callback(base + o, e)
        u64[self._fw] &= ~_ALL_MARKS
        self._publish(self._hw, 0)
        self._retire_all(nodes)

    def _lock_leaves(self, nodes: list[tuple[int, int, int, int, int]]) -> None:
        for off, shift, *_ in nodes:
            if not shift:
                self._leaf_lock(off >> 3)

    def _retire_all(self, nodes: list[tuple[int, int, int, int, int]]) -> None:
        for off, shift, *_ in nodes:
            if shift:
                self._retire(off)
            else:
                self._retire_leaf(off)

    def xa_drain(self) -> list[tuple[int, int]]:
        """xa_destroy() that returns what the array held, [(index, entry)] in index
        order, each leaf's slots read in one slice (an object's last put empties its
        whole tree: ~35 -> ~10 bytecodes an entry against the callback)."""
        u64 = self._u64
        head = u64[self._hw]
        nodes = list(self._nodes())
        self._lock_leaves(nodes)
        got: list[tuple[int, int]] = []
        if head and not _is_node(head):
            got.append((0, head))
        for off, shift, base, _, _ in nodes:
            if not shift:
                b = (off >> 3) + _SLOTS
                got += [(base + o, e) for o, e in enumerate(u64[b : b + XA_CHUNK_SIZE].tolist()) if e]
        u64[self._fw] &= ~_ALL_MARKS
        self._publish(self._hw, 0)
        self._retire_all(nodes)
        return got

    def xa_repair(self) -> tuple[int, list[int]]:
        """XA2 and XA3 made true again after a writer died between two of its stores:
        a slot's and its node's count (xa_store, xa_insert, xa_erase, xa_erase_range:
        one count off, nr_values too when the entry changed kind), an unlink and its
        parent's count (xas_delete_node), a new top and its children's parent words
        (xas_expand, xas_shrink).  Every node's count, nr_values, offset and parent word
        are rewritten from the slots that reach it, children before parents; a node
        left with no slot in use is unlinked as xas_delete_node would (its parent's
        slot and mark bits cleared, or the head) and marked retired, but not freed:
        the caller frees it once no reader can hold it (a recovery's orphan sweep).
        The tree is not shrunk again (XA6).  Only for a caller that holds the array's
        lock on the dead writer's behalf (lock-free readers may run: each change is one
        store, readers never read counts), or with the world stopped.  A reference that
        is no node of this array (misaligned, outside the arena, a wrong shift, seen
        twice) is not followed: the checker names it.  Returns (nodes rewritten, nodes
        unlinked)."""
        u64, size = self._u64, self.arena.size
        head = u64[self._hw]
        if not _is_node(head):
            return 0, []
        order: list[tuple[int, int, int]] = []           # (node word, parent word, slot), pre-order
        seen: set[int] = set()
        stack = [(head >> 3, 0, 0, -1)]
        while stack:
            b, pb, slot, want = stack.pop()
            off = b << 3
            shift = u64[b] & 0xFF if off + XA_NODE_SIZE <= size else -1
            if (off in seen or off % XA_NODE_ALIGN or off <= 4096 or shift % XA_CHUNK_SHIFT or shift >= 64
                    or (want >= 0 and shift != want)):
                continue
            seen.add(off)
            order.append((b, pb, slot))
            if shift:
                for o, e in enumerate(u64[b + _SLOTS : b + _SLOTS + XA_CHUNK_SIZE].tolist()):
                    if _is_node(e):
                        stack.append((e >> 3, b, o, shift - XA_CHUNK_SHIFT))
        fixed, gone = 0, []
        for b, pb, slot in reversed(order):               # a child's unlink before its parent's count
            used = [e for e in u64[b + _SLOTS : b + _SLOTS + XA_CHUNK_SIZE].tolist() if e]
            if not used:
                if pb:
                    self._publish(pb + _SLOTS + slot, 0)
                    for m in range(XA_MAX_MARKS):
                        u64[pb + _MARKS + m] &= ~(1 << slot) & ULONG_MAX
                else:
                    u64[self._fw] &= ~_ALL_MARKS
                    self._publish(self._hw, 0)
                u64[b + _ARRAY] = XA_RCU_FREE
                gone.append(b << 3)
                continue
            w = u64[b]
            info = (w & ~0xFFFF_FF00 & ULONG_MAX) | slot << 8 | len(used) << 16 | sum(e & 1 for e in used) << 24
            if info != w or u64[b + _PARENT] != pb << 3:
                u64[b] = info
                u64[b + _PARENT] = pb << 3
                fixed += 1
        return fixed, gone

    def xa_dump(self) -> str:
        u64 = self._u64
        lines = [f"xarray({self.root_off:#x}) flags {u64[self._fw]:#x} head {u64[self._hw]:#x}"]
        for off, shift, base, _, offset in self._nodes():
            b = off >> 3
            info = u64[b]
            present = [o for o in range(XA_CHUNK_SIZE) if u64[b + _SLOTS + o]]
            lines.append(f"node {off:#x} shift {shift} base {base:#x} offset {offset} count {info >> 16 & 0xFF} "
                         f"values {info >> 24 & 0xFF} marks {[hex(u64[b + _MARKS + m]) for m in range(3)]}")
            if not shift:
                lines.extend(f"  [{base + o:#x}] -> {u64[b + _SLOTS + o]:#x}" for o in present)
        return "\n".join(lines)

    def xa_validate(self) -> list[str]:
        """Check XA1..XA6 (module docstring); return the violations (none: [])."""
        u64, size = self._u64, self.arena.size
        errs: list[str] = []
        flags, head = u64[self._fw], u64[self._hw]
        if not _is_node(head):
            if head & 3 == 2:
                errs.append(f"XA1 xa_head {head:#x} is an internal entry but not a node")
            for m in range(XA_MAX_MARKS):
                if flags & XA_FLAGS_MARK(m) and not head:
                    errs.append(f"XA5 xa_flags has mark {m} but the array is empty")
            return errs
        seen: set[int] = set()

        def check(off: int, shift: int, parent: int, offset: int, depth: int) -> list[int]:
            """Validate the subtree; return its per-mark 'any bit set'."""
            where = f"node {off:#x} (shift {shift})"
            if off in seen or off & (XA_NODE_ALIGN - 1) or off + XA_NODE_SIZE > size or depth > 11:
                errs.append(f"XA1 {where}: repeated, misaligned, outside the arena or too deep")
                return [0, 0, 0]
            seen.add(off)
            b = off >> 3
            info = u64[b]
            if info & 0xFF != shift or shift % XA_CHUNK_SHIFT or shift > _MAX_SHIFT:
                errs.append(f"XA1 {where}: shift byte {info & 0xFF}, expected {shift}")
                return [0, 0, 0]
            if u64[b + _ARRAY] != self.root_off:
                errs.append(f"XA1 {where}: array word {u64[b + _ARRAY]:#x}, expected {self.root_off:#x}")
            if u64[b + _PARENT] != parent or info >> 8 & 0xFF != offset:
                errs.append(f"XA2 {where}: parent {u64[b + _PARENT]:#x} offset {info >> 8 & 0xFF}, "
                            f"expected {parent:#x} offset {offset}")
            count = values = 0
            marks = [u64[b + _MARKS + m] for m in range(XA_MAX_MARKS)]
            for o in range(XA_CHUNK_SIZE):
                e = u64[b + _SLOTS + o]
                if not e:
                    for m in range(XA_MAX_MARKS):
                        if marks[m] >> o & 1:
                            errs.append(f"XA5 {where}: mark {m} set on empty slot {o}")
                    continue
                count += 1
                if shift:
                    if not _is_node(e) or e & (XA_NODE_ALIGN - 1) != 2:
                        errs.append(f"XA4 {where}: slot {o} holds {e:#x}, not a node")
                        continue
                    sub = check(e - 2, shift - XA_CHUNK_SHIFT, off, o, depth + 1)
                    for m in range(XA_MAX_MARKS):
                        if bool(marks[m] >> o & 1) != bool(sub[m]):
                            errs.append(f"XA5 {where}: mark {m} bit {o} is {marks[m] >> o & 1}, child has "
                                        f"{'some' if sub[m] else 'none'}")
                else:
                    if e & 3 == 2:
                        errs.append(f"XA4 {where}: slot {o} holds internal entry {e:#x}")
                    values += e & 1
            if info >> 16 & 0xFF != count or info >> 24 & 0xFF != values:
                errs.append(f"XA3 {where}: count {info >> 16 & 0xFF} nr_values {info >> 24 & 0xFF}, "
                            f"slots say {count} / {values}")
            if not count:
                errs.append(f"XA3 {where}: empty node in the tree")
            if info & XA_LEAF_LOCKED:
                errs.append(f"XA3 {where}: leaf lock held at a quiescent point")
            return marks

        top = head - 2
        if top & (XA_NODE_ALIGN - 1) or top + XA_NODE_SIZE > size:
            errs.append(f"XA1 xa_head {head:#x} names no node in the arena")
            return errs
        tshift = u64[top >> 3] & 0xFF
        marks = check(top, tshift, 0, 0, 0)
        for m in range(XA_MAX_MARKS):
            if bool(flags & XA_FLAGS_MARK(m)) != bool(marks[m]):
                errs.append(f"XA5 xa_flags mark {m} is {bool(flags & XA_FLAGS_MARK(m))}, top node has "
                            f"{'some' if marks[m] else 'none'}")
        tb = top >> 3
        e0 = u64[tb + _SLOTS]
        if u64[tb] >> 16 & 0xFF == 1 and e0 and (_is_node(e0) or not tshift):
            errs.append(f"XA6 top node {top:#x} holds only slot 0: not shrunk")
        return errs
