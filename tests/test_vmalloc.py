"""vmalloc (mm/vm/vmalloc.py): the slices' gap trees against a sorted-list model,
alignment and slice exhaustion, vmap_blocks, lazy purging (one shootdown; no address
reused before its flush, forced with two CPUs), huge mappings, vmap, the views, and
the checker's VA1..VA5 (each broken on purpose)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerosync.mm import hooks
from aerosync.mm.pmm.check import check as mm_check
from aerosync.mm.pmm.gfp import GFP_KERNEL
from aerosync.mm.san import report as R
from aerosync.mm.vm import vmalloc_layout as VL
from aerosync.mm.vm.check import vm_check
from aerosync.mm.vm.pgtable import _PAGE_PSE
from aerosync.mm.vm.vm import VM
from aerosync.mm.vm.vmalloc import VmallocWarning, vmalloc_areas, vmalloc_meminfo, vmallocinfo_text
from aerosync.mm.vm.vmalloc_check import VMALLOC_INVARIANTS, block_allocations
from aerosync.sync import waithook as W

PG = 4096
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _no_points() -> Iterator[None]:
    hooks.clear_points()
    yield
    hooks.clear_points()


@pytest.fixture
def kvm(machine: Callable[..., Any]) -> Iterator[Callable[..., tuple[Any, VM]]]:
    """A VM machine and CPU 0 running a task; left and checked at teardown."""
    made: list[tuple[Any, VM]] = []

    def factory(nr_pages: int = 8192, nr_cpus: int = 1, vmalloc: dict[str, Any] | None = None,
                **kw: Any) -> tuple[Any, VM]:
        a = machine(nr_pages=nr_pages, nr_cpus=nr_cpus, slab=True, vm={}, vmalloc=vmalloc or {}, **kw)
        cpu = VM(a, 0)
        cpu.switch_to(cpu.task_create("t"))
        made.append((a, cpu))
        return a, cpu

    yield factory
    for _a, cpu in made:
        if cpu.current_task() >= 0:
            cpu.exit()
        cpu.leave()


def _ok(a: Any, final: bool = False) -> None:
    r = vm_check(a, final=final)
    assert r.ok, r.violations[:5]
    assert mm_check(a).ok


def _q(a: Any, f: int) -> int:
    return a.u64[(a.off("vmalloc") + f) >> 3]


# ------------------------------------------------------------------ the gap tree vs a model
def _model_fit(busy: list[tuple[int, int]], lo: int, hi: int, size: int, align: int) -> int:
    """find_vmap_lowest_match(): the lowest free gap of size + align - PAGE, aligned up."""
    need = size + (align - PG if align > PG else 0)
    cur = lo
    for s, e in [*sorted(busy), (hi, hi)]:
        if s - cur >= need:
            return (cur + align - 1) & ~(align - 1)
        cur = max(cur, e)
    return -1


@pytest.fixture
def gap_machine(kvm) -> tuple[Any, VM]:
    """One machine for every example of the model test (each example frees what it took)."""
    return kvm(nr_pages=2048, vmalloc={"size_gb": 1})


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(1, 96), st.sampled_from([PG, 4 * PG, 16 * PG, 2 * MIB])),
                    min_size=10, max_size=60))
def test_gap_tree_matches_a_sorted_list_model(gap_machine, ops) -> None:
    a, cpu = gap_machine
    v = cpu.kernel.vmalloc
    no = VL.node_off(a.off("vmalloc"), 0)
    lo, hi = a.u64[(no + VL.VN_START) >> 3], a.u64[(no + VL.VN_END) >> 3]
    fixed = [(d["start"], d["end"]) for d in vmalloc_areas(a)]          # the task's kernel stack
    busy: dict[int, tuple[int, int]] = {}
    for grow, pages, align in ops:
        if grow or not busy:
            size = pages * PG
            want = _model_fit(fixed + list(busy.values()), lo, hi, size, align)
            va = v.alloc_vmap_area(size, align, 0, VL.VA_VMAP)
            got = a.u64[(va + VL.VA_START) >> 3]
            assert got == want and got % align == 0
            busy[va] = (got, got + size)
        else:
            va = sorted(busy)[pages % len(busy)]
            v.free_vmap_area(va)
            del busy[va]
        spans = sorted(fixed + list(busy.values()))
        assert all(e1 <= s2 for (_, e1), (s2, _) in pairwise(spans))        # never overlapping
    for va in list(busy):
        v.free_vmap_area(va)
    assert v.trees[0].mt_validate() == []


def test_alignment_overshoot_and_slice_exhaustion_fall_back_by_distance(kvm) -> None:
    a, cpu = kvm(nr_pages=2048, nr_nodes=2, vmalloc={"size_gb": 1})
    v = cpu.kernel.vmalloc
    base = a.off("vmalloc")
    slice_ = _q(a, VL.H_SLICE)
    lo0 = a.u64[(VL.node_off(base, 0) + VL.VN_START) >> 3]
    s0 = max(d["end"] for d in vmalloc_areas(a))           # past the task's kernel stack
    # one page at the lowest free address, then a 2 MiB-aligned request: the next boundary
    small = v.alloc_vmap_area(PG, PG, 0, VL.VA_VMAP)
    big = v.alloc_vmap_area(2 * MIB, 2 * MIB, 0, VL.VA_VMAP)
    assert a.u64[(small + VL.VA_START) >> 3] == s0
    assert a.u64[(big + VL.VA_START) >> 3] == lo0 + 2 * MIB
    # the lowest fit is used again for a small request (the gap before the aligned area)
    second = v.alloc_vmap_area(PG, PG, 0, VL.VA_VMAP)
    assert a.u64[(second + VL.VA_START) >> 3] == s0 + PG
    for va in (small, big, second):
        v.free_vmap_area(va)
    # node 0's slice full: the next area comes from node 1's; both full: no area at all
    fill = v.alloc_vmap_area(slice_ - (s0 - lo0), PG, 0, VL.VA_VMAP)
    assert fill and v.slice_of(a.u64[(fill + VL.VA_START) >> 3]) == 0
    other = v.alloc_vmap_area(16 * PG, PG, 0, VL.VA_VMAP)
    assert other and v.slice_of(a.u64[(other + VL.VA_START) >> 3]) == 1
    fill1 = v.alloc_vmap_area(slice_ - 16 * PG, PG, 1, VL.VA_VMAP)
    assert fill1
    assert v.alloc_vmap_area(PG, PG, 0, VL.VA_VMAP) == 0
    with pytest.warns(VmallocWarning, match="vmalloc error: size 819200, vm_struct allocation failed"):
        assert v.vmalloc(PG * 200) == 0
    for va in (fill, other, fill1):
        v.free_vmap_area(va)
    x = v.vmalloc(PG * 200)
    assert x and v.slice_of(x) == 0                       # own node first again
    v.vfree(x)
    _ok(a)


# ------------------------------------------------------------------ vmalloc, vfree, views
def test_vmalloc_maps_pages_vfree_is_lazy_and_views_show_it(kvm) -> None:
    a, cpu = kvm()
    v, kmem = cpu.kernel.vmalloc, cpu.kernel.kmem
    x = v.vmalloc(3 * MIB + 123)                          # its own area
    assert v.block_of(x) == 0
    kmem.store64(x + 3 * MIB, 0xABCD)
    assert kmem.load64(x + 3 * MIB) == 0xABCD
    pfn = v.vmalloc_to_page(x + 3 * MIB)
    assert a.u64[(a.off("physmem") + pfn * PG) >> 3] == 0xABCD
    assert v.vmalloc_to_page(x + 3 * MIB + 2 * PG) == -1     # the guard page
    info = vmallocinfo_text(a)
    line = next(ln for ln in info.splitlines() if ln.startswith(f"0x{x:016x}"))
    assert f"{3 * MIB + 2 * PG:7d}" in line and "pages=769 vmalloc N0=769" in line
    assert "test_vmalloc_maps_pages" in line                 # the caller, as %pS
    mi = vmalloc_meminfo(a)
    assert mi["VmallocTotal"] == 128 << 20 and mi["VmallocUsed"] >= 769 * 4
    _ok(a)
    y = v.vzalloc(5 * PG)                                  # a vmap_block sub-range
    assert v.block_of(y) and kmem.load(y, 5 * PG) == bytes(5 * PG)
    v.vfree(x)
    v.vfree(y)
    assert "unpurged vm_area" in vmallocinfo_text(a)
    assert _q(a, VL.H_LAZY_NR) == 770
    _ok(a)
    assert v.purge_vmap_area_lazy() == 1
    assert "unpurged" not in vmallocinfo_text(a) and _q(a, VL.H_LAZY_NR) == 0
    _ok(a)


def test_vfree_of_no_area_warns_and_frees_nothing(kvm) -> None:
    a, cpu = kvm()
    v = cpu.kernel.vmalloc
    x = v.vmalloc(MIB)
    before = R.bug_counts(a)["vfree"]
    old = R.set_console(False)
    try:
        v.vfree(x + PG)                                   # not its start
        v.vfree(v.vmalloc(8 * PG) + PG)                   # inside a block sub-range
        v.vfree(x)
        v.vfree(x)                                        # twice
    finally:
        R.set_console(old)
    assert R.bug_counts(a)["vfree"] - before == 3
    assert "Trying to vfree() nonexistent vm area" in R.recent()[-1][1]
    _ok(a)


def test_vmalloc_huge_maps_pmd_leaves(kvm) -> None:
    a, cpu = kvm(nr_pages=8192)
    v, kmem = cpu.kernel.vmalloc, cpu.kernel.kmem
    x = v.vmalloc_huge(4 * MIB + 3 * PG)
    assert x % (2 * MIB) == 0
    pmd = v.table_for(x, 2, False)
    e = a.u64[(a.off("physmem") >> 3) + (pmd << 9) + ((x >> 21) & 511)]
    assert e & _PAGE_PSE
    kmem.store64(x + 2 * MIB + 8, 77)
    assert kmem.load64(x + 2 * MIB + 8) == 77 and v.vmalloc_to_page(x + PG) == v.vmalloc_to_page(x) + 1
    assert v.vmalloc_to_page(x + 4 * MIB + 2 * PG) >= 0 and v.vmalloc_to_page(x + 4 * MIB + 3 * PG) < 0   # tail, guard
    _ok(a)
    v.vfree(x)
    v.purge_vmap_area_lazy()
    _ok(a)


def test_vmap_maps_the_callers_pages_and_vunmap_leaves_them(kvm) -> None:
    a, cpu = kvm()
    k = cpu.kernel
    pfns = [cpu.mm.alloc_pages(GFP_KERNEL, 0) for _ in range(3)]
    x = k.vmalloc.vmap(pfns)
    k.kmem.store64(x + 2 * PG, 5)
    assert a.u64[(a.off("physmem") + pfns[2] * PG) >> 3] == 5
    assert "pages=3 vmap" in vmallocinfo_text(a)
    k.vmalloc.vunmap(x)
    assert k.vmalloc.vmalloc_to_page(x) == -1
    assert a.u32[(a.off("pagemeta") >> 2) + pfns[0] * 16 + 2] == 1       # still the caller's
    for p in pfns:
        cpu.mm.free_pages(p, 0)
    _ok(a)


# ------------------------------------------------------------------ vmap_blocks
def test_vmap_block_fill_free_retire_and_reuse(kvm) -> None:
    a, cpu = kvm()
    v = cpu.kernel.vmalloc
    first = [v.vmalloc(2 * PG) for _ in range(85)]       # 85 x (2 pages + guard) = 255 of 256
    vb = v.block_of(first[0])
    assert all(v.block_of(x) == vb for x in first) and len(block_allocations(a, vb)) == 85
    assert a.u32[(vb + VL.VB_FREE) >> 2] == 1 and a.u32[(vb + VL.VB_STATE) >> 2] == VL.VB_QUEUED
    nxt = v.vmalloc(2 * PG)                                # 3 pages do not fit: a new block
    assert v.block_of(nxt) != vb
    start = a.u64[(vb + VL.VB_START) >> 3]
    for x in first[:-1]:
        v.vfree(x)
    assert a.u32[(vb + VL.VB_DIRTY) >> 2] == 252 and a.u32[(vb + VL.VB_DIRTY_MIN) >> 2] == 0
    assert v.vmalloc_to_page(first[0]) == -1              # unmapped at once, the range never reused
    _ok(a)
    lazy0 = _q(a, VL.H_LAZY_NR)
    v.vfree(first[-1])                                     # nothing in use, 1 page left: retired
    assert v.block_of(start) == 0 and _q(a, VL.H_LAZY_NR) == lazy0 + 256
    _ok(a)
    v.vfree(nxt)
    v.purge_vmap_area_lazy()
    got = v.alloc_vmap_area(VL.VMAP_BLOCK_SIZE, PG, 0, VL.VA_VMAP)   # the purged block's range is free again
    s = a.u64[(got + VL.VA_START) >> 3]
    assert s < start + VL.VMAP_BLOCK_SIZE and s + VL.VMAP_BLOCK_SIZE > start
    v.free_vmap_area(got)
    _ok(a)


def test_vfree_shootdowns_batch_per_lazy_max_pages(kvm) -> None:
    a, cpu = kvm(nr_pages=24576)
    v = cpu.kernel.vmalloc
    f0 = _q(a, VL.H_NR_FLUSHES)
    xs = [v.vmalloc(64 << 10) for _ in range(1000)]
    assert all(xs)
    for x in xs:
        v.vfree(x)
    assert _q(a, VL.H_NR_FLUSHES) - f0 <= 2               # 67 blocks of lazy pages: two purges
    _ok(a)


# ------------------------------------------------------------------ lazy purge vs allocation, two CPUs
def test_no_area_is_reused_before_its_shootdown_completes(machine) -> None:
    """CPU A purges and is stopped after taking the lazy lists, before its TLB flush;
    CPU B, which still caches a translation of the freed area, allocates the same size:
    it must get another address.  Once A's shootdown (answered by B) and erase are done,
    B gets the freed address back and sees its new page, never the stale one."""
    a = machine(nr_pages=8192, nr_cpus=2, slab=True, vm={"mm": "threads"}, vmalloc={"vmap_block_max_kb": 0})
    A, B = VM(a, 0), VM(a, 1)
    mm = A.forks.mm_alloc()
    A.switch_to(A.task_create("a", mm=mm))
    B.switch_to(B.task_create("b", mm=mm))
    A.forks.mmput(mm)
    va, vb = A.kernel.vmalloc, B.kernel.vmalloc
    x = va.vmalloc(4 * PG)
    A.kernel.kmem.store64(x, 1111)
    W.set_wait_hook(B.tlb.handle_ipi, thread_only=True)
    assert B.kernel.kmem.load64(x) == 1111                  # B's TLB holds x now
    old_pfn = va.vmalloc_to_page(x)
    A.kernel.vmalloc.vfree(x)
    stopped, go, done = threading.Event(), threading.Event(), threading.Event()
    err: list[BaseException] = []

    def at_taken(_name: str) -> None:
        stopped.set()
        while not go.is_set():
            A2.tlb.handle_ipi()
            time.sleep(0.0005)

    hooks.set_point("vmalloc:purge_taken", at_taken)
    A2 = VM(a, 0)                                          # rebuilt: its purge carries the point
    A2.switch_to(A.current_task())

    def purger() -> None:
        W.set_wait_hook(A2.tlb.handle_ipi, thread_only=True)
        try:
            A2.kernel.vmalloc.purge_vmap_area_lazy()
        except BaseException as e:
            err.append(e)
        done.set()
        while not stop.is_set():
            A2.tlb.handle_ipi()
            time.sleep(0.0005)

    stop = threading.Event()
    t = threading.Thread(target=purger, daemon=True)
    t.start()
    assert stopped.wait(20)
    y = vb.vmalloc(4 * PG)                                  # the lazy area is still reserved
    assert y and y != x
    go.set()
    while not done.is_set():                                 # the shootdown waits for B's answer
        B.tlb.handle_ipi()
        time.sleep(0.0005)
    assert not err, err
    z = vb.vmalloc(4 * PG)                                  # lowest fit: x's address again
    assert z == x
    B.kernel.kmem.store64(z, 2222)
    assert B.kernel.kmem.load64(z) == 2222
    assert vb.vmalloc_to_page(z) != old_pfn or a.u64[(a.off("physmem") + old_pfn * PG) >> 3] == 2222
    assert B.kernel.kmem.translate(z, False) == a.off("physmem") + vb.vmalloc_to_page(z) * PG
    stop.set()
    t.join(10)
    for c in (vb,):
        c.vfree(y)
        c.vfree(z)
    B.exit()
    A.task = -1
    A2.exit()
    for c in (A2, B, A):
        c.leave()
    _ok(a, final=True)


# ------------------------------------------------------------------ the checker: VA1..VA5
def _broken(a: Any, inv: str, final: bool = False) -> None:
    r = vm_check(a, final=final)
    assert inv in r.counts, (inv, r.violations[:5])


def test_VA1_tree_entry_range_mismatch(kvm) -> None:
    a, cpu = kvm()
    x = cpu.kernel.vmalloc.vmalloc(MIB)
    va = cpu.kernel.vmalloc.find_vmap_area(x)
    a.u64[(va + VL.VA_END) >> 3] += PG
    _broken(a, "VA1")
    a.u64[(va + VL.VA_END) >> 3] -= PG
    _ok(a)


def test_VA2_kernel_leaf_outside_every_area(kvm) -> None:
    a, cpu = kvm()
    v = cpu.kernel.vmalloc
    x = v.vmalloc(MIB)
    guard = x + MIB
    t = v.table_for(guard, 1, True)
    i = (a.off("physmem") >> 3) + (t << 9) + ((guard >> 12) & 511)
    a.u64[i] = a.u64[(a.off("physmem") >> 3) + (t << 9) + ((x >> 12) & 511)]      # map the guard page
    _broken(a, "VA2")
    a.u64[i] = 0
    _ok(a)


def test_VA3_lazy_count_off(kvm) -> None:
    a, cpu = kvm()
    v = cpu.kernel.vmalloc
    v.vfree(v.vmalloc(MIB))
    a.u64[(a.off("vmalloc") + VL.H_LAZY_NR) >> 3] += 1
    _broken(a, "VA3")
    a.u64[(a.off("vmalloc") + VL.H_LAZY_NR) >> 3] -= 1
    _ok(a)


def test_VA4_block_counts_off(kvm) -> None:
    a, cpu = kvm()
    v = cpu.kernel.vmalloc
    x = v.vmalloc(PG)
    vb = v.block_of(x)
    a.u32[(vb + VL.VB_DIRTY) >> 2] += 1
    _broken(a, "VA4")
    a.u32[(vb + VL.VB_DIRTY) >> 2] -= 1
    _ok(a)


def test_VA5_leaked_vmap_area_record(kvm) -> None:
    a, cpu = kvm()
    cache = cpu.slub.cache("vmap_area")
    leak = cache.alloc()
    _broken(a, "VA5", final=True)
    cache.free(leak)
    _ok(a, final=True)


def test_every_vmalloc_invariant_has_a_test() -> None:
    import sys

    names = {n.split("_")[1] for n in dir(sys.modules[__name__]) if n.startswith("test_VA")}
    assert set(VMALLOC_INVARIANTS) <= names, sorted(set(VMALLOC_INVARIANTS) - names)


def test_robust_mode_vmalloc_logs_and_undoes_a_failure(kvm) -> None:
    """Robust mode fills an area page by page inside a vm_vmalloc record
    (vmalloc_logged): a good allocation reads back and frees as ever; one that runs out
    of pages half-way is undone -- its mapped pages, its range -- and warns as vmalloc
    errors do; nothing is left of it, and no record stays open."""
    from aerosync.mm import intent as I
    from aerosync.mm.recovery import accounting

    a, cpu = kvm(nr_pages=4096, fault={"test": 1})
    v, kmem = cpu.kernel.vmalloc, cpu.kernel.kmem
    x = v.vmalloc(64 * PG)
    kmem.store64(x + 63 * PG, 0x5A5A)
    assert kmem.load64(x + 63 * PG) == 0x5A5A
    v.vfree(x)
    v.purge_vmap_area_lazy()
    _ok(a)
    areas = len(vmalloc_areas(a))
    used = []
    for _ in range(2):                                    # the second finds init_mm's tables made
        with pytest.warns(VmallocWarning, match="page allocation failure"):
            assert v.vmalloc(4096 * PG) == 0              # more than the machine has
        cpu.mm.drain_local_pages()
        used.append(accounting(a)["pages_allocated"])
        assert len(vmalloc_areas(a)) == areas
        assert I.read_records(a, 0) == []
        _ok(a)
    assert used[0] == used[1]
