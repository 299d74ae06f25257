"""Per-task /proc views (mm/vm/task_mmu.py through procfs and `aerosync stat`): maps,
smaps, smaps_rollup and status in the kernel's layouts with figures computed from the
arena, their JSON twins, the task list, the errors, and a run that saves them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aerosync import cli, coordinator, procfs
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm import task_mmu as TM
from aerosync.mm.vm.vm import VM
from aerosync.report.rundir import write_run_dir
from aerosync.report.schema import validate_result
from aerosync.scenario import load_scenario
from workers.workloads import registry

RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
PG = 4096
KB = PG >> 10


@pytest.fixture
def vmachine(machine) -> Any:
    made: list[VM] = []

    def make(**vm: object) -> tuple[Any, VM]:
        a = machine(nr_pages=8192, nr_cpus=2, slab=True, vm=dict(vm))
        cpu = VM(a, 0)
        made.append(cpu)
        cpu.switch_to(cpu.task_create("viewer"))
        return a, cpu

    yield make
    for cpu in made:
        cpu.leave()


def _pid(a: Any, tid: int) -> int:
    return a.u64[(T.task_off(a, tid) + T.T_PID) >> 3]


def _smap(a: Any, pid: int, start: int) -> dict[str, Any]:
    return next(d for d in TM.smaps_json(a, pid) if d["start"] == start)


# ----------------------------------------------------------------------------- maps
def test_maps_layout_names_and_padding(vmachine, tmp_path: Path) -> None:
    a, cpu = vmachine()
    pid = _pid(a, cpu.current_task())
    anon = cpu.mmap(0, 8 * PG, RW, ANON)
    cpu.mprotect(anon + 2 * PG, 2 * PG, M.PROT_READ)
    fid = cpu.file_create("data", 16 * PG, seed=1)
    fmap = cpu.mmap(0, 4 * PG, M.PROT_READ, M.MAP_SHARED, fid, 8 * PG)
    real = tmp_path / "blob.bin"
    real.write_bytes(bytes(8 * PG))
    rfid = cpu.file_create("blob", 8 * PG, path=str(real))
    rmap = cpu.mmap(0, 8 * PG, M.PROT_READ | M.PROT_EXEC, M.MAP_PRIVATE, rfid)
    shm = cpu.mmap(0, 2 * PG, RW, M.MAP_SHARED | M.MAP_ANONYMOUS)
    b0 = cpu.brk(0)
    cpu.brk(b0 + 2 * PG)
    lines = TM.maps_text(a, pid).splitlines(keepends=True)
    by_start = {int(ln.split("-")[0], 16): ln for ln in lines}
    assert list(by_start) == sorted(by_start)                              # address order
    pad = lambda prefix, name: prefix + " " * (72 - len(prefix)) + " " + name + "\n"
    assert by_start[b0] == pad(f"{b0:08x}-{b0 + 2 * PG:08x} rw-p 00000000 00:00 0 ", "[heap]")
    assert by_start[anon] == f"{anon:08x}-{anon + 2 * PG:08x} rw-p 00000000 00:00 0 \n"   # trailing space
    assert by_start[anon + 2 * PG] == f"{anon + 2 * PG:08x}-{anon + 4 * PG:08x} r--p 00000000 00:00 0 \n"
    assert by_start[fmap] == pad(f"{fmap:08x}-{fmap + 4 * PG:08x} r--s 00008000 00:41 {fid + 1} ", "/aerosync/data")
    assert by_start[rmap] == pad(f"{rmap:08x}-{rmap + 8 * PG:08x} r-xp 00000000 00:41 {rfid + 1} ", str(real))
    assert by_start[shm].endswith(" /dev/zero (deleted)\n") and " rw-s 00000000 00:01 " in by_start[shm]
    assert all(ln.index(" /") == 72 for ln in lines if " /" in ln)         # names start at column 73
    js = TM.maps_json(a, pid)
    assert TM.maps_fmt(js) == TM.maps_text(a, pid)
    assert {d["pathname"] for d in js} >= {"[heap]", "/aerosync/data", "/dev/zero (deleted)", str(real), ""}


def test_stack_vma_is_named() -> None:
    fields = {"start": 0x7FFF0000, "end": 0x7FFF2000, "perms": "rw-p", "offset": 0, "dev": "00:00", "inode": 0,
              "pathname": "[stack]"}
    line = TM.maps_fmt([fields])
    assert line == "7fff0000-7fff2000 rw-p 00000000 00:00 0" + " " * 33 + " [stack]\n"
    assert len(line) == 73 + len("[stack]") + 1


# ----------------------------------------------------------------------------- smaps
_LINE = re.compile(r"^(?P<k>[A-Za-z_]+:) *(?P<v>\d+) kB$")


def test_smaps_private_anon_and_the_layout(vmachine) -> None:
    a, cpu = vmachine()
    pid = _pid(a, cpu.current_task())
    addr = cpu.mmap(0, 16 * PG, RW, ANON)
    for i in range(10):
        cpu.store64(addr + i * PG, i + 1)
    for i in range(10, 13):
        cpu.load64(addr + i * PG)                            # the zero page: not in Rss
    d = _smap(a, pid, addr)
    assert d["Size"] == 16 * KB and d["KernelPageSize"] == d["MMUPageSize"] == KB
    assert d["Rss"] == d["Pss"] == d["Pss_Dirty"] == d["Private_Dirty"] == d["Anonymous"] == 10 * KB
    assert d["Shared_Clean"] == d["Shared_Dirty"] == d["Private_Clean"] == d["Swap"] == d["Locked"] == 0
    assert d["Referenced"] == 10 * KB and d["THPeligible"] == 0
    assert d["VmFlags"] == ["rd", "wr", "mr", "mw", "me"]
    text = TM.smaps_text(a, pid)
    block = text.splitlines()
    assert block[0].startswith(f"{addr:08x}-")
    labels = [ln.split(":")[0] for ln in block[1:-2]]
    assert labels == ["Size", "KernelPageSize", "MMUPageSize", *TM.SMAPS_KEYS]
    for ln in block[1:-2]:
        assert _LINE.match(ln) and len(ln) == 27, repr(ln)          # 16-char label + %8lu + " kB"
    assert block[-2] == "THPeligible:           0"
    assert block[-1] == "VmFlags: rd wr mr mw me "
    assert TM.smaps_fmt(TM.smaps_json(a, pid)) == text


def test_smaps_pss_fixed_point_and_sharing_after_fork(vmachine) -> None:
    """Three pages mapped by three processes: Pss = 3 x (4096 << 12) / 3 >> 12 >> 10 =
    3 kB in the kernel's fixed point (not 4, the exact third of 12 kB)."""
    a, cpu = vmachine()
    me = cpu.current_task()
    addr = cpu.mmap(0, 4 * PG, RW, ANON)
    for i in range(3):
        cpu.store64(addr + i * PG, i)
    c1 = cpu.fork()
    c2 = cpu.fork()
    pid = _pid(a, me)
    d = _smap(a, pid, addr)
    assert d["Rss"] == 12 and d["Pss"] == 3 and d["Shared_Dirty"] == 12 and d["Private_Dirty"] == 0
    cpu.store64(addr, 99)                                    # the parent's own copy: private now
    d = _smap(a, pid, addr)
    assert d["Private_Dirty"] == 4 and d["Shared_Dirty"] == 8 and d["Pss"] == 4 + ((2 * ((PG << 12) // 3)) >> 22)
    for c in (c1, c2):
        cd = _smap(a, _pid(a, c), addr)
        assert cd["Rss"] == 12 and cd["Shared_Dirty"] == 12
    cpu.exit(c1)
    cpu.exit(c2)


def test_smaps_file_shmem_locked_and_rollup(vmachine) -> None:
    a, cpu = vmachine()
    pid = _pid(a, cpu.current_task())
    fid = cpu.file_create("f", 16 * PG, seed=2)
    fm = cpu.mmap(0, 16 * PG, M.PROT_READ, M.MAP_PRIVATE, fid)
    cpu.load64(fm)                                           # fault-around maps cached neighbours too
    shm = cpu.mmap(0, 2 * PG, RW, M.MAP_SHARED | M.MAP_ANONYMOUS)
    cpu.store64(shm, 1)
    lk = cpu.mmap(0, 2 * PG, RW, ANON)
    cpu.mlock(lk, 2 * PG)
    f = _smap(a, pid, fm)
    assert f["Rss"] >= KB and f["Anonymous"] == 0 and f["Private_Clean"] == f["Rss"] and f["Pss_Dirty"] == 0
    s = _smap(a, pid, shm)
    assert s["Rss"] == KB and s["Anonymous"] == 0 and s["Private_Dirty"] == KB and "sh" in s["VmFlags"]
    lo = _smap(a, pid, lk)
    assert lo["Locked"] == lo["Rss"] == 2 * KB and lo["VmFlags"][-1] == "lo"
    r = TM.smaps_rollup_json(a, pid)
    all_smaps = TM.smaps_json(a, pid)
    for k in ("Rss", "Private_Dirty", "Private_Clean", "Anonymous", "Locked", "Referenced"):
        assert r[k] == sum(d[k] for d in all_smaps), k
    assert r["Pss_Anon"] == 2 * KB and r["Pss_Shmem"] == KB and r["Pss_File"] == f["Rss"]
    text = TM.smaps_rollup_text(a, pid)
    first = text.splitlines()[0]
    assert first.startswith(f"{all_smaps[0]['start']:08x}-{all_smaps[-1]['end']:08x} ---p 00000000 00:00 0 ")
    assert first.endswith(" [rollup]") and first.index("[rollup]") == 73
    assert [ln.split(":")[0] for ln in text.splitlines()[1:]][:6] == ["Rss", "Pss", "Pss_Dirty", "Pss_Anon",
                                                                      "Pss_File", "Pss_Shmem"]


# ----------------------------------------------------------------------------- status and tasks
def test_status_fields_widths_and_values(vmachine) -> None:
    a, cpu = vmachine()
    me = cpu.current_task()
    pid = _pid(a, me)
    addr = cpu.mmap(0, 32 * PG, RW, ANON)
    for i in range(20):
        cpu.store64(addr + i * PG, i)
    cpu.mlock(addr, 4 * PG)
    text = TM.status_text(a, pid)
    lines = text.splitlines()
    keys = [ln.split(":")[0] for ln in lines]
    assert keys == ["Name", "State", "Tgid", "Ngid", "Pid", "PPid", "TracerPid", "NStgid", "NSpid", "Kthread",
                    "VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem",
                    "VmData", "VmStk", "VmExe", "VmLib", "VmPTE", "VmSwap", "HugetlbPages", "CoreDumping",
                    "THP_enabled", "untag_mask", "Threads"]
    assert lines[0] == "Name:\tviewer" and lines[1] == "State:\tR (running)" and lines[4] == f"Pid:\t{pid}"
    for ln in lines[10:25]:
        assert re.fullmatch(r"\w+:\t[ \d]{8} kB", ln), repr(ln)
    d = TM.status_json(a, pid)
    mo = T.mm_off(a, cpu.current_mm())
    assert d["VmSize"] == d["VmData"] == 32 * KB and d["VmLck"] == 4 * KB
    assert d["VmRSS"] == d["RssAnon"] == 20 * KB and d["RssFile"] == d["RssShmem"] == 0
    assert d["VmPTE"] == a.u64[(mo + T.M_PGTABLES_BYTES) >> 3] >> 10 and d["Threads"] == 1
    assert TM.status_fmt(d) == text
    child = cpu.fork()
    cpu.exit(child)
    z = TM.status_text(a, _pid(a, child))
    assert "State:\tZ (zombie)" in z and "VmRSS" not in z and z.endswith("Threads:\t0\n")
    assert TM.maps_text(a, _pid(a, child)) == "" and TM.smaps_rollup_json(a, _pid(a, child))["Rss"] == 0


def test_tasks_list_and_snapshot(vmachine) -> None:
    a, cpu = vmachine()
    me = cpu.current_task()
    thread = cpu.task_create("worker", mm=cpu.current_mm())
    cpu.mmap(0, PG, RW, ANON)
    rows = TM.tasks_text(a).splitlines()
    assert rows[0].split() == ["PID", "TGID", "PPID", "COMM", "STATE", "CPU", "MM"]
    assert rows[1].split() == [str(_pid(a, me)), str(_pid(a, me)), "0", "viewer", "R", "(running)", "0",
                               str(cpu.current_mm())]
    assert rows[2].split()[3:] == ["worker", "T", "(stopped)", "-", str(cpu.current_mm())]
    snap = procfs.snapshot_tasks(a)
    assert set(snap["pids"]) == {str(_pid(a, me)), str(_pid(a, thread))}
    assert snap["pids"][str(_pid(a, me))]["maps"]["text"] == TM.maps_text(a, _pid(a, me))
    assert json.loads(json.dumps(snap)) == snap


def test_errors_name_what_is_wrong(vmachine, machine) -> None:
    a, cpu = vmachine()
    pid = _pid(a, cpu.current_task())
    with pytest.raises(procfs.ViewUnavailable, match=rf"no task with pid 999 \(pids: {pid}\)"):
        procfs.render_task(a, "maps", 999)
    with pytest.raises(procfs.ViewUnavailable, match=rf"give --pid \(pids: {pid}\)"):
        procfs.render_task(a, "smaps")
    with pytest.raises(procfs.ViewUnavailable, match="available: tasks, maps"):
        procfs.render_task(a, "mapz", pid)
    bare = machine(nr_pages=1024, nr_cpus=1)
    with pytest.raises(procfs.ViewUnavailable, match="no virtual memory"):
        procfs.render_task(bare, "tasks")
    assert procfs.snapshot_tasks(bare) == {}


def test_saved_views_errors() -> None:
    res = {"views_after": {"proc": {"tasks": {"text": "t\n", "json": []},
                                    "pids": {"7": {"maps": {"text": "m\n", "json": []}}}}},
           "views_before": {}}
    assert procfs.render_saved_task(res, "maps", 7) == "m\n"
    assert procfs.render_saved_task(res, "tasks") == "t\n"
    assert procfs.render_saved_task(res, "maps", 7, as_json=True) == []
    with pytest.raises(cli.UsageError, match=r"no task with pid 8 saved .*pids saved after the run: 7"):
        procfs.render_saved_task(res, "maps", 8)
    with pytest.raises(cli.UsageError, match="saved no status view"):
        procfs.render_saved_task(res, "status", 7)
    with pytest.raises(cli.UsageError, match="saved no task views"):
        procfs.render_saved_task(res, "maps", 7, when="before")


# ----------------------------------------------------------------------------- the CLI
def test_cli_stat_on_a_live_arena(vmachine, capsys) -> None:
    a, cpu = vmachine()
    pid = _pid(a, cpu.current_task())
    addr = cpu.mmap(0, 4 * PG, RW, ANON)
    cpu.store64(addr, 1)
    assert cli.main(["stat", "maps", "--pid", str(pid), "--arena", a.name]) == 0
    assert capsys.readouterr().out == TM.maps_text(a, pid)
    assert cli.main(["stat", "status", "--pid", str(pid), "--arena", a.name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["VmRSS"] == KB
    assert cli.main(["stat", "smaps", "--arena", a.name]) == 0              # no --pid: the task list
    out = capsys.readouterr()
    assert out.out == TM.tasks_text(a) and "no --pid given" in out.err
    assert cli.main(["stat", "--arena", a.name]) == 0
    assert capsys.readouterr().out == TM.tasks_text(a)
    assert cli.main(["stat", "smaps", "--pid", "4242", "--arena", a.name]) == 2
    assert f"no task with pid 4242 (pids: {pid})" in capsys.readouterr().err
    assert cli.main(["stat", "vmstat", "--pid", str(pid), "--arena", a.name]) == 2
    assert "--pid goes with maps, smaps, smaps_rollup, status" in capsys.readouterr().err


def test_run_saves_task_views_and_stat_reads_them(tmp_path: Path, capsys) -> None:
    """A duration run of page_fault1 (threads): the coordinator parks the CPUs before the
    stop and saves every task's views; live checks and the final check include the VM."""
    p = tmp_path / "s.toml"
    p.write_text('[run]\nworkload = "page_fault1"\nduration = 1.0\nwarmup = 0.1\ncheck_interval = 0.3\n'
                 '[machine]\ncpus = 2\nmemory = "64M"\n[vm]\nmm = "threads"\n[workload]\nsize_mb = 2\n')
    d = coordinator.run(load_scenario(p, registry())).to_dict()
    validate_result(d)
    assert d["mm_check"]["ok"], d["mm_check"]["violations"]
    assert "vm_mms" in d["mm_check"]["summary"] and d["mm_check"]["live_checks"]
    assert d["mm"]["vm_events"]["pgfault"] > 0 and d["mm"]["vm_events"]["vma_lock_success"] > 0
    proc = d["views_after"]["proc"]
    tasks = proc["tasks"]["json"]
    assert len(tasks) == 2 and len({t["mm"] for t in tasks}) == 1 and all(t["mm"] > 0 for t in tasks)
    assert set(proc["pids"]) == {str(t["pid"]) for t in tasks}
    pid = tasks[0]["pid"]
    views = proc["pids"][str(pid)]
    assert views["status"]["json"]["VmSize"] >= 2048 and " rw-p 00000000 00:00 0 " in views["maps"]["text"]
    assert "proc" in d["views_before"]
    run = write_run_dir(d, tmp_path / "runs", str(p))
    assert (run / "views" / "proc-after.txt").read_text() == proc["tasks"]["text"]
    assert (run / "views" / "proc-after" / f"{pid}-smaps.txt").read_text() == views["smaps"]["text"]
    assert json.loads((run / "views.json").read_text())["proc"]["after"]["pids"][str(pid)]["status"]["VmRSS"] >= 0
    assert cli.main(["stat", "smaps", "--pid", str(pid), "--result", str(run)]) == 0
    assert capsys.readouterr().out == views["smaps"]["text"]
    out = tmp_path / "result.json"
    out.write_text(json.dumps(d))
    assert cli.main(["stat", "tasks", "--result", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == tasks
