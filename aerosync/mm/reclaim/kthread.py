"""kswapd (one per node) and the flusher: kernel threads as processes on their own CPUs.

Models: kernel/kthread.c's kthreads as mm/vmscan.c's kswapd() loop (sleep until woken
by wakeup_kswapd -- from the allocation slow path, or rmqueue's wake for a zone with a
watermark boost -- balance_pgdat to the HIGH mark + watermark_boost, with kswapd_order
and highest_zoneidx read and reset at each wakeup) and fs/fs-writeback.c's flusher (wake
every dirty_writeback_centisecs, or when balance_dirty_pages crosses the background
threshold).  Unit: one process per thread, attached to the arena like a worker.

A kernel thread is a simulated CPU of the machine: the machine builder appends
nr_nodes + 1 CPUs after the workers' (`kthread_machine`), kswapd of node n runs as CPU
first + n and the flusher as CPU first + nr_nodes ([reclaim] kthread_cpu = first).
Being a CPU gives it what reclaim needs: its own per-CPU page lists and vmstat record,
lock_stat identity, RCU reader word, and a TLB record to send shootdowns from (it
never runs a task, so no shootdown targets it, but kernel-range flushes do: its waits
and its sleep loop answer IPIs).

Control words (reclaim header / lruvec): KT_STOP (the owner stores 1 to stop every
kthread), each node's kswapd wake word (wakeup_kswapd stores 1; kswapd xchg's it to 0),
FLUSH_WAKE.  A kthread parks at the coordinator's live-check pause like a worker (acks
pause_seq in its CPU area), so the checkers see it quiescent.  On any exit path it
leaves its CPU cleanly (vm.leave: batches drained, no longer an IPI target); a failure
is written to its errtext slot and raised by stop().
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
import traceback
from typing import Any

from aerosync.arena import layout as L
from aerosync.errors import AeroSyncError
from aerosync.mm.reclaim import layout as R
from aerosync.params import CPU_AREA_SIZE, ERRTEXT_SIZE

__all__ = ["kthread_machine", "KThreads", "start_kthreads", "kthread_pause_pending", "kthread_cpus"]

SLEEP_S = 0.002


def kthread_machine(sim: dict[str, Any], reclaim: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The simulated topology with nr_nodes + 1 kthread CPUs appended (kswapd per node, the
    flusher), and the [reclaim] table naming the first of them."""
    nn = int(sim["nr_nodes"])
    first = int(sim["nr_cpus"])
    c2n = list(sim["cpu_to_node"]) + list(range(nn)) + [0]
    host = list(sim["host_cpu"])
    node_host = [next((host[c] for c, n in enumerate(sim["cpu_to_node"]) if n == nid), host[0]) for nid in range(nn)]
    host += [*node_host, host[0]]
    out = dict(sim)
    out.update(nr_cpus=len(c2n), cpu_to_node=c2n, host_cpu=host,
               node_cpus=[[c for c, n in enumerate(c2n) if n == nid] for nid in range(nn)],
               oversubscribed=len(c2n) > len(set(host)))
    rec = dict(reclaim)
    rec["kthread_cpu"] = first
    return out, rec


def kthread_cpus(arena: Any) -> list[int]:
    if "reclaim" not in arena.sections:
        return []
    base = arena.off("reclaim")
    first = arena.u64[(base + R.H_KT_BASE) >> 3] - 1
    if first < 0:
        return []
    nn = arena.u64[(base + R.H_NR_NODES) >> 3]
    return list(range(first, first + nn + 1))


def kthread_pause_pending(arena: Any, seq: int) -> list[int]:
    """Kthread CPUs running but not yet parked for the pause `seq`."""
    out = []
    for c in kthread_cpus(arena):
        area = arena.off("cpu") + c * CPU_AREA_SIZE
        if arena.u64[(area + L.CPU_STATE) >> 3] == L.CPUST_RUNNING and \
                arena.atomic.load64(area + L.CPU_PAUSE_ACK) != seq:
            out.append(c)
    return out


