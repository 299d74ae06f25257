"""Boot of virtual memory in a fresh arena (the coordinator runs it once, after mm_init
and slab_init).

Models: mm_core_init()'s VM part and paging_init(): the kernel's page tables (init_mm),
the shared zero page (empty_zero_page), the slab caches of the VM (vm_area_cachep,
the vm_object cache, maple_node_cache, radix_tree_node_cachep), lockdep's classes of
the VM locks, RCU.  Unit: one arena, before any worker exists (single process, no
locks needed; the magic word is stored last so attachers see a whole VM header).
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.vm import mm_types as T
from aerosync.params import PAGE_SIZE
from aerosync.sync.lockclass import OBJ_RW, OBJ_SPIN, objlock_class
from aerosync.sync.rcu import rcu_init

__all__ = ["vm_init", "VMA_SIZE", "VM_OBJECT_SIZE", "MAPLE_NODE_SIZE", "XA_NODE_SIZE", "VM_CACHES"]

VMA_SIZE = 192               # vm_area_struct (vma.py draws it)
VM_OBJECT_SIZE = 128         # vm_object (vm_object.py draws it)
MAPLE_NODE_SIZE = 256        # struct maple_node (lib/maple_tree.py)
XA_NODE_SIZE = 576           # struct xa_node (lib/xarray.py)
VM_CACHES = (("vm_area_struct", VMA_SIZE, 64, T.H_CACHE_VMA), ("vm_object", VM_OBJECT_SIZE, 64, T.H_CACHE_OBJ),
             ("maple_node", MAPLE_NODE_SIZE, 256, T.H_CACHE_MAPLE),
             ("radix_tree_node", XA_NODE_SIZE, 64, T.H_CACHE_XA))
LOCK_CLASSES = (("&mm->mmap_lock", OBJ_RW, T.H_CLS_MMAP), ("&vma->vm_lock", OBJ_RW, T.H_CLS_VMA),
                ("&obj->lock", OBJ_SPIN, T.H_CLS_OBJ), ("&mm->page_table_lock", OBJ_SPIN, T.H_CLS_PTL),
                ("ptlock", OBJ_SPIN, T.H_CLS_PTLOCK))


def vm_init(arena: Any) -> None:
    """Write the VM header, create the VM's caches and lock classes, the zero page and
    init_mm (mm id 0: the kernel's page tables)."""
    from aerosync.mm.pmm.gfp import __GFP_ZERO, GFP_KERNEL
    from aerosync.mm.pmm.page_alloc import MM
    from aerosync.mm.slab.slab_common import kmem_cache_create
    from aerosync.mm.vm.pgtable import PageTables
    from aerosync.sync.objlock import ObjSpinLock

    p = T.vm_params(arena.config)
    q, u8 = arena.u64, arena.u8
    hdr = arena.off("vmhdr")
    for sec in ("vmhdr", "vmtask", "vmmm", "vmcpu", "vmfile", "objlock"):
        o, s = arena.sections[sec]
        u8[o : o + s] = bytes(s)
    rcu_init(arena)

    def put(field: int, value: int) -> None:
        q[(hdr + field) >> 3] = value

    put(T.H_MAX_TASKS, p["max_tasks"])
    put(T.H_MAX_MMS, p["max_mms"])
    put(T.H_MAX_FILES, p["max_files"])
    put(T.H_LEVELS, p["pgtable_levels"])
    put(T.H_PCID, int(p["pcid"]))
    put(T.H_FAULT_LOCKING, T.FAULT_LOCKING.index(p["fault_locking"]))
    put(T.H_TLB_ENTRIES, p["tlb_entries"])
    put(T.H_TLB_WAYS, p["tlb_ways"])
    put(T.H_NEXT_PID, 1)
    put(T.H_MMAP_MIN_ADDR, p["mmap_min_addr"])
    put(T.H_NEXT_CTX, 1)
    put(T.H_FAULT_AROUND, p["fault_around_bytes"])
    put(T.H_RA_PAGES, p["read_ahead_kb"] * 1024 // PAGE_SIZE)
    put(T.H_SHADOW_DEPTH, p["shadow_depth_limit"])
    put(T.H_MAP_COUNT_MAX, p["max_map_count"])
    put(T.H_TLB_CEILING, p["tlb_single_page_flush_ceiling"])
    put(T.H_VM_FLAGS, 1 if p["mm"] == "threads" else 0)
    for name, kind, field in LOCK_CLASSES:
        put(field, objlock_class(arena, name, kind))
    for name, size, align, field in VM_CACHES:
        put(field, kmem_cache_create(arena, name, size, align))

    mm = MM(arena, 0)
    # The shared zero page: allocated once, its one reference held for the machine's life;
    # PTEs mapping it are _PAGE_SPECIAL and take none (Linux's empty_zero_page lives in
    # the kernel image instead; here it is an ordinary allocated page, so the page
    # checker's accounting of managed pages stays exact).
    zero = mm.alloc_pages(GFP_KERNEL | __GFP_ZERO, 0)
    if zero < 0:
        raise T.VMError("ENOMEM", f"vm_init: arena {arena.name}: no page for the zero page")
    put(T.H_ZERO_PFN, zero)

    # init_mm: mm id 0, the kernel half of every address space (its PGD entries 256..511
    # are copied into each new mm's PGD by pgd_alloc).
    mo = T.mm_off(arena, 0)
    ptl = ObjSpinLock(arena, q[(hdr + T.H_CLS_PTL) >> 3], 0)
    pt = PageTables(arena, 0, mm, ptl, p["pgtable_levels"])
    pgd = pt.pgd_alloc(0)
    if pgd < 0:
        raise T.VMError("ENOMEM", f"vm_init: arena {arena.name}: no page for init_mm's page tables")
    q[(mo + T.M_PGD) >> 3] = pgd
    q[(mo + T.M_USERS) >> 3] = 1
    q[(mo + T.M_COUNT) >> 3] = 1
    q[(mo + T.M_CTX_ID) >> 3] = 0
    q[(mo + T.M_TASK_SIZE) >> 3] = 0
    q[(mo + T.M_STATE) >> 3] = T.MM_LIVE
    arena.atomic.store64(hdr + T.H_MAGIC, T.VM_MAGIC)
