"""The simulated MMU: every load and store of a task goes through this CPU's TLB.

Models: the x86-64 MMU as the kernel sees it -- a TLB lookup, on a miss a hardware walk
of the current page tables (CR3 = the loaded mm's root), accessed and dirty bits set by
the walk with a locked read-modify-write (a write through a TLB entry without D walks
again to set it, as x86 does), and a page fault (#PF) when the walk fails -- plus
arch/x86/mm/fault.c's entry into the kernel's fault handler (do_user_addr_fault).
Unit: one access of up to 4096 bytes inside one page.

API (closures): load(va, n) -> bytes, store(va, data), load64(va) -> int, store64(va, v)
(va 8-byte aligned), translate(va, write) -> TLB entry (tlb.py's tlb_entry: tlb_entry_pfn
gives its pfn), set_root(pfn, key_base).

Hot path (measured by `aerosync bench vm` as tlb_hit_access_ns): poll this CPU's
ipi_pending word (IPIs are taken between accesses, never inside one), one dict lookup of
asid|vpn, a permission test on the cached entry (tlb.py's encoding: the page's u64 index
<< 12 | flags), one memoryview access.  Everything
else -- the walk, A/D updates, the fault -- is the slow path.

Ownership: the TLB is this CPU's (tlb.py); page tables are shared: a walk reads entries
without locks (as hardware does) and sets A/D with a CAS so a concurrent
ptep_get_and_clear (which uses xchg) never loses or resurrects bits.

Remote access cost ([machine] remote_access_ns): when configured, every access also
busy-waits remote_access_ns x (distance - 10) / 10 by the SLIT distance between this CPU's
node and the node of the page it reaches (the cost mm/numa's touch_costs prices page
touches with), so throughput reflects placement.  The choice is made once, at build:
without a cost the access closures are exactly the plain ones above.

Faults: `fault(va, write)` (memory.py: do_user_addr_fault) returns after fixing the
mapping -- with the entry it installed (A, and D for a write, already set: the TLB is
filled from it, no second walk) or -1 (walk again) -- or raises SegmentationFault
(SIGSEGV: task, address, reason).  A fault that keeps recurring is reported as an AeroSyncError
rather than looping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aerosync.errors import AeroSyncError
from aerosync.mm.vm.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_USER,
    PTE_PFN_MASK,
    level_shift,
)
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT

__all__ = ["Mmu", "MAX_FAULT_RETRIES", "access_costs"]

MAX_FAULT_RETRIES = 64
_RW_D = _PAGE_RW | _PAGE_DIRTY
_A_D = _PAGE_ACCESSED | _PAGE_DIRTY
_U_P = _PAGE_USER | _PAGE_PRESENT
_U_P_PSE = _U_P | _PAGE_PSE


def access_costs(arena: Any, cpu: int) -> tuple[int, ...] | None:
    """Extra ns of an access from `cpu` to a page on each node ([machine]
    remote_access_ns x (distance - 10) / 10), or None when no access costs anything."""
    ns = int(arena.config.get("remote_access_ns", 0) or 0)
    sim = arena.config.get("sim")
    if ns <= 0 or not sim:
        return None
    row = sim["distance"][sim["cpu_to_node"][cpu]]
    costs = tuple(max(0, ns * (d - 10) // 10) for d in row)
    return costs if any(costs) else None


class Mmu:
    """Simulated CPU `cpu`'s MMU over `tlb` (tlb.Tlb); `fault(va, write)` handles #PF."""

    def __init__(self, arena: Any, cpu: int, tlb: Any, nr_levels: int,
                 fault: Callable[[int, bool], int]) -> None:
        self.arena, self.cpu = arena, cpu
        q, u8, at = arena.u64, arena.u8, arena.atomic
        cas = at.cas64
        PHYS = arena.off("physmem")
        P8 = PHYS >> 3
        entries = tlb.entries
        get = entries.get
        fill = tlb.fill
        pend_i = tlb.pend_i
        handle_ipi = tlb.handle_ipi
        top = nr_levels
        shifts = [0] + [level_shift(lv) for lv in range(1, 6)]
        root = 0
        kb = 0

        def set_root(pfn: int, key_base: int) -> None:
            nonlocal root, kb
            root, kb = pfn, key_base

        def walk(va: int, write: bool) -> int:
            """The hardware walk: the leaf entry with A (and D for a write) set, or -1."""
            while True:
                t = root
                if not t:
                    return -1
                for lvl in range(top, 1, -1):
                    e = q[P8 + (t << 9) + ((va >> shifts[lvl]) & 511)]
                    if e & _U_P != _U_P or e & _PAGE_PSE:
                        return -1
                    t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
                i = P8 + (t << 9) + ((va >> PAGE_SHIFT) & 511)
                e = q[i]
                if e & _U_P != _U_P or (write and not e & _PAGE_RW):
                    return -1
                need = (_PAGE_ACCESSED | _PAGE_DIRTY) if write else _PAGE_ACCESSED
                if e & need != need:
                    if cas(i << 3, e, e | need) != e:
                        continue                   # changed under us: walk again
                    e |= need
                x = (P8 + ((e & PTE_PFN_MASK) >> 3)) << 12 | (e & 0xFFF)      # tlb_entry(e)
                fill(kb | (va >> PAGE_SHIFT), x)
                return x

        def walk4(va: int, write: bool) -> int:
            """walk() for 4-level tables, unrolled (measured: 141 -> ~60 bytecodes a walk)."""
            t = root
            if not t:
                return -1
            e = q[P8 + (t << 9) + ((va >> 39) & 511)]
            if e & _U_P_PSE != _U_P:
                return -1
            e = q[P8 + ((e & PTE_PFN_MASK) >> 3) + ((va >> 30) & 511)]
            if e & _U_P_PSE != _U_P:
                return -1
            e = q[P8 + ((e & PTE_PFN_MASK) >> 3) + ((va >> 21) & 511)]
            if e & _U_P_PSE != _U_P:
                return -1
            i = P8 + ((e & PTE_PFN_MASK) >> 3) + ((va >> 12) & 511)
            e = q[i]
            if e & _U_P != _U_P or (write and not e & _PAGE_RW):
                return -1
            need = _A_D if write else _PAGE_ACCESSED
            if e & need != need:
                if cas(i << 3, e, e | need) != e:
                    return walk(va, write)          # changed under us: the careful loop
                e |= need
            x = (P8 + ((e & PTE_PFN_MASK) >> 3)) << 12 | (e & 0xFFF)          # tlb_entry(e)
            fill(kb | (va >> PAGE_SHIFT), x)
            return x

        if top == 4:
            walk = walk4

        def translate(va: int, write: bool) -> int:
            """The walk, then the fault and the walk again until the access can proceed.
            The first fault is unrolled (every first touch of a page takes it; the loop
            form measured ~2 % slower on anon_fault_us, its range() on that path)."""
            e = walk(va, write)
            if e >= 0:
                return e
            e = fault(va, write)
            if e > 0:                           # the entry the fault installed, A (and D) set
                x = (P8 + ((e & PTE_PFN_MASK) >> 3)) << 12 | (e & 0xFFF)      # tlb_entry(e)
                fill(kb | (va >> PAGE_SHIFT), x)
                return x
            for _ in range(MAX_FAULT_RETRIES - 1):
                e = walk(va, write)
                if e >= 0:
                    return e
                e = fault(va, write)
                if e > 0:                       # the entry the fault installed, A (and D) set
                    x = (P8 + ((e & PTE_PFN_MASK) >> 3)) << 12 | (e & 0xFFF)  # tlb_entry(e)
                    fill(kb | (va >> PAGE_SHIFT), x)
                    return x
            raise AeroSyncError(f"cpu{cpu}: access to {va:#x} ({'write' if write else 'read'}) still faults after "
                                f"{MAX_FAULT_RETRIES} page faults")

        def load(va: int, n: int) -> bytes:
            if q[pend_i]:
                handle_ipi()
            e = get(kb | (va >> PAGE_SHIFT))
            if e is None:
                e = translate(va, False)
            o = ((e >> 12) << 3) + (va & 4095)
            return bytes(u8[o : o + n])

        def store(va: int, data: bytes) -> None:
            if q[pend_i]:
                handle_ipi()
            e = get(kb | (va >> PAGE_SHIFT))
            if e is None or e & _RW_D != _RW_D:
                e = translate(va, True)
            o = ((e >> 12) << 3) + (va & 4095)
            u8[o : o + len(data)] = data

        def load64(va: int) -> int:
            if q[pend_i]:
                handle_ipi()
            e = get(kb | (va >> PAGE_SHIFT))
            if e is None:
                e = translate(va, False)
            return q[(e >> 12) + ((va & 4095) >> 3)]

        def store64(va: int, v: int) -> None:
            if q[pend_i]:
                handle_ipi()
            e = get(kb | (va >> PAGE_SHIFT))
            if e is None or e & _RW_D != _RW_D:
                e = translate(va, True)
            q[(e >> 12) + ((va & 4095) >> 3)] = v

        costs = access_costs(arena, cpu)
        if costs is not None:
            # the same accesses, then the remote cost of the page's node (busy wait: the
            # CPU stalls as on a remote load, it does not sleep)
            clock = time.perf_counter_ns
            node_b = arena.off("pagemeta") + 7          # struct page's node byte: pfn << 6 + 7
            assert PAGE_META_SIZE == 64 and PAGE_SHIFT == 12

            def spin(c: int) -> None:
                end = clock() + c
                while clock() < end:
                    pass

            def load(va: int, n: int) -> bytes:
                if q[pend_i]:
                    handle_ipi()
                e = get(kb | (va >> PAGE_SHIFT))
                if e is None:
                    e = translate(va, False)
                c = costs[u8[node_b + (((e >> 12) - P8) >> 3)]]
                if c:
                    spin(c)
                o = ((e >> 12) << 3) + (va & 4095)
                return bytes(u8[o : o + n])

            def store(va: int, data: bytes) -> None:
                if q[pend_i]:
                    handle_ipi()
                e = get(kb | (va >> PAGE_SHIFT))
                if e is None or e & _RW_D != _RW_D:
                    e = translate(va, True)
                c = costs[u8[node_b + (((e >> 12) - P8) >> 3)]]
                if c:
                    spin(c)
                o = ((e >> 12) << 3) + (va & 4095)
                u8[o : o + len(data)] = data

            def load64(va: int) -> int:
                if q[pend_i]:
                    handle_ipi()
                e = get(kb | (va >> PAGE_SHIFT))
                if e is None:
                    e = translate(va, False)
                c = costs[u8[node_b + (((e >> 12) - P8) >> 3)]]
                if c:
                    spin(c)
                return q[(e >> 12) + ((va & 4095) >> 3)]

            def store64(va: int, v: int) -> None:
                if q[pend_i]:
                    handle_ipi()
                e = get(kb | (va >> PAGE_SHIFT))
                if e is None or e & _RW_D != _RW_D:
                    e = translate(va, True)
                c = costs[u8[node_b + (((e >> 12) - P8) >> 3)]]
                if c:
                    spin(c)
                q[(e >> 12) + ((va & 4095) >> 3)] = v

        self.costs = costs
        self.set_root, self.walk, self.translate = set_root, walk, translate
        self.load, self.store, self.load64, self.store64 = load, store, load64, store64
