"""Kernel-format text views of an arena (the /proc files of the simulated kernel).

Each view is `fn(arena) -> str` in the kernel's own layout, with a JSON twin
`fn(arena) -> object` carrying the same figures.  The registry grows as subsystems
land; the coordinator snapshots every registered view before and after a run.
Views only read the arena: they take no lock, so figures from a live run are a racy
but untorn snapshot, as /proc's are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.arena.segment import Arena
from aerosync.sync import lockstat

__all__ = ["VIEWS", "render", "render_json", "snapshot_all"]


def _lock_stat_text(arena: Arena) -> str:
    return lockstat.render_lock_stat(lockstat.snapshot(arena))


def _lock_stat_json(arena: Arena) -> Any:
    return lockstat.lock_stat_dict(lockstat.snapshot(arena))


VIEWS: dict[str, tuple[Callable[[Arena], str], Callable[[Arena], Any]]] = {
    "lock_stat": (_lock_stat_text, _lock_stat_json),
}


def render(arena: Arena, view: str) -> str:
    return VIEWS[view][0](arena)


def render_json(arena: Arena, view: str) -> Any:
    return VIEWS[view][1](arena)


def snapshot_all(arena: Arena) -> dict[str, dict[str, Any]]:
    """{view: {"text": ..., "json": ...}} for every view this arena supports."""
    out = {}
    for name, (text, js) in VIEWS.items():
        try:
            out[name] = {"text": text(arena), "json": js(arena)}
        except KeyError:      # the arena lacks the sections this view reads
            continue
    return out
