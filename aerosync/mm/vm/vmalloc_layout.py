"""The kernel virtual address space of vmalloc: addresses, arena records and the [vmalloc]
configuration, shared by vmalloc.py (the allocator), kstack.py, kaccess.py and the checker.

Models: arch/x86/include/asm/pgtable_64_types.h (VMALLOC_START, the 4- and 5-level
layouts), include/linux/vmalloc.h (struct vmap_area, struct vm_struct's flags), the
vmap_node / vmap_block / vmap_block_queue structures of mm/vmalloc.c, and the C kernel's
include/arch/x86_64/mm/layout.h (VMALLOC_SIZE_GB, NUMA_PARTITION slices).  Unit: a
kernel virtual address; a record at an arena byte offset.  Constants only, plus the
arithmetic that needs nothing else (style-anchors 5.1: a subsystem's shared layout).

Address space: [VMALLOC_START, VMALLOC_START + size) with size = [vmalloc] size_gb
(the C kernel's VMALLOC_SIZE_GB, 128 by default; Linux's 4-level range is 32 TiB).
With numa_partition (NUMA_PARTITION) node n owns slice n: [start + n * slice, start +
(n + 1) * slice), slice = size / nr_nodes rounded down to 2 MiB; without it one slice
(node 0's) serves every node.  The top-level (PGD) entries covering the range are
populated at boot (preallocate_vmalloc_pages) so every mm's copy of init_mm's kernel
half stays identical forever.

Records (byte offsets; "atomic" = changed with fetch_add/CAS by any CPU):

  vmap_area (64 B, SLUB cache "vmap_area"; the maple-tree entry of its slice)
     0 va_start   8 va_end (exclusive; includes the guard page(s))
    16 flags u32 (VA_*)  20 nid u32    24 size: bytes asked for (vm_struct.size is
                                          va_end - va_start, the guard included)
    32 nr_pages (mapped, 4 KiB units)  40 caller (stack depot handle)
    48 purge_next (lazy list link: the next vmap_area offset, 0 = end)
    56 vb (BLOCK: the vmap_block offset) | owner task id + 1 (STACK)
  vmap_block (128 B, SLUB cache "vmap_block")
     0 lock (ObjSpinLock word: &vb->lock)   8 va (its area)   16 start address
    24 free u32 (pages never handed out, at the tail)   28 dirty u32 (pages freed)
    32 dirty_min u32   36 dirty_max u32 (freed range not yet flushed, in pages)
    40 cpu u32 (the queue it was made for)   44 state u32 (VB_QUEUED / VB_FULL / VB_DEAD)
    48 next (queue link)   56 nid u32   60 nr_used u32
    64 used_map (4 x u64: page in use)   96 start_map (4 x u64: first page of an allocation)
  section "vmalloc"
    header  0 magic  8 start  16 size  24 slice  32 nr_nodes  40 lazy_max_pages
            48 block_max_pages (pages of a block sub-allocation, guard included; 0 = off)
            56 cache ids (vmap_area | vmap_block << 32)
            64 vmap_lazy_nr (atomic)  72 nr_vmalloc_pages (atomic: VmallocUsed)
            80 vmap_purge_lock slot   88 nr_purges (atomic)  96 nr_purge_flushes (atomic)
           104 objlock class ids (&vbq->lock | &vb->lock << 16)  112 flags (VMF_*)
           120 nr_blocks (atomic)
    nodes   VN_REC each: 0 lock slot (free_vmap_area_lock of the slice)  8 slice start
            16 slice end  24 purge list head  32 lazy pages  40 busy areas
            48 maple root record (MT_ROOT_WORDS u64)
    cpus    VBQ_REC each: 0 &vbq->lock (ObjSpinLock word)  8 queue head (vmap_block)
            16 blocks on the queue  24 cached stack 0  32 cached stack 1 (kernel/fork.c's
            cached_stacks[NR_CACHED_STACKS])  40 stack vfree count
    blocks  one u64 per 1 MiB of the range: the vmap_block covering it (0 = none);
            written under the slice's lock, read without locks by vb_free
"""

from __future__ import annotations

from typing import Any

from aerosync.arena.layout import SectionSpec, align_up
from aerosync.params import CACHE_LINE, PAGE_SHIFT, PAGE_SIZE

