"""Memory-pressure workloads: every byte read back is verified across swap and ZMM.

Modes ([workload] mode):
  compress  an anonymous working set of ws_factor x RAM (split over the CPUs), accessed
            with a Zipf(s) distribution: each access writes the page (write_pct) or reads
            and checks all 4096 bytes of it.  Pages hold 1008 random bytes and a repeated
            word (compressible about 3:1: the reclaim-compress case).
  thrash    a cyclic scan over ws_factor x RAM (the refault / workingset case).
  stream    a generated file of file_mb streamed through a shared read-only mapping, with
            a small anonymous hot set touched between file pages (the case MGLRU was
            built for: the stream must not evict the hot set).
  dirty     a real temporary file mapped shared and rewritten page by page (writeback,
            dirty throttling by the write fault's balance_dirty_pages_ratelimited, as in
            Linux: a store to a page already dirty does not throttle); checked on disk
            after msync at teardown.
  oom       anonymous memory allocated until the OOM killer ends the task; the CPU
            starts a new task and goes on (the run survives).
Operation = one page accessed.  Counters: accesses, writes, corrupt (bytes that came back
wrong: the run's reclaim_data_mismatches), majfault (this CPU's major faults), killed,
respawn_enomem (oom: a new task or region refused with ENOMEM after a kill, retried).

Belady's OPT as the yardstick (record_trace, default on; not in oom mode, where nothing
anonymous can be evicted): each CPU records every page access -- its start time, the
page, the major faults it took, the LRU size -- in its block of the "pagetrace" section
(mm/reclaim/opt.py; trace_cap accesses per CPU, past that the accesses are counted, not
recorded).  report() merges the CPUs' traces in time order and puts the policy's major
faults beside OPT's (and exact LRU's) for the same trace and the frames the run had (the
mean LRU size over the measured accesses), each page's first touch left out on both
sides: result["workload"]["opt"].  Page ids: a CPU's own pages (anonymous region, hot
set, private dirty file) in its space, the shared stream file's pages in space 0 (one
page for every CPU, as it is one page-cache folio).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.reclaim import opt as OPT
from aerosync.mm.reclaim.oom_kill import TaskKilled
from aerosync.mm.reclaim.opt import ZipfSampler
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.filemap import expected_page
from aerosync.mm.vm.mm_types import VMError
from aerosync.params import TMP_PREFIX
from workers.workloads._common import counter_index
from workers.workloads._vm import cpu_vm, hold_region, recover, release_mm, setup_mm, vmwork_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover", "page_bytes", "opt_report"]

COUNTERS: tuple[str, ...] = ("accesses", "writes", "corrupt", "majfault", "killed", "respawn_enomem")
PG = 4096
MODES = ("compress", "thrash", "stream", "dirty", "oom")


@dataclass(frozen=True, slots=True)
class Params:
    mode: str = "compress"
    ws_factor: float = 1.5          # working set / RAM
    zipf_s: float = 1.0
    write_pct: int = 30
    file_mb: int = 16               # stream / dirty
    hot_pages: int = 64             # stream: anonymous hot set per CPU
    record_trace: bool = True       # record the page trace and compare with OPT (not oom)
    trace_cap: int = 262144         # accesses recorded per CPU (24 bytes each)

    def validate(self) -> str | None:
        if self.mode not in MODES:
            return f"mode = {self.mode!r}: allowed {', '.join(MODES)}"
        if not 0.1 <= self.ws_factor <= 16:
            return f"ws_factor = {self.ws_factor}: allowed 0.1..16"
        if not 0 <= self.write_pct <= 100:
            return f"write_pct = {self.write_pct}: allowed 0..100"
        if not 0.0 <= self.zipf_s <= 4.0:
            return f"zipf_s = {self.zipf_s}: allowed 0..4"
        if not 1 <= self.file_mb <= 4096:
            return f"file_mb = {self.file_mb}: allowed 1..4096"
        if not 1 <= self.hot_pages <= 1 << 20:
            return f"hot_pages = {self.hot_pages}: allowed 1..1048576"
        if not 1024 <= self.trace_cap <= 1 << 24:
            return f"trace_cap = {self.trace_cap}: allowed 1024..16777216 (accesses per CPU, 24 bytes each)"
        return None

    @property
    def tracing(self) -> bool:
        return self.record_trace and self.mode != "oom"


def page_bytes(cpu: int, page: int, version: int) -> bytes:
    """The 4096 bytes page `page` of CPU `cpu` holds at `version` (about 3:1 compressible)."""
    head = page.to_bytes(8, "little") + ((cpu << 48) | version).to_bytes(8, "little")
    rnd = random.Random((cpu << 40) ^ (page << 16) ^ version).randbytes(1008)
    return head + rnd + (version.to_bytes(4, "little") * 768)


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    out = [vmwork_section(nr_cpus)]
    if params.tracing:
        out.append(OPT.trace_section(nr_cpus, params.trace_cap))
    return out


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    setup_mm(arena)
    if params.mode == "stream":
        from aerosync.mm.vm.vm import VM

        vm = VM(arena, 0)
        try:
            vm.file_create("stream", params.file_mb << 20, seed=7)
        finally:
            vm.leave()


def _workers(arena: Arena) -> int:
    rec = arena.config.get("reclaim") or {}
    first = int(rec.get("kthread_cpu", -1))
    return first if first > 0 else int(arena.config["nr_cpus"])


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, f"reclaim-{params.mode}")
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    c_acc, c_wr, c_bad, c_maj, c_killed, c_enomem = c0, c0 + 1, c0 + 2, c0 + 3, c0 + 4, c0 + 5
    ev_maj = VE.vm_event_base(arena, cpu) + VE.PGMAJFAULT
    maj0 = q[ev_maj]
    ncpu = max(1, _workers(arena))
    npages = max(16, int(int(arena.config["nr_pages"]) * params.ws_factor) // ncpu)
    RW, ANON = M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS
    st: dict = {"addr": 0, "ver": {}, "i": 0, "fid": -1, "path": None, "hot": 0,
                "respawn": 0}        # oom: 1 a task to create after a kill, 2 its region to map
    mode = params.mode

    def new_region() -> None:
        st["addr"] = vm.mmap(0, npages * PG, RW, ANON)
        hold_region(arena, cpu, st["addr"], npages * PG)     # (threads mode: the recover hook's to unmap)
        st["ver"] = {}

    if mode in ("compress", "thrash", "oom"):
        new_region()
    zipf = ZipfSampler(npages, params.zipf_s, rng) if mode == "compress" else None
    if mode == "stream":
        fid = vm.file_lookup("stream")
        st["fid"] = fid
        st["fpages"] = (params.file_mb << 20) // PG
        st["faddr"] = vm.mmap(0, st["fpages"] * PG, M.PROT_READ, M.MAP_SHARED, fid, 0)
        st["hot"] = vm.mmap(0, params.hot_pages * PG, RW, ANON)
        for h in range(params.hot_pages):
            vm.store(st["hot"] + h * PG, page_bytes(cpu, h, 1))
    if mode == "dirty":
        fd, path = tempfile.mkstemp(prefix=f"{TMP_PREFIX}dirty-{arena.name}-{cpu}-")
        os.ftruncate(fd, params.file_mb << 20)
        os.close(fd)
        st["path"] = path
        # named after its file: a restarted worker (on_cpu_death = "continue") makes a new
        # one, the dead worker's stays in the file table until the run ends
        fid = vm.file_create(f"dirty{cpu}-{path.rsplit('-', 1)[-1]}", params.file_mb << 20, path=path)
        st["fid"] = fid
        st["fpages"] = (params.file_mb << 20) // PG
        st["faddr"] = vm.mmap(0, st["fpages"] * PG, RW, M.MAP_SHARED, fid, 0)
    wb = vm.reclaim.writeback if vm.reclaim is not None else None
    write_pct = params.write_pct

    rec = OPT.TraceRecorder(arena, cpu, params.trace_cap) if params.tracing else None
    tracing = rec is not None
    begin = rec.begin if rec is not None else None
    end = rec.end if rec is not None else None
    own = rec.key(cpu + 1, 0) if rec is not None else 0   # this CPU's page ids: own | page

    def access(p: int, write: bool) -> None:
        if tracing:
            begin()
        va = st["addr"] + p * PG
        ver = st["ver"].get(p, 0)
        if write or not ver:
            ver += 1
            vm.store(va, page_bytes(cpu, p, ver))
            st["ver"][p] = ver
            q[c_wr] += 1
        else:
            if vm.load(va, PG) != page_bytes(cpu, p, ver):
                q[c_bad] += 1
        if tracing:
            end(own | p)

    def one() -> None:
        if mode == "compress":
            access(zipf(), rng.randrange(100) < write_pct)
        elif mode == "thrash":
            access(st["i"] % npages, st["i"] < npages)
            st["i"] += 1
        elif mode == "stream":
            i = st["i"] % st["fpages"]
            st["i"] += 1
            if tracing:
                begin()
            if vm.load(st["faddr"] + i * PG, PG) != expected_page(st["fid"], 7, i):
                q[c_bad] += 1
            if tracing:
                end(i)                                     # the shared file's page: space 0
                begin()
            h = rng.randrange(params.hot_pages)
            if vm.load(st["hot"] + h * PG, PG) != page_bytes(cpu, h, 1):
                q[c_bad] += 1
            if tracing:
                end(own | h)
        elif mode == "dirty":
            i = st["i"] % st["fpages"]
            st["i"] += 1
            ver = st["ver"].get(i, 0) + 1
            st["ver"][i] = ver
            if tracing:
                begin()
            vm.store(st["faddr"] + i * PG, page_bytes(cpu, i, ver))
            if tracing:
                end(own | i)
            q[c_wr] += 1
        else:                                              # oom: grow until killed
            if st["respawn"] and not respawn():
                return
            try:
                access(st["i"] % npages, True)
                st["i"] += 1
            except TaskKilled:
                q[c_killed] += 1
                tid = vm.current_task()
                vm.exit(tid, 9)
                vm.reap(tid)
                st["respawn"] = 1
                respawn()

    def respawn() -> bool:
        """A new task and region after an OOM kill, as init respawns a service.  ENOMEM
        (the other CPUs' tasks took what the kill freed) is counted and tried again at
        the next operation, as a shell retries a fork that failed with -ENOMEM."""
        try:
            if st["respawn"] == 1:
                vm.switch_to(vm.task_create(f"reclaim-{mode}"))
                st["respawn"] = 2
            new_region()
        except VMError as e:
            if e.errno_name != "ENOMEM":
                raise
            q[c_enomem] += 1
            return False
        st["respawn"], st["i"] = 0, 0
        return True

    def batch(n: int) -> None:
        for _ in range(n):
            one()
            q[c_acc] += 1
        q[c_maj] = q[ev_maj] - maj0

    def teardown() -> None:
        if mode == "dirty" and st["fid"] >= 0:
            if wb is not None:
                wb.msync(vm.current_mm(), st["faddr"], st["fpages"] * PG)
            with open(st["path"], "rb") as f:
                for i, ver in st["ver"].items():
                    f.seek(i * PG)
                    if f.read(PG) != page_bytes(cpu, i, ver):
                        q[c_bad] += 1
        q[c_maj] = q[ev_maj] - maj0
        vm.exit()
        vm.leave()
        if st["path"]:
            os.unlink(st["path"])

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.park_poll  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    release_mm(arena)
    from aerosync.mm.reclaim.oom_kill import oom_report
    from aerosync.mm.reclaim.zmm import zmm_stats

    tot = {k: sum(c["counters"][k] for c in result["cpus"]) for k in COUNTERS}
    ev = VE.fold_vm_events(arena)
    keys = ("pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct", "pswpin", "pswpout", "zswpin",
            "zswpout", "zswpwb", "allocstall_normal", "pgactivate", "pgdeactivate", "pgrefill", "oom_kill")
    out = {**tot, "mode": params.mode, "reclaim_data_mismatches": tot["corrupt"],
           "vmstat": {k: ev[k] for k in keys}, "zmm": zmm_stats(arena), "oom_report": oom_report(arena)}
    if params.tracing:
        out["opt"] = opt_report(arena, params.trace_cap, params.mode)
    return out


def opt_report(arena: Arena, cap: int, mode: str = "compress") -> dict:
    """The run's policy beside Belady's OPT on the run's own merged page trace
    (mm/reclaim/opt.py compare; result["workload"]["opt"], result.schema.json)."""
    from aerosync.mm.reclaim.layout import reclaim_params

    merged = OPT.merge_traces(OPT.read_traces(arena, cap))
    out = OPT.compare(merged["key"], merged["majors"], merged["resident"], merged["swapins"])
    total, cut = merged["accesses_total"], merged["cut_ns"]
    rp = reclaim_params(arena.config)
    notes = []
    if cut is not None:
        notes.append(f"trace_cap = {cap} accesses per CPU reached: OPT compared over the first "
                     f"{out['accesses']:,} of {total:,} accesses (every CPU cut at the first full block's "
                     "last entry); raise [workload] trace_cap to cover the whole run")
    if rp["page_cluster"] and out.get("policy_swapins", 0) > out.get("policy_major_faults", 0):
        notes.append(f"swap readahead (page_cluster = {rp['page_cluster']}): the policy's major faults swapped in "
                     f"{out['policy_swapins']:,} pages, OPT reads one page per fault; reclaim.page_cluster = 0 "
                     "compares demand paging with demand paging")
    if mode in ("stream", "dirty"):
        notes.append("file readahead: one major fault on a file page reads a window of pages (mm/vm/filemap.py), "
                     "OPT reads one page per fault: on a sequential file the ratio can fall below 1")
    out.update(policy=rp["lru"], accesses_total=total, trace_cap=cap,
               truncated=cut is not None, frames_from="mean LRU size (folios on every node's LRU lists and "
               "the per-CPU lru_add batches) over the measured accesses", notes=notes)
    return out
