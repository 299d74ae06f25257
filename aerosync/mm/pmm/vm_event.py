"""The kernel's vm event and node stat counters, per simulated CPU, summed on read.

Models: include/linux/vm_event_item.h (enum vm_event_item: pgfault, pgmajfault, the TLB,
reclaim, NUMA balancing, migration, swap and per-VMA lock events) and include/linux/
mmzone.h (enum node_stat_item: nr_anon_pages, nr_mapped, nr_file_pages,
nr_page_table_pages, the LRU sizes, workingset...), with mm/vmstat.c's fold-on-read.
Unit: one counter of one CPU; names and order are /proc/vmstat's (v6.19 vmstat_text),
so views print them without a translation table.  The page allocator's own events
(pgalloc_<zone>, pgfree, numa_*) stay in mm/pmm/mmzone.py's mmstat record.

CONFIG the tables follow (the enums are #ifdef'd; checked against v6.19's mmzone.h,
vm_event_item.h and vmstat.c, and against the saved 6.18 x86-64 host in
tests/fixtures/host-6.18, whose sequence v6.19 keeps): x86-64 with NUMA, SWAP, ZSWAP,
KSM, IOMMU_SUPPORT, NUMA_BALANCING, HUGETLB_PAGE, MIGRATION, COMPACTION,
TRANSPARENT_HUGEPAGE (+ HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD), MEMORY_BALLOON +
BALLOON_COMPACTION, ZONE_DEVICE (the *_device zone items) -- all =y as on the host;
SHADOW_CALL_STACK, CMA, DEBUG_STACK_USAGE =n as on the host.  Two differ from the host
on purpose: DEBUG_TLBFLUSH=y (nr_tlb_*: AeroSync's shootdown IPIs are counted) and
PER_VMA_LOCK_STATS=y (vma_lock_*: the per-VMA lock fault path is counted).  Items no
subsystem counts yet (nr_iommu_pages, nr_hugetlb, thp_*, balloon_*, direct_map_* ...)
stay 0, which is what such a kernel prints on an idle feature.

Arena section "vmevents": one record per CPU (VMEV_REC_SIZE(nr_nodes) bytes, 64-byte
aligned, at cpu * size)::

    [0, NR_VM_EVENTS) u64          vm events of this CPU (monotonic)
    NR_VM_EVENTS + nid * NR_NODE_STATS + item   i64
                                   node stat deltas this CPU applied to node nid (a
                                   page mapped on CPU 0 and unmapped on CPU 1 leaves
                                   +1 and -1: the sum over CPUs is the node's value)

Owner-only data: a CPU writes only its own record, with plain `+=` on the arena's u64 /
i64 views (one writer, aligned words, never torn); readers (views, the checker, the
coordinator) sum all records without locks, like the kernel's vmstat fold.
Deliberate races: a sum taken on a live run mixes instants, as /proc/vmstat does.

Usage on a hot path: bind `ev = vm_event_base(arena, cpu)` (an index into arena.u64)
and `ns = node_stat_base(arena, cpu)` (an index into arena.i64) once, then
`u64[ev + PGFAULT] += 1` and `i64[ns + nid * NR_NODE_STATS + NR_ANON_PAGES] += 1`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.arena.layout import SectionSpec, align_up
from aerosync.params import CACHE_LINE

__all__ = ["NODE_STAT_NAMES", "VM_EVENT_NAMES", "AEROSYNC_VM_EVENTS", "NR_NODE_STATS", "NR_VM_EVENTS", "vmev_rec_size",
           "vmevents_section", "vm_event_base", "node_stat_base", "fold_vm_events", "fold_node_stats",
           "count_vm_event"]

# enum node_stat_item, in /proc/vmstat order (pages unless the name says otherwise;
# nr_kernel_stack is in KiB, as Linux's)
NODE_STAT_NAMES = ("nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
    "nr_unevictable", "nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_isolated_anon", "nr_isolated_file",
    "workingset_nodes", "workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
    "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
    "workingset_nodereclaim", "nr_anon_pages", "nr_mapped", "nr_file_pages", "nr_dirty", "nr_writeback",
    "nr_shmem", "nr_shmem_hugepages", "nr_shmem_pmdmapped", "nr_file_hugepages", "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages", "nr_vmscan_write", "nr_vmscan_immediate_reclaim", "nr_dirtied",
    "nr_written", "nr_throttled_written", "nr_kernel_misc_reclaimable", "nr_foll_pin_acquired",
    "nr_foll_pin_released", "nr_kernel_stack", "nr_page_table_pages", "nr_sec_page_table_pages",
    "nr_iommu_pages", "nr_swapcached", "pgpromote_success", "pgpromote_candidate", "pgpromote_candidate_nrl",
    "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged", "pgdemote_proactive", "nr_hugetlb",
    "nr_balloon_pages", "nr_kernel_file_pages",)
(NR_INACTIVE_ANON, NR_ACTIVE_ANON, NR_INACTIVE_FILE, NR_ACTIVE_FILE, NR_UNEVICTABLE, NR_SLAB_RECLAIMABLE,
 NR_SLAB_UNRECLAIMABLE, NR_ISOLATED_ANON, NR_ISOLATED_FILE, WORKINGSET_NODES, WORKINGSET_REFAULT_ANON,
 WORKINGSET_REFAULT_FILE, WORKINGSET_ACTIVATE_ANON, WORKINGSET_ACTIVATE_FILE, WORKINGSET_RESTORE_ANON,
 WORKINGSET_RESTORE_FILE, WORKINGSET_NODERECLAIM, NR_ANON_PAGES, NR_MAPPED, NR_FILE_PAGES, NR_DIRTY,
 NR_WRITEBACK, NR_SHMEM, NR_SHMEM_HUGEPAGES, NR_SHMEM_PMDMAPPED, NR_FILE_HUGEPAGES, NR_FILE_PMDMAPPED,
 NR_ANON_TRANSPARENT_HUGEPAGES, NR_VMSCAN_WRITE, NR_VMSCAN_IMMEDIATE_RECLAIM, NR_DIRTIED, NR_WRITTEN,
 NR_THROTTLED_WRITTEN, NR_KERNEL_MISC_RECLAIMABLE, NR_FOLL_PIN_ACQUIRED, NR_FOLL_PIN_RELEASED,
 NR_KERNEL_STACK, NR_PAGE_TABLE_PAGES, NR_SEC_PAGE_TABLE_PAGES, NR_IOMMU_PAGES, NR_SWAPCACHED,
 PGPROMOTE_SUCCESS, PGPROMOTE_CANDIDATE, PGPROMOTE_CANDIDATE_NRL, PGDEMOTE_KSWAPD, PGDEMOTE_DIRECT,
 PGDEMOTE_KHUGEPAGED, PGDEMOTE_PROACTIVE, NR_HUGETLB, NR_BALLOON_PAGES, NR_KERNEL_FILE_PAGES) = range(51)
NR_NODE_STATS = len(NODE_STAT_NAMES)

# enum vm_event_item, in /proc/vmstat order (pgalloc_<zone> and pgfree: mmzone.py's mmstat);
# fold_vm_events() returns them, then AEROSYNC_VM_EVENTS under "aerosync_<name>"
VM_EVENT_NAMES = ("pgpgin", "pgpgout", "pswpin", "pswpout", "allocstall_dma", "allocstall_dma32",
    "allocstall_normal", "allocstall_movable", "allocstall_device", "pgskip_dma", "pgskip_dma32",
    "pgskip_normal", "pgskip_movable", "pgskip_device", "pgactivate", "pgdeactivate", "pglazyfree", "pgfault",
    "pgmajfault", "pglazyfreed", "pgrefill", "pgreuse", "pgsteal_kswapd", "pgsteal_direct",
    "pgsteal_khugepaged", "pgsteal_proactive", "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged",
    "pgscan_proactive", "pgscan_direct_throttle", "pgscan_anon", "pgscan_file", "pgsteal_anon",
    "pgsteal_file", "zone_reclaim_success", "zone_reclaim_failed", "pginodesteal", "slabs_scanned",
    "kswapd_inodesteal", "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly", "pageoutrun",
    "pgrotated", "drop_pagecache", "drop_slab", "oom_kill", "numa_pte_updates", "numa_huge_pte_updates",
    "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated", "pgmigrate_success",
    "pgmigrate_fail", "thp_migration_success", "thp_migration_fail", "thp_migration_split",
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
    "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned",
    "htlb_buddy_alloc_success", "htlb_buddy_alloc_fail", "unevictable_pgs_culled", "unevictable_pgs_scanned",
    "unevictable_pgs_rescued", "unevictable_pgs_mlocked", "unevictable_pgs_munlocked",
    "unevictable_pgs_cleared", "unevictable_pgs_stranded", "thp_fault_alloc", "thp_fault_fallback",
    "thp_fault_fallback_charge", "thp_collapse_alloc", "thp_collapse_alloc_failed", "thp_file_alloc",
    "thp_file_fallback", "thp_file_fallback_charge", "thp_file_mapped", "thp_split_page",
    "thp_split_page_failed", "thp_deferred_split_page", "thp_underused_split_page", "thp_split_pmd",
    "thp_scan_exceed_none_pte", "thp_scan_exceed_swap_pte", "thp_scan_exceed_share_pte", "thp_split_pud",
    "thp_zero_page_alloc", "thp_zero_page_alloc_failed", "thp_swpout", "thp_swpout_fallback",
    "balloon_inflate", "balloon_deflate", "balloon_migrate", "nr_tlb_remote_flush",
    "nr_tlb_remote_flush_received", "nr_tlb_local_flush_all", "nr_tlb_local_flush_one", "swap_ra",
    "swap_ra_hit", "swpin_zero", "swpout_zero", "ksm_swpin_copy", "cow_ksm", "zswpin", "zswpout", "zswpwb",
    "direct_map_level2_splits", "direct_map_level3_splits", "direct_map_level2_collapses",
    "direct_map_level3_collapses", "vma_lock_success", "vma_lock_abort", "vma_lock_retry", "vma_lock_miss",)
(PGPGIN, PGPGOUT, PSWPIN, PSWPOUT, ALLOCSTALL_DMA, ALLOCSTALL_DMA32, ALLOCSTALL_NORMAL, ALLOCSTALL_MOVABLE,
 ALLOCSTALL_DEVICE, PGSKIP_DMA, PGSKIP_DMA32, PGSKIP_NORMAL, PGSKIP_MOVABLE, PGSKIP_DEVICE, PGACTIVATE,
 PGDEACTIVATE, PGLAZYFREE, PGFAULT, PGMAJFAULT, PGLAZYFREED, PGREFILL, PGREUSE, PGSTEAL_KSWAPD,
 PGSTEAL_DIRECT, PGSTEAL_KHUGEPAGED, PGSTEAL_PROACTIVE, PGSCAN_KSWAPD, PGSCAN_DIRECT, PGSCAN_KHUGEPAGED,
 PGSCAN_PROACTIVE, PGSCAN_DIRECT_THROTTLE, PGSCAN_ANON, PGSCAN_FILE, PGSTEAL_ANON, PGSTEAL_FILE,
 ZONE_RECLAIM_SUCCESS, ZONE_RECLAIM_FAILED, PGINODESTEAL, SLABS_SCANNED, KSWAPD_INODESTEAL,
 KSWAPD_LOW_WMARK_HIT_QUICKLY, KSWAPD_HIGH_WMARK_HIT_QUICKLY, PAGEOUTRUN, PGROTATED, DROP_PAGECACHE,
 DROP_SLAB, OOM_KILL, NUMA_PTE_UPDATES, NUMA_HUGE_PTE_UPDATES, NUMA_HINT_FAULTS, NUMA_HINT_FAULTS_LOCAL,
 NUMA_PAGES_MIGRATED, PGMIGRATE_SUCCESS, PGMIGRATE_FAIL, THP_MIGRATION_SUCCESS, THP_MIGRATION_FAIL,
 THP_MIGRATION_SPLIT, COMPACT_MIGRATE_SCANNED, COMPACT_FREE_SCANNED, COMPACT_ISOLATED, COMPACT_STALL,
 COMPACT_FAIL, COMPACT_SUCCESS, COMPACT_DAEMON_WAKE, COMPACT_DAEMON_MIGRATE_SCANNED,
 COMPACT_DAEMON_FREE_SCANNED, HTLB_BUDDY_ALLOC_SUCCESS, HTLB_BUDDY_ALLOC_FAIL, UNEVICTABLE_PGS_CULLED,
 UNEVICTABLE_PGS_SCANNED, UNEVICTABLE_PGS_RESCUED, UNEVICTABLE_PGS_MLOCKED, UNEVICTABLE_PGS_MUNLOCKED,
 UNEVICTABLE_PGS_CLEARED, UNEVICTABLE_PGS_STRANDED, THP_FAULT_ALLOC, THP_FAULT_FALLBACK,
 THP_FAULT_FALLBACK_CHARGE, THP_COLLAPSE_ALLOC, THP_COLLAPSE_ALLOC_FAILED, THP_FILE_ALLOC, THP_FILE_FALLBACK,
 THP_FILE_FALLBACK_CHARGE, THP_FILE_MAPPED, THP_SPLIT_PAGE, THP_SPLIT_PAGE_FAILED, THP_DEFERRED_SPLIT_PAGE,
 THP_UNDERUSED_SPLIT_PAGE, THP_SPLIT_PMD, THP_SCAN_EXCEED_NONE_PTE, THP_SCAN_EXCEED_SWAP_PTE,
 THP_SCAN_EXCEED_SHARE_PTE, THP_SPLIT_PUD, THP_ZERO_PAGE_ALLOC, THP_ZERO_PAGE_ALLOC_FAILED, THP_SWPOUT,
 THP_SWPOUT_FALLBACK, BALLOON_INFLATE, BALLOON_DEFLATE, BALLOON_MIGRATE, NR_TLB_REMOTE_FLUSH,
 NR_TLB_REMOTE_FLUSH_RECEIVED, NR_TLB_LOCAL_FLUSH_ALL, NR_TLB_LOCAL_FLUSH_ONE, SWAP_RA, SWAP_RA_HIT,
 SWPIN_ZERO, SWPOUT_ZERO, KSM_SWPIN_COPY, COW_KSM, ZSWPIN, ZSWPOUT, ZSWPWB, DIRECT_MAP_LEVEL2_SPLITS,
 DIRECT_MAP_LEVEL3_SPLITS, DIRECT_MAP_LEVEL2_COLLAPSES, DIRECT_MAP_LEVEL3_COLLAPSES, VMA_LOCK_SUCCESS,
 VMA_LOCK_ABORT, VMA_LOCK_RETRY, VMA_LOCK_MISS) = range(121)
NR_LINUX_VM_EVENTS = len(VM_EVENT_NAMES)
# AeroSync's own events (no /proc/vmstat name in Linux): printed as aerosync_<name>
# xa_leaf_wait: a fault's page-tree insert (lib/xarray.py xa_insert_leaf) found the
# leaf's lock held and waited -- the contention count of that index-range lock
AEROSYNC_VM_EVENTS = ("spf_success", "spf_abort", "shadow_collapse", "cow_steal", "cow_copy", "fault_around",
                      "xa_leaf_wait")
(SPF_SUCCESS, SPF_ABORT, SHADOW_COLLAPSE, COW_STEAL, COW_COPY, FAULT_AROUND, XA_LEAF_WAIT) = range(
    NR_LINUX_VM_EVENTS, NR_LINUX_VM_EVENTS + len(AEROSYNC_VM_EVENTS))
NR_VM_EVENTS = NR_LINUX_VM_EVENTS + len(AEROSYNC_VM_EVENTS)

assert NR_NODE_STATS == NR_KERNEL_FILE_PAGES + 1 and NR_LINUX_VM_EVENTS == VMA_LOCK_MISS + 1


def vmev_rec_size(nr_nodes: int) -> int:
    """Bytes of one CPU's record, padded to a cache line (no false sharing between CPUs)."""
    return align_up((NR_VM_EVENTS + nr_nodes * NR_NODE_STATS) * 8, CACHE_LINE)


