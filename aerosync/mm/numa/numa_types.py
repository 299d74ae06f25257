"""The NUMA records of process memory in the arena: policies, shared policies, per-task
NUMA state, the [numa] balancing knobs.

Models: include/linux/mempolicy.h (struct mempolicy, struct sp_node), the NUMA part of
include/linux/sched.h (task_struct: mempolicy, il_prev, il_weight, numa_scan_seq,
numa_scan_period, numa_preferred_nid, numa_faults, numa_faults_locality, ...), the NUMA
balancing sysctls of kernel/sched/fair.c.  Unit: a policy id, a shared-policy node, a
task record (indexed by the VM's task id).

Section "numa" (numa_sections / numa_init)::

    header      one page: H_* words below; per-node weighted-interleave weights (u8) at
                H_WEIGHTS (/sys/kernel/mm/mempolicy/weighted_interleave/nodeN)
    policies    max_policies x POL_REC (P_*):
                  0 used u64 (0 free, 1 published)
                  8 mode | flags << 16 | (home_node + 1) << 32  (u64)
                 16 nodes u64 (policy->nodes)        24 user_nodemask u64 (w.user_nodemask for
                    MPOL_F_STATIC_NODES / MPOL_F_RELATIVE_NODES, else w.cpuset_mems_allowed)
    sp nodes    max_sp x SP_REC (S_*): start u64, end u64 (page indices, [start, end)),
                policy id + 1 u32, next sp node + 1 u32 -- a shared mapping's shared policy
                (struct shared_policy's rb-tree as a sorted list hanging off its object)
    tasks       max_tasks x task_rec(nr_nodes) (T_*), indexed by VM task id

Policies are *interned values*: set_mempolicy and mbind look up a record with the same
mode, flags, nodes, user nodemask and home node and reuse it, else publish a new one.
A published record never changes and never goes away, so a policy id in a task or VMA
record (mm_types T_MEMPOLICY, vma V_POLICY: id + 1, 0 = none) needs no reference count
(vm_area_dup copies it, a merge compares ids: mpol_equal() is id equality) and any CPU
may decode it without a lock.  The price: at most `max_policies` distinct policies per
machine ([numa] max_policies; ENOMEM with that name beyond it).

Task record (task_rec(nr_nodes) bytes, written only by the CPU running the task, read
racily by views; reset when the task record is reused -- T_NUMA in the VM's task record
holds the owning pid, task_alloc zeroes it)::

     0 pid          8 il_prev (i64; -1 = MAX_NUMNODES - 1: the first pick is the first node)
    16 il_weight   24 numa_scan_period (ms)   32 node_stamp (ns of runtime)
    40 numa_scan_seq   48 numa_preferred_nid (i64, -1 = NUMA_NO_NODE)
    56 numa_migrate_retry (ms since boot)   64 total_numa_faults (i64)
    72 numa_pages_migrated   80 numa_faults_locality[3] (remote, local, failed)
   104 numa_scan_period_max   112 runtime base (ns: when the task first ran here)
   120 hinting faults total (for views)
   128 numa_faults[NR_NUMA_HINT_FAULT_BUCKETS x nr_nodes] i64 (fair.c task_faults_idx:
       MEM, CPU, MEMBUF, CPUBUF regions x node x private/shared)

mm NUMA fields (mm_types M_NUMA, 32 bytes): numa_next_scan (ms since boot), numa_scan_
offset, numa_scan_seq, spare -- changed by the task whose scan wins the cmpxchg on
numa_next_scan, as in task_numa_work.  VMA numab state (vma V_NUMAB u64): bits 0-31
prev_scan_seq + 1, bits 32-63 next_scan (ms since boot) -- struct vma_numab_state's two
fields the scanner uses (the per-PID access bitmaps are not modelled).

Lock: one slot lock ("mpol_table_lock") serialises publishing policies and changing any
shared policy list (Linux: sp->lock per shared policy; a policy record itself has no
lock because it is immutable).  Readers of shared policies (faults) walk the list
without it: nodes are published with one store of the list head or of a next link, and
a removed node is put on the free list only after an RCU grace period (call_rcu).

Invariants (tests/test_numa_policy.py): NP1 a published policy record never changes;
NP2 two published records are never equal (interning); NP3 every shared-policy list is
sorted by start with disjoint ranges.
"""

