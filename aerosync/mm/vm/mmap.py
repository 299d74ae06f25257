"""The address-space system calls: mmap, munmap, brk, mprotect, mremap, madvise, mlock.

Models: mm/mmap.c (do_mmap, get_unmapped_area with vm_unmapped_area's top-down and
bottom-up gap search, mmap_min_addr, stack_guard_gap, brk / do_brk_flags, mmap_base),
mm/vma.c (do_vmi_munmap: split at the edges, vma_start_write, detach, unmap_region with
floor/ceiling for free_pgtables, remove_vma; __split_vma; the merge of a new range with
its neighbours and of changed ranges after mprotect/madvise), mm/mprotect.c
(mprotect_fixup, change_protection: write-protect with a flush, upgrade lazily through
the next fault), mm/mremap.c (shrink, grow in place, move with move_page_tables),
mm/madvise.c (NORMAL/RANDOM/SEQUENTIAL flags, WILLNEED readahead, DONTNEED zap, FREE
lazy free), mm/mlock.c (VM_LOCKED + populate).  Unit: one system call of one task on
its mm.

Locking: every call takes the mm's mmap_lock for write (mmap_write_lock: the rwsem,
then mm_lock_seq and mmap_seq made odd -- per-VMA readers and speculative faults back
off), write-locks each VMA it changes (vma_start_write) before touching it, and
releases with mm_lock_seq and mmap_seq made even again, which also ends every VMA
write lock.  Pages and page tables of unmapped ranges are released through an
mmu_gather after one TLB flush (memory.py).  munmap, a brk shrink and an in-place
mremap shrink (Linux 6.19: do_vmi_align_munmap with unlock) change the tree under the
write lock -- the VMAs are split, write-locked, erased from the tree and marked
detached -- then downgrade (mmap_write_downgrade: VMA write locks end, mmap_seq even)
and zap, free the page tables and free the VMAs under the read lock: faults elsewhere
in the mm go on meanwhile (one that found a removed VMA fails vma_start_read on its
detached state and looks again; the address is unmapped), while any writer -- an mmap
into the hole, another munmap -- waits for the read hold to end, so the range cannot
be reused before its zap is done.  MAP_FIXED's and mremap move's unmaps stay under
the write lock, as in Linux.  Object and file lists are changed under
the object's lock (vm_object.py).  Errors are VMError(errno name, message naming the
call and the argument): the state is unchanged by a refused call, except that a
MAP_FIXED mmap that fails after unmapping its range leaves it unmapped, as Linux does.

mremap growth: a private region's pages are keyed by index in its vm_object, which the
parts a split leaves share; growing a part over indices another part covers (after a
move left it behind) would map that part's pages.  Such a growth is a VMA of its own
(grow_aliases / map_extension) -- where Linux's anon_vma keeps one VMA, a later mremap
of the whole grown range here fails with EFAULT (it spans two VMAs).

Accounting (under mmap_lock write): map_count, total_vm, data_vm (private writable),
exec_vm, stack_vm, locked_vm; vmacache_seqnum and mmap_seq bumped by every change.
"""

from __future__ import annotations

import time
from typing import Any

from aerosync.arena import layout as L
from aerosync.mm import hooks
from aerosync.mm import intent as I
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.mm_types import VMError
from aerosync.mm.vm.pgtable import _PAGE_RW, pte_modify, vm_get_page_prot
from aerosync.mm.vm.vm_object import O_BACKING, O_REF, O_SIZE, OBJ_ANON, OBJF_SHARED
from aerosync.params import PAGE_SHIFT, PAGE_SIZE
from aerosync.sync import waithook as W

_OP_MMAP, _OP_MUNMAP, _OP_EXPAND = I.OP["vm_mmap"], I.OP["vm_munmap"], I.OP["vm_expand"]
_OP_SPLIT, _OP_BRK, _OP_MERGE, _OP_MREMAP = I.OP["vm_split"], I.OP["vm_brk"], I.OP["vm_merge"], I.OP["vm_mremap"]
P_MERGE_EXPANDED, P_MREMAP_MOVED = I.POINT_IDS["vm:merge:expanded"], I.POINT_IDS["vm:mremap:moved"]
P_SPLIT_READY, P_SPLIT_INSERTED, P_BRK_CHANGED = (
    I.POINT_IDS[n] for n in ("vm:split:ready", "vm:split:inserted", "vm:brk:changed"))
P_VMA_READY, P_VMA_INSERTED, P_DETACHED, P_UNLINKED, P_GATHERED, P_UNMAPPED = (
    I.POINT_IDS[n] for n in ("vm:mmap:vma_ready", "vm:mmap:inserted", "vm:munmap:detached", "vm:munmap:unlinked",
                             "vm:zap:gathered", "vm:munmap:unmapped"))
MAX_LOGGED_VICTIMS = L.SPILL_GATHER - L.SPILL_VMAS     # VMAs a logged munmap holds in the spill

__all__ = [
    "PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC", "MAP_SHARED", "MAP_PRIVATE", "MAP_SHARED_VALIDATE",
    "MAP_FIXED", "MAP_ANONYMOUS", "MAP_GROWSDOWN", "MAP_LOCKED", "MAP_NORESERVE", "MAP_POPULATE", "MAP_STACK",
    "MAP_FIXED_NOREPLACE", "MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP", "MADV_NORMAL", "MADV_RANDOM",
    "MADV_SEQUENTIAL", "MADV_WILLNEED", "MADV_DONTNEED", "MADV_FREE", "MADV_DONTFORK", "MADV_DOFORK",
    "STACK_GUARD_GAP", "Mmap",
]

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0x0, 0x1, 0x2, 0x4
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 0x01, 0x02, 0x03
MAP_FIXED, MAP_ANONYMOUS, MAP_GROWSDOWN = 0x10, 0x20, 0x100
MAP_LOCKED, MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK, MAP_STACK = 0x2000, 0x4000, 0x8000, 0x10000, 0x20000
MAP_FIXED_NOREPLACE = 0x100000
_MAP_KNOWN = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE
              | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK | MAP_FIXED_NOREPLACE | 0x800 | 0x1000)
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 2, 3, 4
MADV_FREE, MADV_DONTFORK, MADV_DOFORK = 8, 10, 11
STACK_GUARD_GAP = 256 << PAGE_SHIFT          # stack_guard_gap: 256 pages
_MIN_GAP = 128 << 20                          # mmap_base: at least 128 MiB below the top
_STACK_RLIMIT = 8 << 20
_U64 = (1 << 64) - 1


def _align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def calc_vm_flags(prot: int, flags: int) -> int:
    """calc_vm_prot_bits | calc_vm_flag_bits | VM_MAY*."""
    vf = (V.VM_READ if prot & PROT_READ else 0) | (V.VM_WRITE if prot & PROT_WRITE else 0) | (
        V.VM_EXEC if prot & PROT_EXEC else 0)
    if flags & MAP_GROWSDOWN:
        vf |= V.VM_GROWSDOWN
    if flags & MAP_LOCKED:
        vf |= V.VM_LOCKED
    if flags & MAP_NORESERVE:
        vf |= V.VM_NORESERVE
    return vf | V.VM_MAYREAD | V.VM_MAYWRITE | V.VM_MAYEXEC


