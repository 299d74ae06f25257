"""KFENCE: one slab allocation in N gets its own page between guard pages.

Models: mm/kfence/core.c (the pool: (CONFIG_KFENCE_NUM_OBJECTS + 1) * 2 pages, an object
page and a guard page per object, pages 0 and 1 guards; kfence_guarded_alloc placing
the object at the start or the end of its page, the rest of the page filled with the
canary pattern; kfence_guarded_free checking it; freed objects' pages protected;
the freelist reused LRU; kfence_handle_page_fault) and mm/kfence/report.c (the report
format).  Unit: a pool object (its index, "kfence-#N"); a page of the pool.

Pool: the last kfence_pool_pages() pages of physical memory (config.kfence_pool_pfns),
reserved at boot (mm/pmm/init.py: PG_reserved, never the buddy's), in the direct map as
__kfence_pool is memblock memory there: page 2k + 2 holds object k, pages 2k + 3 (and
0, 1) are guards.  Because it is the top of the direct map, kaccess's unchecked direct
map ends where the pool begins, and a free reaches KFENCE without a test of its own on
the fast paths: a pool page is never a CPU slab (kmem_cache_free's CPU-slab test sends
it to the slow path, slub.py free_other, which tests the pool first) and has no
PG_slab (kfree's slab test fails, and its non-slab branch tests the pool first).
Section "kfence" holds the metadata, KFENCE_META_REC bytes per object (struct
kfence_metadata)::

     0 state u32 (UNUSED / ALLOCATED / FREED)   4 size u32   8 addr u64
    16 cache id u32   20 next u32 (freelist link)
    24 alloc track: pid u32, depot handle u32, cpu + 1 u32   40 free track: the same
then one byte per pool page, the page's protection (1: mapped -- the page of an
allocated object; 0: a guard, a freed or an unused object's page), which the hardware
check reads first (kfence_protect/kfence_unprotect clear and set it).  The freelist (head,
tail), its lock slot, the stack of recent frees and the debugfs counters live in "sanhdr"
at report.H_KFENCE.

Freelist (Linux's kfence_freelist, LRU: the object freed longest ago is reused first, so
a use after free stays caught as long as possible): two singly linked lists through the
records' next words.  The list proper (head -> tail, oldest first) is taken from under
kfence_freelist_lock; a free pushes its object onto the stack (newest on top) with one
CAS on the stack word, no lock.  An allocation that finds the list empty takes the whole
stack (a CAS to NIL) and reverses it into the list: everything on the stack was freed
after everything that was on the list, so the order is still exactly LRU.  The count
(currently allocated) is total allocations - total frees, both counted with fetch_add
(kfence_stats).  No ABA: the stack is only pushed
and taken whole, and an object being pushed belongs to the freeing CPU (FREED, on no
list).

Sampling: one allocation in [debug] kfence_sample_interval (per cache and CPU context;
Linux's interval is in milliseconds, a timer opening a gate the next allocation takes --
an allocation count is the simulation's clock) is tried in the pool (objects up to a
page, while free objects remain).  SLUB's own closures (slub.py) fold the gate into the
per-CPU allocation counter their fast path reads and bumps anyway: the sample is due
when it reaches a threshold, one compare per allocation; the slab_hooks.py wrappers
(KASAN, debug caches, sheaves) count down.  Frees of pool addresses come here from
SLUB's free slow path (free_other: kmem_cache_free and its bulk form, which counted the
free already), the slab_hooks.py wrapper's free, and kmalloc's kfree (free(addr,
kfree=True), which also counts the free in the owning cache) -- see "Pool" above.

Tracks (kfence_save_track): pid, cpu and a stack depot handle, from report.stack_tracker
-- the raw frames (code id, bytecode offset) are the key of a per-arena dict, and the
text is formatted and stored in the depot once per distinct stack, so a saved track is a
frame walk and a dict lookup, as Linux saves raw entries and formats at report time.
The gates in slub.py and kmalloc.py say how many frames from their own on are allocator
frames (`up`), so the walk starts past them (sys._getframe(n) passes frames in C; each
frame the walk visits is made into an object).

Protection (the hardware part, checked in mm/vm/kaccess.py for every access to a pool
address, instrumented or not: the page's protection byte first, then translate()):
guard pages, the page of a freed object and of an unused
one fault -> report: out-of-bounds (a guard page next to an allocated object), use-after-
free, invalid; an allocated object's page is accessible as a whole -- bytes beyond the
object are caught when it is freed (the canary check: "memory corruption", reported,
the free goes on).  A free of a pool address that is not an allocated object's start is
"invalid free" (a double free included, as KFENCE reports it).

Lock order: kfence_freelist_lock (SpinLock in sanhdr) is a leaf: nothing is taken under
it; it serialises the allocations (the list and the take of the stack), not the frees.
A metadata record changes state ALLOCATED by the allocating CPU (taken off the list
under the lock; the record written first, the page's protection byte set last), FREED by
the freeing CPU (the state first, then the protection byte cleared -- kfence_guarded_free's
order -- then pushed); readers (checks, reports) read without locks and may see either
side of a concurrent change, as kfence's racy fault-path reads.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.mm import hooks
from aerosync.mm.pmm.gfp import __GFP_ZERO as _GFP_ZERO
from aerosync.mm.san import config as C
from aerosync.mm.san import report as R
from aerosync.mm.slab import layout as SL
from aerosync.params import PAGE_SHIFT, PAGE_SIZE

__all__ = ["Kfence", "kfence_sections", "kfence_init", "kfence_ready", "kfence_live", "kfence_range", "kfence_freelist",
           "kfence_stats", "kfence_stats_text",
           "KFENCE_OBJECT_UNUSED", "KFENCE_OBJECT_ALLOCATED", "KFENCE_OBJECT_FREED", "canary"]

KFENCE_OBJECT_UNUSED, KFENCE_OBJECT_ALLOCATED, KFENCE_OBJECT_FREED = 0, 1, 2
_M_STATE, _M_SIZE, _M_ADDR, _M_CACHE, _M_NEXT, _M_ATRACK, _M_FTRACK = 0, 4, 8, 16, 20, 24, 40
_NIL = 0xFFFF_FFFF
# words in sanhdr (report.H_KFENCE + ...)
_K_LOCK, _K_HEAD, _K_TAIL, _K_SKIP_CAP, _K_ALLOCS, _K_FREES, _K_MAGIC, _K_STACK = 0, 8, 16, 24, 32, 40, 48, 56
_K_SKIP_INCOMPAT = 64
# the record from size to the free track's cpu, written whole by an allocation (the
# free track cleared), and the free track alone, written by a free
_ALLOC_REC = struct.Struct("<IQIIIIIIIII")   # size addr cache next | pid stack cpu+1 pad | pid stack cpu+1
_FREE_TRACK = struct.Struct("<III")
_KF_MAGIC = 0x4543_4E45_4646_4B41      # "AKFFENCE"
_PAGE_CANARY = bytes(0xAA ^ (i & 7) for i in range(PAGE_SIZE))   # every page starts 8-aligned


def canary(a: int) -> int:
    """KFENCE_CANARY_PATTERN(addr): 0xaa ^ (addr & 0x7)."""
    return 0xAA ^ (a & 7)


def kfence_sections(config: dict[str, Any]) -> list[SectionSpec]:
    p = C.debug_params(config)
    if not p["kfence_sample_interval"]:
        return []
    n = p["kfence_num_objects"]
    return [SectionSpec("kfence", n * C.KFENCE_META_REC + C.kfence_pool_pages(n))]


def _prot_off(arena: Any, n: int) -> int:
    """Arena offset of the pool pages' protection bytes (after the metadata)."""
    return arena.off("kfence") + n * C.KFENCE_META_REC


