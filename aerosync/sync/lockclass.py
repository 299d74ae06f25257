"""Lock classes of embedded locks (sync/objlock.py) and their per-CPU lock_stat lines.

Models: lockdep's lock classes with CONFIG_LOCK_STAT's per-CPU statistics
(kernel/locking/lockdep.c: cpu_lock_stats, lock_stats() summing them).  Unit: a class
(e.g. "ptlock", "&mm->mmap_lock"): locks embedded in objects have no slot of their own.

Section "objlock"::

    header      0 nr_classes u64   8 rwsem wait ticket u64 (atomic: queue order of
                waiters, sync/objlock.py) | one OBJ_CLASS_REC per class: name (32 B),
                kind u32
    per CPU     MAX_OBJ_CLASSES x 2 sides (0 = write/exclusive, 1 = read) x one cache
                line of u64: acquisitions, contentions, wait_total, wait_max, wait_min
                (0 = none yet), hold_total, hold_samples, hold_max (ns)
    waiters     nr_cpus + 1 cache lines: each CPU's waiter node (the last row serves
                handles whose cpu id is outside the machine); layout in sync/objlock.py

The class table is append-only and written at set-up (before workers start); each CPU
writes only its own statistics lines; readers sum them without locks (a racy but untorn
snapshot).  Waiter nodes follow objlock.py's wait-list protocol.
"""

from __future__ import annotations

from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.errors import LockError
from aerosync.params import CACHE_LINE

__all__ = ["MAX_OBJ_CLASSES", "OBJ_SPIN", "OBJ_RW", "objlock_section", "objlock_class", "class_name", "stat_idx",
           "class_stats", "waiter_node", "wait_ticket_off"]

MAX_OBJ_CLASSES = 16
OBJ_SPIN, OBJ_RW = 1, 2
OBJ_CLASS_REC = 64
_HDR = CACHE_LINE + MAX_OBJ_CLASSES * OBJ_CLASS_REC
_LINE = CACHE_LINE
_CPU_REC = MAX_OBJ_CLASSES * 2 * _LINE
_ACQ, _CON, _WTOT, _WMAX, _WMIN, _HTOT, _HSAMP, _HMAX = range(8)


def objlock_section(nr_cpus: int) -> SectionSpec:
    return SectionSpec("objlock", _HDR + nr_cpus * _CPU_REC + (nr_cpus + 1) * _LINE, align=CACHE_LINE)


def waiter_node(arena: Any, row: int) -> int:
    """Byte offset of waiter node `row` (a CPU id, or nr_cpus for the spare row)."""
    nr_cpus = int(arena.config["nr_cpus"])
    if not 0 <= row <= nr_cpus:
        raise LockError(f"objlock: no waiter node {row} (rows 0..{nr_cpus})")
    return arena.off("objlock") + _HDR + nr_cpus * _CPU_REC + row * _LINE


def wait_ticket_off(arena: Any) -> int:
    return arena.off("objlock") + 8


def objlock_class(arena: Any, name: str, kind: int) -> int:
    """Register (or find) lock class `name` (e.g. "ptlock"); returns its id.  Set-up time
    (the coordinator, before workers start): the table is append-only."""
    base = arena.off("objlock")
    q = arena.u64
    n = q[base >> 3]
    raw = name.encode()
    if not 0 < len(raw) <= 32:
        raise LockError(f"objlock_class: class name {name!r} must be 1..32 bytes")
    for c in range(n):
        o = base + CACHE_LINE + c * OBJ_CLASS_REC
        if bytes(arena.u8[o : o + 32]).rstrip(b"\0") == raw:
            return c
    if n >= MAX_OBJ_CLASSES:
        raise LockError(f"objlock_class: class table full ({MAX_OBJ_CLASSES})")
    o = base + CACHE_LINE + n * OBJ_CLASS_REC
    arena.u8[o : o + 32] = raw.ljust(32, b"\0")
    arena.u32[(o + 32) >> 2] = kind
    q[base >> 3] = n + 1
    return n


def class_off(arena: Any, cls: int) -> int:
    base = arena.off("objlock")
    if not 0 <= cls < arena.u64[base >> 3]:
        raise LockError(f"objlock: no lock class {cls}")
    return base + CACHE_LINE + cls * OBJ_CLASS_REC


def class_name(arena: Any, cls: int) -> str:
    o = class_off(arena, cls)
    return bytes(arena.u8[o : o + 32]).rstrip(b"\0").decode()


def stat_idx(arena: Any, cpu: int, cls: int, side: int) -> int:
    return (arena.off("objlock") + _HDR + cpu * _CPU_REC + (cls * 2 + side) * _LINE) >> 3




def class_stats(arena: Any) -> list[dict[str, int | str]]:
    """Per class: write/exclusive and read figures summed over CPUs (classes never used
    are left out)."""
    if "objlock" not in arena.sections:
        return []
    q = arena.u64
    nr_classes = q[arena.off("objlock") >> 3]
    nr_cpus = int(arena.config["nr_cpus"])
    out: list[dict[str, int | str]] = []
    for cls in range(nr_classes):
        kind = arena.u32[(class_off(arena, cls) + 32) >> 2]
        row: dict[str, int | str] = {"lock_class": class_name(arena, cls), "kind": kind}
        for side, pre in ((0, ""), (1, "r_")):
            acq = con = wtot = wmax = wmin = htot = hs = hmax = 0
            for c in range(nr_cpus):
                i = stat_idx(arena, c, cls, side)
                acq += q[i + _ACQ]
                con += q[i + _CON]
                wtot += q[i + _WTOT]
                wmax = max(wmax, q[i + _WMAX])
                m = q[i + _WMIN]
                if m and (not wmin or m < wmin):
                    wmin = m
                htot += q[i + _HTOT]
                hs += q[i + _HSAMP]
                hmax = max(hmax, q[i + _HMAX])
            row.update({pre + "acq": acq, pre + "con": con, pre + "wait_total": wtot, pre + "wait_max": wmax,
                        pre + "wait_min": wmin, pre + "hold_total": htot * acq // hs if hs else 0,
                        pre + "hold_samples": hs, pre + "hold_max": hmax})
        if row["acq"] or row["r_acq"]:
            out.append(row)
    return out
