"""x86-64 page tables in arena pages: entry bits, swap and migration entries, table pages.

Models: arch/x86/include/asm/pgtable_types.h and pgtable_64.h (entry bits, the
protection map, the swap-PTE format), include/linux/swapops.h (swap, migration and
hwpoison entries), mm/memory.c (__pte_alloc, __pmd_alloc, ...), mm/pgtable-generic.c,
include/linux/mm.h (ptlock_ptr, pagetable_*_ctor/dtor).  Unit: an entry (u64) of a table
page; a table is one order-0 page from the buddy allocator (GFP_PGTABLE_USER, accounted
as nr_page_table_pages and mm->pgtables_bytes).

Entry (u64)::

    63  62..59  58..52   51 ........................ 12  11 10  9  8  7  6  5  4  3  2  1  0
    NX  pkey    sw/rsvd  page frame number (PFN)         SW3 SW2 SW1 G PSE D  A PCD PWT U RW P

  P present, RW writable, U user, A accessed, D dirty (set by the MMU: mmu.py), PSE a
  2 MiB / 1 GiB leaf at PMD / PUD level, G global (kernel), SW1 _PAGE_SPECIAL (the zero
  page: no refcount, no rmap), SW3 soft-dirty, NX no-execute.  Not present:
    G set, P clear          PROT_NONE (a PROT_NONE mapping, or a NUMA-hinting PTE)
    otherwise non-zero      a swap PTE: type in bits 63-59, ~offset in bits 58-9 (the
                            offset is stored inverted, as x86-64 does against L1TF), bit 3
                            (PWT) _PAGE_SWP_EXCLUSIVE, bit 7 (PSE) _PAGE_SWP_SOFT_DIRTY
  Swap types 0..23 are swap devices (MAX_SWAPFILES = 24); 24 hwpoison, 25-27 migration
  (read, read-exclusive, write: the offset is the pfn being migrated), 28-30 device
  private, 31 PTE marker -- include/linux/swap.h's numbering.

Levels: 4-level PGD(39) -> PUD(30) -> PMD(21) -> PTE(12); 5-level adds a PML5 at bit 48
(and the PGD level becomes the P4D).  Level numbers used here: 1 = PTE table ... 4 = PGD
(5 = PML5 with 5-level tables).  Upper-level entries point to tables with
_PAGE_TABLE = P | RW | U | A | D.

Locks: PTE tables carry their split lock (ptlock) in their struct page's private word,
an ObjSpinLock of class "ptlock"; populating an upper-level entry takes the mm's
page_table_lock (as Linux: the PMD/PUD/P4D populate under mm->page_table_lock).  A
table page is freed only after its range is unmapped, its parent entry cleared under
page_table_lock and the TLBs flushed (memory.py: free_pgtables after the mmu_gather
flush): a hardware walk (mmu.py) runs between two IPI polls, so no CPU can be inside a
table when it is freed.

Invariants (mm/vm/check.py): PT1 every table page is PG_table with level and owner set,
reachable from exactly one mm's root (or init_mm's); PT2 a present leaf maps an
allocated page (or the zero page with _PAGE_SPECIAL); PT3 pgtables_bytes of an mm =
4096 x its table pages; nr_page_table_pages = all table pages.
"""

from __future__ import annotations

from typing import Any

