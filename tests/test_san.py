"""The sanitizers and hardening (mm/san/) and kernel stacks (mm/vm/kstack.py): shadow
encoding at object boundaries, the quarantine's order, every corpus bug found with a
report naming the right sites, KFENCE's pool, guard-page and canary detection,
SLAB_FREELIST_HARDENED, init_on_alloc / init_on_free, and the [debug] / [vmalloc]
configuration errors."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aerosync.errors import ScenarioError
from aerosync.mm.pmm.check import check as mm_check
from aerosync.mm.pmm.gfp import GFP_KERNEL
from aerosync.mm.san import kfence as KF
from aerosync.mm.san import page_hooks
from aerosync.mm.san import report as R
from aerosync.mm.san import shadow as SH
from aerosync.mm.san.kasan import kasan_cpu_offline, quarantine_entries, quarantine_len
from aerosync.mm.san.kfence import Kfence, kfence_freelist, kfence_live
from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.layout import SLAB_RED_ZONE, VBASE
from aerosync.mm.slab.slab_check import slab_check
from aerosync.mm.slab.slab_common import cache_info, kmem_cache_create
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vmalloc_layout as VL
from aerosync.mm.vm.check import vm_check
from aerosync.mm.vm.vm import VM
from aerosync.scenario import load_scenario
from workers.workloads import registry
from workers.workloads.bug_corpus import BUGS, CORPUS_CACHE, Corpus

PG = 4096


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    old = R.set_console(False)
    yield
    R.set_console(old)


@pytest.fixture
def san(machine: Callable[..., Any]) -> Iterator[Callable[..., tuple[Any, VM]]]:
    """A VM machine with [debug] settings and CPU 0 running a task; left at teardown."""
    made: list[VM] = []

    def factory(nr_pages: int = 4096, **debug: Any) -> tuple[Any, VM]:
        a = machine(nr_pages=nr_pages, nr_cpus=1, slab=True, vm={}, debug=debug)
        cpu = VM(a, 0)
        cpu.switch_to(cpu.task_create("san"))
        made.append(cpu)
        return a, cpu

    yield factory
    for cpu in made:
        if cpu.current_task() >= 0:
            cpu.exit()
        cpu.leave()


def _clean(a: Any, cpu: VM, final: bool = False) -> None:
    assert mm_check(a).ok
    r = slab_check(a)
    assert r.ok, r.violations[:5]
    r = vm_check(a, final=final)
    assert r.ok, r.violations[:5]


def _shadow(a: Any, addr: int, n: int) -> list[int]:
    o = a.off("kasanshadow") + ((addr - VBASE) >> 3)
    return list(a.u8[o : o + n])


# ------------------------------------------------------------------ KASAN: shadow, quarantine, reports
def test_shadow_encoding_at_object_boundaries(san) -> None:
    a, cpu = san(kasan=True)
    km = Kmalloc(cpu.slub)
    p = km.kmalloc(13)                                         # kmalloc-16: 13 bytes usable
    assert _shadow(a, p, 3) == [0x00, 0x05, SH.KASAN_SLAB_REDZONE]
    q = km.kmalloc(64)
    assert _shadow(a, q, 9) == [0] * 8 + [SH.KASAN_SLAB_REDZONE]     # the redzone right after it
    rz = cache_info(a, cpu.slub.cache("kmalloc-64").id)
    assert rz["size"] >= 64 + 16 and rz["kasan_meta"] >= 64         # optimal_redzone(64): 16
    km.kfree(q)
    assert _shadow(a, q, 9) == [SH.KASAN_SLAB_FREE] * 8 + [SH.KASAN_SLAB_REDZONE]
    big = km.kmalloc(3 * PG + 5)                               # kmalloc_large: order 2
    assert _shadow(a, big + 3 * PG, 2) == [0x05, SH.KASAN_PAGE_REDZONE]
    km.kfree(big)
    assert set(_shadow(a, big, 4 * PG // 8)) == {SH.KASAN_PAGE_FREE}
    pfn = cpu.mm.alloc_pages(GFP_KERNEL, 0)
    assert set(_shadow(a, VBASE + pfn * PG, 512)) == {0}
    cpu.mm.free_pages(pfn, 0)
    assert set(_shadow(a, VBASE + pfn * PG, 512)) == {SH.KASAN_PAGE_FREE}
    pfn = cpu.mm.alloc_pages(GFP_KERNEL, 0)                    # a frozen free (reclaim's, a give-back)
    a.u32[(a.off("pagemeta") >> 2) + (pfn << 4) + 2] = 0
    cpu.mm.free_frozen_pages(pfn, 0, False)
    assert set(_shadow(a, VBASE + pfn * PG, 512)) == {SH.KASAN_PAGE_FREE}
    v = cpu.kernel.vmalloc
    x = v.vmalloc(PG + 100)
    s = a.off("kasanshadow") + (v.vmalloc_to_page(x + PG) << 9)
    assert list(a.u8[s + 11 : s + 14]) == [0, 0x04, SH.KASAN_VMALLOC_INVALID]      # 100 bytes: 12 granules + 4
    assert cpu.kernel.kasan.shadow_of_va(x + 2 * PG, cpu.kernel.vmalloc.vmalloc_to_page) == SH.KASAN_VMALLOC_INVALID
    km.kfree(p)
    v.vfree(x)


def test_quarantine_holds_freed_objects_fifo(san) -> None:
    a, cpu = san(kasan=True, kasan_quarantine_kb=1)           # 1 KiB: 16 objects of kmalloc-64
    km = Kmalloc(cpu.slub)
    objs = [km.kmalloc(64) for _ in range(40)]
    for o in objs[:16]:
        km.kfree(o)
    assert quarantine_len(a, 0) == 16
    fresh = {km.kmalloc(64) for _ in range(8)}
    assert not fresh & set(objs[:16])                           # nothing quarantined is handed out
    assert quarantine_entries(a, 0) == objs[:16]                # oldest first
    km.kfree(objs[16])                                          # over budget: the oldest leaves
    assert quarantine_entries(a, 0) == objs[1:17]
    assert set(_shadow(a, objs[0], 8)) == {SH.KASAN_SLAB_FREE}  # released: free in SLUB, still poisoned
    for o in [*objs[17:], *fresh]:
        km.kfree(o)
    _clean(a, cpu)
    assert kasan_cpu_offline(a, 0, cpu.slub) == 16 and quarantine_len(a, 0) == 0
    _clean(a, cpu)


def test_every_corpus_bug_is_caught_under_kasan_with_its_sites(san) -> None:
    a, cpu = san(nr_pages=8192, kasan=True)
    kmem_cache_create(a, CORPUS_CACHE, 64, 8)
    corpus = Corpus(cpu)
    for bug in BUGS:
        caught, sites, ran = corpus.run(bug)
        assert ran and caught and sites, (bug, corpus.last[1][:2000])
        text = corpus.last[1]
        if bug in ("stack_overflow",):
            assert "BUG: TASK stack guard page was hit at" in text and "Comm: san" in text and "CPU: 0" in text
            continue
        lines = text.splitlines()
        assert lines[0] == "=" * 66 and lines[-1] == "=" * 66
        assert lines[1].startswith("BUG: KASAN: ")
        if bug in ("double_free", "invalid_free"):
            assert lines[1].startswith(f"BUG: KASAN: {bug.replace('_', '-')} in ")
            assert lines[2].startswith("Free of addr ")
        else:
            assert " of size " in lines[2] and " at addr " in lines[2] and " by task " in lines[2]
        assert "Memory state around the buggy address:" in text
        rows = text.partition("Memory state around the buggy address:\n")[2].splitlines()
        marked = [i for i, ln in enumerate(rows) if ln.startswith(">")]
        assert len(marked) == 1 and rows[marked[0] + 1].strip() == "^"
    want = {"oob_read_1": "slab-out-of-bounds", "oob_granule": "slab-out-of-bounds", "uaf_read": "slab-use-after-free",
            "uaf_write": "slab-use-after-free", "vmalloc_oob": "vmalloc-out-of-bounds",
            "canary_smash": "stack-out-of-bounds"}
    for bug, kind in want.items():
        corpus.run(bug)
        assert f"BUG: KASAN: {kind} in " in corpus.last[1], bug
    corpus.run("uaf_read")
    t = corpus.last[1]
    assert "Allocated by task" in t and "Freed by task" in t and "bug_uaf_read" in t.partition("Freed by task")[2]
    assert "The buggy address is located 0 bytes inside of\n freed 32-byte region" in t
    corpus.run("oob_read_1")
    assert "located 0 bytes to the right of\n allocated 13-byte region" in corpus.last[1]
    _clean(a, cpu)


def test_wild_and_null_accesses_are_kasan_reports(san) -> None:
    _a, cpu = san(kasan=True)
    kmem = cpu.kernel.kmem
    for addr, kind in ((8, "null-ptr-deref"), (0x7000_0000, "user-memory-access"),
                       (0xFFFF_F000_0000_0000, "wild-memory-access")):
        with pytest.raises(R.KernelBug) as ei:
            kmem.load64(addr)
        assert ei.value.bug == kind and f"BUG: KASAN: {kind} in" in ei.value.report


def test_kasan_machine_stays_consistent_and_drains(san) -> None:
    a, cpu = san(kasan=True)
    km = Kmalloc(cpu.slub)
    for i in range(300):
        km.kfree(km.kmalloc(8 + (i % 500)))
    vma = cpu.mmap(0, 16 * PG, 3, 0x22)
    cpu.store64(vma, 1)
    cpu.munmap(vma, 16 * PG)
    assert quarantine_len(a, 0) > 0
    cpu.exit()
    cpu.leave()                                                 # kasan_cpu_offline for its own quarantine
    assert quarantine_len(a, 0) == 0
    _clean(a, cpu, final=True)


# ------------------------------------------------------------------ KFENCE
def test_kfence_guards_uaf_invalid_free_and_canary(san) -> None:
    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=31)
    kf = cpu.kernel.kfence
    km = Kmalloc(cpu.slub)
    kmem = cpu.kernel.kmem
    objs = []
    while True:                                                 # every allocation tries the pool
        o = km.kmalloc(64)
        if not kf.is_kfence(o):
            break                                               # pool exhausted: the slab allocator
        objs.append(o)
    assert len(objs) >= 7 and kfence_live(a) == 31
    assert kfence_live(a, cpu.slub.cache("kmalloc-64").id) == len(objs)
    _clean(a, cpu)                                              # S5 holds with objects in the pool
    o = objs[0]
    kmem.store64(o, 9)
    assert kmem.load64(o) == 9
    page = o & ~(PG - 1)
    guard = page + PG if o + 64 == page + PG else page - PG     # the guard next to the object's end or start
    with pytest.raises(R.KernelBug) as ei:
        kmem.load(guard, 1)
    assert ei.value.kind == "kfence" and "BUG: KFENCE: out-of-bounds read in " in ei.value.report
    assert re.search(r"\nOut-of-bounds read at 0x[0-9a-f]{16} \(\d+B (right|left) of kfence-#\d+\):\n",
                     ei.value.report)
    assert "allocated by task" in ei.value.report and "test_kfence_guards" in ei.value.report
    km.kfree(o)
    with pytest.raises(R.KernelBug) as ei:
        kmem.load64(o)
    assert "BUG: KFENCE: use-after-free read in " in ei.value.report and "freed by task" in ei.value.report
    with pytest.raises(R.KernelBug) as ei:
        km.kfree(o)                                             # double free: KFENCE's invalid free
    assert "BUG: KFENCE: invalid free in " in ei.value.report
    o2 = objs[1]
    in_page = o2 + 64 if o2 + 64 < (o2 & ~(PG - 1)) + PG else o2 - 1
    kmem.store(in_page, b"\x00")                                # past the object, inside its page
    n = R.emitted()
    km.kfree(o2)                                                # the canary check at free reports
    assert R.emitted() == n + 1 and "BUG: KFENCE: memory corruption in " in R.recent()[-1][1]
    assert kfence_live(a, cpu.slub.cache("kmalloc-64").id) == len(objs) - 2   # freed all the same
    for x in objs[2:]:
        km.kfree(x)


def _kfree_site(km: Kmalloc, x: int) -> None:
    km.kfree(x)


def test_kfence_canary_both_sides_and_kfree_counts(san) -> None:
    """The canary is checked on each side of the object (a side that is empty -- the
    object at its page's start or end -- is skipped, the other one still checked); kfree
    of a pool object counts the free in its cache (S5) and saves the free site."""
    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=31)
    kf = cpu.kernel.kfence
    km = Kmalloc(cpu.slub)
    kmem = cpu.kernel.kmem
    objs = []
    while True:
        o = km.kmalloc(64)
        if not kf.is_kfence(o):
            km.kfree(o)
            break
        objs.append(o)
    at_start = [o for o in objs if not o & (PG - 1)]
    at_end = [o for o in objs if (o & (PG - 1)) + 64 == PG]
    assert at_start and at_end                                  # 31 objects, each side drawn by a coin
    for o, bad in ((at_start[0], at_start[0] + 64 + 7), (at_end[0], at_end[0] - 8)):
        kmem.store(bad, b"\x00")
        n = R.emitted()
        km.kfree(o)
        rep = R.recent()[-1][1]
        assert R.emitted() == n + 1 and "BUG: KFENCE: memory corruption in " in rep
        assert f"Corrupted memory at 0x{bad:016x} " in rep
    clean = [o for o in objs if o not in (at_start[0], at_end[0])]
    n = R.emitted()
    x = clean[0]
    _kfree_site(km, x)
    assert R.emitted() == n                                     # an intact canary: no report
    with pytest.raises(R.KernelBug) as ei:
        kmem.load64(x)
    assert "freed by task" in ei.value.report and "_kfree_site" in ei.value.report.split("freed by task")[1]
    for o in clean[1:]:
        km.kfree(o)
    assert kfence_live(a, cpu.slub.cache("kmalloc-64").id) == 0
    _clean(a, cpu)                                              # S5: every pool free counted in kmalloc-64


def _cache_alloc_site(kc: Any) -> int:
    return kc.alloc()


def _cache_free_site(kc: Any, x: int) -> None:
    kc.free(x)


@pytest.mark.parametrize("flags", [0, SLAB_RED_ZONE], ids=["inline-gate", "hook-gate"])
def test_kfence_tracks_name_the_callers_of_kmem_cache_alloc_and_free(san, flags: int) -> None:
    """kmem_cache_alloc/free of a pool object save the caller's frames, whichever gate
    sampled it: slub.py's inline one (two allocator frames skipped unvisited) or
    slab_hooks.py's wrapper (a debug cache: one frame)."""
    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=7)
    kc = cpu.slub.cache(kmem_cache_create(a, f"kf-site-{flags}", 48, 8, flags))
    kf = cpu.kernel.kfence
    x = _cache_alloc_site(kc)
    assert kf.is_kfence(x)
    _cache_free_site(kc, x)
    with pytest.raises(R.KernelBug) as ei:
        cpu.kernel.kmem.load64(x)
    alloc_part, _, free_part = ei.value.report.partition("freed by task")
    assert "_cache_alloc_site" in alloc_part.partition("allocated by task")[2]
    assert "test_kfence_tracks_name_the_callers" in alloc_part.partition("allocated by task")[2]
    assert "_cache_free_site" in free_part


