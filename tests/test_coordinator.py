"""Runs end to end: exact results, worker death, Ctrl-C, SIGKILL + cleanup, no leftovers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from aerosync import coordinator
from aerosync.arena.cleanup import find_project_objects
from aerosync.errors import WorkerDied
from aerosync.scenario import load_scenario
from workers.cpu import cpu_rng
from workers.workloads import registry

REPO = Path(__file__).resolve().parent.parent


def _scn(tmp_path: Path, body: str, *overrides: str):
    p = tmp_path / "s.toml"
    p.write_text(body)
    return load_scenario(p, registry(), overrides)


def _mine() -> list[str]:
    return [n for n, pid in find_project_objects() if pid == os.getpid()]


@pytest.mark.parametrize("spinlock", ["tas", "qspinlock"])
def test_lock_storm_ops_mode_exact(tmp_path: Path, spinlock: str) -> None:
    scn = _scn(tmp_path, '[run]\nworkload = "lock_storm"\nops = 30000\n[machine]\ncpus = 2\nmemory = "4M"\n'
                         f'[workload]\ncs_iters = 3\n[locks]\nspinlock = "{spinlock}"\n')
    from aerosync.arch import topology as topo

    config, _ = coordinator.plan_arena(scn, coordinator.build_machine(scn, topo.read_host()))
    assert config["locks"] == {"spinlock": spinlock, "classes": {}}       # what SpinLock reads
    res = coordinator.run(scn)
    d = res.to_dict()
    assert [c["ops"] for c in d["cpus"]] == [30000, 30000]
    assert d["workload"] == {"expected": 180000, "counted": 180000, "lost_updates": 0}
    assert all(c["state"] == "done" and c["pid"] > 0 for c in d["cpus"])
    lk = next(s for s in d["lock_stat"] if s["lock_class"] == "lock_storm_lock")
    assert lk["acquisitions"] == 60000
    env = d["environment"]
    for key in ("cpu_model", "allowed_cpus", "host_topology", "dev_shm_bytes", "python", "packages", "git_revision"):
        assert key in env
    assert d["scenario"]["run"]["ops"] == 30000
    assert _mine() == []


@pytest.mark.parametrize("spinlock", ["tas", "qspinlock"])
def test_oversubscribed_run_completes_and_says_so(tmp_path: Path, spinlock: str) -> None:
    n = len(os.sched_getaffinity(0)) + 1
    scn = _scn(tmp_path, f'[run]\nworkload = "lock_storm"\nops = 3000\n[machine]\ncpus = {n}\nmemory = "4M"\n'
                         f'[locks]\nspinlock = "{spinlock}"\n')
    res = coordinator.run(scn)
    assert res.workload["lost_updates"] == 0
    assert any("oversubscribed" in note for note in res.notes)


def test_counter_storm_counts_every_op(tmp_path: Path) -> None:
    for mode, fs in (("percpu", "false"), ("percpu", "true"), ("shared", "false")):
        scn = _scn(tmp_path, f'[run]\nworkload = "counter_storm"\nops = 20000\n[machine]\ncpus = 2\nmemory = "4M"\n'
                             f'[workload]\nmode = "{mode}"\nfalse_sharing = {fs}\n')
        res = coordinator.run(scn)
        assert res.workload == {"counted": 40000, "lost_updates": 0}


@pytest.mark.parametrize("mode,expect", [
    ("raise", "raised RuntimeError: fault injected on cpu1"),
    ("exit", "exit code 3"),
    ("sigkill", "killed by SIGKILL"),
    ("sigsegv", "killed by SIGSEGV"),
    ("die_holding_lock", "it held fault_lock[victim]"),
])
def test_worker_death_is_named(tmp_path: Path, mode: str, expect: str) -> None:
    # The run would last an hour: only noticing the death ends it (within the test timeout).
    scn = _scn(tmp_path, f'[run]\nworkload = "fault"\nduration = 3600\n[machine]\ncpus = 2\nmemory = "4M"\n'
                         f'[workload]\nmode = "{mode}"\ncpu = 1\nafter_ops = 2000\n')
    with pytest.raises(WorkerDied) as ei:
        coordinator.run(scn)
    e = ei.value
    assert e.cpu == 1 and e.pid > 0 and expect in str(e)
    if mode == "raise":
        assert "Traceback" in e.traceback and "fault.py" in e.traceback
    assert not psutil.pid_exists(e.pid) or psutil.Process(e.pid).status() == psutil.STATUS_ZOMBIE
    assert _mine() == []


def _spawn_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aerosync.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_segment(pid: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [n for n, p in find_project_objects() if p == pid]
        if names:
            return names[0]
        time.sleep(0.05)
    raise AssertionError("the run never created its arena")


def _workers_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _wait_running(name: str, timeout: float = 60) -> None:
    """Wait until the run passed its barrier (run_state GO)."""
    from aerosync.arena import layout as L
    from aerosync.arena.segment import Arena

    a = Arena.attach(name)
    try:
        deadline = time.monotonic() + timeout
        while a.atomic.load64(L.H_RUN_STATE) != L.RUN_GO:
            assert time.monotonic() < deadline, "run never started"
            time.sleep(0.02)
    finally:
        a.close()


@pytest.mark.parametrize("sig,code,spinlock", [(signal.SIGINT, 130, "tas"), (signal.SIGTERM, 143, "tas"),
                                               (signal.SIGTERM, 143, "qspinlock")])
def test_ctrl_c_stops_and_leaves_nothing(sig: int, code: int, spinlock: str) -> None:
    p = _spawn_cli("run", str(REPO / "scenarios/default.toml"), "--duration", "60", "--cpus", "2", "--no-save",
                   "--set", f"locks.spinlock={spinlock}")
    try:
        name = _wait_for_segment(p.pid)
        _wait_running(name)
        kids = _workers_of(p.pid)
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
        assert p.returncode == code, err
        assert "interrupted" in err
        assert not os.path.exists(f"/dev/shm/{name}")
        assert [f for f in os.listdir("/dev/shm") if name in f] == []          # its semaphores too
        _, alive = psutil.wait_procs(kids, timeout=10)
        assert [k for k in alive if k.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigkill_coordinator_then_cleanup() -> None:
    p = _spawn_cli("run", str(REPO / "scenarios/default.toml"), "--duration", "60", "--cpus", "2", "--no-save")
    try:
        name = _wait_for_segment(p.pid)
        _wait_running(name)
        kids = _workers_of(p.pid)
        assert kids
        p.kill()
        p.wait()
        # PDEATHSIG: the workers die with their coordinator.
        _, alive = psutil.wait_procs(kids, timeout=15)
        assert [k for k in alive if k.status() != psutil.STATUS_ZOMBIE] == []
        # Nobody could unlink it but a sweep: `aerosync cleanup` here, or the stale sweep
        # that every concurrent test's run starts with (pytest-xdist), which may win.
        present = os.path.exists(f"/dev/shm/{name}")
        out = subprocess.run([sys.executable, "-m", "aerosync.cli", "cleanup"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0
        if present and f"removed /dev/shm/{name}" not in out.stdout:
            assert "nothing stale" in out.stdout or name not in out.stdout
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cleanup_dry_run_and_live_segment_untouched(make_arena) -> None:
    live = make_arena()
    out = subprocess.run([sys.executable, "-m", "aerosync.cli", "cleanup", "--dry-run"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert live.name not in out.stdout
    assert os.path.exists(f"/dev/shm/{live.name}")


def test_cpu_streams_are_deterministic() -> None:
    a = [cpu_rng(7, 3).random() for _ in range(5)]
    b = [cpu_rng(7, 3).random() for _ in range(5)]
    c = [cpu_rng(7, 4).random() for _ in range(5)]
    assert a == b and a != c


def test_usage_error_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\nworkload = "lock_storm"\n[machine]\ncpus = 0\n')
    out = subprocess.run([sys.executable, "-m", "aerosync.cli", "run", str(bad)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "machine.cpus" in out.stderr and str(bad) in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "aerosync.cli", "run", str(tmp_path / "missing.toml")], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "missing.toml" in out.stderr


@pytest.mark.parametrize("spinlock", ["tas", "qspinlock"])
def test_watchdog_names_stuck_cpu_lock_and_owner(tmp_path: Path, spinlock: str) -> None:
    from aerosync.errors import SoftLockup

    scn = _scn(tmp_path, '[run]\nworkload = "fault"\nduration = 60\nwatchdog = 1.5\n'
                         '[machine]\ncpus = 2\nmemory = "4M"\n'
                         '[workload]\nmode = "stall_holding_lock"\ncpu = 0\nafter_ops = 500\n'
                         f'[locks]\nspinlock = "{spinlock}"\n')
    with pytest.raises(SoftLockup) as ei:
        coordinator.run(scn)
    e = ei.value
    text = str(e)
    assert "soft lockup" in text
    assert "fault_lock[victim]" in text
    assert "holding fault_lock[victim]" in text or "held by cpu0" in text
    if e.cpu == 1:            # the waiter is named first when both are stuck
        assert "waiting" in text and "held by cpu0" in text
    assert "--- stack of cpu" in text
    assert _mine() == []


def test_cleanup_removes_stale_and_keeps_live(tmp_path: Path) -> None:
    """A segment named after a dead pid and mapped by nobody is stale; one whose owner
    lives is not.  (Concurrent sweeps may remove the stale one first: both outcomes end
    with it gone.)"""
    import posix_ipc

    from aerosync.arena.cleanup import cleanup_stale

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = f"aerosync_{child.pid}_stale{os.getpid()}"
    live = f"aerosync_{os.getpid()}_live{os.getpid()}"
    for n in (dead, live):
        posix_ipc.SharedMemory("/" + n, posix_ipc.O_CREX, mode=0o600, size=4096).close_fd()
    try:
        removed = cleanup_stale(dry_run=True)
        assert live not in removed
        cleanup_stale()
        assert not os.path.exists(f"/dev/shm/{dead}")
        assert os.path.exists(f"/dev/shm/{live}")
    finally:
        for n in (dead, live):
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_shared_memory("/" + n)


def test_cleanup_removes_a_dead_runs_files_and_keeps_a_live_ones(tmp_path: Path) -> None:
    """A run's temporary file (a reclaim worker's dirty-mode backing file) named after an
    arena whose owner is dead and held open by nobody is stale; one of a live owner's
    arena, or still open, is not.  remove_run_files (a run's own end) takes its arena's."""
    from aerosync.arena.cleanup import cleanup_stale, remove_run_files

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = tmp_path / f"aerosync-dirty-aerosync_{child.pid}_abc-0-x1"
    dead_open = tmp_path / f"aerosync-dirty-aerosync_{child.pid}_abc-1-x2"
    live = tmp_path / f"aerosync-dirty-aerosync_{os.getpid()}_def-0-x3"
    other = tmp_path / f"aerosync_{child.pid}_not-a-run-file"
    for f in (dead, dead_open, live, other):
        f.write_bytes(b"x")
    def files(removed: list[str]) -> list[str]:           # (stale segments of other tests aside)
        return [n for n in removed if n.startswith("aerosync-")]

    with open(dead_open, "rb"):
        assert files(cleanup_stale(dry_run=True, tmp_dir=str(tmp_path))) == [dead.name]
        assert dead.exists()
        assert files(cleanup_stale(tmp_dir=str(tmp_path))) == [dead.name]
    assert not dead.exists() and dead_open.exists() and live.exists() and other.exists()
    assert remove_run_files(f"aerosync_{os.getpid()}_def", tmp_dir=str(tmp_path)) == [live.name]
    assert not live.exists() and dead_open.exists()


def test_duration_mode_counts_the_last_batch(tmp_path: Path) -> None:
    """Regression: the closing sample must come after the workers leave, or the ops of
    the batch each was in at STOP go missing from the totals."""
    scn = _scn(tmp_path, '[run]\nworkload = "counter_storm"\nduration = 0.6\n[machine]\ncpus = 2\nmemory = "4M"\n'
                         '[workload]\nmode = "shared"\n')
    res = coordinator.run(scn)
    assert res.workload["lost_updates"] == 0
    assert res.total_ops == res.workload["counted"] > 0
