"""Repairing the VM after a simulated CPU died in a fault, an mmap or a munmap.

Models: nothing in Linux (a CPU does not die half-way through a page fault); what a
recovering coordinator must finish or undo so that the VM checker (mm/vm/check.py)
passes and no page or object is lost.  Unit: one dead CPU; the machine stopped
(mm/recovery.py phase B).  The VM logs only in robust mode (memory.py, mmap.py): what is
covered, and how each record is resolved:

  vm_fault   (a fault's new page: do_anonymous_page / wp_page_copy via map_new, and the
             inlined anon_write_fast; a found page: map_existing -- steps 3 and 4 only)
             step 0 nothing taken yet (or the fault's own page given back): nothing
                    -- but a page the allocator handed out in the record's hand-off
                    window, not yet named by it: freed (_plain_page_handed_out);
             step 1 page allocated, in no object (its insert may have set its mapping
                    and index): set back and freed (rolled back) -- or, its insert
                    landed (a kill from outside after the publish), as step 2;
             step 2 in its object's tree: nothing (the tree holds it; the task's exit
                    frees it with the object);
             step 3 counted as mapped (PTE reference, mapcount, rss) without its PTE:
                    the accounting undone (unmap_account: back to step 2);
             steps 2 and 3 of a COW (a5: the present entry it replaces, still in the
                    PTE): the copy also leaves the tree and is freed;
             step 5 (anon_write_fast) counted for its tree and PTE, the tree insert in
                    flight: kept in the tree if the insert landed, else freed;
             step 4 PTE installed: nothing;
             step 6 (install under the PTE lock, the store next: a kill from outside
                    can land between it and step 4) step 4 if the PTE maps the page,
                    else step 3.
  vm_file_hold (a file fault's reference to its page-cache folio, do_fault) step 1
             held: put (folio_put; the cache keeps its own), resolved after the records
             above it -- a COW copy or the mapping of that folio;
  vm_file_add  (a folio read into the page cache, filemap.py's add_to_cache) step 0
             allocating: the page the hand-off window names, if handed out, freed; step 1
             allocated, in no cache: PG_uptodate, mapping and index (set by the insert
             before it publishes) cleared and the allocation's reference put (a caller's
             hold, if taken, is its vm_file_hold's); step 2 in the cache (or step 1 whose
             insert did publish): counted and put on the LRU (add_finish, rolled forward).
  vm_obj_destroy (a vm_object's last put, robust mode's one-entry-at-a-time destroy,
             vm_object.py) finished from its step (destroy_steps): the entry it was
             taking put if the tree still had it, the rest of the tree emptied, the
             backing cut and put, the record freed.
  vm_obj_remove (vm_object_page_remove of robust mode: munmap's and the zaps' removal of
             an object's folios, one entry at a time) step 1 the entry being erased:
             erased if the tree still has it, taken out (mapping and index cleared, or
             its swap value dropped) and counted, its folio put; step 2 erased and
             counted: its folio put; step 0 nothing.  The caller's own record (a
             munmap's remove_vmas) then resumes the rest of the range.
  vm_xa_nodes (the nodes an object-tree store allocated, not yet published: vm.py's
             track) freed -- a store publishes before the record ends, with no fault
             point between; a kill from outside in between leaves them published and
             listed: a node its tree reaches is kept (_xa_published).
  vm_collapse (vm_object_collapse moving a backing's entries up into its only child, one
             at a time) step 1 the entry's folio already says the child: if the store
             into the child landed, the move is finished (counts, the backing's copy
             erased), else undone (the folio says the backing again); step 2 stored
             and counted: the backing's copy erased.  The collapse stops there: a
             chain collapsed part-way is consistent (as after its own ENOMEM).  Step
             3 (every entry moved, the splice under way: a3 the backing's backing, a4
             the child's new offset): the splice redone whole -- links, the next
             object's child list, depths -- and the backing put (its last reference);
             step 4 the same without the put (stored before it).  At any step (0 too)
             the child's collapse sequence is made even again, and the reference its
             caller held on it (a1's low bit) is dropped.
  vm_task_create (VM.task_create, VM.fork) undone: step 3 the task exits and is
             reaped, 2 a task claimed (a1) goes back to the pool and the mm user it
             took is dropped (mmput), 1 the claimed mm record is freed (its page-table
             root too, if set); a kernel stack half-made is vm_vmalloc's.
  vm_vmalloc (vmalloc_node_range's page-backed areas: kernel stacks, large and huge
             vmallocs; vmap() of a caller's pages; a4 the order of the block in hand)
             step 1 the vmap_area record had, in no tree: freed; step 2, an area not yet
             BUSY is undone (vmalloc_undo: its mapped pages and the page in hand freed,
             or one still in its allocation's hand-off window (a3 empty) --
             a vmap's only unmapped, they are its caller's -- its range erased: nobody
             else ever saw it, so no flush); a BUSY one is complete.
  vm_vfree   (vfree / vunmap of an area; a3 = vunmap from the start) step 0 the area still
             BUSY: the vfree is done (it cannot fail), else resumed at step 1;
             step 1 no longer BUSY, unmapping: what is still
             mapped unmapped (pages freed unless vunmap; a5 names the page whose leaf
             was being cleared, freed if no leaf maps it any more and its reference
             was not dropped yet -- dropped, it is the pmm scan's), the pages
             uncounted, then the area made lazy; step 2 unmapped and uncounted: made
             lazy; step 3 lazy.
  vm_purge   (the purge of one node's detached lazy chain, robust mode's purge_logged)
             step 1 not flushed yet: the chain relinked on the node's purge list (still
             lazy and counted); step 2 flushed, the cursor area's erase in flight: if
             the tree no longer has it, it is uncounted and freed, then the chain from
             the next area is relinked; step 3 the cursor moved past an area erased
             and uncounted: its record freed, the chain from the cursor relinked.
  vm_dup_mm  (fork's copy of the address space) undone: a VMA copy in flight taken off
             the lists it may already be on and freed with the shadows made for it
             (the parent's VMA put back on the list of the object it names: a kill
             between its unlink from the old object and its link to its shadow), then
             the child mm torn down (mmput) or its claimed record freed; VM.fork's own
             vm_task_create record then drops the rest.
  vm_exit_mmap (mmput's teardown, robust mode: the VMAs unmapped one at a time by the
             logged munmap, the tree its progress) step 1 resumed (exit_mmap_steps: the
             interrupted munmap's own record was finished first), then step 2 the root
             table and the mm record freed.
  vm_task_exit (do_exit) finished: at step 0 the task made a zombie and its stack
             released, then (steps 0-1, unless mmput's own record was open inside) its mm
             user dropped; then the task and its family no live CPU runs exit and are
             reaped (exit_tasks seeded with it: the dead CPU may run no task any more,
             e.g. a forked child exiting, its parent switched out).
  vm_expand  (vma_expand: brk growth, mmap merging into its neighbour, mremap in place,
             merges after a change) rolled forward when the tree already maps the VMA up
             to new_end: its vm_end set, the VMA caches invalidated and, for new memory
             (a3 = flags + 1), total_vm and the rest counted; else nothing changed.
  vm_mmap    (mmap_region's new VMA) step 0 being allocated (a1 = 0: the VMA the
             hand-off word names, if the allocator took it, freed: _vma_handed_out) or
             set up (a1 = v: its object reference dropped, the VMA freed); step 1 set up
             but not in the maple tree: the same -- unless the tree store had landed
             (the death was in its freeing of replaced nodes, or a kill from outside
             inside mmap_finish): then rolled forward (attached, linked, counted:
             mmap_finish; first taken off the lists a kill after its link left it on,
             so it is linked once); step 2 in the tree: nothing; a1
             = 0 past step 0: released by mmap itself (its ENOMEM path).
  vm_merge   (a merge after mprotect / madvise / mbind: the survivor grows over its
             neighbour, then the neighbour is removed) step 1 the store in flight (its
             vm_expand resolved first): finished if the tree maps the victim's start
             to the survivor, else nothing changed; step 2 stored: the victim
             detached, unlinked, its object reference put, map_count lowered, freed.
  vm_mremap  (mremap's move_vma: v to a new VMA n) step 1 n set up with its object
             reference, not in the tree: undone unless its store landed (then attached,
             linked, counted: step 2); step 2 the page tables moving: the entries still
             at the old range moved (each moves whole); step 3 moved: v erased if the
             tree still maps it; then (steps 3-6) v detached, unlinked (4), its page
             tables freed, its object reference put (5: stored first, so a kill leaks
             it rather than putting it twice -- settle_counts fixes the count), uncounted
             (6) and freed.
  vm_split   (__split_vma) step 1 the new VMA set up with its object reference: undone
             (reference put, VMA freed) unless the tree maps addr to it (landed, as
             vm_mmap); step 2 in the tree: rolled forward (split_finish: the old VMA's
             end cut, the new one linked -- once: off its lists first, as vm_mmap's --
             and counted).
  vm_brk     (brk moving the break from a1 to a2; its VMA changes are the records
             above, resolved first) mm->brk set to whichever break the VMAs now end the
             heap at (brk_settle): the tree and mm->brk agree again.
  vm_gather  (an mmu_gather of a logged munmap, MADV_DONTNEED, mremap's move, a robust
             exit) step n: the first n pages gathered -- PTEs cleared, mapcount and rss
             already lowered -- lose the PTE reference they still hold (the puts the
             flush did not do); a2 = the PTE word + 1 of a page named in the spill
             before its xchg, its spill slot above bit 48: if that slot is n (the step
             does not count it yet) and the PTE no longer maps it, it is gathered too,
             its mapcount set from an rmap walk (_zap_pending); a1 = nt: the page tables
             free_pgd_range detached from their parents (the spill's top nt words) are
             freed.
  vm_munmap  (the VMAs a munmap took out of the tree: the spill) finished with the same
             code (Mmap.unmap_vmas) from where it stopped: step 0 with the tree erase
             landed (the first victim's first address in the range -- start, or its
             vm_start if start lies in a hole -- no longer maps it: a death in the erase's
             freeing of replaced nodes) as if nothing had followed it (munmap_finish:
             detached, caches invalidated, map_count lowered, then all of step 1's
             work), else nothing; step 1 detached (map_count
             and locked_vm already lowered; unlink, zap, free the page tables, drop
             objects, free VMAs), 2 unlinked (zap again: cleared PTEs are skipped), 3
             unmapped (the VMAs themselves, from where remove_vmas' progress word a4
             says: an object put or a VMA freed by the dead CPU is not done again).  From step 1 on the munmap may hold
             mmap_lock for read (downgraded for the zap): its robust list says so, and
             the takeover keeps that read hold until the recovery ends (no live writer
             maps into the range before the zap is finished).
  vm_vb_alloc (a small vmalloc from a per-CPU vmap_block) step 1 a new block's area
             record had: freed; step 2 that area in its tree, not yet a block's: erased
             (and the block record new_vmap_block made for it -- a1, or the one its
             hand-off window names -- out of the block table and freed);
             step 3 n pages carved at addr of vb (a5 set: the carve in flight, completed
             first: carve_finish), being mapped: the mapped pages and the
             page in hand freed (a4; a page handed out and not yet in a4: the one the
             hand-off window names), the range given back (vb_alloc_undo: marked dirty).
  vm_vb_free (vb_free; a3 = free from the start, a2 = n stored before the claim) step 0
             not claimed: the free is done (vb_free), claimed: resumed at step 1;
             step 1 claimed, being unmapped: what is still mapped unmapped
             (pages freed, and the page in hand a5 names, as vm_vfree's) and the
             allocation uncounted; then (steps 1-2) the range
             marked dirty and the block freed or retired if that emptied it.
  vm_vb_retire (free_vmap_block) step 1 out of the table: its area made lazy; then
             (steps 1 and 3) the block record freed.  Blocks a dead CPU had marked dead
             for retirement but not yet freed (vb_alloc's fragmented ones,
             purge_fragmented_blocks') are still in the block table: mm/recovery.py
             frees them (Vmalloc.retire_orphans).
  vm_reclaim (the folios shrink_folio_list / shrink_active_list isolated, robust mode)
             each folio still logged goes back to its LRU with the isolation reference
             dropped; the one being reclaimed (a1) is unlocked first, re-dirtied if its
             writeout was under way (a2) and taken out of the swap cache if no swap
             entry names its slot yet (or given back by an add_to_swap the slot does
             not name yet); a1 frozen (refcount 0) to leave slot a3's cache has its
             delete_from_cache completed and is freed; a1 frozen for a discard or an
             eviction is unfrozen and put back if its tree still names it, else freed
             (an eviction's nr_file_pages lowered unless a4 shows it was); an a1
             free_frozen had reset is freed: reclaim_finish.  A folio leaves the record
             as it is freed or just before it is put back.
  vm_swapin  (a swap-in: the fault's, or a readahead page's) step 0 with a2 (new): a folio
             being put in the swap cache -- out of the slot if it names it, freed (not
             yet in a1: the allocation's hand-off window, page_handed_out); step 0 with
             a1 and no a2: a cached folio found, locked, held -- as step 3; step 1 the
             new folio in the swap cache being read: out of the cache and freed (the
             slot still has the data); 2 read: made uptodate and dirty (it may hold the
             only copy), onto its LRU; 2-3 unlocked and the dead CPU's reference dropped
             (swapin_finish).  Released by clearing a1 (not the step), before the
             unlock and put.
  vm_mm_hold (a system call's reference on an address space, get_task_mm) step 1:
             put (mmput; the exit hook then finds the task's mm as any exit does).
A record is released by storing its step back to 0 before the release itself (a put, a
free), so a kill between the two leaks one reference and never drops it twice.
Not covered (no fault points inside, so no death there is injected; a SIGKILL from
outside there may leak): the flag and protection changes of mprotect / madvise
themselves (plain stores; a death between two VMAs leaves the range partly changed, as
an ENOMEM part-way does), the ageing and promotion passes of reclaim (MGLRU's walks,
which isolate nothing).  (NUMA migration's vm_migrate records are mm/numa's:
mm/recovery.py hands them to migrate.py's migrate_finish, then page_handed_out frees a
destination page the record did not name yet.)  The dead CPU's pending RCU
frees (sync/rcu.py's arena ring) are run by mm/recovery.py.

After the records (mm/recovery.py recover_round):
  table_handed_out  a page-table allocation's hand-off window (WINDOW_PGTABLE: no
             record) names a page still as handed out: freed.
  sweep_orphans / settle_counts  (a kill from outside only; one checker pass,
             mm/vm/check.py vm_counts, once every dead CPU's records are resolved and
             before any of their tasks exits) the slab objects no tree, RCU ring or
             reachable object names are freed, and the VM's counts are set from its
             structures (a count between two fault points may be a step behind what
             it counts, and no record says which): the structures are whole by then;
             a kernel stack no task and no CPU's stack cache names is vfree'd
             (sweep_stacks).

TLB: a dead CPU's TLB died with it, but in "threads" mode (one mm for every CPU) another
CPU's TLB may still cache a PTE the dead CPU cleared before its flush.  So a vm_gather's
pages are freed only after a flush of the whole mm from the recovering handle (the
shootdown of tlb.py: the live CPUs answer its IPI where they wait -- parked at the
pause barrier, in a lock wait, or at their next access); a munmap finished here
flushes through its own mmu_gather.  Pages freed at vm_fault step 1 and vm_file_add
step 1 were never mapped.  In "processes" mode no other CPU loaded the mm: the flush
finds no target.

Page trees: every write to an object's page tree (lib/xarray.py) is made under the
object's lock (&obj->lock, a spinlock the robust list names), or on a dead object by its
destroy.  A kill from outside between a slot's store and its node's count leaves the
count one off (an erase that later takes it to 0 deletes a node still holding entries:
a folio left naming a destroyed object; a kind change takes nr_values below 0), so
`repair_locked_objects(arena, held)` rewrites the trees (lib/xarray.py xa_repair) and
the child counts of the objects whose locks the dead CPU held, in the takeover before
those locks are released, and a vm_obj_destroy record's tree is repaired before its
destroy resumes.
Nodes it leaves empty are unlinked there and freed by sweep_orphans.

Locks: the takeover keeps a dead CPU's mmap_lock holds until its recovery ends
(mm/recovery.py; released early only when a live waiter cannot park), and recovery's
own mmap_lock operations are no-ops (world_stopped).  The sequences a write hold
made odd (mm_lock_seq: the VMAs it marked; mmap_seq: speculative faults) are moved on
by `end_dead_writes(arena)` before any record is resolved (vma_end_write_all): else, in
threads mode, the live CPUs' per-VMA faults on those VMAs would fall back to mmap_lock
for good.

`exit_tasks(arena, cpu, vm)`: what a VM workload's recover hook does after the records:
the dead CPU's running task (and its children not yet reaped) exit and are reaped, so
their address spaces go as any exit's do -- in threads mode the mm stays with the
threads on the live CPUs (the exit drops one user).
"""

