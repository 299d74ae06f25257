"""Crash consistency: a simulated CPU killed at any fault point loses nothing.

Invariant (mm/recovery.py): after a CPU dies at any fault point (mm/intent.py POINTS) and
is recovered -- its locks taken over, its intent records rolled forward or back, what it
held given back, the CPU taken offline, the state scans -- every checker passes (mm,
slab, vm, H1), the machine keeps working, and every page and object is accounted for:
after everything held is freed, the pages allocated and the objects in use are back at
the boot baseline (lost 0 / 0).

Each point runs in a fresh small machine (tests/crash_helpers.py): a forked child acts
as CPU 0 and drives the crash_soak workload with parameters that reach the point (the
table below was found from the hit counters), dying at the point after `skip` passes.
"""

from __future__ import annotations

import pytest

from aerosync.arena import layout as L
from aerosync.mm import intent as I
from aerosync.mm.cpuhp import cpuhp_online_mm
from aerosync.mm.numa import migrate as MS
from tests import crash_helpers as H
from tests.crash_helpers import no_bad_pages  # noqa: F401 (autouse fixture)

# scenario -> (crash_soak params, machine config, driver kind)
SCENARIOS = {
    "base": (dict(), {}, "soak"),
    "feed": (dict(max_held=1000, page_pct=20), {}, "feed"),
    "high": (dict(orders=(0, 4, 5, 6)), {}, "soak"),
    "numa": (dict(node_pct=50), {"nr_nodes": 2}, "soak"),
    "frag": (dict(max_held=2048, verify=False), {"nr_pages": 2048}, "frag"),
    "sheaves": (dict(max_held=1000, page_pct=20, sheaf_capacity=8), {"slab_percpu_sheaves": True}, "feed"),
    "debug": (dict(), {"slub_debug": "F"}, "soak"),
    "vm": (dict(), {"vm": {}, "nr_pages": 4096}, "vm"),
    "vmfile": (dict(), {"vm": {}, "nr_pages": 4096}, "vmfile"),
    "vmfork": (dict(), {"vm": {}, "nr_pages": 4096}, "vmfork"),
    "vmsplit": (dict(), {"vm": {}, "nr_pages": 4096}, "vmsplit"),
    "vmalloc": (dict(), {"vm": {}, "nr_pages": 8192}, "vmalloc"),
    "vmblock": (dict(), {"vm": {}, "nr_pages": 8192}, "vmblock"),
    "reclaim": (dict(), {"vm": {}, "nr_pages": 2048, "reclaim": {"lru": "mglru", "swap_size": 16 << 20}}, "reclaim"),
    "migrate": (dict(), {"vm": {}, "nr_nodes": 2, "nr_pages": 4096, "numa": {}}, "migrate"),
}
# point -> (scenario, passes to let go first): every point of mm/intent.py POINTS
POINT_PLAN = {
    "buddy:alloc:unlinked": ("base", 40), "buddy:alloc:split": ("base", 33), "buddy:alloc:taken": ("base", 17),
    "buddy:free:merged": ("base", 9), "buddy:free:linked": ("base", 11), "buddy:move:moved": ("frag", 5),
    "buddy:move:retagged": ("frag", 1), "buddy:claim:claimed": ("base", 1), "buddy:steal:split": ("high", 7),
    "pcp:refill:linked": ("base", 21), "pcp:refill:counted": ("base", 13), "pcp:drain:popped": ("base", 30),
    "pcp:drain:freed": ("base", 25), "alloc:buddy:taken": ("high", 19),
    "slab:new:page": ("base", 7), "slab:new:ready": ("base", 9), "slab:new:frozen": ("base", 11),
    "slab:alloc:detached": ("base", 6), "slab:alloc:freelist": ("base", 5), "slab:alloc:partial_pop": ("feed", 40),
    "slab:alloc:installed": ("base", 8), "slab:partial:removed": ("feed", 10), "slab:partial:frozen": ("feed", 12),
    "slab:partial:moved": ("feed", 20), "slab:deactivate:unfrozen": ("numa", 30),
    "slab:deactivate:listed": ("numa", 25), "slab:free:freed": ("base", 6), "slab:free:unlisted": ("feed", 5),
    "slab:cpu_partial:pushed": ("base", 2), "slab:cpu_partial:detached": ("feed", 9),
    "slab:put_partials:one": ("feed", 30), "slab:discard:uncounted": ("feed", 4),
    "slab:discard:cleared": ("feed", 6), "slab:mag_flush:spilled": ("base", 1),
    "slab:mag_flush:freed": ("base", 10), "slab:sheaf_flush:freed": ("sheaves", 30),
    "slab:sheaf_refill:took": ("sheaves", 20), "slab:debug:freed": ("debug", 40),
    "slab:pcs:detached": ("sheaves", 25), "slab:pcs:barn": ("sheaves", 30), "slab:pcs:pushed": ("sheaves", 10),
    "vm:fault:page": ("vm", 30), "vm:fault:inserted": ("vm", 9), "vm:fault:accounted": ("vm", 45),
    "vm:fault:installed": ("vm", 60), "vm:mmap:vma_ready": ("vm", 5), "vm:mmap:inserted": ("vm", 7),
    "vm:munmap:detached": ("vm", 4), "vm:munmap:unlinked": ("vm", 6), "vm:zap:gathered": ("vm", 8),
    "vm:munmap:unmapped": ("vm", 10),
    "wl:alloc:got": ("base", 70), "wl:free:unheld": ("base", 60), "wl:free:done": ("base", 50),
    "wl:push:claimed": ("base", 20), "wl:push:published": ("base", 30), "wl:pop:taken": ("feed", 15),
    "wl:pop:freed": ("feed", 25),
    "vm:fault:found_accounted": ("vmfile", 30), "vm:fault:file_held": ("vmfile", 40),
    "vm:filemap:page": ("vmfile", 9), "vm:filemap:inserted": ("vmfile", 17),
    "vm:vmalloc:page": ("vm", 2), "vm:fork:shadows": ("vmfork", 3), "vm:fork:copied": ("vmfork", 4),
    "vm:split:ready": ("vmsplit", 5), "vm:split:inserted": ("vmsplit", 8), "vm:brk:changed": ("vmsplit", 4),
    "vm:obj_remove:taken": ("vmsplit", 3), "vm:collapse:stored": ("vmfork", 5),
    "vm:vfree:unmapped": ("vmalloc", 7), "vm:purge:erased": ("vmalloc", 3),
    "vm:vb_alloc:page": ("vmblock", 40), "vm:vb_free:unmapped": ("vmblock", 9), "vm:vb_retire:lazy": ("vmblock", 1),
    "vm:merge:expanded": ("vmsplit", 6), "vm:mremap:moved": ("vmsplit", 5), "vm:reclaim:isolated": ("reclaim", 3),
    "vm:migrate:isolated": ("migrate", 3), "vm:migrate:unmapped": ("migrate", 21),
    "vm:migrate:moved": ("migrate", 40), "vm:reclaim:swapcache": ("reclaim", 7),
    "vm:reclaim:unmapped": ("reclaim", 7), "vm:reclaim:written": ("reclaim", 30),
    "vm:swapin:new": ("reclaim", 3),
}


