"""The multi-generational LRU (MGLRU).

Models: mm/vmscan.c's CONFIG_LRU_GEN part (Linux 6.19) and Documentation/mm/multigen_lru.rst.
Unit: one node's lruvec.

Generations: max_seq (youngest) .. min_seq[type] (oldest), MIN_NR_GENS = 2 to
MAX_NR_GENS = 4 per type; a folio's generation is gen = seq % MAX_NR_GENS, kept + 1 in
flags bits 20-22 (0: on no MGLRU list).  lru_gen_folio_seq (module function) says where
a folio is added: PG_active (set for folios added in a fault) -> max_seq - 1, or max_seq
with PG_workingset; new anonymous folios -> max_seq - 1; others -> max_seq - 3 (+1 with
PG_workingset); never below min_seq.  Folios put back after eviction that would land
in the oldest generation get PG_active instead (evict_folios' "rejected folios").

Access bits and tiers (swap.py's helpers, the 6.14+ LRU_REFS_FLAGS scheme): the first
young PTE found by aging (folio_update_gen) or by the rmap walk (lru_gen_set_refs) sets
PG_referenced only; the second sets PG_workingset and promotes the folio to max_seq.
Accesses through file descriptors (mark_accessed: lru_gen_inc_refs) count in
LRU_REFS_MASK, then PG_workingset.  Tier = order_base_2(refs), PG_workingset = top tier.

Aging (try_to_inc_max_seq): walk_mm over every live mm's page tables clearing accessed
bits (folio_update_gen on each young folio), then inc_max_seq, which first makes room
when a type already has MAX_NR_GENS generations (inc_min_seq: the oldest folios move up
by folio_inc_gen, counted as protected per tier).  No Bloom filter: every PTE table is
walked.

Eviction (evict_folios): the type by the PID controller over all tiers
(get_type_to_scan, gains swappiness : 200 - swappiness), the tiers to protect by
get_tier_idx (each tier's refaulted / (evicted + protected) against tier 0's, gain
3 : 2); scan_folios takes the oldest generation from its tail (never when a type has
only MIN_NR_GENS), sort_folio moves protected tiers, lazily promoted workingset folios,
and dirty/writeback file folios one generation up, the rest is isolated (at most
MIN_LRU_BATCH) for shrink_folio_list.  The rmap check there (check_references) is
lru_gen_look_around: a young PTE of the folio makes its neighbours in the same PTE
table (up to MIN_LRU_BATCH around it, inside the VMA) checked too, their accessed bits
cleared and lru_gen_set_refs applied; those that turn workingset are promoted to
max_seq (folio_activate) once shrink_folio_list is done.  Refault statistics:
refaulted / evicted / protected [hist][type][tier] with NR_HIST_GENS = 1 (the default
build), folded into avg_refaulted / avg_total whenever min_seq advances
(reset_ctrl_pos with carryover).  try_to_shrink_lruvec's loop: below DEF_PRIORITY,
get_nr_to_scan ages (and stops scanning the node) when the evictable types have only
MIN_NR_GENS or MIN_NR_GENS + 1 generations; otherwise, and always at DEF_PRIORITY, it
evicts up to (size >> priority); set_initial_priority as lru_gen_shrink_node.

Not modelled: memcgs, min_ttl, the Bloom filters and mm_state iteration (one walker
per node, L_AGING), PMD-level accessed bits, PG_reclaim rotation of written-back folios,
the swap-constrained isolation rule (kswapd's ScanControl has no gfp here), the "retry
clean folios" second pass of evict_folios.  lru_gen_in_fault is approximated: a
swap-backed folio added through lru_add is taken as added in a fault (anonymous and
shmem folios are only made by faults and swap-ins here).

Folios are on the list of their generation: a promotion relinks the folio under
lru_lock (Linux updates the flags first and sorts lazily; relinking keeps "list ==
flags" exact, which the checker verifies, LRU2).

Locks: aging walks an mm under mmap_lock taken with down_read_trylock (a busy mm is
skipped, as walk_mm does), each PTE table under its lock; promotions and generation
changes under lru_lock, never taken under a PTE lock (young folios are collected, then
promoted); flags change by CAS (other CPUs set bits with atomics).  The look-around
runs inside the rmap walk (PTE lock held); its promotions are kept on the CPU's pending
list and applied after shrink_folio_list (no folio lock held).  L_AGING (CAS 0 -> cpu
+ 1) lets one CPU age a node at a time, as Linux's mm_state seq.  A reclaimer that finds
the node being aged at priority DEF_PRIORITY - 2 or below waits for that walk (6.1's
wait_event_killable on max_seq; 6.19 returns at once): a walker's CPU the host
descheduled for tens of milliseconds would otherwise leave every round of a direct
reclaim without progress and end in the OOM killer with swap to spare.  The wait answers
IPIs (the walk flushes TLBs) and is bounded (AGING_WAIT_S, then no more waits in that
pass).
"""

from __future__ import annotations

import time
from typing import Any

from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import (
    PG_active,
    PG_dirty,
    PG_lru,
    PG_mlocked,
    PG_reclaim,
    PG_referenced,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_workingset,
    PG_writeback,
)
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.swap import (
    GEN_MASK,
    GEN_SHIFT,
    LRU_REFS_FLAGS,
    LRU_REFS_WIDTH,
    MAX_NR_GENS,
    MAX_NR_TIERS,
    REFS_MASK,
    folio_lru_refs,
    lru_gen_inc_refs,
    lru_gen_set_refs,
    lru_tier_from_refs,
)
from aerosync.mm.reclaim.vmscan import ACTIVATE, DEF_PRIORITY, KEEP, RECLAIMED, ScanControl
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.pgtable import _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_SPECIAL, PTE_PFN_MASK
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["LruGen", "aging_cpu_dead", "MIN_NR_GENS", "NR_HIST_GENS", "MIN_LRU_BATCH", "MAX_SWAPPINESS", "lru_gen_view",
           "lru_gen_folio_seq", "positive_ctrl_err"]

