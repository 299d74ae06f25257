"""Task, VMA and shared memory policies of process memory against a small model of
Linux's rules (mm/mempolicy.c), on fake multi-node machines.

The model below is written from the kernel's functions, independently of the
implementation: mpol_new + mpol_set_nodemask (static / relative nodes, nodes_fold +
nodes_onto), policy_nodemask + the zonelist's first allowed node for bind and
preferred-many, interleave_nid / weighted_interleave_nid by the interleave index
(vm_pgoff + the page's offset in the VMA), interleave_nodes' task round robin, and the
precedence VMA policy > task policy > local.  Every test touches pages in a random
order: where a page lands must not depend on it.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa import numa_types as N
from aerosync.mm.pmm.page_alloc import MM
from aerosync.mm.vm.mm_types import H_ZERO_PFN, VMError
from tests.numa_helpers import ANON, PG, RW, SHARED, cpu, done, node_of, numa_machine


# ---------------------------------------------------------------- the model
def m_fold(mask: int, w: int) -> int:                      # bitmap_fold
    return sum(1 << k for k in {n % w for n in range(64) if mask >> n & 1}) if w else 0


def m_onto(mask: int, rel: int) -> int:                     # bitmap_onto
    rel_nodes = [n for n in range(64) if rel >> n & 1]
    return sum(1 << rel_nodes[n] for n in range(64) if mask >> n & 1 and n < len(rel_nodes))


def m_set_nodemask(mode: int, flags: int, nodes: int, allowed: int) -> tuple[int, int] | None:
    """mpol_set_nodemask (+create): (nodes, user) or None for EINVAL."""
    if flags & MP.MPOL_F_RELATIVE_NODES:
        eff = m_onto(m_fold(nodes, bin(allowed).count("1")), allowed)
    else:
        eff = nodes & allowed
    if not eff:
        return None
    user = nodes if flags & (MP.MPOL_F_STATIC_NODES | MP.MPOL_F_RELATIVE_NODES) else allowed
    if mode == MP.MPOL_PREFERRED:
        eff = eff & -eff
    return eff, user


def m_node(mode: int, eff: int, ilx: int, local: int, order: list[int], weights: list[int]) -> int:
    """The node a fault's page lands on (memory plentiful: no fallback)."""
    ns = [n for n in range(64) if eff >> n & 1]
    if mode in (MP.MPOL_DEFAULT, MP.MPOL_LOCAL):
        return local
    if mode == MP.MPOL_PREFERRED:
        return ns[0]
    if mode in (MP.MPOL_BIND, MP.MPOL_PREFERRED_MANY):
        return next(n for n in order if n in ns)           # the zonelist's first allowed node
    if mode == MP.MPOL_INTERLEAVE:
        return ns[ilx % len(ns)]
    t = ilx % sum(weights[n] for n in ns)                    # weighted interleave
    for n in ns:
        if t < weights[n]:
            return n
        t -= weights[n]
    raise AssertionError


def test_relative_and_static_nodemasks_against_the_model() -> None:
    """mpol_set_nodemask / mpol_relative_nodemask (MPOL_F_RELATIVE_NODES folds the user's
    nodes onto the allowed ones; MPOL_F_STATIC_NODES keeps the allowed among them)."""
    rng = random.Random(5)
    for _ in range(400):
        allowed = rng.randrange(1, 1 << 8)
        nodes = rng.randrange(1, 1 << 10)
        mode = rng.choice((MP.MPOL_BIND, MP.MPOL_INTERLEAVE, MP.MPOL_PREFERRED, MP.MPOL_PREFERRED_MANY,
                           MP.MPOL_WEIGHTED_INTERLEAVE))
        flags = rng.choice((0, MP.MPOL_F_STATIC_NODES, MP.MPOL_F_RELATIVE_NODES))
        want = m_set_nodemask(mode, flags, nodes, allowed)
        if want is None:
            with pytest.raises(MP.PolicyError):
                MP.mpol_set_nodemask(mode, flags, nodes, allowed)
        else:
            assert MP.mpol_set_nodemask(mode, flags, nodes, allowed) == want