def _driver(kind: str, p: object):
    if kind == "feed":
        return H.soak_driver(p, before=H.feed_before(p))
    if kind == "frag":
        return H.frag_driver(p)
    if kind == "vm":
        return H.vm_driver()
    if kind == "vmfile":
        return H.vm_file_driver()
    if kind == "vmfork":
        return H.vm_fork_driver()
    if kind == "vmsplit":
        return H.vm_split_driver()
    if kind == "vmalloc":
        return H.vmalloc_driver()
    if kind == "vmblock":
        return H.vmblock_driver()
    if kind == "reclaim":
        return H.reclaim_driver()
    if kind == "migrate":
        return H.migrate_driver()
    return H.soak_driver(p)


def _runs_again(a, p, again) -> None:
    """After a recovery: the CPU comes back online and runs `again` to its end, every
    checker passes and nothing is lost."""
    cpuhp_online_mm(a, 0)
    _, killed = H.run_child(a, 0, again)
    assert not killed
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_plan_covers_every_point() -> None:
    assert set(POINT_PLAN) == set(I.POINT_IDS)
    assert {s for s, _ in POINT_PLAN.values()} <= set(SCENARIOS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", list(I.POINT_IDS))
def test_kill_at_every_point(machine, point: str) -> None:
    scenario, skip = POINT_PLAN[point]
    kw, cfg, kind = SCENARIOS[scenario]
    p = H.soak_params(**kw)
    a = H.soak_machine(machine, p, **cfg)
    try:
        _kill_at_point(a, p, kind, scenario, point, skip)
    finally:
        if kind == "reclaim":
            from aerosync.mm.reclaim.swapfile import swapoff

            swapoff(a)


def _kill_at_point(a, p, kind: str, scenario: str, point: str, skip: int) -> None:
    files = (H.vm_file_setup(a, p),) if kind == "vmfile" else ()
    pid, killed = H.run_child(a, 0, _driver(kind, p), point, skip)
    assert killed, f"cpu0 never reached {point} (after {skip} passes) in scenario {scenario}"
    assert I.died_at(a, 0) == point
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook if kind.startswith("vm") or kind in ("reclaim", "migrate")
                    else None)
    H.check_all(a)
    assert I.read_records(a, 0) == []
    # The machine works on: the CPU comes back and runs the soak again to its teardown.
    cpuhp_online_mm(a, 0)
    if kind == "vm":
        again = H.vm_driver(rounds=5, seed=2)
    elif kind == "vmfile":
        again = H.vm_file_driver(rounds=5, seed=2)
    elif kind == "vmfork":
        again = H.vm_fork_driver(rounds=3, seed=2)
    elif kind == "vmsplit":
        again = H.vm_split_driver(rounds=3, seed=2)
    elif kind == "vmalloc":
        again = H.vmalloc_driver(rounds=20, seed=2)
    elif kind == "vmblock":
        again = H.vmblock_driver(rounds=40, seed=2)
    elif kind == "reclaim":
        again = H.reclaim_driver(1500, seed=2)
    elif kind == "migrate":
        again = H.migrate_driver(rounds=2, seed=2)
    else:
        again = H.soak_driver(p, seed=2, budget=10)
    _, killed = H.run_child(a, 0, again)
    assert not killed
    H.check_all(a)
    assert H.lost(a, p, 2, files) == {"pages": 0, "objects": 0}, rec.to_dict()
    H.check_all(a)


