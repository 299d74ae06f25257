"""Automatic NUMA balancing (mm/numa/task_numa.py): the scan marks PTEs PROT_NONE,
hinting faults are counted and filtered (should_numa_migrate_memory's two-stage
filter), misplaced pages move toward the accessing node, prot_numa_skip's exceptions,
the placement statistics -- and a multi-process stress with balancing on, checked
mid-flight: every page mapped once, on the right node's accounting."""

from __future__ import annotations

import time

from aerosync.arena import layout as L
from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa import numa_types as N
from aerosync.mm.numa.check import numa_check
from aerosync.mm.numa.numa_maps import numa_maps_json
from aerosync.mm.numa.task_numa import cpu_pid_to_cpupid
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import P_SPARE
from aerosync.mm.pmm.vm_event import fold_vm_events
from aerosync.mm.vm.pgtable import _PAGE_PRESENT, _PAGE_PROTNONE
from tests import numa_stress_child as C
from tests.numa_helpers import ANON, PG, RW, cpu, done, node_of, numa_machine, pfn_at, pid_of

FAST = {"balancing": True, "numa_balancing_scan_delay_ms": 0, "numa_balancing_scan_period_min_ms": 1,
        "numa_balancing_scan_period_max_ms": 100}


def _ev(a, *names: str) -> list[int]:
    e = fold_vm_events(a)
    return [e[k] for k in names]


def _remote_region(vm, n, pages: int, node: int) -> int:
    n.set_mempolicy(MP.MPOL_BIND, 1 << node)
    addr = vm.mmap(0, pages * PG, RW, ANON)
    for p in range(pages):
        vm.store64(addr + p * PG, 100 + p)
    n.set_mempolicy(MP.MPOL_DEFAULT)
    return addr


def test_scan_hints_and_hinting_faults_migrate_to_the_accessing_node(machine) -> None:
    a = numa_machine(machine, numa=FAST)
    vm, n, tid = cpu(a, 0)
    addr = _remote_region(vm, n, 32, 1)
    u0, h0, l0, m0 = _ev(a, "numa_pte_updates", "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated")
    assert n.balancing.task_numa_work(force=True) == 32
    for p in range(32):
        e = n.migrate.entry_at(vm.cur[1], addr + p * PG)
        assert e & (_PAGE_PRESENT | _PAGE_PROTNONE) == _PAGE_PROTNONE          # a NUMA hint
    rec = next(r for r in numa_maps_json(a, pid_of(a, tid)) if r["start"] == addr)
    assert rec["pages"] == 32 and rec["node"] == {1: 32}                        # hinted pages still count
    assert [vm.load64(addr + p * PG) for p in range(32)] == [100 + p for p in range(32)]
    u1, h1, l1, m1 = _ev(a, "numa_pte_updates", "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated")
    assert (u1 - u0, h1 - h0, l1 - l0, m1 - m0) == (32, 32, 0, 32)
    assert [node_of(vm, addr + p * PG) for p in range(32)] == [0] * 32
    ro = n.policy.task_rec(tid)
    assert a.u64[(ro + N.TN_HINT_FAULTS) >> 3] == 32 and a.u64[(ro + N.TN_PAGES_MIGRATED) >> 3] == 32
    # prot_numa_skip: a single-threaded task's pages on its own node are not marked again
    assert n.balancing.task_numa_work(force=True) == 0
    done(a, vm)


def test_hinting_fault_on_a_local_page_counts_local_and_stays(machine) -> None:
    """A threads mm (mm_users 2) gets its local pages hinted too; their faults count as
    local and nothing moves."""
    a = numa_machine(machine, numa=FAST)
    vm, n, _ = cpu(a, 0)
    vm.forks.mmget(vm.cur[1])                                       # a second user: not single-threaded
    addr = vm.mmap(0, 8 * PG, RW, ANON)
    for p in range(8):
        vm.store64(addr + p * PG, p)
    pfns = [pfn_at(vm, addr + p * PG) for p in range(8)]
    assert n.balancing.task_numa_work(force=True) == 8
    h0, l0 = _ev(a, "numa_hint_faults", "numa_hint_faults_local")
    assert [vm.load64(addr + p * PG) for p in range(8)] == list(range(8))
    h1, l1 = _ev(a, "numa_hint_faults", "numa_hint_faults_local")
    assert (h1 - h0, l1 - l0) == (8, 8)
    assert [pfn_at(vm, addr + p * PG) for p in range(8)] == pfns
    vm.store64(addr, 9)                                             # writable again (own private page)
    vm.forks.mmput(vm.cur[1])
    done(a, vm)


