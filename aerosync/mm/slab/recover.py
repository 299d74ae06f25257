"""Repairing SLUB after a simulated CPU died inside it: chains, objects and slabs put back.

Models: slub_cpu_dead() (the dead CPU's cpu slab, partials, magazine and sheaves flushed
by another CPU: mm/cpuhp.py), plus what Linux never needs -- undoing or finishing a
slow path a CPU stopped in.  Unit: a dead CPU; the machine stopped (mm/recovery.py:
every live CPU parked, holding nothing).  Acts through a Slub handle of the dead CPU
(its statistics take what recovery does).

The dead CPU's records (mm/slab/slub.py writes them; mm/intent.py has the protocol),
resolved innermost first.  "Splice" = put a chain of free objects taken off a slab back
on that slab's freelist and unfreeze it (deactivate_slab's CAS, done with the world
stopped) -- an empty chain is no splice: the slab may be public already and a live
CPU's by now (test_crash_interleave.py); "free" = __slab_free of one object without
counting it (it was counted as freed already, or never counted as allocated):
  slab_new        step 1 (pages allocated, slab not set up): the pages are freed; step 0:
                  the block its hand-off window names, if handed out, freed.
                  step 2 (set up, counted, on no list): left to the scan below.
  slab_discard    step 1 (uncounted): metadata cleared and pages freed (rolled forward);
                  step 2 (cleared): pages freed unless the free is under way (an inner
                  record is open).
  slab_alloc_slow step 1: splice chain a2 back to slab a1 (unless deactivate_slab, the
                  inner record, has it; or install() made a1 the dead CPU's c->slab
                  already -- killed from outside -- then as step 3 with the chain's
                  first object); step 3: free the object a3 it handed out (its
                  caller never got it, nothing was counted); step 2: scan; step 0
                  naming a new slab frozen full and nobody's c->slab (killed from
                  outside before hold()): splice its chain from object 0; step 4
                  (detach() under way) with c->slab no longer a1: chain a2 out of
                  the cpu word if still there, and spliced; step 5 (get_freelist()
                  under way): splice a2 unless it is still on a1's freelist.
  slab_deactivate step 0: splice (the chain never got back).
  slab_get_partial step 2: splice the frozen slab's chain; step 3 (freeze under way):
                  the same unless a3 is still on the slab's freelist.
  slab_free       step 0: free the object unless it is on its slab's freelist already.
  slab_mag_flush  step s >= 1: free the spill's objects s-1.. (s.. when the inner
  slab_sheaf_flush  slab_free of object s-1 is open: it finishes that one; slab_free
                  stores s + 1 before its record ends).  A magazine flush killed
                  between fault points at step 0 (phase a2): phase 1, the magazine put
                  back as it was; phase 2, its count cut, then as step 1.
  slab_sheaf_refill  taking: the sheaf's size := have + step (rolled forward; a per-CPU
                  sheaf's objects uncounted as allocations); giving back after a
                  failure (REFILL_ROLLBACK): the step objects left are freed (counted).
  slab_put_partials  nothing: the scan lists every slab of its chain.
  slab_debug_free step 0: free the object unless on its freelist (step 1: done).
  slab_pcs_free   step 0 (not pushed yet: a sheaf swap was under way): free the object
                  (counted); step 1 (on the main sheaf): count the free it was.
Then `return_caller_sheaves` frees what the dead CPU's caller-owned sheaves (prefill
API) still hold (counted frees: their objects count as allocated), and -- after the CPU
went offline -- `fsck` puts back what is still in flight, from state alone:
  * per-CPU sheaves in no place (not a CPU's main or spare, on no barn list): the dead
    CPU had one in hand between the barn and its pcs word (a refill, a flush, a swap):
    its objects go back to their slabs, the record back to the pool;
  * slabs: a frozen slab that is no CPU's c->slab is unfrozen; a slab with free objects
    (or empty) on no list -- a CPU's or its node's -- goes to the tail of its node's
    partial list; a full one is marked on no list; node partial lists' links and
    nr_partial, and nr_slabs / total_objects, are recounted.
S5 (the accounting identity) holds afterwards: every object is on a freelist, in a
magazine or sheaf, or allocated (allocations minus frees).
"""

from __future__ import annotations

from array import array
from typing import Any

