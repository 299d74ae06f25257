"""Child body of the VM stress test (tests/test_vm_stress.py): one simulated CPU, a
thread of one shared address space, doing random system calls and verified accesses.

Invariant it checks on its own: every word it wrote reads back unchanged until it unmaps
or discards it (MADV_DONTNEED reads zero), across other CPUs' mmaps, munmaps, mprotects
and forks in the same mm, TLB shootdowns and the parent's pauses.
"""

from __future__ import annotations

import random
import time
import traceback

from aerosync.arena.segment import Arena

PG = 4096
# control block words (u64 index from the block's start)
C_GO, C_PAUSE, C_STOP = 0, 1, 2
C_PARKED = 8                  # + cpu: 1 while parked at the pause
C_OPS = 24                    # + cpu
C_BAD = 40                    # + cpu
C_DONE = 56                   # + cpu
ERR_OFF = 4096                # per cpu 3072 bytes of error text


def run(name: str, cpu: int, mm: int, ctl: int, nops: int, seed: int, fid: int, arena: Arena | None = None) -> None:
    from aerosync.mm.vm import mmap as M
    from aerosync.mm.vm.memory import SegmentationFault
    from aerosync.mm.vm.vm import VM

    a = arena if arena is not None else Arena.attach(name)
    q = a.u64
    c8 = ctl >> 3
    vm = None
    try:
        vm = VM(a, cpu)
        tid = vm.task_create(f"stress{cpu}", mm=mm)
        vm.switch_to(tid)
        rng = random.Random(seed * 101 + cpu)
        errs: list[str] = []

        def bad(what: str, va: int, want: int, got: int, reg: list) -> None:
            """A word that did not read back: counted, and the first few described in
            this CPU's error text (the test prints it)."""
            q[c8 + C_BAD + cpu] += 1
            if len(errs) < 6:
                errs.append(f"op {op} {what}: {va:#x} ({reg[4]} region {reg[0]:#x} + {reg[1]} pages, "
                            f"{'rw' if reg[2] else 'ro'}) read {got:#x}, wrote {want:#x}")
                text = ("\n".join(errs) + "\n").encode()[-3000:]
                o = ctl + ERR_OFF + cpu * 3072
                a.u8[o : o + len(text)] = text
        regions: list[list] = []          # [addr, npages, writable, {offset: value}, kind]
        seq = 0
        while not q[c8 + C_GO]:
            time.sleep(0.001)
        for op in range(nops):
            if q[c8 + C_PAUSE]:
                q[c8 + C_PARKED + cpu] = 1
                while q[c8 + C_PAUSE]:
                    vm.poll()
                    time.sleep(0.0005)
                q[c8 + C_PARKED + cpu] = 0
            r = rng.random()
            if r < 0.15 or not regions:
                n = rng.randint(1, 16)
                kind = rng.choice(("anon", "anon", "shared", "file"))
                if kind == "anon":
                    addr = vm.mmap(0, n * PG, 3, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
                elif kind == "shared":
                    addr = vm.mmap(0, n * PG, 3, M.MAP_SHARED | M.MAP_ANONYMOUS)
                else:
                    addr = vm.mmap(0, n * PG, 3, M.MAP_PRIVATE, fid, rng.randint(0, 16) * PG)
                regions.append([addr, n, True, {}, kind])
            elif r < 0.55:
                reg = rng.choice(regions)
                k = rng.randrange(reg[1])
                va = reg[0] + k * PG + 8 * rng.randrange(8)
                if reg[2]:
                    seq += 1
                    v = cpu << 48 | seq
                    vm.store64(va, v)
                    reg[3][va - reg[0]] = v
            elif r < 0.80:
                reg = rng.choice(regions)
                for off, v in list(reg[3].items())[:8]:
                    got = vm.load64(reg[0] + off)
                    if got != v:
                        bad("load", reg[0] + off, v, got, reg)
            elif r < 0.88:
                reg = regions.pop(rng.randrange(len(regions)))
                for off, v in reg[3].items():
                    got = vm.load64(reg[0] + off)
                    if got != v:
                        bad("before munmap", reg[0] + off, v, got, reg)
                if reg[1] > 1 and rng.random() < 0.5:
                    keep = rng.randrange(1, reg[1])
                    vm.munmap(reg[0] + keep * PG, (reg[1] - keep) * PG)
                    reg[1] = keep
                    reg[3] = {o: v for o, v in reg[3].items() if o < keep * PG}
                    regions.append(reg)
                else:
                    vm.munmap(reg[0], reg[1] * PG)
            elif r < 0.93:
                reg = rng.choice(regions)
                reg[2] = not reg[2]
                vm.mprotect(reg[0], reg[1] * PG, 3 if reg[2] else 1)
            elif r < 0.97:
                reg = rng.choice(regions)
                if reg[4] == "anon":
                    vm.madvise(reg[0], reg[1] * PG, M.MADV_DONTNEED)
                    for off in list(reg[3]):
                        reg[3][off] = 0
            else:
                child = vm.fork()
                me = vm.current_task()
                vm.switch_to(child)
                for reg in regions:
                    for off, v in list(reg[3].items())[:4]:
                        try:
                            got = vm.load64(reg[0] + off)
                            if got != v:
                                bad("in the fork child", reg[0] + off, v, got, reg)
                        except SegmentationFault:
                            bad("in the fork child (SIGSEGV)", reg[0] + off, v, -1, reg)
                vm.exit(child)
                vm.reap(child)
                vm.switch_to(me)
            q[c8 + C_OPS + cpu] = op + 1
        for reg in regions:
            vm.munmap(reg[0], reg[1] * PG)
        vm.exit()
    except BaseException:
        text = traceback.format_exc().encode()[-3000:]
        o = ctl + ERR_OFF + cpu * 3072
        a.u8[o : o + len(text)] = text
        q[c8 + C_BAD + cpu] += 1_000_000
    finally:
        if vm is not None:
            vm.leave()
        q[c8 + C_DONE + cpu] = 1
        if arena is None:
            a.close()
