"""Crash soak: mixed page, slab and cross-CPU-free work that loses nothing when a CPU dies.

Every CPU allocates pages (buddy/PCP, mixed orders) and kmalloc objects, keeps up to
`max_held` of them, and frees each either itself or on another CPU (the item travels
through that CPU's inbound ring).  Unlike page_storm or larson, a CPU keeps what it
holds in the arena, not in Python lists, and logs each move of an item (mm/intent.py
wl_* records), so when it is killed at any fault point the coordinator's recovery
(mm/recovery.py) calls `recover` here and every item ends up exactly once: in a live
CPU's table, in a ring, free, or freed by `recover` ("returned by recovery").

Held table (section "soakheld"): a header line (the page and object baselines taken at
set-up), then per CPU `max_held` u64 slots, 0 = empty.  An entry names its item and
carries a stamp::

    63          36 35                        2 1 0
    +-------------+---------------------------+---+
    | seq (28)    | payload (34)              |kind|   kind 1 page, 2 object
    +-------------+---------------------------+---+
    payload: page pfn << 4 | order; object: address - VBASE

The entry itself is the stamp written into the item (first and last word of every page,
first word of an object) and checked before the item is freed: an item handed to two
owners at once is overwritten by the second and counted `corrupt`.  A page's order is
in its entry, so anyone can free it.

Rings (section "soakring", one per consumer CPU; layout of workers/workloads/_pages.py,
protocol here): a producer claims slot `tail` with a CAS, records the claim, stores the
entry's complement, records that, clears its held slot; the consumer reads a non-zero
slot, records it, zeroes the slot and stores head + 1, records that, frees the item.
Recovery rolls a claimed but unwritten slot forward (a hole would stop the consumer
for good) and frees a popped item the dead consumer had not freed.

Operation = one allocation attempt plus, when the CPU holds `max_held` items, one free.
Per batch (not in the timed single op) the CPU first frees what its ring holds.
Counters: allocs, frees, alloc_fail, remote_frees (sent to another CPU), corrupt,
page_allocs, obj_allocs, ring_full (a send fell back to a local free).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm import intent as I
from aerosync.mm.pmm import gfp as G
from aerosync.mm.pmm.page_alloc import MM
from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.slab_common import VBASE
from aerosync.mm.slab.slub import Slub
from aerosync.params import CACHE_LINE, PAGE_META_SIZE, PAGE_SHIFT
from workers.workloads._common import counter_index
from workers.workloads._pages import RING_BYTES, RING_SLOTS, ring_section

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover", "decode"]

COUNTERS: tuple[str, ...] = ("allocs", "frees", "alloc_fail", "remote_frees", "corrupt", "page_allocs",
                             "obj_allocs", "ring_full")
HELD, RING = "soakheld", "soakring"
KIND_PAGE, KIND_OBJ = 1, 2
SEQ_MASK = (1 << 28) - 1
PAYLOAD_MASK = (1 << 34) - 1
ONES = (1 << 64) - 1
MAX_HELD = 4096
SHEAF_CACHE = "crash_soak"
_OP_PUSH, _OP_POP, _OP_FREE = I.OP["wl_push"], I.OP["wl_pop"], I.OP["wl_free"]
_P = I.POINT_IDS
P_GOT, P_UNHELD, P_FREED = _P["wl:alloc:got"], _P["wl:free:unheld"], _P["wl:free:done"]
P_CLAIMED, P_PUBLISHED = _P["wl:push:claimed"], _P["wl:push:published"]
P_TAKEN, P_POP_FREED = _P["wl:pop:taken"], _P["wl:pop:freed"]
ARG, STEP = I.ARG, I.STEP


@dataclass(frozen=True, slots=True)
class Params:
    orders: tuple[int, ...] = (0, 0, 0, 0, 1, 2, 3)   # page orders, drawn uniformly
    sizes: tuple[int, ...] = (16, 64, 96, 192, 512, 2048)   # kmalloc sizes, drawn uniformly
    page_pct: int = 50            # % of allocations that are pages (the rest kmalloc objects)
    max_held: int = 128           # items a CPU holds before each allocation forces a free
    cross_cpu_pct: int = 25       # % of frees sent to another CPU's ring
    movable_pct: int = 0          # % of page allocations that are GFP_HIGHUSER_MOVABLE (fallbacks)
    node_pct: int = 0             # % of object allocations by kmalloc_node on a random node
    sheaf_capacity: int = 0       # > 0: half the objects from a cache "crash_soak" with per-CPU
                                  #       sheaves of this capacity ([slab] percpu_sheaves)
    verify: bool = True           # stamp every item and check it before the free

    def validate(self) -> str | None:
        if not self.orders or any(not 0 <= o <= 10 for o in self.orders):
            return f"orders = {list(self.orders)}: a non-empty list of orders 0..10"
        if not self.sizes or any(not 8 <= s <= 8192 for s in self.sizes):
            return f"sizes = {list(self.sizes)}: a non-empty list of kmalloc sizes 8..8192"
        if not 1 <= self.max_held <= MAX_HELD:
            return f"max_held = {self.max_held}: allowed 1..{MAX_HELD}"
        if not 0 <= self.sheaf_capacity <= 64:
            return f"sheaf_capacity = {self.sheaf_capacity}: allowed 0..64"
        for k in ("page_pct", "cross_cpu_pct", "movable_pct", "node_pct"):
            if not 0 <= getattr(self, k) <= 100:
                return f"{k} = {getattr(self, k)}: a percentage 0..100"
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return [SectionSpec(HELD, CACHE_LINE + nr_cpus * params.max_held * 8), ring_section(nr_cpus, RING)]


def _held0(arena: Arena, cpu: int, max_held: int) -> int:
    """u64 index of `cpu`'s first held slot."""
    return (arena.off(HELD) + CACHE_LINE) // 8 + cpu * max_held


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    """Create the sheaf cache when asked, then record the baselines "nothing lost" is
    measured against (boot's own pages and objects), before any worker starts."""
    from aerosync.mm.recovery import accounting
    from aerosync.mm.slab.slab_common import kmem_cache_create, kmem_cache_lookup

    if params.sheaf_capacity and kmem_cache_lookup(arena, SHEAF_CACHE) < 0:
        kmem_cache_create(arena, SHEAF_CACHE, 64, sheaf_capacity=params.sheaf_capacity)

    acc = accounting(arena)
    h = arena.off(HELD) >> 3
    arena.u64[h] = acc["pages_allocated"] - _kernel_vm_settled(arena)
    arena.u64[h + 1] = acc["objects_in_use"]