from __future__ import annotations

from typing import Any

from aerosync.arena import layout as L
from aerosync.lib.xarray import XArray
from aerosync.mm import hooks
from aerosync.mm import intent as I
from aerosync.mm.pmm.page import P_INDEX, P_MAPCOUNT, P_MAPPING, P_REFCOUNT, PG_uptodate
from aerosync.mm.slab.slab_common import VBASE
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import _PAGE_PRESENT, _PAGE_PROTNONE, PAGE_SHIFT, PTE_PFN_MASK
from aerosync.mm.vm.tlb import FLUSH_ALL
from aerosync.mm.vm.vm_object import O_NR_PAGES, O_REF, O_TREE, O_VMA_HEAD
from aerosync.params import CACHE_LINE, PAGE_META_SIZE, PAGE_SIZE

__all__ = ["recover_record", "exit_tasks", "end_dead_writes", "sweep_orphans", "settle_counts", "table_handed_out",
           "page_handed_out", "release_folio_locks", "repair_locked_objects", "sweep_stacks", "VM_OPS"]

_U64 = 0xFFFF_FFFF_FFFF_FFFF
_UNREF1_MAP1 = -(1 | 1 << 32) & _U64
_LOW48 = (1 << 48) - 1
VM_OPS = {I.OP[n] for n in ("vm_fault", "vm_mmap", "vm_munmap", "vm_gather", "vm_file_hold", "vm_file_add",
                                 "vm_obj_destroy", "vm_task_create", "vm_vmalloc", "vm_dup_mm",
                                 "vm_exit_mmap", "vm_task_exit", "vm_expand", "vm_split", "vm_brk",
                                 "vm_obj_remove", "vm_collapse", "vm_xa_nodes", "vm_vfree", "vm_purge",
                                 "vm_vb_alloc", "vm_vb_free", "vm_vb_retire", "vm_merge", "vm_mremap",
                                 "vm_reclaim", "vm_mm_hold", "vm_swapin")}
