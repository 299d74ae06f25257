"""Helpers shared by the virtual-memory workloads: each CPU's task, the shared mm of
threads mode, per-CPU simulated files, verified touches, teardown and the leak check.

Modes ([vm] mm, as will-it-scale's process and thread variants):
  processes   every simulated CPU runs its own task with its own mm;
  threads     every CPU's task is a thread of one process: the coordinator creates the
              mm at set-up (setup_mm), each worker's task shares it (mm_users + 1), and
              the coordinator drops the set-up reference after the run (release_mm).
The section "vmwork" holds the run's shared words, written by the coordinator before any
worker starts and only read afterwards: word 0 the shared mm id + 1 (threads mode),
word 1 the page-table pages in use at set-up + 1 (the leak check's baseline); then, from
word 16, two per CPU (owner: that CPU's worker; read by the recover hook once it is
dead): the region it keeps mapped across batches (address, length; address 0: none) --
in threads mode a dead worker's region is in the shared mm, which outlives the thread,
so the hook unmaps it (else every restart of a CPU adds a region for good: a
reclaim-thrash run with 20 deaths ran out of memory and swap).

Files: will-it-scale's file tests give every task its own temporary file; here the
coordinator creates one simulated pattern file per CPU at set-up (setup_files: name
"<workload>.<cpu>", pattern seed cpu + 1, so filemap.expected_page(fid, cpu + 1, i) is
what page i holds until someone writes it).  Files live as long as the arena.

Every workload touches memory only through its CPU's simulated MMU (VM.load / store)
and verifies what it reads back: stamp words (cpu << 48 | seq) written at known
offsets are checked before the memory is unmapped; a mismatch is counted as corrupt.
Each VM workload's batch function also carries `vm`, its CPU's VM handle, so tests can
change memory behind the workload's back and see the check fail.
After the run (vm_report, coordinator, every task gone) nothing the workloads mapped
may remain: anonymous pages, mapped file pages and process page tables beyond the
baseline (init_mm's are the kernel's: vmalloc grows them, for kernel stacks too, and
keeps them) are reported as leaked_pages, mm records still live as leaked_mms (both
must be 0); the report also carries the run's fault, per-VMA-lock, COW and TLB
counters (vmstat names, summed over CPUs) under "vmstat".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.errors import AeroSyncError
from aerosync.mm.numa.numa_vm import attach as numa_attach
from aerosync.mm.pmm.vm_event import fold_node_stats, fold_vm_events
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.vm import VM

__all__ = ["vmwork_section", "setup_mm", "release_mm", "shared_mm", "cpu_vm", "vm_mode", "PG", "stamp_off",
           "setup_files", "file_name", "cpu_file", "vm_report", "vm_leftovers", "vm_stat", "U64", "recover",
           "hold_region"]

PG = 4096
U64 = (1 << 64) - 1
_W_MM, _W_PT_BASE = 0, 1
REPORTED_EVENTS = ("pgfault", "pgmajfault", "vma_lock_success", "vma_lock_abort", "vma_lock_retry", "vma_lock_miss",
                   "aerosync_spf_success", "aerosync_spf_abort", "aerosync_cow_copy", "aerosync_cow_steal",
                   "aerosync_shadow_collapse", "aerosync_xa_leaf_wait", "nr_tlb_remote_flush",
                   "nr_tlb_remote_flush_received")
REPORTED_NODE_STATS = ("nr_file_pages", "nr_dirty")


_W_HELD = 16                          # vmwork word of CPU 0's held region (address, length)


def vmwork_section(nr_cpus: int) -> SectionSpec:
    return SectionSpec("vmwork", max(4096, 8 * (_W_HELD + 2 * nr_cpus)))


def hold_region(arena: Any, cpu: int, addr: int, length: int) -> None:
    """CPU `cpu`'s worker keeps [addr, addr + length) mapped across batches (its recover
    hook unmaps it in threads mode); addr 0: none any more -- stored before the munmap,
    so a death in between leaves the region to the run's end, never unmaps it twice."""
    w = _word(arena, _W_HELD + 2 * cpu)
    q = arena.u64
    if addr:
        q[w + 1] = length
    q[w] = addr


