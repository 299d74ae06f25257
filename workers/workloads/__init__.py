"""The workload registry: name -> module.  An explicit dict, no plugin magic.

Every workload module provides:

    Params                      frozen dataclass; fields with defaults are the [workload] keys
    COUNTERS: tuple[str, ...]   names of the per-CPU counters it publishes (<= NR_CPU_COUNTERS)
    sections(params, nr_cpus) -> list[SectionSpec]          extra arena sections it needs
    setup(arena, params, nr_cpus) -> None                   coordinator, before workers start
    make_batch(arena, cpu, params, rng) -> Callable[[int], None]
                                run n operations on simulated CPU `cpu` (worker process)
    report(arena, params, result) -> dict                  figures and checks after the run
    recover(arena, params, cpu, records, mm, slub) -> dict optional: give back what dead
                                CPU `cpu` held ([run] on_cpu_death; mm/recovery.py)

`make_batch` runs in the pinned worker; it binds what its loop needs and publishes its
counters with plain stores to its own per-CPU area (the owner is the only writer).
The harness times one call of `batch(1)` after each batch for the latency histogram, so
per-batch housekeeping (draining an inbound ring) is skipped when n == 1: the sampled
latency is one operation's.  Optional attributes of the batch function: `teardown()`
(run once after the last batch: give back what the CPU holds) and `poll()` (run while
the CPU is parked at a pause barrier: answer IPIs and nothing that changes memory --
mm/vm workloads pass VM.park_poll, never VM.poll, whose RCU callbacks free memory).
"""

from __future__ import annotations

from types import ModuleType

from workers.workloads import (
    brk1,
    bug_corpus,
    counter_storm,
    crash_soak,
    fault,
    fault_churn,
    fork_cow,
    fragmentation,
    kmalloc_sweep,
    larson,
    lock_storm,
    mmap1,
    mmap2,
    null,
    numa_access,
    page_fault1,
    page_fault2,
    page_fault3,
    page_storm,
    reclaim,
    slab_bulk,
    slub_churn,
    stack_depth,
    vma_churn,
    vmalloc_storm,
    xmalloc,
)

__all__ = ["WORKLOADS", "registry"]

WORKLOADS: dict[str, ModuleType] = {
    "null": null,
    "counter_storm": counter_storm,
    "lock_storm": lock_storm,
    "fault": fault,
    "page_storm": page_storm,
    "page_fault1": page_fault1,
    "page_fault2": page_fault2,
    "page_fault3": page_fault3,
    "mmap1": mmap1,
    "mmap2": mmap2,
    "brk1": brk1,
    "fork_cow": fork_cow,
    "fault_churn": fault_churn,
    "vma_churn": vma_churn,
    "numa_access": numa_access,
    "fragmentation": fragmentation,
    "slub_churn": slub_churn,
    "larson": larson,
    "xmalloc": xmalloc,
    "slab_bulk": slab_bulk,
    "kmalloc_sweep": kmalloc_sweep,
    "vmalloc_storm": vmalloc_storm,
    "stack_depth": stack_depth,
    "bug_corpus": bug_corpus,
    "reclaim": reclaim,
    "crash_soak": crash_soak,
}


def registry() -> dict[str, type]:
    """name -> Params dataclass, for scenario validation."""
    return {name: mod.Params for name, mod in WORKLOADS.items()}
