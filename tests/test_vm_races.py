"""Forced interleavings of the VM's races: two simulated CPUs are two threads of this
process, each with its own VM handle on a shared mm (threads mode); a test point
(mm/hooks.py) stops one CPU at an exact step while the other runs the conflicting
operation.  A CPU that waits for another always keeps answering its IPIs (as a real CPU
takes interrupts while it spins), so a shootdown never deadlocks the replay.

Each test states the invariant it protects:
  fault vs munmap       the unmap waits for the fault's VMA lock, then removes the page:
                        nothing leaks, the address faults afterwards (SIGSEGV)
  fault vs mprotect     the protection change waits, then applies to the new PTE
  fork vs write         the child never sees a write the parent makes after fork returns
  shootdown vs reuse    a page is freed only after every TLB entry for it is gone
  speculative vs change a speculative fault that raced with munmap/mprotect aborts and
                        retries under mmap_lock
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from aerosync.mm import hooks
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import page_array
from aerosync.mm.pmm.vm_event import fold_vm_events
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.check import vm_check
from aerosync.mm.vm.memory import SEGV_ACCERR, SEGV_MAPERR, SegmentationFault
from aerosync.mm.vm.pgtable import _PAGE_ACCESSED, PTE_PFN_MASK
from aerosync.mm.vm.tlb import tlb_entry, tlb_entry_pfn
from aerosync.mm.vm.vm import VM
from aerosync.sync import waithook as W

PG = 4096
RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS


@pytest.fixture(autouse=True)
def _no_points() -> Iterator[None]:
    hooks.clear_points()
    yield
    stop_all()
    hooks.clear_points()


def two_cpus(machine, **vm: object) -> tuple[object, VM, VM]:
    """Two CPUs whose tasks share one mm (threads of one process)."""
    a = machine(nr_pages=8192, nr_cpus=2, slab=True, vm={"mm": "threads", **vm})
    A = VM(a, 0)
    B = VM(a, 1)
    mm = A.forks.mm_alloc()
    A.switch_to(A.task_create("a", mm=mm))
    B.switch_to(B.task_create("b", mm=mm))
    A.forks.mmput(mm)                           # the tasks hold the mm now
    return a, A, B


RUNNING: list[Other] = []


class Other:
    """Runs `fn` on CPU `cpu` in its own thread; `blocked` is set once that CPU waits for
    a lock (its wait hook ran), and the hook keeps answering that CPU's IPIs.  After
    `fn` the thread stays as the CPU's idle loop, answering IPIs, until stop_all()."""

    def __init__(self, cpu: VM, fn: Callable[[], object]) -> None:
        self.cpu, self.fn = cpu, fn
        self.blocked = threading.Event()
        self.done = threading.Event()
        self.stop = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None
        self.t = threading.Thread(target=self._run, daemon=True)
        RUNNING.append(self)

    def _run(self) -> None:
        cpu = self.cpu

        def hook() -> None:
            self.blocked.set()
            cpu.tlb.handle_ipi()

        W.set_wait_hook(hook, thread_only=True)
        try:
            self.result = self.fn()
        except BaseException as e:      # reported to the test thread
            self.error = e
        self.done.set()
        while not self.stop.is_set():   # the idle loop: IPIs are still answered
            cpu.tlb.handle_ipi()
            time.sleep(0.0005)

    def start(self) -> Other:
        self.t.start()
        return self

    def wait(self, me: VM, until: Callable[[], bool], what: str) -> None:
        """Wait (answering `me`'s IPIs) until `until()`; fail after 20 s."""
        deadline = time.monotonic() + 20
        while not until():
            me.tlb.handle_ipi()
            if self.error is not None:
                raise self.error
            assert time.monotonic() < deadline, f"the other CPU never {what}"
            time.sleep(0.0005)

    def join(self, me: VM) -> object:
        self.wait(me, self.done.is_set, "finished")
        if self.error is not None:
            raise self.error
        return self.result


def stop_all() -> None:
    for o in RUNNING:
        o.stop.set()
        o.t.join(10)
    RUNNING.clear()


