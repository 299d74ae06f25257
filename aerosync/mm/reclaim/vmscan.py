"""Page reclaim: shrink_folio_list, the classic LRU, shrink_node, direct reclaim, kswapd.

Models: mm/vmscan.c (shrink_folio_list with folio_check_references, add_to_swap,
try_to_unmap, pageout and __remove_mapping; shrink_inactive_list / shrink_active_list;
inactive_is_low with int_sqrt(10 x GiB); get_scan_count's swappiness fractions and
anon/file costs, SCAN_EQUAL at priority 0; shrink_node; do_try_to_free_pages from
DEF_PRIORITY down to 0; balance_pgdat / kswapd_shrink_node with pgdat_balanced at
high_wmark_pages (the HIGH mark + the zone's watermark_boost) and boosted reclaim;
wakeup_kswapd with pgdat_watermark_boosted; kswapd_failures up to MAX_RECLAIM_RETRIES),
mm/swap.c folio_mark_lazyfree / lru_lazyfree.

Watermark boost (mm/pmm/page_alloc.py boost_watermark raises zone->watermark_boost on a
fallback; rmqueue clears ZONE_BOOSTED_WATERMARK and calls wakeup_kswapd_zone): kswapd
reclaims, while the node is balanced, the sum of the boosts it saw at its start, with
may_writepage = may_swap = 0, the priority held at DEF_PRIORITY - 2, giving up at a pass
without progress; an unbalanced node turns it into normal reclaim.  At the end the boosts
it saw are subtracted under each zone's lock (kcompactd, which Linux then wakes, is not
modelled).  A boosted run never counts as a kswapd failure.

MADV_FREE (lazyfree): mark_lazyfree moves an anonymous folio to the file LRU without
PG_swapbacked; reclaim_lazyfree discards it clean (pglazyfreed, no swap slot) or, if it
was written again, makes it swap-backed and activates it.  Unit: a batch of at most SWAP_CLUSTER_MAX
isolated folios; one node (lruvec).

Reclaiming one isolated folio (the caller holds a reference; PG_lru is clear):
  folio lock (trylock: a locked folio is kept) -> mlocked/unevictable: culled to the
  unevictable list -> references (rmap: accessed bits test-and-cleared) decide keep,
  activate or reclaim -> anonymous (swap-backed): a swap slot and the swap cache, every
  PTE becomes a swap PTE (shmem: none), the object's entry becomes a swap value, the
  data goes to ZMM or the swap file, and the folio leaves the cache (its slot keeps a
  shadow) -> file: every PTE cleared (dirty bits moved to the folio), a dirty folio of a
  real file written to it (a generated file's dirty page is kept: it has no backing
  store), the object's entry becomes a shadow; lazyfree: see below.  The last step, freeing, freezes the
  refcount (CAS from exactly the references reclaim knows of to 0): a fault that took a
  reference meanwhile wins and the folio stays (mapped by it).

Crash tolerance (robust mode; mm/vm/recover.py): a batch of isolated folios is logged as
a vm_reclaim record -- each folio's pfn in the spill, the one being reclaimed (locked)
and, while its data is written out, its swap slot -- and each folio leaves the record as
it is freed or just before it is put back.  A CPU that dies with folios isolated has
them put back by recovery (reclaim_finish), the folio it was writing re-dirtied.
Points inside one anonymous folio's reclaim (vm:reclaim:swapcache, :unmapped,
:written) sit where its state is one a live CPU may meet -- in the swap cache, its PTEs
and its object's entry swap values, its data written -- so putting it back is all a
death there needs.

Counters: pgscan_{kswapd,direct}, pgsteal_{kswapd,direct}, pgscan/pgsteal_{anon,file},
pgactivate, pgdeactivate, pgrefill, allocstall_<zone>, pageoutrun,
kswapd_{low,high}_wmark_hit_quickly, nr_vmscan_write, pglazyfreed, pgrotated.
"""

from __future__ import annotations

import time
from typing import Any

from aerosync.arena import layout as AL
from aerosync.mm import hooks
from aerosync.mm import intent as I
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import __GFP_IO as _GFP_IO
from aerosync.mm.pmm.gfp import MAX_NR_ZONES
from aerosync.mm.pmm.page import (
    P_INDEX,
    P_MAPPING,
    P_PRIVATE,
    PAGE_MAPPING_ANON,
    PG_active,
    PG_dirty,
    PG_lru,
    PG_mlocked,
    PG_referenced,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_workingset,
    PG_writeback,
)
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.swap import GEN_MASK, REFS_MASK
from aerosync.mm.reclaim.swap_state import swp_value
from aerosync.mm.vm.vm_object import (
    O_BACKING,
    O_NR_PAGES,
    O_TREE,
    OBJ_VNODE,
    OBJF_DEAD,
    OBJF_SHARED,
    XA_ZERO,
)
from aerosync.params import CPU_AREA_SIZE, PAGE_META_SIZE

__all__ = ["Vmscan", "ScanControl", "SWAP_CLUSTER_MAX", "DEF_PRIORITY", "MAX_RECLAIM_RETRIES",
           "RECLAIMED", "KEEP", "ACTIVATE", "CULL", "int_sqrt"]

SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
MAX_RECLAIM_RETRIES = 16
RECLAIMED, KEEP, ACTIVATE, CULL = range(4)
_ALL32 = 0xFFFF_FFFF
_ALL64 = (1 << 64) - 1
_GIB_PAGES_SHIFT = 30 - 12
_LAZYFREE_CLEAR = ~(PG_lru | GEN_MASK | REFS_MASK | PG_active | PG_referenced | PG_swapbacked) & _ALL32
_OP_RECLAIM, P_RECLAIM_ISOLATED = I.OP["vm_reclaim"], I.POINT_IDS["vm:reclaim:isolated"]
P_RECLAIM_SWAPCACHE, P_RECLAIM_UNMAPPED, P_RECLAIM_WRITTEN = (I.POINT_IDS[f"vm:reclaim:{p}"]
                                                              for p in ("swapcache", "unmapped", "written"))
RECLAIM_LOGGED = AL.SPILL_MIGRATE - AL.SPILL_RECLAIM    # isolated folios a vm_reclaim record holds


