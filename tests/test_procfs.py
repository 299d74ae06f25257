"""Kernel-format views (issue 3): every mm view rendered, parsed back with a parser written
against the kernel's layout (linux-mm.md 8.1-8.5, numastat(8)), and compared with its JSON
twin and with figures counted independently from the arena (free-list walks, struct page
flags, zone records, and a tally the test keeps of what it allocated and freed)."""

from __future__ import annotations

import gc
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aerosync import procfs
from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.errors import UsageError
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm import vmstat as V
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import NIL, P_ZONE, PG_buddy, PG_pcp, page_array, page_off
from aerosync.mm.pmm.page_alloc import MM

NOWARN = G.__GFP_NOWARN
MT_NAMES = G.MIGRATETYPE_NAMES
ZN = G.ZONE_NAMES
NUMA_ITEMS = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node")


# ----------------------------------------------------------------------------- arenas
@pytest.fixture
def mk(machine: Callable[..., Arena]) -> Callable[..., Arena]:
    """Machines default to 8192 pages on two fake nodes here."""

    def factory(nr_pages: int = 8192, nr_cpus: int = 2, nr_nodes: int = 2, **kw: Any) -> Arena:
        return machine(nr_pages=nr_pages, nr_cpus=nr_cpus, nr_nodes=nr_nodes, **kw)

    return factory


@dataclass
class Tally:
    """What the test did, counted by the test (the numastat rules of linux-mm.md 4.4, one
    count per allocation whatever its order, as Linux's zone_statistics(..., 1); pgalloc
    counts pages)."""

    nr_zones: int
    nr_nodes: int
    zone: dict[str, list[int]] = field(default_factory=dict)     # numa_hit/miss/local/other per zid
    node: dict[str, list[int]] = field(default_factory=dict)     # NUMA_ITEMS per nid
    pgalloc: list[int] = field(default_factory=list)                  # pages per zid
    allocs: int = 0
    high_order_allocs: int = 0
    pgfree: int = 0
    fails: int = 0

    def __post_init__(self) -> None:
        self.zone = {k: [0] * self.nr_zones for k in ("numa_hit", "numa_miss", "numa_local", "numa_other")}
        self.node = {k: [0] * self.nr_nodes for k in NUMA_ITEMS}
        self.pgalloc = [0] * self.nr_zones

    def alloc(self, a: Arena, m: MM, pfn: int, order: int, preferred_nid: int, gfp: int) -> None:
        zid = a.u8[page_off(a, pfn) + P_ZONE]
        zn = zid // G.MAX_NR_ZONES
        pn = m.zonelist(preferred_nid, gfp)[0] // G.MAX_NR_ZONES       # node of the preferred zone
        self.pgalloc[zid] += 1 << order
        self.allocs += 1
        self.high_order_allocs += order > 0
        nr = 1                                          # numastat: per allocation
        if zn == pn:
            self.zone["numa_hit"][zid] += nr
            self.node["numa_hit"][zn] += nr
        else:
            self.zone["numa_miss"][zid] += nr
            self.node["numa_miss"][zn] += nr
            self.node["numa_foreign"][pn] += nr
        if zn == m.nid:
            self.zone["numa_local"][zid] += nr
            self.node["local_node"][zn] += nr
        else:
            self.zone["numa_other"][zid] += nr
            self.node["other_node"][zn] += nr