MIN_NR_GENS = 2
NR_HIST_GENS = 1                  # CONFIG_LRU_GEN_STATS off (the default build)
MIN_LRU_BATCH = 64                # BITS_PER_LONG
MAX_LRU_BATCH = MIN_LRU_BATCH * 64
MIN_SWAPPINESS, MAX_SWAPPINESS = 0, 200
NIL = 0xFFFF_FFFF
_ALL32 = 0xFFFF_FFFF
_YOUNG = _PAGE_PRESENT | _PAGE_ACCESSED
_PMD_SIZE = 1 << 21
_LAZY = (1 << LRU_REFS_WIDTH) + 1        # refs + workingset of a fully accessed folio
AGING_WAIT_S = 1.0                # longest wait for another CPU's aging (a stuck walker)


def _gen_list(gen: int, typ: int) -> int:
    return R.MG_LIST0 + gen * 2 + typ


def lru_gen_folio_seq(fl: int, max_seq: int, min_seq: int, reclaiming: bool = False) -> int:
    """The sequence number a folio with flags fl is added at (include/linux/mm_inline.h's
    lru_gen_folio_seq; min_seq is that of the folio's type)."""
    ws = 1 if fl & PG_workingset else 0
    if fl & PG_active:
        g = MIN_NR_GENS - ws
    elif reclaiming:
        g = MAX_NR_GENS
    elif (fl & PG_swapbacked and not fl & PG_swapcache) or (fl & PG_reclaim and fl & (PG_dirty | PG_writeback)):
        g = MIN_NR_GENS
    else:
        g = MAX_NR_GENS - ws
    return max(max_seq - g + 1, min_seq)


def positive_ctrl_err(sp: tuple[int, int, int], pv: tuple[int, int, int]) -> bool:
    """The PV (process variable: refaulted, total, gain) has few refaults or a
    refaulted/total not above the SP's (set point), each weighed by its gain."""
    return pv[0] < MIN_LRU_BATCH or pv[0] * (sp[1] + MIN_LRU_BATCH) * sp[2] <= (sp[0] + 1) * pv[1] * pv[2]


