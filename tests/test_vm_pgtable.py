"""Page-table entries (mm/vm/pgtable.py): x86-64 bits, the protection map, swap and
migration entries in the kernel's encoding, and pte_modify."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerosync.mm.vm import pgtable as P
from aerosync.mm.vm import vma as V


def test_bits_are_the_hardwares() -> None:
    assert (P._PAGE_PRESENT, P._PAGE_RW, P._PAGE_USER, P._PAGE_ACCESSED, P._PAGE_DIRTY) == (1, 2, 4, 0x20, 0x40)
    assert P._PAGE_PSE == 0x80 and P._PAGE_GLOBAL == 0x100 and P._PAGE_NX == 1 << 63
    assert P._PAGE_PROTNONE == P._PAGE_GLOBAL and P._PAGE_SPECIAL == 1 << 9
    assert P.PTE_PFN_MASK == 0x000F_FFFF_FFFF_F000
    assert P.MAX_SWAPFILES == 24 and P.SWP_MIGRATION_READ == 25 and P.SWP_MIGRATION_WRITE == 27
    assert P.SWP_PTE_MARKER == 31


def test_protection_map_matches_x86() -> None:
    assert P.vm_get_page_prot(V.VM_NONE) == P._PAGE_PROTNONE | P._PAGE_ACCESSED
    ro = P.vm_get_page_prot(V.VM_READ)
    assert ro & P._PAGE_PRESENT and ro & P._PAGE_USER and not ro & P._PAGE_RW and ro & P._PAGE_NX
    # private writable starts read-only (COW); shared writable is writable
    assert not P.vm_get_page_prot(V.VM_READ | V.VM_WRITE) & P._PAGE_RW
    assert P.vm_get_page_prot(V.VM_READ | V.VM_WRITE | V.VM_SHARED) & P._PAGE_RW
    assert not P.vm_get_page_prot(V.VM_READ | V.VM_EXEC) & P._PAGE_NX


@settings(max_examples=300, deadline=None)
@given(typ=st.integers(0, 31), offset=st.integers(0, (1 << 50) - 2))
def test_swap_entry_round_trip(typ: int, offset: int) -> None:
    e = P.swp_entry_to_pte(typ, offset)
    assert not P.pte_present(e) and not P.pte_none(e) and P.is_swap_pte(e)
    assert P.pte_to_swp_entry(e) == (typ, offset)
    assert not e & (P._PAGE_PRESENT | P._PAGE_PROTNONE | P._PAGE_PSE)
    assert e >> 59 == typ                                   # type in the top five bits


def test_swap_offset_is_stored_inverted() -> None:
    """x86-64 keeps ~offset in bits 9-58 (L1TF mitigation): a small offset sets high bits."""
    e = P.swp_entry_to_pte(0, 1)
    assert e & (1 << 58) and not e & (1 << 9)


@pytest.mark.parametrize(("write", "excl", "typ"), [(True, False, P.SWP_MIGRATION_WRITE),
                                                    (False, False, P.SWP_MIGRATION_READ),
                                                    (False, True, P.SWP_MIGRATION_READ_EXCLUSIVE)])
def test_migration_entries(write: bool, excl: bool, typ: int) -> None:
    e = P.make_migration_entry(0x12345, write, excl)
    assert P.is_migration_entry(e) and P.migration_entry_pfn(e) == 0x12345
    assert P.swp_type(e) == typ and P.is_writable_migration_entry(e) == write
    assert not P.is_migration_entry(P.swp_entry_to_pte(3, 0x12345))
    assert "migration" in P.format_pte(e)


def test_protnone_and_pte_modify() -> None:
    e = P.mk_pte(0x42, P.PAGE_SHARED) | P._PAGE_DIRTY | P._PAGE_ACCESSED
    n = P.pte_modify(e, P.PAGE_NONE)
    assert P.pte_pfn(n) == 0x42 and P.pte_protnone(n) and P.pte_present(n)
    assert n & P._PAGE_DIRTY and n & P._PAGE_ACCESSED      # kept across the change
    back = P.pte_modify(n, P.PAGE_SHARED)
    assert back == e


def test_levels_and_indices() -> None:
    va = 0x7FFF_F7FF_F123
    assert [P.pgtable_index(va, lv) for lv in (4, 3, 2, 1)] == [(va >> s) & 511 for s in (39, 30, 21, 12)]
    assert P.level_shift(5) == 48 and P.levels_of(5) == (5, 4, 3, 2, 1)
    assert P.TASK_SIZE_4 == 0x7FFF_FFFF_F000


def test_swap_entry_refuses_what_would_read_as_empty() -> None:
    with pytest.raises(ValueError):
        P.swp_entry_to_pte(0, (1 << 50) - 1)
    with pytest.raises(ValueError):
        P.swp_entry_to_pte(32, 0)