_OP = I.OP


def _landed(arena: Any, vm: Any, mm_id: int, v: int, addr: int) -> bool:
    """Did the tree store of new VMA v (mapping addr) land?  Then it is attached (the
    insert's last store, which a death in the store's node frees preceded)."""
    if vm.vmas.tree(mm_id).mtree_load(addr) != v:
        return False
    arena.atomic.store64(v + V.V_STATE, V.VMA_ATTACHED)
    return True


def _vma_lists(arena: Any, vm: Any, v: int) -> list[tuple[int, int]]:
    """(list owner object, link word offset in a VMA) of the lists VMA v belongs on: its
    object's (V_OBJ_NEXT) and its file's vnode's (V_FNEXT, the i_mmap)."""
    q = arena.u64
    out = []
    o = q[(v + V.V_OBJECT) >> 3]
    if o:
        out.append((o, V.V_OBJ_NEXT))
    f = q[(v + V.V_FILE) >> 3]
    if f:
        out.append((vm.files.file_obj(f - 1), V.V_FNEXT))
    return out


def _on_list(arena: Any, o: int, nxt: int, v: int) -> bool:
    """Is v on object o's VMA list (linked through the word at nxt)?"""
    q = arena.u64
    x, n = q[(o + O_VMA_HEAD) >> 3], 0
    while x and n < 1 << 20:
        if x == v:
            return True
        x, n = q[(x + nxt) >> 3], n + 1
    return False


def _unlink_new(arena: Any, vm: Any, v: int) -> None:
    """A new VMA a dead CPU may have linked before its record said so (a kill from
    outside inside mmap_finish, split_finish or dup_mm's copy, after link): taken off
    the lists it is on, so the roll-forward links it once, or the undo frees it off
    every list."""
    for o, nxt in _vma_lists(arena, vm, v):
        if _on_list(arena, o, nxt, v):
            (vm.objs.unlink_vma if nxt == V.V_OBJ_NEXT else vm.objs.unlink_file_vma)(o, v)


def _relist(arena: Any, vm: Any, v: int) -> None:
    """VMA v put on the lists of the object and file it names where it is missing (a
    kill from outside between an unlink from one object and the link to the next)."""
    for o, nxt in _vma_lists(arena, vm, v):
        if not _on_list(arena, o, nxt, v):
            (vm.objs.link_vma if nxt == V.V_OBJ_NEXT else vm.objs.link_file_vma)(o, v)


def _free_new_vma(arena: Any, vm: Any, v: int, has_ref: bool) -> int:
    """A new VMA that never got into the tree undone: its object reference put (if it
    took one) and the VMA freed.  Returns the objects given back (1)."""
    o = arena.u64[(v + V.V_OBJECT) >> 3]
    if o and has_ref:
        vm.objs.put(o)
    vm.vmas.free(v)
    return 1


def _slab_handed_out(arena: Any, vm: Any, ctx: int) -> int:
    """The arena offset of the slab object a record's hand-off window names, if the
    allocator took it for the dead CPU (still allocated: the window opened with handoff
    := 0, so the word is this allocation's or 0), else 0; the window is closed."""
    from aerosync.mm.slab.recover import object_free, slot_object

    pending, item = I.take_handoff_ctx(arena, vm.cpu, ctx)
    if not pending:
        return 0
    kind, x = I.decode_item(arena, item)
    if kind != I.ITEM_SLOT or (addr := slot_object(arena, x)) is None or object_free(arena, addr) is not False:
        return 0
    return arena.off("physmem") + addr - VBASE


def _vma_handed_out(arena: Any, vm: Any, ctx: int) -> int:
    """mmap_region died in its hand-off window (vm_mmap step 0, no VMA named yet): the
    VMA the slab allocator handed out is nobody's -- freed.  Returns the objects given
    back."""
    v = _slab_handed_out(arena, vm, ctx)
    if v:
        vm.vmas.free(v)
    return 1 if v else 0


def sweep_orphans(arena: Any, vm: Any, counts: Any = None) -> dict[str, int]:
    """The maple_node and vm_area_struct caches' orphans freed, after a kill from
    outside.  World stopped, after every record is resolved and the recovering handle's
    own deferred frees ran (vm.leave): no live CPU is inside a VMA operation then, so
    every live node is in a tree (the mms' VMA trees, the vmalloc slices' trees), every
    live VMA is an entry of an mm's tree, and the rest are in some CPU's RCU ring.
    Anything else allocated is nobody's:
      * a maple store allocates its whole plan before it publishes, then retires the
        nodes it replaced (dead mark, call_rcu) -- no record names them (a plan can
        take a dozen);
      * a VMA munmap's remove_vmas freed after storing its progress (a death in
        between leaks rather than frees twice), or one whose call_rcu died before its
        ring entry was counted.
    A store killed after it adopted kept children (their parent words) and before it
    published the adopting node left them naming a node that is not in the tree: every
    tree's parent words and height are rewritten from the walk (mt_repair: a root
    published, its height not yet stored, too).  With
    `counts` (mm/vm/check.py vm_counts: every object reachable from a VMA or a file, and
    their page trees' nodes) the vm_object and radix_tree_node caches too: a tree
    node an xa_erase unlinked, or an object a destroy emptied, whose call_rcu died
    before its ring entry was counted; an object made and not yet installed (the
    anon_prepare / shadow CAS not reached).  An unreachable object whose tree is not
    empty is left (its pages would go with it): the checker's LK1 says so.  Returns
    {"maple_nodes_swept", "vmas_swept", "vm_objects_swept", "xa_nodes_swept"}."""
    from aerosync.lib.maple_tree import ULONG_MAX, MapleTree
    from aerosync.mm.slab.recover import allocated_objects
    from aerosync.sync.rcu import pending_frees

    out = {"maple_nodes_swept": 0, "vmas_swept": 0, "vm_objects_swept": 0, "xa_nodes_swept": 0}
    q = arena.u64
    phys = arena.off("physmem")
    hdr = arena.off("vmhdr")
    mm_roots = [T.mm_off(arena, m) + T.M_MT for m in range(int(q[(hdr + T.H_MAX_MMS) >> 3]))]
    roots = list(mm_roots)
    if "vmalloc" in arena.sections:
        from aerosync.mm.vm import vmalloc_layout as VL

        base = arena.off("vmalloc")
        roots += [VL.node_off(base, n) + VL.VN_MT for n in range(q[(base + VL.H_NR_NODES) >> 3])]
    nodes: set[int] = set()
    vmas: set[int] = set()
    mm_set = set(mm_roots)
    try:
        for root in roots:
            if q[root >> 3]:
                t = MapleTree(arena, root)
                nodes.update(t.mt_nodes())
                t.mt_repair()                        # kept children adopted by an unpublished node; the height
                if root in mm_set:
                    vmas.update(e for _f, _l, e in t.mt_for_each(0, ULONG_MAX))
    except (IndexError, ValueError, RecursionError):
        return out                                   # a torn tree: the checker says so; free nothing
    rcu: set[int] = set()
    for cpu in range(int(arena.config["nr_cpus"])):
        rcu.update(arg for arg, _kind in pending_frees(arena, cpu))
    caches = [("maple_nodes_swept", T.H_CACHE_MAPLE, nodes, vm.vmas.node_free),
              ("vmas_swept", T.H_CACHE_VMA, vmas, vm.vmas.free_now)]
    if counts is not None:
        empty = {o for o in (phys + a - VBASE for a in allocated_objects(arena, int(q[(hdr + T.H_CACHE_OBJ) >> 3])))
                 if not q[(o + O_TREE) >> 3]}
        caches += [("vm_objects_swept", T.H_CACHE_OBJ, set(counts.objs), vm.objs.free_record, empty),
                   ("xa_nodes_swept", T.H_CACHE_XA, counts.xa_nodes, vm.xa.callbacks[1])]
    for key, fld, named, free, *only in caches:
        cid = int(q[(hdr + fld) >> 3])
        orphans = [o for o in (phys + a - VBASE for a in allocated_objects(arena, cid))
                   if o not in named and o not in rcu and (not only or o in only[0])]
        for off in orphans:
            free(off)
        out[key] = len(orphans)
    return out


