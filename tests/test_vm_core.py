"""Virtual memory on one process: address spaces, faults, COW after fork, the system
calls' splitting and merging, files, and nothing leaked (the page checker after exit)."""

from __future__ import annotations

import pytest

from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.vm_event import fold_node_stats, fold_vm_events
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.filemap import expected_page
from aerosync.mm.vm.memory import SEGV_ACCERR, SEGV_MAPERR, SegmentationFault
from aerosync.mm.vm.mm_types import VMError
from aerosync.mm.vm.vm import VM

RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
PG = 4096


@pytest.fixture
def vmm(machine):
    def make(nr_pages: int = 8192, nr_cpus: int = 2, **vm: object):
        a = machine(nr_pages=nr_pages, nr_cpus=nr_cpus, slab=True, vm=dict(vm))
        cpu = VM(a, 0)
        t = cpu.task_create("test")
        cpu.switch_to(t)
        return a, cpu

    return make


def _vmas(cpu: VM) -> list[tuple[int, int, int]]:
    q = cpu.arena.u64
    return [(q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3], q[(v + V.V_FLAGS) >> 3] & 0xF)
            for _f, _l, v in cpu.vmas.tree(cpu.current_mm()).mt_for_each()]


def _teardown_clean(a, cpu: VM) -> None:
    if cpu.current_task() >= 0:
        cpu.exit()
    cpu.leave()
    r = check(a)
    assert r.ok, r.violations[:5]
    st = fold_node_stats(a)
    assert sum(n["nr_anon_pages"] for n in st) == 0 and sum(n["nr_mapped"] for n in st) == 0
    kernel_tables = a.u64[(T.mm_off(a, 0) + T.M_PGTABLES_BYTES) >> 3] // PG
    assert sum(n["nr_page_table_pages"] for n in st) == kernel_tables   # init_mm's tables only (vmalloc's stay)


def test_anon_write_read_and_zero_page(vmm) -> None:
    a, cpu = vmm()
    addr = cpu.mmap(0, 16 * PG, RW, ANON)
    assert cpu.load64(addr + 5 * PG) == 0                  # read: the shared zero page
    st = fold_node_stats(a)[0]
    assert st["nr_anon_pages"] == 0
    for i in range(16):
        cpu.store64(addr + i * PG + 8, 0xABC0 + i)
    assert [cpu.load64(addr + i * PG + 8) for i in range(16)] == [0xABC0 + i for i in range(16)]
    assert fold_node_stats(a)[0]["nr_anon_pages"] == 16
    mo = T.mm_off(a, cpu.current_mm())
    assert T.get_mm_counter_sum(a.u64, mo, T.MM_ANONPAGES, int(a.config["nr_cpus"])) == 16
    ev = fold_vm_events(a)
    assert ev["pgfault"] >= 17 and ev["vma_lock_success"] >= 17
    cpu.munmap(addr, 16 * PG)
    assert T.get_mm_counter_sum(a.u64, mo, T.MM_ANONPAGES, int(a.config["nr_cpus"])) == 0
    _teardown_clean(a, cpu)


def test_cow_after_fork_both_directions(vmm) -> None:
    a, cpu = vmm()
    addr = cpu.mmap(0, 8 * PG, RW, ANON)
    for i in range(8):
        cpu.store64(addr + i * PG, 100 + i)
    parent = cpu.current_task()
    child = cpu.fork()
    cpu.store64(addr, 1)                                    # parent copies page 0
    cpu.switch_to(child)
    assert [cpu.load64(addr + i * PG) for i in range(8)] == [100 + i for i in range(8)]
    cpu.store64(addr + PG, 2)                               # child copies page 1
    cpu.switch_to(parent)
    assert cpu.load64(addr) == 1 and cpu.load64(addr + PG) == 101
    before = fold_vm_events(a)
    cpu.exit(child)                     # the child's side goes: the chain collapses into the parent's
    cpu.switch_to(parent)
    cpu.store64(addr + 2 * PG, 3)       # the page is the parent's alone now: reused, not copied
    after = fold_vm_events(a)
    assert after["aerosync_shadow_collapse"] == before["aerosync_shadow_collapse"] + 1
    assert after["aerosync_cow_copy"] == before["aerosync_cow_copy"]
    assert cpu.load64(addr + 2 * PG) == 3
    _teardown_clean(a, cpu)


