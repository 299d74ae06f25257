"""vm_object_page_remove in bounded batches (mm/vm/vm_object.py page_remove).

After a munmap or MADV_DONTNEED has zapped a range, its pages leave the object's tree
PAGE_REMOVE_BATCH entries per object-lock hold, with the lock dropped between batches,
so a fault of another CPU into the same object is not held up for the whole range.
The tests park the removing CPU between two batches (the "obj:remove_batch" point) and
check that:
  * the other CPU's write fault into the same object completes meanwhile (it takes the
    object lock for its tree insert), while part of the removed range is still in the
    tree and part is out;
  * afterwards the object holds exactly the pages still mapped, every page reads back
    what was written, and the checker (O1/O5 trees, R1/R2 mapcount and refcount, RSS1,
    LK1 leaks) is clean.
For MADV_DONTNEED the fault goes to another VMA of the same object: the advised VMA
itself is write-locked for the call, and test_dontneed_vs_per_vma_fault proves that a
per-VMA fault into it waits instead of mapping a zapped folio still in the tree.
The batches come from lib/xarray.py's xa_erase_range, checked here against a model.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from aerosync.lib.xarray import ULONG_MAX, xa_mk_value
from aerosync.mm import hooks
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.vm_event import fold_vm_events
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.memory import SEGV_MAPERR, SegmentationFault
from aerosync.mm.vm.vm import VM
from aerosync.mm.vm.vm_object import O_LOCK, O_NR_PAGES, O_TREE, PAGE_REMOVE_BATCH
from tests.test_vm_races import Other, finish, stop_all, two_cpus
from tests.test_xarray import Model, check_against, env  # noqa: F401  (env: the fixture)

PG = 4096
RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
HALF = 4 * PAGE_REMOVE_BATCH                 # pages per half: 4 batches, 3 stops between


@pytest.fixture(autouse=True)
def _no_points() -> Iterator[None]:
    hooks.clear_points()
    yield
    stop_all()
    hooks.clear_points()


def _object_of(cpu: VM, addr: int) -> int:
    v = cpu.vmas.find_vma(cpu.current_mm(), addr)
    assert v, f"no VMA at {addr:#x}"
    return int(cpu.arena.u64[(v + V.V_OBJECT) >> 3])


def _in_tree(cpu: VM, o: int, first: int, last: int) -> int:
    """Entries of o's tree at [first, last)."""
    return sum(1 for _ in cpu.xa.items(o + O_TREE, first, last - 1))


@pytest.mark.parametrize("how", ["munmap", "dontneed"])
def test_fault_on_same_object_proceeds_between_remove_batches(machine, how: str) -> None:
    a, A, B = two_cpus(machine)
    addr = A.mmap(0, 2 * HALF * PG, RW, ANON)   # one VMA, one object: both halves share it
    for i in range(HALF):
        A.store64(addr + i * PG, 1000 + i)      # the half B will remove
    A.store64(addr + (HALF + 1) * PG, 7)         # the object's other half is in use too
    o = _object_of(A, addr)
    if how == "dontneed":
        # MADV_DONTNEED write-locks the VMA it zaps (a fault into the advised VMA waits for
        # the whole call: test_dontneed_vs_per_vma_fault); the fault below goes to the
        # other VMA of the same object, which a flag change splits off
        A.madvise(addr + HALF * PG, HALF * PG, M.MADV_RANDOM)
        assert _object_of(A, addr + HALF * PG) == o
        assert A.vmas.find_vma(A.current_mm(), addr) != A.vmas.find_vma(A.current_mm(), addr + HALF * PG)
    q = a.u64
    assert q[(o + O_NR_PAGES) >> 3] == HALF + 1
    seen: dict[str, int] = {}
    parked, resume = threading.Event(), threading.Event()

    def between(_name: str) -> None:            # on B: the lock is dropped between batches
        if parked.is_set():
            return
        seen["lock_word"] = int(q[(o + O_LOCK) >> 3])
        seen["left_at_stop"] = _in_tree(B2, o, 0, HALF)
        parked.set()
        assert resume.wait(20), "the faulting CPU never finished"

    hooks.set_point("obj:remove_batch", between)
    B2 = VM(a, 1)                                # rebuilt: its page_remove carries the point
    B2.switch_to(B.current_task())
    A.make_current(thread_only=True)
    if how == "munmap":
        fn = lambda: B2.munmap(addr, HALF * PG)
    else:
        fn = lambda: B2.madvise(addr, HALF * PG, M.MADV_DONTNEED)
    ob = Other(B2, fn).start()
    ob.wait(A, parked.is_set, "stopped between two batches")   # A answers B's shootdown meanwhile
    # B is parked inside page_remove: the fault takes the same object's lock and completes
    A.store64(addr + (HALF + 3) * PG, 0xBEEF)
    assert A.load64(addr + (HALF + 3) * PG) == 0xBEEF
    assert not ob.done.is_set()                  # the removal really was still in progress
    mid_left = _in_tree(A, o, 0, HALF)
    resume.set()
    ob.join(A)
    hooks.clear_points()
    assert seen["lock_word"] == 0                # not held between batches
    assert 0 < seen["left_at_stop"] < HALF       # one batch out, the rest still in the tree
    assert seen["left_at_stop"] == HALF - PAGE_REMOVE_BATCH == mid_left
    # the result: the removed half is gone from the tree, the rest is intact
    assert _in_tree(A, o, 0, HALF) == 0
    assert q[(o + O_NR_PAGES) >> 3] == 2
    assert A.load64(addr + (HALF + 1) * PG) == 7
    assert A.load64(addr + (HALF + 3) * PG) == 0xBEEF
    if how == "munmap":
        with pytest.raises(SegmentationFault) as ei:
            A.load64(addr)
        assert ei.value.code == SEGV_MAPERR
    else:
        assert all(A.load64(addr + i * PG) == 0 for i in (0, 1, HALF - 1))   # zeros again
        assert _in_tree(A, o, 0, HALF) == 0        # read faults map the zero page, no folio
    B.task = -1
    finish(a, A, B2)                             # exit, then the whole-arena checker
    B.leave()