def _pool_pfns(arena: Any) -> tuple[int, int]:
    return C.kfence_pool_pfns(arena.sections["physmem"][1] >> PAGE_SHIFT,
                              C.debug_params(arena.config)["kfence_num_objects"])


def kfence_ready(arena: Any) -> bool:
    return "kfence" in arena.sections and "sanhdr" in arena.sections and \
        arena.u64[(arena.off("sanhdr") + R.H_KFENCE + _K_MAGIC) >> 3] == _KF_MAGIC


def kfence_range(arena: Any) -> tuple[int, int]:
    """[lo, hi) of the pool's addresses ((0, 0) without KFENCE)."""
    if "kfence" not in arena.sections:
        return 0, 0
    first, end = _pool_pfns(arena)
    return SL.VBASE + (first << PAGE_SHIFT), SL.VBASE + (end << PAGE_SHIFT)


def kfence_init(arena: Any) -> None:
    """kfence_init_pool(): every object unused and on the freelist, in index order."""
    from aerosync.sync.lockstat import lock_alloc

    n = C.debug_params(arena.config)["kfence_num_objects"]
    o, s = arena.sections["kfence"]
    arena.u8[o : o + s] = bytes(s)
    first, end = _pool_pfns(arena)
    po = arena.off("physmem")
    arena.u8[po + (first << PAGE_SHIFT) : po + (end << PAGE_SHIFT)] = bytes((end - first) << PAGE_SHIFT)
    meta = o
    u32 = arena.u32
    for k in range(n):
        u32[(meta + k * C.KFENCE_META_REC + _M_NEXT) >> 2] = k + 1 if k + 1 < n else _NIL
    h = arena.off("sanhdr") + R.H_KFENCE
    q = arena.u64
    q[(h + _K_LOCK) >> 3] = lock_alloc(arena, "kfence_freelist_lock", "kfence_freelist_lock")
    q[(h + _K_HEAD) >> 3] = 0
    q[(h + _K_TAIL) >> 3] = n - 1
    for w in (_K_SKIP_CAP, _K_ALLOCS, _K_FREES, _K_SKIP_INCOMPAT):
        q[(h + w) >> 3] = 0
    q[(h + _K_STACK) >> 3] = _NIL
    arena.atomic.store64(h + _K_MAGIC, _KF_MAGIC)