# (point, skip) -> the record of the VM operation the death lands in, its step, and the
# [vm] mm mode run: the allocator's points reached from inside VM operations (a task's
# creation and its kernel stack, a fault's tree insert, an object's destroy), with a
# driver of large regions.  (Either mode reaches each at the same pass.)
NESTED_PLAN = {
    ("pcp:refill:linked", 1): ("vm_task_create", 1, "processes"),
    ("slab:alloc:installed", 0): ("vm_task_create", 3, "threads"),
    ("slab:alloc:installed", 1): ("vm_vmalloc", 1, "processes"),
    ("pcp:refill:counted", 1): ("vm_vmalloc", 2, "threads"),
    ("slab:alloc:installed", 4): ("vm_fault", 1, "processes"),
    ("slab:alloc:installed", 5): ("vm_fault", 5, "threads"),
    ("pcp:drain:popped", 7): ("vm_obj_destroy", 1, "threads"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("point", "skip"), list(NESTED_PLAN))
def test_kill_inside_vm_operations(machine, point: str, skip: int) -> None:
    """A CPU killed at an allocator point inside a VM operation: the inner record is
    resolved first, then the VM record (mm/vm/recover.py) -- nothing lost, checkers pass."""
    op, step, mode = NESTED_PLAN[(point, skip)]
    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": mode})
    pid, killed = H.run_child(a, 0, H.vm_driver(pages=1500, rounds=8), point, skip)
    assert killed, f"cpu0 never reached {point} (after {skip} passes)"
    recs = I.read_records(a, 0)
    assert any(r.name == op and r.step == step for r in recs), [str(r) for r in recs]
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert I.read_records(a, 0) == []
    _runs_again(a, p, H.vm_driver(rounds=5, seed=2))


# (point, skip) -> the step of the vm_vb_alloc record the death lands in, with the block
# driver: a new block's area record had (1), that area in its tree with the block record
# on the way (2), a range carved and being filled with a page in hand (3: its table page
# being allocated).
BLOCK_PLAN = {("slab:alloc:installed", 1): 1, ("slab:alloc:installed", 2): 2, ("pcp:refill:linked", 4): 3}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("point", "skip"), list(BLOCK_PLAN))
def test_kill_inside_a_block_vmalloc(machine, point: str, skip: int) -> None:
    """A CPU killed at an allocator point inside a small vmalloc: the allocator's record
    first, then vm_vb_alloc's (vb_alloc_undo) -- nothing lost, checkers pass."""
    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={}, nr_pages=8192)
    pid, killed = H.run_child(a, 0, H.vmblock_driver(), point, skip)
    assert killed, f"cpu0 never reached {point} (after {skip} passes)"
    (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_vb_alloc"]
    assert rec.step == BLOCK_PLAN[(point, skip)], rec
    if rec.step == 3:
        assert rec.args[4], rec                         # a page in hand
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    _runs_again(a, p, H.vmblock_driver(rounds=40, seed=2))


def test_area_insert_killed_after_its_store_landed_is_undone_from_the_tree(machine) -> None:
    """A vmalloc whose new area's tree insert stored the area and died in the insert's
    tail (here right after freeing the node it replaced; in the soak, inside that free)
    with its record still at step 1, "in no tree": recovery finds the store landed
    (area_landed: the range is in the record before the insert) and erases the area
    from the tree before freeing its record (vm_vmalloc here; a new vmap_block's area,
    vm_vb_alloc, goes through the same check).  Before, the record was freed while the
    tree still mapped the range to it (VA1 in a vmalloc-storm soak, threads mode)."""
    import os
    import signal

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={}, nr_pages=8192)

    def drive(arena, cpu: int) -> None:
        from aerosync.mm.vm.vm import VM

        vm = VM(arena, cpu)
        vm.make_current()
        v = vm.kernel.vmalloc
        armed = [False]
        for t in v.trees:
            real = t.free_node

            def dies(off: int, real=real) -> None:
                real(off)
                if armed[0]:
                    os.kill(os.getpid(), signal.SIGKILL)

            t.free_node = dies
        for _ in range(4):
            armed[0] = True
            v.vfree(v.vmalloc(300 * 4096))
        raise AssertionError("no insert replaced a node")

    pid, killed = H.run_child(a, 0, drive)
    assert killed
    recs = [r for r in I.read_records(a, 0) if r.name in ("vm_vb_alloc", "vm_vmalloc")]
    assert [(r.name, r.step) for r in recs] == [("vm_vmalloc", 1)], recs
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    _runs_again(a, p, H.vmblock_driver(rounds=40, seed=2))


