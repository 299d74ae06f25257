"""A sequence counter in the arena: lockless readers of a multi-word record.

Models: include/linux/seqlock.h seqcount_t.  Unit: one aligned u64 sequence word guarding
a record of any size; writers are serialised by a lock the caller holds (seqcount does
not exclude writers from each other, exactly as in the kernel).

Protocol::

    writer:  seq += 1 (odd: write in progress) ; write the record ; seq += 1 (even)
    reader:  s = seq (ACQUIRE), retry while odd ; read the record ;
             fence(ACQUIRE) ; retry if seq != s

The increments are SEQ_CST fetch_adds, which also order the record's plain stores after
the first and before the second (pitfalls 5.2).  A reader never blocks a writer; a writer
that keeps writing can starve readers, as in Linux.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from aerosync.arch.atomic import ACQUIRE, fence
from aerosync.arena.segment import Arena
from aerosync.errors import LockError

__all__ = ["SeqCount"]

T = TypeVar("T")


class SeqCount:
    """Handle on the sequence word at byte offset `off` (8-byte aligned)."""

    __slots__ = ("arena", "off", "retries")

    def __init__(self, arena: Arena, off: int) -> None:
        if off % 8:
            raise LockError(f"SeqCount: offset {off} is not 8-byte aligned")
        self.arena, self.off = arena, off
        self.retries = 0          # this process's read retries (reader-private, no sharing)

    def write_begin(self) -> None:
        if self.arena.atomic.fetch_add64(self.off, 1) & 1:
            raise LockError(f"write_seqcount_begin: seqcount at {self.off:#x} already odd (writers not serialised)")

    def write_end(self) -> None:
        if not self.arena.atomic.fetch_add64(self.off, 1) & 1:
            raise LockError(f"write_seqcount_end: seqcount at {self.off:#x} was even (no write_begin)")

    def read_begin(self) -> int:
        load, off = self.arena.atomic.load64, self.off
        while True:
            s = load(off, ACQUIRE)
            if not s & 1:
                return s
            self.retries += 1

    def read_retry(self, start: int) -> bool:
        fence(ACQUIRE)
        if self.arena.atomic.load64(self.off, ACQUIRE) != start:
            self.retries += 1
            return True
        return False

    def read(self, reader: Callable[[], T]) -> T:
        """Run `reader` until it saw a consistent record; return its result."""
        while True:
            s = self.read_begin()
            value = reader()
            if not self.read_retry(s):
                return value
