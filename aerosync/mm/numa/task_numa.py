"""Automatic NUMA balancing: the per-task scanner, NUMA hinting faults, migration
toward the accessing node, the task's preferred node.

Models: kernel/sched/fair.c (task_tick_numa, task_numa_work with its window of
numa_balancing_scan_size_mb, the per-VMA scan sequence, task_scan_min / start / max,
task_numa_fault, task_numa_placement, update_task_scan_period, numa_migrate_preferred,
should_numa_migrate_memory's two-stage filter), mm/mempolicy.c (change_prot_numa,
mpol_misplaced), mm/mprotect.c (change_pte_range with MM_CP_PROT_NUMA and
prot_numa_skip), mm/memory.c (do_numa_page, numa_migrate_check), mm/migrate.c
(migrate_misplaced_folio: numa_pages_migrated), include/linux/mm.h (last_cpupid).
Unit: the task running on this CPU; one page per hinting fault.

How it runs here: `[numa] balancing = true` makes every VM handle this module attaches
to carry the hooks; the scanner runs in the task's own context, from VM.task_work() at
the workload's batch boundary -- Linux's task_work at the return to user space, queued
by the scheduler tick (task_tick_numa: every numa_scan_period of the task's runtime;
here runtime = time since the task first ran this work, the CPU being busy with it).
A scan marks up to numa_balancing_scan_size_mb of present pages (at most 8x that of
address space) PROT_NONE (change_prot_numa: pte_modify to PAGE_NONE with a CAS, then
one TLB flush of the window; numa_pte_updates), resuming where the mm's last scan
stopped (mm->numa_scan_offset) and bumping mm->numa_scan_seq at the end of the address
space.  The next access faults (memory.py calls ext.numa_fault for a PROT_NONE entry):
numa_hint_faults (+ numa_hint_faults_local on the page's own node), mpol_misplaced
decides the target (the default policy moves toward the faulting CPU's node, after
should_numa_migrate_memory: first faults and private faults pass early, later a page
moves only when the last two faults came from the same node), migrate.py moves it
(numa_pages_migrated), and the entry is rebuilt otherwise.  task_numa_fault keeps the
per-node fault statistics; each scan sequence task_numa_placement picks the preferred
node (the one with most decayed memory faults) and adapts the scan period between
task_scan_min and task_scan_max (faster while faults are remote and private).

last_cpupid (struct page P_SPARE of a user folio): 0 = unset (Linux's all-ones), else
(cpu + 1) << LAST__PID_SHIFT | (pid & LAST__PID_MASK); vm_policy.alloc_folio resets it.

Not modelled: numa groups (task_numa_group, shared-fault grouping: a shared fault with
no group migrates, as Linux's "p->numa_group has not been set up yet"), the per-VMA PID
access filter (vma_is_accessed), memory tiering, huge pages.  MAP_SHARED and page-cache
VMAs are not scanned: their pages cannot be moved here (migrate.py).

Task placement (optional, [numa] balancing_placement = true): numa_migrate_preferred,
when the task does not run on its preferred node, leaves the request in this CPU's
handle (placement_pending = tid); the scheduler's part -- here the workload, which owns
which task runs on which CPU -- calls task_numa_migrate(tid, rq_curr) at its next batch
boundary and performs the swap it returns (workers/workloads/numa_access.py: a
handshake standing in for migrate_swap's stopper on both CPUs).  task_numa_migrate and
task_numa_compare follow fair.c for a machine whose CPUs each run one busy task: no
idle CPU and equal loads, so only swaps qualify (imp = the task's weight gain + the
swapped task's, hysteresis for a task on / moving to its preferred node, at least
SMALLIMP); task_weight is the share of memory faults per node (NUMA_DIRECT: no nearby
node score).  Not modelled: moves to idle CPUs, load imbalance checks, numa groups.

Ownership: the task record and the mm's scan fields are written by the task's CPU (the
scan fields after winning the cmpxchg on numa_next_scan, as Linux); page PTEs under
their PTE locks; last_cpupid with an atomic exchange.  Lock order: mmap_lock (read,
trylock: a busy mm skips this scan) -> ptlock.
"""

from __future__ import annotations

import time
from typing import Any

from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa import numa_types as N
from aerosync.mm.numa.vm_policy import DEFAULT_POLICY
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import P_MAPPING, P_SPARE, PAGE_MAPPING_ANON, PG_dirty
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    PAGE_NONE,
    PTE_PFN_MASK,
    pte_modify,
)
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT

