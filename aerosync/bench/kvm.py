"""Kernel virtual memory and hardening figures (issue 11): vmalloc's paths, lazy purging,
the sanitizers' detection and cost.

  * vmalloc_small_pair_us: vmalloc(8 KiB) + vfree on one CPU -- a sub-range of the CPU's
    vmap_block (2 pages and a guard) and its vb_free; blocks retire and purge as they
    fill, their share of that is in the figure (best of 3 rounds of 400 pairs);
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
    in %.  The two machines of each comparison run alternately (5 rounds each) and the
    medians are compared, so load on the shared host falls on both.
"""

from __future__ import annotations

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
    for _ in range(max(8, n // 8)):                # warm: host pages touched, a block in use
        free(alloc(size))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            free(alloc(size))
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
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
def _churn(vm: Any, ops: int, seed: int = 7) -> float:
    """Seconds per operation of the slub-churn loop (see the module docstring)."""
    from aerosync.mm.slab.kmalloc import Kmalloc

    km = Kmalloc(vm.slub)
    kmalloc, kfree = km.kmalloc, km.kfree
    kmem = vm.kernel.kmem
    store64, load64 = kmem.store64, kmem.load64
    rng = random.Random(seed)
    randrange = rng.randrange
    held: list[int] = []
    t0 = time.perf_counter()
    for i in range(ops):
        if len(held) >= 64:
            x = held.pop(randrange(len(held)))
            if load64(x) != x:
                raise RuntimeError("kvm bench: a stamp changed")
            kfree(x)
        p = kmalloc(64)
        store64(p, p)
        held.append(p)
        _ = i
    dt = time.perf_counter() - t0
    for x in held:
        kfree(x)
    return dt / ops


def _overhead(debug: dict[str, Any], ops: int = 6000, rounds: int = 5) -> float:
    """Median time per churn operation with `debug` over without (alternating rounds)."""
    plain, other = _machine(), _machine(debug)
    vms: list[Any] = []
    try:
        vp, vo = _with_task(plain), _with_task(other)
        vms += [vp, vo]
        _churn(vp, ops // 4)
        _churn(vo, ops // 4)
        tp, to = [], []
        for r in range(rounds):
            tp.append(_churn(vp, ops, r))
            to.append(_churn(vo, ops, r))
        return statistics.median(to) / statistics.median(tp)
    finally:
        for a, v in zip((plain, other), vms + [None] * (2 - len(vms))):
            _close(a, v)


def bench_overhead() -> dict[str, float]:
    return {"kasan_overhead_x": _overhead({"kasan": True}, ops=3000),
            "kfence_overhead_pct": (_overhead({"kfence_sample_interval": 100}) - 1.0) * 100.0}


GROUPS = {
    "vmalloc": (bench_vmalloc, [("vmalloc_small_pair_us", "us", "<= 0.5 x vmalloc_area_pair_us"),
                                ("vmalloc_area_pair_us", "us", "reported"),
                                ("vfree_shootdowns_per_1000", "", "<= 2")]),
    "corpus": (bench_corpus, [("kasan_detect_pct", "%", "= 100")]),
    "overhead": (bench_overhead, [("kasan_overhead_x", "x", "reported"), ("kfence_overhead_pct", "%", "<= 5")]),
}
