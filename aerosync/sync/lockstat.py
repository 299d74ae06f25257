"""The arena's lock table and lock_stat: one 256-byte slot per lock instance.

Models: kernel/locking/lockdep.c lock_stat (CONFIG_LOCK_STAT) and /proc/lock_stat.
Unit: a lock slot, addressed by its index in the `locks` section.

Slot layout (4 cache lines; offsets relative to the slot)::

    line 0  (the lock word's line: bounces with every hand-off)
       0 word u64         spinlock: locked = pid<<16 | cpu+1, unlocked = last cpu+1 (or 0)
                          qspinlock: the same low 40 bits, + pending bit and MCS tail
                          above them (sync/qspinlock.py)
                          rwlock:   bits 0-30 readers, bit 31 writer waiting, bit 32 writer
       8 owner u64        rwlock writer's pid<<16 | cpu+1; qspinlock: the pending
                          waiter's (spinlock: unused)
      16 waiters u64      CPUs inside the wait loop now (atomic)
      24 kind u32 | 28 sleepers u32 (qspinlock: MCS node codes of the blocked queue
                          head and pending waiter, for the unlock-time wake-up)
      32 r_acq u64  40 r_con u64  48 r_wait_total u64  56 r_wait_max u64   (readers: atomic)
    line 1  (written only by the holder, under the lock)
      64 acquisitions  72 acq_bounces  80 contentions  88 con_bounces
      96 wait_total   104 wait_max    112 wait_min    120 hold_samples
    line 2  (holder only)
     128 hold_total   136 hold_max    144 hold_min    152 spins
     160 yields       168 sleeps      176 r_wait_min  184 last_cpu (rwlock writer)
                                                      qspinlock: time of the last
                                                      contended release (ns)
    line 3  (written once at allocation)
     192 class name (32 B, NUL padded) | 224 instance name (32 B)

Ownership of the figures: line 1 and 2 are updated by the lock holder while it holds the
lock, so the lock itself serialises them; they are written with relaxed atomics only so
a concurrent reader (`snapshot`) never sees a torn word.  Reader-side figures of a
rwlock are bumped by concurrent readers and therefore use fetch_add.

Hold times are measured on one acquisition in `hold_sample` (a power of two, per arena;
1 = every acquisition).  Measuring every hold costs two clock reads (~85 ns) on top of a
~150 ns acquire+release; `holdtime-total` is therefore reported as the sampled mean times
the acquisitions, and `hold_samples` says how many holds were timed.  Wait times are
measured on every contended acquisition (the clock is only read on the slow path).

Allocation: `lock_alloc` bumps the header's nr_locks with fetch_add, so slots are handed
out exactly once even if several processes allocate; in practice the coordinator
allocates every lock during set-up, deterministically, before any worker starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.errors import LockError
from aerosync.params import LOCK_SLOT_SIZE, MAX_LOCKS
from aerosync.sync.lockclass import OBJ_RW, class_stats

__all__ = [
    "LOCK_SPIN", "LOCK_RW",
    "S_WORD", "S_OWNER", "S_WAITERS", "S_KIND", "S_R_ACQ", "S_R_CON", "S_R_WAIT_TOTAL",
    "S_R_WAIT_MAX", "S_ACQ", "S_ACQ_BOUNCE", "S_CON", "S_CON_BOUNCE", "S_WAIT_TOTAL",
    "S_WAIT_MAX", "S_WAIT_MIN", "S_HOLD_SAMPLES", "S_HOLD_TOTAL", "S_HOLD_MAX", "S_HOLD_MIN",
    "S_SPINS", "S_YIELDS", "S_SLEEPS", "S_R_WAIT_MIN", "S_LAST_CPU", "S_CLASS", "S_NAME",
    "U64_MAX", "lock_alloc", "slot_off", "slot_names", "LockStat", "snapshot",
    "aggregate_by_class", "render_lock_stat", "lock_stat_dict", "clear_lock_stat",
    "decode_owner", "PID_MASK", "OWNER_MASK", "S_SLEEPERS",
]

LOCK_SPIN, LOCK_RW = 1, 2
U64_MAX = (1 << 64) - 1

S_WORD, S_OWNER, S_WAITERS, S_KIND = 0, 8, 16, 24
S_R_ACQ, S_R_CON, S_R_WAIT_TOTAL, S_R_WAIT_MAX = 32, 40, 48, 56
S_ACQ, S_ACQ_BOUNCE, S_CON, S_CON_BOUNCE = 64, 72, 80, 88
S_WAIT_TOTAL, S_WAIT_MAX, S_WAIT_MIN, S_HOLD_SAMPLES = 96, 104, 112, 120
S_HOLD_TOTAL, S_HOLD_MAX, S_HOLD_MIN, S_SPINS = 128, 136, 144, 152
S_YIELDS, S_SLEEPS, S_R_WAIT_MIN, S_LAST_CPU = 160, 168, 176, 184
S_CLASS, S_NAME = 192, 224
S_SLEEPERS = 28
PID_MASK = 0xFFFFFF          # owner pid field (bits 16-39): pid_max is at most 2^22
OWNER_MASK = (1 << 40) - 1   # cpu+1 and pid: who holds a spinlock of either kind
_NAME_LEN = 32

assert S_NAME + _NAME_LEN == LOCK_SLOT_SIZE


def slot_off(arena: Arena, slot: int) -> int:
    """Byte offset of lock slot `slot`."""
    if not 0 <= slot < MAX_LOCKS:
        raise LockError(f"slot_off: lock slot {slot} outside 0..{MAX_LOCKS - 1}")
    return arena.off("locks") + slot * LOCK_SLOT_SIZE


def lock_alloc(arena: Arena, lock_class: str, name: str, kind: int = LOCK_SPIN) -> int:
    """Allocate a lock slot of class `lock_class` (e.g. "&zone->lock"); returns the slot."""
    cls_b, name_b = lock_class.encode(), name.encode()
    if not 0 < len(cls_b) <= _NAME_LEN or len(name_b) > _NAME_LEN:
        raise LockError(f"lock_alloc: class {lock_class!r} / name {name!r} must be 1..32 / 0..32 bytes")
    slot = arena.atomic.fetch_add64(L.H_NR_LOCKS, 1)
    if slot >= MAX_LOCKS:
        raise LockError(f"lock_alloc: lock table full ({MAX_LOCKS} slots)")
    off = slot_off(arena, slot)
    arena.u8[off : off + LOCK_SLOT_SIZE] = bytes(LOCK_SLOT_SIZE)
    arena.u32[(off + S_KIND) >> 2] = kind
    for f in (S_WAIT_MIN, S_HOLD_MIN, S_R_WAIT_MIN):
        arena.u64[(off + f) >> 3] = U64_MAX
    arena.u8[off + S_CLASS : off + S_CLASS + _NAME_LEN] = cls_b.ljust(_NAME_LEN, b"\0")
    arena.u8[off + S_NAME : off + S_NAME + _NAME_LEN] = name_b.ljust(_NAME_LEN, b"\0")
    return slot


def slot_names(arena: Arena, slot: int) -> tuple[str, str]:
    """(class name, instance name) of a slot."""
    off = slot_off(arena, slot)
    raw = bytes(arena.u8[off + S_CLASS : off + S_CLASS + 2 * _NAME_LEN])
    return raw[:_NAME_LEN].rstrip(b"\0").decode(), raw[_NAME_LEN:].rstrip(b"\0").decode()


def decode_owner(word: int) -> tuple[int, int]:
    """(cpu, pid) from a locked word pid<<16 | cpu+1 (either spinlock kind: the queued
    spinlock's pending and tail bits above bit 40 are ignored); cpu -1 means the
    coordinator, pid 0 means unlocked."""
    cpu1 = word & 0xFFFF
    return (cpu1 - 1 if cpu1 != 0xFFFF else -1), (word >> 16) & PID_MASK


# ----------------------------------------------------------------------------- snapshot
_FIELDS = [
    ("word", S_WORD), ("owner", S_OWNER), ("waiters", S_WAITERS),
    ("r_acq", S_R_ACQ), ("r_con", S_R_CON), ("r_wait_total", S_R_WAIT_TOTAL), ("r_wait_max", S_R_WAIT_MAX),
    ("acq", S_ACQ), ("acq_bounce", S_ACQ_BOUNCE), ("con", S_CON), ("con_bounce", S_CON_BOUNCE),
    ("wait_total", S_WAIT_TOTAL), ("wait_max", S_WAIT_MAX), ("wait_min", S_WAIT_MIN),
    ("hold_samples", S_HOLD_SAMPLES), ("hold_total", S_HOLD_TOTAL), ("hold_max", S_HOLD_MAX),
    ("hold_min", S_HOLD_MIN), ("spins", S_SPINS), ("yields", S_YIELDS), ("sleeps", S_SLEEPS),
    ("r_wait_min", S_R_WAIT_MIN),
]


@dataclass(frozen=True, slots=True)
class LockStat:
    """Frozen figures of one lock (or one class, summed); times in ns."""

    lock_class: str
    name: str
    kind: int
    instances: int
    acquisitions: int
    acq_bounces: int
    contentions: int
    con_bounces: int
    wait_total: int
    wait_min: int
    wait_max: int
    hold_samples: int
    hold_total: int          # estimated: sampled mean x acquisitions (exact when sampling is 1)
    hold_min: int
    hold_max: int
    spins: int
    yields: int
    sleeps: int
    r_acquisitions: int
    r_contentions: int
    r_wait_total: int
    r_wait_min: int
    r_wait_max: int


def snapshot(arena: Arena) -> list[LockStat]:
    """Every allocated lock's figures, read with one numpy pass (racy but untorn words),
    then the embedded locks' classes (sync/lockclass.py: per-CPU lines summed)."""
    n = min(arena.u64[L.H_NR_LOCKS >> 3], MAX_LOCKS)
    if n == 0:
        return _class_snapshot(arena)
    tab = arena.array("locks", np.uint64, count=n * LOCK_SLOT_SIZE // 8).reshape(n, LOCK_SLOT_SIZE // 8).copy()
    kinds = arena.array("locks", np.uint32, count=n * LOCK_SLOT_SIZE // 4).reshape(n, LOCK_SLOT_SIZE // 4)[
        :, S_KIND // 4
    ].copy()
    out = []
    for i in range(n):
        row = {k: int(tab[i, off // 8]) for k, off in _FIELDS}
        cls, name = slot_names(arena, i)
        hs = row["hold_samples"]
        hold_total = row["hold_total"] * row["acq"] // hs if hs else 0
        out.append(LockStat(
            cls, name, int(kinds[i]), 1, row["acq"], row["acq_bounce"], row["con"], row["con_bounce"],
            row["wait_total"], 0 if row["wait_min"] == U64_MAX else row["wait_min"], row["wait_max"],
            hs, hold_total, 0 if row["hold_min"] == U64_MAX else row["hold_min"], row["hold_max"],
            row["spins"], row["yields"], row["sleeps"], row["r_acq"], row["r_con"], row["r_wait_total"],
            0 if row["r_wait_min"] == U64_MAX else row["r_wait_min"], row["r_wait_max"],
        ))
    return out + _class_snapshot(arena)


def _class_snapshot(arena: Arena) -> list[LockStat]:
    """Embedded-lock classes as LockStat rows (rwsems as kind LOCK_RW: -W and -R lines)."""
    out = []
    for r in class_stats(arena):
        kind = LOCK_RW if r["kind"] == OBJ_RW else LOCK_SPIN
        out.append(LockStat(
            str(r["lock_class"]), "", kind, 1, int(r["acq"]), 0, int(r["con"]), 0, int(r["wait_total"]),
            int(r["wait_min"]), int(r["wait_max"]), int(r["hold_samples"]), int(r["hold_total"]), 0,
            int(r["hold_max"]), 0, 0, 0, int(r["r_acq"]), int(r["r_con"]), int(r["r_wait_total"]),
            int(r["r_wait_min"]), int(r["r_wait_max"]),
        ))
    return out


def _min0(a: int, b: int) -> int:
    """min ignoring 0 (0 = no sample)."""
    return min(a, b) if a and b else a or b


def aggregate_by_class(stats: list[LockStat]) -> list[LockStat]:
    """Sum instances per class (lock_stat is per class), sorted by contentions, descending."""
    by: dict[str, LockStat] = {}
    for s in stats:
        a = by.get(s.lock_class)
        if a is None:
            by[s.lock_class] = s
            continue
        by[s.lock_class] = LockStat(
            a.lock_class, "", a.kind, a.instances + 1,
            a.acquisitions + s.acquisitions, a.acq_bounces + s.acq_bounces,
            a.contentions + s.contentions, a.con_bounces + s.con_bounces,
            a.wait_total + s.wait_total, _min0(a.wait_min, s.wait_min), max(a.wait_max, s.wait_max),
            a.hold_samples + s.hold_samples, a.hold_total + s.hold_total,
            _min0(a.hold_min, s.hold_min), max(a.hold_max, s.hold_max),
            a.spins + s.spins, a.yields + s.yields, a.sleeps + s.sleeps,
            a.r_acquisitions + s.r_acquisitions, a.r_contentions + s.r_contentions,
            a.r_wait_total + s.r_wait_total, _min0(a.r_wait_min, s.r_wait_min), max(a.r_wait_max, s.r_wait_max),
        )
    return sorted(by.values(), key=lambda s: (-(s.contentions + s.r_contentions), -s.acquisitions, s.lock_class))


def _us(ns: int) -> str:
    """Kernel lock_stat time format: ns printed as us with two decimals, rounded."""
    ns = (ns + 5) // 10
    return f"{ns // 100}.{ns % 100:02d}"


_HDR_COLS = ("con-bounces", "contentions", "waittime-min", "waittime-max", "waittime-total", "waittime-avg",
             "acq-bounces", "acquisitions", "holdtime-min", "holdtime-max", "holdtime-total", "holdtime-avg")
_WIDE = 40 + 12 * 15


def _line(name: str, cb: int, con: int, wmin: int, wmax: int, wtot: int, ab: int, acq: int,
          hmin: int, hmax: int, htot: int, hsamples: int) -> str:
    wavg = wtot // con if con else 0
    havg = htot // acq if acq else 0
    cols = [str(cb), str(con), _us(wmin), _us(wmax), _us(wtot), _us(wavg),
            str(ab), str(acq), _us(hmin), _us(hmax), _us(htot), _us(havg)]
    return f"{name:>40}" + "".join(f" {c:>14}" for c in cols)


def render_lock_stat(stats: list[LockStat]) -> str:
    """/proc/lock_stat version 0.4 layout (per class; rwlocks get -W and -R lines)."""
    out = ["lock_stat version 0.4", "-" * _WIDE,
           f"{'class name':>40}" + "".join(f" {c:>14}" for c in _HDR_COLS), "-" * _WIDE, ""]
    for s in aggregate_by_class(stats):
        if s.kind == LOCK_RW:
            out.append(_line(s.lock_class + "-W:", s.con_bounces, s.contentions, s.wait_min, s.wait_max,
                             s.wait_total, s.acq_bounces, s.acquisitions, s.hold_min, s.hold_max,
                             s.hold_total, s.hold_samples))
            out.append(_line(s.lock_class + "-R:", 0, s.r_contentions, s.r_wait_min, s.r_wait_max,
                             s.r_wait_total, 0, s.r_acquisitions, 0, 0, 0, 0))
        else:
            out.append(_line(s.lock_class + ":", s.con_bounces, s.contentions, s.wait_min, s.wait_max,
                             s.wait_total, s.acq_bounces, s.acquisitions, s.hold_min, s.hold_max,
                             s.hold_total, s.hold_samples))
        out.append("")
        out.append("." * _WIDE)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def lock_stat_dict(stats: list[LockStat]) -> list[dict[str, object]]:
    """The same figures for JSON: per class, plus backoff counts and instance count."""
    from dataclasses import asdict

    return [asdict(s) for s in aggregate_by_class(stats)]


def clear_lock_stat(arena: Arena) -> None:
    """Zero every figure (like `echo 0 > /proc/lock_stat`); lock words are untouched.

    Only safe while no lock is contended or held by a worker (before GO or after stop).
    """
    n = min(arena.u64[L.H_NR_LOCKS >> 3], MAX_LOCKS)
    for slot in range(n):
        off = slot_off(arena, slot)
        for _, f in _FIELDS[3:]:
            arena.u64[(off + f) >> 3] = U64_MAX if f in (S_WAIT_MIN, S_HOLD_MIN, S_R_WAIT_MIN) else 0
