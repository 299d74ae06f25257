"""SLUB in the arena, the allocator: slabs, the lockless per-CPU fast path, partial lists,
remote free, per-CPU magazines, per-CPU sheaves and barns, bulk and caller-owned sheaves.

Models: mm/slub.c v6.19 (slab_alloc_node, ___slab_alloc, get_partial_node,
get_any_partial, new_slab, deactivate_slab, __slab_free, put_cpu_partial,
__put_partials, flush_cpu_slab, alloc_from_pcs / free_to_pcs and the barn,
kmem_cache_alloc_bulk/free_bulk, kmem_cache_prefill_sheaf...).  Cache management --
configuration, the slab sections' layout and record offsets, the cache table
(kmem_cache_create/destroy/lookup), calculate_order / calculate_sizes, slub_debug
parsing, slabinfo -- is mm/slab/slab_common.py (mm/slab_common.c).  Unit: a cache id
(index in the cache table), a slab = its head pfn, an object = its index in the slab;
users see objects as simulated virtual addresses (`VBASE + pfn * 4096 + offset`, the
x86-64 direct map), never as Python objects.

API: the module-level functions (slab_init, kmem_cache_create, ...) are mm/slab/slab_common.py's.
Per simulated CPU: `Slub(arena, cpu, mm=None, irq=False, hook=None)`; `slub.cache(name|id)`
gives a `KmemCache` whose attributes are closures bound once:
  alloc(gfp=0) -> addr | 0                 free(addr)
  alloc_node(nid, gfp=0) -> addr | 0       alloc_bulk(n, gfp=0) -> list   free_bulk(addrs)
  prefill_sheaf(n) -> sheaf | -1           alloc_from_sheaf(sheaf, gfp=0) -> addr | 0
  refill_sheaf(sheaf, n) -> bool           return_sheaf(sheaf)     sheaf_size(sheaf)
  flush_cpu(cpu) (flush_cpu_slab of any CPU)  ksize(addr)   barn_shrink()
  alloc_orig(size, gfp) (debug caches: kmalloc's requested size kept as orig_size)
`irq=True` makes the handle of the CPU's "interrupt context" (a second thread of the
worker): it shares the CPU's state and has its own statistics line.

Lock order (outer first):
  1. slab_mutex ("slab_mutex", SpinLock, mm/slab/slab_common.py): the cache table
     (create/destroy/lookup by name while a cache is being created).
  2a. pcs lock (K_PCS_LOCK, per cache x CPU, caches with per-CPU sheaves): CAS 0 ->
     token; the owner only trylocks it (local_trylock: on failure the operation takes the
     normal path), a flushing CPU waits for it.  Protects the CPU's main/spare sheaves.
     Never held together with c->lock.
  2b. &barn->lock ("&barn->lock", SpinLock, per cache x node): the barn's full and empty
     sheaf lists; taken under the pcs lock or alone, nothing inside it.
  2. c->lock (kmem_cache_cpu lock word, per cache x CPU): CAS 0 -> token, held by the
     owner CPU's slow path (either context), by put_cpu_partial, or by a CPU flushing
     it.  Protects c->slab changes, c->partial, the magazine.  (Linux: local_lock
     cpu_slab->lock, which nests *inside* list_lock there; here no one takes c->lock
     under list_lock, so it is outer.)  No object is freed to a slab under it.
  3. n->list_lock ("&n->list_lock", SpinLock, per cache x node): n->partial list and
     nr_partial, the slabmeta list byte NODE_PARTIAL and links of slabs on it, and the
     decision to discard an empty node-partial slab.
  4. the page allocator's pcp / zone.lock (new_slab, discard_slab).
Two c->locks, or two list_locks, are never held at once.  The irq context takes list_locks
as owner IRQ_LOCK_CPU | cpu (a SpinLock word names pid and cpu, which its two threads
share): it waits while its task context holds one, as an interrupt waits for Linux's
spin_unlock_irqrestore.  (Its page allocator handle, MM(arena, cpu), still shares the
task's owner id for zone locks: see the report of the slab race hunt.)

Lockless protocol 1 -- kmem_cache_cpu.freelist_tid (u64 at cpu record + 0)::

    63                               32 31                                0
    +-----------------------------------+-----------------------------------+
    |  tid (u32, wraps)                 |  index of the first free object   |
    |  starts at cpu; += TID_STEP       |  of c->slab, NIL = 0xFFFFFFFF     |
    +-----------------------------------+-----------------------------------+

  TID_STEP = roundup_pow_of_two(nr_cpus), so tid % TID_STEP names the CPU (as Linux).
  Fast alloc reads the word first (one load gives tid and head together), then c->slab,
  then the head object's free pointer (a u32 index stored in the object, at `fpoff`),
  and CASes (head, tid) -> (next, tid + STEP).  Fast free writes the object's free
  pointer = head and CASes (head, tid) -> (obj, tid + STEP).  The CAS fails -- and the
  operation retries -- if anything touched this CPU's freelist since the read: another
  fast op of the same CPU (the irq context: the ABA case A-alloc, B-alloc, A-free leaves
  head == A but A's free pointer changed; the tid has moved 3 steps), or a flush by
  another CPU (it CASes the word to (NIL, tid + STEP)).  Free-pointer reads from a slab
  that is no longer ours read garbage from simulated memory, never fault, and are
  discarded by the failing CAS.
  c->slab rule: c->slab changes only under c->lock and together with a tid bump:
  detaching stores c->slab = NIL *then* CASes the word to (NIL, tid+STEP); installing
  stores the word (chain, tid+STEP) *then* c->slab.  A reader (word, then slab) that
  saw an old word fails its CAS; one that saw the new word sees NIL or the new slab
  (NIL sends it to the slow path).  While c->slab is NIL only c->lock holders write it.

Lockless protocol 2 -- slab freelist_counters (u64 at slabmeta + 0)::

    63 62            48 47            32 31                                0
    +--+---------------+---------------+-----------------------------------+
    |fz| objects (15)  | inuse (16)    | first free index (NIL=0xFFFFFFFF) |
    +--+---------------+---------------+-----------------------------------+

  fz (frozen) = the slab is a CPU's c->slab (6.8+: slabs on c->partial are *unfrozen*);
  inuse counts objects not on this freelist (cpu-freelist objects count as in use, as
  Linux).  Remote free (__slab_free): read the word, link obj -> freelist, CAS (idx,
  inuse-1).  The first free into a full unfrozen slab puts it on the *freeing* CPU's
  partial list (put_cpu_partial, under that CPU's c->lock, no list_lock); when that
  list already holds cpu_partial_slabs slabs they first go to their node lists
  (__put_partials, list_lock).  n->list_lock is taken *before* the CAS (and dropped on a
  retry) only when an unfrozen slab with free objects becomes empty: it is then removed
  and discarded if it is on its node's partial list (list byte NODE_PARTIAL, read under
  list_lock: only list_lock holders set or clear it) and the node has min_partial;
  empty slabs on a CPU's partial list stay there.  Under list_lock no one can take a
  node-partial slab off, so the decision made with the CAS stays valid.  get_freelist,
  freeze_slab and deactivate_slab's unfreeze are CAS loops too; deactivate_slab takes
  list_lock only to add the slab to the node list.  The list byte of a slab goes to
  NONE before a CAS that may leave it unfrozen and full: from then on a remote free
  may put it on its CPU's partial list and write the byte.

Slow path (___slab_alloc): magazine pop; c->slab (a slab of another node than a
kmalloc_node asked for is deactivated: ALLOC_NODE_MISMATCH); c->partial (slabs of
another node go back to their nodes); the node's partial list (get_partial_node: the
first slab frozen as c->slab, more onto c->partial until more than cpu_partial_slabs/2
moved); then -- unless __GFP_THISNODE -- other nodes' partial lists in the zonelist
order of mempolicy_slab_node() (the task's policy: Slub.slab_node, set by the owner of
the task's PolicyAllocator; the local node without one, and always in irq context)
from nodes with more than min_partial, gated by remote_node_defrag_ratio
(get_any_partial); then a new slab.  An explicit node first tries that node only
(try_thisnode), then with the caller's gfp.

Magazines (the seed's BSD/XNU layer, CONFIG_SLAB_MAG_SIZE = config slab_mag_size): a
per-CPU stack of object addresses of *local-node* objects freed outside the cpu slab.
Owner-only, under c->lock (one uncontended CAS), so a flushing CPU sees a whole
magazine.  Alloc order: cpu freelist CAS, magazine pop, slow path.  Free order: cpu
freelist CAS (object in c->slab), magazine push (when full, the older half is flushed
to the slabs first), __slab_free.  slab_mag_size = 0 disables the layer.

Sheaves (aerosync-c.md 4; linux-mm.md 3.6 prefill API): caller-owned records in the
"slabsheaf" section: state word (0 free, else owner cpu + 1), cache, size, capacity
SHEAF_CAPACITY, objects[].  prefill = bulk alloc; alloc_from_sheaf pops (never fails
while not empty); return = bulk free of the rest.  Objects in a sheaf count as allocated.

Per-CPU sheaves (Linux 6.18/6.19, config slab_percpu_sheaves, caches created with a
sheaf_capacity, never debug caches): records of the same pool with state SHEAF_PCS, a
CPU's main and spare (K_PCS) and each node's barn (MAX_FULL_SHEAVES full,
MAX_EMPTY_SHEAVES empty).  alloc pops main under the pcs trylock (empty: swap with the
spare, else a full sheaf from the barn for the empty one, else refill from the slabs);
free pushes local-node objects (full: swap, else trade with the barn, else flush).
alloc_bulk / free_bulk of such a cache go through them a sheaf-sized batch at a time
(alloc_from_pcs_bulk / free_to_pcs_bulk): without a refill or a new empty sheaf -- when
the barn cannot help, the rest comes from / goes to the slabs.
Objects in these sheaves are free (not counted as allocations); refills and flushes
move objects between sheaves and slabs without counting.  A cache has both layers
only if both knobs are on; the alloc order is then sheaves, cpu freelist, magazine.

Debug caches (any of SLAB_POISON / SLAB_RED_ZONE / SLAB_STORE_USER / SLAB_CONSISTENCY_
CHECKS, per cache or from config slub_debug) bypass cpu freelists and magazines: every
alloc and free takes n->list_lock (as Linux's debug caches); checks live in slab_debug.py.

Owner-only data: the statistics lines of the cpu record (one per context, plain
increments, summed on read); c->partial and the magazine (under c->lock).

Invariants (mm/slab/slab_check.py):
  S1  every slab (slabmeta cache id set) is a PG_slab head page, refcount >= 1, of the
      cache's order (or min order), its tails PG_tail naming it; every PG_slab page is a
      slab of a live cache (no orphans).
  S2  a slab's freelist holds distinct in-range indices; inuse == objects - its length.
  S3  list state: node-partial slabs (walked) are unfrozen with a list byte NODE_PARTIAL
      and nr_partial == walked; cpu slabs are frozen (CPU_SLAB), cpu partial slabs
      unfrozen (CPU_PARTIAL); unfrozen off-list slabs are full; c->lock and the pcs lock
      are free.
  S4  a cpu freelist holds distinct objects of c->slab, disjoint from its slab freelist;
      magazine and sheaf entries are distinct object starts of this cache's slabs, on no
      freelist; every per-CPU sheaf is referenced exactly once (a CPU's main or spare,
      or one barn list), barn counts match, barn "empty" sheaves are empty.
  S5  per cache: objects in slabs == slab freelists + cpu freelists + magazines +
      per-CPU sheaves + (allocs - frees, which includes caller-owned sheaves) +
      isolated (debug-quarantined) objects.
  S6  node counters nr_slabs / total_objects equal the slabs found.
  S7  every slab head is "allocated" for mm/pmm/check.py (refcount > 0, no buddy/pcp/
      reserved/tail flag, order byte == slab order).
Deliberate races: statistics are per-CPU, per-context plain increments; slabinfo
(mm/slab/slab_common.py) reads counters and lists without locks (as /proc/slabinfo is
approximate).

Size: ~1700 lines, above style-anchors 5.1's ~800: `_build` alone is ~1300 (the per-CPU
sheaves and barn added ~400 in issue 14), this docstring (the protocols) ~190, and the
import of slab_common's record offsets ~100 (one name a line).
The fast path, slow path, remote free, magazines, bulk, sheaves, flush and the debug-cache
path are closures over offsets bound once per (cache, CPU context) that call each other
directly (alloc -> alloc_retry -> alloc_slow -> install / unfreeze / new_slab; free ->
free_other -> mag_flush_locked -> slab_free; flush_cpu -> unfreeze / slab_free); split
across modules they would need those offsets passed or looked up again on every
operation (kmalloc64 fast-path pair ~1.4 us, bench slab).  Everything the closures do
not need is in mm/slab/slab_common.py.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from aerosync.mm import intent as I
from aerosync.mm.pmm.gfp import __GFP_COMP as _GFP_COMP
from aerosync.mm.pmm.gfp import __GFP_NOWARN as _GFP_NOWARN
from aerosync.mm.pmm.gfp import __GFP_THISNODE as _GFP_THISNODE
from aerosync.mm.pmm.gfp import __GFP_ZERO as _GFP_ZERO
from aerosync.mm.pmm.gfp import GFP_KERNEL, MAX_NR_ZONES
from aerosync.mm.pmm.page import PG_slab, PG_tail
from aerosync.mm.pmm.vm_event import NR_NODE_STATS, NR_SLAB_RECLAIMABLE, NR_SLAB_UNRECLAIMABLE, node_stat_base
from aerosync.mm.san.config import san_active
from aerosync.mm.san.slab_hooks import SlabSan
from aerosync.mm.slab import slab_debug as D
from aerosync.mm.slab.slab_common import (
    _HI,
    _LO,
    C_STATE,
    CACHE_FREE,
    CACHE_LIVE,
    FROZEN,
    K_FREELIST_TID,
    K_LOCK,
    K_MAG,
    K_MAG_COUNT,
    K_NR_PARTIAL,
    K_PARTIAL,
    K_PCS,
    K_PCS_LOCK,
    K_SLAB,
    K_STATS,
    LIST_CPU_PARTIAL,
    LIST_CPU_SLAB,
    LIST_NODE_PARTIAL,
    LIST_NONE,
    M_CACHE,
    M_ISOLATED,
    M_LIST,
    M_NEXT,
    M_NID,
    M_ORDER,
    M_PREV,
    M_WORD,
    MAX_FULL_SHEAVES,
    N_BARN_EMPTY,
    N_BARN_FULL,
    N_BARN_LOCK,
    N_BARN_NR_EMPTY,
    N_BARN_NR_FULL,
    N_HEAD,
    N_LOCK,
    N_NR_PARTIAL,
    N_NR_SLABS,
    N_TAIL,
    N_TOTAL_OBJS,
    NIL32,
    NIL64,
    NR_STATS,
    SH_CACHE,
    SH_CAP,
    SH_NEXT,
    SH_OBJS,
    SH_SIZE,
    SH_STATE,
    SHEAF_CAPACITY,
    SHEAF_PCS,
    SHEAF_REC,
    SLAB_DEBUG_FLAGS,
    SLAB_RECLAIM_ACCOUNT,
    SMETA,
    ST_ALLOC,
    ST_ALLOC_MAG,
    ST_ALLOC_NODE_MISMATCH,
    ST_ALLOC_PARTIAL,
    ST_ALLOC_PCS,
    ST_ALLOC_SLAB,
    ST_ALLOC_SLOW,
    ST_BARN_GET,
    ST_BARN_GET_FAIL,
    ST_BARN_PUT,
    ST_BARN_PUT_FAIL,
    ST_CAS_FAIL,
    ST_CPU_PARTIAL,
    ST_CPU_PARTIAL_DRAIN,
    ST_CPU_PARTIAL_FREE,
    ST_CPU_PARTIAL_NODE,
    ST_DEACTIVATE,
    ST_FLUSH,
    ST_FREE,
    ST_FREE_MAG,
    ST_FREE_PCS,
    ST_FREE_SLAB,
    ST_FREE_SLOW,
    ST_MAG_FLUSH,
    ST_SHEAF_FLUSH,
    ST_SHEAF_REFILL,
    VBASE,
    SlabError,
    _cache_off,
    _cpu_off,
    _geo,
    _node_off,
    cache_info,
    kmem_cache_lookup,
    live_caches,
    slab_stats,
)
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT
from aerosync.sync.spinlock import CPU_COORD, SpinLock

__all__ = ["Slub", "KmemCache"]

IRQ_LOCK_CPU = 0x8000                 # SpinLock owner id of cpu c's irq context: IRQ_LOCK_CPU | c
# intent log ops and fault points (mm/intent.py; mm/slab/recover.py rolls them forward or back)
_OP_NEW, _OP_DISCARD, _OP_SLOW = I.OP["slab_new"], I.OP["slab_discard"], I.OP["slab_alloc_slow"]
_OP_DEACT, _OP_GETP, _OP_FREE = I.OP["slab_deactivate"], I.OP["slab_get_partial"], I.OP["slab_free"]
_OP_PUTP, _OP_MAGF = I.OP["slab_put_partials"], I.OP["slab_mag_flush"]
_OP_SHF, _OP_SHR = I.OP["slab_sheaf_flush"], I.OP["slab_sheaf_refill"]
_OP_DBGF, _OP_PCSF = I.OP["slab_debug_free"], I.OP["slab_pcs_free"]
REFILL_ROLLBACK, REFILL_PCS = 1, 2      # slab_sheaf_refill flags (a3)
_P = I.POINT_IDS
(P_NEW_PAGE, P_NEW_READY, P_NEW_FROZEN, P_DETACHED, P_FREELIST, P_PARTIAL_POP, P_INSTALLED, P_GP_REMOVED,
 P_GP_FROZEN, P_GP_MOVED, P_DEACT_UNFROZEN, P_DEACT_LISTED, P_FREE_FREED, P_FREE_UNLISTED, P_CP_PUSHED,
 P_CP_DETACHED, P_PUTP_ONE, P_DISC_UNCOUNTED, P_DISC_CLEARED, P_MAGF_SPILLED, P_MAGF_FREED,
 P_SHF_FREED, P_SHR_TOOK, P_DBG_FREED, P_PCS_DETACHED, P_PCS_BARN, P_PCS_PUSHED) = (
    _P[n] for n in ("slab:new:page", "slab:new:ready", "slab:new:frozen", "slab:alloc:detached",
                    "slab:alloc:freelist", "slab:alloc:partial_pop", "slab:alloc:installed",
                    "slab:partial:removed", "slab:partial:frozen", "slab:partial:moved", "slab:deactivate:unfrozen",
                    "slab:deactivate:listed", "slab:free:freed", "slab:free:unlisted", "slab:cpu_partial:pushed",
                    "slab:cpu_partial:detached", "slab:put_partials:one", "slab:discard:uncounted",
                    "slab:discard:cleared", "slab:mag_flush:spilled", "slab:mag_flush:freed",
                    "slab:sheaf_flush:freed", "slab:sheaf_refill:took", "slab:debug:freed", "slab:pcs:detached",
                    "slab:pcs:barn", "slab:pcs:pushed"))
_get_cycles = time.perf_counter_ns    # get_cycles() for get_any_partial's defrag gate (tests patch it)


def _sw(fl: int, inuse: int, objects: int, frozen: int) -> int:
    return fl | inuse << 32 | objects << 48 | frozen


def _resolve_ctor(s: str) -> Callable[[memoryview], None] | None:
    if not s:
        return None
    mod, _, qual = s.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


# ------------------------------------------------------------------ per-CPU handle
class Slub:
    """Simulated CPU `cpu`'s handle on SLUB (irq=True: its interrupt context).

    `hook`, tests only: called as hook(event, cache) between the read of the freelist
    word and the CAS ("alloc" / "free"); the hooked closures are chosen at construction,
    so a handle without a hook runs code with no test at all.
    """

    __slots__ = ("arena", "cpu", "irq", "mm", "nid", "nr_cpus", "nr_nodes", "mag_size", "tid_step",
                 "hook", "token", "_caches", "reports", "max_caches", "san", "slab_node")

    def __init__(self, arena: Any, cpu: int, mm: Any = None, irq: bool = False,
                 hook: Callable[[str, KmemCache], None] | None = None) -> None:
        from aerosync.mm.pmm.page_alloc import MM

        self.max_caches, self.nr_cpus, self.nr_nodes, self.mag_size, self.tid_step = _geo(arena)
        if not 0 <= cpu < self.nr_cpus:
            raise SlabError(f"Slub: cpu {cpu} outside 0..{self.nr_cpus - 1}")
        self.arena, self.cpu, self.irq, self.hook = arena, cpu, irq, hook
        self.mm = mm if mm is not None else MM(arena, cpu, IRQ_LOCK_CPU | cpu if irq else None)
        self.nid = self.mm.nid
        self.token = (os.getpid() << 20 | cpu << 1 | int(irq)) + 1 + (id(self) & 0xFF) * (1 << 44)
        self._caches: dict[int, KmemCache] = {}
        self.reports: list[str] = []
        # [debug] sanitizers / init_on_*: their closures, chosen per cache handle (mm/san/slab_hooks.py)
        self.san: SlabSan | None = SlabSan(self) if san_active(arena.config) else None
        # current->mempolicy's mempolicy_slab_node() (PolicyAllocator.slab_node) for the
        # task running on this CPU; None: no policy, numa_mem_id().  Read per call.
        self.slab_node: Callable[[], int] | None = None

    def cache(self, which: int | str) -> KmemCache:
        """The KmemCache handle of a cache (by id or name), built once per handle."""
        cid = which if isinstance(which, int) else kmem_cache_lookup(self.arena, which)
        if cid < 0:
            raise SlabError(f"Slub: no cache named {which!r}")
        kc = self._caches.get(cid)
        if kc is None:
            if self.arena.u32[(_cache_off(self.arena, cid) + C_STATE) >> 2] != CACHE_LIVE:
                raise SlabError(f"Slub: cache {which!r} is not live")
            kc = self._caches[cid] = KmemCache(self, cid)
        return kc

    def cache_of(self, addr: int) -> tuple[int, int]:
        """(cache id, slab head pfn) of an object address; cache id -1 if not a slab page."""
        a = self.arena
        pfn = (addr - VBASE) >> PAGE_SHIFT
        if not 0 <= pfn < self.mm.nr_pages:
            return -1, -1
        pm32 = a.off("pagemeta") >> 2
        fl = a.u32[pm32 + pfn * (PAGE_META_SIZE >> 2)]
        if fl & PG_tail:
            pfn = a.u32[pm32 + pfn * (PAGE_META_SIZE >> 2) + 6]
            fl = a.u32[pm32 + pfn * (PAGE_META_SIZE >> 2)]
        if not fl & PG_slab:
            return -1, pfn
        return a.u32[(a.off("slabmeta") + pfn * SMETA + M_CACHE) >> 2] - 1, pfn

    def flush_all(self) -> None:
        """flush_all(): flush every live cache's state of every CPU (caller: this handle)."""
        for cid in live_caches(self.arena):
            kc = self.cache(cid)
            for c in range(self.nr_cpus):
                kc.flush_cpu(c)

    def report(self, text: str) -> None:
        self.reports.append(text)
        print(text, file=sys.stderr)