def vmevents_section(nr_cpus: int, nr_nodes: int) -> SectionSpec:
    return SectionSpec("vmevents", nr_cpus * vmev_rec_size(nr_nodes))


def _nr_nodes(arena: Any) -> int:
    sim = arena.config.get("sim")
    return int(sim["nr_nodes"]) if sim else 1


def vm_event_base(arena: Any, cpu: int) -> int:
    """Index into arena.u64 of CPU `cpu`'s first vm event counter."""
    return (arena.off("vmevents") + cpu * vmev_rec_size(_nr_nodes(arena))) >> 3


def node_stat_base(arena: Any, cpu: int) -> int:
    """Index into arena.i64 of CPU `cpu`'s node-stat deltas (+ nid * NR_NODE_STATS + item)."""
    return vm_event_base(arena, cpu) + NR_VM_EVENTS


def count_vm_event(arena: Any, cpu: int, item: int, n: int = 1) -> None:
    """count_vm_events(): a cold-path increment (hot paths bind vm_event_base once)."""
    arena.u64[vm_event_base(arena, cpu) + item] += n


def _records(arena: Any) -> np.ndarray:
    nr_cpus, nr_nodes = int(arena.config["nr_cpus"]), _nr_nodes(arena)
    words = vmev_rec_size(nr_nodes) // 8
    return arena.array("vmevents", np.int64, nr_cpus * words).reshape(nr_cpus, words)


