"""Property test: random alloc/free sequences on two simulated CPUs against a reference
model (the set of allocated blocks), with the invariant checker after every example."""

from __future__ import annotations

import gc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page_alloc import MM
from tests.test_page_alloc import make_mm_arena

NR_PAGES = 4096
DMA_END, DMA32_END = Z.zone_boundaries(NR_PAGES)
GFPS = [G.GFP_KERNEL, G.GFP_ATOMIC, G.GFP_NOWAIT, G.GFP_HIGHUSER_MOVABLE, G.GFP_KERNEL | G.__GFP_RECLAIMABLE,
        G.GFP_DMA, G.GFP_DMA32, G.GFP_KERNEL | G.__GFP_ZERO, G.GFP_KERNEL | G.__GFP_COMP,
        G.GFP_KERNEL | G.__GFP_HIGH]

op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 1), st.sampled_from(GFPS),
              st.one_of(st.integers(0, 3), st.integers(0, 10))),
    st.tuples(st.just("free"), st.integers(0, 1), st.integers(0, 10_000), st.booleans()),
    st.tuples(st.just("drain"), st.integers(0, 1)),
    st.tuples(st.just("offline"), st.integers(0, 1)),
)


def _limit(gfp: int) -> int:
    return DMA_END if gfp & G.__GFP_DMA else DMA32_END if gfp & G.__GFP_DMA32 else NR_PAGES


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=120), pcp=st.booleans())
def test_random_alloc_free_matches_model(ops: list[tuple], pcp: bool) -> None:
    a = make_mm_arena(nr_pages=NR_PAGES, pcp_enabled=pcp)
    try:
        cpus = [MM(a, 0), MM(a, 1)]
        owned: dict[int, int] = {}                 # pfn -> order (the reference model)
        used = bytearray(NR_PAGES)
        offline = [False, False]
        for o in ops:
            kind, c = o[0], o[1]
            m = cpus[c]
            if kind == "alloc":
                gfp, order = o[2] | G.__GFP_NOWARN, o[3]
                pfn = m.alloc_pages(gfp, order)
                if pfn < 0:
                    continue
                assert pfn % (1 << order) == 0, "block not aligned to its order"
                assert pfn + (1 << order) <= _limit(gfp), "block outside the zones the gfp allows"
                assert not any(used[pfn : pfn + (1 << order)]), "block overlaps an allocated one"
                used[pfn : pfn + (1 << order)] = b"\x01" * (1 << order)
                owned[pfn] = order
                if gfp & G.__GFP_ZERO:
                    v = m.page_view(pfn, order)
                    assert not any(v)
                    v.release()
            elif kind == "free" and owned:
                pfn = sorted(owned)[o[2] % len(owned)]
                order = owned.pop(pfn)
                used[pfn : pfn + (1 << order)] = bytes(1 << order)
                m.free_pages(pfn, order, o[3])
            elif kind == "drain":
                m.drain_local_pages()
            elif kind == "offline":
                other = 1 - c
                if offline[other]:
                    m.pcp_cpu_online(other)
                    offline[other] = False
                else:
                    m.drain_cpu_pages(other)
                    offline[other] = True
        rep = check(a)
        assert rep.ok, str(rep)
        free = sum(Z.zone_info(a, z)["nr_free_pages"] for z in range(3))
        nr_zones = 3
        pcp_pages = sum(a.u64[(Z.pcp_off(a, cpu, z, nr_zones) + Z.PCP_COUNT) >> 3]
                        for cpu in range(2) for z in range(3))
        assert free + pcp_pages + sum(1 << o for o in owned.values()) == NR_PAGES - 1
        for pfn, order in list(owned.items()):
            cpus[0].free_pages(pfn, order)
        for m in cpus:
            m.drain_local_pages()
        cpus[0].drain_cpu_pages(1)
        cpus[0].drain_local_pages()
        rep = check(a)
        assert rep.ok, str(rep)
        assert sum(Z.zone_info(a, z)["nr_free_pages"] for z in range(3)) == NR_PAGES - 1
        # everything merged back: the init-time block structure
        assert Z.zone_info(a, 2)["nr_free"][10] == 3
        del cpus, m
    finally:
        gc.collect()
        a.close()
        a.unlink()
