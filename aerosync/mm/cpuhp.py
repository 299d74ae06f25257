"""CPU hotplug for the memory manager: the teardown of a simulated CPU that has stopped,
and its start-up when it comes back.  Unit: one simulated CPU of a live machine.

Models: kernel/cpu.c's hotplug state machine, the mm part of it.  Linux tears a CPU
down by running the teardown callback of each state from CPUHP_ONLINE down to
CPUHP_OFFLINE; the "dead" ones run on a control CPU once the CPU has stopped.  Those
for mm, in the order Linux runs them (highest state first), and what they are here:

  CPUHP_RCUTREE_PREP  rcutree_dead_cpu      sync/rcu.py rcu_cpu_dead: its reader word 0 (a
                                            CPU that stopped is outside every read-side
                                            section); its callbacks ran before it left
                                            (VM.leave: rcu_barrier), or died with it.
  CPUHP_PAGE_ALLOC    page_alloc_cpu_dead   lru_add_drain_cpu(cpu): its LRU add batch onto
                                            the lists and the batch's references dropped,
                                            with its current swap cluster given back
                                            (mm/reclaim's Reclaim.leave, through a VM
                                            handle acting as the CPU; only when it holds
                                            any: a worker that left drained them);
                                            drain_pages(cpu): its PCP lists to the buddy
                                            lists, the PCPs left OFFLINE (page_alloc.py
                                            drain_cpu_pages); vm_events_fold_cpu +
                                            cpu_vm_stats_fold (see Counters);
                                            zone_pcp_update(zone, 0): every PCP's
                                            high_min/high_max re-split over the node's
                                            online CPUs (zone_highsize).
  CPUHP_SLUB_DEAD     slub_cpu_dead         under slab_mutex, for every live cache:
                                            __flush_cpu_slab (the cpu slab deactivated,
                                            cpu partial slabs to their nodes, AeroSync's
                                            magazine freed) and __pcs_flush_all_cpu (the
                                            per-CPU sheaves back to the slabs): slub.py
                                            KmemCache.flush_cpu does both.
  x86 cpu_disable_common / clear_tasks_mm_cpumask   mm/vm/tlb.py: the CPU is no
                                            shootdown target any more (online 0,
                                            loaded_mm 0: no lazy mm), its pending IPIs
                                            dropped, its bit cleared from every
                                            mm_cpumask.  Its ASIDs and TLB entries lived
                                            in its process and died with it.

The CPU's own part (the AP states, run on the dying CPU: tasks migrate away, its local
lists drain, it stops answering IPIs) is the worker's: it leaves at a batch boundary,
after its workload's teardown gave back what it held and VM.leave (workers/cpu.py).
Start-up (`cpuhp_online_mm`, run by the new worker as that CPU before it runs anything,
or by whoever brings it up): page_alloc_cpu_online -- pcp_cpu_online (OFFLINE -> IDLE)
and zone_pcp_update(zone, 1) -- and the PCPs' autotune state from scratch.  SLUB and RCU
have no start-up callback; the TLB comes online when the CPU's VM handle is built.

Hotplug state: the word hp_state of the CPU's per-CPU area (arena/layout.py), HP_ONLINE
(0) / HP_GOING_DOWN (the coordinator asked the worker to leave at its next batch
boundary) / HP_OFFLINE (this teardown done) / HP_COMING_UP (a new worker attaches).
`cpu_online(arena, c)` is cpu_online_mask: ONLINE or GOING_DOWN.  The coordinator stores
GOING_DOWN and COMING_UP, cpuhp_offline_mm OFFLINE, cpuhp_online_mm ONLINE; all are
atomic stores, readers load.

Who acts, and where the work is counted:
  * `control_cpu=None` (the coordinator, or a recovering one, which is no simulated CPU):
    the teardown acts *as the dead CPU* -- its handles are MM(arena, cpu) and
    Slub(arena, cpu), locks recorded with the coordinator's pid (zone locks as
    CPU_COORD), so its per-CPU data (PCP, partial list, statistics lines), which nobody
    else writes once it stopped, takes what the teardown does: frees go past its
    OFFLINE PCP to the buddy lists, and slabs that objects freed from its magazine and
    sheaves put on *its* partial list (__slab_free puts a full slab on the freeing
    CPU's) are flushed again, until it holds nothing.
  * `control_cpu=k` (a simulated CPU running the teardown, as Linux's control CPU): its
    own handles, so freed pages land on k's PCP and such slabs on k's partial list, as
    in Linux; the caller must be CPU k's owner (its process and thread), or CPU k must
    be quiescent (parked, no interrupt context running).

Counters (exact across hotplug): every reader here sums the per-CPU records of *all*
CPUs, online or not (vm_event.fold_vm_events, vmstat.fold, slab_stats, lock_stat),
while Linux's sum only online CPUs (sum_vm_events: for_each_online_cpu) and must
therefore fold a dead CPU's counters into a live one.  With `control_cpu=k` the
teardown folds as Linux does: the dead CPU's mmstat record (EV_* events, numastat,
per-zone allocation categories) and vmevents record (vm events, node-stat deltas) are
added into k's with plain stores (k's owner is the caller, so no update is lost) and
zeroed, and the dead CPU's PCP autotune snapshots of them reset.  From the coordinator
they stay where they are (it may not write a live CPU's record: its owner's plain `+=`
would lose the fold) and every sum is the same.  SLUB's statistics lines are per CPU
and not folded (Linux's neither); lock_stat is per lock.

Lock order: steps run one after another with nothing held in between:
  1. rcu_cpu_dead (one store), 2. per zone: the dead CPU's pcp claim -> zone.lock
  (drain), 3. the fold (no lock: the two records' owners are the dead CPU and the
  caller), 4. zone_pcp_update (plain stores, see below), 5. slab_mutex -> per cache:
  the dead CPU's pcs lock -> &barn->lock, c->lock of the dead CPU -> &n->list_lock ->
  pcp -> &zone->lock (slub.py's order; slab_mutex outermost, as slub_cpu_dead's), then
  6. the TLB words (atomics, no lock).

What runs concurrently: every other CPU keeps running its workload throughout.
  * PCP: only a drainer ever CASes the dead CPU's pcp state now (its owner is gone);
    drain_cpu_pages' protocol (IDLE/OFFLINE -> DRAINING -> OFFLINE) also waits out a
    concurrent drainer.  Frees by other CPUs never touch its lists.
  * zone_pcp_update stores every CPU's high_min/high_max words while their owners read
    them: a deliberate race, as Linux's WRITE_ONCE in __zone_set_pageset_high_and_batch
    -- an owner sees the old or the new bound, and clamps `high` into the new range at
    its next refill or free commit (nr_pcp_alloc / nr_pcp_high).
  * SLUB: other CPUs' remote frees into the dead CPU's slabs race with the
    deactivation through the slab word's CAS (__slab_free's protocol); they put slabs
    on their own partial lists, never on the dead CPU's.  Caches are neither created
    nor destroyed meanwhile (slab_mutex).
  * TLB: an initiator already skips targets that are offline and drops a target that
    goes offline while it waits for the acknowledgement (tlb.py send_and_wait).
The caller guarantees the CPU has stopped: its worker exited or was killed.  A live
pid in its per-CPU area (other than the caller's own) is refused (AeroSyncError).

Precondition (a CPU that died rather than left): its half-done operations repaired and
the locks it held taken over first -- a pcp left BUSY, a c->lock or pcs lock word naming
it (these CAS words have no owner check: the teardown would wait for them forever).

Invariant H1 (`cpuhp_check`): an offline CPU holds nothing -- its PCPs OFFLINE and
empty, no cpu slab, cpu partial slab, magazine object or per-CPU sheaf in any live
cache, no LRU add batch or swap cluster, its RCU reader word 0, not online for the TLB
and no IPI pending.
Measured (2-core box shared with other jobs, `aerosync bench reliability`, 2-CPU page
storm, two runs, medians of 5 and 3): this teardown from the coordinator 3.0 / 2.0 ms
(1.8-40 ms); the whole offline 70 / 22 ms (the worker reaching a batch boundary and its
process exit dominate).
The start-up is ~1 ms of a hotplug standby's ~8 ms bring-up (aerosync/hotplug.py).
"""