def fold_vm_events(arena: Any) -> dict[str, int]:
    """all_vm_events(): every vm event summed over CPUs (a racy snapshot on a live run)."""
    if "vmevents" not in arena.sections:
        return dict.fromkeys(VM_EVENT_NAMES + tuple(f"aerosync_{n}" for n in AEROSYNC_VM_EVENTS), 0)
    recs = _records(arena)
    tot = recs[:, :NR_VM_EVENTS].astype(np.uint64).sum(axis=0)
    del recs
    names = VM_EVENT_NAMES + tuple(f"aerosync_{n}" for n in AEROSYNC_VM_EVENTS)
    return {name: int(v) for name, v in zip(names, tot)}


def fold_node_stats(arena: Any) -> list[dict[str, int]]:
    """node_page_state() for every node: the per-CPU deltas summed, one dict per node."""
    nr_nodes = _nr_nodes(arena)
    if "vmevents" not in arena.sections:
        return [dict.fromkeys(NODE_STAT_NAMES, 0) for _ in range(nr_nodes)]
    recs = _records(arena)
    part = recs[:, NR_VM_EVENTS : NR_VM_EVENTS + nr_nodes * NR_NODE_STATS].sum(axis=0)
    del recs
    return [{name: int(part[n * NR_NODE_STATS + i]) for i, name in enumerate(NODE_STAT_NAMES)}
            for n in range(nr_nodes)]