from __future__ import annotations

import time
from typing import Any

from aerosync.arena.layout import SectionSpec, align_up
from aerosync.errors import AeroSyncError
from aerosync.params import CACHE_LINE, MAX_NUMNODES, PAGE_SIZE

__all__ = [
    "NUMA_MAGIC", "numa_params", "numa_sections", "numa_init", "numa_ready", "task_rec_size",
    "H_MAGIC", "H_NR_NODES", "H_MAX_POLICIES", "H_MAX_SP", "H_LOCK_SLOT", "H_SP_FREE", "H_BALANCING",
    "H_SCAN_DELAY", "H_PERIOD_MIN", "H_PERIOD_MAX", "H_SCAN_SIZE", "H_PLACEMENT", "H_MEM_NODES", "H_CPU_NODES",
    "H_BOOT_NS", "H_TASK_REC", "H_MAX_TASKS", "H_NR_POLICIES", "H_WEIGHTS", "POL_REC", "SP_REC",
    "P_USED", "P_MODE", "P_NODES", "P_USER", "S_START", "S_END", "S_POL", "S_NEXT",
    "TN_PID", "TN_IL_PREV", "TN_IL_WEIGHT", "TN_SCAN_PERIOD", "TN_NODE_STAMP", "TN_SCAN_SEQ", "TN_PREF_NID",
    "TN_MIGRATE_RETRY", "TN_TOTAL_FAULTS", "TN_PAGES_MIGRATED", "TN_LOCALITY", "TN_SCAN_PERIOD_MAX",
    "TN_RUNTIME_BASE", "TN_HINT_FAULTS", "TN_FAULTS", "NR_NUMA_HINT_FAULT_TYPES", "NR_NUMA_HINT_FAULT_BUCKETS",
    "NUMA_MEM", "NUMA_CPU", "NUMA_MEMBUF", "NUMA_CPUBUF", "MN_NEXT_SCAN", "MN_SCAN_OFFSET", "MN_SCAN_SEQ",
    "policy_off", "sp_off", "task_numa_off", "now_ms", "BALANCING_KEYS",
]

NUMA_MAGIC = 0x4E55_4D41_504F_4C59          # "NUMAPOLY"

(H_MAGIC, H_NR_NODES, H_MAX_POLICIES, H_MAX_SP, H_LOCK_SLOT, H_SP_FREE, H_BALANCING, H_SCAN_DELAY,
 H_PERIOD_MIN, H_PERIOD_MAX, H_SCAN_SIZE, H_PLACEMENT, H_MEM_NODES, H_CPU_NODES, H_BOOT_NS, H_TASK_REC,
 H_MAX_TASKS, H_NR_POLICIES) = (8 * i for i in range(18))
H_WEIGHTS = 512                              # MAX_NUMNODES u8 weights
HDR_SIZE = PAGE_SIZE

POL_REC = 32
P_USED, P_MODE, P_NODES, P_USER = 0, 8, 16, 24
SP_REC = 32
S_START, S_END, S_POL, S_NEXT = 0, 8, 16, 20

TN_PID, TN_IL_PREV, TN_IL_WEIGHT, TN_SCAN_PERIOD, TN_NODE_STAMP, TN_SCAN_SEQ = 0, 8, 16, 24, 32, 40
TN_PREF_NID, TN_MIGRATE_RETRY, TN_TOTAL_FAULTS, TN_PAGES_MIGRATED, TN_LOCALITY = 48, 56, 64, 72, 80
TN_SCAN_PERIOD_MAX, TN_RUNTIME_BASE, TN_HINT_FAULTS, TN_FAULTS = 104, 112, 120, 128
NR_NUMA_HINT_FAULT_TYPES = 2                 # shared, private
NUMA_MEM, NUMA_CPU, NUMA_MEMBUF, NUMA_CPUBUF = range(4)
NR_NUMA_HINT_FAULT_BUCKETS = 4 * NR_NUMA_HINT_FAULT_TYPES

