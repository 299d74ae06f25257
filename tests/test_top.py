"""`aerosync top`, LiveRun and ProgressBar: rendered into a fixed-size captured console."""

from __future__ import annotations

import argparse
import io
import os
from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from aerosync import top
from aerosync.arena import layout as L
from aerosync.arena.segment import SHM_DIR, Arena
from aerosync.params import CPU_AREA_SIZE
from aerosync.sync.lockstat import S_ACQ, S_CON, S_WAIT_TOTAL, lock_alloc, slot_off


def _console() -> Console:
    return Console(record=True, width=120, file=io.StringIO(), force_terminal=False)


def _live_arena(make_arena: Callable[..., Arena]) -> Arena:
    a = make_arena(nr_cpus=2, workload="lock_storm")
    slot = lock_alloc(a, "test_top_lock", "t")
    off = slot_off(a, slot)
    a.u64[(off + S_ACQ) >> 3] = 1000
    a.u64[(off + S_CON) >> 3] = 10
    a.u64[(off + S_WAIT_TOTAL) >> 3] = 50_000
    for c in range(2):
        base = a.off("cpu") + c * CPU_AREA_SIZE
        a.u64[(base + L.CPU_OPS) >> 3] = 1234 * (c + 1)
        a.u64[(base + L.CPU_STATE) >> 3] = L.CPUST_RUNNING
        a.u64[(base + L.CPU_PID) >> 3] = os.getpid()
    a.u64[L.H_RUN_STATE >> 3] = L.RUN_GO
    return a


def test_top_once_renders_cpus_and_lock_class(make_arena: Callable[..., Arena]) -> None:
    a = _live_arena(make_arena)
    con = _console()
    rc = top.cmd_top(argparse.Namespace(arena=a.name, interval=0.01, once=True), console=con)
    text = con.export_text()
    assert rc == 0
    assert "simulated CPUs" in text and "test_top_lock" in text
    assert "2,468" in text and "running" in text
    assert os.path.exists(os.path.join(SHM_DIR, a.name))      # top closed, never unlinked


def test_view_rates_are_deltas(make_arena: Callable[..., Arena]) -> None:
    a = _live_arena(make_arena)
    view = top.TopView(panels=[])
    view.prime(a)
    base = a.off("cpu")
    a.u64[(base + L.CPU_OPS) >> 3] += 500
    con = _console()
    con.print(view.render(a))
    row = next(ln for ln in con.export_text().splitlines() if ln.startswith("│   0 "))
    assert "1,734" in row and "-" not in row.split("│")[5]      # ops/s is a number, not "-"


def test_extra_panels_hook(make_arena: Callable[..., Arena]) -> None:
    a = _live_arena(make_arena)

    def mine(arena: Arena) -> Text | None:
        return Text(f"my panel for {arena.name}") if "cpu" in arena.sections else None

    def absent(arena: Arena) -> None:
        return None

    def broken(arena: Arena) -> Text:
        raise RuntimeError("boom")

    view = top.TopView(panels=[mine, absent, broken])
    con = _console()
    con.print(view.render(a))
    text = con.export_text()
    assert f"my panel for {a.name}" in text and "panel broken failed" in text
    assert top.zones_panel in top.extra_panels and top.zones_panel(a) is None   # no mmzones section


def test_live_and_progress_are_noops_off_terminal(make_arena: Callable[..., Arena]) -> None:
    a = _live_arena(make_arena)
    con = _console()
    live = top.LiveRun(console=con)
    bar = top.ProgressBar(duration=2.0, console=con)
    assert not live.enabled and not bar.enabled
    live.on_tick(a, [])
    bar.on_sample(1.0, 100)
    live.close()
    bar.close()
    assert con.export_text() == ""


def test_live_run_and_progress_draw_when_enabled(make_arena: Callable[..., Arena]) -> None:
    a = _live_arena(make_arena)
    con = _console()
    with top.LiveRun(console=con, interval=0.0, panels=[], enabled=True) as live:
        live.on_tick(a, [])
        live.on_tick(a, [])
    assert "test_top_lock" in con.export_text()
    for bar in (top.ProgressBar(duration=2.0, console=_console(), enabled=True),
                top.ProgressBar(target_ops=1000, console=_console(), enabled=True),
                top.ProgressBar(console=_console(), enabled=True)):
        with bar:
            bar.on_sample(1.0, 500)
            bar.on_sample(1.5, 700)


def test_top_parser() -> None:
    p = argparse.ArgumentParser()
    top.add_top_parser(p.add_subparsers())
    args = p.parse_args(["top", "--once", "--interval", "0.2"])
    assert args.func is top.cmd_top and args.once and args.interval == 0.2 and args.arena is None
