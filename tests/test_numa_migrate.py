"""Page migration (mm/numa/migrate.py): move_pages status codes, migrate_pages' node
pairing, the invariants MG1-MG4, and forced interleavings of a migration with a fault,
munmap, fork, a pin and a second migrator (two simulated CPUs as threads of this
process, the test points of mm/hooks.py: migrate:isolated, migrate:unmapped)."""

from __future__ import annotations

import time

import pytest

from aerosync.mm import hooks
from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa.migrate import EACCES, EBUSY, EFAULT, ENOENT
from aerosync.mm.numa.numa_vm import attach
from aerosync.mm.pmm.page import PG_lru, page_array
from aerosync.mm.pmm.page_alloc import MM
from aerosync.mm.pmm.vm_event import fold_node_stats, fold_vm_events
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.memory import SegmentationFault
from aerosync.mm.vm.mm_types import VMError
from aerosync.mm.vm.vm import VM
from tests.numa_helpers import ANON, PG, RW, cpu, done, node_of, numa_machine, pfn_at
from tests.test_vm_races import Other, stop_all

MOVE, MOVE_ALL = MP.MPOL_MF_MOVE, MP.MPOL_MF_MOVE_ALL


@pytest.fixture(autouse=True)
def _no_points():
    hooks.clear_points()
    yield
    stop_all()
    hooks.clear_points()


def test_move_pages_status_codes(machine) -> None:
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 8 * PG, RW, ANON)
    for p in (0, 1, 2):
        vm.store64(addr + p * PG, p)
    assert vm.load64(addr + 3 * PG) == 0                          # page 3: the zero page
    vm.munmap(addr + 5 * PG, PG)
    pages = [addr + p * PG for p in range(7)]
    # query: node, -EFAULT for the zero page and for no VMA, -ENOENT for nothing there
    assert n.move_pages(0, pages) == (0, [0, 0, 0, -EFAULT, -ENOENT, -EFAULT, -ENOENT])
    failed, status = n.move_pages(0, pages, [1] * 7, MOVE)
    assert (failed, status) == (0, [1, 1, 1, -EFAULT, -ENOENT, -EFAULT, -ENOENT])
    assert [vm.load64(addr + p * PG) for p in range(3)] == [0, 1, 2]
    assert n.move_pages(0, pages[:1], [1], MOVE) == (0, [1])      # already there: its node
    child = vm.fork()
    assert n.move_pages(0, pages[:2], [0, 0], MOVE) == (0, [-EACCES, -EACCES])   # shared with the child
    vm.exit(child)
    with pytest.raises(VMError) as ei:
        n.move_pages(0, pages[:1], [7], MOVE)
    assert ei.value.errno_name == "ENODEV"
    for args, errno in (((0, pages, [0], MOVE), "EINVAL"), ((0, pages, [0] * 7, 0x10), "EINVAL"),
                        ((999999, pages), "ESRCH")):
        with pytest.raises(VMError) as ei:
            n.move_pages(*args)
        assert ei.value.errno_name == errno
    done(a, vm)


def test_pinned_page_fails_with_ebusy_and_counts_a_failure(machine) -> None:
    """An extra reference (a GUP pin, get_user_pages' folio_get) keeps folio_migrate_mapping's
    count from matching: EAGAIN through the retries, then -EBUSY in the status, one
    pgmigrate_fail, and the page mapped as before (MG4); unpinned, it moves."""
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 2 * PG, RW, ANON)
    vm.store64(addr, 77)
    pfn = pfn_at(vm, addr)
    mm = MM(a, 0)
    mm.folio_get(pfn)
    f0 = fold_vm_events(a)["pgmigrate_fail"]
    assert n.move_pages(0, [addr], [1], MOVE) == (1, [-EBUSY])
    assert fold_vm_events(a)["pgmigrate_fail"] == f0 + 1
    assert pfn_at(vm, addr) == pfn and vm.load64(addr) == 77
    vm.store64(addr, 78)                                          # still writable: the entry was restored
    mm.folio_put(pfn)
    assert n.move_pages(0, [addr], [1], MOVE) == (0, [1])
    assert vm.load64(addr) == 78
    done(a, vm)


