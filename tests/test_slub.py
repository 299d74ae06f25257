"""SLUB (issue 4): caches, the tid-protected fast path (forced interleavings), slow path,
remote free, magazines, bulk, sheaves, flush, views, multi-process larson / xmalloc."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from aerosync.arena import layout as L
from aerosync.arena.segment import Arena
from aerosync.mm.pmm.check import check
from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.slab_check import slab_check
from aerosync.mm.slab.slab_common import (
    SLAB_HWCACHE_ALIGN,
    SlabError,
    cache_info,
    calculate_order,
    kmem_cache_create,
    kmem_cache_lookup,
    slab_stats,
    slabinfo_json,
    slabinfo_text,
    slabtop_text,
    virt_to_off,
)
from aerosync.mm.slab.slub import Slub, kmem_cache_destroy
from tests import slub_helpers as H
from tests.conftest import new_machine

pytestmark = pytest.mark.usefixtures("both_profiles")   # issue 14: races and checker in both kernel profiles


def make_slab_arena(**kw: Any) -> Arena:
    """A booted machine with SLUB; the caller closes and unlinks it."""
    return new_machine(slab=True, **kw)

def all_ok(a: Arena) -> None:
    rep = slab_check(a)
    assert rep.ok, str(rep)
    rep = check(a)
    assert rep.ok, str(rep)

def ctor_fill(view: memoryview) -> None:
    view[:4] = b"CTOR"

# ------------------------------------------------------------------ caches and geometry
def test_calculate_order_like_linux() -> None:
    # 2 CPUs: min_objects = 4 * (fls(2) + 1) = 12; kmalloc-8k at slab_max_order 3 holds 4
    assert calculate_order(64, 3, 2) == 0
    assert calculate_order(512, 3, 2) == 1
    assert calculate_order(8192, 3, 2) == 3
    assert calculate_order(700, 3, 2) >= 1

def test_create_lookup_destroy_and_ctor(sa) -> None:
    a = sa()
    assert kmem_cache_lookup(a, "kmalloc-96") >= 0 and kmem_cache_lookup(a, "nope") == -1
    cid = kmem_cache_create(a, "task_struct", 200, 0, SLAB_HWCACHE_ALIGN, ctor_fill)
    info = cache_info(a, cid)
    assert info["size"] == 256 and info["align"] == 64 and info["ctor"].endswith("ctor_fill")
    with pytest.raises(SlabError):
        kmem_cache_create(a, "task_struct", 8)
    s = Slub(a, 1)
    c = s.cache("task_struct")
    x = c.alloc()
    assert bytes(a.u8[virt_to_off(a, x): virt_to_off(a, x) + 4]) == b"CTOR"
    with pytest.raises(SlabError):
        kmem_cache_destroy(a, cid)                        # objects remaining
    c.free(x)
    kmem_cache_destroy(a, cid)
    assert kmem_cache_lookup(a, "task_struct") == -1
    all_ok(a)

def test_many_objects_partial_lists_and_discard(sa) -> None:
    a = sa(slab_mag_size=0)
    s0 = Slub(a, 0)
    c = s0.cache(kmem_cache_create(a, "obj100", 100))
    objs = [c.alloc() for _ in range(3000)]
    assert len(set(objs)) == 3000 and all(objs)
    all_ok(a)
    s1 = Slub(a, 1)
    c1 = s1.cache("obj100")
    for x in objs[::2]:
        c1.free(x)                                        # remote frees: slabs -> CPU 1's partial list
    all_ok(a)
    st = slab_stats(a, c.id)
    assert st["free_slowpath"] >= 1400
    for x in objs[1::2]:
        c.free(x)
    c.flush_cpu(0)
    c.flush_cpu(1)            # CPU 1's partial list holds the slabs its frees unfilled (put_cpu_partial)
    st = slab_stats(a, c.id)
    assert st["free_slab"] > 0                            # empty slabs went back beyond min_partial
    js = {r["name"]: r for r in slabinfo_json(a)}["obj100"]
    assert js["num_slabs"] <= cache_info(a, c.id)["min_partial"] + 1
    all_ok(a)

# ------------------------------------------------------------------ the transaction id
def test_tid_irq_interleaving_aba(sa) -> None:
    """(a) An "interrupt" on the same CPU runs between the read and the CAS: it takes A
    and B and frees A, so the head is A again but A's next changed (ABA).  The stale CAS
    must fail (tid moved), the retry must succeed, and nothing is handed out twice."""
    a = sa()
    irq = Slub(a, 0, irq=True)
    irq_c = irq.cache("kmalloc-64")
    fired: list[int] = []
    held: list[int] = []

    def hook(event: str, kc: Any) -> None:
        if event == "alloc" and not fired:
            fired.append(1)
            x, y = irq_c.alloc(), irq_c.alloc()          # A, B
            irq_c.free(x)                                # A back on top: same head, other next
            held.append(y)

    task = Slub(a, 0, hook=hook)
    c = task.cache("kmalloc-64")
    warm = c.alloc()                                      # cpu slab installed
    cas0 = slab_stats(a, c.id)["cmpxchg_fail"]
    got = c.alloc()
    assert fired
    assert slab_stats(a, c.id)["cmpxchg_fail"] == cas0 + 1   # the stale CAS failed once
    assert got not in held and got != warm
    nxt = c.alloc()
    assert len({warm, got, nxt, *held}) == 4              # B never handed out twice
    for x in (warm, got, nxt, *held):
        c.free(x)
    all_ok(a)

def test_tid_remote_flush_interleaving(sa) -> None:
    """(b) Another CPU flushes this CPU's slab (flush_cpu_slab / CPU offline) between
    the read and the CAS: the CAS fails on the tid, the retry goes to the slow path."""
    a = sa()
    other = Slub(a, 1).cache("kmalloc-128")
    fired: list[int] = []

    def hook(event: str, kc: Any) -> None:
        if not fired:
            fired.append(event)
            other.flush_cpu(0)

    c = Slub(a, 0, hook=hook).cache("kmalloc-128")
    fired.append("warm")                                  # no flush during the warm-up
    warm = [c.alloc() for _ in range(5)]
    fired.clear()
    cas0 = slab_stats(a, c.id)["cmpxchg_fail"]
    x = c.alloc()
    assert fired == ["alloc"] and slab_stats(a, c.id)["cmpxchg_fail"] == cas0 + 1
    assert x not in warm
    fired.clear()
    c.free(x)                                             # free side: flush in the window
    assert fired == ["free"]
    for w in warm:
        c.free(w)
    all_ok(a)
    assert slab_stats(a, c.id)["flush"] >= 2

def test_irq_thread_same_cpu_real_concurrency(sa) -> None:
    """A real second thread (the CPU's interrupt context) allocating and freeing from the
    same caches while the task context does too: no duplicates, checker clean."""
    a = sa()
    task = Kmalloc(Slub(a, 0))
    irq = Kmalloc(Slub(a, 0, irq=True))
    stop = threading.Event()
    seen_dup: list[int] = []
    held_irq: set[int] = set()
    held_task: set[int] = set()

    def irq_body() -> None:
        while not stop.is_set():
            x = irq.kmalloc(64)
            if x in held_task:
                seen_dup.append(x)
            held_irq.add(x)
            if len(held_irq) > 50:
                y = held_irq.pop()
                irq.kfree(y)

    t = threading.Thread(target=irq_body)
    t.start()
    try:
        for _ in range(40_000):
            x = task.kmalloc(64)
            if x in held_irq:
                seen_dup.append(x)
            held_task.add(x)
            if len(held_task) > 50:
                task.kfree(held_task.pop())
    finally:
        stop.set()
        t.join()
    for x in held_task:
        task.kfree(x)
    for x in held_irq:
        irq.kfree(x)
    assert not seen_dup
    all_ok(a)

# ------------------------------------------------------------------ magazines, bulk, sheaves, nodes
def test_magazine_bulk_and_sheaf(sa) -> None:
    a = sa(slab_mag_size=8)
    s0 = Slub(a, 0)
    c = s0.cache("kmalloc-32")
    objs = c.alloc_bulk(500)
    assert len(set(objs)) == 500
    c.flush_cpu(0)                                        # objects' slabs are no cpu slab now
    for x in objs[:20]:
        c.free(x)                                         # -> magazine, flushed by halves
    st = slab_stats(a, c.id)
    assert st["free_mag"] == 20 and st["mag_flush"] >= 1
    all_ok(a)
    y = c.alloc()                                         # cpu slab empty -> magazine pop first
    assert slab_stats(a, c.id)["alloc_mag"] == 1 and y in objs[:20]
    c.free_bulk([*objs[20:], y])
    sh = c.prefill_sheaf(40)
    assert sh >= 0 and c.sheaf_size(sh) == 40
    all_ok(a)                                             # sheaf objects accounted (S4/S5)
    got = [c.alloc_from_sheaf(sh) for _ in range(10)]
    assert all(got) and c.sheaf_size(sh) == 30
    assert c.refill_sheaf(sh, 64) and c.sheaf_size(sh) == 64
    c.return_sheaf(sh)
    c.free_bulk(got)
    all_ok(a)

def test_alloc_node_places_objects(sa) -> None:
    a = sa(nr_nodes=2, nr_cpus=2)
    s0 = Slub(a, 0)
    k = Kmalloc(s0)
    pm = a.array("pagemeta", "u1").reshape(-1, 64)
    xs = [k.kmalloc_node(64, 1) for _ in range(100)]
    ys = [k.kmalloc_node(64, 0) for _ in range(100)]
    nodes_x = {int(pm[(x - 0xFFFF888000000000) >> 12, 7]) for x in xs}
    nodes_y = {int(pm[(y - 0xFFFF888000000000) >> 12, 7]) for y in ys}
    del pm
    assert nodes_x == {1} and nodes_y == {0}
    for x in xs + ys:
        k.kfree(x)
    all_ok(a)

# ------------------------------------------------------------------ views
def test_slabinfo_parsed_back_matches_json(sa) -> None:
    a = sa()
    k = Kmalloc(Slub(a, 1))
    xs = [k.kmalloc(n) for n in (8, 90, 190, 3000) for _ in range(50)]
    text = slabinfo_text(a)
    lines = text.splitlines()
    assert lines[0] == "slabinfo - version: 2.1" and lines[1].startswith("# name")
    js = {r["name"]: r for r in slabinfo_json(a)}
    rx = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+) : tunables\s+0\s+0\s+0"
                    r" : slabdata\s+(\d+)\s+(\d+)\s+0$")
    for ln in lines[2:]:
        m = rx.match(ln)
        assert m, ln
        r = js[m.group(1)]
        assert tuple(int(g) for g in m.groups()[1:]) == (r["active_objs"], r["num_objs"], r["objsize"],
                                                        r["objperslab"], r["pagesperslab"], r["active_slabs"],
                                                        r["num_slabs"])
    assert js["kmalloc-96"]["num_objs"] >= 50 and js["kmalloc-4k"]["active_objs"] >= 50
    top = slabtop_text(a)
    assert "OBJS ACTIVE" in top and "kmalloc-4k" in top.splitlines()[6]
    for x in xs:
        k.kfree(x)
    all_ok(a)

# ------------------------------------------------------------------ multi-process stress
def _run_children(a: Arena, spawn, procs_args: list[tuple[Any, ...]], res_off: int, go_off: int) -> list[list[int]]:
    procs = [spawn(*pa) for pa in procs_args]
    deadline = time.monotonic() + 60
    while a.atomic.load64(go_off) < len(procs):
        assert time.monotonic() < deadline, "children never started"
        assert all(p.exitcode in (None, 0) for p in procs)
        time.sleep(0.01)
    a.atomic.store64(go_off, 1000)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    return [[a.u64[(res_off + c * 64 + 8 * i) >> 3] for i in range(5)] for c in range(len(procs))]

def test_larson_multiprocess_remote_frees(sa, spawn, soak: bool) -> None:
    nr = 2
    ops = 250_000 if soak else 60_000
    a = sa(nr_pages=8192, nr_cpus=nr, extra=[L.SectionSpec("xfer", nr * H.RING_BYTES + 4096)])
    res_off = a.off("xfer") + nr * H.RING_BYTES
    go_off = res_off + 2048
    t0 = time.perf_counter()
    res = _run_children(a, spawn, [(H.larson_child, a.name, c, nr, ops, 100 + c, 30, res_off, go_off)
                                   for c in range(nr)], res_off, go_off)
    el = time.perf_counter() - t0
    assert all(r[4] == 1 for r in res)
    assert sum(r[0] for r in res) == 0, f"pattern mismatches (object handed out twice?): {res}"
    assert sum(r[2] for r in res) > 10_000                 # remote frees happened
    s = Slub(a, 0)
    k = Kmalloc(s)
    for c in range(nr):                                    # objects still in the rings
        ring = H.ring_off(a, c)
        for t in range(a.atomic.load64(ring + 8), a.atomic.load64(ring)):
            k.kfree(a.u64[(ring + 64 + (t % H.RING_SLOTS) * 16) >> 3])
    all_ok(a)
    s.flush_all()
    all_ok(a)
    print(f"\nlarson: {nr * ops} ops in {el:.2f} s, remote frees {sum(r[2] for r in res)}, "
          f"cas failures {sum(r[3] for r in res)}")

def test_xmalloc_multiprocess(sa, spawn) -> None:
    a = sa(nr_pages=8192, nr_cpus=2, extra=[L.SectionSpec("xfer", 2 * H.RING_BYTES + 4096)])
    res_off = a.off("xfer") + 2 * H.RING_BYTES
    go_off = res_off + 2048
    n = 50_000
    res = _run_children(a, spawn, [(H.xmalloc_child, a.name, 0, "alloc", n, res_off, go_off),
                                   (H.xmalloc_child, a.name, 1, "free", n, res_off, go_off)], res_off, go_off)
    assert res[0][1] == n and res[1][2] == n and res[1][0] == 0
    all_ok(a)
    Slub(a, 0).flush_all()
    all_ok(a)
