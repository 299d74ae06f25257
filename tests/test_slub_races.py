"""SLUB races, forced deterministically: the task context and the irq context of one CPU
(Slub(irq=True), a second thread), two CPUs, a CPU and a remote flusher.  Each test puts
one interleaving in the window named in its docstring (the Slub(hook=...) test hook runs
code between a read and its CAS; other windows use a lock held by the test, or a
SpinLock subclass whose acquire runs code first) and then checks that nothing was handed
out twice or lost and that the checkers (S1..S7, mm/pmm/check.py) stay clean."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from aerosync.arena.segment import Arena
from aerosync.mm.pmm.gfp import __GFP_NOWARN, __GFP_THISNODE
from aerosync.mm.slab import slab_common as SC
from aerosync.mm.slab import slub as S
from aerosync.mm.slab.slab_common import kmem_cache_create, slab_stats, virt_to_off
from aerosync.mm.slab.slub import Slub
from tests.test_slub import all_ok

pytestmark = pytest.mark.usefixtures("both_profiles")   # issue 14: races and checker in both kernel profiles


def node_partial(a: Arena, cid: int, nid: int) -> tuple[int, int]:
    no = SC._node_off(a, cid, nid, SC._geo(a)[2])
    return a.u64[(no + SC.N_NR_PARTIAL) >> 3], a.u32[(no + SC.N_HEAD) >> 2]


# ------------------------------------------------------------------ task vs irq of one CPU
@pytest.mark.parametrize("spinlock", ["tas", "qspinlock"])
def test_irq_waits_for_list_lock_held_by_its_task(sa, spinlock: str) -> None:
    """Task context holds n->list_lock (inside __slab_free / deactivate); the irq context of
    the same CPU needs it (a free that empties a node-partial slab: since 6.8 that is the
    free that takes list_lock; a full slab goes to the freeing CPU's partial list without
    it).  The lock word names (pid, cpu), which both threads share: the irq thread raised
    LockError ("recursive acquire") instead of waiting.  Fixed: the irq context locks as
    owner IRQ_LOCK_CPU | cpu, so it waits, as an interrupt waits for
    spin_unlock_irqrestore."""
    a = sa(slab_mag_size=0, slab_min_partial=0, locks={"spinlock": spinlock})
    task, irq = Slub(a, 0), Slub(a, 0, irq=True)
    cid = kmem_cache_create(a, "race-irq-lock", 64)
    tc, ic = task.cache(cid), irq.cache(cid)
    objs = [tc.alloc() for _ in range(3 * tc.objects)]
    tc.flush_cpu(0)                                       # the slabs are full and unfrozen now
    spfn = (objs[0] - SC.VBASE) >> 12
    same = [x for x in objs[1:] if (x - SC.VBASE) >> 12 == spfn]
    for x in same:
        tc.free(x)                                        # S: full -> CPU 0's partial list, inuse 1
    tc.flush_cpu(0)                                       # __put_partials: S -> node partial
    assert node_partial(a, cid, 0) == (1, spfn)
    err: list[str] = []

    def irq_body() -> None:
        try:
            ic.free(objs[0])                              # S empties: list_lock, then discard
        except Exception as e:                            # reported below
            err.append(repr(e))

    before = node_partial(a, cid, 0)
    tc.node_lock[0].acquire()
    t = threading.Thread(target=irq_body)
    t.start()
    try:
        t.join(0.3)
        assert not err, err
        assert t.is_alive(), "irq context did not wait for the list_lock its task holds"
        assert node_partial(a, cid, 0) == before          # nothing moved under the task's lock
    finally:
        tc.node_lock[0].release()
        t.join(10)
    assert not err and not t.is_alive()
    assert node_partial(a, cid, 0) == (0, SC.NIL32)       # removed and discarded (min_partial 0)
    assert slab_stats(a, cid)["free_slab"] == 1
    for x in objs[1:]:
        if x not in same:
            tc.free(x)
    tc.flush_cpu(0)
    all_ok(a)


def test_bulk_walk_meets_irq_overwritten_object(sa) -> None:
    """alloc_bulk walks the cpu freelist between its read of (tid, head) and the CAS.  The
    irq context allocates the head object A in that window and fills it with data, so the
    walk reads A's "free pointer" out of user bytes.  The CAS fails on the tid, but the walk
    dereferenced the garbage index first: IndexError (a fault) out of alloc_bulk.  Fixed:
    the walk stops at an index beyond the slab, and the CAS (tid moved) sends it round."""
    a = sa()
    irq_c = Slub(a, 0, irq=True).cache("kmalloc-64")
    fired: list[int] = []
    taken: list[int] = []

    def hook(event: str, kc: Any) -> None:
        if event == "bulk" and not fired:
            fired.append(1)
            x = irq_c.alloc()                             # A: the head the walk starts from
            o = virt_to_off(a, x)
            a.u8[o : o + 64] = b"\xee" * 64               # the irq's data, over A's free pointer
            taken.append(x)

    c = Slub(a, 0, hook=hook).cache("kmalloc-64")
    fired.append(0)                                       # warm-up without the interleaving
    warm = c.alloc()
    fired.clear()
    cas0 = slab_stats(a, c.id)["cmpxchg_fail"]
    got = c.alloc_bulk(10)
    assert fired and len(got) == 10 and len(set(got)) == 10
    assert taken[0] not in got and warm not in got
    assert slab_stats(a, c.id)["cmpxchg_fail"] >= cas0 + 1
    c.free_bulk([*got, warm, *taken])
    all_ok(a)


# ------------------------------------------------------------------ nodes
def _exhaust_node(a: Arena, nid: int, cpu: int) -> list[int]:
    mm = Slub(a, cpu).mm
    pages = []
    while (p := mm.alloc_pages_node(nid, __GFP_THISNODE | __GFP_NOWARN, 0)) >= 0:
        pages.append(p)
    return pages


def test_alloc_node_fallback_slab_on_its_own_node_list(sa, monkeypatch) -> None:
    """kmalloc_node(nid) when node nid has no free pages: new_slab falls back to another
    node.  The slab was linked on *that* node's partial list while holding node nid's
    list_lock (so a CPU working that list under its own lock raced with it), and the loop
    then looked at node nid's list again and never found it: a new slab per turn until
    memory ran out.  Fixed, and since issue 14 as ___slab_alloc does it: the fallback slab
    becomes the CPU slab (no list, no list_lock); the next kmalloc_node(nid) finds it of
    another node (ALLOC_NODE_MISMATCH), deactivates it onto its own node's list under its
    own lock, and once that node holds more than min_partial partial slabs
    get_any_partial serves from there: at most min_partial + 1 new slabs, not one a turn."""
    monkeypatch.setattr(S, "_get_cycles", lambda: 0)      # get_any_partial's defrag gate: always pass
    a = sa(nr_nodes=2, nr_cpus=2, slab_mag_size=0)
    s0 = Slub(a, 0)
    c = s0.cache(kmem_cache_create(a, "race-node", 64))
    held = _exhaust_node(a, 1, 1)
    slabs0 = slab_stats(a, c.id)["alloc_slab"]
    other = Slub(a, 1).cache(c.id)                        # a CPU of node 1, working node 0's list
    before = node_partial(a, c.id, 0)
    res: list[int] = []
    other.node_lock[0].acquire()
    t = threading.Thread(target=lambda: res.append(c.alloc_node(1)))
    t.start()
    try:
        t.join(0.3)
        assert node_partial(a, c.id, 0) == before, "node 0's partial list changed under its held lock"
    finally:
        other.node_lock[0].release()
        t.join(60)
    assert res and res[0]
    assert slab_stats(a, c.id)["alloc_slab"] - slabs0 == 1
    more = [c.alloc_node(1) for _ in range(30)]
    assert all(more) and len({res[0], *more}) == 31
    min_partial = SC.cache_info(a, c.id)["min_partial"]
    assert slab_stats(a, c.id)["alloc_slab"] - slabs0 <= min_partial + 1, "a new slab per turn (runaway)"
    assert slab_stats(a, c.id)["alloc_node_mismatch"] >= 30
    for x in (res[0], *more):
        c.free(x)
    mm = s0.mm
    for p in held:
        mm.free_pages(p, 0)
    c.flush_cpu(0)
    all_ok(a)


def test_debug_alloc_local_node_full_uses_fallback_slab(sa) -> None:
    """A debug cache (every alloc under list_lock) on a CPU whose node is full: the new
    slab comes from the other node.  It was linked on that node's list under the local
    node's list_lock (the other node's CPUs hold their own lock meanwhile) and then never
    looked at again: a slab per turn until memory ran out.  Fixed: linked under its own
    node's lock; later allocations find it there (get_any_partial) instead of new slabs."""
    a = sa(nr_nodes=2, nr_cpus=2)
    s0 = Slub(a, 0)
    c = s0.cache(kmem_cache_create(a, "race-dbg-node", 64, 0, SC.SLAB_POISON | SC.SLAB_RED_ZONE))
    held = _exhaust_node(a, 0, 0)
    other = Slub(a, 1).cache(c.id)
    before = node_partial(a, c.id, 1)
    res: list[int] = []
    other.node_lock[1].acquire()
    t = threading.Thread(target=lambda: res.append(c.alloc()))
    t.start()
    try:
        t.join(0.3)
        assert node_partial(a, c.id, 1) == before, "node 1's partial list changed under its held lock"
    finally:
        other.node_lock[1].release()
        t.join(60)
    assert res and res[0]
    more = [c.alloc() for _ in range(20)] + [c.alloc_node(0) for _ in range(5)]
    assert all(more) and len({res[0], *more}) == 26
    assert slab_stats(a, c.id)["alloc_slab"] == 1, "a new slab per allocation (runaway)"
    assert not s0.reports
    for x in (res[0], *more):
        c.free(x)
    mm = s0.mm
    for p in held:
        mm.free_pages(p, 0)
    all_ok(a)


