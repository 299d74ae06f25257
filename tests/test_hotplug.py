"""CPU hotplug of a live run (aerosync/hotplug.py, workers/cpu.py, mm/cpuhp.py): bad
[[events]] input, hotplug during cross-CPU frees with the checkers after (both spinlock
kinds), counters exact across it (ops, lock_stat, vmstat), and `aerosync hotplug`
against a live run.  Invariant of every run here: the checkers pass (H1 included: an
offline CPU holds nothing), nothing is corrupt or leaked, nothing is left in /dev/shm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aerosync import cli, coordinator
from aerosync.arena import layout as L
from aerosync.arena.cleanup import find_project_objects
from aerosync.arena.segment import Arena
from aerosync.errors import ScenarioError
from aerosync.hotplug import check_events
from aerosync.scenario import load_scenario
from workers.workloads import registry

REPO = Path(__file__).resolve().parent.parent


def _scn(tmp_path: Path, body: str, *overrides: str) -> Any:
    p = tmp_path / "s.toml"
    p.write_text(body)
    return load_scenario(p, registry(), overrides)


def _mine() -> list[str]:
    return [n for n, pid in find_project_objects() if pid == os.getpid()]


def _events(*evs: tuple[float, int, str]) -> str:
    return "".join(f'[[events]]\nat = {at}\ncpu = {cpu}\naction = "{act}"\n' for at, cpu, act in evs)


_BASE = '[run]\nworkload = "slub_churn"\nduration = 3.0\n[machine]\ncpus = 3\nmemory = "16M"\n'


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("tail,key,allowed", [
    ('events = 3\n', "events", "an array of tables"),
    ('[events]\nat = 1\n', "events", "an array of tables"),
    ('events = [1]\n', "events[0]", "an array of tables"),
    ('[[events]]\nat = 1\ncpu = 1\n', "events[0].action", "required in every [[events]] table"),
    ('[[events]]\nat = 1\ncpu = 1\naction = "offline"\nwhen = 2\n', "events[0].when", "known [[events]] keys"),
    ('[[events]]\nat = -1\ncpu = 1\naction = "offline"\n', "events[0].at", "finite number >= 0"),
    ('[[events]]\nat = true\ncpu = 1\naction = "offline"\n', "events[0].at", "finite number >= 0"),
    ('[[events]]\nat = 5\ncpu = 1\naction = "offline"\n', "events[0].at", "< run.duration (3)"),
    ('[[events]]\nat = 1\ncpu = "cpu1"\naction = "offline"\n', "events[0].cpu", "a simulated CPU id"),
    ('[[events]]\nat = 1\ncpu = 1\naction = "down"\n', "events[0].action", '"offline" or "online"'),
])
def test_bad_events_are_named(tmp_path: Path, tail: str, key: str, allowed: str) -> None:
    with pytest.raises(ScenarioError) as ei:       # a top-level key goes before the tables
        _scn(tmp_path, tail + _BASE if tail.startswith("events =") else _BASE + tail)
    e = ei.value
    assert e.key == key and allowed in e.allowed and e.file == str(tmp_path / "s.toml")


@pytest.mark.parametrize("evs,key,why", [
    ([(1, 3, "offline")], "events[0].cpu", "cpu3 does not exist (simulated CPUs 0..2)"),
    ([(1, 0, "offline")], "events[0].cpu", "cpu0 is the boot CPU"),
    ([(1, 1, "online")], "events[0].action", "cpu1 is already online"),
    ([(2, 1, "offline"), (1, 1, "online")], "events[0].action", "cpu1 is already online"),   # time order
    ([(1, 1, "offline"), (2, 1, "offline")], "events[1].action", "cpu1 is already offline"),
])
def test_events_checked_against_the_machine(tmp_path: Path, evs: list, key: str, why: str) -> None:
    """Before anything is created: the CPU ids and the offline/online order, in time order."""
    scn = _scn(tmp_path, _BASE + _events(*evs))
    with pytest.raises(ScenarioError) as ei:
        check_events(scn, 3)
    assert ei.value.key == key and why in ei.value.allowed


def test_events_the_machine_allows(tmp_path: Path) -> None:
    check_events(_scn(tmp_path, _BASE + _events((1, 1, "offline"), (2, 1, "online"), (2.5, 1, "offline"),
                                                 (2.6, 2, "offline"), (2.7, 1, "online"))), 3)


def test_bad_event_on_the_command_line_exits_2_and_creates_nothing(tmp_path: Path, capsys: Any) -> None:
    p = tmp_path / "s.toml"
    p.write_text(_BASE + _events((0.5, 5, "offline")))
    assert cli.main(["run", str(p), "--no-save"]) == 2
    err = capsys.readouterr().err
    assert "events[0].cpu" in err and "cpu5 does not exist" in err and str(p) in err
    assert _mine() == []


def test_scenario_round_trip_keeps_events(tmp_path: Path) -> None:
    from aerosync.scenario import scenario_hash, scenario_to_dict, with_overrides

    scn = _scn(tmp_path, _BASE + _events((2, 1, "online"), (1, 1, "offline")))
    assert [(e.at, e.cpu, e.action) for e in scn.events] == [(1.0, 1, "offline"), (2.0, 1, "online")]
    assert scenario_to_dict(scn)["events"] == [{"at": 1.0, "cpu": 1, "action": "offline"},
                                               {"at": 2.0, "cpu": 1, "action": "online"}]
    again = with_overrides(scn, registry(), ["run.seed=2"])
    assert again.events == scn.events
    assert scenario_hash(scn) != scenario_hash(_scn(tmp_path, _BASE))
    with pytest.raises(ScenarioError) as ei:             # a shorter run leaves an event after its end
        with_overrides(scn, registry(), ["run.duration=1.5"])
    assert ei.value.key == "events[1].at" and ei.value.file == "<command line>"


# ------------------------------------------------------------------ live runs
def _children() -> list[str]:
    import psutil

    return [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]


def _run_checked(scn: Any) -> dict[str, Any]:
    """A run whose checkers pass and after which nothing is left: no segment, no worker,
    no hotplug standby (conftest would kill a stray one; this says it was there)."""
    res = coordinator.run(scn)
    d = res.to_dict()
    assert d["mm_check"]["ok"], d["mm_check"]["violations"]
    assert _mine() == [] and _children() == []
    return d


def _ran(d: dict[str, Any], expect: list[tuple[int, str]], at_least: int = 1) -> list[dict[str, Any]]:
    """The events as scheduled; none refused; those that ran are a prefix (a loaded box's
    run may end before the last ones' turn: skipped), at least `at_least` of them; each
    CPU's final state follows from them."""
    log = d["hotplug"]
    assert [(e["cpu"], e["action"]) for e in log] == expect
    assert not [e for e in log if "refused" in e], log
    ran = [e for e in log if "skipped" not in e]
    assert ran == log[: len(ran)] and len(ran) >= at_least, log
    online = set(range(len(d["cpus"])))
    for e in ran:
        (online.discard if e["action"] == "offline" else online.add)(e["cpu"])
    assert {c["cpu"]: c["state"] for c in d["cpus"]} == {c: "done" if c in online else "offline"
                                                         for c in range(len(d["cpus"]))}
    return ran


@pytest.mark.parametrize("spinlock", ["tas", "qspinlock"])
def test_hotplug_during_cross_cpu_frees(tmp_path: Path, spinlock: str) -> None:
    """slub_churn hands half its frees to the next CPU (remote frees into the slabs of the
    CPU going offline and back, and from it); cpu1 and cpu2 go offline and come back,
    then cpu1 again.  A CPU coming up takes a second or more here (a new process): events
    for it wait their turn, and what the run's end cut off is reported as not run."""
    scn = _scn(tmp_path, '[run]\nworkload = "slub_churn"\nduration = 3.5\nwarmup = 0\n'
                         '[machine]\ncpus = 3\nmemory = "16M"\n[workload]\ncross_cpu_pct = 50\nmax_held = 128\n'
                         f'[locks]\nspinlock = "{spinlock}"\n'
               + _events((0.2, 1, "offline"), (0.4, 2, "offline"), (0.6, 1, "online"), (0.8, 2, "online"),
                         (1.0, 1, "offline"), (1.2, 1, "online")))
    d = _run_checked(scn)
    ran = _ran(d, [(1, "offline"), (2, "offline"), (1, "online"), (2, "online"), (1, "offline"), (1, "online")], 2)
    w = d["workload"]
    assert w["corrupt"] == 0 and w["leaked_objects"] == 0 and w["remote_frees"] > 0
    off = [e for e in ran if e["action"] == "offline"]
    assert all(e["ms"] > 0 and e["pid"] > 0 for e in off)
    assert sum(e["cpu_slabs"] + e["cpu_partial_slabs"] + e["magazine_objects"] + e["sheaves"] for e in off) > 0
    assert all(e["ms"] is not None and e["ms"] > 0 for e in ran if e["action"] == "online")


def test_hotplug_page_storm_counters_exact(tmp_path: Path) -> None:
    """page_storm with cross-CPU frees through the ring; cpu2 offline and back, cpu1 offline
    from 0.6 s to the end (blocks for it wait in its ring, the report frees them).  vmstat's
    sums stay exact across hotplug: every allocation shows once in numa_hit + numa_miss,
    and pgalloc - pgfree over the run is exactly the change in pages in use (zoneinfo:
    managed - free - on PCP lists)."""
    scn = _scn(tmp_path, '[run]\nworkload = "page_storm"\nduration = 2.0\nwarmup = 0\n'
                         '[machine]\ncpus = 3\nmemory = "16M"\n[workload]\norders = [0, 0, 1, 2]\n'
                         'cross_cpu_pct = 50\nmax_held = 96\nlong_lived_pct = 5\n'
               + _events((0.2, 2, "offline"), (0.4, 2, "online"), (0.6, 1, "offline")))
    d = _run_checked(scn)
    _ran(d, [(2, "offline"), (2, "online"), (1, "offline")])
    w = d["workload"]
    assert w["corrupt"] == 0 and w["allocs"] > 0

    def vm(when: str) -> dict[str, int]:
        return {k: int(v) for k, v in d[f"views_{when}"]["vmstat"]["json"].items()}

    def used(when: str) -> int:           # pages neither free nor on an (online) PCP list
        return sum(z["managed"] - z["pages_free"] - sum(p["count"] for p in z.get("pagesets", []))
                   for z in d[f"views_{when}"]["zoneinfo"]["json"])

    before, after = vm("before"), vm("after")
    delta = {k: after[k] - before[k] for k in after}
    assert delta["numa_hit"] + delta["numa_miss"] == w["allocs"]
    pgalloc = sum(v for k, v in delta.items() if k.startswith("pgalloc_"))
    assert pgalloc - delta["pgfree"] == used("after") - used("before") and delta["pgfree"] > 0
    zi = d["views_after"]["zoneinfo"]["json"]
    shown = {p["cpu"] for z in zi for p in z.get("pagesets", [])}
    assert shown == {c["cpu"] for c in d["cpus"] if c["state"] != "offline"}     # an offline CPU has none


@pytest.mark.parametrize("spinlock", ["tas", "qspinlock"])
def test_ops_and_lock_stat_exact_across_hotplug(tmp_path: Path, spinlock: str) -> None:
    """lock_storm in ops mode: the CPU that went offline and came back still does exactly
    its budget (ops continue across its workers), no update is lost, and lock_stat counts
    exactly one acquisition per operation."""
    ops = 60_000
    scn = _scn(tmp_path, f'[run]\nworkload = "lock_storm"\nops = {ops}\n[machine]\ncpus = 3\nmemory = "4M"\n'
                         f'[locks]\nspinlock = "{spinlock}"\n'
               + _events((0.05, 1, "offline"), (0.3, 1, "online"), (0.35, 2, "offline"), (0.6, 2, "online")))
    d = _run_checked(scn)
    done = [(e["cpu"], e["action"]) for e in d["hotplug"] if "refused" not in e]
    refused = [e["refused"] for e in d["hotplug"] if "refused" in e]
    # a CPU may have done its ops before its turn (then its offline is refused, and its online):
    # cpu2 often, cpu1 on a loaded host (its worker ran the 60000 before the event at 0.05 s)
    # (the online of a CPU whose worker finished may then run: a standby that finds its
    # ops done), so per CPU: both events ran, or its offline was refused as finished
    ok = ("has finished its run.ops", "is already online")
    assert all(any(s in r for s in ok) for r in refused), refused
    for c in (1, 2):
        acts = [act for cpu, act in done if cpu == c]
        finished = any(e["cpu"] == c and "has finished" in e.get("refused", "") for e in d["hotplug"])
        assert acts == ["offline", "online"] or (finished and acts in ([], ["online"])), d["hotplug"]
    assert [c["ops"] for c in d["cpus"]] == [ops] * 3
    assert d["workload"]["lost_updates"] == 0 and d["workload"]["counted"] == 3 * ops
    lk = next(s for s in d["lock_stat"] if s["lock_class"] == "lock_storm_lock")
    assert lk["acquisitions"] == 3 * ops


def test_hotplug_of_a_vm_cpu(tmp_path: Path) -> None:
    """page_fault1 with one shared mm (threads): the CPU going offline stops being a TLB
    shootdown target (nobody waits for it), its task and RCU callbacks go with it."""
    scn = _scn(tmp_path, '[run]\nworkload = "page_fault1"\nduration = 2.0\nwarmup = 0\n'
                         '[machine]\ncpus = 2\nmemory = "32M"\n[vm]\nmm = "threads"\n[workload]\nsize_mb = 4\n'
               + _events((0.3, 1, "offline"), (0.9, 1, "online")))
    d = _run_checked(scn)
    _ran(d, [(1, "offline"), (1, "online")])
    assert d["workload"].get("corrupt", 0) == 0


# ------------------------------------------------------------------ `aerosync hotplug`
def _wait_going(pid: int, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [n for n, p in find_project_objects() if p == pid and not n.startswith("sem.")]
        if names:
            a = Arena.attach(names[0])
            try:
                while time.monotonic() < deadline:
                    if a.atomic.load64(L.H_RUN_STATE) == L.RUN_GO:
                        return names[0]
                    time.sleep(0.02)
            finally:
                a.close()
        time.sleep(0.05)
    raise AssertionError("the run never started")


def test_cli_hotplug_against_a_live_run(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "r.json"
    p = subprocess.Popen([sys.executable, "-m", "aerosync.cli", "run", str(REPO / "scenarios" / "cross-cpu-free.toml"),
                          "--cpus", "3", "--duration", "120", "--no-save", "--output", str(out)],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        name = _wait_going(p.pid)
        assert cli.main(["hotplug", "--arena", name, "cpu1", "offline"]) == 0
        assert "cpu1 is offline" in capsys.readouterr().out
        assert cli.main(["hotplug", "--arena", name]) == 0
        assert capsys.readouterr().out.splitlines() == ["cpu0: online", "cpu1: offline", "cpu2: online"]
        assert cli.main(["stat", "zoneinfo", "--arena", name, "--json"]) == 0
        import json

        zi = json.loads(capsys.readouterr().out)
        assert {pp["cpu"] for z in zi for pp in z.get("pagesets", [])} == {0, 2}
        assert cli.main(["hotplug", "--arena", name, "cpu1", "offline"]) == 2
        assert "cpu1 is already offline" in capsys.readouterr().err
        assert cli.main(["hotplug", "--arena", name, "cpu0", "offline"]) == 2
        assert "boot CPU" in capsys.readouterr().err
        assert cli.main(["hotplug", "--arena", name, "cpu2", "offline"]) == 0      # cpu0 left alone
        capsys.readouterr()
        assert cli.main(["hotplug", "--arena", name, "9", "online"]) == 2
        assert "cpu9 does not exist" in capsys.readouterr().err
        assert cli.main(["hotplug", "--arena", name, "cpu1", "online"]) == 0
        assert cli.main(["hotplug", "--arena", name, "2", "online"]) == 0
        assert "cpu2 is online" in capsys.readouterr().out
        p.send_signal(signal.SIGINT)                 # end the run: it reports what it did
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, stderr
    assert "cpu1 offline (aerosync hotplug)" in stdout and "cpu2 online  (aerosync hotplug)" in stdout
    assert "Invariant check after the run: OK" in stdout
    import json

    d = json.loads(out.read_text())
    assert [(e["cpu"], e["action"]) for e in d["hotplug"]] == [(1, "offline"), (2, "offline"), (1, "online"),
                                                              (2, "online")]
    assert d["mm_check"]["ok"] and d["workload"]["corrupt"] == 0
    assert not [n for n, pid in find_project_objects() if pid == p.pid]


def test_cli_hotplug_usage_errors(capsys: Any) -> None:
    assert cli.main(["hotplug", "--arena", "aerosync_1_nosuch", "cpu1", "offline"]) == 2
    assert "no segment named 'aerosync_1_nosuch'" in capsys.readouterr().err
    assert cli.main(["hotplug", "--arena", "aerosync_1_nosuch", "cpu1"]) == 2
    assert "give both a CPU and an action" in capsys.readouterr().err
    assert cli.main(["hotplug", "--arena", "aerosync_1_nosuch", "cpuX", "online"]) == 2
    assert "cpuN or N" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        cli.main(["hotplug", "cpu1", "sideways"])
    assert ei.value.code == 2
