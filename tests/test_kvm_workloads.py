"""The kernel-VM and hardening workloads through the whole harness: pinned workers on two
CPUs, the checker (VA1..VA5 with the rest) during and after the run, nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

from aerosync import coordinator
from aerosync.arena.cleanup import find_project_objects
from aerosync.scenario import load_scenario
from workers.workloads import registry
from workers.workloads.bug_corpus import BUGS

REPO = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, body: str, *overrides: str) -> dict:
    p = tmp_path / "s.toml"
    p.write_text(body)
    d = coordinator.run(load_scenario(p, registry(), overrides)).to_dict()
    assert d["mm_check"]["ok"], d["mm_check"]["violations"][:5]
    assert [n for n, pid in find_project_objects() if pid == os.getpid()] == []
    return d


def test_vmalloc_storm_two_cpus_cross_cpu_vfree_then_checker(tmp_path: Path, soak: bool) -> None:
    """Invariant: an area's stamps read back intact until its vfree (a TLB entry surviving
    a purge whose address was handed out again would show a stale page), every area is
    vfree'd once (by its CPU, the next one, or after the run), and the machine passes the
    checker while the workers are parked and after they left."""
    ops = 1500 if soak else 250
    d = _run(tmp_path, f'[run]\nworkload = "vmalloc_storm"\nops = {ops}\ncheck_interval = 0.5\n'
                       '[machine]\ncpus = 2\nmemory = "96M"\n'
                       '[vmalloc]\nlazy_max_pages = 1024\n'
                       '[workload]\nmin_kb = 4\nmax_kb = 2048\nmax_held = 16\ncross_cpu_pct = 50\nhuge_pct = 50\n')
    w = d["workload"]
    assert w["corrupt"] == 0 and w["failed"] == 0
    assert w["vmallocs"] == w["vfrees"] + w["vfreed_after_run"] >= 2 * ops
    assert w["handed"] > 0 and w["purges_total"] >= 1 and w["purge_flushes"] >= w["purges_total"]
    assert w["VmallocUsed"] == 0                               # every area freed (the stacks too)


def test_stack_depth_with_fault_injection_catches_every_fault(tmp_path: Path) -> None:
    d = _run(tmp_path, '[run]\nworkload = "stack_depth"\nops = 300\n[machine]\ncpus = 2\nmemory = "32M"\n'
                       '[workload]\nmax_depth = 20\nframe_bytes = 400\noverflow_pct = 20\ndeep_pct = 10\n')
    w = d["workload"]
    assert w["smashes"] > 0 and w["overflows"] > 0
    assert w["missed"] == 0 and w["corrupt"] == 0
    assert d["mm"]["sanitizer_reports"]["stack-protector"] == w["smashes"]
    assert d["mm"]["sanitizer_reports"]["stack-overflow"] == w["overflows"]


def test_bug_corpus_under_kasan_catches_everything_and_names_the_sites(tmp_path: Path) -> None:
    n = 2 * len(BUGS)
    d = _run(tmp_path, f'[run]\nworkload = "bug_corpus"\nops = {n}\n[machine]\ncpus = 2\nmemory = "32M"\n'
                       '[debug]\nkasan = true\n')
    w = d["workload"]
    assert w["run"] == w["caught"] >= 2 * n and w["detect_pct"] == 100.0
    assert all(v["sites"] == v["caught"] > 0 for v in w["bugs"].values()), w["bugs"]
    assert w["mode"] == "kasan,stack_protector"


def test_bug_corpus_without_detectors_runs_only_what_is_safe(tmp_path: Path) -> None:
    d = _run(tmp_path, f'[run]\nworkload = "bug_corpus"\nops = {len(BUGS)}\n[machine]\ncpus = 1\nmemory = "32M"\n'
                       '[debug]\nstack_protector = false\n')
    b = d["workload"]["bugs"]
    assert b["stack_overflow"]["caught"] == 1                  # the guard page always
    assert b["vmalloc_oob"]["caught"] == 0 and b["uaf_read"]["caught"] == 0 and b["canary_smash"]["caught"] == 0
    assert b["double_free"]["caught"] == 0                     # not run: it would corrupt SLUB


def test_slub_churn_under_every_hardening_switch_keeps_the_allocator_sound(tmp_path: Path) -> None:
    """SLUB's lockless protocols with the hardened free pointers, KFENCE's gate and the
    init_on_* zeroing (one machine) and with KASAN's quarantine plus KFENCE (another):
    two CPUs, half the frees remote, stamps verified, the slab checker after the run."""
    for debug in ('freelist_hardened = true\nkfence_sample_interval = 7\ninit_on_alloc = true\ninit_on_free = true\n',
                  'kasan = true\nkfence_sample_interval = 5\n'):
        d = _run(tmp_path, '[run]\nworkload = "slub_churn"\nops = 1500\ncheck_interval = 0.3\n'
                           '[machine]\ncpus = 2\nmemory = "32M"\n'
                           f'[debug]\n{debug}[workload]\nsize = 64\nmax_held = 64\ncross_cpu_pct = 50\n')
        assert d["workload"]["corrupt"] == 0
        assert sum(d["mm"]["sanitizer_reports"].values()) == 0
