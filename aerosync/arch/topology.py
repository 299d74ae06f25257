"""Host topology (from sysfs) and the simulated machine's topology (host, fake NUMA or a file).

Models: drivers/base/node.c (the /sys/devices/system/node layout, linux-mm.md 4.5),
mm/numa_emulation.c (numa=fake=N, linux-mm.md 4.6) and the ACPI SLIT distance table
(drivers/acpi/numa/srat.c:slit_valid()).  Unit: a NUMA node with its CPUs, memory share
and distances.

Two machines are described here and never confused:
  * `HostTopology`: what this process may really use — the CPUs of its affinity mask,
    grouped by the host's NUMA nodes, with the host's distances and memory.  Containers
    usually see the host's whole sysfs, so every node's CPU list is intersected with the
    allowed set; a node left with no CPUs is kept (memory-only nodes exist) with empty cpus.
  * `SimTopology`: the machine the simulated kernel believes it runs on — simulated CPUs
    numbered 0..nr_cpus-1, simulated nodes 0..nr_nodes-1, their distances and memory
    shares, and the host CPU each simulated CPU's worker is pinned to.

One selection point (`build_sim`) picks the source: "host", "fake:N" or a TOML file.
Simulated CPUs are spread over host CPUs round-robin (or an explicit cpu_list); more
simulated CPUs than host CPUs is allowed and flagged `oversubscribed` (DESIGN.md).

Distances follow the kernel: 10 (LOCAL_DISTANCE) on the diagonal.  Host distances are
taken as sysfs reports them.  Topology files must pass the SLIT rule (off-diagonal 11..254).
Fake nodes copy the distance of their physical nodes, so fake nodes carved from the same
host node are 10 apart, as numa=fake reports (linux-mm.md 4.6); use a topology file to
give fake-style nodes real distances.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from aerosync.arch.cpu import allowed_cpus as _affinity
from aerosync.arch.cpu import cpu_model as _cpu_model
from aerosync.arch.cpu import cpu_quota as _cpu_quota
from aerosync.arch.cpu import format_cpulist, parse_cpulist, read_file
from aerosync.errors import TopologyError
from aerosync.params import MAX_CPUS, MAX_NUMNODES

__all__ = [
    "LOCAL_DISTANCE",
    "REMOTE_DISTANCE",
    "TOPOLOGY_FORMS",
    "HostCpu",
    "HostNode",
    "HostTopology",
    "SimTopology",
    "build_sim",
    "format_cpulist",
    "parse_cpulist",
    "read_host",
    "render",
    "sim_fake",
    "sim_from_file",
    "sim_from_host",
]

LOCAL_DISTANCE = 10         # include/linux/topology.h
REMOTE_DISTANCE = 20
SLIT_MAX_DISTANCE = 254     # SLIT: 255 means "unreachable"; the kernel's u8 table stops there

TOPOLOGY_FORMS = (
    '"host" (the host\'s own NUMA nodes), "fake:N" (split into N fake nodes, '
    f'1..{MAX_NUMNODES}, like numa=fake=N), "fake:N:D" (the same, D = distance between '
    'fake nodes, 11..254) or the path of a topology .toml file'
)

_FILE_KEYS = ("nodes", "cpus_per_node", "cpus", "distance", "memory_weight")


# --- the host --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HostNode:
    """One host NUMA node: its CPUs that this process may use, and its MemTotal."""

    nid: int
    cpus: tuple[int, ...]       # intersected with the allowed set; empty = no usable CPU
    mem_bytes: int              # nodeN/meminfo MemTotal (advisory in VMs, pitfalls 4.4)


class HostCpu(NamedTuple):
    """One allowed host CPU's place in the package (cpuN/topology/*); -1 when unknown."""

    cpu: int
    core_id: int
    package_id: int
    thread_siblings: tuple[int, ...]    # SMT siblings sharing the core, itself included


