"""Whole runs with CPUs killed at fault points: [run] on_cpu_death and [fault]
(coordinator.py _Deaths, aerosync/crash.py).

Invariant: a run whose CPUs are killed at fault points ends with every checker passing
and nothing lost (crash_soak's lost_pages / lost_objects 0); "stop" ends the run after
the first death with the dead CPU offline, "continue" restarts every killed CPU and the
run goes on (every CPU keeps counting operations).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from aerosync import coordinator
from aerosync.errors import ScenarioError
from aerosync.scenario import load_scenario
from workers.workloads import registry

pytestmark = pytest.mark.timeout(240)


def _scn(text: str):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "crash.toml"
        p.write_text(text)
        return load_scenario(p, registry())


BASE = '[run]\nworkload = "crash_soak"\nduration = {d}\non_cpu_death = "{mode}"\n' \
       '[machine]\ncpus = 2\nmemory = "16M"\n'


def _one_death_restarted(text: str) -> dict:
    """Run the scenario `text` (one kill_at death under "continue"): it died once and was
    restarted, the checkers pass and nothing read back wrong.  Returns the result dict."""
    res = coordinator.run(_scn(text))
    d = res.to_dict()
    assert d["crash"]["deaths"] == 1 and d["crash"]["restarts"] == 1
    assert res.mm_check["ok"], res.mm_check["violations"]
    assert d["workload"]["corrupt"] == 0
    return d


def test_kill_at_then_stop() -> None:
    scn = _scn(BASE.format(d=20, mode="stop") + '[fault]\nkill_at = "pcp:refill:linked"\nkill_cpu = 1\nkill_skip = 3\n')
    res = coordinator.run(scn)
    d = res.to_dict()
    assert d["crash"]["deaths"] == 1 and d["crash"]["restarts"] == 0
    rec = d["crash"]["recoveries"][0]
    assert rec["cpu"] == 1 and rec["died_at"] == "pcp:refill:linked"
    assert any(n.startswith("&zone->lock") for n in rec["locks"])
    assert rec["records"] and rec["records"][0].startswith("pcp_refill")
    assert d["measured_s"] < 15                       # "stop": ended at the death, not at the deadline
    assert d["cpus"][1]["state"] == "offline"
    assert res.mm_check["ok"], res.mm_check["violations"]
    assert d["workload"]["lost_pages"] == 0 and d["workload"]["lost_objects"] == 0


def test_kill_random_continue() -> None:
    scn = _scn(BASE.format(d=4, mode="continue") + "[fault]\nkill_random = 4\nkill_interval = 0.2\n")
    res = coordinator.run(scn)
    d = res.to_dict()
    c = d["crash"]
    assert c["deaths"] >= 1 and c["restarts"] == c["deaths"]
    assert c["pages_recovered"] + c["objects_recovered"] > 0
    assert c["recovery_ms_median"] is not None
    assert all(cpu["ops"] > 0 and cpu["state"] == "done" for cpu in d["cpus"])
    assert res.mm_check["ok"], res.mm_check["violations"]
    assert d["workload"]["lost_pages"] == 0 and d["workload"]["lost_objects"] == 0
    assert d["workload"]["corrupt"] == 0


def test_summary_says_a_kill_from_outside_is_checked_not_guaranteed() -> None:
    """Deaths at fault points are listed by point; a death at none (a kill from outside)
    adds the line saying recovery is exact only at the points."""
    from aerosync.crash import OUTSIDE, CrashLog

    d = {"deaths": 3, "on_cpu_death": "continue", "restarts": 3, "pages_recovered": 1, "objects_recovered": 2,
         "recovery_ms_median": 40.0, "recovery_ms_max": 50.0, "died_at": {"pcp:refill:linked": 2}}
    lines = CrashLog.summary_lines(d)
    assert "pcp:refill:linked x2" in lines[1] and len(lines) == 2
    d["died_at"][OUTSIDE] = 1
    lines = CrashLog.summary_lines(d)
    assert len(lines) == 3 and "between fault points" in lines[2]


@pytest.mark.parametrize(("extra", "key"), [
    ('[fault]\nkill_at = "no:such:point"\n', "fault.kill_at"),
    ('[fault]\nkill_at = "Bad Name"\n', "fault.kill_at"),
    ("[fault]\nkill_random = -1\n", "fault.kill_random"),
    ("[fault]\nkill_interval = -2\n", "fault.kill_interval"),
    ("[fault]\nkill_random = 2\nkill_cpu = 7\n", "fault.kill_cpu"),
    ("[fault]\nkill_when = 1\n", "fault.kill_when"),
])
def test_bad_fault_tables_are_refused(extra: str, key: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        scn = _scn(BASE.format(d=1, mode="continue") + extra)
        coordinator.run(scn, ready_only=True)
    assert ei.value.key == key


def test_fault_needs_a_recovery_mode() -> None:
    with pytest.raises(ScenarioError) as ei:
        _scn(BASE.format(d=1, mode="fail") + '[fault]\nkill_at = "buddy:alloc:split"\n')
    assert ei.value.key == "run.on_cpu_death" and "stop" in ei.value.allowed
    with pytest.raises(ScenarioError) as ei:
        _scn(BASE.format(d=1, mode="sometimes"))
    assert ei.value.key == "run.on_cpu_death"


def test_cpu0_stopped_dead_inside_a_collapse_of_the_shared_mm() -> None:
    """fork-cow in threads mode, CPU 0 killed with a collapse half-way (an entry in both
    trees, vm:collapse:stored) and left dead ("stop"): CPU 1 forks on meanwhile (before
    and after the recovery), the run's report acts as the offline CPU 0 -- and the
    checkers pass: no folio put twice (R2), and the report's frees do not stay in the
    offline CPU's caches (H1)."""
    scn = _scn('[run]\nworkload = "fork_cow"\nduration = 3\non_cpu_death = "stop"\n'
               '[machine]\ncpus = 2\nmemory = "256M"\n[vm]\nmm = "threads"\n'
               '[fault]\nkill_at = "vm:collapse:stored"\nkill_cpu = 0\nkill_skip = 1\n')
    res = coordinator.run(scn)
    d = res.to_dict()
    assert d["crash"]["deaths"] == 1 and d["crash"]["recoveries"][0]["died_at"] == "vm:collapse:stored"
    assert res.mm_check["ok"], res.mm_check["violations"]
    assert d["workload"]["corrupt"] == 0 and d["workload"]["leaked_pages"] == 0


