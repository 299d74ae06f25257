"""Per-task /proc views: maps, smaps, smaps_rollup, status -- and the task list.

Models: fs/proc/task_mmu.c (show_map_vma, show_vma_header_prefix, get_vma_name,
smaps_account / smaps_pte_entry, __show_smap, show_smap, show_smaps_rollup,
show_smap_vma_flags, task_mem) and fs/proc/array.c (proc_pid_status, task_state),
v6.19.  Unit: one task (by pid) of one arena; each view is `fn(arena, pid) -> str` in
the kernel's layout with a `*_json` twin carrying the same figures.  Figures come from
the arena, not from counters kept for the views: the page tables (Rss, dirty,
referenced, swap), struct page (mapcount for Pss and shared/private, PG_dirty,
PG_referenced, PG_swapbacked, the anon bit of mapping), the mm record (status).

Layout facts kept exactly: the maps prefix "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu "
padded to column 72 before the name (seq_setwidth 25 + 6 * sizeof(void *) - 1, then
seq_pad), the trailing space of a nameless line, smaps' 16-character labels with
8-wide kB values (Private_Hugetlb's 17 + 7), THPeligible "%8u", VmFlags mnemonics in
bit order each followed by a space, Pss accumulated in bytes << PSS_SHIFT (12) per page
as (PAGE_SIZE << 12) / mapcount and shifted back once per line, status's
"VmPeak:\\t%8lu kB" lines via seq_put_decimal_ull_width.

Model facts the texts state rather than invent:
  * simulated files live on a fake filesystem, device 00:41 (SIMFS_DEV), inode = file
    id + 1, shown at /aerosync/<name> (a file backed by a real one: its real path);
  * MAP_SHARED|MAP_ANONYMOUS memory is shmem as in Linux: "/dev/zero (deleted)" on
    device 00:01, inode = the object's slab index;
  * [heap] is vma_is_initial_heap (vm_start < brk, vm_end > start_brk); there is no
    start_stack in the model, so [stack] names a VM_GROWSDOWN VMA;
  * no THP, hugetlb, KSM or pkeys: those lines print 0 (ProtectionKey is omitted, as on
    a machine without pkeys); SwapPss assumes a swap count of 1 (no swap yet);
  * status prints what the model has, in the kernel's order: Name, State, Tgid, Ngid,
    Pid, PPid, TracerPid, NStgid, NSpid, Kthread, the task_mem block (VmPeak ..
    VmSwap, HugetlbPages), CoreDumping, THP_enabled, untag_mask, Threads; credentials,
    fds, signals, capabilities, seccomp and CPU masks are not modelled and omitted.
    VmExe is 0 and VmLib carries all of exec_vm (no binary is loaded: no start_code).

Lock-free reads (mm/vm/snapshot.py): on a live arena the figures are a racy snapshot,
as /proc's are; the coordinator takes them with the CPUs parked (views_after["proc"]).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerosync.mm.pmm.page import PAGE_MAPPING_ANON, PG_dirty, PG_referenced, PG_swapbacked
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_GLOBAL,
    _PAGE_PRESENT,
    _PAGE_SPECIAL,
    MAX_SWAPFILES,
    PTE_PFN_MASK,
    SWP_MIGRATION_READ,
    SWP_MIGRATION_WRITE,
    swp_offset,
    swp_type,
)
from aerosync.mm.vm.snapshot import MmWalk, VmSnapshot
from aerosync.mm.vm.vm_object import O_TYPE, OBJ_ANON, OBJF_SHARED
from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = ["NoSuchTask", "PID_VIEWS", "SIMFS_DEV", "tasks_json", "tasks_text", "maps_json", "maps_text",
           "maps_fmt", "smaps_json", "smaps_text", "smaps_fmt", "smaps_rollup_json", "smaps_rollup_text",
           "smaps_rollup_fmt", "status_json", "status_text", "status_fmt", "render_pid", "snapshot_tasks",
           "SMAPS_KEYS"]

PSS_SHIFT = 12
SIMFS_DEV = (0x00, 0x41)
SHMEM_DEV = (0x00, 0x01)
_PAD = 25 + 6 * 8 - 1                   # seq_setwidth() of show_vma_header_prefix on 64-bit
_MNEMONICS = sorted(V.MNEMONICS)        # show_smap_vma_flags walks the bits in order
SMAPS_KEYS = ("Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
              "Referenced", "Anonymous", "KSM", "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped",
              "Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss", "Locked")
_ROLLUP_EXTRA = ("Pss_Anon", "Pss_File", "Pss_Shmem")


class NoSuchTask(KeyError):
    """No live task with that pid (the message lists the pids there are)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------- tasks