from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = [
    "_PAGE_PRESENT", "_PAGE_RW", "_PAGE_USER", "_PAGE_PWT", "_PAGE_PCD", "_PAGE_ACCESSED", "_PAGE_DIRTY",
    "_PAGE_PSE", "_PAGE_GLOBAL", "_PAGE_SPECIAL", "_PAGE_UFFD_WP", "_PAGE_SOFT_DIRTY", "_PAGE_NX",
    "_PAGE_PROTNONE", "_PAGE_SWP_EXCLUSIVE", "_PAGE_SWP_SOFT_DIRTY", "_PAGE_TABLE", "_KERNPG_TABLE",
    "PTE_PFN_MASK", "PTE_FLAGS_MASK", "PTRS_PER_TABLE", "PAGE_NONE", "PAGE_SHARED", "PAGE_SHARED_EXEC",
    "PAGE_COPY", "PAGE_COPY_EXEC", "PAGE_READONLY", "PAGE_READONLY_EXEC", "PAGE_KERNEL", "PAGE_KERNEL_RO",
    "PAGE_KERNEL_EXEC", "PAGE_KERNEL_LARGE", "MAX_SWAPFILES", "SWP_HWPOISON", "SWP_MIGRATION_READ",
    "SWP_MIGRATION_READ_EXCLUSIVE", "SWP_MIGRATION_WRITE", "SWP_DEVICE_WRITE", "SWP_DEVICE_READ",
    "SWP_DEVICE_EXCLUSIVE", "SWP_PTE_MARKER", "SWP_TYPE_BITS",
    "pte_pfn", "mk_pte", "pte_present", "pte_none", "pte_protnone", "pte_write", "pte_dirty", "pte_young",
    "pte_special", "is_swap_pte", "swp_entry", "swp_type", "swp_offset", "swp_entry_to_pte", "pte_to_swp_entry",
    "make_migration_entry", "is_migration_entry", "migration_entry_pfn", "is_writable_migration_entry",
    "vm_get_page_prot", "pte_modify", "format_pte", "level_shift", "pgtable_index", "levels_of",
    "TASK_SIZE_4", "TASK_SIZE_5", "LEVEL_NAMES",
]

_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_PWT = 1 << 3
_PAGE_PCD = 1 << 4
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7
_PAGE_GLOBAL = 1 << 8
_PAGE_SPECIAL = 1 << 9               # _PAGE_BIT_SOFTW1
_PAGE_UFFD_WP = 1 << 10              # _PAGE_BIT_SOFTW2
_PAGE_SOFT_DIRTY = 1 << 11           # _PAGE_BIT_SOFTW3
_PAGE_NX = 1 << 63
_PAGE_PROTNONE = _PAGE_GLOBAL        # only meaningful with _PAGE_PRESENT clear
_PAGE_SWP_EXCLUSIVE = _PAGE_PWT
_PAGE_SWP_SOFT_DIRTY = _PAGE_PSE
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
_KERNPG_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY

PTE_PFN_MASK = ((1 << 52) - 1) & ~(PAGE_SIZE - 1)
_PRESENT_PSE = 1 | (1 << 7)
PTE_FLAGS_MASK = ((1 << 64) - 1) ^ PTE_PFN_MASK
PTRS_PER_TABLE = 512

PAGE_NONE = _PAGE_PROTNONE | _PAGE_ACCESSED
PAGE_SHARED = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_SHARED_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
PAGE_COPY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_COPY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
PAGE_READONLY = PAGE_COPY
PAGE_READONLY_EXEC = PAGE_COPY_EXEC
PAGE_KERNEL_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL
PAGE_KERNEL = PAGE_KERNEL_EXEC | _PAGE_NX
PAGE_KERNEL_RO = PAGE_KERNEL & ~_PAGE_RW
PAGE_KERNEL_LARGE = PAGE_KERNEL | _PAGE_PSE

# VM_READ 1, VM_WRITE 2, VM_EXEC 4, VM_SHARED 8 -> protection_map (arch/x86/mm/pgprot.c)
_PROTECTION_MAP = (
    PAGE_NONE, PAGE_READONLY, PAGE_COPY, PAGE_COPY, PAGE_READONLY_EXEC, PAGE_READONLY_EXEC,
    PAGE_COPY_EXEC, PAGE_COPY_EXEC,
    PAGE_NONE, PAGE_READONLY, PAGE_SHARED, PAGE_SHARED, PAGE_READONLY_EXEC, PAGE_READONLY_EXEC,
    PAGE_SHARED_EXEC, PAGE_SHARED_EXEC,
)