def finish(a, *cpus: VM) -> None:
    stop_all()
    for c in cpus:
        if c.current_task() >= 0:
            c.exit()
    for c in cpus:
        c.leave()
    r = check(a)
    assert r.ok, r.violations[:5]


def test_fault_vs_munmap(machine) -> None:
    a, A, B = two_cpus(machine)
    addr = A.mmap(0, 4 * PG, RW, ANON)
    A.make_current(thread_only=True)
    other: list[Other] = []

    def at_vma_locked(_name: str) -> None:
        if other:
            return
        o = Other(B, lambda: B.munmap(addr, 4 * PG)).start()
        other.append(o)
        o.wait(A, o.blocked.is_set, "blocked on the faulting VMA")
        assert not o.done.is_set()               # munmap cannot finish while we hold the VMA

    hooks.set_point("fault:vma_locked", at_vma_locked)
    A2 = VM(a, 0)                                # rebuilt: its fault path carries the point
    A2.switch_to(A.current_task())
    A2.make_current(thread_only=True)
    A2.store64(addr, 7)                          # the fault completes first
    other[0].join(A2)
    with pytest.raises(SegmentationFault) as ei:
        A2.load64(addr)
    assert ei.value.code == SEGV_MAPERR
    A.task = -1
    finish(a, A2, B)
    A.leave()


def test_fault_vs_mprotect(machine) -> None:
    a, A, B = two_cpus(machine)
    addr = A.mmap(0, 4 * PG, RW, ANON)
    other: list[Other] = []

    def at_vma_locked(_name: str) -> None:
        if other:
            return
        o = Other(B, lambda: B.mprotect(addr, 4 * PG, M.PROT_READ)).start()
        other.append(o)
        o.wait(A2, o.blocked.is_set, "blocked on the faulting VMA")

    hooks.set_point("fault:vma_locked", at_vma_locked)
    A2 = VM(a, 0)
    A2.switch_to(A.current_task())
    A2.make_current(thread_only=True)
    A2.store64(addr + PG, 5)
    other[0].join(A2)
    assert A2.load64(addr + PG) == 5
    with pytest.raises(SegmentationFault) as ei:
        A2.store64(addr + PG, 6)                 # the new PTE lost its write permission
    assert ei.value.code == SEGV_ACCERR
    A.task = -1
    finish(a, A2, B)
    A.leave()


def test_fork_vs_write(machine) -> None:
    a, A, B = two_cpus(machine)
    addr = A.mmap(0, 4 * PG, RW, ANON)
    A.store64(addr + PG, 1)
    other: list[Other] = []

    def before_install(_name: str) -> None:
        if other:
            return
        o = Other(B, B.fork).start()
        other.append(o)
        o.wait(A2, o.blocked.is_set, "blocked behind the fault")

    hooks.set_point("fault:before_install", before_install)
    A2 = VM(a, 0)
    A2.switch_to(A.current_task())
    A2.make_current(thread_only=True)
    A2.store64(addr, 42)
    child = other[0].join(A2)
    hooks.clear_points()
    A2.store64(addr, 43)                         # after fork returned: COW, invisible to the child
    A2.store64(addr + PG, 2)
    parent = A2.current_task()
    A2.switch_to(child)
    assert A2.load64(addr) in (0, 42)            # the fault's page, with or without the racing store
    assert A2.load64(addr + PG) == 1
    A2.exit()
    A2.switch_to(parent)
    assert A2.load64(addr) == 43 and A2.load64(addr + PG) == 2
    A.task = -1
    finish(a, A2, B)
    A.leave()


