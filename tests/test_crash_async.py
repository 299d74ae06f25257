"""Crash consistency between fault points: a CPU killed from outside loses nothing.

A SIGKILL from outside (`kill -9`, the host's OOM killer) lands anywhere, not at a fault
point.  Here the child CPU runs crash_soak batches under sys.settrace and kills itself
just before a chosen line (tests/crash_helpers.py kill_between_points): the k-th line
executed in aerosync/ or workers/ (sampled positions, the explorer), or the first line
of a named window (the forced interleavings below).  Then, as after any death:
takeover, recovery, the checkers, the CPU back online and working, nothing lost.

What makes it hold (mm/intent.py "Hand-off", mm/recovery.py, mm/pmm/recover.py,
mm/slab/recover.py, workers/workloads/crash_soak.py recover): an allocator names the
item it is handing out before the store that takes it, and the caller opens a window
around it; a zone's free lists are rebuilt from PG_buddy when its lock is taken over
from a CPU killed from outside; records one step behind the state are resolved from
state (an item given back only if still allocated and named by nobody); a magazine
flush marks its phases; a slab_free inside a flush moves its caller's step before its
own record ends; SLUB's counters are settled from S5's gap.

`--soak` samples 150 positions per configuration instead of 6.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import pytest

from aerosync.mm import intent as I
from aerosync.mm.cpuhp import cpuhp_online_mm
from aerosync.mm.pmm.page import PG_buddy, PG_locked, PG_pcp, page_array
from aerosync.mm.pmm.page_alloc import BadPageWarning
from aerosync.mm.reclaim import layout as R
from aerosync.mm.vm import mm_types as MT
from tests import crash_helpers as H
from tests.conftest import new_machine
from tests.crash_helpers import no_bad_pages  # noqa: F401 (autouse fixture)

# name -> (crash_soak params, machine config, feed this CPU's ring first, largest position)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any], bool, int]] = {
    "default": ({}, {}, False, 60000),
    "ring": ({}, {}, True, 20000),                  # the pops of a full inbound ring, remote frees
    "linux": ({}, {"kernel_profile": "linux"}, False, 60000),   # no magazines, per-CPU sheaves, exact PCP
    "numa": ({"node_pct": 30, "movable_pct": 30, "sheaf_capacity": 8}, {"nr_nodes": 2}, False, 60000),
}


def _recovered(a: Any, p: Any, pid: int) -> Any:
    """Recovery of CPU 0 killed from outside; the checkers; CPU 0 back online running the
    soak to its teardown; the checkers again; nothing lost."""
    assert I.died_at(a, 0) is None                 # not at a fault point
    rec = H.recover(a, pid, 0, p)
    H.check_all(a)
    cpuhp_online_mm(a, 0)
    _, killed = H.run_child(a, 0, H.soak_driver(p, seed=2, budget=10))
    assert not killed
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}, rec.to_dict()
    return rec


def _sampled(name: str, n: int) -> list[str]:
    kw, cfg, feed, kmax = CONFIGS[name]
    p = H.soak_params(**kw)
    failed = []
    for k in random.Random(name).sample(range(1, kmax), n):
        a = H.soak_machine(lambda **m: new_machine(**m, **cfg), p)
        try:
            pid, killed = H.run_child(a, 0, H.async_soak_driver(p, k, warm=0 if feed else 30, feed=feed))
            if killed:
                _recovered(a, p, pid)
        except AssertionError as e:
            failed.append(f"line {k}: {str(e).splitlines()[0][:200]}")
        finally:
            a.close()
            a.unlink()
    return failed


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_killed_at_sampled_lines(name: str, soak: bool) -> None:
    failed = _sampled(name, 150 if soak else 6)
    assert not failed, "\n".join(failed)


# VM driver (_vm_driver) -> the largest line position sampled (each driver runs past it).
VM_SAMPLED: dict[str, int] = {
    "vm": 100_000, "fork": 100_000, "split": 100_000, "vmfile": 100_000, "filefork": 40_000,
    "reclaim": 300_000, "migrate": 200_000, "vmalloc": 100_000, "vmblock": 100_000,
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", list(VM_SAMPLED))
def test_vm_killed_at_sampled_lines(kind: str, soak: bool) -> None:
    """A VM driver killed from outside at a line drawn at random (any line of aerosync/
    its run executes), recovered, checked, run again, nothing lost -- 2 lines a driver
    here, 40 with --soak.  This is how the torn page-tree counts, the VMA linked twice,
    the maple height, the page-cache fill's page, the kernel stack and the CPU between
    tasks were found (each has its forced test below)."""
    failed = []
    for k in random.Random(kind).sample(range(1, VM_SAMPLED[kind]), 40 if soak else 2):
        made: list[Any] = []

        def factory(made: list[Any] = made, **m: Any) -> Any:
            made.append(new_machine(**m))
            return made[-1]

        cfg, drv, again, setup = _vm_driver(kind)
        try:
            _killed_runs_on(factory, cfg, drv, None, k, again, setup)
        except AssertionError as e:
            msg = str(e)
            failed.append(f"line {k}: {msg.splitlines()[0][:300]} ... {msg[msg.rfind('(the CPU died'):][:500]}")
        finally:
            for a in made:
                a.close()
                a.unlink()
    assert not failed, "\n".join(failed)


# ---------------------------------------------------------------- forced windows

def _kill_in(machine, match, nth: int = 1, warm: int = 30, feed: bool = False, cfg: dict | None = None,
             **kw: Any) -> Any:
    p = H.soak_params(**kw)
    a = H.soak_machine(machine, p, **(cfg or {}))
    pid, killed = H.run_child(a, 0, H.async_soak_driver(p, nth, match, warm=warm, feed=feed))
    assert killed, "the window was never reached"
    return _recovered(a, p, pid)


@pytest.mark.timeout(120)
def test_page_handed_out_not_yet_in_its_slot(machine) -> None:
    """alloc_pages returned: the page is the caller's, its held slot still empty."""
    rec = _kill_in(machine, H.at_line("allocate", "entry = s << 36 | (pfn << 4 | order)"), page_pct=100)
    assert rec.pages >= 1


@pytest.mark.timeout(120)
def test_object_taken_by_the_cas_not_yet_counted(machine) -> None:
    """SLUB's fast path: the CAS took the object, the alloc counter has not moved."""
    rec = _kill_in(machine, H.at_line("alloc", "u64[st_alloc] += 1"), page_pct=0)
    assert rec.objects >= 1 and rec.scan.get("slab_stats_settled", 0) >= 1


def _taken_over(machine, match, cfg: dict | None = None, **kw: Any) -> tuple[Any, Any, Any]:
    """Kill CPU 0 at `match`; only the takeover (live CPUs would run now): (arena, params,
    its CpuRecovery)."""
    from aerosync.mm import recovery

    p = H.soak_params(**kw)
    a = H.soak_machine(machine, p, **(cfg or {}))
    pid, killed = H.run_child(a, 0, H.async_soak_driver(p, 1, match, warm=0))
    assert killed, "the window was never reached"
    return a, p, recovery.takeover(a, pid, 0)


def _finish(a: Any, p: Any, rec: Any) -> None:
    from aerosync.mm import recovery
    from aerosync.mm.cpuhp import cpuhp_offline_mm
    from workers.workloads import crash_soak

    recovery.recover_cpu(a, rec, lambda a_, c, r, m, s: crash_soak.recover(a_, p, c, r, m, s),
                         offline=cpuhp_offline_mm)
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}, rec.to_dict()


@pytest.mark.timeout(120)
def test_free_list_torn_under_zone_lock(machine) -> None:
    """A block linked to the old head, the head not yet moved: zone.lock's lists are
    whole again when the lock is released at takeover, before a live CPU can take it."""
    from aerosync.mm.pmm.check import check as mm_check

    a, p, rec = _taken_over(machine, H.at_line("add_to_free_list", "u32[hi] = pfn"), page_pct=100)
    assert rec.scan.get("free_lists_rebuilt", 0) >= 1
    counts = mm_check(a).counts
    assert not counts.get("B4") and not counts.get("B5"), counts
    _finish(a, p, rec)


@pytest.mark.timeout(120)
def test_node_partial_list_torn_under_list_lock(machine) -> None:
    """add_partial half done: the node's partial list is whole again at takeover."""
    from aerosync.mm.slab import slab_common as S
    from aerosync.mm.slab.layout import LIST_NODE_PARTIAL, M_CACHE, M_LIST, M_NEXT, M_PREV, SMETA

    a, p, rec = _taken_over(machine, H.at_line("add_partial_locked", "u32[ti] = pfn"), {"kernel_profile": "linux"},
                            page_pct=0)
    assert rec.scan.get("node_partials_rebuilt", 0) >= 1
    sm = a.off("slabmeta")
    for cid in S.live_caches(a):
        no = S._node_off(a, cid, 0, 1)
        marked = {pfn for pfn in range(a.config["nr_pages"])
                  if a.u32[(sm + pfn * SMETA + M_CACHE) >> 2] == cid + 1
                  and a.u8[sm + pfn * SMETA + M_LIST] == LIST_NODE_PARTIAL}
        walked, prev, pfn = [], S.NIL32, a.u32[(no + S.N_HEAD) >> 2]
        while pfn != S.NIL32 and len(walked) <= len(marked):
            assert a.u32[(sm + pfn * SMETA + M_PREV) >> 2] == prev
            walked.append(pfn)
            prev, pfn = pfn, a.u32[(sm + pfn * SMETA + M_NEXT) >> 2]
        assert set(walked) == marked and len(walked) == a.u64[(no + S.N_NR_PARTIAL) >> 3]
        assert a.u32[(no + S.N_TAIL) >> 2] == prev
    _finish(a, p, rec)


@pytest.mark.timeout(120)
def test_magazine_flush_killed_while_moving_the_newer_half(machine) -> None:
    _kill_in(machine, H.at_line("free_other", "u64[mag0 + i] = u64[mag0 + nf + i]"), nth=2, page_pct=0,
             cfg={"kernel_profile": "aerosync"})


@pytest.mark.timeout(120)
def test_flush_free_done_its_record_still_open(machine) -> None:
    """A spilled object back on its slab, slab_free's record not yet ended: the flush's
    step already counts it, so recovery frees it once."""
    _kill_in(machine, H.at_line("slab_free", "end(r)", lambda f: f.f_locals.get("outer", -1) >= 0), page_pct=0,
             cfg={"kernel_profile": "aerosync"})


@pytest.mark.timeout(120)
def test_ring_claimed_not_yet_logged(machine) -> None:
    """push's CAS claimed a slot, its step not stored: the claim is rolled forward (a
    hole would stop the consumer for good)."""
    from aerosync.params import CACHE_LINE
    from workers.workloads._pages import RING_BYTES, RING_SLOTS
    from workers.workloads.crash_soak import RING

    p = H.soak_params(cross_cpu_pct=100)
    a = H.soak_machine(machine, p)
    pid, killed = H.run_child(a, 0, H.async_soak_driver(p, 1, H.at_line("push", "q[r + STEP] = 1"), warm=0))
    assert killed
    assert I.died_at(a, 0) is None
    rec = H.recover(a, pid, 0, p)
    hd = a.off(RING) + 1 * RING_BYTES
    q = a.u64
    head, tail = q[hd >> 3], q[(hd + CACHE_LINE) >> 3]
    assert tail > head
    slots = (hd + 2 * CACHE_LINE) >> 3
    assert all(q[slots + (t & (RING_SLOTS - 1))] for t in range(head, tail)), "a hole in cpu1's ring"
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}, rec.to_dict()