def sweep_stacks(arena: Any, vm: Any) -> int:
    """Kernel stacks nobody owns after a kill from outside, vfree'd: a busy VA_STACK area
    whose stack no task in use names (T_KSTACK) and no CPU's stack cache holds.  A stack
    moves between a CPU's cache and a task by two plain stores with no record (kstack.py
    alloc: the cache slot cleared, then the task's word; free: the task's word cleared,
    then the cache slot or the vfree), so a kill between them leaves it nobody's.  World
    stopped, every record resolved (a vmalloc_stack in flight is its vm_vmalloc
    record's), before the dead CPU's task exits.  Returns the stacks freed."""
    if vm.kernel is None:                                # (no vmalloc: no kernel stacks)
        return 0
    from aerosync.lib.maple_tree import ULONG_MAX, MapleTree
    from aerosync.mm.vm import vmalloc_layout as VL
    from aerosync.mm.vm.task import live_tasks

    q, u32 = arena.u64, arena.u32
    base = arena.off("vmalloc")
    nr_nodes = int(q[(base + VL.H_NR_NODES) >> 3])
    held = {q[(T.task_off(arena, t) + T.T_KSTACK) >> 3] for t in live_tasks(arena)}
    for c in range(int(arena.config["nr_cpus"])):
        w = (VL.vbq_off(base, nr_nodes, c) + VL.VBQ_STACK) >> 3
        held.update(q[w : w + VL.NR_CACHED_STACKS].tolist())
    orphans = []
    for n in range(nr_nodes):
        root = VL.node_off(base, n) + VL.VN_MT
        if not q[root >> 3]:
            continue
        for _f, _l, va in MapleTree(arena, root).mt_for_each(0, ULONG_MAX):
            fl = u32[(va + VL.VA_FLAGS) >> 2]
            stack = q[(va + VL.VA_START) >> 3] + PAGE_SIZE
            if fl & (VL.VA_STACK | VL.VA_BUSY | VL.VA_LAZY) == VL.VA_STACK | VL.VA_BUSY and stack not in held:
                orphans.append(stack)
    for stack in orphans:
        vm.kernel.vmalloc.vfree(stack)
    return len(orphans)


def _raw_counter(q: Any, mo: int, k: int, nr_cpus: int) -> int:
    """rss counter k of the mm at mo, summed as a signed value (no clamp at 0)."""
    n = q[(mo + T.M_RSS + 8 * k) >> 3]
    w = (mo + T.rss_pcpu_base(nr_cpus) + 8 * k) >> 3
    for c in range(nr_cpus):
        n += q[w + c * (CACHE_LINE >> 3)]
    n &= _U64
    return n - (1 << 64) if n >> 63 else n


def repair_locked_objects(arena: Any, held: list[int]) -> dict[str, int]:
    """The vm_objects whose &obj->lock a CPU killed from outside held (`held`: its robust
    list's spinlock words) made whole again before the takeover releases those locks
    (module docstring "Page trees"), live CPUs running: the page tree (xa_repair: each
    change one store, lock-free readers never read a count) and nr_children, recounted
    from the children list (link_child / unlink_child store the list, then the count: a
    kill between left it one off, and an unlink later took it below 0).  A word that is
    no object's lock is skipped.  Returns {"page_trees_repaired", "xa_nodes_unlinked",
    "obj_children_recounted"}."""
    from aerosync.mm.slab.recover import object_at
    from aerosync.mm.vm.vm_object import O_CHILDREN, O_LOCK, O_NR_CHILDREN, O_SIBLING

    q, u32 = arena.u64, arena.u32
    out = {"page_trees_repaired": 0, "xa_nodes_unlinked": 0, "obj_children_recounted": 0}
    cid = int(q[(arena.off("vmhdr") + T.H_CACHE_OBJ) >> 3])
    for off in dict.fromkeys(held):
        o = off - O_LOCK
        if o <= 0 or not object_at(arena, o, cid):
            continue
        fixed, gone = XArray(arena, o + O_TREE).xa_repair()
        out["page_trees_repaired"] += 1 if fixed or gone else 0
        out["xa_nodes_unlinked"] += len(gone)
        c, n = q[(o + O_CHILDREN) >> 3], 0
        while c and n < 1 << 20:
            c, n = q[(c + O_SIBLING) >> 3], n + 1
        if u32[(o + O_NR_CHILDREN) >> 2] != n:
            u32[(o + O_NR_CHILDREN) >> 2] = n
            out["obj_children_recounted"] += 1
    return out


def release_folio_locks(arena: Any) -> int:
    """Clear PG_locked on every allocated folio, after a kill from outside, every record
    of the round resolved, the live CPUs parked.  A folio lock is taken only inside a
    logged operation (a swap-in, a reclaim pass, a migration) or for a few stores with no
    wait (MADV_FREE's mkclean), and a CPU parks only with no such record open
    (mm/intent.py idle_fn): so a folio still locked now was locked by a dead CPU between
    its lock and its record naming the folio -- PG_locked has no owner to tell from
    (Linux's neither).  Left, the folio's next swap-in, reclaim or migration waits for it
    or fails for good (NC3 checks no user folio is left locked at quiescence).  Returns
    the folios released."""
    import numpy as np

    from aerosync.mm.pmm.page import PG_buddy, PG_locked, PG_pcp, page_array

    pages = page_array(arena)
    flags = pages["flags"]
    held = np.flatnonzero(((flags & PG_locked) != 0) & ((flags & (PG_buddy | PG_pcp)) == 0)).tolist()
    del flags, pages
    at, pm = arena.atomic, arena.off("pagemeta")
    for p in held:
        at.fetch_and32(pm + p * PAGE_META_SIZE, ~PG_locked & 0xFFFFFFFF)
    return len(held)


