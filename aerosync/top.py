"""`aerosync top`, `run --live` and the run progress bar: the arena seen while it runs.

What: a refreshing screen (rich.Live) with, per simulated CPU, ops/s (the delta of the
published CPU_OPS word over the refresh interval), state, pid, host CPU, heartbeat age
and the lock it waits on; the top contended lock classes (contentions/s, average wait,
acquisitions/s: deltas of `lockstat.snapshot`); and whatever subsystem panels apply to
this arena (free memory per node and zone, top slab caches).  slabtop and top in one
screen.

Why read-only attach: `top` is a second process on someone else's arena.  It attaches
untracked (Arena.attach) and only ever closes, never unlinks, so quitting it (Ctrl-C)
cannot harm the run; figures are racy but untorn, as /proc's are.

Panels hook — how a subsystem adds its own panel::

    from aerosync import top

    def my_panel(arena: Arena) -> RenderableType | None:
        if "mysection" not in arena.sections:
            return None                    # not this arena: the panel is skipped
        return rich.table.Table(...)       # any rich renderable

    top.extra_panels.append(my_panel)

A panel is called once per refresh with the attached arena, must only read it, should
be cheap (milliseconds), and returns None when the arena lacks its sections.  A panel
that raises is shown as a one-line error instead of killing the view.  `zones_panel`
and `slab_panel` below are the built-in ones.

`LiveRun` (for `aerosync run --live`) and `ProgressBar` (every long run) are the same
display driven by the coordinator's `on_tick` / `on_sample` callbacks; both do nothing
when stdout is not a terminal, so piped output and `--json` stay clean.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.errors import UsageError
from aerosync.params import CPU_AREA_SIZE
from aerosync.sync import lockstat

__all__ = [
    "PanelFn",
    "extra_panels",
    "zones_panel",
    "slab_panel",
    "TopView",
    "LiveRun",
    "ProgressBar",
    "live_arenas",
    "only_live_arena",
    "add_top_parser",
    "cmd_top",
]

PanelFn = Callable[[Arena], RenderableType | None]
DEFAULT_INTERVAL = 1.0
TOP_LOCKS = 8
TOP_SLABS = 10
_RUN_STATES = {L.RUN_INIT: "init", L.RUN_GO: "running", L.RUN_STOP: "stopping", L.RUN_ABORT: "aborted"}


# ----------------------------------------------------------------------------- panels
def zones_panel(arena: Arena) -> RenderableType | None:
    """Free pages per node and zone (needs the page allocator's `mmzones` section)."""
    if "mmzones" not in arena.sections:
        return None
    from aerosync.mm.pmm import mmzone

    first = mmzone.zone_info(arena, 0)
    t = Table(title="free memory per node and zone", expand=False)
    for col in ("node", "zone", "free pages", "free MiB", "managed", "free %", "min", "low", "high"):
        t.add_column(col, justify="left" if col == "zone" else "right")
    page_kib = 4
    for zid in range(int(first["nr_zones"])):
        z = mmzone.zone_info(arena, zid)
        if not z["present"]:
            continue
        free, managed = int(z["nr_free_pages"]), int(z["managed"])
        t.add_row(str(z["nid"]), str(z["name"]), f"{free:,}", f"{free * page_kib / 1024:.1f}", f"{managed:,}",
                  f"{100 * free / managed:.1f}" if managed else "-", str(z["min"]), str(z["low"]), str(z["high"]))
    return t


def slab_panel(arena: Arena) -> RenderableType | None:
    """Top slab caches by memory, from the `slabinfo` view once SLUB registers one.

    Reads `aerosync.procfs.VIEWS["slabinfo"]`'s JSON twin: a list of dicts with at least
    name, active_objs, num_objs, objsize (slabinfo 2.1's columns).
    """
    from aerosync import procfs

    if "slabinfo" not in procfs.VIEWS:
        return None
    try:
        rows = procfs.render_json(arena, "slabinfo")
    except KeyError:
        return None
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: -int(r.get("num_objs", 0)) * int(r.get("objsize", 0)))[:TOP_SLABS]
    t = Table(title="top slab caches (by size)")
    for col in ("cache", "active objs", "objs", "use %", "obj size", "KiB"):
        t.add_column(col, justify="left" if col == "cache" else "right")
    for r in rows:
        act, num, size = int(r.get("active_objs", 0)), int(r.get("num_objs", 0)), int(r.get("objsize", 0))
        t.add_row(str(r.get("name", "?")), f"{act:,}", f"{num:,}", f"{100 * act / num:.0f}" if num else "-",
                  str(size), f"{num * size / 1024:,.0f}")
    return t


extra_panels: list[PanelFn] = [zones_panel, slab_panel]


# ----------------------------------------------------------------------------- the view
@dataclass
class _Snap:
    t: float
    ops: list[int]
    locks: dict[str, lockstat.LockStat]


def _cpu_word(arena: Arena, cpu: int, field_off: int) -> int:
    return arena.u64[(arena.off("cpu") + cpu * CPU_AREA_SIZE + field_off) >> 3]


