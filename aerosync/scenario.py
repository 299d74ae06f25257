"""Scenario files: one declarative TOML file → one frozen `Scenario`, checked once.

A scenario says which workload runs on which simulated machine and for how long.  It is
parsed here, at the edge, into frozen dataclasses; nothing downstream sees a raw TOML
dict.  Every rejection is a `ScenarioError(file, key, value, allowed)` naming the file
(or ``<command line>`` for a bad ``--set`` override), the dotted key, the bad value and
what would have been accepted, so the CLI can print one line and exit 2.  A Scenario
remembers which keys came from overrides (`overridden`), so checks made later against
the host (CPUs allowed, NUMA nodes, /dev/shm room) blame the right place
(`Scenario.blame`).  A workload's own Params.validate() message is blamed on the
`workload.<key>` it names.

Schema (every section optional except ``[run] workload``)::

    name, description                   top level; name defaults to the file stem
    [run]      workload duration|ops seed sample_interval warmup watchdog check_interval
               on_cpu_death ("fail" | "stop" | "continue": what a killed CPU means, FaultSpec)
    [fault]    kill_at kill_cpu kill_skip kill_random kill_interval (fault injection, FaultSpec)
    [machine]  cpus memory topology lock_stat lock_hold_sample remote_access_ns
               max_page_order min_free_kbytes watermark_scale_factor pcp pcp_high pcp_batch
               pcp_autotune thp lockdep
    [kernel]   profile = "aerosync" | "linux": the defaults where AeroSync's design and
               Linux 6.19 differ (params.KERNEL_PROFILES); every knob a profile sets
               ([slab] mag_size, percpu_sheaves; [machine] pcp_autotune) can still be set
    [numa] [slab]  see NumaSpec / SlabSpec
    [vm]       mm fault_locking pcid pgtable_levels tlb_entries tlb_ways max_tasks ... (_VM_KEYS)
    [workload] the workload's own Params fields (checked against its dataclass)
    [locks]    spinlock ("tas" | "qspinlock") classes (per lock class, e.g.
               {"&zone->lock" = "qspinlock"}; sync/spinlock.py)
    [debug]    kasan kasan_quarantine_kb kfence_sample_interval kfence_num_objects init_on_alloc
               init_on_free freelist_hardened stack_protector (_DEBUG_KEYS; mm/san/config.py)
    [vmalloc]  size_gb numa_partition lazy_max_pages vmap_block_max_kb huge (_VMALLOC_KEYS;
               mm/vm/vmalloc_layout.py)
    [[events]] at cpu action: CPU hotplug during the run, one table per event (at =
               seconds after the start, cpu = a simulated CPU id, action = "offline" |
               "online"); checked against the machine by the coordinator (aerosync/hotplug.py)

Topology specs stay strings ("host", "fake:N", or an absolute path to a topology file):
this module sits below `arch` and only checks their shape; the coordinator resolves them.

Overrides (``section.key=value``, the value parsed as a TOML value, else taken as a bare
string) are applied to the raw tables before validation, with two conveniences so a
command line can change what a file says without contradicting it:

1. overriding ``run.duration`` drops the file's ``run.ops`` and vice versa (exactly one
   of the two may be in force);
2. overriding ``run.workload`` with a different name drops the file's ``[workload]``
   table (those parameters belong to the other workload).

A relative ``machine.topology`` path is resolved against the scenario file's directory
when it comes from the file, and against the current directory when it comes from an
override (where the user typed it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from aerosync.errors import ScenarioError
from aerosync.params import (
    DEFAULT_KERNEL_PROFILE,
    KERNEL_PROFILES,
    MAX_CPUS,
    MAX_MEMORY,
    MAX_NUMNODES,
    MIN_MEMORY,
    PAGE_SIZE,
)

__all__ = [
    "COMMAND_LINE",
    "DEFAULT_DURATION",
    "EventSpec",
    "DEFAULT_MEMORY",
    "KernelSpec",
    "kernel_knobs",
    "LocksSpec",
    "SettingsSpec",
    "FaultSpec",
    "MachineSpec",
    "ON_CPU_DEATH",
    "RunSpec",
    "Scenario",
    "load_scenario",
    "parse_size",
    "scenario_hash",
    "scenario_to_dict",
    "with_overrides",
]

COMMAND_LINE = "<command line>"     # ScenarioError.file for a bad override
DEFAULT_DURATION = 5.0              # seconds, when neither run.duration nor run.ops is given
DEFAULT_MEMORY = 64 << 20           # [machine] memory = "64M"
SAMPLE_INTERVAL_MIN, SAMPLE_INTERVAL_MAX = 0.01, 10.0
LOCK_HOLD_SAMPLE_MAX = 1024

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_SIZE_RE = re.compile(r"(\d+)\s*(?:([kmg])(ib)?)?", re.IGNORECASE)
_SIZE_SHIFT = {"k": 10, "m": 20, "g": 30}
_SIZE_ALLOWED = (
    'a byte count: an int >= 0, or a string such as "64M", "512MiB" or "1G" '
    "(integer with optional suffix K/M/G or KiB/MiB/GiB, powers of 1024, any case)"
)

_TOP_KEYS = ("name", "description", "run", "machine", "numa", "slab", "vm", "reclaim", "workload", "kernel", "locks",
             "debug", "vmalloc", "fault", "events")
_SCALAR_KEYS = ("name", "description")     # the top-level keys that are not [sections]
_SLAB_KEYS = ("mag_size", "max_order", "min_partial", "min_objects", "debug", "max_caches", "nr_sheaves",
              "percpu_sheaves")
_KERNEL_KEYS = ("profile",)
_PCP_AUTOTUNE = ("exact", "batched", "off")
_LOCKS_KEYS = ("spinlock", "classes")
_EVENTS_KEYS = ("at", "cpu", "action")      # each [[events]] table; all three required
HOTPLUG_ACTIONS = ("offline", "online")
_SPINLOCK_KINDS = ("tas", "qspinlock")      # sync/spinlock.py SPINLOCK_KINDS (scenario sits below sync)
# [numa] keys of process-memory NUMA (mm/numa/numa_types.py numa_params has the defaults):
# key -> (kind, allowed text, low, high)
_NUMA_PROC_KEYS: dict[str, tuple[str, str, int, int]] = {
    "balancing": ("bool", "true or false (automatic NUMA balancing, kernel.numa_balancing)", 0, 1),
    "balancing_placement": ("bool", "true or false (move a task toward its preferred node)", 0, 1),
    "numa_balancing_scan_delay_ms": ("int", "0..3600000 (ms before a task's first scan)", 0, 3_600_000),
    "numa_balancing_scan_period_min_ms": ("int", "1..3600000 (ms)", 1, 3_600_000),
    "numa_balancing_scan_period_max_ms": ("int", "1..3600000 (ms)", 1, 3_600_000),
    "numa_balancing_scan_size_mb": ("int", "1..1048576 (MiB of pages marked per scan)", 1, 1 << 20),
    "max_policies": ("int", "8..65536 (distinct memory policies in use at once)", 8, 1 << 16),
    "max_shared_policies": ("int", "8..65536 (shared-policy ranges of MAP_SHARED memory)", 8, 1 << 16),
}
_NUMA_KEYS = ("policy", "cpu_policy", "weights", *_NUMA_PROC_KEYS)
# [vm]: key -> (kind, allowed text, check); the defaults live in mm/vm/mm_types.py vm_params
_VM_KEYS: dict[str, tuple[str, str]] = {
    "mm": ("str", '"processes" (a task and an mm per CPU) or "threads" (one mm shared by every CPU\'s task)'),
    "fault_locking": ("str", '"mmap_lock", "per_vma" or "speculative"'),
    "pcid": ("bool", "true or false (keep TLB entries per address space across switches)"),
    "pgtable_levels": ("int", "4 or 5"),
    "tlb_entries": ("int", "16..65536 (second-level TLB entries per CPU)"),
    "tlb_ways": ("int", "1..64, dividing tlb_entries"),
    "max_tasks": ("int", "2..1048576"),
    "max_mms": ("int", "2..1048576"),
    "max_files": ("int", "1..65536"),
    "mmap_min_addr": ("int", "a multiple of 4096 below 4 GiB (vm.mmap_min_addr)"),
    "fault_around_bytes": ("int", "a power of two 4096..2097152"),
    "read_ahead_kb": ("int", "0..65536"),
    "shadow_depth_limit": ("int", "2..32 (vm_object shadow chain depth that forces a collapse)"),
    "max_map_count": ("int", "16..16777216 (vm.max_map_count)"),
    "tlb_single_page_flush_ceiling": ("int", "0..1048576 (pages; above it a flush is a full flush)"),
}
# [debug] and [vmalloc]: key -> (kind, allowed text, (lo, hi) for ints); the defaults live in
# mm/san/config.py debug_params and mm/vm/vmalloc_layout.py vmalloc_params
_DEBUG_KEYS: dict[str, tuple[str, str, tuple[int, int] | None]] = {
    "kasan": ("bool", "true or false (KASAN: shadow memory, redzones, quarantine, every kernel access checked)", None),
    "kasan_quarantine_kb": ("int", "0..16777216 (KiB of freed objects held before reuse; default memory / 32)",
                            (0, 1 << 24)),
    "kfence_sample_interval": ("int", "0 (off)..1048576 (one slab allocation in N per cache and CPU is a KFENCE "
                               "object)", (0, 1 << 20)),
    "kfence_num_objects": ("int", "1..4095 (CONFIG_KFENCE_NUM_OBJECTS: objects in the KFENCE pool)", (1, 4095)),
    "init_on_alloc": ("bool", "true or false (zero every slab object and page when allocated)", None),
    "init_on_free": ("bool", "true or false (zero every slab object and page when freed)", None),
    "freelist_hardened": ("bool", "true or false (SLAB_FREELIST_HARDENED: obfuscated free pointers)", None),
    "stack_protector": ("bool", "true or false (simulated call frames carry the task's canary)", None),
}
_VMALLOC_KEYS: dict[str, tuple[str, str, tuple[int, int] | None]] = {
    "size_gb": ("int", "1..512 (VMALLOC_SIZE_GB: the vmalloc address range)", (1, 512)),
    "numa_partition": ("bool", "true or false (one address slice per node)", None),
    "lazy_max_pages": ("int", "32..1048576 (lazily freed pages that trigger a purge; 8192 = 32 MiB)", (32, 1 << 20)),
    "vmap_block_max_kb": ("int", "0..512, a multiple of 4 (requests up to this come from per-CPU vmap_blocks; 0: "
                          "never)", (0, 512)),
    "huge": ("bool", "true or false (vmalloc_huge maps 2 MiB PMD leaves)", None),
}
# [reclaim]: key -> (kind, allowed text); defaults in mm/reclaim/layout.py reclaim_params
_RECLAIM_KEYS: dict[str, tuple[str, str]] = {
    "lru": ("str", '"mglru" (multi-generational LRU) or "classic" (active/inactive lists)'),
    "swappiness": ("int", "0..200 (vm.swappiness)"),
    "swap_file": ("str", "a path for the swap file AeroSync creates and removes (default: in the temp dir)"),
    "swap_size": ("size", 'bytes, a multiple of 4096 (or "64M", "1G"); 0 = no swap'),
    "zmm": ("bool", "true or false (compress anonymous pages before they go to swap)"),
    "zmm_compressor": ("str", '"lz4" or "zstd"'),
    "zmm_max_pool_percent": ("int", "1..100 (of RAM)"),
    "zmm_accept_threshold_percent": ("int", "1..100 (of the pool limit)"),
    "zmm_threshold_percent": ("int", "10..100 (a page compressing above this share of 4 KiB is rejected)"),
    "zmm_writeback": ("bool", "true or false (a full pool writes its oldest entries to swap)"),
    "dirty_ratio": ("int", "1..100 (vm.dirty_ratio)"),
    "dirty_background_ratio": ("int", "0..100 (vm.dirty_background_ratio)"),
    "dirty_writeback_centisecs": ("int", "0..100000"),
    "dirty_expire_centisecs": ("int", "0..1000000"),
    "kswapd": ("bool", "true or false (a kswapd process per node)"),
    "flusher": ("bool", "true or false (the writeback flusher process)"),
    "min_ttl_ms": ("int", "0..100000"),
    "page_cluster": ("int", "0..6 (swap readahead: 2^page_cluster pages)"),
    "oom_kill": ("bool", "true or false (kill a task when reclaim fails, else the allocation fails)"),
}
_RECLAIM_RANGES = {"swappiness": (0, 200), "zmm_max_pool_percent": (1, 100), "zmm_accept_threshold_percent": (1, 100),
                   "zmm_threshold_percent": (10, 100), "dirty_ratio": (1, 100), "dirty_background_ratio": (0, 100),
                   "dirty_writeback_centisecs": (0, 100_000), "dirty_expire_centisecs": (0, 1_000_000),
                   "min_ttl_ms": (0, 100_000), "page_cluster": (0, 6)}
_RECLAIM_CHOICES = {"lru": ("mglru", "classic"), "zmm_compressor": ("lz4", "zstd")}
_RUN_KEYS = ("workload", "duration", "ops", "seed", "sample_interval", "warmup", "watchdog", "check_interval",
             "on_cpu_death")
_FAULT_KEYS = ("kill_at", "kill_cpu", "kill_skip", "kill_random", "kill_interval")
ON_CPU_DEATH = ("fail", "stop", "continue")
_MACHINE_KEYS = ("cpus", "memory", "topology", "lock_stat", "lock_hold_sample", "remote_access_ns",
                 "max_page_order", "min_free_kbytes", "watermark_scale_factor", "pcp", "pcp_high", "pcp_batch",
                 "lockdep", "pcp_autotune", "thp")


class _Missing:
    """The value shown for a required key that is absent (prints as <missing>)."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


