"""Concurrency-protocol races, each replayed deterministically (review of the run protocol,
the cross-CPU rings and the per-CPU page lists).

Every test forces one interleaving that real concurrency only hits now and then: hooks
on the shared-memory atomics (HookAtomic) or on a zone lock run "the other CPU's" step at
the exact point of the window, or a stand-in coordinator is driven from the worker's own
sleep/clock calls.  Each test fails on the code before its fix.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import types
from collections.abc import Callable
from typing import Any

import pytest

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.params import CPU_AREA_SIZE
from workers.workloads import _pages

pytestmark = pytest.mark.usefixtures("both_profiles")   # issue 14: races and checker in both kernel profiles


class HookAtomic:
    """arena.atomic with one-shot hooks: hook(op, off, fn) runs fn() just before the
    next `op` (load64/store64/cas64) on byte offset `off`, then does the op."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.hooks: dict[tuple[str, int], list[Callable[[], None]]] = {}

    def hook(self, op: str, off: int, fn: Callable[[], None]) -> None:
        self.hooks.setdefault((op, off), []).append(fn)

    def _fire(self, op: str, off: int) -> None:
        fns = self.hooks.get((op, off))
        if fns:
            fns.pop(0)()

    def load64(self, off: int) -> int:
        self._fire("load64", off)
        return self.real.load64(off)

    def store64(self, off: int, v: int) -> None:
        self._fire("store64", off)
        self.real.store64(off, v)

    def cas64(self, off: int, expected: int, new: int) -> int:
        self._fire("cas64", off)
        return self.real.cas64(off, expected, new)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def hooked_view(a: Arena) -> tuple[Any, HookAtomic]:
    """What Ring needs of an arena (atomic, u64, off), with a hookable atomic."""
    at = HookAtomic(a.atomic)
    return types.SimpleNamespace(atomic=at, u64=a.u64, u32=a.u32, u8=a.u8, off=a.off, config=a.config,
                                 name=a.name), at


# ----------------------------------------------------------------------------- rings
@pytest.fixture
def ring_arena(make_arena: Callable[..., Arena]) -> Arena:
    return make_arena(nr_cpus=3, extra=[_pages.ring_section(3, "r")])


def test_xmalloc_points_two_producers_at_one_ring() -> None:
    """The premise: on 3 CPUs xmalloc has 2 producers and 1 consumer, both producers push
    into cpu 2's ring -- the ring must take several producers."""
    from workers.workloads import xmalloc

    prod, cons = xmalloc.roles(xmalloc.Params(), 3)
    assert (prod, cons) == (2, 1)
    assert {prod + c % cons for c in range(prod)} == {2}      # make_batch's consumer choice


def test_ring_two_producers_same_tail(ring_arena: Arena) -> None:
    """cpu0 reads the tail of ring 2; before it writes, cpu1 pushes into ring 2 too.
    Before the fix both wrote slot 0 and published tail 1: one entry lost."""
    a = ring_arena
    v0, at0 = hooked_view(a)
    r0 = _pages.Ring(v0, 0, 3, "r", to_cpu=2)
    r1 = _pages.Ring(a, 1, 3, "r", to_cpu=2)
    cons = _pages.Ring(a, 2, 3, "r")
    tail = a.off("r") + 2 * _pages.RING_BYTES + 64
    at0.hook("load64", tail, lambda: None)                  # cpu0's first read of the tail ...
    at0.hook("load64", a.off("r") + 2 * _pages.RING_BYTES, lambda: r1.push(111))   # ... then cpu1 pushes
    assert r0.push(222)
    assert sorted(cons.pop_all()) == [111, 222]
    assert cons.pop_all() == [] and cons.pop() == -1


def test_ring_consumer_between_claim_and_publish(ring_arena: Arena) -> None:
    """A producer claimed a slot but has not written it yet: the consumer must not take
    the slot's old contents (a stale or zero entry) and must not skip it."""
    a = ring_arena
    v0, at0 = hooked_view(a)
    r0 = _pages.Ring(v0, 0, 3, "r", to_cpu=2)
    cons = _pages.Ring(a, 2, 3, "r")
    for i in range(_pages.RING_SLOTS + 5):                 # wrap once: slots hold old entries
        assert r0.push(i)
        assert cons.pop() == i
    seen: list[Any] = []
    slot = a.off("r") + 2 * _pages.RING_BYTES + 128 + ((_pages.RING_SLOTS + 5) % _pages.RING_SLOTS) * 8
    at0.hook("store64", slot, lambda: seen.extend([cons.pop(), cons.pop_all()]))
    assert r0.push(77)
    assert seen == [-1, []]
    assert cons.pop() == 77


