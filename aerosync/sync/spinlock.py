"""A spinlock in the arena that records its owner, backs off, and keeps lock_stat.

Two kinds behind one constructor: `SpinLock(arena, slot, cpu)` is this test-and-set
lock or the queued spinlock of sync/qspinlock.py, as the arena's config says for the
slot's lock class (`spinlock_kind`: config `locks` = {"spinlock": "tas" | "qspinlock",
"classes": {class: kind}}, from the scenario's [locks] section).  Both keep the owner
in the same low 40 bits of the word and the same lock_stat figures, so owner(),
held_by_me(), assert_held(), locks_held_by(), force_unlock(), lockdep and the watchdog
work on either.  The rest of this docstring describes the TAS kind.

Models: include/linux/spinlock.h semantics (mutual exclusion between simulated CPUs) with
kernel/locking/lockdep.c's lock_stat figures.  Unit: one lock slot (sync/lockstat.py).

Lockless protocol (the lock word, u64 at slot+0)::

    63            16 15          0
    +---------------+-------------+
    |  owner pid    |  cpu + 1    |   locked: pid != 0
    +---------------+-------------+
    |       0       | last cpu+1  |   unlocked: remembers who held it last (0 = never)

  * acquire is one CAS from "unlocked, last held by me" to "locked by me".  If the CAS
    returns another unlocked value, the lock last lived on another CPU: one more CAS from
    that value, and the acquisition is an acq-bounce (the cache line moved), so bounce
    counting costs nothing when there is no bounce.
  * a locked value means contention: the slow path measures the wait and backs off.
  * release is a CAS from "locked by me" back to "unlocked, last me".  A CAS rather than a
    store so that a release by a non-owner is caught (xv6 spinlock.c:release()).
  * SEQ_CST CAS on both sides gives acquire/release ordering for the data it protects.

Backoff (python-shm-pitfalls.md 6.1): pure spinning with more simulated CPUs than host
CPUs collapses (a preempted holder cannot release), so a waiter spins `SPIN_TRIES` loads,
then calls `sched_yield` `YIELD_TRIES` times, then sleeps 20 us doubling to 1 ms.  The
three phases are separate functions (`spin_wait`, `yield_wait`, `sleep_wait`) so py-spy
profiles name them; their counts go to lock_stat's spins/yields/sleeps.  Each phase calls
the process's wait hook (sync/waithook.py) on every round.

Watchdog: a CPU entering the slow path publishes the slot it waits on (and since when)
in its per-CPU area (arena/layout.py line 1), so a soft-lockup report can name the lock
and its owner.  Two plain stores, on the slow path only.

Dead owners: while sleeping, a waiter checks every ~0.25 s whether the owner pid still
lives (zombies count as dead) and raises LockOwnerDead naming the lock, owner and time
held.  The coordinator, which sees a worker exit first, reports the locks it held with
`locks_held_by()`.

Lock order: a SpinLock nests under nothing by itself; each user documents its order.
Never hold a spinlock across a blocking call or in a signal handler.

Invariants (tests/test_sync.py): L1 at most one owner; L2 only the owner releases;
L3 lock_stat figures change only while the lock is held (or atomically, for waiters).
"""

from __future__ import annotations

import os
import time

from aerosync.arch.cpu import proc_alive
from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.errors import LockError, LockOwnerDead
from aerosync.params import CPU_AREA_SIZE, MAX_LOCKS
from aerosync.sync import lockstat as LS
from aerosync.sync.qspinlock import kick_sleepers, make_qspinlock
from aerosync.sync.waithook import wait_hook

__all__ = ["SpinLock", "CPU_COORD", "SPIN_TRIES", "YIELD_TRIES", "SPINLOCK_KINDS", "spinlock_kind", "spin_wait",
           "yield_wait", "sleep_wait", "locks_held_by", "force_unlock"]

SPINLOCK_KINDS = ("tas", "qspinlock")