def test_should_numa_migrate_memory_two_stage_filter(machine) -> None:
    a = numa_machine(machine, numa=FAST)
    vm, n, tid = cpu(a, 0)
    addr = vm.mmap(0, PG, RW, ANON)
    vm.store64(addr, 1)
    pfn = pfn_at(vm, addr)
    spare = a.off("pagemeta") + pfn * 64 + P_SPARE
    ro = n.policy.task_rec(tid)
    pid = pid_of(a, tid)
    smm = n.balancing.should_numa_migrate_memory

    def last(cpu_: int, pid_: int) -> None:
        a.u32[spare >> 2] = cpu_pid_to_cpupid(cpu_, pid_) if cpu_ >= 0 else 0

    # early in the task's life (no preferred node): first faults and private faults move
    last(-1, 0)
    assert smm(tid, pfn, 1, 0) is True
    assert a.u32[spare >> 2] == cpu_pid_to_cpupid(0, pid)          # last_cpupid recorded
    last(0, pid)
    assert smm(tid, pfn, 1, 0) is True
    last(1, pid + 1)                                                # another task, on the other node
    assert smm(tid, pfn, 1, 0) is False                             # stage two: not the same node twice
    # later (preferred node known, scan_seq > 4): a shared page moves only when the last
    # fault came from the destination node too
    a.i64[(ro + N.TN_PREF_NID) >> 3] = 0
    a.u64[(ro + N.TN_SCAN_SEQ) >> 3] = 5
    last(-1, 0)
    assert smm(tid, pfn, 1, 0) is True
    last(1, pid + 1)
    assert smm(tid, pfn, 1, 0) is False
    last(0, pid + 1)                                                # shared, same node: no numa group -> move
    assert smm(tid, pfn, 1, 0) is True
    last(1, pid)                                                    # our own last fault, from node 1
    assert smm(tid, pfn, 1, 0) is False
    done(a, vm)


def test_two_stage_filter_stops_a_page_bouncing_between_nodes(machine) -> None:
    """Two tasks of one mm on different nodes take turns at one page after the early
    phase: the first hinting fault moves it (no last access recorded yet), then each
    fault sees the other node's last access and the page stays."""
    a = numa_machine(machine, numa=FAST, vm={"mm": "threads"})
    A, na, ta = cpu(a, 0)
    B, nb, tb = cpu(a, 1, mm=A.cur[1])
    for nv, t in ((na, ta), (nb, tb)):
        ro = nv.policy.task_rec(t)
        a.i64[(ro + N.TN_PREF_NID) >> 3] = 0
        a.u64[(ro + N.TN_SCAN_SEQ) >> 3] = 9
    addr = A.mmap(0, PG, RW, ANON)
    A.store64(addr, 1)
    na.migrate.lru_drain()                                          # A's lru_add batch: the folio on its LRU
    moved0 = _ev(a, "numa_pages_migrated")[0]
    from tests.test_vm_races import Other, stop_all

    for turn in range(4):
        X, nx = (A, na) if turn % 2 else (B, nb)
        idle = Other(B if X is A else A, lambda: None).start()      # the other CPU answers shootdowns
        X.make_current(thread_only=True)
        assert nx.balancing.change_prot_numa(X.cur[1], X.vmas.vma_lookup(X.cur[1], addr), addr, addr + PG) == 1
        assert X.load64(addr) == 1
        stop_all()
        _ = idle
    assert _ev(a, "numa_pages_migrated")[0] == moved0 + 1          # moved once, then no ping-pong
    assert node_of(A, addr) == 1
    A.make_current()
    done(a, A, B)


def test_policies_without_mof_are_not_scanned_and_bind_balancing_moves_within_its_nodes(machine) -> None:
    a = numa_machine(machine, nr_nodes=4, nr_cpus=4, nr_pages=16384, numa=FAST)
    vm, n, _ = cpu(a, 0)
    addr = _remote_region(vm, n, 4, 2)
    n.mbind(addr, 4 * PG, MP.MPOL_BIND, 0b0111)                    # explicit policy: no MPOL_F_MOF
    assert n.balancing.task_numa_work(force=True) == 0
    n.mbind(addr, 4 * PG, MP.MPOL_BIND | MP.MPOL_F_NUMA_BALANCING, 0b0111)
    assert n.balancing.task_numa_work(force=True) == 4
    assert [vm.load64(addr + p * PG) for p in range(4)] == [100, 101, 102, 103]
    assert [node_of(vm, addr + p * PG) for p in range(4)] == [0] * 4   # this node is in the nodes: moved
    addr2 = _remote_region(vm, n, 2, 2)
    n.mbind(addr2, 2 * PG, MP.MPOL_BIND | MP.MPOL_F_NUMA_BALANCING, 0b1100)
    n.balancing.task_numa_work(force=True)
    assert [vm.load64(addr2 + p * PG) for p in range(2)] == [100, 101]
    assert [node_of(vm, addr2 + p * PG) for p in range(2)] == [2, 2]    # node 0 outside the nodes: stays
    done(a, vm)


