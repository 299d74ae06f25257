"""Maple tree (lib/maple_tree.py): against a sorted-list model of ranges (hypothesis and
seeded runs up to height 5), gap searches, ENOMEM at every allocation, the RCU
publication rules, robustness of lock-free readers on garbage, the MT invariants broken
on purpose, and lock-free readers in other processes against a writer (QSBR grace)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.lib.maple_tree import (
    MAPLE_NODE_SIZE,
    MT_FLAGS_ALLOC_RANGE,
    MT_FLAGS_USE_RCU,
    ULONG_MAX,
    MapleTree,
    _make_readers,
    mt_init,
)
from tests import tree_helpers as H
from tests.tree_helpers import Interleave, NodeCache, RangeModel, snapshot

EINVAL, EBUSY, EEXIST, ENOMEM = 22, 16, 17, 12
RCU_ALLOC = MT_FLAGS_ALLOC_RANGE | MT_FLAGS_USE_RCU


@pytest.fixture
def env(machine: Callable[..., Arena]) -> Iterator[Callable[..., tuple[Arena, NodeCache, Callable[..., MapleTree]]]]:
    """A SLUB machine with a "treetest" section; make(flags) -> a new empty tree handle."""
    made: list[NodeCache] = []

    def factory(nr_pages: int = 4096) -> tuple[Arena, NodeCache, Callable[..., MapleTree]]:
        a = machine(slab=True, nr_pages=nr_pages, extra=[L.SectionSpec("treetest", 1 << 20)])
        nc = NodeCache(a, 0, "maple_node", MAPLE_NODE_SIZE, MAPLE_NODE_SIZE)
        made.append(nc)
        slot = iter(range(a.off("treetest") + 8192, a.off("treetest") + (1 << 20), 64))

        def make(flags: int = RCU_ALLOC) -> MapleTree:
            root = next(slot)
            mt_init(a, root, flags)
            return MapleTree(a, root, nc.alloc, nc.free, nc.rcu_free)

        return a, nc, make

    yield factory
    for nc in made:
        nc.close()


def check_against(t: MapleTree, m: RangeModel, rnd: random.Random, probes: list[int]) -> None:
    assert t.mt_validate() == []
    assert list(t.mt_for_each()) == m.items()
    for i in probes:
        assert t.mtree_load(i) == m.load(i), hex(i)
        assert t.mas_walk(i) == m.walk(i), hex(i)
        lim = rnd.choice((ULONG_MAX, i, i + rnd.randrange(1 << 12)))
        assert t.mt_find(i, min(lim, ULONG_MAX)) == m.find(i, min(lim, ULONG_MAX)), hex(i)
        assert t.mt_find_entry(i) == m.find(i, ULONG_MAX)[0], hex(i)     # find_vma's lookup


def model_next(m: RangeModel, i: int, lim: int) -> tuple[int, int, int]:
    _, _, hi = m.walk(i)
    return (0, 0, 0) if hi >= lim or hi == ULONG_MAX else m.find(hi + 1, lim)


def model_prev(m: RangeModel, i: int, lim: int) -> tuple[int, int, int]:
    _, lo, _ = m.walk(i)
    for k in range(len(m.lasts) - 1, -1, -1):
        if m.lasts[k] < lo:
            return (m.vals[k], m.firsts[k], m.lasts[k]) if m.lasts[k] >= lim else (0, 0, 0)
    return (0, 0, 0)


# ---------------------------------------------------------------- basics and edges
def test_empty_tree_and_single_ranges(env) -> None:
    _, nc, make = env()
    t = make()
    assert t.mtree_load(0) == 0 and t.mt_find(0) == (0, 0, 0) and t.mas_walk(7) == (0, 0, ULONG_MAX)
    assert t.mt_find_entry(0) == 0
    assert t.mt_height() == 0 and t.mt_nr_nodes() == 0 and t.mt_validate() == []
    assert t.mas_store_range(0, 0, 0x1000) == 0                      # a lone entry at 0 gets a leaf
    assert t.mtree_load(0) == 0x1000 and t.mtree_load(1) == 0 and t.mt_height() == 1
    assert t.mas_store_range(ULONG_MAX, ULONG_MAX, 0x2000) == 0      # the last index
    assert t.mt_find(1) == (0x2000, ULONG_MAX, ULONG_MAX)
    assert t.mt_find_entry(1) == 0x2000 and t.mt_find_entry(0) == 0x1000
    assert t.mas_walk(5) == (0, 1, ULONG_MAX - 1)
    assert t.mas_store_range(0, ULONG_MAX, 0x3000) == 0              # everything
    assert t.mas_walk(12345) == (0x3000, 0, ULONG_MAX) and t.mt_validate() == []
    assert t.mtree_erase(99) == 0x3000
    assert t.mt_height() == 0 and t.mt_nr_nodes() == 0 and not nc.live  # back to an empty root
    assert t.mas_store_range(5, 4, 1) == -EINVAL and t.mas_store_range(0, 1 << 64, 1) == -EINVAL
    assert t.mtree_insert_range(10, 20, 0) == -EINVAL
    assert t.mtree_insert_range(10, 20, 0x10) == 0 and t.mtree_insert_range(20, 30, 0x20) == -EEXIST
    assert t.mtree_insert_range(21, 30, 0x20) == 0 and t.mt_find(15) == (0x10, 10, 20)
    assert t.mas_store_range(10, 20, 0x30) == 0 and t.mtree_load(15) == 0x30   # same-range store
    assert "leaf_64" in t.mt_dump()
    t.mt_destroy()
    assert not nc.live and t.mt_nr_nodes() == 0


def test_overwrite_trims_and_splits_neighbours(env) -> None:
    _, _, make = env()
    t, m = make(), RangeModel()
    for f, l, e in [(100, 199, 1), (200, 299, 2), (300, 399, 3), (150, 349, 9), (120, 130, 7),
                    (0, 110, 0), (160, 161, 0), (125, 375, 0)]:
        assert t.mas_store_range(f, l, e) == 0
        m.store(f, l, e)
        check_against(t, m, random.Random(1), list(range(0, 420, 3)))


# ---------------------------------------------------------------- model-based (hypothesis)
IDX = st.one_of(st.integers(0, 3000), st.sampled_from([0, 1, ULONG_MAX - 1, ULONG_MAX, 1 << 63]),
                st.integers(0, ULONG_MAX))
LEN = st.one_of(st.integers(0, 16), st.integers(0, 3000), st.sampled_from([ULONG_MAX]))
OPS = st.lists(st.one_of(
    st.tuples(st.just("store"), IDX, LEN, st.integers(1, ULONG_MAX)),
    st.tuples(st.just("erase_range"), IDX, LEN, st.just(0)),
    st.tuples(st.just("erase"), IDX, st.just(0), st.just(0)),
    st.tuples(st.just("insert"), IDX, LEN, st.integers(1, ULONG_MAX)),
    st.tuples(st.just("bulk"), st.integers(0, 3000), st.integers(1, 300), st.integers(1, 7)),
    st.tuples(st.just("gap"), IDX, LEN, st.one_of(st.integers(1, 40), st.integers(1, ULONG_MAX))),
), min_size=10, max_size=60)


@pytest.mark.parametrize("flags", [RCU_ALLOC, 0], ids=["alloc_range_rcu", "range_64"])
def test_random_ops_match_model(env, flags: int) -> None:
    _, nc, make = env()

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=OPS, seed=st.integers(0, 1 << 30))
    def run(ops: list[tuple[str, int, int, int]], seed: int) -> None:
        t, m, rnd = make(flags), RangeModel(), random.Random(seed)
        for op, i, n, x in ops:
            last = min(i + n, ULONG_MAX)
            if op == "store":
                assert t.mas_store_range(i, last, x) == 0
                m.store(i, last, x)
            elif op == "erase_range":
                assert t.mas_store_range(i, last, 0) == 0
                m.store(i, last, 0)
            elif op == "erase":
                e, lo, hi = m.walk(i)
                assert t.mtree_erase(i) == e
                if e:
                    m.store(lo, hi, 0)
            elif op == "insert":
                busy = m.find(i, last)[0] != 0
                assert t.mtree_insert_range(i, last, x) == (-EEXIST if busy else 0)
                if not busy:
                    m.store(i, last, x)
            elif op == "bulk":                 # many ranges: taller trees
                for k in range(n):
                    f = i * 8 + k * (x + 3)
                    assert t.mas_store_range(f, f + x, (k + 1) << 4) == 0
                    m.store(f, f + x, (k + 1) << 4)
            elif flags & MT_FLAGS_ALLOC_RANGE:
                hi = min(i + n, ULONG_MAX)
                for rev, fn in ((False, t.mas_empty_area), (True, t.mas_empty_area_rev)):
                    assert fn(i, hi, x) == m.empty_area(i, hi, x, rev), (op, i, hi, x, rev)
            probes = [rnd.randrange(4000) for _ in range(6)] + [0, ULONG_MAX, i, last, rnd.randrange(1 << 64)]
            check_against(t, m, rnd, probes)
            for p in probes[:4]:
                lim = rnd.choice((ULONG_MAX, p + 50, 0))
                assert t.mas_next(p, lim) == model_next(m, p, lim)
                assert t.mas_prev(p, lim) == model_prev(m, p, lim)
        assert t.mt_nr_nodes() == len(nc.live)
        t.mt_destroy()
        assert not nc.live
        nc.grace()

    run()


def test_tall_tree_10k_ranges_and_gap_searches(env) -> None:
    """12,000 ranges (height 5), every read and gap search checked, then erased in random order."""
    _, nc, make = env(nr_pages=8192)
    t, m, rnd = make(), RangeModel(), random.Random(5)
    base = 0x7F00_0000_0000
    spans = []
    for k in range(12_000):
        f = base + k * 0x10_0000 + rnd.randrange(0, 0x8_0000)
        l = f + rnd.randrange(1, 64) * 4096 - 1
        assert t.mas_store_range(f, l, (k + 1) << 12) == 0
        m.store(f, l, (k + 1) << 12)
        spans.append((f, l))
        if k % 512 == 0:
            nc.grace()
    nc.grace()
    assert t.mt_height() >= 4
    check_against(t, m, rnd, [rnd.randrange(base, base + 12_000 * 0x10_0000) for _ in range(3000)]
                  + [f for f, _ in spans[:200]] + [l for _, l in spans[-200:]])
    for _ in range(400):
        lo = rnd.choice((0, base + rnd.randrange(12_000 * 0x10_0000)))
        hi = min(lo + rnd.choice((1 << 12, 1 << 22, 1 << 30, ULONG_MAX)), ULONG_MAX)
        size = rnd.choice((1, 4096, 0x7_0000, 0xA_0000, 0x10_0000, 1 << 40, hi - lo + 1))
        assert t.mas_empty_area(lo, hi, size) == m.empty_area(lo, hi, size, False), (lo, hi, size)
        assert t.mas_empty_area_rev(lo, hi, size) == m.empty_area(lo, hi, size, True), (lo, hi, size)
    rnd.shuffle(spans)
    for n, (f, l) in enumerate(spans):
        if n % 3 or l - f < 2 * 4096:
            assert t.mtree_erase(f) == m.load(f)
        else:                                            # partial erases split ranges first
            assert t.mas_store_range(f + 4096, l, 0) == 0
            m.store(f + 4096, l, 0)
            assert t.mtree_erase(f) == m.load(f)
        m.store(f, l, 0)
        if n % 1000 == 0:
            assert t.mt_validate() == []
            nc.grace()
    assert t.mt_height() == 0 and t.mt_nr_nodes() == 0
    nc.grace()
    assert not nc.live


def test_gap_search_edges(env) -> None:
    _, _, make = env()
    t = make()
    assert t.mas_empty_area(10, 5, 1) == -EINVAL and t.mas_empty_area(0, 10, 0) == -EINVAL
    assert t.mas_empty_area(0, 10, 12) == -EINVAL and t.mas_empty_area_rev(5, 5, 2) == -EINVAL
    assert t.mas_empty_area(7, 7, 1) == 7 and t.mas_empty_area_rev(0, ULONG_MAX, 16) == ULONG_MAX - 15
    assert t.mas_empty_area(0, ULONG_MAX, 1 << 64) == 0                # the whole space, empty tree
    t.mas_store_range(0x1000, 0x1FFF, 1)
    t.mas_store_range(0x3000, 0x3FFF, 2)
    assert t.mas_empty_area(0, ULONG_MAX, 0x1000) == 0
    assert t.mas_empty_area(0x800, ULONG_MAX, 0x1000) == 0x2000           # [0x800, 0xFFF] too small
    assert t.mas_empty_area(0x1000, 0x2FFF, 0x1000) == 0x2000
    assert t.mas_empty_area(0x1000, 0x2FFE, 0x1000) == -EBUSY
    assert t.mas_empty_area_rev(0, 0x3FFF, 0x1000) == 0x2000
    assert t.mas_empty_area_rev(0, 0x2FFF, 0x1001) == -EBUSY
    assert t.mas_empty_area_rev(0, 0x2FFF, 0x1000) == 0x2000 and t.mas_empty_area_rev(0, 0x1FFF, 0x1000) == 0
    assert t.mas_empty_area_rev(0x4000, ULONG_MAX, 1 << 20) == ULONG_MAX - (1 << 20) + 1
    assert t.mas_empty_area(0x1000, 0x1FFF, 1) == -EBUSY
    flat = make(MT_FLAGS_USE_RCU)                        # no gap tracking: a scan, same answers
    flat.mas_store_range(0x1000, 0x1FFF, 1)
    assert flat.mas_empty_area(0, ULONG_MAX, 0x2000) == 0x2000


# ---------------------------------------------------------------- ENOMEM at every allocation
def tree_state(a: Arena, t: MapleTree) -> dict[int, list[int]]:
    return snapshot(a, t.root_off, [n[0] for n in t._nodes()], MAPLE_NODE_SIZE)


@pytest.mark.parametrize("flags", [RCU_ALLOC, MT_FLAGS_USE_RCU], ids=["arange", "range"])
def test_enomem_at_every_allocation_leaves_tree_unchanged(env, flags: int) -> None:
    a, nc, make = env()
    t, m, rnd = make(flags), RangeModel(), random.Random(9)
    for k in range(1500):
        t.mas_store_range(k * 20, k * 20 + 9, (k + 1) << 8)
        m.store(k * 20, k * 20 + 9, (k + 1) << 8)
    nc.grace()
    ops = [(5, 5, 0x77), (15_000, 29_990, 0x66), (100, 25_000, 0), (0, ULONG_MAX, 0x55),
           (29_995, ULONG_MAX, 0x44), (3, 3, 0)] + [(f, f + rnd.randrange(400), rnd.choice((0, 0x99)))
                                               for f in rnd.sample(range(30_000), 12)]
    for f, l, e in ops:
        for fail_in in range(64):
            before, live = tree_state(a, t), set(nc.live)
            nc.fail_in = fail_in
            r = t.mas_store_range(f, l, e)
            nc.fail_in = None
            if r == -ENOMEM:
                assert tree_state(a, t) == before and nc.live == live, (f, l, e, fail_in)
                continue
            assert r == 0
            m.store(f, l, e)
            break
        else:
            pytest.fail(f"store {f}..{l} still failing after 64 allocations")
        check_against(t, m, rnd, [rnd.randrange(31_000) for _ in range(50)])
        nc.grace()


# ---------------------------------------------------------------- the RCU publication rules
def test_writes_change_reachable_nodes_only_by_single_words(env) -> None:
    """Before/after every store: a retired node is unchanged but for its dead mark, and a
    node still in the tree kept its pivots and changed at most one slot word (a leaf) or
    one slot plus its gap words and metadata (an arange node)."""
    a, nc, make = env()
    t, rnd = make(), random.Random(3)
    for k in range(800):
        t.mas_store_range(k * 10, k * 10 + 4, (k + 1) << 8)
    nc.grace()
    for step in range(300):
        nodes = {n[0]: n[1] for n in t._nodes()}
        before = snapshot(a, t.root_off, list(nodes), MAPLE_NODE_SIZE)
        nc.retired.clear()
        f = rnd.randrange(9000)
        l = f + rnd.choice((0, 3, 9, 50, 700))
        old = t.mtree_load(f)
        e = rnd.choice((0, (step + 1) << 20, old or 1 << 40))
        exact = t.mas_walk(f)
        if rnd.random() < 0.2 and exact[0]:
            f, l = exact[1], exact[2]                   # same range: the in-place path
        assert t.mas_store_range(f, l, e) == 0
        after = {n[0] for n in t._nodes()}
        for off in nc.retired:
            w = a.u64[off >> 3: (off >> 3) + 32].tolist()
            assert w[0] == off and w[1:] == before[off][1:], "retired node changed"
        for off in set(nodes) & after:
            w = a.u64[off >> 3: (off >> 3) + 32].tolist()
            changed = [k for k in range(1, 32) if w[k] != before[off][k]]
            if nodes[off] == 1:                          # leaf: one slot word at most
                assert len(changed) <= 1 and all(k >= 16 for k in changed), changed
            else:                                        # arange: one slot, gaps, metadata
                assert all(k >= 10 for k in changed), changed
                assert len([k for k in changed if k < 20]) <= 1, changed
        assert set(nc.retired).isdisjoint(after)
        nc.grace()
    assert t.mt_validate() == []


def test_non_rcu_tree_frees_immediately(env) -> None:
    _, nc, make = env()
    t = make(MT_FLAGS_ALLOC_RANGE)
    for k in range(300):
        t.mas_store_range(k * 4, k * 4 + 1, (k + 1) << 4)
    assert not nc.quarantine and t.mt_nr_nodes() == len(nc.live)
    t.mt_destroy()
    assert not nc.live and not nc.quarantine


# ---------------------------------------------------------------- readers never crash or hang
def test_readers_survive_garbage(env) -> None:
    """Cycles, wild offsets, bad types and random words: every read returns, none raises."""
    a, _, make = env()
    t = make()
    for k in range(200):
        t.mas_store_range(k * 10, k * 10 + 4, (k + 1) << 8)
    leaf = next(n[0] for n in t._nodes() if n[1] == 1)
    node = next(n[0] for n in t._nodes() if n[1] == 3)
    rw, u64, rnd = t.root_off >> 3, a.u64, random.Random(2)
    cases = [
        (node | 3 << 3 | 6, lambda: u64.__setitem__((node >> 3) + 10, node | 3 << 3 | 4)),  # a cycle
        ((a.size + 4096) & ~0xFF | 3 << 3 | 6, None),                                       # past the arena
        (((1 << 60) | 3 << 3 | 6), None),
        (leaf | 7 << 3 | 6, None),                                                           # bad type
        (node | 3 << 3 | 6, lambda: [u64.__setitem__((node >> 3) + k, rnd.randrange(1 << 64))
                                     for k in range(32)]),                                    # random words
    ]
    for root, corrupt in cases:
        if corrupt:
            corrupt()
        u64[rw] = root
        for i in (0, 5, 1234, ULONG_MAX, rnd.randrange(1 << 64)):
            assert isinstance(t.mtree_load(i), int)
            assert len(t.mt_find(i)) == 3 and len(t.mas_walk(i)) == 3
            t.mas_next(i)
            t.mas_prev(i)
        assert t.mt_validate() != []                     # the checker reports, never raises
    u64[rw] = 0


def test_reader_inside_replaced_nodes(env) -> None:
    """Forced interleaving: a reader is inside the leaf that holds 2103 when the writer
    rebuilds that part of the tree and retires the leaf.  While the grace period holds
    it, the reader finishes in the old leaf with the old tree's answer.  The same
    interleaving with the leaf freed at once and reused (overwritten) hands the reader
    garbage -- what rcu_free_node's deferral prevents."""
    a, nc, make = env()
    t = make()
    for k in range(600):
        t.mas_store_range(k * 10, k * 10 + 4, (k + 1) << 8)
    nc.grace()
    poison = 0x5A5A_5A5A_5A5A_5A5A

    def reader_in(leaf: int, writer: Callable[[], None]) -> Callable[[int], int]:
        inside = lambda k: leaf >> 3 <= k < (leaf >> 3) + 32
        return _make_readers(Interleave(a.u64, inside, writer), t.root_off >> 3, t.itype)[0]

    leaf = t._path(2103)[0][-1][0]
    load = reader_in(leaf, lambda: t.mas_store_range(2000, 2600, 0xBEEF00))
    assert load(2103) == (210 + 1) << 8                          # the old tree's answer
    assert leaf in nc.quarantine and t.mtree_load(2103) == 0xBEEF00 and t.mt_validate() == []

    leaf = t._path(2103)[0][-1][0]

    def no_grace() -> None:
        t.mas_store_range(2000, 2600, 0)
        nc.quarantine.remove(leaf)                              # freed at once ...
        nc.cache.free(leaf + nc.delta)
        a.u64[leaf >> 3: (leaf >> 3) + 32] = memoryview(poison.to_bytes(8, "little") * 32).cast("Q")  # ... reused

    assert reader_in(leaf, no_grace)(2103) == poison
    assert t.mtree_load(2103) == 0 and t.mt_validate() == []


