"""Robust-mutex semantics for the arena's locks: taking over the locks of a dead CPU.

Models: POSIX robust mutexes (pthread_mutexattr_setrobust: the next locker gets
EOWNERDEAD and must make the data consistent) and Linux's robust futex list
(kernel/futex/core.c exit_robust_list: at a thread's death the kernel walks the list
of futexes it held and marks each one OWNER_DIED).  Unit: one lock held by a process
the coordinator saw die.

Which locks a dead process held:
  * slot locks (sync/spinlock.py TAS and queued, sync/rwlock.py writers): the owner pid
    is in the lock word (or the rwlock's owner word) -- `locks_held_by` finds them.
  * embedded locks (sync/objlock.py ObjSpinLock, ObjRWSem readers and writers): there
    can be millions, so each CPU context keeps a robust list of the ones it holds (up
    to IL_HELD_MAX, in its intent log: arena/layout.py) while the arena is in robust
    mode; `ObjRWSem` readers are anonymous in the word and known only from the list.
  * queued-spinlock MCS nodes it was waiting in: sync/qspinlock.py reap_dead_waiter.
Per-CPU words that act as locks (a PCP's BUSY state, SLUB's c->lock and pcs lock) are
only ever waited on by the dead CPU itself or by a flush of it; mm/recovery.py resets
them with the world stopped.

Takeover (`takeover_locks`): each lock is moved from the dead owner to this process by
one CAS from exactly the dead owner's value (one winner: a second coordinator or a
waiter's own dead-owner check cannot both take it), then released (`release_taken`),
which wakes the queued waiters.  The data a taken lock protects may be half-updated
(the EOWNERDEAD case); the recovery protocol (mm/intent.py, mm/recovery.py) keeps it
usable: at every fault point the structure under a lock is whole -- a list move is a
single step -- and only the items the dead CPU had in flight are missing, so live CPUs
may go on using it until the world is stopped and the items are put back.  Where that
does not hold -- a VMA change under mmap_lock is several steps -- the caller keeps the
hold instead (mm/recovery.py: a dead CPU's mmap_lock entries are kept, RW_KEPT, and
released after its recovery; `release_embedded` gets the rest).

Robust mode (`robust_mode(config)`: `[run] on_cpu_death` set, or fault injection on):
a lock waiter that finds the owner dead keeps waiting for the coordinator's takeover
instead of raising LockOwnerDead (which would kill a second CPU over the first one's
death).
"""

from __future__ import annotations

import os
from typing import Any

from aerosync.arena import layout as L
from aerosync.arena.layout import robust_mode
from aerosync.params import MAX_LOCKS
from aerosync.sync import lockstat as LS
from aerosync.sync.objlock import release_dead
from aerosync.sync.qspinlock import kick_sleepers, reap_dead_waiter

__all__ = ["robust_mode", "takeover_locks", "release_taken", "Taken", "HELD_SPIN", "HELD_WRITE", "HELD_READ",
           "release_embedded"]

HELD_SPIN, HELD_WRITE, HELD_READ = 1, 2, 3     # robust-list entry kinds (off | kind << 56)
_RW_WRITER = 1 << 32
_NEG1 = (1 << 64) - 1
_COORD_CPU1 = 0xFFFF                           # sync/spinlock.py CPU_COORD + 1


class Taken:
    """A slot lock now held by this process on behalf of a dead owner."""

    __slots__ = ("slot", "name", "kind", "word")

    def __init__(self, slot: int, name: str, kind: int, word: int) -> None:
        self.slot, self.name, self.kind, self.word = slot, name, kind, word

    def __repr__(self) -> str:
        return f"Taken({self.name})"


def takeover_locks(arena: Any, pid: int) -> list[Taken]:
    """Take every slot lock `pid` (dead, reaped) holds; qspinlock waiter nodes of it are
    reaped first.  The locks stay held by this process until `release_taken`."""
    reap_dead_waiter(arena, pid)
    at = arena.atomic
    mine = os.getpid() << 16 | _COORD_CPU1
    out: list[Taken] = []
    for slot in range(min(arena.u64[L.H_NR_LOCKS >> 3], MAX_LOCKS)):
        off = LS.slot_off(arena, slot)
        kind = arena.u32[(off + LS.S_KIND) >> 2]
        cls, inst = LS.slot_names(arena, slot)
        name = f"{cls}[{inst}]" if inst else cls
        if kind == LS.LOCK_RW:
            w = at.load64(off + LS.S_OWNER)
            if LS.decode_owner(w)[1] == pid and at.load64(off) & _RW_WRITER and \
                    at.cas64(off + LS.S_OWNER, w, mine) == w:
                out.append(Taken(slot, name, kind, mine))
            continue
        w = at.load64(off)
        while LS.decode_owner(w)[1] == pid:
            new = (w & ~LS.OWNER_MASK) | mine
            got = at.cas64(off, w, new)
            if got == w:
                out.append(Taken(slot, name, kind, new))
                break
            w = got
    return out


def release_taken(arena: Any, taken: list[Taken]) -> None:
    """Release locks `takeover_locks` took (waking their queued waiters)."""
    at = arena.atomic
    for t in taken:
        off = LS.slot_off(arena, t.slot)
        if t.kind == LS.LOCK_RW:
            at.store64(off + LS.S_OWNER, 0)
            at.fetch_and64(off, _NEG1 ^ _RW_WRITER)
            continue
        owner = t.word & LS.OWNER_MASK
        w = at.load64(off)
        while w & LS.OWNER_MASK == owner:
            got = at.cas64(off, w, w & ~(LS.PID_MASK << 16))
            if got == w:
                if w >> 40 and at.load32(off + LS.S_SLEEPERS):
                    kick_sleepers(arena, off, w)
                break
            w = got


def release_embedded(arena: Any, pid: int, cpu: int, entries: list[tuple[int, int]]) -> list[str]:
    """Release the embedded locks on a dead CPU's robust list (sync/objlock.py
    release_dead: a spinlock or rwsem writer only while its word still names the dead
    (pid, cpu); a reader count is dropped by one; the rwsem's queued waiters woken).
    Returns what was released."""
    out = []
    for off, kind in entries:
        got = release_dead(arena, off, kind, pid, cpu)
        if got:
            out.append(got)
    return out
