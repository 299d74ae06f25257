"""The queued spinlock (sync/qspinlock.py): FIFO hand-over across processes, the pending
bit, oversubscription without sleep-polling, dead and abandoned waiters and owners, the
wait hook, and per-class selection through SpinLock.  (Mutual exclusion, ownership,
lock_stat and lockdep: tests/test_sync.py runs its spinlock tests for both kinds.)"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.errors import LockError, LockOwnerDead
from aerosync.sync import lockstat as LS
from aerosync.sync import qspinlock as Q
from aerosync.sync.rwlock import RWLock
from aerosync.sync.spinlock import CPU_COORD, SPIN_TRIES, YIELD_TRIES, SpinLock, force_unlock, locks_held_by
from aerosync.sync.waithook import set_wait_hook
from tests import helpers
from tests.helpers import R_ABANDONS, R_DONE, R_PENDING, R_QUEUED, R_RAISED, R_REPAIRS, R_STEALS, Sequencer

QSPIN = {"spinlock": "qspinlock"}
EXTRA = [L.SectionSpec("data", 16384)]
SEQ, FLAG, HELD, LOG, REPORT = 0, 64, 128, 192, 4096     # offsets in the data section


def _until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.0005)


class Line:
    """A lock, actors spawned into its queue in a forced order, and their reports."""

    def __init__(self, make_arena, spawn, nr_cpus: int, **cfg) -> None:
        self.a = make_arena(nr_cpus=nr_cpus, extra=EXTRA, locks=QSPIN, **cfg)
        self.slot = LS.lock_alloc(self.a, "test_qlock", "line")
        self.off = LS.slot_off(self.a, self.slot)
        self.data = self.a.off("data")
        self.seq = Sequencer(self.a, self.data + SEQ)
        self.spawn = spawn
        self.procs: dict[int, object] = {}
        self.turn = 0
        self.holder = SpinLock(self.a, self.slot, CPU_COORD)

    def word(self) -> int:
        return self.a.atomic.load64(self.off)

    def arrive(self, cpu: int, in_line: bool = True, **kw) -> None:
        """Let `cpu` go, then (in_line) wait until it is in line: pending if the lock was
        only held, else the queue's tail."""
        self.turn += 1
        w = self.word()
        p = self.spawn(helpers.qlock_in_turn, self.a.name, self.slot, cpu, self.turn, self.data + SEQ,
                       self.data + LOG, self.data + REPORT, kw.get("raise_off", 0), kw.get("block_s", 0.0),
                       kw.get("steal_ns", helpers.NO_STEAL))
        self.procs[cpu] = p
        self.seq.set_turn(self.turn)
        if not in_line:
            return
        if not w & (Q.Q_PENDING | Q.Q_TAIL):
            _until(lambda: self.word() & Q.Q_PENDING and self.a.atomic.load64(self.off + LS.S_OWNER) >> 16 == p.pid,
                   f"cpu{cpu} to take the pending bit")
        else:
            code = Q.node_index(self.a, cpu) + 1
            _until(lambda: self.word() >> Q.Q_TAIL_SHIFT == code, f"cpu{cpu} to queue")

    def log(self) -> list[int]:
        n = self.a.atomic.load64(self.data + LOG)
        return [self.a.atomic.load64(self.data + LOG + 8 * (1 + i)) - 1 for i in range(n)]

    def report(self, cpu: int, field: int) -> int:
        return self.a.atomic.load64(self.data + REPORT + 128 * cpu + 8 * field)

    def finish(self, dead: tuple[int, ...] = ()) -> None:
        for cpu, p in self.procs.items():
            p.join(60)
            if cpu not in dead:
                assert p.exitcode == 0 and self.report(cpu, R_DONE), f"cpu{cpu} exit {p.exitcode}"


# ---------------------------------------------------------------------------- exclusion, order
def test_Q2_fifo_hand_over_in_order_of_arrival(make_arena, spawn) -> None:
    """Actors arrive one at a time (the sequencer) while the lock is held: the first takes
    the pending bit, the rest queue; they get the lock exactly in that order."""
    n = 5
    line = Line(make_arena, spawn, n)
    line.holder.acquire()
    order = [3, 0, 4, 1, 2]
    for c in order:
        line.arrive(c, block_s=60.0)              # a lost wake-up would hang, not just slow
    assert line.word() & Q.Q_PENDING
    line.holder.release()
    line.finish()
    assert line.log() == order
    assert line.report(3, R_PENDING) == 1 and line.report(3, R_QUEUED) == 0
    assert all(line.report(c, R_QUEUED) == 1 for c in order[1:])
    st = LS.snapshot(line.a)[line.slot]
    assert st.contentions == n and st.acquisitions == n + 1
    assert not line.word() & (Q.Q_LOCKED | Q.Q_PENDING | Q.Q_TAIL)


