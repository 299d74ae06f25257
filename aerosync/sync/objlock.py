"""Locks embedded in arena objects, with lock_stat kept per class and per CPU.

Models: the spinlock_t inside a page-table page's struct ptdesc (split PTE locks,
ptlock_ptr), and the rw_semaphores inside mm_struct (mmap_lock) and vm_area_struct
(the per-VMA lock) with kernel/locking/rwsem.c's wait list and hand-off, and
CONFIG_LOCK_STAT's per-class figures.  Unit: one lock word at a byte offset inside an
object (a struct page, an mm record, a VMA); the object's owner decides where.  There
can be millions of them, so unlike sync/spinlock.py's slot locks they have no slot:
their figures are kept per (CPU, class) in the section "objlock" and summed on read,
as lockdep's lock_stat keeps per-CPU cpu_lock_stats.  Why the hand-off: a waiter that
sleeps between polls loses every race against a CPU that releases and re-takes the lock
at once -- measured before it existed, a threads-mode brk1 CPU made 17 brk calls while
the other made 1,618 (1.2 s max wait on mmap_lock).

Spinlock word (ObjSpinLock, u64 at the caller's offset)::

    63        48 47                   16 15          0
    +-----------+-----------------------+-------------+
    | pending   |  owner pid (32)       |  cpu + 1    |      0 = unlocked
    +-----------+-----------------------+-------------+

  * lock = CAS 0 -> mine; unlock = CAS mine -> 0, or (pending set) a CAS loop that
    clears only the owner half (a foreign unlock is caught either way).
  * pending (qspinlock's pending bit, here a reservation): a waiter that is still
    waiting after its spin and yield phases stores its waiter row + 1 there (CAS, only
    when no one else did).  From then on the word is never 0 while the lock is free, so
    the releaser and newcomers cannot take it; the pending waiter takes a free lock by
    CAS pending-only -> mine and polls without long sleeps.  A pending waiter that dies
    (its row's pid gone) is revoked after OWNER_CHECK_NS of a free reserved lock.

rw_semaphore word (ObjRWSem, u64 at the caller's offset; owner at +8)::

    63        48 47                    8 7   4  3   2   1   0
    +-----------+-----------------------+-----+---+---+---+---+
    | wait_lock |  readers (40 bits)    |  0  | K | H | Ws| W |
    +-----------+-----------------------+-----+---+---+---+---+

  W = RWSEM_WRITER_LOCKED, Ws = RWSEM_FLAG_WAITERS (the wait list is not empty),
  H = RWSEM_FLAG_HANDOFF; readers count in units of RW_READER_BIAS (Linux's
  RWSEM_READER_SHIFT 8).  K = RW_KEPT (AeroSync's, robust mode): a dead CPU's hold (its
  W or one of the readers) is kept by the coordinator until that CPU's recovery ends
  (mm/recovery.py), so no live CPU sees the half-done change under it; a waiter on such
  a lock may park for the recovery inside its wait (the park hook, below).  wait_lock
  is the rwsem's raw spinlock wait_lock: the waiter row + 1 of its holder (0 = free),
  taken by CAS.  The writer stores pid << 16 | cpu + 1 at +8 after taking W and clears
  it before releasing, so dead writers can be named.

  * fast paths (one CAS each): down_read w -> w + BIAS while none of W, Ws, H is set
    (readers never pass a queued waiter); down_write 0 -> W (so never with waiters);
    up_read fetch_sub BIAS, waking the queue when that left Ws alone; up_write
    fetch_sub W, waking the queue if Ws; downgrade_write fetch_add BIAS - W, granting the
    readers at the head of the queue.
  * the wait list (nodes below, under wait_lock): FIFO by ticket.  rwsem_mark_wake: a
    writer at the head is woken (it takes the lock itself); readers at the head are
    granted together -- every queued reader up to MAX_READERS_WAKEUP, skipping queued
    writers (Linux's phase-fair reader wake-up) -- by adding their biases to the word
    before each node is told.  A reader that finds W set when it tries to grant
    instead asks for the hand-off once the first waiter has waited RW_WAIT_TIMEOUT_NS.
  * hand-off (RWSEM_FLAG_HANDOFF): a queued writer that fails to take the lock after
    RW_WAIT_TIMEOUT_NS sets H for the first waiter (handoff_set); while H is set no
    optimistic spinner, no stealing reader and no other queued waiter takes the lock,
    so it goes to the first waiter at its release.  The first waiter with handoff_set
    polls the word (Linux spins on the owner) instead of waiting to be woken.
  * writer optimistic spinning: before queueing, a writer polls SPIN_TRIES times and
    takes the lock when neither W, readers nor H are set (rwsem_try_write_lock_unqueued:
    it may pass queued waiters, but never a pending hand-off).
  * reader stealing: a reader that failed the fast path takes a lock that has no
    writer, no readers and no H (rwsem_down_read_slowpath's optimistic stealing; a lock
    already held by readers makes it queue, so a stream of readers cannot starve a
    queued writer), then grants the readers at the head of the queue.
  SEQ_CST CAS/fetch ops give acquire and release ordering for the protected data.

Waiter nodes (section "objlock", one cache line per CPU, sync/lockclass.py)::

     0 lock        rwsem offset + 1 while queued on it; 1 = claimed, not queued; 0 = free
     8 seq         queue order (the section's wait ticket, fetch_add)
    16 type        1 = waiting to read, 2 = to write
    24 state       0 waiting | 1 granted (a reader now holds the lock) | 2 woken (a
                   writer: try again)
    32 timeout     monotonic ns after which this waiter may ask for the hand-off
    40 pid         the node's process (dead-waiter repair); also the wait_lock holder's
    48 handoff_set 1 once H was set for this waiter (it is the first waiter)
    56 want        the lock it queued on (kept after a grant moves `lock` to 1, until the
                   node is unclaimed: a granted reader that has not run yet is counted
                   by pending_read_landed)
  A CPU waits for one lock at a time, so its row is its node; a handle whose cpu is
  outside the machine shares the spare row (claimed by CAS, one waiter at a time).
  Owner-only except: under the lock's wait_lock a waker writes `state` (and moves
  `lock` from queued to claimed when it grants a reader), the first waiter's
  `handoff_set`, and a dead waiter's node.

Waiting: spin a little, then sched_yield (only when the simulated machine is
oversubscribed, as the queued spinlock), then sleep 20 us doubling to 1 ms (a queued
rwsem waiter, which polls its node's wake-up flag, to 250 us; a pending or hand-off
waiter to 50 us: the lock waits for it); every round calls sync/waithook.py's wait hook (a
simulated CPU answers TLB-shootdown IPIs while it waits, as a CPU spinning with
interrupts enabled does), never while holding a wait_lock.  A queued waiter on a
K-marked lock also calls the park hook (waithook.py) after each sleep: a worker parks
there for the coordinator's pause when it holds nothing (workers/cpu.py).  A dead writer or spinlock
owner (pid gone) is reported with LockOwnerDead after OWNER_CHECK_NS of waiting; a dead
queued waiter is removed by the next waiter that checks (every OWNER_CHECK_NS), a dead
wait_lock holder's CAS is undone by its next contender; readers are anonymous.  A
waiter leaving on an exception leaves the queue as Linux's killable waits do (a reader
granted meanwhile releases what it was given).

Statistics: the section "objlock" (sync/lockclass.py: class table, one cache line per
CPU x class x side).  Owner-only: a CPU writes only its own lines (plain increments);
sync/lockstat.py's snapshot sums them into the per-class /proc/lock_stat lines.  Holds
are timed on one acquisition in `lock_hold_sample`, as for slot locks.  LOCK_EVENTS
counts this process's slow-path events under Linux's lock_events names (tests, bench).

Lock order: each user states where its class nests (mm/vm/*: mmap_lock -> vma lock ->
ptlock).  Two locks of one class never nest, except where the user says so (fork takes
the child's mmap_lock under the parent's, as Linux's mmap_write_lock_nested).  A
wait_lock is innermost: nothing is taken or waited for while holding it.

Robust list (robust mode: arena/layout.py robust_mode -- CPUs may die and be recovered):
every lock a context takes is also pushed on its robust list, IL_HELD_MAX entries of
"off | kind << 56" in the CPU's intent log (arena/layout.py; sync/robust.py reads it:
Linux's robust_list, exit_robust_list), and popped before its release; readers of a
rwsem are anonymous in the word, so the list is the only record of a dead reader.  The
lock word and the list cannot change together, so the context's lock_pending word
(robust_list's list_op_pending) names the entry while an acquire or release and its
list change are in flight; a CPU killed from outside in between holds the lock or not
as the lock tells: a spinlock or a named writer from its word (takeover), an unnamed
writer (W set, owner word empty: the two stores around took_write / end_write) and a
reader by counting, with the world stopped (pending_read_landed, pending_write_landed;
mm/recovery.py).  A
context holding more than IL_HELD_MAX embedded locks at once is refused (LockError):
nothing in mm nests that deep.  Handles built outside robust mode have no list (no
cost).  The arena owner's rwsem handles in robust mode also obey `world_stopped()`:
while recovery runs with every live CPU parked (holding nothing), their operations are
no-ops -- the only holds left are the K-marked ones recovery acts under, or readers
granted to parked waiters that have not run yet.

Invariants (tests/test_objlock.py): OL1 at most one spin owner / one writer, and no
reader while a writer holds it; OL2 only the owner releases; OL3 per-CPU statistics
change only on the CPU that owns them; OL4 Ws is set iff some node is queued on the
lock, H only while one is (both changed under wait_lock); OL5 while H is set only the
first waiter takes the lock, and a reservation (pending) only by its waiter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from aerosync.arch.cpu import proc_alive
from aerosync.arena.layout import robust_mode
from aerosync.errors import LockError, LockOwnerDead
from aerosync.sync import waithook as W
from aerosync.sync.lockclass import OBJ_RW, OBJ_SPIN, class_name, stat_idx, wait_ticket_off, waiter_node

__all__ = ["OBJ_SPIN", "OBJ_RW", "ObjSpinLock", "ObjRWSem", "RW_WRITER", "RW_WAITERS", "RW_HANDOFF",
           "RW_READER_BIAS", "RW_READERS", "RW_WAIT_LOCK", "RW_WAIT_TIMEOUT_NS", "SPIN_OWNER", "SPIN_PENDING",
           "LOCK_EVENTS", "release_dead", "RW_KEPT", "keep_dead", "release_kept",
           "world_stopped", "N_LOCK", "N_SEQ", "N_TYPE", "N_STATE", "N_TIMEOUT", "N_PID", "N_HANDOFF_SET"]

_ACQ, _CON, _WTOT, _WMAX, _WMIN, _HTOT, _HSAMP, _HMAX = range(8)     # lockclass.py's stat line

RW_WRITER = 1 << 0
RW_WAITERS = 1 << 1
RW_HANDOFF = 1 << 2
RW_KEPT = 1 << 3
RW_READER_BIAS = 1 << 8
RW_READERS = ((1 << 40) - 1) << 8
RW_WL_SHIFT = 48
RW_WAIT_LOCK = 0xFFFF << RW_WL_SHIFT
RW_LOCK_MASK = RW_WRITER | RW_READERS
RW_READ_FAILED = RW_WRITER | RW_WAITERS | RW_HANDOFF
RW_WAIT_TIMEOUT_NS = 4_000_000        # RWSEM_WAIT_TIMEOUT: DIV_ROUND_UP(HZ, 250) jiffies = 4 ms
MAX_READERS_WAKEUP = 0x100
SPIN_OWNER = (1 << 48) - 1
SPIN_PENDING = 0xFFFF << 48

N_LOCK, N_SEQ, N_TYPE, N_STATE, N_TIMEOUT, N_PID, N_HANDOFF_SET, N_WANT = 0, 8, 16, 24, 32, 40, 48, 56
T_READ, T_WRITE = 1, 2
S_WAITING, S_GRANTED, S_WOKEN = 0, 1, 2
WAKE_ANY, WAKE_READERS, WAKE_READ_OWNED = 0, 1, 2     # enum rwsem_wake_type

_NEG1 = (1 << 64) - 1
SPIN_TRIES = 64
YIELD_TRIES = 16
SLEEP_MIN_S, SLEEP_MAX_S = 20e-6, 1e-3
QUEUED_SLEEP_MAX_S = 250e-6           # a queued rwsem waiter: its wake-up is a flag it polls
HANDOFF_SLEEP_MAX_S = 50e-6           # a waiter the lock is reserved for sleeps at most this long
OWNER_CHECK_NS = 250_000_000
_pc = time.perf_counter_ns
_mono = time.monotonic_ns

# Process-local slow-path event counts (Linux kernel/locking/lock_events_list.h names).
LOCK_EVENTS = {"rwsem_opt_lock": 0, "rwsem_rlock_steal": 0, "rwsem_rlock_fast": 0, "rwsem_sleep_reader": 0,
               "rwsem_sleep_writer": 0, "rwsem_wake_reader": 0, "rwsem_wake_writer": 0,
               "rwsem_wlock_handoff": 0, "rwsem_rlock_handoff": 0, "rwsem_rlock_fail": 0, "rwsem_wlock_fail": 0,
               "objlock_dead_waiters": 0, "objlock_wait_lock_breaks": 0, "spin_pending": 0, "spin_revokes": 0}


_HELD_SPIN, _HELD_WRITE, _HELD_READ = 1 << 56, 2 << 56, 3 << 56    # sync/robust.py HELD_*
_STOPPED = [False]          # world_stopped(): the owner's robust-mode rwsem operations are no-ops


class world_stopped:
    """Context manager: recovery runs with the world stopped (mm/recovery.py phase B).
    Every live CPU is parked holding nothing, so the arena owner's rwsem handles skip
    the lock word: a dead CPU's kept hold (RW_KEPT) is the recovery's own, and a reader
    granted to a parked waiter at a release must not block it either."""

    def __enter__(self) -> world_stopped:
        self.old = _STOPPED[0]
        _STOPPED[0] = True
        return self

    def __exit__(self, *exc: object) -> None:
        _STOPPED[0] = self.old


def _robust_list(arena: Any, cpu: int) -> tuple[Any, Any, Any, Any]:
    """push(entry), pop(entry), replace(entry, new) on this process's robust list of CPU
    `cpu`'s task context (the arena owner's own context when this process created the
    arena), and held_op(entry, op, off, after, before): one acquire or release `op(off)`
    with its list change (`before(entry)`, or `after(entry)` unless op returned False),
    the context's lock_pending word naming the entry around both -- restored after, for
    a lock taken inside another's wait (an IPI handler).  Every change that makes an
    entry appear or vanish is one store (a kill from outside between two stores leaves
    no entry twice and none lost): pop zeroes its slot and only then lowers held_n past
    trailing zeros; push fills a zeroed slot below held_n, or stores past it and then
    raises held_n -- the one window, covered by lock_pending.  replace is one store:
    downgrade_write's WRITE entry becomes a READ one."""
    from aerosync.arena import layout as L

    q = arena.u64
    nr = int(arena.config["nr_cpus"])
    me = os.getpid() == arena.owner_pid or not 0 <= cpu < nr
    ctx = L.intent_ctx_off(arena.off("intentlog"), nr, -1 if me else cpu, 0)
    hn, hs = (ctx + L.ILC_HELD_N) >> 3, (ctx + L.ILC_HELD) >> 3
    cap = L.IL_HELD_MAX

    def push(entry: int) -> None:
        n = q[hn]
        for i in range(hs, hs + min(n, cap)):
            if not q[i]:
                q[i] = entry
                return
        if n >= cap:
            if me:               # the owner's context is shared by threads: not a record
                return
            raise LockError(f"robust list of cpu{cpu}: more than {cap} embedded locks held at once")
        q[hs + n] = entry
        q[hn] = n + 1

    def pop(entry: int) -> None:
        n = min(q[hn], cap)
        for i in range(hs + n - 1, hs - 1, -1):
            if q[i] == entry:
                q[i] = 0
                while n and not q[hs + n - 1]:
                    n -= 1
                q[hn] = n
                return

    def replace(entry: int, new: int) -> None:
        for i in range(min(q[hn], cap) - 1, -1, -1):
            if q[hs + i] == entry:
                q[hs + i] = new
                return

    pend = (ctx + L.ILC_LOCK_PENDING) >> 3

    def held_op(e: int, op: Callable[[int], Any], off: int, after: Callable[[int], None] | None,
                before: Callable[[int], None] | None = None) -> Any:
        prev = q[pend]
        q[pend] = e
        try:
            if before is not None:
                before(e)
            got = op(off)
            if after is not None and got is not False:
                after(e)
            return got
        finally:
            q[pend] = prev

    return push, pop, replace, held_op