def settle_counts(arena: Any, vm: Any, cpu: int, counts: Any = None) -> dict[str, int]:
    """The VM's counters made to agree with its structures again, after a kill from
    outside (world stopped, every dead CPU of the round recovered: its records
    resolved, its batches drained).  A death between two fault points can leave a
    count a step behind what it counts -- anon_write_fast between its tree insert and
    its step 3 (nr_pages, the LRU batch, nr_anon_pages, rss), a zap between a PTE's
    xchg and its gather entry (mapcount, nr_mapped, rss, the PTE reference), a table
    allocation between its link and pgtables_bytes -- and no record step says which
    of them landed.  The structures (page tables, object trees, batches, the swap
    cache) are whole by then, so the counts are recomputed from them, as the checker
    computes them (mm/vm/check.py vm_counts):
      R1  each allocated page's mapcount = the PTEs mapping it;
      R2  each mapped, tree or swap-cache folio's refcount = tree + PTEs + batch slots
          + swap cache (a reference the dead CPU held in flight -- gathered, not
          spilled; a swap-in's on a cached folio it found, not yet in its record --
          goes);
          a user folio nothing reaches any more is freed (its last references were
          in flight: a batch's put, an lru_add's reference not yet counted);
      O5 / O3  each reachable object's nr_pages = its folios, its refcount = the VMAs
          naming it + its shadow children (+ 1 for a live file's vnode): a put a
          record stores its step before leaks one when killed in between; one that
          nothing references (reachable only as its backing's child: a fork's shadow
          not yet in its record) is destroyed, last;
      RSS1 / PT3  each mm's rss counters (the shared word moves) and pgtables_bytes;
      VT4 / VT5  each mm's map_count and total / locked / data / exec / stack_vm (a
          VMA removal killed between its two counts);
      R4 / PT3  each node's nr_anon_pages, nr_mapped, nr_page_table_pages, and
          nr_swapcached (new_cached killed between the slot naming its folio and the
          count) -- the delta into `cpu`'s node-stat record: the stats are sums over CPUs;
      LRU4 a user folio on no LRU list and in no batch (isolated by the dead CPU, or
          its lru_add cut short) goes back through the batch of `vm`, drained here;
      PT1 a page-table page no mm's tables reach (allocated, not yet linked; or
          unlinked, not yet gathered) is freed first -- then counted out.
    Returns what moved: {"vm_pages_settled", "vm_counters_settled", "lru_readded",
    "tables_swept", "orphan_folios", "vm_objects_destroyed"}."""
    import numpy as np

    from aerosync.mm.pmm import vm_event as VE
    from aerosync.mm.pmm.page import P_PRIVATE, P_SPARE, PG_lru, PG_swapbacked, PG_table
    from aerosync.mm.vm.check import vm_counts

    c = counts if counts is not None else vm_counts(arena)
    q, u32, i64 = arena.u64, arena.u32, arena.i64
    PM4 = arena.off("pagemeta") >> 2
    MW4 = PAGE_META_SIZE >> 2
    zero = c.snap.zero_pfn
    out = {"vm_pages_settled": 0, "vm_counters_settled": 0, "lru_readded": 0, "tables_swept": 0,
           "orphan_folios": 0, "vm_objects_destroyed": 0}
    reached = np.zeros(len(c.flags), dtype=bool)
    reached[list(c.tables_reached)] = True
    table = (c.flags & PG_table) != 0
    for p in np.flatnonzero(table & ~reached).tolist():
        # PT1: a table allocated and not yet linked (walk_alloc killed before its
        # page_table_lock), or unlinked and not yet gathered: nobody's
        pm = (PM4 + p * MW4) << 2
        q[(pm + P_PRIVATE) >> 3] = q[(pm + P_MAPPING) >> 3] = q[(pm + P_INDEX) >> 3] = 0
        u32[(pm + P_SPARE) >> 2] = 0
        u32[pm >> 2] = 0
        _free_unpublished(arena, vm, p)                 # (frozen already if free_table froze it)
        out["tables_swept"] += 1
    alloc = c.allocated.copy()
    if 0 <= zero < len(alloc):
        alloc[zero] = False
    for p in np.flatnonzero(alloc & (c.mapc != c.mapped)).tolist():
        u32[PM4 + p * MW4 + 3] = int(c.mapped[p])
        out["vm_pages_settled"] += 1
    want = c.in_tree + c.mapped + c.batched + c.cached
    live = alloc & ((c.in_tree > 0) | (c.mapped > 0) | (c.cached > 0))
    for p in np.flatnonzero(live & (c.ref != want)).tolist():
        u32[PM4 + p * MW4 + 2] = int(want[p])
        out["vm_pages_settled"] += 1
    # A user folio (on an LRU, swap-backed, naming an object or counted as mapped) that
    # nothing reaches -- no tree, PTE, batch or swap cache -- holds only references the
    # dead CPU lost in flight (a batch's put not done, an lru_add's reference taken and
    # not yet counted): freed.
    marked = ((c.flags & (PG_lru | PG_swapbacked)) != 0) | (c.mapping != 0) | (c.mapc != 0)
    orphans = alloc & marked & (c.in_tree == 0) & (c.mapped == 0) & (c.batched == 0) & (c.cached == 0)
    for p in np.flatnonzero(orphans).tolist():
        pm = (PM4 + p * MW4) << 2
        q[(pm + P_MAPPING) >> 3] = q[(pm + P_INDEX) >> 3] = 0
        _free_unpublished(arena, vm, p)
        out["orphan_folios"] += 1
    for o, n in c.nr_pages_want.items():
        if q[(o + O_NR_PAGES) >> 3] != n:
            q[(o + O_NR_PAGES) >> 3] = n
            out["vm_counters_settled"] += 1
    for o, n in c.ref_want.items():
        if n and q[(o + O_REF) >> 3] != n:
            q[(o + O_REF) >> 3] = n
            out["vm_counters_settled"] += 1
    nr_cpus = int(arena.config["nr_cpus"])
    vm_fields = (("total", T.M_TOTAL_VM), ("locked", T.M_LOCKED_VM), ("data", T.M_DATA_VM),
                 ("exec", T.M_EXEC_VM), ("stack", T.M_STACK_VM))
    for m, (n_vmas, acct) in c.vm_want.items():
        mo = T.mm_off(arena, m)
        fields = [(T.M_MAP_COUNT, n_vmas)] + ([(off, acct[k]) for k, off in vm_fields] if m else [])
        for off, n in fields:
            if q[(mo + off) >> 3] != n:
                q[(mo + off) >> 3] = n
                out["vm_counters_settled"] += 1
        if m and q[(mo + T.M_HIWATER_VM) >> 3] < acct["total"]:
            q[(mo + T.M_HIWATER_VM) >> 3] = acct["total"]
    for m, rss in c.rss_want.items():
        mo = T.mm_off(arena, m)
        for k, n in enumerate(rss):
            d = n - _raw_counter(q, mo, k, nr_cpus)
            if d:
                q[(mo + T.M_RSS + 8 * k) >> 3] = (q[(mo + T.M_RSS + 8 * k) >> 3] + d) & _U64
                out["vm_counters_settled"] += 1
        if q[(mo + T.M_PGTABLES_BYTES) >> 3] != PAGE_SIZE * c.tables_want[m]:
            q[(mo + T.M_PGTABLES_BYTES) >> 3] = PAGE_SIZE * c.tables_want[m]
            out["vm_counters_settled"] += 1
    tables = np.flatnonzero(table & reached)
    nn = len(c.nr_anon_mapped)
    per_node = np.bincount(c.node[tables], minlength=nn)
    cached = np.bincount(c.node[np.flatnonzero(alloc & (c.cached > 0))], minlength=nn)
    ns = VE.node_stat_base(arena, cpu)
    for nid, st in enumerate(VE.fold_node_stats(arena)):
        for name, item, n in (("nr_anon_pages", VE.NR_ANON_PAGES, c.nr_anon_mapped[nid]),
                              ("nr_mapped", VE.NR_MAPPED, c.nr_other_mapped[nid]),
                              ("nr_page_table_pages", VE.NR_PAGE_TABLE_PAGES, per_node[nid]),
                              ("nr_swapcached", VE.NR_SWAPCACHED, cached[nid])):
            d = int(n) - st[name]
            if d:
                i64[ns + nid * VE.NR_NODE_STATS + item] += d
                out["vm_counters_settled"] += 1
    la = vm.ext.lru_add
    if la is not None:
        user = alloc & ((c.in_tree > 0) | (c.mapped > 0) | (c.cached > 0))
        off_lru = np.flatnonzero(user & ((c.flags & PG_lru) == 0) & (c.batched == 0))
        for p in off_lru.tolist():
            if not u32[PM4 + p * MW4] & PG_lru:          # flags as of now (the array is a copy)
                la(p)
                out["lru_readded"] += 1
        if out["lru_readded"]:
            vm.reclaim.lru.lru_add_drain()
    # O3: an object that no VMA, child or file references (a shadow made for a fork's
    # VMA copy and not yet named by its record) is reachable only from its backing's
    # children list: destroyed, as its last put would (its pages and its backing's
    # reference go with it)
    for o, n in c.ref_want.items():
        if not n:
            q[(o + O_REF) >> 3] = 1
            vm.objs.put(o)
            out["vm_objects_destroyed"] += 1
    return out