@dataclasses.dataclass(frozen=True, slots=True)
class RunSpec:
    """[run]: what runs and for how long; exactly one of duration / ops is set."""

    workload: str
    duration: float | None          # seconds of the measured run (None: run `ops` instead)
    ops: int | None                 # operations per simulated CPU (None: run `duration`)
    seed: int
    sample_interval: float          # seconds between coordinator samples
    warmup: float                   # seconds at the start left out of the figures
    watchdog: float = 10.0          # soft-lockup threshold: seconds without progress (0 = off)
    check_interval: float = 0.0     # live invariant checks every N s (0: only after the run)
    on_cpu_death: str = "fail"      # a killed CPU: "fail" the run (WorkerDied), recover and
                                    # "stop" it, or recover, restart the CPU and "continue"


@dataclasses.dataclass(frozen=True, slots=True)
class MachineSpec:
    """[machine]: the simulated machine; cpus and topology are resolved by the coordinator."""

    cpus: str | int | tuple[int, ...]   # "all", a count, or host CPU ids in simulated-CPU order
    memory: int                         # bytes of simulated RAM, a multiple of PAGE_SIZE
    topology: str                       # "host", "fake:N", or an absolute topology file path
    lock_stat: bool
    lock_hold_sample: int               # time 1 hold in N acquisitions (power of two)
    remote_access_ns: int               # extra ns per remote touch per (distance-10)/10
    max_page_order: int = 10            # MAX_PAGE_ORDER (inclusive), 1..15
    min_free_kbytes: int | None = None  # None: Linux's formula from managed memory
    watermark_scale_factor: int = 10    # as /proc/sys/vm/watermark_scale_factor, 1..3000
    pcp: bool = True                    # per-CPU page lists on (False: zone lock every time)
    pcp_high: int | None = None         # override every PCP's high (None: zone_highsize)
    pcp_batch: int | None = None        # override every PCP's batch (None: zone_batchsize)
    lockdep: bool = False               # debug: refuse lock acquisitions out of order (sync/lockdep.py)
    pcp_autotune: str | None = None     # "exact" | "batched" | "off"; None: the kernel profile's
    thp: bool = True                    # THP enabled (khugepaged's min_free_kbytes raise, order-9 PCP lists)


