"""Reclaim on one process: LRUs, swap round trips (fork, shmem, munmap), ZMM, workingset,
writeback, OOM victim choice, OPT, the [reclaim] scenario keys -- and the reclaim
invariants (reclaim/check.py) after each."""

from __future__ import annotations

import itertools
import os
import random
import re

import numpy as np
import pytest

from aerosync.errors import ScenarioError
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import PG_lru, PG_swapcache, page_array
from aerosync.mm.pmm.page_alloc import AllocFailureWarning
from aerosync.mm.pmm.vm_event import fold_node_stats, fold_vm_events
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.check import reclaim_check
from aerosync.mm.reclaim.opt import lru_faults, opt_faults, zipf_trace
from aerosync.mm.reclaim.swap import GEN_MASK, GEN_SHIFT
from aerosync.mm.reclaim.swapfile import proc_swaps, si_swapinfo
from aerosync.mm.reclaim.workingset import pack_shadow, refault_distance, unpack_shadow
from aerosync.mm.reclaim.zmm import class_of, zmm_stats
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.check import vm_check
from aerosync.mm.vm.tlb import tlb_entry_pfn
from aerosync.mm.vm.vm import VM
from workers.workloads.reclaim import page_bytes

RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
PG = 4096



def _fill(cpu: VM, addr: int, n: int, ver: int = 1) -> None:
    for i in range(n):
        cpu.store(addr + i * PG, page_bytes(0, i, ver))


def _verify(cpu: VM, addr: int, n: int, ver: int = 1) -> int:
    return sum(cpu.load(addr + i * PG, PG) != page_bytes(0, i, ver) for i in range(n))


def _clean(a, cpu: VM) -> None:
    cpu.reclaim.lru.lru_add_drain()
    assert reclaim_check(a, cpu) == []
    if cpu.current_task() >= 0:
        cpu.exit()
    cpu.leave()
    r = check(a)
    assert r.ok, r.violations[:5]
    assert reclaim_check(a, None) == []
    assert si_swapinfo(a)["inuse"] <= sum(n["nr_swapcached"] for n in fold_node_stats(a))


@pytest.mark.parametrize("lru", ["mglru", "classic"])
def test_anon_swap_round_trip_verified(rm, lru: str) -> None:
    a, cpu = rm(lru=lru)
    n = 3000                                               # 1.5 x the 2048-page machine
    addr = cpu.mmap(0, n * PG, RW, ANON)
    _fill(cpu, addr, n)
    assert _verify(cpu, addr, n) == 0
    ev = fold_vm_events(a)
    assert ev["pgsteal_direct"] > 0 and ev["allocstall_normal"] > 0
    assert ev["zswpout"] + ev["pswpout"] > 0 and ev["zswpin"] + ev["pswpin"] > 0
    assert ev["pgmajfault"] > 0
    st = fold_node_stats(a)[0]
    assert st["workingset_refault_anon"] > 0
    mo = T.mm_off(a, cpu.current_mm())
    assert T.get_mm_counter_sum(a.u64, mo, T.MM_SWAPENTS, int(a.config["nr_cpus"])) > 0
    assert reclaim_check(a, cpu) == []
    assert "file" in proc_swaps(a).splitlines()[1]
    cpu.munmap(addr, n * PG)
    assert T.get_mm_counter_sum(a.u64, mo, T.MM_SWAPENTS, int(a.config["nr_cpus"])) == 0
    _clean(a, cpu)


def test_fork_cow_across_swap(rm) -> None:
    a, cpu = rm(swap_mb=16)
    n = 1400
    addr = cpu.mmap(0, n * PG, RW, ANON)
    _fill(cpu, addr, n)
    parent = cpu.current_task()
    child = cpu.fork()
    hog = cpu.mmap(0, 1000 * PG, RW, ANON)                 # pressure: both sides' pages go out
    for i in range(1000):
        cpu.store64(hog + i * PG, i)
    for i in range(0, n, 3):                               # parent rewrites every third page
        cpu.store(addr + i * PG, page_bytes(0, i, 2))
    cpu.switch_to(child)
    assert _verify(cpu, addr, n) == 0                      # the child still sees version 1
    # the child's swap-ins left folios in the backing's tree and in the swap cache (the
    # parent's swap PTEs keep their slots): R2 counts the cache's reference
    pa = page_array(a)
    both = int(np.count_nonzero((pa["flags"] & PG_swapcache != 0) & (pa["mapping"] != 0)))
    del pa
    assert both > 0
    rep = vm_check(a)
    assert rep.ok, str(rep)
    cpu.exit()
    cpu.reap(child)
    cpu.switch_to(parent)
    bad = sum(cpu.load(addr + i * PG, PG) != page_bytes(0, i, 2 if i % 3 == 0 else 1) for i in range(n))
    assert bad == 0
    assert reclaim_check(a, cpu) == []
    _clean(a, cpu)


