"""Forced interleavings of reclaim's races (issue 12): swap-in of one entry on two CPUs,
swap-out racing with a fault on the page being reclaimed, reclaim racing with munmap and
with fork.  Two simulated CPUs are two threads of this process (tests/test_vm_races.py's
Other); a test point (mm/hooks.py: swapin:new_cached, vmscan:swapcache, vmscan:unmapped,
unmap:before_flush) stops one CPU at an exact step while the other runs the conflicting
operation.  A CPU stopped or waiting keeps answering its IPIs.

Each test states the protocol it protects and checks the reclaim invariants
(mm/reclaim/check.py: LRU1-3, SW1-3) while the race is open and after it, the page
allocator's afterwards, every byte of the data, and that the swap slots are freed.
Reclaim is driven on one chosen folio (isolated from its LRU list, its accessed bits
cleared, then shrink_folio_list): what kswapd or direct reclaim do to each folio.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aerosync.mm import hooks
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import PG_buddy, PG_pcp, PG_referenced, PG_swapbacked, PG_swapcache
from aerosync.mm.pmm.vm_event import fold_vm_events
from aerosync.mm.reclaim.check import reclaim_check
from aerosync.mm.reclaim.swapfile import si_swapinfo, swapoff
from aerosync.mm.reclaim.vmscan import ScanControl
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.filemap import expected_page
from aerosync.mm.vm.pgtable import _PAGE_PRESENT, PTE_PFN_MASK, swp_offset
from aerosync.mm.vm.vm import VM
from tests.test_vm_races import Other, stop_all
from workers.workloads.reclaim import page_bytes

PG = 4096
RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
NPAGES = 8


@pytest.fixture(autouse=True)
def _points() -> Iterator[None]:
    """A placeholder point is registered before any CPU handle is built, so every handle
    binds the point function (mm/hooks.py); each test sets the points it needs."""
    hooks.clear_points()
    hooks.set_point("test:placeholder", lambda _n: None)
    yield
    stop_all()
    hooks.clear_points()


@pytest.fixture
def rig(machine) -> Iterator[Callable[..., tuple[Any, VM, VM]]]:
    """(arena, A, B): two CPUs of a machine with swap on a file (ZMM off: every swap-in
    is a counted read, pswpin); A runs a task with NPAGES pages of known data at
    `A.addr`; B is built but runs nothing yet (no mm loaded: no shootdown waits on it)."""
    made: list[Any] = []

    def make(lru: str = "mglru") -> tuple[Any, VM, VM]:
        a = machine(nr_pages=4096, nr_cpus=2, slab=True, vm={"mm": "threads"},
                    reclaim={"lru": lru, "swap_size": 8 << 20, "zmm": False})
        made.append(a)
        B = VM(a, 1)
        A = VM(a, 0)
        A.make_current()
        A.switch_to(A.task_create("a"))
        A.addr = A.mmap(0, NPAGES * PG, RW, ANON)  # type: ignore[attr-defined]
        for i in range(NPAGES):
            A.store(A.addr + i * PG, page_bytes(0, i, 1))  # type: ignore[attr-defined]
        A.reclaim.lru.lru_add_drain()
        return a, A, B

    yield make
    for a in made:
        swapoff(a)


# ------------------------------------------------------------------ helpers
def pte(cpu: VM, mm_id: int, va: int) -> int:
    a = cpu.arena
    root = a.u64[(T.mm_off(a, mm_id) + T.M_PGD) >> 3]
    t = cpu.pt.walk(root, va)
    return 0 if t < 0 else int(a.u64[(a.off("physmem") >> 3) + (t << 9) + ((va >> 12) & 511)])


def pfn_of(e: int) -> int:
    assert e & _PAGE_PRESENT, f"entry {e:#x} is not present"
    return (e & PTE_PFN_MASK) >> 12


def meta(a: Any, pfn: int, word: int) -> int:
    """u32 `word` of pfn's struct page: 0 flags, 2 refcount, 3 mapcount."""
    return int(a.u32[(a.off("pagemeta") >> 2) + pfn * 16 + word])