def test_munmap_middle_splits_and_frees(vmm) -> None:
    a, cpu = vmm()
    addr = cpu.mmap(0, 10 * PG, RW, ANON)
    for i in range(10):
        cpu.store64(addr + i * PG, i + 1)
    cpu.munmap(addr + 3 * PG, 4 * PG)
    assert _vmas(cpu) == [(addr, addr + 3 * PG, 3), (addr + 7 * PG, addr + 10 * PG, 3)]
    assert [cpu.load64(addr + i * PG) for i in (0, 1, 2, 7, 8, 9)] == [1, 2, 3, 8, 9, 10]
    with pytest.raises(SegmentationFault) as ei:
        cpu.load64(addr + 4 * PG)
    assert ei.value.code == SEGV_MAPERR
    mo = T.mm_off(a, cpu.current_mm())
    assert T.get_mm_counter_sum(a.u64, mo, T.MM_ANONPAGES, int(a.config["nr_cpus"])) == 6
    assert a.u64[(mo + T.M_MAP_COUNT) >> 3] == 2
    _teardown_clean(a, cpu)


def test_mprotect_splits_refuses_and_merges_back(vmm) -> None:
    a, cpu = vmm()
    addr = cpu.mmap(0, 6 * PG, RW, ANON)
    cpu.store64(addr + 2 * PG, 7)
    cpu.mprotect(addr + 2 * PG, 2 * PG, M.PROT_READ)
    assert [f for *_r, f in _vmas(cpu)] == [3, 1, 3]
    assert cpu.load64(addr + 2 * PG) == 7
    with pytest.raises(SegmentationFault) as ei:
        cpu.store64(addr + 2 * PG, 8)
    assert ei.value.code == SEGV_ACCERR
    cpu.mprotect(addr + 2 * PG, 2 * PG, RW)
    assert _vmas(cpu) == [(addr, addr + 6 * PG, 3)]         # merged back into one VMA
    cpu.store64(addr + 2 * PG, 9)
    assert cpu.load64(addr + 2 * PG) == 9
    with pytest.raises(VMError, match="ENOMEM"):
        cpu.mprotect(addr + 5 * PG, 4 * PG, M.PROT_READ)   # runs past the mapping
    _teardown_clean(a, cpu)


def test_mmap_fixed_noreplace_and_bad_input(vmm) -> None:
    a, cpu = vmm()
    addr = cpu.mmap(0x10000000, 4 * PG, RW, ANON | M.MAP_FIXED)
    assert addr == 0x10000000
    with pytest.raises(VMError, match="EEXIST"):
        cpu.mmap(0x10000000 + PG, PG, RW, ANON | M.MAP_FIXED_NOREPLACE)
    with pytest.raises(VMError, match=r"mmap_min_addr.*EPERM"):
        cpu.mmap(0x1000, PG, RW, ANON | M.MAP_FIXED)
    with pytest.raises(VMError, match="EINVAL"):
        cpu.mmap(0, 0, RW, ANON)
    with pytest.raises(VMError, match="EINVAL"):
        cpu.mmap(0, PG, RW, M.MAP_ANONYMOUS)
    cpu.store64(0x10000000 + PG, 5)
    cpu.mmap(0x10000000 + PG, PG, RW, ANON | M.MAP_FIXED)   # replaces: the page reads zero again
    assert cpu.load64(0x10000000 + PG) == 0
    _teardown_clean(a, cpu)


