"""Kernel-format text views of an arena (the /proc files of the simulated kernel).

Each view is `fn(arena) -> str` in the kernel's own layout, with a JSON twin
`fn(arena) -> object` carrying the same figures.  The registry grows as subsystems
land; the coordinator snapshots every registered view before and after a run.
Views only read the arena: they take no lock, so figures from a live run are a racy
but untorn snapshot, as /proc's are.

Views (STAT_VIEWS) and their JSON twins:

  lock_stat     /proc/lock_stat 0.4                  lockstat.lock_stat_dict()
  buddyinfo     /proc/buddyinfo (populated zones)    [{"node", "zone", "nr_free": [per order]}]
  pagetypeinfo  /proc/pagetypeinfo, one header +     {"page_block_order", "pages_per_block",
                free table + block table per node     "migratetypes": [names], "free": [{"node",
                with memory (as the kernel prints)    "zone", "type", "counts": [per order]}],
                                                      "blocks": [{"node", "zone", "counts": {type: n}}]}
  zoneinfo      /proc/zoneinfo of a 6.18/6.19        [{"node", "zone", "populated", "pages_free", "boost",
                kernel: every zone of every node      "min", "low", "high", "promo", "spanned", "present",
                (unpopulated zones stop after         "managed", "cma", "protection": [...], on the node's
                protection), the per-node stats       first populated zone "node_stats": {...}, and when
                block, every zone and NUMA item        populated every zone item and NUMA event,
                                                      "pagesets": [{"cpu", "count", "high", "batch",
                                                      "high_min", "high_max", "vm_stats_threshold"}],
                                                      "node_unreclaimable", "start_pfn"}]
  vmstat        /proc/vmstat `name value` lines      {name: value} in the same order
  meminfo       /proc/meminfo (fs/proc/meminfo.c)    {field: kB (HugePages_* counts)}
  node_meminfo  every node's /sys/devices/system/   {"node0": {field: kB ...}, ...}
                node/nodeN/meminfo, one after another
  numastat      numastat(8)'s default table          {"node0": {numa_hit, numa_miss, numa_foreign,
                (columns node0 node1 ..., 16 wide)     interleave_hit, local_node, other_node}, ...}
                                                      (/sys/devices/system/node/nodeN/numastat;
                                                      node_numastat_text() prints that file)
  slabinfo      /proc/slabinfo 2.1, newest cache     slab_common.slabinfo_json()
                first (the slab_caches list order)
  slabtop       slabtop(1)'s table                   slab_common.slabinfo_json()
  vmallocinfo   /proc/vmallocinfo (mm/vmalloc.c):    [{"start", "end", "size", "caller", "pages",
                busy areas in address order, then     "kind": "vmalloc" | "vmap" | "vm_map_ram" |
                the unpurged (lazy) ones              "unpurged", "nodes": {nid: pages}}]
  kfence_stats  /sys/kernel/debug/kfence/stats       {name: value} in the same order
                (mm/kfence/core.c stats_show; only
                with [debug] kfence_sample_interval)

Model facts the texts state rather than invent (see mm/pmm/vmstat.py for the counting):
  * pagetypeinfo free counts come from PG_buddy heads in struct page (lock-free), not a
    locked list walk; a count of 100000 or more prints as ">100000" as in the kernel,
    the JSON twin keeps the exact count.  The Isolate row and column (MIGRATE_ISOLATE,
    CONFIG_MEMORY_ISOLATION, as a 6.18 kernel without CMA prints) are 0: nothing
    isolates pageblocks in this model.
  * zoneinfo: "cma" is 0 (no CMA); "boost" is zone->watermark_boost (page_alloc.py:
    boost_done says how long a boost lasts without kswapd); "vm stats threshold: 0"
    (counters are folded exactly on read, no per-CPU drift); node_unreclaimable 0 (no
    reclaim yet).  A CPU is listed under "pagesets" unless its per-CPU lists are
    OFFLINE (drained by hotplug); "high" is pcp->high as Linux prints it: 0 until the
    CPU first uses the list, then between high_min and high_max.
  * vmstat: events Linux has no vmstat name for are `aerosync_<event>` lines at the end,
    after the kernel's own sequence.
  * meminfo: fields no subsystem provides yet (swap, hugetlb, committed memory) are
    what a kernel without them prints; see vmstat.MEMINFO_SOURCES (vmalloc plugs in
    VmallocTotal / VmallocUsed when the arena has it).

Per-task views (TASK_VIEWS; mm/vm/task_mmu.py draws them and states their model facts):
  tasks         a ps-like list of the simulated tasks  [{"pid", "tgid", "ppid", "comm", "state",
                                                        "cpu", "mm", "tid"}]
  maps          /proc/<pid>/maps                       [{"start", "end", "perms", "offset", "dev",
                                                        "inode", "pathname"}]
  smaps         /proc/<pid>/smaps                      [maps fields + {"Size", "KernelPageSize", ...,
                                                        "Locked" (kB), "THPeligible", "VmFlags": [..]}]
  smaps_rollup  /proc/<pid>/smaps_rollup               {the summed fields + Pss_Anon/File/Shmem}
  status        /proc/<pid>/status (memory part)       {"Name", "State", "Tgid", ..., "VmPeak" (kB), ...}
  numa_maps     /proc/<pid>/numa_maps                  [{"start", "policy", "file" | "kind", "pages", "anon",
                (mm/numa/numa_maps.py draws it)          "dirty", "mapmax", "active", ..., "node": {nid: pages}}
                                                        per VMA]
A run saves them in views_before/views_after["proc"] = {"tasks": {"text", "json"},
"pids": {"<pid>": {view: {"text", "json"}}}} (snapshot_tasks; after: taken with the CPUs
parked just before the stop, while the tasks still have their address spaces).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.arena.segment import Arena
from aerosync.errors import UsageError
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import vmstat as V
from aerosync.mm.pmm.gfp import MAX_NR_ZONES, MIGRATETYPE_NAMES, ZONE_NAMES
from aerosync.sync import lockstat

__all__ = [
    "VIEWS", "STAT_VIEWS", "ViewUnavailable", "render", "render_json", "render_saved", "render_saved_json",
    "snapshot_all", "node_numastat_text", "node_meminfo_text", "PAGETYPE_CAP", "PAGETYPE_NAMES", "TASK_VIEWS",
    "PID_VIEWS", "render_task", "snapshot_tasks", "render_saved_task",
]


class ViewUnavailable(UsageError, KeyError):
    """A view name that does not exist, or an arena that lacks what the view reads.

    A UsageError (the CLI exits 2 with the message) and a KeyError (snapshot_all and
    callers that probe views skip it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------- lock_stat
def _lock_stat_text(arena: Arena) -> str:
    return lockstat.render_lock_stat(lockstat.snapshot(arena))


def _lock_stat_json(arena: Arena) -> Any:
    return lockstat.lock_stat_dict(lockstat.snapshot(arena))


# ---------------------------------------------------------------------------- mm helpers
def _require_mm(arena: Arena) -> V.MMGeometry:
    if not V.mm_ready(arena):
        raise ViewUnavailable(f"arena {arena.name}: no initialised memory manager (mm sections or mm_init missing)")
    return V.geometry(arena)


def _zones(arena: Arena, g: V.MMGeometry) -> list[dict[str, Any]]:
    out = []
    for zid in range(g.nr_zones):
        info = Z.zone_info(arena, zid)
        zo = Z.zone_off(arena, zid)
        info["reserved_highatomic"] = arena.u64[(zo + Z.Z_NR_RESERVED_HIGHATOMIC) >> 3]
        info["free_highatomic"] = arena.u64[(zo + Z.Z_NR_FREE_HIGHATOMIC) >> 3]
        info["zone"] = ZONE_NAMES[zid % MAX_NR_ZONES]
        out.append(info)
    return out


def _nodes_with_memory(zones: list[dict[str, Any]], g: V.MMGeometry) -> list[int]:
    return [n for n in range(g.nr_nodes) if any(zones[n * MAX_NR_ZONES + i]["present"] for i in range(MAX_NR_ZONES))]


# ---------------------------------------------------------------------------- buddyinfo
def _buddyinfo_json(arena: Arena) -> list[dict[str, Any]]:
    """frag_show_print(): nr_free (blocks) per order of every populated zone."""
    g = _require_mm(arena)
    return [{"node": z["nid"], "zone": z["zone"], "nr_free": [int(x) for x in z["nr_free"]]}
            for z in _zones(arena, g) if z["present"]]


def _buddyinfo_text(arena: Arena) -> str:
    return "".join(f"Node {r['node']}, zone {r['zone']:>8} " + "".join(f"{n:6d} " for n in r["nr_free"]) + "\n"
                   for r in _buddyinfo_json(arena))


# ---------------------------------------------------------------------------- pagetypeinfo
PAGETYPE_CAP = 100000          # pagetypeinfo_showfree_print stops counting a list here
PAGETYPE_NAMES = (*MIGRATETYPE_NAMES, "Isolate")   # migratetype_names[] of a 6.18 kernel without CMA


def _pagetypeinfo_json(arena: Arena) -> dict[str, Any]:
    g = _require_mm(arena)
    zones = _zones(arena, g)
    fb = V.free_blocks(arena)
    pbc = V.pageblock_counts(arena)
    free, blocks = [], []
    for nid in _nodes_with_memory(zones, g):
        for zi in range(MAX_NR_ZONES):
            zid = nid * MAX_NR_ZONES + zi
            if not zones[zid]["present"]:
                continue
            for mt, tname in enumerate(PAGETYPE_NAMES):
                counts = [int(x) for x in fb[zid, mt]] if mt < len(MIGRATETYPE_NAMES) else [0] * (g.max_order + 1)
                free.append({"node": nid, "zone": ZONE_NAMES[zi], "type": tname, "counts": counts})
            blocks.append({"node": nid, "zone": ZONE_NAMES[zi],
                           "counts": {t: int(pbc[zid, mt]) if mt < len(MIGRATETYPE_NAMES) else 0
                                      for mt, t in enumerate(PAGETYPE_NAMES)}})
    return {"page_block_order": g.pb_order, "pages_per_block": 1 << g.pb_order,
            "migratetypes": list(PAGETYPE_NAMES), "free": free, "blocks": blocks}


def _pt_count(n: int) -> str:
    return f">{PAGETYPE_CAP:6d} " if n >= PAGETYPE_CAP else f"{n:6d} "


def _pagetypeinfo_text(arena: Arena) -> str:
    """pagetypeinfo_show() per node with memory: header, showfree, showblockcount."""
    d = _pagetypeinfo_json(arena)
    norders = (len(d["free"][0]["counts"]) if d["free"] else 0)
    out = []
    for nid in sorted({r["node"] for r in d["blocks"]}):
        out.append(f"Page block order: {d['page_block_order']}\n")
        out.append(f"Pages per block:  {d['pages_per_block']}\n")
        out.append("\n")
        out.append(f"{'Free pages count per migrate type at order':<43} " + "".join(f"{o:6d} " for o in range(norders))
                   + "\n")
        for r in d["free"]:
            if r["node"] == nid:
                out.append(f"Node {nid:4d}, zone {r['zone']:>8}, type {r['type']:>12} "
                           + "".join(_pt_count(n) for n in r["counts"]) + "\n")
        out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{t:>12} " for t in d["migratetypes"]) + "\n")
        for r in d["blocks"]:
            if r["node"] == nid:
                out.append(f"Node {nid}, zone {r['zone']:>8} "
                           + "".join(f"{r['counts'][t]:12d} " for t in d["migratetypes"]) + "\n")
    return "".join(out)


# ---------------------------------------------------------------------------- zoneinfo
def _online_cpus(arena: Arena, g: V.MMGeometry) -> list[int]:
    """CPUs none of whose per-CPU page lists is OFFLINE (page_alloc_cpu_dead drained them)."""
    offline = set()
    for zid in range(g.nr_zones):
        for p in V.zone_pcp(arena, zid):
            if p["state"] not in V.PCP_ONLINE_STATES:
                offline.add(p["cpu"])
    return [c for c in range(g.nr_cpus) if c not in offline]


def _zoneinfo_json(arena: Arena) -> list[dict[str, Any]]:
    g = _require_mm(arena)
    zones = _zones(arena, g)
    st = V.fold(arena)
    nodes = V.node_stat_values(arena)
    zstats = V.zone_stat_values(arena)
    online = _online_cpus(arena, g)
    out = []
    first = {n: next((n * MAX_NR_ZONES + i for i in range(MAX_NR_ZONES) if zones[n * MAX_NR_ZONES + i]["present"]),
                     None) for n in range(g.nr_nodes)}
    for zid, z in enumerate(zones):
        r: dict[str, Any] = {"node": z["nid"], "zone": z["zone"], "populated": bool(z["present"])}
        if first[z["nid"]] == zid:
            r["node_stats"] = dict(nodes[z["nid"]])
        r.update({
            "pages_free": z["nr_free_pages"], "boost": z["watermark_boost"], "min": z["min"], "low": z["low"],
            "high": z["high"], "promo": z["promo"], "spanned": z["spanned"], "present": z["present"],
            "managed": z["managed"], "cma": 0, "protection": [int(x) for x in z["lowmem_reserve"]],
        })
        if z["present"]:
            r.update(zstats[zid])
            r.update(st.zone_numa[zid])
            pcps = V.zone_pcp(arena, zid)
            r["pagesets"] = [{"cpu": c, "count": pcps[c]["count"], "high": pcps[c]["high"],
                              "batch": pcps[c]["batch"], "high_min": pcps[c]["high_min"],
                              "high_max": pcps[c]["high_max"], "vm_stats_threshold": 0} for c in online]
            r["node_unreclaimable"] = 0
            r["start_pfn"] = z["start_pfn"]
        out.append(r)
    return out


def _zoneinfo_text(arena: Arena) -> str:
    """zoneinfo_show_print() for every zone of every node (mm/vmstat.c, 6.18/6.19 layout)."""
    out = []
    for r in _zoneinfo_json(arena):
        s = [f"Node {r['node']}, zone {r['zone']:>8}"]
        if "node_stats" in r:
            s.append("\n  per-node stats")
            s.extend(f"\n      {k:<12} {v}" for k, v in r["node_stats"].items())
        s.append(f"\n  pages free     {r['pages_free']}"
                 f"\n        boost    {r['boost']}"
                 f"\n        min      {r['min']}"
                 f"\n        low      {r['low']}"
                 f"\n        high     {r['high']}"
                 f"\n        promo    {r['promo']}"
                 f"\n        spanned  {r['spanned']}"
                 f"\n        present  {r['present']}"
                 f"\n        managed  {r['managed']}"
                 f"\n        cma      {r['cma']}")
        s.append("\n        protection: (" + ", ".join(str(x) for x in r["protection"]) + ")")
        if not r["populated"]:
            s.append("\n")
            out.append("".join(s))
            continue
        for name in (*V.ZONE_STAT_NAMES, *V.ZONE_NUMA_NAMES):
            s.append(f"\n      {name:<12} {r[name]}")
        s.append("\n  pagesets")
        for p in r["pagesets"]:
            s.append(f"\n    cpu: {p['cpu']}"
                     f"\n              count:    {p['count']}"
                     f"\n              high:     {p['high']}"
                     f"\n              batch:    {p['batch']}"
                     f"\n              high_min: {p['high_min']}"
                     f"\n              high_max: {p['high_max']}"
                     f"\n  vm stats threshold: {p['vm_stats_threshold']}")
        s.append(f"\n  node_unreclaimable:  {r['node_unreclaimable']}"
                 f"\n  start_pfn:           {r['start_pfn']}")
        s.append("\n")
        out.append("".join(s))
    return "".join(out)


# ---------------------------------------------------------------------------- vmstat
def _vmstat_json(arena: Arena) -> dict[str, int]:
    _require_mm(arena)
    return V.vmstat(arena)


def _vmstat_text(arena: Arena) -> str:
    return "".join(f"{k} {v}\n" for k, v in _vmstat_json(arena).items())


# ---------------------------------------------------------------------------- meminfo
_HUGE_COUNTS = ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp")


def _meminfo_json(arena: Arena) -> dict[str, int]:
    _require_mm(arena)
    return V.meminfo_values(arena)


def _meminfo_text(arena: Arena) -> str:
    """/proc/meminfo: each field "Name:" padded to 16 columns, the value right-aligned in 8,
    " kB" (show_val_kb); the HugePages_* counts as hugetlb_report_meminfo prints them
    ("HugePages_Total:   %5lu": label padded to 19, no unit)."""
    out = []
    for k, v in _meminfo_json(arena).items():
        if k in _HUGE_COUNTS:
            out.append(f"{k + ':':<19}{v:5d}\n")
        else:
            out.append(f"{k + ':':<16}{v:8d} kB\n")
    return "".join(out)


def _node_meminfo_json(arena: Arena) -> dict[str, dict[str, int]]:
    g = _require_mm(arena)
    return {f"node{nid}": V.node_meminfo_values(arena, nid) for nid in range(g.nr_nodes)}


def node_meminfo_text(arena: Arena, nid: int) -> str:
    """/sys/devices/system/node/node<nid>/meminfo (drivers/base/node.c:node_read_meminfo
    and hugetlb_report_node_meminfo)."""
    d = _node_meminfo_json(arena)
    if f"node{nid}" not in d:
        raise ViewUnavailable(f"node_meminfo: no node {nid}; nodes: {', '.join(d)}")
    out = []
    for k, v in d[f"node{nid}"].items():
        if k.startswith("HugePages_"):                    # "Node %d HugePages_Total: %5u"
            out.append(f"Node {nid} {k + ':':<17}{v:5d}\n")
        else:
            out.append(f"Node {nid} {k + ':':<16}{v:8d} kB\n")
    return "".join(out)


def _node_meminfo_text(arena: Arena) -> str:
    g = _require_mm(arena)
    return "".join(node_meminfo_text(arena, nid) for nid in range(g.nr_nodes))


# ---------------------------------------------------------------------------- numastat
def _numastat_json(arena: Arena) -> dict[str, dict[str, int]]:
    _require_mm(arena)
    return {f"node{nid}": d for nid, d in enumerate(V.fold(arena).node)}


def _numastat_text(arena: Arena) -> str:
    """numastat(8) with no arguments (its compatibility mode): a 16-wide blank corner and
    right-justified 16-wide node columns, item names left-justified in 16."""
    d = _numastat_json(arena)
    lines = [" " * 16 + "".join(f"{n:>16}" for n in d)]
    lines += [f"{item:<16}" + "".join(f"{v[item]:>16}" for v in d.values()) for item in Z.NUMA_NAMES]
    return "\n".join(lines) + "\n"


def node_numastat_text(arena: Arena, nid: int) -> str:
    """/sys/devices/system/node/node<nid>/numastat: one `name value` line per item."""
    d = _numastat_json(arena)
    if f"node{nid}" not in d:
        raise ViewUnavailable(f"numastat: no node {nid}; nodes: {', '.join(d)}")
    return "".join(f"{k} {v}\n" for k, v in d[f"node{nid}"].items())


# ---------------------------------------------------------------------------- registry
def _slab_ready(arena: Arena) -> None:
    if "slabcaches" not in arena.sections:
        raise ViewUnavailable(f"arena {arena.name} has no slab allocator")


def _slabinfo_text(arena: Arena) -> str:
    from aerosync.mm.slab.slab_common import slabinfo_text

    _slab_ready(arena)
    return slabinfo_text(arena)


def _slabinfo_json(arena: Arena) -> Any:
    from aerosync.mm.slab.slab_common import slabinfo_json

    _slab_ready(arena)
    return slabinfo_json(arena)


def _slabtop_text(arena: Arena) -> str:
    from aerosync.mm.slab.slab_common import slabtop_text

    _slab_ready(arena)
    return slabtop_text(arena)


def _vmalloc_ready(arena: Arena) -> None:
    from aerosync.mm.vm.vmalloc import vmalloc_ready

    if "vmalloc" not in arena.sections or not vmalloc_ready(arena):
        raise ViewUnavailable(f"arena {arena.name} has no vmalloc (no virtual memory)")


def _vmallocinfo_text(arena: Arena) -> str:
    from aerosync.mm.vm.vmalloc import vmallocinfo_text

    _vmalloc_ready(arena)
    return vmallocinfo_text(arena)


def _vmallocinfo_json(arena: Arena) -> Any:
    from aerosync.mm.vm.vmalloc import vmallocinfo_json

    _vmalloc_ready(arena)
    return vmallocinfo_json(arena)


def _kfence_ready(arena: Arena) -> None:
    from aerosync.mm.san.kfence import kfence_ready

    if not kfence_ready(arena):
        raise ViewUnavailable(f"arena {arena.name} has no KFENCE ([debug] kfence_sample_interval is 0)")


def _kfence_stats_text(arena: Arena) -> str:
    from aerosync.mm.san.kfence import kfence_stats_text

    _kfence_ready(arena)
    return kfence_stats_text(arena)


def _kfence_stats_json(arena: Arena) -> Any:
    from aerosync.mm.san.kfence import kfence_stats

    _kfence_ready(arena)
    return kfence_stats(arena)


# ---------------------------------------------------------------------------- NUMA (mm/numa)
def _numa_ready(arena: Arena) -> None:
    from aerosync.mm.numa.numa_types import numa_ready

    if not numa_ready(arena):
        raise ViewUnavailable(f"arena {arena.name} has no process-memory NUMA state (booted without [vm])")


def _numa_maps_text(arena: Arena, pid: int) -> str:
    from aerosync.mm.numa.numa_maps import numa_maps_text

    _numa_ready(arena)
    try:
        return numa_maps_text(arena, pid)
    except LookupError as e:
        raise ViewUnavailable(f"numa_maps: {e}") from None


def _numa_maps_json(arena: Arena, pid: int) -> Any:
    from aerosync.mm.numa.numa_maps import numa_maps_json

    _numa_ready(arena)
    try:
        return numa_maps_json(arena, pid)
    except LookupError as e:
        raise ViewUnavailable(f"numa_maps: {e}") from None


VIEWS: dict[str, tuple[Callable[[Arena], str], Callable[[Arena], Any]]] = {
    "lock_stat": (_lock_stat_text, _lock_stat_json),
    "buddyinfo": (_buddyinfo_text, _buddyinfo_json),
    "pagetypeinfo": (_pagetypeinfo_text, _pagetypeinfo_json),
    "zoneinfo": (_zoneinfo_text, _zoneinfo_json),
    "vmstat": (_vmstat_text, _vmstat_json),
    "meminfo": (_meminfo_text, _meminfo_json),
    "node_meminfo": (_node_meminfo_text, _node_meminfo_json),
    "numastat": (_numastat_text, _numastat_json),
    "slabinfo": (_slabinfo_text, _slabinfo_json),
    "slabtop": (_slabtop_text, _slabinfo_json),
    "vmallocinfo": (_vmallocinfo_text, _vmallocinfo_json),
    "kfence_stats": (_kfence_stats_text, _kfence_stats_json),
}
STAT_VIEWS: tuple[str, ...] = tuple(VIEWS)


def _view(view: str) -> tuple[Callable[[Arena], str], Callable[[Arena], Any]]:
    try:
        return VIEWS[view]
    except KeyError:
        raise ViewUnavailable(f"stat {view!r}: no such view; available: {', '.join(VIEWS)}") from None


def render(arena: Arena, view: str) -> str:
    """The view's kernel-format text (ViewUnavailable for an unknown view or an arena without it)."""
    return _view(view)[0](arena)


def render_json(arena: Arena, view: str) -> Any:
    """The view's JSON twin (same figures as the text)."""
    return _view(view)[1](arena)


def snapshot_all(arena: Arena) -> dict[str, dict[str, Any]]:
    """{view: {"text": ..., "json": ...}} for every view this arena supports."""
    out = {}
    for name, (text, js) in VIEWS.items():
        try:
            out[name] = {"text": text(arena), "json": js(arena)}
        except KeyError:      # the arena lacks the sections this view reads (ViewUnavailable too)
            continue
    return out


def _saved(result: dict[str, Any], view: str, when: str) -> dict[str, Any]:
    if when not in ("before", "after"):
        raise UsageError(f"stat {view!r}: when = {when!r}: allowed: before, after")
    views = result.get(f"views_{when}")
    if not isinstance(views, dict):
        raise UsageError(f"stat {view!r}: the result has no views_{when} (not an `aerosync run` result?)")
    got = views.get(view)
    if not isinstance(got, dict):
        avail = ", ".join(sorted(views)) or "none"
        raise UsageError(f"stat {view!r}: the run saved no {view} view ({when} the run); available: {avail}")
    return got


def render_saved(result: dict[str, Any], view: str, when: str = "after") -> str:
    """A view's text from a finished run's result dict (result["views_<when>"][view]["text"])."""
    got = _saved(result, view, when)
    if "text" not in got:
        raise UsageError(f"stat {view!r}: the saved {view} view ({when}) has no text")
    return str(got["text"])


def render_saved_json(result: dict[str, Any], view: str, when: str = "after") -> Any:
    """A view's JSON twin from a finished run's result dict."""
    got = _saved(result, view, when)
    if "json" not in got:
        raise UsageError(f"stat {view!r}: the saved {view} view ({when}) has no json")
    return got["json"]


# ---------------------------------------------------------------------------- per-task views
# numa_maps is drawn by mm/numa (mm/vm must not import it): render_task and snapshot_tasks add it
PID_VIEWS: tuple[str, ...] = ("maps", "smaps", "smaps_rollup", "status", "numa_maps")
TASK_VIEWS: tuple[str, ...] = ("tasks", *PID_VIEWS)


def render_task(arena: Arena, view: str, pid: int | None = None, as_json: bool = False) -> Any:
    """A per-task view of a live arena: "tasks", or a PID_VIEWS view of task `pid`
    (ViewUnavailable: unknown view, no pid, no such task, an arena without the VM)."""
    from aerosync.mm.vm import task_mmu as TM
    from aerosync.mm.vm.mm_types import vm_ready

    if view not in TASK_VIEWS:
        raise ViewUnavailable(f"stat {view!r}: no such per-task view; available: {', '.join(TASK_VIEWS)}")
    if not vm_ready(arena):
        raise ViewUnavailable(f"arena {arena.name}: no virtual memory (vm_init was not run): no tasks")
    if view == "tasks":
        return TM.tasks_json(arena) if as_json else TM.tasks_text(arena)
    if pid is None:
        raise ViewUnavailable(f"stat {view}: which task? give --pid (pids: {_pids(TM.tasks_json(arena))})")
    if view == "numa_maps":
        return _numa_maps_json(arena, pid) if as_json else _numa_maps_text(arena, pid)
    try:
        return TM.render_pid(arena, view, pid, as_json)
    except TM.NoSuchTask as e:
        raise ViewUnavailable(f"stat {view} --pid {pid}: {e}") from None


def _pids(tasks: list[dict[str, Any]]) -> str:
    return ", ".join(str(t["pid"]) for t in tasks) or "none"


def snapshot_tasks(arena: Arena) -> dict[str, Any]:
    """The task list and every task-with-an-mm's PID_VIEWS ({} without the VM)."""
    from aerosync.mm.numa.numa_maps import numa_maps_format
    from aerosync.mm.numa.numa_types import numa_ready
    from aerosync.mm.vm.task_mmu import snapshot_tasks as snap

    out = snap(arena)
    if out and numa_ready(arena):  # numa_maps: drawn by mm/numa, beside mm/vm's views
        for pid, views in out["pids"].items():
            try:
                d = _numa_maps_json(arena, int(pid))
            except ViewUnavailable:
                continue
            views["numa_maps"] = {"text": numa_maps_format(d), "json": d}
    return out


def render_saved_task(result: dict[str, Any], view: str, pid: int | None = None, when: str = "after",
                      as_json: bool = False) -> Any:
    """A per-task view from a finished run's result (views_<when>["proc"])."""
    if view not in TASK_VIEWS:
        raise UsageError(f"stat {view!r}: no such per-task view; available: {', '.join(TASK_VIEWS)}")
    if when not in ("before", "after"):
        raise UsageError(f"stat {view!r}: when = {when!r}: allowed: before, after")
    views = result.get(f"views_{when}")
    if not isinstance(views, dict):
        raise UsageError(f"stat {view!r}: the result has no views_{when} (not an `aerosync run` result?)")
    proc = views.get("proc")
    if not isinstance(proc, dict) or "tasks" not in proc:
        raise UsageError(f"stat {view!r}: the run saved no task views ({when} the run): "
                         "a run without virtual-memory tasks, or from before they were saved")
    if view == "tasks":
        got = proc["tasks"]
    else:
        saved = proc.get("pids") or {}
        if pid is None or str(pid) not in saved:
            which = "which task? give --pid" if pid is None else f"no task with pid {pid} saved"
            raise UsageError(f"stat {view}: {which} (pids saved {when} the run: {', '.join(saved) or 'none'})")
        got = saved[str(pid)].get(view)
        if not isinstance(got, dict):
            raise UsageError(f"stat {view} --pid {pid}: the run saved no {view} view of that task")
    key = "json" if as_json else "text"
    if key not in got:
        raise UsageError(f"stat {view}: the saved view has no {key}")
    return got[key]