def test_kfence_stats_and_page_protection(san) -> None:
    """/sys/kernel/debug/kfence/stats' lines (procfs view kfence_stats) count allocations,
    frees and the skips for capacity and size; the protection byte of an object's page is
    set while it is allocated and cleared when it is freed (the fast access check)."""
    from aerosync import procfs

    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=4)
    kf = cpu.kernel.kfence
    cid = cpu.slub.cache("kmalloc-64").id
    st0 = KF.kfence_stats(a)                                    # the machine's own start took some
    objs = []
    while (x := kf.alloc(cid, 64, 8, 0)):
        objs.append(x)
    assert objs and st0["currently allocated"] + len(objs) == 4  # the pool is full: a capacity skip
    assert kf.alloc(cid, 2 * PG, 8, 0) == 0                     # larger than a page: incompatible
    assert [a.u8[kf.prot + ((x - kf.lo) >> 12)] for x in objs] == [1] * len(objs)
    kf.free(objs[0])
    assert a.u8[kf.prot + ((objs[0] - kf.lo) >> 12)] == 0
    assert sum(a.u8[kf.prot : kf.prot + (kf.hi - kf.lo) // PG]) == 3        # guards and free pages: 0
    n = st0["total allocations"] + len(objs)
    text = procfs.render(a, "kfence_stats")
    assert text == (f"enabled: 1\ncurrently allocated: 3\ntotal allocations: {n}\n"
                    f"total frees: {n - 3}\nzombie allocations: 0\ntotal bugs: 0\n"
                    f"skipped allocations (incompatible): 1\n"
                    f"skipped allocations (capacity): {st0['skipped allocations (capacity)'] + 1}\n"
                    "skipped allocations (covered): 0\n")
    assert procfs.render_json(a, "kfence_stats")["currently allocated"] == 3
    for x in objs[1:]:
        kf.free(x)
    with pytest.raises(R.KernelBug):
        kf.free(objs[1])                                        # double free: counted as a bug
    assert KF.kfence_stats(a)["total bugs"] == 1
    assert KF.kfence_stats(a)["currently allocated"] == st0["currently allocated"] == kfence_live(a)


def test_kfence_pool_is_reserved_top_of_memory_and_frees_take_the_slow_path(san) -> None:
    """The pool is the last pages of physical memory, reserved (never the buddy's, not
    managed); kmem_cache_free and its bulk form reach KFENCE through SLUB's slow path
    (a pool page is never the CPU slab), kfree through its non-slab branch; a kfree of a
    guard page is KFENCE's invalid free, not a large-kmalloc free of a reserved page."""
    from aerosync.mm.pmm.page import PG_reserved, page_array
    from aerosync.mm.san import config as SC

    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=15)
    kf = cpu.kernel.kfence
    nr = a.sections["physmem"][1] // PG
    first, end = SC.kfence_pool_pfns(nr, 15)
    assert end == nr and (kf.lo - VBASE) // PG == first and (kf.hi - VBASE) // PG == end
    pages = page_array(a)
    assert all(int(pages["flags"][p]) & PG_reserved for p in range(first, end))
    del pages
    kc = cpu.slub.cache(kmem_cache_create(a, "kf-bulk", 40, 8))
    objs = [kc.alloc() for _ in range(4)]
    assert all(kf.is_kfence(x) for x in objs)
    kc.free_bulk(objs[:2])
    kc.free(objs[2])
    km = Kmalloc(cpu.slub)
    with pytest.raises(R.KernelBug) as ei:
        km.kfree(kf.lo)                                         # pool page 0: a guard
    assert "BUG: KFENCE: invalid free in " in ei.value.report
    kc.free(objs[3])
    assert kfence_live(a, kc.id) == 0
    _clean(a, cpu)                                              # S5: the frees counted once each


def test_kfence_takes_kmallocs_requested_size(san) -> None:
    """kmalloc tells a KFENCE sample the size asked for (kfence_alloc's orig_size): a
    13-byte kmalloc is a 13-byte pool object (ksize 13, kzalloc zeroes 13 bytes), so a
    write one byte past it is in the canary and reported at free -- in kmalloc-16."""
    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=15)
    kf = cpu.kernel.kfence
    km = Kmalloc(cpu.slub)
    kmem = cpu.kernel.kmem
    x = km.kmalloc(13)
    assert kf.is_kfence(x) and km.ksize(x) == 13
    z = km.kzalloc(13)
    assert kf.is_kfence(z) and kmem.load(z, 13) == bytes(13)
    kmem.store(x + 13, b"\x5a")                                 # inside kmalloc-16's object, past 13
    n = R.emitted()
    km.kfree(x)
    assert R.emitted() == n + 1 and "BUG: KFENCE: memory corruption in " in R.recent()[-1][1]
    km.kfree(z)
    assert R.emitted() == n + 1                                 # an intact canary: no report
    assert kfence_live(a, cpu.slub.cache("kmalloc-16").id) == 0
    _clean(a, cpu)