def test_mremap_grow_in_place_move_and_shrink(vmm) -> None:
    a, cpu = vmm()
    addr = cpu.mmap(0x20000000, 4 * PG, RW, ANON | M.MAP_FIXED)
    for i in range(4):
        cpu.store64(addr + i * PG, 40 + i)
    assert cpu.mremap(addr, 4 * PG, 8 * PG) == addr       # grows in place
    cpu.store64(addr + 6 * PG, 46)
    cpu.mmap(addr + 8 * PG, PG, RW, ANON | M.MAP_FIXED)   # blocks further growth
    with pytest.raises(VMError, match="ENOMEM"):
        cpu.mremap(addr, 8 * PG, 16 * PG)
    new = cpu.mremap(addr, 8 * PG, 16 * PG, M.MREMAP_MAYMOVE)
    assert new != addr
    assert [cpu.load64(new + i * PG) for i in range(4)] + [cpu.load64(new + 6 * PG)] == [40, 41, 42, 43, 46]
    assert cpu.load64(new + 8 * PG) == 0                   # the growth is new memory
    with pytest.raises(SegmentationFault):
        cpu.load64(addr)
    # The blocking page merged into the region (one object), so the move left a part of
    # the object behind: the growth is a VMA of its own (mremap's grow_aliases).
    with pytest.raises(VMError, match="EFAULT"):
        cpu.mremap(new, 16 * PG, 2 * PG)
    assert cpu.mremap(new, 8 * PG, 2 * PG) == new           # shrink
    with pytest.raises(SegmentationFault):
        cpu.load64(new + 3 * PG)
    _teardown_clean(a, cpu)


def test_madvise_dontneed_reads_zero_even_over_a_parent_page(vmm) -> None:
    a, cpu = vmm()
    addr = cpu.mmap(0, 4 * PG, RW, ANON)
    for i in range(4):
        cpu.store64(addr + i * PG, 10 + i)
    parent = cpu.current_task()
    child = cpu.fork()
    cpu.switch_to(child)
    cpu.madvise(addr, 2 * PG, M.MADV_DONTNEED)
    assert cpu.load64(addr) == 0 and cpu.load64(addr + PG) == 0
    assert cpu.load64(addr + 2 * PG) == 12
    cpu.exit(child)
    cpu.switch_to(parent)
    assert cpu.load64(addr) == 10                          # the parent's view is untouched
    _teardown_clean(a, cpu)


def test_brk_and_mlock(vmm) -> None:
    a, cpu = vmm()
    b0 = cpu.brk(0)
    assert cpu.brk(b0 + 3 * PG) == b0 + 3 * PG
    cpu.store64(b0 + 2 * PG, 77)
    assert cpu.brk(b0 + PG) == b0 + PG
    with pytest.raises(SegmentationFault):
        cpu.load64(b0 + 2 * PG)
    addr = cpu.mmap(0, 4 * PG, RW, ANON)
    cpu.mlock(addr, 4 * PG)
    mo = T.mm_off(a, cpu.current_mm())
    assert a.u64[(mo + T.M_LOCKED_VM) >> 3] == 4
    assert T.get_mm_counter_sum(a.u64, mo, T.MM_ANONPAGES, int(a.config["nr_cpus"])) >= 4   # populated
    cpu.munlock(addr, 4 * PG)
    assert a.u64[(mo + T.M_LOCKED_VM) >> 3] == 0
    _teardown_clean(a, cpu)


def test_file_private_and_shared_mappings(vmm) -> None:
    a, cpu = vmm()
    fid = cpu.file_create("data", 16 * PG, seed=3)
    priv = cpu.mmap(0, 16 * PG, RW, M.MAP_PRIVATE, fid)
    shared = cpu.mmap(0, 16 * PG, RW, M.MAP_SHARED, fid)
    assert cpu.load(priv + 5 * PG, PG) == expected_page(fid, 3, 5)
    assert fold_vm_events(a)["pgmajfault"] >= 1
    cpu.store64(priv + 5 * PG, 1)                         # private: a copy
    assert cpu.load64(shared + 5 * PG) == fid             # the file is unchanged (stamp word 0 = fid)
    cpu.store64(shared + 6 * PG, 2)                       # shared: into the page cache
    assert cpu.load64(priv + 6 * PG) == 2                 # visible through the private map (no copy yet)
    st = fold_node_stats(a)[0]
    assert st["nr_file_pages"] >= 4 and st["nr_dirty"] >= 1
    cpu.munmap(priv, 16 * PG)
    cpu.munmap(shared, 16 * PG)
    _teardown_clean(a, cpu)


def test_shared_anonymous_survives_fork(vmm) -> None:
    a, cpu = vmm()
    addr = cpu.mmap(0, 2 * PG, RW, M.MAP_SHARED | M.MAP_ANONYMOUS)
    cpu.store64(addr, 5)
    parent = cpu.current_task()
    child = cpu.fork()
    cpu.switch_to(child)
    assert cpu.load64(addr) == 5
    cpu.store64(addr + 8, 6)
    cpu.switch_to(parent)
    assert cpu.load64(addr + 8) == 6
    cpu.exit(child)
    cpu.switch_to(parent)
    _teardown_clean(a, cpu)