@pytest.mark.timeout(120)
def test_pop_took_the_slot_head_not_moved(machine) -> None:
    rec = _kill_in(machine, H.at_line("drain_ring", "h += 1"), warm=0, feed=True)
    assert rec.pages + rec.objects >= 1


@pytest.mark.timeout(120)
def test_free_unheld_step_not_stored(machine) -> None:
    """release cleared the held slot at step 0: the item is given back, not lost."""
    rec = _kill_in(machine, H.at_line("release", "q[r + STEP] = 1"), cross_cpu_pct=0)
    assert rec.pages + rec.objects >= 1


@pytest.mark.timeout(120)
def test_free_done_step_not_stored(machine) -> None:
    """The free finished at step 1: recovery must not free it again."""
    _kill_in(machine, H.at_line("free_entry", "q[c_free] += 1"), cross_cpu_pct=0, page_pct=0)



@pytest.mark.timeout(120)
def test_slow_path_killed_inside_handout(machine) -> None:
    """install() made the chain the cpu freelist; the record still says "chain in flight"
    (step 1): the first object is given back, the chain is not spliced twice."""
    _kill_in(machine, H.at_line("obj_addr", "return VBASE", lambda f: f.f_back.f_code.co_name == "handout"),
             page_pct=0)


@pytest.mark.timeout(120)
def test_new_slab_frozen_not_yet_held(machine) -> None:
    """A new slab frozen with all its objects taken as the chain, the record not yet
    holding it: the chain goes back (the slab was nobody's yet)."""
    _kill_in(machine, H.at_line("slab_alloc_slow", "hold(r, pfn, 0, P_NEW_FROZEN)"), warm=0, page_pct=0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("func", "text", "cfg", "kw"), [
    # ALLOC_NODE_MISMATCH: a cpu slab with objects left is detached (kmalloc_node)
    ("detach", "cas64(cw, w,", {"nr_nodes": 2}, {"node_pct": 100}),      # c->slab NIL, chain in the word
    ("detach", "return pfn, w & _LO", {"nr_nodes": 2}, {"node_pct": 100}),   # the CAS took it
    ("get_freelist", "return fl", {"kernel_profile": "linux"}, {}),
    ("freeze_locked", "return old & _LO", {"kernel_profile": "linux"}, {}),
])
def test_chain_taken_not_yet_held(machine, func: str, text: str, cfg: dict, kw: dict) -> None:
    """The slow path's CASes that take a chain (the cpu word's, a slab's freelist) name
    it in the record first: a death right before or after the CAS splices it back once."""
    def nonempty(f: Any) -> bool:                        # a chain of at least one object
        v = {"detach": "w", "get_freelist": "fl", "freeze_locked": "old"}[func]
        return f.f_locals.get(v, 0) & 0xFFFF_FFFF != 0xFFFF_FFFF

    _kill_in(machine, H.at_line(func, text, nonempty), warm=0, page_pct=0, cfg=cfg, **kw)


def _vm_killed(machine: Any, driver: Any, mode: str = "processes") -> tuple[Any, Any, int]:
    """A VM machine ([vm] mm = `mode`) whose CPU 0 ran `driver`
    (crash_helpers.async_vm_driver) and was killed in its window: (arena, params, the
    dead child's pid)."""
    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": mode}, nr_pages=4096)
    pid, killed = H.run_child(a, 0, driver)
    assert killed, "the window was never reached"
    return a, p, pid


def _vm_runs_on(a: Any, p: Any, rec: Any) -> None:
    """After a VM recovery: the checkers pass, CPU 0 comes back online and runs
    vm_driver again to its end, the checkers pass again and nothing is lost."""
    H.check_all(a)
    cpuhp_online_mm(a, 0)
    _, again = H.run_child(a, 0, H.vm_driver(rounds=5, seed=2))
    assert not again
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}, rec.to_dict()


# An embedded lock between its word and its robust-list entry (sync/objlock.py "Robust
# list": the lock_pending word; mm/recovery.py _takeover_pending / _resolve_pending):
# name -> (function, text of the line the CPU dies before, the frame test, lock kind).
_IN_OBJLOCK = ("aerosync", "sync", "objlock.py")


def _objlock(f: Any) -> bool:
    return f.f_code.co_filename.endswith("/".join(_IN_OBJLOCK))


def _kind(k: int) -> Any:
    return lambda f: _objlock(f) and f.f_locals.get("e", 0) >> 56 == k


LOCK_WINDOWS: dict[str, tuple[str, str, Any, str]] = {
    # the spinlock's CAS landed, its list entry not stored (the LRU lock, a PTE lock)
    "spin_taken_not_listed": ("held_op", "after(e)", lambda f: _kind(1)(f) and f.f_locals["before"] is None,
                              "spin"),
    # the list entry gone, the word still names the CPU
    "spin_unlisted_not_released": ("held_op", "got = op(off)",
                                   lambda f: _kind(1)(f) and f.f_locals["before"] is not None, "spin"),
    # rwsem W taken, the owner word not written yet (mmap_lock, a VMA lock)
    "write_taken_unnamed": ("took_write", "store(off + 8, mine)", _objlock, "rwsem"),
    # the owner word cleared, W not dropped yet
    "write_unnamed_not_released": ("up_write", "if fs(off, RW_WRITER) & RW_WAITERS:", _objlock, "rwsem"),
    # a reader's bias in the word, its list entry not stored (anonymous: counted)
    "read_taken_not_listed": ("held_op", "after(e)", lambda f: _kind(3)(f) and f.f_locals["before"] is None,
                              "rwsem"),
    # a reader's list entry gone, its bias still in the word
    "read_unlisted_not_released": ("held_op", "got = op(off)",
                                   lambda f: _kind(3)(f) and f.f_locals["before"] is not None, "rwsem"),
    # munmap's downgrade_write: the word holds the reader, the list still says WRITE
    "downgraded_still_listed_write": ("held_op", "after(e)",
                                      lambda f: _kind(3)(f) and f.f_locals["op"].__name__ == "downgrade_write",
                                      "rwsem"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(LOCK_WINDOWS))
def test_lock_word_and_robust_list_torn(machine, tmp_path, window: str) -> None:
    """The dead CPU's lock, taken or released half-way, ends free after the recovery --
    neither held for ever (every later taker would hang) nor released twice -- and the
    machine runs on: checkers pass, the CPU runs the VM driver again, nothing lost."""
    from aerosync.sync.objlock import RW_KEPT, RW_LOCK_MASK, SPIN_OWNER

    func, text, cond, kind = LOCK_WINDOWS[window]
    where = tmp_path / "lock"
    seen = [0]

    def match(frame: Any, line: str) -> bool:
        if frame.f_code.co_name != func or text not in line or not cond(frame):
            return False
        seen[0] += 1
        if seen[0] < 40:                             # mid-run
            return False
        where.write_text(str(frame.f_locals["off"]))
        return True

    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, match))
    off = int(where.read_text())
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    w = a.atomic.load64(off)
    if kind == "spin":
        assert w & SPIN_OWNER == 0, f"{window}: spinlock word {w:#x} after recovery"
    else:
        assert w & (RW_LOCK_MASK | RW_KEPT) == 0, f"{window}: rwsem word {w:#x} after recovery"
    assert I.lock_pending(a, 0) is None
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["q[r + 2] = v", "q[(v + V.V_START) >> 3] = start"])
def test_mmap_new_vma_not_yet_in_its_record(machine, text: str) -> None:
    """mmap_region's new VMA: handed out by SLUB, not yet named by the vm_mmap record
    (step 0, a1 = 0: the hand-off word names it), or named and half set up (step 0):
    recovery frees it -- nothing lost, the machine runs on."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(5, H.at_line("map_region", text)))
    assert [(r.name, r.step) for r in I.read_records(a, 0)] == [("vm_mmap", 0)]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.objects >= 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["offs: list[list[int]] = []", "self._retire_windows(old_top, windows)"])
def test_maple_store_nodes_nobody_names(machine, text: str) -> None:
    """A maple-tree store of a VMA operation killed with its new nodes allocated and not
    published, or published with the nodes they replace not yet retired: no record
    names them; recovery's sweep of the maple_node cache frees them (and only them)."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(7, H.at_line("_rebuild", text), H.vm_split_driver()))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.scan.get("maple_nodes_swept", 0) >= 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["fn(arg)", "q[i_head] += 1"])
def test_rcu_free_in_flight_at_the_rings_head(machine, text: str) -> None:
    """The dead CPU's RCU poll was running a VMA's free -- before it or after it, the
    entry still the ring's head: recovery frees it once, after the records, only if the
    object is still allocated -- the ring accounts for it, not the orphan sweep."""
    vma_free = H.at_line("poll", text, lambda f: f.f_locals["fn"].__name__ == "really_free")   # a VMA's
    a, p, pid = _vm_killed(machine, H.async_vm_driver(3, vma_free, H.vm_split_driver()))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.scan.get("vmas_swept", 0) == 0, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
def test_munmap_vma_progress_stored_not_yet_freed(machine) -> None:
    """remove_vmas stores its progress before the free it names (a death in between
    leaks, never frees twice): the VMA is then in no tree and no RCU ring -- the sweep
    frees it."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(5, H.at_line("remove_vmas", "vma_free(v)"),
                                                      H.vm_split_driver()))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.scan.get("vmas_swept", 0) == 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["u32[hi] = pfn", "u8[lruid + pfn] = li"])
def test_lru_batch_drain_torn_under_lru_lock(machine, text: str) -> None:
    """lru_add_drain killed inside its lru_lock hold, a folio half-linked at a list's
    head (or linked, its LRUID byte not yet stored) and the hold's counts not applied:
    the node's lists are rebuilt before the lock is released, and the batch -- emptied
    only after its hold -- is drained again by the offline (linked folios skipped),
    every reference put: nothing lost, the checkers pass."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(5, H.at_line("lru_add_drain", text)))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.scan.get("lru_lists_rebuilt") == 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["processes", "threads"])
