"""`aerosync bench`: the figures each issue asks for, as medians of repeated measurements.

Each suite module exposes `FIGURES: dict[key, (unit, target text, fn)]` where `fn()`
returns one measurement (a float) or a dict of related measurements keyed by figure
name (so one run can feed several figures and ratios are taken within one run, not
across runs on a noisy machine).  The runner calls every function `repeat` times and
reports min / median / max; the median is the figure.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

from aerosync.errors import UsageError

__all__ = ["run_bench", "SUITES"]


def _suites() -> dict[str, Any]:
    from aerosync.bench import foundation, pagealloc, profiling, reclaim, slab

    return {"foundation": foundation, "pagealloc": pagealloc, "slab": slab, "profiling": profiling,
            "reclaim": reclaim}


SUITES = ("foundation", "pagealloc", "slab", "profiling", "reclaim")


def run_bench(names: list[str], as_json: bool = False, repeat: int = 5) -> int:
    suites = _suites()
    unknown = [n for n in names if n not in suites]
    if unknown:
        raise UsageError(f"bench: unknown suite(s) {', '.join(unknown)}; allowed: {', '.join(suites)}")
    if not 1 <= repeat <= 100:
        raise UsageError(f"bench: --repeat {repeat}: allowed 1..100")
    out: dict[str, Any] = {}
    for name in names or list(suites):
        mod = suites[name]
        samples: dict[str, list[float]] = {}
        meta: dict[str, tuple[str, str]] = {}
        for group, (fn, figures) in mod.GROUPS.items():
            if not as_json:
                print(f"[{name}] measuring {group} ...", file=sys.stderr, flush=True)
            for _ in range(repeat):
                res = fn()
                for key, value in res.items():
                    samples.setdefault(key, []).append(float(value))
            for key, unit, target in figures:
                meta[key] = (unit, target)
        suite_out = {}
        for key, vals in samples.items():
            unit, target = meta.get(key, ("", "reported"))
            suite_out[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                              "n": len(vals), "unit": unit, "target": target}
        out[name] = suite_out
    if as_json:
        print(json.dumps(out, indent=1))
    else:
        for name, figs in out.items():
            print(f"suite {name} (median of {repeat}; min .. max)")
            for key, f in figs.items():
                print(f"  {key:<36} {_num(f['median']):>12} {f['unit']:<6} "
                      f"[{_num(f['min'])} .. {_num(f['max'])}]  target: {f['target']}")
    return 0


def _num(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


Fn = Callable[[], dict[str, float]]