CPU_COORD = 0xFFFE           # the coordinator's "cpu" id; cpu+1 = 0xFFFF
SPIN_TRIES = 64              # ~1.5 us of loads at ~20 ns each
YIELD_TRIES = 16
SLEEP_MIN_S = 20e-6
SLEEP_MAX_S = 1e-3
OWNER_CHECK_S = 0.25

_pc = time.perf_counter_ns   # CLOCK_MONOTONIC: comparable across processes


def spinlock_kind(config: dict, lock_class: str) -> str:
    """"tas" or "qspinlock": the spinlock kind the arena config selects for `lock_class`
    (a per-class entry wins over the global `spinlock`; default "tas")."""
    locks = config.get("locks") or {}
    kind = (locks.get("classes") or {}).get(lock_class, locks.get("spinlock", "tas"))
    if kind not in SPINLOCK_KINDS:
        raise LockError(f"SpinLock: arena config locks selects {kind!r} for {lock_class}; "
                        f"allowed: {', '.join(SPINLOCK_KINDS)}")
    return kind


def spin_wait(load, cas, off: int, mine: int, tries: int) -> int:
    """Phase 1: spin on loads; CAS only when the word looks free.  Returns the word
    we took the lock from, or -1 after `tries` loads."""
    hook = wait_hook()
    for _ in range(tries):
        old = load(off)
        if not old >> 16 and cas(off, old, mine) == old:
            return old
        if hook is not None:
            hook()
    return -1


def yield_wait(load, cas, off: int, mine: int, tries: int) -> int:
    """Phase 2: give the CPU to the (possibly preempted) holder between attempts."""
    sched_yield = os.sched_yield
    hook = wait_hook()
    for _ in range(tries):
        sched_yield()
        old = load(off)
        if not old >> 16 and cas(off, old, mine) == old:
            return old
        if hook is not None:
            hook()
    return -1


def sleep_wait(load, cas, off: int, mine: int, name: str, since_ns: int, robust: bool = False) -> tuple[int, int]:
    """Phase 3: sleep with exponential backoff until the lock is free.

    Returns (word taken from, number of sleeps).  Raises LockOwnerDead when the owner
    process is gone -- unless `robust` (sync/robust.py): the coordinator takes the lock
    over and releases it, so the waiter keeps waiting.
    """
    delay, sleeps = SLEEP_MIN_S, 0
    next_check = _pc() + int(OWNER_CHECK_S * 1e9)
    while True:
        time.sleep(delay)
        sleeps += 1
        hook = wait_hook()
        if hook is not None:
            hook()
        old = load(off)
        if not old >> 16:
            if cas(off, old, mine) == old:
                return old, sleeps
            continue
        delay = min(delay * 2, SLEEP_MAX_S)
        now = _pc()
        if now >= next_check and not robust:
            next_check = now + int(OWNER_CHECK_S * 1e9)
            cpu, pid = LS.decode_owner(old)
            if not proc_alive(pid):
                raise LockOwnerDead(name, cpu, pid, (now - since_ns) / 1e9)