def _kf_index(kf: Any, addr: int) -> int:
    return ((addr - kf.lo) >> 12) // 2 - 1


def test_kfence_freelist_is_lru_across_the_stack_of_frees(san) -> None:
    """Frees go onto a lock-free stack; an allocation that finds the list empty takes the
    stack and reverses it: reuse stays oldest-freed first (Linux's LRU freelist)."""
    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=8)
    kf = cpu.kernel.kfence
    cid = cpu.slub.cache("kmalloc-64").id
    objs = []
    while (x := kf.alloc(cid, 64, 8, 0)):
        objs.append(x)
    assert len(objs) >= 5 and kfence_freelist(a) == []
    order = [objs[2], objs[0], objs[4]]
    for x in order:
        kf.free(x)
    assert kfence_freelist(a) == [_kf_index(kf, x) for x in order]
    assert _kf_index(kf, kf.alloc(cid, 64, 8, 0)) == _kf_index(kf, order[0])    # the stack became the list
    kf.free(objs[1])                                            # pushed while the list is not empty
    got = [_kf_index(kf, kf.alloc(cid, 64, 8, 0)) for _ in range(3)]
    assert got == [_kf_index(kf, x) for x in (order[1], order[2], objs[1])]
    assert kf.alloc(cid, 64, 8, 0) == 0 and kfence_freelist(a) == []


