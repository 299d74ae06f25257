"""Locks in the arena: mutual exclusion across processes, ownership, dead owners,
reader-writer exclusion, seqcount retry, and lock_stat figures and format."""

from __future__ import annotations

import os
import re
import time

import pytest

from aerosync.arena import layout as L
from aerosync.errors import LockError, LockOwnerDead
from aerosync.sync import lockstat as LS
from aerosync.sync.rwlock import RWLock
from aerosync.sync.seqcount import SeqCount
from aerosync.sync.spinlock import CPU_COORD, SpinLock, force_unlock, locks_held_by
from tests import helpers

EXTRA = [L.SectionSpec("data", 4096)]


@pytest.fixture(params=["tas", "qspinlock"])
def locks(request: pytest.FixtureRequest) -> dict[str, str]:
    """The spinlock tests run for both kinds behind SpinLock (arena config `locks`)."""
    return {"spinlock": request.param}


def _wait_flag(a, off: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not a.atomic.load64(off):
        assert time.monotonic() < deadline, "child never raised its flag"
        time.sleep(0.001)


@pytest.mark.parametrize("nproc", [2, 3])
def test_L1_mutual_exclusion_across_processes(make_arena, spawn, nproc: int, soak: bool, locks) -> None:
    """N processes do a plain read-modify-write under the lock: the total is exact."""
    a = make_arena(nr_cpus=nproc, extra=EXTRA, lock_hold_sample=1, locks=locks)
    slot = LS.lock_alloc(a, "test_lock", "mutex")
    data = a.off("data")
    word, start = data, data + 64
    iters = 200_000 if soak else 20_000
    procs = [spawn(helpers.lock_increment, a.name, slot, c, iters, word, start) for c in range(nproc)]
    deadline = time.monotonic() + 60
    while a.atomic.load64(start) < nproc:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    a.atomic.store64(start, 1 << 32)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    # Attached processes exited: the resource tracker must not have unlinked the segment.
    assert os.path.exists(f"/dev/shm/{a.name}")
    assert a.u64[word >> 3] == nproc * iters
    st = next(s for s in LS.snapshot(a) if s.lock_class == "test_lock")
    assert st.acquisitions == nproc * iters
    assert st.hold_samples == nproc * iters           # hold_sample = 1: every hold timed
    assert st.hold_max >= st.hold_min > 0
    assert not SpinLock(a, slot, CPU_COORD).is_locked()
    if locks["spinlock"] == "qspinlock":               # nobody left in line, nobody registered asleep
        from aerosync.sync.qspinlock import Q_PENDING, Q_TAIL

        assert not a.atomic.load64(LS.slot_off(a, slot)) & (Q_PENDING | Q_TAIL)
        assert a.atomic.load32(LS.slot_off(a, slot) + LS.S_SLEEPERS) == 0
        assert st.contentions > 0


def test_L2_recursive_acquire_and_foreign_release_refused(make_arena, locks) -> None:
    a = make_arena(locks=locks)
    slot = LS.lock_alloc(a, "test_lock", "own")
    l0, l1 = SpinLock(a, slot, 0), SpinLock(a, slot, 1)
    l0.acquire()
    with pytest.raises(LockError, match="recursive"):
        l0.acquire()
    with pytest.raises(LockError, match="released by cpu1"):
        l1.release()
    assert l0.owner() == (0, os.getpid())
    l0.assert_held()
    with pytest.raises(LockError, match="not held"):
        l1.assert_held()
    l0.release()
    with pytest.raises(LockError):
        l0.release()


def test_bounce_counted_when_lock_moves_between_cpus(make_arena, locks) -> None:
    a = make_arena(lock_hold_sample=1, locks=locks)
    slot = LS.lock_alloc(a, "test_lock", "bounce")
    l0, l1 = SpinLock(a, slot, 0), SpinLock(a, slot, 1)
    for lk in (l0, l0, l1, l0, l1):
        lk.acquire()
        lk.release()
    st = LS.snapshot(a)[slot]
    assert st.acquisitions == 5
    assert st.acq_bounces == 3   # l1, l0, l1 took it from another CPU; the first ever does not count
    assert st.contentions == 0


def test_contention_measured_and_dead_owner_detected(make_arena, spawn, locks) -> None:
    a = make_arena(extra=EXTRA, locks=locks)
    slot = LS.lock_alloc(a, "test_lock", "victim")
    flag = a.off("data")
    p = spawn(helpers.hold_lock_then, a.name, slot, 1, flag, "hold", 0.3)
    _wait_flag(a, flag)
    lk = SpinLock(a, slot, 0)
    lk.acquire()                    # waits ~0.3 s: spin, yield, then sleep
    lk.release()
    p.join(30)
    st = LS.snapshot(a)[slot]
    assert st.contentions == 1 and st.con_bounces == 1
    assert st.wait_max >= 100_000_000           # waited at least 0.1 s (it held 0.3 s)
    assert st.sleeps > 0 and st.yields > 0

    a.atomic.store64(flag, 0)
    p = spawn(helpers.hold_lock_then, a.name, slot, 1, flag, "die", 0)
    _wait_flag(a, flag)
    p.join(30)
    assert [(s, c) for s, _, c in locks_held_by(a, p.pid)] == [(slot, 1)]
    with pytest.raises(LockOwnerDead) as ei:
        lk.acquire()
    assert ei.value.pid == p.pid and ei.value.cpu == 1
    assert "test_lock[victim]" in str(ei.value) and "held for" in str(ei.value)
    assert force_unlock(a, slot, a.atomic.load64(LS.slot_off(a, slot)))
    lk.acquire()
    lk.release()


def test_rwlock_readers_share_writers_exclude(make_arena) -> None:
    a = make_arena()
    slot = LS.lock_alloc(a, "test_rw", "rw", LS.LOCK_RW)
    r0, r1, w = RWLock(a, slot, 0), RWLock(a, slot, 1), RWLock(a, slot, CPU_COORD)
    r0.read_lock()
    r1.read_lock()
    assert r0.readers() == 2
    r0.read_unlock()
    r1.read_unlock()
    w.write_lock()
    assert w.write_locked()
    with pytest.raises(LockError, match="recursive"):
        w.write_lock()
    with pytest.raises(LockError):
        r0.write_unlock()
    w.write_unlock()
    with pytest.raises(LockError, match="no readers"):
        r0.read_unlock()


def test_rwlock_exclusion_across_processes(make_arena, spawn, soak: bool) -> None:
    a = make_arena(nr_cpus=3, extra=EXTRA)
    slot = LS.lock_alloc(a, "test_rw", "pair", LS.LOCK_RW)
    data, bad = a.off("data"), a.off("data") + 64
    n = 20_000 if soak else 3_000
    procs = [spawn(helpers.rw_writer, a.name, slot, 0, data, n),
             spawn(helpers.rw_reader, a.name, slot, 1, data, n, bad),
             spawn(helpers.rw_reader, a.name, slot, 2, data, n, bad)]
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert a.atomic.load64(bad) == 0
    assert a.u64[data >> 3] == n == a.u64[(data >> 3) + 1]
    st = LS.snapshot(a)[slot]
    assert st.acquisitions == n and st.r_acquisitions == 2 * n
    text = LS.render_lock_stat(LS.snapshot(a))
    assert "test_rw-W:" in text and "test_rw-R:" in text


def test_seqcount_forced_retry(make_arena) -> None:
    """Force the bad interleaving: a write lands between read_begin and read_retry."""
    a = make_arena(extra=EXTRA)
    seq = SeqCount(a, a.off("data"))
    s = seq.read_begin()
    seq.write_begin()
    assert seq.arena.atomic.load64(seq.off) & 1
    seq.write_end()
    assert seq.read_retry(s) is True
    s = seq.read_begin()
    assert seq.read_retry(s) is False
    with pytest.raises(LockError, match="no write_begin"):
        seq.write_end()


def test_seqcount_readers_never_see_torn_record(make_arena, spawn) -> None:
    a = make_arena(extra=EXTRA)
    seq_off, data = a.off("data"), a.off("data") + 64
    p = spawn(helpers.seq_writer, a.name, seq_off, data, 200_000)
    sc = SeqCount(a, seq_off)
    q, i = a.u64, data >> 3
    seen = 0
    while p.exitcode is None and seen < 200_000:
        x, y = sc.read(lambda: (q[i], q[i + 1]))
        assert y == 3 * x
        seen += 1
    p.join(60)
    assert p.exitcode == 0


_NUM = (r"\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
        r"\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def test_lock_stat_format_parses_back(make_arena, locks) -> None:
    a = make_arena(lock_hold_sample=1, locks=locks)
    s0 = LS.lock_alloc(a, "&zone->lock", "z0")
    s1 = LS.lock_alloc(a, "&zone->lock", "z1")
    LS.lock_alloc(a, "other", "o")
    for s in (s0, s1, s1):
        lk = SpinLock(a, s, 0)
        lk.acquire()
        lk.release()
    text = LS.render_lock_stat(LS.snapshot(a))
    lines = text.splitlines()
    assert lines[0] == "lock_stat version 0.4"
    assert "class name" in lines[2] and "holdtime-avg" in lines[2]
    m = re.search(r"^\s+&zone->lock:" + _NUM + "$", text, re.M)
    assert m, text
    assert int(m.group(8)) == 3                      # acquisitions summed over instances
    assert len(m.group(0).split(":")[0]) == 40       # %40s class column
    d = {x["lock_class"]: x for x in LS.lock_stat_dict(LS.snapshot(a))}
    assert d["&zone->lock"]["acquisitions"] == 3 and d["&zone->lock"]["instances"] == 2
    LS.clear_lock_stat(a)
    assert all(s.acquisitions == 0 for s in LS.snapshot(a))


def test_lockdep_refuses_wrong_order_and_same_class_nesting(make_arena, locks) -> None:
    from aerosync.sync.lockdep import LockOrderError, held_locks

    a = make_arena(lockdep=True, locks=locks)
    zone = SpinLock(a, LS.lock_alloc(a, "&zone->lock", "z0"), 0)
    zone1 = SpinLock(a, LS.lock_alloc(a, "&zone->lock", "z1"), 0)
    lst = SpinLock(a, LS.lock_alloc(a, "&n->list_lock", "n0"), 0)
    leaf = SpinLock(a, LS.lock_alloc(a, "test_leaf", "l"), 0)
    with lst, zone, leaf:                       # the documented order, and a leaf inside
        assert [h[0] for h in held_locks()] == ["&n->list_lock", "&zone->lock", "test_leaf"]
    with zone:
        with pytest.raises(LockOrderError, match="circular"):
            lst.acquire()                       # list_lock under zone->lock: ABBA waiting to happen
        with pytest.raises(LockOrderError, match="recursive"):
            zone1.acquire()                     # two zone locks never nest
    assert held_locks() == []
    assert not lst.is_locked() and not zone1.is_locked()   # refused before touching the word
    b = make_arena()                            # lockdep off: no check, no tracking
    z = SpinLock(b, LS.lock_alloc(b, "&zone->lock", "z"), 0)
    n = SpinLock(b, LS.lock_alloc(b, "&n->list_lock", "n"), 0)
    with z, n:
        assert held_locks() == []