def _tasks(arena: Any) -> list[dict[str, Any]]:
    from aerosync.mm.vm.task import live_tasks, task_info

    return [task_info(arena, t) for t in live_tasks(arena)]


def tasks_json(arena: Any) -> list[dict[str, Any]]:
    """Every task record in use: pid, tgid, ppid, comm, state, cpu (-1: none), mm (-1)."""
    T.require_vm(arena)
    return [{k: t[k] for k in ("pid", "tgid", "ppid", "comm", "state", "cpu", "mm", "tid")} for t in _tasks(arena)]


def tasks_text(arena: Any) -> str:
    """A ps-like table of the simulated tasks (no kernel file has this layout)."""
    rows = [f"{'PID':>7} {'TGID':>7} {'PPID':>7} {'COMM':<16} {'STATE':<12} {'CPU':>4} {'MM':>4}"]
    for t in tasks_json(arena):
        rows.append(f"{t['pid']:>7} {t['tgid']:>7} {t['ppid']:>7} {t['comm']:<16} {t['state']:<12} "
                    f"{t['cpu'] if t['cpu'] >= 0 else '-':>4} {t['mm'] if t['mm'] >= 0 else '-':>4}")
    return "\n".join(rows) + "\n"


def _task(arena: Any, pid: int) -> dict[str, Any]:
    T.require_vm(arena)
    tasks = _tasks(arena)
    for t in tasks:
        if t["pid"] == pid:
            return t
    pids = ", ".join(str(t["pid"]) for t in tasks) or "none"
    raise NoSuchTask(f"no task with pid {pid} (pids: {pids})")


# ---------------------------------------------------------------------------- VMAs and names
class _Mm:
    """One mm's VMAs and leaf entries, read once per view."""

    def __init__(self, snap: VmSnapshot, mm_id: int) -> None:
        self.snap, self.mm_id = snap, mm_id
        self.vmas: list[dict[str, int]] = []
        self.walk = MmWalk(mm_id)
        if mm_id > 0 and snap.mm_word(mm_id, T.M_STATE) == T.MM_LIVE:
            entries, _ = snap.vmas(mm_id)
            self.vmas = [snap.vma(v) | {"vma": v} for _f, _l, v in entries]
            self.vmas = [r for r in self.vmas if len(r) > 1]
            self.walk = snap.walk(mm_id)
        self.brk = snap.mm_word(mm_id, T.M_BRK) if mm_id > 0 else 0
        self.start_brk = snap.mm_word(mm_id, T.M_START_BRK) if mm_id > 0 else 0


def _file_name(arena: Any, fid: int) -> str:
    from aerosync.mm.vm.filemap import file_path

    fo = T.file_off(arena, fid)
    if arena.u64[(fo + T.F_FLAGS) >> 3] & T.FILE_REAL:
        return file_path(arena, fid)
    raw = bytes(arena.u8[fo + T.F_NAME : fo + T.F_NAME + 40]).rstrip(b"\0").decode(errors="replace")
    return f"/aerosync/{raw}"


def _shared_anon(arena: Any, r: dict[str, int]) -> bool:
    o = r["object"]
    if r["file"] or not o or not r["flags"] & V.VM_SHARED:
        return False
    t = arena.u32[(o + O_TYPE) >> 2]
    return (t & 0xFFFF) == OBJ_ANON and bool((t >> 16) & OBJF_SHARED)