def test_shmem_swap_round_trip(rm) -> None:
    a, cpu = rm()
    n = 2600
    addr = cpu.mmap(0, n * PG, RW, M.MAP_SHARED | M.MAP_ANONYMOUS)
    _fill(cpu, addr, n)
    assert _verify(cpu, addr, n) == 0
    assert fold_vm_events(a)["pgsteal_anon"] > 0
    assert reclaim_check(a, cpu) == []
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


def test_file_eviction_and_refault(rm) -> None:
    from aerosync.mm.vm.filemap import expected_page

    a, cpu = rm(swap_mb=0)
    fid = cpu.file_create("f", 3000 * PG, seed=3)
    addr = cpu.mmap(0, 3000 * PG, M.PROT_READ, M.MAP_SHARED, fid, 0)
    for _ in range(2):
        for i in range(3000):
            assert cpu.load(addr + i * PG, PG) == expected_page(fid, 3, i)
    st = fold_node_stats(a)[0]
    assert st["workingset_refault_file"] > 0
    assert fold_vm_events(a)["pgsteal_file"] > 0
    cpu.munmap(addr, 3000 * PG)
    _clean(a, cpu)


@pytest.mark.parametrize("locking", ["per_vma", "mmap_lock", "speculative"])
def test_no_swap_anon_not_reclaimed_and_oom_report(rm, locking: str, monkeypatch) -> None:
    """Without swap anonymous memory cannot go; the OOM killer chooses the biggest task
    (oom_score_adj -1000 is never chosen) and reports it in the kernel's words -- in
    every fault-locking mode (under mmap_lock the fault that chose its own task holds
    that mm's mmap_lock for read: the reaper must not wait for it for write)."""
    from aerosync.lib.ratelimit import RatelimitState
    from aerosync.mm.pmm import page_alloc as PA
    from aerosync.mm.reclaim.oom_kill import TaskKilled, oom_report, task_killed

    monkeypatch.setattr(PA, "nopage_rs", RatelimitState(10.0, 1))   # warn_alloc's, per process: fresh
    a, cpu = rm(swap_mb=0, machine_kw={"vm": {"fault_locking": locking}})
    me = cpu.current_task()
    small = cpu.task_create("small")
    cpu.switch_to(small)
    s_addr = cpu.mmap(0, 64 * PG, RW, ANON)
    for i in range(64):
        cpu.store64(s_addr + i * PG, i)
    cpu.switch_to(me)
    a.u64[(T.task_off(a, me) + T.T_OOM_SCORE_ADJ) >> 3] = 0
    big = cpu.mmap(0, 4000 * PG, RW, ANON)
    killed = False
    # the victim is the faulting task itself: its allocation fails at once (an OOM victim
    # does not retry, warn_alloc as Linux's nopage) and the fault's exit delivers SIGKILL
    with pytest.warns(AllocFailureWarning, match="page allocation failure"):
        try:
            for i in range(4000):
                cpu.store64(big + i * PG, i)
        except TaskKilled:
            killed = True
    assert killed and task_killed(a, me) and not task_killed(a, small)
    text = oom_report(a)
    assert "invoked oom-killer" in text and "Out of memory: Killed process" in text and "(test)" in text
    # the reaper's line in mm/oom_kill.c's words (the mm's own mmap lock is had for read)
    assert re.search(r"\noom_reaper: reaped process \d+ \(test\), now anon-rss:\d+kB, file-rss:\d+kB, "
                     r"shmem-rss:\d+kB\n", text), text[-300:]
    assert fold_vm_events(a)["oom_kill"] == 1
    cpu.exit(me, 9)
    cpu.reap(me)
    cpu.switch_to(small)
    assert [cpu.load64(s_addr + i * PG) for i in range(64)] == list(range(64))   # the survivor's data
    _clean(a, cpu)


