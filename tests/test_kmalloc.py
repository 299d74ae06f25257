"""kmalloc family (issue 4): size classes, kzalloc, krealloc, large kmalloc, kfree, ksize."""

from __future__ import annotations

import warnings

import pytest

from aerosync.mm.pmm import gfp as G
from aerosync.mm.slab.kmalloc import BadKfreeWarning, Kmalloc, kmalloc_cache_name, kmalloc_index
from aerosync.mm.slab.slab_common import virt_to_off
from aerosync.mm.slab.slub import Slub
from tests.test_slub import all_ok


@pytest.mark.parametrize(("size", "cls"), [(1, 8), (8, 8), (9, 16), (64, 64), (65, 96), (96, 96), (97, 128),
                                            (129, 192), (193, 256), (1000, 1024), (8192, 8192), (8193, 0)])
def test_size_classes(size: int, cls: int) -> None:
    assert kmalloc_index(size) == cls


def test_kmalloc_kzalloc_krealloc_ksize(sa) -> None:
    a = sa()
    k = Kmalloc(Slub(a, 0))
    x = k.kmalloc(70)
    assert k.ksize(x) == 96 and kmalloc_cache_name(70) == "kmalloc-96"
    o = virt_to_off(a, x)
    a.u8[o : o + 70] = bytes(range(70))
    y = k.krealloc(x, 90)
    assert y == x                                       # still fits its class
    z = k.krealloc(x, 300, G.__GFP_ZERO)
    assert z != x and k.ksize(z) == 512
    oz = virt_to_off(a, z)
    assert bytes(a.u8[oz : oz + 70]) == bytes(range(70)) and bytes(a.u8[oz + 96 : oz + 300]) == bytes(204)
    w = k.kmalloc(128)
    ow = virt_to_off(a, w)
    a.u8[ow : ow + 128] = b"\xff" * 128
    k.kfree(w)
    w2 = k.kzalloc(128)
    ow2 = virt_to_off(a, w2)
    assert bytes(a.u8[ow2 : ow2 + 128]) == bytes(128)
    assert k.krealloc(z, 0) == 0
    k.kfree(w2)
    k.kfree(0)
    all_ok(a)


def test_large_kmalloc_and_bad_kfree(sa) -> None:
    a = sa()
    k = Kmalloc(Slub(a, 1))
    big = k.kmalloc(20000)                              # order 3 compound block
    assert big and k.ksize(big) == 32768
    o = virt_to_off(a, big)
    a.u8[o + 19999] = 7
    all_ok(a)
    k.kfree(big)
    x = k.kmalloc(2048)                                 # kmalloc-2k: multi-page slab
    y = k.kmalloc(2048)
    k.kfree(y)                                          # may live in a tail page
    with warnings.catch_warnings(record=True) as wl:
        warnings.simplefilter("always")
        k.kfree(0xFFFF888000000000 + 5 * 4096 + 8)      # not a slab object, not large kmalloc
    assert any(issubclass(w.category, BadKfreeWarning) for w in wl)
    k.kfree(x)
    all_ok(a)
