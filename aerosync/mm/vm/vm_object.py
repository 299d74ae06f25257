"""vm_objects: the memory objects behind every mapping, with shadow chains for COW.

Models: AeroSync's C kernel mm/vm_object.c (aerosync-c.md 8: anonymous, vnode and shared
objects; a page tree indexed by page offset; two shadows at fork; the chain walked on a
fault; a page stolen when its holder has one child and one reference; collapse at a
depth threshold, merge and bypass), made correct -- the BSD/XNU design that the seed
chose instead of Linux's anon_vma.  Unit: an object (a SLUB object of the "vm_object"
cache, identified by its arena offset) and the folios in its page tree.

Object record (VM_OBJECT_SIZE = 128 bytes)::

     0 type u16 (OBJ_ANON 1, OBJ_VNODE 2) | 2 flags u16 (OBJF_SHARED: MAP_SHARED anonymous
       memory, shmem-like; OBJF_DEAD; bits 3-15: the collapse sequence, odd while a
       collapse moves entries into it) | 4 file id + 1 u32 (vnode objects)
     8 refcount u64 (atomic)  references: VMAs whose vm_object it is, shadow children
       whose backing it is, the file record of a vnode object, transient pins
    16 lock (ObjSpinLock word): "&obj->lock"   24 shared policy u64 (mm/numa/vm_policy.py:
       first range + 1 of a MAP_SHARED anonymous object's shared policy; 0 = none)
    32..63 page tree root record (lib/xarray.py): index -> folio word or value entry
    64 backing u64 (object offset, 0 = none)   72 backing_offset u64 (pages: my index i
       is my backing's index i + backing_offset)
    80 depth u32 (0 = no backing)   84 nr_children u32
    88 size u64 (pages)   96 nr_pages u64 (folios in the tree)
   104 vma_head u64 (first VMA with vm_object == this; linked through the VMAs' obj_next /
       obj_prev: the object's i_mmap)   112 children u64 (first shadow child)
   120 sibling u64 (next child of my backing object)

Page-tree entries: a folio is stored as pfn << 2 (low bits 00); a value entry (bit 0
set, xa_mk_value) is a ZERO marker (this index reads as zeros: MADV_DONTNEED in a
shadow over pages that must stay hidden) or, later, a swap / ZMM / workingset entry.
A folio in an object has folio->mapping = object | PAGE_MAPPING_ANON (for private
anonymous objects) and folio->index = its page index, and holds one reference for the
tree (folio_put when it leaves the tree).  insert sets mapping and index before it
stores the entry, so a lock-free reader that finds a folio and takes a reference can
check "still in this object at this index" at once (filemap_get_entry's re-check).

Lock order: obj->lock of a shadow before its backing's (top-down); a walk upwards (rmap
from a backing object to its children) takes one object's lock at a time.  The lock is
a spinlock: readers of an object's tree never take it (lock-free under RCU: objects and
tree nodes are freed through call_rcu), so only writers -- inserting or removing a
page, linking a VMA or a child -- serialise on it, and none of them sleeps under it.
A walk down the chain (chain_lookup) meets a collapse moving entries from a backing
into its child: it may miss an entry in the child (before the move) and in the backing
(after it), or reach the backing after the splice.  So the child's collapse sequence
is odd while entries move (under its lock), a walk that finds nothing re-reads the
sequence of every object it passed and walks again if one changed (a seqcount read
side; a walk that finds a folio is re-checked against its holder by the caller; a
spliced-out backing, its link cleared, is read safely until RCU frees it).
One writer does without it: a fault's insert into a leaf of the tree that exists
(memory.py anon_write_fast, lib/xarray.py xa_insert_leaf) takes only that leaf's lock,
the object lock sharded by 64-index range, which every other writer of the leaf takes
too (inside lib/xarray.py, under the object lock), innermost.  So two threads faulting
in one object far apart -- page_fault1's regions merged into one VMA, as Linux merges
them (its anon fault takes no anon_vma lock at all) -- share no lock; a fault that needs
a new leaf, and everything that changes the tree's shape, still takes &obj->lock.  The chain links change
under write locks: a backing link and its offset under both objects' (child, then
backing), a children list with its siblings' links under the parent's, a depth under
its own object's.  Each
tree entry changes under the lock on its own (insert, remove, reclaim's replace_entry,
a collapse's move), so the lock's holds are short, and a writer over a range need not
hold it for the whole range: page_remove (the zap's free half) takes it for at most
PAGE_REMOVE_BATCH entries at a time (robust mode: one, under a vm_obj_remove record;
a collapse logs each move, then its splice, in a vm_collapse record: mm/vm/recover.py) and drops it
between batches, so faults of other
CPUs into the same object (a VMA merged across threads' regions) interleave with it.
That is safe because the range it removes is zapped and, for munmap, reachable from no
VMA (detached): nothing else inserts there, and every other writer re-checks the
entry it acts on under the lock (replace_entry's and a steal's "still this folio at
this index", restore_entry's "still the value it left", a collapse moves only into
indices its child lacks).  MADV_DONTNEED keeps its VMA but write-locks it before the
zap (mm/vm/mmap.py dontneed), so no fault into the advised range runs between the zap
and the removal (one would map a zapped folio that then leaves the tree).

Invariants (mm/vm/check.py): O1 a folio in an object's tree has mapping == the object
(+ANON bit for anonymous objects) and index == its tree index, and refcount >= 1 +
mapcount; O2 chains are acyclic and depth == 1 + the backing's depth (<= the limit
after any fault); O3 refcount == VMAs mapping it + shadow children (+1 for a file's
vnode object) when quiescent; O4 no folio is in two trees; O5 nr_pages == folios in
the tree when no fault is inserting (nr_pages changes by atomic fetch_add: the leaf
insert counts its page outside the object lock, so it is exact at every release of
the object's lock only if no such insert is in flight; quiescent, always); O6 every
VMA on an object's list has vm_object == the object.  O1 and O4 have one exception
between a CPU's death and its recovery: a collapse killed after its store into the
child (vm:collapse:stored) leaves the entry in the backing's tree too, its mapping and
reference the child's; live CPUs may meet it first, so untree and the collapse loop
leave a copy another object holds alone (not_ours).  A folio leaves a tree (mapping and
index cleared) before the tree's reference is dropped, and only after its PTEs are gone
and flushed (the mmu_gather ran first), so no page is freed while mapped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aerosync.arena.layout import robust_mode
from aerosync.errors import AeroSyncError
from aerosync.lib.xarray import ULONG_MAX, XArray
from aerosync.mm import intent as I
from aerosync.mm.hooks import point_fn
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import P_INDEX, P_MAPPING, PAGE_MAPPING_ANON
from aerosync.mm.slab.slab_common import VBASE
from aerosync.params import PAGE_META_SIZE
from aerosync.sync.waithook import call_wait_hook

__all__ = [
    "OBJ_ANON", "OBJ_VNODE", "OBJF_SHARED", "OBJF_DEAD", "O_TYPE", "O_FLAGS", "O_FILE", "O_REF", "O_LOCK",
    "O_TREE", "O_BACKING", "O_BACKING_OFF", "O_DEPTH", "O_NR_CHILDREN", "O_SIZE", "O_NR_PAGES", "O_VMA_HEAD",
    "O_CHILDREN", "O_SIBLING", "XA_ZERO", "folio_entry", "entry_pfn", "is_folio_entry", "VmObjects",
    "PageTrees",
]

OBJ_ANON, OBJ_VNODE = 1, 2
OBJF_SHARED, OBJF_DEAD = 1, 2
_SEQ_SHIFT = 19                      # the collapse sequence: flags bits 3-15 (u32 bits 19-31)
_SEQ_MASK = 0x1FFF << _SEQ_SHIFT
_OP_DESTROY, _OP_REMOVE, _OP_COLLAPSE = I.OP["vm_obj_destroy"], I.OP["vm_obj_remove"], I.OP["vm_collapse"]
P_REMOVE_TAKEN, P_COLLAPSE_STORED = I.POINT_IDS["vm:obj_remove:taken"], I.POINT_IDS["vm:collapse:stored"]
O_TYPE, O_FLAGS, O_FILE, O_REF, O_LOCK, O_TREE = 0, 2, 4, 8, 16, 32
O_BACKING, O_BACKING_OFF, O_DEPTH, O_NR_CHILDREN, O_SIZE, O_NR_PAGES = 64, 72, 80, 84, 88, 96
O_VMA_HEAD, O_CHILDREN, O_SIBLING = 104, 112, 120
XA_ZERO = (1 << 1) | 1               # xa_mk_value(1): "reads as zero here"
_U64 = (1 << 64) - 1                 # fetch_add(x, _U64) subtracts one
# page_remove's bounded object-lock hold: tree entries a hold -- one folio_batch
# (FOLIO_BATCH, PAGEVEC_SIZE 31), so a batch's references go back under one lru_lock hold
PAGE_REMOVE_BATCH = 31
_NOMEM_RETRIES = 4                   # insert's stores under the lock (each after an xas_nomem)


def folio_entry(pfn: int) -> int:
    return pfn << 2


def entry_pfn(e: int) -> int:
    return e >> 2


def is_folio_entry(e: int) -> bool:
    return e != 0 and not e & 3


class PageTrees:
    """Every object's page tree (an XArray rooted at obj + O_TREE) with one set of node
    callbacks: load/store/erase/insert(root, ...) find the root's lib/xarray handle in a
    per-process dict.  A handle binds nothing but its root offset, so it stays valid
    when the object record is freed and reused at the same address."""

    __slots__ = ("arena", "callbacks", "handles", "load", "store", "erase", "insert", "insert_leaf", "find",
                 "erase_range", "first", "nomem")

    def __init__(self, arena: Any, alloc_node: Any, free_node: Any, rcu_free_node: Any, track: Any = None,
                 nomem: Any = None) -> None:
        self.arena = arena
        # xas_nomem(): after a store under a lock failed for want of a node, make one
        # allocatable with reclaim allowed (outside the lock); False if even that fails
        self.nomem = nomem
        # robust mode: no leaf locks (lib/xarray.py), faults insert under &obj->lock; `track`
        # logs the nodes a store holds before it publishes them (vm.py, vm_xa_nodes)
        self.callbacks = (alloc_node, free_node, rcu_free_node, not robust_mode(arena.config), track)
        handles: dict[int, XArray] = {}
        self.handles = handles
        get = handles.get
        new = self.handle

        def load(root: int, index: int) -> int:
            return (get(root) or new(root)).xa_load(index)

        def store(root: int, index: int, entry: int) -> int:
            return (get(root) or new(root)).xa_store(index, entry)

        def erase(root: int, index: int) -> int:
            return (get(root) or new(root)).xa_erase(index)

        def insert(root: int, index: int, entry: int) -> int:
            return (get(root) or new(root)).xa_insert(index, entry)

        def insert_leaf(root: int, index: int, entry: int) -> int:
            return (get(root) or new(root)).xa_insert_leaf(index, entry)

        def erase_range(root: int, first: int, last: int, limit: int) -> tuple[list[tuple[int, int]], int]:
            return (get(root) or new(root)).xa_erase_range(first, last, limit)

        def first(root: int) -> tuple[int, int] | None:
            return (get(root) or new(root)).xa_find(0)

        def find(root: int, start: int, last: int) -> tuple[int, int] | None:
            return (get(root) or new(root)).xa_find(start, last)

        self.load, self.store, self.erase, self.insert = load, store, erase, insert
        self.insert_leaf = insert_leaf
        self.erase_range, self.first, self.find = erase_range, first, find

    def handle(self, root: int) -> XArray:
        h = self.handles.get(root)
        if h is None:
            h = self.handles[root] = XArray(self.arena, root, *self.callbacks)
        return h

    def items(self, root: int, first: int = 0, last: int = ULONG_MAX) -> Iterator[tuple[int, int]]:
        """(index, entry) in index order over [first, last] (each step a fresh find)."""
        return self.handle(root).xa_for_each(first, last)

    def drain(self, root: int) -> list[tuple[int, int]]:
        """Empty the tree (its nodes go through RCU) and return what it held."""
        return self.handle(root).xa_drain()


class VmObjects:
    """Simulated CPU `cpu`'s operations on vm_objects (closures bound once):

      alloc(typ, size, flags=0, file_id=-1) -> obj | 0 (ENOMEM)   refcount 1, empty
      get(obj) / put(obj)           put frees an unreferenced object: every folio leaves
                                    its tree (folio_put), the tree nodes and the record go
                                    through RCU; a backing object loses a child
      lookup(obj, idx) -> entry      lock-free (RCU) tree load of one object
      chain_lookup(obj, idx) -> (holder, holder_idx, entry)   walks down the backing
                                    chain; holder 0 = nothing anywhere (or a ZERO marker)
      insert(obj, idx, pfn, anon) -> the folio now in the tree (pfn, or the one another
                                    CPU inserted first); -1 on ENOMEM.  Sets mapping/index.
      remove(obj, idx, pfn) -> bool  take a folio out (caller puts the tree's reference)
      shadow(obj, offset, size) -> new shadow of obj (takes a reference on obj) | 0
      link_vma(obj, vma) / unlink_vma(obj, vma)   the object's VMA list
      collapse(obj) -> int           merge a backing with one child into it (pages it lacks
                                    move up), repeated while possible; returns pages moved
    The tree itself is lib/xarray.py's; nodes come from the "radix_tree_node" cache.
    `hooks` (set by mm/reclaim): value_put(entry) when a swap value entry leaves a tree
    (destroy, page_remove); value_replaced(obj, idx, old, pfn) when a folio is inserted
    over a value entry other than ZERO (a page-cache refault over its shadow).  insert
    refuses to overwrite a swap value (-2: the fault must swap the page in).
    """

    def __init__(self, arena: Any, cpu: int, mm: Any, obj_cache: Any, xa: Any, obj_lock: Any, rcu: Any) -> None:
        self.arena, self.cpu = arena, cpu
        self.ext: Any = None                    # VM.ext (memory.py's hooks: obj_free)
        q, u32, at = arena.u64, arena.u32, arena.atomic
        fetch_add, load, cas64 = at.fetch_add64, at.load64, at.cas64
        from types import SimpleNamespace

        hooks = self.hooks = SimpleNamespace(value_put=None, value_replaced=None)
        PM8 = arena.off("pagemeta") >> 3
        mw = PAGE_META_SIZE >> 3
        i_map, i_idx = P_MAPPING >> 3, P_INDEX >> 3
        cache_alloc, cache_free = obj_cache.alloc, obj_cache.free
        zero_rec = bytes(128)
        u8 = arena.u8
        down_write, up_write = obj_lock.lock, obj_lock.unlock        # &obj->lock (spin)
        xa_load, xa_store, xa_erase, xa_erase_range = xa.load, xa.store, xa.erase, xa.erase_range
        tp = point_fn()
        # VM folios are order-0 pages: the tree's references leave in batches
        # (free_pages_bulk = folios_put: one pcp hold, LRU unlinks under one lru_lock hold)
        folios_put = mm.free_pages_bulk

        ev_collapse = VE.vm_event_base(arena, cpu) + VE.SHADOW_COLLAPSE
        call_rcu = rcu.call_rcu
        rcu_read_lock, rcu_read_unlock = rcu.read_lock, rcu.read_unlock
        phys = arena.off("physmem")

        def off_of(addr: int) -> int:
            return phys + (addr - VBASE)

        def addr_of(off: int) -> int:
            return VBASE + (off - phys)

        def alloc(typ: int, size: int, flags: int = 0, file_id: int = -1) -> int:
            addr = cache_alloc()
            if not addr:
                return 0
            o = off_of(addr)
            u8[o : o + 128] = zero_rec
            u32[(o + O_TYPE) >> 2] = typ | flags << 16
            u32[(o + O_FILE) >> 2] = file_id + 1
            q[(o + O_REF) >> 3] = 1
            q[(o + O_SIZE) >> 3] = size
            return o

        def get(o: int) -> None:
            fetch_add(o + O_REF, 1)

        def try_get(o: int) -> bool:
            """A reference on o unless its count is 0 already (being destroyed)."""
            c = load(o + O_REF)
            while c:
                seen = cas64(o + O_REF, c, c + 1)
                if seen == c:
                    return True
                c = seen
            return False

        def collapse_only_child(o: int) -> None:
            """o's references fell to one: if that is a single shadow child's, the child
            absorbs o.  The child is read and pinned under o's lock -- it unlinks itself
            from o's list under that lock before it can be freed, and a child read
            without it may be freed and reused meanwhile (the stress test's collapse of
            a garbage object) -- and unpinned after."""
            down_write(o + O_LOCK)
            c = q[(o + O_CHILDREN) >> 3]
            pinned = bool(c) and u32[(o + O_NR_CHILDREN) >> 2] == 1 and try_get(c)
            up_write(o + O_LOCK)
            if not pinned:
                return
            try:
                if collapsible(c, o):
                    collapse(c, True)
            finally:
                put(c)

        def free_record(o: int) -> None:
            cache_free(addr_of(o))

        def not_ours(b: int, e: int) -> bool:
            """Folio entry e (struct page at u64 index b), in a tree whose object its
            mapping does not name: is the copy another's?  A collapse that died between
            its store into the child and its erase from the backing (vm:collapse:stored)
            leaves the entry in both trees, the reference and the mapping the child's;
            before recovery erases the backing's copy, a live CPU's collapse and destroy
            of the backing may meet it.  It is another's when the object its mapping
            names holds it at its index, or when no object does (the copy outlived the
            folio's free).  Not another's: the store never landed (the collapse died at
            step 1 with the mapping already set), so the copy is still the backing's."""
            m = q[b + i_map] & ~3
            return not m or xa_load(m + O_TREE, q[b + i_idx]) == e

        def ours(o: int, e: int) -> bool:
            """Is folio entry e of o's tree o's own (its reference o's), not another's
            copy (not_ours)?"""
            b = PM8 + (e >> 2) * mw
            return q[b + i_map] & ~3 == o or not not_ours(b, e)

        def untree(o: int, entries: Any) -> list[int]:
            """Entries that left o's tree, (index, entry) pairs: each folio's mapping and
            index cleared (its tree reference is the caller's to put), each swap value's
            reference dropped.  Returns the folios' pfns.  A copy another object owns
            (`not_ours`) is left alone: neither put nor cleared."""
            pfns: list[int] = []
            for _idx, e in entries:
                if not e & 3:                              # a folio
                    b = PM8 + (e >> 2) * mw
                    if not ours(o, e):
                        continue
                    q[b + i_map] = 0
                    q[b + i_idx] = 0
                    pfns.append(e >> 2)
                elif e != XA_ZERO and hooks.value_put is not None:
                    hooks.value_put(e)
            return pfns

        def mark_dead(o: int, r: int = -1) -> int:
            """destroy()'s first half: the shared policy goes (mm/numa), o is marked dead
            and cut from its backing under its lock (a collapse racing with this sees it
            dead and leaves it alone); returns the backing, whose reference o still holds.
            With a vm_obj_destroy record r the backing is named (a3) before the cut: once
            cut, only the record knows it (a second mark_dead returns 0)."""
            of = self.ext.obj_free if self.ext is not None else None
            if of is not None:
                of(o)
            down_write(o + O_LOCK)
            u32[(o + O_TYPE) >> 2] |= OBJF_DEAD << 16
            back = q[(o + O_BACKING) >> 3]
            if r >= 0:
                q[r + 4] = back
            q[(o + O_BACKING) >> 3] = 0
            up_write(o + O_LOCK)
            return back

        def destroy(o: int) -> None:
            """The last reference went: mark o dead (mark_dead), empty its tree, drop its
            reference on the backing, free it after RCU."""
            back = mark_dead(o)
            pfns = untree(o, xa.drain(o + O_TREE))
            if pfns:
                folios_put(pfns)                           # the tree's references, one batch
            if back:
                down_write(back + O_LOCK)
                unlink_child(back, o)
                up_write(back + O_LOCK)
                put(back)
            call_rcu(free_record, o)

        # Robust mode (mm/intent.py; normal runs keep destroy above): a vm_obj_destroy
        # record, and the tree emptied one entry at a time, so recovery can finish it
        # from its step (mm/vm/recover.py).  Words: a0 the object, a1/a2 the entry being
        # taken (index, entry), a3 the backing; step 1 marked dead and cut from its
        # backing, 2 that entry taken (erased, its reference the record's; a4 = 1 if it
        # is a folio of o's own, decided before the erase: untree's clearing of its
        # mapping would hide that from a recovery), 3 the tree
        # empty, cut from the backing's child list, 4 the backing's reference dropped
        # (its own destroy, if that was its last, continues in this record: a0 becomes
        # the backing), 5 the record freed (RCU).  Each step is stored before the
        # action it names when that action releases something (a kill in between leaks,
        # never releases twice).
        lg = mm.log if robust_mode(arena.config) else None
        begin, log_end = (lg.begin, lg.end) if lg is not None else (None, None)
        log_fp = lg.fp if lg is not None else None
        first_entry, xa_find = xa.first, xa.find
        free_pages = mm.free_pages

        def destroy_steps(o: int, step: int, r: int, idx: int = 0, e: int = 0, back: int = 0,
                          own: int = 0) -> None:
            """destroy() of robust mode from `step` (recovery resumes here with r = -1;
            `own` the record's a4, `back` its a3).  Recovery's reading of a chain's
            hand-over (below: a0 := the backing, then step 0; a3 still names it): a3 ==
            a0 means o's own destroy had not begun (an object is never its own backing);
            at step 4 or 5 a backing left with no reference and not dead is the next
            one, its last reference o's (before the drop it holds ours)."""
            if r < 0 and back == o:
                step, back = 0, 0
            while o:
                if step < 1:
                    # resumed at step 0 after the cut: the record's a3 (mark_dead stores
                    # it first; 0 when none was read)
                    back = mark_dead(o, r) or back
                    if r >= 0:
                        q[r + 7] = 1
                if step == 2:                          # resume: that entry, if still there
                    if xa_load(o + O_TREE, idx) == e:
                        xa_erase(o + O_TREE, idx)      # (a value's put is after step 1: not done)
                    if e and not e & 3 and own:        # ours, its mapping maybe cleared already
                        b = PM8 + (e >> 2) * mw
                        q[b + i_map] = 0
                        q[b + i_idx] = 0
                        pfns = [e >> 2]
                    else:
                        pfns = untree(o, [(idx, e)]) if e and e & 3 else []
                    for pfn in pfns:
                        free_pages(pfn, 0)
                if step < 3:
                    while True:
                        got = first_entry(o + O_TREE)
                        if got is None:
                            break
                        idx, e = got
                        if r >= 0:
                            q[r + 2] = idx
                            q[r + 3] = e
                            q[r + 5] = 1 if not e & 3 and ours(o, e) else 0
                            q[r + 7] = 2
                        xa_erase(o + O_TREE, idx)
                        pfns = untree(o, [(idx, e)]) if not e & 3 else []
                        if r >= 0:
                            q[r + 7] = 1               # the put follows (a kill from here leaks it)
                        if e & 3:
                            untree(o, [(idx, e)])      # a swap value's reference dropped
                        for pfn in pfns:
                            free_pages(pfn, 0)
                    if back:
                        down_write(back + O_LOCK)
                        unlink_child(back, o)
                        up_write(back + O_LOCK)
                    if r >= 0:
                        q[r + 7] = 3
                nxt = 0
                if step < 4 and back:
                    if r >= 0:
                        q[r + 7] = 4
                    old = fetch_add(back + O_REF, (1 << 64) - 1)
                    if old == 1:
                        nxt = back                     # its last reference: destroyed below, same record
                    elif old == 2:
                        collapse_only_child(back)
                elif r < 0 and back and not load(back + O_REF) and not (u32[(back + O_TYPE) >> 2] >> 16) & OBJF_DEAD:
                    nxt = back                         # resumed past the drop, which was its last
                if step < 5:
                    if r >= 0:
                        q[r + 7] = 5
                    call_rcu(free_record, o)
                o, step, back = nxt, 0, 0
                if r >= 0 and o:
                    q[r + 1] = o
                    q[r + 7] = 0

        if begin is not None:
            def destroy(o: int) -> None:
                """destroy() inside a vm_obj_destroy record (robust mode)."""
                r = begin(_OP_DESTROY, o)
                try:
                    destroy_steps(o, 0, r)
                finally:
                    log_end(r)

        def put(o: int) -> None:
            """vm_object_put(): the last reference destroys the object; when only one
            reference is left and it is a single shadow child's (the other side of a fork
            went away), that child absorbs o (collapse), as the C kernel's put does."""
            old = fetch_add(o + O_REF, (1 << 64) - 1)
            if old == 1:
                destroy(o)
            elif old == 2:
                collapse_only_child(o)
            elif old == 0:
                fetch_add(o + O_REF, 1)
                raise AeroSyncError(f"cpu{cpu}: vm_object {o:#x}: put with refcount 0")

        def lookup(o: int, idx: int) -> int:
            return xa_load(o + O_TREE, idx)

        def chain_lookup(o: int, idx: int) -> tuple[int, int, int]:
            """(holder, index in holder, entry): the first object down the chain with an
            entry at the corresponding index; ZERO markers stop the walk.  The caller
            pins o (a VMA of it, locked); the objects below are pinned by nothing it
            holds -- a collapse on another CPU may splice one out and free it meanwhile
            -- so the walk is an RCU read-side section (objects are freed through
            call_rcu).  The holder returned may be gone by the time the caller looks:
            a folio found is re-checked against it by number (map_account)."""
            o0, idx0 = o, idx
            for attempt in range(1 << 20):
                if attempt > 8:                        # a collapse's holder is slow: wait outside
                    call_wait_hook()                   # the section (a park for recovery, IPIs)
                    time.sleep(0)
                o, idx = o0, idx0
                passed: list[tuple[int, int]] = []
                rcu_read_lock()
                try:
                    while o:
                        seq = u32[(o + O_TYPE) >> 2] >> _SEQ_SHIFT
                        passed.append((o, seq))
                        e = xa_load(o + O_TREE, idx)
                        if e:
                            return o, idx, e
                        if tp:
                            tp("obj:chain_passed")
                        idx += q[(o + O_BACKING_OFF) >> 3]
                        o = q[(o + O_BACKING) >> 3]
                        if len(passed) > 64:
                            raise AeroSyncError(f"cpu{cpu}: vm_object chain longer than 64 (a cycle?)")
                    if all(not seq & 1 and u32[(x + O_TYPE) >> 2] >> _SEQ_SHIFT == seq for x, seq in passed):
                        return 0, idx, 0
                finally:
                    rcu_read_unlock()
            raise AeroSyncError(f"cpu{cpu}: vm_object {o0:#x}: a collapse kept its chain moving")

        def insert_locked(o: int, idx: int, pfn: int, anon: bool) -> int:
            """insert() with o's lock held for write by the caller."""
            cur = xa_load(o + O_TREE, idx)
            if is_folio_entry(cur):
                return entry_pfn(cur)
            if cur & 1 and cur != XA_ZERO and (cur >> 1) & 3 == 2:
                return -2                                  # a swap entry (mm/reclaim)
            # mapping and index before the entry is published (__filemap_add_folio): a
            # lock-free reader that finds the folio (try-get, then "still in o at idx?")
            # must never see it half set up -- it would retry for as long as this CPU
            # stays between the store and the meta (the workingset hook, a preemption)
            b = PM8 + pfn * mw
            q[b + i_map] = o | (PAGE_MAPPING_ANON if anon else 0)
            q[b + i_idx] = idx
            if xa_store(o + O_TREE, idx, folio_entry(pfn)) < 0:
                q[b + i_map] = q[b + i_idx] = 0
                return -1
            if tp:
                tp("obj:inserted")
            if cur & 1 and cur != XA_ZERO and hooks.value_replaced is not None:
                hooks.value_replaced(o, idx, cur, pfn)
            fetch_add(o + O_NR_PAGES, 1)
            return pfn

        nomem = xa.nomem

        def insert(o: int, idx: int, pfn: int, anon: bool) -> int:
            """insert_locked under o's lock; a store that found no node (its allocation
            may not reclaim under the lock) is retried after xas_nomem made one
            allocatable outside it (a bounded number of times: then ENOMEM)."""
            for _ in range(_NOMEM_RETRIES):
                down_write(o + O_LOCK)
                try:
                    got = insert_locked(o, idx, pfn, anon)
                finally:
                    up_write(o + O_LOCK)
                if got != -1 or nomem is None or not nomem():
                    return got
            return got

        def remove_locked(o: int, idx: int, pfn: int) -> bool:
            if xa_load(o + O_TREE, idx) != folio_entry(pfn):
                return False
            xa_erase(o + O_TREE, idx)
            b = PM8 + pfn * mw
            q[b + i_map] = 0
            q[b + i_idx] = 0
            fetch_add(o + O_NR_PAGES, _U64)
            return True

        def remove(o: int, idx: int, pfn: int) -> bool:
            down_write(o + O_LOCK)
            try:
                return remove_locked(o, idx, pfn)
            finally:
                up_write(o + O_LOCK)

        def link_child(back: int, child: int) -> None:
            q[(child + O_SIBLING) >> 3] = q[(back + O_CHILDREN) >> 3]
            q[(back + O_CHILDREN) >> 3] = child
            u32[(back + O_NR_CHILDREN) >> 2] += 1

        def unlink_child(back: int, child: int) -> None:
            prev, cur = 0, q[(back + O_CHILDREN) >> 3]
            while cur and cur != child:
                prev, cur = cur, q[(cur + O_SIBLING) >> 3]
            if not cur:
                return
            nxt = q[(child + O_SIBLING) >> 3]
            if prev:
                q[(prev + O_SIBLING) >> 3] = nxt
            else:
                q[(back + O_CHILDREN) >> 3] = nxt
            q[(child + O_SIBLING) >> 3] = 0
            u32[(back + O_NR_CHILDREN) >> 2] -= 1

        def shadow(o: int, offset: int, size: int) -> int:
            """A new anonymous shadow of o (vm_object_shadow): it takes a reference on o."""
            s = alloc(OBJ_ANON, size)
            if not s:
                return 0
            get(o)
            q[(s + O_BACKING) >> 3] = o
            q[(s + O_BACKING_OFF) >> 3] = offset
            u32[(s + O_DEPTH) >> 2] = u32[(o + O_DEPTH) >> 2] + 1
            down_write(o + O_LOCK)
            link_child(o, s)
            up_write(o + O_LOCK)
            return s

        def link_vma(o: int, vma: int) -> None:
            from aerosync.mm.vm.vma import V_OBJ_NEXT, V_OBJ_PREV

            down_write(o + O_LOCK)
            head = q[(o + O_VMA_HEAD) >> 3]
            q[(vma + V_OBJ_NEXT) >> 3] = head
            q[(vma + V_OBJ_PREV) >> 3] = 0
            if head:
                q[(head + V_OBJ_PREV) >> 3] = vma
            q[(o + O_VMA_HEAD) >> 3] = vma
            up_write(o + O_LOCK)

        def unlink_vma(o: int, vma: int) -> None:
            from aerosync.mm.vm.vma import V_OBJ_NEXT, V_OBJ_PREV

            down_write(o + O_LOCK)
            nxt, prv = q[(vma + V_OBJ_NEXT) >> 3], q[(vma + V_OBJ_PREV) >> 3]
            if prv:
                q[(prv + V_OBJ_NEXT) >> 3] = nxt
            elif q[(o + O_VMA_HEAD) >> 3] == vma:
                q[(o + O_VMA_HEAD) >> 3] = nxt
            if nxt:
                q[(nxt + V_OBJ_PREV) >> 3] = prv
            q[(vma + V_OBJ_NEXT) >> 3] = q[(vma + V_OBJ_PREV) >> 3] = 0
            up_write(o + O_LOCK)

        def vmas_of(o: int) -> list[int]:
            from aerosync.mm.vm.vma import V_OBJ_NEXT

            out, v = [], q[(o + O_VMA_HEAD) >> 3]
            while v and len(out) < 1 << 20:
                out.append(v)
                v = q[(v + V_OBJ_NEXT) >> 3]
            return out

        def children_of(o: int) -> list[int]:
            out, c = [], q[(o + O_CHILDREN) >> 3]
            while c and len(out) < 1 << 20:
                out.append(c)
                c = q[(c + O_SIBLING) >> 3]
            return out

        def collapsible(o: int, back: int) -> bool:
            """back can be merged into its child o: o alive and backed by back; back
            anonymous, private, alive, with o as its only child and no other reference
            (no VMA maps it directly).  Decided for real under both locks (collapse)."""
            tb = u32[(back + O_TYPE) >> 2]
            return (not (u32[(o + O_TYPE) >> 2] >> 16) & OBJF_DEAD and q[(o + O_BACKING) >> 3] == back
                    and (tb & 0xFFFF) == OBJ_ANON and not (tb >> 16) & (OBJF_SHARED | OBJF_DEAD)
                    and load(back + O_REF) == 1 and u32[(back + O_NR_CHILDREN) >> 2] == 1
                    and q[(back + O_CHILDREN) >> 3] == o and not q[(back + O_VMA_HEAD) >> 3])

        def collapse(o: int, pinned: bool = False) -> int:
            """vm_object_collapse(): while o's backing is collapsible into o, move the
            entries o lacks (inside o's range) up into o, splice the backing out of the
            chain (o takes its place under the next object down) and free it.  Takes o's
            lock then the backing's (top-down).  A ZERO marker or a private copy in o
            hides the backing's entry, which is freed with the backing.  Returns the
            entries moved; stops early (consistently) if a tree node cannot be had.
            `pinned`: the caller holds a reference on o (collapse_only_child), which the
            vm_collapse record says (a1's low bit: objects are 128-byte aligned) so that
            recovery drops it for a dead caller."""
            moved = 0
            for _ in range(64):
                back = q[(o + O_BACKING) >> 3]
                if not back or not collapsible(o, back):
                    break
                r = begin(_OP_COLLAPSE, o, back | pinned) if begin is not None else -1
                try:
                    ok, n, nb = move_up(o, back, r)
                    moved += n
                    if not ok:
                        break
                    splice_tail(o, back, nb)
                    if r >= 0:
                        q[r + 7] = 4                       # back's put follows (a kill from here leaks it)
                    put(back)          # o's reference on back was its last: back (now empty of
                    #                    anything reachable) is destroyed
                finally:
                    if r >= 0:
                        log_end(r)
                q[ev_collapse] += 1
            return moved

        def move_up(o: int, back: int, r: int) -> tuple[bool, int, int]:
            """One collapse step under o's lock then back's: the entries o lacks move up
            from back (each logged in the vm_collapse record r: steps 1-2), then the
            splice (step 3, a3 = nb, a4 = o's new offset: recovery redoes it whole).
            Returns (spliced, entries moved, nb: back's backing, now o's)."""
            moved = 0
            down_write(o + O_LOCK)
            down_write(back + O_LOCK)
            ok = collapsible(o, back)
            nb = 0
            try:
                if ok:
                    seq_bump(o)                    # odd: entries move (chain_lookup)
                    off = q[(o + O_BACKING_OFF) >> 3]
                    size = q[(o + O_SIZE) >> 3]
                    for bidx, e in list(xa.items(back + O_TREE)):
                        idx = bidx - off
                        if idx < 0 or idx >= size or xa_load(o + O_TREE, idx):
                            continue
                        folio = is_folio_entry(e)
                        if folio:
                            b = PM8 + entry_pfn(e) * mw
                            if q[b + i_map] & ~3 != back and not_ours(b, e):
                                continue           # another's copy: destroy leaves it too
                        if r >= 0:                 # vm_collapse: this entry's move in flight
                            q[r + 3] = bidx
                            q[r + 4] = e
                            q[r + 5] = idx
                            q[r + 7] = 1
                        if folio:                  # the folio says o before o's tree has it
                            #                        (insert's order): a lock-free
                            q[b + i_map] = o | PAGE_MAPPING_ANON    # lookup finding it in either
                            q[b + i_idx] = idx     # tree rechecks mapping/index and retries
                        if xa_store(o + O_TREE, idx, e) < 0:
                            if folio:              # no node: it stays back's
                                q[b + i_map] = back | PAGE_MAPPING_ANON
                                q[b + i_idx] = bidx
                            if r >= 0:
                                q[r + 7] = 0
                            ok = False             # stop here, both trees consistent
                            break
                        if folio:
                            fetch_add(o + O_NR_PAGES, 1)
                            fetch_add(back + O_NR_PAGES, _U64)
                        if r >= 0:
                            q[r + 7] = 2
                            if log_fp is not None:
                                log_fp(P_COLLAPSE_STORED)
                        xa_erase(back + O_TREE, bidx)
                        if r >= 0:
                            q[r + 7] = 0
                        moved += 1
                if ok:
                    nb = q[(back + O_BACKING) >> 3]
                    noff = off + q[(back + O_BACKING_OFF) >> 3]
                    if r >= 0:                     # the splice: recovery redoes it whole
                        q[r + 4] = nb
                        q[r + 5] = noff
                        q[r + 7] = 3
                    q[(o + O_BACKING) >> 3] = nb            # back's reference on nb is o's now
                    q[(o + O_BACKING_OFF) >> 3] = noff
                    q[(back + O_BACKING) >> 3] = 0
                    q[(back + O_CHILDREN) >> 3] = 0
                    u32[(back + O_NR_CHILDREN) >> 2] = 0
            finally:
                if u32[(o + O_TYPE) >> 2] >> _SEQ_SHIFT & 1:
                    seq_bump(o)                    # even: the chain is whole again
                up_write(back + O_LOCK)
                up_write(o + O_LOCK)
            return ok, moved, nb

        def splice_tail(o: int, back: int, nb: int) -> None:
            """A collapse's splice, after the locks: o takes back's place on nb's child
            list and the depths below o follow.  Idempotent (recovery repeats it)."""
            if nb:
                down_write(nb + O_LOCK)
                kids = children_of(nb)
                if back in kids:
                    unlink_child(nb, back)
                if o not in kids:
                    link_child(nb, o)
                up_write(nb + O_LOCK)
            set_depth(o, u32[(nb + O_DEPTH) >> 2] + 1 if nb else 0)

        def seq_bump(o: int) -> None:
            """o's collapse sequence + 1 (o's lock held): odd while entries move into it."""
            w = u32[(o + O_TYPE) >> 2]
            u32[(o + O_TYPE) >> 2] = (w & ~_SEQ_MASK & 0xFFFF_FFFF) | ((w + (1 << _SEQ_SHIFT)) & _SEQ_MASK)

        def set_depth(o: int, depth: int) -> None:
            """Depth fields of o and its descendants after a collapse shortened the chain
            (each object's field under its own lock, one at a time)."""
            stack = [(o, depth)]
            while stack:
                x, d = stack.pop()
                down_write(x + O_LOCK)
                u32[(x + O_DEPTH) >> 2] = d
                kids = children_of(x)
                up_write(x + O_LOCK)
                stack.extend((c, d + 1) for c in kids)

        def page_remove(o: int, first: int, last: int, zero: bool = False) -> int:
            """vm_object_page_remove(): take the folios at [first, last) out of o's tree and
            drop the tree's reference on each (callers have unmapped them first).  Value
            entries there are dropped too.  Returns folios removed.

            The range is zapped (and, for munmap, mapped by no VMA), so nothing inserts
            into it; the lock is needed only against the other writers of the tree
            (faults at other indices, reclaim's replace_entry, a steal, a collapse).  It is therefore held for one
            batch of PAGE_REMOVE_BATCH entries at a time, not for the whole range (as
            Linux's zap_pte_range holds each PTE table's lock, never an anon_vma lock):
            a fault of another CPU into the same object waits for one batch at most.
            Each entry leaves the tree atomically under the lock (O1/O5 hold at every
            release); each batch's references go to folios_put between two holds.

            `zero` (MADV_DONTNEED over a backing, after mark_zero filled the range's
            holes): each entry is replaced by a ZERO marker rather than erased, so the
            range never has a hole between two holds -- a collapse on another CPU
            moves its backing's entries into the child's holes, and would bring back
            the data the advice discarded."""
            if begin is not None:
                return page_remove_logged(o, first, last - 1, zero)
            n_out = 0
            idx = first
            last -= 1
            root = o + O_TREE
            while idx <= last:
                down_write(o + O_LOCK)
                try:
                    if zero:
                        got, idx = zero_batch(root, idx, last)
                    else:
                        got, idx = xa_erase_range(root, idx, last, PAGE_REMOVE_BATCH)
                    pfns = untree(o, got)
                    if pfns:
                        fetch_add(o + O_NR_PAGES, -len(pfns) & _U64)
                finally:
                    up_write(o + O_LOCK)
                if pfns:
                    # the tree's references, a batch at a time between the holds: the
                    # gap lets a CPU spinning for the lock take it (the spinlock is not
                    # queued: an unlock followed at once by a lock would keep it from it)
                    n_out += len(pfns)
                    folios_put(pfns)
                if idx <= last and tp:
                    tp("obj:remove_batch")
            return n_out

        def zero_batch(root: int, idx: int, last: int) -> tuple[list[tuple[int, int]], int]:
            """Up to PAGE_REMOVE_BATCH entries of [idx, last] replaced by ZERO markers (the
            object's lock held; a slot that exists needs no node): (what they were, the
            next index to look at)."""
            got: list[tuple[int, int]] = []
            for _ in range(PAGE_REMOVE_BATCH):             # (markers met count too: a bounded hold)
                f = xa_find(root, idx, last)
                if f is None:
                    return got, last + 1
                idx, e = f
                if e != XA_ZERO:
                    xa_store(root, idx, XA_ZERO)
                    got.append((idx, e))
                idx += 1
            return got, idx

        def page_remove_logged(o: int, idx: int, last: int, zero: bool = False) -> int:
            """page_remove of robust mode: one entry at a time under a vm_obj_remove
            record (a0 the object, a1/a2 the entry, a4 = 1 if it becomes a ZERO marker),
            so a death inside an erase (its node frees: slab, RCU) loses no entry's
            accounting or reference -- xa_erase_range's batch would be gone from the
            tree with neither done.  Step 1 is stored before the erase, 2 once the entry
            is out and counted, 0 before its put (a kill in between leaks, never puts
            twice: mm/vm/recover.py)."""
            root = o + O_TREE
            n_out = 0
            r = begin(_OP_REMOVE, o)
            q[r + 5] = int(zero)
            try:
                while True:
                    down_write(o + O_LOCK)
                    try:
                        got = xa_find(root, idx, last)
                        if got is None:
                            break
                        idx, e = got
                        if zero and e == XA_ZERO:
                            idx += 1
                            continue
                        q[r + 2] = idx
                        q[r + 3] = e
                        q[r + 7] = 1
                        if zero:
                            xa_store(root, idx, XA_ZERO)
                        else:
                            xa_erase(root, idx)
                        pfns = untree(o, [(idx, e)])
                        if pfns:
                            fetch_add(o + O_NR_PAGES, _U64)
                        q[r + 7] = 2
                    finally:
                        up_write(o + O_LOCK)
                    if pfns:
                        if log_fp is not None:
                            log_fp(P_REMOVE_TAKEN)
                        q[r + 7] = 0
                        n_out += 1
                        free_pages(pfns[0], 0)
                    else:
                        q[r + 7] = 0
                    idx += 1
            finally:
                log_end(r)
            return n_out

        def remove_finish(o: int, idx: int, e: int, step: int, zero: bool = False) -> int:
            """Recovery of a vm_obj_remove record: at step 1 the entry is erased (or,
            `zero`, replaced by a ZERO marker) if the tree still has it, taken out
            (mapping and index cleared, or its swap value dropped) and counted; at steps
            1 and 2 its folio's reference is put.  Returns pages put."""
            if step == 1:
                if xa_load(o + O_TREE, idx) == e:
                    if zero:
                        xa_store(o + O_TREE, idx, XA_ZERO)
                    else:
                        xa_erase(o + O_TREE, idx)
                pfns = untree(o, [(idx, e)])
                if pfns:
                    fetch_add(o + O_NR_PAGES, _U64)
            else:
                pfns = [] if e & 3 else [e >> 2]
            for pfn in pfns:
                free_pages(pfn, 0)
            return len(pfns)

        def collapse_finish(o: int, back: int, bidx: int, e: int, idx: int, step: int) -> None:
            """Recovery of a vm_collapse record (a1 = back | pinned): _collapse_finish,
            then the dead caller's reference on o dropped if it held one."""
            if step >= 3:
                _splice_finish(o, back & ~1, e, idx, step)
            else:
                _collapse_finish(o, back & ~1, bidx, e, idx, step)
            if back & 1:
                put(o)

        def _splice_finish(o: int, back: int, nb: int, noff: int, step: int) -> None:
            """Recovery of a vm_collapse record at step 3 (every entry moved, the splice
            under way: a3 = nb, a4 = o's new backing offset) or 4 (spliced, back's put
            under way): the splice is redone whole (its stores, the child list, the
            depths) and, at step 3, o's reference on back put -- back's last: it is
            destroyed.  At step 4 the put is not repeated (a kill between the step and
            the put leaks it: settle_counts)."""
            if u32[(o + O_TYPE) >> 2] >> _SEQ_SHIFT & 1:
                seq_bump(o)
            q[(o + O_BACKING) >> 3] = nb
            q[(o + O_BACKING_OFF) >> 3] = noff
            q[(back + O_BACKING) >> 3] = 0
            q[(back + O_CHILDREN) >> 3] = 0
            u32[(back + O_NR_CHILDREN) >> 2] = 0
            splice_tail(o, back, nb)
            if step == 3:
                put(back)

        def _collapse_finish(o: int, back: int, bidx: int, e: int, idx: int, step: int) -> None:
            """Recovery of a vm_collapse record (the world stopped): the entry's move is
            finished if its store into o landed (counts moved, back's copy erased), else
            undone (the folio says back again).  The rest of the collapse is left: a
            chain collapsed part-way is consistent, as after collapse's own ENOMEM.  At
            any step (0 too: the sequence is bumped before the first move is logged) o's
            collapse sequence is made even again, or chain walks through o would wait
            for ever."""
            if u32[(o + O_TYPE) >> 2] >> _SEQ_SHIFT & 1:
                seq_bump(o)
            if not step:
                return
            folio = is_folio_entry(e)
            if step == 1:
                if xa_load(o + O_TREE, idx) != e:
                    if folio and xa_load(back + O_TREE, bidx) == e:    # (still back's: not freed since)
                        b = PM8 + entry_pfn(e) * mw
                        q[b + i_map] = back | PAGE_MAPPING_ANON
                        q[b + i_idx] = bidx
                    return
                if folio:
                    fetch_add(o + O_NR_PAGES, 1)
                    fetch_add(back + O_NR_PAGES, _U64)
            if xa_load(back + O_TREE, bidx) == e and not (folio and q[PM8 + entry_pfn(e) * mw + i_map] & ~3 == back):
                xa_erase(back + O_TREE, bidx)          # (unless back was freed and reused: its own entry)

        def mark_zero(o: int, first: int, last: int) -> None:
            """Hide what o's backing chain holds at [first, last): ZERO markers (a
            private mapping's MADV_DONTNEED must read zeros afterwards)."""
            down_write(o + O_LOCK)
            try:
                for idx in range(first, last):
                    if not xa_load(o + O_TREE, idx) and xa_store(o + O_TREE, idx, XA_ZERO) < 0:
                        raise AeroSyncError(f"cpu{cpu}: vm_object {o:#x}: no memory for a ZERO marker")
            finally:
                up_write(o + O_LOCK)

        def link_file_vma(o: int, vma: int) -> None:
            """The file's i_mmap: every VMA mapping the file, linked through V_FNEXT/V_FPREV."""
            from aerosync.mm.vm.vma import V_FNEXT, V_FPREV

            down_write(o + O_LOCK)
            head = q[(o + O_VMA_HEAD) >> 3]
            q[(vma + V_FNEXT) >> 3] = head
            q[(vma + V_FPREV) >> 3] = 0
            if head:
                q[(head + V_FPREV) >> 3] = vma
            q[(o + O_VMA_HEAD) >> 3] = vma
            up_write(o + O_LOCK)

        def unlink_file_vma(o: int, vma: int) -> None:
            from aerosync.mm.vm.vma import V_FNEXT, V_FPREV

            down_write(o + O_LOCK)
            nxt, prv = q[(vma + V_FNEXT) >> 3], q[(vma + V_FPREV) >> 3]
            if prv:
                q[(prv + V_FNEXT) >> 3] = nxt
            elif q[(o + O_VMA_HEAD) >> 3] == vma:
                q[(o + O_VMA_HEAD) >> 3] = nxt
            if nxt:
                q[(nxt + V_FPREV) >> 3] = prv
            q[(vma + V_FNEXT) >> 3] = q[(vma + V_FPREV) >> 3] = 0
            up_write(o + O_LOCK)

        self.alloc, self.get, self.put, self.lookup, self.chain_lookup = alloc, get, put, lookup, chain_lookup
        self.destroy_steps, self.free_record = destroy_steps, free_record
        self.insert, self.insert_locked, self.remove, self.remove_locked = insert, insert_locked, remove, remove_locked
        self.shadow = shadow
        self.link_vma, self.unlink_vma, self.vmas_of, self.children_of = link_vma, unlink_vma, vmas_of, children_of
        self.collapse, self.off_of, self.addr_of = collapse, off_of, addr_of
        self.nomem = nomem
        self.xa_load, self.xa_store, self.xa_insert = xa_load, xa_store, xa.insert
        self.xa_insert_leaf = xa.insert_leaf
        self.page_remove, self.mark_zero, self.remove_finish = page_remove, mark_zero, remove_finish
        self.collapse_finish = collapse_finish
        self.link_file_vma, self.unlink_file_vma = link_file_vma, unlink_file_vma