def test_migration_invariants(machine) -> None:
    """MG1 the old page is freed and nothing maps it; MG2 same contents; MG3 mapcount,
    rss and nr_anon_pages follow the page to its node."""
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 16 * PG, RW, ANON)
    for p in range(16):
        vm.store64(addr + p * PG + 8 * p, p * 1000 + 7)
    old = [pfn_at(vm, addr + p * PG) for p in range(16)]
    anon0 = [s["nr_anon_pages"] for s in fold_node_stats(a)]
    failed, status = n.move_pages(0, [addr + p * PG for p in range(16)], [1] * 16, MOVE)
    assert failed == 0 and status == [1] * 16
    new = [pfn_at(vm, addr + p * PG) for p in range(16)]
    n.migrate.lru_drain()                          # the new folios: from this CPU's lru_add batch to the LRU
    pages = page_array(a)
    try:
        for o, nw in zip(old, new):
            assert pages["refcount"][o] == 0 and pages["mapping"][o] == 0 and pages["mapcount"][o] == 0
            assert pages["refcount"][nw] == 2 and pages["mapcount"][nw] == 1 and pages["node"][nw] == 1
            assert pages["flags"][nw] & PG_lru and not pages["flags"][o] & PG_lru      # the LRU follows
    finally:
        del pages
    assert all(vm.rmap.mapped_ptes(nw) == [(vm.cur[1], addr + p * PG)] for p, nw in enumerate(new))
    assert [vm.load64(addr + p * PG + 8 * p) for p in range(16)] == [p * 1000 + 7 for p in range(16)]
    anon1 = [s["nr_anon_pages"] for s in fold_node_stats(a)]
    assert anon1 == [anon0[0] - 16, anon0[1] + 16]
    done(a, vm)


def test_migrate_pages_pairs_nodes_in_the_kernels_order(machine) -> None:
    """do_migrate_pages(): {1, 2} -> {2, 3} maps node 1 to 2 and 2 to 3 (node_remap: the
    n-th node of one set to the n-th of the other) and moves node 2's pages first, as
    their destination is not a pending source -- the other order would carry node 1's
    pages on to node 3.  {2, 3} -> {0, 3} leaves node 3's pages where they are."""
    a = numa_machine(machine, nr_nodes=4, nr_cpus=4, nr_pages=16384)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 8 * PG, RW, ANON)
    n.mbind(addr, 8 * PG, MP.MPOL_INTERLEAVE, 0b0110)               # pages on 1, 2, 1, 2 ...
    for p in range(8):
        vm.store64(addr + p * PG, p)
    n.mbind(addr, 8 * PG, MP.MPOL_DEFAULT)
    assert [node_of(vm, addr + p * PG) for p in range(8)] == [1, 2] * 4
    assert n.migrate_pages(0, 0b0110, 0b1100) == 0
    assert [node_of(vm, addr + p * PG) for p in range(8)] == [2, 3] * 4
    pfn3 = pfn_at(vm, addr + PG)
    assert n.migrate_pages(0, 0b1100, 0b1001) == 0
    assert [node_of(vm, addr + p * PG) for p in range(8)] == [0, 3] * 4
    assert pfn_at(vm, addr + PG) == pfn3                          # 3 -> 3: not moved
    assert [vm.load64(addr + p * PG) for p in range(8)] == list(range(8))
    with pytest.raises(VMError) as ei:
        n.migrate_pages(0, 0b1, 1 << 40)
    assert ei.value.errno_name == "EINVAL"
    done(a, vm)