from aerosync.arena.layout import INTENT_CTX
from aerosync.mm import intent as I
from aerosync.mm.pmm.page import PG_slab, PG_tail
from aerosync.mm.slab.slab_common import (
    _LO,
    FROZEN,
    K_FREELIST_TID,
    K_LOCK,
    K_MAG,
    K_MAG_COUNT,
    K_NR_PARTIAL,
    K_PARTIAL,
    K_PCS,
    K_PCS_LOCK,
    K_SLAB,
    K_STATS,
    LIST_CPU_PARTIAL,
    LIST_CPU_SLAB,
    LIST_NODE_PARTIAL,
    LIST_NONE,
    M_CACHE,
    M_LIST,
    M_NEXT,
    M_NID,
    M_PREV,
    M_WORD,
    N_BARN_EMPTY,
    N_BARN_FULL,
    N_HEAD,
    N_LOCK,
    N_NR_PARTIAL,
    N_NR_SLABS,
    N_TAIL,
    N_TOTAL_OBJS,
    NIL32,
    NIL64,
    NR_STATS,
    SH_CACHE,
    SH_NEXT,
    SH_OBJS,
    SH_SIZE,
    SH_STATE,
    SHEAF_PCS,
    SHEAF_REC,
    SMETA,
    ST_ALLOC,
    ST_FREE,
    VBASE,
    _cpu_off,
    _geo,
    _node_off,
    cache_info,
    live_caches,
)
from aerosync.mm.slab.slub import REFILL_PCS, REFILL_ROLLBACK
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT

__all__ = ["reset_cpu_locks", "recover_record", "return_caller_sheaves", "fsck", "object_free", "slot_object",
           "recount_stats", "rebuild_node_partials"]

_OP = I.OP
_PMW = PAGE_META_SIZE >> 2


def reset_cpu_locks(arena: Any, cpu: int) -> None:
    """The dead CPU's c->lock and pcs lock of every live cache: free (their holder died;
    only it and flushers of it ever take them)."""
    _, nr_cpus, _, mag, _ = _geo(arena)
    for cid in live_caches(arena):
        ko = _cpu_off(arena, cid, cpu, nr_cpus, mag)
        arena.atomic.store64(ko + K_LOCK, 0)
        arena.atomic.store64(ko + K_PCS_LOCK, 0)


class _Cache:
    """What the repairs need of one cache: geometry and freelist access."""

    def __init__(self, arena: Any, cid: int) -> None:
        info = cache_info(arena, cid)
        self.arena, self.cid = arena, cid
        self.size, self.objects = info["size"], info["objects"]
        self.red_left = info["red_left_pad"]
        self.fpo = info["red_left_pad"] + info["offset"]
        self.phys = arena.off("physmem")
        self.sm = arena.off("slabmeta")

    def fp(self, pfn: int, idx: int) -> int:
        return self.arena.u32[(self.phys + (pfn << PAGE_SHIFT) + idx * self.size + self.fpo) >> 2]

    def set_fp(self, pfn: int, idx: int, nxt: int) -> None:
        self.arena.u32[(self.phys + (pfn << PAGE_SHIFT) + idx * self.size + self.fpo) >> 2] = nxt

    def word(self, pfn: int) -> int:
        return self.arena.u64[(self.sm + pfn * SMETA + M_WORD) >> 3]

    def set_word(self, pfn: int, w: int) -> None:
        self.arena.atomic.store64(self.sm + pfn * SMETA + M_WORD, w)

    def freelist(self, pfn: int, head: int) -> list[int]:
        out, i, n = [], head, (self.word(pfn) >> 48) & 0x7FFF
        while i != NIL32 and i < n and len(out) <= n:
            out.append(i)
            i = self.fp(pfn, i)
        return out

    def splice(self, pfn: int, chain: int) -> int:
        """A chain taken off slab pfn back on its freelist, the slab unfrozen; returns its
        length.  An empty chain changes nothing: the dead CPU held no object of the slab,
        and the slab may be public already (get_freelist() found it full and unfroze it:
        a live CPU may have frozen it as its own since); one left frozen with no owner
        is the fsck's (unfrozen and relisted there)."""
        objs = self.freelist(pfn, chain)
        if not objs:
            return 0
        w = self.word(pfn)
        inuse, n = (w >> 32) & 0xFFFF, (w >> 48) & 0x7FFF
        self.set_fp(pfn, objs[-1], w & _LO)
        self.set_word(pfn, chain | (inuse - len(objs)) << 32 | n << 48)
        return len(objs)

    def obj(self, addr: int) -> tuple[int, int]:
        """(slab head pfn, index) of an object address."""
        pm32 = self.arena.off("pagemeta") >> 2
        pfn = (addr - VBASE) >> PAGE_SHIFT
        if self.arena.u32[pm32 + pfn * _PMW] & PG_tail:
            pfn = self.arena.u32[pm32 + pfn * _PMW + 6]
        return pfn, (addr - VBASE - (pfn << PAGE_SHIFT) - self.red_left) // self.size