def _owner_dead(word: int, robust: bool = False) -> tuple[int, int] | None:
    """(cpu, pid) of a dead owner named by `word`, else None; always None in robust mode
    (sync/robust.py: the coordinator releases a dead CPU's embedded locks)."""
    if robust:
        return None
    pid, cpu1 = (word >> 16) & 0xFFFFFFFF, word & 0xFFFF
    if pid and not proc_alive(pid):
        return cpu1 - 1, pid
    return None


def keep_dead(arena: Any, off: int) -> None:
    """Mark rwsem `off` RW_KEPT: a dead CPU's hold on it stays until `release_kept`."""
    arena.atomic.fetch_or64(off, RW_KEPT)


def unkeep(arena: Any, off: int) -> None:
    """Clear rwsem `off`'s RW_KEPT mark (its waiters stop parking on it)."""
    arena.atomic.fetch_and64(off, _NEG1 ^ RW_KEPT)


def release_kept(arena: Any, off: int, kind: int, pid: int, cpu: int) -> str | None:
    """The end of a kept hold: the mark cleared, then the dead CPU's hold released as
    `release_dead` does (its queued waiters woken)."""
    unkeep(arena, off)
    return release_dead(arena, off, kind, pid, cpu)


def release_dead(arena: Any, off: int, kind: int, pid: int, cpu: int) -> str | None:
    """Release one embedded lock a dead CPU held (its robust-list entry: kind 1 spin,
    2 rwsem write, 3 rwsem read; sync/robust.py release_embedded): the spin owner half
    (a pending reservation stays: its waiter takes the lock next) or the writer only
    while the word still names the dead (pid, cpu); a reader's bias dropped by one.
    Queued rwsem waiters are woken as the holder's own release would (rwsem_wake, from
    a handle on the spare waiter row).  Returns what was released, or None."""
    at = arena.atomic
    dead = pid << 16 | (cpu + 1)
    if kind == 1:
        w = at.load64(off)
        while w & SPIN_OWNER == dead:
            got = at.cas64(off, w, w & SPIN_PENDING)
            if got == w:
                return f"spin@{off:#x}"
            w = got
        return None
    if kind == 2:
        if at.load64(off + 8) != dead or not at.load64(off) & RW_WRITER:
            return None
        at.store64(off + 8, 0)
        wake = at.fetch_sub64(off, RW_WRITER) & RW_WAITERS
        what = f"rwsem-W@{off:#x}"
    elif kind == 3:
        old = at.fetch_sub64(off, RW_READER_BIAS)
        if not old & RW_READERS:
            at.fetch_add64(off, RW_READER_BIAS)
            return None
        wake = (old - RW_READER_BIAS) & (RW_LOCK_MASK | RW_WAITERS) == RW_WAITERS
        what = f"rwsem-R@{off:#x}"
    else:
        return None
    if wake:
        from aerosync.sync.lockclass import class_off

        nr = int(arena.config["nr_cpus"])
        base = arena.off("objlock")
        cls = next((c for c in range(arena.u64[base >> 3])
                    if arena.u32[(class_off(arena, c) + 32) >> 2] == OBJ_RW), 0)
        ObjRWSem(arena, cls, nr).wake(off)
    return what