def test_zmm_round_trip_classes_and_writeback(rm) -> None:
    a, cpu = rm(swap_mb=4, zmm_max_pool_percent=1)         # a tiny pool: it fills and writes back
    rec = cpu.reclaim
    zmm, dev = rec.zmm, rec.dev
    assert class_of(32) == 0 and class_of(33) == 1 and class_of(4096) == 254
    pfn = cpu.mm.alloc_pages(0, 0)
    slots = []
    for k in range(120):
        data = page_bytes(0, k, 1)
        cpu.arena.u8[a.off("physmem") + pfn * PG : a.off("physmem") + (pfn + 1) * PG] = data
        s = dev.get_swap_page()
        slots.append(s)
        if not zmm.store(s, pfn):
            rec.swap.write_slot(s, data)
    st = zmm_stats(a)
    assert st["stored_pages"] > 0 and st["compression_ratio"] >= 2
    assert st["pool_limit_hit"] >= 1 and st["written_back_pages"] > 0
    for k, s in enumerate(slots):
        rec.swap.read(s, pfn)
        assert bytes(a.u8[a.off("physmem") + pfn * PG : a.off("physmem") + (pfn + 1) * PG]) == page_bytes(0, k, 1)
        dev.put_cache(s)
    assert zmm_stats(a)["stored_pages"] == 0 and zmm_stats(a)["pool_pages"] == 0
    cpu.mm.free_pages(pfn, 0)
    _clean(a, cpu)


def test_zmm_checker_sees_a_torn_pool_and_rebuild_mends_it(rm) -> None:
    """ZM1-ZM4 hold over a pool with copies in it, each catches its own damage (a count,
    a free list, a partial link, the LRU), and rebuild_zmm -- recovery's -- sets
    everything from the handles again: every copy still loads, byte for byte."""
    from aerosync.mm.pmm.page import P_PRIVATE
    from aerosync.mm.reclaim.recover import rebuild_zmm

    a, cpu = rm(swap_mb=4)
    rec = cpu.reclaim
    zmm, dev = rec.zmm, rec.dev
    pfn = cpu.mm.alloc_pages(0, 0)
    phys = a.off("physmem") + pfn * PG
    slots = []
    for k in range(60):
        a.u8[phys : phys + PG] = page_bytes(0, k, 1 + k % 3)
        s = dev.get_swap_page()
        assert zmm.store(s, pfn)
        slots.append(s)
    for k in range(0, 60, 4):                           # holes: free objects, partial zspages
        zmm.invalidate(slots[k])

    def zm() -> list[tuple[str, str]]:                   # (the slots are held by no folio: SW2 aside)
        return [b for b in reclaim_check(a, cpu) if b[0].startswith("ZM")]

    assert zm() == []
    off, q = R.Off(a), a.u64
    h = q[(off.szmm >> 3) + slots[1]]
    zp = (h >> 32) - 1
    c = q[(a.off("pagemeta") + zp * 64 + P_PRIVATE) >> 3] & 0xFFFF
    zc = off.zcls + c * R.ZCLASS_REC
    partial = [z for z in range(R.NR_ZS_CLASSES) if q[(off.zcls + z * R.ZCLASS_REC + R.ZC_PARTIAL) >> 3]]
    damage = {
        "ZM3": lambda: q.__setitem__((zc + R.ZC_INUSE) >> 3, q[(zc + R.ZC_INUSE) >> 3] + 1),
        "ZM2": lambda: q.__setitem__((a.off("pagemeta") + zp * 64 + P_PRIVATE) >> 3,
                                     q[(a.off("pagemeta") + zp * 64 + P_PRIVATE) >> 3] | 0xFFFF << 32),
        "ZM4": lambda: a.u32.__setitem__((off.szlru >> 2) + 2 * slots[5], 0xFFFF_FFFF),
    }
    assert partial                                       # (the holes left zspages with room)
    damage["ZM2 "] = lambda: q.__setitem__((off.zcls + partial[0] * R.ZCLASS_REC + R.ZC_PARTIAL) >> 3, 0)
    for inv, hurt in damage.items():
        hurt()
        assert inv.strip() in {i for i, _m in zm()}, (inv, zm())
        assert rebuild_zmm(a, cpu.mm, cpu.cpu)["stored"] == 45
        assert zm() == []
    for k, s in enumerate(slots):
        if k % 4:
            assert zmm.load(s, pfn)
            assert bytes(a.u8[phys : phys + PG]) == page_bytes(0, k, 1 + k % 3)
        dev.put_cache(s)
    assert zmm_stats(a)["stored_pages"] == 0 and zmm_stats(a)["pool_pages"] == 0
    cpu.mm.free_pages(pfn, 0)
    _clean(a, cpu)