def _kernel_vm_settled(arena: Arena) -> int:
    """The kernel's own virtual memory, which no CPU loses: vmalloc's lazily freed areas
    (the tasks' kernel stacks) purged, so their vmap_area records go back to SLUB; returns
    the pages of init_mm's page tables, which vmalloc grows and keeps (as Linux does) and
    "lost" leaves out.  0 on a machine without virtual memory."""
    from aerosync.mm.vm.vmalloc import vmalloc_ready

    if not vmalloc_ready(arena):
        return 0
    from aerosync.mm.vm import mm_types as T
    from aerosync.mm.vm.vm import VM

    vm = VM(arena, 0)
    try:
        vm.kernel.vmalloc.purge_vmap_area_lazy()
    finally:
        vm.leave()
    return arena.u64[(T.mm_off(arena, 0) + T.M_PGTABLES_BYTES) >> 3] >> 12


def decode(entry: int) -> tuple[int, int, int]:
    """(kind, a, b) of an entry: (KIND_PAGE, pfn, order) or (KIND_OBJ, address, 0)."""
    kind, payload = entry & 3, (entry >> 2) & PAYLOAD_MASK
    if kind == KIND_PAGE:
        return kind, payload >> 4, payload & 15
    return kind, payload + VBASE, 0


class _Items:
    """Stamp, check and free entries, as one CPU context (workers and recovery alike)."""

    __slots__ = ("stamp", "check", "free")

    def __init__(self, arena: Arena, mm: MM, slub: Slub) -> None:
        q = arena.u64
        phys = arena.off("physmem") >> 3
        words = (1 << PAGE_SHIFT) >> 3
        voff8 = (VBASE - arena.off("physmem")) >> 3
        free_pages = mm.free_pages
        kfree = Kmalloc(slub).kfree

        def stamp(entry: int) -> None:
            kind, payload = entry & 3, (entry >> 2) & PAYLOAD_MASK
            if kind == KIND_PAGE:
                i = phys + ((payload >> 4) << (PAGE_SHIFT - 3))
                for _ in range(1 << (payload & 15)):
                    q[i] = entry
                    q[i + words - 1] = entry
                    i += words
            else:
                q[((payload + VBASE) >> 3) - voff8] = entry

        def check(entry: int) -> bool:
            kind, payload = entry & 3, (entry >> 2) & PAYLOAD_MASK
            if kind == KIND_PAGE:
                i = phys + ((payload >> 4) << (PAGE_SHIFT - 3))
                for _ in range(1 << (payload & 15)):
                    if q[i] != entry or q[i + words - 1] != entry:
                        return False
                    i += words
                return True
            return q[((payload + VBASE) >> 3) - voff8] == entry

        def free(entry: int) -> int:
            """Free the item; returns its kind."""
            kind, payload = entry & 3, (entry >> 2) & PAYLOAD_MASK
            if kind == KIND_PAGE:
                free_pages(payload >> 4, payload & 15)
            else:
                kfree(payload + VBASE)
            return kind

        self.stamp, self.check, self.free = stamp, check, free


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    mm = MM(arena, cpu)
    slub = Slub(arena, cpu, mm=mm)
    km = Kmalloc(slub)
    kmalloc, kmalloc_node = km.kmalloc, km.kmalloc_node
    sheaf_alloc = slub.cache(SHEAF_CACHE).alloc if params.sheaf_capacity else None
    node_pct, nr_nodes = params.node_pct, mm.nr_nodes
    items = _Items(arena, mm, slub)
    stamp, check, free_item = items.stamp, items.check, items.free
    lg = mm.log
    begin, end, fp = lg.begin, lg.end, lg.fp
    ho, pend = lg.handoff, lg.pending
    at, q = arena.atomic, arena.u64
    load, store, cas = at.load64, at.store64, at.cas64
    nr_cpus = int(arena.config["nr_cpus"])
    alloc_pages = mm.alloc_pages
    orders, sizes, verify = params.orders, params.sizes, params.verify
    page_pct, max_held, movable_pct = params.page_pct, params.max_held, params.movable_pct
    kernel, movable = G.GFP_KERNEL, G.GFP_HIGHUSER_MOVABLE
    cross = params.cross_cpu_pct if nr_cpus > 1 else 0
    choice, randrange = rng.choice, rng.randrange
    c0 = counter_index(arena, cpu, 0)
    c_alloc, c_free, c_fail, c_remote, c_corrupt, c_pages, c_objs, c_full = range(c0, c0 + 8)
    held0 = _held0(arena, cpu, max_held)
    rbase = arena.off(RING)
    in_head = rbase + cpu * RING_BYTES
    in_slots = (in_head + 2 * CACHE_LINE) >> 3
    mask = RING_SLOTS - 1
    others = [c for c in range(nr_cpus) if c != cpu]
    # Python's view of the held table (the arena's is the truth; a new worker starts empty:
    # recovery or the last teardown left this CPU's table empty)
    used: list[int] = []
    pos: list[int] = [-1] * max_held            # slot -> index in `used`
    free_slots = list(range(max_held - 1, -1, -1))
    seq = [int(q[c_alloc]) & SEQ_MASK]

    def take_slot(i: int) -> None:
        pos[i] = len(used)
        used.append(i)

    def drop_slot(i: int) -> None:
        j = pos[i]
        last = used.pop()
        if last != i:
            used[j] = last
            pos[last] = j
        pos[i] = -1
        free_slots.append(i)

    def free_entry(entry: int) -> None:
        if verify and not check(entry):
            q[c_corrupt] += 1
        free_item(entry)
        q[c_free] += 1

    def release(i: int) -> None:
        """Free held slot i: to another CPU's ring (cross_cpu_pct), else here."""
        entry = q[held0 + i]
        if cross and randrange(100) < cross and push(i, entry, choice(others)):
            drop_slot(i)
            return
        r = begin(_OP_FREE, i, entry)
        q[held0 + i] = 0
        q[r + STEP] = 1
        if fp:
            fp(P_UNHELD)
        drop_slot(i)
        free_entry(entry)
        q[r + STEP] = 2
        if fp:
            fp(P_FREED)
        end(r)

    def push(i: int, entry: int, to: int) -> bool:
        hd = rbase + to * RING_BYTES
        tl = hd + CACHE_LINE
        r = begin(_OP_PUSH, i, entry, to)
        t = load(tl)
        while True:
            if t - load(hd) >= RING_SLOTS:
                end(r)
                q[c_full] += 1
                return False
            q[r + ARG + 3] = t                 # the claim tried: recovery reads the ring's state
            seen = cas(tl, t, t + 1)
            if seen == t:
                break
            t = seen
        q[r + STEP] = 1
        if fp:
            fp(P_CLAIMED)
        store(hd + 2 * CACHE_LINE + ((t & mask) << 3), entry ^ ONES)
        q[r + STEP] = 2
        if fp:
            fp(P_PUBLISHED)
        q[held0 + i] = 0
        end(r)
        q[c_remote] += 1
        return True

    def drain_ring() -> None:
        h = load(in_head)
        while True:
            v = q[in_slots + (h & mask)]
            if not v:
                break
            entry = v ^ ONES
            r = begin(_OP_POP, cpu, h, entry)
            q[in_slots + (h & mask)] = 0
            h += 1
            store(in_head, h)
            q[r + STEP] = 1
            if fp:
                fp(P_TAKEN)
            free_entry(entry)
            q[r + STEP] = 2
            if fp:
                fp(P_POP_FREED)
            end(r)

    def allocate() -> None:
        i = free_slots.pop()
        s = seq[0] = (seq[0] + 1) & SEQ_MASK
        q[ho] = 0                              # open the hand-off window (mm/intent.py)
        q[pend] = i + 1
        if randrange(100) < page_pct:
            order = choice(orders)
            pfn = alloc_pages(movable if movable_pct and randrange(100) < movable_pct else kernel, order)
            if pfn < 0:
                q[pend] = 0
                free_slots.append(i)
                q[c_fail] += 1
                return
            entry = s << 36 | (pfn << 4 | order) << 2 | KIND_PAGE
            q[c_pages] += 1
        else:
            if sheaf_alloc is not None and randrange(2):
                addr = sheaf_alloc()
            elif node_pct and randrange(100) < node_pct:
                addr = kmalloc_node(choice(sizes), randrange(nr_nodes))
            else:
                addr = kmalloc(choice(sizes))
            if not addr:
                q[pend] = 0
                free_slots.append(i)
                q[c_fail] += 1
                return
            entry = s << 36 | (addr - VBASE) << 2 | KIND_OBJ
            q[c_objs] += 1
        if verify:
            stamp(entry)
        q[held0 + i] = entry                   # take, record -- then a point
        q[pend] = 0
        take_slot(i)
        q[c_alloc] += 1
        if fp:
            fp(P_GOT)

    def batch(n: int) -> None:
        if n > 1:
            drain_ring()
        for _ in range(n):
            if len(used) >= max_held:
                release(used[randrange(len(used))])
            allocate()

    def teardown() -> None:
        for i in list(used):
            entry = q[held0 + i]
            r = begin(_OP_FREE, i, entry)
            q[held0 + i] = 0
            q[r + STEP] = 1
            drop_slot(i)
            free_entry(entry)
            end(r)
        drain_ring()
        mm.drain_local_pages()

    batch.teardown = teardown  # type: ignore[attr-defined]
    return batch