from __future__ import annotations

import os
from typing import Any

from aerosync.arch.cpu import proc_alive
from aerosync.arena import layout as L
from aerosync.errors import AeroSyncError
from aerosync.params import CPU_AREA_SIZE

__all__ = ["cpuhp_offline_mm", "cpuhp_online_mm", "cpuhp_check", "cpu_online", "hp_state", "set_hp_state",
           "num_online_cpus", "online_cpus", "cpu_mm_held"]

_MASK64 = (1 << 64) - 1
_FLUSH_ROUNDS = 8          # coordinator mode: flushes until the dead CPU's partial list stays empty


def _area(arena: Any, cpu: int) -> int:
    return arena.off("cpu") + cpu * CPU_AREA_SIZE


def hp_state(arena: Any, cpu: int) -> int:
    """The CPU's hotplug state (L.HP_*)."""
    return arena.atomic.load64(_area(arena, cpu) + L.CPU_HP_STATE)


def set_hp_state(arena: Any, cpu: int, state: int) -> None:
    arena.atomic.store64(_area(arena, cpu) + L.CPU_HP_STATE, state)


def cpu_online(arena: Any, cpu: int) -> bool:
    """cpu_online(): in cpu_online_mask -- ONLINE, or asked to go down but not gone yet."""
    return hp_state(arena, cpu) in (L.HP_ONLINE, L.HP_GOING_DOWN)


