"""Crash consistency with live threads of the dead CPU's mm working before recovery.

Invariant (mm/recovery.py, phase A): between a death and its recovery the live CPUs run
on; the takeover has released the dead CPU's locks (all but a kept mmap_lock), so the
data under them -- VMAs, page tables, object trees, shadow chains -- is used by live CPUs
in the state the death left it.  Whatever the live CPUs do with it then, the recovery
that follows still resolves the dead CPU's records, every checker passes and nothing is
lost.

Each case: in threads mode a thread of mm M (a forked child acting as CPU 0) runs a mix
of every VM operation -- mmap, writes, fork with COW on both sides and the child's exit
(collapses), mprotect splits and merges, MADV_DONTNEED, partial munmap, mremap moves,
brk -- and dies at a VM fault point; the test process, as CPU 1 running another thread
of M, then forks and lets its child exit (collapsing the chains again), reads, writes, zaps,
unmaps and write-protects pages of every VMA of M, forks again, maps and unmaps its own
region;
then the recovery (CPU 1 answering its shootdowns from a thread), the checkers, the same
again, the exit, and "nothing lost".  When the dead thread held M's mmap_lock (kept for
its recovery) CPU 1 would wait for it -- as a worker parks in that wait -- so the work
comes after the recovery only; a forked child's kept mmap_lock is no bar.  A fork-cow
soak found the bug this was written for: a live collapse destroyed a backing whose tree
still had an entry a dead collapse had moved (mm/vm/vm_object.py not_ours).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time

import pytest

from aerosync.mm import intent as I
from aerosync.mm import recovery
from aerosync.mm.cpuhp import cpuhp_offline_mm
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.memory import SegmentationFault
from aerosync.mm.vm.mm_types import VMError
from aerosync.mm.vm.vm import VM
from tests import crash_helpers as H
from tests.crash_helpers import no_bad_pages  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.timeout(120)

RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
PG = 4096
# every VM point the mix reaches (file, vmalloc, reclaim and migration have their own)
POINTS = ("vm:fault:page", "vm:fault:inserted", "vm:fault:accounted", "vm:fault:installed", "vm:mmap:vma_ready",
          "vm:mmap:inserted", "vm:munmap:detached", "vm:munmap:unlinked", "vm:zap:gathered", "vm:munmap:unmapped",
          "vm:fork:shadows", "vm:fork:copied", "vm:split:ready", "vm:split:inserted", "vm:brk:changed",
          "vm:collapse:stored", "vm:obj_remove:taken", "vm:mremap:moved", "vm:merge:expanded")


def _dead_thread(mm: int, rounds: int = 40, seed: int = 1):
    def drive(arena, cpu: int) -> None:
        rng = random.Random(seed)
        vm, tid = H.task_vm(arena, cpu, "dies", mm)
        heap = vm.brk(0)
        for k in range(rounds):
            n = rng.randint(6, 16)
            a = vm.mmap(0, n * PG, RW, ANON)
            s = vm.mmap(0, PG, RW, M.MAP_SHARED | M.MAP_ANONYMOUS)
            for p in range(n):
                vm.store64(a + p * PG, k)
            vm.store64(s, k)
            child = vm.fork()
            for p in range(0, n, 2):
                vm.store64(a + p * PG, k + 1)              # COW in the parent
            vm.switch_to(child)
            vm.store64(a + PG, 5)                          # and in the child, which exits: collapse
            vm.exit()
            vm.switch_to(tid)
            vm.reap(child)
            i = rng.randint(1, n - 4)
            vm.mprotect(a + i * PG, 2 * PG, M.PROT_READ)   # split
            vm.mprotect(a + i * PG, PG, RW)                # merge
            vm.madvise(a + (i + 2) * PG, PG, M.MADV_DONTNEED)
            vm.munmap(a + (i + 1) * PG, PG)
            b = vm.mremap(a, PG, 2 * PG, M.MREMAP_MAYMOVE)
            vm.brk(heap + rng.randint(1, 3) * PG)
            vm.store64(heap, k)
            vm.brk(heap + PG)
            if k % 3 == 0:
                vm.munmap(b, 2 * PG)
                vm.munmap(a, n * PG)
                vm.munmap(s, PG)

    return drive


def _fork_exit(live: VM, lt: int, vmas: list[tuple[int, int]]) -> None:
    """A fork whose child writes and exits: every chain of M shadowed, then collapsed."""
    child = live.fork()
    live.switch_to(child)
    for f, _last in vmas[:4]:
        with contextlib.suppress(SegmentationFault, VMError):
            live.store64(f, 3)
    live.exit()
    live.switch_to(lt)
    live.reap(child)


def _dead_file_thread(mm: int, rounds: int = 30, seed: int = 1):
    """File faults in M: the generated file mapped private or shared, pages read (misses
    read in with readahead, fault-around maps neighbours) and some written."""
    def drive(arena, cpu: int) -> None:
        rng = random.Random(seed)
        vm, _tid = H.task_vm(arena, cpu, "dies", mm)
        fid = vm.file_lookup(H.VM_FILE)
        size = H.VM_FILE_PAGES * PG
        for k in range(rounds):
            a = vm.mmap(0, size, RW, M.MAP_SHARED if k % 3 == 2 else M.MAP_PRIVATE, fid, 0)
            for p in rng.sample(range(H.VM_FILE_PAGES), 12):
                vm.load64(a + p * PG)
                if rng.random() < 0.4:
                    vm.store64(a + p * PG + 64, k)
            if k % 2:
                vm.munmap(a, size)

    return drive


def _dead_reclaim_thread(mm: int, pages: int = 3000):
    """Memory pressure in M (a machine of 2048 pages with swap): the faults reclaim
    (isolate, swap out, put back), the reads back swap in."""
    def drive(arena, cpu: int) -> None:
        vm, _tid = H.task_vm(arena, cpu, "dies", mm)
        a = vm.mmap(0, pages * PG, RW, ANON)
        for i in range(pages):
            vm.store64(a + i * PG, i)
        for i in range(0, pages, 7):
            vm.load64(a + i * PG)

    return drive


def _dead_migrate_thread(mm: int, pages: int = 40, rounds: int = 6):
    """NUMA migration in M (two nodes): move_pages batches (the fast path) and
    migrate_to_node one folio at a time (the object walk), round after round."""
    def drive(arena, cpu: int) -> None:
        from aerosync.mm.numa.numa_vm import attach
        from aerosync.mm.vm.pgtable import PTE_PFN_MASK

        vm, _tid = H.task_vm(arena, cpu, "dies", mm)
        numa = attach(vm)
        mig = numa.migrate
        a = vm.mmap(0, pages * PG, RW, ANON)
        for p in range(pages):
            vm.store64(a + p * PG, p)
        for r in range(rounds):
            dest = (r + 1) & 1
            numa.move_pages(0, [a + p * PG for p in range(0, pages, 2)], [dest] * (pages // 2))
            for p in range(1, pages, 2):
                e = mig.entry_at(mm, a + p * PG)
                if e & 1:
                    mig.migrate_to_node(mm, (e & PTE_PFN_MASK) >> 12, dest)

    return drive


def _live_work(live: VM, lt: int, mm: int, rng: random.Random) -> None:
    """CPU 1: a fork and exit (before any split, so the chains collapse), work on
    everything M maps, another fork and exit, its own region."""
    vmas = [(f, last) for f, last, _v in live.vmas.tree(mm).mt_for_each(0, (1 << 47) - 1)]
    _fork_exit(live, lt, vmas)
    for f, last in vmas:
        for _ in range(3):
            va = f + rng.randrange((last + 1 - f) // PG) * PG
            op = rng.randrange(5)
            try:
                if op == 0:
                    live.load64(va)
                elif op == 1:
                    live.store64(va, 99)
                elif op == 2:
                    live.madvise(va, PG, M.MADV_DONTNEED)
                elif op == 3:
                    live.munmap(va, PG)
                else:
                    live.mprotect(va, PG, M.PROT_READ)
            except (SegmentationFault, VMError):
                pass                                       # read-only by now, or unmapped
    _fork_exit(live, lt, vmas)
    a = live.mmap(0, 8 * PG, RW, ANON)
    for p in range(8):
        live.store64(a + p * PG, p)
    assert [live.load64(a + p * PG) for p in range(8)] == list(range(8))
    live.munmap(a, 8 * PG)


def _recover_answering_ipis(a, rec, live: VM) -> None:
    """The recovery (acting as CPU 0) shoots down CPU 1's TLB: CPU 1 answers from a thread,
    as a parked worker does."""
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            live.tlb.handle_ipi()
            time.sleep(0.0002)

    th = threading.Thread(target=answer, daemon=True)
    th.start()
    try:
        recovery.recover_cpu(a, rec, H.vm_recover_hook, offline=cpuhp_offline_mm)
    finally:
        stop.set()
        th.join()


# kind -> (the dead thread's driver, machine, its points with the passes to let go)
KINDS = {
    "file": (_dead_file_thread, {"nr_pages": 4096},
             [("vm:fault:found_accounted", 5), ("vm:fault:file_held", 3), ("vm:filemap:page", 2),
              ("vm:filemap:inserted", 4), ("vm:fault:installed", 20), ("vm:munmap:unmapped", 1)]),
    "reclaim": (_dead_reclaim_thread, {"nr_pages": 2048, "reclaim": {"lru": "mglru", "swap_size": 16 << 20}},
                [("vm:reclaim:isolated", 0), ("vm:reclaim:isolated", 4), ("vm:reclaim:swapcache", 0),
                 ("vm:reclaim:unmapped", 9), ("vm:reclaim:written", 3), ("vm:swapin:new", 2)]),
    "migrate": (_dead_migrate_thread, {"nr_pages": 4096, "nr_nodes": 2, "numa": {}},
                [("vm:migrate:isolated", 0), ("vm:migrate:unmapped", 3), ("vm:migrate:moved", 7),
                 ("vm:migrate:moved", 30)]),
}
CASES = [("mix", pt, sk) for pt in POINTS for sk in (0, 5)] + \
        [(kind, pt, sk) for kind, (_d, _m, plan) in KINDS.items() for pt, sk in plan]


@pytest.mark.parametrize(("kind", "point", "skip"), CASES)
def test_live_threads_work_on_before_the_recovery(machine, kind: str, point: str, skip: int) -> None:
    from aerosync.mm.reclaim.swapfile import swapoff

    p = H.soak_params()
    drv, cfg = (_dead_thread, {"nr_pages": 4096}) if kind == "mix" else KINDS[kind][:2]
    a = H.soak_machine(machine, p, vm={"mm": "threads"}, **cfg)
    try:
        _live_case(a, p, kind, drv, point, skip)
    finally:
        if kind == "reclaim":
            swapoff(a)


def _live_case(a, p, kind: str, drv, point: str, skip: int) -> None:
    files = (H.vm_file_setup(a, p),) if kind == "file" else ()
    live = VM(a, 1)
    live.make_current()
    lt = live.task_create("live")
    live.switch_to(lt)
    mm = live.current_mm()
    pid, killed = H.run_child(a, 0, drv(mm), point, skip, poll=live.tlb.handle_ipi)
    assert killed, f"cpu0 never reached {point} (after {skip} passes)"
    assert I.read_records(a, 0)
    rec = recovery.takeover(a, pid, 0)
    if T.mm_off(a, mm) + T.M_MMAP_LOCK not in [off for off, _kind in rec.kept]:
        _live_work(live, lt, mm, random.Random(skip))      # (a child mm's kept lock is no bar)
    _recover_answering_ipis(a, rec, live)
    H.check_all(a)
    assert I.read_records(a, 0) == []
    _live_work(live, lt, mm, random.Random(skip + 100))
    H.check_all(a)
    live.exit()
    live.reap(lt)
    live.leave()
    H.check_all(a)
    assert H.lost(a, p, 2, files) == {"pages": 0, "objects": 0}