__all__ = [
    "VMALLOC_START_4", "VMALLOC_START_5", "PMD_SIZE", "PMD_ORDER", "VMAP_BBMAP_BITS", "VMAP_BLOCK_SIZE",
    "VMAP_PURGE_THRESHOLD", "THREAD_SIZE", "THREAD_ORDER", "NR_CACHED_STACKS", "VMALLOC_MAGIC",
    "VA_REC", "VA_START", "VA_END", "VA_FLAGS", "VA_NID", "VA_SIZE", "VA_PAGES", "VA_CALLER", "VA_NEXT", "VA_VB",
    "VA_BUSY", "VA_LAZY", "VA_BLOCK", "VA_HUGE", "VA_STACK", "VA_VMAP", "VA_ALLOC",
    "VB_REC", "VB_LOCK", "VB_VA", "VB_START", "VB_FREE", "VB_DIRTY", "VB_DIRTY_MIN", "VB_DIRTY_MAX", "VB_CPU",
    "VB_STATE", "VB_NEXT", "VB_NID", "VB_NR_USED", "VB_USED", "VB_STARTS", "VB_QUEUED", "VB_FULL", "VB_DEAD",
    "H_MAGIC", "H_START", "H_SIZE", "H_SLICE", "H_NR_NODES", "H_LAZY_MAX", "H_BLOCK_MAX", "H_CACHES",
    "H_LAZY_NR", "H_NR_PAGES", "H_PURGE_LOCK", "H_NR_PURGES", "H_NR_FLUSHES", "H_CLS", "H_FLAGS", "H_NR_BLOCKS",
    "VMF_HUGE", "VMF_NUMA_PARTITION", "HDR_SIZE", "VN_REC", "VN_LOCK", "VN_START", "VN_END", "VN_PURGE",
    "VN_NR_LAZY", "VN_NR_BUSY", "VN_MT", "VBQ_REC", "VBQ_LOCK", "VBQ_HEAD", "VBQ_NR", "VBQ_STACK",
    "VBQ_NR_STACK_FREE", "vmalloc_params", "vmalloc_sections", "vmalloc_start", "node_off", "vbq_off",
    "table_off", "nr_nodes_of",
]

VMALLOC_START_4 = 0xFFFF_C900_0000_0000    # 4-level paging (Documentation/arch/x86/x86_64/mm.rst)
VMALLOC_START_5 = 0xFFA0_0000_0000_0000    # 5-level paging
PMD_SIZE = 1 << 21
PMD_ORDER = 9
VMAP_BBMAP_BITS = 256                      # pages of a vmap_block (the C kernel's LARGE_BLOCKS: 1 MiB)
VMAP_BLOCK_SIZE = VMAP_BBMAP_BITS * PAGE_SIZE
VMAP_PURGE_THRESHOLD = VMAP_BBMAP_BITS // 4
THREAD_SIZE = 16 * 1024                    # x86-64 THREAD_SIZE (without KASAN's doubling)
THREAD_ORDER = 2
NR_CACHED_STACKS = 2                       # kernel/fork.c
VMALLOC_MAGIC = 0x434F_4C4C_414D_5641      # "AVMALLOC"

# vmap_area
VA_REC = 64
VA_START, VA_END, VA_FLAGS, VA_NID, VA_SIZE, VA_PAGES, VA_CALLER, VA_NEXT, VA_VB = 0, 8, 16, 20, 24, 32, 40, 48, 56
VA_BUSY = 0x01        # allocated, mapped (vm_struct attached)
VA_LAZY = 0x02        # freed, unmapped, waiting for the purge's TLB flush (still reserved)
VA_BLOCK = 0x04       # the area of a vmap_block (VMAP_BLOCK)
VA_HUGE = 0x08        # mapped with PMD leaves where it could (vmalloc_huge)
VA_STACK = 0x10       # a kernel stack: a leading guard page as well
VA_VMAP = 0x20        # vmap() of the caller's pages (VM_MAP: vunmap leaves them)
VA_ALLOC = 0x40       # vmalloc'ed pages (VM_ALLOC: vfree frees them)