# ---------------------------------------------------------------- invariants broken on purpose
def _corrupt(a: Arena, t: MapleTree, how: str) -> None:
    u64 = a.u64
    nodes = list(t._nodes())
    leaf = next(n for n in nodes if n[1] == 1 and n[4] > 0)
    inner = next(n for n in nodes if n[1] == 3)
    lb, ib = leaf[0] >> 3, inner[0] >> 3
    if how == "MT1":
        f = u64[(t.root_off >> 3) + 1]
        u64[(t.root_off >> 3) + 1] = f + (1 << 2)                 # height + 1
    elif how == "MT2":
        s = ib + 10
        u64[s] = (u64[s] & ~0x78) | 2 << 3                        # child typed range_64
    elif how == "MT3":
        u64[lb + 1], u64[lb + 2] = u64[lb + 2], u64[lb + 1]       # pivots out of order
    elif how == "MT4":
        end = u64[ib + 30] & 0xFF
        u64[ib + 10 + end + 1 if end < 9 else ib + 31] = 0x1000 # a word past the end
    elif how == "MT5":
        u64[lb] ^= 1 << 3                                         # wrong parent slot
    elif how == "MT6":                                            # a leaf of two slots
        _, _, nmin, nmax, _, _ = leaf
        u64[lb: lb + 32] = memoryview(bytearray(8 * 32)).cast("Q")
        u64[lb] = leaf[5]
        u64[lb + 1] = nmin
        for k in range(2, 16):
            u64[lb + k] = nmax
        u64[lb + 16], u64[lb + 17], u64[lb + 31] = 0x100, 0x200, 1
    elif how == "MT7":
        for k in range(16):                                       # an entry next to a gap -> NULL
            if u64[lb + 16 + k] and k and not u64[lb + 16 + k - 1]:
                u64[lb + 16 + k] = 0
                break
    elif how == "MT8":
        u64[ib + 20] += 1                                         # a wrong gap


