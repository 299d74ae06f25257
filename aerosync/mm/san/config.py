"""The [debug] switches: sanitizers and hardening, and the arena room they take.

Models: the kernel command line and Kconfig knobs of the same names -- kasan=on
(CONFIG_KASAN_GENERIC), kfence.sample_interval / CONFIG_KFENCE_NUM_OBJECTS,
init_on_alloc= / init_on_free= (CONFIG_INIT_ON_*_DEFAULT_ON),
CONFIG_SLAB_FREELIST_HARDENED, CONFIG_STACKPROTECTOR_STRONG -- and mm/kasan's sizing
(kasan_cache_create's optimal_redzone, the quarantine's share of memory).  Unit: one
machine's configuration (config key "debug", a dict; scenario.py checks the types).

Keys (defaults in brackets):
  kasan                    [false] KASAN generic mode: shadow, redzones, quarantine, checks
  kasan_quarantine_kb      [memory / 32, as QUARANTINE_FRACTION; 0 = no quarantine]
  kfence_sample_interval   [0 = off] one slab allocation in N (per cache and CPU) is a
                           KFENCE object (Linux: one per N ms; the simulation counts)
  kfence_num_objects       [255, CONFIG_KFENCE_NUM_OBJECTS; 1..4095]
  init_on_alloc            [false] zero every slab object and page when allocated
  init_on_free             [false] zero them when freed
  freelist_hardened        [false] SLAB_FREELIST_HARDENED: free pointers stored XORed
                           with a per-cache random value and their own location
  stack_protector          [true] simulated call frames carry the task's canary

Arena room: KASAN's shadow is one byte per 8 bytes of physical memory (nr_pages x 512
bytes) plus a quarantine ring per CPU; KFENCE's pool is (num_objects + 1) x 2 pages taken
from the top of physical memory (kfence_pool_pfns; reserved at boot, as __kfence_pool is
a memblock range of the direct map; at most half of memory) plus a section of 128 bytes
of metadata and one protection byte per pool page.
"""

from __future__ import annotations

from typing import Any

from aerosync.params import PAGE_SIZE

__all__ = ["debug_params", "optimal_redzone", "KASAN_META_SIZE", "KASAN_GRANULE", "QUARANTINE_SLOTS",
           "KFENCE_META_REC", "kfence_pool_pages", "kfence_pool_pfns", "san_active"]

KASAN_GRANULE = 8
KASAN_META_SIZE = 32                  # alloc track + free track (struct kasan_track x 2, see kasan.py)
QUARANTINE_SLOTS = 4096               # ring entries per CPU (the byte budget usually binds first)
KFENCE_META_REC = 128                 # struct kfence_metadata (kfence.py draws it)
_QUARANTINE_FRACTION = 32


def optimal_redzone(object_size: int) -> int:
    """mm/kasan/generic.c optimal_redzone(): the redzone KASAN adds after an object."""
    for limit, rz in ((64 - 16, 16), (128 - 32, 32), (512 - 64, 64), (4096 - 128, 128),
                      ((1 << 14) - 256, 256), ((1 << 15) - 512, 512), ((1 << 16) - 1024, 1024)):
        if object_size <= limit:
            return rz
    return 2048


def kfence_pool_pages(nr_objects: int) -> int:
    """KFENCE_POOL_SIZE / PAGE_SIZE: an object page and a guard page per object, plus the
    two leading pages (kfence_init_pool keeps pages 0 and 1 as guards)."""
    return (nr_objects + 1) * 2


def kfence_pool_pfns(nr_pages: int, nr_objects: int) -> tuple[int, int]:
    """[first, end) pfns of the KFENCE pool: the last kfence_pool_pages() pages of
    physical memory, reserved at boot (__kfence_pool is memblock memory in the direct map)."""
    return nr_pages - kfence_pool_pages(nr_objects), nr_pages


def debug_params(config: dict[str, Any]) -> dict[str, Any]:
    """The [debug] section with defaults; ValueError naming the key for a bad value."""
    d = dict(config.get("debug") or {})
    mem_kb = int(config.get("nr_pages", 0)) * PAGE_SIZE >> 10
    p = {
        "kasan": bool(d.get("kasan", False)),
        "kasan_quarantine_kb": int(d.get("kasan_quarantine_kb", mem_kb // _QUARANTINE_FRACTION)),
        "kfence_sample_interval": int(d.get("kfence_sample_interval", 0)),
        "kfence_num_objects": int(d.get("kfence_num_objects", 255)),
        "init_on_alloc": bool(d.get("init_on_alloc", False)),
        "init_on_free": bool(d.get("init_on_free", False)),
        "freelist_hardened": bool(d.get("freelist_hardened", False)),
        "stack_protector": bool(d.get("stack_protector", True)),
    }
    checks = {
        "kasan_quarantine_kb": (0 <= p["kasan_quarantine_kb"] <= 1 << 24, "0..16777216"),
        "kfence_sample_interval": (0 <= p["kfence_sample_interval"] <= 1 << 20, "0 (off)..1048576"),
        "kfence_num_objects": (1 <= p["kfence_num_objects"] <= 4095 and
                               (not p["kfence_sample_interval"] or not mem_kb or
                                kfence_pool_pages(p["kfence_num_objects"]) * PAGE_SIZE >> 10 <= mem_kb // 2),
                               f"1..4095, the pool ((n + 1) * 2 pages) at most half of the machine's "
                               f"{mem_kb} KiB of memory"),
    }
    for key, (ok, allowed) in checks.items():
        if not ok:
            raise ValueError(f"debug.{key} = {p[key]!r}: allowed {allowed}")
    return p


def san_active(config: dict[str, Any]) -> bool:
    """Any switch that changes the slab or page allocator's closures."""
    p = debug_params(config)
    return bool(p["kasan"] or p["kfence_sample_interval"] or p["init_on_alloc"] or p["init_on_free"]
                or p["freelist_hardened"])