def reclaim_one(cpu: VM, pfn: int) -> int:
    """Isolate pfn from its LRU list, make it cold (accessed bits and PG_referenced
    cleared) and run shrink_folio_list on it: 1 if it was reclaimed."""
    a, rec = cpu.arena, cpu.reclaim
    rec.lru.lru_add_drain()
    nid = rec.lru.nid_of(pfn)
    rec.lru.lock(nid)
    try:
        ok = rec.lru.isolate(nid, pfn)
    finally:
        rec.lru.unlock(nid)
    assert ok, f"pfn {pfn} is not on an LRU list"
    anon = meta(a, pfn, 0) & PG_swapbacked
    a.i64[VE.node_stat_base(a, cpu.cpu) + nid * VE.NR_NODE_STATS
          + (VE.NR_ISOLATED_ANON if anon else VE.NR_ISOLATED_FILE)] += 1
    if meta(a, pfn, 3):
        rec.rops.referenced(pfn)
    a.atomic.fetch_and32(a.off("pagemeta") + pfn * 64, ~PG_referenced & 0xFFFF_FFFF)
    return rec.scan.shrink_folio_list([pfn], ScanControl(1, False))


def events(a: Any) -> dict[str, int]:
    ev = fold_vm_events(a)
    return {k: ev[k] for k in ("pswpin", "pswpout", "pgmajfault")}


def delta(a: Any, before: dict[str, int]) -> dict[str, int]:
    now = events(a)
    return {k: now[k] - before[k] for k in now}


def spin_until(cond: Callable[[], bool], what: str, *others: Other) -> None:
    """Wait (this thread drives no CPU now) until cond(); fail after 20 s."""
    deadline = time.monotonic() + 20
    while not cond():
        for o in others:
            if o.error is not None:
                raise o.error
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.0005)


class Park:
    """A point handler: the first CPU to reach it stops there (answering its IPIs)
    until `go` is set; later hits pass."""

    def __init__(self, cpu: VM) -> None:
        self.cpu = cpu
        self.at = threading.Event()
        self.go = threading.Event()
        self.hits = 0

    def __call__(self, _name: str) -> None:
        self.hits += 1
        if self.hits > 1:
            return
        self.at.set()
        deadline = time.monotonic() + 20
        while not self.go.is_set():
            self.cpu.tlb.handle_ipi()
            assert time.monotonic() < deadline, "the test never released the parked CPU"
            time.sleep(0.0005)


def racing_check(a: Any, held: int) -> list[tuple[str, str]]:
    """reclaim_check while a race is open: the folio `held` is isolated by reclaim or
    being swapped in (on no LRU list: LRU4 must name it, and only it); every other
    invariant must hold as at a quiescent point."""
    bad = reclaim_check(a)
    mine = [b for b in bad if b[0] == "LRU4" and b[1].startswith(f"pfn {held} ")]
    assert mine, f"LRU4 did not see pfn {held} off the LRU: {bad}"
    return [b for b in bad if b not in mine]


def slot_free(a: Any, dev: Any, slot: int) -> bool:
    return a.u32[dev.smap4 + slot] == 0 and a.u64[dev.stab8 + slot] == 0


def finish(a: Any, *cpus: VM) -> None:
    """Every task exits, the CPUs leave: nothing left in swap, every invariant holds."""
    stop_all()
    hooks.clear_points()
    for c in cpus:
        if c.current_task() >= 0:
            c.exit()
    for c in cpus:
        c.leave()
    assert reclaim_check(a) == []
    assert si_swapinfo(a)["inuse"] == 0
    r = check(a)
    assert r.ok, r.violations[:5]


