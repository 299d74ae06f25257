"""`aerosync bench reclaim`: issue 12's figures (MGLRU and classic against Belady's OPT,
ZMM's ratio and cost, one page's swap round trip, kswapd's throughput, data integrity).

policies: one simulated CPU on a 1024-page (4 MiB) machine runs the reclaim workload's
Zipf(1.0) access stream over an anonymous region of 1.5 x RAM (1536 pages; swap file,
no ZMM, no swap readahead; 30 % writes, every read checked).  Warm-up, left out on both
sides: every page written once (the first touches), then 10 x 1536 Zipf accesses; then
40,000 measured Zipf accesses.  `mglru_vs_opt` / `classic_vs_opt`: the policy's major
faults over the measured accesses divided by OPT's faults over the same accesses, OPT
simulated over the whole trace (first touches and warm-up included) with `frames` page
frames = the mean LRU size over the measured accesses (read at every access; all the
region's resident folios, swap cache included: the memory the policy actually had).
`exact_lru_vs_opt` (exact LRU) and `a0_vs_opt` (A0: evict the least probable resident
page, knowing the Zipf ranks) are the same division for two more yardsticks on the same
trace and the MGLRU run's frames.  `policy_frames`, `mglru_major_faults`, `opt_faults`:
the MGLRU run's raw figures.

What can be met: the trace is IID (the independent reference model), and there A0 is
the best any policy without lookahead can do, so A0 / OPT is a floor under every real
policy's ratio.  Measured on this trace (seed 11; seeds 12, 13 within 0.04), frames 905:

    OPT 1,355   A0 2,632 (1.94 x)   exact LRU 3,716 (2.74 x)
    MGLRU 3,704 (2.73 x)            classic 4,024 (2.93 x, frames 900)

The issue's target (mglru_vs_opt <= 1.5) is below A0's 1.94, so no online policy can
meet it on this trace; MGLRU matches exact LRU (IID has no recency to exploit, and its
tiers' frequency signal barely helps).  The trace is not changed to meet the target.
Short windows flatter the ratio (with a 2 x 1536 warm-up OPT's first 10,000 accesses
fault 30 % more than its steady state: A0 / OPT 1.56 over 10,000 accesses, 1.91 over
60,000); the warm-up and length above put every ratio within 0.05 of its long-window
value.  (Before: 6000 accesses straight after the first touches, frames = the anonymous
pages at the end: mglru_vs_opt 5.0.)

kswapd_pages_per_s: balance_pgdat (kswapd's body, on its own CPU) taking a full machine
back to its HIGH mark.  reclaim_data_mismatches: bytes that came back wrong in the policy
runs plus a 3-second multi-process reclaim-compress run (coordinator, kswapd and the
flusher as processes).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from aerosync.mm.boot import create_machine
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import GFP_HIGHUSER_MOVABLE, gfp_zone
from aerosync.mm.pmm.init import single_node_sim

__all__ = ["GROUPS"]

PG = 4096
_SCEN = Path(__file__).resolve().parent.parent.parent / "scenarios"


def _machine(nr_pages: int, nr_cpus: int = 2, **reclaim: Any) -> Any:
    return create_machine({"nr_cpus": nr_cpus, "nr_pages": nr_pages, "sim": single_node_sim(nr_cpus), "vm": {},
                           "reclaim": reclaim})


POLICY_PAGES = 1024               # the machine's RAM in the policy runs (4 MiB)
POLICY_WARM = 10                  # Zipf accesses before the measured ones, x the region's pages
POLICY_MEASURED = 40_000          # measured Zipf accesses


def _policy_run(lru: str, seed: int = 11, measured: int = POLICY_MEASURED) -> dict[str, Any]:
    """One policy on the Zipf(1.0) trace over 1.5 x RAM of anonymous memory; the
    yardsticks' faults on the same trace and the run's mean LRU size.  Returns the
    policy's major faults, OPT's, exact LRU's and A0's over the measured accesses, the
    frames, and the bytes that came back wrong."""
    import random

    import numpy as np

    from aerosync.mm.reclaim.opt import ZipfSampler, a0_misses, lru_misses, lru_resident, opt_misses
    from aerosync.mm.reclaim.swapfile import swapoff
    from aerosync.mm.vm import mmap as M
    from aerosync.mm.vm.vm import VM
    from workers.workloads.reclaim import page_bytes

    nr_pages = POLICY_PAGES
    a = _machine(nr_pages, lru=lru, swap_size=16 << 20, zmm=False, page_cluster=0)
    try:
        cpu = VM(a, 0)
        cpu.switch_to(cpu.task_create("bench"))
        n = int(nr_pages * 1.5)
        addr = cpu.mmap(0, n * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        ver = [1] * n
        for p in range(n):                                # the first touches
            cpu.store(addr + p * PG, page_bytes(0, p, 1))
        rng = random.Random(seed)
        z = ZipfSampler(n, 1.0, rng)
        warm = POLICY_WARM * n
        zipf = [z() for _ in range(warm + measured)]
        writes = [rng.randrange(100) < 30 for _ in zipf]
        resident = lru_resident(a)
        maj_ix = VE.vm_event_base(a, 0) + VE.PGMAJFAULT
        q = a.u64
        bad = res_sum = 0
        maj0 = 0
        for i, (p, w) in enumerate(zip(zipf, writes)):
            if i == warm:
                maj0 = q[maj_ix]
            if w:
                ver[p] += 1
                cpu.store(addr + p * PG, page_bytes(0, p, ver[p]))
            elif cpu.load(addr + p * PG, PG) != page_bytes(0, p, ver[p]):
                bad += 1
            if i >= warm:
                res_sum += resident()
        maj = q[maj_ix] - maj0
        frames = round(res_sum / measured)
        trace = list(range(n)) + zipf                     # the yardsticks see the whole run
        start = n + warm

        def in_window(miss: bytearray) -> int:
            return int(np.frombuffer(miss, dtype=np.uint8)[start:].sum())

        out = {"major_faults": maj, "frames": frames, "bad": bad, "opt": in_window(opt_misses(trace, frames)),
               "lru": in_window(lru_misses(trace, frames)), "a0": in_window(a0_misses(trace, frames, z.rank_of))}
        cpu.munmap(addr, n * PG)
        cpu.exit()
        cpu.leave()
        return out
    finally:
        swapoff(a)
        a.close()
        a.unlink()


def bench_policies() -> dict[str, float]:
    mg = _policy_run("mglru")
    cl = _policy_run("classic")
    bad3 = _coordinator_run()
    return {"mglru_vs_opt": mg["major_faults"] / max(1, mg["opt"]),
            "classic_vs_opt": cl["major_faults"] / max(1, cl["opt"]),
            "exact_lru_vs_opt": mg["lru"] / max(1, mg["opt"]), "a0_vs_opt": mg["a0"] / max(1, mg["opt"]),
            "policy_frames": mg["frames"], "mglru_major_faults": mg["major_faults"], "opt_faults": mg["opt"],
            "reclaim_data_mismatches": mg["bad"] + cl["bad"] + bad3}


def _coordinator_run() -> int:
    from aerosync.coordinator import run
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    scn = load_scenario(str(_SCEN / "reclaim-compress.toml"), registry(), ["run.duration=3", "run.check_interval=0"])
    res = run(scn)
    return int(res.workload["reclaim_data_mismatches"])


def bench_zmm() -> dict[str, float]:
    from aerosync.mm.reclaim.swapfile import swapoff
    from aerosync.mm.reclaim.zmm import zmm_stats
    from aerosync.mm.vm.vm import VM
    from workers.workloads.reclaim import page_bytes

    a = _machine(4096, swap_size=16 << 20, zmm=True)
    try:
        cpu = VM(a, 0)
        rec = cpu.reclaim
        zmm, dev = rec.zmm, rec.dev
        pfn = cpu.mm.alloc_pages(0, 0)
        phys = a.off("physmem") + pfn * PG
        pages = [page_bytes(0, k, 1 + k % 7) for k in range(400)]
        slots = [dev.get_swap_page() for _ in pages]
        t_total = 0.0
        for data, s in zip(pages, slots):
            a.u8[phys : phys + PG] = data
            t0 = time.perf_counter()
            zmm.store(s, pfn)
            t_total += time.perf_counter() - t0
        ratio = zmm_stats(a)["compression_ratio"]
        for data, s in zip(pages, slots):
            t0 = time.perf_counter()
            zmm.load(s, pfn)
            t_total += time.perf_counter() - t0
            if bytes(a.u8[phys : phys + PG]) != data:
                raise AssertionError("zmm round trip lost data")
            dev.put_cache(s)
        cpu.mm.free_pages(pfn, 0)
        cpu.leave()
        return {"zmm_ratio": ratio, "zmm_store_load_us": t_total / len(pages) * 1e6}
    finally:
        swapoff(a)
        a.close()
        a.unlink()


def bench_swap_page() -> dict[str, float]:
    """One anonymous page isolated, written to the swap file and freed (shrink_folio_list),
    then faulted back in (do_swap_page reading the file), per page."""
    from aerosync.mm.reclaim.swapfile import swapoff
    from aerosync.mm.vm import mm_types as T
    from aerosync.mm.vm import mmap as M
    from aerosync.mm.vm.pgtable import PTE_PFN_MASK
    from aerosync.mm.vm.vm import VM

    a = _machine(4096, swap_size=16 << 20, zmm=False, page_cluster=0)
    try:
        cpu = VM(a, 0)
        cpu.switch_to(cpu.task_create("bench"))
        rec = cpu.reclaim
        n = 200
        addr = cpu.mmap(0, n * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        for i in range(n):
            cpu.store(addr + i * PG, os.urandom(PG))
        rec.lru.lru_add_drain()
        q = a.u64
        P8 = a.off("physmem") >> 3
        root = q[(T.mm_off(a, cpu.current_mm()) + T.M_PGD) >> 3]
        from aerosync.mm.reclaim.vmscan import ScanControl

        t_total = 0.0
        done = 0
        for i in range(n):
            va = addr + i * PG
            want = cpu.load(va, PG)
            t = cpu.pt.walk(root, va)
            pfn = (q[P8 + (t << 9) + ((va >> 12) & 511)] & PTE_PFN_MASK) >> 12
            t0 = time.perf_counter()
            nid = rec.lru.nid_of(pfn)
            rec.lru.lock(nid)
            ok = rec.lru.isolate(nid, pfn)
            rec.lru.unlock(nid)
            if not ok:
                continue
            a.atomic.fetch_and64(P8 + (t << 9) + ((va >> 12) & 511) << 3, ~0x20 & ((1 << 64) - 1))
            got = rec.scan.shrink_folio_list([pfn], ScanControl(1, False, 0xFFFFFF))
            back = cpu.load(va, PG)
            t_total += time.perf_counter() - t0
            if got and back == want:
                done += 1
        cpu.munmap(addr, n * PG)
        cpu.exit()
        cpu.leave()
        return {"swap_out_in_page_us": t_total / max(1, done) * 1e6}
    finally:
        swapoff(a)
        a.close()
        a.unlink()


def bench_kswapd() -> dict[str, float]:
    from aerosync.mm.reclaim import layout as R
    from aerosync.mm.reclaim.swapfile import swapoff
    from aerosync.mm.vm import mmap as M
    from aerosync.mm.vm.vm import VM

    a = _machine(4096, nr_cpus=2, swap_size=32 << 20, zmm=True)
    try:
        cpu = VM(a, 0)
        tid = cpu.task_create("bench")
        cpu.switch_to(tid)
        n = 5000
        addr = cpu.mmap(0, n * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        for i in range(n):
            cpu.store64(addr + i * PG, i)
        cpu.reclaim.lru.lru_add_drain()
        k = VM(a, 1)                                  # kswapd's CPU
        lv = k.reclaim.off.lruvec(0)
        total_pages = total_ns = 0
        for _ in range(3):
            # push free memory below the low mark, then let kswapd balance the node
            pin = cpu.mmap(0, 600 * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
            for i in range(600):
                cpu.store64(pin + i * PG, i)
            cpu.reclaim.lru.lru_add_drain()
            cpu.tlb.enter_lazy()                      # cpu0 idles: kswapd's flushes skip it
            k.make_current()
            r0, t0 = a.u64[(lv + R.L_KSWAPD_RECLAIMED) >> 3], time.perf_counter_ns()
            k.reclaim.scan.balance_pgdat(0, 0, gfp_zone(GFP_HIGHUSER_MOVABLE))
            total_pages += a.u64[(lv + R.L_KSWAPD_RECLAIMED) >> 3] - r0
            total_ns += time.perf_counter_ns() - t0
            cpu.make_current()
            cpu.switch_to(tid)
            cpu.munmap(pin, 600 * PG)
        k.leave()
        cpu.munmap(addr, n * PG)
        cpu.exit()
        cpu.make_current()
        cpu.leave()
        return {"kswapd_pages_per_s": total_pages / max(1e-9, total_ns / 1e9)}
    finally:
        swapoff(a)
        a.close()
        a.unlink()


GROUPS = {
    "policies": (bench_policies, [("mglru_vs_opt", "x", "<= 1.5"), ("classic_vs_opt", "x", "reported"),
                                  ("exact_lru_vs_opt", "x", "reported"), ("a0_vs_opt", "x", "reported"),
                                  ("policy_frames", "pages", "reported"), ("mglru_major_faults", "faults", "reported"),
                                  ("opt_faults", "faults", "reported"), ("reclaim_data_mismatches", "bytes", "= 0")]),
    "zmm": (bench_zmm, [("zmm_ratio", "x", ">= 2"), ("zmm_store_load_us", "us", "reported")]),
    "swap": (bench_swap_page, [("swap_out_in_page_us", "us", "reported")]),
    "kswapd": (bench_kswapd, [("kswapd_pages_per_s", "pages/s", "reported")]),
}