def test_shared_cow_pages_are_not_hinted(machine) -> None:
    a = numa_machine(machine, numa=FAST)
    vm, n, _ = cpu(a, 0)
    _remote_region(vm, n, 4, 1)
    child = vm.fork()
    assert n.balancing.task_numa_work(force=True) == 0             # mapped by parent and child
    vm.exit(child)
    done(a, vm)


def test_placement_picks_the_node_with_the_faults_and_adapts_the_period(machine) -> None:
    """task_numa_placement: the preferred node is the one with most (decayed) memory
    faults, a migrated page's fault counting on its new node; update_task_scan_period
    scans slower when no fault was local (the pages were remote and moved), and slower
    again, by NUMA_PERIOD_SLOTS steps, once the faults are local and private."""
    a = numa_machine(machine, numa={**FAST, "numa_balancing_scan_period_max_ms": 60000})
    vm, n, tid = cpu(a, 0)
    vm.forks.mmget(vm.cur[1])                                       # two users: local pages get hinted too
    addr = _remote_region(vm, n, 16, 1)
    ro = n.policy.task_rec(tid)

    def scan_round() -> None:
        """A scan (a full pass bumps mm->numa_scan_seq), then faults on every page: the
        first one runs task_numa_placement for the new sequence -- once the placement's
        retry interval (numa_migrate_preferred: scan period / 16) has passed."""
        time.sleep(a.u64[(ro + N.TN_SCAN_PERIOD) >> 3] / 16 / 1000 + 0.01)
        n.balancing.task_numa_work(force=True)
        for p in range(16):
            vm.load64(addr + p * PG)

    a.u64[(ro + N.TN_SCAN_PERIOD) >> 3] = 200
    scan_round()                       # placement sees no fault yet: slower (400); 16 remote faults, moved
    assert a.u64[(ro + N.TN_SCAN_PERIOD) >> 3] == 400
    scan_round()                       # those 16 were remote (local + shared == 0): slower again
    assert a.u64[(ro + N.TN_SCAN_PERIOD) >> 3] == 800
    assert a.i64[(ro + N.TN_PREF_NID) >> 3] == 0                    # counted where the pages went
    scan_round()                       # 16 local private faults: ps_ratio 10 -> + 3 slots of 80 ms
    assert a.u64[(ro + N.TN_SCAN_PERIOD) >> 3] == 800 + 3 * 80
    assert a.i64[(ro + N.TN_PREF_NID) >> 3] == 0
    assert a.i64[(ro + N.TN_TOTAL_FAULTS) >> 3] > 0
    vm.forks.mmput(vm.cur[1])
    done(a, vm)


def test_task_work_runs_the_scan_on_the_task_period(machine) -> None:
    a = numa_machine(machine, numa=FAST)
    vm, n, _ = cpu(a, 0)
    addr = _remote_region(vm, n, 8, 1)
    deadline = time.monotonic() + 10
    while _ev(a, "numa_pte_updates")[0] < 8:
        vm.task_work()                                              # what the workload does per batch
        time.sleep(0.005)
        assert time.monotonic() < deadline, "task_work never scanned"
    assert [vm.load64(addr + p * PG) for p in range(8)] == [100 + p for p in range(8)]
    assert [node_of(vm, addr + p * PG) for p in range(8)] == [0] * 8
    done(a, vm)


