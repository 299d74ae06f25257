"""`aerosync compare A B`: two runs (or two sweeps) side by side, noise made visible.

For every figure the table shows, for A and B, the mean, standard deviation and
coefficient of variation over the figure's repeated measurements, and B's % difference
from A — the layout of mmtests' compare-kernels.  For a run the repeated measurements
are its post-warm-up sample intervals (total and per-CPU ops/s); for a sweep they are
the post-warm-up intervals of every repeat of a point (and the repeats themselves for
the private-arena baseline).  A difference is flagged ``*`` only when Welch's t-test
(scipy.stats.ttest_ind, equal_var=False) gives p < alpha (default 0.05): beyond the
runs' own noise.  Figures measured once per run (latency percentiles, lock contention
%, workload figures) have no spread to test and are shown, never flagged.  Interval
samples are serially correlated, so p is a screening figure, not a proof.

When both runs carry vmstat / numastat views, the deltas (after - before, per counter)
are printed beside them.  Paths may be run directories, result.json files, sweep
directories or sweep results.json files; anything else is a UsageError naming it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aerosync.errors import UsageError

__all__ = [
    "DELTA_VIEWS",
    "Row",
    "add_compare_parser",
    "cmd_compare",
    "compare",
    "figures",
    "load",
    "render",
    "view_deltas",
]

DELTA_VIEWS = ("vmstat", "numastat")


@dataclass
class Row:
    """One compared figure; `a`/`b` are its measurements in each run."""

    name: str
    unit: str
    a: list[float]
    b: list[float]
    p: float | None = None
    significant: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- loading


def load(path: str | Path) -> tuple[str, dict[str, Any]]:
    """("run" | "sweep", the dict) from a run/sweep directory or its JSON file."""
    p = Path(path)
    expected = "a run directory, a result.json, a sweep directory or a sweep results.json"
    if p.is_dir():
        for name in ("result.json", "results.json"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise UsageError(f"{path}: directory holds no result.json or results.json; expected {expected}")
    elif not p.exists():
        raise UsageError(f"{path}: no such file or directory; expected {expected}")
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: cannot read JSON ({e}); expected {expected}") from None
    if isinstance(d, dict) and d.get("kind") == "aerosync-sweep":
        return "sweep", d
    if isinstance(d, dict) and "samples" in d and "cpus" in d:
        from aerosync.report.schema import validate_result

        validate_result(d, source=str(p))
        return "run", d
    raise UsageError(f"{path}: not an AeroSync result (no samples/cpus, not a sweep); expected {expected}")


# ---------------------------------------------------------------------------- figures


def _lock_pct(result: dict[str, Any]) -> dict[str, float]:
    out = {}
    for s in result.get("lock_stat", []):
        acq = s.get("acquisitions", 0) + s.get("r_acquisitions", 0)
        if acq:
            out[s["lock_class"]] = 100.0 * (s.get("contentions", 0) + s.get("r_contentions", 0)) / acq
    return out


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def figures(kind: str, d: dict[str, Any]) -> dict[str, tuple[str, list[float]]]:
    """name -> (unit, measurements), in display order."""
    return _run_figures(d) if kind == "run" else _sweep_figures(d)


def _run_figures(d: dict[str, Any]) -> dict[str, tuple[str, list[float]]]:
    from aerosync.report.samples import post_warmup_cpu, post_warmup_totals

    f: dict[str, tuple[str, list[float]]] = {"ops/s total": ("ops/s", post_warmup_totals(d))}
    for c in range(len(d["cpus"])):
        f[f"ops/s cpu{c}"] = ("ops/s", post_warmup_cpu(d, c))
    lat = d.get("latency", {}).get("all", {})
    for key, label in (("p50_ns", "p50"), ("p99_ns", "p99"), ("p999_ns", "p99.9")):
        if key in lat:
            f[f"latency {label}"] = ("ns", [lat[key]])
    for cls, pct in _lock_pct(d).items():
        f[f"contentions % {cls}"] = ("%", [pct])
    for k, v in _numeric(d.get("workload", {})).items():
        f[f"workload {k}"] = ("", [v])
    opt = d.get("workload", {}).get("opt")
    if isinstance(opt, dict) and opt.get("ratio") is not None:     # a reclaim run: its policy / OPT
        f["workload major faults / OPT"] = ("x", [float(opt["ratio"])])
    return f


def _sweep_figures(d: dict[str, Any]) -> dict[str, tuple[str, list[float]]]:
    f: dict[str, tuple[str, list[float]]] = {}
    varied = {v["label"] for v in d.get("vary", []) if len(v.get("values", [])) > 1}
    for p in d["points"]:
        # a key with one value is a constant of the sweep: leave it out so that two sweeps
        # of one point each (policy=local vs policy=interleave) line up
        tag = " ".join(f"{k}={v}" for k, v in p["params"].items() if k in varied) or "all"
        f[f"ops/s [{tag}]"] = ("ops/s", [x for r in p["runs"] for x in r["interval_ops_per_s"]])
        if p.get("control_runs"):
            f[f"private ops/s [{tag}]"] = ("ops/s", [c["ops_per_s"] for c in p["control_runs"]])
        p99 = [r["latency"]["p99_ns"] for r in p["runs"] if r.get("latency", {}).get("p99_ns") is not None]
        if p99:
            f[f"latency p99 [{tag}]"] = ("ns", p99)
    return f


def _stats(xs: list[float]) -> tuple[float, float, float]:
    """mean, sample sd, cv % (sd and cv are nan, shown '-', for a single measurement)."""
    if not xs:
        return math.nan, math.nan, math.nan
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan, math.nan
    sd = statistics.stdev(xs)
    return m, sd, (100.0 * sd / abs(m) if m else 0.0)


def _welch(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch's t-test p value, or None when either side has < 2 measurements."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    if math.isnan(p):                 # both constant: identical means are no difference
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    return p


def compare(a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]], alpha: float = 0.05) -> list[Row]:
    """One Row per figure present in A or B, tested at `alpha`."""
    if a[0] != b[0]:
        raise UsageError(f"cannot compare a {a[0]} with a {b[0]}: give two runs or two sweeps")
    fa, fb = figures(*a), figures(*b)
    rows = []
    for name in [*fa, *(n for n in fb if n not in fa)]:
        unit = (fa.get(name) or fb[name])[0]
        xa, xb = fa.get(name, (unit, []))[1], fb.get(name, (unit, []))[1]
        p = _welch(xa, xb)
        rows.append(Row(name, unit, xa, xb, p, p is not None and p < alpha))
    return rows


def _flatten(prefix: str, obj: Any, out: dict[str, float]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix] = float(obj)


def view_deltas(result: dict[str, Any], view: str) -> dict[str, float] | None:
    """{counter: after - before} of one view's JSON, or None if the run lacks it."""
    before = result.get("views_before", {}).get(view)
    after = result.get("views_after", {}).get(view)
    if before is None or after is None:
        return None
    fb: dict[str, float] = {}
    fa: dict[str, float] = {}
    _flatten("", before.get("json"), fb)
    _flatten("", after.get("json"), fa)
    return {k: fa[k] - fb.get(k, 0.0) for k in fa}


