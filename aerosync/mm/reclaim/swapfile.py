"""The swap device: a real file, its swap_map, clusters and per-CPU clusters.

Models: mm/swapfile.c as of Linux 6.x (swapon with a mkswap-style header page, the
cluster allocator: SWAPFILE_CLUSTER-slot clusters on free / nonfull / full / frag lists,
each CPU allocating from its own current cluster; swap_duplicate / swap_free /
put_swap_folio; si_swapinfo; /proc/swaps).  Unit: one slot (offset) of the one device
(swap type 0); a slot is 4 KiB at byte offset slot * 4096 of the file.

swap_map (u32 per slot, under the slot's &ci->lock): count of references (swap PTEs and
object-tree swap entries) | SWAP_HAS_CACHE while a folio for the slot is in the swap
cache | SWAP_MAP_BAD for slot 0 (the header page).  Linux keeps a byte per slot with
continuation pages past SWAP_MAP_MAX (0x3e); here 30 bits of count need none.  A slot
is free when its word is 0; freeing it clears its swap-table word (a shadow) and its
ZMM copy (the `invalidate` callback).

Clusters (CLUSTER_REC each): &ci->lock, count of used slots, which list it is on.
Lists (header: free, nonfull, full, frag) change under &si->lock; lock order si -> ci.
A CPU's current cluster is on no list (CL_NONE, owned); the CPU allocates in it
sequentially under &ci->lock and puts it on the full list when it finds no free slot
(or gives it back, nonfull, when the CPU leaves).  Frees that empty a listed cluster
move it to the free list; a full cluster that gains a free slot moves to nonfull.

Invariants (reclaim/check.py): SW1 each slot's count equals the swap PTEs plus the
object-tree entries naming it; SW2 SWAP_HAS_CACHE iff the swap table holds a folio
whose PG_swapcache is set and private names the slot; SW3 each cluster's count equals
its non-free slots and inuse_pages their sum; SW4 every cluster is on the list its
count says (or owned by one CPU).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from aerosync.errors import AeroSyncError
from aerosync.mm.reclaim import layout as R
from aerosync.params import PAGE_SIZE

__all__ = ["swapon", "swapoff", "SwapDev", "proc_swaps", "si_swapinfo", "SWAP_HEADER_MAGIC"]

SWAP_HEADER_MAGIC = b"SWAPSPACE2"
NIL = 0xFFFF_FFFF
_CL = R.SWAPFILE_CLUSTER


def swapon(arena: Any, off: R.Off, path: str, slots: int) -> None:
    """Create and size the swap file, write its header, put every cluster on the free
    list (cluster 0: nonfull, its slot 0 is the header page, SWAP_MAP_BAD)."""
    if len(path.encode()) >= R.SWAP_PATH_MAX:
        raise AeroSyncError(f"swapon: path {path!r} longer than {R.SWAP_PATH_MAX - 1} bytes")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        raise AeroSyncError(f"swapon: cannot create swap file {path!r}: {e.strerror}") from None
    try:
        try:
            os.posix_fallocate(fd, 0, slots * PAGE_SIZE)
        except OSError as e:
            os.close(fd)
            fd = -1
            os.unlink(path)
            raise AeroSyncError(f"swapon: cannot size swap file {path!r} to {slots * PAGE_SIZE} bytes: "
                                f"{e.strerror}") from None
        hdr = bytearray(PAGE_SIZE)
        hdr[1024:1028] = (1).to_bytes(4, "little")                 # version
        hdr[1028:1032] = (slots - 1).to_bytes(4, "little")         # last_page
        hdr[PAGE_SIZE - 10:] = SWAP_HEADER_MAGIC
        os.pwrite(fd, bytes(hdr), 0)
    finally:
        if fd >= 0:
            os.close(fd)
    q, u32 = arena.u64, arena.u32
    base = off.base
    raw = path.encode()
    arena.u8[base + R.H_SWAP_PATH : base + R.H_SWAP_PATH + len(raw)] = raw
    for h in R.CL_HEADS.values():
        arena.u32[(base + h) >> 2] = NIL
        arena.u32[(base + h + 4) >> 2] = NIL
    u32[off.smap >> 2] = R.SWAP_MAP_BAD
    nr = off.nr_clusters
    for c in range(nr):
        ci = off.clus + c * R.CLUSTER_REC
        last = min(slots, (c + 1) * _CL) - c * _CL
        u32[(ci + R.CI_COUNT) >> 2] = (1 if c == 0 else 0) + (_CL - last)    # a short last cluster: absent slots used
        _list_add(arena, off, c, R.CL_NONFULL if c == 0 or last < _CL else R.CL_FREE)
    q[(base + R.H_SWAP_PRIO) >> 3] = (1 << 64) - 2       # -2, as the first swapon without a priority
    q[(base + R.H_SWAP_FLAGS) >> 3] = R.SWP_USED | R.SWP_WRITEOK


def swap_path(arena: Any) -> str:
    o = arena.off("reclaim") + R.H_SWAP_PATH
    return bytes(arena.u8[o : o + R.SWAP_PATH_MAX]).split(b"\0", 1)[0].decode()


def swapoff(arena: Any) -> None:
    """Remove the swap file (end of the run: nothing reads it any more)."""
    if "reclaim" not in arena.sections:
        return
    path = swap_path(arena)
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    arena.u64[(arena.off("reclaim") + R.H_SWAP_FLAGS) >> 3] = 0


def _list_add(arena: Any, off: R.Off, c: int, which: int) -> None:
    """Append cluster c to list `which` (si->lock held)."""
    u32, q = arena.u32, arena.u64
    h = off.base + R.CL_HEADS[which]
    ci = off.clus + c * R.CLUSTER_REC
    tail = u32[(h + 4) >> 2]
    u32[(ci + R.CI_NEXT) >> 2] = NIL
    u32[(ci + R.CI_PREV) >> 2] = tail
    if tail == NIL:
        u32[h >> 2] = c
    else:
        u32[(off.clus + tail * R.CLUSTER_REC + R.CI_NEXT) >> 2] = c
    u32[(h + 4) >> 2] = c
    q[(h + 8) >> 3] += 1
    u32[(ci + R.CI_FLAGS) >> 2] = which


def _list_del(arena: Any, off: R.Off, c: int) -> None:
    u32, q = arena.u32, arena.u64
    ci = off.clus + c * R.CLUSTER_REC
    which = u32[(ci + R.CI_FLAGS) >> 2]
    if which == R.CL_NONE:
        return
    h = off.base + R.CL_HEADS[which]
    nx, pv = u32[(ci + R.CI_NEXT) >> 2], u32[(ci + R.CI_PREV) >> 2]
    if pv == NIL:
        u32[h >> 2] = nx
    else:
        u32[(off.clus + pv * R.CLUSTER_REC + R.CI_NEXT) >> 2] = nx
    if nx == NIL:
        u32[(h + 4) >> 2] = pv
    else:
        u32[(off.clus + nx * R.CLUSTER_REC + R.CI_PREV) >> 2] = pv
    q[(h + 8) >> 3] -= 1
    u32[(ci + R.CI_FLAGS) >> 2] = R.CL_NONE


class SwapDev:
    """One CPU's swap-slot operations (closures):

      get_swap_page() -> offset | -1       a slot with SWAP_HAS_CACHE set (folio_alloc_swap)
      dup(offset, n=1)                     n more references (swap_duplicate)
      put(offset, n=1)                     n references fewer (swap_free); the last one
                                           with no cache frees the slot
      put_cache(offset)                    clear SWAP_HAS_CACHE (the folio left the cache)
      count(offset) -> int                 references (without the cache bit)
      lock_slot(offset) / unlock_slot(offset)   &ci->lock of the slot's cluster
      leave()                              this CPU's current cluster back to the lists
    `invalidate(offset)` (set by the owner: ZMM) runs when a slot is freed, under &ci->lock.
    """

    def __init__(self, arena: Any, cpu: int, off: R.Off, ci_lock: Any, si_lock: Any) -> None:
        self.arena, self.cpu, self.off = arena, cpu, off
        q, u32 = arena.u64, arena.u32
        at = arena.atomic
        base = off.base
        smap4 = off.smap >> 2
        stab8 = off.stab >> 3
        clus = off.clus
        nr_slots, nr_clusters = off.nr_slots, off.nr_clusters
        pc = off.pcpu(cpu)
        my_cl, my_next = (pc + R.PC_CLUSTER) >> 3, (pc + R.PC_CL_NEXT) >> 3
        lk, ulk = ci_lock.lock, ci_lock.unlock
        si_w = base + R.H_SI_LOCK
        inuse = base + R.H_SWAP_INUSE
        HAS, CNT = R.SWAP_HAS_CACHE, R.SWAP_COUNT_MASK
        self.invalidate: Callable[[int], None] | None = None

        def ci_of(offset: int) -> int:
            return clus + (offset // _CL) * R.CLUSTER_REC

        def lock_slot(offset: int) -> None:
            lk(ci_of(offset) + R.CI_LOCK)

        def unlock_slot(offset: int) -> None:
            ulk(ci_of(offset) + R.CI_LOCK)

        def relist(c: int) -> None:
            """Put a listed cluster on the list its count asks for (si -> ci)."""
            ci = clus + c * R.CLUSTER_REC
            si_lock.lock(si_w)
            lk(ci + R.CI_LOCK)
            try:
                which = u32[(ci + R.CI_FLAGS) >> 2]
                if which == R.CL_NONE:
                    return                           # a CPU's current cluster: its owner decides
                n = u32[(ci + R.CI_COUNT) >> 2]
                want = R.CL_FREE if n == 0 else (R.CL_FULL if n >= _CL else R.CL_NONFULL)
                if want != which:
                    _list_del(arena, off, c)
                    _list_add(arena, off, c, want)
            finally:
                ulk(ci + R.CI_LOCK)
                si_lock.unlock(si_w)

        def take_cluster() -> int:
            """A new current cluster for this CPU: nonfull first, then free (si->lock)."""
            si_lock.lock(si_w)
            try:
                for which in (R.CL_NONFULL, R.CL_FREE, R.CL_FRAG):
                    c = u32[(base + R.CL_HEADS[which]) >> 2]
                    if c != NIL:
                        _list_del(arena, off, c)
                        return c
                return -1
            finally:
                si_lock.unlock(si_w)

        def release_cluster(c: int) -> None:
            ci = clus + c * R.CLUSTER_REC
            si_lock.lock(si_w)
            lk(ci + R.CI_LOCK)
            try:
                n = u32[(ci + R.CI_COUNT) >> 2]
                _list_add(arena, off, c, R.CL_FREE if n == 0 else (R.CL_FULL if n >= _CL else R.CL_NONFULL))
            finally:
                ulk(ci + R.CI_LOCK)
                si_lock.unlock(si_w)

        def alloc_in(c: int, start: int) -> int:
            ci = clus + c * R.CLUSTER_REC
            lo, hi = c * _CL, min(nr_slots, (c + 1) * _CL)
            lk(ci + R.CI_LOCK)
            try:
                if u32[(ci + R.CI_COUNT) >> 2] >= _CL:
                    return -1
                for s in (*range(max(lo, start), hi), *range(lo, max(lo, start))):
                    if not u32[smap4 + s]:
                        u32[smap4 + s] = HAS
                        q[stab8 + s] = 0
                        u32[(ci + R.CI_COUNT) >> 2] += 1
                        q[my_next] = s + 1
                        at.fetch_add64(inuse, 1)
                        return s
                return -1
            finally:
                ulk(ci + R.CI_LOCK)

        def get_swap_page() -> int:
            if not nr_slots or not q[(base + R.H_SWAP_FLAGS) >> 3] & R.SWP_WRITEOK:
                return -1
            for _ in range(nr_clusters + 2):
                c = q[my_cl] - 1
                if c >= 0:
                    s = alloc_in(c, q[my_next])
                    if s >= 0:
                        return s
                    q[my_cl] = 0
                    release_cluster(c)                    # full (or close): back on a list
                c = take_cluster()
                if c < 0:
                    return -1
                q[my_cl] = c + 1
                q[my_next] = c * _CL
            return -1

        def free_slot_locked(offset: int) -> None:
            u32[smap4 + offset] = 0
            q[stab8 + offset] = 0
            inv = self.invalidate
            if inv is not None:
                inv(offset)
            u32[(ci_of(offset) + R.CI_COUNT) >> 2] -= 1
            at.fetch_add64(inuse, (1 << 64) - 1)

        def after_free(offset: int) -> None:
            c = offset // _CL
            ci = clus + c * R.CLUSTER_REC
            n = u32[(ci + R.CI_COUNT) >> 2]
            which = u32[(ci + R.CI_FLAGS) >> 2]
            if which != R.CL_NONE and (n == 0 or which == R.CL_FULL):
                relist(c)

        def dup(offset: int, n: int = 1) -> None:
            ci = ci_of(offset)
            lk(ci + R.CI_LOCK)
            w = u32[smap4 + offset]
            if not w & (CNT | HAS) or w & R.SWAP_MAP_BAD:
                ulk(ci + R.CI_LOCK)
                raise AeroSyncError(f"cpu{cpu}: swap_duplicate of free or bad slot {offset} (map {w:#x})")
            u32[smap4 + offset] = w + n
            ulk(ci + R.CI_LOCK)

        def put(offset: int, n: int = 1) -> None:
            ci = ci_of(offset)
            lk(ci + R.CI_LOCK)
            w = u32[smap4 + offset]
            if (w & CNT) < n or w & R.SWAP_MAP_BAD:
                ulk(ci + R.CI_LOCK)
                raise AeroSyncError(f"cpu{cpu}: swap_free of slot {offset}: count {w & CNT} < {n} (map {w:#x})")
            w -= n
            freed = not w
            if freed:
                free_slot_locked(offset)
            else:
                u32[smap4 + offset] = w
            ulk(ci + R.CI_LOCK)
            if freed:
                after_free(offset)

        def put_cache(offset: int) -> None:
            ci = ci_of(offset)
            lk(ci + R.CI_LOCK)
            w = u32[smap4 + offset] & ~HAS
            freed = not w
            if freed:
                free_slot_locked(offset)
            else:
                u32[smap4 + offset] = w
            ulk(ci + R.CI_LOCK)
            if freed:
                after_free(offset)

        def count(offset: int) -> int:
            return u32[smap4 + offset] & CNT

        def leave() -> None:
            c = q[my_cl] - 1
            if c >= 0:
                q[my_cl] = 0
                release_cluster(c)

        self.get_swap_page, self.dup, self.put, self.put_cache, self.count = get_swap_page, dup, put, put_cache, count
        self.lock_slot, self.unlock_slot, self.leave, self.ci_of = lock_slot, unlock_slot, leave, ci_of
        self.smap4, self.stab8 = smap4, stab8


def si_swapinfo(arena: Any) -> dict[str, int]:
    """Pages of swap: total and free (SwapTotal / SwapFree in meminfo), as si_swapinfo."""
    if "reclaim" not in arena.sections:
        return {"total": 0, "free": 0, "inuse": 0}
    base = arena.off("reclaim")
    q = arena.u64
    if not q[(base + R.H_SWAP_FLAGS) >> 3] & R.SWP_USED:
        return {"total": 0, "free": 0, "inuse": 0}
    total = q[(base + R.H_SWAP_SLOTS) >> 3] - 1                  # the header page is not swap
    inuse = q[(base + R.H_SWAP_INUSE) >> 3]
    return {"total": total, "free": total - inuse, "inuse": inuse}


def proc_swaps(arena: Any) -> str:
    """/proc/swaps (mm/swapfile.c swap_show): sizes in KiB, priority signed."""
    lines = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"]
    info = si_swapinfo(arena)
    if info["total"]:
        prio = arena.u64[(arena.off("reclaim") + R.H_SWAP_PRIO) >> 3]
        prio = prio - (1 << 64) if prio >> 63 else prio
        path = swap_path(arena)
        lines.append(f"{path:<40}file\t\t{info['total'] * 4}\t\t{info['inuse'] * 4}\t\t{prio}")
    return "\n".join(lines) + "\n"
