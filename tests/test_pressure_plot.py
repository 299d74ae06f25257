"""memory_pressure.png (issue 12): a reclaim run samples free pages, the watermarks and
the reclaim counters at every coordinator tick, and the run directory draws them; a run
without [reclaim] has no such samples and no such plot."""

from __future__ import annotations

import itertools
from pathlib import Path

from aerosync import coordinator
from aerosync.report.plots import write_plots
from aerosync.report.rundir import write_run_dir
from aerosync.report.schema import validate_result
from aerosync.scenario import load_scenario
from workers.workloads import registry

_ROOT = Path(__file__).resolve().parent.parent
_COUNTERS = ("pgscan_kswapd", "pgsteal_kswapd", "pgscan_direct", "pgsteal_direct", "allocstall",
             "workingset_refault_anon", "workingset_refault_file")


def test_reclaim_run_draws_memory_pressure(tmp_path: Path) -> None:
    scen = _ROOT / "scenarios" / "reclaim-compress.toml"
    scn = load_scenario(str(scen), registry(), ["run.duration=2", "run.check_interval=0", "run.sample_interval=0.1"])
    d = coordinator.run(scn).to_dict()
    ps = d["mm"]["pressure_samples"]
    assert len(ps) >= 5
    for s in ps:
        assert set(_COUNTERS) <= set(s["events"]) and len(s["free"]) == len(s["wmark"]) >= 1
        for mn, low, high in s["wmark"]:
            assert 0 < mn <= low <= high
    for key in _COUNTERS:                       # cumulative counters never go back
        assert all(a["events"][key] <= b["events"][key] for a, b in itertools.pairwise(ps)), key
    last = ps[-1]["events"]
    assert last["pgsteal_kswapd"] + last["pgsteal_direct"] > 0      # 1.5 x RAM: reclaim ran
    assert [s["t"] for s in ps] == sorted(s["t"] for s in ps)
    validate_result(d)
    run = write_run_dir(d, tmp_path / "runs", str(scen))
    data = (run / "plots" / "memory_pressure.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_no_reclaim_no_pressure_plot(tmp_path: Path) -> None:
    p = tmp_path / "plain.toml"
    p.write_text('[run]\nworkload = "lock_storm"\nduration = 0.6\nsample_interval = 0.1\n\n'
                 '[machine]\ncpus = 2\nmemory = "4M"\n')
    d = coordinator.run(load_scenario(str(p), registry())).to_dict()
    assert "pressure_samples" not in d["mm"] and d["mm"]["free_area_samples"]
    names = {x.name for x in write_plots(d, tmp_path / "plots")}
    assert "free_area.png" in names and "memory_pressure.png" not in names