# (point, skip) -> the step of the vm_vmalloc record of a vmap() the death lands in, with
# the vmap driver: the area's record had, its tree insert allocating (1); in its tree,
# the caller's pages being mapped, a page table allocating (2).
VMAP_PLAN = {("slab:alloc:installed", 1): 1, ("pcp:refill:linked", 20): 2}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("point", "skip"), list(VMAP_PLAN))
def test_kill_inside_a_vmap_leaves_the_callers_pages(machine, tmp_path, point: str, skip: int) -> None:
    """A CPU killed inside vmap(): the area is undone (unmapped, its range and record
    given back) and the pages it was mapping stay the caller's, untouched (refcount 1) --
    the dead caller's own, which this test then frees: nothing else lost.  Unlogged,
    nothing undid the half-made area (its record and range stayed in the tree for
    good); undone as a vmalloc, the caller's pages were freed under it."""
    from aerosync.mm.pmm.page_alloc import MM
    from aerosync.mm.vm.vmalloc import vmallocinfo_text

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={}, nr_pages=8192)
    f = tmp_path / "pfns"
    f.write_text("")
    pid, killed = H.run_child(a, 0, H.vmap_driver(str(f)), point, skip)
    assert killed, f"cpu0 never reached {point} (after {skip} passes)"
    (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_vmalloc"]
    assert rec.step == VMAP_PLAN[(point, skip)], rec
    H.recover(a, pid, 0, p)
    H.check_all(a)
    assert "vmap" not in vmallocinfo_text(a)
    held = [int(x) for x in f.read_text().splitlines()[-1].split()]
    pm4 = a.off("pagemeta") >> 2
    assert [a.u32[pm4 + pfn * 16 + 2] for pfn in held] == [1, 1, 1]
    mm = MM(a, 0)
    for pfn in held:
        mm.free_pages(pfn, 0)
    _runs_again(a, p, H.vmap_driver(str(f), rounds=20))


# (lru, point, skip): deaths inside reclaim, with the reclaim driver (direct reclaim in its
# faults): right after a batch is isolated (MGLRU's evict_folios, the classic LRU's
# shrink_inactive_list / shrink_active_list), in a page free part-way through one
# (a reclaimed folio's, or a put-back folio's last reference), and inside one folio's
# reclaim: in the swap cache still mapped (the swap cache let go again, else the folio
# stays behind with only the cache's reference: 1 page lost), unmapped, written.
RECLAIM_PLAN = [("mglru", "vm:reclaim:isolated", 0), ("classic", "vm:reclaim:isolated", 0),
                ("classic", "vm:reclaim:isolated", 5), ("mglru", "pcp:drain:popped", 28),
                ("mglru", "buddy:free:merged", 97), ("classic", "vm:reclaim:swapcache", 0),
                ("classic", "vm:reclaim:unmapped", 30), ("classic", "vm:reclaim:written", 7)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("lru", "point", "skip"), RECLAIM_PLAN)
def test_kill_inside_reclaim(machine, lru: str, point: str, skip: int) -> None:
    """A CPU killed while its folios are isolated for reclaim: the vm_reclaim record
    names every folio still isolated (and the one being reclaimed, locked), and
    recovery puts them back on their LRU -- nothing lost, checkers pass.  Unlogged,
    each death here leaked the isolated batch (31..47 pages lost, their isolation
    references never dropped)."""
    from aerosync.mm.reclaim.swapfile import swapoff

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={}, nr_pages=2048, reclaim={"lru": lru, "swap_size": 16 << 20})
    try:
        pid, killed = H.run_child(a, 0, H.reclaim_driver(), point, skip)
        assert killed, f"cpu0 never reached {point} (after {skip} passes)"
        (rec,) = [r for r in I.read_records(a, 0) if r.name == "vm_reclaim"]
        assert rec.step > 0, rec
        H.recover(a, pid, 0, p, H.vm_recover_hook)
        H.check_all(a)
        _runs_again(a, p, H.reclaim_driver(1500, seed=2))
    finally:
        swapoff(a)


