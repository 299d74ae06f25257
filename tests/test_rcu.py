"""RCU (sync/rcu.py): R1 a deferred free waits for every reader that may hold the object,
R2 rcu_barrier leaves nothing pending; a dead reader's word is cleared by rcu_cpu_dead."""

from __future__ import annotations

import time

import pytest

from aerosync.arena import layout as L
from aerosync.errors import AeroSyncError
from aerosync.sync import rcu as R
from tests import vm_helpers as H


def _arena(make_arena, nr_cpus: int = 2):
    a = make_arena(nr_cpus=nr_cpus, nr_pages=16, extra=[R.rcu_section(nr_cpus), L.SectionSpec("scratch", 4096)])
    R.rcu_init(a)
    return a


def test_R1_free_waits_for_a_reader_in_another_process(make_arena, spawn) -> None:
    a = _arena(make_arena)
    flag, release = a.off("scratch"), a.off("scratch") + 64
    p = spawn(H.rcu_reader_hold, a.name, 1, flag, release)
    deadline = time.monotonic() + 30
    while a.atomic.load64(flag) != 1:
        assert time.monotonic() < deadline and p.exitcode is None
        time.sleep(0.001)
    r = R.Rcu(a, 0)
    freed: list[int] = []
    r.call_rcu(freed.append, 7)            # unlinked while cpu1 reads: it may hold it
    for _ in range(5):
        assert r.poll() == 0
    assert freed == [] and r.nr_pending() == 1
    a.atomic.store64(release, 1)
    while a.atomic.load64(flag) != 2:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert r.poll() == 1 and freed == [7]
    p.join(10)
    assert p.exitcode == 0


def test_R1_reader_entering_after_the_unlink_does_not_hold_it(make_arena) -> None:
    a = _arena(make_arena)
    r0, r1, r2 = R.Rcu(a, 0), R.Rcu(a, 1), R.Rcu(a, 1)
    freed: list[str] = []
    r1.read_lock()                              # an old reader: may hold what is unlinked now
    r0.call_rcu(freed.append, "old")            # tagged with the current epoch
    assert r0.poll() == 0                       # the old reader pins it
    r1.read_unlock()
    a.atomic.fetch_add64(a.off("rcu"), 1)       # another CPU's reclaim moved the epoch on
    r2.read_lock()                              # a reader entering now cannot have seen it
    assert r0.poll() == 1 and freed == ["old"]
    r2.read_unlock()


def test_nesting_and_barrier(make_arena) -> None:
    a = _arena(make_arena)
    r = R.Rcu(a, 0)
    out: list[int] = []
    r.read_lock()
    r.read_lock()
    r.read_unlock()
    with pytest.raises(AeroSyncError, match="inside an RCU read-side section"):
        r.synchronize()
    r.read_unlock()
    for i in range(R.RCU_BATCH + 5):
        r.call_rcu(out.append, i)
    r.barrier()                                 # R2
    assert out == list(range(R.RCU_BATCH + 5)) and r.nr_pending() == 0


def test_dead_reader_is_cleared(make_arena) -> None:
    a = _arena(make_arena)
    r0, r1 = R.Rcu(a, 0), R.Rcu(a, 1)
    r1.read_lock()                              # cpu1 "dies" inside its section
    out: list[int] = []
    r0.call_rcu(out.append, 1)
    assert r0.poll() == 0
    R.rcu_cpu_dead(a, 1)
    assert r0.poll() == 1 and out == [1]
