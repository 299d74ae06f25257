"""The page_fault1 fast paths (issue 9's speed work) against their slow equivalents:
free_pages_bulk (folios_put) leaves the allocator exactly as one free_pages per page
does, for every pcp_autotune mode, and sends anything unusual down the general path;
the LRU batches (lru_add_drain, lru_del_many) keep lists, flags and node stats exact
across nodes and batch boundaries; xa_insert matches a model and leaves the array
unchanged on -EBUSY / -ENOMEM; and a forced interleaving where two CPUs make the first
write to one page at once (the fast path's -EBUSY, then the PTE already set)."""

from __future__ import annotations

import random
import threading
import warnings
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.lib.xarray import ULONG_MAX, XA_NODE_ALIGN, XA_NODE_SIZE, XArray, xa_init, xa_mk_value
from aerosync.mm import hooks
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import NIL, PG_lru, page_array
from aerosync.mm.pmm.page_alloc import MM, BadPageWarning
from aerosync.mm.pmm.vm_event import fold_node_stats
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.check import reclaim_check
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.check import vm_check
from aerosync.mm.vm.tlb import tlb_entry_pfn
from aerosync.mm.vm.vm import VM
from tests.test_vm_races import Other, finish, stop_all, two_cpus
from tests.tree_helpers import NodeCache, snapshot

PG = 4096
RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
EBUSY, EINVAL, ENOMEM = 16, 22, 12


@pytest.fixture(autouse=True)
def _no_points() -> Iterator[None]:
    hooks.clear_points()
    yield
    stop_all()
    hooks.clear_points()


# ---------------------------------------------------------------- free_pages_bulk
def _alloc_state(a: Arena, cpu: int) -> dict[str, object]:
    """Everything a free can change: per-zone free lists and counts, this CPU's pcp
    records (all words) and list contents, the page words of every page, pgfree."""
    q, u32 = a.u64, a.u32
    nz = q[(a.off("mmzones") + Z.G_NR_ZONES) >> 3]
    out: dict[str, object] = {}
    for z in range(nz):
        info = Z.zone_info(a, z)
        out[f"zone{z}"] = (info["nr_free_pages"], tuple(info["nr_free"]))
        po = Z.pcp_off(a, cpu, z, nz)
        out[f"pcp{z}"] = tuple(q[(po >> 3) + k] for k in range(12))
        lists = []
        for li in range(Z.NR_PCP_LISTS):
            pfn, seen = u32[((po + Z.PCP_LISTS) >> 2) + 2 * li], []
            while pfn != NIL and len(seen) < 100_000:
                seen.append(pfn)
                pfn = u32[(a.off("pagemeta") >> 2) + (pfn << 4) + 4]
            lists.append(tuple(seen))
        out[f"lists{z}"] = tuple(lists)
    pa = page_array(a)
    out["flags"] = pa["flags"].tobytes()
    out["refcount"] = pa["refcount"].tobytes()
    out["pgfree"] = Z.vm_events(a)["pgfree"]
    return out


@pytest.mark.parametrize("autotune", ["batched", "exact", "off"])
def test_free_pages_bulk_matches_one_free_per_page(machine, autotune: str) -> None:
    """Two identical machines allocate the same pages; one frees them one by one, the
    other in free_pages_bulk calls -- across several commits and drains to the buddy,
    with some pages holding a second reference (only decremented)."""
    arenas = [machine(nr_pages=4096, pcp_batch=7, pcp_autotune=autotune) for _ in range(2)]
    mms = [MM(a, 0) for a in arenas]
    held = []
    for m in mms:
        pages = [m.alloc_pages(G.GFP_HIGHUSER_MOVABLE, 0) for _ in range(700)]
        pages += [m.alloc_pages(G.GFP_KERNEL, 0) for _ in range(50)]        # another migratetype
        held.append(pages)
    assert held[0] == held[1] and min(held[0]) >= 0
    rnd = random.Random(7)
    order = held[0][:]
    rnd.shuffle(order)
    twice = set(order[::9])
    for m in mms:
        for p in twice:
            m.folio_get(p)
    one, bulk = mms
    for p in order:
        one.free_pages(p)
    for k in range(0, len(order), 97):                                      # uneven batches
        bulk.free_pages_bulk(order[k:k + 97])
    assert _alloc_state(arenas[0], 0) == _alloc_state(arenas[1], 0)
    assert Z.vm_events(arenas[1])["pcp_drain"] >= 1                          # the commits drained
    for a, m in zip(arenas, mms):
        m.free_pages_bulk(sorted(twice))
        rep = check(a)
        assert rep.ok, str(rep)
    assert _alloc_state(arenas[0], 0) == _alloc_state(arenas[1], 0)


