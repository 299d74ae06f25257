"""Page migration: move a page of process memory to another node, with every mapping
following it.

Models: mm/migrate.c (migrate_pages with its retries, migrate_folio_unmap /
try_to_migrate, folio_migrate_mapping's reference check and tree replacement,
folio_migrate_flags, remove_migration_ptes, migration_entry_wait, move_pages:
do_pages_stat / do_pages_move / add_folio_for_migration, migrate_misplaced_folio),
mm/mempolicy.c (do_migrate_pages: the source -> destination node pairing,
migrate_to_node).  Unit: one order-0 folio of anonymous memory.

One migration (migrate_folio), with the caller holding the mm's mmap_lock (read or
write) or the faulting VMA's read lock:
  1. isolate: PG_locked (folio_trylock: one migrator -- or reclaim -- at a time; EBUSY if
     held), the folio is private anonymous memory of an object that only this mm's VMAs
     map and no shadow child can see, mapped (mapcount >= 1); then folio_isolate_lru
     (reclaim's LRU, issue 12: off its list with a reference; a folio on no list -- in a
     CPU's lru_add batch, or isolated by reclaim -- fails: EBUSY); refcount == 1 (the
     object's tree) + mapcount + 1 (the isolation) (no pin: else EAGAIN);
  2. allocate the destination page (no lock held);
  3. unmap: under the object's lock and each PTE's lock, every PTE mapping the folio
     becomes a migration entry (writable or not, as the PTE was) and is flushed from
     every TLB (one flush for a batch of singly mapped folios); the general path drops
     each PTE's reference, mapcount and rss with it, the fast path (one PTE) keeps them
     with the folio until step 7;
  4. freeze (folio_ref_freeze): the references expected now are swapped for 0 with one
     CAS; anything more is a pin or a racing fault -- the PTEs are restored, the folio
     goes back on its LRU, EAGAIN.  Frozen, a try-get (a fault finding the folio in the
     tree, reclaim's LRU scan) fails and retries;
  5. copy the contents, flags (dirty, swapbacked, mlocked, referenced, active,
     workingset, uptodate) and last_cpupid;
  6. under the object's lock, the tree's entry at the folio's index becomes the new
     page (mapping and index move over): new faults find the new page;
  7. remap: every migration entry naming the old page becomes a PTE of the new one
     (remove_migration_ptes; present, accessed, writable if the entry was); the new
     folio goes to the LRU through lru_add (folio_putback_lru);
  8. the old folio -- out of the tree, its PTEs and its LRU -- gets one reference back
     and is put: freed.
A fault that meets a migration entry waits until the entry changes (migration_wait,
answering IPIs), then retries.  Counters: pgmigrate_success / pgmigrate_fail per page
(after the retries: NR_MAX_MIGRATE_PAGES_RETRY for system calls, none for NUMA
balancing, as MIGRATE_ASYNC gives up early).  move_pages, migrate_pages and mbind
drain this CPU's lru_add batch first (lru_cache_disable; other CPUs' batches are not
drained: no cross-CPU work queue here).

What is not migrated here: pages of MAP_SHARED anonymous memory, of the page cache, and
pages still shared with a fork child through a backing object (EBUSY, or EACCES for a
page several PTEs map without MPOL_MF_MOVE_ALL, as Linux) -- never half-moved.  Other
address spaces reach those by lock-free tree lookups; the fault path's try-get and
mapping recheck (memory.py map_account) together with the frozen refcount above would
make replacing them safe too, but the walk over every address space's PTEs of such a
folio is not written.

Crash tolerance (robust mode, mm/intent.py): each round of migrate_pages_batch opens a
vm_migrate record and logs every folio it holds in the spill (SPILL_MIGRATE, two words:
old pfn << 8 | fast << 5 | isolated << 4 | state, and the destination pfn + 1), at most
MIGRATE_LOGGED folios a batch.  States: 1 locked (and isolated from its LRU if the bit
says so), 2 being unmapped (general path: each migration entry made with the PTE's
accounting dropped; fast path: the one entry made, accounting kept), 3 frozen, 4 moved
(contents, flags and the object's entry at the new page; the fast path's accounting
moved with them), PTEs being remapped, 5 remapped, the new folio on its way to the LRU,
the old one being freed.  A folio leaves the record (both words 0) before whatever
releases it, so a death inside that release (a buddy free) is the inner record's.
Recovery (migrate_finish) undoes states 1-3 (unfrozen, entries mapping the old page
again, putback, unlock, destination freed) and finishes 4-5; a folio logged frozen whose
tree entry already names the destination (a kill from outside inside move_mapping, or
before state 4 was logged) is finished as moved (_finish_move: move_mapping sets the new
page's mapping before clearing the old page's, and the fast path's accounting takes the
old page's mapcount first, so what is left undone is read from the pages).  The
destination's allocation is a hand-off window (mm/intent.py) closed when its spill word
names it; mm/recovery.py frees a page handed out in it after migrate_finish.  Points:
vm:migrate:isolated, vm:migrate:unmapped, vm:migrate:moved.  A failed folio's
destination page is freed at once (migrate_folio_undo_dst) and allocated again on a
retry, so no page is held between rounds.  Not covered: a dead CPU that migrated under a
VMA read lock (a NUMA hinting fault, per-VMA locking) has that lock released at the
takeover; a live thread's munmap of the whole region before the recovery would destroy
the object under the logged folios (threads mode only).

Lock order: (mmap_lock | vm_lock) -> PG_locked (trylock only) -> obj->lock -> ptlock;
TLB shootdowns under the PTE lock as memory.py's replace() does.

Invariants (tests/test_numa_migrate.py): MG1 after a migration nothing maps or holds
the old page (rmap finds no PTE, the tree holds the new one, the old page is free);
MG2 the contents are identical; MG3 folio_mapcount == PTEs found, node counters
(nr_anon_pages) follow the page; MG4 a failed migration leaves the old page mapped
exactly as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from aerosync.arena import layout as L
from aerosync.errors import AeroSyncError
from aerosync.mm import hooks
from aerosync.mm import intent as I
from aerosync.mm.numa import mempolicy as MP
from aerosync.mm.numa.numa_types import H_MEM_NODES
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import __GFP_NORETRY as _GFP_NORETRY
from aerosync.mm.pmm.gfp import __GFP_NOWARN as _GFP_NOWARN
from aerosync.mm.pmm.gfp import __GFP_THISNODE as _GFP_THISNODE
from aerosync.mm.pmm.gfp import GFP_HIGHUSER_MOVABLE
from aerosync.mm.pmm.page import (
    P_INDEX,
    P_MAPPING,
    PAGE_MAPPING_ANON,
    PG_active,
    PG_dirty,
    PG_locked,
    PG_lru,
    PG_mlocked,
    PG_referenced,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_uptodate,
    PG_workingset,
)
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.mm_types import VMError
from aerosync.mm.vm.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    PTE_PFN_MASK,
    is_migration_entry,
    is_writable_migration_entry,
    make_migration_entry,
    migration_entry_pfn,
)
from aerosync.mm.vm.task import task_by_pid
from aerosync.mm.vm.vm_object import (
    O_CHILDREN,
    O_TREE,
    O_TYPE,
    O_VMA_HEAD,
    OBJ_ANON,
    OBJF_DEAD,
    OBJF_SHARED,
    folio_entry,
)
from aerosync.params import MAX_NUMNODES, PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE
from aerosync.sync import waithook as W

__all__ = ["Migrate", "NR_MAX_MIGRATE_PAGES_RETRY", "MIGRATE_BATCH", "MIGRATION_WAIT_S", "EBUSY", "EAGAIN", "ENOMEM",
           "EACCES",
           "ENOENT", "EFAULT", "ENODEV", "ERRNO_NAMES"]

NR_MAX_MIGRATE_PAGES_RETRY = 10
MIGRATE_BATCH = 512                  # NR_MAX_BATCHED_MIGRATION: folios unmapped before one flush
MIGRATION_WAIT_S = 30.0
ENOENT, EFAULT, EBUSY, EAGAIN, ENOMEM, EACCES, ENODEV = 2, 14, 16, 11, 12, 13, 19
ERRNO_NAMES = {ENOENT: "ENOENT", EFAULT: "EFAULT", EBUSY: "EBUSY", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM",
               EACCES: "EACCES", ENODEV: "ENODEV"}
_FLAGS_MIGRATED = (PG_dirty | PG_swapbacked | PG_mlocked | PG_referenced | PG_active | PG_workingset | PG_uptodate
                   | PG_unevictable)
_P_OR_NONE = _PAGE_PRESENT | _PAGE_PROTNONE
# the vm_migrate record's spill words (robust mode): state, and flags beside it
MS_LOCKED, MS_UNMAPPING, MS_FROZEN, MS_MOVED, MS_REMAPPED = 1, 2, 3, 4, 5
MS_ISO, MS_FAST = 16, 32
MIGRATE_LOGGED = (L.INTENT_SPILL - L.SPILL_MIGRATE) // 2     # folios one logged round holds
_OP_MIGRATE, _OP_MM_HOLD = I.OP["vm_migrate"], I.OP["vm_mm_hold"]
P_MIG_ISOLATED, P_MIG_UNMAPPED, P_MIG_MOVED = (I.POINT_IDS[f"vm:migrate:{p}"]
                                               for p in ("isolated", "unmapped", "moved"))
_MIGRATE_TARGET_GFP = GFP_HIGHUSER_MOVABLE | _GFP_THISNODE          # alloc_migration_target, mtc.nid
_MISPLACED_GFP = GFP_HIGHUSER_MOVABLE | _GFP_THISNODE | _GFP_NORETRY | _GFP_NOWARN   # alloc_misplaced_dst_folio


def mig_entry_ok(w0: int, r0: int, low: int) -> bool:
    """The inlined migration entry (entry of pfn 0 xor pfn << low) is pgtable.py's."""
    return all(w0 ^ (p << low) == make_migration_entry(p, True) and r0 ^ (p << low) == make_migration_entry(p, False)
               for p in (0, 1, 12345, (1 << 40) - 1))


