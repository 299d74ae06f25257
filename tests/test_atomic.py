"""Contract of aerosync.arch.atomic: what every atomics backend must do."""

from __future__ import annotations

import mmap

import pytest

from aerosync.arch.atomic import AtomicOps, to_signed64


@pytest.fixture
def ops():
    buf = mmap.mmap(-1, 4096)
    a = AtomicOps(memoryview(buf))
    yield a
    a.close()
    buf.close()


def test_load_store_64_and_32(ops: AtomicOps) -> None:
    ops.store64(8, 2**64 - 1)
    assert ops.load64(8) == 2**64 - 1
    ops.store32(16, 0xDEADBEEF)
    assert ops.load32(16) == 0xDEADBEEF
    assert ops.load32(20) == 0


def test_cas_returns_previous_value(ops: AtomicOps) -> None:
    ops.store64(0, 5)
    assert ops.cas64(0, 5, 7) == 5          # success: returns expected
    assert ops.load64(0) == 7
    assert ops.cas64(0, 5, 9) == 7          # failure: returns what was there, no change
    assert ops.load64(0) == 7
    assert ops.cas32(64, 0, 1) == 0 and ops.load32(64) == 1


def test_fetch_add_exchange_wrap(ops: AtomicOps) -> None:
    assert ops.fetch_add64(0, 3) == 0
    assert ops.fetch_add64(0, 2**64 - 1) == 3   # adding -1 mod 2^64
    assert ops.load64(0) == 2
    assert ops.xchg64(0, 11) == 2 and ops.load64(0) == 11
    assert ops.fetch_sub32(8, 1) == 0 and ops.load32(8) == 2**32 - 1
    assert to_signed64(2**64 - 1) == -1 and to_signed64(5) == 5


def test_fetch_or_and(ops: AtomicOps) -> None:
    assert ops.fetch_or64(0, 0b1010) == 0
    assert ops.fetch_and64(0, 0b0010) == 0b1010
    assert ops.load64(0) == 0b0010


def test_misaligned_and_out_of_bounds_rejected(ops: AtomicOps) -> None:
    with pytest.raises(ValueError):
        ops.load64(4)
    with pytest.raises(ValueError):
        ops.cas32(2, 0, 1)
    with pytest.raises(IndexError):
        ops.load64(4096)


def test_closed_view_refuses(ops: AtomicOps) -> None:
    ops.close()
    assert ops.closed
    with pytest.raises(ValueError):
        ops.load64(0)