# ------------------------------------------------------------------ suspicions ruled out
def test_remote_free_emptying_decision_revalidated_by_cas(sa, monkeypatch) -> None:
    """Ruled out: discard racing an allocation.  CPU 1 frees the last object of an unfrozen
    node-partial slab P: it reads inuse 1, decides "empty -> discard" and takes list_lock
    before its CAS.  In that window CPU 0 (kmalloc_node to P's node) takes P off the list
    and freezes it as its cpu slab (get_partial_node + freeze_slab).  The CAS fails (word
    changed), the retry sees P frozen (no list work, no lock), and P is not discarded."""
    a = sa(nr_nodes=2, nr_cpus=2, slab_mag_size=0, slab_min_partial=0)
    cid = kmem_cache_create(a, "race-discard", 64)
    c0 = Slub(a, 0).cache(cid)
    c1 = Slub(a, 1).cache(cid)
    objs = [c1.alloc() for _ in range(c1.objects)]        # CPU 1's first slab, all of it
    pfn = (objs[0] - SC.VBASE) >> 12
    assert all((x - SC.VBASE) >> 12 == pfn for x in objs)
    c1.flush_cpu(1)                                       # P: unfrozen, full
    for x in objs[1:]:
        c0.free(x)                                        # remote frees: P on CPU 0's partial list
    c0.flush_cpu(0)                                       # __put_partials: P on node 1 partial, inuse 1
    assert node_partial(a, cid, 1) == (1, pfn)
    got: list[int] = []

    class HookedLock(S.SpinLock):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            inner = self.acquire

            def acquire() -> None:
                if not got:
                    got.append(c0.alloc_node(1))          # CPU 0 in the window
                inner()

            self.acquire = acquire

    monkeypatch.setattr(S, "SpinLock", HookedLock)
    r = Slub(a, 1, irq=True).cache(cid)                   # CPU 1 (its irq context), hooked lock
    monkeypatch.undo()
    cas0 = slab_stats(a, cid, 1)["cmpxchg_fail"]
    r.free(objs[0])
    assert got and (got[0] - SC.VBASE) >> 12 == pfn        # CPU 0 took P (its cpu slab now: frozen)
    assert slab_stats(a, cid, 1)["cmpxchg_fail"] == cas0 + 1
    assert slab_stats(a, cid)["free_slab"] == 0           # P not discarded under CPU 0's objects
    assert node_partial(a, cid, 1) == (0, SC.NIL32)
    all_ok(a)
    c0.free(got[0])
    c0.flush_cpu(0)                                       # deactivate_slab: empty -> discarded
    assert slab_stats(a, cid)["free_slab"] == 1
    all_ok(a)


