"""`aerosync bench`: the figures each issue asks for, as medians of repeated measurements.

Each suite module exposes `GROUPS: {group: (fn, [(key, unit, target text), ...])}`
where `fn()` returns a dict of related measurements keyed by figure name (so one run
can feed several figures and ratios are taken within one run, not across runs on a
noisy machine).  The runner calls every function `repeat` times and
reports min / median / max; the median is the figure.

A figure that cannot be measured on this host (an optional tool such as py-spy missing,
ptrace forbidden, /dev/shm too small) raises `SkipFigure(reason)`: its group's figures
are reported as skipped with the reason and every other figure is still printed (text
and JSON).  Any other failure of a group is reported the same way as failed, with the
error, and makes the exit status 1 once everything else is printed.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

from aerosync.bench.skip import SkipFigure
from aerosync.errors import ShmSpaceError, UsageError, interrupt_behind

__all__ = ["run_bench", "SUITES", "SkipFigure"]


def _suites() -> dict[str, Any]:
    from aerosync.bench import (
        fidelity,
        foundation,
        kvm,
        lib,
        numa,
        pagealloc,
        profiling,
        reclaim,
        reliability,
        slab,
        vm,
    )

    return {"foundation": foundation, "pagealloc": pagealloc, "slab": slab, "profiling": profiling, "lib": lib,
            "fidelity": fidelity, "reliability": reliability, "vm": vm, "reclaim": reclaim, "numa": numa,
            "kvm": kvm}


SUITES = ("foundation", "pagealloc", "slab", "profiling", "lib", "fidelity", "reliability", "vm", "reclaim", "numa",
          "kvm")


def run_bench(names: list[str], as_json: bool = False, repeat: int = 5) -> int:
    suites = _suites()
    unknown = [n for n in names if n not in suites]
    if unknown:
        raise UsageError(f"bench: unknown suite(s) {', '.join(unknown)}; allowed: {', '.join(suites)}")
    if not 1 <= repeat <= 100:
        raise UsageError(f"bench: --repeat {repeat}: allowed 1..100")
    out: dict[str, Any] = {}
    failed = False
    for name in names or list(suites):
        mod = suites[name]
        suite_out: dict[str, Any] = {}
        for group, (fn, figures) in mod.GROUPS.items():
            if not as_json:
                print(f"[{name}] measuring {group} ...", file=sys.stderr, flush=True)
            samples: dict[str, list[float]] = {}
            missing: dict[str, str] = {}
            try:
                for _ in range(repeat):
                    for key, value in fn().items():
                        samples.setdefault(key, []).append(float(value))
            except (SkipFigure, ShmSpaceError) as e:    # a missing tool, ptrace forbidden, /dev/shm too small
                missing = {"skipped": str(e)}
            except Exception as e:  # one broken group must not cost the other figures
                intr = interrupt_behind(e)
                if intr is not None:                     # Ctrl-C / SIGTERM seen through a clean-up's error:
                    # not a broken group -- the bench stops, the CLI exits 128 + signal
                    raise intr from e
                missing = {"failed": f"{type(e).__name__}: {e}"}
                failed = True
            meta = {key: (unit, target) for key, unit, target in figures}
            for key in [*meta, *(k for k in samples if k not in meta)]:
                unit, target = meta.get(key, ("", "reported"))
                vals = samples.get(key)
                if missing or not vals:
                    suite_out[key] = {**(missing or {"skipped": f"{group} did not report {key}"}),
                                      "unit": unit, "target": target}
                else:
                    suite_out[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                                      "n": len(vals), "unit": unit, "target": target}
        out[name] = suite_out
    if as_json:
        print(json.dumps(out, indent=1))
    else:
        for name, figs in out.items():
            print(f"suite {name} (median of {repeat}; min .. max)")
            for key, f in figs.items():
                if "median" not in f:
                    why = f"skipped: {f['skipped']}" if "skipped" in f else f"FAILED: {f['failed']}"
                    print(f"  {key:<36} {why}  target: {f['target']}")
                    continue
                print(f"  {key:<36} {_num(f['median']):>12} {f['unit']:<6} "
                      f"[{_num(f['min'])} .. {_num(f['max'])}]  target: {f['target']}")
    return 1 if failed else 0


def _num(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


Fn = Callable[[], dict[str, float]]