def _workload(a: Arena, seed: int = 7) -> Tally:
    """A few hundred mixed alloc/free operations on two CPUs (one per node); node 1 is small
    and is drained first so later node-1 allocations fall back to node 0 (numa_miss/foreign).
    Leaves blocks allocated and pages on the PCP lists."""
    rng = random.Random(seed)
    cpus = [MM(a, 0), MM(a, 1)]
    t = Tally(cpus[0].nr_zones, cpus[0].nr_nodes)
    live: list[tuple[int, int]] = []

    def alloc(m: MM, gfp: int, order: int, nid: int | None) -> None:
        gfp |= NOWARN
        pfn = m.alloc_pages(gfp, order) if nid is None else m.alloc_pages_node(nid, gfp, order)
        if pfn < 0:
            t.fails += 1
            return
        t.alloc(a, m, pfn, order, m.nid if nid is None else nid, gfp)
        live.append((pfn, order))

    for _ in range(160):                                   # drain node 1 (1024 pages) from its own CPU
        alloc(cpus[1], G.GFP_KERNEL | G.__GFP_MOVABLE, 3, None)
    gfps = [G.GFP_KERNEL, G.GFP_KERNEL | G.__GFP_MOVABLE, G.GFP_KERNEL | G.__GFP_RECLAIMABLE, G.GFP_DMA32,
            G.GFP_DMA, G.GFP_ATOMIC, G.GFP_KERNEL | G.__GFP_RECLAIMABLE]
    orders = [0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 9]
    for _ in range(400):
        m = rng.choice(cpus)
        if live and rng.random() < 0.42:
            pfn, order = live.pop(rng.randrange(len(live)))
            m.free_pages(pfn, order)
            t.pgfree += 1 << order
        else:
            alloc(m, rng.choice(gfps), rng.choice(orders), rng.choice([None, None, 0, 1]))
    for nid, n in ((0, 5), (1, 3)):                          # mempolicy's interleave_hit
        cpus[nid].count_numa_event(nid, Z.NUMA_INTERLEAVE_HIT, n)
        t.node["interleave_hit"][nid] += n
    return t


@pytest.fixture
def loaded(mk) -> tuple[Arena, Tally]:
    a = mk(nr_pages=8192, weights=[7, 1])
    t = _workload(a)
    rep = check(a)
    assert rep.ok, str(rep)
    return a, t


# ----------------------------------------------------------------------------- independent counts
def _free_list_walk(a: Arena, zid: int, max_order: int) -> list[list[int]]:
    """[mt][order] blocks, walking the free lists through struct page `next` links."""
    q32 = a.u32
    pm = a.off("pagemeta")
    fa = Z.zone_off(a, zid) + Z.Z_FREE_AREA
    out = []
    for mt in range(G.MIGRATE_TYPES):
        row = []
        for o in range(max_order + 1):
            pfn, n = q32[(fa + o * Z.FA_SIZE + Z.FA_LISTS + 8 * mt) >> 2], 0
            while pfn != NIL:
                n += 1
                pfn = q32[(pm + pfn * 64 + 16) >> 2]
            row.append(n)
        out.append(row)
    return out


