"""The OOM killer: when reclaim makes no progress, kill the task whose death frees most.

Models: mm/oom_kill.c (oom_badness: RSS + swap entries + page-table pages, adjusted by
oom_score_adj in thousandths of the machine's pages, -1000 never chosen; select_bad_process;
dump_header's report: the invoking task, Mem-Info, the task table; "Out of memory:
Killed process ..."; mark_oom_victim and the OOM reaper, which unmaps the victim's
private anonymous memory at once so memory comes back before the victim itself exits;
oom_lock serialising killers).  Unit: one task (a record of mm/vm/task.py).

A victim gets SIGKILL in its exit_signal and TASK_OOM_VICTIM in its flags; its CPU learns
it at its next page fault (the reaper zapped what it mapped), which raises TaskKilled
(Memory.ext.check_killed): the workload running it ends the task (exit + reap) and may
start another -- the run goes on with the survivors.  While a victim has not exited,
further OOM invocations wait for it instead of killing again (oom_killer's "a victim is
already exiting" rule).

The last report is kept in the reclaim header (oom_report(arena)); oom_kill counts in
vmstat.
"""

from __future__ import annotations

import time
from typing import Any

from aerosync.errors import AeroSyncError
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import format_gfp
from aerosync.mm.reclaim import layout as R
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.params import PAGE_SIZE

__all__ = ["OomKiller", "TaskKilled", "oom_badness", "oom_report", "TASK_OOM_VICTIM", "task_killed"]

TASK_OOM_VICTIM = 1 << 0
SIGKILL = 9
OOM_SCORE_ADJ_MIN = -1000
MADV_DONTNEED = 4
MAX_OOM_REAP_RETRIES = 10    # oom_reap_task: mmap_read_trylock this many times, HZ/10 apart
REAP_WAIT_S = 1.0           # how long the reaper tries a busy VMA of another CPU's victim


class TaskKilled(AeroSyncError):
    """The running task was chosen by the OOM killer (SIGKILL): the workload ends it."""

    def __init__(self, tid: int, pid: int, cpu: int) -> None:
        self.tid, self.pid, self.cpu = tid, pid, cpu
        super().__init__(f"task {pid} (tid slot {tid}) on cpu{cpu}: killed by the OOM killer (SIGKILL)")


def _i64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def oom_badness(arena: Any, tid: int, totalpages: int) -> int | None:
    """oom_badness(): None for a task that cannot be chosen (no mm, adj -1000)."""
    q = arena.u64
    o = T.task_off(arena, tid)
    mm_id = q[(o + T.T_MM) >> 3] - 1
    adj = _i64(q[(o + T.T_OOM_SCORE_ADJ) >> 3])
    if mm_id <= 0 or adj == OOM_SCORE_ADJ_MIN:
        return None
    mo = T.mm_off(arena, mm_id)
    c = T.get_mm_counters(q, mo, int(arena.config["nr_cpus"]))
    rss = c[T.MM_FILEPAGES] + c[T.MM_ANONPAGES] + c[T.MM_SHMEMPAGES]
    points = rss + c[T.MM_SWAPENTS] + q[(mo + T.M_PGTABLES_BYTES) >> 3] // PAGE_SIZE
    return points + adj * totalpages // 1000


def task_killed(arena: Any, tid: int) -> bool:
    return bool(arena.u32[(T.task_off(arena, tid) + T.T_FLAGS) >> 2] & TASK_OOM_VICTIM)


def oom_report(arena: Any) -> str:
    if "reclaim" not in arena.sections:
        return ""
    base = arena.off("reclaim")
    n = arena.u64[(base + R.H_OOM_TEXT_LEN) >> 3]
    return bytes(arena.u8[base + R.OOM_TEXT_OFF : base + R.OOM_TEXT_OFF + n]).decode(errors="replace")