@pytest.mark.parametrize("stealer", ["newcomer", "head"])
def test_stalled_next_waiter_is_stolen_from_then_served(make_arena, spawn, stealer: str) -> None:
    """Lock-waiter preemption (Linux's PV qspinlock steals for the same reason): the
    pending waiter is stopped (SIGSTOP) when the lock is released to it.  After STEAL_NS
    a newcomer (nobody queued) or the queue head takes the free lock anyway, leaving P
    set; the stopped waiter keeps its place and gets the lock when it runs again."""
    line = Line(make_arena, spawn, 2)
    line.holder.acquire()
    line.arrive(0, block_s=60.0)                  # takes P
    victim = line.procs[0].pid
    os.kill(victim, signal.SIGSTOP)
    _until(lambda: Path(f"/proc/{victim}/stat").read_text().rpartition(")")[2].split()[0] == "T", "cpu0 to stop")
    if stealer == "head":
        line.arrive(1, steal_ns=Q.STEAL_NS)       # queued behind P before the release
        line.holder.release()
    else:
        line.holder.release()
        line.arrive(1, in_line=False, steal_ns=Q.STEAL_NS)      # it never queues: it steals
    _until(lambda: line.log() == [1], f"cpu1 to steal the lock (log {line.log()})")
    assert line.word() & Q.Q_PENDING                # the stopped waiter still holds its place
    os.kill(victim, signal.SIGCONT)
    line.finish()
    assert line.log() == [1, 0]
    assert line.report(1, R_STEALS) == 1 and line.report(0, R_STEALS) == 0
    assert not line.word() & (Q.Q_LOCKED | Q.Q_PENDING | Q.Q_TAIL)


def test_pending_bit_path_blocks_and_is_woken_by_the_release(make_arena, spawn) -> None:
    """One waiter: it takes P (no MCS node queued), blocks registered in the sleepers word,
    and the release posts it -- with a 60 s block timeout a lost wake-up would hang here."""
    line = Line(make_arena, spawn, 1)
    line.holder.acquire()
    line.arrive(0, block_s=60.0)
    assert line.word() >> Q.Q_TAIL_SHIFT == 0
    code = Q.node_index(line.a, 0) + 1
    _until(lambda: line.a.atomic.load32(line.off + LS.S_SLEEPERS) >> 16 == code, "the pending waiter to block")
    no = line.a.off("qnodes") + (code - 1) * 64
    _until(lambda: line.a.atomic.load64(no + Q.N_STATE) == Q.HALTED, "HALTED")
    line.holder.release()
    line.finish()
    assert line.log() == [0]
    assert line.report(0, R_PENDING) == 1 and line.report(0, R_QUEUED) == 0
    assert line.a.atomic.load32(line.off + LS.S_SLEEPERS) == 0
    assert line.a.atomic.load64(line.off + LS.S_OWNER) == 0


def test_oversubscribed_completes_without_sleep_polling(make_arena, spawn, soak: bool) -> None:
    """Four processes on one host CPU: the holder is preempted all the time, waiters must
    yield or block, never sleep-poll (every time.sleep of the lock is counted)."""
    n = 4
    a = make_arena(nr_cpus=n, extra=EXTRA, locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "oversub")
    word, start, rep = a.off("data"), a.off("data") + 64, a.off("data") + REPORT
    iters = 100_000 if soak else 20_000          # several time slices each: preempted holders
    host = sorted(os.sched_getaffinity(0))[0]
    procs = [spawn(helpers.lock_increment_pinned, a.name, slot, c, iters, word, start, host, rep) for c in range(n)]
    _until(lambda: a.atomic.load64(start) >= n, "children to start")
    a.atomic.store64(start, 1 << 32)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert a.u64[word >> 3] == n * iters
    assert [a.atomic.load64(rep + 64 * c) for c in range(n)] == [1] * n      # reported, 0 sleeps
    st = LS.snapshot(a)[slot]
    assert st.contentions > 0 and st.yields + st.sleeps > 0