@pytest.mark.parametrize("text", ["la = ext.lru_add", "fetch_add((ns_anon", "fetch_add(mm_base", "q[r + 7] = 3"])
def test_fast_fault_inserted_counts_half_done(machine, text: str, mode: str) -> None:
    """anon_write_fast killed after its tree insert landed, between the counts that
    follow it (nr_pages, the LRU batch, nr_anon_pages, rss) and its step 3: the record
    says step 5 whichever landed, so recovery keeps the page in the tree and the counts
    are settled from the structures (mm/vm/recover.py settle_counts): nr_anon_pages
    outlives the task's exit, which uncounts only what its PTEs map."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(9, H.at_line("anon_write_fast", text)), mode)
    assert [(r.name, r.step) for r in I.read_records(a, 0)][:1] == [("vm_fault", 5)]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    if text in ("fetch_add(mm_base", "q[r + 7] = 3"):             # nr_anon_pages counted: settled
        assert rec.scan.get("vm_counters_settled", 0) >= 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["if not e & _P_OR_NONE:", "kind = kind_of(pfn)",
                                  "if fetch_sub32(pb + P_MAPCOUNT, 1) == 1:", "q[gr + 7] = len(pages) + 1",
                                  "q[gr + 3] = 0"])
def test_zap_pte_cleared_page_not_yet_gathered(machine, text: str) -> None:
    """A logged zap killed after the xchg cleared a PTE and before the gather's step
    counts its page (its mapcount drop maybe done): the record named the page and its
    PTE first, so recovery gathers it (its PTE reference put after the flush) with its
    mapcount from an rmap walk; the munmap finishes and nothing is lost.  Killed after
    the step counted it, before a2 let it go: a2's spill slot says it is counted --
    before, recovery gathered the slot after it too (the explorer's vmfile run: a
    stale or empty slot freed, pfn 0)."""
    recs = _driver_killed_runs_on(machine, "vm", "zap_range", text, 3)
    assert recs[0].name == "vm_gather" and recs[0].args[2], [str(r) for r in recs]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("func,text", [("anon_write_fast", "if pfn < 0:"), ("anon_write_fast", "q[r + 4] = pfn"),
                                       ("new_page", "u8[o : o + PAGE_SIZE] = ZERO"),
                                       ("new_page", "u32[PM4 + pfn * MW4] |= PG_swapbacked")])
def test_fault_page_allocated_not_yet_in_its_record(machine, func: str, text: str) -> None:
    """A fault killed after the allocator handed it a page and before its vm_fault
    record names it (step 0, zeroing or copying it): the record's hand-off window names
    the page, and recovery frees it."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(4, H.at_line(func, text)))
    recs = I.read_records(a, 0)
    assert [(r.name, r.step) for r in recs][:1] == [("vm_fault", 0)], [str(r) for r in recs]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.pages >= 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["q[b + i_idx] = 0", "pfns.append(e >> 2)", "return pfns"])
def test_object_destroy_entry_cleared_not_yet_put(machine, text: str) -> None:
    """A vm_object's robust destroy killed inside untree, the folio's mapping already
    cleared and its tree reference not yet put (step 2): the record said, before the
    erase, that the folio was the object's own -- recovery puts it (a cleared mapping
    alone looks like another object's stale copy)."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(3, H.at_line("untree", text)))
    recs = I.read_records(a, 0)
    assert [(r.name, r.step) for r in recs][:1] == [("vm_obj_destroy", 2)], [str(r) for r in recs]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("func,text", [("walk_alloc", "e = (new << PAGE_SHIFT) | _PAGE_TABLE"),
                                       ("free_level", "gather.add_table(child)")])
def test_page_table_nobody_reaches(machine, func: str, text: str) -> None:
    """A page table allocated and not yet linked (walk_alloc before page_table_lock), or
    unlinked and not yet in the gather (free_pgd_range): no record names it and no mm
    reaches it -- the settle after a kill from outside frees it and counts it out."""
    drv = H.vm_split_driver() if func == "free_level" else None
    a, p, pid = _vm_killed(machine, H.async_vm_driver(2, H.at_line(func, text), drv))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.scan.get("tables_swept") == 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fn", ["node_free", "free_record"])
def test_rcu_free_of_a_tree_node_or_object_not_yet_queued(machine, fn: str) -> None:
    """An xa_erase's emptied page-tree node, or a destroyed vm_object, handed to
    call_rcu and killed before its ring entry was counted: no tree, no object and no
    ring names it -- the sweep after a kill from outside frees it."""
    match = H.at_line("call_rcu", "tag = load(gp)", lambda f: f.f_locals["fn"].__name__ == fn)
    a, p, pid = _vm_killed(machine, H.async_vm_driver(2, match))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    key = "xa_nodes_swept" if fn == "node_free" else "vm_objects_swept"
    assert rec.scan.get(key) == 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
def test_anon_object_made_not_yet_installed(machine) -> None:
    """A VMA's first fault made its anonymous object and died before the CAS installed
    it: the object is nobody's -- swept."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, H.at_line("anon_prepare", "seen = cas(")))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.scan.get("vm_objects_swept") == 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("func,text", [("lru_add", "u32[b32 + n] = pfn"), ("lru_add", "q[bn_i] = n + 1"),
                                       ("lru_add_drain", "free_pages_bulk(pfns)")])
def test_lru_batch_references_in_flight(machine, func: str, text: str) -> None:
    """A folio's batch reference taken and not yet counted in the batch (lru_add), or a
    drained batch emptied with none of its references put yet: the settle after a kill
    from outside gives a folio still in use its true refcount and frees one nothing
    reaches any more (a COW's old page whose last reference was the batch's)."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(3, H.at_line(func, text)))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.scan.get("vm_pages_settled", 0) + rec.scan.get("orphan_folios", 0) >= 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


def _in_munmap(f: Any) -> bool:
    g = f.f_back
    while g is not None and g.f_code.co_name != "do_munmap_locked":
        g = g.f_back
    return g is not None


@pytest.mark.timeout(120)
def test_munmap_from_a_hole_killed_before_its_erase(machine) -> None:
    """A munmap whose range starts in a hole, killed while its tree erase allocates
    nodes (step 0, nothing changed): recovery must test the first victim's own first
    address to see whether the erase landed -- testing `start` (unmapped either way)
    rolled the munmap forward, and map_count later underflowed."""
    from aerosync.lib.maple_tree import MapleTree
    from aerosync.mm.vm import mm_types as T

    a, p, pid = _vm_killed(machine, H.async_vm_driver(3, H.at_line("_alloc", "got: list[int] = []", _in_munmap),
                                                      H.vm_split_driver()))
    (r,) = I.read_records(a, 0)
    assert (r.name, r.step) == ("vm_munmap", 0), str(r)
    assert MapleTree(a, T.mm_off(a, r.args[0]) + T.M_MT).mtree_load(r.args[1]) in (0, None), "start is mapped"
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["q[(m + T.M_MAP_COUNT) >> 3] -= len(victims)",
                                  "if q[(v + V.V_FLAGS) >> 3] & V.VM_LOCKED:", "if r >= 0 and fp:"])
def test_munmap_killed_lowering_its_counts(machine, text: str) -> None:
    """A munmap killed around its map_count and locked_vm drop, its VMAs detached and out
    of the tree: the counts are lowered once.  Before (step 1 stored after the counts), a
    kill after the map_count drop was rolled forward from step 0, which lowered it again
    (the explorer's vmfile run: map_count below zero, recovery raised)."""
    recs = _driver_killed_runs_on(machine, "vmfile", "do_munmap_locked", text, 1)
    assert [r.name for r in recs][:1] == ["vm_munmap"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["frozen = cas32(", "u32[pm_flags32 + pfn * (PAGE_META_SIZE >> 2)] = 0",
                                  "if frozen:", "free_frozen_pages(pfn, 0, False)"])
def test_gathered_table_killed_in_its_free(machine, text: str) -> None:
    """A munmap's gathered page table killed inside free_table, the gather's record no
    longer naming it: still PG_table (refcount 1, or frozen to 0) it is an unreachable
    table settle_counts frees (PT1); its flag cleared, a page in no state the page
    allocator's scan frees.  Before (the flag cleared while the refcount was still 1),
    a kill before the free lost the page (the explorer's vmfile run)."""
    def in_flush(f: Any) -> bool:
        return f.f_back is not None and f.f_back.f_code.co_name == "flush"

    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, H.at_line("free_table", text, in_flush)))
    assert [r.name for r in I.read_records(a, 0)][:1] == ["vm_gather"]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


def _logged(f: Any) -> bool:
    return f.f_back.f_code.co_name == "destroy_steps"


# A vm_object's destroy (vm_object.py destroy_steps, robust mode) killed after mark_dead
# cut it from its backing, or between two objects of a chain: window -> (function, text
# of the line the CPU dies before, frame test).
OBJ_DESTROY_WINDOWS: dict[str, tuple[str, str, Any]] = {
    "cut_still_locked": ("mark_dead", "up_write(o + O_LOCK)", lambda f: f.f_locals["back"] and _logged(f)),
    "cut_unlocked": ("mark_dead", "return back", lambda f: f.f_locals["back"] and _logged(f)),
    "chain_backing_dropped": ("destroy_steps", "nxt = back                     # its last", None),
    "chain_freed_next_not_named": ("destroy_steps", "o, step, back = nxt, 0, 0", None),
    "chain_next_named_not_stepped": ("destroy_steps", "q[r + 7] = 0", None),
}


def _chain_driver(rounds: int = 3) -> Any:
    """Objects whose destroy moves on to its backing in one record: a shadow over a
    MAP_SHARED anonymous object (never collapsed into a child), the shared object's own
    reference put first, then the shadow's -- the last reference to the shared one."""
    def drive(arena: Any, cpu: int) -> None:
        from aerosync.mm.vm.vm import VM
        from aerosync.mm.vm.vm_object import OBJ_ANON, OBJF_SHARED

        vm = VM(arena, cpu)
        vm.make_current()
        objs = vm.objs
        for _ in range(rounds):
            o = objs.alloc(OBJ_ANON, 16, OBJF_SHARED)
            s = objs.shadow(o, 0, 16)
            objs.put(o)
            objs.put(s)
        vm.leave()

    return drive


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(OBJ_DESTROY_WINDOWS))
def test_object_destroy_killed_after_its_cut(machine, window: str) -> None:
    """A shadow object's destroy killed once mark_dead cut it from its backing (still
    under its lock, or after), or as it moves on to the backing whose last reference it
    dropped (its own reference dropped; freed, the backing not yet named; named, not yet
    at step 0): the backing is put exactly once and destroyed if that was its last
    reference, nothing is lost.  Before, the backing lived only in a local until after
    the cut: recovery's mark_dead found none, the backing kept a dead child and a
    reference, and settle_counts later destroyed through the freed child (the
    explorer's vmfile run: a lock word at a garbage address).  The chain's three pass
    either way: recovery stopped at the record's step 4 or 5 and settle_counts destroyed
    the unreferenced backing; now the record's recovery does (exact at fault points
    too, where no settle runs)."""
    func, text, cond = OBJ_DESTROY_WINDOWS[window]
    if window.startswith("chain"):
        recs = _killed_runs_on(machine, {"vm": {}, "nr_pages": 4096}, _chain_driver(), H.at_line(func, text, cond),
                               1, H.vm_fork_driver(rounds=3, seed=2))
    else:                                             # (where the explorer found it)
        cfg, drv, again, setup = _vm_driver("vmfile")
        recs = _killed_runs_on(machine, cfg, drv, H.at_line(func, text, cond), 1, again, setup)
    assert "vm_obj_destroy" in [r.name for r in recs]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("caller", ["dup_mm_body", "task_create"])