def test_kfence_push_and_take_race_a_concurrent_push(san) -> None:
    """Forced: CPU 1 pushes a free between CPU 0's read of the stack's top and its CAS --
    in a free (push) and in an allocation taking the stack: CPU 0's CAS fails and
    retries, and both objects stay free, in free order."""
    from aerosync.mm import hooks

    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=8)
    cid = cpu.slub.cache("kmalloc-64").id
    fired: list[str] = []
    other: list[Any] = []

    def cut_in(name: str) -> None:
        if not fired and other:
            fired.append(name)
            other[0].free(other.pop())

    hooks.set_point("kfence:push_read", cut_in)
    hooks.set_point("kfence:take_read", cut_in)
    try:
        k0, k1 = Kfence(a, 0), Kfence(a, 1)                     # built with the points set
        objs = []
        while (x := k0.alloc(cid, 64, 8, 0)):
            objs.append(x)
        assert len(objs) >= 4 and kfence_freelist(a) == []
        other[:] = [k1, objs[1]]
        k0.free(objs[0])                                        # CPU 1 frees objs[1] inside
        assert fired == ["kfence:push_read"]
        assert kfence_freelist(a) == [_kf_index(k0, objs[1]), _kf_index(k0, objs[0])]
        assert [_kf_index(k0, k0.alloc(cid, 64, 8, 0)) for _ in range(2)] == \
            [_kf_index(k0, objs[1]), _kf_index(k0, objs[0])]
        k0.free(objs[2])
        fired.clear()
        other[:] = [k1, objs[3]]
        assert _kf_index(k0, k0.alloc(cid, 64, 8, 0)) == _kf_index(k0, objs[2])  # CPU 1 frees objs[3] inside
        assert fired == ["kfence:take_read"]
        assert kfence_freelist(a) == [_kf_index(k0, objs[3])]   # taken by the retried CAS, not lost
    finally:
        hooks.clear_points()


