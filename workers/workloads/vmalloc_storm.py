"""vmalloc storm: each CPU vmallocs areas from one page to several MiB and vfrees them,
a share of them on another CPU.

Models the kernel's heavy vmalloc users (module loading, BPF, big hash tables: sizes
log-uniform from `min_kb` to `max_kb`) against mm/vmalloc.c: small requests from the
CPU's vmap_blocks, large ones their own areas (a `huge_pct` share through vmalloc_huge),
lazy frees purged in batches with one TLB shootdown each.  Operation = one vmalloc; when
`max_held` areas are held one is vfree'd first -- by this CPU, or (`cross_cpu_pct` %)
handed to the next CPU's ring for it to vfree (a remote vb_free / a lazy area queued on
a slice another CPU allocates from).

Crash tolerance ([run] on_cpu_death): each CPU's held areas are also in its row of the
"vmheld" section (written when the area is had, cleared just before it is vfree'd or
handed on), and handed areas are taken from the ring one at a time and vfree'd at once
-- so when a CPU dies, `recover` vfrees what its row holds (the vfree in flight is its
own vm_vfree / vm_vb_free record's) and its task exits; report() vfrees the rows of
CPUs that stopped dead.

Verification: every area gets a stamp word (cpu << 48 | seq) written through the
kernel's own access path (mm/vm/kaccess.py: the kernel TLB, init_mm's tables) at its
first and its last 8 bytes; both are read back before the area is freed (`corrupt`
counts mismatches, so a TLB entry surviving a purge that re-used its address would show
up here).  Counters: vmallocs, vfrees, handed (to the next CPU), failed (vmalloc gave
0), corrupt; the report adds the machine's purges and their TLB flushes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.vm import vmalloc_layout as VL
from workers.workloads._common import counter_index
from workers.workloads._pages import Ring, ring_section
from workers.workloads._vm import cpu_vm

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

COUNTERS: tuple[str, ...] = ("vmallocs", "vfrees", "handed", "failed", "corrupt")
SECTION = "vmring"
HELD = "vmheld"                  # per CPU: max_held u64 slots, the areas it holds (0: none)
_C_VMALLOC, _C_VFREE, _C_HANDED, _C_FAILED, _C_CORRUPT = range(5)


@dataclass(frozen=True, slots=True)
class Params:
    min_kb: int = 4               # smallest request (one page)
    max_kb: int = 4096            # largest request (sizes log-uniform in between)
    max_held: int = 32            # areas a CPU holds before it frees one
    cross_cpu_pct: int = 25       # % of the frees done by the next CPU
    huge_pct: int = 10            # % of the requests of 2 MiB or more made with vmalloc_huge
    verify: bool = True

    def validate(self) -> str | None:
        if not 1 <= self.min_kb <= self.max_kb <= 1 << 20:
            return f"min_kb = {self.min_kb}, max_kb = {self.max_kb}: allowed 1 <= min_kb <= max_kb <= 1048576"
        if not 1 <= self.max_held <= 4096:
            return f"max_held = {self.max_held}: allowed 1..4096"
        for k in ("cross_cpu_pct", "huge_pct"):
            if not 0 <= getattr(self, k) <= 100:
                return f"{k} = {getattr(self, k)}: allowed 0..100"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [ring_section(nr_cpus, SECTION), SectionSpec(HELD, nr_cpus * params.max_held * 8)]


def _row(arena: Arena, cpu: int, max_held: int) -> int:
    """The u64 index of CPU cpu's first held slot."""
    return (arena.off(HELD) >> 3) + cpu * max_held


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    return None


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, "vmalloc_storm")
    k = vm.kernel
    v, kmem = k.vmalloc, k.kmem
    vmalloc, vmalloc_huge, vfree = v.vmalloc, v.vmalloc_huge, v.vfree
    store64, load64 = kmem.store64, kmem.load64
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    nr_cpus = int(arena.config["nr_cpus"])
    ring = Ring(arena, cpu, nr_cpus, SECTION)
    push, pop = ring.push, ring.pop
    row = _row(arena, cpu, params.max_held)
    free_slots = list(range(params.max_held - 1, -1, -1))
    lo, hi = math.log(params.min_kb * 1024), math.log(params.max_kb * 1024)
    cross = params.cross_cpu_pct if nr_cpus > 1 else 0
    huge_pct, verify, max_held = params.huge_pct, params.verify, params.max_held
    randrange, uniform = rng.randrange, rng.uniform
    held: list[tuple[int, int, int, int]] = []     # (addr, size, stamp, slot)
    seq = 0

    def check(addr: int, size: int, value: int) -> None:
        if verify and (load64(addr) != value or load64(addr + ((size - 8) & ~7)) != value):
            q[c0 + _C_CORRUPT] += 1

    def release(addr: int, size: int, value: int, slot: int) -> None:
        check(addr, size, value)
        q[row + slot] = 0                              # off the row first (no fault point until the
        free_slots.append(slot)                        # push or the vfree: a death leaks nothing)
        if cross and randrange(100) < cross and push(addr):
            q[c0 + _C_HANDED] += 1
            return
        vfree(addr)
        q[c0 + _C_VFREE] += 1

    def batch(n: int) -> None:
        nonlocal seq
        while n > 1:                               # areas another CPU handed us, one by one
            addr = pop()
            if addr < 0:
                break
            vfree(addr)
            q[c0 + _C_VFREE] += 1
        for _ in range(n):
            if len(held) >= max_held:
                release(*held.pop(randrange(len(held))))
            size = max(8, int(math.exp(uniform(lo, hi))) & ~7)
            if size >= VL.PMD_SIZE and randrange(100) < huge_pct:
                addr = vmalloc_huge(size)
            else:
                addr = vmalloc(size)
            if not addr:
                q[c0 + _C_FAILED] += 1
                continue
            seq += 1
            value = cpu << 48 | seq
            if verify:
                store64(addr, value)
                store64(addr + ((size - 8) & ~7), value)
            slot = free_slots.pop()
            q[row + slot] = addr
            held.append((addr, size, value, slot))
            q[c0 + _C_VMALLOC] += 1

    def teardown() -> None:
        for addr, size, value, slot in held:
            check(addr, size, value)
            q[row + slot] = 0
            vfree(addr)
            q[c0 + _C_VFREE] += 1
        held.clear()
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.poll  # type: ignore[attr-defined]
    return batch


