"""Helpers shared by the virtual-memory workloads: each CPU's task, the shared mm of
threads mode, verified touches, teardown.

Modes ([vm] mm, as will-it-scale's process and thread variants):
  processes   every simulated CPU runs its own task with its own mm;
  threads     every CPU's task is a thread of one process: the coordinator creates the
              mm at set-up (setup_mm), each worker's task shares it (mm_users + 1), and
              the coordinator drops the set-up reference after the run (release_mm).
The shared mm id is kept in the section "vmwork" (word 0: mm id + 1), written by the
coordinator before any worker starts and only read afterwards.

Every workload touches memory only through its CPU's simulated MMU (VM.load / store)
and verifies what it reads back: stamp words (cpu << 48 | seq) written at known
offsets are checked before the memory is unmapped; a mismatch is counted as corrupt.
"""

from __future__ import annotations

from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.mm.numa.numa_vm import attach as numa_attach
from aerosync.mm.vm.vm import VM

__all__ = ["vmwork_section", "setup_mm", "release_mm", "shared_mm", "cpu_vm", "vm_mode"]


def vmwork_section() -> SectionSpec:
    return SectionSpec("vmwork", 4096)


def vm_mode(arena: Any) -> str:
    return str((arena.config.get("vm") or {}).get("mm", "processes"))


def setup_mm(arena: Any) -> None:
    """Coordinator, before the workers: threads mode gets its one mm (acting as CPU 0,
    which then leaves so that CPU 0's worker owns the CPU)."""
    if vm_mode(arena) != "threads":
        return
    vm = VM(arena, 0)
    try:
        mm = vm.forks.mm_alloc()
        arena.u64[arena.off("vmwork") >> 3] = mm + 1
    finally:
        vm.leave()


def shared_mm(arena: Any) -> int:
    return arena.u64[arena.off("vmwork") >> 3] - 1 if "vmwork" in arena.sections else -1


def release_mm(arena: Any) -> None:
    """Coordinator, after the workers left: drop the set-up reference of the shared mm
    (the last user tears it down), so the checkers see every page given back."""
    mm = shared_mm(arena)
    if mm < 0:
        return
    vm = VM(arena, 0)
    try:
        vm.forks.mmput(mm)
        arena.u64[arena.off("vmwork") >> 3] = 0
    finally:
        vm.leave()


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