def recover_record(arena: Any, slub: Any, rec: I.Record, spill: list[int], inner_open: bool,
                   inner: I.Record | None = None) -> dict[str, int]:
    """Roll one of the dead CPU's slab records forward or back (module docstring);
    `inner`: the record open just above it, if any.  Returns the pages and objects it
    gave back."""
    a, s, op = rec.args, rec.step, rec.op
    cid = a[0]
    if cid not in live_caches(arena):
        return {}
    c = _Cache(arena, cid)
    kc = slub.cache(cid)
    got = {"pages": 0, "objects": 0}

    def free_obj(addr: int) -> None:
        pfn, idx = c.obj(addr)
        kc.free_slow(pfn, idx, False)
        got["objects"] += 1

    if op == _OP["slab_new"]:
        if s == 1:
            got["pages"] += _free_slab_pages(arena, slub, a[1], a[2])
        elif s == 0:
            got["pages"] += _new_slab_handed_out(arena, slub, rec.ctx)
    elif op == _OP["slab_discard"]:
        if s == 1 or (s == 2 and not inner_open):
            got["pages"] += _free_slab_pages(arena, slub, a[1], a[2])
    elif op == _OP["slab_alloc_slow"]:
        if s == 1 and not inner_open and _installed(arena, cid, slub.cpu, a[1]):
            # killed from outside inside handout(): the chain is the cpu freelist now,
            # its first object handed out -- as step 3
            free_obj(VBASE + (a[1] << PAGE_SHIFT) + a[2] * c.size + c.red_left)
        elif s == 1 and not inner_open:
            got["objects"] += c.splice(a[1], a[2])
        elif s == 0 and not inner_open and a[2] == 0 and _frozen_unheld_new(arena, c, a[1]):
            # killed from outside between a new slab's freeze and hold(): its whole
            # freelist from object 0 is the chain in flight
            got["objects"] += c.splice(a[1], 0)
        elif s == 3:
            free_obj(a[3])
        elif s == 4 and not _installed(arena, cid, slub.cpu, a[1]):
            # detach() under way, c->slab already NIL: the chain a2 is in the cpu word
            # still, or taken by the CAS -- either way in flight
            if a[2] != NIL32:
                _cpu_word_drop(arena, cid, slub.cpu, a[2])
                got["objects"] += c.splice(a[1], a[2])
        elif s == 5 and a[2] != NIL32 and a[2] not in c.freelist(a[1], c.word(a[1]) & _LO):
            got["objects"] += c.splice(a[1], a[2])      # get_freelist()'s CAS took it
    elif op == _OP["slab_deactivate"]:
        if s == 0:
            got["objects"] += c.splice(a[1], a[2])
    elif op == _OP["slab_get_partial"]:
        if s == 2 or (s == 3 and a[3] != NIL32 and a[3] not in c.freelist(a[2], c.word(a[2]) & _LO)):
            got["objects"] += c.splice(a[2], a[3])      # (step 3: freeze_locked()'s CAS took it)
    elif op == _OP["slab_free"]:
        if s == 0 and a[2] not in c.freelist(a[1], c.word(a[1]) & _LO):
            kc.free_slow(a[1], a[2], False)
            got["objects"] += 1
    elif op in (_OP["slab_mag_flush"], _OP["slab_sheaf_flush"]):
        n = a[1] if op == _OP["slab_mag_flush"] else a[2]
        if op == _OP["slab_mag_flush"] and s == 0 and a[2]:
            s = _mag_flush_phase(arena, slub, cid, n, a[2], spill)
        if s >= 1:
            # the open inner slab_free finishes its object: spill[s - 1], unless the step
            # already moved past it (slab_free stores it before its record ends)
            skip = inner_open and (inner is None or inner.op != _OP["slab_free"] or s - 1 >= n
                                   or c.obj(spill[s - 1]) == (inner.args[1], inner.args[2]))
            for addr in spill[s - 1 + int(skip):n]:
                free_obj(addr)
    elif op == _OP["slab_debug_free"]:
        if s == 0 and a[2] not in c.freelist(a[1], c.word(a[1]) & _LO):
            kc.free_slow(a[1], a[2], False)
            got["objects"] += 1
    elif op == _OP["slab_pcs_free"]:
        if s == 0:
            kc.free(a[1])
            got["objects"] += 1
        else:
            _stat_add(arena, cid, slub.cpu, rec.ctx, ST_FREE, 1)
    elif op == _OP["slab_sheaf_refill"]:
        sh, have, flags = a[1], a[2], a[3]
        so = arena.off("slabsheaf") + sh * SHEAF_REC
        dest = ((so + SH_OBJS) >> 3) + have
        if flags & REFILL_ROLLBACK:
            for k in range(s - int(inner_open)):
                kc.free(arena.u64[dest + k])
                got["objects"] += 1
        else:
            arena.u64[(so + SH_SIZE) >> 3] = have + s
            if flags & REFILL_PCS:
                _stat_add(arena, cid, slub.cpu, rec.ctx, ST_ALLOC, -s)
    return got


