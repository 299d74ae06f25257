"""What a simulated CPU does while it waits for a lock: answer its interrupts.

Models: a CPU spinning in spin_lock() or sleeping in down_read() still takes IPIs (a
TLB-shootdown request must not wait for a lock hand-over, or two CPUs deadlock: one
holds mmap_lock and waits for the other's flush acknowledgement, the other waits for
mmap_lock).  Unit: one hook per thread of control, set by the layer that owns the
interrupts (mm/vm's TLB code installs its IPI handler), called by every lock's wait loop.

Owner-only: a worker process is one simulated CPU; a test that drives several CPUs from
threads of one process gives each thread its CPU's hook (the hook is thread-local, with
the process-wide one as the default).  A hook must be cheap, take no locks, not raise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["set_wait_hook", "call_wait_hook", "get_wait_hook"]

_default: Callable[[], None] | None = None
_tls = threading.local()


def set_wait_hook(fn: Callable[[], None] | None, thread_only: bool = False) -> Callable[[], None] | None:
    """Install `fn` (None removes it) for this thread, and as the process default unless
    `thread_only`; returns the hook this thread had."""
    global _default
    old = get_wait_hook()
    _tls.hook = fn
    if not thread_only:
        _default = fn
    return old


def get_wait_hook() -> Callable[[], None] | None:
    return getattr(_tls, "hook", _default)


def call_wait_hook() -> None:
    """Called from lock wait loops: run this thread's hook if it has one."""
    h = getattr(_tls, "hook", _default)
    if h is not None:
        h()
