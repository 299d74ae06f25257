"""Per-CPU intent logs and named fault points: what a CPU was doing when it died.

Models: nothing one-to-one in Linux (a CPU does not die alone there); the write-ahead
intent of a journal (jbd2's handle: say what you will change, then change it) shrunk
to a few plain stores, and the kernel's fault-injection points (fail_page_alloc,
should_fail) turned into "die here".  Unit: one record -- an operation with its
arguments and a step counter -- in the log of one CPU context (arena/layout.py draws
the section "intentlog").

Protocol (owner-only: one thread writes a context, nobody else does while it lives):
  * `begin(op, a0, a1, a2)` writes a record at index `depth` (args first, op last) and
    then stores depth + 1; `end(r)` stores depth back.  Steps are one plain store of
    the record's step word (`q[r + STEP] = n`), args one store each (`q[r + ARG + i]`).
    No atomics: the log is read only after its writer is dead (the coordinator reaped
    the process, so every store it made is visible) and in program order.
  * Nesting: an operation that calls another (a slab refill allocates pages) has the
    inner record above its own.  Recovery resolves records innermost first.  An outer
    operation that hands an item (a page, an object) to an inner freeing operation
    leaves it to the inner record while that is open; an inner allocating operation is
    rolled back (the outer one never received its result).
  * "take, record, point": an operation records an item it took (a chain popped by a
    CAS, a page from the allocator) with the store right after the take, and fault
    points sit only where the log describes the state exactly.  So a death at any
    point is repaired exactly; a SIGKILL from outside between a take and its record
    (one store later) is covered by the hand-off (below) where the item leaves the
    allocator, and elsewhere by resolving from state (mm/recovery.py).
  * Hand-off (robust_list's list_op_pending, for items): an allocator's fast path hands
    an item to its caller with no record.  So every path that hands out a page or an
    object stores the item's name (`decode_item`: its struct page's u32 index, or its
    slot's arena offset) in its context's handoff word just before the store that
    makes it the caller's (a page's refcount 1, the cpu-freelist CAS, a magazine's or
    sheaf's count), and a caller that records what it gets opens a window first:
    handoff := 0, then pending := its own non-zero value (which slot the item goes
    to), and pending := 0 once the item is in its record.  A death with the
    window open leaves `read_handoff` the candidate; whether the allocator took it is
    read from the item's state (allocated, or still free), and the caller's recovery
    gives it back if nobody names it (workers/workloads/crash_soak.py).  Outside a
    window the word is stale and means nothing (nested and unrelated allocations
    overwrite it); recovery clears both words.  A logged allocation nested inside
    another's window (new_slab's pages under a slab object's) shares that window: it
    names its item in its own record, then clears the word (mm/slab/slub.py new_slab).
    Windows with no record: WINDOW_PGTABLE (mm/vm/pgtable.py alloc_table, until the
    page says PG_table), resolved after the records (mm/vm/recover.py
    table_handed_out); WINDOW_ZSPAGE (mm/reclaim/zmm.py zs_malloc, until the new zspage
    is on its class's partial list), resolved before them (mm/reclaim/recover.py
    rebuild_zmm).
  * The arena's owner process (coordinator, or a test driving CPUs from threads)
    writes to its own context: it does not die while the arena lives, and its handles
    (a drain for a hot-unplugged CPU, recovery acting for a dead one) must not write
    into a live CPU's log.  Depth is clamped to the record count, so threads sharing
    that context cannot write outside it.

Fault points (`[fault]` in a scenario, tests): every step boundary of every logged
operation has a name in POINTS ("subsystem:operation:step").  `point_fn(arena, cpu)`
is None unless the arena's configuration has a "fault" table (so handles of a normal
run test nothing: `if fp: fp(P_X)` on a None costs one local test), else a closure
that counts the pass in the CPU's hit counters and SIGKILLs its own process when the
CPU is armed for that point (arm word = point id + 1, after `skip` passes).  The
coordinator arms CPUs (kill_at, kill_random) and reads the hit counters to choose
random points a workload actually reaches.

Cost (2-core box, loaded): a record's begin + end ~0.3 us, a step ~20 ns; on the
order-0 PCP and SLUB cpu-freelist fast paths only the hand-off store (they take one
item with one CAS or under the PCP's BUSY word, and a dead CPU's PCP and cpu freelist
are repaired from state).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aerosync.arena import layout as L
from aerosync.arena.layout import robust_mode

__all__ = ["WINDOW_PGTABLE", "WINDOW_ZSPAGE", "POINTS", "POINT_IDS", "point_id", "OPS", "OP_NAMES", "IntentLog",
           "point_fn", "Record",
           "read_records", "clear_log", "arm", "disarm", "died_at", "hits", "ARG", "STEP",
           "fault_enabled", "robust_mode", "SPILL_MAX", "spill_items", "held_locks", "OP", "idle_fn",
           "PARK_SAFE_OPS", "ITEM_PAGE", "ITEM_SLOT", "decode_item", "read_handoff", "clear_handoff",
           "peek_handoff_ctx"]

ARG, STEP = 1, 7              # word offsets inside a record: args a0..a5 at 1..6, step at 7
SPILL_MAX = L.INTENT_SPILL

# ---------------------------------------------------------------------------- operations
# op code -> (name, what its args are).  Recovery (mm/recovery.py and the subsystems'
# recover modules) switches on these.
OPS: dict[int, tuple[str, str]] = {
    1: ("buddy_alloc", "zid, order, mt: rmqueue from the free lists under zone.lock"),
    2: ("buddy_free", "zid, pfn, order: free_one_page under zone.lock"),
    3: ("move_freepages", "zid, pfn, new_mt: a pageblock's free blocks retyped (claim)"),
    4: ("pcp_refill", "zid, order, list: rmqueue_bulk onto this CPU's PCP list"),
    5: ("pcp_drain", "zid, pcp, count: free_pcppages_bulk from a PCP to the buddy"),
    20: ("slab_new", "cid, pfn, order: allocate_slab (pfn set once the pages came)"),
    21: ("slab_discard", "cid, pfn, order: discard_slab back to the page allocator"),
    22: ("slab_alloc_slow", "cid, pfn, chain, obj: ___slab_alloc; step 1 a chain in flight, 3 an object; "
                            "4 detach() and 5 get_freelist() under way (pfn, chain named before the CAS)"),
    23: ("slab_deactivate", "cid, pfn, chain: deactivate_slab of a detached cpu slab"),
    24: ("slab_get_partial", "cid, nid, pfn, chain: get_partial_node (step 2: chain taken; 3: the freeze "
                             "CAS under way, chain named)"),
    25: ("slab_free", "cid, pfn, idx: __slab_free (step 1: the object is on the freelist)"),
    26: ("slab_put_partials", "cid, pfn: __put_partials of a detached chain of slabs"),
    27: ("slab_mag_flush", "cid, n, phase: a full magazine's older half (spill) back to the slabs (phase "
                           "1 spilled, the newer half moving down; 2 moved)"),
    29: ("slab_sheaf_flush", "cid, sheaf, n, counted: a sheaf's objects (spill) back to the slabs"),
    30: ("slab_sheaf_refill", "cid, sheaf, have, flags: objects taken into a sheaf (step: how many)"),
    32: ("slab_debug_free", "cid, pfn, idx: a debug cache's locked free (step 1: on the freelist)"),
    33: ("slab_pcs_free", "cid, addr: free_to_pcs swapping sheaves (step 1: addr on the main sheaf)"),
    40: ("vm_fault", "mm, table, pte, pfn, kind, old/obj: a page fault's new page (1 got, 2 in its object, "
                     "3 counted as mapped, 4 PTE installed; 5 anon_write_fast: counted, insert in flight)"),
    41: ("vm_mmap", "mm, vma: mmap_region's new VMA (1 set up, not in the maple tree; 2 in it)"),
    42: ("vm_munmap", "mm, start, end, n, progress: a munmap's VMAs (spill) 1 detached, 2 unlinked, 3 unmapped "
                      "(progress: remove_vmas' 3k + sub)"),
    43: ("vm_gather", "mm, nt: an mmu_gather's pages (spill from its gather base; step: how many) waiting for "
                      "their put, and nt page tables (spill from its top down), detached, waiting for their free"),
    44: ("vm_file_hold", "mm, fid, idx, pfn: a file fault's reference to its page-cache folio "
                         "(filemap_get_folio's; step 1 held, 0 none or dropped)"),
    45: ("vm_file_add", "obj, idx, pfn: a folio read into a file's page cache (1 allocated, in no "
                        "cache; 2 in the cache, not yet counted nor on the LRU)"),
    46: ("vm_obj_destroy", "obj, idx, entry, back, own: a vm_object's destroy (1 dead and cut from its "
                           "backing, 2 entry taken -- own: a folio of its own --, 3 tree empty, 4 backing "
                           "put, 5 freed; mm/vm/vm_object.py)"),
    47: ("vm_task_create", "mm, tid + 1: a task being made (1 mm claimed, 2 the mm live with its user; tid + 1 "
                           "from its claim, before its fill; "
                           "3 the task record made, its kernel stack on the way)"),
    48: ("vm_vmalloc", "va, addr, npages, pfn, order: a vmalloc (1 the area's record had, in no tree; 2 in its "
                       "tree, being filled: its PTEs say which pages it holds, pfn the page in hand; "
                       "complete once the area is BUSY)"),
    49: ("vm_dup_mm", "child, parent, vma, sp, sc, pvma: fork's copy (1 child mm claimed, 2 live, 3 a VMA copy "
                      "in flight: not in the child's tree, its shadows sp / sc being made, 4 that copy the child's)"),
    50: ("vm_exit_mmap", "mm: mmput's teardown (1 users 0, the VMAs being unmapped one by one; 2 the mm's "
                         "root and record being freed)"),
    51: ("vm_task_exit", "tid, mm: do_exit (0 exiting, 1 its stack released and its mm's user going, 2 done)"),
    52: ("vm_expand", "mm, vma, new_end: vma_expand (the tree store, then vm_end)"),
    53: ("vm_split", "mm, vma, new, addr: __split_vma (1 the new VMA set up with its object reference, "
                     "not in the tree; 2 in the tree, vma's end not yet cut)"),
    54: ("vm_brk", "mm, oldbrk, newbrk: brk moving the break (1 the heap's VMAs changed, mm->brk may lag)"),
    55: ("vm_obj_remove", "obj, idx, entry, -, zero: vm_object_page_remove, one entry at a time (1 the entry "
                          "being erased -- or, zero, replaced by a ZERO marker -- 2 erased and counted: its "
                          "reference the record's)"),
    56: ("vm_collapse", "obj, back (| 1: the caller pins obj), bidx, entry, idx: vm_object_collapse moving one "
                        "entry of back up into obj "
                        "(1 its folio says obj, the store in flight; 2 stored and counted, back's erase in "
                        "flight); then its splice (3 under way: entry = back's backing nb, idx = obj's new offset; "
                        "4 spliced, back's put in flight)"),
    57: ("vm_xa_nodes", "n0..n5: the radix_tree_nodes one XArray store allocated, not yet published "
                        "(step: how many)"),
    58: ("vm_vfree", "va, addr, npages, vmap: vfree / vunmap of an area (1 no longer BUSY, being unmapped; "
                     "2 unmapped and uncounted, not yet lazy; 3 lazy)"),
    59: ("vm_purge", "nid, cursor, va: the purge of one node's lazy list, detached (1 not flushed yet; 2 "
                     "flushed, va = cursor being erased; 3 va erased and uncounted, its record being freed, "
                     "cursor the next)"),
    60: ("wl_alloc", "slot, kind, arg: a workload takes an item into held-table slot"),
    61: ("wl_free", "slot, entry: a workload frees the item it held in slot"),
    62: ("wl_push", "slot, entry, ring, pos: a workload sends an item to another CPU"),
    63: ("wl_pop", "ring, pos, entry: a workload takes an item from its inbound ring"),
    # (the VM operations continued)
    64: ("vm_vb_alloc", "va, vb, addr, n, pfn: a small vmalloc from a vmap_block (1 a new block's area record "
                        "had, in no tree; 2 in its tree, the block's record being had; 3 n pages, the guard "
                        "included, carved at addr of vb -- a5 = 1 while the carve lands -- being mapped: its PTEs "
                        "say which, pfn the page in hand)"),
    65: ("vm_vb_free", "vb, addr, n, free: vb_free of a block allocation (1 claimed -- its first used bit "
                       "cleared -- being unmapped; 2 unmapped and uncounted, not yet dirty)"),
    66: ("vm_vb_retire", "vb, va: free_vmap_block (1 out of the table, dead and uncounted, its area not yet "
                         "lazy; 3 its area lazy, the block record being freed)"),
    67: ("vm_merge", "mm, survivor, victim, end: a merge after a change (1 victim write-locked, the survivor's "
                     "expand to end in flight; 2 expanded -- the tree maps victim's range to survivor -- "
                     "victim not yet removed)"),
    68: ("vm_mremap", "mm, v, n, old, old_len, dst: mremap moving v to n (1 n set up with its object reference, "
                      "not in the tree; 2 n in the tree and counted, the page tables moving; 3 moved, v's erase "
                      "in flight; 4 v erased, detached and unlinked, being removed; 5 its object's "
                      "reference put; 6 counted out)"),
    69: ("vm_reclaim", "nid, cur, wslot, dslot, fcount: the folios reclaim isolated (spill from SPILL_RECLAIM, "
                       "(pfn << 1 | anon) + 2 each, 0 once released; step: how many) off their LRU with its "
                       "reference; cur + 1 the folio being reclaimed (locked, or frozen and being freed), wslot + 1 "
                       "its swap slot while its data is written out (PG_dirty cleared), dslot + 1 the slot whose "
                       "cache it leaves once frozen, fcount + 1 this CPU's nr_file_pages before an eviction "
                       "lowers it"),
    70: ("vm_migrate", "mm: the folios one round of migrate_pages holds (spill from SPILL_MIGRATE, two words each: "
                       "old pfn << 8 | fast << 5 | isolated << 4 | state, and new pfn + 1; 0 once released; step: "
                       "how many) -- state 1 locked, 2 being unmapped, 3 frozen, 4 moved to the new page, being "
                       "remapped, 5 remapped, the old page being freed"),
    71: ("vm_mm_hold", "mm: a reference on an address space a system call holds (get_task_mm: move_pages, "
                       "migrate_pages; step 1 held, 0 none or being put)"),
    72: ("vm_swapin", "slot, pfn + 1, new: a swap-in (the fault's, or one readahead page) -- 0 with new a folio "
                      "being put in the swap cache (its allocation's hand-off window until pfn), without new a "
                      "cached folio found, locked and held; 1 a new folio in the swap cache, locked, being read; "
                      "2 read (maybe the only copy now); 3 uptodate, on its way to the LRU, locked with our "
                      "reference (the fault mapping it); 0 released"),
}
OP_NAMES = {code: name for code, (name, _) in OPS.items()}
OP = {name: code for code, name in OP_NAMES.items()}

# ---------------------------------------------------------------------------- fault points
# One table, fixed order: point ids are indices into it and go through the arena (arm
# words, hit counters), so every process must number them alike.  Append only.
POINTS: tuple[tuple[str, str], ...] = (
    # mm/pmm/page_alloc.py -- the buddy allocator under zone.lock
    ("buddy:alloc:unlinked", "rmqueue: a block is off its free list, not yet split"),
    ("buddy:alloc:split", "rmqueue: one upper half of the split block is back on a free list"),
    ("buddy:alloc:taken", "rmqueue: the block is out, NR_FREE_PAGES not yet lowered"),
    ("buddy:free:merged", "free_one_page: a free buddy was unlinked to merge with"),
    ("buddy:free:linked", "free_one_page: the merged block is on its free list"),
    ("buddy:move:moved", "move_freepages_block: one free block moved to the new type's list"),
    ("buddy:move:retagged", "move_freepages_block: the pageblock took the new type"),
    ("buddy:claim:claimed", "try_to_claim_block: a whole pageblock-or-larger block claimed"),
    ("buddy:steal:split", "__rmqueue_steal: a block taken from another type's list, half split"),
    # PCP
    ("pcp:refill:linked", "rmqueue_bulk: one more block on the PCP list, count not updated yet"),
    ("pcp:refill:counted", "rmqueue_pcplist: the refill counted, the first block not yet popped"),
    ("pcp:drain:popped", "free_pcppages_bulk: a page off the PCP list's tail, not in the buddy"),
    ("pcp:drain:freed", "free_pcppages_bulk: that page merged into the buddy lists"),
    ("alloc:buddy:taken", "rmqueue: a high-order block came from the buddy, not prepared yet"),
    # mm/slab/slub.py
    ("slab:new:page", "allocate_slab: the slab's pages came from the page allocator"),
    ("slab:new:ready", "allocate_slab: objects chained, counters raised, slab on no list"),
    ("slab:new:frozen", "___slab_alloc: a new slab's whole freelist taken, slab frozen"),
    ("slab:alloc:detached", "___slab_alloc: c->slab detached with its cpu freelist"),
    ("slab:alloc:freelist", "___slab_alloc: a slab's freelist taken (get_freelist)"),
    ("slab:alloc:partial_pop", "___slab_alloc: a slab popped off c->partial"),
    ("slab:alloc:installed", "___slab_alloc: a chain installed, its first object not yet returned"),
    ("slab:partial:removed", "get_partial_node: a slab off the node partial list"),
    ("slab:partial:frozen", "get_partial_node: that slab frozen, its freelist taken"),
    ("slab:partial:moved", "get_partial_node: one more slab moved onto c->partial"),
    ("slab:deactivate:unfrozen", "deactivate_slab: chain spliced back, slab unfrozen"),
    ("slab:deactivate:listed", "deactivate_slab: the slab on its node partial list"),
    ("slab:free:freed", "__slab_free: the object is on its slab's freelist (CAS done)"),
    ("slab:free:unlisted", "__slab_free: an empty slab taken off its node list to discard"),
    ("slab:cpu_partial:pushed", "put_cpu_partial: a slab pushed on c->partial"),
    ("slab:cpu_partial:detached", "put_cpu_partial: a full c->partial detached to drain"),
    ("slab:put_partials:one", "__put_partials: one slab of the chain put on its node list"),
    ("slab:discard:uncounted", "discard_slab: node counters lowered, slab still marked"),
    ("slab:discard:cleared", "discard_slab: slab metadata cleared, pages not yet freed"),
    ("slab:mag_flush:spilled", "magazine flush: older half in the spill, magazine compacted"),
    ("slab:mag_flush:freed", "magazine flush: one spilled object back on its slab"),
    ("slab:sheaf_flush:freed", "sheaf flush: one object of the sheaf back on its slab"),
    ("slab:sheaf_refill:took", "sheaf refill: objects taken off the cpu freelist into the sheaf"),
    ("slab:debug:freed", "debug cache free: the object on its slab's freelist, lists updated"),
    ("slab:pcs:detached", "per-CPU sheaves: a sheaf off main/spare/barn, in no place yet"),
    ("slab:pcs:barn", "per-CPU sheaves: a sheaf moved to or from the barn"),
    ("slab:pcs:pushed", "free_to_pcs: an object on the main sheaf after a sheaf swap"),
    # mm/vm: fault install, VMA insert and remove, zap (memory.py, mmap.py)
    ("vm:fault:page", "a fault's new page allocated, in no object yet"),
    ("vm:fault:inserted", "the fault's page in its object's tree, not mapped"),
    ("vm:fault:accounted", "the page counted as mapped (reference, mapcount, rss), PTE not set"),
    ("vm:fault:installed", "the PTE installed"),
    ("vm:mmap:vma_ready", "mmap_region: a new VMA set up, not in the maple tree"),
    ("vm:mmap:inserted", "mmap_region: the VMA in the tree and on its lists, counted"),
    ("vm:munmap:detached", "munmap: the VMAs out of the maple tree, their pages still mapped"),
    ("vm:munmap:unlinked", "munmap: the VMAs off their objects' lists"),
    ("vm:zap:gathered", "munmap: one VMA's PTEs cleared, their pages in the mmu_gather"),
    ("vm:munmap:unmapped", "munmap: TLB flushed, pages and page tables freed, VMAs not yet"),
    # workloads (workers/workloads/crash_soak.py): the held-table protocol
    ("wl:alloc:got", "a workload took a page or object and recorded it in its held table"),
    ("wl:free:unheld", "a workload cleared the held slot of an item it is freeing"),
    ("wl:free:done", "the freeing call returned"),
    ("wl:push:claimed", "a ring slot of another CPU claimed for an item"),
    ("wl:push:published", "the item is in the ring; the held slot not yet cleared"),
    ("wl:pop:taken", "an item taken off this CPU's inbound ring"),
    ("wl:pop:freed", "that item freed"),
    # mm/vm, appended: faults that map a page they found, file faults, the page cache
    ("vm:fault:found_accounted", "a found page (object tree, page cache) counted as mapped, PTE not set"),
    ("vm:fault:file_held", "a file fault holds its page-cache folio's reference, nothing mapped yet"),
    ("vm:filemap:page", "a page allocated for the page cache, in no file yet"),
    ("vm:filemap:inserted", "that page in the file's cache, not yet counted nor on the LRU"),
    ("vm:vfree:unmapped", "vfree: the area unmapped and its pages uncounted, not yet lazy"),
    ("vm:purge:erased", "purge: a lazy area erased from its tree and uncounted, its record not yet freed"),
    ("vm:vmalloc:page", "vmalloc: one more page mapped into an area not yet BUSY (a kernel stack, a large area)"),
    ("vm:fork:shadows", "dup_mm: a private VMA's two new shadows made, neither given to a VMA yet"),
    ("vm:fork:copied", "dup_mm: one more VMA copied into the child (in its tree, its PTEs copied)"),
    ("vm:split:ready", "__split_vma: the new VMA is set up with its object reference, not in the tree"),
    ("vm:split:inserted", "__split_vma: the new VMA is in the tree, the old one's end not yet cut"),
    ("vm:brk:changed", "brk: the heap's VMAs changed (grown or unmapped), mm->brk not yet final"),
    ("vm:collapse:stored", "vm_object_collapse: an entry stored in the child and counted, still in the backing"),
    ("vm:obj_remove:taken", "vm_object_page_remove: an entry erased and counted, its reference not yet put"),
    ("vm:vb_alloc:page", "vb_alloc: one more page mapped into a vmap_block range being filled"),
    ("vm:vb_free:unmapped", "vb_free: a block allocation unmapped and uncounted, not yet marked dirty"),
    ("vm:vb_retire:lazy", "free_vmap_block: the block's area lazy, its record not yet freed"),
    ("vm:mremap:moved", "mremap move: the page tables at the new VMA, the old VMA still in the tree"),
    ("vm:merge:expanded", "vma merge: the survivor covers the swallowed VMA's range, that VMA not yet removed"),
    ("vm:reclaim:isolated", "shrink_folio_list: folios isolated from their LRU and logged, none reclaimed yet"),
    ("vm:migrate:isolated", "migrate_pages: a folio locked, off its LRU and logged, its destination page allocated"),
    ("vm:migrate:unmapped", "migrate_pages: a folio's PTEs are migration entries, flushed; not yet frozen"),
    ("vm:migrate:moved", "migrate_pages: the contents and the object's entry at the new page, PTEs not yet remapped"),
    ("vm:reclaim:swapcache", "shrink_folio_list: the folio being reclaimed in the swap cache, still mapped"),
    ("vm:reclaim:unmapped", "shrink_folio_list: that folio's PTEs and object entry swap values, not yet written"),
    ("vm:reclaim:written", "shrink_folio_list: that folio's data written to its slot (clean), not yet freed"),
    ("vm:swapin:new", "swap-in: a new locked folio in the swap cache for the slot, its data not yet read"),
)
POINT_IDS = {name: i for i, (name, _) in enumerate(POINTS)}
assert len(POINTS) <= L.INTENT_MAX_POINTS


def point_id(name: str) -> int:
    """The id of a fault point; KeyError names the known ones' count and where to look."""
    try:
        return POINT_IDS[name]
    except KeyError:
        raise KeyError(f"no fault point {name!r} ({len(POINTS)} points: `aerosync doctor --fault-points`)") from None