# ------------------------------------------------------------------ (a) swap-in on two CPUs
@pytest.mark.parametrize("sharing", ["threads", "fork"])
def test_swapin_of_one_entry_on_two_cpus(rig, sharing: str) -> None:
    """Both CPUs fault on the same swap entry: A allocated the folio, put it in the swap
    cache and stopped before the read; B finds it there (a reference), waits for its
    lock, and uses it -- one read, one folio for both, the slot freed once no swap PTE
    or object entry names it.  `threads`: one PTE (shared mm: B retries and finds it
    mapped); `fork`: parent and child each hold a swap PTE to the slot."""
    a, A, B = rig()
    addr, va = A.addr, A.addr + 3 * PG  # type: ignore[attr-defined]
    other_task = A.fork() if sharing == "fork" else A.task_create("b", mm=A.current_mm())
    pfn = pfn_of(pte(A, A.current_mm(), va))
    assert reclaim_one(A, pfn) == 1
    e = pte(A, A.current_mm(), va)
    assert e and not e & _PAGE_PRESENT
    slot = swp_offset(e)
    dev = A.reclaim.dev
    assert dev.count(slot) == (3 if sharing == "fork" else 2)   # the swap PTE(s) + the object's entry
    assert reclaim_check(a) == []
    before = events(a)
    seen: dict[str, Any] = {}

    def b_fault() -> bytes:
        B.switch_to(other_task)
        return B.load(va, PG)

    def at_new_cached(_name: str) -> None:
        if "b" in seen:
            return
        new = int(a.u64[dev.stab8 + slot]) >> 2       # A's folio, locked in the cache
        seen["pfn"] = new
        o = Other(B, b_fault).start()
        seen["b"] = o
        o.wait(A, lambda: o.blocked.is_set() and meta(a, new, 2) == 3, "took the cached folio and waited")
        assert not o.done.is_set()                    # B waits for the read A has not done
        assert meta(a, new, 0) & PG_swapcache
        seen["check"] = racing_check(a, new)

    hooks.set_point("swapin:new_cached", at_new_cached)
    got_a = A.load(va, PG)
    got_b = seen["b"].join(A)
    assert got_a == got_b == page_bytes(0, 3, 1)
    assert seen["check"] == []                        # SW1-3 with the folio in the cache
    d = delta(a, before)
    assert d["pswpin"] == 1 and d["pgmajfault"] == 1  # one read for both faults
    mm_b = B.current_mm()
    assert pfn_of(pte(A, A.current_mm(), va)) == pfn_of(pte(A, mm_b, va)) == seen["pfn"]
    assert slot_free(a, dev, slot)                    # no PTE or object names it: freed
    assert reclaim_check(a) == []
    for i in range(NPAGES):
        assert A.load(addr + i * PG, PG) == page_bytes(0, i, 1)
    finish(a, A, B)


# ------------------------------------------------------------------ (b) swap-out vs fault
def test_fault_finds_the_folio_being_reclaimed_in_the_swap_cache(rig) -> None:
    """B reclaims the folio and stops after try_to_unmap (A's PTE is a swap PTE, the
    object's entry a swap value, the folio in the swap cache, locked).  A faults on it:
    it must find the folio in the swap cache (no read) and wait for its lock; B's
    freeze then fails (A holds a reference), so B restores the object's entry and keeps
    the folio; A maps it again: same folio, data intact, slot freed."""
    a, A, B = rig()
    va = A.addr + 2 * PG  # type: ignore[attr-defined]
    pfn = pfn_of(pte(A, A.current_mm(), va))
    park = Park(B)
    hooks.set_point("vmscan:unmapped", park)
    before = events(a)
    rb = Other(B, lambda: reclaim_one(B, pfn)).start()
    rb.wait(A, park.at.is_set, "reached vmscan:unmapped")
    e = pte(A, A.current_mm(), va)
    assert e and not e & _PAGE_PRESENT
    slot = swp_offset(e)
    dev = A.reclaim.dev
    assert a.u64[dev.stab8 + slot] == pfn << 2 and dev.count(slot) == 2
    assert meta(a, pfn, 2) == 2                            # B's isolation + the cache's
    assert racing_check(a, pfn) == []
    fa = Other(A, lambda: A.load(va, PG)).start()
    spin_until(lambda: fa.blocked.is_set() and meta(a, pfn, 2) == 3, "A's fault took the cached folio", fa, rb)
    assert not fa.done.is_set()
    park.go.set()
    spin_until(lambda: rb.done.is_set() and fa.done.is_set(), "both finished", fa, rb)
    assert rb.result == 0                                  # kept: the fault's reference stopped the freeze
    assert fa.result == page_bytes(0, 2, 1)
    assert delta(a, before)["pswpin"] == 0 and delta(a, before)["pswpout"] == 1
    assert pfn_of(pte(A, A.current_mm(), va)) == pfn        # the same folio mapped back
    assert slot_free(a, dev, slot)
    assert reclaim_check(a) == []
    stop_all()
    A.store(va, page_bytes(0, 2, 2))
    assert A.load(va, PG) == page_bytes(0, 2, 2)
    finish(a, A, B)