@dataclasses.dataclass(frozen=True, slots=True)
class SlabSpec:
    """[slab]: SLUB's configuration (the C kernel's Kconfig names, mm/slab/slab_common.py:slab_params)."""

    mag_size: int | None = None         # CONFIG_SLAB_MAG_SIZE: per-CPU magazine, 0 = off; None: profile's
    max_order: int = 3                  # CONFIG_SLAB_MAX_ORDER
    min_partial: int | None = None      # None: Linux's clamp(ilog2(size) / 2, 5, 10)
    min_objects: int | None = None      # None: 4 * (fls(nr_cpus) + 1)
    debug: str = ""                     # slub_debug= syntax: "FZPU", "ZP,kmalloc-64"
    max_caches: int = 64
    nr_sheaves: int = 64
    percpu_sheaves: bool | None = None  # per-CPU sheaves for caches with a sheaf_capacity; None: profile's


@dataclasses.dataclass(frozen=True, slots=True)
class KernelSpec:
    """[kernel]: which kernel's defaults the machine takes (params.KERNEL_PROFILES)."""

    profile: str = DEFAULT_KERNEL_PROFILE


@dataclasses.dataclass(frozen=True, slots=True)
class NumaSpec:
    """[numa]: memory policies in numactl's words, checked by mm/numa/mempolicy.py, and the
    process-memory keys of _NUMA_PROC_KEYS (balancing, balancing_placement, the
    numa_balancing_scan_* sysctls, max_policies, max_shared_policies)."""

    policy: str = "default"                         # e.g. "local", "bind=0-1", "interleave=all"
    cpu_policy: tuple[tuple[int, str], ...] = ()    # per simulated CPU overrides
    weights: tuple[int, ...] = ()                   # weighted-interleave weight per node
    settings: tuple[tuple[str, object], ...] = ()   # process-memory keys given (_NUMA_PROC_KEYS)

    def as_dict(self) -> dict[str, object]:
        """What the machine gets as config["numa"] (mm/numa reads it)."""
        return {"policy": self.policy, "cpu_policy": {str(c): p for c, p in self.cpu_policy},
                "weights": list(self.weights), **dict(self.settings)}