def fault_enabled(config: dict[str, Any]) -> bool:
    """Fault points are live in this arena's workers (a "fault" table in its config)."""
    return bool(config.get("fault"))


# ---------------------------------------------------------------------------- the log
def _owner(arena: Any) -> bool:
    return os.getpid() == arena.owner_pid


class IntentLog:
    """One CPU context's log, as closures bound once (see the module docstring).

    `q` is arena.u64 (callers store steps and args with it), `spill` the u64 index of
    the context's spill area, `handoff` / `pending` of its hand-off words, `fp` the
    fault-point function or None."""

    __slots__ = ("arena", "cpu", "ctx", "off", "q", "begin", "end", "fp", "spill", "handoff", "pending")

    def __init__(self, arena: Any, cpu: int, irq: bool = False) -> None:
        self.arena, self.cpu, self.ctx = arena, cpu, int(irq)
        nr_cpus = int(arena.config["nr_cpus"])
        base = arena.off("intentlog")
        owner = _owner(arena)
        self.off = L.intent_ctx_off(base, nr_cpus, -1 if owner else cpu, self.ctx)
        q = self.q = arena.u64
        dep = (self.off + L.ILC_DEPTH) >> 3
        rec0 = (self.off + L.ILC_RECS) >> 3
        last = L.INTENT_MAX_DEPTH - 1
        self.spill = (self.off + L.ILC_SPILL) >> 3
        self.handoff = (self.off + L.ILC_HANDOFF) >> 3     # u64 indexes ("Hand-off")
        self.pending = (self.off + L.ILC_PENDING) >> 3

        def begin(op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0) -> int:
            d = q[dep]
            r = rec0 + (d << 3)
            q[r + 1] = a0
            q[r + 2] = a1
            q[r + 3] = a2
            q[r + 4] = a3                 # (a4, a5 stale until the caller stores them)
            q[r + 7] = 0
            q[r] = op
            q[dep] = d + 1
            return r

        if owner:
            def begin(op: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0) -> int:   # the clamped one
                d = q[dep]
                if d > last:                 # the owner's context, shared by threads of tests
                    d = last
                r = rec0 + (d << 3)
                q[r + 1] = a0
                q[r + 2] = a1
                q[r + 3] = a2
                q[r + 4] = a3                 # (a4, a5 stale until the caller stores them)
                q[r + 7] = 0
                q[r] = op
                q[dep] = d + 1
                return r

        def end(r: int) -> None:
            q[dep] = (r - rec0) >> 3

        self.begin, self.end = begin, end
        self.fp = None if owner else point_fn(arena, cpu)