@pytest.mark.parametrize("stale_tlb", [False, True])
def test_write_while_the_folio_goes_out(rig, stale_tlb: bool) -> None:
    """A writes the page while B reclaims it: after B's reference check and add_to_swap
    (the PTE still maps it: A's store walks and sets A/D), and with stale_tlb again
    through the TLB entry that store left, after B changed the PTE to a swap PTE
    (unmap:before_flush) but before B's shootdown.  No write may be lost: each lands in
    the folio before the flush completes, the copy is written after it, A's translation
    is gone before the folio is freed, and A faults the newest data back in."""
    a, A, B = rig()
    va = A.addr + 5 * PG  # type: ignore[attr-defined]
    key = A.tlb.key_base | (va >> 12)
    pfn = pfn_of(pte(A, A.current_mm(), va))
    park1, park2 = Park(B), Park(B)
    hooks.set_point("vmscan:swapcache", park1)
    hooks.set_point("unmap:before_flush", park2)
    before = events(a)
    rb = Other(B, lambda: reclaim_one(B, pfn)).start()
    rb.wait(A, park1.at.is_set, "reached vmscan:swapcache")
    A.store(va, page_bytes(0, 5, 7))                       # the PTE still maps it: no fault
    assert key in A.tlb.entries
    want = 7
    if stale_tlb:
        park1.go.set()
        rb.wait(A, park2.at.is_set, "reached unmap:before_flush")
        e = pte(A, A.current_mm(), va)
        assert e and not e & _PAGE_PRESENT and key in A.tlb.entries   # a stale translation
        A.store(va, page_bytes(0, 5, 8))                   # through it (dirty already: no walk)
        want = 8
    assert delta(a, before)["pgmajfault"] == 0
    park1.go.set()
    park2.go.set()
    assert rb.join(A) == 1                                 # reclaimed (A answered the shootdown)
    assert key not in A.tlb.entries                        # no translation left to the freed folio
    assert meta(a, pfn, 2) == 0
    e = pte(A, A.current_mm(), va)
    assert e and not e & _PAGE_PRESENT
    assert A.load(va, PG) == page_bytes(0, 5, want)        # the last write came back from swap
    assert delta(a, before)["pswpin"] == 1
    assert reclaim_check(a) == []
    finish(a, A, B)


# ------------------------------------------------------------------ (c) reclaim vs munmap
@pytest.mark.parametrize("point", ["vmscan:swapcache", "vmscan:unmapped"])
def test_reclaim_racing_with_munmap(rig, point: str) -> None:
    """B stops in the middle of reclaiming a folio (in the swap cache, still mapped; or
    unmapped with swap PTE and swap value); A unmaps the whole range meanwhile (the swap
    PTE and the object's swap value each drop their count; the folio only keeps B's
    and the cache's references).  B finishes: the folio is freed (no use after free:
    nothing maps or names it), its slot is freed with the cache's hold, SW1 holds
    throughout."""
    a, A, B = rig()
    addr, va = A.addr, A.addr + 4 * PG  # type: ignore[attr-defined]
    pfn = pfn_of(pte(A, A.current_mm(), va))
    park = Park(B)
    hooks.set_point(point, park)
    rb = Other(B, lambda: reclaim_one(B, pfn)).start()
    rb.wait(A, park.at.is_set, f"reached {point}")
    dev = A.reclaim.dev
    slot = int(a.u64[(a.off("pagemeta") >> 3) + pfn * 8 + 4]) - 1    # page->private = slot + 1
    assert slot > 0 and a.u64[dev.stab8 + slot] == pfn << 2
    assert racing_check(a, pfn) == []
    A.munmap(addr, NPAGES * PG)
    assert dev.count(slot) == 0                            # only the cache holds the slot now
    assert meta(a, pfn, 2) == 2 and meta(a, pfn, 3) == 0   # B's + the cache's references, unmapped
    assert racing_check(a, pfn) == []
    park.go.set()
    assert rb.join(A) == 1
    assert slot_free(a, dev, slot)
    assert meta(a, pfn, 2) == 0 and meta(a, pfn, 0) & (PG_buddy | PG_pcp)   # freed, once
    assert si_swapinfo(a)["inuse"] == 0
    finish(a, A, B)


