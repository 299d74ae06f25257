"""Virtual-memory figures (issue 9): faults against the real kernel, the TLB hit, COW,
scaling of page_fault1, per-VMA locks under churn, the VMA tree, fork, shootdowns.

  * kernel_anon_fault_us: the host kernel, in this process, same repetition: numpy
    writes one byte per page of a fresh anonymous `mmap.mmap` (16 MiB), then it is
    closed; time per page (mmap + faults + munmap);
  * anon_fault_us: the simulated page_fault1 cycle on one CPU, per page: mmap 16 MiB,
    store64 into every page (a write fault each), munmap (its cost shared by the pages);
    anon_fault_vs_kernel is the ratio of the two, taken within one repetition.  The
    simulated machine has 1 GiB so that its Normal zone's per-CPU lists are sized as
    the host's are (pcp->batch 63, pcp->high in the thousands: zone_batchsize and
    zone_highsize of the zone); on a 96 MiB machine batch is 3 and high <= 2304, and a
    16 MiB cycle overflows the PCP into the buddy and refills from it every few pages,
    work the host kernel's cycle does not do;
  * tlb_hit_access_ns: one simulated load64 that hits the TLB (timeit, net of the loop);
  * cow_fault_us: per page, the parent writing every page of a 4 MiB region it shares
    with a forked child that is still alive (copies, not steals);
  * page_fault1_{processes,threads}_scaling_2cpu: faults/s of real coordinator runs of
    scenarios/page-fault1.toml (16 MiB regions, per_vma) at 2 CPUs over 1 CPU, on a
    1 GiB machine for the reason anon_fault_us uses one: pcp->high is the zone's LOW
    mark split over the node's CPUs, so on 256 MiB two CPUs get high 1517 / batch 15
    each and every 4096-page munmap overflows its PCP into the buddy under the
    zone->lock both CPUs share (lock_stat: ~2,300-5,200 zone->lock acquisitions in a
    3 s 2-CPU run against 14 on one CPU), a cost of the small machine the host's
    figure (high in the thousands per CPU) does not have; on 1 GiB high is 6107 / batch
    63 per CPU and a region's pages stay on the CPU that freed them (16 acquisitions);
  * fault_churn_per_vma_vs_mmap_lock: faults/s of the faulting CPU of
    scenarios/fault-churn.toml (threads, 2 CPUs: one faults, one maps and unmaps),
    per_vma over mmap_lock, both runs in one repetition;
  * find_vma_us: one lookup in a tree of 10,000 VMAs (VmaOps.find_vma: the maple tree
    walk, no VMA cache), random addresses, net of the loop;
  * vma_bytes: the arena bytes those 10,000 VMAs cost -- slab memory of the
    vm_area_struct and maple_node caches (objects, their share of the tree's nodes, slab
    slack) -- per VMA;
  * fork_64mib_ms: dup_mm of a task with 64 MiB of touched anonymous memory;
  * tlb_shootdown_us: flush_tlb_mm_range of one page with one remote CPU -- a second
    process (pinned to another host CPU) running a thread of the same mm and busy
    loading from it, so it takes the IPI at its next access boundary -- from the
    request to the acknowledgement (median of single flushes);
  * {rwsem,objspin}_storm_{wait_max_ms,fairness}: the embedded locks (sync/objlock.py:
    the rw_semaphore of mmap_lock taken for write, the spinlock of ptlock/lru_lock) in a
    STORM_S storm of two processes with a short critical section: lock_stat's
    waittime-max of the class, and Jain's index of the acquisitions per CPU (1.0 =
    equal shares).  The rwsem bounds a waiter's wait by its hand-off (Linux lets
    spinning writers steal for RWSEM_WAIT_TIMEOUT first, so its shares stay unequal);
    the spinlock's reservation hands it over after the waiter's spin phase.

Warm-up: the first touch of an arena page by a process costs a host page fault (~10-30
us on a virtual machine), an artifact of the simulation, not simulated work.  Every
in-process fault figure therefore runs its cycle once untimed first (the allocator hands
the same, now host-mapped, pages out again), and the coordinator runs use regions small
enough that the warm-up window covers full cycles.  The host is shared: every figure is
the median of the repetitions, ratios are computed inside one repetition, and within a
repetition in-process figures take the best of a few cycles, as timeit does.
"""

