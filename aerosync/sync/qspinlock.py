"""A queued spinlock (MCS / qspinlock) in the arena, with paravirt-style blocking.

Models: kernel/locking/qspinlock.c (queued_spin_lock_slowpath: the pending bit, the MCS
queue, the hand-over), mcs_spinlock.h, and qspinlock_paravirt.h (pv_wait_node,
pv_kick_node, pv_wait_head_or_lock, the unlock-time kick).  Unit: one lock slot
(sync/lockstat.py).  `SpinLock(arena, slot, cpu)` builds this kind when the arena's
config selects it for the slot's class (sync/spinlock.py: spinlock_kind); callers never
see the difference.  Why: the test-and-set lock lets the CPU that just released win
again, so under a storm one CPU waits tens of ms; here a waiter is served in order.

Lockless protocol (the lock word, u64 at slot+0)::

    63              41  40  39                16 15               0
    +-----------------+----+--------------------+-----------------+
    |  tail (23)      |  P |  owner pid (24)    |  cpu + 1 (16)   |
    +-----------------+----+--------------------+-----------------+

  * bits 0-39 are the TAS lock's word: locked iff the pid field is non-zero (Linux's
    locked byte, carrying the owner so owner(), locks_held_by() and the watchdog read
    both kinds alike); cpu+1 is the owner's, or the last owner's while free (acq-bounce
    counting costs nothing, as in sync/spinlock.py).  P = pending (_Q_PENDING_VAL).
    tail = MCS node index + 1 of the last queued waiter (Linux: cpu+1 and idx), 0 = none.
  * acquire fast path: one CAS "free, last me, nobody waiting" -> "locked by me", the same
    CAS as the TAS lock.  While P or a tail is set nobody can take a free lock except the
    pending waiter or the queue head: that is what makes the hand-over FIFO.
  * release fast path: CAS "locked by me, nobody waiting" -> "free, last me" (it catches a
    foreign release, as xv6's release() does).  With P or a tail set it fails into
    `unlock_slow`: a CAS loop clears the pid field (the tail may move under it), then
    the next waiter is woken if it blocked.
  * pending: word locked, no P, no tail -> CAS P on, wait for the owner to leave, then
    CAS (P, free) -> (locked by me) (clear_pending_set_locked).  A CAS rather than
    Linux's add: P can be revoked (dead pending waiter, below).
  * queue: claim an MCS node, publish it as the tail (CAS loop: xchg_tail), link
    prev->next, wait for our node's grant; as head wait for the word to have neither
    owner nor P, take it (clearing the tail if it is still ours), then grant the
    successor.  Every CAS is SEQ_CST (atomicshm default): acquire/release for the data
    the lock protects, and the Dekker pairs below.

MCS nodes (section `qnodes`, one 64-byte line each; arena/layout.py qnode_count)::

     0 locked  seq<<1 | granted   each waiter spins on its own line (Linux node->locked)
     8 next    successor's link: code | seq<<24; bit 63 GRANTED = the hand-over is decided
    16 prev    predecessor's code (0: none), stored before each tail CAS attempt
    24 state   RUNNING 0 | HALTED 1: blocked on its semaphore (Linux vcpu_halted) |
               LINKWAIT 2: blocked holding the lock until its successor links
    32 owner   occupant pid | starttime<<24; bit 63 ABANDONED; 0 = free (claimed by CAS)
    40 slot    lock slot + 1 while the node waits on that lock    48 since (ns)  56 seq

  Node i belongs to context i: cpu*2 the task, cpu*2+1 the interrupt-context thread
  (owner id IRQ_LOCK_CPU | cpu, mm/slab/slub.py), nr_cpus*2 the coordinator (CPU_COORD)
  -- Linux's per-CPU nodes with a nesting index.  A busy preferred node (two threads of
  one context, a cpu id outside the machine) falls back to any free node; with none free
  the waiter spins on the word with sleep backoff, as Linux spins on trylock when its
  nesting runs out.  Nobody but the occupant writes a node, except: its successor (next,
  and a dead node's owner/slot when it repairs the queue), its predecessor (locked, by
  CAS from the seq the successor linked with, so a grant can never land on a node that
  was freed and claimed again), and the releaser/granter reading state.

Paravirt waiting (qspinlock_paravirt.h, one POSIX semaphore per node, arena-owned): a
waiter spins `SPIN_TRIES` polls, yields `YIELD_TRIES` times, then blocks; a queued waiter
whose predecessor is blocked itself blocks at once (pv_wait_early).  The yields only when
the simulated machine is oversubscribed (config sim.oversubscribed; unknown counts as
yes): with a host CPU per simulated CPU the one we wait for runs elsewhere, and a yield
would only hand our CPU to some other process for a whole time slice (measured: waits of
8 ms on a loaded host), while a blocked waiter is woken as soon as it is its turn.
  * a queued waiter sets state HALTED, re-checks its grant, blocks; the predecessor
    grants, then posts if it sees HALTED (pv_wait_node / pv_kick: a Dekker pair of
    SEQ_CST store-then-load on both sides, so no wake-up is lost; a spurious one can
    happen and is waited out).  Linux defers that kick to the unlock (pv_kick_node) to
    spare a vCPU a wake/halt cycle; here the post comes at the hand-over, so the new
    head is running again by the time the lock is released.
  * the queue head and the pending waiter register their node code in the slot's
    `sleepers` word (u32 at slot+28: head in bits 0-15, pending waiter in 16-31), set
    HALTED, re-check the word, block.  `unlock_slow` (and anyone dropping P) reads
    `sleepers` after its CAS and posts the one that is next: the pending waiter if P is
    set, else the head (the _Q_SLOW_VAL + hash of pv_wait_head_or_lock, without the
    hash: one lock has one head).
  Blocks time out after HOOK_BLOCK_S with a wait hook installed, BLOCK_S without, to run
  the wait hook (sync/waithook.py) and the liveness checks: with more simulated CPUs than
  host CPUs nobody spins on a preempted holder and nobody sleep-polls for the lock.

Lock-waiter preemption (why Linux's PV lock lets a newcomer steal, pv_queued_spin_steal_
lock): FIFO hands the lock to a waiter that may not be running -- preempted by the host,
or still waking from its block -- and everyone waits for it.  So a free lock that its
next waiter has not taken within STEAL_NS of the release (`unlock_slow` stores the time
at slot+184 first) may be taken by a newcomer when nobody is queued (P stays set: the
pending waiter keeps its place), or by the queue head from a stalled pending waiter.
A waiter that is running takes a free lock within microseconds, so on a machine with a
CPU for each simulated CPU the order stays FIFO; a queued waiter never loses its place.

Dead parties (robust-mutex semantics, as the TAS lock; zombies count as dead and the
start time guards against pid reuse -- the owner's from its per-CPU area or the
arena header, a node occupant's from its node):
  * dead owner: the pending waiter or the queue head raises LockOwnerDead (lock, owner,
    time) as the TAS lock does; the word stays locked until force_unlock().
  * a waiter leaving on an exception (LockOwnerDead, KeyboardInterrupt, a raising wait
    hook) marks its node ABANDONED and wakes its successor: from then on it is handled
    exactly like a dead one.  A pending waiter drops P and wakes the head.
  * dead or abandoned predecessor X (seen by its successor S after a block, reading /proc
    at most every LIVENESS_S; at once for ABANDONED): if X was the head (no prev) or was
    granted, S becomes the head; else S splices itself in: CAS prev(X)->next from X's
    link (or 0: X died before linking) to S's.  The predecessor's hand-over commits with
    CAS next -> next|GRANTED before it writes the grant, so a splice and a hand-over
    never both win.  S frees X's node.
  * dead pending waiter (P set, word free, for `OWNER_CHECK_S`, with slot+8 naming a dead
    process or nobody): the head revokes P by CAS; a live but revoked waiter's take-CAS
    fails and it queues again.  A newcomer that would steal past STEAL_NS revokes
    instead when slot+8 names a dead process or nobody (`_steal`): else a P whose
    waiter died before naming itself stayed set for good.
  * dead successor that never linked (the holder waits for next): the holder drops it
    from the tail when it is the tail; otherwise the node behind it splices around it.
  * a queue of dead nodes only (every node queued on the lock dead or abandoned, so no
    node is free to queue behind them and nobody repairs): a waiter in overflow() --
    no node of its own -- takes the tail off the word by CAS and frees those nodes.
  * a node left claimed and queued-looking (N_SLOT set) but in no queue -- its process
    killed between claiming and publishing it, or between taking the lock and freeing
    it: nobody links to it, so nobody frees it -- is reclaimed by claim() when no node
    is free and its lock has no tail (`_reclaimable`: a dead node still queued keeps its
    lock's tail set).
  * a waiter without a node (every node busy) does the checks a head or pending waiter
    would: dead owner, dead or unnamed P, all-dead queue; it queues again as soon as a
    node frees (`overflow`).
  `reap_dead_waiter(arena, pid)` lets a recovering coordinator do all this at once for a
  worker it saw die (its nodes flagged ABANDONED, the P bits it held dropped) instead of
  waiting for the other waiters' checks.

Measured (2-core dev VM shared with other jobs, `aerosync bench reliability`, 3 runs x 5
started on an idle host): 2-CPU lock storm wait-max 2.6 / 3.7 / 7.2 ms (median of 5
each; TAS in the same runs 39 / 44 / 52 ms), Jain's index of acquisitions per CPU
0.994-0.999, uncontended acquire + release 0.99-1.03 x the TAS lock's (~235 ns).  The
remaining multi-ms waits happen with no block and no queueing too: the waiting process
itself was descheduled (80-270 involuntary context switches per worker in a 1 s storm
on the "idle" VM); a FIFO hand-over cannot hide that, stealing bounds what it costs
the others.  Oversubscribed (4 processes on one host CPU): ~15-25 k acquisitions/s
against ~400 k for the TAS lock, which lets the running process re-acquire.

Lock order: a queued spinlock nests exactly like the TAS lock it replaces (each user
documents its order; sync/__init__.py has the tree).  The slow path takes no other lock.

Invariants: Q1 at most one owner (tests/test_sync.py, both kinds); Q2 waiters are served
in the order their P or tail CAS succeeded (tests/test_qspinlock.py), unless one stalls
past STEAL_NS; Q3 while P or a tail is set only the pending waiter or the head takes a
free lock, or a stealer under the STEAL_NS rule; Q4 a node is granted at most once per
claim (the seq in its locked word).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import posix_ipc

from aerosync.arch.cpu import proc_alive, proc_starttime
from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.errors import LockError, LockOwnerDead
from aerosync.params import CACHE_LINE, CPU_AREA_SIZE, MAX_LOCKS
from aerosync.sync import lockstat as LS
from aerosync.sync.waithook import HOOK_BLOCK_S, wait_hook

__all__ = ["make_qspinlock", "Q_LOCKED", "Q_OWNER", "Q_PENDING", "Q_TAIL_SHIFT", "Q_TAIL", "QSTAT",
           "node_index", "reap_dead_waiter", "kick_sleepers", "SPIN_TRIES", "YIELD_TRIES", "BLOCK_S"]

Q_CPU = 0xFFFF
Q_LOCKED = LS.PID_MASK << 16
Q_OWNER = LS.OWNER_MASK
Q_PENDING = 1 << 40
Q_TAIL_SHIFT = 41
Q_TAIL = ((1 << 23) - 1) << Q_TAIL_SHIFT
_BUSY = Q_LOCKED | Q_PENDING

N_LOCKED, N_NEXT, N_PREV, N_STATE, N_OWNER, N_SLOT, N_SINCE, N_SEQ = 0, 8, 16, 24, 32, 40, 48, 56
CODE_MASK = (1 << 24) - 1
SEQ_MASK = (1 << 32) - 1
GRANTED = 1 << 63
ABANDONED = 1 << 63
START_MASK = (1 << 39) - 1
RUNNING, HALTED, LINKWAIT = 0, 1, 2    # LINKWAIT: blocked holder waiting for its successor's link
REVOKED = 1 << 64            # pending_wait's poll result when P was taken away (not a word)
REQUEUE = 1 << 65            # overflow's poll result when an MCS node may be free again

SPIN_TRIES = 64              # polls before yielding (~10 us: a 2-CPU hand-over takes 1-5)
YIELD_TRIES = 8              # sched_yield calls before blocking
RESPIN_TRIES = 32            # polls after a wake-up before blocking again
EARLY_MASK = 15              # a queued waiter looks at its predecessor every 16 polls
BLOCK_S = 0.02               # block timeout without a wait hook (liveness checks)
LIVENESS_S = 0.05            # at most this often a waiter reads /proc about a peer (~10 us)
OVERFLOW_SLEEP_S = 50e-6     # the no-node fallback's backoff (50 us doubling to 1 ms)
OWNER_CHECK_S = 0.25         # a P set on a free word this long makes its holder suspect
STEAL_NS = 250_000           # a free lock its next waiter has not taken in this long may be stolen
S_FREED = LS.S_LAST_CPU      # slot+184: perf_counter_ns of the last contended release

CPU_COORD = 0xFFFE
IRQ_FLAG = 0x8000

# Process-local event counts (Linux qspinlock_stat.h's qstats), for tests and profiling.
QSTAT = {"pending": 0, "queued": 0, "blocks": 0, "timeouts": 0, "kicks": 0, "repairs": 0,
         "revokes": 0, "abandons": 0, "overflow": 0, "steals": 0}

_pc = time.perf_counter_ns
_mono = time.monotonic_ns
_me: list[int] = [0, 0]      # (pid, node owner word) of this process, recomputed after fork


def _my_owner() -> int:
    pid = os.getpid()
    if _me[0] != pid:
        _me[0], _me[1] = pid, pid | ((proc_starttime(pid) or 0) & START_MASK) << 24
    return _me[1]


def node_index(arena: Arena, cpu: int) -> int:
    """The preferred MCS node of simulated context `cpu` (-1: none, use any free one)."""
    nr_cpus = int(arena.config.get("nr_cpus", 0))
    if cpu == CPU_COORD:
        return nr_cpus * L.QNODES_PER_CPU
    row, ctx = cpu & ~IRQ_FLAG, 1 if cpu & IRQ_FLAG else 0
    return row * L.QNODES_PER_CPU + ctx if row < nr_cpus else -1


def _node_dead(owner: int) -> bool:
    """A node occupant is gone: abandoned, or its process dead (zombie) or replaced."""
    if not owner:
        return False
    if owner & ABANDONED:
        return True
    return not proc_alive(owner & LS.PID_MASK, (owner >> 24) & START_MASK)


def owner_alive(arena: Arena, word: int) -> bool:
    """Whether the owner named by a locked word still runs; its start time comes from its
    per-CPU area (workers) or the arena header (the coordinator) when the pid matches."""
    cpu1, pid = word & Q_CPU, (word >> 16) & LS.PID_MASK
    start = None
    q = arena.u64
    if cpu1 == 0xFFFF:
        if pid == arena.owner_pid:
            start = arena.owner_starttime or None
    else:
        cpu = (cpu1 - 1) & ~IRQ_FLAG
        if cpu < int(arena.config.get("nr_cpus", 0)) and "cpu" in arena.sections:
            area = (arena.off("cpu") + cpu * CPU_AREA_SIZE) >> 3
            if q[area + (L.CPU_PID >> 3)] == pid:
                start = q[area + (L.CPU_STARTTIME >> 3)] or None
    return proc_alive(pid, start)


def _wake(arena: Arena, code: int) -> None:
    """Post node code-1's semaphore if it is blocked (or about to block)."""
    no = arena.off("qnodes") + (code - 1) * CACHE_LINE
    if arena.atomic.load64(no + N_STATE) == HALTED:
        QSTAT["kicks"] += 1
        arena.semaphore(code - 1).release()