# mm_types M_NUMA: 4 u64
MN_NEXT_SCAN, MN_SCAN_OFFSET, MN_SCAN_SEQ = 0, 8, 16

# [numa] keys of automatic NUMA balancing -> (default, low, high); the sysctl names of
# kernel/sched/fair.c (kernel.numa_balancing_*), defaults as Linux's
BALANCING_KEYS = {
    "numa_balancing_scan_delay_ms": (1000, 0, 3_600_000),
    "numa_balancing_scan_period_min_ms": (1000, 1, 3_600_000),
    "numa_balancing_scan_period_max_ms": (60000, 1, 3_600_000),
    "numa_balancing_scan_size_mb": (256, 1, 1 << 20),
}


def task_rec_size(nr_nodes: int) -> int:
    return align_up(TN_FAULTS + 8 * NR_NUMA_HINT_FAULT_BUCKETS * nr_nodes, CACHE_LINE)


def numa_params(config: dict[str, Any]) -> dict[str, Any]:
    """The [numa] process-memory settings with defaults (ValueError naming a bad key)."""
    numa = dict(config.get("numa") or {})
    p: dict[str, Any] = {
        "balancing": bool(numa.get("balancing", False)),
        "balancing_placement": bool(numa.get("balancing_placement", False)),
        "max_policies": int(numa.get("max_policies", 256)),
        "max_shared_policies": int(numa.get("max_shared_policies", 256)),
    }
    for key, (default, lo, hi) in BALANCING_KEYS.items():
        v = int(numa.get(key, default))
        if not lo <= v <= hi:
            raise ValueError(f"numa.{key} = {v}: allowed {lo}..{hi}")
        p[key] = v
    if p["numa_balancing_scan_period_min_ms"] > p["numa_balancing_scan_period_max_ms"]:
        raise ValueError(f"numa.numa_balancing_scan_period_min_ms = {p['numa_balancing_scan_period_min_ms']}: "
                         f"allowed at most numa_balancing_scan_period_max_ms "
                         f"({p['numa_balancing_scan_period_max_ms']})")
    for key, lo, hi in (("max_policies", 8, 1 << 16), ("max_shared_policies", 8, 1 << 16)):
        if not lo <= p[key] <= hi:
            raise ValueError(f"numa.{key} = {p[key]}: allowed {lo}..{hi}")
    return p


def _nr_nodes(config: dict[str, Any]) -> int:
    sim = config.get("sim")
    if sim is None:
        return 1
    return int(sim["nr_nodes"] if isinstance(sim, dict) else sim.nr_nodes)


def numa_sections(config: dict[str, Any]) -> list[SectionSpec]:
    """The section process-memory NUMA adds beside the VM's (it needs max_tasks)."""
    from aerosync.mm.vm.mm_types import vm_params

    p = numa_params(config)
    nr_nodes = _nr_nodes(config)
    size = (HDR_SIZE + p["max_policies"] * POL_REC + p["max_shared_policies"] * SP_REC
            + vm_params(config)["max_tasks"] * task_rec_size(nr_nodes))
    return [SectionSpec("numa", align_up(size, PAGE_SIZE))]


def _off(arena: Any) -> tuple[int, int, int, int]:
    q = arena.u64
    base = arena.off("numa")
    pol = base + HDR_SIZE
    sp = pol + q[(base + H_MAX_POLICIES) >> 3] * POL_REC
    tasks = sp + q[(base + H_MAX_SP) >> 3] * SP_REC
    return base, pol, sp, tasks