def point_fn(arena: Any, cpu: int) -> Callable[[int], None] | None:
    """The fault-point function of `cpu` in this process, or None (no "fault" config)."""
    if not fault_enabled(arena.config) or _owner(arena):
        return None
    q = arena.u64
    blk = arena.off("intentlog") + cpu * L.INTENT_CPU_SIZE
    arm_i, skip_i, died_i = (blk + L.IL_ARM) >> 3, (blk + L.IL_SKIP) >> 3, (blk + L.IL_DIED) >> 3
    hit0 = (blk + L.IL_HITS) >> 3
    kill, getpid = os.kill, os.getpid

    def fp(p: int) -> None:
        q[hit0 + p] += 1
        if q[arm_i] == p + 1:
            s = q[skip_i]
            if s:
                q[skip_i] = s - 1
                return
            q[died_i] = p + 1
            kill(getpid(), signal.SIGKILL)

    return fp


# ---------------------------------------------------------------------------- reading (recovery, tests)
@dataclass(frozen=True, slots=True)
class Record:
    """One open record of a dead context: op code, args a0..a5, step; `depth` 0 = outermost."""

    ctx: int
    depth: int
    op: int
    args: tuple[int, ...]
    step: int

    @property
    def name(self) -> str:
        return OP_NAMES.get(self.op, f"op{self.op}")

    def __str__(self) -> str:
        return f"{self.name}{self.args} step {self.step}"


