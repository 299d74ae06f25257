"""The kernel's own loads and stores: the direct map, the vmalloc space, and the detectors.

Models: what a CPU does when kernel code touches memory -- a direct-map address is
linear (x86-64 maps it with 1 GiB / 2 MiB pages that never miss in practice), a vmalloc
address goes through the TLB (global entries, KERNEL_ASID) and on a miss through
init_mm's tables (arch/x86/mm/fault.c: a kernel-mode #PF on an unmapped address is an
oops, handle_stack_overflow when it is a task's stack guard page) -- and the
instrumentation a sanitizer compiles into every access (KASAN's __asan_loadN/storeN
checks the shadow first; KFENCE's guard and freed pages fault in hardware).  Unit: one
access of n bytes at a kernel virtual address.

API: `KernelAccess(arena, cpu, tlb, vmalloc, current=None, check=None, kfence=None,
stack_fault=None)`:
  load(addr, n) -> bytes    store(addr, data)    load64(addr) -> int    store64(addr, v)
      instrumented: `check(addr, n, write)` (KASAN) runs first when given
  raw_load(addr, n) / raw_store(addr, data)   never instrumented (a push, a pop, the
      allocator's own accesses) -- they still fault where hardware would
  translate(addr, write) -> the arena offset of addr's byte (KernelBug when it faults)
`current()` -> task id running on this CPU (-1: none), for the reports; `kfence` is
the KFENCE handle (is_kfence range and its hardware check); `stack_fault(addr, va)`
reports a stack guard hit (kstack.py) and returns the KernelBug to raise.
A bad access raises san/report.py's KernelBug after printing the kernel's report; the
access is not performed.

Hot path (no detector): one range test and a memoryview slice for the direct map; a
dict lookup for a vmalloc address whose translation is in the TLB.  With KFENCE the
unchecked direct map ends where its pool begins (the pool is the top of physical
memory): a pool address takes the pool's check -- its page's protection byte, then
KFENCE's fault handling.  The choice between
the plain and the instrumented closures is made here, once.

Ownership: the TLB is this CPU's (tlb.py); init_mm's tables are read without locks, as
hardware walks them; IPIs are answered at the start of every vmalloc-space access, as
mmu.py does for user accesses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.mm.vm import vmalloc_layout as VL
from aerosync.mm.vm.pgtable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, PTE_PFN_MASK, level_shift
from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = ["KernelAccess", "oops_text"]

_P_PSE = _PAGE_PRESENT | _PAGE_PSE


def oops_text(cpu: int, comm: str, pid: int, addr: int, write: bool, why: str, trace: list[str]) -> str:
    """page_fault_oops() / show_fault_oops() for a kernel-mode fault."""
    from aerosync.mm.san.report import cpu_line

    head = (f"BUG: kernel NULL pointer dereference, address: {addr:016x}" if addr < PAGE_SIZE
            else f"BUG: unable to handle page fault for address: {addr:016x}")
    code = 0x2 if write else 0x0
    return "\n".join([head, f"#PF: supervisor {'write' if write else 'read'} access in kernel mode",
                      f"#PF: error_code({code:#06x}) - {why}", "Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI",
                      cpu_line(cpu, comm, pid), "Call Trace:", *(f" {t}" for t in trace), "---[ end trace ]---"])


class KernelAccess:
    """Simulated CPU `cpu`'s kernel-mode accesses (see the module docstring)."""

    def __init__(self, arena: Any, cpu: int, tlb: Any, vmalloc: Any, current: Callable[[], int] | None = None,
                 check: Callable[[int, int, bool], None] | None = None, kfence: Any = None,
                 stack_fault: Callable[[int, int, bool], Exception] | None = None) -> None:
        from aerosync.mm.san.report import call_trace, oops
        from aerosync.mm.slab.layout import VBASE
        from aerosync.mm.vm import mm_types as T
        from aerosync.mm.vm.tlb import KERNEL_ASID

        self.arena, self.cpu = arena, cpu
        q, u8 = arena.u64, arena.u8
        PHYS = arena.off("physmem")
        P8 = PHYS >> 3
        VOFF = VBASE - PHYS
        DM_LO, DM_HI = VBASE, VBASE + arena.sections["physmem"][1]
        KF_LO, KF_HI = (kfence.lo, kfence.hi) if kfence is not None else (0, 0)
        if kfence is not None:
            DM_HI = KF_LO                  # the KFENCE pool tops the direct map: its pages are checked
        kf_translate = kfence.translate if kfence is not None else None
        VM_LO, VM_HI = (vmalloc.start, vmalloc.end) if vmalloc is not None else (0, 0)
        find_vmap_area = vmalloc.find_vmap_area if vmalloc is not None else (lambda a: 0)
        hdr = arena.off("vmhdr")
        levels = q[(hdr + T.H_LEVELS) >> 3]
        root = q[(T.mm_off(arena, 0) + T.M_PGD) >> 3]
        shifts = {lv: level_shift(lv) for lv in range(1, 6)}
        entries = tlb.entries
        get = entries.get
        fill = tlb.fill
        kkey = KERNEL_ASID << 48
        pend_i = tlb.pend_i
        handle_ipi = tlb.handle_ipi
        cur = current or (lambda: -1)

        def who() -> tuple[str, int]:
            tid = cur()
            if tid < 0:
                import os

                return f"aero-cpu{cpu}", os.getpid()
            o = T.task_off(arena, tid)
            return bytes(u8[o + T.T_COMM : o + T.T_COMM + 16]).rstrip(b"\0").decode(errors="replace"), \
                q[(o + T.T_PID) >> 3]

        self.who = who

        def fault(addr: int, write: bool, why: str) -> Exception:
            """A kernel-mode #PF that nothing fixes: a stack guard page, or an oops."""
            if VM_LO <= addr < VM_HI and stack_fault is not None:
                va = find_vmap_area(addr)
                if va and arena.u32[(va + VL.VA_FLAGS) >> 2] & VL.VA_STACK:
                    e = stack_fault(addr, va, write)
                    if e is not None:
                        return e
            comm, pid = who()
            return oops(arena, "oops", oops_text(cpu, comm, pid, addr, write, why, call_trace()), "page-fault")

        def walk(addr: int, write: bool) -> int:
            """The hardware walk of init_mm for a vmalloc address: the leaf entry (a PMD
            leaf as the 4 KiB entry inside it), filled into the TLB; raises on a fault."""
            t = root
            for lvl in range(levels, 1, -1):
                e = q[P8 + (t << 9) + ((addr >> shifts[lvl]) & 511)]
                if not e & _PAGE_PRESENT:
                    raise fault(addr, write, "not-present page")
                if e & _PAGE_PSE:
                    e = (e & ~PTE_PFN_MASK & ~_PAGE_PSE) | ((e & PTE_PFN_MASK) + (((addr >> PAGE_SHIFT) & 511)
                                                                                  << PAGE_SHIFT))
                    break
                t = (e & PTE_PFN_MASK) >> PAGE_SHIFT
            else:
                e = q[P8 + (t << 9) + ((addr >> PAGE_SHIFT) & 511)]
                if not e & _PAGE_PRESENT:
                    raise fault(addr, write, "not-present page")
            if write and not e & _PAGE_RW:
                raise fault(addr, write, "[PROT] permissions violation")
            x = (P8 + ((e & PTE_PFN_MASK) >> 3)) << 12 | (e & 0xFFF)        # tlb.py's tlb_entry(e)
            fill(kkey | (addr >> PAGE_SHIFT), x)
            return x

        def translate(addr: int, write: bool) -> int:
            """Arena offset of addr (the access must not cross a page of the vmalloc
            space or of the KFENCE pool: callers split)."""
            if DM_LO <= addr < DM_HI:
                return addr - VOFF
            if VM_LO <= addr < VM_HI:
                if q[pend_i]:
                    handle_ipi()
                e = get(kkey | (addr >> PAGE_SHIFT))
                if e is None:
                    e = walk(addr, write)
                return ((e >> 12) << 3) + (addr & (PAGE_SIZE - 1))
            if KF_LO <= addr < KF_HI:
                return kf_translate(addr, write)
            raise fault(addr, write, "not-present page")

        def chunks(addr: int, n: int) -> list[tuple[int, int]]:
            out, a, end = [], addr, addr + n
            while a < end:
                stop = min(end, (a | (PAGE_SIZE - 1)) + 1)
                out.append((a, stop - a))
                a = stop
            return out

        def raw_load(addr: int, n: int) -> bytes:
            if addr >= DM_LO and addr + n <= DM_HI:
                o = addr - VOFF
                return bytes(u8[o : o + n])
            if (addr ^ (addr + n - 1)) < PAGE_SIZE:
                o = translate(addr, False)
                return bytes(u8[o : o + n])
            return b"".join(raw_load(a, m) for a, m in chunks(addr, n))

        def raw_store(addr: int, data: bytes) -> None:
            n = len(data)
            if addr >= DM_LO and addr + n <= DM_HI:
                o = addr - VOFF
                u8[o : o + n] = data
                return
            if (addr ^ (addr + n - 1)) < PAGE_SIZE:
                o = translate(addr, True)
                u8[o : o + n] = data
                return
            offs = [(translate(a, True), m) for a, m in chunks(addr, n)]    # all or nothing
            i = 0
            for o, m in offs:
                u8[o : o + m] = data[i : i + m]
                i += m

        def raw_load64(addr: int) -> int:
            if DM_LO <= addr < DM_HI:
                return q[(addr - VOFF) >> 3]
            return q[translate(addr, False) >> 3]

        def raw_store64(addr: int, v: int) -> None:
            if DM_LO <= addr < DM_HI:
                q[(addr - VOFF) >> 3] = v
                return
            q[translate(addr, True) >> 3] = v

        if kf_translate is not None:
            # KFENCE: a pool address (the top of the direct map) goes to the pool's check
            # with one range test, not translate()'s three, and a mapped pool page (its
            # protection byte set: an allocated object's) is accessed without a call;
            # raw_load64/raw_store64 keep the plain ones' five free variables (each is
            # copied into every call's frame)
            KF_PROT = kfence.prot

            def pool_first(addr: int, write: bool) -> int:
                if KF_LO <= addr < KF_HI:
                    if u8[KF_PROT + ((addr - KF_LO) >> PAGE_SHIFT)]:
                        return addr - VOFF
                    return kf_translate(addr, write)
                return translate(addr, write)

            def raw_load64(addr: int) -> int:
                if DM_LO <= addr < DM_HI:
                    return q[(addr - VOFF) >> 3]
                return q[pool_first(addr, False) >> 3]

            def raw_store64(addr: int, v: int) -> None:
                if DM_LO <= addr < DM_HI:
                    q[(addr - VOFF) >> 3] = v
                    return
                q[pool_first(addr, True) >> 3] = v

        if check is None:
            load, store, load64, store64 = raw_load, raw_store, raw_load64, raw_store64
        else:
            def load(addr: int, n: int) -> bytes:
                check(addr, n, False)
                return raw_load(addr, n)

            def store(addr: int, data: bytes) -> None:
                check(addr, len(data), True)
                raw_store(addr, data)

            def load64(addr: int) -> int:
                check(addr, 8, False)
                return raw_load64(addr)

            def store64(addr: int, v: int) -> None:
                check(addr, 8, True)
                raw_store64(addr, v)

        self.load, self.store, self.load64, self.store64 = load, store, load64, store64
        self.raw_load, self.raw_store, self.raw_load64, self.raw_store64 = raw_load, raw_store, raw_load64, raw_store64
        self.translate, self.walk = translate, walk
        self.instrumented = check is not None