# ---------------------------------------------------------------------------- dead parties
@pytest.mark.parametrize("victim", ["head", "middle", "tail"])
def test_dead_waiter_queue_repaired(make_arena, spawn, victim: str) -> None:
    """P pending, then A, X, B queued; X is SIGKILLed while it waits.  Whoever follows X
    repairs the queue (X was the head: B becomes head; X in the middle: B splices in
    behind A, or takes X's grant); the order of the living is kept.  With X the tail, the
    next acquirer repairs behind it -- or, when X died between its tail CAS and linking
    behind A, A drops it from the tail at its hand-over (one repair either way: counted
    in this process, or in A's report)."""
    line = Line(make_arena, spawn, 5)
    line.holder.acquire()
    p, a_, x, b = 0, 1, 2, 3
    line.arrive(p)
    if victim != "head":
        line.arrive(a_)
    line.arrive(x)
    if victim != "tail":
        line.arrive(b)
    code_x = Q.node_index(line.a, x) + 1
    line.procs[x].kill()
    line.procs[x].join(10)
    line.holder.release()
    expect = [p] + ([a_] if victim != "head" else []) + ([b] if victim != "tail" else [])
    _until(lambda: len(line.log()) == len(expect), f"the living to get the lock (log {line.log()})")
    repairs0 = Q.QSTAT["repairs"]
    if victim == "tail":                          # a later acquirer queues behind the dead tail
        line.holder.acquire()
        line.holder.release()
    line.finish(dead=(x,))
    assert line.log() == expect
    if victim == "tail":
        assert Q.QSTAT["repairs"] - repairs0 + line.report(a_, R_REPAIRS) == 1
    else:
        assert line.report(b, R_REPAIRS) >= 1
    no = line.a.off("qnodes") + (code_x - 1) * 64
    assert line.a.atomic.load64(no + Q.N_OWNER) == 0 and line.a.atomic.load64(no + Q.N_SLOT) == 0   # freed
    assert not line.word() & (Q.Q_LOCKED | Q.Q_PENDING | Q.Q_TAIL)


def test_waiter_leaving_on_exception_is_skipped_at_once(make_arena, spawn) -> None:
    """A queued waiter whose wait hook raises leaves the queue (its node ABANDONED, its
    successor woken): the successor repairs without waiting for a liveness check."""
    line = Line(make_arena, spawn, 4)
    raise_off = line.data + FLAG
    line.holder.acquire()
    line.arrive(0)
    line.arrive(1, raise_off=raise_off)
    line.arrive(2, block_s=60.0)                  # no timeout: only the abandon's wake-up helps
    code2 = Q.node_index(line.a, 2) + 1
    no2 = line.a.off("qnodes") + (code2 - 1) * 64
    _until(lambda: line.a.atomic.load64(no2 + Q.N_STATE) == Q.HALTED, "cpu2 to block")
    line.a.atomic.store64(raise_off, 1)
    _until(lambda: line.report(1, R_DONE), "cpu1 to leave")
    line.holder.release()
    line.finish()
    assert line.report(1, R_RAISED) == 1 and line.report(1, R_ABANDONS) == 1
    assert line.log() == [0, 2] and line.report(2, R_REPAIRS) == 1


def test_dead_owner_raises_then_force_unlock(make_arena, spawn) -> None:
    """The owner dies holding the lock: the waiter raises LockOwnerDead naming lock, owner
    and time (robust-mutex semantics, as the TAS lock); force_unlock frees it, keeping
    the queue bits, and the lock works again."""
    a = make_arena(nr_cpus=2, extra=EXTRA, locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "victim")
    flag = a.off("data") + FLAG
    p = spawn(helpers.hold_lock_then, a.name, slot, 1, flag, "die", 0)
    _until(lambda: a.atomic.load64(flag), "the owner to take the lock")
    p.join(30)
    assert [(s, c) for s, _, c in locks_held_by(a, p.pid)] == [(slot, 1)]
    lk = SpinLock(a, slot, 0)
    assert lk.owner() == (1, p.pid) and lk.is_locked()
    with pytest.raises(LockOwnerDead) as ei:
        lk.acquire()
    assert ei.value.pid == p.pid and ei.value.cpu == 1
    assert "test_qlock[victim]" in str(ei.value) and "held for" in str(ei.value)
    w = a.atomic.load64(LS.slot_off(a, slot))
    assert not w & Q.Q_PENDING                     # the pending waiter gave P back
    assert force_unlock(a, slot, w)
    assert not force_unlock(a, slot, w)            # exactly one winner
    lk.acquire()
    assert lk.held_by_me() and lk.owner() == (0, os.getpid())
    lk.release()