class Migrate:
    """Simulated CPU `vm.cpu`'s migration operations (closures; module docstring):

      migrate_folio(pfn, alloc, mm_id, shared_ok=False, retries=...) -> 0 | -errno
      migrate_page(mm_id, va, pfn, alloc, shared_ok=False) -> 0 | -errno  (the page mapped at va)
      migrate_to_node(mm_id, pfn, nid, misplaced=False) -> 0 | -errno
      move_pages(pid, addrs, nodes=None, flags=0) -> (not migrated, [status per page])
      migrate_pages(pid, old_nodes, new_nodes) -> pages not moved
      migration_wait(mm_id, va, e)          memory.py's ext.migration_wait
      lookup_node(mm_id, addr) -> nid | -errno
    """

    def __init__(self, vm: Any) -> None:
        arena, cpu = vm.arena, vm.cpu
        self.arena, self.cpu, self.vm = arena, cpu, vm
        q, u8, u32, at = arena.u64, arena.u8, arena.u32, arena.atomic
        xchg = at.xchg64
        fetch_or32, fetch_and32, load32, fetch_sub32 = at.fetch_or32, at.fetch_and32, at.load32, at.fetch_sub32
        fetch_add32 = at.fetch_add32
        i64 = arena.i64
        ns, NS, NR_ANON = VE.node_stat_base(arena, cpu), VE.NR_NODE_STATS, VE.NR_ANON_PAGES
        PHYS = arena.off("physmem")
        P8 = PHYS >> 3
        PM = arena.off("pagemeta")
        PM8, PM4 = PM >> 3, PM >> 2
        MW, MW4 = PAGE_META_SIZE >> 3, PAGE_META_SIZE >> 2
        i_map, i_idx = P_MAPPING >> 3, P_INDEX >> 3
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        memory, objs, pt, tlb, mm = vm.memory, vm.objs, vm.pt, vm.tlb, vm.mm
        map_account, unmap_account, kind_of = memory.map_account, memory.unmap_account, memory.kind_of
        obj_lock, obj_unlock = vm.locks.obj_lock.lock, vm.locks.obj_lock.unlock
        ptl_lock, ptl_unlock = vm.locks.ptlock.lock, vm.locks.ptlock.unlock
        xa_load, xa_store = objs.xa_load, objs.xa_store
        walk, ptlock_off = pt.walk, pt.ptlock_off
        flush_tlb_mm_range = tlb.flush_tlb_mm_range
        free_pages = mm.free_pages
        cas32 = at.cas32
        # reclaim's LRU (issue 12; None on a machine without it): a folio is taken off its
        # LRU for the move (folio_isolate_lru) and the new one added (folio_putback_lru)
        lru = vm.reclaim.lru if getattr(vm, "reclaim", None) is not None else None
        ev = VE.vm_event_base(arena, cpu)
        ev_ok, ev_fail = ev + VE.PGMIGRATE_SUCCESS, ev + VE.PGMIGRATE_FAIL
        ext = vm.ext
        tp = hooks.point_fn()
        mem_mask = q[(arena.off("numa") + H_MEM_NODES) >> 3]

        def mo(mm_id: int) -> int:
            return mm_base + mm_id * mm_size

        def page_nid(pfn: int) -> int:
            return u8[PM + pfn * PAGE_META_SIZE + 7]

        # ------------------------------------------------------------ the object walk
        def walk_object(o: int, idx: int, fn: Callable[[int, int, int, int, int], None]) -> bool:
            """Call fn(mm_id, vma, va, i, e) for the PTE of every VMA of o that covers idx,
            under o's lock and that PTE's lock.  False if o is dead."""
            obj_lock(o + 16)
            try:
                if (u32[(o + O_TYPE) >> 2] >> 16) & OBJF_DEAD:
                    return False
                v = q[(o + O_VMA_HEAD) >> 3]
                guard = 0
                while v and guard < 1 << 20:
                    off = idx - q[(v + V.V_PGOFF) >> 3]
                    va = q[(v + V.V_START) >> 3] + (off << PAGE_SHIFT)
                    if off >= 0 and va < q[(v + V.V_END) >> 3]:
                        mm_id = q[(v + V.V_MM) >> 3]
                        table = walk(q[(mo(mm_id) + T.M_PGD) >> 3], va)
                        if table >= 0:
                            i = P8 + (table << 9) + ((va >> PAGE_SHIFT) & 511)
                            lo = ptlock_off(table)
                            ptl_lock(lo)
                            try:
                                fn(mm_id, v, va, i, q[i])
                            finally:
                                ptl_unlock(lo)
                    v = q[(v + V.V_OBJ_NEXT) >> 3]
                    guard += 1
            finally:
                obj_unlock(o + 16)
            return True

        def only_mm(o: int, mm_id: int) -> bool:
            """Every VMA of o belongs to mm_id, and o has no shadow child (read under o's
            lock by the caller's walk; here a first, lock-free look)."""
            if q[(o + O_CHILDREN) >> 3]:
                return False
            v = q[(o + O_VMA_HEAD) >> 3]
            n = 0
            while v and n < 1 << 20:
                if q[(v + V.V_MM) >> 3] != mm_id:
                    return False
                v = q[(v + V.V_OBJ_NEXT) >> 3]
                n += 1
            return True

        # ------------------------------------------------------------ unmap / remap
        def unmap(o: int, idx: int, pfn: int, mm_id: int) -> tuple[int, bool]:
            """try_to_migrate(): PTEs mapping pfn -> migration entries (flushed).  Returns
            (entries made, every VMA was mm_id's and no child appeared)."""
            made = [0]
            ok = [True]

            def one(m: int, vma: int, va: int, i: int, e: int) -> None:
                if m != mm_id:
                    ok[0] = False
                    return
                if not e & _P_OR_NONE or e & _PAGE_SPECIAL or (e & PTE_PFN_MASK) >> PAGE_SHIFT != pfn:
                    return
                # xchg: a hardware walk may set A/D meanwhile (never RW: that needs this lock)
                xchg(i << 3, make_migration_entry(pfn, bool(e & _PAGE_RW)))
                flush_tlb_mm_range(m, va, va + PAGE_SIZE)
                unmap_account(m, pfn, kind_of(pfn))
                made[0] += 1

            if not walk_object(o, idx, one):
                return made[0], False
            if q[(o + O_CHILDREN) >> 3]:
                ok[0] = False
            return made[0], ok[0]

        def remap(o: int, idx: int, old: int, new: int, account: bool = True) -> int:
            """remove_migration_ptes(): every migration entry naming `old` maps `new`
            (counted as mapped unless `account` is False: the fast path's one PTE, whose
            reference and mapcount stayed with the folio)."""
            done = [0]

            def one(m: int, vma: int, va: int, i: int, e: int) -> None:
                if not is_migration_entry(e) or migration_entry_pfn(e) != old:
                    return
                ent = (new << PAGE_SHIFT) | q[(vma + V.V_PROT) >> 3] | _PAGE_ACCESSED
                if is_writable_migration_entry(e):
                    ent |= _PAGE_RW | _PAGE_DIRTY
                else:
                    ent &= ~_PAGE_RW
                if account:
                    map_account(m, new, kind_of(new))
                q[i] = ent
                done[0] += 1

            walk_object(o, idx, one)
            return done[0]

        # ------------------------------------------------------------ a batch of folios
        mig_w0, mig_r0 = make_migration_entry(0, True), make_migration_entry(0, False)
        swp_low = 9                                      # pgtable.py: _SWP_OFFSET_FIRST_BIT
        assert mig_entry_ok(mig_w0, mig_r0, swp_low)

        def mig_entry(pfn: int, write: bool) -> int:
            """make_migration_entry(), inlined: the offset is stored inverted above bit 9."""
            return (mig_w0 if write else mig_r0) ^ (pfn << swp_low)

        def lru_isolate(pfns: Sequence[int]) -> list[int]:
            """folio_isolate_lru() of each folio (one lru_lock round trip per node for the
            lot): 1 if taken off its LRU (a reference held for it), 0 on a machine without
            reclaim, -1 if it is on no list (in a CPU's lru_add batch, or isolated by
            reclaim)."""
            if lru is None:
                return [0] * len(pfns)
            out = [-1] * len(pfns)
            by_node: dict[int, list[int]] = {}
            for j, pfn in enumerate(pfns):
                if u32[PM4 + pfn * MW4] & PG_lru:
                    by_node.setdefault(page_nid(pfn), []).append(j)
            for nid, js in by_node.items():
                lru.lock(nid)
                try:
                    for j in js:
                        pfn = pfns[j]
                        if u32[PM4 + pfn * MW4] & PG_lru and lru.isolate(nid, pfn):
                            out[j] = 1
                finally:
                    lru.unlock(nid)
            return out

        def lru_drain() -> None:
            """lru_cache_disable()'s drain for move_pages / migrate_pages / mbind: this
            CPU's lru_add batch onto the lists, so that the folios it faulted last can be
            isolated.  Other CPUs' batches are not drained (no cross-CPU work queue here):
            a folio still in one is on no list and fails with EBUSY."""
            if lru is not None:
                lru.lru_add_drain()

        def release(pfn: int, iso: int) -> None:
            """A folio that is not moved: its LRU place back (dropping the isolation
            reference), then PG_locked cleared."""
            if iso > 0:
                lru.putback(pfn)
            fetch_and32((PM4 + pfn * MW4) << 2, ~PG_locked & 0xFFFFFFFF)

        # intent log (robust mode): one vm_migrate record per round, two spill words a
        # folio -- old << 8 | fast << 5 | isolated << 4 | state, and new + 1 (module
        # docstring, "Crash tolerance")
        lg = vm.memory.log
        begin, log_end, fp = (lg.begin, lg.end, lg.fp) if lg is not None else (None, None, None)
        spm = lg.spill + L.SPILL_MIGRATE if lg is not None else 0
        ho, pend = (lg.handoff, lg.pending) if lg is not None else (0, 0)   # mm/intent.py "Hand-off"

        def drop_new(news: list[int], k: int, j: int) -> None:
            """The destination page of item k (logged at j, or -1) is not used: off the
            record, then freed (migrate_folio_undo_dst)."""
            nw = news[k]
            if nw >= 0:
                news[k] = -1
                if j >= 0:
                    q[spm + 2 * j + 1] = 0
                free_pages(nw, 0)

        def isolate(pfn: int, mm_id: int, shared_ok: bool) -> tuple[int, int, int, int]:
            """PG_locked + the checks of step 1 before the LRU: (0, object, index,
            mapcount) or (-errno, ...).  On success the caller owns PG_locked."""
            b4, b8 = PM4 + pfn * MW4, PM8 + pfn * MW
            if fetch_or32(b4 << 2, PG_locked) & PG_locked:
                return -EBUSY, 0, 0, 0                      # another migrator (or reclaim) has it
            m = q[b8 + i_map]
            r = 0
            if not m & PAGE_MAPPING_ANON or u32[b4] & PG_swapcache:
                r = -EBUSY                                  # page cache / shmem / swap cache: not here
            else:
                o = m & ~3
                t = u32[(o + O_TYPE) >> 2]
                mapcount = load32((b4 + 3) << 2)
                if (t & 0xFFFF) != OBJ_ANON or (t >> 16) & (OBJF_SHARED | OBJF_DEAD):
                    r = -EBUSY
                elif mapcount > 1 and not shared_ok:
                    r = -EACCES                             # mapped shared: needs MPOL_MF_MOVE_ALL
                elif not only_mm(o, mm_id):
                    r = -EBUSY                              # reachable from another address space
                elif not mapcount:
                    r = -EAGAIN                             # a fault is mapping it now
                if not r:
                    return 0, o, q[b8 + i_idx], mapcount
            fetch_and32(b4 << 2, ~PG_locked & 0xFFFFFFFF)
            return r, 0, 0, 0

        def unmap_one(i: int, pfn: int) -> int:
            """The PTE at i (known to map pfn, the folio's only mapping) becomes a migration
            entry; the caller flushes the TLBs.  The PTE's reference and mapcount stay with
            the folio until the move completes (nothing can see them: the mapping is
            exclusive and excluded faults wait on the entry).  1 if done."""
            lo = ptlock_off((i - P8) >> 9)
            ptl_lock(lo)
            e = q[i]
            if not e & _P_OR_NONE or e & _PAGE_SPECIAL or (e & PTE_PFN_MASK) >> PAGE_SHIFT != pfn:
                ptl_unlock(lo)
                return 0
            xchg(i << 3, mig_entry(pfn, bool(e & _PAGE_RW)))    # the walk may set A/D meanwhile: xchg
            ptl_unlock(lo)
            return 1

        def remap_one(i: int, vma: int, old: int, new: int) -> int:
            """remove_migration_pte() for the entry at i: it maps `new`.  1 if done."""
            lo = ptlock_off((i - P8) >> 9)
            ptl_lock(lo)
            x = q[i] ^ (old << swp_low)                 # mig_entry(old, write) is mig_w0 / mig_r0 ^ this
            if x != mig_w0 and x != mig_r0:
                ptl_unlock(lo)
                return 0
            ent = (new << PAGE_SHIFT) | q[(vma + V.V_PROT) >> 3] | _PAGE_ACCESSED
            if x == mig_w0:
                ent |= _PAGE_RW | _PAGE_DIRTY
            else:
                ent &= ~_PAGE_RW
            q[i] = ent
            ptl_unlock(lo)
            return 1

        def pte_index(mm_id: int, va: int) -> int:
            """The arena.u64 index of mm_id's PTE for va, or 0 (no PTE table there)."""
            table = walk(q[(mo(mm_id) + T.M_PGD) >> 3], va)
            return P8 + (table << 9) + ((va >> PAGE_SHIFT) & 511) if table >= 0 else 0

        def move_mapping(pfn: int, new: int, o: int, idx: int) -> bool:
            """Steps 5-6: contents, flags and last_cpupid, then the tree's entry (under the
            object's lock) and mapping / index."""
            src, dst = PHYS + (pfn << PAGE_SHIFT), PHYS + (new << PAGE_SHIFT)
            u8[dst : dst + PAGE_SIZE] = u8[src : src + PAGE_SIZE]
            b4, b8 = PM4 + pfn * MW4, PM8 + pfn * MW
            n4, n8 = PM4 + new * MW4, PM8 + new * MW
            u32[n4] |= u32[b4] & _FLAGS_MIGRATED                     # folio_migrate_flags
            u32[n4 + 7] = u32[b4 + 7]                                # last_cpupid (P_SPARE)
            obj_lock(o + 16)
            try:
                old = xa_store(o + O_TREE, idx, new << 2)     # an existing slot: no node to allocate
                if old != pfn << 2:
                    if old >= 0:
                        xa_store(o + O_TREE, idx, old)        # not ours after all (cannot happen under
                    return False                              # the object lock; kept as a guard)
                q[n8 + i_map], q[n8 + i_idx] = q[b8 + i_map], idx
                q[b8 + i_map] = q[b8 + i_idx] = 0
                return True
            finally:
                obj_unlock(o + 16)

        def migrate_batch(items: Sequence[tuple[int, Callable[[], int], tuple[int, int, int] | None]], mm_id: int,
                          shared_ok: bool = False, retries: int = NR_MAX_MIGRATE_PAGES_RETRY) -> list[int]:
            """migrate_pages() for a batch of folios (pfn, alloc, hint): every folio is
            isolated and unmapped, the TLBs are flushed once, then each is moved; folios
            that met a pin or a racing fault (EAGAIN) are tried again, up to `retries`
            rounds.  Returns 0 or -errno per item.  pgmigrate_success / pgmigrate_fail
            count folios that got past isolation (EAGAIN after the retries and ENOMEM are
            failures; EBUSY / EACCES refusals are not, as isolation failures are not in
            Linux).  A hint = (entry index into arena.u64, va, vma) of the PTE of mm_id
            mapping the folio lets a folio mapped once skip the object walk.  Robust
            mode logs at most MIGRATE_LOGGED folios a batch."""
            if begin is not None and len(items) > MIGRATE_LOGGED:
                out: list[int] = []
                for j in range(0, len(items), MIGRATE_LOGGED):
                    out += migrate_batch(items[j : j + MIGRATE_LOGGED], mm_id, shared_ok, retries)
                return out
            res = [-EAGAIN] * len(items)
            news = [-1] * len(items)
            todo = list(range(len(items)))
            try:
                for attempt in range(max(1, retries)):
                    if attempt:
                        W.call_wait_hook()
                        time.sleep(0)
                    todo = _round(items, todo, res, news, mm_id, shared_ok, attempt)
                    if not todo:
                        break
            finally:
                for nw in news:                   # (an exception: a round's own pages)
                    if nw >= 0:
                        free_pages(nw, 0)
            for r in res:
                if not r:
                    q[ev_ok] += 1
                elif r in (-EAGAIN, -ENOMEM):
                    q[ev_fail] += 1
            return res

        def _round(items: Sequence[tuple[int, Callable[[], int], tuple[int, int, int] | None]], todo: list[int],
                   res: list[int], news: list[int], mm_id: int, shared_ok: bool, attempt: int) -> list[int]:
            """One pass of migrate_pages_batch over `todo`: returns the items to retry.
            Robust mode logs every folio it holds in a vm_migrate record (spill word
            pair j: the folio's state and its destination), each released (both words 0)
            before what releases it."""
            r_log = begin(_OP_MIGRATE, mm_id) if begin is not None else -1
            try:
                logged = r_log >= 0
                unmapped: list[tuple[int, int, int, int, tuple[int, int, int] | None, int, int, int, int]] = []
                lo_va, hi_va = 1 << 64, 0
                la = ext.lru_add                                      # reclaim's LRU (issue 12)
                cands = []
                for k in todo:
                    pfn = items[k][0]
                    r, o, idx, mapcount = isolate(pfn, mm_id, shared_ok)
                    if r:
                        res[k] = r
                        continue
                    j = len(cands)
                    if logged:                                        # take, record
                        q[spm + 2 * j] = pfn << 8 | MS_LOCKED
                        q[spm + 2 * j + 1] = 0
                        q[r_log + 7] = j + 1
                    cands.append((k, j, pfn, o, idx, mapcount))
                isos = lru_isolate([c[2] for c in cands])
                if logged:
                    for (_k, j, pfn, _o, _i, _m), iso in zip(cands, isos):
                        if iso > 0:
                            q[spm + 2 * j] = pfn << 8 | MS_ISO | MS_LOCKED
                for (k, j, pfn, o, idx, mapcount), iso in zip(cands, isos):
                    _pfn, alloc, hint = items[k]
                    wj = spm + 2 * j
                    if iso < 0:
                        if logged:
                            q[wj] = 0
                        release(pfn, 0)
                        res[k] = -EBUSY                               # on no LRU: folio_isolate_lru fails
                        continue
                    if load32((PM4 + pfn * MW4 + 2) << 2) != 1 + mapcount + iso:
                        if logged:
                            q[wj] = 0
                        release(pfn, iso)
                        res[k] = -EAGAIN                              # pinned, or a fault is mapping it now
                        continue
                    if logged:                                        # the destination's hand-off
                        q[ho] = 0                                     # window, closed once the
                        q[pend] = 1                                   # record names it
                    news[k] = nw = alloc()
                    if nw < 0:
                        if logged:
                            q[pend] = 0
                            q[wj] = 0
                        release(pfn, iso)
                        res[k] = -ENOMEM
                        continue
                    one = hint if mapcount == 1 and hint is not None and not attempt else None
                    if logged:
                        q[wj + 1] = nw + 1
                        q[pend] = 0
                        if fp:
                            fp(P_MIG_ISOLATED)
                        q[wj] = (pfn << 8 | (MS_FAST if one is not None else 0) | (MS_ISO if iso > 0 else 0)
                                 | MS_UNMAPPING)
                    if tp:
                        tp("migrate:isolated")
                    if one is not None:
                        made = unmap_one(one[0], pfn)
                        va = one[1]
                        if va < lo_va:
                            lo_va = va
                        if va > hi_va:
                            hi_va = va
                        ok = True
                    else:
                        made, ok = unmap(o, idx, pfn, mm_id)          # flushes each PTE itself
                    unmapped.append((k, j, pfn, o, idx, one, made if ok else -1, mapcount, iso))
                if hi_va:
                    flush_tlb_mm_range(mm_id, lo_va, hi_va + PAGE_SIZE)   # try_to_unmap_flush()
                retry = []
                for k, j, pfn, o, idx, one, made, mapcount, iso in unmapped:
                    if logged and fp:
                        fp(P_MIG_UNMAPPED)
                    if tp:
                        tp("migrate:unmapped")
                    wj = spm + 2 * j
                    b4 = PM4 + pfn * MW4
                    new = news[k]
                    # folio_migrate_mapping: freeze the references it expects -- the tree's,
                    # the LRU isolation's and (fast path) the one PTE's, still held -- so that
                    # no try-get (a fault finding it in the tree, reclaim's LRU scan) succeeds
                    # from here on; anything more is a pin or a racing fault
                    want = (2 if one is not None else 1) + iso
                    if made != mapcount or cas32((b4 + 2) << 2, want, 0) != want:
                        _undo(one, o, idx, pfn, made, mm_id)
                        _fail(news, k, j if logged else -1, pfn, iso)
                        res[k] = -EBUSY if made < 0 else -EAGAIN
                        if made >= 0:
                            retry.append(k)
                        continue
                    if logged:
                        w0 = pfn << 8 | (MS_FAST if one is not None else 0) | (MS_ISO if iso > 0 else 0)
                        q[wj] = w0 | MS_FROZEN
                    if not move_mapping(pfn, new, o, idx):
                        u32[b4 + 2] = want                            # unfreeze
                        if logged:
                            q[wj] = w0 | MS_UNMAPPING
                        _undo(one, o, idx, pfn, made, mm_id)
                        _fail(news, k, j if logged else -1, pfn, iso)
                        res[k] = -EAGAIN
                        retry.append(k)
                        continue
                    if one is not None:
                        move_account(pfn, new)
                    if logged:
                        q[wj] = w0 | MS_MOVED
                        if fp:
                            fp(P_MIG_MOVED)
                    if one is not None:
                        done = remap_one(one[0], one[2], pfn, new)
                    else:
                        done = remap(o, idx, pfn, new)
                    if done != (1 if one is not None else made):
                        raise AeroSyncError(f"cpu{cpu}: migration of pfn {pfn} -> {new}: {made} migration entries "
                                            f"made, {done} restored (a mapping changed under the locks that exclude "
                                            "it)")
                    if logged:
                        q[wj] = w0 | MS_REMAPPED
                    if la is not None:
                        la(new)                                       # folio_putback_lru of the new folio
                    news[k] = -1
                    res[k] = 0
                    # put_old(), inlined (one call a page less: migrate_page_us)
                    u32[b4 + 2] = 1
                    fetch_and32(b4 << 2, ~PG_locked & 0xFFFFFFFF)
                    if logged:
                        q[wj] = q[wj + 1] = 0
                    free_pages(pfn, 0)
                return retry
            finally:
                if r_log >= 0:
                    log_end(r_log)

        def _fail(news: list[int], k: int, j: int, pfn: int, iso: int) -> None:
            """Item k (logged at j, or -1) is not moved: off the record, its folio
            released, its destination page freed."""
            if j >= 0:
                q[spm + 2 * j] = 0
            release(pfn, iso)
            drop_new(news, k, j)

        def put_old(pfn: int, wj: int) -> None:
            """The old folio -- out of the tree, its PTEs and its LRU, nobody can reach
            it any more -- gets one reference back (the isolation's), is unlocked, leaves
            the record (wj, or -1) and is put: freed."""
            b4 = PM4 + pfn * MW4
            u32[b4 + 2] = 1
            fetch_and32(b4 << 2, ~PG_locked & 0xFFFFFFFF)
            if wj >= 0:
                q[wj] = q[wj + 1] = 0
            free_pages(pfn, 0)

        def _undo(one: tuple[int, int, int] | None, o: int, idx: int, pfn: int, made: int, mm_id: int) -> None:
            """A failed move: the migration entries map the old page again."""
            if made <= 0:
                return
            done = remap_one(one[0], one[2], pfn, pfn) if one is not None else remap(o, idx, pfn, pfn)
            if done != made:
                raise AeroSyncError(f"cpu{cpu}: migration of pfn {pfn} backed out: {made} migration entries made, "
                                    f"{done} restored")

        def move_account(pfn: int, new: int) -> None:
            """The fast path's one mapping moves from the old page to the new one:
            mapcount and the PTE's reference (memory.py's accounting, moved as a whole;
            rss is unchanged), nr_anon_pages from one node to the other.  The old page's
            mapcount goes first: _finish_move reads from it whether this began."""
            fetch_sub32((PM4 + pfn * MW4 + 3) << 2, 1)
            pn, nn = page_nid(pfn), page_nid(new)
            if pn != nn:
                i64[ns + pn * NS + NR_ANON] -= 1
                i64[ns + nn * NS + NR_ANON] += 1
            n4 = PM4 + new * MW4
            u32[n4 + 2], u32[n4 + 3] = 2, 1

        def _finish_move(pfn: int, new: int, fast: bool) -> bool:
            """Recovery of a folio logged frozen: True if its move landed (the tree's
            entry is the new page's -- move_mapping died after its xa_store, or the
            folio's CPU before logging it moved), having finished what move_mapping and
            the fast path's accounting left undone; False if nothing of the move
            happened.  move_mapping sets the new page's mapping and index before it
            clears the old page's, so one of the two names the object."""
            b8, n8 = PM8 + pfn * MW, PM8 + new * MW
            src = b8 if q[b8 + i_map] else n8
            m, idx = q[src + i_map], q[src + i_idx]
            if new < 0 or not m or xa_load((m & ~3) + O_TREE, idx) != folio_entry(new):
                return False
            q[n8 + i_map], q[n8 + i_idx] = m, idx
            q[b8 + i_map] = q[b8 + i_idx] = 0
            if fast:
                if load32((PM4 + pfn * MW4 + 3) << 2):     # the accounting had not begun
                    move_account(pfn, new)
                else:                                      # (a node stat half moved: settle's)
                    n4 = PM4 + new * MW4
                    u32[n4 + 2], u32[n4 + 3] = 2, 1
            return True

        def migrate_finish(mm_id: int, words: Sequence[int]) -> int:
            """Recovery of a dead CPU's vm_migrate record (world stopped): every folio
            still logged is finished -- moved (state 4: its entries remapped to the new
            page, the new folio onto its LRU; 5: remapped already) and the old page
            freed -- or undone (states 1-3: unfrozen, its migration entries mapping it
            again, back on its LRU and unlocked, the destination page freed; a folio at
            state 2 with refcount 0 was frozen -- the CAS landed, its state store did not
            -- and is taken as state 3: isolated, its references are never all gone
            otherwise).  An entry
            a zap cleared meanwhile (MADV_DONTNEED under mmap_lock for read) is not
            restored: on the fast path, whose one mapping kept its accounting, that
            mapping's accounting goes too (unless a zap of the PTE before it became a
            migration entry took it already: mapcount 0).  Returns the folios
            resolved."""
            n = 0
            for j in range(0, len(words) - 1, 2):
                w, nw1 = words[j], words[j + 1]
                if not w:
                    continue
                pfn, st = w >> 8, w & 15
                fast, iso = bool(w & MS_FAST), 1 if w & MS_ISO else 0
                new = nw1 - 1
                n += 1
                if st == MS_UNMAPPING and not u32[PM4 + pfn * MW4 + 2]:
                    st = MS_FROZEN                        # the freeze's CAS landed, its state store not
                if st == MS_FROZEN and _finish_move(pfn, new, fast):
                    st = MS_MOVED                         # move_mapping landed: roll forward
                if st >= MS_MOVED:
                    if st == MS_MOVED:
                        m = q[PM8 + new * MW + i_map]
                        if (not remap(m & ~3, q[PM8 + new * MW + i_idx], pfn, new, account=not fast) and fast
                                and load32((PM4 + new * MW4 + 3) << 2)):
                            unmap_account(mm_id, new, kind_of(new))
                        if lru is not None:
                            fetch_add32((PM4 + new * MW4 + 2) << 2, 1)
                            lru.putback(new)              # folio_add_lru + drain, as one
                    put_old(pfn, -1)
                    continue
                if st == MS_FROZEN:
                    u32[PM4 + pfn * MW4 + 2] = (2 if fast else 1) + iso
                if st >= MS_UNMAPPING:
                    m = q[PM8 + pfn * MW + i_map]
                    if not m:
                        raise AeroSyncError(f"cpu{cpu}: recovery of the migration of pfn {pfn} (state {st}): the "
                                            "page names no object and the tree does not hold its destination")
                    if (not remap(m & ~3, q[PM8 + pfn * MW + i_idx], pfn, pfn, account=not fast) and fast
                            and load32((PM4 + pfn * MW4 + 3) << 2)):
                        unmap_account(mm_id, pfn, kind_of(pfn))
                release(pfn, iso)
                if new >= 0:
                    free_pages(new, 0)
            return n

        def migrate_folio(pfn: int, alloc: Callable[[], int], mm_id: int, shared_ok: bool = False,
                          retries: int = NR_MAX_MIGRATE_PAGES_RETRY, hint: tuple[int, int, int] | None = None) -> int:
            """migrate_batch of one folio: 0 or -errno."""
            return migrate_batch([(pfn, alloc, hint)], mm_id, shared_ok, retries)[0]

        def migrate_page(mm_id: int, va: int, pfn: int, alloc: Callable[[], int], shared_ok: bool = False,
                         retries: int = NR_MAX_MIGRATE_PAGES_RETRY) -> int:
            """migrate_folio of the page mapped at va (its PTE is the hint)."""
            return migrate_folio(pfn, alloc, mm_id, shared_ok, retries, hint_at(mm_id, va))

        def hint_at(mm_id: int, va: int, vma: int = 0) -> tuple[int, int, int] | None:
            i = pte_index(mm_id, va)
            if not i:
                return None
            return i, va, vma or vm.vmas.vma_lookup(mm_id, va)

        def target_alloc(nid: int, misplaced: bool = False) -> Callable[[], int]:
            """alloc_migration_target (THISNODE on nid) or, for NUMA balancing,
            alloc_misplaced_dst_folio (no reclaim)."""
            anm = mm.alloc_pages_nodemask
            gfp = _MISPLACED_GFP if misplaced else _MIGRATE_TARGET_GFP
            return lambda: anm(gfp, 0, nid, None)

        def migrate_to_node(mm_id: int, pfn: int, nid: int, misplaced: bool = False, shared_ok: bool = False,
                            hint: tuple[int, int, int] | None = None) -> int:
            """One folio to node nid; NUMA balancing (misplaced) tries once (MIGRATE_ASYNC)."""
            return migrate_folio(pfn, target_alloc(nid, misplaced), mm_id, shared_ok,
                                 1 if misplaced else NR_MAX_MIGRATE_PAGES_RETRY, hint)

        # ------------------------------------------------------------ waiting
        def migration_wait(mm_id: int, va: int, e: int) -> None:
            """migration_entry_wait(): a fault met a migration entry; wait (answering this
            CPU's IPIs, as the migrating CPU may be shooting TLBs down) until the entry
            changes, then let the access retry."""
            root = q[(mo(mm_id) + T.M_PGD) >> 3]
            deadline = time.monotonic() + MIGRATION_WAIT_S
            spins = 0
            while True:
                table = walk(root, va)
                if table < 0 or q[P8 + (table << 9) + ((va >> PAGE_SHIFT) & 511)] != e:
                    return
                W.call_wait_hook()
                spins += 1
                if spins > 64:
                    time.sleep(20e-6)
                if time.monotonic() > deadline:
                    raise AeroSyncError(f"cpu{cpu}: a fault at {va:#x} waited {MIGRATION_WAIT_S:.0f} s for the "
                                        f"migration of pfn {migration_entry_pfn(e)}")

        # ------------------------------------------------------------ lookups
        def entry_at(mm_id: int, va: int) -> int:
            table = walk(q[(mo(mm_id) + T.M_PGD) >> 3], va)
            if table < 0:
                return 0
            return q[P8 + (table << 9) + ((va >> PAGE_SHIFT) & 511)]

        def page_status(mm_id: int, va: int) -> int:
            """do_pages_stat() for one address: the node, -EFAULT (no VMA, or the zero
            page), -ENOENT (nothing mapped there)."""
            if not vm.vmas.vma_lookup(mm_id, va):
                return -EFAULT
            e = entry_at(mm_id, va)
            if not e & _P_OR_NONE:
                return -ENOENT
            if e & _PAGE_SPECIAL:
                return -EFAULT
            return page_nid((e & PTE_PFN_MASK) >> PAGE_SHIFT)

        def lookup_node(mm_id: int, addr: int) -> int:
            """get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR): the node of the page at addr,
            faulted in (a read) when absent, as get_user_pages does -- untouched
            anonymous memory reads as the zero page, whose node it then is."""
            va = addr & ~(PAGE_SIZE - 1)
            if not entry_at(mm_id, va) & _P_OR_NONE and mm_id == vm.cur[1] and vm.vmas.vma_lookup(mm_id, va):
                vm.load64(addr & ~7)
            e = entry_at(mm_id, va)
            st = page_nid((e & PTE_PFN_MASK) >> PAGE_SHIFT) if e & _P_OR_NONE else page_status(mm_id, va)
            if st < 0:
                raise VMError(ERRNO_NAMES.get(-st, str(-st)), f"cpu{cpu}: get_mempolicy(MPOL_F_NODE|MPOL_F_ADDR, "
                                                               f"{addr:#x})")
            return st

        # ------------------------------------------------------------ system calls
        def task_mm(call: str, pid: int) -> tuple[int, int]:
            """(tid, mm id) of pid (0: the current task); ESRCH / EINVAL."""
            if pid == 0:
                if vm.task < 0 or vm.cur[1] <= 0:
                    raise VMError("EINVAL", f"cpu{cpu}: {call}: no task with an address space runs here")
                return vm.task, vm.cur[1]
            tid = task_by_pid(arena, pid)
            if tid < 0:
                raise VMError("ESRCH", f"cpu{cpu}: {call}: no task with pid {pid}")
            mm_id = q[(T.task_off(arena, tid) + T.T_MM) >> 3] - 1
            if mm_id <= 0:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: task {pid} has no address space")
            return tid, mm_id

        def with_mm(mm_id: int, fn: Callable[[], Any]) -> Any:
            """Run fn with mm_id's mmap_lock held for read and a reference on the mm
            (get_task_mm / mmput; robust mode logs the reference: vm_mm_hold)."""
            r = begin(_OP_MM_HOLD, mm_id) if begin is not None else -1
            try:
                vm.forks.mmget(mm_id)
                if r >= 0:
                    q[r + 7] = 1                          # take, record
                lk = vm.locks.mmap_lock
                lk.down_read(mo(mm_id) + T.M_MMAP_LOCK)
                try:
                    return fn()
                finally:
                    lk.up_read(mo(mm_id) + T.M_MMAP_LOCK)
                    if r >= 0:
                        q[r + 7] = 0                      # released before the put (its teardown logs itself)
                    vm.forks.mmput(mm_id)
                    vm.rcu.poll()
            finally:
                if r >= 0:
                    log_end(r)

        def move_pages(pid: int, addrs: Sequence[int], nodes: Sequence[int] | None = None,
                       flags: int = 0) -> tuple[int, list[int]]:
            """move_pages(2): with nodes None, the node of each page (status); else move
            each page to its node.  Returns (pages that could not be moved, status per
            page: the node, or -errno -- ENOENT not present, EFAULT no VMA / zero page /
            not migratable, EACCES mapped shared without MPOL_MF_MOVE_ALL, EBUSY in use,
            ENOMEM no page on the node).  ENODEV (the call) for a node without memory."""
            call = f"move_pages(pid={pid}, count={len(addrs)}, flags={flags:#x})"
            if flags & ~(MP.MPOL_MF_MOVE | MP.MPOL_MF_MOVE_ALL):
                raise VMError("EINVAL", f"cpu{cpu}: {call}: flags other than MPOL_MF_MOVE / MPOL_MF_MOVE_ALL")
            if nodes is not None and len(nodes) != len(addrs):
                raise VMError("EINVAL", f"cpu{cpu}: {call}: {len(nodes)} nodes for {len(addrs)} pages")
            _tid, mm_id = task_mm(call, pid)
            if nodes is None:
                return with_mm(mm_id, lambda: (0, [page_status(mm_id, a & ~(PAGE_SIZE - 1)) for a in addrs]))
            for nid in nodes:
                if not 0 <= nid < MAX_NUMNODES or not mem_mask >> nid & 1:
                    raise VMError("ENODEV", f"cpu{cpu}: {call}: node {nid} has no memory")

            def body() -> tuple[int, list[int]]:
                lru_drain()
                status: list[int] = [0] * len(addrs)
                failed = [0]
                batch: list[tuple[int, Callable[[], int], tuple[int, int, int] | None]] = []
                where: list[int] = []
                cur_node = [-1]
                shared_ok = bool(flags & MP.MPOL_MF_MOVE_ALL)

                def flush() -> None:
                    """move_pages_and_store_status(): the pages queued for cur_node."""
                    if not batch:
                        return
                    for k, r in zip(where, migrate_batch(batch, mm_id, shared_ok)):
                        status[k] = cur_node[0] if not r else (r if r != -EAGAIN else -EBUSY)
                        if r in (-EAGAIN, -ENOMEM):
                            failed[0] += 1              # queued but not migrated: Linux's count
                    batch.clear()
                    where.clear()

                vma, vs, ve = 0, 1, 0
                allocs: dict[int, Callable[[], int]] = {}
                t_lo, t_hi, t_base = 1, 0, -1
                for k, (a, nid) in enumerate(zip(addrs, nodes)):
                    if nid != cur_node[0]:
                        flush()
                        cur_node[0] = nid
                    va = a & ~(PAGE_SIZE - 1)
                    if not vs <= va < ve:
                        vma = vm.vmas.vma_lookup(mm_id, va)
                        vs, ve = (q[(vma + V.V_START) >> 3], q[(vma + V.V_END) >> 3]) if vma else (1, 0)
                    if not vma or q[(vma + V.V_FLAGS) >> 3] & (V.VM_IO | V.VM_PFNMAP):
                        status[k] = -EFAULT
                        continue
                    if not t_lo <= va < t_hi:                 # the PTE table of this 2 MiB
                        t_lo, t_hi = va & ~((1 << 21) - 1), (va | ((1 << 21) - 1)) + 1
                        table = walk(q[(mo(mm_id) + T.M_PGD) >> 3], va)
                        t_base = P8 + (table << 9) if table >= 0 else -1
                    i = t_base + ((va >> PAGE_SHIFT) & 511) if t_base >= 0 else 0
                    e = q[i] if i else 0
                    if not e & _P_OR_NONE:
                        status[k] = -ENOENT
                        continue
                    if e & _PAGE_SPECIAL:
                        status[k] = -EFAULT
                        continue
                    pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                    if page_nid(pfn) == nid:
                        status[k] = nid
                        continue
                    alloc = allocs.get(nid)
                    if alloc is None:
                        alloc = allocs[nid] = target_alloc(nid)
                    batch.append((pfn, alloc, (i, va, vma)))
                    where.append(k)
                flush()
                return failed[0], status

            return with_mm(mm_id, body)

        def mm_pages_on(mm_id: int, nodes_mask: int) -> list[tuple[int, int, int, int]]:
            """(va, pfn) of every page mapped in mm_id whose node is in nodes_mask
            (queue_pages_range over the whole address space, MPOL_MF_DISCONTIG_OK)."""
            out: list[tuple[int, int, int, int]] = []
            for _f, _l, v in list(vm.vmas.tree(mm_id).mt_for_each(0, (1 << 64) - 1)):
                if q[(v + V.V_FLAGS) >> 3] & (V.VM_IO | V.VM_PFNMAP):
                    continue
                start, end = q[(v + V.V_START) >> 3], q[(v + V.V_END) >> 3]
                root = q[(mo(mm_id) + T.M_PGD) >> 3]
                a = start
                while a < end:
                    nxt = min(end, (a | ((1 << 21) - 1)) + 1)
                    table = walk(root, a)
                    if table >= 0:
                        base = P8 + (table << 9)
                        for va in range(a, nxt, PAGE_SIZE):
                            i = base + ((va >> PAGE_SHIFT) & 511)
                            e = q[i]
                            if e & _P_OR_NONE and not e & _PAGE_SPECIAL:
                                pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                                if nodes_mask >> page_nid(pfn) & 1:
                                    out.append((va, pfn, i, v))
                    a = nxt
            return out

        def migrate_pages(pid: int, old_nodes: int, new_nodes: int) -> int:
            """migrate_pages(2) / do_migrate_pages(): move the task's pages from the nodes
            of old_nodes to those of new_nodes, node by node in the kernel's pairing
            order (the n-th old node to the n-th new node, a destination not also a
            pending source first).  Returns the pages not moved."""
            call = f"migrate_pages(pid={pid}, old={old_nodes:#x}, new={new_nodes:#x})"
            if (old_nodes | new_nodes) >> MAX_NUMNODES:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: nodes beyond MAX_NUMNODES")
            _tid, mm_id = task_mm(call, pid)
            new_nodes &= mem_mask
            if not new_nodes:
                raise VMError("EINVAL", f"cpu{cpu}: {call}: no destination node has memory")

            def body() -> int:
                nr_failed = 0
                lru_drain()
                tmp = old_nodes
                while tmp:
                    source, dest = -1, 0
                    for s in _bits(tmp):
                        if MP.nodes_weight(old_nodes) != MP.nodes_weight(new_nodes) and new_nodes >> s & 1:
                            continue
                        d = MP.node_remap(s, old_nodes, new_nodes)
                        if s == d:
                            continue
                        source, dest = s, d
                        if not tmp >> dest & 1:
                            break
                    if source < 0:
                        break
                    tmp &= ~(1 << source)
                    alloc = target_alloc(dest)
                    pages = [(pfn, alloc, (i, va, v)) for va, pfn, i, v in mm_pages_on(mm_id, 1 << source)]
                    for j in range(0, len(pages), MIGRATE_BATCH):
                        nr_failed += sum(1 for r in migrate_batch(pages[j : j + MIGRATE_BATCH], mm_id, True) if r)
                return nr_failed

            return with_mm(mm_id, body)

        self.migrate_folio, self.migrate_page, self.migrate_to_node = migrate_folio, migrate_page, migrate_to_node
        self.migration_wait, self.lookup_node, self.page_status = migration_wait, lookup_node, page_status
        self.move_pages, self.migrate_pages, self.entry_at = move_pages, migrate_pages, entry_at
        self.lru_drain, self.migrate_finish = lru_drain, migrate_finish
        self.walk_object, self.hint_at = walk_object, hint_at


def _bits(mask: int) -> list[int]:
    out, n = [], 0
    while mask:
        if mask & 1:
            out.append(n)
        mask >>= 1
        n += 1
    return out
