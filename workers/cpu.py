"""The simulated CPU: one pinned process that attaches the arena and runs a workload.

Life of a worker (coordinator.py drives the other side)::

    start ─ die_with_parent ─ pin + verify ─ attach ─ READY, nr_ready++ ─ wait GO
          ─ loop { batch of ops ; publish ops + heartbeat ; check run_state
                   (PAUSE: ack, park until GO — the live invariant check) ;
                   check hp_state (GOING_DOWN: leave, see CPU hotplug) }
          ─ teardown (the workload gives back what it holds) ─ DONE | OFFLINE ─ close

CPU hotplug (mm/cpuhp.py, coordinator.py): a worker whose hp_state the coordinator set
to GOING_DOWN leaves at its next batch boundary as a task migrating away would: its
workload's teardown gives back everything it holds (blocks, objects, its task and
address space; VM.leave answers pending IPIs and runs its RCU callbacks), then it
stores OFFLINE and exits 0; the coordinator runs the mm teardown (cpuhp_offline_mm).
Objects other CPUs hand it through a ring meanwhile wait there for its next worker (or
the run's end, when the report frees ring leftovers).  A worker started to bring a CPU
back (`WorkerSpec.hotplug`) runs cpuhp_online_mm as that CPU before its workload's
make_batch, skips the start barrier (the run is going), and continues the CPU's
published ops count, so per-CPU ops and an ops budget span every worker of the CPU.
Hotplug starts it as a standby (`WorkerSpec.standby`) as soon as the CPU is offline: it
imports, attaches and pins itself, then waits (touching nothing of the CPU's) until the
coordinator brings the CPU up (hp_state COMING_UP) or the run ends -- what takes a new
process a second or more is done before it is needed, as Linux keeps a CPU's per-CPU
threads parked across hotplug.

The next worker of a CPU killed during the run ([run] on_cpu_death, coordinator.py
_Deaths) is started the same way, forked from the coordinator once the recovery took the
CPU offline, with hp_state already COMING_UP: it goes through the standby wait at once.

Order matters (python-shm-pitfalls.md 4.3, 6.5): PDEATHSIG first so an orphan cannot
keep spinning, pinning before any thread exists, attach untracked.  SIGINT is ignored:
Ctrl-C reaches the whole process group, and the coordinator, not each worker, decides
how a run stops.  A worker that raises writes its traceback to its `errtext` slot and
marks itself FAILED before exiting 1, so the coordinator can name the cause.

Owner-only data: this CPU's per-CPU area (state, pid, ops, heartbeat, counters) is
written only here, with plain stores of aligned u64s (one writer, never torn); the
coordinator reads it.  nr_ready is a fetch_add because every worker bumps it.
"""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aerosync.arch import cpu as arch_cpu
from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.params import CPU_AREA_SIZE, ERRTEXT_SIZE
from aerosync.sync.objlock import RW_KEPT

__all__ = ["WorkerSpec", "main", "cpu_rng"]

BATCH_TARGET_NS = 2_000_000      # aim for ~2 ms of work between publishes/stop checks
BATCH_MAX = 1 << 16
GO_POLL_S = 200e-6
STANDBY_POLL_S = 1e-3        # a hotplug standby's look at its CPU's hp_state
# Imported by a hotplug standby before it parks (measured: ~0.2 s of a loaded box's bring-up)
_BRINGUP_IMPORTS = ("workers.workloads", "aerosync.mm.cpuhp", "aerosync.mm.pmm.init", "aerosync.mm.pmm.page_alloc",
                    "aerosync.mm.numa.mempolicy", "aerosync.mm.slab.slub", "aerosync.mm.slab.kmalloc")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs, small and picklable: names and numbers, no state."""

    arena_name: str
    config_hash: int
    cpu: int
    host_cpu: int
    ppid: int
    workload: str
    params: dict
    seed: int
    ops: int | None            # operation budget, or None: run until told to stop
    hotplug: bool = False      # started to bring the CPU back online during the run
    standby: bool = False      # (with hotplug) park until the coordinator brings the CPU up


def cpu_rng(seed: int, cpu: int) -> random.Random:
    """Each CPU's deterministic operation stream, given the scenario seed."""
    return random.Random(seed * 1_000_003 + cpu)


