"""AeroSync's exception tree: every failure a user can see carries structured fields.

`AeroSyncError` is the root; the CLI maps `UsageError` (and its subclasses) to exit
status 2 and everything else to status 1, printing `str(exc)` without a traceback.
"""

from __future__ import annotations

__all__ = [
    "AeroSyncError",
    "UsageError",
    "ScenarioError",
    "ArenaError",
    "ArenaMismatch",
    "ShmSpaceError",
    "ArenaNotFound",
    "LockError",
    "LockOwnerDead",
    "WorkerDied",
    "SoftLockup",
    "InvariantViolation",
    "TopologyError",
    "Terminated",
    "interrupt_behind",
]


class AeroSyncError(Exception):
    """Root of every error AeroSync raises on purpose."""


class UsageError(AeroSyncError):
    """Bad input from the user: exit status 2, nothing created."""


class ScenarioError(UsageError):
    """A scenario file (or override) holds a bad key or value."""

    def __init__(self, file: str, key: str, value: object, allowed: str) -> None:
        self.file, self.key, self.value, self.allowed = file, key, value, allowed
        super().__init__(f"{file}: {key} = {value!r}: {allowed}")


class TopologyError(UsageError):
    """A topology file or fake-NUMA request that cannot describe a machine."""


class ArenaError(AeroSyncError):
    """The shared-memory arena could not be created, attached or used."""


class ShmSpaceError(ArenaError, UsageError):
    """/dev/shm has no room for the arena asked for (checked before creating it)."""

    def __init__(self, path: str, asked: int, free: int) -> None:
        self.path, self.asked, self.free = path, asked, free
        super().__init__(
            f"arena needs {asked / 2**20:.1f} MiB but {path} has only {free / 2**20:.1f} MiB free; "
            f"use a smaller [machine] memory, or give {path} more room "
            f"(docker run --shm-size=..., a Kubernetes emptyDir with medium: Memory, "
            f"or mount -o remount,size=... {path})"
        )


class ArenaNotFound(ArenaError, UsageError):
    """No segment of that name: a usage error when the name came from the user (exit 2)."""

    def __init__(self, name: str, shm_dir: str) -> None:
        self.name = name
        super().__init__(f"no segment named {name!r} in {shm_dir}: its run has ended or the name is mistyped "
                         f"(live arenas are the aerosync_* files there)")


class ArenaMismatch(ArenaError):
    """Attaching found a segment whose header does not match what the caller expects."""

    def __init__(self, name: str, field: str, expected: object, found: object) -> None:
        self.name, self.field, self.expected, self.found = name, field, expected, found
        super().__init__(
            f"arena {name!r}: header field {field} is {found!r}, expected {expected!r}; "
            "refusing to attach (different AeroSync version or configuration?)"
        )


class LockError(AeroSyncError):
    """Lock misuse: recursive acquire, release by a non-owner, or an unknown lock."""


class LockOwnerDead(LockError):
    """A lock is held by a process that no longer exists."""

    def __init__(self, lock: str, cpu: int, pid: int, held_s: float) -> None:
        self.lock, self.cpu, self.pid, self.held_s = lock, cpu, pid, held_s
        super().__init__(
            f"lock {lock} is held by dead owner cpu{cpu} pid {pid} (held for at least {held_s:.3f} s)"
        )


class WorkerDied(AeroSyncError):
    """A simulated CPU's process ended before it was told to stop."""

    def __init__(self, cpu: int, pid: int, cause: str, traceback: str = "") -> None:
        self.cpu, self.pid, self.cause, self.traceback = cpu, pid, cause, traceback
        msg = f"simulated cpu{cpu} (pid {pid}) died: {cause}"
        if traceback:
            msg += "\n--- worker traceback ---\n" + traceback.rstrip()
        super().__init__(msg)


class SoftLockup(AeroSyncError):
    """A simulated CPU made no progress for longer than the watchdog allows."""

    def __init__(self, cpu: int, pid: int, stuck_s: float, detail: str) -> None:
        self.cpu, self.pid, self.stuck_s, self.detail = cpu, pid, stuck_s, detail
        super().__init__(
            f"watchdog: BUG: soft lockup - cpu{cpu} (pid {pid}) stuck for {stuck_s:.1f} s\n{detail.rstrip()}"
        )


class InvariantViolation(AeroSyncError):
    """The invariant checker found state that breaks a documented invariant."""

    def __init__(self, inv_id: str, where: str, expected: object, found: object) -> None:
        self.inv_id, self.where, self.expected, self.found = inv_id, where, expected, found
        super().__init__(f"invariant {inv_id} violated at {where}: expected {expected}, found {found}")


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception so `finally` blocks run (the CLI exits 128 + 15).

    A KeyboardInterrupt, not an AeroSyncError: everything that stops cleanly on Ctrl-C
    stops the same way on SIGTERM.
    """

    signum = 15


def interrupt_behind(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM (Terminated) behind `e`, if `e` was raised while handling one
    (a clean-up step that failed after the interrupt), following causes and contexts."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
