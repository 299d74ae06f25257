"""Locks built on atomics in the arena: spinlock, rwlock, seqcount, and lock_stat.

Spinlocks come in two kinds behind one constructor, `SpinLock(arena, slot, cpu)`: the
test-and-set lock (sync/spinlock.py) and the queued MCS spinlock (sync/qspinlock.py),
chosen per lock class by the arena config `locks` (scenario section [locks]:
`spinlock = "tas" | "qspinlock"`, `classes = {"&zone->lock" = "qspinlock", ...}`).

Wait hook (sync/waithook.py): `set_wait_hook(fn)` installs a per-CPU function (no
arguments, cheap, thread-safe, takes no arena lock) that every lock wait loop calls
while it waits -- the TAS lock's spin, yield and sleep phases, the rwlock's backoff, the
queued spinlock's spin phases and, while blocked on its semaphore, at least every
HOOK_BLOCK_S (2 ms).  It is how a simulated CPU waiting for a lock still answers
TLB-shootdown IPIs, as a real CPU spinning with interrupts enabled does.
`set_wait_hook(None)` removes it; the call returns the previous hook.

The whole system's lock order (outer first; indentation = "may be taken while holding
the line above"; like mm/rmap.c's "Lock ordering in mm").  Each module states its own
part and why; this tree is the union, and nothing takes locks in another order.

    vmap_purge_lock                    mm/vm/vmalloc.py     one purger: lazy lists taken, one flush, erase
      &vbq->lock (per CPU, embedded)   mm/vm/vmalloc.py     a CPU's vmap_block queue
        &vb->lock (per block, embedded)                     a block's free/dirty counts and bitmaps
      free_vmap_area_lock (per slice)  mm/vm/vmalloc.py     a node slice's maple tree (gaps = free space),
                                                            purge list, area flags; SLUB and the page
                                                            allocator (vmap_area / maple_node objects) inside
    slab_mutex                         mm/slab/slab_common.py  cache table (create/destroy/lookup)
      pcs lock (per cache x CPU CAS, trylock)  mm/slab/slub.py  per-CPU sheaves main/spare
        &barn->lock (per cache x node)          a node's full/empty sheaf lists
      c->lock  (per cache x CPU CAS)   mm/slab/slub.py      c->slab, c->partial, magazine
        &n->list_lock (per cache x node)               node partial lists, discard
          pcp state (per CPU x zone CAS: IDLE->BUSY by its owner, IDLE->OFFLINE by a drainer)
            &zone->lock  (per zone)    mm/pmm/page_alloc.py free_area lists, nr_free, pageblocks
    kfence_freelist_lock               mm/san/kfence.py     the KFENCE pool's free list (allocations; frees
                                                            push lock-free); a leaf, reached
                                                            from a slab allocation under any lock above
    lock_storm_lock, fault_lock        workers/workloads  leaves: nothing nests inside
    mpol_table_lock                    mm/numa/numa_types.py  policy records, shared-policy
                                       lists: a leaf, taken under mmap_lock (mm/numa/__init__.py
                                       has NUMA's part: mmap_lock -> PG_locked -> obj lock -> ptlock)

Embedded locks (sync/objlock.py) live inside arena objects and keep lock_stat per class
and per CPU (sync/lockclass.py); slot locks (spinlock.py, rwlock.py) have a table slot.
The embedded rw_semaphore (mmap_lock, the per-VMA lock) has Linux's wait list and
hand-off (a waiter is not overtaken for ever), the embedded spinlock a reservation
for its longest-waiting CPU.
Every wait loop answers the waiting CPU's IPIs (sync/waithook.py), so a TLB shootdown
issued under a lock never deadlocks against a CPU waiting for that lock.
RCU (sync/rcu.py) protects lock-free walks of VMA trees, object page trees and VMA
records: they are freed only after every CPU that might be reading them has left its
read-side section.

Lockless (no lock at all, see each module): kmem_cache_cpu freelist|tid word (one CAS),
the slab's freelist|inuse|frozen word (remote free), struct page refcount/mapcount
(atomics), per-CPU counters (owner writes, readers sum), run control words in the
arena header (the coordinator writes, workers read), cross-CPU rings (SPSC: producer
owns tail, consumer owns head).

Rules that hold everywhere: two locks of the same class are never held at once; no
lock is held across a blocking call, a sleep, or a process boundary; a lock is never
taken in a signal handler.  A dead owner is reported (LockOwnerDead / the coordinator's
WorkerDied names the locks the dead process held); force_unlock exists for recovery
but leaves the protected data to the invariant checkers.
"""

from aerosync.sync.waithook import set_wait_hook, wait_hook

__all__ = ["set_wait_hook", "wait_hook"]