def test_mm_claimed_before_its_step(machine, caller: str) -> None:
    """fork's dup_mm (or a task_create's mm_alloc) killed right after it claimed an mm
    record and named it (a0), before step 1: recovery frees the claimed record.  Before,
    step 0 was taken as "nothing done" and the record stayed claimed for good (MM1; the
    explorer's fork run)."""
    drv = H.vm_fork_driver() if caller == "dup_mm_body" else H.vm_driver()
    match = H.at_line("mm_alloc", "q[r + 7] = 1", lambda f: f.f_back.f_code.co_name == caller)
    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, match, drv))
    assert [r.step for r in I.read_records(a, 0)][:1] == [0]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
def test_thread_create_killed_after_naming_its_mm(machine) -> None:
    """Threads mode: a thread's task_create killed after its mmget and a0 = the mm,
    before step 2 (the mm is live, shared with cpu1's thread): recovery drops the user
    it took, once; the live thread's mm stays whole and tears down at its exit."""
    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": "threads"})
    vm1, t1 = H.task_vm(a, 1, "live")
    mm = vm1.cur[1]
    users = a.u64[(MT.mm_off(a, mm) + MT.M_USERS) >> 3]
    grow = H.brk_grow_driver(mm, vm1.brk(0))
    pid, killed = H.run_child(a, 0, H.async_vm_driver(1, H.at_line("task_create", "q[r + 7] = 2"), grow))
    assert killed
    assert [(r.name, r.step, r.args[0]) for r in I.read_records(a, 0)] == [("vm_task_create", 0, mm)]
    H.recover(a, pid, 0, p, H.vm_recover_hook)
    H.check_all(a)
    assert a.u64[(MT.mm_off(a, mm) + MT.M_USERS) >> 3] == users
    vm1.exit()
    vm1.reap(t1)
    vm1.leave()
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["pid = at.fetch_add64(hdr + T.H_NEXT_PID, 1)", "return tid"])
@pytest.mark.parametrize("caller", ["fork", "task_create"])
def test_task_claimed_before_its_record_step(machine, caller: str, text: str) -> None:
    """A fork (or a task_create) killed with its task record claimed -- not yet
    filled, or filled -- and its vm_task_create record still at step 2: recovery frees
    the task and drops the mm user once.  Before, the record did not know the task: its
    undo dropped the mm user, then the dead CPU's exit_tasks found the new child and
    exited it, dropping that user again (the explorer's filefork run: "mmput: mm 2 has
    no users")."""
    drv = H.vm_fork_driver() if caller == "fork" else H.vm_driver()     # (its own task's)
    match = H.at_line("task_alloc", text, lambda f: f.f_back.f_code.co_name == caller)
    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, match, drv))
    assert [(r.name, r.step) for r in I.read_records(a, 0)][:1] == [("vm_task_create", 2)]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


# A collapse's splice (vm_object.py collapse, robust mode): function -> text of the line
# the CPU dies before (the first collapse of the filefork driver, whose backing has one).
SPLICE_WINDOWS: dict[str, tuple[str, str]] = {
    "splice_half_stored": ("move_up", "q[(back + O_BACKING) >> 3] = 0"),
    "spliced_unlocked": ("collapse", "if not ok:"),
    "next_locked": ("splice_tail", "kids = children_of(nb)"),
    "next_unlinked": ("splice_tail", "if o not in kids:"),
    "depths": ("splice_tail", "set_depth(o, u32[(nb + O_DEPTH) >> 2] + 1 if nb else 0)"),
    "backing_not_put": ("collapse", "put(back)          # o's reference"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(SPLICE_WINDOWS))
def test_collapse_killed_in_its_splice(machine, window: str) -> None:
    """A collapse killed once every entry moved: inside the splice under both locks,
    after it, while o takes back's place on the next object's child list, before the
    depths, before back's put.  Recovery redoes the splice whole (step 3) and puts back
    once.  Before, the record ended with the locks and had no step for the splice: a
    kill inside it left a half-spliced chain (recovery raised on a garbage lock
    address), one after it or before the child list's update left O3 and O8 broken (the
    explorer's filefork run); the last three windows were settled (settle_counts)."""
    func, text = SPLICE_WINDOWS[window]
    cond = (lambda f: f.f_locals["nb"]) if func == "splice_tail" else None
    cfg, drv, again, setup = _vm_driver("filefork")
    recs = _killed_runs_on(machine, cfg, drv, H.at_line(func, text, cond), 1, again, setup)
    assert "vm_collapse" in [r.name for r in recs]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["q[rh + 4] = pfn", "q[rh + 7] = 1", "got = insert(obj, idx, pfn, False)"])
def test_page_cache_fill_killed_holding_its_new_folio(machine, text: str) -> None:
    """A file fault reading a new folio into the page cache (filemap.py add_to_cache,
    vm_file_add at step 1) killed after it took the caller's reference beside the
    allocation's -- before its vm_file_hold names the folio or stores its step, or
    after, before the insert: recovery frees the unpublished folio with every reference
    on it, and the hold's recovery finds it free and puts nothing.  Before, the undo
    dropped one reference, so a hold not yet at step 1 left the folio allocated for
    good (the explorer's vmfile run: 1 page lost; the first two windows failed)."""
    recs = _driver_killed_runs_on(machine, "vmfile", "add_to_cache", text, 1)
    assert [(r.name, r.step) for r in recs][:1] == [("vm_file_add", 1)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["o = PHYS + (pfn << PAGE_SHIFT)", "u8[o : o + PAGE_SIZE] = zero"])
def test_page_table_allocated_not_yet_marked(machine, text: str) -> None:
    """A page-table allocation killed between the allocator's hand-off and its PG_table
    store (no record: the page looks like anybody's plain page): its hand-off window
    names it and recovery frees it."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(2, H.at_line("alloc_table", text)))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.pages >= 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("nth", [2, 4])
def test_munmap_record_published_before_its_victims(machine, nth: int) -> None:
    """A munmap killed right after its record was published (begin returned): the
    record must already say which VMAs it takes -- a stale victim count and spill from
    an earlier record at that depth were rolled forward as if erased (map_count
    underflowed)."""
    def published(f: Any) -> bool:
        return f.f_back is not None and f.f_back.f_code.co_name == "do_munmap_locked"

    a, p, pid = _vm_killed(machine, H.async_vm_driver(nth, H.at_line("begin", "return r", published),
                                                      H.vm_fork_driver()))
    assert [(r.name, r.step) for r in I.read_records(a, 0)][:1] == [("vm_munmap", 0)]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["objs.put(o)", "vm_stat_account(mm_id, q[(v + V.V_FLAGS) >> 3]",
                                  "q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] -= 1", "vma_free(v)"])
def test_mremap_old_vma_removal_half_done(machine, text: str) -> None:
    """mremap's move killed while removing the old VMA: before or after its object
    reference was put, between its two counts, before its free.  Recovery resumes from
    the step it stored (5 before the put, 6 once counted out), so nothing is put or
    counted twice; what a kill between a step and its action leaks is settled."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, H.at_line("remove_vma_now", text), H.vm_split_driver()))
    assert [r.name for r in I.read_records(a, 0)][:1] == ["vm_mremap"]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("func,text", [("lru_del", "unlink(nid, pfn)"), ("unlink", "u32[b + 4] = u32[b + 5] = NIL"),
                                       ("unlink", "i64[ns + nid * NS + stat_item(nid, li)] -= 1"),
                                       ("lru_del", "fetch_and32((PM4 + pfn * MW4) << 2, ~(PG_lru")])
def test_free_path_killed_unlinking_from_the_lru(machine, func: str, text: str) -> None:
    """A folio's last put killed inside lru_del (refcount 0, under lru_lock): the
    rebuild of the node's lists must not put that folio back on one -- the page
    allocator's recovery finishes its free, and a list still naming it would be
    corrupted when the free reuses its links."""
    def in_remove(f: Any) -> bool:                   # an object's page removal (munmap) freeing it
        g = f
        while g is not None and g.f_code.co_name != "page_remove_logged":
            g = g.f_back
        return g is not None and (f.f_code.co_name == "lru_del" or f.f_back.f_code.co_name == "lru_del")

    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, H.at_line(func, text, in_remove), H.vm_split_driver()))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    assert rec.scan.get("lru_lists_rebuilt") == 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


def _killed_runs_on(machine: Any, cfg: dict[str, Any], drv: Any, match: Any, nth: int, again: Any,
                    setup: Any = None) -> Any:
    """A machine of `cfg` whose CPU 0 ran driver `drv` and was killed at its nth `match`
    (crash_helpers.at_line): recovered, checked, back online running `again` to its
    end, checked again, nothing lost (its swap turned off after, if it has one).
    `setup(arena, params)` makes the files the drivers map first (their ids: their
    page cache is in use, not lost).  Returns the records it died with."""
    p = H.soak_params()
    a = H.soak_machine(machine, p, **cfg)
    try:
        files = tuple(setup(a, p)) if setup is not None else ()
        pid, killed = H.run_child(a, 0, H.async_vm_driver(nth, match, drv))
        assert killed, "the window was never reached"
        recs = I.read_records(a, 0)
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always", BadPageWarning)
                rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
                H.check_all(a)
            bad = [str(w.message) for w in seen if issubclass(w.category, BadPageWarning)]
            assert not bad, f"recovery freed a page badly: {bad}"
            flags = page_array(a)["flags"]
            locked = np.flatnonzero(((flags & PG_locked) != 0) & ((flags & (PG_buddy | PG_pcp)) == 0)).tolist()
            del flags
            assert not locked, f"folios left locked by the dead CPU: {locked[:8]}"
            cpuhp_online_mm(a, 0)
            H.free_held(a, 0, drv)
            _, k2 = H.run_child(a, 0, again)
            assert not k2
            H.check_all(a)
            lost = H.lost(a, p, 2, files)
            assert lost == {"pages": 0, "objects": 0}, f"lost {lost}; recovery {rec.to_dict()}"
        except AssertionError as e:
            raise AssertionError(f"{e} (the CPU died with records {[str(r) for r in recs]})") from e
        return recs
    finally:
        if "reclaim" in cfg:
            from aerosync.mm.reclaim.swapfile import swapoff

            swapoff(a)


