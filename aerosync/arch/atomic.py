"""Atomic operations on arena words: the one module that knows the atomics backend.

Models: the kernel's <linux/atomic.h> / <asm/cmpxchg.h> on a shared-memory buffer.
Unit: an aligned 32- or 64-bit word at a byte offset of one buffer.

Backend: atomicshm (DESIGN.md: ~20 ns per cas_u64 from Python; the `atomics` package
costs ~9 us and ctypes-to-libatomic ~0.6 us, which would make the "lockless" paths slower
than locked ones).  `AtomicOps` exposes the backend's bound C methods directly as
attributes, with no Python wrapper in between: a wrapper call would double the cost of
every CAS.  Changing backend means changing this file only; `tests/test_atomic.py` is the
contract every backend must pass.

Ordering: every operation defaults to SEQ_CST; callers pass RELEASE/ACQUIRE explicitly
where a weaker order is enough and say why at the call site.  Offsets must be naturally
aligned (the backend raises ValueError otherwise) and a 64-bit word must not straddle a
cache line (arena/layout.py guarantees this by construction).

Results are unsigned.  `cas*` is strong and returns the previous value: the CAS
succeeded iff the returned value equals `expected`.
"""

from __future__ import annotations

import atomicshm

__all__ = [
    "AtomicOps",
    "RELAXED",
    "ACQUIRE",
    "RELEASE",
    "ACQ_REL",
    "SEQ_CST",
    "BACKEND",
    "fence",
    "to_signed64",
]

RELAXED: int = atomicshm.RELAXED
ACQUIRE: int = atomicshm.ACQUIRE
RELEASE: int = atomicshm.RELEASE
ACQ_REL: int = atomicshm.ACQ_REL
SEQ_CST: int = atomicshm.SEQ_CST
BACKEND: str = f"atomicshm {atomicshm.__version__} ({atomicshm.BACKEND})"
fence = atomicshm.fence

_MASK64 = (1 << 64) - 1


def to_signed64(value: int) -> int:
    """Reinterpret an unsigned 64-bit result as two's complement."""
    return value - (1 << 64) if value >> 63 else value


class AtomicOps:
    """Atomic load/store/cas/fetch_add/exchange on one buffer, as bound backend methods.

    Holds an export of the buffer until `close()`; the arena closes it before unmapping.
    """

    __slots__ = (
        "_view",
        "load64", "store64", "cas64", "fetch_add64", "fetch_sub64", "xchg64",
        "fetch_or64", "fetch_and64",
        "load32", "store32", "cas32", "fetch_add32", "fetch_sub32", "xchg32",
        "fetch_or32", "fetch_and32",
    )

    def __init__(self, buf: memoryview) -> None:
        v = atomicshm.AtomicView(buf)
        self._view = v
        self.load64 = v.load_u64
        self.store64 = v.store_u64
        self.cas64 = v.cas_u64
        self.fetch_add64 = v.fetch_add_u64
        self.fetch_sub64 = v.fetch_sub_u64
        self.xchg64 = v.exchange_u64
        self.fetch_or64 = v.fetch_or_u64
        self.fetch_and64 = v.fetch_and_u64
        self.load32 = v.load_u32
        self.store32 = v.store_u32
        self.cas32 = v.cas_u32
        self.fetch_add32 = v.fetch_add_u32
        self.fetch_sub32 = v.fetch_sub_u32
        self.xchg32 = v.exchange_u32
        self.fetch_or32 = v.fetch_or_u32
        self.fetch_and32 = v.fetch_and_u32

    @property
    def closed(self) -> bool:
        return self._view.closed

    def close(self) -> None:
        """Release the buffer export; every bound method fails afterwards."""
        self._view.close()