def test_free_pages_bulk_unusual_pages(machine) -> None:
    """A double free warns and changes nothing; a compound head frees its whole folio;
    pages of two zones go to each zone's pcp; with the pcp offline they go to the buddy."""
    a = machine(nr_pages=4096, pcp_batch=7)
    m, other = MM(a, 0), MM(a, 1)
    p = m.alloc_pages(G.GFP_KERNEL, 0)
    m.free_pages(p)
    ref = page_array(a)["refcount"][p]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m.free_pages_bulk([p])
    assert any(issubclass(x.category, BadPageWarning) for x in w)
    assert page_array(a)["refcount"][p] == ref == 0
    head = m.folio_alloc(G.GFP_KERNEL, 2)
    normal = m.alloc_pages(G.GFP_KERNEL, 0)
    dma32 = m.alloc_pages(G.GFP_DMA32, 0)
    zn, z32 = (Z.zone_info(a, z)["nr_free_pages"] for z in (2, 1))
    c2, c1 = (a.u64[(Z.pcp_off(a, 0, z, 4) + Z.PCP_COUNT) >> 3] for z in (2, 1))
    m.free_pages_bulk([normal, head, dma32])
    assert a.u64[(Z.pcp_off(a, 0, 2, 4) + Z.PCP_COUNT) >> 3] == c2 + 1 + 4          # order-2 folio: its pcp list
    assert a.u64[(Z.pcp_off(a, 0, 1, 4) + Z.PCP_COUNT) >> 3] == c1 + 1
    assert (Z.zone_info(a, 2)["nr_free_pages"], Z.zone_info(a, 1)["nr_free_pages"]) == (zn, z32)
    rep = check(a)
    assert rep.ok, str(rep)
    pages = [m.alloc_pages(G.GFP_KERNEL, 0) for _ in range(20)]
    other.drain_cpu_pages(0)                                                    # cpu0's pcps OFFLINE
    free0 = Z.zone_info(a, 2)["nr_free_pages"]
    m.free_pages_bulk(pages)
    assert a.u64[(Z.pcp_off(a, 0, 2, 4) + Z.PCP_COUNT) >> 3] == 0
    assert Z.zone_info(a, 2)["nr_free_pages"] == free0 + 20                     # pcp trylock failed
    other.pcp_cpu_online(0)
    rep = check(a)
    assert rep.ok, str(rep)


@pytest.mark.parametrize("mode", ["batched", "exact", "off", "nopcp"])
def test_alloc_page_fn_matches_alloc_pages(machine, mode: str) -> None:
    """alloc_page_fn(gfp)() hands out the pages alloc_pages(gfp, 0) would, with the same
    allocator state after, through refills, the HIGH-mark fallback and an empty zone."""
    kw = {"pcp_enabled": False} if mode == "nopcp" else {"pcp_autotune": mode}
    arenas = [machine(nr_pages=4096, pcp_batch=7, **kw) for _ in range(2)]
    gfp = G.GFP_HIGHUSER_MOVABLE | G.__GFP_NOWARN                # the last ones fail (ENOMEM)
    plain, fn = MM(arenas[0], 0), MM(arenas[1], 0).alloc_page_fn(gfp)
    got = [[plain.alloc_pages(gfp, 0) for _ in range(4200)], [fn() for _ in range(4200)]]
    assert got[0] == got[1] and got[0][-1] == -1 and got[0][0] >= 0
    assert _alloc_state(arenas[0], 0) == _alloc_state(arenas[1], 0)
    assert Z.vm_events(arenas[0]) == Z.vm_events(arenas[1])


