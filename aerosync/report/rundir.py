"""Run directories: one run's evidence on disk, kept and comparable.

`write_run_dir(result, runs_dir, scenario_path)` writes::

    runs_dir/<YYYYmmdd-HHMMSS>-<scenario>/      (-2, -3 … appended if the name is taken)
        result.json            validated against result.schema.json, with a throughput block
        scenario.toml          the file as given (when there was one)
        scenario-as-run.json   the scenario with overrides applied
        topology.json          host and simulated topology
        samples.csv            t, cumulative ops and ops/s per CPU, total ops/s, warm-up flag
        lock_stat.txt          /proc/lock_stat format
        views/<view>-before.txt, views/<view>-after.txt, views.json (per-task views:
        views/proc-<when>.txt the task list, views/proc-<when>/<pid>-<view>.txt)
        plots/*.png            see aerosync.report.plots
        README.txt             what ran, the headline figures, what each file is

`check_runs_dir` / `check_output_file` refuse, before a run starts, places its results
could not be written to; `save_fallback` keeps a result whose place failed anyway.

The sample arithmetic every report shares (`interval_rates`, `post_warmup_totals`,
`throughput_block`) lives in aerosync.report.samples and is re-exported here; this module
imports plots (which only looks down, to samples), never the other way round.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from aerosync.errors import UsageError
from aerosync.report.samples import (
    Interval,
    interval_rates,
    post_warmup_cpu,
    post_warmup_totals,
    throughput_block,
)
from aerosync.report.samples import warmup_s as _warmup
from aerosync.report.schema import validate_result

__all__ = [
    "Interval",
    "check_output_file",
    "check_runs_dir",
    "save_fallback",
    "interval_rates",
    "lock_stat_text",
    "post_warmup_cpu",
    "post_warmup_totals",
    "throughput_block",
    "write_run_dir",
]

def lock_stat_text(result: dict[str, Any]) -> str:
    """lock_stat in the kernel's format, rendered from the result's per-class figures."""
    from aerosync.sync import lockstat

    try:
        return lockstat.render_lock_stat([lockstat.LockStat(**s) for s in result["lock_stat"]])
    except TypeError:          # figures from a newer/older LockStat: fall back to the view text
        return result.get("views_after", {}).get("lock_stat", {}).get("text", "")


def check_runs_dir(runs_dir: Path, option: str = "--runs-dir") -> None:
    """UsageError (before a run starts) unless `runs_dir` is a directory this process can
    write into, or can be made as one (its nearest existing ancestor is a writable
    directory).  Creates nothing."""
    allowed = "a directory (existing, or one that can be created) you may write into"
    p = Path(runs_dir)
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{option} {runs_dir}: is a file, not a directory; allowed: {allowed}")
        if not os.access(p, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {runs_dir}: the directory is not writable; allowed: {allowed}")
        return
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {runs_dir}: cannot be created, {parent} is a file; allowed: {allowed}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {runs_dir}: cannot be created, {parent} is not writable; allowed: {allowed}")


def check_output_file(path: Path, option: str = "--output") -> None:
    """UsageError (before a run starts) unless `path` can be written as a file: its
    directory exists and is writable, and it is not itself a directory."""
    allowed = "a file path in an existing directory you may write into"
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {path}: is a directory; allowed: {allowed}")
    parent = p.absolute().parent
    if not parent.exists():
        raise UsageError(f"{option} {path}: directory {parent} does not exist; allowed: {allowed}")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is not a directory; allowed: {allowed}")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable; allowed: {allowed}")


def save_fallback(result: dict[str, Any]) -> Path | None:
    """The result as JSON in the temporary directory, when the place asked for failed;
    None if even that cannot be written (the printed summary is then all there is)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f"aerosync-result-{_safe(result['scenario']['name'])}-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")
        return Path(name)
    except OSError:
        return None


