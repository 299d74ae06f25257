"""Simulated kernel call frames on a task's kernel stack, with the stack protector's canary.

Models: what -fstack-protector-strong compiles into a function with a local buffer (the
prologue stores the task's canary between the locals and the saved frame pointer; the
epilogue compares it and calls __stack_chk_fail), kernel/panic.c __stack_chk_fail
("stack-protector: Kernel stack is corrupted in: %pB"), the per-task canary of
include/linux/stackprotector.h (boot_init_stack_canary / get_random_canary, copied into
each task at fork), -fstack-clash-protection's probes (a big frame touches each page it
spans, so it cannot jump over the guard page), and KASAN's stack redzones (with KASAN on,
the words above the locals read KASAN_STACK_RIGHT, so an overflowing store is a
"stack-out-of-bounds" report before it reaches the canary).  Unit: one frame.

API: `StackFrames(arena, cpu, kmem, current, enabled, shadow=None)` -- the CPU's frames,
per task (the task running now, `current()`):
  call(fn, locals_size) -> the locals' address      push a frame (return address, saved
                                                     frame pointer, canary, locals)
  ret()                                              pop it, checking the canary first
  depth() / used() -> frames / bytes in use          reset() forget the task's frames
Frame layout, the stack growing down (x86-64)::

    higher   return address   (call)
             saved rbp        (push %rbp)
             canary           (mov %gs:stack_canary, -8(%rbp)), when the protector is on
    lower    locals           (sub $n, %rsp), 8-byte aligned; a buffer overflow runs up
                              into the canary
The pushes are uninstrumented stores (kmem.raw_store64): one that lands in the guard page
below the stack faults there and is reported as a kernel stack overflow (mm/vm/kstack.py).
A canary mismatch raises san/report.py's KernelBug (kind "stack-protector"): the frame is
not popped, as __stack_chk_fail does not return.

Owner-only: the frame lists are this CPU's (a task runs on one CPU at a time here).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from aerosync.mm.san import report as R
from aerosync.params import PAGE_SIZE

__all__ = ["StackFrames", "KASAN_STACK_RIGHT", "FRAME_OVERHEAD"]

KASAN_STACK_RIGHT = 0xF3
FRAME_OVERHEAD = 24                     # return address + saved rbp + canary
_TEXT = 0xFFFF_FFFF_8100_0000


class StackFrames:
    """Simulated call frames of the tasks running on CPU `cpu` (see the module docstring)."""

    def __init__(self, arena: Any, cpu: int, kmem: Any, current: Callable[[], int], enabled: bool,
                 shadow: Callable[[int, int, int], None] | None = None) -> None:
        from aerosync.mm.vm import mm_types as T
        from aerosync.mm.vm.vmalloc_layout import THREAD_SIZE

        self.arena, self.cpu, self.enabled = arena, cpu, enabled
        q = arena.u64
        store64, load64 = kmem.raw_store64, kmem.raw_load64
        stacks: dict[int, list[Any]] = {}          # tid -> [sp, frames]
        self.stacks = stacks

        def state() -> tuple[int, list[Any]]:
            tid = current()
            st = stacks.get(tid)
            if st is None:
                base = q[(T.task_off(arena, tid) + T.T_KSTACK) >> 3] if tid >= 0 else 0
                if not base:
                    raise R.KernelBug("oops", f"cpu{cpu}: task {tid} has no kernel stack (VMAP_STACK not set up)")
                st = stacks[tid] = [base + THREAD_SIZE, []]
            return tid, st

        def call(fn: str, locals_size: int) -> int:
            """A function's prologue: the frame below the current stack pointer."""
            tid, st = state()
            sp = st[0]
            frames = st[1]
            top = sp
            sp -= 8
            store64(sp, _TEXT + (zlib.crc32(fn.encode()) & 0xFF_FFFF))     # return address
            sp -= 8
            store64(sp, frames[-1][1] if frames else 0)                     # saved rbp
            canary_at = 0
            if enabled:
                sp -= 8
                canary_at = sp
                store64(sp, q[(T.task_off(arena, tid) + T.T_CANARY) >> 3])
            n = (locals_size + 7) & ~7
            lo = sp - n
            probe = sp - PAGE_SIZE
            while probe >= lo:                                              # stack-clash probes
                store64(probe & ~7, 0)
                probe -= PAGE_SIZE
            if n:
                store64(lo, 0)
            if shadow is not None:
                shadow(sp, top - sp, KASAN_STACK_RIGHT)
            frames.append((fn, top, canary_at, lo, n))
            st[0] = lo
            return lo

        def ret() -> None:
            """The epilogue: compare the canary, pop the frame."""
            tid, st = state()
            frames = st[1]
            if not frames:
                raise R.KernelBug("oops", f"cpu{cpu}: ret with no frame on task {tid}'s stack")
            fn, top, canary_at, lo, n = frames[-1]
            if canary_at:
                want = q[(T.task_off(arena, tid) + T.T_CANARY) >> 3]
                got = load64(canary_at)
                if got != want:
                    o = T.task_off(arena, tid)
                    comm = bytes(arena.u8[o + T.T_COMM : o + T.T_COMM + 16]).rstrip(b"\0").decode(errors="replace")
                    pid = q[(o + T.T_PID) >> 3]
                    text = "\n".join([
                        f"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: "
                        f"{fn}+{n + FRAME_OVERHEAD:#x}/{n + FRAME_OVERHEAD:#x}",
                        R.cpu_line(cpu, comm, pid), "Call Trace:", " __stack_chk_fail+0x10/0x10",
                        *(f" {f}" for f in R.call_trace()),
                        f"frame {fn} of task {comm}/{pid} on CPU {cpu}: locals [{lo:016x}, {lo + n:016x}), "
                        f"canary at {canary_at:016x}: expected {want:016x}, found {got:016x}"])
                    raise R.oops(arena, "stack-protector", text, "stack-protector")
            if shadow is not None:
                shadow(lo + n, top - lo - n, 0)
            frames.pop()
            st[0] = top

        def depth() -> int:
            return len(state()[1][1])

        def used() -> int:
            tid, st = state()
            base = q[(T.task_off(arena, tid) + T.T_KSTACK) >> 3]
            return base + THREAD_SIZE - st[0]

        def reset() -> None:
            """Forget the running task's frames (an oops unwound them), their redzones too."""
            st = stacks.pop(current(), None)
            if st is not None and shadow is not None:
                for _fn, top, _c, lo, n in st[1]:
                    shadow(lo + n, top - lo - n, 0)

        self.call, self.ret, self.depth, self.used, self.reset = call, ret, depth, used, reset