# include/linux/swap.h
SWP_TYPE_BITS = 5
_SWP_OFFSET_FIRST_BIT = 9            # _PAGE_BIT_PROTNONE + 1
_SWP_OFFSET_SHIFT = _SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS
_SWP_OFFSET_BITS = 64 - _SWP_OFFSET_SHIFT
MAX_SWAPFILES = (1 << SWP_TYPE_BITS) - 3 - 3 - 1 - 1
SWP_HWPOISON = MAX_SWAPFILES
SWP_MIGRATION_READ = MAX_SWAPFILES + 1
SWP_MIGRATION_READ_EXCLUSIVE = MAX_SWAPFILES + 2
SWP_MIGRATION_WRITE = MAX_SWAPFILES + 3
SWP_DEVICE_WRITE = MAX_SWAPFILES + 4
SWP_DEVICE_READ = MAX_SWAPFILES + 5
SWP_DEVICE_EXCLUSIVE = MAX_SWAPFILES + 6
SWP_PTE_MARKER = MAX_SWAPFILES + 7
_U64 = (1 << 64) - 1

TASK_SIZE_4 = (1 << 47) - PAGE_SIZE          # 0x7ffffffff000
TASK_SIZE_5 = (1 << 56) - PAGE_SIZE
LEVEL_NAMES = {1: "pte", 2: "pmd", 3: "pud", 4: "pgd", 5: "pml5"}


def pte_pfn(e: int) -> int:
    return (e & PTE_PFN_MASK) >> PAGE_SHIFT


def mk_pte(pfn: int, prot: int) -> int:
    return (pfn << PAGE_SHIFT) | prot


def pte_none(e: int) -> bool:
    return e == 0


def pte_present(e: int) -> bool:
    """pte_present(): P, or PROT_NONE (a mapped page the MMU must not use)."""
    return bool(e & (_PAGE_PRESENT | _PAGE_PROTNONE))


def pte_protnone(e: int) -> bool:
    return (e & (_PAGE_PROTNONE | _PAGE_PRESENT)) == _PAGE_PROTNONE


def pte_write(e: int) -> bool:
    return bool(e & _PAGE_RW)


def pte_dirty(e: int) -> bool:
    return bool(e & _PAGE_DIRTY)


def pte_young(e: int) -> bool:
    return bool(e & _PAGE_ACCESSED)


def pte_special(e: int) -> bool:
    return bool(e & _PAGE_SPECIAL)


def is_swap_pte(e: int) -> bool:
    """!pte_none && !pte_present: a swap, migration, hwpoison or marker entry."""
    return e != 0 and not e & (_PAGE_PRESENT | _PAGE_PROTNONE)


def swp_entry(typ: int, offset: int) -> tuple[int, int]:
    return typ, offset


def swp_entry_to_pte(typ: int, offset: int) -> int:
    """__swp_entry_to_pte(): type in the top 5 bits, the offset inverted below it.  The
    all-ones offset is refused: with type 0 it would encode as an empty entry (the
    kernel's maximum swap offset stays far below it: arch_max_swapfile_size)."""
    if not 0 <= typ < 1 << SWP_TYPE_BITS or not 0 <= offset < (1 << _SWP_OFFSET_BITS) - 1:
        raise ValueError(f"swp_entry_to_pte: type {typ} / offset {offset:#x} out of range")
    inv = (~offset & ((1 << _SWP_OFFSET_BITS) - 1)) << _SWP_OFFSET_FIRST_BIT
    return inv | typ << (64 - SWP_TYPE_BITS)


def swp_type(e: int) -> int:
    return (e & _U64) >> (64 - SWP_TYPE_BITS)


def swp_offset(e: int) -> int:
    return (~e >> _SWP_OFFSET_FIRST_BIT) & ((1 << _SWP_OFFSET_BITS) - 1)


def pte_to_swp_entry(e: int) -> tuple[int, int]:
    return swp_type(e), swp_offset(e)


def make_migration_entry(pfn: int, write: bool, exclusive: bool = False) -> int:
    """A migration PTE for a page being moved (include/linux/swapops.h)."""
    typ = SWP_MIGRATION_WRITE if write else (SWP_MIGRATION_READ_EXCLUSIVE if exclusive else SWP_MIGRATION_READ)
    return swp_entry_to_pte(typ, pfn)


def is_migration_entry(e: int) -> bool:
    return is_swap_pte(e) and SWP_MIGRATION_READ <= swp_type(e) <= SWP_MIGRATION_WRITE


