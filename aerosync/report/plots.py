"""PNG plots of a run and of a CPU sweep (matplotlib, Agg: no display needed).

Figures are built with `matplotlib.figure.Figure` and saved through the Agg canvas, never
through pyplot, so no global state, GUI backend or display is involved and plotting is
safe in any process.  Every plot has a title, axis labels and units.

Plots of a run (`write_plots`):

* ``throughput.png`` — ops/s per simulated CPU and in total per sample interval, the
  warm-up shaded (it is excluded from every figure);
* ``lock_wait.png`` — per lock class, wait-time average and maximum (µs) and contention
  % (contentions / acquisitions).  lock_stat keeps aggregate figures, not individual
  waits, so this is the honest "distribution" it supports;
* ``latency.png`` — sampled operation latency p50 / p99 / p99.9 per CPU and overall;
* ``free_area.png`` — only when ``result["mm"]["free_area_samples"]`` exists, shaped
  ``[{"t": float, "free": [[count per order] per zone]}]``: free pages (count x 2^order)
  per order over time, summed over zones;
* ``memory_pressure.png`` — only when ``result["mm"]["pressure_samples"]`` exists (a
  machine with [reclaim]), shaped ``[{"t", "free": [pages per node], "wmark": [[min, low,
  high] per node], "events": {counter: cumulative}}]``: free pages and the watermarks
  (boost included) above; kswapd's and direct reclaim's scans/steals, allocation stalls
  and workingset refaults per interval below;
* ``numa_locality.png`` — only when ``result["workload"]["locality_samples"]`` exists
  (workers/workloads/numa_access.py), shaped ``[{"t", "cpu", "accesses",
  "local_accesses", "pages_local", "pages"}]``: each task's share of pages on its node
  and of its accesses that were local (per sample interval) over time -- how NUMA
  balancing or migrate_pages converges;
* ``numa_policy.png`` — only when ``result["numa_policy"]`` exists, shaped
  ``{policy: {"local_pct": float, "ops_per_s": float}}``: locality and throughput per
  policy.

A plot whose data is absent is skipped (its function returns None), never invented.
`plot_scaling` draws the will-it-scale style sweep plot.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aerosync.report.samples import interval_rates

__all__ = [
    "free_area_figure",
    "order_styles",
    "plot_free_area",
    "plot_latency",
    "plot_lock_wait",
    "plot_memory_pressure",
    "plot_numa_locality",
    "plot_numa_policy",
    "plot_scaling",
    "plot_throughput",
    "write_plots",
]


def _figure(w: float = 8.0, h: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _title(result: dict[str, Any], what: str) -> str:
    scn = result["scenario"]
    return f"{what} — {scn['name']} ({scn['run']['workload']}, {result['simulated_topology']['nr_cpus']} CPUs)"


def plot_throughput(result: dict[str, Any], path: Path) -> Path | None:
    """Ops/s per CPU and total over time, warm-up shaded."""
    iv = interval_rates(result)
    if not iv:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ts = [(t0 + t1) / 2 for t0, t1, _, _ in iv]
    n = len(iv[0][2])
    for c in range(n):
        ax.plot(ts, [r[c] for _, _, r, _ in iv], marker=".", linewidth=1, label=f"cpu{c}")
    ax.plot(ts, [sum(r) for _, _, r, _ in iv], color="black", linewidth=2, label="total")
    warm = float(result["scenario"]["run"].get("warmup", 0.0) or 0.0)
    if warm > 0:
        ax.axvspan(0, warm, color="grey", alpha=0.25, label="warm-up (excluded)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time since start barrier (s)")
    ax.set_ylabel("throughput (ops/s)")
    ax.set_title(_title(result, "Throughput per sample interval"))
    ax.legend(loc="best", fontsize="small", ncol=2 if n > 6 else 1)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _lock_rows(result: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(class, wait avg µs, wait max µs, contention %) of every lock class that was taken."""
    rows = []
    for s in result.get("lock_stat", []):
        acq = s.get("acquisitions", 0) + s.get("r_acquisitions", 0)
        if not acq:
            continue
        con = s.get("contentions", 0) + s.get("r_contentions", 0)
        wait = s.get("wait_total", 0) + s.get("r_wait_total", 0)
        wmax = max(s.get("wait_max", 0), s.get("r_wait_max", 0))
        rows.append((s["lock_class"], wait / con / 1e3 if con else 0.0, wmax / 1e3, 100.0 * con / acq))
    return rows