@pytest.mark.parametrize("access", ["load", "store"])
def test_dontneed_vs_per_vma_fault(machine, access: str) -> None:
    """MADV_DONTNEED against a per-VMA-locked fault into the advised range: B's zap is
    done, its page_remove is parked between two batches (the zapped folios of the later
    batches still in the object's tree) when A touches a page of such a batch.  Were the
    fault to run (VMA read lock only), it would find the old folio in the tree, map it
    -- old data after DONTNEED -- and page_remove would then take it out of the tree
    while mapped (R2/O1).  MADV_DONTNEED write-locks the VMA before its zap, so the
    per-VMA attempt aborts, the fault falls back to mmap_lock (write-held by the
    madvise) and runs after the removal: it sees zeros (or its own new page)."""
    a, A, B = two_cpus(machine)
    addr = A.mmap(0, HALF * PG, RW, ANON)
    for i in range(HALF):
        A.store64(addr + i * PG, 1000 + i)
    o = _object_of(A, addr)
    k = HALF - 1                                  # in the last batch: zapped, still in the tree at the stop
    parked, resume = threading.Event(), threading.Event()

    def between(_name: str) -> None:
        if parked.is_set():
            return
        parked.set()
        assert resume.wait(20), "the test never resumed the madvise"

    hooks.set_point("obj:remove_batch", between)
    B2 = VM(a, 1)
    B2.switch_to(B.current_task())
    A.make_current(thread_only=True)
    ob = Other(B2, lambda: B2.madvise(addr, HALF * PG, M.MADV_DONTNEED)).start()
    ob.wait(A, parked.is_set, "stopped between two batches")
    assert _in_tree(A, o, k, k + 1) == 1          # the window: zapped, not yet removed
    aborts = fold_vm_events(a)["vma_lock_abort"]
    if access == "load":
        fn = lambda: A.load64(addr + k * PG)
    else:
        fn = lambda: (A.store64(addr + k * PG, 0xF00D), A.load64(addr + k * PG))[1]
    fa = Other(A, fn).start()
    # either the access completes inside the window (the race), or the fault's per-VMA
    # attempt was turned away and it waits for a lock (the protocol)
    fa.wait(A, lambda: fa.done.is_set() or (fa.blocked.is_set()
                                            and fold_vm_events(a)["vma_lock_abort"] > aborts),
            "completed its access or fell back and waited")
    done_early = fa.done.is_set()
    resume.set()
    ob.join(A)
    fa.wait(A, fa.done.is_set, "finished its access")
    if fa.error is not None:
        raise fa.error
    hooks.clear_points()
    assert fa.result == (0 if access == "load" else 0xF00D)      # not the old 1000 + k
    assert _in_tree(A, o, 0, HALF) == (0 if access == "load" else 1)
    assert not done_early, "the fault completed inside the DONTNEED window"
    assert fold_vm_events(a)["vma_lock_abort"] > aborts   # the write-locked VMA turned it away
    assert A.load64(addr) == 0
    B.task = -1
    finish(a, A, B2)                             # exit, then the whole-arena checker (R2, O1)
    B.leave()