def test_ring_full_and_many_producers(ring_arena: Arena) -> None:
    a = ring_arena
    prods = [_pages.Ring(a, c, 3, "r", to_cpu=2) for c in (0, 1)]
    cons = _pages.Ring(a, 2, 3, "r")
    pushed = [i for i in range(_pages.RING_SLOTS) if prods[i & 1].push(i << 8 | 3)]
    assert len(pushed) == _pages.RING_SLOTS
    assert not prods[0].push(1) and not prods[1].push(2)      # full
    assert cons.pop() == 3
    assert prods[1].push(5)
    got = cons.pop_all()
    assert got == [i << 8 | 3 for i in range(1, _pages.RING_SLOTS)] + [5]


# ----------------------------------------------------------------------------- run protocol
class FakeCoordinator:
    """The coordinator's side of GO / live check, stepped from the worker's own calls
    (workers.cpu.time is replaced): each step does what the real one would do next,
    with the real pending predicate (coordinator._pause_pending)."""

    def __init__(self, a: Arena, script: list[str]) -> None:
        self.a, self.script = a, list(script)
        self.checking = False
        self.seq = 0
        self.steps = 0
        self.check_runs = 0

    def state(self, rs: int) -> None:
        self.a.atomic.store64(L.H_RUN_STATE, rs)

    def begin_pause(self) -> None:
        self.seq = self.a.atomic.fetch_add64(L.H_PAUSE_SEQ, 1) + 1
        self.state(L.RUN_PAUSE)
        self.try_check()

    def try_check(self) -> None:
        from aerosync import coordinator

        if not self.checking and not coordinator._pause_pending(self.a, [object()], self.seq):
            self.checking = True                 # the invariant checker runs from here ...
            self.check_runs += 1

    def step(self) -> None:
        self.steps += 1
        assert self.steps < 200, f"worker never reached the pause barrier (ack {self.ack()}, seq {self.seq})"
        if not self.script:
            return
        what = self.script[0]
        if what == "wait":                       # waiting for acks
            self.try_check()
            if not self.checking:
                return
            self.script.pop(0)
            return
        self.script.pop(0)
        if what == "go":
            self.state(L.RUN_GO)
        elif what == "pause":
            self.begin_pause()
        elif what == "end":                      # ... to here
            assert self.checking, "the check had not started"
            self.checking = False
            self.state(L.RUN_GO)

    def ack(self) -> int:
        return self.a.atomic.load64(self.a.off("cpu") + L.CPU_PAUSE_ACK)


def _fake_time(coord: FakeCoordinator, clock_hooks: list[Callable[[], None]]) -> Any:
    def sleep(_s: float) -> None:
        coord.step()

    def monotonic_ns() -> int:
        if clock_hooks:
            clock_hooks.pop(0)()
        return time.monotonic_ns()

    return types.SimpleNamespace(sleep=sleep, monotonic_ns=monotonic_ns, perf_counter_ns=time.perf_counter_ns,
                                 monotonic=time.monotonic, perf_counter=time.perf_counter)


def _run_worker(monkeypatch: pytest.MonkeyPatch, a: Arena, coord: FakeCoordinator, ops: int,
                clock_hooks: list[Callable[[], None]] | None = None) -> list[bool]:
    """workers.cpu._run in this process on a probe workload; returns, per batch call,
    whether the coordinator's check was running at the time."""
    import workers.cpu as wc
    from workers import workloads

    during_check: list[bool] = []

    def make_batch(arena: Any, cpu: int, params: Any, rng: Any) -> Callable[[int], None]:
        def batch(n: int) -> None:
            during_check.append(coord.checking)
        return batch

    probe = types.SimpleNamespace(Params=lambda **kw: None, make_batch=make_batch)
    monkeypatch.setitem(workloads.WORKLOADS, "probe", probe)
    monkeypatch.setattr(wc, "_harness_ps", lambda n=0: 1)
    monkeypatch.setattr(wc, "time", _fake_time(coord, clock_hooks if clock_hooks is not None else []))
    spec = wc.WorkerSpec(a.name, a.config_hash, 0, 0, 0, "probe", {}, 1, ops)
    assert wc._run(a, spec, a.off("cpu") >> 3) == 0
    return during_check


