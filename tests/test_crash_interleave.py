"""Crash recovery against what live CPUs did after the death (forced interleavings).

Between a CPU's death and the world stopping for its recovery, the live CPUs run on
(mm/recovery.py phase A): whatever the dead CPU's records name but had already
published may have been taken by a live CPU.  Recovery must repair only what the dead
CPU held alone.
"""

from __future__ import annotations

from aerosync.mm import intent as I
from aerosync.mm.slab.slab_common import FROZEN, K_SLAB, M_WORD, NIL32, SMETA, ST_FREE, _cpu_off, _geo
from aerosync.mm.slab.slub import Slub
from tests import crash_helpers as H

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
    from aerosync.mm.vm.vm import VM

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": "threads"})
    vm1 = VM(a, 1)
    vm1.make_current()
    t1 = vm1.task_create("live")
    vm1.switch_to(t1)
    mm = vm1.cur[1]
    heap = vm1.brk(0)

    def grow(arena, cpu) -> None:
        vm = VM(arena, cpu)
        vm.make_current()
        vm.switch_to(vm.task_create("dies", mm=mm))
        vm.brk(heap + 2 * 4096)

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
    from aerosync.mm.vm.vm import VM

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})
    vm = VM(a, 0)
    vm.make_current()
    t = vm.task_create("t")
    vm.switch_to(t)
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