def test_page_remove_batches_drop_every_entry(machine) -> None:
    """One CPU: a range of folios and holes spanning several batches leaves the tree
    completely, one batch per lock hold, and only that range (pages past it stay)."""
    a = machine(nr_pages=8192, nr_cpus=1, slab=True, vm={})
    stops: list[int] = []
    hooks.set_point("obj:remove_batch", lambda _n: stops.append(_in_tree(A, o, 0, n)))
    A = VM(a, 0)                                  # built with the point set
    A.switch_to(A.task_create("t"))
    n = 3 * PAGE_REMOVE_BATCH + 5
    addr = A.mmap(0, (n + 8) * PG, RW, ANON)
    for i in range(0, n + 8, 2):                 # every other page: holes in the tree
        A.store64(addr + i * PG, i + 1)
    o = _object_of(A, addr)
    A.madvise(addr, n * PG, M.MADV_DONTNEED)
    hooks.clear_points()
    want = (n + 1) // 2
    # a stop after each full batch that left entries behind, each one batch further on
    assert len(stops) == (want - 1) // PAGE_REMOVE_BATCH >= 1
    assert stops == [want - k * PAGE_REMOVE_BATCH for k in range(1, len(stops) + 1)]
    assert _in_tree(A, o, 0, n) == 0
    assert a.u64[(o + O_NR_PAGES) >> 3] == 4
    assert all(A.load64(addr + i * PG) == (i + 1 if i % 2 == 0 else 0) for i in range(n, n + 8))
    assert all(A.load64(addr + i * PG) == 0 for i in range(0, n, 7))
    A.exit()
    A.leave()
    r = check(a)
    assert r.ok, r.violations[:5]


# ---------------------------------------------------------------- lib/xarray.py's bounded range erase
def test_xa_erase_range_matches_model(env) -> None:  # noqa: F811
    """xa_erase_range against a dict model: random entries (dense runs, sparse ones,
    value entries, marked ones, index 0 alone in the head), erased in steps of random
    limits over random ranges; the XA invariants and every lookup hold after each step,
    and emptied nodes are all freed."""
    _, nc, make = env(nr_pages=8192)
    rnd = random.Random(9)
    for trial in range(40):
        xa, m = make(), Model()
        keys: set[int] = set()
        if trial % 7 == 0:
            keys.add(0)
        else:
            for _ in range(rnd.randrange(1, 5)):
                lo = rnd.choice((0, rnd.randrange(1 << 12), rnd.randrange(1 << 20)))
                step = rnd.choice((1, 1, 2, 7, 70))
                keys.update(range(lo, lo + step * rnd.randrange(1, 300), step))
        for k in keys:
            e = xa_mk_value(k) if k % 5 == 0 else (k + 1) << 3
            assert xa.xa_store(k, e) == m.store(k, e)
        for k in rnd.sample(sorted(keys), min(len(keys), 20)):
            mark = rnd.randrange(3)
            xa.xa_set_mark(k, mark)
            m.marks[mark].add(k)
        ks = sorted(keys)
        for _ in range(4):
            first = rnd.choice((0, rnd.choice(ks), rnd.randrange(1 << 21)))
            last = rnd.choice((ULONG_MAX, first + rnd.randrange(1, 3000)))
            limit = rnd.choice((1, 5, 32, 64, 1000))
            idx = first
            while idx <= last:
                got, nxt = xa.xa_erase_range(idx, last, limit)
                want = sorted((k, v) for k, v in m.d.items() if idx <= k <= last)[:limit]
                assert got == want
                assert len(got) <= limit and nxt > idx
                if len(got) < limit:
                    assert nxt == last + 1
                for k, _ in got:
                    m.store(k, 0)
                check_against(xa, m, [idx, nxt, first] + [k for k, _ in got[:3]])
                if idx == last == ULONG_MAX:
                    break
                idx = nxt
        assert xa.xa_count() == len(m.d) and xa.xa_nr_nodes() == len(nc.live)
        xa.xa_destroy()
        nc.grace()
        assert not nc.live