def _flag_counts(a: Arena, nr_zones: int, max_order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(buddy blocks [zid, order], buddy pages [zid], pcp pages [zid]) from struct page flags."""
    p = page_array(a)
    flags, order, zone = p["flags"].copy(), p["order"].astype(np.int64), p["zone"].astype(np.int64)
    del p
    b = (flags & PG_buddy) != 0
    blocks = np.zeros((nr_zones, max_order + 1), dtype=np.int64)
    np.add.at(blocks, (zone[b], order[b]), 1)
    bpages = np.bincount(zone[b], weights=1 << order[b], minlength=nr_zones).astype(np.int64)
    c = (flags & PG_pcp) != 0
    ppages = np.bincount(zone[c], weights=1 << order[c], minlength=nr_zones).astype(np.int64)
    return blocks, bpages, ppages


def _geom(a: Arena) -> SimpleNamespace:
    """nr_nodes, nr_zones, nr_cpus, max_order, pb_order from the mmzones header."""
    h = a.off("mmzones")
    fields = {"nr_nodes": Z.G_NR_NODES, "nr_zones": Z.G_NR_ZONES, "nr_cpus": Z.G_NR_CPUS,
              "max_order": Z.G_MAX_ORDER, "pb_order": Z.G_PB_ORDER}
    return SimpleNamespace(**{k: a.u64[(h + f) >> 3] for k, f in fields.items()})


# ----------------------------------------------------------------------------- parsers (kernel layouts)
BUDDY_RE = re.compile(r"^Node (\d+), zone (?P<zone>[ \w]{8}) (?P<counts>(?:[ \d]{5}\d )+)$")


def parse_buddyinfo(text: str) -> list[tuple[int, str, list[int]]]:
    """/proc/buddyinfo: "Node %d, zone %8s " then "%6lu " per order (linux-mm.md 8.1)."""
    assert text.endswith("\n")
    out = []
    for line in text.splitlines():
        m = BUDDY_RE.match(line)
        assert m, f"buddyinfo line not in kernel layout: {line!r}"
        cnt = m["counts"]
        out.append((int(m[1]), m["zone"].strip(), [int(cnt[i : i + 6]) for i in range(0, len(cnt), 7)]))
    return out


PT_FREE_HDR = re.compile(r"^Free pages count per migrate type at order  (?P<orders>(?:[ \d]{5}\d )+)$")
PT_FREE_ROW = re.compile(r"^Node (?P<node>[ \d]{3}\d), zone (?P<zone>[ \w]{8}), type (?P<type>[ \w]{12}) "
                         r"(?P<counts>(?:(?:>|)[ \d]{5}\d )+)$")
PT_BLK_HDR = re.compile(r"^Number of blocks type  (?P<types>(?:[ \w]{12} )+)$")
PT_BLK_ROW = re.compile(r"^Node (?P<node>\d+), zone (?P<zone>[ \w]{8}) (?P<counts>(?:[ \d]{11}\d )+)$")


def parse_pagetypeinfo(text: str) -> dict[str, Any]:
    """/proc/pagetypeinfo (linux-mm.md 8.2), repeated per node with memory."""
    lines = text.splitlines()
    out: dict[str, Any] = {"free": {}, "blocks": {}, "orders": None, "types": None, "pb": set()}
    i = 0
    while i < len(lines):
        m = re.match(r"^Page block order: (\d+)$", lines[i])
        assert m, lines[i]
        m2 = re.match(r"^Pages per block:  (\d+)$", lines[i + 1])
        assert m2 and lines[i + 2] == "", lines[i + 1 : i + 3]
        out["pb"].add((int(m[1]), int(m2[1])))
        h = PT_FREE_HDR.match(lines[i + 3])
        assert h, lines[i + 3]
        out["orders"] = [int(x) for x in h["orders"].split()]
        i += 4
        while (r := PT_FREE_ROW.match(lines[i])) is not None:
            counts = [int(x.strip().lstrip(">")) for x in re.findall(r">?[ \d]{5}\d ", r["counts"])]
            out["free"][(int(r["node"]), r["zone"].strip(), r["type"].strip())] = counts
            i += 1
        assert lines[i] == "", lines[i]
        h = PT_BLK_HDR.match(lines[i + 1])
        assert h, lines[i + 1]
        tys = h["types"]
        out["types"] = [tys[k : k + 12].strip() for k in range(0, len(tys), 13)]
        i += 2
        while i < len(lines) and (r := PT_BLK_ROW.match(lines[i])) is not None:
            c = r["counts"]
            out["blocks"][(int(r["node"]), r["zone"].strip())] = [int(c[k : k + 12]) for k in range(0, len(c), 13)]
            i += 1
    return out


ZI_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("zone", re.compile(r"^Node (\d+), zone (?P<zone>[ \w]{8})$")),
    ("pernode", re.compile(r"^  per-node stats$")),
    ("pages_free", re.compile(r"^  pages free     (\d+)$")),
    ("wm", re.compile(r"^        (boost|min|low|high|promo|spanned|present|managed|cma) {2,6}(\d+)$")),
    ("protection", re.compile(r"^        protection: \((\d+(?:, \d+)*)\)$")),
    ("counter", re.compile(r"^      ([a-z_]+) +(\d+)$")),
    ("pagesets", re.compile(r"^  pagesets$")),
    ("cpu", re.compile(r"^    cpu: (\d+)$")),
    ("pcp", re.compile(r"^              (count|high|batch|high_min|high_max): +(\d+)$")),
    ("threshold", re.compile(r"^  vm stats threshold: (\d+)$")),
    ("tail", re.compile(r"^  (node_unreclaimable|start_pfn): +(\d+)$")),
]


def parse_zoneinfo(text: str) -> list[dict[str, Any]]:
    """/proc/zoneinfo (mm/vmstat.c zoneinfo_show_print, 6.18/6.19); every line must be one
    of the kernel's."""
    zones: list[dict[str, Any]] = []
    target: dict[str, int] | None = None
    for line in text.splitlines():
        for kind, pat in ZI_PATTERNS:  # noqa: B007 -- `kind` is used after the loop
            m = pat.match(line)
            if m:
                break
        else:
            raise AssertionError(f"zoneinfo line not in kernel layout: {line!r}")
        z = zones[-1] if zones else None
        if kind == "zone":
            zones.append({"node": int(m[1]), "zone": m["zone"].strip(), "counters": {}, "pagesets": []})
            target = None
        elif kind == "pernode":
            z["node_stats"] = target = {}
        elif kind == "pages_free":
            z["pages_free"] = int(m[1])
            target = z["counters"]
        elif kind == "wm":
            assert len(line) - len(m[2]) == 17, line              # values start at column 17
            z[m[1]] = int(m[2])
        elif kind == "protection":
            z["protection"] = [int(x) for x in m[1].split(", ")]
        elif kind == "counter":
            name = m[1]
            assert line == f"      {name:<12} {m[2]}", line        # "\n      %-12s %lu"
            assert target is not None, line
            target[name] = int(m[2])
        elif kind == "cpu":
            z["pagesets"].append({"cpu": int(m[1])})
        elif kind == "pcp":
            assert line.index(m[2]) == 24, line                    # "count:    %i": values at column 24
            z["pagesets"][-1][m[1]] = int(m[2])
        elif kind == "threshold":
            z["pagesets"][-1]["vm_stats_threshold"] = int(m[1])
        elif kind == "tail":
            assert line.index(m[2]) == 23, line                    # "start_pfn:           %lu"
            z[m[1]] = int(m[2])
    return zones


def parse_vmstat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z][a-z0-9_]*) (\d+)$", line)
        assert m, line
        assert m[1] not in out
        out[m[1]] = int(m[2])
    return out