def test_shootdown_before_page_reuse(machine) -> None:
    a, A, B = two_cpus(machine)
    addr = A.mmap(0, 2 * PG, RW, ANON)
    A.store64(addr, 99)
    assert A.load64(addr) == 99                  # A caches the translation
    key = A.tlb.key_base | (addr >> 12)
    p8 = a.off("physmem") >> 3
    pfn = tlb_entry_pfn(A.tlb.entries[key], p8)
    root = a.u64[(T.mm_off(a, A.current_mm()) + T.M_PGD) >> 3]
    pte = a.u64[p8 + (A.pt.walk(root, addr) << 9) + ((addr >> 12) & 511)]
    assert A.tlb.entries[key] == tlb_entry(pte, p8) and (pte & PTE_PFN_MASK) >> 12 == pfn   # mmu's inlined fill
    seen: dict[str, object] = {}

    def before_flush(_name: str) -> None:        # on B: PTE cleared, A may still cache it
        seen["cached_before"] = key in A.tlb.entries
        seen["ref_before"] = int(page_array(a)["refcount"][pfn])

    def before_free(_name: str) -> None:         # on B: flushed everywhere, page not yet freed
        seen["cached_after"] = key in A.tlb.entries
        seen["ref_after"] = int(page_array(a)["refcount"][pfn])

    hooks.set_point("zap:before_flush", before_flush)
    hooks.set_point("zap:before_free", before_free)
    B2 = VM(a, 1)
    B2.switch_to(B.current_task())
    A.make_current(thread_only=True)
    o = Other(B2, lambda: B2.munmap(addr, 2 * PG)).start()
    o.join(A)                                    # A answers the shootdown while it waits
    assert seen["cached_before"] is True and seen["ref_before"] >= 1
    assert seen["cached_after"] is False         # no stale translation once the page can go
    hooks.clear_points()
    new = B2.mmap(addr + (64 << 20), 2 * PG, RW, ANON | M.MAP_FIXED)
    B2.store64(new, 1234)                        # the freed page is the allocator's first choice
    with pytest.raises(SegmentationFault):
        A.load64(addr)                           # never a stale read of the reused page
    B.task = -1
    finish(a, A, B2)
    B.leave()


@pytest.mark.parametrize("change", ["munmap", "mprotect"])
def test_speculative_fault_vs_vma_change(machine, change: str) -> None:
    a, A, B = two_cpus(machine, fault_locking="speculative")
    addr = A.mmap(0, 2 * PG, RW, ANON)
    A.store64(addr + PG, 1)                      # the VMA's object exists: page 0 can be speculative
    other: list[Other] = []

    def at_snapshot(_name: str) -> None:
        if other:
            return
        fn = (lambda: B.munmap(addr, 2 * PG)) if change == "munmap" else (
            lambda: B.mprotect(addr, 2 * PG, M.PROT_READ))
        o = Other(B, fn).start()
        other.append(o)
        o.join(A2)                               # the change completes while A is speculating

    hooks.set_point("spf:snapshot", at_snapshot)
    A2 = VM(a, 0)
    A2.switch_to(A.current_task())
    A2.make_current(thread_only=True)
    before = fold_vm_events(a)["aerosync_spf_abort"]
    with pytest.raises(SegmentationFault) as ei:
        A2.store64(addr, 3)
    assert ei.value.code == (SEGV_MAPERR if change == "munmap" else SEGV_ACCERR)
    assert fold_vm_events(a)["aerosync_spf_abort"] > before
    A.task = -1
    finish(a, A2, B)
    A.leave()


# ------------------------------------------------------------------ munmap's downgrade
# munmap (and brk / mremap shrinks) detach their VMAs under mmap_lock for write, then
# downgrade and zap under the read lock (Linux 6.19's vms_complete_munmap_vmas).  Each
# test parks the unmapping CPU at "munmap:downgraded" and checks what another CPU may
# and may not do meanwhile:
#   fault elsewhere      goes on (mmap_lock readers share the lock with the zap)
#   fault on the hole    fails (SIGSEGV), also when it found the VMA before the detach:
#                        vma_start_read refuses a detached VMA, the lookup misses
#   mmap into the hole   waits (it needs the write lock) until the zap and frees are done
#   a second munmap      of the adjacent range waits likewise; the shared table goes last

class Parked:
    """The unmapping CPU parked at munmap:downgraded until `go` is set."""

    def __init__(self) -> None:
        self.at = threading.Event()
        self.go = threading.Event()

    def __call__(self, _name: str) -> None:
        self.at.set()
        assert self.go.wait(20), "the test never released the parked munmap"


def _downgraded(a, mm: int) -> bool:
    from aerosync.mm.vm import mm_types as T
    from aerosync.sync.objlock import RW_READER_BIAS, RW_READERS, RW_WRITER

    w = a.atomic.load64(T.mm_off(a, mm) + T.M_MMAP_LOCK)
    return not w & RW_WRITER and (w & RW_READERS) == RW_READER_BIAS