from __future__ import annotations

import mmap
import os
import random
import statistics
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.boot import create_machine
from aerosync.mm.pmm.init import single_node_sim
from aerosync.mm.vm import mmap as M

__all__ = ["GROUPS"]

PG = 4096
RW, ANON = M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS
_SCEN = Path(__file__).resolve().parent.parent.parent / "scenarios"
_FAULT_PAGES = 4096               # 16 MiB per fault cycle
_COW_PAGES = 1024                 # 4 MiB forked
_NR_VMAS = 10_000


def _machine(nr_cpus: int, mib: int, extra: list[SectionSpec] | None = None, **vm: Any) -> Arena:
    return create_machine({"nr_cpus": nr_cpus, "nr_pages": (mib << 20) // PG, "sim": single_node_sim(nr_cpus),
                           "vm": vm}, extra or ())


def _with_task(arena: Arena, cpu: int = 0) -> Any:
    from aerosync.mm.vm.vm import VM

    vm = VM(arena, cpu)
    vm.switch_to(vm.task_create("bench"))
    return vm


def _close(arena: Arena, vm: Any) -> None:
    try:
        if vm is not None:
            if vm.current_task() >= 0:
                vm.exit()
            vm.leave()
    finally:
        arena.close()
        arena.unlink()


def _best(fn: Callable[[], float], n: int = 3) -> float:
    return min(fn() for _ in range(n))


# ------------------------------------------------------------------ faults
def _kernel_cycle(npages: int) -> float:
    import numpy as np

    t0 = time.perf_counter()
    m = mmap.mmap(-1, npages * PG)
    a = np.frombuffer(m, dtype=np.uint8)
    a[::PG] = 1
    del a
    m.close()
    return (time.perf_counter() - t0) / npages * 1e6


def _sim_cycle(vm: Any, npages: int) -> float:
    store64 = vm.store64
    t0 = time.perf_counter()
    addr = vm.mmap(0, npages * PG, RW, ANON)
    for i in range(npages):
        store64(addr + i * PG, i)
    vm.munmap(addr, npages * PG)
    return (time.perf_counter() - t0) / npages * 1e6


def _cow_cycle(vm: Any, npages: int) -> float:
    """Parent writes every page of a region a live child shares; per page."""
    from aerosync.mm.vm.task import task_free

    store64 = vm.store64
    addr = vm.mmap(0, npages * PG, RW, ANON)
    for i in range(npages):
        store64(addr + i * PG, i)
    parent = vm.current_task()
    child = vm.fork()
    t0 = time.perf_counter()
    for i in range(npages):
        store64(addr + i * PG, ~i & 0xFFFF)
    t = time.perf_counter() - t0
    vm.switch_to(child)
    vm.exit()
    task_free(vm.arena, child)
    vm.switch_to(parent)
    vm.munmap(addr, npages * PG)
    return t / npages * 1e6


_FAULT_MACHINE_MIB = 1024         # PCP sized as the host's (see the module docstring)


def bench_faults() -> dict[str, float]:
    arena, vm = _machine(1, _FAULT_MACHINE_MIB), None
    try:
        vm = _with_task(arena)
        _sim_cycle(vm, _FAULT_PAGES)                       # warm: host-map the arena pages
        _kernel_cycle(_FAULT_PAGES)
        sim = _best(lambda: _sim_cycle(vm, _FAULT_PAGES))
        kernel = _best(lambda: _kernel_cycle(_FAULT_PAGES))
        _cow_cycle(vm, _COW_PAGES)
        cow = _best(lambda: _cow_cycle(vm, _COW_PAGES))
        return {"kernel_anon_fault_us": kernel, "anon_fault_us": sim, "anon_fault_vs_kernel": sim / kernel,
                "cow_fault_us": cow}
    finally:
        _close(arena, vm)


