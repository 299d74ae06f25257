"""Physical memory (issue 3): init, buddy split/merge, zone and migratetype fallback,
watermarks, PCP refill/drain/hot-cold/offline drain, folios, __GFP_ZERO, failure
warnings, zonelists and numastat, and a multi-process cross-CPU stress test."""

from __future__ import annotations

import gc
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from aerosync import procfs
from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import vmstat as V
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import NIL, PG_head, PG_lru, PG_tail, page_array
from aerosync.mm.pmm.page_alloc import MM, AllocFailureWarning, BadPageWarning
from tests.conftest import new_machine

NOWARN = G.__GFP_NOWARN


def make_mm_arena(**kw: Any) -> Arena:
    """A booted page-allocator machine (no SLUB); the caller closes and unlinks it."""
    return new_machine(**kw)


@pytest.fixture
def mk(machine: Callable[..., Arena]) -> Callable[..., Arena]:
    return machine


def zinfo(a: Arena, zid: int) -> dict[str, Any]:
    return Z.zone_info(a, zid)


def pcp_count(a: Arena, cpu: int, zid: int) -> int:
    nr_zones = a.u64[(a.off("mmzones") + Z.G_NR_ZONES) >> 3]
    return a.u64[(Z.pcp_off(a, cpu, zid, nr_zones) + Z.PCP_COUNT) >> 3]


def free_snapshot(a: Arena) -> list[tuple[int, list[int]]]:
    n = a.u64[(a.off("mmzones") + Z.G_NR_ZONES) >> 3]
    return [(zinfo(a, z)["nr_free_pages"], zinfo(a, z)["nr_free"]) for z in range(n)]


def assert_clean(a: Arena) -> None:
    rep = check(a)
    assert rep.ok, str(rep)


# ----------------------------------------------------------------------------- init
def test_watermark_and_reserve_vectors() -> None:
    assert Z.setup_watermarks([262144], 4096) == [(1024, 1286, 1548, 1810)]
    res = Z.setup_lowmem_reserve([3976, 1048576, 3145728])
    assert res[0] == [0, 4096, 16384] and res[1] == [0, 0, 12288] and res[2] == [0, 0, 0]
    assert Z.zone_batchsize(262144) == 63
    assert Z.calculate_min_free_kbytes(262144) == 4096
    assert Z.zone_boundaries(1 << 21) == (4096, 1 << 20)          # 8 GiB: x86-64 boundaries
    assert Z.zone_boundaries(16384) == (256, 4096)                # 64 MiB: scaled 1/64, 1/4


