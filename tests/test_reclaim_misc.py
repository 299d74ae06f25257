"""Reclaim details closed after issue 12's first cut: kswapd working off the zones'
watermark_boost (a fallback that boosts wakes kswapd, which reclaims file pages above the
high mark without writeback or swap and takes the boost away), MADV_FREE's lazy free
(discarded clean, kept when written again), and balance_dirty_pages from the shared
file write fault.  Each test ends with the reclaim and page allocator checkers."""

from __future__ import annotations

import time

import pytest

from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.gfp import (
    ALLOC_KSWAPD,
    GFP_KERNEL,
    MAX_NR_ZONES,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
)
from aerosync.mm.pmm.page import PG_lru, PG_swapbacked
from aerosync.mm.pmm.page_alloc import AllocFailureWarning
from aerosync.mm.pmm.vm_event import fold_node_stats, fold_vm_events
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.check import reclaim_check
from aerosync.mm.reclaim.page_writeback import RATELIMIT_PAGES, dirty_limits
from aerosync.mm.reclaim.swapfile import si_swapinfo, swapoff
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.tlb import tlb_entry_pfn
from aerosync.mm.vm.vm import VM
from workers.workloads.reclaim import page_bytes

RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
PG = 4096
ZERO = bytes(PG)



def _clean(a, cpu: VM) -> None:
    cpu.reclaim.lru.lru_add_drain()
    assert reclaim_check(a, cpu) == []
    if cpu.current_task() >= 0:
        cpu.exit()
    cpu.leave()
    r = check(a)
    assert r.ok, r.violations[:5]
    assert reclaim_check(a, None) == []


def _ev(a) -> dict:
    return fold_vm_events(a)


def _pfn(cpu: VM, va: int) -> int:
    return tlb_entry_pfn(cpu.mmu.translate(va, False), cpu.arena.off("physmem") >> 3)


def _node_zids(cpu: VM) -> tuple[int, ...]:
    return tuple(z for z in range(MAX_NR_ZONES) if cpu.mm.populated[z])


def _reclaim_until(cpu: VM, cond, rounds: int = 400) -> bool:
    """Direct reclaim passes on node 0 until cond() holds."""
    zids = _node_zids(cpu)
    for _ in range(rounds):
        if cond():
            return True
        cpu.reclaim.scan.try_to_free_pages(zids, 0, GFP_KERNEL)
    return cond()


# =========================================================================== MADV_FREE

@pytest.mark.parametrize("lru", ["mglru", "classic"])
def test_madv_free_pages_are_discarded_clean_without_swap(rm, lru: str) -> None:
    """MADV_FREE moves the folios to the file LRU without PG_swapbacked (lru_lazyfree,
    pglazyfree); reclaim then drops them (pglazyfreed) with no swap slot and no swap
    write, and the range reads zeros afterwards."""
    a, cpu = rm(lru=lru)
    n = 64
    addr = cpu.mmap(0, n * PG, RW, ANON)
    for i in range(n):
        cpu.store(addr + i * PG, page_bytes(0, i, 1))
    pfns = [_pfn(cpu, addr + i * PG) for i in range(n)]
    cpu.reclaim.lru.lru_add_drain()
    e0 = _ev(a)
    cpu.madvise(addr, n * PG, M.MADV_FREE)
    e1 = _ev(a)
    assert e1["pglazyfree"] - e0["pglazyfree"] == n
    lruid = R.Off(a).lruid
    for p in pfns:
        fl = a.u32[(a.off("pagemeta") >> 2) + p * 16]
        assert fl & PG_lru and not fl & PG_swapbacked
        li = a.u8[lruid + p]
        if lru == "classic":
            assert li == R.LRU_INACTIVE_FILE
        else:
            assert li >= R.MG_LIST0 and (li - R.MG_LIST0) & 1 == 1      # a file generation
    assert _reclaim_until(cpu, lambda: _ev(a)["pglazyfreed"] - e1["pglazyfreed"] >= n)
    e2 = _ev(a)
    assert e2["pglazyfreed"] - e1["pglazyfreed"] == n
    assert e2["pswpout"] == e0["pswpout"] and si_swapinfo(a)["inuse"] == 0
    for i in range(n):
        assert cpu.load(addr + i * PG, PG) == ZERO, f"page {i} not zero after lazy free"
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