# ------------------------------------------------------------------ (d) reclaim vs fork
def test_fork_while_reclaim_holds_the_unmapped_folio(rig) -> None:
    """B stops after unmapping the folio (swap PTE, swap value); A forks: the child's
    copy of the swap PTE takes one more count.  B finishes (the folio goes: only B and
    the cache held it).  Counts equal references (SW1) at every step; parent and child
    read the page back with one read between them (the second finds the swap cache)."""
    a, A, B = rig()
    va = A.addr + 6 * PG  # type: ignore[attr-defined]
    pfn = pfn_of(pte(A, A.current_mm(), va))
    park = Park(B)
    hooks.set_point("vmscan:unmapped", park)
    rb = Other(B, lambda: reclaim_one(B, pfn)).start()
    rb.wait(A, park.at.is_set, "reached vmscan:unmapped")
    slot = swp_offset(pte(A, A.current_mm(), va))
    dev = A.reclaim.dev
    assert dev.count(slot) == 2
    parent = A.current_task()
    child = A.fork()
    assert dev.count(slot) == 3                            # + the child's swap PTE
    assert racing_check(a, pfn) == []
    park.go.set()
    assert rb.join(A) == 1
    assert dev.count(slot) == 3 and reclaim_check(a) == []
    before = events(a)
    assert A.load(va, PG) == page_bytes(0, 6, 1)
    assert dev.count(slot) == 1                            # the child's PTE is left
    A.switch_to(child)
    assert A.load(va, PG) == page_bytes(0, 6, 1)
    assert delta(a, before)["pswpin"] == 1
    assert slot_free(a, dev, slot)
    A.store(va, page_bytes(0, 6, 9))                       # the child's write: a COW copy
    A.switch_to(parent)
    assert A.load(va, PG) == page_bytes(0, 6, 1)
    assert reclaim_check(a) == []
    A.switch_to(child)
    A.exit()
    A.switch_to(parent)
    finish(a, A, B)


def test_reclaim_while_fork_copies_the_mapping(rig) -> None:
    """A's fork stops after copying the VMA (the child's PTE maps the folio too, the
    child's VMA is already reachable by rmap); B reclaims the folio meanwhile: both PTEs
    become swap PTEs (rmap finds the child's), the folio goes.  After the fork both see
    the data, one read between them, counts equal references."""
    a, A, B = rig()
    va = A.addr + 1 * PG  # type: ignore[attr-defined]
    pfn = pfn_of(pte(A, A.current_mm(), va))
    done: dict[str, Any] = {}

    def at_copied(_name: str) -> None:
        if done:
            return
        assert meta(a, pfn, 3) == 2                        # parent's and child's PTEs
        rb = Other(B, lambda: reclaim_one(B, pfn)).start()
        done["r"] = rb.join(A)                             # A answers B's shootdowns meanwhile
        done["check"] = reclaim_check(a)

    hooks.set_point("fork:vma_copied", at_copied)
    parent = A.current_task()
    child = A.fork()
    assert done["r"] == 1 and done["check"] == []
    slot = swp_offset(pte(A, A.current_mm(), va))
    assert swp_offset(pte(A, _mm_of(a, child), va)) == slot
    dev = A.reclaim.dev
    assert dev.count(slot) == 3                            # two swap PTEs + the object's entry
    before = events(a)
    A.switch_to(child)
    assert A.load(va, PG) == page_bytes(0, 1, 1)
    A.switch_to(parent)
    assert A.load(va, PG) == page_bytes(0, 1, 1)
    assert delta(a, before)["pswpin"] == 1
    assert slot_free(a, dev, slot)
    assert reclaim_check(a) == []
    A.switch_to(child)
    A.exit()
    A.switch_to(parent)
    finish(a, A, B)


def _mm_of(a: Any, tid: int) -> int:
    return int(a.u64[(T.task_off(a, tid) + T.T_MM) >> 3]) - 1          # mm id + 1 (mm/vm/task.py)