def plot_lock_wait(result: dict[str, Any], path: Path) -> Path | None:
    """Per lock class: wait avg/max (µs, log scale) and contention %."""
    rows = _lock_rows(result)
    if not rows:
        return None
    import numpy as np

    fig = _figure(8.0, 5.5)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(rows))
    names = [r[0] for r in rows]
    ax1.bar(x - 0.2, [max(r[1], 1e-3) for r in rows], width=0.4, label="wait avg")
    ax1.bar(x + 0.2, [max(r[2], 1e-3) for r in rows], width=0.4, label="wait max")
    ax1.set_yscale("log")
    ax1.set_ylabel("wait time per contention (µs)")
    ax1.set_title(_title(result, "Lock wait time (lock_stat aggregates)"))
    ax1.legend(fontsize="small")
    ax1.grid(alpha=0.3, axis="y")
    ax2.bar(x, [r[3] for r in rows], color="tab:red")
    ax2.set_ylabel("contentions / acquisitions (%)")
    ax2.set_ylim(0, max(100.0, max(r[3] for r in rows)))
    ax2.set_xticks(x, names, rotation=20, ha="right")
    ax2.set_xlabel("lock class")
    ax2.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_latency(result: dict[str, Any], path: Path) -> Path | None:
    """Sampled op latency p50/p99/p99.9 per CPU and over all CPUs (µs, log scale)."""
    lat = result.get("latency") or {}
    entries = [(f"cpu{i}", d) for i, d in enumerate(lat.get("cpus", []))] + [("all", lat.get("all", {}))]
    entries = [(n, d) for n, d in entries if d.get("samples")]
    if not entries:
        return None
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(len(entries))
    for i, (key, label) in enumerate((("p50_ns", "p50"), ("p99_ns", "p99"), ("p999_ns", "p99.9"))):
        ax.bar(x + (i - 1) * 0.27, [d.get(key, 0.0) / 1e3 for _, d in entries], width=0.27, label=label)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{n}\n({d['samples']:,} ops)" for n, d in entries])
    ax.set_xlabel("simulated CPU (sampled operations)")
    ax.set_ylabel("operation latency (µs)")
    ax.set_title(_title(result, "Sampled operation latency percentiles"))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def order_styles(nr_orders: int) -> list[tuple[Any, str]]:
    """(colour, line style) of each order's line, all distinct up to 20 orders.

    Orders 0..9 take tab10 with solid lines; orders 10.. (MAX_PAGE_ORDER is at most 15)
    take the light half of tab20, dashed, so order 10 never shares order 0's colour as a
    plain 10-colour cycle would.
    """
    from matplotlib import colormaps

    tab10, tab20 = colormaps["tab10"].colors, colormaps["tab20"].colors
    styles = [(tab10[o], "-") for o in range(min(nr_orders, 10))]
    styles += [(tab20[2 * (o - 10) + 1], "--") for o in range(10, min(nr_orders, 20))]
    if nr_orders > 20:
        raise ValueError(f"{nr_orders} orders: at most 20 have distinct colours (MAX_PAGE_ORDER <= 15)")
    return styles


