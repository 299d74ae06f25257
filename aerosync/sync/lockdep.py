"""A small lockdep: lock classes have ranks, and debug mode refuses a wrong order.

Models: kernel/locking/lockdep.c's ordering check, reduced to what AeroSync needs: the
whole-system order is a fixed tree (aerosync/sync/__init__.py), so each class gets a
rank and a thread may only acquire a class ranked above every class it already holds
("possible circular locking dependency"), and never a second lock of a class it holds
("possible recursive locking detected": two locks of one class never nest here).
Unranked classes (workload and test locks) are leaves: they may be taken under any
ranked lock, and nothing ranked may be taken under them.

Enabled per arena with the `lockdep` config key ([machine] lockdep = true); the choice
is made when a SpinLock handle is built, so the normal path carries no check at all.
The held-lock stack is per thread (an interrupt-context thread has its own), in this
process only: it is owner-only data, never in the arena.
"""

from __future__ import annotations

import threading

from aerosync.errors import LockError

__all__ = ["LOCK_RANKS", "LEAF_RANK", "LockOrderError", "rank_of", "lockdep_acquire", "lockdep_release",
           "held_locks"]

LOCK_RANKS: dict[str, int] = {
    "slab_mutex": 10,
    "&barn->lock": 20,
    "&n->list_lock": 30,
    "&zone->lock": 50,
}
LEAF_RANK = 1000

_tls = threading.local()


class LockOrderError(LockError):
    """A lock acquisition that breaks the documented order."""


def rank_of(lock_class: str) -> int:
    return LOCK_RANKS.get(lock_class, LEAF_RANK)


def held_locks() -> list[tuple[str, str, int]]:
    """(class, lock name, rank) of the locks this thread holds, oldest first."""
    stack = getattr(_tls, "stack", None)
    if stack is None:
        stack = _tls.stack = []
    return stack


def lockdep_acquire(lock_class: str, name: str) -> None:
    """Check, before waiting for it, that `name` may be taken now; record it as held."""
    rank = rank_of(lock_class)
    stack = held_locks()
    for cls, held_name, held_rank in stack:
        if cls == lock_class:
            raise LockOrderError(f"lockdep: possible recursive locking detected: acquiring {name} while "
                                 f"holding {held_name} (same class {lock_class})")
        if held_rank >= rank:
            raise LockOrderError(f"lockdep: possible circular locking dependency detected: acquiring {name} "
                                 f"(rank {rank}) while holding {held_name} (rank {held_rank}); "
                                 "order: slab_mutex -> &barn->lock -> &n->list_lock -> &zone->lock -> leaves")
    stack.append((lock_class, name, rank))


def lockdep_release(name: str) -> None:
    stack = held_locks()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i][1] == name:
            del stack[i]
            return
    raise LockOrderError(f"lockdep: releasing {name}, which this thread does not hold")
