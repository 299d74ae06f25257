"""The oops path every detector shares: the exception, the report sink, call sites.

Models: what mm/kasan/report.c, mm/kfence/report.c, arch/x86/kernel/traps.c
(handle_stack_overflow, die) and kernel/panic.c (__stack_chk_fail) have in common --
the "====" frame, "CPU: N PID: P Comm: C" (dump_stack_print_info), a Call Trace of
"%pS" frames -- and the taint/oops that ends the offending kernel path.  Unit: one report.

A detector that catches a bug builds its report text and calls `oops(arena, kind,
text)`: the text goes to the report sink (stderr by default; `set_console(False)`
keeps it quiet, as the bug corpus does), into this process's recent reports (tests and
the corpus read them: `recent()`), and the machine's counter of that kind is bumped
(section "sanhdr", summed by the coordinator into the run's result); then KernelBug is
raised.  The faulting simulated kernel path stops there -- the bad access, free or
return is not performed -- as an oops kills the task that hit it (and as
kasan.fault=panic_on_write does for KASAN's writes; reads are stopped too here, so the
arena is never corrupted by a bug a detector saw).  Kinds (BUG_KINDS): kasan, kfence,
stack-overflow, stack-protector, freelist (SLAB_FREELIST_HARDENED), oops (a kernel
access to an unmapped address), vfree (a vfree of no area: a WARN, not an oops --
`warn()` reports it without raising).

Call sites: `call_trace()` names the simulated kernel's frames as %pS does,
"func+0x<bytecode offset>/0x<bytecode size>", skipping the frames of the allocator
and the detectors (mm/slab, mm/san, mm/pmm, the kernel access path) the way
get_stack_skipnr skips kfence_/kmem_cache_ frames; `call_site()` is the first of them.

Section "sanhdr" (one page): per kind a u64 counter (atomic fetch_add, any CPU), then
the KFENCE pool's lock slot and counters (kfence.py).
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.errors import AeroSyncError
from aerosync.params import PAGE_SIZE

__all__ = ["KernelBug", "BUG_KINDS", "oops", "warn", "recent", "emitted", "clear_recent", "set_console", "call_trace",
           "call_site", "cpu_line", "SAN_HDR", "sanhdr_section", "bug_counts", "H_KFENCE", "stack_handle",
           "stack_tracker"]

BUG_KINDS = ("kasan", "kfence", "stack-overflow", "stack-protector", "freelist", "oops", "vfree")
H_KFENCE = 8 * 16          # kfence.py's words in "sanhdr" start here
SAN_HDR = PAGE_SIZE
_MAX_RECENT = 256

_SKIP_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) + os.sep
                   for d in ("slab", "san", "pmm"))
_SKIP_FILES = frozenset(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vm", f)
                        for f in ("kaccess.py", "vmalloc.py", "kstack.py", "kernel.py"))
_skip_code: dict[CodeType, bool] = {}
_recent: collections.deque[tuple[str, str]] = collections.deque(maxlen=_MAX_RECENT)
_console = [True]
_emitted = [0]


class KernelBug(AeroSyncError):
    """A simulated kernel path was stopped by a detector: `kind` (BUG_KINDS), `report`
    (the kernel-format text), `bug` (the detector's bug type, e.g. "slab-use-after-free")."""

    def __init__(self, kind: str, report: str, bug: str = "") -> None:
        self.kind, self.report, self.bug = kind, report, bug or kind
        first = next((ln for ln in report.splitlines() if ln.startswith(("BUG", "Kernel panic", "kernel BUG"))),
                     report.splitlines()[1] if report.count("\n") else report)
        super().__init__(first)


def sanhdr_section() -> SectionSpec:
    return SectionSpec("sanhdr", SAN_HDR)


def set_console(on: bool) -> bool:
    """Print reports to stderr (the default) or not; returns the previous setting."""
    old = _console[0]
    _console[0] = on
    return old


def recent() -> list[tuple[str, str]]:
    """(kind, text) of this process's latest reports, oldest first."""
    return list(_recent)


def emitted() -> int:
    """Reports this process emitted so far (recent() keeps only the last ones)."""
    return _emitted[0]


def clear_recent() -> None:
    _recent.clear()


def _emit(arena: Any, kind: str, text: str) -> None:
    _recent.append((kind, text))
    _emitted[0] += 1
    if "sanhdr" in arena.sections and kind in BUG_KINDS:
        arena.atomic.fetch_add64(arena.off("sanhdr") + 8 * BUG_KINDS.index(kind), 1)
    if _console[0]:
        print(text, file=sys.stderr, flush=True)


def oops(arena: Any, kind: str, text: str, bug: str = "") -> KernelBug:
    """Report and return the KernelBug to raise (`raise oops(...)`)."""
    _emit(arena, kind, text)
    return KernelBug(kind, text, bug)


def warn(arena: Any, kind: str, text: str) -> None:
    """A WARN: reported and counted, the caller carries on."""
    _emit(arena, kind, text)


def bug_counts(arena: Any) -> dict[str, int]:
    """Reports per kind over the machine's life (all CPUs)."""
    if "sanhdr" not in arena.sections:
        return {}
    o = arena.off("sanhdr")
    return {k: arena.u64[(o >> 3) + i] for i, k in enumerate(BUG_KINDS)}


def _skipped(code: CodeType) -> bool:
    s = _skip_code.get(code)
    if s is None:
        f = code.co_filename
        s = _skip_code[code] = f.startswith(_SKIP_DIRS) or f in _SKIP_FILES
    return s


def _frame_text(f: FrameType) -> str:
    co = f.f_code
    return f"{co.co_name}+{max(f.f_lasti, 0):#x}/{len(co.co_code):#x}"


def call_trace(depth: int = 8) -> list[str]:
    """The simulated kernel's frames (innermost first), allocator/detector frames skipped."""
    f: FrameType | None = sys._getframe(1)
    out: list[str] = []
    while f is not None and len(out) < depth:
        if not _skipped(f.f_code):
            out.append(_frame_text(f))
        f = f.f_back
    return out


# stack_handle's caches, keyed by id() of code objects: hashing a code object hashes its
# name, bytecode and constants (no cached hash), which cost more than the whole walk.  An
# id is never reused while the code object lives, and _skip_by_id keeps every code object
# it has seen alive, so a key cannot come to mean another frame.
_skip_by_id: dict[int, tuple[CodeType, bool]] = {}
_handles: dict[tuple[Any, ...], int] = {}
skip_ids: dict[int, bool] = {}              # stack_tracker's: id(code) -> skipped (code kept in _skip_by_id)
_skip_files: set[str] = set()               # track()'s: file names seen, and those whose frames are skipped
_known_files: set[str] = set()


def stack_handle(arena: Any, depth: int = 2) -> int:
    """stack_depot_save() of the simulated kernel's `depth` innermost frames (joined by
    ";", cut to a depot record): the handle KASAN and KFENCE keep in their tracks.
    Cached per (arena, frames' code and offset), so a site seen before costs a frame walk
    and a dict lookup -- a track is saved on every allocation and free they watch."""
    f: FrameType | None = sys._getframe(1)
    key: list[Any] = [id(arena), arena.name]      # the name: an id may be reused by a later arena
    skip_get = _skip_by_id.get
    n = 0
    while f is not None:
        co = f.f_code
        s = skip_get(id(co))
        if s is None:
            s = _skip_by_id[id(co)] = (co, _skipped(co))
        if not s[1]:
            key.append(id(co))
            key.append(f.f_lasti)
            n += 1
            if n == depth:
                break
        f = f.f_back
    k = tuple(key)
    h = _handles.get(k)
    if h is None:
        h = _handles[k] = _depot_save_frames(arena, depth)
    return h


def stack_tracker(arena: Any, depth: int = 2) -> Callable[..., int]:
    """stack_handle() bound to one arena, for a detector's hot path: `track(up=0)` returns
    the depot handle of the simulated kernel's `depth` innermost frames outside the
    allocator and the detectors, above its caller (a detector frame, skipped anyway).
    `up`: how many frames from the detector's caller on are known allocator frames --
    skipped anyway, so the walk starts past them without visiting them.

    What it saves per call, as KFENCE's kfence_save_track saves raw entries and formats
    them only when a report prints: the raw frames -- (code id, bytecode offset) of the
    first `depth` frames outside the allocator and the detectors -- are the key of a
    per-arena dict; the record's text is built and stored in the depot only the first
    time a key is seen.  The walk starts at sys._getframe(2 + up) (the C walk passes the
    frames below without creating frame objects; each frame visited after it is made
    into one) and tests each frame's file name (a str, its hash cached) against the set
    of skipped files -- what _skipped decides by -- so a skipped frame costs two
    attribute loads and a set lookup; no list, no arena key per call.  Files are
    classified the first time they are seen: a key found in the dict was made from two
    classified files (and the walk skipped only files classified as skipped), so a hit
    needs no check; a miss checks both and walks again after classifying them.  The key
    last found is kept (its code objects, compared by identity): a site sampled again --
    a detector keeps one tracker per kind of track -- costs four compares, no hash."""
    handles: dict[tuple[int, ...], int] = {}
    keep = _skip_by_id
    getframe = sys._getframe

    def learn(co: CodeType) -> bool:
        s = keep[id(co)] = (co, _skipped(co))
        skip_ids[id(co)] = s[1]
        return s[1]

    skip_get = skip_ids.get
    skip_files, known_files = _skip_files, _known_files

    def learn_file(fn: str) -> None:
        if fn.startswith(_SKIP_DIRS) or fn in _SKIP_FILES:
            skip_files.add(fn)
        known_files.add(fn)

    def slow(up: int = 0) -> int:
        """Any depth: every frame from the detector's caller on is visited (`up`, a
        shortcut, is not needed for a right answer)."""
        k: list[int] = []
        f: FrameType | None = getframe(2)
        while f is not None and len(k) < 2 * depth:
            co = f.f_code
            s = skip_get(id(co))
            if s is None:
                s = learn(co)
            if not s:
                k += (id(co), f.f_lasti)
            f = f.f_back
        key = tuple(k)
        h = handles.get(key)
        if h is None:
            h = handles[key] = _depot_save_frames(arena, depth, 3)
        return h

    if depth != 2:
        return slow

    m_c1: Any = None                       # the last key seen (code, lasti, code, lasti) and its handle:
    m_l1 = m_l2 = m_h = -1                 # a call site sampled again is compared, not hashed
    m_c2: Any = None

    def track(up: int = 0) -> int:
        nonlocal m_c1, m_l1, m_c2, m_l2, m_h
        while True:
            try:
                f = getframe(2 + up)
                while f.f_code.co_filename in skip_files:
                    f = f.f_back
                g = f.f_back
                while g.f_code.co_filename in skip_files:
                    g = g.f_back
            except (AttributeError, ValueError):   # the stack ran out before two frames
                return slow()
            c1, c2, l1, l2 = f.f_code, g.f_code, f.f_lasti, g.f_lasti
            if c1 is m_c1 and l1 == m_l1 and c2 is m_c2 and l2 == m_l2:
                return m_h
            h = handles.get((id(c1), l1, id(c2), l2))
            if h is not None:
                m_c1, m_l1, m_c2, m_l2, m_h = c1, l1, c2, l2, h
                return h
            if c1.co_filename in known_files and c2.co_filename in known_files:
                break
            learn_file(c1.co_filename)             # a file seen for the first time: classify, walk again
            learn_file(c2.co_filename)
        keep[id(c1)], keep[id(c2)] = (c1, _skipped(c1)), (c2, _skipped(c2))   # ids in keys stay valid
        h = handles[(id(c1), l1, id(c2), l2)] = _depot_save_frames(arena, 2, 2)
        return h

    return track


def _depot_save_frames(arena: Any, depth: int, up: int = 2) -> int:
    """The depot record of stack_handle's frames (its caller's caller on): a cache miss."""
    from aerosync.mm.slab.slab_debug import depot_save

    f: FrameType | None = sys._getframe(up)
    frames: list[FrameType] = []
    while f is not None and len(frames) < depth:
        if not _skipped(f.f_code):
            frames.append(f)
        f = f.f_back
    return depot_save(arena, ";".join(_frame_text(fr) for fr in frames)[:64])[0]


def call_site() -> str:
    """The first frame outside the allocator and the detectors, as %pS ("?" if none)."""
    f: FrameType | None = sys._getframe(1)
    while f is not None:
        if not _skipped(f.f_code):
            return _frame_text(f)
        f = f.f_back
    return "?"


def cpu_line(cpu: int, comm: str, pid: int) -> str:
    """dump_stack_print_info()'s first line."""
    return f"CPU: {cpu} UID: 0 PID: {pid} Comm: {comm} Not tainted 6.19.0-aerosync #1"