def bench_tlb_hit() -> dict[str, float]:
    arena, vm = _machine(1, 16), None
    try:
        vm = _with_task(arena)
        addr = vm.mmap(0, PG, RW, ANON)
        vm.store64(addr, 1)
        g = {"load64": vm.load64, "a": addr + 8}
        n = 200_000
        base = min(timeit.repeat("pass", globals=g, number=n, repeat=3))
        t = min(timeit.repeat("load64(a)", globals=g, number=n, repeat=3))
        del g
        return {"tlb_hit_access_ns": max(0.0, (t - base) / n * 1e9)}
    finally:
        _close(arena, vm)


# ------------------------------------------------------------------ runs
def _run(scenario: str, *overrides: str) -> Any:
    from aerosync import coordinator
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    scn = load_scenario(_SCEN / scenario, registry(), ["run.duration=2.0", "run.warmup=0.7", *overrides])
    res = coordinator.run(scn)
    w = res.workload
    if w.get("corrupt") or w.get("leaked_pages") or not res.mm_check.get("ok", False):
        raise RuntimeError(f"bench vm: {scenario} {overrides}: the run failed its checks: {w}")
    return res


def bench_scaling() -> dict[str, float]:
    pf1 = ("page-fault1.toml", "workload.size_mb=16", "machine.memory=1G", "vm.fault_locking=per_vma")
    out = {}
    for mode in ("processes", "threads"):
        one = _run(*pf1, f"vm.mm={mode}", "machine.cpus=1").ops_per_s
        two = _run(*pf1, f"vm.mm={mode}", "machine.cpus=2").ops_per_s
        out[f"page_fault1_{mode}_scaling_2cpu"] = two / one
    return out


def bench_churn() -> dict[str, float]:
    rate = {}
    for locking in ("per_vma", "mmap_lock"):
        res = _run("fault-churn.toml", "machine.cpus=2", "machine.memory=256M", "vm.mm=threads",
                   f"vm.fault_locking={locking}", "workload.size_mb=16", "workload.faulters=1",
                   "workload.churn_kb=64", "workload.churn_touch=1")
        # a faulter starved for the whole window counts as one fault in it (a lower bound)
        rate[locking] = max(res.workload["faulter_faults_per_s"], 1.0 / res.measured_s)
    return {"fault_churn_per_vma_vs_mmap_lock": rate["per_vma"] / rate["mmap_lock"]}


# ------------------------------------------------------------------ the VMA tree, fork
def _slab_bytes(arena: Arena, names: tuple[str, ...]) -> int:
    from aerosync.mm.slab.slab_common import slabinfo_json

    return sum(r["cache_size_kb"] << 10 for r in slabinfo_json(arena) if r["name"] in names)


def bench_vmas() -> dict[str, float]:
    arena, vm = _machine(1, 64), None
    try:
        vm = _with_task(arena)
        caches = ("vm_area_struct", "maple_node")
        vm.rcu.barrier()
        before = _slab_bytes(arena, caches)
        # adjacent one-page mappings of alternating protection: nothing merges
        addrs = [vm.mmap(0, PG, M.PROT_READ if i & 1 else RW, ANON) for i in range(_NR_VMAS)]
        vm.rcu.barrier()                                   # replaced tree nodes really freed
        per_vma = (_slab_bytes(arena, caches) - before) / _NR_VMAS
        mm = vm.current_mm()
        rng = random.Random(9)
        probe = [a + rng.randrange(PG) for a in rng.sample(addrs, len(addrs))]
        g = {"find_vma": vm.vmas.find_vma, "mm": mm, "probe": probe}
        base = min(timeit.repeat("for a in probe: pass", globals=g, number=1, repeat=3))
        t = min(timeit.repeat("for a in probe: find_vma(mm, a)", globals=g, number=5, repeat=3)) / 5
        del g
        return {"find_vma_us": max(0.0, (t - base) / len(probe) * 1e6), "vma_bytes": per_vma}
    finally:
        _close(arena, vm)


