"""Lock takeover of each lock kind held by a dead CPU (sync/robust.py, robust mode).

Invariant: in robust mode a waiter never raises LockOwnerDead over a dead owner; it
waits, and once the coordinator's takeover (takeover_locks + release_taken for slot
locks, release_embedded for the robust list of embedded locks, reap_dead_waiter for
MCS nodes) has run, it gets the lock -- and nothing else is released: a lock held by a
live process, or an embedded lock whose word no longer names the dead CPU, stays as it
is.  Each test: a forked child takes a lock and SIGKILLs itself holding it; a second
forked child (a live CPU) waits for it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from aerosync.arena import layout as L
from aerosync.mm import intent as I
from aerosync.sync import lockstat as LS
from aerosync.sync.lockclass import OBJ_RW, OBJ_SPIN, objlock_class, objlock_section
from aerosync.sync.objlock import RW_READER_BIAS, RW_WRITER, ObjRWSem, ObjSpinLock
from aerosync.sync.robust import HELD_READ, HELD_WRITE, release_embedded, release_taken, takeover_locks
from aerosync.sync.rwlock import RWLock
from aerosync.sync.spinlock import SpinLock

pytestmark = pytest.mark.timeout(60)


def _arena(make_arena: Callable[..., Any], spinlock: str = "tas") -> Any:
    return make_arena(nr_cpus=3, nr_pages=16, extra=[objlock_section(3), L.SectionSpec("scratch", 4096)],
                      on_cpu_death="continue", locks={"spinlock": spinlock, "classes": {}})


def _fork(body: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:                                          # pragma: no cover (the child)
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            body()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 3
        os._exit(code)
    return pid


def _die_holding(a: Any, flag: int, take: Callable[[], None]) -> int:
    """A child that takes a lock, raises `flag`, and dies holding it; returns its pid, reaped."""

    def body() -> None:
        take()
        a.atomic.store64(flag, 1)
        os.kill(os.getpid(), signal.SIGKILL)

    pid = _fork(body)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and a.atomic.load64(flag) == 1
    return pid


def _waiter(a: Any, flag: int, take: Callable[[], None]) -> int:
    """A live CPU that waits for the lock, then raises `flag` and leaves."""

    def body() -> None:
        take()
        a.atomic.store64(flag, 1)

    return _fork(body)


def _still_waiting(a: Any, pid: int, flag: int, s: float = 0.6) -> None:
    """The waiter does not give up (no LockOwnerDead) and does not get the lock."""
    time.sleep(s)
    assert a.atomic.load64(flag) == 0
    done, _ = os.waitpid(pid, os.WNOHANG)
    assert done == 0, "the waiter left (raised?) instead of waiting for the takeover"


def _joins(a: Any, pid: int, flag: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert a.atomic.load64(flag) == 1


@pytest.mark.parametrize("kind", ["tas", "qspinlock"])
def test_takeover_spinlock(make_arena, kind: str) -> None:
    a = _arena(make_arena, kind)
    slot = LS.lock_alloc(a, "&zone->lock", "z0")
    other = LS.lock_alloc(a, "&zone->lock", "z1")
    f = a.off("scratch")
    dead = _die_holding(a, f, lambda: SpinLock(a, slot, 1).acquire())
    mine = SpinLock(a, other, 0)                       # a live owner: must stay held
    mine.acquire()
    w = _waiter(a, f + 8, lambda: (SpinLock(a, slot, 2).acquire(), SpinLock(a, slot, 2).release()))
    _still_waiting(a, w, f + 8)
    taken = takeover_locks(a, dead)
    assert [t.name for t in taken] == ["&zone->lock[z0]"]
    assert LS.decode_owner(a.atomic.load64(LS.slot_off(a, slot)))[1] == os.getpid()    # EOWNERDEAD: ours now
    release_taken(a, taken)
    _joins(a, w, f + 8)
    assert mine.held_by_me()
    mine.release()


def test_takeover_queued_waiter_and_pending_bits(make_arena) -> None:
    """qspinlock: the dead process held the lock while live CPUs queued behind it (MCS
    nodes, pending bit); a second dead process was itself queued -- its node is reaped."""
    a = _arena(make_arena, "qspinlock")
    slot = LS.lock_alloc(a, "lock_storm_lock", "s")
    f = a.off("scratch")
    dead = _die_holding(a, f, lambda: SpinLock(a, slot, 0).acquire())
    waiters = [_waiter(a, f + 8 * c, lambda c=c: (SpinLock(a, slot, c).acquire(), SpinLock(a, slot, c).release()))
               for c in (1, 2)]
    time.sleep(0.3)
    dead2 = _fork(lambda: SpinLock(a, slot, 1).acquire())   # queues, then is killed waiting
    time.sleep(0.3)
    os.kill(dead2, signal.SIGKILL)
    os.waitpid(dead2, 0)
    for c, w in enumerate(waiters, 1):
        _still_waiting(a, w, f + 8 * c, 0.2)
    taken = takeover_locks(a, dead2) + takeover_locks(a, dead)
    assert [t.name for t in taken] == ["lock_storm_lock[s]"]
    release_taken(a, taken)
    for c, w in enumerate(waiters, 1):
        _joins(a, w, f + 8 * c)
    assert not SpinLock(a, slot, 0).is_locked()


def test_takeover_rwlock_writer(make_arena) -> None:
    a = _arena(make_arena)
    slot = LS.lock_alloc(a, "rw_test", "rw", LS.LOCK_RW)
    f = a.off("scratch")
    dead = _die_holding(a, f, lambda: RWLock(a, slot, 0).write_lock())
    w = _waiter(a, f + 8, lambda: (RWLock(a, slot, 1).read_lock(), RWLock(a, slot, 1).read_unlock()))
    _still_waiting(a, w, f + 8)
    taken = takeover_locks(a, dead)
    assert [t.name for t in taken] == ["rw_test[rw]"]
    release_taken(a, taken)
    _joins(a, w, f + 8)
    assert a.atomic.load64(LS.slot_off(a, slot)) == 0


def test_takeover_embedded_spinlock(make_arena) -> None:
    a = _arena(make_arena)
    cls = objlock_class(a, "ptlock", OBJ_SPIN)
    f = a.off("scratch")
    lk, kept = f + 256, f + 320
    a.atomic.store64(kept, 12345 << 16 | 2)            # "held" by someone else: not ours to touch
    dead = _die_holding(a, f, lambda: ObjSpinLock(a, cls, 1).lock(lk))
    assert I.held_locks(a, 1) == [(lk, 1)]             # on the dead CPU's robust list
    w = _waiter(a, f + 8, lambda: (ObjSpinLock(a, cls, 2).lock(lk), ObjSpinLock(a, cls, 2).unlock(lk)))
    _still_waiting(a, w, f + 8)
    released = release_embedded(a, dead, 1, [*I.held_locks(a, 1), (kept, 1)])
    assert released == [f"spin@{lk:#x}"]
    _joins(a, w, f + 8)
    assert a.atomic.load64(lk) == 0 and a.atomic.load64(kept) == 12345 << 16 | 2


@pytest.mark.parametrize("side", ["writer", "reader", "downgraded"])
def test_takeover_embedded_rwsem(make_arena, side: str) -> None:
    a = _arena(make_arena)
    cls = objlock_class(a, "&mm->mmap_lock", OBJ_RW)
    f = a.off("scratch")
    lk = f + 256
    if side == "writer":
        dead = _die_holding(a, f, lambda: ObjRWSem(a, cls, 1).down_write(lk))
        assert a.atomic.load64(lk) & RW_WRITER
        take = lambda: (ObjRWSem(a, cls, 2).down_read(lk), ObjRWSem(a, cls, 2).up_read(lk))
    elif side == "reader":
        dead = _die_holding(a, f, lambda: ObjRWSem(a, cls, 1).down_read(lk))
        assert a.atomic.load64(lk) == RW_READER_BIAS   # one anonymous reader: known from the list only
        take = lambda: (ObjRWSem(a, cls, 2).down_write(lk), ObjRWSem(a, cls, 2).up_write(lk))
    else:                                              # munmap's zap after mmap_write_downgrade
        def hold() -> None:
            h = ObjRWSem(a, cls, 1)
            h.down_write(lk)
            h.downgrade_write(lk)

        dead = _die_holding(a, f, hold)
        assert a.atomic.load64(lk) == RW_READER_BIAS
        take = lambda: (ObjRWSem(a, cls, 2).down_write(lk), ObjRWSem(a, cls, 2).up_write(lk))
    held = I.held_locks(a, 1)
    assert held == [(lk, HELD_WRITE if side == "writer" else HELD_READ)]
    w = _waiter(a, f + 8, take)
    _still_waiting(a, w, f + 8)
    assert release_embedded(a, dead, 1, held)
    _joins(a, w, f + 8)
    assert a.atomic.load64(lk) == 0
