"""Issue 14: the physical layer against Linux 6.19, one test per numbered point.

Each test holds a small model of the Linux function the point follows (named in the
test: the model is written from mm/page_alloc.c, mm/slub.c, mm/khugepaged.c and
mm/vmstat.c, not from AeroSync's code) and checks the simulated machine against it.
The host self-check (`aerosync doctor --fidelity`) runs on a saved /proc + /sys tree of a
6.18 host (tests/fixtures/host-6.18), and the [kernel] scenario section at the end.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aerosync import fidelity, procfs
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import page_alloc as PA
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm import vmstat as V
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.gfp import (
    ALLOC_KSWAPD,
    ALLOC_NOFRAGMENT,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_TRANSHUGE,
    MIGRATE_MOVABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
    ZONE_DMA32,
    ZONE_NORMAL,
)
from aerosync.mm.pmm.page import PG_lru, PG_pcp
from aerosync.mm.pmm.page_alloc import MM
from aerosync.mm.slab import slab_common as SC
from aerosync.mm.slab import slub as S
from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.slab_check import slab_check
from aerosync.mm.slab.slab_common import cache_info, kmem_cache_create, slab_stats
from aerosync.mm.slab.slub import Slub
from aerosync.params import KERNEL_PROFILES

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "host-6.18"
PB = 9                                     # pageblock_order (x86-64)


def all_ok(a: Any) -> None:
    rep = slab_check(a)
    assert rep.ok, str(rep)
    rep = check(a)
    assert rep.ok, str(rep)


# =========================================================================== point 1
class PcsModel:
    """mm/slub.c v6.19 alloc_from_pcs() / free_to_pcs() of one CPU with its node's barn:
    __pcs_replace_empty_main, __pcs_replace_full_main, __pcs_install_empty_sheaf,
    barn_replace_empty_sheaf / barn_replace_full_sheaf (MAX_FULL_SHEAVES 10).  A sheaf is
    its object count; None is the bootstrap sheaf (empty, capacity 0)."""

    def __init__(self, cap: int) -> None:
        self.cap, self.main, self.spare, self.full, self.empty = cap, None, None, 0, 0

    def state(self) -> tuple[Any, ...]:
        return self.main or 0, self.spare, self.full, self.empty

    def alloc(self) -> None:
        if not self.main:
            self._replace_empty_main()
        self.main -= 1

    def _replace_empty_main(self) -> None:
        if self.spare:                                    # spare has objects: swap
            self.main, self.spare = self.spare, self.main
            return
        if self.full:                                     # barn_replace_empty_sheaf()
            self.full -= 1
            if self.main is not None:
                self.empty += 1
            self.main = self.cap
            return
        if self.spare is not None:                        # refill the empty spare ...
            self.spare = None
        elif self.empty:                                  # ... or one from the barn
            self.empty -= 1
        if not self.main:                                 # refill_sheaf() filled it
            if self.main is not None:
                self.empty += 1
            self.main = self.cap
        elif self.spare is None:
            self.spare = self.cap
        elif self.spare == 0:
            self.empty += 1
            self.spare = self.cap
        else:
            self.full += 1

    def free(self) -> None:
        if self.main is None or self.main >= self.cap:
            self._replace_full_main()
        self.main += 1

    def _replace_full_main(self) -> None:
        if self.spare is None:
            if self.empty:
                self.empty -= 1
            self._install_empty()
            return
        if self.spare < self.cap:
            self.main, self.spare = self.spare, self.main
            return
        if self.main is not None:
            if self.full >= 10:                           # E2BIG: flush the spare, reuse it
                self.spare = None
                self._install_empty()
                return
            if self.empty:                                # barn_replace_full_sheaf()
                self.empty -= 1
                self.full += 1
                self.main = 0
                return
        self._install_empty()                             # alloc_empty_sheaf()

    def alloc_bulk(self, n: int) -> int:
        """alloc_from_pcs_bulk(): how many of n come from the sheaves (the rest: slabs)."""
        got = 0
        while got < n:
            if not self.main:
                if self.spare:                            # swap(pcs->main, pcs->spare)
                    self.main, self.spare = self.spare, self.main
                elif self.full:                           # barn_replace_empty_sheaf()
                    self.full -= 1
                    if self.main is not None:
                        self.empty += 1
                    self.main = self.cap
                else:                                     # BARN_GET_FAIL: the slabs do the rest
                    return got
            batch = min(n - got, self.main)
            self.main -= batch
            got += batch
        return got

    def free_bulk(self, n: int) -> int:
        """free_to_pcs_bulk() of n local objects: how many go to the sheaves (the rest:
        __kmem_cache_free_bulk to the slabs)."""
        put = 0
        while put < n:
            if self.main is None:                         # init_percpu_sheaves()' empty main
                self.main = 0
            if self.main >= self.cap:
                if self.spare is None:                    # barn_get_empty_sheaf(), old main = spare
                    if not self.empty:
                        return put
                    self.empty -= 1
                    self.spare, self.main = self.main, 0
                elif self.spare < self.cap:
                    self.main, self.spare = self.spare, self.main
                else:                                     # barn_replace_full_sheaf()
                    if self.full >= 10 or not self.empty:
                        return put                        # E2BIG / ENOMEM: BARN_PUT_FAIL
                    self.empty -= 1
                    self.full += 1
                    self.main = 0
            batch = min(n - put, self.cap - self.main)
            self.main += batch
            put += batch
        return put

    def _install_empty(self) -> None:
        if self.main is None:
            self.main = 0
        elif self.spare is None:
            self.spare, self.main = self.main, 0
        elif self.main < self.cap:
            self.empty += 1
        elif self.spare < self.cap:
            self.main, self.spare = self.spare, self.main
            self.empty += 1
        else:
            self.full += 1
            self.main = 0


def _pcs_state(a: Any, cid: int, cpu: int) -> tuple[Any, ...]:
    _, nr_cpus, nr_nodes, mag, _ = SC._geo(a)
    ko = SC._cpu_off(a, cid, cpu, nr_cpus, mag)
    v = a.u64[(ko + SC.K_PCS) >> 3]
    so = a.sections["slabsheaf"][0]

    def size(s: int) -> int:
        return a.u64[(so + s * SC.SHEAF_REC + SC.SH_SIZE) >> 3]

    main, spare = (v & 0xFFFF_FFFF) - 1, (v >> 32) - 1
    no = SC._node_off(a, cid, 0, nr_nodes)
    return (size(main) if main >= 0 else 0, size(spare) if spare >= 0 else None,
            a.u32[(no + SC.N_BARN_NR_FULL) >> 2], a.u32[(no + SC.N_BARN_NR_EMPTY) >> 2])


def test_point1_percpu_sheaves_follow_alloc_from_pcs_and_free_to_pcs(sa) -> None:
    """Point 1, mm/slub.c alloc_from_pcs() / free_to_pcs() with the barn: a cache created
    with a sheaf capacity, "linux" profile; every operation's main / spare / barn state
    equals the model's, through barn trades, E2BIG flushes and refills."""
    a = sa(nr_pages=8192, kernel_profile="linux")
    cap = 4
    cid = kmem_cache_create(a, "maple_node", 256, sheaf_capacity=cap)
    c = Slub(a, 0).cache(cid)
    model = PcsModel(cap)
    objs = []
    for i in range(60):
        objs.append(c.alloc())
        model.alloc()
        assert _pcs_state(a, cid, 0) == model.state(), f"alloc {i}"
    for i, x in enumerate(objs):                          # 60 frees: the barn fills (10 full), E2BIG
        c.free(x)
        model.free()
        assert _pcs_state(a, cid, 0) == model.state(), f"free {i}"
    more = []
    for i in range(90):                                   # back out through the barn
        more.append(c.alloc())
        model.alloc()
        assert _pcs_state(a, cid, 0) == model.state(), f"alloc again {i}"
    st = slab_stats(a, cid)
    assert st["alloc_cpu_sheaf"] == 150 and st["free_cpu_sheaf"] == 60
    assert st["barn_put"] and st["barn_get"] and st["barn_put_fail"]
    all_ok(a)
    for x in more:
        c.free(x)
    c.flush_cpu(0)
    c.barn_shrink()
    all_ok(a)
    S.kmem_cache_destroy(a, cid)


