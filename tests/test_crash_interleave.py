"""Crash recovery against what live CPUs did after the death (forced interleavings).

Between a CPU's death and the world stopping for its recovery, the live CPUs run on
(mm/recovery.py phase A): whatever the dead CPU's records name but had already
published may have been taken by a live CPU.  Recovery must repair only what the dead
CPU held alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from aerosync.mm import intent as I
from aerosync.mm.slab.slab_common import FROZEN, K_SLAB, M_WORD, NIL32, SMETA, ST_FREE, _cpu_off, _geo
from aerosync.mm.slab.slub import Slub
from aerosync.mm.vm.memory import SegmentationFault
from tests import crash_helpers as H
from tests.crash_helpers import no_bad_pages  # noqa: F401 (autouse fixture)

CACHE = "kmalloc-512"


def _exhaust(arena, cpu: int) -> None:
    """Allocate from CACHE on `cpu` and never free: every cpu slab runs out with no
    remote frees, so the slow path finds no freelist to take (get_freelist: NIL)."""
    kc = Slub(arena, cpu).cache(CACHE)
    for _ in range(4096):
        kc.alloc()


def test_full_slab_published_by_the_dead_cpu_is_not_unfrozen(machine) -> None:
    """cpu1 dies at slab:alloc:freelist right after get_freelist() found its cpu slab X
    full: X is unfrozen, full and on no list -- public: a free on cpu0 puts it on cpu0's
    partial list, and cpu0's next allocation freezes it and installs it as c->slab.  The
    dead CPU's record (slab_alloc_slow step 1, slab X, chain NIL) must then leave X
    alone: splicing an empty chain would unfreeze cpu0's cpu slab (S3)."""
    p = H.soak_params()
    a = H.soak_machine(machine, p)
    pid, killed = H.run_child(a, 1, _exhaust, "slab:alloc:freelist", 0)
    assert killed
    (rec,) = I.read_records(a, 1)
    assert (I.OP_NAMES[rec.op], rec.step, rec.args[2]) == ("slab_alloc_slow", 1, NIL32)
    x = rec.args[1]
    kc0 = Slub(a, 0).cache(CACHE)
    kc0.free_slow(x, 0)                       # __slab_free (as a magazine spill does): X to
    kc0.stat(ST_FREE)                         # cpu0's partial list; kfree counted it
    addr = kc0.alloc()                        # cpu0 takes X from c->partial, installs it
    assert kc0.obj_index(x, addr) == 0
    _, nr_cpus, _, mag, _ = _geo(a)
    assert a.u64[(_cpu_off(a, kc0.id, 0, nr_cpus, mag) + K_SLAB) >> 3] == x
    H.recover(a, pid, 1, p)
    H.check_all(a)
    assert a.u64[(a.off("slabmeta") + x * SMETA + M_WORD) >> 3] & FROZEN
    kc0.free(addr)
    kc0.flush_cpu(0)
    H.check_all(a)


def test_brk_of_a_shared_mm_settles_after_a_death(machine) -> None:
    """Threads mode: cpu0's thread dies in brk after the heap VMA grew but before
    mm->brk followed (vm:brk:changed).  The mm lives on in cpu1's thread: recovery sets
    mm->brk to the heap's end (brk_settle), so the live thread's brk calls keep
    working -- a lagging mm->brk had every later grow refused (will-it-scale brk1 in
    threads mode after a kill: half its calls refused)."""

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": "threads"})
    vm1, t1 = H.task_vm(a, 1, "live")
    mm = vm1.cur[1]
    heap = vm1.brk(0)
    grow = H.brk_grow_driver(mm, heap)
    pid, killed = H.run_child(a, 0, grow, "vm:brk:changed", 0)
    assert killed
    assert [(I.OP_NAMES[r.op], r.step) for r in I.read_records(a, 0)] == [("vm_brk", 1)]
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert vm1.brk(0) == heap + 2 * 4096          # the heap VMA grew: mm->brk followed
    assert vm1.brk(heap + 3 * 4096) == heap + 3 * 4096
    vm1.store64(heap + 2 * 4096, 7)
    assert vm1.brk(heap) == heap
    assert vm1.brk(heap + 4096) == heap + 4096
    vm1.exit()
    vm1.reap(t1)
    vm1.leave()
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def _half_split(vm, mm: int, vma: int, addr: int, landed: bool) -> int:
    """__split_vma's work up to its record's step 1, the tree store landed or not (a
    death in the store's freeing of replaced nodes, or before the store)."""
    from aerosync.mm.vm import vma as V

    q = vm.arena.u64
    new = vm.vmas.dup(vma)
    q[(new + V.V_START) >> 3] = addr
    q[(new + V.V_PGOFF) >> 3] += (addr - q[(vma + V.V_START) >> 3]) >> 12
    o = q[(new + V.V_OBJECT) >> 3]
    if o:
        vm.objs.get(o)
    if landed:
        assert vm.vmas.tree(mm).mas_store_range(addr, q[(new + V.V_END) >> 3] - 1, new) == 0
    return new