def test_mglru_generations_against_model(rm) -> None:
    """New anon folios enter max_seq - 1 (MIN_NR_GENS = 2 from the top), aging adds a
    generation and promotes accessed folios to max_seq (from their second sighting: the
    first only sets PG_referenced, Linux 6.14+), the oldest generation moves up when a
    type has four."""
    a, cpu = rm(swap_mb=0)
    rec = cpu.reclaim
    addr = cpu.mmap(0, 32 * PG, RW, ANON)
    for i in range(32):
        cpu.store64(addr + i * PG, i)
    rec.lru.lru_add_drain()
    lv = rec.off.lruvec(0)

    def seq() -> tuple[int, int]:
        return a.u64[(lv + R.L_MAX_SEQ) >> 3], a.u64[(lv + R.L_MIN_SEQ) >> 3]

    def gens() -> list[int]:
        out = []
        for pfn, _va in _pfns(cpu, addr, 32):
            fl = a.u32[(a.off("pagemeta") + pfn * 64) >> 2]
            assert fl & PG_lru
            out.append(((fl & GEN_MASK) >> GEN_SHIFT) - 1)
        return out

    max_seq, _ = seq()
    assert set(gens()) == {(max_seq - 1) % 4}
    rec.gen.try_to_inc_max_seq(0)                          # the stores' accessed bits: a first
    max_seq, _ = seq()                                     # sighting only sets PG_referenced
    assert set(gens()) == {(max_seq - 2) % 4}
    model_max, model_min = max_seq, seq()[1]
    model = [max_seq - 2] * 32                             # each folio's sequence number
    for rnd in range(5):
        hot = set(range(0, 32, 2)) if rnd % 2 == 0 else set()
        for i in hot:
            cpu.load64(addr + i * PG)                          # sets A (the walk clears it)
        cpu.tlb.flush_all_local()
        rec.gen.try_to_inc_max_seq(0)
        for i in hot:
            model[i] = model_max                           # promoted to the youngest, then aged
        model_max += 1
        if model_max - model_min + 1 > 4:
            model_min += 1
        model = [max(x, model_min) for x in model]         # inc_min_seq moves the oldest up
        assert seq() == (model_max, model_min)
        assert gens() == [x % 4 for x in model]
        assert reclaim_check(a, cpu) == []
    cpu.munmap(addr, 32 * PG)
    _clean(a, cpu)


def _pfns(cpu: VM, addr: int, n: int) -> list[tuple[int, int]]:
    from aerosync.mm.vm.pgtable import PTE_PFN_MASK

    q = cpu.arena.u64
    root = q[(T.mm_off(cpu.arena, cpu.current_mm()) + T.M_PGD) >> 3]
    out = []
    P8 = cpu.arena.off("physmem") >> 3
    for i in range(n):
        va = addr + i * PG
        t = cpu.pt.walk(root, va)
        e = q[P8 + (t << 9) + ((va >> 12) & 511)]
        out.append(((e & PTE_PFN_MASK) >> 12, va))
    return out


def test_refault_distance_arithmetic() -> None:
    for token, nid, ws in [(0, 0, False), (12345, 3, True), ((1 << 54) - 1, 63, False)]:
        assert unpack_shadow(pack_shadow(token, nid, ws)) == (token, nid, ws)
    assert refault_distance(100, 40) == 60
    assert refault_distance(5, (1 << 54) - 3) == 8                  # the clock wrapped
    assert pack_shadow(1, 0, False) & 1 and (pack_shadow(1, 0, False) >> 1) & 3 == 3


