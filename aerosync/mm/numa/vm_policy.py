"""Policies of process memory: task policies, VMA policies, shared policies, and the
page a fault gets from them.

Models: mm/mempolicy.c for process memory -- do_set_mempolicy, do_get_mempolicy,
do_mbind with queue_pages_range (MPOL_MF_STRICT / MOVE / MOVE_ALL) and mbind_range,
set_mempolicy_home_node, get_task_policy, __get_vma_policy / get_vma_policy (the
interleave index: the page's offset in the VMA, vm_pgoff + (addr - vm_start) >>
PAGE_SHIFT), vma_alloc_folio / alloc_pages_mpol / policy_nodemask / interleave_nodes /
weighted_interleave_nodes, the shared policy of shmem (mpol_shared_policy_lookup,
shared_policy_replace, mpol_free_shared_policy), mpol_misplaced (for NUMA balancing).
Unit: one simulated CPU's handle (closures bound once), acting for the task that runs
on it (VM.cur).

Where a policy lives (numa_types.py draws the records; a policy is an interned value,
referred to by id + 1, 0 = none):
  task      mm_types T_MEMPOLICY: current->mempolicy (fork copies it, vm.py)
  VMA       vma V_POLICY: vma->vm_policy (vm_area_dup copies it; a VMA merge requires
            equal ids, mmap.py's mergeable -- mpol_equal)
  shared    MAP_SHARED anonymous memory (shmem): a list of ranges of page indices in the
            object (vm_object's word 24), each with a policy; every mapping of the
            object sees it, whatever VMA it goes through, and it lives as long as the
            object (the VM's obj_free hook drops it)
  default   none of the above: the local node (preferred_node_policy[node], MPOL_F_MOF |
            MPOL_F_MORON, so NUMA balancing may move the page)

The fault's page (ext.alloc_folio(vma, va, idx), memory.py): the VMA's (or shared)
policy, else the task's, else local -- first touch: the node of the CPU that faults.
Interleave uses the interleave index of the page, so where a page of a range goes does
not depend on the order its pages are touched; task allocations without a VMA (page
cache) take the task's il_prev round robin.  The default path is a few loads and the
bare allocator: no policy object is built per fault.  Every user folio's last_cpupid
(struct page P_SPARE) starts unset (0) here.

Locking: set_mempolicy writes only the calling task's words (the task runs here);
mbind takes the mm's mmap_lock for write and write-locks each VMA it changes, splits
and merges with mmap.py's helpers, and migrates the pages it queued before releasing
it (so no fault, fork or munmap of the range runs meanwhile).  Shared-policy lists are
changed and read under the "mpol_table_lock" slot lock (the table's), which nests
inside mmap_lock and an object's lock holders never take it (only the fault path, which
holds no object lock at that point, and mbind).

Errors: VMError(errno name, message naming the call and argument), as mm/vm's calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa import numa_types as N
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.gfp import __GFP_DIRECT_RECLAIM as _GFP_DIRECT_RECLAIM
from aerosync.mm.pmm.gfp import __GFP_NOFAIL as _GFP_NOFAIL
from aerosync.mm.pmm.gfp import __GFP_NOWARN as _GFP_NOWARN
from aerosync.mm.pmm.gfp import __GFP_RETRY_MAYFAIL, GFP_HIGHUSER_MOVABLE
from aerosync.mm.pmm.page import P_SPARE
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.mm_types import VMError
from aerosync.mm.vm.pgtable import _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_SPECIAL, PTE_PFN_MASK
from aerosync.params import MAX_NUMNODES, PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE
from aerosync.sync.spinlock import SpinLock

__all__ = ["VmPolicy", "Policy", "O_SHARED_POLICY", "DEFAULT_POLICY", "MIGRATE_GFP", "policy_text"]

O_SHARED_POLICY = 24            # vm_object word: first shared-policy node + 1 (vm_object.py)
_P_OR_NONE = _PAGE_PRESENT | _PAGE_PROTNONE
_MOF_DEFAULT = MP.MPOL_F_MOF | MP.MPOL_F_MORON
MIGRATE_GFP = GFP_HIGHUSER_MOVABLE | __GFP_RETRY_MAYFAIL
Policy = tuple[int, int, int, int, int]        # (mode, flags, nodes, user nodemask, home node or -1)
DEFAULT_POLICY: Policy = (MP.MPOL_LOCAL, _MOF_DEFAULT, 0, 0, -1)   # preferred_node_policy[node]


class VmPolicy:
    """Simulated CPU `vm.cpu`'s policy operations (see the module docstring).

      decode(pid1) -> Policy                     a published record (cached, immutable)
      intern(mode, flags, nodes, user, home=-1) -> pid1
      task_policy(tid) -> pid1 (0 = none)        task_rec(tid) -> numa task record offset
      get_vma_policy(vma, va) -> (pid1, ilx)     the policy a fault at va uses (0: task's)
      policy_node(pol, ilx, tid) -> node the policy picks for an allocation
      alloc_folio(vma, va, idx) -> pfn | -1      memory.py's ext.alloc_folio
      set_mempolicy(mode, nodes=0)   get_mempolicy(flags=0, addr=0) -> (mode | flags, nodes)
      mbind(start, len, mode, nodes=0, flags=0)  set_mempolicy_home_node(start, len, node)
      sp_lookup(obj, idx) -> pid1   sp_free(obj)  (the shared policy of an object)
    `migrate` (migrate.py's Migrate) is set by numa_vm.attach: mbind's MPOL_MF_MOVE needs it.
    """

    def __init__(self, vm: Any) -> None:
        arena, cpu = vm.arena, vm.cpu
        self.arena, self.cpu, self.vm = arena, cpu, vm
        q, u8, u32, at = arena.u64, arena.u8, arena.u32, arena.atomic
        base = arena.off("numa")
        hq = base >> 3
        nr_nodes = q[hq + (N.H_NR_NODES >> 3)]
        max_policies = q[hq + (N.H_MAX_POLICIES >> 3)]
        pol_base = N.policy_off(arena, 0)
        sp_base = N.sp_off(arena, 0)
        trec = q[hq + (N.H_TASK_REC >> 3)]
        task_numa_base = N.task_numa_off(arena, 0)
        self.mem_mask = q[hq + (N.H_MEM_NODES >> 3)]
        self.nr_nodes = nr_nodes
        weights = tuple(u8[base + N.H_WEIGHTS + n] or 1 for n in range(MAX_NUMNODES))
        self.weights = weights
        lock = SpinLock(arena, q[hq + (N.H_LOCK_SLOT >> 3)], cpu)
        lock_acquire, lock_release = lock.acquire, lock.release
        self.lock = lock
        mm = vm.mm
        ap, anm = mm.alloc_pages, mm.alloc_pages_nodemask
        mynid = mm.nid
        self.nid = mynid
        task_base = arena.off("vmtask")
        cur = vm.cur
        PM = arena.off("pagemeta")
        spare4 = (PM + P_SPARE) >> 2
        pnode = PM + 7
        ih = [(Z.stat_off(arena, cpu, nr_nodes) >> 3) + Z.STAT_NUMA + n * 8 + Z.NUMA_INTERLEAVE_HIT
              for n in range(nr_nodes)]
        GFP = GFP_HIGHUSER_MOVABLE
        pm_strip = ~(_GFP_DIRECT_RECLAIM | _GFP_NOFAIL)
        cache: dict[int, Policy] = {}
        self.migrate: Any = None

        # ------------------------------------------------------------ policy records
        def decode(pid1: int) -> Policy:
            p = cache.get(pid1)
            if p is None:
                o = pol_base + (pid1 - 1) * N.POL_REC
                if not 0 < pid1 <= max_policies or not at.load64(o + N.P_USED):
                    raise VMError("EINVAL", f"cpu{cpu}: policy id {pid1 - 1} is not a published policy")
                w = q[(o + N.P_MODE) >> 3]
                p = (w & 0xFFFF, (w >> 16) & 0xFFFF, q[(o + N.P_NODES) >> 3], q[(o + N.P_USER) >> 3],
                     ((w >> 32) & 0xFFFF) - 1)
                cache[pid1] = p
            return p

        def intern(mode: int, flags: int, nodes: int, user: int, home: int = -1) -> int:
            """The id + 1 of the published policy equal to this one (mpol_equal compares
            mode, flags, home node, the user nodemask when a mode flag keeps it, and the
            nodes), publishing a new record when there is none."""
            want = (mode, flags, nodes, user if flags & (MP.MPOL_F_STATIC_NODES | MP.MPOL_F_RELATIVE_NODES) else 0,
                    home)
            lock_acquire()
            try:
                n = q[hq + (N.H_NR_POLICIES >> 3)]
                for i in range(n):
                    p = decode(i + 1)
                    if (p[0], p[1], p[2], p[3] if p[1] & (MP.MPOL_F_STATIC_NODES | MP.MPOL_F_RELATIVE_NODES) else 0,
                            p[4]) == want:
                        return i + 1
                if n >= max_policies:
                    raise VMError("ENOMEM", f"cpu{cpu}: {max_policies} distinct memory policies in use "
                                            f"([numa] max_policies); cannot add {MP.mpol_to_str(mode, flags, nodes)}")
                o = pol_base + n * N.POL_REC
                q[(o + N.P_MODE) >> 3] = mode | flags << 16 | (home + 1) << 32
                q[(o + N.P_NODES) >> 3] = nodes
                q[(o + N.P_USER) >> 3] = user
                at.store64(o + N.P_USED, 1)             # published: never changes again
                at.store64(base + N.H_NR_POLICIES, n + 1)
                return n + 1
            finally:
                lock_release()

        # ------------------------------------------------------------ task records
        def task_rec(tid: int) -> int:
            """The task's numa record, (re)initialised when the task record is new
            (init_numa_balancing: scan period = scan delay, no preferred node)."""
            to = task_base + tid * T.TASK_REC
            ro = task_numa_base + tid * trec
            pid = q[(to + T.T_PID) >> 3]
            if q[(to + T.T_NUMA) >> 3] != pid or q[(ro + N.TN_PID) >> 3] != pid:
                arena.u8[ro : ro + trec] = bytes(trec)
                q[(ro + N.TN_PID) >> 3] = pid
                q[(ro + N.TN_IL_PREV) >> 3] = MAX_NUMNODES - 1
                arena.i64[(ro + N.TN_PREF_NID) >> 3] = MP.NUMA_NO_NODE
                q[(ro + N.TN_SCAN_PERIOD) >> 3] = q[hq + (N.H_SCAN_DELAY >> 3)]
                q[(to + T.T_NUMA) >> 3] = pid
            return ro

        def task_policy(tid: int) -> int:
            return q[(task_base + tid * T.TASK_REC + T.T_MEMPOLICY) >> 3]

        # ------------------------------------------------------------ shared policies
        def sp_lookup(obj: int, idx: int) -> int:
            """mpol_shared_policy_lookup(): the policy of the range holding idx (0: none)."""
            if not q[(obj + O_SHARED_POLICY) >> 3]:
                return 0
            lock_acquire()
            try:
                n = q[(obj + O_SHARED_POLICY) >> 3]
                while n:
                    o = sp_base + (n - 1) * N.SP_REC
                    if q[(o + N.S_START) >> 3] > idx:
                        return 0
                    if idx < q[(o + N.S_END) >> 3]:
                        return u32[(o + N.S_POL) >> 2]
                    n = u32[(o + N.S_NEXT) >> 2]
                return 0
            finally:
                lock_release()

        def sp_alloc(start: int, end: int, pid1: int) -> int:
            n = q[hq + (N.H_SP_FREE >> 3)]
            if not n:
                raise VMError("ENOMEM", f"cpu{cpu}: every shared-policy range is in use ([numa] "
                                        f"max_shared_policies)")
            o = sp_base + (n - 1) * N.SP_REC
            q[hq + (N.H_SP_FREE >> 3)] = u32[(o + N.S_NEXT) >> 2]
            q[(o + N.S_START) >> 3], q[(o + N.S_END) >> 3] = start, end
            u32[(o + N.S_POL) >> 2], u32[(o + N.S_NEXT) >> 2] = pid1, 0
            return n

        def sp_put(n: int) -> None:
            o = sp_base + (n - 1) * N.SP_REC
            q[(o + N.S_START) >> 3] = q[(o + N.S_END) >> 3] = 0
            u32[(o + N.S_POL) >> 2] = 0
            u32[(o + N.S_NEXT) >> 2] = q[hq + (N.H_SP_FREE >> 3)]
            q[hq + (N.H_SP_FREE >> 3)] = n

        def sp_replace(obj: int, start: int, end: int, pid1: int) -> None:
            """shared_policy_replace(): [start, end) gets pid1 (0: no policy there); older
            ranges are trimmed, split or removed.  The list stays sorted and disjoint."""
            lock_acquire()
            try:
                ranges = []
                n = q[(obj + O_SHARED_POLICY) >> 3]
                while n:
                    o = sp_base + (n - 1) * N.SP_REC
                    ranges.append((q[(o + N.S_START) >> 3], q[(o + N.S_END) >> 3], u32[(o + N.S_POL) >> 2]))
                    nxt = u32[(o + N.S_NEXT) >> 2]
                    sp_put(n)
                    n = nxt
                out = []
                for s, e, p in ranges:
                    if e <= start or s >= end:
                        out.append((s, e, p))
                        continue
                    if s < start:
                        out.append((s, start, p))
                    if e > end:
                        out.append((end, e, p))
                if pid1:
                    out.append((start, end, pid1))
                out.sort()
                head = 0
                for s, e, p in reversed(out):
                    m = sp_alloc(s, e, p)
                    u32[(sp_base + (m - 1) * N.SP_REC + N.S_NEXT) >> 2] = head
                    head = m
                q[(obj + O_SHARED_POLICY) >> 3] = head
            finally:
                lock_release()

        def sp_free(obj: int) -> None:
            """mpol_free_shared_policy(): the object goes, its ranges go back."""
            if q[(obj + O_SHARED_POLICY) >> 3]:
                sp_replace(obj, 0, 1 << 62, 0)

        def sp_ranges(obj: int) -> list[tuple[int, int, int]]:
            out = []
            lock_acquire()
            try:
                n = q[(obj + O_SHARED_POLICY) >> 3]
                while n and len(out) < 1 << 20:
                    o = sp_base + (n - 1) * N.SP_REC
                    out.append((q[(o + N.S_START) >> 3], q[(o + N.S_END) >> 3], u32[(o + N.S_POL) >> 2]))
                    n = u32[(o + N.S_NEXT) >> 2]
            finally:
                lock_release()
            return out

        # ------------------------------------------------------------ resolution
        def vma_index(vma: int, va: int) -> int:
            return q[(vma + V.V_PGOFF) >> 3] + ((va - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)

        def shared_anon(vma: int) -> bool:
            return bool(q[(vma + V.V_FLAGS) >> 3] & V.VM_SHARED) and not q[(vma + V.V_FILE) >> 3]

        def vma_policy(vma: int, va: int) -> tuple[int, int]:
            """__get_vma_policy(): (policy id + 1 or 0, starting interleave index); shmem
            looks its shared policy up by page index (and starts ilx there)."""
            if shared_anon(vma):
                obj = q[(vma + V.V_OBJECT) >> 3]
                idx = vma_index(vma, va)
                return (sp_lookup(obj, idx) if obj else 0), idx
            return q[(vma + V.V_POLICY) >> 3], 0

        def get_vma_policy(vma: int, va: int) -> tuple[int, int]:
            """get_vma_policy(): the VMA's (or shared) policy, else the task's; for
            interleave the index grows by the page's offset in the VMA."""
            p, ilx = vma_policy(vma, va)
            if not p:
                p = task_policy(cur[0])
            if p and decode(p)[0] in (MP.MPOL_INTERLEAVE, MP.MPOL_WEIGHTED_INTERLEAVE):
                ilx += vma_index(vma, va)
            return p, ilx

        def interleave_nodes(pol: Policy, tid: int) -> int:
            """interleave_nodes() / weighted_interleave_nodes(): the task's round robin."""
            ro = task_rec(tid)
            nodes = pol[2]
            prev = arena.i64[(ro + N.TN_IL_PREV) >> 3]
            if pol[0] == MP.MPOL_WEIGHTED_INTERLEAVE:
                w = q[(ro + N.TN_IL_WEIGHT) >> 3]
                if not w or not nodes >> prev & 1:
                    prev = MP.next_node_in(prev, nodes)
                    arena.i64[(ro + N.TN_IL_PREV) >> 3] = prev
                    w = weights[prev]
                q[(ro + N.TN_IL_WEIGHT) >> 3] = w - 1
                return prev
            nid = MP.next_node_in(prev, nodes)
            arena.i64[(ro + N.TN_IL_PREV) >> 3] = nid
            return nid

        def policy_node(pol: Policy, ilx: int, tid: int) -> int:
            """The node an allocation under pol starts from (policy_nodemask's *nid)."""
            mode = pol[0]
            if mode == MP.MPOL_PREFERRED:
                return MP.first_node(pol[2])
            if mode in (MP.MPOL_BIND, MP.MPOL_PREFERRED_MANY):
                return pol[4] if pol[4] >= 0 else mynid
            if mode == MP.MPOL_INTERLEAVE:
                return interleave_nodes(pol, tid) if ilx < 0 else MP.interleave_nid(pol[2], ilx, mynid)
            if mode == MP.MPOL_WEIGHTED_INTERLEAVE:
                return interleave_nodes(pol, tid) if ilx < 0 else MP.weighted_interleave_nid(pol[2], weights, ilx,
                                                                                            mynid)
            return mynid

        def alloc_pages_mpol(gfp: int, pol: Policy, ilx: int, tid: int) -> int:
            """alloc_pages_mpol() for an order-0 user page (policy_nodemask, the
            preferred-many two passes, bind's nodemask, interleave_hit)."""
            mode = pol[0]
            nid = policy_node(pol, ilx, tid)
            if mode == MP.MPOL_PREFERRED_MANY:
                pfn = anm((gfp | _GFP_NOWARN) & pm_strip, 0, nid, pol[2])
                return pfn if pfn >= 0 else anm(gfp, 0, nid, None)
            if mode == MP.MPOL_BIND:
                return anm(gfp, 0, nid, pol[2])
            pfn = ap(gfp, 0) if nid == mynid else anm(gfp, 0, nid, None)
            if pfn >= 0 and mode in (MP.MPOL_INTERLEAVE, MP.MPOL_WEIGHTED_INTERLEAVE) and \
                    u8[pnode + pfn * PAGE_META_SIZE] == nid:
                q[ih[nid]] += 1
            return pfn

        # the fault path's words, bound once (module attribute lookups cost ~40 ns each)
        i_flags, i_file, i_pol = V.V_FLAGS >> 3, V.V_FILE >> 3, V.V_POLICY >> 3
        vm_shared = V.VM_SHARED
        t_pol = (task_base + T.T_MEMPOLICY) >> 3
        TREC8 = T.TASK_REC >> 3
        # last_cpupid is read only by NUMA balancing's hinting faults: reset it only then
        reset_cpupid = bool(q[hq + (N.H_BALANCING >> 3)])

        def alloc_folio(vma: int, va: int, idx: int) -> int:
            """vma_alloc_folio() (vma != 0) / folio_alloc() under the task policy (page
            cache: vma == 0): the fault's page, last_cpupid unset."""
            if vma:
                vi = vma >> 3
                if q[vi + i_flags] & vm_shared and not q[vi + i_file]:
                    p, ilx = get_vma_policy(vma, va)
                else:
                    p = q[vi + i_pol] or q[t_pol + cur[0] * TREC8]
                    ilx = vma_index(vma, va) if p else 0
            else:
                p = q[t_pol + cur[0] * TREC8]
                ilx = -1
            pfn = ap(GFP, 0) if not p else alloc_pages_mpol(GFP, decode(p), ilx, cur[0])
            if reset_cpupid and pfn >= 0:
                u32[spare4 + (pfn << 4)] = 0            # page_cpupid_reset_last
            return pfn

        self.decode, self.intern, self.task_rec, self.task_policy = decode, intern, task_rec, task_policy
        self.sp_lookup, self.sp_replace, self.sp_free, self.sp_ranges = sp_lookup, sp_replace, sp_free, sp_ranges
        self.vma_policy, self.get_vma_policy, self.policy_node = vma_policy, get_vma_policy, policy_node
        self.alloc_pages_mpol, self.alloc_folio, self.vma_index = alloc_pages_mpol, alloc_folio, vma_index
        self.shared_anon = shared_anon
        self._build_syscalls()

    # ------------------------------------------------------------------ system calls
    def _build_syscalls(self) -> None:
        vm, arena = self.vm, self.arena
        q = arena.u64
        cpu = self.cpu
        cur = vm.cur
        task_base = arena.off("vmtask")
        decode, intern, task_rec = self.decode, self.intern, self.task_rec
        mem_mask = self.mem_mask
        sysm, vmas = vm.sys, vm.vmas

        def einval(call: str, e: MP.PolicyError) -> VMError:
            return VMError("EINVAL", f"cpu{cpu}: {call}: {e.part!r} {e.reason.removesuffix(': EINVAL')}")

        def mm_id_of_current(call: str) -> int:
            mm_id = cur[1] if vm.task >= 0 else -1
            if mm_id <= 0:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: no task with an address space runs here")
            return mm_id

        def make_policy(call: str, mode_arg: int, nodes: int) -> tuple[int, int, int, int]:
            """sanitize_mpol_flags + mpol_new + mpol_set_nodemask: (mode, flags, nodes, user);
            mode MPOL_DEFAULT means "no policy"."""
            if nodes >> MAX_NUMNODES:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: nodemask {nodes:#x} names nodes beyond MAX_NUMNODES "
                                        f"{MAX_NUMNODES}")
            try:
                mode, flags = MP.sanitize_mpol_flags(mode_arg)
                mode = MP.mpol_new_check(mode, flags, nodes)
                if mode in (MP.MPOL_DEFAULT, MP.MPOL_LOCAL):
                    return mode, flags, 0, 0
                eff, user = MP.mpol_set_nodemask(mode, flags, nodes, mem_mask)
            except MP.PolicyError as e:
                raise einval(call, e) from None
            return mode, flags, eff, user

        def set_mempolicy(mode_arg: int, nodes: int = 0) -> None:
            """do_set_mempolicy(): the calling task's policy (MPOL_DEFAULT removes it)."""
            call = f"set_mempolicy(mode={mode_arg:#x}, nodes={nodes:#x})"
            if vm.task < 0:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: no task runs here")
            mode, flags, eff, user = make_policy(call, mode_arg, nodes)
            to = task_base + cur[0] * T.TASK_REC
            ro = task_rec(cur[0])
            if mode == MP.MPOL_DEFAULT:
                q[(to + T.T_MEMPOLICY) >> 3] = 0
                return
            q[(to + T.T_MEMPOLICY) >> 3] = intern(mode, flags, eff, user)
            if mode in (MP.MPOL_INTERLEAVE, MP.MPOL_WEIGHTED_INTERLEAVE):
                arena.i64[(ro + N.TN_IL_PREV) >> 3] = MAX_NUMNODES - 1
                q[(ro + N.TN_IL_WEIGHT) >> 3] = 0

        def get_mempolicy(flags: int = 0, addr: int = 0) -> tuple[int, int]:
            """do_get_mempolicy(): (mode | mode flags, nodemask); with MPOL_F_NODE the
            node instead of the mode (the next interleave node, or the node of the page
            at addr with MPOL_F_ADDR, faulting it in as get_user_pages would)."""
            call = f"get_mempolicy(flags={flags:#x}, addr={addr:#x})"
            if flags & ~(MP.MPOL_F_NODE | MP.MPOL_F_ADDR | MP.MPOL_F_MEMS_ALLOWED):
                raise VMError("EINVAL", f"cpu{cpu}: {call}: unknown flags")
            if flags & MP.MPOL_F_MEMS_ALLOWED:
                if flags & (MP.MPOL_F_NODE | MP.MPOL_F_ADDR):
                    raise VMError("EINVAL", f"cpu{cpu}: {call}: MPOL_F_MEMS_ALLOWED goes alone")
                return 0, mem_mask
            tid = cur[0]
            pid1 = q[(task_base + tid * T.TASK_REC + T.T_MEMPOLICY) >> 3] if vm.task >= 0 else 0
            is_task = True
            if flags & MP.MPOL_F_ADDR:
                mm_id = mm_id_of_current(call)
                mo = T.mm_off(arena, mm_id)
                vm.locks.mmap_lock.down_read(mo + T.M_MMAP_LOCK)
                try:
                    vma = vmas.vma_lookup(mm_id, addr)
                    if not vma:
                        raise VMError("EFAULT", f"cpu{cpu}: {call}: no VMA covers the address")
                    pid1, _ilx = self.vma_policy(vma, addr)
                    is_task = False
                finally:
                    vm.locks.mmap_lock.up_read(mo + T.M_MMAP_LOCK)
            elif addr:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: an address needs MPOL_F_ADDR")
            pol = decode(pid1) if pid1 else None
            if flags & MP.MPOL_F_NODE:
                if flags & MP.MPOL_F_ADDR:
                    mode = self.migrate.lookup_node(cur[1], addr)
                elif is_task and pol is not None and pol[0] == MP.MPOL_INTERLEAVE:
                    mode = MP.next_node_in(arena.i64[(task_rec(tid) + N.TN_IL_PREV) >> 3], pol[2])
                elif is_task and pol is not None and pol[0] == MP.MPOL_WEIGHTED_INTERLEAVE:
                    ro = task_rec(tid)
                    prev = arena.i64[(ro + N.TN_IL_PREV) >> 3]
                    mode = prev if q[(ro + N.TN_IL_WEIGHT) >> 3] else MP.next_node_in(prev, pol[2])
                else:
                    raise VMError("EINVAL", f"cpu{cpu}: {call}: MPOL_F_NODE without MPOL_F_ADDR needs an "
                                            f"interleave task policy")
            else:
                mode = MP.MPOL_DEFAULT if pol is None else pol[0] | (pol[1] & MP.MPOL_MODE_FLAGS)
            if pol is None:
                return mode, 0
            if pol[1] & (MP.MPOL_F_STATIC_NODES | MP.MPOL_F_RELATIVE_NODES):
                return mode, pol[3]
            return mode, (0 if pol[0] == MP.MPOL_LOCAL else pol[2])

        def migratable(vma: int) -> bool:
            """vma_migratable(): not VM_IO / VM_PFNMAP."""
            return not q[(vma + V.V_FLAGS) >> 3] & (V.VM_IO | V.VM_PFNMAP)

        def queue_pages(mm_id: int, vs: list[int], start: int, end: int, nmask: int, flags: int,
                        queued: list[tuple[int, int]]) -> int:
            """queue_pages_range() with MPOL_MF_INVERT: pages mapped in [start, end) whose
            node is not in nmask are queued (address, pfn) for moving when MOVE / MOVE_ALL
            and the VMA is migratable (a page mapped by several PTEs only with MOVE_ALL --
            skipping it is not a failure); otherwise each is a failure.  Returns the
            failures, or -1 for -EIO (STRICT without MOVE and a misplaced page)."""
            nr_failed = 0
            move = flags & (MP.MPOL_MF_MOVE | MP.MPOL_MF_MOVE_ALL)
            strictly = (flags & MP.MPOL_MF_VALID) == MP.MPOL_MF_STRICT
            PM = arena.off("pagemeta")
            for v in vs:
                lo, hi = max(start, q[(v + V.V_START) >> 3]), min(end, q[(v + V.V_END) >> 3])
                ok_vma = migratable(v)
                found: list[tuple[int, int]] = []
                vm.memory.for_each_present(mm_id, lo, hi,
                                           lambda i, e, va, found=found: found.append(
                                               (va, (e & PTE_PFN_MASK) >> PAGE_SHIFT)))
                # for_each_present skips PROT_NONE (NUMA hinting) entries: add them
                for va, e in self.protnone_entries(mm_id, lo, hi):
                    found.append((va, (e & PTE_PFN_MASK) >> PAGE_SHIFT))
                for va, pfn in found:
                    if nmask >> arena.u8[PM + pfn * PAGE_META_SIZE + 7] & 1:
                        continue                          # already where the policy wants it
                    if move and ok_vma:
                        if flags & MP.MPOL_MF_MOVE_ALL or arena.u32[(PM + pfn * PAGE_META_SIZE + 12) >> 2] <= 1:
                            queued.append((va, pfn))
                        continue
                    nr_failed += 1
                    if strictly:
                        return -1
            return nr_failed

        def check_holes(call: str, vs: list[int], start: int, end: int) -> None:
            if not vs:
                raise VMError("EFAULT", f"cpu{cpu}: {call}: nothing is mapped in the range")
            a = start
            for v in vs:
                if q[(v + V.V_START) >> 3] > a:
                    raise VMError("EFAULT", f"cpu{cpu}: {call}: [{a:#x}, {q[(v + V.V_START) >> 3]:#x}) "
                                            "is not mapped")
                a = q[(v + V.V_END) >> 3]
            if a < end:
                raise VMError("EFAULT", f"cpu{cpu}: {call}: [{a:#x}, {end:#x}) is not mapped")

        def apply_policy(mm_id: int, vs: list[int], start: int, end: int, pid1: int) -> None:
            """mbind_range() for every VMA of the range: split at the edges, set the
            policy (vma_replace_policy: the shared policy too for shmem), merge back."""
            sysm.split_edges(mm_id, vs, start, end)
            for v in vs:
                if q[(v + V.V_POLICY) >> 3] == pid1 and not self.shared_anon(v):
                    continue                              # mpol_equal: nothing to do
                vmas.start_write(mm_id, v)
                if self.shared_anon(v) and q[(v + V.V_OBJECT) >> 3]:
                    pg = q[(v + V.V_PGOFF) >> 3]
                    n = (q[(v + V.V_END) >> 3] - q[(v + V.V_START) >> 3]) >> PAGE_SHIFT
                    self.sp_replace(q[(v + V.V_OBJECT) >> 3], pg, pg + n, pid1)
                q[(v + V.V_POLICY) >> 3] = pid1
            sysm.merge_all(mm_id, vs)
            q[(T.mm_off(arena, mm_id) + T.M_VMACACHE_SEQ) >> 3] += 1

        def mbind(start: int, length: int, mode_arg: int, nodes: int = 0, flags: int = 0) -> int:
            """do_mbind(): set the range's VMA policy (splitting and merging VMAs); with
            MPOL_MF_MOVE / MOVE_ALL move the pages that do not follow it, with
            MPOL_MF_STRICT fail (EIO) when a page is or stays misplaced.  Returns the
            number of pages moved."""
            call = f"mbind(start={start:#x}, len={length}, mode={mode_arg:#x}, nodes={nodes:#x}, flags={flags:#x})"
            mm_id = mm_id_of_current(call)
            if flags & ~MP.MPOL_MF_VALID:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: unknown flags")
            if start & (PAGE_SIZE - 1):
                raise VMError("EINVAL", f"cpu{cpu}: {call}: start not page aligned")
            mode, mflags, eff, user = make_policy(call, mode_arg, nodes)
            if mode == MP.MPOL_DEFAULT:
                flags &= ~MP.MPOL_MF_STRICT
            length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            end = start + length
            if length < 0:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: negative length")
            if end == start:
                return 0
            pid1 = 0 if mode == MP.MPOL_DEFAULT else intern(mode, mflags, eff, user)
            sysm.mmap_write_lock(mm_id)
            moved = 0
            try:
                vs = vmas.between(mm_id, start, end)
                if mode == MP.MPOL_DEFAULT:
                    if not vs:
                        raise VMError("EFAULT", f"cpu{cpu}: {call}: nothing is mapped in the range")
                else:
                    check_holes(call, vs, start, end)
                for v in vs:
                    vmas.start_write(mm_id, v)
                queued: list[tuple[int, int]] = []
                nr_failed = 0
                if flags & MP.MPOL_MF_VALID:
                    nr_failed = queue_pages(mm_id, vs, start, end, nodes, flags, queued)
                    if nr_failed < 0:
                        raise VMError("EIO", f"cpu{cpu}: {call}: a page is on a node outside the policy "
                                             "(MPOL_MF_STRICT without MPOL_MF_MOVE)")
                apply_policy(mm_id, vs, start, end, pid1)
                if queued:
                    mig = self.migrate
                    mig.lru_drain()                 # do_mbind: lru_cache_disable()
                    for va, pfn in queued:
                        vma = vmas.vma_lookup(mm_id, va)
                        p, ilx = self.get_vma_policy(vma, va)
                        pol = decode(p) if p else DEFAULT_POLICY
                        # alloc_migration_target_by_mpol: the page the policy would give a
                        # fault at va now (interleave by the same index)
                        r = mig.migrate_page(mm_id, va, pfn,
                                             lambda pol=pol, ilx=ilx: self.alloc_pages_mpol(MIGRATE_GFP, pol, ilx,
                                                                                            cur[0]),
                                             shared_ok=bool(flags & MP.MPOL_MF_MOVE_ALL))
                        if r:
                            nr_failed += 1
                        else:
                            moved += 1
            finally:
                sysm.mmap_write_unlock(mm_id)
                vm.rcu.poll()
            if nr_failed and flags & MP.MPOL_MF_STRICT:
                raise VMError("EIO", f"cpu{cpu}: {call}: {nr_failed} page(s) could not be placed on the policy's "
                                     "nodes (MPOL_MF_STRICT)")
            return moved

        def set_mempolicy_home_node(start: int, length: int, home: int, flags: int = 0) -> None:
            """set_mempolicy_home_node(): bind / preferred-many VMA policies of the range
            start allocating at `home` (EOPNOTSUPP for another mode)."""
            call = f"set_mempolicy_home_node(start={start:#x}, len={length}, home_node={home})"
            mm_id = mm_id_of_current(call)
            if start & (PAGE_SIZE - 1) or flags:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: unaligned start or flags")
            if not 0 <= home < self.nr_nodes:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: no node {home} (nodes 0..{self.nr_nodes - 1})")
            end = start + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
            if end == start:
                return
            sysm.mmap_write_lock(mm_id)
            try:
                for v in vmas.between(mm_id, start, end):
                    old = q[(v + V.V_POLICY) >> 3]
                    if not old:
                        continue
                    p = decode(old)
                    if p[0] not in (MP.MPOL_BIND, MP.MPOL_PREFERRED_MANY):
                        raise VMError("EOPNOTSUPP", f"cpu{cpu}: {call}: the VMA at {q[(v + V.V_START) >> 3]:#x} has "
                                                    f"policy {MP.mpol_to_str(p[0], p[1], p[2])}")
                    apply_policy(mm_id, [v], max(start, q[(v + V.V_START) >> 3]), min(end, q[(v + V.V_END) >> 3]),
                                 intern(p[0], p[1], p[2], p[3], home))
            finally:
                sysm.mmap_write_unlock(mm_id)
                vm.rcu.poll()

        self.set_mempolicy, self.get_mempolicy, self.mbind = set_mempolicy, get_mempolicy, mbind
        self.set_mempolicy_home_node = set_mempolicy_home_node

    # ------------------------------------------------------------------ helpers
    def protnone_entries(self, mm_id: int, start: int, end: int) -> list[tuple[int, int]]:
        """(va, entry) of every NUMA-hinting (PROT_NONE) entry in the range, read under
        each table's lock (memory.for_each_present skips them)."""
        vm = self.vm
        q = self.arena.u64
        out: list[tuple[int, int]] = []
        root = q[(T.mm_off(self.arena, mm_id) + T.M_PGD) >> 3]
        P8 = self.arena.off("physmem") >> 3
        a = start
        while a < end:
            nxt = min(end, (a | ((1 << 21) - 1)) + 1)
            table = vm.pt.walk(root, a)
            if table >= 0:
                lo = vm.pt.ptlock_off(table)
                vm.locks.ptlock.lock(lo)
                try:
                    base = P8 + (table << 9)
                    for va in range(a, nxt, PAGE_SIZE):
                        e = q[base + ((va >> PAGE_SHIFT) & 511)]
                        if e & _P_OR_NONE == _PAGE_PROTNONE and not e & _PAGE_SPECIAL:
                            out.append((va, e))
                finally:
                    vm.locks.ptlock.unlock(lo)
            a = nxt
        return out


def policy_text(decode: Callable[[int], Policy], pid1: int) -> str:
    """mpol_to_str() of a policy id (0: "default")."""
    if not pid1:
        return "default"
    p = decode(pid1)
    return MP.mpol_to_str(p[0], p[1], p[2])