@pytest.mark.parametrize("seed", [1, 2])
def test_point1_alloc_bulk_and_free_bulk_go_through_the_sheaves(sa, seed: int) -> None:
    """Point 1, mm/slub.c kmem_cache_alloc_bulk() -> alloc_from_pcs_bulk() and
    kmem_cache_free_bulk() -> free_to_pcs_bulk() (v6.19): after every single or bulk
    operation of a random sequence, main / spare / barn equal the model's and the objects
    taken from / put into the sheaves are the model's count (alloc_cpu_sheaf /
    free_cpu_sheaf); the rest come from / go to the slabs; other nodes' objects never
    enter the sheaves."""
    import random

    rnd = random.Random(seed)
    a = sa(nr_pages=8192, nr_nodes=2, nr_cpus=2, kernel_profile="linux")
    cap = 4
    cid = kmem_cache_create(a, "fid-bulk", 256, sheaf_capacity=cap)
    c = Slub(a, 0).cache(cid)
    c1 = Slub(a, 1).cache(cid)
    assert c.slub.nid == 0 and c1.slub.nid == 1
    model = PcsModel(cap)
    live: list[int] = []
    remote = [c1.alloc_node(1) for _ in range(12)]        # node-1 objects for cpu 0 to free
    assert {_slab_nid(a, x) for x in remote} == {1}
    stat0 = slab_stats(a, cid)
    pcs_alloc, pcs_free = stat0["alloc_cpu_sheaf"], stat0["free_cpu_sheaf"]
    for step in range(160):
        op = rnd.choice(["alloc", "free", "bulk", "bulk", "free_bulk", "free_bulk"])
        if op == "alloc" or (op in ("free", "free_bulk") and not live):
            live.append(c.alloc())
            model.alloc()
            pcs_alloc += 1
        elif op == "free":
            c.free(live.pop(rnd.randrange(len(live))))
            model.free()
            pcs_free += 1
        elif op == "bulk":
            n = rnd.randint(1, 3 * cap + 2)
            got = c.alloc_bulk(n)
            assert len(got) == n and len(set(got) | set(live)) == len(live) + n
            live += got
            pcs_alloc += model.alloc_bulk(n)
        else:
            n = rnd.randint(1, len(live))
            rnd.shuffle(live)
            batch, live = live[:n], live[n:]
            far = [remote.pop() for _ in range(min(len(remote), rnd.randint(0, 2)))]
            c.free_bulk(batch[: n // 2] + far + batch[n // 2:])
            pcs_free += model.free_bulk(n)
        st = slab_stats(a, cid)
        assert _pcs_state(a, cid, 0) == model.state(), f"step {step} {op}"
        assert (st["alloc_cpu_sheaf"], st["free_cpu_sheaf"]) == (pcs_alloc, pcs_free), f"step {step} {op}"
    st = slab_stats(a, cid)
    assert st["barn_get"] and st["barn_put"] and st["alloc_cpu_sheaf"] > 150
    assert st["barn_get_fail"]                            # bulk allocs left to the slabs
    all_ok(a)
    c.free_bulk(live)
    c1.free_bulk(remote)
    c.flush_cpu(0)
    c1.flush_cpu(1)
    c.barn_shrink()
    all_ok(a)
    S.kmem_cache_destroy(a, cid)


def test_point1_linux_profile_has_no_per_cpu_object_layer_by_default(sa) -> None:
    """Point 1: in the "linux" profile kmalloc caches have neither magazines nor sheaves
    (6.19: only caches created with a sheaf capacity get sheaves); the "aerosync" profile
    keeps the seed's magazines and gives no cache per-CPU sheaves."""
    lin = sa(kernel_profile="linux")
    assert SC._geo(lin)[3] == 0                                 # slab_mag_size
    km = Kmalloc(Slub(lin, 0))
    xs = [km.kmalloc(64) for _ in range(300)]
    for x in xs:
        km.kfree(x)
    st = slab_stats(lin, SC.kmem_cache_lookup(lin, "kmalloc-64"))
    assert st["alloc_mag"] == st["free_mag"] == st["alloc_cpu_sheaf"] == 0
    assert all(cache_info(lin, cid)["sheaf_capacity"] == 0 for cid in SC.live_caches(lin))
    assert cache_info(lin, kmem_cache_create(lin, "vma", 184, sheaf_capacity=32))["sheaf_capacity"] == 32
    aero = sa(kernel_profile="aerosync")
    assert SC._geo(aero)[3] == KERNEL_PROFILES["aerosync"]["slab_mag_size"] == 16
    assert cache_info(aero, kmem_cache_create(aero, "vma", 184, sheaf_capacity=32))["sheaf_capacity"] == 0
    both = sa(kernel_profile="aerosync", slab_percpu_sheaves=True)   # one knob overridden
    assert cache_info(both, kmem_cache_create(both, "vma", 184, sheaf_capacity=32))["sheaf_capacity"] == 32


# =========================================================================== point 2
def _cpu_partial(a: Any, cid: int, cpu: int) -> list[int]:
    _, nr_cpus, _, mag, _ = SC._geo(a)
    ko = SC._cpu_off(a, cid, cpu, nr_cpus, mag)
    out, p = [], a.u64[(ko + SC.K_PARTIAL) >> 3]
    while p != SC.NIL64:
        out.append(p)
        p = a.u32[(a.off("slabmeta") + p * SC.SMETA + SC.M_NEXT) >> 2]
    return out


def _node_partial(a: Any, cid: int, nid: int = 0) -> list[int]:
    no = SC._node_off(a, cid, nid, SC._geo(a)[2])
    out, p = [], a.u32[(no + SC.N_HEAD) >> 2]
    while p != SC.NIL32:
        out.append(p)
        p = a.u32[(a.off("slabmeta") + p * SC.SMETA + SC.M_NEXT) >> 2]
    return out


def _list_lock_acq(a: Any, name: str) -> int:
    from aerosync.sync.lockstat import snapshot

    return sum(s.acquisitions for s in snapshot(a) if s.lock_class == "&n->list_lock" and s.name.startswith(name))


def _frozen(a: Any, pfn: int) -> bool:
    return bool(a.u64[(a.off("slabmeta") + pfn * SC.SMETA) >> 3] & SC.FROZEN)


def test_point2_remote_free_into_full_slab_goes_to_cpu_partial_without_list_lock(sa) -> None:
    """Point 2, mm/slub.c __slab_free() + put_cpu_partial(drain=1) + __put_partials(): the
    first free into a full unfrozen slab pushes it, unfrozen, on the *freeing* CPU's
    partial list with no list_lock; a list already holding cpu_partial_slabs slabs first
    goes to the node list (one list_lock round, the slabs added at the tail in list order).
    deactivate_slab() takes list_lock only to add a slab with free objects."""
    a = sa(kernel_profile="linux")
    cid = kmem_cache_create(a, "fid-p2", 256)
    info = cache_info(a, cid)
    limit, per = info["cpu_partial_slabs"], info["objects"]
    c0, c1 = Slub(a, 0).cache(cid), Slub(a, 1).cache(cid)
    nslabs = 2 * limit + 3
    objs = [c0.alloc() for _ in range(nslabs * per)]
    c0.flush_cpu(0)                                       # every slab full, unfrozen, on no list
    slabs = list(dict.fromkeys((x - SC.VBASE) >> 12 for x in objs))
    assert len(slabs) == nslabs
    cpu_list: list[int] = []                              # the model: put_cpu_partial()
    node_list: list[int] = []
    locks = 0
    acq0 = _list_lock_acq(a, "fid-p2")
    for i, pfn in enumerate(slabs):
        c1.free(objs[i * per])
        if cpu_list and len(cpu_list) >= limit:           # drain && oldslab->slabs >= cpu_partial_slabs
            node_list += cpu_list                         # __put_partials(): walked from the head
            cpu_list = []
            locks += 1
        cpu_list.insert(0, pfn)
        assert _cpu_partial(a, cid, 1) == cpu_list, f"free {i}"
        assert _node_partial(a, cid) == node_list, f"free {i}"
        assert _list_lock_acq(a, "fid-p2") - acq0 == locks, f"free {i}: list_lock taken"
        assert not any(_frozen(a, p) for p in cpu_list)   # 6.8+: cpu partial slabs are unfrozen
    for x in objs:
        if x not in {objs[i * per] for i in range(nslabs)}:
            c0.free(x)
    c0.flush_cpu(0)
    c1.flush_cpu(1)
    all_ok(a)
    # deactivate_slab(): a full cpu slab needs no list_lock, one with free objects one
    cid2 = kmem_cache_create(a, "fid-p2b", 256)
    d0 = Slub(a, 0).cache(cid2)
    full = [d0.alloc() for _ in range(per)]
    assert len({(x - SC.VBASE) >> 12 for x in full}) == 1
    acq = _list_lock_acq(a, "fid-p2b")
    d0.flush_cpu(0)
    assert _list_lock_acq(a, "fid-p2b") - acq == 0
    one = d0.alloc()                                      # a new slab, per - 1 objects free
    acq = _list_lock_acq(a, "fid-p2b")
    d0.flush_cpu(0)
    assert _list_lock_acq(a, "fid-p2b") - acq == 1        # add_partial() only
    for x in (*full, one):
        d0.free(x)
    d0.flush_cpu(0)
    all_ok(a)


# =========================================================================== point 3
def linux_get_any_partial(nr_partial: dict[int, int], zonelist_nodes: list[int], min_partial: int,
                          cycles: int, defrag_ratio: int = 1000) -> int | None:
    """mm/slub.c get_any_partial(): the first node of the zonelist with nr_partial above
    min_partial, unless get_cycles() % 1024 > remote_node_defrag_ratio."""
    if not defrag_ratio or cycles % 1024 > defrag_ratio:
        return None
    for nid in zonelist_nodes:
        if nr_partial.get(nid, 0) > min_partial:
            return nid
    return None


def _slab_nid(a: Any, addr: int) -> int:
    return a.u8[a.off("pagemeta") + ((addr - SC.VBASE) >> 12) * 64 + 7]


@pytest.mark.parametrize("cycles", [0, 1001])
def test_point3_get_any_partial_and_alloc_node_mismatch(sa, monkeypatch, cycles: int) -> None:
    """Point 3, mm/slub.c get_any_partial() (defrag ratio gate, min_partial) and
    ___slab_alloc()'s ALLOC_NODE_MISMATCH: a CPU of node 0 with an empty node 0 takes a
    partial slab of node 1 when node 1 holds more than min_partial of them (and the gate
    lets it through), else allocates a new slab on node 0; kmalloc_node(1) with a node-0
    cpu slab deactivates it onto node 0's list."""
    monkeypatch.setattr(S, "_get_cycles", lambda: cycles)
    a = sa(nr_nodes=2, nr_cpus=2, kernel_profile="linux", slab_min_partial=2)
    cid = kmem_cache_create(a, "fid-p3", 256)
    info = cache_info(a, cid)
    per = info["objects"]
    c0, c1 = Slub(a, 0).cache(cid), Slub(a, 1).cache(cid)   # cpu 0 on node 0, cpu 1 on node 1
    objs = [c1.alloc() for _ in range(4 * per)]           # four full node-1 slabs
    assert {_slab_nid(a, x) for x in objs} == {1}
    c1.flush_cpu(1)
    for i in range(4):
        c1.free(objs[i * per])                            # -> cpu 1's partial list
    c1.flush_cpu(1)                                       # -> node 1's partial list
    nr = {0: len(_node_partial(a, cid, 0)), 1: len(_node_partial(a, cid, 1))}
    assert nr == {0: 0, 1: 4}
    want = linux_get_any_partial(nr, [0, 1], info["min_partial"], cycles)
    x = c0.alloc()
    got = _slab_nid(a, x)
    assert got == (want if want is not None else 0)
    assert slab_stats(a, cid)["alloc_slab"] == (4 if want is not None else 5)
    # ALLOC_NODE_MISMATCH (node_match(slab, node) false): the cpu slab goes to its node
    c0.flush_cpu(0)
    local = c0.alloc_node(0)                              # cpu slab of node 0, with free objects
    assert _slab_nid(a, local) == 0
    mm0 = slab_stats(a, cid)["alloc_node_mismatch"]
    before0 = len(_node_partial(a, cid, 0))
    remote = c0.alloc_node(1)
    assert _slab_nid(a, remote) == 1
    assert slab_stats(a, cid)["alloc_node_mismatch"] == mm0 + 1
    assert len(_node_partial(a, cid, 0)) == before0 + 1   # deactivated onto its own node's list
    assert c0.alloc_node(1) and slab_stats(a, cid)["alloc_node_mismatch"] == mm0 + 1   # now it matches
    for o in [*objs, x, local, remote]:
        if o not in {objs[i * per] for i in range(4)}:
            c0.free(o)
    c0.flush_cpu(0)
    c1.flush_cpu(1)
    all_ok(a)


def linux_mempolicy_slab_node(mode: str, nodes: list[int], local: int, fallback: list[int],
                              il: list[int], weights: dict[int, int] | None = None) -> int:
    """mm/mempolicy.c mempolicy_slab_node() (v6.19), in task context: preferred -> first
    node; interleave -> interleave_nodes() (next_node_in(il_prev)); weighted interleave ->
    weighted_interleave_nodes() (il_prev kept for il_weight picks); bind / preferred-many
    -> the first node of the local node's fallback zonelist in the policy's nodes; no
    policy / local -> numa_mem_id().  il = [il_prev, il_weight] (il_prev starts past the
    last node, as do_set_mempolicy's MAX_NUMNODES - 1)."""
    def next_node_in(n: int) -> int:
        return next((x for x in nodes if x > n), nodes[0])

    if mode == "preferred":
        return nodes[0]
    if mode == "interleave":
        il[0] = next_node_in(il[0])
        return il[0]
    if mode == "weighted-interleave":
        assert weights is not None
        if not il[1] or il[0] not in nodes:
            il[0] = next_node_in(il[0])
            il[1] = weights[il[0]]
        il[1] -= 1
        return il[0]
    if mode in ("bind", "preferred-many"):
        return next((n for n in fallback if n in nodes), local)
    return local


def test_point3_get_any_partial_starts_at_mempolicy_slab_node(sa, monkeypatch) -> None:
    """Point 3 with a task policy, mm/slub.c get_any_partial(): the zonelist walked is
    node_zonelist(mempolicy_slab_node()), not the local node's.  A CPU of node 0 (node 0
    has no partial slabs, nodes 1 and 2 have plenty) takes its slab from the node the
    Linux model names for each policy; the irq context ignores the policy (in_task())."""
    from aerosync.mm.numa.mempolicy import PolicyAllocator, parse_policy

    cycles = [1001]                                       # the defrag gate shut while filling
    monkeypatch.setattr(S, "_get_cycles", lambda: cycles[0])
    a = sa(nr_nodes=3, nr_cpus=3, nr_pages=6144, kernel_profile="linux", slab_min_partial=1,
           distance=[[10, 20, 30], [20, 10, 20], [30, 20, 10]])
    cid = kmem_cache_create(a, "fid-p3p", 256)
    per = cache_info(a, cid)["objects"]
    slubs = [Slub(a, c) for c in range(3)]
    by_node = {s.nid: s for s in slubs}
    assert set(by_node) == {0, 1, 2}
    keep: list[tuple[Any, int]] = []
    for nid in (1, 2):                                    # 12 partial slabs (one free object) each
        s = by_node[nid]
        c = s.cache(cid)
        objs = [c.alloc() for _ in range(12 * per)]
        assert {_slab_nid(a, x) for x in objs} == {nid}
        c.flush_cpu(s.cpu)
        for i in range(12):
            c.free(objs[i * per])
        c.flush_cpu(s.cpu)
        keep += [(c, x) for i, x in enumerate(objs) if i % per]
    cycles[0] = 0
    s0 = by_node[0]
    c0 = s0.cache(cid)
    mm0 = s0.mm
    fallback = [z // 3 for z in mm0.zonelist(0, GFP_KERNEL)]
    fallback = list(dict.fromkeys(fallback))
    assert fallback == [0, 1, 2]                          # node 1 is nearer than node 2
    cases = [("", "default"), ("preferred=2", "preferred"), ("bind=2", "bind"), ("bind=1-2", "bind"),
             ("interleave=1-2", "interleave"), ("interleave=1-2", "interleave"),
             ("interleave=1-2", "interleave"), ("preferred-many=2", "preferred-many")]
    got, want = [], []
    pas: dict[str, Any] = {}
    il: dict[str, list[int]] = {}
    for text, mode in cases:
        if text:
            pa = pas.get(text) or pas.setdefault(text, PolicyAllocator(mm0, 0, parse_policy(text, 3)))
            s0.slab_node = pa.slab_node
            nodes = list(pa.policy.node_list)
        else:
            s0.slab_node, nodes = None, []
        st = il.setdefault(text, [99, 0])
        start = linux_mempolicy_slab_node(mode, nodes, 0, fallback, st)
        nr = {n: len(_node_partial(a, cid, n)) for n in range(3)}
        zl = [z // 3 for z in mm0.zonelist(start, GFP_KERNEL)]
        want.append(linux_get_any_partial(nr, list(dict.fromkeys(zl)), 1, 0))
        x = c0.alloc()
        got.append(_slab_nid(a, x))
        keep.append((c0, x))
        c0.flush_cpu(0)                                   # the next alloc takes the slow path again
    assert got == want == [1, 2, 2, 1, 1, 2, 1, 2]
    # interrupt context: in_task() is false, the local node's zonelist whatever the policy
    s0.slab_node = pas["preferred=2"].slab_node
    irq = Slub(a, 0, irq=True)
    irq.slab_node = s0.slab_node
    x = irq.cache(cid).alloc()
    assert _slab_nid(a, x) == 1
    irq.cache(cid).free(x)
    irq.cache(cid).flush_cpu(0)
    for c, x in keep:
        c.free(x)
    for s in slubs:
        s.cache(cid).flush_cpu(s.cpu)
    all_ok(a)


def test_policy_allocator_slab_node_is_mempolicy_slab_node(machine) -> None:
    """PolicyAllocator.slab_node against the model of mempolicy_slab_node(), every mode,
    sharing il_prev with the task's page interleave as Linux's current->il_prev does."""
    from aerosync.mm.numa.mempolicy import PolicyAllocator, page_nid, parse_policy

    a = machine(nr_nodes=4, nr_cpus=4, nr_pages=8192,
                distance=[[10, 20, 30, 30], [20, 10, 30, 30], [30, 30, 10, 20], [30, 30, 20, 10]])
    mm = MM(a, 0)
    fallback = list(dict.fromkeys(z // 3 for z in mm.zonelist(0, GFP_KERNEL)))
    for text, mode, w in [("local", "local", None), ("preferred=3", "preferred", None),
                          ("bind=2-3", "bind", None), ("bind=0,3", "bind", None),
                          ("preferred-many=1,2", "preferred-many", None), ("interleave=1-3", "interleave", None),
                          ("weighted-interleave=0,2,3", "weighted-interleave", [3, 1, 1, 2])]:
        pol = parse_policy(text, 4, w or ())
        pa = PolicyAllocator(mm, 0, pol)
        st = [99, 0]
        nodes = list(pol.node_list)
        wd = dict(enumerate(w)) if w else None
        seq = [pa.slab_node() for _ in range(9)]
        assert seq == [linux_mempolicy_slab_node(mode, nodes, 0, fallback, st, wd) for _ in range(9)], text
        if mode == "interleave":                          # one round robin for pages and slabs
            pfn = pa.alloc_pages(GFP_KERNEL, 0)
            assert page_nid(a, pfn) == linux_mempolicy_slab_node(mode, nodes, 0, fallback, st)
            assert pa.slab_node() == linux_mempolicy_slab_node(mode, nodes, 0, fallback, st)
            mm.free_pages(pfn)
    assert fallback[0] == 0 and fallback[1] == 1


# =========================================================================== point 4
def linux_zone_batchsize(managed: int) -> int:
    """mm/page_alloc.c zone_batchsize(), then zone_set_pageset_high_and_batch()'s max(1, .)."""
    batch = min(managed >> 10, (1 << 20) // 4096)
    batch //= 4
    if batch < 1:
        batch = 1
    v = batch + batch // 2
    batch = (1 << (v.bit_length() - 1)) - 1              # rounddown_pow_of_two(v) - 1
    return max(1, batch)


def linux_pcp_allowed_order(order: int, thp: bool) -> bool:
    """mm/page_alloc.c pcp_allowed_order() with CONFIG_TRANSPARENT_HUGEPAGE."""
    return order <= 3 or (thp and order == 9)


@dataclasses.dataclass
class LinuxPcp:
    """struct per_cpu_pages of one zone, order-0 movable traffic only (one list)."""

    batch: int
    high_min: int
    high_max: int
    count: int = 0
    high: int = 0
    free_count: int = 0
    alloc_factor: int = 0

    def nr_pcp_alloc(self, order: int = 0) -> int:       # mm/page_alloc.c nr_pcp_alloc()
        base = self.batch
        high = self.high = min(max(self.high, self.high_min), self.high_max)
        if high < base:
            return 1
        batch = base if order else base << self.alloc_factor
        if self.high_min != self.high_max:                # and !ZONE_BELOW_HIGH
            high = self.high = min(high + batch, self.high_max)
        if not order:
            max_nr_alloc = max(high - self.count - base, base)
            if batch <= max_nr_alloc and self.alloc_factor < 5:
                self.alloc_factor += 1
            batch = min(batch, max_nr_alloc)
        if batch > 1:
            batch = max(batch >> order, 2)
        return batch

    def nr_pcp_high(self) -> int:                          # mm/page_alloc.c nr_pcp_high(), free_high 0
        high = self.high = min(max(self.high, self.high_min), self.high_max)
        if not high:
            return 0
        if self.high_min == self.high_max:
            return high
        if self.count >= high:
            need = self.free_count + self.batch
            if self.high < need:
                self.high = min(max(need, self.high_min), self.high_max)
        return high

    def nr_pcp_free(self, high: int) -> int:              # mm/page_alloc.c nr_pcp_free(), free_high 0
        if high < self.batch:
            return 1
        lo, hi = self.batch, high - self.batch
        return min(max(self.free_count, lo), hi)         # clamp_t()

    def alloc(self) -> None:                              # rmqueue_pcplist()
        self.free_count >>= 1
        if not self.count:
            self.count += self.nr_pcp_alloc()             # rmqueue_bulk() got them all
        self.count -= 1

    def free(self) -> None:                               # free_frozen_page_commit(), order 0
        self.alloc_factor >>= 1
        self.count += 1
        if self.free_count < self.batch << 5:
            self.free_count += 1
        high = self.nr_pcp_high()
        if self.count >= high:
            self.count -= min(self.nr_pcp_free(high), self.count)

    def state(self) -> tuple[int, int, int, int]:
        return self.count, self.high, self.free_count, self.alloc_factor


def test_point4_pcp_formulas_are_linux(sa) -> None:
    """Point 4: zone_batchsize() for every zone size (no small-zone override),
    pcp_allowed_order() (order-9 blocks have their own list with THP), nr_pcp_alloc() /
    nr_pcp_high() / nr_pcp_free() over a grid, against the models above."""
    for managed in [*range(0, 20000, 97), *range(20000, 1 << 22, 40961)]:
        assert Z.zone_batchsize(managed) == linux_zone_batchsize(managed), managed
    for order in range(11):
        for thp in (False, True):
            assert Z.pcp_allowed_order(order, thp) == linux_pcp_allowed_order(order, thp)
    for batch in (1, 3, 7, 63):
        for hmin, hmax in ((0, 0), (batch * 4, batch * 4), (batch * 4, batch * 100), (500, 40000)):
            for high in (0, hmin, (hmin + hmax) // 2, hmax):
                for count in (0, batch, hmin, hmax):
                    for af in (0, 3, 5):
                        m = LinuxPcp(batch, hmin, hmax, count=count, high=high, alloc_factor=af)
                        b = m.nr_pcp_alloc()
                        assert Z.nr_pcp_alloc(high, hmin, hmax, batch, count, af, 0, False) == (
                            b, m.high, m.alloc_factor)
                    for fc in (0, batch, hmin, batch << 5):
                        m = LinuxPcp(batch, hmin, hmax, count=count, high=high, free_count=fc)
                        h = m.nr_pcp_high()
                        assert Z.nr_pcp_high(high, hmin, hmax, batch, count, fc, False, False) == (h, m.high)
                        if hmin == hmax or count >= h:
                            assert Z.nr_pcp_free(count, batch, h, fc, False) == m.nr_pcp_free(h)


def test_point4_exact_autotune_follows_linux_step_by_step(machine, monkeypatch) -> None:
    """Point 4, "linux" profile (pcp_autotune "exact"): every order-0 allocation and free
    on one CPU leaves (count, high, free_count, alloc_factor) of the zone's per-CPU list
    exactly where the model of rmqueue_pcplist() / free_frozen_page_commit() (with
    nr_pcp_alloc / nr_pcp_high / nr_pcp_free) puts it; high_min / high_max are
    zone_highsize()'s and zoneinfo prints them."""
    monkeypatch.setattr(PA, "_DECAY_NS", 10**18)          # decay_pcp_high() is once a second
    a = machine(nr_pages=32768, nr_cpus=1, kernel_profile="linux")
    mm = MM(a, 0)
    zid = ZONE_NORMAL
    p0 = V.zone_pcp(a, zid)[0]
    zi = Z.zone_info(a, zid)
    assert (p0["high_min"], p0["high_max"]) == (
        Z.zone_highsize(zi["low"], zi["managed"], p0["batch"], 1),
        Z.zone_highsize(zi["low"], zi["managed"], p0["batch"], 1, 8))
    assert f"high_min: {p0['high_min']}" in procfs.render(a, "zoneinfo")
    model = LinuxPcp(p0["batch"], p0["high_min"], p0["high_max"])

    def state() -> tuple[int, int, int, int]:
        p = V.zone_pcp(a, zid)[0]
        return p["count"], p["high"], p["free_count"], p["alloc_factor"]

    pages = []
    for i in range(3000):
        pfn = mm.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
        assert a.u8[a.off("pagemeta") + pfn * 64 + 6] == zid
        pages.append(pfn)
        model.alloc()
        assert state() == model.state(), f"alloc {i}"
    for i, pfn in enumerate(pages):
        mm.free_pages(pfn)
        model.free()
        assert state() == model.state(), f"free {i}"
    for i in range(500):
        pages[i] = mm.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
        model.alloc()
        assert state() == model.state(), f"alloc again {i}"
    for pfn in pages[:500]:
        mm.free_pages(pfn)
    mm.drain_local_pages()
    assert check(a).ok


def test_point4_thp_blocks_have_their_own_pcp_list(machine) -> None:
    """Point 4, pcp_allowed_order(HPAGE_PMD_ORDER): an order-9 block is freed to the
    per-CPU lists (its own list, NR_PCP_THP) when THP is on, to the buddy when it is off."""
    for thp in (True, False):
        a = machine(nr_pages=16384, nr_cpus=1, thp=thp, pcp_high=4096)
        mm = MM(a, 0)
        pfn = mm.alloc_pages(GFP_TRANSHUGE, 9)
        assert pfn >= 0
        zid = a.u8[a.off("pagemeta") + pfn * 64 + 6]
        before = V.zone_pcp(a, zid)[0]["count"]
        mm.free_pages(pfn, 9)
        on_pcp = bool(a.u32[(a.off("pagemeta") >> 2) + pfn * 16] & PG_pcp)
        assert on_pcp == thp
        assert V.zone_pcp(a, zid)[0]["count"] - before == (512 if thp else 0)
        mm.drain_local_pages()
        assert check(a).ok


# =========================================================================== point 5
@dataclasses.dataclass
class ZoneFree:
    """What __rmqueue() needs to know of one zone for an unmovable request."""

    own: bool                 # a free block of the requested type
    whole_other: bool         # a free block of another type of order >= pageblock_order
    claimable_other: bool     # try_to_claim_block() would take a smaller block's pageblock
    any_other: bool           # any free block of another type (steal)


def linux_get_page_from_freelist(zones: list[tuple[str, ZoneFree]], nofragment: bool) -> tuple[str, str] | None:
    """mm/page_alloc.c get_page_from_freelist() on one node with alloc_flags_nofragment()
    set, and __rmqueue()'s modes: RMQUEUE_NORMAL, CLAIM (min_order = pageblock_order
    under ALLOC_NOFRAGMENT), STEAL (never under it); the walk retried without the flag."""
    for name, z in zones:
        if z.own:
            return name, "normal"
        if z.whole_other or (not nofragment and z.claimable_other):
            return name, "claim"
        if not nofragment and z.any_other:
            return name, "steal"
    if nofragment:
        return linux_get_page_from_freelist(zones, False)
    return None


def _fragment(a: Any, mm: MM, whole_block_zone: int | None) -> dict[int, list[int]]:
    """Take every free page of every zone; give back one page in four as single pages
    (the rest stay taken, marked PG_lru: movable pages on an LRU); optionally give back
    one whole pageblock of `whole_block_zone`."""
    taken: dict[int, list[int]] = {}
    pm32 = a.off("pagemeta") >> 2
    pbo = a.off("mmpageblock")
    for zid in range(mm.nr_zones):
        with mm.zone_lock(zid):
            got = []
            for mt in range(MIGRATE_TYPES):
                while (p := mm.rmqueue_smallest_locked(zid, 0, mt)) >= 0:
                    got.append(p)
            for p in got:
                a.u32[pm32 + p * 16] |= PG_lru
            keep = []
            block = None
            if zid == whole_block_zone:
                starts = sorted({p >> PB for p in got})
                block = next(s for s in starts if all(((s << PB) + i) in set(got) for i in range(1 << PB)))
            for p in got:
                if p % 4 == 0 or (block is not None and p >> PB == block):
                    a.u32[pm32 + p * 16] &= ~PG_lru
                    mm.free_one_page_locked(zid, p, 0, a.u8[pbo + (p >> PB)], False)
                else:
                    keep.append(p)
            taken[zid] = keep
    return taken


def _give_back(a: Any, mm: MM, taken: dict[int, list[int]]) -> None:
    pm32 = a.off("pagemeta") >> 2
    pbo = a.off("mmpageblock")
    for zid, pages in taken.items():
        with mm.zone_lock(zid):
            for p in pages:
                a.u32[pm32 + p * 16] &= ~PG_lru
                mm.free_one_page_locked(zid, p, 0, a.u8[pbo + (p >> PB)], False)


def test_point5_nofragment_claims_a_whole_pageblock_of_a_lower_zone(machine) -> None:
    """Point 5, alloc_flags_nofragment() + __rmqueue_claim(): a Normal-preferred unmovable
    allocation on a node with DMA32, Normal holding only scattered movable pages: Normal
    may not claim below pageblock_order nor steal, so the page comes from DMA32's whole
    free pageblock, which becomes UNMOVABLE; a whole-block claim does not boost."""
    a = machine(nr_pages=16384, nr_cpus=1, kernel_profile="linux")
    mm = MM(a, 0)
    taken = _fragment(a, mm, whole_block_zone=ZONE_DMA32)
    zones = [("Normal", ZoneFree(False, False, True, True)), ("DMA32", ZoneFree(False, True, True, True)),
             ("DMA", ZoneFree(False, False, True, True))]
    want = linux_get_page_from_freelist(zones, nofragment=True)
    assert want == ("DMA32", "claim")
    ev0 = Z.vm_events(a)
    pfn = mm.alloc_pages(GFP_KERNEL, 0)
    assert pfn >= 0 and a.u8[a.off("pagemeta") + pfn * 64 + 6] == ZONE_DMA32
    assert a.u8[a.off("mmpageblock") + (pfn >> PB)] == MIGRATE_UNMOVABLE
    ev = Z.vm_events(a)
    assert ev["pgblock_claim"] - ev0["pgblock_claim"] == 1 and ev["pgblock_steal"] == ev0["pgblock_steal"]
    assert ev["watermark_boost"] == ev0["watermark_boost"]
    mm.free_pages(pfn)
    mm.drain_local_pages()
    _give_back(a, mm, taken)
    assert check(a).ok


def test_point5_nofragment_retries_without_the_flag_then_steals_and_boosts(machine) -> None:
    """Point 5: no zone has a whole free pageblock, so the ALLOC_NOFRAGMENT walk fails and
    get_page_from_freelist() retries without it: Normal steals (its scattered movable
    pages are on LRUs, so try_to_claim_block() cannot take the pageblock) after
    boost_watermark() raised Normal's boost; rmqueue() then wakes "kswapd", which (no
    reclaim in AeroSync) drops the boost again."""
    a = machine(nr_pages=16384, nr_cpus=1, kernel_profile="linux")
    mm = MM(a, 0)
    taken = _fragment(a, mm, whole_block_zone=None)
    zones = [(n, ZoneFree(False, False, False, True)) for n in ("Normal", "DMA32", "DMA")]
    assert linux_get_page_from_freelist(zones, nofragment=True) == ("Normal", "steal")
    ev0 = Z.vm_events(a)
    zi = Z.zone_info(a, ZONE_NORMAL)
    want_boost = Z.boost_watermark(0, zi["high"], zi["managed"], PB)
    assert want_boost == min(1 << PB, max(1 << PB, zi["high"] * 15000 // 10000))   # boost_watermark()
    with mm.zone_lock(ZONE_NORMAL):                      # the locked path leaves the boost set
        p = mm.rmqueue_locked(ZONE_NORMAL, 0, MIGRATE_UNMOVABLE, ALLOC_NOFRAGMENT | ALLOC_KSWAPD)
        assert p < 0                                      # no whole pageblock, no steal
        p = mm.rmqueue_locked(ZONE_NORMAL, 0, MIGRATE_UNMOVABLE, ALLOC_KSWAPD)
        assert p >= 0 and a.u8[a.off("mmpageblock") + (p >> PB)] == MIGRATE_MOVABLE
        assert Z.zone_info(a, ZONE_NORMAL)["watermark_boost"] == want_boost
        mm.free_one_page_locked(ZONE_NORMAL, p, 0, MIGRATE_MOVABLE, False)
    pfn = mm.alloc_pages(GFP_KERNEL, 0)                   # the whole path
    assert pfn >= 0 and a.u8[a.off("pagemeta") + pfn * 64 + 6] == ZONE_NORMAL
    ev = Z.vm_events(a)
    assert ev["pgblock_steal"] > ev0["pgblock_steal"] and ev["pgblock_claim"] == ev0["pgblock_claim"]
    assert ev["watermark_boost"] > ev0["watermark_boost"] and ev["kswapd_wake"] > ev0["kswapd_wake"]
    assert Z.zone_info(a, ZONE_NORMAL)["watermark_boost"] == 0
    mm.free_pages(pfn)
    mm.drain_local_pages()
    _give_back(a, mm, taken)
    assert check(a).ok


# =========================================================================== point 6
def linux_set_recommended_min_free_kbytes(min_free_kbytes: int, managed: list[int], high: list[int]) -> int:
    """mm/khugepaged.c set_recommended_min_free_kbytes() (pageblock_order 9)."""
    nr_zones = sum(1 for m in managed if m)
    pb = 1 << 9
    recommended = pb * nr_zones * 2 + pb * nr_zones * 3 * 3
    free_buffer = sum(m - h for m, h in zip(managed, high) if m > h)      # nr_free_buffer_pages()
    recommended = min(recommended, free_buffer // 20) << 2
    return max(min_free_kbytes, recommended)


@pytest.mark.parametrize("nr_pages,thp,max_order", [(16384, True, 10), (16384, False, 10), (262144, True, 10),
                                                    (262144, True, 8)])
def test_point6_min_free_kbytes_has_khugepaged_raise(machine, nr_pages: int, thp: bool, max_order: int) -> None:
    """Point 6: with THP on (and MAX_PAGE_ORDER >= 9), min_free_kbytes is raised as
    khugepaged's set_recommended_min_free_kbytes() does, and the watermarks follow."""
    a = machine(nr_pages=nr_pages, nr_cpus=1, thp=thp, max_page_order=max_order)
    zones = [Z.zone_info(a, z) for z in range(3)]
    managed = [z["managed"] for z in zones]
    calc = Z.calculate_min_free_kbytes(sum(managed))
    if thp and max_order >= 9:
        wm = Z.setup_watermarks(managed, calc, 10)
        want = linux_set_recommended_min_free_kbytes(calc, managed, [w[2] for w in wm])
        assert want > calc
    else:
        want = calc
    assert a.u64[(a.off("mmzones") + Z.G_MIN_FREE_KBYTES) >> 3] == want
    assert [z["min"] for z in zones] == [w[0] for w in Z.setup_watermarks(managed, want, 10)]


# =========================================================================== point 7
def linux_calculate_sizes(object_size: int, align: int, flags: int, ctor: bool) -> tuple[int, int, int, int]:
    """mm/slub.c v6.19 calculate_sizes(): (size, inuse, offset, red_left_pad); struct
    track is 32 bytes with CONFIG_STACKDEPOT."""
    size = (object_size + 7) & ~7
    if flags & SC.SLAB_RED_ZONE and size == object_size:
        size += 8
    inuse = size
    orig = flags & SC.SLAB_STORE_USER and flags & SC.SLAB_KMALLOC
    if flags & SC.SLAB_POISON or ctor or (flags & SC.SLAB_RED_ZONE and (object_size < 8 or orig)):
        offset = size
        size += 8
    else:
        offset = (object_size // 2) & ~7
    if flags & SC.SLAB_STORE_USER:
        size += 2 * 32
        if flags & SC.SLAB_KMALLOC:
            size += 4
    red_left = 0
    if flags & SC.SLAB_RED_ZONE:
        size += 8
        red_left = (8 + align - 1) // align * align
        size += red_left
    return (size + align - 1) // align * align, inuse, offset, red_left


def test_point7_calculate_sizes_and_order_are_linux(sa) -> None:
    """Point 7, mm/slub.c calculate_sizes() (32-byte tracks, orig_size for kmalloc with
    user tracking, the padding word, kmalloc natural alignment from create_boot_cache())
    and calculate_order() (waste fractions 16, 8, 4, 2); slabinfo under slub_debug=FZPU
    then shows Linux's objsize, and bytes beyond kmalloc's requested size are a red zone."""
    dbg = [0, SC.SLAB_RED_ZONE, SC.SLAB_POISON, SC.SLAB_STORE_USER, SC.SLAB_RED_ZONE | SC.SLAB_STORE_USER,
           SC.SLAB_POISON | SC.SLAB_RED_ZONE | SC.SLAB_STORE_USER | SC.SLAB_CONSISTENCY_CHECKS]
    for size in (1, 4, 8, 12, 24, 50, 64, 96, 100, 192, 256, 700, 1024, 4096):
        for kmalloc in (0, SC.SLAB_KMALLOC):
            for f in dbg:
                for ctor in (False, True):
                    flags = f | kmalloc
                    align = max(8, size & -size) if kmalloc else 8
                    lay = SC._layout(size, 0, flags, ctor)
                    assert (lay["size"], lay["inuse"], lay["offset"], lay["red_left"]) == \
                        linux_calculate_sizes(size, align, flags, ctor), (size, flags, ctor)
    # calculate_order(): 2100-byte objects at slab_max_order 0 only fit with 1/2 waste
    assert SC.calculate_order(2100, 0, 2) == 0
    a = sa(slub_debug="FZPU", kernel_profile="linux")
    rows = {r["name"]: r for r in SC.slabinfo_json(a)}
    for name, size in (("kmalloc-64", 64), ("kmalloc-96", 96), ("kmalloc-1k", 1024)):
        want = linux_calculate_sizes(size, size & -size, SC.SLAB_DEBUG_FLAGS | SC.SLAB_KMALLOC, False)[0]
        assert rows[name]["objsize"] == want
    assert rows["kmalloc-64"]["objsize"] == 256           # 64 + 8 rz + 8 fp + 64 tracks + 4 + 8 pad + 64 left
    s0 = Slub(a, 0)
    km = Kmalloc(s0)
    x = km.kmalloc(50)
    SC.object_view(a, x, 64)[55] = 0x41                   # beyond the 50 bytes asked for
    km.kfree(x)
    assert any("kmalloc Redzone overwritten" in r for r in s0.reports)


# =========================================================================== point 8
def _host(rel: str) -> str:
    return (FIXTURE / rel).read_text()


def _zone_items(text: str, zone: str) -> list[str]:
    """The counter names of one populated zone of a zoneinfo text (after protection:)."""
    block = text.split(f"zone {zone:>8}")[1].split("\nNode ")[0]
    after = block.split("protection:")[1].split("pagesets")[0]
    return re.findall(r"\n {6}(\w+)\s", after)


def test_point8_views_have_the_kernel_layout(sa) -> None:
    """Point 8, mm/vmstat.c zoneinfo_show_print() / pagetypeinfo_showfree(),
    fs/proc/meminfo.c meminfo_proc_show(), drivers/base/node.c node_read_meminfo(),
    mm/slab_common.c slab_show(): the same items in the same order and format as the
    saved 6.18 host (whose config-dependent extras AeroSync may lack), numa_interleave
    counted per zone, kmalloc rows newest first."""
    a = sa(nr_nodes=2, nr_cpus=2, kernel_profile="linux")
    zi = procfs.render(a, "zoneinfo")
    host_zi = _host("proc/zoneinfo")
    assert _zone_items(zi, "Normal") == _zone_items(host_zi, "Normal")
    assert zi.count("per-node stats") == 2                # once per node, in its first populated zone
    assert re.search(r"Node 0, zone      DMA\n  per-node stats\n", zi)
    head = "Free pages count per migrate type at order"
    assert "Isolate" in procfs.render(a, "pagetypeinfo").split(head)[0] + procfs.render(a, "pagetypeinfo")
    assert re.findall(r"^Number of blocks type .*$", procfs.render(a, "pagetypeinfo"), re.M)[0].split() == \
        re.findall(r"^Number of blocks type .*$", _host("proc/pagetypeinfo"), re.M)[0].split()
    mine = [ln.split(":")[0] for ln in procfs.render(a, "meminfo").splitlines()]
    host = [ln.split(":")[0] for ln in _host("proc/meminfo").splitlines()]
    assert [k for k in host if k in mine] == [k for k in mine if k in host]       # same relative order
    assert set(host) - set(mine) <= {"Unaccepted", "CmaTotal", "CmaFree", "Zswap", "Zswapped", "Percpu"}
    fmt = re.compile(r"^[A-Za-z0-9_()]+: +\d+( kB)?$")
    assert all(fmt.match(ln) for ln in procfs.render(a, "meminfo").splitlines())
    for ours, theirs in zip(procfs.render(a, "meminfo").splitlines(), _host("proc/meminfo").splitlines()):
        if ours.split(":")[0] == theirs.split(":")[0]:
            assert len(ours) == len(theirs) or len(ours.split()[1]) != len(theirs.split()[1]), (ours, theirs)
    nm = procfs.node_meminfo_text(a, 1).splitlines()
    host_nm = _host("sys/devices/system/node/node0/meminfo").splitlines()
    assert [ln[7:].split(":")[0] for ln in nm if ln.split(":")[0][7:] in {h[7:].split(":")[0] for h in host_nm}] == \
        [h[7:].split(":")[0] for h in host_nm if h[7:].split(":")[0] in {ln[7:].split(":")[0] for ln in nm}]
    assert all(re.match(r"^Node 1 [A-Za-z_()]+: +\d+( kB)?$", ln) for ln in nm)
    kmalloc = [ln.split()[0] for ln in procfs.render(a, "slabinfo").splitlines() if ln.startswith("kmalloc-")]
    host_k = [ln.split()[0] for ln in _host("proc/slabinfo").splitlines() if re.match(r"kmalloc-\d", ln)]
    assert kmalloc == list(dict.fromkeys(host_k))
    # numa_interleave on the page's zone (alloc_pages_mpol: __count_numa_event(page_zone(page)))
    from aerosync.mm.numa.mempolicy import PolicyAllocator, parse_policy

    pa = PolicyAllocator(MM(a, 0), 0, parse_policy("interleave=all", 2))
    pages = [pa.alloc_pages(GFP_HIGHUSER_MOVABLE, 0) for _ in range(10)]
    js = procfs.render_json(a, "zoneinfo")
    per_zone = {(r["node"], r["zone"]): r["numa_interleave"] for r in js if r["populated"]}
    assert per_zone[(0, "Normal")] == 5 and per_zone[(1, "Normal")] == 5
    assert sum(per_zone.values()) == 10
    for p in pages:
        MM(a, 0).free_pages(p)


def test_vmstat_names_are_the_hosts_sequence(sa) -> None:
    """/proc/vmstat (mm/vmstat.c vmstat_text over enum zone_stat_item, numa_stat_item,
    node_stat_item, vm_stat_item, vm_event_item, then vmstat_show's "nr_unstable"): the
    saved 6.18 host's names in the host's order (v6.19 prints the same sequence for this
    CONFIG), except the two CONFIG choices vm_event.py documents as AeroSync's own
    (DEBUG_TLBFLUSH and PER_VMA_LOCK_STATS on), and AeroSync's aerosync_ lines after it."""
    a = sa(nr_nodes=2, nr_cpus=2, kernel_profile="linux")
    names = [ln.split()[0] for ln in procfs.render(a, "vmstat").splitlines()]
    host = [ln.split()[0] for ln in _host("proc/vmstat").splitlines()]
    ours_only = {"nr_tlb_remote_flush", "nr_tlb_remote_flush_received", "nr_tlb_local_flush_all",
                 "nr_tlb_local_flush_one", "vma_lock_success", "vma_lock_abort", "vma_lock_retry", "vma_lock_miss"}
    kernel = [n for n in names if not n.startswith("aerosync_")]
    assert names[: len(kernel)] == kernel                         # aerosync_ lines only at the end
    assert [n for n in kernel if n not in ours_only] == host
    assert set(kernel) >= ours_only and "nr_writeback_temp" not in kernel
    # the node items sit in enum node_stat_item's order, as the per-node views print them
    assert list(VE.NODE_STAT_NAMES) == host[host.index("nr_inactive_anon"): host.index("nr_dirty_threshold")]
    assert "WritebackTmp:          0 kB" in procfs.render(a, "meminfo")


def _unshare_ok() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("free") or not shutil.which("vmstat"):
        return False
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10)
    return r.returncode == 0


@pytest.mark.skipif(not _unshare_ok(), reason="needs root, unshare -m, procps free and vmstat")
def test_point8_procps_free_and_vmstat_read_our_meminfo(sa, tmp_path) -> None:
    """Point 8: procps `free` and `vmstat -s` read the simulated /proc/meminfo unchanged
    (bind-mounted over /proc/meminfo in a private mount namespace)."""
    a = sa(kernel_profile="linux")
    km = Kmalloc(Slub(a, 0))
    xs = [km.kmalloc(4096) for _ in range(200)]
    f = tmp_path / "meminfo"
    f.write_text(procfs.render(a, "meminfo"))
    vals = V.meminfo_values(a)
    out = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {f} /proc/meminfo && free -k && vmstat -s"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    mem = next(ln for ln in out.stdout.splitlines() if ln.startswith("Mem:")).split()
    assert int(mem[1]) == vals["MemTotal"] and int(mem[3]) == vals["MemFree"]
    assert int(mem[6]) == vals["MemAvailable"]
    assert f"{vals['MemTotal']} K total memory" in " ".join(out.stdout.split())
    for x in xs:
        km.kfree(x)


# =========================================================================== doctor --fidelity
def test_doctor_fidelity_reproduces_the_saved_host(capsys) -> None:
    """The self-check fed with a saved 6.18 host tree: every watermark, protection, PCP and
    kmalloc row matches; the zones AeroSync does not model are expected deviations."""
    rows = fidelity.fidelity_rows(fidelity.read_host(FIXTURE))
    bad = [r for r in rows if r.status == fidelity.MISMATCH]
    assert not bad, bad
    items = {r.item for r in rows}
    assert "min_free_kbytes" in items and "node0 Normal watermarks min/low/high/promo" in items
    assert sum(r.item.startswith("slab ") for r in rows) == 52
    assert {r.status for r in rows} == {fidelity.MATCH, fidelity.EXPECTED}
    from aerosync.cli import main

    assert main(["doctor", "--fidelity", "--root", str(FIXTURE)]) == 0
    assert "0 mismatch" in capsys.readouterr().out


def test_doctor_fidelity_exits_1_on_a_mismatch(tmp_path, capsys) -> None:
    root = tmp_path / "host"
    shutil.copytree(FIXTURE, root)
    zi = root / "proc" / "zoneinfo"
    zi.write_text(zi.read_text().replace("        min      3770", "        min      3771"))
    (root / "proc" / "slabinfo").unlink()                 # not root: slabinfo unreadable -> skipped
    from aerosync.cli import main

    assert main(["doctor", "--fidelity", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "node0 DMA32 watermarks" in out and "MISMATCH" in out and "skipped" in out


# =========================================================================== [kernel] profile
def test_kernel_profile_section_sets_defaults_overridable_one_by_one(tmp_path) -> None:
    from aerosync.errors import ScenarioError
    from aerosync.scenario import load_scenario, scenario_hash, scenario_to_dict, with_overrides
    from workers.workloads import registry

    f = tmp_path / "k.toml"
    f.write_text('[run]\nworkload = "null"\n[kernel]\nprofile = "linux"\n[slab]\nmag_size = 8\n')
    s = load_scenario(f, registry())
    d = scenario_to_dict(s)
    assert d["kernel"] == {"profile": "linux", "effective": {"slab_mag_size": 8, "slab_percpu_sheaves": True,
                                                             "pcp_autotune": "exact", "thp": True}}
    s2 = with_overrides(s, registry(), ["kernel.profile=aerosync", "machine.pcp_autotune=off"])
    assert scenario_to_dict(s2)["kernel"]["effective"] == {"slab_mag_size": 8, "slab_percpu_sheaves": False,
                                                           "pcp_autotune": "off", "thp": True}
    assert scenario_hash(s) != scenario_hash(s2)
    s3 = load_scenario(f, registry(), ["slab.mag_size=16"])
    assert scenario_to_dict(s3)["kernel"]["effective"]["slab_mag_size"] == 16
    with pytest.raises(ScenarioError, match=r"kernel\.profile"):
        load_scenario(f, registry(), ["kernel.profile=bsd"])
    with pytest.raises(ScenarioError, match=r"machine\.pcp_autotune"):
        load_scenario(f, registry(), ["machine.pcp_autotune=sometimes"])


def test_kernel_profile_recorded_in_the_result_and_summary() -> None:
    from aerosync import coordinator
    from aerosync.cli import _summary
    from aerosync.scenario import load_scenario
    from workers.workloads import registry

    scn = load_scenario(Path(__file__).resolve().parent.parent / "scenarios" / "larson.toml", registry(),
                        ["run.duration=0.3", "run.warmup=0", "machine.cpus=1", "machine.memory=16M",
                         "kernel.profile=linux"])
    res = coordinator.run(scn)
    d = res.to_dict()
    assert d["scenario"]["kernel"]["profile"] == "linux"
    assert d["mm_check"]["ok"]
    assert "kernel profile linux: slab magazines off, per-CPU sheaves on, PCP autotune exact, THP on" in _summary(res)
