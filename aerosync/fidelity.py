"""`aerosync doctor --fidelity`: AeroSync's formulas fed with a host's inputs, against what
that host's kernel shows.

Why: a result is only as explainable in kernel terms as the model's sizing is; this is
the test a user can run on their own host.  The host's zone sizes (managed pages per
zone, from /proc/zoneinfo), CPU count (/sys/devices/system/cpu/present, the node's
cpulist), settings (/proc/sys/vm: min_free_kbytes, watermark_scale_factor,
lowmem_reserve_ratio, percpu_pagelist_high_fraction; THP enabled from
/sys/kernel/mm/transparent_hugepage/enabled) go into the functions the simulated
machine is built with (mm/pmm/mmzone.py, mm/slab/slab_common.py), and every figure is
compared with the host's own:

  min_free_kbytes     calculate_min_free_kbytes(), raised as khugepaged's
                      set_recommended_min_free_kbytes() does when THP is enabled
  watermarks          min / low / high / promo of every zone (__setup_per_zone_wmarks,
                      from the host's min_free_kbytes and watermark_scale_factor)
  lowmem_reserve      each zone's protection array (setup_per_zone_lowmem_reserve,
                      from the host's lowmem_reserve_ratio)
  pcp                 batch, high_min, high_max of every zone's per-CPU lists
                      (zone_batchsize, zone_highsize; percpu_pagelist_high_fraction)
  kmalloc caches      objsize, objperslab, pagesperslab of every kmalloc-*, kmalloc-cg-*,
                      kmalloc-rcl-*, dma-kmalloc-* row of /proc/slabinfo (create_boot_cache
                      alignment, calculate_sizes, calculate_order)

Verdicts: "match"; "MISMATCH" (the model should have reproduced it: counted, exit 1);
"expected" (a deviation the model has by design, named in the row: a zone AeroSync has
no model of -- Movable, Device, HighMem -- or a host booted with slub_debug / slab
size options); "skipped" (the host did not show it: /proc/slabinfo is root-only).
`root` is the directory holding proc/ and sys/ ("/" for this host; the tests use a
saved 6.18 host under tests/fixtures/host-6.18).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aerosync.arch.cpu import parse_cpulist
from aerosync.mm.pmm import mmzone as Z
from aerosync.params import PAGE_SIZE

__all__ = ["Row", "HostZone", "HostFacts", "read_host", "fidelity_rows", "render", "cmd_fidelity",
           "host_formula_mismatches"]

MATCH, MISMATCH, EXPECTED, SKIPPED = "match", "MISMATCH", "expected", "skipped"
_MODELLED_ZONES = ("DMA", "DMA32", "Normal")
_LINUX_ZONES = ("DMA", "DMA32", "Normal", "Movable", "Device")
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
SLUB_MAX_ORDER = 3                    # slub_max_order default (PAGE_ALLOC_COSTLY_ORDER)
_KMALLOC_RE = re.compile(r"^(dma-)?kmalloc-(cg-|rcl-)?(\d+)(k?)$")


@dataclass
class HostZone:
    """One zone of /proc/zoneinfo: the inputs (managed) and the figures to compare."""

    node: int
    name: str
    managed: int = 0
    present: int = 0
    wmarks: dict[str, int] = field(default_factory=dict)        # min low high promo
    protection: list[int] = field(default_factory=list)
    pcp: dict[int, dict[str, int]] = field(default_factory=dict)  # cpu -> batch/high_min/high_max


@dataclass
class HostFacts:
    zones: list[HostZone]
    min_free_kbytes: int
    watermark_scale_factor: int
    lowmem_reserve_ratio: list[int]
    high_fraction: int
    thp: bool
    nr_present_cpus: int
    nr_possible_cpus: int
    node_cpus: dict[int, int]                 # node -> number of CPUs in its cpulist
    slabinfo: dict[str, tuple[int, int, int]] | None   # name -> (objsize, objperslab, pagesperslab)
    cmdline: str
    release: str


@dataclass(frozen=True, slots=True)
class Row:
    item: str
    host: str
    model: str
    status: str
    note: str = ""


# ---------------------------------------------------------------------------- reading the host
def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_text()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None


def _need(root: Path, rel: str) -> str:
    text = _read(root, rel)
    if text is None:
        raise FileNotFoundError(f"fidelity: {root / rel} is missing or unreadable")
    return text


def parse_zoneinfo(text: str) -> list[HostZone]:
    """The zones of /proc/zoneinfo (6.x layout: a per-node block under the first zone)."""
    zones: list[HostZone] = []
    z: HostZone | None = None
    cpu = -1
    for line in text.splitlines():
        m = re.match(r"Node (\d+), zone\s+(\S+)", line)
        if m:
            z = HostZone(int(m.group(1)), m.group(2))
            zones.append(z)
            cpu = -1
            continue
        if z is None:
            continue
        s = line.strip()
        m = re.fullmatch(r" {8}(min|low|high|promo|spanned|present|managed)\s+(\d+)", line)
        if m:
            key, v = m.group(1), int(m.group(2))
            if key in ("min", "low", "high", "promo"):
                z.wmarks[key] = v
            elif key == "managed":
                z.managed = v
            elif key == "present":
                z.present = v
            continue
        m = re.fullmatch(r"protection: \(([\d, ]*)\)", s)
        if m:
            z.protection = [int(x) for x in m.group(1).split(",") if x.strip()]
            continue
        m = re.fullmatch(r"cpu: (\d+)", s)
        if m:
            cpu = int(m.group(1))
            z.pcp[cpu] = {}
            continue
        m = re.fullmatch(r"(batch|high_min|high_max):\s+(\d+)", s)
        if m and cpu >= 0:
            z.pcp[cpu][m.group(1)] = int(m.group(2))
    return zones


def parse_slabinfo(text: str) -> dict[str, tuple[int, int, int]]:
    out = {}
    for line in text.splitlines():
        if line.startswith(("slabinfo", "#")) or not line.strip():
            continue
        f = line.split()
        out.setdefault(f[0], (int(f[3]), int(f[4]), int(f[5])))
    return out


def _count(cpulist: str | None) -> int:
    if not cpulist or not cpulist.strip():
        return 0
    return len(parse_cpulist(cpulist.strip()))


def read_host(root: str | Path = "/") -> HostFacts:
    """The inputs and figures of the host whose /proc and /sys are under `root`."""
    r = Path(root)
    zones = parse_zoneinfo(_need(r, "proc/zoneinfo"))
    thp_text = _read(r, "sys/kernel/mm/transparent_hugepage/enabled") or "[never]"
    thp_mode = re.search(r"\[(\w+)\]", thp_text)
    nodes = sorted({z.node for z in zones})
    slab = _read(r, "proc/slabinfo")
    rel = (_read(r, "proc/sys/kernel/osrelease") or _read(r, "osrelease") or "").strip()
    return HostFacts(
        zones=zones,
        min_free_kbytes=int(_need(r, "proc/sys/vm/min_free_kbytes")),
        watermark_scale_factor=int(_need(r, "proc/sys/vm/watermark_scale_factor")),
        lowmem_reserve_ratio=[int(x) for x in _need(r, "proc/sys/vm/lowmem_reserve_ratio").split()],
        high_fraction=int((_read(r, "proc/sys/vm/percpu_pagelist_high_fraction") or "0").strip() or 0),
        thp=bool(thp_mode and thp_mode.group(1) in ("always", "madvise")),
        nr_present_cpus=_count(_read(r, "sys/devices/system/cpu/present")),
        nr_possible_cpus=_count(_read(r, "sys/devices/system/cpu/possible")),
        node_cpus={n: _count(_read(r, f"sys/devices/system/node/node{n}/cpulist")) for n in nodes},
        slabinfo=parse_slabinfo(slab) if slab is not None else None,
        cmdline=(_read(r, "proc/cmdline") or "").strip(),
        release=rel,
    )


# ---------------------------------------------------------------------------- the model side
def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(str(x) for x in v) + ")"
    return str(v)


def _row(item: str, host: Any, model: Any, note: str = "") -> Row:
    return Row(item, _fmt(host), _fmt(model), MATCH if host == model else MISMATCH, note)


def model_min_free_kbytes(h: HostFacts) -> tuple[int, str]:
    """calculate_min_free_kbytes() over the lowmem zones, then khugepaged's raise (THP)."""
    low = [z for z in h.zones if z.name in ("DMA", "DMA32", "Normal")]
    managed = [z.managed for z in low]
    calc = Z.calculate_min_free_kbytes(sum(managed))
    if not h.thp:
        return calc, f"calculate_min_free_kbytes {calc}; THP off"
    nr_zones = sum(1 for z in low if z.managed)
    high = [z.wmarks.get("high", 0) for z in low]
    pb_order = 9                                  # pageblock_order on x86-64 (HPAGE_PMD_ORDER)
    raised = Z.set_recommended_min_free_kbytes(calc, nr_zones, Z.nr_free_buffer_pages(managed, high), pb_order)
    return raised, f"calculate_min_free_kbytes {calc}, khugepaged raise to {raised}"