def pending_read_landed(arena: Any, off: int, dead_cpu: int, kept: int) -> int | None:
    """Whether dead `dead_cpu`'s pending read hold on rwsem `off` (its lock_pending word
    names it: killed inside down_read / up_read / downgrade_write, before or after the
    word changed) is in the word: 1 or 0, None when it cannot be told.  Readers are
    anonymous in the word, so it is counted: the readers in the word minus every hold
    on record -- the READ entries on the robust lists of the other CPUs and of the
    owner's context, granted readers that have not run yet (a waiter node with `want` =
    off), and `kept` (the dead CPU's own read holds still in the word, not released at
    takeover).  Only with the world stopped (mm/recovery.py phase B): no live CPU is
    between its CAS and its list store then.  None: the owner's list is full (its
    pushes past the cap are dropped), or the count is neither 0 nor 1."""
    from aerosync.arena import layout as L

    q, at = arena.u64, arena.atomic
    nr = int(arena.config["nr_cpus"])
    base = arena.off("intentlog")
    want = off | _HELD_READ
    known = kept
    for cpu in [*range(nr), -1]:
        if cpu == dead_cpu:
            continue
        for ctx in range(L.INTENT_CTX if cpu >= 0 else 1):
            c = L.intent_ctx_off(base, nr, cpu, ctx)
            n = q[(c + L.ILC_HELD_N) >> 3]
            if cpu < 0 and n >= L.IL_HELD_MAX:
                return None
            h = (c + L.ILC_HELD) >> 3
            known += sum(1 for i in range(h, h + min(n, L.IL_HELD_MAX)) if q[i] == want)
    for row in range(nr + 1):
        if row == dead_cpu:
            continue
        n = waiter_node(arena, row)
        if (at.load64(n + N_LOCK) == 1 and at.load64(n + N_WANT) == off
                and at.load64(n + N_STATE) == S_GRANTED and at.load64(n + N_TYPE) == T_READ):
            known += 1
    landed = (at.load64(off) & RW_READERS) // RW_READER_BIAS - known
    return landed if landed in (0, 1) else None