@pytest.mark.parametrize("locking", ["mmap_lock", "per_vma", "speculative"])
def test_fault_elsewhere_runs_during_the_downgraded_zap(machine, locking: str) -> None:
    a, A, B = two_cpus(machine, fault_locking=locking)
    victim = A.mmap(0, 8 * PG, RW, ANON)
    other_vma = A.mmap(0, 4 * PG, RW, ANON)
    for i in range(4):                            # pages 4-7 never mapped: a fault there
        A.store64(victim + i * PG, i + 1)
    B.store64(other_vma, 5)                       # the object exists (speculative faults may run)
    parked = Parked()
    hooks.set_point("munmap:downgraded", parked)
    A2 = VM(a, 0)
    A2.switch_to(A.current_task())
    mm = A2.current_mm()
    o = Other(A2, lambda: A2.munmap(victim, 8 * PG)).start()
    B.make_current(thread_only=True)
    o.wait(B, parked.at.is_set, "reached the downgrade")
    assert _downgraded(a, mm)                      # a read hold, no writer
    B.store64(other_vma + PG, 6)                   # a new fault while the zap is parked
    assert B.load64(other_vma + PG) == 6
    with pytest.raises(SegmentationFault) as ei:
        B.load64(victim + 6 * PG)                  # no PTE, no VMA: the range is gone already
    assert ei.value.code == SEGV_MAPERR
    assert not o.done.is_set()
    parked.go.set()
    o.join(B)
    assert B.load64(other_vma) == 5
    A.task = -1
    finish(a, A2, B)
    A.leave()


def test_fault_that_found_the_vma_before_the_detach(machine) -> None:
    """A per-VMA fault looked the VMA up (RCU) just before munmap detached it; by the
    time it locks the VMA the munmap has downgraded (its VMA write locks ended), so
    only the detached state stops it: vma_lock_miss, the lookup misses, the fallback
    takes mmap_lock for read next to the parked zap and finds nothing: SIGSEGV."""
    a, A, B = two_cpus(machine, fault_locking="per_vma")
    victim = A.mmap(0, 4 * PG, RW, ANON)
    A.store64(victim, 1)
    parked = Parked()
    other: list[Other] = []
    hooks.set_point("munmap:downgraded", parked)

    def at_found(_name: str) -> None:
        if other:
            return
        o = Other(A2, lambda: A2.munmap(victim, 4 * PG)).start()
        other.append(o)
        o.wait(B2, parked.at.is_set, "reached the downgrade")

    hooks.set_point("fault:vma_found", at_found)
    A2 = VM(a, 0)
    A2.switch_to(A.current_task())
    B2 = VM(a, 1)
    B2.switch_to(B.current_task())
    B2.make_current(thread_only=True)
    before = fold_vm_events(a)
    with pytest.raises(SegmentationFault) as ei:
        B2.store64(victim + PG, 2)
    after = fold_vm_events(a)
    assert ei.value.code == SEGV_MAPERR
    assert after["vma_lock_miss"] > before["vma_lock_miss"]
    assert not other[0].done.is_set()              # all of it happened beside the parked zap
    parked.go.set()
    other[0].join(B2)
    A.task, B.task = -1, -1
    finish(a, A2, B2)
    A.leave()
    B.leave()


def test_mmap_into_the_hole_waits_for_the_zap(machine) -> None:
    a, A, B = two_cpus(machine)
    victim = A.mmap(0, 4 * PG, RW, ANON)
    for i in range(4):
        A.store64(victim + i * PG, 7)
    parked = Parked()
    hooks.set_point("munmap:downgraded", parked)
    A2 = VM(a, 0)
    A2.switch_to(A.current_task())
    o = Other(A2, lambda: A2.munmap(victim, 4 * PG)).start()
    B.make_current(thread_only=True)
    o.wait(B, parked.at.is_set, "reached the downgrade")
    m = Other(B, lambda: B.mmap(victim, 4 * PG, RW, ANON | M.MAP_FIXED)).start()
    m.wait(A, m.blocked.is_set, "waited for mmap_lock")
    assert not m.done.is_set()                     # the range is not reusable before the zap ends
    parked.go.set()
    o.join(B)
    assert m.join(B) == victim
    stop_all()                                     # B's thread is done: this thread drives B now
    assert B.load64(victim) == 0                   # a fresh zero page: nothing of the old range
    A.task = -1
    finish(a, A2, B)
    A.leave()


