"""Host CPU facts and pinning: which CPUs this process may use, and pinning a worker to one.

Models: the user-visible side of kernel/sched/core.c:sched_setaffinity(), the cgroup CPU
controller (cpu.max / cpu.cfs_quota_us) and prctl(PR_SET_PDEATHSIG / PR_SET_NAME).

Why this module exists (python-shm-pitfalls.md section 4):
  * `os.cpu_count()` counts the machine, not what taskset/cpuset let us use; every size and
    pin comes from `os.sched_getaffinity(0)` (which already reflects cgroup cpusets).
  * A CPU *quota* (docker --cpus, cpu.max) does not show up in affinity.  Spinning workers
    burn it and are throttled for the rest of the period, which looks exactly like
    lock-holder preemption, so the quota is read and reported beside the allowed set.
  * Affinity is per thread and inherited: each worker pins itself first, before it starts
    any thread, and verifies the result (`pin_to`).
  * Orphaned workers keep spinning: each worker sets PDEATHSIG and then re-checks its
    parent pid, closing the race where the parent died before the prctl (`die_with_parent`).
  * A lock owner is found dead by pid: zombies count as dead, and the start time in
    /proc/PID/stat guards against pid reuse (`proc_alive`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import signal
from collections.abc import Iterable

from aerosync.errors import AeroSyncError

__all__ = [
    "PinError",
    "allowed_cpus",
    "cpu_model",
    "cpu_quota",
    "die_with_parent",
    "format_cpulist",
    "parse_cpu_max",
    "parse_cpulist",
    "read_file",
    "pin_to",
    "proc_alive",
    "proc_starttime",
    "set_pdeathsig",
    "set_proc_title",
]

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
TASK_COMM_LEN = 16          # comm is 15 characters plus NUL


class PinError(AeroSyncError, OSError):
    """A worker could not be pinned to the CPU it was given (not allowed, or did not stick)."""

    def __init__(self, cpu: int, allowed: Iterable[int], reason: str) -> None:
        self.cpu, self.allowed, self.reason = cpu, tuple(sorted(allowed)), reason
        super().__init__(
            f"pin_to: cannot pin to cpu {cpu}: {reason}; this process may use cpus "
            f"{format_cpulist(self.allowed) or '(none)'} (os.sched_getaffinity: taskset/cpuset limit it)"
        )

    def __reduce__(self) -> tuple[type, tuple[int, tuple[int, ...], str]]:
        # OSError pickles as cls(*args); our __init__ takes the structured fields instead.
        return (type(self), (self.cpu, self.allowed, self.reason))


# --- cpulist syntax ("0-3,8,10-11"), as in /sys/devices/system/{cpu,node}/*list ----------

def parse_cpulist(text: str) -> tuple[int, ...]:
    """Parse the kernel's list format (lib/bitmap-str.c) into sorted unique ints.

    Accepts "" (empty set), ranges "a-b" and the stride form "a-b:g/w" the kernel also
    prints for bitmap_parselist.  Raises ValueError on anything else.
    """
    out: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        group, used = 0, 0
        if ":" in part:
            part, _, stride = part.partition(":")
            used_s, _, group_s = stride.partition("/")
            used, group = int(used_s), int(group_s)
            if used <= 0 or group <= 0 or used > group:
                raise ValueError(f"bad cpulist stride {stride!r}")
        lo_s, dash, hi_s = part.partition("-")
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
        if lo < 0 or hi < lo:
            raise ValueError(f"bad cpulist range {part!r}")
        for c in range(lo, hi + 1):
            if not group or (c - lo) % group < used:
                out.add(c)
    return tuple(sorted(out))


def format_cpulist(cpus: Iterable[int]) -> str:
    """Format ints as the kernel's compact list ("0-3,8,10-11"); "" for the empty set."""
    runs: list[str] = []
    ordered = sorted(set(cpus))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs)


# --- what this process may use -------------------------------------------------------------

