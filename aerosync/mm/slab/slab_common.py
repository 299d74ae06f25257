"""SLUB's cache management in the arena: configuration, the layout of the slab sections,
the cache table (create / destroy / lookup), cache sizing, slub_debug parsing, and the
slabinfo / slabtop views.

Models: mm/slab_common.c (kmem_cache_create/destroy, the slab_mutex-protected cache
table, create_kmalloc_caches, /proc/slabinfo), plus the sizing code of mm/slub.c that
only cache creation uses (calculate_order, calculate_sizes, the slab_debug= parser).
The allocator itself -- per-CPU fast path, slow path, partial lists, remote free,
magazines, bulk, sheaves, flush -- is mm/slab/slub.py (mm/slub.c).  Unit: a cache id
(index in the cache table), a slab = its head pfn, an object = its index in the slab;
users see objects as simulated virtual addresses (`VBASE + pfn * 4096 + offset`, the
x86-64 direct map), never as Python objects.

API (module level, any process): slab_sections(config), slab_init(arena),
kmem_cache_create(arena, name, size, align=0, flags=0, ctor=None, cpu=CPU_COORD) -> id,
kmem_cache_lookup(arena, name) -> id | -1, (kmem_cache_destroy: mm/slab/slub.py)
cache_info(arena, id) -> dict, slabinfo_text / slabinfo_json / slabtop_text,
virt_to_off(arena, addr), object_view(arena, addr, n); also slab_params(config),
live_caches(arena), slab_stats(arena, id, cpu=None), calculate_order(...).
The per-CPU handles (`Slub`, `KmemCache`) are mm/slab/slub.py's.

Arena layout (sections slab_sections() adds after mm_sections(config); field offsets
are the module constants below):
  slabcaches  header (G_*: magic, slab_mutex, max_caches, nr_cpus, nr_nodes, mag_size,
              tid_step) + max_caches cache records (C_*, struct kmem_cache)
  slabnode    per cache x node (N_*, kmem_cache_node: list_lock, partial list, counters)
  slabcpu     per cache x cpu (K_*, kmem_cache_cpu: freelist_tid word, c->slab, c->lock,
              c->partial, the statistics lines of both contexts, the magazine)
  slabmeta    per pfn (M_*, struct slab: freelist_counters word, cache id + 1, list byte,
              nid, order, list links, isolated count); meaningful on slab head pfns
  slabsheaf   sheaf records (SH_*): caller-owned (prefill) and per-CPU/barn sheaves
  slabdepot   the stack depot of slub_debug tracks (DEPOT_REC each, slab_debug.py)
The bit layouts of the two lockless words (K_FREELIST_TID, M_WORD) and the rules for
changing them are the allocator's protocols: see mm/slab/slub.py's module docstring.

Lock order: this module owns the outermost of SLUB's locks.
  1. slab_mutex ("slab_mutex", SpinLock): the cache table (create/destroy/lookup by name
     while a cache is being created).
The inner ones (2. c->lock, 3. n->list_lock, 4. the page allocator's pcp / zone.lock)
and their lockless protocols are mm/slab/slub.py's.  kmem_cache_destroy lives in slub.py
(it flushes every CPU's state of the cache through an allocator handle, not under
slab_mutex), as Linux's slab_common.c hands the work to slub.c's __kmem_cache_shutdown.
Imports: layout.py <- slab_debug.py <- slab_common.py <- slub.py <- kmalloc.py; no module
imports one to its right (no cycle, not even inside a function).

Invariants: a cache record becomes visible (C_STATE = CACHE_LIVE, stored last) only
when it is whole, so lookups without slab_mutex see whole records.  The slab invariants
S1..S7 are stated in mm/slab/slub.py's module docstring (mm/slab/slab_check.py checks them).
Deliberate races: slabinfo reads counters and lists without locks (as /proc/slabinfo
is approximate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from aerosync.arena.layout import SectionSpec, align_up
from aerosync.errors import AeroSyncError
from aerosync.mm.slab import slab_debug as D
from aerosync.mm.slab.layout import (  # noqa: F401  (re-exported: the cache API's constants)
    _CTOR_LEN,
    _DEBUG_LETTERS,
    _HI,
    _LO,
    _NAME_LEN,
    C_ALIGN,
    C_CPU_PARTIAL,
    C_CTOR,
    C_DEFRAG,
    C_FLAGS,
    C_FPOFF,
    C_INUSE,
    C_MIN_OBJECTS,
    C_MIN_ORDER,
    C_MIN_PARTIAL,
    C_NAME,
    C_NR_BUGS,
    C_OBJECTS,
    C_OBJSIZE,
    C_ORDER,
    C_ORIG_OFF,
    C_RED_LEFT,
    C_SEQ,
    C_SHEAF_CAP,
    C_SIZE,
    C_STATE,
    C_TRACK_OFF,
    CACHE_FREE,
    CACHE_LIVE,
    CACHE_REC,
    DEPOT_REC,
    FROZEN,
    G_DEPOT_MAX,
    G_MAG_SIZE,
    G_MAGIC,
    G_MAX_CACHES,
    G_MUTEX,
    G_NR_CACHES,
    G_NR_CPUS,
    G_NR_NODES,
    G_PCS,
    G_SEQ,
    G_SIZE,
    G_TID_STEP,
    K_FREELIST_TID,
    K_LOCK,
    K_MAG,
    K_MAG_COUNT,
    K_NR_PARTIAL,
    K_PARTIAL,
    K_PCS,
    K_PCS_LOCK,
    K_SLAB,
    K_STATS,
    KMALLOC_CREATE_ORDER,
    KMALLOC_SIZES,
    LIST_CPU_PARTIAL,
    LIST_CPU_SLAB,
    LIST_NAMES,
    LIST_NODE_PARTIAL,
    LIST_NONE,
    M_CACHE,
    M_ISOLATED,
    M_LIST,
    M_NEXT,
    M_NID,
    M_ORDER,
    M_PREV,
    M_WORD,
    MAX_EMPTY_SHEAVES,
    MAX_FULL_SHEAVES,
    MAX_OBJS_PER_PAGE,
    N_BARN_EMPTY,
    N_BARN_FULL,
    N_BARN_LOCK,
    N_BARN_NR_EMPTY,
    N_BARN_NR_FULL,
    N_HEAD,
    N_LOCK,
    N_NR_PARTIAL,
    N_NR_SLABS,
    N_TAIL,
    N_TOTAL_OBJS,
    NIL32,
    NIL64,
    NODE_REC,
    NR_STATS,
    REMOTE_NODE_DEFRAG_RATIO,
    SH_CACHE,
    SH_CAP,
    SH_NEXT,
    SH_OBJS,
    SH_SIZE,
    SH_STATE,
    SHEAF_CAPACITY,
    SHEAF_PCS,
    SHEAF_REC,
    SLAB_CONSISTENCY_CHECKS,
    SLAB_DEBUG_FLAGS,
    SLAB_HWCACHE_ALIGN,
    SLAB_KMALLOC,
    SLAB_MAGIC,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SMETA,
    ST_ALLOC,
    ST_ALLOC_FAST,
    ST_ALLOC_MAG,
    ST_ALLOC_NODE_MISMATCH,
    ST_ALLOC_PARTIAL,
    ST_ALLOC_PCS,
    ST_ALLOC_SLAB,
    ST_ALLOC_SLOW,
    ST_BARN_GET,
    ST_BARN_GET_FAIL,
    ST_BARN_PUT,
    ST_BARN_PUT_FAIL,
    ST_CAS_FAIL,
    ST_CPU_PARTIAL,
    ST_CPU_PARTIAL_DRAIN,
    ST_CPU_PARTIAL_FREE,
    ST_CPU_PARTIAL_NODE,
    ST_DEACTIVATE,
    ST_FLUSH,
    ST_FREE,
    ST_FREE_FAST,
    ST_FREE_MAG,
    ST_FREE_PCS,
    ST_FREE_SLAB,
    ST_FREE_SLOW,
    ST_MAG_FLUSH,
    ST_SHEAF_FLUSH,
    ST_SHEAF_REFILL,
    STAT_NAMES,
    VBASE,
)
from aerosync.mm.slab.layout import (
    cache_off as _cache_off,
)
from aerosync.params import CACHE_LINE, PAGE_SIZE, profile_default
from aerosync.sync.lockstat import lock_alloc
from aerosync.sync.spinlock import CPU_COORD, SpinLock

__all__ = [
    "SLAB_HWCACHE_ALIGN", "SLAB_POISON", "SLAB_RED_ZONE", "SLAB_STORE_USER", "SLAB_CONSISTENCY_CHECKS",
    "SLAB_KMALLOC", "SLAB_DEBUG_FLAGS", "SLAB_RECLAIM_ACCOUNT", "VBASE", "NIL32", "SHEAF_CAPACITY",
    "KMALLOC_SIZES", "calculate_sizes",
    "slab_sections", "slab_init", "slab_params", "kmem_cache_create", "kmem_cache_lookup",
    "calculate_order", "cache_info", "live_caches", "slab_config_problem",
    "virt_to_off", "object_view", "slab_stats", "slabinfo_json", "slabinfo_text", "slabtop_text",
    "STAT_NAMES", "SlabError",
]

class SlabError(AeroSyncError):
    """Misuse of the slab API (bad cache name, destroy with objects left, table full)."""


# ------------------------------------------------------------------ configuration and boot
def slab_params(config: dict[str, Any]) -> dict[str, Any]:
    """Slab configuration keys (defaults from aerosync-c.md 3 Kconfig where it has them):

    slab_max_caches [64]   slab_mag_size (CONFIG_SLAB_MAG_SIZE) [kernel profile: 16 / linux 0; 0..128]
    slab_percpu_sheaves [kernel profile: False / linux True]: per-CPU sheaves + barns for
      caches created with a sheaf_capacity (Linux 6.18/6.19)
    slab_max_order (CONFIG_SLAB_MAX_ORDER) [3, capped at max_page_order]
    slab_min_partial (CONFIG_SLAB_MIN_PARTIAL) [Linux clamp(ilog2(size)/2, 5, 10)]
    slab_min_objects [4 * (fls(nr_cpus) + 1)]   slab_nr_sheaves [64]   slab_depot_entries [1024]
    slub_debug ["" ; e.g. "FZPU" or "ZP,kmalloc-64,foo" as slab_debug=]   kmalloc [True]
    """
    mag = int(str(profile_default(config, "slab_mag_size")))
    if not 0 <= mag <= 128:
        raise ValueError(f"slab_mag_size = {mag}: allowed 0..128")
    max_order = min(int(config.get("slab_max_order", 3)), int(config.get("max_page_order", 10)))
    return {
        "max_caches": int(config.get("slab_max_caches", 64)), "mag_size": mag,
        "percpu_sheaves": bool(profile_default(config, "slab_percpu_sheaves")),
        "max_order": max_order, "max_page_order": int(config.get("max_page_order", 10)),
        "min_partial": config.get("slab_min_partial"),
        "min_objects": config.get("slab_min_objects"), "nr_sheaves": int(config.get("slab_nr_sheaves", 64)),
        "depot_entries": int(config.get("slab_depot_entries", 1024)),
        "slub_debug": str(config.get("slub_debug", "") or ""), "kmalloc": bool(config.get("kmalloc", True)),
    }


def _nr_nodes(config: dict[str, Any]) -> int:
    sim = config.get("sim")
    return int(sim["nr_nodes"]) if sim else 1


def _cpu_rec_size(mag: int) -> int:
    return K_MAG + align_up(max(8 * mag, 0), CACHE_LINE) if mag else K_MAG


def slab_sections(config: dict[str, Any]) -> list[SectionSpec]:
    """Sections SLUB adds after mm_sections(config)."""
    p = slab_params(config)
    nr_cpus, nr_nodes, mc = int(config["nr_cpus"]), _nr_nodes(config), p["max_caches"]
    return [
        SectionSpec("slabcaches", G_SIZE + mc * CACHE_REC),
        SectionSpec("slabnode", mc * nr_nodes * NODE_REC),
        SectionSpec("slabcpu", mc * nr_cpus * _cpu_rec_size(p["mag_size"])),
        SectionSpec("slabmeta", int(config["nr_pages"]) * SMETA),
        SectionSpec("slabsheaf", max(1, p["nr_sheaves"]) * SHEAF_REC),
        SectionSpec("slabdepot", max(1, p["depot_entries"]) * DEPOT_REC),
    ]


def slab_init(arena: Any) -> None:
    """kmem_cache_init(): empty cache table, slabmeta cleared, kmalloc caches created."""
    p = slab_params(arena.config)
    q = arena.u64
    g = arena.off("slabcaches")
    for sec in ("slabcaches", "slabnode", "slabcpu", "slabmeta", "slabsheaf", "slabdepot"):
        o, s = arena.sections[sec]
        arena.u8[o : o + s] = bytes(s)
    nr_cpus = int(arena.config["nr_cpus"])
    q[(g + G_MUTEX) >> 3] = lock_alloc(arena, "slab_mutex", "slab_mutex")
    q[(g + G_MAX_CACHES) >> 3] = p["max_caches"]
    q[(g + G_NR_CPUS) >> 3] = nr_cpus
    q[(g + G_NR_NODES) >> 3] = _nr_nodes(arena.config)
    q[(g + G_MAG_SIZE) >> 3] = p["mag_size"]
    q[(g + G_TID_STEP) >> 3] = 1 << (nr_cpus - 1).bit_length()
    q[(g + G_PCS) >> 3] = int(p["percpu_sheaves"])
    q[(g + G_DEPOT_MAX) >> 3] = max(1, p["depot_entries"])
    arena.atomic.store64(g + G_MAGIC, SLAB_MAGIC)
    if p["kmalloc"]:
        for size in KMALLOC_CREATE_ORDER:             # create_kmalloc_caches(): 96, 192, then 8 .. 8k
            kmem_cache_create(arena, f"kmalloc-{_size_name(size)}", size, 0, SLAB_KMALLOC)


def slab_config_problem(config: dict[str, Any]) -> str | None:
    """Why caches of up to 8 KiB (kmalloc-8k, a workload's own cache) could not be made
    under `config`, or None.  Asked before the arena exists, so a machine SLUB cannot boot
    on is refused as bad input: the largest object, padded by whatever slub_debug may add
    to it, must fit a slab of order <= MAX_PAGE_ORDER."""
    p = slab_params(config)
    flags = 0
    for part in filter(None, p["slub_debug"].split(";")):   # worst case: every part applies
        flags |= _debug_flags_for("", part.split(",")[0])
    size = KMALLOC_SIZES[-1]
    osz = _layout(size, 0, flags | SLAB_KMALLOC, False)["size"]
    need = max(0, math.ceil(math.log2((osz + PAGE_SIZE - 1) // PAGE_SIZE)))
    if need <= p["max_page_order"]:
        return None
    how = f" padded to {osz} B by slub_debug = {p['slub_debug']!r}" if osz > size else ""
    return (f"an {size >> 10} KiB object (kmalloc-{size >> 10}k){how} needs a slab of order {need}: "
            f"MAX_PAGE_ORDER >= {need}")


def _size_name(size: int) -> str:
    return f"{size >> 10}k" if size >= 1024 and size % 1024 == 0 else str(size)


def _geo(arena: Any) -> tuple[int, int, int, int, int]:
    q, g = arena.u64, arena.off("slabcaches")
    if arena.atomic.load64(g + G_MAGIC) != SLAB_MAGIC:
        raise SlabError(f"arena {arena.name}: slab allocator not initialised (run slab_init)")
    return (q[(g + G_MAX_CACHES) >> 3], q[(g + G_NR_CPUS) >> 3], q[(g + G_NR_NODES) >> 3],
            q[(g + G_MAG_SIZE) >> 3], q[(g + G_TID_STEP) >> 3])


def _node_off(arena: Any, cid: int, nid: int, nr_nodes: int) -> int:
    return arena.off("slabnode") + (cid * nr_nodes + nid) * NODE_REC


def _cpu_off(arena: Any, cid: int, cpu: int, nr_cpus: int, mag: int) -> int:
    return arena.off("slabcpu") + (cid * nr_cpus + cpu) * _cpu_rec_size(mag)


def _rstr(arena: Any, off: int, n: int) -> str:
    return bytes(arena.u8[off : off + n]).rstrip(b"\0").decode()


# ------------------------------------------------------------------ geometry (calculate_sizes/order)
def _calc_slab_order(size: int, min_order: int, max_order: int, fract: int) -> int:
    order = min_order
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract:
            break
        order += 1
    return order


def calculate_order(size: int, max_order: int, nr_cpus: int, min_objects: int | None = None) -> int:
    """Models calculate_order(): the smallest order holding enough objects with waste
    <= 1/16 of the slab (then 1/8, 1/4, 1/2), objects capped by what max_order holds."""
    mo = min_objects or 4 * (nr_cpus.bit_length() + 1)
    max_objects = (PAGE_SIZE << max_order) // size
    mo = max(1, min(mo, max_objects))
    min_order = max(0, math.ceil(math.log2(max(1, (mo * size + PAGE_SIZE - 1) // PAGE_SIZE))))
    if (PAGE_SIZE << min_order) // size > MAX_OBJS_PER_PAGE:
        return max(0, math.ceil(math.log2(size * MAX_OBJS_PER_PAGE / PAGE_SIZE)) - 1)
    for fract in (16, 8, 4, 2):
        order = _calc_slab_order(size, min_order, max_order, fract)
        if order <= max_order:
            return order
    return max(0, math.ceil(math.log2((size + PAGE_SIZE - 1) // PAGE_SIZE)))


def _debug_flags_for(name: str, spec: str) -> int:
    """slab_debug=<opts>[,<cache>...][;...]: debug flags that apply to cache `name`."""
    flags = 0
    for part in filter(None, spec.split(";")):
        opts, *caches = part.split(",")
        if caches and not any(name == c or (c.endswith("*") and name.startswith(c[:-1])) for c in caches):
            continue
        if opts in ("", "-"):
            flags = 0 if opts == "-" else SLAB_DEBUG_FLAGS
            continue
        for ch in opts.upper():
            flags |= _DEBUG_LETTERS.get(ch, 0)
    return flags


def calculate_alignment(flags: int, align: int, size: int) -> int:
    """calculate_alignment() (mm/slab_common.c): SLAB_HWCACHE_ALIGN takes the cache line
    (halved while the object fits in half), never below arch_slab_minalign() = 8."""
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE
        while size <= ralign // 2 and ralign > 1:
            ralign //= 2
        align = max(align, ralign)
    return align_up(max(align, 8), 8)


def calculate_sizes(object_size: int, align: int, flags: int, has_ctor: bool) -> dict[str, int]:
    """Models calculate_sizes() (mm/slub.c, v6.19) for an already calculated alignment:

      size = ALIGN(object_size, 8)
      SLAB_RED_ZONE and size == object_size: + 8 (room for the right red zone)
      inuse = size
      free pointer after the object (offset = size, + 8) with SLAB_POISON, a ctor, or
        SLAB_RED_ZONE when object_size < 8 or orig_size is kept; else inside the object
        at ALIGN_DOWN(object_size / 2, 8)
      SLAB_STORE_USER: + 2 * sizeof(struct track) (32 with the stack depot), and
        + sizeof(unsigned int) for orig_size when also SLAB_KMALLOC
      SLAB_RED_ZONE: + 8 (the padding word), red_left_pad = ALIGN(8, align), + red_left_pad
      size = ALIGN(size, align)
    Returns size, offset (free pointer from the object start), red_left_pad, track_off,
    orig_off (0 if none) and inuse."""
    size = align_up(object_size, 8)
    if flags & SLAB_RED_ZONE and size == object_size:
        size += 8
    inuse = size
    orig = bool(flags & SLAB_STORE_USER and flags & SLAB_KMALLOC)   # slub_debug_orig_size()
    if flags & SLAB_POISON or has_ctor or (flags & SLAB_RED_ZONE and (object_size < 8 or orig)):
        offset = size
        size += 8
    else:
        offset = (object_size // 2) & ~7
    track_off = orig_off = 0
    if flags & SLAB_STORE_USER:
        track_off = size
        size += 2 * D.TRACK_SIZE
        if flags & SLAB_KMALLOC:
            orig_off = size
            size += D.ORIG_SIZE_SIZE
    red_left = 0
    if flags & SLAB_RED_ZONE:
        size += 8
        red_left = align_up(8, align)
        size += red_left
    return {"size": align_up(size, align), "align": align, "offset": offset, "red_left": red_left,
            "track_off": track_off, "orig_off": orig_off, "inuse": inuse}


def _layout(size: int, align: int, flags: int, has_ctor: bool) -> dict[str, int]:
    """The alignment (calculate_alignment, with create_boot_cache()'s natural alignment
    of kmalloc caches: the largest power of two dividing the size) and calculate_sizes."""
    if flags & SLAB_KMALLOC:
        align = max(align, size & -size)
    lay = calculate_sizes(size, calculate_alignment(flags, align, size), flags, has_ctor)
    lay["fpoff"] = lay["offset"]
    return lay


def kmem_cache_create(arena: Any, name: str, size: int, align: int = 0, flags: int = 0,
                      ctor: Callable[[memoryview], None] | str | None = None, cpu: int = CPU_COORD,
                      sheaf_capacity: int = 0) -> int:
    """kmem_cache_create(): a new cache visible to every CPU by name; returns its id.

    Runs under slab_mutex, so workers may create caches at run time too.  `ctor`
    (a module-level function, stored as "module:qualname") runs on every object of a
    new slab.  Debug flags from config slub_debug are added here.  `sheaf_capacity`
    (struct kmem_cache_args.sheaf_capacity, 0..SHEAF_CAPACITY): with config
    slab_percpu_sheaves on, the cache gets per-CPU sheaves of that many objects and a
    barn per node (Linux 6.18+: only caches created with a capacity have them, and not
    debug caches).
    """
    max_caches, nr_cpus, nr_nodes, mag, _ = _geo(arena)
    p = slab_params(arena.config)
    nb = name.encode()
    # Objects up to MAX_PAGE_ORDER pages: calculate_order() falls back past slab_max_order
    # to get_order(size) for objects no slab of that order holds (Linux: kmalloc-8k
    # under slab_max_order=0 gets order-1 slabs), and -ENOSYS beyond MAX_PAGE_ORDER.
    if not 0 < len(nb) <= _NAME_LEN or not 1 <= size <= (PAGE_SIZE << p["max_page_order"]):
        raise SlabError(f"kmem_cache_create: bad name {name!r} or size {size}")
    if not 0 <= sheaf_capacity <= SHEAF_CAPACITY:
        raise SlabError(f"kmem_cache_create: {name}: sheaf_capacity {sheaf_capacity}: allowed 0..{SHEAF_CAPACITY}")
    ctor_s = ctor if isinstance(ctor, str) or ctor is None else f"{ctor.__module__}:{ctor.__qualname__}"
    flags |= _debug_flags_for(name, p["slub_debug"])
    lay = _layout(size, align, flags, bool(ctor_s))
    osz = lay["size"]
    order = calculate_order(osz, p["max_order"], nr_cpus, p["min_objects"])
    objects = min((PAGE_SIZE << order) // osz, MAX_OBJS_PER_PAGE)
    min_order = max(0, math.ceil(math.log2(max(1, (osz + PAGE_SIZE - 1) // PAGE_SIZE))))
    min_objects = min((PAGE_SIZE << min_order) // osz, MAX_OBJS_PER_PAGE)
    if objects < 1 or order > p["max_page_order"]:
        raise SlabError(f"kmem_cache_create: {name}: object of {osz} B does not fit a slab of order "
                        f"<= {p['max_page_order']} (MAX_PAGE_ORDER)")
    mp = p["min_partial"]
    min_partial = int(mp) if mp is not None else min(10, max(5, int(math.log2(osz)) // 2))
    cpu_partial = 6 if osz >= 4096 else 24 if osz >= 1024 else 52 if osz >= 256 else 120
    pcs_cap = sheaf_capacity if p["percpu_sheaves"] and not flags & SLAB_DEBUG_FLAGS else 0
    g = arena.off("slabcaches")
    mutex = SpinLock(arena, arena.u64[(g + G_MUTEX) >> 3], cpu)
    q, d = arena.u64, arena.u32
    with mutex:
        if _lookup_locked(arena, name, max_caches) >= 0:
            raise SlabError(f"kmem_cache_create: a cache named {name!r} exists")
        cid = next((i for i in range(max_caches)
                    if d[(_cache_off(arena, i) + C_STATE) >> 2] == CACHE_FREE), -1)
        if cid < 0:
            raise SlabError(f"kmem_cache_create: cache table full ({max_caches}; config slab_max_caches)")
        co = _cache_off(arena, cid)
        arena.u8[co : co + CACHE_REC] = bytes(CACHE_REC)
        arena.u8[co + C_NAME : co + C_NAME + _NAME_LEN] = nb.ljust(_NAME_LEN, b"\0")
        cb = (ctor_s or "").encode()[:_CTOR_LEN]
        arena.u8[co + C_CTOR : co + C_CTOR + _CTOR_LEN] = cb.ljust(_CTOR_LEN, b"\0")
        for f, v in ((C_FLAGS, flags), (C_OBJSIZE, size), (C_SIZE, osz), (C_ALIGN, lay["align"]),
                     (C_FPOFF, lay["fpoff"]), (C_ORDER, order), (C_OBJECTS, objects), (C_MIN_ORDER, min_order),
                     (C_MIN_OBJECTS, min_objects), (C_RED_LEFT, lay["red_left"]), (C_MIN_PARTIAL, min_partial),
                     (C_CPU_PARTIAL, (cpu_partial * 2 + objects - 1) // objects), (C_TRACK_OFF, lay["track_off"]),
                     (C_INUSE, lay["inuse"]), (C_SHEAF_CAP, pcs_cap), (C_DEFRAG, REMOTE_NODE_DEFRAG_RATIO),
                     (C_ORIG_OFF, lay["orig_off"])):
            d[(co + f) >> 2] = v
        q[(g + G_SEQ) >> 3] += 1
        d[(co + C_SEQ) >> 2] = q[(g + G_SEQ) >> 3]     # list_add(&s->list, &slab_caches): newest first
        for nid in range(nr_nodes):
            no = _node_off(arena, cid, nid, nr_nodes)
            arena.u8[no : no + NODE_REC] = bytes(NODE_REC)
            q[(no + N_LOCK) >> 3] = lock_alloc(arena, "&n->list_lock", f"{name}/{nid}"[-_NAME_LEN:])
            d[(no + N_HEAD) >> 2] = NIL32
            d[(no + N_TAIL) >> 2] = NIL32
            if pcs_cap:
                q[(no + N_BARN_LOCK) >> 3] = lock_alloc(arena, "&barn->lock", f"{name}/{nid}"[-_NAME_LEN:])
                d[(no + N_BARN_FULL) >> 2] = NIL32
                d[(no + N_BARN_EMPTY) >> 2] = NIL32
        rs = _cpu_rec_size(mag)
        for c in range(nr_cpus):
            ko = _cpu_off(arena, cid, c, nr_cpus, mag)
            arena.u8[ko : ko + rs] = bytes(rs)
            q[(ko + K_FREELIST_TID) >> 3] = c << 32 | NIL32
            q[(ko + K_SLAB) >> 3] = NIL64
            q[(ko + K_PARTIAL) >> 3] = NIL64
        arena.atomic.store32(co + C_STATE, CACHE_LIVE)      # last: lookups see a whole record
        q[(g + G_NR_CACHES) >> 3] = max(q[(g + G_NR_CACHES) >> 3], cid + 1)
    return cid


def _lookup_locked(arena: Any, name: str, max_caches: int) -> int:
    nb = name.encode().ljust(_NAME_LEN, b"\0")
    for i in range(max_caches):
        co = _cache_off(arena, i)
        if arena.u32[(co + C_STATE) >> 2] == CACHE_LIVE and bytes(arena.u8[co : co + _NAME_LEN]) == nb:
            return i
    return -1


def kmem_cache_lookup(arena: Any, name: str) -> int:
    """Id of the live cache called `name`, or -1."""
    return _lookup_locked(arena, name, _geo(arena)[0])


def live_caches(arena: Any) -> list[int]:
    max_caches = _geo(arena)[0]
    return [i for i in range(max_caches) if arena.u32[(_cache_off(arena, i) + C_STATE) >> 2] == CACHE_LIVE]


def cache_info(arena: Any, cid: int) -> dict[str, Any]:
    """The cache record as a dict (names as struct kmem_cache's fields)."""
    co = _cache_off(arena, cid)
    d = arena.u32
    f = {k: d[(co + o) >> 2] for k, o in (
        ("state", C_STATE), ("flags", C_FLAGS), ("object_size", C_OBJSIZE), ("size", C_SIZE), ("align", C_ALIGN),
        ("offset", C_FPOFF), ("order", C_ORDER), ("objects", C_OBJECTS), ("min_order", C_MIN_ORDER),
        ("min_objects", C_MIN_OBJECTS), ("red_left_pad", C_RED_LEFT), ("min_partial", C_MIN_PARTIAL),
        ("cpu_partial_slabs", C_CPU_PARTIAL), ("track_off", C_TRACK_OFF), ("inuse", C_INUSE),
        ("nr_bugs", C_NR_BUGS), ("sheaf_capacity", C_SHEAF_CAP), ("seq", C_SEQ),
        ("remote_node_defrag_ratio", C_DEFRAG), ("orig_off", C_ORIG_OFF))}
    f["id"] = cid
    f["name"] = _rstr(arena, co + C_NAME, _NAME_LEN)
    f["ctor"] = _rstr(arena, co + C_CTOR, _CTOR_LEN)
    return f


def virt_to_off(arena: Any, addr: int) -> int:
    """Arena byte offset of a simulated direct-map address (__pa + physmem base)."""
    return arena.off("physmem") + (addr - VBASE)


def object_view(arena: Any, addr: int, n: int) -> memoryview:
    """A byte view of n bytes at an object address (released by Arena.close)."""
    return arena.view(virt_to_off(arena, addr), n)


def slab_stats(arena: Any, cid: int, cpu: int | None = None) -> dict[str, int]:
    _, nr_cpus, _, mag, _ = _geo(arena)
    cpus = range(nr_cpus) if cpu is None else (cpu,)
    out = dict.fromkeys(STAT_NAMES, 0)
    for c in cpus:
        ko = _cpu_off(arena, cid, c, nr_cpus, mag) + K_STATS
        for ctx in range(2):
            for i, n in enumerate(STAT_NAMES):
                out[n] += arena.u64[(ko + ctx * NR_STATS * 8 + i * 8) >> 3]
    # derived, not counted on the fast path (see _build.alloc)
    # objects the cpu-slab path handed out: allocations not served by a sheaf, plus the
    # objects taken to refill per-CPU sheaves (not allocations themselves)
    out["alloc_fastpath"] = (out["alloc"] - out["alloc_cpu_sheaf"] + out["sheaf_refill"] - out["alloc_slowpath"]
                             - out["alloc_mag"])
    out["free_fastpath"] = out["free"] - out["free_slowpath"] - out["free_mag"] - out["free_cpu_sheaf"]
    return out


# ------------------------------------------------------------------ views (slabinfo 2.1, slabtop)
def _cache_counts(arena: Any, cid: int, sm: np.ndarray) -> dict[str, Any]:
    info = cache_info(arena, cid)
    mine = np.flatnonzero(sm[:, M_CACHE // 4] == cid + 1)
    words = sm[mine, 0].astype(np.uint64) | (sm[mine, 1].astype(np.uint64) << np.uint64(32))
    nobj = ((words >> np.uint64(48)) & np.uint64(0x7FFF)).astype(np.int64)
    inuse = ((words >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.int64)
    lst = (sm[mine, M_LIST // 4] & 0xFF).astype(np.int64)
    num_objs = int(nobj.sum())
    free_partial = int((nobj - inuse)[lst == LIST_NODE_PARTIAL].sum())
    st = slab_stats(arena, cid)
    return {"name": info["name"], "active_objs": num_objs - free_partial, "num_objs": num_objs,
            "objsize": info["size"], "object_size": info["object_size"], "objperslab": info["objects"],
            "pagesperslab": 1 << info["order"], "active_slabs": len(mine), "num_slabs": len(mine),
            "sharedavail": 0, "limit": 0, "batchcount": 0, "sharedfactor": 0, "order": info["order"],
            "flags": info["flags"], "allocated": st["alloc"] - st["free"], "nr_bugs": info["nr_bugs"],
            "cache_size_kb": len(mine) * (4 << info["order"])}


def slabinfo_json(arena: Any) -> list[dict[str, Any]]:
    """Every live cache's slabinfo figures (keys as the /proc/slabinfo header, plus extras),
    in the kernel's order: slab_caches is a list_add (newest first) list."""
    sm = arena.array("slabmeta", np.uint32).reshape(-1, SMETA // 4)
    d = arena.u32
    order = sorted(live_caches(arena), key=lambda c: -d[(_cache_off(arena, c) + C_SEQ) >> 2])
    try:
        return [_cache_counts(arena, cid, sm) for cid in order]
    finally:
        del sm


def slabinfo_text(arena: Any) -> str:
    """/proc/slabinfo version 2.1 (linux-mm.md 8.4): SLUB tunables 0, active == num slabs."""
    out = ["slabinfo - version: 2.1",
           "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables "
           "<limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"]
    for r in slabinfo_json(arena):
        out.append(f"{r['name']:<17} {r['active_objs']:6d} {r['num_objs']:6d} {r['objsize']:6d} "
                   f"{r['objperslab']:4d} {r['pagesperslab']:4d} : tunables {0:4d} {0:4d} {0:4d}"
                   f" : slabdata {r['active_slabs']:6d} {r['num_slabs']:6d} {0:6d}")
    return "\n".join(out) + "\n"


def slabtop_text(arena: Any, sort: str = "cache_size_kb", limit: int = 20) -> str:
    """slabtop(1)-like table, sorted by cache size (or another slabinfo_json key)."""
    rows = sorted(slabinfo_json(arena), key=lambda r: r.get(sort, 0), reverse=True)
    ao = sum(r["active_objs"] for r in rows)
    no = sum(r["num_objs"] for r in rows)
    kb = sum(r["cache_size_kb"] for r in rows)
    out = [f" Active / Total Objects (% used)    : {ao} / {no} ({100 * ao / max(no, 1):.1f}%)",
           f" Active / Total Slabs (% used)      : {sum(r['active_slabs'] for r in rows)} / "
           f"{sum(r['num_slabs'] for r in rows)} (100.0%)",
           f" Active / Total Caches (% used)     : {sum(1 for r in rows if r['num_slabs'])} / {len(rows)}",
           f" Total Size                         : {kb:.2f}K", "",
           "  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME"]
    for r in rows[:limit]:
        use = 100 * r["active_objs"] // max(r["num_objs"], 1)
        out.append(f"{r['num_objs']:6d} {r['active_objs']:6d} {use:3d}% {r['objsize'] / 1024:7.2f}K "
                   f"{r['num_slabs']:6d} {r['objperslab']:8d} {r['cache_size_kb']:9d}K {r['name']}")
    return "\n".join(out) + "\n"

