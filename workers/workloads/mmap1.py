"""will-it-scale mmap1: map 128 MiB of anonymous memory and unmap it, without touching.

Models tests/mmap1.c: mmap(MEMSIZE, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)
then munmap, in a loop.  Operation = one mmap + munmap pair (will-it-scale's
iteration).  What it measures is the VMA tree under mmap_lock for write: the gap search,
a VMA and maple-tree nodes allocated and freed (through RCU), the per-VMA write locks;
no page is faulted, so there is nothing to zap but the (empty) range itself.  In threads
mode all CPUs serialise on the one mm's mmap_lock, which is the point of the test.

Verification (`verify`), without touching the memory: after every mmap the VMA covering
the returned address (a lock-free maple-tree lookup; in threads mode a miss is looked up
again under mmap_lock, as lock_vma_under_rcu falls back: the VMA the walk found may
have been split by another thread's munmap before its bounds were read) must cover the
whole region, with
VM_READ|VM_WRITE, private, anonymous (mmap2: this CPU's file, at file offset 0 at the
returned address) -- in threads mode another thread's equal mapping may have merged
with it, so "covers" rather than "equals"; in processes mode, after the munmap no VMA
may cover the address any more.  `probe_every` = k > 0 also reads one random page of
every k-th region through the MMU: zero for anonymous memory (the shared zero page),
the file's page (filemap.expected_page header and pattern words) for mmap2 -- that is a
read fault and a PTE to zap, so it is off by default.  Mismatches count as `corrupt`.
Counters: maps (mmap + munmap pairs), probes, corrupt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm import hooks
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.filemap import expected_page
from workers.workloads._common import counter_index
from workers.workloads._vm import PG, cpu_file, cpu_vm, recover, setup_mm, vm_mode, vm_report, vmwork_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover", "map_unmap_batch"]

COUNTERS: tuple[str, ...] = ("maps", "probes", "corrupt")
NAME = "mmap1"


@dataclass(frozen=True, slots=True)
class Params:
    size_mb: int = 128            # MEMSIZE of will-it-scale's mmap1
    verify: bool = True
    probe_every: int = 0          # read one page of every k-th region (0: never touch)

    def validate(self) -> str | None:
        if not 1 <= self.size_mb <= 65536:
            return f"size_mb = {self.size_mb}: allowed 1..65536"
        if not 0 <= self.probe_every <= 1 << 20:
            return f"probe_every = {self.probe_every}: allowed 0..1048576 (0: never touch the mapping)"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(nr_cpus)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    setup_mm(arena)


def map_unmap_batch(arena: Arena, cpu: int, params: Params, rng: random.Random, name: str,
                    file: bool) -> Callable[[int], None]:
    """The mmap1 / mmap2 loop: anonymous, or a private mapping of this CPU's file."""
    vm, _tid = cpu_vm(arena, cpu, name)
    fid = cpu_file(vm, name, cpu) if file else -1
    mm = vm.current_mm()
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_maps, c_probes, c_corrupt = c0, c0 + 1, c0 + 2
    npages = params.size_mb << 8
    size = npages * PG
    verify, every = params.verify, params.probe_every
    processes = vm_mode(arena) == "processes"
    RW = M.PROT_READ | M.PROT_WRITE
    flags = M.MAP_PRIVATE | (0 if file else M.MAP_ANONYMOUS)
    want_flags = V.VM_READ | V.VM_WRITE
    want_file = fid + 1
    mmap, munmap, lookup, load64, load = vm.mmap, vm.munmap, vm.vmas.vma_lookup, vm.load64, vm.load
    st = {"n": 0}

    mmap_lock = T.mm_off(arena, mm) + T.M_MMAP_LOCK
    down_read, up_read = vm.locks.mmap_lock.down_read, vm.locks.mmap_lock.up_read
    tp = hooks.point_fn()

    def vma_ok(addr: int) -> bool:
        """The region's VMA, looked up lock-free; in threads mode a miss is checked
        again under mmap_lock (read), as lock_vma_under_rcu falls back.  The walk and
        the reads of the VMA's bounds are not atomic: our region may have merged into
        another thread's VMA (the mmap merged into prev), and that thread's munmap may
        split it in between -- the VMA found then ends where our region starts (seen
        once in 500,000 maps on 2 CPUs)."""
        if covers(addr):
            return True
        if processes:                                  # nobody else changes this mm
            return False
        down_read(mmap_lock)
        try:
            return covers(addr)
        finally:
            up_read(mmap_lock)

    def covers(addr: int) -> bool:
        v = lookup(mm, addr)
        if not v:
            return False
        if tp:
            tp("mmap1:looked_up")
        start, end = q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3]
        fl = q[(v + V.V_FLAGS) >> 3]
        if start > addr or end < addr + size or (fl & (want_flags | V.VM_SHARED)) != want_flags:
            return False
        if q[(v + V.V_FILE) >> 3] != want_file:
            return False
        return not file or q[(v + V.V_PGOFF) >> 3] + ((addr - start) >> 12) == 0

    def probe(addr: int) -> bool:
        i = rng.randrange(npages)
        va = addr + i * PG
        q[c_probes] += 1
        if not file:
            return load64(va) == 0 and load64(va + PG - 8) == 0
        page = expected_page(fid, cpu + 1, i)
        return load(va, 16) == page[:16] and load(va + PG - 8, 8) == page[-8:]

    def batch(n: int) -> None:
        for _ in range(n):
            addr = mmap(0, size, RW, flags, fid)
            bad = 0
            if verify:
                bad += not vma_ok(addr)
            if every:
                st["n"] += 1
                if st["n"] == every:
                    st["n"] = 0
                    bad += not probe(addr)
            munmap(addr, size)
            if verify and processes:
                bad += lookup(mm, addr) != 0
            if bad:
                q[c_corrupt] += bad
            q[c_maps] += 1

    def teardown() -> None:
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.park_poll  # type: ignore[attr-defined]
    batch.vm = vm  # type: ignore[attr-defined]
    return batch


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    return map_unmap_batch(arena, cpu, params, rng, NAME, file=False)


def report(arena: Arena, params: Params, result: dict) -> dict:
    return vm_report(arena, COUNTERS, result)