def test_a_death_while_the_world_stops_for_a_live_check_is_recovered(monkeypatch) -> None:
    """A CPU killed while the coordinator stops the world for a live invariant check (here
    forced: killed from outside as the check begins) is recovered as any death -- the
    check is skipped -- instead of ending the run (a reclaim-thrash soak ended so)."""
    import signal

    real = coordinator._live_check
    state = {"killed": 0}

    def live_check(arena, procs):
        if not state["killed"]:
            state["killed"] = procs[1].pid
            os.kill(procs[1].pid, signal.SIGKILL)
        return real(arena, procs)

    monkeypatch.setattr(coordinator, "_live_check", live_check)
    scn = _scn(BASE.format(d=3, mode="continue").replace("[machine]", "check_interval = 0.3\n[machine]"))
    res = coordinator.run(scn)
    d = res.to_dict()
    assert state["killed"] and d["crash"]["deaths"] == 1 and d["crash"]["restarts"] == 1
    assert d["crash"]["recoveries"][0]["cpu"] == 1
    assert res.mm_check["ok"], res.mm_check["violations"]
    assert res.mm_check["live_checks"] and all(c["ok"] for c in res.mm_check["live_checks"])


def test_vm_threads_mode_survives_deaths() -> None:
    """page_fault1 with one mm for both CPUs (threads): a CPU killed at VM and allocator
    points is recovered (its mmu_gather's pages freed after a shootdown of the shared mm,
    its thread exits) and restarted into the same mm; the run ends with the checkers
    passing and nothing leaked."""
    scn = _scn('[run]\nworkload = "page_fault1"\nduration = 3\non_cpu_death = "continue"\n'
               '[machine]\ncpus = 2\nmemory = "64M"\n[vm]\nmm = "threads"\nfault_locking = "per_vma"\n'
               '[workload]\nsize_mb = 4\n[fault]\nkill_random = 3\nkill_interval = 0.2\n')
    res = coordinator.run(scn)
    d = res.to_dict()
    c = d["crash"]
    assert c["deaths"] >= 1 and c["restarts"] == c["deaths"]
    assert all(cpu["ops"] > 0 and cpu["state"] == "done" for cpu in d["cpus"])
    assert res.mm_check["ok"], res.mm_check["violations"]
    w = d["workload"]
    assert w["mode"] == "threads" and w["corrupt"] == 0
    assert w["leaked_pages"] == 0 and w["leaked_mms"] == 0