@pytest.mark.parametrize("locking", ["mmap_lock", "per_vma", "speculative"])
def test_every_fault_locking_mode(vmm, locking: str) -> None:
    a, cpu = vmm(fault_locking=locking)
    addr = cpu.mmap(0, 32 * PG, RW, ANON)
    for i in range(32):
        cpu.store64(addr + i * PG, i)
    assert [cpu.load64(addr + i * PG) for i in range(32)] == list(range(32))
    ev = fold_vm_events(a)
    if locking == "per_vma":
        assert ev["vma_lock_success"] >= 32
    elif locking == "speculative":
        assert ev["aerosync_spf_success"] + ev["aerosync_spf_abort"] >= 32
    _teardown_clean(a, cpu)


def test_shadow_chain_collapses_when_a_fork_side_exits(vmm) -> None:
    """Fork after fork: each child exits after writing; the parent's chain collapses
    back (its backing has one child and one reference), pages move up, data intact."""
    from aerosync.mm.vm.vm_object import O_BACKING, O_DEPTH

    a, cpu = vmm()
    addr = cpu.mmap(0, 8 * PG, RW, ANON)
    for i in range(8):
        cpu.store64(addr + i * PG, 500 + i)
    parent = cpu.current_task()
    vma = cpu.vmas.load(cpu.current_mm(), addr)
    for gen in range(12):
        child = cpu.fork()
        cpu.switch_to(child)
        cpu.store64(addr + (gen % 8) * PG, 9)
        cpu.exit(child)
        cpu.switch_to(parent)
        obj = a.u64[(vma + V.V_OBJECT) >> 3]
        assert a.u32[(obj + O_DEPTH) >> 2] <= 1
    obj = a.u64[(vma + V.V_OBJECT) >> 3]
    assert a.u64[(obj + O_BACKING) >> 3] == 0              # fully collapsed into one object
    assert [cpu.load64(addr + i * PG) for i in range(8)] == [500 + i for i in range(8)]
    assert fold_vm_events(a)["aerosync_shadow_collapse"] >= 12
    _teardown_clean(a, cpu)


def test_deep_chain_with_live_children_reads_through(vmm) -> None:
    """Children that stay alive keep every level; reads walk the chain, writes copy."""
    a, cpu = vmm()
    addr = cpu.mmap(0, 4 * PG, RW, ANON)
    cpu.store64(addr, 1)
    parent = cpu.current_task()
    kids = []
    for g in range(5):
        kids.append(cpu.fork())
        cpu.store64(addr, g + 2)                            # the parent moves on
    for g, k in enumerate(kids):
        cpu.switch_to(k)
        assert cpu.load64(addr) == g + 1                    # each child saw its moment
        cpu.store64(addr + PG, g)
    for k in kids:
        cpu.exit(k)
    cpu.switch_to(parent)
    assert cpu.load64(addr) == 6 and cpu.load64(addr + PG) == 0
    _teardown_clean(a, cpu)


def test_cow_steal_from_a_backing_nobody_else_maps(vmm) -> None:
    """The steal path: the backing object's only other user (a sibling shadow) is gone
    but the backing still has a direct reference held elsewhere, so no collapse; a page
    whose only mapping is ours moves up without a copy."""
    from aerosync.mm.vm.vm_object import O_BACKING

    a, cpu = vmm()
    addr = cpu.mmap(0, 2 * PG, RW, ANON)
    cpu.store64(addr, 11)
    parent = cpu.current_task()
    child = cpu.fork()
    cpu.switch_to(child)
    cpu.munmap(addr, 2 * PG)           # the child's mapping goes, its shadow with it
    cpu.exit(child)
    cpu.switch_to(parent)
    vma = cpu.vmas.load(cpu.current_mm(), addr)
    top = a.u64[(vma + V.V_OBJECT) >> 3]
    back = a.u64[(top + O_BACKING) >> 3]
    before = fold_vm_events(a)
    cpu.store64(addr, 12)
    after = fold_vm_events(a)
    if back:                            # not collapsed: the page must have been stolen
        assert after["aerosync_cow_steal"] == before["aerosync_cow_steal"] + 1
    assert after["aerosync_cow_copy"] == before["aerosync_cow_copy"]
    assert cpu.load64(addr) == 12
    _teardown_clean(a, cpu)