def _write_errtext(arena: Arena, cpu: int, text: str) -> None:
    data = text.encode(errors="replace")[-(ERRTEXT_SIZE - 1):]
    off = arena.off("errtext") + cpu * ERRTEXT_SIZE
    arena.u8[off : off + len(data)] = data
    arena.u8[off + len(data)] = 0


def main(spec: WorkerSpec) -> None:
    """Process entry point (multiprocessing target)."""
    arch_cpu.die_with_parent(spec.ppid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)      # (a forked restart inherits the coordinator's)
    faulthandler.enable()
    arch_cpu.set_proc_title(f"aerosync cpu{spec.cpu}")
    arch_cpu.pin_to(spec.host_cpu)
    arena = Arena.attach(spec.arena_name, expect_hash=spec.config_hash)
    area = (arena.off("cpu") + spec.cpu * CPU_AREA_SIZE) >> 3
    q = arena.u64
    if spec.standby:
        try:
            needed, code = _wait_bringup(arena, area), 0
        except BaseException:                        # the CPU is not its own yet: stderr, not errtext
            traceback.print_exc()
            needed, code = False, 1
        if not needed:                               # the run ended first, or it failed parked
            del q
            arena.close()
            sys.exit(code)
    try:
        q[area + (L.CPU_PID >> 3)] = os.getpid()
        q[area + (L.CPU_STARTTIME >> 3)] = arch_cpu.proc_starttime(os.getpid()) or 0
        q[area + (L.CPU_HOST_CPU >> 3)] = spec.host_cpu
        code = _run(arena, spec, area)
    except BaseException:
        _write_errtext(arena, spec.cpu, traceback.format_exc())
        q[area + (L.CPU_STATE >> 3)] = L.CPUST_FAILED
        code = 1
    going_down = code == 0 and q[area + (L.CPU_STATE >> 3)] == L.CPUST_OFFLINE
    del q
    arena.close()
    if going_down:          # hotplug waits for this exit: skip the interpreter's teardown (~0.3 s loaded)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    sys.exit(code)


def _wait_bringup(arena: Arena, area: int) -> bool:
    """A worker started for CPU hotplug is a standby until the coordinator brings its CPU
    up (hp_state COMING_UP): it has imported, attached and pinned itself, and touches
    nothing of the CPU's yet (the CPU is offline, or its last worker still leaving).
    False when the run ends first."""
    import importlib

    for mod in _BRINGUP_IMPORTS:        # what the bring-up and make_batch import, while parked
        importlib.import_module(mod)

    load = arena.atomic.load64
    hp_off = (area << 3) + L.CPU_HP_STATE
    while load(hp_off) != L.HP_COMING_UP:
        if load(L.H_RUN_STATE) in (L.RUN_STOP, L.RUN_ABORT):
            return False
        time.sleep(STANDBY_POLL_S)
    return True


def _harness_ps(n: int = 200_000) -> int:
    """Picoseconds per operation of the harness loop itself (the null workload's batch),
    measured on this pinned CPU before the barrier so every run reports it."""
    from workers.workloads import null

    batch = null.make_batch(None, 0, null.Params(), random.Random(0))  # type: ignore[arg-type]
    t0 = time.perf_counter_ns()
    batch(n)
    return (time.perf_counter_ns() - t0) * 1000 // n