def _ctx_off(arena: Any, cpu: int, ctx: int) -> int:
    return L.intent_ctx_off(arena.off("intentlog"), int(arena.config["nr_cpus"]), cpu, ctx)


ITEM_PAGE, ITEM_SLOT = 1, 2
WINDOW_PGTABLE = 2                 # a pending value no record owns ("Hand-off"); records use 1
WINDOW_ZSPAGE = 3                  # another (low byte; the zspage's size class above it: zmm.py)


def decode_item(arena: Any, item: int) -> tuple[int, int]:
    """What a hand-off word names: (ITEM_PAGE, pfn) for the u32 index of a struct page
    (what the page allocator's fast paths hold: "pagemeta" / 4 + pfn * 16), (ITEM_SLOT,
    the arena offset of an object's slot: what SLUB's fast paths hold) for an offset in
    "physmem" -- the pagemeta section lies below physmem, so the two never collide --
    else (0, 0).  Raw values, as a fast path's store costs ~23 ns against ~63 ns for
    an encoded one (measured: a pair is ~1.3 us)."""
    pm, pm_size = arena.sections["pagemeta"]
    if pm >> 2 <= item < (pm + pm_size) >> 2 and not (item - (pm >> 2)) & 15:
        return ITEM_PAGE, (item - (pm >> 2)) >> 4
    ph, ph_size = arena.sections["physmem"]
    if ph <= item < ph + ph_size:
        return ITEM_SLOT, item
    return 0, 0