def parse_numastat_table(text: str) -> dict[str, dict[str, int]]:
    """numastat(8) default output: 16-wide left header column, 16-wide right-justified nodes."""
    lines = text.splitlines()
    width = len(lines[0])
    assert (width - 16) % 16 == 0 and lines[0][:16] == " " * 16
    nodes = [lines[0][k : k + 16].strip() for k in range(16, width, 16)]
    assert all(re.fullmatch(r"node\d+", n) for n in nodes)
    out: dict[str, dict[str, int]] = {n: {} for n in nodes}
    for line in lines[1:]:
        assert len(line) == width, line
        name = line[:16].rstrip()
        assert re.fullmatch(r"[a-z_]+", name) and line[:16] == f"{name:<16}"
        for k, n in enumerate(nodes):
            cell = line[16 + 16 * k : 32 + 16 * k]
            assert re.fullmatch(r" *\d+", cell), cell
            out[n][name] = int(cell)
    return out


# ----------------------------------------------------------------------------- exact layout, fresh arena
def test_buddyinfo_exact_layout_fresh_two_node(mk) -> None:
    a = mk(nr_pages=8192)
    # DMA [0,128) minus reserved pfn 0: orders 0..6 once; DMA32 [128,2048): orders 7..10;
    # node 0 Normal [2048,4096) and node 1 Normal [4096,8192): order-10 blocks.
    assert procfs.render(a, "buddyinfo") == (
        "Node 0, zone      DMA      1      1      1      1      1      1      1      0      0      0      0 \n"
        "Node 0, zone    DMA32      0      0      0      0      0      0      0      1      1      1      1 \n"
        "Node 0, zone   Normal      0      0      0      0      0      0      0      0      0      0      2 \n"
        "Node 1, zone   Normal      0      0      0      0      0      0      0      0      0      0      4 \n")
    assert procfs.render_json(a, "buddyinfo")[3] == {"node": 1, "zone": "Normal", "nr_free": [0] * 10 + [4]}


def test_pagetypeinfo_exact_headers(mk) -> None:
    a = mk(nr_pages=8192)
    lines = procfs.render(a, "pagetypeinfo").splitlines()
    assert lines[:5] == [
        "Page block order: 9",
        "Pages per block:  512",
        "",
        "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8"
        "      9     10 ",
        "Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      0"
        "      0      0 ",
    ]
    assert ("Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate "
            in lines)                                                   # a 6.18 kernel without CMA
    assert "Node 0, zone    DMA32            0            4            0            0            0 " in lines
    assert ("Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0"
            "      0      0 ") in lines
    assert lines.count("Page block order: 9") == 2                       # once per node with memory


