"""The defects found when AeroSync was tried as a new user would (issue 13): one test each.

Each test names the defect it guards in its docstring; the scenario fuzzer (the "input
that cannot hurt" part) is tests/test_scenario_fuzz.py and the import-circle check is in
tests/test_layers.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------- scripts/_venv.sh

_FAKE_PYTHON = r"""#!/bin/bash
# A stand-in interpreter: passes the version probe, makes a venv (a copy of itself),
# and logs pip calls (failing them when FAKE_PIP_FAIL is set).
if [ "$1" = "-c" ]; then exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  dir="${@: -1}"; mkdir -p "$dir/bin"; cp "$0" "$dir/bin/python"; exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "pip $*" >> "$FAKE_PIP_LOG"
  if [ -n "${FAKE_PIP_FAIL:-}" ] && [[ " $* " == *" -e "* ]]; then
    echo "ERROR: fake pip cannot install"; exit 1
  fi
  exit 0
fi
exit 3
"""

_PYENV_SHIM = """#!/bin/bash
echo "pyenv: $(basename "$0"): command not found" >&2
echo "" >&2
echo "The \\`$(basename "$0")' command exists in these Python versions:" >&2
exit 127
"""


def _exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _source_venv(root: Path, shims: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(root), "FAKE_PIP_LOG": str(root / "pip.log"), **env}
    return subprocess.run(["bash", "-c", f'source "{root}/scripts/_venv.sh"'], capture_output=True, text=True,
                          env=full, timeout=60)


def test_venv_setup_is_silent_unless_it_installs(tmp_path: Path) -> None:
    """Defect: every scripts/run printed pyenv's complaints from the interpreter probe
    (python3.13: command not found ...) even with .venv in place.  Set-up must say
    nothing when nothing changes, one line when it (re)installs, pip's output only when
    installing fails."""
    root, shims = tmp_path / "clone", tmp_path / "shims"
    (root / "scripts").mkdir(parents=True)
    shims.mkdir()
    shutil.copy(REPO / "scripts" / "_venv.sh", root / "scripts" / "_venv.sh")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\n')
    for v in ("python3.13", "python3.12"):
        _exe(shims / v, _PYENV_SHIM)
    _exe(shims / "python3.11", _FAKE_PYTHON)

    first = _source_venv(root, shims)                      # a fresh clone
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert len(first.stderr.splitlines()) == 1, first.stderr
    assert "installing aerosync[test,profile]" in first.stderr and "python3.11" in first.stderr
    assert "pyenv" not in first.stderr
    assert "install --disable-pip-version-check -e" in (root / "pip.log").read_text()

    again = _source_venv(root, shims)                      # nothing changed
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")

    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    changed = _source_venv(root, shims)
    assert changed.returncode == 0
    assert changed.stderr.count("\n") == 1 and "pyproject.toml or extras changed" in changed.stderr

    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "3"\n')
    failed = _source_venv(root, shims, FAKE_PIP_FAIL="1")
    assert failed.returncode == 1
    assert "ERROR: fake pip cannot install" in failed.stderr and "installing into" in failed.stderr
    assert _source_venv(root, shims, FAKE_PIP_FAIL="1").returncode == 1   # no stamp after a failure


def test_scripts_run_is_quiet_with_pyenv_shims_on_path(tmp_path: Path) -> None:
    """The same defect through the README command itself, with the project's real .venv."""
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in this checkout (the suite runs from ./scripts/test, which makes it)")
    shims = tmp_path / "shims"
    shims.mkdir()
    for v in ("python3.13", "python3.12", "python3.11", "python3"):
        _exe(shims / v, _PYENV_SHIM)
    env = {**os.environ, "PATH": f"{shims}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    out = subprocess.run([str(REPO / "scripts" / "run"), "cleanup", "--dry-run", "--quiet"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_license_is_an_spdx_string() -> None:
    """Defect: installing warned that project.license as a table is deprecated."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    # The SPDX string form needs setuptools >= 77 to build.
    assert any(r.replace(" ", "").startswith("setuptools>=") and int(r.split(">=")[1].split(".")[0]) >= 77
               for r in meta["build-system"]["requires"])


# ------------------------------------------------------------------------ free_area plot


@pytest.mark.parametrize("nr_orders", [11, 16])
def test_free_area_orders_have_distinct_colours(nr_orders: int) -> None:
    """Defect: the free_area plot drew 11 orders with a 10-colour cycle, so order 0 and
    order 10 shared a colour.  Every order's line must differ in colour (up to
    MAX_PAGE_ORDER = 15, 16 orders)."""
    from matplotlib.colors import to_hex

    from aerosync.report.plots import free_area_figure

    result = {"scenario": {"name": "s", "run": {"workload": "page_storm"}}, "simulated_topology": {"nr_cpus": 2},
              "mm": {"free_area_samples": [{"t": t, "free": [[1] * nr_orders]} for t in (0.0, 0.1)]}}
    lines = free_area_figure(result).axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == [f"order {o}" for o in range(nr_orders)]
    colours = [to_hex(ln.get_color()) for ln in lines]
    assert len(set(colours)) == nr_orders, colours


# --------------------------------------------------------------------------- aerosync bench


def test_bench_reports_a_figure_it_cannot_measure_as_skipped(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: `aerosync bench --json` printed nothing at all when py-spy was missing.
    The figure is reported as skipped with the reason; every other figure is printed,
    as JSON and as text."""
    import types

    import aerosync.bench as bench
    from aerosync.bench import profiling
    from aerosync.cli import main

    monkeypatch.setattr(profiling, "pyspy_path", lambda: None)
    monkeypatch.setattr(profiling, "ptrace_problem", lambda: "py-spy is not installed: pip install py-spy")
    suite = types.SimpleNamespace(GROUPS={
        "pyspy": profiling.GROUPS["pyspy"],
        "cheap": (lambda: {"cheap_ns": 7.0}, [("cheap_ns", "ns", "reported")]),
    })
    monkeypatch.setattr(bench, "_suites", lambda: {"profiling": suite})

    assert main(["bench", "profiling", "--json", "--repeat", "2"]) == 0
    figs = json.loads(capsys.readouterr().out)["profiling"]
    assert figs["pyspy_overhead_pct"]["skipped"] == "py-spy is not installed: pip install py-spy"
    assert figs["pyspy_overhead_pct"]["target"] == "<= 10"
    assert figs["cheap_ns"]["median"] == 7.0 and figs["cheap_ns"]["n"] == 2

    assert main(["bench", "profiling", "--repeat", "1"]) == 0
    text = capsys.readouterr().out
    assert "pyspy_overhead_pct" in text and "skipped: py-spy is not installed" in text
    assert "cheap_ns" in text


