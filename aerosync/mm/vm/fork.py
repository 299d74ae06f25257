"""Address-space lifetimes: mm_alloc, dup_mm (fork), mmput / exit_mmap.

Models: kernel/fork.c (mm_alloc, mm_init, dup_mm / dup_mmap, mmput, mmget), mm/mmap.c
(exit_mmap), the C kernel's vm_object_cow_prepare (two shadows at fork).  Unit: an mm
record (mm_types.py) and everything hanging off it: its page tables, VMAs, objects.

fork (dup_mmap), with the parent's mmap_lock for write and the child's for write
(nested, as mmap_write_lock_nested):
  * every VMA is duplicated into the child's tree, except VM_DONTCOPY ones;
  * private memory with an object O (anonymous, or a private file mapping's shadow):
    O gets two new shadows, one for the parent's VMA and one for the child's (each
    holds a reference on O, the parent VMA's own reference moves to its shadow); the
    pages stay in O, shared, until one side writes (COW: copy into that side's
    shadow, or steal when the other side is gone -- memory.py);
  * shared memory (MAP_SHARED anonymous or file): the child maps the same object;
  * VM_WIPEONFORK: the child starts with no object (zero-filled memory);
  * page-table entries are copied only where a fault could not rebuild them -- VMAs
    with an object of private copies (Linux's vma_needs_copy): private writable
    entries are write-protected in both parent and child, every copied page gets one
    more mapcount and reference; then the parent's TLBs are flushed (its entries lost
    write permission).
exit_mmap unmaps everything (zap + free all page tables through an mmu_gather, one
flush), removes every VMA (object references dropped: shadow chains shrink, objects
without references free their pages), destroys the maple tree and frees the root
table.  The mm record is freed when its last reference goes (mm_count).

Lock order: parent mmap_lock (write) -> child mmap_lock (write) -> the rest as in
memory.py.  Invariants: FK1 after fork, every page reachable from the child's PTEs is
reachable from the parent's at the same address (same contents) and write-protected in
both when private; FK2 exit_mmap leaves no page, table, VMA, tree node or object of
the mm behind (the checkers count them).
"""

from __future__ import annotations

from typing import Any

from aerosync.lib.maple_tree import mt_init
from aerosync.mm import hooks
from aerosync.mm import intent as I
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.mm_types import VMError
from aerosync.mm.vm.pgtable import TASK_SIZE_4, TASK_SIZE_5
from aerosync.mm.vm.vm_object import O_SIZE

__all__ = ["MM_CLAIMED", "mm_layout", "Fork"]

MM_CLAIMED = 2
_OP_DUP_MM, _OP_EXIT_MMAP = I.OP["vm_dup_mm"], I.OP["vm_exit_mmap"]
P_FORK_SHADOWS, P_FORK_COPIED = I.POINT_IDS["vm:fork:shadows"], I.POINT_IDS["vm:fork:copied"]
_MIN_GAP = 128 << 20
_STACK_GUARD = 256 << 12
_START_BRK = 0x0000_5555_5556_0000      # just above a PIE binary at 2/3 of the 47-bit space


def mm_layout(levels: int) -> tuple[int, int, int]:
    """(task_size, mmap_base, start_brk): the legacy x86-64 layout without randomisation
    (mmap_base = TASK_SIZE - max(8 MiB stack + guard gap, 128 MiB), arch_pick_mmap_layout)."""
    ts = TASK_SIZE_5 if levels == 5 else TASK_SIZE_4
    gap = max((8 << 20) + _STACK_GUARD, _MIN_GAP)
    return ts, (ts - gap) & ~0xFFF, _START_BRK


