"""GFP flags: what a caller may do, and which zone and migratetype it asks for.

Models: include/linux/gfp_types.h (bit values), include/linux/gfp.h (gfp_zone(),
gfp_migratetype()) and mm/page_alloc.c:gfp_to_alloc_flags() / mm/internal.h ALLOC_*.
Unit: a gfp mask, a plain int (module constants, never an IntEnum on a hot path).

Bit values follow the enum order of gfp_types.h without the config-dependent bits
(LOCKDEP, KASAN tags, SLAB_NO_OBJ_EXT), so masks print like the kernel's.

Zone choice (gfp_zone): __GFP_DMA -> ZONE_DMA, __GFP_DMA32 -> ZONE_DMA32, anything else ->
ZONE_NORMAL (this model has no ZONE_HIGHMEM/ZONE_MOVABLE, so __GFP_HIGHMEM and
__GFP_MOVABLE map to NORMAL, as on x86-64 without movablecore=).  DMA together with
DMA32 is a caller bug (the kernel's GFP_ZONE_BAD): `gfp_zone` raises ValueError.

Migratetype (gfp_migratetype): (gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT, so
__GFP_MOVABLE -> MIGRATE_MOVABLE, __GFP_RECLAIMABLE -> MIGRATE_RECLAIMABLE, neither ->
MIGRATE_UNMOVABLE; both is a caller bug (ValueError).

Allocation flags (alloc_flags): ALLOC_WMARK_{MIN,LOW,HIGH} select the watermark; the
fast path uses LOW; the slow path (`gfp_to_alloc_flags`) uses MIN plus
ALLOC_MIN_RESERVE for __GFP_HIGH, ALLOC_NON_BLOCK when the caller cannot direct-reclaim,
and ALLOC_HIGHATOMIC for a non-blocking order > 0 request (linux-mm.md 1.9-1.10).
"""

from __future__ import annotations

__all__ = [
    "__GFP_DMA", "__GFP_HIGHMEM", "__GFP_DMA32", "__GFP_MOVABLE", "__GFP_RECLAIMABLE",
    "__GFP_HIGH", "__GFP_IO", "__GFP_FS", "__GFP_ZERO", "__GFP_DIRECT_RECLAIM",
    "__GFP_KSWAPD_RECLAIM", "__GFP_WRITE", "__GFP_NOWARN", "__GFP_RETRY_MAYFAIL",
    "__GFP_NOFAIL", "__GFP_NORETRY", "__GFP_MEMALLOC", "__GFP_COMP", "__GFP_NOMEMALLOC",
    "__GFP_HARDWALL", "__GFP_THISNODE", "__GFP_ACCOUNT", "__GFP_RECLAIM",
    "GFP_ZONEMASK", "GFP_MOVABLE_MASK", "GFP_MOVABLE_SHIFT",
    "GFP_ATOMIC", "GFP_KERNEL", "GFP_NOWAIT", "GFP_NOIO", "GFP_NOFS", "GFP_USER",
    "GFP_DMA", "GFP_DMA32", "GFP_HIGHUSER", "GFP_HIGHUSER_MOVABLE", "GFP_TRANSHUGE_LIGHT",
    "GFP_TRANSHUGE",
    "ALLOC_WMARK_MIN", "ALLOC_WMARK_LOW", "ALLOC_WMARK_HIGH", "ALLOC_NO_WATERMARKS",
    "ALLOC_WMARK_MASK", "ALLOC_OOM", "ALLOC_NON_BLOCK", "ALLOC_MIN_RESERVE", "ALLOC_CPUSET",
    "ALLOC_CMA", "ALLOC_NOFRAGMENT", "ALLOC_HIGHATOMIC", "ALLOC_KSWAPD", "ALLOC_RESERVES",
    "ZONE_DMA", "ZONE_DMA32", "ZONE_NORMAL", "MAX_NR_ZONES", "ZONE_NAMES",
    "MIGRATE_UNMOVABLE", "MIGRATE_MOVABLE", "MIGRATE_RECLAIMABLE", "MIGRATE_PCPTYPES",
    "MIGRATE_HIGHATOMIC", "MIGRATE_TYPES", "MIGRATETYPE_NAMES",
    "gfp_zone", "gfp_migratetype", "gfp_to_alloc_flags", "format_gfp",
]

# ---------------------------------------------------------------- zones and migratetypes
# (kept here, the lowest mm module, so gfp/page/mmzone share one definition)
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL = 0, 1, 2
MAX_NR_ZONES = 3
ZONE_NAMES = ("DMA", "DMA32", "Normal")

MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE = 0, 1, 2
MIGRATE_PCPTYPES = 3                 # types with PCP lists and fallbacks
MIGRATE_HIGHATOMIC = MIGRATE_PCPTYPES
MIGRATE_TYPES = 4                    # no CMA / ISOLATE in this model
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic")

# ---------------------------------------------------------------- bits (gfp_types.h order)
__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
__GFP_RECLAIMABLE = 0x10
__GFP_HIGH = 0x20
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_ZERO = 0x100
# 0x200 was ___GFP_ATOMIC (removed in 6.4)
__GFP_DIRECT_RECLAIM = 0x400
__GFP_KSWAPD_RECLAIM = 0x800
__GFP_WRITE = 0x1000
__GFP_NOWARN = 0x2000
__GFP_RETRY_MAYFAIL = 0x4000
__GFP_NOFAIL = 0x8000
__GFP_NORETRY = 0x10000
__GFP_MEMALLOC = 0x20000
__GFP_COMP = 0x40000
__GFP_NOMEMALLOC = 0x80000
__GFP_HARDWALL = 0x100000
__GFP_THISNODE = 0x200000
__GFP_ACCOUNT = 0x400000
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM

GFP_ZONEMASK = __GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE
GFP_MOVABLE_MASK = __GFP_RECLAIMABLE | __GFP_MOVABLE
GFP_MOVABLE_SHIFT = 3

# ---------------------------------------------------------------- composite masks (gfp_types.h)
GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN      # 6.18+: NOWARN included
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM

# ---------------------------------------------------------------- alloc_flags (mm/internal.h)
ALLOC_WMARK_MIN = 0x00
ALLOC_WMARK_LOW = 0x01
ALLOC_WMARK_HIGH = 0x02
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100
ALLOC_HIGHATOMIC = 0x200
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

# gfp_zone() as a table over the 4 zone-modifier bits; -1 = GFP_ZONE_BAD.
_ZONE_TABLE = [-1] * 16
for _bits in range(16):
    _dma, _dma32 = bool(_bits & __GFP_DMA), bool(_bits & __GFP_DMA32)
    if _dma and _dma32:
        continue
    _ZONE_TABLE[_bits] = ZONE_DMA if _dma else ZONE_DMA32 if _dma32 else ZONE_NORMAL
ZONE_TABLE: tuple[int, ...] = tuple(_ZONE_TABLE)
MIGRATETYPE_TABLE: tuple[int, ...] = (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, -1)


def gfp_zone(gfp: int) -> int:
    """Highest zone index the mask allows (include/linux/gfp.h:gfp_zone())."""
    z = ZONE_TABLE[gfp & GFP_ZONEMASK]
    if z < 0:
        raise ValueError(f"gfp_zone: {format_gfp(gfp)} asks for DMA and DMA32 at once (GFP_ZONE_BAD)")
    return z


def gfp_migratetype(gfp: int) -> int:
    """Migratetype of a request (include/linux/gfp.h:gfp_migratetype())."""
    mt = MIGRATETYPE_TABLE[(gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT]
    if mt < 0:
        raise ValueError(f"gfp_migratetype: {format_gfp(gfp)} is both movable and reclaimable")
    return mt


def gfp_to_alloc_flags(gfp: int, order: int) -> int:
    """Slow-path alloc_flags (mm/page_alloc.c:gfp_to_alloc_flags()), ALLOC_WMARK_MIN based."""
    flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    if gfp & __GFP_HIGH:
        flags |= ALLOC_MIN_RESERVE
    if gfp & __GFP_KSWAPD_RECLAIM:
        flags |= ALLOC_KSWAPD
    if not gfp & __GFP_DIRECT_RECLAIM:
        if not gfp & __GFP_NOMEMALLOC:
            flags |= ALLOC_NON_BLOCK
            if order > 0:
                flags |= ALLOC_HIGHATOMIC
        if flags & ALLOC_MIN_RESERVE:
            flags &= ~ALLOC_CPUSET
    return flags


_NAMES = [(v, k) for k, v in sorted(globals().items()) if k.startswith("__GFP_") and k != "__GFP_RECLAIM"]


def format_gfp(gfp: int) -> str:
    """`GFP_KERNEL|__GFP_ZERO`-style text, as the kernel's %pGg prints."""
    parts = []
    for name, val in (("GFP_KERNEL", GFP_KERNEL), ("GFP_ATOMIC", GFP_ATOMIC), ("GFP_NOWAIT", GFP_NOWAIT)):
        if gfp & val == val and val:
            parts.append(name)
            gfp &= ~val
            break
    for val, name in sorted(_NAMES):
        if gfp & val:
            parts.append(name)
            gfp &= ~val
    if gfp:
        parts.append(hex(gfp))
    return "|".join(parts) or "0"