def _vm_driver(kind: str) -> tuple[dict[str, Any], Any, Any, Any]:
    """(machine config, driver, second run, setup) of VM driver `kind`: "vm"
    (vm_driver), "fork", "split", "vmfile" (vm_file_driver), "filefork"
    (vm_file_fork_driver), "file" (file_reclaim_driver over the big file), "reclaim",
    "migrate", "vmalloc", "vmblock".  setup(arena, params) makes the files the driver
    maps (their page cache is in use, not lost), or None."""
    vm = {"vm": {}, "nr_pages": 4096}

    def small(a: Any, p: Any) -> tuple[int, ...]:
        return (H.vm_file_setup(a, p),)

    def big(a: Any, p: Any) -> tuple[int, ...]:
        return (H.vm_file_setup(a, p, name=H.BIG_FILE, pages=H.BIG_FILE_PAGES),)

    cfg, drv, again, setup = {
        "vm": (vm, H.vm_driver, lambda: H.vm_driver(rounds=5, seed=2), None),
        "fork": (vm, H.vm_fork_driver, lambda: H.vm_fork_driver(rounds=3, seed=2), None),
        "split": (vm, H.vm_split_driver, lambda: H.vm_split_driver(rounds=3, seed=2), None),
        "vmfile": (vm, H.vm_file_driver, lambda: H.vm_file_driver(rounds=5, seed=2), small),
        "filefork": (vm, H.vm_file_fork_driver, lambda: H.vm_file_fork_driver(rounds=3, seed=2), small),
        "file": (RECLAIM_CFG, H.file_reclaim_driver, lambda: H.file_reclaim_driver(rounds=1), big),
        "reclaim": (RECLAIM_CFG, H.reclaim_driver, lambda: H.reclaim_driver(1500, seed=2), None),
        "migrate": (MIGRATE_CFG, H.migrate_driver, lambda: H.migrate_driver(rounds=2, seed=2), None),
        "vmalloc": ({"vm": {}, "nr_pages": 8192}, H.vmalloc_driver, lambda: H.vmalloc_driver(rounds=20, seed=2),
                    None),
        "vmblock": ({"vm": {}, "nr_pages": 8192}, H.vmblock_driver, lambda: H.vmblock_driver(rounds=40, seed=2),
                    None),
    }[kind]
    return cfg, drv(), again(), setup


def _driver_killed_runs_on(machine: Any, kind: str, func: str, text: str, nth: int) -> Any:
    """_killed_runs_on with VM driver `kind` (_vm_driver), killed at the nth line of
    `func` containing `text`."""
    cfg, drv, again, setup = _vm_driver(kind)
    return _killed_runs_on(machine, cfg, drv, H.at_line(func, text), nth, again, setup)


def _vmalloc_killed_runs_on(machine: Any, match: Any, nth: int, block: bool, drv: Any = None) -> Any:
    """_killed_runs_on of a vmalloc driver (small block allocations, or large areas; or
    `drv`)."""
    drv = drv or (H.vmblock_driver() if block else H.vmalloc_driver())
    again = H.vmblock_driver(rounds=40, seed=2) if block else H.vmalloc_driver(rounds=20, seed=2)
    return _killed_runs_on(machine, {"vm": {}, "nr_pages": 8192}, drv, match, nth, again)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", [False, True])
def test_vmalloc_caller_killed_before_its_vfree_began(machine, block: bool) -> None:
    """A kernel caller killed with its vmalloc'd area in hand, its vfree called but no
    record begun yet (looking the area up; choosing the block path): the area is the
    caller's, not recovery's -- the driver names it and the test frees it as the dead
    caller's cleanup (crash_helpers.free_held); before, the explorer counted its 290
    pages lost.  Nothing else is lost, and the checkers pass."""
    if block:
        match = H.at_line("vfree", "if not vb_free(addr, vb, True):")
    else:
        match = H.at_line("find_vmap_area", "acq()", lambda f: f.f_back.f_code.co_name == "remove_vm_area")
    recs = _vmalloc_killed_runs_on(machine, match, 3, block)
    assert not [r for r in recs if r.name in ("vm_vfree", "vm_vb_free")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["if pfn < 0:", "q[r + 5] = pfn"])
def test_small_vmalloc_page_handed_out_not_yet_in_hand(machine, text: str) -> None:
    """A small vmalloc filling its block range killed between the allocator's hand-off
    of a page and the record's a4 naming it: the hand-off window names the page, and
    recovery frees it with the rest of the undone allocation."""
    recs = _vmalloc_killed_runs_on(machine, H.at_line("vb_fill_logged", text), 7, True)
    assert [(r.name, r.step, r.args[4]) for r in recs][:1] == [("vm_vb_alloc", 3, 0)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("nth", [1, 6])
@pytest.mark.parametrize("text", ["u32[(vb + VL.VB_FREE) >> 2] = free - n", "bits_set(vb + VL.VB_USED, off, n)",
                                  "bits_set(vb + VL.VB_STARTS, off, 1)", "u32[(vb + VL.VB_NR_USED) >> 2] += n"])
def test_vb_alloc_carve_half_landed(machine, text: str, nth: int) -> None:
    """A small vmalloc killed inside its carve (a new block's, nth 1; a queued block's
    under its lock, later): the record said step 0 or 2 and nothing of the range, so
    the block's tail moved with no allocation to undo (VA4: free + dirty + used != 256).
    The record now names the range at step 3 with a5 "carving" before the carve lands;
    recovery completes the carve and undoes the allocation."""
    recs = _vmalloc_killed_runs_on(machine, H.at_line("carve", text, lambda f: f.f_back.f_locals["r"] >= 0), nth,
                                   True)
    assert [(r.name, r.step, r.args[5]) for r in recs][:1] == [("vm_vb_alloc", 3, 1)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("func", "text"), [
    ("vb_alloc", "vbq_unlink(my_vbq, prev, vb)"),                            # a full block still queued
    ("vb_alloc", "q[(vb + VL.VB_NEXT) >> 3] = q[(my_vbq + VL.VBQ_HEAD) >> 3]"),   # QUEUED, on no queue
    ("vb_alloc", "q[(my_vbq + VL.VBQ_NR) >> 3] += 1"),                       # queued, not counted
    ("retire_idle_block", "vbq_unlink(qo, prev, vb)"),                       # a dead block still queued
])
def test_block_queue_torn_under_its_lock(machine, func: str, text: str) -> None:
    """A CPU killed while changing a vmap_block queue under &vbq->lock: recovery makes
    every queue whose lock is free agree with its blocks (repair_block_queues) before
    the dead blocks are freed -- else a dead block freed while still linked, a full one
    on a queue, or a block with room on none (VA4)."""
    drv = H.vmblock_driver(pages=127) if text.startswith("vbq_unlink(my_vbq") else None
    _vmalloc_killed_runs_on(machine, H.at_line(func, text), 1, True, drv)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["dirty = u32[(vb + VL.VB_DIRTY) >> 2] + n", "u32[(vb + VL.VB_DIRTY) >> 2] = dirty",
                                  "dead = dirty == _BITS"])
def test_vb_free_tail_counts_half_moved(machine, text: str) -> None:
    """A vb_free killed inside its tail under the block's lock, the counts part-moved
    (step 2): recovery's redo sets nr_used and dirty from the bits instead of moving
    them by n again (VA4, and a block that never retires)."""
    recs = _vmalloc_killed_runs_on(machine, H.at_line("vb_free_tail", text, lambda f: f.f_locals["r"] >= 0), 4, True)
    assert [(r.name, r.step) for r in recs][:1] == [("vm_vb_free", 2)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("huge", [False, True])
def test_vmalloc_block_handed_out_not_yet_in_hand(machine, huge: bool) -> None:
    """A vmalloc filling its area killed between the allocator's hand-off of a page (or,
    in a huge area, a PMD-sized block) and the record's a3 naming it: the hand-off
    window names it, and recovery frees it (at a4's order) with the rest of the undone
    area."""
    def where(f: Any) -> bool:
        return bool(f.f_locals["huge"]) == huge and (not huge or not f.f_locals["a"] & ((2 << 20) - 1))

    recs = _vmalloc_killed_runs_on(machine, H.at_line("vmalloc_logged", "q[r + 4] = pfn", where), 1 if huge else 3,
                                   False, H.vmalloc_huge_driver() if huge else None)
    assert [(r.name, r.step, r.args[3], r.args[4]) for r in recs][:1] == [("vm_vmalloc", 2, 0, 9 if huge else 0)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("func", "text"), [("unmap_range", "q[k] = 0"), ("unmap_range", "if free:"),
                                             ("put_named", "if fetch_sub32(rc, 1) != 1:"),
                                             ("put_named", "q[hand] = 0"),
                                             ("put_named", "free_frozen_pages(pfn, order, False)")])
def test_vfree_page_unmapped_not_yet_freed(machine, func: str, text: str) -> None:
    """A vfree of a block allocation killed between clearing a page's leaf and freeing
    the page: the record's a5 named it before the clear, so recovery frees it -- the
    PTE no longer says it was there -- unless its reference was dropped (put_named:
    then the page is in no state, and pmm recovery's scan frees it).  a5 is cleared
    only after the drop and before the page reaches a free list, so no page is freed
    twice and none leaks (a kill after the clear used to leak the page)."""
    def freeing(f: Any) -> bool:
        g = f if func == "unmap_range" else f.f_back
        return bool(g.f_locals.get("free")) and g.f_locals.get("hand", -1) >= 0

    recs = _vmalloc_killed_runs_on(machine, H.at_line(func, text, freeing), 5, True)
    assert [(r.name, r.step) for r in recs][:1] in ([("vm_vb_free", 1)], [("vm_vfree", 1)])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("func,text,block", [("vb_free", "n += 1", True),
                                             ("vb_free", "bits_clear(vb + VL.VB_USED, off, 1)", True),
                                             ("vb_free", "q[r + 7] = 1", True),
                                             ("remove_vm_area", "acq()", False),
                                             ("remove_vm_area", "q[r + 7] = 1", False)])
def test_vfree_begun_not_yet_claimed(machine, func: str, text: str, block: bool) -> None:
    """A vfree killed after its record opened and before its step 1 (the block
    allocation not yet claimed, or claimed without its step; the area still BUSY, or
    no longer): a vfree cannot fail, so recovery does it or resumes it -- the driver
    holds nothing else, and nothing may be left allocated."""
    recs = _vmalloc_killed_runs_on(machine, H.at_line(func, text), 3, block)
    assert [(r.name, r.step) for r in recs][:1] == [("vm_vb_free" if block else "vm_vfree", 0)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["block_unlock(vb + VL.VB_LOCK)", "elif idle:"])
def test_vb_free_done_record_back_at_step_0(machine, text: str) -> None:
    """A vb_free killed after its tail put the record back at step 0 (the block's
    retirement logs itself): that step 0 is a finished free -- its block cleared from
    the record -- not one to do again (which counted the range out twice)."""
    recs = _vmalloc_killed_runs_on(machine, H.at_line("vb_free_tail", text), 3, True)
    assert [(r.name, r.step, r.args[0]) for r in recs][:1] == [("vm_vb_free", 0, 0)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["lock(nid)", "held += 1"])
def test_batch_free_put_not_yet_unlinked(machine, text: str) -> None:
    """free_pages_bulk killed after folios_put dropped a batch's references and before
    lru_del_many unlinked them (taking lru_lock, or between two of them): folios with
    refcount 0 are still listed.  Recovery drops them from their lists before the page
    allocator's scan finishes their free -- else a freed page's links were a list's."""
    a, p, pid = _vm_killed(machine, H.async_vm_driver(2, H.at_line("lru_del_many", text), H.vm_split_driver()))
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    # (dropped by the rebuild at takeover when the dead CPU held lru_lock, else here)
    assert rec.scan.get("lru_freeing_dropped", 0) + rec.scan.get("lru_lists_rebuilt", 0) >= 1, rec.to_dict()
    _vm_runs_on(a, p, rec)


def _in_map_new(f: Any) -> bool:
    g = f
    while g is not None and g.f_code.co_name != "map_new_body":
        g = g.f_back
    return g is not None


@pytest.mark.timeout(120)
def test_cow_copy_published_record_not_yet_told(machine) -> None:
    """A COW fault killed after its copy's tree insert published (the store's new
    nodes in the tree, the vm_xa_nodes record not yet ended, the fault still at step
    1): the nodes are kept (the tree reaches them: freeing them corrupted the cache),
    and the copy -- in the tree, the PTE still mapping the shared page -- is taken out
    as at step 2 (kept, it shadowed the mapped page and the counts went wrong at exit)."""
    match = H.at_line("_published", "if self.track is not None:", _in_map_new)
    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, match, H.vm_fork_driver()))
    recs = [(r.name, r.step) for r in I.read_records(a, 0)]
    assert recs[:2] == [("vm_xa_nodes", 1), ("vm_fault", 1)], recs
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["return s", "if r >= 0:"])
def test_fork_shadow_made_not_yet_in_its_record(machine, text: str) -> None:
    """fork's dup_mm killed after objs.shadow made a shadow (a child of the VMA's
    object, referenced by nothing) and before its record named it: reachable only from
    its backing's children list, it is destroyed by the settle (its backing's
    reference with it)."""
    def in_dup(f: Any) -> bool:
        return f.f_code.co_name == "dup_mm_body" or f.f_back.f_code.co_name == "dup_mm_body"

    func = "shadow" if text == "return s" else "dup_mm_body"
    match = H.at_line(func, text, in_dup) if func == "shadow" else H.at_line(
        func, text, lambda f: f.f_locals.get("sp") and not f.f_locals.get("sc"))
    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, match, H.vm_fork_driver()))
    assert [(r.name, r.step) for r in I.read_records(a, 0)][:1] == [("vm_dup_mm", 3)]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