def test_adjacent_munmaps_serialise_and_free_the_shared_table(machine) -> None:
    """Two munmaps of neighbouring halves of one PTE table: the second waits for the
    first's downgraded zap (it needs the write lock), the first keeps the table (the
    second half still maps it: ceiling), the second frees it; the checker sees no page
    or table left behind."""
    from aerosync.mm.vm import mm_types as T

    a, A, B = two_cpus(machine)
    base = A.mmap(0, 8 * PG, RW, ANON)
    for i in range(8):
        A.store64(base + i * PG, i)
    mm = A.current_mm()
    pt_bytes = a.atomic.load64(T.mm_off(a, mm) + T.M_PGTABLES_BYTES)
    parked = Parked()
    hooks.set_point("munmap:downgraded", parked)
    A2 = VM(a, 0)
    A2.switch_to(A.current_task())
    B2 = VM(a, 1)
    B2.switch_to(B.current_task())
    o = Other(A2, lambda: A2.munmap(base, 4 * PG)).start()
    B.make_current(thread_only=True)
    o.wait(B, parked.at.is_set, "reached the downgrade")
    second = Other(B2, lambda: B2.munmap(base + 4 * PG, 4 * PG)).start()
    second.wait(B, second.blocked.is_set, "waited for mmap_lock")
    assert not second.done.is_set()
    parked.go.set()
    o.join(B)
    second.join(B)
    stop_all()
    assert a.atomic.load64(T.mm_off(a, mm) + T.M_PGTABLES_BYTES) < pt_bytes
    with pytest.raises(SegmentationFault):
        B.load64(base + 5 * PG)
    A.task, B.task = -1, -1
    hooks.clear_points()
    finish(a, A2, B2)
    A.leave()
    B.leave()


def test_cow_copy_whose_pte_changed_leaves_the_tree(machine) -> None:
    """A COW fault's PTE changed between the copy and its replace (here as reclaim's
    aging clears the accessed bit; reclaim may also unmap the old page there): the copy
    leaves the object's tree again, as wp_page_copy releases it.  Left in the tree, the
    object held one page while the PTE mapped another (R3) -- and once reclaim swapped
    the old page out, a swap-in mapped a folio no object held (nr_anon_pages and the rss
    counters drifted in fork-cow under swap pressure)."""
    a = machine(nr_pages=4096, nr_cpus=1, slab=True, vm={})
    state = {"armed": False}

    def age_the_pte(_name: str) -> None:
        if not state["armed"]:
            return
        state["armed"] = False
        t = A.pt.walk(root, addr)
        i = (a.off("physmem") >> 3) + (t << 9) + ((addr >> 12) & 511)
        e = a.u64[i]
        assert e & _PAGE_ACCESSED
        assert a.atomic.cas64(i << 3, e, e & ~_PAGE_ACCESSED) == e     # test_and_clear_young

    hooks.set_point("cow:copied", age_the_pte)
    A = VM(a, 0)                                     # built with the point set
    A.switch_to(A.task_create("p"))
    addr = A.mmap(0, PG, RW, ANON)
    A.store64(addr, 5)
    child = A.fork()
    root = a.u64[(T.mm_off(a, A.current_mm()) + T.M_PGD) >> 3]
    state["armed"] = True
    assert A.memory.do_user_addr_fault(addr, True) <= 0      # the replace failed: walk again
    assert not state["armed"]
    rep = vm_check(a)
    assert rep.ok, str(rep)                                    # the copy is not in the tree
    A.store64(addr, 6)                                         # the retry copies and maps
    assert A.load64(addr) == 6
    A.switch_to(child)
    assert A.load64(addr) == 5
    A.exit()
    A.reap(child)
    assert vm_check(a).ok