def int_sqrt(x: int) -> int:
    import math

    return math.isqrt(x)


class ScanControl:
    """struct scan_control: what one reclaim pass may do and what it did."""

    __slots__ = ("nr_to_reclaim", "nr_reclaimed", "nr_scanned", "priority", "may_swap", "may_writepage",
                 "kswapd", "order", "gfp", "reclaim_idx", "boosted", "aging_stalled")

    def __init__(self, nr_to_reclaim: int, kswapd: bool, gfp: int = 0, order: int = 0,
                 reclaim_idx: int = MAX_NR_ZONES - 1) -> None:
        self.nr_to_reclaim, self.kswapd, self.gfp, self.order = nr_to_reclaim, kswapd, gfp, order
        self.nr_reclaimed = self.nr_scanned = 0
        self.priority = DEF_PRIORITY
        self.may_swap = True
        self.may_writepage = kswapd or bool(gfp & _GFP_IO)
        self.reclaim_idx = reclaim_idx
        self.boosted = False                 # kswapd working off a watermark boost (see get_scan_count)
        self.aging_stalled = False           # another CPU's aging outlasted a wait (lru_gen.py)


class Vmscan:
    """One CPU's reclaim (see the module docstring).  Main entries:
      shrink_node(nid, sc)            one pass over a node (MGLRU or classic)
      try_to_free_pages(zids, order, gfp) -> pages reclaimed   (direct reclaim)
      balance_pgdat(nid, order, hz) -> pages reclaimed         (kswapd's body)
      wakeup_kswapd(zids, order, hz)  pgdat_balanced(nid, order, hz) -> bool
      shrink_folio_list(pfns, sc, typ) -> pages reclaimed      (isolated folios)"""

    def __init__(self, vm: Any, lru: Any, rops: Any, sst: Any, dev: Any, ws: Any, flock: Any,
                 writeback: Any = None) -> None:
        arena, cpu = vm.arena, vm.cpu
        self.arena, self.cpu = arena, cpu
        q, u32, u8, i64, at = arena.u64, arena.u32, arena.u8, arena.i64, arena.atomic
        cas32, fetch_or32, fetch_and32 = at.cas32, at.fetch_or32, at.fetch_and32
        off = lru.off
        self.off = off
        PM = arena.off("pagemeta")
        PM4, PM8 = PM >> 2, PM >> 3
        MW4, MW8 = PAGE_META_SIZE >> 2, PAGE_META_SIZE >> 3
        i_map, i_idx, i_priv = P_MAPPING >> 3, P_INDEX >> 3, P_PRIVATE >> 3
        ev = VE.vm_event_base(arena, cpu)
        ns = VE.node_stat_base(arena, cpu)
        NS = VE.NR_NODE_STATS
        mm = vm.mm
        free_pages, free_frozen_pages = mm.free_pages, mm.free_frozen_pages
        objs, locks = vm.objs, vm.locks
        xa_load, xa_store, xa_erase = objs.xa_load, objs.xa_store, vm.xa.erase
        obj_lock, obj_unlock = locks.obj_lock.lock, locks.obj_lock.unlock
        lock, unlock, isolate, putback = lru.lock, lru.unlock, lru.isolate, lru.putback
        count, tail_of = lru.list_count, lru.list_tail
        trylock_folio, unlock_folio = flock.trylock, flock.unlock
        base = off.base
        nr_nodes = off.nr_nodes
        lv = lru.lruvec
        self.gen: Any = None                     # lru_gen.LruGen when MGLRU is on (set by Reclaim)
        self.writeback = writeback
        nr_zones = mm.nr_zones
        zoffs = [Z.zone_off(arena, z) for z in range(nr_zones)]
        zone_nid = [z // MAX_NR_ZONES for z in range(nr_zones)]
        populated = mm.populated
        zone_watermark_ok = mm.zone_watermark_ok
        self.files_real: Any = None              # fid -> path of a real file, or None (Reclaim sets it)
        tp = hooks.point_fn()                    # test points: None in production (mm/hooks.py)
        # intent log (robust mode): the isolated folios of one shrink_folio_list / shrink_active_list
        lg = vm.memory.log
        begin, log_end, fp = (lg.begin, lg.end, lg.fp) if lg is not None else (None, None, None)
        spr = lg.spill + AL.SPILL_RECLAIM if lg is not None else 0
        st = [-1, -1, 0]                         # the open vm_reclaim record, the folio's index, anon
        nid_of = lru.nid_of

        def log_isolated(pfns: list[int]) -> int:
            """A vm_reclaim record for isolated folios (no fault point since their
            isolation): each one's pfn and type in the spill; -1 outside robust mode."""
            if begin is None or not pfns or len(pfns) > RECLAIM_LOGGED:
                return -1
            r = begin(_OP_RECLAIM, nid_of(pfns[0]))
            q[r + 5] = 0                                 # a4 (reclaim_file's count, below)
            for k, pfn in enumerate(pfns):
                q[spr + k] = (pfn << 1 | bool(u32[PM4 + pfn * MW4] & PG_swapbacked)) + 2
            q[r + 7] = len(pfns)
            if fp:
                fp(P_RECLAIM_ISOLATED)
            return r

        def release(k: int, pfn: int, anon: bool) -> None:
            """Isolated folio k leaves reclaim's hands (freed, or about to be put back):
            off the record first, NR_ISOLATED_* lowered."""
            if st[0] >= 0:
                q[spr + k] = 0
            i64[ns + nid_of(pfn) * NS + (VE.NR_ISOLATED_ANON if anon else VE.NR_ISOLATED_FILE)] -= 1

        def reclaim_finish(cur: int, wslot: int, entries: list[int], dslot: int = 0, fcount: int = 0) -> int:
            """Recovery of a dead CPU's vm_reclaim record: the folio it was reclaiming
            (`cur` + 1) is unlocked -- re-dirtied first if its writeout was under way
            (`wslot` + 1: PG_dirty was cleared, the copy may be incomplete) and taken
            out of the swap cache if no swap entry names its slot yet, or given back by
            an add_to_swap that had not reached the slot (swap_state.abort_add) -- then
            every folio still logged goes back to its LRU with its reference dropped
            (folio_putback_lru), as after a pass that reclaimed nothing.  Each folio's
            state between the dead CPU's steps is one a live CPU may meet (in the swap
            cache, its PTEs swap entries, its object's entry a swap value): nothing else
            is undone -- except a frozen folio cur (refcount 0: nobody else can take
            it): one frozen to leave slot `dslot` - 1's cache has its delete_from_cache
            completed (swap_state.delete_finish) and is freed; one frozen for a discard
            or an eviction is freed once its tree let it go (its nr_pages is settled:
            vm/recover.py settle_counts; an eviction's nr_file_pages is lowered unless
            `fcount` - 1 -- our count before reclaim_file lowered it -- says it was),
            else unfrozen and put back; a folio free_frozen had reset (refcount 0,
            no flags -- the locked folio cur always has some) is freed; and a folio cur
            whose object already holds its swap value (replace_entry killed after its
            store) leaves the object as replace_entry would (mapping and index; the
            counts are settle_counts').  Returns the folios put back or freed."""
            n = 0
            if cur:
                pfn = cur - 1
                b = PM8 + pfn * MW8
                ref, fl = u32[PM4 + pfn * MW4 + 2], u32[PM4 + pfn * MW4]
                frozen, reset = not ref and fl != 0, not ref and not fl
                if frozen and not dslot:                 # a discard's or an eviction's freeze
                    m = q[b + i_map]
                    o = m & ~3
                    if m and xa_load(o + O_TREE, q[b + i_idx]) == pfn << 2:
                        u32[PM4 + pfn * MW4 + 2] = 2     # the tree still has it: unfrozen (tree + ours)
                        frozen = False
                    elif m and (u32[o >> 2] & 0xFFFF) == OBJ_VNODE:
                        ix = ns + nid_of(pfn) * NS + VE.NR_FILE_PAGES
                        if not fcount or q[ix] == fcount - 1:
                            i64[ix] -= 1                 # an eviction's count, not yet lowered
                if frozen or reset:
                    if frozen:
                        if dslot:
                            sst.delete_finish(pfn, dslot - 1)
                        reset_frozen(pfn)
                    for k, e in enumerate(entries):
                        if e and (e - 2) >> 1 == pfn:            # not yet released
                            entries[k] = 0
                            i64[ns + nid_of(pfn) * NS + (VE.NR_ISOLATED_ANON if (e - 2) & 1
                                                         else VE.NR_ISOLATED_FILE)] -= 1
                    free_frozen_pages(pfn, 0, False)
                    cur = 0
                    n += 1
            for e in entries:
                if not e:
                    continue
                pfn, anon = (e - 2) >> 1, (e - 2) & 1
                if cur and pfn == cur - 1:
                    b = PM8 + pfn * MW8
                    m = q[b + i_map]
                    if (anon and m and u32[PM4 + pfn * MW4] & PG_swapcache
                            and xa_load((m & ~3) + O_TREE, q[b + i_idx]) == swp_value(q[b + i_priv] - 1)):
                        # replace_entry cut short after its store: its object holds the
                        # swap value, the folio leaves it (the counts: settle_counts)
                        q[b + i_map] = q[b + i_idx] = 0
                    if wslot:
                        fetch_or32((PM4 + pfn * MW4) << 2, PG_dirty)
                    if anon and q[PM8 + pfn * MW8 + i_priv]:
                        sst.abort_add(pfn)
                    if u32[PM4 + pfn * MW4] & PG_swapcache:
                        # add_to_swap done, no PTE nor object entry a swap entry yet: out
                        # of the cache again (else a folio only the cache holds stays
                        # behind when its task exits; Linux's free_swap_cache at unmap)
                        sst.free_if_unused(pfn, q[PM8 + pfn * MW8 + i_priv] - 1)
                    unlock_folio(pfn)
                i64[ns + nid_of(pfn) * NS + (VE.NR_ISOLATED_ANON if anon else VE.NR_ISOLATED_FILE)] -= 1
                putback(pfn)
                n += 1
            return n

        def swappiness() -> int:
            return q[(base + R.H_SWAPPINESS) >> 3]

        def can_swap() -> bool:
            return bool(off.nr_slots) and q[(base + R.H_SWAP_INUSE) >> 3] + 1 < off.nr_slots - 1

        # ------------------------------------------------------------ one folio
        def check_references(pfn: int, mapped: bool) -> int:
            """folio_check_references() (classic): activate a mapped folio referenced
            twice (or swap-backed and referenced once); a referenced file folio seen once
            is kept for another round; the rest is reclaimed."""
            refs = rops.referenced(pfn) if mapped else 0
            old = fetch_and32((PM4 + pfn * MW4) << 2, ~PG_referenced & _ALL32)
            ref_folio = bool(old & PG_referenced)
            fl = u32[PM4 + pfn * MW4]
            if refs:
                if fl & PG_swapbacked or ref_folio or refs > 1:
                    return ACTIVATE
                fetch_or32((PM4 + pfn * MW4) << 2, PG_referenced)
                return KEEP
            if ref_folio and not fl & PG_swapbacked:
                return KEEP
            return RECLAIMED

        def freeze(pfn: int, expected: int) -> bool:
            """folio_ref_freeze(): refcount from exactly `expected` to 0."""
            return cas32((PM4 + pfn * MW4 + 2) << 2, expected, 0) == expected

        def reset_frozen(pfn: int) -> None:
            """A frozen folio's struct page as the allocator takes it back (we are its
            only user): no mapping, index, private or flags; the refcount stays 0."""
            b = PM8 + pfn * MW8
            q[b + i_map] = 0
            q[b + i_idx] = 0
            q[b + i_priv] = 0
            u32[PM4 + pfn * MW4] = 0

        def free_frozen(pfn: int) -> None:
            """Free a frozen folio (refcount 0: nobody else can take it) as
            free_unref_folios() does, without a reference ever coming back.  Its struct
            page is reset first, while the record still names it (cur): recovery tells a
            frozen folio (flags: it is locked) from a reset one (none) and frees either
            (reclaim_finish).  Once cur is cleared the page is in no state at all
            (refcount 0, not on a list): a kill before the free leaves it to the page
            allocator's state scan (pmm/recover.py reclaim_pages), so nothing leaks."""
            reset_frozen(pfn)
            if st[1] >= 0:                           # the folio shrink_folio_list is on: released
                release(st[1], pfn, bool(st[2]))
                r = st[0]
                if r >= 0:
                    q[r + 4] = q[r + 5] = 0
                    q[r + 2] = 0
                st[1] = -1
            free_frozen_pages(pfn, 0, False)

        def replace_entry(pfn: int, new: int) -> int:
            """__remove_mapping's tree half: under the object's lock, the folio's entry
            becomes `new` (a swap value or a shadow).  Returns the object (0: the folio
            was not in a tree any more), -1 if it moved or its object is dying."""
            b = PM8 + pfn * MW8
            m = q[b + i_map]
            if not m:
                return 0
            o = m & ~3
            obj_lock(o + 16)
            try:
                if q[b + i_map] != m or (u32[o >> 2] >> 16) & OBJF_DEAD:
                    return -1
                idx = q[b + i_idx]
                if xa_load(o + O_TREE, idx) != pfn << 2:
                    return -1
                xa_store(o + O_TREE, idx, new)
                q[b + i_map] = 0
                q[b + i_idx] = 0
                at.fetch_add64(o + O_NR_PAGES, (1 << 64) - 1)
                return o
            finally:
                obj_unlock(o + 16)

        def restore_entry(pfn: int, o: int, idx: int, old: int) -> bool:
            """Undo replace_entry (the folio could not be freed)."""
            obj_lock(o + 16)
            try:
                if (u32[o >> 2] >> 16) & OBJF_DEAD or xa_load(o + O_TREE, idx) != old:
                    return False
                # mapping and index before the store, as __filemap_add_folio: a kill
                # between leaves the tree holding the swap value, which reclaim_finish
                # takes as replace_entry's state (the folio leaves the object again)
                b = PM8 + pfn * MW8
                shared = (u32[o >> 2] >> 16) & OBJF_SHARED
                anon = (u32[o >> 2] & 0xFFFF) != OBJ_VNODE and not shared
                q[b + i_map] = o | (PAGE_MAPPING_ANON if anon else 0)
                q[b + i_idx] = idx
                xa_store(o + O_TREE, idx, pfn << 2)
                at.fetch_add64(o + O_NR_PAGES, 1)
                return True
            finally:
                obj_unlock(o + 16)

        def shmem_account(pfn: int, o: int, d: int) -> None:
            if (u32[o >> 2] >> 16) & OBJF_SHARED:
                nid = lru.nid_of(pfn)
                i64[ns + nid * NS + VE.NR_SHMEM] += d
                i64[ns + nid * NS + VE.NR_FILE_PAGES] += d

        def reclaim_anon(pfn: int, sc: ScanControl) -> int:
            b4 = PM4 + pfn * MW4
            fl = u32[b4]
            if fl & PG_swapcache:
                slot = q[PM8 + pfn * MW8 + i_priv] - 1
            else:
                if not sc.may_swap or not can_swap():
                    return ACTIVATE
                slot = sst.add_to_swap(pfn)
                if slot < 0:
                    return ACTIVATE
            if tp:
                tp("vmscan:swapcache")
            if fp and st[0] >= 0:
                fp(P_RECLAIM_SWAPCACHE)
            if u32[b4 + 3]:
                if rops.unmap(pfn, slot):
                    fetch_or32(b4 << 2, PG_dirty)
                if u32[b4 + 3]:
                    return ACTIVATE                          # mapped again meanwhile
            m, idx = q[PM8 + pfn * MW8 + i_map], q[PM8 + pfn * MW8 + i_idx]
            holder = 0
            if m:
                dev.dup(slot)                                 # the object's swap entry
                holder = replace_entry(pfn, swp_value(slot))
                if holder < 0:
                    dev.put(slot)
                    return ACTIVATE
                if holder:
                    free_pages(pfn, 0)                        # the tree's reference (never the last)
                    shmem_account(pfn, holder, -1)
                else:
                    dev.put(slot)
            if tp:
                tp("vmscan:unmapped")
            if fp and st[0] >= 0:
                fp(P_RECLAIM_UNMAPPED)
            if u32[b4] & PG_dirty:
                r = st[0]
                if r >= 0:
                    q[r + 3] = slot + 1                       # writeout under way: re-dirty if we die
                fetch_and32(b4 << 2, ~PG_dirty & _ALL32)
                sst.writeout(slot, pfn)
                if r >= 0:
                    q[r + 3] = 0
                    if fp:
                        fp(P_RECLAIM_WRITTEN)
            # __remove_mapping: ours + the cache's (a3: the frozen folio leaves this slot's cache)
            r = st[0]
            if r >= 0:
                q[r + 4] = slot + 1
            if not freeze(pfn, 2):
                if r >= 0:
                    q[r + 4] = 0
                if holder and restore_entry(pfn, holder, idx, swp_value(slot)):
                    at.fetch_add32((b4 + 2) << 2, 1)
                    dev.put(slot)
                    shmem_account(pfn, holder, 1)
                fetch_or32(b4 << 2, PG_dirty)                  # the written copy may be stale
                return KEEP
            # the folio is frozen: nobody can take it; the slot keeps its shadow
            sst.delete_from_cache(pfn, slot, ws.eviction(pfn))
            free_frozen(pfn)
            return RECLAIMED

        def reclaim_lazyfree(pfn: int, sc: ScanControl) -> int:
            """A MADV_FREE folio (anonymous, PG_swapbacked clear): discarded without swap
            when clean -- every PTE cleared (try_to_unmap_one's MADV_FREE check, see
            rmap_ops.unmap_lazyfree), the object's entry dropped (a ZERO marker when a
            backing object would show through), pglazyfreed.  Redirtied (a dirty PTE or
            PG_dirty): PG_swapbacked again and activated (Linux's nr_lazyfree_fail), so it
            is swapped like any anonymous folio later.  An extra reference: activated."""
            b4 = PM4 + pfn * MW4
            m = q[PM8 + pfn * MW8 + i_map]
            if u32[b4 + 3] and (rops.unmap_lazyfree(pfn, 2 if m else 1) <= 0 or u32[b4 + 3]):
                return ACTIVATE                              # redirtied, or mapped still
            if u32[b4] & PG_dirty:
                # Linux activates an unmapped dirty lazyfree folio (a GUP write); here it is
                # swap-backed again so that its data is kept and can still be swapped
                fetch_or32(b4 << 2, PG_swapbacked)
                return ACTIVATE
            if not m:
                return KEEP if not freeze(pfn, 1) else (free_frozen(pfn) or RECLAIMED)
            o = m & ~3
            idx = q[PM8 + pfn * MW8 + i_idx]
            obj_lock(o + 16)
            try:
                ok = (q[PM8 + pfn * MW8 + i_map] == m and not (u32[o >> 2] >> 16) & OBJF_DEAD
                      and xa_load(o + O_TREE, idx) == pfn << 2 and not u32[b4] & PG_dirty and freeze(pfn, 2))
                if ok:
                    if q[(o + O_BACKING) >> 3]:
                        xa_store(o + O_TREE, idx, XA_ZERO)   # the chain below must not show through
                    else:
                        xa_erase(o + O_TREE, idx)
                    at.fetch_add64(o + O_NR_PAGES, (1 << 64) - 1)
            finally:
                obj_unlock(o + 16)
            if not ok:
                return KEEP
            q[ev + VE.PGLAZYFREED] += 1
            free_frozen(pfn)
            return RECLAIMED

        def mark_lazyfree(pfns: list[int]) -> int:
            """folio_mark_lazyfree + lru_lazyfree for folios the caller holds a reference
            on (dropped here): an anonymous swap-backed folio on an LRU (not in the swap
            cache, evictable) loses PG_active, PG_referenced, its tier refs and
            PG_swapbacked and goes to the inactive file list (MGLRU: the oldest file
            generation), under lru_lock.  A folio not on an LRU (isolated, in another
            CPU's batch) is left alone, as Linux's folio_test_clear_lru failure.  Returns
            the folios moved (pglazyfree is counted by the caller)."""
            lru.lru_add_drain()                      # madvise_free_single_vma's lru_add_drain
            n = 0
            bad = PG_swapcache | PG_unevictable | PG_mlocked
            for pfn in pfns:
                b4 = PM4 + pfn * MW4
                nid = lru.nid_of(pfn)
                lock(nid)
                try:
                    fl = u32[b4]
                    if (fl & PG_lru and fl & PG_swapbacked and not fl & bad
                            and q[PM8 + pfn * MW8 + i_map] & PAGE_MAPPING_ANON):
                        lru.unlink(nid, pfn)
                        fetch_and32(b4 << 2, _LAZYFREE_CLEAR)
                        lru.add_locked(nid, pfn)
                        n += 1
                finally:
                    unlock(nid)
                free_pages(pfn, 0)                   # the caller's reference (never the last: mapped)
            return n

        def reclaim_file(pfn: int, sc: ScanControl) -> int:
            b4 = PM4 + pfn * MW4
            if u32[b4 + 3]:
                if rops.unmap(pfn, -1):
                    vm.memory.set_dirty(pfn)
                if u32[b4 + 3]:
                    return ACTIVATE
            m = q[PM8 + pfn * MW8 + i_map]
            if u32[b4] & PG_dirty:
                if not sc.may_writepage:
                    return KEEP                              # boosted reclaim: no I/O (keep_locked)
                wb = self.writeback
                if wb is None or not wb.writepage(pfn):
                    return ACTIVATE
                i64[ns + lru.nid_of(pfn) * NS + VE.NR_VMSCAN_WRITE] += 1
            shadow = ws.eviction(pfn)
            o = m & ~3
            if not m:
                return KEEP if not freeze(pfn, 1) else (free_frozen(pfn) or RECLAIMED)
            idx = q[PM8 + pfn * MW8 + i_idx]
            obj_lock(o + 16)
            try:
                ok = (q[PM8 + pfn * MW8 + i_map] == m and xa_load(o + O_TREE, idx) == pfn << 2
                      and not u32[b4] & PG_dirty and freeze(pfn, 2))
                if ok:
                    xa_store(o + O_TREE, idx, shadow)
                    at.fetch_add64(o + O_NR_PAGES, (1 << 64) - 1)
            finally:
                obj_unlock(o + 16)
            if not ok:
                return KEEP
            ix = ns + lru.nid_of(pfn) * NS + VE.NR_FILE_PAGES
            r = st[0]
            if r >= 0:
                q[r + 5] = (q[ix] + 1) & _ALL64             # a4: our count before its decrement, + 1
            i64[ix] -= 1
            free_frozen(pfn)
            return RECLAIMED

        def shrink_folio(pfn: int, sc: ScanControl) -> int:
            if not trylock_folio(pfn):
                return KEEP
            freed = False
            lr = st[0]
            if lr >= 0:
                q[lr + 2] = pfn + 1                           # locked by us
            try:
                fl = u32[PM4 + pfn * MW4]
                if fl & (PG_mlocked | PG_unevictable):
                    return CULL
                if fl & PG_writeback:
                    return KEEP
                mapped = bool(u32[PM4 + pfn * MW4 + 3])
                gen = self.gen
                r = gen.check_references(pfn, mapped) if gen is not None else check_references(pfn, mapped)
                if r != RECLAIMED:
                    return r
                if fl & PG_swapbacked:
                    r = reclaim_anon(pfn, sc)
                elif q[PM8 + pfn * MW8 + i_map] & PAGE_MAPPING_ANON:
                    r = reclaim_lazyfree(pfn, sc)
                else:
                    r = reclaim_file(pfn, sc)
                freed = r == RECLAIMED
                return r
            finally:
                if not freed:
                    if lr >= 0:
                        q[lr + 2] = 0
                    unlock_folio(pfn)

        def shrink_folio_list(pfns: list[int], sc: ScanControl) -> int:
            """Reclaim each isolated folio; put the rest back (activated ones active).
            Robust mode logs the list (vm_reclaim): each folio leaves the record as it is
            freed or just before it is put back."""
            done = 0
            kswapd = sc.kswapd
            saved = st[:]
            st[0] = log_isolated(pfns)
            try:
                for k, pfn in enumerate(pfns):
                    fl = u32[PM4 + pfn * MW4]
                    anon = bool(fl & PG_swapbacked)
                    st[1], st[2] = k, anon
                    r = shrink_folio(pfn, sc)
                    if r == RECLAIMED:                   # (free_frozen released it)
                        done += 1
                        q[ev + (VE.PGSTEAL_KSWAPD if kswapd else VE.PGSTEAL_DIRECT)] += 1
                        q[ev + (VE.PGSTEAL_ANON if anon else VE.PGSTEAL_FILE)] += 1
                        continue
                    st[1] = -1
                    if r == ACTIVATE:
                        fetch_or32((PM4 + pfn * MW4) << 2, PG_active)
                        q[ev + VE.PGACTIVATE] += 1
                        if self.gen is None:
                            ws.age_nonresident(lru.nid_of(pfn))
                    elif r == CULL:
                        fetch_or32((PM4 + pfn * MW4) << 2, PG_unevictable)
                        q[ev + VE.UNEVICTABLE_PGS_CULLED] += 1
                    release(k, pfn, anon)
                    self.reclaiming = True
                    try:
                        putback(pfn)
                    finally:
                        self.reclaiming = False
            finally:
                if st[0] >= 0:
                    log_end(st[0])
                st[:] = saved
            sc.nr_reclaimed += done
            return done

        self.reclaiming = False

        # ------------------------------------------------------------ classic LRU
        def isolate_tail(nid: int, li: int, nr: int, sc: ScanControl) -> list[int]:
            got: list[int] = []
            lock(nid)
            try:
                pfn = tail_of(nid, li)
                scanned = 0
                while pfn != 0xFFFF_FFFF and scanned < nr:
                    prev = u32[PM4 + pfn * MW4 + 5]
                    scanned += 1
                    if isolate(nid, pfn):
                        got.append(pfn)
                        anon = bool(u32[PM4 + pfn * MW4] & PG_swapbacked)
                        i64[ns + nid * NS + (VE.NR_ISOLATED_ANON if anon else VE.NR_ISOLATED_FILE)] += 1
                    pfn = prev
            finally:
                unlock(nid)
            sc.nr_scanned += len(got)
            return got

        def shrink_inactive_list(nid: int, typ: int, nr: int, sc: ScanControl) -> int:
            got = isolate_tail(nid, R.LRU_INACTIVE_ANON + 2 * typ, nr, sc)
            if not got:
                return 0
            q[ev + (VE.PGSCAN_KSWAPD if sc.kswapd else VE.PGSCAN_DIRECT)] += len(got)
            q[ev + (VE.PGSCAN_FILE if typ else VE.PGSCAN_ANON)] += len(got)
            return shrink_folio_list(got, sc)

        def shrink_active_list(nid: int, typ: int, nr: int, sc: ScanControl) -> None:
            got = isolate_tail(nid, R.LRU_ACTIVE_ANON + 2 * typ, nr, sc)
            q[ev + VE.PGREFILL] += len(got)
            deact = 0
            saved = st[:]
            st[0], st[1] = log_isolated(got), -1
            try:
                for k, pfn in enumerate(got):
                    if u32[PM4 + pfn * MW4 + 3]:
                        rops.referenced(pfn)               # ages the PTEs (test-and-clear)
                    fetch_and32((PM4 + pfn * MW4) << 2, ~PG_active & _ALL32)
                    fetch_or32((PM4 + pfn * MW4) << 2, PG_workingset)
                    deact += 1
                    release(k, pfn, bool(u32[PM4 + pfn * MW4] & PG_swapbacked))
                    putback(pfn)
            finally:
                if st[0] >= 0:
                    log_end(st[0])
                st[:] = saved
            q[ev + VE.PGDEACTIVATE] += deact

        def inactive_is_low(nid: int, typ: int) -> bool:
            inactive = count(nid, R.LRU_INACTIVE_ANON + 2 * typ)
            active = count(nid, R.LRU_ACTIVE_ANON + 2 * typ)
            gb = (inactive + active) >> _GIB_PAGES_SHIFT
            ratio = int_sqrt(10 * gb) if gb else 1
            return inactive * ratio < active

        def get_scan_count(nid: int, sc: ScanControl) -> list[int]:
            """Scan targets per list: size >> priority, split by swappiness and costs."""
            sizes = [count(nid, li) for li in range(4)]
            sw = swappiness() if can_swap() and sc.may_swap else 0
            if not sw:
                fraction = (0, 1)
            else:
                ac, fc = q[(lv[nid] + R.L_ANON_COST) >> 3], q[(lv[nid] + R.L_FILE_COST) >> 3]
                total = ac + fc
                anon_cost, file_cost = total + ac, total + fc
                total = anon_cost + file_cost
                ap = sw * (total + 1) // (anon_cost + 1)
                fp = (200 - sw) * (total + 1) // (file_cost + 1)
                fraction = (ap, fp)
                if total > 1 << 16:                  # decay the costs (lru_note_cost's halving)
                    q[(lv[nid] + R.L_ANON_COST) >> 3] = ac // 2
                    q[(lv[nid] + R.L_FILE_COST) >> 3] = fc // 2
            denom = sum(fraction) or 1
            equal = not sc.priority and sw > 0          # near OOM: SCAN_EQUAL, no balancing
            out = []
            for li in range(4):
                typ = li >> 1
                scan = sizes[li] >> sc.priority
                if not scan and sizes[li] and (sc.priority < DEF_PRIORITY - 2 or sc.boosted):
                    # AeroSync's small machines: a list under 2^priority pages would not be
                    # scanned at all.  Boosted reclaim gives up at its first pass without
                    # progress (never reaching the lower priorities), so the floor applies
                    # to it from DEF_PRIORITY.
                    scan = min(sizes[li], SWAP_CLUSTER_MAX)
                out.append(scan if equal else scan * fraction[typ] // denom if fraction[typ] else 0)
            return out

        def shrink_lruvec_classic(nid: int, sc: ScanControl) -> None:
            nr = get_scan_count(nid, sc)
            target = sc.nr_to_reclaim
            while (nr[0] or nr[2] or nr[3]) and sc.nr_reclaimed < target:
                for li in (R.LRU_INACTIVE_ANON, R.LRU_ACTIVE_ANON, R.LRU_INACTIVE_FILE, R.LRU_ACTIVE_FILE):
                    if not nr[li]:
                        continue
                    n = min(nr[li], SWAP_CLUSTER_MAX)
                    nr[li] -= n
                    typ = li >> 1
                    if li & 1:
                        if inactive_is_low(nid, typ):
                            shrink_active_list(nid, typ, n, sc)
                    else:
                        shrink_inactive_list(nid, typ, n, sc)
            if can_swap() and inactive_is_low(nid, 0):
                shrink_active_list(nid, 0, SWAP_CLUSTER_MAX, sc)

        def place_classic(nid: int, pfn: int, fl: int) -> int:
            if fl & (PG_mlocked | PG_unevictable):
                return R.LRU_UNEVICTABLE
            return R.LRU_INACTIVE_ANON + (0 if fl & PG_swapbacked else 2) + (1 if fl & PG_active else 0)

        # ------------------------------------------------------------ node / direct / kswapd
        def shrink_node(nid: int, sc: ScanControl) -> None:
            lru.lru_add_drain()
            if self.gen is not None:
                self.gen.shrink_lruvec(nid, sc)
            else:
                shrink_lruvec_classic(nid, sc)
            q[(lv[nid] + R.L_STEAL_TOTAL) >> 3] += 0

        def nodes_of(zids: Any) -> list[int]:
            seen: list[int] = []
            for z in zids:
                n = zone_nid[z]
                if n not in seen:
                    seen.append(n)
            return seen

        def try_to_free_pages(zids: Any, order: int, gfp: int) -> int:
            sc = ScanControl(SWAP_CLUSTER_MAX, False, gfp, order)
            if zids:
                q[ev + VE.ALLOCSTALL_DMA + (zids[0] % MAX_NR_ZONES)] += 1
            nodes = nodes_of(zids) or list(range(nr_nodes))
            for prio in range(DEF_PRIORITY, -1, -1):
                sc.priority = prio
                for nid in nodes:
                    shrink_node(nid, sc)
                    if sc.nr_reclaimed >= sc.nr_to_reclaim:
                        break
                if sc.nr_reclaimed >= sc.nr_to_reclaim:
                    break
            if sc.nr_reclaimed:
                for nid in nodes:
                    q[(lv[nid] + R.L_KSWAPD_FAILURES) >> 3] = 0
            return sc.nr_reclaimed

        def node_zones(nid: int, hz: int) -> list[int]:
            return [nid * MAX_NR_ZONES + zi for zi in range(min(hz, MAX_NR_ZONES - 1) + 1)
                    if populated[nid * MAX_NR_ZONES + zi]]

        zboost = [(o + Z.Z_WMARK_BOOST) >> 3 for o in zoffs]
        cpu_area0 = arena.off("cpu")
        zflags = [o + Z.Z_FLAGS for o in zoffs]
        zone_locks = mm.zone_locks

        def high_wmark_pages(z: int) -> int:
            """high_wmark_pages(): the HIGH mark plus the zone's watermark_boost."""
            return q[(zoffs[z] + Z.Z_WMARK_HIGH) >> 3] + q[zboost[z]]

        def pgdat_balanced(nid: int, order: int, hz: int) -> bool:
            """Some eligible zone meets high_wmark_pages (boost included) for `order`,
            checked bottom-up; a node without an eligible zone is balanced."""
            zs = node_zones(nid, hz)
            for z in zs:
                if zone_watermark_ok(z, order, high_wmark_pages(z), hz, 0, q[(zoffs[z] + Z.Z_NR_FREE_PAGES) >> 3]):
                    return True
            return not zs

        def pgdat_watermark_boosted(nid: int, hz: int) -> bool:
            """Any eligible zone with a watermark_boost (checked top-down, as Linux)."""
            return any(q[zboost[z]] for z in reversed(node_zones(nid, hz)))

        def kswapd_shrink_node(nid: int, sc: ScanControl) -> bool:
            """One pass over the node for kswapd, aiming at the eligible zones' high marks
            (with boost); drops to order 0 once compact_gap(order) pages were reclaimed.
            True when enough was scanned that raising the priority is not needed."""
            nr = sum(max(high_wmark_pages(z), SWAP_CLUSTER_MAX) for z in node_zones(nid, sc.reclaim_idx))
            one = ScanControl(nr, True, 0, sc.order, sc.reclaim_idx)
            one.priority, one.may_swap, one.may_writepage = sc.priority, sc.may_swap, sc.may_writepage
            one.boosted, one.aging_stalled = sc.boosted, sc.aging_stalled
            shrink_node(nid, one)
            sc.aging_stalled = one.aging_stalled
            sc.nr_reclaimed += one.nr_reclaimed
            sc.nr_scanned += one.nr_scanned
            if sc.order and sc.nr_reclaimed >= 2 << sc.order:
                sc.order = 0
            return max(one.nr_scanned, one.nr_reclaimed) >= nr

        def balance_pgdat(nid: int, order: int, hz: int) -> int:
            """kswapd's balance_pgdat(): reclaim from DEF_PRIORITY down until an eligible
            zone meets its high mark -- plus, while the node is balanced, the zones'
            watermark_boost (boosted reclaim: no writeback, no swap, priority held at
            DEF_PRIORITY - 2, given up at the first pass without progress, abandoned
            for normal reclaim when the node turns out unbalanced).  The boosts seen at
            the start are taken away at the end under each zone's lock (a boost raised
            meanwhile survives); Linux then wakes kcompactd, which AeroSync does not have.
            A pause of the machine (live check) or the kthread stop word ends the loop
            as the freezer does Linux's (kthread_freezable_should_stop), so kswapd
            parks in bounded time.  Returns pages reclaimed."""
            q[ev + VE.PAGEOUTRUN] += 1
            t0 = time.perf_counter_ns()
            zs = node_zones(nid, hz)
            zone_boosts = [(z, q[zboost[z]]) for z in zs]
            nr_boost_reclaim = sum(b for _, b in zone_boosts)
            boosted = nr_boost_reclaim > 0
            v = lv[nid]
            sc = ScanControl(0, True, 0, order, hz)
            stop_w = (base + R.H_KT_STOP) >> 3
            balanced_at_start = None
            out = False
            for z in zs:                                  # set_reclaim_active
                at.fetch_or64(zflags[z], Z.ZONE_RECLAIM_ACTIVE)
            try:
                restart = True
                while restart:
                    restart = False
                    sc.priority = DEF_PRIORITY
                    while sc.priority >= 1:
                        before = sc.nr_reclaimed
                        raise_priority = True
                        balanced = pgdat_balanced(nid, sc.order, hz)
                        if balanced_at_start is None:
                            balanced_at_start = balanced
                        if not balanced and nr_boost_reclaim:
                            nr_boost_reclaim = 0         # imbalanced: plain reclaim first
                            restart = True
                            break
                        if not nr_boost_reclaim and balanced:
                            out = True
                            break
                        if nr_boost_reclaim and sc.priority == DEF_PRIORITY - 2:
                            raise_priority = False
                        sc.may_writepage = sc.may_swap = not nr_boost_reclaim
                        sc.boosted = nr_boost_reclaim > 0
                        if kswapd_shrink_node(nid, sc):
                            raise_priority = False
                        if q[stop_w] or at.load64(AL.H_RUN_STATE) == AL.RUN_PAUSE:
                            break                        # kthread_freezable_should_stop: park
                        got = sc.nr_reclaimed - before
                        nr_boost_reclaim -= min(nr_boost_reclaim, got)
                        if nr_boost_reclaim and not got:
                            break                        # boosted reclaim without progress: give up
                        if raise_priority or not got:
                            sc.priority -= 1
                fk = (v + R.L_KSWAPD_FAILURES) >> 3
                if sc.nr_reclaimed:
                    q[fk] = 0
                elif not boosted and not out:
                    q[fk] += 1
                if boosted:
                    q[(v + R.L_KSWAPD_BOOSTED) >> 3] += 1
                    for z, b in zone_boosts:
                        if not b:
                            continue
                        zone_locks[z].acquire()
                        try:
                            q[zboost[z]] -= min(q[zboost[z]], b)
                        finally:
                            zone_locks[z].release()
                    # wakeup_kcompactd(pgdat, pageblock_order, highest_zoneidx): no kcompactd
                elif balanced_at_start and not sc.nr_reclaimed:
                    q[ev + (VE.KSWAPD_HIGH_WMARK_HIT_QUICKLY if order == 0 else
                            VE.KSWAPD_LOW_WMARK_HIT_QUICKLY)] += 1
            finally:
                for z in zs:                              # clear_reclaim_active
                    at.fetch_and64(zflags[z], ~Z.ZONE_RECLAIM_ACTIVE & _ALL64)
            q[(v + R.L_KSWAPD_RECLAIMED) >> 3] += sc.nr_reclaimed
            q[(v + R.L_KSWAPD_RUNS) >> 3] += 1
            q[(v + R.L_KSWAPD_NS) >> 3] += time.perf_counter_ns() - t0
            return sc.nr_reclaimed

        def wakeup_kswapd(zids: Any, order: int, hz: int) -> bool:
            """wakeup_kswapd(): raise the node's kswapd_order / highest_zoneidx and wake it,
            unless it is awake already, failed MAX_RECLAIM_RETRIES times, or the node is
            balanced with no watermark_boost to work off.  True when a kswapd process
            runs for one of the nodes (its CPU is CPUST_RUNNING): it owns the boosts."""
            kt = q[(base + R.H_KT_BASE) >> 3]
            if not kt:
                return False
            running = False
            for nid in nodes_of(zids):
                if q[(cpu_area0 + (kt - 1 + nid) * CPU_AREA_SIZE + AL.CPU_STATE) >> 3] == AL.CPUST_RUNNING:
                    running = True
                v = lv[nid]
                if q[(v + R.L_KSWAPD_HZ) >> 3] < hz:
                    q[(v + R.L_KSWAPD_HZ) >> 3] = hz
                if q[(v + R.L_KSWAPD_ORDER) >> 3] < order:
                    q[(v + R.L_KSWAPD_ORDER) >> 3] = order
                if q[(v + R.L_KSWAPD_WAIT) >> 3]:
                    continue                              # !waitqueue_active: it is awake
                if q[(v + R.L_KSWAPD_FAILURES) >> 3] >= MAX_RECLAIM_RETRIES:
                    continue                              # hopeless: left to direct reclaim
                if pgdat_balanced(nid, order, hz) and not pgdat_watermark_boosted(nid, hz):
                    continue
                at.store64(v + R.L_KSWAPD_WAIT, 1)
            return running

        def wakeup_kswapd_zone(zid: int) -> bool:
            """rmqueue's wakeup_kswapd(zone, 0, 0, zone_idx(zone)) for a zone whose
            ZONE_BOOSTED_WATERMARK it just cleared (the page allocator's hook)."""
            return wakeup_kswapd((zid,), 0, zid % MAX_NR_ZONES)

        self.shrink_folio, self.shrink_folio_list, self.shrink_node = shrink_folio, shrink_folio_list, shrink_node
        self.try_to_free_pages, self.balance_pgdat, self.wakeup_kswapd = try_to_free_pages, balance_pgdat, wakeup_kswapd
        self.wakeup_kswapd_zone, self.pgdat_watermark_boosted = wakeup_kswapd_zone, pgdat_watermark_boosted
        self.mark_lazyfree, self.high_wmark_pages = mark_lazyfree, high_wmark_pages
        self.pgdat_balanced, self.place_classic, self.isolate_tail = pgdat_balanced, place_classic, isolate_tail
        self.shrink_inactive_list, self.shrink_active_list = shrink_inactive_list, shrink_active_list
        self.can_swap, self.swappiness, self.nodes_of = can_swap, swappiness, nodes_of
        self.free_frozen, self.freeze = free_frozen, freeze
        self.reclaim_finish = reclaim_finish
        _ = (u8, PG_workingset, PG_dirty)
