"""The memory manager, grouped along the seed's sections (style-anchors 5.1):

    pmm/    physical memory: struct page, zones, buddy + per-CPU page lists, vmstat
    slab/   SLUB, kmalloc, slub_debug
    numa/   memory policies; NUMA placement of process memory (task / VMA policies,
            page migration, automatic NUMA balancing, numa_maps), attached to vm/
            through VM.ext
    boot.py lays out and boots a whole machine (the one way machines are made)
    cpuhp.py CPU hotplug: the teardown of a stopped CPU's per-CPU state, its start-up

Imports inside mm flow pmm <- slab <- numa <- (later subsystems); the whole-system lock
order is the tree in aerosync/sync/__init__.py.
"""