@pytest.mark.parametrize("mt", ["MT1", "MT2", "MT3", "MT4", "MT5", "MT6", "MT7", "MT8"])
def test_MT_invariant_violations_detected(env, mt: str) -> None:
    a, _, make = env()
    t = make()
    for k in range(400):
        t.mas_store_range(k * 10, k * 10 + 4, (k + 1) << 8)
    assert t.mt_validate() == []
    _corrupt(a, t, mt)
    errs = t.mt_validate()
    assert any(e.startswith(mt) for e in errs), errs
    a.u64[t.root_off >> 3] = 0                          # don't let teardown walk it


def test_repair_parents_rewrites_what_an_unpublished_adoption_left(env) -> None:
    """A store killed between adopting kept children and publishing their new parent
    leaves them naming a node that is not in the tree (MT5); mt_repair (a
    recovery's) rewrites exactly those words from the walk."""
    a, _, make = env()
    t = make()
    for k in range(400):
        t.mas_store_range(k * 10, k * 10 + 4, (k + 1) << 8)
    assert t.mt_repair() == 0
    leaves = [n for n in t._nodes() if n[1] == 1 and n[4] > 0][:3]
    for n in leaves:
        a.u64[n[0] >> 3] = 0x7700 | 6                   # "adopted" by a node never published
    assert any(e.startswith("MT5") for e in t.mt_validate())
    assert t.mt_repair() == 3
    assert t.mt_validate() == [] and t.mt_repair() == 0
    assert sorted(t.mt_nodes()) == sorted(n[0] for n in t._nodes())