def _nr_cpus(arena: Arena) -> int:
    n = int(arena.config.get("nr_cpus", 0))
    return n or arena.sections["cpu"][1] // CPU_AREA_SIZE


def _take(arena: Arena) -> _Snap:
    n = _nr_cpus(arena)
    locks = {s.lock_class: s for s in lockstat.aggregate_by_class(lockstat.snapshot(arena))}
    return _Snap(time.monotonic(), [_cpu_word(arena, c, L.CPU_OPS) for c in range(n)], locks)


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


@dataclass
class TopView:
    """Renders frames of one arena; rates are deltas against the previous frame."""

    panels: list[PanelFn] = field(default_factory=lambda: extra_panels)
    max_locks: int = TOP_LOCKS
    _prev: _Snap | None = None

    def prime(self, arena: Arena) -> None:
        """Take the baseline snapshot that the next `render` computes rates against."""
        self._prev = _take(arena)

    def render(self, arena: Arena) -> RenderableType:
        snap = _take(arena)
        prev, self._prev = self._prev, snap
        dt = snap.t - prev.t if prev is not None else 0.0
        parts: list[RenderableType] = [self._header(arena, snap, dt), self._cpus(arena, snap, prev, dt),
                                       self._locks(snap, prev, dt)]
        for panel in self.panels:
            try:
                r = panel(arena)
            except Exception as e:   # a broken panel must not take the whole view down
                r = Text(f"panel {getattr(panel, '__name__', panel)!s} failed: {e!r}", style="red")
            if r is not None:
                parts.append(r)
        return Group(*parts)

    def _header(self, arena: Arena, snap: _Snap, dt: float) -> RenderableType:
        q = arena.u64
        state = _RUN_STATES.get(q[L.H_RUN_STATE >> 3], "?")
        start = q[L.H_START_NS >> 3]
        up = f"{(time.monotonic_ns() - start) / 1e9:.1f} s" if start and state == "running" else "-"
        total = sum(snap.ops)
        rate = "" if not dt else f" (interval {dt:.2f} s)"
        return Text(f"aerosync top: arena {arena.name}  owner pid {arena.owner_pid}  workload "
                    f"{arena.config.get('workload', '?')}  run {state}  up {up}  total ops {total:,}{rate}",
                    style="bold")

    def _cpus(self, arena: Arena, snap: _Snap, prev: _Snap | None, dt: float) -> RenderableType:
        t = Table(title="simulated CPUs")
        for col in ("cpu", "state", "pid", "host", "ops/s", "ops", "heartbeat", "waiting on"):
            t.add_column(col, justify="left" if col in ("state", "waiting on") else "right")
        now = time.monotonic_ns()
        for c, ops in enumerate(snap.ops):
            st = _cpu_word(arena, c, L.CPU_STATE)
            hb = _cpu_word(arena, c, L.CPU_HEARTBEAT)
            rate = (ops - prev.ops[c]) / dt if prev is not None and dt > 0 and c < len(prev.ops) else None
            waiting = _cpu_word(arena, c, L.CPU_WAITING_ON)
            wname = "{}[{}]".format(*lockstat.slot_names(arena, waiting - 1)) if waiting else ""
            t.add_row(str(c), L.CPUST_NAMES[st] if st < len(L.CPUST_NAMES) else str(st),
                      str(_cpu_word(arena, c, L.CPU_PID)), str(_cpu_word(arena, c, L.CPU_HOST_CPU)),
                      _fmt_rate(rate), f"{ops:,}", f"{(now - hb) / 1e9:.2f} s" if hb and hb <= now else "-", wname)
        return t

    def _locks(self, snap: _Snap, prev: _Snap | None, dt: float) -> RenderableType:
        t = Table(title="top contended lock classes")
        for col in ("class", "inst", "contentions/s", "wait-avg us", "acquisitions/s", "con %",
                    "contentions", "acquisitions"):
            t.add_column(col, justify="left" if col == "class" else "right")
        rows = []
        for cls, s in snap.locks.items():
            p = prev.locks.get(cls) if prev is not None else None
            con, acq = s.contentions + s.r_contentions, s.acquisitions + s.r_acquisitions
            wait = s.wait_total + s.r_wait_total
            if p is not None and dt > 0:
                dcon = con - (p.contentions + p.r_contentions)
                dacq = acq - (p.acquisitions + p.r_acquisitions)
                dwait = wait - (p.wait_total + p.r_wait_total)
                rows.append((dcon / dt, cls, s.instances, dwait / dcon / 1000 if dcon else 0.0, dacq / dt,
                             100 * dcon / dacq if dacq else 0.0, con, acq))
            else:     # first frame: no interval yet, cumulative figures only
                rows.append((None, cls, s.instances, wait / con / 1000 if con else 0.0, None,
                             100 * con / acq if acq else 0.0, con, acq))
        rows.sort(key=lambda r: (-(r[0] or 0), -r[6], r[1]))
        for cps, cls, inst, wavg, aps, pct, con, acq in rows[: self.max_locks]:
            t.add_row(cls, str(inst), _fmt_rate(cps), f"{wavg:.2f}", _fmt_rate(aps), f"{pct:.2f}",
                      f"{con:,}", f"{acq:,}")
        return t


