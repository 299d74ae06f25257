"""`aerosync doctor`: a good scenario passes, an impossible one FAILs with the fix."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from aerosync import doctor
from aerosync.arena import segment
from aerosync.errors import UsageError

LOCK_STORM = str(Path(__file__).resolve().parent.parent / "scenarios" / "lock-storm.toml")


def _doctor(capsys: pytest.CaptureFixture[str], *overrides: str, scenario: str | None = LOCK_STORM) -> tuple[int, str]:
    rc = doctor.cmd_doctor(argparse.Namespace(scenario=scenario, set=list(overrides)))
    return rc, capsys.readouterr().out


def test_good_scenario_passes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _doctor(capsys, "machine.cpus=1", "machine.memory=4M")
    assert rc == 0, out
    assert "FAIL" not in out.replace("0 FAIL", "")
    for name in ("python", "/dev/shm", "cpus", "py-spy", "numa", "stale segments"):
        assert name in out


def test_host_only(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _doctor(capsys, scenario=None)
    assert rc == 0 and "this host" in out


def test_no_room_in_dev_shm_fails_with_fix(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment, "shm_free_bytes", lambda path=segment.SHM_DIR: 8 << 20)
    rc, out = _doctor(capsys, "machine.cpus=1", "machine.memory=64M")
    assert rc == 1
    line = next(ln for ln in out.splitlines() if "/dev/shm" in ln and "arena" in ln)
    assert line.split()[0] == "FAIL"
    assert "fix:" in out and "--shm-size" in out


def test_huge_memory_fails(capsys: pytest.CaptureFixture[str]) -> None:
    free = segment.shm_free_bytes()
    want_g = min(64, free // (1 << 30) + 2)
    if (want_g << 30) <= free:
        pytest.skip("/dev/shm is larger than the largest allowed machine.memory")
    rc, out = _doctor(capsys, "machine.cpus=1", f"machine.memory={want_g}G")
    assert rc == 1 and "FAIL" in out


def test_oversubscription_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    import os

    n = len(os.sched_getaffinity(0)) + 1
    rc, out = _doctor(capsys, f"machine.cpus={n}", "machine.memory=4M")
    assert rc == 0
    assert any(ln.split()[:2] == ["WARN", "cpus"] for ln in out.splitlines())


def test_ptrace_problem_is_reported(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import aerosync.pyspy

    monkeypatch.setattr(aerosync.pyspy, "ptrace_problem", lambda: "kernel.yama.ptrace_scope = 3 (faked)")
    rc, out = _doctor(capsys, scenario=None)
    assert rc == 0 and "SYS_PTRACE" in out and "ptrace_scope = 3" in out


def test_bad_scenario_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        doctor.run_checks(str(tmp_path / "missing.toml"))