class LruGen:
    """One CPU's MGLRU (closures): place(nid, pfn, flags) -> list id (lru_lock held),
    check_references(pfn, mapped), shrink_lruvec(nid, sc), try_to_inc_max_seq(nid),
    inc_min_seq(nid, typ), mark_accessed(pfn), read_ctrl_pos(nid, typ, tier, gain),
    get_tier_idx(nid, typ), get_type_to_scan(nid, swappiness), look_around(pfn)."""

    def __init__(self, vm: Any, lru: Any, rops: Any, scan: Any, flock: Any) -> None:
        arena, cpu = vm.arena, vm.cpu
        q, u32, at = arena.u64, arena.u32, arena.atomic
        cas32, cas64, fetch_and32, fetch_add64 = at.cas32, at.cas64, at.fetch_and32, at.fetch_add64
        PM4 = arena.off("pagemeta") >> 2
        MW4 = PAGE_META_SIZE >> 2
        P8 = arena.off("physmem") >> 3
        nr_pfns = int(arena.config["nr_pages"])
        lv = lru.lruvec
        lock, unlock, link, unlink, isolate = lru.lock, lru.unlock, lru.link, lru.unlink, lru.isolate
        count, tail_of = lru.list_count, lru.list_tail
        nid_of = lru.nid_of
        ev = VE.vm_event_base(arena, cpu)
        ns = VE.node_stat_base(arena, cpu)
        NS = VE.NR_NODE_STATS
        i64 = arena.i64
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        max_mms = q[(arena.off("vmhdr") + T.H_MAX_MMS) >> 3]
        pt_walk = vm.pt.walk
        ptl_lock, ptl_unlock, ptlock_off = vm.locks.ptlock.lock, vm.locks.ptlock.unlock, vm.pt.ptlock_off
        mmap_trylock, mmap_unlock = vm.locks.mmap_lock.down_read_trylock, vm.locks.mmap_lock.up_read
        vmas_tree = vm.vmas.tree
        flush = vm.tlb.flush_tlb_mm_range
        handle_ipi = vm.tlb.handle_ipi
        rmap_walk = vm.rmap.rmap_walk
        from aerosync.mm.vm import vma as V

        VM_SPECIAL_LOCKED = V.VM_IO | V.VM_PFNMAP | V.VM_LOCKED
        L_MAX_SEQ, L_MIN_SEQ, MG_LIST0 = R.L_MAX_SEQ, R.L_MIN_SEQ, R.MG_LIST0
        keep_gen = ~(GEN_MASK | PG_active) & _ALL32
        pending: list[int] = []            # look-around folios to activate (this CPU's batch)

        def seqs(nid: int) -> tuple[int, int, int]:
            v = lv[nid]
            return q[(v + L_MAX_SEQ) >> 3], q[(v + L_MIN_SEQ) >> 3], q[(v + L_MIN_SEQ + 8) >> 3]

        def update_flags(pfn: int, fn: Any) -> tuple[int, int]:
            """CAS loop applying fn(old) -> new to the folio's flags: (old, new)."""
            r = (PM4 + pfn * MW4) << 2
            old = u32[r >> 2]
            while True:
                new = fn(old)
                if new == old:
                    return old, new
                seen = cas32(r, old, new)
                if seen == old:
                    return old, new
                old = seen

        def set_gen(pfn: int, gen: int, clear: int = 0, add: int = 0) -> int:
            """Generation bits to gen (and flags `clear` off, `add` on); returns the old flags."""
            r = (PM4 + pfn * MW4) << 2
            old = u32[r >> 2]
            keep = ~(GEN_MASK | clear) & _ALL32
            gb = ((gen + 1) << GEN_SHIFT) | add
            while True:
                seen = cas32(r, old, (old & keep) | gb)
                if seen == old:
                    return old
                old = seen

        def swappiness_of(sc: Any) -> int:
            """get_swappiness(): 0 without swap space (or may_swap off)."""
            if sc is not None and not sc.may_swap:
                return 0
            return scan.swappiness() if scan.can_swap() else 0

        def evictable(typ: int, swappiness: int) -> bool:
            """for_each_evictable_type: anon needs swappiness, file anything but > MAX."""
            return swappiness <= MAX_SWAPPINESS if typ else swappiness > MIN_SWAPPINESS

        def evictable_min_seq(nid: int, swappiness: int) -> int:
            v = lv[nid]
            seq = q[(v + L_MAX_SEQ) >> 3]
            for typ in (0, 1):
                if evictable(typ, swappiness):
                    seq = min(seq, q[(v + L_MIN_SEQ + 8 * typ) >> 3])
            return seq

        # ------------------------------------------------------------ adding (lru_lock held)
        def place(nid: int, pfn: int, fl: int) -> int:
            """lru_gen_add_folio(): the generation by lru_gen_folio_seq; the folio's gen
            bits set and PG_active cleared here.  A putback after eviction
            (scan.reclaiming) that would land in the oldest generation is given
            PG_active (LRU_REFS_FLAGS cleared) first; a swap-backed folio added through
            lru_add counts as added in a fault (folio_add_lru's PG_active).  Every folio
            of every lru_add_drain comes here: outside reclaim, lru_gen_folio_seq and
            set_gen are inlined (page_fault1: 3 calls -> 1 and ~150 -> ~107 bytecodes a
            folio, counted with f_trace_opcodes)."""
            if fl & (PG_mlocked | PG_unevictable):
                fetch_and32((PM4 + pfn * MW4) << 2, keep_gen)
                return R.LRU_UNEVICTABLE
            typ = 0 if fl & PG_swapbacked else 1
            v = lv[nid]
            max_seq = q[(v + L_MAX_SEQ) >> 3]
            min_seq = q[(v + L_MIN_SEQ + 8 * typ) >> 3]
            if scan.reclaiming:
                add = 0
                if not fl & PG_active and lru_gen_folio_seq(fl, max_seq, min_seq) == min_seq:
                    fl = (fl & ~LRU_REFS_FLAGS & _ALL32) | PG_active
                    add = LRU_REFS_FLAGS
                gen = lru_gen_folio_seq(fl, max_seq, min_seq) % MAX_NR_GENS
                set_gen(pfn, gen, PG_active | add)
                return MG_LIST0 + gen * 2 + typ
            # lru_gen_folio_seq(fl, max_seq, min_seq), a swap-backed folio counted active
            if not typ or fl & PG_active:
                seq = max_seq - MIN_NR_GENS + (2 if fl & PG_workingset else 1)
            elif fl & PG_reclaim and fl & (PG_dirty | PG_writeback):
                seq = max_seq - MIN_NR_GENS + 1
            else:
                seq = max_seq - MAX_NR_GENS + (2 if fl & PG_workingset else 1)
            gen = (seq if seq > min_seq else min_seq) % MAX_NR_GENS
            r = (PM4 + pfn * MW4) << 2                   # set_gen(pfn, gen, PG_active)
            gb = (gen + 1) << GEN_SHIFT
            old = u32[r >> 2]
            while True:
                seen = cas32(r, old, (old & keep_gen) | gb)
                if seen == old:
                    return MG_LIST0 + gen * 2 + typ
                old = seen

        # ------------------------------------------------------------ PID controller
        def read_ctrl_pos(nid: int, typ: int, tier: int, gain: int) -> tuple[int, int, int]:
            """(refaulted, total, gain) of one tier, or of all of them (tier ==
            MAX_NR_TIERS): the moving averages plus the current generation's counts."""
            v = lv[nid]
            hist = q[(v + L_MIN_SEQ + 8 * typ) >> 3] % NR_HIST_GENS
            refaulted = total = 0
            for t in range(tier % MAX_NR_TIERS, min(tier, MAX_NR_TIERS - 1) + 1):
                k = 8 * (hist * 8 + typ * 4 + t)
                a = 8 * (typ * 4 + t)
                refaulted += q[(v + R.L_AVG_REFAULTED + a) >> 3] + q[(v + R.L_REFAULTED + k) >> 3]
                total += (q[(v + R.L_AVG_TOTAL + a) >> 3] + q[(v + R.L_PROTECTED + k) >> 3]
                          + q[(v + R.L_EVICTED + k) >> 3])
            return refaulted, total, gain

        def reset_ctrl_pos(nid: int, typ: int, carryover: bool) -> None:
            """min_seq advancing (carryover): the oldest generation's counts fold into the
            averages (smoothing 1/2) and, with NR_HIST_GENS == 1, start over."""
            v = lv[nid]
            clear = NR_HIST_GENS == 1 if carryover else NR_HIST_GENS > 1
            if not carryover and not clear:
                return
            seq = q[(v + L_MIN_SEQ + 8 * typ) >> 3] if carryover else q[(v + L_MAX_SEQ) >> 3] + 1
            hist = seq % NR_HIST_GENS
            for tier in range(MAX_NR_TIERS):
                k = 8 * (hist * 8 + typ * 4 + tier)
                a = 8 * (typ * 4 + tier)
                if carryover:
                    ar, av = (v + R.L_AVG_REFAULTED + a) >> 3, (v + R.L_AVG_TOTAL + a) >> 3
                    q[ar] = (q[ar] + q[(v + R.L_REFAULTED + k) >> 3]) // 2
                    q[av] = (q[av] + q[(v + R.L_PROTECTED + k) >> 3] + q[(v + R.L_EVICTED + k) >> 3]) // 2
                if clear:
                    for f in (R.L_REFAULTED, R.L_EVICTED, R.L_PROTECTED):
                        q[(v + f + k) >> 3] = 0

        def count_protected(nid: int, typ: int, fl: int) -> None:
            """A folio moved out of the oldest generation by its accesses (not the
            lazily promoted workingset) counts as protected in its tier."""
            refs = folio_lru_refs(fl)
            ws = 1 if fl & PG_workingset else 0
            if refs + ws != _LAZY:
                v = lv[nid]
                hist = q[(v + L_MIN_SEQ + 8 * typ) >> 3] % NR_HIST_GENS
                q[(v + R.L_PROTECTED + 8 * (hist * 8 + typ * 4 + lru_tier_from_refs(refs, bool(ws)))) >> 3] += 1

        # ------------------------------------------------------------ generations (lru_lock held)
        def inc_min_seq(nid: int, typ: int, swappiness: int = 1) -> None:
            """The oldest generation of typ goes: its folios move to the next one
            (folio_inc_gen: LRU_REFS_FLAGS cleared; appended at its tail, counted as
            protected).  Linux skips the move for a type that is not evictable (its
            folios then wrap into the youngest generation); here they move anyway,
            keeping their order (swappiness: the signature only)."""
            v = lv[nid]
            mi = q[(v + L_MIN_SEQ + 8 * typ) >> 3]
            src, dst_gen = _gen_list(mi % MAX_NR_GENS, typ), (mi + 1) % MAX_NR_GENS
            dst = _gen_list(dst_gen, typ)
            pfn = tail_of(nid, src)
            while pfn != NIL:
                prev = u32[PM4 + pfn * MW4 + 5]
                unlink(nid, pfn)
                old = set_gen(pfn, dst_gen, LRU_REFS_FLAGS)
                link(nid, dst, pfn, True)
                count_protected(nid, typ, old)
                pfn = prev
            reset_ctrl_pos(nid, typ, True)
            q[(v + L_MIN_SEQ + 8 * typ) >> 3] = mi + 1

        def try_to_inc_min_seq(nid: int, swappiness: int = 1) -> bool:
            """min_seq of each evictable type past its empty oldest generations (at least
            MIN_NR_GENS kept); with both types evictable neither type's min_seq may pass
            max_seq - MIN_NR_GENS while the other's is below it."""
            v = lv[nid]
            max_seq = q[(v + L_MAX_SEQ) >> 3]
            mins = [q[(v + L_MIN_SEQ) >> 3], q[(v + L_MIN_SEQ + 8) >> 3]]
            new = list(mins)
            for typ in (0, 1):
                if not evictable(typ, swappiness):
                    continue
                while new[typ] + MIN_NR_GENS <= max_seq and not count(nid, _gen_list(new[typ] % MAX_NR_GENS, typ)):
                    new[typ] += 1
            if swappiness and swappiness <= MAX_SWAPPINESS:
                seq = max_seq - MIN_NR_GENS
                if new[0] > seq and new[1] < seq:
                    new[0] = seq
                elif new[1] > seq and new[0] < seq:
                    new[1] = seq
            moved = False
            for typ in (0, 1):
                if not evictable(typ, swappiness) or new[typ] <= mins[typ]:
                    continue
                reset_ctrl_pos(nid, typ, True)
                q[(v + L_MIN_SEQ + 8 * typ) >> 3] = new[typ]
                moved = True
            return moved

        def inc_max_seq(nid: int, swappiness: int = 1) -> None:
            v = lv[nid]
            max_seq = q[(v + L_MAX_SEQ) >> 3]
            for typ in (0, 1):
                if max_seq - q[(v + L_MIN_SEQ + 8 * typ) >> 3] + 1 >= MAX_NR_GENS:
                    inc_min_seq(nid, typ, swappiness)
            # the generation max_seq - 1 turns inactive for the /proc/vmstat view
            g = (max_seq - 1) % MAX_NR_GENS
            for typ in (0, 1):
                n = count(nid, _gen_list(g, typ))
                if n:
                    i64[ns + nid * NS + VE.NR_INACTIVE_ANON + 2 * typ + 1] -= n
                    i64[ns + nid * NS + VE.NR_INACTIVE_ANON + 2 * typ] += n
            for typ in (0, 1):
                reset_ctrl_pos(nid, typ, False)
            q[(v + R.L_TIMESTAMPS + 8 * ((max_seq + 1) % MAX_NR_GENS)) >> 3] = time.monotonic_ns()
            q[(v + L_MAX_SEQ) >> 3] = max_seq + 1

        # ------------------------------------------------------------ aging
        def walk_mm(mm_id: int, nid: int, young: list[int]) -> None:
            """Page-table walk of one mm: accessed PTEs are cleared and their folios (of
            node nid) collected for folio_update_gen; the walked ranges are flushed."""
            mo = mm_base + mm_id * mm_size
            if not mmap_trylock(mo + T.M_MMAP_LOCK):
                return
            ranges = []
            try:
                root = q[(mo + T.M_PGD) >> 3]
                for _f, _l, vma in vmas_tree(mm_id).mt_for_each():
                    if q[(vma + V.V_FLAGS) >> 3] & VM_SPECIAL_LOCKED:
                        continue                              # should_skip_vma
                    s, e = q[(vma + V.V_START) >> 3], q[(vma + V.V_END) >> 3]
                    hit_lo, hit_hi = -1, 0
                    a = s
                    while a < e:
                        nxt = min(e, (a | (_PMD_SIZE - 1)) + 1)
                        table = pt_walk(root, a)
                        if table >= 0:
                            b = P8 + (table << 9)
                            k0, k1 = (a >> PAGE_SHIFT) & 511, ((nxt - 1) >> PAGE_SHIFT & 511) + 1
                            ents = q[b + k0 : b + k1]
                            hot = [k for k, x in enumerate(ents) if x & _YOUNG == _YOUNG and not x & _PAGE_SPECIAL]
                            if hot:
                                lo = ptlock_off(table)
                                ptl_lock(lo)
                                try:
                                    for k in hot:
                                        i = b + k0 + k
                                        x = q[i]
                                        while x & _YOUNG == _YOUNG:
                                            seen = cas64(i << 3, x, x & ~_PAGE_ACCESSED)
                                            if seen == x:
                                                pfn = (x & PTE_PFN_MASK) >> PAGE_SHIFT
                                                if pfn < nr_pfns and nid_of(pfn) == nid:
                                                    young.append(pfn)
                                                break
                                            x = seen
                                finally:
                                    ptl_unlock(lo)
                                va0 = a + ((k0 - ((a >> PAGE_SHIFT) & 511)) << PAGE_SHIFT)
                                lo_va = va0 + (hot[0] << PAGE_SHIFT)
                                hi_va = va0 + ((hot[-1] + 1) << PAGE_SHIFT)
                                hit_lo = lo_va if hit_lo < 0 else min(hit_lo, lo_va)
                                hit_hi = max(hit_hi, hi_va)
                        a = nxt
                    if hit_lo >= 0:
                        ranges.append((hit_lo, hit_hi))
            finally:
                mmap_unlock(mo + T.M_MMAP_LOCK)
            for lo_va, hi_va in ranges:
                flush(mm_id, lo_va, hi_va)

        def set_refs(old: int) -> int:
            return lru_gen_set_refs(old)[0]

        def referenced_once(old: int) -> int:
            return (old & ~REFS_MASK & _ALL32) | PG_referenced

        def promote(nid: int, pfns: list[int], update: bool = True) -> int:
            """Young folios, under lru_lock.  update (folio_update_gen, aging): a folio
            neither referenced nor workingset only gets PG_referenced; the others move
            to max_seq with PG_workingset, LRU_REFS_FLAGS cleared.  Not update
            (folio_activate of look-around folios already given PG_workingset): moved to
            max_seq.  Returns the folios moved."""
            if not pfns:
                return 0
            moved = 0
            lock(nid)
            try:
                max_seq = q[(lv[nid] + L_MAX_SEQ) >> 3]
                gen = max_seq % MAX_NR_GENS
                for pfn in pfns:
                    fl = u32[PM4 + pfn * MW4]
                    if not fl & PG_lru or not fl & GEN_MASK or nid_of(pfn) != nid:
                        continue
                    if update and not fl & (PG_referenced | PG_workingset):
                        update_flags(pfn, referenced_once)
                        continue
                    old = set_gen(pfn, gen, LRU_REFS_FLAGS if update else 0, PG_workingset if update else 0)
                    if ((old & GEN_MASK) >> GEN_SHIFT) - 1 == gen:
                        continue
                    typ = 0 if fl & PG_swapbacked else 1
                    unlink(nid, pfn)
                    link(nid, _gen_list(gen, typ), pfn)
                    moved += 1
            finally:
                unlock(nid)
            return moved

        def wait_for_aging(nid: int, seen: int, sc: Any) -> bool:
            """Another CPU is aging the node: wait (answering IPIs: its walk flushes
            TLBs) until max_seq moves past `seen` or the walker lets go -- 6.1's
            wait_event_killable, bounded by AGING_WAIT_S.  True: max_seq moved."""
            v = lv[nid]
            deadline = time.monotonic() + AGING_WAIT_S
            while q[(v + L_MAX_SEQ) >> 3] == seen:
                if not q[(v + R.L_AGING) >> 3]:
                    break
                if time.monotonic() > deadline:
                    sc.aging_stalled = True           # a walker stuck this long: stop waiting
                    break
                handle_ipi()
                time.sleep(0.0002)
            return q[(v + L_MAX_SEQ) >> 3] != seen

        def try_to_inc_max_seq(nid: int, swappiness: int = -1, sc: Any = None) -> bool:
            """Age the node: walk every live mm, promote the young folios, inc_max_seq.
            Another CPU already aging it: False at once, or, for a reclaim pass `sc`
            at priority DEF_PRIORITY - 2 or below, whether it moved max_seq once it
            is done (wait_for_aging)."""
            v = lv[nid]
            if swappiness < 0:
                swappiness = swappiness_of(None)
            seen = q[(v + L_MAX_SEQ) >> 3]
            if cas64(v + R.L_AGING, 0, cpu + 1) != 0:  # another CPU is aging this node
                if sc is None or sc.priority > DEF_PRIORITY - 2 or sc.aging_stalled:
                    return False
                return wait_for_aging(nid, seen, sc)
            try:
                for mm_id in range(1, max_mms):
                    mo = mm_base + mm_id * mm_size
                    if q[(mo + T.M_STATE) >> 3] != T.MM_LIVE or not q[(mo + T.M_USERS) >> 3]:
                        continue
                    young: list[int] = []
                    walk_mm(mm_id, nid, young)
                    for k in range(0, len(young), MIN_LRU_BATCH):
                        promote(nid, young[k : k + MIN_LRU_BATCH])
                lock(nid)
                try:
                    inc_max_seq(nid, swappiness)
                finally:
                    unlock(nid)
            finally:
                at.store64(v + R.L_AGING, 0)
            return True

        # ------------------------------------------------------------ rmap feedback
        def test_and_clear_young(i: int, x: int) -> bool:
            """ptep_test_and_clear_young on PTE word i (x: its value as last read): CAS
            the accessed bit off; whether it was set."""
            while x & _PAGE_ACCESSED:
                seen = cas64(i << 3, x, x & ~_PAGE_ACCESSED)
                if seen == x:
                    return True
                x = seen
            return False

        def look_around(pfn: int) -> int:
            """folio_referenced() with lru_gen_look_around(): every young PTE of the folio
            is cleared; around each (same PTE table, inside the VMA, at most MIN_LRU_BATCH
            PTEs) the young PTEs of other folios of this node on an MGLRU list are cleared
            and lru_gen_set_refs applied -- those turning workingset go to `pending` for
            activation.  Returns the young PTEs of the folio itself."""
            n = [0]
            touched: dict[int, list[int]] = {}
            node = nid_of(pfn)

            def one(mm_id: int, vma: int, va: int, i: int, e: int) -> bool:
                if not test_and_clear_young(i, e):
                    return True
                n[0] += 1
                vas = touched.setdefault(mm_id, [])
                vas.append(va)
                if q[(vma + V.V_FLAGS) >> 3] & VM_SPECIAL_LOCKED:
                    return True
                start = max(va & ~(_PMD_SIZE - 1), q[(vma + V.V_START) >> 3])
                end = min(va | (_PMD_SIZE - 1), q[(vma + V.V_END) >> 3] - 1) + 1
                if end - start == PAGE_SIZE:
                    return True
                half = MIN_LRU_BATCH * PAGE_SIZE // 2
                if end - start > 2 * half:
                    if va - start < half:
                        end = start + 2 * half
                    elif end - va < half:
                        start = end - 2 * half
                    else:
                        start, end = va - half, va + half
                j0 = i - ((va - start) >> PAGE_SHIFT)
                for k in range((end - start) >> PAGE_SHIFT):
                    j = j0 + k
                    if j == i:
                        continue
                    x = q[j]
                    if x & _YOUNG != _YOUNG or x & _PAGE_SPECIAL:
                        continue
                    p = (x & PTE_PFN_MASK) >> PAGE_SHIFT
                    if p >= nr_pfns or nid_of(p) != node or not u32[PM4 + p * MW4] & GEN_MASK:
                        continue                          # get_pfn_folio
                    if not test_and_clear_young(j, x):
                        continue
                    vas.append(start + (k << PAGE_SHIFT))
                    old, _n = update_flags(p, set_refs)
                    if old & (PG_referenced | PG_workingset):
                        pending.append(p)                 # walk_update_folio -> folio_activate
                return True

            rmap_walk(pfn, one)
            for mm_id, vas in touched.items():
                flush(mm_id, min(vas), max(vas) + PAGE_SIZE)
            return n[0]

        def check_references(pfn: int, mapped: bool) -> int:
            """folio_check_references() under MGLRU: no young PTE -> reclaim; otherwise
            lru_gen_set_refs decides keep (first sighting: PG_referenced) or activate."""
            if not mapped or not look_around(pfn):
                return RECLAIMED
            old, _n = update_flags(pfn, set_refs)
            return ACTIVATE if old & (PG_referenced | PG_workingset) else KEEP

        def activate_pending() -> None:
            """The look-around's folio_activate batch: workingset folios to max_seq."""
            if not pending:
                return
            by_node: dict[int, list[int]] = {}
            for p in pending:
                by_node.setdefault(nid_of(p), []).append(p)
            pending.clear()
            for nid, pfns in by_node.items():
                promote(nid, pfns, False)

        def mark_accessed(pfn: int) -> None:
            """folio_mark_accessed() under MGLRU: lru_gen_inc_refs (an access through a
            file descriptor)."""
            update_flags(pfn, lru_gen_inc_refs)

        # ------------------------------------------------------------ eviction
        def get_type_to_scan(nid: int, swappiness: int) -> int:
            if swappiness <= MIN_SWAPPINESS + 1:
                return 1
            if swappiness >= MAX_SWAPPINESS:
                return 0
            sp = read_ctrl_pos(nid, 0, MAX_NR_TIERS, swappiness)
            pv = read_ctrl_pos(nid, 1, MAX_NR_TIERS, MAX_SWAPPINESS - swappiness)
            return 1 if positive_ctrl_err(sp, pv) else 0

        def get_tier_idx(nid: int, typ: int) -> int:
            """The last tier to evict: a tier refaulting more than tier 0 (gain 2:3, a
            margin for fluctuations) and the tiers above it are protected."""
            sp = read_ctrl_pos(nid, typ, 0, 2)
            tier = 1
            while tier < MAX_NR_TIERS:
                if not positive_ctrl_err(sp, read_ctrl_pos(nid, typ, tier, 3)):
                    break
                tier += 1
            return tier - 1

        def scan_folios(nid: int, typ: int, tier_idx: int, sc: Any = None) -> tuple[list[int], int, int]:
            """The oldest generation of typ from its tail (lru_lock held): sort_folio,
            else isolate_folio.  Returns (isolated, scanned or 0, sorted)."""
            got: list[int] = []
            v = lv[nid]
            max_seq = q[(v + L_MAX_SEQ) >> 3]
            mi = q[(v + L_MIN_SEQ + 8 * typ) >> 3]
            if max_seq - mi + 1 <= MIN_NR_GENS:
                return got, 0, 0
            gen, nxt = mi % MAX_NR_GENS, (mi + 1) % MAX_NR_GENS
            src, dst = _gen_list(gen, typ), _gen_list(nxt, typ)
            scanned = sorted_ = 0
            remaining = MAX_LRU_BATCH
            pfn = tail_of(nid, src)
            while pfn != NIL:
                prev = u32[PM4 + pfn * MW4 + 5]
                scanned += 1
                fl = u32[PM4 + pfn * MW4]
                refs = folio_lru_refs(fl)
                ws = 1 if fl & PG_workingset else 0
                tier = lru_tier_from_refs(refs, bool(ws))
                if fl & (PG_mlocked | PG_unevictable):
                    unlink(nid, pfn)
                    fetch_and32((PM4 + pfn * MW4) << 2, ~GEN_MASK & _ALL32)
                    link(nid, R.LRU_UNEVICTABLE, pfn)
                    q[ev + VE.UNEVICTABLE_PGS_CULLED] += 1
                    sorted_ += 1
                elif tier > tier_idx or refs + ws == _LAZY:
                    # protected (or the workingset lazily promoted): one generation up
                    unlink(nid, pfn)
                    set_gen(pfn, nxt, LRU_REFS_FLAGS)
                    link(nid, dst, pfn)
                    count_protected(nid, typ, fl)
                    sorted_ += 1
                elif fl & PG_writeback or (typ and fl & PG_dirty):
                    unlink(nid, pfn)                      # waiting for writeback
                    set_gen(pfn, nxt, LRU_REFS_FLAGS)
                    link(nid, dst, pfn)
                    sorted_ += 1
                elif isolate(nid, pfn):
                    if not fl & PG_referenced:
                        fetch_and32((PM4 + pfn * MW4) << 2, ~REFS_MASK & _ALL32)
                    got.append(pfn)
                    i64[ns + nid * NS + (VE.NR_ISOLATED_ANON if typ == 0 else VE.NR_ISOLATED_FILE)] += 1
                else:
                    unlink(nid, pfn)                      # raced with a free: skipped
                    link(nid, src, pfn)
                remaining -= 1
                if not remaining or len(got) >= MIN_LRU_BATCH:
                    break
                pfn = prev
            q[ev + VE.PGREFILL] += sorted_
            return got, (scanned if got or not remaining else 0), sorted_

        def evict_folios(nid: int, sc: ScanControl, swappiness: int) -> int:
            lock(nid)
            try:
                typ = get_type_to_scan(nid, swappiness)
                got: list[int] = []
                scanned = 0
                for _ in range(2):
                    if evictable(typ, swappiness):
                        got, scanned, _s = scan_folios(nid, typ, get_tier_idx(nid, typ), sc)
                        if scanned:
                            break
                    typ = 1 - typ
                scanned += try_to_inc_min_seq(nid, swappiness)
                if evictable_min_seq(nid, swappiness) + MIN_NR_GENS > q[(lv[nid] + L_MAX_SEQ) >> 3]:
                    scanned = 0
            finally:
                unlock(nid)
            if not got:
                return scanned
            sc.nr_scanned += len(got)
            q[ev + (VE.PGSCAN_KSWAPD if sc.kswapd else VE.PGSCAN_DIRECT)] += len(got)
            q[ev + (VE.PGSCAN_FILE if typ else VE.PGSCAN_ANON)] += len(got)
            scan.shrink_folio_list(got, sc)
            activate_pending()
            return scanned

        def should_run_aging(nid: int, swappiness: int) -> tuple[bool, int]:
            v = lv[nid]
            max_seq = q[(v + L_MAX_SEQ) >> 3]
            emin = evictable_min_seq(nid, swappiness)
            if emin + MIN_NR_GENS > max_seq:
                return True, 0
            size = 0
            for typ in (0, 1):
                if not evictable(typ, swappiness):
                    continue
                for seq in range(q[(v + L_MIN_SEQ + 8 * typ) >> 3], max_seq + 1):
                    size += count(nid, _gen_list(seq % MAX_NR_GENS, typ))
            return emin + MIN_NR_GENS == max_seq, size

        def get_nr_to_scan(nid: int, sc: ScanControl, swappiness: int) -> int:
            success, nr = should_run_aging(nid, swappiness)
            if not success or sc.priority == DEF_PRIORITY:
                return nr >> sc.priority
            # low on cold folios: age, and stop scanning this lruvec
            return -1 if try_to_inc_max_seq(nid, swappiness, sc) else 0

        def set_initial_priority(nid: int, sc: ScanControl) -> None:
            """(total >> priority) x reclaimed/scanned = nr_to_reclaim, clamped to
            [DEF_PRIORITY / 2, DEF_PRIORITY]."""
            if sc.priority != DEF_PRIORITY or sc.nr_to_reclaim < MIN_LRU_BATCH:
                return
            v = lv[nid]
            max_seq = q[(v + L_MAX_SEQ) >> 3]
            rec = 0
            for typ in (0, 1):
                if typ == 0 and not scan.can_swap():
                    continue
                for seq in range(q[(v + L_MIN_SEQ + 8 * typ) >> 3], max_seq - 1):
                    rec += count(nid, _gen_list(seq % MAX_NR_GENS, typ))   # the inactive ones
            prio = max(rec, 0).bit_length() - 1 - (sc.nr_to_reclaim - 1).bit_length()
            sc.priority = min(max(prio, DEF_PRIORITY // 2), DEF_PRIORITY)

        def shrink_lruvec(nid: int, sc: ScanControl) -> None:
            """lru_gen_shrink_node + try_to_shrink_lruvec for one node."""
            swappiness = swappiness_of(sc)
            set_initial_priority(nid, sc)
            scanned = 0
            for _ in range(MAX_LRU_BATCH):
                nr_to_scan = get_nr_to_scan(nid, sc, swappiness)
                if nr_to_scan <= 0:
                    break
                delta = evict_folios(nid, sc, swappiness)
                if not delta:
                    break
                scanned += delta
                if scanned >= nr_to_scan or sc.nr_reclaimed >= sc.nr_to_reclaim:
                    break

        self.place, self.check_references, self.shrink_lruvec = place, check_references, shrink_lruvec
        self.try_to_inc_max_seq, self.inc_min_seq, self.inc_max_seq = try_to_inc_max_seq, inc_min_seq, inc_max_seq
        self.get_type_to_scan, self.get_tier_idx, self.read_ctrl_pos = get_type_to_scan, get_tier_idx, read_ctrl_pos
        self.reset_ctrl_pos, self.positive_ctrl_err = reset_ctrl_pos, positive_ctrl_err
        self.walk_mm, self.promote, self.try_to_inc_min_seq = walk_mm, promote, try_to_inc_min_seq
        self.look_around, self.activate_pending, self.mark_accessed = look_around, activate_pending, mark_accessed
        self.evict_folios, self.scan_folios, self.seqs = evict_folios, scan_folios, seqs
        self.pending = pending
        _ = (flock, rops, fetch_add64, seqs)


def aging_cpu_dead(arena: Any, cpu: int) -> int:
    """A dead CPU's aging walks let go (crash takeover): each node's L_AGING word it
    holds (cpu + 1) is cleared, so the next reclaimer ages instead of waiting.  Returns
    how many nodes it was aging."""
    off = R.Off(arena)
    n = 0
    for nid in range(off.nr_nodes):
        if arena.atomic.cas64(off.lruvec(nid) + R.L_AGING, cpu + 1, 0) == cpu + 1:
            n += 1
    return n


def lru_gen_view(arena: Any, full: bool = False) -> str:
    """/sys/kernel/debug/lru_gen (full: lru_gen_full) in lru_gen_seq_show's format: per
    node, one line per generation -- seq, age in ms, anon and file pages (full: 'x'
    after a type's size when seq < its min_seq) -- and in the full view one line per
    tier: for max_seq the averages (R refaulted, T total), for a type's min_seq its
    current refaulted / evicted / protected (r e p)."""
    if "reclaim" not in arena.sections:
        return ""
    off = R.Off(arena)
    q = arena.u64
    now = time.monotonic_ns()
    lines = ["memcg     1 /"]
    for nid in range(off.nr_nodes):
        v = off.lruvec(nid)
        lines.append(f" node {nid:5d}")
        max_seq = q[(v + R.L_MAX_SEQ) >> 3]
        mins = [q[(v + R.L_MIN_SEQ) >> 3], q[(v + R.L_MIN_SEQ + 8) >> 3]]
        if not full:
            first = min(mins)
        else:
            first = max_seq - MAX_NR_GENS + 1 if max_seq >= MAX_NR_GENS else 0
        for seq in range(first, max_seq + 1):
            gen = seq % MAX_NR_GENS
            birth = q[(v + R.L_TIMESTAMPS + 8 * gen) >> 3]
            age = max(0, (now - birth) // 1_000_000)
            row = f" {seq:10d} {age:10d}"
            for typ in (0, 1):
                size = q[(v + R.L_LISTS + 16 * _gen_list(gen, typ) + 8) >> 3]
                row += f" {size:10d}" + ("x" if full and seq < mins[typ] else " ")
            lines.append(row)
            if not full:
                continue
            hist = seq % NR_HIST_GENS
            for tier in range(MAX_NR_TIERS):
                row = f"            {tier:10d}"
                for typ in (0, 1):
                    a, k = 8 * (typ * 4 + tier), 8 * (hist * 8 + typ * 4 + tier)
                    if seq == max_seq:
                        s, n = "RTx", (q[(v + R.L_AVG_REFAULTED + a) >> 3], q[(v + R.L_AVG_TOTAL + a) >> 3], 0)
                    elif seq == mins[typ] or NR_HIST_GENS > 1:
                        s, n = "rep", (q[(v + R.L_REFAULTED + k) >> 3], q[(v + R.L_EVICTED + k) >> 3],
                                       q[(v + R.L_PROTECTED + k) >> 3])
                    else:
                        s, n = "xxx", (0, 0, 0)
                    for x, c in zip(n, s):
                        row += f" {x:10d}{c}"
                lines.append(row)
    return "\n".join(lines) + "\n"
