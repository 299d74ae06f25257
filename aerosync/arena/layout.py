"""Byte map of the arena: pure arithmetic from the configuration, no I/O.

Unit: a byte offset (`off`) into the one shared segment.  Everything in the arena is
addressed by offsets and indices, never by Python objects, so every process that
attaches sees the same machine.

Header (HEADER_SIZE bytes at offset 0; each field naturally aligned, inside one line)::

    line 0   0 magic u64 | 8 version u32 | 12 page_size u32 | 16 total_size u64
             24 config_hash u64 | 32 owner_pid u64 | 40 owner_starttime u64
             48 created_ns u64 | 56 nr_sections u32 | 60 config_len u32
    line 1   64 run_state u64 (atomic)    | 72 nr_ready u64 (atomic fetch_add)
             80 nr_locks u64 (atomic bump) | 88 start_ns u64 | 96 stop_ns u64
             104 pause_seq u64 (atomic)   | 112 nr_paused u64 (atomic)
             120 nr_sems u64 (named semaphores the arena owns, see below)
    128      section table: MAX_SECTIONS x {name 16 B ascii, off u64, size u64}
    SECTION_TABLE_END..HEADER_SIZE   configuration JSON (utf-8, config_len bytes)

Sections follow the header, each aligned to a page (4 KiB) so numpy views and physical
pages start on page boundaries.  The base sections are:

    cpu       nr_cpus x CPU_AREA_SIZE   per-CPU control line + published counters
    errtext   nr_cpus x ERRTEXT_SIZE    traceback text of a worker that raised
    locks     MAX_LOCKS x LOCK_SLOT_SIZE the lock table (sync/spinlock.py draws a slot)
    qnodes    qnode_count(nr_cpus) x 64 the queued spinlock's MCS nodes (sync/qspinlock.py)
    intentlog intent_log_size(nr_cpus)  per-CPU intent logs, held embedded locks and
                                        fault-injection words (mm/intent.py; below)
    pagemeta  nr_pages x PAGE_META_SIZE struct page array, indexed by pfn
    physmem   nr_pages x PAGE_SIZE      the simulated physical memory

Named semaphores: when any lock class uses the queued spinlock (config `locks`, see
`uses_qspinlock`), the arena owns one POSIX semaphore per MCS node, named
`/<arena name>.s<i>` (`sem_name`), so `cleanup_stale()` finds them by the arena's
prefix.  They live and die with the segment: `Arena.create` makes them, `Arena.unlink`
removes them, attachers open them on first use (segment.py).

Subsystems append their own sections (mm adds zones, pcp lists, ...) by passing
`SectionSpec`s; the header's section table records where each landed, so an attacher
reads offsets instead of recomputing them.

Per-CPU area (CPU_AREA_SIZE bytes, 64-byte aligned; owner CPU writes, others read)::

    line 0   0 state u64 | 8 pid u64 | 16 starttime u64 | 24 host_cpu u64
             32 ops u64 (published count) | 40 heartbeat_ns u64 | 48 harness_ps u64
             56 pause_ack u64
    line 1   64 waiting_on u64 (lock slot + 1 while in a lock's slow path, else 0)
             72 waiting_since_ns u64 | 80 lat_samples u64
             88 hp_state u64 (atomic; HP_*: the CPU's hotplug state, mm/cpuhp.py)
             96 hp_request u64 (atomic; `aerosync hotplug` CASes 0 -> seq << 8 | HPREQ_*,
                the coordinator takes it)  104 hp_result u64 (seq << 8 | HPRES_*)
    128      NR_LAT_BUCKETS x u64 histogram of sampled operation latency (lat_bucket())
    1152     NR_CPU_COUNTERS x u64 workload counters (names owned by the workload)

Intent log (section "intentlog", mm/intent.py says how it is used): INTENT_CPU_SIZE bytes
per simulated CPU, then one context for the arena's owner process (the coordinator, or a
test driving CPUs from threads: it never dies while the arena lives, so its log is only
somewhere to write).  A CPU's block; only that CPU's process writes it, except the
fault line, which the coordinator arms::

    0     fault line: arm u64 (point id + 1 to die at, 0 = none) | skip u64 (hits of that
          point to let pass first) | died_at u64 (point id + 1, written just before the
          SIGKILL) | 24..63 reserved
    64    hits: INTENT_MAX_POINTS x u64, times each fault point was passed (fault mode only)
    +     INTENT_CTX contexts (0 the task, 1 the interrupt-context thread) of
          INTENT_CTX_SIZE bytes each:
            0    header line: depth u64 (open records) | handoff u64 (the item an
                 allocator is handing out: mm/intent.py "hand-off") | pending u64 (a
                 caller's open hand-off window, its own value; 0 = none) | lock_pending
                 u64 (the embedded lock being taken or released, as the robust list's
                 entry: robust_list's list_op_pending, sync/objlock.py) | 32..63 reserved
            64   held line: held_n u64 | 7 x u64 embedded locks held (off | kind << 56),
                 the robust list of sync/objlock.py (robust mode only)
            128  INTENT_MAX_DEPTH records of 64 bytes: op u64 | a0..a5 u64 | step u64;
                 record d is open iff d < depth (record 0 the outermost)
            +    spill: INTENT_SPILL x u64, items an open record moves (magazine flush)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from aerosync.params import (
    CACHE_LINE,
    CPU_AREA_SIZE,
    ERRTEXT_SIZE,
    LOCK_SLOT_SIZE,
    MAX_LOCKS,
    NR_CPU_COUNTERS,
    NR_LAT_BUCKETS,
    PAGE_META_SIZE,
    PAGE_SIZE,
)

__all__ = [
    "HEADER_SIZE",
    "MAX_SECTIONS",
    "SectionSpec",
    "QNODES_PER_CPU",
    "qnode_count",
    "uses_qspinlock",
    "robust_mode",
    "nr_semaphores",
    "sem_name",
    "Layout",
    "build_layout",
    "base_sections",
    "config_hash",
    "align_up",
    # header field offsets
    "H_MAGIC", "H_VERSION", "H_PAGE_SIZE", "H_TOTAL", "H_CONFIG_HASH", "H_OWNER_PID",
    "H_OWNER_START", "H_CREATED", "H_NR_SECTIONS", "H_CONFIG_LEN", "H_RUN_STATE",
    "H_NR_READY", "H_NR_LOCKS", "H_START_NS", "H_STOP_NS", "H_PAUSE_SEQ", "H_NR_PAUSED", "H_NR_SEMS",
    "SECTION_TABLE", "SECTION_ENTRY", "CONFIG_OFF",
    # run states
    "RUN_INIT", "RUN_GO", "RUN_STOP", "RUN_ABORT", "RUN_PAUSE",
    # per-CPU area
    "CPU_STATE", "CPU_PID", "CPU_STARTTIME", "CPU_HOST_CPU", "CPU_OPS", "CPU_HEARTBEAT",
    "CPU_HARNESS_PS", "CPU_PAUSE_ACK", "CPU_COUNTERS", "CPU_WAITING_ON", "CPU_WAITING_SINCE",
    "CPU_LAT_SAMPLES", "CPU_LAT_HIST", "lat_bucket", "lat_bucket_ns",
    "CPUST_EMPTY", "CPUST_STARTING", "CPUST_READY", "CPUST_RUNNING", "CPUST_DONE",
    "CPUST_FAILED", "CPUST_OFFLINE", "CPUST_NAMES",
    "CPU_HP_STATE", "CPU_HP_REQUEST", "CPU_HP_RESULT", "HP_ONLINE", "HP_GOING_DOWN", "HP_OFFLINE",
    "HP_COMING_UP", "HP_NAMES", "HPREQ_OFFLINE", "HPREQ_ONLINE", "HPRES_OK", "HPRES_REFUSED",
    # intent log
    "INTENT_CTX", "INTENT_MAX_DEPTH", "INTENT_REC_SIZE", "INTENT_SPILL", "INTENT_MAX_POINTS",
    "INTENT_CTX_SIZE", "INTENT_CPU_SIZE", "IL_ARM", "IL_SKIP", "IL_DIED", "IL_HITS", "IL_CTX0",
    "ILC_DEPTH", "ILC_HANDOFF", "ILC_PENDING", "ILC_LOCK_PENDING", "ILC_HELD_N", "ILC_HELD", "ILC_RECS",
    "ILC_SPILL", "IL_HELD_MAX",
    "SPILL_VMAS", "SPILL_GATHER", "SPILL_RECLAIM", "SPILL_MIGRATE",
    "intent_log_size", "intent_ctx_off",
]

HEADER_SIZE = 64 * 1024
MAX_SECTIONS = 64                    # a machine with every subsystem and sanitizer on has 33+
SECTION_ENTRY = 32
SECTION_TABLE = 128
CONFIG_OFF = SECTION_TABLE + MAX_SECTIONS * SECTION_ENTRY

H_MAGIC, H_VERSION, H_PAGE_SIZE, H_TOTAL = 0, 8, 12, 16
H_CONFIG_HASH, H_OWNER_PID, H_OWNER_START, H_CREATED = 24, 32, 40, 48
H_NR_SECTIONS, H_CONFIG_LEN = 56, 60
H_RUN_STATE, H_NR_READY, H_NR_LOCKS, H_START_NS = 64, 72, 80, 88
H_STOP_NS, H_PAUSE_SEQ, H_NR_PAUSED, H_NR_SEMS = 96, 104, 112, 120

RUN_INIT, RUN_GO, RUN_STOP, RUN_ABORT, RUN_PAUSE = 0, 1, 2, 3, 4

CPU_STATE, CPU_PID, CPU_STARTTIME, CPU_HOST_CPU = 0, 8, 16, 24
CPU_OPS, CPU_HEARTBEAT, CPU_HARNESS_PS, CPU_PAUSE_ACK = 32, 40, 48, 56
CPU_WAITING_ON, CPU_WAITING_SINCE, CPU_LAT_SAMPLES = 64, 72, 80
CPU_HP_STATE, CPU_HP_REQUEST, CPU_HP_RESULT = 88, 96, 104
CPU_LAT_HIST = 2 * CACHE_LINE
CPU_COUNTERS = CPU_LAT_HIST + NR_LAT_BUCKETS * 8
CPUST_EMPTY, CPUST_STARTING, CPUST_READY, CPUST_RUNNING, CPUST_DONE, CPUST_FAILED, CPUST_OFFLINE = range(7)
CPUST_NAMES = ("empty", "starting", "ready", "running", "done", "failed", "offline")
# CPU hotplug (mm/cpuhp.py has the protocol): hp_state, and the requests of `aerosync hotplug`
HP_ONLINE, HP_GOING_DOWN, HP_OFFLINE, HP_COMING_UP = 0, 1, 2, 3
HP_NAMES = ("online", "going-offline", "offline", "coming-online")
HPREQ_OFFLINE, HPREQ_ONLINE = 1, 2
HPRES_OK, HPRES_REFUSED = 1, 2

INTENT_CTX = 2                 # log contexts per CPU: task, interrupt-context thread
INTENT_MAX_DEPTH = 12          # open records per context (deepest nesting seen: 7)
INTENT_REC_SIZE = CACHE_LINE   # op, a0..a5, step
INTENT_SPILL = 352             # u64 items per context: [0, 64) slab (>= slab_mag_size / 2),
                               # [64, 96) VMAs a munmap detached, [96, 160) an mmu_gather's pages
                               # (and tables), [160, 224) the folios reclaim isolated, [224, 352)
                               # the folios a migration holds (two words each; its destination
                               # allocation may reclaim, so the regions do not overlap)
SPILL_VMAS, SPILL_GATHER, SPILL_RECLAIM, SPILL_MIGRATE = 64, 96, 160, 224
INTENT_MAX_POINTS = 256        # fault points the hit counters have room for
IL_HELD_MAX = 7                # embedded locks one context can hold at once (robust list)
IL_ARM, IL_SKIP, IL_DIED = 0, 8, 16
IL_HITS = CACHE_LINE
ILC_DEPTH = 0
ILC_HANDOFF, ILC_PENDING, ILC_LOCK_PENDING = 8, 16, 24
ILC_HELD_N, ILC_HELD = CACHE_LINE, CACHE_LINE + 8
ILC_RECS = 2 * CACHE_LINE
ILC_SPILL = ILC_RECS + INTENT_MAX_DEPTH * INTENT_REC_SIZE
INTENT_CTX_SIZE = ILC_SPILL + INTENT_SPILL * 8
IL_CTX0 = IL_HITS + INTENT_MAX_POINTS * 8
INTENT_CPU_SIZE = IL_CTX0 + INTENT_CTX * INTENT_CTX_SIZE


def intent_log_size(nr_cpus: int) -> int:
    """Bytes of the "intentlog" section: every CPU's block, then the owner's context."""
    return nr_cpus * INTENT_CPU_SIZE + INTENT_CTX_SIZE


def intent_ctx_off(base: int, nr_cpus: int, cpu: int, ctx: int) -> int:
    """Byte offset of context `ctx` of `cpu` (cpu -1: the owner's) in a section at `base`."""
    if cpu < 0:
        return base + nr_cpus * INTENT_CPU_SIZE
    return base + cpu * INTENT_CPU_SIZE + IL_CTX0 + ctx * INTENT_CTX_SIZE


assert INTENT_CTX_SIZE % CACHE_LINE == 0 and INTENT_CPU_SIZE % CACHE_LINE == 0
assert CPU_COUNTERS + NR_CPU_COUNTERS * 8 <= CPU_AREA_SIZE
assert CPU_AREA_SIZE % CACHE_LINE == 0 and LOCK_SLOT_SIZE % CACHE_LINE == 0
assert CONFIG_OFF < HEADER_SIZE


def lat_bucket(ns: int) -> int:
    """Histogram bucket of a latency: 4 sub-buckets per power of two (<= 19 % error)."""
    if ns < 4:
        return ns if ns > 0 else 0
    b = ns.bit_length() - 1
    return min(NR_LAT_BUCKETS - 1, b * 4 + ((ns >> (b - 2)) & 3))


def lat_bucket_ns(bucket: int) -> float:
    """Representative latency (midpoint, ns) of a bucket: inverse of lat_bucket()."""
    if bucket < 8:           # 0..3 are exact; 4..7 are never produced by lat_bucket()
        return float(min(bucket, 3))
    b, sub = divmod(bucket, 4)
    lo = (4 + sub) << (b - 2)
    return lo + (1 << (b - 2)) / 2


def align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """A named region a subsystem asks for; `align` must be a power of two >= 64."""

    name: str
    size: int
    align: int = PAGE_SIZE


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each section landed; `sections[name] = (off, size)`."""

    sections: dict[str, tuple[int, int]]
    total: int

    def off(self, name: str) -> int:
        return self.sections[name][0]


QNODES_PER_CPU = 2       # MCS nodes per simulated CPU: task context, interrupt context


def qnode_count(nr_cpus: int) -> int:
    """MCS nodes of the queued spinlock: QNODES_PER_CPU per CPU, plus a row for the
    coordinator (sync/qspinlock.py)."""
    return (nr_cpus + 1) * QNODES_PER_CPU


def uses_qspinlock(config: dict[str, Any]) -> bool:
    """Whether any lock class of this configuration is a queued spinlock (config key
    `locks`: {"spinlock": "tas" | "qspinlock", "classes": {class: kind}})."""
    locks = config.get("locks") or {}
    return locks.get("spinlock") == "qspinlock" or "qspinlock" in (locks.get("classes") or {}).values()


def robust_mode(config: dict[str, Any]) -> bool:
    """CPUs of this arena may die and be recovered (`on_cpu_death` set, or a "fault"
    table: fault injection): lock waiters then wait for the coordinator's takeover of a
    dead owner's lock (sync/robust.py) instead of raising LockOwnerDead."""
    return bool(config.get("on_cpu_death")) or bool(config.get("fault"))


def nr_semaphores(config: dict[str, Any]) -> int:
    """Named semaphores the arena owns: one per MCS node when the queued spinlock is used."""
    return qnode_count(int(config.get("nr_cpus", 0))) if uses_qspinlock(config) else 0


def sem_name(arena_name: str, i: int) -> str:
    """The i-th semaphore of arena `arena_name` (posix_ipc form, leading slash)."""
    return f"/{arena_name}.s{i}"


def base_sections(nr_cpus: int, nr_pages: int) -> list[SectionSpec]:
    """The sections every arena has, before any subsystem adds its own."""
    return [
        SectionSpec("cpu", nr_cpus * CPU_AREA_SIZE),
        SectionSpec("errtext", nr_cpus * ERRTEXT_SIZE),
        SectionSpec("locks", MAX_LOCKS * LOCK_SLOT_SIZE),
        SectionSpec("qnodes", qnode_count(nr_cpus) * CACHE_LINE),
        SectionSpec("intentlog", intent_log_size(nr_cpus)),
        SectionSpec("pagemeta", nr_pages * PAGE_META_SIZE),
        SectionSpec("physmem", nr_pages * PAGE_SIZE),
    ]


def build_layout(specs: list[SectionSpec]) -> Layout:
    """Place sections in order after the header; names must be unique ASCII <= 16 bytes."""
    if len(specs) > MAX_SECTIONS:
        raise ValueError(f"build_layout: {len(specs)} sections, at most {MAX_SECTIONS}")
    off = HEADER_SIZE
    sections: dict[str, tuple[int, int]] = {}
    for s in specs:
        if s.name in sections or not s.name.isascii() or not 0 < len(s.name) <= 16:
            raise ValueError(f"build_layout: bad or duplicate section name {s.name!r}")
        if s.align < CACHE_LINE or s.align & (s.align - 1):
            raise ValueError(f"build_layout: section {s.name} align {s.align} not a power of two >= 64")
        off = align_up(off, s.align)
        sections[s.name] = (off, s.size)
        off += s.size
    return Layout(sections, align_up(off, PAGE_SIZE))


def config_hash(config: dict[str, Any]) -> int:
    """64-bit hash of the canonical JSON of a configuration (stored in the header)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")