def test_an_interrupt_behind_a_groups_error_stops_the_bench(monkeypatch, capsys) -> None:
    """Defect (seen as a flake of the test below under load): a SIGTERM that arrived in a
    group whose clean-up then raised (coordinator.run stopping its workers) was counted as
    that group's failure; the bench went on and exited 1.  It stops, exit 128 + 15."""
    import types

    from aerosync import bench
    from aerosync.cli import main
    from aerosync.errors import Terminated

    def interrupted() -> dict[str, float]:
        try:
            raise Terminated()
        except KeyboardInterrupt:
            raise RuntimeError("workers would not stop") from None

    ran: list[str] = []

    def after() -> dict[str, float]:
        ran.append("after")
        return {"y": 1.0}

    fake = types.SimpleNamespace(GROUPS={"g": (interrupted, [("x", "ns", "reported")]),
                                         "h": (after, [("y", "ns", "reported")])})
    monkeypatch.setattr(bench, "_suites", lambda: {"fake": fake})
    assert main(["bench", "fake", "--repeat", "1"]) == 143
    assert "interrupted (signal 15)" in capsys.readouterr().err
    assert ran == []


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_during_a_bench_phase_removes_its_arena(sig: int, code: int) -> None:
    """Defect: `aerosync bench` stopped by SIGTERM in a phase outside coordinator.run
    (atomics, spinlock, arena) exited 143 silently and left its /dev/shm segment.  The
    foundation suite opens with the atomics phase, whose arena the bench makes itself."""
    from aerosync.arena.cleanup import find_project_objects

    p = subprocess.Popen([sys.executable, "-m", "aerosync.cli", "bench", "foundation", "--repeat", "1"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not [n for n, pid in find_project_objects() if pid == p.pid]:
            assert p.poll() is None and time.monotonic() < deadline, "the bench never made an arena"
            time.sleep(0.002)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode == code, err
        assert f"interrupted (signal {int(sig)})" in err
        assert [n for n, pid in find_project_objects() if pid == p.pid] == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- aerosync stat


@pytest.mark.parametrize("cmd", ["stat buddyinfo", "top --once"])
def test_stat_of_a_missing_arena_is_a_usage_error(cmd: str) -> None:
    """Defect: `aerosync stat ... --arena <a segment that does not exist>` exited 1, not 2."""
    name = f"aerosync_{os.getpid()}_nosuch"
    out = subprocess.run([sys.executable, "-m", "aerosync.cli", *cmd.split(), "--arena", name], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"no segment named {name!r}" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------------------ watchdog


def test_watchdog_says_a_sigstopped_worker_is_stopped(tmp_path: Path) -> None:
    """Defect: a worker stopped by SIGSTOP showed py-spy's Rust backtrace in the watchdog
    report.  The report says the process is stopped (state T) instead."""
    from aerosync import coordinator
    from aerosync.arena import layout as L
    from aerosync.arena.cleanup import find_project_objects
    from aerosync.errors import SoftLockup
    from aerosync.params import CPU_AREA_SIZE
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    p = tmp_path / "stop.toml"
    p.write_text('[run]\nworkload = "null"\nduration = 60\nwatchdog = 1.0\n[machine]\ncpus = 2\nmemory = "4M"\n')
    scn = load_scenario(p, registry())
    stopped: list[int] = []

    def on_tick(arena, samples) -> None:
        if not stopped:
            pid = arena.u64[(arena.off("cpu") + 1 * CPU_AREA_SIZE + L.CPU_PID) >> 3]
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)

    with pytest.raises(SoftLockup) as ei:
        coordinator.run(scn, on_tick=on_tick)
    text = str(ei.value)
    assert ei.value.cpu == 1 and ei.value.pid == stopped[0]
    assert "the process is stopped (state T: SIGSTOP or SIGTSTP)" in text
    assert "Stack backtrace" not in text and "Failed to suspend process" not in text
    assert [n for n, pid in find_project_objects() if pid == os.getpid()] == []


# ---------------------------------------------------------------- scenario error messages


def _run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`aerosync run ARGS` in this process; (exit status, stderr).  Every case here fails
    its checks before anything is created."""
    from aerosync.cli import main

    rc = main(["run", *args, "--no-save"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _scenario(tmp_path: Path, body: str) -> str:
    p = tmp_path / "s.toml"
    p.write_text(body)
    return str(p)


_STORM = '[run]\nworkload = "page_storm"\nduration = 1\n[machine]\ncpus = 1\nmemory = "8M"\n'


def test_a_bad_set_value_is_blamed_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: a bad value given with --set (numa.policy=interleave=0-7, checked against
    the machine's nodes) was blamed on the scenario file instead of the command line."""
    f = _scenario(tmp_path, _STORM)
    rc, err = _run_cli(capsys, f, "--set", "numa.policy=interleave=0-7")
    assert rc == 2
    assert err.startswith("aerosync run: <command line>: numa.policy = 'interleave=0-7': "), err
    rc, err = _run_cli(capsys, _scenario(tmp_path, _STORM + '[numa]\npolicy = "interleave=0-7"\n'))
    assert rc == 2 and err.startswith(f"aerosync run: {f}: numa.policy = 'interleave=0-7': "), err


def test_set_syntax_message_lists_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: the --set syntax message listed only run, machine and workload though numa
    and slab were accepted.  It names every section the parser accepts (its own table,
    so sections added later appear too)."""
    from aerosync import scenario

    rc, err = _run_cli(capsys, str(REPO / "scenarios" / "default.toml"), "--set", "policy=local")
    assert rc == 2 and "<command line>: policy = 'policy=local'" in err
    sections = [k for k in scenario._TOP_KEYS if k not in scenario._SCALAR_KEYS]
    assert {"run", "machine", "numa", "slab", "workload"} <= set(sections)
    assert f"with section one of {', '.join(sections)} " in err, err


def test_a_bad_workload_parameter_names_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: a bad workload parameter named the whole [workload] table as the key
    instead of workload.orders."""
    rc, err = _run_cli(capsys, _scenario(tmp_path, _STORM + "[workload]\norders = [0, 11]\n"))
    assert rc == 2
    assert f"{tmp_path / 's.toml'}: workload.orders = [0, 11]: a non-empty list of orders 0..10" in err, err
    rc, err = _run_cli(capsys, _scenario(tmp_path, _STORM), "--set", "workload.max_held=0")
    assert rc == 2 and "<command line>: workload.max_held = 0: allowed 1..65536" in err, err


def test_cpu_not_allowed_names_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: "CPU not allowed" named neither file nor key."""
    bad = max(os.sched_getaffinity(0)) + 1
    f = _scenario(tmp_path, _STORM.replace("cpus = 1", f"cpus = [0, {bad}]"))
    rc, err = _run_cli(capsys, f)
    assert rc == 2
    assert f"{f}: machine.cpus = [0, {bad}]: host CPU ids this process may use" in err, err
    assert f"CPU {bad} is not allowed" in err
    rc, err = _run_cli(capsys, _scenario(tmp_path, _STORM), "--cpus", f"[{bad}]")
    assert rc == 2 and f"<command line>: machine.cpus = [{bad}]:" in err, err


def test_shm_too_small_names_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: "/dev/shm too small" named neither file nor key."""
    from aerosync.arena import segment
    from aerosync.arena.cleanup import find_project_objects

    monkeypatch.setattr(segment, "shm_free_bytes", lambda path="/dev/shm": 4 << 20)
    f = _scenario(tmp_path, _STORM)
    rc, err = _run_cli(capsys, f)
    assert rc == 2
    assert f"{f}: machine.memory = '8M': a memory that fits in /dev/shm: arena needs" in err, err
    rc, err = _run_cli(capsys, f, "--set", "machine.memory=16M")
    assert rc == 2 and "<command line>: machine.memory = '16M'" in err, err
    assert [n for n, pid in find_project_objects() if pid == os.getpid()] == []


# ------------------------------------------------------------------- where results go


@pytest.mark.parametrize("case", ["runs_dir_is_a_file", "output_dir_missing"])
def test_output_paths_are_checked_before_the_run(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: `--runs-dir <an existing file>` and `--output <missing dir>/x.json` ended in
    a traceback after the whole run, results lost.  Both are refused before the run."""
    from aerosync import coordinator
    from aerosync.cli import main

    def no_run(*a: object, **k: object) -> None:
        raise AssertionError("the run started before its output paths were checked")

    monkeypatch.setattr(coordinator, "run", no_run)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    scn = str(REPO / "scenarios" / "null.toml")
    if case == "runs_dir_is_a_file":
        rc = main(["run", scn, "--runs-dir", str(a_file)])
        expect = f"--runs-dir {a_file}: is a file, not a directory; allowed: a directory"
    else:
        rc = main(["run", scn, "--no-save", "--output", str(tmp_path / "nope" / "x.json")])
        expect = f"--output {tmp_path / 'nope' / 'x.json'}: directory {tmp_path / 'nope'} does not exist"
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


_TINY = '[run]\nworkload = "null"\nduration = 0.4\n[machine]\ncpus = 1\nmemory = "4M"\n'


def test_a_run_whose_results_cannot_be_saved_keeps_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Same defect, after the run: the summary comes first, then where the results went,
    or why they could not be saved and where a copy went instead."""
    from aerosync.cli import main
    from aerosync.report import rundir

    def disk_full(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir, "write_run_dir", disk_full)
    out_json = tmp_path / "x.json"
    rc = main(["run", _scenario(tmp_path, _TINY), "--runs-dir", str(tmp_path / "runs"), "--output", str(out_json)])
    cap = capsys.readouterr()
    assert rc == 1
    assert cap.out.startswith("AeroSync run: s (workload null)") and f"result written to {out_json}" in cap.out
    assert json.loads(out_json.read_text())["total_ops"] > 0
    assert "the run directory could not be written under" in cap.err and "No space left on device" in cap.err
    fallback = Path(cap.err.split("the result is saved in ")[1].split(" instead")[0])
    try:
        assert json.loads(fallback.read_text())["total_ops"] == json.loads(out_json.read_text())["total_ops"]
    finally:
        fallback.unlink()


def _wait_running(pid: int, timeout: float = 60) -> str:
    """The arena of the run `pid` coordinates, once the run passed its barrier."""
    from aerosync.arena import layout as L
    from aerosync.arena.cleanup import find_project_objects
    from aerosync.arena.segment import Arena

    deadline = time.monotonic() + timeout
    while not (names := [n for n, p in find_project_objects() if p == pid and not n.startswith("sem.")]):
        assert time.monotonic() < deadline, "the run never created its arena"
        time.sleep(0.02)
    a = Arena.attach(names[0])
    try:
        while a.atomic.load64(L.H_RUN_STATE) != L.RUN_GO:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.02)
    finally:
        a.close()
    return names[0]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_saves_what_it_measured(sig: int, code: int, tmp_path: Path) -> None:
    """Defect: a run stopped by Ctrl-C or SIGTERM saved nothing.  It saves what was
    measured, marked interrupted; compare and stat --result read it, and still read a
    result from before the field existed."""
    runs = tmp_path / "runs"
    p = subprocess.Popen([sys.executable, "-m", "aerosync.cli", "run", str(REPO / "scenarios" / "null.toml"),
                          "--duration", "60", "--cpus", "2", "--runs-dir", str(runs)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        name = _wait_running(p.pid)
        time.sleep(0.5)                                   # a few samples
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == code, err
    assert f"interrupted (signal {int(sig)})" in err
    assert not os.path.exists(f"/dev/shm/{name}")
    assert "INTERRUPTED" in out and "run saved in" in out
    (run_dir,) = runs.iterdir()
    d = json.loads((run_dir / "result.json").read_text())
    assert d["interrupted"] is True and d["total_ops"] > 0 and len(d["samples"]) >= 3
    assert any(n.startswith(f"interrupted by {signal.Signals(sig).name}") for n in d["notes"])
    assert d["mm_check"]["ok"]

    old = dict(d)
    del old["interrupted"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    cmp_ = subprocess.run([sys.executable, "-m", "aerosync.cli", "compare", str(tmp_path / "old.json"), str(run_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert cmp_.returncode == 0, cmp_.stderr
    assert f"note: {run_dir} was interrupted" in cmp_.stdout and "old.json was interrupted" not in cmp_.stdout
    for res in (run_dir, tmp_path / "old.json"):
        st = subprocess.run([sys.executable, "-m", "aerosync.cli", "stat", "buddyinfo", "--result", str(res)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
        assert st.returncode == 0 and "Node 0" in st.stdout, st.stderr


def test_sigterm_to_profile_stops_its_run_cleanly(tmp_path: Path) -> None:
    """The same defect through `aerosync profile`, whose run is a child (under py-spy):
    a SIGTERM sent to the profile command reaches only it, so it passes the signal on to
    the run, which removes its arena and saves what it measured."""
    import psutil

    from aerosync.arena.cleanup import find_project_objects

    p = subprocess.Popen([sys.executable, "-m", "aerosync.cli", "profile", str(REPO / "scenarios" / "null.toml"),
                          "--set", "run.duration=60", "--set", "run.warmup=0", "--set", "machine.cpus=1",
                          "--out", str(tmp_path / "prof")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            kids = {c.pid for c in psutil.Process(p.pid).children(recursive=True)}
            arenas = [(n, pid) for n, pid in find_project_objects() if pid in kids and not n.startswith("sem.")]
            if arenas:
                break
            assert p.poll() is None and time.monotonic() < deadline, "the profiled run never made its arena"
            time.sleep(0.05)
        name, run_pid = arenas[0]
        _wait_running(run_pid)
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 143, err
        assert not os.path.exists(f"/dev/shm/{name}")
        assert not psutil.pid_exists(run_pid) or psutil.Process(run_pid).status() == psutil.STATUS_ZOMBIE
        assert json.loads((tmp_path / "prof" / "result.json").read_text())["interrupted"] is True
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