def test_five_level_paging_and_no_pcid(vmm) -> None:
    """pgtable_levels = 5 (LA57: a 56-bit user space) and pcid = false (every switch
    flushes): the same semantics, a higher TASK_SIZE."""
    from aerosync.mm.vm.pgtable import TASK_SIZE_5

    a, cpu = vmm(pgtable_levels=5, pcid=False)
    mo = T.mm_off(a, cpu.current_mm())
    assert a.u64[(mo + T.M_TASK_SIZE) >> 3] == TASK_SIZE_5
    hi = cpu.mmap(1 << 50, 2 * PG, RW, ANON | M.MAP_FIXED)     # above the 47-bit limit
    cpu.store64(hi, 17)
    low = cpu.mmap(0, 2 * PG, RW, ANON)
    cpu.store64(low, 18)
    other = cpu.task_create("other")
    me = cpu.current_task()
    cpu.switch_to(other)
    cpu.switch_to(me)
    assert cpu.load64(hi) == 17 and cpu.load64(low) == 18
    cpu.exit(other)
    cpu.switch_to(me)
    _teardown_clean(a, cpu)


def test_task_moves_between_cpus_and_cpumask(machine) -> None:
    """A task that runs on CPU 0 then CPU 1: mm_cpumask has both, its memory follows it,
    and a flush from CPU 1 reaches CPU 0 only while CPU 0 still has the mm loaded."""
    a = machine(nr_pages=8192, nr_cpus=2, slab=True, vm={})
    c0, c1 = VM(a, 0), VM(a, 1)
    t = c0.task_create("mover")
    c0.switch_to(t)
    addr = c0.mmap(0, 2 * PG, RW, ANON)
    c0.store64(addr, 5)
    idle = c0.task_create("idle", new_mm=False)       # a kernel thread: no mm
    c0.switch_to(idle)                                # CPU 0 goes lazy: no longer a target
    c1.switch_to(t)
    assert c1.load64(addr) == 5
    mo = T.mm_off(a, c1.current_mm())
    assert a.u64[(mo + T.M_CPUMASK) >> 3] & 3 == 3
    before = fold_vm_events(a)["nr_tlb_remote_flush"]
    c1.munmap(addr, 2 * PG)                           # no IPI: CPU 0 is lazy
    assert fold_vm_events(a)["nr_tlb_remote_flush"] == before
    c1.exit()
    c0.exit(idle)
    c1.leave()
    c0.leave()
    r = check(a)
    assert r.ok, r.violations[:5]


def test_rss_counters_are_percpu_in_a_shared_mm(vmm) -> None:
    """Two threads of one mm fault on two CPUs: each fault counts in its CPU's line of the
    mm record (percpu_counter), none in the shared rss word; the sum is what status and
    the checker's RSS1 see; a munmap on the other CPU brings the sum back to 0."""
    from aerosync.mm.vm import task_mmu as TM
    from aerosync.mm.vm.check import vm_check

    a, cpu0 = vmm()
    mm = cpu0.current_mm()
    cpu1 = VM(a, 1)
    cpu1.switch_to(cpu1.task_create("thread", mm=mm))
    a0 = cpu0.mmap(0, 8 * PG, RW, ANON)
    for i in range(8):
        cpu0.store64(a0 + i * PG, i + 1)
    a1 = cpu1.mmap(0, 5 * PG, RW, ANON)
    for i in range(5):
        cpu1.store64(a1 + i * PG, i + 1)
    q, mo, base = a.u64, T.mm_off(a, mm), T.rss_pcpu_base(2)
    k = 8 * T.MM_ANONPAGES
    assert q[(mo + T.M_RSS + k) >> 3] == 0                              # no fault wrote the shared word
    assert (q[(mo + base + k) >> 3], q[(mo + base + 64 + k) >> 3]) == (8, 5)
    assert T.get_mm_counter_sum(q, mo, T.MM_ANONPAGES, 2) == 13 and T.get_mm_rss(a, mo) == 13
    pid = q[(T.task_off(a, cpu0.current_task()) + T.T_PID) >> 3]
    assert TM.status_json(a, pid)["RssAnon"] == 13 * 4
    r = vm_check(a)
    assert r.ok, r.violations[:5]
    q[(mo + base + 64 + k) >> 3] += 1                                  # a lost update in CPU 1's part
    r = vm_check(a)
    assert [v.inv_id for v in r.violations] == ["RSS1"], r.violations[:5]
    q[(mo + base + 64 + k) >> 3] -= 1
    cpu0.exit()
    cpu0.leave()
    cpu1.munmap(a0, 8 * PG)                                            # CPU 1 unmaps CPU 0's pages
    assert q[(mo + base + 64 + k) >> 3] == (5 - 8) & ((1 << 64) - 1)    # its part goes negative
    assert T.get_mm_counter_sum(q, mo, T.MM_ANONPAGES, 2) == 5
    cpu1.munmap(a1, 5 * PG)
    assert T.get_mm_counter_sum(q, mo, T.MM_ANONPAGES, 2) == 0
    _teardown_clean(a, cpu1)