def _map_fields(arena: Any, m: _Mm, r: dict[str, int]) -> dict[str, Any]:
    """show_map_vma(): the fields of one maps line."""
    fl = r["flags"]
    dev, ino, pgoff, name = (0, 0), 0, 0, ""
    if r["file"]:
        dev, ino, pgoff = SIMFS_DEV, r["file"], r["pgoff"] << PAGE_SHIFT
        name = _file_name(arena, r["file"] - 1)
    elif _shared_anon(arena, r):
        dev, ino, pgoff = SHMEM_DEV, (r["object"] - arena.off("physmem")) // 128, r["pgoff"] << PAGE_SHIFT
        name = "/dev/zero (deleted)"
    elif r["start"] < m.brk and r["end"] > m.start_brk:
        name = "[heap]"
    elif fl & V.VM_GROWSDOWN:
        name = "[stack]"
    perms = ("r" if fl & V.VM_READ else "-") + ("w" if fl & V.VM_WRITE else "-") + (
        "x" if fl & V.VM_EXEC else "-") + ("s" if fl & V.VM_MAYSHARE else "p")
    return {"start": r["start"], "end": r["end"], "perms": perms, "offset": pgoff,
            "dev": f"{dev[0]:02x}:{dev[1]:02x}", "inode": ino, "pathname": name}


def _header(f: dict[str, Any]) -> str:
    prefix = f"{f['start']:08x}-{f['end']:08x} {f['perms']} {f['offset']:08x} {f['dev']} {f['inode']} "
    if not f["pathname"]:
        return prefix + "\n"
    return prefix + " " * max(0, _PAD - len(prefix)) + " " + f["pathname"] + "\n"


def _open(arena: Any, pid: int) -> tuple[VmSnapshot, dict[str, Any], _Mm]:
    t = _task(arena, pid)
    snap = VmSnapshot(arena)
    return snap, t, _Mm(snap, t["mm"])


def maps_json(arena: Any, pid: int) -> list[dict[str, Any]]:
    snap, _t, m = _open(arena, pid)
    try:
        return [_map_fields(arena, m, r) for r in m.vmas]
    finally:
        snap.close()


def maps_fmt(maps: list[dict[str, Any]]) -> str:
    return "".join(_header(f) for f in maps)


def maps_text(arena: Any, pid: int) -> str:
    """/proc/<pid>/maps."""
    return maps_fmt(maps_json(arena, pid))


# ---------------------------------------------------------------------------- smaps
class _Mss:
    """struct mem_size_stats: bytes, and pss fields in bytes << PSS_SHIFT."""

    __slots__ = ("resident", "shared_clean", "shared_dirty", "private_clean", "private_dirty", "referenced",
                 "anonymous", "lazyfree", "swap", "ksm", "pss", "pss_anon", "pss_file", "pss_shmem",
                 "pss_dirty", "pss_locked", "swap_pss")

    def __init__(self) -> None:
        for k in self.__slots__:
            setattr(self, k, 0)

    def add(self, o: _Mss) -> None:
        for k in self.__slots__:
            setattr(self, k, getattr(self, k) + getattr(o, k))

    def fields(self, rollup: bool) -> dict[str, int]:
        """__show_smap()'s values in kB."""
        d = {"Rss": self.resident >> 10, "Pss": (self.pss >> PSS_SHIFT) >> 10,
             "Pss_Dirty": (self.pss_dirty >> PSS_SHIFT) >> 10}
        if rollup:
            d.update({"Pss_Anon": (self.pss_anon >> PSS_SHIFT) >> 10, "Pss_File": (self.pss_file >> PSS_SHIFT) >> 10,
                      "Pss_Shmem": (self.pss_shmem >> PSS_SHIFT) >> 10})
        d.update({"Shared_Clean": self.shared_clean >> 10, "Shared_Dirty": self.shared_dirty >> 10,
                  "Private_Clean": self.private_clean >> 10, "Private_Dirty": self.private_dirty >> 10,
                  "Referenced": self.referenced >> 10, "Anonymous": self.anonymous >> 10, "KSM": self.ksm >> 10,
                  "LazyFree": self.lazyfree >> 10, "AnonHugePages": 0, "ShmemPmdMapped": 0, "FilePmdMapped": 0,
                  "Shared_Hugetlb": 0, "Private_Hugetlb": 0, "Swap": self.swap >> 10,
                  "SwapPss": (self.swap_pss >> PSS_SHIFT) >> 10, "Locked": (self.pss_locked >> PSS_SHIFT) >> 10})
        return d