def pending_write_landed(arena: Any, off: int, pid: int, cpu: int) -> bool:
    """Whether dead `cpu`'s pending write hold on rwsem `off` is in the word: W is set and
    the owner word names it or nobody (killed between taking W and naming itself, or
    between unnaming itself and dropping W).  Only with the world stopped: no live
    writer is in that window then.  A landed hold is named the dead CPU's, so
    release_dead / release_kept release it."""
    at = arena.atomic
    dead = pid << 16 | (cpu + 1)
    if not at.load64(off) & RW_WRITER or at.load64(off + 8) not in (0, dead):
        return False
    at.store64(off + 8, dead)
    return True


def _yields(arena: Any) -> bool:
    """Yield while waiting only when the simulated machine is oversubscribed (config
    sim.oversubscribed; unknown = yes), as sync/qspinlock.py: with a host CPU per
    simulated CPU the holder runs elsewhere, and a yield hands ours to some other process
    for a whole time slice (ms on a loaded host) instead of polling again."""
    return bool((arena.config.get("sim") or {}).get("oversubscribed", True))


def _row_of(arena: Any, cpu: int) -> int:
    nr = int(arena.config["nr_cpus"])
    return cpu if 0 <= cpu < nr else nr


class ObjSpinLock:
    """Simulated CPU `cpu`'s handle on every lock of spin class `cls`.  Closures bound
    once, taking the lock word's byte offset: lock(off), unlock(off), trylock(off) -> bool,
    held_by_me(off) -> bool."""

    __slots__ = ("arena", "cpu", "cls", "name", "lock", "unlock", "trylock", "held_by_me")

    def __init__(self, arena: Any, cls: int, cpu: int) -> None:
        self.arena, self.cls, self.cpu = arena, cls, cpu
        self.name = class_name(arena, cls)
        at, q = arena.atomic, arena.u64
        cas, load, store = at.cas64, at.load64, at.store64
        pid = os.getpid()
        mine = (pid << 16) | (cpu + 1)
        stat = bool(arena.config.get("lock_stat", True))
        mask = int(arena.config.get("lock_hold_sample", 8)) - 1
        si = stat_idx(arena, cpu, cls, 0) if stat and cpu < int(arena.config["nr_cpus"]) else -1
        name = self.name
        hold_t0: dict[int, int] = {}
        robust = robust_mode(arena.config)
        pc = _pc
        row = _row_of(arena, cpu)
        my_p = (row + 1) << 48
        node_pid = waiter_node(arena, row) + N_PID
        ev = LOCK_EVENTS
        yield_tries = YIELD_TRIES if _yields(arena) else 0

        def pending_dead(w: int) -> bool:
            r = (w >> 48) - 1
            p = load(waiter_node(arena, r) + N_PID) if 0 <= r <= int(arena.config["nr_cpus"]) else 0
            return not p or not proc_alive(p)

        def lock_slow(off: int) -> None:
            if load(off) & SPIN_OWNER == mine:
                raise LockError(f"spin_lock: recursive acquire of {name}@{off:#x} by cpu{cpu}")
            start = pc()
            attempt = 0
            pending = False
            delay = SLEEP_MIN_S
            next_check = start + OWNER_CHECK_NS
            free_reserved_since = 0
            hook = W.wait_hook()
            try:
                while True:
                    w = load(off)
                    if pending:
                        if w == my_p:                       # free and reserved for us
                            if cas(off, my_p, mine) == my_p:
                                break
                            continue
                        if w & SPIN_PENDING != my_p:        # revoked: wait as anyone does
                            pending = False
                    elif not w:
                        if cas(off, 0, mine) == 0:
                            break
                        continue
                    attempt += 1
                    if attempt < SPIN_TRIES:
                        if hook is not None and not attempt & 15:
                            hook()
                        continue
                    if hook is not None:
                        hook()
                    if attempt < SPIN_TRIES + yield_tries:
                        os.sched_yield()
                        continue
                    if not pending and not w & SPIN_PENDING:
                        store(node_pid, pid)
                        if cas(off, w, w | my_p) == w:      # reserve the next hand-over
                            pending = True
                            ev["spin_pending"] += 1
                            continue
                    time.sleep(min(delay, HANDOFF_SLEEP_MAX_S) if pending else delay)
                    delay = min(delay * 2, SLEEP_MAX_S)
                    now = pc()
                    if w & SPIN_PENDING and not w & SPIN_OWNER and not pending:
                        if not free_reserved_since:
                            free_reserved_since = now
                        elif now - free_reserved_since >= OWNER_CHECK_NS and pending_dead(w):
                            if cas(off, w, w & SPIN_OWNER) == w:
                                ev["spin_revokes"] += 1
                            free_reserved_since = 0
                    else:
                        free_reserved_since = 0
                    if now >= next_check:
                        next_check = now + OWNER_CHECK_NS
                        dead = _owner_dead(load(off) & SPIN_OWNER, robust)
                        if dead:
                            raise LockOwnerDead(f"{name}@{off:#x}", dead[0], dead[1], (now - start) / 1e9)
            except BaseException:
                if pending:                                 # give the reservation back
                    w = load(off)
                    while w & SPIN_PENDING == my_p:
                        got = cas(off, w, w & SPIN_OWNER)
                        if got == w:
                            break
                        w = got
                raise
            if si >= 0:
                wait = pc() - start
                q[si + _CON] += 1
                q[si + _WTOT] += wait
                if wait > q[si + _WMAX]:
                    q[si + _WMAX] = wait
                if not q[si + _WMIN] or wait < q[si + _WMIN]:
                    q[si + _WMIN] = wait

        def unlock_slow(off: int) -> None:
            """A reservation is on the word: clear only the owner half."""
            w = load(off)
            while True:
                if w & SPIN_OWNER != mine:
                    raise LockError(f"spin_unlock: {name}@{off:#x} not held by cpu{cpu} (word {w:#x})")
                got = cas(off, w, w & SPIN_PENDING)
                if got == w:
                    return
                w = got

        if si < 0:
            def lock(off: int) -> None:
                if cas(off, 0, mine):
                    lock_slow(off)

            def unlock(off: int) -> None:
                if cas(off, mine, 0) != mine:
                    unlock_slow(off)
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
                    unlock_slow(off)

        def trylock(off: int) -> bool:
            if cas(off, 0, mine):
                return False
            if si >= 0:
                q[si] += 1
            return True

        def held_by_me(off: int) -> bool:
            return load(off) & SPIN_OWNER == mine

        if robust:
            push, pop, _replace, held_op = _robust_list(arena, cpu)
            lock0, unlock0, trylock0 = lock, unlock, trylock

            def lock(off: int) -> None:
                held_op(off | _HELD_SPIN, lock0, off, push)

            def unlock(off: int) -> None:
                held_op(off | _HELD_SPIN, unlock0, off, None, pop)

            def trylock(off: int) -> bool:
                return held_op(off | _HELD_SPIN, trylock0, off, push)

        self.lock, self.unlock, self.trylock, self.held_by_me = lock, unlock, trylock, held_by_me