def test_swap_cluster_allocator_model(rm) -> None:
    """Random alloc / dup / put against a model: counts, clusters and inuse agree."""
    a, cpu = rm(swap_mb=8)
    dev = cpu.reclaim.dev
    rnd = random.Random(5)
    model: dict[int, int] = {}
    for _ in range(6000):
        op = rnd.random()
        if op < 0.5 or not model:
            s = dev.get_swap_page()
            if s < 0:
                continue
            assert s not in model and 0 < s < 2048
            dev.dup(s)
            dev.put_cache(s)
            model[s] = 1
        elif op < 0.6:
            s = rnd.choice(list(model))
            dev.dup(s, 2)
            model[s] += 2
        else:
            s = rnd.choice(list(model))
            dev.put(s)
            model[s] -= 1
            if not model[s]:
                del model[s]
        if rnd.random() < 0.01:
            assert [b for b in reclaim_check(a, None) if b[0] == "SW3"] == []
    for s, c in model.items():
        assert dev.count(s) == c
    assert si_swapinfo(a)["inuse"] == len(model)
    for s, c in list(model.items()):
        dev.put(s, c)
    assert si_swapinfo(a)["inuse"] == 0
    _clean(a, cpu)


def test_opt_is_optimal_on_small_traces() -> None:
    rnd = random.Random(2)
    for _ in range(30):
        trace = [rnd.randrange(5) for _ in range(9)]
        frames = rnd.randrange(1, 4)
        best = _brute(trace, frames)
        assert opt_faults(trace, frames) == best <= lru_faults(trace, frames)
    t = zipf_trace(200, 3000, seed=1)
    assert t == zipf_trace(200, 3000, seed=1)                     # seeded: reproducible
    assert opt_faults(t, 50) <= lru_faults(t, 50)


def _brute(trace: list[int], frames: int) -> int:
    best = [1 << 30]

    def go(i: int, mem: frozenset, faults: int) -> None:
        if faults >= best[0]:
            return
        if i == len(trace):
            best[0] = faults
            return
        p = trace[i]
        if p in mem:
            go(i + 1, mem, faults)
        elif len(mem) < frames:
            go(i + 1, mem | {p}, faults + 1)
        else:
            for v in mem:
                go(i + 1, (mem - {v}) | {p}, faults + 1)

    go(0, frozenset(), 0)
    return best[0]


def test_writeback_to_real_file_with_msync(rm, tmp_path) -> None:
    a, cpu = rm(swap_mb=0)
    path = tmp_path / "data"
    path.write_bytes(bytes(64 * PG))
    fid = cpu.file_create("d", 64 * PG, path=str(path))
    addr = cpu.mmap(0, 64 * PG, RW, M.MAP_SHARED, fid, 0)
    for i in range(64):
        cpu.store(addr + i * PG, page_bytes(0, i, 1))
    assert sum(n["nr_dirty"] for n in fold_node_stats(a)) > 0
    wb = cpu.reclaim.writeback
    assert wb.msync(cpu.current_mm(), addr, 64 * PG) == 64
    assert sum(n["nr_dirty"] for n in fold_node_stats(a)) == 0
    data = path.read_bytes()
    assert all(data[i * PG : (i + 1) * PG] == page_bytes(0, i, 1) for i in range(64))
    cpu.store(addr + 5 * PG, page_bytes(0, 5, 2))              # write-protected: faults, dirty again
    assert sum(n["nr_dirty"] for n in fold_node_stats(a)) == 1
    assert wb.fsync(fid) == 1 and path.read_bytes()[5 * PG : 6 * PG] == page_bytes(0, 5, 2)
    cpu.munmap(addr, 64 * PG)
    _clean(a, cpu)


def test_msync_waits_for_a_locked_folio_and_writes_it(rm, tmp_path) -> None:
    """msync is WB_SYNC_ALL: a dirty folio locked by someone else (reclaim looking at
    it, to keep it in the end) is waited for and written, not skipped as the flusher
    skips it -- skipped, the store its PTE had made dirty never reached the file (a
    reclaim dirty-mode run read the older data back at its end, 3 runs in 4)."""
    import threading
    import time

    a, cpu = rm(swap_mb=0)
    path = tmp_path / "data"
    path.write_bytes(bytes(4 * PG))
    fid = cpu.file_create("d", 4 * PG, path=str(path))
    addr = cpu.mmap(0, 4 * PG, RW, M.MAP_SHARED, fid, 0)
    cpu.store(addr + PG, page_bytes(0, 1, 1))
    pfn = tlb_entry_pfn(cpu.mmu.translate(addr + PG, False), cpu.arena.off("physmem") >> 3)
    flock = cpu.reclaim.flock
    assert flock.trylock(pfn)                                   # "reclaim" holds the folio
    wb = cpu.reclaim.writeback
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(wb.msync(cpu.current_mm(), addr, 4 * PG)))
    t.start()
    time.sleep(0.2)
    assert out == []                                            # waiting for the lock (not skipping it)
    flock.unlock(pfn)
    t.join(30)
    assert out == [1]
    assert path.read_bytes()[PG : 2 * PG] == page_bytes(0, 1, 1)
    cpu.munmap(addr, 4 * PG)
    _clean(a, cpu)


