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
