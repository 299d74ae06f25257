"""arch/cpu.py: allowed CPUs, cgroup quota, pinning, PDEATHSIG, and pid liveness."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sys
from pathlib import Path

import pytest

from aerosync.arch import cpu as C
from aerosync.errors import AeroSyncError


def test_allowed_cpus_is_affinity() -> None:
    assert C.allowed_cpus() == tuple(sorted(os.sched_getaffinity(0)))


# --- cgroup quota -------------------------------------------------------------------------

@pytest.mark.parametrize("text,cpus", [
    ("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000", 1.5),
    ("50000 100000", 0.5), ("max", None), ("", None), ("garbage here", None), ("100000", 1.0),
])
def test_parse_cpu_max(text: str, cpus: float | None) -> None:
    assert C.parse_cpu_max(text) == cpus


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_cpu_quota_v2_nested_takes_minimum(tmp_path: Path) -> None:
    cg, proc = tmp_path / "cgroup", tmp_path / "proc"
    _write(proc, "self/cgroup", "0::/user.slice/job\n")
    _write(cg, "cgroup.controllers", "cpu memory\n")
    _write(cg, "user.slice/cpu.max", "150000 100000\n")
    _write(cg, "user.slice/job/cpu.max", "max 100000\n")
    assert C.cpu_quota(str(cg), str(proc)) == 1.5
    _write(cg, "user.slice/job/cpu.max", "50000 100000\n")
    assert C.cpu_quota(str(cg), str(proc)) == 0.5


def test_cpu_quota_v2_unlimited(tmp_path: Path) -> None:
    cg, proc = tmp_path / "cgroup", tmp_path / "proc"
    _write(proc, "self/cgroup", "0::/\n")
    _write(cg, "cgroup.controllers", "cpu\n")
    assert C.cpu_quota(str(cg), str(proc)) is None
    _write(cg, "cpu.max", "max 100000\n")
    assert C.cpu_quota(str(cg), str(proc)) is None


def test_cpu_quota_v1(tmp_path: Path) -> None:
    cg, proc = tmp_path / "cgroup", tmp_path / "proc"
    _write(proc, "self/cgroup", "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    _write(cg, "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "200000\n")
    _write(cg, "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    _write(cg, "cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    _write(cg, "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert C.cpu_quota(str(cg), str(proc)) == 2.0


def test_cpu_quota_v1_container_view(tmp_path: Path) -> None:
    """No cgroup namespace: /proc/self/cgroup names a host path; the mount root is ours."""
    cg, proc = tmp_path / "cgroup", tmp_path / "proc"
    _write(proc, "self/cgroup", "3:cpu:/docker/abc\n")
    _write(cg, "cpu/cpu.cfs_quota_us", "300000\n")
    _write(cg, "cpu/cpu.cfs_period_us", "100000\n")
    assert C.cpu_quota(str(cg), str(proc)) == 3.0


def test_cpu_quota_unknown(tmp_path: Path) -> None:
    assert C.cpu_quota(str(tmp_path / "none"), str(tmp_path / "none")) is None
    q = C.cpu_quota()       # the real host: whatever it is, it is a number or None
    assert q is None or q > 0


def test_cpu_model(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example 9000\n")
    assert C.cpu_model(str(tmp_path)) == "Example 9000"
    (tmp_path / "cpuinfo").write_text("processor\t: 0\n")
    assert C.cpu_model(str(tmp_path))           # falls back to platform.processor() or "unknown"
    assert C.cpu_model()


# --- pinning ------------------------------------------------------------------------------

def _pin_child(cpu: int) -> None:
    """Spawned child: pin, verify independently, report by exit status."""
    C.pin_to(cpu)
    sys.exit(0 if os.sched_getaffinity(0) == {cpu} else 3)


def test_pin_to_in_child() -> None:
    cpu = C.allowed_cpus()[-1]
    proc = mp.get_context("spawn").Process(target=_pin_child, args=(cpu,))
    proc.start()
    try:
        proc.join(60)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
    assert os.sched_getaffinity(0) == set(C.allowed_cpus())    # the parent is untouched


def test_pin_to_not_allowed() -> None:
    allowed = C.allowed_cpus()
    bad = max(allowed) + 1
    before = os.sched_getaffinity(0)
    with pytest.raises(C.PinError) as info:
        C.pin_to(bad)
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, AeroSyncError)
    assert err.cpu == bad and err.allowed == allowed
    assert f"cpu {bad}" in str(err) and C.format_cpulist(allowed) in str(err)
    assert os.sched_getaffinity(0) == before
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err)


# --- prctl --------------------------------------------------------------------------------

def _pdeath_child(ppid: int) -> None:
    C.die_with_parent(ppid)
    C.set_proc_title("aerosync-test-cpu")
    sys.exit(0)


def test_die_with_parent_and_title_in_child() -> None:
    ctx = mp.get_context("spawn")
    ok = ctx.Process(target=_pdeath_child, args=(os.getpid(),))
    wrong = ctx.Process(target=_pdeath_child, args=(1,))     # "parent already gone": exits 1
    procs = [ok, wrong]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert ok.exitcode == 0
        assert wrong.exitcode == 1
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()


def test_set_proc_title_never_raises() -> None:
    # Changing our own title would confuse the test runner's output; the child test covers
    # the real call.  An absurd title must still not raise.
    pid = os.fork()
    if pid == 0:
        try:
            C.set_proc_title("x" * 10_000 + "\u00e9")
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- proc_alive ---------------------------------------------------------------------------

def test_parse_stat_comm_with_parens_and_spaces() -> None:
    fields = ["S"] + [str(i) for i in range(4, 22)] + ["987654"] + ["0"] * 30
    text = "1234 (evil) name (x)) " + " ".join(fields) + "\n"
    assert C._parse_stat(text) == ("S", 987654)
    with pytest.raises(ValueError):
        C._parse_stat("1234 (short) S 1 2")


def test_proc_alive_self() -> None:
    me = os.getpid()
    start = C.proc_starttime(me)
    assert start is not None
    assert C.proc_alive(me)
    assert C.proc_alive(me, start)
    assert not C.proc_alive(me, start + 1)       # another start time: the pid was reused
    assert not C.proc_alive(0) and not C.proc_alive(-5)
    assert C.proc_starttime(0) is None


def test_proc_alive_reaped_child() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert not C.proc_alive(pid)


def test_proc_alive_zombie() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os._exit(0)
    try:
        os.close(w)
        os.read(r, 1)            # EOF: the child has exited (its write end closed on exit)
        # Until waitpid the child is a zombie; /proc shows it in state Z shortly after exit.
        for _ in range(10_000):
            text = Path(f"/proc/{pid}/stat").read_text()
            if C._parse_stat(text)[0] in "ZX":
                break
            os.sched_yield()
        assert not C.proc_alive(pid)
        assert C.proc_starttime(pid) is not None     # the pid still exists, as a zombie
    finally:
        os.close(r)
        os.waitpid(pid, 0)