def free_area_figure(result: dict[str, Any]) -> Any:
    """The free_area figure (see plot_free_area), or None without mm.free_area_samples."""
    samples = (result.get("mm") or {}).get("free_area_samples") or []
    if not samples:
        return None
    orders = max((len(z) for s in samples for z in s["free"]), default=0)
    if not orders:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ts = [s["t"] for s in samples]
    for o, (colour, style) in enumerate(order_styles(orders)):
        pages = [sum(z[o] for z in s["free"] if o < len(z)) << o for s in samples]
        ax.plot(ts, pages, linewidth=1, color=colour, linestyle=style, label=f"order {o}")
    ax.set_xlabel("time since start barrier (s)")
    ax.set_ylabel("free pages in blocks of that order (4 KiB pages)")
    ax.set_title(_title(result, "Free pages per order (buddy allocator)"))
    ax.legend(fontsize="x-small", ncol=2)
    ax.grid(alpha=0.3)
    return fig


def plot_free_area(result: dict[str, Any], path: Path) -> Path | None:
    """Free pages per order over time (summed over zones); no-op without mm.free_area_samples."""
    fig = free_area_figure(result)
    return None if fig is None else _save(fig, path)


def plot_memory_pressure(result: dict[str, Any], path: Path) -> Path | None:
    """Free pages and watermarks over time, and reclaim activity per interval; no-op
    without mm.pressure_samples (a machine without reclaim)."""
    samples = (result.get("mm") or {}).get("pressure_samples") or []
    if len(samples) < 2:
        return None
    fig = _figure(8.0, 6.5)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ts = [s["t"] for s in samples]
    nn = len(samples[0]["free"])
    for nid in range(nn):
        tag = f" node{nid}" if nn > 1 else ""
        line = ax1.plot(ts, [s["free"][nid] for s in samples], linewidth=1.5, label=f"free{tag}")
        colour = line[0].get_color()
        for i, (name, style) in enumerate((("min", ":"), ("low", "-."), ("high", "--"))):
            ax1.plot(ts, [s["wmark"][nid][i] for s in samples], linestyle=style, linewidth=1, color=colour,
                     label=f"{name} watermark{tag}")
    ax1.set_ylim(bottom=0)
    ax1.set_ylabel("pages (4 KiB)")
    ax1.set_title(_title(result, "Memory pressure"))
    ax1.legend(fontsize="x-small", ncol=2)
    ax1.grid(alpha=0.3)
    mid = [(a["t"] + b["t"]) / 2 for a, b in itertools.pairwise(samples)]
    series = (("pgscan_kswapd", "kswapd scanned"), ("pgsteal_kswapd", "kswapd reclaimed"),
              ("pgscan_direct", "direct scanned"), ("pgsteal_direct", "direct reclaimed"),
              ("allocstall", "allocation stalls"), ("refaults", "workingset refaults (anon + file)"))

    def value(s: dict[str, Any], key: str) -> int:
        ev = s.get("events") or {}
        if key == "refaults":
            return ev.get("workingset_refault_anon", 0) + ev.get("workingset_refault_file", 0)
        return ev.get(key, 0)

    for key, label in series:
        ax2.plot(mid, [max(0, value(b, key) - value(a, key)) for a, b in itertools.pairwise(samples)],
                 marker=".", linewidth=1, label=label)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("time since start barrier (s)")
    ax2.set_ylabel("pages (events) per sample interval")
    ax2.legend(fontsize="x-small", ncol=2)
    ax2.grid(alpha=0.3)
    return _save(fig, path)


def plot_numa_policy(result: dict[str, Any], path: Path) -> Path | None:
    """Local access % and ops/s per NUMA policy; no-op without result["numa_policy"]."""
    numa = result.get("numa_policy") or {}
    if not numa:
        return None
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    names = list(numa)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [numa[p]["local_pct"] for p in names], width=0.4, label="local accesses", color="tab:green")
    ax.set_ylabel("local accesses (%)")
    ax.set_ylim(0, 115)                # headroom for the legend above the bars
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, [numa[p]["ops_per_s"] for p in names], width=0.4, label="throughput", color="tab:blue")
    ax2.set_ylabel("throughput (ops/s)")
    ax.set_xticks(x, names)
    ax.set_xlabel("NUMA policy")
    ax.set_title(_title(result, "Locality and throughput per NUMA policy"))
    ax2.set_ylim(0, max(numa[p]["ops_per_s"] for p in names) * 1.15 or 1)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.88), ncols=2, fontsize="small")
    return _save(fig, path)


