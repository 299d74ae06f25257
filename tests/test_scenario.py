"""Scenario parsing: every bad input is one ScenarioError naming file, key, value, allowed.

The registry holds small Params dataclasses defined here, so these tests do not depend
on the real workloads (and the module under test must not import them either).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from aerosync.errors import ScenarioError, UsageError
from aerosync.scenario import (
    COMMAND_LINE,
    MachineSpec,
    RunSpec,
    Scenario,
    load_scenario,
    parse_size,
    scenario_hash,
    scenario_to_dict,
    with_overrides,
)

FIXTURES = Path(__file__).parent / "fixtures" / "scenarios"


@dataclass(frozen=True, slots=True)
class StormParams:
    mode: Literal["percpu", "shared"] = "percpu"
    false_sharing: bool = False
    stride: int = 64
    ratio: float = 0.5
    label: str = "x"
    cpu_list: tuple[int, ...] = ()
    level: Literal[1, 2, 3] = 1

    def validate(self) -> str | None:
        if self.false_sharing and self.mode != "percpu":
            return 'false_sharing = true needs mode = "percpu"'
        return None


@dataclass(frozen=True, slots=True)
class PlainParams:
    pass


@dataclass(frozen=True, slots=True)
class NeedyParams:
    size: int
    note: str = ""


REGISTRY: dict[str, type] = {"storm": StormParams, "plain": PlainParams, "needy": NeedyParams}


def fixture(name: str) -> Path:
    return FIXTURES / f"{name}.toml"


def load(name: str, *overrides: str) -> Scenario:
    return load_scenario(fixture(name), REGISTRY, overrides)


def expect_error(exc: ScenarioError, file: str, key: str, value: str, allowed: str) -> None:
    """The four things a user needs: which file, which key, what they wrote, what is allowed."""
    assert isinstance(exc, UsageError)
    assert exc.file == file
    assert exc.key == key
    msg = str(exc)
    assert value in msg, msg
    assert allowed in msg, msg


# ------------------------------------------------------------------------- bad files

BAD_FILES = [
    # (fixture, key, bad value as printed, part of the allowed description)
    ("bad_missing_workload", "run.workload", "<missing>", "required: one of needy, plain, storm"),
    ("bad_unknown_workload", "run.workload", "'nope'", "one of needy, plain, storm"),
    ("bad_unknown_top_key", "colour", "'red'",
     "known top-level keys: name, description, run, machine, numa, slab, vm, reclaim, workload"),
    ("bad_unknown_run_key", "run.durration", "1.0", "known [run] keys: workload, duration, ops"),
    ("bad_unknown_machine_key", "machine.memroy", "'64M'", "known [machine] keys: cpus, memory, topology"),
    ("bad_duration_and_ops", "run", "{'duration': 1, 'ops': 10}", "exactly one of run.duration"),
    ("bad_negative_duration", "run.duration", "-1.5", "seconds > 0"),
    ("bad_seed_type", "run.seed", "'one'", "an int >= 0"),
    ("bad_sample_interval", "run.sample_interval", "0.001", "seconds, 0.01..10.0"),
    ("bad_warmup", "run.warmup", "3.5", "< run.duration (2.0)"),
    ("bad_cpus_zero", "machine.cpus", "= 0:", '"all" (every CPU this host allows), a count 1..'),
    ("bad_cpus_empty", "machine.cpus", "= []:", "a non-empty list of distinct host CPU ids"),
    ("bad_cpus_duplicate", "machine.cpus", "[0, 1, 0]", "CPU 0 is listed twice"),
    ("bad_cpus_word", "machine.cpus", "'some'", '"all" (every CPU this host allows)'),
    ("bad_memory_unaligned", "machine.memory", "4194305", "a multiple of 4 KiB (4096 bytes) between 4 MiB and 64 GiB"),
    ("bad_memory_small", "machine.memory", "'2M'", "between 4 MiB and 64 GiB"),
    ("bad_memory_big", "machine.memory", "'128G'", "between 4 MiB and 64 GiB"),
    ("bad_memory_suffix", "machine.memory", "'64MB'", "suffix K/M/G or KiB/MiB/GiB"),
    ("bad_topology_fake_zero", "machine.topology", "'fake:0'", '"fake:N:D" (N nodes, an int 1..64; D the distance'),
    ("bad_topology_fake_word", "machine.topology", "'fake:x'", '"fake:N:D" (N nodes, an int 1..64; D the distance'),
    ("bad_lock_hold_sample", "machine.lock_hold_sample", "= 3:", "a power of two 1..1024"),
    ("bad_workload_key", "workload.modee", "'shared'",
     "known parameters of workload 'storm': mode, false_sharing, stride"),
    ("bad_workload_type", "workload.stride", "True", "an int (not a bool)"),
    ("bad_workload_choice", "workload.mode", "'global'", 'one of "percpu", "shared"'),
    ("bad_workload_validate", "workload.false_sharing", "True", 'false_sharing = true needs mode = "percpu"'),
]


@pytest.mark.parametrize(("name", "key", "value", "allowed"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file(name: str, key: str, value: str, allowed: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        load(name)
    expect_error(ei.value, str(fixture(name)), key, value, allowed)


def test_toml_syntax_error_names_line_and_column() -> None:
    path = fixture("bad_syntax")
    with pytest.raises(ScenarioError) as ei:
        load_scenario(path, REGISTRY)
    expect_error(ei.value, str(path), "<toml>", "'duration = = 1'", "valid TOML")
    assert "line 3, column" in str(ei.value)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere.toml")
    with pytest.raises(ScenarioError) as ei:
        load_scenario(path, REGISTRY)
    expect_error(ei.value, path, "<file>", repr(path), "an existing scenario TOML file")
    assert ei.value.value == path


def test_directory_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as ei:
        load_scenario(tmp_path, REGISTRY)
    expect_error(ei.value, str(tmp_path), "<file>", str(tmp_path), "not a directory")


@pytest.mark.parametrize(
    "override",
    ["machine.cpus", "=2", "cpus=2", "bogus.x=1", "machine.cpus.x=1", "run=3", "name.x=a", "machine. cpus=2"],
)
def test_malformed_override(override: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        load("good_minimal", override)
    assert ei.value.file == COMMAND_LINE
    expect_error(ei.value, COMMAND_LINE, ei.value.key, repr(override), '"section.key=value"')


def test_bad_override_value_is_blamed_on_the_command_line() -> None:
    with pytest.raises(ScenarioError) as ei:
        load("good_minimal", "machine.cpus=0")
    expect_error(ei.value, COMMAND_LINE, "machine.cpus", "= 0:", "a count 1..")
    with pytest.raises(ScenarioError) as ei:
        load("good_minimal", "machine.memory=3M")
    expect_error(ei.value, COMMAND_LINE, "machine.memory", "'3M'", "between 4 MiB and 64 GiB")
    with pytest.raises(ScenarioError) as ei:
        load("good_minimal", "workload.colour=red")
    expect_error(ei.value, COMMAND_LINE, "workload.colour", "'red'", "known parameters of workload 'storm'")


def test_override_into_a_non_table_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('machine = 3\n[run]\nworkload = "storm"\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(path, REGISTRY, ["machine.cpus=2"])
    expect_error(ei.value, COMMAND_LINE, "machine.cpus", "2", "machine is not a table")


def test_section_must_be_a_table(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('workload = "storm"\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(path, REGISTRY)
    expect_error(ei.value, str(path), "workload", "'storm'", "the workload's name goes in [run]")


def test_required_workload_param_missing(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[run]\nworkload = "needy"\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(path, REGISTRY)
    expect_error(ei.value, str(path), "workload.size", "<missing>", "required by workload 'needy': an int")
    assert load_scenario(path, REGISTRY, ["workload.size=3"]).workload == NeedyParams(size=3)


def test_param_less_workload_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[run]\nworkload = "plain"\n[workload]\nx = 1\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(path, REGISTRY)
    expect_error(ei.value, str(path), "workload.x", "1", "this workload takes no parameters")


@pytest.mark.parametrize(
    ("line", "key", "allowed"),
    [
        ('name = "has space"', "name", "letters, digits"),
        ("description = 3", "description", "a string"),
        ("[run]\nworkload = \"storm\"\nops = 1.5", "run.ops", "an int > 0"),
        ("[run]\nworkload = \"storm\"\nduration = inf", "run.duration", "finite"),
        ("[run]\nworkload = \"storm\"\n[machine]\ncpus = true", "machine.cpus", '"all"'),
        ("[run]\nworkload = \"storm\"\n[machine]\ncpus = [0, -1]", "machine.cpus", "ints >= 0"),
        ("[run]\nworkload = \"storm\"\n[machine]\nlock_stat = 1", "machine.lock_stat", "true or false"),
        ("[run]\nworkload = \"storm\"\n[machine]\nremote_access_ns = -5", "machine.remote_access_ns", "int >= 0"),
        ("[run]\nworkload = \"storm\"\n[machine]\ntopology = \"nowhere.toml\"", "machine.topology", "is not a file"),
        ("[run]\nworkload = \"storm\"\n[workload]\nlevel = 4", "workload.level", "one of 1, 2, 3"),
        ("[run]\nworkload = \"storm\"\n[workload]\nlevel = true", "workload.level", "one of 1, 2, 3"),
        ("[run]\nworkload = \"storm\"\n[workload]\nratio = \"half\"", "workload.ratio", "a float"),
        ("[run]\nworkload = \"storm\"\n[workload]\ncpu_list = [1, true]", "workload.cpu_list", "an array"),
    ],
)
def test_more_bad_values(tmp_path: Path, line: str, key: str, allowed: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(line + ("" if "[run]" in line else '\n[run]\nworkload = "storm"') + "\n")
    with pytest.raises(ScenarioError) as ei:
        load_scenario(path, REGISTRY)
    assert ei.value.file == str(path)
    assert ei.value.key == key
    assert allowed in str(ei.value)


# ------------------------------------------------------------------------- good path


def test_defaults_filled() -> None:
    s = load("good_minimal")
    assert s.name == "good_minimal"
    assert s.description == ""
    assert s.file == str(fixture("good_minimal").resolve())
    assert s.run == RunSpec(workload="storm", duration=5.0, ops=None, seed=1, sample_interval=0.1, warmup=0.0)
    assert s.machine == MachineSpec(cpus="all", memory=64 << 20, topology="host", lock_stat=True,
                                    lock_hold_sample=8, remote_access_ns=0)
    assert s.workload == StormParams()


def test_every_key_explicit() -> None:
    s = load("good_full")
    assert (s.name, s.description) == ("full-example.v2", "every key set explicitly")
    assert s.run == RunSpec(workload="storm", duration=2.0, ops=None, seed=7, sample_interval=0.5, warmup=0.25)
    assert isinstance(s.run.duration, float)
    assert s.machine == MachineSpec(cpus=(1, 0), memory=128 << 20, topology="fake:4", lock_stat=False,
                                    lock_hold_sample=1, remote_access_ns=150)
    assert s.workload == StormParams(mode="shared", stride=128, ratio=2.0, label="wide", cpu_list=(3, 1, 2), level=2)
    assert isinstance(s.workload.ratio, float)


def test_ops_instead_of_duration() -> None:
    s = load("good_ops")
    assert (s.run.duration, s.run.ops, s.machine.cpus) == (None, 1000, 2)
    assert s.workload == PlainParams()


def test_overrides_applied() -> None:
    s = load("good_minimal", "machine.cpus=2", "run.duration=1", "workload.false_sharing=true",
             "machine.memory=1G", "machine.topology=fake:2", "name=renamed", "run.seed = 42",
             "machine.cpus=[3, 1]", 'workload.label="a=b"')
    assert s.name == "renamed"
    assert (s.run.duration, s.run.seed) == (1.0, 42)
    assert (s.machine.cpus, s.machine.memory, s.machine.topology) == ((3, 1), 1 << 30, "fake:2")
    assert s.workload == StormParams(false_sharing=True, label="a=b")


def test_override_run_length_replaces_the_files() -> None:
    assert load("good_full", "run.ops=500").run.duration is None
    assert load("good_full", "run.ops=500").run.ops == 500
    s = load("good_ops", "run.duration=3")
    assert (s.run.duration, s.run.ops) == (3.0, None)
    with pytest.raises(ScenarioError) as ei:
        load("good_ops", "run.duration=3", "run.ops=4")
    expect_error(ei.value, COMMAND_LINE, "run", "'ops': 4", "exactly one of")


def test_override_workload_drops_the_files_params() -> None:
    s = load("good_full", "run.workload=plain")
    assert (s.run.workload, s.workload) == ("plain", PlainParams())
    s = load("good_ops", "run.workload=storm", "workload.stride=8")
    assert s.workload == StormParams(stride=8)
    # naming the same workload keeps the file's parameters
    assert load("good_full", "run.workload=storm").workload.mode == "shared"


def test_override_can_cause_a_cross_field_error() -> None:
    with pytest.raises(ScenarioError) as ei:
        load("good_full", "workload.false_sharing=true")
    expect_error(ei.value, COMMAND_LINE, "workload.false_sharing", "True", "needs mode")


def test_override_value_parsing() -> None:
    # A TOML value where it parses, otherwise the bare text; a smuggled second key stays text.
    assert load("good_minimal", "workload.label=1\nstride = 2").workload.label == "1\nstride = 2"
    assert load("good_minimal", "workload.label=all").workload.label == "all"
    with pytest.raises(ScenarioError) as ei:
        load("good_minimal", "workload.label=5")
    expect_error(ei.value, COMMAND_LINE, "workload.label", "5", "a string")


def test_topology_path_resolved_relative_to_scenario_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scen_dir = tmp_path / "scenarios"
    (scen_dir / "topo").mkdir(parents=True)
    topo_file = scen_dir / "topo" / "two.toml"
    topo_file.write_text("# a topology file; its contents are the coordinator's business\n")
    path = scen_dir / "s.toml"
    path.write_text('[run]\nworkload = "storm"\n[machine]\ntopology = "topo/two.toml"\n')
    monkeypatch.chdir(tmp_path)  # the cwd must not matter for a path written in the file
    s = load_scenario(path, REGISTRY)
    assert s.machine.topology == str(topo_file.resolve())
    assert Path(s.machine.topology).is_absolute()
    # a path typed on the command line is relative to where it was typed
    s = load_scenario(path, REGISTRY, ["machine.topology=scenarios/topo/two.toml"])
    assert s.machine.topology == str(topo_file.resolve())


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [("1G", 1 << 30), ("512MiB", 512 << 20), (4194304, 4 << 20), ("64m", 64 << 20), ("2 gib", 2 << 30),
     ("8192k", 8 << 20), ("4194304", 4 << 20)],
)
def test_memory_parsing(text: str | int, nbytes: int) -> None:
    override = f"machine.memory={text!r}" if isinstance(text, str) else f"machine.memory={text}"
    assert load("good_minimal", override.replace("'", '"')).machine.memory == nbytes
    assert parse_size(text, "f.toml", "k") == nbytes


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1.5G", "64MB", "64T", "", "G", None])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ScenarioError) as ei:
        parse_size(bad, "f.toml", "x.size")
    expect_error(ei.value, "f.toml", "x.size", repr(bad), "KiB/MiB/GiB")


def test_default_name_from_awkward_stem(tmp_path: Path) -> None:
    path = tmp_path / "my run (2).toml"
    path.write_text('[run]\nworkload = "storm"\n')
    assert load_scenario(path, REGISTRY).name == "my_run__2_"


def test_scenario_to_dict_is_json_and_complete() -> None:
    s = load("good_full")
    d = scenario_to_dict(s)
    assert json.loads(json.dumps(d)) == d
    assert d["machine"]["cpus"] == [1, 0]
    assert d["workload"]["cpu_list"] == [3, 1, 2]
    assert d["run"] == {"workload": "storm", "duration": 2.0, "ops": None, "seed": 7,
                        "sample_interval": 0.5, "warmup": 0.25, "watchdog": 10.0,
                        "check_interval": 0.0}
    assert set(d) == {"name", "description", "file", "run", "machine", "numa", "slab", "vm", "workload", "kernel",
                      "locks", "events"}
    assert d["locks"] == {"spinlock": "tas", "classes": {}}
    assert d["events"] == []


def test_scenario_hash_stable(tmp_path: Path) -> None:
    h = scenario_hash(load("good_full"))
    assert len(h) == 16
    int(h, 16)
    assert scenario_hash(load("good_full")) == h
    # the same experiment under another name, description or directory hashes the same
    copy = tmp_path / "elsewhere.toml"
    shutil.copy(fixture("good_full"), copy)
    assert scenario_hash(load_scenario(copy, REGISTRY, ["name=other", "description=moved"])) == h
    # anything that changes what runs changes the hash
    assert scenario_hash(load("good_full", "run.seed=8")) != h
    assert scenario_hash(load("good_full", "workload.level=3")) != h
    assert scenario_hash(load("good_full", "machine.memory=256M")) != h


def test_with_overrides_matches_load() -> None:
    s = load("good_full")
    assert with_overrides(s, REGISTRY, []) == s
    assert with_overrides(s, REGISTRY, ["machine.cpus=4", "run.ops=9"]) == load("good_full", "machine.cpus=4",
                                                                                  "run.ops=9")
    with pytest.raises(ScenarioError) as ei:
        with_overrides(s, REGISTRY, ["machine.lock_hold_sample=6"])
    expect_error(ei.value, COMMAND_LINE, "machine.lock_hold_sample", "6", "a power of two")


def test_specs_are_frozen() -> None:
    s = load("good_minimal")
    with pytest.raises(AttributeError):
        s.machine.memory = 1  # type: ignore[misc]


def test_watchdog_key(tmp_path: Path) -> None:
    p = tmp_path / "w.toml"
    p.write_text('[run]\nworkload = "storm"\nwatchdog = 0\n')
    assert load_scenario(p, REGISTRY).run.watchdog == 0.0
    p.write_text('[run]\nworkload = "storm"\nwatchdog = 0.1\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p, REGISTRY)
    assert ei.value.key == "run.watchdog" and "0.5..3600" in str(ei.value)


def test_numa_section_and_mm_machine_keys(tmp_path: Path) -> None:
    p = tmp_path / "n.toml"
    p.write_text('[run]\nworkload = "storm"\n[machine]\nmax_page_order = 8\npcp = false\npcp_batch = 4\n'
                 '[numa]\npolicy = "interleave=all"\ncpu_policy = {"1" = "bind=1"}\nweights = [3, 1]\n')
    s = load_scenario(p, REGISTRY)
    assert s.numa.policy == "interleave=all" and s.numa.cpu_policy == ((1, "bind=1"),)
    assert s.numa.weights == (3, 1)
    assert s.machine.max_page_order == 8 and s.machine.pcp is False and s.machine.pcp_batch == 4
    d = scenario_to_dict(s)
    assert d["numa"]["cpu_policy"] == {"1": "bind=1"}
    for bad, key in (('[numa]\npolicy = ""\n', "numa.policy"),
                     ('[numa]\ncpu_policy = {"x" = "local"}\n', "numa.cpu_policy.x"),
                     ("[numa]\nweights = [0]\n", "numa.weights"),
                     ("[machine]\nmax_page_order = 16\n", "machine.max_page_order"),
                     ("[machine]\npcp = 1\n", "machine.pcp")):
        p.write_text('[run]\nworkload = "storm"\n' + bad)
        with pytest.raises(ScenarioError) as ei:
            load_scenario(p, REGISTRY)
        assert ei.value.key == key


def test_slab_section(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[run]\nworkload = "storm"\n[slab]\nmag_size = 0\ndebug = "FZPU,kmalloc-64"\n')
    s = load_scenario(p, REGISTRY)
    assert s.slab.mag_size == 0 and s.slab.debug == "FZPU,kmalloc-64" and s.slab.max_order == 3
    for bad, key in (("[slab]\nmag_size = 200\n", "slab.mag_size"), ('[slab]\ndebug = "Q"\n', "slab.debug"),
                     ("[slab]\nbogus = 1\n", "slab.bogus")):
        p.write_text('[run]\nworkload = "storm"\n' + bad)
        with pytest.raises(ScenarioError) as ei:
            load_scenario(p, REGISTRY)
        assert ei.value.key == key


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("mm", '"forks"', '"processes"'), ("fault_locking", '"rcu"', '"mmap_lock", "per_vma" or "speculative"'),
    ("pgtable_levels", "3", "4 or 5"), ("tlb_ways", "7", "dividing tlb_entries"), ("pcid", "1", "true or false"),
    ("mmap_min_addr", "100", "multiple of 4096"), ("colour", '"red"', "known [vm] keys"),
])
def test_vm_section_rejects_bad_values(tmp_path: Path, key: str, value: str, allowed: str) -> None:
    f = tmp_path / "vm.toml"
    f.write_text(f'[run]\nworkload = "storm"\n[vm]\n{key} = {value}\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(f, REGISTRY)
    assert str(f) in str(ei.value) and f"vm.{key}" in str(ei.value) and allowed in str(ei.value)


def test_vm_section_round_trips(tmp_path: Path) -> None:
    f = tmp_path / "vm.toml"
    f.write_text('[run]\nworkload = "storm"\n[vm]\nmm = "threads"\nfault_locking = "mmap_lock"\npcid = false\n')
    s = load_scenario(f, REGISTRY, ["vm.tlb_entries=64", "vm.tlb_ways=4"])
    assert s.vm.as_dict() == {"mm": "threads", "fault_locking": "mmap_lock", "pcid": False, "tlb_entries": 64,
                              "tlb_ways": 4}
    assert scenario_to_dict(s)["vm"]["mm"] == "threads"
def test_locks_section_selects_spinlock_kind(tmp_path: Path) -> None:
    """[locks]: a global kind plus per-class overrides; recorded in the dict and hash only
    when set, so scenarios without the section keep their hash."""
    p = tmp_path / "l.toml"
    p.write_text('[run]\nworkload = "storm"\n[locks]\nspinlock = "qspinlock"\n'
                 'classes = { "&zone->lock" = "tas", "slab_mutex" = "qspinlock" }\n')
    s = load_scenario(p, REGISTRY)
    assert s.locks.spinlock == "qspinlock"
    assert s.locks.classes == (("&zone->lock", "tas"), ("slab_mutex", "qspinlock"))
    assert scenario_to_dict(s)["locks"] == {"spinlock": "qspinlock",
                                            "classes": {"&zone->lock": "tas", "slab_mutex": "qspinlock"}}
    p.write_text('[run]\nworkload = "storm"\n')
    plain = load_scenario(p, REGISTRY)
    assert plain.locks.spinlock == "tas" and plain.locks.classes == ()
    assert scenario_hash(s) != scenario_hash(plain)
    tas = load_scenario(p, REGISTRY, ['locks.spinlock="tas"'])   # the default, spelled out
    assert scenario_hash(tas) == scenario_hash(plain)
    q = load_scenario(p, REGISTRY, ["locks.spinlock=qspinlock"])
    assert q.locks.spinlock == "qspinlock"
    assert with_overrides(s, REGISTRY, []) == s
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p, REGISTRY, ["locks.spinlock=ticket"])
    expect_error(ei.value, COMMAND_LINE, "locks.spinlock", "'ticket'", '"tas" or "qspinlock"')
    for bad, key, allowed in (('[locks]\nspinlock = "mcs"\n', "locks.spinlock", '"tas" or "qspinlock"'),
                              ('[locks]\nclasses = { "&zone->lock" = "fast" }\n', "locks.classes.&zone->lock",
                               '"tas" or "qspinlock"'),
                              ('[locks]\nclasses = "qspinlock"\n', "locks.classes", "a table of lock class = kind"),
                              ('[locks]\nclasses = { "' + "x" * 33 + '" = "tas" }\n', "locks.classes." + "x" * 33,
                               "1..32 bytes"),
                              ("[locks]\nkind = 1\n", "locks.kind", "known [locks] keys: spinlock, classes")):
        p.write_text('[run]\nworkload = "storm"\n' + bad)
        with pytest.raises(ScenarioError) as ei:
            load_scenario(p, REGISTRY)
        assert ei.value.key == key and allowed in str(ei.value) and ei.value.file == str(p)
