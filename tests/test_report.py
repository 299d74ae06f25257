"""Run directories and the result schema: a real small run, written and validated."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from aerosync import coordinator
from aerosync.report.rundir import interval_rates, throughput_block, write_run_dir
from aerosync.report.schema import ResultSchemaError, load_schema, validate_result
from aerosync.scenario import load_scenario
from workers.workloads import registry

SCENARIO = ('name = "report-test"\n[run]\nworkload = "lock_storm"\nduration = 0.6\nwarmup = 0.2\n'
            '[machine]\ncpus = 2\nmemory = "4M"\n')


@pytest.fixture(scope="module")
def real_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    path = tmp_path_factory.mktemp("scn") / "report-test.toml"
    path.write_text(SCENARIO)
    res = coordinator.run(load_scenario(path, registry()))
    return res.to_dict(), path


def test_schema_is_draft_2020_12_and_versioned() -> None:
    s = load_schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["properties"]["schema_version"]["const"] == 1


def test_real_result_validates(real_result: tuple[dict[str, Any], Path]) -> None:
    d, _ = real_result
    validate_result(d)
    validate_result({**d, "throughput": throughput_block(d)})


@pytest.mark.parametrize("corrupt,field", [
    (lambda d: d["cpus"][1].__setitem__("ops_per_s", "fast"), "cpus/1/ops_per_s"),
    (lambda d: d.pop("samples"), "samples"),
    (lambda d: d["samples"][2].__setitem__("ops", [1, "x"]), "samples/2/ops/1"),
    (lambda d: d.__setitem__("schema_version", 2), "schema_version"),
    (lambda d: d["lock_stat"][0].pop("contentions"), "lock_stat/0/contentions"),
])
def test_corrupted_result_names_the_field(real_result: tuple[dict[str, Any], Path], corrupt: Any,
                                          field: str) -> None:
    d = copy.deepcopy(real_result[0])
    corrupt(d)
    with pytest.raises(ResultSchemaError) as ei:
        validate_result(d)
    assert ei.value.path == field
    assert field in str(ei.value)


def test_run_dir_has_every_file(real_result: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    d, scn_path = real_result
    run = write_run_dir(d, tmp_path / "runs", str(scn_path))
    assert run.parent == tmp_path / "runs" and run.name.endswith("-report-test")
    for name in ("result.json", "scenario.toml", "scenario-as-run.json", "topology.json", "samples.csv",
                 "lock_stat.txt", "views.json", "README.txt"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    for view in d["views_before"]:
        assert (run / "views" / f"{view}-before.txt").is_file()
        assert (run / "views" / f"{view}-after.txt").is_file()
    for png in ("throughput.png", "lock_wait.png", "latency.png", "free_area.png"):
        data = (run / "plots" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000, png
    assert d["mm"]["free_area_samples"]                         # what free_area.png is drawn from
    assert not (run / "plots" / "numa_policy.png").exists()     # one run, no policy sweep: not invented
    saved = json.loads((run / "result.json").read_text())
    validate_result(saved)
    tp = saved["throughput"]
    assert tp["min"] <= tp["median"] <= tp["max"] and tp["intervals"] >= 1
    assert (run / "scenario.toml").read_text() == SCENARIO
    topo = json.loads((run / "topology.json").read_text())
    assert set(topo) == {"host", "simulated"}
    assert "lock_storm_lock" in (run / "lock_stat.txt").read_text()


def test_samples_csv_marks_warmup(real_result: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    d, _ = real_result
    run = write_run_dir(d, tmp_path, None, plots=False)
    rows = list(csv.DictReader((run / "samples.csv").open()))
    assert len(rows) == len(d["samples"])
    assert {"t_s", "cpu0_ops", "cpu1_ops", "cpu0_ops_per_s", "cpu1_ops_per_s", "warmup"} <= set(rows[0])
    assert rows[0]["warmup"] == "1" and rows[-1]["warmup"] == "0"
    post = [float(r["total_ops_per_s"]) for r in rows if r["warmup"] == "0" and r["total_ops_per_s"]]
    expect = [sum(r) for _, _, r, warm in interval_rates(d) if not warm]
    assert post == pytest.approx(expect, rel=1e-3)
    assert not (run / "scenario.toml").exists()


def test_run_dirs_are_unique_within_a_second(real_result: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    d, _ = real_result
    made = {write_run_dir(d, tmp_path, None, plots=False) for _ in range(3)}
    assert len(made) == 3


def test_invalid_result_writes_nothing(real_result: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    d = copy.deepcopy(real_result[0])
    d["total_ops"] = -1
    with pytest.raises(ResultSchemaError, match="total_ops"):
        write_run_dir(d, tmp_path / "runs", None)
    assert not (tmp_path / "runs").exists()


def test_optional_plots_only_with_data(real_result: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    from aerosync.report.plots import write_plots

    d = copy.deepcopy(real_result[0])
    d["mm"] = {"free_area_samples": [{"t": 0.1 * i, "free": [[8 - i, 4, 2, 1], [1, 1, 0, 0]]} for i in range(4)]}
    d["numa_policy"] = {"local": {"local_pct": 98.0, "ops_per_s": 1e6},
                        "interleave": {"local_pct": 50.0, "ops_per_s": 8e5}}
    validate_result(d)
    names = {p.name for p in write_plots(d, tmp_path)}
    assert {"free_area.png", "numa_policy.png"} <= names
