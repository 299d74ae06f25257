"""LRU lists and the per-CPU folio batches that feed them.

Models: mm/swap.c (folio_add_lru with its per-CPU folio_batch, lru_add_drain,
folio_activate, folio_mark_accessed, __page_cache_release's lruvec_del_folio on the last
put), include/linux/mm_inline.h (lruvec_add_folio / lruvec_del_folio, lru sizes),
mm/vmscan.c (folio_isolate_lru, folio_putback_lru).  Unit: one folio (an order-0 user
page); one node's lruvec.

Lists are NIL-terminated doubly linked lists through struct page next/prev (free on an
allocated page), one byte per pfn (layout LRUID) naming the list a folio is on.  Who may
touch them: only a holder of that node's lru_lock ("&lruvec->lru_lock", ObjSpinLock).
A folio is on a list iff PG_lru is set; PG_lru changes only under lru_lock.

Per-CPU batch (folio_add_lru): a new user folio is not linked at once: it goes into this
CPU's batch in the arena (owner only), holding a reference (folio_get), and the batch is
drained -- one lru_lock round trip per node for up to FOLIO_BATCH folios -- when full, at
lru_add_drain, and before reclaim scans.  Holding the reference means a batched folio
cannot be freed (and its pfn reused) before it reaches its list; the drain drops it
(the last put frees a folio already unmapped, through the free path below).  The batch
count goes to 0 only after the drain's lru_lock holds: a CPU killed while linking
leaves the whole batch for the recovery's drain (already PG_lru folios are skipped,
every reference is put once).

Isolation (folio_isolate_lru): under lru_lock, folio_try_get (a folio whose refcount is
0 is being freed: its free path is waiting for lru_lock to unlink it -- skip it), clear
PG_lru, unlink.  The isolator owns the folio's LRU state until putback.

Free path: the page allocator calls `lru_del(pfn)` (mm/pmm/page_alloc.py's reclaim hook)
for a PG_lru page whose refcount reached 0: it takes lru_lock and unlinks it.

Node stats: nr_{inactive,active}_{anon,file} and nr_unevictable follow the lists (MGLRU
folios count as active in the two youngest generations, as Linux reports them).
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import (
    NIL,
    PG_active,
    PG_lru,
    PG_referenced,
    PG_swapbacked,
    PG_unevictable,
    PG_workingset,
    folio_try_get_fn,
)
from aerosync.mm.reclaim import layout as R
from aerosync.params import PAGE_META_SIZE

__all__ = ["Lru", "GEN_SHIFT", "GEN_MASK", "REFS_SHIFT", "REFS_MASK", "MAX_NR_GENS", "folio_type",
           "LRU_REFS_WIDTH", "LRU_REFS_FLAGS", "MAX_NR_TIERS", "folio_lru_refs", "lru_tier_from_refs",
           "lru_gen_inc_refs", "lru_gen_set_refs", "lru_gen_clear_refs", "lru_stat_item"]

GEN_SHIFT, GEN_MASK = 20, 0x7 << 20               # gen + 1 (0: not on an MGLRU list)
REFS_SHIFT, REFS_MASK = 23, 0x3 << 23             # LRU_REFS_MASK (LRU_REFS_WIDTH = 2 bits)
LRU_REFS_WIDTH = 2
LRU_REFS_FLAGS = REFS_MASK | PG_referenced
MAX_NR_GENS = 4
MAX_NR_TIERS = 4
_ALL32 = 0xFFFF_FFFF

# ---- MGLRU access bits (include/linux/mmzone.h's comment on LRU_REFS_FLAGS, 6.14+).
# Pure functions of a flags word (callers apply them with a CAS loop):
#  * accesses through file descriptors (folio_mark_accessed -> lru_gen_inc_refs): the
#    first sets PG_referenced, the next ones count up in LRU_REFS_MASK, and when that is
#    full PG_workingset is set (the folio is then lazily promoted by sort_folio);
#  * accesses through page tables (folio_update_gen from walk_mm, lru_gen_set_refs from
#    the rmap walk): the first young PTE sets PG_referenced only; a second one sets
#    PG_workingset, clears LRU_REFS_FLAGS and promotes the folio.
#  LRU_REFS_MASK is meaningful only while PG_referenced is set.  Tiers: a folio accessed
#  N times (folio_lru_refs) is in tier order_base_2(N); PG_workingset is the top tier.


def folio_lru_refs(fl: int) -> int:
    """Accesses counted in the flags, PG_referenced included (0 without it)."""
    if not fl & PG_referenced:
        return 0
    return ((fl & REFS_MASK) >> REFS_SHIFT) + 1


def lru_tier_from_refs(refs: int, workingset: bool) -> int:
    """order_base_2(refs) (refs 0, 1 -> 0; 2 -> 1; 3, 4 -> 2); PG_workingset -> the top tier."""
    if workingset:
        return MAX_NR_TIERS - 1
    return (refs - 1).bit_length() if refs > 1 else 0


def lru_gen_inc_refs(fl: int) -> int:
    """One more access through a file descriptor (unevictable folios are left alone)."""
    if fl & PG_unevictable:
        return fl
    if not fl & PG_referenced:
        return (fl & ~REFS_MASK & _ALL32) | PG_referenced
    if fl & REFS_MASK == REFS_MASK:
        return fl | PG_workingset
    return fl + (1 << REFS_SHIFT)


def lru_gen_set_refs(fl: int) -> tuple[int, bool]:
    """A young PTE seen through the rmap (look-around): first time PG_referenced only
    (False: keep where it is), then PG_workingset with LRU_REFS_FLAGS cleared (True:
    activate)."""
    if not fl & (PG_referenced | PG_workingset):
        return (fl & ~REFS_MASK & _ALL32) | PG_referenced, False
    return (fl & ~LRU_REFS_FLAGS & _ALL32) | PG_workingset, True


def lru_gen_clear_refs(fl: int) -> int:
    """Deactivation: every access bit goes (LRU_REFS_FLAGS and PG_workingset)."""
    return fl & ~(LRU_REFS_FLAGS | PG_workingset) & _ALL32


def lru_stat_item(li: int, max_seq: int) -> int:
    """The node stat (nr_{inactive,active}_{anon,file}, nr_unevictable) list `li`
    counts in; an MGLRU list by its generation's age under `max_seq` (the two youngest
    generations are reported as active)."""
    if li < R.MG_LIST0:
        return VE.NR_INACTIVE_ANON + li if li < 4 else VE.NR_UNEVICTABLE
    k = li - R.MG_LIST0
    gen, typ = k >> 1, k & 1
    seq = max_seq - ((max_seq - gen) % MAX_NR_GENS)
    return VE.NR_INACTIVE_ANON + typ * 2 + (1 if seq + 1 >= max_seq else 0)


def folio_type(flags: int) -> int:
    """0 anon (swap-backed: anonymous and shmem), 1 file."""
    return 0 if flags & PG_swapbacked else 1


class Lru:
    """One CPU's LRU operations (closures bound once):

      lru_add(pfn)           folio_add_lru: into this CPU's batch (a reference held)
      lru_add_drain()        flush this CPU's batch onto the lists
      lru_del(pfn)           the free path's unlink (refcount already 0)
      lru_del_many(pfns)     the same for a batch (page_alloc's free_pages_bulk)
      lock(nid) / unlock(nid)   the node's lru_lock
      link(nid, li, pfn, tail=False) / unlink(nid, pfn) -> list id   (lru_lock held)
      isolate(nid, pfn) -> bool    try_get + unlink + clear PG_lru (lru_lock held)
      putback(pfn)           back onto the list its flags ask for (takes lru_lock),
                             dropping the isolation reference
      list_ids(nid)          [(list id, head, tail, count)]
    `place(nid, pfn, flags) -> list id` (set by the policy: lru_gen.py or vmscan.py) says
    where a folio goes when it is added or put back, and may update its flags (with
    lru_lock held).
    """

    def __init__(self, arena: Any, cpu: int, mm: Any, lock_cls: Any) -> None:
        self.arena, self.cpu = arena, cpu
        off = R.Off(arena)
        self.off = off
        q, u32, u8, i64, at = arena.u64, arena.u32, arena.u8, arena.i64, arena.atomic
        fetch_add32, fetch_and32, fetch_or32 = at.fetch_add32, at.fetch_and32, at.fetch_or32
        PM = arena.off("pagemeta")
        PM4 = PM >> 2
        MW4 = PAGE_META_SIZE >> 2
        lruid = off.lruid
        nr_nodes = off.nr_nodes
        lv = [off.lruvec(n) for n in range(nr_nodes)]
        lists = [[(lv[n] + R.L_LISTS + 16 * li) for li in range(R.NR_LISTS)] for n in range(nr_nodes)]
        lock_w = [v + R.L_LOCK for v in lv]
        spin_lock, spin_unlock = lock_cls.lock, lock_cls.unlock
        ns = VE.node_stat_base(arena, cpu)
        NS = VE.NR_NODE_STATS
        mglru = q[(off.base + R.H_LRU_MODE) >> 3] == R.LRU_MGLRU
        pc = off.pcpu(cpu)
        bn_i = (pc + R.PC_BATCH_N) >> 3
        b32 = (pc + R.PC_BATCH) >> 2
        free_pages, free_pages_bulk = mm.free_pages, mm.free_pages_bulk
        self.place: Any = None

        def nid_of(pfn: int) -> int:
            return u8[PM + pfn * PAGE_META_SIZE + 7]

        def stat_item(nid: int, li: int) -> int:
            return lru_stat_item(li, q[(lv[nid] + R.L_MAX_SEQ) >> 3])

        def lock(nid: int) -> None:
            spin_lock(lock_w[nid])

        def unlock(nid: int) -> None:
            spin_unlock(lock_w[nid])

        def link(nid: int, li: int, pfn: int, tail: bool = False) -> None:
            h = lists[nid][li]
            hi = h >> 2
            b = PM4 + pfn * MW4
            if tail:
                old = u32[hi + 1]
                u32[b + 4] = NIL
                u32[b + 5] = old
                if old == NIL:
                    u32[hi] = pfn
                else:
                    u32[PM4 + old * MW4 + 4] = pfn
                u32[hi + 1] = pfn
            else:
                old = u32[hi]
                u32[b + 4] = old
                u32[b + 5] = NIL
                if old == NIL:
                    u32[hi + 1] = pfn
                else:
                    u32[PM4 + old * MW4 + 5] = pfn
                u32[hi] = pfn
            q[(h + 8) >> 3] += 1
            u8[lruid + pfn] = li
            i64[ns + nid * NS + stat_item(nid, li)] += 1

        def unlink(nid: int, pfn: int) -> int:
            li = u8[lruid + pfn]
            h = lists[nid][li]
            hi = h >> 2
            b = PM4 + pfn * MW4
            nx, pv = u32[b + 4], u32[b + 5]
            if pv == NIL:
                u32[hi] = nx
            else:
                u32[PM4 + pv * MW4 + 4] = nx
            if nx == NIL:
                u32[hi + 1] = pv
            else:
                u32[PM4 + nx * MW4 + 5] = pv
            u32[b + 4] = u32[b + 5] = NIL
            q[(h + 8) >> 3] -= 1
            i64[ns + nid * NS + stat_item(nid, li)] -= 1
            return li

        try_get = folio_try_get_fn(arena)         # a reference unless the folio is being freed (0)

        def isolate(nid: int, pfn: int) -> bool:
            if not try_get(pfn):
                return False
            unlink(nid, pfn)
            fetch_and32((PM4 + pfn * MW4) << 2, ~(PG_lru | GEN_MASK) & _ALL32)
            return True

        def add_locked(nid: int, pfn: int) -> None:
            fl = u32[PM4 + pfn * MW4]
            li = self.place(nid, pfn, fl) if self.place is not None else (
                R.LRU_INACTIVE_ANON + (0 if fl & PG_swapbacked else 2) + (1 if fl & PG_active else 0))
            fetch_or32((PM4 + pfn * MW4) << 2, PG_lru)
            link(nid, li, pfn)

        def lru_add_drain() -> None:
            """Flush this CPU's batch: lru_lock once per run of one node (folio_batch_move_lru
            with folio_lruvec_relock_irqsave), the head link inlined, list sizes and stats
            applied once per hold (account_hold), then the batch's references go in one
            free_pages_bulk.  Measured (page_fault1, a batch of 15 then): ~330 -> ~130
            bytecodes a folio."""
            n = q[bn_i]
            if not n:
                return
            pfns = u32[b32 : b32 + n].tolist()
            place = self.place
            cur = -1
            counts: dict[int, int] = {}
            heads: list[int] = []
            try:
                for pfn in pfns:
                    nid = u8[PM + pfn * PAGE_META_SIZE + 7]
                    if nid != cur:
                        if cur >= 0:
                            account_hold(cur, counts, 1)
                            unlock(cur)
                            cur = -1
                        lock(nid)
                        cur, heads = nid, lists[nid]
                    b = PM4 + pfn * MW4
                    fl = u32[b]
                    if fl & PG_lru:
                        continue              # cannot happen: a batch holds each folio once
                    li = place(nid, pfn, fl) if place is not None else (
                        R.LRU_INACTIVE_ANON + (0 if fl & PG_swapbacked else 2) + (1 if fl & PG_active else 0))
                    fetch_or32(b << 2, PG_lru)
                    hi = heads[li] >> 2           # link(nid, li, pfn) at the head
                    old = u32[hi]
                    u32[b + 4] = old
                    u32[b + 5] = NIL
                    if old == NIL:
                        u32[hi + 1] = pfn
                    else:
                        u32[PM4 + old * MW4 + 5] = pfn
                    u32[hi] = pfn
                    u8[lruid + pfn] = li
                    counts[li] = counts.get(li, 0) + 1
            finally:
                if cur >= 0:
                    account_hold(cur, counts, 1)
                    unlock(cur)
            # The batch empties only now: a CPU killed while linking leaves every folio
            # of it in its batch, still holding its reference, and the recovery's drain
            # (cpuhp) links those not linked yet (PG_lru clear) and puts every reference.
            q[bn_i] = 0
            free_pages_bulk(pfns)             # the batch's references (folios_put)

        def lru_add(pfn: int) -> None:
            fetch_add32((PM4 + pfn * MW4 + 2) << 2, 1)
            n = q[bn_i]
            u32[b32 + n] = pfn
            q[bn_i] = n + 1
            if n + 1 >= FB:
                lru_add_drain()

        def lru_del(pfn: int) -> None:
            nid = nid_of(pfn)
            lock(nid)
            try:
                if u32[PM4 + pfn * MW4] & PG_lru:
                    unlink(nid, pfn)
                    fetch_and32((PM4 + pfn * MW4) << 2, ~(PG_lru | GEN_MASK | PG_active) & _ALL32)
            finally:
                unlock(nid)

        clear_lru = ~(PG_lru | GEN_MASK | PG_active) & _ALL32
        FB = R.FOLIO_BATCH

        def account_hold(nid: int, counts: dict[int, int], sign: int) -> None:
            """The list sizes and node stats of one lru_lock hold, applied once per list
            before the unlock (a memoryview += costs ~70 ns, measured; a batch touches
            one or two lists)."""
            heads = lists[nid]
            for li, n in counts.items():
                q[(heads[li] + 8) >> 3] += sign * n
                i64[ns + nid * NS + stat_item(nid, li)] += sign * n
            counts.clear()

        def lru_del_many(pfns: list[int]) -> None:
            """lru_del for a batch of folios being freed (folios_put's __page_cache_release
            under folio_lruvec_relock_irqsave): lru_lock is taken once per run of one node,
            at most FOLIO_BATCH folios per hold; unlink inlined, list sizes and stats
            applied once per hold (account_hold).  Measured (page_fault1's munmap):
            ~230 -> ~45 bytecodes a folio."""
            cur, held = -1, 0
            counts: dict[int, int] = {}
            heads: list[int] = []
            try:
                for pfn in pfns:
                    nid = u8[PM + pfn * PAGE_META_SIZE + 7]
                    if nid != cur or held >= FB:
                        if cur >= 0:
                            account_hold(cur, counts, -1)
                            unlock(cur)
                            cur = -1
                        lock(nid)
                        cur, held, heads = nid, 0, lists[nid]
                    held += 1
                    b = PM4 + pfn * MW4
                    if not u32[b] & PG_lru:
                        continue
                    li = u8[lruid + pfn]
                    hi = heads[li] >> 2
                    nx, pv = u32[b + 4], u32[b + 5]
                    if pv == NIL:
                        u32[hi] = nx
                    else:
                        u32[PM4 + pv * MW4 + 4] = nx
                    if nx == NIL:
                        u32[hi + 1] = pv
                    else:
                        u32[PM4 + nx * MW4 + 5] = pv
                    u32[b + 4] = u32[b + 5] = NIL
                    counts[li] = counts.get(li, 0) + 1
                    fetch_and32(b << 2, clear_lru)
            finally:
                if cur >= 0:
                    account_hold(cur, counts, -1)
                    unlock(cur)

        def putback(pfn: int) -> None:
            """folio_putback_lru(): relink, then drop the isolation reference.  A folio
            nobody else holds is freed instead (move_folios_to_lru's put_testzero)."""
            r = (PM4 + pfn * MW4 + 2) << 2
            if u32[r >> 2] == 1:
                free_pages(pfn, 0)
                return
            nid = nid_of(pfn)
            lock(nid)
            try:
                add_locked(nid, pfn)
            finally:
                unlock(nid)
            free_pages(pfn, 0)

        def list_ids(nid: int) -> list[tuple[int, int, int, int]]:
            out = []
            for li in range(R.NR_LISTS):
                h = lists[nid][li]
                out.append((li, u32[h >> 2], u32[(h >> 2) + 1], q[(h + 8) >> 3]))
            return out

        def list_count(nid: int, li: int) -> int:
            return q[(lists[nid][li] + 8) >> 3]

        def list_tail(nid: int, li: int) -> int:
            return u32[(lists[nid][li] >> 2) + 1]

        self.mglru = mglru
        self.lruvec, self.lists = lv, lists
        self.lock, self.unlock, self.link, self.unlink = lock, unlock, link, unlink
        self.try_get, self.isolate, self.add_locked = try_get, isolate, add_locked
        self.lru_add, self.lru_add_drain, self.lru_del, self.putback = lru_add, lru_add_drain, lru_del, putback
        self.lru_del_many = lru_del_many
        self.list_ids, self.list_count, self.list_tail, self.nid_of = list_ids, list_count, list_tail, nid_of
        self.stat_item = stat_item
