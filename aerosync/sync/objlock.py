"""Locks embedded in arena objects, with lock_stat kept per class and per CPU.

Models: the spinlock_t inside a page-table page's struct ptdesc (split PTE locks,
ptlock_ptr), and the rw_semaphores inside mm_struct (mmap_lock) and vm_area_struct
(the per-VMA lock), with CONFIG_LOCK_STAT's per-class figures.  Unit: one lock word at a
byte offset inside an object (a struct page, an mm record, a VMA); the object's owner
decides where.  There can be millions of them, so unlike sync/spinlock.py's slot locks
they have no slot: their figures are kept per (CPU, class) in the section "objlock" and
summed on read, as lockdep's lock_stat keeps per-CPU cpu_lock_stats.

Lock words (u64, 8-byte aligned, at the caller's offset)::

    spin (ObjSpinLock)   0 = unlocked;  locked = owner pid << 16 | cpu + 1
    rwsem (ObjRWSem)     bits 0-30 readers, bit 31 writer waiting (WW), bit 32 writer (W)
                         (the same writer-preferring protocol as sync/rwlock.py); the
                         writer stores pid << 16 | cpu + 1 at word + 8 after taking W,
                         and clears it before releasing, so dead writers can be named.

  * spin: lock = CAS 0 -> mine; unlock = CAS mine -> 0 (a foreign unlock is caught).
  * rwsem read: CAS w -> w + 1 while neither W nor WW is set; up_read fetch_sub 1.
    trylock variants never wait (vma_start_read uses down_read_trylock).
  * rwsem write: CAS 0 -> W; contended: set WW, wait for the word to be 0 or WW only,
    CAS it to W.  up_write: clear the owner word, fetch_and ~W.
  SEQ_CST CAS/fetch ops give acquire and release ordering for the protected data.

Waiting: spin a little, then sched_yield, then sleep 20 us doubling to 1 ms; every
round calls sync/waithook.py's wait hook (a simulated CPU answers TLB-shootdown IPIs while it
waits, as a CPU spinning with interrupts enabled does).  A dead writer (pid gone) is
reported with LockOwnerDead after ~0.25 s of sleeping; readers are anonymous.

Statistics: the section "objlock" (sync/lockclass.py: class table, one cache line per
CPU x class x side).  Owner-only: a CPU writes only its own lines (plain increments);
sync/lockstat.py's snapshot sums them into the per-class /proc/lock_stat lines.  Holds
are timed on one acquisition in `lock_hold_sample`, as for slot locks.

Lock order: each user states where its class nests (mm/vm/*: mmap_lock -> vma lock ->
ptlock).  Two locks of one class never nest, except where the user says so (fork takes
the child's mmap_lock under the parent's, as Linux's mmap_write_lock_nested).

Robust list (robust mode: arena/layout.py robust_mode -- CPUs may die and be recovered):
every lock a context takes is also pushed on its robust list, IL_HELD_MAX entries of
"off | kind << 56" in the CPU's intent log (arena/layout.py; sync/robust.py reads it:
Linux's robust_list, exit_robust_list), and popped before its release; readers of a
rwsem are anonymous in the word, so the list is the only record of a dead reader.  A
context holding more than IL_HELD_MAX embedded locks at once is refused (LockError):
nothing in mm nests that deep.  Handles built outside robust mode have no list (no
cost).

Invariants (tests/test_objlock.py): OL1 at most one spin owner / one writer, and no
reader while a writer holds it; OL2 only the owner releases; OL3 per-CPU statistics
change only on the CPU that owns them.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aerosync.arch.cpu import proc_alive
from aerosync.arena.layout import robust_mode
from aerosync.errors import LockError, LockOwnerDead
from aerosync.sync import waithook as W
from aerosync.sync.lockclass import OBJ_RW, OBJ_SPIN, class_name, stat_idx

__all__ = ["OBJ_SPIN", "OBJ_RW", "ObjSpinLock", "ObjRWSem", "RW_WRITER", "RW_WAITING", "RW_READERS"]

_ACQ, _CON, _WTOT, _WMAX, _WMIN, _HTOT, _HSAMP, _HMAX = range(8)     # lockclass.py's stat line

RW_WRITER = 1 << 32
RW_WAITING = 1 << 31
RW_READERS = RW_WAITING - 1
_NEG1 = (1 << 64) - 1
SPIN_TRIES = 64
YIELD_TRIES = 16
SLEEP_MIN_S, SLEEP_MAX_S = 20e-6, 1e-3
OWNER_CHECK_NS = 250_000_000
_pc = time.perf_counter_ns


_HELD_SPIN, _HELD_WRITE, _HELD_READ = 1 << 56, 2 << 56, 3 << 56    # sync/robust.py HELD_*


def _robust_list(arena: Any, cpu: int) -> tuple[Any, Any]:
    """push(entry), pop(entry) on this process's robust list of CPU `cpu`'s task context
    (the arena owner's own context when this process created the arena)."""
    from aerosync.arena import layout as L

    q = arena.u64
    nr = int(arena.config["nr_cpus"])
    me = os.getpid() == arena.owner_pid or not 0 <= cpu < nr
    ctx = L.intent_ctx_off(arena.off("intentlog"), nr, -1 if me else cpu, 0)
    hn, hs = (ctx + L.ILC_HELD_N) >> 3, (ctx + L.ILC_HELD) >> 3
    cap = L.IL_HELD_MAX

    def push(entry: int) -> None:
        n = q[hn]
        if n >= cap:
            if me:               # the owner's context is shared by threads: not a record
                return
            raise LockError(f"robust list of cpu{cpu}: more than {cap} embedded locks held at once")
        q[hs + n] = entry
        q[hn] = n + 1

    def pop(entry: int) -> None:
        n = q[hn]
        for i in range(min(n, cap) - 1, -1, -1):
            if q[hs + i] == entry:
                q[hs + i] = q[hs + n - 1]
                q[hs + n - 1] = 0
                q[hn] = n - 1
                return

    return push, pop


def _owner_dead(word: int, robust: bool = False) -> tuple[int, int] | None:
    """(cpu, pid) of a dead owner named by `word`, else None; always None in robust mode
    (sync/robust.py: the coordinator releases a dead CPU's embedded locks)."""
    if robust:
        return None
    pid, cpu1 = word >> 16, word & 0xFFFF
    if pid and not proc_alive(pid):
        return cpu1 - 1, pid
    return None


class ObjSpinLock:
    """Simulated CPU `cpu`'s handle on every lock of spin class `cls`.  Closures bound
    once, taking the lock word's byte offset: lock(off), unlock(off), trylock(off) -> bool,
    held_by_me(off) -> bool."""

    __slots__ = ("arena", "cpu", "cls", "name", "lock", "unlock", "trylock", "held_by_me")

    def __init__(self, arena: Any, cls: int, cpu: int) -> None:
        self.arena, self.cls, self.cpu = arena, cls, cpu
        self.name = class_name(arena, cls)
        at, q = arena.atomic, arena.u64
        cas, load = at.cas64, at.load64
        mine = (os.getpid() << 16) | (cpu + 1)
        stat = bool(arena.config.get("lock_stat", True))
        mask = int(arena.config.get("lock_hold_sample", 8)) - 1
        si = stat_idx(arena, cpu, cls, 0) if stat and cpu < int(arena.config["nr_cpus"]) else -1
        name = self.name
        hold_t0: dict[int, int] = {}
        robust = robust_mode(arena.config)
        pc = _pc

        def lock_slow(off: int) -> None:
            if load(off) == mine:
                raise LockError(f"spin_lock: recursive acquire of {name}@{off:#x} by cpu{cpu}")
            start = pc()
            attempt = 0
            delay = SLEEP_MIN_S
            next_check = start + OWNER_CHECK_NS
            while True:
                if not load(off) and cas(off, 0, mine) == 0:
                    break
                attempt += 1
                if attempt < SPIN_TRIES:
                    if not attempt & 15:
                        W.call_wait_hook()
                    continue
                W.call_wait_hook()
                if attempt < SPIN_TRIES + YIELD_TRIES:
                    os.sched_yield()
                    continue
                time.sleep(delay)
                delay = min(delay * 2, SLEEP_MAX_S)
                now = pc()
                if now >= next_check:
                    next_check = now + OWNER_CHECK_NS
                    dead = _owner_dead(load(off), robust)
                    if dead:
                        raise LockOwnerDead(f"{name}@{off:#x}", dead[0], dead[1], (now - start) / 1e9)
            if si >= 0:
                wait = pc() - start
                q[si + _CON] += 1
                q[si + _WTOT] += wait
                if wait > q[si + _WMAX]:
                    q[si + _WMAX] = wait
                if not q[si + _WMIN] or wait < q[si + _WMIN]:
                    q[si + _WMIN] = wait

        if si < 0:
            def lock(off: int) -> None:
                if cas(off, 0, mine):
                    lock_slow(off)

            def unlock(off: int) -> None:
                if cas(off, mine, 0) != mine:
                    raise LockError(f"spin_unlock: {name}@{off:#x} not held by cpu{cpu} (word {load(off):#x})")
        else:
            def lock(off: int) -> None:
                if cas(off, 0, mine):
                    lock_slow(off)
                n = q[si] + 1
                q[si] = n
                if not n & mask:
                    hold_t0[off] = pc()

            def unlock(off: int) -> None:
                if hold_t0:
                    t0 = hold_t0.pop(off, 0)
                    if t0:
                        h = pc() - t0
                        q[si + _HTOT] += h
                        q[si + _HSAMP] += 1
                        if h > q[si + _HMAX]:
                            q[si + _HMAX] = h
                if cas(off, mine, 0) != mine:
                    raise LockError(f"spin_unlock: {name}@{off:#x} not held by cpu{cpu} (word {load(off):#x})")

        def trylock(off: int) -> bool:
            if cas(off, 0, mine):
                return False
            if si >= 0:
                q[si] += 1
            return True

        def held_by_me(off: int) -> bool:
            return load(off) == mine

        if robust:
            push, pop = _robust_list(arena, cpu)
            lock0, unlock0, trylock0 = lock, unlock, trylock

            def lock(off: int) -> None:
                lock0(off)
                push(off | _HELD_SPIN)

            def unlock(off: int) -> None:
                pop(off | _HELD_SPIN)
                unlock0(off)

            def trylock(off: int) -> bool:
                if trylock0(off):
                    push(off | _HELD_SPIN)
                    return True
                return False

        self.lock, self.unlock, self.trylock, self.held_by_me = lock, unlock, trylock, held_by_me


class ObjRWSem:
    """Simulated CPU `cpu`'s handle on every rwsem of class `cls`.  Closures taking the
    lock word's byte offset: down_read, up_read, down_write, up_write,
    down_read_trylock -> bool, down_write_trylock -> bool, write_held_by_me -> bool."""

    __slots__ = ("arena", "cpu", "cls", "name", "down_read", "up_read", "down_write", "up_write",
                 "down_read_trylock", "down_write_trylock", "write_held_by_me")

    def __init__(self, arena: Any, cls: int, cpu: int) -> None:
        self.arena, self.cls, self.cpu = arena, cls, cpu
        self.name = class_name(arena, cls)
        at, q = arena.atomic, arena.u64
        cas, load, store, fa = at.cas64, at.load64, at.store64, at.fetch_add64
        f_or, f_and = at.fetch_or64, at.fetch_and64
        mine = (os.getpid() << 16) | (cpu + 1)
        stat = bool(arena.config.get("lock_stat", True))
        mask = int(arena.config.get("lock_hold_sample", 8)) - 1
        ok = stat and cpu < int(arena.config["nr_cpus"])
        wi = stat_idx(arena, cpu, cls, 0) if ok else -1
        ri = stat_idx(arena, cpu, cls, 1) if ok else -1
        name = self.name
        pc = _pc
        wt0: dict[int, int] = {}
        robust = robust_mode(arena.config)
        busy = RW_WRITER | RW_WAITING

        def account_wait(si: int, start: int) -> None:
            if si < 0:
                return
            wait = pc() - start
            q[si + _CON] += 1
            q[si + _WTOT] += wait
            if wait > q[si + _WMAX]:
                q[si + _WMAX] = wait
            if not q[si + _WMIN] or wait < q[si + _WMIN]:
                q[si + _WMIN] = wait

        def backoff(attempt: int, off: int, start: int) -> None:
            if attempt < SPIN_TRIES:
                if not attempt & 15:
                    W.call_wait_hook()
                return
            W.call_wait_hook()
            if attempt < SPIN_TRIES + YIELD_TRIES:
                os.sched_yield()
                return
            time.sleep(min(SLEEP_MIN_S * (1 << min(attempt - SPIN_TRIES - YIELD_TRIES, 6)), SLEEP_MAX_S))
            if not attempt & 63 and load(off) & RW_WRITER:
                dead = _owner_dead(load(off + 8), robust)
                if dead:
                    raise LockOwnerDead(f"{name}@{off:#x}", dead[0], dead[1], (pc() - start) / 1e9)

        def down_read(off: int) -> None:
            w = load(off)
            if not w & busy and cas(off, w, w + 1) == w:
                if ri >= 0:
                    q[ri] += 1
                return
            if w & RW_WRITER and load(off + 8) == mine:
                raise LockError(f"down_read: {name}@{off:#x} is write-held by this cpu{cpu}")
            start, attempt = pc(), 0
            while True:
                w = load(off)
                if not w & busy and cas(off, w, w + 1) == w:
                    break
                backoff(attempt, off, start)
                attempt += 1
            if ri >= 0:
                q[ri] += 1
                account_wait(ri, start)

        def down_read_trylock(off: int) -> bool:
            w = load(off)
            if not w & busy and cas(off, w, w + 1) == w:
                if ri >= 0:
                    q[ri] += 1
                return True
            return False

        def up_read(off: int) -> None:
            old = fa(off, _NEG1)
            if not old & RW_READERS:
                fa(off, 1)
                raise LockError(f"up_read: {name}@{off:#x} had no readers (word {old:#x})")

        def took_write(off: int) -> None:
            store(off + 8, mine)
            if wi >= 0:
                n = q[wi] + 1
                q[wi] = n
                if not n & mask:
                    wt0[off] = pc()

        def down_write(off: int) -> None:
            if cas(off, 0, RW_WRITER) == 0:
                took_write(off)
                return
            if load(off + 8) == mine and load(off) & RW_WRITER:
                raise LockError(f"down_write: recursive acquire of {name}@{off:#x} by cpu{cpu}")
            start, attempt = pc(), 0
            while True:
                w = load(off)
                if w & ~RW_WAITING == 0:
                    if cas(off, w, RW_WRITER) == w:
                        break
                    continue
                if not w & RW_WAITING:
                    f_or(off, RW_WAITING)
                backoff(attempt, off, start)
                attempt += 1
            took_write(off)
            account_wait(wi, start)

        def down_write_trylock(off: int) -> bool:
            if cas(off, 0, RW_WRITER) == 0:
                took_write(off)
                return True
            return False

        def up_write(off: int) -> None:
            if load(off + 8) != mine or not load(off) & RW_WRITER:
                raise LockError(f"up_write: {name}@{off:#x} not write-held by cpu{cpu} pid {os.getpid()}")
            if wt0:
                t0 = wt0.pop(off, 0)
                if t0:
                    h = pc() - t0
                    q[wi + _HTOT] += h
                    q[wi + _HSAMP] += 1
                    if h > q[wi + _HMAX]:
                        q[wi + _HMAX] = h
            store(off + 8, 0)
            f_and(off, _NEG1 ^ RW_WRITER)

        def write_held_by_me(off: int) -> bool:
            return bool(load(off) & RW_WRITER) and load(off + 8) == mine

        if robust:
            push, pop = _robust_list(arena, cpu)
            dr0, ur0, dw0, uw0 = down_read, up_read, down_write, up_write
            drt0, dwt0 = down_read_trylock, down_write_trylock

            def down_read(off: int) -> None:
                dr0(off)
                push(off | _HELD_READ)

            def up_read(off: int) -> None:
                pop(off | _HELD_READ)
                ur0(off)

            def down_write(off: int) -> None:
                dw0(off)
                push(off | _HELD_WRITE)

            def up_write(off: int) -> None:
                pop(off | _HELD_WRITE)
                uw0(off)

            def down_read_trylock(off: int) -> bool:
                if drt0(off):
                    push(off | _HELD_READ)
                    return True
                return False

            def down_write_trylock(off: int) -> bool:
                if dwt0(off):
                    push(off | _HELD_WRITE)
                    return True
                return False

        self.down_read, self.up_read, self.down_write, self.up_write = down_read, up_read, down_write, up_write
        self.down_read_trylock, self.down_write_trylock = down_read_trylock, down_write_trylock
        self.write_held_by_me = write_held_by_me