# ------------------------------------------------------------------ (e) file fault vs reclaim + reuse
@pytest.mark.parametrize("kind", ["read", "cow", "shared"])
def test_file_fault_holds_its_folio_against_reclaim(rig, kind: str) -> None:
    """filemap_fault against reclaim and reuse of the folio it found (issue 9): A's fault
    on a cached, unmapped page of a file stops right after its page-cache lookup
    (fault:file_folio); B reclaims that folio and reads another page of the file, whose
    new folio would take the freed pfn (B's per-CPU list hands it back first).  The fault
    holds a reference from the lookup (filemap_get_folio) until its PTE is set or its
    copy made, so B's freeze fails and the folio stays: the read and shared faults map
    that very folio with no second read, and the private write fault (do_cow_fault)
    copies the file's page -- not whatever the pfn held next."""
    a, A, B = rig()
    seed, idx, j = 5, 2, 40
    fid = A.file_create("ff", 64 * PG, seed=seed)
    flags = M.MAP_SHARED if kind == "shared" else M.MAP_PRIVATE
    base = A.mmap(0, 64 * PG, RW, flags, fid)
    va = base + idx * PG
    B.files.get_page(fid, idx)                           # cached (readahead of 4), not mapped
    fobj = B.files.file_obj(fid)
    pfn = B.files.cached(fobj, idx)
    assert pfn >= 0 and B.files.cached(fobj, j) < 0
    B.reclaim.lru.lru_add_drain()
    park = Park(A)
    hooks.set_point("fault:file_folio", park)
    before = events(a)
    if kind == "read":
        fn: Callable[[], object] = lambda: A.load(va, PG)
    else:
        fn = lambda: A.store(va + 100, b"WRITTEN!")
    fa = Other(A, fn).start()
    spin_until(park.at.is_set, "A's fault looked the folio up", fa)
    held = meta(a, pfn, 2)
    reclaimed = reclaim_one(B, pfn)
    B.files.get_page(fid, j)                             # the reuse, had the folio been freed
    reused = B.files.cached(fobj, j) == pfn
    park.go.set()
    spin_until(fa.done.is_set, "A's fault finished", fa)
    if fa.error is not None:
        raise fa.error
    stop_all()
    want = bytearray(expected_page(fid, seed, idx))
    if kind != "read":
        want[100:108] = b"WRITTEN!"
    assert A.load(va, PG) == bytes(want)                 # the file's page, not page j's
    assert (reclaimed, reused) == (0, False), "reclaim freed the folio a fault was using"
    assert held == 2                                     # the cache's + the fault's
    assert delta(a, before)["pgmajfault"] == 0           # found in the cache once, not read again
    mapped = pfn_of(pte(A, A.current_mm(), va))
    assert (mapped == pfn) == (kind != "cow")            # COW: a private copy; else the folio
    assert B.files.cached(fobj, idx) == pfn
    finish(a, A, B)


def test_file_fault_never_sees_a_folio_half_inserted(rig) -> None:
    """A page-cache folio is published with its mapping and index already set
    (__filemap_add_folio): B reads a page of a file in and stops right after storing the
    folio in the file's tree (obj:inserted, object lock held); A's fault on that page
    finds it lock-free, takes a reference, re-checks that it is still the folio of that
    object at that index, and maps it -- with no lock and no retry.  Were the meta set
    after the store, every retry of A's fault would fail that check while B stays there
    (a preempted CPU: "still faults after 64 page faults" in reclaim-stream runs)."""
    a, A, B = rig()
    seed, idx = 6, 3
    fid = A.file_create("fh", 16 * PG, seed=seed)
    base = A.mmap(0, 16 * PG, M.PROT_READ, M.MAP_SHARED, fid)
    park = Park(B)
    hooks.set_point("obj:inserted", park)
    rb = Other(B, lambda: B.files.get_page(fid, idx)).start()
    spin_until(park.at.is_set, "B stored the folio", rb)
    fobj = A.files.file_obj(fid)
    pfn = A.files.cached(fobj, idx)
    assert pfn >= 0 and A.files.cached(fobj, idx + 1) < 0      # B is at its first page
    before = fold_vm_events(a)["pgfault"]
    assert A.load(base + idx * PG, PG) == expected_page(fid, seed, idx)
    assert fold_vm_events(a)["pgfault"] - before == 1           # one fault, no retry
    assert pfn_of(pte(A, A.current_mm(), base + idx * PG)) == pfn
    assert not rb.done.is_set()                                 # B was still inside its insert
    park.go.set()
    spin_until(rb.done.is_set, "B finished its read", rb)
    if rb.error is not None:
        raise rb.error
    finish(a, A, B)