def test_split_recovery_follows_the_tree(machine) -> None:
    """A dead CPU's split at step 1 is rolled forward when its tree store landed (the
    old VMA's end cut, the new one attached, linked and counted) and undone when not
    (the object reference put, the VMA freed): either way the VMA tree and the VMAs
    agree (VT checks) and nothing leaks."""
    from aerosync.mm.vm import recover as VR
    from aerosync.mm.vm import vma as V
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})
    vm, t = H.task_vm(a, 0, "t")
    mm = vm.cur[1]
    q = a.u64
    for landed in (True, False):
        addr = vm.mmap(0, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(8):
            vm.store64(addr + i * 4096, i + 1)
        vma = vm.vmas.tree(mm).mtree_load(addr)
        new = _half_split(vm, mm, vma, addr + 3 * 4096, landed)
        rec = I.Record(ctx=0, depth=0, op=I.OP["vm_split"], args=(mm, vma, new, addr + 3 * 4096, 0, 0), step=1)
        VR.recover_record(a, vm, rec, [], False)
        H.check_all(a)
        if landed:
            assert q[(vma + V.V_END) >> 3] == addr + 3 * 4096
            assert vm.vmas.tree(mm).mtree_load(addr + 3 * 4096) == new
        else:
            assert q[(vma + V.V_END) >> 3] == addr + 8 * 4096
        for i in range(8):
            assert vm.load64(addr + i * 4096) == i + 1
        vm.munmap(addr, 8 * 4096)
    vm.exit()
    vm.reap(t)
    vm.leave()
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_munmap_recovery_follows_the_tree(machine) -> None:
    """A dead CPU's munmap at step 0 whose tree erase landed (a death in the erase's
    freeing of replaced maple nodes: slab:mag_flush:spilled in a brk1 threads soak) is
    finished -- VMAs detached, map_count lowered, pages and VMAs freed; one whose erase
    did not land is left alone.  Before, the landed case left the VMAs out of the tree
    with map_count unchanged (VT4) and leaked them."""
    from aerosync.arena import layout as L
    from aerosync.mm.vm import recover as VR
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})
    vm, t = H.task_vm(a, 0, "t")
    mm = vm.cur[1]
    for landed in (True, False):
        addr = vm.mmap(0, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(8):
            vm.store64(addr + i * 4096, i + 1)
        vma = vm.vmas.tree(mm).mtree_load(addr)
        if landed:
            assert vm.vmas.erase(mm, addr, addr + 8 * 4096) == 0
        spill = [0] * (L.SPILL_VMAS + 1)
        spill[L.SPILL_VMAS] = vma
        rec = I.Record(ctx=0, depth=0, op=I.OP["vm_munmap"], args=(mm, addr, addr + 8 * 4096, 1, 0, 0), step=0)
        VR.recover_record(a, vm, rec, spill, False)
        H.check_all(a)
        if landed:
            assert vm.vmas.tree(mm).mtree_load(addr) == 0
            with pytest.raises(SegmentationFault):
                vm.load64(addr)
        else:
            assert vm.vmas.tree(mm).mtree_load(addr) == vma
            for i in range(8):
                assert vm.load64(addr + i * 4096) == i + 1
            vm.munmap(addr, 8 * 4096)
    vm.exit()
    vm.reap(t)
    vm.leave()
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def _dies_at_test_point(name: str):
    """In a driver (the child): SIGKILL this process at mm/hooks.py point `name` once the
    returned arm() was called.  Call it before the VM handles are built (they bind the
    hook function then)."""
    import os
    import signal

    from aerosync.mm import hooks

    armed = [False]

    def kill(_name: str) -> None:
        if armed[0]:
            os.kill(os.getpid(), signal.SIGKILL)

    hooks.set_point(name, kill)

    def arm() -> None:
        armed[0] = True

    return arm


def _recover_answering(a, rec, poll) -> None:
    """recover_cpu in a thread while this one answers the recovery's shootdown IPIs for
    a live CPU of this process (`poll`), as a parked worker would."""
    import threading

    from aerosync.mm import recovery
    from aerosync.mm.cpuhp import cpuhp_offline_mm

    err: list[BaseException] = []

    def run() -> None:
        try:
            recovery.recover_cpu(a, rec, H.vm_recover_hook, offline=cpuhp_offline_mm)
        except BaseException as e:
            err.append(e)

    th = threading.Thread(target=run)
    th.start()
    while th.is_alive():
        poll()
        th.join(0.0005)
    if err:
        raise err[0]


def test_live_thread_waits_out_a_dead_writers_brk(machine) -> None:
    """Threads mode: cpu0's thread dies in brk with mmap_lock write-held, the heap VMA
    grown but mm->brk not yet moved (vm:brk:changed).  The takeover keeps that hold
    (RW_KEPT) instead of releasing it; cpu2's thread, calling brk meanwhile, queues on
    the lock and parks inside its wait for the coordinator's pause (workers/cpu.py
    _lock_park: it acks the pause seq while still in brk); only after the recovery
    released the lock does its brk run -- on a consistent heap, so its grow succeeds.
    Released at the takeover, the live brk saw mm->brk lag the heap and was refused."""
    import os
    import time
    import traceback

    from aerosync.arena import layout as L
    from aerosync.mm import recovery
    from aerosync.mm.vm import mm_types as T
    from aerosync.params import CPU_AREA_SIZE
    from aerosync.sync.objlock import RW_KEPT, RW_WRITER
    from aerosync.sync.robust import HELD_WRITE
    from aerosync.sync.waithook import set_park_hook
    from workers.cpu import _lock_park

    p = H.soak_params()
    a = H.soak_machine(machine, p, nr_cpus=3, vm={"mm": "threads"})
    at = a.atomic
    vm1, t1 = H.task_vm(a, 1, "live")
    mm = vm1.cur[1]
    heap = vm1.brk(0)
    grow = H.brk_grow_driver(mm, heap)
    pid, killed = H.run_child(a, 0, grow, "vm:brk:changed", 0, poll=vm1.tlb.handle_ipi)
    assert killed
    rec = recovery.takeover(a, pid, 0)
    lock = T.mm_off(a, mm) + T.M_MMAP_LOCK
    assert rec.kept == [(lock, HELD_WRITE)]
    assert at.load64(lock) & (RW_KEPT | RW_WRITER) == RW_KEPT | RW_WRITER
    seq = at.fetch_add64(L.H_PAUSE_SEQ, 1) + 1          # the coordinator's pause
    run_state = at.load64(L.H_RUN_STATE)
    at.store64(L.H_RUN_STATE, L.RUN_PAUSE)
    area = (a.off("cpu") + 2 * CPU_AREA_SIZE) >> 3
    live = os.fork()
    if live == 0:                                        # pragma: no cover (the child: cpu2)
        code = 0
        try:
            vm, tid = H.task_vm(a, 2, "waits", mm)
            set_park_hook(_lock_park(a, 2, area, vm.tlb.handle_ipi, None))
            got = vm.brk(heap + 3 * 4096)
            if got != heap + 3 * 4096 or vm.brk(0) != got:
                print(f"brk refused: {got:#x}, heap {heap:#x}")
                code = 4
            vm.exit()
            vm.reap(tid)
            vm.leave()
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    try:
        deadline = time.monotonic() + 30
        while at.load64((area << 3) + L.CPU_PAUSE_ACK) != seq:       # parked inside brk's lock wait
            assert os.waitpid(live, os.WNOHANG) == (0, 0), "cpu2 left brk before the recovery"
            assert time.monotonic() < deadline, "cpu2 never parked"
            vm1.tlb.handle_ipi()
            time.sleep(0.001)
        assert at.load64(lock) & RW_KEPT
        _recover_answering(a, rec, vm1.tlb.handle_ipi)
        assert not at.load64(lock) & RW_KEPT and rec.kept == []
    finally:
        at.store64(L.H_RUN_STATE, run_state)
        while True:
            got, status = os.waitpid(live, os.WNOHANG)
            if got:
                break
            vm1.tlb.handle_ipi()
            time.sleep(0.0005)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    H.check_all(a)
    assert vm1.brk(0) == heap + 3 * 4096
    vm1.exit()
    vm1.reap(t1)
    vm1.leave()
    H.check_all(a)
    assert H.lost(a, p, 3) == {"pages": 0, "objects": 0}


def test_collapse_recovery_follows_the_child_tree(machine) -> None:
    """A dead CPU's collapse at step 1 (the entry's folio already says the child; the
    store into the child's tree in flight: a death in its node allocation) is finished
    when the store landed -- counts moved, the backing's copy erased -- and undone when
    it did not (the folio says the backing again).  Either way every page reads back
    right and the later, whole collapse of the rest passes the checkers.  Unlogged, a
    death there left a folio naming an object whose tree lacks it (O1) or in both trees."""
    from aerosync.mm.pmm.page import P_INDEX, P_MAPPING
    from aerosync.mm.vm import recover as VR
    from aerosync.mm.vm import vma as V
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
    from aerosync.mm.vm.vm_object import O_BACKING, O_NR_PAGES, O_TREE
    from aerosync.params import PAGE_META_SIZE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})
    q = a.u64
    pm = a.off("pagemeta")
    vm, t = H.task_vm(a, 0, "t")
    mm = vm.cur[1]
    for landed in (True, False):
        addr = vm.mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(4):
            vm.store64(addr + i * 4096, i + 1)
        child = vm.fork()
        vm.store64(addr, 100)                           # page 0 copied into the parent's shadow
        o = q[(vm.vmas.tree(mm).mtree_load(addr) + V.V_OBJECT) >> 3]
        back = q[(o + O_BACKING) >> 3]
        vm.objs.get(back)                               # held: no collapse at the child's exit
        vm.switch_to(child)
        vm.exit()
        vm.switch_to(t)
        vm.reap(child)
        e = vm.xa.load(back + O_TREE, 1)
        meta = pm + (e >> 2) * PAGE_META_SIZE
        q[(meta + P_MAPPING) >> 3] = o | 1             # collapse's first store (PAGE_MAPPING_ANON)
        if landed:
            assert vm.xa.store(o + O_TREE, 1, e) == 0
        rec = I.Record(ctx=0, depth=0, op=I.OP["vm_collapse"], args=(o, back, 1, e, 1, 0), step=1)
        VR.recover_record(a, vm, rec, [], False)
        if landed:
            assert vm.xa.load(back + O_TREE, 1) == 0 and q[(o + O_NR_PAGES) >> 3] == 2
        else:
            assert vm.xa.load(o + O_TREE, 1) == 0 and q[(meta + P_MAPPING) >> 3] == back | 1
            assert q[(meta + P_INDEX) >> 3] == 1
        vm.objs.put(back)                               # the hold goes: the rest collapses
        H.check_all(a)
        assert [vm.load64(addr + i * 4096) for i in range(4)] == [100, 2, 3, 4]
        vm.munmap(addr, 4 * 4096)
    vm.exit()
    vm.reap(t)
    vm.leave()
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_xa_nodes_in_hand_are_freed(machine) -> None:
    """A CPU killed while one XArray store allocates the nodes of a new path (its first
    nodes in hand, the next allocation under way) leaks nothing: the vm_xa_nodes record
    names the nodes in hand and recovery frees them.  Unlogged, the first node leaked
    (LK1 radix_tree_node in a fork-cow threads soak: a collapse's store into a grown
    tree)."""
    import os
    import signal

    from aerosync.mm.vm import vma as V
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
    from aerosync.mm.vm.vm_object import O_TREE

    p = H.soak_params()
    a = H.soak_machine(machine, p, nr_pages=8192, vm={})

    def drive(arena, cpu) -> None:
        vm, _ = H.task_vm(arena, cpu, "dies")
        addr = vm.mmap(0, 16384 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        vm.store64(addr, 1)                             # the tree: one entry at index 0
        o = arena.u64[(vm.vmas.tree(vm.cur[1]).mtree_load(addr) + V.V_OBJECT) >> 3]
        h = vm.xa.handle(o + O_TREE)
        alloc, n = h.alloc_node, [0]

        def second_kills() -> int:
            n[0] += 1
            if n[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return alloc()

        h.alloc_node = second_kills
        vm.store64(addr + 16000 * 4096, 2)             # a new path: the tree grows to shift 12

    pid, killed = H.run_child(a, 0, drive)
    assert killed
    recs = {r.name: r for r in I.read_records(a, 0)}
    assert recs["vm_xa_nodes"].step == 1, recs
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_huge_vmalloc_killed_half_filled_is_undone(machine) -> None:
    """vmalloc_huge in robust mode maps PMD blocks as it gets them (the block in hand and
    its order in the vm_vmalloc record): a CPU killed after the first block is mapped
    leaves an area recovery undoes -- the mapped huge block and the range freed, no
    half-made area (VA1: neither BUSY nor LAZY at a quiescent point, found in a
    vmalloc-storm soak)."""
    from aerosync.mm.vm.vm import VM

    p = H.soak_params()
    a = H.soak_machine(machine, p, nr_pages=8192, vm={})

    def drive(arena, cpu) -> None:
        vm = VM(arena, cpu)
        vm.make_current()
        vm.kernel.vmalloc.vmalloc_huge(4 << 20)

    pid, killed = H.run_child(a, 0, drive, "vm:vmalloc:page", 0)
    assert killed
    (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_vmalloc"]
    assert rec.step == 2 and rec.args[2] >= 1024, rec
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_xa_node_records_nest_per_tree(machine) -> None:
    """A store into one tree may nest inside another's node allocation (direct reclaim
    storing into a swap cache): each tree's store keeps its own vm_xa_nodes record, and
    the inner one's publication ends only its own -- one shared record would take the
    inner nodes as the outer's and close the outer record (with the allocator's records
    opened under it) at the inner publication."""
    from aerosync.mm.vm.vm import VM

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})
    vm = VM(a, 0)
    track = vm.xa.callbacks[4]
    assert track is not None
    def owner_records() -> list[I.Record]:          # (the owner has one context: read once)
        return [r for r in I.read_records(a, -1) if r.ctx == 0]

    depth0 = len(owner_records())

    def open_nodes() -> list[tuple[int, ...]]:
        return [r.args[: r.step] for r in owner_records() if r.name == "vm_xa_nodes"]

    track(4096, 0x10000)                       # tree A: a first node in hand
    track(8192, 0x20000)                       # tree B's store, nested
    track(8192, 0x20040)
    assert sorted(open_nodes()) == [(0x10000,), (0x20000, 0x20040)]
    track(8192, -1)                            # B published: A's record stays open
    assert open_nodes() == [(0x10000,)]
    track(4096, 0x10040)
    assert open_nodes() == [(0x10000, 0x10040)]
    track(4096, -1)
    assert open_nodes() == [] and len(owner_records()) == depth0
    vm.leave()


class _KillAfterFrees:
    """An MM stand-in for a Vmalloc handle whose page frees (`free_pages`, and
    `free_frozen_pages`: robust mode's vfree drops each page's reference itself first)
    SIGKILL the process right after its n-th page is freed: a vb_free dies between two
    pages of its unmap (each page's PTE cleared and the page freed: the log describes
    that state)."""

    def __init__(self, mm, n: int) -> None:
        self._mm, self._n = mm, n

    def __getattr__(self, name: str):
        return getattr(self._mm, name)

    def _freed(self) -> None:
        import os
        import signal

        self._n -= 1
        if not self._n:
            os.kill(os.getpid(), signal.SIGKILL)

    def free_pages(self, pfn: int, order: int) -> None:
        self._mm.free_pages(pfn, order)
        self._freed()

    def free_frozen_pages(self, pfn: int, order: int, cold: bool) -> None:
        self._mm.free_frozen_pages(pfn, order, cold)
        self._freed()


def test_vb_free_killed_mid_unmap_is_finished(machine) -> None:
    """A CPU killed in vb_free after 5 of a block allocation's 20 pages were unmapped
    and freed: the vm_vb_free record (step 1, claimed) lets recovery unmap and free the
    other 15, uncount all 20 and mark the range dirty -- no page leaked or freed twice,
    nr_vmalloc_pages exact (VA3), the block's bitmaps consistent (VA4).  Unlogged, the
    block kept a used range no one could free (VA3 in a vmalloc-storm soak)."""
    from aerosync.mm.cpuhp import cpuhp_online_mm
    from aerosync.mm.vm.vm import VM
    from aerosync.mm.vm.vmalloc import Vmalloc

    p = H.soak_params()
    a = H.soak_machine(machine, p, nr_pages=8192, vm={})

    def drive(arena, cpu) -> None:
        vm = VM(arena, cpu)
        vm.make_current()
        addr = vm.kernel.vmalloc.vmalloc(20 * 4096)
        dying = Vmalloc(arena, cpu, _KillAfterFrees(vm.mm, 5), vm.slub, vm.tlb)
        dying.vfree(addr)

    pid, killed = H.run_child(a, 0, drive)
    assert killed
    (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_vb_free"]
    assert rec.step == 1 and rec.args[2] == 21 and rec.args[3] == 1, rec
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    cpuhp_online_mm(a, 0)
    _, killed = H.run_child(a, 0, H.vmblock_driver(rounds=10, seed=2))   # ends with vm_unmap_aliases
    assert not killed
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_blocks_chosen_for_retirement_by_a_dead_cpu_are_freed(machine) -> None:
    """vm_unmap_aliases frees every block with nothing in use (purge_fragmented_blocks):
    it marks them dead and takes them off the queue, then frees them one by one.  A CPU
    killed freeing the first (its area lazy, at vm:vb_retire:lazy) leaves the second
    dead but still in the block table: recovery's scan (dead_blocks) frees it."""
    from aerosync.mm.vm.vm import VM

    p = H.soak_params()
    a = H.soak_machine(machine, p, nr_pages=8192, nr_nodes=2, vm={})

    def drive(arena, cpu) -> None:
        vm = VM(arena, cpu)
        vm.make_current()
        v = vm.kernel.vmalloc
        x, y = v.vmalloc_node(4096, 0), v.vmalloc_node(4096, 1)   # one block per node
        v.vfree(x)
        v.vfree(y)                                 # both idle, 254 pages never handed out
        v.vm_unmap_aliases()

    pid, killed = H.run_child(a, 0, drive, "vm:vb_retire:lazy", 0)
    assert killed
    (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_vb_retire"]
    assert rec.step == 3, rec
    from aerosync.mm.vm.vmalloc import dead_blocks

    assert len(dead_blocks(a)) == 1
    r = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert r.scan["vmap_blocks_retired"] == 1
    assert dead_blocks(a) == []
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_merge_killed_in_its_tree_store_keeps_the_tree_whole(machine) -> None:
    """mprotect folds a VMA back into its neighbours (vma_merge_existing_range): a CPU
    killed while the survivor's tree store allocates nodes leaves every VMA the tree
    maps attached and alive -- the swallowed VMA is removed only after the store (as
    Linux's commit_merge: store, then vma_complete), under a vm_merge record that
    recovery finishes once the store landed.  Removing it first left the tree mapping
    a freed VMA."""
    import os
    import signal

    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})

    def drive(arena, cpu) -> None:
        vm, _ = H.task_vm(arena, cpu, "dies")
        addr = vm.mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(3):
            vm.store64(addr + i * 4096, i + 1)
        vm.mprotect(addr + 4096, 4096, PROT_READ)     # three VMAs: RW, R, RW
        t = vm.vmas.tree(vm.cur[1])
        alloc = t.alloc_node

        def kills() -> int:
            os.kill(os.getpid(), signal.SIGKILL)
            return alloc()

        t.alloc_node = kills
        vm.mprotect(addr + 4096, 4096, PROT_READ | PROT_WRITE)   # merges back into one

    pid, killed = H.run_child(a, 0, drive)
    assert killed
    recs = {r.name: r for r in I.read_records(a, 0)}
    assert "vm_expand" in recs and recs["vm_merge"].step == 1, recs
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_dontneed_killed_before_its_puts_loses_nothing(machine) -> None:
    """MADV_DONTNEED zaps through an mmu_gather: a CPU killed after the flush, before the
    gathered pages' PTE references are put (zap:before_free), leaks nothing -- the
    gather is logged (vm_gather: its pages in the spill), and recovery puts them.
    Unlogged, those 16 pages stayed allocated with no PTE and no owner."""
    from aerosync.mm.vm.mmap import MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})

    def drive(arena, cpu) -> None:
        arm = _dies_at_test_point("zap:before_free")
        vm, _ = H.task_vm(arena, cpu, "dies")
        addr = vm.mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(16):
            vm.store64(addr + i * 4096, i + 1)
        arm()
        vm.madvise(addr, 16 * 4096, MADV_DONTNEED)

    pid, killed = H.run_child(a, 0, drive)
    assert killed
    recs = {r.name: r for r in I.read_records(a, 0)}
    assert recs["vm_gather"].step == 16, recs
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_munmap_killed_before_its_puts_frees_the_detached_tables(machine) -> None:
    """munmap of a 4 MiB region (two PMDs' PTE tables, a PMD table, a PUD table wholly
    inside the hole): free_pgd_range clears their parent entries and gathers them; a CPU
    killed after the flush, before the puts (zap:before_free), leaves them reachable
    from no root.  The gather logs them (vm_gather a1, the spill's top) and recovery
    frees them; unlogged they stayed allocated (PT1: unreachable tables)."""
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})

    def drive(arena, cpu) -> None:
        arm = _dies_at_test_point("zap:before_free")
        vm, _ = H.task_vm(arena, cpu, "dies")
        addr = vm.mmap(0x40000000, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        vm.store64(addr, 1)
        vm.store64(addr + (2 << 20), 2)
        arm()
        vm.munmap(addr, 4 << 20)

    pid, killed = H.run_child(a, 0, drive)
    assert killed
    recs = {r.name: r for r in I.read_records(a, 0)}
    assert recs["vm_gather"].step == 2 and recs["vm_gather"].args[1] == 4, recs
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


@pytest.mark.parametrize("where", ["insert", "tables", "moved"])
def test_mremap_move_killed_is_finished_or_undone(machine, where: str) -> None:
    """mremap moving a 6-page region whose new place needs a new PTE table, killed in
    the new VMA's tree store (vm_mremap step 1: undone unless it landed), in the
    destination table's allocation (step 2: the rest of the entries moved) or with
    the tables moved (vm:mremap:moved, step 3: the old VMA erased and removed).  After
    recovery every checker passes and nothing leaks; unlogged, a death there left the
    new VMA allocated outside the tree, or the old one attached after its erase."""
    import os
    import signal

    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})
    src, dst = 0x40000000, 0x40400000

    def drive(arena, cpu) -> None:
        vm, _ = H.task_vm(arena, cpu, "dies")
        vm.mmap(src, 6 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        vm.mmap(src + 6 * 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)    # no growing in place
        for i in range(6):
            vm.store64(src + i * 4096, i + 1)
        if where == "insert":
            t = vm.vmas.tree(vm.cur[1])
            alloc = t.alloc_node

            def kills() -> int:
                os.kill(os.getpid(), signal.SIGKILL)
                return alloc()

            t.alloc_node = kills
        elif where == "tables":
            vm.mm.drain_local_pages()                # the table's page comes through a PCP refill
            I.arm(arena, cpu, I.point_id("pcp:refill:linked"), 0)
        else:
            I.arm(arena, cpu, I.point_id("vm:mremap:moved"), 0)
        vm.mremap(src, 6 * 4096, 6 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, dst)

    pid, killed = H.run_child(a, 0, drive)
    assert killed
    (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_mremap"]
    assert rec.step == {"insert": 1, "tables": 2, "moved": 3}[where], [str(r) for r in I.read_records(a, 0)]
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_mremap_move_recovered_without_memory_for_its_tables_is_undone(machine, monkeypatch) -> None:
    """The "tables" death above, recovered when the rest of the move cannot have its
    destination table (move_page_tables stops half-way: ENOMEM): the move is undone as
    the live call's ENOMEM is -- every entry back at the old range, the new VMA removed
    -- so the region still holds its data where it was.  Before, recovery went on to
    erase the old range and remove its VMA over the entries left there."""
    from aerosync.mm.vm import vm as VMmod
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})
    src, dst = 0x40000000, 0x40400000

    def drive(arena, cpu) -> None:
        vm, _ = H.task_vm(arena, cpu, "dies")
        vm.mmap(src, 6 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        vm.mmap(src + 6 * 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(6):
            vm.store64(src + i * 4096, i + 1)
        vm.mm.drain_local_pages()
        I.arm(arena, cpu, I.point_id("pcp:refill:linked"), 0)
        vm.mremap(src, 6 * 4096, 6 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, dst)

    pid, killed = H.run_child(a, 0, drive)
    assert killed
    (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_mremap"]
    assert rec.step == 2
    real_init = VMmod.VM.__init__
    seen: list[int] = []

    def init(self, *args, **kw) -> None:                  # the recovery's handle: its moves stop half-way
        real_init(self, *args, **kw)
        move = self.memory.move_page_tables

        def half(mm_id: int, old: int, new: int, length: int) -> int:
            if old == src and not seen:
                seen.append(length)
                return move(mm_id, old, new, 3 * 4096)
            return move(mm_id, old, new, length)

        self.memory.move_page_tables = half

    def check(arena, cpu, records, mm, slub):             # before the dead task exits: its region
        vm = VMmod.VM(arena, cpu, mm=mm)
        try:
            m = 1
            t = vm.vmas.tree(m)
            assert t.mtree_load(dst) == 0 and t.mtree_load(src) != 0
            vals = [_read64(arena, vm, m, src + i * 4096) for i in range(6)]
            assert vals == [1, 2, 3, 4, 5, 6]
        finally:
            vm.leave()
        return H.vm_recover_hook(arena, cpu, records, mm, slub)

    monkeypatch.setattr(VMmod.VM, "__init__", init)
    H.recover(a, pid, 0, p, check)
    monkeypatch.undo()
    assert seen == [6 * 4096]
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def _read64(arena, vm, mm_id: int, va: int) -> int:
    """The word at va of mm_id, through its page tables, straight from physical memory."""
    from aerosync.mm.vm import mm_types as T
    from aerosync.mm.vm.pgtable import _PAGE_PRESENT, PTE_PFN_MASK

    q, phys = arena.u64, arena.off("physmem")
    table = vm.pt.walk(q[(T.mm_off(arena, mm_id) + T.M_PGD) >> 3], va)
    e = q[(phys >> 3) + (table << 9) + ((va >> 12) & 511)] if table >= 0 else 0
    assert e & _PAGE_PRESENT, (hex(va), hex(e))
    return q[(phys + (e & PTE_PFN_MASK) + (va & 4095)) >> 3]


@contextlib.contextmanager
def _threads_under_pressure(machine, n: int) -> Iterator[tuple]:
    """A threads-mode machine of 2048 pages (MGLRU, swap to ZMM) whose live thread on
    cpu1 maps n anonymous pages: yields (arena, the live VM, the mm, the region); then
    the live thread unmaps it and exits, the checkers pass and nothing is lost.  The
    swap file goes whatever happens."""
    from aerosync.mm.reclaim.swapfile import swapoff
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": "threads"}, nr_pages=2048,
                       reclaim={"lru": "mglru", "swap_size": 16 << 20, "zmm": True})
    try:
        vm1, t1 = H.task_vm(a, 1, "live")
        addr = vm1.mmap(0, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        yield a, vm1, vm1.cur[1], addr
        vm1.munmap(addr, n * 4096)
        vm1.exit()
        vm1.reap(t1)
        vm1.leave()
        H.check_all(a)
        assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}
    finally:
        swapoff(a)


@pytest.mark.parametrize("where", ["read", "mapping"])
def test_swapin_killed_leaves_no_folio_locked_and_loses_no_data(machine, where: str) -> None:
    """Threads mode: cpu1's thread writes a region larger than the machine (swapped out to
    ZMM); cpu0's thread reads it back and dies in a swap-in -- right after ZMM's copy
    was read into the new folio, before that copy is dropped (vm_swapin step 2: the
    folio may hold the only copy), or with the folio read and held, on its way to the
    LRU (step 3).  Recovery
    finishes the folio (uptodate, dirty, on its LRU) and unlocks it; the live thread
    then reads every page back intact.  Unlogged, the folio stayed locked in the swap
    cache for good (LRU4 in a reclaim-thrash soak) and the next fault on that slot
    waited for its lock until it gave up."""
    import os
    import signal

    from aerosync.mm import recovery

    n = 3000
    with _threads_under_pressure(machine, n) as (a, vm1, mm, addr):
        for i in range(n):
            vm1.store64(addr + i * 4096, i + 1)

        def drive(arena, cpu) -> None:
            vm, _ = H.task_vm(arena, cpu, "dies", mm)
            calls = [0]
            if where == "read":
                real = vm.reclaim.zmm.load_drop

                def kills(slot: int, h: int) -> None:
                    calls[0] += 1
                    if calls[0] == 5:
                        os.kill(os.getpid(), signal.SIGKILL)
                    real(slot, h)

                vm.reclaim.zmm.load_drop = kills
            else:
                real_add = vm.reclaim.swap.lru_add

                def kills_add(pfn: int) -> None:
                    calls[0] += 1
                    if calls[0] == 5:
                        os.kill(os.getpid(), signal.SIGKILL)
                    real_add(pfn)

                vm.reclaim.swap.lru_add = kills_add
            for i in range(n):
                assert vm.load64(addr + i * 4096) == i + 1

        pid, killed = H.run_child(a, 0, drive, poll=vm1.tlb.handle_ipi)
        assert killed
        steps = [r.step for r in I.read_records(a, 0) if r.name == "vm_swapin"]   # (a readahead page's inside)
        assert (2 if where == "read" else 3) in steps, steps
        _recover_answering(a, recovery.takeover(a, pid, 0), vm1.tlb.handle_ipi)
        H.check_all(a)
        assert [vm1.load64(addr + i * 4096) for i in range(n)] == [i + 1 for i in range(n)]


def test_reclaim_killed_in_a_writeout_puts_the_folio_back_dirty(machine) -> None:
    """Threads mode: cpu0's thread writes a region larger than the machine and dies in
    reclaim while a folio is written out (ZMM's store under way: PG_dirty already clear,
    no copy made).  Recovery unlocks that folio, makes it dirty again and puts it and
    the rest of the isolated batch back on their LRUs; the live thread on cpu1 then
    reads every page back, through more reclaim and swap-ins -- all intact.  Without
    the re-dirtying the folio is clean with no copy anywhere: the next reclaim drops it
    and its page reads back wrong."""
    import os
    import signal

    from aerosync.mm import recovery
    from aerosync.mm.pmm.page import PG_dirty, PG_locked
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
    from aerosync.params import PAGE_META_SIZE

    n = 3000
    with _threads_under_pressure(machine, n) as (a, vm1, mm, addr):

        def drive(arena, cpu) -> None:
            vm, _ = H.task_vm(arena, cpu, "dies", mm)
            stores = [0]
            real = vm.reclaim.zmm.store

            def kills(slot: int, pfn: int) -> bool:
                stores[0] += 1
                if stores[0] == 40:                      # a few batches in
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(slot, pfn)

            vm.reclaim.zmm.store = kills
            for i in range(n):                           # reclaim runs in these faults
                vm.store64(addr + i * 4096, i + 1)

        pid, killed = H.run_child(a, 0, drive, poll=vm1.tlb.handle_ipi)
        assert killed
        (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_reclaim"]
        cur, wslot = rec.args[1], rec.args[2]
        assert cur and wslot, rec
        pm = a.off("pagemeta") + (cur - 1) * PAGE_META_SIZE
        assert a.u32[pm >> 2] & PG_locked and not a.u32[pm >> 2] & PG_dirty
        _recover_answering(a, recovery.takeover(a, pid, 0), vm1.tlb.handle_ipi)
        fl = a.u32[pm >> 2]
        assert not fl & PG_locked and fl & PG_dirty, hex(fl)
        H.check_all(a)
        other = vm1.mmap(0, 2000 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(2000):                            # evicts the region (the folio among it)
            vm1.store64(other + i * 4096, 7)
        vm1.munmap(other, 2000 * 4096)
        written = [vm1.load64(addr + i * 4096) for i in range(n)]
        assert all(w in (0, i + 1) for i, w in enumerate(written))          # the dead thread stopped part-way
        assert written.index(0) > 40 and not any(written[written.index(0):]), "a page lost its data"