def kick_sleepers(arena: Arena, slot_off: int, word: int) -> None:
    """After the owner left (or P was dropped): wake whoever is next, if it blocked.  P set
    in `word` (the value the lock had) means the pending waiter is next, else the head."""
    s = arena.atomic.load32(slot_off + LS.S_SLEEPERS)
    if s:
        code = s >> 16 if word & Q_PENDING else s & 0xFFFF
        if code:
            _wake(arena, code)


def reap_dead_waiter(arena: Arena, pid: int) -> tuple[list[int], list[int]]:
    """For a process known dead (the coordinator saw it exit): flag every MCS node it had
    queued ABANDONED and wake the node behind it, and drop the P bit of every lock it was
    the pending waiter of (waking that lock's head), so the queues move on at once.
    Locks it *held* are not touched (LockOwnerDead / force_unlock).  Returns (node
    indexes flagged, lock slots whose P was dropped).  Never call it for a live process."""
    if "qnodes" not in arena.sections or not arena.nr_sems:
        return [], []
    at, base = arena.atomic, arena.off("qnodes")
    nodes = []
    for i in range(arena.sections["qnodes"][1] // CACHE_LINE):
        no = base + i * CACHE_LINE
        o = at.load64(no + N_OWNER)
        if o and o & LS.PID_MASK == pid and at.load64(no + N_SLOT):
            at.fetch_or64(no + N_OWNER, ABANDONED)
            nx = at.load64(no + N_NEXT) & CODE_MASK
            if nx:
                arena.semaphore(nx - 1).release()
            nodes.append(i)
    slots = []
    for slot in range(min(arena.u64[L.H_NR_LOCKS >> 3], MAX_LOCKS)):
        off = LS.slot_off(arena, slot)
        holder = at.load64(off + LS.S_OWNER)
        if arena.u32[(off + LS.S_KIND) >> 2] != LS.LOCK_SPIN or (holder >> 16) & LS.PID_MASK != pid:
            continue
        w = at.load64(off)
        while w & Q_PENDING and (w >> 16) & LS.PID_MASK != pid:     # (it never took the lock)
            got = at.cas64(off, w, w & ~Q_PENDING)
            if got == w:
                at.cas64(off + LS.S_OWNER, holder, 0)
                kick_sleepers(arena, off, w & ~Q_PENDING)
                slots.append(slot)
                break
            w = got
    return nodes, slots


class _Waiter:
    """The slow path of one handle: per-handle constants bound once; methods, not hot."""

    def __init__(self, arena: Arena, off: int, slot: int, cpu: int, mine: int, name: str) -> None:
        self.arena, self.off, self.slot1, self.cpu, self.mine, self.name = arena, off, slot + 1, cpu, mine, name
        self.at = arena.atomic
        if "qnodes" not in arena.sections:
            raise LockError(f"qspinlock: arena {arena.name} has no qnodes section (made by an older AeroSync?)")
        if not posix_ipc.SEMAPHORE_TIMEOUT_SUPPORTED:
            raise LockError("qspinlock: this platform's POSIX semaphores have no timed wait (sem_timedwait)")
        self.qbase, qsize = arena.sections["qnodes"]
        self.nr_nodes = qsize // CACHE_LINE
        if arena.nr_sems < self.nr_nodes:
            raise LockError(f"qspinlock: {name}: arena {arena.name} has {arena.nr_sems} semaphores for "
                            f"{self.nr_nodes} MCS nodes (its config did not select the queued spinlock)")
        sim = arena.config.get("sim") or {}
        self.yields = bool(sim.get("oversubscribed", True))
        if self.nr_nodes >= 0xFFFF:
            raise LockError(f"qspinlock: {self.nr_nodes} MCS nodes do not fit the 16-bit sleepers fields")
        self.pref = node_index(arena, cpu)
        self.robust = L.robust_mode(arena.config)      # a dead owner's lock is taken over (sync/robust.py)

    # ------------------------------------------------------------------ nodes
    def no(self, code: int) -> int:
        return self.qbase + (code - 1) * CACHE_LINE

    def claim(self, queued: bool = True) -> int:
        """Claim a node (preferred first); returns its code, or 0 when every node is busy.
        A node not `queued` (the pending waiter's, only for its semaphore) keeps slot 0:
        nothing links to it, so it is reclaimable as soon as its process is gone."""
        at, me, pref = self.at, _my_owner(), self.pref
        if 0 <= pref < self.nr_nodes and at.cas64(self.qbase + pref * CACHE_LINE + N_OWNER, 0, me) == 0:
            return self._init(pref + 1, queued)             # the usual case: our context's node
        for i in range(self.nr_nodes):                      # a free node first ...
            no = self.qbase + i * CACHE_LINE
            if at.load64(no + N_OWNER) == 0 and at.cas64(no + N_OWNER, 0, me) == 0:
                return self._init(i + 1, queued)
        for i in range(self.nr_nodes):                      # ... else one a dead process left
            no = self.qbase + i * CACHE_LINE
            o = at.load64(no + N_OWNER)
            if self._reclaimable(no, o, me) and at.cas64(no + N_OWNER, o, me) == o:
                return self._init(i + 1, queued)
        return 0

    def _reclaimable(self, no: int, o: int, me: int) -> bool:
        """Node `no`, occupied by `o`, was left behind by a dead process and is in no
        queue: nobody links to it (N_SLOT 0: never queued, or a pending waiter's), or
        the lock it was queued on has no tail now.  A dead node still queued keeps its
        lock's tail set -- it is the tail, or a later node is, until its successor
        repairs it (freeing it) or a hand-over passes it -- and a node queued after the
        tail is read has a live occupant, hence the order: dead first, then the tail.
        This reclaims what a process killed between claiming its node and publishing
        it, or between taking the lock and freeing its node, left with N_SLOT set
        (before: leaked for good; enough kills used every node up)."""
        if not o or o == me or not _node_dead(o):
            return False
        slot1 = self.at.load64(no + N_SLOT)
        if not slot1:
            return True
        return slot1 <= MAX_LOCKS and not self.at.load64(LS.slot_off(self.arena, slot1 - 1)) & Q_TAIL

    def _init(self, code: int, queued: bool) -> int:
        at, no = self.at, self.no(code)
        seq = (at.load64(no + N_SEQ) + 1) & SEQ_MASK
        at.store64(no + N_SEQ, seq)
        at.store64(no + N_LOCKED, seq << 1)
        at.store64(no + N_NEXT, 0)
        at.store64(no + N_PREV, 0)
        at.store64(no + N_STATE, RUNNING)
        at.store64(no + N_SINCE, _mono())
        at.store64(no + N_SLOT, self.slot1 if queued else 0)
        return code

    def free(self, code: int) -> None:
        at, no = self.at, self.no(code)
        at.store64(no + N_SLOT, 0)
        at.store64(no + N_OWNER, 0)

    def abandon(self, code: int) -> None:
        """Leave the queue on an exception: the successor repairs around us (as if dead)."""
        QSTAT["abandons"] += 1
        at, no = self.at, self.no(code)
        at.fetch_or64(no + N_OWNER, ABANDONED)
        nx = at.load64(no + N_NEXT) & CODE_MASK
        if nx:
            self.arena.semaphore(nx - 1).release()

    def _register(self, shift: int, code: int) -> None:
        """Put `code` in our half of the slot's sleepers word (we are its only writer)."""
        at, off = self.at, self.off + LS.S_SLEEPERS
        s = at.load32(off)
        while (s >> shift) & 0xFFFF != code:
            got = at.cas32(off, s, (s & ~(0xFFFF << shift)) | code << shift)
            if got == s:
                break
            s = got

    def _unregister(self, shift: int, code: int) -> None:
        at, off = self.at, self.off + LS.S_SLEEPERS
        s = at.load32(off)
        while (s >> shift) & 0xFFFF == code:
            got = at.cas32(off, s, s & ~(0xFFFF << shift))
            if got == s:
                break
            s = got

    # ------------------------------------------------------------------ waiting
    def wait(self, poll: Callable[[], int], code_of: Callable[[], int], check: Callable[[bool], int],
             counts: list[int], register: Callable[[int], None] | None = None, halted: int = HALTED,
             early: Callable[[], bool] | None = None) -> int:
        """Spin, yield, then block on our node's semaphore until poll() returns >= 0.

        code_of() gives the node to block on (claiming one if needed; 0: none, sleep
        instead); register(code) runs before each block.  check(timed_out) runs after
        each wake and may return >= 0 to end the wait (a repair made us head) or raise.
        counts = [spins, yields, sleeps] for lock_stat; `halted` is the state we block in.
        early() true means spinning is pointless (the predecessor blocked itself: Linux's
        pv_wait_early): block without finishing the spin and yield phases.
        """
        hook = wait_hook()
        tries = SPIN_TRIES
        at = self.at
        while True:
            waited_early = False
            for i in range(tries):
                r = poll()
                if r >= 0:
                    counts[0] += i + 1
                    return r
                if hook is not None:
                    hook()
                if early is not None and not i & EARLY_MASK and early():
                    waited_early = True
                    break
            counts[0] += i + 1
            if tries == SPIN_TRIES and not waited_early and self.yields:
                for _ in range(YIELD_TRIES):
                    os.sched_yield()
                    counts[1] += 1
                    r = poll()
                    if r >= 0:
                        return r
                    if hook is not None:
                        hook()
            code = code_of()
            if not code:
                QSTAT["overflow"] += 1
                r = self._sleep_poll(poll, counts, hook)
                if r < 0:
                    r = check(True)                         # (a pending waiter without a node too)
                if r >= 0:
                    return r
                continue
            no = self.no(code)
            if register is not None:
                register(code)
            at.store64(no + N_STATE, halted)
            r = poll()
            if r >= 0:
                at.store64(no + N_STATE, RUNNING)
                return r
            QSTAT["blocks"] += 1
            counts[2] += 1
            timed_out = False
            try:
                self.arena.semaphore(code - 1).acquire(HOOK_BLOCK_S if hook is not None else BLOCK_S)
            except posix_ipc.BusyError:
                timed_out = True
                QSTAT["timeouts"] += 1
            finally:
                at.store64(no + N_STATE, RUNNING)
            hook = wait_hook()
            if hook is not None:
                hook()
            r = check(timed_out)
            if r >= 0:
                return r
            tries = RESPIN_TRIES

    def _sleep_poll(self, poll: Callable[[], int], counts: list[int], hook: Callable[[], None] | None) -> int:
        """No node free: back off with sleeps for a while (the one sleep-polling path)."""
        delay = OVERFLOW_SLEEP_S
        for _ in range(64):
            time.sleep(delay)
            counts[2] += 1
            r = poll()
            if r >= 0:
                return r
            if hook is not None:
                hook()
            delay = min(delay * 2, 1e-3)
        return -1

    # ------------------------------------------------------------------ the slow path
    def lock(self, w: int, counts: list[int], since_ns: int) -> int:
        """Wait for the lock (contended, first seen as `w`); returns the word we took it from."""
        at, off, mine = self.at, self.off, self.mine
        hook = wait_hook()
        polls = 0
        while True:
            if not w & (Q_PENDING | Q_TAIL):
                if not w & Q_LOCKED:                        # freed meanwhile, nobody waiting
                    got = at.cas64(off, w, mine)
                    if got == w:
                        return w
                    w = got
                    continue
                got = at.cas64(off, w, w | Q_PENDING)       # trylock || pending
                if got == w:
                    QSTAT["pending"] += 1
                    r = self.pending_wait(counts, since_ns)
                    if r != REVOKED:
                        return r
                    got = at.load64(off)                    # P was taken away: start again
                w = got
                continue
            if w & (Q_LOCKED | Q_TAIL):                     # (a queue head steals for itself)
                return self.queue(counts, since_ns)
            # Free, P set, nobody queued: the pending waiter was released to but has not
            # taken it.  Give it STEAL_NS, then take the lock instead (`_steal`).
            if _pc() - at.load64(off + S_FREED) > STEAL_NS:
                if self._steal(w):
                    return w
                w = at.load64(off)
                continue
            polls += 1
            if polls > SPIN_TRIES and self.yields:          # the next waiter may need our CPU
                os.sched_yield()
                counts[1] += 1
            else:
                counts[0] += 1
            if hook is not None:
                hook()
            w = at.load64(off)

    def _steal(self, w: int) -> bool:
        """Word `w` is free with P set and no tail, and its pending waiter has not taken
        it for STEAL_NS: take it, leaving P to its holder -- or, if nobody holds P (the
        holder is dead, or never named itself: killed between its P CAS and its
        S_OWNER store, a name it had all of the owner's hold time to write), revoke P
        instead, else P would stay set for good and every release go the slow path.
        Returns whether we took the lock."""
        at, off = self.at, self.off
        holder = at.load64(off + LS.S_OWNER)
        if not holder or not owner_alive(self.arena, holder):
            self._revoke(w)
            return False
        if at.cas64(off, w, Q_PENDING | self.mine) == w:
            QSTAT["steals"] += 1
            return True
        return False

    def pending_wait(self, counts: list[int], since_ns: int) -> int:
        """We hold P: wait for the owner to leave, then take the lock (P -> locked)."""
        at, off, mine = self.at, self.off, self.mine
        at.store64(off + LS.S_OWNER, mine)                  # who holds P, for the head's checks
        node = [0]
        taken = [False]

        def poll() -> int:
            w = at.load64(off)
            if not w & Q_PENDING:
                return REVOKED                              # we looked dead to the head
            if w & Q_LOCKED:
                return -1
            if at.cas64(off, w, (w & Q_TAIL) | mine) == w:
                taken[0] = True
                return w
            return -1

        def code_of() -> int:
            if not node[0]:
                node[0] = self.claim(queued=False)
            return node[0]

        next_check = [_pc() + int(LIVENESS_S * 1e9)]

        def check(timed_out: bool) -> int:
            w = at.load64(off)
            if not w & Q_PENDING:
                return REVOKED
            now = _pc()
            if w & Q_LOCKED and now >= next_check[0]:
                next_check[0] = now + int(LIVENESS_S * 1e9)
                if not self.robust and not owner_alive(self.arena, w):
                    cpu, pid = LS.decode_owner(w)
                    raise LockOwnerDead(self.name, cpu, pid, (now - since_ns) / 1e9)
            return -1

        def register(code: int) -> None:
            self._register(16, code)

        try:
            r = self.wait(poll, code_of, check, counts, register)
        except BaseException:
            if not taken[0]:
                self._drop_pending()
            raise
        finally:
            at.cas64(off + LS.S_OWNER, mine, 0)
            if node[0]:
                self._unregister(16, node[0])
                self.free(node[0])
        return r

    def _drop_pending(self) -> None:
        """Give P back (leaving on an exception) and wake the head, which waits for it."""
        at, off = self.at, self.off
        w = at.load64(off)
        while w & Q_PENDING:
            got = at.cas64(off, w, w & ~Q_PENDING)
            if got == w:
                kick_sleepers(self.arena, off, w & ~Q_PENDING)
                return
            w = got

    def queue(self, counts: list[int], since_ns: int) -> int:
        """The MCS queue: returns the word we took the lock from."""
        at, off, mine = self.at, self.off, self.mine
        code = self.claim()
        while not code:
            r = self.overflow(counts, since_ns)
            if r != REQUEUE:
                return r
            code = self.claim()
        QSTAT["queued"] += 1
        no = self.no(code)
        seq = at.load64(no + N_SEQ)
        taken = published = False
        try:
            w = at.load64(off)
            while True:
                if not w & (_BUSY | Q_TAIL):                # freed meanwhile: Linux's last trylock
                    got = at.cas64(off, w, mine)
                    if got == w:
                        self.free(code)
                        return w
                    w = got
                    continue
                prev = w >> Q_TAIL_SHIFT
                at.store64(no + N_PREV, prev)               # before the CAS: right if it lands
                got = at.cas64(off, w, (w & ~Q_TAIL) | code << Q_TAIL_SHIFT)
                if got == w:
                    break
                w = got
            published = True
            if prev:
                po = self.no(prev)
                at.store64(po + N_NEXT, code | seq << 24)   # link; wake prev if it waits for it
                if at.load64(po + N_STATE) == LINKWAIT:
                    self.arena.semaphore(prev - 1).release()
                self.wait_node(code, counts)
                at.store64(no + N_PREV, 0)                  # head now: nobody before us
            w = self.head_wait(code, counts, since_ns)
            taken = True
            if w >> Q_TAIL_SHIFT != code:
                self.hand_over(code, counts)
        except BaseException:
            if taken:                                       # never raise out of lock() holding it
                self.unlock_slow(at.load64(off))
            if published:
                self.abandon(code)
            else:
                self.free(code)                             # nobody saw it
            raise
        self.free(code)
        return w

    def wait_node(self, code: int, counts: list[int]) -> None:
        """Wait for our grant (pv_wait_node); repairs the queue if the predecessor died."""
        at, no = self.at, self.no(code)

        def poll() -> int:
            return 1 if at.load64(no + N_LOCKED) & 1 else -1

        next_check = [_pc() + int(LIVENESS_S * 1e9)]

        def check(timed_out: bool) -> int:
            for _ in range(self.nr_nodes):                  # a run of dead predecessors in one go
                if at.load64(no + N_LOCKED) & 1:
                    return 1
                prev = at.load64(no + N_PREV)
                o = at.load64(self.no(prev) + N_OWNER)
                if not o & ABANDONED:
                    now = _pc()
                    if now < next_check[0]:
                        return -1
                    next_check[0] = now + int(LIVENESS_S * 1e9)
                    if not _node_dead(o):
                        return -1
                if self.repair(code, prev):
                    return 1
                if at.load64(no + N_PREV) == prev:
                    return -1                               # the splice lost a race: next time
                next_check[0] = 0                           # spliced: look at the new one now
            return -1

        def early() -> bool:
            return at.load64(self.no(at.load64(no + N_PREV) or code) + N_STATE) == HALTED

        if check(False) < 0:                                # an abandoned predecessor: repair now
            self.wait(poll, lambda: code, check, counts, early=early)

    def repair(self, code: int, x: int) -> bool:
        """Predecessor x is gone: become the head (True) or splice in behind its
        predecessor y (False, keep waiting)."""
        QSTAT["repairs"] += 1
        at, no, xo = self.at, self.no(code), self.no(x)
        y = at.load64(xo + N_PREV)
        head = False
        if not y:
            head = True                                     # x was first: it was the head
        else:
            yo = self.no(y)
            v = at.load64(yo + N_NEXT)                      # read before x's grant (see below)
            if at.load64(xo + N_LOCKED) & 1 or v & GRANTED:
                head = True                                 # y handed over to x: x's turn is ours
            elif v & CODE_MASK in (0, x):
                seq = at.load64(no + N_SEQ)
                at.store64(no + N_PREV, y)
                if at.cas64(yo + N_NEXT, v, code | seq << 24) != v:
                    at.store64(no + N_PREV, x)
                    return False                            # y moved: look again next time
            else:
                return False
        # A grant to x after our read of v would have shown in x's locked word (y writes it
        # before reusing its node), so v was current; nobody references x any more.
        at.store64(xo + N_SLOT, 0)
        o = at.load64(xo + N_OWNER)
        at.cas64(xo + N_OWNER, o, 0)
        return head

    def head_wait(self, code: int, counts: list[int], since_ns: int) -> int:
        """At the head: wait for no owner and no P, then take the lock (pv_wait_head_or_lock)."""
        at, off, mine = self.at, self.off, self.mine
        tail = code << Q_TAIL_SHIFT

        def poll() -> int:
            w = at.load64(off)
            if w & _BUSY and (w & Q_LOCKED or _pc() - at.load64(off + S_FREED) <= STEAL_NS):
                return -1                                   # (a stalled pending waiter keeps its P)
            new = (w & Q_PENDING) | (mine if w & Q_TAIL == tail else (w & Q_TAIL) | mine)
            if at.cas64(off, w, new) != w:
                return -1
            if w & Q_PENDING:
                QSTAT["steals"] += 1
            return w

        pend = [0, 0]                                       # P seen on a free word: since, holder
        next_check = [_pc() + int(LIVENESS_S * 1e9)]

        def check(timed_out: bool) -> int:
            now = _pc()
            if now < next_check[0]:
                return -1
            next_check[0] = now + int(LIVENESS_S * 1e9)
            w = at.load64(off)
            if w & Q_LOCKED:
                pend[0] = 0
                if not self.robust and not owner_alive(self.arena, w):
                    cpu, pid = LS.decode_owner(w)
                    raise LockOwnerDead(self.name, cpu, pid, (now - since_ns) / 1e9)
            elif w & Q_PENDING:
                holder = at.load64(off + LS.S_OWNER)
                if not pend[0] or pend[1] != holder:
                    pend[0], pend[1] = now, holder
                elif now - pend[0] >= OWNER_CHECK_S * 1e9 and (not holder or not owner_alive(self.arena, holder)):
                    self._revoke(w)
            return -1

        try:
            return self.wait(poll, lambda: code, check, counts, lambda c: self._register(0, c))
        finally:
            self._unregister(0, code)

    def _revoke(self, w: int) -> None:
        """The pending waiter is dead (or never said who it is): take P away."""
        at, off = self.at, self.off
        while w & Q_PENDING and not w & Q_LOCKED:
            got = at.cas64(off, w, w & ~Q_PENDING)
            if got == w:
                QSTAT["revokes"] += 1
                at.store64(off + LS.S_OWNER, 0)
                return
            w = got

    def hand_over(self, code: int, counts: list[int]) -> None:
        """We took the lock and someone queued behind us: grant it the head (MCS unlock)."""
        at, off, no = self.at, self.off, self.no(code)
        link = at.load64(no + N_NEXT)
        if not link:
            next_check = [_pc() + int(LIVENESS_S * 1e9)]

            def poll() -> int:
                v = at.load64(no + N_NEXT)
                if v:
                    return v
                return 0 if at.load64(off) >> Q_TAIL_SHIFT == 0 else -1   # the tail was dropped

            def check(timed_out: bool) -> int:
                now = _pc()
                if now < next_check[0]:
                    return -1
                next_check[0] = now + int(LIVENESS_S * 1e9)
                return 0 if self._drop_dead_tail(code) else -1

            link = self.wait(poll, lambda: code, check, counts, halted=LINKWAIT)
            if not link:
                return
        while True:
            got = at.cas64(no + N_NEXT, link, link | GRANTED)   # commit (a splice may race)
            if got == link:
                break
            link = got
        succ, sseq = link & CODE_MASK, (link >> 24) & SEQ_MASK
        so = self.no(succ)
        at.cas64(so + N_LOCKED, sseq << 1, sseq << 1 | 1)
        if at.load64(so + N_STATE) == HALTED:
            QSTAT["kicks"] += 1
            self.arena.semaphore(succ - 1).release()

    def _drop_dead_tail(self, code: int) -> bool:
        """The tail right behind us died before linking: take it off the word."""
        at, off = self.at, self.off
        w = at.load64(off)
        t = w >> Q_TAIL_SHIFT
        if not t or t == code:
            return False
        to = self.no(t)
        o = at.load64(to + N_OWNER)
        if at.load64(to + N_PREV) != code or at.load64(to + N_SLOT) != self.slot1 or not _node_dead(o):
            return False
        while w >> Q_TAIL_SHIFT == t:
            got = at.cas64(off, w, w & ~Q_TAIL)
            if got == w:
                QSTAT["repairs"] += 1
                at.store64(to + N_SLOT, 0)
                at.cas64(to + N_OWNER, o, 0)
                return True
            w = got
        return False

    def overflow(self, counts: list[int], since_ns: int) -> int:
        """Every node busy: spin on the word for a free, unqueued lock (Linux: the same
        when a CPU's nesting exceeds its nodes); returns the word we took, or REQUEUE
        when a node may be free again (then the caller claims and queues).  Nodes run
        out when dead processes left queued ones behind, and then there may be no queue
        head or pending waiter left to notice a dead party, so at most every LIVENESS_S
        this waiter does their checks itself: a dead owner (LockOwnerDead, as they raise
        it), a dead or unnamed pending waiter (`_steal`), a queue made only of dead nodes
        (`_drop_dead_queue`) -- else it waits for a word that never clears (seen in
        test_chaos_kills_never_break_exclusion_or_progress: ten dead nodes queued; then
        a dead owner with every live waiter here, 30 s without an acquisition)."""
        at, off, mine = self.at, self.off, self.mine
        next_check = [_pc() + int(LIVENESS_S * 1e9)]

        def poll() -> int:
            w = at.load64(off)
            if not w & (_BUSY | Q_TAIL):
                return w if at.cas64(off, w, mine) == w else -1
            now = _pc()
            if now < next_check[0]:
                return -1
            next_check[0] = now + int(LIVENESS_S * 1e9)
            if w & Q_LOCKED:
                if not self.robust and not owner_alive(self.arena, w):
                    cpu, pid = LS.decode_owner(w)
                    raise LockOwnerDead(self.name, cpu, pid, (now - since_ns) / 1e9)
            elif not w & Q_TAIL and now - at.load64(off + S_FREED) > STEAL_NS and self._steal(w):
                return w
            if w & Q_TAIL:
                self._drop_dead_queue(w)
            return REQUEUE if self._node_free() else -1

        return self.wait(poll, lambda: 0, lambda t: -1, counts)

    def _node_free(self) -> bool:
        """Whether claim() could find a node now (a read-only scan; claim decides)."""
        at, me = self.at, _my_owner()
        for i in range(self.nr_nodes):
            no = self.qbase + i * CACHE_LINE
            o = at.load64(no + N_OWNER)
            if not o or self._reclaimable(no, o, me):
                return True
        return False

    def _drop_dead_queue(self, w: int) -> bool:
        """The queue behind word `w` is all dead -- every node queued on this lock (its
        N_SLOT) has a dead or abandoned occupant, the tail among them: nobody waits in it
        and nobody can repair it -- so take the tail off the word with a CAS (an arrival
        that swapped the tail first is live and repairs around the dead itself), then
        free those nodes.  The queue is judged by its nodes, not its N_PREV chain: a
        dead node's N_PREV may name a node reused since (a cycle was seen).  Returns
        whether it did."""
        at, off, slot1 = self.at, self.off, self.slot1
        dead = []
        for code in range(1, self.nr_nodes + 1):
            no = self.no(code)
            if at.load64(no + N_SLOT) != slot1:
                continue
            o = at.load64(no + N_OWNER)
            if not _node_dead(o):
                return False
            dead.append((code, o))
        if all(code != w >> Q_TAIL_SHIFT for code, _ in dead) or at.cas64(off, w, w & ~Q_TAIL) != w:
            return False
        QSTAT["repairs"] += 1
        for code, o in dead:
            no = self.no(code)
            at.store64(no + N_SLOT, 0)
            at.cas64(no + N_OWNER, o, 0)
        return True

    def unlock_slow(self, w: int) -> None:
        """Release with waiters present: clear the owner, keep P and the tail, wake the next.
        The time goes in the slot first, so a waiter that sees the lock free never reads an
        older release's time (the steal rule, `lock`)."""
        at, off, mine = self.at, self.off, self.mine
        at.store64(off + S_FREED, _pc())
        while True:
            if w & Q_OWNER != mine:
                raise LockError(f"spin_unlock: {self.name} released by cpu{self.cpu} pid {mine >> 16}, "
                                f"owner word {w:#x}")
            got = at.cas64(off, w, w & ~Q_LOCKED)
            if got == w:
                break
            w = got
        if w & (Q_PENDING | Q_TAIL):
            kick_sleepers(self.arena, off, w)


def make_qspinlock(lock, stat: bool, mask: int):
    """acquire, release, held_by_me closures of a queued spinlock handle (see SpinLock._make)."""
    arena = lock.arena
    at = arena.atomic
    cas, load, store, fa = at.cas64, at.load64, at.store64, at.fetch_add64
    off, name, cpu1 = lock.off, lock.name, lock.cpu + 1
    pid = os.getpid()
    if pid > LS.PID_MASK:
        raise LockError(f"qspinlock: pid {pid} does not fit the lock word's 24-bit owner field")
    mine = (pid << 16) | cpu1
    idle = cpu1
    w8 = _Waiter(arena, off, lock.slot, lock.cpu, mine, name)
    acq_off = off + LS.S_ACQ
    hold_total, hold_samples = off + LS.S_HOLD_TOTAL, off + LS.S_HOLD_SAMPLES
    hold_max, hold_min = off + LS.S_HOLD_MAX, off + LS.S_HOLD_MIN
    pc = _pc
    t0 = 0
    wait_i = -1
    if "cpu" in arena.sections and lock.cpu < int(arena.config.get("nr_cpus", 0)):
        wait_i = (arena.off("cpu") + lock.cpu * CPU_AREA_SIZE + L.CPU_WAITING_ON) >> 3
    q, slot1 = arena.u64, lock.slot + 1
    unlock_slow = w8.unlock_slow

    def acquire_slow(old: int) -> None:
        if old & Q_OWNER == mine:
            raise LockError(f"spin_lock: recursive acquire of {name} by cpu{cpu1 - 1} pid {pid}")
        if not old & ~Q_CPU:                                # free, nobody waiting, last elsewhere
            if cas(off, old, mine) == old:
                if stat and old:
                    fa(off + LS.S_ACQ_BOUNCE, 1)
                return
            old = load(off)
        start = pc()
        fa(off + LS.S_WAITERS, 1)
        if wait_i >= 0:
            q[wait_i + 1] = time.monotonic_ns()
            q[wait_i] = slot1
        counts = [0, 0, 0]
        try:
            got = w8.lock(old, counts, start)
        finally:
            fa(off + LS.S_WAITERS, (1 << 64) - 1)
            if wait_i >= 0:
                q[wait_i] = 0
        if not stat:
            return
        wait = pc() - start
        # We hold the lock now: the figures below are ours to update.
        fa(off + LS.S_CON, 1)
        if (old & Q_CPU) != cpu1:
            fa(off + LS.S_CON_BOUNCE, 1)
        if got & Q_CPU and (got & Q_CPU) != cpu1:
            fa(off + LS.S_ACQ_BOUNCE, 1)
        fa(off + LS.S_WAIT_TOTAL, wait)
        if wait > load(off + LS.S_WAIT_MAX):
            store(off + LS.S_WAIT_MAX, wait)
        if wait < load(off + LS.S_WAIT_MIN):
            store(off + LS.S_WAIT_MIN, wait)
        fa(off + LS.S_SPINS, counts[0])
        if counts[1]:
            fa(off + LS.S_YIELDS, counts[1])
        if counts[2]:
            fa(off + LS.S_SLEEPS, counts[2])

    if not stat:
        def acquire() -> None:
            old = cas(off, idle, mine)
            if old != idle:
                acquire_slow(old)

        def release() -> None:
            old = cas(off, mine, idle)
            if old != mine:
                unlock_slow(old)
    else:
        def acquire() -> None:
            nonlocal t0
            old = cas(off, idle, mine)
            if old != idle:
                acquire_slow(old)
            t0 = 0 if fa(acq_off, 1) & mask else pc()

        def release() -> None:
            nonlocal t0
            if t0:
                h = pc() - t0
                t0 = 0
                fa(hold_total, h)
                fa(hold_samples, 1)
                if h > load(hold_max):
                    store(hold_max, h)
                if h < load(hold_min):
                    store(hold_min, h)
            old = cas(off, mine, idle)
            if old != mine:
                unlock_slow(old)

    def held_by_me() -> bool:
        return load(off) & Q_OWNER == mine

    return acquire, release, held_by_me
