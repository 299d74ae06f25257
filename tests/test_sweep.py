"""Sweeps: a two-point CPU sweep with the private-arena control writes its table, CSV and plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from aerosync.errors import UsageError
from aerosync.report.sweep import WIS_HEADER, add_sweep_parser, parse_vary

SCENARIO = ('name = "sweep-test"\n[run]\nworkload = "counter_storm"\nduration = 0.6\nwarmup = 0.2\n'
            '[machine]\ncpus = 1\nmemory = "4M"\n')


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_sweep_parser(p.add_subparsers(dest="cmd", required=True))
    return p


def test_parse_vary() -> None:
    v = parse_vary("cpus=1..3")
    assert (v.key, v.values) == ("machine.cpus", ("1", "2", "3"))
    assert parse_vary("policy=local,interleave").key == "numa.policy"
    assert parse_vary("policy=bind=0,1;interleave=all").values == ("bind=0,1", "interleave=all")
    assert parse_vary("workload.mode=percpu,shared").values == ("percpu", "shared")
    for bad in ("cpus", "cpus=", "cpus=3..1", "nosection=1,2", "cpus=1,,2"):
        with pytest.raises(UsageError, match="--vary"):
            parse_vary(bad)


def test_bad_vary_value_fails_before_running(tmp_path: Path) -> None:
    scn = tmp_path / "s.toml"
    scn.write_text(SCENARIO)
    args = _parser().parse_args(["sweep", str(scn), "--vary", "workload.mode=percpu,bogus",
                                 "--out", str(tmp_path / "out"), "--quiet"])
    with pytest.raises(UsageError, match=r"workload\.mode"):
        args.func(args)
    assert not (tmp_path / "out").exists()


def test_cpu_sweep_writes_table_csv_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scn = tmp_path / "s.toml"
    scn.write_text(SCENARIO)
    out = tmp_path / "out"
    args = _parser().parse_args(["sweep", str(scn), "--vary", "cpus=1..2", "--repeat", "1",
                                 "--control", "private", "--out", str(out), "--quiet"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    table = (out / "table.txt").read_text()
    assert "ops/s mean" in table and "eff %" in table and table in printed
    lines = (out / "will-it-scale.csv").read_text().splitlines()
    assert lines[0] == WIS_HEADER
    assert lines[1] == "0,0,100,0,100,0"
    rows = [line.split(",") for line in lines[2:]]
    assert [r[0] for r in rows] == ["1", "2"]
    for r in rows:
        assert int(r[1]) > 0 and int(r[3]) > 0            # processes (private) and threads (shared)
        assert 0.0 <= float(r[2]) <= 100.0 and 0.0 <= float(r[4]) <= 100.0
    assert abs(int(rows[1][5]) - 2 * int(rows[0][5])) <= 1   # linear = tasks x 1-CPU figure
    png = (out / "scaling.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "aerosync-sweep" and len(res["points"]) == 2
    assert res["points"][1]["summary"]["nr_cpus"] == 2
    assert len(res["points"][1]["control_runs"][0]["per_process_ops_per_s"]) == 2
    assert all(Path(r["run_dir"]).is_dir() for p in res["points"] for r in p["runs"])
    assert (out / "csv-notes.txt").is_file()
