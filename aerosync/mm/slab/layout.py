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
SLAB_RECLAIM_ACCOUNT = 0x00020000    # slabs count as nr_slab_reclaimable (SReclaimable)
SLAB_DEBUG_FLAGS = SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER
_DEBUG_LETTERS = {"F": SLAB_CONSISTENCY_CHECKS, "Z": SLAB_RED_ZONE, "P": SLAB_POISON, "U": SLAB_STORE_USER}

VBASE = 0xFFFF_8880_0000_0000        # simulated direct map: addr = VBASE + pfn*4096 + off
NIL32 = 0xFFFF_FFFF
NIL64 = NIL32                        # "no slab" in a u64 pfn field
_LO = 0xFFFF_FFFF
_HI = 0xFFFF_FFFF_0000_0000
MAX_OBJS_PER_PAGE = 32767
SHEAF_CAPACITY = 64                  # objects a sheaf record holds (caller-owned and per-CPU)
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
# create_kmalloc_caches() creation order: the two non-power-of-two classes first
KMALLOC_CREATE_ORDER = (96, 192, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
MAX_FULL_SHEAVES = 10                # a barn's limits (mm/slub.c)
MAX_EMPTY_SHEAVES = 10
REMOTE_NODE_DEFRAG_RATIO = 1000      # kmem_cache_open(): s->remote_node_defrag_ratio

# ------------------------------------------------------------------ arena records
SLAB_MAGIC = 0x42414C53_41455241     # "AERASLAB"
# slabcaches header
G_MAGIC, G_NR_CACHES, G_MUTEX, G_MAX_CACHES, G_NR_CPUS, G_NR_NODES, G_MAG_SIZE, G_TID_STEP = (
    0, 8, 16, 24, 32, 40, 48, 56)
G_PCS, G_SEQ, G_DEPOT_NEXT, G_DEPOT_MAX = 64, 72, 80, 88   # percpu sheaves on; creation counter; stack depot
G_SIZE = 128
# cache record
CACHE_REC = 256
C_NAME, C_STATE, C_FLAGS, C_OBJSIZE, C_SIZE, C_ALIGN, C_FPOFF, C_ORDER = 0, 32, 36, 40, 44, 48, 52, 56
C_OBJECTS, C_MIN_ORDER, C_MIN_OBJECTS, C_RED_LEFT, C_MIN_PARTIAL, C_CPU_PARTIAL = 60, 64, 68, 72, 76, 80
C_TRACK_OFF, C_INUSE, C_NR_BUGS, C_CTOR = 84, 88, 92, 96
C_SHEAF_CAP, C_SEQ, C_DEFRAG, C_ORIG_OFF = 192, 196, 200, 204   # after C_CTOR's 96 bytes
_NAME_LEN, _CTOR_LEN = 32, 96
CACHE_FREE, CACHE_LIVE = 0, 1
# node record (kmem_cache_node), per cache x node
NODE_REC = 64
N_LOCK, N_NR_PARTIAL, N_HEAD, N_TAIL, N_NR_SLABS, N_TOTAL_OBJS = 0, 8, 16, 20, 24, 32
# the node's barn (struct node_barn), caches with per-CPU sheaves only: lock slot, the
# full and empty sheaf lists (u32 sheaf ids, NIL-terminated through SH_NEXT), their sizes
N_BARN_LOCK, N_BARN_FULL, N_BARN_EMPTY, N_BARN_NR_FULL, N_BARN_NR_EMPTY = 40, 48, 52, 56, 60
# cpu record (kmem_cache_cpu), per cache x cpu
K_FREELIST_TID, K_SLAB, K_LOCK, K_PARTIAL, K_NR_PARTIAL, K_MAG_COUNT = 0, 8, 16, 24, 32, 40
# per-CPU sheaves (struct slub_percpu_sheaves): main | spare << 32 as sheaf id + 1 (0 =
# none), and their local_trylock word (CAS 0 -> token)
K_PCS, K_PCS_LOCK = 48, 56
K_STATS = 64                          # NR_STATS u64 per context (task, irq)
NR_STATS = 28
K_MAG = K_STATS + 2 * NR_STATS * 8    # 512: magazine, u64 addresses
STAT_NAMES = ("alloc", "free", "alloc_fastpath", "free_fastpath", "alloc_slowpath", "free_slowpath",
              "cmpxchg_fail", "alloc_mag", "free_mag", "mag_flush", "alloc_from_partial", "alloc_slab",
              "free_slab", "cpu_partial_alloc", "deactivate", "flush",
              "alloc_cpu_sheaf", "free_cpu_sheaf", "barn_get", "barn_get_fail", "barn_put", "barn_put_fail",
              "sheaf_refill", "sheaf_flush", "cpu_partial_free", "cpu_partial_drain", "cpu_partial_node",
              "alloc_node_mismatch")
(ST_ALLOC, ST_FREE, ST_ALLOC_FAST, ST_FREE_FAST, ST_ALLOC_SLOW, ST_FREE_SLOW, ST_CAS_FAIL, ST_ALLOC_MAG,
 ST_FREE_MAG, ST_MAG_FLUSH, ST_ALLOC_PARTIAL, ST_ALLOC_SLAB, ST_FREE_SLAB, ST_CPU_PARTIAL, ST_DEACTIVATE,
 ST_FLUSH, ST_ALLOC_PCS, ST_FREE_PCS, ST_BARN_GET, ST_BARN_GET_FAIL, ST_BARN_PUT, ST_BARN_PUT_FAIL,
 ST_SHEAF_REFILL, ST_SHEAF_FLUSH, ST_CPU_PARTIAL_FREE, ST_CPU_PARTIAL_DRAIN, ST_CPU_PARTIAL_NODE,
 ST_ALLOC_NODE_MISMATCH) = range(NR_STATS)
# slabmeta record (struct slab), per pfn; meaningful on slab head pfns
SMETA = 32
M_WORD, M_CACHE, M_LIST, M_NID, M_ORDER, M_NEXT, M_PREV, M_ISOLATED = 0, 8, 12, 13, 14, 16, 20, 24
LIST_NONE, LIST_NODE_PARTIAL, LIST_CPU_PARTIAL, LIST_CPU_SLAB = 0, 1, 2, 3
LIST_NAMES = ("full", "node_partial", "cpu_partial", "cpu_slab")
FROZEN = 1 << 63
# sheaf record: state 0 free, cpu + 1 a caller-owned (prefilled) sheaf, SHEAF_PCS a sheaf
# of the per-CPU layer (a CPU's main/spare or on a barn list); next = barn list link
SHEAF_REC = 64 + 8 * SHEAF_CAPACITY
SH_STATE, SH_CACHE, SH_SIZE, SH_NEXT, SH_CAP, SH_OBJS = 0, 8, 16, 24, 32, 64
SHEAF_PCS = 1 << 32
# stack depot (section "slabdepot"): call sites of slub_debug tracks, DEPOT_REC bytes each,
# handle = index + 1 (0 = no stack, as depot_stack_handle_t)
DEPOT_REC = 64


def cache_off(arena: Any, cid: int) -> int:
    """Byte offset of cache `cid`'s record (struct kmem_cache)."""
    return arena.off("slabcaches") + G_SIZE + cid * CACHE_REC


def cache_name(arena: Any, cid: int) -> str:
    """The name in cache `cid`'s record (read without slab_mutex: records are stored whole)."""
    o = cache_off(arena, cid) + C_NAME
    return bytes(arena.u8[o : o + _NAME_LEN]).rstrip(b"\0").decode()