def test_numastat_exact_table(mk) -> None:
    a = mk(nr_pages=8192)
    m0 = MM(a, 0)
    for _ in range(3):
        assert m0.alloc_pages(G.GFP_KERNEL, 0) >= 0                      # node 0: hit + local
    assert m0.alloc_pages_node(1, G.GFP_KERNEL, 1) >= 0                  # node 1: hit, other_node
    m0.count_numa_event(1, Z.NUMA_INTERLEAVE_HIT, 12345678901)
    # one count per allocation (the order-1 block counts 1), pgalloc counts its 2 pages
    assert procfs.render(a, "numastat") == (
        "                           node0           node1\n"
        "numa_hit                       3               1\n"
        "numa_miss                      0               0\n"
        "numa_foreign                   0               0\n"
        "interleave_hit                 0     12345678901\n"
        "local_node                     3               0\n"
        "other_node                     0               1\n")
    assert procfs.node_numastat_text(a, 1) == (
        "numa_hit 1\nnuma_miss 0\nnuma_foreign 0\ninterleave_hit 12345678901\nlocal_node 0\nother_node 1\n")
    v = procfs.render_json(a, "vmstat")
    assert v["numa_hit"] == 4 and v["pgalloc_normal"] + v["pgalloc_dma32"] + v["pgalloc_dma"] == 5
    with pytest.raises(UsageError, match="no node 2"):
        procfs.node_numastat_text(a, 2)


def test_zoneinfo_unpopulated_zone_stops_after_protection(mk) -> None:
    a = mk(nr_pages=8192)
    text = procfs.render(a, "zoneinfo")
    block = text.split("Node 1, zone      DMA\n")[1].split("Node 1, zone    DMA32\n")[0]
    assert block.splitlines()[-1] == "        protection: (0, 0, 0)"
    assert "pagesets" not in block
    assert text.endswith("  node_unreclaimable:  0\n  start_pfn:           4096\n")   # 6.18: no highatomic lines


# ----------------------------------------------------------------------------- round trips after a workload
def test_workload_leaves_mixed_state(loaded) -> None:
    a, t = loaded
    g = _geom(a)
    _, _, ppages = _flag_counts(a, g.nr_zones, g.max_order)
    assert ppages.sum() > 0                                             # pages on PCP lists
    assert sum(t.node["numa_miss"]) > 0 and sum(t.node["numa_foreign"]) > 0
    assert sum(t.node["other_node"]) > 0 and t.pgfree > 0
    assert any(a.u8[a.off("mmpageblock") + i] != G.MIGRATE_MOVABLE for i in range(16))   # claimed blocks


