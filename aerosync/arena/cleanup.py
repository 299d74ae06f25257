"""Find and remove arena segments, semaphores and run files whose owner is gone.

A crash can leave `/dev/shm/aerosync_<pid>_*` (segments) and `/dev/shm/sem.aerosync_*`
(semaphores) behind: a SIGKILLed coordinator never reaches its `finally`, and untracked
segments have no resource tracker to fall back on (python-shm-pitfalls.md 1.5).  An
object is stale when the pid in its name is dead (zombies count as dead) **and** no
process maps or holds it open (`/proc/*/maps`, `/proc/*/fd`); both are checked so that a
live run is never touched, even if its coordinator's pid was reused.
"""

from __future__ import annotations

import os
import re
import tempfile

import posix_ipc

from aerosync.arch.cpu import proc_alive
from aerosync.params import SHM_PREFIX, TMP_PREFIX

__all__ = ["cleanup_stale", "find_project_objects", "in_use", "remove_own", "remove_run_files"]

_NAME_RE = re.compile(rf"^(?:sem\.)?{re.escape(SHM_PREFIX)}(\d+)_")
# a run's temporary files (TMP_PREFIX<use>-<arena name>-...: a worker's backing file)
_TMP_RE = re.compile(rf"^{re.escape(TMP_PREFIX)}[a-z]+-{re.escape(SHM_PREFIX)}(\d+)_")


def find_project_objects(shm_dir: str = "/dev/shm") -> list[tuple[str, int]]:
    """(file name in shm_dir, owner pid) of every AeroSync segment and semaphore."""
    out = []
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return []
    for name in sorted(names):
        m = _NAME_RE.match(name)
        if m:
            out.append((name, int(m.group(1))))
    return out


def in_use(paths: set[str]) -> set[str]:
    """Which of these /dev/shm paths some process maps or holds open."""
    used: set[str] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    path = line.rstrip("\n").split(None, 5)[-1]
                    path = path.removesuffix(" (deleted)")
                    if path in paths:
                        used.add(path)
        except OSError:
            pass
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target in paths:
                    used.add(target)
        except OSError:
            pass
    return used


def cleanup_stale(dry_run: bool = False, shm_dir: str = "/dev/shm", tmp_dir: str | None = None) -> list[str]:
    """Remove stale project objects -- and the temporary files of runs whose owner is
    gone (a worker's backing file left by a killed worker or coordinator); returns the
    file names removed (or that would be)."""
    candidates = [(n, pid) for n, pid in find_project_objects(shm_dir) if not proc_alive(pid)]
    tmp = tmp_dir if tmp_dir is not None else tempfile.gettempdir()
    files = [(n, pid) for n, pid in _run_files(tmp) if not proc_alive(pid)]
    if not candidates and not files:
        return []
    paths = {os.path.join(shm_dir, n): n for n, _ in candidates}
    tpaths = {os.path.join(tmp, n): n for n, _ in files}
    busy = in_use(set(paths) | set(tpaths))
    removed = []
    for path, name in paths.items():
        if path in busy:
            continue
        if not dry_run and not _unlink(name):
            continue
        removed.append(name)
    for path, name in tpaths.items():
        if path in busy:
            continue
        if not dry_run:
            try:
                os.unlink(path)
            except OSError:
                continue
        removed.append(name)
    return removed


def _run_files(tmp_dir: str) -> list[tuple[str, int]]:
    """(file name in tmp_dir, owner pid) of every run's temporary file."""
    try:
        names = os.listdir(tmp_dir)
    except OSError:
        return []
    return [(n, int(m.group(1))) for n in sorted(names) if (m := _TMP_RE.match(n))]


def remove_run_files(arena_name: str, tmp_dir: str | None = None) -> list[str]:
    """Unlink the temporary files of the run of arena `arena_name` (at its end: a worker
    killed before its teardown leaves its own behind); returns the names removed."""
    tmp = tmp_dir if tmp_dir is not None else tempfile.gettempdir()
    out = []
    for n in sorted(os.listdir(tmp)):
        if n.startswith(TMP_PREFIX) and f"-{arena_name}-" in n:
            try:
                os.unlink(os.path.join(tmp, n))
            except OSError:
                continue
            out.append(n)
    return out


def remove_own(pid: int | None = None, shm_dir: str = "/dev/shm") -> list[str]:
    """Unlink every project object named after `pid` (default: this process, their creator).

    The last net of an interrupted command (cli.py): by then its own `finally` blocks
    have run, so whatever still carries its pid is a leftover nobody else will remove
    while it lives.  Mappings stay valid until closed; returns the names removed.
    """
    me = os.getpid() if pid is None else pid
    return [n for n, owner in find_project_objects(shm_dir) if owner == me and _unlink(n)]


def _unlink(name: str) -> bool:
    try:
        if name.startswith("sem."):
            posix_ipc.unlink_semaphore("/" + name[4:])
        else:
            posix_ipc.unlink_shared_memory("/" + name)
    except posix_ipc.ExistentialError:
        return False
    return True
