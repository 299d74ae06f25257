"""VMA split and merge, in the spirit of Linux's tools/testing/vma: which neighbours a new
or changed range merges with, and which it must not (flags, files, offsets, objects)."""

from __future__ import annotations

import pytest

from aerosync.mm.pmm.check import check
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.vm import VM

PG = 4096
RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
FIX = M.MAP_FIXED
BASE = 0x40000000


@pytest.fixture
def cpu(machine):
    a = machine(nr_pages=4096, nr_cpus=2, slab=True, vm={})
    c = VM(a, 0)
    c.switch_to(c.task_create("t"))
    yield c
    c.exit()
    c.leave()
    r = check(a)
    assert r.ok, r.violations[:5]


def layout(c: VM) -> list[tuple[int, int, int]]:
    q = c.arena.u64
    return [((q[(v + V.V_START) >> 3] - BASE) // PG, (q[(v + V.V_END) >> 3] - BASE) // PG,
             q[(v + V.V_FLAGS) >> 3] & 0xF) for _f, _l, v in c.vmas.tree(c.current_mm()).mt_for_each()]


def map_count(c: VM) -> int:
    return c.arena.u64[(T.mm_off(c.arena, c.current_mm()) + T.M_MAP_COUNT) >> 3]


def test_new_range_merges_with_prev(cpu) -> None:
    cpu.mmap(BASE, 2 * PG, RW, ANON | FIX)
    cpu.mmap(BASE + 2 * PG, 3 * PG, RW, ANON | FIX)
    assert layout(cpu) == [(0, 5, 3)] and map_count(cpu) == 1


def test_new_range_merges_after_prev_faulted(cpu) -> None:
    cpu.mmap(BASE, 2 * PG, RW, ANON | FIX)
    cpu.store64(BASE, 1)                        # prev has its object now, alone
    cpu.mmap(BASE + 2 * PG, 2 * PG, RW, ANON | FIX)
    assert layout(cpu) == [(0, 4, 3)]
    cpu.store64(BASE + 3 * PG, 2)
    assert cpu.load64(BASE) == 1 and cpu.load64(BASE + 3 * PG) == 2


def test_different_flags_do_not_merge(cpu) -> None:
    cpu.mmap(BASE, 2 * PG, RW, ANON | FIX)
    cpu.mmap(BASE + 2 * PG, 2 * PG, M.PROT_READ, ANON | FIX)
    cpu.mmap(BASE + 4 * PG, 2 * PG, RW, M.MAP_SHARED | M.MAP_ANONYMOUS | FIX)
    assert layout(cpu) == [(0, 2, 3), (2, 4, 1), (4, 6, 0xB)]


def test_shared_object_after_fork_blocks_merge(cpu) -> None:
    cpu.mmap(BASE, 2 * PG, RW, ANON | FIX)
    cpu.store64(BASE, 1)
    child = cpu.fork()                          # prev's object now has shadows: not "alone"
    cpu.mmap(BASE + 2 * PG, 2 * PG, RW, ANON | FIX)
    assert len(layout(cpu)) in (1, 2)           # merging is allowed only onto an exclusive object
    cpu.store64(BASE + 2 * PG, 3)
    assert cpu.load64(BASE) == 1
    me = cpu.current_task()
    cpu.switch_to(child)
    assert cpu.load64(BASE) == 1
    cpu.exit()
    cpu.reap(child)
    cpu.switch_to(me)


def test_file_mappings_merge_only_with_contiguous_offsets(cpu) -> None:
    fid = cpu.file_create("f", 16 * PG)
    cpu.mmap(BASE, 2 * PG, M.PROT_READ, M.MAP_SHARED | FIX, fid, 0)
    cpu.mmap(BASE + 2 * PG, 2 * PG, M.PROT_READ, M.MAP_SHARED | FIX, fid, 2 * PG)     # contiguous
    cpu.mmap(BASE + 4 * PG, 2 * PG, M.PROT_READ, M.MAP_SHARED | FIX, fid, 8 * PG)     # a jump
    assert [(s, e) for s, e, _ in layout(cpu)] == [(0, 4), (4, 6)]


def test_mprotect_middle_then_back_merges_three_into_one(cpu) -> None:
    cpu.mmap(BASE, 9 * PG, RW, ANON | FIX)
    for i in range(9):
        cpu.store64(BASE + i * PG, i + 1)
    cpu.mprotect(BASE + 3 * PG, 3 * PG, M.PROT_READ)
    assert layout(cpu) == [(0, 3, 3), (3, 6, 1), (6, 9, 3)] and map_count(cpu) == 3
    cpu.mprotect(BASE + 3 * PG, 3 * PG, RW)
    assert layout(cpu) == [(0, 9, 3)] and map_count(cpu) == 1
    assert [cpu.load64(BASE + i * PG) for i in range(9)] == list(range(1, 10))


def test_mprotect_refuses_beyond_may_flags(cpu) -> None:
    fid = cpu.file_create("ro", 4 * PG)
    cpu.mmap(BASE, 2 * PG, M.PROT_READ, M.MAP_SHARED | FIX, fid, 0)
    q = cpu.arena.u64
    v = cpu.vmas.load(cpu.current_mm(), BASE)
    q[(v + V.V_FLAGS) >> 3] &= ~V.VM_MAYWRITE            # as a read-only file would be mapped
    with pytest.raises(M.VMError, match="EACCES"):
        cpu.mprotect(BASE, 2 * PG, RW)
    assert layout(cpu) == [(0, 2, 9)]