def test_migrate_pages_of_another_task(machine) -> None:
    """migrate_pages(pid) moves another task's pages while it runs on another CPU (its
    TLB is shot down).  Folios still in the owner CPU's lru_add batch are on no LRU and
    cannot be isolated (EBUSY: only the caller's own batch is drained, there is no
    lru_add_drain_all); once the owner drained its batch they move."""
    a = numa_machine(machine)
    A, na, ta = cpu(a, 0)
    B, _nb, _tb = cpu(a, 1)
    addr = A.mmap(0, 4 * PG, RW, ANON)
    for p in range(4):
        A.store64(addr + p * PG, p)
    pid = a.u64[(a.off("vmtask") + ta * 128 + 8) >> 3]
    B.make_current(thread_only=True)
    o = Other(A, lambda: None).start()                             # A's idle loop answers IPIs
    assert B.numa.migrate_pages(pid, 0b01, 0b10) == 4               # all four in A's batch
    stop_all()
    A.numa.migrate.lru_drain()
    o = Other(A, lambda: None).start()
    assert B.numa.migrate_pages(pid, 0b01, 0b10) == 0
    stop_all()
    A.make_current()
    assert [node_of(A, addr + p * PG) for p in range(4)] == [1] * 4
    assert [A.load64(addr + p * PG) for p in range(4)] == [0, 1, 2, 3]
    _ = (o, na)
    done(a, A, B)


# ---------------------------------------------------------------- forced interleavings
def _threads(machine):
    a = numa_machine(machine, vm={"mm": "threads"})
    A = VM(a, 0)
    B = VM(a, 1)
    attach(A)
    attach(B)
    mm = A.forks.mm_alloc()
    A.switch_to(A.task_create("a", mm=mm))
    B.switch_to(B.task_create("b", mm=mm))
    A.forks.mmput(mm)
    return a, A, B


class Gated(Other):
    """Other whose fn waits (answering its CPU's IPIs, as an idle CPU does) until go()."""

    def __init__(self, cpu: VM, fn) -> None:
        import threading

        self.gate = threading.Event()

        def body():
            while not self.gate.is_set():
                cpu.tlb.handle_ipi()
                time.sleep(0.0005)
            return fn()

        super().__init__(cpu, body)

    def go(self, me: VM) -> None:
        self.gate.set()


def _fresh(a, old: VM, c: int) -> VM:
    """A handle built after the test points were set (closures bind them at build)."""
    v = VM(a, c)
    attach(v)
    v.switch_to(old.current_task())
    old.task = -1
    return v


def test_fault_waits_for_the_migration_entry(machine) -> None:
    """A fault on a page being migrated meets its migration entry and waits until the
    move is done, then reads the data at its new place (migration_entry_wait)."""
    a, A, B = _threads(machine)
    addr = A.mmap(0, 2 * PG, RW, ANON)
    A.store64(addr, 4242)
    o = Gated(B, lambda: B.load64(addr)).start()     # B idles (answering IPIs) until the point

    def unmapped(_name: str) -> None:
        o.go(A2)
        o.wait(A2, o.blocked.is_set, "waited on the migration entry")
        assert not o.done.is_set()                   # it cannot read until the entry changes

    hooks.set_point("migrate:unmapped", unmapped)
    A2 = _fresh(a, A, 0)
    A2.make_current(thread_only=True)
    assert A2.numa.move_pages(0, [addr], [1], MOVE) == (0, [1])
    assert o.join(A2) == 4242
    assert node_of(A2, addr) == 1
    hooks.clear_points()
    stop_all()
    done(a, A2, B)
    A.leave()


def test_munmap_waits_for_the_migration_and_frees_the_new_page(machine) -> None:
    a, A, B = _threads(machine)
    addr = A.mmap(0, 2 * PG, RW, ANON)
    A.store64(addr, 1)
    o = Gated(B, lambda: B.munmap(addr, 2 * PG)).start()

    def unmapped(_name: str) -> None:
        o.go(A2)
        o.wait(A2, o.blocked.is_set, "blocked on mmap_lock")
        assert not o.done.is_set()

    hooks.set_point("migrate:unmapped", unmapped)
    A2 = _fresh(a, A, 0)
    A2.make_current(thread_only=True)
    assert A2.numa.move_pages(0, [addr], [1], MOVE) == (0, [1])
    o.join(A2)
    with pytest.raises(SegmentationFault):
        A2.load64(addr)
    hooks.clear_points()
    stop_all()
    done(a, A2, B)                                   # no page leaked: the new one went with the munmap
    A.leave()


