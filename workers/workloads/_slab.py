"""The engine behind the slab workloads: objects stamped, handed between CPUs, verified.

Every object a CPU allocates gets the word `cpu << 48 | seq` in its first and last 8
bytes (objects are at least 8 bytes and 8-aligned); whoever frees it checks both words
first, so an object handed to two owners at once is caught and counted as `corrupt`.
Objects travel between CPUs through per-CPU multi-producer single-consumer rings (the
"slabring" section, protocol in workers/workloads/_pages.py: xmalloc points several
producer CPUs at one consumer), which is what makes frees remote for SLUB (the free
lands on a slab that is not the freeing CPU's).

Each workload module is a thin Params + make_batch over `Engine`; they share `report`,
which frees what is still queued in the rings (coordinator, after the workers left) and
adds SLUB's own counters (fast/slow paths, CAS failures) from mm/slab/slab_common.py:slab_stats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.pmm.page_alloc import MM
from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.slab_common import VBASE, kmem_cache_create, kmem_cache_lookup, live_caches, slab_stats
from aerosync.mm.slab.slub import Slub
from workers.workloads._common import counter_index
from workers.workloads._pages import Ring, cpu_policy_allocator, ring_section

__all__ = ["COUNTERS", "Engine", "sections", "cache_name", "create_cache", "report", "check_params",
           "workload_sections", "workload_report", "no_setup", "cache_setup"]

COUNTERS: tuple[str, ...] = ("allocs", "frees", "alloc_fail", "remote_frees", "corrupt", "idle_polls")
SECTION = "slabring"


def sections(nr_cpus: int) -> list[SectionSpec]:
    return [ring_section(nr_cpus, SECTION)]


def check_params(params: Any) -> str | None:
    """The checks every slab workload's Params shares (size, cross_cpu_pct, max_held)."""
    size = getattr(params, "size", None)
    if size is not None and (not 8 <= size <= 8192 or size % 8):
        return f"size = {size}: a multiple of 8 in 8..8192"
    held = getattr(params, "max_held", None)
    if held is not None and not 1 <= held <= 1 << 16:
        return f"max_held = {held}: allowed 1..65536"
    if not 0 <= params.cross_cpu_pct <= 100:
        return f"cross_cpu_pct = {params.cross_cpu_pct}: a percentage 0..100"
    return None


# The module-level hooks the workload interface asks for (workers/workloads/__init__.py).
def workload_sections(params: Any, nr_cpus: int) -> list[SectionSpec]:
    return sections(nr_cpus)


def no_setup(arena: Arena, params: Any, nr_cpus: int) -> None:
    """Nothing to prepare: the kmalloc caches exist from boot."""


def cache_setup(arena: Arena, params: Any, nr_cpus: int) -> None:
    """The workload's dedicated cache "aero-obj-<size>", created before the workers start."""
    create_cache(arena, params.size)


def workload_report(arena: Arena, params: Any, result: dict[str, Any]) -> dict[str, Any]:
    return report(arena, result)


def cache_name(size: int) -> str:
    return f"aero-obj-{size}"


def create_cache(arena: Arena, size: int) -> None:
    """A dedicated cache of `size`-byte objects (SLAB_HWCACHE_ALIGN off: packed, as most)."""
    if kmem_cache_lookup(arena, cache_name(size)) < 0:
        kmem_cache_create(arena, cache_name(size), size)


class Engine:
    """One CPU's allocator handles, counters, stamps and ring, bound once."""

    __slots__ = ("arena", "cpu", "nr_cpus", "slub", "km", "q", "c", "stamp", "check", "ring", "seq_box")

    def __init__(self, arena: Arena, cpu: int, to_cpu: int | None = None) -> None:
        self.arena, self.cpu = arena, cpu
        self.nr_cpus = int(arena.config["nr_cpus"])
        self.slub = Slub(arena, cpu, MM(arena, cpu))
        pa = cpu_policy_allocator(arena, self.slub.mm)      # [numa] policy: get_any_partial's start
        if pa is not None:
            self.slub.slab_node = pa.slab_node
        self.km = Kmalloc(self.slub)
        self.q = arena.u64
        self.c = counter_index(arena, cpu, 0)
        self.ring = Ring(arena, cpu, self.nr_cpus, SECTION, to_cpu)
        q, phys = arena.u64, arena.off("physmem") - VBASE

        def stamp(addr: int, size: int, value: int) -> None:
            i = (phys + addr) >> 3
            q[i] = value
            q[i + (size >> 3) - 1] = value

        def check(addr: int, size: int, value: int) -> bool:
            i = (phys + addr) >> 3
            return q[i] == value and q[i + (size >> 3) - 1] == value

        self.stamp, self.check = stamp, check


def pack(addr: int, size: int) -> int:
    """Ring entry: object address (direct map, 47 bits of offset) with its size class."""
    return (addr - VBASE) << 16 | size


def unpack(entry: int) -> tuple[int, int]:
    return (entry >> 16) + VBASE, entry & 0xFFFF


def report(arena: Arena, result: dict[str, Any], free_obj: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Free ring leftovers (every worker has left), then totals and SLUB's counters."""
    nr_cpus = len(result["cpus"])
    km = Kmalloc(Slub(arena, 0, MM(arena, 0)))
    leftovers = 0
    for c in range(nr_cpus):
        for entry in Ring(arena, c, nr_cpus, SECTION).pop_all():
            addr, _ = unpack(entry)
            (free_obj or km.kfree)(addr)
            leftovers += 1
    tot = {k: sum(c["counters"].get(k, 0) for c in result["cpus"]) for k in COUNTERS}
    stats: dict[str, int] = {}
    for cid in live_caches(arena):
        for k, v in slab_stats(arena, cid).items():
            stats[k] = stats.get(k, 0) + v
    ops = stats.get("alloc", 0) + stats.get("free", 0)
    # Every slab workload gives back all it allocated (teardown + the rings above), so any
    # object still counted as allocated now was lost on the way: a leak.
    leaked = stats.get("alloc", 0) - stats.get("free", 0)
    return {**tot, "ring_leftovers_freed": leftovers, "leaked_objects": leaked,
            "slub_alloc_fastpath": stats.get("alloc_fastpath", 0),
            "slub_alloc_slowpath": stats.get("alloc_slowpath", 0),
            "slub_free_fastpath": stats.get("free_fastpath", 0),
            "slub_free_slowpath": stats.get("free_slowpath", 0),
            "slub_free_mag": stats.get("free_mag", 0),
            "slub_cmpxchg_fail": stats.get("cmpxchg_fail", 0),
            "slub_cas_retry_pct": round(100.0 * stats.get("cmpxchg_fail", 0) / ops, 4) if ops else 0.0}