def _run(arena: Arena, spec: WorkerSpec, area: int) -> int:
    from workers.workloads import WORKLOADS

    mod = WORKLOADS[spec.workload]
    params = mod.Params(**spec.params)
    at, q = arena.atomic, arena.u64
    if spec.hotplug:
        from aerosync.mm.cpuhp import cpuhp_online_mm

        cpuhp_online_mm(arena, spec.cpu)
    rng = cpu_rng(spec.seed, spec.cpu)
    if spec.hotplug:                                 # a new stream per incarnation, still seeded
        rng = cpu_rng(spec.seed * 1_000_003 + q[area + (L.CPU_OPS >> 3)], spec.cpu)
    batch = mod.make_batch(arena, spec.cpu, params, rng)
    state_i, ops_i, hb_i = area + (L.CPU_STATE >> 3), area + (L.CPU_OPS >> 3), area + (L.CPU_HEARTBEAT >> 3)
    hp_off = (area << 3) + L.CPU_HP_STATE
    load, run_state = at.load64, L.H_RUN_STATE
    clock = time.monotonic_ns

    if not spec.hotplug:                             # (a CPU brought back keeps its first figure)
        q[area + (L.CPU_HARNESS_PS >> 3)] = _harness_ps()
    q[state_i] = L.CPUST_READY
    if not spec.hotplug:
        at.fetch_add64(L.H_NR_READY, 1)
    start_poll = getattr(batch, "poll", None)       # set up, this CPU may be in an mm's TLB mask:
    while (rs := load(run_state)) == L.RUN_INIT:     # the start barrier answers IPIs (a CPU still
        if start_poll is not None:                   # setting up, or kswapd, may be shooting down)
            start_poll()
        time.sleep(GO_POLL_S)
    if rs not in (L.RUN_GO, L.RUN_PAUSE):           # STOP/ABORT before GO (ready_only, errors)
        teardown = getattr(batch, "teardown", None)
        if teardown is not None and rs == L.RUN_STOP:
            teardown()                               # make_batch may have taken something (a task, pins)
        q[state_i] = L.CPUST_DONE
        return 0
    q[hb_i] = clock()
    # RUNNING (SEQ_CST store), then run_state again: the coordinator stores PAUSE, then
    # reads our state.  Either it sees RUNNING and waits for our ack, or our load below
    # sees its PAUSE and we park before the first operation -- never an operation while
    # it checks a machine it believes quiescent.  (A PAUSE here also means we slept
    # through GO: park and run after it, don't quit.)
    at.store64(state_i << 3, L.CPUST_RUNNING)
    rs = load(run_state)
    poll = getattr(batch, "poll", None)        # answers this CPU's IPIs while it is parked
    drain = _park_drain(batch, poll)           # empties this CPU's LRU folio batch before the ack
    if L.robust_mode(arena.config):           # a lock kept for a dead CPU's recovery: park in its wait
        from aerosync.sync.waithook import set_park_hook

        set_park_hook(_lock_park(arena, spec.cpu, area, poll, drain))
    if rs == L.RUN_PAUSE:
        rs = _pause(arena, area, poll, drain)
    # Latency: after each batch, one more operation is timed alone and counted in the
    # per-CPU log histogram (~1 op per 2 ms: cheap enough to leave on).
    hist, lat_n_i, bucket = area + (L.CPU_LAT_HIST >> 3), area + (L.CPU_LAT_SAMPLES >> 3), L.lat_bucket

    budget = spec.ops if spec.ops is not None else -1
    if rs != L.RUN_GO:
        budget = 0                                   # stopped before the first batch
    done, n = q[ops_i], 16                           # 0, or what the CPU's earlier workers did
    offline = False
    while budget < 0 or done < budget:
        if budget >= 0:
            n = min(n, budget - done)
        t0 = clock()
        batch(n)
        t1 = clock()
        done += n
        if budget < 0 or done < budget:
            batch(1)
            t2 = clock()
            q[hist + bucket(t2 - t1)] += 1
            q[lat_n_i] += 1
            done += 1
        q[ops_i] = done
        q[hb_i] = t1
        rs = load(run_state)
        if rs == L.RUN_PAUSE:
            rs = _pause(arena, area, poll, drain)
        if rs != L.RUN_GO:
            break
        if load(hp_off) == L.HP_GOING_DOWN:
            offline = True
            break
        # Adapt the batch so publishing and stop checks stay ~2 ms apart.
        dt = t1 - t0
        if dt < BATCH_TARGET_NS // 2 and n < BATCH_MAX:
            n *= 2
        elif dt > BATCH_TARGET_NS * 2 and n > 2:    # >= 2: batch(1) is the timed single op
            n //= 2
    teardown = getattr(batch, "teardown", None)
    if teardown is not None:
        teardown()          # e.g. give back what this CPU still holds
    at.store64(state_i << 3, L.CPUST_OFFLINE if offline else L.CPUST_DONE)
    return 0