class Mmap:
    """The system calls of simulated CPU `cpu` (closures).  Each takes the mm id of the
    calling task; addresses and lengths in bytes.  See the module docstring."""

    def __init__(self, arena: Any, cpu: int, vmas: Any, objs: Any, memory: Any, files: Any, locks: Any,
                 tlb: Any, rcu: Any, pt: Any) -> None:
        self.arena, self.cpu = arena, cpu
        q, at = arena.u64, arena.atomic
        load, store, fetch_add = at.load64, at.store64, at.fetch_add64
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        hdr = arena.off("vmhdr")
        mmap_min_addr = q[(hdr + T.H_MMAP_MIN_ADDR) >> 3]
        max_map_count = q[(hdr + T.H_MAP_COUNT_MAX) >> 3]
        mmap_down_write, mmap_up_write = locks.mmap_lock.down_write, locks.mmap_lock.up_write
        mmap_down_read, mmap_up_read = locks.mmap_lock.down_read, locks.mmap_lock.up_read
        mmap_downgrade, mmap_write_held = locks.mmap_lock.downgrade_write, locks.mmap_lock.write_held_by_me
        mmap_down_write_trylock = locks.mmap_lock.down_write_trylock
        tree, between, vma_alloc, vma_free, vma_dup = vmas.tree, vmas.between, vmas.alloc, vmas.free, vmas.dup
        vinsert, verase, start_write = vmas.insert, vmas.erase, vmas.start_write
        ev = VE.vm_event_base(arena, cpu)
        pt_walk = pt.walk
        tp = hooks.point_fn()
        P8 = arena.off("physmem") >> 3
        # intent log (robust mode only, as memory.py): mmap's new VMA, munmap's detached ones
        lg = memory.log
        begin, log_end, fp = (lg.begin, lg.end, lg.fp) if lg is not None else (None, None, None)
        spv = lg.spill + L.SPILL_VMAS if lg is not None else 0
        ho, pend = (lg.handoff, lg.pending) if lg is not None else (0, 0)

        def mo(mm_id: int) -> int:
            return mm_base + mm_id * mm_size

        def task_size(mm_id: int) -> int:
            return q[(mo(mm_id) + T.M_TASK_SIZE) >> 3]

        # ------------------------------------------------------------ mmap_lock
        def mmap_write_lock(mm_id: int) -> None:
            m = mo(mm_id)
            mmap_down_write(m + T.M_MMAP_LOCK)
            fetch_add(m + T.M_LOCK_SEQ, 1)      # odd: every VMA with vm_lock_seq == it is write-locked
            fetch_add(m + T.M_MMAP_SEQ, 1)      # odd: speculative faults back off

        def mmap_write_trylock(mm_id: int) -> bool:
            """mmap_write_trylock(): the write lock if it is free now, else False."""
            m = mo(mm_id)
            if not mmap_down_write_trylock(m + T.M_MMAP_LOCK):
                return False
            fetch_add(m + T.M_LOCK_SEQ, 1)
            fetch_add(m + T.M_MMAP_SEQ, 1)
            return True

        def mmap_write_unlock(mm_id: int) -> None:
            m = mo(mm_id)
            fetch_add(m + T.M_MMAP_SEQ, 1)
            fetch_add(m + T.M_LOCK_SEQ, 1)      # even: all VMA write locks released at once
            mmap_up_write(m + T.M_MMAP_LOCK)

        def mmap_write_downgrade(mm_id: int) -> None:
            """mmap_write_downgrade(): vma_end_write_all (mm_lock_seq even: every VMA write
            lock ends; mmap_seq even: speculative faults may run) while the rwsem becomes
            a read hold -- the VMA tree is final, only its removed VMAs still need work."""
            m = mo(mm_id)
            fetch_add(m + T.M_MMAP_SEQ, 1)
            fetch_add(m + T.M_LOCK_SEQ, 1)
            mmap_downgrade(m + T.M_MMAP_LOCK)

        def mmap_read_unlock(mm_id: int) -> None:
            mmap_up_read(mo(mm_id) + T.M_MMAP_LOCK)

        def write_locked(mm_id: int) -> bool:
            return mmap_write_held(mo(mm_id) + T.M_MMAP_LOCK)

        def changed(mm_id: int) -> None:
            q[(mo(mm_id) + T.M_VMACACHE_SEQ) >> 3] += 1

        # ------------------------------------------------------------ accounting
        def vm_stat_account(mm_id: int, flags: int, npages: int) -> None:
            """vm_stat_account(): total_vm and the data/exec/stack split (npages may be < 0)."""
            m = mo(mm_id)
            d = npages & _U64
            q[(m + T.M_TOTAL_VM) >> 3] = (q[(m + T.M_TOTAL_VM) >> 3] + d) & _U64
            if flags & (V.VM_EXEC | V.VM_WRITE) == V.VM_EXEC:
                q[(m + T.M_EXEC_VM) >> 3] = (q[(m + T.M_EXEC_VM) >> 3] + d) & _U64
            elif flags & V.VM_STACK:
                q[(m + T.M_STACK_VM) >> 3] = (q[(m + T.M_STACK_VM) >> 3] + d) & _U64
            elif flags & (V.VM_WRITE | V.VM_SHARED | V.VM_STACK) == V.VM_WRITE:
                q[(m + T.M_DATA_VM) >> 3] = (q[(m + T.M_DATA_VM) >> 3] + d) & _U64
            if flags & V.VM_LOCKED:
                q[(m + T.M_LOCKED_VM) >> 3] = (q[(m + T.M_LOCKED_VM) >> 3] + d) & _U64
            tv = q[(m + T.M_TOTAL_VM) >> 3]
            if tv < 1 << 63 and tv > q[(m + T.M_HIWATER_VM) >> 3]:
                q[(m + T.M_HIWATER_VM) >> 3] = tv

        def npages(vma: int) -> int:
            return (q[(vma + V.V_END) >> 3] - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT

        # ------------------------------------------------------------ VMA structure
        def link(vma: int) -> None:
            """Put a new VMA on its object's / file's list (the object has its reference)."""
            o = q[(vma + V.V_OBJECT) >> 3]
            if o:
                objs.link_vma(o, vma)
            f = q[(vma + V.V_FILE) >> 3]
            if f:
                objs.link_file_vma(files.file_obj(f - 1), vma)

        def unlink(vma: int) -> None:
            o = q[(vma + V.V_OBJECT) >> 3]
            if o:
                objs.unlink_vma(o, vma)
            f = q[(vma + V.V_FILE) >> 3]
            if f:
                objs.unlink_file_vma(files.file_obj(f - 1), vma)

        def split(mm_id: int, vma: int, addr: int) -> int:
            """__split_vma(): cut vma at addr; vma keeps [start, addr), returns the new VMA
            for [addr, end).  Both share the object (one more reference)."""
            if q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] >= max_map_count:
                raise VMError("ENOMEM", f"split at {addr:#x}: map_count reached vm.max_map_count {max_map_count}")
            new = vma_dup(vma)
            if not new:
                raise VMError("ENOMEM", f"split at {addr:#x}: no memory for a VMA")
            lr = -1
            if begin is not None:                    # vm_split (robust mode): the tree store
                lr = begin(_OP_SPLIT, mm_id, vma, new)   # may pass fault points (node frees)
                q[lr + 4] = addr
            try:
                start_write(mm_id, vma)
                q[(new + V.V_START) >> 3] = addr
                q[(new + V.V_PGOFF) >> 3] += (addr - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT
                q[(new + V.V_LOCK_SEQ) >> 3] = load(mo(mm_id) + T.M_LOCK_SEQ)   # born write-locked
                o = q[(new + V.V_OBJECT) >> 3]
                if o:
                    objs.get(o)
                if lr >= 0:
                    q[lr + 7] = 1
                    if fp:
                        fp(P_SPLIT_READY)
                r = vinsert(mm_id, new)              # trims vma's range in the tree
                if r:
                    if lr >= 0:
                        q[lr + 7] = 0
                    if o:
                        objs.put(o)
                    vmas.free(new)
                    raise VMError("ENOMEM", f"split at {addr:#x}: no memory for maple-tree nodes")
                if lr >= 0:
                    q[lr + 7] = 2
                    if fp:
                        fp(P_SPLIT_INSERTED)
                split_finish(mm_id, vma, new, addr)
            finally:
                if lr >= 0:
                    log_end(lr)
            return new

        def split_finish(mm_id: int, vma: int, new: int, addr: int) -> None:
            """The rest of a split once the new VMA is in the tree (recovery rolls a
            dead CPU's split forward with it)."""
            q[(vma + V.V_END) >> 3] = addr
            link(new)
            q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] += 1
            changed(mm_id)

        def mergeable(a: int, b: int) -> bool:
            """Can b (right after a) be folded into a?  Same flags (but VM_SOFTDIRTY),
            file and policy; file offsets contiguous; objects: the same one at contiguous
            offsets, or one of them has none yet (anonymous) and the other's is its own
            alone (is_mergeable_anon_vma: a NULL anon_vma merges; merge_into then gives a
            b's object, at a's contiguous offsets)."""
            if q[(a + V.V_END) >> 3] != q[(b + V.V_START) >> 3]:
                return False
            if (q[(a + V.V_FLAGS) >> 3] ^ q[(b + V.V_FLAGS) >> 3]) & ~V.VM_SOFTDIRTY & _U64:
                return False
            if q[(a + V.V_FILE) >> 3] != q[(b + V.V_FILE) >> 3] or q[(a + V.V_POLICY) >> 3] != q[(b + V.V_POLICY) >> 3]:
                return False
            oa, ob = q[(a + V.V_OBJECT) >> 3], q[(b + V.V_OBJECT) >> 3]
            contiguous = q[(a + V.V_PGOFF) >> 3] + npages(a) == q[(b + V.V_PGOFF) >> 3]
            if q[(a + V.V_FILE) >> 3]:
                return contiguous and oa == ob
            if oa == ob:
                return not oa or contiguous
            if ob:
                return not oa and contiguous and exclusive_object(ob, b)
            return exclusive_object(oa, a)

        def exclusive_object(o: int, vma: int) -> bool:
            from aerosync.mm.vm.vm_object import O_CHILDREN, O_REF, O_VMA_HEAD

            return (load(o + O_REF) == 1 and not q[(o + O_CHILDREN) >> 3]
                    and q[(o + O_VMA_HEAD) >> 3] == vma and not q[(vma + V.V_OBJ_NEXT) >> 3])

        def expand(mm_id: int, vma: int, new_end: int, account: int = -1) -> None:
            """vma_expand(): grow vma to new_end (the range is free or being merged);
            `account` >= 0: the growth is new memory, vm_stat_account'ed with these flags
            (mmap merging into its neighbour, brk, mremap in place).  Robust mode logs it
            (vm_expand): the tree store replaces nodes, whose frees may pass fault
            points before vm_end follows (mm/vm/recover.py)."""
            lr = -1
            if begin is not None:
                lr = begin(_OP_EXPAND, mm_id, vma, new_end)
                q[lr + 4] = account + 1                 # a3: flags + 1 (0: a merge, nothing new)
            try:
                start_write(mm_id, vma)
                o = q[(vma + V.V_OBJECT) >> 3]
                if o:
                    need = q[(vma + V.V_PGOFF) >> 3] + ((new_end - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)
                    if q[(o + O_SIZE) >> 3] < need:
                        q[(o + O_SIZE) >> 3] = need
                r = tree(mm_id).mas_store_range(q[(vma + V.V_START) >> 3], new_end - 1, vma)
                if r:
                    raise VMError("ENOMEM", "vma_expand: no memory for maple-tree nodes")
                old_end = q[(vma + V.V_END) >> 3]
                q[(vma + V.V_END) >> 3] = new_end
                changed(mm_id)
                if account >= 0:
                    vm_stat_account(mm_id, account, (new_end - old_end) >> PAGE_SHIFT)
            finally:
                if lr >= 0:
                    log_end(lr)

        def try_merge_with_neighbours(mm_id: int, vma: int) -> int:
            """vma_merge_existing_range() after a change: fold the next VMA into vma, then
            vma into the previous one; returns the VMA that now covers vma's range."""
            nxt = vmas.next_of(mm_id, vma)
            if nxt and mergeable(vma, nxt):
                merge_into(mm_id, vma, nxt, q[(nxt + V.V_END) >> 3])
            prev = vmas.prev_of(mm_id, vma)
            if prev and mergeable(prev, vma):
                merge_into(mm_id, prev, vma, q[(vma + V.V_END) >> 3])
                return prev
            return vma

        def merge_into(mm_id: int, survivor: int, victim: int, end: int) -> None:
            """commit_merge + vma_complete: the survivor (victim's neighbour) grows over
            victim's range to `end` -- the tree store -- and only then is victim removed,
            so the tree never maps a removed VMA.  Victim is write-locked first (its
            per-VMA readers drained, as vma_prepare).  Robust mode logs it (vm_merge):
            a death in the store (its node allocations) leaves victim in the tree,
            whole; once the store landed, recovery removes victim (merge_finish)."""
            r = begin(_OP_MERGE, mm_id, survivor, victim) if begin is not None else -1
            try:
                if r >= 0:
                    q[r + 4] = end
                start_write(mm_id, victim)
                ob = q[(victim + V.V_OBJECT) >> 3]
                if ob and not q[(survivor + V.V_OBJECT) >> 3]:
                    start_write(mm_id, survivor)        # the survivor takes victim's object (its
                    objs.get(ob)                        # offsets are contiguous with victim's):
                    q[(survivor + V.V_OBJECT) >> 3] = ob    # consistent on its own if we die here
                    objs.link_vma(ob, survivor)
                if r >= 0:
                    q[r + 7] = 1
                expand(mm_id, survivor, end)            # (its own vm_expand record)
                if r >= 0:
                    q[r + 7] = 2
                    if fp:
                        fp(P_MERGE_EXPANDED)
                remove_for_merge(mm_id, victim, r)
            finally:
                if r >= 0:
                    log_end(r)

        def remove_for_merge(mm_id: int, vma: int, r: int = -1) -> None:
            """A VMA swallowed by a merge, no longer in the tree: detach it, drop its
            object reference (the survivor holds the same object, or neither had one:
            never the last), free it (after RCU).  With a vm_merge record r: step 0
            before the free (no fault point from the detach to there)."""
            store(vma + V.V_STATE, V.VMA_DETACHED)
            changed(mm_id)
            unlink(vma)
            o = q[(vma + V.V_OBJECT) >> 3]
            if o:
                objs.put(o)
            q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] -= 1
            if r >= 0:
                q[r + 7] = 0
            vma_free(vma)

        def merge_finish(mm_id: int, survivor: int, victim: int, step: int) -> None:
            """Recovery of a vm_merge record (its vm_expand, innermost, resolved first):
            at step 1 the merge is finished if the store landed (the tree maps victim's
            start to the survivor), else nothing changed; at step 2 victim is removed."""
            if step == 1 and tree(mm_id).mtree_load(q[(victim + V.V_START) >> 3]) == survivor:
                step = 2
            if step == 2:
                remove_for_merge(mm_id, victim)

        # ------------------------------------------------------------ unmap
        def unmap_region(mm_id: int, victims: list[int], start: int, end: int, floor: int, ceiling: int,
                         r: int = -1, from_step: int = 0, hiwater: bool = True) -> None:
            """unmap_region(): the detached VMAs' pages and the page tables wholly inside
            [floor, ceiling) go, after one TLB flush (mmu_gather).  Safe under mmap_lock
            for read: the VMAs are out of the tree (no fault, per-VMA lock or rmap walk
            reaches them: they leave their object's list first), and a concurrent fault
            only populates tables that cover a live VMA, never one wholly in the hole.
            With a vm_munmap record r, its steps: 2 unlinked, 3 unmapped (pages and
            tables freed).  `from_step` (recovery finishing a dead CPU's munmap,
            mm/vm/recover.py): 2 = the VMAs are off their lists already, 3 = nothing
            left here."""
            if hiwater:
                T.update_hiwater_rss(arena, mo(mm_id))
            if from_step <= 1:
                for v in victims:
                    unlink(v)                           # no rmap walker reaches them now
                if r >= 0:
                    q[r + 7] = 2
                    if fp:
                        fp(P_UNLINKED)
            if from_step <= 2:
                gr = memory.gather_begin(mm_id) if r >= 0 else -1
                g = memory.mmu_gather(mm_id, gr)
                for v in victims:
                    memory.zap_range(mm_id, q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3], g)
                    if gr >= 0 and fp:
                        fp(P_GATHERED)
                memory.free_pgd_range(mm_id, start, end, floor, ceiling, g)
                g.finish()
                memory.gather_end(gr)
                if r >= 0:
                    q[r + 7] = 3
                    if fp:
                        fp(P_UNMAPPED)

        def remove_vmas(mm_id: int, victims: list[int], locked_done: bool, r: int = -1, prog: int = 0) -> None:
            """remove_vma() for each: object references, vm_stat_account, the record (RCU).
            locked_done: locked_vm was already lowered (before a downgrade, as Linux).
            With a vm_munmap record r, its a4 word is the progress, 3k + sub: VMA k's
            object put begun (sub 1), its pages accounted (2), VMA k freed (3k + 3), each
            stored before the step it names (a kill in between leaks, never repeats it);
            `prog` is where recovery resumes (mm/vm/recover.py)."""
            for k in range(prog // 3, len(victims)):
                v = victims[k]
                sub = prog - 3 * k if k == prog // 3 else 0
                if sub < 1:
                    o = q[(v + V.V_OBJECT) >> 3]
                    if o:
                        drop_object_range(o, v)
                        if r >= 0:
                            q[r + 5] = 3 * k + 1
                        objs.put(o)
                if sub < 2:
                    if r >= 0:
                        q[r + 5] = 3 * k + 2
                    fl = q[(v + V.V_FLAGS) >> 3]
                    vm_stat_account(mm_id, fl & ~V.VM_LOCKED & _U64 if locked_done else fl, -npages(v))
                if r >= 0:
                    q[r + 5] = 3 * k + 3
                vma_free(v)

        def unmap_vmas(mm_id: int, victims: list[int], start: int, end: int, r: int = -1,
                       from_step: int = 0, prog: int = 0) -> None:
            """unmap_region + remove_vma for VMAs already taken out of the tree, all under
            mmap_lock for write (exit_mmap) or with the world stopped: recovery finishing
            a dead CPU's munmap from its record's step `from_step` (1 detached, 2
            unlinked, 3 unmapped: mm/vm/recover.py), whose map_count and locked_vm the
            munmap lowered right after storing step 1 (a kill from outside between:
            settle_counts sets them)."""
            prev = tree(mm_id).mas_prev(start)[0]
            nxt = tree(mm_id).mt_find(end)[0]
            floor = q[(prev + V.V_END) >> 3] if prev else 0
            ceiling = q[(nxt + V.V_START) >> 3] if nxt else 0
            unmap_region(mm_id, victims, start, end, floor, ceiling, r, from_step, hiwater=False)
            remove_vmas(mm_id, victims, from_step > 0, -1, prog if from_step >= 3 else 0)
            if not from_step:
                q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] -= len(victims)

        def munmap_finish(mm_id: int, victims: list[int], start: int, end: int) -> None:
            """A munmap whose tree erase landed before its record reached step 1 (a death
            in the erase's freeing of replaced nodes), finished by recovery: the victims
            marked detached, the VMA caches invalidated, then unmap_vmas from the start
            (map_count and locked_vm lowered with the rest)."""
            for v in victims:
                store(v + V.V_STATE, V.VMA_DETACHED)
            changed(mm_id)
            unmap_vmas(mm_id, victims, start, end)

        def drop_object_range(o: int, v: int) -> None:
            """The pages of a private anonymous object at this VMA's indices are reachable
            from no other VMA: take them out of the tree (vm_object_page_remove) -- unless
            this VMA holds the object's last reference (no other VMA, no shadow child):
            then the put that follows destroys the object and drains its whole tree at
            once (measured: ~240 bytecodes a page less on page_fault1's munmap)."""
            t = arena.u32[(o + 0) >> 2]
            if (t & 0xFFFF) != OBJ_ANON or (t >> 16) & OBJF_SHARED:
                return
            if load(o + O_REF) == 1:
                return
            first = q[(v + V.V_PGOFF) >> 3]
            objs.page_remove(o, first, first + npages(v))

        def do_munmap_locked(mm_id: int, start: int, end: int, unlock: bool = False) -> int:
            """do_vmi_align_munmap(): vms_gather_munmap_vmas (split the edge VMAs,
            vma_start_write each, take them out of the tree, mark them detached) under
            mmap_lock for write, then vms_complete_munmap_vmas: map_count and locked_vm,
            and -- with `unlock` (munmap, brk shrink, mremap shrink) -- the downgrade to
            a read hold for the zap, the page-table frees and the VMA frees, after which
            the lock is released.  With unlock the lock is always released once this
            returns or raises past the gather; a gather error leaves it write-held.
            Returns the number of VMAs removed."""
            victims = between(mm_id, start, end)
            if not victims:
                if unlock:
                    mmap_write_unlock(mm_id)
                return 0
            first, last = victims[0], victims[-1]
            if q[(first + V.V_START) >> 3] < start:
                tail = split(mm_id, first, start)
                victims[0] = tail
                if last == first:
                    last = tail
            if q[(last + V.V_END) >> 3] > end:
                split(mm_id, last, end)
            for v in victims:
                start_write(mm_id, v)
            prev = tree(mm_id).mas_prev(start)[0]
            nxt = tree(mm_id).mt_find(end)[0]
            floor = q[(prev + V.V_END) >> 3] if prev else 0
            ceiling = q[(nxt + V.V_START) >> 3] if nxt else 0
            r = -1
            if begin is not None and len(victims) <= MAX_LOGGED_VICTIMS:
                for j, v in enumerate(victims):            # whole before the record is (a3 = n):
                    q[spv + j] = v                          # a stale count or victim was rolled forward
                r = begin(_OP_MUNMAP, mm_id, start, end, len(victims))
                q[r + 5] = 0                                # remove_vmas' progress (read from step 1)
            try:
                if verase(mm_id, start, end):
                    raise VMError("ENOMEM", f"munmap({start:#x}, {end - start}): no memory for maple-tree nodes")
                for v in victims:
                    store(v + V.V_STATE, V.VMA_DETACHED)
                changed(mm_id)
                # vms_complete_munmap_vmas: the point of no return (record step 1 implies
                # it).  Step 1 goes before the counts: a roll-forward from step 0 lowers
                # them itself, so a kill between them and a later step would lower them
                # twice (map_count below zero); killed from outside between step 1 and
                # the counts, settle_counts sets them from the tree (VT4, VT5)
                if r >= 0:
                    q[r + 7] = 1
                m = mo(mm_id)
                q[(m + T.M_MAP_COUNT) >> 3] -= len(victims)
                for v in victims:
                    if q[(v + V.V_FLAGS) >> 3] & V.VM_LOCKED:
                        q[(m + T.M_LOCKED_VM) >> 3] -= npages(v)
                if r >= 0 and fp:
                    fp(P_DETACHED)
                if tp:
                    tp("munmap:detached")
                if unlock:
                    mmap_write_downgrade(mm_id)
                try:
                    if unlock and tp:
                        tp("munmap:downgraded")
                    unmap_region(mm_id, victims, start, end, floor, ceiling, r)
                    remove_vmas(mm_id, victims, True, r)
                finally:
                    if unlock:
                        mmap_read_unlock(mm_id)
            finally:
                if r >= 0:
                    log_end(r)
            return len(victims)

        def check_range(call: str, start: int, length: int, mm_id: int) -> int:
            if start & (PAGE_SIZE - 1):
                raise VMError("EINVAL", f"{call}(addr={start:#x}): address not page aligned")
            if length <= 0:
                raise VMError("EINVAL", f"{call}(addr={start:#x}, len={length}): length must be positive")
            end = start + _align(length)
            if end > task_size(mm_id):
                raise VMError("EINVAL", f"{call}(addr={start:#x}, len={length}): beyond TASK_SIZE "
                                        f"{task_size(mm_id):#x}")
            return end

        def munmap(mm_id: int, start: int, length: int) -> None:
            """__vm_munmap(): do_vmi_munmap with unlock (the zap runs under the read lock)."""
            end = check_range("munmap", start, length, mm_id)
            mmap_write_lock(mm_id)
            try:
                do_munmap_locked(mm_id, start, end, unlock=True)
            finally:
                if write_locked(mm_id):
                    mmap_write_unlock(mm_id)
            rcu.poll()

        # ------------------------------------------------------------ get_unmapped_area
        def mmap_base(mm_id: int) -> int:
            return q[(mo(mm_id) + T.M_MMAP_BASE) >> 3]

        def unmapped_area(mm_id: int, length: int) -> int:
            """vm_unmapped_area(): top-down from mmap_base, then bottom-up from
            TASK_UNMAPPED_BASE; a gap must leave stack_guard_gap below a stack VMA."""
            t = tree(mm_id)
            low = max(PAGE_SIZE, mmap_min_addr)
            high = mmap_base(mm_id)
            size = length
            hi = high - 1
            while hi >= low + size - 1:
                start = t.mas_empty_area_rev(low, hi, size)
                if start < 0:
                    break
                nxt = t.mt_find(start + size)[0]
                if nxt and q[(nxt + V.V_FLAGS) >> 3] & V.VM_GROWSDOWN and \
                        q[(nxt + V.V_START) >> 3] - (start + size) < STACK_GUARD_GAP:
                    hi = start + size - 2          # too close to a stack: look lower
                    continue
                return start
            lo2 = _align(task_size(mm_id) // 3)
            start = t.mas_empty_area(lo2, task_size(mm_id) - 1, size)
            return start if start >= 0 else -1

        def range_free(mm_id: int, start: int, end: int) -> bool:
            return not between(mm_id, start, end)

        # ------------------------------------------------------------ mmap
        def mmap(mm_id: int, addr: int, length: int, prot: int, flags: int, fid: int = -1,
                 offset: int = 0) -> int:
            """do_mmap(): returns the start address; VMError for a refused call."""
            call = f"mmap(addr={addr:#x}, len={length}, prot={prot:#x}, flags={flags:#x})"
            if length <= 0:
                raise VMError("EINVAL", f"{call}: length must be positive")
            if flags & ~_MAP_KNOWN:
                raise VMError("EINVAL", f"{call}: unknown flag bits {flags & ~_MAP_KNOWN:#x}")
            kind = flags & MAP_SHARED_VALIDATE
            if kind not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
                raise VMError("EINVAL", f"{call}: exactly one of MAP_SHARED / MAP_PRIVATE is needed")
            if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
                raise VMError("EINVAL", f"{call}: unknown prot bits {prot & ~7:#x}")
            length = _align(length)
            anon = bool(flags & MAP_ANONYMOUS)
            if not anon:
                if fid < 0:
                    raise VMError("EBADF", f"{call}: a file mapping needs a file (or MAP_ANONYMOUS)")
                if offset & (PAGE_SIZE - 1):
                    raise VMError("EINVAL", f"{call}: offset {offset:#x} not page aligned")
            elif offset and kind == MAP_PRIVATE:
                offset = 0
            ts = task_size(mm_id)
            if length > ts:
                raise VMError("ENOMEM", f"{call}: larger than TASK_SIZE")
            fixed = bool(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
            if fixed:
                if addr & (PAGE_SIZE - 1):
                    raise VMError("EINVAL", f"{call}: MAP_FIXED address not page aligned")
                if addr < mmap_min_addr:
                    raise VMError("EPERM", f"{call}: below vm.mmap_min_addr {mmap_min_addr:#x}")
                if addr + length > ts:
                    raise VMError("ENOMEM", f"{call}: the range ends beyond TASK_SIZE {ts:#x}")
            vm_flags = calc_vm_flags(prot, flags) | q[(mo(mm_id) + T.M_DEF_FLAGS) >> 3]
            if kind != MAP_PRIVATE:
                vm_flags |= V.VM_SHARED | V.VM_MAYSHARE
            mmap_write_lock(mm_id)
            try:
                if q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] >= max_map_count:
                    raise VMError("ENOMEM", f"{call}: map_count reached vm.max_map_count {max_map_count}")
                if fixed:
                    if not range_free(mm_id, addr, addr + length):
                        if flags & MAP_FIXED_NOREPLACE:
                            raise VMError("EEXIST", f"{call}: MAP_FIXED_NOREPLACE and the range is mapped")
                        do_munmap_locked(mm_id, addr, addr + length)
                    start = addr
                else:
                    start = -1
                    a = _align(addr) if addr else 0
                    if a and a >= mmap_min_addr and a + length <= ts and range_free(mm_id, a, a + length):
                        start = a                      # the hint is free
                    if start < 0:
                        start = unmapped_area(mm_id, length)
                    if start < 0:
                        raise VMError("ENOMEM", f"{call}: no free range of {length} bytes")
                map_region(mm_id, start, length, vm_flags, fid, offset >> PAGE_SHIFT, anon)
            finally:
                mmap_write_unlock(mm_id)
            if flags & MAP_POPULATE or vm_flags & V.VM_LOCKED:
                populate(mm_id, start, start + length)
            return start

        def map_region(mm_id: int, start: int, length: int, vm_flags: int, fid: int, pgoff: int, anon: bool) -> int:
            """mmap_region(): merge with a neighbour or create the VMA (mmap_lock held)."""
            end = start + length
            shared_anon = anon and vm_flags & V.VM_SHARED
            t = tree(mm_id)
            prev = t.mas_prev(start)[0]
            if (prev and not shared_anon and q[(prev + V.V_END) >> 3] == start
                    and prev_mergeable(prev, vm_flags, fid, pgoff, anon)):
                expand(mm_id, prev, end, vm_flags)
                return prev
            r = -1
            if begin is not None:
                # vm_mmap: step 0 the VMA being allocated (a1 = 0, a hand-off window open:
                # mm/intent.py) or set up (a1 = v), 1 set up, 2 in the tree
                r = begin(_OP_MMAP, mm_id, 0)
                q[ho] = 0
                q[pend] = 1
            try:
                v = vma_alloc()
                if r >= 0:
                    q[r + 2] = v
                    q[pend] = 0
                if not v:
                    raise VMError("ENOMEM", f"mmap: no memory for a VMA at {start:#x}")
                q[(v + V.V_START) >> 3] = start
                q[(v + V.V_END) >> 3] = end
                q[(v + V.V_MM) >> 3] = mm_id
                q[(v + V.V_FLAGS) >> 3] = vm_flags
                q[(v + V.V_PROT) >> 3] = vm_get_page_prot(vm_flags)
                q[(v + V.V_PGOFF) >> 3] = 0 if anon and not shared_anon else pgoff
                q[(v + V.V_LOCK_SEQ) >> 3] = load(mo(mm_id) + T.M_LOCK_SEQ)
                if shared_anon:
                    o = objs.alloc(OBJ_ANON, length >> PAGE_SHIFT, OBJF_SHARED)
                    if not o:
                        if r >= 0:
                            q[r + 2] = 0
                        vma_free(v)
                        raise VMError("ENOMEM", f"mmap: no memory for the shared object at {start:#x}")
                    q[(v + V.V_OBJECT) >> 3] = o
                if not anon:
                    q[(v + V.V_FILE) >> 3] = fid + 1
                if r >= 0:
                    q[r + 7] = 1
                    if fp:
                        fp(P_VMA_READY)
            except BaseException:
                if r >= 0:
                    log_end(r)
                raise
            try:
                if vinsert(mm_id, v):
                    if r >= 0:
                        q[r + 2] = 0                 # nothing to undo (a death before the frees
                                                     # below leaks v: never freed twice)
                    if q[(v + V.V_OBJECT) >> 3]:
                        objs.put(q[(v + V.V_OBJECT) >> 3])
                    vma_free(v)
                    raise VMError("ENOMEM", f"mmap: no memory for maple-tree nodes at {start:#x}")
                mmap_finish(mm_id, v)
                if r >= 0:
                    q[r + 7] = 2
                    if fp:
                        fp(P_VMA_INSERTED)
            finally:
                if r >= 0:
                    log_end(r)
            return v

        def mmap_finish(mm_id: int, v: int) -> None:
            """The rest of mmap_region once the new VMA is in the tree (recovery rolls a
            dead CPU's mmap forward with it)."""
            link(v)
            q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] += 1
            vm_stat_account(mm_id, q[(v + V.V_FLAGS) >> 3], npages(v))
            changed(mm_id)

        def prev_mergeable(prev: int, vm_flags: int, fid: int, pgoff: int, anon: bool) -> bool:
            if (q[(prev + V.V_FLAGS) >> 3] ^ vm_flags) & ~V.VM_SOFTDIRTY & _U64:
                return False
            if q[(prev + V.V_POLICY) >> 3]:
                return False
            if anon:
                if q[(prev + V.V_FILE) >> 3]:
                    return False
                o = q[(prev + V.V_OBJECT) >> 3]
                return not o or exclusive_object(o, prev)
            return (q[(prev + V.V_FILE) >> 3] == fid + 1 and not q[(prev + V.V_OBJECT) >> 3]
                    and q[(prev + V.V_PGOFF) >> 3] + npages(prev) == pgoff)

        def populate(mm_id: int, start: int, end: int) -> int:
            """__mm_populate(): fault every page in (write faults for private writable
            mappings, so COW is broken now, as FOLL_WRITE does)."""
            n = 0
            mmap_down_read(mo(mm_id) + T.M_MMAP_LOCK)
            try:
                for v in between(mm_id, start, end):
                    fl = q[(v + V.V_FLAGS) >> 3]
                    if not fl & V.VM_ACCESS_FLAGS:
                        continue
                    write = bool(fl & V.VM_WRITE) and not fl & V.VM_SHARED
                    lo, hi = max(start, q[(v + V.V_START) >> 3]), min(end, q[(v + V.V_END) >> 3])
                    for a in range(lo, hi, PAGE_SIZE):
                        r = memory.handle_mm_fault(mm_id, v, a, write)
                        if r & 0x1:
                            raise VMError("ENOMEM", f"populate of {a:#x}: out of memory")
                        n += 1
            finally:
                mmap_up_read(mo(mm_id) + T.M_MMAP_LOCK)
            return n

        # ------------------------------------------------------------ brk
        def brk(mm_id: int, newbrk: int) -> int:
            """brk(): the new break, or the old one when the request is refused.  A shrink
            unmaps with the downgrade, as munmap does (do_vmi_align_munmap, unlock)."""
            m = mo(mm_id)
            mmap_write_lock(mm_id)
            lr = -1
            try:
                start_brk, cur = q[(m + T.M_START_BRK) >> 3], q[(m + T.M_BRK) >> 3]
                if newbrk < start_brk:
                    return cur
                old_end, new_end = _align(cur), _align(newbrk)
                if new_end == old_end:
                    q[(m + T.M_BRK) >> 3] = newbrk
                    return newbrk
                if begin is not None:                # vm_brk (robust mode): mm->brk follows the tree
                    lr = begin(_OP_BRK, mm_id, cur, newbrk)
                if new_end < old_end:
                    q[(m + T.M_BRK) >> 3] = newbrk
                    try:
                        do_munmap_locked(mm_id, new_end, old_end, unlock=True)
                    except VMError:
                        if write_locked(mm_id):
                            q[(m + T.M_BRK) >> 3] = cur
                            return cur
                        raise
                    if lr >= 0:
                        q[lr + 7] = 1                # (no point: mmap_lock is dropped already)
                    return newbrk
                nxt = tree(mm_id).mt_find(old_end)[0]
                gap = STACK_GUARD_GAP if nxt and q[(nxt + V.V_FLAGS) >> 3] & V.VM_GROWSDOWN else 0
                if nxt and new_end + gap > q[(nxt + V.V_START) >> 3]:
                    return cur
                flags = V.VM_READ | V.VM_WRITE | V.VM_MAYREAD | V.VM_MAYWRITE | V.VM_MAYEXEC | \
                    q[(m + T.M_DEF_FLAGS) >> 3]
                try:
                    map_region(mm_id, old_end, new_end - old_end, flags, -1, 0, True)
                except VMError:
                    return cur
                if lr >= 0:
                    q[lr + 7] = 1
                    if fp:
                        fp(P_BRK_CHANGED)
                q[(m + T.M_BRK) >> 3] = newbrk
                return newbrk
            finally:
                if lr >= 0:
                    log_end(lr)
                if write_locked(mm_id):
                    mmap_write_unlock(mm_id)

        def brk_settle(mm_id: int, oldbrk: int, newbrk: int) -> None:
            """mm->brk after a brk from oldbrk to newbrk stopped anywhere (recovery): the
            break whose heap end the VMAs have -- the larger if [lower end, higher end) is
            mapped, else the smaller.  (A later brk trusts mm->brk: one that lagged the
            VMAs would have every grow refused, or a shrink leave memory mapped.)  A
            break that is neither was moved since by a live thread of the mm (its
            mmap_lock was taken over): theirs stands."""
            cur = q[(mo(mm_id) + T.M_BRK) >> 3]
            if cur not in (oldbrk, newbrk):
                return
            lo, hi = sorted((oldbrk, newbrk), key=_align)
            a, b = _align(lo), _align(hi)
            v = tree(mm_id).mtree_load(a) if a < b else 0
            q[(mo(mm_id) + T.M_BRK) >> 3] = hi if v and q[(v + V.V_END) >> 3] >= b else lo

        # ------------------------------------------------------------ mprotect
        def mprotect(mm_id: int, start: int, length: int, prot: int) -> None:
            end = check_range("mprotect", start, length, mm_id)
            call = f"mprotect(addr={start:#x}, len={length}, prot={prot:#x})"
            if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
                raise VMError("EINVAL", f"{call}: unknown prot bits")
            newbits = calc_vm_flags(prot, 0) & V.VM_ACCESS_FLAGS
            mmap_write_lock(mm_id)
            try:
                vs = between(mm_id, start, end)
                a = start
                for v in vs:                            # the range must be fully mapped
                    if q[(v + V.V_START) >> 3] > a:
                        raise VMError("ENOMEM", f"{call}: [{a:#x}, {q[(v + V.V_START) >> 3]:#x}) is not mapped")
                    a = q[(v + V.V_END) >> 3]
                    fl = q[(v + V.V_FLAGS) >> 3]
                    if newbits & ~(fl >> 4) & V.VM_ACCESS_FLAGS:
                        raise VMError("EACCES", f"{call}: VMA at {q[(v + V.V_START) >> 3]:#x} does not allow it "
                                                f"({V.format_vm_flags(fl & 0xF0)})")
                if a < end:
                    raise VMError("ENOMEM", f"{call}: [{a:#x}, {end:#x}) is not mapped")
                split_edges(mm_id, vs, start, end)
                for v in vs:
                    change_protection(mm_id, v, newbits)
                merge_all(mm_id, vs)
            finally:
                mmap_write_unlock(mm_id)
            rcu.poll()

        def split_edges(mm_id: int, vs: list[int], start: int, end: int) -> None:
            """Split the first and last VMAs of vs so that vs covers exactly [start, end)."""
            if vs and q[(vs[0] + V.V_START) >> 3] < start:
                vs[0] = split(mm_id, vs[0], start)
            if vs and q[(vs[-1] + V.V_END) >> 3] > end:
                split(mm_id, vs[-1], end)

        def merge_all(mm_id: int, vs: list[int]) -> None:
            for v in vs:
                if load(v + V.V_STATE) == V.VMA_ATTACHED:
                    try_merge_with_neighbours(mm_id, v)

        def change_protection(mm_id: int, v: int, newbits: int) -> None:
            """mprotect_fixup + change_protection: new flags and page protection; PTEs lose
            write permission now (with a flush) and gain it lazily at the next fault
            (write faults reuse exclusive pages), except shared dirty-tracked ones."""
            start_write(mm_id, v)
            old = q[(v + V.V_FLAGS) >> 3]
            fl = (old & ~V.VM_ACCESS_FLAGS & _U64) | newbits
            n = npages(v)
            vm_stat_account(mm_id, old, -n)
            vm_stat_account(mm_id, fl, n)
            q[(v + V.V_FLAGS) >> 3] = fl
            prot = vm_get_page_prot(fl)
            q[(v + V.V_PROT) >> 3] = prot
            root = q[(mo(mm_id) + T.M_PGD) >> 3]
            s, e = q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3]
            flush = False
            a = s
            while a < e:
                table = pt_walk(root, a)
                nxt = min(e, (a | ((1 << 21) - 1)) + 1)
                if table < 0:
                    a = nxt
                    continue
                lo = pt.ptlock_off(table)
                locks.ptlock.lock(lo)
                try:
                    base = P8 + (table << 9)
                    for va in range(a, nxt, PAGE_SIZE):
                        i = base + ((va >> PAGE_SHIFT) & 511)
                        ent = q[i]
                        if not ent or not ent & 0x101:
                            continue
                        new = pte_modify(ent, prot)
                        if ent & _PAGE_RW and not new & _PAGE_RW:
                            flush = True
                        if new & _PAGE_RW and not (ent & _PAGE_RW):
                            new &= ~_PAGE_RW & _U64             # upgraded lazily (next fault)
                        if not prot & 0x1:                       # PROT_NONE: not present
                            new = (new & ~0x1 & _U64) | 0x100
                            flush = True
                        at.xchg64(i << 3, new)
                finally:
                    locks.ptlock.unlock(lo)
                a = nxt
            if flush:
                tlb.flush_tlb_mm_range(mm_id, s, e)

        # ------------------------------------------------------------ mremap
        def mremap(mm_id: int, old: int, old_len: int, new_len: int, flags: int = 0, new_addr: int = 0) -> int:
            call = f"mremap(old={old:#x}, old_len={old_len}, new_len={new_len}, flags={flags:#x})"
            if flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
                raise VMError("EINVAL", f"{call}: unknown flags")
            if old & (PAGE_SIZE - 1) or new_len <= 0:
                raise VMError("EINVAL", f"{call}: unaligned address or zero length")
            if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
                raise VMError("EINVAL", f"{call}: MREMAP_FIXED needs MREMAP_MAYMOVE")
            old_len, new_len = _align(old_len), _align(new_len)
            mmap_write_lock(mm_id)
            try:
                v = tree(mm_id).mtree_load(old)
                if not v or q[(v + V.V_END) >> 3] < old + old_len:
                    raise VMError("EFAULT", f"{call}: [{old:#x}, {old + old_len:#x}) is not one mapping")
                if flags & MREMAP_FIXED:
                    return move_vma(mm_id, v, old, old_len, new_len, new_addr, fixed=True)
                if new_len <= old_len:
                    if new_len < old_len:          # shrink_vma(drop_lock=true)
                        do_munmap_locked(mm_id, old + new_len, old + old_len, unlock=True)
                    return old
                end = old + old_len
                if q[(v + V.V_END) >> 3] == end:
                    nxt = tree(mm_id).mt_find(end)[0]
                    if (not nxt or q[(nxt + V.V_START) >> 3] >= old + new_len) and old + new_len <= task_size(mm_id):
                        if grow_aliases(v, new_len - old_len):      # grow in place
                            map_extension(mm_id, v, end, new_len - old_len)
                        else:
                            expand(mm_id, v, old + new_len, q[(v + V.V_FLAGS) >> 3])
                        return old
                if not flags & MREMAP_MAYMOVE:
                    raise VMError("ENOMEM", f"{call}: cannot grow in place and MREMAP_MAYMOVE is not set")
                return move_vma(mm_id, v, old, old_len, new_len, 0, fixed=False)
            finally:
                if write_locked(mm_id):
                    mmap_write_unlock(mm_id)
                rcu.poll()

        def move_vma(mm_id: int, v: int, old: int, old_len: int, new_len: int, new_addr: int, fixed: bool) -> int:
            """move_vma(): a new VMA at the destination sharing the object and offsets,
            the page-table entries moved (no reference changes), the old range unmapped
            without freeing what moved."""
            if fixed:
                if new_addr & (PAGE_SIZE - 1) or new_addr < mmap_min_addr or new_addr + new_len > task_size(mm_id):
                    raise VMError("EINVAL", f"mremap: bad MREMAP_FIXED address {new_addr:#x}")
                if new_addr < old + old_len and old < new_addr + new_len:
                    raise VMError("EINVAL", f"mremap: destination {new_addr:#x} overlaps the source")
                do_munmap_locked(mm_id, new_addr, new_addr + new_len)
                dst = new_addr
            else:
                dst = unmapped_area(mm_id, new_len)
                if dst < 0:
                    raise VMError("ENOMEM", f"mremap: no free range of {new_len} bytes")
            if q[(v + V.V_START) >> 3] < old:
                v = split(mm_id, v, old)
            if q[(v + V.V_END) >> 3] > old + old_len:
                split(mm_id, v, old + old_len)
            start_write(mm_id, v)
            tail = 0
            if new_len > old_len and grow_aliases(v, new_len - old_len):
                tail, new_len = new_len - old_len, old_len      # the growth: a VMA of its own
            r = begin(_OP_MREMAP, mm_id, v) if begin is not None else -1
            try:
                if r >= 0:
                    q[r + 4], q[r + 5], q[r + 6] = old, old_len, dst
                n = vma_dup(v)
                if not n:
                    raise VMError("ENOMEM", "mremap: no memory for a VMA")
                q[(n + V.V_START) >> 3] = dst
                q[(n + V.V_END) >> 3] = dst + new_len
                q[(n + V.V_LOCK_SEQ) >> 3] = load(mo(mm_id) + T.M_LOCK_SEQ)
                o = q[(n + V.V_OBJECT) >> 3]
                if o:
                    objs.get(o)
                    need = q[(n + V.V_PGOFF) >> 3] + (new_len >> PAGE_SHIFT)
                    if q[(o + O_SIZE) >> 3] < need:
                        q[(o + O_SIZE) >> 3] = need
                if r >= 0:
                    q[r + 3] = n
                    q[r + 7] = 1
                if vinsert(mm_id, n):
                    if r >= 0:
                        q[r + 7] = 0
                    if o:
                        objs.put(o)
                    vmas.free(n)
                    raise VMError("ENOMEM", "mremap: no memory for maple-tree nodes")
                move_attach(mm_id, n)
                if r >= 0:
                    q[r + 7] = 2
                moved = memory.move_page_tables(mm_id, old, dst, old_len)
                if moved < old_len:                     # ENOMEM: back as it was (Linux moves back too)
                    memory.move_page_tables(mm_id, dst, old, moved)
                    if r >= 0:
                        q[r + 7] = 0
                    if not verase(mm_id, dst, dst + new_len):
                        remove_vma_now(mm_id, n, new_len)
                    raise VMError("ENOMEM", f"mremap: no memory for page tables at {dst + moved:#x}")
                if r >= 0:
                    q[r + 7] = 3
                    if fp:
                        fp(P_MREMAP_MOVED)
                # the old VMA now maps nothing: remove it without touching the object's pages
                if verase(mm_id, old, old + old_len):
                    raise VMError("ENOMEM", "mremap: no memory for maple-tree nodes")
                remove_vma_now(mm_id, v, old_len, r)
            finally:
                if r >= 0:
                    log_end(r)
            if tail:
                map_extension(mm_id, n, dst + old_len, tail)
            return dst

        def grow_aliases(v: int, extra: int) -> bool:
            """Would growing private VMA v by `extra` bytes alias memory?  Its object's pages
            are keyed by index (pgoff): if another VMA of the object (a part split off v,
            which a move left behind) covers the indices the growth would take, or the
            object has shadows (fork), the grown part would map that memory instead of
            new zeroes -- as Linux's anon_vma never does.  Then the growth must be a VMA
            of its own (map_extension)."""
            o = q[(v + V.V_OBJECT) >> 3]
            if not o or q[(v + V.V_FLAGS) >> 3] & V.VM_SHARED:
                return False
            from aerosync.mm.vm.vm_object import O_CHILDREN, O_VMA_HEAD

            if q[(o + O_CHILDREN) >> 3]:
                return True
            lo = q[(v + V.V_PGOFF) >> 3] + npages(v)
            hi = lo + (extra >> PAGE_SHIFT)
            w = q[(o + O_VMA_HEAD) >> 3]
            while w:
                if w != v:
                    wlo = q[(w + V.V_PGOFF) >> 3]
                    if wlo < hi and lo < wlo + npages(w):
                        return True
                w = q[(w + V.V_OBJ_NEXT) >> 3]
            return False

        def map_extension(mm_id: int, v: int, start: int, length: int) -> None:
            """mremap's growth of v as a VMA of its own at start (grow_aliases): the same
            flags, the file continuing at the next offset (an anonymous one: new memory,
            its own object at the first fault)."""
            f = q[(v + V.V_FILE) >> 3]
            pgoff = q[(v + V.V_PGOFF) >> 3] + npages(v) if f else 0
            map_region(mm_id, start, length, q[(v + V.V_FLAGS) >> 3], f - 1, pgoff, not f)

        def move_attach(mm_id: int, n: int) -> None:
            """move_vma's new VMA, in the tree: on its lists, counted."""
            link(n)
            q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] += 1
            vm_stat_account(mm_id, q[(n + V.V_FLAGS) >> 3], npages(n))

        def remove_vma_now(mm_id: int, v: int, length: int, r: int = -1, step: int = 0) -> None:
            """A VMA that maps nothing any more, erased from the tree: detached, off its
            lists, its page tables freed (those wholly in the hole its range leaves, through
            a logged gather), its object reference put (never the last: the other VMA of
            the move holds one), uncounted, freed.  With a vm_mremap record r: step 4 once
            detached and unlinked, 5 before the put (a kill in between leaks the
            reference, never puts it twice), 6 counted out, 0 before the free.  `step`:
            recovery resuming from that step (4..6)."""
            start = q[(v + V.V_START) >> 3]
            if step < 4:
                store(v + V.V_STATE, V.VMA_DETACHED)
                changed(mm_id)
                unlink(v)
                if r >= 0:
                    q[r + 7] = 4
            if step <= 4:
                prev = tree(mm_id).mas_prev(start)[0] if start else 0
                nxt = tree(mm_id).mt_find(start + length)[0]
                gr = memory.gather_begin(mm_id)
                g = memory.mmu_gather(mm_id, gr)
                memory.free_pgd_range(mm_id, start, start + length, q[(prev + V.V_END) >> 3] if prev else 0,
                                      q[(nxt + V.V_START) >> 3] if nxt else 0, g)
                g.finish()
                memory.gather_end(gr)
                if r >= 0:
                    q[r + 7] = 5
                o = q[(v + V.V_OBJECT) >> 3]
                if o:
                    objs.put(o)
            if step <= 5:
                vm_stat_account(mm_id, q[(v + V.V_FLAGS) >> 3], -(length >> PAGE_SHIFT))
                q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] -= 1
                if r >= 0:
                    q[r + 7] = 6
            if r >= 0:
                q[r + 7] = 0
            vma_free(v)

        def move_finish(mm_id: int, v: int, n: int, old: int, old_len: int, dst: int, step: int) -> int:
            """Recovery of a vm_mremap record (a move): step 1 -- n set up with its object
            reference, its tree store in flight -- rolled forward if the store landed (n
            attached, linked, counted), else n undone; from step 2 the rest of the page
            tables moved (entries still at the old range; each moves whole), from step 3
            the old range erased if the tree still maps it, then v removed (from step 4:
            already detached and unlinked; 5 its object reference put or in flight; 6
            counted out).  A step 2 that cannot have a destination table
            (ENOMEM) moves every entry back and removes n instead: the mremap failed.
            Returns the VMAs freed."""
            if step == 1:
                if tree(mm_id).mtree_load(dst) != n:
                    o = q[(n + V.V_OBJECT) >> 3]
                    if o:
                        objs.put(o)
                    vmas.free(n)
                    return 1
                store(n + V.V_STATE, V.VMA_ATTACHED)
                move_attach(mm_id, n)
                step = 2
            if step == 2:
                if memory.move_page_tables(mm_id, old, dst, old_len) < old_len:
                    # ENOMEM (a destination table): undone as the live call's ENOMEM is --
                    # every entry back at old (the dead CPU's moved ones too), n removed
                    memory.move_page_tables(mm_id, dst, old, old_len)
                    new_len = q[(n + V.V_END) >> 3] - dst
                    if not verase(mm_id, dst, dst + new_len):
                        remove_vma_now(mm_id, n, new_len)
                    return 1
                step = 3
            if step == 3 and tree(mm_id).mtree_load(old) == v:
                verase(mm_id, old, old + old_len)
            remove_vma_now(mm_id, v, old_len, -1, step if step >= 4 else 0)
            return 1

        # ------------------------------------------------------------ madvise
        def madvise(mm_id: int, start: int, length: int, advice: int, reap_wait: float | None = None) -> None:
            """madvise(); `reap_wait` (seconds) makes it the OOM reaper's MADV_DONTNEED,
            which runs inside the fault whose allocation chose the victim: the VMA write
            lock is only tried, for up to reap_wait (0 when the victim is this CPU's own
            mm: its VMA's read lock may be ours), and a private VMA still busy is left
            alone, as the reaper's trylocks leave a busy mm.  With reap_wait 0 the mmap
            lock too is only tried: the fault that chose its own task may hold it for read
            (fault_locking mmap_lock, or a per-VMA fault fallen back to it), and waiting
            for it for write would wait for ourselves -- a busy mm is left to the exit."""
            end = check_range("madvise", start, length, mm_id)
            call = f"madvise(addr={start:#x}, len={length}, advice={advice})"
            if advice not in (MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE,
                              MADV_DONTFORK, MADV_DOFORK):
                raise VMError("EINVAL", f"{call}: advice not supported (NORMAL, RANDOM, SEQUENTIAL, WILLNEED, "
                                        "DONTNEED, FREE, DONTFORK, DOFORK)")
            if advice in (MADV_WILLNEED,):
                mmap_down_read(mo(mm_id) + T.M_MMAP_LOCK)
                try:
                    for v in between(mm_id, start, end):
                        f = q[(v + V.V_FILE) >> 3]
                        if f:
                            lo, hi = max(start, q[(v + V.V_START) >> 3]), min(end, q[(v + V.V_END) >> 3])
                            base = q[(v + V.V_PGOFF) >> 3] + ((lo - q[(v + V.V_START) >> 3]) >> PAGE_SHIFT)
                            for k in range((hi - lo) >> PAGE_SHIFT):
                                files.get_page(f - 1, base + k)
                finally:
                    mmap_up_read(mo(mm_id) + T.M_MMAP_LOCK)
                return
            if reap_wait is not None and reap_wait <= 0:
                if not mmap_write_trylock(mm_id):
                    return
            else:
                mmap_write_lock(mm_id)
            try:
                vs = between(mm_id, start, end)
                if not vs:
                    raise VMError("ENOMEM", f"{call}: nothing is mapped there")
                if advice in (MADV_DONTNEED, MADV_FREE):
                    for v in vs:
                        lo, hi = max(start, q[(v + V.V_START) >> 3]), min(end, q[(v + V.V_END) >> 3])
                        if advice == MADV_DONTNEED:
                            dontneed(mm_id, v, lo, hi, reap_wait)
                        elif not q[(v + V.V_FLAGS) >> 3] & V.VM_SHARED and not q[(v + V.V_FILE) >> 3]:
                            lazyfree(mm_id, v, lo, hi)
                    return
                set_bits = {MADV_RANDOM: V.VM_RAND_READ, MADV_SEQUENTIAL: V.VM_SEQ_READ, MADV_DONTFORK: V.VM_DONTCOPY,
                            MADV_NORMAL: 0, MADV_DOFORK: 0}[advice]
                clr_bits = {MADV_RANDOM: V.VM_SEQ_READ, MADV_SEQUENTIAL: V.VM_RAND_READ, MADV_NORMAL:
                            V.VM_RAND_READ | V.VM_SEQ_READ, MADV_DONTFORK: 0, MADV_DOFORK: V.VM_DONTCOPY}[advice]
                split_edges(mm_id, vs, start, end)
                for v in vs:
                    start_write(mm_id, v)
                    q[(v + V.V_FLAGS) >> 3] = (q[(v + V.V_FLAGS) >> 3] & ~clr_bits & _U64) | set_bits
                merge_all(mm_id, vs)
            finally:
                mmap_write_unlock(mm_id)
                rcu.poll()

        def dontneed(mm_id: int, v: int, lo: int, hi: int, reap_wait: float | None = None) -> None:
            """MADV_DONTNEED: zap; private memory then reads as zero (anonymous) or as the
            file again (private file): the top object's pages there go, and a ZERO
            marker hides what a backing object holds (anonymous).

            A private VMA is write-locked first (vma_start_write: waits for the faults
            inside it, turns later per-VMA faults to mmap_lock, held for write here).
            Linux zaps under the VMA's read lock and a fault racing it is settled under
            the PTE lock (pte_same), because its anonymous folios live in no tree; here
            the zapped folios stay in the object's tree until page_remove, so a fault
            between the two would map a zapped folio (old data) that then leaves the
            tree while mapped.  Faults into other VMAs of the object, and per-VMA faults
            elsewhere in the mm, go on (page_remove's batches let them take the object
            lock).  A shared mapping's zap removes nothing from its object: no lock.
            With `reap_wait` (the OOM reaper) a VMA a fault stays inside is skipped."""
            if not q[(v + V.V_FLAGS) >> 3] & V.VM_SHARED:
                if reap_wait is None:
                    start_write(mm_id, v)
                elif not start_write_within(mm_id, v, reap_wait):
                    return
            T.update_hiwater_rss(arena, mo(mm_id))          # zap_page_range_single_batched
            gr = memory.gather_begin(mm_id)                 # robust mode: the gathered pages logged
            g = memory.mmu_gather(mm_id, gr)
            memory.zap_range(mm_id, lo, hi, g)
            g.finish()
            memory.gather_end(gr)
            o = q[(v + V.V_OBJECT) >> 3]
            if not o or q[(v + V.V_FLAGS) >> 3] & V.VM_SHARED:
                return
            first = q[(v + V.V_PGOFF) >> 3] + ((lo - q[(v + V.V_START) >> 3]) >> PAGE_SHIFT)
            n = (hi - lo) >> PAGE_SHIFT
            if not q[(o + O_BACKING) >> 3]:               # (none can appear: mmap_lock is held)
                objs.page_remove(o, first, first + n)
                return
            # Hide inherited copies (zeros / the file): the holes first, then o's own
            # pages replaced by ZERO markers -- never a hole between two holds, which a
            # collapse on another CPU (the fork child exiting) would fill from the
            # backing with the data this discards.
            objs.mark_zero(o, first, first + n)
            objs.page_remove(o, first, first + n, zero=True)

        def start_write_within(mm_id: int, v: int, wait: float) -> bool:
            """vma_start_write tried until `wait` seconds have passed (IPIs answered)."""
            deadline = time.monotonic() + wait
            while not vmas.start_write_trylock(mm_id, v):
                if time.monotonic() >= deadline:
                    return False
                hook = W.wait_hook()
                if hook is not None:
                    hook()
                time.sleep(0.0005)
            return True

        def lazyfree(mm_id: int, v: int, lo: int, hi: int) -> None:
            """MADV_FREE: clean and old PTEs, pages marked lazily freeable (reclaim may
            drop them while clean; a write makes them dirty again)."""
            T.update_hiwater_rss(arena, mo(mm_id))          # madvise_free_single_vma
            n = memory.mkclean_range(mm_id, lo, hi, q[(v + V.V_OBJECT) >> 3])
            q[ev + VE.PGLAZYFREE] += n

        # ------------------------------------------------------------ mlock
        def mlock(mm_id: int, start: int, length: int, on: bool = True) -> None:
            end = check_range("mlock" if on else "munlock", start, length, mm_id)
            mmap_write_lock(mm_id)
            try:
                vs = between(mm_id, start, end)
                a = start
                for v in vs:
                    if q[(v + V.V_START) >> 3] > a:
                        raise VMError("ENOMEM", f"mlock: [{a:#x}, {q[(v + V.V_START) >> 3]:#x}) is not mapped")
                    a = q[(v + V.V_END) >> 3]
                if a < end:
                    raise VMError("ENOMEM", f"mlock: [{a:#x}, {end:#x}) is not mapped")
                split_edges(mm_id, vs, start, end)
                m = mo(mm_id)
                for v in vs:
                    start_write(mm_id, v)
                    fl = q[(v + V.V_FLAGS) >> 3]
                    if on and not fl & V.VM_LOCKED:
                        q[(v + V.V_FLAGS) >> 3] = fl | V.VM_LOCKED
                        q[(m + T.M_LOCKED_VM) >> 3] += npages(v)
                    elif not on and fl & V.VM_LOCKED:
                        q[(v + V.V_FLAGS) >> 3] = fl & ~V.VM_LOCKED_MASK & _U64
                        q[(m + T.M_LOCKED_VM) >> 3] -= npages(v)
                merge_all(mm_id, vs)
            finally:
                mmap_write_unlock(mm_id)
            if on:
                n = populate(mm_id, start, end)
                memory.mlock_range(mm_id, start, end, True)
                q[ev + VE.UNEVICTABLE_PGS_MLOCKED] += n
            else:
                n = memory.mlock_range(mm_id, start, end, False)
                q[ev + VE.UNEVICTABLE_PGS_MUNLOCKED] += n

        self.mmap, self.munmap, self.brk, self.mprotect, self.mremap = mmap, munmap, brk, mprotect, mremap
        self.madvise, self.mlock, self.populate = madvise, mlock, populate
        self.mmap_write_lock, self.mmap_write_unlock = mmap_write_lock, mmap_write_unlock
        self.mmap_write_downgrade, self.mmap_read_unlock = mmap_write_downgrade, mmap_read_unlock
        self.do_munmap_locked, self.unmap_vmas, self.vm_stat_account = do_munmap_locked, unmap_vmas, vm_stat_account
        self.link, self.unlink, self.mmap_base = link, unlink, mmap_base
        # VMA-structure helpers for other mm code (mm/numa's mbind: split at the range's
        # edges, change the VMAs, merge back -- as mprotect_fixup / mbind_range do)
        self.split, self.split_edges, self.merge_all = split, split_edges, merge_all
        self.merge_finish, self.move_finish = merge_finish, move_finish
        self.split_finish, self.mmap_finish, self.brk_settle = split_finish, mmap_finish, brk_settle
        self.munmap_finish = munmap_finish