def test_fork_vma_copy_inserted_not_yet_linked(machine) -> None:
    """fork's dup_mm killed after a VMA copy's insert into the child's tree landed (its
    replaced nodes being retired) and before it was linked and counted: recovery takes
    it out of the child's tree before freeing it -- the child's teardown unmapped the
    freed copy and map_count underflowed (a defect before this session)."""
    def in_dup(f: Any) -> bool:
        g = f
        while g is not None and g.f_code.co_name != "dup_mm_body":
            g = g.f_back
        return g is not None

    a, p, pid = _vm_killed(machine, H.async_vm_driver(1, H.at_line("_retire_windows", "self._retire(off)", in_dup),
                                                      H.vm_fork_driver()))
    assert [(r.name, r.step) for r in I.read_records(a, 0)][:1] == [("vm_dup_mm", 3)]
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("nth", [1, 2])
@pytest.mark.parametrize("where", ["returned", "unlocking"])
def test_cow_copy_in_the_tree_at_step_1(machine, nth: int, where: str) -> None:
    """A COW fault killed after its copy's insert landed (releasing the object lock, or
    returned; the record still at step 1): the copy leaves the tree and is freed as at
    step 2, and is not put on the LRU first (its batch reference kept it allocated,
    still naming the object: O1)."""
    if where == "returned":
        match = H.at_line("map_new_body", "# another CPU put a page there first", lambda f: f.f_locals["expect"] & 1)
    else:
        match = H.at_line("insert", "up_write(o + O_LOCK)", lambda f: f.f_back.f_code.co_name == "map_new_body"
                          and f.f_back.f_locals["expect"] & 1)
    a, p, pid = _vm_killed(machine, H.async_vm_driver(nth, match))
    (r,) = [r for r in I.read_records(a, 0) if r.name == "vm_fault"]
    assert r.step == 1 and r.args[5] & 1, str(r)
    rec = H.recover(a, pid, 0, p, H.vm_recover_hook)
    _vm_runs_on(a, p, rec)


# NUMA migration (mm/numa/migrate.py) killed between the states of its record: name ->
# (function, text of the line the CPU dies before, nth).  The driver moves 20 folios a
# round on the fast path (move_pages, nth 1-20), then 20 on the general one
# (migrate_to_node).
MIGRATE_CFG: dict[str, Any] = {"vm": {}, "nr_nodes": 2, "nr_pages": 4096, "numa": {}}   # two nodes (migrate_driver)
MIGRATE_WINDOWS: dict[str, tuple[str, str, int]] = {
    # the destination page allocated, its spill word not yet stored: the hand-off window
    "destination_not_logged": ("_round", "q[wj + 1] = nw + 1", 5),
    # a folio logged frozen whose move landed -- the tree names the destination -- is
    # rolled forward (_finish_move), not undone through the object the old page no
    # longer names
    "new_page_named": ("move_mapping", "q[b8 + i_map] = q[b8 + i_idx] = 0", 3),
    "old_page_cleared_under_lock": ("move_mapping", "obj_unlock(o + 16)", 23),
    "fast_accounting_not_begun": ("move_account", "fetch_sub32((PM4 + pfn * MW4 + 3) << 2, 1)", 2),
    "fast_accounting_half_done": ("move_account", "u32[n4 + 2], u32[n4 + 3] = 2, 1", 4),
    "general_moved_not_logged": ("_round", "q[wj] = w0 | MS_MOVED", 22),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(MIGRATE_WINDOWS))
def test_migration_killed_between_states(machine, window: str) -> None:
    """A migration killed with its destination page not yet logged (recovery frees it:
    it leaked), or after move_mapping's xa_store (still inside it, or before the fast
    path's accounting or the record's state 4: recovery finishes the move -- the PTEs
    map the new page, the old page is freed -- where undoing it looked for the object
    through the old page and waited forever on the lock at arena offset 16)."""
    func, text, nth = MIGRATE_WINDOWS[window]
    recs = _killed_runs_on(machine, MIGRATE_CFG, H.migrate_driver(),
                           H.at_line(func, text), nth, H.migrate_driver(rounds=2, seed=2))
    (r,) = [r for r in recs if r.name == "vm_migrate"]
    assert r.step >= 1, str(r)                       # the folios it logged


# A machine under memory pressure with swap (reclaim_driver, lazyfree_driver).
RECLAIM_CFG: dict[str, Any] = {"vm": {}, "nr_pages": 2048, "reclaim": {"lru": "mglru", "swap_size": 16 << 20}}


# The compressed pool (mm/reclaim/zmm.py "Crash tolerance") killed under its lock, and
# the swap device under &ci->lock / si->lock: name -> (function, text of the line the
# CPU dies before, nth).  reclaim_driver's pages compress well, so its swap-outs go to
# the pool, its swap-ins and its munmap drop copies, empty zspages and free slots.
SWAP_WINDOWS: dict[str, tuple[str, str, int]] = {
    "slot_taken_not_counted": ("alloc_in", "u32[(ci + R.CI_COUNT) >> 2] += 1", 3),
    "slot_counted_not_in_use": ("alloc_in", "at.fetch_add64(inuse, 1)", 2),
    "slot_freed_not_uncounted": ("free_slot_locked", "u32[(ci_of(offset) + R.CI_COUNT) >> 2] -= 1", 2),
    "cluster_half_listed": ("_list_add", "u32[(h + 4) >> 2] = c", 1),
    "cluster_half_unlisted": ("_list_del", "q[(h + 8) >> 3] -= 1", 1),
    "new_zspage_not_listed": ("zs_malloc", "o = PHYS + (zp << PAGE_SHIFT)", 1),
    "new_zspage_listing": ("zs_malloc", "q[(zc + R.ZC_PARTIAL) >> 3] = zp + 1", 2),
    "object_taken_not_counted": ("zs_malloc", "q[(zc + R.ZC_INUSE) >> 3] += 1", 5),
    "object_had_no_handle": ("store", "q[szmm8 + slot] = h", 3),
    "handle_not_on_lru": ("store", "lru_add(slot)", 4),
    "lru_half_linked": ("lru_add", "q[H(R.H_ZMM_LRU_TAIL)] = slot", 6),
    "stored_bytes_not_counted": ("store", "q[H(R.H_ZMM_BYTES)] += len(c)", 2),
    "handle_gone_object_not_freed": ("drop_locked", "zs_free(h)", 3),
    "free_list_pushed_not_counted": ("zs_free", "inuse -= 1", 2),
    "empty_zspage_unlinked": ("zs_free", "q[(zc + R.ZC_NR_ZSPAGES) >> 3] -= 1", 1),
    "empty_zspage_dropped": ("zs_free", "free_frozen_pages(zp, k.bit_length() - 1, False)", 1),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(SWAP_WINDOWS))
def test_swap_and_zmm_killed_under_their_locks(machine, window: str) -> None:
    """A CPU killed from outside inside the compressed pool, its lock held: recovery sets
    the pool from its handles (rebuild_zmm) -- free lists, inuse, partial lists, counts
    and LRU (ZM1-ZM4) -- and frees a zspage no handle names (a new one not yet listed,
    an empty one being freed); inside a swap slot's allocation or free, or a cluster
    list's update: the cluster counts, inuse_pages and lists are set from the slot map
    (rebuild_swap_clusters, SW3).  The checkers pass, the CPU runs the driver again, no
    page is lost."""
    _driver_killed_runs_on(machine, "reclaim", *SWAP_WINDOWS[window])


# The swap cache's folio side (mm/reclaim/swap_state.py): a CPU killed from outside while
# it put a new folio in the cache for a swap-in (new_cached), gave a folio to a slot
# (add_to_swap), or took one out (delete_from_cache): name -> (function, text of the
# line the CPU dies before, nth).
SWAPCACHE_WINDOWS: dict[str, tuple[str, str, int]] = {
    "swapin_page_taken": ("new_cached", "u32[b4] = PG_locked | PG_swapbacked | PG_swapcache", 3),
    "swapin_page_set_up": ("new_cached", "dev.lock_slot(slot)", 3),
    "swapin_published_no_cache_bit": ("new_cached", "u32[dev.smap4 + slot] = w | R.SWAP_HAS_CACHE", 3),
    "swapin_cached_one_reference": ("new_cached", "u32[b4 + 2] = 2", 3),
    "swapin_cached_not_counted": ("new_cached", "NR_SWAPCACHED] += 1", 3),
    "swapin_cached_not_recorded": ("new_cached", "return pfn, e", 3),
    "add_slot_taken": ("add_to_swap", "dev.lock_slot(slot)", 3),
    "add_slot_named_folio_not": ("add_to_swap", "b = PM8 + pfn * MW8", 3),
    "add_no_cache_reference": ("add_to_swap", "fetch_add32((PM4 + pfn * MW4 + 2) << 2, 1)", 3),
    "add_no_swapcache_flag": ("add_to_swap", "fetch_or32((PM4 + pfn * MW4) << 2, PG_swapcache", 3),
    "delete_slot_locked": ("delete_from_cache", "if q[stab8 + slot] == pfn << 2:", 3),
    "delete_shadow_stored": ("delete_from_cache", "dev.unlock_slot(slot)", 3),
    "delete_private_kept": ("delete_from_cache", "q[PM8 + pfn * MW8 + i_priv] = 0", 3),
    "delete_flag_kept": ("delete_from_cache", "fetch_and32((PM4 + pfn * MW4) << 2, ~PG_swapcache", 3),
    "delete_not_put": ("delete_from_cache", "dev.put_cache(slot)", 3),
    "freeze_marked": ("reclaim_anon", "if not freeze(pfn, 2):", 3),
    "frozen_not_deleted": ("reclaim_anon", "sst.delete_from_cache(pfn, slot, ws.eviction(pfn))", 3),
    "frozen_reset_not_released": ("free_frozen", "if st[1] >= 0:", 3),
    "frozen_released_not_freed": ("free_frozen", "q[r + 4] = q[r + 5] = 0", 3),
    "frozen_unnamed_not_freed": ("free_frozen", "st[1] = -1", 3),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(SWAPCACHE_WINDOWS))
