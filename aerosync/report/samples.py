"""Sample arithmetic every report shares: the per-interval rates of a run's samples.

An interval counts when it starts at or after the warm-up and is at least half a sample
interval long (the coordinator's own rule, so the closing sample taken right after STOP
does not make a spike).  This module sits below everything else in `aerosync.report`
(rundir, plots, sweep, compare all read it) and imports none of them.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["Interval", "interval_rates", "post_warmup_cpu", "post_warmup_totals", "throughput_block", "warmup_s"]

Interval = tuple[float, float, list[float], bool]     # t0, t1, per-CPU ops/s, warm-up?


def warmup_s(result: dict[str, Any]) -> float:
    """The run's warm-up (seconds at the start left out of every figure)."""
    return float(result["scenario"]["run"].get("warmup", 0.0) or 0.0)


def interval_rates(result: dict[str, Any]) -> list[Interval]:
    """Every sample interval as (t0, t1, per-CPU ops/s, is_warmup).

    Too-short intervals (under half the sample interval: the closing sample) are merged
    into the next by skipping their end point, as the coordinator does.
    """
    samples = result["samples"]
    half = float(result["scenario"]["run"].get("sample_interval", 0.1)) / 2
    warm = warmup_s(result)
    out: list[Interval] = []
    prev = samples[0] if samples else None
    for s in samples[1:]:
        dt = s["t"] - prev["t"]
        if dt < half:
            continue
        rates = [(b - a) / dt for a, b in zip(prev["ops"], s["ops"])]
        out.append((prev["t"], s["t"], rates, prev["t"] < warm))
        prev = s
    return out


def post_warmup_totals(result: dict[str, Any]) -> list[float]:
    """Total ops/s of each post-warm-up interval: the repeated measurements of a run."""
    return [sum(r) for _, _, r, warm in interval_rates(result) if not warm]


def post_warmup_cpu(result: dict[str, Any], cpu: int) -> list[float]:
    """Ops/s of one simulated CPU in each post-warm-up interval."""
    return [r[cpu] for _, _, r, warm in interval_rates(result) if not warm and cpu < len(r)]


def throughput_block(result: dict[str, Any]) -> dict[str, Any]:
    """{"intervals", "min", "median", "max"} of total ops/s over post-warm-up intervals."""
    totals = post_warmup_totals(result)
    if not totals:
        return {"intervals": 0, "min": 0.0, "median": 0.0, "max": 0.0}
    return {"intervals": len(totals), "min": min(totals), "median": statistics.median(totals), "max": max(totals)}
