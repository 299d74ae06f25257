"""Helpers shared by workloads: the per-CPU counter block of the arena."""

from __future__ import annotations

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.params import CPU_AREA_SIZE

__all__ = ["counter_index", "cpu_counters"]


def counter_index(arena: Arena, cpu: int, i: int) -> int:
    """Index into arena.u64 of counter `i` of simulated CPU `cpu` (owner writes only)."""
    return (arena.off("cpu") + cpu * CPU_AREA_SIZE + L.CPU_COUNTERS) // 8 + i


def cpu_counters(arena: Arena, cpu: int, names: tuple[str, ...]) -> dict[str, int]:
    base = counter_index(arena, cpu, 0)
    return {n: arena.u64[base + i] for i, n in enumerate(names)}