def plot_numa_locality(result: dict[str, Any], path: Path) -> Path | None:
    """Pages local % and accesses local % per task over time; no-op without samples."""
    samples = (result.get("workload") or {}).get("locality_samples") or []
    if not samples:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    by_cpu: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        by_cpu.setdefault(int(s["cpu"]), []).append(s)
    for c, ss in sorted(by_cpu.items()):
        line = ax.plot([s["t"] for s in ss], [100.0 * s["pages_local"] / s["pages"] if s["pages"] else 0.0
                                              for s in ss], marker=".", linewidth=1.5, label=f"cpu{c} pages")
        ts, acc = [], []
        for a, b in itertools.pairwise(ss):
            n = b["accesses"] - a["accesses"]
            if n > 0:
                ts.append(b["t"])
                acc.append(100.0 * (b["local_accesses"] - a["local_accesses"]) / n)
        if ts:
            ax.plot(ts, acc, linestyle="--", linewidth=1, color=line[0].get_color(), label=f"cpu{c} accesses")
    bal = bool((result.get("scenario") or {}).get("numa", {}).get("balancing"))
    ax.set_ylim(-2, 105)
    ax.set_xlabel("time since start barrier (s)")
    ax.set_ylabel("local (%)")
    ax.set_title(_title(result, "NUMA locality per task" + (" (automatic NUMA balancing on)" if bal else "")))
    ax.legend(fontsize="x-small", ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_scaling(tasks: Sequence[int], shared: Sequence[float], path: Path, *, title: str,
                 control: Sequence[float | None] | None = None) -> Path:
    """will-it-scale style: ops/s against CPUs, the perfect-scaling line, efficiency per point.

    Efficiency = ops/s / (N x per-CPU ops/s of the shared arena at the smallest N); the
    perfect-scaling line is N x that rate.  `control` (private arenas) is drawn beside.
    """
    fig = _figure()
    ax = fig.add_subplot()
    base = shared[0] / tasks[0] if tasks and tasks[0] else 0.0
    ax.plot(tasks, [base * n for n in tasks], linestyle="--", color="grey", label="perfect scaling (linear)")
    ax.plot(tasks, shared, marker="o", label="shared arena (threads)")
    if control and any(c is not None for c in control):
        pts = [(n, c) for n, c in zip(tasks, control) if c is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", label="private arenas (processes)")
    for n, v in zip(tasks, shared):
        eff = v / (n * base) if base else 0.0
        ax.annotate(f"{100 * eff:.0f}%", (n, v), textcoords="offset points", xytext=(0, 8), ha="center",
                    fontsize="small")
    ax.set_xlabel("simulated CPUs (tasks)")
    ax.set_ylabel("throughput (ops/s)")
    ax.set_xticks(list(tasks))
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{title}: scaling (labels: efficiency vs linear)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


_RUN_PLOTS = (
    ("throughput.png", plot_throughput),
    ("lock_wait.png", plot_lock_wait),
    ("latency.png", plot_latency),
    ("free_area.png", plot_free_area),
    ("memory_pressure.png", plot_memory_pressure),
    ("numa_locality.png", plot_numa_locality),
    ("numa_policy.png", plot_numa_policy),
)


def write_plots(result: dict[str, Any], plots_dir: Path) -> list[Path]:
    """Every run plot the result has data for, as PNGs in plots_dir; returns the paths."""
    made = []
    for name, fn in _RUN_PLOTS:
        p = fn(result, Path(plots_dir) / name)
        if p is not None:
            made.append(p)
    return made
