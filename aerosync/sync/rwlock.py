"""A writer-preferring reader-writer spinlock in the arena, with lock_stat per side.

Models: include/linux/rwlock.h (rwlock_t) semantics; lock_stat reports it as two lines,
`<class>-W` and `<class>-R`.  Unit: one lock slot (sync/lockstat.py), kind LOCK_RW.

Lockless protocol (the word, u64 at slot+0)::

    63       33  32   31    30                 0
    +----------+----+-----+--------------------+
    |    0     | W  | WW  |  reader count      |
    +----------+----+-----+--------------------+

  * read_lock: CAS word -> word+1, allowed only while W and WW (writer waiting) are
    clear; so a waiting writer stops new readers (writer preference, no writer
    starvation).  read_unlock: fetch_sub 1.
  * write_lock: CAS 0 -> W.  Contended: set WW with fetch_or, wait for the word to be
    exactly WW or 0 (no readers, no writer), then CAS it to W (which clears WW; a second
    waiting writer sets it again on its next round).  write_unlock: fetch_and ~W.
  * the writer records pid<<16 | cpu+1 in slot+8 (owner) after taking W, for
    dead-owner reports; readers are anonymous (as in the kernel), so a dead reader is
    found only by the coordinator's death handling, not by owner checks.

Lock order: like SpinLock, each user documents where it nests.  Write-side figures live
in the slot's holder-only lines; read-side ones are bumped with fetch_add because
readers run concurrently.
"""

from __future__ import annotations

import os
import time

from aerosync.arch.cpu import proc_alive
from aerosync.arena.layout import robust_mode
from aerosync.arena.segment import Arena
from aerosync.errors import LockError, LockOwnerDead
from aerosync.sync import lockstat as LS
from aerosync.sync.spinlock import CPU_COORD, SLEEP_MAX_S, SLEEP_MIN_S, SPIN_TRIES, YIELD_TRIES
from aerosync.sync.waithook import wait_hook

__all__ = ["RWLock", "RW_WRITER", "RW_WAITING", "RW_READERS"]

RW_WRITER = 1 << 32
RW_WAITING = 1 << 31
RW_READERS = RW_WAITING - 1
_NEG1 = (1 << 64) - 1
_pc = time.perf_counter_ns


def rw_backoff(attempt: int) -> None:
    """Wait step shared by both sides: spin, then sched_yield, then sleep (pitfalls 6.1);
    each step calls the process's wait hook (sync/waithook.py)."""
    hook = wait_hook()
    if hook is not None:
        hook()
    if attempt < SPIN_TRIES:
        return
    if attempt < SPIN_TRIES + YIELD_TRIES:
        os.sched_yield()
        return
    time.sleep(min(SLEEP_MIN_S * (1 << min(attempt - SPIN_TRIES - YIELD_TRIES, 6)), SLEEP_MAX_S))