def vm_mode(arena: Any) -> str:
    return str((arena.config.get("vm") or {}).get("mm", "processes"))


def _word(arena: Any, i: int) -> int:
    return (arena.off("vmwork") >> 3) + i


def _page_table_pages(arena: Any) -> int:
    """Table pages of the process address spaces: all of them but init_mm's (mm 0) --
    the kernel's tables grow with vmalloc (kernel stacks) and, as Linux's, are kept."""
    init_mm = arena.u64[(T.mm_off(arena, 0) + T.M_PGTABLES_BYTES) >> 3] >> 12
    return sum(n["nr_page_table_pages"] for n in fold_node_stats(arena)) - init_mm


def setup_mm(arena: Any) -> None:
    """Coordinator, before the workers: the leak check's baseline; threads mode gets its
    one mm (acting as CPU 0, which then leaves so that CPU 0's worker owns the CPU)."""
    arena.u64[_word(arena, _W_PT_BASE)] = _page_table_pages(arena) + 1
    if vm_mode(arena) != "threads":
        return
    vm = VM(arena, 0)
    try:
        mm = vm.forks.mm_alloc()
        arena.u64[_word(arena, _W_MM)] = mm + 1
    finally:
        vm.leave()


def shared_mm(arena: Any) -> int:
    return arena.u64[_word(arena, _W_MM)] - 1 if "vmwork" in arena.sections else -1


def release_mm(arena: Any) -> None:
    """Coordinator, after the workers left: drop the set-up reference of the shared mm
    (the last user tears it down), so the checkers see every page given back."""
    mm = shared_mm(arena)
    if mm < 0:
        return
    vm = VM(arena, 0)
    try:
        vm.forks.mmput(mm)
        arena.u64[_word(arena, _W_MM)] = 0
    finally:
        vm.leave()


def recover(arena: Any, params: Any, cpu: int, records: Any, mm: Any, slub: Any) -> dict[str, int]:
    """The recover hook of a VM workload ([run] on_cpu_death; mm/recovery.py): after the
    dead CPU's VM records were rolled back or finished, its task (and its address space,
    with every page and region the workload held) exits -- in threads mode the shared mm
    stays with the live CPUs' threads (mm/vm/recover.py)."""
    from aerosync.mm.vm.recover import vm_recover

    w = _word(arena, _W_HELD + 2 * cpu)
    q = arena.u64
    addr, length = q[w], q[w + 1]
    if addr and vm_mode(arena) == "threads":
        q[w] = 0
        vm = VM(arena, cpu, mm=mm)                   # (the world is stopped: no mmap_lock waits)
        try:
            vm.sys.munmap(shared_mm(arena), addr, length)
        finally:
            vm.leave()
    q[w] = 0
    vm_recover(arena, cpu, mm, slub)
    return {}


def cpu_vm(arena: Any, cpu: int, comm: str) -> tuple[VM, int]:
    """This CPU's VM handle and its running task (its own mm, or the shared one).  NUMA
    placement is attached (vm.numa: mm/numa/numa_vm.py) and the task starts under the
    scenario's [numa] policy for this CPU, as `numactl --<policy> cmd` starts a task."""
    vm = VM(arena, cpu)
    mm = shared_mm(arena)
    tid = vm.task_create(comm, mm=mm) if vm_mode(arena) == "threads" and mm > 0 else vm.task_create(comm)
    vm.switch_to(tid)
    numa = numa_attach(vm)
    if numa is not None:
        numa.apply_config_policy()
    return vm, tid


def stamp_off(i: int) -> int:
    """Byte offset in page i of its stamp word: past a pattern file's 16-byte header,
    spread over the page (as page_fault1 spreads its stamps)."""
    return ((i & 255) + 2) << 3