def _cpu0(a: Arena, field: int) -> int:
    return a.u64[(a.off("cpu") + field) >> 3]


def test_worker_reads_go_then_pause_before_running(monkeypatch, make_arena) -> None:
    """The worker leaves the barrier on GO; before it marks itself RUNNING the coordinator
    starts a live check: it sees the worker READY, does not wait for it, checks.  The
    worker must not run an operation during that check (before: it stored RUNNING and
    ran its first batch right into the checker)."""
    a = make_arena(nr_cpus=1)
    coord = FakeCoordinator(a, ["go", "end"])
    hooks = [coord.begin_pause]                   # the worker's first clock() after GO
    during = _run_worker(monkeypatch, a, coord, ops=40, clock_hooks=hooks)
    assert coord.check_runs == 1 and not hooks
    assert during and not any(during), f"{sum(during)} batch(es) ran during the check"
    assert _cpu0(a, L.CPU_OPS) == 40 and _cpu0(a, L.CPU_STATE) == L.CPUST_DONE


def test_worker_sleeps_through_go_into_a_pause(monkeypatch, make_arena) -> None:
    """GO, then a live check, both while the worker slept at the barrier: it first sees
    PAUSE.  Before: it took that for STOP, went DONE and ran nothing (a silent idle CPU,
    0 ops in ops mode).  Now it parks through the check and then runs its budget."""
    a = make_arena(nr_cpus=1)
    coord = FakeCoordinator(a, ["go", "pause", "end"])
    orig = coord.step

    def go_and_pause() -> None:            # both in the worker's one sleep
        orig()
        orig()

    coord.step = go_and_pause               # type: ignore[method-assign]
    during = _run_worker(monkeypatch, a, coord, ops=40)
    assert coord.check_runs == 1
    assert not any(during)
    assert _cpu0(a, L.CPU_OPS) == 40 and _cpu0(a, L.CPU_STATE) == L.CPUST_DONE


def test_parked_worker_acks_a_second_pause(make_arena, monkeypatch) -> None:
    """Parked in pause 1, the worker misses the GO between two checks (both between two
    of its polls).  It must ack pause 2 -- before, it kept its ack of pause 1 and the
    coordinator waited 30 s and failed the run."""
    import workers.cpu as wc

    a = make_arena(nr_cpus=1)
    area = a.off("cpu") >> 3
    a.u64[area + (L.CPU_STATE >> 3)] = L.CPUST_RUNNING
    coord = FakeCoordinator(a, ["wait", "end", "pause", "wait", "end"])
    coord.state(L.RUN_GO)
    coord.seq = a.atomic.fetch_add64(L.H_PAUSE_SEQ, 1) + 1
    coord.state(L.RUN_PAUSE)
    orig = coord.step

    def two_steps() -> None:                # check 1 ends and check 2 begins in one poll
        orig()
        if coord.script and coord.script[0] == "end" and coord.check_runs == 1:
            orig()
            orig()

    coord.step = two_steps                  # type: ignore[method-assign]
    monkeypatch.setattr(wc, "time", _fake_time(coord, []))
    assert wc._pause(a, area) == L.RUN_GO
    assert coord.check_runs == 2 and coord.ack() == 2