def recover(arena: Arena, params: Params, cpu: int, records: list[tuple[I.Record, bool]], mm: MM,
            slub: Slub) -> dict[str, int]:
    """The coordinator's hook (mm/recovery.py WorkloadRecover) for dead `cpu`: resolve its
    open wl_* records and its open hand-off window, then free everything its held table
    names.  Returns the pages and objects freed (returned by recovery).

    A death between fault points (a SIGKILL from outside) leaves a record a step behind
    the state -- a held slot cleared at step 0, a ring claim made at step 0, a free done
    at step 1 -- so every decision reads the state: an item no table holds any more is
    given back only if it is still allocated and no held table or ring names it (a free
    that finished, and a live CPU that allocated the item since, both leave it alone);
    a ring position claimed (head <= pos < tail) and still empty is the dead CPU's
    claim, since every live CPU is at a batch boundary."""
    from aerosync.mm.pmm.page import P_ORDER
    from aerosync.mm.pmm.recover import plain_allocated
    from aerosync.mm.slab.recover import object_free, slot_object

    items = _Items(arena, mm, slub)
    q = arena.u64
    held0 = _held0(arena, cpu, params.max_held)
    got = {"pages": 0, "objects": 0}
    rbase = arena.off(RING)
    mask = RING_SLOTS - 1

    def give_back(entry: int) -> None:
        kind = items.free(entry)
        got["pages" if kind == KIND_PAGE else "objects"] += 1

    def allocated(entry: int) -> bool:
        kind, a, order = decode(entry)
        if kind == KIND_PAGE:
            return plain_allocated(arena, a, order)
        return object_free(arena, a) is False

    def unheld(entry: int) -> None:
        """An item the dead CPU had taken out of its table or ring: give it back unless
        its free finished or it is someone's now."""
        if decode(entry)[:2] not in named and allocated(entry):
            give_back(entry)

    for rec, _inner in records:
        a, step = rec.args, rec.step
        if rec.op == _OP_PUSH:                 # slot, entry, to, pos
            hd = rbase + a[2] * RING_BYTES
            slot = ((hd + 2 * CACHE_LINE) >> 3) + (a[3] & mask)
            if q[hd >> 3] <= a[3] < q[(hd + CACHE_LINE) >> 3] and not q[slot]:
                arena.atomic.store64(slot << 3, a[1] ^ ONES)   # claimed, not written: a hole stops the ring
                step = 1
            if step >= 1 and q[held0 + a[0]] == a[1]:
                q[held0 + a[0]] = 0            # the ring owns it now
    named = _named(arena, params)
    for rec, _inner in records:
        a, step = rec.args, rec.step
        if rec.op == _OP_POP:                  # ring, pos, entry
            hd = rbase + a[0] * RING_BYTES
            head = q[hd >> 3]                  # the dead CPU zeroes the slot, then moves head
            if step == 0 and (head > a[1] or q[((hd + 2 * CACHE_LINE) >> 3) + (a[1] & mask)] == 0):
                if head == a[1]:
                    arena.atomic.store64(hd, a[1] + 1)          # taken, head not yet moved
                step = 1
            if step == 1:
                unheld(a[2])
        elif rec.op == _OP_FREE:               # slot, entry
            if step == 0 and q[held0 + a[0]] != a[1]:
                step = 1                       # unheld, its step not yet stored
            if step == 1:
                unheld(a[1])
        # step 1: the free may have begun -- an inner record it left was resolved first
        # (mm/recovery.py), so the item's state says whether it finished; step 0: the
        # ring slot / held slot still has it; step 2: freed
    for _pending, item in I.read_handoff(arena, cpu):
        kind, x = I.decode_item(arena, item)
        if kind == I.ITEM_PAGE:
            entry = (x << 4 | arena.u8[arena.off("pagemeta") + x * PAGE_META_SIZE + P_ORDER]) << 2 | KIND_PAGE
        elif kind == I.ITEM_SLOT and (addr := slot_object(arena, x)) is not None:
            entry = (addr - VBASE) << 2 | KIND_OBJ
        else:
            continue                           # the allocator had named nothing yet
        if decode(entry)[:2] not in named and allocated(entry):
            give_back(entry)                   # taken, not yet in its slot
    for i in range(params.max_held):
        entry = q[held0 + i]
        if entry:
            q[held0 + i] = 0
            give_back(entry)
    return got