class SpinLock:
    """Handle on lock slot `slot`, for simulated CPU `cpu` in this process.

    `acquire()`/`release()` are per-handle closures bound to their offsets (measured:
    ~100 ns cheaper per pair than methods reading slots); `with lock:` works too.
    `kind` is "tas" or "qspinlock" (module docstring).
    """

    __slots__ = ("arena", "slot", "off", "cpu", "name", "kind", "acquire", "release", "held_by_me")

    def __init__(self, arena: Arena, slot: int, cpu: int) -> None:
        if not (0 <= cpu < 0xFFFE or cpu == CPU_COORD):
            raise LockError(f"SpinLock: cpu {cpu} out of range")
        self.arena, self.slot, self.cpu = arena, slot, cpu
        self.off = LS.slot_off(arena, slot)
        cls, inst = LS.slot_names(arena, slot)
        self.name = f"{cls}[{inst}]" if inst else cls
        stat = bool(arena.config.get("lock_stat", True))
        sample = int(arena.config.get("lock_hold_sample", 8))
        self.kind = spinlock_kind(arena.config, cls)
        if self.kind == "qspinlock":
            self.acquire, self.release, self.held_by_me = make_qspinlock(self, stat, sample - 1)
        else:
            self.acquire, self.release, self.held_by_me = self._make(stat, sample - 1)
        if arena.config.get("lockdep"):
            self._wrap_lockdep(cls)

    def _wrap_lockdep(self, lock_class: str) -> None:
        """Debug mode (sync/lockdep.py): check the order before acquiring, track holds."""
        from aerosync.sync.lockdep import lockdep_acquire, lockdep_release

        acquire, release, name = self.acquire, self.release, self.name

        def acquire_checked() -> None:
            lockdep_acquire(lock_class, name)
            try:
                acquire()
            except BaseException:
                lockdep_release(name)
                raise

        def release_checked() -> None:
            release()
            lockdep_release(name)

        self.acquire, self.release = acquire_checked, release_checked

    def _make(self, stat: bool, mask: int):
        at = self.arena.atomic
        cas, load, store, fa = at.cas64, at.load64, at.store64, at.fetch_add64
        off, name, cpu1 = self.off, self.name, self.cpu + 1
        mine = (os.getpid() << 16) | cpu1
        idle = cpu1
        acq_off = off + LS.S_ACQ
        hold_total, hold_samples = off + LS.S_HOLD_TOTAL, off + LS.S_HOLD_SAMPLES
        hold_max, hold_min = off + LS.S_HOLD_MAX, off + LS.S_HOLD_MIN
        pc = _pc
        t0 = 0
        # Where this CPU says which lock it waits on (read by the lockup watchdog).
        wait_i = -1
        if "cpu" in self.arena.sections and self.cpu < int(self.arena.config.get("nr_cpus", 0)):
            wait_i = (self.arena.off("cpu") + self.cpu * CPU_AREA_SIZE + L.CPU_WAITING_ON) >> 3
        q, slot1 = self.arena.u64, self.slot + 1
        robust = L.robust_mode(self.arena.config)

        def acquire_slow(old: int) -> None:
            if old == mine:
                raise LockError(f"spin_lock: recursive acquire of {name} by cpu{cpu1 - 1} pid {mine >> 16}")
            # Free, but last held elsewhere: a bounce, not a wait.
            if not old >> 16 and cas(off, old, mine) == old:
                if stat and old:       # old == 0: first acquisition ever, nothing moved
                    fa(off + LS.S_ACQ_BOUNCE, 1)
                return
            start = pc()
            fa(off + LS.S_WAITERS, 1)
            if wait_i >= 0:
                q[wait_i + 1] = time.monotonic_ns()
                q[wait_i] = slot1
            spins = yields = sleeps = 0
            try:
                got = spin_wait(load, cas, off, mine, SPIN_TRIES)
                spins = SPIN_TRIES if got < 0 else 1
                if got < 0:
                    got = yield_wait(load, cas, off, mine, YIELD_TRIES)
                    yields = YIELD_TRIES if got < 0 else 1
                    if got < 0:
                        got, sleeps = sleep_wait(load, cas, off, mine, name, start, robust)
            finally:
                fa(off + LS.S_WAITERS, (1 << 64) - 1)
                if wait_i >= 0:
                    q[wait_i] = 0
            if not stat:
                return
            wait = pc() - start
            # We hold the lock now: the figures below are ours to update.
            fa(off + LS.S_CON, 1)
            if (old & 0xFFFF) != cpu1:
                fa(off + LS.S_CON_BOUNCE, 1)
            if got and (got & 0xFFFF) != cpu1:
                fa(off + LS.S_ACQ_BOUNCE, 1)
            fa(off + LS.S_WAIT_TOTAL, wait)
            if wait > load(off + LS.S_WAIT_MAX):
                store(off + LS.S_WAIT_MAX, wait)
            if wait < load(off + LS.S_WAIT_MIN):
                store(off + LS.S_WAIT_MIN, wait)
            fa(off + LS.S_SPINS, spins)
            if yields:
                fa(off + LS.S_YIELDS, yields)
            if sleeps:
                fa(off + LS.S_SLEEPS, sleeps)

        if not stat:
            def acquire() -> None:
                old = cas(off, idle, mine)
                if old != idle:
                    acquire_slow(old)

            def release() -> None:
                if cas(off, mine, idle) != mine:
                    raise LockError(f"spin_unlock: {name} released by cpu{cpu1 - 1} pid {mine >> 16}, "
                                    f"owner word {load(off):#x}")
        else:
            def acquire() -> None:
                nonlocal t0
                old = cas(off, idle, mine)
                if old != idle:
                    acquire_slow(old)
                t0 = 0 if fa(acq_off, 1) & mask else pc()

            def release() -> None:
                nonlocal t0
                if t0:
                    h = pc() - t0
                    t0 = 0
                    fa(hold_total, h)
                    fa(hold_samples, 1)
                    if h > load(hold_max):
                        store(hold_max, h)
                    if h < load(hold_min):
                        store(hold_min, h)
                if cas(off, mine, idle) != mine:
                    raise LockError(f"spin_unlock: {name} released by cpu{cpu1 - 1} pid {mine >> 16}, "
                                    f"owner word {load(off):#x}")

        def held_by_me() -> bool:
            return load(off) == mine

        return acquire, release, held_by_me

    def is_locked(self) -> bool:
        return bool(LS.decode_owner(self.arena.atomic.load64(self.off))[1])

    def owner(self) -> tuple[int, int] | None:
        """(cpu, pid) of the holder, or None when free."""
        cpu, pid = LS.decode_owner(self.arena.atomic.load64(self.off))
        return (cpu, pid) if pid else None

    def assert_held(self) -> None:
        """lockdep_assert_held(): the caller must hold this lock."""
        if not self.held_by_me():
            raise LockError(f"assert_held: {self.name} is not held by cpu{self.cpu} pid {os.getpid()}")

    def __enter__(self) -> SpinLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def locks_held_by(arena: Arena, pid: int) -> list[tuple[int, str, int]]:
    """(slot, lock name, cpu) of every lock whose word or rwlock owner names `pid`."""
    out = []
    n = min(arena.u64[L.H_NR_LOCKS >> 3], MAX_LOCKS)
    for slot in range(n):
        off = LS.slot_off(arena, slot)
        kind = arena.u32[(off + LS.S_KIND) >> 2]
        w = arena.atomic.load64(off + (LS.S_OWNER if kind == LS.LOCK_RW else LS.S_WORD))
        if LS.decode_owner(w)[1] == pid:
            cls, inst = LS.slot_names(arena, slot)
            out.append((slot, f"{cls}[{inst}]" if inst else cls, LS.decode_owner(w)[0]))
    return out


def force_unlock(arena: Arena, slot: int, dead_word: int) -> bool:
    """Release a lock held by a dead owner: clear the owner field while it still names
    exactly the owner of `dead_word` (a CAS loop, one winner; a queued spinlock's pending
    and tail bits may move meanwhile and are kept), then wake a blocked queued waiter.

    The data it protected may be half-updated (EOWNERDEAD): the caller must run the
    invariant checker before trusting it.
    """
    at, off = arena.atomic, LS.slot_off(arena, slot)
    owner = dead_word & LS.OWNER_MASK
    if not owner >> 16:
        return False
    w = at.load64(off)
    while w & LS.OWNER_MASK == owner:
        got = at.cas64(off, w, w & ~(LS.PID_MASK << 16))
        if got == w:
            if w >> 40 and at.load32(off + LS.S_SLEEPERS):
                kick_sleepers(arena, off, w)
            return True
        w = got
    return False
