"""Buddy-list races between simulated CPUs (real processes) with and without PCP lists.

Regression for the `aerosync bench pagealloc` crash "u64[i_nr0] -= 1: invalid value for
format 'Q'" (free_area[0].nr_free was 0 while the order-0 list had a head).  Root cause:
alloc_pages_buddy()'s inlined order-0 fast path unlinked the head page under zone.lock
but cleared its PG_buddy/order/migratetype word only after releasing the lock, so for
a few bytecodes a page that was already off the free list (and counted out of nr_free)
still looked like a free order-0 buddy.  Another CPU freeing its buddy in that window
merged with it (__free_one_page's page_is_buddy(): del_from_free_list on a page that is
on no list -> nr_free[0] decremented twice, the list head rewritten from the stale next
link) and put the allocated page back on an order-1 free list; a claim's
move_freepages_block() scanning the pageblock could do the same.

test_fast_path_alloc_vs_buddy_free_window replays that interleaving deterministically
(a zone lock whose release runs the other CPU's free); the multi-process tests hunt for
it and anything like it with real concurrency, checking the invariants while the
workers are parked and at the end.  CI runs short versions; `--soak` runs long ones.
"""

from __future__ import annotations

import gc
import os
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import page_alloc as PA
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import PG_buddy
from aerosync.mm.pmm.page_alloc import MM
from aerosync.sync.spinlock import SpinLock

pytestmark = pytest.mark.usefixtures("both_profiles")   # issue 14: races and checker in both kernel profiles

NOWARN = G.__GFP_NOWARN
GFPS = (G.GFP_KERNEL, G.GFP_KERNEL, G.GFP_HIGHUSER_MOVABLE, G.GFP_KERNEL | G.__GFP_RECLAIMABLE,
        G.GFP_HIGHUSER_MOVABLE, G.GFP_ATOMIC)
ORDERS = (0, 0, 0, 0, 0, 1, 1, 2, 3)

RING_SLOTS = 2048
RING_BYTES = 64 + RING_SLOTS * 16            # head u64 | tail u64 | ... | slots (pfn<<8|order, pattern)
CTL_BYTES = 4096                             # go, pause, parked | per-child results at +64*(1+cpu)
R_BAD, R_ALLOCS, R_FAILS, R_XFREED, R_OPS, R_DONE, R_ERROR = range(7)


@pytest.fixture
def mk(machine: Callable[..., Arena]) -> Callable[..., Arena]:
    def factory(nr_pages: int, nr_cpus: int, **kw: Any) -> Arena:
        return machine(nr_pages=nr_pages, nr_cpus=nr_cpus, **kw)

    return factory


def total_free(a: Arena) -> int:
    n = a.u64[(a.off("mmzones") + Z.G_NR_ZONES) >> 3]
    return sum(Z.zone_info(a, z)["nr_free_pages"] for z in range(n))


# ----------------------------------------------------------------------------- deterministic replay
@pytest.mark.parametrize("pcp", [False, True])
def test_fast_path_alloc_vs_buddy_free_window(monkeypatch, mk, pcp: bool) -> None:
    """cpu0 pops page P from the order-0 list; right as it drops zone.lock, cpu1 frees
    P's buddy.  P must not look free to cpu1 (no merge with an allocated page)."""
    hook: list[Callable[[], None]] = []

    class HookedLock(SpinLock):
        """A zone lock whose release, once armed, runs the other CPU's step after it."""

        def __init__(self, arena: Arena, slot: int, cpu: int) -> None:
            super().__init__(arena, slot, cpu)
            inner = self.release

            def release() -> None:
                inner()
                if hook and cpu == 0:
                    hook.pop()()

            self.release = release

    monkeypatch.setattr(PA, "SpinLock", HookedLock)
    a = mk(2048, 2, pcp_enabled=pcp)
    m0, m1 = MM(a, 0), MM(a, 1)
    gfp = G.GFP_KERNEL
    # two order-0 buddies, both allocated; give P back so it heads its order-0 list alone
    held = [m0.alloc_pages(gfp, 0) for _ in range(8)]
    pairs = [(p, p ^ 1) for p in held if p & 1 == 0 and p ^ 1 in held]
    assert pairs, held
    p, q = pairs[0]
    for x in held:
        if x not in (p, q):
            m0.free_pages(x)
    m0.drain_local_pages()
    m0.free_pages(p)
    m0.drain_local_pages()                      # with PCP: P to the buddy list, not cpu0's pcp
    w = a.u64[(a.off("pagemeta") >> 3) + (p << 3)]
    assert w & PG_buddy and (w >> 32) & 0xFF == 0, "P is not a free order-0 block"
    assert check(a).ok

    def cpu1_frees_buddy() -> None:
        m1.free_pages(q)
        m1.drain_local_pages()                  # with PCP: q to the buddy list under zone.lock

    # PCP off: the inlined buddy fast path pops P.  PCP on: the refill (rmqueue_bulk) moves
    # P to cpu0's pcp list under zone.lock -- P must be PG_pcp, not PG_buddy, once it drops.
    hook.append(cpu1_frees_buddy)
    got = m0.alloc_pages(gfp, 0)
    if not pcp:
        assert got == p, (got, p)
    assert not hook, "zone lock never released by cpu0"
    rep = check(a)
    assert rep.ok, str(rep)
    m0.free_pages(got)
    m0.drain_local_pages()
    m1.drain_local_pages()
    rep = check(a)
    assert rep.ok, str(rep)