@pytest.mark.parametrize("n", [1, 400])
def test_a_height_not_yet_stored_misleads_no_store_and_is_repaired(env, n: int) -> None:
    """A store killed between publishing a new root and storing the height in ma_flags
    (an empty tree's first store; a store that grew the tree): the next store must not
    trust ma_flags' height -- the kernel's walks stop at leaf-typed references, and so
    does the writer's -- and mt_repair (a recovery's) sets it from the tree (MT1)."""
    _, _, make = env()
    t = make()
    for k in range(n):
        t.mas_store_range(k * 10, k * 10 + 4, (k + 1) << 8)
    h = t.mt_height()
    t._set_height(0 if n == 1 else h - 1)               # the height store that never ran
    assert any(e.startswith("MT1") for e in t.mt_validate())
    t.mas_store_range(15, 15 + 4 * n, 0)                # an erase (across leaves: the walk's depth)
    t.mas_store_range(1 << 20, (1 << 20) + 9, 7 << 8)
    assert t.mtree_load(1 << 20) == 7 << 8 and t.mtree_load(0) == 1 << 8
    t._set_height(t.mt_height() + 1)
    assert any(e.startswith("MT1") for e in t.mt_validate())
    assert t.mt_repair() == 1 and t.mt_validate() == [] and t.mt_height() > 0


