"""NUMA memory policies (issue 3, mm/numa/mempolicy.py): numactl words in and out, each
policy's placement and fallback on a fake two-node and four-node machine, numastat
counted with the kernel's meanings (linux-mm.md 4.4), and the remote-touch cost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aerosync.arena.segment import Arena
from aerosync.errors import AeroSyncError, UsageError
from aerosync.mm.numa.mempolicy import (
    MPOL_BIND,
    MPOL_DEFAULT,
    MPOL_INTERLEAVE,
    MPOL_LOCAL,
    MPOL_PREFERRED,
    MPOL_PREFERRED_MANY,
    MPOL_WEIGHTED_INTERLEAVE,
    POLICY_WORDS,
    MemPolicy,
    PolicyAllocator,
    PolicyError,
    make_touch_cost,
    mem_nodes,
    page_nid,
    parse_policy,
    policy_for_cpu,
    touch_costs,
)
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.init import single_node_sim
from aerosync.mm.pmm.page import page_array
from aerosync.mm.pmm.page_alloc import MM

K = G.GFP_KERNEL | G.__GFP_NOWARN
DIST4 = [[10, 16, 16, 22], [16, 10, 22, 16], [16, 22, 10, 16], [22, 16, 16, 10]]
NAMES = Z.NUMA_NAMES


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def mk(machine: Callable[..., Arena]) -> Callable[..., Arena]:
    def factory(nr_pages: int = 8192, nr_cpus: int = 2, nr_nodes: int = 2, **kw: Any) -> Arena:
        return machine(nr_pages=nr_pages, nr_cpus=nr_cpus, nr_nodes=nr_nodes, **kw)

    return factory


def two_node(mk: Callable[..., Arena], **kw: Any) -> Arena:
    """8192 pages: node 0 = pfn 0..4095 (DMA, DMA32, Normal), node 1 = 4096..8191 (Normal);
    cpu 0 on node 0, cpu 1 on node 1."""
    return mk(nr_pages=8192, nr_cpus=2, nr_nodes=2, **kw)


def four_node(mk: Callable[..., Arena], **kw: Any) -> Arena:
    """16384 pages, 4096 per node, the asymmetric DIST4; cpu n on node n."""
    return mk(nr_pages=16384, nr_cpus=4, nr_nodes=4, distance=DIST4, **kw)


def allocator(a: Arena, cpu: int, text: str, weights: tuple[int, ...] = ()) -> PolicyAllocator:
    m = MM(a, cpu)
    pol = parse_policy(text, m.nr_nodes, weights, mem_nodes=mem_nodes(m))
    return PolicyAllocator(m, cpu, pol, single_node_sim(m.nr_cpus, m.nr_nodes)["cpu_to_node"])


def nodes_of(a: Arena, pfns: list[int]) -> list[int]:
    return [page_nid(a, p) for p in pfns]


def delta(after: list[dict[str, int]], before: list[dict[str, int]]) -> list[dict[str, int]]:
    return [{k: x[k] - y[k] for k in NAMES} for x, y in zip(after, before, strict=True)]


def expected(nr_nodes: int, events: list[tuple[int, int, int, int | None]]) -> list[dict[str, int]]:
    """Reference zone_statistics (linux-mm.md 4.4) over (preferred nid, page nid, CPU's
    nid, interleave target or None) per order-0 allocation."""
    out = [dict.fromkeys(NAMES, 0) for _ in range(nr_nodes)]
    for pref, got, local, il in events:
        if got == pref:
            out[got]["numa_hit"] += 1
        else:
            out[got]["numa_miss"] += 1
            out[pref]["numa_foreign"] += 1
        out[got]["local_node" if got == local else "other_node"] += 1
        if il is not None and got == il:
            out[got]["interleave_hit"] += 1
    return out


def free_all(pa: PolicyAllocator, pfns: list[int], order: int = 0) -> None:
    for p in pfns:
        pa.mm.free_pages(p, order)


def assert_clean(a: Arena) -> None:
    rep = check(a)
    assert rep.ok, str(rep)


def drain(pa: PolicyAllocator, gfp: int = K, order: int = 0, limit: int = 100000) -> list[int]:
    """Allocate until the policy fails; the pfns got."""
    got = []
    while len(got) < limit:
        p = pa.alloc_pages(gfp, order)
        if p < 0:
            break
        got.append(p)
    return got


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(("text", "mode", "nodes", "back"), [
    ("default", MPOL_DEFAULT, (), "default"),
    ("local", MPOL_LOCAL, (), "local"),
    ("localalloc", MPOL_LOCAL, (), "local"),
    ("  --localalloc ", MPOL_LOCAL, (), "local"),
    ("bind=1", MPOL_BIND, (1,), "bind=1"),
    ("membind=0-1,3", MPOL_BIND, (0, 1, 3), "bind=0-1,3"),
    ("bind=all", MPOL_BIND, (0, 1, 2, 3), "bind=0-3"),
    ("bind=!1", MPOL_BIND, (0, 2, 3), "bind=0,2-3"),
    ("bind=+1-2", MPOL_BIND, (1, 2), "bind=1-2"),
    ("preferred=2", MPOL_PREFERRED, (2,), "preferred=2"),
    ("--preferred=3", MPOL_PREFERRED, (3,), "preferred=3"),
    ("preferred-many=1,3", MPOL_PREFERRED_MANY, (1, 3), "preferred-many=1,3"),
    ("interleave=all", MPOL_INTERLEAVE, (0, 1, 2, 3), "interleave=0-3"),
    ("interleave=0, 2", MPOL_INTERLEAVE, (0, 2), "interleave=0,2"),
    ("weighted-interleave=0-1", MPOL_WEIGHTED_INTERLEAVE, (0, 1), "weighted-interleave=0-1"),
])
def test_parse_policy_good_forms_round_trip(text: str, mode: int, nodes: tuple[int, ...], back: str) -> None:
    p = parse_policy(text, 4)
    assert p.mode == mode and p.node_list == nodes
    assert p.to_text() == back == str(p)
    assert parse_policy(p.to_text(), 4, p.weights) == p
    if mode == MPOL_WEIGHTED_INTERLEAVE:
        assert p.weights == (1, 1, 1, 1)
    else:
        assert p.weights == ()


def test_parse_policy_kernel_mode_values_and_weights() -> None:
    modes = (MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, MPOL_LOCAL, MPOL_PREFERRED_MANY,
             MPOL_WEIGHTED_INTERLEAVE)
    assert modes == tuple(range(7))
    p = parse_policy("weighted-interleave=all", 2, [3, 1])
    assert p == MemPolicy(MPOL_WEIGHTED_INTERLEAVE, 0b11, (3, 1))
    assert parse_policy("interleave=all", 2, [3, 1]).weights == ()        # weights only for weighted


@pytest.mark.parametrize(("text", "part", "why"), [
    ("bogus", "bogus", "not a policy word"),
    ("bind", "bind", "needs a node list"),
    ("bind=", "", "empty node list"),
    ("bind=4", "4", "outside 0..3"),
    ("interleave=0-7", "0-7", "outside 0..3"),
    ("bind=2-1", "2-1", "end is below its start"),
    ("bind=a", "a", "not a node number"),
    ("bind=0,,1", "", "not a node number"),
    ("preferred=0-1", "0-1", "more than one node"),
    ("local=0", "local=0", "takes no node list"),
    ("interleave=!all", "!all", "leaves no memory node"),
    ("bind=+4", "4", "counts past"),
    ("bind=2", "2", "no memory"),                      # mem_nodes below: node 2 is memoryless
])
def test_parse_policy_bad_forms_name_text_part_and_syntax(text: str, part: str, why: str) -> None:
    with pytest.raises(PolicyError) as ei:
        parse_policy(text, 4, mem_nodes=[0, 1, 3])
    e = ei.value
    assert isinstance(e, UsageError)
    assert e.key == "numa.policy" and e.value == text and e.part == part
    assert why in e.reason and why in str(e) and repr(text) in str(e)
    assert e.allowed.endswith(POLICY_WORDS)


def test_memoryless_nodes_are_skipped_inside_ranges() -> None:
    assert parse_policy("interleave=all", 4, mem_nodes=[0, 1, 3]).node_list == (0, 1, 3)
    assert parse_policy("bind=1-3", 4, mem_nodes=[0, 1, 3]).node_list == (1, 3)
    assert parse_policy("bind=+2", 4, mem_nodes=[0, 1, 3]).node_list == (3,)
    assert parse_policy("bind=!0", 4, mem_nodes=[0, 1, 3]).node_list == (1, 3)


@pytest.mark.parametrize("weights", [[1], [1, 2, 3], [0, 1], [256, 1], [1.5, 1]])
def test_bad_weights(weights: list[Any]) -> None:
    with pytest.raises(PolicyError) as ei:
        parse_policy("weighted-interleave=all", 2, weights)
    assert ei.value.key == "numa.weights"


def test_policy_for_cpu_override_and_error_key() -> None:
    per = {1: "bind=1"}
    assert policy_for_cpu("interleave=all", per, 0, 2, ()).mode == MPOL_INTERLEAVE
    assert policy_for_cpu("interleave=all", per, 1, 2, ()) == MemPolicy(MPOL_BIND, 0b10)
    assert policy_for_cpu("local", ((1, "preferred=0"),), 1, 2, ()).mode == MPOL_PREFERRED   # NumaSpec pairs
    with pytest.raises(PolicyError) as ei:
        policy_for_cpu("local", {3: "bind=9"}, 3, 2, ())
    assert ei.value.key == "numa.cpu_policy.3"


# ----------------------------------------------------------------------------- placement, two nodes
def test_local_allocates_on_each_cpus_node_with_zero_overhead(mk) -> None:
    a = two_node(mk)
    for text in ("default", "local"):
        for cpu in (0, 1):
            pa = allocator(a, cpu, text)
            assert pa.alloc_pages is pa.mm.alloc_pages          # the bare MM fast path
            before = Z.numastat(a)
            got = [pa.alloc_pages(K, 0) for _ in range(50)]
            assert set(nodes_of(a, got)) == {cpu}
            d = delta(Z.numastat(a), before)
            assert d[cpu] == {**dict.fromkeys(NAMES, 0), "numa_hit": 50, "local_node": 50}
            free_all(pa, got)
    assert_clean(a)


def test_bind_remote_node_hits_then_fails_without_fallback(mk) -> None:
    a = two_node(mk, pcp_enabled=False)
    pa = allocator(a, 0, "bind=1")
    before = Z.numastat(a)
    got = drain(pa)
    n = len(got)
    assert n > 3000 and set(nodes_of(a, got)) == {1}
    d = delta(Z.numastat(a), before)
    # preferred zone = first zone of node 0's zonelist filtered to {1}: every page a hit
    assert d[1] == {**dict.fromkeys(NAMES, 0), "numa_hit": n, "other_node": n}
    assert d[0] == dict.fromkeys(NAMES, 0)
    assert Z.zone_info(a, 2)["nr_free_pages"] > 900                    # node 0 still has room
    assert pa.alloc_pages(K, 0) == -1
    # below policy_zone the mask is not applied (apply_policy_zone), nor with __GFP_THISNODE
    dma32 = pa.alloc_pages(G.GFP_DMA32 | G.__GFP_NOWARN, 0)
    local = pa.alloc_pages(K | G.__GFP_THISNODE, 0)
    assert page_nid(a, dma32) == 0 and page_nid(a, local) == 0
    free_all(pa, [*got, dma32, local])
    assert_clean(a)


def test_preferred_fills_node_then_falls_back_counting_miss_and_foreign(mk) -> None:
    a = two_node(mk, pcp_enabled=False)
    pa = allocator(a, 0, "preferred=1")
    before = Z.numastat(a)
    got = []
    while True:
        p = pa.alloc_pages(K, 0)
        got.append(p)
        if page_nid(a, p) != 1:
            break
    spill = [pa.alloc_pages(K, 0) for _ in range(9)]
    nodes = nodes_of(a, got)
    assert set(nodes[:-1]) == {1} and nodes[-1] == 0 and set(nodes_of(a, spill)) == {0}
    n1 = len(got) - 1
    d = delta(Z.numastat(a), before)
    assert d[1] == {**dict.fromkeys(NAMES, 0), "numa_hit": n1, "other_node": n1, "numa_foreign": 10}
    assert d[0] == {**dict.fromkeys(NAMES, 0), "numa_miss": 10, "local_node": 10}
    free_all(pa, got + spill)
    assert_clean(a)


def test_preferred_local_node_is_the_bare_fast_path(mk) -> None:
    a = two_node(mk)
    pa = allocator(a, 1, "preferred=1")
    assert pa.alloc_pages is pa.mm.alloc_pages


def test_interleave_spreads_evenly_and_counts_interleave_hit(mk) -> None:
    a = four_node(mk)
    pa = allocator(a, 0, "interleave=all")
    before = Z.numastat(a)
    got = [pa.alloc_pages(K, 0) for _ in range(400)]
    nodes = nodes_of(a, got)
    assert nodes[:8] == [0, 1, 2, 3, 0, 1, 2, 3]                       # il_prev round robin
    assert [nodes.count(n) for n in range(4)] == [100] * 4
    d = delta(Z.numastat(a), before)
    assert d == expected(4, [(n, n, 0, n) for n in nodes])
    assert [x["interleave_hit"] for x in d] == [100] * 4
    free_all(pa, got)
    assert_clean(a)


def test_interleave_subset_and_missed_target(mk) -> None:
    a = two_node(mk, pcp_enabled=False)
    filler = allocator(a, 1, "bind=1")
    held = drain(filler)                                                 # node 1 full
    pa = allocator(a, 0, "interleave=0-1")
    before = Z.numastat(a)
    got = [pa.alloc_pages(K, 0) for _ in range(6)]
    assert nodes_of(a, got) == [0] * 6
    d = delta(Z.numastat(a), before)
    # targets 0,1,0,1,0,1: the node-1 targets fell back to node 0 (miss + foreign, no hit)
    assert d == expected(2, [(t, 0, 0, t) for t in (0, 1, 0, 1, 0, 1)])
    assert d[0]["interleave_hit"] == 3 and d[1]["numa_foreign"] == 3 and d[0]["numa_miss"] == 3
    free_all(pa, got)
    free_all(filler, held)
    assert_clean(a)


def test_weighted_interleave_3_to_1(mk) -> None:
    a = two_node(mk)
    pa = allocator(a, 1, "weighted-interleave=all", (3, 1))
    got = [pa.alloc_pages(K, 0) for _ in range(400)]
    nodes = nodes_of(a, got)
    assert nodes[:8] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert (nodes.count(0), nodes.count(1)) == (300, 100)
    st = Z.numastat(a)
    assert [x["interleave_hit"] for x in st] == [300, 100]
    assert st[0]["other_node"] == 300 and st[1]["local_node"] == 100      # cpu 1 is on node 1
    free_all(pa, got)
    # default weights are 1: plain alternation
    pa = allocator(a, 0, "weighted-interleave=0-1")
    got = [pa.alloc_pages(K, 0) for _ in range(6)]
    assert nodes_of(a, got) == [0, 1, 0, 1, 0, 1]
    free_all(pa, got)
    assert_clean(a)


def test_numastat_exact_for_a_mixed_sequence(mk) -> None:
    """Both CPUs, four policies, order-0 only; every counter equals the reference model."""
    a = two_node(mk)
    before = Z.numastat(a)
    seq: list[tuple[int, int, int, int | None]] = []
    held: list[tuple[PolicyAllocator, int]] = []
    for cpu, text, n in ((0, "local", 3), (1, "local", 2), (0, "bind=1", 4), (1, "preferred=0", 5),
                         (0, "interleave=all", 5), (1, "preferred-many=0", 2)):
        pa = allocator(a, cpu, text)
        for i in range(n):
            p = pa.alloc_pages(K, 0)
            held.append((pa, p))
            got = page_nid(a, p)
            if text == "local":
                seq.append((cpu, got, cpu, None))
            elif text.startswith("bind") or text.startswith("preferred="):
                seq.append((int(text[-1]), got, cpu, None))
            elif text.startswith("interleave"):
                seq.append((i % 2, got, cpu, i % 2))
            else:
                seq.append((0, got, cpu, None))      # preferred-many={0}: nearest mask node
    d = delta(Z.numastat(a), before)
    assert d == expected(2, seq)
    assert d == [
        {"numa_hit": 3 + 5 + 3 + 2, "numa_miss": 0, "numa_foreign": 0, "interleave_hit": 3,
         "local_node": 3 + 3, "other_node": 5 + 2},
        {"numa_hit": 2 + 4 + 2, "numa_miss": 0, "numa_foreign": 0, "interleave_hit": 2,
         "local_node": 2, "other_node": 4 + 2},
    ]
    for pa, p in held:
        pa.mm.free_pages(p)
    assert_clean(a)


# ----------------------------------------------------------------------------- four nodes
def test_default_fallback_order_follows_distance(mk) -> None:
    a = four_node(mk, pcp_enabled=False)
    pa = allocator(a, 0, "local")
    got = drain(pa, limit=20000)
    nodes = nodes_of(a, got)
    order = [n for i, n in enumerate(nodes) if i == 0 or nodes[i - 1] != n]
    # distances 10, 16, 16 (tie: lower id), 22; once every zone is at its LOW mark, the
    # slow path walks the same zonelist again down to MIN
    assert order == [0, 1, 2, 3] * 2
    assert order[:4] == pa.mm.node_order[0]
    free_all(pa, got)
    # from node 3: both 1 and 2 are at 16; node_load's round-robin picks 2 first (as Linux)
    pa3 = allocator(a, 3, "local")
    got = drain(pa3, limit=5000)
    nodes = nodes_of(a, got)
    first_remote = next(n for n in nodes if n != 3)
    assert DIST4[3][first_remote] == 16 and first_remote == pa3.mm.node_order[3][1] == 2
    free_all(pa3, got)
    assert_clean(a)


def test_bind_set_nearest_first_then_fails(mk) -> None:
    a = four_node(mk, pcp_enabled=False)
    pa = allocator(a, 0, "bind=2-3")
    before = Z.numastat(a)
    got = drain(pa)
    nodes = nodes_of(a, got)
    runs = [n for i, n in enumerate(nodes) if i == 0 or nodes[i - 1] != n]
    assert runs == [2, 3, 2, 3]            # 2 (distance 16) before 3 (22): at LOW, then at MIN
    d = delta(Z.numastat(a), before)
    assert d == expected(4, [(2, n, 0, None) for n in nodes])           # node 3 pages: miss, foreign on 2
    assert d[3]["numa_miss"] == nodes.count(3) == d[2]["numa_foreign"] > 0
    assert not {0, 1} & set(nodes) and pa.alloc_pages(K, 0) == -1
    free_all(pa, got)
    assert_clean(a)


def test_preferred_many_mask_first_then_local_zonelist(mk) -> None:
    a = four_node(mk, pcp_enabled=False)
    pa = allocator(a, 0, "preferred-many=2-3")
    before = Z.numastat(a)
    got = drain(pa, limit=4096 * 2 + 200)
    nodes = nodes_of(a, got)
    runs = [n for i, n in enumerate(nodes) if i == 0 or nodes[i - 1] != n]
    assert runs == [2, 3, 2, 3, 0]               # pass 1 (LOW, then MIN) in the mask; pass 2 local
    d = delta(Z.numastat(a), before)
    prefs = [2 if n in (2, 3) else 0 for n in nodes]
    assert d == expected(4, [(p, n, 0, None) for p, n in zip(prefs, nodes, strict=True)])
    free_all(pa, got)
    assert_clean(a)


def test_interleave_index_and_thp_rule(mk) -> None:
    a = four_node(mk, pcp_enabled=False)
    pa = allocator(a, 0, "interleave=1-3")
    got = [pa.alloc_pages_mpol(K, 0, ilx) for ilx in (0, 1, 2, 3, 7)]
    assert nodes_of(a, got) == [1, 2, 3, 1, 2]                           # nodes[ilx % 3]
    assert pa.il_state[0] == 2                                           # task il_prev untouched
    free_all(pa, got)
    w = allocator(a, 0, "weighted-interleave=0,2", (2, 1, 3, 1))
    got = [w.alloc_pages_mpol(K, 0, ilx) for ilx in range(6)]
    assert nodes_of(a, got) == [0, 0, 2, 2, 2, 0]                       # weights 2 + 3 = 5 slots
    free_all(w, got)
    # THP (order 9) with an index: preferred node only first; without direct reclaim no fallback
    p = allocator(a, 0, "preferred=1")
    thp = []
    while (x := p.alloc_pages_mpol(G.GFP_TRANSHUGE_LIGHT, 9, 0)) >= 0:
        thp.append(x)
    assert thp and set(nodes_of(a, thp)) == {1}
    x = p.alloc_pages_mpol(G.GFP_TRANSHUGE, 9, 0)                       # may reclaim: normal path
    assert page_nid(a, x) != 1
    free_all(p, [*thp, x], 9)
    assert_clean(a)


def test_allocator_checks_its_handle(mk) -> None:
    a = two_node(mk)
    m = MM(a, 0)
    with pytest.raises(AeroSyncError):
        PolicyAllocator(m, 1, MemPolicy())
    with pytest.raises(AeroSyncError):
        PolicyAllocator(m, 0, MemPolicy(), [1, 1])
    with pytest.raises(PolicyError):
        PolicyAllocator(m, 0, MemPolicy(MPOL_BIND, 0b100))
    pa = PolicyAllocator(m, 0, parse_policy("preferred=1", 2))
    f = pa.folio_alloc(K, 2)
    assert page_nid(a, f) == 1 and int(page_array(a)["node"][f]) == 1
    m.folio_put(f)
    assert_clean(a)


# ----------------------------------------------------------------------------- remote touch cost
def test_touch_cost_off_and_proportional() -> None:
    assert make_touch_cost(0, DIST4, 0) is None
    assert touch_costs(100, DIST4, 0) == (0, 60, 60, 120)
    assert touch_costs(250, [[10, 21], [21, 10]], 1) == (275, 0)
    touch = make_touch_cost(100, DIST4, 3)
    assert touch is not None
    for nid in range(4):
        assert touch(nid) is None
    with pytest.raises(UsageError):
        touch_costs(-1, DIST4, 0)