def _mag_flush_phase(arena: Any, slub: Any, cid: int, nf: int, phase: int, spill: list[int]) -> int:
    """A magazine flush a CPU was killed in between fault points (step 0, phase a2 set):
    phase 1 -- the older half copied to the spill, the newer half being moved down
    over it (its source untouched): the magazine is put back as it was, nothing to
    free (returns 0); phase 2 -- moved, the count cut to the newer half or about to
    be: the count made so, and the spill's objects are to be freed (returns 1)."""
    _, nr_cpus, _, mag, _ = _geo(arena)
    q = arena.u64
    ko = _cpu_off(arena, cid, slub.cpu, nr_cpus, mag)
    mag0, cnt = (ko + K_MAG) >> 3, (ko + K_MAG_COUNT) >> 3
    if phase == 1:
        q[mag0 : mag0 + nf] = array("Q", spill[:nf])
        return 0
    keep = mag - nf
    # not cut -- unless keep + 1 == mag and the free's push landed
    if q[cnt] == mag and (mag > 2 or (q[mag0 + 1] == q[mag0] if mag == 2 else q[mag0] == spill[0])):
        q[cnt] = keep
    return 1


def rebuild_node_partials(arena: Any, slots: list[int]) -> int:
    """The node partial lists whose list_lock is one of the lock slots `slots` rebuilt
    from the slabs marked NODE_PARTIAL (add_partial marks a slab after linking it,
    remove_partial unmarks after unlinking: a torn update leaves the mark right), in pfn
    order, nr_partial recounted; returns the lists rebuilt.  At takeover, for a CPU
    killed from outside holding the lock (mm/recovery.py), before a live CPU takes it:
    the caller holds the locks."""
    import numpy as np

    want = set(slots)
    _, _, nr_nodes, _, _ = _geo(arena)
    sm = arena.off("slabmeta")
    meta = arena.array("slabmeta", np.uint8).reshape(-1, SMETA)
    cache = meta[:, M_CACHE : M_CACHE + 4].copy().view(np.uint32).ravel().astype(np.int64) - 1
    lst, nid_of = meta[:, M_LIST].copy(), meta[:, M_NID].copy()
    del meta
    n = 0
    for cid in live_caches(arena):
        for nid in range(nr_nodes):
            no = _node_off(arena, cid, nid, nr_nodes)
            if arena.u64[(no + N_LOCK) >> 3] not in want:
                continue
            listed = np.flatnonzero((cache == cid) & (lst == LIST_NODE_PARTIAL) & (nid_of == nid)).tolist()
            _link(arena, no, sm, listed)
            n += 1
    return n


def recount_stats(arena: Any, cpu: int) -> int:
    """After the repairs, for a CPU killed between fault points: the allocations and
    frees of dead `cpu` that its counters missed or counted ahead (the fast paths count
    after the CAS that takes or frees, and free_retry before it) are settled from state
    -- per cache, S5's gap (mm/slab/slab_check.py s5_gaps) goes to the dead CPU's
    alloc (gap > 0) or free (gap < 0) counter.  Only a gap of at most one item per log
    context is the dead CPU's; a larger one is left for the checker to report.  Returns
    the items settled."""
    from aerosync.mm.slab.slab_check import s5_gaps

    n = 0
    for cid, gap in s5_gaps(arena).items():
        if abs(gap) <= INTENT_CTX:
            _stat_add(arena, cid, cpu, 0, ST_ALLOC if gap > 0 else ST_FREE, abs(gap))
            n += abs(gap)
    return n


