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
node) at that time into the run.  With [numa] balancing_placement a task that NUMA
balancing wants on another node swaps CPUs with a task there (task_numa_migrate's
choice; the two CPUs hand the tasks over through words in "numawork", see make_batch):
each task's memory and expected stamps live in its slot record, so whichever CPU runs
it carries on; `task_swaps` counts the swaps a CPU asked for.

Verification: every page of a task's memory holds a stamp word (at a per-page offset);
stores update it and the task remembers the value (in its slot record); every load and a final sweep check
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
from aerosync.mm.numa import numa_types as N
from aerosync.mm.numa.numa_maps import numa_maps_text, task_locality
from aerosync.mm.numa.numa_vm import attach
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.vm import VM
from workers.workloads._common import counter_index
from workers.workloads._vm import (
    cpu_vm,
    recover,
    release_mm,
    setup_mm,
    shared_mm,
    vm_leftovers,
    vm_mode,
    vmwork_section,
)

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover", "MAX_SAMPLES"]

COUNTERS: tuple[str, ...] = ("accesses", "local_accesses", "corrupt", "pages", "pages_local", "hint_faults",
                             "pages_migrated", "migrate_failed", "pid", "task_swaps")
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


def _slot_rec(params: Params) -> int:
    return 64 + (params.size_mb << 8) * 8


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [vmwork_section(nr_cpus), SectionSpec("numawork", 64 + nr_cpus * (_cpu_rec(nr_cpus) + _slot_rec(params)))]


def _nr_workers(arena: Arena) -> int:
    """The workload's CPUs: reclaim's kthread CPUs (kswapd, the flusher) come after them."""
    first_kthread = (arena.config.get("reclaim") or {}).get("kthread_cpu")
    return int(first_kthread) if first_kthread is not None else int(arena.config["nr_cpus"])


def _cpu_base(arena: Arena, cpu: int) -> int:
    return arena.off("numawork") + 64 + cpu * _cpu_rec(_nr_workers(arena))


def _slot_base(arena: Arena, params: Params, slot: int) -> int:
    nr_cpus = _nr_workers(arena)
    return arena.off("numawork") + 64 + nr_cpus * _cpu_rec(nr_cpus) + slot * _slot_rec(params)


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