@dataclasses.dataclass(frozen=True, slots=True)
class VmSpec:
    """[vm]: the virtual-memory configuration as given (keys not given take
    mm/vm/mm_types.py vm_params' defaults); values checked here against _VM_KEYS."""

    settings: tuple[tuple[str, object], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return dict(self.settings)


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsSpec:
    """[debug] / [vmalloc]: the keys as given (keys not given take their module's
    defaults), values checked here against _DEBUG_KEYS / _VMALLOC_KEYS."""

    settings: tuple[tuple[str, object], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return dict(self.settings)


@dataclasses.dataclass(frozen=True, slots=True)
class LocksSpec:
    """[locks]: which spinlock implementation each lock class uses (sync/spinlock.py)."""

    spinlock: str = "tas"                           # every class not listed below
    classes: tuple[tuple[str, str], ...] = ()       # (lock class, kind) overrides, sorted

    def to_config(self) -> dict[str, Any]:
        """The arena config's `locks` entry."""
        return {"spinlock": self.spinlock, "classes": dict(self.classes)}


@dataclasses.dataclass(frozen=True, slots=True)
class ReclaimSpec:
    """[reclaim]: the memory-pressure configuration as given (defaults: mm/reclaim/layout.py
    reclaim_params).  `present`: the scenario has the table, which starts kswapd and the
    flusher as extra CPUs (unless kswapd / flusher = false)."""

    settings: tuple[tuple[str, object], ...] = ()
    present: bool = False

    def as_dict(self) -> dict[str, object]:
        return dict(self.settings)


@dataclasses.dataclass(frozen=True, slots=True)
class FaultSpec:
    """[fault]: kill simulated CPUs at named fault points (mm/intent.py POINTS; the names
    are checked by the coordinator, `aerosync doctor --fault-points` lists them).

    kill_at       a point name: the first CPU to pass it (after kill_skip passes; only
                  CPU kill_cpu when >= 0) kills itself there, once
    kill_random   this many kills, each of a random CPU (kill_cpu when >= 0) at a random
                  point among those the run has passed, one every kill_interval seconds
                  (counted from the previous recovery)
    """

    kill_at: str = ""
    kill_cpu: int = -1
    kill_skip: int = 0
    kill_random: int = 0
    kill_interval: float = 0.05

    @property
    def active(self) -> bool:
        return bool(self.kill_at) or self.kill_random > 0

    def to_config(self) -> dict[str, Any]:
        """The arena config's `fault` entry ({} when no kill is asked for)."""
        return dataclasses.asdict(self) if self.active else {}


@dataclasses.dataclass(frozen=True, slots=True)
class EventSpec:
    """One [[events]] table: CPU hotplug of simulated CPU `cpu` `at` seconds after the start."""

    at: float
    cpu: int
    action: str                                     # "offline" | "online"


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario as it will run; `workload` is the workload's Params instance."""

    name: str
    description: str
    file: str                       # absolute path of the scenario file ("" if none)
    run: RunSpec
    machine: MachineSpec
    workload: object
    numa: NumaSpec = NumaSpec()
    slab: SlabSpec = SlabSpec()
    vm: VmSpec = VmSpec()
    kernel: KernelSpec = KernelSpec()
    locks: LocksSpec = LocksSpec()
    debug: SettingsSpec = SettingsSpec()
    vmalloc: SettingsSpec = SettingsSpec()
    reclaim: ReclaimSpec = ReclaimSpec()
    fault: FaultSpec = FaultSpec()
    events: tuple[EventSpec, ...] = ()          # [[events]], in time order
    overridden: frozenset[str] = frozenset()    # dotted keys set on the command line (--set)

    def blame(self, key: str, *involved: str) -> str:
        """Where a later check (the coordinator's, against the host) puts the fault: the
        command line if `key`, an involved key, or a table holding one was set there,
        else the scenario file."""
        return _blame(self.file or "<scenario>", self.overridden, key, *involved)


def _blame(file: str, overridden: frozenset[str], key: str, *involved: str) -> str:
    for k in (key, *involved):
        parts = k.split(".")
        if any(".".join(parts[:i]) in overridden for i in range(1, len(parts) + 1)):
            return COMMAND_LINE
    return file


@dataclasses.dataclass(frozen=True, slots=True)
class _Ctx:
    """Where errors are reported: the file, and which dotted keys came from overrides."""

    file: str
    overridden: frozenset[str] = frozenset()

    def err(self, key: str, value: object, allowed: str, *involved: str) -> ScenarioError:
        """Blame the command line if `key` (or any involved key, or a table holding one)
        was set by an override."""
        return ScenarioError(_blame(self.file, self.overridden, key, *involved), key, value, allowed)


# ---------------------------------------------------------------------------- public API


def load_scenario(
    path: str | Path, registry: Mapping[str, type], overrides: Sequence[str] = ()
) -> Scenario:
    """Read, override and validate one scenario file.

    `registry` maps workload name → its Params dataclass.  Raises ScenarioError for a
    missing or unreadable file, a TOML syntax error, a malformed override, or any bad key
    or value; nothing is created on failure.
    """
    shown = str(path)
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ScenarioError(shown, "<file>", shown, "an existing scenario TOML file") from None
    except IsADirectoryError:
        raise ScenarioError(shown, "<file>", shown, "a scenario TOML file, not a directory") from None
    except PermissionError as e:
        raise ScenarioError(shown, "<file>", shown, f"a readable scenario TOML file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(shown, "<file>", shown, f"a UTF-8 TOML file ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(shown, "<toml>", _syntax_line(p, str(e)), f"valid TOML: {e}") from None
    except ValueError as e:          # a NUL byte in the path (only possible when called from Python)
        raise ScenarioError(shown, "<file>", shown, f"a file path ({e})") from None
    file = str(p.resolve())
    return _build(data, _Ctx(shown), registry, overrides, file=file, stem=p.stem, base_dir=p.resolve().parent)


def with_overrides(s: Scenario, registry: Mapping[str, type], overrides: Sequence[str]) -> Scenario:
    """The scenario `s` with more overrides applied and everything re-validated.

    For sweeps that vary one key of an already loaded scenario without re-reading the
    file.  Errors as in `load_scenario`.
    """
    data = scenario_to_dict(s)
    del data["file"]
    data["kernel"].pop("effective", None)
    data["machine"] = {k: v for k, v in data["machine"].items() if v is not None}
    data["run"] = {k: v for k, v in data["run"].items() if v is not None}
    base = Path(s.file).parent if s.file else Path.cwd()
    out = _build(data, _Ctx(s.file or "<scenario>"), registry, overrides,
                 file=s.file, stem=s.name, base_dir=base)
    return dataclasses.replace(out, overridden=out.overridden | s.overridden)


def parse_size(text_or_int: object, file: str, key: str) -> int:
    """Bytes from an int or a "64M" / "512MiB" / "1G" string (powers of 1024).

    Only parses: range and alignment are the caller's rules.  Raises ScenarioError(file,
    key, value, ...) for anything else (bools, floats, negative numbers, "64MB").
    """
    if isinstance(text_or_int, int) and not isinstance(text_or_int, bool):
        if text_or_int >= 0:
            return text_or_int
    elif isinstance(text_or_int, str):
        m = _SIZE_RE.fullmatch(text_or_int.strip())
        if m:
            shift = _SIZE_SHIFT[m.group(2).lower()] if m.group(2) else 0
            return int(m.group(1)) << shift
    raise ScenarioError(file, key, text_or_int, _SIZE_ALLOWED)


def scenario_to_dict(s: Scenario) -> dict[str, Any]:
    """The scenario as run, as plain JSON types (tuples become lists)."""
    return {
        "name": s.name,
        "description": s.description,
        "file": s.file,
        "run": _jsonable({k: v for k, v in dataclasses.asdict(s.run).items()   # (default left out: hashes kept)
                          if k != "on_cpu_death" or v != "fail"}),
        "machine": _jsonable(dataclasses.asdict(s.machine)),
        "numa": s.numa.as_dict(),
        "slab": {k: v for k, v in dataclasses.asdict(s.slab).items() if v is not None},
        "vm": s.vm.as_dict(),
        "kernel": {"profile": s.kernel.profile, "effective": kernel_knobs(s)},
        **({"reclaim": s.reclaim.as_dict()} if s.reclaim.present else {}),
        "workload": _jsonable(dataclasses.asdict(s.workload)),
        "locks": s.locks.to_config(),
        "debug": s.debug.as_dict(),
        "vmalloc": s.vmalloc.as_dict(),
        **({"fault": dataclasses.asdict(s.fault)} if s.fault.active else {}),
        "events": [dataclasses.asdict(e) for e in s.events],
    }


def kernel_knobs(s: Scenario) -> dict[str, Any]:
    """The knobs a kernel profile sets, as this scenario runs them: the [slab] / [machine]
    value where one is given, else the profile's default."""
    prof = KERNEL_PROFILES[s.kernel.profile]
    mag, pcs, tune = s.slab.mag_size, s.slab.percpu_sheaves, s.machine.pcp_autotune
    return {"slab_mag_size": prof["slab_mag_size"] if mag is None else mag,
            "slab_percpu_sheaves": prof["slab_percpu_sheaves"] if pcs is None else pcs,
            "pcp_autotune": prof["pcp_autotune"] if tune is None else tune,
            "thp": s.machine.thp}


def scenario_hash(s: Scenario) -> str:
    """First 16 hex digits of sha256 over the canonical JSON of what determines the run.

    Covers run, machine and workload parameters (canonical: sorted keys, no spaces);
    name, description and the file's location are left out so a renamed or moved copy
    of the same experiment hashes the same.
    """
    d = scenario_to_dict(s)
    canon = {"run": d["run"], "machine": d["machine"], "numa": d["numa"], "slab": d["slab"],
             "kernel": d["kernel"], "workload": d["workload"]}
    if s.locks != LocksSpec():          # only when set, so older scenarios keep their hash
        canon["locks"] = d["locks"]
    for sec in ("debug", "vmalloc"):    # likewise
        if d[sec]:
            canon[sec] = d[sec]
    if s.fault.active:
        canon["fault"] = d["fault"]
    if s.events:
        canon["events"] = d["events"]
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ building


def _build(
    data: dict[str, Any],
    ctx: _Ctx,
    registry: Mapping[str, type],
    overrides: Sequence[str],
    *,
    file: str,
    stem: str,
    base_dir: Path,
) -> Scenario:
    data, overridden = _apply_overrides(data, overrides)
    ctx = dataclasses.replace(ctx, overridden=overridden)
    for key in data:
        if key not in _TOP_KEYS:
            hint = ""
            if key in _RUN_KEYS or key in _MACHINE_KEYS:
                section = "run" if key in _RUN_KEYS else "machine"
                hint = f" ({key!r} belongs in [{section}])"
            raise ctx.err(_shown_key(key), data[key], f"known top-level keys: {', '.join(_TOP_KEYS)}{hint}")
    name = data.get("name", _MISSING)
    if name is _MISSING:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "scenario"
    elif not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ctx.err("name", name, "a non-empty string of letters, digits, '_', '.' and '-'")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ctx.err("description", description, "a string (free text)")
    run_t = _table(data, "run", ctx)
    machine_t = _table(data, "machine", ctx)
    workload_v = data.get("workload", {})
    if not isinstance(workload_v, dict):
        raise ctx.err("workload", workload_v, "a table [workload] of the workload's parameters "
                      '(the workload\'s name goes in [run] workload = "...")')
    run = _parse_run(run_t, ctx, registry)
    machine = _parse_machine(machine_t, ctx, base_dir)
    numa = _parse_numa(_table(data, "numa", ctx), ctx)
    slab = _parse_slab(_table(data, "slab", ctx), ctx)
    vm = _parse_vm(_table(data, "vm", ctx), ctx)
    kernel = _parse_kernel(_table(data, "kernel", ctx), ctx)
    locks = _parse_locks(_table(data, "locks", ctx), ctx)
    debug = _parse_settings(_table(data, "debug", ctx), "debug", _DEBUG_KEYS, ctx)
    _check_kfence_pool(debug.as_dict(), machine.memory, ctx)
    vmalloc = _parse_settings(_table(data, "vmalloc", ctx), "vmalloc", _VMALLOC_KEYS, ctx)
    reclaim = _parse_reclaim(data, ctx)
    fault = _parse_fault(_table(data, "fault", ctx), ctx, run)
    events = _parse_events(data.get("events", []), ctx, run)
    params = _parse_workload(workload_v, ctx, run.workload, registry[run.workload])
    return Scenario(name=name, description=description, file=file, run=run, machine=machine, workload=params,
                    numa=numa, slab=slab, vm=vm, kernel=kernel, locks=locks, reclaim=reclaim, debug=debug,
                    vmalloc=vmalloc, fault=fault, events=events, overridden=overridden)


def _check_kfence_pool(debug: dict[str, Any], memory: int, ctx: _Ctx) -> None:
    """The KFENCE pool ((n + 1) * 2 pages, reserved from the top of memory) may take at
    most half of machine.memory (mm/san/config.py debug_params says the same)."""
    if not debug.get("kfence_sample_interval"):
        return
    n = int(debug.get("kfence_num_objects", 255))
    most = memory // 2 // (2 * PAGE_SIZE) - 1
    if n > most:
        raise ctx.err("debug.kfence_num_objects", n, f"at most {most} with machine.memory {memory >> 10} KiB: the "
                      f"pool ((n + 1) * 2 pages, reserved from the top of memory) may take at most half of it",
                      "machine.memory")


def _parse_fault(t: dict[str, Any], ctx: _Ctx, run: RunSpec) -> FaultSpec:
    """[fault]: shapes and ranges here; kill_at's point name and kill_cpu against the
    machine are checked by the coordinator (mm/intent.py has the points)."""
    _check_keys(t, "fault", _FAULT_KEYS, ctx)
    kill_at = t.get("kill_at", "")
    if not isinstance(kill_at, str) or (kill_at and not re.fullmatch(r"[a-z0-9_]+(:[a-z0-9_]+)+", kill_at)):
        raise ctx.err("fault.kill_at", kill_at, 'a fault point name such as "buddy:alloc:split" '
                      "(`aerosync doctor --fault-points` lists them)")
    ints = {"kill_cpu": (-1, MAX_CPUS - 1, "a simulated CPU id, or -1 for any CPU"),
            "kill_skip": (0, 1 << 30, "passes of kill_at to let go first: an int >= 0"),
            "kill_random": (0, 1 << 20, "how many random kills: an int 0..1048576")}
    vals: dict[str, Any] = {}
    for key, (lo, hi, allowed) in ints.items():
        v = t.get(key, FaultSpec.__dataclass_fields__[key].default)
        if not _is_int(v) or not lo <= v <= hi:
            raise ctx.err(f"fault.{key}", v, allowed)
        vals[key] = v
    iv = t.get("kill_interval", 0.05)
    if isinstance(iv, bool) or not isinstance(iv, int | float) or not math.isfinite(iv) or not 0 <= iv <= 3600:
        raise ctx.err("fault.kill_interval", iv, "seconds between random kills, 0..3600")
    spec = FaultSpec(kill_at=kill_at, kill_interval=float(iv), **vals)
    if spec.active and run.on_cpu_death == "fail":
        raise ctx.err("run.on_cpu_death", run.on_cpu_death, '"stop" or "continue" when [fault] kills CPUs '
                      "(kill_at / kill_random): the coordinator recovers the machine after each kill",
                      "fault.kill_at", "fault.kill_random")
    return spec



def _parse_events(v: object, ctx: _Ctx, run: RunSpec) -> tuple[EventSpec, ...]:
    """[[events]]: each table's keys and types here; the CPU ids and the order of
    offline/online against the machine in the coordinator (aerosync/hotplug.py)."""
    shape = 'an array of tables, each [[events]] at = 2.0, cpu = 1, action = "offline" (or "online")'
    if not isinstance(v, list):
        raise ctx.err("events", _jsonable(v) if isinstance(v, dict) else v, shape)
    out = []
    for i, t in enumerate(v):
        key = f"events[{i}]"
        if not isinstance(t, dict):
            raise ctx.err(key, t, shape)
        for k in t:
            if k not in _EVENTS_KEYS:
                raise ctx.err(f"{key}.{_shown_key(k)}", t[k], f"known [[events]] keys: {', '.join(_EVENTS_KEYS)}")
        for k in _EVENTS_KEYS:
            if k not in t:
                raise ctx.err(f"{key}.{k}", _MISSING, f"required in every [[events]] table ({', '.join(_EVENTS_KEYS)})")
        at, cpu, action = t["at"], t["cpu"], t["action"]
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
            raise ctx.err(f"{key}.at", at, "seconds after the run's start: a finite number >= 0")
        if run.duration is not None and at >= run.duration:
            raise ctx.err(f"{key}.at", at, f"seconds >= 0 and < run.duration ({run.duration:g}): "
                          "an event after the end never happens", "run.duration")
        if not _is_int(cpu) or not 0 <= cpu < MAX_CPUS:
            raise ctx.err(f"{key}.cpu", cpu, f"a simulated CPU id: an int 0..{MAX_CPUS - 1}")
        if action not in HOTPLUG_ACTIONS:
            raise ctx.err(f"{key}.action", action, " or ".join(f'"{a}"' for a in HOTPLUG_ACTIONS))
        out.append(EventSpec(at=float(at), cpu=cpu, action=action))
    return tuple(sorted(out, key=lambda e: e.at))


def _parse_kernel(t: dict[str, Any], ctx: _Ctx) -> KernelSpec:
    _check_keys(t, "kernel", _KERNEL_KEYS, ctx)
    profile = t.get("profile", DEFAULT_KERNEL_PROFILE)
    if not isinstance(profile, str) or profile not in KERNEL_PROFILES:
        raise ctx.err("kernel.profile", profile, f"one of {', '.join(repr(p) for p in KERNEL_PROFILES)}")
    return KernelSpec(profile=profile)


def _parse_vm(t: dict[str, Any], ctx: _Ctx) -> VmSpec:
    """[vm]: types and ranges (the same rules vm_params enforces at boot)."""
    _check_keys(t, "vm", tuple(_VM_KEYS), ctx)
    out = []
    for key, v in t.items():
        kind, allowed = _VM_KEYS[key]
        ok = {"str": isinstance(v, str), "bool": isinstance(v, bool), "int": _is_int(v)}[kind]
        if ok:
            ok = _vm_value_ok(key, v, t)
        if not ok:
            raise ctx.err(f"vm.{key}", v, allowed)
        out.append((key, v))
    return VmSpec(tuple(sorted(out)))


def _parse_settings(t: dict[str, Any], section: str, keys: Mapping[str, tuple[str, str, tuple[int, int] | None]],
                    ctx: _Ctx) -> SettingsSpec:
    """[debug] / [vmalloc]: types and ranges (the rules debug_params / vmalloc_params
    enforce at boot)."""
    _check_keys(t, section, tuple(keys), ctx)
    out = []
    for key, v in t.items():
        kind, allowed, rng = keys[key]
        ok = isinstance(v, bool) if kind == "bool" else _is_int(v)
        if ok and rng is not None:
            ok = rng[0] <= v <= rng[1] and not (key == "vmap_block_max_kb" and v % 4)
        if not ok:
            raise ctx.err(f"{section}.{key}", v, allowed)
        out.append((key, v))
    return SettingsSpec(tuple(sorted(out)))


def _parse_reclaim(data: dict[str, Any], ctx: _Ctx) -> ReclaimSpec:
    """[reclaim]: types and ranges (the rules reclaim_params enforces at boot)."""
    present = "reclaim" in data
    t = _table(data, "reclaim", ctx)
    _check_keys(t, "reclaim", tuple(_RECLAIM_KEYS), ctx)
    out = []
    for key, v in t.items():
        kind, allowed = _RECLAIM_KEYS[key]
        if kind == "size":
            v = parse_size(v, ctx.file, f"reclaim.{key}") if isinstance(v, str) else v
            ok = _is_int(v) and 0 <= v <= 1 << 40 and v % 4096 == 0
        else:
            ok = {"str": isinstance(v, str), "bool": isinstance(v, bool), "int": _is_int(v)}[kind]
        if ok and kind == "int":
            lo, hi = _RECLAIM_RANGES[key]
            ok = lo <= v <= hi
        if ok and key in _RECLAIM_CHOICES:
            ok = v in _RECLAIM_CHOICES[key]
        if not ok:
            raise ctx.err(f"reclaim.{key}", v, allowed)
        out.append((key, v))
    return ReclaimSpec(tuple(sorted(out)), present)


def _vm_value_ok(key: str, v: Any, t: Mapping[str, Any]) -> bool:
    if key == "mm":
        return v in ("processes", "threads")
    if key == "fault_locking":
        return v in ("mmap_lock", "per_vma", "speculative")
    if key == "pcid":
        return True
    ranges = {"pgtable_levels": (4, 5), "tlb_entries": (16, 65536), "tlb_ways": (1, 64), "max_tasks": (2, 1 << 20),
              "max_mms": (2, 1 << 20), "max_files": (1, 65536), "mmap_min_addr": (0, (1 << 32) - 4096),
              "fault_around_bytes": (4096, 1 << 21), "read_ahead_kb": (0, 65536), "shadow_depth_limit": (2, 32),
              "max_map_count": (16, 1 << 24), "tlb_single_page_flush_ceiling": (0, 1 << 20)}
    lo, hi = ranges[key]
    if not lo <= v <= hi:
        return False
    if key == "pgtable_levels":
        return v in (4, 5)
    if key == "mmap_min_addr":
        return v % 4096 == 0
    if key == "fault_around_bytes":
        return not v & (v - 1)
    if key == "tlb_ways":
        return int(t.get("tlb_entries", 1536)) % v == 0
    return True


def _parse_slab(t: dict[str, Any], ctx: _Ctx) -> SlabSpec:
    _check_keys(t, "slab", _SLAB_KEYS, ctx)
    ranges = {"mag_size": (0, 128, None), "max_order": (0, 10, 3), "min_partial": (0, 1000, None),
              "min_objects": (1, 4096, None), "max_caches": (16, 1024, 64), "nr_sheaves": (1, 4096, 64)}
    vals: dict[str, Any] = {}
    for key, (lo, hi, default) in ranges.items():
        v = t.get(key, default)
        if v is not None and (not _is_int(v) or not lo <= v <= hi):
            raise ctx.err(f"slab.{key}", v, f"an int {lo}..{hi}")
        vals[key] = v
    debug = t.get("debug", "")
    if not isinstance(debug, str) or not re.fullmatch(r"[-FZPUTAO]*(,[A-Za-z0-9_.-]+)*", debug):
        raise ctx.err("slab.debug", debug, 'slub_debug syntax: flags from F Z P U T A O (or "-"), then an optional '
                      'comma list of cache names, e.g. "FZPU" or "ZP,kmalloc-64"')
    pcs = t.get("percpu_sheaves")
    if pcs is not None and not isinstance(pcs, bool):
        raise ctx.err("slab.percpu_sheaves", pcs, "true or false (omit for the kernel profile's default)")
    return SlabSpec(debug=debug, percpu_sheaves=pcs, **vals)


def _parse_locks(t: dict[str, Any], ctx: _Ctx) -> LocksSpec:
    """[locks]: the spinlock kind, globally and per lock class (class names as in
    /proc/lock_stat, e.g. "&zone->lock", "&n->list_lock", "slab_mutex", "lock_storm_lock")."""
    _check_keys(t, "locks", _LOCKS_KEYS, ctx)
    kinds = " or ".join(f'"{k}"' for k in _SPINLOCK_KINDS)
    spinlock = t.get("spinlock", "tas")
    if spinlock not in _SPINLOCK_KINDS:
        raise ctx.err("locks.spinlock", spinlock, f'{kinds} ("tas": test-and-set with backoff, '
                      '"qspinlock": queued MCS lock, FIFO)')
    raw = t.get("classes", {})
    if not isinstance(raw, dict):
        raise ctx.err("locks.classes", raw, 'a table of lock class = kind, e.g. {"&zone->lock" = "qspinlock"}')
    classes = []
    for cls, kind in raw.items():
        if not 0 < len(cls.encode()) <= 32:
            raise ctx.err(f"locks.classes.{cls}", kind, "lock class names of 1..32 bytes (as in /proc/lock_stat)")
        if kind not in _SPINLOCK_KINDS:
            raise ctx.err(f"locks.classes.{cls}", kind, kinds)
        classes.append((cls, kind))
    return LocksSpec(spinlock=spinlock, classes=tuple(sorted(classes)))


def _parse_numa(t: dict[str, Any], ctx: _Ctx) -> NumaSpec:
    """[numa]: syntax only here; the policy words are checked against the machine later."""
    _check_keys(t, "numa", _NUMA_KEYS, ctx)
    words = "a numactl policy: default, local, bind=NODES, preferred=NODE, preferred-many=NODES, " \
            "interleave=NODES, weighted-interleave=NODES (NODES like 0-1,3 or all)"
    policy = t.get("policy", "default")
    if not isinstance(policy, str) or not policy.strip():
        raise ctx.err("numa.policy", policy, words)
    raw = t.get("cpu_policy", {})
    if not isinstance(raw, dict):
        raise ctx.err("numa.cpu_policy", raw, 'a table of simulated CPU id = policy, e.g. {"0" = "bind=0"}')
    per_cpu = []
    for k, v in raw.items():
        if not (isinstance(k, str) and k.isdigit()):
            raise ctx.err(f"numa.cpu_policy.{_shown_key(k)}", v, "keys are simulated CPU ids (0, 1, ...)")
        if not isinstance(v, str) or not v.strip():
            raise ctx.err(f"numa.cpu_policy.{k}", v, words)
        per_cpu.append((int(k), v.strip()))
    weights = t.get("weights", [])
    if not isinstance(weights, list) or not all(_is_int(w) and 1 <= w <= 255 for w in weights):
        raise ctx.err("numa.weights", weights, "a list of ints 1..255, one per node (weighted interleave)")
    settings = []
    for key, (kind, allowed, lo, hi) in _NUMA_PROC_KEYS.items():
        if key not in t:
            continue
        v = t[key]
        ok = isinstance(v, bool) if kind == "bool" else _is_int(v) and lo <= v <= hi
        if not ok:
            raise ctx.err(f"numa.{key}", v, allowed)
        settings.append((key, v))
    given = dict(settings)
    lo_ms = given.get("numa_balancing_scan_period_min_ms", 1000)
    hi_ms = given.get("numa_balancing_scan_period_max_ms", 60000)
    if lo_ms > hi_ms:
        raise ctx.err("numa.numa_balancing_scan_period_min_ms", lo_ms,
                      f"at most numa_balancing_scan_period_max_ms ({hi_ms})")
    return NumaSpec(policy=policy.strip(), cpu_policy=tuple(sorted(per_cpu)), weights=tuple(weights),
                    settings=tuple(sorted(settings)))


def _table(data: Mapping[str, Any], section: str, ctx: _Ctx) -> dict[str, Any]:
    value = data.get(section, {})
    if not isinstance(value, dict):
        raise ctx.err(section, value, f"a table [{section}]")
    return value


def _check_keys(table: Mapping[str, Any], section: str, known: Sequence[str], ctx: _Ctx) -> None:
    for key in table:
        if key not in known:
            raise ctx.err(f"{section}.{_shown_key(key)}", table[key], f"known [{section}] keys: {', '.join(known)}")


def _parse_run(t: dict[str, Any], ctx: _Ctx, registry: Mapping[str, type]) -> RunSpec:
    """[run]; warmup is checked against the duration, so it comes last."""
    _check_keys(t, "run", _RUN_KEYS, ctx)
    names = ", ".join(sorted(registry)) or "(none registered)"
    workload = t.get("workload", _MISSING)
    if workload is _MISSING:
        raise ctx.err("run.workload", workload, f"required: one of {names}")
    if not isinstance(workload, str) or workload not in registry:
        raise ctx.err("run.workload", workload, f"one of {names}")

    duration = _number(t, "duration", ctx, "seconds > 0 (a finite int or float)", lambda x: x > 0)
    ops = t.get("ops")
    if duration is not None and ops is not None:
        raise ctx.err("run", {"duration": t["duration"], "ops": ops},
                      "exactly one of run.duration (seconds) or run.ops (operations per CPU)",
                      "run.duration", "run.ops")
    if ops is None:
        duration = DEFAULT_DURATION if duration is None else duration
    elif not _is_int(ops) or ops <= 0:
        raise ctx.err("run.ops", ops, "operations per simulated CPU: an int > 0")

    seed = t.get("seed", 1)
    if not _is_int(seed) or seed < 0:
        raise ctx.err("run.seed", seed, "an int >= 0")
    lo, hi = SAMPLE_INTERVAL_MIN, SAMPLE_INTERVAL_MAX
    sample_interval = _number(t, "sample_interval", ctx, f"seconds, {lo}..{hi}", lambda x: lo <= x <= hi)
    warmup = _number(t, "warmup", ctx, "seconds >= 0", lambda x: x >= 0)
    warmup = 0.0 if warmup is None else warmup
    watchdog = _number(t, "watchdog", ctx, "seconds without progress before a soft lockup is reported, "
                       "0 (off) or 0.5..3600", lambda x: x == 0 or 0.5 <= x <= 3600)
    check_interval = _number(t, "check_interval", ctx, "seconds between live invariant checks, 0 (only after "
                             "the run) or 0.1..3600", lambda x: x == 0 or 0.1 <= x <= 3600)
    on_cpu_death = t.get("on_cpu_death", "fail")
    if on_cpu_death not in ON_CPU_DEATH:
        raise ctx.err("run.on_cpu_death", on_cpu_death, '"fail" (a killed CPU ends the run: WorkerDied), "stop" '
                      '(recover the machine, end the run cleanly) or "continue" (recover, restart the CPU, go on)')
    if duration is not None and warmup >= duration:
        raise ctx.err("run.warmup", t["warmup"], f"seconds >= 0 and < run.duration ({duration})", "run.duration")
    return RunSpec(
        workload=workload,
        duration=duration,
        ops=ops,
        seed=seed,
        sample_interval=0.1 if sample_interval is None else sample_interval,
        warmup=warmup,
        watchdog=10.0 if watchdog is None else watchdog,
        check_interval=0.0 if check_interval is None else check_interval,
        on_cpu_death=on_cpu_death,
    )


def _number(t: Mapping[str, Any], key: str, ctx: _Ctx, allowed: str, ok: Callable[[float], bool]) -> float | None:
    """t[key] as a finite float satisfying ok(x), or None if absent (int accepted)."""
    if key not in t:
        return None
    v = t[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not ok(v):
        raise ctx.err(f"run.{key}", v, allowed)
    return float(v)


def _parse_machine(t: dict[str, Any], ctx: _Ctx, base_dir: Path) -> MachineSpec:
    _check_keys(t, "machine", _MACHINE_KEYS, ctx)
    cpus = _parse_cpus(t.get("cpus", "all"), ctx)

    raw_mem = t.get("memory", DEFAULT_MEMORY)
    file = COMMAND_LINE if "machine.memory" in ctx.overridden else ctx.file
    memory = parse_size(raw_mem, file, "machine.memory")
    if memory % PAGE_SIZE or not MIN_MEMORY <= memory <= MAX_MEMORY:
        raise ctx.err("machine.memory", raw_mem,
                      f"a multiple of 4 KiB ({PAGE_SIZE} bytes) between 4 MiB and 64 GiB "
                      f"({MIN_MEMORY}..{MAX_MEMORY} bytes); {memory} bytes given")

    topology = _parse_topology(t.get("topology", "host"), ctx, base_dir)

    lock_stat = t.get("lock_stat", True)
    if not isinstance(lock_stat, bool):
        raise ctx.err("machine.lock_stat", lock_stat, "true or false")
    hold = t.get("lock_hold_sample", 8)
    if not _is_int(hold) or not 1 <= hold <= LOCK_HOLD_SAMPLE_MAX or hold & (hold - 1):
        raise ctx.err("machine.lock_hold_sample", hold,
                      f"a power of two 1..{LOCK_HOLD_SAMPLE_MAX} (1 = time every acquisition)")
    remote = t.get("remote_access_ns", 0)
    if not _is_int(remote) or remote < 0:
        raise ctx.err("machine.remote_access_ns", remote, "an int >= 0 (nanoseconds; 0 = off)")
    order = t.get("max_page_order", 10)
    if not _is_int(order) or not 1 <= order <= 15:
        raise ctx.err("machine.max_page_order", order, "MAX_PAGE_ORDER, an int 1..15 (Linux: 10)")
    mfk = t.get("min_free_kbytes")
    if mfk is not None and (not _is_int(mfk) or mfk < 0):
        raise ctx.err("machine.min_free_kbytes", mfk, "an int >= 0 (KiB; omit for Linux's formula)")
    wsf = t.get("watermark_scale_factor", 10)
    if not _is_int(wsf) or not 1 <= wsf <= 3000:
        raise ctx.err("machine.watermark_scale_factor", wsf, "an int 1..3000 (Linux: 10)")
    pcp = t.get("pcp", True)
    if not isinstance(pcp, bool):
        raise ctx.err("machine.pcp", pcp, "true or false (false: every allocation takes the zone lock)")
    lockdep = t.get("lockdep", False)
    if not isinstance(lockdep, bool):
        raise ctx.err("machine.lockdep", lockdep, "true or false (check the lock order on every acquisition)")
    tune = t.get("pcp_autotune")
    if tune is not None and tune not in _PCP_AUTOTUNE:
        raise ctx.err("machine.pcp_autotune", tune, f"one of {', '.join(repr(x) for x in _PCP_AUTOTUNE)} "
                      "(omit for the kernel profile's default)")
    thp = t.get("thp", True)
    if not isinstance(thp, bool):
        raise ctx.err("machine.thp", thp, "true or false (transparent hugepages enabled)")
    extra: dict[str, Any] = {"lockdep": lockdep, "pcp_autotune": tune, "thp": thp}
    for key in ("pcp_high", "pcp_batch"):
        v = t.get(key)
        if v is not None and (not _is_int(v) or not 1 <= v <= 1 << 20):
            raise ctx.err(f"machine.{key}", v, "an int 1..1048576 (pages; omit for Linux's sizing)")
        extra[key] = v
    return MachineSpec(cpus=cpus, memory=memory, topology=topology, lock_stat=lock_stat,
                       lock_hold_sample=hold, remote_access_ns=remote, max_page_order=order,
                       min_free_kbytes=mfk, watermark_scale_factor=wsf, pcp=pcp, **extra)


def _parse_cpus(v: object, ctx: _Ctx) -> str | int | tuple[int, ...]:
    allowed = (f'"all" (every CPU this host allows), a count 1..{MAX_CPUS}, '
               "or a non-empty list of distinct host CPU ids (ints >= 0)")
    if v == "all":
        return "all"
    if isinstance(v, int) and not isinstance(v, bool):
        if 1 <= v <= MAX_CPUS:
            return v
    elif isinstance(v, list) and v and all(_is_int(c) and c >= 0 for c in v):
        seen: set[int] = set()
        for c in v:
            if c in seen:
                raise ctx.err("machine.cpus", v, f"{allowed}; CPU {c} is listed twice")
            seen.add(c)
        return tuple(v)
    raise ctx.err("machine.cpus", v, allowed)


def _parse_topology(v: object, ctx: _Ctx, base_dir: Path) -> str:
    allowed = (f'"host", "fake:N" or "fake:N:D" (N nodes, an int 1..{MAX_NUMNODES}; D the distance '
               "between fake nodes, 11..254), "
               "or the path of an existing topology TOML file (relative to the scenario's directory)")
    if not isinstance(v, str) or not v.strip() or "\0" in v:
        raise ctx.err("machine.topology", v, allowed)
    if v == "host":
        return v
    if v.startswith("fake:"):
        n, _, d = v.removeprefix("fake:").partition(":")
        if n.isascii() and n.isdigit() and 1 <= int(n) <= MAX_NUMNODES:
            if not d:
                return f"fake:{int(n)}"
            if d.isascii() and d.isdigit() and 11 <= int(d) <= 254:
                return f"fake:{int(n)}:{int(d)}"
        raise ctx.err("machine.topology", v, allowed)
    # A path given on the command line is relative to where the user typed it.
    base = Path.cwd() if "machine.topology" in ctx.overridden else base_dir
    path = (base / Path(v).expanduser()).resolve()
    if not path.is_file():
        raise ctx.err("machine.topology", v, f"{allowed}; {path} is not a file")
    return str(path)


# ------------------------------------------------------------------------------ workload


def _parse_workload(t: dict[str, Any], ctx: _Ctx, name: str, cls: type) -> object:
    """[workload] checked field by field against the Params dataclass, then validate()."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"registry[{name!r}] = {cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in t:
        if key not in fields:
            known = ", ".join(fields) if fields else "(none: this workload takes no parameters)"
            raise ctx.err(f"workload.{_shown_key(key)}", t[key], f"known parameters of workload {name!r}: {known}")
    kwargs: dict[str, Any] = {}
    for fname, f in fields.items():
        key = f"workload.{fname}"
        if fname not in t:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ctx.err(key, _MISSING, f"required by workload {name!r}: {_type_name(hints[fname])}")
            continue
        ok, value = _coerce(t[fname], hints[fname])
        if not ok:
            raise ctx.err(key, t[fname], _type_name(hints[fname]))
        kwargs[fname] = value
    try:
        params = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise _param_error(ctx, name, fields, kwargs, str(e)) from None
    validate = getattr(params, "validate", None)
    if callable(validate):
        msg = validate()
        if msg is not None:
            raise _param_error(ctx, name, fields, dataclasses.asdict(params), str(msg))
    return params


def _param_error(ctx: _Ctx, workload: str, fields: Mapping[str, Any], values: Mapping[str, Any],
                 msg: str) -> ScenarioError:
    """A Params check's message ("orders = [11]: a list of orders 0..10") as an error
    naming workload.<key>: the first parameter the message names leads, the others it
    names are involved (for the blame), the text after "key = value: " is what is allowed."""
    named = [f for f in fields if re.search(rf"(?<![\w.]){re.escape(f)}(?![\w])", msg)]
    if not named:
        return ctx.err("workload", _jsonable(dict(values)), f"parameters of workload {workload!r}: {msg}",
                       *(k for k in ctx.overridden if k.startswith("workload.")))
    lead = min(named, key=msg.index)
    m = re.match(r"[\w/]+ = .*?: (.+)", msg, re.DOTALL)
    allowed = m.group(1) if m else msg
    value = _jsonable(values.get(lead, _MISSING))
    return ctx.err(f"workload.{lead}", value, f"{allowed} (workload {workload!r})",
                   *(f"workload.{f}" for f in named))


def _coerce(v: object, tp: Any) -> tuple[bool, Any]:
    """(True, value as tp) if the TOML value fits the annotation, else (False, None).

    bool is not an int; an int is accepted for a float; a TOML array for a tuple.
    """
    origin = typing.get_origin(tp)
    if tp is bool:
        return isinstance(v, bool), v
    if tp is int:
        return _is_int(v), v
    if tp is float:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return True, float(v)
        return False, None
    if tp is str:
        return isinstance(v, str), v
    if origin is Literal:
        for choice in typing.get_args(tp):
            if type(v) is type(choice) and v == choice:
                return True, v
        return False, None
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(v, list):
            return False, None
        if len(args) == 2 and args[1] is Ellipsis:
            elem_types = [args[0]] * len(v)
        elif len(args) != len(v):
            return False, None
        else:
            elem_types = list(args)
        out = []
        for item, et in zip(v, elem_types):
            ok, item_v = _coerce(item, et)
            if not ok:
                return False, None
            out.append(item_v)
        return True, tuple(out)
    if origin in (typing.Union, types.UnionType):
        # TOML has no null, so `X | None` means "X when given".
        for arm in typing.get_args(tp):
            if arm is not type(None):
                ok, value = _coerce(v, arm)
                if ok:
                    return True, value
        return False, None
    raise TypeError(f"unsupported Params field type {tp!r} (int, float, bool, str, Literal, tuple)")


def _type_name(tp: Any) -> str:
    """How the allowed values of an annotation are described in an error message."""
    origin = typing.get_origin(tp)
    if tp is bool:
        return "a bool (true or false)"
    if tp is int:
        return "an int (not a bool)"
    if tp is float:
        return "a float (an int is accepted)"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(c) for c in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"an array, each element {_type_name(args[0])}"
        return "an array of " + ", ".join(_type_name(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return repr(tp)


# ----------------------------------------------------------------------------- overrides


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> tuple[dict[str, Any], frozenset[str]]:
    """A copy of `data` with each "section.key=value" set; also the dotted keys set.

    Applies the two conveniences of the module docstring: a run length given on the
    command line replaces the file's, and a different workload drops the file's params.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    file_run = data.get("run")
    file_workload = file_run.get("workload") if isinstance(file_run, dict) else None
    given: dict[str, Any] = {}
    for text in overrides:
        key, value = _parse_override(text)
        parts = key.split(".")
        if len(parts) == 1:
            out[key] = value
        else:
            section, sub = parts
            table = out.setdefault(section, {})
            if not isinstance(table, dict):
                raise ScenarioError(COMMAND_LINE, key, value,
                                    f"a key inside a table, but the file's {section} is not a table")
            table[sub] = value
        given[key] = value
    if "run.workload" in given and given["run.workload"] != file_workload:
        out["workload"] = {k.removeprefix("workload."): v for k, v in given.items() if k.startswith("workload.")}
    run = out.get("run")
    if isinstance(run, dict):
        if "run.duration" in given and "run.ops" not in given:
            run.pop("ops", None)
        if "run.ops" in given and "run.duration" not in given:
            run.pop("duration", None)
    return out, frozenset(given)


def _parse_override(text: str) -> tuple[str, Any]:
    """("section.key", TOML value or bare string) from "section.key=value"."""
    sections = ", ".join(k for k in _TOP_KEYS if k not in _SCALAR_KEYS)
    allowed = (f'"section.key=value" with section one of {sections} '
               '(or "name=..." / "description=..."); the value is a TOML value or a bare string')
    if isinstance(text, list) and not text:     # argparse turns the option value "--" into []
        text = "--"
    key, eq, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if (not eq or not 1 <= len(parts) <= 2 or not all(_KEY_RE.fullmatch(p) for p in parts)
            or parts[0] not in _TOP_KEYS
            or (len(parts) == 1) != (parts[0] in _SCALAR_KEYS)):
        raise ScenarioError(COMMAND_LINE, key or "<override>", text, allowed)
    raw = raw.strip()
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return key, raw
    if set(parsed) != {"v"}:  # "1\nx = 2" smuggles a second key: keep the text as given
        return key, raw
    return key, parsed["v"]


# -------------------------------------------------------------------------------- helpers


def _shown_key(key: str) -> str:
    """A key from the file as TOML would spell it: bare if it can be, else quoted ("" , "a b")."""
    return key if _KEY_RE.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _syntax_line(path: Path, msg: str) -> str:
    """The source line a TOMLDecodeError points at ("(at line N, column M)"), for the error value."""
    m = re.search(r"line (\d+)", msg)
    if not m:
        return str(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return str(path)
    n = int(m.group(1))
    return lines[n - 1] if 1 <= n <= len(lines) else ""
