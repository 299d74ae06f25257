"""Kernel-library figures (issue 9's helper): the maple tree and the XArray in-process.

Both trees live in a booted SLUB machine with their kernel caches ("maple_node" 256 B
aligned 256, "radix_tree_node" 576 B aligned 64); replaced nodes go to a quarantine that
is freed every 256 writes (the grace period), so writes pay SLUB's alloc and free.

  * mt_find_10k_us: mt_find (find_vma: the first range ending at or above an address)
    in a tree of 10,000 ranges laid out like an mm (1-64 pages each; half adjacent to
    the next, half after a 1-16 page gap), at random addresses over the whole span;
  * mt_load_10k_us / mas_walk_10k_us: the same tree, exact-index lookups;
  * mt_store_us / mt_erase_us: insert a one-page range into a gap of that tree (an mmap)
    and erase it again (a munmap): each rebuilds a leaf (or splits/merges) and retires
    the old one;  mt_replace_us: the same-range entry replacement (one slot store);
  * mt_height_10k / mt_bytes_per_range: the tree's height and node bytes per range;
  * xa_load_us: xa_load at depth 3 (indices below 2^18, top shift 12);
  * xa_store_us: xa_store replacing present entries (existing nodes);
    xa_insert_us: xa_store into empty slots of existing nodes, erased again.
Each figure is the best of several passes over 2,000 random keys, net of the loop cost
(CPU time, so other processes on the box disturb it less).
"""

from __future__ import annotations

import random
import time
import timeit
from collections.abc import Callable
from typing import Any

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.lib.maple_tree import MAPLE_NODE_SIZE, MapleTree, mt_init
from aerosync.lib.xarray import XA_NODE_ALIGN, XA_NODE_SIZE, XArray, xa_init, xa_mk_value
from aerosync.mm.boot import create_machine
from aerosync.mm.pmm.init import single_node_sim
from aerosync.mm.slab.slab_common import VBASE, kmem_cache_create
from aerosync.mm.slab.slub import Slub

__all__ = ["GROUPS", "node_callbacks"]

NR_RANGES = 10_000
PAGE = 4096


def _machine() -> Arena:
    return create_machine({"nr_cpus": 1, "nr_pages": 16384, "sim": single_node_sim(1)},
                          [L.SectionSpec("libbench", 4096)])


def node_callbacks(arena: Arena, cache: Any, grace_every: int = 256) -> tuple[Callable[..., Any], ...]:
    """alloc_node / free_node / rcu_free_node over a SLUB cache handle, the RCU frees
    batched and released every `grace_every` calls (a stand-in grace period)."""
    delta = VBASE - arena.off("physmem")
    alloc, free = cache.alloc, cache.free
    pending: list[int] = []

    def alloc_node() -> int:
        addr = alloc()
        return addr - delta if addr else -1

    def free_node(off: int) -> None:
        free(off + delta)

    def rcu_free_node(off: int) -> None:
        pending.append(off)
        if len(pending) >= grace_every:
            for o in pending:
                free(o + delta)
            pending.clear()

    return alloc_node, free_node, rcu_free_node


def _per_op_us(fn: Callable[[int], Any], keys: list[int], passes: int = 7) -> float:
    def run() -> None:
        for k in keys:
            fn(k)

    def empty() -> None:
        for _ in keys:
            pass

    timer = time.process_time
    base = min(timeit.repeat(empty, number=3, repeat=passes, timer=timer))
    t = min(timeit.repeat(run, number=3, repeat=passes, timer=timer))
    return (t - base) / 3 / len(keys) * 1e6


def _mm_layout(rnd: random.Random) -> list[tuple[int, int]]:
    """10,000 ranges [start, end - 1] below 0x7f00_0000_0000, as mmap leaves them."""
    out, addr = [], 0x7F00_0000_0000
    for _ in range(NR_RANGES):
        size = rnd.randrange(1, 65) * PAGE
        gap = 0 if rnd.random() < 0.5 else rnd.randrange(1, 17) * PAGE
        addr -= size + gap
        out.append((addr, addr + size - 1))
    out.reverse()
    return out


def bench_maple() -> dict[str, float]:
    arena = _machine()
    try:
        return _maple(arena)
    finally:
        arena.close()
        arena.unlink()