def test_irq_slow_path_between_task_free_read_and_cas(sa) -> None:
    """Ruled out: c->slab read outside the tid.  The task frees an object of c->slab P;
    between its read of (tid, head) / c->slab and the CAS the irq context drains P and
    installs another slab Q (detach, install: tid moved twice).  The stale CAS fails; the
    retry sees c->slab != P and frees through __slab_free, not onto Q's freelist."""
    a = sa(slab_mag_size=0)
    irq_c = Slub(a, 0, irq=True).cache("kmalloc-256")
    state: dict[str, Any] = {"armed": False, "irq": []}

    def hook(event: str, kc: Any) -> None:
        if event == "free" and state["armed"]:
            state["armed"] = False
            while True:                                   # drain P; the next alloc installs Q
                x = irq_c.alloc()
                state["irq"].append(x)
                if (x - SC.VBASE) >> 12 != state["p"]:
                    break

    c = Slub(a, 0, hook=hook).cache("kmalloc-256")
    xs = [c.alloc() for _ in range(3)]
    state["p"] = (xs[0] - SC.VBASE) >> 12
    state["armed"] = True
    c.free(xs[0])
    assert not state["armed"]
    q = (state["irq"][-1] - SC.VBASE) >> 12
    assert q != state["p"]
    ko = SC._cpu_off(a, c.id, 0, 2, SC._geo(a)[3])
    assert a.u64[(ko + SC.K_SLAB) >> 3] == q
    pm = SC.SMETA * state["p"] + a.off("slabmeta")
    assert (a.u64[pm >> 3] >> 32) & 0xFFFF == c.objects - 1   # xs[0] back on P's own freelist
    more = [c.alloc() for _ in range(40)]
    assert xs[0] not in state["irq"] and len({*more, *state["irq"], *xs[1:]}) == len(more) + len(state["irq"]) + 2
    for x in (*more, *state["irq"], *xs[1:]):
        c.free(x)
    all_ok(a)


@pytest.mark.parametrize("spinlock", ["tas", "qspinlock"])
def test_irq_context_waits_for_zone_lock_held_by_its_task(machine, spinlock: str) -> None:
    """The interrupt context's page allocator handle locks as its own owner
    (IRQ_LOCK_CPU | cpu): it waits for a zone lock its task context holds (on the same
    CPU, same pid) instead of raising a recursive-acquire LockError."""
    import threading

    from aerosync.mm.pmm import gfp as G
    from aerosync.mm.slab.slub import Slub

    a = machine(slab=True, pcp_enabled=False, locks={"spinlock": spinlock})
    task = Slub(a, 0)
    irq = Slub(a, 0, irq=True)
    zid = task.mm.zonelist(task.nid, G.GFP_KERNEL)[0]
    lock = task.mm.zone_lock(zid)
    got: list[int] = []
    lock.acquire()
    t = threading.Thread(target=lambda: got.append(irq.mm.alloc_pages(G.GFP_KERNEL, 0)))
    t.start()
    t.join(0.3)
    assert t.is_alive() and not got          # waiting for the task's lock, not raising
    lock.release()
    t.join(10)
    assert got and got[0] >= 0
    irq.mm.free_pages(got[0], 0)