def region_batch(vm: VM, cpu: int, q: Any, c_faults: int, npages: int, off: Callable[[int], int],
                 map_region: Callable[[], int], finish_region: Callable[[], None], st: dict[str, int]) -> Any:
    """will-it-scale's fault loop, shared by page_fault1/2/3: an operation writes one
    stamp word (cpu << 48 | seq) at off(i) of the region's next page, mapping a region
    first when none is (map_region) and finishing it (finish_region: verify, munmap) once
    every page is written.  `st` holds addr, next, seq for finish_region to read.  The
    batch carries teardown (finish a partial region, exit the task), poll and vm."""
    store64 = vm.store64

    arena = vm.arena

    def batch(n: int) -> None:
        for _ in range(n):
            if not st["addr"]:
                st["addr"] = map_region()
                hold_region(arena, cpu, st["addr"], npages * 4096)
                st["next"] = 0
            i = st["next"]
            st["seq"] += 1
            store64(st["addr"] + i * 4096 + off(i), cpu << 48 | st["seq"])
            q[c_faults] += 1
            i += 1
            st["next"] = i
            if i == npages:
                hold_region(arena, cpu, 0, 0)
                finish_region()

    def teardown() -> None:
        if st["addr"]:
            hold_region(arena, cpu, 0, 0)
            finish_region()
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.park_poll  # type: ignore[attr-defined]
    batch.vm = vm  # type: ignore[attr-defined]
    return batch


# ------------------------------------------------------------------ files
def file_name(workload: str, cpu: int) -> str:
    return f"{workload}.{cpu}"


def setup_files(arena: Any, workload: str, nr_cpus: int, size: int) -> None:
    """Coordinator, before the workers: one pattern file of `size` bytes per CPU."""
    vm = VM(arena, 0)
    try:
        for c in range(nr_cpus):
            vm.file_create(file_name(workload, c), size, seed=c + 1)
    finally:
        vm.leave()


def cpu_file(vm: VM, workload: str, cpu: int) -> int:
    fid = vm.file_lookup(file_name(workload, cpu))
    if fid < 0:
        raise AeroSyncError(f"{workload}: cpu{cpu}'s file {file_name(workload, cpu)!r} was not created at set-up")
    return fid


# ------------------------------------------------------------------ after the run
def vm_leftovers(arena: Any) -> dict[str, int]:
    """What is still mapped once every task exited: must be nothing."""
    st = fold_node_stats(arena)
    base = arena.u64[_word(arena, _W_PT_BASE)] - 1
    pt = _page_table_pages(arena) - base if base >= 0 else 0
    anon = sum(n["nr_anon_pages"] for n in st)
    mapped = sum(n["nr_mapped"] for n in st)
    q = arena.u64
    max_mms = q[(arena.off("vmhdr") + T.H_MAX_MMS) >> 3]
    mms = sum(1 for m in range(1, max_mms) if q[(T.mm_off(arena, m) + T.M_STATE) >> 3] != T.MM_FREE)
    return {"leaked_pages": anon + mapped + max(0, pt), "leaked_mms": mms}


def vm_stat(arena: Any) -> dict[str, int]:
    """The VM counters a workload's report shows (vmstat names, summed over CPUs/nodes)."""
    ev = fold_vm_events(arena)
    st = fold_node_stats(arena)
    return {**{k: ev[k] for k in REPORTED_EVENTS}, **{k: sum(n[k] for n in st) for k in REPORTED_NODE_STATS}}


def vm_report(arena: Any, counters: tuple[str, ...], result: dict, **extra: Any) -> dict:
    """The common report: the shared mm released, counters summed over CPUs, the mode,
    the workload's own figures, the VM counters, then the leak check."""
    release_mm(arena)
    tot = {k: sum(c["counters"][k] for c in result["cpus"]) for k in counters}
    return {**tot, "mode": vm_mode(arena), **extra, "vmstat": vm_stat(arena), **vm_leftovers(arena)}