def bench_fork() -> dict[str, float]:
    from aerosync.mm.vm.task import task_free

    arena, vm = _machine(1, 320), None
    try:
        vm = _with_task(arena)
        npages = (64 << 20) // PG
        addr = vm.mmap(0, npages * PG, RW, ANON)
        store64 = vm.store64
        for i in range(npages):
            store64(addr + i * PG, i)

        def one() -> float:
            t0 = time.perf_counter()
            child = vm.fork()
            t = time.perf_counter() - t0
            vm.exit(child)                                 # the child exits without running
            task_free(arena, child)
            return t * 1e3

        one()                                              # warm: the child's tables, objects
        return {"fork_64mib_ms": _best(one, 2)}
    finally:
        _close(arena, vm)


# ------------------------------------------------------------------ TLB shootdown
_W_READY, _W_STOP, _W_MM, _W_ADDR = 0, 8, 16, 24


def _remote_reader(name: str, host_cpu: int) -> None:
    """The remote CPU (simulated CPU 1): a thread of the bench task's mm, loading from
    it until told to stop; every access polls this CPU's IPIs."""
    from aerosync.mm.vm.vm import VM

    if host_cpu >= 0:
        os.sched_setaffinity(0, {host_cpu})
    arena = Arena.attach(name)
    try:
        w = arena.off("vmbench")
        at = arena.atomic
        vm = VM(arena, 1)
        vm.switch_to(vm.task_create("remote", mm=at.load64(w + _W_MM)))
        load64, addr = vm.load64, at.load64(w + _W_ADDR)
        load64(addr)
        at.store64(w + _W_READY, 1)
        while not at.load64(w + _W_STOP):
            for _ in range(64):
                load64(addr)
        vm.exit()
        vm.leave()
        del vm, load64
    finally:
        arena.close()


def bench_shootdown() -> dict[str, float]:
    import multiprocessing as mp

    arena, vm, proc = _machine(2, 32, [SectionSpec("vmbench", 4096)]), None, None
    mine = os.sched_getaffinity(0)
    hosts = sorted(mine)
    try:
        if len(hosts) >= 2:
            os.sched_setaffinity(0, {hosts[0]})
        vm = _with_task(arena)
        addr = vm.mmap(0, 2 * PG, RW, ANON)
        vm.store64(addr, 1)
        vm.store64(addr + PG, 2)
        w, at = arena.off("vmbench"), arena.atomic
        mm = vm.current_mm()
        at.store64(w + _W_MM, mm)
        at.store64(w + _W_ADDR, addr)
        proc = mp.get_context("spawn").Process(target=_remote_reader, args=(arena.name, hosts[1] if len(hosts) >= 2
                                                                               else -1), daemon=True)
        proc.start()
        deadline = time.monotonic() + 60
        while not at.load64(w + _W_READY):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"bench vm: the remote CPU process did not start (exit code {proc.exitcode})")
            time.sleep(0.001)
        flush, clock = vm.tlb.flush_tlb_mm_range, time.perf_counter_ns
        page = addr + PG                                   # not the page the remote loads from
        times = []
        for _ in range(2000):
            t0 = clock()
            flush(mm, page, page + PG)
            times.append(clock() - t0)
        at.store64(w + _W_STOP, 1)
        proc.join(30)
        if proc.exitcode != 0:
            raise RuntimeError(f"bench vm: the remote CPU process failed (exit code {proc.exitcode})")
        return {"tlb_shootdown_us": statistics.median(times[200:]) / 1e3}
    finally:
        if proc is not None and proc.is_alive():
            arena.atomic.store64(arena.off("vmbench") + _W_STOP, 1)
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        os.sched_setaffinity(0, mine)
        _close(arena, vm)


# ------------------------------------------------------------------ embedded-lock storms
_LS_START, _LS_STOP = 0, 8
STORM_S = 1.0