class KmemCache:
    """One cache as seen from one CPU context: closures over fixed offsets (see module doc)."""

    __slots__ = ("slub", "id", "name", "flags", "object_size", "size", "order", "objects", "debug",
                 "alloc", "free", "alloc_node", "alloc_bulk", "free_bulk", "prefill_sheaf",
                 "alloc_from_sheaf", "refill_sheaf", "return_sheaf", "sheaf_size", "flush_cpu", "ksize",
                 "free_slow", "free_pfn", "alloc_slow", "node_lock", "stat", "obj_index", "red_left",
                 "barn_shrink", "sheaf_capacity", "alloc_orig", "free_raw", "alloc_req")

    def __init__(self, slub: Slub, cid: int) -> None:
        info = cache_info(slub.arena, cid)
        self.slub, self.id, self.name, self.flags = slub, cid, info["name"], info["flags"]
        self.object_size, self.size, self.order, self.objects = (info["object_size"], info["size"],
                                                                  info["order"], info["objects"])
        self.red_left = info["red_left_pad"]
        self.sheaf_capacity = info["sheaf_capacity"]
        self.debug = bool(self.flags & SLAB_DEBUG_FLAGS)
        self.alloc_orig: Callable[[int, int], int] | None = None
        # KFENCE's inline gate: alloc(gfp, req) -- kmalloc passes the requested size (the
        # sampled object is placed and canary-checked by it, as kfence_alloc's orig_size)
        self.alloc_req: Callable[[int, int], int] | None = None
        _build(self, info)

    def stats(self, cpu: int | None = None) -> dict[str, int]:
        """Summed statistics (both contexts) of one CPU, or of all."""
        return slab_stats(self.slub.arena, self.id, cpu)


