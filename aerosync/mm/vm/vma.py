"""VMAs: the vm_area_struct record, its per-VMA lock, and the VMA tree operations.

Models: include/linux/mm_types.h (vm_area_struct), include/linux/mm.h (VM_* flags,
vma_start_read / vma_start_write / vma_end_read, vma_mark_detached), mm/mmap_lock.c
(lock_vma_under_rcu), mm/vma.c (__split_vma, vma_merge_new_range /
vma_merge_existing_range's mergeability rules, vma_iter_store, vma_complete).
Unit: a VMA, a SLUB object of the "vm_area_struct" cache identified by its arena
offset, stored in the mm's maple tree for the range [vm_start, vm_end - 1].

Record (VMA_SIZE = 192 bytes)::

      0 vm_start u64      8 vm_end u64      16 vm_mm u64 (mm id)    24 vm_flags u64
     32 vm_page_prot u64  40 vm_pgoff u64 (page offset in vm_object / the file)
     48 vm_object u64 (object offset; 0 = none yet, anonymous private before its first
        fault -- then installed with a CAS, any faulting CPU)
     56 vm_file u64 (file id + 1; 0 = anonymous)
     64 vm_lock (ObjRWSem word, owner at 72)       80 vm_lock_seq u64
     88 vm_state u64 (VMA_FREE / VMA_ATTACHED / VMA_DETACHED)
     96 vm_policy u64 (mm/numa: a mempolicy, 0 = the task's)
    104 obj_next u64 / 112 obj_prev u64: the object's VMA list (under obj->lock)
    120 numab u64 (NUMA balancing scan state)    128 ra_prev u64 (readahead: last index)
    136..191 spare

Per-VMA locking (Linux 6.4-6.14's rwsem form): a writer holds mmap_lock for write, whose
word mm_lock_seq it made odd; vma_start_write takes the VMA's rwsem for write (waiting
for readers to leave), stores vm_lock_seq = mm_lock_seq and releases it: the VMA is
then "write-locked" until mmap_write_unlock bumps mm_lock_seq again.  A reader
(vma_start_read) fails if vm_lock_seq == mm_lock_seq, else read-trylocks the rwsem and
checks again; a detached VMA (removed from the tree) makes it fail with EAGAIN
(vma_lock_miss, the lookup is retried).  lock_vma_under_rcu looks the VMA up in the
maple tree without mmap_lock under RCU, locks it, and checks that it belongs to the mm
and covers the address.  VMA records are freed through call_rcu, so a lock-free lookup
never reads a recycled VMA.

Who writes what: vm_start/vm_end/vm_pgoff/vm_flags/vm_page_prot change only under
mmap_lock for write and after vma_start_write; vm_object goes from 0 to an object once
(CAS) under mmap_lock or the VMA lock for read; the state word under mmap_lock write.

Merge rules (is_mergeable_vma + anon/object rules, mm/vma.c): equal vm_flags (ignoring
VM_SOFTDIRTY), same file, same vm_object or (for the new range) no object yet,
contiguous vm_pgoff, same policy; a VMA with an object merges only when that object is
mapped by this VMA alone (refcount 1, no shadow children), so an object never covers
two VMAs' pages at different offsets.
"""

from __future__ import annotations

from typing import Any

from aerosync.sync.rcu import RCU_FREE_VMA

__all__ = [
    "VMA_SIZE", "V_START", "V_END", "V_MM", "V_FLAGS", "V_PROT", "V_PGOFF", "V_OBJECT", "V_FILE", "V_LOCK",
    "V_LOCK_SEQ", "V_STATE", "V_POLICY", "V_OBJ_NEXT", "V_OBJ_PREV", "V_NUMAB", "V_RA_PREV",
    "VMA_FREE", "VMA_ATTACHED", "VMA_DETACHED",
    "VM_NONE", "VM_READ", "VM_WRITE", "VM_EXEC", "VM_SHARED", "VM_MAYREAD", "VM_MAYWRITE", "VM_MAYEXEC",
    "VM_MAYSHARE", "VM_GROWSDOWN", "VM_UFFD_MISSING", "VM_PFNMAP", "VM_UFFD_WP", "VM_LOCKED", "VM_IO",
    "VM_SEQ_READ", "VM_RAND_READ", "VM_DONTCOPY", "VM_DONTEXPAND", "VM_LOCKONFAULT", "VM_ACCOUNT",
    "VM_NORESERVE", "VM_HUGETLB", "VM_SYNC", "VM_WIPEONFORK", "VM_DONTDUMP", "VM_SOFTDIRTY", "VM_MIXEDMAP",
    "VM_HUGEPAGE", "VM_NOHUGEPAGE", "VM_MERGEABLE", "VM_STACK", "VM_ACCESS_FLAGS", "VM_LOCKED_MASK",
    "VM_FLAG_NAMES", "MNEMONICS", "format_vm_flags",
]

