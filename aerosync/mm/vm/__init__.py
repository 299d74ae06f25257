"""Virtual memory (the seed's VMM): tasks and address spaces, VMAs in a maple tree, x86-64
page tables, the simulated MMU with per-CPU TLBs and shootdowns, page faults, vm_objects
with shadow chains (the seed's BSD/XNU design for anonymous and COW memory), the page
cache of simulated files, reverse mapping, fork and exit.

Modules (Linux file each models):

    mm_types.py   records in the arena: task, mm_struct, VMA, vm_object, file; the VM
                  header; vm_sections / vm_init (boot) (include/linux/mm_types.h)
    pgtable.py    page-table entry bits, swap/migration entries, table pages, walks
                  (arch/x86/include/asm/pgtable*.h, mm/pgtable-generic.c)
    tlb.py        per-CPU TLB state, PCID/ASIDs, switch_mm, shootdown IPIs, mmu_gather
                  (arch/x86/mm/tlb.c, mm/mmu_gather.c)
    mmu.py        the simulated MMU: load/store through the TLB, the hardware walk
                  setting accessed/dirty bits, page faults raised (arch/x86/mm/fault.c)
    vm_object.py  objects, page trees (XArray), shadow chains, collapse (the C kernel's
                  mm/vm_object.c)
    rmap.py       folio -> PTEs through objects and the VMAs mapping them (mm/rmap.c)
    filemap.py    simulated files, page cache, readahead, fault-around (mm/filemap.c)
    memory.py     handle_mm_fault and its paths, zap, copy_page_range (mm/memory.c)
    vma.py, mmap.py, mprotect.py, mremap.py, madvise.py, mlock.py
                  VMA tree operations and the system calls (mm/vma.c, mm/mmap.c, ...)
    fork.py       dup_mm / exit_mmap (kernel/fork.c, mm/mmap.c)
    task.py       tasks, pids, current, migration between CPUs (kernel/sched/core.c bits)

Lock order (outer first; sync/__init__.py has the whole-system tree):

    mmap_lock (&mm->mmap_lock, ObjRWSem in the mm record)
      vm_lock (per-VMA ObjRWSem; taken for read without mmap_lock by per-VMA faults,
               for write only by mmap_lock writers -- vma_start_write)
        obj_lock (&obj->lock, ObjSpinLock in the vm_object; a chain is locked top-down)
          page_table_lock (&mm->page_table_lock: populating PGD/P4D/PUD/PMD entries)
          ptlock (split PTE lock in the PTE table's struct page)
            the page allocator (pcp, zone.lock) and SLUB (slab objects for VMAs,
            objects, tree nodes)

TLB shootdowns wait for acknowledgements with locks held (as Linux flushes under
mmap_lock and the PTE lock); every lock wait answers IPIs (sync/waithook.py), so a CPU
waiting for a lock never blocks another CPU's shootdown.
"""
