"""`aerosync sweep`: run a scenario over a grid of settings and show how it scales.

    aerosync sweep SCENARIO --vary cpus=1..4 --vary policy=local,interleave --repeat 3 \
        [--control private] [--set section.key=value] [--out DIR]

Each ``--vary KEY=SPEC`` names a scenario key — ``cpus`` is ``machine.cpus``, ``policy``
is ``numa.policy``, anything else a dotted ``section.key`` — and its values: an integer
range ``a..b`` or a comma list (';' separates instead when the values hold commas, as
policies like ``bind=0,1`` do; each value is parsed as a ``--set`` value is).
The grid is the product of all ``--vary`` lists; every point runs ``--repeat`` times
through `coordinator.run`, each run saved as a run directory under ``OUT/runs/``.

Written to OUT (default ``runs/<time>-sweep-<scenario>/``):

* ``table.txt`` (also printed): mean, sd, min, max of ops/s per point, ops/s per CPU,
  efficiency against linear scaling, the private-arena baseline and idle %;
* ``results.json``: every run's figures (``aerosync compare`` reads two of these);
* for a CPU sweep, ``will-it-scale[-KEY=VALUE…].csv`` in will-it-scale's runtest.py
  layout — ``tasks,processes,processes_idle,threads,threads_idle,linear`` with its
  leading ``0,0,100,0,100,0`` row — where tasks = CPUs, processes = ops/s of the
  private-arena control (``-1`` when it did not run, as runtest.py prints for a missing
  figure), threads = ops/s of the shared arena, linear = tasks x the larger 1-CPU
  figure; and ``scaling[…].png``, the will-it-scale style plot.  ``csv-notes.txt``
  says how the idle columns were measured.

Control mode ``--control private`` is will-it-scale's "processes" against "threads":
for each point, one ``aerosync run --json`` subprocess per host CPU of the point, each
with ``machine.cpus = [that CPU]`` and so a private arena of its own, all started at
once; their ops/s are summed.  That is a real no-sharing linear baseline, so the cost
of sharing is measured rather than assumed.  Their start-up is not synchronised, so the
measured windows overlap only approximately (noted in the results).

Idle % is measured as runtest.py does, from the host's CPU time counters
(psutil.cpu_times, i.e. /proc/stat) before and after each run, over the host CPUs the
point used — start-up and other load on those CPUs included.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aerosync.errors import AeroSyncError, UsageError

__all__ = [
    "WIS_HEADER",
    "Vary",
    "add_sweep_parser",
    "cmd_sweep",
    "parse_vary",
    "render_table",
    "run_sweep",
]

WIS_HEADER = "tasks,processes,processes_idle,threads,threads_idle,linear"
_ALIASES = {"cpus": "machine.cpus", "policy": "numa.policy"}
_RANGE_RE = re.compile(r"(\d+)\s*\.\.\s*(\d+)")
_REPO = Path(__file__).resolve().parents[2]
CONTROL_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Vary:
    """One --vary: the label shown, the dotted scenario key, and the values (as --set text)."""

    label: str
    key: str
    values: tuple[str, ...]


def parse_vary(spec: str) -> Vary:
    """KEY=a..b or KEY=v1,v2,… → Vary; UsageError naming the spec when malformed."""
    label, eq, raw = spec.partition("=")
    label, raw = label.strip(), raw.strip()
    allowed = ("KEY=a..b (integer range) or KEY=v1,v2,... where KEY is cpus, policy or a dotted "
               "section.key of the scenario")
    if not eq or not label or not raw:
        raise UsageError(f"--vary {spec!r}: expected {allowed}")
    key = _ALIASES.get(label, label)
    if key.count(".") != 1 or not all(key.split(".")):
        raise UsageError(f"--vary {spec!r}: key {label!r} is not cpus, policy or section.key; expected {allowed}")
    m = _RANGE_RE.fullmatch(raw)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a > b or (key == "machine.cpus" and a < 1):
            raise UsageError(f"--vary {spec!r}: range {a}..{b} is empty or starts below 1")
        values = tuple(str(v) for v in range(a, b + 1))
    else:
        # Policies carry commas of their own ("bind=0,1"): a ';' in the list separates instead.
        values = tuple(v.strip() for v in raw.split(";" if ";" in raw else ","))
        if not all(values):
            raise UsageError(f"--vary {spec!r}: empty value in the list; expected {allowed}")
    return Vary(label, key, values)


def _grid(varies: list[Vary]) -> list[dict[str, str]]:
    """Every combination of the varied values, as {label: value} (first --vary outermost)."""
    return [dict(zip([v.label for v in varies], combo)) for combo in itertools.product(*(v.values for v in varies))]


def _overrides(varies: list[Vary], point: dict[str, str]) -> list[str]:
    return [f"{v.key}={point[v.label]}" for v in varies]


# ---------------------------------------------------------------------------- measuring


def _cpu_times() -> list[Any]:
    import psutil

    return psutil.cpu_times(percpu=True)


def _idle_pct(before: list[Any], after: list[Any], cpus: set[int]) -> float:
    """Idle % over `cpus` between two psutil snapshots (runtest.py's idle_fraction)."""
    idle = busy = 0.0
    for c in cpus:
        if c >= len(before) or c >= len(after):
            continue
        b, a = before[c]._asdict(), after[c]._asdict()
        d = {k: a[k] - b[k] for k in a}
        i = d.get("idle", 0.0) + d.get("iowait", 0.0)
        # guest time is already counted inside user/nice on Linux
        total = sum(v for k, v in d.items() if k not in ("guest", "guest_nice"))
        idle += i
        busy += total - i
    return 100.0 * idle / (idle + busy) if idle + busy > 0 else 0.0


def _run_figures(result: dict[str, Any], idle: float, run_dir: Path | None) -> dict[str, Any]:
    from aerosync.report.samples import post_warmup_totals, throughput_block

    return {
        "ops_per_s": result["ops_per_s"],
        "throughput": throughput_block(result),
        "interval_ops_per_s": post_warmup_totals(result),
        "cpus_ops_per_s": [c["ops_per_s"] for c in result["cpus"]],
        "nr_cpus": result["simulated_topology"]["nr_cpus"],
        "host_cpu": result["simulated_topology"]["host_cpu"],
        "latency": result.get("latency", {}).get("all", {}),
        "workload": result.get("workload", {}),
        "idle_pct": idle,
        "local_pct": (result.get("numa") or {}).get("local_pct"),
        "notes": result.get("notes", []),
        "run_dir": str(run_dir) if run_dir else None,
    }


def _run_shared(scenario: str, overrides: list[str], runs_dir: Path | None) -> dict[str, Any]:
    from aerosync import coordinator
    from aerosync.report.rundir import write_run_dir
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    scn = load_scenario(scenario, registry(), overrides)
    before = _cpu_times()
    result = coordinator.run(scn).to_dict()
    after = _cpu_times()
    idle = _idle_pct(before, after, set(result["simulated_topology"]["host_cpu"]))
    run_dir = write_run_dir(result, runs_dir, scenario, plots=False) if runs_dir else None
    return _run_figures(result, idle, run_dir)


def _run_control(scenario: str, overrides: list[str], host_cpus: list[int]) -> dict[str, Any]:
    """One private-arena `aerosync run` per host CPU, all at once; their ops/s summed."""
    base = [o for o in overrides if not o.startswith("machine.cpus=")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")])))
    before = _cpu_times()
    procs = []
    for h in host_cpus:
        cmd = [sys.executable, "-m", "aerosync.cli", "run", scenario, *(f"--set={o}" for o in base),
               "--set", f"machine.cpus=[{h}]", "--json", "--no-save"]
        procs.append((h, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=env, cwd=str(_REPO))))
    outs = []
    try:
        for h, p in procs:
            out, err = p.communicate(timeout=CONTROL_TIMEOUT_S)
            if p.returncode not in (0, 1) or not out.strip():
                raise AeroSyncError(f"control run on host CPU {h} failed (exit {p.returncode}): "
                                    f"{err.strip()[-500:] or 'no output'}")
            outs.append(json.loads(out))
    finally:
        for _, p in procs:              # SIGTERM first: a run removes its arena then; SIGKILL would leave it
            if p.poll() is None:
                p.terminate()
        for _, p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    after = _cpu_times()
    return {
        "ops_per_s": sum(d["ops_per_s"] for d in outs),
        "per_process_ops_per_s": [d["ops_per_s"] for d in outs],
        "host_cpus": list(host_cpus),
        "idle_pct": _idle_pct(before, after, set(host_cpus)),
    }


# ---------------------------------------------------------------------------- the sweep


def _mean_or_none(vals: list[Any]) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def _summary(runs: list[dict[str, Any]], control: list[dict[str, Any]]) -> dict[str, Any]:
    vals = [r["ops_per_s"] for r in runs]
    s: dict[str, Any] = {
        "runs": len(vals),
        "ops_per_s_mean": statistics.fmean(vals),
        "ops_per_s_sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "ops_per_s_min": min(vals),
        "ops_per_s_max": max(vals),
        "nr_cpus": runs[0]["nr_cpus"],
        "idle_pct": statistics.fmean(r["idle_pct"] for r in runs),
        "control_ops_per_s": None,
        "control_idle_pct": None,
        "local_pct": _mean_or_none([r.get("local_pct") for r in runs]),
    }
    if control:
        s["control_ops_per_s"] = statistics.fmean(c["ops_per_s"] for c in control)
        s["control_idle_pct"] = statistics.fmean(c["idle_pct"] for c in control)
    return s


def run_sweep(scenario: str, varies: list[Vary], *, repeat: int = 1, control: str | None = None,
              out: Path | None = None, base_overrides: list[str] | None = None,
              echo: Any = None) -> tuple[dict[str, Any], Path]:
    """Run the grid, write OUT's files, and return (results dict, OUT).

    Every point's overrides are validated before anything runs (UsageError naming the
    bad one).  `echo(text)` receives progress lines.
    """
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    if repeat < 1:
        raise UsageError(f"--repeat {repeat}: expected an integer >= 1")
    if control not in (None, "private"):
        raise UsageError(f"--control {control!r}: allowed: private")
    base = list(base_overrides or [])
    points = _grid(varies)
    scn = load_scenario(scenario, registry(), base)
    for pt in points:
        load_scenario(scenario, registry(), base + _overrides(varies, pt))
    out = Path(out) if out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-sweep-{scn.name}"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "kind": "aerosync-sweep", "schema_version": 1, "scenario": scenario, "scenario_name": scn.name,
        "workload": scn.run.workload,
        "vary": [{"label": v.label, "key": v.key, "values": list(v.values)} for v in varies],
        "repeat": repeat, "control": control, "base_overrides": base, "points": [], "notes": [],
    }
    for i, pt in enumerate(points):
        ov = base + _overrides(varies, pt)
        runs, ctl = [], []
        for r in range(repeat):
            if echo:
                echo(f"sweep: point {i + 1}/{len(points)} {_label(pt)} run {r + 1}/{repeat}")
            runs.append(_run_shared(scenario, ov, out / "runs"))
            if control == "private":
                ctl.append(_run_control(scenario, ov, runs[-1]["host_cpu"]))
        results["points"].append({"params": pt, "overrides": ov, "runs": runs, "control_runs": ctl,
                                  "summary": _summary(runs, ctl)})
    _add_efficiency(results)
    _notes(results)
    _write_outputs(results, out)
    return results, out