def _unique_dir(runs_dir: Path, base: str) -> Path:
    """mkdir runs_dir/base, or base-2, base-3 …: atomic, so concurrent runs never share one."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10000):
        d = runs_dir / (base if i == 1 else f"{base}-{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise FileExistsError(f"{runs_dir}: no free run directory name for {base}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "scenario"


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")


def _write_samples_csv(path: Path, result: dict[str, Any]) -> None:
    """One row per sample; a row's ops/s are over the interval ending at it.

    warmup = 1 when that interval began before the warm-up ended (the rule every figure
    uses, so filtering warmup == 0 rows reproduces the figures).  Rates are left empty
    on the first row and on the closing sample taken right after STOP (shorter than half
    a sample interval, folded into no figure).
    """
    samples = result["samples"]
    n = len(samples[0]["ops"]) if samples else 0
    warm = _warmup(result)
    half = float(result["scenario"]["run"].get("sample_interval", 0.1)) / 2
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", *(f"cpu{c}_ops" for c in range(n)), *(f"cpu{c}_ops_per_s" for c in range(n)),
                    "total_ops_per_s", "warmup"])
        prev = None
        for s in samples:
            rates, total, started = [""] * n, "", s["t"]
            if prev is not None and s["t"] - prev["t"] >= half:
                dt = s["t"] - prev["t"]
                rates = [f"{(b - a) / dt:.1f}" for a, b in zip(prev["ops"], s["ops"])]
                total = f"{(sum(s['ops']) - sum(prev['ops'])) / dt:.1f}"
                started = prev["t"]
            w.writerow([f"{s['t']:.6f}", *s["ops"], *rates, total, 1 if started < warm else 0])
            if prev is None or s["t"] - prev["t"] >= half:
                prev = s


def _write_views(run: Path, result: dict[str, Any]) -> None:
    vdir = run / "views"
    vdir.mkdir()
    merged: dict[str, dict[str, Any]] = {}
    for when in ("before", "after"):
        for name, view in result.get(f"views_{when}", {}).items():
            if name == "proc":
                merged.setdefault(name, {})[when] = _write_proc(vdir, when, view)
                continue
            (vdir / f"{_safe(name)}-{when}.txt").write_text(view.get("text", ""))
            merged.setdefault(name, {})[when] = view.get("json")
    _write_json(run / "views.json", merged)


def _write_proc(vdir: Path, when: str, proc: dict[str, Any]) -> dict[str, Any]:
    """Per-task views: proc-<when>.txt is the task list, proc-<when>/<pid>-<view>.txt each
    task's maps/smaps/smaps_rollup/status; returns their JSON twins."""
    (vdir / f"proc-{when}.txt").write_text(proc.get("tasks", {}).get("text", ""))
    pids = proc.get("pids") or {}
    if pids:
        pdir = vdir / f"proc-{when}"
        pdir.mkdir()
        for pid, views in pids.items():
            for view, got in views.items():
                (pdir / f"{_safe(pid)}-{_safe(view)}.txt").write_text(got.get("text", ""))
    return {"tasks": proc.get("tasks", {}).get("json"),
            "pids": {pid: {v: got.get("json") for v, got in views.items()} for pid, views in pids.items()}}


def _readme(result: dict[str, Any], run: Path, plots: list[Path]) -> str:
    scn, sim = result["scenario"], result["simulated_topology"]
    tp = result.get("throughput") or throughput_block(result)
    lines = [
        f"AeroSync run {run.name}",
        f"scenario    {scn['name']}: {scn.get('description', '')}".rstrip(),
        f"workload    {scn['run']['workload']} {json.dumps(scn.get('workload', {}))}",
        f"machine     {sim['nr_cpus']} simulated CPUs on host CPUs {sorted(set(sim['host_cpu']))}, "
        f"{sim['nr_nodes']} node(s), {scn['machine']['memory'] // 2**20} MiB",
        f"measured    {result['measured_s']:.2f} s after a {_warmup(result):.2f} s warm-up (excluded)",
        f"throughput  {result['ops_per_s']:,.0f} ops/s; per interval min {tp['min']:,.0f} / "
        f"median {tp['median']:,.0f} / max {tp['max']:,.0f} ({tp['intervals']} intervals)",
    ]
    lat = result.get("latency", {}).get("all", {})
    if lat.get("samples"):
        lines.append(f"latency     p50 {lat['p50_ns'] / 1e3:.2f} us, p99 {lat['p99_ns'] / 1e3:.2f} us, "
                     f"p99.9 {lat['p999_ns'] / 1e3:.2f} us ({lat['samples']:,} sampled ops)")
    opt = result.get("workload", {}).get("opt")
    if isinstance(opt, dict) and opt.get("measured_accesses"):
        from aerosync.report.opt import opt_line

        lines.append(f"vs OPT      {opt_line(opt)}")
    for note in result.get("notes", []):
        lines.append(f"note        {note}")
    lines += [
        "",
        "files",
        "  result.json           every figure; schema: aerosync/report/result.schema.json",
        "  scenario.toml         the scenario file as given (if any); scenario-as-run.json with overrides",
        "  topology.json         host and simulated topology",
        "  samples.csv           cumulative ops and ops/s per CPU per sample;",
        "                        rows with warmup=1 are excluded from the figures",
        "  lock_stat.txt         lock statistics in /proc/lock_stat format",
        "  views/, views.json    kernel-format views before and after the run",
        *(f"  plots/{p.name}" for p in plots),
        "",
        "compare with another run:  aerosync compare THIS_DIR OTHER_DIR",
    ]
    return "\n".join(lines) + "\n"


def write_run_dir(result: dict[str, Any], runs_dir: Path, scenario_path: str | None,
                  *, plots: bool = True) -> Path:
    """Write one run directory and return its path (see the module docstring).

    The result is completed with a `throughput` block and validated before anything is
    written (ResultSchemaError names the bad field).  `plots=False` skips the PNGs.
    """
    result = dict(result)
    result["throughput"] = throughput_block(result)
    validate_result(result)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = _unique_dir(Path(runs_dir), f"{stamp}-{_safe(result['scenario']['name'])}")
    _write_json(run / "result.json", result)
    if scenario_path:
        shutil.copyfile(scenario_path, run / "scenario.toml")
    _write_json(run / "scenario-as-run.json", result["scenario"])
    _write_json(run / "topology.json", {"host": result["environment"].get("host_topology", {}),
                                        "simulated": result["simulated_topology"]})
    _write_samples_csv(run / "samples.csv", result)
    (run / "lock_stat.txt").write_text(lock_stat_text(result))
    _write_views(run, result)
    made: list[Path] = []
    if plots:
        from aerosync.report.plots import write_plots

        made = write_plots(result, run / "plots")
    (run / "README.txt").write_text(_readme(result, run, made))
    return run