def test_kfence_frees_and_allocations_on_two_cpus_lose_nothing(san) -> None:
    """Two CPUs' handles (threads switching every microsecond) allocate and free pool
    objects at once: the lock-free pushes and the allocations' takes of the stack never
    lose or duplicate an object, and the counters agree with the lists (debugfs stats)."""
    a, cpu = san(kfence_sample_interval=1, kfence_num_objects=16)
    cid = cpu.slub.cache("kmalloc-64").id
    kfs = [cpu.kernel.kfence, Kfence(a, 1)]
    errs: list[BaseException] = []
    nobj = 16

    def worker(kf: Any, seed: int) -> None:
        try:
            held: list[int] = []
            for i in range(1500):
                x = kf.alloc(cid, 64, 8, 0)
                if x:
                    held.append(x)
                if len(held) > 3 or (held and (i + seed) % 3 == 0):
                    kf.free(held.pop(0))
            for x in held:
                kf.free(x)
        except BaseException as e:                          # reported by the main thread
            errs.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        ts = [threading.Thread(target=worker, args=(kf, i)) for i, kf in enumerate(kfs)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errs, errs
    free = kfence_freelist(a)
    assert len(free) == len(set(free)) == nobj - kfence_live(a)
    st = KF.kfence_stats(a)
    assert st["currently allocated"] == kfence_live(a) == nobj - len(free)
    assert st["total allocations"] - st["total frees"] == st["currently allocated"]


# ------------------------------------------------------------------ kernel stacks and the stack protector
def test_every_task_gets_a_guarded_vmap_stack_reused_from_the_cache(san) -> None:
    a, cpu = san()
    t = cpu.current_task()
    o = T.task_off(a, t)
    base = a.u64[(o + T.T_KSTACK) >> 3]
    v = cpu.kernel.vmalloc
    assert v.start <= base < v.end
    assert v.vmalloc_to_page(base) >= 0 and v.vmalloc_to_page(base + VL.THREAD_SIZE - 1) >= 0
    assert v.vmalloc_to_page(base - 1) == -1 and v.vmalloc_to_page(base + VL.THREAD_SIZE) == -1
    assert a.u64[(o + T.T_CANARY) >> 3] & 0xFF == 0 and a.u64[(o + T.T_CANARY) >> 3]
    cpu.kernel.kmem.store64(base + 8, 0xDEAD)
    child = cpu.fork()
    cb = a.u64[(T.task_off(a, child) + T.T_KSTACK) >> 3]
    assert cb != base and a.u64[(T.task_off(a, child) + T.T_CANARY) >> 3] != a.u64[(o + T.T_CANARY) >> 3]
    cpu.exit(child)
    cpu.reap(child)
    again = cpu.task_create("again")                            # the cached stack, cleared
    assert a.u64[(T.task_off(a, again) + T.T_KSTACK) >> 3] == cb
    assert cpu.kernel.kmem.load(cb, VL.THREAD_SIZE) == bytes(VL.THREAD_SIZE)
    cpu.exit(again)
    _clean(a, cpu)


def test_stack_overflow_hits_the_guard_and_names_task_cpu_address(san) -> None:
    a, cpu = san()
    fr = cpu.kernel.frames
    base = a.u64[(T.task_off(a, cpu.current_task()) + T.T_KSTACK) >> 3]
    with pytest.raises(R.KernelBug) as ei:
        for d in range(1000):
            fr.call(f"deep_{d}", 200)
    e = ei.value
    assert e.kind == "stack-overflow"
    first = e.report.splitlines()[0]
    assert first.startswith("BUG: TASK stack guard page was hit at ")
    hit = int(first.split()[8], 16)
    assert base - PG <= hit < base and f"(stack is {base:016x}..{base + VL.THREAD_SIZE:016x})" in first
    assert "Comm: san" in e.report and "CPU: 0 " in e.report and "Oops: stack guard page" in e.report
    fr.reset()
    loc = fr.call("after", 64)                                  # the stack works again after the oops
    fr.ret()
    assert loc < base + VL.THREAD_SIZE


def test_canary_smash_is_stack_chk_fail_and_only_with_the_protector(san) -> None:
    _a, cpu = san()
    fr, kmem = cpu.kernel.frames, cpu.kernel.kmem
    loc = fr.call("parse_options", 32)
    kmem.store(loc, b"x" * 40)
    with pytest.raises(R.KernelBug) as ei:
        fr.ret()
    assert ei.value.kind == "stack-protector"
    assert ei.value.report.startswith("Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: "
                                      "parse_options+")
    assert "Comm: san" in ei.value.report and "CPU: 0 " in ei.value.report
    fr.reset()
    loc = fr.call("fine", 32)
    kmem.store(loc, b"y" * 32)                                  # within bounds: no report
    fr.ret()
    _a2, cpu2 = san(stack_protector=False)
    fr2 = cpu2.kernel.frames
    loc = fr2.call("parse_options", 32)
    cpu2.kernel.kmem.store(loc, b"x" * 40)                      # the saved rbp is hit, nothing checks
    fr2.ret()


# ------------------------------------------------------------------ hardening
def test_freelist_pointers_are_obfuscated_and_corruption_caught(san) -> None:
    a, cpu = san(freelist_hardened=True)
    cid = kmem_cache_create(a, "hard-64", 64, 8)
    kc = cpu.slub.cache(cid)
    info = cache_info(a, cid)
    assert info["random"]
    p = kc.alloc()
    q = kc.alloc()
    kc.free(q)
    kc.free(p)                                                  # p heads the freelist, q next
    at = p - VBASE + a.off("physmem") + info["offset"]
    raw = a.u32[at >> 2]
    idx_q = (q - p) // info["size"] + (p - VBASE - ((p - VBASE) & ~(PG - 1))) // info["size"]
    assert raw != idx_q                                         # not the plain index
    _clean(a, cpu)                                              # the checker decodes them
    with pytest.raises(R.KernelBug) as ei:
        kc.free(p)                                              # naive double-free detection
    assert ei.value.kind == "freelist"
    a.u32[at >> 2] = raw ^ 0x4141
    with pytest.raises(R.KernelBug) as ei:
        kc.alloc()
        kc.alloc()
    assert ei.value.kind == "freelist" and "Freechain corrupt" in ei.value.report
    a.u32[at >> 2] = raw
    assert {kc.alloc(), kc.alloc()} == {p, q}
    kc.free(p)
    kc.free(q)
    _clean(a, cpu)


def test_init_on_alloc_and_free_zero_objects_and_pages(san) -> None:
    a, cpu = san(init_on_alloc=True, init_on_free=True)
    km = Kmalloc(cpu.slub)
    kmem = cpu.kernel.kmem
    p = km.kmalloc(64)
    kmem.store(p, b"\xff" * 64)
    km.kfree(p)
    assert kmem.raw_load(p, 8) == bytes(8)                      # init_on_free (the free pointer sits at 32)
    off = p - VBASE + a.off("physmem")
    a.u8[off : off + 8] = b"\xee" * 8                           # dirty the free object behind SLUB's back
    again = km.kmalloc(64)
    assert again == p and kmem.load(p, 64) == bytes(64)         # init_on_alloc
    pfn = cpu.mm.alloc_pages(GFP_KERNEL, 0)
    o = a.off("physmem") + pfn * PG
    a.u8[o : o + 4] = b"abcd"
    cpu.mm.free_pages(pfn, 0)
    assert bytes(a.u8[o : o + 4]) == bytes(4)
    pfn = cpu.mm.alloc_pages(GFP_KERNEL, 0)                     # a frozen free (refcount 0 first)
    o = a.off("physmem") + pfn * PG
    a.u8[o : o + 4] = b"abcd"
    a.u32[(a.off("pagemeta") >> 2) + (pfn << 4) + 2] = 0
    cpu.mm.free_frozen_pages(pfn, 0, False)
    assert bytes(a.u8[o : o + 4]) == bytes(4)
    km.kfree(again)
    assert page_hooks._GFP_ZERO == __import__("aerosync.mm.pmm.gfp", fromlist=["x"]).__GFP_ZERO
    _clean(a, cpu)


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize(("section", "body", "key"), [
    ("debug", "kasan = 1", "debug.kasan"),
    ("debug", "kfence_sample_interval = -1", "debug.kfence_sample_interval"),
    ("debug", "kfence_num_objects = 5000", "debug.kfence_num_objects"),
    ("debug", "stack_protect = true", "debug.stack_protect"),
    ("vmalloc", "size_gb = 0", "vmalloc.size_gb"),
    ("vmalloc", "vmap_block_max_kb = 6", "vmalloc.vmap_block_max_kb"),
    ("vmalloc", "lazy_max_pages = 8", "vmalloc.lazy_max_pages"),
])
def test_bad_debug_and_vmalloc_keys_are_scenario_errors(tmp_path: Path, section: str, body: str, key: str) -> None:
    p = tmp_path / "s.toml"
    p.write_text(f'[run]\nworkload = "null"\n[{section}]\n{body}\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p, registry())
    assert ei.value.key == key and str(p) in str(ei.value)


def test_kfence_pool_larger_than_half_of_memory_is_a_scenario_error(tmp_path: Path) -> None:
    """The pool is reserved from the top of memory: 4 MiB leaves room for 255 objects
    ((255 + 1) * 2 pages = 2 MiB), not 256; the error names both keys' values."""
    p = tmp_path / "s.toml"
    base = '[run]\nworkload = "null"\n[machine]\nmemory = "4M"\n[debug]\nkfence_sample_interval = 10\n'
    p.write_text(base + "kfence_num_objects = 255\n")
    load_scenario(p, registry())
    p.write_text(base + "kfence_num_objects = 256\n")
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p, registry())
    assert ei.value.key == "debug.kfence_num_objects" and "at most 255" in str(ei.value) and "4096 KiB" in str(ei.value)
    p.write_text(base.replace("interval = 10", "interval = 0") + "kfence_num_objects = 4000\n")
    load_scenario(p, registry())                               # KFENCE off: no pool to fit