def kfence_live(arena: Any, cid: int = -1) -> int:
    """Allocated pool objects (of cache `cid`, or of all) -- slab_check.py's S5 term."""
    if not kfence_ready(arena):
        return 0
    n = C.debug_params(arena.config)["kfence_num_objects"]
    meta = arena.off("kfence")
    u32 = arena.u32
    got = 0
    for k in range(n):
        m = meta + k * C.KFENCE_META_REC
        if u32[(m + _M_STATE) >> 2] == KFENCE_OBJECT_ALLOCATED and (cid < 0 or u32[(m + _M_CACHE) >> 2] == cid + 1):
            got += 1
    return got


def kfence_stats(arena: Any) -> dict[str, int]:
    """/sys/kernel/debug/kfence/stats (mm/kfence/core.c stats_show): "enabled" and the
    counters, "currently allocated" as total allocations - total frees (read without a
    lock: on a busy machine the two reads may straddle an allocation).  Zombies (objects
    of a destroyed cache still allocated) and the allocation-coverage filter are not
    modelled: their lines read 0, as on a kernel where they never happened."""
    if not kfence_ready(arena):
        return {}
    h = arena.off("sanhdr") + R.H_KFENCE
    q = arena.u64
    allocs, frees = q[(h + _K_ALLOCS) >> 3], q[(h + _K_FREES) >> 3]
    return {"enabled": 1, "currently allocated": allocs - frees, "total allocations": allocs,
            "total frees": frees, "zombie allocations": 0, "total bugs": R.bug_counts(arena).get("kfence", 0),
            "skipped allocations (incompatible)": q[(h + _K_SKIP_INCOMPAT) >> 3],
            "skipped allocations (capacity)": q[(h + _K_SKIP_CAP) >> 3], "skipped allocations (covered)": 0}