VMA_SIZE = 192
V_START, V_END, V_MM, V_FLAGS, V_PROT, V_PGOFF, V_OBJECT, V_FILE = 0, 8, 16, 24, 32, 40, 48, 56
V_LOCK, V_LOCK_SEQ, V_STATE, V_POLICY, V_OBJ_NEXT, V_OBJ_PREV, V_NUMAB, V_RA_PREV = (
    64, 80, 88, 96, 104, 112, 120, 128)
VMA_FREE, VMA_ATTACHED, VMA_DETACHED = 0, 1, 2

# include/linux/mm.h
VM_NONE = 0x0
VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_MAYSHARE = 0x80
VM_GROWSDOWN = 0x100
VM_UFFD_MISSING = 0x200
VM_PFNMAP = 0x400
VM_UFFD_WP = 0x1000
VM_LOCKED = 0x2000
VM_IO = 0x4000
VM_SEQ_READ = 0x8000
VM_RAND_READ = 0x10000
VM_DONTCOPY = 0x20000
VM_DONTEXPAND = 0x40000
VM_LOCKONFAULT = 0x80000
VM_ACCOUNT = 0x100000
VM_NORESERVE = 0x200000
VM_HUGETLB = 0x400000
VM_SYNC = 0x800000
VM_WIPEONFORK = 0x2000000
VM_DONTDUMP = 0x4000000
VM_SOFTDIRTY = 0x8000000
VM_MIXEDMAP = 0x10000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000
VM_STACK = VM_GROWSDOWN
VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT

VM_FLAG_NAMES = {
    VM_READ: "VM_READ", VM_WRITE: "VM_WRITE", VM_EXEC: "VM_EXEC", VM_SHARED: "VM_SHARED",
    VM_MAYREAD: "VM_MAYREAD", VM_MAYWRITE: "VM_MAYWRITE", VM_MAYEXEC: "VM_MAYEXEC", VM_MAYSHARE: "VM_MAYSHARE",
    VM_GROWSDOWN: "VM_GROWSDOWN", VM_UFFD_MISSING: "VM_UFFD_MISSING", VM_PFNMAP: "VM_PFNMAP",
    VM_UFFD_WP: "VM_UFFD_WP", VM_LOCKED: "VM_LOCKED", VM_IO: "VM_IO", VM_SEQ_READ: "VM_SEQ_READ",
    VM_RAND_READ: "VM_RAND_READ", VM_DONTCOPY: "VM_DONTCOPY", VM_DONTEXPAND: "VM_DONTEXPAND",
    VM_LOCKONFAULT: "VM_LOCKONFAULT", VM_ACCOUNT: "VM_ACCOUNT", VM_NORESERVE: "VM_NORESERVE",
    VM_HUGETLB: "VM_HUGETLB", VM_SYNC: "VM_SYNC", VM_WIPEONFORK: "VM_WIPEONFORK", VM_DONTDUMP: "VM_DONTDUMP",
    VM_SOFTDIRTY: "VM_SOFTDIRTY", VM_MIXEDMAP: "VM_MIXEDMAP", VM_HUGEPAGE: "VM_HUGEPAGE",
    VM_NOHUGEPAGE: "VM_NOHUGEPAGE", VM_MERGEABLE: "VM_MERGEABLE",
}

