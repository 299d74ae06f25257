"""ZMM, the seed's compressed memory: anonymous pages compressed into a pool in the arena.

Models: mm/zswap.c (store on the swap-out path keyed by swap entry, load on swap-in,
invalidate when the slot is freed, max_pool_percent with accept_threshold_percent
hysteresis, the pool's LRU and its writeback to the swap device, the stats) and
mm/zsmalloc.c (size classes of 32..4096 bytes in steps of 16; zspages of 1, 2 or 4
contiguous pages with the fewest wasted bytes; objects may span a page boundary; a
free-object list inside the free objects; opaque handles), with the C kernel's
ZMM_COMPRESSION_THRESHOLD (75 %: pages that do not compress below it are rejected and
go to the swap file).  The compressor is real: lz4 (default) or zstd, through the `lz4`
and `zstandard` packages.  Zero-filled pages never reach the pool: the swap layer's
zeromap (6.12+) records them as the handle ZERO (swpout_zero / swpin_zero).
Unit: one swap slot's page.

Handle (u64 in the slot's SZMM word; 0 = not stored, 1 = zero page)::

    (zspage pfn + 1) << 32 | object index << 16 | compressed length

zspage (an allocated block of 2^order pages, GFP_NOWAIT: the pool never reclaims to grow)
metadata lives in its head struct page: private = class | inuse << 16 | free head << 32
(0xFFFF: none), index = next zspage of the class's partial list + 1.  A free object's
first two bytes hold the next free object's index.

Lock: one pool lock "&zmm->lock" (ObjSpinLock in the reclaim header) for classes,
zspages, handles, the LRU and the statistics; compression and decompression run outside
it.  A slot's handle is set under the pool lock by the CPU that owns the slot's swap
cache folio (swap-out) and cleared by load or load_drop (that CPU again), by invalidate (the slot
being freed: &ci->lock held -> pool lock) or by writeback, which holds the slot's
&ci->lock across decompress + write, so a concurrent swap-in either finds the handle
(and loads under the pool lock, rechecking it) or finds it gone and reads the file,
which writeback wrote first.  Order: &ci->lock -> &zmm->lock.

Stats (header; /sys/kernel/debug/zswap names): stored_pages, pool_total_size (pages),
reject_compress_poor, reject_alloc_fail, pool_limit_hit, written_back_pages; the
compressed bytes for the ratio.  vmstat: zswpout, zswpin, zswpwb.

Invariants (mm/reclaim/check.py): ZM1 every handle names an object of an allocated
zspage that fits its length, no object twice; ZM2 each zspage's inuse counts the
handles in it, its free list holds exactly its other objects, it is on its class's
partial list iff it has a free object, and none is empty; ZM3 the class and pool counts
(inuse, zspages, pool pages, stored pages, compressed bytes) are the handles' sums;
ZM4 the pool's LRU links exactly the slots with a handle.

Crash tolerance (robust mode): the handle words are the pool's truth -- a single store
each, under the pool lock -- and everything else (free lists, inuse, partial lists,
counts, the LRU) follows from them, so a CPU that dies holding the pool lock leaves
nothing recovery cannot rebuild (mm/reclaim/recover.py rebuild_zmm), except two zspages
no handle names: a new one between its allocation and its partial list (a hand-off
window, mm/intent.py WINDOW_ZSPAGE with its class above the low byte) and an empty one
being freed (H_ZMM_FREEING names it until its reference is dropped; then it is on no
list and in no state, and the page allocator's recovery frees it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.arena.layout import robust_mode
from aerosync.mm import intent as I
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import __GFP_NOWARN as _GFP_NOWARN
from aerosync.mm.pmm.gfp import GFP_ATOMIC
from aerosync.mm.pmm.page import P_INDEX, P_PRIVATE
from aerosync.mm.reclaim import layout as R
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["zmm_init", "Zmm", "compressor", "zmm_stats", "ZERO_HANDLE", "class_of", "zs_class", "zmm_handles",
           "zspage_partial", "zspage_free_objs", "NOFREE"]

ZERO_HANDLE = 1
NIL = 0xFFFF_FFFF
NOFREE = 0xFFFF
_ZERO = bytes(PAGE_SIZE)


def class_of(length: int) -> int:
    return (max(length, R.ZS_MIN_ALLOC) - R.ZS_MIN_ALLOC + R.ZS_CLASS_DELTA - 1) // R.ZS_CLASS_DELTA


def _pages_per_zspage(size: int) -> int:
    """get_pages_per_zspage(): the chain length (1, 2 or 4 pages here) wasting least."""
    best, best_waste = 1, 1.0
    for k in (1, 2, 4):
        waste = ((k * PAGE_SIZE) % size) / (k * PAGE_SIZE)
        if waste < best_waste - 1e-9:
            best, best_waste = k, waste
    return best


def zmm_init(arena: Any, off: R.Off) -> None:
    u32 = arena.u32
    for c in range(R.NR_ZS_CLASSES):
        zc = off.zcls + c * R.ZCLASS_REC
        size = R.ZS_MIN_ALLOC + c * R.ZS_CLASS_DELTA
        k = _pages_per_zspage(size)
        u32[(zc + R.ZC_SIZE) >> 2] = size
        u32[(zc + R.ZC_PAGES) >> 2] = k
        u32[(zc + R.ZC_OBJS) >> 2] = k * PAGE_SIZE // size
    base = off.base
    arena.u64[(base + R.H_ZMM_LRU_HEAD) >> 3] = NIL
    arena.u64[(base + R.H_ZMM_LRU_TAIL) >> 3] = NIL
    szlru = off.szlru >> 2
    for s in range(off.nr_slots):
        u32[szlru + 2 * s] = NIL
        u32[szlru + 2 * s + 1] = NIL


def compressor(name: str) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """(compress, decompress) of one page with the named algorithm."""
    if name == "zstd":
        import zstandard

        cctx, dctx = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
        return cctx.compress, lambda b: dctx.decompress(b, max_output_size=PAGE_SIZE)
    import lz4.block

    def c(data: bytes) -> bytes:
        return lz4.block.compress(data, store_size=False)

    def d(data: bytes) -> bytes:
        return lz4.block.decompress(data, uncompressed_size=PAGE_SIZE)

    return c, d


class Zmm:
    """One CPU's ZMM handle (closures):

      store(slot, pfn) -> bool     compress the page into the pool (False: rejected --
                                   incompressible, pool full, no memory: write it to the file)
      load(slot, pfn) -> bool      decompress into pfn and drop the copy (False: not stored)
      load_copy(slot, pfn) -> h / load_drop(slot, h)   the same in two pool-lock holds, the
                                   copy kept until the folio holds the data (robust swap-in)
      invalidate(slot)             the slot was freed (&ci->lock held)
      shrink(nr) -> written back   the pool's LRU writes its oldest entries to the swap file
      stored(slot) -> bool
    `write_slot(slot, data)` (page_io's file write) is set by the owner for writeback;
    `slot_lock(slot)` / `slot_unlock(slot)` are the swap device's &ci->lock.
    """

    def __init__(self, arena: Any, cpu: int, mm: Any, off: R.Off, lock: Any, dev: Any) -> None:
        q, u32, u16, u8 = arena.u64, arena.u32, None, arena.u8
        _ = u16
        base = off.base
        flags = q[(base + R.H_ZMM_FLAGS) >> 3]
        self.enabled = bool(flags & R.ZMM_ON)
        writeback_on = bool(flags & R.ZMM_WRITEBACK)
        comp, decomp = compressor(R.COMPRESSORS[q[(base + R.H_ZMM_COMP) >> 3]])
        self.compress, self.decompress = comp, decomp
        PHYS = arena.off("physmem")
        PM = arena.off("pagemeta")
        pm_priv, pm_idx = P_PRIVATE >> 3, P_INDEX >> 3
        szmm8 = off.szmm >> 3
        szlru = off.szlru >> 2
        zcls = off.zcls
        lw = base + R.H_ZMM_LOCK
        zlock, zunlock = lock.lock, lock.unlock
        alloc_pages, free_pages, free_frozen_pages = mm.alloc_pages, mm.free_pages, mm.free_frozen_pages
        fetch_add32, fetch_sub32 = arena.atomic.fetch_add32, arena.atomic.fetch_sub32
        lg = mm.log if robust_mode(arena.config) else None     # the crash-tolerance words
        ho, pend = (lg.handoff, lg.pending) if lg is not None else (0, 0)
        ev = VE.vm_event_base(arena, cpu)
        threshold = q[(base + R.H_ZMM_THRESHOLD) >> 3]
        max_pages = q[(base + R.H_ZMM_MAX_PAGES) >> 3]
        accept_pages = q[(base + R.H_ZMM_ACCEPT_PAGES) >> 3]
        H = lambda f: (base + f) >> 3
        self.write_slot: Callable[[int, bytes], None] | None = None
        self.slot_lock: Callable[[int], None] | None = dev.lock_slot if dev is not None else None
        self.slot_unlock: Callable[[int], None] | None = dev.unlock_slot if dev is not None else None

        def meta(pfn: int) -> int:
            return (PM + pfn * PAGE_META_SIZE) >> 3

        # ---------------------------------------------------------------- LRU (pool lock)
        def lru_add(slot: int) -> None:
            tail = q[H(R.H_ZMM_LRU_TAIL)]
            u32[szlru + 2 * slot] = NIL
            u32[szlru + 2 * slot + 1] = tail
            if tail == NIL:
                q[H(R.H_ZMM_LRU_HEAD)] = slot
            else:
                u32[szlru + 2 * tail] = slot
            q[H(R.H_ZMM_LRU_TAIL)] = slot

        def lru_del(slot: int) -> None:
            nx, pv = u32[szlru + 2 * slot], u32[szlru + 2 * slot + 1]
            if pv == NIL:
                q[H(R.H_ZMM_LRU_HEAD)] = nx
            else:
                u32[szlru + 2 * pv] = nx
            if nx == NIL:
                q[H(R.H_ZMM_LRU_TAIL)] = pv
            else:
                u32[szlru + 2 * nx + 1] = pv
            u32[szlru + 2 * slot] = u32[szlru + 2 * slot + 1] = NIL

        # ---------------------------------------------------------------- zsmalloc (pool lock)
        def zs_malloc(length: int) -> int:
            c = class_of(length)
            zc = zcls + c * R.ZCLASS_REC
            size, k, nobj = u32[(zc + R.ZC_SIZE) >> 2], u32[(zc + R.ZC_PAGES) >> 2], u32[(zc + R.ZC_OBJS) >> 2]
            head = q[(zc + R.ZC_PARTIAL) >> 3]
            if head:
                zp = head - 1
            else:
                order = k.bit_length() - 1
                if lg is not None:                      # hand-off window until it is listed
                    q[ho] = 0
                    q[pend] = I.WINDOW_ZSPAGE | c << 8
                zp = alloc_pages(GFP_ATOMIC | _GFP_NOWARN, order)
                if zp < 0:
                    if lg is not None:
                        q[pend] = 0
                    return 0
                # free list: object i -> i + 1 -> ... -> none
                o = PHYS + (zp << PAGE_SHIFT)
                for i in range(nobj):
                    nxt = i + 1 if i + 1 < nobj else NOFREE
                    u8[o + i * size : o + i * size + 2] = nxt.to_bytes(2, "little")
                m = meta(zp)
                q[m + pm_priv] = c | 0 << 16 | 0 << 32
                q[m + pm_idx] = 0
                q[(zc + R.ZC_PARTIAL) >> 3] = zp + 1
                if lg is not None:
                    q[pend] = 0
                q[(zc + R.ZC_NR_ZSPAGES) >> 3] += 1
                q[H(R.H_ZMM_POOL_PAGES)] += k
            m = meta(zp)
            w = q[m + pm_priv]
            inuse, obj = (w >> 16) & 0xFFFF, w >> 32
            o = PHYS + (zp << PAGE_SHIFT) + obj * size
            nxt = int.from_bytes(u8[o : o + 2], "little")
            inuse += 1
            q[m + pm_priv] = c | inuse << 16 | nxt << 32
            if nxt == NOFREE:                          # full: off the partial list
                q[(zc + R.ZC_PARTIAL) >> 3] = q[m + pm_idx]
                q[m + pm_idx] = 0
            q[(zc + R.ZC_INUSE) >> 3] += 1
            return (zp + 1) << 32 | obj << 16 | length

        def zs_free(handle: int) -> None:
            zp, obj = (handle >> 32) - 1, (handle >> 16) & 0xFFFF
            m = meta(zp)
            w = q[m + pm_priv]
            c, inuse, free_head = w & 0xFFFF, (w >> 16) & 0xFFFF, w >> 32
            zc = zcls + c * R.ZCLASS_REC
            size, k = u32[(zc + R.ZC_SIZE) >> 2], u32[(zc + R.ZC_PAGES) >> 2]
            o = PHYS + (zp << PAGE_SHIFT) + obj * size
            u8[o : o + 2] = free_head.to_bytes(2, "little")
            inuse -= 1
            q[(zc + R.ZC_INUSE) >> 3] -= 1
            was_full = free_head == NOFREE
            if inuse == 0:
                if lg is not None:                      # named until its reference is dropped
                    q[H(R.H_ZMM_FREEING)] = (zp + 1) | c << 32
                # unlink from the partial list (it is on it unless it was full)
                if not was_full:
                    prev, cur = 0, q[(zc + R.ZC_PARTIAL) >> 3]
                    while cur and cur - 1 != zp:
                        prev, cur = cur, q[meta(cur - 1) + pm_idx]
                    if cur:
                        if prev:
                            q[meta(prev - 1) + pm_idx] = q[m + pm_idx]
                        else:
                            q[(zc + R.ZC_PARTIAL) >> 3] = q[m + pm_idx]
                q[m + pm_priv] = 0
                q[m + pm_idx] = 0
                q[(zc + R.ZC_NR_ZSPAGES) >> 3] -= 1
                q[H(R.H_ZMM_POOL_PAGES)] -= k
                if lg is None:
                    free_pages(zp, k.bit_length() - 1)
                    return
                rc = PM + zp * PAGE_META_SIZE + 8
                if fetch_sub32(rc, 1) != 1:             # not the pool's alone: free_pages
                    fetch_add32(rc, 1)                  # drops ours (and reports a bad one)
                    q[H(R.H_ZMM_FREEING)] = 0
                    free_pages(zp, k.bit_length() - 1)
                    return
                q[H(R.H_ZMM_FREEING)] = 0
                free_frozen_pages(zp, k.bit_length() - 1, False)
                return
            q[m + pm_priv] = c | inuse << 16 | obj << 32
            if was_full:
                q[m + pm_idx] = q[(zc + R.ZC_PARTIAL) >> 3]
                q[(zc + R.ZC_PARTIAL) >> 3] = zp + 1

        def obj_bytes(handle: int) -> bytes:
            zp, obj, length = (handle >> 32) - 1, (handle >> 16) & 0xFFFF, handle & 0xFFFF
            c = u32[(meta(zp) + pm_priv) << 1] & 0xFFFF
            size = u32[(zcls + c * R.ZCLASS_REC + R.ZC_SIZE) >> 2]
            o = PHYS + (zp << PAGE_SHIFT) + obj * size
            return bytes(u8[o : o + length])

        def obj_write(handle: int, data: bytes) -> None:
            zp, obj = (handle >> 32) - 1, (handle >> 16) & 0xFFFF
            c = u32[(meta(zp) + pm_priv) << 1] & 0xFFFF
            size = u32[(zcls + c * R.ZCLASS_REC + R.ZC_SIZE) >> 2]
            o = PHYS + (zp << PAGE_SHIFT) + obj * size
            u8[o : o + len(data)] = data

        # ---------------------------------------------------------------- zswap
        def drop_locked(slot: int, h: int) -> None:
            q[szmm8 + slot] = 0
            if h == ZERO_HANDLE:
                return
            lru_del(slot)
            zs_free(h)
            q[H(R.H_ZMM_STORED)] -= 1
            q[H(R.H_ZMM_BYTES)] -= h & 0xFFFF

        def store(slot: int, pfn: int) -> bool:
            if q[szmm8 + slot]:
                invalidate(slot)                          # a stale copy of an earlier swap-out
            o = PHYS + (pfn << PAGE_SHIFT)
            data = bytes(u8[o : o + PAGE_SIZE])
            if data == _ZERO:
                q[szmm8 + slot] = ZERO_HANDLE
                q[ev + VE.SWPOUT_ZERO] += 1
                return True
            if not self.enabled:
                return False
            c = comp(data)
            if len(c) > threshold:
                at_inc(R.H_ZMM_REJ_POOR)
                return False
            if q[H(R.H_ZMM_FULL)] or q[H(R.H_ZMM_POOL_PAGES)] >= max_pages:
                # over the limit: refuse until the pool drops below the accept threshold
                if not q[H(R.H_ZMM_FULL)]:
                    at_inc(R.H_ZMM_LIMIT_HIT)
                q[H(R.H_ZMM_FULL)] = 1
                if writeback_on:
                    shrink(max(1, q[H(R.H_ZMM_POOL_PAGES)] - accept_pages) * 2)
                if q[H(R.H_ZMM_POOL_PAGES)] > accept_pages:
                    at_inc(R.H_ZMM_REJ_LIMIT)
                    return False
                q[H(R.H_ZMM_FULL)] = 0
            zlock(lw)
            try:
                h = zs_malloc(len(c))
                if not h:
                    at_inc_locked(R.H_ZMM_REJ_ALLOC)
                    return False
                obj_write(h, c)
                q[szmm8 + slot] = h
                lru_add(slot)
                q[H(R.H_ZMM_STORED)] += 1
                q[H(R.H_ZMM_BYTES)] += len(c)
            finally:
                zunlock(lw)
            q[ev + VE.ZSWPOUT] += 1
            return True

        def at_inc(field: int) -> None:
            zlock(lw)
            q[H(field)] += 1
            zunlock(lw)

        def at_inc_locked(field: int) -> None:
            q[H(field)] += 1

        def load_copy(slot: int, pfn: int, drop: bool = False) -> int:
            """The slot's copy (compressed, or the zero marker) read into pfn: its handle,
            or 0 (none: read the file).  Left in the pool for load_drop once the folio
            holds the data -- so a CPU dying in between loses nothing (robust mode's
            swap-in) -- unless `drop`: then it goes under the same &zmm->lock hold
            (load: one round trip)."""
            h = q[szmm8 + slot]
            if not h:
                return 0
            o = PHYS + (pfn << PAGE_SHIFT)
            zlock(lw)
            try:
                if q[szmm8 + slot] != h:
                    return 0                               # written back meanwhile: read the file
                data = obj_bytes(h) if h != ZERO_HANDLE else b""
                if drop:
                    drop_locked(slot, h)
            finally:
                zunlock(lw)
            if h == ZERO_HANDLE:
                u8[o : o + PAGE_SIZE] = _ZERO
                q[ev + VE.SWPIN_ZERO] += 1
            else:
                u8[o : o + PAGE_SIZE] = decomp(data)
                q[ev + VE.ZSWPIN] += 1
            return h

        def load_drop(slot: int, h: int) -> None:
            """The copy load_copy read goes (zswap's exclusive load), unless written back
            or replaced meanwhile."""
            zlock(lw)
            try:
                if q[szmm8 + slot] == h:
                    drop_locked(slot, h)
            finally:
                zunlock(lw)

        def load(slot: int, pfn: int) -> bool:
            """zswap's exclusive load: the copy read into pfn and dropped."""
            return bool(load_copy(slot, pfn, True))

        def invalidate(slot: int) -> None:
            h = q[szmm8 + slot]
            if not h:
                return
            zlock(lw)
            try:
                h = q[szmm8 + slot]
                if h:
                    drop_locked(slot, h)
            finally:
                zunlock(lw)

        def shrink(nr: int) -> int:
            """zswap_shrinker / shrink_worker: write the LRU's oldest entries back to the
            swap file (each under its slot's &ci->lock, see the module docstring)."""
            done = 0
            wr, sl, su = self.write_slot, self.slot_lock, self.slot_unlock
            if wr is None or sl is None or su is None:
                return 0
            stab8 = off.stab >> 3
            for _ in range(nr * 2):
                if done >= nr:
                    break
                zlock(lw)
                slot = q[H(R.H_ZMM_LRU_HEAD)]
                if slot == NIL:
                    zunlock(lw)
                    break
                lru_del(slot)                              # rotate out; re-added if skipped
                lru_add(slot)
                zunlock(lw)
                sl(slot)
                try:
                    h = q[szmm8 + slot]
                    e = q[stab8 + slot]
                    if h <= ZERO_HANDLE or (e and not e & 3):
                        continue                           # gone, or a folio is in the swap cache
                    data = decomp(obj_bytes(h))
                    wr(slot, data)
                    zlock(lw)
                    if q[szmm8 + slot] == h:
                        drop_locked(slot, h)
                        q[H(R.H_ZMM_WB)] += 1
                    zunlock(lw)
                    q[ev + VE.ZSWPWB] += 1
                    done += 1
                finally:
                    su(slot)
            return done

        def stored(slot: int) -> bool:
            return bool(q[szmm8 + slot])

        self.store, self.load, self.invalidate, self.shrink, self.stored = store, load, invalidate, shrink, stored
        self.load_copy, self.load_drop = load_copy, load_drop
        self.zs_malloc, self.zs_free, self.obj_bytes = zs_malloc, zs_free, obj_bytes


def zs_class(arena: Any, off: R.Off, c: int) -> tuple[int, int, int]:
    """Size class c: (object size, pages of a zspage, objects of a zspage)."""
    u32 = arena.u32
    zc = off.zcls + c * R.ZCLASS_REC
    return u32[(zc + R.ZC_SIZE) >> 2], u32[(zc + R.ZC_PAGES) >> 2], u32[(zc + R.ZC_OBJS) >> 2]


def zmm_handles(arena: Any, off: R.Off) -> dict[int, list[tuple[int, int, int]]]:
    """{zspage pfn: [(object index, slot, compressed length), ...]} of every stored copy
    (the handle words: the pool's truth, module docstring "Crash tolerance")."""
    import numpy as np

    n = off.nr_slots
    if not n:
        return {}
    szmm = np.frombuffer(arena.view(off.szmm, 8 * n), dtype=np.uint64).copy()
    out: dict[int, list[tuple[int, int, int]]] = {}
    for s in np.flatnonzero(szmm > ZERO_HANDLE).tolist():
        h = int(szmm[s])
        out.setdefault((h >> 32) - 1, []).append(((h >> 16) & 0xFFFF, s, h & 0xFFFF))
    return out


def zspage_partial(arena: Any, off: R.Off, c: int, nr_pages: int) -> tuple[list[int], bool]:
    """Class c's partial list, walked from its head: (zspages, whole) -- whole False if a
    link names no page, a page twice, or a zspage of another class (the walk stops)."""
    q = arena.u64
    pm = arena.off("pagemeta")
    out: list[int] = []
    seen: set[int] = set()
    cur = q[(off.zcls + c * R.ZCLASS_REC + R.ZC_PARTIAL) >> 3]
    while cur:
        zp = cur - 1
        if zp >= nr_pages or zp in seen or q[(pm + zp * PAGE_META_SIZE + P_PRIVATE) >> 3] & 0xFFFF != c:
            return out, False
        out.append(zp)
        seen.add(zp)
        cur = q[(pm + zp * PAGE_META_SIZE + P_INDEX) >> 3]
    return out, True


def zspage_free_objs(arena: Any, zp: int, size: int, nobj: int) -> tuple[list[int], bool]:
    """The zspage's free list from its head (meta private >> 32): (objects, whole) --
    whole False if it names an object out of range or one twice."""
    q, u8 = arena.u64, arena.u8
    o = arena.off("physmem") + (zp << PAGE_SHIFT)
    cur = q[(arena.off("pagemeta") + zp * PAGE_META_SIZE + P_PRIVATE) >> 3] >> 32
    out: list[int] = []
    seen: set[int] = set()
    while cur != NOFREE:
        if cur >= nobj or cur in seen:
            return out, False
        out.append(cur)
        seen.add(cur)
        cur = int.from_bytes(u8[o + cur * size : o + cur * size + 2], "little")
    return out, True


def zmm_stats(arena: Any) -> dict[str, Any]:
    """zswap's debugfs figures plus the compression ratio (stored pages x 4096 /
    compressed bytes)."""
    if "reclaim" not in arena.sections:
        return {}
    base = arena.off("reclaim")
    q = arena.u64

    def h(f: int) -> int:
        return q[(base + f) >> 3]

    stored, nbytes = h(R.H_ZMM_STORED), h(R.H_ZMM_BYTES)
    return {"stored_pages": stored, "pool_total_size": h(R.H_ZMM_POOL_PAGES) * PAGE_SIZE,
            "pool_pages": h(R.H_ZMM_POOL_PAGES), "compressed_bytes": nbytes,
            "reject_compress_poor": h(R.H_ZMM_REJ_POOR), "reject_alloc_fail": h(R.H_ZMM_REJ_ALLOC),
            "reject_reclaim_fail": h(R.H_ZMM_REJ_LIMIT), "pool_limit_hit": h(R.H_ZMM_LIMIT_HIT),
            "written_back_pages": h(R.H_ZMM_WB),
            "compression_ratio": round(stored * PAGE_SIZE / nbytes, 3) if nbytes else 0.0,
            "max_pool_pages": h(R.H_ZMM_MAX_PAGES)}
