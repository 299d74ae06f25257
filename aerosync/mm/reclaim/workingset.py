"""Workingset: shadow entries of evicted folios and refault detection.

Models: mm/workingset.c (pack_shadow / unpack_shadow, workingset_eviction,
workingset_refault, workingset_activation; the classic LRU's refault distance against
the lruvec's nonresident_age; MGLRU's lru_gen_eviction / lru_gen_refault with its
generation token).  Unit: one folio leaving memory; one folio coming back.

Shadow value (an xarray value entry: bit 0 set; value v = entry >> 1)::

    v = token << 9 | nid << 3 | workingset << 2 | 0b11

  tag 0b11 in v's low two bits marks a shadow (0b10 is a swap entry, 0b01 the VM's
  ZERO marker).  Classic LRU: token = nonresident_age at eviction (incremented on each
  eviction and activation).  MGLRU: token = min_seq[type] << 2 | (refs - 1) (below).
A shadow replaces a page-cache folio in its vnode object's tree, or a swap-cache folio
in its swap-table slot; a refault finds it there.

Refault (classic): distance = (nonresident_age now - token) mod 2^54; the folio is
activated when distance <= the workingset size (file refault: active file + all anon
if swap is on; anon refault: active anon + all file), counting workingset_activate_*;
workingset_restore_* when the shadow had PG_workingset (the folio was in the workingset
when it was evicted).

MGLRU (lru_gen_eviction / lru_gen_refault, 6.14+): token = min_seq[type] << 2 |
max(refs - 1, 0), refs = folio_lru_refs (accesses incl. PG_referenced, 0..4); the
eviction counts evicted[hist][type][tier] (tier = lru_tier_from_refs(refs,
workingset)).  A refault is recent when max_seq now and the token's sequence (both
modulo 2^52) are less than MAX_NR_GENS apart; a recent one counts
refaulted[hist][type][tier] with refs = (token & 3) + 1 and the shadow's workingset bit
(hist of min_seq now: the PID controller's input), workingset_activate_* when added in
a fault (approximated: swap-backed folios, see lru_gen.py), and comes back with
PG_workingset (workingset_restore_*) or, without it, its LRU_REFS_MASK bits = refs - 1.
Counters of several CPUs: fetch_add.
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import PG_active, PG_swapbacked, PG_workingset
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.swap import (
    LRU_REFS_WIDTH,
    MAX_NR_GENS,
    REFS_MASK,
    REFS_SHIFT,
    folio_lru_refs,
    lru_tier_from_refs,
)
from aerosync.params import PAGE_META_SIZE

__all__ = ["Workingset", "pack_shadow", "unpack_shadow", "is_shadow", "TOKEN_MASK", "refault_distance",
           "lru_gen_token", "lru_gen_test_recent", "token_refs"]

TOKEN_BITS = 54
TOKEN_MASK = (1 << TOKEN_BITS) - 1


def pack_shadow(token: int, nid: int, workingset: bool) -> int:
    v = ((token & TOKEN_MASK) << 9) | (nid << 3) | (int(workingset) << 2) | 3
    return (v << 1) | 1


def unpack_shadow(e: int) -> tuple[int, int, bool]:
    v = e >> 1
    return v >> 9, (v >> 3) & 0x3F, bool(v & 4)


def is_shadow(e: int) -> bool:
    return e & 1 == 1 and (e >> 1) & 3 == 3


def refault_distance(now: int, token: int) -> int:
    """(now - token) modulo the token width: the evictions + activations since."""
    return (now - token) & TOKEN_MASK


class Workingset:
    """eviction(pfn) -> shadow value   refault(pfn, shadow) -> True if activated
    Both on one CPU, counting on its vmstat record."""

    def __init__(self, arena: Any, cpu: int, lru: Any) -> None:
        q, u32, i64, at = arena.u64, arena.u32, arena.i64, arena.atomic
        off = lru.off
        PM4 = arena.off("pagemeta") >> 2
        MW4 = PAGE_META_SIZE >> 2
        ns = VE.node_stat_base(arena, cpu)
        NS = VE.NR_NODE_STATS
        mglru = lru.mglru
        lv = lru.lruvec
        count = lru.list_count
        fetch_or32, cas32 = at.fetch_or32, at.cas32

        def update_refs(r: int, bits: int) -> None:
            """set_mask_bits(LRU_REFS_MASK, bits) on the flags word at byte offset r."""
            old = u32[r >> 2]
            while True:
                seen = cas32(r, old, (old & ~REFS_MASK & 0xFFFF_FFFF) | bits)
                if seen == old:
                    return
                old = seen
        swap_on = bool(off.nr_slots)

        def age_nonresident(nid: int, n: int = 1) -> None:
            """workingset_age_nonresident(): evictions and activations age the clock."""
            at.fetch_add64(lv[nid] + R.L_NONRES_AGE, n)

        def eviction(pfn: int) -> int:
            b = PM4 + pfn * MW4
            fl = u32[b]
            nid = lru.nid_of(pfn)
            typ = 0 if fl & PG_swapbacked else 1
            if mglru:
                min_seq = q[(lv[nid] + R.L_MIN_SEQ + 8 * typ) >> 3]
                refs = folio_lru_refs(fl)
                ws = bool(fl & PG_workingset)
                tier = lru_tier_from_refs(refs, ws)
                hist = min_seq % NR_HIST_GENS
                at.fetch_add64(lv[nid] + R.L_EVICTED + 8 * (hist * 8 + typ * 4 + tier), 1)
                return pack_shadow(lru_gen_token(min_seq, refs), nid, ws)
            token = at.fetch_add64(lv[nid] + R.L_NONRES_AGE, 1)
            return pack_shadow(token, nid, bool(fl & PG_workingset))

        def refault(pfn: int, shadow: int) -> bool:
            """workingset_refault(): account the refault of the folio now at pfn (not yet
            on an LRU) and decide whether it comes back active."""
            token, nid, ws = unpack_shadow(shadow)
            b = PM4 + pfn * MW4
            fl = u32[b]
            typ = 0 if fl & PG_swapbacked else 1
            anon = typ == 0
            if nid >= off.nr_nodes:
                return False
            i64[ns + nid * NS + (VE.WORKINGSET_REFAULT_ANON if anon else VE.WORKINGSET_REFAULT_FILE)] += 1
            if mglru:
                if not lru_gen_test_recent(q[(lv[nid] + R.L_MAX_SEQ) >> 3], token):
                    return False
                refs = token_refs(token)
                tier = _tier(refs, ws)
                hist = q[(lv[nid] + R.L_MIN_SEQ + 8 * typ) >> 3] % NR_HIST_GENS
                at.fetch_add64(lv[nid] + R.L_REFAULTED + 8 * (hist * 8 + typ * 4 + tier), 1)
                if anon:                                  # lru_gen_in_fault (see lru_gen.py)
                    i64[ns + nid * NS + VE.WORKINGSET_ACTIVATE_ANON] += 1
                if ws:
                    fetch_or32(b << 2, PG_workingset)
                    i64[ns + nid * NS + (VE.WORKINGSET_RESTORE_ANON if anon else VE.WORKINGSET_RESTORE_FILE)] += 1
                else:
                    update_refs(b << 2, (refs - 1) << REFS_SHIFT)
                return True
            now = q[(lv[nid] + R.L_NONRES_AGE) >> 3]
            distance = refault_distance(now, token)
            active_file = count(nid, R.LRU_ACTIVE_FILE)
            active_anon = count(nid, R.LRU_ACTIVE_ANON)
            if anon:
                size = active_anon + active_file + count(nid, R.LRU_INACTIVE_FILE)
            else:
                size = active_file + ((active_anon + count(nid, R.LRU_INACTIVE_ANON)) if swap_on else 0)
            if distance > size:
                return False
            fetch_or32(b << 2, PG_active | PG_workingset)
            age_nonresident(nid)
            q[(lv[nid] + (R.L_ANON_COST if anon else R.L_FILE_COST)) >> 3] += 1
            i64[ns + nid * NS + (VE.WORKINGSET_ACTIVATE_ANON if anon else VE.WORKINGSET_ACTIVATE_FILE)] += 1
            if ws:
                i64[ns + nid * NS + (VE.WORKINGSET_RESTORE_ANON if anon else VE.WORKINGSET_RESTORE_FILE)] += 1
            return True

        self.eviction, self.refault, self.age_nonresident = eviction, refault, age_nonresident


NR_HIST_GENS = 1                   # as lru_gen.py (CONFIG_LRU_GEN_STATS off)
_SEQ_MASK = TOKEN_MASK >> LRU_REFS_WIDTH


def lru_gen_token(min_seq: int, refs: int) -> int:
    """lru_gen_eviction()'s token: the oldest sequence and the accesses beyond the first."""
    return ((min_seq & _SEQ_MASK) << LRU_REFS_WIDTH) | max(refs - 1, 0)


def token_refs(token: int) -> int:
    """The accesses a refault restores: (token & 3) + 1."""
    return (token & ((1 << LRU_REFS_WIDTH) - 1)) + 1


def lru_gen_test_recent(max_seq: int, token: int) -> bool:
    """The shadow's generation is still within MAX_NR_GENS of max_seq (both truncated
    to the token's width)."""
    return abs((max_seq & _SEQ_MASK) - (token >> LRU_REFS_WIDTH)) < MAX_NR_GENS


def _tier(refs: int, workingset: bool) -> int:
    """lru_tier_from_refs(): order_base_2(refs), PG_workingset -> the top tier."""
    return lru_tier_from_refs(refs, workingset)
