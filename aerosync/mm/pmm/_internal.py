"""Helpers shared inside mm only (like mm/internal.h): fallback table, debug switch.

Models: mm/internal.h, mm/page_alloc.c:fallbacks[].
"""

from __future__ import annotations

from aerosync.mm.pmm.gfp import MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE

__all__ = ["DEBUG_VM", "FALLBACKS", "ZN_SHIFT", "ZN_MASK", "zn_word"]

# CONFIG_DEBUG_VM: assert_held() in *_locked functions and extra free-time checks.
# Off by default (costs ~0.1 us per locked call); tests turn it on with monkeypatch
# before building a handle (the handle reads it once, at construction).
DEBUG_VM = False

# mm/page_alloc.c:fallbacks[] (linux-mm.md 1.6): requested -> (1st, 2nd) fallback.
FALLBACKS: tuple[tuple[int, ...], ...] = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),      # UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),    # MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),        # RECLAIMABLE
)

ZN_SHIFT = 48                        # word0 bits 48..63 = zone | node << 8 (fixed at init)
ZN_MASK = 0xFFFF << ZN_SHIFT


def zn_word(zid: int, nid: int) -> int:
    """The fixed zone/node part of a struct page's word0."""
    return (zid | nid << 8) << ZN_SHIFT