def test_swap_cache_folio_killed_half_in(machine, window: str) -> None:
    """A CPU killed from outside between the stores that put a folio in the swap cache
    or take it out: recovery leaves the slot and the folio agreeing (SW1, SW2), nothing
    locked for good, no page lost, and the CPU runs the driver again."""
    _driver_killed_runs_on(machine, "reclaim", *SWAPCACHE_WINDOWS[window])


@pytest.mark.timeout(120)
def test_swap_cache_hit_killed_before_its_step(machine) -> None:
    """A swap-in that found its folio in the cache, locked it and named it in a1, killed
    before its step 3: recovery unlocks and puts it as at step 3 (a1 without a2 at step
    0) -- before, the folio stayed locked for good."""
    _killed_runs_on(machine, RECLAIM_CFG,
                    H.reclaim_driver(), H.at_line("swapin", "q[r + 7] = 3", lambda f: "shadow" not in f.f_locals), 2,
                    H.reclaim_driver(1500, seed=2))


def _grabbing_vm(drv: Any, cell: dict[str, Any]) -> Any:
    """Driver `drv`, its VM handle (made by crash_helpers.task_vm) put in cell["vm"]: a
    test's line match uses it to run what another CPU would at that line (untraced:
    inside the tracer)."""

    def drive(arena: Any, cpu: int) -> None:
        real = H.task_vm

        def grab(*args: Any, **kw: Any) -> Any:
            vm, tid = real(*args, **kw)
            cell["vm"] = vm
            return vm, tid

        H.task_vm = grab
        try:
            drv(arena, cpu)
        finally:
            H.task_vm = real

    return drive


def _raced_at(cell: dict[str, Any], func: str, at: str, kill_func: str, kill_at: str) -> Any:
    """A line match: at the first line of `func` containing `at`, a store to the
    faulting address (a local of func: va) through the same mm -- another thread's fault
    on that page winning the race; the kill at the first line of `kill_func` containing
    `kill_at` after it."""

    def match(frame: Any, line: str) -> bool:
        name = frame.f_code.co_name
        if "raced" not in cell:
            if name == func and at in line:
                cell["raced"] = va = frame.f_locals["va"]
                cell["vm"].store64(va & ~4095, 0x5A)
            return False
        return name == kill_func and kill_at in line

    return match


@pytest.mark.timeout(120)
def test_swapin_that_lost_its_slot_killed_before_its_free(machine) -> None:
    """Two swap-ins of one slot: between a swap-in's unlocked look (no folio cached) and
    new_cached's look under the slot lock, the slot's readahead (what another CPU does)
    puts a folio in the cache, so new_cached gives its own new page back.  Killed after
    the record let that page go, before its free: the page, frozen (refcount 0, no
    flags), is the state scan's -- before, it was freed with a reference of 1 that
    nobody named, and lost."""
    cell: dict[str, Any] = {}
    drv = _grabbing_vm(H.reclaim_driver(), cell)

    def match(frame: Any, line: str) -> bool:
        if frame.f_code.co_name != "new_cached":
            return False
        if "pfn = alloc_pages(" in line and "raced" not in cell:
            cell["raced"] = slot = frame.f_locals["slot"]
            cell["vm"].reclaim.swap.readahead(slot ^ 1)   # (its window has slot; untraced)
            w = frame.f_locals["u32"][frame.f_locals["dev"].smap4 + slot]
            assert w & R.SWAP_HAS_CACHE, "the readahead did not cache the slot"
        return "raced" in cell and "free_frozen_pages(pfn, 0, False)" in line

    recs = _killed_runs_on(machine, RECLAIM_CFG, drv, match, 1, H.reclaim_driver(1500, seed=2))
    assert [(r.name, r.step, r.args[1], r.args[2]) for r in recs if r.name == "vm_swapin"] == [("vm_swapin", 0, 0, 1)]


# A fault whose new page lost its index to another thread's fault (memory.py): the page,
# never published, goes back -- window -> (function, text of the line the CPU dies
# before, the vm_fault record's step then).
LOST_INDEX_WINDOWS: dict[str, tuple[str, str, int]] = {
    "fast_mapping_cleared": ("anon_write_fast", "u32[b4] = 0", 5),
    "fast_frozen_not_stepped": ("anon_write_fast", "q[r + 7] = 0", 5),
    "fast_stepped_not_freed": ("anon_write_fast", "free_frozen_pages(pfn, 0, False)", 0),
    "map_new_frozen_not_stepped": ("give_back", "u64[step] = 0", 1),
    "map_new_stepped_not_freed": ("give_back", "free_frozen_pages(pfn, 0, False)", 0),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(LOST_INDEX_WINDOWS))
def test_fault_that_lost_its_index_killed_giving_its_page_back(machine, window: str) -> None:
    """Two faults on one page: right before a fault's tree insert, the same page is
    faulted in through the same mm (what a second thread does), so the insert finds
    that page there and the new page goes back -- anon_write_fast's (counted for a
    tree and a PTE: mapping cleared, counts frozen, step 5 -> 0, free), or map_new's for
    a shared anonymous page after fork (give_back: frozen, step 1 -> 0, free).  Killed
    at each line of that, the page is freed once: by recovery at its step, or by the
    state scan once no step names it.  Before, anon_write_fast's page (no flags left)
    leaked when killed after its step, and a kill between its count drop and its step
    undid the counts twice (a refcount underflow); map_new's page was swap-backed, so
    settle_counts' orphan-folio pass freed it -- those two windows pass either way."""
    func, text, step = LOST_INDEX_WINDOWS[window]
    cell: dict[str, Any] = {}
    cfg = {"vm": {}, "nr_pages": 4096}
    if window.startswith("fast"):
        drv, again = _grabbing_vm(H.vm_driver(), cell), H.vm_driver(rounds=5, seed=2)
        match = _raced_at(cell, "anon_write_fast", "rcu_read_lock()", func, text)
    else:
        drv, again = _grabbing_vm(H.vm_fork_driver(), cell), H.vm_fork_driver(rounds=3, seed=2)
        match = _raced_at(cell, "map_new_body", "got = objs_insert(obj, idx, pfn, anon)", func, text)
    recs = _killed_runs_on(machine, cfg, drv, match, 1, again)
    assert [(r.name, r.step) for r in recs if r.name == "vm_fault"] == [("vm_fault", step)]


# Reclaim's discard of a lazily freed folio (vmscan.py reclaim_lazyfree): killed after
# its freeze, before or after the tree lets it go, or inside free_frozen.
LAZYFREE_WINDOWS: dict[str, tuple[str, str, int]] = {
    "frozen_still_in_tree": ("reclaim_lazyfree", "if q[(o + O_BACKING) >> 3]:", 3),
    "frozen_out_of_tree_not_counted": ("reclaim_lazyfree", "at.fetch_add64(o + O_NR_PAGES, (1 << 64) - 1)", 3),
    "frozen_not_freed": ("reclaim_lazyfree", "q[ev + VE.PGLAZYFREED] += 1", 3),
    "reset_not_released": ("free_frozen", "if st[1] >= 0:", 3),
    "reset_unnamed_not_freed": ("free_frozen", "st[1] = -1", 3),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(LAZYFREE_WINDOWS))
def test_lazyfree_discard_killed_after_its_freeze(machine, window: str) -> None:
    """A clean lazily freed folio frozen for discard: recovery gives it back to its tree
    and LRU if the tree still names it, else finishes the discard -- no page lost, none
    put back with refcount 0."""
    func, text, nth = LAZYFREE_WINDOWS[window]
    _killed_runs_on(machine, RECLAIM_CFG,
                    H.lazyfree_driver(), H.at_line(func, text), nth, H.reclaim_driver(1500, seed=2))


# A folio lock taken, its holder not yet named by any record: name -> (driver kind,
# function, text of the line the CPU dies before, nth).  PG_locked has no owner; a
# folio still locked once the round's records are resolved and the live CPUs parked
# was a dead CPU's (mm/vm/recover.py release_folio_locks).
FOLIO_LOCK_WINDOWS: dict[str, tuple[str, str, str, int]] = {
    "reclaim_locked_not_logged": ("reclaim", "shrink_folio", "lr = st[0]", 5),
    "swapin_hit_locked_not_logged": ("reclaim", "swapin", "fl = u32[PM4 + pfn * MW4]", 2),
    "migrate_isolating": ("migrate", "isolate", "m = q[b8 + i_map]", 3),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(FOLIO_LOCK_WINDOWS))
def test_folio_lock_of_a_dead_cpu_released(machine, window: str) -> None:
    """A CPU killed from outside right after it took a folio's lock, before a record
    names the folio: recovery releases the lock.  Before, a swap-in's folio stayed
    locked in the swap cache for good (the next fault on it waited); the reclaim and
    migration folios here belong to the dead task, whose exit freed them anyway."""
    _driver_killed_runs_on(machine, *FOLIO_LOCK_WINDOWS[window])


# Page-cache eviction (vmscan.py reclaim_file) killed after its freeze: the tree still
# names the folio, or has its shadow already; or inside free_frozen.
FILE_RECLAIM_WINDOWS: dict[str, tuple[str, str, int]] = {
    "frozen_still_in_tree": ("reclaim_file", "xa_store(o + O_TREE, idx, shadow)", 3),
    "frozen_shadow_stored": ("reclaim_file", "at.fetch_add64(o + O_NR_PAGES, (1 << 64) - 1)", 3),
    "frozen_not_freed": ("reclaim_file", "free_frozen(pfn)", 3),
    "reset_not_released": ("free_frozen", "if st[1] >= 0:", 3),
    "reset_unnamed_not_freed": ("free_frozen", "st[1] = -1", 3),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(FILE_RECLAIM_WINDOWS))
def test_file_eviction_killed_after_its_freeze(machine, window: str) -> None:
    """A clean file folio frozen for eviction: recovery gives it back to the page cache
    and its LRU if the tree still names it, else finishes the eviction -- no page lost,
    none put back with refcount 0, no folio left locked, and nr_file_pages still the
    page cache's size (the file is the machine's only one; before, a kill between the
    shadow and the count left it one high)."""
    func, text, nth = FILE_RECLAIM_WINDOWS[window]
    made: list[tuple[Any, int]] = []                # the machine and its file, for the count below

    def setup(a: Any, p: Any) -> tuple[int, ...]:
        made.append((a, H.vm_file_setup(a, p, name=H.BIG_FILE, pages=H.BIG_FILE_PAGES)))
        return (made[0][1],)

    _killed_runs_on(machine, RECLAIM_CFG, H.file_reclaim_driver(), H.at_line(func, text), nth,
                    H.file_reclaim_driver(rounds=1), setup)
    from aerosync.mm.pmm.vm_event import fold_node_stats
    from aerosync.mm.vm import mm_types as T
    from aerosync.mm.vm.vm_object import O_NR_PAGES

    ((a, fid),) = made
    obj = a.u64[(T.file_off(a, fid) + T.F_OBJ) >> 3]
    assert sum(st["nr_file_pages"] for st in fold_node_stats(a)) == a.u64[(obj + O_NR_PAGES) >> 3], \
        "nr_file_pages is not the page cache's size"


