"""Fidelity figures (issue 14): the host self-check and what the kernel profiles change.

  * host_formula_mismatches: `aerosync doctor --fidelity` on the benchmark host -- the
    rows where AeroSync's formulas, fed with this host's zone sizes, CPUs and settings,
    differ from what its kernel shows and should not (target 0);
  * larson_list_lock_contentions_linux / _aerosync: contentions of the SLUB node
    list_lock class ("&n->list_lock", lock_stat) per 10^6 operations of the larson
    scenario at 2 CPUs, once per kernel profile in the same repetition;
  * larson_ops_linux_vs_aerosync: larson ops/s of the "linux" profile over the
    "aerosync" one (same repetition).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["GROUPS"]

_SCEN = Path(__file__).resolve().parent.parent.parent / "scenarios"


def bench_host() -> dict[str, float]:
    from aerosync.fidelity import host_formula_mismatches

    return {"host_formula_mismatches": float(host_formula_mismatches("/"))}


def _larson(profile: str) -> Any:
    from aerosync import coordinator
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    scn = load_scenario(_SCEN / "larson.toml", registry(),
                        ["run.duration=1.5", "run.warmup=0.3", "machine.cpus=2", f"kernel.profile={profile}"])
    return coordinator.run(scn)


def _list_lock_per_mops(res: Any) -> float:
    con = sum(s["contentions"] + s.get("r_contentions", 0) for s in res.lock_stat
              if s["lock_class"] == "&n->list_lock")
    return con / max(res.total_ops, 1) * 1e6


def bench_larson() -> dict[str, float]:
    lin, aero = _larson("linux"), _larson("aerosync")
    return {"larson_list_lock_contentions_linux": _list_lock_per_mops(lin),
            "larson_list_lock_contentions_aerosync": _list_lock_per_mops(aero),
            "larson_ops_linux_vs_aerosync": lin.ops_per_s / aero.ops_per_s if aero.ops_per_s else 0.0}


GROUPS = {
    "host": (bench_host, [("host_formula_mismatches", "", "= 0")]),
    "larson": (bench_larson, [("larson_list_lock_contentions_linux", "/1e6 ops", "reported"),
                              ("larson_list_lock_contentions_aerosync", "/1e6 ops", "reported"),
                              ("larson_ops_linux_vs_aerosync", "x", "reported")]),
}