def online_cpus(arena: Any) -> list[int]:
    return [c for c in range(int(arena.config["nr_cpus"])) if cpu_online(arena, c)]


def num_online_cpus(arena: Any) -> int:
    return len(online_cpus(arena))


def _check_stopped(arena: Any, cpu: int, what: str) -> None:
    q = arena.u64
    a = _area(arena, cpu) >> 3
    pid = q[a + (L.CPU_PID >> 3)]
    if pid and pid != os.getpid() and proc_alive(pid, q[a + (L.CPU_STARTTIME >> 3)] or None):
        raise AeroSyncError(f"{what}: cpu{cpu} still runs (pid {pid}); stop its worker first")


# ------------------------------------------------------------------ teardown
def cpuhp_offline_mm(arena: Any, cpu: int, *, control_cpu: int | None = None) -> dict[str, int]:
    """The mm teardown of simulated CPU `cpu`, which has stopped (see the module
    docstring for who acts, the order, and what runs meanwhile).  Idempotent.  Returns
    what it found and gave back: {"lru_batch", "pcp_pages", "cpu_slabs",
    "cpu_partial_slabs", "magazine_objects", "sheaves", "caches", "mm_cpumask",
    "folded"}."""
    from aerosync.mm.pmm.page_alloc import MM
    from aerosync.sync.spinlock import CPU_COORD

    nr_cpus = int(arena.config["nr_cpus"])
    if not 0 <= cpu < nr_cpus:
        raise AeroSyncError(f"cpuhp_offline_mm: cpu {cpu} outside 0..{nr_cpus - 1}")
    if control_cpu is not None and (control_cpu == cpu or not 0 <= control_cpu < nr_cpus):
        raise AeroSyncError(f"cpuhp_offline_mm: control cpu {control_cpu} must be another CPU of 0..{nr_cpus - 1}")
    _check_stopped(arena, cpu, "cpuhp_offline_mm")
    out = dict.fromkeys(("lru_batch", "pcp_pages", "cpu_slabs", "cpu_partial_slabs", "magazine_objects", "sheaves",
                         "caches", "mm_cpumask", "folded"), 0)
    # 1. rcutree_dead_cpu
    if "rcu" in arena.sections:
        from aerosync.sync.rcu import rcu_cpu_dead

        rcu_cpu_dead(arena, cpu)
    # 2. page_alloc_cpu_dead
    out["lru_batch"] = _lru_add_drain_cpu(arena, cpu)
    if control_cpu is None:
        mm = MM(arena, cpu, CPU_COORD)
    else:
        mm = MM(arena, control_cpu)
    out["pcp_pages"] = mm.drain_cpu_pages(cpu)
    if control_cpu is not None:
        _fold_counters(arena, cpu, control_cpu, mm.nr_nodes)
        out["folded"] = 1
    _zone_pcp_update(arena, exclude=cpu)
    # 3. slub_cpu_dead
    if "slabcaches" in arena.sections:
        _slub_cpu_dead(arena, cpu, control_cpu, mm, out)
    # 4. the TLB
    out["mm_cpumask"] = _tlb_cpu_dead(arena, cpu)
    set_hp_state(arena, cpu, L.HP_OFFLINE)
    return out