def _lock_storm_child(name: str, cpu: int, host_cpu: int, kind: str, lock_off: int, cls: int) -> None:
    """One CPU of the storm: take the lock, a short critical section (a few hundred
    bytecodes, about a page-table update), release, again until told to stop."""
    from aerosync.sync.objlock import ObjRWSem, ObjSpinLock

    if host_cpu >= 0:
        os.sched_setaffinity(0, {host_cpu})
    arena = Arena.attach(name)
    try:
        w, at = arena.off("vmbench"), arena.atomic
        if kind == "rwsem":
            h = ObjRWSem(arena, cls, cpu)
            lock, unlock = h.down_write, h.up_write
        else:
            h = ObjSpinLock(arena, cls, cpu)
            lock, unlock = h.lock, h.unlock
        at.fetch_add64(w + _LS_START, 1)
        while at.load64(w + _LS_START) < 1 << 32:
            time.sleep(0.0002)
        while not at.load64(w + _LS_STOP):
            for _ in range(32):
                lock(lock_off)
                for _ in range(30):
                    pass
                unlock(lock_off)
        del h, lock, unlock
    finally:
        arena.close()


def _lock_storm(kind: str) -> dict[str, float]:
    """Two processes (one host CPU each when there are two) hammer one embedded lock for
    STORM_S: lock_stat's waittime-max of its class and Jain's index of the acquisitions."""
    import multiprocessing as mp

    from aerosync.bench.reliability import jain_index
    from aerosync.sync.lockclass import OBJ_RW, OBJ_SPIN, class_stats, objlock_class, stat_idx

    arena = _machine(2, 8, [SectionSpec("vmbench", 4096)])
    procs: list[Any] = []
    try:
        cls = objlock_class(arena, f"bench_{kind}", OBJ_RW if kind == "rwsem" else OBJ_SPIN)
        w, at = arena.off("vmbench"), arena.atomic
        hosts = sorted(os.sched_getaffinity(0))
        ctx = mp.get_context("spawn")
        for c in range(2):
            host = hosts[c] if len(hosts) >= 2 else -1
            p = ctx.Process(target=_lock_storm_child, args=(arena.name, c, host, kind, w + 64, cls), daemon=True)
            p.start()
            procs.append(p)
        deadline = time.monotonic() + 60
        while at.load64(w + _LS_START) < 2:
            if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
                raise RuntimeError("bench vm: a lock-storm process did not start")
            time.sleep(0.001)
        at.fetch_add64(w + _LS_START, 1 << 32)
        time.sleep(STORM_S)
        at.store64(w + _LS_STOP, 1)
        for p in procs:
            p.join(30)
            if p.exitcode != 0:
                raise RuntimeError(f"bench vm: a lock-storm process failed (exit code {p.exitcode})")
        row = next(r for r in class_stats(arena) if r["lock_class"] == f"bench_{kind}")
        acq = [arena.u64[stat_idx(arena, c, cls, 0)] for c in range(2)]
        return {f"{kind}_storm_wait_max_ms": int(row["wait_max"]) / 1e6, f"{kind}_storm_fairness": jain_index(acq)}
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        arena.close()
        arena.unlink()


def bench_lock_storms() -> dict[str, float]:
    return {**_lock_storm("rwsem"), **_lock_storm("objspin")}


GROUPS = {
    "faults": (bench_faults, [("kernel_anon_fault_us", "us", "reported"), ("anon_fault_us", "us", "reported"),
                              ("anon_fault_vs_kernel", "x", "<= 3"), ("cow_fault_us", "us", "<= 2 x anon_fault_us")]),
    "tlb": (bench_tlb_hit, [("tlb_hit_access_ns", "ns", "<= 400")]),
    "scaling": (bench_scaling, [("page_fault1_processes_scaling_2cpu", "x", ">= 1.7"),
                                ("page_fault1_threads_scaling_2cpu", "x", ">= 1.5")]),
    "churn": (bench_churn, [("fault_churn_per_vma_vs_mmap_lock", "x", ">= 1.3")]),
    "vmas": (bench_vmas, [("find_vma_us", "us", "<= 2"), ("vma_bytes", "B", "<= 320")]),
    "fork": (bench_fork, [("fork_64mib_ms", "ms", "reported")]),
    "shootdown": (bench_shootdown, [("tlb_shootdown_us", "us", "reported")]),
    "locks": (bench_lock_storms, [("rwsem_storm_wait_max_ms", "ms", "reported"),
                                  ("rwsem_storm_fairness", "x", "reported"),
                                  ("objspin_storm_wait_max_ms", "ms", "reported"),
                                  ("objspin_storm_fairness", "x", "reported")]),
}
