"""mm/cpuhp.py in one process: the teardown of a stopped CPU gives back every per-CPU
page and object (H1), keeps the checkers and every counter sum exact, folds counters
into a control CPU as Linux does, re-splits PCP high over the online CPUs, and the
CPU comes back usable.  The multi-process cases (a live run) are tests/test_hotplug.py."""

from __future__ import annotations

import pytest

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.errors import AeroSyncError
from aerosync.mm.cpuhp import (
    cpu_mm_held,
    cpu_online,
    cpuhp_check,
    cpuhp_offline_mm,
    cpuhp_online_mm,
    hp_state,
    num_online_cpus,
)
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import vmstat as V
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page_alloc import MM
from aerosync.mm.pmm.vm_event import fold_node_stats, fold_vm_events
from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.slab_check import slab_check
from aerosync.mm.slab.slab_common import kmem_cache_create, kmem_cache_lookup, slab_stats
from aerosync.mm.slab.slub import Slub
from aerosync.params import CPU_AREA_SIZE

pytestmark = pytest.mark.usefixtures("both_profiles")


def _checked(a: Arena) -> None:
    for rep in (check(a), slab_check(a)):
        assert rep.ok, str(rep)


def _busy_cpu(a: Arena, cpu: int, peer: int, nr: int = 300) -> tuple[list[int], list[int]]:
    """Give CPU `cpu` per-CPU state everywhere it can have some: pages on its PCP lists,
    a cpu slab, cpu partial slabs (objects freed by `peer` into its full slabs), objects
    in its magazine / per-CPU sheaves.  Returns (pages, objects) still allocated."""
    mm = MM(a, cpu)
    pages = [mm.alloc_pages(0, 0) for _ in range(64)]
    for p in pages[:48]:
        mm.free_pages(p, 0)
    kmem_cache_create(a, "hp-obj", 64, sheaf_capacity=8)
    mine = Slub(a, cpu, mm=mm).cache("hp-obj")
    other = Slub(a, peer).cache("hp-obj")
    objs = [mine.alloc() for _ in range(nr)]
    assert all(objs)
    for o in objs[: nr // 3]:
        mine.free(o)                     # its cpu freelist, magazine, sheaves
    for o in objs[nr // 3 : nr // 2]:
        other.free(o)                    # remote frees: full slabs of cpu -> the peer's partials
    kmem_cache_create(a, "hp-mag", 128)               # no sheaves: local frees off c->slab go to the magazine
    mag = Slub(a, cpu, mm=mm).cache("hp-mag")
    more = [mag.alloc() for _ in range(nr)]
    for o in more[: nr // 2 : 2]:
        mag.free(o)
    return pages[48:], objs[nr // 2 :] + more[1 : nr // 2 : 2] + more[nr // 2 :]


def _sums(a: Arena) -> dict[str, int]:
    """/proc/vmstat: every per-CPU counter summed (vm events, node stats, mmstat)."""
    return V.vmstat(a)


def test_offline_gives_back_everything_and_online_again(sa) -> None:
    a = sa(nr_cpus=3, slab_mag_size=8, slab_percpu_sheaves=True)
    pages, objs = _busy_cpu(a, 1, 2)
    assert cpu_mm_held(a, 1)                          # the check below can fail
    out = cpuhp_offline_mm(a, 1)
    assert out["pcp_pages"] > 0 and out["caches"] > 0
    assert out["sheaves"] > 0 and out["cpu_slabs"] > 0
    assert out["magazine_objects"] > 0 or not a.u64[(a.off("slabcaches") + 48) >> 3]   # G_MAG_SIZE
    assert cpu_mm_held(a, 1) == [] and cpuhp_check(a) == []
    assert hp_state(a, 1) == L.HP_OFFLINE and not cpu_online(a, 1) and num_online_cpus(a) == 2
    _checked(a)
    # the work still held when the CPU went ("the task migrated away") is freed elsewhere
    mm0, km0 = MM(a, 0), Kmalloc(Slub(a, 0))
    for p in pages:
        mm0.free_pages(p, 0)
    for o in objs:
        km0.kfree(o)
    assert cpuhp_check(a) == [] and cpu_mm_held(a, 1) == []   # nothing lands on an offline CPU
    for name in ("hp-obj", "hp-mag"):
        st = slab_stats(a, kmem_cache_lookup(a, name))
        assert st["alloc"] == st["free"], name
    _checked(a)
    again = cpuhp_offline_mm(a, 1)                     # idempotent
    assert again["pcp_pages"] == again["cpu_slabs"] == again["magazine_objects"] == again["sheaves"] == 0
    cpuhp_online_mm(a, 1)
    assert hp_state(a, 1) == L.HP_ONLINE and num_online_cpus(a) == 3
    mm1 = MM(a, 1)
    got = [mm1.alloc_pages(0, 0) for _ in range(8)]
    for p in got:
        mm1.free_pages(p, 0)
    po = Z.pcp_off(a, 1, 2, mm1.nr_zones)        # a populated zone's pcp is in use again
    assert sum(a.u64[(Z.pcp_off(a, 1, z, mm1.nr_zones) + Z.PCP_COUNT) >> 3] for z in range(mm1.nr_zones)) > 0
    assert a.u64[(po + Z.PCP_STATE) >> 3] == Z.PCP_IDLE
    k1 = Slub(a, 1).cache("hp-obj")
    o = k1.alloc()
    k1.free(o)
    _checked(a)


def test_offline_as_coordinator_keeps_counter_sums(sa) -> None:
    """From the coordinator nothing is folded: the counters stay in the offline CPU's
    records and every sum is what it was (the teardown of an idle CPU adds nothing)."""
    a = sa(nr_cpus=2)
    mm1 = MM(a, 1)
    held = [mm1.alloc_pages(0, o % 3) for o in range(30)]
    for i, p in enumerate(held):
        mm1.free_pages(p, i % 3)
    mm1.drain_local_pages()
    before = _sums(a)
    cpuhp_offline_mm(a, 1)
    assert _sums(a) == before
    st = Z.stat_off(a, 1, mm1.nr_nodes) >> 3
    assert a.u64[st + Z.EV_PGFREE] == before["pgfree"] > 0       # still on cpu1's record


def test_offline_by_control_cpu_folds_counters(sa) -> None:
    """A control CPU folds the dead CPU's mmstat and vmevents records into its own
    (vm_events_fold_cpu, cpu_vm_stats_fold): the dead CPU's are zero, the sums exact."""
    a = sa(nr_cpus=2)
    mm1 = MM(a, 1)
    held = [mm1.alloc_pages(0, o % 3) for o in range(30)]
    for i, p in enumerate(held[:20]):
        mm1.free_pages(p, i % 3)
    mm1.drain_local_pages()
    from aerosync.mm.pmm.vm_event import PGFAULT, count_vm_event

    count_vm_event(a, 1, PGFAULT, 7)
    before = _sums(a)
    out = cpuhp_offline_mm(a, 1, control_cpu=0)
    assert out["folded"] == 1
    assert _sums(a) == before and before["pgfault"] == 7 and before["pgfree"] > 0
    assert fold_vm_events(a)["pgfault"] == 7 and fold_node_stats(a) == fold_node_stats(a)
    st = Z.stat_off(a, 1, mm1.nr_nodes)
    assert not any(a.u64[(st >> 3) + i] for i in range(Z.stat_rec_size(mm1.nr_nodes) >> 3))
    for i, p in enumerate(held[20:]):
        MM(a, 0).free_pages(p, (20 + i) % 3)
    _checked(a)
    cpuhp_online_mm(a, 1)
    x = mm1.alloc_pages(0, 0)                          # catch-up from zeroed counters is sane
    mm1.free_pages(x, 0)
    _checked(a)


def test_control_cpu_gets_the_frees(sa) -> None:
    """Linux's slub_cpu_dead runs on the control CPU: slabs that the flushed objects make
    partial land on its partial list, never on the dead CPU's."""
    a = sa(nr_cpus=3, slab_mag_size=8)
    pages, objs = _busy_cpu(a, 2, 1)
    cpuhp_offline_mm(a, 2, control_cpu=0)
    assert cpu_mm_held(a, 2) == []
    _checked(a)
    for p in pages:
        MM(a, 0).free_pages(p, 0)
    km = Kmalloc(Slub(a, 0))
    for o in objs:
        km.kfree(o)
    _checked(a)


def test_zone_pcp_update_splits_high_over_online_cpus(machine) -> None:
    """zone_pcp_update(zone, 0/1): high_min = LOW mark / online CPUs of the node (at least
    4 batches) in the zone and every PCP; back to the boot value when the CPU returns."""
    a = machine(nr_pages=8192, nr_cpus=4, pcp_batch=1)
    nr_zones = a.u64[(a.off("mmzones") + Z.G_NR_ZONES) >> 3]
    zid = max(range(nr_zones), key=lambda z: a.u64[(Z.zone_off(a, z) + Z.Z_MANAGED) >> 3])
    zo = Z.zone_off(a, zid)
    low = a.u64[(zo + Z.Z_WMARK_LOW) >> 3]
    boot = a.u64[(zo + Z.Z_PCP_HIGH) >> 3]
    assert boot == max(low // 4, 4)
    cpuhp_offline_mm(a, 3)
    cpuhp_offline_mm(a, 2)
    assert a.u64[(zo + Z.Z_PCP_HIGH) >> 3] == max(low // 2, 4)
    for c in range(4):
        assert a.u64[(Z.pcp_off(a, c, zid, nr_zones) + Z.PCP_HIGH_MIN) >> 3] == max(low // 2, 4)
    cpuhp_online_mm(a, 2)
    cpuhp_online_mm(a, 3)
    assert a.u64[(zo + Z.Z_PCP_HIGH) >> 3] == boot
    assert a.u64[(Z.pcp_off(a, 3, zid, nr_zones) + Z.PCP_HIGH_MAX) >> 3] == a.u64[(zo + Z.Z_PCP_HIGH_MAX) >> 3]


def test_h1_catches_an_offline_cpu_that_holds_something(sa) -> None:
    a = sa(nr_cpus=2, slab_mag_size=8)
    _busy_cpu(a, 1, 0)
    a.atomic.store64(a.off("cpu") + CPU_AREA_SIZE + L.CPU_HP_STATE, L.HP_OFFLINE)   # no teardown
    bad = cpuhp_check(a)
    assert bad and all(v.startswith("H1 cpu1 is offline but holds ") for v in bad)
    assert any("pcp" in v for v in bad) and any("hp-obj" in v for v in bad)


def test_refuses_a_cpu_that_still_runs(sa, spawn) -> None:
    import time

    a = sa(nr_cpus=2)
    p = spawn(time.sleep, 30)
    from aerosync.arch.cpu import proc_starttime

    area = (a.off("cpu") + CPU_AREA_SIZE) >> 3
    a.u64[area + (L.CPU_PID >> 3)] = p.pid
    a.u64[area + (L.CPU_STARTTIME >> 3)] = proc_starttime(p.pid) or 0
    with pytest.raises(AeroSyncError, match=rf"cpu1 still runs \(pid {p.pid}\)"):
        cpuhp_offline_mm(a, 1)
    assert hp_state(a, 1) == L.HP_ONLINE
    p.kill()
    p.join(5)
    cpuhp_offline_mm(a, 1)                             # dead now: fine
    assert hp_state(a, 1) == L.HP_OFFLINE
    with pytest.raises(AeroSyncError, match="control cpu 1 must be another CPU"):
        cpuhp_offline_mm(a, 1, control_cpu=1)


def test_vm_cpu_stops_being_a_shootdown_target(machine) -> None:
    """The TLB part: online 0, loaded_mm 0, no IPI pending, the bit gone from mm_cpumask;
    a flush by another CPU then does not wait for it."""
    from aerosync.mm.vm import mm_types as T
    from aerosync.mm.vm.tlb import C_LOADED_MM, C_ONLINE
    from aerosync.mm.vm.vm import VM

    a = machine(nr_pages=8192, nr_cpus=2, slab=True, vm={"mm": "threads"})
    v0, v1 = VM(a, 0), VM(a, 1)
    v1.make_current()
    t1 = v1.task_create("t1")
    v1.switch_to(t1)
    mm_id = v1.current_mm()
    addr = v1.mmap(0, 8 << 12, 3, 0x22)
    v1.store64(addr, 42)
    rec = T.vmcpu_off(a, 1)
    assert a.u64[(rec + C_ONLINE) >> 3] == 1
    word = a.u64[(T.mm_off(a, mm_id) + T.M_CPUMASK) >> 3]
    assert word & 2
    # cpu1 "stops" without leaving (as a dead CPU would): the teardown takes it out
    out = cpuhp_offline_mm(a, 1)
    assert out["mm_cpumask"] >= 1
    assert a.u64[(rec + C_ONLINE) >> 3] == 0 and a.u64[(rec + C_LOADED_MM) >> 3] == 0
    assert not a.u64[(T.mm_off(a, mm_id) + T.M_CPUMASK) >> 3] & 2
    v0.make_current()
    v0.tlb.flush_tlb_mm_range(mm_id, addr, addr + 4096)    # returns: cpu1 is no target
    assert [h for h in cpu_mm_held(a, 1) if h.startswith("tlb")] == []


@pytest.mark.parametrize("lru", ["mglru", "classic"])
def test_lru_add_batch_of_a_stopped_cpu_is_drained(machine, lru: str) -> None:
    """lru_add_drain_cpu: a CPU that stopped without leaving (as a dead one) holds folios
    in its LRU add batch (a reference each) and a swap cluster; the teardown puts them on
    the lists and gives the cluster back, and the reclaim checker agrees."""
    from aerosync.mm.reclaim import layout as R
    from aerosync.mm.reclaim.check import reclaim_check
    from aerosync.mm.reclaim.swapfile import swapoff
    from aerosync.mm.vm import mmap as M
    from aerosync.mm.vm.vm import VM

    a = machine(nr_pages=2048, nr_cpus=2, slab=True, vm={}, reclaim={"lru": lru, "swap_size": 4 << 20})
    try:
        v0, v1 = VM(a, 0), VM(a, 1)
        v1.make_current()
        t = v1.task_create("t1")
        v1.switch_to(t)
        addr = v1.mmap(0, 1600 << 12, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        for i in range(1600):                        # more than RAM: reclaim swaps (cpu1 gets a cluster)
            v1.store64(addr + (i << 12), i)
        fresh = v1.mmap(0, 3 << 12, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        for i in range(3):                           # new folios into the batch, then cpu1 "dies"
            v1.store64(fresh + (i << 12), i)
        pc = R.Off(a).pcpu(1)
        before = a.u64[(pc + R.PC_BATCH_N) >> 3]
        assert before >= 1 and any(h.startswith("reclaim:") for h in cpu_mm_held(a, 1))
        # the task migrates away (another CPU will exit it); cpu1 is gone without leave()
        v0.make_current()
        out = cpuhp_offline_mm(a, 1)
        assert out["lru_batch"] == before
        assert cpu_mm_held(a, 1) == []
        assert a.u64[(pc + R.PC_BATCH_N) >> 3] == 0 and a.u64[(pc + R.PC_CLUSTER) >> 3] == 0
        v0.switch_to(t)
        v0.munmap(addr, 1600 << 12)
        v0.munmap(fresh, 3 << 12)
        v0.exit()
        v0.leave()
        assert reclaim_check(a, None) == []
        _checked(a)
    finally:
        swapoff(a)