def recover_record(arena: Any, vm: Any, rec: I.Record, spill: list[int], inner_open: bool) -> dict[str, int]:
    """Roll one of the dead CPU's VM records forward or back (module docstring); `vm` is
    a VM handle of the dead CPU (the caller's), `spill` its context's spill area."""
    a, s, op = rec.args, rec.step, rec.op
    got = {"pages": 0, "objects": 0}
    tp = hooks.point_fn()
    if op == _OP["vm_fault"]:
        mm_id, pfn, kind = a[0], a[3], a[4]
        if s == 6:                                   # installing under the PTE lock
            e = arena.u64[a[2]]
            s = 4 if e & _PAGE_PRESENT and (e & PTE_PFN_MASK) >> PAGE_SHIFT == pfn else 3
        if s == 0:
            got["pages"] += _plain_page_handed_out(arena, vm, rec.ctx)
        elif s == 1:
            freed = _fault_page_undo(arena, vm, pfn, bool(a[5] & _PAGE_PRESENT))
            got["pages"] += freed
            if not freed:
                s = 2                                # the insert landed: as step 2 (a COW's copy goes)
        if s in (2, 3):
            if s == 3:
                vm.memory.unmap_account(mm_id, pfn, kind)
            got["pages"] += _cow_undo(arena, vm, pfn, a[1], a[2], a[5])
        if s == 5:
            got["pages"] += _fast_insert_in_flight(arena, vm, pfn, a[5])
    elif op == _OP["vm_file_hold"]:
        if s == 1 and not _freed(arena, a[3]):     # (freed: the add it was reading in, undone)
            vm.mm.free_pages(a[3], 0)                # folio_put: never the last while the cache has it
    elif op == _OP["vm_file_add"]:
        obj, idx, pfn = a[0], a[1], a[2]
        if s == 0:                                   # the allocation's hand-off window
            got["pages"] += _plain_page_handed_out(arena, vm, rec.ctx)
        if s == 1 and vm.objs.lookup(obj, idx) == pfn << 2:
            s = 2                                    # the insert published it (past every fault point)
        if s == 1:                                   # its insert may have set mapping and index
            # never published: every reference is the dead CPU's -- the allocation's, a
            # hold's taken and maybe not yet named in the caller's vm_file_hold (whose
            # recovery then finds the page free), or none left (frozen by the give-back)
            pm = arena.off("pagemeta") + pfn * PAGE_META_SIZE
            arena.u32[pm >> 2] &= ~PG_uptodate & 0xFFFF_FFFF
            arena.u64[(pm + P_MAPPING) >> 3] = 0
            arena.u64[(pm + P_INDEX) >> 3] = 0
            _free_unpublished(arena, vm, pfn)
            got["pages"] += 1
        elif s == 2:
            vm.files.add_finish(pfn)
    elif op == _OP["vm_obj_destroy"]:
        if s < 3:                                    # an erase cut short (a dead object: no lock)
            XArray(arena, a[0] + O_TREE).xa_repair()
        vm.objs.destroy_steps(a[0], s, -1, a[1], a[2], a[3], a[4])
        got["objects"] += 1
    elif op == _OP["vm_obj_remove"]:
        if s:
            got["pages"] += vm.objs.remove_finish(a[0], a[1], a[2], s, bool(a[4]))
    elif op == _OP["vm_xa_nodes"]:
        free_node = vm.xa.callbacks[1]
        for off in a[:s]:
            if not _xa_published(arena, off):       # a kill from outside after the publish
                free_node(off)
                got["objects"] += 1
    elif op == _OP["vm_collapse"]:                  # (step 0 too: the collapse sequence)
        vm.objs.collapse_finish(a[0], a[1], a[2], a[3], a[4], s)
    elif op == _OP["vm_task_create"]:
        got["objects"] += _task_create_undo(arena, vm, a[0], a[1], s)
    elif op == _OP["vm_vmalloc"]:
        if s == 2 and not a[3]:                      # a block handed out, not yet in a3 (a4: its order)
            got["pages"] += _handed_out(arena, vm.mm, vm.cpu, rec.ctx, only=1, order=a[4]) << a[4]
        vm.kernel.vmalloc.vmalloc_undo(a[0], a[1], a[2], a[3], -1, 0, s, a[4])
    elif op == _OP["vm_vfree"]:                     # (step 0 too: a vfree cannot fail)
        vm.kernel.vmalloc.vfree_finish(a[0], a[1], a[2], bool(a[3]), s, a[5])
    elif op == _OP["vm_purge"]:
        vm.kernel.vmalloc.purge_undo(a[0], a[1], a[2], s)
    elif op == _OP["vm_vb_alloc"]:
        if s == 3 and a[5]:                          # the carve in flight: completed first
            vm.kernel.vmalloc.carve_finish(a[1], a[2], a[3])
        vb = a[1]
        if s == 3 and not a[4]:                      # a page handed out, not yet in a4
            got["pages"] += _plain_page_handed_out(arena, vm, rec.ctx)
        if s == 2 and not vb:                        # new_vmap_block's record handed out, not yet in a1
            vb = _slab_handed_out(arena, vm, rec.ctx)
        vm.kernel.vmalloc.vb_alloc_undo(vb, a[2], a[3], a[4], -1, 0, a[0], s)
    elif op == _OP["vm_vb_free"]:
        vm.kernel.vmalloc.vb_free_finish(a[0], a[1], a[2], bool(a[3]), s, a[5])
    elif op == _OP["vm_vb_retire"]:
        vm.kernel.vmalloc.retire_finish(a[0], a[1], s)
    elif op == _OP["vm_dup_mm"]:
        got["objects"] += _dup_mm_undo(arena, vm, a, s)
    elif op == _OP["vm_exit_mmap"]:
        if s == 1:
            vm.forks.exit_mmap_steps(a[0])
        if s >= 1:
            vm.forks.free_mm(a[0])
            got["objects"] += 1
    elif op == _OP["vm_task_exit"]:
        tid, mm_id = a[0], a[1]
        if s == 0:                                   # finish it: exit is idempotent up to here
            o = T.task_off(arena, tid)
            arena.u64[(o + T.T_MM) >> 3] = 0
            arena.u64[(o + T.T_CPU) >> 3] = 0
            from aerosync.mm.vm.task import task_set_state

            task_set_state(arena, tid, T.TASK_ZOMBIE)
            if vm.kernel is not None:
                vm.kernel.task_released(tid)
        if s < 2 and not (s == 1 and inner_open) and mm_id > 0:
            vm.forks.mmput(mm_id)                    # (at step 1 with an inner record: mmput's own)
        got["objects"] += exit_tasks(arena, -1, vm, seeds=(tid,))
    elif op == _OP["vm_expand"]:
        mm_id, v, new_end, acct = a[0], a[1], a[2], a[3]
        old_end = arena.u64[(v + V.V_END) >> 3]
        if vm.vmas.tree(mm_id).mtree_load(new_end - 1) == v and old_end != new_end:
            arena.u64[(v + V.V_END) >> 3] = new_end      # the tree grew: vm_end follows
            arena.u64[(T.mm_off(arena, mm_id) + T.M_VMACACHE_SEQ) >> 3] += 1
            if acct:                                     # new memory: counted as the caller would have
                vm.sys.vm_stat_account(mm_id, acct - 1, (new_end - old_end) >> 12)
    elif op == _OP["vm_swapin"]:
        if a[1] and vm.reclaim is not None and vm.reclaim.swap is not None:     # (a1 0: released)
            got["pages"] += vm.reclaim.swap.swapin_finish(a[0], a[1] - 1, s, bool(a[2]))
        elif a[2] and not s:                         # new_cached's allocation, not yet in a1
            got["pages"] += page_handed_out(arena, vm.mm, vm.cpu, rec.ctx)
    elif op == _OP["vm_mm_hold"]:
        if s:
            vm.forks.mmput(a[0])
    elif op == _OP["vm_reclaim"]:
        if s and vm.reclaim is not None:
            got["pages"] += vm.reclaim.scan.reclaim_finish(a[1], a[2], spill[L.SPILL_RECLAIM : L.SPILL_RECLAIM + s],
                                                            a[3], a[4])
    elif op == _OP["vm_mremap"]:
        if s:
            got["objects"] += vm.sys.move_finish(a[0], a[1], a[2], a[3], a[4], a[5], s)
    elif op == _OP["vm_merge"]:
        if s:
            vm.sys.merge_finish(a[0], a[1], a[2], s)
    elif op == _OP["vm_gather"]:
        if a[2] and a[2] >> 48 == s:                 # named, not yet counted by the step
            s += _zap_pending(arena, vm, (a[2] & _LOW48) - 1, spill[L.SPILL_GATHER + s])
        if s:
            # the flush the dead CPU's tlb_finish_mmu did not do: another CPU running a
            # thread of this mm may still cache a cleared PTE (threads mode)
            vm.tlb.flush_tlb_mm_range(a[0], 0, FLUSH_ALL)
            if tp:
                tp("recover:gather_flushed")
        for pfn in spill[L.SPILL_GATHER : L.SPILL_GATHER + s]:
            vm.mm.free_pages(pfn, 0)                 # the PTE reference (never the last: a tree holds one)
            got["pages"] += 1
        nt = a[1]                                    # page tables detached from their parents
        if nt and not s:
            vm.tlb.flush_tlb_mm_range(a[0], 0, FLUSH_ALL)
        for k in range(nt):
            vm.pt.free_table(spill[L.SPILL_RECLAIM - 1 - k])
            got["pages"] += 1
    elif op == _OP["vm_munmap"]:
        mm_id, start, end, n = a[0], a[1], a[2], a[3]
        victims = spill[L.SPILL_VMAS : L.SPILL_VMAS + n]
        if s >= 1:
            vm.sys.unmap_vmas(mm_id, victims, start, end, -1, s, a[4])
            got["objects"] += n
        elif victims and vm.vmas.tree(mm_id).mtree_load(max(start, arena.u64[(victims[0] + V.V_START) >> 3])) \
                != victims[0]:                      # (start itself may lie in a hole before it)
            vm.sys.munmap_finish(mm_id, victims, start, end)     # the erase landed: roll forward
            got["objects"] += n
    elif op == _OP["vm_mmap"]:
        mm_id, v = a[0], a[1]
        if s == 0 and not v:
            got["objects"] += _vma_handed_out(arena, vm, rec.ctx)
        elif s == 0:                                 # set up, not in the tree
            got["objects"] += _free_new_vma(arena, vm, v, True)
        elif s == 1 and v:
            if _landed(arena, vm, mm_id, v, arena.u64[(v + V.V_START) >> 3]):
                _unlink_new(arena, vm, v)
                vm.sys.mmap_finish(mm_id, v)
            else:
                got["objects"] += _free_new_vma(arena, vm, v, True)
    elif op == _OP["vm_split"]:
        mm_id, v, new, addr = a[0], a[1], a[2], a[3]
        if s == 2 or (s == 1 and _landed(arena, vm, mm_id, new, addr)):
            _unlink_new(arena, vm, new)
            vm.sys.split_finish(mm_id, v, new, addr)
        else:                                        # (step 0: its object reference not yet taken)
            got["objects"] += _free_new_vma(arena, vm, new, s == 1)
    elif op == _OP["vm_brk"]:
        vm.sys.brk_settle(a[0], a[1], a[2])
    return got