def test_ack_only_for_a_pause_seen_after_its_seq(make_arena, monkeypatch) -> None:
    """Guard of the re-ack rule (not a bug of the old code): the worker loaded pause_seq
    1 and run_state PAUSE; the coordinator then ends check 1 (GO) and bumps pause_seq to
    2 but has not stored PAUSE yet.  An ack of 2 now would let the coordinator check
    while the worker, seeing GO, runs: 2 may only be acked after a PAUSE seen after it."""
    import workers.cpu as wc

    a = make_arena(nr_cpus=1)
    area = a.off("cpu") >> 3
    acks: list[tuple[int, int]] = []
    real_store = a.atomic.store64

    at = HookAtomic(a.atomic)
    view = types.SimpleNamespace(atomic=at, u64=a.u64)
    a.atomic.store64(L.H_PAUSE_SEQ, 1)
    a.atomic.store64(L.H_RUN_STATE, L.RUN_PAUSE)

    def coordinator_between() -> None:      # after the worker's first load of pause_seq
        real_store(L.H_RUN_STATE, L.RUN_GO)
        a.atomic.fetch_add64(L.H_PAUSE_SEQ, 1)

    at.hook("load64", L.H_PAUSE_SEQ, lambda: None)
    at.hook("load64", L.H_RUN_STATE, coordinator_between)
    orig_store = at.store64

    def store64(off: int, v: int) -> None:
        if off == (area << 3) + L.CPU_PAUSE_ACK:
            acks.append((v, a.atomic.load64(L.H_RUN_STATE)))
        orig_store(off, v)

    at.store64 = store64                    # type: ignore[method-assign]
    monkeypatch.setattr(wc, "time", _fake_time(FakeCoordinator(a, []), []))
    assert wc._pause(view, area) == L.RUN_GO
    assert all(not (seq == 2 and rs == L.RUN_GO) for seq, rs in acks), acks


def test_live_check_reports_a_failed_worker(make_arena) -> None:
    """A worker that raised mid-operation is FAILED (not RUNNING): the live check must
    name its death, not check (and blame) the machine it left half-updated."""
    from aerosync import coordinator
    from aerosync.errors import WorkerDied

    a = make_arena(nr_cpus=2)
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=time.sleep, args=(0,))
    p.start()
    p.join()
    for c, st in ((0, L.CPUST_RUNNING), (1, L.CPUST_FAILED)):
        a.u64[(a.off("cpu") + c * CPU_AREA_SIZE + L.CPU_STATE) >> 3] = st
    with pytest.raises(WorkerDied):
        coordinator._pause_pending(a, [p, p], 1)


def _linger(seconds: float) -> None:
    time.sleep(seconds)


def test_stop_does_not_return_while_a_worker_lingers(make_arena, spawn, monkeypatch) -> None:
    """After STOP the coordinator frees ring leftovers as cpu 0 (MM(arena, 0)) and checks
    the machine: it must not go on while a worker still runs (before: _stop returned
    after the grace with the worker alive, and the report raced its teardown)."""
    from aerosync import coordinator
    from aerosync.errors import AeroSyncError

    a = make_arena(nr_cpus=2)
    monkeypatch.setattr(coordinator, "STOP_GRACE_S", 0.3)
    quick, slow = spawn(_linger, 0.0), spawn(_linger, 30.0)
    quick.join(10)
    with pytest.raises(AeroSyncError, match=r"cpu1 .* still running"):
        coordinator._stop(a, [quick, slow])


