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
    "TMP_PREFIX",
    "KERNEL_PROFILES",
    "DEFAULT_KERNEL_PROFILE",
    "profile_default",
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
LAYOUT_VERSION = 2                   # 2: the header's section table holds 64 (was 32)
SHM_PREFIX = "aerosync_"             # segment names: aerosync_<owner pid>_<random>
TMP_PREFIX = "aerosync-"             # temporary files of a run: aerosync-<use>-<arena name>-...


# Kernel profiles ([kernel] profile in a scenario, config key "kernel_profile"): the
# defaults of the knobs where AeroSync's own design and Linux 6.19 differ.  Every knob is
# a config key of its own, read by the module that owns it, and can be set one by one
# (a scenario's [slab] mag_size, --set machine.pcp_autotune=exact ...); the profile only
# supplies the value a machine gets when nothing sets it.  The Linux fixes both profiles
# share (SLUB cpu partial / get_any_partial / node mismatch, PCP autotune, NOFRAGMENT,
# THP min_free_kbytes, slub_debug layout, the views) are not knobs: see README.
#   slab_mag_size         per-CPU magazines (the seed's layer); Linux 6.19 has none
#   slab_percpu_sheaves   per-CPU sheaves + per-node barn for caches created with a
#                         sheaf_capacity (Linux 6.18/6.19); AeroSync's sheaves are
#                         caller-owned only (kmem_cache_prefill_sheaf)
#   pcp_autotune          "exact": free_count/alloc_factor updated on every PCP
#                         operation (mm/page_alloc.c 6.7+); "batched": the inlined
#                         order-0 fast paths skip that bookkeeping and it is caught up at
#                         refill/drain (today's fast-path cost); "off": high fixed
DEFAULT_KERNEL_PROFILE = "aerosync"
KERNEL_PROFILES: dict[str, dict[str, object]] = {
    "aerosync": {"slab_mag_size": 16, "slab_percpu_sheaves": False, "pcp_autotune": "batched"},
    "linux": {"slab_mag_size": 0, "slab_percpu_sheaves": True, "pcp_autotune": "exact"},
}


def profile_default(config: dict[str, object], key: str) -> object:
    """config[key] if set (not None), else the default of the machine's kernel profile."""
    v = config.get(key)
    if v is not None:
        return v
    profile = str(config.get("kernel_profile") or DEFAULT_KERNEL_PROFILE)
    if profile not in KERNEL_PROFILES:
        raise ValueError(f"kernel_profile = {profile!r}: allowed {', '.join(KERNEL_PROFILES)}")
    return KERNEL_PROFILES[profile][key]
