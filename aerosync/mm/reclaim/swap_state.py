"""The swap cache, swap I/O, and the swap-in fault.

Models: mm/swap_state.c (add_to_swap / __swap_cache_add_folio, __swap_cache_del_folio
leaving a shadow, swap_cache_get_folio, __read_swap_cache_async: concurrent faults on
one entry share one read, swap_cluster_readahead), mm/page_io.c (swap_writepage /
swap_read_folio: ZMM first, the zeromap, else the file), mm/memory.c do_swap_page.
Unit: one swap slot and the folio caching it.

Swap-table word of a slot (u64, written under the slot's &ci->lock, read lock-free):
0, a folio (pfn << 2: in the swap cache), or a shadow value (workingset.py).  A swap-cache
folio has PG_swapcache, private = slot + 1, and the cache holds one reference; the slot
has SWAP_HAS_CACHE.  The folio lock (PG_locked) serialises everything that changes what
a cached folio is: reclaim holds it from isolation to the slot's shadow; swap-in holds
it while reading and while mapping; a fault that finds a cached folio takes the lock and
rechecks (PG_swapcache and private == its slot) before using it.

Where a swapped-out page is referenced (each one a swap_map count):
  * private anonymous: every PTE that mapped it holds a swap PTE, and the object that
    held it holds a swap value entry at its index (the seed's objects are the anon
    tree: a fault with no PTE walks the shadow chain and must find the data);
  * shmem (OBJF_SHARED objects): only the object's swap value entry (PTEs are cleared,
    as Linux's shmem).
Swap value entry: xa value v = offset << 7 | 0b10 (tag 0b10; shadows use 0b11, the VM's
ZERO marker is v = 1).

do_swap_page (a swap PTE) and do_obj_swap (a swap value in an object, PTE none): get the
folio (cache hit, or a new folio added to the cache and read: VM_FAULT_MAJOR), lock it,
put it back into the object that holds the swap value (replacing it: one count less),
map it (the PTE's count goes), and when no count is left delete it from the cache (the
slot is freed).  A private page is mapped writable only when the faulting VMA's own
object holds it; otherwise read-only and the write fault that follows copies (COW).

Crash tolerance (robust mode, mm/intent.py): a swap-in -- the fault's, from the lookup
to the unlock, and each readahead page -- is a vm_swapin record: a1 the folio, a2 = 1 a
new one (new_cached: a2 and the allocation's hand-off window first, a1 as soon as the
page is ours, and the folio whole -- refcount 2, PG_swapcache -- before the slot names
it), step 1 new in the cache and being read, 2 read (ZMM's copy is dropped only after
the folio holds the data: zmm.load_copy, then load_drop), 3 uptodate and held; a1
cleared = released, before the unlock and put.  Recovery (swapin_finish) takes a step-0
new folio out of the slot (if it names it) and frees it, treats a step-0 found folio
(a1, no a2: locked and held, step 3 not yet stored) as step 3, frees a step-1 folio
(the slot still has the data), finishes a step-2 one (uptodate, dirty, on its LRU) and
unlocks and puts steps 2-3.  Unlogged, a CPU dying while it read left the folio locked
in the cache for good: the next fault on the slot waited for its lock (reclaim-thrash,
20 deaths: LRU4); killed from outside inside new_cached, the folio was lost, or left
locked in the cache the same way.
Point: vm:swapin:new.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aerosync.errors import AeroSyncError
from aerosync.mm import hooks
from aerosync.mm import intent as I
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import GFP_HIGHUSER_MOVABLE
from aerosync.mm.pmm.page import (
    P_INDEX,
    P_MAPPING,
    P_PRIVATE,
    PAGE_MAPPING_ANON,
    PG_dirty,
    PG_locked,
    PG_reclaim,
    PG_swapbacked,
    PG_swapcache,
    PG_uptodate,
)
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.swapfile import swap_path
from aerosync.mm.reclaim.workingset import is_shadow
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_RW, swp_offset, swp_type
from aerosync.mm.vm.vm_object import O_NR_PAGES, O_TREE, OBJF_DEAD, OBJF_SHARED
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE
from aerosync.sync import waithook as W

__all__ = ["SwapState", "swp_value", "is_swap_value", "swap_value_offset", "FolioLock", "VM_FAULT_MAJOR"]

VM_FAULT_OOM, VM_FAULT_MAJOR, VM_FAULT_RETRY = 0x1, 0x4, 0x400
_ALL32 = 0xFFFF_FFFF
_OP_SWAPIN, P_SWAPIN_NEW = I.OP["vm_swapin"], I.POINT_IDS["vm:swapin:new"]


def swp_value(offset: int) -> int:
    return (((offset << 7) | 2) << 1) | 1


def is_swap_value(e: int) -> bool:
    return e & 1 == 1 and (e >> 1) & 3 == 2


def swap_value_offset(e: int) -> int:
    return e >> 8


class FolioLock:
    """folio_trylock / folio_lock / folio_unlock on PG_locked (atomic on the flags word).
    A waiter answers its IPIs (sync/waithook.py) and backs off like the embedded locks."""

    def __init__(self, arena: Any) -> None:
        at, u32 = arena.atomic, arena.u32
        fetch_or32, fetch_and32 = at.fetch_or32, at.fetch_and32
        PM4 = arena.off("pagemeta") >> 2
        MW4 = PAGE_META_SIZE >> 2

        def trylock(pfn: int) -> bool:
            return not fetch_or32((PM4 + pfn * MW4) << 2, PG_locked) & PG_locked

        def lock(pfn: int) -> None:
            n = 0
            delay = 20e-6
            deadline = 0.0
            while not trylock(pfn):
                n += 1
                if n & 7 == 0:
                    W.call_wait_hook()
                if n < 64:
                    continue
                if n < 96:
                    os.sched_yield()
                    continue
                W.call_wait_hook()
                time.sleep(delay)
                delay = min(delay * 2, 1e-3)
                if not deadline:
                    deadline = time.monotonic() + 60.0
                elif time.monotonic() > deadline:
                    raise AeroSyncError(f"folio_lock(pfn {pfn}): still locked after 60 s "
                                        f"(flags {u32[PM4 + pfn * MW4]:#x})")

        def unlock(pfn: int) -> None:
            fetch_and32((PM4 + pfn * MW4) << 2, ~PG_locked & _ALL32)

        self.trylock, self.lock, self.unlock = trylock, lock, unlock


class SwapState:
    """One CPU's swap cache and swap-in (closures):

      add_to_swap(pfn) -> slot | -1    a slot, the folio in the cache (dirty), +1 ref
      delete_from_cache(pfn, slot, shadow)   the slot keeps `shadow`; caller drops the ref
      writeout(slot, pfn) -> bool      ZMM, else the file (pswpout)
      read(slot, pfn)                  ZMM, else the file (pswpin)
      do_swap_page(mm_id, vma, va, table, i, e, write) -> VM_FAULT_*   (Memory.ext.swap_fault)
      do_obj_swap(mm_id, vma, va, table, i, holder, hidx, ent, write) -> VM_FAULT_*
      value_put(entry)                 an object dropped a swap value entry (free_swap_and_cache)
      free_swap_and_cache(slot)        one count goes; an unmapped folio cached for a slot
                                       left without references goes too (zap of a swap PTE)
      readahead(slot)                  swap_cluster_readahead around slot
    """

    def __init__(self, vm: Any, lru: Any, dev: Any, zmm: Any, workingset: Any, flock: FolioLock) -> None:
        arena, cpu = vm.arena, vm.cpu
        self.arena = arena
        q, u32, u8, i64, at = arena.u64, arena.u32, arena.u8, arena.i64, arena.atomic
        fetch_or32, fetch_and32, fetch_add32, fetch_add = at.fetch_or32, at.fetch_and32, at.fetch_add32, at.fetch_add64
        cas32 = at.cas32
        off = lru.off
        PHYS = arena.off("physmem")
        PM = arena.off("pagemeta")
        PM4, PM8 = PM >> 2, PM >> 3
        MW4, MW8 = PAGE_META_SIZE >> 2, PAGE_META_SIZE >> 3
        i_map, i_idx, i_priv = P_MAPPING >> 3, P_INDEX >> 3, P_PRIVATE >> 3
        stab8 = off.stab >> 3
        nr_slots = off.nr_slots
        ev = VE.vm_event_base(arena, cpu)
        ns = VE.node_stat_base(arena, cpu)
        NS = VE.NR_NODE_STATS
        mm = vm.mm
        memory, objs, locks = vm.memory, vm.objs, vm.locks
        chain_lookup = objs.chain_lookup
        xa_load, xa_store = objs.xa_load, objs.xa_store
        obj_lock, obj_unlock = locks.obj_lock.lock, locks.obj_lock.unlock
        ptl_lock, ptl_unlock = locks.ptlock.lock, locks.ptlock.unlock
        map_account = memory.map_account
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        swapents = T.M_RSS + 8 * T.MM_SWAPENTS
        page_cluster = q[(off.base + R.H_PAGE_CLUSTER) >> 3]
        folio_lock, folio_unlock = flock.lock, flock.unlock
        alloc_pages, free_pages, free_frozen_pages = mm.alloc_pages, mm.free_pages, mm.free_frozen_pages
        try_get = lru.try_get
        fds: dict[str, int] = {}
        self.lru_add: Any = lru.lru_add          # Reclaim may wrap it
        tp = hooks.point_fn()                    # test points: None in production (mm/hooks.py)
        lg = memory.log                          # robust mode: vm_swapin records (module docstring)
        begin, log_end, fp = (lg.begin, lg.end, lg.fp) if lg is not None else (None, None, None)
        ho, pend = (lg.handoff, lg.pending) if lg is not None else (0, 0)   # mm/intent.py "Hand-off"

        def nid_of(pfn: int) -> int:
            return u8[PM + pfn * PAGE_META_SIZE + 7]

        def fd() -> int:
            path = swap_path(arena)
            f = fds.get(path)
            if f is None:
                f = os.open(path, os.O_RDWR)
                fds[path] = f
            return f

        # ------------------------------------------------------------ swap cache
        def add_to_swap(pfn: int) -> int:
            """A slot for locked folio pfn, the folio in its cache.  The folio is whole
            (private, the cache's reference, PG_swapcache) before the slot names it: a
            CPU killed in between leaves a folio the slot does not name, which recovery
            takes back (vmscan.py reclaim_finish), never a slot naming a half folio."""
            slot = dev.get_swap_page()
            if slot < 0:
                return -1
            b = PM8 + pfn * MW8
            q[b + i_priv] = slot + 1
            fetch_add32((PM4 + pfn * MW4 + 2) << 2, 1)          # the cache's reference
            fetch_or32((PM4 + pfn * MW4) << 2, PG_swapcache | PG_dirty | PG_uptodate)
            dev.lock_slot(slot)
            q[stab8 + slot] = pfn << 2
            dev.unlock_slot(slot)
            i64[ns + nid_of(pfn) * NS + VE.NR_SWAPCACHED] += 1
            return slot

        def delete_finish(pfn: int, slot: int) -> None:
            """Recovery (world stopped): a frozen folio's delete_from_cache, killed at any
            store, completed -- the slot names it no more, the folio is out of the cache,
            and the slot's SWAP_HAS_CACHE goes (unless rebuild_swap_clusters already
            dropped it).  NR_SWAPCACHED is settled from the cache (vm/recover.py)."""
            dev.lock_slot(slot)
            if q[stab8 + slot] == pfn << 2:
                q[stab8 + slot] = 0
            dev.unlock_slot(slot)
            q[PM8 + pfn * MW8 + i_priv] = 0
            fetch_and32((PM4 + pfn * MW4) << 2, ~PG_swapcache & _ALL32)
            e = q[stab8 + slot]
            if u32[dev.smap4 + slot] & R.SWAP_HAS_CACHE and (not e or e & 1):
                dev.put_cache(slot)

        def abort_add(pfn: int) -> None:
            """Recovery: add_to_swap killed before the slot named the folio -- the folio
            side undone (the cache's reference, if it landed, is settled with the
            folio's other references: vm/recover.py settle_counts R2; the slot's
            SWAP_HAS_CACHE went in rebuild_swap_clusters)."""
            b = PM8 + pfn * MW8
            slot = q[b + i_priv] - 1
            if 0 < slot < nr_slots and q[stab8 + slot] == pfn << 2:
                return                                          # it landed
            q[b + i_priv] = 0
            fetch_and32((PM4 + pfn * MW4) << 2, ~PG_swapcache & _ALL32)

        def delete_from_cache(pfn: int, slot: int, shadow: int) -> None:
            """__swap_cache_del_folio + put_swap_folio: the slot keeps the shadow (if it
            still has references), the folio loses PG_swapcache.  The caller drops the
            cache's reference."""
            dev.lock_slot(slot)
            if q[stab8 + slot] == pfn << 2:
                q[stab8 + slot] = shadow
            dev.unlock_slot(slot)
            q[PM8 + pfn * MW8 + i_priv] = 0
            fetch_and32((PM4 + pfn * MW4) << 2, ~PG_swapcache & _ALL32)
            i64[ns + nid_of(pfn) * NS + VE.NR_SWAPCACHED] -= 1
            dev.put_cache(slot)

        def writeout(slot: int, pfn: int) -> bool:
            """swap_writepage(): zeromap / ZMM, else a 4 KiB write at the slot."""
            if zmm is not None and zmm.store(slot, pfn):
                return True
            o = PHYS + (pfn << PAGE_SHIFT)
            write_slot(slot, bytes(u8[o : o + PAGE_SIZE]))
            q[ev + VE.PSWPOUT] += 1
            q[ev + VE.PGPGOUT] += PAGE_SIZE >> 10
            return True

        def write_slot(slot: int, data: bytes) -> None:
            if os.pwrite(fd(), data, slot * PAGE_SIZE) != PAGE_SIZE:
                raise AeroSyncError(f"cpu{cpu}: short write to the swap file at slot {slot}")

        def read(slot: int, pfn: int, r: int = -1) -> None:
            """swap_read_folio() into pfn; with a vm_swapin record r, step 2 once the data
            is in the folio (before ZMM's copy goes: from then on it may be the only one)."""
            o = PHYS + (pfn << PAGE_SHIFT)
            if zmm is not None:
                if r < 0:
                    if zmm.load(slot, pfn):
                        fetch_or32((PM4 + pfn * MW4) << 2, PG_dirty)     # its only copy is in memory now
                        return
                else:
                    h = zmm.load_copy(slot, pfn)
                    if h:
                        fetch_or32((PM4 + pfn * MW4) << 2, PG_dirty)
                        q[r + 7] = 2
                        zmm.load_drop(slot, h)
                        return
            data = os.pread(fd(), PAGE_SIZE, slot * PAGE_SIZE)
            if len(data) != PAGE_SIZE:
                raise AeroSyncError(f"cpu{cpu}: short read from the swap file at slot {slot}")
            u8[o : o + PAGE_SIZE] = data
            if r >= 0:
                q[r + 7] = 2
            q[ev + VE.PSWPIN] += 1
            q[ev + VE.PGPGIN] += PAGE_SIZE >> 10

        def cache_lookup(slot: int) -> int:
            """swap_cache_get_folio(): the cached folio with a reference, or -1."""
            for _ in range(1000):
                e = q[stab8 + slot]
                if not e or e & 1:
                    return -1
                pfn = e >> 2
                if not try_get(pfn):
                    continue                              # being freed: look again
                if q[stab8 + slot] == e:
                    return pfn
                free_pages(pfn, 0)
            return -1

        def new_cached(slot: int, r: int = -1) -> tuple[int, int]:
            """__read_swap_cache_async(): (pfn, shadow) of a new, locked folio put in the
            cache for slot (refs: ours + the cache's), or (-1, 0) if the slot has a folio
            or no references now, (-2, 0) when there is no memory.  With a vm_swapin
            record r (module docstring): a2 = 1 (a new folio) and the allocation's
            hand-off window, a1 the folio as soon as it is ours; the folio is whole
            (refcount 2, PG_swapcache) before the slot names it.  One that lost the
            slot is frozen (refcount 0: nobody else ever knew it) before a1 lets it go,
            so a kill before its free leaves a page in no state, the state scan's."""
            if r >= 0:
                q[r + 3] = 1
                q[ho] = 0
                q[pend] = 1
            pfn = alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
            if pfn < 0:
                if r >= 0:
                    q[pend] = 0
                    q[r + 3] = 0
                return -2, 0
            if r >= 0:
                q[r + 2] = pfn + 1                           # take, record
                q[pend] = 0
            b4 = PM4 + pfn * MW4
            u32[b4] = PG_locked | PG_swapbacked
            q[PM8 + pfn * MW8 + i_priv] = slot + 1
            q[PM8 + pfn * MW8 + i_map] = 0
            q[PM8 + pfn * MW8 + i_idx] = 0
            dev.lock_slot(slot)
            e = q[stab8 + slot]
            w = u32[dev.smap4 + slot]
            if (e and not e & 1) or not w & R.SWAP_COUNT_MASK or w & R.SWAP_HAS_CACHE:
                dev.unlock_slot(slot)
                u32[b4] = 0
                q[PM8 + pfn * MW8 + i_priv] = 0
                u32[b4 + 2] = 0                              # frozen: nobody else knows it
                if r >= 0:
                    q[r + 2] = 0                             # (now in no state: the state scan's)
                free_frozen_pages(pfn, 0, False)
                if r >= 0:
                    q[r + 3] = 0
                return -1, 0
            u32[b4 + 2] = 2                                  # ours + the cache's
            u32[b4] = PG_locked | PG_swapbacked | PG_swapcache
            q[stab8 + slot] = pfn << 2
            u32[dev.smap4 + slot] = w | R.SWAP_HAS_CACHE
            dev.unlock_slot(slot)
            i64[ns + nid_of(pfn) * NS + VE.NR_SWAPCACHED] += 1
            return pfn, e

        def swapin(slot: int, ra: bool = True, r: int = -1) -> tuple[int, bool]:
            """The folio for slot, locked, with a reference: (pfn, major) or (-1, False)
            when the slot went away (the caller re-checks its entry), (-2, False) no memory.
            With the caller's vm_swapin record r: a1 the folio + 1 (a2 = 1: a new one),
            step 1 new in the cache and being read, 2 read, 3 ready (uptodate, on its way
            to the LRU) and held."""
            for _ in range(10000):
                pfn = cache_lookup(slot)
                if pfn >= 0:
                    folio_lock(pfn)
                    fl = u32[PM4 + pfn * MW4]
                    if fl & PG_swapcache and q[PM8 + pfn * MW8 + i_priv] == slot + 1 and fl & PG_uptodate:
                        if r >= 0:
                            q[r + 2] = pfn + 1
                            q[r + 7] = 3
                        if fl & PG_reclaim:                     # a readahead page used: swap_ra_hit
                            fetch_and32((PM4 + pfn * MW4) << 2, ~PG_reclaim & _ALL32)
                            q[ev + VE.SWAP_RA_HIT] += 1
                        return pfn, False
                    folio_unlock(pfn)
                    free_pages(pfn, 0)
                    continue
                w = u32[dev.smap4 + slot]
                if not w & R.SWAP_COUNT_MASK:
                    return -1, False
                pfn, shadow = new_cached(slot, r)
                if pfn == -2:
                    return -2, False
                if pfn < 0:
                    continue
                if r >= 0:                                      # (a1 and a2 stored by new_cached)
                    q[r + 7] = 1
                    if fp:
                        fp(P_SWAPIN_NEW)
                if tp:
                    tp("swapin:new_cached")
                read(slot, pfn, r)
                fetch_or32((PM4 + pfn * MW4) << 2, PG_uptodate)
                if shadow and is_shadow(shadow):
                    workingset.refault(pfn, shadow)
                if r >= 0:
                    q[r + 7] = 3                                # (lru_add may drain: a death there is
                self.lru_add(pfn)                               # the drain's; the folio is the batch's)
                if ra and page_cluster:
                    readahead(slot)
                return pfn, True
            raise AeroSyncError(f"cpu{cpu}: swap-in of slot {slot} did not settle")

        def swapin_finish(slot: int, pfn: int, step: int, new: bool = True) -> int:
            """Recovery of a dead CPU's vm_swapin record (world stopped).  Step 0 with a
            folio: `new` (a2) -- new_cached was putting it in the cache: out of the slot
            if the slot names it, freed (its NR_SWAPCACHED count, landed or not, is
            settled from the cache: vm/recover.py settle_counts); else a cached folio
            found, locked and held, its step 3 not yet stored: as step 3.  Step 1 (being
            read: the slot still has the data) -- the folio leaves the swap cache and is
            freed; step 2 (read: it may hold the only copy) -- made uptodate and dirty,
            put on its LRU; steps 2-3 -- unlocked, the dead CPU's reference dropped (a
            step-3 folio is mapped, in its object, or only cached: each a state a live CPU
            may meet).  Returns the pages freed."""
            b4 = PM4 + pfn * MW4
            if step == 0 and new:
                dev.lock_slot(slot)
                if q[stab8 + slot] == pfn << 2:
                    q[stab8 + slot] = 0
                    u32[dev.smap4 + slot] &= ~R.SWAP_HAS_CACHE & _ALL32
                dev.unlock_slot(slot)
                q[PM8 + pfn * MW8 + i_priv] = 0
                u32[b4] = 0
                u32[b4 + 2] = 1
                free_pages(pfn, 0)
                return 1
            if step == 1:
                dev.lock_slot(slot)
                if q[stab8 + slot] == pfn << 2:
                    q[stab8 + slot] = 0
                    u32[dev.smap4 + slot] &= ~R.SWAP_HAS_CACHE & _ALL32
                dev.unlock_slot(slot)
                i64[ns + nid_of(pfn) * NS + VE.NR_SWAPCACHED] -= 1
                q[PM8 + pfn * MW8 + i_priv] = 0
                u32[b4] = 0
                u32[b4 + 2] = 1
                free_pages(pfn, 0)                          # ours and the cache's, at once
                return 1
            if step == 2:
                fetch_or32(b4 << 2, PG_uptodate | PG_dirty)
                fetch_add32((b4 + 2) << 2, 1)               # folio_add_lru's reference ...
                lru.putback(pfn)                            # ... and the drain, as one
            folio_unlock(pfn)
            free_pages(pfn, 0)
            return 0

        def readahead(slot: int) -> None:
            """swap_cluster_readahead(): the aligned window of 2^page_cluster slots
            around slot, those with references and no cached folio, read into the cache
            (PG_readahead: PG_reclaim on a swap-cache folio), unmapped."""
            n = 1 << page_cluster
            lo = slot & ~(n - 1)
            got = 0
            for s in range(max(1, lo), min(nr_slots, lo + n)):
                if s == slot:
                    continue
                w = u32[dev.smap4 + s]
                e = q[stab8 + s]
                if not w & R.SWAP_COUNT_MASK or w & R.SWAP_HAS_CACHE or (e and not e & 1):
                    continue
                r = begin(_OP_SWAPIN, s) if begin is not None else -1
                try:
                    pfn, shadow = new_cached(s, r)
                    if pfn < 0:
                        if pfn == -2:
                            break
                        continue
                    if r >= 0:
                        q[r + 7] = 1
                    read(s, pfn, r)
                    fetch_or32((PM4 + pfn * MW4) << 2, PG_uptodate | PG_reclaim)
                    if shadow and is_shadow(shadow):
                        workingset.refault(pfn, shadow)
                    if r >= 0:
                        q[r + 7] = 3
                    self.lru_add(pfn)
                    if r >= 0:
                        q[r + 2] = 0                        # released before the unlock and put
                    folio_unlock(pfn)
                    free_pages(pfn, 0)                      # our reference: the cache keeps one
                finally:
                    if r >= 0:
                        log_end(r)
                got += 1
            q[ev + VE.SWAP_RA] += got

        def free_if_unused(pfn: int, slot: int) -> None:
            """folio_free_swap(): no swap PTE or object entry names the slot any more: the
            folio leaves the cache and the slot is freed (the folio is dirty: its data is
            only in memory now).  Folio locked by the caller."""
            if dev.count(slot):
                return
            dev.lock_slot(slot)
            mine = q[stab8 + slot] == pfn << 2
            if mine:
                q[stab8 + slot] = 0
            dev.unlock_slot(slot)
            if not mine:
                return
            q[PM8 + pfn * MW8 + i_priv] = 0
            fetch_and32((PM4 + pfn * MW4) << 2, ~PG_swapcache & _ALL32)
            fetch_or32((PM4 + pfn * MW4) << 2, PG_dirty)
            i64[ns + nid_of(pfn) * NS + VE.NR_SWAPCACHED] -= 1
            dev.put_cache(slot)
            free_pages(pfn, 0)                              # the cache's reference (never the last)

        def into_object(holder: int, hidx: int, slot: int, pfn: int) -> bool:
            """The object holding slot's swap value at hidx gets the folio back (one count
            fewer).  True if it holds the folio now (put here or already)."""
            obj_lock(holder + 16)
            try:
                if (u32[holder >> 2] >> 16) & OBJF_DEAD:
                    return False
                cur = xa_load(holder + O_TREE, hidx)
                if cur == pfn << 2:
                    return True
                if cur != swp_value(slot):
                    return False
                xa_store(holder + O_TREE, hidx, pfn << 2)
                b = PM8 + pfn * MW8
                shared = (arena.u32[holder >> 2] >> 16) & OBJF_SHARED
                q[b + i_map] = holder | (0 if shared else PAGE_MAPPING_ANON)
                q[b + i_idx] = hidx
                fetch_add(holder + O_NR_PAGES, 1)
                fetch_add32((PM4 + pfn * MW4 + 2) << 2, 1)   # the tree's reference
                if shared:
                    nid = nid_of(pfn)
                    i64[ns + nid * NS + VE.NR_SHMEM] += 1
                    i64[ns + nid * NS + VE.NR_FILE_PAGES] += 1
            finally:
                obj_unlock(holder + 16)
            dev.put(slot)
            return True

        def install(mm_id: int, vma: int, table: int, i: int, expect: int, pfn: int, writable: bool,
                    kind: int) -> bool:
            e = (pfn << PAGE_SHIFT) | q[(vma + V.V_PROT) >> 3] | _PAGE_ACCESSED
            e = (e | _PAGE_RW | _PAGE_DIRTY) if writable else (e & ~_PAGE_RW)
            if not map_account(mm_id, pfn, kind):
                return False
            lo = PM + table * PAGE_META_SIZE + 32
            ptl_lock(lo)
            try:
                ok = q[i] == expect
                if ok:
                    q[i] = e
            finally:
                ptl_unlock(lo)
            if not ok:
                memory.unmap_account(mm_id, pfn, kind)
            return ok

        def vma_index(vma: int, va: int) -> int:
            return q[(vma + V.V_PGOFF) >> 3] + ((va - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)

        def fault_common(mm_id: int, vma: int, va: int, table: int, i: int, expect: int, slot: int,
                         holder: int, hidx: int, write: bool) -> int:
            r = begin(_OP_SWAPIN, slot) if begin is not None else -1
            try:
                return fault_body(mm_id, vma, va, table, i, expect, slot, holder, hidx, write, r)
            finally:
                if r >= 0:
                    log_end(r)

        def fault_body(mm_id: int, vma: int, va: int, table: int, i: int, expect: int, slot: int,
                       holder: int, hidx: int, write: bool, r: int) -> int:
            pfn, major = swapin(slot, True, r)
            if pfn == -2:
                return VM_FAULT_OOM
            if pfn < 0:
                return 0                                    # the slot went: the entry changed, retry
            try:
                if q[i] != expect:
                    return 0
                top = q[(vma + V.V_OBJECT) >> 3]
                shared = bool(q[(vma + V.V_FLAGS) >> 3] & V.VM_SHARED)
                if not holder:
                    holder, hidx, ent = chain_lookup(top, vma_index(vma, va))
                    if ent not in (swp_value(slot), pfn << 2):
                        holder = 0
                if holder and not into_object(holder, hidx, slot, pfn):
                    return 0                                # the object changed meanwhile: retry
                if shared:
                    kind = T.MM_SHMEMPAGES
                    writable = write and bool(q[(vma + V.V_FLAGS) >> 3] & V.VM_WRITE)
                else:
                    kind = T.MM_ANONPAGES
                    writable = write and holder == top and holder != 0
                if writable:
                    fetch_or32((PM4 + pfn * MW4) << 2, PG_dirty)
                if not install(mm_id, vma, table, i, expect, pfn, writable, kind):
                    return 0
                if expect:                                  # a swap PTE: its count goes
                    fetch_add(mm_base + mm_id * mm_size + swapents, (1 << 64) - 1)
                    dev.put(slot)
                free_if_unused(pfn, slot)
            finally:
                if r >= 0:
                    q[r + 2] = 0                            # released before the unlock and put
                folio_unlock(pfn)
                free_pages(pfn, 0)
            return VM_FAULT_MAJOR if major else 0

        def do_swap_page(mm_id: int, vma: int, va: int, table: int, i: int, e: int, write: bool) -> int:
            if swp_type(e) != 0:
                raise AeroSyncError(f"cpu{cpu}: swap entry {e:#x} at {va:#x}: no swap device of type {swp_type(e)}")
            slot = swp_offset(e)
            if not 0 < slot < nr_slots:
                raise AeroSyncError(f"cpu{cpu}: swap entry {e:#x} at {va:#x}: offset {slot} beyond the device")
            return fault_common(mm_id, vma, va, table, i, e, slot, 0, 0, write)

        def do_obj_swap(mm_id: int, vma: int, va: int, table: int, i: int, holder: int, hidx: int, ent: int,
                        write: bool) -> int:
            if not is_swap_value(ent):
                raise AeroSyncError(f"cpu{cpu}: object {holder:#x} index {hidx}: value entry {ent:#x} "
                                    f"is not a swap entry")
            return fault_common(mm_id, vma, va, table, i, 0, swap_value_offset(ent), holder, hidx, write)

        trylock = flock.trylock

        def free_swap_and_cache(slot: int) -> None:
            """free_swap_and_cache(): a swap PTE or an object's swap value goes (its count
            with it); when that was the slot's last reference and a folio is still in
            the cache for it (a readahead page, or a swapped-in folio whose other
            references went first) and nothing maps it, the folio leaves the cache and
            the slot is freed (__try_to_reclaim_swap with TTRS_UNMAPPED).  Only a
            trylock: callers may hold a PTE or object lock; a locked folio is left to
            its holder (swap-in maps it, reclaim frees it)."""
            dev.put(slot)
            w = u32[dev.smap4 + slot]
            if w & R.SWAP_COUNT_MASK or not w & R.SWAP_HAS_CACHE:
                return
            pfn = cache_lookup(slot)
            if pfn < 0:
                return
            if trylock(pfn):
                try:
                    if (u32[PM4 + pfn * MW4] & PG_swapcache and q[PM8 + pfn * MW8 + i_priv] == slot + 1
                            and not u32[PM4 + pfn * MW4 + 3]):
                        free_if_unused(pfn, slot)
                finally:
                    folio_unlock(pfn)
            free_pages(pfn, 0)                              # the lookup's reference

        def value_put(e: int) -> None:
            if is_swap_value(e):
                free_swap_and_cache(swap_value_offset(e))

        def close() -> None:
            for f in fds.values():
                os.close(f)
            fds.clear()

        self.add_to_swap, self.delete_from_cache = add_to_swap, delete_from_cache
        self.delete_finish, self.abort_add = delete_finish, abort_add
        self.writeout, self.read = writeout, read
        self.write_slot, self.swapin, self.readahead, self.cache_lookup = write_slot, swapin, readahead, cache_lookup
        self.do_swap_page, self.do_obj_swap, self.value_put, self.close = do_swap_page, do_obj_swap, value_put, close
        self.free_if_unused, self.free_swap_and_cache = free_if_unused, free_swap_and_cache
        self.swapin_finish = swapin_finish
        _ = (cas32, fetch_add32, i_idx)