# ----------------------------------------------------------------------------- per-CPU page lists
def test_online_waits_for_a_drain_in_progress(monkeypatch, machine) -> None:
    """cpu0 drains offline cpu1's lists; in the middle of it (zone.lock held, lists half
    drained) a third party brings cpu1 back online.  Before: pcp_cpu_online's CAS
    OFFLINE->IDLE succeeded at once, and cpu1's lock-free fast paths pushed/popped the
    lists the drainer was unlinking from.  Now the drainer holds the pcp DRAINING and the
    online waits for the end of the drain."""
    import threading

    from aerosync.mm.pmm import gfp as G
    from aerosync.mm.pmm import mmzone as Z
    from aerosync.mm.pmm import page_alloc as PA
    from aerosync.mm.pmm.check import check
    from aerosync.mm.pmm.page_alloc import MM
    from aerosync.sync.spinlock import SpinLock

    hook: list[Callable[[], None]] = []

    class HookedLock(SpinLock):
        def __init__(self, arena: Arena, slot: int, cpu: int) -> None:
            super().__init__(arena, slot, cpu)
            inner = self.acquire

            def acquire() -> None:
                inner()
                if hook and cpu == 0:
                    hook.pop()()

            self.acquire = acquire

    monkeypatch.setattr(PA, "SpinLock", HookedLock)
    a = machine(4096, 3)
    m0, m1, m2 = MM(a, 0), MM(a, 1), MM(a, 2)
    held = [m1.alloc_pages(G.GFP_KERNEL, 0) for _ in range(20)]
    for p in held:
        m1.free_pages(p)
    zid = next(z for z in range(m1.nr_zones) if a.u64[(Z.pcp_off(a, 1, z, m1.nr_zones) + Z.PCP_COUNT) >> 3])
    po = Z.pcp_off(a, 1, zid, m1.nr_zones)
    seen: list[int] = []
    t = threading.Thread(target=m2.pcp_cpu_online, args=(1,))

    def mid_drain() -> None:
        t.start()
        t.join(0.3)
        seen.append(a.atomic.load64(po))
        seen.append(t.is_alive())

    hook.append(mid_drain)
    assert m0.drain_cpu_pages(1) > 0
    t.join(10)
    assert not hook and not t.is_alive()
    assert seen[0] != Z.PCP_IDLE, "cpu1's lists were handed back in the middle of the drain"
    assert seen[1], "pcp_cpu_online returned during the drain"
    assert a.atomic.load64(po) == Z.PCP_IDLE                # online once the drain ended
    p = m1.alloc_pages(G.GFP_KERNEL, 0)
    m1.free_pages(p)
    m1.drain_local_pages()
    rep = check(a)
    assert rep.ok, str(rep)


def test_drainer_never_drains_unclaimed_when_owner_leaves_between_cases(machine) -> None:
    """The owner is inside its PCP (BUSY) when a drainer looks, and leaves (IDLE) right
    after: the drainer must claim DRAINING before touching the lists.  The old claim
    tried CAS(IDLE->DRAINING) then CAS(OFFLINE->DRAINING); the owner leaving between the
    two made the second return IDLE, which ended the wait unclaimed, and the drain ran
    while the owner could re-enter (count and lists diverged: checker P1/P4)."""
    from aerosync.mm.pmm import gfp as G
    from aerosync.mm.pmm import mmzone as Z
    from aerosync.mm.pmm.check import check
    from aerosync.mm.pmm.page_alloc import MM

    a = machine(nr_pages=2048, nr_cpus=2)
    owner = MM(a, 1)
    owner.free_pages(owner.alloc_pages(G.GFP_KERNEL, 0), 0)   # cpu1's pcp holds pages
    zid = owner.zonelist(owner.nid, G.GFP_KERNEL)[0]
    po = Z.pcp_off(a, 1, zid, owner.nr_zones)
    real = a.atomic
    real.store64(po, 1)                                       # the owner is inside
    seen: dict[str, Any] = {"first": True, "state_at_release": []}

    class OwnerLeavesOnFirstLook:
        """Delegates to the real atomics; the first access to the pcp word sees BUSY and
        then the owner leaves (IDLE).  Records the state when the drainer stores OFFLINE."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def _look(self, off: int) -> None:
            if off == po and seen["first"]:
                seen["first"] = False
                real.store64(po, 0)

        def load64(self, off: int, *order: int) -> int:
            if off == po and seen["first"]:
                v = real.load64(off)
                self._look(off)
                return v
            return real.load64(off, *order)

        def cas64(self, off: int, exp: int, new: int, *order: int) -> int:
            if off == po and seen["first"]:
                v = real.load64(off)
                self._look(off)
                return v
            return real.cas64(off, exp, new, *order)

        def store64(self, off: int, value: int, *order: int) -> None:
            if off == po and value == 2:
                seen["state_at_release"].append(real.load64(po))
            real.store64(off, value, *order)

    a.atomic = OwnerLeavesOnFirstLook()  # type: ignore[assignment]
    try:
        drainer = MM(a, 0)
    finally:
        a.atomic = real
    drainer.drain_cpu_pages(1)
    assert 3 in seen["state_at_release"] and all(s == 3 for s in seen["state_at_release"]), seen
    owner.pcp_cpu_online(1)
    rep = check(a)
    assert rep.ok, str(rep)