def test_recursive_and_foreign_release_refused(make_arena) -> None:
    a = make_arena(locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "own")
    l0, l1 = SpinLock(a, slot, 0), SpinLock(a, slot, 1)
    l0.acquire()
    with pytest.raises(LockError, match="recursive"):
        l0.acquire()
    with pytest.raises(LockError, match="released by cpu1"):
        l1.release()
    l0.assert_held()
    l0.release()
    with pytest.raises(LockError):
        l0.release()


def test_a_queue_of_only_dead_nodes_is_dropped_by_a_waiter_without_a_node(make_arena) -> None:
    """Every MCS node queued on the lock by processes that died (the chaos test left ten,
    their N_PREV links a cycle through reused nodes) and the lock free: a new waiter
    finds no node to claim (overflow) and nobody is left to repair the queue.  It drops
    the dead queue and takes the lock -- it used to wait for a word that never cleared."""
    import threading

    a = make_arena(locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "deadq")
    pid = os.fork()
    if pid == 0:                                          # pragma: no cover (the child)
        os._exit(0)
    os.waitpid(pid, 0)                                    # reaped: a dead occupant
    at, base = a.atomic, a.off("qnodes")
    n = a.sections["qnodes"][1] // 64
    for code in range(1, n + 1):
        no = base + (code - 1) * 64
        at.store64(no + Q.N_SLOT, slot + 1)
        at.store64(no + Q.N_OWNER, pid)
        at.store64(no + Q.N_PREV, code % n + 1)           # a cycle, as seen
        at.store64(no + Q.N_LOCKED, 0)
    off = LS.slot_off(a, slot)
    at.store64(off, 3 << Q.Q_TAIL_SHIFT)                  # free, tail = a dead node
    lk = SpinLock(a, slot, 0)
    got: list[bool] = []
    t = threading.Thread(target=lambda: (lk.acquire(), got.append(True), lk.release()), daemon=True)
    t.start()
    t.join(30)
    assert got == [True], "the waiter without a node never got the lock"
    assert not at.load64(off) & Q.Q_TAIL
    assert all(not at.load64(base + i * 64 + Q.N_SLOT) for i in range(n)), "dead nodes not freed"


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:                                          # pragma: no cover (the child)
        os._exit(0)
    os.waitpid(pid, 0)                                    # reaped: gone for good
    return pid