def test_dirty_throttling_pauses_writers(rm, tmp_path) -> None:
    a, cpu = rm(nr_pages=2048, swap_mb=0, dirty_ratio=2, dirty_background_ratio=1)
    path = tmp_path / "big"
    path.write_bytes(bytes(400 * PG))
    fid = cpu.file_create("big", 400 * PG, path=str(path))
    addr = cpu.mmap(0, 400 * PG, RW, M.MAP_SHARED, fid, 0)
    wb = cpu.reclaim.writeback
    for i in range(400):
        cpu.store64(addr + i * PG, i + 1)
        wb.balance_dirty_pages_ratelimited(1)
    base = a.off("reclaim")
    assert a.u64[(base + R.H_THROTTLED) >> 3] > 0
    assert sum(n["nr_written"] for n in fold_node_stats(a)) > 0
    wb.fsync(fid)
    raw = path.read_bytes()
    assert all(int.from_bytes(raw[i * PG : i * PG + 8], "little") == i + 1 for i in range(400))
    cpu.munmap(addr, 400 * PG)
    _clean(a, cpu)


@pytest.mark.parametrize(("key", "value"), [("lru", "lfu"), ("swappiness", 300), ("swap_size", 4095),
                                            ("zmm_compressor", "gzip"), ("kswapd", "yes"), ("bogus", 1)])
def test_bad_reclaim_keys_are_named(tmp_path, key: str, value: object) -> None:
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    f = tmp_path / "s.toml"
    v = f'"{value}"' if isinstance(value, str) else value
    f.write_text(f'[run]\nworkload = "null"\n[reclaim]\n{key} = {v}\n')
    with pytest.raises(ScenarioError) as ei:
        load_scenario(str(f), registry())
    assert f"reclaim.{key}" in str(ei.value)


def test_reclaim_section_parses(tmp_path) -> None:
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    f = tmp_path / "s.toml"
    f.write_text('[run]\nworkload = "null"\n[reclaim]\nlru = "classic"\nswap_size = "64M"\n')
    s = load_scenario(str(f), registry())
    assert s.reclaim.present and s.reclaim.as_dict() == {"lru": "classic", "swap_size": 64 << 20}
    _ = itertools


@pytest.mark.parametrize("lru", ["mglru", "classic"])
def test_multiprocess_pressure_run_with_live_checks(lru: str) -> None:
    """Two worker CPUs, kswapd and the flusher as processes, 1.5 x RAM under Zipf access:
    live invariant checks mid-run, no byte lost, nothing left behind."""
    from pathlib import Path

    import psutil

    from aerosync.coordinator import run
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    scen = Path(__file__).resolve().parent.parent / "scenarios" / "reclaim-compress.toml"
    scn = load_scenario(str(scen), registry(), ["run.duration=3", "run.check_interval=1", f"reclaim.lru={lru}"])
    res = run(scn)
    assert res.workload["reclaim_data_mismatches"] == 0
    assert res.workload["accesses"] > 0
    assert res.mm_check["ok"], res.mm_check["violations"][:3]
    assert all(c["ok"] for c in res.mm_check["live_checks"])
    live = [c["reclaim"] for c in res.mm_check["live_checks"] if "reclaim" in c]
    assert live and len(live) == len(res.mm_check["live_checks"])      # the reclaim check ran at each pause
    assert max(c["reclaim_lru_folios"] for c in live) > 0
    assert max(c.get("reclaim_swap_slots_used", 0) for c in live) > 0  # mid-flight: pages were out
    assert "reclaim_lru_folios" in res.mm_check["summary"]              # and after the run
    ev = res.workload["vmstat"]
    assert ev["pgsteal_kswapd"] + ev["pgsteal_direct"] > 0
    assert not [p for p in psutil.Process().children(recursive=True) if "kswapd" in " ".join(p.cmdline())]
    assert not list(Path("/tmp").glob("aerosync_*.swap")) or all(
        not p.name.startswith(f"aerosync_{os.getpid()}_") for p in Path("/tmp").glob("*.swap"))