def test_mm_init_zones_and_free_lists(mk) -> None:
    a = mk(nr_pages=4096)
    dma, dma32, normal = (zinfo(a, z) for z in range(3))
    assert (dma["start_pfn"], dma["spanned"], dma["managed"]) == (0, 64, 63)      # pfn 0 reserved
    assert (dma32["start_pfn"], dma32["spanned"]) == (64, 960)
    assert (normal["start_pfn"], normal["spanned"], normal["managed"]) == (1024, 3072, 3072)
    assert normal["nr_free"][10] == 3 and normal["nr_free_pages"] == 3072
    assert dma["nr_free_pages"] == 63 and dma["nr_free"][:6] == [1, 1, 1, 1, 1, 1]
    assert dma["lowmem_reserve"] == [0, 960 // 256, (960 + 3072) // 256]
    assert all(z["min"] < z["low"] < z["high"] for z in (dma32, normal))
    assert_clean(a)


def test_two_node_layout_places_zones_by_address(mk) -> None:
    a = mk(nr_pages=8192, nr_nodes=2)
    spans = [zinfo(a, z)["spanned"] for z in range(6)]
    assert spans[:3] == [128, 1920, 2048] and spans[3:] == [0, 0, 4096]   # node 1: Normal only
    m = MM(a, 1)                                                       # cpu 1 is on node 1
    assert m.nid == 1
    assert m.zonelist(1, G.GFP_KERNEL) == [5, 2, 1, 0]
    assert m.zonelist(0, G.GFP_DMA32) == [1, 0]
    assert m.zonelist(1, G.GFP_KERNEL | G.__GFP_THISNODE) == [5]
    assert_clean(a)


def test_mm_init_1gib(mk) -> None:
    """Boot of a 1 GiB two-node machine puts every page but the reserved pfn 0 on the free
    lists (its speed is part of the arena_1gib_create_s benchmark)."""
    a = mk(nr_pages=262144, nr_nodes=2)
    assert sum(zinfo(a, z)["nr_free_pages"] for z in range(6)) == 262144 - 1


# ----------------------------------------------------------------------------- buddy
def test_split_and_merge_are_exact(mk) -> None:
    a = mk(nr_pages=4096, pcp_enabled=False)
    before = free_snapshot(a)
    m = MM(a, 0)
    rng = random.Random(7)
    held = []
    for _ in range(400):
        o = rng.choice([0, 0, 1, 2, 3, 5, 7])
        p = m.alloc_pages(G.GFP_KERNEL | NOWARN, o)
        if p >= 0:
            assert p % (1 << o) == 0
            held.append((p, o))
    assert_clean(a)
    rng.shuffle(held)
    for p, o in held:
        m.free_pages(p, o)
    assert free_snapshot(a) == before
    assert_clean(a)


def test_split_takes_lowest_half_and_merge_restores(mk) -> None:
    a = mk(nr_pages=4096, pcp_enabled=False)
    m = MM(a, 0)
    p = m.alloc_pages(G.GFP_KERNEL, 0)
    assert p == 1024                                   # first block of Normal, lowest address
    nr = zinfo(a, 2)["nr_free"]
    assert nr[:10] == [1] * 10 and nr[10] == 2          # one buddy left at each order
    m.free_pages(p, 0)
    assert zinfo(a, 2)["nr_free"][10] == 3


def test_zone_fallback_normal_dma32_dma(mk) -> None:
    a = mk(nr_pages=4096, pcp_enabled=False)
    m = MM(a, 0)
    zones_seen = []
    while (p := m.alloc_pages(G.GFP_KERNEL | NOWARN, 0)) >= 0:
        zones_seen.append(0 if p < 64 else 1 if p < 1024 else 2)
    # fast path (LOW mark): Normal, then DMA32, then DMA; the slow path (MIN) walks again
    assert zones_seen.index(2) < zones_seen.index(1) < zones_seen.index(0)
    low_phase = zones_seen[: zones_seen.index(0) + 1]
    assert low_phase == sorted(low_phase, reverse=True)
    assert zinfo(a, 2)["nr_free_pages"] == zinfo(a, 2)["min"]            # every zone down to its mark
    # what is left: only GFP_DMA allocations come from DMA, GFP_DMA32 never from Normal
    a2 = mk(nr_pages=4096, pcp_enabled=False)
    m2 = MM(a2, 0)
    dma = []
    while (p := m2.alloc_pages(G.GFP_DMA | NOWARN, 0)) >= 0:
        dma.append(p)
    assert dma and max(dma) < 64
    d32 = []
    while (p := m2.alloc_pages(G.GFP_DMA32 | NOWARN, 0)) >= 0:
        d32.append(p)
    assert d32 and max(d32) < 1024 and min(d32) >= 64                  # DMA already at its marks
    assert_clean(a)
    assert_clean(a2)


def _grab_zone(a: Arena, m: MM, zid: int) -> list[int]:
    """Take every free page of a zone as order-0 blocks (lock held, no watermarks)."""
    got = []
    lk = m.zone_lock(zid)
    lk.acquire()
    try:
        for mt in (G.MIGRATE_MOVABLE, G.MIGRATE_UNMOVABLE, G.MIGRATE_RECLAIMABLE):
            while (p := m.rmqueue_smallest_locked(zid, 0, mt)) >= 0:
                got.append(p)
    finally:
        lk.release()
    pages = page_array(a)
    pages["refcount"][got] = 1                                         # allocated, order 0
    del pages
    return got


@pytest.mark.parametrize("lru_share", [0, 3])
def test_migratetype_fallback_claim_or_steal(mk, lru_share: int) -> None:
    """UNMOVABLE request with only MOVABLE free pages: claims the pageblock when half of
    it is free or unmovable-alike, otherwise steals a page and leaves the block MOVABLE."""
    a = mk(nr_pages=4096, pcp_enabled=False)
    m = MM(a, 0)
    got = _grab_zone(a, m, 2)
    pb = a.array("mmpageblock", np.uint8)
    block = [p for p in got if 1536 <= p < 2048]                       # pageblock 3 of the machine
    keep = [p for p in got if p not in set(block)]
    flags_off = a.off("pagemeta") >> 2
    to_free = block[::2] if lru_share == 0 else block[::4]             # 256 or 128 pages free
    if lru_share:
        for p in block:
            if p not in set(to_free):
                a.u32[flags_off + p * 16] |= PG_lru                  # movable (LRU) pages
    for p in to_free:
        m.free_pages(p, 0)
    lk = m.zone_lock(2)
    lk.acquire()
    try:
        p = m.rmqueue_locked(2, 0, G.MIGRATE_UNMOVABLE, G.ALLOC_WMARK_LOW)
    finally:
        lk.release()
    assert 1536 <= p < 2048
    ev = Z.vm_events(a)
    if lru_share == 0:
        assert pb[1536 >> 9] == G.MIGRATE_UNMOVABLE and ev["pgblock_claim"] == 1
    else:
        assert pb[1536 >> 9] == G.MIGRATE_MOVABLE and ev["pgblock_steal"] == 1
    del pb
    pages = page_array(a)
    pages["refcount"][p] = 1
    pages["flags"][block] &= ~np.uint32(PG_lru)
    del pages
    assert_clean(a)
    for q in [p, *keep, *(x for x in block if x not in set(to_free) and x != p)]:
        m.free_pages(q, 0)
    assert_clean(a)
    assert zinfo(a, 2)["nr_free_pages"] == 3072


def test_claim_whole_block_retags_pageblocks(mk) -> None:
    a = mk(nr_pages=4096, pcp_enabled=False)
    m = MM(a, 0)
    p = m.alloc_pages(G.GFP_KERNEL, 0)                        # UNMOVABLE from an all-MOVABLE zone
    pb = a.array("mmpageblock", np.uint8)
    assert pb[p >> 9] == G.MIGRATE_UNMOVABLE                  # order-10 block claimed (>= pageblock)
    del pb
    assert Z.vm_events(a)["pgblock_claim"] == 1
    q = m.alloc_pages(G.GFP_HIGHUSER_MOVABLE, 0)
    assert q >= 0 and q >> 9 != p >> 9
    assert_clean(a)
    m.free_pages(p)
    m.free_pages(q)
    assert_clean(a)


# ----------------------------------------------------------------------------- watermarks
def test_watermarks_kernel_high_atomic(mk) -> None:
    a = mk(nr_pages=4096, pcp_enabled=False)
    m = MM(a, 0)
    n = zinfo(a, 2)
    wmin = n["min"]
    counts = {}
    for name, gfp in (("kernel", G.GFP_KERNEL), ("high", G.GFP_KERNEL | G.__GFP_HIGH),
                      ("atomic", G.GFP_ATOMIC)):
        c = 0
        while m.alloc_pages_nodemask(gfp | NOWARN | G.__GFP_THISNODE, 0, 0, 0b1) >= 0 and c < 10000:
            c += 1
        counts[name] = c
        free = zinfo(a, 2)["nr_free_pages"]
        if name == "kernel":
            assert free == wmin                                        # fails at the min mark
        elif name == "high":
            assert free == wmin - wmin // 2
        else:
            mm_ = wmin - wmin // 2
            assert free == mm_ - mm_ // 4                              # atomic: below min, as Linux
    assert counts["high"] > 0 and counts["atomic"] > 0
    assert_clean(a)


# ----------------------------------------------------------------------------- PCP
def test_pcp_refill_hot_cold_and_drain(mk) -> None:
    # zone_batchsize() of a 12 MiB zone is 1 (Linux's formula): the batch is set, and high
    # fixed (pcp_autotune off), to test refill/drain mechanics; autotune: test_fidelity.py
    a = mk(nr_pages=4096, pcp_batch=7, pcp_autotune="off")
    m = MM(a, 0)
    batch, high = zinfo(a, 2)["pcp_batch"], zinfo(a, 2)["pcp_high"]
    assert batch == 7 and high >= 4 * batch
    p = m.alloc_pages(G.GFP_KERNEL, 0)
    assert pcp_count(a, 0, 2) == batch - 1                              # one batch refilled
    assert Z.vm_events(a)["pcp_refill"] == 1
    m.free_pages(p)
    assert pcp_count(a, 0, 2) == batch
    assert m.alloc_pages(G.GFP_KERNEL, 0) == p                          # hot: freed to the head
    m.free_pages(p, 0, cold=True)
    q = m.alloc_pages(G.GFP_KERNEL, 0)
    assert q != p                                                       # cold: freed to the tail
    m.free_pages(q)
    held = [m.alloc_pages(G.GFP_KERNEL, 0) for _ in range(3 * high)]
    assert pcp_count(a, 0, 2) < batch
    for x in held:
        m.free_pages(x)
        assert pcp_count(a, 0, 2) < high                               # drained at high
    assert pcp_count(a, 0, 2) >= high - batch - 1
    assert Z.vm_events(a)["pcp_drain"] >= 1
    assert_clean(a)
    n = m.drain_local_pages()
    assert n > 0 and pcp_count(a, 0, 2) == 0
    assert zinfo(a, 2)["nr_free_pages"] == 3072
    assert_clean(a)


def test_pcp_high_orders_and_remote_free(mk) -> None:
    a = mk(nr_pages=4096)
    m0, m1 = MM(a, 0), MM(a, 1)
    blocks = [(m0.alloc_pages(G.GFP_KERNEL, o), o) for o in (1, 2, 3, 3, 0)]
    assert all(p >= 0 and p % (1 << o) == 0 for p, o in blocks)
    for p, o in blocks:
        m1.free_pages(p, o)                                          # freed on another CPU's PCP
    assert pcp_count(a, 1, 2) >= 1 + 2 + 4 + 8 + 8
    assert_clean(a)


def test_offline_cpu_drained_by_another(mk) -> None:
    a = mk(nr_pages=4096, pcp_batch=7)                 # a 12 MiB zone's own batch is 1
    m0, m1 = MM(a, 0), MM(a, 1)
    held = [m1.alloc_pages(G.GFP_KERNEL, o) for o in (0, 0, 1, 3)]
    for p, o in zip(held, (0, 0, 1, 3)):
        m1.free_pages(p, o)
    assert pcp_count(a, 1, 2) > 0
    n = m0.drain_cpu_pages(1)
    assert n > 0 and all(pcp_count(a, 1, z) == 0 for z in range(3))
    assert_clean(a)                                                     # P4: OFFLINE and empty
    assert sum(zinfo(a, z)["nr_free_pages"] for z in range(3)) == 4095 - pcp_count(a, 0, 2)
    p = m1.alloc_pages(G.GFP_KERNEL, 0)                                 # offline: buddy path
    assert p >= 0 and pcp_count(a, 1, 2) == 0
    m1.free_pages(p)
    assert pcp_count(a, 1, 2) == 0
    m0.pcp_cpu_online(1)
    p = m1.alloc_pages(G.GFP_KERNEL, 0)
    assert pcp_count(a, 1, 2) > 0
    m1.free_pages(p)
    assert_clean(a)


def test_pcp_disabled_never_uses_lists(mk) -> None:
    a = mk(nr_pages=4096, pcp_enabled=False)
    m = MM(a, 0)
    ps = [m.alloc_pages(G.GFP_KERNEL, o) for o in (0, 1, 3)]
    assert all(pcp_count(a, 0, z) == 0 for z in range(3))
    for p, o in zip(ps, (0, 1, 3)):
        m.free_pages(p, o)
    assert all(pcp_count(a, 0, z) == 0 for z in range(3))
    assert_clean(a)


# ----------------------------------------------------------------------------- folios, zero
def test_folio_refcount_frees_at_zero(mk) -> None:
    a = mk(nr_pages=4096)
    m = MM(a, 0)
    free0 = sum(zinfo(a, z)["nr_free_pages"] for z in range(3)) + pcp_count(a, 0, 2)
    f = m.folio_alloc(G.GFP_KERNEL, 2)
    pages = page_array(a)
    assert pages["flags"][f] & PG_head and pages["order"][f] == 2
    assert all(pages["flags"][f + i] & PG_tail and pages["head"][f + i] == f for i in (1, 2, 3))
    assert pages["refcount"][f] == 1
    m.folio_get(f)
    m.folio_put(f)
    assert pages["refcount"][f] == 1 and pages["flags"][f] & PG_head
    assert_clean(a)
    m.folio_put(f)
    assert pages["refcount"][f] == 0
    assert not (pages["flags"][f + 1] & PG_tail) and pages["head"][f + 1] == NIL
    del pages
    free1 = sum(zinfo(a, z)["nr_free_pages"] for z in range(3)) + sum(pcp_count(a, 0, z) for z in range(3))
    assert free1 == free0
    assert_clean(a)


def test_gfp_zero_and_page_view(mk) -> None:
    a = mk(nr_pages=4096)
    m = MM(a, 0)
    p = m.alloc_pages(G.GFP_KERNEL, 1)
    v = m.page_view(p, 1)
    v[:] = b"\xab" * len(v)
    m.free_pages(p, 1)
    q = m.alloc_pages(G.GFP_KERNEL | G.__GFP_ZERO, 1)
    assert q == p                                                      # hot page comes back
    assert bytes(v) == bytes(8192)
    v.release()
    m.free_pages(q, 1)


def test_double_free_warns_and_changes_nothing(mk) -> None:
    a = mk(nr_pages=4096)
    m = MM(a, 0)
    p = m.alloc_pages(G.GFP_KERNEL, 0)
    m.free_pages(p)
    with pytest.warns(BadPageWarning, match="refcount underflow"):
        m.free_pages(p)
    q = m.alloc_pages(G.GFP_KERNEL, 2)
    with pytest.warns(BadPageWarning, match="freed as order 0, allocated as order 2"):
        m.free_pages(q, 0)
    m.folio_get(q)                                   # the failed free dropped the reference
    m.free_pages(q, 2)
    assert_clean(a)


# ----------------------------------------------------------------------------- failure
class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def nopage_clock(monkeypatch) -> FakeClock:
    """A fresh warn_alloc rate limit (10 s, burst 1) on a clock the test moves."""
    from aerosync.lib.ratelimit import RatelimitState
    from aerosync.mm.pmm import page_alloc as PA

    clock = FakeClock()
    monkeypatch.setattr(PA, "nopage_rs", RatelimitState(10.0, 1, clock=clock))
    return clock


def test_failure_returns_minus_one_and_warns_with_zone_state(mk, nopage_clock) -> None:
    a = mk(nr_pages=4096, pcp_enabled=False)
    m = MM(a, 0)
    while m.alloc_pages(G.GFP_KERNEL | NOWARN, 0) >= 0:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.alloc_pages(G.GFP_KERNEL | NOWARN, 0) == -1           # no warning with NOWARN
    with pytest.warns(AllocFailureWarning, match=r"page allocation failure: order:0") as rec:
        assert m.alloc_pages(G.GFP_KERNEL, 0) == -1
    msg = str(rec[0].message)
    assert "Node 0 Normal free:" in msg and "min:" in msg and "Node 0 DMA32:" in msg
    nopage_clock.t += 10.0                                             # the next ratelimit window
    with pytest.warns(AllocFailureWarning, match="order:11"):
        assert m.alloc_pages(G.GFP_KERNEL, 11) == -1                   # above MAX_PAGE_ORDER
    ev = Z.vm_events(a)
    assert ev["pgalloc_fail"] >= 4 and ev["alloc_warn"] == 2 and ev["alloc_warn_suppressed"] == 0
    assert_clean(a)


def linux_warn_alloc_prints(times: list[float], interval: float, burst: int) -> list[bool]:
    """lib/ratelimit.c ___ratelimit() for mm/page_alloc.c warn_alloc()'s nopage_rs (v6.19:
    DEFINE_RATELIMIT_STATE(nopage_rs, 10*HZ, 1)), uncontended: the first call starts a
    window; a call at or past begin + interval starts a new one with `burst` passes."""
    out, begin, left = [], None, 0
    for t in times:
        if begin is None or t >= begin + interval:     # time_is_before_jiffies(begin + interval)
            begin, left = t, burst
        out.append(left > 0)
        left -= left > 0
    return out


def test_warn_alloc_is_rate_limited_like_nopage_rs(mk, nopage_clock) -> None:
    """warn_alloc: one AllocFailureWarning per 10 s (burst 1), the rest counted as
    alloc_warn_suppressed and reported ("callbacks suppressed") with the next warning;
    __GFP_NOWARN failures are neither; every failure counts pgalloc_fail."""
    a = mk(nr_pages=4096, pcp_enabled=False)
    m = MM(a, 0)
    times = [0.0, 0.5, 3.0, 9.99, 10.0, 10.1, 25.0, 25.0, 40.0]
    want = linux_warn_alloc_prints(times, 10.0, 1)
    assert want == [True, False, False, False, True, False, True, False, True]
    got, msgs = [], []
    start = nopage_clock.t
    for t in times:
        nopage_clock.t = start + t
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            assert m.alloc_pages(G.GFP_KERNEL, 11) == -1
            assert m.alloc_pages(G.GFP_KERNEL | NOWARN, 11) == -1       # never warns, never held
        w = [r for r in rec if issubclass(r.category, AllocFailureWarning)]
        got.append(bool(w))
        msgs += [str(r.message) for r in w]
    assert got == want
    assert msgs[1].startswith("warn_alloc: 3 callbacks suppressed\n") and "order:11" in msgs[1]
    assert msgs[2].startswith("warn_alloc: 1 callbacks suppressed\n")
    assert "suppressed" not in msgs[0]
    ev = Z.vm_events(a)
    assert ev["alloc_warn"] == want.count(True) == 4
    assert ev["alloc_warn_suppressed"] == want.count(False) == 5
    assert ev["pgalloc_fail"] == 2 * len(times)
    from aerosync.mm.pmm import page_alloc as PA

    assert PA.nopage_rs.suppressed_total == 5
    assert procfs.render_json(a, "vmstat")["aerosync_alloc_warn_suppressed"] == 5
    assert_clean(a)


# ----------------------------------------------------------------------------- NUMA
def test_node_order_by_distance_four_nodes() -> None:
    dist = [[10, 12, 20, 22], [12, 10, 22, 20], [20, 22, 10, 12], [22, 20, 12, 10]]
    orders = Z.build_node_orders(4, dist, [(0,), (1,), (2,), (3,)], [True] * 4)
    assert orders == [[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]]
    equal = [[10, 20, 20], [20, 10, 20], [20, 20, 10]]
    orders = Z.build_node_orders(3, equal, [(0,), (1,), (2,)], [True, True, True])
    assert [o[0] for o in orders] == [0, 1, 2] and all(sorted(o) == [0, 1, 2] for o in orders)
    assert Z.build_node_orders(2, [[10, 20], [20, 10]], [(0,), ()], [True, False]) == [[0], [0]]


def test_numastat_hit_miss_foreign_local_other(mk) -> None:
    a = mk(nr_pages=8192, nr_nodes=2, pcp_enabled=False)
    m0 = MM(a, 0)                                                     # cpu 0 on node 0
    p = m0.alloc_pages(G.GFP_KERNEL, 0)                                # local hit
    q = m0.alloc_pages_node(1, G.GFP_KERNEL, 1)                        # hit on node 1, other_node
    assert p < 4096 <= q
    st = Z.numastat(a)
    assert st[0]["numa_hit"] == 1 and st[0]["local_node"] == 1
    # numastat counts allocations (zone_statistics(..., 1)), pgalloc counts pages
    assert st[1]["numa_hit"] == 1 and st[1]["other_node"] == 1 and st[1]["local_node"] == 0
    pg = Z.zone_pgalloc(a)
    qz = a.u8[a.off("pagemeta") + (q << 6) + 6]
    assert pg[qz] == 2 and sum(pg) == 3
    assert V.fold(a).zone_pgalloc == pg and V.fold(a).node == st
    # exhaust node 1 for THISNODE, then a preferred-node-1 allocation spills to node 0
    while m0.alloc_pages_node(1, G.GFP_KERNEL | G.__GFP_THISNODE | NOWARN, 3) >= 0:
        pass
    before = Z.numastat(a)
    r = m0.alloc_pages_node(1, G.GFP_KERNEL | NOWARN, 0)
    assert 0 <= r < 4096
    st = Z.numastat(a)
    assert st[0]["numa_miss"] - before[0]["numa_miss"] == 1
    assert st[1]["numa_foreign"] - before[1]["numa_foreign"] == 1
    assert st[0]["local_node"] - before[0]["local_node"] == 1
    # nodemask restricts placement
    s = m0.alloc_pages_nodemask(G.GFP_KERNEL | NOWARN, 0, 0, 0b10)
    assert s == -1 or s >= 4096
    assert m0.alloc_pages_nodemask(G.GFP_KERNEL | NOWARN, 0, 1, 0b01) < 4096
    assert_clean(a)


def _closure_var(f: Callable[..., Any], name: str) -> Any:
    return dict(zip(f.__code__.co_freevars, (c.cell_contents for c in f.__closure__ or ()), strict=True))[name]


@pytest.mark.parametrize("pcp", [True, False])
def test_nodemask_plans_cached_fast_path_counted(mk, pcp: bool) -> None:
    """A non-local/nodemask order-0 allocation takes the cached plan (and, with PCP, the
    inlined PCP pop); numastat and pgalloc count it exactly as the general path would."""
    a = mk(nr_pages=8192, nr_nodes=2, pcp_enabled=pcp)
    m0 = MM(a, 0)
    before, pg0 = Z.numastat(a), Z.zone_pgalloc(a)
    held = []
    for i in range(40):                                # bind={1} from node 0, and preferred=1
        held.append(m0.alloc_pages_nodemask(G.GFP_KERNEL, 0, 0, 0b10) if i % 2 else
                    m0.alloc_pages_node(1, G.GFP_KERNEL, 0))
    held.append(m0.alloc_pages_nodemask(G.GFP_KERNEL, 2, 0, 0b10))
    assert all(p >= 4096 for p in held)
    st, pg = Z.numastat(a), Z.zone_pgalloc(a)
    d = [{k: st[n][k] - before[n][k] for k in st[n]} for n in range(2)]
    assert d[1]["numa_hit"] == d[1]["other_node"] == 41 and d[1]["numa_miss"] == d[1]["local_node"] == 0
    assert d[0] == dict.fromkeys(d[0], 0)                      # preferred zone = first zone after filtering
    assert sum(pg) - sum(pg0) == 44
    plans = _closure_var(m0.alloc_pages_nodemask, "plans")
    assert (G.GFP_KERNEL, 0, 0b10) in plans and (G.GFP_KERNEL, 1, None) in plans
    assert bool(plans[(G.GFP_KERNEL, 0, 0b10)][5]) == pcp      # the PCP fast path's facts
    for p, o in zip(held, [0] * 40 + [2]):
        m0.free_pages(p, o)
    # the cache is bounded: many distinct nodemasks evict the oldest plans
    for k in range(1, 1200):
        p = m0.alloc_pages_nodemask(G.GFP_KERNEL, 0, 0, 0b01 | k << 2)
        assert 0 <= p < 4096
        m0.free_pages(p)
    assert len(plans) <= _closure_var(_closure_var(m0.alloc_pages_nodemask, "make_plan"), "PLANS_MAX") < 1200
    assert_clean(a)


# ----------------------------------------------------------------------------- timings
# ----------------------------------------------------------------------------- multi-process
RING_SLOTS = 4096
RING_BYTES = 64 + RING_SLOTS * 16            # head u64 | tail u64 | ... | slots (entry, pattern)


def _ring_off(a: Arena, to_cpu: int) -> int:
    return a.off("xfer") + to_cpu * RING_BYTES


def stress_child(name: str, cpu: int, nr_cpus: int, ops: int, seed: int, res_off: int, go_off: int) -> None:
    """One simulated CPU: mixed-order alloc/free, pattern write + verify, cross-CPU frees."""
    a = Arena.attach(name)
    m = MM(a, cpu)
    at = a.atomic
    u64 = a.u64
    phys = a.off("physmem")
    rng = random.Random(seed)
    held: list[tuple[int, int, int]] = []
    bad = allocs = fails = xfreed = 0
    seq = 0
    at.fetch_add64(go_off, 1)
    while at.load64(go_off) < 1000:
        time.sleep(0.0005)
    my_ring = _ring_off(a, cpu)
    peer_ring = _ring_off(a, (cpu + 1) % nr_cpus)

    def verify_and_free(pfn: int, order: int, pat: int) -> int:
        errs = 0
        for i in range(1 << order):
            off = phys + ((pfn + i) << 12)
            if u64[off >> 3] != pat or u64[(off + 4088) >> 3] != pat ^ i:
                errs += 1
        m.free_pages(pfn, order)
        return errs

    for _ in range(ops):
        seq += 1
        r = rng.random()
        if r < 0.55 and len(held) < 400:
            order = rng.choice((0, 0, 0, 0, 1, 2, 3, 4))
            gfp = rng.choice((G.GFP_KERNEL, G.GFP_KERNEL, G.GFP_HIGHUSER_MOVABLE, G.GFP_ATOMIC,
                              G.GFP_KERNEL | G.__GFP_ZERO)) | NOWARN
            pfn = m.alloc_pages(gfp, order)
            if pfn < 0:
                fails += 1
                continue
            allocs += 1
            pat = cpu << 56 | seq
            for i in range(1 << order):
                off = phys + ((pfn + i) << 12)
                if gfp & G.__GFP_ZERO and u64[off >> 3] != 0:
                    bad += 1
                u64[off >> 3] = pat
                u64[(off + 4088) >> 3] = pat ^ i
            held.append((pfn, order, pat))
        elif r < 0.85 and held:
            pfn, order, pat = held.pop(rng.randrange(len(held)))
            bad += verify_and_free(pfn, order, pat)
        elif held:
            # hand a block to the next CPU through its ring (SPSC: we are its only producer)
            head = at.load64(peer_ring)
            tail = at.load64(peer_ring + 8)
            if head - tail < RING_SLOTS:
                pfn, order, pat = held.pop()
                slot = peer_ring + 64 + (head % RING_SLOTS) * 16
                u64[slot >> 3] = pfn << 8 | order
                u64[(slot + 8) >> 3] = pat
                at.store64(peer_ring, head + 1)
        # consume what the previous CPU handed us
        tail = at.load64(my_ring + 8)
        if at.load64(my_ring) != tail:
            slot = my_ring + 64 + (tail % RING_SLOTS) * 16
            ent, pat = u64[slot >> 3], u64[(slot + 8) >> 3]
            at.store64(my_ring + 8, tail + 1)
            bad += verify_and_free(ent >> 8, ent & 0xFF, pat)
            xfreed += 1
    for pfn, order, pat in held:
        bad += verify_and_free(pfn, order, pat)
    res = res_off + cpu * 64
    for i, v in enumerate((bad, allocs, fails, xfreed, seq)):
        u64[(res + 8 * i) >> 3] = v
    at.store64(res + 40, 1)
    gc.collect()
    a.close()


def test_multiprocess_stress_cross_cpu_frees(mk, spawn, soak: bool) -> None:
    nr_cpus = 2
    ops = 500_000 if soak else 100_000
    a = mk(nr_pages=8192, nr_cpus=nr_cpus, extra=[L.SectionSpec("xfer", nr_cpus * RING_BYTES + 4096)])
    base = a.off("xfer")
    res_off, go_off = base + nr_cpus * RING_BYTES, base + nr_cpus * RING_BYTES + 3072
    procs = [spawn(stress_child, a.name, c, nr_cpus, ops, 1000 + c, res_off, go_off) for c in range(nr_cpus)]
    deadline = time.monotonic() + 60
    while a.atomic.load64(go_off) < nr_cpus:
        assert time.monotonic() < deadline, "children never started"
        assert all(p.exitcode in (None, 0) for p in procs)
        time.sleep(0.01)
    t0 = time.perf_counter()
    a.atomic.store64(go_off, 1000)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    elapsed = time.perf_counter() - t0
    results = [[a.u64[(res_off + c * 64 + 8 * i) >> 3] for i in range(6)] for c in range(nr_cpus)]
    assert all(r[5] == 1 for r in results)
    assert sum(r[0] for r in results) == 0, f"pattern mismatches: {results}"
    assert sum(r[4] for r in results) >= 100_000
    assert sum(r[3] for r in results) > 1000                                # cross-CPU frees happened
    # blocks still in the rings: free them here (as cpu 0), then drain the dead CPUs' lists
    m = MM(a, 0)
    for c in range(nr_cpus):
        ring = _ring_off(a, c)
        head, tail = a.atomic.load64(ring), a.atomic.load64(ring + 8)
        for t in range(tail, head):
            slot = ring + 64 + (t % RING_SLOTS) * 16
            ent = a.u64[slot >> 3]
            m.free_pages(ent >> 8, ent & 0xFF)
    m.drain_local_pages()
    for c in range(1, nr_cpus):
        m.drain_cpu_pages(c)
    rep = check(a)
    assert rep.ok, str(rep)
    assert sum(zinfo(a, z)["nr_free_pages"] for z in range(3)) == 8191                 # nothing lost
    print(f"\nstress: {sum(r[4] for r in results)} ops on {nr_cpus} CPUs in {elapsed:.2f} s, "
          f"{sum(r[1] for r in results)} allocs, {sum(r[3] for r in results)} cross-CPU frees")


def test_remote_drain_while_owner_runs(mk, spawn) -> None:
    """cpu1 keeps allocating and freeing while cpu0 repeatedly takes its PCPs offline,
    drains them and hands them back: the PCP state-word protocol, under real concurrency."""
    a = mk(nr_pages=8192, nr_cpus=2, extra=[L.SectionSpec("xfer", 2 * RING_BYTES + 4096)])
    base = a.off("xfer")
    res_off, go_off = base + 2 * RING_BYTES, base + 2 * RING_BYTES + 3072
    p = spawn(stress_child, a.name, 1, 2, 40_000, 77, res_off, go_off)
    deadline = time.monotonic() + 60
    while a.atomic.load64(go_off) < 1:
        assert time.monotonic() < deadline and p.exitcode in (None, 0)
        time.sleep(0.01)
    m = MM(a, 0)
    a.atomic.store64(go_off, 1000)
    drains = drained = 0
    while p.exitcode is None:
        drained += m.drain_cpu_pages(1)
        drains += 1
        time.sleep(0.002)
        m.pcp_cpu_online(1)
        time.sleep(0.002)
    assert p.exitcode == 0
    assert a.u64[(res_off + 64) >> 3] == 0                    # no pattern mismatch on cpu1
    ring = _ring_off(a, 0)                                     # blocks cpu1 handed to cpu0
    for t in range(a.atomic.load64(ring + 8), a.atomic.load64(ring)):
        ent = a.u64[(ring + 64 + (t % RING_SLOTS) * 16) >> 3]
        m.free_pages(ent >> 8, ent & 0xFF)
    m.drain_local_pages()
    m.drain_cpu_pages(1)
    rep = check(a)
    assert rep.ok, str(rep)
    assert sum(zinfo(a, z)["nr_free_pages"] for z in range(3)) == 8191
    assert drains > 3 and drained > 0


@pytest.mark.parametrize("nodes,max_order,pcp,nr_pages", [(2, 5, True, 4096), (2, 10, False, 8192),
                                                          (4, 10, True, 8192), (1, 3, True, 1024),
                                                          (3, 7, False, 3000)])
def test_random_mix_debug_vm(monkeypatch, mk, nodes: int, max_order: int, pcp: bool, nr_pages: int) -> None:
    """Random nodemask/preferred-node/order mixes on four CPUs with DEBUG_VM's lock
    assertions on, over several topologies and MAX_PAGE_ORDERs; nothing lost at the end."""
    from aerosync.mm.pmm import _internal

    monkeypatch.setattr(_internal, "DEBUG_VM", True)
    a = mk(nr_pages=nr_pages, nr_cpus=4, nr_nodes=nodes, max_page_order=max_order, pcp_enabled=pcp)
    cpus = [MM(a, c) for c in range(4)]
    rng = random.Random(nodes * 100 + max_order)
    owned: dict[int, int] = {}
    gfps = [G.GFP_KERNEL, G.GFP_ATOMIC, G.GFP_HIGHUSER_MOVABLE, G.GFP_DMA32, G.GFP_KERNEL | G.__GFP_RECLAIMABLE,
            G.GFP_KERNEL | G.__GFP_COMP]
    for _ in range(6000):
        m = rng.choice(cpus)
        if rng.random() < 0.5:
            o = rng.choice([0, 0, 0, 1, 2, 3, rng.randint(0, max_order)])
            mask = rng.choice([None, None, rng.randrange(1, 1 << nodes)])
            p = m.alloc_pages_nodemask(rng.choice(gfps) | NOWARN, o, rng.randrange(nodes), mask)
            if p >= 0:
                assert p not in owned and p % (1 << o) == 0
                assert mask is None or mask >> int(page_array(a)["node"][p]) & 1
                owned[p] = o
        elif owned:
            p = rng.choice(list(owned))
            m.free_pages(p, owned.pop(p), rng.random() < 0.2)
    assert_clean(a)
    for p, o in owned.items():
        cpus[0].free_pages(p, o)
    for m in cpus:
        m.drain_local_pages()
    assert_clean(a)
    assert sum(zinfo(a, z)["nr_free_pages"] for z in range(3 * nodes)) == nr_pages - 1