__all__ = ["TaskNuma", "TNF_MIGRATED", "TNF_NO_GROUP", "TNF_SHARED", "TNF_FAULT_LOCAL", "TNF_MIGRATE_FAIL",
           "LAST__PID_SHIFT", "cpu_pid_to_cpupid", "cpupid_to_cpu", "cpupid_to_pid", "cpupid_pid_unset",
           "MAX_SCAN_WINDOW", "NUMA_PERIOD_SLOTS", "NUMA_PERIOD_THRESHOLD", "HPAGE_SIZE", "SMALLIMP"]

TNF_MIGRATED, TNF_NO_GROUP, TNF_SHARED, TNF_FAULT_LOCAL, TNF_MIGRATE_FAIL = 0x01, 0x02, 0x04, 0x08, 0x10
LAST__PID_SHIFT = 8
LAST__PID_MASK = (1 << LAST__PID_SHIFT) - 1
MAX_SCAN_WINDOW = 2560                 # MB/s
NUMA_PERIOD_SLOTS, NUMA_PERIOD_THRESHOLD = 10, 7
SMALLIMP = 30                          # fair.c: a smaller NUMA importance moves no task
HPAGE_SIZE = 1 << 21
_P_OR_NONE = _PAGE_PRESENT | _PAGE_PROTNONE


def cpu_pid_to_cpupid(cpu: int, pid: int) -> int:
    return (cpu + 1) << LAST__PID_SHIFT | (pid & LAST__PID_MASK)


def cpupid_to_cpu(cpupid: int) -> int:
    return (cpupid >> LAST__PID_SHIFT) - 1


def cpupid_to_pid(cpupid: int) -> int:
    return cpupid & LAST__PID_MASK


def cpupid_pid_unset(cpupid: int) -> bool:
    return cpupid == 0


