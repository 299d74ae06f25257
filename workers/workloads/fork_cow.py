"""A fork / copy-on-write storm: a task with touched memory forks, parent and child
each write their half, the child exits.

Each CPU's task maps `size_kb` of private anonymous memory and writes every page once
(set-up, in the first batch).  Operation = one fork cycle:
  1. fork(): the child gets a copy of the address space -- the region's object gets two
     shadows, every PTE is copied write-protected into the child and write-protected in
     the parent, the parent's TLBs are flushed (fork.py: dup_mm);
  2. the parent writes a new stamp into every page of its half (COW faults: copies, the
     child still maps the old pages);
  3. the child runs on this CPU (switch_to: switch_mm), writes its own stamp into every
     page of the other half (COW faults: copies), reads the whole region back, exits
     (exit_mmap: its shadow goes, the pages only it held are freed) and is reaped;
  4. the parent runs again and reads the whole region back.
The halves alternate between cycles (even cycles: the parent writes the first half),
so each side also writes pages the other side wrote in the previous cycle.  Every cycle
puts one more shadow object over the parent's region (the exited child's shadow goes,
the parent's stays), so the parent's chain deepens by one per cycle: the workload
exercises the chain walk and the collapse at `[vm] shadow_depth_limit`.

In threads mode the forking task is one thread of the shared mm: fork copies everyone's
memory, write-protects every thread's pages (their next writes fault too) and shoots
down every CPU running the mm; each thread verifies only its own region.

Verification: the child must see the parent's pre-fork data in the parent's half (not
the parent's new writes) and its own stamps in its half; the parent must see its new
stamps in its half and its pre-fork data in the child's half (never the child's
writes).  Stamps are (cpu << 48 | cycle << 20 | page index), with bit 47 set for the
child's.  Mismatches count as `corrupt`.  Counters: forks (cycles), cow_writes (pages
written after a fork, both sides), corrupt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.task import task_free
from workers.workloads._common import counter_index
from workers.workloads._vm import PG, U64, cpu_vm, recover, setup_mm, stamp_off, vm_report, vmwork_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

COUNTERS: tuple[str, ...] = ("forks", "cow_writes", "corrupt")
CHILD = 1 << 47


@dataclass(frozen=True, slots=True)
class Params:
    size_kb: int = 1024           # the region forked (at least 2 pages: one per side)

    def validate(self) -> str | None:
        if not 8 <= self.size_kb <= 1 << 22 or self.size_kb % 4:
            return f"size_kb = {self.size_kb}: a multiple of 4 in 8..4194304 (at least one page per side)"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(nr_cpus)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    setup_mm(arena)


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, parent = cpu_vm(arena, cpu, "fork_cow")
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_forks, c_cow, c_corrupt = c0, c0 + 1, c0 + 2
    npages = params.size_kb >> 2
    half = npages // 2
    halves = (range(half), range(half, npages))
    store64, load64 = vm.store64, vm.load64
    expect = [cpu << 48 | i for i in range(npages)]        # what the parent's pages hold
    st = {"addr": 0, "cycle": 0}

    def region() -> int:
        if not st["addr"]:
            addr = vm.mmap(0, npages * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
            for i in range(npages):
                store64(addr + i * PG + stamp_off(i), expect[i])
            st["addr"] = addr
        return st["addr"]

    def read_back(addr: int, want: list[int]) -> int:
        return sum(1 for i in range(npages) if load64(addr + i * PG + stamp_off(i)) != want[i])

    def cycle() -> None:
        addr = region()
        st["cycle"] += 1
        gen = st["cycle"] << 20 & U64
        mine, theirs = halves[st["cycle"] & 1], halves[(st["cycle"] & 1) ^ 1]
        child = vm.fork()
        new = list(expect)
        for i in mine:                                     # 2. the parent's half
            new[i] = (cpu << 48 | gen | i) & U64
            store64(addr + i * PG + stamp_off(i), new[i])
        vm.switch_to(child)                                # 3. the child's turn
        seen = list(expect)
        for i in theirs:
            seen[i] = (cpu << 48 | CHILD | gen | i) & U64
            store64(addr + i * PG + stamp_off(i), seen[i])
        bad = read_back(addr, seen)
        vm.exit()
        task_free(arena, child)                            # reaped (wait4)
        vm.switch_to(parent)                               # 4. the parent again
        bad += read_back(addr, new)
        expect[:] = new
        if bad:
            q[c_corrupt] += bad
        q[c_cow] += npages
        q[c_forks] += 1

    def batch(n: int) -> None:
        for _ in range(n):
            cycle()

    def teardown() -> None:
        if st["addr"]:
            q[c_corrupt] += read_back(st["addr"], expect)
            vm.munmap(st["addr"], npages * PG)
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.park_poll  # type: ignore[attr-defined]
    batch.vm = vm  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    return vm_report(arena, COUNTERS, result)
