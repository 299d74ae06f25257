"""What a simulated CPU does while it waits for a lock: answer its interrupts.

Models: a CPU spinning in spin_lock() or sleeping in down_read() still takes IPIs (a
TLB-shootdown request must not wait for a lock hand-over, or two CPUs deadlock: one
holds mmap_lock and waits for the other's flush acknowledgement, the other waits for
mmap_lock).  Unit: one process-wide hook, set by the layer that owns the interrupts
(mm/vm's TLB code installs its IPI handler), called by every lock's wait loop.

Owner-only: the hook belongs to this process (a worker is one simulated CPU); it must
be cheap, must not take locks, and must not raise.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["set_wait_hook", "call_wait_hook", "get_wait_hook"]

_hook: Callable[[], None] | None = None


def set_wait_hook(fn: Callable[[], None] | None) -> Callable[[], None] | None:
    """Install `fn` (None removes it); returns the previous hook."""
    global _hook
    old, _hook = _hook, fn
    return old


def get_wait_hook() -> Callable[[], None] | None:
    return _hook


def call_wait_hook() -> None:
    """Called from lock wait loops: run the hook if one is set."""
    h = _hook
    if h is not None:
        h()