def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on: affinity (taskset and cpuset), never os.cpu_count()."""
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 cpu.max "$MAX $PERIOD" in CPUs; None for "max" (unlimited) or nonsense."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us in CPUs; -1 means unlimited."""
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def read_file(path: str) -> str | None:
    """A small sysfs/procfs file's text, or None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _levels(mount: str, cgpath: str) -> list[str]:
    """Directories from our cgroup up to the mount root (the effective limit is the minimum).

    Without a cgroup namespace /proc/self/cgroup names a host path that does not exist under
    the container's mount; the ancestors that do not exist are skipped and the mount root
    (the container's own cgroup) still counts.
    """
    parts = [p for p in cgpath.split("/") if p]
    dirs = [os.path.join(mount, *parts[:i]) for i in range(len(parts), 0, -1)]
    dirs.append(mount)
    return [d for d in dirs if os.path.isdir(d)]


def cpu_quota(root: str = "/sys/fs/cgroup", proc: str = "/proc") -> float | None:
    """The cgroup CPU quota of this process in CPUs (2.0 = two CPUs' worth), None if unlimited.

    Reads our cgroup from {proc}/self/cgroup; a v1 "cpu" controller line wins (hybrid
    hosts keep cpu on v1), else the v2 unified hierarchy.  The smallest quota on the path
    from our cgroup to the root applies.  None also when nothing can be read.
    """
    text = read_file(os.path.join(proc, "self", "cgroup"))
    if text is None:
        return None
    v1_path = v2_path = None
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hid == "0" and ctrls == "":
            v2_path = path
        elif "cpu" in ctrls.split(","):
            v1_path = path
    limits: list[float] = []
    if v1_path is not None:
        mount = next(
            (os.path.join(root, m) for m in ("cpu", "cpu,cpuacct", "cpuacct,cpu")
             if os.path.isdir(os.path.join(root, m))),
            None,
        )
        for d in _levels(mount, v1_path) if mount else []:
            q, p = read_file(os.path.join(d, "cpu.cfs_quota_us")), read_file(os.path.join(d, "cpu.cfs_period_us"))
            if q is not None and p is not None and (lim := _parse_cfs(q, p)) is not None:
                limits.append(lim)
    elif v2_path is not None:
        # A hybrid host mounts v2 at {root}/unified; a pure v2 host at {root} itself.
        mount = root
        if not os.path.exists(os.path.join(root, "cgroup.controllers")) and os.path.isdir(
                os.path.join(root, "unified")):
            mount = os.path.join(root, "unified")
        for d in _levels(mount, v2_path):
            t = read_file(os.path.join(d, "cpu.max"))
            if t is not None and (lim := parse_cpu_max(t)) is not None:
                limits.append(lim)
    return min(limits) if limits else None


def cpu_model(proc: str = "/proc") -> str:
    """The CPU's marketing name from /proc/cpuinfo ("model name"), for reports."""
    text = read_file(os.path.join(proc, "cpuinfo")) or ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


# --- pinning -------------------------------------------------------------------------------

def pin_to(cpu: int) -> None:
    """Pin the calling thread (the process's main thread in a worker) to `cpu` and verify it.

    Only CPUs in the current affinity mask are accepted, so a worker never escapes the
    taskset the user ran us under (the kernel would allow any CPU of the cpuset).  Call it
    first thing in a worker, before any thread exists: affinity is per thread.
    Raises PinError (an OSError) naming the CPU and the allowed set.
    """
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise PinError(cpu, allowed, "not in the allowed set")
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        raise PinError(cpu, allowed, f"sched_setaffinity failed: {exc.strerror or exc}") from exc
    got = os.sched_getaffinity(0)
    if got != {cpu}:
        raise PinError(cpu, allowed, f"affinity read back as {format_cpulist(got) or '(none)'}")


# --- prctl ---------------------------------------------------------------------------------

@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def set_pdeathsig(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to us when our parent *thread* exits (PR_SET_PDEATHSIG).

    The parent may already be gone: callers must re-check os.getppid() afterwards, which
    `die_with_parent` does.  Start workers from the coordinator's main thread, since the
    signal follows the thread that forked us.  Raises OSError if prctl fails.
    """
    if _libc().prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


def die_with_parent(expected_ppid: int, sig: int = signal.SIGTERM) -> None:
    """Set PDEATHSIG, then exit at once (status 1) if the parent already died or changed.

    The re-check closes the race where the parent exits between fork and prctl: we would
    then have been reparented and would never get the signal.
    """
    set_pdeathsig(sig)
    if os.getppid() != expected_ppid:
        os._exit(1)


def set_proc_title(title: str) -> None:
    """Name the process for ps/top/py-spy ("aerosync cpu3"); best effort, never raises.

    setproctitle changes the whole command line; without it PR_SET_NAME changes comm,
    which the kernel truncates to 15 bytes (TASK_COMM_LEN - 1).
    """
    try:
        import setproctitle

        setproctitle.setproctitle(title)
        return
    except Exception:
        pass
    try:
        name = title.encode("utf-8", "replace")[: TASK_COMM_LEN - 1]
        _libc().prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
    except Exception:
        pass


# --- is a pid still the process we think it is? ---------------------------------------------

def _parse_stat(text: str) -> tuple[str, int]:
    """(state, starttime) from /proc/PID/stat text.

    comm (field 2) is in parentheses and may itself contain spaces and ")", so split at the
    *last* ")"; state is then field 3 and starttime (clock ticks since boot) field 22.
    """
    _, paren, rest = text.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < 20:
        raise ValueError(f"malformed /proc/PID/stat: {text[:80]!r}")
    return fields[0], int(fields[19])


def _read_stat(pid: int) -> tuple[str, int] | None:
    if pid <= 0:
        return None
    text = read_file(f"/proc/{pid}/stat")
    if text is None:
        return None
    try:
        return _parse_stat(text)
    except ValueError:
        return None


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None if there is no such pid.

    Record it with a pid; together they name one process even after the pid is reused.
    """
    st = _read_stat(pid)
    return None if st is None else st[1]


def proc_alive(pid: int, starttime: int | None = None) -> bool:
    """True if `pid` exists, is not a zombie ('Z'/'X'), and (if given) started at `starttime`.

    A zombie has finished running and will never release a lock, so it counts as dead; a
    different start time means the pid was reused by another process.
    """
    st = _read_stat(pid)
    if st is None:
        return False
    state, started = st
    if state in ("Z", "X", "x"):
        return False
    return starttime is None or started == starttime