class OomKiller:
    """out_of_memory(gfp, order, zids) -> True if a victim was killed (or one is dying)."""

    def __init__(self, vm: Any, rec: Any) -> None:
        self.vm, self.rec = vm, rec
        arena, cpu = vm.arena, vm.cpu
        self.arena, self.cpu = arena, cpu
        base = arena.off("reclaim")
        self.enabled = bool(arena.u64[(base + R.H_OOM_KILL) >> 3])
        self.lock_w = base + R.H_OOM_LOCK
        from aerosync.mm.vm.task import live_tasks, task_info

        self._live, self._info = live_tasks, task_info

        u32, task_base, cur = arena.u32, arena.off("vmtask"), vm.cur

        def check_killed() -> None:
            """Called on every page fault: task_killed() with the offsets bound (one load
            on the common path; measured ~48 -> ~20 bytecodes a fault)."""
            tid = cur[0]
            o = task_base + tid * T.TASK_REC
            if u32[(o + T.T_FLAGS) >> 2] & TASK_OOM_VICTIM and vm.task >= 0:
                raise TaskKilled(tid, arena.u64[(o + T.T_PID) >> 3], cpu)

        vm.ext.check_killed = check_killed

    def out_of_memory(self, gfp: int, order: int, zids: Any) -> bool:
        if not self.enabled:
            return False
        arena, q, at = self.arena, self.arena.u64, self.arena.atomic
        if at.cas64(self.lock_w, 0, self.cpu + 1) != 0:
            return True                                  # another CPU is killing: wait and retry
        try:
            tasks = self._live(arena)
            for t in tasks:                              # a victim not yet gone: wait for it
                o = T.task_off(arena, t)
                if (arena.u32[(o + T.T_FLAGS) >> 2] & TASK_OOM_VICTIM
                        and arena.u32[(o + T.T_STATE) >> 2] != T.TASK_ZOMBIE and q[(o + T.T_MM) >> 3]):
                    return True
            total = int(arena.config["nr_pages"]) + self.rec.off.nr_slots
            best, best_pts = -1, -(1 << 62)
            for t in tasks:
                o = T.task_off(arena, t)
                if arena.u32[(o + T.T_STATE) >> 2] == T.TASK_ZOMBIE:
                    continue
                pts = oom_badness(arena, t, total)
                if pts is not None and pts > best_pts:
                    best, best_pts = t, pts
            report = self._header(gfp, order, tasks, total)
            if best < 0:
                self._store(report + "Out of memory and no killable processes...\n")
                return False
            report += self._kill(best)
            self._store(report)
            return True
        finally:
            at.store64(self.lock_w, 0)

    def _header(self, gfp: int, order: int, tasks: list[int], total: int) -> str:
        arena, q = self.arena, self.arena.u64
        me = self.vm.task
        comm = self._info(arena, me)["comm"] if me >= 0 else "kswapd"
        adj = _i64(q[(T.task_off(arena, me) + T.T_OOM_SCORE_ADJ) >> 3]) if me >= 0 else 0
        st = VE.fold_node_stats(arena)
        lines = [f"{comm} invoked oom-killer: gfp_mask={gfp:#x}({format_gfp(gfp)}), order={order}, "
                 f"oom_score_adj={adj}",
                 f"CPU: {self.cpu} PID: {self._info(arena, me)['pid'] if me >= 0 else 0} Comm: {comm}",
                 "Mem-Info:",
                 "active_anon:{} inactive_anon:{} isolated_anon:{}\n active_file:{} inactive_file:{} isolated_file:{}\n"
                 " unevictable:{} dirty:{} writeback:{}\n mapped:{} shmem:{} pagetables:{}".format(
                     *(sum(n[k] for n in st) for k in (
                         "nr_active_anon", "nr_inactive_anon", "nr_isolated_anon", "nr_active_file",
                         "nr_inactive_file", "nr_isolated_file", "nr_unevictable", "nr_dirty", "nr_writeback",
                         "nr_mapped", "nr_shmem", "nr_page_table_pages"))),
                 "Tasks state (memory values in pages):",
                 "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
                 "oom_score_adj name"]
        for t in tasks:
            info = self._info(arena, t)
            mm_id = info["mm"]
            if mm_id <= 0:
                continue
            mo = T.mm_off(arena, mm_id)
            rss = T.get_mm_counters(q, mo, int(arena.config["nr_cpus"]))
            adj_t = _i64(q[(T.task_off(arena, t) + T.T_OOM_SCORE_ADJ) >> 3])
            lines.append(f"[{info['pid']:>7}] {0:>5} {info['tgid']:>5} {q[(mo + T.M_TOTAL_VM) >> 3]:>8} "
                         f"{rss[1] + rss[0] + rss[3]:>8} {rss[1]:>8} {rss[0]:>8} {rss[3]:>9} "
                         f"{q[(mo + T.M_PGTABLES_BYTES) >> 3]:>14} {rss[2]:>8} {adj_t:>13} {info['comm']}")
        return "\n".join(lines) + "\n"

    def _kill(self, tid: int) -> str:
        """mark_oom_victim + __oom_kill_process + the OOM reaper's unmapping."""
        arena, q = self.arena, self.arena.u64
        o = T.task_off(arena, tid)
        info = self._info(arena, tid)
        mm_id = info["mm"]
        mo = T.mm_off(arena, mm_id)
        rss = T.get_mm_counters(q, mo, int(arena.config["nr_cpus"]))
        k = PAGE_SIZE >> 10
        msg = (f"Out of memory: Killed process {info['pid']} ({info['comm']}) total-vm:"
               f"{q[(mo + T.M_TOTAL_VM) >> 3] * k}kB, anon-rss:{rss[1] * k}kB, file-rss:{rss[0] * k}kB, "
               f"shmem-rss:{rss[3] * k}kB, UID:0 pgtables:{q[(mo + T.M_PGTABLES_BYTES) >> 3] >> 10}kB "
               f"oom_score_adj:{_i64(q[(o + T.T_OOM_SCORE_ADJ) >> 3])}\n")
        arena.atomic.fetch_or32(o + T.T_FLAGS, TASK_OOM_VICTIM)
        q[(o + T.T_EXIT_SIGNAL) >> 3] = SIGKILL
        VE.count_vm_event(arena, self.cpu, VE.OOM_KILL)
        if not self._reap(mm_id):              # oom_reap_task: the mmap lock was never had
            return msg + f"oom_reaper: unable to reap pid:{info['pid']} ({info['comm']})\n"
        rss = T.get_mm_counters(q, mo, int(arena.config["nr_cpus"]))
        return msg + (f"oom_reaper: reaped process {info['pid']} ({info['comm']}), now anon-rss:{rss[1] * k}kB, "
                      f"file-rss:{rss[0] * k}kB, shmem-rss:{rss[3] * k}kB\n")

    def _reap(self, mm_id: int) -> bool:
        """__oom_reap_task_mm: MADV_DONTNEED over the victim's private anonymous VMAs
        (a VMA a fault stays inside -- this CPU's own, when the victim is the current
        task -- is skipped: mm/vm/mmap.py madvise's reap_wait).  False when the mmap
        lock could not be had for read: tried MAX_OOM_REAP_RETRIES times REAP_WAIT_S
        apart in all, as oom_reap_task before "unable to reap" -- once for this CPU's
        own mm, whose lock the fault that got here may hold."""
        arena, q = self.arena, self.arena.u64
        vm = self.vm
        mo = T.mm_off(arena, mm_id)
        own = mm_id == vm.current_mm()
        ranges = []
        tries = 1 if own else MAX_OOM_REAP_RETRIES       # oom_reap_task's retries, HZ/10 apart
        while not vm.locks.mmap_lock.down_read_trylock(mo + T.M_MMAP_LOCK):
            tries -= 1
            if not tries:
                return False
            time.sleep(REAP_WAIT_S / MAX_OOM_REAP_RETRIES)
        try:
            for _f, _l, vma in vm.vmas.tree(mm_id).mt_for_each():
                fl = q[(vma + V.V_FLAGS) >> 3]
                if fl & V.VM_SHARED or q[(vma + V.V_FILE) >> 3] or fl & V.VM_LOCKED:
                    continue
                ranges.append((q[(vma + V.V_START) >> 3], q[(vma + V.V_END) >> 3]))
        finally:
            vm.locks.mmap_lock.up_read(mo + T.M_MMAP_LOCK)
        # the victim's faults end soon (an OOM victim's allocation fails at once:
        # reclaim.py slowpath) -- unless the victim is this CPU's mm, whose VMA lock or
        # mmap_lock (read) the fault that got here may hold itself: then both are only
        # tried, and a busy mm is left to the victim's exit
        wait = 0.0 if own else REAP_WAIT_S
        for s, e in ranges:
            try:
                vm.sys.madvise(mm_id, s, e - s, MADV_DONTNEED, reap_wait=wait)
            except T.VMError:
                continue
        return True

    def _store(self, text: str) -> None:
        arena = self.arena
        base = arena.off("reclaim")
        raw = text.encode()[: R.OOM_TEXT_MAX]
        arena.u8[base + R.OOM_TEXT_OFF : base + R.OOM_TEXT_OFF + len(raw)] = raw
        arena.u64[(base + R.H_OOM_TEXT_LEN) >> 3] = len(raw)
        arena.u64[(base + R.H_OOM_KILLS) >> 3] += 1
