"""VMA churn: mprotect, mremap and madvise over each task's own region, every page's
contents checked against a model.

Models the address-space calls that reshape VMAs rather than make or drop whole ones
(mm/mprotect.c, mm/mremap.c, mm/madvise.c): what a JIT flipping code pages between
writable and executable, a realloc growing with mremap, or an allocator giving memory
back with MADV_DONTNEED does to the VMA tree.  Each CPU's task maps a `pages`-page
anonymous region at a fixed slot of its own and runs, per operation, one of:
  write     store a stamp word (cpu << 48 | seq) in a random page;
  protect   mprotect a random 1..4-page range read-only (splits: up to three VMAs),
            read one of its pages, then make it writable again (the range merges
            back into one VMA: vma_merge_existing_range);
  dontneed  MADV_DONTNEED a random 1..4-page range (the zap through an mmu_gather,
            the pages removed from the region's object): it reads zero after;
  move      mremap the whole region to the CPU's other slot (MREMAP_FIXED: the
            page tables move, the old VMA goes) -- every `grow_every`-th move also
            grows it by one page and shrinks it back after writing the new page.
`move_pct` and `dontneed_pct` (% of operations) choose; the rest are protects and
writes in equal parts.  In threads mode all regions live in one mm (its mmap_lock is
contended, and neighbouring regions are never adjacent: slots are 256 MiB apart).

Verification: the workload keeps a model of every page's stamp (0: zero).  A protect
reads back one page of its range, a move one random page, a dontneed the first page
of its range; `verify_every` = k > 0 also checks every page of the region on every
k-th operation.  A mismatch counts as corrupt.  Counters: ops, protects, moves,
dontneeds, checks, corrupt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.vm import mmap as M
from workers.workloads._common import counter_index
from workers.workloads._vm import PG, cpu_vm, recover, setup_mm, vm_report, vmwork_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

COUNTERS: tuple[str, ...] = ("ops", "protects", "moves", "dontneeds", "checks", "corrupt")
SLOT_BASE = 0x100000000            # 4 GiB: above the heap, below the mmap base
SLOT_SIZE = 1 << 28                # 256 MiB per slot, two per CPU
_RW = M.PROT_READ | M.PROT_WRITE


@dataclass(frozen=True, slots=True)
class Params:
    pages: int = 64               # the region's size in pages
    move_pct: int = 10            # % of operations that move the region
    dontneed_pct: int = 15        # % of operations that MADV_DONTNEED a range
    grow_every: int = 4           # every k-th move also grows the region by a page (0: never)
    verify_every: int = 0         # check every page on every k-th operation (0: never)

    def validate(self) -> str | None:
        if not 8 <= self.pages <= 8192:
            return f"pages = {self.pages}: allowed 8..8192"
        if not 0 <= self.move_pct <= 100 or not 0 <= self.dontneed_pct <= 100 or \
                self.move_pct + self.dontneed_pct > 100:
            return (f"move_pct = {self.move_pct}, dontneed_pct = {self.dontneed_pct}: each 0..100, "
                    "their sum at most 100")
        if not 0 <= self.grow_every <= 1 << 20 or not 0 <= self.verify_every <= 1 << 20:
            return f"grow_every = {self.grow_every}, verify_every = {self.verify_every}: allowed 0..1048576"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(nr_cpus)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    setup_mm(arena)


def slot(cpu: int, k: int) -> int:
    """The address of CPU cpu's slot k (0 or 1)."""
    return SLOT_BASE + (2 * cpu + k) * SLOT_SIZE


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, "vma_churn")
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_ops, c_prot, c_moves, c_dn, c_checks, c_corrupt = range(c0, c0 + 6)
    n = params.pages
    length = n * PG
    load64, store64 = vm.load64, vm.store64
    mprotect, mremap, madvise = vm.mprotect, vm.mremap, vm.madvise
    randrange = rng.randrange
    move_cut = params.move_pct
    dn_cut = move_cut + params.dontneed_pct
    grow_every, verify_every = params.grow_every, params.verify_every
    model = [0] * n                               # the stamp each page holds (0: zero)
    st = {"addr": slot(cpu, 0), "slot": 0, "seq": 0, "moves": 0, "ops": 0}
    # MAP_FIXED: a CPU restarted after a death in threads mode replaces what its dead
    # thread left in the shared mm (the exit leaves the mm's memory to its other threads)
    vm.mmap(st["addr"], length, _RW, M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED)

    def check(i: int) -> int:
        q[c_checks] += 1
        return load64(st["addr"] + i * PG) != model[i]

    def write(i: int) -> None:
        st["seq"] += 1
        v = cpu << 48 | st["seq"]
        store64(st["addr"] + i * PG, v)
        model[i] = v

    def move() -> int:
        k = 1 - st["slot"]
        dst = slot(cpu, k)
        st["moves"] += 1
        bad = 0
        if grow_every and st["moves"] % grow_every == 0:
            got = mremap(st["addr"], length, length + PG, M.MREMAP_MAYMOVE | M.MREMAP_FIXED, dst)
            st["addr"], st["slot"] = got, k
            bad += load64(got + length) != 0          # the growth is new memory
            store64(got + length, cpu << 48 | 0xFFFF)
            mremap(got, length + PG, length, 0)       # shrink back: the page goes
        else:
            st["addr"] = mremap(st["addr"], length, length, M.MREMAP_MAYMOVE | M.MREMAP_FIXED, dst)
            st["slot"] = k
        q[c_moves] += 1
        return bad + check(randrange(n))

    def batch(nops: int) -> None:
        for _ in range(nops):
            r = randrange(100)
            bad = 0
            if r < move_cut:
                bad = move()
            elif r < dn_cut:
                i, k = randrange(n), 1 + randrange(4)
                k = min(k, n - i)
                madvise(st["addr"] + i * PG, k * PG, M.MADV_DONTNEED)
                for j in range(i, i + k):
                    model[j] = 0
                q[c_dn] += 1
                bad = check(i)
            elif r & 1:
                i, k = randrange(n), 1 + randrange(4)
                k = min(k, n - i)
                a = st["addr"] + i * PG
                mprotect(a, k * PG, M.PROT_READ)
                bad = check(i + randrange(k))
                mprotect(a, k * PG, _RW)
                q[c_prot] += 1
            else:
                write(randrange(n))
            st["ops"] += 1
            if verify_every and st["ops"] % verify_every == 0:
                bad += sum(check(i) for i in range(n))
            if bad:
                q[c_corrupt] += bad
            q[c_ops] += 1

    def teardown() -> None:
        bad = sum(check(i) for i in range(n))
        if bad:
            q[c_corrupt] += bad
        vm.munmap(st["addr"], length)
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.park_poll  # type: ignore[attr-defined]
    batch.vm = vm  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    return vm_report(arena, COUNTERS, result)