@pytest.mark.parametrize("lru", ["mglru", "classic"])
def test_madv_free_page_written_again_keeps_its_data(rm, lru: str) -> None:
    """A page stored to after MADV_FREE is dirty again: reclaim puts its PTE back, makes
    it swap-backed (try_to_unmap_one's redirtied case) and keeps its data, through swap
    if it comes to that; its clean neighbours are discarded."""
    a, cpu = rm(lru=lru)
    n = 64
    addr = cpu.mmap(0, n * PG, RW, ANON)
    for i in range(n):
        cpu.store(addr + i * PG, page_bytes(0, i, 1))
    cpu.madvise(addr, n * PG, M.MADV_FREE)
    e1 = _ev(a)
    for i in range(0, n, 2):
        cpu.store(addr + i * PG, page_bytes(0, i, 2))
    assert _reclaim_until(cpu, lambda: _ev(a)["pglazyfreed"] - e1["pglazyfreed"] >= n // 2)
    for _ in range(20):                                   # more pressure: the rewritten ones may swap
        cpu.reclaim.scan.try_to_free_pages(_node_zids(cpu), 0, GFP_KERNEL)
    e2 = _ev(a)
    assert e2["pglazyfreed"] - e1["pglazyfreed"] == n // 2
    for i in range(n):
        want = page_bytes(0, i, 2) if i % 2 == 0 else ZERO
        assert cpu.load(addr + i * PG, PG) == want, f"page {i}"
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


def test_madv_free_after_fork_keeps_the_childs_view(rm) -> None:
    """Pages a fork shares (in the backing object) are not the mapping's own: MADV_FREE
    in the parent leaves them alone, so the child keeps reading them under pressure."""
    a, cpu = rm()
    n = 32
    addr = cpu.mmap(0, n * PG, RW, ANON)
    for i in range(n):
        cpu.store(addr + i * PG, page_bytes(0, i, 1))
    parent = cpu.current_task()
    child = cpu.fork("child")
    e0 = _ev(a)
    cpu.madvise(addr, n * PG, M.MADV_FREE)
    assert _ev(a)["pglazyfree"] == e0["pglazyfree"]
    for _ in range(30):
        cpu.reclaim.scan.try_to_free_pages(_node_zids(cpu), 0, GFP_KERNEL)
    assert _ev(a)["pglazyfreed"] == e0["pglazyfreed"]
    cpu.switch_to(child)
    assert all(cpu.load(addr + i * PG, PG) == page_bytes(0, i, 1) for i in range(n))
    cpu.exit()
    cpu.switch_to(parent)
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


# =========================================================================== dirty throttling

def test_shared_file_write_fault_throttles_the_writer(rm, tmp_path) -> None:
    """Stores into a MAP_SHARED real file (no write() call, no explicit
    balance_dirty_pages): the write faults count the dirtied pages and, every
    RATELIMIT_PAGES, balance_dirty_pages pauses the writer (no flusher here: the writer
    writes back itself), so nr_dirty stays bounded by the threshold + one ratelimit
    window; every byte reaches the file."""
    a, cpu = rm(nr_pages=2048, swap_mb=0, dirty_ratio=2, dirty_background_ratio=1)
    n = 400
    path = tmp_path / "big"
    path.write_bytes(bytes(n * PG))
    fid = cpu.file_create("big", n * PG, path=str(path))
    addr = cpu.mmap(0, n * PG, RW, M.MAP_SHARED, fid, 0)
    base = a.off("reclaim")
    th0 = a.u64[(base + R.H_THROTTLED) >> 3]
    dirtied0 = sum(s["nr_dirtied"] for s in fold_node_stats(a))
    peak = 0
    for i in range(n):
        cpu.store64(addr + i * PG, i + 1)
        _, th, dirty = dirty_limits(a)
        peak = max(peak, dirty - th)
    assert a.u64[(base + R.H_THROTTLED) >> 3] > th0
    assert sum(s["nr_dirtied"] for s in fold_node_stats(a)) - dirtied0 >= n   # + pages dirtied again after writeback
    assert sum(s["nr_written"] for s in fold_node_stats(a)) > 0
    assert peak <= RATELIMIT_PAGES, f"nr_dirty went {peak} pages over the threshold"
    cpu.reclaim.writeback.fsync(fid)
    raw = path.read_bytes()
    assert all(int.from_bytes(raw[i * PG : i * PG + 8], "little") == i + 1 for i in range(n))
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


def test_generated_file_writes_are_not_throttled(rm) -> None:
    """A generated (pattern) file has no backing store, hence no writeback to wait for:
    its shared write faults dirty pages but never throttle (a bdi without
    BDI_CAP_WRITEBACK)."""
    a, cpu = rm(nr_pages=2048, swap_mb=0, dirty_ratio=2, dirty_background_ratio=1)
    n = 200
    fid = cpu.file_create("gen", n * PG)
    addr = cpu.mmap(0, n * PG, RW, M.MAP_SHARED, fid, 0)
    base = a.off("reclaim")
    th0 = a.u64[(base + R.H_THROTTLED) >> 3]
    for i in range(n):
        cpu.store64(addr + i * PG, i + 1)
    assert a.u64[(base + R.H_THROTTLED) >> 3] == th0
    assert sum(s["nr_dirty"] for s in fold_node_stats(a)) >= n
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


# =========================================================================== watermark boost

def _zone_of(a, pfn: int) -> int:
    return a.u8[a.off("pagemeta") + pfn * 64 + 6]


def _boost(a, zid: int) -> int:
    return Z.zone_info(a, zid)["watermark_boost"]


def _free(a, zid: int) -> int:
    return a.u64[(Z.zone_off(a, zid) + Z.Z_NR_FREE_PAGES) >> 3]


def _high(a, zid: int) -> int:
    return a.u64[(Z.zone_off(a, zid) + Z.Z_WMARK_HIGH) >> 3]


def _fill_file(cpu: VM, n: int) -> None:
    """Read a generated file's n pages in through a mapping, then unmap it: clean,
    unmapped, unreferenced page cache (reclaimable at the first look)."""
    fid = cpu.file_create("fill", n * PG)
    addr = cpu.mmap(0, n * PG, M.PROT_READ, M.MAP_SHARED, fid, 0)
    for i in range(n):
        cpu.load(addr + i * PG, 8)
    cpu.munmap(addr, n * PG)
    cpu.reclaim.lru.lru_add_drain()


def _fallback_boost(a, mm, zid: int, pb: int) -> None:
    """boost_watermark() through a real fallback: with no unmovable or reclaimable free
    page and no free movable block of pageblock order, a kswapd-waking unmovable
    allocation steals from a movable pageblock, which boosts the zone and flags it
    ZONE_BOOSTED_WATERMARK.  Everything taken is given back before returning."""
    pbo = a.off("mmpageblock")
    held: list[tuple[int, int]] = []
    with mm.zone_lock(zid):
        for mt in (MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE):
            while (p := mm.rmqueue_smallest_locked(zid, 0, mt)) >= 0:
                held.append((p, 0))
        big = []
        while (p := mm.rmqueue_smallest_locked(zid, pb, MIGRATE_MOVABLE)) >= 0:
            big.append(p)
        assert big, "no movable pageblock to fragment"
        first = big.pop()
        for k in range(1 << pb):                          # every other page of one block free
            if k % 2:
                mm.free_one_page_locked(zid, first + k, 0, a.u8[pbo + ((first + k) >> pb)], False)
            else:
                held.append((first + k, 0))
        held.extend((p, pb) for p in big)
        got = mm.rmqueue_locked(zid, 0, MIGRATE_UNMOVABLE, ALLOC_KSWAPD)
        assert got >= 0
        held.append((got, 0))
        assert _boost(a, zid) > 0 and a.u64[(Z.zone_off(a, zid) + Z.Z_FLAGS) >> 3] & Z.ZONE_BOOSTED_WATERMARK
        for p, order in held:
            mm.free_one_page_locked(zid, p, order, a.u8[pbo + (p >> pb)], False)


def _kthread_machine(machine, nr_pages: int, lru: str, max_order: int) -> tuple:
    from aerosync.mm.pmm.init import single_node_sim
    from aerosync.mm.reclaim.kthread import kthread_machine

    sim, rec = kthread_machine(single_node_sim(2), {"lru": lru, "swap_size": 8 << 20, "flusher": False})
    a = machine(nr_pages=nr_pages, nr_cpus=sim["nr_cpus"], sim=sim, slab=True, vm={}, reclaim=rec,
                max_page_order=max_order)
    return a


@pytest.mark.parametrize("lru", ["mglru", "classic"])
def test_fallback_boost_wakes_kswapd_which_reclaims_file_above_high(machine, lru: str) -> None:
    """A movable-block steal boosts the zone; the next kswapd-waking allocation clears
    ZONE_BOOSTED_WATERMARK and wakes kswapd (a real process) although the zone is above
    its high mark; kswapd reclaims file pages toward high + boost with no swap and no
    writeback (anonymous pages stay), then takes the boost away."""
    from aerosync.mm.reclaim.kthread import start_kthreads

    pb = 5                                                # pageblock_order = max_page_order 5: 32 pages
    a = _kthread_machine(machine, 4096, lru, pb)
    kt = None
    cpu = VM(a, 0)
    try:
        t = cpu.task_create("test")
        cpu.switch_to(t)
        probe = cpu.mm.alloc_pages(GFP_KERNEL, 0)
        zid = _zone_of(a, probe)
        cpu.mm.free_pages(probe, 0)
        kt = start_kthreads(a)
        assert kt is not None
        n_anon = 128
        anon = cpu.mmap(0, n_anon * PG, RW, ANON)
        for i in range(n_anon):
            cpu.store(anon + i * PG, page_bytes(0, i, 1))
        high = _high(a, zid)
        want_boost = Z.boost_watermark(0, high, Z.zone_info(a, zid)["managed"], pb)
        assert want_boost > 0
        nfile = 1500
        _fill_file(cpu, nfile)
        if lru == "mglru":
            # a node aged once, as a running machine's is: the file folios in a generation
            # older than the two youngest (with MIN_NR_GENS generations eviction needs aging
            # first, and boosted reclaim gives up after a pass that only aged, as v6.19's
            # balance_pgdat does)
            cpu.reclaim.gen.try_to_inc_max_seq(0)
        assert _free(a, zid) > high
        lv = R.Off(a).lruvec(0)
        q = a.u64
        deadline = time.monotonic() + 30
        while (q[(lv + R.L_KSWAPD_WAIT) >> 3] or q[(lv + R.L_KSWAPD_ACTIVE) >> 3]) and time.monotonic() < deadline:
            cpu.poll()
            time.sleep(0.005)
        e0 = _ev(a)
        boosted0 = q[(lv + R.L_KSWAPD_BOOSTED) >> 3]
        writes0 = sum(s["nr_vmscan_write"] for s in fold_node_stats(a))
        _fallback_boost(a, cpu.mm, zid, pb)
        assert _boost(a, zid) == want_boost
        hz = zid % MAX_NR_ZONES
        assert cpu.reclaim.scan.pgdat_balanced(0, 0, hz - 1)   # a lower zone: the node counts as balanced
        # the rest of that rmqueue(): the flag cleared, wakeup_kswapd(zone, 0, 0, zone_idx)
        # (alloc_pages_nodemask goes through rmqueue(); the inlined PCP pop does not need
        # to: the rmqueue that boosts is the one that clears the flag)
        p = cpu.mm.alloc_pages_nodemask(GFP_KERNEL, 0, 0, None)
        assert p >= 0
        assert not q[(Z.zone_off(a, zid) + Z.Z_FLAGS) >> 3] & Z.ZONE_BOOSTED_WATERMARK
        deadline = time.monotonic() + 60
        while (_boost(a, zid) or q[(lv + R.L_KSWAPD_ACTIVE) >> 3]) and time.monotonic() < deadline:
            cpu.poll()
            time.sleep(0.005)
        cpu.mm.free_pages(p, 0)
        e1 = _ev(a)
        assert _boost(a, zid) == 0, "kswapd did not take the boost away"
        assert q[(lv + R.L_KSWAPD_BOOSTED) >> 3] > boosted0
        assert e1["pgsteal_kswapd"] - e0["pgsteal_kswapd"] >= want_boost
        assert e1["pgsteal_file"] - e0["pgsteal_file"] == e1["pgsteal_kswapd"] - e0["pgsteal_kswapd"]
        assert e1["pgsteal_anon"] == e0["pgsteal_anon"] and e1["pswpout"] == e0["pswpout"]
        assert sum(s["nr_vmscan_write"] for s in fold_node_stats(a)) == writes0
        assert _free(a, zid) > high
        assert all(cpu.load(anon + i * PG, PG) == page_bytes(0, i, 1) for i in range(n_anon))
        cpu.munmap(anon, n_anon * PG)
    finally:
        if kt is not None:
            kt.stop()
        swapoff(a)
    _clean(a, cpu)


def test_boosted_balance_pgdat_gives_up_without_progress(rm) -> None:
    """Only anonymous memory to reclaim and a boost to work off: boosted reclaim may
    neither swap nor write, makes no progress, gives up, takes the boost away anyway,
    and does not count a kswapd failure (Linux: !sc.nr_reclaimed && !boosted)."""
    a, cpu = rm()
    n = 256
    addr = cpu.mmap(0, n * PG, RW, ANON)
    for i in range(n):
        cpu.store(addr + i * PG, page_bytes(0, i, 1))
    cpu.reclaim.lru.lru_add_drain()
    zid = max(_node_zids(cpu), key=lambda z: Z.zone_info(a, z)["managed"])
    bi = (Z.zone_off(a, zid) + Z.Z_WMARK_BOOST) >> 3
    lv = R.Off(a).lruvec(0)
    fails0 = a.u64[(lv + R.L_KSWAPD_FAILURES) >> 3]
    e0 = _ev(a)
    a.u64[bi] = _free(a, zid)                             # far above what file reclaim could give
    scan = cpu.reclaim.scan
    assert scan.pgdat_watermark_boosted(0, zid % MAX_NR_ZONES)
    got = scan.balance_pgdat(0, 0, zid % MAX_NR_ZONES)
    e1 = _ev(a)
    assert a.u64[bi] == 0
    assert e1["pswpout"] == e0["pswpout"] and e1["pgsteal_anon"] == e0["pgsteal_anon"]
    assert got == e1["pgsteal_kswapd"] - e0["pgsteal_kswapd"]
    assert a.u64[(lv + R.L_KSWAPD_FAILURES) >> 3] == fails0
    assert a.u64[(lv + R.L_KSWAPD_BOOSTED) >> 3] == 1
    assert all(cpu.load(addr + i * PG, PG) == page_bytes(0, i, 1) for i in range(n))
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


def test_unbalanced_node_drops_boosting_for_normal_reclaim(rm) -> None:
    """A node below its high mark with a boost: balance_pgdat abandons the boost for
    normal reclaim (swap allowed) and still takes the boost away at the end."""
    a, cpu = rm(nr_pages=2048)
    n = 2300                                              # more than RAM: the node ends up short
    addr = cpu.mmap(0, n * PG, RW, ANON)
    for i in range(n):
        cpu.store(addr + i * PG, page_bytes(0, i, 1))
    cpu.reclaim.lru.lru_add_drain()
    zid = max(_node_zids(cpu), key=lambda z: Z.zone_info(a, z)["managed"])
    hz = zid % MAX_NR_ZONES
    bi = (Z.zone_off(a, zid) + Z.Z_WMARK_BOOST) >> 3
    scan = cpu.reclaim.scan
    # take free pages away until the node is below high (held, given back after)
    held = []
    while scan.pgdat_balanced(0, 0, hz):
        p = cpu.mm.alloc_pages(GFP_KERNEL, 0)
        assert p >= 0
        held.append(p)
    a.u64[bi] = 32
    e0 = _ev(a)
    scan.balance_pgdat(0, 0, hz)
    e1 = _ev(a)
    assert a.u64[bi] == 0
    assert e1["pgsteal_kswapd"] > e0["pgsteal_kswapd"]
    assert e1["pgsteal_anon"] > e0["pgsteal_anon"]                 # swap was allowed again
    for p in held:
        cpu.mm.free_pages(p, 0)
    assert sum(cpu.load(addr + i * PG, PG) != page_bytes(0, i, 1) for i in range(n)) == 0
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


def test_oom_workload_retries_a_respawn_refused_with_enomem(machine, monkeypatch) -> None:
    """reclaim's oom mode: after the OOM killer ends the task, a new task refused with
    ENOMEM (the other CPUs took what the kill freed) is counted and retried at the next
    operation; the worker does not die of it (a reclaim-oom soak lost its worker so)."""
    import random

    from aerosync.mm.vm.mm_types import VMError
    from workers.workloads import reclaim as W
    from workers.workloads._common import counter_index

    params = W.Params(mode="oom", ws_factor=2.0)
    a = machine(nr_pages=2048, nr_cpus=1, slab=True, vm={}, reclaim={"swap_size": 0},
                extra=W.sections(params, 1))
    W.setup(a, params, 1)
    real, refused = VM.task_create, []

    def task_create(self, comm: str, *args, **kw):
        if len(refused) < 3:                       # the first three respawns: no memory
            refused.append(comm)
            raise VMError("ENOMEM", "mm_alloc: no page for the page-table root")
        return real(self, comm, *args, **kw)

    batch = W.make_batch(a, 0, params, random.Random(1))
    monkeypatch.setattr(VM, "task_create", task_create)
    c0 = counter_index(a, 0, 0)
    names = dict(zip(W.COUNTERS, range(c0, c0 + len(W.COUNTERS))))
    with pytest.warns(AllocFailureWarning, match="page allocation failure"):   # the OOM's warn_alloc
        for _ in range(400):
            batch(64)
            if a.u64[names["killed"]] >= 2:
                break
    assert a.u64[names["killed"]] >= 2, "the task was never OOM-killed twice"
    assert a.u64[names["respawn_enomem"]] == 3 and len(refused) == 3
    assert a.u64[names["corrupt"]] == 0
