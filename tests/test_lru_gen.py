"""MGLRU against Linux 6.19's rules: the access bits and tiers of a folio against a small
model, lru_gen_folio_seq's placement table, the shadow token's arithmetic, the PID
controller's protection decisions (and sort_folio acting on them), the look-around
promoting young neighbours, refault accounting per tier -- and the reclaim invariants
after each arena test."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import (
    PG_active,
    PG_dirty,
    PG_lru,
    PG_reclaim,
    PG_referenced,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_workingset,
    PG_writeback,
)
from aerosync.mm.pmm.page_alloc import AllocFailureWarning
from aerosync.mm.pmm.vm_event import fold_node_stats, fold_vm_events
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.check import reclaim_check
from aerosync.mm.reclaim.lru_gen import (
    MIN_LRU_BATCH,
    MIN_NR_GENS,
    lru_gen_folio_seq,
    lru_gen_view,
    positive_ctrl_err,
)
from aerosync.mm.reclaim.swap import (
    GEN_MASK,
    GEN_SHIFT,
    LRU_REFS_FLAGS,
    MAX_NR_GENS,
    REFS_MASK,
    REFS_SHIFT,
    folio_lru_refs,
    lru_gen_clear_refs,
    lru_gen_inc_refs,
    lru_gen_set_refs,
    lru_tier_from_refs,
)
from aerosync.mm.reclaim.workingset import (
    TOKEN_MASK,
    lru_gen_test_recent,
    lru_gen_token,
    pack_shadow,
    token_refs,
    unpack_shadow,
)
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.pgtable import _PAGE_ACCESSED, PTE_PFN_MASK
from aerosync.mm.vm.vm import VM

RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
PG = 4096
_OTHER = 0xFFFF_FFFF & ~(LRU_REFS_FLAGS | PG_workingset | PG_unevictable | GEN_MASK)


# ---------------------------------------------------------------- access bits and tiers
class FolioModel:
    """What the 6.14+ comment on LRU_REFS_FLAGS says, kept as plain fields: referenced,
    extra accesses counted beyond it (0..3), workingset."""

    def __init__(self) -> None:
        self.referenced, self.extra, self.ws = False, 0, False

    def fd_access(self) -> None:
        if not self.referenced:
            self.referenced, self.extra = True, 0
        elif self.extra == 3:
            self.ws = True
        else:
            self.extra += 1

    def young_pte(self) -> bool:
        if not self.referenced and not self.ws:
            self.referenced, self.extra = True, 0
            return False
        self.referenced, self.extra, self.ws = False, 0, True
        return True

    def inc_gen(self) -> None:
        self.referenced, self.extra = False, 0

    def clear(self) -> None:
        self.referenced, self.extra, self.ws = False, 0, False

    def refs(self) -> int:
        return self.extra + 1 if self.referenced else 0

    def tier(self) -> int:
        if self.ws:
            return 3
        return {0: 0, 1: 0, 2: 1, 3: 2, 4: 2}[self.refs()]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF_FFFF), st.lists(st.sampled_from(["fd", "pte", "inc_gen", "clear"]), max_size=40))
def test_access_bits_and_tiers_against_model(other: int, ops: list[str]) -> None:
    fl = other & _OTHER
    m = FolioModel()
    for op in ops:
        if op == "fd":
            fl = lru_gen_inc_refs(fl)
            m.fd_access()
        elif op == "pte":
            fl, activate = lru_gen_set_refs(fl)
            assert activate == m.young_pte()
        elif op == "inc_gen":
            fl &= ~LRU_REFS_FLAGS                     # folio_inc_gen
            m.inc_gen()
        else:
            fl = lru_gen_clear_refs(fl)
            m.clear()
        assert folio_lru_refs(fl) == m.refs()
        assert bool(fl & PG_workingset) == m.ws
        assert lru_tier_from_refs(folio_lru_refs(fl), bool(fl & PG_workingset)) == m.tier()
        assert fl & _OTHER == other & _OTHER                # no other bit touched


def test_tiers_climb_with_fd_accesses() -> None:
    fl, tiers = 0, []
    for _ in range(7):
        tiers.append(lru_tier_from_refs(folio_lru_refs(fl), bool(fl & PG_workingset)))
        fl = lru_gen_inc_refs(fl)
    assert tiers == [0, 0, 1, 2, 2, 3, 3]           # N accesses -> order_base_2(N), then PG_workingset
    assert lru_gen_inc_refs(PG_unevictable) == PG_unevictable


@pytest.mark.parametrize("fl, want", [
    (PG_active, 9),                                        # max_seq - 1
    (PG_active | PG_workingset, 10),                       # max_seq
    (PG_swapbacked, 9),                                    # a new anonymous folio
    (PG_swapbacked | PG_swapcache, 7),                     # MAX_NR_GENS from the top
    (PG_swapbacked | PG_swapcache | PG_workingset, 8),
    (0, 7),                                                # a file folio
    (PG_workingset, 8),
    (PG_reclaim | PG_dirty, 9),                            # written back soon
    (PG_reclaim | PG_writeback, 9),
])
def test_lru_gen_folio_seq_table(fl: int, want: int) -> None:
    assert lru_gen_folio_seq(fl, 10, 0) == want
    assert lru_gen_folio_seq(fl, 10, 9) == max(want, 9)   # never below min_seq
    if not fl & PG_active:                                 # a rotation to the tail: the oldest
        assert lru_gen_folio_seq(fl, 10, 0, reclaiming=True) == 10 - MAX_NR_GENS + 1


# ---------------------------------------------------------------- shadow token
@settings(max_examples=300, deadline=None)
@given(st.integers(0, (1 << 52) - 16), st.integers(0, 4), st.integers(-6, 6), st.booleans(), st.integers(0, 63))
def test_shadow_token_arithmetic(min_seq: int, refs: int, later: int, ws: bool, nid: int) -> None:
    token = lru_gen_token(min_seq, refs)
    assert token & ~TOKEN_MASK == 0
    assert token_refs(token) == max(refs, 1)              # refs 0 and 1 are both tier 0
    assert lru_tier_from_refs(token_refs(token), False) == lru_tier_from_refs(refs, False)
    e = pack_shadow(token, nid, ws)
    assert unpack_shadow(e) == (token, nid, ws)
    max_seq = min_seq + MIN_NR_GENS + later
    if max_seq >= 0:
        assert lru_gen_test_recent(max_seq, token) == (abs(max_seq - min_seq) < MAX_NR_GENS)


def test_shadow_token_wraps() -> None:
    width = TOKEN_MASK.bit_length() - 2
    top = (1 << width) - 1
    assert lru_gen_test_recent(top + 2, lru_gen_token(top, 1)) is False   # truncated: far apart
    assert lru_gen_test_recent(top, lru_gen_token(top - 3, 4)) is True


# ---------------------------------------------------------------- PID controller (pure)
def test_positive_ctrl_err_decisions() -> None:
    sp = (10, 1000, 2)                                    # tier 0: 1 % refaulted
    assert positive_ctrl_err(sp, (MIN_LRU_BATCH - 1, 64, 3))   # too few refaults to act on
    assert not positive_ctrl_err(sp, (100, 200, 3))            # 50 %: protect
    assert positive_ctrl_err(sp, (64, 100_000, 3))             # 0.06 %: no
    # the 2:3 gains: equal rates stay positive, 1.5x the SP's rate is the edge
    assert positive_ctrl_err((100, 1000 - MIN_LRU_BATCH, 2), (101, 1010, 3))
    assert not positive_ctrl_err((100, 1000 - MIN_LRU_BATCH, 2), (200, 1000, 3))


# ---------------------------------------------------------------- arena tests

def _done(a, cpu: VM) -> None:
    cpu.reclaim.lru.lru_add_drain()
    assert reclaim_check(a, cpu) == []
    if cpu.current_task() >= 0:
        cpu.exit()
    cpu.leave()
    assert reclaim_check(a, None) == []


def _ptes(cpu: VM, addr: int, n: int) -> list[tuple[int, int]]:
    """(pte word index, pfn) of each page."""
    q = cpu.arena.u64
    root = q[(T.mm_off(cpu.arena, cpu.current_mm()) + T.M_PGD) >> 3]
    P8 = cpu.arena.off("physmem") >> 3
    out = []
    for k in range(n):
        va = addr + k * PG
        i = P8 + (cpu.pt.walk(root, va) << 9) + ((va >> 12) & 511)
        out.append((i, (q[i] & PTE_PFN_MASK) >> 12))
    return out


def _flags(a, pfn: int) -> int:
    return a.u32[(a.off("pagemeta") + pfn * 64) >> 2]


def _gen(a, pfn: int) -> int:
    return ((_flags(a, pfn) & GEN_MASK) >> GEN_SHIFT) - 1


def test_look_around_promotes_young_neighbours(rm) -> None:
    a, cpu = rm()
    rec, q = cpu.reclaim, a.u64
    n = 160
    addr = cpu.mmap(0, n * PG, RW, ANON)
    for k in range(n):
        cpu.store64(addr + k * PG, k)
    rec.lru.lru_add_drain()
    ptes = _ptes(cpu, addr, n)
    me = 100
    lv = rec.off.lruvec(0)
    assert rec.gen.look_around(ptes[me][1]) == 1           # its own young PTE
    window = range(me - MIN_LRU_BATCH // 2, me + MIN_LRU_BATCH // 2)
    for k, (i, pfn) in enumerate(ptes):
        young = bool(q[i] & _PAGE_ACCESSED)
        assert young == (k not in window), k               # only the window around it is scanned
        if k in window and k != me:                        # first sighting: PG_referenced only
            assert _flags(a, pfn) & (PG_referenced | PG_workingset) == PG_referenced
    assert rec.gen.pending == []
    for k in window:                                       # touched again
        cpu.load64(addr + k * PG)
    cpu.tlb.flush_all_local()
    gen_before = {pfn: _gen(a, pfn) for _i, pfn in ptes}
    assert rec.gen.look_around(ptes[me][1]) == 1
    assert sorted(rec.gen.pending) == sorted(ptes[k][1] for k in window if k != me)
    rec.gen.activate_pending()
    youngest = q[(lv + R.L_MAX_SEQ) >> 3] % MAX_NR_GENS
    for k, (_i, pfn) in enumerate(ptes):
        fl = _flags(a, pfn)
        if k in window and k != me:                        # second sighting: workingset, promoted
            assert fl & PG_workingset and not fl & LRU_REFS_FLAGS and _gen(a, pfn) == youngest
        else:
            assert _gen(a, pfn) == gen_before[pfn]
    assert reclaim_check(a, cpu) == []
    cpu.munmap(addr, n * PG)
    _done(a, cpu)


def test_aging_promotes_on_second_sighting_and_counts_protected(rm) -> None:
    a, cpu = rm(swap_mb=0)
    rec, q = cpu.reclaim, a.u64
    addr = cpu.mmap(0, 8 * PG, RW, ANON)
    for k in range(8):
        cpu.store64(addr + k * PG, k)
    rec.lru.lru_add_drain()
    lv = rec.off.lruvec(0)
    pfns = [p for _i, p in _ptes(cpu, addr, 8)]
    seq0 = q[(lv + R.L_MAX_SEQ) >> 3] - 1
    assert {_gen(a, p) for p in pfns} == {seq0 % MAX_NR_GENS}
    rec.gen.try_to_inc_max_seq(0)                          # young: PG_referenced, no move
    assert {_gen(a, p) for p in pfns} == {seq0 % MAX_NR_GENS}
    assert all(_flags(a, p) & PG_referenced for p in pfns)
    cpu.load64(addr)                                       # page 0 touched again
    cpu.tlb.flush_all_local()
    rec.gen.try_to_inc_max_seq(0)
    max_seq = q[(lv + R.L_MAX_SEQ) >> 3]
    assert _gen(a, pfns[0]) == (max_seq - 1) % MAX_NR_GENS and _flags(a, pfns[0]) & PG_workingset
    # two more generations: the rest (referenced) leave the oldest one through
    # inc_min_seq (folio_inc_gen clears PG_referenced), counted protected in tier 0
    rec.gen.try_to_inc_max_seq(0)
    rec.gen.try_to_inc_max_seq(0)
    assert q[(lv + R.L_MIN_SEQ) >> 3] > seq0
    assert all(not _flags(a, p) & LRU_REFS_FLAGS for p in pfns[1:])
    assert reclaim_check(a, cpu) == []
    cpu.munmap(addr, 8 * PG)
    _done(a, cpu)


def _set_ctrl(a, lv: int, typ: int, tier: int, refaulted: int, total: int) -> None:
    a.u64[(lv + R.L_AVG_REFAULTED + 8 * (typ * 4 + tier)) >> 3] = refaulted
    a.u64[(lv + R.L_AVG_TOTAL + 8 * (typ * 4 + tier)) >> 3] = total


def test_pid_controller_protects_refaulting_tier_in_sort_folio(rm) -> None:
    a, cpu = rm()
    rec, q = cpu.reclaim, a.u64
    gen = rec.gen
    addr = cpu.mmap(0, 8 * PG, RW, ANON)
    for k in range(8):
        cpu.store64(addr + k * PG, k)
    rec.lru.lru_add_drain()
    lv = rec.off.lruvec(0)
    pfns = [p for _i, p in _ptes(cpu, addr, 8)]
    rec.lru.lock(0)
    try:
        gen.inc_max_seq(0)
        gen.inc_max_seq(0)                                 # the folios' generation is the oldest now
    finally:
        rec.lru.unlock(0)
    mi = q[(lv + R.L_MIN_SEQ) >> 3]
    assert {_gen(a, p) for p in pfns} == {mi % MAX_NR_GENS}
    for p in pfns[:4]:
        a.atomic.fetch_or32((a.off("pagemeta") + p * 64), PG_workingset)
    for t in range(4):
        _set_ctrl(a, lv, 0, t, 0, 0)
    assert gen.get_tier_idx(0, 0) == 3                     # no refaults: nothing protected
    _set_ctrl(a, lv, 0, 0, 10, 1000)
    _set_ctrl(a, lv, 0, 3, 63, 100)
    assert gen.get_tier_idx(0, 0) == 3                     # below MIN_LRU_BATCH refaults
    _set_ctrl(a, lv, 0, 3, 100, 200)
    assert gen.get_tier_idx(0, 0) == 2                     # the workingset tier is protected
    _set_ctrl(a, lv, 0, 0, 100, 1000)
    _set_ctrl(a, lv, 0, 3, 130, 1000)
    assert gen.get_tier_idx(0, 0) == 3                     # 1.3x tier 0's rate: inside the 2:3 margin
    _set_ctrl(a, lv, 0, 3, 160, 1000)
    assert gen.get_tier_idx(0, 0) == 2
    _set_ctrl(a, lv, 0, 0, 10, 1000)
    _set_ctrl(a, lv, 0, 3, 100, 200)
    # get_type_to_scan: all tiers of anon (SP, gain swappiness) against file's (PV)
    _set_ctrl(a, lv, 1, 0, 500, 600)
    assert gen.get_type_to_scan(0, 60) == 0                # file refaults far more: anon
    assert gen.get_type_to_scan(0, 1) == 1 and gen.get_type_to_scan(0, 200) == 0
    nsb = VE.node_stat_base(a, 0)
    rec.lru.lock(0)
    try:
        got, scanned, sorted_ = gen.scan_folios(0, 0, 2, None)
    finally:
        rec.lru.unlock(0)
    assert sorted(got) == sorted(pfns[4:]) and sorted_ == 4 and scanned == 8
    for p in pfns[:4]:                                     # one generation up, refs cleared
        assert _gen(a, p) == (mi + 1) % MAX_NR_GENS and _flags(a, p) & PG_lru
    assert q[(lv + R.L_PROTECTED + 8 * 3) >> 3] == 4       # protected[0][anon][tier 3]
    for p in got:
        a.i64[nsb + VE.NR_ISOLATED_ANON] -= 1
        rec.lru.putback(p)
    assert reclaim_check(a, cpu) == []
    view = lru_gen_view(a, True)
    assert " node     0" in view and "R" in view and "p" in view
    cpu.munmap(addr, 8 * PG)
    _done(a, cpu)


def test_refault_accounting_per_tier(rm) -> None:
    a, cpu = rm()
    rec, q = cpu.reclaim, a.u64
    ws_ = rec.ws
    lv = rec.off.lruvec(0)
    pfn = cpu.mm.alloc_pages(0, 0)
    r = (a.off("pagemeta") + pfn * 64) >> 2
    try:
        for refs_bits, referenced, workingset, tier in [(0, False, False, 0), (0, True, False, 0),
                                                        (1, True, False, 1), (3, True, False, 2),
                                                        (3, True, True, 3), (0, False, True, 3)]:
            fl = PG_swapbacked | (refs_bits << REFS_SHIFT) | (PG_referenced if referenced else 0)
            fl |= PG_workingset if workingset else 0
            a.u32[r] = fl
            ev0 = q[(lv + R.L_EVICTED + 8 * tier) >> 3]
            rf0 = q[(lv + R.L_REFAULTED + 8 * tier) >> 3]
            shadow = ws_.eviction(pfn)
            assert q[(lv + R.L_EVICTED + 8 * tier) >> 3] == ev0 + 1
            token, nid, ws_bit = unpack_shadow(shadow)
            refs = refs_bits + 1 if referenced else 0
            assert nid == 0 and ws_bit == workingset
            assert token == (q[(lv + R.L_MIN_SEQ) >> 3] << 2) | max(refs - 1, 0)
            a.u32[r] = PG_swapbacked
            assert ws_.refault(pfn, shadow)                       # recent
            assert q[(lv + R.L_REFAULTED + 8 * tier) >> 3] == rf0 + 1
            fl = a.u32[r]
            if workingset:
                assert fl & PG_workingset
            else:
                assert not fl & PG_workingset and (fl & REFS_MASK) >> REFS_SHIFT == max(refs, 1) - 1
        # an old shadow: counted as a refault, not as recent
        a.u32[r] = PG_swapbacked
        shadow = ws_.eviction(pfn)
        q[(lv + R.L_MAX_SEQ) >> 3] += MAX_NR_GENS
        before = sum(q[(lv + R.L_REFAULTED + 8 * t) >> 3] for t in range(4))
        assert not ws_.refault(pfn, shadow)
        assert sum(q[(lv + R.L_REFAULTED + 8 * t) >> 3] for t in range(4)) == before
        q[(lv + R.L_MAX_SEQ) >> 3] -= MAX_NR_GENS
        assert sum(n["workingset_refault_anon"] for n in fold_node_stats(a)) == 7
    finally:
        a.u32[r] = 0
        cpu.mm.free_pages(pfn, 0)
    _done(a, cpu)


# ---------------------------------------------------------------- aging on another CPU
def _fill_with_aging_held(a, cpu: VM, held_s: float | None) -> int:
    """Write 1.5 x RAM (8 MiB of swap behind it) while node 0's aging word names CPU 1,
    a walker its host descheduled: released after `held_s` seconds, or never (None).
    Returns how many pages were written before the OOM killer ended the task."""
    from aerosync.mm.reclaim.oom_kill import TaskKilled

    lv = cpu.reclaim.off.lruvec(0)
    a.u64[(lv + R.L_AGING) >> 3] = 2
    t = threading.Timer(held_s, lambda: a.atomic.cas64(lv + R.L_AGING, 2, 0)) if held_s is not None else None
    if t is not None:
        t.start()
    n = 3000
    addr = cpu.mmap(0, n * PG, RW, ANON)
    done = 0
    try:
        for i in range(n):
            cpu.store64(addr + i * PG, i)
            done = i + 1
    except TaskKilled:
        pass
    finally:
        if t is not None:
            t.join()
        a.atomic.cas64(lv + R.L_AGING, 2, 0)
    return done


def test_reclaim_waits_for_another_cpus_aging_instead_of_oom(rm) -> None:
    """Direct reclaim that needs a generation while another CPU is aging the node waits
    for that walk (below DEF_PRIORITY - 1), then evicts: no OOM kill with swap to spare.
    Without the wait every round makes no progress and the OOM killer ends the task in
    a fraction of the half second the walker is away (CI: reclaim-compress, 2 s, killed
    by the OOM killer)."""
    a, cpu = rm(swap_mb=8)
    assert _fill_with_aging_held(a, cpu, 0.5) == 3000
    assert fold_vm_events(a)["oom_kill"] == 0 and fold_vm_events(a)["pgsteal_anon"] > 0
    _done(a, cpu)


def test_a_walker_that_never_lets_go_is_waited_for_a_bounded_time(rm, monkeypatch) -> None:
    """An aging word nobody will clear (its CPU died before takeover): each reclaim pass
    waits at most AGING_WAIT_S once, so the allocation ends (here in the OOM killer: no
    CPU can age the node) instead of hanging."""
    from aerosync.lib.ratelimit import RatelimitState
    from aerosync.mm.pmm import page_alloc as PA
    from aerosync.mm.reclaim import lru_gen

    monkeypatch.setattr(lru_gen, "AGING_WAIT_S", 0.01)
    monkeypatch.setattr(PA, "nopage_rs", RatelimitState(10.0, 1))   # warn_alloc's, per process: fresh
    a, cpu = rm(swap_mb=8)
    with pytest.warns(AllocFailureWarning, match="page allocation failure"):
        assert _fill_with_aging_held(a, cpu, None) < 3000
    assert fold_vm_events(a)["oom_kill"] == 1
    _done(a, cpu)


def test_takeover_releases_a_dead_cpus_aging(rm) -> None:
    """aging_cpu_dead clears only the words the dead CPU holds (cpu + 1)."""
    from aerosync.mm.reclaim.lru_gen import aging_cpu_dead

    a, cpu = rm()
    lv = cpu.reclaim.off.lruvec(0)
    a.u64[(lv + R.L_AGING) >> 3] = 1                       # CPU 0 is aging
    assert aging_cpu_dead(a, 1) == 0 and a.u64[(lv + R.L_AGING) >> 3] == 1
    assert aging_cpu_dead(a, 0) == 1 and a.u64[(lv + R.L_AGING) >> 3] == 0
    max_seq = a.u64[(lv + R.L_MAX_SEQ) >> 3]
    assert cpu.reclaim.gen.try_to_inc_max_seq(0) and a.u64[(lv + R.L_MAX_SEQ) >> 3] == max_seq + 1
    assert a.u64[(lv + R.L_AGING) >> 3] == 0
    _done(a, cpu)