def _slab_options(cmdline: str) -> str:
    opts = [w for w in cmdline.split() if w.split("=")[0] in
            ("slub_debug", "slab_debug", "slub_max_order", "slab_max_order", "slub_min_objects",
             "slab_min_objects", "slub_min_order", "slab_min_order")]
    return " ".join(opts)


def fidelity_rows(h: HostFacts) -> list[Row]:
    """Every compared figure, host against model (module docstring)."""
    rows: list[Row] = []
    mfk, how = model_min_free_kbytes(h)
    rows.append(_row("min_free_kbytes", h.min_free_kbytes, mfk, how))
    # watermarks: every zone of the machine shares min_free_kbytes in proportion to managed
    lowmem = [z for z in h.zones if z.name in ("DMA", "DMA32", "Normal")]
    wms = Z.setup_watermarks([z.managed for z in lowmem], h.min_free_kbytes, h.watermark_scale_factor)
    wm_of = {id(z): w for z, w in zip(lowmem, wms)}
    for z in h.zones:
        tag = f"node{z.node} {z.name}"
        host_wm = [z.wmarks.get(k, 0) for k in ("min", "low", "high", "promo")]
        if z.name not in _MODELLED_ZONES:
            rows.append(Row(f"{tag} watermarks", _fmt(host_wm), "-", EXPECTED,
                            f"zone {z.name} is not modelled (AeroSync has DMA, DMA32, Normal)"))
            continue
        rows.append(_row(f"{tag} watermarks min/low/high/promo", host_wm, list(wm_of[id(z)])))
    # lowmem_reserve: per node over the node's zones in Linux's zone order
    for nid in sorted({z.node for z in h.zones}):
        nz = {z.name: z for z in h.zones if z.node == nid}
        names = [n for n in _LINUX_ZONES if n in nz]
        res = Z.setup_lowmem_reserve([nz[n].managed for n in names], h.lowmem_reserve_ratio)
        for i, n in enumerate(names):
            host_p = nz[n].protection
            model_p = res[i][: len(host_p)] + [0] * max(0, len(host_p) - len(res[i]))
            if n not in _MODELLED_ZONES and not nz[n].managed:
                rows.append(Row(f"node{nid} {n} protection", _fmt(host_p), _fmt(model_p),
                                MATCH if host_p == model_p else EXPECTED, f"zone {n} is not modelled"))
                continue
            rows.append(_row(f"node{nid} {n} protection", host_p, model_p))
    # PCP batch / high_min / high_max
    for z in h.zones:
        if not z.pcp or not z.managed:
            continue
        tag = f"node{z.node} {z.name}"
        if z.name not in _MODELLED_ZONES:
            rows.append(Row(f"{tag} pcp", "-", "-", EXPECTED, f"zone {z.name} is not modelled"))
            continue
        batch = max(1, Z.zone_batchsize(z.managed))
        split = h.node_cpus.get(z.node, 0) or h.nr_present_cpus
        low = z.wmarks.get("low", 0)
        if h.high_fraction:
            hmin = hmax = Z.zone_highsize(low, z.managed, batch, split, h.high_fraction)
        else:
            hmin = Z.zone_highsize(low, z.managed, batch, split, 0)
            hmax = Z.zone_highsize(low, z.managed, batch, split, MIN_PERCPU_PAGELIST_HIGH_FRACTION)
        seen = {(p.get("batch"), p.get("high_min"), p.get("high_max")) for p in z.pcp.values()}
        for host_v in sorted(seen, key=str):
            cpus = ",".join(str(c) for c, p in sorted(z.pcp.items())
                            if (p.get("batch"), p.get("high_min"), p.get("high_max")) == host_v)
            rows.append(_row(f"{tag} pcp batch/high_min/high_max (cpu {cpus})", list(host_v), [batch, hmin, hmax]))
    rows += _kmalloc_rows(h)
    return rows