# fs/proc/task_mmu.c show_smap_vma_flags(): the two-letter VmFlags mnemonics, in order
MNEMONICS = (
    (VM_READ, "rd"), (VM_WRITE, "wr"), (VM_EXEC, "ex"), (VM_SHARED, "sh"), (VM_MAYREAD, "mr"),
    (VM_MAYWRITE, "mw"), (VM_MAYEXEC, "me"), (VM_MAYSHARE, "ms"), (VM_GROWSDOWN, "gd"), (VM_PFNMAP, "pf"),
    (VM_LOCKED, "lo"), (VM_IO, "io"), (VM_SEQ_READ, "sr"), (VM_RAND_READ, "rr"), (VM_DONTCOPY, "dc"),
    (VM_DONTEXPAND, "de"), (VM_LOCKONFAULT, "lf"), (VM_ACCOUNT, "ac"), (VM_NORESERVE, "nr"),
    (VM_HUGETLB, "ht"), (VM_SYNC, "sf"), (VM_WIPEONFORK, "wf"), (VM_DONTDUMP, "dd"), (VM_SOFTDIRTY, "sd"),
    (VM_MIXEDMAP, "mm"), (VM_HUGEPAGE, "hg"), (VM_NOHUGEPAGE, "nh"), (VM_MERGEABLE, "mg"),
    (VM_UFFD_MISSING, "um"), (VM_UFFD_WP, "uw"),
)


def format_vm_flags(flags: int) -> str:
    return "|".join(n for b, n in VM_FLAG_NAMES.items() if flags & b) or "VM_NONE"


def vma_summary(arena: Any, vma: int) -> dict[str, int]:
    """The fields of one VMA record as a dict (views, checker, messages)."""
    q = arena.u64
    return {k: q[(vma + o) >> 3] for k, o in (("start", V_START), ("end", V_END), ("mm", V_MM),
                                                 ("flags", V_FLAGS), ("prot", V_PROT), ("pgoff", V_PGOFF),
                                                 ("object", V_OBJECT), ("file", V_FILE), ("state", V_STATE),
                                                 ("lock_seq", V_LOCK_SEQ), ("policy", V_POLICY))}


V_FNEXT, V_FPREV = 136, 144          # the file's i_mmap list (vnode object's VMA list)