class RWLock:
    """Handle on a LOCK_RW slot for simulated CPU `cpu` in this process."""

    __slots__ = ("arena", "slot", "off", "cpu", "name", "mine", "_t0")

    def __init__(self, arena: Arena, slot: int, cpu: int) -> None:
        if not (0 <= cpu < 0xFFFE or cpu == CPU_COORD):
            raise LockError(f"RWLock: cpu {cpu} out of range")
        self.arena, self.slot, self.cpu = arena, slot, cpu
        self.off = LS.slot_off(arena, slot)
        if arena.u32[(self.off + LS.S_KIND) >> 2] != LS.LOCK_RW:
            raise LockError(f"RWLock: slot {slot} was not allocated as a rwlock")
        cls, inst = LS.slot_names(arena, slot)
        self.name = f"{cls}[{inst}]" if inst else cls
        self.mine = (os.getpid() << 16) | (cpu + 1)
        self._t0 = 0

    # ---------------------------------------------------------------- read side
    def read_lock(self) -> None:
        at, off = self.arena.atomic, self.off
        w = at.load64(off)
        if not w & (RW_WRITER | RW_WAITING) and at.cas64(off, w, w + 1) == w:
            at.fetch_add64(off + LS.S_R_ACQ, 1)
            return
        start, attempt = _pc(), 0
        while True:
            rw_backoff(attempt)
            attempt += 1
            w = at.load64(off)
            if not w & (RW_WRITER | RW_WAITING) and at.cas64(off, w, w + 1) == w:
                break
            if attempt % 4096 == 0:
                self._check_writer_alive(start)
        wait = _pc() - start
        at.fetch_add64(off + LS.S_R_ACQ, 1)
        at.fetch_add64(off + LS.S_R_CON, 1)
        at.fetch_add64(off + LS.S_R_WAIT_TOTAL, wait)
        # max/min by CAS loops: readers update concurrently.
        for f, better in ((LS.S_R_WAIT_MAX, lambda cur: wait > cur), (LS.S_R_WAIT_MIN, lambda cur: wait < cur)):
            cur = at.load64(off + f)
            while better(cur):
                seen = at.cas64(off + f, cur, wait)
                if seen == cur:
                    break
                cur = seen

    def read_unlock(self) -> None:
        old = self.arena.atomic.fetch_add64(self.off, _NEG1)
        if not old & RW_READERS:
            raise LockError(f"read_unlock: {self.name} had no readers (word {old:#x})")

    # ---------------------------------------------------------------- write side
    def write_lock(self) -> None:
        at, off = self.arena.atomic, self.off
        if at.cas64(off, 0, RW_WRITER) != 0:
            self._write_lock_slow()
        else:
            at.fetch_add64(off + LS.S_ACQ, 1)
            if at.load64(off + LS.S_LAST_CPU) != self.cpu + 1:
                at.fetch_add64(off + LS.S_ACQ_BOUNCE, 1)
        at.store64(off + LS.S_OWNER, self.mine)
        at.store64(off + LS.S_LAST_CPU, self.cpu + 1)
        self._t0 = _pc()

    def _write_lock_slow(self) -> None:
        at, off = self.arena.atomic, self.off
        if at.load64(off + LS.S_OWNER) == self.mine and at.load64(off) & RW_WRITER:
            raise LockError(f"write_lock: recursive acquire of {self.name} by cpu{self.cpu}")
        start, attempt = _pc(), 0
        last_owner = at.load64(off + LS.S_OWNER)
        while True:
            w = at.load64(off)
            if w & ~RW_WAITING == 0:
                if at.cas64(off, w, RW_WRITER) == w:
                    break
                continue
            if not w & RW_WAITING:
                at.fetch_or64(off, RW_WAITING)
            rw_backoff(attempt)
            attempt += 1
            if attempt % 4096 == 0:
                self._check_writer_alive(start)
        wait = _pc() - start
        at.fetch_add64(off + LS.S_ACQ, 1)
        at.fetch_add64(off + LS.S_CON, 1)
        if (last_owner & 0xFFFF) != self.cpu + 1:
            at.fetch_add64(off + LS.S_CON_BOUNCE, 1)
        if at.load64(off + LS.S_LAST_CPU) != self.cpu + 1:
            at.fetch_add64(off + LS.S_ACQ_BOUNCE, 1)
        at.fetch_add64(off + LS.S_WAIT_TOTAL, wait)
        if wait > at.load64(off + LS.S_WAIT_MAX):
            at.store64(off + LS.S_WAIT_MAX, wait)
        if wait < at.load64(off + LS.S_WAIT_MIN):
            at.store64(off + LS.S_WAIT_MIN, wait)

    def write_unlock(self) -> None:
        at, off = self.arena.atomic, self.off
        if at.load64(off + LS.S_OWNER) != self.mine or not at.load64(off) & RW_WRITER:
            raise LockError(f"write_unlock: {self.name} not write-held by cpu{self.cpu} pid {os.getpid()}")
        h = _pc() - self._t0
        at.fetch_add64(off + LS.S_HOLD_TOTAL, h)
        at.fetch_add64(off + LS.S_HOLD_SAMPLES, 1)
        if h > at.load64(off + LS.S_HOLD_MAX):
            at.store64(off + LS.S_HOLD_MAX, h)
        if h < at.load64(off + LS.S_HOLD_MIN):
            at.store64(off + LS.S_HOLD_MIN, h)
        at.store64(off + LS.S_OWNER, 0)
        at.fetch_and64(off, _NEG1 ^ RW_WRITER)

    def _check_writer_alive(self, since_ns: int) -> None:
        if robust_mode(self.arena.config):        # the coordinator takes a dead writer's lock over
            return
        at, off = self.arena.atomic, self.off
        if at.load64(off) & RW_WRITER:
            owner = at.load64(off + LS.S_OWNER)
            cpu, pid = LS.decode_owner(owner)
            if pid and not proc_alive(pid):
                raise LockOwnerDead(self.name, cpu, pid, (_pc() - since_ns) / 1e9)

    def readers(self) -> int:
        return self.arena.atomic.load64(self.off) & RW_READERS

    def write_locked(self) -> bool:
        return bool(self.arena.atomic.load64(self.off) & RW_WRITER)
