"""Kernel stacks: every task's THREAD_SIZE stack is vmalloc'ed between guard pages, and a
run past its end is reported as a kernel stack overflow.

Models: kernel/fork.c with CONFIG_VMAP_STACK (alloc_thread_stack_node: __vmalloc_node_range
of THREAD_SIZE, the per-CPU cached_stacks[NR_CACHED_STACKS] reused after a memset,
free_thread_stack putting a stack back in the cache or vfree'ing it; the task's
stack_canary from get_random_canary) and arch/x86/kernel/traps.c handle_stack_overflow
("BUG: TASK stack guard page was hit at ... (stack is ...)", then die("stack guard
page")).  Unit: a task's stack: [base, base + THREAD_SIZE), its vmap_area one guard page
below and one above (vmalloc.py vmalloc_stack; the C kernel's vmalloc_node_stack).

API: `KStacks(arena, cpu, vmalloc, who)`:
  alloc(tid, nid=-1) -> base        the task record's kstack (T_KSTACK) and stack_canary
                                    (T_CANARY) set; VMError ENOMEM when vmalloc fails
  free(tid)                         free_thread_stack(): into this CPU's cache, else vfree
  stack_fault(addr, va, write) -> KernelBug | None   kaccess.py's #PF hook: a guard page
                                    of a stack -> the stack overflow report (None: not a guard)
  drain()                           this CPU's cached stacks back to vmalloc (teardown)
`kmem` (set by the composer, mm/vm/kernel.py) zeroes a cached stack before reuse.

Ownership: a task's kstack and canary fields are written by the CPU creating or reaping
the task (the task is not running); the cache slots of a CPU are owner-only words of its
vmap_block_queue record.  The owner of a stack's area (VA_VB: task id + 1) names the task
in the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vmalloc_layout as VL
from aerosync.params import PAGE_SIZE

__all__ = ["KStacks", "CANARY_MASK", "get_random_canary"]

CANARY_MASK = 0xFFFF_FFFF_FFFF_FF00          # x86-64: the low byte is zero (stops a string overflow)


def get_random_canary() -> int:
    return int.from_bytes(os.urandom(8), "little") & CANARY_MASK


class KStacks:
    """Simulated CPU `cpu`'s kernel-stack management (see the module docstring)."""

    def __init__(self, arena: Any, cpu: int, vmalloc: Any, who: Callable[[], tuple[str, int]]) -> None:
        from aerosync.mm.san.report import call_trace, cpu_line, oops

        self.arena, self.cpu, self.vmalloc = arena, cpu, vmalloc
        self.kmem: Any = None
        q, u32 = arena.u64, arena.u32
        zero = bytes(PAGE_SIZE)

        def alloc(tid: int, nid: int = -1) -> int:
            """alloc_thread_stack_node(): a cached stack (cleared) or a new one."""
            base = vmalloc.stack_cache_get()
            if base:
                for k in range(VL.THREAD_SIZE // PAGE_SIZE):
                    if self.kmem is not None:
                        self.kmem.raw_store(base + k * PAGE_SIZE, zero)
                va = vmalloc.find_vmap_area(base)
                if va:
                    q[(va + VL.VA_VB) >> 3] = tid + 1
            else:
                base = vmalloc.vmalloc_stack(nid, tid + 1)
                if not base:
                    raise T.VMError("ENOMEM", f"alloc_thread_stack_node(task {tid}): no kernel stack")
            o = T.task_off(arena, tid)
            q[(o + T.T_KSTACK) >> 3] = base
            q[(o + T.T_CANARY) >> 3] = get_random_canary()
            return base

        def free(tid: int) -> None:
            """free_thread_stack(): this CPU's cache first (NR_CACHED_STACKS), else vfree."""
            o = T.task_off(arena, tid)
            base = q[(o + T.T_KSTACK) >> 3]
            if not base:
                return
            q[(o + T.T_KSTACK) >> 3] = 0
            va = vmalloc.find_vmap_area(base)
            if va:
                q[(va + VL.VA_VB) >> 3] = 0
            if not vmalloc.stack_cache_put(base):
                vmalloc.vfree(base)

        def stack_fault(addr: int, va: int, write: bool) -> Exception | None:
            """handle_stack_overflow(): addr is in one of the stack area's guard pages."""
            s, e = q[(va + VL.VA_START) >> 3], q[(va + VL.VA_END) >> 3]
            base = s + PAGE_SIZE
            if base <= addr < base + VL.THREAD_SIZE or not s <= addr < e:
                return None
            owner = q[(va + VL.VA_VB) >> 3] - 1
            comm, pid = who()
            if owner >= 0:
                to = T.task_off(arena, owner)
                comm = bytes(arena.u8[to + T.T_COMM : to + T.T_COMM + 16]).rstrip(b"\0").decode(errors="replace")
                pid = q[(to + T.T_PID) >> 3]
            text = "\n".join([
                f"BUG: TASK stack guard page was hit at {addr:016x} "
                f"(stack is {base:016x}..{base + VL.THREAD_SIZE:016x})",
                "Oops: stack guard page: 0000 [#1] PREEMPT SMP NOPTI", cpu_line(cpu, comm, pid),
                f"RIP: 0010:{(call_trace(1) or ['?'])[0]}", f"RSP: 0018:{addr:016x}",
                "Call Trace:", *(f" {f}" for f in call_trace()),
                f"Kernel stack overflow: task {comm}/{pid} on CPU {cpu}, {'write' if write else 'read'} at "
                f"{addr:016x}, {base - addr if addr < base else addr - base - VL.THREAD_SIZE + 1} bytes past the "
                f"{'bottom' if addr < base else 'top'} of the stack"])
            return oops(arena, "stack-overflow", text, "stack-overflow")

        def drain() -> int:
            return vmalloc.drain_stack_cache(cpu)

        self.alloc, self.free, self.stack_fault, self.drain = alloc, free, stack_fault, drain
        _ = u32
