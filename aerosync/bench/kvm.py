"""Kernel virtual memory and hardening figures (issue 11): vmalloc's paths, lazy purging,
the sanitizers' detection and cost.

  * vmalloc_small_pair_us: vmalloc(8 KiB) + vfree on one CPU -- a sub-range of the CPU's
    vmap_block (2 pages and a guard) and its vb_free; blocks retire and purge as they
    fill, their share of that is in the figure (best of 3 rounds of 400 pairs, in the
    thread's CPU time: see _pairs_us);
  * vmalloc_area_pair_us: vmalloc(1 MiB) + vfree -- its own vmap_area in the slice's
    maple tree, 256 pages allocated and mapped, then unmapped, freed, the area lazy
    (best of 3 rounds of 20 pairs); target: small <= 0.5 x area;
  * vfree_shootdowns_per_1000: 1000 areas of 64 KiB vmalloc'ed, then all vfree'd with
    the default lazy_max_pages (32 MiB): the kernel-range TLB shootdowns the purges
    issued (vmalloc header nr_purge_flushes), per 1000 vfrees;
  * kasan_detect_pct: the bug corpus (workers/workloads/bug_corpus.py, every bug once)
    on a KASAN machine: % caught (with a report naming the right sites);
  * kasan_overhead_x: a slub-churn loop -- kmalloc(64) with up to 64 held, a random one
    kfree'd, a stamp word stored and read back through the kernel's access path -- its
    time per operation with KASAN over without (= throughput without / with);
  * kfence_overhead_pct: the same loop with KFENCE at sample interval 100 over without,
    in %.  Both comparisons run the two machines in short interleaved segments
    (A-B-B-A, then B-A-A-B), timed in the thread's CPU time with the cyclic collector off,
    on several fresh machine pairs, and take the median of the per-repetition ratios (see
    _overhead): a ratio of two whole runs taken seconds apart on a loaded host swung from
    -11 % to +94 %;
  * kfence_guarded_pair_us: one guarded allocation + free in the KFENCE pool (what the
    sampling spreads over the interval: the overhead is about the fast path's gate
    compare and kfree's range compare plus this / interval per operation -- in the loop
    this path runs about twice as slow as here, its code and pool page gone cold).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from typing import Any

from aerosync.arena.segment import Arena
from aerosync.mm.boot import create_machine
from aerosync.mm.pmm.init import single_node_sim
from aerosync.mm.vm import vmalloc_layout as VL

__all__ = ["GROUPS"]

_PAGES = 16384                         # 64 MiB machines


def _machine(debug: dict[str, Any] | None = None, pages: int = _PAGES, **vmalloc: Any) -> Arena:
    return create_machine({"nr_cpus": 1, "nr_pages": pages, "sim": single_node_sim(1), "vm": {},
                           "debug": debug or {}, "vmalloc": vmalloc})


def _with_task(arena: Arena) -> Any:
    from aerosync.mm.vm.vm import VM

    vm = VM(arena, 0)
    vm.switch_to(vm.task_create("bench"))
    return vm


def _close(arena: Arena, vm: Any) -> None:
    try:
        if vm is not None:
            if vm.current_task() >= 0:
                vm.exit()
            vm.leave()
    finally:
        arena.close()
        arena.unlink()


def _pairs_us(alloc: Any, free: Any, size: int, n: int, rounds: int = 3) -> float:
    """Microseconds per alloc + free pair: best of `rounds`, in this thread's CPU time,
    which leaves out the time the host gave other processes (the pairs sleep nowhere: one
    CPU, the purge's shootdown is a local flush).  Wall time mostly measured the host's
    load: the same code read 18.8, 29.2 and 59.5 us for vmalloc_small_pair_us on a quiet,
    a busy and a saturated 2-CPU host, while its instruction count per pair (cachegrind)
    stayed within 3 % from commit 05e6744 to 4f35540.  CPU time still rises with load
    (shared caches, a busy sibling thread): compare figures taken side by side."""
    for _ in range(max(8, n // 8)):                # warm: host pages touched, a block in use
        free(alloc(size))
    clock = time.thread_time
    best = float("inf")
    for _ in range(rounds):
        t0 = clock()
        for _ in range(n):
            free(alloc(size))
        best = min(best, (clock() - t0) / n * 1e6)
    return best


# ------------------------------------------------------------------ vmalloc
def bench_vmalloc() -> dict[str, float]:
    a = _machine(pages=2 * _PAGES)      # 1000 x 64 KiB live at once: 128 MiB
    vm = None
    try:
        vm = _with_task(a)
        v = vm.kernel.vmalloc
        small = _pairs_us(v.vmalloc, v.vfree, 8192, 400)
        area = _pairs_us(v.vmalloc, v.vfree, 1 << 20, 20)
        v.purge_vmap_area_lazy()
        base = a.off("vmalloc")
        f0 = a.u64[(base + VL.H_NR_FLUSHES) >> 3]
        addrs = [v.vmalloc(64 << 10) for _ in range(1000)]
        if not all(addrs):
            raise RuntimeError("vfree_shootdowns_per_1000: vmalloc(64 KiB) failed on a 128 MiB machine")
        for x in addrs:
            v.vfree(x)
        shoot = a.u64[(base + VL.H_NR_FLUSHES) >> 3] - f0
        return {"vmalloc_small_pair_us": small, "vmalloc_area_pair_us": area,
                "vfree_shootdowns_per_1000": float(shoot)}
    finally:
        _close(a, vm)


# ------------------------------------------------------------------ the corpus under KASAN
def bench_corpus() -> dict[str, float]:
    from aerosync.mm.san.report import set_console
    from workers.workloads.bug_corpus import BUGS, CORPUS_CACHE, Corpus

    a = _machine({"kasan": True})
    vm = None
    old = set_console(False)
    try:
        from aerosync.mm.slab.slab_common import kmem_cache_create

        kmem_cache_create(a, CORPUS_CACHE, 64, 8)
        vm = _with_task(a)
        corpus = Corpus(vm)
        got = [corpus.run(b) for b in BUGS]
        caught = sum(1 for c, sites, _ in got if c and sites)
        return {"kasan_detect_pct": 100.0 * caught / len(BUGS)}
    finally:
        set_console(old)
        _close(a, vm)


# ------------------------------------------------------------------ sanitizer overhead
class _Churn:
    """The slub-churn loop on one machine, run in segments: kmalloc(64) with up to 64
    held, a random one kfree'd, a stamp word stored and read back through the kernel's
    access path.  The held objects and the random stream carry over from one segment to
    the next, so two machines given the same segments do the same operations."""

    def __init__(self, vm: Any, seed: int = 7) -> None:
        from aerosync.mm.slab.kmalloc import Kmalloc

        km = Kmalloc(vm.slub)                  # built once: a Kmalloc per segment made garbage
        self.kmalloc, self.kfree = km.kmalloc, km.kfree    # the collector then charged to one side
        self.store64, self.load64 = vm.kernel.kmem.store64, vm.kernel.kmem.load64
        self.randrange = random.Random(seed).randrange
        self.held: list[int] = []

    def run(self, ops: int) -> float:
        """CPU seconds of this thread for `ops` operations: time the host gave to other
        processes is not counted (wall time under load measured the scheduler)."""
        kmalloc, kfree, store64, load64 = self.kmalloc, self.kfree, self.store64, self.load64
        randrange, held = self.randrange, self.held
        clock = time.thread_time
        t0 = clock()
        for _ in range(ops):
            if len(held) >= 64:
                x = held.pop(randrange(len(held)))
                if load64(x) != x:
                    raise RuntimeError("kvm bench: a stamp changed")
                kfree(x)
            p = kmalloc(64)
            store64(p, p)
            held.append(p)
        return clock() - t0

    def drain(self) -> None:
        for x in self.held:
            self.kfree(x)
        self.held.clear()


def _overhead(debug: dict[str, Any], seg: int = 500, reps: int = 20, pairs: int = 4) -> float:
    """Time per churn operation with `debug` over without: the median, over `pairs` fresh
    machine pairs of `reps` repetitions each, of (B + B) / (A + A) for short segments run
    A-B-B-A (B-A-A-B every other repetition), A the plain machine and B the other, in
    this thread's CPU time with the cyclic collector off.  Load on the shared host changes
    slowly against a segment (a millisecond or two), so it falls on both sides of every
    ratio; the median drops the repetitions a preemption or a cache flush still hit.
    Several pairs, because one pair's figure carries its arenas' placement in memory:
    eight pairs of 60 repetitions on the quiet box had medians from 4.2 to 6.5 % (KFENCE),
    each pair's halves agreeing better than the pairs did."""
    ratios: list[float] = []
    for _ in range(pairs):
        ratios += _overhead_pair(debug, seg, reps)
    return statistics.median(ratios)


def _overhead_pair(debug: dict[str, Any], seg: int, reps: int) -> list[float]:
    plain, other = _machine(), _machine(debug)
    vms: list[Any] = []
    churns: list[_Churn] = []
    was = gc.isenabled()
    try:
        vp, vo = _with_task(plain), _with_task(other)
        vms += [vp, vo]
        a, b = _Churn(vp), _Churn(vo)
        churns += [a, b]
        a.run(2 * seg)                         # warm: slabs allocated, sites in the caches
        b.run(2 * seg)
        gc.collect()
        gc.disable()
        ratios = []
        for r in range(reps):
            if r & 1:
                tb = b.run(seg)
                ta = a.run(seg) + a.run(seg)
                tb += b.run(seg)
            else:
                ta = a.run(seg)
                tb = b.run(seg) + b.run(seg)
                ta += a.run(seg)
            ratios.append(tb / ta)
        return ratios
    finally:
        if was:
            gc.enable()
        for c in churns:
            c.drain()
        for m, v in zip((plain, other), vms + [None] * (2 - len(vms))):
            _close(m, v)


def _guarded_pair_us(interval: int = 100, n: int = 400) -> float:
    """One KFENCE guarded allocation and free (kfence_guarded_alloc/free, a track saved
    with each), in this thread's CPU time: the cost the sampling spreads over `interval`
    allocations."""
    a = _machine({"kfence_sample_interval": interval})
    vm = None
    try:
        vm = _with_task(a)
        kf = vm.slub.san.kfence
        kmalloc64 = vm.slub.cache("kmalloc-64")
        cid, align = kmalloc64.id, 8
        alloc, free = kf.alloc, kf.free
        clock = time.thread_time
        best = float("inf")
        for _ in range(5):
            t0 = clock()
            for _ in range(n):
                free(alloc(cid, 64, align, 0))
            best = min(best, (clock() - t0) / n * 1e6)
        return best
    finally:
        _close(a, vm)


def bench_overhead() -> dict[str, float]:
    return {"kasan_overhead_x": _overhead({"kasan": True}, seg=100, reps=8, pairs=3),
            "kfence_overhead_pct": (_overhead({"kfence_sample_interval": 100}) - 1.0) * 100.0,
            "kfence_guarded_pair_us": _guarded_pair_us()}


GROUPS = {
    "vmalloc": (bench_vmalloc, [("vmalloc_small_pair_us", "us", "<= 0.5 x vmalloc_area_pair_us"),
                                ("vmalloc_area_pair_us", "us", "reported"),
                                ("vfree_shootdowns_per_1000", "", "<= 2")]),
    "corpus": (bench_corpus, [("kasan_detect_pct", "%", "= 100")]),
    "overhead": (bench_overhead, [("kasan_overhead_x", "x", "reported"), ("kfence_overhead_pct", "%", "<= 5"),
                                 ("kfence_guarded_pair_us", "us", "reported")]),
}