def _maple(arena: Arena) -> dict[str, float]:
    kmem_cache_create(arena, "maple_node", MAPLE_NODE_SIZE, MAPLE_NODE_SIZE)
    cache = Slub(arena, 0).cache("maple_node")
    root = arena.off("libbench")
    mt_init(arena, root)
    t = MapleTree(arena, root, *node_callbacks(arena, cache))
    rnd = random.Random(9)
    ranges = _mm_layout(rnd)
    for k, (f, l) in enumerate(ranges):
        t.mas_store_range(f, l, VBASE + k * 256)
    lo, hi = ranges[0][0], ranges[-1][1]
    addrs = [rnd.randrange(lo, hi) for _ in range(2000)]
    gaps = [f - PAGE for (f, _), (_, pl) in zip(ranges[1:], ranges) if f - pl > PAGE + 1]
    holes = rnd.sample(gaps, min(2000, len(gaps)))
    out = {
        "mt_find_10k_us": _per_op_us(t.mt_find, addrs),
        "mt_load_10k_us": _per_op_us(t.mtree_load, addrs),
        "mas_walk_10k_us": _per_op_us(t.mas_walk, addrs),
        "mt_height_10k": float(t.mt_height()),
        "mt_bytes_per_range": t.mt_nr_nodes() * MAPLE_NODE_SIZE / NR_RANGES,
    }
    store, timer = t.mas_store_range, time.process_time
    best_s = best_e = float("inf")
    for _ in range(3):
        t0 = timer()
        for f in holes:
            store(f, f + PAGE - 1, 0x1000)
        t1 = timer()
        for f in holes:
            store(f, f + PAGE - 1, 0)
        t2 = timer()
        best_s, best_e = min(best_s, t1 - t0), min(best_e, t2 - t1)
    out["mt_store_us"] = best_s / len(holes) * 1e6
    out["mt_erase_us"] = best_e / len(holes) * 1e6
    starts = [ranges[rnd.randrange(NR_RANGES)] for _ in range(2000)]
    out["mt_replace_us"] = _per_op_us(lambda fl: store(fl[0], fl[1], 0x2000), starts)  # type: ignore[arg-type]
    errs = t.mt_validate()
    if errs:
        raise AssertionError(f"bench lib: maple tree invalid after the run: {errs[:3]}")
    return out


def bench_xarray() -> dict[str, float]:
    arena = _machine()
    try:
        return _xarray(arena)
    finally:
        arena.close()
        arena.unlink()


def _xarray(arena: Arena) -> dict[str, float]:
    kmem_cache_create(arena, "radix_tree_node", XA_NODE_SIZE, XA_NODE_ALIGN)
    cache = Slub(arena, 0).cache("radix_tree_node")
    root = arena.off("libbench")
    xa_init(arena, root)
    xa = XArray(arena, root, *node_callbacks(arena, cache))
    rnd = random.Random(4)
    present = rnd.sample(range(1 << 18), 40_000)           # ~15% of 2^18: every node exists
    for i in present:
        xa.xa_store(i, xa_mk_value(i))
    keys = rnd.sample(present, 2000)
    absent = sorted(set(range(1 << 18)) - set(present))
    empty = rnd.sample(absent, 2000)
    store, erase = xa.xa_store, xa.xa_erase
    out = {
        "xa_load_us": _per_op_us(xa.xa_load, keys),
        "xa_store_us": _per_op_us(lambda i: store(i, xa_mk_value(i + 1)), keys),
    }
    timer = time.process_time
    best = float("inf")
    for _ in range(5):
        t0 = timer()
        for i in empty:
            store(i, 0x1000)
        best = min(best, timer() - t0)
        for i in empty:
            erase(i)
    out["xa_insert_us"] = best / len(empty) * 1e6
    out["xa_nodes_depth3"] = float(xa.xa_nr_nodes())
    errs = xa.xa_validate()
    if errs:
        raise AssertionError(f"bench lib: xarray invalid after the run: {errs[:3]}")
    return out


GROUPS = {
    "maple": (bench_maple, [("mt_find_10k_us", "us", "<= 1.2"), ("mt_load_10k_us", "us", "reported"),
                            ("mas_walk_10k_us", "us", "reported"), ("mt_store_us", "us", "reported"),
                            ("mt_erase_us", "us", "reported"), ("mt_replace_us", "us", "reported"),
                            ("mt_height_10k", "", "reported"), ("mt_bytes_per_range", "B", "reported")]),
    "xarray": (bench_xarray, [("xa_load_us", "us", "<= 0.3"), ("xa_store_us", "us", "<= 0.6"),
                              ("xa_insert_us", "us", "reported"), ("xa_nodes_depth3", "", "reported")]),
}