def test_faults_into_existing_leaves_take_no_object_lock(vmm) -> None:
    """page_fault1's write faults insert into the object's page tree under the leaf's lock
    (lib/xarray.py xa_insert_leaf), not &obj->lock: a 256-page region (4 leaves of 64
    indices) costs &obj->lock only for the 4 faults that build a leaf, and the tree and
    the object's page count come out exact."""
    from aerosync.mm.vm.vm_object import O_NR_PAGES, O_TREE
    from aerosync.sync.lockclass import class_stats

    def obj_lock_acq() -> int:
        return sum(int(r["acq"]) for r in class_stats(a) if r["lock_class"] == "&obj->lock")

    a, cpu = vmm()
    addr = cpu.mmap(0, 256 * PG, RW, ANON)
    cpu.store64(addr, 1)                                   # the object, its first leaf
    before = obj_lock_acq()
    for i in range(1, 256):
        cpu.store64(addr + i * PG, i + 1)
    # index 0 lives in xa_head alone: the faults at 1, 64, 128 and 192 build the leaves
    assert obj_lock_acq() - before == 4
    obj = a.u64[(cpu.vmas.find_vma(cpu.current_mm(), addr) + V.V_OBJECT) >> 3]
    tree = cpu.xa.handle(obj + O_TREE)
    assert a.u64[(obj + O_NR_PAGES) >> 3] == 256 == tree.xa_count() and tree.xa_validate() == []
    assert [cpu.load64(addr + i * PG) for i in range(256)] == list(range(1, 257))
    cpu.munmap(addr, 256 * PG)
    _teardown_clean(a, cpu)


@pytest.mark.parametrize("locking", ["per_vma", "speculative"])
@pytest.mark.parametrize("fails", [2, 3])
def test_a_tree_node_that_cannot_be_had_under_the_lock_is_retried_after_xas_nomem(vmm, fails: int,
                                                                                  locking: str) -> None:
    """The object's tree store runs under &obj->lock, where its node allocation may not
    reclaim: when it finds no node, insert() drops the lock, makes one allocatable with
    reclaim allowed (xas_nomem) and stores again -- the fault completes.  Before, the
    first such failure was a VM_FAULT_OOM: the task died of ENOMEM on a machine with
    reclaimable memory (a reclaim-thrash run lost its worker so).  A speculative fault
    (no lock it could drop) retries the fault instead."""
    a, cpu = vmm(fault_locking=locking)
    alloc_node, *rest = cpu.xa.callbacks
    left = [fails]

    def failing() -> int:
        if left[0]:
            left[0] -= 1
            return -1
        return alloc_node()

    cpu.xa.callbacks = (failing, *rest)             # the handles of trees made from now on
    addr = cpu.mmap(0, 256 * PG, RW, ANON)
    for i in range(256):
        cpu.store64(addr + i * PG, i + 7)
    assert left == [0]
    assert [cpu.load64(addr + i * PG) for i in range(256)] == [i + 7 for i in range(256)]
    cpu.munmap(addr, 256 * PG)
    _teardown_clean(a, cpu)
