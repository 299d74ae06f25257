"""The policy-vs-OPT line of a reclaim run: how its result's ``workload.opt`` figures
(workers/workloads/reclaim.py opt_report, mm/reclaim/opt.py compare) read in the
summary, the run directory's README and `aerosync compare`.  Imports nothing above it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["opt_line", "opt_lines"]


def opt_line(opt: dict[str, Any]) -> str:
    """"major faults 12,345 (policy mglru) vs OPT 6,789 for the same trace and 812
    frames: 1.82 x" -- first touches left out on both sides."""
    pol, best, frames = opt["policy_major_faults"], opt["opt_faults"], opt["frames"]
    ratio = opt.get("ratio")
    how = f"{ratio:.2f} x" if ratio is not None else "no ratio (OPT took none)"
    return (f"major faults {pol:,} (policy {opt.get('policy', '?')}) vs OPT {best:,} for the same trace and "
            f"{frames:,} frames: {how}")


def opt_lines(opt: dict[str, Any], indent: str = "    ") -> list[str]:
    """The summary's lines: the comparison, then how it was measured and its notes."""
    if not opt.get("measured_accesses"):
        return [f"{indent}OPT: no access after a first touch was recorded ({opt.get('accesses', 0):,} accesses): "
                "no comparison"]
    lru = opt.get("exact_lru_ratio")
    out = [f"{indent}{opt_line(opt)}",
           f"{indent}  exact LRU {opt['exact_lru_faults']:,}" + (f" ({lru:.2f} x OPT)" if lru is not None else "")
           + (f"; {opt['policy_swapins']:,} pages swapped in (readahead included)" if "policy_swapins" in opt else "")
           + f"; {opt['measured_accesses']:,} measured accesses of {opt['accesses']:,} traced "
           f"({opt['distinct_pages']:,} first touches left out, {opt['first_touch_major_faults']:,} of them major); "
           f"frames = mean LRU size, {opt.get('frames_min', 0):,}..{opt.get('frames_max', 0):,} sampled"]
    out.extend(f"{indent}  note: {n}" for n in opt.get("notes", []))
    return out
