"""Deep kernel call chains on each CPU's task stack, with fault injection for the stack
protector and the guard page.

Models what a deep kernel path (a filesystem over a block layer over a network stack)
does to a 16 KiB VMAP stack: frames of random size (16..`frame_bytes` of locals) are
pushed down to a random depth (up to `max_depth`), each frame fills its locals through
the kernel's instrumented stores and checks them on the way back, each return compares
the canary (mm/san/stackprotector.py).  Operation = one call chain, down and back up.

Fault injection (off by default): `overflow_pct` % of the chains overflow the innermost
frame's buffer by `overflow_bytes` (a canary smash: caught at its return by the stack
protector, or before by KASAN's stack redzone); `deep_pct` % recurse until a push hits
the guard page below the stack (a kernel stack overflow, reported as such).  A caught
fault kills the chain, as an oops kills the task's kernel path; the CPU's frames are
unwound (reset) and the next chain starts fresh.

Counters: chains, frames (pushed), deepest (most stack bytes in use seen), smashes and
smashes_caught, overflows and overflows_caught, corrupt (a frame's locals changed under
it).  The report's `missed` = injected faults nothing caught (stack_protector off, or a
guard that was not hit).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.san.report import KernelBug, set_console
from workers.workloads._common import counter_index
from workers.workloads._vm import cpu_vm, recover

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

COUNTERS: tuple[str, ...] = ("chains", "frames", "deepest", "smashes", "smashes_caught", "overflows",
                             "overflows_caught", "corrupt")
(_C_CHAINS, _C_FRAMES, _C_DEEPEST, _C_SMASH, _C_SMASH_OK, _C_OVER, _C_OVER_OK, _C_CORRUPT) = range(8)


@dataclass(frozen=True, slots=True)
class Params:
    max_depth: int = 24           # frames of one chain at most
    frame_bytes: int = 256        # locals of a frame at most (16..)
    overflow_pct: int = 0         # % of chains whose innermost buffer overflows (fault injection)
    overflow_bytes: int = 16      # by how much
    deep_pct: int = 0             # % of chains that recurse into the guard page (fault injection)
    quiet: bool = True            # keep the injected faults' reports off stderr (they are counted)

    def validate(self) -> str | None:
        if not 1 <= self.max_depth <= 1024:
            return f"max_depth = {self.max_depth}: allowed 1..1024"
        if not 16 <= self.frame_bytes <= 4096:
            return f"frame_bytes = {self.frame_bytes}: allowed 16..4096"
        if not 1 <= self.overflow_bytes <= 256:
            return f"overflow_bytes = {self.overflow_bytes}: allowed 1..256"
        for k in ("overflow_pct", "deep_pct"):
            if not 0 <= getattr(self, k) <= 100:
                return f"{k} = {getattr(self, k)}: allowed 0..100"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return []


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    return None


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, "stack_depth")
    if params.quiet:
        set_console(False)
    k = vm.kernel
    fr = k.frames
    call, ret, used, reset = fr.call, fr.ret, fr.used, fr.reset
    store, load = k.kmem.store, k.kmem.load
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    randrange = rng.randrange
    max_depth, fmax = params.max_depth, params.frame_bytes
    opct, obytes, dpct = params.overflow_pct, params.overflow_bytes, params.deep_pct

    def chain(depth: int, smash: bool) -> None:
        stack: list[tuple[int, bytes]] = []
        for d in range(depth):
            n = 16 + randrange(fmax - 15)
            loc = call(f"kfunc_{d % 32}", n)
            pat = bytes([(cpu + d) & 0xFF]) * n
            store(loc, pat)
            stack.append((loc, pat))
            q[c0 + _C_FRAMES] += 1
        u = used()
        if u > q[c0 + _C_DEEPEST]:
            q[c0 + _C_DEEPEST] = u
        if smash and stack:
            loc, pat = stack[-1]
            store(loc, pat + b"\xaa" * obytes)         # memcpy past the buffer
        for loc, pat in reversed(stack):
            if load(loc, len(pat)) != pat:
                q[c0 + _C_CORRUPT] += 1
            ret()

    def recurse() -> None:
        d = 0
        while True:                                    # until the guard page stops it
            call(f"recursive_{d % 8}", 16 + randrange(fmax - 15))
            q[c0 + _C_FRAMES] += 1
            d += 1
            if d > 100_000:
                return

    def batch(n: int) -> None:
        for _ in range(n):
            if dpct and randrange(100) < dpct:
                q[c0 + _C_OVER] += 1
                try:
                    recurse()
                except KernelBug as e:
                    if e.kind in ("stack-overflow", "kasan"):
                        q[c0 + _C_OVER_OK] += 1
                reset()
                q[c0 + _C_CHAINS] += 1
                continue
            smash = bool(opct) and randrange(100) < opct
            if smash:
                q[c0 + _C_SMASH] += 1
            try:
                chain(1 + randrange(max_depth), smash)
            except KernelBug as e:
                if smash and e.kind in ("stack-protector", "kasan"):
                    q[c0 + _C_SMASH_OK] += 1
                else:
                    raise
                reset()
            q[c0 + _C_CHAINS] += 1

    def teardown() -> None:
        reset()
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.poll  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    tot = {k: sum(c["counters"][k] for c in result["cpus"]) for k in COUNTERS}
    tot["deepest"] = max((c["counters"]["deepest"] for c in result["cpus"]), default=0)
    tot["missed"] = tot["smashes"] - tot["smashes_caught"] + tot["overflows"] - tot["overflows_caught"]
    return tot