def test_balancing_stress_with_live_checks(machine, spawn, soak: bool) -> None:
    """Three CPUs (threads of one mm, on two nodes) with balancing on: verified accesses
    to memory first touched on the other node, scans, move_pages, mbind MOVE, fork +
    exit, munmap + mmap -- parked now and then for the page checker and the NUMA checker
    (every mapping counted once, nr_anon_pages per node right, no migration entry or
    locked folio left)."""
    nchild = 3
    nops = 3000 if soak else 400
    a = numa_machine(machine, nr_nodes=2, nr_cpus=nchild + 1, nr_pages=16384, numa=FAST, vm={"mm": "threads"},
                     extra=[L.SectionSpec("stressctl", 16384)])
    from aerosync.mm.vm.vm import VM

    me = VM(a, nchild)                                              # the checking CPU: never runs the mm
    mm = me.forks.mm_alloc()
    ctl = a.off("stressctl")
    c8 = ctl >> 3
    q = a.u64
    procs = [spawn(C.run, a.name, c, mm, ctl, nops, 1) for c in range(nchild)]
    q[c8 + C.C_GO] = 1
    checks = 0
    deadline = time.monotonic() + 300
    while not all(q[c8 + C.C_DONE + c] for c in range(nchild)):
        time.sleep(0.1)
        if all(q[c8 + C.C_DONE + c] for c in range(nchild)):
            break
        q[c8 + C.C_PAUSE] = 1
        while not all(q[c8 + C.C_PARKED + c] or q[c8 + C.C_DONE + c] for c in range(nchild)):
            for p in procs:
                assert p.exitcode in (None, 0), "a stress CPU died"
            assert time.monotonic() < deadline, "the CPUs never parked"
            time.sleep(0.002)
        r = check(a)
        assert r.ok, r.violations[:5]
        bad = numa_check(a)
        assert not bad, bad[:5]
        checks += 1
        q[c8 + C.C_PAUSE] = 0
    for p in procs:
        p.join(60)
    errs = [bytes(a.u8[ctl + C.ERR_OFF + c * 2048 : ctl + C.ERR_OFF + (c + 1) * 2048]).rstrip(b"\0").decode()
            for c in range(nchild)]
    assert [q[c8 + C.C_BAD + c] for c in range(nchild)] == [0] * nchild, [e for e in errs if e]
    assert all(p.exitcode == 0 for p in procs)
    assert sum(q[c8 + C.C_OPS + c] for c in range(nchild)) == nchild * nops
    ev = fold_vm_events(a)
    assert ev["numa_hint_faults"] > 0 and ev["numa_pages_migrated"] > 0 and ev["pgmigrate_success"] > 0
    assert checks >= 1
    assert sum(q[c8 + C.C_MOVED + c] for c in range(nchild)) > 0     # move_pages / mbind moved pages too
    me.forks.mmput(mm)
    me.leave()
    r = check(a)
    assert r.ok, r.violations[:5]
    assert not numa_check(a)


