"""The mm invariant checker: clean states pass, and each invariant, broken on purpose,
is reported with its id and where (mm/pmm/check.py docstring lists B1..F3)."""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from aerosync.errors import InvariantViolation
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.check import INVARIANTS, check
from aerosync.mm.pmm.page import NIL, PG_buddy, PG_lru, PG_pcp, PG_tail, page_array
from aerosync.mm.pmm.page_alloc import MM
from tests.test_page_alloc import make_mm_arena

pytestmark = pytest.mark.usefixtures("both_profiles")   # issue 14: races and checker in both kernel profiles


@pytest.fixture
def st() -> Iterator[dict[str, Any]]:
    """A 16 MiB machine with allocated pages, a folio, and pages on cpu0's PCP lists."""
    a = make_mm_arena(nr_pages=4096)
    m = MM(a, 0)
    held = [m.alloc_pages(G.GFP_KERNEL, 0) for _ in range(20)]
    for p in held[10:]:
        m.free_pages(p)                                    # onto the PCP list
    folio = m.folio_alloc(G.GFP_KERNEL, 2)
    big = m.alloc_pages(G.GFP_KERNEL, 3)
    state = {"a": a, "m": m, "held": held[:10], "folio": folio, "big": big}
    assert check(a).ok, str(check(a))
    yield state
    state.clear()
    del m
    gc.collect()
    a.close()
    a.unlink()


def pages(st: dict[str, Any]) -> np.ndarray:
    return page_array(st["a"])


def free_heads(st: dict[str, Any], zid: int = 2) -> list[int]:
    p = pages(st)
    heads = np.flatnonzero((p["flags"] & PG_buddy) != 0)
    z = p["zone"][heads]
    return [int(h) for h in heads[z == zid]]


def pcp_heads(st: dict[str, Any]) -> list[int]:
    return [int(h) for h in np.flatnonzero((pages(st)["flags"] & PG_pcp) != 0)]


def hits(st: dict[str, Any], inv: str) -> list[str]:
    rep = check(st["a"])
    assert inv in rep.ids(), str(rep)
    return [v.where for v in rep.violations if v.inv_id == inv]


def test_clean_states_pass_and_report_shape(st) -> None:
    rep = check(st["a"])
    assert rep.ok and rep.violations == [] and "OK" in str(rep)
    assert len(INVARIANTS) == 17


def test_raise_first_mode(st) -> None:
    pages(st)["refcount"][st["held"][0]] = 0
    with pytest.raises(InvariantViolation) as ei:
        check(st["a"], raise_first=True)
    assert ei.value.inv_id == "B1" and ei.value.where == f"pfn {st['held'][0]}"


def test_B1_leaked_page(st) -> None:
    p = st["held"][3]
    pages(st)["refcount"][p] = 0                     # allocated page with no owner: no state
    assert f"pfn {p}" in hits(st, "B1")


def test_B1_two_state_flags(st) -> None:
    p = st["held"][4]
    pages(st)["flags"][p] = PG_pcp | PG_tail
    assert f"pfn {p}" in hits(st, "B1")


def test_B2_misaligned_free_block(st) -> None:
    pg = pages(st)
    h = next(h for h in free_heads(st) if 1 <= pg["order"][h] < 10 and h >> int(pg["order"][h]) & 1)
    pg["order"][h] += 1
    assert f"pfn {h}" in hits(st, "B2")


def test_B3_flag_inside_free_block(st) -> None:
    pg = pages(st)
    h = next(h for h in free_heads(st) if pg["order"][h] >= 2)
    pg["flags"][h + 1] = PG_lru
    assert f"pfn {h + 1}" in hits(st, "B3")


def test_B4_broken_prev_link(st) -> None:
    a = st["a"]
    zo = Z.zone_off(a, 1) + Z.Z_FREE_AREA
    pg = pages(st)
    for o in range(11):
        li = (zo + o * Z.FA_SIZE + Z.FA_LISTS + 8 * G.MIGRATE_MOVABLE) >> 2
        first = a.u32[li]
        if first != NIL and pg["next"][first] != NIL:
            second = int(pg["next"][first])
            pg["prev"][second] = NIL
            assert f"pfn {second}" in hits(st, "B4")
            return
    # fall back: a list member with a wrong order byte
    h = free_heads(st, 1)[0]
    pg["mt"][h] = G.MIGRATE_RECLAIMABLE
    assert f"pfn {h}" in hits(st, "B4")


