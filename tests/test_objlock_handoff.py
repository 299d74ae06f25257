"""The embedded locks' wait list and hand-off (sync/objlock.py), in forced orders.

Every test fixes the order of arrival: a waiter is known to be queued (its node is on the
lock's list) or to hold a reservation (the word shows it) before the next step, so the
outcome follows from the protocol, not from timing.  Several simulated CPUs are threads
of this process, each with its own handle; the cross-process cases use the Sequencer.

  OL4  Ws is set iff a node is queued; every test ends with the word 0 and no node queued
  OL5  with the hand-off set, the first waiter goes next (no spinner, reader or
       newcomer passes it); a spinlock reservation is taken only by its waiter
  readers  a reader never passes a queued writer on a reader-held lock; queued readers
       are granted together (past a queued writer, phase-fair); downgrade grants them
  leave  a waiter leaving on an exception (or dying) leaves the queue and the next one
       still gets the lock
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from aerosync.arena import layout as L
from aerosync.sync import objlock as O
from aerosync.sync import waithook as WH
from aerosync.sync.lockclass import OBJ_RW, OBJ_SPIN, objlock_class, objlock_section, waiter_node
from tests import vm_helpers as H
from tests.conftest import sigkill
from tests.helpers import Sequencer

NR = 5


def _arena(make_arena, nr_cpus: int = NR):
    return make_arena(nr_cpus=nr_cpus, nr_pages=16, extra=[objlock_section(nr_cpus), L.SectionSpec("scratch", 8192)])


@pytest.fixture(autouse=True)
def _clean_process_state() -> Iterator[None]:
    """The queue timeout as shipped, and no wait hook left over from another test's CPU
    (a VM handle installs its IPI handler process-wide)."""
    t = O.RW_WAIT_TIMEOUT_NS
    old = WH.set_wait_hook(None)
    yield
    O.RW_WAIT_TIMEOUT_NS = t
    WH.set_wait_hook(old)


def queued(a, cpu: int, off: int) -> bool:
    return a.atomic.load64(waiter_node(a, cpu) + O.N_LOCK) == off + 1


def until(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.0005)


def assert_idle(a, off: int) -> None:
    """OL4 at rest: the word is free and no node is queued or claimed."""
    assert a.atomic.load64(off) == 0, f"word {a.atomic.load64(off):#x}"
    for c in range(int(a.config["nr_cpus"]) + 1):
        assert a.atomic.load64(waiter_node(a, c) + O.N_LOCK) == 0, f"node {c} still in use"


class Cpu:
    """One simulated CPU as a thread running `fn(handle)`; `gate` lets a test hold it
    inside its critical section."""

    def __init__(self, a, cls: int, cpu: int, fn: Callable[..., object], log: list[str] | None = None,
                 spin: bool = False) -> None:
        self.h = O.ObjSpinLock(a, cls, cpu) if spin else O.ObjRWSem(a, cls, cpu)
        self.fn, self.log = fn, log
        self.gate = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.hook: Callable[[], None] | None = None
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        WH.set_wait_hook(self.hook, thread_only=True)
        try:
            self.fn(self)
        except BaseException as e:
            self.error = e
        self.done.set()

    def start(self) -> Cpu:
        self.t.start()
        return self

    def join(self) -> None:
        until(self.done.is_set, "the CPU thread finished")
        self.t.join(5)


def writer(tag: str, hold: bool = False) -> Callable[[Cpu], None]:
    def fn(c: Cpu) -> None:
        c.h.down_write(OFF[0])
        c.log.append(tag)
        if hold:
            c.gate.wait(20)
        c.h.up_write(OFF[0])
    return fn


def reader(tag: str, hold: bool = False) -> Callable[[Cpu], None]:
    def fn(c: Cpu) -> None:
        c.h.down_read(OFF[0])
        c.log.append(tag)
        if hold:
            c.gate.wait(20)
        c.h.up_read(OFF[0])
    return fn


OFF = [0]


@pytest.fixture
def rw(make_arena):
    a = _arena(make_arena)
    cls = objlock_class(a, "&mm->mmap_lock", OBJ_RW)
    OFF[0] = a.off("scratch")
    return a, cls, OFF[0]


def test_handoff_first_waiter_goes_before_a_newcomer(make_arena, spawn) -> None:
    """The xfail that found it (brk1 threads: 17 vs 1,618 brk calls): a writer queued
    long enough sets RWSEM_FLAG_HANDOFF, and the CPU that releases the lock and asks
    for it again at once queues behind it instead of taking it back."""
    a = _arena(make_arena)
    cls = objlock_class(a, "&mm->mmap_lock", OBJ_RW)
    base = a.off("scratch")
    off, seq, log, rep = base, base + 64, base + 128, base + 1024
    me = O.ObjRWSem(a, cls, 0)
    me.down_write(off)
    p = spawn(H.objrw_queue_in_turn, a.name, cls, 1, off, seq, 1, log, rep, True, 0)   # timeout 0: at once
    Sequencer(a, seq).set_turn(1)
    until(lambda: a.atomic.load64(off) & O.RW_HANDOFF, "the queued writer set the hand-off")
    assert queued(a, 1, off) and a.atomic.load64(off) & O.RW_WAITERS
    me.up_write(off)
    assert not me.down_write_trylock(off)          # reserved for the first waiter
    me.down_write(off)                             # the newcomer: spins, finds H, queues
    i = a.atomic.fetch_add64(log, 1)
    a.atomic.store64(log + 8 * (1 + i), 1)
    me.up_write(off)
    p.join(30)
    assert p.exitcode == 0
    assert [a.atomic.load64(log + 8 * (1 + k)) for k in range(a.atomic.load64(log))] == [2, 1]
    assert a.atomic.load64(rep + 64) - 1 >= 1      # the child counted its hand-off
    assert_idle(a, off)


def test_new_reader_does_not_pass_a_queued_writer(rw) -> None:
    a, cls, off = rw
    log: list[str] = []
    r0 = O.ObjRWSem(a, cls, 0)
    r0.down_read(off)
    w = Cpu(a, cls, 1, writer("W"), log).start()
    until(lambda: queued(a, 1, off), "the writer queued")
    r = Cpu(a, cls, 2, reader("R"), log).start()
    until(lambda: queued(a, 2, off), "the reader queued behind the writer")
    assert not r.done.is_set() and not O.ObjRWSem(a, cls, 3).down_read_trylock(off)
    r0.up_read(off)
    w.join()
    r.join()
    assert w.error is None and r.error is None
    assert log == ["W", "R"]
    assert_idle(a, off)


def test_queued_readers_are_granted_together_past_a_queued_writer(rw) -> None:
    """rwsem_mark_wake's phase-fair wake-up: every queued reader, even one that queued
    after a writer, is granted at the release; the writer waits for all of them."""
    a, cls, off = rw
    log: list[str] = []
    w0 = O.ObjRWSem(a, cls, 0)
    w0.down_write(off)
    r1 = Cpu(a, cls, 1, reader("R1", hold=True), log).start()
    until(lambda: queued(a, 1, off), "R1 queued")
    w2 = Cpu(a, cls, 2, writer("W2"), log).start()
    until(lambda: queued(a, 2, off), "W2 queued")
    r3 = Cpu(a, cls, 3, reader("R3", hold=True), log).start()
    until(lambda: queued(a, 3, off), "R3 queued")
    w0.up_write(off)
    until(lambda: len(log) == 2, "both readers hold the lock")
    assert sorted(log) == ["R1", "R3"] and queued(a, 2, off)
    assert (a.atomic.load64(off) & O.RW_READERS) == 2 * O.RW_READER_BIAS
    r1.gate.set()
    r3.gate.set()
    for c in (r1, w2, r3):
        c.join()
        assert c.error is None
    assert log[2] == "W2"
    assert_idle(a, off)


def test_downgrade_grants_the_queued_readers_not_the_writer(rw) -> None:
    a, cls, off = rw
    log: list[str] = []
    w0 = O.ObjRWSem(a, cls, 0)
    w0.down_write(off)
    r1 = Cpu(a, cls, 1, reader("R1", hold=True), log).start()
    until(lambda: queued(a, 1, off), "R1 queued")
    w2 = Cpu(a, cls, 2, writer("W2"), log).start()
    until(lambda: queued(a, 2, off), "W2 queued")
    w0.downgrade_write(off)
    assert not w0.write_held_by_me(off)
    until(lambda: log == ["R1"], "R1 granted with the downgrade")
    assert (a.atomic.load64(off) & O.RW_READERS) == 2 * O.RW_READER_BIAS and queued(a, 2, off)
    r1.gate.set()
    r1.join()
    assert queued(a, 2, off) and not w2.done.is_set()     # the downgraded reader still holds it
    w0.up_read(off)
    w2.join()
    assert log == ["R1", "W2"] and r1.error is None and w2.error is None
    assert_idle(a, off)


def test_waiter_leaving_on_an_exception_leaves_the_queue(rw) -> None:
    a, cls, off = rw
    log: list[str] = []
    w0 = O.ObjRWSem(a, cls, 0)
    w0.down_write(off)
    quit_ = threading.Event()
    w1 = Cpu(a, cls, 1, writer("W1"), log)

    def hook() -> None:
        if quit_.is_set():
            raise RuntimeError("cpu1: wait hook raised")

    w1.hook = hook
    w1.start()
    until(lambda: queued(a, 1, off), "W1 queued")
    w2 = Cpu(a, cls, 2, writer("W2"), log).start()
    until(lambda: queued(a, 2, off), "W2 queued")
    quit_.set()
    w1.join()
    assert isinstance(w1.error, RuntimeError)
    assert not queued(a, 1, off) and queued(a, 2, off) and a.atomic.load64(off) & O.RW_WAITERS
    w0.up_write(off)
    w2.join()
    assert w2.error is None and log == ["W2"]
    assert_idle(a, off)


def test_dead_waiter_is_taken_off_the_queue(make_arena, spawn) -> None:
    """A process killed while queued: the next waiter removes its node (after one
    OWNER_CHECK_NS of waiting) and gets the lock when it is released."""
    a = _arena(make_arena)
    cls = objlock_class(a, "&mm->mmap_lock", OBJ_RW)
    off = a.off("scratch")
    OFF[0] = off
    w0 = O.ObjRWSem(a, cls, 0)
    w0.down_write(off)
    p = spawn(H.objrw_wait_forever, a.name, cls, 1, off, True)
    until(lambda: queued(a, 1, off), "the child queued")
    sigkill(p.pid)
    p.join(10)
    before = O.LOCK_EVENTS["objlock_dead_waiters"]
    log: list[str] = []
    w2 = Cpu(a, cls, 2, writer("W2"), log).start()
    until(lambda: queued(a, 2, off), "W2 queued behind the dead waiter")
    w0.up_write(off)                               # wakes the (dead) first waiter
    w2.join()
    assert w2.error is None and log == ["W2"]
    assert O.LOCK_EVENTS["objlock_dead_waiters"] > before
    assert_idle(a, off)


def test_spinlock_reservation_goes_to_its_waiter(make_arena) -> None:
    """ObjSpinLock: a waiter past its spin phase reserves the next hand-over; the CPU
    that releases cannot take the lock back."""
    a = _arena(make_arena)
    cls = objlock_class(a, "ptlock", OBJ_SPIN)
    off = a.off("scratch")
    l0 = O.ObjSpinLock(a, cls, 0)
    log: list[str] = []
    l0.lock(off)

    def fn(c: Cpu) -> None:
        c.h.lock(off)
        log.append("waiter")
        c.h.unlock(off)

    w = Cpu(a, cls, 1, fn, spin=True).start()
    until(lambda: a.atomic.load64(off) & O.SPIN_PENDING == 2 << 48, "the waiter reserved the lock")
    l0.unlock(off)
    assert not l0.trylock(off)
    l0.lock(off)
    log.append("releaser")
    l0.unlock(off)
    w.join()
    assert w.error is None and log == ["waiter", "releaser"]
    assert a.atomic.load64(off) == 0


@pytest.mark.parametrize("timeout_ns", [O.RW_WAIT_TIMEOUT_NS, 0])
def test_rwsem_storm_across_processes(make_arena, spawn, timeout_ns: int) -> None:
    """Three processes hammer one rwsem (a writer every 3rd operation, holds long
    enough for waiters to queue): no torn read, every operation done (no lost wake-up),
    the writes all counted, and the lock at rest afterwards (OL4).  With the queue
    timeout 0 every queued writer that finds the lock held sets the hand-off: those
    paths under load (whether they fire at all depends on the host's scheduling, so
    the count is not asserted; the forced-order tests above prove what they do)."""
    a = _arena(make_arena, 3)
    cls = objlock_class(a, "&mm->mmap_lock", OBJ_RW)
    base = a.off("scratch")
    off, data, start, rep = base, base + 64, base + 128, base + 1024
    iters = 1500
    procs = [spawn(H.objrw_storm, a.name, cls, c, off, data, iters, start, rep, 3, 300, timeout_ns) for c in range(3)]
    until(lambda: a.atomic.load64(start) >= 3, "the children started", 60)
    a.atomic.fetch_add64(start, 1 << 32)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert [a.atomic.load64(rep + 64 * c) for c in range(3)] == [iters] * 3
    assert sum(a.atomic.load64(rep + 64 * c + 16) for c in range(3)) == 0
    assert a.u64[data >> 3] == 3 * len(range(0, iters, 3))
    assert_idle(a, off)


def test_spinlock_storm_across_processes(make_arena, spawn) -> None:
    a = _arena(make_arena, 3)
    cls = objlock_class(a, "ptlock", OBJ_SPIN)
    base = a.off("scratch")
    off, data, start, rep = base, base + 64, base + 128, base + 1024
    iters = 3000
    procs = [spawn(H.objspin_storm, a.name, cls, c, off, data, iters, start, rep, 200) for c in range(3)]
    until(lambda: a.atomic.load64(start) >= 3, "the children started", 60)
    a.atomic.fetch_add64(start, 1 << 32)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert a.u64[data >> 3] == 3 * iters
    assert a.atomic.load64(off) == 0
