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
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.memory import SEGV_ACCERR, SEGV_MAPERR, SegmentationFault
from aerosync.mm.vm.pgtable import PTE_PFN_MASK
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
    pfn = (A.tlb.entries[key] & PTE_PFN_MASK) >> 12
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