class Fork:
    """Simulated CPU `cpu`'s mm lifecycle operations (closures):
      mm_alloc() -> mm id            a fresh address space (no VMAs, a root table)
      mmget(mm_id) / mmput(mm_id)    mm_users; the last put tears the mm down
      dup_mm(parent) -> child mm id  fork's copy of the address space
      exit_mmap(mm_id)               unmap and free everything
    """

    def __init__(self, arena: Any, cpu: int, pt: Any, vmas: Any, objs: Any, memory: Any, mmap: Any, tlb: Any,
                 rcu: Any) -> None:
        self.arena, self.cpu = arena, cpu
        q, at = arena.u64, arena.atomic
        cas, load, store, fetch_add = at.cas64, at.load64, at.store64, at.fetch_add64
        hdr = arena.off("vmhdr")
        nr_cpus = int(arena.config["nr_cpus"])
        mm_size = T.mm_rec_size(nr_cpus)
        mm_base = arena.off("vmmm")
        max_mms = q[(hdr + T.H_MAX_MMS) >> 3]
        levels = q[(hdr + T.H_LEVELS) >> 3]
        task_size, mmap_base, start_brk = mm_layout(levels)
        zero_rec = bytes(mm_size)
        tp = hooks.point_fn()
        u8 = arena.u8
        # intent log (robust mode only, as memory.py's): fork's vm_dup_mm
        lg = memory.log
        begin, log_end, fp = (lg.begin, lg.end, lg.fp) if lg is not None else (None, None, None)

        def mo(mm_id: int) -> int:
            return mm_base + mm_id * mm_size

        def mm_alloc(r: int = -1) -> int:
            """mm_alloc(); with a vm_task_create record r (robust mode), a0 = the mm
            claimed and step 1 right after the claim, step 2 once it is live."""
            for mm_id in range(1, max_mms):
                m = mo(mm_id)
                if load(m + T.M_STATE) != T.MM_FREE or cas(m + T.M_STATE, T.MM_FREE, MM_CLAIMED) != T.MM_FREE:
                    continue
                if r >= 0:
                    q[r + 1] = mm_id
                    q[r + 7] = 1
                u8[m + 8 : m + mm_size] = zero_rec[8:]
                mt_init(arena, m + T.M_MT)
                pgd = pt.pgd_alloc(mm_id)
                if pgd < 0:
                    if r >= 0:
                        q[r + 7] = 0
                    store(m + T.M_STATE, T.MM_FREE)
                    raise VMError("ENOMEM", "mm_alloc: no page for the page-table root")
                q[(m + T.M_PGD) >> 3] = pgd
                q[(m + T.M_USERS) >> 3] = 1
                q[(m + T.M_COUNT) >> 3] = 1
                q[(m + T.M_CTX_ID) >> 3] = fetch_add(hdr + T.H_NEXT_CTX, 1)
                q[(m + T.M_TASK_SIZE) >> 3] = task_size
                q[(m + T.M_MMAP_BASE) >> 3] = mmap_base
                q[(m + T.M_START_BRK) >> 3] = start_brk
                q[(m + T.M_BRK) >> 3] = start_brk
                vmas.forget(mm_id)
                store(m + T.M_STATE, T.MM_LIVE)
                if r >= 0:
                    q[r + 7] = 2
                return mm_id
            raise VMError("ENOMEM", f"mm_alloc: all {max_mms - 1} mm records in use ([vm] max_mms)")

        def mmget(mm_id: int) -> None:
            fetch_add(mo(mm_id) + T.M_USERS, 1)

        def mmput(mm_id: int) -> None:
            """mmput(): the last user tears the mm down -- in robust mode inside a
            vm_exit_mmap record (1 unmapping, 2 freeing the root and the record)."""
            r = begin(_OP_EXIT_MMAP, mm_id) if begin is not None else -1
            try:
                old = fetch_add(mo(mm_id) + T.M_USERS, (1 << 64) - 1)
                if old == 0:
                    fetch_add(mo(mm_id) + T.M_USERS, 1)
                    raise VMError("EINVAL", f"mmput: mm {mm_id} has no users")
                if old != 1:
                    return
                if r >= 0:
                    q[r + 7] = 1
                    exit_mmap_steps(mm_id)
                    q[r + 7] = 2
                else:
                    exit_mmap(mm_id)
                free_mm(mm_id)
            finally:
                if r >= 0:
                    log_end(r)

        def free_mm(mm_id: int) -> None:
            """The root table and the record (the root's word cleared before its free:
            recovery finishing a teardown never frees it twice)."""
            m = mo(mm_id)
            pgd = q[(m + T.M_PGD) >> 3]
            q[(m + T.M_PGD) >> 3] = 0
            if pgd:
                pt.free_table(pgd)
            vmas.forget(mm_id)
            store(m + T.M_STATE, T.MM_FREE)

        def exit_mmap_steps(mm_id: int) -> None:
            """exit_mmap() of robust mode (and recovery's, resuming): the VMAs go one at a
            time through the logged munmap -- each crash-consistent on its own, the tree
            the teardown's progress -- then the page tables left and the empty tree."""
            mmap.mmap_write_lock(mm_id)
            try:
                t = vmas.tree(mm_id)
                while True:
                    v = t.mt_find(0)[0]
                    if not v:
                        break
                    mmap.do_munmap_locked(mm_id, q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3])
                    rcu.poll()                          # a safe point: no tree is mid-update here
                gr = memory.gather_begin(mm_id)         # the tables detached, logged until freed
                g = memory.mmu_gather(mm_id, gr)
                memory.free_pgd_range(mm_id, 0, task_size, 0, 0, g)
                g.finish()
                memory.gather_end(gr)
                t.mt_destroy()
            finally:
                mmap.mmap_write_unlock(mm_id)
            rcu.poll()

        def exit_mmap(mm_id: int) -> None:
            mmap.mmap_write_lock(mm_id)
            try:
                all_vmas = [e for _f, _l, e in vmas.tree(mm_id).mt_for_each(0, (1 << 64) - 1)]
                for v in all_vmas:
                    vmas.start_write(mm_id, v)
                    store(v + V.V_STATE, V.VMA_DETACHED)
                vmas.tree(mm_id).mt_destroy()
                if all_vmas:
                    mmap.unmap_vmas(mm_id, all_vmas, 0, task_size)
                else:
                    g = memory.mmu_gather(mm_id)
                    memory.free_pgd_range(mm_id, 0, task_size, 0, 0, g)
                    g.finish()
            finally:
                mmap.mmap_write_unlock(mm_id)
            rcu.poll()

        def dup_mm(parent: int) -> int:
            """dup_mm(); robust mode logs it (vm_dup_mm, module docstring)."""
            if begin is None:
                return dup_mm_body(parent, -1)
            r = begin(_OP_DUP_MM, 0, parent)
            try:
                return dup_mm_body(parent, r)
            finally:
                log_end(r)

        def dup_mm_body(parent: int, r: int) -> int:
            child = mm_alloc(r)
            pm, cm = mo(parent), mo(child)
            mmap.mmap_write_lock(parent)
            mmap.mmap_write_lock(child)
            sp = sc = 0
            try:
                for f in (T.M_MMAP_BASE, T.M_START_BRK, T.M_BRK, T.M_TOTAL_VM, T.M_LOCKED_VM, T.M_DATA_VM,
                          T.M_EXEC_VM, T.M_STACK_VM, T.M_DEF_FLAGS, T.M_TASK_SIZE, T.M_HIWATER_VM):
                    q[(cm + f) >> 3] = q[(pm + f) >> 3]
                wrprotected = False
                for _f, _l, v in list(vmas.tree(parent).mt_for_each(0, (1 << 64) - 1)):
                    fl = q[(v + V.V_FLAGS) >> 3]
                    if fl & V.VM_DONTCOPY:
                        mmap.vm_stat_account(child, fl, -((q[(v + V.V_END) >> 3] - q[(v + V.V_START) >> 3]) >> 12))
                        continue
                    n = vmas.dup(v)
                    if not n:
                        raise VMError("ENOMEM", "fork: no memory for a VMA")
                    o = q[(v + V.V_OBJECT) >> 3]
                    q[(n + V.V_OBJECT) >> 3] = 0             # no reference of n's yet: given below
                    q[(n + V.V_MM) >> 3] = child
                    if r >= 0:
                        q[r + 3] = n
                        q[r + 4] = q[r + 5] = 0
                        q[r + 6] = v
                        q[r + 7] = 3
                    private = not fl & V.VM_SHARED
                    copy = False
                    if fl & V.VM_WIPEONFORK and private:
                        pass
                    elif o and private:
                        vmas.start_write(parent, v)
                        size = q[(o + O_SIZE) >> 3]
                        sp = objs.shadow(o, 0, size)
                        if r >= 0:
                            q[r + 4] = sp
                        sc = objs.shadow(o, 0, size)
                        if r >= 0:
                            q[r + 5] = sc
                        if not sp or not sc:
                            raise VMError("ENOMEM", "fork: no memory for shadow objects")
                        if fp:
                            fp(P_FORK_SHADOWS)
                        objs.unlink_vma(o, v)
                        q[(v + V.V_OBJECT) >> 3] = sp
                        objs.link_vma(sp, v)
                        q[(n + V.V_OBJECT) >> 3] = sc
                        sp = sc = 0                          # owned by the two VMAs now
                        objs.put(o)                          # the parent VMA's reference moved to sp
                        copy = True
                    elif o:
                        objs.get(o)
                        q[(n + V.V_OBJECT) >> 3] = o
                    if vmas.insert(child, n):
                        o = q[(n + V.V_OBJECT) >> 3]
                        if o:
                            objs.put(o)
                        vmas.free(n)
                        raise VMError("ENOMEM", "fork: no memory for maple-tree nodes")
                    mmap.link(n)
                    q[(cm + T.M_MAP_COUNT) >> 3] += 1
                    if r >= 0:
                        q[r + 7] = 4                         # n is the child's: its teardown owns it
                    if copy:
                        wp = bool(fl & V.VM_WRITE)
                        if memory.copy_range(child, parent, v, q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3], wp) < 0:
                            raise VMError("ENOMEM", "fork: no memory for the child's page tables")
                        wrprotected |= wp
                    if fp:
                        fp(P_FORK_COPIED)
                    if tp:
                        tp("fork:vma_copied")
                if wrprotected:
                    tlb.flush_tlb_mm_range(parent, 0, (1 << 64) - 1)
            except BaseException:
                for s in (sp, sc):                           # shadows made, not yet given to a VMA
                    if s:
                        objs.put(s)
                mmap.mmap_write_unlock(child)
                mmap.mmap_write_unlock(parent)
                mmput(child)
                raise
            q[(cm + T.M_HIWATER_RSS) >> 3] = T.get_mm_rss(arena, cm)     # dup_mm: the child's own peaks
            q[(cm + T.M_HIWATER_VM) >> 3] = q[(cm + T.M_TOTAL_VM) >> 3]
            mmap.mmap_write_unlock(child)
            mmap.mmap_write_unlock(parent)
            return child

        self.mm_alloc, self.mmget, self.mmput, self.dup_mm, self.exit_mmap = mm_alloc, mmget, mmput, dup_mm, exit_mmap
        self.exit_mmap_steps, self.free_mm = exit_mmap_steps, free_mm