@dataclass(frozen=True, slots=True)
class HostTopology:
    """What this process may really use: allowed CPUs grouped by the host's NUMA nodes.

    `distance[i][j]` is between `nodes[i]` and `nodes[j]` (positions, in the order of
    node/online, as each nodeN/distance line is); use `node_distance(nid, nid)` by id.
    """

    allowed_cpus: tuple[int, ...]
    nodes: tuple[HostNode, ...]
    distance: tuple[tuple[int, ...], ...]
    cpu_model: str
    quota: float | None                     # cgroup CPU quota in CPUs; None = unlimited
    siblings: tuple[HostCpu, ...]           # one per allowed CPU
    numa_sysfs: bool = True                 # False: no node directory, one node assumed

    def node_of(self, cpu: int) -> int | None:
        """The host node id holding `cpu`, None if no node lists it."""
        for node in self.nodes:
            if cpu in node.cpus:
                return node.nid
        return None

    def node_distance(self, a: int, b: int) -> int:
        """Distance between host node ids `a` and `b`."""
        pos = {n.nid: i for i, n in enumerate(self.nodes)}
        return self.distance[pos[a]][pos[b]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed_cpus": list(self.allowed_cpus),
            "nodes": [{"nid": n.nid, "cpus": list(n.cpus), "mem_bytes": n.mem_bytes} for n in self.nodes],
            "distance": [list(row) for row in self.distance],
            "cpu_model": self.cpu_model,
            "quota": self.quota,
            "siblings": [
                {"cpu": s.cpu, "core_id": s.core_id, "package_id": s.package_id,
                 "thread_siblings": list(s.thread_siblings)}
                for s in self.siblings
            ],
            "numa_sysfs": self.numa_sysfs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostTopology:
        return cls(
            allowed_cpus=tuple(d["allowed_cpus"]),
            nodes=tuple(HostNode(n["nid"], tuple(n["cpus"]), n["mem_bytes"]) for n in d["nodes"]),
            distance=tuple(tuple(row) for row in d["distance"]),
            cpu_model=d["cpu_model"],
            quota=d["quota"],
            siblings=tuple(
                HostCpu(s["cpu"], s["core_id"], s["package_id"], tuple(s["thread_siblings"]))
                for s in d["siblings"]
            ),
            numa_sysfs=d.get("numa_sysfs", True),
        )


def _read_int(path: str, default: int = -1) -> int:
    text = read_file(path)
    try:
        return int(text.strip()) if text is not None else default
    except ValueError:
        return default


def _cpulist_file(path: str) -> tuple[int, ...] | None:
    """A cpulist-format sysfs file, None if absent; TopologyError naming it if malformed."""
    text = read_file(path)
    if text is None:
        return None
    try:
        return parse_cpulist(text)
    except ValueError as exc:
        raise TopologyError(f"{path}: {text.strip()!r} is not a cpulist like '0-3,8': {exc}") from None


def _mem_total(path: str) -> int:
    """MemTotal in bytes from /proc/meminfo or nodeN/meminfo ("Node 0 MemTotal:  N kB"); 0 if absent."""
    for line in (read_file(path) or "").splitlines():
        tokens = line.split()
        if "MemTotal:" in tokens:
            i = tokens.index("MemTotal:")
            try:
                value = int(tokens[i + 1])
            except (IndexError, ValueError):
                return 0
            unit = tokens[i + 2] if len(tokens) > i + 2 else ""
            return value * 1024 if unit == "kB" else value
    return 0


def read_host(sysfs: str = "/sys", proc: str = "/proc", allowed: Iterable[int] | None = None) -> HostTopology:
    """Read the host's NUMA nodes, distances, memory and CPU siblings, limited to `allowed`.

    `allowed` defaults to this process's affinity; it is also intersected with
    cpu/online.  Without {sysfs}/devices/system/node (a kernel without CONFIG_NUMA) the
    host is one node 0 holding every allowed CPU, at distance 10, with /proc/meminfo's
    MemTotal.  Raises TopologyError, naming the file, if no CPU is usable or sysfs is
    malformed.
    """
    cpu_dir = os.path.join(sysfs, "devices", "system", "cpu")
    node_dir = os.path.join(sysfs, "devices", "system", "node")
    usable = set(_affinity() if allowed is None else allowed)
    online = _cpulist_file(os.path.join(cpu_dir, "online"))
    if online is not None:
        usable &= set(online)
    allowed_t = tuple(sorted(usable))
    if not allowed_t:
        raise TopologyError(
            f"{cpu_dir}/online: no CPU is both online and in this process's affinity mask "
            f"(online {format_cpulist(online or ())}); check taskset/cpuset"
        )

    node_ids = _cpulist_file(os.path.join(node_dir, "online"))
    if node_ids is None:
        nodes: tuple[HostNode, ...] = (HostNode(0, allowed_t, _mem_total(os.path.join(proc, "meminfo"))),)
        distance: tuple[tuple[int, ...], ...] = ((LOCAL_DISTANCE,),)
    else:
        built, rows = [], []
        for nid in node_ids:
            ndir = os.path.join(node_dir, f"node{nid}")
            cpus = _cpulist_file(os.path.join(ndir, "cpulist")) or ()
            built.append(HostNode(nid, tuple(c for c in cpus if c in usable),
                                  _mem_total(os.path.join(ndir, "meminfo"))))
            dpath = os.path.join(ndir, "distance")
            text = read_file(dpath)
            try:
                row = tuple(int(x) for x in (text or "").split())
            except ValueError:
                row = ()
            if len(row) != len(node_ids):
                raise TopologyError(
                    f"{dpath}: {(text or '').strip()!r}: expected {len(node_ids)} distances, "
                    f"one per online node ({format_cpulist(node_ids)})"
                )
            rows.append(row)
        nodes, distance = tuple(built), tuple(rows)

    siblings = []
    for cpu in allowed_t:
        tdir = os.path.join(cpu_dir, f"cpu{cpu}", "topology")
        sib = _cpulist_file(os.path.join(tdir, "thread_siblings_list"))
        siblings.append(HostCpu(cpu, _read_int(os.path.join(tdir, "core_id")),
                                _read_int(os.path.join(tdir, "physical_package_id")),
                                sib if sib else (cpu,)))
    return HostTopology(
        allowed_cpus=allowed_t,
        nodes=nodes,
        distance=distance,
        cpu_model=_cpu_model(proc),
        quota=_cpu_quota(os.path.join(sysfs, "fs", "cgroup"), proc),
        siblings=tuple(siblings),
        numa_sysfs=node_ids is not None,
    )


# --- the simulated machine -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SimTopology:
    """The simulated machine: simulated CPUs and nodes, distances, and the host CPU behind each CPU.

    Invariants (checked on construction, so from_dict() of an edited file is checked too):
      T1 len(cpu_to_node) == len(host_cpu) == nr_cpus >= 1, and nr_cpus <= MAX_CPUS;
      T2 node_cpus[n] == the sorted cpus c with cpu_to_node[c] == n (empty = memory-only node);
      T3 distance is nr_nodes x nr_nodes, 10 on the diagonal, 10..255 elsewhere;
      T4 len(node_mem_weight) == nr_nodes, every weight >= 1, 1 <= nr_nodes <= MAX_NUMNODES;
      T5 oversubscribed == (nr_cpus > number of distinct host CPUs).
    """

    source: str                                 # "host", "fake:N" or the topology file's path
    nr_nodes: int
    nr_cpus: int
    cpu_to_node: tuple[int, ...]                # simulated cpu -> simulated node
    node_cpus: tuple[tuple[int, ...], ...]      # simulated node -> simulated cpus
    distance: tuple[tuple[int, ...], ...]       # node x node
    host_cpu: tuple[int, ...]                   # simulated cpu -> host cpu its worker is pinned to
    node_mem_weight: tuple[int, ...]            # relative share of simulated RAM per node
    oversubscribed: bool

    def __post_init__(self) -> None:
        def bad(what: str) -> TopologyError:
            return TopologyError(f"simulated topology from {self.source}: {what}")

        if not 1 <= self.nr_nodes <= MAX_NUMNODES:
            raise bad(f"nr_nodes = {self.nr_nodes}, allowed 1..{MAX_NUMNODES}")
        if not 1 <= self.nr_cpus <= MAX_CPUS:
            raise bad(f"nr_cpus = {self.nr_cpus}, allowed 1..{MAX_CPUS}")
        if len(self.cpu_to_node) != self.nr_cpus or len(self.host_cpu) != self.nr_cpus:
            raise bad(f"cpu_to_node and host_cpu need {self.nr_cpus} entries")
        if any(not 0 <= n < self.nr_nodes for n in self.cpu_to_node):
            raise bad(f"cpu_to_node {list(self.cpu_to_node)} names a node outside 0..{self.nr_nodes - 1}")
        expect = tuple(tuple(c for c, n in enumerate(self.cpu_to_node) if n == nid) for nid in range(self.nr_nodes))
        if self.node_cpus != expect:
            raise bad(f"node_cpus {self.node_cpus} disagrees with cpu_to_node (expected {expect})")
        _check_matrix(self.distance, self.nr_nodes, 10, 255, bad)
        if len(self.node_mem_weight) != self.nr_nodes or any(w < 1 for w in self.node_mem_weight):
            raise bad(f"node_mem_weight = {list(self.node_mem_weight)}: need {self.nr_nodes} ints >= 1")
        if self.oversubscribed != (self.nr_cpus > len(set(self.host_cpu))):
            raise bad(f"oversubscribed = {self.oversubscribed} disagrees with host_cpu")

    def node_of(self, cpu: int) -> int:
        """The simulated node of simulated `cpu` (cpu_to_node_map in the kernel)."""
        if not 0 <= cpu < self.nr_cpus:
            raise IndexError(f"node_of: cpu {cpu} outside 0..{self.nr_cpus - 1}")
        return self.cpu_to_node[cpu]

    def nr_host_cpus(self) -> int:
        """How many distinct host CPUs the simulated CPUs are pinned to."""
        return len(set(self.host_cpu))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "nr_nodes": self.nr_nodes,
            "nr_cpus": self.nr_cpus,
            "cpu_to_node": list(self.cpu_to_node),
            "node_cpus": [list(c) for c in self.node_cpus],
            "distance": [list(r) for r in self.distance],
            "host_cpu": list(self.host_cpu),
            "node_mem_weight": list(self.node_mem_weight),
            "oversubscribed": self.oversubscribed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimTopology:
        """Inverse of to_dict(); re-checks the invariants (TopologyError if broken)."""
        try:
            return cls(
                source=str(d["source"]),
                nr_nodes=int(d["nr_nodes"]),
                nr_cpus=int(d["nr_cpus"]),
                cpu_to_node=tuple(int(x) for x in d["cpu_to_node"]),
                node_cpus=tuple(tuple(int(x) for x in c) for c in d["node_cpus"]),
                distance=tuple(tuple(int(x) for x in r) for r in d["distance"]),
                host_cpu=tuple(int(x) for x in d["host_cpu"]),
                node_mem_weight=tuple(int(x) for x in d["node_mem_weight"]),
                oversubscribed=bool(d["oversubscribed"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TopologyError(f"simulated topology record: missing or malformed field {exc}") from None


def _check_matrix(m: Any, n: int, lo: int, hi: int, bad: Any, key: str = "distance") -> None:
    """n x n ints, LOCAL_DISTANCE on the diagonal, lo..hi off it; raises bad(message)."""
    if not isinstance(m, (list, tuple)) or len(m) != n:
        raise bad(f"{key} = {m!r}: must be a {n} x {n} matrix (one row per node)")
    for i, row in enumerate(m):
        if not isinstance(row, (list, tuple)) or len(row) != n:
            raise bad(f"{key}[{i}] = {row!r}: must be a row of {n} distances ({key} must be {n} x {n})")
        for j, v in enumerate(row):
            if not isinstance(v, int) or isinstance(v, bool):
                raise bad(f"{key}[{i}][{j}] = {v!r}: must be an integer")
            if i == j and v != LOCAL_DISTANCE:
                raise bad(f"{key}[{i}][{j}] = {v!r}: the diagonal must be {LOCAL_DISTANCE} (LOCAL_DISTANCE)")
            if i != j and not lo <= v <= hi:
                raise bad(f"{key}[{i}][{j}] = {v!r}: off-diagonal distances must be {lo}..{hi}"
                          + (" (ACPI SLIT rule)" if lo > LOCAL_DISTANCE else ""))


def _host_cpus_for(host: HostTopology, nr_cpus: int | None, cpu_list: Sequence[int] | None) -> tuple[int, ...]:
    """Host CPU of each simulated CPU: cpu_list as given, else round-robin over the allowed CPUs."""
    allowed = host.allowed_cpus
    if cpu_list is not None:
        cpu_list = tuple(cpu_list)
        if not cpu_list:
            raise TopologyError(f"cpu_list is empty: name at least one of the allowed cpus {format_cpulist(allowed)}")
        outside = sorted({c for c in cpu_list if c not in allowed})
        if outside:
            raise TopologyError(
                f"cpu_list = {format_cpulist(cpu_list)}: cpus {format_cpulist(outside)} are not allowed; "
                f"this process may use cpus {format_cpulist(allowed)} (taskset/cpuset)"
            )
        if nr_cpus is not None and nr_cpus != len(cpu_list):
            raise TopologyError(
                f"nr_cpus = {nr_cpus} but cpu_list names {len(cpu_list)} cpus; give one or make them agree"
            )
        return cpu_list
    n = len(allowed) if nr_cpus is None else nr_cpus
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CPUS:
        raise TopologyError(f"nr_cpus = {nr_cpus!r}: must be an integer 1..{MAX_CPUS}")
    return tuple(allowed[i % len(allowed)] for i in range(n))


def _make(source: str, cpu_to_node: Sequence[int], nr_nodes: int, distance: Sequence[Sequence[int]],
          host_cpu: tuple[int, ...], weights: Sequence[int]) -> SimTopology:
    return SimTopology(
        source=source,
        nr_nodes=nr_nodes,
        nr_cpus=len(cpu_to_node),
        cpu_to_node=tuple(cpu_to_node),
        node_cpus=tuple(tuple(c for c, n in enumerate(cpu_to_node) if n == nid) for nid in range(nr_nodes)),
        distance=tuple(tuple(r) for r in distance),
        host_cpu=host_cpu,
        node_mem_weight=tuple(weights),
        oversubscribed=len(host_cpu) > len(set(host_cpu)),
    )


def _cpu_nodes(host: HostTopology) -> list[HostNode]:
    nodes = [n for n in host.nodes if n.cpus]
    if not nodes:  # read_host guarantees an allowed CPU, but a hand-made HostTopology may not
        raise TopologyError("host topology: no node has a CPU this process may use")
    return nodes


def _host_node_of(host: HostTopology, cpu: int) -> int:
    nid = host.node_of(cpu)
    if nid is None:
        raise TopologyError(f"host cpu {cpu} is allowed but no node's cpulist names it (sysfs inconsistent)")
    return nid


def sim_from_host(host: HostTopology, nr_cpus: int | None = None,
                  cpu_list: Sequence[int] | None = None) -> SimTopology:
    """Simulate the host's own nodes: those with allowed CPUs, renumbered 0..k-1 in order.

    Simulated cpu i runs on cpu_list[i], or allowed[i % len(allowed)] (default: one per
    allowed CPU); its node is the node of that host CPU.  Distances come from the host
    matrix; memory shares from each node's MemTotal (in MiB, at least 1).  Host nodes
    without usable CPUs are left out.
    """
    nodes = _cpu_nodes(host)
    sim_nid = {n.nid: i for i, n in enumerate(nodes)}
    host_cpu = _host_cpus_for(host, nr_cpus, cpu_list)
    cpu_to_node = [sim_nid[_host_node_of(host, h)] for h in host_cpu]
    distance = [[host.node_distance(a.nid, b.nid) for b in nodes] for a in nodes]
    weights = [max(1, n.mem_bytes >> 20) for n in nodes]
    return _make("host", cpu_to_node, len(nodes), distance, host_cpu, weights)


def sim_fake(host: HostTopology, n: int, nr_cpus: int | None = None,
             cpu_list: Sequence[int] | None = None, remote_distance: int | None = None) -> SimTopology:
    """Split the machine into `n` fake nodes, as numa=fake=N does (mm/numa_emulation.c).

    Memory is split evenly.  Simulated CPUs 0..nr_cpus-1 go to the nodes in contiguous,
    as-even-as-possible blocks (8 CPUs into 3 nodes: 3, 3, 2); with fewer CPUs than nodes
    the last nodes get none and are memory-only, as on a real host.  Simulated CPUs run on
    host CPUs round-robin (or cpu_list).

    Distances are copied from the host's table via each fake node's physical node (the
    node of its first CPU's host CPU; a memory-only fake node takes host nodes in turn),
    so fake nodes on the same host node are 10 apart: linux-mm.md 4.6, numa_emulation().
    `remote_distance` (spec "fake:N:D") overrides every off-diagonal distance with D, as
    the kernel's trailing distance list on numa=fake does, so placement experiments on a
    one-node host have a distance to pay for.
    """
    if remote_distance is not None and not 11 <= remote_distance <= 254:
        raise TopologyError(f"fake:{n}:{remote_distance}: the distance D must be 11..254 (SLIT remote distances)")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NUMNODES:
        raise TopologyError(f"fake:{n}: the number of fake nodes must be an integer 1..{MAX_NUMNODES} (numa=fake=N)")
    host_cpu = _host_cpus_for(host, nr_cpus, cpu_list)
    q, r = divmod(len(host_cpu), n)
    cpu_to_node = [nid for nid in range(n) for _ in range(q + (1 if nid < r else 0))]
    cpu_nodes = _cpu_nodes(host)
    phys = []
    for nid in range(n):
        first = next((c for c, x in enumerate(cpu_to_node) if x == nid), None)
        phys.append(cpu_nodes[nid % len(cpu_nodes)].nid if first is None else _host_node_of(host, host_cpu[first]))
    distance = [[LOCAL_DISTANCE if i == j else remote_distance or host.node_distance(phys[i], phys[j])
                 for j in range(n)] for i in range(n)]
    source = f"fake:{n}" if remote_distance is None else f"fake:{n}:{remote_distance}"
    return _make(source, cpu_to_node, n, distance, host_cpu, [1] * n)


def sim_from_file(path: str, host: HostTopology, nr_cpus: int | None = None,
                  cpu_list: Sequence[int] | None = None) -> SimTopology:
    """Read a topology TOML file (format: scenarios/topologies/big-4node.toml).

    Keys: nodes (int 1..64); exactly one of cpus_per_node (int >= 0) or cpus (one list of
    simulated CPU numbers per node, together 0..N-1 once each); distance (nodes x nodes,
    10 on the diagonal, 11..254 elsewhere, as ACPI SLIT; need not be symmetric);
    memory_weight (optional, one int >= 1 per node, default even).  Unknown keys are
    rejected.  nr_cpus, if given, must equal the file's CPU count.  Every problem raises
    TopologyError naming the file, the key, the bad value and what is allowed.
    """
    path = os.fspath(path)

    def bad(what: str) -> TopologyError:
        return TopologyError(f"{path}: {what}")

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise bad(f"no such topology file; allowed topologies: {TOPOLOGY_FORMS}") from None
    except OSError as exc:
        raise bad(f"cannot read topology file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise bad(f"not valid TOML: {exc}") from None

    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise bad(f"{unknown[0]} = {data[unknown[0]]!r}: unknown key; allowed keys: {', '.join(_FILE_KEYS)}")

    def need_int(key: str, value: Any, lo: int, hi: int | None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            raise bad(f"{key} = {value!r}: must be an integer " + (f"{lo}..{hi}" if hi is not None else f">= {lo}"))
        return value

    if "nodes" not in data:
        raise bad(f"nodes is missing: give the number of NUMA nodes, an integer 1..{MAX_NUMNODES}")
    nodes = need_int("nodes", data["nodes"], 1, MAX_NUMNODES)

    if ("cpus_per_node" in data) == ("cpus" in data):
        raise bad("give exactly one of cpus_per_node (CPUs in every node) or cpus (a list of CPU lists, "
                  "one per node)" + ("; both are set" if "cpus" in data else "; cpus_per_node is missing"))
    if "cpus_per_node" in data:
        per = need_int("cpus_per_node", data["cpus_per_node"], 0, MAX_CPUS // nodes)
        cpu_to_node = [nid for nid in range(nodes) for _ in range(per)]
        if not cpu_to_node:
            raise bad(f"cpus_per_node = {per}: the machine needs at least one CPU; allowed 1..{MAX_CPUS // nodes}")
        counted = f"cpus_per_node = {per} x nodes = {nodes}"
    else:
        lists = data["cpus"]
        if not isinstance(lists, list) or len(lists) != nodes:
            raise bad(f"cpus = {lists!r}: must be a list of {nodes} lists of CPU numbers, one per node")
        owner: dict[int, int] = {}
        for nid, cpus in enumerate(lists):
            if not isinstance(cpus, list):
                raise bad(f"cpus[{nid}] = {cpus!r}: must be a list of CPU numbers (may be empty)")
            for c in cpus:
                need_int(f"cpus[{nid}]", c, 0, MAX_CPUS - 1)
                if c in owner:
                    raise bad(f"cpus[{nid}]: cpu {c} is already in cpus[{owner[c]}]; each CPU belongs to one node")
                owner[c] = nid
        total = len(owner)
        if total == 0:
            raise bad(f"cpus = {lists!r}: the machine needs at least one CPU")
        missing = set(range(max(owner) + 1)) - set(owner)
        if missing:
            raise bad(f"cpus = {lists!r}: together the lists must number the CPUs 0..N-1 once each "
                      f"(missing {format_cpulist(missing)})")
        cpu_to_node = [owner[c] for c in range(total)]
        counted = "cpus"

    if "distance" not in data:
        raise bad(f"distance is missing: give a {nodes} x {nodes} matrix, 10 on the diagonal, "
                  f"11..{SLIT_MAX_DISTANCE} elsewhere (e.g. distance = [[10, 21], [21, 10]])")
    _check_matrix(data["distance"], nodes, LOCAL_DISTANCE + 1, SLIT_MAX_DISTANCE, bad)

    weights = data.get("memory_weight", [1] * nodes)
    if not isinstance(weights, list) or len(weights) != nodes:
        raise bad(f"memory_weight = {weights!r}: must be a list of {nodes} integers >= 1, one per node")
    for nid, w in enumerate(weights):
        need_int(f"memory_weight[{nid}]", w, 1, None)

    if nr_cpus is not None and nr_cpus != len(cpu_to_node):
        raise bad(f"nr_cpus = {nr_cpus} does not match the {len(cpu_to_node)} CPUs the file describes "
                  f"({counted}); leave nr_cpus unset or change the file")
    if cpu_list is not None and len(cpu_list) != len(cpu_to_node):
        raise bad(f"cpu_list names {len(cpu_list)} host cpus but the file describes {len(cpu_to_node)} CPUs "
                  f"({counted}); give one host cpu per simulated CPU")
    host_cpu = _host_cpus_for(host, len(cpu_to_node), cpu_list)
    return _make(path, cpu_to_node, nodes, data["distance"], host_cpu, weights)


def build_sim(spec: str, host: HostTopology, nr_cpus: int | None = None,
              cpu_list: Sequence[int] | None = None, base_dir: str = ".") -> SimTopology:
    """The one selection point: "host", "fake:N", or a topology file path (relative to base_dir)."""
    s = spec.strip()
    if s == "host":
        return sim_from_host(host, nr_cpus, cpu_list)
    if s == "fake" or s.startswith("fake:"):
        parts = s[len("fake:"):].split(":")
        try:
            if len(parts) > 2:
                raise ValueError
            n = int(parts[0])
            dist = int(parts[1]) if len(parts) == 2 else None
        except ValueError:
            raise TopologyError(f"topology = {spec!r}: N and D in fake:N[:D] must be integers; "
                                f"allowed: {TOPOLOGY_FORMS}") from None
        return sim_fake(host, n, nr_cpus, cpu_list, dist)
    if not s:
        raise TopologyError(f"topology = {spec!r}: empty; allowed: {TOPOLOGY_FORMS}")
    path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(s)))
    if not os.path.isfile(path):
        raise TopologyError(f"topology = {spec!r}: no such file {path}; allowed: {TOPOLOGY_FORMS}")
    return sim_from_file(path, host, nr_cpus, cpu_list)


# --- `aerosync topology` ---------------------------------------------------------------------

def _cpus(n: int) -> str:
    return f"{n} CPU" if n == 1 else f"{n} CPUs"


def _distance_table(nids: Sequence[int], distance: Sequence[Sequence[int]]) -> list[str]:
    """numactl --hardware's "node distances:" table, without its trailing spaces."""
    lines = ["node distances:", "node" + "".join(f" {nid:3d}" for nid in nids)]
    lines += [f"{nid:3d}:" + "".join(f" {d:3d}" for d in row) for nid, row in zip(nids, distance)]
    return lines


def _cpu_map(sim: SimTopology) -> str:
    """Simulated -> host CPU runs, compactly: "0-7 -> 0-7, 8-9 -> 0-1".

    A round-robin mapping repeats with a period; it is printed once with the period, so
    512 simulated CPUs on 2 host CPUs stay one line.
    """
    hc, n = sim.host_cpu, sim.nr_cpus
    period = next(p for p in range(1, n + 1) if all(hc[i] == hc[i % p] for i in range(p, n)))
    runs: list[str] = []
    start = 0
    for c in range(1, period + 1):
        if c < period and hc[c] == hc[c - 1] + 1:
            continue
        end = c - 1
        runs.append(f"{start} -> {hc[start]}" if start == end else f"{start}-{end} -> {hc[start]}-{hc[end]}")
        start = c
    text = ", ".join(runs)
    if period < n:
        text += f", repeated every {_cpus(period)} through cpu {n - 1}"
    return text


def render(host: HostTopology, sim: SimTopology) -> str:
    """The text of `aerosync topology`: the host block, then the simulated machine's block."""
    quota = "unlimited" if host.quota is None else f"{host.quota:g} CPUs"
    out = [
        "host" + ("" if host.numa_sysfs else " (no NUMA in sysfs: one node assumed)"),
        f"  cpu model:    {host.cpu_model}",
        f"  allowed cpus: {format_cpulist(host.allowed_cpus)} ({_cpus(len(host.allowed_cpus))})",
        f"  cpu quota:    {quota}",
        f"  available: {len(host.nodes)} nodes ({format_cpulist(n.nid for n in host.nodes)})",
    ]
    for n in host.nodes:
        out.append(f"  node {n.nid} cpus: {format_cpulist(n.cpus) or '(none usable)'}")
        out.append(f"  node {n.nid} size: {n.mem_bytes >> 20} MB")
    out += ["  " + line for line in _distance_table([n.nid for n in host.nodes], host.distance)]

    total_w = sum(sim.node_mem_weight)
    out += [
        "",
        f"simulated machine: {sim.source}",
        f"  available: {sim.nr_nodes} nodes ({format_cpulist(range(sim.nr_nodes))}), {_cpus(sim.nr_cpus)}",
    ]
    for nid, cpus in enumerate(sim.node_cpus):
        out.append(f"  node {nid} cpus: {format_cpulist(cpus) or '(none: memory-only node)'}")
        share = 100.0 * sim.node_mem_weight[nid] / total_w
        out.append(f"  node {nid} memory: weight {sim.node_mem_weight[nid]} ({share:.1f}% of RAM)")
    out.append(f"  cpu -> host cpu: {_cpu_map(sim)}")
    out += ["  " + line for line in _distance_table(range(sim.nr_nodes), sim.distance)]
    if sim.source.startswith("fake:") and any(
            d == LOCAL_DISTANCE for i, row in enumerate(sim.distance) for j, d in enumerate(row) if i != j):
        out.append("  (fake nodes carved from one host node are 10 apart, as numa=fake reports; "
                   "a topology file can give them distances)")
    used = sim.nr_host_cpus()
    if sim.oversubscribed:
        out.append(f"  OVERSUBSCRIBED: {sim.nr_cpus} simulated CPUs on {used} host CPU{'' if used == 1 else 's'} "
                   "(workers share CPUs; locks back off to sched_yield and sleep)")
    if host.quota is not None and host.quota < used:
        out.append(f"  QUOTA: {host.quota:g} CPUs of cgroup quota for {used} host CPUs; "
                   "spinning workers will be throttled")
    return "\n".join(line.rstrip() for line in out) + "\n"