def end_dead_writes(arena: Any) -> int:
    """vma_end_write_all for a dead writer: an mm whose mmap_lock a dead CPU write-held
    (kept for its recovery, RW_KEPT, or released early by the takeover) still has odd
    mm_lock_seq / mmap_seq -- every VMA the writer marked would stay write-locked and
    speculative faults back off for good.  With the world stopped, an odd sequence
    under a lock no live writer holds is such a leftover (a live writer holds the rwsem,
    and moves the sequences only while holding it): it is moved on to even.  Before any
    record's recovery takes an mmap_lock (its own write holds then move them in pairs).
    Returns mms fixed."""
    from aerosync.sync.objlock import RW_KEPT, RW_WRITER

    q, at = arena.u64, arena.atomic
    fixed = 0
    for mm_id in range(1, q[(arena.off("vmhdr") + T.H_MAX_MMS) >> 3]):
        m = T.mm_off(arena, mm_id)
        if q[(m + T.M_STATE) >> 3] != T.MM_LIVE or \
                at.load64(m + T.M_MMAP_LOCK) & (RW_WRITER | RW_KEPT) == RW_WRITER:
            continue
        hit = False
        for f in (T.M_LOCK_SEQ, T.M_MMAP_SEQ):
            if at.load64(m + f) & 1:
                at.fetch_add64(m + f, 1)
                hit = True
        fixed += hit
    return fixed


def _dup_mm_undo(arena: Any, vm: Any, a: tuple[int, ...], s: int) -> int:
    """fork's dup_mm left half-way: the child mm goes (its claimed record, or its
    teardown by mmput -- exit_mmap of what its tree holds); a VMA copy in flight (step
    3, not linked nor counted: erased from the child's tree if its insert landed) goes
    first: the shadows made for it and not yet given to a VMA are put, its own object
    reference is dropped, the copy freed.  The parent keeps what it had (a VMA already
    switched to its new shadow keeps it).  Returns records undone."""
    q = arena.u64
    child, n, sp, sc, v = a[0], a[2], a[3], a[4], a[5]
    if s == 3:
        start, end = q[(n + V.V_START) >> 3], q[(n + V.V_END) >> 3]
        if vm.vmas.tree(child).mtree_load(start) == n:   # its insert landed (a kill from outside
            vm.vmas.erase(child, start, end)             # before link and count): out again
        _unlink_new(arena, vm, n)                        # (its link, if that landed too)
        _relist(arena, vm, v)                            # the parent's, killed between o and sp
        if sp and q[(v + V.V_OBJECT) >> 3] != sp:
            vm.objs.put(sp)
        o = q[(n + V.V_OBJECT) >> 3]
        if sc and o != sc:
            vm.objs.put(sc)
        if o:
            vm.objs.put(o)
        vm.vmas.free(n)
    if s >= 2:
        vm.forks.mmput(child)
        return 1
    return _task_create_undo(arena, vm, child, 0, s)


def _xa_published(arena: Any, off: int) -> bool:
    """Is page-tree node `off` (lib/xarray.py's layout) reachable from its tree's root:
    each parent's slot at its offset names it, and the top one is the root's head?  A
    store's nodes are published before its vm_xa_nodes record ends, with no fault point
    between: only a kill from outside finds them published and still listed."""
    from aerosync.lib.xarray import _ARRAY, _HEAD, _INFO, _PARENT, _SLOTS

    q = arena.u64
    cur = off
    for _ in range(12):                             # 64-bit indices: at most 11 levels
        b = cur >> 3
        parent = q[b + _PARENT]
        if not parent:
            return q[(q[b + _ARRAY] >> 3) + _HEAD] == cur | 2
        if parent % 8 or parent >= arena.size or q[(parent >> 3) + _SLOTS + ((q[b + _INFO] >> 8) & 0xFF)] != cur | 2:
            return False
        cur = parent
    return False


def _zap_pending(arena: Any, vm: Any, i: int, pfn: int) -> int:
    """A logged zap killed between naming a page (its PTE at word i, the page in the
    spill at the record's step) and counting it in the step: if the PTE still maps the
    page, its xchg did not land -- nothing happened (the munmap's roll-forward zaps it
    again).  Else the page is gathered (returns 1: its PTE reference goes after the
    flush), and its mapcount, whose drop may or may not have landed, is set to the PTEs
    an rmap walk finds (the rss and node counts are settled later: settle_counts)."""
    e = arena.u64[i]
    if e & (_PAGE_PRESENT | _PAGE_PROTNONE) and (e & PTE_PFN_MASK) >> PAGE_SHIFT == pfn:
        return 0
    n = vm.rmap.rmap_walk(pfn, lambda *_: True)
    pm = arena.off("pagemeta") + pfn * PAGE_META_SIZE
    arena.u32[(pm + P_MAPCOUNT) >> 2] = n
    return 1


def _cow_undo(arena: Any, vm: Any, pfn: int, table: int, i: int, old: int) -> int:
    """A COW fault (map_new replacing a present entry `old`: a shared page, the zero page)
    died with its copy in the object's tree but the PTE still `old`: the copy shadows the
    page the PTE maps, and a later collapse or steal would treat that mapped page as
    unreachable.  The copy leaves the tree and is freed (the fault never happened).  A
    fault that replaced nothing (old not present) keeps its page in the tree, unmapped,
    as any page a fault will find.  Returns the pages freed."""
    q = arena.u64
    e = q[i]                                          # the same page (A/D bits may have moved on)
    if not old & _PAGE_PRESENT or not e & _PAGE_PRESENT or (e ^ old) & PTE_PFN_MASK:
        return 0
    pm = arena.off("pagemeta") + pfn * PAGE_META_SIZE
    m, idx = q[(pm + P_MAPPING) >> 3], q[(pm + P_INDEX) >> 3]
    if not m & ~3 or not vm.objs.remove(m & ~3, idx, pfn):
        return 0
    vm.mm.free_pages_bulk([pfn])                     # the tree's reference (off the LRU first)
    return 1


def _handed_out(arena: Any, mm: Any, cpu: int, ctx: int, only: int = 0, flags_ok: int = 0, order: int = 0) -> int:
    """Context `ctx` of dead `cpu` died in an allocation's hand-off window (mm/intent.py
    "Hand-off"; `only`: a window with that pending value): the page (a block of `order`)
    the allocator named, if it handed it out and it is still as it left the allocator --
    refcount 1, no mapcount, mapping, or flags but `flags_ok` -- is nobody's: freed with
    `mm` (the dead CPU's page allocator handle).  Returns the blocks freed (0 or 1)."""
    from aerosync.mm.pmm.page import P_FLAGS

    pending, item = I.take_handoff_ctx(arena, cpu, ctx, only)
    if not pending:
        return 0
    kind, pfn = I.decode_item(arena, item)
    if kind != I.ITEM_PAGE:
        return 0
    pm = arena.off("pagemeta") + pfn * PAGE_META_SIZE
    u32 = arena.u32
    if (u32[(pm + P_FLAGS) >> 2] & ~flags_ok or u32[(pm + P_REFCOUNT) >> 2] != 1
            or u32[(pm + P_MAPCOUNT) >> 2] or arena.u64[(pm + P_MAPPING) >> 3]):
        return 0
    u32[(pm + P_FLAGS) >> 2] = 0
    mm.free_pages(pfn, order)
    return 1


def _plain_page_handed_out(arena: Any, vm: Any, ctx: int) -> int:
    """A record died in its allocation's hand-off window, the page not yet in the record
    -- a fault's at step 0 (new_page may have set PG_swapbacked; zeroing or copying the
    page changes nothing else), a small vmalloc's filling at step 3 with a4 empty."""
    from aerosync.mm.pmm.page import PG_swapbacked

    return _handed_out(arena, vm.mm, vm.cpu, ctx, flags_ok=PG_swapbacked)


def page_handed_out(arena: Any, mm: Any, cpu: int, ctx: int) -> int:
    """A record whose allocation's hand-off window was open (NUMA migration's
    destination page, before its spill word names it -- resolved after the record, so
    that a page the record names is freed by it first): the page, if the allocator
    handed it out and it is untouched, freed (a record's window: pending 1)."""
    return _handed_out(arena, mm, cpu, ctx, only=1)


