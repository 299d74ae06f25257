"""The arena segment: header, validation, /dev/shm room, tracker hygiene, views."""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from aerosync.arena import layout as L
from aerosync.arena import segment
from aerosync.arena.segment import Arena
from aerosync.errors import ArenaError, ArenaMismatch, ShmSpaceError
from aerosync.params import ARENA_MAGIC, LAYOUT_VERSION, PAGE_META_SIZE, PAGE_SIZE


def test_header_fields_and_sections(make_arena) -> None:
    a = make_arena(nr_cpus=3, nr_pages=64)
    q = a.u64
    assert a.atomic.load64(L.H_MAGIC) == ARENA_MAGIC
    assert a.u32[L.H_VERSION >> 2] == LAYOUT_VERSION
    assert a.u32[L.H_PAGE_SIZE >> 2] == PAGE_SIZE
    assert q[L.H_OWNER_PID >> 3] == os.getpid()
    assert q[L.H_OWNER_START >> 3] > 0
    assert q[L.H_CREATED >> 3] > 0
    assert set(a.sections) == {"cpu", "errtext", "locks", "qnodes", "intentlog", "pagemeta", "physmem"}
    assert a.sections["intentlog"][1] == L.intent_log_size(3)
    assert a.sections["qnodes"][1] == L.qnode_count(3) * 64 and a.nr_sems == 0   # TAS only: no semaphores
    for off, size in a.sections.values():
        assert off % PAGE_SIZE == 0 and off + size <= a.size
    assert a.sections["pagemeta"][1] == 64 * PAGE_META_SIZE
    assert a.sections["physmem"][1] == 64 * PAGE_SIZE
    assert a.config["nr_cpus"] == 3


def test_sections_do_not_overlap() -> None:
    lay = L.build_layout([*L.base_sections(4, 1000), L.SectionSpec("x", 100, 64), L.SectionSpec("y", 5000)])
    spans = sorted(lay.sections.values())
    for (o1, s1), (o2, _) in itertools.pairwise(spans):
        assert o1 + s1 <= o2
    assert spans[0][0] >= L.HEADER_SIZE
    with pytest.raises(ValueError):
        L.build_layout([L.SectionSpec("x", 1), L.SectionSpec("x", 1)])
    with pytest.raises(ValueError):
        L.build_layout([L.SectionSpec("x", 1, align=48)])


def test_segment_mode_is_0600(make_arena) -> None:
    a = make_arena()
    mode = os.stat(f"/dev/shm/{a.name}").st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_attach_sees_same_bytes(make_arena) -> None:
    a = make_arena()
    b = Arena.attach(a.name, expect_hash=a.config_hash)
    try:
        a.atomic.store64(a.off("cpu"), 1234)
        assert b.atomic.load64(b.off("cpu")) == 1234
        assert b.sections == a.sections and b.config == a.config
    finally:
        b.close()


def test_attach_refuses_config_hash_mismatch(make_arena) -> None:
    a = make_arena()
    with pytest.raises(ArenaMismatch) as ei:
        Arena.attach(a.name, expect_hash=a.config_hash ^ 1)
    assert ei.value.field == "config_hash" and a.name in str(ei.value)


def test_attach_refuses_bad_magic_and_version(make_arena) -> None:
    a = make_arena()
    a.atomic.store64(L.H_MAGIC, 0x1234)
    with pytest.raises(ArenaMismatch, match="magic"):
        Arena.attach(a.name)
    a.atomic.store64(L.H_MAGIC, ARENA_MAGIC)
    a.u32[L.H_VERSION >> 2] = LAYOUT_VERSION + 1
    with pytest.raises(ArenaMismatch, match="layout_version"):
        Arena.attach(a.name)


def test_attach_missing_segment_is_clear() -> None:
    with pytest.raises(ArenaError, match="no segment named"):
        Arena.attach("aerosync_0_doesnotexist")


def test_no_room_in_dev_shm_fails_before_creating(monkeypatch) -> None:
    monkeypatch.setattr(segment, "shm_free_bytes", lambda path="/dev/shm": 8 << 20)
    name = segment.new_name("room")
    with pytest.raises(ShmSpaceError) as ei:
        Arena.create({"x": 1}, L.base_sections(1, 4096), name=name)
    assert ei.value.asked > ei.value.free
    assert "MiB" in str(ei.value) and "/dev/shm" in str(ei.value)
    assert not os.path.exists(f"/dev/shm/{name}")


def test_other_interpreter_attaching_does_not_unlink(make_arena) -> None:
    """pitfalls 1.1: a separate interpreter that attaches and exits must leave the segment
    and print no resource-tracker warnings."""
    a = make_arena()
    code = ("import sys; from aerosync.arena.segment import Arena; "
            f"b = Arena.attach({a.name!r}); b.close(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert "leaked" not in out.stderr and "resource_tracker" not in out.stderr
    assert os.path.exists(f"/dev/shm/{a.name}")


def test_close_releases_views_and_refuses_live_arrays(make_arena) -> None:
    a = make_arena()
    arr = a.array("pagemeta", np.uint64)
    arr[:4] = 9
    with pytest.raises(ArenaError, match="still alive"):
        a.close()
    del arr
    a.close()
    a.close()  # idempotent


def test_array_bounds_checked(make_arena) -> None:
    a = make_arena(nr_pages=4)
    with pytest.raises(ValueError, match="overruns"):
        a.array("pagemeta", np.uint64, count=10_000)


def test_semaphores_live_and_die_with_the_segment() -> None:
    """A queued-spinlock arena owns one named semaphore per MCS node: made by create(),
    opened by attachers on first use, removed by unlink() with the segment."""
    cfg = {"nr_cpus": 2, "locks": {"spinlock": "tas", "classes": {"&zone->lock": "qspinlock"}}}
    a = Arena.create(cfg, L.base_sections(2, 4))
    try:
        n = L.qnode_count(2)
        assert a.nr_sems == n == L.nr_semaphores(cfg)
        names = sorted(f for f in os.listdir("/dev/shm") if f.startswith(f"sem.{a.name}."))
        assert len(names) == n and all(f.startswith("sem.aerosync_") for f in names)   # cleanup finds them
        b = Arena.attach(a.name)
        try:
            assert b.nr_sems == n
            b.semaphore(n - 1).release()               # a post in one process ...
            a.semaphore(n - 1).acquire(5)              # ... wakes a waiter in another
            with pytest.raises(ArenaError, match="no #"):
                b.semaphore(n)
        finally:
            b.close()
    finally:
        a.close()
        a.unlink()
    assert not [f for f in os.listdir("/dev/shm") if a.name in f]


def test_semaphore_creation_failure_leaves_nothing() -> None:
    import posix_ipc

    name = segment.new_name("semfail")
    clash = posix_ipc.Semaphore(L.sem_name(name, 3), posix_ipc.O_CREX, initial_value=0)
    try:
        with pytest.raises(ArenaError, match="already exists"):
            Arena.create({"nr_cpus": 1, "locks": {"spinlock": "qspinlock"}}, L.base_sections(1, 4), name=name)
        left = sorted(f for f in os.listdir("/dev/shm") if name in f)
        assert left == [f"sem.{name}.s3"]              # only the clash we made ourselves
    finally:
        clash.unlink()
        clash.close()