def _set_faults(a, n, tid: int, mem: dict[int, int], pref: int) -> None:
    """A task's decayed memory-fault statistics (private faults per node) and preferred node."""
    ro = n.policy.task_rec(tid)
    nr = n.policy.nr_nodes
    for nid in range(nr):
        a.i64[(ro + N.TN_FAULTS) // 8 + N.NR_NUMA_HINT_FAULT_TYPES * (N.NUMA_MEM * nr + nid) + 1] = mem.get(nid, 0)
    a.i64[(ro + N.TN_TOTAL_FAULTS) >> 3] = sum(mem.values())
    a.i64[(ro + N.TN_PREF_NID) >> 3] = pref


def _task_numa_compare_model(taskimp: int, cur_w_src: int, cur_w_dst: int, cur_pref: int, src: int, dst: int) -> int:
    """kernel/sched/fair.c task_numa_compare(), tasks without numa groups, no idle CPU,
    equal loads: the swap's importance (the caller keeps it when >= SMALLIMP)."""
    imp = taskimp + cur_w_src - cur_w_dst
    if cur_pref == dst:
        imp -= imp // 16
    if cur_pref == src:
        imp += imp // 8
    return imp


def test_task_numa_migrate_picks_the_swap_that_helps_both(machine) -> None:
    """task_numa_migrate / task_numa_compare: a task preferring the other node swaps with
    the task there that moves to its own preferred node (task weights = share of memory
    faults, in 1/1000); a swap that would cost the other task more than it gains is
    below SMALLIMP; no preferred node (or already on it) asks for nothing."""
    from aerosync.mm.numa.task_numa import SMALLIMP

    a = numa_machine(machine, nr_cpus=4, numa={**FAST, "balancing_placement": True})
    c2n = list(a.config["sim"]["cpu_to_node"])
    src_cpu = c2n.index(0)
    dst_cpus = [c for c in range(4) if c2n[c] == 1]
    vm, n, p = cpu(a, src_cpu)
    assert n.balancing.placement
    happy, mover = vm.task_create("happy"), vm.task_create("mover")
    _set_faults(a, n, p, {0: 100, 1: 900}, pref=1)             # weights 100 / 900: taskimp 800
    _set_faults(a, n, happy, {1: 1000}, pref=1)                # all its memory on node 1
    _set_faults(a, n, mover, {0: 700, 1: 300}, pref=0)         # wants node 0
    assert n.balancing.task_weight(p, 1) == 900 and n.balancing.task_weight(mover, 0) == 700
    rq = [(dst_cpus[0], happy), (dst_cpus[1], mover)]
    best_cpu, cur, imp = n.balancing.task_numa_migrate(p, rq)
    assert (best_cpu, cur) == (dst_cpus[1], mover)
    assert imp == _task_numa_compare_model(800, 700, 300, 0, 0, 1) == 1350
    # only the happy task there: 800 + 0 - 1000 < SMALLIMP -> stay
    assert _task_numa_compare_model(800, 0, 1000, 1, 0, 1) < SMALLIMP
    assert n.balancing.task_numa_migrate(p, [(dst_cpus[0], happy)])[0] == -1
    assert n.balancing.task_numa_migrate(p, [(dst_cpus[0], -1)])[0] == -1           # idle CPU: not modelled
    _set_faults(a, n, p, {0: 100, 1: 900}, pref=-1)
    assert n.balancing.task_numa_migrate(p, rq)[0] == -1                             # no preferred node
    _set_faults(a, n, p, {0: 900, 1: 100}, pref=0)
    assert n.balancing.task_numa_migrate(p, rq)[0] == -1                             # runs on it already
    for t in (happy, mover):
        vm.exit(t)
        vm.reap(t)
    done(a, vm)


def test_task_placement_swaps_tasks_whose_memory_may_not_move(tmp_path) -> None:
    """scenarios/numa-task-placement.toml end to end: pages bound to the other node
    (bind with MPOL_F_NUMA_BALANCING: sampled, never misplaced), so balancing moves the
    tasks -- one swap, no page migrated, every task local, the data verified."""
    import json
    from pathlib import Path

    from aerosync.cli import main as cli_main

    scn = Path(__file__).resolve().parent.parent / "scenarios" / "numa-task-placement.toml"
    out = tmp_path / "r.json"
    assert cli_main(["run", str(scn), "--no-save", "--output", str(out), "--set", "run.duration=2.5"]) == 0
    w = json.loads(out.read_text())["workload"]
    assert w["corrupt"] == 0 and w["task_swaps"] == 1, w["locality"]
    assert w["vmstat"]["numa_pages_migrated"] == 0 and w["vmstat"]["numa_hint_faults"] > 0
    assert all(t["pages_local_pct"] == 100.0 for t in w["locality"].values()), w["locality"]


def test_balancing_under_reclaim(tmp_path) -> None:
    """NUMA balancing while reclaim (MGLRU, kswapd, ZMM/swap) takes pages away:
    6 MiB of anonymous memory on a 6 MiB two-node machine, first touched on the wrong node
    (more than fits, so reclaim must steal; on 8 MiB it stole only when a migration happened
    to overfill a node, which a loaded box's timing sometimes never did).
    Migration isolates folios from their LRU and freezes their references, so reclaim
    and migration never both own a folio: every stamp reads back, nothing leaks, the
    checkers pass; both pages stolen and pages migrated happen.  (Also the start
    barrier: kswapd shoots down TLBs while the CPUs wait for GO.)"""
    import json

    from aerosync.cli import main as cli_main

    scn = tmp_path / "numa-reclaim.toml"
    scn.write_text('[run]\nworkload = "numa_access"\nduration = 3.0\nwarmup = 0.0\n'
                   '[machine]\ncpus = 2\nmemory = "6M"\ntopology = "fake:2:21"\n[vm]\nmm = "processes"\n'
                   '[reclaim]\nlru = "mglru"\nswap_size = "32M"\n'
                   '[numa]\nbalancing = true\nnuma_balancing_scan_delay_ms = 100\n'
                   'numa_balancing_scan_period_min_ms = 100\nnuma_balancing_scan_period_max_ms = 2000\n'
                   '[workload]\nsize_mb = 3\ninit = "remote"\nwrite_pct = 30\n')
    out = tmp_path / "r.json"
    assert cli_main(["run", str(scn), "--no-save", "--output", str(out)]) == 0
    d = json.loads(out.read_text())
    w = d["workload"]
    assert w["corrupt"] == 0 and w["leaked_pages"] == 0 and w["leaked_mms"] == 0
    assert w["vmstat"]["numa_pages_migrated"] > 0 and d["mm_check"]["ok"]
    assert d["views_after"]["vmstat"]["json"]["pgsteal_anon"] > 0
