"""The wait hook: what a simulated CPU does while it waits for a lock.

Models: a CPU spinning in spin_lock() with interrupts enabled, or sleeping in
down_read(), still takes interrupts -- in particular TLB-shootdown IPIs
(smp_call_function_many), which the sender waits for.  Without this, CPU A waiting for a
lock held by B, while B waits for A's IPI answer, is a deadlock the real kernel does not
have.  mm/vm's TLB code installs its IPI handler here.

`set_wait_hook(fn)` installs `fn` (no arguments, cheap) and returns the hook this thread
had; every lock wait loop calls `wait_hook()` when it starts waiting and runs the hook
on every round: the spinlock's spin, yield and sleep phases, the rwlock's backoff, the
embedded locks' (objlock.py) spin and sleep, and the queued spinlock's spin and block
phases (a blocked queued-spinlock waiter wakes at least every HOOK_BLOCK_S to call it,
so an IPI never waits for a lock hand-over).  The hook must not take an arena lock (it
may run while this CPU waits for one) and should not raise: an exception leaves the
wait, and the lock, as any exception in the wait would (the lock is not taken).

The park hook (`set_park_hook`, robust mode): a queued rwsem waiter whose lock is held
for a dead CPU until its recovery ends (objlock.py RW_KEPT) calls it with the lock's
offset after each sleep.  A worker installs one that parks this CPU for the
coordinator's pause right there (until GO) when the CPU holds nothing
and has nothing in flight (workers/cpu.py), and returns at once otherwise: without it,
a live CPU queued behind the dead CPU's mmap_lock could never reach the pause barrier,
and the lock would have to be released before recovery.  (It may take other locks --
the LRU batch drain -- since the CPU holds none.)

Owner-only data: a worker process is one simulated CPU, so the hook is normally one per
process, written once at worker start.  A test that drives several CPUs from threads
of one process gives each thread its own CPU's hook (`thread_only=True`); a thread that
set none sees the process-wide one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["set_wait_hook", "wait_hook", "call_wait_hook", "HOOK_BLOCK_S", "set_park_hook", "park_hook"]

HOOK_BLOCK_S = 0.002         # longest block between two hook calls of a blocked waiter

_default: list[Callable[[], None] | None] = [None]
_park: list[Callable[[int], None] | None] = [None]
_tls = threading.local()


def set_wait_hook(fn: Callable[[], None] | None, thread_only: bool = False) -> Callable[[], None] | None:
    """Install `fn` (None removes it) for this thread, and as the process's hook unless
    `thread_only`; returns the hook this thread had."""
    if fn is not None and not callable(fn):
        raise TypeError(f"set_wait_hook: {fn!r} is not callable")
    old = wait_hook()
    _tls.hook = fn
    if not thread_only:
        _default[0] = fn
    return old


def wait_hook() -> Callable[[], None] | None:
    """This thread's wait hook (the process's when the thread set none), or None."""
    return getattr(_tls, "hook", _default[0])


def call_wait_hook() -> None:
    """Run this thread's hook, if any (for wait loops that do not keep it in a local)."""
    h = getattr(_tls, "hook", _default[0])
    if h is not None:
        h()


def set_park_hook(fn: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """Install the process's park hook (None removes it); returns the previous one."""
    if fn is not None and not callable(fn):
        raise TypeError(f"set_park_hook: {fn!r} is not callable")
    old = _park[0]
    _park[0] = fn
    return old


def park_hook() -> Callable[[int], None] | None:
    """The process's park hook, or None."""
    return _park[0]