def _reclaim_pcpu(arena: Any, cpu: int) -> tuple[int, int]:
    """(folios in its LRU add batch, its swap cluster + 1) -- (0, 0) without reclaim."""
    from aerosync.mm.reclaim import layout as R

    if not R.reclaim_ready(arena):
        return 0, 0
    pc = R.Off(arena).pcpu(cpu)
    return arena.u64[(pc + R.PC_BATCH_N) >> 3], arena.u64[(pc + R.PC_CLUSTER) >> 3]


def _lru_add_drain_cpu(arena: Any, cpu: int) -> int:
    """lru_add_drain_cpu(): the CPU's LRU add batch onto the lists (and its swap cluster
    back), by Reclaim.leave of a VM handle acting as the CPU for the moment (online for
    the TLB meanwhile: no user flush targets it, a kernel-range flush drops it when
    _tlb_cpu_dead marks it offline again).  Returns the folios drained."""
    n, cluster = _reclaim_pcpu(arena, cpu)
    if not n and not cluster:
        return 0
    from aerosync.mm.vm.vm import VM

    VM(arena, cpu).leave()
    return n


def _fold_counters(arena: Any, dead: int, into: int, nr_nodes: int) -> None:
    """vm_events_fold_cpu + cpu_vm_stats_fold: the dead CPU's mmstat and vmevents
    records added into `into`'s and zeroed; its PCPs' autotune snapshots of them reset."""
    from aerosync.mm.pmm import mmzone as Z
    from aerosync.mm.pmm import vm_event as VE

    q = arena.u64
    recs = [(Z.stat_off(arena, dead, nr_nodes), Z.stat_off(arena, into, nr_nodes), Z.stat_rec_size(nr_nodes))]
    if "vmevents" in arena.sections:
        size = VE.vmev_rec_size(nr_nodes)
        recs.append((VE.vm_event_base(arena, dead) << 3, VE.vm_event_base(arena, into) << 3, size))
    for src, dst, size in recs:
        s, d = src >> 3, dst >> 3
        for i in range(size >> 3):
            v = q[s + i]
            if v:
                q[d + i] = (q[d + i] + v) & _MASK64     # i64 deltas add the same mod 2^64
                q[s + i] = 0
    nr_zones = q[(arena.off("mmzones") + Z.G_NR_ZONES) >> 3]
    for zid in range(nr_zones):
        po = Z.pcp_off(arena, dead, zid, nr_zones)
        q[(po + Z.PCP_SNAP_PGFREE) >> 3] = 0
        q[(po + Z.PCP_SNAP_ALLOC) >> 3] = 0


