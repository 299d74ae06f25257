"""`aerosync profile`: raw-stack parsing, the SVG renderer, and a real py-spy run.

The real run is skipped (with the reason) where py-spy cannot trace; the fallback path
(no profiling, the run still happens) is exercised everywhere by faking the problem.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from aerosync import flamegraph, profile
from aerosync.pyspy import looks_like_permission_error, ptrace_problem

REPO = Path(__file__).resolve().parent.parent
LOCK_STORM = str(REPO / "scenarios" / "lock-storm.toml")
SMALL = ["machine.cpus=2", "run.duration=1.5", "machine.memory=4M", "run.warmup=0.2"]


# ----------------------------------------------------------------------------- renderer
def test_flamegraph_synthetic_rects_and_widths() -> None:
    stacks = {("a", "b"): 3, ("a", "c"): 1, ("d",): 4}
    svg = flamegraph.render_svg(stacks, "t", width=1000, min_width=0)
    rects = re.findall(r'<rect x="([\d.]+)" y="(\d+)" width="([\d.]+)"', svg)
    assert len(rects) == 5                      # all, a, b, c, d
    scale = (1000 - 2 * flamegraph.PAD_X) / 8
    widths = sorted(float(w) for _, _, w in rects)
    assert widths == sorted([8 * scale, 4 * scale, 3 * scale, 1 * scale, 4 * scale])
    assert "<title>b (3 samples, 37.50%)</title>" in svg
    assert "<title>all (8 samples, 100.00%)</title>" in svg
    # children sit left to right in name order inside their parent, one level up
    by_title = dict(re.findall(r"<title>(\w+) \(.*?</title><rect x=\"([\d.]+)\"", svg))
    assert float(by_title["a"]) == flamegraph.PAD_X < float(by_title["d"])
    assert float(by_title["c"]) == pytest.approx(float(by_title["b"]) + 3 * scale)


def test_flamegraph_min_width_and_colours() -> None:
    stacks = {("a",): 1000, ("tiny",): 1}
    svg = flamegraph.render_svg(stacks, "t", width=200, min_width=1.0)
    assert "tiny" not in svg and svg.count("<rect") == 2
    assert flamegraph.frame_color("f (x.py)") == flamegraph.frame_color("f (y.py)")     # by function name
    assert flamegraph.frame_color("spin_wait (s.py)").startswith("rgb(")
    assert flamegraph.render_svg({}, "empty").endswith("</svg>\n")


def test_parse_collapsed() -> None:
    got = flamegraph.parse_collapsed(["a;b 2\n", "a;b 3\n", "junk\n", "c 1"])
    assert got == {("a", "b"): 5, ("c",): 1}


# ----------------------------------------------------------------------------- raw stacks
RAW = [
    'process 10:"";run (aerosync/coordinator.py:10);wait (x.py:1) 5\n',
    'process 10:"";process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=6)'
    ' --multiprocessing-fork";_run (workers/cpu.py:134);batch (w.py:65);spin_wait (s.py:74) 3\n',
    'process 10:"";process 11:"python -c a; b";_run (workers/cpu.py:134);batch (w.py:66) 2\n',
    'process 10:"";process 12:"python -c x; y";main (multiprocessing/resource_tracker.py:1) 4\n',
    'process 10:"";process 13:"" 1\n',
]


def test_split_raw_line_handles_semicolons_in_cmdlines() -> None:
    s = profile.split_raw_line(RAW[1])
    assert s is not None
    assert s.pids == (10, 11) and s.count == 3
    assert s.frames == ("_run (workers/cpu.py:134)", "batch (w.py:65)", "spin_wait (s.py:74)")
    only = profile.split_raw_line(RAW[4])
    assert only is not None and only.pids == (10, 13) and only.frames == ()
    assert profile.split_raw_line("no count here") is None


def test_build_profile_maps_pids_and_merges_lines() -> None:
    prof = profile.build_profile([profile.split_raw_line(r) for r in RAW], {"11": 0})
    assert prof.labels() == ["cpu0", "coordinator", "other"]
    assert prof.total("cpu0") == 5 and prof.total("coordinator") == 5 and prof.total("other") == 5
    # line numbers dropped: both batch lines are one function
    assert Counter(f for st in prof.by_label["cpu0"] for f in st)["batch (w.py)"] == 2
    shares = profile.lock_wait_shares(prof.by_label["cpu0"])
    assert shares["spin_wait"] == pytest.approx(0.6) and shares["lock_wait"] == pytest.approx(0.6)
    text = profile.summary_text(prof, "t", 100)
    assert "cpu0 (pid 11): 5 samples" in text and "spin_wait 60.0%" in text
    sc = profile.speedscope(prof, "t")
    assert [p["type"] for p in sc["profiles"]] == ["sampled"] * 3
    names = [f["name"] for f in sc["shared"]["frames"]]
    cpu0 = sc["profiles"][0]
    assert sum(cpu0["weights"]) == cpu0["endValue"] == 5
    assert any(names[i] == "spin_wait" for s in cpu0["samples"] for i in s)


def test_permission_text_is_recognised() -> None:
    assert looks_like_permission_error("Error: Permission Denied (os error 13)")
    assert looks_like_permission_error("Operation not permitted")
    assert not looks_like_permission_error("Wrote raw flamegraph data to raw.txt. Samples: 300 Errors: 0")


# ----------------------------------------------------------------------------- real runs
def test_profile_run_has_workload_and_lock_frames(tmp_path: Path) -> None:
    problem = ptrace_problem()
    if problem is not None:
        pytest.skip(f"py-spy cannot trace on this host: {problem}")
    rc = profile.profile_scenario(LOCK_STORM, tmp_path, rate=100, overrides=SMALL)
    assert rc == 0
    for name in ("flame-cpu0.svg", "flame-cpu1.svg", "flame-all.svg", "summary.txt", "result.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "<rect" in (tmp_path / "flame-cpu0.svg").read_text()
    sc = json.loads((tmp_path / "profile.speedscope.json").read_text())
    names = [f["name"] for f in sc["shared"]["frames"]]
    cpu_profiles = [p for p in sc["profiles"] if p["name"].startswith("cpu")]
    assert len(cpu_profiles) == 2 and all(p["type"] == "sampled" for p in cpu_profiles)
    in_cpus = {names[i] for p in cpu_profiles for s in p["samples"] for i in s}
    assert "make_batch.<locals>.batch" in in_cpus
    assert in_cpus & {"spin_wait", "yield_wait", "sleep_wait", "SpinLock._make.<locals>.acquire"}
    assert "lock waiting:" in (tmp_path / "summary.txt").read_text()


def test_profile_without_ptrace_still_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    why = "kernel.yama.ptrace_scope = 3 forbids ptrace entirely (faked by the test)"
    monkeypatch.setattr(profile, "ptrace_problem", lambda: why)
    rc = profile.profile_scenario(LOCK_STORM, tmp_path, overrides=[*SMALL[:1], "run.duration=0.5",
                                                                   "machine.memory=4M", "run.warmup=0.1"])
    assert rc == 0
    assert json.loads((tmp_path / "result.json").read_text())["pid_map"]
    assert not list(tmp_path.glob("*.svg"))
    err = capsys.readouterr().err
    assert "cannot profile" in err and "ptrace_scope" in err


def test_profile_parser_and_bad_rate() -> None:
    import argparse

    from aerosync.errors import UsageError

    p = argparse.ArgumentParser()
    profile.add_profile_parser(p.add_subparsers())
    args = p.parse_args(["profile", LOCK_STORM, "--rate", "0", "--set", "run.duration=1"])
    assert args.func is profile.cmd_profile and args.set == ["run.duration=1"]
    with pytest.raises(UsageError, match="--rate"):
        profile.cmd_profile(args)
