"""Child-process bodies for multi-process tests (module level, so spawn can import them).

Each attaches the arena by name, does its part, and exits; the parent asserts.
"""

from __future__ import annotations

import os
import signal
import time

from aerosync.arena.segment import Arena


def lock_increment(name: str, slot: int, cpu: int, iters: int, word_off: int, start_off: int) -> None:
    """Mutual exclusion: increment a plain (non-atomic) field under the spinlock."""
    from aerosync.sync.spinlock import SpinLock

    a = Arena.attach(name)
    lock = SpinLock(a, slot, cpu)
    q, idx = a.u64, word_off >> 3
    a.atomic.fetch_add64(start_off, 1)
    while a.atomic.load64(start_off) < 1 << 32:      # start barrier set by the parent
        time.sleep(0.0005)
    acquire, release = lock.acquire, lock.release
    for _ in range(iters):
        acquire()
        v = q[idx]                 # deliberately racy read-modify-write: safe only
        q[idx] = v + 1             # if the lock excludes every other CPU
        release()
    del lock, acquire, release, q
    a.close()


def hold_lock_then(name: str, slot: int, cpu: int, flag_off: int, action: str, hold_s: float) -> None:
    """Take the lock, raise a flag, then either release after hold_s or die holding it."""
    from aerosync.sync.spinlock import SpinLock

    a = Arena.attach(name)
    lock = SpinLock(a, slot, cpu)
    lock.acquire()
    a.atomic.store64(flag_off, 1)
    if action == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(hold_s)
    lock.release()
    del lock
    a.close()


def rw_writer(name: str, slot: int, cpu: int, data_off: int, iters: int) -> None:
    """Write two words that must always be equal under the write lock."""
    from aerosync.sync.rwlock import RWLock

    a = Arena.attach(name)
    rw = RWLock(a, slot, cpu)
    q, i = a.u64, data_off >> 3
    for n in range(1, iters + 1):
        rw.write_lock()
        q[i] = n
        time.sleep(0) if n % 64 == 0 else None
        q[i + 1] = n
        rw.write_unlock()
    del rw, q
    a.close()


def rw_reader(name: str, slot: int, cpu: int, data_off: int, iters: int, bad_off: int) -> None:
    """Read both words under the read lock; count any torn pair at bad_off."""
    from aerosync.sync.rwlock import RWLock

    a = Arena.attach(name)
    rw = RWLock(a, slot, cpu)
    q, i = a.u64, data_off >> 3
    for _ in range(iters):
        rw.read_lock()
        x, y = q[i], q[i + 1]
        rw.read_unlock()
        if x != y:
            a.atomic.fetch_add64(bad_off, 1)
    del rw, q
    a.close()


def seq_writer(name: str, seq_off: int, data_off: int, iters: int) -> None:
    from aerosync.sync.seqcount import SeqCount

    a = Arena.attach(name)
    sc = SeqCount(a, seq_off)
    q, i = a.u64, data_off >> 3
    for n in range(1, iters + 1):
        sc.write_begin()
        q[i] = n
        q[i + 1] = n * 3
        sc.write_end()
    del sc, q
    a.close()


