"""The kernel side of one simulated CPU: vmalloc, the kernel's own loads and stores (with
the sanitizers' checks), kernel stacks and their call frames.

Models: nothing by itself -- it composes, for one CPU, what Linux has as global kernel
services: mm/vmalloc.c (vmalloc.py), the kernel's memory accesses (kaccess.py) with
KASAN's instrumentation and KFENCE's page protection (mm/san/), kernel/fork.c's
VMAP_STACK stacks (kstack.py) and the stack protector's frames (mm/san/stackprotector.py).
Unit: one simulated CPU in one process.

`KernelCpu(vm)` reuses the VM handle's page allocator, SLUB handle and TLB (the kernel
TLB entries must be the ones that CPU's IPI handler flushes) and is built by VM when the
arena has vmalloc (vm.kernel; None otherwise):
  vmalloc    Vmalloc            kmem     KernelAccess (load/store/raw_*; checked with KASAN)
  kstack     KStacks            frames   StackFrames (the running task's call frames)
  kasan / kfence                the SLUB handle's sanitizers (None when off)
  leave()    the CPU's cached stacks back to vmalloc and its KASAN quarantine to SLUB
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.san.config import debug_params
from aerosync.mm.vm import vmalloc_layout as VL
from aerosync.mm.vm.kaccess import KernelAccess
from aerosync.mm.vm.kstack import KStacks
from aerosync.mm.vm.vmalloc import Vmalloc
from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = ["KernelCpu"]


class KernelCpu:
    """Simulated CPU `vm.cpu`'s kernel services (see the module docstring)."""

    def __init__(self, vm: Any) -> None:
        from aerosync.mm.san.stackprotector import StackFrames

        arena, cpu = vm.arena, vm.cpu
        self.arena, self.cpu, self.vm = arena, cpu, vm
        self.vmalloc = v = Vmalloc(arena, cpu, vm.mm, vm.slub, vm.tlb)
        san = vm.slub.san
        self.kasan = san.kasan if san is not None else None
        self.kfence = san.kfence if san is not None else None
        current = vm.current_task
        PHYS = arena.off("physmem")
        start, end = v.start, v.end
        to_page = v.vmalloc_to_page

        def to_pfn(a: int) -> int:
            return to_page(a) if start <= a < end else -2

        def vm_area(a: int) -> tuple[int, int, str] | None:
            from aerosync.mm.slab.slab_debug import depot_fetch

            va = v.find_vmap_area(a)
            if not va:
                return None
            q = arena.u64
            fl = arena.u32[(va + VL.VA_FLAGS) >> 2]
            s = q[(va + VL.VA_START) >> 3] + (PAGE_SIZE if fl & VL.VA_STACK else 0)
            caller = "vm_map_ram" if fl & VL.VA_BLOCK else depot_fetch(arena, q[(va + VL.VA_CALLER) >> 3])
            return s, q[(va + VL.VA_END) >> 3], caller

        self.kstack = ks = KStacks(arena, cpu, v, self._who)
        check = None
        shadow = None
        if self.kasan is not None:
            lo, hi = (self.kfence.lo, self.kfence.hi) if self.kfence is not None else (0, 0)
            check = self.kasan.checker(to_pfn, self._who, vm_area, lo, hi)
            sh = self.kasan.shadow

            def shadow(va: int, n: int, value: int) -> None:
                pfn = to_pfn(va)
                if pfn >= 0:
                    o = PHYS + (pfn << PAGE_SHIFT) + (va & (PAGE_SIZE - 1))
                    if value:
                        sh.poison(o & ~7, (n + (o & 7) + 7) & ~7, value)
                    else:
                        sh.unpoison(o & ~7, (n + (o & 7) + 7) & ~7)

        self.kmem = KernelAccess(arena, cpu, vm.tlb, v, current=current, check=check, kfence=self.kfence,
                                 stack_fault=ks.stack_fault)
        ks.kmem = self.kmem
        self.frames = StackFrames(arena, cpu, self.kmem, current, debug_params(arena.config)["stack_protector"],
                                  shadow)

    def _who(self) -> tuple[str, int]:
        return self.kmem.who()

    def task_created(self, tid: int) -> None:
        self.kstack.alloc(tid)

    def task_released(self, tid: int) -> None:
        self.frames.stacks.pop(tid, None)
        self.kstack.free(tid)

    def leave(self) -> None:
        """The CPU goes: its cached stacks back to vmalloc, its quarantine to SLUB."""
        self.kstack.drain()
        if self.kasan is not None:
            from aerosync.mm.san.kasan import kasan_cpu_offline

            kasan_cpu_offline(self.arena, self.cpu, self.vm.slub)