def _kmalloc_rows(h: HostFacts) -> list[Row]:
    from aerosync.mm.slab.slab_common import SLAB_KMALLOC, _layout, calculate_order

    if h.slabinfo is None:
        return [Row("kmalloc caches", "-", "-", SKIPPED, "/proc/slabinfo not readable (root only)")]
    opts = _slab_options(h.cmdline)
    nr_cpus = h.nr_present_cpus if h.nr_present_cpus > 1 else max(h.nr_possible_cpus, 1)
    rows = []
    for name, host_v in h.slabinfo.items():
        m = _KMALLOC_RE.match(name)
        if not m:
            continue
        size = int(m.group(3)) << (10 if m.group(4) else 0)
        lay = _layout(size, 0, SLAB_KMALLOC, False)
        osz = lay["size"]
        order = calculate_order(osz, SLUB_MAX_ORDER, nr_cpus)
        model_v = (osz, min((PAGE_SIZE << order) // osz, 32767), 1 << order)
        r = _row(f"slab {name} objsize/objperslab/pagesperslab", list(host_v), list(model_v))
        if r.status == MISMATCH and opts:
            r = Row(r.item, r.host, r.model, EXPECTED, f"host booted with {opts}")
        rows.append(r)
    return rows


def host_formula_mismatches(root: str | Path = "/") -> int:
    """The number of MISMATCH rows for the host under `root` (bench fidelity)."""
    return sum(r.status == MISMATCH for r in fidelity_rows(read_host(root)))


# ---------------------------------------------------------------------------- output
def render(rows: list[Row], h: HostFacts, root: str | Path) -> str:
    w_item = max([len(r.item) for r in rows] + [4])
    w_host = max([len(r.host) for r in rows] + [4])
    w_model = max([len(r.model) for r in rows] + [5])
    lines = [f"aerosync doctor --fidelity: host {root} (kernel {h.release or 'unknown'}, "
             f"{h.nr_present_cpus} CPUs, {len({z.node for z in h.zones})} node(s), THP {'on' if h.thp else 'off'}, "
             f"min_free_kbytes {h.min_free_kbytes}, watermark_scale_factor {h.watermark_scale_factor})",
             f"  {'item':<{w_item}}  {'host':>{w_host}}  {'model':>{w_model}}  verdict"]
    for r in rows:
        lines.append(f"  {r.item:<{w_item}}  {r.host:>{w_host}}  {r.model:>{w_model}}  {r.status}"
                     + (f"  ({r.note})" if r.note else ""))
    counts = {s: sum(r.status == s for r in rows) for s in (MATCH, MISMATCH, EXPECTED, SKIPPED)}
    verdict = "the model reproduces this host" if not counts[MISMATCH] else "MISMATCHES the model should not have"
    lines.append(f"  => {verdict}: {counts[MATCH]} match, {counts[MISMATCH]} mismatch, "
                 f"{counts[EXPECTED]} expected deviation, {counts[SKIPPED]} skipped")
    return "\n".join(lines) + "\n"


def cmd_fidelity(args: argparse.Namespace) -> int:
    """0 when nothing mismatches unexpectedly, 1 otherwise."""
    from aerosync.errors import UsageError

    root = Path(args.root)
    try:
        h = read_host(root)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"doctor --fidelity: {e}") from None
    rows = fidelity_rows(h)
    if getattr(args, "json", False):
        import json

        print(json.dumps({"root": str(root), "rows": [dataclasses.asdict(r) for r in rows],
                          "mismatches": sum(r.status == MISMATCH for r in rows)}, indent=1))
    else:
        sys.stdout.write(render(rows, h, root))
    return 1 if any(r.status == MISMATCH for r in rows) else 0

