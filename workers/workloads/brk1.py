"""will-it-scale brk1: grow the program break by one page and shrink it back.

Models tests/brk1.c: addr = sbrk(0); loop { brk(addr + page); brk(addr) }, asserting
that every brk succeeds.  Operation = one brk call (will-it-scale adds 2 per grow +
shrink pair).  A grow expands the heap VMA (do_brk_flags merges with it), a shrink
splits the page off and unmaps it (do_vmi_munmap), both under mmap_lock for write; the
new page is not touched, as in will-it-scale.  In threads mode the break is the one
mm's: every thread moves it from the break it saw at start, as will-it-scale's threads
do, so their grows and shrinks interleave (every call still succeeds).

Verification (`verify`): every brk must return the break asked for (Linux returns the
old break when it refuses: counted as `refused`, which also counts as corrupt).  Below
the moving break sits a heap page made before the loop (processes: by each task;
threads: by the coordinator at set-up, so every thread's start break is above it) in
which each CPU keeps a stamp word (at offset 8 * cpu); it is checked after every shrink
-- a shrink must never unmap or clear memory below the break.  `probe_every` = k > 0
(processes mode only: in threads mode another thread may shrink the page away) reads
the page of every k-th grow, which must be zero (the previous shrink freed it), writes
a stamp and reads it back.  Counters: brks, refused, probes, corrupt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.vm import VM
from workers.workloads._common import counter_index
from workers.workloads._vm import PG, cpu_vm, recover, setup_mm, shared_mm, vm_mode, vm_report, vmwork_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

COUNTERS: tuple[str, ...] = ("brks", "refused", "probes", "corrupt")
MAX_CPUS_STAMPED = PG // 8


@dataclass(frozen=True, slots=True)
class Params:
    verify: bool = True
    probe_every: int = 0          # touch the grown page on every k-th grow (processes mode; 0: never)

    def validate(self) -> str | None:
        if not 0 <= self.probe_every <= 1 << 20:
            return f"probe_every = {self.probe_every}: allowed 0..1048576 (0: never touch the new page)"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(nr_cpus)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    """Threads mode: the shared heap page below every thread's start break."""
    setup_mm(arena)
    mm = shared_mm(arena)
    if mm <= 0:
        return
    vm = VM(arena, 0)
    try:
        start = arena.u64[(T.mm_off(arena, mm) + T.M_START_BRK) >> 3]
        if vm.sys.brk(mm, start + PG) != start + PG:
            raise T.VMError("ENOMEM", f"brk1 set-up: the heap page at {start:#x} was refused")
    finally:
        vm.leave()


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, "brk1")
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_brks, c_refused, c_probes, c_corrupt = c0, c0 + 1, c0 + 2, c0 + 3
    verify, every = params.verify, params.probe_every
    threads = vm_mode(arena) == "threads"
    brk, load64, store64 = vm.brk, vm.load64, vm.store64
    heap = q[(T.mm_off(arena, vm.current_mm()) + T.M_START_BRK) >> 3]
    if not threads and brk(heap + PG) != heap + PG:
        raise T.VMError("ENOMEM", f"brk1 on cpu{cpu}: the heap page at {heap:#x} was refused")
    mine = heap + 8 * (cpu % MAX_CPUS_STAMPED)
    stamp = cpu << 48 | 0xB7C1
    if verify:
        store64(mine, stamp)
    base = brk(0)                               # sbrk(0)
    probing = every > 0 and not threads
    st = {"grown": False, "n": 0, "seq": 0}

    def probe() -> int:
        va = base
        q[c_probes] += 1
        bad = load64(va) != 0
        st["seq"] += 1
        v = cpu << 48 | st["seq"]
        store64(va + PG - 8, v)
        return bad + (load64(va + PG - 8) != v)

    def batch(n: int) -> None:
        for _ in range(n):
            want = base if st["grown"] else base + PG
            got = brk(want)
            bad = 0
            if got != want:
                q[c_refused] += 1
                bad += 1
            st["grown"] = not st["grown"]
            if verify and not st["grown"]:
                bad += load64(mine) != stamp
            if probing and st["grown"]:
                st["n"] += 1
                if st["n"] == every:
                    st["n"] = 0
                    bad += probe()
            if bad:
                q[c_corrupt] += bad
            q[c_brks] += 1

    def teardown() -> None:
        if verify and load64(mine) != stamp:
            q[c_corrupt] += 1
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.park_poll  # type: ignore[attr-defined]
    batch.vm = vm  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    return vm_report(arena, COUNTERS, result)