def test_kernel_examples_of_relative_and_static() -> None:
    """Documentation/admin-guide/mm/numa_memory_policy.rst's examples."""
    # relative: nodes 1,3,5 of a set of allowed nodes {0,1,2,3,4,5,6,7} fold onto them as-is
    assert MP.mpol_relative_nodemask(0b101010, 0xFF) == 0b101010
    # relative 1,3,5 on a cpuset of {2,5,6}: fold mod 3 -> {0,1,2} -> onto {2,5,6}
    assert MP.mpol_relative_nodemask(0b101010, 0b1100100) == 0b1100100
    # static 0,2 on allowed {1,2,3}: only node 2 remains
    assert MP.mpol_set_nodemask(MP.MPOL_BIND, MP.MPOL_F_STATIC_NODES, 0b101, 0b1110) == (0b100, 0b101)
    # rebind: static keeps the user's nodes that are allowed now, relative re-folds them,
    # plain remaps node for node from the old allowed set
    assert MP.mpol_rebind(MP.MPOL_BIND, MP.MPOL_F_STATIC_NODES, 0b100, 0b101, 0b0011) == (0b001, 0b101)
    assert MP.mpol_rebind(MP.MPOL_BIND, MP.MPOL_F_RELATIVE_NODES, 0b11, 0b11, 0b1100) == (0b1100, 0b11)
    assert MP.mpol_rebind(MP.MPOL_INTERLEAVE, 0, 0b0110, 0b1111, 0b11110000) == (0b01100000, 0b11110000)
    assert MP.node_remap(3, 0b1100, 0b110000) == 5 and MP.node_remap(0, 0b1100, 0b110000) == 0


def test_sanitize_and_mpol_new_refusals() -> None:
    for arg in (7, MP.MPOL_BIND | MP.MPOL_F_STATIC_NODES | MP.MPOL_F_RELATIVE_NODES,
                MP.MPOL_INTERLEAVE | MP.MPOL_F_NUMA_BALANCING):
        with pytest.raises(MP.PolicyError):
            MP.sanitize_mpol_flags(arg)
    assert MP.sanitize_mpol_flags(MP.MPOL_BIND | MP.MPOL_F_NUMA_BALANCING)[1] & MP.MPOL_F_MOF
    assert MP.mpol_new_check(MP.MPOL_PREFERRED, 0, 0) == MP.MPOL_LOCAL    # preferred, no node: local
    for mode, flags, nodes in ((MP.MPOL_DEFAULT, 0, 1), (MP.MPOL_LOCAL, 0, 1), (MP.MPOL_BIND, 0, 0),
                               (MP.MPOL_PREFERRED, MP.MPOL_F_STATIC_NODES, 0)):
        with pytest.raises(MP.PolicyError):
            MP.mpol_new_check(mode, flags, nodes)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.lists(st.integers(1, 5), min_size=6, max_size=6), st.integers(0, 10_000))
def test_interleave_nids_against_the_model(n: int, weights: list[int], ilx: int) -> None:
    nodes = (1 << n) - 1
    assert MP.interleave_nid(nodes, ilx, 9) == m_node(MP.MPOL_INTERLEAVE, nodes, ilx, 9, [], weights)
    assert MP.weighted_interleave_nid(nodes, weights, ilx, 9) == m_node(MP.MPOL_WEIGHTED_INTERLEAVE, nodes, ilx, 9,
                                                                        [], weights)


