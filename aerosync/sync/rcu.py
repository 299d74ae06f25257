"""RCU for the arena: lock-free readers, and frees deferred until no reader can be inside.

Models: kernel/rcu (rcu_read_lock / rcu_read_unlock, call_rcu, synchronize_rcu) as
epoch-based reclamation, the form a multiprocess testbed can implement exactly.  Unit:
one simulated CPU's read-side critical section; one deferred free (an object the caller
has already unlinked, plus the function that frees it).

Who needs it: lock-free walks of the VMA maple tree (per-VMA-lock and speculative
faults), of vm_object page trees, and of the page tables' upper levels read while other
CPUs free tables.  A writer unlinks an object (one store publishes the new version),
then hands the old one to call_rcu(); it is freed only after every CPU that might have
been reading it has left its read-side section.

Arena section "rcu" (RCU_HDR + nr_cpus * CACHE_LINE + nr_cpus * RCU_RING_BYTES bytes)::

    header line   0 gp_seq u64 (atomic fetch_add)   the global epoch, starts at 1
    per CPU line  0 reader u64                      0 = quiescent (outside any section),
                                                    else the gp_seq seen at entry
                  8 completed u64                   deferred frees this CPU completed
                 16 pending u64                     deferred frees this CPU still holds
                 24 head u64  32 tail u64           its ring of pending frees (below)
    per CPU ring  RCU_RING x {tag u64, arg | kind << 56 u64}: the arena copy of the
                  queue, [head, tail) pending, owner-only plain stores

Protocol (all SEQ_CST atomics):
  * rcu_read_lock(): e = load(gp_seq); store(reader[cpu], e); then read.  Nesting is
    counted in the handle (this process): only the outermost pair touches the arena.
  * rcu_read_unlock(): store(reader[cpu], 0).
  * call_rcu(free, arg) after the unlink: tag = load(gp_seq); queue (tag, free, arg).
  * reclaim (rcu_poll, from the writer's own CPU): fetch_add(gp_seq, 1), then read every
    reader word; an entry tagged t is freed when every reader word is 0 or > t.
  Why it is safe: a reader that can still reach an object stored its reader word before
  the unlink (else its walk starts after the unlink and cannot find the object), with a
  gp_seq loaded before that, so its word is <= t -- the entry waits.  A reader whose word
  is > t loaded gp_seq after some reclaimer's fetch_add that followed the tag load, so
  after the unlink.  A quiescent CPU (0) holds nothing.  The check is conservative
  (a reader that entered between the unlink and the tag load keeps the entry one more
  round), never unsafe.

Owner-only data: a CPU's line (reader, counters, ring) is written only by that CPU;
the callables of its pending frees live in its handle (this process), and each free's
argument -- the arena offset of the object to free -- also in its ring, so that a CPU
that dies does not take its pending frees with it: `pending_frees(cpu)` lists them for
the recovery (mm/recovery.py), which runs them with the world stopped (every other CPU
parked outside any read-side section: the grace period is over).  An entry leaves the
ring once its free is done: a death inside the free (a kill from outside between two
stores, or in a slow path whose intent record mm/intent.py resolves) leaves it the
ring's head, which the recovery frees after the records only if the object is still
allocated (`rcu_head_pending`).  Every caller's free is a slab object's (`kind` says which
extra step it has: RCU_FREE_VMA marks a VMA record free first).  A full ring makes
call_rcu wait for a grace period and run what it can first (rcu_barrier).  The gp_seq
word is shared (one fetch_add per reclaim batch, not per free).

Limits: a CPU that dies inside a section pins every later free until its reader word is
cleared -- the coordinator's death handling does that (`rcu_cpu_dead`).

Invariants: R1 a deferred free runs only when every reader word is 0 or greater than its
tag; R2 after rcu_barrier() (synchronize_rcu + drain) the CPU's pending count is 0.
Deliberate races: none; `completed`/`pending` are owner-written statistics.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.errors import AeroSyncError
from aerosync.params import CACHE_LINE

__all__ = ["RCU_HDR", "rcu_section", "rcu_init", "Rcu", "rcu_cpu_dead", "RCU_BATCH", "RCU_RING",
           "RCU_FREE_OBJ", "RCU_FREE_VMA", "pending_frees", "forget_pending"]

RCU_HDR = CACHE_LINE
RCU_BATCH = 64                 # deferred frees queued before a reclaim attempt
RCU_RING = 512                 # pending frees a CPU's arena ring holds
RCU_RING_BYTES = RCU_RING * 16
RCU_FREE_OBJ, RCU_FREE_VMA = 0, 1   # what recovery does with a pending free: slab free / VMA first
_GP, _READER, _COMPLETED, _PENDING, _HEAD, _TAIL = 0, 0, 8, 16, 24, 32
_ARG_MASK = (1 << 56) - 1
_STALL_S = 10.0


def rcu_section(nr_cpus: int) -> SectionSpec:
    return SectionSpec("rcu", RCU_HDR + nr_cpus * (CACHE_LINE + RCU_RING_BYTES), align=CACHE_LINE)


def _ring_off(arena: Any, cpu: int) -> int:
    return arena.off("rcu") + RCU_HDR + int(arena.config["nr_cpus"]) * CACHE_LINE + cpu * RCU_RING_BYTES


def pending_frees(arena: Any, cpu: int) -> list[tuple[int, int]]:
    """(arg, kind) of every free `cpu` queued and has not run (read after it died)."""
    q = arena.u64
    me = arena.off("rcu") + RCU_HDR + cpu * CACHE_LINE
    head, tail = q[(me + _HEAD) >> 3], q[(me + _TAIL) >> 3]
    ring = _ring_off(arena, cpu) >> 3
    out = []
    for i in range(head, min(tail, head + RCU_RING)):
        w = q[ring + 2 * (i % RCU_RING) + 1]
        if w:
            out.append((w & _ARG_MASK, w >> 56))
    return out


def rcu_head_pending(arena: Any, cpu: int) -> tuple[int, int] | None:
    """(arg, kind) of dead `cpu`'s oldest pending free -- the one its poll may have been
    running when it died (the ring's head moves only once a free is done) -- or None."""
    q = arena.u64
    me = arena.off("rcu") + RCU_HDR + cpu * CACHE_LINE
    head, tail = q[(me + _HEAD) >> 3], q[(me + _TAIL) >> 3]
    if head >= tail:
        return None
    w = q[(_ring_off(arena, cpu) >> 3) + 2 * (head % RCU_RING) + 1]
    return (w & _ARG_MASK, w >> 56) if w else None


def forget_pending(arena: Any, cpu: int) -> None:
    """Empty a dead CPU's ring (after the recovery ran its frees)."""
    q = arena.u64
    me = arena.off("rcu") + RCU_HDR + cpu * CACHE_LINE
    q[(me + _HEAD) >> 3] = q[(me + _TAIL) >> 3]
    q[(me + _PENDING) >> 3] = 0


def rcu_init(arena: Any) -> None:
    """Start the epoch at 1 (0 means quiescent in a reader word)."""
    base = arena.off("rcu")
    arena.u8[base : base + arena.sections["rcu"][1]] = bytes(arena.sections["rcu"][1])
    arena.atomic.store64(base + _GP, 1)


def rcu_cpu_dead(arena: Any, cpu: int) -> None:
    """A dead CPU leaves its read-side section (its reads ended with it)."""
    arena.atomic.store64(arena.off("rcu") + RCU_HDR + cpu * CACHE_LINE + _READER, 0)


class Rcu:
    """Simulated CPU `cpu`'s RCU handle.  Attributes are closures bound once:
    read_lock(), read_unlock(), call_rcu(fn, arg), poll() -> freed count,
    synchronize() (wait for a grace period), barrier() (synchronize + run every pending
    free), nr_pending()."""

    __slots__ = ("arena", "cpu", "read_lock", "read_unlock", "call_rcu", "poll", "synchronize", "barrier",
                 "nr_pending", "wait_hook")

    def __init__(self, arena: Any, cpu: int, nr_cpus: int | None = None) -> None:
        if "rcu" not in arena.sections:
            raise AeroSyncError(f"Rcu: arena {arena.name} has no rcu section")
        self.arena, self.cpu = arena, cpu
        self.wait_hook: Callable[[], None] | None = None
        at, q = arena.atomic, arena.u64
        load, store, fetch_add = at.load64, at.store64, at.fetch_add64
        base = arena.off("rcu")
        n = int(arena.config["nr_cpus"]) if nr_cpus is None else nr_cpus
        gp = base + _GP
        me = base + RCU_HDR + cpu * CACHE_LINE
        reader_offs = [base + RCU_HDR + c * CACHE_LINE + _READER for c in range(n)]
        i_completed, i_pending = (me + _COMPLETED) >> 3, (me + _PENDING) >> 3
        i_head, i_tail = (me + _HEAD) >> 3, (me + _TAIL) >> 3
        ring = _ring_off(arena, cpu) >> 3 if cpu < n else -1
        queue: deque[tuple[int, Callable[[Any], None], Any]] = deque()
        depth = 0

        def read_lock() -> None:
            nonlocal depth
            if not depth:
                store(me, load(gp))
            depth += 1

        def read_unlock() -> None:
            nonlocal depth
            depth -= 1
            if not depth:
                store(me, 0)

        def oldest_reader() -> int:
            """The smallest non-zero reader word (0: every CPU quiescent)."""
            lo = 0
            for o in reader_offs:
                v = load(o)
                if v and (not lo or v < lo):
                    lo = v
            return lo

        def poll() -> int:
            """Advance the epoch and run every queued free whose grace period is over."""
            if not queue:
                return 0
            fetch_add(gp, 1)
            lo = oldest_reader()
            freed = 0
            while queue and (not lo or queue[0][0] < lo):
                _, fn, arg = queue.popleft()
                fn(arg)
                if ring >= 0:
                    q[i_head] += 1                 # off the ring once freed: a death inside the
                freed += 1                         # free leaves it the ring's head (rcu_head_pending)
            q[i_completed] += freed
            q[i_pending] = len(queue)
            return freed

        def call_rcu(fn: Callable[[Any], None], arg: Any, kind: int = RCU_FREE_OBJ) -> None:
            if ring >= 0 and q[i_tail] - q[i_head] >= RCU_RING:
                barrier()                          # ring full: wait for a grace period, free
            tag = load(gp)
            queue.append((tag, fn, arg))
            if ring >= 0:
                t = q[i_tail]
                j = ring + 2 * (t % RCU_RING)
                q[j] = tag
                q[j + 1] = (arg | kind << 56) if type(arg) is int else 0   # (0: not an arena object)
                q[i_tail] = t + 1
            q[i_pending] += 1
            if len(queue) >= RCU_BATCH and not depth:
                poll()

        def synchronize() -> None:
            """synchronize_rcu(): return once every reader that entered before now left."""
            if depth:
                raise AeroSyncError(f"cpu{cpu}: synchronize_rcu inside an RCU read-side section")
            tag = fetch_add(gp, 1)
            deadline = time.monotonic() + _STALL_S
            delay = 1e-5
            while True:
                lo = oldest_reader()
                if not lo or lo > tag:
                    return
                hook = self.wait_hook
                if hook is not None:
                    hook()
                if time.monotonic() > deadline:
                    stuck = [c for c, o in enumerate(reader_offs) if 0 < load(o) <= tag]
                    raise AeroSyncError(f"cpu{cpu}: RCU grace period stalled {_STALL_S:g} s: cpus {stuck} "
                                        "stayed inside a read-side section (dead or stopped?)")
                os.sched_yield() if delay < 1e-4 else time.sleep(delay)
                delay = min(delay * 2, 1e-3)

        def barrier() -> None:
            """rcu_barrier(): wait for a grace period, then run every queued free."""
            while queue:
                synchronize()
                poll()

        def nr_pending() -> int:
            return len(queue)

        self.read_lock, self.read_unlock, self.call_rcu = read_lock, read_unlock, call_rcu
        self.poll, self.synchronize, self.barrier, self.nr_pending = poll, synchronize, barrier, nr_pending