def _gather(snap: VmSnapshot, m: _Mm, r: dict[str, int]) -> _Mss:
    """smap_gather_stats() for one VMA: smaps_pte_entry / smaps_account over its leaf
    entries (numpy over the present ones; swap and migration entries one by one)."""
    mss = _Mss()
    va, pte = m.walk.va, m.walk.pte
    lo, hi = np.searchsorted(va, np.uint64(r["start"])), np.searchsorted(va, np.uint64(r["end"]))
    ents = pte[lo:hi]
    locked = bool(r["flags"] & V.VM_LOCKED)
    n = snap.nr_pages
    present = (ents & np.uint64(_PAGE_PRESENT | _PAGE_GLOBAL)) != 0
    normal = present & ((ents & np.uint64(_PAGE_SPECIAL)) == 0)    # vm_normal_page(): not the zero page
    pfn = ((ents[normal] & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    ok = pfn < n
    e = ents[normal][ok]
    pfn = pfn[ok]
    if len(pfn):
        pg = snap.pages[pfn]
        flags, ref = pg["flags"].astype(np.int64), pg["refcount"].astype(np.int64)
        mapc, mapping = pg["mapcount"].astype(np.int64), pg["mapping"]
        anon = (mapping & np.uint64(PAGE_MAPPING_ANON)) != 0
        swapbacked = (flags & PG_swapbacked) != 0
        dirty = ((e & np.uint64(_PAGE_DIRTY)) != 0) | ((flags & PG_dirty) != 0)
        young = ((e & np.uint64(_PAGE_ACCESSED)) != 0) | ((flags & PG_referenced) != 0)
        full = np.int64(PAGE_SIZE << PSS_SHIFT)
        shared = (ref != 1) & (mapc >= 2)
        pss = np.where(shared, full // np.maximum(mapc, 1), full)
        private = ~shared
        mss.resident += PAGE_SIZE * len(pfn)
        mss.anonymous += PAGE_SIZE * int(anon.sum())
        mss.lazyfree += PAGE_SIZE * int((anon & ~swapbacked & ~dirty).sum())
        mss.referenced += PAGE_SIZE * int(young.sum())
        mss.pss += int(pss.sum())
        mss.pss_anon += int(pss[anon].sum())
        mss.pss_shmem += int(pss[~anon & swapbacked].sum())
        mss.pss_file += int(pss[~anon & ~swapbacked].sum())
        if locked:
            mss.pss_locked += int(pss.sum())
        mss.pss_dirty += int(pss[dirty].sum())
        mss.private_dirty += PAGE_SIZE * int((dirty & private).sum())
        mss.shared_dirty += PAGE_SIZE * int((dirty & ~private).sum())
        mss.private_clean += PAGE_SIZE * int((~dirty & private).sum())
        mss.shared_clean += PAGE_SIZE * int((~dirty & ~private).sum())
    for x in ents[~present].tolist():
        t = swp_type(x)
        if t < MAX_SWAPFILES:
            mss.swap += PAGE_SIZE
            mss.swap_pss += PAGE_SIZE << PSS_SHIFT              # swp_swapcount(): 1 (no swap yet)
        elif SWP_MIGRATION_READ <= t <= SWP_MIGRATION_WRITE and swp_offset(x) < n:
            pg = snap.pages[swp_offset(x)]                      # a page being migrated: "maybe shared"
            _account(mss, int(pg["flags"]), int(pg["refcount"]), int(pg["mapcount"]), int(pg["mapping"]),
                     False, False, locked, False)
    return mss


def _account(mss: _Mss, flags: int, ref: int, mapcount: int, mapping: int, young: bool, dirty: bool,
             locked: bool, present: bool) -> None:
    """smaps_account() + smaps_page_accumulate() for one order-0 folio."""
    size = PAGE_SIZE
    anon = bool(mapping & PAGE_MAPPING_ANON)
    swapbacked = bool(flags & PG_swapbacked)
    pg_dirty = bool(flags & PG_dirty)
    if anon:
        mss.anonymous += size
        if not swapbacked and not dirty and not pg_dirty:
            mss.lazyfree += size
    mss.resident += size
    if young or flags & PG_referenced:
        mss.referenced += size
    if ref == 1 or not present:
        pss, private = size << PSS_SHIFT, present
    else:
        pss = size << PSS_SHIFT
        if mapcount >= 2:
            pss //= mapcount
        private = mapcount < 2
    mss.pss += pss
    if anon:
        mss.pss_anon += pss
    elif swapbacked:
        mss.pss_shmem += pss
    else:
        mss.pss_file += pss
    if locked:
        mss.pss_locked += pss
    if dirty or pg_dirty:
        mss.pss_dirty += pss
        if private:
            mss.private_dirty += size
        else:
            mss.shared_dirty += size
    elif private:
        mss.private_clean += size
    else:
        mss.shared_clean += size


def _vmflags(flags: int) -> list[str]:
    return [name for bit, name in _MNEMONICS if flags & bit]


def smaps_json(arena: Any, pid: int) -> list[dict[str, Any]]:
    snap, _t, m = _open(arena, pid)
    try:
        out = []
        for r in m.vmas:
            d = _map_fields(arena, m, r)
            d.update({"Size": (r["end"] - r["start"]) >> 10, "KernelPageSize": PAGE_SIZE >> 10,
                      "MMUPageSize": PAGE_SIZE >> 10})
            d.update(_gather(snap, m, r).fields(False))
            d["THPeligible"] = 0
            d["VmFlags"] = _vmflags(r["flags"])
            out.append(d)
        return out
    finally:
        snap.close()


def _smap_lines(d: dict[str, Any], rollup: bool) -> str:
    """__show_smap(): 16-character labels, 8-wide kB (Private_Hugetlb: 17 + 7)."""
    out = []
    for k in SMAPS_KEYS[:3] + (_ROLLUP_EXTRA if rollup else ()) + SMAPS_KEYS[3:]:
        if k == "Private_Hugetlb":
            out.append(f"Private_Hugetlb: {d[k]:>7} kB\n")
        else:
            out.append(f"{k + ':':<16}{d[k]:>8} kB\n")
    return "".join(out)


def smaps_text(arena: Any, pid: int) -> str:
    """/proc/<pid>/smaps."""
    return smaps_fmt(smaps_json(arena, pid))


def smaps_fmt(smaps: list[dict[str, Any]]) -> str:
    out = []
    for d in smaps:
        out.append(_header(d))
        out.append(f"Size:           {d['Size']:>8} kB\nKernelPageSize: {d['KernelPageSize']:>8} kB\n"
                   f"MMUPageSize:    {d['MMUPageSize']:>8} kB\n")
        out.append(_smap_lines(d, False))
        out.append(f"THPeligible:    {d['THPeligible']:>8}\n")
        out.append("VmFlags: " + "".join(f"{x} " for x in d["VmFlags"]) + "\n")
    return "".join(out)


def smaps_rollup_json(arena: Any, pid: int) -> dict[str, Any]:
    snap, _t, m = _open(arena, pid)
    try:
        tot = _Mss()
        for r in m.vmas:
            tot.add(_gather(snap, m, r))
        start = m.vmas[0]["start"] if m.vmas else 0
        end = m.vmas[-1]["end"] if m.vmas else 0
        d: dict[str, Any] = {"start": start, "end": end, "perms": "---p", "offset": 0, "dev": "00:00", "inode": 0,
                             "pathname": "[rollup]"}
        d.update(tot.fields(True))
        return d
    finally:
        snap.close()


def smaps_rollup_text(arena: Any, pid: int) -> str:
    """/proc/<pid>/smaps_rollup: the VMAs' span, "[rollup]", the summed fields."""
    return smaps_rollup_fmt(smaps_rollup_json(arena, pid))


def smaps_rollup_fmt(d: dict[str, Any]) -> str:
    return _header(d) + _smap_lines(d, True)


# ---------------------------------------------------------------------------- status
def _pos(x: int) -> int:
    """get_mm_counter(): a counter caught mid-update below zero reads as 0."""
    return 0 if x >= 1 << 63 else x


def status_json(arena: Any, pid: int) -> dict[str, Any]:
    t = _task(arena, pid)
    q = arena.u64
    zombie = t["state"].startswith("Z")
    tasks = _tasks(arena)
    d: dict[str, Any] = {"Name": t["comm"], "State": t["state"], "Tgid": t["tgid"], "Ngid": 0, "Pid": t["pid"],
                         "PPid": t["ppid"], "TracerPid": 0, "NStgid": t["tgid"], "NSpid": t["pid"],
                         "Kthread": int(t["mm"] < 0 and not zombie)}
    mm = t["mm"]
    if mm > 0 and q[(T.mm_off(arena, mm) + T.M_STATE) >> 3] == T.MM_LIVE:
        mo = T.mm_off(arena, mm)

        def w(f: int) -> int:
            return _pos(q[(mo + f) >> 3])

        rss_c = T.get_mm_counters(q, mo, int(arena.config["nr_cpus"]))     # get_mm_counter_sum (v6.16+)
        anon, file, shmem = (rss_c[k] for k in (T.MM_ANONPAGES, T.MM_FILEPAGES, T.MM_SHMEMPAGES))
        total_vm, rss = w(T.M_TOTAL_VM), anon + file + shmem
        text = 0                                  # PAGE_ALIGN(end_code) - start_code: no binary
        kb = PAGE_SIZE >> 10
        d.update({"VmPeak": max(total_vm, w(T.M_HIWATER_VM)) * kb, "VmSize": total_vm * kb,
                  "VmLck": w(T.M_LOCKED_VM) * kb, "VmPin": w(T.M_PINNED_VM) * kb,
                  "VmHWM": max(rss, w(T.M_HIWATER_RSS)) * kb, "VmRSS": rss * kb, "RssAnon": anon * kb,
                  "RssFile": file * kb, "RssShmem": shmem * kb, "VmData": w(T.M_DATA_VM) * kb,
                  "VmStk": w(T.M_STACK_VM) * kb, "VmExe": text >> 10,
                  "VmLib": ((w(T.M_EXEC_VM) << PAGE_SHIFT) - text) >> 10,
                  "VmPTE": w(T.M_PGTABLES_BYTES) >> 10, "VmSwap": rss_c[T.MM_SWAPENTS] * kb,
                  "HugetlbPages": 0, "CoreDumping": 0, "THP_enabled": 0, "untag_mask": (1 << 64) - 1})
    d["Threads"] = 0 if zombie else sum(1 for x in tasks if x["tgid"] == t["tgid"] and not x["state"].startswith("Z"))
    return d


_VM_KEYS = ("VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "VmData",
            "VmStk", "VmExe", "VmLib", "VmPTE", "VmSwap")


def status_text(arena: Any, pid: int) -> str:
    """/proc/<pid>/status (the fields the model has, kernel order and widths)."""
    return status_fmt(status_json(arena, pid))


def status_fmt(d: dict[str, Any]) -> str:
    out = [f"Name:\t{d['Name']}\n", f"State:\t{d['State']}\n"]
    out += [f"{k}:\t{d[k]}\n" for k in ("Tgid", "Ngid", "Pid", "PPid", "TracerPid")]
    out += [f"NStgid:\t{d['NStgid']}\n", f"NSpid:\t{d['NSpid']}\n", f"Kthread:\t{d['Kthread']}\n"]
    if "VmPeak" in d:
        out += [f"{k}:\t{d[k]:>8} kB\n" for k in _VM_KEYS]
        out.append(f"HugetlbPages:\t{d['HugetlbPages']:>8} kB\n")
        out.append(f"CoreDumping:\t{d['CoreDumping']}\n")
        out.append(f"THP_enabled:\t{d['THP_enabled']}\n")
        out.append(f"untag_mask:\t{d['untag_mask']:#x}\n")
    out.append(f"Threads:\t{d['Threads']}\n")
    return "".join(out)


# ---------------------------------------------------------------------------- registry, snapshots
PID_VIEWS = {                               # view -> (json twin, text of the json)
    "maps": (maps_json, maps_fmt),
    "smaps": (smaps_json, smaps_fmt),
    "smaps_rollup": (smaps_rollup_json, smaps_rollup_fmt),
    "status": (status_json, status_fmt),
}


def render_pid(arena: Any, view: str, pid: int, as_json: bool = False) -> Any:
    js, fmt = PID_VIEWS[view]
    d = js(arena, pid)
    return d if as_json else fmt(d)


def snapshot_tasks(arena: Any) -> dict[str, Any]:
    """{"tasks": {"text", "json"}, "pids": {"<pid>": {view: {"text", "json"}}}} for every
    task that has an address space (the per-pid views of tasks without one are empty)."""
    if not T.vm_ready(arena):
        return {}
    out: dict[str, Any] = {"tasks": {"text": tasks_text(arena), "json": tasks_json(arena)}, "pids": {}}
    for t in out["tasks"]["json"]:
        if t["mm"] <= 0:
            continue
        views = out["pids"][str(t["pid"])] = {}
        for v, (js, fmt) in PID_VIEWS.items():
            d = js(arena, t["pid"])
            views[v] = {"text": fmt(d), "json": d}
    return out