def test_flagged_policy_words_parse_and_print() -> None:
    p = MP.parse_policy("bind=static:0-2", 2)
    assert (p.mode, p.flags, p.nodes, p.user_nodes) == (MP.MPOL_BIND, MP.MPOL_F_STATIC_NODES, 0b11, 0b111)
    assert p.to_text() == "bind=static:0-2" and MP.parse_policy(p.to_text(), 2) == p
    p = MP.parse_policy("interleave=relative:4-5", 4)
    assert p.nodes == 0b11 and p.user_nodes == 0b110000
    p = MP.parse_policy("preferred-many=balancing:0-1", 2)
    assert p.flags == MP.MPOL_F_NUMA_BALANCING and p.to_text() == "preferred-many=balancing:0-1"
    assert MP.mpol_to_str(MP.MPOL_BIND, MP.MPOL_F_STATIC_NODES | MP.MPOL_F_NUMA_BALANCING, 0b11) == \
        "bind=static|balancing:0-1"
    assert MP.mpol_to_str(MP.MPOL_PREFERRED_MANY, 0, 0b101) == "prefer (many):0,2"
    assert MP.mpol_to_str(MP.MPOL_LOCAL, 0, 0) == "local"
    for bad, part in (("bind=sticky:0", "sticky"), ("interleave=balancing:0", "balancing"),
                      ("bind=static|relative:0", "static|relative"), ("bind=static:70", "70")):
        with pytest.raises(MP.PolicyError) as ei:
            MP.parse_policy(bad, 2)
        assert part in str(ei.value)


# ---------------------------------------------------------------- the arena implementation
CASES = [
    ("default", MP.MPOL_DEFAULT, 0, 0),
    ("local", MP.MPOL_LOCAL, 0, 0),
    ("preferred=2", MP.MPOL_PREFERRED, 0, 0b0100),
    ("bind=2-3", MP.MPOL_BIND, 0, 0b1100),
    ("bind=static:1,3,5", MP.MPOL_BIND, MP.MPOL_F_STATIC_NODES, 0b101010),
    ("preferred-many=1,3", MP.MPOL_PREFERRED_MANY, 0, 0b1010),
    ("interleave=0-3", MP.MPOL_INTERLEAVE, 0, 0b1111),
    ("interleave=1,2", MP.MPOL_INTERLEAVE, 0, 0b0110),
    ("interleave=relative:4-6", MP.MPOL_INTERLEAVE, MP.MPOL_F_RELATIVE_NODES, 0b1110000),
    ("interleave=static:1-9", MP.MPOL_INTERLEAVE, MP.MPOL_F_STATIC_NODES, 0b1111111110),
    ("weighted-interleave=0-3", MP.MPOL_WEIGHTED_INTERLEAVE, 0, 0b1111),
]


