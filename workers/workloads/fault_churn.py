"""Fault under churn: one CPU faults in its VMA while the others map and unmap unrelated
regions of the same address space.

The experiment behind per-VMA locks (Linux 6.4): with `[vm] fault_locking = "mmap_lock"`
every fault takes mmap_lock for read and waits behind each mmap/munmap's write hold;
with "per_vma" the fault locks only its own VMA, which the churn never touches, so
the faulting CPU should not notice the churn.  Roles by CPU id:
  faulters (CPUs 0 .. faulters - 1) run page_fault1's cycle in a `size_mb` region: mmap,
      write one stamp word in every page (a write fault each), read every page back,
      munmap.  Operation = one page faulted; faults/s of these CPUs is the figure
      (report: faulter_faults_per_s).
  churners (the other CPUs) map `churn_kb` of anonymous memory, write a stamp into its
      first `churn_touch` pages and read them back, and unmap it.  Operation = one
      mmap + munmap pair.  Their regions are placed by address hint far below the
      faulters' (each churner its own 1 GiB slot), so they never merge with, split or
      border a faulter's VMA: the only thing shared is the mm -- its tree, its
      mmap_lock, its TLB shootdowns (the faulters run the mm, so each munmap that
      unmaps touched pages IPIs them).
Threads mode is the point (one mm).  In processes mode each CPU runs its role in its own
mm, so the churn cannot get in the faulter's way: the baseline.

Verification: faulters check every page's stamp before the munmap (as page_fault1);
churners check their touched pages before theirs.  Mismatches count as `corrupt`.
Counters: faults, regions, churns, corrupt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.vm import VM
from workers.workloads._common import counter_index
from workers.workloads._vm import PG, U64, cpu_vm, recover, setup_mm, stamp_off, vm_report, vmwork_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

COUNTERS: tuple[str, ...] = ("faults", "regions", "churns", "corrupt")
CHURN_SLOT = 1 << 30              # each churner's hint slot
CHURN_BELOW = 64 << 30            # the churn slots start this far below mmap_base


@dataclass(frozen=True, slots=True)
class Params:
    size_mb: int = 16             # the faulters' region
    faulters: int = 1             # CPUs 0 .. faulters - 1 fault, the others churn
    churn_kb: int = 64            # each churn mapping
    churn_touch: int = 1          # pages of it written (then unmapped: a TLB shootdown)

    def validate(self) -> str | None:
        if not 1 <= self.size_mb <= 65536:
            return f"size_mb = {self.size_mb}: allowed 1..65536"
        if not 1 <= self.faulters <= 4096:
            return f"faulters = {self.faulters}: allowed 1..4096 (CPUs from faulters on churn)"
        if not 4 <= self.churn_kb <= 1 << 20 or self.churn_kb % 4:
            return f"churn_kb = {self.churn_kb}: a multiple of 4 in 4..1048576"
        if not 0 <= self.churn_touch <= self.churn_kb // 4:
            return f"churn_touch = {self.churn_touch}: allowed 0..{self.churn_kb // 4} (the pages of churn_kb)"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(nr_cpus)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    setup_mm(arena)


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, "fault_churn")
    batch = _faulter(arena, cpu, params, vm) if cpu < params.faulters else _churner(arena, cpu, params, vm)

    def teardown() -> None:
        batch.finish()  # type: ignore[attr-defined]
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.park_poll  # type: ignore[attr-defined]
    batch.vm = vm  # type: ignore[attr-defined]
    return batch


def _faulter(arena: Arena, cpu: int, params: Params, vm: VM) -> Callable[[int], None]:
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_faults, c_regions, c_corrupt = c0, c0 + 1, c0 + 3
    npages = params.size_mb << 8
    size = npages * PG
    store64, load64 = vm.store64, vm.load64
    st = {"addr": 0, "next": 0, "seq": 0}

    def finish() -> None:
        addr, n = st["addr"], st["next"]
        if not addr:
            return
        base = cpu << 48 | (st["seq"] - n)
        q[c_corrupt] += sum(1 for i in range(n) if load64(addr + i * PG + stamp_off(i)) != (base + i + 1) & U64)
        vm.munmap(addr, size)
        st["addr"] = 0
        q[c_regions] += 1

    def batch(n: int) -> None:
        for _ in range(n):
            if not st["addr"]:
                st["addr"] = vm.mmap(0, size, M.PROT_READ | M.PROT_WRITE,
                                     M.MAP_PRIVATE | M.MAP_ANONYMOUS)
                st["next"] = 0
            i = st["next"]
            st["seq"] += 1
            store64(st["addr"] + i * PG + stamp_off(i), cpu << 48 | st["seq"])
            q[c_faults] += 1
            i += 1
            st["next"] = i
            if i == npages:
                finish()

    batch.finish = finish  # type: ignore[attr-defined]
    return batch


def _churner(arena: Arena, cpu: int, params: Params, vm: VM) -> Callable[[int], None]:
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_churns, c_corrupt = c0 + 2, c0 + 3
    size = params.churn_kb << 10
    touch = params.churn_touch
    mmap_base = q[(T.mm_off(arena, vm.current_mm()) + T.M_MMAP_BASE) >> 3]
    hint = mmap_base - CHURN_BELOW - (cpu - params.faulters + 1) * CHURN_SLOT
    mmap, munmap, store64, load64 = vm.mmap, vm.munmap, vm.store64, vm.load64
    RW, ANON = M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS
    st = {"seq": 0}

    def batch(n: int) -> None:
        for _ in range(n):
            addr = mmap(hint, size, RW, ANON)
            seq = st["seq"]
            for i in range(touch):
                store64(addr + i * PG + stamp_off(i), cpu << 48 | (seq + i))
            bad = sum(1 for i in range(touch) if load64(addr + i * PG + stamp_off(i)) != cpu << 48 | (seq + i))
            st["seq"] = seq + touch
            munmap(addr, size)
            if bad:
                q[c_corrupt] += bad
            q[c_churns] += 1

    batch.finish = lambda: None  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    faulters = [c for c in result["cpus"] if c["cpu"] < params.faulters]
    rate = sum(c.get("ops_per_s", 0.0) for c in faulters)
    return vm_report(arena, COUNTERS, result, faulter_faults_per_s=round(rate, 1))