# ----------------------------------------------------------------------------- multi-process
def _ring(a: Arena, base: int, cpu: int) -> int:
    return base + CTL_BYTES + cpu * RING_BYTES


def race_child(name: str, cpu: int, nprocs: int, ops: int, seed: int, base: int, host_cpu: int) -> None:
    """One simulated CPU: order 0-3 alloc/free of mixed migratetypes near the watermarks,
    patterns written and verified, blocks handed to the next CPU; parks on `pause`."""
    if host_cpu >= 0:
        os.sched_setaffinity(0, {host_cpu})
    a = Arena.attach(name)
    m = MM(a, cpu)
    at = a.atomic
    u64 = a.u64
    phys = a.off("physmem")
    rng = random.Random(seed)
    res = base + 64 * (1 + cpu)
    go, pause, parked = base, base + 8, base + 16
    my_ring, peer_ring = _ring(a, base, cpu), _ring(a, base, (cpu + 1) % nprocs)
    nr_pages = a.u64[(a.off("mmzones") + Z.G_NR_PAGES) >> 3]
    cap = nr_pages * 15 // (16 * nprocs)        # together: just past the marks, so allocs fail at times
    held: list[tuple[int, int, int]] = []
    held_pages = 0
    st = [0] * 5
    alloc, free = m.alloc_pages, m.free_pages

    def park() -> None:
        if at.load64(pause):
            at.fetch_add64(parked, 1)
            while at.load64(pause):
                time.sleep(0.0002)
            at.fetch_sub64(parked, 1)

    def verify_and_free(pfn: int, order: int, pat: int) -> None:
        for i in range(1 << order):
            off = phys + ((pfn + i) << 12)
            if u64[off >> 3] != pat or u64[(off + 4088) >> 3] != pat ^ i:
                st[R_BAD] += 1
        free(pfn, order)

    at.fetch_add64(go, 1)
    while at.load64(go) < 1000:
        time.sleep(0.0005)
    try:
        for seq in range(1, ops + 1):
            park()
            st[R_OPS] = seq
            r = rng.random()
            if r < 0.56 and held_pages < cap:
                order = rng.choice(ORDERS)
                gfp = rng.choice(GFPS) | NOWARN
                pfn = alloc(gfp, order)
                if pfn < 0:
                    st[R_FAILS] += 1
                    continue
                st[R_ALLOCS] += 1
                pat = (cpu + 1) << 48 | seq
                for i in range(1 << order):
                    off = phys + ((pfn + i) << 12)
                    u64[off >> 3] = pat
                    u64[(off + 4088) >> 3] = pat ^ i
                held.append((pfn, order, pat))
                held_pages += 1 << order
            elif r < 0.9 and held:
                pfn, order, pat = held.pop(rng.randrange(len(held)))
                held_pages -= 1 << order
                verify_and_free(pfn, order, pat)
            elif held:
                head, tail = at.load64(peer_ring), at.load64(peer_ring + 8)
                if head - tail < RING_SLOTS:
                    pfn, order, pat = held.pop(rng.randrange(len(held)))
                    held_pages -= 1 << order
                    slot = peer_ring + 64 + (head % RING_SLOTS) * 16
                    u64[slot >> 3] = pfn << 8 | order
                    u64[(slot + 8) >> 3] = pat
                    at.store64(peer_ring, head + 1)
            tail = at.load64(my_ring + 8)
            if at.load64(my_ring) != tail:
                slot = my_ring + 64 + (tail % RING_SLOTS) * 16
                ent, pat = u64[slot >> 3], u64[(slot + 8) >> 3]
                at.store64(my_ring + 8, tail + 1)
                verify_and_free(ent >> 8, ent & 0xFF, pat)
                st[R_XFREED] += 1
        for pfn, order, pat in held:
            park()
            verify_and_free(pfn, order, pat)
        m.drain_local_pages()
    except BaseException:
        traceback.print_exc()
        u64[(res + 8 * R_ERROR) >> 3] = 1
        raise
    finally:
        for i, v in enumerate(st):
            u64[(res + 8 * i) >> 3] = v
        at.store64(res + 8 * R_DONE, 1)       # quiescent from here on (parked or not)
    gc.collect()
    a.close()


