"""arch/topology.py: sysfs parsing, fake NUMA, topology files, CPU mapping and rendering."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from aerosync.arch import topology as T
from aerosync.errors import TopologyError, UsageError

FIX = Path(__file__).parent / "fixtures"
SYSFS = FIX / "sysfs"
TOPO = FIX / "topology"
REPO = Path(__file__).parent.parent


@pytest.fixture
def proc(tmp_path: Path) -> str:
    """A fake /proc with meminfo, cpuinfo and a cgroup line (no cgroup tree: quota unknown)."""
    d = tmp_path / "proc"
    (d / "self").mkdir(parents=True)
    (d / "meminfo").write_text("MemTotal:       16384000 kB\nMemFree:         8000000 kB\n")
    (d / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\n")
    (d / "self" / "cgroup").write_text("0::/\n")
    return str(d)


def host_of(name: str, proc: str, allowed: tuple[int, ...] | range) -> T.HostTopology:
    return T.read_host(sysfs=str(SYSFS / name), proc=proc, allowed=tuple(allowed))


def fake_host(nr: int) -> T.HostTopology:
    """A one-node host allowing cpus 0..nr-1 (what a small VM looks like)."""
    cpus = tuple(range(nr))
    return T.HostTopology(cpus, (T.HostNode(0, cpus, 1 << 30),), ((10,),), "test", None,
                          tuple(T.HostCpu(c, c, 0, (c,)) for c in cpus))


# --- cpulist helpers ----------------------------------------------------------------------

@pytest.mark.parametrize("text,cpus", [
    ("", ()), ("0", (0,)), ("0-3", (0, 1, 2, 3)), ("0-3,8,10-11\n", (0, 1, 2, 3, 8, 10, 11)),
    ("0-7:2/4", (0, 1, 4, 5)), ("3,1,2", (1, 2, 3)),
])
def test_parse_cpulist(text: str, cpus: tuple[int, ...]) -> None:
    assert T.parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["a", "3-1", "-1", "1-", "0-3:0/2"])
def test_parse_cpulist_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        T.parse_cpulist(text)


def test_format_cpulist_round_trip() -> None:
    assert T.format_cpulist([11, 0, 1, 2, 3, 8, 10, 3]) == "0-3,8,10-11"
    assert T.format_cpulist([]) == ""
    assert T.parse_cpulist(T.format_cpulist([0, 2, 4, 5, 6])) == (0, 2, 4, 5, 6)


# --- host parsing -------------------------------------------------------------------------

def test_read_one_node(proc: str) -> None:
    h = host_of("one_node", proc, range(8))
    assert [(n.nid, n.cpus, n.mem_bytes) for n in h.nodes] == [(0, tuple(range(8)), 32768000 * 1024)]
    assert h.distance == ((10,),)
    assert h.allowed_cpus == tuple(range(8))
    assert h.cpu_model == "Test CPU @ 3.0GHz"
    assert h.quota is None and h.numa_sysfs
    assert h.siblings[1] == T.HostCpu(1, 1, 0, (1, 5))


def test_read_two_node(proc: str) -> None:
    h = host_of("two_node", proc, range(16))
    assert [n.nid for n in h.nodes] == [0, 1]
    assert h.nodes[0].cpus == (0, 1, 2, 3, 8, 9, 10, 11)
    assert h.nodes[1].cpus == (4, 5, 6, 7, 12, 13, 14, 15)
    assert h.distance == ((10, 21), (21, 10))
    assert h.nodes[1].mem_bytes == 33030144 * 1024
    assert h.node_of(12) == 1 and h.node_distance(0, 1) == 21
    assert h.siblings[12] == T.HostCpu(12, 0, 1, (4, 12))


def test_read_four_node(proc: str) -> None:
    h = host_of("four_node", proc, range(32))
    assert [n.cpus for n in h.nodes] == [tuple(range(8 * i, 8 * i + 8)) for i in range(4)]
    assert h.distance[0] == (10, 16, 16, 22)
    assert h.distance[3] == (22, 16, 16, 10)
    assert [n.mem_bytes >> 10 for n in h.nodes] == [16384000, 16515072, 16515072, 16252928]
    assert {s.package_id for s in h.siblings} == {0, 1}


def test_allowed_intersection_keeps_cpuless_nodes(proc: str) -> None:
    h = host_of("four_node", proc, (1, 2, 9, 40))     # 40 is not online: dropped
    assert h.allowed_cpus == (1, 2, 9)
    assert [n.cpus for n in h.nodes] == [(1, 2), (9,), (), ()]
    assert len(h.distance) == 4                      # memory of nodes 2 and 3 is still there
    assert [s.cpu for s in h.siblings] == [1, 2, 9]
    sim = T.sim_from_host(h)
    assert sim.nr_nodes == 2 and sim.distance == ((10, 16), (16, 10))
    assert sim.node_cpus == ((0, 1), (2,))


def test_no_allowed_cpu_is_an_error(proc: str) -> None:
    with pytest.raises(TopologyError, match="online"):
        host_of("two_node", proc, (64, 65))


def test_non_numa_fallback(proc: str) -> None:
    h = host_of("no_numa", proc, (0, 1, 2, 3))
    assert not h.numa_sysfs
    assert h.nodes == (T.HostNode(0, (0, 1, 2, 3), 16384000 * 1024),)
    assert h.distance == ((10,),)
    assert "no NUMA in sysfs" in T.render(h, T.sim_from_host(h))


def test_malformed_distance_names_file(proc: str, tmp_path: Path) -> None:
    root = tmp_path / "sys"
    shutil.copytree(SYSFS / "two_node", root)
    (root / "devices/system/node/node1/distance").write_text("21\n")
    with pytest.raises(TopologyError, match=r"node1/distance.*expected 2 distances"):
        T.read_host(sysfs=str(root), proc=proc, allowed=range(16))


def test_read_real_host() -> None:
    """The machine we run on parses, and its allowed set is our affinity."""
    h = T.read_host()
    assert h.allowed_cpus == tuple(sorted(os.sched_getaffinity(0)))
    assert any(n.cpus for n in h.nodes)
    json.dumps(h.to_dict())
    T.render(h, T.build_sim("host", h))


# --- simulated from host ------------------------------------------------------------------

def test_sim_from_host_round_robin_and_oversubscription(proc: str) -> None:
    h = host_of("two_node", proc, range(16))
    sim = T.sim_from_host(h)
    assert sim.nr_cpus == 16 and not sim.oversubscribed
    assert sim.host_cpu == tuple(range(16))
    assert sim.cpu_to_node == (0,) * 4 + (1,) * 4 + (0,) * 4 + (1,) * 4
    assert sim.distance == ((10, 21), (21, 10))
    assert sim.node_mem_weight == (32768000 >> 10, 33030144 >> 10)

    over = T.sim_from_host(h, nr_cpus=20)
    assert over.oversubscribed and over.nr_host_cpus() == 16
    assert over.host_cpu[16:] == (0, 1, 2, 3)
    assert over.node_of(17) == 0


def test_round_robin_small_host() -> None:
    sim = T.sim_from_host(fake_host(2), nr_cpus=5)
    assert sim.host_cpu == (0, 1, 0, 1, 0)
    assert sim.oversubscribed
    assert not T.sim_from_host(fake_host(2), nr_cpus=2).oversubscribed


def test_cpu_list_mapping_and_rejection(proc: str) -> None:
    h = host_of("two_node", proc, (0, 1, 4, 5))
    sim = T.sim_from_host(h, cpu_list=(5, 0))
    assert sim.host_cpu == (5, 0) and sim.cpu_to_node == (1, 0)
    dup = T.sim_from_host(h, cpu_list=(0, 0, 4))
    assert dup.oversubscribed
    with pytest.raises(TopologyError, match=r"cpu_list.*cpus 2-3 are not allowed.*0-1,4-5"):
        T.sim_from_host(h, cpu_list=(0, 2, 3))
    with pytest.raises(TopologyError, match="nr_cpus = 3 but cpu_list names 2"):
        T.sim_from_host(h, nr_cpus=3, cpu_list=(0, 1))
    with pytest.raises(TopologyError, match="empty"):
        T.sim_from_host(h, cpu_list=())
    with pytest.raises(TopologyError, match="nr_cpus = 0"):
        T.sim_from_host(h, nr_cpus=0)


# --- fake NUMA ----------------------------------------------------------------------------

def test_fake_two_cpus_two_nodes() -> None:
    sim = T.sim_fake(fake_host(2), 2)
    assert sim.source == "fake:2"
    assert sim.node_cpus == ((0,), (1,))
    assert sim.node_mem_weight == (1, 1)
    # linux-mm.md 4.6: fake nodes on the same physical node are 10 apart
    assert sim.distance == ((10, 10), (10, 10))


def test_fake_eight_cpus_three_nodes() -> None:
    sim = T.sim_fake(fake_host(2), 3, nr_cpus=8)
    assert [len(c) for c in sim.node_cpus] == [3, 3, 2]
    assert sim.node_cpus == ((0, 1, 2), (3, 4, 5), (6, 7))
    assert sim.host_cpu == (0, 1, 0, 1, 0, 1, 0, 1)
    assert sim.oversubscribed


def test_fake_more_nodes_than_cpus_gives_memory_only_nodes() -> None:
    sim = T.sim_fake(fake_host(2), 4)
    assert sim.node_cpus == ((0,), (1,), (), ())
    assert sim.nr_nodes == 4 and sim.node_mem_weight == (1, 1, 1, 1)
    assert "node 3 cpus: (none: memory-only node)" in T.render(fake_host(2), sim)


@pytest.mark.parametrize("n", [0, -1, 65, True])
def test_fake_rejects_bad_node_count(n: int) -> None:
    with pytest.raises(TopologyError, match=r"fake:.*1\.\.64"):
        T.sim_fake(fake_host(2), n)


def test_fake_on_two_node_host_copies_physical_distances(proc: str) -> None:
    h = host_of("two_node", proc, (0, 1, 4, 5))
    sim = T.sim_fake(h, 4)
    # One CPU per fake node; sim cpu k runs on allowed[k], so fake nodes 0,1 sit on host
    # node 0 and fake nodes 2,3 on host node 1.
    assert sim.host_cpu == (0, 1, 4, 5)
    assert sim.distance == ((10, 10, 21, 21), (10, 10, 21, 21), (21, 21, 10, 10), (21, 21, 10, 10))


# --- topology files -----------------------------------------------------------------------

def test_good_file() -> None:
    path = str(TOPO / "good_2node.toml")
    sim = T.sim_from_file(path, fake_host(2))
    assert sim.source == path
    assert sim.nr_nodes == 2 and sim.nr_cpus == 8
    assert sim.node_cpus == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert sim.distance == ((10, 21), (21, 10))
    assert sim.node_mem_weight == (3, 1)
    assert sim.host_cpu == (0, 1) * 4 and sim.oversubscribed


def test_good_file_explicit_cpus_asymmetric() -> None:
    sim = T.sim_from_file(str(TOPO / "good_explicit_cpus.toml"), fake_host(4))
    assert sim.cpu_to_node == (0, 1, 0, 1)
    assert sim.node_cpus == ((0, 2), (1, 3), ())
    assert sim.distance[0][2] == 30 and sim.distance[2][0] == 32
    assert sim.node_mem_weight == (1, 1, 1)
    assert not sim.oversubscribed


def test_example_big_4node() -> None:
    sim = T.build_sim("scenarios/topologies/big-4node.toml", fake_host(2), base_dir=str(REPO))
    assert sim.nr_nodes == 4 and sim.nr_cpus == 32
    assert sim.node_cpus[3] == tuple(range(24, 32))
    assert sim.distance[0][2] != sim.distance[2][0]
    assert sim.oversubscribed


@pytest.mark.parametrize("name,key,pattern", [
    ("bad_missing_distance.toml", "distance", "is missing"),
    ("bad_wrong_type.toml", "nodes", r"'two'.*integer 1\.\.64"),
    ("bad_not_square.toml", "distance[0]", "2 x 2"),
    ("bad_diagonal.toml", "distance[1][1]", "diagonal must be 10"),
    ("bad_off_diagonal.toml", "distance[0][1]", r"off-diagonal.*11\.\.254"),
    ("bad_unknown_key.toml", "memory_weights", "unknown key.*memory_weight"),
    ("bad_memory_weight.toml", "memory_weight[1]", "integer >= 1"),
    ("bad_cpus_gap.toml", "cpus", "missing 2"),
    ("bad_both_cpu_keys.toml", "cpus_per_node", "exactly one"),
    ("bad_syntax.toml", "", "not valid TOML"),
])
def test_bad_file(name: str, key: str, pattern: str) -> None:
    path = str(TOPO / name)
    with pytest.raises(TopologyError) as info:
        T.sim_from_file(path, fake_host(2))
    msg = str(info.value)
    assert msg.startswith(path + ": ")
    assert key in msg
    assert re.search(pattern, msg), msg
    assert isinstance(info.value, UsageError)


def test_file_nr_cpus_mismatch() -> None:
    path = str(TOPO / "good_2node.toml")
    with pytest.raises(TopologyError) as info:
        T.sim_from_file(path, fake_host(2), nr_cpus=6)
    msg = str(info.value)
    assert path in msg and "nr_cpus = 6" in msg and "8 CPUs" in msg
    assert T.sim_from_file(path, fake_host(2), nr_cpus=8).nr_cpus == 8


def test_file_cpu_list_length_mismatch() -> None:
    with pytest.raises(TopologyError, match="cpu_list names 2 host cpus"):
        T.sim_from_file(str(TOPO / "good_2node.toml"), fake_host(2), cpu_list=(0, 1))


def test_file_missing_nodes(tmp_path: Path) -> None:
    p = tmp_path / "t.toml"
    p.write_text("cpus_per_node = 1\ndistance = [[10]]\n")
    with pytest.raises(TopologyError, match=rf"{re.escape(str(p))}: nodes is missing"):
        T.sim_from_file(str(p), fake_host(1))


# --- build_sim ----------------------------------------------------------------------------

def test_build_sim_dispatch() -> None:
    h = fake_host(2)
    assert T.build_sim("host", h).source == "host"
    assert T.build_sim("fake:3", h, nr_cpus=6).nr_nodes == 3
    assert T.build_sim("good_2node.toml", h, base_dir=str(TOPO)).nr_cpus == 8


@pytest.mark.parametrize("spec", ["fake:x", "fake", "", "no/such/file.toml", "hots"])
def test_build_sim_bad_spec_lists_forms(spec: str) -> None:
    with pytest.raises(TopologyError, match=r"host.*fake:N.*toml"):
        T.build_sim(spec, fake_host(2), base_dir=str(TOPO))


# --- serialisation and rendering ----------------------------------------------------------

def test_sim_round_trip(proc: str) -> None:
    h = host_of("four_node", proc, range(32))
    for sim in (T.sim_from_host(h, nr_cpus=40), T.sim_fake(h, 3), T.sim_from_file(str(TOPO / "good_2node.toml"), h)):
        d = json.loads(json.dumps(sim.to_dict()))
        assert T.SimTopology.from_dict(d) == sim


def test_host_round_trip(proc: str) -> None:
    h = host_of("two_node", proc, range(16))
    assert T.HostTopology.from_dict(json.loads(json.dumps(h.to_dict()))) == h


def test_from_dict_checks_invariants() -> None:
    d = T.sim_fake(fake_host(2), 2).to_dict()
    d["node_cpus"] = [[0, 1], []]
    with pytest.raises(TopologyError, match="disagrees with cpu_to_node"):
        T.SimTopology.from_dict(d)
    d = T.sim_fake(fake_host(2), 2).to_dict()
    del d["distance"]
    with pytest.raises(TopologyError, match="distance"):
        T.SimTopology.from_dict(d)


def test_render(proc: str) -> None:
    h = host_of("two_node", proc, range(16))
    text = T.render(h, T.sim_from_host(h, nr_cpus=20))
    assert "cpu model:    Test CPU @ 3.0GHz" in text
    assert "node 0 cpus: 0-3,8-11" in text
    assert "node 1 size: 32256 MB" in text
    assert "node distances:\n  node   0   1\n    0:  10  21\n    1:  21  10\n" in text
    assert "cpu -> host cpu: 0-15 -> 0-15, repeated every 16 CPUs through cpu 19" in text
    assert "OVERSUBSCRIBED: 20 simulated CPUs on 16 host CPUs" in text
    assert all(line == line.rstrip() for line in text.splitlines())

    plain = T.render(h, T.sim_from_host(h))
    assert "OVERSUBSCRIBED" not in plain
    assert "cpu -> host cpu: 0-15 -> 0-15\n" in plain
    mixed = T.render(h, T.sim_from_host(h, cpu_list=(3, 4, 5, 9, 0)))
    assert "cpu -> host cpu: 0-2 -> 3-5, 3 -> 9, 4 -> 0\n" in mixed


def test_render_quota_warning() -> None:
    h = fake_host(4)
    h = T.HostTopology(h.allowed_cpus, h.nodes, h.distance, h.cpu_model, 1.5, h.siblings)
    text = T.render(h, T.sim_fake(h, 2))
    assert "cpu quota:    1.5 CPUs" in text
    assert "QUOTA: 1.5 CPUs of cgroup quota for 4 host CPUs" in text


def test_fake_numa_with_distance_override() -> None:
    host = T.read_host(str(SYSFS / "one_node"), allowed=(0, 1))
    sim = T.build_sim("fake:2:21", host, nr_cpus=2)
    assert sim.source == "fake:2:21"
    assert sim.distance == ((10, 21), (21, 10))
    assert sim.cpu_to_node == (0, 1)
    with pytest.raises(TopologyError, match=r"11\.\.254"):
        T.build_sim("fake:2:5", host, nr_cpus=2)
    with pytest.raises(TopologyError, match="must be integers"):
        T.build_sim("fake:2:x", host, nr_cpus=2)