class TaskNuma:
    """Simulated CPU `vm.cpu`'s NUMA balancing (closures; see the module docstring):

      task_work()                       VM.task_work's hook: task_tick_numa + task_numa_work
      task_numa_work(force=False) -> PTEs marked   (force: ignore the scan period and delay)
      change_prot_numa(mm_id, vma, start, end) -> PTEs marked
      numa_fault(mm_id, vma, va, table, i, e, write) -> VM_FAULT code   memory.py's hook
      should_numa_migrate_memory(tid, pfn, src_nid, dst_cpu) -> bool
      mpol_misplaced(vma, va, pfn, tid) -> target node or NUMA_NO_NODE
      task_numa_fault(tid, last_cpupid, mem_node, pages, flags)
    """

    def __init__(self, vm: Any, policy: Any, migrate: Any) -> None:
        arena, cpu = vm.arena, vm.cpu
        self.arena, self.cpu, self.vm = arena, cpu, vm
        q, i64, u8, u32, at = arena.u64, arena.i64, arena.u8, arena.u32, arena.atomic
        cas, xchg32 = at.cas64, at.xchg32
        hq = arena.off("numa") >> 3
        self.enabled = enabled = bool(q[hq + (N.H_BALANCING >> 3)])
        self.placement = placement = enabled and bool(q[hq + (N.H_PLACEMENT >> 3)])
        # numa_migrate_preferred's request to the scheduler (the workload): the task id
        # whose preferred node is not the one it runs on, -1 none (this CPU's handle only)
        self.placement_pending = -1
        scan_delay = q[hq + (N.H_SCAN_DELAY >> 3)]
        period_min = q[hq + (N.H_PERIOD_MIN >> 3)]
        period_max = q[hq + (N.H_PERIOD_MAX >> 3)]
        scan_size = q[hq + (N.H_SCAN_SIZE >> 3)]
        mem_mask = q[hq + (N.H_MEM_NODES >> 3)]
        cpu_nodes = q[hq + (N.H_CPU_NODES >> 3)]
        nr_nodes = q[hq + (N.H_NR_NODES >> 3)]
        sim = arena.config["sim"]
        cpu_to_node = list(sim["cpu_to_node"] if isinstance(sim, dict) else sim.cpu_to_node)
        distance = [list(r) for r in (sim["distance"] if isinstance(sim, dict) else sim.distance)]
        mynid = cpu_to_node[cpu]
        PHYS = arena.off("physmem")
        P8 = PHYS >> 3
        PM = arena.off("pagemeta")
        spare = PM + P_SPARE
        i_map = (PM + P_MAPPING) >> 3
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        task_base = arena.off("vmtask")
        ev = VE.vm_event_base(arena, cpu)
        ev_pte, ev_hint = ev + VE.NUMA_PTE_UPDATES, ev + VE.NUMA_HINT_FAULTS
        ev_hint_local = ev + VE.NUMA_HINT_FAULTS_LOCAL
        ev_migrated = ev + VE.NUMA_PAGES_MIGRATED
        walk, ptlock_off = vm.pt.walk, vm.pt.ptlock_off
        lru_drain = migrate.lru_drain
        ptl_lock, ptl_unlock = vm.locks.ptlock.lock, vm.locks.ptlock.unlock
        mmap_lock = vm.locks.mmap_lock
        flush_tlb_mm_range = vm.tlb.flush_tlb_mm_range
        cur = vm.cur
        task_rec, decode = policy.task_rec, policy.decode
        get_vma_policy = policy.get_vma_policy
        node_order = vm.mm.node_order
        pages_per_mb = (1 << 20) >> PAGE_SHIFT
        clock_ns = time.monotonic_ns

        def now_ms() -> int:
            return N.now_ms(arena)

        def mo(mm_id: int) -> int:
            return mm_base + mm_id * mm_size

        def page_nid(pfn: int) -> int:
            return u8[PM + pfn * PAGE_META_SIZE + 7]

        def task_pid(tid: int) -> int:
            return q[(task_base + tid * T.TASK_REC + T.T_PID) >> 3]

        def task_node(tid: int) -> int:
            c = q[(task_base + tid * T.TASK_REC + T.T_CPU) >> 3] - 1
            return cpu_to_node[c] if c >= 0 else mynid

        # ------------------------------------------------------------ scan periods
        def mm_rss(mm_id: int) -> int:
            return T.get_mm_rss(arena, mo(mm_id))

        def task_nr_scan_windows(mm_id: int) -> int:
            nr_scan_pages = scan_size * pages_per_mb
            rss = mm_rss(mm_id) or nr_scan_pages
            return max(1, -(-rss // nr_scan_pages))

        def task_scan_min(mm_id: int) -> int:
            windows = MAX_SCAN_WINDOW // scan_size if scan_size < MAX_SCAN_WINDOW else 1
            floor = 1000 // windows
            return max(floor, period_min // task_nr_scan_windows(mm_id))

        def task_scan_max(mm_id: int) -> int:
            return max(task_scan_min(mm_id), period_max // task_nr_scan_windows(mm_id))

        # ------------------------------------------------------------ the tick and the scan
        def task_work() -> None:
            """task_tick_numa(): every numa_scan_period of runtime, if the mm's next scan
            is due, run task_numa_work now (the task_work at the return to user)."""
            tid, mm_id = cur[0], cur[1]
            if vm.task < 0 or mm_id <= 0:
                return
            ro = task_rec(tid)
            now = clock_ns()
            base = q[(ro + N.TN_RUNTIME_BASE) >> 3]
            if not base:
                q[(ro + N.TN_RUNTIME_BASE) >> 3] = now
                return
            runtime = now - base
            period = q[(ro + N.TN_SCAN_PERIOD) >> 3] * 1_000_000
            stamp = q[(ro + N.TN_NODE_STAMP) >> 3]
            if runtime > stamp + period:
                if not stamp:
                    q[(ro + N.TN_SCAN_PERIOD) >> 3] = task_scan_min(mm_id)       # task_scan_start
                q[(ro + N.TN_NODE_STAMP) >> 3] = stamp + period
                nxt = q[(mo(mm_id) + T.M_NUMA + N.MN_NEXT_SCAN) >> 3]
                if not nxt or now_ms() >= nxt:
                    task_numa_work()

        def vma_scannable(v: int) -> bool:
            fl = q[(v + V.V_FLAGS) >> 3]
            if fl & (V.VM_IO | V.VM_PFNMAP | V.VM_HUGETLB | V.VM_MIXEDMAP | V.VM_SHARED):
                return False
            if q[(v + V.V_FILE) >> 3] and fl & (V.VM_READ | V.VM_WRITE) == V.VM_READ:
                return False                        # read-only file mappings (shared libraries)
            if not fl & V.VM_ACCESS_FLAGS:
                return False                        # PROT_NONE VMAs: not to be confused with hints
            p = q[(v + V.V_POLICY) >> 3]            # vma_policy_mof()
            if not p:
                p = q[(task_base + cur[0] * T.TASK_REC + T.T_MEMPOLICY) >> 3]
            return not p or bool(decode(p)[1] & MP.MPOL_F_MOF)

        def task_numa_work(force: bool = False) -> int:
            """task_numa_work(): mark the next window of the mm for hinting faults."""
            tid, mm_id = cur[0], cur[1]
            if mm_id <= 0:
                return 0
            m = mo(mm_id)
            fnext = (m + T.M_NUMA + N.MN_NEXT_SCAN)
            now = now_ms()
            migrate_at = q[fnext >> 3]
            if not migrate_at:
                migrate_at = now + scan_delay
                cas(fnext, 0, migrate_at)
                migrate_at = q[fnext >> 3]
            if now < migrate_at and not force:
                return 0
            ro = task_rec(tid)
            if not q[(ro + N.TN_SCAN_PERIOD_MAX) >> 3]:
                q[(ro + N.TN_SCAN_PERIOD_MAX) >> 3] = task_scan_max(mm_id)
            next_scan = now + q[(ro + N.TN_SCAN_PERIOD) >> 3]
            if cas(fnext, migrate_at, next_scan) != migrate_at:
                return 0                            # another task of this mm scans now
            pages = scan_size * pages_per_mb
            virtpages = pages * 8
            if not mmap_lock.down_read_trylock(m + T.M_MMAP_LOCK):
                return 0
            nr_total = 0
            try:
                seq = q[(m + T.M_NUMA + N.MN_SCAN_SEQ) >> 3]
                start = q[(m + T.M_NUMA + N.MN_SCAN_OFFSET) >> 3]
                vmas = [v for _f, _l, v in vm.vmas.tree(mm_id).mt_for_each(start, (1 << 64) - 1)]
                if not vmas:
                    reset_scan(m)
                    start = 0
                    seq = q[(m + T.M_NUMA + N.MN_SCAN_SEQ) >> 3]
                    vmas = [v for _f, _l, v in vm.vmas.tree(mm_id).mt_for_each(0, (1 << 64) - 1)]
                stopped = None
                for v in vmas:
                    if not vma_scannable(v):
                        continue
                    st = q[(v + V.V_NUMAB) >> 3]
                    if not st:                      # new VMA numab state: scan it after the delay
                        st = (seq & 0xFFFFFFFF) | ((now + scan_delay) & 0xFFFFFFFF) << 32
                        q[(v + V.V_NUMAB) >> 3] = st
                    if seq and now < (st >> 32) and not force:
                        continue
                    if (st & 0xFFFFFFFF) == ((seq + 1) & 0xFFFFFFFF):
                        q[(m + T.M_NUMA + N.MN_SCAN_OFFSET) >> 3] = q[(v + V.V_END) >> 3]
                        continue                    # already scanned in this sequence
                    vstart, vend = q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3]
                    while True:
                        start = max(start, vstart)
                        end = min((start + (pages << PAGE_SHIFT) + HPAGE_SIZE - 1) & ~(HPAGE_SIZE - 1), vend)
                        n = change_prot_numa(mm_id, v, start, end)
                        nr_total += n
                        if n:
                            pages -= (end - start) >> PAGE_SHIFT
                        virtpages -= (end - start) >> PAGE_SHIFT
                        start = end
                        if pages <= 0 or virtpages <= 0:
                            stopped = v
                            break
                        if end == vend:
                            break
                    if stopped is not None:
                        break
                    q[(v + V.V_NUMAB) >> 3] = (st & ~0xFFFFFFFF & ((1 << 64) - 1)) | ((seq + 1) & 0xFFFFFFFF)
                if stopped is not None:
                    q[(m + T.M_NUMA + N.MN_SCAN_OFFSET) >> 3] = start
                else:
                    reset_scan(m)
            finally:
                mmap_lock.up_read(m + T.M_MMAP_LOCK)
            return nr_total

        def reset_scan(m: int) -> None:
            """reset_ptenuma_scan(): the next sequence starts at address 0."""
            q[(m + T.M_NUMA + N.MN_SCAN_SEQ) >> 3] += 1
            q[(m + T.M_NUMA + N.MN_SCAN_OFFSET) >> 3] = 0

        def change_prot_numa(mm_id: int, vma: int, start: int, end: int) -> int:
            """change_prot_numa(): present pages of [start, end) become PROT_NONE hints,
            except prot_numa_skip's: already hinted, the zero page, shared copy-on-write
            pages, dirty page cache, and (single-threaded private memory) pages already
            on the node the task runs on.  One flush for the window.

            First this CPU's lru_add batch goes onto the LRU (a modelling choice: the
            batches here drain only when full or on demand, where Linux also drains at
            many other points -- exit, munmap, mlock, compaction's drain_all), so that a
            folio this task faulted since the last scan can be isolated when its hinting
            fault asks to move it (migrate_misplaced_folio_prepare's folio_isolate_lru)."""
            lru_drain()
            root = q[(mo(mm_id) + T.M_PGD) >> 3]
            cow = (q[(vma + V.V_FLAGS) >> 3] & (V.VM_SHARED | V.VM_MAYWRITE)) == V.VM_MAYWRITE
            target = mynid if (not q[(vma + V.V_FLAGS) >> 3] & V.VM_SHARED
                               and q[(mo(mm_id) + T.M_USERS) >> 3] == 1) else -1
            n = 0
            a = start
            while a < end:
                nxt = min(end, (a | ((1 << 21) - 1)) + 1)
                table = walk(root, a)
                if table >= 0:
                    lo = ptlock_off(table)
                    ptl_lock(lo)
                    try:
                        base = P8 + (table << 9)
                        for va in range(a, nxt, 4096):
                            i = base + ((va >> PAGE_SHIFT) & 511)
                            e = q[i]
                            if not e & _PAGE_PRESENT or e & _PAGE_SPECIAL:
                                continue
                            pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                            if cow and u32[(PM + pfn * PAGE_META_SIZE + 12) >> 2] > 1:
                                continue
                            mp = q[i_map + pfn * (PAGE_META_SIZE >> 3)]
                            if not mp & PAGE_MAPPING_ANON and u32[(PM + pfn * PAGE_META_SIZE) >> 2] & PG_dirty:
                                continue
                            if page_nid(pfn) == target:
                                continue
                            while True:             # hardware may set A/D meanwhile: CAS
                                new = pte_modify(e, PAGE_NONE)
                                seen = cas(i << 3, e, new)
                                if seen == e:
                                    break
                                e = seen
                            n += 1
                    finally:
                        ptl_unlock(lo)
                a = nxt
            if n:
                flush_tlb_mm_range(mm_id, start, end)
                q[ev_pte] += n
            return n

        # ------------------------------------------------------------ the hinting fault
        def should_numa_migrate_memory(tid: int, pfn: int, src_nid: int, dst_cpu: int) -> bool:
            dst_nid = cpu_to_node[dst_cpu]
            if not mem_mask >> dst_nid & 1:
                return False
            pid = task_pid(tid)
            last = xchg32(spare + pfn * PAGE_META_SIZE, cpu_pid_to_cpupid(dst_cpu, pid))
            ro = task_rec(tid)
            pref = i64[(ro + N.TN_PREF_NID) >> 3]
            mine = not cpupid_pid_unset(last) and cpupid_to_pid(last) == pid & LAST__PID_MASK
            if (pref == MP.NUMA_NO_NODE or q[(ro + N.TN_SCAN_SEQ) >> 3] <= 4) and (cpupid_pid_unset(last) or mine):
                return True                         # first faults, or private ones, early on
            # the two-stage filter: a page moves only when its last fault came from the
            # same node; otherwise (private, or shared with no numa group yet) it moves
            return cpupid_pid_unset(last) or cpu_to_node[cpupid_to_cpu(last)] == dst_nid

        def mpol_misplaced(vma: int, va: int, pfn: int, tid: int) -> int:
            """mpol_misplaced(): the node the page should move to, or NUMA_NO_NODE."""
            p, ilx = get_vma_policy(vma, va)
            pol = decode(p) if p else DEFAULT_POLICY
            if not pol[1] & MP.MPOL_F_MOF:
                return MP.NUMA_NO_NODE
            curnid = page_nid(pfn)
            mode = pol[0]
            polnid = MP.NUMA_NO_NODE
            if mode == MP.MPOL_INTERLEAVE:
                polnid = MP.interleave_nid(pol[2], ilx, mynid)
            elif mode == MP.MPOL_WEIGHTED_INTERLEAVE:
                polnid = MP.weighted_interleave_nid(pol[2], policy.weights, ilx, mynid)
            elif mode == MP.MPOL_PREFERRED:
                if pol[2] >> curnid & 1:
                    return MP.NUMA_NO_NODE
                polnid = MP.first_node(pol[2])
            elif mode == MP.MPOL_LOCAL:
                polnid = mynid
            else:                                   # bind, preferred-many
                if pol[1] & MP.MPOL_F_MORON:
                    if not pol[2] >> mynid & 1:
                        return MP.NUMA_NO_NODE
                else:
                    if pol[2] >> curnid & 1:
                        return MP.NUMA_NO_NODE
                    polnid = next((n for n in node_order[mynid] if pol[2] >> n & 1), MP.NUMA_NO_NODE)
            if pol[1] & MP.MPOL_F_MORON:
                polnid = mynid
                if not should_numa_migrate_memory(tid, pfn, curnid, cpu):
                    return MP.NUMA_NO_NODE
            return polnid if polnid != curnid else MP.NUMA_NO_NODE

        def numa_fault(mm_id: int, vma: int, va: int, table: int, i: int, e: int, write: bool) -> int:
            """do_numa_page(): account the hinting fault, maybe migrate the page toward
            this CPU's node, else make the entry present again."""
            lo = ptlock_off(table)
            tid = cur[0]
            ptl_lock(lo)
            locked = True
            try:
                if q[i] != e:
                    return 0
                pte = pte_modify(e, q[(vma + V.V_PROT) >> 3]) | _PAGE_ACCESSED
                pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                fl = q[(vma + V.V_FLAGS) >> 3]
                mp = q[i_map + pfn * (PAGE_META_SIZE >> 3)]
                mapcount = u32[(PM + pfn * PAGE_META_SIZE + 12) >> 2]
                writable = bool(pte & _PAGE_RW) or bool(
                    fl & V.VM_WRITE and not fl & V.VM_SHARED and mp & PAGE_MAPPING_ANON
                    and (mp & ~3) == q[(vma + V.V_OBJECT) >> 3] and mapcount == 1)
                nid = MP.NUMA_NO_NODE
                flags = 0
                last_cpupid = 0
                if not e & _PAGE_SPECIAL:
                    nid = page_nid(pfn)
                    if not writable:
                        flags |= TNF_NO_GROUP
                    if mapcount > 1 and fl & V.VM_SHARED:
                        flags |= TNF_SHARED
                    last_cpupid = u32[(spare + pfn * PAGE_META_SIZE) >> 2]
                    q[ev_hint] += 1
                    if nid == mynid:
                        q[ev_hint_local] += 1
                        flags |= TNF_FAULT_LOCAL
                    target = mpol_misplaced(vma, va, pfn, tid)
                    if target != MP.NUMA_NO_NODE:
                        ptl_unlock(lo)
                        locked = False
                        if not migrate.migrate_to_node(mm_id, pfn, target, misplaced=True):
                            q[ev_migrated] += 1
                            task_numa_fault(tid, last_cpupid, target, 1, flags | TNF_MIGRATED)
                            return 0
                        flags |= TNF_MIGRATE_FAIL
                        ptl_lock(lo)
                        locked = True
                        if q[i] != e:
                            return 0
                if writable:
                    pte |= _PAGE_RW
                q[i] = pte                          # was not present: no TLB holds it
            finally:
                if locked:
                    ptl_unlock(lo)
            if nid != MP.NUMA_NO_NODE:
                task_numa_fault(tid, last_cpupid, nid, 1, flags)
            return 0

        # ------------------------------------------------------------ per-task statistics
        def faults_idx(s: int, nid: int, priv: int) -> int:
            return N.NR_NUMA_HINT_FAULT_TYPES * (s * nr_nodes + nid) + priv

        def task_numa_fault(tid: int, last_cpupid: int, mem_node: int, pages: int, flags: int) -> None:
            if not enabled:
                return
            ro = task_rec(tid)
            f = (ro + N.TN_FAULTS) >> 3
            cpu_node = task_node(tid)
            local = 1 if flags & TNF_FAULT_LOCAL else 0
            priv = 1 if cpupid_pid_unset(last_cpupid) else int(cpupid_to_pid(last_cpupid) ==
                                                               task_pid(tid) & LAST__PID_MASK)
            if now_ms() > q[(ro + N.TN_MIGRATE_RETRY) >> 3]:
                task_numa_placement(tid)
                numa_migrate_preferred(tid)
            if flags & TNF_MIGRATED:
                q[(ro + N.TN_PAGES_MIGRATED) >> 3] += pages
            if flags & TNF_MIGRATE_FAIL:
                q[(ro + N.TN_LOCALITY + 16) >> 3] += pages
            i64[f + faults_idx(N.NUMA_MEMBUF, mem_node, priv)] += pages
            i64[f + faults_idx(N.NUMA_CPUBUF, cpu_node, priv)] += pages
            q[(ro + N.TN_LOCALITY + 8 * local) >> 3] += pages
            q[(ro + N.TN_HINT_FAULTS) >> 3] += pages

        def numa_migrate_preferred(tid: int) -> None:
            """numa_migrate_preferred(): retry at most every scan period / 16 (<= 1 s); the
            move itself is the workload's (see the module docstring)."""
            ro = task_rec(tid)
            pref = i64[(ro + N.TN_PREF_NID) >> 3]
            if pref == MP.NUMA_NO_NODE:
                return
            interval = min(q[(ro + N.TN_SCAN_PERIOD) >> 3] // 16, 1000)
            q[(ro + N.TN_MIGRATE_RETRY) >> 3] = now_ms() + interval
            if placement and task_node(tid) != pref:
                self.placement_pending = tid        # task_numa_migrate: the workload's move

        # ------------------------------------------------------------ task placement
        def task_faults(tid: int, nid: int) -> int:
            f = (task_rec(tid) + N.TN_FAULTS) >> 3
            return i64[f + faults_idx(N.NUMA_MEM, nid, 0)] + i64[f + faults_idx(N.NUMA_MEM, nid, 1)]

        def task_weight(tid: int, nid: int) -> int:
            """task_weight(): the task's share of its memory faults on nid, in 1/1000
            (score_nearby_nodes is 0: the fake machines are NUMA_DIRECT)."""
            total = i64[(task_rec(tid) + N.TN_TOTAL_FAULTS) >> 3]
            if total <= 0:
                return 0
            return 1000 * task_faults(tid, nid) // total

        def task_numa_compare(tid: int, src_nid: int, dst_nid: int, taskimp: int, cur: int,
                              best: tuple[int, int, int]) -> tuple[int, int, int] | None:
            """task_numa_compare() for swapping task tid (on src_nid) with task `cur`
            running on a CPU of dst_nid, every CPU busy with one task (no idle CPU, equal
            loads: a swap keeps the balance, a move never does).  best = (cpu, cur, imp)
            so far; returns the new best or None."""
            if cur < 0 or cur == tid:
                return None
            cur_pref = i64[(task_rec(cur) + N.TN_PREF_NID) >> 3]
            best_cur = best[1]
            best_pref = i64[(task_rec(best_cur) + N.TN_PREF_NID) >> 3] if best_cur >= 0 else MP.NUMA_NO_NODE
            if best_cur >= 0 and best_pref == src_nid and cur_pref != src_nid:
                return None
            imp = taskimp + task_weight(cur, src_nid) - task_weight(cur, dst_nid)   # no numa groups
            if cur_pref == dst_nid:
                imp -= imp // 16
            if cur_pref == src_nid:
                imp += imp // 8
            if best_cur >= 0 and cur_pref == src_nid and best_pref != src_nid:
                return (-1, cur, imp)
            if imp < SMALLIMP or imp <= best[2] + SMALLIMP // 2:
                return None
            return (-1, cur, imp)

        def task_numa_migrate(tid: int, rq_curr: list[tuple[int, int]]) -> tuple[int, int, int]:
            """task_numa_migrate(): the best CPU for task tid on its preferred node (else on
            another node where its weight grows) and the task to swap with there.
            rq_curr = [(cpu, task running there or -1)] of the other CPUs.  Returns
            (cpu, task, imp), cpu -1 when no CPU is better than the current one."""
            pref = i64[(task_rec(tid) + N.TN_PREF_NID) >> 3]
            src_nid = task_node(tid)
            best = (-1, -1, 0)
            if pref == MP.NUMA_NO_NODE or pref == src_nid:
                return best
            taskweight = task_weight(tid, src_nid)

            def find_cpu(dst_nid: int, taskimp: int) -> None:
                nonlocal best
                for c, cur in rq_curr:
                    if cpu_to_node[c] != dst_nid:
                        continue
                    got = task_numa_compare(tid, src_nid, dst_nid, taskimp, cur, best)
                    if got is not None:
                        best = (c, got[1], got[2])
                        if i64[(task_rec(got[1]) + N.TN_PREF_NID) >> 3] == src_nid:
                            return                  # a swap candidate moving to its preferred node

            find_cpu(pref, task_weight(tid, pref) - taskweight)
            if best[0] < 0:
                for nid in range(nr_nodes):
                    if not cpu_nodes >> nid & 1 or nid in (src_nid, pref):
                        continue
                    taskimp = task_weight(tid, nid) - taskweight
                    if taskimp >= 0:
                        find_cpu(nid, taskimp)
            return best

        def task_numa_placement(tid: int) -> None:
            ro = task_rec(tid)
            mm_id = q[(task_base + tid * T.TASK_REC + T.T_MM) >> 3] - 1
            seq = q[(mo(mm_id) + T.M_NUMA + N.MN_SCAN_SEQ) >> 3]
            if q[(ro + N.TN_SCAN_SEQ) >> 3] == seq:
                return
            q[(ro + N.TN_SCAN_SEQ) >> 3] = seq
            q[(ro + N.TN_SCAN_PERIOD_MAX) >> 3] = task_scan_max(mm_id)
            loc = (ro + N.TN_LOCALITY) >> 3
            total_faults = q[loc] + q[loc + 1]
            f = (ro + N.TN_FAULTS) >> 3
            now = clock_ns()
            last = q[(ro + N.TN_RUNTIME_BASE) >> 3]
            runtime = max(0, now - last)
            period = runtime                         # one busy task per CPU: runtime == wall time
            fault_types = [0, 0]
            max_faults, max_nid = 0, MP.NUMA_NO_NODE
            for nid in range(nr_nodes):
                faults = 0
                for priv in range(N.NR_NUMA_HINT_FAULT_TYPES):
                    mem_i = f + faults_idx(N.NUMA_MEM, nid, priv)
                    membuf_i = f + faults_idx(N.NUMA_MEMBUF, nid, priv)
                    cpu_i = f + faults_idx(N.NUMA_CPU, nid, priv)
                    cpubuf_i = f + faults_idx(N.NUMA_CPUBUF, nid, priv)
                    diff = i64[membuf_i] - i64[mem_i] // 2
                    fault_types[priv] += i64[membuf_i]
                    i64[membuf_i] = 0
                    f_weight = (runtime << 16) // (period + 1)
                    f_weight = f_weight * i64[cpubuf_i] // (total_faults + 1)
                    f_diff = f_weight - i64[cpu_i] // 2
                    i64[cpubuf_i] = 0
                    i64[mem_i] += diff
                    i64[cpu_i] += f_diff
                    faults += i64[mem_i]
                    arena.i64[(ro + N.TN_TOTAL_FAULTS) >> 3] += diff
                if faults > max_faults:
                    max_faults, max_nid = faults, nid
            if max_nid >= 0 and not cpu_nodes >> max_nid & 1:       # numa_nearest_node(N_CPU)
                max_nid = min((n for n in range(nr_nodes) if cpu_nodes >> n & 1),
                              key=lambda n: distance[max_nid][n], default=max_nid)
            if max_faults:
                i64[(ro + N.TN_PREF_NID) >> 3] = max_nid
            update_task_scan_period(tid, fault_types[0], fault_types[1])

        def update_task_scan_period(tid: int, shared: int, private: int) -> None:
            ro = task_rec(tid)
            mm_id = q[(task_base + tid * T.TASK_REC + T.T_MM) >> 3] - 1
            loc = (ro + N.TN_LOCALITY) >> 3
            remote, local, failed = q[loc], q[loc + 1], q[loc + 2]
            period = q[(ro + N.TN_SCAN_PERIOD) >> 3]
            pmax = q[(ro + N.TN_SCAN_PERIOD_MAX) >> 3] or task_scan_max(mm_id)
            if local + shared == 0 or failed:
                period = min(pmax, period << 1)
                q[(ro + N.TN_SCAN_PERIOD) >> 3] = period
                q[(mo(mm_id) + T.M_NUMA + N.MN_NEXT_SCAN) >> 3] = now_ms() + period
                return
            period_slot = -(-period // NUMA_PERIOD_SLOTS)
            lr_ratio = local * NUMA_PERIOD_SLOTS // (local + remote)
            ps_ratio = private * NUMA_PERIOD_SLOTS // max(1, private + shared)
            if ps_ratio >= NUMA_PERIOD_THRESHOLD:
                diff = max(1, ps_ratio - NUMA_PERIOD_THRESHOLD) * period_slot
            elif lr_ratio >= NUMA_PERIOD_THRESHOLD:
                diff = max(1, lr_ratio - NUMA_PERIOD_THRESHOLD) * period_slot
            else:
                diff = -(NUMA_PERIOD_THRESHOLD - max(lr_ratio, ps_ratio)) * period_slot
            q[(ro + N.TN_SCAN_PERIOD) >> 3] = min(max(period + diff, task_scan_min(mm_id)), task_scan_max(mm_id))
            q[loc] = q[loc + 1] = q[loc + 2] = 0

        self.task_work, self.task_numa_work, self.change_prot_numa = task_work, task_numa_work, change_prot_numa
        self.numa_fault, self.should_numa_migrate_memory = numa_fault, should_numa_migrate_memory
        self.mpol_misplaced, self.task_numa_fault, self.task_numa_placement = (mpol_misplaced, task_numa_fault,
                                                                              task_numa_placement)
        self.task_scan_min, self.task_scan_max = task_scan_min, task_scan_max
        self.task_weight, self.task_numa_migrate = task_weight, task_numa_migrate
        _ = (PHYS, _P_OR_NONE)