# ----------------------------------------------------------------------------- run --live / progress
def _interactive(console: Console) -> bool:
    return console.is_terminal and sys.stdout.isatty()


class LiveRun:
    """`on_tick(arena, samples)` for coordinator.run: the top view, refreshed during a run.

    Does nothing when stdout is not a terminal.  Use as a context manager (or call
    `close()`) so the screen is restored when the run ends or fails.
    """

    def __init__(self, console: Console | None = None, interval: float = 0.5,
                 panels: list[PanelFn] | None = None, enabled: bool | None = None) -> None:
        self.console = console or Console()
        self.enabled = _interactive(self.console) if enabled is None else enabled
        self.interval = interval
        self.view = TopView(panels if panels is not None else extra_panels)
        self._live: Live | None = None
        self._last = 0.0

    def on_tick(self, arena: Arena, samples: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._live is None:
            self.view.prime(arena)
            self._live = Live(Text("aerosync: waiting for the first interval..."), console=self.console,
                              auto_refresh=False, transient=False)
            self._live.start()
            self._last = now
            return
        if now - self._last >= self.interval:
            self._last = now
            self._live.update(self.view.render(arena), refresh=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressBar:
    """`on_sample(elapsed_s, total_ops)` for coordinator.run: a rich progress bar.

    With a duration the bar shows percent of it; in ops mode (`target_ops`, e.g. run.ops x
    CPUs) percent of the operations; with neither, a running count of operations.  Draws
    on stderr, and only when both stdout and stderr are terminals (no-op otherwise).
    """

    def __init__(self, duration: float | None = None, target_ops: int | None = None,
                 console: Console | None = None, description: str = "running",
                 enabled: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = _interactive(self.console) if enabled is None else enabled
        self.duration, self.target_ops = duration, target_ops
        self._progress: Progress | None = None
        self._task: Any = None
        self.description = description

    def _start(self) -> None:
        total = self.duration if self.duration else self.target_ops
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                  TaskProgressColumn(), TextColumn("{task.fields[ops]} ops"),
                                  TimeElapsedColumn(), console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=total, ops="0")

    def on_sample(self, elapsed: float, total_ops: int) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            self._start()
        assert self._progress is not None
        done = elapsed if self.duration else (total_ops if self.target_ops else None)
        if done is not None:
            self._progress.update(self._task, completed=done, ops=f"{total_ops:,}")
        else:
            self._progress.update(self._task, ops=f"{total_ops:,}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- aerosync top
def live_arenas() -> list[str]:
    """Names of the AeroSync arenas in /dev/shm whose creator is alive."""
    from aerosync.arch.cpu import proc_alive
    from aerosync.arena.cleanup import find_project_objects

    return [n for n, pid in find_project_objects() if not n.startswith("sem.") and proc_alive(pid)]


def only_live_arena() -> str:
    """The one live arena, or UsageError listing them."""
    live = live_arenas()
    if len(live) != 1:
        raise UsageError(f"{len(live)} live arenas ({', '.join(live) or 'none'}); name one with --arena NAME"
                         + ("" if live else " (is a run going on?)"))
    return live[0]


def _run_over(arena: Arena) -> bool:
    from aerosync.arch.cpu import proc_alive

    state = arena.u64[L.H_RUN_STATE >> 3]
    return state in (L.RUN_STOP, L.RUN_ABORT) or not proc_alive(arena.owner_pid)


def _loop(arena: Arena, view: TopView, console: Console, interval: float) -> None:
    with Live(view.render(arena), console=console, auto_refresh=False, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(view.render(arena), refresh=True)
            if _run_over(arena):
                console.print(f"aerosync top: the run owning {arena.name} has ended")
                return


def cmd_top(args: argparse.Namespace, console: Console | None = None) -> int:
    """`aerosync top [--arena NAME] [--interval S] [--once]`."""
    if args.interval <= 0:
        raise UsageError(f"--interval {args.interval}: allowed: seconds > 0")
    console = console or Console()
    arena = Arena.attach(args.arena or only_live_arena())
    try:
        with contextlib.suppress(KeyboardInterrupt):
            view = TopView()
            view.prime(arena)
            if args.once:
                time.sleep(args.interval)
                console.print(view.render(arena))
            else:
                _loop(arena, view, console, args.interval)
    finally:
        arena.close()            # never unlink: the run owns the segment
    return 0


def add_top_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `top` on an argparse subparsers object."""
    p = sub.add_parser("top", help="live per-CPU ops/s, contended locks and memory of a running arena")
    p.add_argument("--arena", help="name of a live arena (default: the only one running)")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="refresh seconds (default: %(default)s)")
    p.add_argument("--once", action="store_true", help="print one frame (rates over one interval) and exit")
    p.set_defaults(func=cmd_top)
    return p

