"""CPU hotplug of a live run: the coordinator's side of scenario [[events]] and of
`aerosync hotplug`, and that command's client side.  Unit: one simulated CPU going
offline or coming back online while the others keep running.

Models: /sys/devices/system/cpu/cpuN/online and kernel/cpu.c's cpu_down / cpu_up
driving the hotplug state machine; what mm does in it is mm/cpuhp.py.

  offline (cpu_down)  the coordinator stores hp_state GOING_DOWN; the CPU's worker sees
                      it at its next batch boundary, its workload gives back what it
                      holds (workers/cpu.py), it stores OFFLINE and exits; the
                      coordinator joins it and runs cpuhp_offline_mm as the dead CPU
                      (its PCP lists, CPU slab, partials, magazines and sheaves back;
                      counters stay in its records: every reader sums all CPUs), checks
                      H1 (it holds nothing) and records the event.
  online (cpu_up)     hp_state COMING_UP; the CPU's next worker process -- started as a
                      standby when the CPU went offline: imported, attached, pinned to the
                      same host CPU, parked -- runs cpuhp_online_mm as that CPU, builds
                      its workload and joins the running workload; the coordinator's loop
                      goes on meanwhile and completes the event once the worker runs.
Refused (as Linux refuses): cpu0 -- x86-64's boot CPU has no online file since v6.3
removed CPU0 hotplug, and the coordinator's reports act as CPU 0 after the run; the
last online CPU (-EBUSY); a CPU already in the asked state; a CPU that finished its
`run.ops` budget.  Scenario events are checked before anything is created
(`check_events`, a ScenarioError naming events[i]); `aerosync hotplug` checks first on
the client (a UsageError, exit 2) and the coordinator checks again when it acts.

Request protocol of `aerosync hotplug` (per-CPU area words, arena/layout.py): the client
CASes the CPU's hp_request from 0 to `seq << 8 | HPREQ_*` (seq: 48 random bits, not 0;
another pending request makes the CAS fail: "busy"), then polls hp_result; the
coordinator, once per loop tick, swaps each non-zero hp_request to 0, acts on it, and
stores hp_result = `seq << 8 | HPRES_*` (SEQ_CST atomics throughout).  A client whose
run ends first sees run_state STOP/ABORT or the owner gone, and says so.

Measured (2-core box shared with other jobs, `aerosync bench reliability`, two runs,
medians of 5 and 3): hotplug_cycle_ms 83 / 34 ms (offline 70 / 22, online 8 / 6 with the
CPU's standby parked), 1.5 / 1.1 s when the online follows the offline before its
standby process has started (a new Python process on the loaded box: 0.6-4 s).

The coordinator is single-threaded: a hotplug runs between its loop's ticks, never
during a live check or the stop; while it waits for a CPU to leave or start, the other
CPUs run on (their deaths are still reported).  Every event is recorded in the run
result (`hotplug`: time, CPU, action, source, what came back, how long it took) and the
summary lists them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

from aerosync.arena import layout as L
from aerosync.errors import AeroSyncError, ScenarioError, UsageError
from aerosync.mm.cpuhp import cpu_mm_held, cpuhp_offline_mm, hp_state, set_hp_state
from aerosync.params import CPU_AREA_SIZE
from aerosync.scenario import Scenario

__all__ = ["Hotplug", "check_events", "request", "LEAVE_TIMEOUT_S", "UP_TIMEOUT_S", "parse_cpu"]

LEAVE_TIMEOUT_S = 30.0        # a worker asked to go offline finishes its batch and teardown in this
UP_TIMEOUT_S = 60.0           # a new worker starts, attaches, pins and runs in this (READY_TIMEOUT_S)
CLIENT_TIMEOUT_S = 90.0


def _refusal(cpu: int, action: str, online: set[int], nr_cpus: int) -> str | None:
    """Why `action` on `cpu` is refused with `online` the online CPUs, or None."""
    if not 0 <= cpu < nr_cpus:
        return f"cpu{cpu} does not exist (simulated CPUs 0..{nr_cpus - 1})"
    if cpu == 0:
        return "cpu0 is the boot CPU: x86-64 Linux cannot offline it (no cpu0/online since v6.3)"
    if action == "offline" and cpu not in online:
        return f"cpu{cpu} is already offline"
    if action == "online" and cpu in online:
        return f"cpu{cpu} is already online"
    if action == "offline" and len(online) <= 1:
        return f"cpu{cpu} is the last online CPU (-EBUSY)"
    return None


def check_events(scn: Scenario, nr_cpus: int) -> None:
    """The [[events]] against the machine, in time order: each CPU exists and is not
    cpu0, goes offline only while online (and not as the last one), online only while
    offline.  A ScenarioError names events[i] (its index in time order) otherwise."""
    online = set(range(nr_cpus))
    for i, e in enumerate(scn.events):
        why = _refusal(e.cpu, e.action, online, nr_cpus)
        if why is not None:
            key = f"events[{i}].cpu" if "exist" in why or "cpu0" in why else f"events[{i}].action"
            raise ScenarioError(scn.blame(key, "machine.cpus"), key, e.cpu if key.endswith("cpu") else e.action,
                                f"a hotplug the machine allows at {e.at:g} s: {why}")
        (online.discard if e.action == "offline" else online.add)(e.cpu)


def _word(arena: Any, cpu: int, field: int) -> int:
    return arena.off("cpu") + cpu * CPU_AREA_SIZE + field


class Hotplug:
    """The coordinator's hotplug driver.  `procs[c]` is replaced when CPU c comes back;
    `start_worker(c)` starts its next worker as a standby (WorkerSpec.hotplug and
    standby: it parks until hp_state COMING_UP); `died(c, p)` is
    the coordinator's WorkerDied for a worker that ended otherwise than asked.

    An offline completes inside `poll` (tens of ms: the worker leaves at its next batch
    boundary).  An online only starts there: a new process takes a second or more to
    start, so the coordinator's loop goes on (samples, watchdog, deadline) while the CPU
    is `coming` up, and `poll` completes the event once its worker runs; events and
    requests for a CPU on its way up wait for it, in order."""

    def __init__(self, arena: Any, scn: Scenario, procs: list[mp.process.BaseProcess],
                 start_worker: Callable[[int], mp.process.BaseProcess],
                 died: Callable[[int, mp.process.BaseProcess], BaseException]) -> None:
        self.arena, self.procs, self.start_worker, self.died = arena, procs, start_worker, died
        self.pending = list(scn.events)
        self.nr_cpus = len(procs)
        self.log: list[dict[str, Any]] = []
        self.coming: dict[int, tuple[float, dict[str, Any], int]] = {}   # cpu -> (t0, its log record, request)
        self.standby: dict[int, mp.process.BaseProcess] = {}   # an offline CPU's next worker, parked

    def next_at(self, t: float) -> float | None:
        """Seconds after the start when `poll` has work next, `t` being now (None: nothing
        scheduled); while a CPU comes up, 5 ms from now, so its event's time is accurate."""
        nxt = self.pending[0].at if self.pending else None
        if self.coming:
            return t + 0.005 if nxt is None else min(nxt, t + 0.005)
        return nxt

    def comes_back(self, cpu: int) -> bool:
        """A scenario event still to come, or one under way, brings `cpu` online (an
        ops-mode run waits for it)."""
        return cpu in self.coming or any(e.cpu == cpu and e.action == "online" for e in self.pending)

    def online(self) -> set[int]:
        return {c for c in range(self.nr_cpus) if hp_state(self.arena, c) in (L.HP_ONLINE, L.HP_GOING_DOWN)}

    def poll(self, t: float) -> bool:
        """Complete the CPUs that came up, run the scenario events due at `t` (seconds
        after the start) and the requests of `aerosync hotplug`; True if a worker
        process left or started (the caller's sentinels are stale)."""
        acted = self._progress()
        while self.pending and self.pending[0].at <= t and self.pending[0].cpu not in self.coming:
            e = self.pending.pop(0)
            acted |= self.act(e.cpu, e.action, "scenario", t) is None
        at = self.arena.atomic
        for c in range(self.nr_cpus):
            off = _word(self.arena, c, L.CPU_HP_REQUEST)
            req = at.load64(off)
            if not req or c in self.coming or at.cas64(off, req, 0) != req:
                continue
            action = {L.HPREQ_OFFLINE: "offline", L.HPREQ_ONLINE: "online"}.get(req & 0xFF)
            why = self.act(c, action, "aerosync hotplug", t, req) if action else f"unknown request {req & 0xFF}"
            acted |= why is None
            if why is not None or action == "offline":       # an online answers when its worker runs
                self._answer(c, req, why is None)
        return acted

    def _answer(self, cpu: int, req: int, ok: bool) -> None:
        if req:
            self.arena.atomic.store64(_word(self.arena, cpu, L.CPU_HP_RESULT),
                                      (req >> 8) << 8 | (L.HPRES_OK if ok else L.HPRES_REFUSED))

    def act(self, cpu: int, action: str, source: str, t: float, req: int = 0) -> str | None:
        """Take `cpu` offline, or start bringing it online, now; returns None, or why it
        was refused (logged)."""
        why = _refusal(cpu, action, self.online(), self.nr_cpus)
        st = self.arena.u64[_word(self.arena, cpu, L.CPU_STATE) >> 3] if 0 <= cpu < self.nr_cpus else -1
        if why is None and action == "offline" and st == L.CPUST_DONE:
            why = f"cpu{cpu} has finished its run.ops operations"
        rec: dict[str, Any] = {"t": round(t, 3), "cpu": cpu, "action": action, "source": source}
        self.log.append(rec)
        if why is not None:
            rec["refused"] = why
            return why
        if action == "offline":
            rec.update(self.cpu_down(cpu))
        else:
            self.cpu_up(cpu, rec, req)
        return None

    def _others_alive(self, cpu: int) -> None:
        for c, p in enumerate(self.procs):
            if c != cpu and p.exitcode not in (None, 0):
                raise self.died(c, p)

    def cpu_down(self, cpu: int) -> dict[str, Any]:
        """cpu_down(): ask the worker to leave, wait for its exit, run the mm teardown."""
        from multiprocessing.connection import wait as mp_wait

        arena, p = self.arena, self.procs[cpu]
        state_off = _word(arena, cpu, L.CPU_STATE)
        t0 = time.perf_counter()
        set_hp_state(arena, cpu, L.HP_GOING_DOWN)
        deadline = t0 + LEAVE_TIMEOUT_S
        t_left = 0.0
        while p.exitcode is None:
            mp_wait([p.sentinel], timeout=0.002)
            if not t_left and arena.atomic.load64(state_off) in (L.CPUST_OFFLINE, L.CPUST_DONE):
                t_left = time.perf_counter()         # its teardown is done; the process exits
            self._others_alive(cpu)
            if p.exitcode is None and time.perf_counter() > deadline:
                raise AeroSyncError(f"hotplug: cpu{cpu} (pid {p.pid}) did not leave within {LEAVE_TIMEOUT_S:g} s "
                                    "of being asked to go offline")
        p.join(1.0)
        state = arena.u64[state_off >> 3]
        if p.exitcode != 0 or state not in (L.CPUST_OFFLINE, L.CPUST_DONE):
            raise self.died(cpu, p)
        t1 = time.perf_counter()
        out = cpuhp_offline_mm(arena, cpu)
        held = cpu_mm_held(arena, cpu)
        if held:
            raise AeroSyncError(f"hotplug: cpu{cpu} is offline but still holds {held[0]} (H1)")
        arena.atomic.store64(state_off, L.CPUST_OFFLINE)
        t2 = time.perf_counter()
        self.standby[cpu] = self.start_worker(cpu)     # parks until the CPU comes up (workers/cpu.py)
        return {"pid": p.pid or 0, "leave_ms": round(((t_left or t1) - t0) * 1e3, 3),
                "exit_ms": round((t1 - (t_left or t1)) * 1e3, 3), "teardown_ms": round((t2 - t1) * 1e3, 3),
                "ms": round((t2 - t0) * 1e3, 3), **{k: v for k, v in out.items() if k != "folded"}}

    def cpu_up(self, cpu: int, rec: dict[str, Any], req: int = 0) -> None:
        """cpu_up(): start the CPU's new worker; `_progress` completes `rec` once it runs."""
        arena, at = self.arena, self.arena.atomic
        t0 = time.perf_counter()
        at.store64(_word(arena, cpu, L.CPU_STATE), L.CPUST_STARTING)   # no worker owns the area now
        p = self.standby.pop(cpu, None)
        if p is not None and p.exitcode is not None:
            raise self.died(cpu, p)                    # the standby never made it: say why
        if p is None:
            p = self.start_worker(cpu)
        set_hp_state(arena, cpu, L.HP_COMING_UP)       # the standby goes (or the new worker will)
        self.procs[cpu] = p
        rec.update(pid=p.pid or 0, ms=None)
        self.coming[cpu] = (t0, rec, req)

    def _progress(self) -> bool:
        """Complete the onlines whose worker runs (or already did its ops); a worker that
        died or never started is reported."""
        done = False
        for cpu, (t0, rec, req) in list(self.coming.items()):
            p = self.procs[cpu]
            st = self.arena.atomic.load64(_word(self.arena, cpu, L.CPU_STATE))
            if st in (L.CPUST_RUNNING, L.CPUST_DONE):
                rec["ms"] = round((time.perf_counter() - t0) * 1e3, 3)
                del self.coming[cpu]
                self._answer(cpu, req, True)
                done = True
            elif st == L.CPUST_FAILED or p.exitcode is not None:
                raise self.died(cpu, p)
            elif time.perf_counter() - t0 > UP_TIMEOUT_S:
                raise AeroSyncError(f"hotplug: cpu{cpu}'s new worker (pid {p.pid}) not running "
                                    f"{UP_TIMEOUT_S:g} s after its start")
        return done

    def finish(self) -> None:
        """The run is over: scenario events that never got their turn are logged as
        skipped (a CPU coming up takes a second or more; events for it wait)."""
        for e in self.pending:
            self.log.append({"t": e.at, "cpu": e.cpu, "action": e.action, "source": "scenario",
                             "skipped": "the run ended before its turn"})
        self.pending.clear()

    def close(self) -> None:
        """The run is over (or failed): the standbys that were not needed go (they leave
        on STOP by themselves; this also covers an abort)."""
        for p in self.standby.values():
            if p.exitcode is None:
                p.join(0.5)
            if p.exitcode is None:
                p.kill()
                p.join(2.0)
        self.standby.clear()

    def settle(self) -> None:
        """Wait until every CPU coming up runs (the run is about to stop: a worker must
        not meet STOP half-way through its start)."""
        while self.coming:
            self._progress()
            time.sleep(0.002)


