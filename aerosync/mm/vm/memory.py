"""Page faults, unmapping and page-table copying: the heart of the VM.

Models: arch/x86/mm/fault.c (do_user_addr_fault: the per-VMA lock try, then mmap_lock,
SIGSEGV with SEGV_MAPERR / SEGV_ACCERR), mm/memory.c (handle_mm_fault, handle_pte_fault,
do_anonymous_page, do_wp_page / wp_page_copy / wp_page_reuse / wp_page_shared,
do_read_fault with do_fault_around, do_cow_fault, do_shared_fault, zap_pte_range,
unmap_page_range, free_pgtables / free_pgd_range with floor and ceiling,
copy_page_range / copy_present_pte for fork), mm/mmu_gather.c; the seed's speculative
page fault (SPF); the C kernel's object faults (anon_obj_fault, shadow fault: walk down
the chain, steal or copy) through vm_object.py.  Unit: one fault of one page; one
unmapped range.

Fault locking ([vm] fault_locking):
  mmap_lock    down_read(mmap_lock), find_vma, handle the fault, up_read.
  per_vma      lock_vma_under_rcu (maple walk under RCU, vma_start_read); on success
               the fault runs under that VMA's read lock only (vma_lock_success), on
               failure it falls back to mmap_lock (vma_lock_abort / vma_lock_miss), and a
               handler that needs more (VM_FAULT_RETRY: e.g. a shadow collapse) retries
               under mmap_lock (vma_lock_retry).
  speculative  the seed's SPF: snapshot mm->mmap_seq (even), find the VMA under RCU, copy
               its fields, and fault with no mm or VMA lock; the snapshot is validated
               under the object lock before a page enters an object and under the PTE
               lock before a PTE is installed -- a change means abort (aerosync_spf_abort)
               and a retry under mmap_lock.  A missing object, a shadow chain, a file
               read, or anything else that would need a lock falls back at once.

Lock order inside a fault: (mmap_lock or vm_lock) -> obj->lock (insert into a tree; a
write fault of page_fault1's kind inserting into an existing leaf takes that leaf's
lock instead, lib/xarray.py xa_insert_leaf, innermost and released before anything
else is taken) -> mm->page_table_lock (populate an upper-level entry) -> ptlock
(install the PTE); the
PTE lock is never held while an object lock is taken, so a fault that must update an
object drops the PTE lock first and re-checks the entry (pte_same) after.  A TLB
shootdown may be issued under the PTE lock (ptep_clear_flush in wp_page_copy): CPUs
waiting for that PTE lock answer the IPI from their wait loop.

Page references: a folio in an object's tree holds one reference for the tree; every
PTE mapping it holds one more and one mapcount (the zero page, _PAGE_SPECIAL, holds
none).  A COW copy enters the top object before its PTE replaces the old page's; if
that PTE changed meanwhile (pte_same fails: reclaim aged or unmapped it), the copy
leaves the tree again (object lock only, the PTE lock released), so at rest a PTE and
its VMA's object chain never name different pages (R3).  Counters: mm rss
(MM_ANONPAGES / MM_FILEPAGES / MM_SHMEMPAGES / MM_SWAPENTS: this CPU's part of the
mm's percpu_counter, mm_types.py "rss"), nr_anon_pages / nr_mapped (node of the page,
when a mapcount goes 0 -> 1 -> 0), pgfault / pgmajfault, the vma_lock_* events.

Dirty throttling: a write fault that newly dirties a page of a shared mapping of a real
file (do_shared_fault, wp_page_shared) returns VM_FAULT_DIRTY_SHARED, and finish() --
after the fault's VMA / mmap lock went, as fault_dirty_shared_page's
maybe_unlock_mmap_for_io -- calls ext.balance_dirty_pages_ratelimited (mm/reclaim's
writeback; the hook keeps vm from importing reclaim).  MADV_FREE (mkclean_range) hands
the folios it cleaned to ext.mark_lazyfree the same way.

Unmapping (zap): entries are cleared with xchg (the final A/D bits are never lost to a
concurrent hardware walk), dirty file pages get PG_dirty, and each page's PTE reference
goes into an mmu_gather that drops it only after the TLB flush of the range: no CPU can
read or write a page through a stale TLB entry once the page can be reused.  The zap
itself takes no object lock (one PTE lock per table, as zap_pte_range); the pages'
tree references go afterwards, in vm_object.py's page_remove (a bounded object-lock
hold per batch) or with the object when its last reference goes.

Crash consistency (robust mode only: [run] on_cpu_death or fault injection, arena/layout.py
robust_mode; normal runs pay nothing): a fault that makes a page logs it (mm/intent.py
vm_fault: step 0 the allocation's hand-off window open (mm/intent.py "Hand-off": the
allocator names the page before it is the fault's), step 1 allocated, 2 in its object's
tree, 3 counted as mapped, 4 PTE set; the
inlined anon_write_fast counts the page for its tree and PTE before the insert: step 5),
one
that maps a page it found logs steps 3 and 4 (map_existing), a file fault logs the
page-cache reference it holds (vm_file_hold; filemap.py logs a folio it reads in), and
an mmu_gather created with a record mirrors its pages in the intent log's spill area
(vm_gather: step = pages gathered, from the region's bottom; a2 names the PTE of the
next one before its xchg, until the step counts it) and the page tables
free_pgd_range detached (a1 = how many, from its top); it flushes when the two fill the
region's 64 slots instead of at MAX_GATHER_BATCH -- mm/vm/recover.py rolls them back or
finishes them.

Invariants (mm/vm/check.py): PT2 (pgtable.py), R1 folio mapcount == PTEs mapping it,
R2 refcount == (in a tree) + mapcount when quiescent, RSS1 each mm's rss counters ==
its present PTEs by kind.
"""

from __future__ import annotations

from collections.abc import Callable
from errno import EAGAIN
from typing import Any

from aerosync.arena import layout as L
from aerosync.errors import AeroSyncError
from aerosync.mm import hooks
from aerosync.mm import intent as I
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import GFP_HIGHUSER_MOVABLE
from aerosync.mm.pmm.page import (
    P_INDEX,
    P_MAPCOUNT,
    P_MAPPING,
    P_NODE,
    P_REFCOUNT,
    PAGE_MAPPING_ANON,
    PG_dirty,
    PG_locked,
    PG_mlocked,
    PG_swapbacked,
    PG_swapcache,
)
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    PTE_PFN_MASK,
    is_migration_entry,
    level_shift,
    pte_modify,
)
from aerosync.mm.vm.vm_object import (
    O_BACKING,
    O_DEPTH,
    O_NR_PAGES,
    O_SIZE,
    O_TYPE,
    OBJ_ANON,
    OBJ_VNODE,
    XA_ZERO,
    entry_pfn,
    is_folio_entry,
)
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["new_ext", "VM_FAULT_OOM", "VM_FAULT_SIGSEGV", "VM_FAULT_MAJOR", "VM_FAULT_RETRY", "VM_FAULT_DIRTY_SHARED",
           "SegmentationFault",
           "Memory", "MmuGather", "SEGV_MAPERR", "SEGV_ACCERR", "SIGSEGV", "SIGKILL", "MAX_GATHER_BATCH"]

VM_FAULT_OOM = 0x1
VM_FAULT_SIGSEGV = 0x40
VM_FAULT_MAJOR = 0x4
VM_FAULT_RETRY = 0x400
# Not a Linux code: the fault newly dirtied a page of a shared mapping of a real file, so
# the fault's exit runs balance_dirty_pages_ratelimited once the fault's locks are gone
# (fault_dirty_shared_page after maybe_unlock_mmap_for_io; see finish()).
VM_FAULT_DIRTY_SHARED = 0x8000
FAULT_FLAG_VMA_LOCK = 0x1000
FAULT_FLAG_SPECULATIVE = 0x10000
SIGSEGV, SIGKILL = 11, 9
SEGV_MAPERR, SEGV_ACCERR = 1, 2
MAX_GATHER_BATCH = 512
FAST_SLOW, FAST_OOM = -1, -2             # anon_write_fast's non-entry answers
_RW_D = _PAGE_RW | _PAGE_DIRTY
_U64 = (1 << 64) - 1
_P_OR_NONE = _PAGE_PRESENT | _PAGE_PROTNONE
_P_PSE = _PAGE_PRESENT | _PAGE_PSE
KIND_FILE, KIND_ANON, KIND_SWAP, KIND_SHMEM = T.MM_FILEPAGES, T.MM_ANONPAGES, T.MM_SWAPENTS, T.MM_SHMEMPAGES
_OP_FAULT, _OP_GATHER, _OP_FILE_HOLD = I.OP["vm_fault"], I.OP["vm_gather"], I.OP["vm_file_hold"]
P_FAULT_PAGE, P_FAULT_INSERTED, P_FAULT_ACCOUNTED, P_FAULT_INSTALLED = (
    I.POINT_IDS[n] for n in ("vm:fault:page", "vm:fault:inserted", "vm:fault:accounted", "vm:fault:installed"))
P_FAULT_FOUND, P_FILE_HELD = I.POINT_IDS["vm:fault:found_accounted"], I.POINT_IDS["vm:fault:file_held"]
GATHER_LOGGED = L.SPILL_RECLAIM - L.SPILL_GATHER      # pages (and tables) a logged gather holds before it flushes


class SegmentationFault(AeroSyncError):
    """SIGSEGV delivered to a task: the access had no mapping or broke its protection."""

    def __init__(self, tid: int, pid: int, cpu: int, addr: int, code: int, write: bool, why: str) -> None:
        self.tid, self.pid, self.cpu, self.addr, self.code, self.write = tid, pid, cpu, addr, code, write
        kind = "SEGV_MAPERR" if code == SEGV_MAPERR else "SEGV_ACCERR"
        super().__init__(f"task {pid} (tid slot {tid}) on cpu{cpu}: SIGSEGV ({kind}) at {addr:#x} on a "
                         f"{'write' if write else 'read'}: {why}")


def new_ext() -> Any:
    """The hook namespace of Memory (see its docstring); every hook starts unset."""
    from types import SimpleNamespace

    return SimpleNamespace(alloc_folio=None, lru_add=None, swap_fault=None, numa_fault=None,
                           migration_wait=None, zap_swap=None, dup_swap=None, obj_swap_fault=None,
                           check_killed=None, task_work=None, obj_free=None,
                           balance_dirty_pages_ratelimited=None, mark_lazyfree=None)