def _park_drain(batch: Any, poll: Callable[[], None] | None) -> Callable[[], None] | None:
    """What empties this CPU's per-CPU LRU folio batch (mm/reclaim/swap.py lru_add_drain)
    when it parks: `batch.drain` if the workload gives one, else that of the VM handle
    whose park_poll it passed (mm/vm workloads), else nothing (no reclaim here)."""
    d = getattr(batch, "drain", None)
    if d is not None:
        return d
    rec = getattr(getattr(poll, "__self__", None), "reclaim", None)
    return rec.lru.lru_add_drain if rec is not None else None


def _lock_park(arena: Arena, cpu: int, area: int, poll: Callable[[], None] | None,
               drain: Callable[[], None] | None) -> Callable[[int], None]:
    """The park hook (sync/waithook.py) of a robust-mode CPU: queued on an rwsem that
    the coordinator keeps for a dead CPU's recovery (RW_KEPT: its mmap_lock), this CPU
    parks for the pause inside the wait, as at a batch boundary -- when it has nothing
    in flight (no lock held, no open intent record but a park-safe one such as a
    system call's mm reference: mm/intent.py idle_fn); else it
    returns and the coordinator, not seeing it park, releases the kept lock early.

    Parked, it is _pause with the lock's offset (its rules for that case there)."""
    from aerosync.mm.intent import idle_fn

    load = arena.atomic.load64
    idle = idle_fn(arena, cpu)

    def park(off: int) -> None:
        if load(L.H_RUN_STATE) == L.RUN_PAUSE and idle():
            _pause(arena, area, poll, drain, off)

    return park


def _pause(arena: Arena, area: int, poll: Callable[[], None] | None = None,
           drain: Callable[[], None] | None = None, kept: int = -1) -> int:
    """Park at a batch boundary (no operation in flight) while the coordinator checks
    invariants on a live run; acknowledge with the pause generation, resume on GO.

    pause_seq is loaded before run_state, and a generation is acked only when PAUSE is
    seen after it: the coordinator bumps pause_seq before storing PAUSE, so that PAUSE
    belongs to this generation (or a later one), and the ack promises "parked through
    it".  A new pause that begins while we are still parked (the GO between two checks
    came and went between two of our polls: check_interval short, or this CPU not
    scheduled) is acked again -- with a single ack on entry the coordinator would wait
    30 s for an ack of the new generation and fail the run.

    `poll` (the workload's batch.poll, e.g. mm/vm's VM.park_poll) runs while parked:
    another CPU finishing its batch may send this one a TLB-shootdown IPI and wait for
    the answer before it can reach the barrier itself.  It answers IPIs and does nothing
    else: deferred work (RCU callbacks) would change memory under the checker.

    `drain` (this CPU's lru_add_drain) runs first, before the ack: the checker then sees
    every folio this CPU added on its LRU list (mm/reclaim/check.py), none in a batch.

    `kept` (_lock_park): the offset of the rwsem this CPU is queued on, kept for a dead
    CPU's recovery (RW_KEPT).  The CPU stays parked while the pause lasts -- the
    recovery releases the lock before its checkers run, and this CPU must not take it
    and run meanwhile.  The one way out before GO is the coordinator's fallback: it
    releases a kept lock early and starts a new pause generation; then this CPU runs
    on (a parked reader granted the lock would block the waiter that could not park)
    and parks at its next batch boundary.  So a generation is acked only while the
    lock is still kept after the generation was read (the release comes before the new
    generation), and a new generation seen with the lock released means "run on"."""
    at = arena.atomic
    if drain is not None:
        drain()
    ack_off = (area << 3) + L.CPU_PAUSE_ACK
    acked = -1
    while True:
        seq = at.load64(L.H_PAUSE_SEQ)
        rs = at.load64(L.H_RUN_STATE)
        if rs != L.RUN_PAUSE:
            break
        if kept >= 0 and not at.load64(kept) & RW_KEPT:
            if seq != acked:                   # released early, a new pause: park at the boundary
                break
        elif seq != acked:
            at.store64(ack_off, seq)
            acked = seq
        if poll is not None:
            poll()
        time.sleep(GO_POLL_S)
    arena.u64[area + (L.CPU_HEARTBEAT >> 3)] = time.monotonic_ns()
    return rs