def _child_exits_at(point: str, A: VM, child: int, me: int) -> list[int]:
    """At the first `point` reached, A's fork child exits and is reaped (its shadow's
    backing is then collapsed into the parent's shadow); returns a list that is
    non-empty once that happened."""
    done: list[int] = []

    def child_exits(_name: str) -> None:
        if done:
            return
        done.append(1)
        A.switch_to(child)
        A.exit(child)
        A.reap(child)
        A.switch_to(me)

    hooks.set_point(point, child_exits)
    return done


def test_chain_walk_that_a_collapse_overtook_walks_again(machine) -> None:
    """A fault's walk down a backing chain finds nothing in the child, then the other
    side of a fork exits and the child absorbs its backing (collapse: the page moves up
    into the child, the backing is spliced out and freed).  The walk, going on from the
    child's new backing link, would find nothing anywhere and zero-fill a page that has
    data; the child's collapse sequence changed, so it walks again and finds the page
    in the child (a seqcount read side)."""
    from aerosync.mm.vm import vma as V
    from aerosync.mm.vm.vm_object import O_BACKING, entry_pfn, is_folio_entry

    a = machine(nr_pages=8192, nr_cpus=2, slab=True, vm={})
    A = VM(a, 0)                                 # the reader (CPU 1) runs no task: no IPIs
    me = A.task_create("a")
    A.switch_to(me)
    addr = A.mmap(0, PG, RW, ANON)
    A.store64(addr, 77)
    child = A.fork()
    mm_id = A.cur[1]
    vma = A.vmas.vma_lookup(mm_id, addr)
    top = a.u64[(vma + V.V_OBJECT) >> 3]
    idx = a.u64[(vma + V.V_PGOFF) >> 3]
    back = a.u64[(top + O_BACKING) >> 3]
    assert back and not A.objs.lookup(top, idx) and is_folio_entry(A.objs.lookup(back, idx))
    pfn = entry_pfn(A.objs.lookup(back, idx))
    overtaken = _child_exits_at("obj:chain_passed", A, child, me)
    B2 = VM(a, 1)
    holder, hidx, e = B2.objs.chain_lookup(top, idx)
    hooks.clear_points()
    assert overtaken, "the collapse never ran inside the walk"
    assert a.u64[(top + O_BACKING) >> 3] == 0                  # the backing was spliced out
    assert (holder, hidx) == (top, idx) and is_folio_entry(e) and entry_pfn(e) == pfn
    assert A.load64(addr) == 77
    B2.leave()
    finish(a, A)


def test_dontneed_over_a_backing_that_a_collapse_takes_meanwhile(machine) -> None:
    """MADV_DONTNEED of a forked region (its object a shadow over the pages the child
    shares) while the child exits on another CPU and the shadow absorbs its backing
    (collapse) between two of page_remove's batches: every page of the range still
    reads zero.  page_remove used to leave holes and mark_zero to fill them after --
    the collapse filled them first with the backing's (pre-advice) pages, and the shadow
    had no backing left for mark_zero to hide (the stress test's "read old data, wrote
    0" in threads mode)."""
    a = machine(nr_pages=8192, nr_cpus=1, slab=True, vm={})
    A = VM(a, 0)
    me = A.task_create("a")
    A.switch_to(me)
    n = 80                                       # > 2 x PAGE_REMOVE_BATCH: two batch gaps
    addr = A.mmap(0, n * PG, RW, ANON)
    for k in range(n):
        A.store64(addr + k * PG, 1000 + k)
    child = A.fork()
    for k in range(0, n, 2):                     # half of it the parent's own copies (COW)
        A.store64(addr + k * PG, 2000 + k)
    collapsed = _child_exits_at("obj:remove_batch", A, child, me)
    A2 = VM(a, 0)                                # (points are read when a handle is built)
    A2.switch_to(me)
    A2.madvise(addr, n * PG, M.MADV_DONTNEED)
    hooks.clear_points()
    assert collapsed, "the child never exited inside the advice"
    assert [k for k in range(n) if A2.load64(addr + k * PG)] == []
    A2.munmap(addr, n * PG)
    A.task = -1
    finish(a, A2)
    A.leave()