def kfence_stats_text(arena: Any) -> str:
    """The stats file's text: one "name: value" line each, as stats_show prints them."""
    return "".join(f"{k}: {v}\n" for k, v in kfence_stats(arena).items())


def kfence_freelist(arena: Any) -> list[int]:
    """The free objects in reuse order (the list, then the stack oldest first) -- for
    checks and tests; read without the lock, so only meaningful on a quiet machine."""
    if not kfence_ready(arena):
        return []
    n = C.debug_params(arena.config)["kfence_num_objects"]
    nxt = arena.off("kfence") + _M_NEXT
    h = arena.off("sanhdr") + R.H_KFENCE
    q, u32 = arena.u64, arena.u32
    out: list[int] = []
    for first, rev in ((q[(h + _K_HEAD) >> 3], False), (q[(h + _K_STACK) >> 3], True)):
        part, k = [], first
        while k != _NIL and len(part) <= n:
            part.append(k)
            k = u32[(nxt + k * C.KFENCE_META_REC) >> 2]
        out += part[::-1] if rev else part
    return out


class Kfence:
    """Simulated CPU `cpu`'s KFENCE: the pool's lo/hi, alloc(kc info, size, gfp), free(addr),
    translate(addr, write) (the hardware check: an arena offset or a report)."""

    def __init__(self, arena: Any, cpu: int) -> None:
        from aerosync.mm.slab.slab_common import cache_info
        from aerosync.mm.slab.slab_debug import depot_fetch
        from aerosync.sync.spinlock import SpinLock

        self.arena, self.cpu = arena, cpu
        p = C.debug_params(arena.config)
        nobj = p["kfence_num_objects"]
        self.interval = p["kfence_sample_interval"]
        self.init_on_alloc = p["init_on_alloc"]
        q, u32, u8 = arena.u64, arena.u32, arena.u8
        PHYS = arena.off("physmem")
        META = arena.off("kfence")
        lo, hi = kfence_range(arena)
        self.lo, self.hi = lo, hi
        VOFF = SL.VBASE - PHYS
        h = arena.off("sanhdr") + R.H_KFENCE
        lock = SpinLock(arena, q[(h + _K_LOCK) >> 3], cpu)
        acq, rel = lock.acquire, lock.release
        rng = random.Random(os.getpid() ^ (cpu << 20))
        pid = os.getpid()
        infos: dict[int, dict[str, Any]] = {}
        free_stat: dict[int, int] = {}        # cache id -> its u64 free counter (this CPU context)
        fetch_add = arena.atomic.fetch_add64
        zero_init = self.init_on_alloc

        def meta_of(k: int) -> int:
            return META + k * C.KFENCE_META_REC

        def page_of(k: int) -> int:
            return lo + ((2 * k + 2) << PAGE_SHIFT)

        def object_text(k: int) -> list[str]:
            """kfence_print_object()."""
            m = meta_of(k)
            st = u32[(m + _M_STATE) >> 2]
            if st == KFENCE_OBJECT_UNUSED:
                return [f"kfence-#{k} unused"]
            a, size = q[(m + _M_ADDR) >> 3], u32[(m + _M_SIZE) >> 2]
            cid = u32[(m + _M_CACHE) >> 2] - 1
            name = cache_info(arena, cid)["name"] if cid >= 0 else "<destroyed>"

            def stack(t: int, what: str) -> list[str]:
                s = depot_fetch(arena, u32[(t + 4) >> 2])
                return [f" {f}" for f in s.split(";")] if s else [f" no {what} stack"]

            out = [f"kfence-#{k} [0x{a:016x}-0x{a + size - 1:016x}, size={size}, cache={name}] "
                   f"allocated by task {u32[(m + _M_ATRACK) >> 2]}:", *stack(m + _M_ATRACK, "allocation")]
            if st == KFENCE_OBJECT_FREED:
                out += ["", f"freed by task {u32[(m + _M_FTRACK) >> 2]}:", *stack(m + _M_FTRACK, "deallocation")]
            return out

        def report(head: list[str], k: int, bug: str, raise_it: bool = True) -> R.KernelBug | None:
            """kfence_report_error()."""
            lines = ["=" * 66, *head, *(f" {f}" for f in R.call_trace())]
            if k >= 0:
                lines += ["", *object_text(k)]
            lines += ["", R.cpu_line(cpu, f"aero-cpu{cpu}", pid), "=" * 66]
            if raise_it:
                return R.oops(arena, "kfence", "\n".join(lines), bug)
            R.warn(arena, "kfence", "\n".join(lines))
            return None

        I_HEAD, I_TAIL = (h + _K_HEAD) >> 3, (h + _K_TAIL) >> 3
        I_ALLOCS, I_FREES, I_SKIP_CAP = h + _K_ALLOCS, h + _K_FREES, h + _K_SKIP_CAP   # byte offsets (atomics)
        I_STACK_B = h + _K_STACK
        PROT = _prot_off(arena, nobj)
        self.prot = PROT
        load64, cas64 = arena.atomic.load64, arena.atomic.cas64
        tp = hooks.point_fn()                  # tests: forced interleavings (mm/hooks.py)
        store32 = arena.atomic.store32
        getrandbits = rng.getrandbits
        track, track_free = R.stack_tracker(arena), R.stack_tracker(arena)    # one per site kind: see its MRU
        META_NEXT = META + _M_NEXT
        REC = C.KFENCE_META_REC
        canary_head, canary_tail = _PAGE_CANARY.startswith, _PAGE_CANARY.endswith
        buf = arena.buf
        pack_alloc, pack_free = _ALLOC_REC.pack_into, _FREE_TRACK.pack_into
        cpu1 = cpu + 1

        def refill() -> int:
            """kfence_freelist_lock held, the list empty: take the whole stack of frees
            (newest first) and make it the list, oldest first; its head, or NIL."""
            top = load64(I_STACK_B)
            if tp:
                tp("kfence:take_read")
            while top != _NIL:
                got = cas64(I_STACK_B, top, _NIL)
                if got == top:
                    break
                top = got
            if top == _NIL:
                return _NIL
            q[I_TAIL] = top
            prev = _NIL
            while top != _NIL:                         # reverse the chain
                i = (META_NEXT + top * REC) >> 2
                nxt = u32[i]
                u32[i] = prev
                prev, top = top, nxt
            q[I_HEAD] = prev
            return prev

        # The guarded path runs once per `interval` allocations: its cost, divided by the
        # interval, is what KFENCE adds to a slab-heavy loop (bench kvm kfence_overhead_pct),
        # so it binds everything above, writes the record with one pack and leaves the
        # walk for the stack to start past the allocator frames its caller names.
        def alloc(cid: int, size: int, align: int, gfp: int, up: int = 0) -> int:
            """kfence_guarded_alloc(): a pool object for `size` bytes of cache cid, or 0.
            `up`: how many frames from the caller on are allocator frames (the saved
            stack's walk starts past them: report.stack_tracker)."""
            if size > PAGE_SIZE:
                fetch_add(h + _K_SKIP_INCOMPAT, 1)
                return 0
            acq()
            try:
                k = q[I_HEAD]
                if k == _NIL:                          # the list ran out: the frees pushed since
                    k = refill()
                if k != _NIL:
                    nxt = u32[(META_NEXT + k * REC) >> 2]
                    q[I_HEAD] = nxt
                    if nxt == _NIL:
                        q[I_TAIL] = _NIL
            finally:
                rel()
            if k == _NIL:
                fetch_add(I_SKIP_CAP, 1)
                return 0
            m = META + k * REC
            page = lo + ((2 * k + 2) << PAGE_SHIFT)
            addr = (page + PAGE_SIZE - size) & -(align or 1) if getrandbits(1) else page
            po = page - VOFF                           # at the page's end: an overflow hits the guard
            u8[po : po + PAGE_SIZE] = _PAGE_CANARY
            if gfp & _GFP_ZERO or zero_init:
                o = addr - VOFF
                u8[o : o + size] = bytes(size)
            # the record, kfence_save_track() (pid, stack, cpu) and the free track cleared
            pack_alloc(buf, m + _M_SIZE, size, addr, cid + 1, _NIL, pid, track(up), cpu1, 0, 0, 0, 0)
            store32(m + _M_STATE, KFENCE_OBJECT_ALLOCATED)
            u8[PROT + 2 * k + 2] = 1                   # kfence_unprotect(): the page is mapped
            fetch_add(I_ALLOCS, 1)
            return addr

        def free(addr: int, kfree: bool = False, up: int = 0) -> bool:
            """kfence_guarded_free(): checks, the canary, then the object goes onto the
            stack of recent frees (reused after everything freed before it).  kfree=True
            (kmalloc's kfree, which skips the cache's own free): the owning cache's free
            counter of this CPU context (free_stat, registered by its handle) is bumped
            here too; False, nothing done, when that cache registered none (the caller
            then goes through its free).  `up` as alloc's."""
            i = (addr - lo) >> PAGE_SHIFT
            k = (i >> 1) - 1
            m = META + k * REC
            # mapped (an allocated object's page: state ALLOCATED) and the object's start
            if not (lo <= addr < hi and u8[PROT + i] and q[(m + _M_ADDR) >> 3] == addr):
                if not (lo <= addr < hi and i >= 2 and not i & 1):
                    k = -1
                raise report([f"BUG: KFENCE: invalid free in {R.call_site()}", "",
                              f"Invalid free of 0x{addr:016x} (in kfence-#{k}):"], k, "invalid-free")
            st = -1
            if kfree:
                st = free_stat.get(u32[(m + _M_CACHE) >> 2] - 1, -1)
                if st < 0:
                    return False
            page = lo + (i << PAGE_SHIFT)
            po = page - VOFF
            lo_n = addr - page
            hi_n = lo_n + u32[(m + _M_SIZE) >> 2]
            # check_canary(): the bytes before and after the object against the pattern,
            # compared in place (bytes.startswith/endswith take the arena's memoryview)
            # (an empty side -- the object at the page's start or end -- is not sliced)
            if not ((not lo_n or canary_head(u8[po : po + lo_n]))
                    and (hi_n == PAGE_SIZE or canary_tail(u8[po + hi_n : po + PAGE_SIZE]))):
                corrupted(k, addr, page, lo_n, hi_n)
            pack_free(buf, m + _M_FTRACK, pid, track_free(up), cpu1)
            store32(m + _M_STATE, KFENCE_OBJECT_FREED)
            u8[PROT + i] = 0                           # kfence_protect(): a use after free faults
            nl = (META_NEXT + k * REC) >> 2            # onto the stack of recent frees: no lock
            top = load64(I_STACK_B)
            while True:
                u32[nl] = top
                if tp:
                    tp("kfence:push_read")
                got = cas64(I_STACK_B, top, k)
                if got == top:
                    break
                top = got
            fetch_add(I_FREES, 1)
            if st >= 0:
                q[st] += 1
            return True

        def corrupted(k: int, addr: int, page: int, lo_n: int, hi_n: int) -> None:
            """check_canary() found a changed byte: the memory-corruption report (a WARN:
            the free goes on)."""
            po = page - VOFF
            data = bytes(u8[po : po + PAGE_SIZE])
            bad = next(page + j for j in range(PAGE_SIZE) if not lo_n <= j < hi_n and data[j] != _PAGE_CANARY[j])
            shown = " ".join("." if data[j - page] == canary(j) else "!" for j in range(bad, min(bad + 16,
                             (addr if bad < addr else page + PAGE_SIZE))))   # print_diff_canary
            report([f"BUG: KFENCE: memory corruption in {R.call_site()}", "",
                    f"Corrupted memory at 0x{bad:016x} [ {shown} ] (in kfence-#{k}):"], k, "memory-corruption",
                   raise_it=False)

        def translate(addr: int, write: bool) -> int:
            """The pool's page protection: the arena offset of an accessible byte, else
            kfence_handle_page_fault()'s report."""
            i = (addr - lo) >> PAGE_SHIFT
            if u8[PROT + i]:
                return addr - VOFF                  # an allocated object's page: mapped
            rw = "write" if write else "read"
            if i >= 2 and not i & 1:
                k = i // 2 - 1
                m = meta_of(k)
                st = u32[(m + _M_STATE) >> 2]           # read again: it may have changed since
                if st == KFENCE_OBJECT_ALLOCATED:
                    return addr - VOFF
                if st == KFENCE_OBJECT_FREED:
                    raise report([f"BUG: KFENCE: use-after-free {rw} in {R.call_site()}", "",
                                  f"Use-after-free {rw} at 0x{addr:016x} (in kfence-#{k}):"], k, "use-after-free")
                raise report([f"BUG: KFENCE: invalid {rw} in {R.call_site()}", "",
                              f"Invalid {rw} at 0x{addr:016x}:"], -1, "invalid-access")
            # a guard page: the nearer allocated neighbour, as kfence_handle_page_fault
            best, dist, left = -1, 1 << 62, False
            for kk in (i // 2 - 1 - (0 if i & 1 else 1), (i + 1) // 2 - 1):
                if not 0 <= kk < nobj:
                    continue
                m = meta_of(kk)
                if u32[(m + _M_STATE) >> 2] != KFENCE_OBJECT_ALLOCATED:
                    continue
                a, size = q[(m + _M_ADDR) >> 3], u32[(m + _M_SIZE) >> 2]
                d = a - addr if addr < a else addr - (a + size) + 1
                if d < dist:
                    best, dist, left = kk, d, addr < a
            if best < 0:
                raise report([f"BUG: KFENCE: invalid {rw} in {R.call_site()}", "",
                              f"Invalid {rw} at 0x{addr:016x}:"], -1, "invalid-access")
            m = meta_of(best)
            a = q[(m + _M_ADDR) >> 3]
            off = a - addr if left else addr - a
            raise report([f"BUG: KFENCE: out-of-bounds {rw} in {R.call_site()}", "",
                          f"Out-of-bounds {rw} at 0x{addr:016x} ({off}B {'left' if left else 'right'} of "
                          f"kfence-#{best}):"], best, "out-of-bounds")

        def is_kfence(addr: int) -> bool:
            return lo <= addr < hi

        def cache_of(addr: int) -> int:
            """The cache id of the pool object at addr (its metadata's cache word)."""
            return u32[(meta_of(((addr - lo) >> PAGE_SHIFT) // 2 - 1) + _M_CACHE) >> 2] - 1

        self.alloc, self.free, self.translate, self.is_kfence = alloc, free, translate, is_kfence
        def ksize(addr: int) -> int:
            """kfence_ksize(): the size the object was allocated for (its metadata's)."""
            return u32[(meta_of(((addr - lo) >> PAGE_SHIFT) // 2 - 1) + _M_SIZE) >> 2]

        self.cache_of, self.ksize = cache_of, ksize
        self.free_stat = free_stat
        self.object_text = object_text
        _ = infos
