"""Repairing the VM after a simulated CPU died in a fault, an mmap or a munmap.

Models: nothing in Linux (a CPU does not die half-way through a page fault); what a
recovering coordinator must finish or undo so that the VM checker (mm/vm/check.py)
passes and no page or object is lost.  Unit: one dead CPU; the machine stopped
(mm/recovery.py phase B).  The VM logs only in robust mode (memory.py, mmap.py): what is
covered, and how each record is resolved:

  vm_fault   (a fault's new page: do_anonymous_page / wp_page_copy via map_new, and the
             inlined anon_write_fast)
             step 1 page allocated, in no object: freed (rolled back);
             step 2 in its object's tree: nothing (the tree holds it; the task's exit
                    frees it with the object);
             step 3 counted as mapped (PTE reference, mapcount, rss) without its PTE:
                    the accounting undone (unmap_account: back to step 2);
             step 4 PTE installed: nothing.
  vm_mmap    (mmap_region's new VMA) step 1 set up but not in the maple tree: its object
             reference dropped and the VMA freed; step 2 in the tree: nothing.
  vm_gather  (an mmu_gather of a logged munmap) step n: the first n pages gathered --
             PTEs cleared, mapcount and rss already lowered -- lose the PTE reference
             they still hold (the puts the flush did not do).
  vm_munmap  (the VMAs a munmap took out of the tree: the spill) finished with the same
             code (Mmap.unmap_vmas) from where it stopped: step 1 detached (map_count
             and locked_vm already lowered; unlink, zap, free the page tables, drop
             objects, free VMAs), 2 unlinked (zap again: cleared PTEs are skipped), 3
             unmapped (the VMAs themselves).  From step 1 on the munmap may hold
             mmap_lock for read (downgraded for the zap): its robust list says so, and
             the takeover drops that read hold.
Not covered (no fault points inside, so no death there is injected; a SIGKILL from
outside there may leak): fork's copy, exit_mmap, mprotect / mremap / madvise, file and
shmem faults, the shadow-chain collapse, reclaim.  The dead CPU's pending RCU frees
(sync/rcu.py's arena ring) are run by mm/recovery.py.

TLB: the recovery flushes nothing.  A dead CPU's TLB died with it; in the "processes"
VM mode (a task and mm per CPU) no other CPU ever loaded the dead CPU's mm, so no other
TLB can hold an entry of a page freed here.  In "threads" mode (one mm for every CPU)
another CPU's TLB may still cache a PTE the dead CPU cleared before its flush: recovery
of a VM op in threads mode is not covered (vm_recover refuses it, ValueError).

`exit_tasks(arena, cpu, vm)`: what a VM workload's recover hook does after the records:
the dead CPU's running task (and its children not yet reaped) exit and are reaped, so
their address spaces go as any exit's do.
"""

from __future__ import annotations

from typing import Any

from aerosync.arena import layout as L
from aerosync.mm import intent as I
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V

__all__ = ["recover_record", "exit_tasks", "VM_OPS"]

VM_OPS = {I.OP[n] for n in ("vm_fault", "vm_mmap", "vm_munmap", "vm_gather")}
_OP = I.OP


def recover_record(arena: Any, vm: Any, rec: I.Record, spill: list[int], inner_open: bool) -> dict[str, int]:
    """Roll one of the dead CPU's VM records forward or back (module docstring); `vm` is
    a VM handle of the dead CPU (the caller's), `spill` its context's spill area."""
    a, s, op = rec.args, rec.step, rec.op
    got = {"pages": 0, "objects": 0}
    if op == _OP["vm_fault"]:
        mm_id, pfn, kind = a[0], a[3], a[4]
        if s == 1:
            vm.mm.free_pages(pfn, 0)
            got["pages"] += 1
        elif s == 3:
            vm.memory.unmap_account(mm_id, pfn, kind)
    elif op == _OP["vm_gather"]:
        for pfn in spill[L.SPILL_GATHER : L.SPILL_GATHER + s]:
            vm.mm.free_pages(pfn, 0)                 # the PTE reference (never the last: a tree holds one)
            got["pages"] += 1
    elif op == _OP["vm_munmap"]:
        mm_id, start, end, n = a[0], a[1], a[2], a[3]
        victims = spill[L.SPILL_VMAS : L.SPILL_VMAS + n]
        if s >= 1:
            vm.sys.unmap_vmas(mm_id, victims, start, end, -1, s)
            got["objects"] += n
    elif op == _OP["vm_mmap"]:
        v = a[1]
        if s == 1:
            o = arena.u64[(v + V.V_OBJECT) >> 3]
            if o:
                vm.objs.put(o)
            vm.vmas.free(v)
            got["objects"] += 1
    return got


def exit_tasks(arena: Any, cpu: int, vm: Any) -> int:
    """Exit and reap the task the dead CPU was running and its children not yet reaped;
    returns how many."""
    from aerosync.mm.vm.task import live_tasks

    q, u32 = arena.u64, arena.u32
    mine = [t for t in live_tasks(arena)
            if q[(T.task_off(arena, t) + T.T_CPU) >> 3] == cpu + 1
            and u32[(T.task_off(arena, t) + T.T_STATE) >> 2] != T.TASK_ZOMBIE]
    pids = {q[(T.task_off(arena, t) + T.T_PID) >> 3] for t in mine}
    kids = [t for t in live_tasks(arena) if t not in mine and q[(T.task_off(arena, t) + T.T_PPID) >> 3] in pids]
    n = 0
    for t in [*kids, *mine]:
        if u32[(T.task_off(arena, t) + T.T_STATE) >> 2] != T.TASK_ZOMBIE:
            vm.exit(t, 9)                               # SIGKILL
        vm.reap(t)
        n += 1
    return n


def vm_recover(arena: Any, cpu: int, mm: Any, slub: Any) -> dict[str, int]:
    """A VM workload's recover hook body: the dead CPU's tasks exit (module docstring)."""
    from aerosync.mm.vm.vm import VM

    if str((arena.config.get("vm") or {}).get("mm", "processes")) == "threads":
        raise ValueError("vm_recover: a CPU death in [vm] mm = \"threads\" mode is not recoverable "
                         "(another CPU's TLB may map what the dead CPU freed: mm/vm/recover.py)")
    vm = VM(arena, cpu, mm=mm)
    try:
        return {"tasks": exit_tasks(arena, cpu, vm)}
    finally:
        vm.leave()
