"""NUMA placement of process memory: tasks that read and write their memory through the
MMU, so where its pages sit decides what the accesses cost.

Each task owns memory: in processes mode ([vm] mm = "processes") its own region of
`size_mb`; in threads mode one shared region of `size_mb` split into one slice per CPU
(an OpenMP-style static schedule).  Before the run the memory is first touched:
  own      each task touches its own memory (first touch puts it on its node)
  cpu0     threads mode: the coordinator, acting as CPU 0's task, touches the whole
           region (the first-touch pitfall: every slice lands on CPU 0's node)
  remote   each task touches its memory under bind=<the next node with memory>, then
           goes back to its policy: everything starts 100 % remote
The task policy is the scenario's [numa] policy / cpu_policy; `mbind` gives the whole
region a VMA policy and `mbind_hot` the hot range one (numactl's words; with
`mbind_move` existing pages move, MPOL_MF_MOVE).  An operation is one 8-byte access to a
page of the task's own memory (uniform, or `hot_access_pct` % of them in the first
`hot_pct` % of its pages), a store for `write_pct` % of them.  [machine]
remote_access_ns makes remote accesses cost time; [numa] balancing lets the kernel move
pages toward their task (the scan runs at batch boundaries: VM.task_work).
`migrate_at_s` > 0 makes every task call migrate_pages(self, all other nodes -> its own
node) at that time into the run.

Verification: every page of a task's memory holds a stamp word (at a per-page offset);
stores update it and the task remembers the value; every load and a final sweep check
it (corrupt counts mismatches) -- across migrations and NUMA hinting faults.

Figures: accesses and the local ones (the page's node == the CPU's node, read from the
TLB entry the access used), and every `sample_ms` the share of the task's pages on its
node (a page-table walk of its memory), kept as a time series in the arena (section
"numawork") for the locality-over-time plot; the report gives each task's locality,
the series, the time until every task's pages are 90 % local, the NUMA vmstat
counters, and each task's /proc/<pid>/numa_maps at the end of the run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aerosync.arena import layout as L
from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.errors import UsageError
from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa.numa_maps import numa_maps_text, task_locality
from aerosync.mm.numa.numa_vm import attach
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.pgtable import PTE_PFN_MASK
from aerosync.mm.vm.vm import VM
from workers.workloads._common import counter_index
from workers.workloads._vm import cpu_vm, release_mm, setup_mm, shared_mm, vm_mode, vmwork_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "MAX_SAMPLES"]

COUNTERS: tuple[str, ...] = ("accesses", "local_accesses", "corrupt", "pages", "pages_local", "hint_faults",
                             "pages_migrated", "migrate_failed", "pid")
PG = 4096
MAX_SAMPLES = 1024
SAMPLE_WORDS = 5                    # t_ms, accesses, local_accesses, pages_local, pages
MAPS_BYTES = 4096
_INIT = ("own", "cpu0", "remote")
_PATTERNS = ("random", "sequential")


@dataclass(frozen=True, slots=True)
class Params:
    size_mb: int = 8
    init: str = "own"
    pattern: str = "random"
    write_pct: int = 20
    hot_pct: int = 100
    hot_access_pct: int = 100
    mbind: str = ""
    mbind_hot: str = ""
    mbind_move: bool = False
    migrate_at_s: float = 0.0
    sample_ms: int = 100
    verify: bool = True

    def validate(self) -> str | None:
        if not 1 <= self.size_mb <= 65536:
            return f"size_mb = {self.size_mb}: allowed 1..65536"
        if self.init not in _INIT:
            return f"init = {self.init!r}: allowed {', '.join(_INIT)}"
        if self.pattern not in _PATTERNS:
            return f"pattern = {self.pattern!r}: allowed {', '.join(_PATTERNS)}"
        for k in ("write_pct", "hot_pct", "hot_access_pct"):
            if not 0 <= getattr(self, k) <= 100:
                return f"{k} = {getattr(self, k)}: allowed 0..100"
        if not self.hot_pct:
            return "hot_pct = 0: allowed 1..100 (the hot range needs a page)"
        if not 10 <= self.sample_ms <= 60000:
            return f"sample_ms = {self.sample_ms}: allowed 10..60000"
        if self.migrate_at_s < 0:
            return f"migrate_at_s = {self.migrate_at_s}: allowed >= 0 (0: never)"
        return None


def _cpu_rec(nr_cpus: int) -> int:
    return 64 + MAX_SAMPLES * SAMPLE_WORDS * 8 + MAPS_BYTES


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(), SectionSpec("numawork", 64 + nr_cpus * _cpu_rec(nr_cpus))]


def _cpu_base(arena: Arena, cpu: int) -> int:
    return arena.off("numawork") + 64 + cpu * _cpu_rec(int(arena.config["nr_cpus"]))


def _stamp0(page: int) -> int:
    """The stamp of a page nobody has stored to since its first touch."""
    return 0x5A5A_0000_0000_0000 | page


def _policy_mask(text: str, nr_nodes: int, mem: list[int], key: str) -> tuple[int, int]:
    """(mode | flags, nodes) of numactl words, for set_mempolicy / mbind."""
    p = MP.parse_policy(text, nr_nodes, mem_nodes=mem, key=key)
    nodes = p.user_nodes if p.flags & (MP.MPOL_F_STATIC_NODES | MP.MPOL_F_RELATIVE_NODES) else p.nodes
    return p.mode | (p.flags & MP.MPOL_MODE_FLAGS), nodes


def _place(vm: VM, params: Params, base: int, npages: int) -> None:
    """The region's VMA policies: mbind of the whole region, then of its hot range."""
    numa = vm.numa
    nr_nodes, mem = numa.policy.nr_nodes, [n for n in range(64) if numa.policy.mem_mask >> n & 1]
    flags = MP.MPOL_MF_MOVE if params.mbind_move else 0
    if params.mbind:
        mode, nodes = _policy_mask(params.mbind, nr_nodes, mem, "workload.mbind")
        numa.mbind(base, npages * PG, mode, nodes, flags)
    if params.mbind_hot:
        hot = max(1, npages * params.hot_pct // 100)
        mode, nodes = _policy_mask(params.mbind_hot, nr_nodes, mem, "workload.mbind_hot")
        numa.mbind(base, hot * PG, mode, nodes, flags)


def _touch(vm: VM, base: int, first: int, n: int) -> None:
    store64 = vm.store64
    for page in range(first, first + n):
        store64(base + page * PG + ((page & 511) << 3), _stamp0(page))


def _remote_node(numa: Any, nid: int) -> int:
    mem = numa.policy.mem_mask
    for k in range(1, 65):
        n = (nid + k) % 64
        if mem >> n & 1 and n != nid:
            return n
    return nid


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    """Threads mode: the shared region is mapped (and given its VMA policies) here by a
    task of the shared mm on CPU 0; with init = "cpu0" that task also first-touches all
    of it, under CPU 0's [numa] policy."""
    setup_mm(arena)
    hdr = arena.off("numawork") >> 3
    if vm_mode(arena) != "threads":
        if params.init == "cpu0":
            raise UsageError('workload.init = "cpu0": allowed only with [vm] mm = "threads" (one shared region); '
                             'in processes mode use "own" or "remote"')
        return
    mm = shared_mm(arena)
    vm = VM(arena, 0)
    try:
        tid = vm.task_create("numa_setup", mm=mm)
        vm.switch_to(tid)
        numa = attach(vm)
        numa.apply_config_policy()
        npages = params.size_mb << 8
        base = vm.mmap(0, npages * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        _place(vm, params, base, npages)
        if params.init == "cpu0":
            _touch(vm, base, 0, npages)
        arena.u64[hdr] = base
        arena.u64[hdr + 1] = npages
        vm.exit()
        vm.reap(tid)
    finally:
        vm.leave()


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, tid = cpu_vm(arena, cpu, "numa_access")
    numa = vm.numa
    q, u8 = arena.u64, arena.u8
    nr_cpus = int(arena.config["nr_cpus"])
    sim = arena.config["sim"]
    mynid = sim["cpu_to_node"][cpu]
    c0 = counter_index(arena, cpu, 0)
    (c_acc, c_local, c_corrupt, c_pages, c_plocal, c_hint, c_migr, c_migfail, c_pid) = range(c0, c0 + len(COUNTERS))
    to = T.task_off(arena, tid)
    q[c_pid] = q[(to + T.T_PID) >> 3]
    cb = _cpu_base(arena, cpu)
    cb8 = cb >> 3
    if vm_mode(arena) == "threads":
        hdr = arena.off("numawork") >> 3
        region, total = q[hdr], q[hdr + 1]
        per = total // nr_cpus
        first = cpu * per
        npages = per if cpu < nr_cpus - 1 else total - first
        own_region = False
    else:
        npages = params.size_mb << 8
        region = vm.mmap(0, npages * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        _place(vm, params, region, npages)
        first = 0
        own_region = True
    lo, hi = region + first * PG, region + (first + npages) * PG
    if params.init == "remote":
        numa.set_mempolicy(MP.MPOL_BIND, 1 << _remote_node(numa, mynid))
        _touch(vm, region, first, npages)
        numa.set_mempolicy(MP.MPOL_DEFAULT)
        numa.apply_config_policy()
    elif params.init == "own":
        _touch(vm, region, first, npages)
    expected = [_stamp0(p) for p in range(first, first + npages)]
    hot = max(1, npages * params.hot_pct // 100)
    hot_share = params.hot_access_pct / 100.0
    write_p = params.write_pct / 100.0
    sequential = params.pattern == "sequential"
    verify = params.verify
    load64, store64 = vm.load64, vm.store64
    entries = vm.tlb.entries
    tlb_get = entries.get
    node_b = arena.off("pagemeta") + 7
    rnd = rng.random
    sample_ns = params.sample_ms * 1_000_000
    migrate_ns = int(params.migrate_at_s * 1e9)
    st = {"seq": 0, "pos": 0, "next_sample": 0, "migrated": migrate_ns == 0, "nsamples": 0}

    def sample(now: int, t0: int) -> None:
        local, total = task_locality(arena, tid, mynid, lo, hi)
        q[c_pages], q[c_plocal] = total, local
        n = st["nsamples"]
        if n < MAX_SAMPLES:
            o = cb8 + 8 + n * SAMPLE_WORDS
            q[o], q[o + 1], q[o + 2], q[o + 3], q[o + 4] = ((now - t0) // 1_000_000, q[c_acc], q[c_local], local,
                                                            total)
            st["nsamples"] = n + 1
            q[cb8] = n + 1

    def housekeeping() -> None:
        vm.task_work()                          # NUMA balancing's scan, as task_work at return to user
        now = time.monotonic_ns()
        t0 = q[L.H_START_NS >> 3]
        if not t0:
            return
        if now >= t0 + st["next_sample"]:
            sample(now, t0)
            st["next_sample"] = now - t0 + sample_ns
        if not st["migrated"] and now - t0 >= migrate_ns:
            st["migrated"] = True
            others = numa.policy.mem_mask & ~(1 << mynid)
            if others:
                q[c_migfail] += numa.migrate_pages(0, others, 1 << mynid)

    def batch(n: int) -> None:
        kb = vm.tlb.key_base
        acc = local = bad = 0
        seq = st["seq"]
        pos = st["pos"]
        for _ in range(n):
            if sequential:
                page = pos
                pos = pos + 1 if pos + 1 < npages else 0
            elif hot < npages and rnd() >= hot_share:
                page = hot + int(rnd() * (npages - hot))
            else:
                page = int(rnd() * hot)
            va = lo + page * PG + (((first + page) & 511) << 3)
            if rnd() < write_p:
                seq += 1
                v = cpu << 48 | seq
                store64(va, v)
                expected[page] = v
            else:
                got = load64(va)
                if verify and got != expected[page]:
                    bad += 1
            e = tlb_get(kb | (va >> 12))
            if e is not None and u8[node_b + ((e & PTE_PFN_MASK) >> 6)] == mynid:
                local += 1
            acc += 1
        st["seq"], st["pos"] = seq, pos
        q[c_acc] += acc
        q[c_local] += local
        if bad:
            q[c_corrupt] += bad
        if n > 1:
            housekeeping()

    def teardown() -> None:
        t0 = q[L.H_START_NS >> 3]
        if t0:
            sample(time.monotonic_ns(), t0)
        if verify:
            bad = 0
            for page in range(npages):
                if load64(lo + page * PG + (((first + page) & 511) << 3)) != expected[page]:
                    bad += 1
            q[c_corrupt] += bad
        pid = q[(to + T.T_PID) >> 3]
        text = numa_maps_text(arena, pid).encode()[: MAPS_BYTES - 1]
        mo = cb + 64 + MAX_SAMPLES * SAMPLE_WORDS * 8
        u8[mo : mo + len(text)] = text
        u8[mo + len(text)] = 0
        from aerosync.mm.numa import numa_types as N

        ro = numa.policy.task_rec(tid)
        q[c_hint] = q[(ro + N.TN_HINT_FAULTS) >> 3]
        q[c_migr] = q[(ro + N.TN_PAGES_MIGRATED) >> 3]
        if own_region:
            vm.munmap(region, npages * PG)
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.poll  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    from aerosync.mm.pmm.vm_event import fold_vm_events

    release_mm(arena)
    cpus = result["cpus"]
    tot = {k: sum(c["counters"][k] for c in cpus) for k in ("accesses", "local_accesses", "corrupt")}
    per_task: dict[str, Any] = {}
    series: list[dict[str, Any]] = []
    maps: dict[str, str] = {}
    nr_cpus = len(cpus)
    for c in cpus:
        k = c["counters"]
        cb = _cpu_base(arena, c["cpu"])
        n = min(arena.u64[cb >> 3], MAX_SAMPLES)
        for i in range(n):
            o = (cb >> 3) + 8 + i * SAMPLE_WORDS
            t_ms, acc, lacc, pl, pt = (arena.u64[o + j] for j in range(SAMPLE_WORDS))
            series.append({"t": t_ms / 1000.0, "cpu": c["cpu"], "accesses": acc, "local_accesses": lacc,
                           "pages_local": pl, "pages": pt})
        mo = cb + 64 + MAX_SAMPLES * SAMPLE_WORDS * 8
        raw = bytes(arena.u8[mo : mo + MAPS_BYTES]).split(b"\0", 1)[0].decode(errors="replace")
        maps[str(k["pid"])] = raw
        per_task[f"cpu{c['cpu']}"] = {
            "pid": k["pid"], "node": c["node"],
            "access_local_pct": round(100.0 * k["local_accesses"] / k["accesses"], 2) if k["accesses"] else None,
            "pages_local_pct": round(100.0 * k["pages_local"] / k["pages"], 2) if k["pages"] else None,
            "hint_faults": k["hint_faults"], "pages_migrated": k["pages_migrated"],
        }
    series.sort(key=lambda s: (s["t"], s["cpu"]))
    ev = fold_vm_events(arena)
    out: dict[str, Any] = {
        **tot,
        "access_local_pct": round(100.0 * tot["local_accesses"] / tot["accesses"], 2) if tot["accesses"] else None,
        "locality": per_task,
        "converge_90_s": _converge(series, nr_cpus, 90.0),
        "vmstat": {k: ev[k] for k in ("numa_pte_updates", "numa_hint_faults", "numa_hint_faults_local",
                                      "numa_pages_migrated", "pgmigrate_success", "pgmigrate_fail")},
        "locality_samples": series,
        "numa_maps": maps,
        "mode": vm_mode(arena),
    }
    return out


def _converge(series: list[dict[str, Any]], nr_cpus: int, pct: float) -> float | None:
    """The first sample time at which every task's pages are pct % local (None: never)."""
    last: dict[int, float] = {}
    for s in series:
        last[s["cpu"]] = 100.0 * s["pages_local"] / s["pages"] if s["pages"] else 0.0
        if len(last) == nr_cpus and all(v >= pct for v in last.values()):
            return s["t"]
    return None