def test_munmap_spanning_several_vmas_splits_the_ends(cpu) -> None:
    cpu.mmap(BASE, 4 * PG, RW, ANON | FIX)
    cpu.mmap(BASE + 4 * PG, 4 * PG, M.PROT_READ, ANON | FIX)
    cpu.mmap(BASE + 8 * PG, 4 * PG, RW, ANON | FIX)
    cpu.munmap(BASE + 2 * PG, 8 * PG)
    assert layout(cpu) == [(0, 2, 3), (10, 12, 3)] and map_count(cpu) == 2


def test_madvise_flags_split_and_merge(cpu) -> None:
    cpu.mmap(BASE, 6 * PG, RW, ANON | FIX)
    cpu.madvise(BASE + 2 * PG, 2 * PG, M.MADV_RANDOM)
    q = cpu.arena.u64
    flags = [q[(v + V.V_FLAGS) >> 3] & (V.VM_RAND_READ | V.VM_SEQ_READ)
             for _f, _l, v in cpu.vmas.tree(cpu.current_mm()).mt_for_each()]
    assert flags == [0, V.VM_RAND_READ, 0]
    cpu.madvise(BASE + 2 * PG, 2 * PG, M.MADV_NORMAL)
    assert layout(cpu) == [(0, 6, 3)]


def test_mprotect_back_merges_a_part_without_an_object(cpu) -> None:
    """A range made read-only and read (its part gets an object only if touched) merges
    back with an untouched neighbour that has none: is_mergeable_anon_vma lets a NULL
    anon_vma merge -- the objectless part takes the other's object.  (Before, the left
    part without an object and the middle with one stayed two VMAs for good, and a later
    mremap of the whole region failed with EFAULT.)"""
    cpu.mmap(BASE, 6 * PG, RW, ANON | FIX)
    cpu.mprotect(BASE + 2 * PG, 2 * PG, M.PROT_READ)
    cpu.store64(BASE + 4 * PG, 0)                               # not the left part:
    cpu.mprotect(BASE + 2 * PG, 2 * PG, RW)                     # ... right and middle touched
    cpu.store64(BASE + 2 * PG, 5)
    assert layout(cpu) == [(0, 6, 3)]
    assert map_count(cpu) == 1
    new = cpu.mremap(BASE, 6 * PG, 6 * PG, M.MREMAP_MAYMOVE | M.MREMAP_FIXED, BASE + 64 * PG)
    assert cpu.load64(new + 2 * PG) == 5


@pytest.mark.parametrize("move", [True, False])
def test_mremap_growth_never_aliases_a_split_off_part(cpu, move: bool) -> None:
    """A private region's pages are keyed by index in its object, and the parts a split
    leaves share it.  Growing one part (moved away, or in place after its neighbour
    left) over indices another part covers must give new zeroed memory, not that part's
    pages: the growth becomes a VMA of its own.  (It aliased: the grown page read 2 --
    the split-off part's -- and R4 broke at the exit.)"""
    cpu.mmap(BASE, 3 * PG, RW, ANON | FIX)
    for i in range(3):
        cpu.store64(BASE + i * PG, i + 1)
    if move:
        cpu.mmap(BASE + 3 * PG, PG, M.PROT_READ, ANON | FIX)     # nothing free after the region
        cpu.mprotect(BASE + PG, PG, M.PROT_READ)                  # three parts: RW, R, RW
        a = cpu.mremap(BASE, PG, 2 * PG, M.MREMAP_MAYMOVE)       # part 0 moves and grows
        assert a != BASE
    else:
        cpu.mremap(BASE + PG, PG, PG, M.MREMAP_MAYMOVE | M.MREMAP_FIXED, BASE + 16 * PG)  # part 1 leaves
        a = cpu.mremap(BASE, PG, 2 * PG, 0)                        # part 0 grows in place
        assert a == BASE
    assert cpu.load64(a) == 1 and cpu.load64(a + PG) == 0          # new memory, not part 1's page
    cpu.store64(a + PG, 99)
    elsewhere = BASE + 16 * PG if not move else BASE + PG
    assert cpu.load64(elsewhere) == 2                               # part 1 untouched
    cpu.munmap(a, 2 * PG)


def test_mremap_move_keeps_data_and_object(cpu) -> None:
    cpu.mmap(BASE, 4 * PG, RW, ANON | FIX)
    cpu.mmap(BASE + 4 * PG, PG, M.PROT_READ, ANON | FIX)     # a neighbour blocks growth
    for i in range(4):
        cpu.store64(BASE + i * PG, 70 + i)
    new = cpu.mremap(BASE, 4 * PG, 6 * PG, M.MREMAP_MAYMOVE)
    assert [cpu.load64(new + i * PG) for i in range(4)] == [70, 71, 72, 73]
    assert cpu.load64(new + 5 * PG) == 0
    fixed = cpu.mremap(new, 6 * PG, 6 * PG, M.MREMAP_MAYMOVE | M.MREMAP_FIXED, BASE + 64 * PG)
    assert fixed == BASE + 64 * PG and cpu.load64(fixed + 3 * PG) == 73
    with pytest.raises(M.VMError, match="EINVAL"):
        cpu.mremap(fixed, PG, PG, M.MREMAP_FIXED, BASE)       # FIXED without MAYMOVE