# An object's page tree (lib/xarray.py) written by a CPU killed from outside between a
# slot's store and its node's count: name -> (driver, function, text of the line the CPU
# dies before, nth).  The takeover rewrites the trees under the dead CPU's &obj->locks
# before releasing them (mm/vm/recover.py repair_locked_objects); a destroy's tree (a dead
# object: no lock) is repaired when its record resumes.
XA_COUNT_WINDOWS: dict[str, tuple[str, str, str, int]] = {
    # anon_write_fast's insert: count one short -- the task's exit erased the leaf's other
    # entry, took the count to 0 and deleted the leaf with the fault's folio in it (O1:
    # the folio named a destroyed object; found by a random-kill explorer)
    "fault_insert": ("vm", "xa_insert", "fetch_add(b << 3, 0x1010000", 3),
    "fault_insert_under_reclaim": ("reclaim", "xa_insert", "fetch_add(b << 3, 0x1010000", 3),
    # a page-cache fill into an empty slot of a leaf: count one short (O5)
    "page_cache_fill": ("file", "xa_store", "fetch_add(b << 3, 1 << 16", 3),
    # swap-out's folio -> swap value: nr_values one short, so a later change of kind took
    # it below 0 (ValueError); and the folio still named the object (FR1 once freed)
    "swap_out_kind_change": ("reclaim", "xa_store", "u64[b] += ((entry & 1) - (cur & 1)) << 24", 3),
    # a destroy's erase of a swap value: the value's put was before the step said the
    # entry was taken, so recovery could not tell it undone and leaked the slot (SW1)
    "destroy_erase_value": ("reclaim", "xa_erase", "count = self._info_add(b, -1, -(cur & 1))", 3),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(XA_COUNT_WINDOWS))
def test_page_tree_write_killed_between_slot_and_count(machine, window: str) -> None:
    """A CPU killed from outside inside a page-tree write, its slot stored and its
    node's count not: recovery repairs the tree before anyone erases from it, no folio
    or swap slot is lost, the checkers pass and the CPU runs the driver again."""
    _driver_killed_runs_on(machine, *XA_COUNT_WINDOWS[window])


# A new VMA linked on its object's and file's lists before its record says so: the
# roll-forward (mmap_finish, split_finish) linked it a second time -- a cycle on the
# file's i_mmap that its unmap could not take it off -- and fork's undo freed the copy
# still on the list.  name -> (function, text of the line the CPU dies before).
VMA_LIST_WINDOWS: dict[str, tuple[str, str]] = {
    "mmap_linked": ("mmap_finish", "q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] += 1"),
    "split_linked": ("split_finish", "q[(mo(mm_id) + T.M_MAP_COUNT) >> 3] += 1"),
    "fork_copy_linked": ("dup_mm_body", "q[(cm + T.M_MAP_COUNT) >> 3] += 1"),
    "fork_parent_on_no_list": ("dup_mm_body", "q[(v + V.V_OBJECT) >> 3] = sp"),
    "fork_parent_switched": ("dup_mm_body", "objs.link_vma(sp, v)"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(VMA_LIST_WINDOWS))
def test_new_vma_linked_before_its_record_says(machine, window: str) -> None:
    """A CPU killed from outside after it linked a new file VMA (an mmap, a split, a
    fork's copy) or while it moved the parent's VMA to its new shadow: recovery takes
    the new VMA off the lists before it links it once or frees it, and puts the parent's
    back on the list of the object it names; the file's i_mmap is whole after the task
    exits (it outlives it), the checkers pass, the CPU runs the driver again."""
    _driver_killed_runs_on(machine, "filefork", *VMA_LIST_WINDOWS[window], 2)


# A maple-tree store killed between publishing a new root and storing the height in
# ma_flags: the next store walked by the stale height (IndexError in a recovery's own
# erase, or in the exit's munmap).  name -> (driver, function, text, nth).
MAPLE_HEIGHT_WINDOWS: dict[str, tuple[str, str, str, int]] = {
    "vmalloc_first_area": ("vmalloc", "_store_empty", "self._set_height(1)", 1),
    "mmap_first_vma": ("vm", "_store_empty", "self._set_height(1)", 1),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(MAPLE_HEIGHT_WINDOWS))
def test_maple_root_published_height_not_stored(machine, window: str) -> None:
    """Writers walk by the tree, not by ma_flags' height, and recovery's sweep sets the
    height from the tree (MT1): the record is undone or rolled forward, the task exits,
    the checkers pass and the CPU runs the driver again."""
    _driver_killed_runs_on(machine, *MAPLE_HEIGHT_WINDOWS[window])


@pytest.mark.timeout(120)
def test_page_cache_page_handed_out_not_yet_in_its_record(machine) -> None:
    """add_to_cache killed after the allocator handed it a page and before its
    vm_file_add record names it: the record's hand-off window names the page, and
    recovery frees it (before, the page was lost)."""
    recs = _driver_killed_runs_on(machine, "filefork", "add_to_cache", "if pfn < 0:", 2)
    assert [(r.name, r.step) for r in recs][:1] == [("vm_file_add", 0)], [str(r) for r in recs]


# A kernel stack between a CPU's stack cache and a task (kstack.py: two plain stores, no
# record): name -> (function, text of the line the CPU dies before, nth).
KSTACK_WINDOWS: dict[str, tuple[str, str, int]] = {
    "taken_from_the_cache": ("alloc", "self.kmem.raw_store(base + k * PAGE_SIZE, zero)", 1),
    "released_by_the_task": ("free", "va = vmalloc.find_vmap_area(base)", 1),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(KSTACK_WINDOWS))
def test_kernel_stack_between_cache_and_task(machine, window: str) -> None:
    """A fork killed while it took a cached kernel stack for the child (clearing it), or
    a reap killed after the task let its stack go: the stack was nobody's and leaked (4
    pages and its vmap_area); recovery's sweep vfrees a busy stack area no task and no
    stack cache names."""
    _driver_killed_runs_on(machine, "fork", *KSTACK_WINDOWS[window])


# A CPU between tasks (vm.py switch_to, exit): the tasks it is responsible for name no
# CPU (T_CPU 0) -- one just made, the one switched out, the parent of one that exited
# -- and recovery found none of them, so they and their address spaces leaked.  The
# CPU's C_TASK word (mm_types) names one of them meanwhile: nth -> what the CPU was doing.
SWITCH_WINDOWS: dict[str, int] = {
    "first_task_not_yet_run": 1,
    "parent_switched_out_child_not_in": 2,
    "child_exited_parent_not_back": 3,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(SWITCH_WINDOWS))
def test_cpu_killed_between_tasks(machine, window: str) -> None:
    """A CPU killed inside switch_to (before the next task's T_CPU names it): recovery
    exits and reaps its tasks from C_TASK and their family, nothing leaks (before: 5
    pages and 2 objects, or a whole forked family)."""
    _driver_killed_runs_on(machine, "fork", "switch_to", "o = T.task_off(a, tid)", SWITCH_WINDOWS[window])


# new_vmap_block between its block record's allocation and the carve's step 3: the
# vm_vb_alloc record (step 2) named only the area, so recovery erased it and lost the
# block record -- or left the table naming a freed block.  name -> (text, nth).
NEW_BLOCK_WINDOWS: dict[str, tuple[str, int]] = {
    "record_handed_out": ("q[r + 2] = a - VOFF if a else 0", 1),
    "record_named": ("u8[vb : vb + VL.VB_REC] = zero_vb", 1),
    "not_in_the_table": ("q[TABLE + ((s - START) >> 20)] = vb", 1),
    "in_the_table_not_counted": ("fetch_add(base + VL.H_NR_BLOCKS, 1)", 1),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(NEW_BLOCK_WINDOWS))
def test_new_vmap_block_killed_before_its_carve(machine, window: str) -> None:
    """A small vmalloc killed while it made a new vmap_block: recovery erases the area
    and frees the block record (named by a1, or by the hand-off window), takes it out of
    the block table and recounts the blocks -- nothing lost, VA1-VA5 hold."""
    text, nth = NEW_BLOCK_WINDOWS[window]
    recs = _driver_killed_runs_on(machine, "vmblock", "new_vmap_block", text, nth)
    assert [(r.name, r.step) for r in recs][:1] == [("vm_vb_alloc", 2)], [str(r) for r in recs]


@pytest.mark.timeout(120)
def test_migration_frozen_state_not_stored(machine) -> None:
    """A migration killed after its freeze's CAS took the folio's refcount to 0 and
    before the record's state said frozen: recovery took it as unmapping and released
    it -- a put of a frozen folio (refcount underflow, a double free; found by the
    sampled kills).  Refcount 0 at state 2 now means frozen."""
    recs = _driver_killed_runs_on(machine, "migrate", "_round", "q[wj] = w0 | MS_FROZEN", 3)
    assert [r.name for r in recs][:1] == ["vm_migrate"], [str(r) for r in recs]


# An object's children list and its count (vm_object.py link_child / unlink_child, under
# the backing's &obj->lock): name -> (driver, function, text, nth).
CHILDREN_WINDOWS: dict[str, tuple[str, str, str, int]] = {
    "linked_not_counted": ("fork", "link_child", "u32[(back + O_NR_CHILDREN) >> 2] += 1", 3),
    "unlinked_not_counted": ("fork", "unlink_child", "u32[(back + O_NR_CHILDREN) >> 2] -= 1", 3),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", list(CHILDREN_WINDOWS))
def test_object_children_list_and_count_torn(machine, window: str) -> None:
    """A fork's shadow linked under its backing, or a destroyed shadow unlinked, the
    count not yet moved: the takeover recounts nr_children from the list under the dead
    CPU's &obj->lock (before: an unlink took the count below 0, or the count stayed one
    off -- found by the random kills over the fork driver)."""
    _driver_killed_runs_on(machine, *CHILDREN_WINDOWS[window])


@pytest.mark.timeout(120)
def test_new_slab_pages_handed_out_not_yet_in_its_record(machine) -> None:
    """new_slab killed after the page allocator handed it the slab's pages and before
    its slab_new record names them (found by the random kills over the fork driver: a
    kernel stack's vmap_area slab): the record's hand-off window names the block, and
    recovery frees it (before, the pages were lost)."""
    recs = _driver_killed_runs_on(machine, "fork", "new_slab", "u64[r + 2] = pfn", 1)
    assert "slab_new" in [r.name for r in recs], [str(r) for r in recs]
