"""Slab debugging (issue 4): one test per check, each showing the report and a
consistent allocator afterwards (slab checker and page checker pass)."""

from __future__ import annotations

import pytest

from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.slab_common import SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER, kmem_cache_create, virt_to_off
from aerosync.mm.slab.slub import Slub
from tests.test_slub import all_ok

pytestmark = pytest.mark.usefixtures("both_profiles")   # issue 14: races and checker in both kernel profiles

DBG = SLAB_POISON | SLAB_RED_ZONE | SLAB_STORE_USER


def _cache(a, name: str = "dbg-64", size: int = 64):
    kmem_cache_create(a, name, size, 0, DBG)
    s = Slub(a, 0)
    return s, s.cache(name)


def test_double_free_reported(sa) -> None:
    a = sa()
    s, c = _cache(a)
    x = c.alloc()
    c.free(x)
    c.free(x)
    rep = s.reports[-1]
    print(rep)
    assert "BUG: KASAN: double-free" in rep and f"Free of addr {x:x}" in rep
    assert "which belongs to the cache dbg-64 of size 64" in rep and "Allocated by task: test_double_free" in rep
    assert "Freed by task: test_double_free" in rep
    all_ok(a)


def test_invalid_free_not_object_start_and_wrong_cache(sa) -> None:
    a = sa()
    s, c = _cache(a)
    x = c.alloc()
    c.free(x + 8)
    assert "BUG: KASAN: invalid-free" in s.reports[-1] and "not an object start" in s.reports[-1]
    y = Kmalloc(s).kmalloc(64)
    c.free(y)
    assert "invalid-free" in s.reports[-1] and "kmalloc-64" in s.reports[-1]
    print("\n".join(s.reports))
    c.free(x)
    Kmalloc(s).kfree(y)
    all_ok(a)


def test_redzone_overwrite_reported_and_isolated(sa) -> None:
    a = sa()
    s, c = _cache(a)
    x = c.alloc()
    a.u8[virt_to_off(a, x) + 64] = 0                    # one byte past the object
    c.free(x)
    rep = s.reports[-1]
    print(rep)
    assert "[Right Redzone overwritten]" in rep and "First byte 0x0 instead of 0xcc" in rep
    assert "BUG dbg-64 (Not tainted): Object corrupt" in rep and "isolated" in rep and "Object " in rep
    assert "Allocated in test_redzone_overwrite" in rep
    again = [c.alloc() for _ in range(200)]
    assert x not in again                               # never reused
    for y in again:
        c.free(y)
    all_ok(a)


def test_write_after_free_found_at_next_alloc(sa) -> None:
    a = sa()
    s, c = _cache(a)
    objs = [c.alloc() for _ in range(10)]
    for y in objs:
        c.free(y)
    victim = objs[-1]                                   # LIFO: the next allocation
    a.u8[virt_to_off(a, victim) + 20] = 0x41
    z = c.alloc()
    rep = s.reports[-1]
    print(rep)
    assert z != victim and "[Poison overwritten]" in rep and "@offset=" in rep
    assert "First byte 0x41 instead of 0x6b" in rep and "Freed in test_write_after_free" in rep
    c.free(z)
    all_ok(a)


def test_global_slub_debug_applies_to_kmalloc(sa) -> None:
    a = sa(slub_debug="ZP,kmalloc-32")
    s = Slub(a, 1)
    k = Kmalloc(s)
    x = k.kmalloc(30)
    assert k.caches[32].debug and not k.caches[64].debug
    a.u8[virt_to_off(a, x) + 32] = 1
    k.kfree(x)
    assert "Right Redzone overwritten" in s.reports[-1]
    all_ok(a)