def policy_off(arena: Any, pid_: int) -> int:
    return _off(arena)[1] + pid_ * POL_REC


def sp_off(arena: Any, i: int) -> int:
    return _off(arena)[2] + i * SP_REC


def task_numa_off(arena: Any, tid: int) -> int:
    base, _p, _s, tasks = _off(arena)
    return tasks + tid * arena.u64[(base + H_TASK_REC) >> 3]


def now_ms(arena: Any) -> int:
    """Milliseconds since the machine booted (the NUMA code's jiffies)."""
    return (time.monotonic_ns() - arena.u64[(arena.off("numa") + H_BOOT_NS) >> 3]) // 1_000_000


def numa_ready(arena: Any) -> bool:
    return "numa" in arena.sections and arena.atomic.load64(arena.off("numa") + H_MAGIC) == NUMA_MAGIC


def numa_init(arena: Any) -> None:
    """Boot: the header from [numa], every policy free, the shared-policy free list, the
    table lock.  Single process, before any worker."""
    from aerosync.mm.pmm import mmzone as Z
    from aerosync.mm.pmm.gfp import MAX_NR_ZONES
    from aerosync.mm.vm.mm_types import vm_params
    from aerosync.sync.lockstat import lock_alloc

    p = numa_params(arena.config)
    o, s = arena.sections["numa"]
    arena.u8[o : o + s] = bytes(s)
    q = arena.u64
    nr_nodes = _nr_nodes(arena.config)
    if nr_nodes > MAX_NUMNODES:
        raise AeroSyncError(f"numa_init: {nr_nodes} nodes, at most MAX_NUMNODES {MAX_NUMNODES}")
    sim = arena.config["sim"]
    node_cpus = sim["node_cpus"] if isinstance(sim, dict) else sim.node_cpus
    mem = 0
    for nid in range(nr_nodes):
        if any(q[(Z.zone_off(arena, nid * MAX_NR_ZONES + zi) + Z.Z_PRESENT) >> 3] for zi in range(MAX_NR_ZONES)):
            mem |= 1 << nid
    cpus = sum(1 << n for n in range(nr_nodes) if node_cpus[n])

    def put(f: int, v: int) -> None:
        q[(o + f) >> 3] = v

    put(H_NR_NODES, nr_nodes)
    put(H_MAX_POLICIES, p["max_policies"])
    put(H_MAX_SP, p["max_shared_policies"])
    put(H_LOCK_SLOT, lock_alloc(arena, "mpol_table_lock", "numa"))
    put(H_BALANCING, int(p["balancing"]))
    put(H_SCAN_DELAY, p["numa_balancing_scan_delay_ms"])
    put(H_PERIOD_MIN, p["numa_balancing_scan_period_min_ms"])
    put(H_PERIOD_MAX, p["numa_balancing_scan_period_max_ms"])
    put(H_SCAN_SIZE, p["numa_balancing_scan_size_mb"])
    put(H_PLACEMENT, int(p["balancing_placement"]))
    put(H_MEM_NODES, mem)
    put(H_CPU_NODES, cpus)
    put(H_BOOT_NS, time.monotonic_ns())
    put(H_TASK_REC, task_rec_size(nr_nodes))
    put(H_MAX_TASKS, vm_params(arena.config)["max_tasks"])
    weights = list((arena.config.get("numa") or {}).get("weights") or [])
    for nid in range(nr_nodes):
        arena.u8[o + H_WEIGHTS + nid] = int(weights[nid]) if nid < len(weights) else 1
    _, _pol, sp, _t = _off(arena)
    n = p["max_shared_policies"]
    for i in range(n):                        # the free list: 0 -> 1 -> ... (next = index + 1)
        arena.u32[(sp + i * SP_REC + S_NEXT) >> 2] = i + 2 if i + 1 < n else 0
    put(H_SP_FREE, 1)
    arena.atomic.store64(o + H_MAGIC, NUMA_MAGIC)