# ---------------------------------------------------------------------------- rendering


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:,.2f}" if abs(x) < 1000 else f"{x:,.0f}"


def _pct_diff(ma: float, mb: float) -> str:
    if math.isnan(ma) or math.isnan(mb):
        return "-"
    if ma == 0:
        return "0.00%" if mb == 0 else "inf"
    return f"{100.0 * (mb - ma) / abs(ma):+.2f}%"


def render(rows: list[Row], label_a: str, label_b: str, alpha: float,
           deltas: list[tuple[str, dict[str, float] | None, dict[str, float] | None]] = ()) -> str:
    """The comparison table (mmtests style), a footer saying what '*' means, view deltas."""
    head = ["figure", "A mean", "A sd", "A cv%", "B mean", "B sd", "B cv%", "diff", "p", ""]
    table = [head]
    for r in rows:
        ma, sa, ca = _stats(r.a)
        mb, sb, cb = _stats(r.b)
        p = "-" if r.p is None else f"{r.p:.3g}"
        table.append([f"{r.name} ({r.unit})" if r.unit else r.name, _fmt(ma), _fmt(sa), _fmt(ca),
                      _fmt(mb), _fmt(sb), _fmt(cb), _pct_diff(ma, mb), p, "*" if r.significant else ""])
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    lines = [f"A: {label_a}", f"B: {label_b}", ""]
    for t in table:
        lines.append(t[0].ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(t[1:], widths[1:])))
    lines += [
        "",
        f"* = Welch's t-test over the measurements (post-warm-up sample intervals) gives p < {alpha:g}: "
        "the difference is beyond the runs' own noise.",
        "diff = (B mean - A mean) / A mean.  p '-' = measured once per run (no spread): shown, never flagged.",
    ]
    for view, da, db in deltas:
        if da is None or db is None:
            continue
        lines += ["", f"{view} deltas (after - before)"]
        keys = [k for k in da.keys() | db.keys() if da.get(k, 0.0) or db.get(k, 0.0)]
        if not keys:
            lines.append("  (no counter changed)")
        w = max((len(k) for k in keys), default=0)
        for k in sorted(keys):
            a, b = da.get(k, 0.0), db.get(k, 0.0)
            lines.append(f"  {k.ljust(w)}  {_fmt(a):>14}  {_fmt(b):>14}  {_pct_diff(a, b):>9}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- CLI


def add_compare_parser(sub: Any) -> None:
    """Register `aerosync compare` on an argparse subparsers object."""
    p = sub.add_parser("compare", help="compare two runs or sweeps, flagging significant differences",
                       description="Side-by-side mean/sd/cv/%%diff of every figure of two runs (or sweeps); "
                                   "'*' marks differences with Welch's t-test p < alpha.")
    p.add_argument("run_a", help="run directory, result.json, sweep directory or sweep results.json")
    p.add_argument("run_b", help="the same kind as RUN_A")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the comparison; 0 on success (differences are findings, not failures)."""
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha}: expected a probability between 0 and 1")
    a, b = load(args.run_a), load(args.run_b)
    rows = compare(a, b, args.alpha)
    deltas = []
    if a[0] == "run":
        deltas = [(v, view_deltas(a[1], v), view_deltas(b[1], v)) for v in DELTA_VIEWS]
    if args.json:
        out = {"a": str(args.run_a), "b": str(args.run_b), "alpha": args.alpha,
               "interrupted": {"a": bool(a[1].get("interrupted")), "b": bool(b[1].get("interrupted"))},
               "rows": [{"name": r.name, "unit": r.unit, "a": _stats(r.a), "b": _stats(r.b), "p": r.p,
                         "significant": r.significant} for r in rows],
               "deltas": {v: {"a": da, "b": db} for v, da, db in deltas if da is not None and db is not None}}
        print(json.dumps(out, indent=1))
    else:
        print(render(rows, str(args.run_a), str(args.run_b), args.alpha, deltas), end="")
        for label, (_, d) in ((args.run_a, a), (args.run_b, b)):
            if d.get("interrupted"):           # absent in results older than the key: not interrupted
                print(f"note: {label} was interrupted (Ctrl-C / SIGTERM): its figures cover the run up to then")
    return 0