@pytest.mark.parametrize("where", ["task", "vma"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fault_placement_against_the_model(machine, case, where: str) -> None:
    """Each mode and flag as a task policy (set_mempolicy) and as a VMA policy (mbind):
    64 pages touched in a random order land where the model says; interleave follows the
    page's offset in the VMA (its vm_pgoff included: the VMA starts 5 pages into a
    bigger mapping after a split)."""
    _name, mode, flags, nodes = case
    weights = [3, 1, 2, 1]
    a = numa_machine(machine, nr_nodes=4, nr_cpus=4, nr_pages=16384, numa={"weights": weights})
    vm, n, _tid = cpu(a, 1)                                       # CPU 1: node 1
    order = MM(a, 1).node_order[1]
    addr = vm.mmap(0, 80 * PG, RW, ANON)
    vm.munmap(addr, 5 * PG)                                       # the rest is a VMA at vm_pgoff 5
    base = addr + 5 * PG
    if where == "task":
        n.set_mempolicy(mode | flags, nodes)
    else:
        n.mbind(base, 64 * PG, mode | flags, nodes)
    eff = 0 if mode in (MP.MPOL_DEFAULT, MP.MPOL_LOCAL) else m_set_nodemask(mode, flags, nodes, 0b1111)[0]
    vma = vm.vmas.vma_lookup(vm.cur[1], base)
    pgoff = a.u64[(vma + 40) >> 3]
    pages = list(range(64))
    random.Random(hash(case[0]) & 0xFFFF).shuffle(pages)
    for p in pages:
        vm.store64(base + p * PG, p)
    got = [node_of(vm, base + p * PG) for p in range(64)]
    want = [m_node(mode, eff, pgoff + p, 1, order, weights) for p in range(64)]
    assert got == want
    assert [vm.load64(base + p * PG) for p in range(64)] == list(range(64))
    done(a, vm)


def test_vma_policy_wins_over_the_task_policy_and_the_task_policy_over_local(machine) -> None:
    a = numa_machine(machine, nr_nodes=2)
    vm, n, _ = cpu(a, 0)
    n.set_mempolicy(MP.MPOL_BIND, 0b10)
    addr = vm.mmap(0, 8 * PG, RW, ANON)
    n.mbind(addr + 2 * PG, 4 * PG, MP.MPOL_PREFERRED, 0b01)
    for p in range(8):
        vm.store64(addr + p * PG, p)
    assert [node_of(vm, addr + p * PG) for p in range(8)] == [1, 1, 0, 0, 0, 0, 1, 1]
    n.set_mempolicy(MP.MPOL_DEFAULT)
    b = vm.mmap(0, 2 * PG, RW, ANON)
    vm.store64(b, 1)
    assert node_of(vm, b) == 0                                    # first touch: this CPU's node
    done(a, vm)


def test_task_interleave_round_robin_for_allocations_without_a_vma(machine) -> None:
    """Page-cache pages come from the task policy with no interleave index: il_prev's
    round robin, starting at the first node (do_set_mempolicy's il_prev = MAX - 1), and
    get_mempolicy(MPOL_F_NODE) names the next one."""
    a = numa_machine(machine, nr_nodes=4, nr_cpus=4, nr_pages=16384)
    vm, n, _ = cpu(a, 0)
    n.set_mempolicy(MP.MPOL_INTERLEAVE, 0b1011)
    assert n.get_mempolicy(MP.MPOL_F_NODE) == (0, 0b1011)
    fid = vm.file_create("f", 8 * PG, seed=3)
    addr = vm.mmap(0, 8 * PG, 1, 2, fid, 0)                       # PROT_READ, MAP_PRIVATE
    vm.madvise(addr, 8 * PG, 1)                                   # MADV_RANDOM: no fault-around
    nodes = []
    for p in range(6):
        vm.load64(addr + p * PG)
        nodes.append(node_of(vm, addr + p * PG))
    # readahead reads pages 0-3, then 4-7, in order: one allocation each, round robin
    assert nodes == [0, 1, 3, 0, 1, 3]
    assert n.get_mempolicy(MP.MPOL_F_NODE)[0] == 3                # pages 6 and 7 took 0 and 1
    done(a, vm)


def test_get_mempolicy_modes_flags_and_errors(machine) -> None:
    a = numa_machine(machine, nr_nodes=2)
    vm, n, _ = cpu(a, 0)
    assert n.get_mempolicy() == (MP.MPOL_DEFAULT, 0)
    n.set_mempolicy(MP.MPOL_BIND | MP.MPOL_F_STATIC_NODES, 0b111)
    assert n.get_mempolicy() == (MP.MPOL_BIND | MP.MPOL_F_STATIC_NODES, 0b111)     # the user's nodemask
    assert n.get_mempolicy(MP.MPOL_F_MEMS_ALLOWED) == (0, 0b11)
    addr = vm.mmap(0, 2 * PG, RW, ANON)
    n.mbind(addr, PG, MP.MPOL_PREFERRED, 0b10)
    assert n.get_mempolicy(MP.MPOL_F_ADDR, addr) == (MP.MPOL_PREFERRED, 0b10)
    assert n.get_mempolicy(MP.MPOL_F_ADDR, addr + PG) == (MP.MPOL_DEFAULT, 0)   # no fall back to the task's
    zero_pfn = a.u64[(a.off("vmhdr") + H_ZERO_PFN) >> 3]
    zero_node = a.u8[a.off("pagemeta") + zero_pfn * 64 + 7]
    assert n.get_mempolicy(MP.MPOL_F_NODE | MP.MPOL_F_ADDR, addr) == (zero_node, 0b10)   # read in: the zero page
    vm.store64(addr, 1)
    assert n.get_mempolicy(MP.MPOL_F_NODE | MP.MPOL_F_ADDR, addr)[0] == 1       # written: the policy's node
    for flags, ad, errno in ((MP.MPOL_F_NODE, 0, "EINVAL"), (0, addr, "EINVAL"), (0x80, 0, "EINVAL"),
                             (MP.MPOL_F_ADDR, 0x1000, "EFAULT"),
                             (MP.MPOL_F_MEMS_ALLOWED | MP.MPOL_F_NODE, 0, "EINVAL")):
        with pytest.raises(VMError) as ei:
            n.get_mempolicy(flags, ad)
        assert ei.value.errno_name == errno
    for mode, nodes in ((MP.MPOL_BIND, 0), (MP.MPOL_LOCAL, 1), (9, 1), (MP.MPOL_BIND, 1 << 70),
                        (MP.MPOL_BIND | MP.MPOL_F_STATIC_NODES, 0b100)):
        with pytest.raises(VMError) as ei:
            n.set_mempolicy(mode, nodes)
        assert ei.value.errno_name == "EINVAL"
    done(a, vm)


def test_policies_are_interned_values_and_fork_inherits_the_task_policy(machine) -> None:
    a = numa_machine(machine, nr_nodes=2, numa={"max_policies": 8})
    vm, n, tid = cpu(a, 0)
    n.set_mempolicy(MP.MPOL_INTERLEAVE, 0b11)
    p1 = a.u64[(vm.arena.off("vmtask") + tid * 128 + 96) >> 3]
    addr = vm.mmap(0, 4 * PG, RW, ANON)
    n.mbind(addr, 4 * PG, MP.MPOL_INTERLEAVE, 0b11)
    assert a.u64[(vm.vmas.vma_lookup(vm.cur[1], addr) + 96) >> 3] == p1       # the same record
    child = vm.fork()
    assert a.u64[(vm.arena.off("vmtask") + child * 128 + 96) >> 3] == p1       # copy_process: mpol_dup
    with pytest.raises(VMError) as ei:                             # 8 distinct records at most
        for nodes in (1, 2, 3):
            for mode in (MP.MPOL_BIND, MP.MPOL_PREFERRED_MANY, MP.MPOL_WEIGHTED_INTERLEAVE):
                n.set_mempolicy(mode, nodes)
    assert ei.value.errno_name == "ENOMEM" and "max_policies" in str(ei.value)
    assert a.u64[(a.off("numa") + N.H_NR_POLICIES) >> 3] == 8
    vm.exit(child)
    done(a, vm)


def _sp_free(a) -> int:
    """Shared-policy ranges on the free list."""
    q, u32 = a.u64, a.u32
    n, k = q[(a.off("numa") + N.H_SP_FREE) >> 3], 0
    while n:
        k += 1
        n = u32[(N.sp_off(a, n - 1) + N.S_NEXT) >> 2]
    return k


def test_shared_policy_is_the_objects_seen_by_every_mapping_and_freed_with_it(machine) -> None:
    """mbind of part of a MAP_SHARED anonymous mapping after fork: the child's mapping
    (whose VMA was copied before) allocates by the shared policy; the ranges go back when
    the object dies (mpol_free_shared_policy)."""
    a = numa_machine(machine, nr_nodes=2, numa={"max_shared_policies": 16})
    vm, n, _ = cpu(a, 0)
    free0 = _sp_free(a)
    addr = vm.mmap(0, 8 * PG, RW, SHARED)
    child = vm.fork()
    n.mbind(addr + 2 * PG, 4 * PG, MP.MPOL_BIND, 0b10)
    n.mbind(addr + 3 * PG, 2 * PG, MP.MPOL_PREFERRED, 0b01)          # splits the range in three
    assert _sp_free(a) == free0 - 3
    parent = vm.current_task()
    vm.switch_to(child)
    for p in range(8):
        vm.store64(addr + p * PG, p)
    assert [node_of(vm, addr + p * PG) for p in range(8)] == [0, 0, 1, 0, 0, 1, 0, 0]
    vm.exit()
    vm.switch_to(parent)
    assert [vm.load64(addr + p * PG) for p in range(8)] == list(range(8))
    assert n.get_mempolicy(MP.MPOL_F_ADDR, addr + 3 * PG) == (MP.MPOL_PREFERRED, 0b01)
    vm.munmap(addr, 8 * PG)
    assert _sp_free(a) == free0
    done(a, vm)