# (point, skip) -> (state, fast path, in move_pages) of the folio in hand in the
# vm_migrate record at the death, with the migrate driver (first round: pages 0, 2, .. 38
# in one move_pages batch, the fast path; then pages 1, 3, .. one by one with
# migrate_to_node, the object walk): locked with its destination page, unmapped, moved;
# and inside a destination page's allocation (that folio locked, three before it
# unmapped).
MIGRATE_PLAN = {
    ("vm:migrate:isolated", 0): (MS.MS_LOCKED, False, True),
    ("vm:migrate:unmapped", 3): (MS.MS_UNMAPPING, True, True),
    ("vm:migrate:unmapped", 21): (MS.MS_UNMAPPING, False, False),
    ("vm:migrate:moved", 5): (MS.MS_MOVED, True, True),
    ("vm:migrate:moved", 22): (MS.MS_MOVED, False, False),
    ("pcp:refill:counted", 8): (MS.MS_LOCKED, False, True),
}


def _region_contents(a, cpu: int, mm) -> list[int]:
    """The first word of every page of the dead task's one anonymous region (mm 1), read
    through its page tables straight from physical memory; every page must be mapped."""
    from aerosync.mm.vm import mm_types as T
    from aerosync.mm.vm import vma as V
    from aerosync.mm.vm.pgtable import _PAGE_PRESENT, PTE_PFN_MASK
    from aerosync.mm.vm.vm import VM

    vm = VM(a, cpu, mm=mm)
    q, phys, mm_id = a.u64, a.off("physmem"), 1
    try:
        (v,) = [v for _f, _l, v in vm.vmas.tree(mm_id).mt_for_each(0, (1 << 64) - 1)
                if not q[(v + V.V_FLAGS) >> 3] & V.VM_GROWSDOWN]
        root = q[(T.mm_off(a, mm_id) + T.M_PGD) >> 3]
        got = []
        for va in range(q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3], 4096):
            table = vm.pt.walk(root, va)
            e = q[(phys >> 3) + (table << 9) + ((va >> 12) & 511)] if table >= 0 else 0
            assert e & _PAGE_PRESENT, (hex(va), hex(e))
            got.append(q[(phys + (((e & PTE_PFN_MASK) >> 12) << 12)) >> 3])
        return got
    finally:
        vm.leave()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("point", "skip"), list(MIGRATE_PLAN))
