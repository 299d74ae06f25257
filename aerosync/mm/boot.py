"""Boot a simulated machine: the arena's sections for memory management, and their init.

Models: start_kernel()'s memory part (mm_core_init: the page allocator, then
kmem_cache_init, then the virtual-memory core: paging_init, the zero page, init_mm).
Unit: one arena.  Virtual memory is booted when the configuration has a "vm" table
(every run has one: the scenario's [vm] section, defaults included); it needs SLUB.
With it comes process-memory NUMA's section (mm/numa/numa_types.py: policies, shared
policies, per-task NUMA state, the [numa] balancing knobs).
The coordinator, the benchmarks and the tests all build machines here, so a machine is
laid out and booted one way only.

Single-process and lock-free: it runs before any worker exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.mm.numa.numa_types import numa_init, numa_sections
from aerosync.mm.pmm.init import mm_init, mm_sections
from aerosync.mm.slab.slab_common import slab_init, slab_sections
from aerosync.mm.vm.init import vm_init
from aerosync.mm.vm.mm_types import vm_sections

__all__ = ["machine_sections", "boot", "create_machine"]


def machine_sections(config: dict[str, Any], slab: bool = True) -> list[L.SectionSpec]:
    """Base sections + the page allocator's (+ SLUB's) for `config` (nr_cpus, nr_pages, ...)."""
    specs = [*L.base_sections(int(config["nr_cpus"]), int(config["nr_pages"])), *mm_sections(config)]
    if slab:
        specs += slab_sections(config)
        if config.get("vm") is not None:
            specs += vm_sections(config) + numa_sections(config)
            from aerosync.mm.reclaim.layout import reclaim_sections

            specs += reclaim_sections(config)
    return specs


def boot(arena: Arena) -> None:
    """mm_init, then slab_init and vm_init when the arena has their sections."""
    mm_init(arena)
    if "slabcaches" in arena.sections:
        slab_init(arena)
        if "vmhdr" in arena.sections:
            vm_init(arena)
            if "numa" in arena.sections:
                numa_init(arena)          # process-memory NUMA: policies, balancing knobs
            if "reclaim" in arena.sections:
                from aerosync.mm.reclaim.init import reclaim_init

                reclaim_init(arena)


def create_machine(config: dict[str, Any], extra: Sequence[L.SectionSpec] = (), slab: bool = True,
                   name: str | None = None) -> Arena:
    """Create and boot an arena; on any failure nothing is left behind (closed, unlinked)."""
    arena = Arena.create(config, [*machine_sections(config, slab), *extra], name=name)
    try:
        boot(arena)
    except BaseException:
        arena.close()
        arena.unlink()
        raise
    return arena