def _zone_pcp_update(arena: Any, exclude: int = -1, include: int = -1) -> None:
    """zone_pcp_update(zone, cpu_online) for every populated zone: pageset_high_min/max
    from zone_highsize over the node's online CPUs (`exclude` counted out, `include` in),
    stored in the zone record and in every CPU's PCP when they changed.  A fixed
    [machine] pcp_high has no autotune and is left alone."""
    from aerosync.mm.pmm import mmzone as Z
    from aerosync.mm.pmm.gfp import MAX_NR_ZONES
    from aerosync.mm.pmm.init import mm_params

    p = mm_params(arena.config)
    if p["pcp_high"] is not None or not p["pcp_enabled"]:
        return
    sim = p["sim"]
    q, at = arena.u64, arena.atomic
    nr_cpus = int(arena.config["nr_cpus"])
    online = {c for c in range(nr_cpus) if (cpu_online(arena, c) and c != exclude) or c == include}
    nr_zones = q[(arena.off("mmzones") + Z.G_NR_ZONES) >> 3]
    for zid in range(nr_zones):
        zo = Z.zone_off(arena, zid)
        managed = q[(zo + Z.Z_MANAGED) >> 3]
        if not q[(zo + Z.Z_PRESENT) >> 3]:
            continue
        nid = zid // MAX_NR_ZONES
        ncpu = len([c for c in sim.node_cpus[nid] if c in online]) or len(online)
        low, batch = q[(zo + Z.Z_WMARK_LOW) >> 3], q[(zo + Z.Z_PCP_BATCH) >> 3]
        high_min = Z.zone_highsize(low, managed, batch, ncpu)
        high_max = (Z.zone_highsize(low, managed, batch, ncpu, Z.MIN_PERCPU_PAGELIST_HIGH_FRACTION)
                    if p["pcp_autotune"] != Z.PCP_AUTOTUNE_OFF else high_min)
        if q[(zo + Z.Z_PCP_HIGH) >> 3] == high_min and q[(zo + Z.Z_PCP_HIGH_MAX) >> 3] == high_max:
            continue
        q[(zo + Z.Z_PCP_HIGH) >> 3] = high_min
        q[(zo + Z.Z_PCP_HIGH_MAX) >> 3] = high_max
        for c in range(nr_cpus):
            po = Z.pcp_off(arena, c, zid, nr_zones)
            at.store64(po + Z.PCP_HIGH_MIN, high_min)
            at.store64(po + Z.PCP_HIGH_MAX, high_max)


def _slub_cpu_dead(arena: Any, cpu: int, control_cpu: int | None, mm: Any, out: dict[str, int]) -> None:
    from aerosync.mm.slab.layout import G_MUTEX, K_MAG_COUNT, K_NR_PARTIAL, K_PCS, K_SLAB, NIL64
    from aerosync.mm.slab.slab_common import _cpu_off, _geo, live_caches
    from aerosync.mm.slab.slub import Slub
    from aerosync.sync.spinlock import CPU_COORD, SpinLock

    _, nr_cpus, _, mag, _ = _geo(arena)
    q = arena.u64
    me = cpu if control_cpu is None else control_cpu
    slub = Slub(arena, me, mm=mm)
    mutex = SpinLock(arena, q[(arena.off("slabcaches") + G_MUTEX) >> 3],
                     CPU_COORD if control_cpu is None else control_cpu)
    mutex.acquire()
    try:
        for cid in live_caches(arena):
            ko = _cpu_off(arena, cid, cpu, nr_cpus, mag)
            pcs = q[(ko + K_PCS) >> 3]
            out["cpu_slabs"] += q[(ko + K_SLAB) >> 3] != NIL64
            out["cpu_partial_slabs"] += q[(ko + K_NR_PARTIAL) >> 3]
            out["magazine_objects"] += q[(ko + K_MAG_COUNT) >> 3] if mag else 0
            out["sheaves"] += bool(pcs & 0xFFFF_FFFF) + bool(pcs >> 32)
            kc = slub.cache(cid)
            kc.flush_cpu(cpu)
            out["caches"] += 1
            # Acting as the dead CPU, the frees above may have put full slabs on its own
            # partial list (__slab_free): flush again until it holds none.
            for _ in range(_FLUSH_ROUNDS):
                if control_cpu is not None or q[(ko + K_NR_PARTIAL) >> 3] == 0:
                    break
                kc.flush_cpu(cpu)
    finally:
        mutex.release()