def test_kill_inside_a_migration(machine, point: str, skip: int) -> None:
    """A CPU killed while it migrates: the vm_migrate record names each folio it holds
    (locked, isolated from its LRU, unmapped or frozen: undone; moved: finished), and
    after recovery every page of the task is mapped with its contents -- nothing lost,
    checkers pass.  Unlogged, a death here left the batch locked and isolated (R2:
    "refcount 3, in 1 tree, 1 PTE"), and move_pages' reference on the mm kept the dead
    task's address space for good (44 pages, 4 objects lost)."""
    state, fast, in_move_pages = MIGRATE_PLAN[(point, skip)]
    p = H.soak_params()
    _, cfg, _ = SCENARIOS["migrate"]
    a = H.soak_machine(machine, p, **cfg)
    pid, killed = H.run_child(a, 0, H.migrate_driver(), point, skip)
    assert killed, f"cpu0 never reached {point} (after {skip} passes)"
    recs = I.read_records(a, 0)
    (rec,) = [r for r in recs if r.name == "vm_migrate"]
    assert any(r.name == "vm_mm_hold" and r.step == 1 for r in recs) == in_move_pages, [str(r) for r in recs]
    words = I.spill_items(a, 0, 0, I.SPILL_MAX)[L.SPILL_MIGRATE : L.SPILL_MIGRATE + 2 * rec.step]
    held = [(w & 15, bool(w & MS.MS_FAST)) for w in words[::2] if w]
    assert (state, fast) in held, held
    seen = []

    def hook(arena, cpu, records, mm, slub):
        seen.append(_region_contents(arena, cpu, mm))       # before the task's exit
        return H.vm_recover_hook(arena, cpu, records, mm, slub)

    H.recover(a, pid, 0, p, hook)
    assert seen == [[k + 1 for k in range(40)]]             # round 0's contents, every page mapped
    H.check_all(a)
    assert I.read_records(a, 0) == []
    _runs_again(a, p, H.migrate_driver(rounds=2, seed=2))


def test_a_dead_threads_region_is_unmapped_from_the_shared_mm(machine) -> None:
    """Threads mode: cpu0's page_fault1 thread dies half-way through a region of the
    shared mm.  The workload's recover hook unmaps the region the dead worker held (its
    row of "vmwork") before the thread exits -- the mm outlives the thread, so without
    it every restart added a region for good (a reclaim-thrash run with 20 deaths ran
    out of memory and swap, its OOM killer ending the run)."""
    import random

    from aerosync.mm.vm.vm import VM
    from workers.workloads import _vm as W
    from workers.workloads import crash_soak as CS
    from workers.workloads import page_fault1 as PF

    p = H.soak_params()
    pf = PF.Params(size_mb=1)
    a = machine(nr_pages=4096, nr_cpus=2, slab=True, extra=[*CS.sections(p, 2), *PF.sections(pf, 2)],
                fault={"test": 1}, vm={"mm": "threads"})
    CS.setup(a, p, 2)
    PF.setup(a, pf, 2)
    mm = W.shared_mm(a)

    def drive(arena, cpu: int) -> None:
        batch = PF.make_batch(arena, cpu, pf, random.Random(1))
        for _ in range(100):
            batch(16)

    pid, killed = H.run_child(a, 0, drive, "vm:fault:installed", 100)
    assert killed
    held = a.u64[W._word(a, W._W_HELD)]
    assert held                                                   # the dead worker's region, recorded
    H.recover(a, pid, 0, p, lambda arena, cpu, recs, m, slub: W.recover(arena, pf, cpu, recs, m, slub))
    H.check_all(a)
    vm = VM(a, 1)
    try:
        assert [v for _f, _l, v in vm.vmas.tree(mm).mt_for_each(held, held + (1 << 20) - 1)] == []
    finally:
        vm.leave()
    W.release_mm(a)
    H.check_all(a)


def test_a_cpu_may_park_with_only_an_mm_reference_open(machine) -> None:
    """idle_fn (the park hook's test): a CPU whose only open record is vm_mm_hold --
    move_pages / migrate_pages of another task holding its mm, now waiting for the
    mmap_lock a dead thread of that mm held -- may park for the recovery; any other open
    record (or a held lock) still keeps it from parking."""
    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={})

    def drive(arena, cpu: int) -> None:
        lg, idle = I.IntentLog(arena, cpu), I.idle_fn(arena, cpu)
        assert idle()
        r = lg.begin(I.OP["vm_mm_hold"], 1)
        lg.q[r + 7] = 1
        assert idle()
        r2 = lg.begin(I.OP["vm_fault"], 1)
        assert not idle()
        lg.end(r2)
        assert idle()
        lg.end(r)
        assert idle()

    _, killed = H.run_child(a, 0, drive)
    assert not killed