class MmuGather:
    """mm/mmu_gather.c: pages and page-table pages collected while unmapping, released
    only after one TLB flush covering everything that was cleared.  `put_many(pfns)`
    drops the PTE reference of every gathered page in one call (free_pages_and_swap_cache
    -> folios_put: the pages freed by it go to the PCP as one batch)."""

    __slots__ = ("pages", "tables", "start", "end", "mm_id", "flush_range", "put", "put_many", "free_table",
                 "tp", "log", "batch")

    def __init__(self, mm_id: int, flush_range: Callable[[int, int, int], None], put: Callable[[int], None],
                 put_many: Callable[[list[int]], None], free_table: Callable[[int], None],
                 tp: Callable[[str], None] | None = None, log: tuple[Any, int, int] | None = None) -> None:
        self.mm_id, self.flush_range, self.put, self.free_table = mm_id, flush_range, put, free_table
        self.put_many = put_many
        self.tp = tp
        self.pages: list[int] = []
        self.tables: list[int] = []
        self.start, self.end = _U64, 0
        # (arena.u64, vm_gather record, spill index): each gathered page is also in the
        # spill and counted in the record's step, until its put (module docstring)
        self.log = log
        self.batch = GATHER_LOGGED if log is not None else MAX_GATHER_BATCH

    def add_table(self, table: int) -> None:
        """A page-table page whose parent entry is cleared, freed at the flush.  A logged
        gather mirrors it in the spill (from the top down; the record's a1 counts them)
        and flushes when pages and tables fill the spill."""
        tables, log = self.tables, self.log
        if log is not None:
            q, r, spg = log
            q[spg + self.batch - 1 - len(tables)] = table
            q[r + 2] = len(tables) + 1
        tables.append(table)
        if log is not None and len(self.pages) + len(tables) >= self.batch:
            self.flush()

    def add_range(self, start: int, end: int) -> None:
        if start < self.start:
            self.start = start
        if end > self.end:
            self.end = end

    def flush(self) -> None:
        """tlb_flush_mmu(): flush what was cleared, then release pages and tables."""
        tp = self.tp
        if tp:
            tp("zap:before_flush")
        if self.end > self.start:
            self.flush_range(self.mm_id, self.start, self.end)
            self.start, self.end = _U64, 0
        if tp:
            tp("zap:before_free")
        pages, self.pages = self.pages, []
        if self.log is not None:
            q, r, _ = self.log
            put = self.put
            for n in range(len(pages) - 1, -1, -1):    # off the record first: the put's own records own it
                q[r + 7] = n
                put(pages[n])
        elif pages:
            self.put_many(pages)
        tables, self.tables = self.tables, []
        if self.log is not None:
            q, r, _ = self.log
            free_table = self.free_table
            for n in range(len(tables) - 1, -1, -1):   # off the record first, as the pages
                q[r + 2] = n
                free_table(tables[n])
        else:
            for t in tables:
                self.free_table(t)

    finish = flush