@pytest.mark.parametrize("pcp,spinlock", [(False, "tas"), (True, "tas"), (False, "qspinlock")])
def test_buddy_race_stress(mk, spawn, soak: bool, pcp: bool, spinlock: str) -> None:
    """3 CPUs on at most 2 host CPUs (oversubscribed), small zones near their marks,
    movable/unmovable/reclaimable mixes (fallback claims and steals), orders 0-3;
    the invariant checker runs while the workers are parked, and at the end.  Without
    PCP lists every operation takes the zone lock: the queued spinlock's case too."""
    nprocs, nr_pages = 3, 3072
    ops = 400_000 if soak else 25_000
    a = mk(nr_pages, nprocs, pcp_enabled=pcp, locks={"spinlock": spinlock},
           extra=[L.SectionSpec("xfer", CTL_BYTES + nprocs * RING_BYTES)])
    base = a.off("xfer")
    at = a.atomic
    go, pause, parked = base, base + 8, base + 16
    free0 = total_free(a)
    host = sorted(os.sched_getaffinity(0))[:2]
    procs = [spawn(race_child, a.name, c, nprocs, ops, 4242 + 17 * c + pcp, base, host[c % len(host)])
             for c in range(nprocs)]
    deadline = time.monotonic() + 60
    while at.load64(go) < nprocs:
        assert time.monotonic() < deadline, "children never started"
        assert all(p.exitcode in (None, 0) for p in procs)
        time.sleep(0.01)
    t0 = time.perf_counter()
    at.store64(go, 1000)

    def done() -> int:
        return sum(a.u64[(base + 64 * (1 + c) + 8 * R_DONE) >> 3] for c in range(nprocs))

    checks = 0
    while done() < nprocs:
        time.sleep(0.05 if soak else 0.15)
        at.store64(pause, 1)
        t1 = time.monotonic() + 30
        while at.load64(parked) + done() < nprocs:
            assert time.monotonic() < t1, "workers never parked"
            assert all(p.exitcode in (None, 0) for p in procs), [p.exitcode for p in procs]
            time.sleep(0.0005)
        if done() < nprocs or at.load64(parked):    # a finished worker may have parked meanwhile
            rep = check(a)
            checks += 1
            at.store64(pause, 0)
            assert rep.ok, f"mid-run check #{checks}: {rep}"
        at.store64(pause, 0)
    for p in procs:
        p.join(60)
    elapsed = time.perf_counter() - t0
    results = [[a.u64[(base + 64 * (1 + c) + 8 * i) >> 3] for i in range(7)] for c in range(nprocs)]
    assert [p.exitcode for p in procs] == [0] * nprocs, results
    assert not any(r[R_ERROR] for r in results), results
    assert sum(r[R_BAD] for r in results) == 0, f"pattern mismatches (double allocation?): {results}"
    assert all(r[R_OPS] == ops for r in results), results
    assert sum(r[R_FAILS] for r in results) > 0, "never ran out: the zones were not near their marks"
    # blocks still in the rings: free them as cpu 0
    m = MM(a, 0)
    for c in range(nprocs):
        ring = _ring(a, base, c)
        for t in range(at.load64(ring + 8), at.load64(ring)):
            ent = a.u64[(ring + 64 + (t % RING_SLOTS) * 16) >> 3]
            m.free_pages(ent >> 8, ent & 0xFF)
    m.drain_local_pages()
    rep = check(a)
    assert rep.ok, str(rep)
    assert total_free(a) == free0                                           # nothing lost
    ev = Z.vm_events(a)
    assert ev["pgblock_claim"] + ev["pgblock_steal"] > 0, f"no migratetype fallback happened: {ev}"
    print(f"\nbuddy race (pcp={pcp}): {nprocs * ops} ops in {elapsed:.2f} s, {checks} mid-run checks, "
          f"allocs {sum(r[R_ALLOCS] for r in results)}, fails {sum(r[R_FAILS] for r in results)}, "
          f"cross-CPU frees {sum(r[R_XFREED] for r in results)}, "
          f"claims {ev['pgblock_claim']}, steals {ev['pgblock_steal']}")