def _label(pt: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in pt.items())


def _cpu_groups(results: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], list[dict[str, Any]]]:
    """Points grouped by the values of every varied key except cpus, each sorted by CPUs."""
    groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
    for p in results["points"]:
        key = tuple((k, v) for k, v in p["params"].items() if k != "cpus")
        groups.setdefault(key, []).append(p)
    for pts in groups.values():
        pts.sort(key=lambda p: p["summary"]["nr_cpus"])
    return groups


def _is_cpu_sweep(results: dict[str, Any]) -> bool:
    return any(v["key"] == "machine.cpus" for v in results["vary"])


def _add_efficiency(results: dict[str, Any]) -> None:
    """efficiency = ops/s / (N x per-CPU ops/s at the smallest N of its group)."""
    if not _is_cpu_sweep(results):
        return
    for pts in _cpu_groups(results).values():
        first = pts[0]["summary"]
        per_cpu = first["ops_per_s_mean"] / first["nr_cpus"]
        for p in pts:
            s = p["summary"]
            s["efficiency"] = s["ops_per_s_mean"] / (s["nr_cpus"] * per_cpu) if per_cpu else 0.0
            if s["control_ops_per_s"]:
                s["sharing_cost_pct"] = 100.0 * (1 - s["ops_per_s_mean"] / s["control_ops_per_s"])