def _tlb_cpu_dead(arena: Any, cpu: int) -> int:
    """The CPU stops being a shootdown target; pending IPIs dropped; its mm_cpumask bits
    cleared (clear_tasks_mm_cpumask).  Returns the number of mms it was cleared from."""
    from aerosync.mm.vm import mm_types as T

    if not T.vm_ready(arena):
        return 0
    import numpy as np

    from aerosync.mm.vm.tlb import C_PENDING, C_SRC, cpu_mark_offline

    at = arena.atomic
    nr_cpus = int(arena.config["nr_cpus"])
    nwords = (nr_cpus + 63) // 64
    cpu_mark_offline(arena, cpu)
    rec = T.vmcpu_off(arena, cpu)
    at.store64(rec + C_PENDING, 0)
    for w in range(2 * nwords):                      # source bitmap, then its own ack bitmap
        at.store64(rec + C_SRC + 8 * w, 0)
    words = T.mm_rec_size(nr_cpus) >> 3
    mms = arena.array("vmmm", np.uint64).reshape(-1, words)
    col = (T.M_CPUMASK >> 3) + cpu // 64
    bit = np.uint64(1 << (cpu % 64))
    ids = np.flatnonzero(mms[:, col] & bit).tolist()
    del mms
    for mm_id in ids:
        at.fetch_and64(T.mm_off(arena, mm_id) + T.M_CPUMASK + 8 * (cpu // 64), _MASK64 ^ (1 << (cpu % 64)))
    return len(ids)


# ------------------------------------------------------------------ start-up
def cpuhp_online_mm(arena: Any, cpu: int) -> None:
    """page_alloc_cpu_online for `cpu` before it runs anything: its PCPs' autotune state
    from scratch (as mm_init leaves it; the "batched" catch-up snapshots at the CPU's
    counters now), zone_pcp_update(zone, 1), then the PCPs back from OFFLINE to IDLE
    (waiting out a drain) and hp_state ONLINE.  Run by the new worker of `cpu` (or for
    it, before it starts)."""
    from aerosync.mm.pmm import mmzone as Z
    from aerosync.mm.pmm.page_alloc import MM
    from aerosync.sync.spinlock import CPU_COORD

    nr_cpus = int(arena.config["nr_cpus"])
    if not 0 <= cpu < nr_cpus:
        raise AeroSyncError(f"cpuhp_online_mm: cpu {cpu} outside 0..{nr_cpus - 1}")
    q = arena.u64
    mm = MM(arena, cpu, CPU_COORD)
    nr_zones = mm.nr_zones
    pcps = [Z.pcp_off(arena, cpu, zid, nr_zones) for zid in range(nr_zones)]
    offline = [q[(po + Z.PCP_STATE) >> 3] == Z.PCP_OFFLINE for po in pcps]
    st = Z.stat_off(arena, cpu, mm.nr_nodes) >> 3
    for zid, (po, off) in enumerate(zip(pcps, offline)):
        if off:       # nobody but a drainer touches an OFFLINE pcp, and the drain left it empty
            for f in (Z.PCP_HIGH, Z.PCP_FREE_COUNT, Z.PCP_ALLOC_FACTOR, Z.PCP_FLAGS, Z.PCP_DECAY_NS):
                q[(po + f) >> 3] = 0                  # as mm_init leaves a pcp
            zs = st + Z.STAT_NUMA + mm.nr_nodes * 8 + zid * Z.ZS_WORDS
            q[(po + Z.PCP_SNAP_PGFREE) >> 3] = q[st + Z.EV_PGFREE]      # catch-up counts from now
            q[(po + Z.PCP_SNAP_ALLOC) >> 3] = q[zs] + q[zs + 1] + q[zs + 2] + q[zs + 3]
    _zone_pcp_update(arena, include=cpu)
    for zid, (po, off) in enumerate(zip(pcps, offline)):
        if off:       # free_thr = high_min, or 0 while the zone is below its HIGH mark (set_thr)
            arena.atomic.store64(po + Z.PCP_FREE_THR, q[(po + Z.PCP_HIGH_MIN) >> 3])
            if arena.atomic.load64(Z.zone_off(arena, zid) + Z.Z_FLAGS) & Z.ZONE_BELOW_HIGH:
                arena.atomic.store64(po + Z.PCP_FREE_THR, 0)
    mm.pcp_cpu_online(cpu)
    set_hp_state(arena, cpu, L.HP_ONLINE)


# ------------------------------------------------------------------ H1
def cpu_mm_held(arena: Any, cpu: int) -> list[str]:
    """What CPU `cpu` still holds in its per-CPU mm state (empty: nothing), each as
    "<where>: <what>"; racy reads, meant for a stopped CPU."""
    from aerosync.mm.pmm import mmzone as Z

    q = arena.u64
    held = []
    nr_zones = q[(arena.off("mmzones") + Z.G_NR_ZONES) >> 3]
    for zid in range(nr_zones):
        po = Z.pcp_off(arena, cpu, zid, nr_zones)
        state, count = q[(po + Z.PCP_STATE) >> 3], q[(po + Z.PCP_COUNT) >> 3]
        if state != Z.PCP_OFFLINE or count:
            held.append(f"pcp {Z.zone_name(zid)}: state {state}, {count} pages")
    if "slabcaches" in arena.sections:
        from aerosync.mm.slab.layout import K_MAG_COUNT, K_NR_PARTIAL, K_PARTIAL, K_PCS, K_SLAB, NIL64
        from aerosync.mm.slab.slab_common import _cpu_off, _geo, cache_info, live_caches

        _, nr_cpus, _, mag, _ = _geo(arena)
        for cid in live_caches(arena):
            ko = _cpu_off(arena, cid, cpu, nr_cpus, mag)
            what = []
            if q[(ko + K_SLAB) >> 3] != NIL64:
                what.append(f"cpu slab {q[(ko + K_SLAB) >> 3]}")
            if q[(ko + K_PARTIAL) >> 3] != NIL64 or q[(ko + K_NR_PARTIAL) >> 3]:
                what.append(f"{q[(ko + K_NR_PARTIAL) >> 3]} cpu partial slabs")
            if mag and q[(ko + K_MAG_COUNT) >> 3]:
                what.append(f"{q[(ko + K_MAG_COUNT) >> 3]} magazine objects")
            if q[(ko + K_PCS) >> 3]:
                what.append(f"per-CPU sheaves {q[(ko + K_PCS) >> 3]:#x}")
            if what:
                held.append(f"{cache_info(arena, cid)['name']}: " + ", ".join(what))
    batch, cluster = _reclaim_pcpu(arena, cpu)
    if batch or cluster:
        held.append(f"reclaim: {batch} folios in its LRU add batch, swap cluster {cluster - 1}")
    if "rcu" in arena.sections:
        from aerosync.params import CACHE_LINE
        from aerosync.sync.rcu import RCU_HDR

        r = q[(arena.off("rcu") + RCU_HDR + cpu * CACHE_LINE) >> 3]
        if r:
            held.append(f"rcu: inside a read-side section (gp {r})")
    from aerosync.mm.vm import mm_types as T

    if T.vm_ready(arena):
        from aerosync.mm.vm.tlb import C_LOADED_MM, C_ONLINE, C_PENDING

        rec = T.vmcpu_off(arena, cpu)
        if q[(rec + C_ONLINE) >> 3] or q[(rec + C_LOADED_MM) >> 3] or q[(rec + C_PENDING) >> 3]:
            held.append(f"tlb: online {q[(rec + C_ONLINE) >> 3]}, loaded_mm {q[(rec + C_LOADED_MM) >> 3]}, "
                        f"ipi pending {q[(rec + C_PENDING) >> 3]}")
    return held


def cpuhp_check(arena: Any) -> list[str]:
    """H1 for every CPU whose hotplug state is OFFLINE: violations as text."""
    return [f"H1 cpu{c} is offline but holds {w}" for c in range(int(arena.config["nr_cpus"]))
            if hp_state(arena, c) == L.HP_OFFLINE for w in cpu_mm_held(arena, c)]