def is_writable_migration_entry(e: int) -> bool:
    return is_swap_pte(e) and swp_type(e) == SWP_MIGRATION_WRITE


def migration_entry_pfn(e: int) -> int:
    return swp_offset(e)


def vm_get_page_prot(vm_flags: int) -> int:
    """vm_get_page_prot(): protection_map[VM_READ|VM_WRITE|VM_EXEC|VM_SHARED]."""
    return _PROTECTION_MAP[vm_flags & 0xF]


def pte_modify(e: int, prot: int) -> int:
    """pte_modify(): keep the pfn, A/D/special/soft-dirty bits, take the rest from prot."""
    keep = PTE_PFN_MASK | _PAGE_PCD | _PAGE_PWT | _PAGE_SPECIAL | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_SOFT_DIRTY
    return (e & keep) | (prot & ~keep & _U64)


def levels_of(nr_levels: int) -> tuple[int, ...]:
    """Level numbers from the root down: (4, 3, 2, 1) or (5, 4, 3, 2, 1)."""
    return tuple(range(nr_levels, 0, -1))


def level_shift(level: int) -> int:
    """Address bits below an entry of a table at `level` (1 = PTE table: 12)."""
    return PAGE_SHIFT + 9 * (level - 1)


def pgtable_index(va: int, level: int) -> int:
    return (va >> level_shift(level)) & (PTRS_PER_TABLE - 1)


_BIT_NAMES = ((_PAGE_PRESENT, "P"), (_PAGE_RW, "RW"), (_PAGE_USER, "U"), (_PAGE_PWT, "PWT"), (_PAGE_PCD, "PCD"),
              (_PAGE_ACCESSED, "A"), (_PAGE_DIRTY, "D"), (_PAGE_PSE, "PSE"), (_PAGE_GLOBAL, "G"),
              (_PAGE_SPECIAL, "SPECIAL"), (_PAGE_UFFD_WP, "UFFD_WP"), (_PAGE_SOFT_DIRTY, "SOFT_DIRTY"),
              (_PAGE_NX, "NX"))


def format_pte(e: int) -> str:
    """Readable form of an entry, for messages and dumps."""
    if e == 0:
        return "none"
    if is_swap_pte(e):
        t, off = pte_to_swp_entry(e)
        kind = ("migration" if SWP_MIGRATION_READ <= t <= SWP_MIGRATION_WRITE else
                "hwpoison" if t == SWP_HWPOISON else "marker" if t == SWP_PTE_MARKER else
                "device" if t >= SWP_DEVICE_WRITE else "swap")
        return f"{kind} type {t} offset {off:#x}"
    if pte_protnone(e):
        return f"protnone pfn {pte_pfn(e):#x}"
    bits = "|".join(n for b, n in _BIT_NAMES if e & b)
    return f"pfn {pte_pfn(e):#x} {bits}"


def describe(arena: Any) -> str:
    """One line: the paging mode of a machine (for topology / summaries)."""
    from aerosync.mm.vm.mm_types import H_LEVELS

    n = arena.u64[(arena.off("vmhdr") + H_LEVELS) >> 3]
    return f"{n}-level paging, TASK_SIZE {TASK_SIZE_5 if n == 5 else TASK_SIZE_4:#x}"