def test_reclaim_report_names_a_broken_swap_count_and_lru(rm) -> None:
    """The checker the coordinator runs (reclaim_report) sees a swap count that differs
    from the references (SW1), a listed folio marked free (LRU1) and a mapped folio on
    no LRU list (LRU4)."""
    from aerosync.mm.pmm.page import PG_pcp
    from aerosync.mm.reclaim.check import reclaim_report

    a, cpu = rm(lru="classic")
    n = 2600
    addr = cpu.mmap(0, n * PG, RW, ANON)
    _fill(cpu, addr, n)
    cpu.reclaim.lru.lru_add_drain()
    rep = reclaim_report(a)
    assert rep.ok, rep.violations[:3]
    assert rep.summary["reclaim_swap_slots_used"] > 0 and rep.summary["reclaim_lru_folios"] > 0
    assert rep.summary["reclaim_swap_references"] >= rep.summary["reclaim_swap_slots_used"]
    dev = cpu.reclaim.dev
    slot = next(s for s in range(1, cpu.reclaim.off.nr_slots) if dev.count(s))
    smap = dev.smap4 + slot
    a.u32[smap] += 1                                        # one count too many
    rep = reclaim_report(a)
    assert rep.ids() == {"SW1"} and f"slot {slot}:" in str(rep.violations[0])
    a.u32[smap] -= 1
    lv = cpu.reclaim.off.lruvec(0)
    pfn = next(a.u32[(lv + R.L_LISTS + 16 * li) >> 2] for li in range(R.NR_LISTS)
               if a.u32[(lv + R.L_LISTS + 16 * li) >> 2] != 0xFFFF_FFFF)
    fw = (a.off("pagemeta") + pfn * 64) >> 2
    a.u32[fw] |= PG_pcp                                     # "free" while on an LRU list
    rep = reclaim_report(a)
    assert "LRU1" in rep.ids() and any(f"pfn {pfn} " in str(v) for v in rep.violations)
    a.u32[fw] &= ~PG_pcp
    assert reclaim_report(a).ok
    lru = cpu.reclaim.lru
    mapped = _pfns(cpu, addr + (n - 1) * PG, 1)[0][0]        # the last page written: resident
    lru.lock(0)
    try:
        assert lru.isolate(0, mapped)                      # taken off its list and never put back
    finally:
        lru.unlock(0)
    rep = reclaim_report(a)
    assert rep.ids() == {"LRU4"} and f"pfn {mapped} " in str(rep.violations[0])
    lru.putback(mapped)
    assert reclaim_report(a).ok
    cpu.munmap(addr, n * PG)
    _clean(a, cpu)


@pytest.mark.parametrize("how", ["munmap", "exit"])
def test_unmapping_swapped_memory_frees_slots_and_swap_cache(rm, how: str) -> None:
    """free_swap_and_cache: when a swap PTE or an object's swap value goes and was the
    slot's last reference, a swap-cache folio left on it (a readahead page, or one whose
    other references went first) leaves the cache and the slot is freed -- nothing stays
    in swap or in memory for an address space that is gone."""
    a, cpu = rm()
    n = 3000
    addr = cpu.mmap(0, n * PG, RW, ANON)
    _fill(cpu, addr, n)
    assert _verify(cpu, addr, n) == 0
    assert fold_vm_events(a)["swap_ra"] > 0                # readahead left folios in the cache
    if how == "munmap":
        cpu.munmap(addr, n * PG)
    else:
        t = cpu.current_task()
        cpu.exit()
        cpu.reap(t)
    assert si_swapinfo(a)["inuse"] == 0
    assert sum(s["nr_swapcached"] for s in fold_node_stats(a)) == 0
    cpu.reclaim.lru.lru_add_drain()
    assert reclaim_check(a) == []
    _clean(a, cpu)
