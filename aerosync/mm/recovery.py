"""Recovering the memory manager from a simulated CPU that died: locks, logs, scans.

Models: what the kernel does for a CPU taken away (cpuhp teardown: page_alloc_cpu_dead,
slub_cpu_dead), plus what it never has to -- finishing or undoing operations a CPU was
in the middle of.  Unit: one dead CPU (its process reaped by the coordinator).

Two phases (the coordinator, aerosync/coordinator.py, drives them):

  A. `takeover(arena, pid, cpu)`, live CPUs still running: every lock the dead process
     held is taken over and released (sync/robust.py: slot locks by owner pid, MCS
     waiter nodes, the embedded locks on its robust list), so live CPUs blocked on one
     can go on to the next batch boundary and park.  The data under those locks is
     whole at every fault point (mm/intent.py), with the dead CPU's in-flight items
     missing; live CPUs can use it meanwhile.  A CPU killed from outside (no fault
     point: a list update may be torn) has the lists under its zone.locks and SLUB
     list_locks rebuilt from per-page and per-slab state before those locks are
     released (mm/pmm/recover.py, mm/slab/recover.py), and so are the LRU lists
     under its lru_locks (mm/reclaim/recover.py), and the page trees and child counts
     under its &obj->locks (mm/vm/recover.py repair_locked_objects).  Except its mmap_lock holds
     (write, or read after munmap's downgrade): a VMA change under one is not whole
     -- a thread of the same mm would see a heap VMA and mm->brk that disagree, or
     map into a range whose detached VMAs are not yet zapped.  Those stay held, marked RW_KEPT
     (sync/objlock.py), in `rec.kept`; a live CPU queued on one parks inside its wait
     (the park hook, workers/cpu.py) and counts as parked.  If some CPU cannot park
     there (it holds something), the coordinator releases the kept holds early
     (`release_kept`) and waits again: the old, weaker behaviour.  The lock the dead
     CPU was taking or releasing (its lock_pending word, sync/objlock.py "Robust
     list") is released here if its word names the dead CPU (a spinlock, a named
     writer); an rwsem whose word cannot say (an unnamed writer, a reader) is marked
     kept as well, and decided in step 0 of phase B.
  B. `recover_round(...)` (`recover_cpu` for one CPU), world stopped (every live CPU
     parked at a batch boundary, or inside its wait for a kept mmap_lock -- holding
     nothing either way):
       0. a pending rwsem hold is decided from the lock (pending_write_landed, or
          pending_read_landed counting the word's readers against every record of
          one): a hold the dead CPU has joins the kept ones, else the mark goes;
       1. the dead CPU's open intent records are read (innermost first) and its log
          cleared; its per-CPU lock words reset (PCP BUSY, SLUB c->lock and pcs lock);
          its PCP lists made whole and counted (mm/pmm/recover.py pcp_repair); the
          swap clusters' counts and lists set from the slot map and the compressed
          pool from its handles (mm/reclaim/recover.py rebuild_swap_clusters,
          rebuild_zmm: their locks may have been the dead CPU's, and the records free
          slots and load copies);
       2. each record is rolled forward or back by its subsystem (pmm: move_freepages
          redone; slab: chains and objects in flight put back, mm/slab/recover.py; vm:
          faults, mmap's VMA, munmap, mmu_gather, mm/vm/recover.py; NUMA migration's
          folios, mm/numa/migrate.py migrate_finish); the frees the dead
          CPU queued for after an RCU grace period run (sync/rcu.py pending_frees: the
          world is stopped, every reader is out) -- but the ring's head, which its
          poll may have been freeing: after the records, and only if the object is
          still allocated (rcu_head_pending); every vmap_block queue whose lock is
          free made to agree with its blocks (mm/vm/vmalloc.py repair_block_queues),
          then vmap_blocks marked dead for retirement but never freed (still in the
          block table: dead_blocks) are freed;
       3. (`recover_round`: once steps 0-2 are done for every CPU that died in the
          round -- nothing is in flight any more, and no task has exited on stale
          counts yet) for a CPU killed from outside: the maple nodes and VMAs no tree
          or RCU ring names are freed, every tree's parent words rewritten
          (mm/vm/recover.py sweep_orphans), the page tables no mm reaches freed, and
          the VM's counts -- mapcounts, refcounts, nr_pages, rss, pgtables_bytes, the
          node stats, LRU membership -- settled from its structures (mm/vm/recover.py
          settle_counts);
          Then (any death) a PG_lru folio with refcount 0 -- a free left between its
          put and its LRU unlink -- leaves its list (mm/reclaim/recover.py
          drop_freeing), for step 6 to finish its free;
       4. workload records (wl_*) go to the workload's `recover` hook, which also
          frees everything its held table says the dead CPU held (and its task
          exits), and the item an open hand-off window names (mm/intent.py
          "Hand-off"); then the windows close;
       5. the CPU is taken offline as hot-unplug does (PCP drained, LRU batch
          drained, CPU slab, partials, magazine and sheaves flushed) when the caller
          asks;
       6. the state scans put back whatever is still in flight: slab lists rebuilt
          and orphan sheaves flushed (mm/slab/recover.py fsck), pages in no state and
          PG_pcp blocks on no list freed (mm/pmm/recover.py reclaim_pages); for a
          CPU killed from outside, SLUB's counters it left a step behind are
          settled after the slab scan (mm/slab/recover.py recount_stats);
       7. after the round's last CPU (one dead CPU may hold what another's records
          need) the kept mmap_lock holds are released -- their waiters run once the
          world goes on.
     All of it under sync/objlock.py's `world_stopped()`: the recovery's own mmap_lock
     operations (exit_mmap, dup_mm undo, munmap's roll-forward) do not touch the lock
     words, since a kept hold is the recovery's own and nobody else runs.
     Then the checkers pass (the coordinator runs them) and every page and object is
     allocated by a live CPU, free, or counted here as returned by recovery.

The recovery acts as the dead CPU (MM(arena, cpu), Slub(arena, cpu)) from the arena's
owner process: its locks name the coordinator's pid, its log records go to the owner's
context (mm/intent.py), its statistics to the dead CPU's counters (a recovered free is
the dead CPU's free).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aerosync.arena import layout as L
from aerosync.mm import intent as I
from aerosync.mm.pmm import recover as PR
from aerosync.mm.vm import mm_types as T
from aerosync.sync.objlock import keep_dead, pending_read_landed, pending_write_landed, unkeep, world_stopped
from aerosync.sync.objlock import release_kept as _release_kept
from aerosync.sync.robust import HELD_READ, HELD_SPIN, HELD_WRITE, release_embedded, release_taken, takeover_locks

__all__ = ["CpuRecovery", "takeover", "recover_cpu", "recover_round", "release_kept", "WorkloadRecover"]

# recover(arena, cpu, records, mm, slub) -> {"pages": n, "objects": m}; `records` are the
# dead CPU's open wl_* records, innermost first, each with `inner_open`: an mm record was
# open above it (the item it handed off is that record's to finish).
WorkloadRecover = Callable[[Any, int, list[tuple[I.Record, bool]], Any, Any], dict[str, int]]

_PMM_OPS = {I.OP[n] for n in ("buddy_alloc", "buddy_free", "move_freepages", "pcp_refill", "pcp_drain")}
_WL_OPS = {I.OP[n] for n in ("wl_alloc", "wl_free", "wl_push", "wl_pop")}
_OP_MIGRATE = I.OP["vm_migrate"]


@dataclass
class CpuRecovery:
    """What recovering one dead CPU found and did (the run summary and result JSON)."""

    cpu: int
    pid: int
    died_at: str | None = None          # the fault point it killed itself at, if any
    locks: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    pages: int = 0                      # returned by recovery: held by the dead CPU or in flight
    objects: int = 0
    scan: dict[str, int] = field(default_factory=dict)
    takeover_ms: float = 0.0
    recover_ms: float = 0.0
    kept: list[tuple[int, int]] = field(default_factory=list)    # mmap_lock holds kept: (off, kind)
    kept_early: bool = False            # released before recovery (a waiter could not park)
    pending_lock: tuple[int, int] | None = None   # an rwsem hold in transit, decided in phase B

    def to_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "pid": self.pid, "died_at": self.died_at, "locks": self.locks,
                "records": self.records, "pages": self.pages, "objects": self.objects, "scan": self.scan,
                "takeover_ms": round(self.takeover_ms, 3), "recover_ms": round(self.recover_ms, 3),
                "kept_released_early": self.kept_early}


def takeover(arena: Any, pid: int, cpu: int) -> CpuRecovery:
    """Phase A (live CPUs running): take over and release every lock `pid` held; the CPU
    leaves RCU (a dead CPU is in no read-side section: rcu_cpu_dead) and stops being an
    IPI target (tlb.py cpu_mark_offline) nor an MGLRU walker (lru_gen.py aging_cpu_dead),
    so nobody waits for it."""
    t0 = time.perf_counter()
    rec = CpuRecovery(cpu, pid, died_at=I.died_at(arena, cpu))
    if "rcu" in arena.sections:
        from aerosync.sync.rcu import rcu_cpu_dead

        rcu_cpu_dead(arena, cpu)
    if T.vm_ready(arena):
        from aerosync.mm.vm.tlb import cpu_mark_offline

        cpu_mark_offline(arena, cpu)
    if "reclaim" in arena.sections:
        from aerosync.mm.reclaim.lru_gen import aging_cpu_dead

        if aging_cpu_dead(arena, cpu):                    # a reclaimer may be waiting for it
            rec.scan["aging_released"] = 1
    taken = takeover_locks(arena, pid)
    rec.locks = [t.name for t in taken]
    if rec.died_at is None and taken:
        # killed from outside, maybe inside a list update: the lists under its locks
        # rebuilt before a live CPU takes one (mm/pmm/recover.py, mm/slab/recover.py)
        slots = [t.slot for t in taken]
        for zid in PR.zones_of_locks(arena, slots):
            rec.scan["free_lists_rebuilt"] = rec.scan.get("free_lists_rebuilt", 0) + 1
            PR.rebuild_free_lists(arena, zid)
        if "slabcaches" in arena.sections:
            from aerosync.mm.slab.recover import rebuild_node_partials

            n = rebuild_node_partials(arena, slots)
            if n:
                rec.scan["node_partials_rebuilt"] = n
    release_taken(arena, taken)
    held = I.held_locks(arena, cpu)
    if rec.died_at is None and "reclaim" in arena.sections:
        from aerosync.mm.reclaim.recover import lru_nodes_of_locks, rebuild_lru_lists

        for nid in lru_nodes_of_locks(arena, [off for off, kind in held if kind == HELD_SPIN]):
            rec.scan["lru_lists_rebuilt"] = rec.scan.get("lru_lists_rebuilt", 0) + 1
            rebuild_lru_lists(arena, nid, cpu)
    if T.vm_ready(arena):
        if rec.died_at is None:
            # a page tree or children list it was writing under &obj->lock made whole
            # before a live CPU takes that lock (mm/vm/recover.py "Page trees")
            from aerosync.mm.vm.recover import repair_locked_objects

            for k, n in repair_locked_objects(arena, [off for off, kind in held if kind == HELD_SPIN]).items():
                if n:
                    rec.scan[k] = n
        rec.kept = [(off, kind) for off, kind in held if kind in (HELD_WRITE, HELD_READ) and T.is_mmap_lock(arena, off)]
        for off, _kind in rec.kept:
            keep_dead(arena, off)
        held = [h for h in held if h not in rec.kept]
    rec.locks += release_embedded(arena, pid, cpu, held)
    _takeover_pending(arena, rec)
    rec.takeover_ms = (time.perf_counter() - t0) * 1e3
    return rec


def _takeover_pending(arena: Any, rec: CpuRecovery) -> None:
    """The embedded lock the CPU was taking or releasing when it died (its lock_pending
    word: killed from outside between the lock word's change and its robust list's).  A
    spinlock names its owner in the word: released now if it names the dead CPU.  An
    rwsem write hold names it too, except in the two windows around the owner store, and
    a read hold never does: such a lock is marked kept (its waiters park) and decided in
    phase B, with the world stopped (_resolve_pending)."""
    p = I.lock_pending(arena, rec.cpu)
    if p is None:
        return
    off, kind = p
    if kind in (HELD_SPIN, HELD_WRITE):
        got = release_embedded(arena, rec.pid, rec.cpu, [p])
        if got:
            rec.locks += got
            rec.scan["lock_pending_released"] = 1
            I.clear_lock_pending(arena, rec.cpu)
            return
        if kind == HELD_SPIN:
            I.clear_lock_pending(arena, rec.cpu)
            return
    keep_dead(arena, off)
    rec.pending_lock = p


def _resolve_pending(arena: Any, rec: CpuRecovery) -> None:
    """Phase B, world stopped: does the dead CPU hold the rwsem its lock_pending word
    names?  A hold it has joins the kept holds (released at the end of recovery); a
    hold it has not only loses the kept mark."""
    p, rec.pending_lock = rec.pending_lock, None
    if p is None:
        return
    I.clear_lock_pending(arena, rec.cpu)
    off, kind = p
    if kind == HELD_WRITE:
        landed = 1 if pending_write_landed(arena, off, rec.pid, rec.cpu) else 0
    else:
        kept = sum(1 for o, k in rec.kept if o == off and k == HELD_READ)
        got = pending_read_landed(arena, off, rec.cpu, kept)
        if got is None:
            rec.scan["lock_pending_unresolved"] = 1
        landed = got or 0
    if landed:
        rec.kept.append(p)
        rec.scan["lock_pending_released"] = 1
    elif p not in rec.kept:
        unkeep(arena, off)


def release_kept(arena: Any, rec: CpuRecovery, early: bool = False) -> None:
    """Release the dead CPU's kept mmap_lock holds (their waiters woken); `early`: before
    its recovery, because a live CPU queued on one could not park."""
    for off, kind in rec.kept:
        got = _release_kept(arena, off, kind, rec.pid, rec.cpu)
        if got:
            rec.locks.append(got)
    rec.kept = []
    rec.kept_early = rec.kept_early or early
    if early and rec.pending_lock is not None:           # its waiters stop parking on it;
        unkeep(arena, rec.pending_lock[0])                # phase B still decides the hold


def recover_cpu(arena: Any, rec: CpuRecovery, workload_recover: WorkloadRecover | None = None,
                offline: Callable[[Any, int], Any] | None = None) -> CpuRecovery:
    """Phase B for one dead CPU (a round of one: `recover_round`)."""
    recover_round(arena, [rec], workload_recover, offline)
    return rec


def recover_round(arena: Any, recs: list[CpuRecovery], workload_recover: WorkloadRecover | None = None,
                  offline: Callable[[Any, int], Any] | None = None) -> None:
    """Phase B (world stopped) for the CPUs that died in one round: roll each one's
    records forward or back; then, if one was killed from outside, sweep the orphans
    and settle the VM's counts (every record of every dead CPU is resolved by then:
    nothing is in flight, and no task has exited yet on stale counts); then give back
    what each held and scan for what is still in flight; last, release the kept
    mmap_lock holds (one dead CPU may hold what another's records need).
    `offline(arena, cpu)`: take each CPU offline (hot-unplug's teardown), or None to
    leave its per-CPU caches to the CPU's next worker.  An AeroSyncError names the CPU
    it came from."""
    with world_stopped():
        resolved = {}
        for rec in recs:
            with _naming(rec):
                resolved[rec.cpu] = _resolve_cpu(arena, rec)
        outside = [r for r in recs if r.died_at is None]
        if outside and T.vm_ready(arena):
            with _naming(outside[0]):
                _settle_outside(arena, outside[0])
        if "reclaim" in arena.sections:                  # frees left between put and unlink
            from aerosync.mm.reclaim.recover import drop_freeing

            n = drop_freeing(arena, recs[0].cpu)
            if n:
                recs[0].scan["lru_freeing_dropped"] = n
        for rec in recs:
            with _naming(rec):
                _finish_cpu(arena, rec, resolved[rec.cpu], workload_recover, offline)
    for rec in recs:
        release_kept(arena, rec)


@contextmanager
def _naming(rec: CpuRecovery) -> Iterator[None]:
    """An AeroSyncError raised inside says which death and records it followed."""
    from aerosync.errors import AeroSyncError

    try:
        yield
    except AeroSyncError as e:
        raise AeroSyncError(f"recovering cpu{rec.cpu} (died at {rec.died_at or 'a signal'}, records "
                            f"{rec.records}) failed: {e}") from e


def _settle_outside(arena: Any, rec: CpuRecovery) -> None:
    """After a kill from outside, every record of the round resolved: folio locks a dead
    CPU took before its record named the folio are released, the maple nodes and VMAs
    nobody names are freed and the VM's counts settled from its structures
    (mm/vm/recover.py release_folio_locks, sweep_orphans, settle_counts), acting as the
    dead CPU `rec`."""
    from aerosync.mm.vm.check import vm_counts
    from aerosync.mm.vm.recover import release_folio_locks, settle_counts, sweep_orphans, sweep_stacks
    from aerosync.mm.vm.vm import VM

    t0 = time.perf_counter()
    n = release_folio_locks(arena)
    if n:
        rec.scan["folio_locks_released"] = n
    vmh = VM(arena, rec.cpu)
    try:
        counts = vm_counts(arena)                        # one pass for both
        for k, n in sweep_orphans(arena, vmh, counts).items():
            if n:
                rec.scan[k] = n
                rec.objects += n
        n = sweep_stacks(arena, vmh)
        if n:
            rec.scan["kernel_stacks_swept"] = n
        for k, n in settle_counts(arena, vmh, rec.cpu, counts).items():
            if n:
                rec.scan[k] = n
                if k == "orphan_folios":
                    rec.pages += n
                elif k == "vm_objects_destroyed":
                    rec.objects += n
    finally:
        vmh.leave()                                      # its frees run; no shootdown target again
    rec.recover_ms += (time.perf_counter() - t0) * 1e3


@dataclass
class _Resolved:
    """What the first half of a CPU's recovery hands the second."""

    mm: Any
    slub: Any
    wl: list[tuple[I.Record, bool]]


def _resolve_cpu(arena: Any, rec: CpuRecovery) -> _Resolved:
    """The first half of one dead CPU's recovery: its pending lock decided, its log
    read and cleared, every record rolled forward or back, its pending RCU frees run."""
    from aerosync.mm.pmm.page_alloc import MM

    t0 = time.perf_counter()
    cpu = rec.cpu
    _resolve_pending(arena, rec)
    records = I.read_records(arena, cpu)
    spills = {r.ctx: I.spill_items(arena, cpu, r.ctx, I.SPILL_MAX) for r in records}
    rec.records = [str(r) for r in records]
    I.clear_log(arena, cpu)
    PR.pcp_repair(arena, cpu)
    slab = "slabcaches" in arena.sections
    if slab:
        from aerosync.mm.slab import recover as SR

        SR.reset_cpu_locks(arena, cpu)
    mm = MM(arena, cpu)
    if "reclaim" in arena.sections:                       # swap clusters and the compressed pool
        from aerosync.mm.reclaim.recover import rebuild_swap_clusters, rebuild_zmm

        n = rebuild_swap_clusters(arena, cpu)
        if n:
            rec.scan["swap_clusters_settled"] = n
        zr = rebuild_zmm(arena, mm, cpu)
        if zr.get("zspages_freed"):
            rec.scan["zmm_zspages_freed"] = zr["zspages_freed"]
    slub = None
    if slab:
        from aerosync.mm.slab.slub import Slub

        slub = Slub(arena, cpu, mm=mm)
    rcu_head = None
    if "rcu" in arena.sections:
        got, rcu_head = _pending_rcu_frees(arena, cpu, slub)
        rec.objects += got
    from aerosync.mm.vm.recover import VM_OPS, end_dead_writes

    if "vmmm" in arena.sections:
        rec.scan["mmap_write_ended"] = end_dead_writes(arena)

    vmh = None
    wl: list[tuple[I.Record, bool]] = []
    inner_open = {0: False, 1: False}
    inner: dict[int, I.Record] = {}                       # the record just above, per context
    for r in records:                                     # innermost first, per context
        if r.op in _WL_OPS:
            wl.append((r, inner_open[r.ctx]))
        elif r.op in _PMM_OPS:
            if r.op == I.OP["move_freepages"]:
                PR.redo_move(mm, r.args[0], r.args[1], r.args[2])
        elif r.op == _OP_MIGRATE:
            if vmh is None:
                from aerosync.mm.vm.vm import VM

                vmh = VM(arena, cpu, mm=mm)
            if r.step:
                from aerosync.mm.vm import recover as VR

                rec.pages += _numa(vmh).migrate.migrate_finish(
                    r.args[0], spills.get(r.ctx, [])[L.SPILL_MIGRATE : L.SPILL_MIGRATE + 2 * r.step])
                rec.pages += VR.page_handed_out(arena, mm, cpu, r.ctx)    # a destination not yet logged
        elif r.op in VM_OPS:
            from aerosync.mm.vm import recover as VR

            if vmh is None:
                from aerosync.mm.vm.vm import VM

                vmh = VM(arena, cpu, mm=mm)
            got = VR.recover_record(arena, vmh, r, spills.get(r.ctx, []), inner_open[r.ctx])
            rec.objects += got.get("objects", 0)
            rec.pages += got.get("pages", 0)
        elif slab:
            got = SR.recover_record(arena, slub, r, spills.get(r.ctx, []), inner_open[r.ctx], inner.get(r.ctx))
            rec.objects += got.get("objects", 0)
            rec.pages += got.get("pages", 0)
        inner_open[r.ctx] = True
        inner[r.ctx] = r
    if "vmalloc" in arena.sections:                       # blocks it chose to retire, not freed
        from aerosync.mm.vm.vmalloc import dead_blocks, repair_block_queues

        moved = repair_block_queues(arena, cpu)           # (first: a dead block may be on one)
        if moved:
            rec.scan["vmap_blocks_requeued"] = moved
        dead = dead_blocks(arena)
        if dead:
            if vmh is None:
                from aerosync.mm.vm.vm import VM

                vmh = VM(arena, cpu, mm=mm)
            rec.scan["vmap_blocks_retired"] = vmh.kernel.vmalloc.retire_orphans(dead)
    if rcu_head is not None:                              # after the records: a free of it
        rec.objects += _rcu_head_free(arena, slub, rcu_head)   # the dead CPU began is finished
    if T.vm_ready(arena):                                 # a window no record owned
        from aerosync.mm.vm.recover import table_handed_out

        rec.pages += table_handed_out(arena, mm, cpu)
    if vmh is not None:
        vmh.leave()                                       # its deferred frees run (rcu_barrier)
    rec.recover_ms += (time.perf_counter() - t0) * 1e3
    return _Resolved(mm, slub, wl)


def _finish_cpu(arena: Any, rec: CpuRecovery, res: _Resolved, workload_recover: WorkloadRecover | None,
                offline: Callable[[Any, int], Any] | None) -> None:
    """The second half of one dead CPU's recovery: what it held given back (the
    workload's hook: its held table, its task's exit), the CPU taken offline, the state
    scans."""
    t0 = time.perf_counter()
    cpu, mm, slub, wl = rec.cpu, res.mm, res.slub, res.wl
    slab = slub is not None
    if slab:
        from aerosync.mm.slab import recover as SR

        rec.objects += SR.return_caller_sheaves(arena, slub, cpu)
    if workload_recover is not None:
        got = workload_recover(arena, cpu, wl, mm, slub)
        rec.pages += got.get("pages", 0)
        rec.objects += got.get("objects", 0)
    I.clear_handoff(arena, cpu)
    if offline is not None:
        offline(arena, cpu)
    if slab:
        rec.scan.update(SR.fsck(arena, slub))
        rec.objects += rec.scan.get("orphan_objects", 0)
        if rec.died_at is None:                           # killed from outside: counts may lag
            rec.scan["slab_stats_settled"] = SR.recount_stats(arena, cpu)
    scan = PR.reclaim_pages(arena, mm)
    rec.scan.update(scan)
    rec.pages += scan["orphan_pages"]
    rec.recover_ms += (time.perf_counter() - t0) * 1e3


def _numa(vm: Any) -> Any:
    """The NUMA side of the recovering VM handle (mm/numa/numa_vm.py), attached once."""
    n = getattr(vm, "numa", None)
    if n is None:
        from aerosync.mm.numa.numa_vm import attach

        n = attach(vm)
    return n


def _pending_rcu_frees(arena: Any, cpu: int, slub: Any) -> tuple[int, tuple[int, int] | None]:
    """Run the frees the dead CPU queued for after a grace period (the world is stopped:
    every live CPU parked outside any read-side section, the dead one's word cleared),
    but the ring's head: its poll may have been inside that free (its slab record open,
    or its CAS done) -- returned, for _rcu_head_free after the records."""
    from aerosync.sync.rcu import forget_pending, pending_frees, rcu_head_pending

    head = rcu_head_pending(arena, cpu)
    pending = pending_frees(arena, cpu)
    forget_pending(arena, cpu)
    if head is not None:
        pending = pending[1:]                         # (pending_frees starts at the head)
    if slub is None:
        return 0, None
    return sum(_rcu_free_one(arena, slub, off, kind) for off, kind in pending), head


def _rcu_free_one(arena: Any, slub: Any, off: int, kind: int) -> int:
    from aerosync.mm.slab.slab_common import VBASE
    from aerosync.sync.rcu import RCU_FREE_VMA

    if kind == RCU_FREE_VMA:
        from aerosync.mm.vm.vma import V_STATE, VMA_FREE

        arena.u64[(off + V_STATE) >> 3] = VMA_FREE
    addr = VBASE + (off - arena.off("physmem"))
    cid, _ = slub.cache_of(addr)
    if cid < 0:
        return 0
    slub.cache(cid).free(addr)
    return 1


def _rcu_head_free(arena: Any, slub: Any, head: tuple[int, int]) -> int:
    """The dead CPU's oldest pending free, once its records are resolved: done unless
    the object is free already (the dead CPU's free of it finished)."""
    from aerosync.mm.slab.recover import object_free
    from aerosync.mm.slab.slab_common import VBASE

    off, kind = head
    if object_free(arena, VBASE + (off - arena.off("physmem"))) is not False:
        return 0
    return _rcu_free_one(arena, slub, off, kind)


def accounting(arena: Any) -> dict[str, int]:
    """Where every page and object is, for "nothing lost" checks (world stopped):
    `pages_allocated` pages in allocated blocks that are not slabs, `slab_pages`, and
    `objects_in_use`: objects handed out by SLUB (sum over live caches of allocations
    minus frees, which the slab checker's S5 ties to the free objects found)."""
    import numpy as np

    from aerosync.mm.pmm.page import PG_buddy, PG_pcp, PG_reserved, PG_slab, PG_tail, page_array

    pages = page_array(arena)
    flags = pages["flags"].copy()
    order = pages["order"].astype(np.int64)
    ref = pages["refcount"].copy()
    del pages
    alloc = ((flags & (PG_buddy | PG_pcp | PG_reserved | PG_tail)) == 0) & (ref > 0)
    size = np.int64(1) << np.minimum(order, 62)
    slab = alloc & ((flags & PG_slab) != 0)
    out = {"pages_allocated": int(size[alloc & ~slab].sum()), "slab_pages": int(size[slab].sum()),
           "objects_in_use": 0}
    if "slabcaches" in arena.sections:
        from aerosync.mm.slab.slab_common import live_caches, slab_stats

        for cid in live_caches(arena):
            st = slab_stats(arena, cid)
            out["objects_in_use"] += st["alloc"] - st["free"]
    return out