def _named(arena: Arena, params: Params) -> set[tuple[int, int]]:
    """(kind, pfn or address) of every item a held table or a ring names (world stopped)."""
    q = arena.u64
    nr_cpus = int(arena.config["nr_cpus"])
    out = set()
    h0 = _held0(arena, 0, params.max_held)
    for e in q[h0 : h0 + nr_cpus * params.max_held].tolist():
        if e:
            out.add(decode(e)[:2])
    for c in range(nr_cpus):
        s0 = (arena.off(RING) + c * RING_BYTES + 2 * CACHE_LINE) >> 3
        for v in q[s0 : s0 + RING_SLOTS].tolist():
            if v:
                out.add(decode(v ^ ONES)[:2])
    return out


def report(arena: Arena, params: Params, result: dict) -> dict:
    """Free what is still queued in the rings (every worker has left: cpu 0's lists are
    ours), vmalloc's lazy areas purged, then the counters, and what was lost: pages and
    objects neither free nor in use at the set-up baseline (init_mm's page tables aside)."""
    from aerosync.mm.recovery import accounting

    nr_cpus = len(result["cpus"])
    mm = MM(arena, 0)
    slub = Slub(arena, 0, mm=mm)
    items = _Items(arena, mm, slub)
    q = arena.u64
    left = 0
    for c in range(nr_cpus):
        base = arena.off(RING) + c * RING_BYTES
        h = q[base >> 3]
        slots = (base + 2 * CACHE_LINE) >> 3
        while q[slots + (h & (RING_SLOTS - 1))]:
            i = slots + (h & (RING_SLOTS - 1))
            items.free(q[i] ^ ONES)
            q[i] = 0
            h += 1
            left += 1
        q[base >> 3] = h
    for c in range(nr_cpus):                   # a CPU that stopped dead (on_cpu_death = "stop")
        held0 = _held0(arena, c, params.max_held)
        for i in range(params.max_held):
            if q[held0 + i]:
                items.free(q[held0 + i])
                q[held0 + i] = 0
                left += 1
    kernel_pt = _kernel_vm_settled(arena)
    mm.drain_local_pages()
    for kc in slub._caches.values():
        kc.flush_cpu(0)
    tot: dict[str, Any] = {k: sum(c["counters"][k] for c in result["cpus"]) for k in COUNTERS}
    acc = accounting(arena)
    h = arena.off(HELD) >> 3
    tot["ring_leftovers_freed"] = left
    tot["lost_pages"] = acc["pages_allocated"] - kernel_pt - q[h]
    tot["lost_objects"] = acc["objects_in_use"] - q[h + 1]
    return tot
