"""will-it-scale page_fault3: shared file mapping, write every page, unmap, repeat.

Models tests/page_fault3.c: each task maps its own `size_mb` file MAP_SHARED, writes one
word in every page -- each write a do_shared_fault: the page-cache page itself is mapped
writable and dirtied, no copy -- then munmaps it.  Operation = one page faulted, as
will-it-scale counts (the munmap's cost is shared by the region's pages).  The files
are simulated pattern files, one per CPU, created by the coordinator at set-up
(_vm.setup_files); what the tasks write stays in their page cache.

Verification (`verify`): the data must land in the page cache, so it is read back
through other mappings, not the one written:
  * a second shared read-only mapping of the same file (this task's, kept for the whole
    run): before each region is unmapped, every page's stamp word (cpu << 48 | seq) and
    the file's 16-byte page header (fid, index) must read back through it;
  * another task: each CPU also keeps a shared read-only mapping of the next CPU's file
    and, once per region, reads one random page of it: the header must be the file's,
    and the stamp word either the file's original pattern word or a stamp of the CPU
    that owns the file (that CPU writes it concurrently: any of its stamps is right).
Mismatches count as `corrupt`.  Counters: faults (pages written), regions, corrupt,
remote_checks (pages of another CPU's file verified).
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

COUNTERS: tuple[str, ...] = ("faults", "regions", "corrupt", "remote_checks")
NAME = "page_fault3"


@dataclass(frozen=True, slots=True)
class Params:
    size_mb: int = 128            # MEMSIZE of will-it-scale's page_fault3 (the file's size too)
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
    nr_cpus = int(arena.config["nr_cpus"])
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_faults, c_regions, c_corrupt, c_remote = c0, c0 + 1, c0 + 2, c0 + 3
    npages = params.size_mb << 8
    size = npages * PG
    verify = params.verify
    load64, load = vm.load64, vm.load
    RW, RO, SHARED = M.PROT_READ | M.PROT_WRITE, M.PROT_READ, M.MAP_SHARED
    reader = vm.mmap(0, size, RO, SHARED, fid) if verify else 0
    nb = (cpu + 1) % nr_cpus
    nb_fid = cpu_file(vm, NAME, nb) if verify and nb != cpu else -1
    nb_map = vm.mmap(0, size, RO, SHARED, nb_fid) if nb_fid >= 0 else 0
    st = {"addr": 0, "next": 0, "seq": 0}

    def header(f: int, i: int) -> bytes:
        return f.to_bytes(8, "little") + i.to_bytes(8, "little")

    def check_neighbour() -> int:
        i = rng.randrange(npages)
        va = nb_map + i * PG
        o = stamp_off(i)
        w = load64(va + o)
        pattern = int.from_bytes(expected_page(nb_fid, nb + 1, i)[o : o + 8], "little")
        q[c_remote] += 1
        return int(load(va, 16) != header(nb_fid, i) or (w != pattern and w >> 48 != nb))

    def finish_region() -> None:
        addr, n = st["addr"], st["next"]
        if verify:
            base = cpu << 48 | (st["seq"] - n)
            bad = 0
            for i in range(n):
                va = reader + i * PG
                if load64(va + stamp_off(i)) != (base + i + 1) & U64 or load(va, 16) != header(fid, i):
                    bad += 1
            if nb_map:
                bad += check_neighbour()
            q[c_corrupt] += bad
        vm.munmap(addr, size)
        st["addr"] = 0
        q[c_regions] += 1

    return region_batch(vm, cpu, q, c_faults, npages, stamp_off,
                        lambda: vm.mmap(0, size, RW, SHARED, fid), finish_region, st)


def report(arena: Arena, params: Params, result: dict) -> dict:
    return vm_report(arena, COUNTERS, result)