def _busy_nodes(a: Arena, owner: int, slot1: int = 0) -> list[int]:
    """Give every MCS node to `owner` (queued on lock slot1-1 when slot1): returns their offsets."""
    at, base = a.atomic, a.off("qnodes")
    nodes = [base + i * 64 for i in range(a.sections["qnodes"][1] // 64)]
    for no in nodes:
        at.store64(no + Q.N_OWNER, owner)
        at.store64(no + Q.N_SLOT, slot1)
    return nodes


def _acquire_in_thread(lk: SpinLock) -> Callable[[float], list]:
    """Run lk.acquire() + release() in a thread; returns join(timeout) -> [True] or
    [the exception], [] while it still waits."""
    import threading

    out: list = []

    def body() -> None:
        try:
            lk.acquire()
        except Exception as e:                            # the test looks at it
            out.append(e)
            return
        out.append(True)
        lk.release()

    t = threading.Thread(target=body, daemon=True)
    t.start()

    def join(timeout: float) -> list:
        t.join(timeout)
        return out
    return join


def test_nodes_a_dead_process_left_claimed_are_reclaimed_once_their_lock_has_no_queue(make_arena) -> None:
    """A process killed between claiming its node and publishing it, or between taking
    the lock and freeing its node, leaves the node with N_SLOT set and nobody to free
    it (no queue reaches it).  Enough kills used every node up and every waiter went to
    the no-node fallback.  A node whose lock has no tail is in no queue: claim() takes it."""
    a = make_arena(locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "leaked")
    nodes = _busy_nodes(a, _dead_pid(), slot + 1)         # left claimed; the lock's word has no tail
    holder, waiter = SpinLock(a, slot, 1), SpinLock(a, slot, 0)
    holder.acquire()
    off = LS.slot_off(a, slot)
    a.atomic.fetch_or64(off, Q.Q_PENDING)                 # a live pending waiter (named): the next one queues
    a.atomic.store64(off + LS.S_OWNER, a.atomic.load64(off) & Q.Q_OWNER)
    overflow, queued = Q.QSTAT["overflow"], Q.QSTAT["queued"]
    join = _acquire_in_thread(waiter)
    _until(lambda: a.atomic.load64(off) & Q.Q_TAIL, "the waiter to queue", 30)
    holder.release()
    assert join(30) == [True]
    assert Q.QSTAT["queued"] > queued and Q.QSTAT["overflow"] == overflow, "it went without a node"
    assert sum(not a.atomic.load64(no + Q.N_OWNER) for no in nodes) == 1      # the one it took, freed


@pytest.mark.parametrize("word", ["dead_owner", "unnamed_pending"])
def test_waiter_without_a_node_does_the_liveness_checks(make_arena, word: str) -> None:
    """Every node busy (here: claimed by this process, as another thread's), so the
    waiter has no node and there may be no queue head or pending waiter left to notice a
    dead party.  It must notice itself: a dead owner raises LockOwnerDead, and a P bit
    nobody holds (its waiter killed between its P CAS and naming itself) is revoked.
    Both waited forever (the last CI failure: a dead owner, the waiter here)."""
    a = make_arena(locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "overflow")
    off = LS.slot_off(a, slot)
    _busy_nodes(a, Q._my_owner())
    pid, holder = _dead_pid(), SpinLock(a, slot, 1)
    overflow = Q.QSTAT["overflow"]
    if word == "dead_owner":
        a.atomic.store64(off, pid << 16 | 2)              # locked by a dead cpu1
    else:
        holder.acquire()
        a.atomic.fetch_or64(off, Q.Q_PENDING)             # P, nobody named in S_OWNER
    join = _acquire_in_thread(SpinLock(a, slot, 0))
    _until(lambda: Q.QSTAT["overflow"] > overflow, "the waiter to go without a node", 30)
    if word == "unnamed_pending":
        holder.release()                                  # free, P set, no tail
    got = join(30)
    assert got, "the waiter without a node waited forever"
    if word == "dead_owner":
        assert isinstance(got[0], LockOwnerDead) and got[0].pid == pid
    else:
        assert got == [True] and not a.atomic.load64(off) & Q.Q_PENDING


def test_unnamed_pending_bit_is_revoked_not_stolen_around(make_arena) -> None:
    """P set on a free word with no holder named: a newcomer revokes it rather than
    stealing the lock and leaving P set (which made every later release take the slow
    path and every acquisition wait STEAL_NS for a pending waiter that never comes)."""
    a = make_arena(locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "unnamed")
    off = LS.slot_off(a, slot)
    a.atomic.store64(off, Q.Q_PENDING | 1)
    lk = SpinLock(a, slot, 0)
    lk.acquire()
    lk.release()
    assert not a.atomic.load64(off) & Q.Q_PENDING


def test_waiter_without_a_node_queues_again_when_one_frees(make_arena) -> None:
    """The no-node fallback is for while nodes are out; once one is free the waiter goes
    back to the FIFO queue (it used to spin on the word for good)."""
    a = make_arena(locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "requeue")
    nodes = _busy_nodes(a, Q._my_owner())
    holder = SpinLock(a, slot, 1)
    holder.acquire()
    off = LS.slot_off(a, slot)
    a.atomic.fetch_or64(off, Q.Q_PENDING)                 # a live pending waiter (named): the next one queues
    a.atomic.store64(off + LS.S_OWNER, a.atomic.load64(off) & Q.Q_OWNER)
    overflow, queued = Q.QSTAT["overflow"], Q.QSTAT["queued"]
    join = _acquire_in_thread(SpinLock(a, slot, 0))
    _until(lambda: Q.QSTAT["overflow"] > overflow, "the waiter to go without a node", 30)
    for no in nodes:
        a.atomic.store64(no + Q.N_OWNER, 0)
    _until(lambda: Q.QSTAT["queued"] > queued, "the waiter to queue again", 30)
    holder.release()
    assert join(30) == [True]


# ---------------------------------------------------------------------------- the wait hook
@pytest.mark.parametrize("kind", ["tas", "qspinlock", "rwlock"])
def test_wait_hook_runs_while_waiting(make_arena, spawn, kind: str) -> None:
    """The holder releases only when the waiter's hook has run past the spin phase (TAS:
    into the sleep phase; qspinlock: after it blocked on its semaphore).  A wait loop
    that stopped calling the hook would never get the lock (the test would time out)."""
    a = make_arena(nr_cpus=2, extra=EXTRA, locks={"spinlock": "qspinlock" if kind == "qspinlock" else "tas"})
    held, flag = a.off("data") + HELD, a.off("data") + FLAG
    if kind == "rwlock":
        slot = LS.lock_alloc(a, "test_rw", "hooked", LS.LOCK_RW)
        p = spawn(helpers.write_hold_until_flag, a.name, slot, 1, held, flag)
        rw = RWLock(a, slot, 0)
        acquire, release = rw.read_lock, rw.read_unlock
    else:
        slot = LS.lock_alloc(a, "test_lock", "hooked")
        p = spawn(helpers.hold_until_flag, a.name, slot, 1, held, flag)
        lk = SpinLock(a, slot, 0)
        assert lk.kind == ("qspinlock" if kind == "qspinlock" else "tas")
        acquire, release = lk.acquire, lk.release
    _until(lambda: a.atomic.load64(held), "the holder")
    calls = [0]
    blocks0 = Q.QSTAT["blocks"]

    def hook() -> None:
        calls[0] += 1
        deep = Q.QSTAT["blocks"] > blocks0 if kind == "qspinlock" else calls[0] > SPIN_TRIES + YIELD_TRIES + 3
        if deep and calls[0] > 3:
            a.atomic.store64(flag, 1)

    old = set_wait_hook(hook)
    try:
        acquire()
        release()
    finally:
        set_wait_hook(old)
    p.join(30)
    assert p.exitcode == 0 and a.atomic.load64(flag) == 1


def test_set_wait_hook_contract() -> None:
    from aerosync.sync import set_wait_hook as exported
    from aerosync.sync import wait_hook

    assert exported is set_wait_hook
    def f() -> None:
        return None

    old = set_wait_hook(f)
    try:
        assert wait_hook() is f
        with pytest.raises(TypeError):
            set_wait_hook(3)  # type: ignore[arg-type]
    finally:
        assert set_wait_hook(old) is f


# ---------------------------------------------------------------------------- selection
def test_per_class_selection_and_bad_kind(make_arena) -> None:
    a = make_arena(locks={"spinlock": "tas", "classes": {"&zone->lock": "qspinlock"}})
    z = SpinLock(a, LS.lock_alloc(a, "&zone->lock", "z0"), 0)
    n = SpinLock(a, LS.lock_alloc(a, "&n->list_lock", "n0"), 0)
    assert (z.kind, n.kind) == ("qspinlock", "tas")
    with z, n:
        assert z.held_by_me() and n.held_by_me()
        assert {name for _, name, _ in locks_held_by(a, os.getpid())} == {"&zone->lock[z0]", "&n->list_lock[n0]"}
    b = make_arena(locks={"spinlock": "qspinlock", "classes": {"slab_mutex": "tas"}})
    assert SpinLock(b, LS.lock_alloc(b, "slab_mutex", ""), CPU_COORD).kind == "tas"
    assert SpinLock(b, LS.lock_alloc(b, "other", ""), CPU_COORD).kind == "qspinlock"
    c = make_arena(locks={"spinlock": "ticket"})
    with pytest.raises(LockError, match=r"'ticket'.*allowed: tas, qspinlock"):
        SpinLock(c, LS.lock_alloc(c, "x", ""), 0)


def test_no_semaphores_left_after_arena_with_qspinlock() -> None:
    """Every MCS node has its semaphore while the arena lives; none outlive it."""
    a = Arena.create({"nr_cpus": 3, "locks": QSPIN}, L.base_sections(3, 4))
    try:
        assert len([f for f in os.listdir("/dev/shm") if f.startswith(f"sem.{a.name}.")]) == L.qnode_count(3)
    finally:
        a.close()
        a.unlink()
    assert [f for f in os.listdir("/dev/shm") if a.name in f] == []


def test_reap_dead_waiter_repairs_at_once(make_arena, spawn) -> None:
    """A coordinator that saw a worker die flags its nodes and drops its P at once: the
    waiters behind it move on without a liveness check (they block with a 60 s timeout,
    so only reap's wake-ups can move them).  The victims are SIGSTOPped, not killed, so
    that nothing but reap_dead_waiter can tell the others they are gone."""
    line = Line(make_arena, spawn, 4)
    line.holder.acquire()
    line.arrive(0, block_s=60.0)                  # pending: the first victim
    line.arrive(1, block_s=60.0)                  # head: the second victim
    line.arrive(2, block_s=60.0)
    line.arrive(3, block_s=60.0)
    victims = (line.procs[0].pid, line.procs[1].pid)
    for pid in victims:
        os.kill(pid, signal.SIGSTOP)
        _until(lambda pid=pid: Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T",
               f"pid {pid} to stop")
    assert Q.reap_dead_waiter(line.a, victims[0]) == ([], [line.slot])
    assert not line.word() & Q.Q_PENDING
    assert Q.reap_dead_waiter(line.a, victims[1]) == ([Q.node_index(line.a, 1)], [])
    line.holder.release()
    _until(lambda: line.log() == [2, 3], f"cpu2 and cpu3 to get the lock past the victims (log {line.log()})")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    line.finish(dead=(0, 1))
    assert line.report(2, R_REPAIRS) == 1


def test_jain_index_of_the_reliability_bench() -> None:
    from aerosync.bench.reliability import jain_index

    assert jain_index([5, 5]) == 1.0
    assert jain_index([10, 0]) == 0.5                 # 1/n: one CPU got everything
    assert abs(jain_index([3, 1]) - 0.8) < 1e-12      # 16 / (2 * 10)


def test_host_stall_meter_runs_pinned_and_leaves_nothing() -> None:
    """host_stall_max_ms: a positive gap from every pinned loop, its processes gone after."""
    import multiprocessing as mp

    from aerosync.bench.reliability import host_stall_max_ms

    before = {p.pid for p in mp.active_children()}
    ms = host_stall_max_ms(secs=0.05)
    assert 0.0 < ms < 50_000.0
    assert {p.pid for p in mp.active_children()} <= before


def test_holder_drops_a_successor_that_died_before_linking(make_arena, spawn, monkeypatch) -> None:
    """The window between a waiter's tail CAS and its link store: it dies there, so the
    holder that must hand over never sees a link.  Forced by writing that state: our
    node holds the lock, the tail is a node whose prev is ours and whose process is gone.
    hand_over must notice (liveness check after a block) and take the dead tail off."""
    monkeypatch.setattr(Q, "LIVENESS_S", 0.0)
    a = make_arena(nr_cpus=2, locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "unlinked")
    off, at = LS.slot_off(a, slot), a.atomic
    mine = os.getpid() << 16 | (CPU_COORD + 1)
    w8 = Q._Waiter(a, off, slot, CPU_COORD, mine, "test_qlock[unlinked]")
    h = w8.claim()
    gone = spawn(time.sleep, 0)
    gone.join(30)
    n = Q.node_index(a, 1) + 1
    nno = a.off("qnodes") + (n - 1) * 64
    at.store64(nno + Q.N_OWNER, gone.pid)
    at.store64(nno + Q.N_PREV, h)
    at.store64(nno + Q.N_SLOT, slot + 1)
    at.store64(off, mine | n << Q.Q_TAIL_SHIFT)          # locked by us, the dead node queued behind
    repairs = Q.QSTAT["repairs"]
    w8.hand_over(h, [0, 0, 0])
    assert at.load64(off) == mine                         # still ours, nobody in line
    assert at.load64(nno + Q.N_OWNER) == 0 and at.load64(nno + Q.N_SLOT) == 0
    assert Q.QSTAT["repairs"] == repairs + 1
    w8.free(h)
    w8.unlock_slow(mine)
    assert at.load64(off) == CPU_COORD + 1


def test_semaphores_of_a_killed_creator_are_swept() -> None:
    """A SIGKILLed creator leaves its segment and semaphores behind; the stale sweep
    (`aerosync cleanup`, every run's start, the test session) finds them by the owner pid
    in their names and removes them all."""
    import subprocess
    import sys

    from aerosync.arena.cleanup import cleanup_stale

    code = ("import os; from aerosync.arena import layout as L; from aerosync.arena.segment import Arena; "
            "a = Arena.create({'nr_cpus': 1, 'locks': {'spinlock': 'qspinlock'}}, L.base_sections(1, 4)); "
            "print(a.name, flush=True); os.kill(os.getpid(), 9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    name = out.stdout.strip()
    assert name.startswith("aerosync_") and out.returncode == -signal.SIGKILL
    cleanup_stale()                       # a concurrent sweep may have been first: same code
    assert [f for f in os.listdir("/dev/shm") if name in f] == []


def _qstate(a: Arena, slot: int, procs: dict) -> str:
    """The lock word, sleepers, every claimed MCS node and the live workers' stacks: what a
    hang needs to be understood from a CI log."""
    import subprocess
    import sys

    at, off = a.atomic, LS.slot_off(a, slot)
    w = at.load64(off)
    lines = [f"word {w:#x}: tail {w >> Q.Q_TAIL_SHIFT} P {int(bool(w & Q.Q_PENDING))} owner pid "
             f"{(w >> 16) & LS.PID_MASK} cpu1 {w & Q.Q_CPU}; sleepers {at.load32(off + LS.S_SLEEPERS):#x} "
             f"P-holder {at.load64(off + LS.S_OWNER):#x}; pids {[(c, p.pid, p.exitcode) for c, p in procs.items()]}"]
    base = a.off("qnodes")
    for i in range(a.sections["qnodes"][1] // 64):
        no = base + 64 * i
        o = at.load64(no + Q.N_OWNER)
        if o:
            lines.append(f"node {i + 1}: owner pid {o & LS.PID_MASK}{' ABANDONED' if o >> 63 else ''} slot "
                         f"{at.load64(no + Q.N_SLOT)} locked {at.load64(no + Q.N_LOCKED):#x} next "
                         f"{at.load64(no + Q.N_NEXT):#x} prev {at.load64(no + Q.N_PREV)} state "
                         f"{at.load64(no + Q.N_STATE)} seq {at.load64(no + Q.N_SEQ)}")
    for p in procs.values():
        if p.exitcode is None:
            spy = Path(sys.executable).with_name("py-spy")
            if spy.exists():
                r = subprocess.run([str(spy), "dump", "--pid", str(p.pid)], capture_output=True, text=True,
                                   timeout=30)
                lines.append(r.stdout[-3000:] + r.stderr[-500:])
    return "\n".join(lines)


def test_chaos_kills_never_break_exclusion_or_progress(make_arena, spawn, soak: bool) -> None:
    """Four CPUs hammer one lock while the parent SIGKILLs one at random every few ms and
    starts a replacement on the same context: killed waiters are repaired around, killed
    owners are taken over (LockOwnerDead + force_unlock), nobody hangs, and the plain
    word never falls behind the acknowledged increments (no two owners at once)."""
    import random

    n, duration = 4, (30.0 if soak else 3.0)           # a replacement takes ~0.3 s to start
    a = make_arena(nr_cpus=n, extra=EXTRA, locks=QSPIN)
    slot = LS.lock_alloc(a, "test_qlock", "chaos")
    word, stop, counts = a.off("data"), a.off("data") + 64, a.off("data") + 128
    procs = {c: spawn(helpers.qlock_chaos, a.name, slot, c, word, counts + 64 * c, stop) for c in range(n)}
    rng = random.Random(1234)
    kills, min_kills = 0, 3
    deadline = time.monotonic() + duration
    hard_stop = deadline + 120.0                           # a loaded host starts replacements slowly
    while (time.monotonic() < deadline or kills < min_kills) and time.monotonic() < hard_stop:
        time.sleep(rng.uniform(0.002, 0.02))
        c = rng.randrange(n)
        if a.atomic.load64(counts + 64 * c + 8) != procs[c].pid:
            continue                                      # still starting up
        procs[c].kill()
        procs[c].join(10)
        kills += 1
        if rng.random() < 0.5:
            Q.reap_dead_waiter(a, procs[c].pid)          # sometimes the coordinator's help
        procs[c] = spawn(helpers.qlock_chaos, a.name, slot, c, word, counts + 64 * c, stop)
    a.atomic.store64(stop, 1)
    for c, p in procs.items():
        p.join(60)
        assert p.exitcode == 0, f"cpu{c} did not finish (exit {p.exitcode}): a waiter hung\n{_qstate(a, slot, procs)}"
    total = sum(a.atomic.load64(counts + 64 * c) for c in range(n))
    value = a.u64[word >> 3]
    assert total > 0 and kills >= min_kills
    print(f"\nchaos: {kills} kills, {total} increments, word {value}")
    assert total <= value <= total + kills, (total, value, kills)