def read_handoff(arena: Any, cpu: int) -> list[tuple[int, int]]:
    """(pending, item) of each context of dead `cpu` whose hand-off window was open
    (module docstring, "Hand-off"): item 0 = the allocator had not named one yet."""
    q = arena.u64
    out = []
    for ctx in range(L.INTENT_CTX):
        off = _ctx_off(arena, cpu, ctx)
        pending = q[(off + L.ILC_PENDING) >> 3]
        if pending:
            out.append((pending, q[(off + L.ILC_HANDOFF) >> 3]))
    return out


def peek_handoff_ctx(arena: Any, cpu: int, ctx: int) -> tuple[int, int]:
    """(pending, item) of context `ctx` of dead `cpu`, the window left as it is."""
    off = _ctx_off(arena, cpu, ctx)
    return arena.u64[(off + L.ILC_PENDING) >> 3], arena.u64[(off + L.ILC_HANDOFF) >> 3]


def take_handoff_ctx(arena: Any, cpu: int, ctx: int, only: int = 0) -> tuple[int, int]:
    """(pending, item) of context `ctx` of dead `cpu` (pending 0: no window open), the
    window closed: the record whose window it was resolves it, nobody else.  With
    `only`, a window whose pending value is another is left open and (0, 0) returned."""
    q = arena.u64
    off = _ctx_off(arena, cpu, ctx)
    got = q[(off + L.ILC_PENDING) >> 3], q[(off + L.ILC_HANDOFF) >> 3]
    if only and got[0] != only:
        return 0, 0
    q[(off + L.ILC_PENDING) >> 3] = 0
    return got


