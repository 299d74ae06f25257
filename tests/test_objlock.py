"""Embedded locks (sync/objlock.py): OL1 mutual exclusion across processes, OL2 owner-only
release, OL3 per-CPU class statistics summed into /proc/lock_stat, the wait hook."""

from __future__ import annotations

import pytest

from aerosync.arena import layout as L
from aerosync.errors import LockError
from aerosync.sync import lockstat
from aerosync.sync import waithook as W
from aerosync.sync.lockclass import OBJ_RW, OBJ_SPIN, objlock_class, objlock_section
from aerosync.sync.objlock import RW_WAITERS, RW_WRITER, ObjRWSem, ObjSpinLock
from tests import vm_helpers as H


def _arena(make_arena, nr_cpus: int = 3):
    return make_arena(nr_cpus=nr_cpus, nr_pages=16, extra=[objlock_section(nr_cpus), L.SectionSpec("scratch", 4096)])


def test_OL1_spin_mutual_exclusion_across_processes(make_arena, spawn) -> None:
    a = _arena(make_arena)
    cls = objlock_class(a, "ptlock", OBJ_SPIN)
    base = a.off("scratch")
    lock_off, data_off, start_off = base, base + 64, base + 128
    iters = 3000
    procs = [spawn(H.objspin_increment, a.name, cls, c, iters, lock_off, data_off, start_off) for c in range(3)]
    while a.atomic.load64(start_off) < 3:
        pass
    a.atomic.fetch_add64(start_off, 1 << 32)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert a.u64[data_off >> 3] == 3 * iters
    assert a.atomic.load64(lock_off) == 0
    st = {s.lock_class: s for s in lockstat.aggregate_by_class(lockstat.snapshot(a))}
    assert st["ptlock"].acquisitions == 3 * iters
    assert "ptlock:" in lockstat.render_lock_stat(lockstat.snapshot(a))


def test_OL1_rwsem_readers_never_see_a_torn_write(make_arena, spawn) -> None:
    a = _arena(make_arena)
    cls = objlock_class(a, "&mm->mmap_lock", OBJ_RW)
    base = a.off("scratch")
    lock_off, data_off, bad_off, start_off = base, base + 64, base + 128, base + 192
    procs = [spawn(H.objrw_writer, a.name, cls, 0, lock_off, data_off, 2000, start_off),
             spawn(H.objrw_reader, a.name, cls, 1, lock_off, data_off, 4000, bad_off, start_off),
             spawn(H.objrw_reader, a.name, cls, 2, lock_off, data_off, 4000, bad_off, start_off)]
    while a.atomic.load64(start_off) < 3:
        pass
    a.atomic.fetch_add64(start_off, 1 << 32)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert a.u64[bad_off >> 3] == 0
    assert a.u64[data_off >> 3] == 2000
    assert a.atomic.load64(lock_off) == 0
    rows = {s.lock_class: s for s in lockstat.aggregate_by_class(lockstat.snapshot(a))}
    s = rows["&mm->mmap_lock"]
    assert s.acquisitions == 2000 and s.r_acquisitions == 8000
    text = lockstat.render_lock_stat(lockstat.snapshot(a))
    assert "&mm->mmap_lock-W:" in text and "&mm->mmap_lock-R:" in text


def test_OL2_only_the_owner_releases(make_arena) -> None:
    a = _arena(make_arena)
    spin = objlock_class(a, "ptlock", OBJ_SPIN)
    rw = objlock_class(a, "vm_lock", OBJ_RW)
    off = a.off("scratch")
    l0, l1 = ObjSpinLock(a, spin, 0), ObjSpinLock(a, spin, 1)
    l0.lock(off)
    with pytest.raises(LockError):
        l1.unlock(off)
    with pytest.raises(LockError, match="recursive"):
        l0.lock(off)
    assert l0.held_by_me(off) and not l1.held_by_me(off)
    assert not l1.trylock(off)
    l0.unlock(off)
    assert l1.trylock(off)
    l1.unlock(off)
    r0, r1 = ObjRWSem(a, rw, 0), ObjRWSem(a, rw, 1)
    o2 = off + 64
    r0.down_write(o2)
    with pytest.raises(LockError):
        r1.up_write(o2)
    assert not r1.down_read_trylock(o2) and not r1.down_write_trylock(o2)
    r0.up_write(o2)
    with pytest.raises(LockError, match="no readers"):
        r1.up_read(o2)
    assert r1.down_read_trylock(o2) and r0.down_read_trylock(o2)
    assert not r0.down_write_trylock(o2)
    r1.up_read(o2)
    r0.up_read(o2)
    assert a.atomic.load64(o2) == 0
    r0.down_write(o2)
    with pytest.raises(LockError, match="not write-held"):
        r1.downgrade_write(o2)                 # only the writer downgrades its hold
    r0.downgrade_write(o2)
    assert not r0.write_held_by_me(o2) and r1.down_read_trylock(o2) and not r1.down_write_trylock(o2)
    r1.up_read(o2)
    r0.up_read(o2)
    assert a.atomic.load64(o2) == 0


def test_wait_hook_runs_while_waiting(make_arena) -> None:
    """A CPU waiting for a lock answers its IPIs: the hook runs inside the wait loop,
    and here it is the hook that releases the lock (a forced order of events)."""
    a = _arena(make_arena)
    rw = objlock_class(a, "&mm->mmap_lock", OBJ_RW)
    off = a.off("scratch")
    holder, waiter = ObjRWSem(a, rw, 0), ObjRWSem(a, rw, 1)
    holder.down_write(off)
    calls = []

    def hook() -> None:
        calls.append(1)
        if len(calls) == 5:
            holder.up_write(off)

    old = W.set_wait_hook(hook)
    try:
        waiter.down_read(off)
    finally:
        W.set_wait_hook(old)
    assert len(calls) >= 5
    waiter.up_read(off)
    # the contention is counted on the waiter's CPU, read side
    s = {x.lock_class: x for x in lockstat.aggregate_by_class(lockstat.snapshot(a))}["&mm->mmap_lock"]
    assert s.r_contentions == 1 and s.r_wait_total > 0


def test_writer_waiting_stops_new_readers(make_arena) -> None:
    a = _arena(make_arena)
    rw = objlock_class(a, "vm_lock", OBJ_RW)
    off = a.off("scratch")
    r0, r1 = ObjRWSem(a, rw, 0), ObjRWSem(a, rw, 1)
    r0.down_read(off)
    a.atomic.fetch_or64(off, RW_WAITERS)       # a writer is queued (RWSEM_FLAG_WAITERS)
    assert not r1.down_read_trylock(off)
    a.atomic.fetch_and64(off, ~RW_WAITERS & ((1 << 64) - 1))
    assert r1.down_read_trylock(off)
    r0.up_read(off)
    r1.up_read(off)
    assert r0.down_write_trylock(off) and a.atomic.load64(off) == RW_WRITER
    r0.up_write(off)
