"""Repairing SLUB after a simulated CPU died inside it (filled in below)."""

from __future__ import annotations

from typing import Any

from aerosync.mm import intent as I
from aerosync.mm.slab.slab_common import K_LOCK, K_PCS_LOCK, _cpu_off, _geo, live_caches

__all__ = ["reset_cpu_locks", "recover_record", "fsck"]


def reset_cpu_locks(arena: Any, cpu: int) -> None:
    """The dead CPU's c->lock and pcs lock of every live cache: free (their holder died)."""
    _, nr_cpus, _, mag, _ = _geo(arena)
    for cid in live_caches(arena):
        ko = _cpu_off(arena, cid, cpu, nr_cpus, mag)
        arena.atomic.store64(ko + K_LOCK, 0)
        arena.atomic.store64(ko + K_PCS_LOCK, 0)


def recover_record(arena: Any, slub: Any, rec: I.Record, spill: list[int]) -> dict[str, int]:
    return {}


def fsck(arena: Any, slub: Any) -> dict[str, int]:
    return {}