def recover(arena: Arena, params: Params, cpu: int, records: object, mm: object, slub: object) -> dict[str, int]:
    """[run] on_cpu_death: vfree the areas dead CPU `cpu` held (its row of "vmheld"), as
    that CPU (recovery's handle), then its task exits (mm/vm/recover.py).  Returns the
    areas (objects) and their pages given back."""
    from aerosync.mm.vm.recover import vm_recover
    from aerosync.mm.vm.vm import VM

    q = arena.u64
    row = _row(arena, cpu, params.max_held)
    nr_pages = (arena.off("vmalloc") + VL.H_NR_PAGES) >> 3
    before = q[nr_pages]
    vm = VM(arena, cpu, mm=mm)
    n = 0
    try:
        for j in range(params.max_held):
            addr = q[row + j]
            if addr:
                q[row + j] = 0
                vm.kernel.vmalloc.vfree(addr)
                n += 1
    finally:
        vm.leave()
    pages = before - q[nr_pages]                       # (the world is stopped: only ours)
    vm_recover(arena, cpu, mm, slub)
    return {"pages": pages, "objects": n}


def report(arena: Arena, params: Params, result: dict) -> dict:
    """Areas still in the rings, and in the rows of CPUs that stopped dead, are vfree'd
    here (the coordinator acting as CPU 0)."""
    from aerosync.mm.vm.vm import VM
    from aerosync.mm.vm.vmalloc import vmalloc_meminfo

    nr_cpus = int(arena.config["nr_cpus"])
    vm = VM(arena, 0)
    left = 0
    try:
        q = arena.u64
        for c in range(nr_cpus):
            for addr in Ring(arena, c, nr_cpus, SECTION).pop_all():
                vm.kernel.vmalloc.vfree(addr)
                left += 1
            row = _row(arena, c, params.max_held)
            for j in range(params.max_held):
                if q[row + j]:
                    vm.kernel.vmalloc.vfree(q[row + j])
                    q[row + j] = 0
                    left += 1
    finally:
        vm.leave()
    tot = {k: sum(c["counters"][k] for c in result["cpus"]) for k in COUNTERS}
    base = arena.off("vmalloc")
    return {**tot, "vfreed_after_run": left, "purge_flushes": arena.u64[(base + VL.H_NR_FLUSHES) >> 3],
            "purges_total": arena.u64[(base + VL.H_NR_PURGES) >> 3], **vmalloc_meminfo(arena)}
