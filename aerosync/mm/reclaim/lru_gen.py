"""The multi-generational LRU (MGLRU).

Models: mm/vmscan.c's CONFIG_LRU_GEN part and Documentation/mm/multigen_lru.rst:
generations max_seq (youngest) .. min_seq[type] (oldest), at most MAX_NR_GENS = 4 and at
least MIN_NR_GENS = 2 per type; lru_gen_folio_seq (where a folio is added); aging
(try_to_inc_max_seq: walk_mm over every mm's page tables clearing accessed bits and
promoting young folios to max_seq, then inc_max_seq, which first moves an oldest
generation forward when a type already has four); eviction (evict_folios: the type by
the refault PID controller -- get_type_to_scan / positive_ctrl_err with gains
swappiness : 200 - swappiness -- and the tiers to protect by get_tier_idx; the oldest
generation scanned from its tail, sort_folio moving protected, dirty or writeback folios
to the next generation, the rest isolated and reclaimed; an empty oldest generation
lets min_seq advance); the eviction-time rmap check of a folio (young PTEs promote it);
the refault statistics averaged when min_seq advances (reset_ctrl_pos); and the
/sys/kernel/debug/lru_gen view.  Unit: one node's lruvec.

Folios are on the list of their generation: a promotion relinks the folio under
lru_lock (Linux updates the flags first and sorts the list lazily; relinking keeps
"list == flags" exact, which the checker verifies).  Generation bits: flags bits 20-22
= gen + 1; refs (tier) bits 23-24.

Locks: aging walks an mm under mmap_lock taken with down_read_trylock (a busy mm is
skipped, as walk_mm does), each PTE table under its lock; promotions and generation
changes under lru_lock; L_AGING (CAS 0 -> 1) lets one CPU age a node at a time, as
Linux's mm_state seq.
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
    PG_referenced,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_workingset,
    PG_writeback,
)
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.swap import GEN_MASK, GEN_SHIFT, MAX_NR_GENS, REFS_MASK, REFS_SHIFT
from aerosync.mm.reclaim.vmscan import ACTIVATE, RECLAIMED, SWAP_CLUSTER_MAX, ScanControl
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.pgtable import _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_SPECIAL, PTE_PFN_MASK
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["LruGen", "MIN_NR_GENS", "lru_gen_view"]

MIN_NR_GENS = 2
MIN_LRU_BATCH = 64
NIL = 0xFFFF_FFFF
_ALL32 = 0xFFFF_FFFF
_YOUNG = _PAGE_PRESENT | _PAGE_ACCESSED


def _gen_list(gen: int, typ: int) -> int:
    return R.MG_LIST0 + gen * 2 + typ


class LruGen:
    """One CPU's MGLRU (closures): place(nid, pfn, flags) -> list id (lru_lock held),
    check_references(pfn, mapped), shrink_lruvec(nid, sc), try_to_inc_max_seq(nid),
    inc_min_seq(nid, typ)."""

    def __init__(self, vm: Any, lru: Any, rops: Any, scan: Any, flock: Any) -> None:
        arena, cpu = vm.arena, vm.cpu
        q, u32, at = arena.u64, arena.u32, arena.atomic
        cas32, cas64, fetch_and32 = at.cas32, at.cas64, at.fetch_and32
        PM4 = arena.off("pagemeta") >> 2
        MW4 = PAGE_META_SIZE >> 2
        P8 = arena.off("physmem") >> 3
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
        from aerosync.mm.vm import vma as V

        def seqs(nid: int) -> tuple[int, int, int]:
            v = lv[nid]
            return q[(v + R.L_MAX_SEQ) >> 3], q[(v + R.L_MIN_SEQ) >> 3], q[(v + R.L_MIN_SEQ + 8) >> 3]

        def set_gen(pfn: int, gen: int, clear: int = 0) -> None:
            r = (PM4 + pfn * MW4) << 2
            old = u32[r >> 2]
            while True:
                new = (old & ~(GEN_MASK | clear) & _ALL32) | ((gen + 1) << GEN_SHIFT)
                seen = cas32(r, old, new)
                if seen == old:
                    return
                old = seen

        # ------------------------------------------------------------ adding (lru_lock held)
        L_MAX_SEQ, L_MIN_SEQ, MG_LIST0 = R.L_MAX_SEQ, R.L_MIN_SEQ, R.MG_LIST0
        keep_gen = ~(GEN_MASK | PG_active) & _ALL32

        def place(nid: int, pfn: int, fl: int) -> int:
            """lru_gen_add_folio()'s generation choice; the folio's gen bits are set here
            (set_gen inlined, constants bound: ~145 -> ~95 bytecodes a new folio)."""
            if fl & (PG_mlocked | PG_unevictable):
                fetch_and32((PM4 + pfn * MW4) << 2, keep_gen)
                return R.LRU_UNEVICTABLE
            typ = 0 if fl & PG_swapbacked else 1
            v = lv[nid]
            max_seq = q[(v + L_MAX_SEQ) >> 3]
            min_seq = q[(v + L_MIN_SEQ + 8 * typ) >> 3]
            ws = 1 if fl & PG_workingset else 0
            if fl & PG_active:
                g = MIN_NR_GENS - ws
            elif scan.reclaiming:
                g = MAX_NR_GENS
            elif (typ == 0 and not fl & PG_swapcache) or (fl & (PG_dirty | PG_writeback) and scan.reclaiming):
                g = MIN_NR_GENS
            else:
                g = MAX_NR_GENS - ws
            seq = max_seq - g + 1
            if seq < min_seq:
                seq = min_seq
            gen = seq % MAX_NR_GENS
            r = (PM4 + pfn * MW4) << 2                     # set_gen(pfn, gen, PG_active)
            old = fl
            while True:
                seen = cas32(r, old, (old & keep_gen) | ((gen + 1) << GEN_SHIFT))
                if seen == old:
                    return MG_LIST0 + gen * 2 + typ
                old = seen

        # ------------------------------------------------------------ generations (lru_lock held)
        def move_list(nid: int, src_gen: int, dst_gen: int, typ: int) -> int:
            """All folios of one generation list into another (inc_min_seq's folio_inc_gen)."""
            n = 0
            src = _gen_list(src_gen, typ)
            pfn = tail_of(nid, src)
            while pfn != NIL:
                prev = u32[PM4 + pfn * MW4 + 5]
                unlink(nid, pfn)
                set_gen(pfn, dst_gen)
                link(nid, _gen_list(dst_gen, typ), pfn)
                pfn = prev
                n += 1
            return n

        def reset_ctrl_pos(nid: int, typ: int, old_min: int) -> None:
            """The refault history of the generation leaving folds into the averages."""
            v = lv[nid]
            hist = old_min % 2
            for tier in range(4):
                k = hist * 8 + typ * 4 + tier
                ar = (v + R.L_AVG_REFAULTED + 8 * (typ * 4 + tier)) >> 3
                av = (v + R.L_AVG_TOTAL + 8 * (typ * 4 + tier)) >> 3
                rf = q[(v + R.L_REFAULTED + 8 * k) >> 3]
                tot = q[(v + R.L_EVICTED + 8 * k) >> 3] + q[(v + R.L_PROTECTED + 8 * k) >> 3]
                q[ar] = (q[ar] + rf) // 2
                q[av] = (q[av] + tot) // 2
                nk = ((old_min + 1) % 2) * 8 + typ * 4 + tier
                for f in (R.L_REFAULTED, R.L_EVICTED, R.L_PROTECTED):
                    q[(v + f + 8 * nk) >> 3] = 0

        def inc_min_seq(nid: int, typ: int) -> None:
            v = lv[nid]
            mi = q[(v + R.L_MIN_SEQ + 8 * typ) >> 3]
            move_list(nid, mi % MAX_NR_GENS, (mi + 1) % MAX_NR_GENS, typ)
            reset_ctrl_pos(nid, typ, mi)
            q[(v + R.L_MIN_SEQ + 8 * typ) >> 3] = mi + 1

        def try_to_inc_min_seq(nid: int) -> bool:
            """Advance min_seq of each type past empty oldest generations (keeping at
            least MIN_NR_GENS)."""
            v = lv[nid]
            moved = False
            max_seq = q[(v + R.L_MAX_SEQ) >> 3]
            for typ in (0, 1):
                while True:
                    mi = q[(v + R.L_MIN_SEQ + 8 * typ) >> 3]
                    if mi + MIN_NR_GENS > max_seq or count(nid, _gen_list(mi % MAX_NR_GENS, typ)):
                        break
                    reset_ctrl_pos(nid, typ, mi)
                    q[(v + R.L_MIN_SEQ + 8 * typ) >> 3] = mi + 1
                    moved = True
            return moved

        def inc_max_seq(nid: int) -> None:
            v = lv[nid]
            max_seq = q[(v + R.L_MAX_SEQ) >> 3]
            for typ in (0, 1):
                if max_seq - q[(v + R.L_MIN_SEQ + 8 * typ) >> 3] + 1 >= MAX_NR_GENS:
                    inc_min_seq(nid, typ)
            # the generation max_seq - 1 turns inactive for the /proc/vmstat view
            g = (max_seq - 1) % MAX_NR_GENS
            for typ in (0, 1):
                n = count(nid, _gen_list(g, typ))
                if n:
                    i64[ns + nid * NS + VE.NR_INACTIVE_ANON + 2 * typ + 1] -= n
                    i64[ns + nid * NS + VE.NR_INACTIVE_ANON + 2 * typ] += n
            q[(v + R.L_TIMESTAMPS + 8 * ((max_seq + 1) % MAX_NR_GENS)) >> 3] = time.monotonic_ns()
            q[(v + R.L_MAX_SEQ) >> 3] = max_seq + 1

        # ------------------------------------------------------------ aging
        def walk_mm(mm_id: int, nid: int, young: list[int]) -> None:
            """Page-table walk of one mm: accessed PTEs are cleared and their folios (of
            node nid) collected for promotion; the walked ranges are flushed."""
            mo = mm_base + mm_id * mm_size
            if not mmap_trylock(mo + T.M_MMAP_LOCK):
                return
            ranges = []
            try:
                root = q[(mo + T.M_PGD) >> 3]
                for _f, _l, vma in vmas_tree(mm_id).mt_for_each():
                    s, e = q[(vma + V.V_START) >> 3], q[(vma + V.V_END) >> 3]
                    hit_lo, hit_hi = -1, 0
                    a = s
                    while a < e:
                        nxt = min(e, (a | ((1 << 21) - 1)) + 1)
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
                                                if nid_of(pfn) == nid:
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

        def promote(nid: int, pfns: list[int]) -> None:
            """Young folios to the youngest generation (folio_update_gen), under lru_lock."""
            if not pfns:
                return
            lock(nid)
            try:
                max_seq = q[(lv[nid] + R.L_MAX_SEQ) >> 3]
                gen = max_seq % MAX_NR_GENS
                for pfn in pfns:
                    fl = u32[PM4 + pfn * MW4]
                    if not fl & PG_lru or not fl & GEN_MASK:
                        continue
                    typ = 0 if fl & PG_swapbacked else 1
                    if ((fl & GEN_MASK) >> GEN_SHIFT) - 1 == gen:
                        continue
                    unlink(nid, pfn)
                    set_gen(pfn, gen)
                    link(nid, _gen_list(gen, typ), pfn)
            finally:
                unlock(nid)

        def try_to_inc_max_seq(nid: int) -> bool:
            v = lv[nid]
            if cas64(v + R.L_AGING, 0, 1) != 0:
                return False                          # another CPU is aging this node
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
                    inc_max_seq(nid)
                finally:
                    unlock(nid)
            finally:
                at.store64(v + R.L_AGING, 0)
            return True

        # ------------------------------------------------------------ eviction
        def ctrl_pos(nid: int, typ: int, tier: int, gain: int) -> tuple[int, int, int]:
            v = lv[nid]
            hist = q[(v + R.L_MIN_SEQ + 8 * typ) >> 3] % 2
            k = hist * 8 + typ * 4 + tier
            refaulted = q[(v + R.L_AVG_REFAULTED + 8 * (typ * 4 + tier)) >> 3] + q[(v + R.L_REFAULTED + 8 * k) >> 3]
            total = (q[(v + R.L_AVG_TOTAL + 8 * (typ * 4 + tier)) >> 3] + q[(v + R.L_EVICTED + 8 * k) >> 3]
                     + q[(v + R.L_PROTECTED + 8 * k) >> 3])
            return refaulted, total, gain

        def positive_ctrl_err(sp: tuple[int, int, int], pv: tuple[int, int, int]) -> bool:
            """PV (the process variable) is not worse than SP (the set point)."""
            return pv[0] < MIN_LRU_BATCH or pv[0] * (sp[1] + MIN_LRU_BATCH) * sp[2] <= (sp[0] + 1) * pv[1] * pv[2]

        def get_type_to_scan(nid: int, swappiness: int) -> int:
            if not swappiness:
                return 1
            if swappiness >= 200:
                return 0
            sp = ctrl_pos(nid, 0, 0, swappiness)
            pv = ctrl_pos(nid, 1, 0, 200 - swappiness)
            return 1 if positive_ctrl_err(sp, pv) else 0

        def get_tier_idx(nid: int, typ: int) -> int:
            """The last tier to evict: tiers refaulting more than tier 0 (gain 2:3) are
            protected."""
            sp = ctrl_pos(nid, typ, 0, 2)
            for tier in range(1, 4):
                pv = ctrl_pos(nid, typ, tier, 3)
                if not positive_ctrl_err(sp, pv):
                    return tier - 1
            return 3

        def scan_folios(nid: int, typ: int, tier_max: int, nr: int, sc: ScanControl) -> tuple[list[int], int]:
            """isolate_folios from the oldest generation of typ: (isolated, scanned)."""
            got: list[int] = []
            scanned = 0
            v = lv[nid]
            lock(nid)
            try:
                max_seq = q[(v + R.L_MAX_SEQ) >> 3]
                mi = q[(v + R.L_MIN_SEQ + 8 * typ) >> 3]
                gen = mi % MAX_NR_GENS
                nxt_gen = (mi + 1) % MAX_NR_GENS
                src = _gen_list(gen, typ)
                pfn = tail_of(nid, src)
                hist = mi % 2
                while pfn != NIL and scanned < nr * 4 and len(got) < nr:
                    prev = u32[PM4 + pfn * MW4 + 5]
                    scanned += 1
                    fl = u32[PM4 + pfn * MW4]
                    refs = ((fl & REFS_MASK) >> REFS_SHIFT) + (1 if fl & PG_referenced else 0)
                    tier = 3 if fl & PG_workingset else min(3, refs.bit_length())
                    if fl & (PG_mlocked | PG_unevictable):
                        unlink(nid, pfn)
                        fetch_and32((PM4 + pfn * MW4) << 2, ~GEN_MASK & _ALL32)
                        link(nid, R.LRU_UNEVICTABLE, pfn)
                    elif tier > tier_max and mi + 1 < max_seq:
                        # protected: one generation younger, its tier counted
                        unlink(nid, pfn)
                        set_gen(pfn, nxt_gen)
                        link(nid, _gen_list(nxt_gen, typ), pfn)
                        q[(v + R.L_PROTECTED + 8 * (hist * 8 + typ * 4 + tier)) >> 3] += 1
                    elif (fl & PG_writeback or (typ and fl & PG_dirty)) and mi + 1 < max_seq:
                        unlink(nid, pfn)
                        set_gen(pfn, nxt_gen)
                        link(nid, _gen_list(nxt_gen, typ), pfn)
                    elif isolate(nid, pfn):
                        got.append(pfn)
                        i64[ns + nid * NS + (VE.NR_ISOLATED_ANON if typ == 0 else VE.NR_ISOLATED_FILE)] += 1
                    pfn = prev
                try_to_inc_min_seq(nid)
            finally:
                unlock(nid)
            return got, scanned

        def check_references(pfn: int, mapped: bool) -> int:
            """Eviction-time check: a young PTE (found through rmap) promotes the folio."""
            if mapped and rops.referenced(pfn):
                return ACTIVATE
            return RECLAIMED

        def should_age(nid: int, typ: int) -> bool:
            max_seq, m0, m1 = seqs(nid)
            mi = m1 if typ else m0
            return mi + MIN_NR_GENS >= max_seq

        def shrink_lruvec(nid: int, sc: ScanControl) -> None:
            swappiness = scan.swappiness() if scan.can_swap() and sc.may_swap else 0
            target = sc.nr_to_reclaim
            tries = 0
            while sc.nr_reclaimed < target and tries < 8:
                tries += 1
                typ = get_type_to_scan(nid, swappiness)
                # nothing to evict of that type: the other one (if allowed)
                sizes = [sum(count(nid, _gen_list(g, t)) for g in range(MAX_NR_GENS)) for t in (0, 1)]
                if not sizes[typ] and swappiness and sizes[1 - typ]:
                    typ = 1 - typ
                if not sizes[typ]:
                    return
                if should_age(nid, typ):
                    try_to_inc_max_seq(nid)
                tier = get_tier_idx(nid, typ)
                nr = min(SWAP_CLUSTER_MAX, max(1, target - sc.nr_reclaimed))
                got, scanned = scan_folios(nid, typ, tier, nr, sc)
                sc.nr_scanned += scanned
                if got:
                    q[ev + (VE.PGSCAN_KSWAPD if sc.kswapd else VE.PGSCAN_DIRECT)] += len(got)
                    q[ev + (VE.PGSCAN_FILE if typ else VE.PGSCAN_ANON)] += len(got)
                    scan.shrink_folio_list(got, sc)
                elif not scanned:
                    try_to_inc_max_seq(nid)

        self.place, self.check_references, self.shrink_lruvec = place, check_references, shrink_lruvec
        self.try_to_inc_max_seq, self.inc_min_seq, self.inc_max_seq = try_to_inc_max_seq, inc_min_seq, inc_max_seq
        self.get_type_to_scan, self.get_tier_idx = get_type_to_scan, get_tier_idx
        self.positive_ctrl_err = positive_ctrl_err
        self.walk_mm, self.promote, self.try_to_inc_min_seq = walk_mm, promote, try_to_inc_min_seq
        _ = (PAGE_SIZE,)


def lru_gen_view(arena: Any) -> str:
    """/sys/kernel/debug/lru_gen (read): per node, one line per generation from min_seq to
    max_seq: seq, age in ms, anon pages, file pages."""
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
        min_seq = min(q[(v + R.L_MIN_SEQ) >> 3], q[(v + R.L_MIN_SEQ + 8) >> 3])
        for seq in range(min_seq, max_seq + 1):
            gen = seq % MAX_NR_GENS
            birth = q[(v + R.L_TIMESTAMPS + 8 * gen) >> 3]
            age = max(0, (now - birth) // 1_000_000)
            sizes = []
            for typ in (0, 1):
                if seq < q[(v + R.L_MIN_SEQ + 8 * typ) >> 3]:
                    sizes.append("-")
                else:
                    li = R.L_LISTS + 16 * _gen_list(gen, typ)
                    sizes.append(str(q[(v + li + 8) >> 3]))
            lines.append(f" {seq:10d} {age:10d} {sizes[0]:>10} {sizes[1]:>10} ")
    return "\n".join(lines) + "\n"