class PageTables:
    """Simulated CPU `cpu`'s table operations (closures bound once; tables addressed by
    pfn, entries by (table pfn, index)):

      alloc_table(level, mm_id, va) -> pfn | -1     a zeroed, accounted table page
      free_table(pfn)                               undo alloc_table (the caller unlinked it)
      pgd_alloc(mm_id) -> pfn | -1                  root table, kernel half copied from init_mm
      walk(root_pfn, va) -> PTE-table pfn | -1      lock-free read walk, no allocation
      walk_alloc(mm_id, root_pfn, va) -> PTE-table pfn | -1 (ENOMEM)
                                                    populating missing levels under the
                                                    mm's page_table_lock
      entry_off(table_pfn, idx) -> arena byte offset of the entry
      ptlock_off(table_pfn) -> byte offset of that table's split lock word
    """

    def __init__(self, arena: Any, cpu: int, mm: Any, page_table_lock: Any, nr_levels: int) -> None:
        from aerosync.arena.layout import robust_mode
        from aerosync.mm import intent as I
        from aerosync.mm.pmm import vm_event as VE
        from aerosync.mm.pmm.gfp import GFP_KERNEL
        from aerosync.mm.pmm.page import P_INDEX, P_MAPPING, P_PRIVATE, P_REFCOUNT, P_SPARE, PG_table
        from aerosync.mm.vm import mm_types as T
        from aerosync.params import PAGE_META_SIZE

        self.arena, self.cpu, self.nr_levels = arena, cpu, nr_levels
        q, i64, u32, at = arena.u64, arena.i64, arena.u32, arena.atomic
        PHYS = arena.off("physmem")
        PM = arena.off("pagemeta")
        pm_flags32 = PM >> 2
        meta_words = PAGE_META_SIZE >> 3
        zero = bytes(PAGE_SIZE)
        u8 = arena.u8
        alloc_pages, free_pages, free_frozen_pages = mm.alloc_pages, mm.free_pages, mm.free_frozen_pages
        cas32 = at.cas32
        ns = VE.node_stat_base(arena, cpu)
        nid_of = arena.u8
        mm_base, mm_size = arena.off("vmmm"), T.mm_rec_size(int(arena.config["nr_cpus"]))
        lock, unlock = page_table_lock.lock, page_table_lock.unlock
        fetch_add = at.fetch_add64
        top = nr_levels
        shifts = {lvl: level_shift(lvl) for lvl in range(1, 6)}
        node_stats = VE.NR_NODE_STATS
        i_pt = VE.NR_PAGE_TABLE_PAGES
        init_pgd: list[int] = []

        def account(pfn: int, mm_id: int, delta: int) -> None:
            nid = nid_of[PM + pfn * PAGE_META_SIZE + 7]
            i64[ns + nid * node_stats + i_pt] += delta
            if mm_id >= 0:
                fetch_add(mm_base + mm_id * mm_size + T.M_PGTABLES_BYTES, (delta * PAGE_SIZE) & ((1 << 64) - 1))

        # robust mode: the allocation's hand-off window (mm/intent.py), WINDOW_PGTABLE until
        # the page says PG_table -- from then on a table no mm reaches is the settle's
        # (mm/vm/recover.py); before, the window names it (table_handed_out)
        lg = mm.log if robust_mode(arena.config) else None
        ho, pend = (lg.handoff, lg.pending) if lg is not None else (-1, -1)

        def alloc_table(level: int, mm_id: int, va: int) -> int:
            if pend >= 0:
                saved = q[pend]
                q[ho] = 0
                q[pend] = I.WINDOW_PGTABLE
            pfn = alloc_pages(GFP_KERNEL, 0)
            if pfn < 0:
                if pend >= 0:
                    q[pend] = saved
                return -1
            o = PHYS + (pfn << PAGE_SHIFT)
            u8[o : o + PAGE_SIZE] = zero
            b = pfn * meta_words + (PM >> 3)
            u32[pm_flags32 + pfn * (PAGE_META_SIZE >> 2)] = PG_table
            if pend >= 0:
                q[pend] = saved
            u32[(PM + pfn * PAGE_META_SIZE + P_SPARE) >> 2] = level
            q[b + (P_PRIVATE >> 3)] = 0
            q[b + (P_MAPPING >> 3)] = mm_id + 1
            q[b + (P_INDEX >> 3)] = va
            account(pfn, mm_id, 1)
            return pfn

        def free_table(pfn: int) -> None:
            """pagetable_free(): a table nothing links any more (its caller's record, if
            any, no longer names it).  Frozen (refcount 1 -> 0) while still PG_table, then
            the flag cleared, then freed: a kill from outside before the freeze leaves an
            unreachable table (mm/vm/recover.py settle_counts frees it, PT1), one after
            the flag a page in no state (the page allocator's state scan) -- clearing
            the flag first left a plain page of refcount 1 that nobody named."""
            b = pfn * meta_words + (PM >> 3)
            mm_id = q[b + (P_MAPPING >> 3)] - 1
            account(pfn, mm_id, -1)
            q[b + (P_PRIVATE >> 3)] = 0
            q[b + (P_MAPPING >> 3)] = 0
            q[b + (P_INDEX >> 3)] = 0
            u32[(PM + pfn * PAGE_META_SIZE + P_SPARE) >> 2] = 0
            frozen = cas32((PM + pfn * PAGE_META_SIZE + P_REFCOUNT), 1, 0) == 1
            u32[pm_flags32 + pfn * (PAGE_META_SIZE >> 2)] = 0
            if frozen:
                free_frozen_pages(pfn, 0, False)
            else:                                    # (nobody else holds a table: not seen)
                free_pages(pfn, 0)

        def pgd_alloc(mm_id: int) -> int:
            pfn = alloc_table(top, mm_id, 0)
            if pfn < 0:
                return -1
            if not init_pgd and mm_id != 0:
                init_pgd.append(q[(mm_base + T.M_PGD) >> 3])
            if mm_id != 0 and init_pgd and init_pgd[0]:
                src = PHYS + (init_pgd[0] << PAGE_SHIFT) + 256 * 8
                dst = PHYS + (pfn << PAGE_SHIFT) + 256 * 8
                u8[dst : dst + 256 * 8] = u8[src : src + 256 * 8]
            return pfn

        def walk(root: int, va: int) -> int:
            t = root
            for lvl in range(top, 1, -1):
                e = q[(PHYS >> 3) + (t << 9) + ((va >> shifts[lvl]) & 511)]
                if not e & _PAGE_PRESENT or e & _PAGE_PSE:
                    return -1
                t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            return t

        def walk_alloc(mm_id: int, root: int, va: int) -> int:
            t = root
            mo = mm_base + mm_id * mm_size + T.M_PTL
            for lvl in range(top, 1, -1):
                i = (PHYS >> 3) + (t << 9) + ((va >> shifts[lvl]) & 511)
                e = q[i]
                if not e & _PAGE_PRESENT:
                    base = va & ~((1 << shifts[lvl]) - 1)
                    new = alloc_table(lvl - 1, mm_id, base)
                    if new < 0:
                        return -1
                    lock(mo)
                    e = q[i]
                    if not e & _PAGE_PRESENT:
                        e = (new << PAGE_SHIFT) | _PAGE_TABLE
                        q[i] = e
                        new = -1
                    unlock(mo)
                    if new >= 0:
                        free_table(new)            # another CPU populated it first
                elif e & _PAGE_PSE:
                    return -1
                t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            return t

        P8 = PHYS >> 3

        def walk_alloc4(mm_id: int, root: int, va: int) -> int:
            """walk_alloc for 4 levels: the common case (every level present) unrolled,
            anything else through the general loop."""
            e = q[P8 + (root << 9) + ((va >> 39) & 511)]
            if e & _PRESENT_PSE == _PAGE_PRESENT:
                e = q[P8 + ((e & PTE_PFN_MASK) >> 3) + ((va >> 30) & 511)]
                if e & _PRESENT_PSE == _PAGE_PRESENT:
                    e = q[P8 + ((e & PTE_PFN_MASK) >> 3) + ((va >> 21) & 511)]
                    if e & _PRESENT_PSE == _PAGE_PRESENT:
                        return (e & PTE_PFN_MASK) >> PAGE_SHIFT
            return walk_alloc(mm_id, root, va)

        def entry_off(table: int, idx: int) -> int:
            return PHYS + (table << PAGE_SHIFT) + (idx << 3)

        def ptlock_off(table: int) -> int:
            return PM + table * PAGE_META_SIZE + P_PRIVATE

        self.alloc_table, self.free_table, self.pgd_alloc = alloc_table, free_table, pgd_alloc
        self.walk, self.entry_off, self.ptlock_off = walk, entry_off, ptlock_off
        self.walk_alloc = walk_alloc4 if top == 4 else walk_alloc