class VmaOps:
    """Simulated CPU `cpu`'s VMA record and tree operations (closures bound once).

      tree(mm_id) -> MapleTree            the mm's VMA tree (handle cached per mm id)
      load(mm_id, addr) -> vma | 0        lock-free: the VMA covering addr (RCU)
      find_vma(mm_id, addr) -> vma | 0    the first VMA with vm_end > addr
      vma_lookup(mm_id, addr) -> vma | 0  the VMA covering addr
      between(mm_id, start, end) -> [vma] the VMAs meeting [start, end), in order
      prev_of / next_of(mm_id, vma) -> vma | 0
      alloc() -> vma | 0 (ENOMEM)  free(vma) (after RCU)  dup(vma) -> copy | 0
      insert(mm_id, vma) -> 0 | -ENOMEM   store [start, end - 1] -> vma
      erase(mm_id, start, end) -> 0 | -ENOMEM
      start_write(mm_id, vma)             vma_start_write (caller holds mmap_lock write)
      start_write_trylock(mm_id, vma)     the same without waiting for readers (False: busy)
    The tree's writer lock is the mm's mmap_lock (write): every writer here is called
    with it held; the readers take nothing (RCU).
    """

    def __init__(self, arena: Any, cpu: int, vma_cache: Any, maple_cache: Any, rcu: Any, vma_lock: Any) -> None:
        from aerosync.lib.maple_tree import MapleTree
        from aerosync.mm.slab.slab_common import VBASE
        from aerosync.mm.vm import mm_types as T

        self.arena, self.cpu = arena, cpu
        q, u8, at = arena.u64, arena.u8, arena.atomic
        load, store = at.load64, at.store64
        phys = arena.off("physmem")
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        zero = bytes(VMA_SIZE)
        v_alloc, v_free = vma_cache.alloc, vma_cache.free
        n_alloc, n_free = maple_cache.alloc, maple_cache.free
        call_rcu = rcu.call_rcu
        down_write, up_write = vma_lock.down_write, vma_lock.up_write
        down_write_trylock = vma_lock.down_write_trylock
        trees: dict[int, Any] = {}

        def node_alloc() -> int:
            a = n_alloc()
            return phys + (a - VBASE) if a else -1

        def node_free(off: int) -> None:
            n_free(VBASE + (off - phys))

        def node_rcu_free(off: int) -> None:
            call_rcu(node_free, off)

        def tree(mm_id: int) -> Any:
            t = trees.get(mm_id)
            if t is None:
                t = MapleTree(arena, mm_base + mm_id * mm_size + T.M_MT, node_alloc, node_free, node_rcu_free)
                trees[mm_id] = t
            return t

        def load_vma(mm_id: int, addr: int) -> int:
            t = trees.get(mm_id) or tree(mm_id)
            return t.mtree_load(addr)

        finds: dict[int, Any] = {}       # mm -> its tree's mt_find_entry (forgotten with the tree)

        def find_vma(mm_id: int, addr: int) -> int:
            """The VMA containing addr or the first above it (mt_find with no bounds built)."""
            f = finds.get(mm_id)
            if f is None:
                f = finds[mm_id] = tree(mm_id).mt_find_entry
            return f(addr)

        def vma_lookup(mm_id: int, addr: int) -> int:
            t = trees.get(mm_id) or tree(mm_id)
            return t.mtree_load(addr)

        def between(mm_id: int, start: int, end: int) -> list[int]:
            if end <= start:
                return []
            return [e for _f, _l, e in tree(mm_id).mt_for_each(start, end - 1)]

        def prev_of(mm_id: int, vma: int) -> int:
            return tree(mm_id).mas_prev(q[(vma + V_START) >> 3])[0]

        def next_of(mm_id: int, vma: int) -> int:
            end = q[(vma + V_END) >> 3]
            return tree(mm_id).mt_find(end)[0]

        def alloc() -> int:
            a = v_alloc()
            if not a:
                return 0
            o = phys + (a - VBASE)
            u8[o : o + VMA_SIZE] = zero
            return o

        def really_free(vma: int) -> None:
            q[(vma + V_STATE) >> 3] = VMA_FREE
            v_free(VBASE + (vma - phys))

        def free(vma: int) -> None:
            """vm_area_free(): readers may still hold it (lock-free walks): after RCU."""
            call_rcu(really_free, vma, RCU_FREE_VMA)

        def dup(vma: int) -> int:
            """vm_area_dup(): a copy with its own lock, not on any list, not attached."""
            n = alloc()
            if not n:
                return 0
            u8[n : n + VMA_SIZE] = u8[vma : vma + VMA_SIZE]
            for f in (V_LOCK, V_LOCK + 8, V_LOCK_SEQ, V_OBJ_NEXT, V_OBJ_PREV, V_FNEXT, V_FPREV):
                q[(n + f) >> 3] = 0
            q[(n + V_STATE) >> 3] = VMA_DETACHED
            return n

        def insert(mm_id: int, vma: int) -> int:
            r = tree(mm_id).mas_store_range(q[(vma + V_START) >> 3], q[(vma + V_END) >> 3] - 1, vma)
            if r == 0:
                store(vma + V_STATE, VMA_ATTACHED)
            return r

        def erase(mm_id: int, start: int, end: int) -> int:
            return tree(mm_id).mas_store_range(start, end - 1, 0)

        def start_write(mm_id: int, vma: int) -> None:
            """vma_start_write(): wait for the VMA's readers, then mark it write-locked
            until mmap_write_unlock moves mm_lock_seq on."""
            seq = load(mm_base + mm_id * mm_size + T.M_LOCK_SEQ)
            if load(vma + V_LOCK_SEQ) == seq:
                return
            down_write(vma + V_LOCK)
            store(vma + V_LOCK_SEQ, seq)
            up_write(vma + V_LOCK)

        def start_write_trylock(mm_id: int, vma: int) -> bool:
            """start_write() only if no reader is inside the VMA now (False: none taken)."""
            seq = load(mm_base + mm_id * mm_size + T.M_LOCK_SEQ)
            if load(vma + V_LOCK_SEQ) == seq:
                return True
            if not down_write_trylock(vma + V_LOCK):
                return False
            store(vma + V_LOCK_SEQ, seq)
            up_write(vma + V_LOCK)
            return True

        def forget(mm_id: int) -> None:
            trees.pop(mm_id, None)
            finds.pop(mm_id, None)

        self.tree, self.load, self.find_vma, self.vma_lookup, self.between = (tree, load_vma, find_vma, vma_lookup,
                                                                             between)
        self.prev_of, self.next_of, self.alloc, self.free, self.dup = prev_of, next_of, alloc, free, dup
        self.insert, self.erase, self.start_write, self.forget = insert, erase, start_write, forget
        self.start_write_trylock = start_write_trylock
        self.node_alloc, self.node_free, self.node_rcu_free = node_alloc, node_free, node_rcu_free
        self.free_now = really_free             # no reader can reach it (a recovery's sweep)