# vmap_block
VB_REC = 128
VB_LOCK, VB_VA, VB_START, VB_FREE, VB_DIRTY, VB_DIRTY_MIN, VB_DIRTY_MAX = 0, 8, 16, 24, 28, 32, 36
VB_CPU, VB_STATE, VB_NEXT, VB_NID, VB_NR_USED, VB_USED, VB_STARTS = 40, 44, 48, 56, 60, 64, 96
VB_QUEUED, VB_FULL, VB_DEAD = 1, 2, 3

# section header
(H_MAGIC, H_START, H_SIZE, H_SLICE, H_NR_NODES, H_LAZY_MAX, H_BLOCK_MAX, H_CACHES, H_LAZY_NR, H_NR_PAGES,
 H_PURGE_LOCK, H_NR_PURGES, H_NR_FLUSHES, H_CLS, H_FLAGS, H_NR_BLOCKS) = (8 * i for i in range(16))
VMF_HUGE, VMF_NUMA_PARTITION = 1, 2
HDR_SIZE = 2 * CACHE_LINE
VN_REC = 2 * CACHE_LINE
VN_LOCK, VN_START, VN_END, VN_PURGE, VN_NR_LAZY, VN_NR_BUSY, VN_MT = 0, 8, 16, 24, 32, 40, 48
VBQ_REC = CACHE_LINE
VBQ_LOCK, VBQ_HEAD, VBQ_NR, VBQ_STACK, VBQ_NR_STACK_FREE = 0, 8, 16, 24, 40


def vmalloc_params(config: dict[str, Any]) -> dict[str, Any]:
    """The [vmalloc] configuration (config key "vmalloc") with defaults; ValueError naming
    the key for a bad value (scenario.py checked the types).

      size_gb            VMALLOC_SIZE_GB [128; 1..512]
      numa_partition     NUMA_PARTITION: one slice per node [true]
      lazy_max_pages     lazily freed pages that trigger a purge [8192 = 32 MiB; 32..1048576]
      vmap_block_max_kb  requests up to this size come from per-CPU vmap_blocks [512;
                         0 = never; at most 512: a 1 MiB block holds two of them]
      huge               vmalloc_huge maps 2 MiB PMD leaves [true]
    """
    v = dict(config.get("vmalloc") or {})
    p = {"size_gb": int(v.get("size_gb", 128)), "numa_partition": bool(v.get("numa_partition", True)),
         "lazy_max_pages": int(v.get("lazy_max_pages", 8192)),
         "vmap_block_max_kb": int(v.get("vmap_block_max_kb", 512)), "huge": bool(v.get("huge", True))}
    checks = {"size_gb": (1 <= p["size_gb"] <= 512, "1..512"),
              "lazy_max_pages": (32 <= p["lazy_max_pages"] <= 1 << 20, "32..1048576"),
              "vmap_block_max_kb": (0 <= p["vmap_block_max_kb"] <= 512 and p["vmap_block_max_kb"] % 4 == 0,
                                    "0..512, a multiple of 4")}
    for key, (ok, allowed) in checks.items():
        if not ok:
            raise ValueError(f"vmalloc.{key} = {p[key]!r}: allowed {allowed}")
    return p


def nr_nodes_of(config: dict[str, Any]) -> int:
    sim = config.get("sim")
    return int(sim["nr_nodes"]) if sim else 1


def vmalloc_sections(config: dict[str, Any]) -> list[SectionSpec]:
    p = vmalloc_params(config)
    nr_cpus, nr_nodes = int(config["nr_cpus"]), nr_nodes_of(config)
    blocks = (p["size_gb"] << 30) // VMAP_BLOCK_SIZE
    size = HDR_SIZE + nr_nodes * VN_REC + nr_cpus * VBQ_REC + 8 * blocks
    return [SectionSpec("vmalloc", align_up(size, PAGE_SIZE))]


def vmalloc_start(nr_levels: int) -> int:
    return VMALLOC_START_5 if nr_levels == 5 else VMALLOC_START_4


def node_off(base: int, nid: int) -> int:
    return base + HDR_SIZE + nid * VN_REC


def vbq_off(base: int, nr_nodes: int, cpu: int) -> int:
    return base + HDR_SIZE + nr_nodes * VN_REC + cpu * VBQ_REC


def table_off(base: int, nr_nodes: int, nr_cpus: int) -> int:
    return base + HDR_SIZE + nr_nodes * VN_REC + nr_cpus * VBQ_REC


_ = PAGE_SHIFT
