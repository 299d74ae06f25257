"""will-it-scale page_fault1: map anonymous memory, write every page, unmap, repeat.

Models tests/page_fault1.c of will-it-scale: each task mmaps `size` bytes of private
anonymous memory, writes one word in every page (each write a write fault: a zeroed
page, the object's tree, the PTE), then munmaps the region (zap, one TLB flush,
pages back to the allocator).  Operation = one page faulted; the munmap's cost is
shared by the pages of its region.  In threads mode all CPUs fault in one mm (each in
its own region), which is where per-VMA locks matter.

Verification: each page gets the stamp (cpu << 48 | seq) at a per-page offset; every
page is read back and checked before the region is unmapped (`corrupt` counts
mismatches).  Counters: faults (pages written), regions (mmap/munmap cycles), corrupt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.vm import mmap as M
from workers.workloads._common import counter_index
from workers.workloads._vm import cpu_vm, recover, region_batch, setup_mm, vm_report, vmwork_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

COUNTERS: tuple[str, ...] = ("faults", "regions", "corrupt")
PG = 4096


@dataclass(frozen=True, slots=True)
class Params:
    size_mb: int = 128            # MEMSIZE of will-it-scale's page_fault1
    verify: bool = True

    def validate(self) -> str | None:
        if not 1 <= self.size_mb <= 65536:
            return f"size_mb = {self.size_mb}: allowed 1..65536"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(nr_cpus)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    setup_mm(arena)


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, "page_fault1")
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_faults, c_regions, c_corrupt = c0, c0 + 1, c0 + 2
    npages = params.size_mb << 8
    size = npages * PG
    verify = params.verify
    load64 = vm.load64
    st = {"addr": 0, "next": 0, "seq": 0}

    def finish_region() -> None:
        addr, n = st["addr"], st["next"]
        if verify:
            base = cpu << 48 | (st["seq"] - n)
            bad = 0
            for i in range(n):
                if load64(addr + i * PG + ((i & 511) << 3)) != (base + i + 1) & ((1 << 64) - 1):
                    bad += 1
            q[c_corrupt] += bad
        vm.munmap(addr, size)
        st["addr"] = 0
        q[c_regions] += 1

    return region_batch(vm, cpu, q, c_faults, npages, lambda i: (i & 511) << 3,
                        lambda: vm.mmap(0, size, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS),
                        finish_region, st)


def report(arena: Arena, params: Params, result: dict) -> dict:
    return vm_report(arena, COUNTERS, result)
