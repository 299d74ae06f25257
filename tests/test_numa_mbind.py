"""mbind(2): VMA policies split and merge with their VMAs, MPOL_MF_STRICT / MOVE /
MOVE_ALL, holes, set_mempolicy_home_node (mm/mempolicy.c do_mbind, mbind_range,
queue_pages_range)."""

from __future__ import annotations

import pytest

from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.pmm.page_alloc import MM
from aerosync.mm.pmm.vm_event import fold_vm_events
from aerosync.mm.vm.mm_types import VMError
from tests.numa_helpers import ANON, PG, RW, cpu, done, node_of, numa_machine, pfn_at


def _vmas(vm) -> list[tuple[int, int, str]]:
    """(start, end, policy text) of every VMA of the running task."""
    from aerosync.mm.numa.vm_policy import policy_text

    q = vm.arena.u64
    out = []
    for _f, _l, v in vm.vmas.tree(vm.cur[1]).mt_for_each(0, (1 << 64) - 1):
        out.append((q[v >> 3], q[(v + 8) >> 3], policy_text(vm.numa.policy.decode, q[(v + 96) >> 3])))
    return out


def test_mbind_splits_vmas_and_merges_them_back(machine) -> None:
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 10 * PG, RW, ANON)
    n.mbind(addr + 3 * PG, 4 * PG, MP.MPOL_BIND, 0b10)
    assert _vmas(vm) == [(addr, addr + 3 * PG, "default"), (addr + 3 * PG, addr + 7 * PG, "bind:1"),
                         (addr + 7 * PG, addr + 10 * PG, "default")]
    n.mbind(addr + 7 * PG, 3 * PG, MP.MPOL_BIND, 0b10)            # same policy next door: merged
    assert _vmas(vm) == [(addr, addr + 3 * PG, "default"), (addr + 3 * PG, addr + 10 * PG, "bind:1")]
    n.mbind(addr, 10 * PG, MP.MPOL_DEFAULT)                       # no policy anywhere: one VMA again
    assert _vmas(vm) == [(addr, addr + 10 * PG, "default")]
    for p in range(10):
        vm.store64(addr + p * PG, p)
    n.mbind(addr + 4 * PG, 2 * PG, MP.MPOL_INTERLEAVE, 0b11)      # a policy over pages that exist
    assert [vm.load64(addr + p * PG) for p in range(10)] == list(range(10))
    assert len(_vmas(vm)) == 3
    done(a, vm)


def test_mbind_refuses_holes_and_bad_arguments(machine) -> None:
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 6 * PG, RW, ANON)
    vm.munmap(addr + 2 * PG, PG)
    with pytest.raises(VMError) as ei:
        n.mbind(addr, 6 * PG, MP.MPOL_BIND, 0b1)
    assert ei.value.errno_name == "EFAULT" and "not mapped" in str(ei.value)
    n.mbind(addr, 6 * PG, MP.MPOL_DEFAULT)                        # default: a hole is fine
    for args, errno in (((addr + 1, PG, MP.MPOL_BIND, 1), "EINVAL"), ((addr, PG, MP.MPOL_BIND, 1, 0x80), "EINVAL"),
                        ((addr, PG, MP.MPOL_BIND, 0), "EINVAL"), ((addr, PG, MP.MPOL_BIND, 0b100), "EINVAL"),
                        ((addr + 2 * PG, PG, MP.MPOL_DEFAULT), "EFAULT")):
        with pytest.raises(VMError) as ei:
            n.mbind(*args)
        assert ei.value.errno_name == errno, args
    assert n.mbind(addr, 0, MP.MPOL_BIND, 1) == 0
    done(a, vm)