def _frozen_unheld_new(arena: Any, c: _Cache, pfn: int) -> bool:
    """Whether slab pfn of cache c is frozen with every object taken (freelist NIL,
    inuse == objects) and no CPU's c->slab: after the inner records are resolved, only
    a new slab frozen by slab_alloc_slow and not yet held is in that state."""
    if not 0 <= pfn < arena.config["nr_pages"] or arena.u32[(c.sm + pfn * SMETA + M_CACHE) >> 2] != c.cid + 1:
        return False
    w = c.word(pfn)
    if not w & FROZEN or w & _LO != NIL32 or (w >> 32) & 0xFFFF != (w >> 48) & 0x7FFF:
        return False
    _, nr_cpus, _, mag, _ = _geo(arena)
    return all(arena.u64[(_cpu_off(arena, c.cid, cpu, nr_cpus, mag) + K_SLAB) >> 3] != pfn for cpu in range(nr_cpus))


def _cpu_word_drop(arena: Any, cid: int, cpu: int, chain: int) -> None:
    """Dead `cpu`'s cpu word still holding `chain` (detach() killed before its CAS):
    empty it, the tid kept."""
    _, nr_cpus, _, mag, _ = _geo(arena)
    cw = _cpu_off(arena, cid, cpu, nr_cpus, mag) + K_FREELIST_TID
    w = arena.u64[cw >> 3]
    if w & _LO == chain:
        arena.atomic.store64(cw, (w & ~_LO) | NIL32)


def _installed(arena: Any, cid: int, cpu: int, pfn: int) -> bool:
    """Whether slab pfn is dead `cpu`'s c->slab (install() stores c->slab last)."""
    _, nr_cpus, _, mag, _ = _geo(arena)
    return arena.u64[(_cpu_off(arena, cid, cpu, nr_cpus, mag) + K_SLAB) >> 3] == pfn


def _stat_add(arena: Any, cid: int, cpu: int, ctx: int, item: int, n: int) -> None:
    """Add n to statistic `item` of cache cid, cpu's context ctx (its owner is dead)."""
    _, nr_cpus, _, mag, _ = _geo(arena)
    st = (_cpu_off(arena, cid, cpu, nr_cpus, mag) + K_STATS + ctx * NR_STATS * 8) >> 3
    arena.u64[st + item] = (arena.u64[st + item] + n) & ((1 << 64) - 1)


def _new_slab_handed_out(arena: Any, slub: Any, ctx: int) -> int:
    """new_slab died in its allocation's hand-off window (slab_new step 0): the block the
    page allocator named, if it handed it out and the slab is not set up on it yet
    (pmm/recover.py plain_allocated, at the order in its head's order byte), freed.
    Returns the pages freed."""
    from aerosync.mm.pmm.page import P_ORDER
    from aerosync.mm.pmm.recover import plain_allocated

    pending, item = I.take_handoff_ctx(arena, slub.cpu, ctx)
    if not pending:
        return 0
    kind, pfn = I.decode_item(arena, item)
    if kind != I.ITEM_PAGE:
        return 0
    order = arena.u8[arena.off("pagemeta") + pfn * PAGE_META_SIZE + P_ORDER]
    return _free_slab_pages(arena, slub, pfn, order) if plain_allocated(arena, pfn, order) else 0


def _free_slab_pages(arena: Any, slub: Any, pfn: int, order: int) -> int:
    """A slab that is being made or unmade: metadata cleared, pages back (refcount 1)."""
    pm32 = arena.off("pagemeta") >> 2
    m = arena.off("slabmeta") + pfn * SMETA
    arena.atomic.store64(m + M_WORD, 0)
    arena.u32[(m + M_CACHE) >> 2] = 0
    arena.u32[pm32 + pfn * _PMW] &= ~PG_slab
    slub.mm.free_pages(pfn, order)
    return 1 << order