def test_bulk_paths_go_through_wrapped_allocator(machine) -> None:
    """A wrapper installed on mm.alloc_pages / mm.free_pages after the build (mm/san's
    page hooks do that) sees every page alloc_page_fn hands out and free_pages_bulk
    frees: the fast paths do not bypass it."""
    a = machine(nr_pages=4096, pcp_batch=7)
    mm = MM(a, 0)
    seen: dict[str, list[int]] = {"alloc": [], "free": []}
    inner_alloc, inner_free = mm.alloc_pages, mm.free_pages

    def alloc(gfp: int, order: int) -> int:
        pfn = inner_alloc(gfp, order)
        seen["alloc"].append(pfn)
        return pfn

    def free(pfn: int, order: int = 0, cold: bool = False) -> None:
        seen["free"].append(pfn)
        inner_free(pfn, order, cold)

    mm.alloc_pages, mm.free_pages = alloc, free
    fn = mm.alloc_page_fn(G.GFP_HIGHUSER_MOVABLE)
    pfns = [fn() for _ in range(20)]
    assert seen["alloc"] == pfns and min(pfns) >= 0
    free_before = Z.vm_events(a)["pgfree"]
    mm.free_pages_bulk(pfns)
    assert seen["free"] == pfns
    assert Z.vm_events(a)["pgfree"] - free_before == len(pfns)
    mm.alloc_pages, mm.free_pages = inner_alloc, inner_free
    rep = check(a)
    assert rep.ok, str(rep)


# ---------------------------------------------------------------- LRU batches
def _lru_totals(a: Arena, cpu: VM) -> tuple[int, int]:
    lru = cpu.reclaim.lru
    on_lists = sum(n for nid in range(lru.off.nr_nodes) for _li, _h, _t, n in lru.list_ids(nid))
    st = fold_node_stats(a)
    stats = sum(n[k] for n in st for k in ("nr_inactive_anon", "nr_active_anon", "nr_inactive_file",
                                           "nr_active_file", "nr_unevictable"))
    return on_lists, stats


@pytest.mark.parametrize("lru", ["mglru", "classic"])
def test_lru_batches_two_nodes(machine, lru: str) -> None:
    """Folios of two nodes, interleaved, through lru_add (drained every FOLIO_BATCH) and
    then freed in one free_pages_bulk (lru_del_many relocks at every node change and
    every FOLIO_BATCH folios): lists, PG_lru, list ids and node stats stay exact."""
    a = machine(nr_pages=8192, nr_cpus=2, nr_nodes=2, slab=True, vm={}, reclaim={"lru": lru, "swap_size": 0})
    cpu = VM(a, 0)
    lr = cpu.reclaim.lru
    base = _lru_totals(a, cpu)
    pfns = []
    for k in range(3 * R.FOLIO_BATCH + 5):
        p = cpu.mm.alloc_pages_node(k & 1, G.GFP_HIGHUSER_MOVABLE, 0)
        assert p >= 0
        pfns.append(p)
        lr.lru_add(p)
    lr.lru_add_drain()
    pa = page_array(a)
    assert {int(pa["node"][p]) for p in pfns} == {0, 1}
    assert all(pa["flags"][p] & PG_lru for p in pfns) and all(pa["refcount"][p] == 1 for p in pfns)
    assert _lru_totals(a, cpu) == (base[0] + len(pfns), base[1] + len(pfns))
    assert reclaim_check(a, cpu) == []
    cpu.mm.free_pages_bulk(pfns)
    pa = page_array(a)
    assert not any(pa["flags"][p] & PG_lru for p in pfns)
    assert _lru_totals(a, cpu) == base
    assert reclaim_check(a, cpu) == []
    cpu.leave()
    rep = check(a)
    assert rep.ok, str(rep)


