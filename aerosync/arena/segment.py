"""Create, attach, close and unlink the arena segment; the only owner of its views.

Models: nothing in the kernel; this is the "physical machine" the simulated kernel runs on.

Lifetimes (two verbs, as in multiprocessing.shared_memory):
  * the coordinator `create()`s the segment and is the only process that `unlink()`s it;
  * workers, tests and a second `aerosync` command `attach()` and only ever `close()`.

Why the resource tracker is kept out (python-shm-pitfalls.md 1.1-1.4): on 3.11-3.12 every
SharedMemory(...) registers with a resource tracker that unlinks the segment when that
process tree exits, so an attaching `aerosync stat` or pytest-xdist worker would destroy a
live run.  We suppress registration at create *and* attach (track=False on 3.13+) and
never "register then unregister", which would break the creator.  Stale segments after a
SIGKILL are the job of `cleanup_stale()`.

Why `posix_fallocate`: ftruncate gives a sparse file and a too-small /dev/shm shows up as
SIGBUS on first touch; reserving up front turns that into a clear error.

Semaphores (layout.py "Named semaphores"): the arena also owns the named POSIX
semaphores its configuration asks for (the queued spinlock's per-node wake-ups).
`create()` makes them after the header (their count is in it), `unlink()` removes them
with the segment, so every path that unlinks the segment -- the coordinator's
`finally` on errors, Ctrl-C and SIGTERM, the tests' fixtures -- removes them too;
`semaphore(i)` opens one on first use in this process and `close()` closes them.

Views: every memoryview, numpy array and AtomicOps over the segment is made here and
released in `close()` before the mapping is closed (a live export makes close() raise
BufferError; an `np.ndarray(buffer=...)` would segfault after close, so only
np.frombuffer is used).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import threading
import time
import weakref
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import posix_ipc

from aerosync.arch.atomic import AtomicOps
from aerosync.arena import layout as L
from aerosync.errors import ArenaError, ArenaMismatch, ArenaNotFound, ShmSpaceError
from aerosync.params import ARENA_MAGIC, LAYOUT_VERSION, PAGE_SIZE, SHM_PREFIX

__all__ = ["Arena", "shm_free_bytes", "new_name", "SHM_DIR"]

SHM_DIR = "/dev/shm"
SHM_MARGIN = 16 << 20   # leave this much of /dev/shm for everyone else

_reg_lock = threading.Lock()


def new_name(tag: str = "") -> str:
    """aerosync_<pid>_<tag><random>: the pid lets `cleanup` find the owner."""
    return f"{SHM_PREFIX}{os.getpid()}_{tag}{secrets.token_hex(4)}"


def shm_free_bytes(path: str = SHM_DIR) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _open_untracked(name: str, create: bool, size: int = 0) -> SharedMemory:
    """SharedMemory without resource-tracker registration (pitfalls 1.4)."""
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, create=create, size=size, track=False)  # type: ignore[call-arg]
    with _reg_lock:  # the patch is process-global
        orig = resource_tracker.register

        def register(rname: str, rtype: str) -> None:
            if rtype != "shared_memory":
                orig(rname, rtype)

        resource_tracker.register = register  # type: ignore[assignment]
        try:
            return SharedMemory(name=name, create=create, size=size)
        finally:
            resource_tracker.register = orig  # type: ignore[assignment]


def _unlink_name(name: str) -> None:
    """Unlink without SharedMemory.unlink(), which sends a stray UNREGISTER before 3.13."""
    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_shared_memory("/" + name)


def _proc_starttime(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


class Arena:
    """One mapped arena segment.  Not thread-safe to close while in use."""

    __slots__ = (
        "name", "size", "owner", "_shm", "buf", "u64", "i64", "u32", "u8", "atomic",
        "sections", "config", "config_hash", "_arrays", "_views", "nr_sems", "_sems", "__weakref__",
    )

    def __init__(self, shm: SharedMemory, owner: bool) -> None:
        self._shm = shm
        self.name: str = shm.name
        self.owner = owner
        self.buf: memoryview = shm.buf
        self.size = len(shm.buf) // PAGE_SIZE * PAGE_SIZE
        # Whole-arena typed views: hot paths index them by off >> 3 (or >> 2).
        self.u64 = self.buf[: self.size].cast("Q")
        self.i64 = self.buf[: self.size].cast("q")     # signed counters (per-CPU deltas)
        self.u32 = self.buf[: self.size].cast("I")
        self.u8 = self.buf[: self.size]
        self.atomic = AtomicOps(self.buf[: self.size])
        self._arrays: list[weakref.ref[Any]] = []
        self._views: list[memoryview] = [self.u64, self.i64, self.u32, self.u8]
        self.sections: dict[str, tuple[int, int]] = {}
        self.config: dict[str, Any] = {}
        self.config_hash = 0
        self.nr_sems = 0
        self._sems: dict[int, posix_ipc.Semaphore] = {}

    # ------------------------------------------------------------------ create/attach
    @classmethod
    def create(cls, config: dict[str, Any], specs: list[L.SectionSpec], name: str | None = None) -> Arena:
        """Create and map a new segment laid out from `specs`; header filled, sections zero.

        Fails with ShmSpaceError (nothing created) when /dev/shm lacks room, and unlinks
        the half-made segment on any later failure.
        """
        lay = L.build_layout(specs)
        blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        if len(blob) > L.HEADER_SIZE - L.CONFIG_OFF:
            raise ArenaError(f"Arena.create: configuration JSON is {len(blob)} bytes, too large for the header")
        free = shm_free_bytes()
        need = lay.total + L.nr_semaphores(config) * PAGE_SIZE    # a named semaphore is a tmpfs page
        if need + SHM_MARGIN > free:
            raise ShmSpaceError(SHM_DIR, need, free)
        name = name or new_name()
        try:
            shm = _open_untracked(name, create=True, size=lay.total)
        except FileExistsError:
            raise ArenaError(f"Arena.create: segment {name!r} already exists") from None
        try:
            fd = shm._fd  # type: ignore[attr-defined]
            try:
                os.posix_fallocate(fd, 0, lay.total)
            except OSError as e:
                raise ShmSpaceError(SHM_DIR, lay.total, shm_free_bytes()) from e
            arena = cls(shm, owner=True)
        except BaseException:
            shm.close()
            _unlink_name(name)
            raise
        try:
            arena._write_header(lay, config, blob)
            arena._create_sems(L.nr_semaphores(config))
        except BaseException:
            arena.close()
            arena.unlink()
            raise
        return arena

    def _create_sems(self, n: int) -> None:
        """Make the arena's semaphores (value 0).  The count goes in the header first (a
        sweep after a crash half-way finds them by the owner pid in their names anyway)."""
        self.u64[L.H_NR_SEMS >> 3] = n
        self.nr_sems = n
        for i in range(n):
            try:
                self._sems[i] = posix_ipc.Semaphore(L.sem_name(self.name, i), posix_ipc.O_CREX,
                                                    mode=0o600, initial_value=0)
            except posix_ipc.ExistentialError:
                self.nr_sems = i                    # unlink() removes only the ones we made
                raise ArenaError(f"Arena.create: semaphore {L.sem_name(self.name, i)!r} already exists") from None

    def _write_header(self, lay: L.Layout, config: dict[str, Any], blob: bytes) -> None:
        q, d = self.u64, self.u32
        pid = os.getpid()
        d[L.H_VERSION >> 2] = LAYOUT_VERSION
        d[L.H_PAGE_SIZE >> 2] = PAGE_SIZE
        q[L.H_TOTAL >> 3] = lay.total
        q[L.H_CONFIG_HASH >> 3] = L.config_hash(config)
        q[L.H_OWNER_PID >> 3] = pid
        q[L.H_OWNER_START >> 3] = _proc_starttime(pid)
        q[L.H_CREATED >> 3] = time.time_ns()
        d[L.H_NR_SECTIONS >> 2] = len(lay.sections)
        d[L.H_CONFIG_LEN >> 2] = len(blob)
        for i, (sname, (off, size)) in enumerate(lay.sections.items()):
            e = L.SECTION_TABLE + i * L.SECTION_ENTRY
            self.u8[e : e + 16] = sname.encode().ljust(16, b"\0")
            q[(e + 16) >> 3] = off
            q[(e + 24) >> 3] = size
        self.u8[L.CONFIG_OFF : L.CONFIG_OFF + len(blob)] = blob
        # Magic last, with release order: an attacher that sees it sees a whole header.
        self.atomic.store64(L.H_MAGIC, ARENA_MAGIC)
        self._read_header()

    @classmethod
    def attach(cls, name: str, expect_hash: int | None = None) -> Arena:
        """Map an existing segment after validating its header; never registers a tracker."""
        try:
            shm = _open_untracked(name, create=False)
        except FileNotFoundError:
            raise ArenaNotFound(name, SHM_DIR) from None
        if shm.size < L.HEADER_SIZE:
            shm.close()
            raise ArenaMismatch(name, "size", f">= {L.HEADER_SIZE}", shm.size)
        arena = cls(shm, owner=False)
        try:
            arena._check_header(expect_hash)
            arena._read_header()
        except BaseException:
            arena.close()
            raise
        return arena

    def _check_header(self, expect_hash: int | None) -> None:
        q, d = self.u64, self.u32
        # The creator stores the magic last: a zero magic may be a header being written.
        deadline = time.monotonic() + 2.0
        while self.atomic.load64(L.H_MAGIC) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        checks = [
            ("magic", ARENA_MAGIC, self.atomic.load64(L.H_MAGIC)),
            ("layout_version", LAYOUT_VERSION, d[L.H_VERSION >> 2]),
            ("page_size", PAGE_SIZE, d[L.H_PAGE_SIZE >> 2]),
        ]
        if expect_hash is not None:
            checks.append(("config_hash", f"{expect_hash:#018x}", f"{q[L.H_CONFIG_HASH >> 3]:#018x}"))
        for field, want, got in checks:
            if want != got:
                raise ArenaMismatch(self.name, field, want, got)
        if q[L.H_TOTAL >> 3] > len(self.buf):
            raise ArenaMismatch(self.name, "total_size", f"<= {len(self.buf)}", q[L.H_TOTAL >> 3])

    def _read_header(self) -> None:
        q, d = self.u64, self.u32
        self.sections = {}
        for i in range(d[L.H_NR_SECTIONS >> 2]):
            e = L.SECTION_TABLE + i * L.SECTION_ENTRY
            sname = bytes(self.u8[e : e + 16]).rstrip(b"\0").decode()
            self.sections[sname] = (q[(e + 16) >> 3], q[(e + 24) >> 3])
        n = d[L.H_CONFIG_LEN >> 2]
        self.config = json.loads(bytes(self.u8[L.CONFIG_OFF : L.CONFIG_OFF + n]))
        self.config_hash = q[L.H_CONFIG_HASH >> 3]
        self.nr_sems = q[L.H_NR_SEMS >> 3]

    # ------------------------------------------------------------------ header facts
    @property
    def owner_pid(self) -> int:
        return self.u64[L.H_OWNER_PID >> 3]

    @property
    def owner_starttime(self) -> int:
        return self.u64[L.H_OWNER_START >> 3]

    @property
    def created_ns(self) -> int:
        return self.u64[L.H_CREATED >> 3]

    def off(self, section: str) -> int:
        """Byte offset of a section (KeyError names the known ones)."""
        try:
            return self.sections[section][0]
        except KeyError:
            raise KeyError(f"arena {self.name}: no section {section!r}; has {sorted(self.sections)}") from None

    # ------------------------------------------------------------------ views
    def array(self, section: str, dtype: Any, count: int = -1, offset: int = 0) -> np.ndarray:
        """A numpy view of (part of) a section, for bulk work: init, checker, stats.

        Not for per-operation access on hot paths (DESIGN.md: ~130 ns per scalar update).
        """
        off, size = self.sections[section]
        dt = np.dtype(dtype)
        if count < 0:
            count = (size - offset) // dt.itemsize
        if offset + count * dt.itemsize > size:
            raise ValueError(f"Arena.array: {count} x {dt} at +{offset} overruns section {section} ({size} B)")
        arr = np.frombuffer(self.buf, dtype=dt, count=count, offset=off + offset)
        self._arrays.append(weakref.ref(arr))
        return arr

    def view(self, off: int, size: int) -> memoryview:
        """A byte memoryview of [off, off+size).

        Not tracked (a per-operation view kept in a list would never be freed): drop it,
        or use it as `with arena.view(...) as mv:`, before `close()`, which otherwise
        refuses with ArenaError because the mapping is still exported.
        """
        return self.buf[off : off + size]

    def semaphore(self, i: int) -> posix_ipc.Semaphore:
        """The arena's i-th named semaphore, opened on first use in this process.

        Thread-safe enough: two threads racing to open one both get a working handle (the
        loser's is closed); handles are closed by `close()`.
        """
        sem = self._sems.get(i)
        if sem is None:
            if not 0 <= i < self.nr_sems:
                raise ArenaError(f"Arena.semaphore: {self.name} has {self.nr_sems} semaphores, no #{i}")
            try:
                sem = posix_ipc.Semaphore(L.sem_name(self.name, i))
            except posix_ipc.ExistentialError:
                raise ArenaError(f"Arena.semaphore: {L.sem_name(self.name, i)!r} is gone "
                                 "(the arena was unlinked)") from None
            other = self._sems.setdefault(i, sem)
            if other is not sem:
                sem.close()
                sem = other
        return sem

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Release every view this arena handed out, then unmap.  Idempotent.

        Refuses (ArenaError, nothing released) while numpy arrays from `array()` are
        alive: np.frombuffer keeps its own memoryview, and unmapping under it would
        leave the array pointing at nothing.
        """
        if self._shm is None:
            return
        if any(r() is not None for r in self._arrays):
            import gc

            gc.collect()  # arrays reachable only from cycles or saved tracebacks
            alive = sum(r() is not None for r in self._arrays)
            if alive:
                raise ArenaError(f"Arena.close: {self.name}: {alive} numpy views still alive; "
                                 "drop them before closing")
        self.atomic.close()
        for sem in self._sems.values():
            with contextlib.suppress(posix_ipc.Error):
                sem.close()
        self._sems.clear()
        for mv in self._views:
            mv.release()
        self._views.clear()
        self._arrays.clear()
        shm, self._shm = self._shm, None
        self.buf.release()
        try:
            shm.close()
        except BufferError as e:
            raise ArenaError(f"Arena.close: {self.name}: a memoryview of the arena is still exported") from e

    def unlink(self) -> None:
        """Remove the name and the arena's semaphores (creator only); mappings and open
        semaphores stay valid until closed."""
        _unlink_name(self.name)
        for i in range(self.nr_sems):
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_semaphore(L.sem_name(self.name, i))

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owner:      # first: a refused close must not leak the name
            self.unlink()
        self.close()
