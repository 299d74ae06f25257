"""Child-process bodies for the virtual-memory and embedded-lock tests (module level, so
spawn can import them).  Each attaches the arena by name, does its part, and exits."""

from __future__ import annotations

import time

from aerosync.arena.segment import Arena


def _barrier(a: Arena, start_off: int) -> None:
    a.atomic.fetch_add64(start_off, 1)
    while a.atomic.load64(start_off) < 1 << 32:      # the parent opens the gate
        time.sleep(0.0005)


def objspin_increment(name: str, cls: int, cpu: int, iters: int, lock_off: int, data_off: int,
                      start_off: int) -> None:
    """OL1: a racy read-modify-write of one word is safe only under mutual exclusion."""
    from aerosync.sync.objlock import ObjSpinLock

    a = Arena.attach(name)
    lk = ObjSpinLock(a, cls, cpu)
    lock, unlock, q, i = lk.lock, lk.unlock, a.u64, data_off >> 3
    _barrier(a, start_off)
    for n in range(iters):
        lock(lock_off)
        v = q[i]
        if n % 97 == 0:
            time.sleep(0)
        q[i] = v + 1
        unlock(lock_off)
    del lk, lock, unlock, q
    a.close()


def objrw_writer(name: str, cls: int, cpu: int, lock_off: int, data_off: int, iters: int, start_off: int) -> None:
    """Keep two words equal under the write side."""
    from aerosync.sync.objlock import ObjRWSem

    a = Arena.attach(name)
    rw = ObjRWSem(a, cls, cpu)
    q, i = a.u64, data_off >> 3
    _barrier(a, start_off)
    for n in range(1, iters + 1):
        rw.down_write(lock_off)
        q[i] = n
        if n % 32 == 0:
            time.sleep(0)
        q[i + 1] = n
        rw.up_write(lock_off)
    del rw, q
    a.close()


def objrw_reader(name: str, cls: int, cpu: int, lock_off: int, data_off: int, iters: int, bad_off: int,
                 start_off: int) -> None:
    """Count torn pairs seen under the read side (must stay 0)."""
    from aerosync.sync.objlock import ObjRWSem

    a = Arena.attach(name)
    rw = ObjRWSem(a, cls, cpu)
    q, i = a.u64, data_off >> 3
    _barrier(a, start_off)
    for _ in range(iters):
        rw.down_read(lock_off)
        x, y = q[i], q[i + 1]
        rw.up_read(lock_off)
        if x != y:
            a.atomic.fetch_add64(bad_off, 1)
    del rw, q
    a.close()


def rcu_reader_hold(name: str, cpu: int, flag_off: int, release_off: int) -> None:
    """Enter a read-side section, raise a flag, stay until told to leave."""
    from aerosync.sync.rcu import Rcu

    a = Arena.attach(name)
    r = Rcu(a, cpu)
    r.read_lock()
    a.atomic.store64(flag_off, 1)
    while not a.atomic.load64(release_off):
        time.sleep(0.001)
    r.read_unlock()
    a.atomic.store64(flag_off, 2)
    del r
    a.close()


def objrw_queue_in_turn(name: str, cls: int, cpu: int, lock_off: int, seq_off: int, turn: int, log_off: int,
                        report_off: int, write: bool, timeout_ns: int) -> None:
    """Wait for `turn`, then take the rwsem (queueing behind whoever holds it), append
    cpu + 1 to the log at log_off (count, then entries), release, and report this
    process's hand-off events at report_off + 64 * cpu (wlock, rlock hand-offs + 1)."""
    from aerosync.sync import objlock as O
    from tests.helpers import Sequencer

    a = Arena.attach(name)
    O.RW_WAIT_TIMEOUT_NS = timeout_ns
    rw = O.ObjRWSem(a, cls, cpu)
    Sequencer(a, seq_off).wait_turn(turn)
    (rw.down_write if write else rw.down_read)(lock_off)
    i = a.atomic.fetch_add64(log_off, 1)
    a.atomic.store64(log_off + 8 * (1 + i), cpu + 1)
    (rw.up_write if write else rw.up_read)(lock_off)
    a.atomic.store64(report_off + 64 * cpu, O.LOCK_EVENTS["rwsem_wlock_handoff"] + 1)
    a.atomic.store64(report_off + 64 * cpu + 8, O.LOCK_EVENTS["rwsem_rlock_handoff"] + 1)
    del rw
    a.close()


def objrw_storm(name: str, cls: int, cpu: int, lock_off: int, data_off: int, iters: int, start_off: int,
                report_off: int, write_every: int, hold_iters: int, timeout_ns: int) -> None:
    """Mixed storm: every `write_every`-th operation writes two equal words (holding the
    lock for hold_iters loop rounds), the others read them (torn pairs counted at
    report + 16).  Reports ops done (+0) and the hand-off events seen (+8)."""
    from aerosync.sync import objlock as O

    a = Arena.attach(name)
    O.RW_WAIT_TIMEOUT_NS = timeout_ns
    rw = O.ObjRWSem(a, cls, cpu)
    q, i = a.u64, data_off >> 3
    rep = report_off + 64 * cpu
    _barrier(a, start_off)
    for n in range(iters):
        if n % write_every == 0:
            rw.down_write(lock_off)
            v = q[i] + 1
            q[i] = v
            for _ in range(hold_iters):
                pass
            q[i + 1] = v
            rw.up_write(lock_off)
        else:
            rw.down_read(lock_off)
            x, y = q[i], q[i + 1]
            rw.up_read(lock_off)
            if x != y:
                a.atomic.fetch_add64(rep + 16, 1)
    a.atomic.store64(rep, iters)
    a.atomic.store64(rep + 8, O.LOCK_EVENTS["rwsem_wlock_handoff"] + O.LOCK_EVENTS["rwsem_rlock_handoff"])
    del rw, q
    a.close()


def objrw_wait_forever(name: str, cls: int, cpu: int, lock_off: int, write: bool) -> None:
    """Queue on a lock someone else holds and wait (the parent kills us while queued)."""
    from aerosync.sync.objlock import ObjRWSem

    a = Arena.attach(name)
    rw = ObjRWSem(a, cls, cpu)
    (rw.down_write if write else rw.down_read)(lock_off)
    time.sleep(60)


def objspin_storm(name: str, cls: int, cpu: int, lock_off: int, data_off: int, iters: int, start_off: int,
                  report_off: int, hold_iters: int) -> None:
    """ObjSpinLock storm: a racy increment under the lock, held for hold_iters rounds;
    reports ops (+0) and the reservations this CPU made (+8)."""
    from aerosync.sync import objlock as O

    a = Arena.attach(name)
    lk = O.ObjSpinLock(a, cls, cpu)
    q, i = a.u64, data_off >> 3
    _barrier(a, start_off)
    for _ in range(iters):
        lk.lock(lock_off)
        v = q[i]
        for _ in range(hold_iters):
            pass
        q[i] = v + 1
        lk.unlock(lock_off)
    a.atomic.store64(report_off + 64 * cpu, iters)
    a.atomic.store64(report_off + 64 * cpu + 8, O.LOCK_EVENTS["spin_pending"])
    del lk, q
    a.close()
