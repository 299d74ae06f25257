"""Shared set-up of the NUMA process-memory tests: a booted multi-node machine with VM
and NUMA, and simulated CPUs with a task running."""

from __future__ import annotations

from typing import Any

from aerosync.mm.numa.numa_vm import NumaVM, attach
from aerosync.mm.pmm.page import page_array
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.vm import VM

PG = 4096
RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
SHARED = M.MAP_SHARED | M.MAP_ANONYMOUS


def numa_machine(machine: Any, nr_nodes: int = 2, nr_cpus: int = 2, nr_pages: int = 8192, numa: dict | None = None,
                 vm: dict | None = None, **cfg: Any) -> Any:
    return machine(nr_pages=nr_pages, nr_cpus=nr_cpus, nr_nodes=nr_nodes, slab=True, vm=dict(vm or {}),
                   numa=dict(numa or {}), **cfg)


def cpu(a: Any, c: int, mm: int = -1, comm: str = "t") -> tuple[VM, NumaVM, int]:
    """CPU c's VM handle with NUMA attached and a task running (its own mm, or mm)."""
    vm = VM(a, c)
    n = attach(vm)
    assert n is not None
    tid = vm.task_create(comm, mm=mm) if mm > 0 else vm.task_create(comm)
    vm.switch_to(tid)
    return vm, n, tid


def pid_of(a: Any, tid: int) -> int:
    return a.u64[(T.task_off(a, tid) + T.T_PID) >> 3]


def node_of(vm: VM, va: int) -> int:
    """The node of the page mapped at va (-1: none)."""
    st = vm.numa.migrate.page_status(vm.cur[1], va & ~(PG - 1))
    return st


def pfn_at(vm: VM, va: int) -> int:
    from aerosync.mm.vm.pgtable import PTE_PFN_MASK

    e = vm.numa.migrate.entry_at(vm.cur[1], va & ~(PG - 1))
    return (e & PTE_PFN_MASK) >> 12 if e & 0x101 else -1


def refcount(a: Any, pfn: int) -> int:
    p = page_array(a)
    try:
        return int(p["refcount"][pfn])
    finally:
        del p


def done(a: Any, *cpus: VM) -> None:
    """Every task exits, every CPU leaves; the page and NUMA checkers hold."""
    from aerosync.mm.numa.check import numa_check
    from aerosync.mm.pmm.check import check

    for c in cpus:
        if c.current_task() >= 0:
            c.exit()
    for c in cpus:
        c.leave()
    r = check(a)
    assert r.ok, r.violations[:5]
    bad = numa_check(a)
    assert not bad, bad[:5]