@pytest.mark.parametrize("lru", ["mglru", "classic"])
def test_page_fault1_cycle_keeps_lru_and_pages_exact(machine, lru: str) -> None:
    """The cycle the fast paths serve, twice over: every page reaches an LRU, munmap
    frees them all (the gather's batch, then the object's), nothing is left anywhere."""
    a = machine(nr_pages=8192, nr_cpus=2, slab=True, vm={}, reclaim={"lru": lru, "swap_size": 0})
    cpu = VM(a, 0)
    cpu.switch_to(cpu.task_create("pf1"))
    base = _lru_totals(a, cpu)
    free0 = sum(Z.zone_info(a, z)["nr_free_pages"] for z in range(3))
    for _ in range(2):
        addr = cpu.mmap(0, 700 * PG, RW, ANON)
        for i in range(700):
            cpu.store64(addr + i * PG + 8 * (i % 512), i + 1)
        assert all(cpu.load64(addr + i * PG + 8 * (i % 512)) == i + 1 for i in range(700))
        cpu.reclaim.lru.lru_add_drain()
        assert _lru_totals(a, cpu)[0] == base[0] + 700
        assert reclaim_check(a, cpu) == []
        cpu.munmap(addr, 700 * PG)
        assert _lru_totals(a, cpu) == base and reclaim_check(a, cpu) == []
        assert sum(n["nr_anon_pages"] for n in fold_node_stats(a)) == 0
    cpu.mm.drain_local_pages()
    assert sum(Z.zone_info(a, z)["nr_free_pages"] for z in range(3)) >= free0 - 8     # page tables at most
    cpu.exit()
    cpu.leave()
    rep = check(a)
    assert rep.ok, str(rep)


# ---------------------------------------------------------------- xa_insert
@pytest.fixture
def xenv(machine: Callable[..., Arena]) -> Iterator[tuple[Arena, NodeCache, Callable[[], XArray]]]:
    a = machine(slab=True, nr_pages=4096, extra=[L.SectionSpec("treetest", 1 << 20)])
    nc = NodeCache(a, 0, "radix_tree_node", XA_NODE_SIZE, XA_NODE_ALIGN)
    slot = iter(range(a.off("treetest") + 8192, a.off("treetest") + (1 << 20), 64))

    def make() -> XArray:
        root = next(slot)
        xa_init(a, root)
        return XArray(a, root, nc.alloc, nc.free, nc.rcu_free)

    yield a, nc, make
    nc.close()


IDX = st.one_of(st.integers(0, 70), st.integers(0, 5000), st.integers(0, 1 << 19),
                st.sampled_from([0, 63, 64, 4095, 4096, (1 << 18) - 1, 1 << 18, ULONG_MAX]),
                st.integers(0, ULONG_MAX))
OPS = st.lists(st.one_of(st.tuples(st.just("insert"), IDX), st.tuples(st.just("erase"), IDX),
                         st.tuples(st.just("reinsert"), st.integers(0, 1000))), min_size=5, max_size=60)


def test_xa_insert_matches_model(xenv) -> None:
    _a, nc, make = xenv

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=OPS)
    def run(ops: list[tuple[str, int]]) -> None:
        xa, model = make(), {}
        for n, (op, i) in enumerate(ops):
            if op == "reinsert" and model:
                i = sorted(model)[i % len(model)]
            if op == "erase":
                assert xa.xa_erase(i) == model.pop(i, 0)
                continue
            e = xa_mk_value(n) if n % 3 == 0 else (n + 1) << 2
            r = xa.xa_insert(i, e)
            if i in model:
                assert r == -EBUSY and xa.xa_load(i) == model[i]
            else:
                assert r == 0
                model[i] = e
            assert xa.xa_validate() == []
        assert list(xa.xa_for_each()) == sorted(model.items())
        assert xa.xa_drain() == sorted(model.items())                  # and the array is empty
        assert xa.xa_empty() and xa.xa_load(next(iter(model), 0)) == 0
        nc.grace()
        assert not nc.live

    run()
    xa = make()
    assert xa.xa_insert(5, 0x402) == -EINVAL and xa.xa_insert(5, 0) == -EINVAL
    assert xa.xa_insert(1 << 64, 4) == -EINVAL and xa.xa_insert(-1, 4) == -EINVAL
    assert xa.xa_insert(ULONG_MAX, 4) == 0 and xa.xa_load(ULONG_MAX) == 4
    assert xa.xa_validate() == []


