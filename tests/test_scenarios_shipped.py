"""Every scenario file shipped in scenarios/ loads with the real workloads' parameters,
and its [[events]] (CPU hotplug) and [fault] settings are valid for its machine: a
newcomer's first `scripts/run run scenarios/<x>.toml` must not end in a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from aerosync.hotplug import check_events
from aerosync.scenario import load_scenario
from workers.workloads import registry

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.toml"))


def test_scenarios_exist() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"default", "crash-soak", "hotplug", "lock-storm", "numa-balancing"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenario_loads(path: Path) -> None:
    scn = load_scenario(path, registry())
    assert scn.run.workload in registry()
    if scn.events:
        cpus = scn.machine.cpus
        assert isinstance(cpus, int), f"{path.name}: hotplug events need a fixed CPU count"
        check_events(scn, cpus)
    if scn.fault.kill_random or scn.fault.kill_at:
        assert scn.run.on_cpu_death != "fail", f"{path.name}: kills with on_cpu_death = fail end the run"