def test_a_dead_writers_mmap_lock_is_kept_until_recovered() -> None:
    """brk1 with one mm for both CPUs, cpu0 killed in brk after the heap VMA changed but
    before mm->brk followed (vm:brk:changed), with mmap_lock write-held: the lock stays
    held for the dead CPU until its recovery ended (the live CPU, queued on it, parks
    inside its wait), so the live thread never sees the heap and mm->brk disagree --
    when it was released at the takeover, brk1's grows in that window were refused."""
    d = _one_death_restarted('[run]\nworkload = "brk1"\nduration = 3\non_cpu_death = "continue"\n'
                             '[machine]\ncpus = 2\nmemory = "64M"\n[vm]\nmm = "threads"\n'
                             '[fault]\nkill_at = "vm:brk:changed"\nkill_cpu = 0\nkill_skip = 200\n')
    rec = d["crash"]["recoveries"][0]
    assert rec["died_at"] == "vm:brk:changed"
    assert not rec["kept_released_early"]
    assert any(x.startswith("rwsem-W@") for x in rec["locks"])      # released after the recovery
    assert d["workload"]["refused"] == 0, d["workload"]


def test_a_reclaim_run_survives_a_death_with_folios_isolated() -> None:
    """reclaim-thrash (MGLRU, swap, ZMM) with cpu0 killed right after a reclaim batch was
    isolated (vm:reclaim:isolated): recovery puts the batch back (vm_reclaim) and the
    dead CPU's task exits (the workload's recover hook), so the run goes on and every
    byte read back is still right."""
    d = _one_death_restarted('[run]\nworkload = "reclaim"\nduration = 3\non_cpu_death = "continue"\n'
                             '[machine]\ncpus = 2\nmemory = "16M"\n'
                             '[reclaim]\nlru = "mglru"\nswap_size = "32M"\nzmm = true\npage_cluster = 0\n'
                             '[workload]\nmode = "thrash"\nws_factor = 1.2\n'
                             '[fault]\nkill_at = "vm:reclaim:isolated"\nkill_cpu = 0\nkill_skip = 2\n')
    rec = d["crash"]["recoveries"][0]
    assert rec["died_at"] == "vm:reclaim:isolated"
    assert any(r.startswith("vm_reclaim") for r in rec["records"]), rec["records"]
    assert not any("no recover hook" in n for n in d["notes"]), d["notes"]


def test_a_dirty_mode_run_survives_a_death_and_leaves_no_file() -> None:
    """reclaim in dirty mode (MAP_SHARED writes to a real temporary file) with cpu0
    killed in a fault: the restarted worker makes a file of its own (the dead one's, by
    the same name, made file_create fail with EEXIST and ended the run), and the run's
    end removes the file the dead worker never got to (it was left in the temp dir)."""
    _one_death_restarted('[run]\nworkload = "reclaim"\nduration = 2\non_cpu_death = "continue"\n'
                         '[machine]\ncpus = 2\nmemory = "16M"\n'
                         '[reclaim]\nswap_size = "16M"\n'
                         '[workload]\nmode = "dirty"\nfile_mb = 4\n'
                         '[fault]\nkill_at = "vm:fault:installed"\nkill_cpu = 0\nkill_skip = 40\n')
    left = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith("aerosync-dirty-")
            and f"_{os.getpid()}_" in n]
    assert left == []


def test_a_dead_cpus_vmalloc_areas_are_vfreed() -> None:
    """vmalloc_storm with cpu0 killed part-way (max_held areas held, its vmalloc in
    flight at vm:vmalloc:page): the workload's recover hook vfrees the areas the dead
    CPU's row of "vmheld" names -- its in-flight vmalloc is its record's -- so the
    recovery gives back areas and their pages, and the checkers pass."""
    d = _one_death_restarted('[run]\nworkload = "vmalloc_storm"\nduration = 2\non_cpu_death = "continue"\n'
                             '[machine]\ncpus = 2\nmemory = "256M"\n'
                             '[workload]\nmax_held = 8\ncross_cpu_pct = 25\n'
                             '[fault]\nkill_at = "vm:vmalloc:page"\nkill_cpu = 0\nkill_skip = 400\n')
    c = d["crash"]
    assert not any("no recover hook" in n for n in d["notes"]), d["notes"]
    assert c["objects_recovered"] >= 7 and c["pages_recovered"] >= 7, c      # the 7 areas it held
    # (max_held - 1: the eighth vmalloc was the one in flight)