def test_B5_nr_free_counter(st) -> None:
    a = st["a"]
    idx = (Z.zone_off(a, 2) + Z.Z_FREE_AREA + 10 * Z.FA_SIZE) >> 3
    a.u64[idx] += 1
    assert "node0/Normal free_area[10].nr_free" in hits(st, "B5")


def test_B6_unmerged_buddies(st) -> None:
    pg = pages(st)
    h = next(h for h in free_heads(st) if pg["order"][h] >= 1)
    o = int(pg["order"][h]) - 1
    pg["order"][h] = o
    up = h + (1 << o)
    pg["flags"][up] = PG_buddy
    pg["order"][up] = o
    pg["mt"][up] = pg["mt"][h]
    assert f"pfn {h}" in hits(st, "B6")


def test_B7_pageblock_type_mismatch(st) -> None:
    pg = pages(st)
    h = next(h for h in free_heads(st) if pg["order"][h] >= 9)
    pb = st["a"].array("mmpageblock", np.uint8)
    pb[h >> 9] = G.MIGRATE_RECLAIMABLE
    del pb
    assert f"pfn {h}" in hits(st, "B7")


def test_B8_bad_pageblock_value(st) -> None:
    pb = st["a"].array("mmpageblock", np.uint8)
    pb[2] = 7
    del pb
    assert "pageblock 2 (pfn 1024)" in hits(st, "B8")


def test_P1_pcp_count(st) -> None:
    a = st["a"]
    a.u64[(Z.pcp_off(a, 0, 2, 3) + Z.PCP_COUNT) >> 3] += 1
    assert "cpu0 pcp node0/Normal" in hits(st, "P1")


def test_P2_pcp_member_wrong_order(st) -> None:
    p = pcp_heads(st)[0]
    pages(st)["order"][p] = 1
    assert f"pfn {p}" in hits(st, "P2")


def test_P3_pcp_flag_off_list(st) -> None:
    p = st["held"][5]
    pg = pages(st)
    pg["flags"][p] = PG_pcp
    pg["refcount"][p] = 0
    assert "all PCP lists" in hits(st, "P3")


def test_P4_pcp_left_busy(st) -> None:
    a = st["a"]
    a.atomic.store64(Z.pcp_off(a, 1, 2, 3) + Z.PCP_STATE, Z.PCP_BUSY)
    assert "cpu1 pcp node0/Normal" in hits(st, "P4")


def test_Z1_accounting(st) -> None:
    a = st["a"]
    a.u64[(Z.zone_off(a, 2) + Z.Z_MANAGED) >> 3] -= 1
    assert "node0/Normal" in hits(st, "Z1")


def test_Z2_zone_byte(st) -> None:
    p = st["held"][6]
    pages(st)["zone"][p] = 1
    assert f"pfn {p}" in hits(st, "Z2")


def test_F1_missing_tail(st) -> None:
    f = st["folio"]
    pages(st)["flags"][f + 2] = 0
    assert f"pfn {f + 2}" in hits(st, "F1")


def test_F2_tail_names_wrong_head(st) -> None:
    f = st["folio"]
    pages(st)["head"][f + 1] = st["held"][0]
    assert f"pfn {f + 1}" in hits(st, "F2")


def test_F3_free_page_mapped(st) -> None:
    h = free_heads(st)[0]
    pages(st)["mapcount"][h] = 1
    assert f"pfn {h}" in hits(st, "F3")


def test_checker_1gib_clean_fresh_and_fragmented() -> None:
    """A 1 GiB machine checks clean fresh and after fragmenting churn (its speed is the
    checker_1gib_s benchmark, `aerosync bench pagealloc`, not asserted here)."""
    a = make_mm_arena(nr_pages=262144, nr_nodes=2)
    try:
        rep = check(a)
        assert rep.ok, str(rep)
        fresh = rep.elapsed_s
        m = MM(a, 0)
        rng = random.Random(3)
        orders = [rng.choice((0, 0, 1, 3)) for _ in range(30000)]
        held = [(m.alloc_pages(G.GFP_KERNEL | G.__GFP_NOWARN, o), o) for o in orders]
        for p, o in held[::2]:
            m.free_pages(p, o)                                     # fragment: every other block back
        rep = check(a)
        assert rep.ok, str(rep)
        print(f"\nchecker_1gib_s fresh={fresh:.3f} fragmented={rep.elapsed_s:.3f}")
        del m
    finally:
        gc.collect()
        a.close()
        a.unlink()


def test_checker_timing_is_measured() -> None:
    t = time.perf_counter()
    a = make_mm_arena(nr_pages=1024)
    try:
        assert check(a).elapsed_s < time.perf_counter() - t + 1
    finally:
        a.close()
        a.unlink()