def test_fork_waits_for_the_migration_then_the_page_is_shared(machine) -> None:
    a, A, B = _threads(machine)
    addr = A.mmap(0, 2 * PG, RW, ANON)
    A.store64(addr, 9)
    o = Gated(B, B.fork).start()

    def isolated(_name: str) -> None:
        o.go(A2)
        o.wait(A2, o.blocked.is_set, "blocked on mmap_lock")

    hooks.set_point("migrate:isolated", isolated)
    A2 = _fresh(a, A, 0)
    A2.make_current(thread_only=True)
    assert A2.numa.move_pages(0, [addr], [1], MOVE) == (0, [1])
    child = o.join(A2)
    hooks.clear_points()
    assert A2.numa.move_pages(0, [addr], [0], MOVE) == (0, [-EACCES])   # now mapped by the child too
    me = A2.current_task()
    A2.switch_to(child)
    assert A2.load64(addr) == 9 and node_of(A2, addr) == 1
    A2.exit()
    A2.switch_to(me)
    stop_all()
    done(a, A2, B)
    A.leave()


def test_a_pin_taken_during_the_move_backs_it_out(machine) -> None:
    """A reference taken after isolation (a racing get_user_pages) is caught by the
    count check after the unmap: the entries map the old page again, EBUSY."""
    a, A, B = _threads(machine)
    addr = A.mmap(0, 2 * PG, RW, ANON)
    A.store64(addr, 5)
    pfn = pfn_at(A, addr)
    mm = MM(a, 0)
    idle = Other(B, lambda: None).start()            # B answers the shootdowns
    hooks.set_point("migrate:isolated", lambda _n: mm.folio_get(pfn))
    A2 = _fresh(a, A, 0)
    A2.make_current(thread_only=True)
    assert A2.numa.move_pages(0, [addr], [1], MOVE) == (1, [-EBUSY])
    hooks.clear_points()
    assert pfn_at(A2, addr) == pfn and A2.load64(addr) == 5
    page = page_array(a)
    refs = int(page["refcount"][pfn])
    del page
    for _ in range(refs - 2):
        mm.folio_put(pfn)
    A3 = _fresh(a, A2, 0)
    A3.make_current(thread_only=True)
    assert A3.numa.move_pages(0, [addr], [1], MOVE) == (0, [1]) and A3.load64(addr) == 5
    stop_all()
    _ = idle
    A2.leave()
    done(a, A3, B)
    A.leave()


@pytest.mark.parametrize("point, second", [("migrate:isolated", -EBUSY), ("migrate:unmapped", -ENOENT)])
def test_two_migrators_of_one_page(machine, point: str, second: int) -> None:
    """One migrator at a time: a second one finds the folio locked (PG_locked: EBUSY)
    while the first isolates it, or only a migration entry (ENOENT, as Linux's
    folio_walk finds no folio) once it is unmapped."""
    a, A, B = _threads(machine)
    addr = A.mmap(0, 2 * PG, RW, ANON)
    A.store64(addr, 3)
    seen: list[object] = []
    o = Gated(B, lambda: B.numa.move_pages(0, [addr], [1], MOVE)).start()

    def at_point(_name: str) -> None:
        if seen:
            return
        o.go(A2)
        seen.append(o.join(A2))

    hooks.set_point(point, at_point)
    A2 = _fresh(a, A, 0)
    A2.make_current(thread_only=True)
    assert A2.numa.move_pages(0, [addr], [1], MOVE) == (0, [1])
    assert seen == [(0, [second])]
    hooks.clear_points()
    stop_all()
    assert A2.load64(addr) == 3
    done(a, A2, B)
    A.leave()


def test_shared_and_file_pages_are_refused_not_half_moved(machine) -> None:
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    sh = vm.mmap(0, 2 * PG, RW, M.MAP_SHARED | M.MAP_ANONYMOUS)
    vm.store64(sh, 1)
    fid = vm.file_create("f", 4 * PG, seed=1)
    fm = vm.mmap(0, 4 * PG, M.PROT_READ, M.MAP_PRIVATE, fid, 0)
    vm.load64(fm)
    assert n.move_pages(0, [sh, fm], [1, 1], MOVE_ALL) == (0, [-EBUSY, -EBUSY])
    assert vm.load64(sh) == 1 and node_of(vm, sh) == 0
    done(a, vm)