# ------------------------------------------------------------------ client (`aerosync hotplug`)
def parse_cpu(text: str) -> int:
    """ "cpu1" or "1" -> 1 (UsageError otherwise)."""
    t = text.removeprefix("cpu")
    if not t.isascii() or not t.isdigit():
        raise UsageError(f"CPU {text!r}: allowed: cpuN or N, a simulated CPU id")
    return int(t)


def request(arena: Any, cpu: int, action: str, timeout: float = CLIENT_TIMEOUT_S) -> None:
    """Ask the coordinator running `arena` to take `cpu` offline or online, and wait
    until it did.  UsageError (exit 2) for what the machine refuses or a run that is not
    going; AeroSyncError if the coordinator refused at its turn or the run ended first."""
    from aerosync.arch.cpu import proc_alive
    from aerosync.mm.reclaim.kthread import kthread_cpus

    kthreads = kthread_cpus(arena)
    if cpu in kthreads:
        raise UsageError(f"cpu{cpu} {action}: cpu{cpu} runs a kernel thread ([reclaim] kswapd / the flusher), "
                         f"not a workload: it stays online; workload CPUs are 0..{min(kthreads) - 1}")
    nr_cpus = int(arena.config.get("nr_cpus", 0)) - len(kthreads)
    at = arena.atomic
    rs = at.load64(L.H_RUN_STATE)
    if not proc_alive(arena.owner_pid):
        raise UsageError(f"the run in arena {arena.name} is not going (its coordinator is gone)")
    if rs not in (L.RUN_GO, L.RUN_PAUSE):
        raise UsageError(f"the run in arena {arena.name} is not going (not started yet, or stopping)")
    if action not in ("offline", "online"):
        raise UsageError(f"action {action!r}: allowed: offline, online")
    online = {c for c in range(nr_cpus) if hp_state(arena, c) in (L.HP_ONLINE, L.HP_GOING_DOWN)}
    why = _refusal(cpu, action, online, nr_cpus)
    if why is not None:
        raise UsageError(f"cpu{cpu} {action}: {why}")
    seq = int.from_bytes(os.urandom(6), "little") | 1
    code = L.HPREQ_OFFLINE if action == "offline" else L.HPREQ_ONLINE
    if at.cas64(_word(arena, cpu, L.CPU_HP_REQUEST), 0, seq << 8 | code) != 0:
        raise UsageError(f"another request for cpu{cpu} is pending; try again")
    deadline = time.monotonic() + timeout
    while True:
        res = at.load64(_word(arena, cpu, L.CPU_HP_RESULT))
        if res >> 8 == seq:
            if res & 0xFF != L.HPRES_OK:
                raise AeroSyncError(f"the coordinator refused cpu{cpu} {action} "
                                    "(the CPU's state changed meanwhile; see the run's summary)")
            return
        if at.load64(L.H_RUN_STATE) in (L.RUN_STOP, L.RUN_ABORT) or not proc_alive(arena.owner_pid):
            at.cas64(_word(arena, cpu, L.CPU_HP_REQUEST), seq << 8 | code, 0)
            raise AeroSyncError(f"the run ended before cpu{cpu} went {action}")
        if time.monotonic() > deadline:
            at.cas64(_word(arena, cpu, L.CPU_HP_REQUEST), seq << 8 | code, 0)
            raise AeroSyncError(f"no answer from the coordinator within {timeout:g} s")
        time.sleep(0.005)