# ---------------------------------------------------------------- lock-free readers, other processes
def test_lock_free_readers_against_writer(machine, spawn, soak) -> None:
    """One writer process (3,000 prefill ranges, then random stores and erases under a
    seqcount, nodes freed after a QSBR grace period) and two reader processes: every
    answer taken under an unchanged seqcount equals the model's, every single-walk answer
    was the tree's at some version the read overlapped, none is garbage, none crashed."""
    res = H.run_concurrent(machine, spawn, H.maple_writer, H.maple_reader,
                         lambda a, root: mt_init(a, root), nops=40_000 if soak else 6000, span=3000 * 16,
                           extra_args=(3000,))
    assert res["errors"] == 0 and res["freed"] > 0
    for rd in res["readers"]:
        assert rd["done"] == 1 and rd["crash"] == 0
        assert rd["bad"] == 0 and rd["garbage"] == 0, rd
        assert rd["exact"] > 100 and rd["linear"] > 10, rd
    a = res["arena"]
    assert res["height"] >= 4
    assert MapleTree(a, a.off("treetest") + 2048).mt_validate() == []


@pytest.mark.soak
def test_without_grace_period_readers_see_recycled_nodes(machine, spawn, soak) -> None:
    """Negative control: freeing replaced nodes at once (no grace period) lets readers
    walk recycled nodes, and the same checks catch it (rare per run: --soak only)."""
    if not soak:
        pytest.skip("negative control runs with --soak")
    res = H.run_concurrent(machine, spawn, H.maple_writer, H.maple_reader, lambda a, root: mt_init(a, root),
                         nops=40_000, span=3000 * 16, extra_args=(3000, False))
    assert all(rd["crash"] == 0 for rd in res["readers"])
    assert sum(rd["bad"] + rd["garbage"] for rd in res["readers"]) > 0, res["readers"]
