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