# ------------------------------------------------------------------ (f) the OOM reaper vs a fault
@pytest.mark.parametrize("leaves", [True, False])
def test_oom_reaper_vs_a_fault_in_the_victims_vma(rig, monkeypatch, leaves: bool) -> None:
    """The reaper's MADV_DONTNEED write-locks each private VMA before its zap (a fault
    between the zap and page_remove would map a zapped folio that then leaves the tree),
    but it runs inside an allocation -- possibly a fault holding a VMA read lock -- so it
    only tries the lock, for up to REAP_WAIT_S for another CPU's victim.  B's task faults
    in its VMA and stops holding that VMA's read lock (fault:vma_locked) while A reaps
    B's mm.  `leaves`: B's fault finishes within the wait -- the reaper then zaps the
    whole VMA, page included; else the VMA is left alone (nothing freed, nothing broken)."""
    from aerosync.mm.reclaim import oom_kill

    a, A, B = rig()
    B.make_current(thread_only=True)
    B.switch_to(B.task_create("victim"))               # its own mm
    n = 16
    addr = B.mmap(0, n * PG, RW, ANON)
    for i in range(n - 1):
        B.store64(addr + i * PG, 100 + i)
    mm_b = B.current_mm()
    A.make_current()
    park = Park(B)
    hooks.set_point("fault:vma_locked", park)
    fb = Other(B, lambda: B.store64(addr + (n - 1) * PG, 7)).start()
    spin_until(park.at.is_set, "B's fault holds its VMA lock", fb)
    monkeypatch.setattr(oom_kill, "REAP_WAIT_S", 10.0 if leaves else 0.05)
    if leaves:
        threading.Timer(0.2, park.go.set).start()       # B's fault ends while A waits
    reaped = A.reclaim.oom._reap(mm_b)                 # the mmap lock was had (B's fault holds a VMA's)
    park.go.set()
    spin_until(fb.done.is_set, "B's fault finished", fb)
    if fb.error is not None:
        raise fb.error
    stop_all()
    hooks.clear_points()
    rss = T.get_mm_counter_sum(a.u64, T.mm_off(a, mm_b), T.MM_ANONPAGES, int(a.config["nr_cpus"]))
    assert reaped
    if leaves:
        assert rss == 0                                 # B's new page, mapped meanwhile, went too
    else:
        assert rss == n                                 # left alone, B's fault done meanwhile
    B.make_current(thread_only=True)
    got = [B.load64(addr + i * PG) for i in range(n)]
    assert got == ([0] * n if leaves else [100 + i for i in range(n - 1)] + [7])
    assert reclaim_check(a) == []
    A.make_current()
    finish(a, A, B)


def test_oom_reaper_unable_to_reap_a_write_locked_mm(rig, monkeypatch) -> None:
    """An mm whose mmap_lock another CPU holds for write through all the reaper's tries
    (MAX_OOM_REAP_RETRIES over REAP_WAIT_S, as oom_reap_task) is left alone, and the
    report says so in mm/oom_kill.c's words."""
    from aerosync.mm.reclaim import oom_kill

    a, A, B = rig()
    B.make_current(thread_only=True)
    victim = B.task_create("victim")
    B.switch_to(victim)                                 # its own mm
    addr = B.mmap(0, 8 * PG, RW, ANON)
    for i in range(8):
        B.store64(addr + i * PG, i)
    mo = T.mm_off(a, B.current_mm())
    B.locks.mmap_lock.down_write(mo + T.M_MMAP_LOCK)   # B in the middle of an mmap, say
    try:
        A.make_current()
        monkeypatch.setattr(oom_kill, "REAP_WAIT_S", 0.05)
        text = A.reclaim.oom._kill(victim)
    finally:
        B.make_current(thread_only=True)
        B.locks.mmap_lock.up_write(mo + T.M_MMAP_LOCK)
    assert re.search(r"\noom_reaper: unable to reap pid:\d+ \(victim\)\n$", text), text[-200:]
    assert T.get_mm_counter_sum(a.u64, mo, T.MM_ANONPAGES, int(a.config["nr_cpus"])) == 8   # untouched
    A.make_current()
    finish(a, A, B)
