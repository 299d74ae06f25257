"""Fault injection: a simulated CPU that fails on purpose after `after_ops` operations.

Used to prove the harness's death handling (a raised exception, a nonzero exit, a fatal
signal, death while holding a lock) and the soft-lockup watchdog (`stall_holding_lock`:
the victim keeps the lock forever while every other CPU contends for it).  The run must
stop naming the CPU, pid and cause, and leave nothing behind.  CPUs other than `cpu` run
the null operation (or contend for the lock, in stall_holding_lock).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.params import CACHE_LINE
from aerosync.sync.lockstat import lock_alloc
from aerosync.sync.spinlock import SpinLock

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

COUNTERS: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Params:
    mode: Literal["raise", "exit", "sigkill", "sigsegv", "die_holding_lock", "stall_holding_lock"] = "raise"
    cpu: int = 0
    after_ops: int = 1000


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [SectionSpec("fault", CACHE_LINE)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    arena.u64[arena.off("fault") >> 3] = lock_alloc(arena, "fault_lock", "victim")


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    done = 0
    lock = SpinLock(arena, arena.u64[arena.off("fault") >> 3], cpu)

    def fail() -> None:
        if params.mode == "raise":
            raise RuntimeError(f"fault injected on cpu{cpu} after {done} ops")
        if params.mode == "exit":
            os._exit(3)
        if params.mode == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if params.mode == "sigsegv":
            os.kill(os.getpid(), signal.SIGSEGV)
        lock.acquire()
        if params.mode == "die_holding_lock":
            os.kill(os.getpid(), signal.SIGKILL)
        while True:                         # stall_holding_lock: a CPU that never lets go
            time.sleep(1)

    contend = params.mode == "stall_holding_lock"
    acquire, release = lock.acquire, lock.release

    def batch(n: int) -> None:
        nonlocal done
        for _ in range(n):
            done += 1
            if cpu == params.cpu and done >= params.after_ops:
                fail()
            if contend:
                acquire()
                release()

    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    return {}