# CPU record words (after the sample count): the task-swap handshake (task placement)
C_REQ, C_MIG_ON, C_SLOT = 1, 2, 3          # swap request to this CPU, claimed by, slot running here + 1
REQ_ACK = 1 << 48
# slot record words: one per task (its memory and what it expects there), wherever it runs
S_OWNER, S_TID, S_LO, S_NPAGES, S_FIRST, S_REGION, S_PID, S_EXP = 0, 1, 2, 3, 4, 5, 6, 8


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, tid = cpu_vm(arena, cpu, "numa_access")
    numa = vm.numa
    bal = numa.balancing
    q, u8 = arena.u64, arena.u8
    cas = arena.atomic.cas64
    nr_cpus = _nr_workers(arena)
    sim = arena.config["sim"]
    mynid = sim["cpu_to_node"][cpu]
    c0 = counter_index(arena, cpu, 0)
    (c_acc, c_local, c_corrupt, c_pages, c_plocal, c_hint, c_migr, c_migfail, c_pid,
     c_swaps) = range(c0, c0 + len(COUNTERS))
    cb = _cpu_base(arena, cpu)
    cb8 = cb >> 3

    def cpu_word(c: int, w: int) -> int:                 # byte offset of CPU c's word w
        return _cpu_base(arena, c) + 8 * w

    def slot8(slot: int) -> int:
        return _slot_base(arena, params, slot) >> 3

    # this task's slot (slot = the CPU it started on)
    if vm_mode(arena) == "threads":
        hdr = arena.off("numawork") >> 3
        region, total = q[hdr], q[hdr + 1]
        per = total // nr_cpus
        first = cpu * per
        npages = per if cpu < nr_cpus - 1 else total - first
        own = 0
    else:
        npages = params.size_mb << 8
        region = vm.mmap(0, npages * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        _place(vm, params, region, npages)
        first = 0
        own = region
    lo = region + first * PG
    if params.init == "remote":
        numa.set_mempolicy(MP.MPOL_BIND, 1 << _remote_node(numa, mynid))
        _touch(vm, region, first, npages)
        numa.set_mempolicy(MP.MPOL_DEFAULT)
        numa.apply_config_policy()
    elif params.init == "own":
        _touch(vm, region, first, npages)
    s8 = slot8(cpu)
    q[s8 + S_TID], q[s8 + S_LO], q[s8 + S_NPAGES], q[s8 + S_FIRST], q[s8 + S_REGION] = tid, lo, npages, first, own
    q[s8 + S_PID] = q[(T.task_off(arena, tid) + T.T_PID) >> 3]
    for p in range(npages):
        q[s8 + S_EXP + p] = _stamp0(first + p)
    q[s8 + S_OWNER] = cpu + 1
    q[cb8 + C_SLOT] = cpu + 1
    q[c_pid] = q[s8 + S_PID]
    placement = bal.placement and nr_cpus > 1
    idle = vm.task_create("numa_idle", mm=-1, new_mm=False) if placement else -1

    hot_pct, hot_share = params.hot_pct, params.hot_access_pct / 100.0
    write_p = params.write_pct / 100.0
    sequential = params.pattern == "sequential"
    verify = params.verify
    load64, store64 = vm.load64, vm.store64
    entries = vm.tlb.entries
    tlb_get = entries.get
    node_b = arena.off("pagemeta") + 7
    P8 = arena.off("physmem") >> 3                  # TLB entries: the page's u64 index << 12 (tlb.py)
    rnd = rng.random
    sample_ns = params.sample_ms * 1_000_000
    migrate_ns = int(params.migrate_at_s * 1e9)
    # the running slot: S = [slot, tid, lo, npages, first, expected base, hot pages]; slot -1: parked
    S: list[int] = []
    st: dict[str, Any] = {"seq": 0, "pos": 0, "next_sample": 0, "migrated": migrate_ns == 0, "nsamples": 0,
                          "swap": None}

    def run_slot(slot: int) -> None:
        """This CPU runs the task of `slot` now (context switch to it)."""
        b8 = slot8(slot)
        t, n = q[b8 + S_TID], q[b8 + S_NPAGES]
        if vm.task != t:
            vm.switch_to(t)
        S[:] = [slot, t, q[b8 + S_LO], n, q[b8 + S_FIRST], b8 + S_EXP, max(1, n * hot_pct // 100)]
        q[cb8 + C_SLOT] = slot + 1
        q[c_pid] = q[b8 + S_PID]
        st["pos"] = 0

    run_slot(cpu)

    def sample(now: int, t0: int) -> None:
        if S[0] < 0:
            return
        local, total = task_locality(arena, S[1], mynid, S[2], S[2] + S[3] * PG)
        q[c_pages], q[c_plocal] = total, local
        n = st["nsamples"]
        if n < MAX_SAMPLES:
            o = cb8 + 8 + n * SAMPLE_WORDS
            q[o], q[o + 1], q[o + 2], q[o + 3], q[o + 4] = ((now - t0) // 1_000_000, q[c_acc], q[c_local], local,
                                                            total)
            st["nsamples"] = n + 1
            q[cb8] = n + 1

    # ---------------------------------------------------------------- task placement
    # Linux moves a task to its preferred node with migrate_swap(): a stopper on each of
    # the two CPUs swaps their tasks.  Here the requesting CPU A claims the partner B
    # (numa_migrate_on: C_MIG_ON of both) and posts its request in B's C_REQ; B, at its
    # next batch boundary, acknowledges and parks (its task switched out, the slot free);
    # A switches to B's task and frees its own slot; B takes A's.  Each step is one
    # atomic word change, so a side that stops (the end of the run) either cancels an
    # unacknowledged request or completes an acknowledged one (both bounded waits).
    def place_request() -> None:
        tid_ = bal.placement_pending
        bal.placement_pending = -1
        if tid_ != S[1] or st["swap"] is not None:
            return
        rq_curr = []
        for c in range(nr_cpus):
            if c != cpu:
                sl = q[cpu_word(c, C_SLOT) >> 3] - 1
                rq_curr.append((c, q[slot8(sl) + S_TID] if sl >= 0 else -1))
        best_cpu, cur, _imp = bal.task_numa_migrate(tid_, rq_curr)
        if best_cpu < 0:
            return
        sb = q[cpu_word(best_cpu, C_SLOT) >> 3] - 1
        if sb < 0 or q[slot8(sb) + S_TID] != cur:
            return
        if cas(cpu_word(best_cpu, C_MIG_ON), 0, cpu + 1) != 0:
            return
        if cas(cb + 8 * C_MIG_ON, 0, cpu + 1) != 0:
            q[cpu_word(best_cpu, C_MIG_ON) >> 3] = 0
            return
        q[cpu_word(best_cpu, C_REQ) >> 3] = (cpu + 1) | (sb + 1) << 16 | (S[0] + 1) << 32
        st["swap"] = ("req", best_cpu, sb)

    def park() -> None:
        vm.switch_to(idle)
        mine = S[0]
        S[0] = -1
        q[cb8 + C_SLOT] = 0
        q[slot8(mine) + S_OWNER] = 0

    def take(slot: int) -> bool:
        if cas(_slot_base(arena, params, slot) + 8 * S_OWNER, 0, cpu + 1) != 0:
            return False
        old = S[0]
        run_slot(slot)
        if old >= 0:                            # the requester: its own slot goes to the partner
            q[slot8(old) + S_OWNER] = 0
            q[c_swaps] += 1
        return True

    def place_step(final: bool = False) -> bool:
        """One step of the handshake; True when this CPU is in none (final: cancel or
        complete what it is in, waiting for the partner's one step if it must)."""
        sw = st["swap"]
        r = q[cb8 + C_REQ]
        if r and not r & REQ_ACK and (sw is None or final):      # a request to me (none while I request)
            want, mine = (r >> 16 & 0xFFFF) - 1, S[0]
            if final or want != mine or cas(cb + 8 * C_REQ, r, r | REQ_ACK) != r:
                cas(cb + 8 * C_REQ, r, 0)                          # refused
            else:
                park()
                st["swap"] = sw = ("parked", (r >> 32 & 0xFFFF) - 1)
        if sw is None:
            return True
        if sw[0] == "parked":                                     # B: take A's slot once A freed it
            if take(sw[1]):
                q[cb8 + C_REQ] = 0
                q[cb8 + C_MIG_ON] = 0
                st["swap"] = None
                return True
            return False
        _, b, sb = sw                                             # A: requested B's slot sb
        rb = cpu_word(b, C_REQ)
        v = q[rb >> 3]
        if v and not v & REQ_ACK and final and cas(rb, v, 0) == v:
            v = 0                                                 # cancelled before B saw it
        if not v:
            if q[cpu_word(b, C_MIG_ON) >> 3] == cpu + 1:
                q[cpu_word(b, C_MIG_ON) >> 3] = 0
            q[cb8 + C_MIG_ON] = 0
            st["swap"] = None
            return True
        if v & REQ_ACK and take(sb):
            q[cb8 + C_MIG_ON] = 0
            st["swap"] = None
            return True
        return False

    def housekeeping() -> None:
        vm.task_work()                          # NUMA balancing's scan, as task_work at return to user
        if placement:
            if bal.placement_pending >= 0:
                place_request()
            if st["swap"] is not None or q[cb8 + C_REQ]:
                place_step()
        now = time.monotonic_ns()
        t0 = q[L.H_START_NS >> 3]
        if not t0:
            return
        if now >= t0 + st["next_sample"]:
            sample(now, t0)
            st["next_sample"] = now - t0 + sample_ns
        if not st["migrated"] and now - t0 >= migrate_ns and S[0] >= 0:
            st["migrated"] = True
            others = numa.policy.mem_mask & ~(1 << mynid)
            if others:
                q[c_migfail] += numa.migrate_pages(0, others, 1 << mynid)

    def batch(n: int) -> None:
        slot, _t, lo, npages, first, eb, hot = S
        if slot < 0:                            # parked in a task swap
            housekeeping()
            return
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
                q[eb + page] = v
            else:
                got = load64(va)
                if verify and got != q[eb + page]:
                    bad += 1
            e = tlb_get(kb | (va >> 12))
            if e is not None and u8[node_b + (((e >> 12) - P8) >> 3)] == mynid:     # tlb_entry_pfn << 6
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
        if placement:
            deadline = time.monotonic() + 30.0
            while not place_step(final=True):         # the partner's one step is pending
                if time.monotonic() > deadline:
                    raise RuntimeError(f"numa_access cpu {cpu}: task swap handshake stuck: {st['swap']}")
                vm.poll()
                time.sleep(0.0005)
        t0 = q[L.H_START_NS >> 3]
        if t0:
            sample(time.monotonic_ns(), t0)
        slot, t, lo, npages, first, eb, _hot = S
        if verify:
            bad = 0
            for page in range(npages):
                if load64(lo + page * PG + (((first + page) & 511) << 3)) != q[eb + page]:
                    bad += 1
            q[c_corrupt] += bad
        pid = q[(T.task_off(arena, t) + T.T_PID) >> 3]
        text = numa_maps_text(arena, pid).encode()[: MAPS_BYTES - 1]
        mo = cb + 64 + MAX_SAMPLES * SAMPLE_WORDS * 8
        u8[mo : mo + len(text)] = text
        u8[mo + len(text)] = 0
        ro = numa.policy.task_rec(t)
        q[c_hint] = q[(ro + N.TN_HINT_FAULTS) >> 3]
        q[c_migr] = q[(ro + N.TN_PAGES_MIGRATED) >> 3]
        own_region = q[slot8(slot) + S_REGION]
        if own_region:
            vm.munmap(own_region, npages * PG)
        vm.exit()
        if idle >= 0:
            vm.exit(idle)
            vm.reap(idle)
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.park_poll  # type: ignore[attr-defined]
    batch.vm = vm  # type: ignore[attr-defined]
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
            "task_swaps": k["task_swaps"],
        }
    series.sort(key=lambda s: (s["t"], s["cpu"]))
    ev = fold_vm_events(arena)
    out: dict[str, Any] = {
        **tot,
        "access_local_pct": round(100.0 * tot["local_accesses"] / tot["accesses"], 2) if tot["accesses"] else None,
        "locality": per_task,
        "converge_90_s": _converge(series, nr_cpus, 90.0),
        "task_swaps": sum(c["counters"]["task_swaps"] for c in cpus),
        "vmstat": {k: ev[k] for k in ("numa_pte_updates", "numa_hint_faults", "numa_hint_faults_local",
                                      "numa_pages_migrated", "pgmigrate_success", "pgmigrate_fail")},
        "locality_samples": series,
        "numa_maps": maps,
        "mode": vm_mode(arena),
        **vm_leftovers(arena),                  # leaked_pages / leaked_mms: must be 0
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

