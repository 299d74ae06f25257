"""XArray (provisional): a radix tree of 64-slot nodes in the arena.

Models: lib/xarray.c's shape (XA_CHUNK_SHIFT 6, nodes with shift and count, internal
entries tagged 0b10, value entries with bit 0 set) without marks.  Unit: an index (u64),
an entry (a non-zero u64 whose low two bits are not 0b10), a node of XA_NODE_WORDS words.

Root record (XA_ROOT_WORDS u64 at the caller's offset): word 0 = 0 (empty) or the root
node reference (node offset | 2).  Node: w0 = shift | count << 8, w1 = parent reference,
w2..w65 = slots.  Writers are serialised by the caller; readers are lock-free: a new
node is written whole before the one store that publishes it, removed nodes go to
rcu_free_node, and a reader bounds its walk and treats garbage as "not present".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["XArray", "XA_ROOT_WORDS", "XA_NODE_WORDS", "xa_mk_value", "xa_is_value", "xa_to_value"]

XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_ROOT_WORDS = 2
XA_NODE_WORDS = 2 + XA_CHUNK_SIZE
_SLOTS = 2
ENOMEM = 12


def xa_mk_value(v: int) -> int:
    return (v << 1) | 1


def xa_is_value(e: int) -> bool:
    return bool(e & 1)


def xa_to_value(e: int) -> int:
    return e >> 1


class XArray:
    """Handle with the tree operations, every one taking the root record's offset."""

    def __init__(self, arena: Any, alloc_node: Callable[[], int], free_node: Callable[[int], None],
                 rcu_free_node: Callable[[int], None]) -> None:
        q, u8 = arena.u64, arena.u8
        zero = bytes(XA_NODE_WORDS * 8)
        store64 = arena.atomic.store64
        size = arena.size
        mask = XA_CHUNK_SIZE - 1

        def load(root: int, index: int) -> int:
            e = q[root >> 3]
            for _ in range(12):
                if e & 3 != 2:
                    return e if index == 0 or not e else 0
                n = (e & ~3) >> 3
                if n << 3 >= size:
                    return 0
                shift = q[n] & 0xFF
                off = index >> shift
                if off > mask:
                    return 0
                e = q[n + _SLOTS + off]
                index &= (1 << shift) - 1
                if not shift:
                    return e if e & 3 != 2 else 0
            return 0

        def new_node(shift: int, parent: int, prealloc: list[int]) -> int:
            o = prealloc.pop()
            n = o >> 3
            u8[o : o + XA_NODE_WORDS * 8] = zero
            q[n] = shift
            q[n + 1] = parent
            return o

        def root_shift(root: int) -> int:
            e = q[root >> 3]
            if not e:
                return -1
            return q[(e & ~3) >> 3] & 0xFF

        def needed(root: int, index: int) -> int:
            """Nodes a store at index must allocate (growth + missing levels)."""
            sh = root_shift(root)
            levels = 0
            top = max(sh, 0)
            while (index >> top) > mask:
                top += XA_CHUNK_SHIFT
            if sh < 0:
                return top // XA_CHUNK_SHIFT + 1
            levels += (top - sh) // XA_CHUNK_SHIFT
            e = q[root >> 3]
            n = (e & ~3) >> 3
            s = sh
            idx = index
            # existing path from the (current) root
            if top == sh:
                while s > 0:
                    c = q[n + _SLOTS + ((idx >> s) & mask)]
                    if not c:
                        return levels + s // XA_CHUNK_SHIFT
                    n = (c & ~3) >> 3
                    s -= XA_CHUNK_SHIFT
                return levels
            return levels + top // XA_CHUNK_SHIFT     # the new path diverges at the new root

        def store(root: int, index: int, entry: int) -> int:
            """Store entry at index; returns the old entry, or -ENOMEM (tree unchanged)."""
            if not entry:
                return erase(root, index)
            k = needed(root, index)
            pre: list[int] = []
            for _ in range(k):
                o = alloc_node()
                if o < 0:
                    for p in pre:
                        free_node(p)
                    return -ENOMEM
                pre.append(o)
            ri = root >> 3
            if not q[ri]:
                top = 0
                while (index >> top) > mask:
                    top += XA_CHUNK_SHIFT
                o = new_node(top, 0, pre)
                store64(root, o | 2)
            # grow until the root covers index
            while (index >> (q[(q[ri] & ~3) >> 3] & 0xFF)) > mask:
                old = q[ri]
                sh = (q[(old & ~3) >> 3] & 0xFF) + XA_CHUNK_SHIFT
                o = new_node(sh, 0, pre)
                q[(o >> 3) + _SLOTS] = old
                q[(o >> 3)] = sh | 1 << 8
                q[((old & ~3) >> 3) + 1] = o | 2
                store64(root, o | 2)
            n = (q[ri] & ~3) >> 3
            while True:
                sh = q[n] & 0xFF
                slot = n + _SLOTS + ((index >> sh) & mask)
                if not sh:
                    old = q[slot]
                    if not old:
                        q[n] += 1 << 8
                    q[slot] = entry
                    return old
                c = q[slot]
                if not c:
                    o = new_node(sh - XA_CHUNK_SHIFT, (n << 3) | 2, pre)
                    q[n] += 1 << 8
                    store64(slot << 3, o | 2)
                    c = o | 2
                n = (c & ~3) >> 3

        def erase(root: int, index: int) -> int:
            ri = root >> 3
            if not q[ri]:
                return 0
            path = []
            n = (q[ri] & ~3) >> 3
            while True:
                sh = q[n] & 0xFF
                off = index >> sh
                if off > mask:
                    return 0
                slot = n + _SLOTS + (off & mask)
                path.append((n, slot))
                if not sh:
                    break
                c = q[slot]
                if not c:
                    return 0
                index &= (1 << sh) - 1
                n = (c & ~3) >> 3
            n, slot = path[-1]
            old = q[slot]
            if not old:
                return 0
            q[slot] = 0
            # free emptied nodes upwards
            for depth in range(len(path) - 1, -1, -1):
                n, slot = path[depth]
                if depth < len(path) - 1:
                    q[slot] = 0
                q[n] -= 1 << 8
                if q[n] >> 8:
                    break
                if depth == 0:
                    store64(root, 0)
                rcu_free_node(n << 3)
            return old

        def items_sorted(root: int, first: int = 0, last: int = (1 << 64) - 1) -> list[tuple[int, int]]:
            out = []
            e = q[root >> 3]
            if not e:
                return out

            def walk(n: int, base: int) -> None:
                sh = q[n] & 0xFF
                span = 1 << sh
                for off in range(XA_CHUNK_SIZE):
                    c = q[n + _SLOTS + off]
                    if not c:
                        continue
                    lo = base + off * span
                    if lo + span - 1 < first or lo > last:
                        continue
                    if sh:
                        walk((c & ~3) >> 3, lo)
                    else:
                        out.append((lo, c))

            walk((e & ~3) >> 3, 0)
            return out

        def drain(root: int) -> list[tuple[int, int]]:
            """Every entry, and the tree emptied: its nodes go to rcu_free_node."""
            out = items_sorted(root)
            e = q[root >> 3]
            if e:
                nodes = []

                def collect(n: int) -> None:
                    nodes.append(n)
                    if q[n] & 0xFF:
                        for off in range(XA_CHUNK_SIZE):
                            c = q[n + _SLOTS + off]
                            if c:
                                collect((c & ~3) >> 3)

                collect((e & ~3) >> 3)
                store64(root, 0)
                for n in nodes:
                    rcu_free_node(n << 3)
            return out

        self.load, self.store, self.erase, self.items, self.drain = load, store, erase, items_sorted, drain

