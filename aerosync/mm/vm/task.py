"""Simulated tasks: the task records in the arena, pids, and what runs on a CPU.

Models: the memory side of include/linux/sched.h (task_struct: pid, tgid, comm, mm,
the CPU it is on, its exit state), kernel/pid.c (pid allocation from one counter: pids
grow monotonically here and are never reused), kernel/exit.c (a task that exits keeps
its record as a zombie until reaped).  Unit: a task id (index of its record) and its pid.

A record is claimed by any CPU with a CAS on its state word (TASK_FREE -> TASK_STOPPED)
and filled before it is made runnable; after that, its fields are written by the CPU the
task runs on (cpu, exit status) or, for a task that is not running, by its creator or
reaper.  Readers (views, the coordinator) read without locks.
"""

from __future__ import annotations

from typing import Any

from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.mm_types import VMError

__all__ = ["task_alloc", "task_set_state", "task_free", "task_info", "live_tasks", "task_by_pid"]


def task_alloc(arena: Any, comm: str, mm_id: int, ppid: int = 0, tgid: int = 0, named: int = -1) -> int:
    """A new task (stopped, not on a CPU) using mm_id (-1: none); returns its task id.
    `named`: the u64 word of the caller's vm_task_create record (a1) that takes tid + 1
    right after the claim, before the record is filled (take, record: recovery frees a
    claimed task its record did not finish, mm/vm/recover.py _task_create_undo)."""
    q, at = arena.u64, arena.atomic
    hdr = arena.off("vmhdr")
    n = q[(hdr + T.H_MAX_TASKS) >> 3]
    for tid in range(n):
        o = T.task_off(arena, tid)
        if at.load32(o + T.T_STATE) != T.TASK_FREE or at.cas32(o + T.T_STATE, T.TASK_FREE, T.TASK_STOPPED) != 0:
            continue
        if named >= 0:
            q[named] = tid + 1
        pid = at.fetch_add64(hdr + T.H_NEXT_PID, 1)
        arena.u8[o + 8 : o + T.TASK_REC] = bytes(T.TASK_REC - 8)
        q[(o + T.T_PID) >> 3] = pid
        q[(o + T.T_TGID) >> 3] = tgid or pid
        q[(o + T.T_PPID) >> 3] = ppid
        q[(o + T.T_MM) >> 3] = mm_id + 1
        raw = comm.encode()[:15]
        arena.u8[o + T.T_COMM : o + T.T_COMM + 16] = raw.ljust(16, b"\0")
        return tid
    raise VMError("EAGAIN", f"task_alloc({comm!r}): all {n} task records in use ([vm] max_tasks)")


def task_set_state(arena: Any, tid: int, state: int) -> None:
    arena.atomic.store32(T.task_off(arena, tid) + T.T_STATE, state)


def task_free(arena: Any, tid: int) -> None:
    """release_task(): the record goes back to the free pool (and no CPU's C_TASK names
    it any more: a later task in the record is not that CPU's)."""
    q = arena.u64
    for c in range(int(arena.config["nr_cpus"])):
        w = (T.vmcpu_off(arena, c) + T.C_TASK) >> 3
        if q[w] == tid + 1:
            q[w] = 0
    arena.atomic.store32(T.task_off(arena, tid) + T.T_STATE, T.TASK_FREE)


def task_info(arena: Any, tid: int) -> dict[str, Any]:
    q = arena.u64
    o = T.task_off(arena, tid)
    st = arena.u32[(o + T.T_STATE) >> 2]
    return {
        "tid": tid, "state": T.TASK_STATE_NAMES[st] if st < len(T.TASK_STATE_NAMES) else str(st),
        "pid": q[(o + T.T_PID) >> 3], "tgid": q[(o + T.T_TGID) >> 3], "ppid": q[(o + T.T_PPID) >> 3],
        "mm": q[(o + T.T_MM) >> 3] - 1, "cpu": q[(o + T.T_CPU) >> 3] - 1,
        "comm": bytes(arena.u8[o + T.T_COMM : o + T.T_COMM + 16]).rstrip(b"\0").decode(errors="replace"),
        "exit_signal": q[(o + T.T_EXIT_SIGNAL) >> 3], "fault_addr": q[(o + T.T_FAULT_ADDR) >> 3],
        "fault_reason": q[(o + T.T_FAULT_REASON) >> 3],
    }


def live_tasks(arena: Any) -> list[int]:
    """Task ids of every record in use (running, stopped or zombie)."""
    n = arena.u64[(arena.off("vmhdr") + T.H_MAX_TASKS) >> 3]
    return [t for t in range(n) if arena.u32[(T.task_off(arena, t) + T.T_STATE) >> 2] != T.TASK_FREE]


def task_by_pid(arena: Any, pid: int) -> int:
    for t in live_tasks(arena):
        if arena.u64[(T.task_off(arena, t) + T.T_PID) >> 3] == pid:
            return t
    return -1
