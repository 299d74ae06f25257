"""The per-process wait hook: what a CPU does while it waits for a lock.

Models: a CPU spinning in spin_lock() with interrupts enabled still takes interrupts --
in particular TLB-shootdown IPIs (smp_call_function_many), which the sender waits for.
Without this, CPU A waiting for a lock held by B, while B waits for A's IPI answer, is
a deadlock the real kernel does not have.

`set_wait_hook(fn)` installs `fn` (no arguments, cheap, thread-safe) for this process;
every lock wait loop of the sync layer calls it while it waits: the spinlock's spin,
yield and sleep phases, the rwlock's backoff, and the queued spinlock's spin and block
phases (a blocked queued-spinlock waiter wakes at least every `HOOK_BLOCK_S` to call it,
so an IPI never waits for a lock hand-over).  The hook must not take an arena lock (it
may run while this CPU waits for one) and should not raise: an exception leaves the
wait, and the lock, as any exception in the wait would (the lock is not taken).

Owner-only data: the hook is a process global written by `set_wait_hook` (normally once,
at worker start); wait loops read it when they start waiting.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["set_wait_hook", "wait_hook", "HOOK_BLOCK_S"]

HOOK_BLOCK_S = 0.002         # longest block between two hook calls of a blocked waiter

_hook: list[Callable[[], None] | None] = [None]


def set_wait_hook(fn: Callable[[], None] | None) -> Callable[[], None] | None:
    """Install `fn` as this process's wait hook (None removes it); returns the previous one."""
    if fn is not None and not callable(fn):
        raise TypeError(f"set_wait_hook: {fn!r} is not callable")
    old, _hook[0] = _hook[0], fn
    return old


def wait_hook() -> Callable[[], None] | None:
    """The current wait hook, or None."""
    return _hook[0]