class Sequencer:
    """An arena-backed turn word: a conductor process lets actors go one at a time.

    Actors call `wait_turn(k)` and proceed once the conductor has `set_turn(k)` (or
    later); the conductor checks for itself that actor k did its step (e.g. that it is
    in a lock's queue) before giving the next turn, which forces an order of arrival
    that real concurrency would only hit now and then.
    """

    def __init__(self, arena: Arena, off: int) -> None:
        self.at, self.off = arena.atomic, off

    def set_turn(self, k: int) -> None:
        self.at.store64(self.off, k)

    def wait_turn(self, k: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.at.load64(self.off) < k:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Sequencer: turn {k} never came (at {self.at.load64(self.off)})")
            time.sleep(0.0002)


# Per-actor report of qlock_in_turn (u64 words at report_off + 128 * cpu).
R_DONE, R_RAISED, R_PENDING, R_QUEUED, R_BLOCKS, R_TIMEOUTS, R_REPAIRS, R_ABANDONS, R_STEALS = range(9)
NO_STEAL = 10**15            # qlock_in_turn's default STEAL_NS: strict hand-over order


def qlock_in_turn(name: str, slot: int, cpu: int, turn: int, seq_off: int, log_off: int, report_off: int,
                  raise_off: int = 0, block_s: float = 0.0, steal_ns: int = NO_STEAL) -> None:
    """Wait for `turn`, acquire the lock (queueing behind whoever is in line), append
    cpu+1 to the hand-over log at log_off (count at log_off, entries after it), release,
    and report the queued spinlock's event counts.

    raise_off: a word that, once non-zero, makes this CPU's wait hook raise (the waiter
    leaves the queue on an exception).  block_s: the block timeout without a hook (a
    large value turns a lost wake-up into a hang).  steal_ns: after how long a free lock
    its next waiter did not take may be stolen (default: never, so the order is exact).
    """
    from aerosync.sync import qspinlock as Q
    from aerosync.sync.spinlock import SpinLock
    from aerosync.sync.waithook import set_wait_hook

    a = Arena.attach(name)
    at = a.atomic
    rep = report_off + 128 * cpu
    lock = SpinLock(a, slot, cpu)
    Q.STEAL_NS = steal_ns
    if block_s:
        Q.BLOCK_S = block_s
    if raise_off:
        def hook() -> None:
            if at.load64(raise_off):
                raise RuntimeError(f"cpu{cpu}: wait hook raised")
        set_wait_hook(hook)
    Sequencer(a, seq_off).wait_turn(turn)
    try:
        lock.acquire()
    except RuntimeError:
        at.store64(rep + 8 * R_RAISED, 1)
    else:
        i = at.fetch_add64(log_off, 1)
        at.store64(log_off + 8 * (1 + i), cpu + 1)
        lock.release()
    for k, key in ((R_PENDING, "pending"), (R_QUEUED, "queued"), (R_BLOCKS, "blocks"), (R_TIMEOUTS, "timeouts"),
                   (R_REPAIRS, "repairs"), (R_ABANDONS, "abandons"), (R_STEALS, "steals")):
        at.store64(rep + 8 * k, Q.QSTAT[key])
    at.store64(rep + 8 * R_DONE, 1)
    del lock
    a.close()


def lock_increment_pinned(name: str, slot: int, cpu: int, iters: int, word_off: int, start_off: int,
                          host_cpu: int, report_off: int) -> None:
    """lock_increment on one given host CPU, counting every time.sleep the queued
    spinlock makes (it must make none: waiting is spinning, yielding or blocking)."""
    import types

    from aerosync.sync import qspinlock as Q

    os.sched_setaffinity(0, {host_cpu})
    sleeps = [0]

    def sleep(s: float) -> None:
        sleeps[0] += 1
        time.sleep(s)

    Q.time = types.SimpleNamespace(sleep=sleep, monotonic_ns=time.monotonic_ns, perf_counter_ns=time.perf_counter_ns)
    lock_increment(name, slot, cpu, iters, word_off, start_off)
    a = Arena.attach(name)
    a.atomic.store64(report_off + 64 * cpu, sleeps[0] + 1)          # +1: reported
    a.atomic.store64(report_off + 64 * cpu + 8, Q.QSTAT["blocks"])
    a.close()


def hold_until_flag(name: str, slot: int, cpu: int, held_off: int, flag_off: int) -> None:
    """Take the lock, say so at held_off, hold it until flag_off is set, release."""
    from aerosync.sync.spinlock import SpinLock

    a = Arena.attach(name)
    lock = SpinLock(a, slot, cpu)
    lock.acquire()
    a.atomic.store64(held_off, 1)
    deadline = time.monotonic() + 60
    while not a.atomic.load64(flag_off) and time.monotonic() < deadline:
        time.sleep(0.0005)
    lock.release()
    del lock
    a.close()


def write_hold_until_flag(name: str, slot: int, cpu: int, held_off: int, flag_off: int) -> None:
    """hold_until_flag for the write side of a rwlock."""
    from aerosync.sync.rwlock import RWLock

    a = Arena.attach(name)
    rw = RWLock(a, slot, cpu)
    rw.write_lock()
    a.atomic.store64(held_off, 1)
    deadline = time.monotonic() + 60
    while not a.atomic.load64(flag_off) and time.monotonic() < deadline:
        time.sleep(0.0005)
    rw.write_unlock()
    del rw
    a.close()


def qlock_chaos(name: str, slot: int, cpu: int, word_off: int, count_off: int, stop_off: int) -> None:
    """Increment a plain word under the lock until stop_off is set, counting our own
    increments at count_off (after the write: a kill in between makes the word one ahead
    of the counts, never behind).  A dead owner is taken over (force_unlock from the
    exact word, one winner) and the loop goes on: the robust-mutex recovery path."""
    from aerosync.errors import LockOwnerDead
    from aerosync.sync.spinlock import SpinLock, force_unlock

    a = Arena.attach(name)
    at, q = a.atomic, a.u64
    lock = SpinLock(a, slot, cpu)
    acquire, release = lock.acquire, lock.release
    w = word_off >> 3
    at.store64(count_off + 8, os.getpid())                  # started: the parent may kill us now
    while not at.load64(stop_off):
        try:
            acquire()
        except LockOwnerDead as e:                          # the owner it named, not whoever holds it now
            force_unlock(a, slot, e.pid << 16 | (0xFFFF if e.cpu < 0 else e.cpu + 1))
            continue
        v = q[w]
        q[w] = v + 1
        at.fetch_add64(count_off, 1)
        release()
    del lock, acquire, release, q
    a.close()
