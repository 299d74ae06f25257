"""The null workload: an operation that does nothing.

Its ops/s is the harness's own ceiling (batch loop, publishing, stop checks), reported
beside every other figure so a workload's cost per operation can be read net of it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report"]

COUNTERS: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Params:
    pass


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return []


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    pass


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    def batch(n: int) -> None:
        for _ in range(n):
            pass

    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    return {}
