"""NUMA views and plumbing: /proc/<pid>/numa_maps in the kernel's exact format, node
meminfo, `aerosync stat numa_maps --pid`, the [numa] scenario keys, the numa_access
workload end to end, and the MMU's remote access cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aerosync import procfs
from aerosync.cli import main as cli_main
from aerosync.errors import ScenarioError
from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa.numa_maps import numa_maps_text, task_locality
from aerosync.mm.vm import mmap as M
from aerosync.scenario import load_scenario, scenario_to_dict
from tests.numa_helpers import ANON, PG, RW, SHARED, cpu, done, numa_machine, pid_of


def test_numa_maps_exact_lines(machine) -> None:
    """show_numa_map: policy words, anon/dirty/mapped/mapmax/active, N<node>, the page
    size; a VMA without pages ends after its policy."""
    a = numa_machine(machine)
    vm, n, tid = cpu(a, 0)
    pid = pid_of(a, tid)
    fid = vm.file_create("data.bin", 8 * PG, seed=2)
    f = vm.mmap(0, 4 * PG, M.PROT_READ, M.MAP_PRIVATE, fid, 0)
    vm.madvise(f, 4 * PG, M.MADV_RANDOM)
    vm.load64(f)
    vm.load64(f + PG)
    sh = vm.mmap(0, 4 * PG, RW, SHARED)
    n.mbind(sh, 2 * PG, MP.MPOL_BIND | MP.MPOL_F_STATIC_NODES, 0b10)
    vm.store64(sh, 1)
    vm.store64(sh + 2 * PG, 1)
    an = vm.mmap(0, 8 * PG, RW, ANON)
    n.mbind(an + 4 * PG, 4 * PG, MP.MPOL_INTERLEAVE, 0b11)
    for p in range(8):
        vm.store64(an + p * PG, p)
    empty = vm.mmap(0, 2 * PG, RW, ANON)
    n.mbind(empty, 2 * PG, MP.MPOL_PREFERRED_MANY, 0b11)
    child = vm.fork()                                              # anon pages mapped twice now
    text = numa_maps_text(a, pid)
    want = [
        f"{empty:08x} prefer (many):0-1",
        f"{an:08x} default anon=4 dirty=4 mapmax=2 active=0 N0=4 kernelpagesize_kB=4",
        f"{an + 4 * PG:08x} interleave:0-1 anon=4 dirty=4 mapmax=2 active=0 N0=2 N1=2 kernelpagesize_kB=4",
        f"{sh:08x} bind=static:1 dirty=1 active=0 N1=1 kernelpagesize_kB=4",      # fork copies no shared PTEs
        f"{sh + 2 * PG:08x} default dirty=1 active=0 N0=1 kernelpagesize_kB=4",
        f"{f:08x} default file=data.bin mapped=2 active=0 N0=2 kernelpagesize_kB=4",
    ]
    assert text.splitlines() == want
    assert procfs.render_task(a, "numa_maps", pid) == text
    js = procfs.render_task(a, "numa_maps", pid, as_json=True)
    assert [r["start"] for r in js] == [empty, an, an + 4 * PG, sh, sh + 2 * PG, f]
    assert js[2]["node"] == {0: 2, 1: 2} and js[5]["file"] == "data.bin"
    with pytest.raises(procfs.ViewUnavailable):
        procfs.render_task(a, "numa_maps", 999999)
    snap = procfs.snapshot_tasks(a)
    assert snap["pids"][str(pid)]["numa_maps"]["text"] == text
    assert task_locality(a, tid, 0, an, an + 8 * PG) == (6, 8)
    vm.exit(child)
    done(a, vm)


def test_numa_maps_task_policy_and_heap(machine) -> None:
    a = numa_machine(machine)
    vm, n, tid = cpu(a, 0)
    n.set_mempolicy(MP.MPOL_INTERLEAVE, 0b11)
    from aerosync.mm.vm import mm_types as T

    start = a.u64[(T.mm_off(a, vm.cur[1]) + T.M_START_BRK) >> 3]
    vm.brk(start + 2 * PG)
    vm.store64(start, 1)
    assert numa_maps_text(a, pid_of(a, tid)) == \
        f"{start:08x} interleave:0-1 heap anon=1 dirty=1 active=0 N0=1 kernelpagesize_kB=4\n"
    done(a, vm)


def test_node_meminfo_format_and_counters(machine) -> None:
    a = numa_machine(machine)
    vm, n, _ = cpu(a, 0)
    n.set_mempolicy(MP.MPOL_BIND, 0b10)
    addr = vm.mmap(0, 16 * PG, RW, ANON)
    for p in range(16):
        vm.store64(addr + p * PG, p)
    text = procfs.node_meminfo_text(a, 1)             # issue 14's view: process memory counted per node
    lines = text.splitlines()
    assert lines[0].startswith("Node 1 MemTotal:") and lines[0].endswith(" kB")
    assert len(lines[0]) == len("Node 1 MemTotal:       32604136 kB")
    assert "Node 1 AnonPages:      " + "      64 kB" in lines                 # "Node %d AnonPages:      %8lu kB"
    assert lines[-3] == "Node 1 HugePages_Total:     0"
    assert [ln.split(":")[0].split(" ", 2)[2] for ln in lines][:4] == ["MemTotal", "MemFree", "MemUsed", "SwapCached"]
    js = procfs.render_json(a, "node_meminfo")
    assert js["node1"]["AnonPages"] == 64 and js["node0"]["AnonPages"] == 0
    assert procfs.render(a, "node_meminfo").startswith("Node 0 MemTotal:")
    done(a, vm)


def test_numa_scenario_keys(tmp_path: Path) -> None:
    from workers.workloads import registry

    p = tmp_path / "n.toml"
    p.write_text('[run]\nworkload = "numa_access"\n[numa]\nbalancing = true\nnuma_balancing_scan_delay_ms = 50\n'
                 'numa_balancing_scan_size_mb = 64\n[workload]\ninit = "remote"\n')
    s = load_scenario(p, registry())
    d = scenario_to_dict(s)
    assert d["numa"]["balancing"] is True and d["numa"]["numa_balancing_scan_delay_ms"] == 50
    for bad, key in (("balancing = 1", "numa.balancing"), ("numa_balancing_scan_size_mb = 0",
                                                            "numa.numa_balancing_scan_size_mb"),
                     ("numa_balancing_scan_period_min_ms = 9000\nnuma_balancing_scan_period_max_ms = 100",
                      "numa.numa_balancing_scan_period_min_ms"), ("max_policies = 3", "numa.max_policies")):
        p.write_text('[run]\nworkload = "numa_access"\n[numa]\n' + bad + "\n")
        with pytest.raises(ScenarioError) as ei:
            load_scenario(p, registry())
        assert ei.value.key == key
    p.write_text('[run]\nworkload = "numa_access"\n[workload]\ninit = "sideways"\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p, registry())
    assert "init" in str(ei.value) and "own, cpu0, remote" in str(ei.value)


def test_numa_access_run_and_saved_numa_maps(tmp_path: Path, capsys) -> None:
    """A short balancing run: verified data, every task 100 % local at the end, the
    locality series and numa_maps saved; `stat numa_maps --pid --result` prints it;
    init = "cpu0" needs threads mode (exit 2)."""
    scn = Path(__file__).resolve().parent.parent / "scenarios" / "numa-balancing.toml"
    out = tmp_path / "r.json"
    rc = cli_main(["run", str(scn), "--no-save", "--output", str(out), "--set", "run.duration=2.5",
                   "--set", "workload.size_mb=1", "--set", "workload.sample_ms=50"])
    assert rc == 0
    d = json.loads(out.read_text())
    w = d["workload"]
    assert w["corrupt"] == 0
    assert all(t["pages_local_pct"] == 100.0 for t in w["locality"].values()), w["locality"]
    assert w["vmstat"]["numa_pages_migrated"] >= 512 and w["converge_90_s"] is not None
    assert w["locality_samples"] and {s["cpu"] for s in w["locality_samples"]} == {0, 1}
    pid = next(iter(w["numa_maps"]))
    capsys.readouterr()
    assert cli_main(["stat", "numa_maps", "--pid", pid, "--result", str(out)]) == 0
    text = capsys.readouterr().out                         # views_after["proc"]: saved just before the stop
    assert text.splitlines()[0].split()[0] == w["numa_maps"][pid].splitlines()[0].split()[0]
    assert " N" in text and "kernelpagesize_kB=4" in text
    assert cli_main(["stat", "numa_maps", "--result", str(out)]) == 0                   # no --pid: the task list
    assert pid in capsys.readouterr().out
    assert cli_main(["run", str(scn), "--no-save", "--set", "workload.init=cpu0", "--set", "run.duration=0.5"]) == 2
    from aerosync.report.plots import plot_numa_locality

    assert plot_numa_locality(d, tmp_path / "loc.png") is not None


def test_remote_access_cost_is_bound_only_when_configured(machine) -> None:
    from aerosync.mm.vm.mmu import access_costs

    a = numa_machine(machine, remote_access_ns=100, distance=[[10, 21], [21, 10]])
    assert access_costs(a, 0) == (0, 110) and access_costs(a, 1) == (110, 0)
    vm, n, _ = cpu(a, 0)
    assert vm.mmu.costs == (0, 110)
    n.set_mempolicy(MP.MPOL_BIND, 0b10)
    addr = vm.mmap(0, 2 * PG, RW, ANON)
    vm.store64(addr, 5)
    vm.store(addr + 8, b"abc")
    assert vm.load64(addr) == 5 and vm.load(addr + 8, 3) == b"abc"
    done(a, vm)
    b = numa_machine(machine)
    assert access_costs(b, 0) is None
    vm2, _n2, _ = cpu(b, 0)
    assert vm2.mmu.costs is None
    done(b, vm2)