class Memory:
    """Simulated CPU `cpu`'s fault and unmap paths (closures; see the module docstring).

    Needs: `mm` (page allocator handle), `pt` (PageTables), `tlb`, `objs` (VmObjects),
    `files` (Filemap), `locks` (ptlock / ptl / vma_lock / mmap_lock handles), `rcu`,
    `find_vma(mm_id, addr)`, `mt_load(mm_id, addr)` (lock-free maple walk), and `cur`
    (this CPU's [tid, mm_id] of the running task).

    `ext` is where other subsystems plug into the fault and unmap paths (read at call
    time, so a subsystem attaches after the handle is built; VM.ext):
      alloc_folio(vma, va, idx) -> pfn | -1   the page for a fault (NUMA policy; default:
                                              alloc_pages(GFP_HIGHUSER_MOVABLE, 0) locally)
      lru_add(pfn)                            a new user folio exists (reclaim's LRU)
      swap_fault(mm_id, vma, va, table, i, e, write) -> VM_FAULT_*   a swap entry
      numa_fault(mm_id, vma, va, table, i, e, write) -> VM_FAULT_*   a NUMA hinting entry
      migration_wait(mm_id, va, e)            a migration entry: wait for the move
      zap_swap(mm_id, e)                      an unmapped swap entry (free the slot)
      dup_swap(e)                             fork copies a swap entry (one more count)
      obj_swap_fault(mm_id, vma, va, table, i, holder, hidx, ent, write) -> VM_FAULT_*
                                              an object holds a swap value entry where the
                                              fault needs a page (mm/reclaim: swap-in)
      check_killed()                          raises if this CPU's task was OOM-killed
                                              (called by a fault only when the task's
                                              T_FLAGS word is non-zero: TASK_OOM_VICTIM)
    A folio found in an object's tree is mapped with a try-get (map_account returns
    False when its refcount is 0: reclaim froze it) and a recheck that it still belongs
    to the object it was found in; the fault retries otherwise (filemap_get_entry's
    folio_try_get + xas_reload).  A file fault's own page comes from files.get_folio
    with a reference (filemap_get_folio) that it holds until the PTE is set or the COW
    copy made, then drops: reclaim cannot free (and the allocator reuse) that folio
    under it; fault-around maps neighbours with the try-get above (filemap_map_pages).
    Not called from here, but kept in the same namespace (VM.ext):
      task_work()                             VM.task_work(): the running task's deferred
                                              work at a return to user (NUMA balancing scan)
      obj_free(obj)                           vm_object.py: an object is destroyed (mm/numa:
                                              its shared policy goes, mpol_free_shared_policy)
    Migration entries (is_migration_entry) reach zap_swap and dup_swap too: they hold no
    reference, mapcount or rss (mm/numa/migrate.py drops those when it installs one), so
    a swap handler must leave them alone.
    """

    def __init__(self, arena: Any, cpu: int, mm: Any, pt: Any, tlb: Any, objs: Any, files: Any, locks: Any,
                 rcu: Any, find_vma: Callable[[int, int], int], mt_load: Callable[[int, int], int],
                 cur: list[int], ext: Any = None) -> None:
        self.arena, self.cpu = arena, cpu
        q, i64, u32, u8, at = arena.u64, arena.i64, arena.u32, arena.u8, arena.atomic
        load, cas, xchg, fetch_add = at.load64, at.cas64, at.xchg64, at.fetch_add64
        cas32 = at.cas32
        fetch_add32, fetch_sub32, fetch_or32 = at.fetch_add32, at.fetch_sub32, at.fetch_or32
        PHYS = arena.off("physmem")
        P8 = PHYS >> 3
        PM = arena.off("pagemeta")
        PM8, PM4 = PM >> 3, PM >> 2
        MW, MW4 = PAGE_META_SIZE >> 3, PAGE_META_SIZE >> 2
        i_map, i_idx = P_MAPPING >> 3, P_INDEX >> 3
        assert P_REFCOUNT == 8 and P_MAPCOUNT == 12 and P_NODE == 7
        i_ref, _REF1_MAP1 = P_REFCOUNT >> 3, 1 | 1 << 32       # refcount + 1, mapcount + 1 (one u64)
        _UNREF1_MAP1 = -_REF1_MAP1 & 0xFFFF_FFFF_FFFF_FFFF
        _REF2_MAP1 = 2 | 1 << 32                                # a new page in a tree and a PTE
        hdr = arena.off("vmhdr")
        H = lambda f: q[(hdr + f) >> 3]
        zero_pfn = H(T.H_ZERO_PFN)
        mode = H(T.H_FAULT_LOCKING)
        fault_around_pages = H(T.H_FAULT_AROUND) >> PAGE_SHIFT
        nr_levels = H(T.H_LEVELS)
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        task_base = arena.off("vmtask")
        ev = VE.vm_event_base(arena, cpu)
        ev_pgfault, ev_major = ev + VE.PGFAULT, ev + VE.PGMAJFAULT
        ev_vl_success, ev_vl_abort = ev + VE.VMA_LOCK_SUCCESS, ev + VE.VMA_LOCK_ABORT
        ev_vl_retry, ev_vl_miss = ev + VE.VMA_LOCK_RETRY, ev + VE.VMA_LOCK_MISS
        # Counters bumped on every fault: one fetch_add (a C call, ~27 ns) instead of a
        # memoryview read-modify-write (~68 ns, measured with thread_time); these are
        # this CPU's own words, so the atomic is merely stronger than needed.
        ev_pgfault_b, ev_vl_success_b = ev_pgfault << 3, ev_vl_success << 3
        ev_spf_ok, ev_spf_abort = ev + VE.SPF_SUCCESS, ev + VE.SPF_ABORT
        ev_steal, ev_copy, ev_around = ev + VE.COW_STEAL, ev + VE.COW_COPY, ev + VE.FAULT_AROUND
        ev_leaf_wait = ev + VE.XA_LEAF_WAIT
        ns = VE.node_stat_base(arena, cpu)
        NS = VE.NR_NODE_STATS
        ns_anon = ns + VE.NR_ANON_PAGES
        NR_ANON, NR_MAPPED, NR_SHMEM, NR_FILE, NR_DIRTY = (VE.NR_ANON_PAGES, VE.NR_MAPPED, VE.NR_SHMEM,
                                                          VE.NR_FILE_PAGES, VE.NR_DIRTY)
        ZERO = bytes(PAGE_SIZE)
        xa_insert, xa_insert_leaf = objs.xa_insert, objs.xa_insert_leaf
        # VMA fields by word index off vma >> 3 (VMA records are 8-aligned), hot paths only
        W_START, W_END, W_MM, W_FLAGS = V.V_START >> 3, V.V_END >> 3, V.V_MM >> 3, V.V_FLAGS >> 3
        W_PROT, W_PGOFF, W_OBJECT, W_FILE = V.V_PROT >> 3, V.V_PGOFF >> 3, V.V_OBJECT >> 3, V.V_FILE >> 3
        # this CPU's parts of the mm's rss counters (percpu_counter: no word shared per fault)
        RSS_ME = T.rss_pcpu_base(int(arena.config["nr_cpus"])) + cpu * L.CACHE_LINE
        RSS_ANON, M_PGD, VM_SHARED = RSS_ME + 8 * KIND_ANON, T.M_PGD, V.VM_SHARED
        _RW_D_A = _RW_D | _PAGE_ACCESSED
        alloc_pages, free_pages, free_pages_bulk = mm.alloc_pages, mm.free_pages, mm.free_pages_bulk
        free_frozen_pages = mm.free_frozen_pages
        def put_page(pfn: int) -> None:
            """put_page() of an order-0 VM page (the inlined PCP free of __free_pages)."""
            free_pages(pfn, 0)

        give_back = mm.give_back             # a new page never published: pmm/page_alloc.py

        GFP = GFP_HIGHUSER_MOVABLE
        alloc_page = mm.alloc_page_fn(GFP)     # alloc_pages(GFP, 0), its plan bound
        walk_alloc, walk, free_table = pt.walk_alloc, pt.walk, pt.free_table
        lv4 = nr_levels == 4             # handle_mm_fault inlines the 4-level walk's common case
        ptl_lock, ptl_unlock = locks.ptlock.lock, locks.ptlock.unlock
        vma_down_read_trylock, vma_up_read = locks.vma_lock.down_read_trylock, locks.vma_lock.up_read
        mmap_down_read, mmap_up_read = locks.mmap_lock.down_read, locks.mmap_lock.up_read
        obj_down_write, obj_up_write = locks.obj_lock.lock, locks.obj_lock.unlock
        obj_trylock_write = locks.obj_lock.trylock
        rcu_read_lock, rcu_read_unlock = rcu.read_lock, rcu.read_unlock
        objs_alloc, objs_put, objs_insert, objs_nomem = objs.alloc, objs.put, objs.insert, objs.nomem
        objs_lookup, chain_lookup, objs_shadow = objs.lookup, objs.chain_lookup, objs.shadow
        objs_link_vma, objs_remove_locked, objs_remove = objs.link_vma, objs.remove_locked, objs.remove
        objs_insert_locked = objs.insert_locked
        get_folio, file_obj = files.get_folio, files.file_obj
        flush_tlb_mm_range, flush_one = tlb.flush_tlb_mm_range, tlb.flush_one
        pte_shift = level_shift(2)
        mm_seq_off = T.M_MMAP_SEQ
        depth_limit = H(T.H_SHADOW_DEPTH)
        tp = hooks.point_fn()             # test points: None in production (mm/hooks.py)
        # intent log (robust mode only): begin is None otherwise, and no record is made
        lg = mm.log if L.robust_mode(arena.config) else None
        begin, log_end, fp = (lg.begin, lg.end, lg.fp) if lg is not None else (None, None, None)
        spg = lg.spill + L.SPILL_GATHER if lg is not None else 0
        ho, pend = (lg.handoff, lg.pending) if lg is not None else (0, 0)   # mm/intent.py "Hand-off"
        if ext is None:
            ext = new_ext()
        self.ext = ext

        def mm_off(mm_id: int) -> int:
            return mm_base + mm_id * mm_size

        # ------------------------------------------------------------ accounting
        def page_nid(pfn: int) -> int:
            return u8[PM + pfn * PAGE_META_SIZE + 7]

        def kind_of(pfn: int) -> int:
            m = q[PM8 + pfn * MW + i_map]
            if m & PAGE_MAPPING_ANON:
                return KIND_ANON
            o = m & ~3
            if o and (u32[(o + O_TYPE) >> 2] & 0xFFFF) == OBJ_ANON:
                return KIND_SHMEM
            return KIND_FILE

        def map_account(mm_id: int, pfn: int, kind: int, holder: int = 0, idx: int = -1) -> bool:
            """A new PTE maps pfn: its reference, mapcount, rss and node counters.  The
            reference is a try-get (False: the folio is being freed -- retry the fault); with
            `holder`, the folio must still be in that object (else False, nothing taken),
            and with idx >= 0 at that index: a folio looked up without a reference may be
            reclaimed and its pfn reused in the same object at another index (a file's
            readahead) before the try-get -- mapping it would map the wrong page."""
            b4 = PM4 + pfn * MW4
            c = u32[b4 + 2]
            while True:                                        # folio_try_get
                if not c:
                    return False
                seen = cas32((b4 + 2) << 2, c, c + 1)
                if seen == c:
                    break
                c = seen
            if holder and (q[PM8 + pfn * MW + i_map] & ~3 != holder
                           or (idx >= 0 and q[PM8 + pfn * MW + i_idx] != idx)):
                fetch_sub32((b4 + 2) << 2, 1)                  # never the last: the tree holds one
                return False
            if fetch_add32((b4 + 3) << 2, 1) == 0:             # mapcount 0 -> 1
                i64[ns + page_nid(pfn) * NS + (NR_ANON if kind == KIND_ANON else NR_MAPPED)] += 1
            fetch_add(mm_base + mm_id * mm_size + RSS_ME + 8 * kind, 1)
            return True

        def unmap_account(mm_id: int, pfn: int, kind: int, put: bool = True) -> None:
            """A PTE mapping pfn went away (the PTE reference is dropped unless put=False:
            the caller hands it to an mmu_gather)."""
            b4 = PM4 + pfn * MW4
            if fetch_sub32((b4 + 3) << 2, 1) == 1:             # mapcount 1 -> 0
                i64[ns + page_nid(pfn) * NS + (NR_ANON if kind == KIND_ANON else NR_MAPPED)] -= 1
            fetch_add(mm_base + mm_id * mm_size + RSS_ME + 8 * kind, _U64)
            if put:
                put_page(pfn)

        def set_dirty(pfn: int) -> bool:
            """folio_mark_dirty(): file pages count in nr_dirty.  True when a page-cache
            page of a file went clean -> dirty (what balance_dirty_pages accounts)."""
            old = fetch_or32((PM4 + pfn * MW4) << 2, PG_dirty)
            if not old & PG_dirty and kind_of(pfn) == KIND_FILE:
                i64[ns + page_nid(pfn) * NS + NR_DIRTY] += 1
                return True
            return False

        def dirty_shared(pfn: int, fid: int) -> int:
            """fault_dirty_shared_page()'s first half: mark the folio dirty; a folio of a
            real file newly dirtied asks the fault's exit to throttle the writer
            (VM_FAULT_DIRTY_SHARED).  A generated file has no backing store and no
            writeback (Linux: a bdi without BDI_CAP_WRITEBACK is never throttled)."""
            if set_dirty(pfn) and fid >= 0 and q[(T.file_off(arena, fid) + T.F_FLAGS) >> 3] & T.FILE_REAL:
                return VM_FAULT_DIRTY_SHARED
            return 0

        # ------------------------------------------------------------ helpers
        installed = [0]
        oom_why = [""]

        def install(table: int, i: int, expect: int, new: int, spec_seq: int, mm_id: int, r: int = -1) -> bool:
            """Under the PTE lock: set entry i to new if it is still `expect` (and, for a
            speculative fault, if the mm's mmap_seq is still the snapshot).  Record r
            (robust mode) moves to step 6 first: the PTE store is next, and the entry
            alone tells a recovery whether it landed (nobody else stores it while we
            hold its lock, and the page is in no other PTE of this table slot)."""
            lo = PM + table * PAGE_META_SIZE + 32
            ptl_lock(lo)
            try:
                if q[i] != expect:
                    return False
                if spec_seq >= 0 and load(mm_off(mm_id) + mm_seq_off) != spec_seq:
                    return False
                if r >= 0:
                    q[r + 7] = 6
                q[i] = new
                return True
            finally:
                ptl_unlock(lo)

        def new_page(src: int, vma: int = 0, va: int = 0, idx: int = 0) -> int:
            """A page for a fault: zeroed (src < 0) or a copy of src's contents."""
            af = ext.alloc_folio
            pfn = af(vma, va, idx) if af is not None else alloc_pages(GFP, 0)
            if pfn < 0:
                return -1
            o = PHYS + (pfn << PAGE_SHIFT)
            if src < 0:
                u8[o : o + PAGE_SIZE] = ZERO
            else:
                s = PHYS + (src << PAGE_SHIFT)
                u8[o : o + PAGE_SIZE] = u8[s : s + PAGE_SIZE]
            u32[PM4 + pfn * MW4] |= PG_swapbacked
            return pfn

        def anon_prepare(vma: int) -> int:
            """The VMA's anonymous object, created at its first fault (__anon_vma_prepare):
            installed with a CAS so concurrent faulters agree on one object."""
            o = q[(vma + V.V_OBJECT) >> 3]
            if o:
                return o
            size = q[(vma + V.V_PGOFF) >> 3] + ((q[(vma + V.V_END) >> 3] - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)
            o = objs_alloc(OBJ_ANON, size)
            if not o:
                return 0
            seen = cas(vma + V.V_OBJECT, 0, o)
            if seen:
                objs_put(o)
                return seen
            objs_link_vma(o, vma)
            return o

        def file_shadow(vma: int, fid: int) -> int:
            """A private file mapping's shadow over the file's vnode object (index =
            file page), created at its first COW."""
            o = q[(vma + V.V_OBJECT) >> 3]
            if o:
                return o
            f = file_obj(fid)
            s = objs_shadow(f, 0, q[(f + O_SIZE) >> 3])
            if not s:
                return 0
            seen = cas(vma + V.V_OBJECT, 0, s)
            if seen:
                objs_put(s)
                return seen
            objs_link_vma(s, vma)
            return s

        def vma_prot(vma: int) -> int:
            return q[(vma + V.V_PROT) >> 3]

        # ------------------------------------------------------------ the fault paths
        def map_new(mm_id: int, vma: int, va: int, table: int, i: int, expect: int, obj: int, idx: int,
                    src: int, anon: bool, write: bool, spec_seq: int) -> int:
            """Allocate (zeroed or copied from src), insert into obj at idx, map it.
            Replaces `expect` (0, the zero page, or a page being COWed)."""
            if begin is None:
                return map_new_body(mm_id, vma, va, table, i, expect, obj, idx, src, anon, write, spec_seq, -1)
            r = begin(_OP_FAULT, mm_id, table, i)
            q[r + 6] = expect                # a5: the entry replaced (present: a COW; recovery's)
            try:
                return map_new_body(mm_id, vma, va, table, i, expect, obj, idx, src, anon, write, spec_seq, r)
            finally:
                log_end(r)

        def map_new_body(mm_id: int, vma: int, va: int, table: int, i: int, expect: int, obj: int, idx: int,
                         src: int, anon: bool, write: bool, spec_seq: int, r: int) -> int:
            """map_new with its vm_fault record r (-1: none)."""
            if r >= 0:                       # the hand-off window: the page until step 1
                q[ho] = 0
                q[pend] = 1
            pfn = new_page(src, vma, va, idx)
            if pfn < 0:
                if r >= 0:
                    q[pend] = 0
                oom_why[0] = 'no page for the fault'
                return VM_FAULT_OOM
            if r >= 0:
                q[r + 4] = pfn
                q[r + 5] = KIND_ANON if anon else KIND_SHMEM
                q[r + 7] = 1
                q[pend] = 0
                if fp:
                    fp(P_FAULT_PAGE)
            if spec_seq >= 0:
                if not obj_trylock_write(obj + 16):
                    give_back(pfn, r + 7 if r >= 0 else -1)
                    return VM_FAULT_RETRY
                try:
                    if load(mm_off(mm_id) + mm_seq_off) != spec_seq:
                        give_back(pfn, r + 7 if r >= 0 else -1)
                        return VM_FAULT_RETRY
                    got = insert_locked(obj, idx, pfn, anon)
                finally:
                    obj_up_write(obj + 16)
            else:
                got = objs_insert(obj, idx, pfn, anon)
            if got != pfn:
                give_back(pfn, r + 7 if r >= 0 else -1)      # ours goes back (the insert set nothing of it)
            if got == -2:
                return VM_FAULT_RETRY if spec_seq >= 0 else 0    # a swap entry there: the general path
            if got < 0:
                if spec_seq >= 0 and objs_nomem is not None and objs_nomem():
                    return VM_FAULT_RETRY    # (insert() retries itself: xas_nomem)
                oom_why[0] = 'no tree node for the page (object lock held)'
                return VM_FAULT_OOM
            holder = 0
            if got != pfn:                   # another CPU put a page there first: use it
                pfn = got
                holder = obj                 # found, not made: map it only if still there
            else:
                if r >= 0:
                    q[r + 7] = 2             # in the object's tree (its reference), before the LRU has it
                if not anon:                 # a new shmem page: counted as shmem and file
                    nid = page_nid(pfn)
                    i64[ns + nid * NS + NR_SHMEM] += 1
                    i64[ns + nid * NS + NR_FILE] += 1
                la = ext.lru_add
                if la is not None:
                    la(pfn)
            kind = KIND_ANON if anon else KIND_SHMEM
            prot = vma_prot(vma)
            e = (pfn << PAGE_SHIFT) | prot
            if write:
                e |= _RW_D
                if not anon:
                    set_dirty(pfn)
            elif prot & _PAGE_RW and not anon:
                e &= ~_PAGE_RW
            if fp and got == pfn:
                fp(P_FAULT_INSERTED)
            if not map_account(mm_id, pfn, kind, holder):
                return VM_FAULT_RETRY if spec_seq >= 0 else 0
            if r >= 0:
                q[r + 4] = pfn
                q[r + 5] = kind
                q[r + 7] = 3                 # counted as mapped: PTE reference, mapcount, rss
                if fp:
                    fp(P_FAULT_ACCOUNTED)
            if tp:
                tp("cow:copied" if expect & _PAGE_PRESENT else "fault:before_install")
            if expect & _PAGE_PRESENT:
                # COW of a present entry (a page, or the zero page): ptep_clear_flush, then
                # the new entry; the old page loses this PTE's mapping
                okind = kind_of((expect & PTE_PFN_MASK) >> PAGE_SHIFT)
                if not replace(mm_id, table, i, va, expect, e):
                    unmap_account(mm_id, pfn, kind)
                    # The PTE changed (reclaim's aging cleared A, or unmapped the old
                    # page): a copy we made leaves the tree again, as wp_page_copy
                    # releases it -- left there, the object would hold one page while
                    # the PTE maps (or, swapped out, names) another, and a swap-in
                    # would then map a folio no object holds (R3; nr_anon_pages and
                    # the rss counters drifted in fork-cow under swap pressure).
                    if got == pfn and objs_remove(obj, idx, pfn):
                        if r >= 0:
                            q[r + 7] = 0             # the tree's reference is ours: put below
                        free_pages(pfn, 0)
                    return 0
                if not expect & _PAGE_SPECIAL:
                    unmap_account(mm_id, (expect & PTE_PFN_MASK) >> PAGE_SHIFT, okind)
                installed_point(r)
                return 0
            if not install(table, i, expect, e, spec_seq, mm_id, r):
                unmap_account(mm_id, pfn, kind)
                return VM_FAULT_RETRY if spec_seq >= 0 else 0
            installed_point(r)
            return 0

        def installed_point(r: int) -> None:
            if r >= 0:
                q[r + 7] = 4
                if fp:
                    fp(P_FAULT_INSTALLED)

        def insert_locked(obj: int, idx: int, pfn: int, anon: bool) -> int:
            cur_e = objs_lookup(obj, idx)
            if is_folio_entry(cur_e):
                return entry_pfn(cur_e)
            if cur_e and cur_e != XA_ZERO:
                return -2                    # a swap entry: not for a speculative fault
            return objs_insert_locked(obj, idx, pfn, anon)

        def replace(mm_id: int, table: int, i: int, va: int, expect: int, new: int) -> bool:
            """ptep_clear_flush + set_pte_at under the PTE lock: no CPU keeps the old
            translation once the new one is visible."""
            lo = PM + table * PAGE_META_SIZE + 32
            ptl_lock(lo)
            try:
                if q[i] != expect:
                    return False
                xchg(i << 3, 0)
                flush_tlb_mm_range(mm_id, va, va + PAGE_SIZE)
                q[i] = new
                return True
            finally:
                ptl_unlock(lo)

        def map_existing(mm_id: int, vma: int, table: int, i: int, pfn: int, writable: bool, kind: int,
                         spec_seq: int, holder: int = 0, idx: int = -1, r: int = -1) -> int:
            """Map a page found in an object's tree or the page cache (with the vm_fault
            record r in robust mode: steps 3 and 4, as map_new's)."""
            e = (pfn << PAGE_SHIFT) | vma_prot(vma)
            e = (e | _RW_D) if writable else (e & ~_PAGE_RW)
            if not map_account(mm_id, pfn, kind, holder, idx):
                return VM_FAULT_RETRY if spec_seq >= 0 else 0
            if r >= 0:
                q[r + 4] = pfn
                q[r + 5] = kind
                q[r + 7] = 3                 # counted as mapped: PTE reference, mapcount, rss
                if fp:
                    fp(P_FAULT_FOUND)
            if not install(table, i, 0, e, spec_seq, mm_id, r):
                unmap_account(mm_id, pfn, kind)
                return VM_FAULT_RETRY if spec_seq >= 0 else 0
            installed_point(r)
            return 0

        if begin is not None:
            _map_existing = map_existing

            def map_existing(mm_id: int, vma: int, table: int, i: int, pfn: int, writable: bool, kind: int,
                             spec_seq: int, holder: int = 0, idx: int = -1, r: int = -1) -> int:
                """map_existing inside a vm_fault record (robust mode)."""
                r = begin(_OP_FAULT, mm_id, table, i)
                q[r + 6] = 0
                try:
                    return _map_existing(mm_id, vma, table, i, pfn, writable, kind, spec_seq, holder, idx, r)
                finally:
                    log_end(r)

        def do_anonymous_page(mm_id: int, vma: int, va: int, table: int, i: int, write: bool,
                              spec_seq: int) -> int:
            obj = q[(vma + V.V_OBJECT) >> 3]
            if not obj:
                if spec_seq >= 0:
                    return VM_FAULT_RETRY
                obj = anon_prepare(vma)
                if not obj:
                    oom_why[0] = 'no memory for the anonymous object'
                    return VM_FAULT_OOM
            idx = q[(vma + V.V_PGOFF) >> 3] + ((va - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)
            if q[(obj + O_BACKING) >> 3] or (spec_seq < 0 and objs_lookup(obj, idx)):
                if spec_seq >= 0:
                    return VM_FAULT_RETRY
                holder, _hidx, ent = chain_lookup(obj, idx)
                if holder and ent & 1 and ent != XA_ZERO:
                    return ext.obj_swap_fault(mm_id, vma, va, table, i, holder, _hidx, ent, write)
                if holder and is_folio_entry(ent):
                    pfn = entry_pfn(ent)
                    if holder == obj:
                        return map_existing(mm_id, vma, table, i, pfn, write, KIND_ANON, -1, holder)
                    if not write:
                        return map_existing(mm_id, vma, table, i, pfn, False, KIND_ANON, -1, holder)
                    q[ev_copy] += 1
                    return map_new(mm_id, vma, va, table, i, 0, obj, idx, pfn, True, True, -1)
                # nothing down the chain (or a ZERO marker): zero-fill below
            if not write:
                e = (zero_pfn << PAGE_SHIFT) | (vma_prot(vma) & ~_PAGE_RW) | _PAGE_SPECIAL
                if not install(table, i, 0, e, spec_seq, mm_id):
                    return VM_FAULT_RETRY if spec_seq >= 0 else 0
                return 0
            return map_new(mm_id, vma, va, table, i, 0, obj, idx, -1, True, True, spec_seq)

        def do_shmem_fault(mm_id: int, vma: int, va: int, table: int, i: int, write: bool, spec_seq: int) -> int:
            obj = q[(vma + V.V_OBJECT) >> 3]
            if spec_seq >= 0:
                return VM_FAULT_RETRY
            idx = q[(vma + V.V_PGOFF) >> 3] + ((va - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)
            if idx >= q[(obj + O_SIZE) >> 3]:
                return VM_FAULT_SIGSEGV
            ent = objs_lookup(obj, idx)
            if ent & 1 and ent != XA_ZERO:
                return ext.obj_swap_fault(mm_id, vma, va, table, i, obj, idx, ent, write)
            if is_folio_entry(ent):
                pfn = entry_pfn(ent)
                if write:
                    set_dirty(pfn)
                return map_existing(mm_id, vma, table, i, pfn, write and bool(q[(vma + V.V_FLAGS) >> 3] & V.VM_WRITE),
                                    KIND_SHMEM, -1, obj)
            return map_new(mm_id, vma, va, table, i, 0, obj, idx, -1, False, write, -1)

        def do_fault(mm_id: int, vma: int, va: int, table: int, i: int, write: bool, spec_seq: int) -> int:
            """File-backed VMA, PTE none: read fault (+fault-around), COW fault, shared fault."""
            if spec_seq >= 0:
                return VM_FAULT_RETRY
            fid = q[(vma + V.V_FILE) >> 3] - 1
            flags = q[(vma + V.V_FLAGS) >> 3]
            idx = q[(vma + V.V_PGOFF) >> 3] + ((va - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)
            top = q[(vma + V.V_OBJECT) >> 3]
            ret = 0
            if top and not flags & V.VM_SHARED:
                # A private file mapping's chain: top shadow -> (inherited shadows) -> the
                # file's vnode object.  A copy in an anonymous object of the chain is what
                # this mapping sees (ours: map it; inherited: read-only, COW on write); a
                # ZERO marker (MADV_DONTNEED) or nothing above the file means the file.
                holder, _h, ent = chain_lookup(top, idx)
                if holder and ent & 3 == 1 and (ent >> 1) & 3 == 2:     # a private copy swapped out
                    return ext.obj_swap_fault(mm_id, vma, va, table, i, holder, _h, ent, write)
                if holder and is_folio_entry(ent) and (u32[(holder + O_TYPE) >> 2] & 0xFFFF) != OBJ_VNODE:
                    cpfn = entry_pfn(ent)
                    if holder == top:                       # our private copy
                        return map_existing(mm_id, vma, table, i, cpfn, write, KIND_ANON, -1, holder)
                    if not write:
                        return map_existing(mm_id, vma, table, i, cpfn, False, KIND_ANON, -1, holder)
                    q[ev_copy] += 1
                    return map_new(mm_id, vma, va, table, i, 0, top, idx, cpfn, True, True, -1)
            # filemap_fault: the folio comes with a reference (filemap_get_folio's try-get
            # and re-check), held until its PTE is set or its copy made, so reclaim
            # cannot free it (and its pfn be reused) under the fault
            # (robust mode: a vm_file_hold record says when the fault holds that reference)
            rh = begin(_OP_FILE_HOLD, mm_id, fid, idx) if begin is not None else -1
            try:
                pfn, major = get_folio(fid, idx, rh)
                if pfn < 0:
                    if idx * PAGE_SIZE >= files.file_size(fid):
                        return VM_FAULT_SIGSEGV
                    oom_why[0] = f"no page for file {fid} page {idx} (page cache)"
                    return VM_FAULT_OOM
                if fp:
                    fp(P_FILE_HELD)
                if major:
                    ret |= VM_FAULT_MAJOR
                if tp:
                    tp("fault:file_folio")
                try:
                    return ret | file_fault_map(mm_id, vma, va, table, i, write, fid, flags, idx, top, pfn)
                finally:
                    if rh >= 0:
                        q[rh + 7] = 0                         # dropped (a kill in between leaks, never puts twice)
                    free_pages(pfn, 0)                        # the lookup's reference (folio_put)
            finally:
                if rh >= 0:
                    log_end(rh)

        def file_fault_map(mm_id: int, vma: int, va: int, table: int, i: int, write: bool, fid: int, flags: int,
                           idx: int, top: int, pfn: int) -> int:
            """do_read_fault / do_shared_fault / do_cow_fault with the page-cache folio
            pfn held (a reference) by the caller: it stays in the file at idx (reclaim's
            and migration's freeze fail), so it is mapped without map_account's recheck."""
            ret = 0
            if not write:
                r = map_existing(mm_id, vma, table, i, pfn, False, KIND_FILE, -1)
                if fault_around_pages > 1 and not flags & V.VM_RAND_READ:
                    do_fault_around(mm_id, vma, va, table, fid, top)
                return ret | r
            if flags & V.VM_SHARED:                           # do_shared_fault
                r = map_existing(mm_id, vma, table, i, pfn, True, KIND_FILE, -1)
                if q[i] & _PAGE_PRESENT and (q[i] & PTE_PFN_MASK) >> PAGE_SHIFT == pfn:
                    ret |= dirty_shared(pfn, fid)
                return ret | r
            top = file_shadow(vma, fid)                       # do_cow_fault
            if not top:
                oom_why[0] = 'no memory for the private file shadow'
                return VM_FAULT_OOM
            q[ev_copy] += 1
            return map_new(mm_id, vma, va, table, i, 0, top, idx, pfn, True, True, -1)

        def do_fault_around(mm_id: int, vma: int, va: int, table: int, fid: int, top: int) -> None:
            """filemap_map_pages(): map already-cached neighbours read-only, within the
            fault_around window, the VMA and this PTE table."""
            n = fault_around_pages
            start = max(va & ~((n << PAGE_SHIFT) - 1), q[(vma + V.V_START) >> 3], va & ~((1 << pte_shift) - 1))
            end = min((va | ((n << PAGE_SHIFT) - 1)) + 1, q[(vma + V.V_END) >> 3], (va | ((1 << pte_shift) - 1)) + 1)
            fobj = file_obj(fid)
            base = q[(vma + V.V_PGOFF) >> 3] - (q[(vma + V.V_START) >> 3] >> PAGE_SHIFT)
            mapped = 0
            for a in range(start, end, PAGE_SIZE):
                if a == va:
                    continue
                i = P8 + (table << 9) + ((a >> PAGE_SHIFT) & 511)
                if q[i]:
                    continue
                idx = base + (a >> PAGE_SHIFT)
                if top and chain_lookup(top, idx)[0] not in (0, fobj):
                    continue                                  # a private copy (or a marker) above the file
                e = objs_lookup(fobj, idx)
                if not is_folio_entry(e):
                    continue
                if not map_existing(mm_id, vma, table, i, entry_pfn(e), False, KIND_FILE, -1, fobj, idx) and q[i]:
                    mapped += 1
            q[ev_around] += mapped

        def do_wp_page(mm_id: int, vma: int, va: int, table: int, i: int, e: int) -> int:
            """Write to a present, write-protected PTE (called without the PTE lock)."""
            pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            flags = q[(vma + V.V_FLAGS) >> 3]
            idx = q[(vma + V.V_PGOFF) >> 3] + ((va - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)
            if e & _PAGE_SPECIAL:                             # the zero page: a new zeroed page
                obj = anon_prepare(vma)
                if not obj:
                    oom_why[0] = 'no memory for the anonymous object (zero-page COW)'
                    return VM_FAULT_OOM
                return map_new(mm_id, vma, va, table, i, e, obj, idx, -1, True, True, -1)
            if flags & V.VM_SHARED:                           # wp_page_shared
                r = dirty_shared(pfn, q[(vma + V.V_FILE) >> 3] - 1)
                install(table, i, e, e | _RW_D | _PAGE_ACCESSED, -1, mm_id)
                return r
            m = q[PM8 + pfn * MW + i_map]
            holder = m & ~3
            top = q[(vma + V.V_OBJECT) >> 3]
            if top and u32[(top + O_DEPTH) >> 2] > depth_limit:
                objs.collapse(top)               # a deep chain: merge what can be merged first
                m = q[PM8 + pfn * MW + i_map]
                holder = m & ~3
            if m & PAGE_MAPPING_ANON and holder == top:       # wp_page_reuse: our own copy
                install(table, i, e, e | _RW_D | _PAGE_ACCESSED, -1, mm_id)
                return 0
            if m & PAGE_MAPPING_ANON and top and q[(top + O_BACKING) >> 3] == holder and try_steal(
                    top, holder, idx, pfn):
                q[ev_steal] += 1
                install(table, i, e, e | _RW_D | _PAGE_ACCESSED, -1, mm_id)
                return 0
            if not top:
                fid = q[(vma + V.V_FILE) >> 3] - 1
                top = file_shadow(vma, fid) if fid >= 0 else anon_prepare(vma)
                if not top:
                    oom_why[0] = 'no memory for the shadow object'
                    return VM_FAULT_OOM
            q[ev_copy] += 1
            return map_new(mm_id, vma, va, table, i, e, top, idx, pfn, True, True, -1)

        def try_steal(top: int, holder: int, idx: int, pfn: int) -> bool:
            """Move a page from the direct backing object into the shadow without copying,
            when nothing else can see it: the backing has no other reference and no other
            child, and our PTE is its only mapping (refcount = tree + our PTE)."""
            from aerosync.mm.vm.vm_object import O_NR_CHILDREN, O_REF

            obj_down_write(top + 16)
            try:
                obj_down_write(holder + 16)
                try:
                    b4 = PM4 + pfn * MW4
                    hidx = idx + q[(top + 72) >> 3]
                    if (load(holder + O_REF) != 1 or u32[(holder + O_NR_CHILDREN) >> 2] != 1
                            or u32[b4 + 3] != 1 or u32[b4 + 2] != 2 or objs_lookup(top, idx)):
                        return False
                    if not objs_remove_locked(holder, hidx, pfn):
                        return False
                    if objs_insert_locked(top, idx, pfn, True) != pfn:
                        objs_insert_locked(holder, hidx, pfn, True)
                        return False
                    return True
                finally:
                    obj_up_write(holder + 16)
            finally:
                obj_up_write(top + 16)

        def anon_write_fast(mm_id: int, vma: int, va: int, table: int, i: int, obj: int, r: int = -1) -> int:
            """do_anonymous_page() for a write where the VMA's object has no backing chain
            (the page_fault1 case), inlined: returns the installed entry, 0 when the entry
            changed meanwhile (the access retries), FAST_OOM, or FAST_SLOW (-1: another CPU
            put a page at that index first, take the general path), with the vm_fault
            record r (-1: none; anon_write_fast_logged makes one in robust mode).  The
            tree insert is one xa_insert walk (was xa_load + xa_store: ~130 bytecodes a
            fault less); VMA and page-meta fields are read by word index (constants bound)."""
            vw = vma >> 3
            idx = q[vw + W_PGOFF] + ((va - q[vw + W_START]) >> PAGE_SHIFT)
            af = ext.alloc_folio
            if r >= 0:                       # the hand-off window: the page until step 1
                q[ho] = 0
                q[pend] = 1
            pfn = af(vma, va, idx) if af is not None else alloc_page()
            if pfn < 0:
                if r >= 0:
                    q[pend] = 0
                oom_why[0] = 'no page for the fault'
                return FAST_OOM
            if r >= 0:
                q[r + 4] = pfn
                q[r + 5] = KIND_ANON
                q[r + 7] = 1
                q[pend] = 0
                if fp:
                    fp(P_FAULT_PAGE)
            o = PHYS + (pfn << PAGE_SHIFT)
            u8[o : o + PAGE_SIZE] = ZERO
            # The page is ours alone until it is published (tree insert, then PTE):
            # plain stores set it up -- but for its refcount, which a stale lookup of the
            # pfn's previous life may try-get (inc-not-zero) at any time: one atomic add
            # to the word holding both counts makes it mapped once (refcount 1 -> tree +
            # PTE, mapcount 0 -> 1) without losing such an increment.
            b4 = PM4 + pfn * MW4
            u32[b4] = PG_swapbacked
            b8 = PM8 + pfn * MW
            fetch_add((b8 + i_ref) << 3, _REF1_MAP1)
            q[b8 + i_map] = obj | PAGE_MAPPING_ANON
            q[b8 + i_idx] = idx
            if r >= 0:
                q[r + 6] = obj
                q[r + 7] = 5                 # counted for the tree and the PTE, insert in flight
            # Into an existing leaf under the leaf's lock alone (lib/xarray.py: the object
            # lock sharded by 64-index range), so CPUs faulting far apart in one object
            # (threads' regions merged into one VMA) share no lock; a missing leaf is
            # built under &obj->lock.
            rcu_read_lock()
            got = xa_insert_leaf(obj + 32, idx, pfn << 2)
            rcu_read_unlock()
            if got == -EAGAIN:
                obj_down_write(obj + 16)
                got = xa_insert(obj + 32, idx, pfn << 2)
                obj_up_write(obj + 16)
            elif got:
                q[ev_leaf_wait] += 1
            if got < 0:                                        # -EBUSY (or -ENOMEM): the general path
                # mapping first: recovery's sign (step 5) that the insert failed; then
                # frozen when ours alone (both counts to 0: a stale try-get fails), the
                # step, the free -- as mm.give_back
                q[b8 + i_map] = q[b8 + i_idx] = 0
                u32[b4] = 0
                if cas((b8 + i_ref) << 3, _REF2_MAP1, 0) == _REF2_MAP1:
                    if r >= 0:
                        q[r + 7] = 0
                    free_frozen_pages(pfn, 0, False)
                    return FAST_SLOW
                fetch_add((b8 + i_ref) << 3, _UNREF1_MAP1)    # back to refcount 1, mapcount 0
                if r >= 0:
                    q[r + 7] = 0
                free_pages(pfn, 0)
                return FAST_SLOW
            fetch_add(obj + O_NR_PAGES, 1)                     # (atomic: see vm_object O5)
            la = ext.lru_add
            if la is not None:
                la(pfn)
            fetch_add((ns_anon + (u32[b4 + 1] >> 24) * NS) << 3, 1)     # the page's node: byte 7
            fetch_add(mm_base + mm_id * mm_size + RSS_ANON, 1)
            if r >= 0:
                q[r + 7] = 3                 # in the tree, counted as mapped, no PTE yet
                if fp:
                    fp(P_FAULT_ACCOUNTED)
            e = (pfn << PAGE_SHIFT) | q[vw + W_PROT] | _RW_D_A
            if tp:
                tp("fault:before_install")
            tl = PM + table * PAGE_META_SIZE + 32
            ptl_lock(tl)
            if q[i]:
                ptl_unlock(tl)
                unmap_account(mm_id, pfn, KIND_ANON)           # the page stays in the object
                return 0
            if r >= 0:
                q[r + 7] = 6                 # installing: the PTE tells (install())
            q[i] = e
            ptl_unlock(tl)
            if r >= 0:
                installed_point(r)
            return e

        def anon_write_fast_logged(mm_id: int, vma: int, va: int, table: int, i: int, obj: int) -> int:
            """anon_write_fast inside a vm_fault record (robust mode)."""
            r = begin(_OP_FAULT, mm_id, table, i)
            q[r + 6] = 0                     # a5: the object, from step 5 on
            try:
                return anon_write_fast(mm_id, vma, va, table, i, obj, r)
            finally:
                log_end(r)

        # robust mode's record costs a call a fault: bound once, not tested per fault
        fast_write = anon_write_fast_logged if begin is not None else anon_write_fast

        def handle_mm_fault(mm_id: int, vma: int, va: int, write: bool, spec_seq: int = -1) -> int:
            """Returns a VM_FAULT_* code; a successful fault that installed an entry the
            access can use leaves it in installed[0] (the MMU fills its TLB from it)."""
            root = q[(mm_base + mm_id * mm_size + M_PGD) >> 3]
            e = q[P8 + (root << 9) + ((va >> 39) & 511)] if lv4 else 0    # pt.walk_alloc4, inlined
            if e & _P_PSE == _PAGE_PRESENT:
                e = q[P8 + ((e & PTE_PFN_MASK) >> 3) + ((va >> 30) & 511)]
                if e & _P_PSE == _PAGE_PRESENT:
                    e = q[P8 + ((e & PTE_PFN_MASK) >> 3) + ((va >> 21) & 511)]
            if e & _P_PSE == _PAGE_PRESENT:
                table = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            else:
                table = walk_alloc(mm_id, root, va)
                if table < 0:
                    oom_why[0] = 'no page-table page'
                    return VM_FAULT_OOM
            i = P8 + (table << 9) + ((va >> PAGE_SHIFT) & 511)
            e = q[i]
            if not e:
                vw = vma >> 3
                fl = q[vw + W_FLAGS]
                if write and spec_seq < 0 and not fl & VM_SHARED and not q[vw + W_FILE]:
                    # a private anonymous write: with no backing chain, anon_write_fast
                    obj = q[vw + W_OBJECT] or anon_prepare(vma)
                    if not obj:
                        oom_why[0] = 'no memory for the anonymous object'
                        return VM_FAULT_OOM
                    if not q[(obj + O_BACKING) >> 3]:
                        r = fast_write(mm_id, vma, va, table, i, obj)
                        if r > 0:
                            installed[0] = r
                            return 0
                        if r == 0:
                            return 0
                        if r == FAST_OOM:
                            return VM_FAULT_OOM
                if q[vw + W_FILE]:
                    return do_fault(mm_id, vma, va, table, i, write, spec_seq)
                if fl & VM_SHARED:
                    return do_shmem_fault(mm_id, vma, va, table, i, write, spec_seq)
                return do_anonymous_page(mm_id, vma, va, table, i, write, spec_seq)
            if not e & _P_OR_NONE:
                if spec_seq >= 0:
                    return VM_FAULT_RETRY
                if is_migration_entry(e):                      # wait for the move to finish
                    mw = ext.migration_wait
                    if mw is not None:
                        mw(mm_id, va, e)
                    return 0
                sf = ext.swap_fault
                if sf is None:
                    raise AeroSyncError(f"cpu{cpu}: swap entry {e:#x} at {va:#x}: swap is not configured")
                return sf(mm_id, vma, va, table, i, e, write)
            if e & _PAGE_PROTNONE and not e & _PAGE_PRESENT:  # a NUMA hinting PTE
                if spec_seq >= 0:
                    return VM_FAULT_RETRY
                nf = ext.numa_fault
                if nf is not None:
                    return nf(mm_id, vma, va, table, i, e, write)
                install(table, i, e, pte_modify(e, vma_prot(vma)) | _PAGE_PRESENT, -1, mm_id)
                return 0
            if write and not e & _PAGE_RW:
                if spec_seq >= 0:
                    return VM_FAULT_RETRY
                return do_wp_page(mm_id, vma, va, table, i, e)
            # spurious: a stale TLB entry, or A/D to set (the hardware walk does it)
            flush_one(va)
            return 0

        # ------------------------------------------------------------ entry from the MMU
        def segv(va: int, code: int, write: bool, why: str) -> None:
            tid = cur[0]
            to = task_base + tid * T.TASK_REC
            q[(to + T.T_EXIT_SIGNAL) >> 3] = SIGSEGV
            q[(to + T.T_FAULT_ADDR) >> 3] = va
            q[(to + T.T_FAULT_REASON) >> 3] = code
            raise SegmentationFault(tid, q[(to + T.T_PID) >> 3], cpu, va, code, write, why)

        def access_error(vma: int, write: bool) -> bool:
            fl = q[(vma + V.V_FLAGS) >> 3]
            if write:
                return not fl & V.VM_WRITE
            return not fl & (V.VM_READ | V.VM_WRITE | V.VM_EXEC)

        VM_WRITE, VM_RWX, FL_PER_VMA = V.VM_WRITE, V.VM_READ | V.VM_WRITE | V.VM_EXEC, T.FL_PER_VMA
        vmacache: dict[int, list[Any]] = {}          # task id -> [seqnum, [(start, end, vma) x <= 4]]

        def vmacache_find(tid: int, mm_id: int, va: int) -> int:
            """The seed's per-task MRU VMA cache (4 entries): valid while the mm's
            vmacache_seqnum is unchanged (every VMA change bumps it).  Called inside an
            RCU read-side section; the caller locks and re-checks the VMA as for a tree
            lookup, so a stale hit only costs a retry."""
            seq = q[(mm_base + mm_id * mm_size + T.M_VMACACHE_SEQ) >> 3]
            c = vmacache.get(tid)
            if c is not None and c[0] == seq and c[2] == mm_id:
                for e in c[1]:
                    if e[0] <= va < e[1]:
                        return e[2]
            vma = mt_load(mm_id, va)
            if vma:
                ent = (q[(vma + V.V_START) >> 3], q[(vma + V.V_END) >> 3], vma)
                if c is None or c[0] != seq or c[2] != mm_id:
                    vmacache[tid] = [seq, [ent], mm_id]
                else:
                    lst = c[1]
                    lst.insert(0, ent)
                    if len(lst) > 4:
                        lst.pop()
            return vma

        rcu_me = arena.off("rcu") + 64 + cpu * 64       # this CPU's reader word (sync/rcu.py)
        rcu_gp = arena.off("rcu")
        store = at.store64
        TASK_REC, T_FLAGS = T.TASK_REC, T.T_FLAGS

        M_LOCK_SEQ, M_VMACACHE_SEQ = T.M_LOCK_SEQ, T.M_VMACACHE_SEQ
        V_LOCK, V_LOCK_SEQ, V_STATE, VMA_ATTACHED = V.V_LOCK, V.V_LOCK_SEQ, V.V_STATE, V.VMA_ATTACHED

        def fault_locked(mm_id: int, va: int, write: bool) -> None:
            """The mmap_lock path (lock_mm_and_find_vma + handle_mm_fault)."""
            mo = mm_off(mm_id)
            mmap_down_read(mo + T.M_MMAP_LOCK)
            try:
                vma = find_vma(mm_id, va)
                if not vma or q[(vma + V.V_START) >> 3] > va:
                    if vma and q[(vma + V.V_FLAGS) >> 3] & V.VM_GROWSDOWN:
                        segv(va, SEGV_MAPERR, write, "below a stack VMA (stack growth is not simulated)")
                    segv(va, SEGV_MAPERR, write, "no VMA covers the address")
                if access_error(vma, write):
                    segv(va, SEGV_ACCERR, write, f"VMA [{q[(vma + V.V_START) >> 3]:#x}, {q[(vma + V.V_END) >> 3]:#x}) "
                                                 f"is {V.format_vm_flags(q[(vma + V.V_FLAGS) >> 3] & 0xF)}")
                r = handle_mm_fault(mm_id, vma, va, write)
            finally:
                mmap_up_read(mo + T.M_MMAP_LOCK)
            finish(r, va, write)

        def finish(r: int, va: int, write: bool) -> None:
            """The fault's exit, after its VMA / mmap lock went: counts, errors, and the
            dirty throttle of fault_dirty_shared_page (balance_dirty_pages_ratelimited,
            which may sleep: never under a fault lock)."""
            if r & VM_FAULT_MAJOR:
                q[ev_major] += 1
            if r & VM_FAULT_DIRTY_SHARED:
                bd = ext.balance_dirty_pages_ratelimited
                if bd is not None:
                    installed[0] = 0         # the throttle may write the page back: walk again
                    bd(1)
            if r & VM_FAULT_OOM:
                ck = ext.check_killed                # pagefault_out_of_memory: a task the OOM
                if ck is not None:                   # killer chose (this fault's allocation
                    ck()                             # may have) dies of its SIGKILL instead
                raise T.VMError("ENOMEM", f"cpu{cpu}: page fault at {va:#x}: out of memory (VM_FAULT_OOM: "
                                          f"{oom_why[0]})")
            if r & VM_FAULT_SIGSEGV:
                segv(va, SEGV_ACCERR, write, "beyond the end of the object or file mapped there")

        def do_user_addr_fault(va: int, write: bool) -> int:
            """#PF from the MMU: fix the mapping (or SIGSEGV).  Returns the entry the fault
            installed when the access can use it at once (its TLB is filled from it),
            else -1 (the MMU walks again).

            per_vma: lock_vma_under_rcu() is inlined here (its only caller): find and
            read-lock the VMA covering va without mmap_lock, or fall back.  The RCU
            read-side section is inlined too (rcu_read_lock is a nesting counter in
            sync/rcu.py; faults never nest inside another section here), and so are the
            VMA cache's hit and vma_start_read() (fails if the VMA is write-locked --
            vm_lock_seq == mm_lock_seq -- or its rwsem cannot be read-locked; re-checks
            the sequence after locking; a detached VMA is vma_lock_miss and a retry)."""
            tid, mm_id = cur
            fetch_add(ev_pgfault_b, 1)
            if u32[(task_base + tid * TASK_REC + T_FLAGS) >> 2]:    # only a flag set needs check_killed
                ck = ext.check_killed
                if ck is not None:
                    ck()
            if mm_id <= 0:
                segv(va, SEGV_MAPERR, write, "the task has no address space")
            installed[0] = 0
            if mode == FL_PER_VMA:
                mo = mm_base + mm_id * mm_size
                vma = 0                                  # lock_vma_under_rcu(mm_id, va)
                store(rcu_me, load(rcu_gp))
                try:
                    for _ in range(8):
                        v = 0
                        c = vmacache.get(tid)
                        if c is not None and c[2] == mm_id and c[0] == q[(mo + M_VMACACHE_SEQ) >> 3]:
                            for e in c[1]:
                                if e[0] <= va < e[1]:
                                    v = e[2]
                                    break
                        if not v:
                            v = vmacache_find(tid, mm_id, va)
                            if not v:
                                break
                        if tp:
                            tp("fault:vma_found")
                        seq = load(mo + M_LOCK_SEQ)                    # vma_start_read()
                        if load(v + V_LOCK_SEQ) == seq or not vma_down_read_trylock(v + V_LOCK):
                            break
                        if load(v + V_LOCK_SEQ) == load(mo + M_LOCK_SEQ):
                            vma_up_read(v + V_LOCK)
                            break
                        if load(v + V_STATE) != VMA_ATTACHED:          # detached: EAGAIN
                            vma_up_read(v + V_LOCK)
                            q[ev_vl_miss] += 1
                            vmacache.pop(tid, None)
                            continue
                        vw = v >> 3
                        if q[vw + W_MM] != mm_id or va < q[vw + W_START] or va >= q[vw + W_END]:
                            vma_up_read(v + V_LOCK)
                            break
                        vma = v
                        break
                finally:
                    store(rcu_me, 0)
                if vma:
                    if tp:
                        tp("fault:vma_locked")
                    fl = q[(vma >> 3) + W_FLAGS]                     # access_error(), inlined
                    if not fl & VM_WRITE if write else not fl & VM_RWX:
                        vma_up_read(vma + V_LOCK)
                        segv(va, SEGV_ACCERR, write, f"VMA flags {V.format_vm_flags(fl & 0xF)}")
                    try:
                        r = handle_mm_fault(mm_id, vma, va, write)
                    finally:
                        vma_up_read(vma + V_LOCK)
                    if not r & VM_FAULT_RETRY:
                        fetch_add(ev_vl_success_b, 1)
                        if r:
                            finish(r, va, write)
                        return installed[0] or -1
                    q[ev_vl_retry] += 1
                else:
                    q[ev_vl_abort] += 1
            elif mode == T.FL_SPECULATIVE and spf(mm_id, va, write):
                return installed[0] or -1
            installed[0] = 0
            fault_locked(mm_id, va, write)
            return installed[0] or -1

        def spf(mm_id: int, va: int, write: bool) -> bool:
            """The seed's speculative fault: True when handled without locks."""
            mo = mm_off(mm_id)
            seq = load(mo + mm_seq_off)
            if seq & 1:
                q[ev_spf_abort] += 1
                return False
            rcu_read_lock()
            try:
                if tp:
                    tp("spf:snapshot")
                vma = vmacache_find(cur[0], mm_id, va)
                if (not vma or load(vma + V.V_STATE) != V.VMA_ATTACHED or access_error(vma, write)
                        or load(mo + mm_seq_off) != seq):
                    q[ev_spf_abort] += 1
                    return False
                r = handle_mm_fault(mm_id, vma, va, write, seq)
            finally:
                rcu_read_unlock()
            if r & VM_FAULT_RETRY or load(mo + mm_seq_off) != seq:
                q[ev_spf_abort] += 1
                return False
            q[ev_spf_ok] += 1
            finish(r, va, write)
            return True

        # ------------------------------------------------------------ zap / free tables
        def zap_range(mm_id: int, start: int, end: int, gather: MmuGather) -> None:
            """unmap_page_range(): clear every entry in [start, end) of mm_id's tables."""
            root = q[(mm_base + mm_id * mm_size + T.M_PGD) >> 3]
            rss = [0, 0, 0, 0]
            n_anon = 0
            anon_gone: dict[int, int] = {}
            pages = gather.pages
            glog = gather.log
            gr = glog[1] if glog is not None else -1
            logged = gr >= 0                               # (a local's truth test: the per-PTE check)
            batch = gather.batch - len(gather.tables)     # (a logged gather's spill holds both)
            a = start
            while a < end:
                nxt = min(end, (a | ((1 << pte_shift) - 1)) + 1)
                table = walk(root, a)
                if table < 0:
                    a = nxt
                    continue
                lo = PM + table * PAGE_META_SIZE + 32
                ptl_lock(lo)
                try:
                    # one snapshot of the table's slots (an entry never becomes present
                    # without the PTE lock, held here); anonymous pages inline, the rest
                    # through kind_of/set_dirty: ~140 -> ~75 bytecodes a page
                    i0 = P8 + (table << 9) + ((a >> PAGE_SHIFT) & 511)
                    for k, e in enumerate(q[i0 : i0 + ((nxt - a) >> PAGE_SHIFT)].tolist()):
                        if not e:
                            continue
                        if logged and e & _P_OR_NONE and not e & _PAGE_SPECIAL:
                            # a logged gather names the page and its PTE before the xchg
                            # (a2 = the entry + 1 and, above bit 48, the page's spill
                            # slot, until the step counts the page): a kill from outside
                            # before the step leaves the PTE saying whether the xchg
                            # landed, one after it a slot the step already counts
                            # (mm/vm/recover.py)
                            q[spg + len(pages)] = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                            q[gr + 3] = (i0 + k + 1) | len(pages) << 48
                        e = xchg((i0 + k) << 3, 0)
                        if not e & _P_OR_NONE:
                            zs = ext.zap_swap                  # swap entry: its slot goes
                            if zs is not None:
                                zs(mm_id, e)
                            continue
                        if e & _PAGE_SPECIAL:
                            continue
                        pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                        pb = PM + pfn * PAGE_META_SIZE
                        if gr < 0 and q[(pb + P_MAPPING) >> 3] & PAGE_MAPPING_ANON:
                            if fetch_sub32(pb + P_MAPCOUNT, 1) == 1:
                                nid = u8[pb + P_NODE]
                                anon_gone[nid] = anon_gone.get(nid, 0) + 1
                            n_anon += 1
                        else:                                  # (a logged gather: every page here)
                            kind = kind_of(pfn)
                            if e & _PAGE_DIRTY and kind == KIND_FILE:
                                set_dirty(pfn)
                            if fetch_sub32(pb + P_MAPCOUNT, 1) == 1:
                                i64[ns + u8[pb + P_NODE] * NS + (NR_ANON if kind == KIND_ANON else NR_MAPPED)] -= 1
                            if gr >= 0:
                                q[gr + 7] = len(pages) + 1
                                q[gr + 3] = 0
                                fetch_add(mm_base + mm_id * mm_size + RSS_ME + 8 * kind, _U64)   # at once
                            else:
                                rss[kind] += 1
                        pages.append(pfn)
                        if len(pages) >= batch:
                            cut = a + ((k + 1) << PAGE_SHIFT)
                            break
                finally:
                    ptl_unlock(lo)
                if len(pages) >= batch:                 # the gather is full: flush, go on after it
                    gather.add_range(a, cut)
                    gather.flush()
                    pages = gather.pages
                    a = cut
                    continue
                gather.add_range(a, nxt)
                a = nxt
            rss[KIND_ANON] += n_anon
            for nid, n in anon_gone.items():                   # nr_anon_pages, per node, once
                i64[ns_anon + nid * NS] -= n
            mo = mm_base + mm_id * mm_size + RSS_ME
            for k in range(4):
                if rss[k]:
                    fetch_add(mo + 8 * k, (-rss[k]) & _U64)

        def free_pgd_range(mm_id: int, addr: int, end: int, floor: int, ceiling: int, gather: MmuGather) -> None:
            """free_pgd_range(): free the tables wholly inside [floor, ceiling) that cover
            [addr, end) (their entries are already clear), bottom-up, clearing the parent
            entry under page_table_lock; the pages go to the gather (freed after the flush)."""
            root = q[(mm_base + mm_id * mm_size + T.M_PGD) >> 3]
            mo = mm_base + mm_id * mm_size + T.M_PTL
            ptl = locks.ptl

            def free_level(table: int, level: int, lo: int, hi: int, floor_: int, ceil_: int) -> None:
                # table is a level-`level` table; free children (level-1 tables) covering [lo, hi)
                sh = level_shift(level)
                size = 1 << sh
                a = lo & ~(size - 1)
                while a < hi:
                    nxt = a + size
                    i = P8 + (table << 9) + ((a >> sh) & 511)
                    e = q[i]
                    if e & _PAGE_PRESENT:
                        child = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                        if level > 2:
                            free_level(child, level - 1, max(a, lo), min(nxt, hi), floor_, ceil_)
                        # the child table may go if its whole span lies in [floor, ceiling)
                        if a >= floor_ and (ceil_ == 0 or nxt <= ceil_) and table_empty(child):
                            ptl.lock(mo)
                            q[i] = 0
                            ptl.unlock(mo)
                            gather.add_table(child)
                    a = nxt

            fl = floor & ~((1 << level_shift(2)) - 1)
            if fl < floor:
                fl += 1 << level_shift(2)
            ce = ceiling & ~((1 << level_shift(2)) - 1) if ceiling else 0
            free_level(root, nr_levels, addr, end, fl if floor else 0, ce)

        def table_empty(table: int) -> bool:
            b = P8 + (table << 9)
            return not any(q[b : b + 512])

        def mmu_gather(mm_id: int, r: int = -1) -> MmuGather:
            """An mmu_gather; with a vm_gather record r (robust mode) its pages are logged
            and put one by one, else they go to free_pages_bulk in one call a flush."""
            return MmuGather(mm_id, flush_tlb_mm_range, put_page, free_pages_bulk, free_table, tp,
                             (q, r, spg) if r >= 0 else None)

        def gather_begin(mm_id: int) -> int:
            """A vm_gather record for an mmu_gather (-1 outside robust mode)."""
            return begin(_OP_GATHER, mm_id) if begin is not None else -1

        def gather_end(r: int) -> None:
            if r >= 0:
                log_end(r)

        # ------------------------------------------------------------ fork
        def copy_range(dst_mm: int, src_mm: int, vma: int, start: int, end: int, wrprotect: bool) -> int:
            """copy_page_range(): duplicate src's PTEs of [start, end) into dst (present
            pages: one more mapcount and reference each; private writable ones write-
            protected in both).  Returns -1 on ENOMEM (dst partially filled: the caller
            tears the child down)."""
            sroot = q[(mm_base + src_mm * mm_size + T.M_PGD) >> 3]
            droot = q[(mm_base + dst_mm * mm_size + T.M_PGD) >> 3]
            a = start
            while a < end:
                nxt = min(end, (a | ((1 << pte_shift) - 1)) + 1)
                st = walk(sroot, a)
                if st < 0:
                    a = nxt
                    continue
                dt = walk_alloc(dst_mm, droot, a)
                if dt < 0:
                    return -1
                lo = PM + st * PAGE_META_SIZE + 32
                ptl_lock(lo)
                try:
                    sb, db = P8 + (st << 9), P8 + (dt << 9)
                    for va in range(a, nxt, PAGE_SIZE):
                        k = (va >> PAGE_SHIFT) & 511
                        e = q[sb + k]
                        if not e:
                            continue
                        if not e & _P_OR_NONE:
                            ds = ext.dup_swap             # swap/migration entries are copied
                            if ds is not None:
                                ds(e)
                            q[db + k] = e
                            continue
                        if e & _PAGE_SPECIAL:
                            q[db + k] = e
                            continue
                        pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                        if wrprotect and e & _PAGE_RW:
                            e = e & ~_PAGE_RW
                            q[sb + k] = e
                        map_account(dst_mm, pfn, kind_of(pfn))
                        q[db + k] = e
                finally:
                    ptl_unlock(lo)
                a = nxt
            return 0

        # ------------------------------------------------------------ mremap / madvise / mlock
        def move_page_tables(mm_id: int, old: int, new: int, length: int) -> int:
            """move_page_tables(): every entry of [old, old + length) moves to the same
            offset at new (references and mapcounts unchanged); the old range is flushed.
            Returns the length moved: < length when a destination table could not be had
            (the entries before it moved; the caller moves them back).  Each entry moves
            whole (no fault point between its clear and its store), so a second call
            finishes what a dead CPU's first one began."""
            root = q[(mm_base + mm_id * mm_size + T.M_PGD) >> 3]
            for k in range(0, length, PAGE_SIZE):
                st = walk(root, old + k)
                if st < 0:
                    continue
                si = P8 + (st << 9) + (((old + k) >> PAGE_SHIFT) & 511)
                if not q[si]:
                    continue
                dt = walk_alloc(mm_id, root, new + k)
                if dt < 0:
                    flush_tlb_mm_range(mm_id, old, old + k)
                    return k
                lo_s = PM + st * PAGE_META_SIZE + 32
                lo_d = PM + dt * PAGE_META_SIZE + 32
                ptl_lock(lo_s)
                try:
                    e = xchg(si << 3, 0)
                finally:
                    ptl_unlock(lo_s)
                if lo_d != lo_s:
                    ptl_lock(lo_d)
                try:
                    q[P8 + (dt << 9) + (((new + k) >> PAGE_SHIFT) & 511)] = e
                finally:
                    if lo_d != lo_s:
                        ptl_unlock(lo_d)
            flush_tlb_mm_range(mm_id, old, old + length)
            return length

        def for_each_present(mm_id: int, start: int, end: int, fn: Callable[[int, int, int], None]) -> None:
            """Call fn(index, entry, va) for every present entry, under each table's lock."""
            root = q[(mm_base + mm_id * mm_size + T.M_PGD) >> 3]
            a = start
            while a < end:
                nxt = min(end, (a | ((1 << pte_shift) - 1)) + 1)
                table = walk(root, a)
                if table >= 0:
                    lo = PM + table * PAGE_META_SIZE + 32
                    ptl_lock(lo)
                    try:
                        base = P8 + (table << 9)
                        for va in range(a, nxt, PAGE_SIZE):
                            i = base + ((va >> PAGE_SHIFT) & 511)
                            e = q[i]
                            if e & _PAGE_PRESENT and not e & _PAGE_SPECIAL:
                                fn(i, e, va)
                    finally:
                        ptl_unlock(lo)
                a = nxt

        def mkclean_range(mm_id: int, start: int, end: int, top: int = 0) -> int:
            """MADV_FREE's madvise_free_pte_range over this mm's anonymous pages (of the
            VMA's own object `top` when given: a page of a backing object is shared with
            another mm's view and stays): a dirty folio is cleaned only if this is its
            only mapping and it is not in the swap cache (folio_free_swap is not
            modelled: such a folio is skipped), each PTE made old and clean (TLB flushed
            before returning), then folio_mark_lazyfree (reclaim's hook moves the folio
            to the file LRU without PG_swapbacked; without reclaim the flag is just
            cleared).  Returns the folios marked lazily freeable."""
            mark = ext.mark_lazyfree
            held: list[int] = []
            n = [0]

            def one(i: int, e: int, va: int) -> None:
                pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                m = q[PM8 + pfn * MW + i_map]
                if not m & PAGE_MAPPING_ANON or (top and m & ~3 != top):
                    return
                b4 = PM4 + pfn * MW4
                fl = u32[b4]
                if not fl & PG_swapbacked:
                    return                                   # already lazily freeable
                if fl & (PG_swapcache | PG_dirty):
                    if fl & PG_swapcache or u32[b4 + 3] != 1:
                        return
                    if fetch_or32(b4 << 2, PG_locked) & PG_locked:    # folio_trylock
                        return
                    at.fetch_and32(b4 << 2, ~(PG_dirty | PG_locked) & 0xFFFFFFFF)
                while e & (_PAGE_DIRTY | _PAGE_ACCESSED):        # clear_young_dirty_ptes
                    seen = at.cas64(i << 3, e, e & ~(_PAGE_DIRTY | _PAGE_ACCESSED) & _U64)
                    if seen == e:
                        break
                    e = seen
                if mark is None:
                    at.fetch_and32(b4 << 2, ~PG_swapbacked & 0xFFFFFFFF)
                    n[0] += 1
                else:
                    fetch_add32((b4 + 2) << 2, 1)            # folio_get: the PTE lock pins it now
                    held.append(pfn)

            for_each_present(mm_id, start, end, one)
            flush_tlb_mm_range(mm_id, start, end)
            if held:
                n[0] += mark(held)                           # drops the references
            return n[0]

        def mlock_range(mm_id: int, start: int, end: int, on: bool) -> int:
            """PG_mlocked on every page mapped in the range (mlock_folio / munlock_folio)."""
            n = [0]

            def one(i: int, e: int, va: int) -> None:
                pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                if on:
                    old = fetch_or32((PM4 + pfn * MW4) << 2, PG_mlocked)
                    n[0] += not old & PG_mlocked
                else:
                    old = at.fetch_and32((PM4 + pfn * MW4) << 2, ~PG_mlocked & 0xFFFFFFFF)
                    n[0] += bool(old & PG_mlocked)

            for_each_present(mm_id, start, end, one)
            return n[0]

        self.handle_mm_fault, self.do_user_addr_fault = handle_mm_fault, do_user_addr_fault
        self.zap_range, self.free_pgd_range = zap_range, free_pgd_range
        self.mmu_gather, self.copy_range, self.kind_of = mmu_gather, copy_range, kind_of
        self.gather_begin, self.gather_end, self.unmap_account = gather_begin, gather_end, unmap_account
        self.log = lg
        self.map_account, self.unmap_account, self.anon_prepare = map_account, unmap_account, anon_prepare
        self.set_dirty, self.walk, self.move_page_tables = set_dirty, walk, move_page_tables
        self.mkclean_range, self.mlock_range, self.for_each_present = mkclean_range, mlock_range, for_each_present
