"""XArray (lib/xarray.py): against a dict model (hypothesis), marks and their propagation,
value entries, growth and shrink, ENOMEM at every allocation, the RCU publication rules,
robust lock-free readers, the XA invariants broken on purpose, and lock-free readers in
other processes against a writer (QSBR grace)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.lib.xarray import (
    ULONG_MAX,
    XA_NODE_ALIGN,
    XA_NODE_SIZE,
    XA_RETRY_ENTRY,
    XArray,
    _make_readers,
    xa_init,
    xa_is_value,
    xa_mk_value,
    xa_to_value,
)
from tests import tree_helpers as H
from tests.tree_helpers import Interleave, NodeCache, snapshot

EINVAL, ENOMEM = 22, 12
W = XA_NODE_SIZE // 8


@pytest.fixture
def env(machine: Callable[..., Arena]) -> Iterator[Callable[..., tuple[Arena, NodeCache, Callable[[], XArray]]]]:
    made: list[NodeCache] = []

    def factory(nr_pages: int = 4096) -> tuple[Arena, NodeCache, Callable[[], XArray]]:
        a = machine(slab=True, nr_pages=nr_pages, extra=[L.SectionSpec("treetest", 1 << 20)])
        nc = NodeCache(a, 0, "radix_tree_node", XA_NODE_SIZE, XA_NODE_ALIGN)
        made.append(nc)
        slot = iter(range(a.off("treetest") + 8192, a.off("treetest") + (1 << 20), 64))

        def make() -> XArray:
            root = next(slot)
            xa_init(a, root)
            return XArray(a, root, nc.alloc, nc.free, nc.rcu_free)

        return a, nc, make

    yield factory
    for nc in made:
        nc.close()


class Model:
    def __init__(self) -> None:
        self.d: dict[int, int] = {}
        self.marks: list[set[int]] = [set(), set(), set()]

    def store(self, i: int, e: int) -> int:
        old = self.d.get(i, 0)
        if e:
            self.d[i] = e
        else:
            self.d.pop(i, None)
            for m in self.marks:
                m.discard(i)
        return old

    def find(self, i: int, lim: int, mark: int | None) -> tuple[int, int] | None:
        ks = [k for k in self.d if i <= k <= lim and (mark is None or k in self.marks[mark])]
        return (min(ks), self.d[min(ks)]) if ks else None


def check_against(xa: XArray, m: Model, probes: list[int]) -> None:
    assert xa.xa_validate() == []
    assert list(xa.xa_for_each()) == sorted(m.d.items())
    for mark in range(3):
        assert xa.xa_marked(mark) == bool(m.marks[mark])
        assert [i for i, _ in xa.xa_for_each(mark=mark)] == sorted(m.marks[mark])
    for i in probes:
        assert xa.xa_load(i) == m.d.get(i, 0), hex(i)
        for mark in (None, 0, 2):
            lim = min(i + 5000, ULONG_MAX)
            assert xa.xa_find(i, lim, mark) == m.find(i, lim, mark), (hex(i), mark)
        assert [xa.xa_get_mark(i, k) for k in range(3)] == [i in s for s in m.marks]


# ---------------------------------------------------------------- basics
def test_head_entry_growth_and_shrink(env) -> None:
    _, nc, make = env()
    xa = make()
    assert xa.xa_load(0) == 0 and xa.xa_find(0) is None and xa.xa_count() == 0
    assert xa.xa_store(0, 0x1000) == 0 and xa.xa_nr_nodes() == 0      # a lone index-0 entry: the head
    xa.xa_set_mark(0, 1)
    assert xa.xa_get_mark(0, 1) and xa.xa_marked(1)
    assert xa.xa_store(ULONG_MAX, xa_mk_value(7)) == 0                 # grows to shift 60: 11 levels
    assert xa.xa_nr_nodes() == 21 and xa.xa_load(ULONG_MAX) == xa_mk_value(7)
    assert xa.xa_get_mark(0, 1) and not xa.xa_get_mark(ULONG_MAX, 1) and xa.xa_validate() == []
    assert xa_is_value(xa.xa_load(ULONG_MAX)) and xa_to_value(xa.xa_load(ULONG_MAX)) == 7
    assert xa.xa_erase(ULONG_MAX) == xa_mk_value(7)
    assert xa.xa_nr_nodes() == 0 and xa.xa_load(0) == 0x1000 and xa.xa_get_mark(0, 1)   # shrunk back
    nc.grace()
    assert not nc.live and xa.xa_validate() == []
    assert xa.xa_store(5, xa_mk_value(1)) == 0                         # 0b11: a value entry
    assert xa.xa_store(6, 0x402) == -EINVAL and xa.xa_store(1 << 64, 4) == -EINVAL
    assert xa.xa_cmpxchg(9, 0, 0x2000) == 0 and xa.xa_load(9) == 0x2000
    assert xa.xa_cmpxchg(9, 0x1234, 0x3000) == 0x2000 and xa.xa_load(9) == 0x2000
    assert xa.xa_cmpxchg(9, 0x2000, 0) == 0x2000 and xa.xa_load(9) == 0
    seen: list[tuple[int, int]] = []
    xa.xa_destroy(lambda i, e: seen.append((i, e)))
    assert sorted(seen) == [(0, 0x1000), (5, 3)] and xa.xa_load(0) == 0 and not xa.xa_marked(1)
    nc.grace()
    assert not nc.live
    xa.xa_store(70, 4)
    assert "[0x46] -> 0x4" in xa.xa_dump()


def test_marks_propagate_and_clear(env) -> None:
    _, _, make = env()
    xa = make()
    for i in (1, 64, 4095, 4096, 300_000):
        xa.xa_store(i, i << 2)
    xa.xa_set_mark(4096, 0)
    xa.xa_set_mark(300_000, 0)
    xa.xa_set_mark(12345, 0)                      # absent: no mark
    assert [i for i, _ in xa.xa_for_each(mark=0)] == [4096, 300_000]
    assert xa.xa_find(4097, ULONG_MAX, 0) == (300_000, 300_000 << 2)
    xa.xa_clear_mark(4096, 0)
    assert xa.xa_marked(0) and xa.xa_find(0, 299_999, 0) is None
    xa.xa_erase(300_000)                          # erasing clears its marks up to xa_flags
    assert not xa.xa_marked(0) and xa.xa_validate() == []
    with pytest.raises(ValueError):
        xa.xa_set_mark(1, 3)


# ---------------------------------------------------------------- model-based (hypothesis)
IDX = st.one_of(st.integers(0, 200), st.integers(0, 1 << 20), st.sampled_from([0, 63, 64, 4095, 4096, ULONG_MAX]),
                st.integers(0, ULONG_MAX))
ENTRY = st.one_of(st.integers(1, (1 << 62) - 1).map(lambda x: x << 2), st.integers(0, (1 << 63) - 1).map(xa_mk_value))
OPS = st.lists(st.one_of(
    st.tuples(st.just("store"), IDX, ENTRY),
    st.tuples(st.just("erase"), IDX, st.just(0)),
    st.tuples(st.just("erase_present"), st.integers(0, 1000), st.just(0)),
    st.tuples(st.just("set_mark"), st.integers(0, 1000), st.integers(0, 2)),
    st.tuples(st.just("clear_mark"), st.integers(0, 1000), st.integers(0, 2)),
    st.tuples(st.just("cmpxchg"), IDX, ENTRY),
    st.tuples(st.just("bulk"), st.integers(0, 1 << 16), st.integers(1, 200)),
), min_size=10, max_size=60)


def test_random_ops_match_model(env) -> None:
    _, nc, make = env()

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=OPS, seed=st.integers(0, 1 << 30))
    def run(ops: list[tuple[str, int, int]], seed: int) -> None:
        xa, m, rnd = make(), Model(), random.Random(seed)
        for op, i, x in ops:
            keys = sorted(m.d)
            if op == "store":
                assert xa.xa_store(i, x) == m.store(i, x)
            elif op == "erase":
                assert xa.xa_erase(i) == m.store(i, 0)
            elif op == "erase_present" and keys:
                k = keys[i % len(keys)]
                assert xa.xa_erase(k) == m.store(k, 0)
            elif op == "set_mark" and keys:
                k = keys[i % len(keys)]
                xa.xa_set_mark(k, x)
                m.marks[x].add(k)
            elif op == "clear_mark" and keys:
                k = keys[i % len(keys)]
                xa.xa_clear_mark(k, x)
                m.marks[x].discard(k)
            elif op == "cmpxchg":
                old = rnd.choice((m.d.get(i, 0), 0x4444))
                cur = m.d.get(i, 0)
                assert xa.xa_cmpxchg(i, old, x) == cur
                if cur == old:
                    m.store(i, x)
            elif op == "bulk":
                for k in range(x):
                    assert xa.xa_store(i + 3 * k, (k + 1) << 3) == m.store(i + 3 * k, (k + 1) << 3)
            check_against(xa, m, [rnd.randrange(1 << 20) for _ in range(4)] + [0, i, ULONG_MAX] + keys[:3])
        assert xa.xa_count() == len(m.d) and xa.xa_nr_nodes() == len(nc.live)
        xa.xa_destroy()
        nc.grace()
        assert not nc.live

    run()


def test_dense_range_depth3_and_back(env) -> None:
    """2^16 + 1 entries (shift 12 top, 1,000+ nodes), erased in random order."""
    _, nc, make = env(nr_pages=8192)
    xa, rnd = make(), random.Random(4)
    keys = [*range(0, 1 << 17, 2), 1 << 17]
    for i in keys:
        assert xa.xa_store(i, xa_mk_value(i)) == 0
    assert xa.xa_count() == len(keys) and xa.xa_validate() == []
    for i in rnd.sample(keys, 500):
        xa.xa_set_mark(i, 2)
    rnd.shuffle(keys)
    for n, i in enumerate(keys):
        assert xa.xa_erase(i) == xa_mk_value(i)
        if n % 5000 == 0:
            assert xa.xa_validate() == []
            nc.grace()
    assert xa.xa_empty() and not xa.xa_marked(2)
    nc.grace()
    assert not nc.live


# ---------------------------------------------------------------- ENOMEM at every allocation
def state(a: Arena, xa: XArray) -> dict[int, list[int]]:
    return snapshot(a, xa.root_off, [n[0] for n in xa._nodes()], XA_NODE_SIZE)


def test_enomem_at_every_allocation_leaves_array_unchanged(env) -> None:
    a, nc, make = env()
    for setup in ([], [0], [5, 70], list(range(0, 5000, 7))):
        xa = make()
        for i in setup:
            xa.xa_store(i, (i + 1) << 2)
        nc.grace()
        for i in (0, 3, 64, 4096, 1 << 30, ULONG_MAX, 262_143):
            for fail_in in range(16):
                before, live = state(a, xa), set(nc.live)
                nc.fail_in = fail_in
                r = xa.xa_store(i, 0xABC << 2)
                nc.fail_in = None
                if r == -ENOMEM:
                    assert state(a, xa) == before and nc.live == live, (setup[:3], i, fail_in)
                    continue
                assert r >= 0 and xa.xa_load(i) == 0xABC << 2
                break
            assert xa.xa_validate() == []
        xa.xa_destroy()
        nc.grace()


# ---------------------------------------------------------------- the RCU publication rules
def test_writes_change_reachable_nodes_only_by_single_words(env) -> None:
    """Per store/erase: a node still in the tree changes at most one slot word, plus its
    count word, mark words and (the old top on growth) parent/offset; a retired node is
    unchanged but for its array word (and, shrunk at shift 0, slot 0 = XA_RETRY_ENTRY)."""
    a, nc, make = env()
    xa, rnd = make(), random.Random(8)
    for i in rnd.sample(range(1 << 14), 600):
        xa.xa_store(i, (i + 1) << 2)
    nc.grace()
    for step in range(400):
        nodes = [n[0] for n in xa._nodes()]
        before = snapshot(a, xa.root_off, nodes, XA_NODE_SIZE)
        nc.retired.clear()
        i = rnd.choice((rnd.randrange(1 << 14), rnd.randrange(1 << 22), 0, rnd.choice(sorted(xa_keys(xa)) or [0])))
        if rnd.random() < 0.5:
            xa.xa_store(i, (step + 1) << 4)
        else:
            xa.xa_erase(i)
        if rnd.random() < 0.3:
            xa.xa_set_mark(i, rnd.randrange(3))
        after = {n[0] for n in xa._nodes()}
        for off in nodes:
            w = a.u64[off >> 3: (off >> 3) + W].tolist()
            changed = [k for k in range(W) if w[k] != before[off][k]]
            slots = [k for k in changed if 5 <= k < 69]
            assert len(slots) <= 1 and set(changed) - set(slots) <= {0, 1, 2, 69, 70, 71}, changed
            if off in nc.retired:                        # emptied, or shrunk: then frozen
                assert w[2] == 1 and all(w[k] in (0, XA_RETRY_ENTRY) for k in slots), changed
            else:
                assert off in after and 2 not in changed
        nc.grace()
    assert xa.xa_validate() == []


def xa_keys(xa: XArray) -> list[int]:
    return [i for i, _ in xa.xa_for_each()]


# ---------------------------------------------------------------- readers never crash or hang
def test_readers_survive_garbage(env) -> None:
    a, _, make = env()
    xa = make()
    for i in range(0, 300_000, 97):
        xa.xa_store(i, (i + 1) << 2)
    top = xa._u64[xa._hw] - 2
    inner = next(n[0] for n in xa._nodes() if n[1] == 6)
    u64, hw, rnd = a.u64, xa._hw, random.Random(1)
    cases = [
        (inner | 2, lambda: u64.__setitem__((inner >> 3) + 5 + 3, inner | 2)),     # a cycle
        ((a.size + 4096) & ~63 | 2, None),                                      # past the arena
        ((1 << 62) | 2, None),
        (top | 2, lambda: u64.__setitem__(top >> 3, 0x05)),                     # shift not a multiple of 6
        (top | 2, lambda: [u64.__setitem__((top >> 3) + k, rnd.randrange(1 << 64)) for k in range(W)]),
    ]
    for head, corrupt in cases:
        if corrupt:
            corrupt()
        u64[hw] = head
        for i in (0, 1, 97 * 3, ULONG_MAX, rnd.randrange(1 << 64)):
            assert isinstance(xa.xa_load(i), int)
            r = xa.xa_find(i)
            assert r is None or len(r) == 2
            assert isinstance(xa.xa_get_mark(i, 0), bool)
        assert xa.xa_validate() != []
    u64[hw] = 0


def test_retry_entry_restarts_readers(env) -> None:
    """Forced interleaving: a reader loads the head (a shift-0 node), then the writer
    erases index 5 (xas_shrink: the head becomes the index-0 entry, slot 0 of the old node
    becomes XA_RETRY_ENTRY) and stores a new entry at 0; the reader, back in the retired
    node, meets the retry entry and restarts from the head: it returns the new entry,
    never an internal one."""
    a, nc, make = env()
    xa = make()
    xa.xa_store(0, 0x1000)
    xa.xa_store(5, 0x2000)
    old_top = a.u64[xa._hw] - 2

    def writer() -> None:
        assert xa.xa_erase(5) == 0x2000
        assert xa.xa_store(0, 0x3000) == 0x1000

    load = _make_readers(Interleave(a.u64, 1, writer), xa._hw)[0]
    assert load(0) == 0x3000
    assert a.u64[(old_top >> 3) + 5] == XA_RETRY_ENTRY and old_top in nc.quarantine
    assert xa.xa_validate() == []


# ---------------------------------------------------------------- invariants broken on purpose
def _corrupt(a: Arena, xa: XArray, how: str) -> None:
    u64 = a.u64
    nodes = list(xa._nodes())
    top = nodes[0][0] >> 3
    leaf = next(n for n in nodes if n[1] == 0)
    lb = leaf[0] >> 3
    first = next(o for o in range(64) if u64[lb + 5 + o])
    if how == "XA1":
        u64[lb + 2] = 0x1234                             # array word
    elif how == "XA2":
        u64[lb] ^= 1 << 8                                # offset in parent
    elif how == "XA3":
        u64[lb] += 1 << 16                               # count
    elif how == "XA4":
        u64[lb + 5 + first] = XA_RETRY_ENTRY             # an internal entry at shift 0
    elif how == "XA5":
        u64[lb + 69] |= 1 << first                       # mark not propagated
    elif how == "XA6":
        for o in range(1, 64):                           # top keeps only slot 0
            e = u64[top + 5 + o]
            u64[top + 5 + o] = 0
            if e:
                u64[top] -= 1 << 16


@pytest.mark.parametrize("xa_id", ["XA1", "XA2", "XA3", "XA4", "XA5", "XA6"])
def test_XA_invariant_violations_detected(env, xa_id: str) -> None:
    a, _, make = env()
    xa = make()
    for i in range(0, 20_000, 31):
        xa.xa_store(i, (i + 1) << 2)
    assert xa.xa_validate() == []
    _corrupt(a, xa, xa_id)
    errs = xa.xa_validate()
    assert any(e.startswith(xa_id) for e in errs), errs
    a.u64[xa._hw] = 0


def test_xa_repair_rebuilds_counts_and_parents_and_unlinks_emptied_nodes(env) -> None:
    """xa_repair after writers died between their stores: a fill's count one short, a
    kind change's nr_values one short, an erase's slot cleared with the count left (a
    leaf emptied that way), a growth's parent word not yet right.  Afterwards XA1-XA6
    hold, every entry is still there, the emptied leaf is unlinked and retired (not
    freed: the caller's), a second pass changes nothing, and erasing everything empties
    the array (the counts are exact: no node is deleted early or left behind)."""
    a, nc, make = env()
    xa = make()
    u64 = a.u64
    m = Model()
    for i in range(0, 40_000, 7):
        e = xa_mk_value(i) if i % 3 == 0 else (i + 1) << 2
        xa.xa_store(i, e)
        m.store(i, e)
    assert xa.xa_validate() == []
    leaves = [n for n in xa._nodes() if n[1] == 0]
    short, kind, emptied = (leaves[k][0] >> 3 for k in (1, 5, 9))
    mid = next(n for n in xa._nodes() if n[1] == 6)[0] >> 3
    u64[short] -= 1 << 16                                # a fill's count not added
    u64[kind] -= 1 << 24                                 # value count not added
    base = leaves[9][2]
    for o in range(64):                                  # an erase of each: slots cleared, count kept
        if u64[emptied + 5 + o]:
            u64[emptied + 5 + o] = 0
            m.store(base + o, 0)
    u64[mid + 1] = 0x40                                  # a parent word not yet rewritten
    assert xa.xa_validate() != []
    fixed, gone = xa.xa_repair()
    assert gone == [emptied << 3] and fixed == 3
    assert u64[emptied + 2] == 1                         # retired (XA_RCU_FREE), left to the caller
    assert xa.xa_validate() == []
    assert list(xa.xa_for_each()) == sorted(m.d.items())
    assert xa.xa_repair() == (0, [])
    nc.free(emptied << 3)
    for i in list(m.d):
        assert xa.xa_erase(i) == m.d.pop(i)
    assert xa.xa_empty() and xa.xa_validate() == []


# ---------------------------------------------------------------- lock-free readers, other processes
def test_lock_free_readers_against_writer(machine, spawn, soak) -> None:
    """As the maple tree's: one writer (stores and erases under a seqcount, growth and
    shrink, QSBR-delayed frees), two readers checking xa_load (linearizable) and xa_find
    (under an unchanged seqcount) against the logged model."""
    res = H.run_concurrent(machine, spawn, H.xa_writer, H.xa_reader, lambda a, root: xa_init(a, root),
                         nops=60_000 if soak else 8000, span=1 << 14)
    assert res["errors"] == 0 and res["freed"] > 0
    for rd in res["readers"]:
        assert rd["done"] == 1 and rd["crash"] == 0
        assert rd["bad"] == 0 and rd["garbage"] == 0, rd
        assert rd["exact"] > 100 and rd["linear"] > 10, rd
    a = res["arena"]
    assert XArray(a, a.off("treetest") + 2048).xa_validate() == []


# ---------------------------------------------------------------- the leaf lock (xa_insert_leaf)
EAGAIN, EBUSY = 11, 16


def _leaf_of(xa: XArray, index: int) -> int:
    path = xa._walk(index)
    assert path is not None
    return path[-1][0]


def test_insert_leaf_only_into_existing_leaves(env) -> None:
    _, _, make = env()
    xa = make()
    assert xa.xa_insert_leaf(5, 0x100) == -EAGAIN                # empty: no leaf
    xa.xa_store(130, 0x200)                                      # a shift-6 top, one leaf [128, 192)
    assert xa.xa_insert_leaf(131, 0x300) == 0
    assert xa.xa_insert_leaf(130, 0x400) == -EBUSY and xa.xa_load(130) == 0x200
    assert xa.xa_insert_leaf(5, 0x500) == -EAGAIN                # no leaf for [0, 64) yet
    assert xa.xa_insert_leaf(1 << 20, 0x600) == -EAGAIN          # beyond the top: growth
    assert xa.xa_insert_leaf(140, xa_mk_value(3)) == 0           # value entries count as values
    assert xa.xa_insert_leaf(141, 0x402) == -EINVAL              # internal entries never
    assert sorted(xa.xa_for_each()) == [(130, 0x200), (131, 0x300), (140, xa_mk_value(3))]
    assert xa.xa_validate() == []


def test_insert_leaf_waits_for_the_leaf_lock_and_backs_off_a_retired_leaf(env) -> None:
    """A held leaf lock stops the insert until it is released (the insert then reports
    that it waited); a leaf retired while the insert waited for it is not written: the
    insert answers -EAGAIN (build the path under the array's lock) and the entry is not
    lost in a node nobody can reach."""
    import threading
    import time

    a, _, make = env()
    xa = make()
    xa.xa_store(64 + 1, 0x100)
    xa.xa_store(200, 0x200)                                      # keeps the tree when 65's leaf goes
    b = _leaf_of(xa, 65)
    got: list[int] = []

    def inserter(idx: int, entry: int) -> None:
        got.append(xa.xa_insert_leaf(idx, entry))

    assert xa._leaf_lock(b) == 0
    t = threading.Thread(target=inserter, args=(66, 0x300))
    t.start()
    time.sleep(0.05)
    assert xa.xa_load(66) == 0 and not got                       # waiting, nothing written
    xa._leaf_unlock(b)
    t.join(10)
    assert got == [1] and xa.xa_load(66) == 0x300
    assert xa.xa_erase(66) == 0x300

    # retired under the waiter: the eraser already holds the leaf (its own hold stands in
    # for xa_erase's leaf_lock), empties it, and _retire_leaf releases the lock
    got.clear()
    assert xa._leaf_lock(b) == 0
    t = threading.Thread(target=inserter, args=(67, 0x400))
    t.start()
    time.sleep(0.05)
    real = xa._leaf_lock
    xa._leaf_lock = lambda _b: 0                                 # type: ignore[misc]
    try:
        assert xa.xa_erase(65) == 0x100
    finally:
        xa._leaf_lock = real                                     # type: ignore[misc]
    t.join(10)
    assert got == [-EAGAIN] and xa.xa_load(67) == 0
    assert a.u64[b + 2] == 1                                     # XA_RCU_FREE
    assert xa.xa_validate() == []


def test_insert_leaf_races_with_locked_writers(env) -> None:
    """Two threads insert through xa_insert_leaf (falling back to xa_insert under the
    array's lock for a missing leaf) while a third, under the array's lock, erases
    ranges and single entries (emptying leaves, deleting and shrinking) and stores:
    every entry an inserter put in is, at the end, either in the array or erased by the
    third -- never both, never neither -- and the tree is well formed with no leaf
    locked."""
    import sys
    import threading

    _, _, make = env(nr_pages=8192)
    xa = make()
    lock = threading.Lock()
    inserted: list[set[tuple[int, int]]] = [set(), set()]
    erased: set[tuple[int, int]] = set()
    paths = {"leaf": 0, "locked": 0, "waited": 0}
    span, n = 1024, 3000
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def ins(k: int) -> None:
        rnd = random.Random(k)
        for j in range(n):
            idx, e = rnd.randrange(span), ((k + 1) << 40 | j + 1) << 2
            r = xa.xa_insert_leaf(idx, e)
            if r == -EAGAIN:
                with lock:
                    r = xa.xa_insert(idx, e)
                paths["locked"] += r == 0
            else:
                paths["leaf"] += r in (0, 1)
                paths["waited"] += r == 1
            if r in (0, 1):
                inserted[k].add((idx, e))

    def eraser() -> None:
        rnd = random.Random(9)
        for j in range(n // 4):
            with lock:
                c = rnd.random()
                if c < 0.4:
                    lo = rnd.randrange(span)
                    got, _ = xa.xa_erase_range(lo, lo + rnd.randrange(1, 200), rnd.choice((1, 5, 31, 1000)))
                    erased.update(got)
                elif c < 0.8:
                    i = rnd.randrange(span)
                    e = xa.xa_erase(i)
                    if e:
                        erased.add((i, e))
                else:
                    i = rnd.randrange(span)
                    e = xa.xa_store(i, (3 << 40 | j + 1) << 2)
                    if e:
                        erased.add((i, e))

    try:
        ts = [threading.Thread(target=ins, args=(0,)), threading.Thread(target=ins, args=(1,)),
              threading.Thread(target=eraser)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
    finally:
        sys.setswitchinterval(old)
    present = {(i, e) for i, e in xa.xa_for_each() if e >> 42 != 3}
    ours = inserted[0] | inserted[1]
    assert present & erased == set()
    assert ours == (present | {p for p in erased if p[1] >> 42 != 3}), "an insert was lost (or invented)"
    assert xa.xa_validate() == []
    # both paths ran (how often the erases send an insert to the locked path depends on
    # the host's scheduling: 16 of 3000 in a full-suite run on the 2-core box, so only
    # "ran" is asked; the initial inserts always take it, to allocate the tree's nodes)
    assert paths["leaf"] > 200 and paths["locked"] > 0, paths
    assert len(erased) > 200


def test_no_leaf_locks_handle(env) -> None:
    """leaf_locks=False (robust mode): no leaf lock is ever taken, xa_insert_leaf always
    sends the caller to the array's lock, and every other writer works as before."""
    a, nc, _ = env()
    root = a.off("treetest") + 4096
    xa_init(a, root)
    xa = XArray(a, root, nc.alloc, nc.free, nc.rcu_free, leaf_locks=False)
    xa.xa_store(130, 0x200)
    assert xa.xa_insert_leaf(131, 0x300) == -EAGAIN and xa.xa_load(131) == 0
    assert xa.xa_insert(131, 0x300) == 0
    b = _leaf_of(xa, 131)
    a.u64[b] |= 1 << 32                          # a stray bit: nobody waits for it here
    assert xa.xa_store(132, 0x400) == 0 and xa.xa_erase(131) == 0x300
    a.u64[b] &= ~(1 << 32)
    got, _ = xa.xa_erase_range(0, 1000, 100)
    assert got == [(130, 0x200), (132, 0x400)] and xa.xa_empty()
    assert xa.xa_validate() == []


def test_a_node_is_unreachable_before_it_is_retired(env) -> None:
    """Erase (one entry, and a range) unlinks every node it empties -- its parent's slot
    or the head cleared -- before retiring it: a retire may run RCU callbacks (frees) at
    once, and in robust mode a CPU may die inside those, so the tree must never point at
    a retired node.  The rcu_free_node callback checks it at every retire."""
    _a, nc, make = env()
    xa = make()
    seen: list[int] = []

    def checking_rcu_free(off: int) -> None:
        assert all(n != off for n, *_ in xa._nodes()), f"node {off:#x} retired while still in the tree"
        seen.append(off)
        nc.rcu_free(off)

    xa.rcu_free_node = checking_rcu_free
    idx = [i * 64 for i in range(200)] + [1 << 20, (1 << 20) + 1, 1 << 30]
    for i in idx:
        assert xa.xa_store(i, xa_mk_value(i)) == 0
    for i in idx[::2]:
        assert xa.xa_erase(i) == xa_mk_value(i)
    got, _ = xa.xa_erase_range(0, ULONG_MAX, 1 << 20)
    assert sorted(i for i, _ in got) == sorted(idx[1::2])
    assert xa.xa_empty() and seen