def _notes(results: dict[str, Any]) -> None:
    notes = results["notes"]
    notes.append("idle %: host CPU time counters (psutil.cpu_times = /proc/stat) over the point's host CPUs, "
                 "from before start-up to after stop; other load on those CPUs counts as busy")
    if results["control"] == "private":
        notes.append("private control: one `aerosync run` per host CPU started at once; start-up is not "
                     "synchronised, so their measured windows overlap only approximately")
    else:
        notes.append("no --control private: will-it-scale 'processes' columns are -1 (not measured)")
    if _is_cpu_sweep(results):
        for pts in _cpu_groups(results).values():
            if pts[0]["summary"]["nr_cpus"] != 1:
                notes.append(f"no 1-CPU point: efficiency and linear use the {pts[0]['summary']['nr_cpus']}-CPU "
                             "point's per-CPU rate")
                break
    if any("oversubscribed" in n for p in results["points"] for r in p["runs"] for n in r["notes"]):
        notes.append("some points were oversubscribed (more simulated CPUs than host CPUs)")


# ---------------------------------------------------------------------------- outputs


def render_table(results: dict[str, Any]) -> str:
    """The sweep as an aligned text table, one row per point, notes below."""
    labels = [v["label"] for v in results["vary"]]
    cpu = _is_cpu_sweep(results)
    ctl = results["control"] == "private"
    head = [*labels, "runs", "ops/s mean", "sd", "min", "max", "ops/s/cpu"]
    if cpu:
        head.append("eff %")
    if ctl:
        head += ["private ops/s", "sharing cost %", "private idle %"]
    head.append("idle %")
    local = any(p["summary"].get("local_pct") is not None for p in results["points"])
    if local:
        head.append("local %")
    rows = [head]
    for p in results["points"]:
        s = p["summary"]
        row = [*(p["params"][k] for k in labels), str(s["runs"]), f"{s['ops_per_s_mean']:,.0f}",
               f"{s['ops_per_s_sd']:,.0f}", f"{s['ops_per_s_min']:,.0f}", f"{s['ops_per_s_max']:,.0f}",
               f"{s['ops_per_s_mean'] / s['nr_cpus']:,.0f}"]
        if cpu:
            row.append(f"{100 * s.get('efficiency', 0.0):.1f}")
        if ctl:
            row += [f"{s['control_ops_per_s'] or 0:,.0f}", f"{s.get('sharing_cost_pct', 0.0):.1f}",
                    f"{s['control_idle_pct'] or 0:.1f}"]
        row.append(f"{s['idle_pct']:.1f}")
        if local:
            lp = s.get("local_pct")
            row.append("-" if lp is None else f"{lp:.1f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"AeroSync sweep: {results['scenario_name']} ({results['scenario']}), "
             f"{results['repeat']} run(s) per point"]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    if cpu:
        lines.append("eff % = ops/s / (CPUs x per-CPU ops/s at the smallest CPU count); 100 = linear scaling")
    lines += [f"note: {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def _suffix(group: tuple[tuple[str, str], ...]) -> str:
    return "".join(f"-{k}={re.sub(r'[^A-Za-z0-9_.-]', '_', v)}" for k, v in group)


def _write_wis(results: dict[str, Any], out: Path) -> list[Path]:
    """will-it-scale CSV + scaling plot per group of non-CPU values."""
    from aerosync.report.plots import plot_scaling

    made = []
    for group, pts in _cpu_groups(results).items():
        ss = [p["summary"] for p in pts]
        n0 = ss[0]["nr_cpus"]
        base = max(ss[0]["ops_per_s_mean"], ss[0]["control_ops_per_s"] or 0.0) / n0
        path = out / f"will-it-scale{_suffix(group)}.csv"
        with path.open("w", newline="") as f:
            f.write(WIS_HEADER + "\n")
            f.write("0,0,100,0,100,0\n")
            w = csv.writer(f, lineterminator="\n")
            for s in ss:
                proc = round(s["control_ops_per_s"]) if s["control_ops_per_s"] is not None else -1
                pidle = f"{s['control_idle_pct']:.2f}" if s["control_idle_pct"] is not None else "-1"
                w.writerow([s["nr_cpus"], proc, pidle, round(s["ops_per_s_mean"]), f"{s['idle_pct']:.2f}",
                            round(base * s["nr_cpus"])])
        made.append(path)
        title = results["scenario_name"] + (" " + _label(dict(group)) if group else "")
        made.append(plot_scaling([s["nr_cpus"] for s in ss], [s["ops_per_s_mean"] for s in ss],
                                 out / f"scaling{_suffix(group)}.png", title=title,
                                 control=[s["control_ops_per_s"] for s in ss]))
    (out / "csv-notes.txt").write_text(
        f"{WIS_HEADER}\n  tasks = simulated CPUs; threads = ops/s with one shared arena (mean of repeats);\n"
        "  processes = ops/s summed over private-arena runs, one per CPU (-1: not measured);\n"
        "  *_idle = idle % of the point's host CPUs over the run; linear = tasks x the larger of the\n"
        "  two per-CPU rates at the smallest CPU count (will-it-scale: at 1 task).\n"
        + "".join(f"note: {n}\n" for n in results["notes"]))
    return made


def _write_policy_plot(results: dict[str, Any], out: Path) -> list[Path]:
    """Locality and throughput side by side per NUMA policy (plots.plot_numa_policy)."""
    from aerosync.report.plots import plot_numa_policy

    label = next(v["label"] for v in results["vary"] if v["key"] == "numa.policy")
    numa = {}
    for p in results["points"]:
        s = p["summary"]
        name = _label(p["params"]) if len(results["vary"]) > 1 else p["params"][label]
        numa[name] = {"local_pct": s.get("local_pct") or 0.0, "ops_per_s": s["ops_per_s_mean"]}
    results["numa_policy"] = numa
    title_src = {"numa_policy": numa,
                 "scenario": {"name": results["scenario_name"], "run": {"workload": results.get("workload", "?")}},
                 "simulated_topology": {"nr_cpus": results["points"][0]["summary"]["nr_cpus"]}}
    made = plot_numa_policy(title_src, out / "numa_policy.png")
    return [made] if made else []


def _write_outputs(results: dict[str, Any], out: Path) -> None:
    table = render_table(results)
    (out / "table.txt").write_text(table)
    files = []
    if _is_cpu_sweep(results):
        files += [p.name for p in _write_wis(results, out)]
    if any(v["key"] == "numa.policy" for v in results["vary"]):
        files += [p.name for p in _write_policy_plot(results, out)]
    if files:
        results["files"] = files
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")


# ---------------------------------------------------------------------------- CLI


def add_sweep_parser(sub: Any) -> None:
    """Register `aerosync sweep` on an argparse subparsers object."""
    p = sub.add_parser("sweep", help="run a scenario over a grid of settings (scaling, policies)",
                       description="Run SCENARIO at every combination of the --vary values and write a table, "
                                   "results.json, and for CPU sweeps a will-it-scale CSV and scaling plot.")
    p.add_argument("scenario", help="scenario TOML")
    p.add_argument("--vary", action="append", required=True, metavar="KEY=SPEC",
                   help="cpus=1..N, policy=local,interleave, or section.key=v1,v2 (repeatable)")
    p.add_argument("--repeat", type=int, default=1, help="runs per point (default: %(default)s)")
    p.add_argument("--control", choices=["private"], help="also run each CPU on a private arena (linear baseline)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a scenario key")
    p.add_argument("--duration", type=float, help="shorthand for --set run.duration=...")
    p.add_argument("--out", help="output directory (default: runs/<time>-sweep-<scenario>)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep the arguments describe; print the table; 0 on success."""
    varies = [parse_vary(s) for s in args.vary]
    labels = [v.key for v in varies]
    if len(set(labels)) != len(labels):
        raise UsageError(f"--vary: a key is varied twice ({', '.join(labels)})")
    base = list(args.set or [])
    if args.duration is not None:
        base.append(f"run.duration={args.duration}")
    echo = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    results, out = run_sweep(args.scenario, varies, repeat=args.repeat, control=args.control,
                             out=Path(args.out) if args.out else None, base_overrides=base, echo=echo)
    sys.stdout.write(render_table(results))
    print(f"sweep: results in {out}")
    return 0