# (point, skip) -> records open at the death, with the fork driver: a forked child's exit
# (vm_task_exit, its mm's teardown vm_exit_mmap, the per-VMA munmap inside it).
EXIT_PLAN = {
    ("vm:munmap:detached", 0): ("vm_task_exit", "vm_exit_mmap", "vm_munmap"),
    ("vm:zap:gathered", 1): ("vm_task_exit", "vm_exit_mmap", "vm_gather"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["processes", "threads"])
@pytest.mark.parametrize(("point", "skip"), list(EXIT_PLAN))
def test_kill_inside_a_task_exit(machine, point: str, skip: int, mode: str) -> None:
    """A CPU killed while a forked child it runs exits (its parent switched out): the
    teardown is resumed, then the child and its parent -- a family no live CPU runs --
    exit and are reaped; nothing lost, checkers pass."""
    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": mode})
    pid, killed = H.run_child(a, 0, H.vm_fork_driver(pages=300, rounds=6), point, skip)
    assert killed, f"cpu0 never reached {point} (after {skip} passes)"
    names = {r.name for r in I.read_records(a, 0)}
    assert set(EXIT_PLAN[(point, skip)]) <= names, names
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    _runs_again(a, p, H.vm_fork_driver(rounds=3, seed=2))


def test_recovery_races_a_second_death(machine) -> None:
    """CPU 0 dies holding a zone lock in the middle of a PCP refill; CPU 1 is waiting for
    that lock (robust mode: it waits).  The takeover releases it, CPU 1 goes on and dies
    too, at a split, before the world could be stopped: both are recovered in one round
    (the coordinator's `_Deaths.survive` does the same when a CPU dies while parking)."""
    import os
    import signal
    import time

    from aerosync.mm import recovery
    from aerosync.mm.cpuhp import cpuhp_offline_mm
    from aerosync.sync import lockstat as LS
    from aerosync.sync.spinlock import locks_held_by
    from workers.workloads import crash_soak

    p = H.soak_params()
    a = H.soak_machine(machine, p)
    pid0, killed = H.run_child(a, 0, H.soak_driver(p), "pcp:refill:linked", 4)
    assert killed
    held = [n for _, n, _ in locks_held_by(a, pid0)]
    assert held and all(n.startswith("&zone->lock") for n in held)
    pid1 = H.start_child(a, 1, H.soak_driver(p, seed=3), "buddy:alloc:split", 0)
    time.sleep(0.5)
    assert os.waitpid(pid1, os.WNOHANG) == (0, 0), "cpu1 should be waiting for cpu0's zone lock"
    rec0 = recovery.takeover(a, pid0, 0)
    assert rec0.locks == held
    _, status = os.waitpid(pid1, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert I.died_at(a, 1) == "buddy:alloc:split"
    rec1 = recovery.takeover(a, pid1, 1)
    hook = lambda ar, c, r, m, s: crash_soak.recover(ar, p, c, r, m, s)
    for rec in (rec0, rec1):
        recovery.recover_cpu(a, rec, hook, offline=cpuhp_offline_mm)
    H.check_all(a)
    assert not any(LS.decode_owner(a.atomic.load64(LS.slot_off(a, s)))[1] for s in range(4))
    for c in (0, 1):
        cpuhp_online_mm(a, c)
    _, killed = H.run_child(a, 1, H.soak_driver(p, seed=4, budget=10))
    assert not killed
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}
    H.check_all(a)


def test_a_cyclic_cpu_freelist_stops_the_flush_instead_of_looping(machine) -> None:
    """A death outside every fault point (a kill from outside) may leave a CPU freelist
    that loops back on itself; the offline flush recovery runs (deactivate_slab) then
    raises SlabError naming the slab instead of walking the chain forever."""
    from aerosync.mm.slab import slab_common as SC
    from aerosync.mm.slab.slub import SlabError, Slub

    a = machine(slab=True)
    c = Slub(a, 0).cache("kmalloc-256")
    x = c.alloc()
    info = SC.cache_info(a, c.id)
    ko = SC._cpu_off(a, c.id, 0, int(a.config["nr_cpus"]), SC._geo(a)[3])
    pfn = a.u64[(ko + SC.K_SLAB) >> 3]
    head = a.u64[(ko + SC.K_FREELIST_TID) >> 3] & 0xFFFF_FFFF
    assert (x - SC.VBASE) >> 12 == pfn and head < info["objects"] and not info["random"]
    fp = a.off("physmem") + (pfn << 12) + head * info["size"] + info["red_left_pad"] + info["offset"]
    a.u32[fp >> 2] = head                                   # the head's free pointer: itself
    with pytest.raises(SlabError, match=rf"deactivate_slab\(pfn {pfn}\).*a cycle"):
        c.flush_cpu(0)


def test_collapse_killed_with_an_entry_in_both_trees_is_not_put_twice_by_a_live_collapse(machine) -> None:
    """Threads mode, the bad interleaving a fork-cow soak met (R2: a folio one reference
    short).  CPU 0's forked child exits: its shadow goes and the parent's top object P
    absorbs its backing X (collapse); CPU 0 dies with one entry stored into P and not yet
    erased from X (vm:collapse:stored).  Before recovery (phase A: the dead CPU's object
    locks were released) the live CPU 1, a thread of the same mm, forks and its child
    exits: P is collapsed into the new top, then X -- whose tree still has the entry,
    though the folio's mapping and reference are the top's.  X's destroy must leave such a
    duplicate alone (untree), else the folio loses a reference it still has in a tree
    and a PTE.  Then recovery, the checkers, and nothing lost."""
    from aerosync.mm import recovery
    from aerosync.mm.cpuhp import cpuhp_offline_mm
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
    from aerosync.mm.vm.vm import VM

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": "threads"}, nr_pages=4096)
    live = VM(a, 1)
    live.make_current()
    lt = live.task_create("live")
    live.switch_to(lt)
    mm = live.current_mm()
    n = 8

    def drive(arena, cpu: int) -> None:
        vm, _tid = H.task_vm(arena, cpu, "dies", mm)
        addr = vm.mmap(0, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(n):
            vm.store64(addr + i * 4096, 100 + i)
        child = vm.fork()
        vm.store64(addr, 7)                                # one COW copy in the parent's top
        vm.switch_to(child)
        vm.exit()                                          # the child's shadow goes: collapse

    pid, killed = H.run_child(a, 0, drive, "vm:collapse:stored", 0, poll=live.tlb.handle_ipi)
    assert killed
    assert [r.name for r in I.read_records(a, 0)][:2] == ["vm_collapse", "vm_obj_destroy"]
    rec = recovery.takeover(a, pid, 0)
    region = [(s, e) for s, e, _v in live.vmas.tree(mm).mt_for_each(0, (1 << 47) - 1) if e - s + 1 == n * 4096]
    assert len(region) == 1
    addr = region[0][0]
    child = live.fork()                                    # the live thread: fork, the child exits
    live.switch_to(child)
    live.exit()
    live.switch_to(lt)
    live.reap(child)
    assert [live.load64(addr + i * 4096) for i in range(n)] == [7, *range(101, 100 + n)]
    recovery.recover_cpu(a, rec, H.vm_recover_hook, offline=cpuhp_offline_mm)
    H.check_all(a)
    assert [live.load64(addr + i * 4096) for i in range(n)] == [7, *range(101, 100 + n)]
    live.exit()
    live.reap(lt)
    live.leave()
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_a_task_without_an_mm_exits_in_robust_mode(machine) -> None:
    """An mm-less task (numa_access's idle task for task placement) exits and is reaped
    with the vm_task_exit record open -- it logged mm -1 into an unsigned word and the
    worker died in its teardown (a numa-task-placement soak)."""
    from aerosync.arena import layout as AL
    from aerosync.mm.vm.vm import VM

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": "threads"})
    assert AL.robust_mode(a.config)
    vm = VM(a, 0)
    idle = vm.task_create("idle", mm=-1, new_mm=False)
    vm.exit(idle)
    vm.reap(idle)                                      # (raises unless a zombie)
    vm.leave()
    assert I.read_records(a, 0) == []
    H.check_all(a)