def _main(name: str, cpu: int, role: str, nid: int, ppid: int) -> None:
    from aerosync.arch import cpu as arch_cpu
    from aerosync.arena.segment import Arena

    arch_cpu.die_with_parent(ppid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    arch_cpu.set_proc_title(f"aerosync {role}{nid if role == 'kswapd' else ''}")
    arena = Arena.attach(name)
    area = (arena.off("cpu") + cpu * CPU_AREA_SIZE) >> 3
    q = arena.u64
    q[area + (L.CPU_PID >> 3)] = os.getpid()
    vm = None
    try:
        from aerosync.mm.vm.vm import VM

        vm = VM(arena, cpu)
        rec = vm.reclaim
        if rec is None:
            raise AeroSyncError(f"{role}: arena {name} has no reclaim section")
        q[area + (L.CPU_STATE >> 3)] = L.CPUST_RUNNING
        _loop(arena, vm, rec, cpu, role, nid, area)
        q[area + (L.CPU_STATE >> 3)] = L.CPUST_DONE
    except BaseException:
        text = traceback.format_exc()
        data = text.encode(errors="replace")[-(ERRTEXT_SIZE - 1):]
        off = arena.off("errtext") + cpu * ERRTEXT_SIZE
        arena.u8[off : off + len(data)] = data
        arena.u8[off + len(data)] = 0
        q[area + (L.CPU_STATE >> 3)] = L.CPUST_FAILED
        raise
    finally:
        if vm is not None:
            vm.leave()
            del vm
        arena.close()


def _loop(arena: Any, vm: Any, rec: Any, cpu: int, role: str, nid: int, area: int) -> None:
    q, at = arena.u64, arena.atomic
    base = arena.off("reclaim")
    stop_w = base + R.H_KT_STOP
    ack_off = (area << 3) + L.CPU_PAUSE_ACK
    lv = rec.off.lruvec(nid)
    scan, wb = rec.scan, rec.writeback
    interval = max(0.01, q[(base + R.H_DIRTY_WB_CS) >> 3] / 100.0)
    next_flush = time.monotonic() + interval
    while not at.load64(stop_w):
        q[area + (L.CPU_HEARTBEAT >> 3)] = time.monotonic_ns()
        rs = at.load64(L.H_RUN_STATE)
        if rs == L.RUN_PAUSE:
            seq = at.load64(L.H_PAUSE_SEQ)
            at.store64(ack_off, seq)
            # a new pause generation (GO then PAUSE again while we slept: the stop's
            # park right after a live check) must be acked too, or it waits for us forever
            while (at.load64(L.H_RUN_STATE) == L.RUN_PAUSE and at.load64(L.H_PAUSE_SEQ) == seq
                   and not at.load64(stop_w)):
                vm.park_poll()                  # IPIs only: no RCU frees under the checker
                time.sleep(0.0005)
            continue
        if role == "kswapd":
            if at.xchg64(lv + R.L_KSWAPD_WAIT, 0):
                order = q[(lv + R.L_KSWAPD_ORDER) >> 3]
                hz = q[(lv + R.L_KSWAPD_HZ) >> 3]
                q[(lv + R.L_KSWAPD_ORDER) >> 3] = 0
                q[(lv + R.L_KSWAPD_HZ) >> 3] = 0
                at.store64(lv + R.L_KSWAPD_ACTIVE, 1)
                try:
                    scan.balance_pgdat(nid, order, hz)
                finally:
                    at.store64(lv + R.L_KSWAPD_ACTIVE, 0)
                continue
        else:
            now = time.monotonic()
            if at.xchg64(base + R.H_FLUSH_WAKE, 0) or now >= next_flush:
                wb.flush_dirty()
                next_flush = time.monotonic() + interval
                continue
        vm.poll()
        time.sleep(SLEEP_S)


class KThreads:
    """The running kernel threads of one arena; stop() is idempotent and never leaves one
    behind (stop word, join, then terminate / kill)."""

    def __init__(self, arena: Any, procs: list[tuple[str, int, Any]]) -> None:
        self.arena, self.procs = arena, procs
        self.stopped = False

    def stop(self, timeout: float = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        arena = self.arena
        arena.atomic.store64(arena.off("reclaim") + R.H_KT_STOP, 1)
        deadline = time.monotonic() + timeout
        for _, _, p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        failed = []
        for name, cpu, p in self.procs:
            if p.exitcode is None:
                p.terminate()
                p.join(2.0)
                if p.exitcode is None:
                    p.kill()
                    p.join(2.0)
                failed.append(f"{name} (cpu{cpu}) did not stop in {timeout:g} s")
            elif p.exitcode:
                off = arena.off("errtext") + cpu * ERRTEXT_SIZE
                tb = bytes(arena.u8[off : off + ERRTEXT_SIZE]).split(b"\0", 1)[0].decode(errors="replace")
                failed.append(f"{name} (cpu{cpu}) exited {p.exitcode}: {tb.strip().splitlines()[-1] if tb else ''}")
            from aerosync.mm.vm.tlb import cpu_mark_offline

            cpu_mark_offline(arena, cpu)
        if failed:
            raise AeroSyncError("reclaim kernel threads: " + "; ".join(failed))

    def alive(self) -> bool:
        return all(p.is_alive() for _, _, p in self.procs)


def start_kthreads(arena: Any) -> KThreads | None:
    """Start kswapd per node and the flusher when the machine has kthread CPUs and
    [reclaim] wants them; None otherwise."""
    cpus = kthread_cpus(arena)
    if not cpus:
        return None
    p = R.reclaim_params(arena.config)
    ctx = mp.get_context("spawn")
    procs = []
    nn = len(cpus) - 1
    arena.atomic.store64(arena.off("reclaim") + R.H_KT_STOP, 0)
    kt = KThreads(arena, procs)
    try:
        for nid in range(nn):
            if p["kswapd"]:
                pr = ctx.Process(target=_main, args=(arena.name, cpus[nid], "kswapd", nid, os.getpid()),
                                 name=f"kswapd{nid}", daemon=True)
                pr.start()
                procs.append((f"kswapd{nid}", cpus[nid], pr))
        if p["flusher"]:
            pr = ctx.Process(target=_main, args=(arena.name, cpus[nn], "flusher", 0, os.getpid()),
                             name="flusher", daemon=True)
            pr.start()
            procs.append(("flusher", cpus[nn], pr))
        deadline = time.monotonic() + 60.0
        for name, cpu, pr in procs:
            area = arena.off("cpu") + cpu * CPU_AREA_SIZE
            while arena.u64[(area + L.CPU_STATE) >> 3] != L.CPUST_RUNNING:
                if not pr.is_alive() or time.monotonic() > deadline:
                    raise AeroSyncError(f"{name} (cpu{cpu}) did not start")
                time.sleep(0.005)
    except BaseException:
        with contextlib.suppress(AeroSyncError):
            kt.stop(2.0)
        raise
    return kt
