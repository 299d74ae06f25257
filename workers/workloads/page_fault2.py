"""will-it-scale page_fault2: private file mapping, write every page (COW from the page
cache), unmap, repeat.

Models tests/page_fault2.c: each task maps its own `size_mb` file MAP_PRIVATE, writes one
word in every page -- each write a do_cow_fault: the file's page is found in the page
cache (read from the file, with readahead, on the first pass) and copied into a private
anonymous page of the mapping's shadow object -- then munmaps it.  Operation = one page
faulted, as will-it-scale counts (the munmap's cost is shared by the region's pages).
The files are simulated pattern files, one per CPU, created by the coordinator at
set-up (_vm.setup_files); their page cache stays for the whole run, as a tmpfs file's.

Verification, every region before it is unmapped: each page's stamp word (cpu << 48 |
seq) and the file's 16-byte page header (fid, index) around it read back -- the copy
carried the file's data; one random page is compared in full with
filemap.expected_page plus the stamp; and that page read through a second, shared
read-only mapping of the file (kept for the whole run) must still be exactly
expected_page: a private write never reaches the page cache.  Mismatches count as
`corrupt`.  Counters: faults (pages written), regions, corrupt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.filemap import expected_page
from workers.workloads._common import counter_index
from workers.workloads._vm import (
    PG,
    U64,
    cpu_file,
    cpu_vm,
    recover,
    region_batch,
    setup_files,
    setup_mm,
    stamp_off,
    vm_report,
    vmwork_section,
)

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

COUNTERS: tuple[str, ...] = ("faults", "regions", "corrupt")
NAME = "page_fault2"


@dataclass(frozen=True, slots=True)
class Params:
    size_mb: int = 128            # MEMSIZE of will-it-scale's page_fault2 (the file's size too)
    verify: bool = True

    def validate(self) -> str | None:
        if not 1 <= self.size_mb <= 65536:
            return f"size_mb = {self.size_mb}: allowed 1..65536"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(nr_cpus)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    setup_mm(arena)
    setup_files(arena, NAME, nr_cpus, params.size_mb << 20)


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, NAME)
    fid = cpu_file(vm, NAME, cpu)
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_faults, c_regions, c_corrupt = c0, c0 + 1, c0 + 2
    npages = params.size_mb << 8
    size = npages * PG
    verify = params.verify
    load64, load = vm.load64, vm.load
    RW, PRIVATE = M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE
    probe = vm.mmap(0, size, M.PROT_READ, M.MAP_SHARED, fid) if verify else 0
    headers = [fid.to_bytes(8, "little") + i.to_bytes(8, "little") for i in range(npages)] if verify else []
    st = {"addr": 0, "next": 0, "seq": 0}

    def finish_region() -> None:
        addr, n = st["addr"], st["next"]
        if verify:
            base = cpu << 48 | (st["seq"] - n)
            bad = 0
            for i in range(n):
                va = addr + i * PG
                if load64(va + stamp_off(i)) != (base + i + 1) & U64 or load(va, 16) != headers[i]:
                    bad += 1
            if n:
                i = rng.randrange(n)
                want = bytearray(expected_page(fid, cpu + 1, i))
                o = stamp_off(i)
                want[o : o + 8] = ((base + i + 1) & U64).to_bytes(8, "little")
                bad += load(addr + i * PG, PG) != want
                bad += load(probe + i * PG, PG) != expected_page(fid, cpu + 1, i)
            q[c_corrupt] += bad
        vm.munmap(addr, size)
        st["addr"] = 0
        q[c_regions] += 1

    return region_batch(vm, cpu, q, c_faults, npages, stamp_off,
                        lambda: vm.mmap(0, size, RW, PRIVATE, fid), finish_region, st)


def report(arena: Arena, params: Params, result: dict) -> dict:
    return vm_report(arena, COUNTERS, result)