def _build(kc: KmemCache, info: dict[str, Any]) -> None:
    slub = kc.slub
    arena, mm = slub.arena, slub.mm
    u64, u32, u8 = arena.u64, arena.u32, arena.u8
    at = arena.atomic
    load64, cas64, store64, fetch_add64 = at.load64, at.cas64, at.store64, at.fetch_add64
    cid, cpu, mynid = kc.id, slub.cpu, slub.nid
    nr_cpus, nr_nodes, mag_size = slub.nr_cpus, slub.nr_nodes, slub.mag_size
    STEP = slub.tid_step << 32
    size, objects, order = info["size"], info["objects"], info["order"]
    min_order, min_objects = info["min_order"], info["min_objects"]
    osize, red_left = info["object_size"], info["red_left_pad"]
    fpo = red_left + info["offset"]               # free pointer, from the slot start
    rnd = info["random"]                          # SLAB_FREELIST_HARDENED's s->random (0: off)
    san = slub.san
    san_new_slab = san.new_slab if san is not None else None
    min_partial, cpu_partial_max = info["min_partial"], info["cpu_partial_slabs"]
    pcs_cap, defrag = info["sheaf_capacity"], info["remote_node_defrag_ratio"]
    ctor = _resolve_ctor(info["ctor"])
    PHYS = arena.off("physmem")
    VOFF = VBASE - PHYS                           # addr - VOFF = arena offset
    aoff = VOFF + red_left                        # address - aoff = the object's slot (arena offset)
    SM = arena.off("slabmeta")
    PM32 = arena.off("pagemeta") >> 2
    PMW = PAGE_META_SIZE >> 2
    ko = _cpu_off(arena, cid, cpu, nr_cpus, mag_size)
    cw = ko + K_FREELIST_TID                      # the fast-path word (byte offset)
    cslab = (ko + K_SLAB) >> 3                    # c->slab (u64 index)
    clock = ko + K_LOCK
    cpart, cnrpart, cmag = (ko + K_PARTIAL) >> 3, (ko + K_NR_PARTIAL) >> 3, (ko + K_MAG_COUNT) >> 3
    pcsw, pcsl = (ko + K_PCS) >> 3, ko + K_PCS_LOCK  # per-CPU sheaves word (u64 index), its lock
    mag0 = (ko + K_MAG) >> 3
    ST = (ko + K_STATS + (NR_STATS * 8 if slub.irq else 0)) >> 3
    st_alloc, st_free = ST + ST_ALLOC, ST + ST_FREE
    token = slub.token
    hook = slub.hook
    node_offs = [_node_off(arena, cid, n, nr_nodes) for n in range(nr_nodes)]
    # The irq context locks as another owner (IRQ_LOCK_CPU | cpu): a SpinLock word names
    # (pid, cpu), which the two threads of one CPU share, so the irq thread waiting for a
    # list_lock its task holds was taken for a recursive acquire (LockError).
    lock_cpu = IRQ_LOCK_CPU | cpu if slub.irq else cpu
    node_locks = [SpinLock(arena, u64[(no + N_LOCK) >> 3], lock_cpu) for no in node_offs]
    kc.node_lock = node_locks
    nl_acq = [lk.acquire for lk in node_locks]
    nl_rel = [lk.release for lk in node_locks]
    # slab_nodes (nodes with memory) and get_any_partial's node orders: node n's zonelist
    has_mem = [any(mm.populated[n * MAX_NR_ZONES + z] for z in range(MAX_NR_ZONES)) for n in range(nr_nodes)]
    zl_nodes = [list(dict.fromkeys(z // MAX_NR_ZONES for z in mm.zonelist(n, GFP_KERNEL))) for n in range(nr_nodes)]
    in_task = not slub.irq
    barn_locks = [SpinLock(arena, u64[(no + N_BARN_LOCK) >> 3], lock_cpu) for no in node_offs] if pcs_cap else []
    if pcs_cap:
        bno = node_offs[mynid]                   # get_barn(): the local node's
        bfull, bempty = bno + N_BARN_FULL, bno + N_BARN_EMPTY
        bnr_full, bnr_empty = bno + N_BARN_NR_FULL, bno + N_BARN_NR_EMPTY
        barn_acq, barn_rel = barn_locks[mynid].acquire, barn_locks[mynid].release
    # nr_slab_reclaimable / nr_slab_unreclaimable (pages) of the slab's node, this CPU's
    # delta word: account_slab() / unaccount_slab().  Atomic: both contexts of a CPU add.
    ns_word = [(node_stat_base(arena, cpu) + n * NR_NODE_STATS +
                (NR_SLAB_RECLAIMABLE if kc.flags & SLAB_RECLAIM_ACCOUNT else NR_SLAB_UNRECLAIMABLE)) << 3
               for n in range(nr_nodes)]
    alloc_pages_node, free_pages = mm.alloc_pages_node, mm.free_pages
    lg = mm.log                                   # this context's intent log (mm/intent.py)
    ho = lg.handoff                               # its hand-off word (mm/intent.py "Hand-off")
    pend = lg.pending                             # ... and whether a record's window is open
    begin, end, fp, spill0 = lg.begin, lg.end, lg.fp, lg.spill
    zero = bytes(osize)
    slab_order_objs = {order: objects, min_order: min_objects}
    sched_yield = os.sched_yield

    def stat(i: int, n: int = 1) -> None:
        u64[ST + i] += n

    kc.stat = stat

    # -------------------------------------------------------- addresses
    def sm_of(pfn: int) -> int:
        return SM + pfn * SMETA

    def obj_addr(pfn: int, idx: int) -> int:
        return VBASE + (pfn << PAGE_SHIFT) + idx * size + red_left

    def head_of(addr: int) -> int:
        pfn = (addr - VBASE) >> PAGE_SHIFT
        if u32[PM32 + pfn * PMW] & PG_tail:
            return u32[PM32 + pfn * PMW + 6]
        return pfn

    def obj_index(pfn: int, addr: int) -> int:
        return (addr - VBASE - (pfn << PAGE_SHIFT) - red_left) // size

    kc.obj_index = obj_index

    def fp_get(pfn: int, idx: int) -> int:
        return u32[(PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo) >> 2]

    def fp_set(pfn: int, idx: int, nxt: int) -> None:
        u32[(PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo) >> 2] = nxt

    # -------------------------------------------------------- c->lock
    def c_lock(lo: int = clock) -> None:
        if cas64(lo, 0, token) == 0:
            return
        if load64(lo) == token:
            raise SlabError(f"{kc.name}: c->lock of cpu{cpu} taken recursively")
        n = 0
        while cas64(lo, 0, token) != 0:
            n += 1
            if n > 32:
                sched_yield() if n < 256 else time.sleep(0.0001)
            else:
                time.sleep(0)                     # lets the other thread of this CPU run

    def c_unlock(lo: int = clock) -> None:
        if cas64(lo, token, 0) != token:
            raise SlabError(f"{kc.name}: c->lock released by a non-owner (word {load64(lo):#x})")

    # -------------------------------------------------------- node partial list (list_lock held)
    def add_partial_locked(nid: int, pfn: int, tail: bool) -> None:
        no = node_offs[nid]
        m = sm_of(pfn)
        hi, ti = (no + N_HEAD) >> 2, (no + N_TAIL) >> 2
        if tail:
            old = u32[ti]
            u32[(m + M_NEXT) >> 2], u32[(m + M_PREV) >> 2] = NIL32, old
            if old == NIL32:
                u32[hi] = pfn
            else:
                u32[(sm_of(old) + M_NEXT) >> 2] = pfn
            u32[ti] = pfn
        else:
            old = u32[hi]
            u32[(m + M_NEXT) >> 2], u32[(m + M_PREV) >> 2] = old, NIL32
            if old == NIL32:
                u32[ti] = pfn
            else:
                u32[(sm_of(old) + M_PREV) >> 2] = pfn
            u32[hi] = pfn
        u8[m + M_LIST] = LIST_NODE_PARTIAL
        u64[(no + N_NR_PARTIAL) >> 3] += 1

    def remove_partial_locked(nid: int, pfn: int) -> None:
        no = node_offs[nid]
        m = sm_of(pfn)
        nx, pv = u32[(m + M_NEXT) >> 2], u32[(m + M_PREV) >> 2]
        if pv == NIL32:
            u32[(no + N_HEAD) >> 2] = nx
        else:
            u32[(sm_of(pv) + M_NEXT) >> 2] = nx
        if nx == NIL32:
            u32[(no + N_TAIL) >> 2] = pv
        else:
            u32[(sm_of(nx) + M_PREV) >> 2] = pv
        u32[(m + M_NEXT) >> 2] = u32[(m + M_PREV) >> 2] = NIL32
        u8[m + M_LIST] = LIST_NONE
        u64[(no + N_NR_PARTIAL) >> 3] -= 1

    # -------------------------------------------------------- slabs from / to the page allocator
    def new_slab(nid: int, gfp: int) -> int:
        """allocate_slab(): pages (order oo, else min), PG_slab, all objects free."""
        o = order
        g = (gfp & ~_GFP_ZERO) | (_GFP_COMP if o else 0)
        r = begin(_OP_NEW, cid, NIL64, 0)
        # The hand-off window: the pages until a1 names them -- or the caller's, if one
        # is open (its object's slot comes after this): the page is named in it until
        # then, and the word is cleared for the slot again after (mm/intent.py)
        outer = u64[pend]
        u64[ho] = 0
        if not outer:
            u64[pend] = 1
        try:
            pfn = alloc_pages_node(nid, g | (_GFP_NOWARN if o > min_order else 0), o)
            if pfn < 0 and min_order < o:
                o = min_order
                pfn = alloc_pages_node(nid, (gfp & ~_GFP_ZERO) | (_GFP_COMP if o else 0), o)
            if pfn < 0:
                if not outer:
                    u64[pend] = 0
                return -1
            u64[r + 2] = pfn
            u64[r + 3] = o
            u64[r + 7] = 1
            u64[ho] = 0
            if not outer:
                u64[pend] = 0
            if fp:
                fp(P_NEW_PAGE)
            init_slab(pfn, o)
            u64[r + 7] = 2
            if fp:
                fp(P_NEW_READY)
            return pfn
        finally:
            end(r)

    def init_slab(pfn: int, o: int) -> None:
        """The rest of allocate_slab(): PG_slab, objects chained, metadata, counters."""
        n = slab_order_objs[o]
        u32[PM32 + pfn * PMW] |= PG_slab              # __folio_set_slab(); the page is ours alone
        m = sm_of(pfn)
        snid = u8[(PM32 + pfn * PMW) * 4 + 7]
        base = PHYS + (pfn << PAGE_SHIFT)
        if rnd:                                       # SLAB_FREELIST_HARDENED: encoded pointers
            for i in range(n):
                fp_set(pfn, i, i + 1 if i < n - 1 else NIL32)
        else:
            for i in range(n - 1):
                u32[(base + i * size + fpo) >> 2] = i + 1
            u32[(base + (n - 1) * size + fpo) >> 2] = NIL32
        if san_new_slab is not None:
            san_new_slab(pfn, o)                      # kasan_poison_slab()
        if debug_init is not None:
            debug_init(pfn, n)
        if ctor is not None:
            for i in range(n):
                ctor(arena.buf[base + i * size + red_left : base + i * size + red_left + osize])
        u32[(m + M_CACHE) >> 2] = cid + 1
        u8[m + M_LIST], u8[m + M_NID], u8[m + M_ORDER] = LIST_NONE, snid, o
        u32[(m + M_NEXT) >> 2] = u32[(m + M_PREV) >> 2] = NIL32
        u32[(m + M_ISOLATED) >> 2] = 0
        store64(m + M_WORD, _sw(0, 0, n, 0))
        no = node_offs[snid]
        fetch_add64(no + N_NR_SLABS, 1)
        fetch_add64(no + N_TOTAL_OBJS, n)
        fetch_add64(ns_word[snid], 1 << o)
        stat(ST_ALLOC_SLAB)

    def discard_slab(pfn: int) -> None:
        """discard_slab(): back to the page allocator (the slab is on no list, inuse 0)."""
        m = sm_of(pfn)
        n = (load64(m + M_WORD) >> 48) & 0x7FFF
        no = node_offs[u8[m + M_NID]]
        o = u8[m + M_ORDER]
        r = begin(_OP_DISCARD, cid, pfn, o)
        fetch_add64(no + N_NR_SLABS, (1 << 64) - 1)
        fetch_add64(no + N_TOTAL_OBJS, (1 << 64) - n)
        fetch_add64(ns_word[u8[m + M_NID]], (1 << 64) - (1 << o))
        u64[r + 7] = 1
        if fp:
            fp(P_DISC_UNCOUNTED)
        store64(m + M_WORD, 0)
        u32[(m + M_CACHE) >> 2] = 0
        u32[PM32 + pfn * PMW] &= ~PG_slab
        stat(ST_FREE_SLAB)
        u64[r + 7] = 2
        if fp:
            fp(P_DISC_CLEARED)
        free_pages(pfn, o)
        end(r)

    # -------------------------------------------------------- slab word helpers
    def get_freelist(pfn: int, r: int) -> int:
        """get_freelist() (6.8+): take a slab's whole freelist (inuse = objects); the slab
        stays frozen only if it got objects (frozen = freelist != NULL): one with none
        left is unfrozen, full and on no list by the same CAS.  c->lock held.  The list
        byte goes to NONE *before* that CAS: once unfrozen and full, a remote free may
        put the slab on its CPU's partial list (put_cpu_partial) and write the byte.
        Record r (slab_alloc_slow's, a1 = pfn) names the chain before the CAS (step 5:
        recover.py reads whether it is still on the slab's freelist)."""
        m = sm_of(pfn)
        u8[m + M_LIST] = LIST_NONE
        w = m + M_WORD
        old = load64(w)
        u64[r + 3] = old & _LO
        u64[r + 7] = 5
        while True:
            n = (old >> 48) & 0x7FFF
            fl = old & _LO
            if cas64(w, old, _sw(NIL32, n, n, FROZEN if fl != NIL32 else 0)) == old:
                return fl
            old = load64(w)                           # (a remote free: the old head stays below)
            u64[r + 3] = old & _LO

    def freeze_locked(pfn: int, r: int) -> int:
        """freeze_slab(): freeze a slab taken off the node partial list and take its
        freelist (list_lock held: get_partial_node, whose record r names the chain
        before the CAS: step 3)."""
        m = sm_of(pfn) + M_WORD
        old = load64(m)
        u64[r + 4] = old & _LO
        u64[r + 7] = 3
        while True:
            n = (old >> 48) & 0x7FFF
            if cas64(m, old, _sw(NIL32, n, n, FROZEN)) == old:
                return old & _LO
            old = load64(m)
            u64[r + 4] = old & _LO

    def deactivate_slab(pfn: int, chain: int) -> int:
        """deactivate_slab() (6.8+) for a slab this CPU detached from c->slab: splice the
        cpu chain back and unfreeze with one CAS, no lock; then an empty slab is
        discarded when the node has min_partial partial slabs, a slab with free objects
        goes on the node partial list (list_lock only for that: to the tail if remote
        frees had reached its freelist, else the head), a full one stays on no list.
        Returns a pfn to discard (the caller frees it) or -1."""
        m = sm_of(pfn)
        w = m + M_WORD
        nid = u8[m + M_NID]
        r = begin(_OP_DEACT, cid, pfn, chain)
        cnt, tail_i = 0, NIL32
        i = chain
        while i != NIL32:
            cnt += 1
            tail_i = i
            i = fp_get(pfn, i)
            if cnt > objects:                         # a cycle: never loop (recovery runs this)
                raise SlabError(f"{kc.name}: deactivate_slab(pfn {pfn}): the cpu freelist chain from "
                                f"{chain} is longer than a slab's {objects} objects (a cycle)")
        to_tail = load64(w) & _LO != NIL32           # DEACTIVATE_REMOTE_FREES -> DEACTIVATE_TO_TAIL
        u8[m + M_LIST] = LIST_NONE                   # before the CAS (see get_freelist)
        while True:
            old = load64(w)
            fl, inuse, n = old & _LO, (old >> 32) & 0xFFFF, (old >> 48) & 0x7FFF
            if cnt:
                fp_set(pfn, tail_i, fl)
                fl = chain
            inuse -= cnt
            if cas64(w, old, _sw(fl, inuse, n, 0)) == old:
                break
        u64[r + 7] = 1
        if fp:
            fp(P_DEACT_UNFROZEN)
        stat(ST_DEACTIVATE)
        if inuse == 0 and u64[(node_offs[nid] + N_NR_PARTIAL) >> 3] >= min_partial:
            end(r)
            return pfn
        if fl != NIL32:
            nl_acq[nid]()
            try:
                add_partial_locked(nid, pfn, to_tail)
            finally:
                nl_rel[nid]()
            u64[r + 7] = 2
            if fp:
                fp(P_DEACT_LISTED)
        end(r)
        return -1

    def put_partials(pfn: int) -> None:
        """__put_partials(): a chain of unfrozen cpu-partial slabs (linked through M_NEXT)
        to their nodes' partial lists under each node's list_lock, taken once per run of
        one node; empty ones are discarded instead while the node has min_partial."""
        cur, discard = -1, []
        r = begin(_OP_PUTP, cid, pfn)                # the chain's slabs are on no list until put
        try:
            while pfn != NIL32:
                m = sm_of(pfn)
                nxt = u32[(m + M_NEXT) >> 2]
                nid = u8[m + M_NID]
                if nid != cur:
                    if cur >= 0:
                        nl_rel[cur]()
                        cur = -1
                    nl_acq[nid]()
                    cur = nid
                if not (load64(m + M_WORD) >> 32) & 0xFFFF and \
                        u64[(node_offs[nid] + N_NR_PARTIAL) >> 3] >= min_partial:
                    u8[m + M_LIST] = LIST_NONE
                    discard.append(pfn)
                else:
                    add_partial_locked(nid, pfn, True)
                pfn = nxt
                u64[r + 7] += 1
                if fp:
                    fp(P_PUTP_ONE)
        finally:
            if cur >= 0:
                nl_rel[cur]()
        for p in discard:
            stat(ST_DEACTIVATE)
            discard_slab(p)
        end(r)

    def put_cpu_partial(pfn: int, drain: bool) -> None:
        """put_cpu_partial(): push an unfrozen slab on this CPU's partial list under
        c->lock -- no list_lock.  With `drain`, a list already holding cpu_partial_slabs
        slabs is first moved to the node lists (__put_partials, after c->lock is
        dropped)."""
        c_lock()
        to_put = NIL32
        try:
            old = u64[cpart]
            if old != NIL64 and drain and u64[cnrpart] >= cpu_partial_max:
                to_put, old = old, NIL64
                u64[cnrpart] = 0
            m = sm_of(pfn)
            u8[m + M_LIST] = LIST_CPU_PARTIAL
            u32[(m + M_NEXT) >> 2] = old
            u64[cpart] = pfn
            u64[cnrpart] += 1
        finally:
            c_unlock()
        if fp:
            fp(P_CP_DETACHED if to_put != NIL32 else P_CP_PUSHED)   # a detached chain: on no list
        if to_put != NIL32:
            put_partials(to_put)
            stat(ST_CPU_PARTIAL_DRAIN)

    # -------------------------------------------------------- remote free (__slab_free)
    def slab_free(pfn: int, idx: int, cnt_stat: bool = True, outer: int = -1, outer_step: int = 0) -> None:
        """__slab_free() (6.8+): CAS the object onto its slab's freelist.  A full unfrozen
        slab goes to *this* CPU's partial list (put_cpu_partial, no list_lock); list_lock
        is taken (before the CAS, dropped and retaken on a retry) only when an unfrozen
        slab with free objects becomes empty: then, if it is on its node's partial list
        (not a CPU's) and the node has min_partial, it is removed and discarded.
        `outer`: the record of a caller freeing a spill one object at a time, whose
        step becomes `outer_step` while this record is still open -- so a death between
        fault points never finds the object freed with neither record saying so."""
        r = begin(_OP_FREE, cid, pfn, idx)          # step 1 once the CAS is done
        try:
            m = sm_of(pfn)
            w = m + M_WORD
            nid = -1
            on_node = False
            while True:
                if nid >= 0:
                    nl_rel[nid]()
                    nid = -1
                old = load64(w)
                fl, inuse = old & _LO, (old >> 32) & 0xFFFF
                frozen = old & FROZEN
                fp_set(pfn, idx, fl)
                new = (old & ~0xFFFF_FFFF_FFFF) | (inuse - 1) << 32 | idx
                if not frozen and ((inuse == 1 and fl != NIL32) or (fl == NIL32 and not cpu_partial_max)):
                    nid = u8[m + M_NID]
                    nl_acq[nid]()
                    on_node = u8[m + M_LIST] == LIST_NODE_PARTIAL
                if cas64(w, old, new) == old:
                    break
                stat(ST_CAS_FAIL)
            u64[r + 7] = 1
            if outer >= 0:
                u64[outer + 7] = outer_step
            if fp:
                fp(P_FREE_FREED)
            if cnt_stat:
                stat(ST_FREE_SLOW)
            if nid < 0:
                if not frozen and fl == NIL32:
                    put_cpu_partial(pfn, True)
                    stat(ST_CPU_PARTIAL_FREE)
                return
            discard = -1
            try:
                if fl != NIL32 and not on_node:
                    return                                # on a CPU's partial list: theirs
                no = node_offs[nid]
                if inuse == 1 and u64[(no + N_NR_PARTIAL) >> 3] >= min_partial and not u32[(m + M_ISOLATED) >> 2]:
                    if on_node:
                        remove_partial_locked(nid, pfn)
                    u8[m + M_LIST] = LIST_NONE
                    discard = pfn
                elif fl == NIL32:                         # no cpu partial lists: straight to the node
                    add_partial_locked(nid, pfn, True)
            finally:
                nl_rel[nid]()
            if discard >= 0:
                if fp:
                    fp(P_FREE_UNLISTED)
                discard_slab(discard)
        finally:
            end(r)

    # -------------------------------------------------------- slow path (___slab_alloc)
    def install(pfn: int, chain: int) -> int:
        """Make pfn the cpu slab with `chain` as cpu freelist; returns the first object's
        index (handed out).  c->lock held; c->slab is NIL and the word (NIL, tid)."""
        nxt = fp_get(pfn, chain)
        u8[sm_of(pfn) + M_LIST] = LIST_CPU_SLAB
        w = load64(cw)
        store64(cw, ((w + STEP) & _HI) | nxt)      # word first, then c->slab (protocol)
        u64[cslab] = pfn
        return chain

    def detach(r: int) -> tuple[int, int]:
        """Take c->slab and the cpu chain off this CPU: c->slab = NIL, then the word.
        Record r (slab_alloc_slow's) names both first (step 4: recover.py reads c->slab
        and the word)."""
        pfn = u64[cslab]
        w = load64(cw)
        u64[r + 2] = pfn
        u64[r + 3] = w & _LO
        u64[r + 7] = 4
        u64[cslab] = NIL64
        while cas64(cw, w, ((w + STEP) & _HI) | NIL32) != w:
            w = load64(cw)
            u64[r + 3] = w & _LO
        return pfn, w & _LO

    def get_partial_node(nid: int, outer: int = -1) -> tuple[int, int]:
        """get_partial_node(): the first slab of node nid's partial list, frozen with its
        freelist taken (freeze_slab), and more slabs onto c->partial, unfrozen (put_cpu_
        partial without drain), until more than cpu_partial_slabs / 2 were moved.  A racy
        nr_partial peek first, as Linux.  Returns (pfn, freelist) or (-1, NIL).  c->lock
        held (it is outer to list_lock here).  `outer`: the caller's slab_alloc_slow
        record, which holds the chain (step 1) before this record ends -- no death
        between fault points finds it in neither."""
        no = node_offs[nid]
        if not u64[(no + N_NR_PARTIAL) >> 3]:
            return -1, NIL32
        nl_acq[nid]()
        r = begin(_OP_GETP, cid, nid)               # a2 pfn, a3 chain: step 2 = chain in flight
        try:
            pfn = u32[(no + N_HEAD) >> 2]
            if pfn == NIL32:
                return -1, NIL32
            remove_partial_locked(nid, pfn)
            u64[r + 3] = pfn
            u64[r + 7] = 1
            if fp:
                fp(P_GP_REMOVED)
            chain = freeze_locked(pfn, r)
            u64[r + 4] = chain
            u64[r + 7] = 2
            if outer >= 0:                            # hold(outer, ...) without its point
                u64[outer + 2] = pfn
                u64[outer + 3] = chain
                u64[outer + 7] = 1
            if fp:
                fp(P_GP_FROZEN)
            moved = 0
            while cpu_partial_max:
                p2 = u32[(no + N_HEAD) >> 2]
                if p2 == NIL32:
                    break
                remove_partial_locked(nid, p2)
                m2 = sm_of(p2)
                u8[m2 + M_LIST] = LIST_CPU_PARTIAL
                u32[(m2 + M_NEXT) >> 2] = u64[cpart]
                u64[cpart] = p2
                u64[cnrpart] += 1
                stat(ST_CPU_PARTIAL_NODE)
                if fp:
                    fp(P_GP_MOVED)
                moved += 1
                if moved > cpu_partial_max // 2:
                    break
            return pfn, chain
        finally:
            end(r)
            nl_rel[nid]()

    def get_any_partial(outer: int = -1) -> tuple[int, int]:
        """get_any_partial(): partial slabs of the nodes in the zonelist order of
        mempolicy_slab_node() (the task's policy; the local node without one or in irq
        context), from nodes holding more than min_partial; skipped when get_cycles() %
        1024 > remote_node_defrag_ratio (1000: ~2% of the time, as Linux's default)."""
        if not defrag or _get_cycles() % 1024 > defrag:
            return -1, NIL32
        slab_node = slub.slab_node
        for nid in zl_nodes[slab_node() if in_task and slab_node is not None else mynid]:
            if u64[(node_offs[nid] + N_NR_PARTIAL) >> 3] > min_partial:
                got = get_partial_node(nid, outer)
                if got[0] >= 0:
                    return got
        return -1, NIL32

    def slab_alloc_slow(gfp: int, node: int) -> int:
        """___slab_alloc() (v6.19), with the magazine in front.  node -1 = any
        (NUMA_NO_NODE).  Returns an address, 0 (the fast path can go again: the other
        context of this CPU refilled it) or -1 (no memory).

        Order: magazine pop (local objects; node -1 or the local node); the cpu slab (a
        slab of another node than `node` is deactivated: ALLOC_NODE_MISMATCH); the cpu
        partial list (slabs of another node go back to their node lists); get_partial:
        the node's partial list, then -- unless __GFP_THISNODE -- get_any_partial; a new
        slab.  With an explicit node and no __GFP_THISNODE, first try that node only
        (its partial list, then a new slab with GFP_NOWAIT | __GFP_THISNODE), then again
        with the caller's gfp (other nodes' partial slabs, the page allocator's
        fallback)."""
        c_lock()
        r = -1
        try:
            pfn = u64[cslab]
            if load64(cw) & _LO != NIL32 and pfn != NIL64 and (node < 0 or u8[sm_of(pfn) + M_NID] == node):
                return 0                              # irq context refilled: retry fast
            if node >= 0 and not has_mem[node]:       # not in slab_nodes: ignore the node
                node = -1
            if mag_size and (node < 0 or node == mynid):
                nm = u64[cmag]
                if nm:
                    nm -= 1
                    a = u64[mag0 + nm]
                    u64[ho] = a - aoff              # hand-off, before the take
                    u64[cmag] = nm
                    stat(ST_ALLOC_MAG)
                    return a
            stat(ST_ALLOC_SLOW)
            # The record (mm/slab/recover.py): step 1 = chain a2 of slab a1 taken off its
            # freelist or the cpu word, in flight; 2 = slab a1 popped off c->partial, on
            # no list; 3 = object a3 installed and handed out, not yet returned; 4 / 5 =
            # detach() / get_freelist() under way, a1 and a2 named before their CAS;
            # 0 = none (a1 may name a new slab being frozen).
            r = begin(_OP_SLOW, cid)
            if pfn != NIL64:
                if node >= 0 and u8[sm_of(pfn) + M_NID] != node:
                    stat(ST_ALLOC_NODE_MISMATCH)
                    pfn, chain = detach(r)
                    hold(r, pfn, chain, P_DETACHED)
                    d = deactivate_slab(pfn, chain)
                    u64[r + 7] = 0
                    if d >= 0:
                        discard_slab(d)
                else:
                    pfn, chain = detach(r)
                    hold(r, pfn, chain, P_DETACHED)
                    if chain == NIL32:
                        chain = get_freelist(pfn, r)  # none: unfrozen, full, on no list
                        hold(r, pfn, chain, P_FREELIST)
                    if chain != NIL32:
                        return handout(r, pfn, chain)
                    u64[r + 7] = 0
            while u64[cpart] != NIL64:                # c->partial
                pfn = u64[cpart]
                m = sm_of(pfn)
                u64[cpart] = u32[(m + M_NEXT) >> 2]   # NIL32 == NIL64
                u64[cnrpart] -= 1
                u64[r + 2] = pfn
                u64[r + 7] = 2
                if fp:
                    fp(P_PARTIAL_POP)
                if node < 0 or u8[m + M_NID] == node:
                    chain = get_freelist(pfn, r)
                    if chain != NIL32:
                        hold(r, pfn, chain, P_FREELIST)
                        stat(ST_CPU_PARTIAL)
                        return handout(r, pfn, chain)
                else:
                    u32[(m + M_NEXT) >> 2] = NIL32
                    put_partials(pfn)
                u64[r + 7] = 0
            try_thisnode = node >= 0 and not gfp & _GFP_THISNODE
            search = mynid if node < 0 else node
            while True:
                pfn, chain = get_partial_node(search, r)
                if pfn < 0 and not (node >= 0 and (try_thisnode or gfp & _GFP_THISNODE)) and nr_nodes > 1:
                    pfn, chain = get_any_partial(r)
                if pfn >= 0:
                    hold(r, pfn, chain, -1)
                    stat(ST_ALLOC_PARTIAL)
                    return handout(r, pfn, chain)
                pfn = new_slab(search, gfp | _GFP_THISNODE | _GFP_NOWARN if try_thisnode else gfp)
                if pfn >= 0:
                    m = sm_of(pfn) + M_WORD
                    n = (load64(m) >> 48) & 0x7FFF
                    u64[r + 2] = pfn                  # named before the freeze (step still 0:
                    u64[r + 3] = 0                    # recover.py reads the slab's state)
                    store64(m, _sw(NIL32, n, n, FROZEN))
                    hold(r, pfn, 0, P_NEW_FROZEN)
                    return handout(r, pfn, 0)
                if not try_thisnode:
                    return -1
                try_thisnode = False
        finally:
            if r >= 0:
                end(r)
            c_unlock()

    def hold(r: int, pfn: int, chain: int, point: int) -> None:
        """Record a chain taken (step 1), then pass `point` (mm/intent.py: take, record, point)."""
        u64[r + 2] = pfn
        u64[r + 3] = chain
        u64[r + 7] = 1
        if fp and point >= 0:
            fp(point)

    def handout(r: int, pfn: int, chain: int) -> int:
        """install() and record the object handed out (step 3) before returning it."""
        a = obj_addr(pfn, install(pfn, chain))
        u64[ho] = a - aoff                          # hand-off: the caller's once the record ends
        u64[r + 4] = a
        u64[r + 7] = 3
        if fp:
            fp(P_INSTALLED)
        return a

    def alloc_slow(gfp: int = 0) -> int:
        return slab_alloc_slow(gfp, -1)

    def alloc_node_locked(nid: int, gfp: int) -> int:
        """One object from node nid's partial list under its list_lock without touching
        the cpu slab (as alloc_single_from_partial does for debug caches): partial head,
        slab CAS.  A new slab must come from nid itself (__GFP_THISNODE): 0 when nid has
        no memory.  kmem_cache_alloc_node uses the cpu slab (slab_alloc_slow); this is
        `KmemCache.alloc_slow`, the node-partial-list path `aerosync bench slab` times."""
        no = node_offs[nid]
        while True:
            nl_acq[nid]()
            try:
                pfn = u32[(no + N_HEAD) >> 2]
                if pfn != NIL32:
                    m = sm_of(pfn) + M_WORD
                    while True:                       # CAS: remote frees may race (no list change)
                        old = load64(m)
                        idx = old & _LO
                        nxt = fp_get(pfn, idx)
                        new = (old & 0xFFFF_0000_0000_0000) | (((old >> 32) & 0xFFFF) + 1) << 32 | nxt
                        if cas64(m, old, new) == old:
                            break
                        stat(ST_CAS_FAIL)
                    if nxt == NIL32:
                        remove_partial_locked(nid, pfn)
                    stat(ST_ALLOC_PARTIAL)
                    stat(ST_ALLOC_SLOW)
                    return obj_addr(pfn, idx)
            finally:
                nl_rel[nid]()
            pfn = new_slab(nid, gfp | _GFP_THISNODE | _GFP_NOWARN)   # none on nid: caller falls back
            if pfn < 0:
                return 0
            nid = u8[sm_of(pfn) + M_NID]             # the slab's node: its list, its list_lock
            no = node_offs[nid]
            nl_acq[nid]()
            try:
                add_partial_locked(nid, pfn, False)
            finally:
                nl_rel[nid]()

    def post_alloc(addr: int, gfp: int) -> int:
        if gfp & _GFP_ZERO:
            o = addr - VOFF
            u8[o : o + osize] = zero
        return addr

    # -------------------------------------------------------- fast path (slab_alloc_node)
    def alloc(gfp: int = 0) -> int:
        """Allocate one object on the local node; 0 on failure.

        Read order: the word (tid + head in one load) first, then c->slab, then the
        head's free pointer; the CAS checks that neither head nor tid moved (module doc).
        Straight-line: a failed CAS or an empty freelist goes to alloc_retry().  Only
        `alloc` is counted here (alloc_fastpath is derived, slab_stats): a second
        counter cost ~45 ns a pair.
        """
        w = load64(cw)
        idx = w & _LO
        pfn = u64[cslab]
        if idx != NIL32 and pfn != NIL64:
            base = PHYS + (pfn << PAGE_SHIFT) + idx * size
            u64[ho] = base                            # hand-off (mm/intent.py): the slot, before the take
            if cas64(cw, w, ((w + STEP) & _HI) | u32[(base + fpo) >> 2]) == w:
                u64[st_alloc] += 1
                if gfp:
                    return post_alloc(base + red_left + VOFF, gfp)
                return base + red_left + VOFF
            u64[ST + ST_CAS_FAIL] += 1
        return alloc_retry(gfp)

    def alloc_retry(gfp: int) -> int:
        while True:
            w = load64(cw)
            idx = w & _LO
            pfn = u64[cslab]
            if idx == NIL32 or pfn == NIL64:
                addr = alloc_slow(gfp)
                if addr == 0:
                    continue                          # irq context refilled meanwhile
                if addr < 0:
                    return 0
                break
            base = PHYS + (pfn << PAGE_SHIFT) + idx * size
            nxt = u32[(base + fpo) >> 2]
            u64[ho] = base
            if cas64(cw, w, ((w + STEP) & _HI) | nxt) == w:
                addr = base + red_left + VOFF
                break
            u64[ST + ST_CAS_FAIL] += 1
        u64[st_alloc] += 1
        return post_alloc(addr, gfp) if gfp else addr

    def free_pfn(pfn: int, addr: int) -> None:
        """Free an object whose slab head pfn the caller knows (kfree): cpu slab CAS,
        else magazine, else __slab_free.  Same read order as alloc."""
        w = load64(cw)
        if pfn == u64[cslab]:
            idx = (addr - VBASE - (pfn << PAGE_SHIFT) - red_left) // size
            u32[(PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo) >> 2] = w & _LO
            if cas64(cw, w, ((w + STEP) & _HI) | idx) == w:
                u64[st_free] += 1
                return
            u64[ST + ST_CAS_FAIL] += 1
        free_retry(pfn, addr)

    def free_retry(pfn: int, addr: int) -> None:
        u64[st_free] += 1
        while True:
            w = load64(cw)
            if pfn != u64[cslab]:
                return free_other(pfn, addr)
            idx = (addr - VBASE - (pfn << PAGE_SHIFT) - red_left) // size
            u32[(PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo) >> 2] = w & _LO
            if cas64(cw, w, ((w + STEP) & _HI) | idx) == w:
                return
            u64[ST + ST_CAS_FAIL] += 1

    if order:
        def free(addr: int) -> None:
            """kmem_cache_free(): multi-page slab -> the compound head first."""
            pfn = (addr - VBASE) >> PAGE_SHIFT
            if u32[PM32 + pfn * PMW] & PG_tail:
                pfn = u32[PM32 + pfn * PMW + 6]
            free_pfn(pfn, addr)
    else:
        def free(addr: int) -> None:
            """kmem_cache_free(): order-0 slab, the page is the slab."""
            free_pfn((addr - VBASE) >> PAGE_SHIFT, addr)

    if hook is not None:
        def alloc(gfp: int = 0) -> int:  # the test-hook variant, chosen once
            while True:
                w = load64(cw)
                idx = w & _LO
                pfn = u64[cslab]
                if idx == NIL32 or pfn == NIL64:
                    addr = alloc_slow(gfp)
                    if addr == 0:
                        continue
                    if addr < 0:
                        return 0
                    break
                base = PHYS + (pfn << PAGE_SHIFT) + idx * size
                nxt = u32[(base + fpo) >> 2]
                hook("alloc", kc)
                if cas64(cw, w, ((w + STEP) & _HI) | nxt) == w:
                    addr = base + red_left + VOFF
                    break
                u64[ST + ST_CAS_FAIL] += 1
            u64[st_alloc] += 1
            return post_alloc(addr, gfp) if gfp else addr

        def free_pfn(pfn: int, addr: int) -> None:  # the test-hook variant
            u64[st_free] += 1
            while True:
                w = load64(cw)
                if pfn != u64[cslab]:
                    return free_other(pfn, addr)
                idx = obj_index(pfn, addr)
                fp_set(pfn, idx, w & _LO)
                hook("free", kc)
                if cas64(cw, w, ((w + STEP) & _HI) | idx) == w:
                    return
                u64[ST + ST_CAS_FAIL] += 1

    def free_other(pfn: int, addr: int) -> None:
        """Not the cpu slab: magazine (local node), else __slab_free.  A full magazine
        first gives its older half back; those objects go to their slabs after c->lock
        is dropped (__slab_free may take c->lock itself, put_cpu_partial)."""
        if mag_size and u8[sm_of(pfn) + M_NID] == mynid:
            r = nf = 0
            c_lock()
            try:
                nm = u64[cmag]
                if nm == mag_size:
                    # The older half goes to the context's spill area (not a Python list)
                    # under a record: a death while freeing it loses nothing (step s: the
                    # spill's first s - 1 are back on their slabs).
                    # a2 marks the phase for a death between fault points (recover.py):
                    # 1 the older half in the spill, the newer being moved down; 2 moved.
                    keep = nm // 2
                    nf = nm - keep
                    r = begin(_OP_MAGF, cid, nf)
                    u64[spill0 : spill0 + nf] = u64[mag0 : mag0 + nf]
                    u64[r + 3] = 1
                    for i in range(keep):
                        u64[mag0 + i] = u64[mag0 + nf + i]
                    u64[r + 3] = 2
                    u64[cmag] = nm = keep
                    stat(ST_MAG_FLUSH)
                u64[mag0 + nm] = addr
                u64[cmag] = nm + 1
                if nf:
                    u64[r + 7] = 1
                stat(ST_FREE_MAG)
            finally:
                c_unlock()
            if nf:
                if fp:
                    fp(P_MAGF_SPILLED)
                for i in range(nf):
                    a = u64[spill0 + i]
                    p = head_of(a)
                    slab_free(p, obj_index(p, a), False, r, i + 2)   # step i + 2 once it is back
                    if fp:
                        fp(P_MAGF_FREED)
                end(r)
            return
        slab_free(pfn, obj_index(pfn, addr))

    def alloc_node(nid: int, gfp: int = 0) -> int:
        """kmem_cache_alloc_node(): the fast path when c->slab is a slab of node nid (nid -1:
        any), else the slow path with the node (ALLOC_NODE_MISMATCH deactivates a cpu
        slab of another node).  A node without memory is ignored (NUMA_NO_NODE)."""
        if nid < 0 or not has_mem[nid]:
            return alloc(gfp)
        while True:
            w = load64(cw)
            idx = w & _LO
            pfn = u64[cslab]
            if idx != NIL32 and pfn != NIL64 and u8[SM + pfn * SMETA + M_NID] == nid:
                base = PHYS + (pfn << PAGE_SHIFT) + idx * size
                u64[ho] = base
                if cas64(cw, w, ((w + STEP) & _HI) | u32[(base + fpo) >> 2]) == w:
                    addr = base + red_left + VOFF
                    break
                u64[ST + ST_CAS_FAIL] += 1
                continue
            addr = slab_alloc_slow(gfp, nid)
            if addr == 0:
                continue
            if addr < 0:
                return 0
            break
        u64[st_alloc] += 1
        return post_alloc(addr, gfp) if gfp else addr

    # -------------------------------------------------------- flush (flush_cpu_slab / cpu offline)
    def flush_cpu(target: int) -> None:
        """flush_cpu_slab() of CPU `target` (any CPU may call it): under the target's c->lock
        detach its cpu slab, cpu partial list and magazine (the owner's in-flight fast-path
        CAS then fails on the tid); then, no lock held, deactivate the slab, put the
        partial slabs on their node lists and free the magazine's objects; then the
        target's per-CPU sheaves (pcs_flush_all)."""
        tko = _cpu_off(arena, cid, target, nr_cpus, mag_size)
        tlock = tko + K_LOCK
        c_lock(tlock)
        mag: list[int] = []
        try:
            tslab = (tko + K_SLAB) >> 3
            pfn = u64[tslab]
            u64[tslab] = NIL64
            tw = tko + K_FREELIST_TID
            while True:
                w = load64(tw)
                if cas64(tw, w, ((w + STEP) & _HI) | NIL32) == w:
                    break
            tp, tn = (tko + K_PARTIAL) >> 3, (tko + K_NR_PARTIAL) >> 3
            partial = u64[tp]
            u64[tp] = NIL64
            u64[tn] = 0
            tm, tm0 = (tko + K_MAG_COUNT) >> 3, (tko + K_MAG) >> 3
            mag = [u64[tm0 + i] for i in range(u64[tm])] if mag_size else []
            if mag_size:
                u64[tm] = 0
            stat(ST_FLUSH)
        finally:
            c_unlock(tlock)
        if pfn != NIL64:
            d = deactivate_slab(pfn, w & _LO)
            if d >= 0:
                discard_slab(d)
        if partial != NIL64:
            put_partials(partial)
        for a in mag:
            hp = head_of(a)
            slab_free(hp, obj_index(hp, a), False)
        if pcs_cap:
            pcs_flush_cpu(tko)

    # -------------------------------------------------------- bulk
    def alloc_bulk(n: int, gfp: int = 0) -> list[int]:
        """kmem_cache_alloc_bulk(): detach up to n objects from the cpu freelist with one
        CAS (walking the chain between the read and the CAS; the tid guards it), the
        rest one by one.  All or nothing: [] if memory runs out.  The walk reads free
        pointers of objects another context may have taken and written meanwhile: an
        index beyond the slab ends it (never dereferenced) and the round is retried."""
        out: list[int] = []
        while len(out) < n:
            w = load64(cw)
            idx = w & _LO
            pfn = u64[cslab]
            if idx == NIL32 or pfn == NIL64:
                a = alloc(gfp)
                if not a:
                    free_bulk(out)
                    return []
                out.append(a)
                continue
            if hook is not None:
                hook("bulk", kc)                      # tests: between the read and the walk
            got, i = [], idx
            while i != NIL32 and i < objects and len(got) + len(out) < n:
                got.append(i)
                i = fp_get(pfn, i)                    # may be user data (raced): bounded above
            if (i != NIL32 and i >= objects) or cas64(cw, w, ((w + STEP) & _HI) | i) != w:
                stat(ST_CAS_FAIL)
                continue
            u64[st_alloc] += len(got)
            for j in got:
                a = obj_addr(pfn, j)
                out.append(post_alloc(a, gfp) if gfp else a)
        return out

    def free_bulk(addrs: list[int]) -> None:
        """kmem_cache_free_bulk()."""
        for a in addrs:
            kc.free(a)

    # -------------------------------------------------------- sheaves (caller-owned, in the arena)
    SH0, SHN = arena.sections["slabsheaf"][0], arena.sections["slabsheaf"][1] // SHEAF_REC

    def prefill_sheaf(n: int, gfp: int = 0) -> int:
        """kmem_cache_prefill_sheaf(): a sheaf id holding >= n objects, or -1."""
        if not 0 <= n <= SHEAF_CAPACITY:
            raise SlabError(f"prefill_sheaf: {n} objects; a sheaf holds at most {SHEAF_CAPACITY}")
        for s in range(SHN):
            so = SH0 + s * SHEAF_REC
            if load64(so + SH_STATE) == 0 and cas64(so + SH_STATE, 0, cpu + 1) == 0:
                u64[(so + SH_CACHE) >> 3] = cid
                u64[(so + SH_SIZE) >> 3] = 0
                if not refill_sheaf(s, n, gfp):
                    store64(so + SH_STATE, 0)
                    return -1
                return s
        return -1

    def refill_sheaf(s: int, n: int, gfp: int = 0) -> bool:
        """kmem_cache_refill_sheaf(): top the sheaf up to n objects."""
        so = SH0 + s * SHEAF_REC
        have = u64[(so + SH_SIZE) >> 3]
        if n <= have:
            return True
        return sheaf_fill(s, min(n, SHEAF_CAPACITY) - have, gfp, False) > 0

    def sheaf_fill(s: int, want: int, gfp: int, pcs: bool) -> int:
        """Take `want` objects into sheaf s (kmem_cache_alloc_bulk into its array): each
        chunk off the cpu freelist (one CAS, as alloc_bulk) or from alloc() is written
        past the sheaf's size and the record's step counts it before the next is taken;
        the size is published at the end.  All or nothing: when memory runs out, what was
        taken goes back, newest first (flag REFILL_ROLLBACK, step counting down).
        Counted as allocations while taken; a per-CPU sheaf's (`pcs`) are free objects,
        uncounted when published.  Returns want or 0."""
        so = sh_off(s)
        have = u64[(so + SH_SIZE) >> 3]
        dest = ((so + SH_OBJS) >> 3) + have
        r = begin(_OP_SHR, cid, s, have)
        u64[r + 4] = REFILL_PCS if pcs else 0
        got = 0
        try:
            while got < want:
                w = load64(cw)
                idx = w & _LO
                pfn = u64[cslab]
                if idx == NIL32 or pfn == NIL64:
                    a = alloc(gfp)
                    if not a:
                        u64[r + 4] |= REFILL_ROLLBACK
                        while got:
                            got -= 1
                            kc.free(u64[dest + got])
                            u64[r + 7] = got
                        return 0
                    u64[dest + got] = a
                    got += 1
                else:
                    k, i = got, idx
                    while i != NIL32 and i < objects and k < want:
                        u64[dest + k] = VBASE + (pfn << PAGE_SHIFT) + i * size + red_left
                        k += 1
                        i = fp_get(pfn, i)            # may be user data (raced): bounded above
                    if (i != NIL32 and i >= objects) or cas64(cw, w, ((w + STEP) & _HI) | i) != w:
                        stat(ST_CAS_FAIL)
                        continue
                    u64[st_alloc] += k - got
                    got = k
                u64[r + 7] = got
                if fp:
                    fp(P_SHR_TOOK)
            if gfp & _GFP_ZERO:
                for j in range(want):
                    post_alloc(u64[dest + j], gfp)
            if pcs:
                u64[st_alloc] -= want
            u64[(so + SH_SIZE) >> 3] = have + want
            return want
        finally:
            end(r)

    def alloc_from_sheaf(s: int, gfp: int = 0) -> int:
        """kmem_cache_alloc_from_sheaf(): pop (LIFO); 0 only when the sheaf is empty."""
        so = SH0 + s * SHEAF_REC
        nsz = u64[(so + SH_SIZE) >> 3]
        if not nsz:
            return 0
        nsz -= 1
        u64[(so + SH_SIZE) >> 3] = nsz
        a = u64[((so + SH_OBJS) >> 3) + nsz]
        return post_alloc(a, gfp) if gfp else a

    def return_sheaf(s: int) -> None:
        """kmem_cache_return_sheaf(): free what is left and release the record.  Popped
        one at a time (size lowered before each free), so a death leaves the sheaf with
        exactly what is still its own (mm/slab/recover.py returns a dead CPU's sheaves)."""
        so = SH0 + s * SHEAF_REC
        si = (so + SH_SIZE) >> 3
        objs = (so + SH_OBJS) >> 3
        while u64[si]:
            nsz = u64[si] - 1
            u64[si] = nsz
            kc.free(u64[objs + nsz])
        store64(so + SH_STATE, 0)

    def sheaf_size(s: int) -> int:
        return u64[(SH0 + s * SHEAF_REC + SH_SIZE) >> 3]

    # -------------------------------------------------------- per-CPU sheaves (6.18+: caches with a sheaf_capacity)
    # The CPU's main and spare sheaf ids live in one word (K_PCS: main + 1 | spare + 1 << 32,
    # 0 = none: the bootstrap sheaf, empty and of capacity 0) under the pcs lock (K_PCS_LOCK,
    # local_trylock: CAS 0 -> token; the owner never waits for it -- a failed trylock sends
    # the operation down the normal path -- a flushing CPU does).  The barn of the local
    # node keeps up to MAX_FULL_SHEAVES full and MAX_EMPTY_SHEAVES empty sheaves under
    # "&barn->lock".  Order: pcs lock -> &barn->lock; objects go back to slabs (sheaf
    # flush) and come from them (refill) with neither held.
    def sh_off(s: int) -> int:
        return SH0 + s * SHEAF_REC

    def sh_size(s: int) -> int:
        return u64[(SH0 + s * SHEAF_REC + SH_SIZE) >> 3] if s >= 0 else 0

    def pcs_get() -> tuple[int, int]:
        v = u64[pcsw]
        return (v & _LO) - 1, (v >> 32) - 1

    def pcs_set(main: int, spare: int) -> None:
        u64[pcsw] = (main + 1) | (spare + 1) << 32

    def pcs_lock_wait(lo: int) -> None:
        n = 0
        while cas64(lo, 0, token) != 0:
            n += 1
            sched_yield() if n > 32 else time.sleep(0)

    def alloc_empty_sheaf() -> int:
        """alloc_empty_sheaf(): a free record of the sheaf pool; -1 when the pool is used up."""
        for s in range(SHN):
            so = sh_off(s)
            if load64(so + SH_STATE) == 0 and cas64(so + SH_STATE, 0, SHEAF_PCS | (cpu + 1)) == 0:
                u64[(so + SH_CACHE) >> 3] = cid
                u64[(so + SH_SIZE) >> 3] = 0
                u64[(so + SH_CAP) >> 3] = pcs_cap
                u64[(so + SH_NEXT) >> 3] = NIL32
                return s
        return -1

    def free_empty_sheaf(s: int) -> None:
        store64(sh_off(s) + SH_STATE, 0)

    def refill_sheaf_pcs(s: int, gfp: int) -> bool:
        """refill_sheaf(): fill to capacity from the slabs (__kmem_cache_alloc_bulk: all or
        nothing here); the objects are not counted as allocations."""
        want = pcs_cap - u64[(sh_off(s) + SH_SIZE) >> 3]
        if want <= 0:
            return True
        if not sheaf_fill(s, want, gfp, True):
            return False
        stat(ST_SHEAF_REFILL, want)
        return True

    def sheaf_take(s: int) -> tuple[int, int]:
        """A per-CPU sheaf's objects moved to the context's spill area under a
        slab_sheaf_flush record (step 1), its size 0: (record, count).  The spill, not
        the array: once the size is 0 the sheaf may be refilled (the irq context) before
        the objects are back on their slabs."""
        so = sh_off(s)
        n = u64[(so + SH_SIZE) >> 3]
        r = begin(_OP_SHF, cid, s, n)
        objs = (so + SH_OBJS) >> 3
        u64[spill0 : spill0 + n] = u64[objs : objs + n]
        u64[(so + SH_SIZE) >> 3] = 0
        u64[r + 7] = 1
        return r, n

    def sheaf_spill_free(r: int, n: int) -> None:
        """The spilled objects back to their slabs (uncounted: per-CPU sheaves hold free
        objects); step i + 2 once the i-th is back."""
        for i in range(n):
            a = u64[spill0 + i]
            p = head_of(a)
            slab_free(p, obj_index(p, a), False, r, i + 2)
            if fp:
                fp(P_SHF_FREED)
        end(r)

    def sheaf_flush_unused(s: int) -> None:
        """sheaf_flush_unused(): every object of the sheaf back to its slab."""
        r, n = sheaf_take(s)
        sheaf_spill_free(r, n)
        if n:
            stat(ST_SHEAF_FLUSH, n)

    # barn: lists through SH_NEXT (list_add / list_first_entry: a stack), under &barn->lock
    def _barn_pop(head: int, cnt: int) -> int:
        s = u32[head >> 2]
        if s == NIL32:
            return -1
        u32[head >> 2] = u64[(sh_off(s) + SH_NEXT) >> 3]
        u32[cnt >> 2] -= 1
        return s

    def _barn_push(head: int, cnt: int, s: int) -> None:
        u64[(sh_off(s) + SH_NEXT) >> 3] = u32[head >> 2]
        u32[head >> 2] = s
        u32[cnt >> 2] += 1

    def barn_get_empty_sheaf() -> int:
        if not u32[bnr_empty >> 2]:
            return -1
        barn_acq()
        try:
            return _barn_pop(bempty, bnr_empty)
        finally:
            barn_rel()

    def barn_put_empty_sheaf(s: int) -> None:
        barn_acq()
        try:
            _barn_push(bempty, bnr_empty, s)
        finally:
            barn_rel()

    def barn_put_full_sheaf(s: int) -> None:
        barn_acq()
        try:
            _barn_push(bfull, bnr_full, s)
        finally:
            barn_rel()

    def barn_replace_empty_sheaf(empty: int) -> int:
        """A full sheaf for an empty one (the bootstrap sheaf is not handed in), or -1."""
        if not u32[bnr_full >> 2]:
            return -1
        barn_acq()
        try:
            full = _barn_pop(bfull, bnr_full)
            if full >= 0 and empty >= 0:
                _barn_push(bempty, bnr_empty, empty)
            return full
        finally:
            barn_rel()

    def barn_replace_full_sheaf(full: int) -> int:
        """An empty sheaf for a full one; -2 (E2BIG) when the barn has MAX_FULL_SHEAVES,
        -1 (ENOMEM) when it has no empty one."""
        if u32[bnr_full >> 2] >= MAX_FULL_SHEAVES:
            return -2
        if not u32[bnr_empty >> 2]:
            return -1
        barn_acq()
        try:
            empty = _barn_pop(bempty, bnr_empty)
            if empty >= 0:
                _barn_push(bfull, bnr_full, full)
            return empty
        finally:
            barn_rel()

    def pcs_replace_empty_main(gfp: int) -> int:
        """__pcs_replace_empty_main(): pcs lock held and main empty.  Returns the new main
        (lock held) or -1 (lock released)."""
        main, spare = pcs_get()
        if spare >= 0 and sh_size(spare):
            pcs_set(spare, main)
            return spare
        full = barn_replace_empty_sheaf(main)
        if full >= 0:
            stat(ST_BARN_GET)
            pcs_set(full, spare)
            if fp:
                fp(P_PCS_BARN)
            return full
        stat(ST_BARN_GET_FAIL)
        if spare >= 0:                               # gfpflags_allow_blocking(): always here
            empty, spare = spare, -1
            pcs_set(main, -1)
        else:
            empty = barn_get_empty_sheaf()
        store64(pcsl, 0)
        if empty >= 0:
            if fp:
                fp(P_PCS_DETACHED)                   # in no place: recovery flushes and frees it
            if refill_sheaf_pcs(empty, gfp):
                full = empty
            else:
                free_empty_sheaf(empty)
        else:
            full = alloc_empty_sheaf()
            if fp and full >= 0:
                fp(P_PCS_DETACHED)
            if full >= 0 and not refill_sheaf_pcs(full, gfp):
                free_empty_sheaf(full)
                full = -1
        if full < 0:
            return -1
        pcs_lock_wait(pcsl)
        main, spare = pcs_get()
        if not sh_size(main):
            if main >= 0:
                barn_put_empty_sheaf(main)
            pcs_set(full, spare)
            return full
        if spare < 0:
            pcs_set(main, full)
        elif not sh_size(spare):
            barn_put_empty_sheaf(spare)
            pcs_set(main, full)
        else:
            barn_put_full_sheaf(full)
            stat(ST_BARN_PUT)
        return main

    def pcs_install_empty_sheaf(empty: int) -> int:
        """__pcs_install_empty_sheaf() (pcs lock held); returns the main sheaf."""
        main, spare = pcs_get()
        if main < 0:
            pcs_set(empty, spare)
            return empty
        if spare < 0:
            pcs_set(empty, main)
            return empty
        if sh_size(main) < pcs_cap:
            barn_put_empty_sheaf(empty)
            return main
        if sh_size(spare) < pcs_cap:
            pcs_set(spare, main)
            barn_put_empty_sheaf(empty)
            return spare
        barn_put_full_sheaf(main)
        stat(ST_BARN_PUT)
        pcs_set(empty, spare)
        return empty

    def sheaf_flush_main() -> bool:
        """sheaf_flush_main(): empty the main sheaf into the slabs (outside the pcs lock)."""
        if cas64(pcsl, 0, token) != 0:
            return False
        main, _ = pcs_get()
        r = n = 0
        if main >= 0:
            r, n = sheaf_take(main)
        store64(pcsl, 0)
        if main >= 0:
            sheaf_spill_free(r, n)
        if n:
            stat(ST_SHEAF_FLUSH, n)
        return True

    def pcs_replace_full_main() -> int:
        """__pcs_replace_full_main(): pcs lock held and main full.  Returns the new main
        (lock held) or -1 (lock released)."""
        while True:
            main, spare = pcs_get()
            put_fail = False
            empty = -1
            if spare < 0:
                empty = barn_get_empty_sheaf()
                if empty >= 0:
                    return pcs_install_empty_sheaf(empty)
            elif sh_size(spare) < pcs_cap:
                pcs_set(spare, main)
                return spare
            else:
                if main >= 0:
                    r = barn_replace_full_sheaf(main)
                    if r >= 0:
                        stat(ST_BARN_PUT)
                        pcs_set(r, spare)
                        if fp:
                            fp(P_PCS_BARN)
                        return r
                else:
                    r = -1
                if r == -2:                           # barn full: flush the spare, reuse it
                    stat(ST_BARN_PUT_FAIL)
                    pcs_set(main, -1)
                    store64(pcsl, 0)
                    if fp:
                        fp(P_PCS_DETACHED)
                    sheaf_flush_unused(spare)
                    if cas64(pcsl, 0, token) != 0:
                        barn_put_empty_sheaf(spare)
                        return -1
                    return pcs_install_empty_sheaf(spare)
                put_fail = True
            store64(pcsl, 0)                          # alloc_empty:
            empty = alloc_empty_sheaf()
            if fp and empty >= 0:
                fp(P_PCS_DETACHED)
            if empty >= 0:
                if cas64(pcsl, 0, token) != 0:
                    barn_put_empty_sheaf(empty)
                    return -1
                return pcs_install_empty_sheaf(empty)
            if put_fail:
                stat(ST_BARN_PUT_FAIL)
            if not sheaf_flush_main() or cas64(pcsl, 0, token) != 0:
                return -1
            main, _ = pcs_get()
            if main >= 0 and sh_size(main) < pcs_cap:
                return main

    def alloc_from_pcs(gfp: int, node: int) -> int:
        """alloc_from_pcs(): pop the main sheaf under the pcs trylock; 0 = use the normal
        path (trylock failed, no memory, or `node` is not this CPU's / not the object's)."""
        if node >= 0 and node != mynid:
            return 0
        if cas64(pcsl, 0, token) != 0:
            return 0
        main, _ = pcs_get()
        if not sh_size(main):
            main = pcs_replace_empty_main(gfp)
            if main < 0:
                return 0
        so = sh_off(main)
        n = u64[(so + SH_SIZE) >> 3] - 1
        a = u64[((so + SH_OBJS) >> 3) + n]
        if node >= 0 and u8[SM + head_of(a) * SMETA + M_NID] != node:
            store64(pcsl, 0)
            return 0
        u64[ho] = a - aoff                          # hand-off, before the take
        u64[(so + SH_SIZE) >> 3] = n
        store64(pcsl, 0)
        stat(ST_ALLOC_PCS)
        return a

    def free_to_pcs(addr: int) -> bool:
        """free_to_pcs(): push on the main sheaf under the pcs trylock; False = the
        normal path (trylock failed, no sheaf to be had)."""
        if cas64(pcsl, 0, token) != 0:
            return False
        main, _ = pcs_get()
        r = -1
        if main < 0 or sh_size(main) >= pcs_cap:
            # The swap may flush a sheaf and pass points before `addr` is pushed: a record
            # (step 0: addr still the caller's, 1: on the main sheaf, not yet counted freed).
            r = begin(_OP_PCSF, cid, addr)
            main = pcs_replace_full_main()
            if main < 0:
                end(r)
                return False
        so = sh_off(main)
        n = u64[(so + SH_SIZE) >> 3]
        u64[((so + SH_OBJS) >> 3) + n] = addr
        u64[(so + SH_SIZE) >> 3] = n + 1
        store64(pcsl, 0)
        stat(ST_FREE_PCS)
        if r >= 0:
            u64[r + 7] = 1
            if fp:
                fp(P_PCS_PUSHED)
            end(r)
        return True

    def alloc_from_pcs_bulk(n: int) -> list[int]:
        """alloc_from_pcs_bulk() (v6.19): up to n objects from the main sheaf, a batch per
        sheaf, each under the pcs trylock (the batch is the top of the sheaf's array, in
        array order, as the kernel's memcpy).  An empty main is swapped with a non-empty
        spare or traded with the barn for a full sheaf; when the trylock fails or the barn
        has none, the rest is left to the slabs (no refill: that would copy the pointers
        twice).  The objects are not counted here (the caller counts allocations)."""
        out: list[int] = []
        while len(out) < n:
            if cas64(pcsl, 0, token) != 0:
                return out
            main, spare = pcs_get()
            if not sh_size(main):
                if spare >= 0 and sh_size(spare):
                    pcs_set(spare, main)
                    main = spare
                else:
                    full = barn_replace_empty_sheaf(main)
                    if full < 0:
                        stat(ST_BARN_GET_FAIL)
                        store64(pcsl, 0)
                        return out
                    stat(ST_BARN_GET)
                    pcs_set(full, spare)
                    main = full
            so = sh_off(main)
            size = u64[(so + SH_SIZE) >> 3]
            batch = min(n - len(out), size)
            size -= batch
            base = ((so + SH_OBJS) >> 3) + size
            out += u64[base : base + batch].tolist()
            u64[(so + SH_SIZE) >> 3] = size
            store64(pcsl, 0)
            stat(ST_ALLOC_PCS, batch)
        return out

    def free_to_pcs_bulk(addrs: list[int]) -> None:
        """free_to_pcs_bulk() (v6.19): local-node objects onto the main sheaf, a batch per
        sheaf under the pcs trylock; a full main is swapped for an empty sheaf of the barn
        (the old main becomes the spare when there is none), for a spare with room, or
        traded with the barn (barn_replace_full_sheaf).  When the trylock fails or the barn
        has no empty sheaf (or MAX_FULL_SHEAVES full ones) the rest goes to the slabs
        (__kmem_cache_free_bulk), as do other nodes' objects (Linux batches those by
        PCS_BATCH_MAX; here they follow the local ones).  Every object counts as a free."""
        local: list[int] = []
        remote: list[int] = []
        for a in addrs:
            (local if u8[SM + head_of(a) * SMETA + M_NID] == mynid else remote).append(a)
        i, n = 0, len(local)
        while i < n:
            if cas64(pcsl, 0, token) != 0:
                break
            main, spare = pcs_get()
            if main < 0:                              # the empty sheaf init_percpu_sheaves gives main
                main = alloc_empty_sheaf()
                if main < 0:
                    store64(pcsl, 0)
                    break
                pcs_set(main, spare)
            if sh_size(main) >= pcs_cap:
                if spare < 0:
                    empty = barn_get_empty_sheaf()
                    if empty < 0:
                        store64(pcsl, 0)
                        break
                    pcs_set(empty, main)
                    main = empty
                elif sh_size(spare) < pcs_cap:
                    pcs_set(spare, main)
                    main = spare
                else:
                    empty = barn_replace_full_sheaf(main)
                    if empty < 0:
                        stat(ST_BARN_PUT_FAIL)
                        store64(pcsl, 0)
                        break
                    stat(ST_BARN_PUT)
                    pcs_set(empty, spare)
                    main = empty
            so = sh_off(main)
            size = u64[(so + SH_SIZE) >> 3]
            batch = min(n - i, pcs_cap - size)
            base = ((so + SH_OBJS) >> 3) + size
            for j in range(batch):
                u64[base + j] = local[i + j]
            u64[(so + SH_SIZE) >> 3] = size + batch
            store64(pcsl, 0)
            stat(ST_FREE_PCS, batch)
            u64[st_free] += batch
            i += batch
        for a in local[i:] + remote:                  # fallback / flush_remote: to the slabs
            free_pfn(head_of(a), a)

    def alloc_bulk_pcs_first(n: int, gfp: int = 0) -> list[int]:
        """kmem_cache_alloc_bulk() of a cache with sheaves: alloc_from_pcs_bulk, the rest
        from the slabs (__kmem_cache_alloc_bulk, which counts and prepares its own); all
        or nothing -- on failure the sheaves' objects go back to the slabs, not to the
        sheaves (Linux: "we have bigger problems")."""
        got = alloc_from_pcs_bulk(n) if n > 0 else []
        if len(got) < n:
            rest = alloc_bulk(n - len(got), gfp)
            if not rest:
                for a in got:
                    free_pfn(head_of(a), a)
                u64[st_free] -= len(got)              # never handed out: not frees
                return []
        else:
            rest = []
        u64[st_alloc] += len(got)
        if gfp:
            got = [post_alloc(a, gfp) for a in got]
        return got + rest

    def pcs_flush_cpu(tko: int) -> None:
        """pcs_flush_all() for CPU tko's sheaves: both go back to the slabs and to the pool."""
        lo = tko + K_PCS_LOCK
        pcs_lock_wait(lo)
        v = u64[(tko + K_PCS) >> 3]
        u64[(tko + K_PCS) >> 3] = 0
        store64(lo, 0)
        for s in ((v & _LO) - 1, (v >> 32) - 1):
            if s >= 0:
                sheaf_flush_unused(s)
                free_empty_sheaf(s)

    def barn_shrink() -> None:
        """barn_shrink() of every node's barn (kmem_cache_shrink / destroy): full sheaves'
        objects back to the slabs, every record back to the pool."""
        for nid in range(nr_nodes):
            no = node_offs[nid]
            acq, rel = barn_locks[nid].acquire, barn_locks[nid].release
            acq()
            try:
                sheaves = []
                for head, cnt in ((no + N_BARN_FULL, no + N_BARN_NR_FULL), (no + N_BARN_EMPTY, no + N_BARN_NR_EMPTY)):
                    while (s := _barn_pop(head, cnt)) >= 0:
                        sheaves.append(s)
            finally:
                rel()
            for s in sheaves:
                sheaf_flush_unused(s)
                free_empty_sheaf(s)

    # the entry points of a cache with per-CPU sheaves (bound to the KmemCache at the end;
    # the closures above keep calling the plain ones, so a refill never re-enters a sheaf)
    def alloc_pcs_first(gfp: int = 0) -> int:
        """slab_alloc_node(): the per-CPU sheaves first, then the cpu slab."""
        a = alloc_from_pcs(gfp, -1)
        if a:
            u64[st_alloc] += 1
            return post_alloc(a, gfp) if gfp else a
        return alloc(gfp)

    def free_pfn_pcs_first(pfn: int, addr: int) -> None:
        """slab_free(): a local-node object to the per-CPU sheaves, else do_slab_free."""
        if u8[SM + pfn * SMETA + M_NID] == mynid and free_to_pcs(addr):
            u64[st_free] += 1
            return
        free_pfn(pfn, addr)

    def free_pcs_first(addr: int) -> None:
        free_pfn_pcs_first(head_of(addr), addr)

    def alloc_node_pcs_first(nid: int, gfp: int = 0) -> int:
        a = alloc_from_pcs(gfp, nid) if nid < 0 or nid == mynid else 0
        if a:
            u64[st_alloc] += 1
            return post_alloc(a, gfp) if gfp else a
        return alloc_node(nid, gfp)

    def ksize(addr: int) -> int:
        return osize

    # -------------------------------------------------------- SLAB_FREELIST_HARDENED
    # freelist_ptr_encode/decode(): a free pointer is stored as index ^ s->random ^ (the
    # arena offset of its slot >> 2), so a pointer overwritten by a use-after-free write
    # or an overflow decodes to an index outside the slab and is caught where a freelist
    # is followed: the lockless fast paths check the decoded head and next (a bad value
    # seen while the freelist word is unchanged is corruption, not a race: the word would
    # have moved), the locked walks check every step (fp_get).  set_freepointer()'s naive
    # double-free check: freeing the object that heads the CPU freelist is a BUG.  A
    # corruption is reported (san/report.py kind "freelist") and the operation stopped;
    # the slab keeps its corrupted pointer (Linux would oops or trust it).  The free
    # pointer closures, the fast paths and the bulk allocation are replaced here, once.
    if rnd:
        def freechain_corrupt(pfn: int, idx: int, raw: int, why: str) -> Exception:
            from aerosync.mm.san.report import call_trace, oops

            o = PHYS + (pfn << PAGE_SHIFT) + idx * size
            lines = ["=" * 77, f"BUG {kc.name} (Not tainted): {why}", "-" * 77, "",
                     f"Slab 0x{VBASE + (pfn << PAGE_SHIFT):x} objects={objects} fp index {idx}",
                     f"Object 0x{o + red_left + VOFF:x} @offset={idx * size + red_left} fp=0x{raw:08x} "
                     f"decodes to 0x{raw ^ rnd ^ ((o + fpo) >> 2) & _LO:x}", "Call Trace:",
                     *(f" {f}" for f in call_trace()), f"kernel BUG at mm/slub.c: {why} (SLAB_FREELIST_HARDENED)"]
            return oops(arena, "freelist", "\n".join(lines), "freelist-corruption")

        def fp_get(pfn: int, idx: int) -> int:
            o = PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo
            raw = u32[o >> 2]
            nxt = raw ^ rnd ^ ((o >> 2) & _LO)
            if nxt >= objects and nxt != NIL32:
                raise freechain_corrupt(pfn, idx, raw, "Freechain corrupt")
            return nxt

        def fp_set(pfn: int, idx: int, nxt: int) -> None:
            o = PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo
            u32[o >> 2] = nxt ^ rnd ^ ((o >> 2) & _LO)

        def alloc_hardened_slow(gfp: int) -> int:
            """alloc_retry with decoded, checked pointers."""
            while True:
                w = load64(cw)
                idx = w & _LO
                pfn = u64[cslab]
                if idx == NIL32 or pfn == NIL64:
                    addr = alloc_slow(gfp)
                    if addr == 0:
                        continue
                    if addr < 0:
                        return 0
                    break
                o = PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo
                raw = u32[o >> 2] if idx < objects else 0
                nxt = raw ^ rnd ^ ((o >> 2) & _LO)
                if idx >= objects or (nxt >= objects and nxt != NIL32):
                    if load64(cw) == w and u64[cslab] == pfn:
                        raise freechain_corrupt(pfn, min(idx, objects - 1), raw, "Freechain corrupt")
                    continue
                if cas64(cw, w, ((w + STEP) & _HI) | nxt) == w:
                    addr = o - fpo + red_left + VOFF
                    break
                u64[ST + ST_CAS_FAIL] += 1
            u64[st_alloc] += 1
            return post_alloc(addr, gfp) if gfp else addr

        def alloc(gfp: int = 0) -> int:
            """The fast path with the hardened pointer (see above)."""
            w = load64(cw)
            idx = w & _LO
            pfn = u64[cslab]
            if idx < objects and pfn != NIL64:
                o = PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo
                nxt = u32[o >> 2] ^ rnd ^ ((o >> 2) & _LO)
                if (nxt < objects or nxt == NIL32) and cas64(cw, w, ((w + STEP) & _HI) | nxt) == w:
                    u64[st_alloc] += 1
                    if gfp:
                        return post_alloc(o - fpo + red_left + VOFF, gfp)
                    return o - fpo + red_left + VOFF
            return alloc_hardened_slow(gfp)

        alloc_retry = alloc_hardened_slow

        def alloc_node(nid: int, gfp: int = 0) -> int:
            if nid < 0 or not has_mem[nid]:
                return alloc(gfp)
            while True:
                w = load64(cw)
                idx = w & _LO
                pfn = u64[cslab]
                if idx != NIL32 and pfn != NIL64 and u8[SM + pfn * SMETA + M_NID] == nid:
                    o = PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo
                    raw = u32[o >> 2] if idx < objects else 0
                    nxt = raw ^ rnd ^ ((o >> 2) & _LO)
                    if idx >= objects or (nxt >= objects and nxt != NIL32):
                        if load64(cw) == w and u64[cslab] == pfn:
                            raise freechain_corrupt(pfn, min(idx, objects - 1), raw, "Freechain corrupt")
                        continue
                    if cas64(cw, w, ((w + STEP) & _HI) | nxt) == w:
                        addr = o - fpo + red_left + VOFF
                        break
                    u64[ST + ST_CAS_FAIL] += 1
                    continue
                addr = slab_alloc_slow(gfp, nid)
                if addr == 0:
                    continue
                if addr < 0:
                    return 0
                break
            u64[st_alloc] += 1
            return post_alloc(addr, gfp) if gfp else addr

        def free_pfn(pfn: int, addr: int) -> None:
            u64[st_free] += 1
            while True:
                w = load64(cw)
                if pfn != u64[cslab]:
                    return free_other(pfn, addr)
                idx = (addr - VBASE - (pfn << PAGE_SHIFT) - red_left) // size
                if idx == w & _LO:                     # set_freepointer(): BUG_ON(object == fp)
                    u64[st_free] -= 1
                    raise freechain_corrupt(pfn, idx, u32[(PHYS + (pfn << PAGE_SHIFT) + idx * size + fpo) >> 2],
                                            "double free or corruption (the object heads the freelist)")
                fp_set(pfn, idx, w & _LO)
                if cas64(cw, w, ((w + STEP) & _HI) | idx) == w:
                    return
                u64[ST + ST_CAS_FAIL] += 1

        free_retry = free_pfn

        def alloc_bulk(n: int, gfp: int = 0) -> list[int]:
            """kmem_cache_alloc_bulk() one object at a time: the lockless chain walk of the
            plain version cannot tell a racing reader's garbage from corruption."""
            out: list[int] = []
            for _ in range(n):
                a = alloc(gfp)
                if not a:
                    free_bulk(out)
                    return []
                out.append(a)
            return out

    # -------------------------------------------------------- debug caches: locked path
    debug_init = None
    if kc.debug:
        dbg = D.DebugOps(arena, kc, info, slub, obj_addr, sm_of, fp_get, fp_set)
        debug_init = dbg.init_slab

        def alloc_dbg(gfp: int = 0, nid: int = -1, orig: int = 0) -> int:
            """Debug caches: every alloc under list_lock (alloc_debug_processing).  nid -1:
            the local node's partial slabs, else another node's (get_any_partial), else a
            new slab wherever the page allocator finds one; an explicit nid: that node only
            (0 when it has no memory)."""
            want = nid
            nid = mynid if nid < 0 else nid
            no = node_offs[nid]
            while True:
                if want < 0 and u32[(no + N_HEAD) >> 2] == NIL32:    # unlocked peek, a hint
                    for n2 in range(nr_nodes):
                        if u32[(node_offs[n2] + N_HEAD) >> 2] != NIL32:
                            nid, no = n2, node_offs[n2]
                            break
                nl_acq[nid]()
                try:
                    pfn = u32[(no + N_HEAD) >> 2]
                    if pfn != NIL32:
                        m = sm_of(pfn) + M_WORD
                        old = load64(m)
                        idx = old & _LO
                        nxt = fp_get(pfn, idx)
                        store64(m, (old & 0xFFFF_0000_0000_0000) | (((old >> 32) & 0xFFFF) + 1) << 32 | nxt)
                        if nxt == NIL32:
                            remove_partial_locked(nid, pfn)
                        ok = dbg.alloc_check(pfn, idx, orig)
                        if not ok:                     # isolated: never handed out again
                            u32[(sm_of(pfn) + M_ISOLATED) >> 2] += 1
                            continue
                        stat(ST_ALLOC_PARTIAL)
                        stat(ST_ALLOC_SLOW)
                        u64[st_alloc] += 1
                        addr = obj_addr(pfn, idx)
                        return post_alloc(addr, gfp) if gfp else addr
                finally:
                    nl_rel[nid]()
                pfn = new_slab(mynid if want < 0 else want,
                               gfp if want < 0 else gfp | _GFP_THISNODE | _GFP_NOWARN)
                if pfn < 0:
                    return 0
                nid = u8[sm_of(pfn) + M_NID]         # fallback node: its list, its lock
                no = node_offs[nid]
                nl_acq[nid]()
                try:
                    add_partial_locked(nid, pfn, False)
                finally:
                    nl_rel[nid]()

        def free_dbg(addr: int) -> None:
            """Debug caches: checks, poison, tracking, then the slab freelist under list_lock."""
            ccid, pfn = slub.cache_of(addr)
            if ccid != cid:
                dbg.report_invalid_free(addr, ccid, pfn, "object not from this cache" if ccid >= 0
                                        else "not a slab object")
                return
            nid = u8[sm_of(pfn) + M_NID]
            nl_acq[nid]()
            discard = -1
            r = begin(_OP_DBGF, cid, pfn, obj_index(pfn, addr))   # step 1: on the freelist
            done = False
            try:
                idx = dbg.free_check(pfn, addr)        # reports; -1 = refuse, -2 = isolate
                if idx == -1:
                    return
                m = sm_of(pfn)
                old = load64(m + M_WORD)
                fl, inuse = old & _LO, (old >> 32) & 0xFFFF
                u64[st_free] += 1
                stat(ST_FREE_SLOW)
                if idx < -1:
                    u32[(m + M_ISOLATED) >> 2] += 1
                    return
                fp_set(pfn, idx, fl)
                store64(m + M_WORD, (old & 0xFFFF_0000_0000_0000) | (inuse - 1) << 32 | idx)
                u64[r + 7] = 1
                no = node_offs[nid]
                lst = u8[m + M_LIST]
                if inuse == 1 and u64[(no + N_NR_PARTIAL) >> 3] >= min_partial and not u32[(m + M_ISOLATED) >> 2]:
                    if lst == LIST_NODE_PARTIAL:
                        remove_partial_locked(nid, pfn)
                    discard = pfn
                elif lst == LIST_NONE:
                    add_partial_locked(nid, pfn, True)
                done = True
            finally:
                nl_rel[nid]()
                if not done:                           # refused or isolated: nothing more to log
                    end(r)
            if fp:
                fp(P_DBG_FREED)
            if discard >= 0:
                discard_slab(discard)
            end(r)

        alloc = alloc_dbg
        free = free_dbg

        def alloc_orig(size: int, gfp: int = 0) -> int:
            """kmalloc into a debug cache: the requested size is kept (orig_size)."""
            return alloc_dbg(gfp, -1, size)

        kc.alloc_orig = alloc_orig

        def free_pfn(pfn: int, addr: int) -> None:
            free_dbg(addr)

        def alloc_node(nid: int, gfp: int = 0) -> int:
            return alloc_dbg(gfp, nid) or alloc_dbg(gfp)        # no memory on nid: fall back

        def alloc_bulk(n: int, gfp: int = 0) -> list[int]:
            out = []
            for _ in range(n):
                a = alloc_dbg(gfp)
                if not a:
                    free_bulk(out)
                    return []
                out.append(a)
            return out

    # -------------------------------------------------------- KFENCE's gate, inline
    # kfence_alloc() in slab_alloc_node: one allocation in `interval` (per cache and CPU)
    # tries the KFENCE pool first -- inlined in the alloc closures, because a wrapper's
    # extra call on every allocation cost more than the sampling (bench kvm:
    # kfence_overhead_pct).  With KASAN, debug caches or per-CPU sheaves the gate is
    # slab_hooks.py's wrapper instead (outside KASAN).  slab_free's is_kfence_address()
    # costs the fast path nothing: the pool is the top of physical memory (kfence.py
    # "Pool"), a pool page is never c->slab, so its free takes the slow path, free_other,
    # which tests the pool first (kmem_cache_free and its bulk form, whichever gate sampled).
    kf = san.kfence if san is not None else None
    kf_inline = kf is not None and san.kasan is None and not kc.debug and not pcs_cap and osize <= 4096
    if kf is not None and osize <= 4096:
        kf.free_stat[cid] = st_free           # kfree of a pool object counts it here (kfence free)
        kf_free = kf.free
        KF_PFN = (kf.lo - VBASE) >> PAGE_SHIFT  # the pool's first pfn: the top of the direct map
        slab_free_other = free_other

        def free_other(pfn: int, addr: int) -> None:
            """free_other with is_kfence_address() first: a pool object to KFENCE
            (free_pfn counted the free; a free KFENCE refuses is uncounted again)."""
            if pfn >= KF_PFN:
                try:
                    kf_free(addr, False, 2)             # frames: this, free_pfn
                except BaseException:
                    u64[st_free] -= 1
                    raise
                return
            slab_free_other(pfn, addr)
    if kf_inline:
        kf_alloc = kf.alloc
        interval = san.interval
        # The gate is folded into the per-CPU alloc counter the fast path reads and bumps
        # anyway (u64[st_alloc]): the sample is due when it reaches kf_next -- one
        # compare, no counter of its own to store on every allocation.  Every allocation
        # of this CPU context counts (slow paths and bulk included), as Linux's gate
        # counts time, not the allocations it lets through.
        kf_next = u64[st_alloc] + interval - 1
        kf_align = info["align"]
        plain_alloc, plain_alloc_node = alloc, alloc_node

        def kf_sample(n: int, gfp: int, req: int = 0) -> int:
            """kfence_alloc(): the gate opened at count n -- the next sample is due
            `interval` allocations on; this one tries the pool (0: it goes to the slabs)
            for `req` bytes (kmalloc's requested size; 0: the object size).  Out of line,
            so the gated closures carry two free variables for KFENCE, not six: each one
            is copied into every call's frame and cleared after it."""
            nonlocal kf_next
            kf_next = n + interval
            a = kf_alloc(cid, req or osize, kf_align, gfp, 2)      # frames: this, the gated alloc
            if a:
                u64[st_alloc] += 1
            return a

        if rnd:
            def alloc(gfp: int = 0, req: int = 0) -> int:
                n = u64[st_alloc]
                if n >= kf_next:
                    a = kf_sample(n, gfp, req)
                    if a:
                        return a
                return plain_alloc(gfp)
        else:
            def alloc(gfp: int = 0, req: int = 0) -> int:
                """The fast path (see the plain alloc) behind KFENCE's gate; `req`:
                kmalloc's requested size, for a sampled object."""
                n = u64[st_alloc]
                if n >= kf_next:                       # kfence_alloc(): this one tries the pool
                    a = kf_sample(n, gfp, req)
                    if a:
                        return a
                w = load64(cw)
                idx = w & _LO
                pfn = u64[cslab]
                if idx != NIL32 and pfn != NIL64:
                    base = PHYS + (pfn << PAGE_SHIFT) + idx * size
                    if cas64(cw, w, ((w + STEP) & _HI) | u32[(base + fpo) >> 2]) == w:
                        u64[st_alloc] = n + 1              # nothing else of this context ran since the read
                        if gfp:
                            return post_alloc(base + red_left + VOFF, gfp)
                        return base + red_left + VOFF
                    u64[ST + ST_CAS_FAIL] += 1
                return alloc_retry(gfp)

        def alloc_node(nid: int, gfp: int = 0) -> int:
            n = u64[st_alloc]
            if n >= kf_next:
                a = kf_sample(n, gfp)
                if a:
                    return a
            return plain_alloc_node(nid, gfp)

    kc.alloc, kc.free, kc.alloc_node, kc.alloc_bulk, kc.free_bulk = alloc, free, alloc_node, alloc_bulk, free_bulk
    kc.alloc_req = alloc if kf_inline else None   # kmalloc passes req while kc.alloc is still this one
    kc.prefill_sheaf, kc.alloc_from_sheaf, kc.refill_sheaf = prefill_sheaf, alloc_from_sheaf, refill_sheaf
    kc.return_sheaf, kc.sheaf_size, kc.flush_cpu, kc.ksize = return_sheaf, sheaf_size, flush_cpu, ksize
    kc.free_slow = slab_free
    kc.free_pfn = free_pfn
    kc.alloc_slow = alloc_node_locked
    kc.barn_shrink = barn_shrink if pcs_cap else _noop
    if pcs_cap:
        kc.alloc, kc.free, kc.free_pfn, kc.alloc_node = (alloc_pcs_first, free_pcs_first, free_pfn_pcs_first,
                                                         alloc_node_pcs_first)
        kc.alloc_bulk, kc.free_bulk = alloc_bulk_pcs_first, free_to_pcs_bulk
    kc.free_raw = kc.free
    if san is not None:
        # [debug] sanitizers: SLUB's own frees of objects no caller saw (a failed bulk
        # allocation, a returned sheaf) bypass them; the entry points become theirs.
        raw_free = kc.free

        def free_bulk(addrs: list[int]) -> None:
            for a in addrs:
                raw_free(a)

        raw = {"alloc": kc.alloc, "alloc_node": kc.alloc_node, "alloc_bulk": kc.alloc_bulk, "free": kc.free,
               "free_pfn": kc.free_pfn, "alloc_from_sheaf": kc.alloc_from_sheaf, "alloc_orig": kc.alloc_orig,
               "kfence_inline": kf_inline}
        san.install(kc, raw)

        def free_bulk_public(addrs: list[int]) -> None:
            for a in addrs:
                kc.free(a)

        kc.free_bulk = free_bulk_public


def _noop() -> None:
    return None


_ = GFP_KERNEL  # re-exported default gfp for callers of alloc(gfp)


# ------------------------------------------------------------------ destroy (slab_common.c calls
# __kmem_cache_shutdown here: it needs the allocator to flush every CPU)
def kmem_cache_destroy(arena: Any, which: int | str, cpu: int = CPU_COORD) -> None:
    """kmem_cache_destroy(): flush every CPU, free empty slabs; refuses (SlabError,
    cache kept) while objects are still allocated, as Linux's "Objects remaining"."""
    cid = which if isinstance(which, int) else kmem_cache_lookup(arena, which)
    if cid < 0:
        raise SlabError(f"kmem_cache_destroy: no cache {which!r}")
    _, nr_cpus, nr_nodes, _, _ = _geo(arena)
    h = Slub(arena, 0 if cpu == CPU_COORD else cpu)
    kc = h.cache(cid)
    for c in range(nr_cpus):
        kc.flush_cpu(c)
    kc.barn_shrink()
    net = slab_stats(arena, cid)
    left = net["alloc"] - net["free"]
    sm = arena.array("slabmeta", np.uint32).reshape(-1, SMETA // 4)
    pfns = np.flatnonzero(sm[:, M_CACHE // 4] == cid + 1).tolist()
    del sm
    if left:
        raise SlabError(f"kmem_cache_destroy: {kc.name}: {left} objects remaining (cache kept)")
    for nid in range(nr_nodes):
        no = _node_off(arena, cid, nid, nr_nodes)
        arena.u32[(no + N_HEAD) >> 2] = NIL32
        arena.u64[(no + N_NR_PARTIAL) >> 3] = 0
    item = NR_SLAB_RECLAIMABLE if kc.flags & SLAB_RECLAIM_ACCOUNT else NR_SLAB_UNRECLAIMABLE
    nsb = node_stat_base(arena, h.cpu)
    for pfn in pfns:
        m = arena.off("slabmeta") + pfn * SMETA
        o = arena.u8[m + M_ORDER]
        arena.atomic.fetch_add64((nsb + arena.u8[m + M_NID] * NR_NODE_STATS + item) << 3, (1 << 64) - (1 << o))
        arena.u8[m : m + SMETA] = bytes(SMETA)
        arena.u32[(arena.off("pagemeta") >> 2) + pfn * (PAGE_META_SIZE >> 2)] &= ~PG_slab
        h.mm.free_pages(pfn, o)
    arena.atomic.store32(_cache_off(arena, cid) + C_STATE, CACHE_FREE)
