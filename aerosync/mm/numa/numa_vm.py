"""One CPU's NUMA handle on process memory: it plugs NUMA placement into a VM handle and
offers the NUMA system calls.

Models: the NUMA system calls of a task (set_mempolicy, get_mempolicy, mbind,
set_mempolicy_home_node, migrate_pages, move_pages) and the hooks through which
mm/memory.c reaches mm/mempolicy.c and mm/migrate.c (vma_alloc_folio, do_numa_page,
migration_entry_wait).  Unit: one simulated CPU's VM handle (mm/vm/vm.py).

attach(vm) builds the handle and fills the VM's hook namespace (VM.ext, read by the
fault and unmap paths at call time):
  alloc_folio      vm_policy.py: the fault's page from the VMA / shared / task policy
  migration_wait   migrate.py: a fault met a migration entry
  numa_fault       task_numa.py: a NUMA hinting fault (PROT_NONE entry)
  task_work        task_numa.py: the balancing scan ([numa] balancing = true only)
  obj_free         vm_policy.py: a MAP_SHARED anonymous object's shared policy goes
mm/vm never imports this package: whoever builds a VM handle for a task that uses NUMA
placement (workers/workloads/_vm.py's cpu_vm, the benchmarks, tests) calls attach().
A machine without the "numa" section (booted without [vm]) gets None.
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa.migrate import Migrate
from aerosync.mm.numa.numa_types import numa_ready
from aerosync.mm.numa.task_numa import TaskNuma
from aerosync.mm.numa.vm_policy import VmPolicy

__all__ = ["NumaVM", "attach"]


class NumaVM:
    """The NUMA side of one VM handle: `policy` (VmPolicy), `migrate` (Migrate),
    `balancing` (TaskNuma), and the system calls acting for the task running there."""

    def __init__(self, vm: Any) -> None:
        self.vm = vm
        self.policy = VmPolicy(vm)
        self.migrate = Migrate(vm)
        self.policy.migrate = self.migrate
        self.balancing = TaskNuma(vm, self.policy, self.migrate)
        ext = vm.ext
        ext.alloc_folio = self.policy.alloc_folio
        ext.migration_wait = self.migrate.migration_wait
        ext.numa_fault = self.balancing.numa_fault
        ext.obj_free = self.policy.sp_free
        if self.balancing.enabled:
            ext.task_work = self.balancing.task_work
        p, m = self.policy, self.migrate
        self.set_mempolicy, self.get_mempolicy, self.mbind = p.set_mempolicy, p.get_mempolicy, p.mbind
        self.set_mempolicy_home_node = p.set_mempolicy_home_node
        self.move_pages, self.migrate_pages = m.move_pages, m.migrate_pages

    def apply_config_policy(self) -> MP.MemPolicy:
        """set_mempolicy() of the running task from the scenario's [numa] policy /
        cpu_policy (numactl's words), as `numactl --interleave=... cmd` starts a task."""
        vm = self.vm
        numa = vm.arena.config.get("numa") or {}
        cpu_policy = {int(c): p for c, p in (numa.get("cpu_policy") or {}).items()}
        pol = MP.policy_for_cpu(numa.get("policy", "default"), cpu_policy, vm.cpu, self.policy.nr_nodes,
                                numa.get("weights") or (), mem_nodes=_bits(self.policy.mem_mask))
        if pol.mode in (MP.MPOL_DEFAULT, MP.MPOL_LOCAL) and not pol.flags:
            if pol.mode == MP.MPOL_LOCAL:
                self.set_mempolicy(MP.MPOL_LOCAL)
            return pol
        nodes = pol.user_nodes if pol.flags & (MP.MPOL_F_STATIC_NODES | MP.MPOL_F_RELATIVE_NODES) else pol.nodes
        self.set_mempolicy(pol.mode | (pol.flags & MP.MPOL_MODE_FLAGS), nodes)
        return pol


def attach(vm: Any) -> NumaVM | None:
    """Plug NUMA placement into `vm` (see the module docstring); the handle is also left
    in vm.numa.  None when the machine has no NUMA section."""
    if not numa_ready(vm.arena):
        return None
    n = NumaVM(vm)
    vm.numa = n
    return n


def _bits(mask: int) -> list[int]:
    return [n for n in range(mask.bit_length()) if mask >> n & 1]
