"""SLUB's arena records and flags: the byte offsets every slab module shares.

Unit: constants only (plus the record-address arithmetic that needs nothing else), so that
slab_common.py (cache management), slub.py (the allocator) and slab_debug.py import it and
not each other (style-anchors 5.1: a subsystem's shared layout lives in its own module).
The meaning of the two lockless words (K_FREELIST_TID, M_WORD) is slub.py's protocol.
"""

from __future__ import annotations

from typing import Any

# ------------------------------------------------------------------ flags (include/linux/slab.h)
SLAB_CONSISTENCY_CHECKS = 0x00000100
SLAB_RED_ZONE = 0x00000400
SLAB_POISON = 0x00000800
SLAB_KMALLOC = 0x00001000
SLAB_HWCACHE_ALIGN = 0x00002000
SLAB_STORE_USER = 0x00010000
SLAB_DEBUG_FLAGS = SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER
_DEBUG_LETTERS = {"F": SLAB_CONSISTENCY_CHECKS, "Z": SLAB_RED_ZONE, "P": SLAB_POISON, "U": SLAB_STORE_USER}

VBASE = 0xFFFF_8880_0000_0000        # simulated direct map: addr = VBASE + pfn*4096 + off
NIL32 = 0xFFFF_FFFF
NIL64 = NIL32                        # "no slab" in a u64 pfn field
_LO = 0xFFFF_FFFF
_HI = 0xFFFF_FFFF_0000_0000
MAX_OBJS_PER_PAGE = 32767
SHEAF_CAPACITY = 64
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)

# ------------------------------------------------------------------ arena records
SLAB_MAGIC = 0x42414C53_41455241     # "AERASLAB"
# slabcaches header
G_MAGIC, G_NR_CACHES, G_MUTEX, G_MAX_CACHES, G_NR_CPUS, G_NR_NODES, G_MAG_SIZE, G_TID_STEP = (
    0, 8, 16, 24, 32, 40, 48, 56)
G_SIZE = 64
# cache record
CACHE_REC = 256
C_NAME, C_STATE, C_FLAGS, C_OBJSIZE, C_SIZE, C_ALIGN, C_FPOFF, C_ORDER = 0, 32, 36, 40, 44, 48, 52, 56
C_OBJECTS, C_MIN_ORDER, C_MIN_OBJECTS, C_RED_LEFT, C_MIN_PARTIAL, C_CPU_PARTIAL = 60, 64, 68, 72, 76, 80
C_TRACK_OFF, C_INUSE, C_NR_BUGS, C_CTOR = 84, 88, 92, 96
_NAME_LEN, _CTOR_LEN = 32, 96
CACHE_FREE, CACHE_LIVE = 0, 1
# node record (kmem_cache_node), per cache x node
NODE_REC = 64
N_LOCK, N_NR_PARTIAL, N_HEAD, N_TAIL, N_NR_SLABS, N_TOTAL_OBJS = 0, 8, 16, 20, 24, 32
# cpu record (kmem_cache_cpu), per cache x cpu
K_FREELIST_TID, K_SLAB, K_LOCK, K_PARTIAL, K_NR_PARTIAL, K_MAG_COUNT = 0, 8, 16, 24, 32, 40
K_STATS = 64                          # NR_STATS u64 per context (task, irq)
NR_STATS = 16
K_MAG = K_STATS + 2 * NR_STATS * 8    # 320: magazine, u64 addresses
STAT_NAMES = ("alloc", "free", "alloc_fastpath", "free_fastpath", "alloc_slowpath", "free_slowpath",
              "cmpxchg_fail", "alloc_mag", "free_mag", "mag_flush", "alloc_from_partial", "alloc_slab",
              "free_slab", "cpu_partial_alloc", "deactivate", "flush")
(ST_ALLOC, ST_FREE, ST_ALLOC_FAST, ST_FREE_FAST, ST_ALLOC_SLOW, ST_FREE_SLOW, ST_CAS_FAIL, ST_ALLOC_MAG,
 ST_FREE_MAG, ST_MAG_FLUSH, ST_ALLOC_PARTIAL, ST_ALLOC_SLAB, ST_FREE_SLAB, ST_CPU_PARTIAL, ST_DEACTIVATE,
 ST_FLUSH) = range(NR_STATS)
# slabmeta record (struct slab), per pfn; meaningful on slab head pfns
SMETA = 32
M_WORD, M_CACHE, M_LIST, M_NID, M_ORDER, M_NEXT, M_PREV, M_ISOLATED = 0, 8, 12, 13, 14, 16, 20, 24
LIST_NONE, LIST_NODE_PARTIAL, LIST_CPU_PARTIAL, LIST_CPU_SLAB = 0, 1, 2, 3
LIST_NAMES = ("full", "node_partial", "cpu_partial", "cpu_slab")
FROZEN = 1 << 63
# sheaf record
SHEAF_REC = 64 + 8 * SHEAF_CAPACITY
SH_STATE, SH_CACHE, SH_SIZE, SH_OBJS = 0, 8, 16, 64


def cache_off(arena: Any, cid: int) -> int:
    """Byte offset of cache `cid`'s record (struct kmem_cache)."""
    return arena.off("slabcaches") + G_SIZE + cid * CACHE_REC


def cache_name(arena: Any, cid: int) -> str:
    """The name in cache `cid`'s record (read without slab_mutex: records are stored whole)."""
    o = cache_off(arena, cid) + C_NAME
    return bytes(arena.u8[o : o + _NAME_LEN]).rstrip(b"\0").decode()