def test_xa_insert_enomem_and_ebusy_change_nothing(xenv) -> None:
    a, nc, make = xenv
    for setup in ([], [0], [5, 70], list(range(0, 5000, 7))):
        xa = make()
        for i in setup:
            assert xa.xa_insert(i, (i + 1) << 2) == 0
        nc.grace()
        for i in (0, 3, 64, 4096, 1 << 30, ULONG_MAX, 262_143, *setup[:3]):
            state = snapshot(a, xa.root_off, [n[0] for n in xa._nodes()], XA_NODE_SIZE)
            if i in setup:
                assert xa.xa_insert(i, 0xABC << 2) == -EBUSY
                assert snapshot(a, xa.root_off, [n[0] for n in xa._nodes()], XA_NODE_SIZE) == state
                continue
            for fail_in in range(16):
                live = set(nc.live)
                nc.fail_in = fail_in
                r = xa.xa_insert(i, 0xABC << 2)
                nc.fail_in = None
                if r == -ENOMEM:
                    assert snapshot(a, xa.root_off, [n[0] for n in xa._nodes()], XA_NODE_SIZE) == state
                    assert nc.live == live
                    continue
                assert r == 0 and xa.xa_load(i) == 0xABC << 2
                assert xa.xa_erase(i) == 0xABC << 2
                break
        assert xa.xa_validate() == []
        xa.xa_destroy()
        nc.grace()
    assert not nc.live


# ---------------------------------------------------------------- two first writes, one page
def test_two_cpus_first_write_to_one_page(machine) -> None:
    """CPU A's fault has its new page in the object, PTE not yet set, when CPU B writes
    the same page: B's fast path finds the index taken (xa_insert -EBUSY) and maps A's
    page through the general path; A then finds the PTE set, drops its mapping and
    retries the access.  One page, one mapping, both writes in it."""
    a, A, B = two_cpus(machine)
    addr = A.mmap(0, 4 * PG, RW, ANON)
    other: list[Other] = []
    gate = threading.Event()

    def before_install(_name: str) -> None:
        if threading.current_thread() is not threading.main_thread() or other:
            return
        o = Other(B, lambda: B.store64(addr + PG + 16, 2)).start()
        other.append(o)
        o.join(A2)
        gate.set()

    hooks.set_point("fault:before_install", before_install)
    A2 = VM(a, 0)                                   # built with the point set (B was not)
    A2.switch_to(A.current_task())
    A2.make_current(thread_only=True)
    A2.store64(addr + PG + 8, 1)
    assert gate.is_set()
    hooks.clear_points()
    assert A2.load64(addr + PG + 8) == 1 and A2.load64(addr + PG + 16) == 2
    pfn = tlb_entry_pfn(A2.mmu.translate(addr + PG, False), a.off("physmem") >> 3)
    pa = page_array(a)
    batched = sum(1 for x in R.pcpu_batch_pfns(a) if x == pfn)          # lru_add batch references
    assert pa["mapcount"][pfn] == 1 and pa["refcount"][pfn] == 2 + batched
    assert sum(n["nr_anon_pages"] for n in fold_node_stats(a)) == 1
    del pa
    stop_all()
    r = vm_check(a)                                 # objects, rmap, refcounts, RSS: no page lost
    assert r.ok, r.violations[:5]
    A.task = -1
    finish(a, A2, B)
    A.leave()
