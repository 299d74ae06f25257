"""Compile-time constants of the simulated machine (AeroSync's param.h).

Every limit is named as in Linux where Linux has a name.  Runtime choices (memory size,
CPUs, topology) live in the scenario; these are the facts the layout is built from.
"""

from __future__ import annotations

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "CACHE_LINE",
    "PAGE_META_SIZE",
    "MIN_MEMORY",
    "MAX_MEMORY",
    "MAX_CPUS",
    "MAX_NUMNODES",
    "MAX_LOCKS",
    "LOCK_SLOT_SIZE",
    "CPU_AREA_SIZE",
    "NR_CPU_COUNTERS",
    "NR_LAT_BUCKETS",
    "ERRTEXT_SIZE",
    "ARENA_MAGIC",
    "LAYOUT_VERSION",
    "SHM_PREFIX",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT          # simulated base page, 4 KiB as on x86-64
CACHE_LINE = 64                      # per-CPU areas and lock words are padded to this
PAGE_META_SIZE = 64                  # bytes of struct page per simulated page (Linux: 64)

MIN_MEMORY = 4 << 20                 # 4 MiB of simulated RAM
MAX_MEMORY = 64 << 30                # 64 GiB; /dev/shm is the practical limit
MAX_CPUS = 4096                      # simulated CPUs (NR_CPUS); cpu+1 must fit 16 bits
MAX_NUMNODES = 64                    # CONFIG_MAX_NUMNODES

MAX_LOCKS = 4096                     # lock slots in the arena's lock table
LOCK_SLOT_SIZE = 256                 # 4 cache lines: word, write stats, read stats, names

CPU_AREA_SIZE = 2048                 # per-CPU control, latency histogram, counters (32 lines)
NR_LAT_BUCKETS = 128                 # log2 x 4 sub-buckets of sampled op latency (ns)
NR_CPU_COUNTERS = 96                 # u64 workload counters published by each CPU
ERRTEXT_SIZE = 8192                  # per-CPU traceback text written by a dying worker

ARENA_MAGIC = 0x43_4E_59_53_4F_52_45_41  # b"AEROSYNC" little-endian
LAYOUT_VERSION = 1
SHM_PREFIX = "aerosync_"             # segment names: aerosync_<owner pid>_<random>