class ObjRWSem:
    """Simulated CPU `cpu`'s handle on every rwsem of class `cls`.  Closures taking the
    lock word's byte offset: down_read, up_read, down_write, up_write, downgrade_write,
    down_read_trylock -> bool, down_write_trylock -> bool, write_held_by_me -> bool."""

    __slots__ = ("arena", "cpu", "cls", "name", "down_read", "up_read", "down_write", "up_write",
                 "downgrade_write", "down_read_trylock", "down_write_trylock", "write_held_by_me", "wake")

    def __init__(self, arena: Any, cls: int, cpu: int) -> None:
        self.arena, self.cls, self.cpu = arena, cls, cpu
        self.name = class_name(arena, cls)
        at, q = arena.atomic, arena.u64
        cas, load, store, fa, fs = at.cas64, at.load64, at.store64, at.fetch_add64, at.fetch_sub64
        f_or, f_and = at.fetch_or64, at.fetch_and64
        pid = os.getpid()
        mine = (pid << 16) | (cpu + 1)
        nr_cpus = int(arena.config["nr_cpus"])
        stat = bool(arena.config.get("lock_stat", True))
        mask = int(arena.config.get("lock_hold_sample", 8)) - 1
        ok = stat and cpu < nr_cpus
        wi = stat_idx(arena, cpu, cls, 0) if ok else -1
        ri = stat_idx(arena, cpu, cls, 1) if ok else -1
        name = self.name
        pc, mono = _pc, _mono
        wt0: dict[int, int] = {}
        ev = LOCK_EVENTS
        row = _row_of(arena, cpu)
        me_wl = (row + 1) << RW_WL_SHIFT
        node = waiter_node(arena, row)
        nodes = [waiter_node(arena, r) for r in range(nr_cpus + 1)]
        ticket = wait_ticket_off(arena)
        yield_tries = YIELD_TRIES if _yields(arena) else 0
        if not load(node + N_LOCK):              # (a dead process's node keeps its pid: claim reaps it)
            store(node + N_PID, pid)             # names this process as the row's wait_lock holder
        robust = robust_mode(arena.config)

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

        # ------------------------------------------------------------ wait_lock and the list
        def wl_lock(off: int) -> None:
            """raw_spin_lock(&sem->wait_lock): short holds, no hook (never held across one)."""
            w = load(off)
            if not w & RW_WAIT_LOCK and cas(off, w, w | me_wl) == w:
                return
            n = 0
            since = 0
            while True:
                w = load(off)
                if not w & RW_WAIT_LOCK:
                    if cas(off, w, w | me_wl) == w:
                        return
                    continue
                n += 1
                if n < SPIN_TRIES:
                    continue
                os.sched_yield() if n < 4096 else time.sleep(SLEEP_MIN_S)
                if not n & 255:
                    now = pc()
                    if not since:
                        since = now
                    elif now - since > OWNER_CHECK_NS:     # its holder died holding it?
                        since = now
                        r = (w >> RW_WL_SHIFT) - 1
                        p = load(nodes[r] + N_PID) if 0 <= r <= nr_cpus else 0
                        if (not p or not proc_alive(p)) and cas(off, w, w & ~RW_WAIT_LOCK & _NEG1) == w:
                            ev["objlock_wait_lock_breaks"] += 1

        def wl_unlock(off: int) -> None:
            fs(off, me_wl)

        def waiters(off: int) -> list[int]:
            """The wait list of `off` (wait_lock held), first waiter first."""
            key = off + 1
            ws = [(load(n + N_SEQ), n) for n in nodes if load(n + N_LOCK) == key]
            if len(ws) > 1:
                ws.sort()
            return [n for _s, n in ws]

        def claim() -> None:
            """This CPU's node: free (0) -> claimed (1).  Busy means another thread drives
            this simulated CPU (an error), a dead process left it (repaired), or the
            spare row is in use (wait)."""
            while cas(node + N_LOCK, 0, 1):
                cur = load(node + N_LOCK)
                p = load(node + N_PID)
                if p and p != pid and not proc_alive(p):
                    reap_node(node, cur)
                    continue
                if row < nr_cpus:
                    raise LockError(f"{name}: cpu{cpu} is already waiting for a lock (word at {cur - 1:#x}): "
                                    "one simulated CPU waits for one lock at a time")
                time.sleep(SLEEP_MIN_S)
            store(node + N_PID, pid)

        def unclaim() -> None:
            store(node + N_WANT, 0)
            store(node + N_LOCK, 0)

        def enqueue(off: int, typ: int) -> None:
            """rwsem_add_waiter (wait_lock held; the node is claimed)."""
            store(node + N_SEQ, fa(ticket, 1))
            store(node + N_TYPE, typ)
            store(node + N_STATE, S_WAITING)
            store(node + N_HANDOFF_SET, 0)
            store(node + N_TIMEOUT, mono() + RW_WAIT_TIMEOUT_NS)
            store(node + N_WANT, off)
            store(node + N_LOCK, off + 1)

        def del_waiter(off: int, n: int, to: int = 1) -> bool:
            """rwsem_del_waiter: take n off the list (its lock word becomes `to`); the
            last one out clears H and Ws.  Returns whether waiters remain."""
            store(n + N_LOCK, to)
            if waiters(off):
                return True
            f_and(off, _NEG1 ^ (RW_HANDOFF | RW_WAITERS))
            return False

        def mark_wake(off: int, wake_type: int) -> None:
            """rwsem_mark_wake (wait_lock held, list not empty)."""
            ws = waiters(off)
            if not ws:
                return
            first = ws[0]
            if load(first + N_TYPE) == T_WRITE:
                if wake_type == WAKE_ANY:
                    store(first + N_STATE, S_WOKEN)
                    ev["rwsem_wake_writer"] += 1
                return
            adjustment = 0
            if wake_type != WAKE_READ_OWNED:
                adjustment = RW_READER_BIAS
                old = fa(off, RW_READER_BIAS)
                if old & RW_WRITER:               # a writer stole it before the grant
                    if mono() > load(first + N_TIMEOUT):
                        if not old & RW_HANDOFF:
                            adjustment -= RW_HANDOFF
                            ev["rwsem_rlock_handoff"] += 1
                        store(first + N_HANDOFF_SET, 1)
                    fa(off, (-adjustment) & _NEG1)
                    return
            readers = [n for n in ws if load(n + N_TYPE) == T_READ][:MAX_READERS_WAKEUP]
            for n in readers:
                store(n + N_LOCK, 1)              # off the list, still claimed by its CPU
            woken = len(readers)
            ev["rwsem_wake_reader"] += woken
            adjustment = woken * RW_READER_BIAS - adjustment
            old = load(off)
            if woken == len(ws):
                adjustment -= RW_WAITERS
                if old & RW_HANDOFF:
                    adjustment -= RW_HANDOFF
            elif woken and old & RW_HANDOFF:
                adjustment -= RW_HANDOFF
            if adjustment:
                fa(off, adjustment & _NEG1)
            for n in readers:                     # 2nd pass: the biases are in the word
                store(n + N_STATE, S_GRANTED)

        def cond_wake(off: int) -> None:
            """rwsem_cond_wake_waiter (wait_lock held)."""
            w = load(off)
            if w & RW_WRITER:
                return
            mark_wake(off, WAKE_READERS if w & RW_READERS else WAKE_ANY)

        def rwsem_wake(off: int) -> None:
            wl_lock(off)
            try:
                if load(off) & RW_WAITERS:
                    mark_wake(off, WAKE_ANY)
            finally:
                wl_unlock(off)

        def del_wake_waiter(off: int, n: int) -> None:
            """rwsem_del_wake_waiter (wait_lock held): n leaves; if it was first, the
            others may be eligible now."""
            ws = waiters(off)
            first = bool(ws) and ws[0] == n
            if del_waiter(off, n, 1 if n == node else 0) and first:
                mark_wake(off, WAKE_ANY)

        def reap_node(n: int, cur: int) -> None:
            """A dead process's node: take it off the list it is on, free the row."""
            if cur > 1:
                off = cur - 1
                wl_lock(off)
                try:
                    if load(n + N_LOCK) == cur:
                        del_wake_waiter(off, n)
                        ev["objlock_dead_waiters"] += 1
                finally:
                    wl_unlock(off)
            else:
                cas(n + N_LOCK, cur, 0)

        def check(off: int, start: int) -> None:
            """Every OWNER_CHECK_NS of waiting: a dead writer is reported, dead waiters
            ahead of us are removed."""
            if load(off) & RW_WRITER:
                dead = _owner_dead(load(off + 8), robust)
                if dead:
                    raise LockOwnerDead(f"{name}@{off:#x}", dead[0], dead[1], (pc() - start) / 1e9)
            key = off + 1
            for n in nodes:
                if n != node and load(n + N_LOCK) == key:
                    p = load(n + N_PID)
                    if p and p != pid and not proc_alive(p):
                        reap_node(n, key)

        def wait_node(off: int, start: int, done: Any, handoff_poll: bool) -> None:
            """Sleep-poll until done(); with handoff_poll, short sleeps only."""
            hook = W.wait_hook()
            park = W.park_hook() if robust else None
            attempt = 0
            delay = SLEEP_MIN_S
            next_check = pc() + OWNER_CHECK_NS
            while not done():
                attempt += 1
                if attempt < SPIN_TRIES:
                    if hook is not None and not attempt & 15:
                        hook()
                    continue
                if hook is not None:
                    hook()
                if attempt < SPIN_TRIES + yield_tries:
                    os.sched_yield()
                    continue
                time.sleep(min(delay, HANDOFF_SLEEP_MAX_S) if handoff_poll else delay)
                delay = min(delay * 2, QUEUED_SLEEP_MAX_S)
                if park is not None and load(off) & RW_KEPT:
                    park(off)                             # a dead CPU's hold: park for its recovery
                now = pc()
                if now >= next_check:
                    next_check = now + OWNER_CHECK_NS
                    check(off, start)

        # ------------------------------------------------------------ read side
        def down_read(off: int) -> None:
            w = load(off)
            if not w & RW_READ_FAILED and cas(off, w, w + RW_READER_BIAS) == w:
                if ri >= 0:
                    q[ri] += 1
                return
            down_read_slow(off)
            if ri >= 0:
                q[ri] += 1

        def down_read_slow(off: int) -> None:
            start = pc()
            w = load(off)
            while not w & RW_READ_FAILED:            # only the wait_lock field moved
                got = cas(off, w, w + RW_READER_BIAS)
                if got == w:
                    return
                w = got
            if w & RW_WRITER and load(off + 8) == mine:
                raise LockError(f"down_read: {name}@{off:#x} is write-held by this cpu{cpu}")
            # optimistic stealing: no writer, no hand-off, and not already reader-owned
            while not w & (RW_WRITER | RW_HANDOFF | RW_READERS):
                got = cas(off, w, w + RW_READER_BIAS)
                if got == w:
                    ev["rwsem_rlock_steal"] += 1
                    if w & RW_WAITERS:
                        wl_lock(off)
                        try:
                            if load(off) & RW_WAITERS:
                                mark_wake(off, WAKE_READ_OWNED)
                        finally:
                            wl_unlock(off)
                    account_wait(ri, start)
                    return
                w = got
            claim()
            try:
                wl_lock(off)
                try:
                    w = load(off)
                    if not w & RW_WAITERS:
                        if not w & RW_WRITER:          # empty queue, no writer: just take it
                            fa(off, RW_READER_BIAS)
                            ev["rwsem_rlock_fast"] += 1
                            unclaim()
                            account_wait(ri, start)
                            return
                        f_or(off, RW_WAITERS)
                    enqueue(off, T_READ)
                    cond_wake(off)
                finally:
                    wl_unlock(off)
                ev["rwsem_sleep_reader"] += 1
                try:
                    wait_node(off, start, lambda: load(node + N_STATE) == S_GRANTED, False)
                except BaseException:
                    leave_read(off)
                    raise
            finally:
                if load(node + N_LOCK) == 1:
                    unclaim()
            account_wait(ri, start)

        def leave_read(off: int) -> None:
            """A waiting reader leaves on an exception: off the list, or, if it was granted
            meanwhile, it releases the lock it was given."""
            ev["rwsem_rlock_fail"] += 1
            wl_lock(off)
            try:
                queued = load(node + N_LOCK) == off + 1
                if queued:
                    del_wake_waiter(off, node)
            finally:
                wl_unlock(off)
            if not queued and load(node + N_STATE) == S_GRANTED:
                up_read(off)

        def down_read_trylock(off: int) -> bool:
            w = load(off)
            while not w & RW_READ_FAILED:
                got = cas(off, w, w + RW_READER_BIAS)
                if got == w:
                    if ri >= 0:
                        q[ri] += 1
                    return True
                w = got
            return False

        def up_read(off: int) -> None:
            old = fs(off, RW_READER_BIAS)
            if not old & RW_READERS:
                fa(off, RW_READER_BIAS)
                raise LockError(f"up_read: {name}@{off:#x} had no readers (word {old:#x})")
            if (old - RW_READER_BIAS) & (RW_LOCK_MASK | RW_WAITERS) == RW_WAITERS:
                rwsem_wake(off)

        # ------------------------------------------------------------ write side
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
            down_write_slow(off)

        def try_write_lock(off: int) -> bool:
            """rwsem_try_write_lock (wait_lock held, this CPU queued)."""
            ws = waiters(off)
            first = ws[0]
            w = load(off)
            while True:
                has_handoff = w & RW_HANDOFF
                if has_handoff and first != node and load(first + N_HANDOFF_SET):
                    return False
                new = w
                if w & RW_LOCK_MASK:
                    if has_handoff or mono() <= load(node + N_TIMEOUT):
                        return False
                    new |= RW_HANDOFF
                else:
                    new = (new | RW_WRITER) & ~RW_HANDOFF
                    if len(ws) == 1:
                        new &= ~RW_WAITERS
                got = cas(off, w, new)
                if got == w:
                    break
                w = got
            if new & RW_HANDOFF:
                store(first + N_HANDOFF_SET, 1)
                ev["rwsem_wlock_handoff"] += 1
                return False
            store(node + N_LOCK, 1)                  # implies rwsem_del_waiter
            return True

        def down_write_slow(off: int) -> None:
            if load(off + 8) == mine and load(off) & RW_WRITER:
                raise LockError(f"down_write: recursive acquire of {name}@{off:#x} by cpu{cpu}")
            start = pc()
            hook = W.wait_hook()
            for i in range(SPIN_TRIES):               # rwsem_optimistic_spin
                w = load(off)
                if not w & (RW_LOCK_MASK | RW_HANDOFF):
                    if cas(off, w, w | RW_WRITER) == w:
                        ev["rwsem_opt_lock"] += 1
                        took_write(off)
                        account_wait(wi, start)
                        return
                    continue
                if w & RW_HANDOFF:
                    break
                if hook is not None and not i & 15:
                    hook()
            claim()
            try:
                wl_lock(off)
                try:
                    enqueue(off, T_WRITE)
                    if waiters(off)[0] != node:
                        cond_wake(off)
                    else:
                        f_or(off, RW_WAITERS)
                    got = try_write_lock(off)
                finally:
                    wl_unlock(off)
                while not got:
                    ev["rwsem_sleep_writer"] += 1
                    try:
                        wait_node(off, start, lambda: woken(off), bool(load(node + N_HANDOFF_SET)))
                    except BaseException:
                        ev["rwsem_wlock_fail"] += 1
                        wl_lock(off)
                        try:
                            if load(node + N_LOCK) == off + 1:
                                del_wake_waiter(off, node)
                        finally:
                            wl_unlock(off)
                        raise
                    wl_lock(off)
                    try:
                        store(node + N_STATE, S_WAITING)
                        got = try_write_lock(off)
                    finally:
                        wl_unlock(off)
            finally:
                if load(node + N_LOCK) == 1:
                    unclaim()
            took_write(off)
            account_wait(wi, start)

        def woken(off: int) -> bool:
            """A queued writer tries again when woken, or (hand-off set for it) as soon as
            the lock is free: Linux's spin on the owner after setting the hand-off."""
            if load(node + N_STATE) == S_WOKEN:
                return True
            return bool(load(node + N_HANDOFF_SET)) and not load(off) & RW_LOCK_MASK

        def down_write_trylock(off: int) -> bool:
            w = load(off)
            if w & ~RW_WAIT_LOCK & _NEG1 == 0 and cas(off, w, w | RW_WRITER) == w:
                took_write(off)
                return True
            return False

        def end_write(off: int) -> None:
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

        def up_write(off: int) -> None:
            end_write(off)
            if fs(off, RW_WRITER) & RW_WAITERS:
                rwsem_wake(off)

        def downgrade_write(off: int) -> None:
            """downgrade_write(): the write hold becomes a read hold (no moment unlocked);
            readers at the head of the queue are granted with it."""
            end_write(off)
            if fa(off, RW_READER_BIAS - RW_WRITER) & RW_WAITERS:
                wl_lock(off)
                try:
                    if load(off) & RW_WAITERS:
                        mark_wake(off, WAKE_READ_OWNED)
                finally:
                    wl_unlock(off)

        def write_held_by_me(off: int) -> bool:
            return bool(load(off) & RW_WRITER) and load(off + 8) == mine

        if robust:
            push, pop, replace, held_op = _robust_list(arena, cpu)
            dr0, ur0, dw0, uw0, dg0 = down_read, up_read, down_write, up_write, downgrade_write
            drt0, dwt0 = down_read_trylock, down_write_trylock

            def down_read(off: int) -> None:
                held_op(off | _HELD_READ, dr0, off, push)

            def up_read(off: int) -> None:
                held_op(off | _HELD_READ, ur0, off, None, pop)

            def down_write(off: int) -> None:
                held_op(off | _HELD_WRITE, dw0, off, push)

            def up_write(off: int) -> None:
                held_op(off | _HELD_WRITE, uw0, off, None, pop)

            def downgrade_write(off: int) -> None:
                # pending READ: the word may hold the reader while the list still says WRITE
                held_op(off | _HELD_READ, dg0, off, lambda e: replace(off | _HELD_WRITE, e))

            def down_read_trylock(off: int) -> bool:
                return held_op(off | _HELD_READ, drt0, off, push)

            def down_write_trylock(off: int) -> bool:
                return held_op(off | _HELD_WRITE, dwt0, off, push)

        if robust and os.getpid() == getattr(arena, "owner_pid", -1):
            stopped = _STOPPED
            dr1, ur1, dw1, uw1, dg1 = down_read, up_read, down_write, up_write, downgrade_write
            drt1, dwt1, wh1 = down_read_trylock, down_write_trylock, write_held_by_me
            writes: set[int] = set()        # holds taken as no-ops: released as no-ops
            reads: dict[int, int] = {}

            def down_read(off: int) -> None:
                if stopped[0]:
                    reads[off] = reads.get(off, 0) + 1
                else:
                    dr1(off)

            def up_read(off: int) -> None:
                n = reads.get(off, 0)
                if not n:
                    ur1(off)
                elif n == 1:
                    del reads[off]
                else:
                    reads[off] = n - 1

            def down_write(off: int) -> None:
                if stopped[0]:
                    writes.add(off)
                else:
                    dw1(off)

            def up_write(off: int) -> None:
                if off in writes:
                    writes.discard(off)
                else:
                    uw1(off)

            def downgrade_write(off: int) -> None:
                if off in writes:
                    writes.discard(off)
                    reads[off] = reads.get(off, 0) + 1
                else:
                    dg1(off)

            def down_read_trylock(off: int) -> bool:
                if stopped[0]:
                    reads[off] = reads.get(off, 0) + 1
                    return True
                return drt1(off)

            def down_write_trylock(off: int) -> bool:
                if stopped[0]:
                    writes.add(off)
                    return True
                return dwt1(off)

            def write_held_by_me(off: int) -> bool:
                return off in writes or wh1(off)

        self.down_read, self.up_read, self.down_write, self.up_write = down_read, up_read, down_write, up_write
        self.downgrade_write = downgrade_write
        self.down_read_trylock, self.down_write_trylock = down_read_trylock, down_write_trylock
        self.write_held_by_me = write_held_by_me
        self.wake = rwsem_wake
