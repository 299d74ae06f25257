"""NUMA placement figures of process memory (issue 10), on fake NUMA machines:

  * numa_balancing_local_pct / numa_balancing_converge_s: two tasks (processes) on
    fake:2:21, one per node, each touching 4 MiB under bind=<the other node> so that
    its memory starts 100 % remote, then reading and writing it at random with
    automatic NUMA balancing on ([numa] balancing) and remote accesses costing time;
    the share of each task's pages on its own node at the end of a 4 s run (the worse
    task), and the time until every task's pages were 90 % local (sampled every 50 ms).
    The scan settings are the kernel's defaults scaled down 10x for a run of seconds
    (numa_balancing_scan_delay_ms 100, scan_period_min_ms 100, scan_period_max_ms 6000;
    scan_size_mb 256 as Linux's);
  * migrate_page_us: move_pages(2) of 4 KiB anonymous pages between the two nodes of a
    fake:2 machine, in-process, per page (isolate, unmap to migration entries, copy,
    replace in the object, remap, free), 256 pages a call;
  * first_touch_local_pct: default policy, each of two tasks first-touches its own 4
    MiB: the share of its pages on its node (the worse task).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aerosync.mm.boot import create_machine
from aerosync.mm.pmm.init import single_node_sim

__all__ = ["GROUPS"]

_SCENARIOS = Path(__file__).resolve().parent.parent.parent / "scenarios"
_SCALED = ["numa.numa_balancing_scan_delay_ms=100", "numa.numa_balancing_scan_period_min_ms=100",
           "numa.numa_balancing_scan_period_max_ms=6000", "numa.numa_balancing_scan_size_mb=256"]


def _run(scenario: str, overrides: list[str]) -> dict[str, Any]:
    from aerosync import coordinator
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    scn = load_scenario(_SCENARIOS / scenario, registry(), overrides)
    return coordinator.run(scn).to_dict()


def _worst_pages_local(res: dict[str, Any]) -> float:
    loc = res["workload"]["locality"]
    vals = [t["pages_local_pct"] for t in loc.values()]
    if any(v is None for v in vals) or res["workload"]["corrupt"]:
        raise RuntimeError(f"numa bench: a task reported no pages or corrupt data: {res['workload']}")
    return min(vals)


def bench_balancing() -> dict[str, float]:
    res = _run("numa-balancing.toml", ["machine.cpus=2", "run.duration=4.0", "workload.sample_ms=50",
                                       *_SCALED])
    conv = res["workload"]["converge_90_s"]
    return {"numa_balancing_local_pct": _worst_pages_local(res),
            "numa_balancing_converge_s": conv if conv is not None else float("nan")}


def bench_first_touch() -> dict[str, float]:
    res = _run("numa-balancing.toml", ["machine.cpus=2", "run.duration=1.5", "workload.init=own",
                                       "numa.balancing=false"])
    return {"first_touch_local_pct": _worst_pages_local(res)}


def bench_migrate() -> dict[str, float]:
    from aerosync.mm.numa import mempolicy as MP
    from aerosync.mm.numa.numa_vm import attach
    from aerosync.mm.vm import mmap as M
    from aerosync.mm.vm.vm import VM

    n = 256
    arena = create_machine({"nr_cpus": 1, "nr_pages": 16384, "sim": single_node_sim(1, 2), "vm": {}})
    try:
        vm = VM(arena, 0)
        numa = attach(vm)
        vm.switch_to(vm.task_create("bench"))
        addr = vm.mmap(0, n * 4096, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        for i in range(n):
            vm.store64(addr + i * 4096, i)
        pages = [addr + i * 4096 for i in range(n)]
        best = float("inf")
        for rnd in range(6):
            target = [1 - rnd % 2] * n
            t0 = time.perf_counter()
            failed, status = numa.move_pages(0, pages, target, MP.MPOL_MF_MOVE)
            dt = time.perf_counter() - t0
            if failed or status != target:
                raise RuntimeError(f"migrate_page_us: move_pages left {failed} page(s): {status[:8]}")
            best = min(best, dt)
        if any(vm.load64(addr + i * 4096) != i for i in range(n)):
            raise RuntimeError("migrate_page_us: a page's contents changed in the move")
        vm.exit()
        vm.leave()
        del vm, numa
        return {"migrate_page_us": best / n * 1e6}
    finally:
        arena.close()
        arena.unlink()


GROUPS = {
    "balancing": (bench_balancing, [("numa_balancing_local_pct", "%", ">= 90"),
                                    ("numa_balancing_converge_s", "s", "reported")]),
    "migrate": (bench_migrate, [("migrate_page_us", "us", "<= 15")]),
    "first_touch": (bench_first_touch, [("first_touch_local_pct", "%", "= 100")]),
}