def table_handed_out(arena: Any, mm: Any, cpu: int) -> int:
    """A page-table allocation killed in its hand-off window (pgtable.py alloc_table:
    WINDOW_PGTABLE, no record; left open after the records are resolved), the page not
    yet PG_table: freed.  Returns the pages freed."""
    return sum(_handed_out(arena, mm, cpu, ctx, only=I.WINDOW_PGTABLE) for ctx in range(L.INTENT_CTX))


def _free_unpublished(arena: Any, vm: Any, pfn: int) -> None:
    """Free a page only the dead CPU held (nobody's tree, PTE or batch names it; the
    world stopped, so no try-get is in flight): every reference and mapcount dropped
    at once -- however many the dead CPU had taken, or none (frozen already) -- and the
    page freed frozen."""
    arena.u64[(arena.off("pagemeta") + pfn * PAGE_META_SIZE + P_REFCOUNT) >> 3] = 0   # refcount, mapcount
    vm.mm.free_frozen_pages(pfn, 0, False)


def _freed(arena: Any, pfn: int) -> bool:
    """Is pfn back with the page allocator (refcount 0: in a free block or on a PCP
    list, whatever its flags say once merged)?"""
    return not arena.u32[(arena.off("pagemeta") + pfn * PAGE_META_SIZE + P_REFCOUNT) >> 2]


def _fault_page_undo(arena: Any, vm: Any, pfn: int, cow: bool) -> int:
    """A fault's new page at step 1: allocated, its insert into the object maybe begun
    -- vm_object.insert sets the folio's mapping and index before it publishes the entry.
    Not in the tree: the page is set back (mapping, index) and freed -- frozen
    already (refcount 0) if pmm/page_alloc.py give_back was returning it.  In the tree
    (a death after the publish, outside every fault point): the tree keeps it, on the
    LRU -- unless it is a COW's copy (`cow`), which the caller takes out as at step 2.
    Returns the pages freed."""
    q = arena.u64
    pm = arena.off("pagemeta") + pfn * PAGE_META_SIZE
    m, idx = q[(pm + P_MAPPING) >> 3], q[(pm + P_INDEX) >> 3]
    if m & ~3 and vm.objs.lookup(m & ~3, idx) == pfn << 2:
        la = vm.ext.lru_add
        if la is not None and not cow:
            la(pfn)
        return 0
    q[(pm + P_MAPPING) >> 3] = 0
    q[(pm + P_INDEX) >> 3] = 0
    _free_unpublished(arena, vm, pfn)
    return 1


def _fast_insert_in_flight(arena: Any, vm: Any, pfn: int, obj: int) -> int:
    """anon_write_fast died between counting its page for the tree and the PTE (refcount
    2, mapcount 1, mapping and index set) and the end of its tree insert: if the insert
    landed, the page stays in the tree (the PTE's share undone, counted in the object,
    on the LRU); else it is set back and freed.  A mapping already cleared says the
    insert failed and its undo had begun (memory.py anon_write_fast: the mapping goes
    first; the counts, frozen to 0 or dropped to refcount 1, follow): the counts are
    set to 0 -- nobody else holds the page with the world stopped -- and it is freed
    frozen.  Returns the pages freed."""
    pm = arena.off("pagemeta") + pfn * PAGE_META_SIZE
    if not arena.u64[(pm + P_MAPPING) >> 3]:
        arena.u64[(pm + P_INDEX) >> 3] = 0
        arena.u32[pm >> 2] = 0
        _free_unpublished(arena, vm, pfn)
        return 1
    idx = arena.u64[(pm + P_INDEX) >> 3]
    arena.atomic.fetch_add64(pm + P_REFCOUNT, _UNREF1_MAP1)     # refcount - 1, mapcount - 1
    if vm.objs.lookup(obj, idx) == pfn << 2:
        arena.atomic.fetch_add64(obj + O_NR_PAGES, 1)
        la = vm.ext.lru_add
        if la is not None:
            la(pfn)
        return 0
    arena.u64[(pm + P_MAPPING) >> 3] = 0
    arena.u64[(pm + P_INDEX) >> 3] = 0
    arena.u32[pm >> 2] = 0
    vm.mm.free_pages(pfn, 0)
    return 1


def _task_create_undo(arena: Any, vm: Any, mm_id: int, named: int, s: int) -> int:
    """Undo a task creation the dead CPU did not finish (VM.task_create, VM.fork): the
    task (`named` - 1), if made, exits and is reaped (its stack, if it got one, goes
    with it; its mm user is dropped); at step 2 a task claimed but not yet made (its
    fields maybe half filled, its mm named or not) goes back to the free pool before
    the mm user is dropped -- else a later exit of it (exit_tasks: a child nobody runs)
    dropped that user a second time; else the claimed mm record goes -- at step 0 too
    once a0 names it (mm_alloc stores it right after its claim, before step 1), or the
    user a thread's mmget took (a0 stored before step 2: the mm is live).  Returns
    records undone."""
    from aerosync.mm.vm.task import task_free

    q = arena.u64
    if s == 0 and mm_id:                             # a0 stored before the step
        if arena.atomic.load64(T.mm_off(arena, mm_id) + T.M_STATE) == T.MM_LIVE:
            vm.forks.mmput(mm_id)                    # a thread's: mmget landed, step 2 did not
            return 1
        s = 1                                        # mm_alloc's claim: a0 right after its CAS
    if s >= 3:
        vm.exit(named - 1, 9)
        vm.reap(named - 1)
        return 1
    if s == 2:
        if named:
            q[(T.task_off(arena, named - 1) + T.T_MM) >> 3] = 0
            task_free(arena, named - 1)
        vm.forks.mmput(mm_id)
        return 1
    if s == 1:
        m = T.mm_off(arena, mm_id)
        pgd = q[(m + T.M_PGD) >> 3]
        if pgd:
            vm.pt.free_table(pgd)
            q[(m + T.M_PGD) >> 3] = 0
        arena.atomic.store64(m + T.M_STATE, T.MM_FREE)
        return 1
    return 0


def exit_tasks(arena: Any, cpu: int, vm: Any, seeds: tuple[int, ...] = ()) -> int:
    """Exit and reap the task the dead CPU was running, the one its C_TASK names (a task
    of the CPU that names no CPU: one that exited, or was being switched out, or was
    made and not yet run), `seeds` (a task it was exiting), and their family that no
    live CPU runs: children not yet reaped and, up the parent chain, ancestors switched
    out (a parent that forked and switched to its child on this CPU) with their other
    children; returns how many.  A task running on a live CPU is never touched."""
    from aerosync.mm.vm.task import live_tasks

    q, u32 = arena.u64, arena.u32

    def f(t: int, field: int) -> int:
        return q[(T.task_off(arena, t) + field) >> 3]

    tasks = live_tasks(arena)
    mine = [t for t in tasks if cpu >= 0 and f(t, T.T_CPU) == cpu + 1
            and u32[(T.task_off(arena, t) + T.T_STATE) >> 2] != T.TASK_ZOMBIE]
    last = q[(T.vmcpu_off(arena, cpu) + T.C_TASK) >> 3] - 1 if cpu >= 0 else -1
    if last in tasks:
        seeds = (*seeds, last)                            # (its family may name no CPU)
    mine += [t for t in seeds if t in tasks and t not in mine]
    fam = set(mine)
    by_pid = {f(t, T.T_PID): t for t in tasks}
    for t in list(mine):                                  # ancestors no CPU runs
        p = by_pid.get(f(t, T.T_PPID))
        while p is not None and p not in fam and f(p, T.T_CPU) == 0:
            fam.add(p)
            p = by_pid.get(f(p, T.T_PPID))
    while True:                                           # children no live CPU runs
        pids = {f(t, T.T_PID) for t in fam}
        more = {t for t in tasks if t not in fam and f(t, T.T_PPID) in pids
                and f(t, T.T_CPU) in (0, cpu + 1 if cpu >= 0 else 0)}
        if not more:
            break
        fam |= more
    depth = {t: 0 for t in fam}                           # deepest first: children before parents
    for t in fam:
        p, d = by_pid.get(f(t, T.T_PPID)), 0
        while p in fam and d < len(fam):
            d += 1
            p = by_pid.get(f(p, T.T_PPID))
        depth[t] = d
    n = 0
    for t in sorted(fam, key=lambda x: -depth[x]):
        if u32[(T.task_off(arena, t) + T.T_STATE) >> 2] != T.TASK_ZOMBIE:
            vm.exit(t, 9)                               # SIGKILL
        p = by_pid.get(f(t, T.T_PPID))
        if p is None or p in fam:                       # else its parent (on a live CPU) reaps it
            vm.reap(t)
        n += 1
    return n


def vm_recover(arena: Any, cpu: int, mm: Any, slub: Any) -> dict[str, int]:
    """A VM workload's recover hook body: the dead CPU's tasks exit (module docstring)."""
    from aerosync.mm.vm.vm import VM

    vm = VM(arena, cpu, mm=mm)
    try:
        return {"tasks": exit_tasks(arena, cpu, vm)}
    finally:
        vm.leave()