def clear_handoff(arena: Any, cpu: int) -> None:
    """Close both contexts' hand-off windows (recovery, after the caller's hook)."""
    q = arena.u64
    for ctx in range(L.INTENT_CTX):
        off = _ctx_off(arena, cpu, ctx)
        q[(off + L.ILC_PENDING) >> 3] = 0
        q[(off + L.ILC_HANDOFF) >> 3] = 0


def read_records(arena: Any, cpu: int) -> list[Record]:
    """The open records of both contexts of `cpu`, innermost first within each context
    (task context first).  Read after the CPU's process died."""
    q = arena.u64
    out: list[Record] = []
    for ctx in range(L.INTENT_CTX):
        off = _ctx_off(arena, cpu, ctx)
        depth = min(q[(off + L.ILC_DEPTH) >> 3], L.INTENT_MAX_DEPTH)
        for d in range(depth - 1, -1, -1):
            r = (off + L.ILC_RECS + d * L.INTENT_REC_SIZE) >> 3
            out.append(Record(ctx, d, q[r], tuple(q[r + ARG : r + ARG + 6]), q[r + STEP]))
    return out


def spill_items(arena: Any, cpu: int, ctx: int, n: int) -> list[int]:
    """The first n spill words of a context (what an open record moved there)."""
    s = (_ctx_off(arena, cpu, ctx) + L.ILC_SPILL) >> 3
    return list(arena.u64[s : s + min(n, L.INTENT_SPILL)])


