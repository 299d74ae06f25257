"""One simulated CPU's view of virtual memory: its MMU, its current task, the system calls.

Models: what a CPU brings to the VM in Linux -- `current` and its mm (CR3), the TLB, the
fault entry -- composed from the subsystems of this package.  Unit: one simulated CPU
in one process (a worker, the coordinator acting as CPU 0 after the run, a test).

API (`VM(arena, cpu)`; the calls act for the task running on this CPU):
  tasks       task_create(comm, mm=-1, new_mm=True) -> tid   switch_to(tid)
              fork() -> child tid   exit(tid=-1)   reap(tid) -> exit status (frees a zombie)
              current_task() / current_mm()
  memory      mmap(addr, len, prot, flags, file=-1, offset=0) -> addr    munmap(addr, len)
              mprotect  mremap  madvise  brk  mlock / munlock
  access      load(va, n) -> bytes   store(va, data)   load64(va)   store64(va, v)
              (through the MMU: TLB, walk, faults; SegmentationFault on SIGSEGV)
              task_work(): deferred work of the task at a batch boundary (VM.ext hook)
  files       file_create(name, size, seed=0, path=None) -> fid   file_lookup(name)
  teardown    leave(): answer pending IPIs, stop being a shootdown target, flush RCU.
  kernel      `kernel` (mm/vm/kernel.py KernelCpu, None without vmalloc): vmalloc, the kernel's
              loads and stores, kernel stacks -- every task gets its VMAP_STACK stack when
              created (task_create, fork) and gives it back when it exits.
  polling     poll(): IPIs and due RCU callbacks (between operations);
              park_poll(): IPIs only (parked at a pause barrier: memory must not change)
The handle installs its IPI handler as this process's lock-wait hook (sync/waithook.py):
a worker is one simulated CPU, so the hook is this CPU's.  Tests that drive several
CPUs from one process call `make_current()` on the CPU they are about to use.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aerosync.arena import layout as L
from aerosync.mm import intent as I
from aerosync.mm.pmm.gfp import GFP_KERNEL
from aerosync.mm.pmm.page_alloc import MM
from aerosync.mm.slab.slub import Slub
from aerosync.mm.vm import filemap as FM
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.fork import Fork
from aerosync.mm.vm.kernel import KernelCpu
from aerosync.mm.vm.memory import Memory, new_ext
from aerosync.mm.vm.mmap import Mmap
from aerosync.mm.vm.mmu import Mmu
from aerosync.mm.vm.pgtable import PageTables
from aerosync.mm.vm.rmap import Rmap
from aerosync.mm.vm.task import task_alloc, task_set_state
from aerosync.mm.vm.tlb import Tlb
from aerosync.mm.vm.vm_object import VmObjects
from aerosync.mm.vm.vma import VmaOps
from aerosync.mm.vm.vmalloc import vmalloc_ready
from aerosync.sync import waithook as W
from aerosync.sync.objlock import ObjRWSem, ObjSpinLock
from aerosync.sync.rcu import Rcu

__all__ = ["VM"]

_OP_TASK_CREATE, _OP_TASK_EXIT = I.OP["vm_task_create"], I.OP["vm_task_exit"]
_OP_XA_NODES = I.OP["vm_xa_nodes"]


class VM:
    """Simulated CPU `cpu`'s virtual-memory handle (see the module docstring)."""

    def __init__(self, arena: Any, cpu: int, mm: Any = None) -> None:
        T.require_vm(arena)
        self.arena, self.cpu = arena, cpu
        q = arena.u64
        hdr = arena.off("vmhdr")

        def H(f: int) -> int:
            return q[(hdr + f) >> 3]

        self.levels = H(T.H_LEVELS)
        self.mm = mm if mm is not None else MM(arena, cpu)
        self.rcu = Rcu(arena, cpu)
        self.locks = SimpleNamespace(
            mmap_lock=ObjRWSem(arena, H(T.H_CLS_MMAP), cpu), vma_lock=ObjRWSem(arena, H(T.H_CLS_VMA), cpu),
            obj_lock=ObjSpinLock(arena, H(T.H_CLS_OBJ), cpu), ptl=ObjSpinLock(arena, H(T.H_CLS_PTL), cpu),
            ptlock=ObjSpinLock(arena, H(T.H_CLS_PTLOCK), cpu))
        self.slub = Slub(arena, cpu, mm=self.mm)
        vma_cache = self.slub.cache(H(T.H_CACHE_VMA))
        obj_cache = self.slub.cache(H(T.H_CACHE_OBJ))
        maple_cache = self.slub.cache(H(T.H_CACHE_MAPLE))
        xa_cache = self.slub.cache(H(T.H_CACHE_XA))
        self.pt = PageTables(arena, cpu, self.mm, self.locks.ptl, self.levels)
        self.tlb = Tlb(arena, cpu)
        self.xa = _xarray(arena, xa_cache, self.rcu, self.mm)
        self.objs = VmObjects(arena, cpu, self.mm, obj_cache, self.xa, self.locks.obj_lock, self.rcu)
        self.files = FM.Filemap(arena, cpu, self.mm, self.objs)
        self.vmas = VmaOps(arena, cpu, vma_cache, maple_cache, self.rcu, self.locks.vma_lock)
        self.cur = [0, 0]                       # [task id, mm id] of the task running here
        self.ext = new_ext()                    # subsystems plug in here (memory.py: Memory)
        self.files.ext = self.ext
        self.objs.ext = self.ext                # obj_free (mm/numa's shared policies)
        self.memory = Memory(arena, cpu, self.mm, self.pt, self.tlb, self.objs, self.files, self.locks, self.rcu,
                             self.vmas.find_vma, self.vmas.load, self.cur, self.ext)
        self.mmu = Mmu(arena, cpu, self.tlb, self.levels, self.memory.do_user_addr_fault)
        self.sys = Mmap(arena, cpu, self.vmas, self.objs, self.memory, self.files, self.locks, self.tlb, self.rcu,
                        self.pt)
        self.rmap = Rmap(arena, cpu, self.pt, self.objs, self.locks, self.rcu)
        self.forks = Fork(arena, cpu, self.pt, self.vmas, self.objs, self.memory, self.sys, self.tlb, self.rcu)
        self.kernel = KernelCpu(self) if vmalloc_ready(arena) else None
        self.load, self.store, self.load64, self.store64 = (self.mmu.load, self.mmu.store, self.mmu.load64,
                                                            self.mmu.store64)
        self.task = -1
        self._c_task = (T.vmcpu_off(arena, cpu) + T.C_TASK) >> 3   # this CPU's C_TASK word (mm_types)
        self.rcu.wait_hook = self.tlb.handle_ipi
        self.make_current()
        self.tlb.online()
        from aerosync.mm.reclaim.reclaim import attach  # LRU, swap, reclaim hooks (mm/reclaim)

        self.reclaim = attach(self)

    # ------------------------------------------------------------------ this CPU
    def make_current(self, thread_only: bool = False) -> None:
        """Lock waits of this thread (and, unless thread_only, of the whole process)
        answer this CPU's IPIs from now on."""
        W.set_wait_hook(self.tlb.handle_ipi, thread_only)

    def poll(self) -> None:
        """Between operations: answer IPIs and run finished RCU callbacks."""
        self.tlb.handle_ipi()
        if self.rcu.nr_pending():
            self.rcu.poll()

    def park_poll(self) -> None:
        """While parked at a pause barrier (a live check, the stop): answer IPIs only.
        A parked CPU must not change memory under the checker that believes it quiescent,
        and its RCU callbacks would (VMA records, tree nodes and slab objects freed); they
        run at its next operation or poll() after the pause."""
        self.tlb.handle_ipi()

    def current_task(self) -> int:
        return self.task

    def current_mm(self) -> int:
        return self.cur[1] if self.task >= 0 else -1

    def _mm_of(self, tid: int) -> int:
        return self.arena.u64[(T.task_off(self.arena, tid) + T.T_MM) >> 3] - 1

    # ------------------------------------------------------------------ tasks
    def task_create(self, comm: str, mm: int = -1, new_mm: bool = True) -> int:
        """A new task: with a fresh address space (new_mm), or sharing `mm` as a thread
        (mm_users + 1).  Robust mode logs it (vm_task_create: 1 mm claimed, 2 the mm
        live with our user -- a1 the task + 1 from its claim on --, 3 the task record
        made, its kernel stack on the way; mm/vm/recover.py undoes it)."""
        lg = self.mm.log if L.robust_mode(self.arena.config) else None
        r = lg.begin(_OP_TASK_CREATE) if lg is not None else -1
        q = self.arena.u64
        try:
            if mm < 0 and new_mm:
                mm = self.forks.mm_alloc(r)
            elif mm >= 0:
                self.forks.mmget(mm)
                if r >= 0:
                    q[r + 1] = mm
                    q[r + 7] = 2
            tid = task_alloc(self.arena, comm, mm, named=r + 2 if r >= 0 else -1)
            if r >= 0:
                q[r + 7] = 3
            if self.kernel is not None:
                self.kernel.task_created(tid)
            if self.task < 0:                          # this CPU's, until switch_to runs it
                q[self._c_task] = tid + 1
            return tid
        finally:
            if r >= 0:
                lg.end(r)

    def switch_to(self, tid: int) -> None:
        """context_switch(): `tid` runs on this CPU now (switch_mm to its mm)."""
        a, q = self.arena, self.arena.u64
        if self.task >= 0 and self.task != tid:
            q[self._c_task] = self.task + 1          # until tid's T_CPU is stored
            to = T.task_off(a, self.task)
            if a.u32[(to + T.T_STATE) >> 2] == T.TASK_RUNNING:
                task_set_state(a, self.task, T.TASK_STOPPED)
            q[(to + T.T_CPU) >> 3] = 0
        o = T.task_off(a, tid)
        mm_id = q[(o + T.T_MM) >> 3] - 1
        q[(o + T.T_CPU) >> 3] = self.cpu + 1
        task_set_state(a, tid, T.TASK_RUNNING)
        q[self._c_task] = 0                          # (after T_CPU names this CPU)
        self.task = tid
        self.cur[0], self.cur[1] = tid, mm_id
        if mm_id > 0:
            self.tlb.switch_mm(mm_id)
            self.mmu.set_root(q[(T.mm_off(a, mm_id) + T.M_PGD) >> 3], self.tlb.key_base)
        else:
            self.tlb.enter_lazy()
            self.mmu.set_root(0, 0)

    def fork(self, comm: str | None = None) -> int:
        """fork(): a child task with a copy of the current task's address space."""
        a, q = self.arena, self.arena.u64
        parent = self.task
        pmm = self.cur[1]
        # robust mode: a vm_task_create record, as task_create's (dup_mm logs its own)
        lg = self.mm.log if L.robust_mode(a.config) else None
        r = lg.begin(_OP_TASK_CREATE) if lg is not None else -1
        try:
            child_mm = self.forks.dup_mm(pmm)
            if r >= 0:
                q[r + 1] = child_mm
                q[r + 7] = 2
            po = T.task_off(a, parent)
            pcomm = bytes(a.u8[po + T.T_COMM : po + T.T_COMM + 16]).rstrip(b"\0").decode()
            child = task_alloc(a, comm or pcomm, child_mm, ppid=q[(po + T.T_PID) >> 3],
                               named=r + 2 if r >= 0 else -1)
            if r >= 0:
                q[r + 7] = 3
            # copy_process(): the child inherits the task's memory policy (mpol_dup; policy
            # ids are immutable values, mm/numa/numa_types.py)
            q[(T.task_off(a, child) + T.T_MEMPOLICY) >> 3] = q[(po + T.T_MEMPOLICY) >> 3]
            if self.kernel is not None:
                self.kernel.task_created(child)
            return child
        finally:
            if r >= 0:
                lg.end(r)

    def exit(self, tid: int = -1, signal: int = 0) -> None:
        """do_exit(): the task's mm reference goes (the last user tears it down), the
        task becomes a zombie; this CPU goes lazy if it was running it."""
        a, q = self.arena, self.arena.u64
        tid = self.task if tid < 0 else tid
        o = T.task_off(a, tid)
        mm_id = q[(o + T.T_MM) >> 3] - 1
        if signal:
            q[(o + T.T_EXIT_SIGNAL) >> 3] = signal
        if tid == self.task:
            q[self._c_task] = tid + 1                # until the next switch_to
            self.tlb.enter_lazy()
            self.mmu.set_root(0, 0)
            self.task = -1
            self.cur[0], self.cur[1] = 0, 0
        # robust mode: a vm_task_exit record (0 exiting, 1 its stack released -- the mm's
        # user goes next; 2 done): recovery finishes the exit and takes its family
        lg = self.mm.log if L.robust_mode(a.config) else None
        r = lg.begin(_OP_TASK_EXIT, tid, max(mm_id, 0)) if lg is not None else -1   # (no mm: 0, never put)
        try:
            q[(o + T.T_MM) >> 3] = 0
            q[(o + T.T_CPU) >> 3] = 0
            task_set_state(a, tid, T.TASK_ZOMBIE)
            if self.kernel is not None:
                self.kernel.task_released(tid)      # the dead task's stack (put_task_stack)
            if r >= 0:
                q[r + 7] = 1
            if mm_id > 0:
                self.forks.mmput(mm_id)
            if r >= 0:
                q[r + 7] = 2
        finally:
            if r >= 0:
                lg.end(r)

    def reap(self, tid: int) -> dict[str, Any]:
        """wait4()/release_task(): collect a zombie's exit status, free its record."""
        from aerosync.mm.vm.task import task_free, task_info

        info = task_info(self.arena, tid)
        if self.arena.u32[(T.task_off(self.arena, tid) + T.T_STATE) >> 2] != T.TASK_ZOMBIE:
            raise T.VMError("ECHILD", f"reap(task {tid}): not a zombie ({info['state']})")
        if self.kernel is not None:
            self.kernel.task_released(tid)
        task_free(self.arena, tid)
        return info

    def task_work(self) -> None:
        """The running task returns to user space: its deferred work runs here, on its
        own CPU (Linux's task_work_run; mm/numa's NUMA balancing scan when [numa]
        balancing is on).  Workloads call it between batches."""
        tw = self.ext.task_work
        if tw is not None:
            tw()

    # ------------------------------------------------------------------ system calls
    def mmap(self, addr: int, length: int, prot: int, flags: int, file: int = -1, offset: int = 0) -> int:
        return self.sys.mmap(self.cur[1], addr, length, prot, flags, file, offset)

    def munmap(self, addr: int, length: int) -> None:
        self.sys.munmap(self.cur[1], addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self.sys.mprotect(self.cur[1], addr, length, prot)

    def mremap(self, old: int, old_len: int, new_len: int, flags: int = 0, new_addr: int = 0) -> int:
        return self.sys.mremap(self.cur[1], old, old_len, new_len, flags, new_addr)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self.sys.madvise(self.cur[1], addr, length, advice)

    def brk(self, newbrk: int) -> int:
        return self.sys.brk(self.cur[1], newbrk)

    def mlock(self, addr: int, length: int) -> None:
        self.sys.mlock(self.cur[1], addr, length, True)

    def munlock(self, addr: int, length: int) -> None:
        self.sys.mlock(self.cur[1], addr, length, False)

    def file_create(self, name: str, size: int, seed: int = 0, path: str | None = None) -> int:
        return FM.file_create(self.arena, self.objs, name, size, seed, path)

    def file_lookup(self, name: str) -> int:
        return FM.file_lookup(self.arena, name)

    # ------------------------------------------------------------------ teardown
    def leave(self) -> None:
        """This CPU stops: pending IPIs answered, no longer a shootdown target, every
        deferred free run (so nothing this CPU queued is lost)."""
        if self.kernel is not None:
            self.kernel.leave()
        if self.reclaim is not None:
            self.reclaim.leave()
        self.tlb.leave()
        self.rcu.barrier()
        self.files.close()
        if W.wait_hook() == self.tlb.handle_ipi:
            W.set_wait_hook(None)


def _xarray(arena: Any, cache: Any, rcu: Any, mm: Any) -> Any:
    """The objects' page trees over the "radix_tree_node" cache (nodes freed through RCU).
    Robust mode: the nodes one store allocates are in a vm_xa_nodes record (a0..a5,
    step = how many) until the store publishes them -- a CPU killed while allocating
    the second node of a new path would leak the first (mm/vm/recover.py frees them)."""
    from aerosync.mm.slab.slab_common import VBASE
    from aerosync.mm.vm.vm_object import PageTrees

    phys = arena.off("physmem")
    alloc, free = cache.alloc, cache.free
    track = None
    lg = mm.log if L.robust_mode(arena.config) else None
    if lg is not None:
        q, begin, end = arena.u64, lg.begin, lg.end
        held: dict[int, int] = {}                      # tree root -> its store's open record
        # (one store per tree at a time -- under the object's lock -- but a store into
        # another tree may nest inside one: direct reclaim in a node's allocation)

        def track(root: int, off: int) -> None:
            r = held.get(root, -1)
            if off < 0:
                if r >= 0:
                    del held[root]
                    end(r)
                return
            if r < 0:
                r = held[root] = begin(_OP_XA_NODES)
            n = q[r + 7]
            if n < 6:                                  # (a store needs at most 6 below 2^36)
                q[r + 1 + n] = off
                q[r + 7] = n + 1

    def node_alloc() -> int:
        a = alloc()
        return phys + (a - VBASE) if a else -1

    def node_free(off: int) -> None:
        free(VBASE + (off - phys))

    def node_rcu_free(off: int) -> None:
        rcu.call_rcu(node_free, off)

    def nomem() -> bool:
        """xas_nomem(): one node allocated with reclaim allowed and given back at once --
        its slab stays this CPU's, so the store retried under the lock finds it (a
        node kept across the unlock instead would be one more item to log)."""
        a = alloc(GFP_KERNEL)
        if not a:
            return False
        free(a)
        return True

    return PageTrees(arena, node_alloc, node_free, node_rcu_free, track, nomem)