def return_caller_sheaves(arena: Any, slub: Any, cpu: int) -> int:
    """kmem_cache_return_sheaf() of every caller-owned sheaf the dead CPU held (prefill
    API: state cpu + 1); returns the objects freed."""
    so0, size = arena.sections["slabsheaf"]
    live = set(live_caches(arena))
    n = 0
    for sh in range(size // SHEAF_REC):
        so = so0 + sh * SHEAF_REC
        if arena.u64[(so + SH_STATE) >> 3] == cpu + 1:
            cid = arena.u64[(so + SH_CACHE) >> 3]
            if cid in live:
                n += arena.u64[(so + SH_SIZE) >> 3]
                slub.cache(cid).return_sheaf(sh)
            else:
                arena.atomic.store64(so + SH_STATE, 0)
    return n


def _slab_of(arena: Any, pfn: int) -> tuple[int, int]:
    """(slab head pfn, cache id) of the page pfn, cache id -1 if it is no live slab's."""
    pm32 = arena.off("pagemeta") >> 2
    if not 0 <= pfn < arena.config["nr_pages"]:
        return pfn, -1
    if arena.u32[pm32 + pfn * _PMW] & PG_tail:
        pfn = arena.u32[pm32 + pfn * _PMW + 6]
    cid = arena.u32[(arena.off("slabmeta") + pfn * SMETA + M_CACHE) >> 2] - 1
    if cid < 0 or cid not in live_caches(arena) or not arena.u32[pm32 + pfn * _PMW] & PG_slab:
        return pfn, -1
    return pfn, cid


def slot_object(arena: Any, off: int) -> int | None:
    """The address of the object whose slot starts at arena offset `off` (what SLUB's
    hand-off word holds: mm/intent.py), or None if no live slab has a slot there."""
    phys = arena.off("physmem")
    _, cid = _slab_of(arena, (off - phys) >> PAGE_SHIFT)
    if cid < 0:
        return None
    return off - phys + VBASE + _Cache(arena, cid).red_left


def object_at(arena: Any, off: int, cid: int) -> bool:
    """Does an object of cache `cid` start at arena offset `off` (a slot of a live slab
    of that cache, allocated or not)?  For a lock word a robust list names only by its
    offset (mm/vm/recover.py repair_locked_objects)."""
    phys = arena.off("physmem")
    pfn, got = _slab_of(arena, (off - phys) >> PAGE_SHIFT)
    if got != cid or cid < 0:
        return False
    c = _Cache(arena, cid)
    rel = off - phys - (pfn << PAGE_SHIFT) - c.red_left
    return rel >= 0 and not rel % c.size and rel // c.size < (c.word(pfn) >> 48) & 0x7FFF


def object_free(arena: Any, addr: int) -> bool | None:
    """Whether the object at `addr` is free -- on its slab's freelist, on a CPU's
    freelist of that slab, in a magazine or a sheaf of its cache -- or allocated; None
    if `addr` is no object start of a live slab.  For a hand-off or a free a dead CPU
    left half done (mm/intent.py "Hand-off"); world stopped, the freelists whole."""
    pfn, cid = _slab_of(arena, (addr - VBASE) >> PAGE_SHIFT)
    if cid < 0:
        return None
    c = _Cache(arena, cid)
    off = addr - VBASE - (pfn << PAGE_SHIFT) - c.red_left
    idx = off // c.size
    if off < 0 or off % c.size or idx >= (c.word(pfn) >> 48) & 0x7FFF:
        return None
    return (pfn, idx) in _free_objects(arena, c, [pfn])


def allocated_objects(arena: Any, cid: int) -> list[int]:
    """The addresses of every allocated object of cache `cid`: each object of its slabs
    that is free in none of the places `object_free` looks.  World stopped, the
    freelists whole (after fsck); for a recovery's sweep of a cache whose owners can
    name every live object (mm/vm/recover.py sweep_orphans)."""
    import numpy as np

    c = _Cache(arena, cid)
    u32 = arena.u32
    pm32 = arena.off("pagemeta") >> 2
    smv = arena.array("slabmeta", np.uint32).reshape(-1, SMETA // 4)
    mine = np.flatnonzero(smv[:, M_CACHE // 4] == cid + 1).tolist()
    del smv
    slabs = [p for p in mine if u32[pm32 + p * _PMW] & PG_slab and not u32[pm32 + p * _PMW] & PG_tail]
    free = _free_objects(arena, c, slabs)
    out = []
    for pfn in slabs:
        base = VBASE + (pfn << PAGE_SHIFT) + c.red_left
        out.extend(base + i * c.size for i in range((c.word(pfn) >> 48) & 0x7FFF) if (pfn, i) not in free)
    return out


def _free_objects(arena: Any, c: _Cache, slabs: list[int]) -> set[tuple[int, int]]:
    """(slab pfn, index) of the free objects of cache c: those on the freelists of
    `slabs` and of the CPUs whose c->slab is one of them, and every object in the
    cache's magazines and sheaves."""
    q = arena.u64
    free: set[tuple[int, int]] = set()
    for pfn in slabs:
        free.update((pfn, i) for i in c.freelist(pfn, c.word(pfn) & _LO))
    wanted = set(slabs)
    _, nr_cpus, _, mag, _ = _geo(arena)
    for cpu in range(nr_cpus):
        ko = _cpu_off(arena, c.cid, cpu, nr_cpus, mag)
        cs = q[(ko + K_SLAB) >> 3]
        if cs in wanted:
            free.update((cs, i) for i in c.freelist(cs, q[(ko + K_FREELIST_TID) >> 3] & _LO))
        if mag:
            m0 = (ko + K_MAG) >> 3
            free.update(c.obj(a) for a in q[m0 : m0 + q[(ko + K_MAG_COUNT) >> 3]])
    so0, size = arena.sections["slabsheaf"]
    for sh in range(size // SHEAF_REC):
        so = so0 + sh * SHEAF_REC
        if q[(so + SH_STATE) >> 3] and q[(so + SH_CACHE) >> 3] == c.cid:
            o0 = (so + SH_OBJS) >> 3
            free.update(c.obj(a) for a in q[o0 : o0 + q[(so + SH_SIZE) >> 3]])
    return free


def fsck(arena: Any, slub: Any) -> dict[str, int]:
    """The state scan of every live cache (module docstring); world stopped, every dead
    CPU offline.  Returns {"orphan_sheaves", "orphan_objects", "slabs_relisted",
    "slabs_unfrozen"}."""
    out = {"orphan_sheaves": 0, "orphan_objects": 0, "slabs_relisted": 0, "slabs_unfrozen": 0}
    _, nr_cpus, nr_nodes, mag, _ = _geo(arena)
    for cid in live_caches(arena):
        c = _Cache(arena, cid)
        _orphan_sheaves(arena, slub, c, nr_cpus, nr_nodes, mag, out)
        _relist_slabs(arena, c, nr_cpus, nr_nodes, mag, out)
    return out


def _orphan_sheaves(arena: Any, slub: Any, c: _Cache, nr_cpus: int, nr_nodes: int, mag: int,
                    out: dict[str, int]) -> None:
    q = arena.u64
    so0, size = arena.sections["slabsheaf"]
    placed: set[int] = set()
    for cpu in range(nr_cpus):
        v = q[(_cpu_off(arena, c.cid, cpu, nr_cpus, mag) + K_PCS) >> 3]
        placed.update(x for x in ((v & _LO) - 1, (v >> 32) - 1) if x >= 0)
    for nid in range(nr_nodes):
        no = _node_off(arena, c.cid, nid, nr_nodes)
        for head in (N_BARN_FULL, N_BARN_EMPTY):
            sh, n = arena.u32[(no + head) >> 2], 0
            while sh != NIL32 and n <= size // SHEAF_REC:
                placed.add(sh)
                sh, n = q[(so0 + sh * SHEAF_REC + SH_NEXT) >> 3], n + 1
    kc = None
    for sh in range(size // SHEAF_REC):
        so = so0 + sh * SHEAF_REC
        st = q[(so + SH_STATE) >> 3]
        if not st & SHEAF_PCS or q[(so + SH_CACHE) >> 3] != c.cid or sh in placed:
            continue
        kc = kc or slub.cache(c.cid)
        n = q[(so + SH_SIZE) >> 3]
        for i in range(n):
            pfn, idx = c.obj(q[((so + SH_OBJS) >> 3) + i])
            kc.free_slow(pfn, idx, False)
        q[(so + SH_SIZE) >> 3] = 0
        arena.atomic.store64(so + SH_STATE, 0)
        out["orphan_sheaves"] += 1
        out["orphan_objects"] += n


def _relist_slabs(arena: Any, c: _Cache, nr_cpus: int, nr_nodes: int, mag: int, out: dict[str, int]) -> None:
    import numpy as np

    q, u8, u32 = arena.u64, arena.u8, arena.u32
    sm = c.sm
    smv = arena.array("slabmeta", np.uint32).reshape(-1, SMETA // 4)
    mine = np.flatnonzero(smv[:, M_CACHE // 4] == c.cid + 1).tolist()
    del smv
    owned: set[int] = set()                       # a CPU's c->slab or on a CPU's partial chain
    for cpu in range(nr_cpus):
        ko = _cpu_off(arena, c.cid, cpu, nr_cpus, mag)
        cs = q[(ko + K_SLAB) >> 3]
        if cs != NIL64:
            owned.add(cs)
            u8[sm + cs * SMETA + M_LIST] = LIST_CPU_SLAB
        elif q[(ko + K_FREELIST_TID) >> 3] & _LO != NIL32:
            q[(ko + K_FREELIST_TID) >> 3] |= NIL32       # no cpu freelist without c->slab
        p, n = q[(ko + K_PARTIAL) >> 3], 0
        while p != NIL64 and n <= len(mine):
            owned.add(p)
            u8[sm + p * SMETA + M_LIST] = LIST_CPU_PARTIAL
            p, n = u32[(sm + p * SMETA + M_NEXT) >> 2], n + 1
        q[(ko + K_NR_PARTIAL) >> 3] = n
    slabs = [0] * nr_nodes
    objs = [0] * nr_nodes
    for nid in range(nr_nodes):                   # node lists as they are, links checked
        no = _node_off(arena, c.cid, nid, nr_nodes)
        p, n, listed = u32[(no + N_HEAD) >> 2], 0, []
        while p != NIL32 and n <= len(mine) and p not in owned and u32[(sm + p * SMETA + M_CACHE) >> 2] == c.cid + 1:
            listed.append(p)
            p, n = u32[(sm + p * SMETA + M_NEXT) >> 2], n + 1
        _link(arena, no, sm, listed)
        for p in listed:
            u8[sm + p * SMETA + M_LIST] = LIST_NODE_PARTIAL
            owned.add(p)
    for p in mine:
        w = c.word(p)
        nid = u8[sm + p * SMETA + M_NID]
        n = (w >> 48) & 0x7FFF
        slabs[nid] += 1
        objs[nid] += n
        if p in owned:
            continue
        if w & FROZEN:                            # frozen, but no CPU's slab: unfreeze
            c.set_word(p, w & ~FROZEN)
            out["slabs_unfrozen"] += 1
            w &= ~FROZEN
        if w & _LO != NIL32 or not (w >> 32) & 0xFFFF:
            no = _node_off(arena, c.cid, nid, nr_nodes)
            tail = u32[(no + N_TAIL) >> 2]
            m = sm + p * SMETA
            u32[(m + M_NEXT) >> 2], u32[(m + M_PREV) >> 2] = NIL32, tail
            if tail == NIL32:
                u32[(no + N_HEAD) >> 2] = p
            else:
                u32[(sm + tail * SMETA + M_NEXT) >> 2] = p
            u32[(no + N_TAIL) >> 2] = p
            q[(no + N_NR_PARTIAL) >> 3] += 1
            u8[m + M_LIST] = LIST_NODE_PARTIAL
            out["slabs_relisted"] += 1
        else:
            u8[sm + p * SMETA + M_LIST] = LIST_NONE
    for nid in range(nr_nodes):
        no = _node_off(arena, c.cid, nid, nr_nodes)
        q[(no + N_NR_SLABS) >> 3] = slabs[nid]
        q[(no + N_TOTAL_OBJS) >> 3] = objs[nid]


def _link(arena: Any, no: int, sm: int, listed: list[int]) -> None:
    """A node partial list rebuilt from `listed`, in order; nr_partial set."""
    u32 = arena.u32
    prev = NIL32
    for p in listed:
        u32[(sm + p * SMETA + M_PREV) >> 2] = prev
        if prev != NIL32:
            u32[(sm + prev * SMETA + M_NEXT) >> 2] = p
        prev = p
    if listed:
        u32[(sm + listed[-1] * SMETA + M_NEXT) >> 2] = NIL32
    u32[(no + N_HEAD) >> 2] = listed[0] if listed else NIL32
    u32[(no + N_TAIL) >> 2] = prev
    arena.u64[(no + N_NR_PARTIAL) >> 3] = len(listed)