def held_locks(arena: Any, cpu: int) -> list[tuple[int, int]]:
    """(lock word offset, kind) of the embedded locks `cpu`'s contexts held (robust list)."""
    q, out = arena.u64, []
    for ctx in range(L.INTENT_CTX):
        off = _ctx_off(arena, cpu, ctx)
        n = min(q[(off + L.ILC_HELD_N) >> 3], L.IL_HELD_MAX)
        for i in range(n):
            w = q[((off + L.ILC_HELD) >> 3) + i]
            if w:
                out.append((w & ((1 << 56) - 1), w >> 56))
    return out


def lock_pending(arena: Any, cpu: int) -> tuple[int, int] | None:
    """(lock word offset, kind) of the embedded lock dead `cpu` was taking or releasing
    when it died (its task context's lock_pending word, robust_list's list_op_pending:
    sync/objlock.py "Robust list"), or None.  Whether it holds it is decided from the
    lock (mm/recovery.py)."""
    w = arena.u64[(_ctx_off(arena, cpu, 0) + L.ILC_LOCK_PENDING) >> 3]
    return (w & ((1 << 56) - 1), w >> 56) if w else None


def clear_lock_pending(arena: Any, cpu: int) -> None:
    arena.u64[(_ctx_off(arena, cpu, 0) + L.ILC_LOCK_PENDING) >> 3] = 0