def test_buddyinfo_roundtrip(loaded) -> None:
    a, _ = loaded
    g = _geom(a)
    parsed = parse_buddyinfo(procfs.render(a, "buddyinfo"))
    js = procfs.render_json(a, "buddyinfo")
    assert [(r["node"], r["zone"], r["nr_free"]) for r in js] == parsed
    blocks, _, _ = _flag_counts(a, g.nr_zones, g.max_order)
    populated = [z for z in range(g.nr_zones) if Z.zone_info(a, z)["present"]]
    assert [(z // 3, ZN[z % 3]) for z in populated] == [(n, zn) for n, zn, _ in parsed]
    for (_, _, counts), zid in zip(parsed, populated):
        assert len(counts) == g.max_order + 1
        assert counts == blocks[zid].tolist() == Z.zone_info(a, zid)["nr_free"]


def test_pagetypeinfo_roundtrip(loaded) -> None:
    a, _ = loaded
    g = _geom(a)
    p = parse_pagetypeinfo(procfs.render(a, "pagetypeinfo"))
    js = procfs.render_json(a, "pagetypeinfo")
    assert p["pb"] == {(g.pb_order, 1 << g.pb_order)} == {(js["page_block_order"], js["pages_per_block"])}
    assert p["orders"] == list(range(g.max_order + 1))
    assert p["types"] == [*MT_NAMES, "Isolate"] == js["migratetypes"] == list(procfs.PAGETYPE_NAMES)
    assert {(r["node"], r["zone"], r["type"]): r["counts"] for r in js["free"]} == p["free"]
    assert {(r["node"], r["zone"]): [r["counts"][t] for t in p["types"]] for r in js["blocks"]} == p["blocks"]
    pb = a.array("mmpageblock", np.uint8).copy()
    for zid in range(g.nr_zones):
        info = Z.zone_info(a, zid)
        key = (zid // 3, ZN[zid % 3])
        if not info["present"]:
            assert key not in p["blocks"]
            continue
        walked = _free_list_walk(a, zid, g.max_order)
        for mt, name in enumerate(MT_NAMES):
            assert p["free"][(*key, name)] == walked[mt], (key, name)
        assert p["free"][(*key, "Isolate")] == [0] * (g.max_order + 1)
        # kernel: pfn = zone_start_pfn, step pageblock_nr_pages, type of the block holding pfn
        expect = [0] * (G.MIGRATE_TYPES + 1)
        for pfn in range(info["start_pfn"], info["start_pfn"] + info["spanned"], 1 << g.pb_order):
            expect[pb[pfn >> g.pb_order]] += 1
        assert p["blocks"][key] == expect, key
    assert sum(sum(v) for k, v in p["blocks"].items() if k[1] == "Normal") > 0
    assert any(v[G.MIGRATE_RECLAIMABLE] or v[G.MIGRATE_UNMOVABLE] for v in p["blocks"].values())


def test_pagetypeinfo_cap_prints_like_the_kernel() -> None:
    assert procfs._pt_count(99999) == " 99999 "
    assert procfs._pt_count(100000) == ">100000 "
    assert procfs._pt_count(2_000_000) == ">100000 "


def test_zoneinfo_roundtrip(loaded) -> None:
    a, t = loaded
    g = _geom(a)
    zones = parse_zoneinfo(procfs.render(a, "zoneinfo"))
    js = procfs.render_json(a, "zoneinfo")
    _, bpages, ppages = _flag_counts(a, g.nr_zones, g.max_order)
    assert len(zones) == len(js) == g.nr_zones                       # every zone of every node
    for zid, (z, j) in enumerate(zip(zones, js)):
        info = Z.zone_info(a, zid)
        assert (z["node"], z["zone"]) == (j["node"], j["zone"]) == (zid // 3, ZN[zid % 3])
        for k in ("pages_free", "boost", "min", "low", "high", "promo", "spanned", "present", "managed", "cma",
                  "protection"):
            assert z[k] == j[k], (zid, k)
        assert (z["min"], z["low"], z["high"], z["promo"]) == (info["min"], info["low"], info["high"], info["promo"])
        assert (z["spanned"], z["present"], z["managed"]) == (info["spanned"], info["present"], info["managed"])
        assert z["protection"] == info["lowmem_reserve"] and len(z["protection"]) == G.MAX_NR_ZONES
        assert z["pages_free"] == bpages[zid] == info["nr_free_pages"]
        if not info["present"]:
            assert not j["populated"] and not z["counters"] and not z["pagesets"] and "start_pfn" not in z
            continue
        assert j["populated"]
        # every zone item and NUMA event a 6.18 kernel prints, in its order
        assert list(z["counters"]) == [*V.ZONE_STAT_NAMES, *V.ZONE_NUMA_NAMES]
        assert z["counters"] == {k: j[k] for k in z["counters"]}
        assert z["counters"]["nr_free_pages"] == bpages[zid]
        assert z["counters"]["nr_free_pages_blocks"] == sum(n << o for o, n in enumerate(info["nr_free"])
                                                            if o >= g.pb_order)
        for k in ("numa_hit", "numa_miss", "numa_local", "numa_other"):
            assert z["counters"][k] == t.zone[k][zid], (zid, k)
        first = next(i for i in range(3) if Z.zone_info(a, zid // 3 * 3 + i)["present"])
        assert ("node_stats" in z) == (zid % 3 == first)               # the per-node block: first zone
        assert z["pagesets"] == j["pagesets"]
        assert [p["cpu"] for p in z["pagesets"]] == list(range(g.nr_cpus))
        counts = []
        for p in z["pagesets"]:
            po = Z.pcp_off(a, p["cpu"], zid, g.nr_zones)
            assert p["count"] == a.u64[(po + Z.PCP_COUNT) >> 3]
            assert p["high"] == a.u64[(po + Z.PCP_HIGH) >> 3]
            assert (p["high_min"], p["high_max"]) == (info["pcp_high_min"], info["pcp_high_max"])
            assert p["high"] == 0 or p["high_min"] <= p["high"] <= p["high_max"]
            assert p["batch"] == a.u64[(po + Z.PCP_BATCH) >> 3]
            counts.append(p["count"])
        assert sum(counts) == ppages[zid]                              # PCP pages by struct page flags
        assert z["start_pfn"] == info["start_pfn"] == j["start_pfn"]
        assert z["node_unreclaimable"] == 0
    for nid in range(g.nr_nodes):                                      # numa_foreign on the preferred zone
        assert sum(z["counters"].get("numa_foreign", 0) for z in zones if z["node"] == nid) == \
            t.node["numa_foreign"][nid]


def test_zoneinfo_lists_only_online_cpus(mk) -> None:
    a = mk(nr_pages=8192)
    m0 = MM(a, 0)
    m0.drain_cpu_pages(1)                                              # cpu 1 goes offline
    for z in procfs.render_json(a, "zoneinfo"):
        if z["populated"]:
            assert [p["cpu"] for p in z["pagesets"]] == [0]
    assert "    cpu: 1\n" not in procfs.render(a, "zoneinfo")
    m0.pcp_cpu_online(1)
    assert "    cpu: 1\n" in procfs.render(a, "zoneinfo")


def test_vmstat_roundtrip(loaded) -> None:
    a, t = loaded
    g = _geom(a)
    v = parse_vmstat(procfs.render(a, "vmstat"))
    js = procfs.render_json(a, "vmstat")
    assert v == js and list(v) == list(js)
    _, bpages, _ = _flag_counts(a, g.nr_zones, g.max_order)
    assert v["nr_free_pages"] == int(bpages.sum())
    kernel_names = {"numa_hit": "numa_hit", "numa_miss": "numa_miss", "numa_foreign": "numa_foreign",
                    "numa_interleave": "interleave_hit", "numa_local": "local_node", "numa_other": "other_node"}
    for vname, item in kernel_names.items():
        assert v[vname] == sum(t.node[item]), vname
        assert v[vname] == sum(n[item] for n in Z.numastat(a))
    for zi, zname in enumerate(ZN):
        assert v[f"pgalloc_{zname.lower()}"] == sum(t.pgalloc[n * 3 + zi] for n in range(g.nr_nodes))
    assert v["pgfree"] == t.pgfree == Z.vm_events(a)["pgfree"]
    assert v["aerosync_pgalloc_fail"] == t.fails
    assert v["pgalloc_normal"] > 0 and v["pgalloc_dma32"] > 0 and v["pgalloc_dma"] > 0
    # the whole v6.19 sequence (mm/vmstat.c vmstat_text): zone items, NUMA events, node
    # items, vm_stat items, events with pgalloc_* after pswpout and pgfree after pgskip_*,
    # then the deprecated nr_unstable; non-kernel events only after it, under aerosync_
    ev = list(VE.VM_EVENT_NAMES)
    ev[ev.index("pswpout") + 1 : ev.index("pswpout") + 1] = ["pgalloc_dma", "pgalloc_dma32", "pgalloc_normal",
                                                             "pgalloc_movable", "pgalloc_device"]
    ev.insert(ev.index("pgskip_device") + 1, "pgfree")
    kernel = [*V.ZONE_STAT_NAMES, "numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local",
              "numa_other", *VE.NODE_STAT_NAMES, *V.VM_STAT_NAMES, *ev, "nr_unstable"]
    names = list(v)
    assert names[: len(kernel)] == kernel
    assert all(n.startswith("aerosync_") for n in names[len(kernel):]) and "aerosync_pcp_refill" in names
    assert v["nr_memmap_boot_pages"] == 8192 * 64 // 4096             # struct pages of the machine


def test_numastat_roundtrip(loaded) -> None:
    a, t = loaded
    g = _geom(a)
    parsed = parse_numastat_table(procfs.render(a, "numastat"))
    js = procfs.render_json(a, "numastat")
    assert parsed == js
    assert list(js) == [f"node{n}" for n in range(g.nr_nodes)]
    for nid in range(g.nr_nodes):
        d = js[f"node{nid}"]
        assert list(d) == list(NUMA_ITEMS)
        assert d == {k: t.node[k][nid] for k in NUMA_ITEMS} == Z.numastat(a)[nid]
        sysfs = dict(line.split() for line in procfs.node_numastat_text(a, nid).splitlines())
        assert {k: int(x) for k, x in sysfs.items()} == d
    # every allocation (not page) is counted once as hit or miss, and once as local or other
    hit_miss = sum(d["numa_hit"] + d["numa_miss"] for d in js.values())
    loc_oth = sum(d["local_node"] + d["other_node"] for d in js.values())
    assert hit_miss == loc_oth == t.allocs
    assert t.high_order_allocs > 0 and sum(t.pgalloc) > t.allocs      # the workload tells the two apart
    assert sum(V.fold(a).zone_pgalloc) == sum(Z.zone_pgalloc(a)) == sum(t.pgalloc)
    assert sum(d["numa_foreign"] for d in js.values()) == sum(d["numa_miss"] for d in js.values())


def test_snapshot_all_is_json_and_matches_render(loaded) -> None:
    a, _ = loaded
    snap = procfs.snapshot_all(a)
    no_slub_vm_kfence = {"slabinfo", "slabtop", "vmallocinfo", "kfence_stats"}
    assert set(snap) == set(procfs.STAT_VIEWS) - no_slub_vm_kfence
    assert procfs.STAT_VIEWS[0] == "lock_stat"
    assert set(procfs.STAT_VIEWS) >= {"buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat", "numastat"}
    back = json.loads(json.dumps(snap))
    for view in snap:
        if view == "lock_stat":
            continue                                  # its hold times move with every acquisition
        assert back[view]["text"] == procfs.render(a, view), view
        assert back[view]["json"] == procfs.render_json(a, view), view


# ----------------------------------------------------------------------------- errors and saved results
def test_unknown_view_and_arena_without_mm() -> None:
    config = {"nr_cpus": 1, "nr_pages": 64}
    a = Arena.create(config, L.base_sections(1, 64))
    try:
        snap = procfs.snapshot_all(a)
        assert set(snap) == {"lock_stat"}
        for view in ("buddyinfo", "zoneinfo", "vmstat", "numastat", "pagetypeinfo"):
            with pytest.raises(UsageError, match="no initialised memory manager"):
                procfs.render(a, view)
            with pytest.raises(KeyError):
                procfs.render_json(a, view)
        with pytest.raises(procfs.ViewUnavailable) as ei:
            procfs.render(a, "slabinfoo")
        assert "no such view" in str(ei.value) and "buddyinfo" in str(ei.value)
        assert isinstance(ei.value, UsageError) and isinstance(ei.value, KeyError)
    finally:
        gc.collect()
        a.close()
        a.unlink()


def test_render_saved() -> None:
    result = {
        "views_before": {"vmstat": {"text": "pgfree 1\n", "json": {"pgfree": 1}}},
        "views_after": {"vmstat": {"text": "pgfree 9\n", "json": {"pgfree": 9}},
                        "buddyinfo": {"text": "Node 0, zone      DMA      1 \n",
                                      "json": [{"node": 0, "zone": "DMA", "nr_free": [1]}]}},
    }
    assert procfs.render_saved(result, "vmstat") == "pgfree 9\n"
    assert procfs.render_saved(result, "vmstat", when="before") == "pgfree 1\n"
    assert procfs.render_saved_json(result, "vmstat") == {"pgfree": 9}
    assert procfs.render_saved_json(result, "buddyinfo")[0]["nr_free"] == [1]
    with pytest.raises(UsageError) as ei:
        procfs.render_saved(result, "zoneinfo")
    msg = str(ei.value)
    assert "zoneinfo" in msg and "available: buddyinfo, vmstat" in msg
    with pytest.raises(UsageError, match="available: vmstat"):
        procfs.render_saved_json(result, "numastat", when="before")
    with pytest.raises(UsageError, match="allowed: before, after"):
        procfs.render_saved(result, "vmstat", when="during")
    with pytest.raises(UsageError, match="no views_after"):
        procfs.render_saved({"lock_stat": []}, "vmstat")
    with pytest.raises(UsageError, match="available: none"):
        procfs.render_saved({"views_after": {}}, "vmstat")
