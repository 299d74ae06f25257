"""Counter storm: fetch_add on one shared counter, or on per-CPU counters.

Models the vmstat lesson (mm/vmstat.c): a counter every CPU bumps is one cache line
bouncing between CPUs, so Linux keeps per-CPU diffs and sums on read.  Modes:

  * percpu  each CPU adds to its own counter, each on its own 64-byte line;
  * shared  every CPU adds to one counter (the line ping-pongs);
  * percpu with false_sharing = true: per-CPU counters packed 8 bytes apart on one line,
    logically private yet physically shared.

Check: the counters' sum equals the operations done (atomics lose nothing).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.params import CACHE_LINE

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

COUNTERS: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Params:
    mode: Literal["percpu", "shared"] = "percpu"
    false_sharing: bool = False

    def validate(self) -> str | None:
        if self.false_sharing and self.mode != "percpu":
            return "false_sharing = true needs mode = \"percpu\" (the shared counter is one word already)"
        return None


def _counter_off(arena: Arena, params: Params, cpu: int) -> int:
    base = arena.off("ctr")
    if params.mode == "shared":
        return base
    stride = 8 if params.false_sharing else CACHE_LINE
    return base + CACHE_LINE + cpu * stride


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [SectionSpec("ctr", CACHE_LINE + nr_cpus * CACHE_LINE)]


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    pass


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    fa = arena.atomic.fetch_add64
    off = _counter_off(arena, params, cpu)

    def batch(n: int) -> None:
        for _ in range(n):
            fa(off, 1)

    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    nr_cpus = len(result["cpus"])
    total = sum(c["ops"] for c in result["cpus"])
    if params.mode == "shared":
        counted = arena.atomic.load64(_counter_off(arena, params, 0))
    else:
        counted = sum(arena.atomic.load64(_counter_off(arena, params, c)) for c in range(nr_cpus))
    return {"counted": counted, "lost_updates": total - counted}