# Records a CPU may park with (idle_fn): what they hold is a reference no recovery step
# or checker counts against a dead CPU (MM1 wants mm_users >= the tasks, not equal) --
# move_pages waiting for the mmap_lock a dead thread of the mm held would otherwise make
# the coordinator release that lock before the recovery
PARK_SAFE_OPS = frozenset({OP["vm_mm_hold"]})


def idle_fn(arena: Any, cpu: int) -> Callable[[], bool]:
    """A function telling whether `cpu` (this process) has nothing in flight: no lock on
    its robust list and no open record but park-safe ones (PARK_SAFE_OPS), in either
    context -- where it may park for a pause inside a lock wait (sync/waithook.py's park
    hook)."""
    q = arena.u64
    spans = []
    for ctx in range(L.INTENT_CTX):
        off = _ctx_off(arena, cpu, ctx)
        spans.append(((off + L.ILC_DEPTH) >> 3, (off + L.ILC_HELD) >> 3, (off + L.ILC_RECS) >> 3))
    held_n, words, last = L.IL_HELD_MAX, L.INTENT_REC_SIZE >> 3, L.INTENT_MAX_DEPTH
    safe = PARK_SAFE_OPS

    def idle() -> bool:
        for dep, held, rec0 in spans:
            if any(q[held : held + held_n]):
                return False
            for d in range(min(q[dep], last)):
                if q[rec0 + d * words] not in safe:
                    return False
        return True

    return idle


def clear_log(arena: Any, cpu: int) -> None:
    """Empty both contexts of `cpu` (records, robust list) and its fault line: the CPU
    starts again with nothing open.  Hit counters are kept (they are the run's)."""
    q = arena.u64
    for ctx in range(L.INTENT_CTX):
        off = _ctx_off(arena, cpu, ctx)
        q[(off + L.ILC_DEPTH) >> 3] = 0
        q[(off + L.ILC_HELD_N) >> 3] = 0
        for i in range(L.IL_HELD_MAX):
            q[((off + L.ILC_HELD) >> 3) + i] = 0
    disarm(arena, cpu)
    blk = arena.off("intentlog") + cpu * L.INTENT_CPU_SIZE
    q[(blk + L.IL_DIED) >> 3] = 0


def arm(arena: Any, cpu: int, point: int, skip: int = 0) -> None:
    """Make `cpu` die at its (skip+1)-th pass of `point` from now (fault mode only)."""
    blk = arena.off("intentlog") + cpu * L.INTENT_CPU_SIZE
    arena.u64[(blk + L.IL_SKIP) >> 3] = skip
    arena.atomic.store64(blk + L.IL_ARM, point + 1)


def disarm(arena: Any, cpu: int) -> None:
    blk = arena.off("intentlog") + cpu * L.INTENT_CPU_SIZE
    arena.atomic.store64(blk + L.IL_ARM, 0)


def died_at(arena: Any, cpu: int) -> str | None:
    """The fault point `cpu` killed itself at (None: it died some other way)."""
    blk = arena.off("intentlog") + cpu * L.INTENT_CPU_SIZE
    p = arena.u64[(blk + L.IL_DIED) >> 3]
    return POINTS[p - 1][0] if 0 < p <= len(POINTS) else None


def hits(arena: Any, cpu: int | None = None) -> dict[str, int]:
    """How often each fault point was passed (by `cpu`, or summed over all CPUs)."""
    nr = int(arena.config["nr_cpus"])
    base = arena.off("intentlog")
    out = dict.fromkeys(POINT_IDS, 0)
    for c in range(nr) if cpu is None else (cpu,):
        h = (base + c * L.INTENT_CPU_SIZE + L.IL_HITS) >> 3
        for i, (name, _) in enumerate(POINTS):
            out[name] += arena.u64[h + i]
    return out
