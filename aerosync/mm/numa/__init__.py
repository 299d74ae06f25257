"""NUMA placement.

Page-level (no address space): memory policies in numactl's words and their numastat
accounting (mempolicy.py: MemPolicy, PolicyAllocator; it takes no lock of its own, it
chooses nodes and calls the page allocator).

Process memory (issue 10), on the virtual-memory core (mm/vm), plugged in through the
VM's hook namespace (VM.ext) by numa_vm.attach(vm) -- mm/vm never imports this package:
    numa_types.py   the "numa" arena section: interned policy records, shared-policy
                    ranges, per-task NUMA records, [numa] keys (the kernel's sysctl names)
    mempolicy.py    the policy rules as pure functions (mpol_new checks, static / relative
                    node remapping, interleave_nid, mpol_to_str ...)
    vm_policy.py    task / VMA / shared policies: set_mempolicy, get_mempolicy, mbind
                    (split / merge, MPOL_MF_STRICT / MOVE / MOVE_ALL), the fault's page
                    (alloc_folio: policy, else first touch on the faulting CPU's node)
    migrate.py      page migration: move_pages, migrate_pages, migration entries
    task_numa.py    automatic NUMA balancing: scanner, hinting faults, two-stage filter,
                    task placement statistics and task_numa_migrate
    numa_vm.py      one CPU's NUMA handle: attach(vm), the NUMA system calls
    numa_maps.py    /proc/<pid>/numa_maps, node meminfo, task locality
    check.py        the NUMA invariant checker (NC1-NC5)
Lock order (see aerosync/sync/__init__.py): mmap_lock -> the folio's PG_locked
(trylock) -> an object's lock -> PTE locks; "mpol_table_lock" (a slot lock) is a leaf.
"""