def test_strict_move_and_move_all(machine) -> None:
    """STRICT alone fails on a misplaced page (EIO) without changing anything; MOVE moves
    the pages (pgmigrate_success) and applies the policy; a page mapped by a fork child
    too is skipped by MOVE (not a failure), and STRICT then reports it stays misplaced."""
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 4 * PG, RW, ANON)
    for p in range(4):
        vm.store64(addr + p * PG, 10 + p)
    with pytest.raises(VMError) as ei:
        n.mbind(addr, 4 * PG, MP.MPOL_BIND, 0b10, MP.MPOL_MF_STRICT)
    assert ei.value.errno_name == "EIO"
    assert _vmas(vm) == [(addr, addr + 4 * PG, "default")]         # nothing changed
    ok0 = fold_vm_events(a)["pgmigrate_success"]
    assert n.mbind(addr, 2 * PG, MP.MPOL_BIND, 0b10, MP.MPOL_MF_MOVE | MP.MPOL_MF_STRICT) == 2
    assert [node_of(vm, addr + p * PG) for p in range(4)] == [1, 1, 0, 0]
    assert fold_vm_events(a)["pgmigrate_success"] == ok0 + 2
    assert [vm.load64(addr + p * PG) for p in range(4)] == [10, 11, 12, 13]
    child = vm.fork()                                             # pages 2, 3 now mapped twice
    assert n.mbind(addr + 2 * PG, 2 * PG, MP.MPOL_BIND, 0b10, MP.MPOL_MF_MOVE) == 0
    with pytest.raises(VMError) as ei:
        n.mbind(addr + 2 * PG, 2 * PG, MP.MPOL_BIND, 0b10, MP.MPOL_MF_MOVE_ALL | MP.MPOL_MF_STRICT)
    assert ei.value.errno_name == "EIO"                           # shared with the child: not moved here
    vm.exit(child)
    done(a, vm)


def test_mbind_move_interleaves_by_offset(machine) -> None:
    """MPOL_MF_MOVE under interleave puts each existing page where a fault at its address
    would: the same nodes as pages faulted in after the mbind."""
    a = numa_machine(machine, nr_nodes=4, nr_cpus=4, nr_pages=16384)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 16 * PG, RW, ANON)
    for p in range(8):
        vm.store64(addr + p * PG, p)
    assert n.mbind(addr, 16 * PG, MP.MPOL_INTERLEAVE, 0b1110, MP.MPOL_MF_MOVE) == 8
    for p in range(8, 16):
        vm.store64(addr + p * PG, p)
    assert [node_of(vm, addr + p * PG) for p in range(16)] == [(1, 2, 3)[p % 3] for p in range(16)]
    done(a, vm)


def test_set_mempolicy_home_node(machine) -> None:
    a = numa_machine(machine, nr_nodes=4, nr_cpus=4, nr_pages=16384)
    vm, n, _ = cpu(a, 0)
    order = MM(a, 0).node_order[0]
    addr = vm.mmap(0, 4 * PG, RW, ANON)
    n.mbind(addr, 2 * PG, MP.MPOL_BIND, 0b1110)
    n.set_mempolicy_home_node(addr, 4 * PG, 3)                     # the policy-less half is left alone
    vm.store64(addr, 1)
    vm.store64(addr + 2 * PG, 1)
    assert node_of(vm, addr) == 3
    assert node_of(vm, addr + 2 * PG) == 0
    assert order[0] == 0
    n.mbind(addr + 2 * PG, 2 * PG, MP.MPOL_INTERLEAVE, 0b11)
    with pytest.raises(VMError) as ei:
        n.set_mempolicy_home_node(addr, 4 * PG, 1)
    assert ei.value.errno_name == "EOPNOTSUPP"
    with pytest.raises(VMError):
        n.set_mempolicy_home_node(addr, PG, 9)
    done(a, vm)


def test_mbind_keeps_page_identity_when_nothing_moves(machine) -> None:
    """A page already on a policy node is not queued (MPOL_MF_INVERT)."""
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    addr = vm.mmap(0, 2 * PG, RW, ANON)
    vm.store64(addr, 5)
    pfn = pfn_at(vm, addr)
    assert n.mbind(addr, 2 * PG, MP.MPOL_BIND, 0b01, MP.MPOL_MF_MOVE | MP.MPOL_MF_STRICT) == 0
    assert pfn_at(vm, addr) == pfn
    done(a, vm)
