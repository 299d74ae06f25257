"""Writeback of dirty page-cache folios to their real files; dirty limits and throttling.

Models: mm/page-writeback.c (global_dirty_limits from dirty_ratio and
dirty_background_ratio over dirtyable memory = free + file pages; balance_dirty_pages
throttling a writer above the midpoint of the two thresholds with a pause growing with
the excess, up to MAX_PAUSE = 200 ms, until a pause or stop of the machine (the
fatal_signal_pending / freezer exit, so a throttled worker parks in bounded time);
balance_dirty_pages_ratelimited every 32 pages dirtied by a CPU;
folio_clear_dirty_for_io with folio_mkclean), fs/fs-writeback.c (the flusher: wakes
every dirty_writeback_centisecs, or when a writer crosses the background
threshold, and writes dirty folios back), mm/msync.c and fsync.  Unit: one folio of a
file's page cache; writes are 4 KiB pwrite calls at index x 4096 of the real file.

A folio being written is locked (PG_locked) and PG_writeback; its PTEs were
write-protected and cleaned first (folio_mkclean), so a later store faults and dirties
it again (wp_page_shared).  The flusher and the throttle (WB_SYNC_NONE) skip a folio
someone else has locked; msync and fsync (WB_SYNC_ALL) wait for it, holding a reference,
and write it if it is still the file's.  A generated (pattern) file has no backing store: its dirty
folios stay dirty and are never reclaimed (reclaim activates them).

Callers: write() paths and the shared file write fault (mm/vm/memory.py finish(), through
the vm.ext.balance_dirty_pages_ratelimited hook, after the fault's locks are gone).

Counters: nr_dirty (mm/vm/memory.py set_dirty), nr_writeback, nr_written, nr_dirtied,
pgpgout; the header keeps the thresholds last computed, throttle events and pause time.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aerosync.arena import layout as AL
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.page import P_INDEX, P_MAPPING, PG_dirty, PG_writeback, folio_try_get_fn
from aerosync.mm.reclaim import layout as R
from aerosync.mm.vm import filemap as FM
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import vma as V
from aerosync.mm.vm.vm_object import O_FILE, O_TREE, O_TYPE, OBJ_VNODE
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["Writeback", "dirty_limits", "MAX_PAUSE_S", "RATELIMIT_PAGES"]

MAX_PAUSE_S = 0.2
RATELIMIT_PAGES = 32
_ALL32 = 0xFFFF_FFFF


def dirty_limits(arena: Any) -> tuple[int, int, int]:
    """(background threshold, threshold, dirty + writeback now) in pages."""
    base = arena.off("reclaim")
    q = arena.u64
    st = VE.fold_node_stats(arena)
    file_pages = sum(n["nr_file_pages"] for n in st)
    nz = q[(arena.off("mmzones") + Z.G_NR_ZONES) >> 3]
    free = sum(q[(Z.zone_off(arena, z) + Z.Z_NR_FREE_PAGES) >> 3] for z in range(nz))
    avail = free + file_pages
    bg = avail * q[(base + R.H_DIRTY_BG_RATIO) >> 3] // 100
    th = avail * q[(base + R.H_DIRTY_RATIO) >> 3] // 100
    if bg >= th:
        bg = th // 2
    dirty = sum(n["nr_dirty"] + n["nr_writeback"] for n in st)
    return bg, th, dirty


class Writeback:
    """One CPU's writeback (closures): writepage(pfn) -> bool (folio locked by the caller),
    write_folio(pfn) (lock, mkclean, write if dirty), writeback_file(fid, first, last) ->
    pages written, flush_dirty(budget) -> pages written (the flusher's pass),
    balance_dirty_pages_ratelimited(n), msync(mm_id, addr, length), fsync(fid)."""

    def __init__(self, vm: Any, rops: Any, flock: Any) -> None:
        arena, cpu = vm.arena, vm.cpu
        q, u32, u8, i64, at = arena.u64, arena.u32, arena.u8, arena.i64, arena.atomic
        fetch_or32, fetch_and32 = at.fetch_or32, at.fetch_and32
        PHYS = arena.off("physmem")
        PM = arena.off("pagemeta")
        PM4, PM8 = PM >> 2, PM >> 3
        MW4, MW8 = PAGE_META_SIZE >> 2, PAGE_META_SIZE >> 3
        i_map, i_idx = P_MAPPING >> 3, P_INDEX >> 3
        base = arena.off("reclaim")
        ev = VE.vm_event_base(arena, cpu)
        ns = VE.node_stat_base(arena, cpu)
        NS = VE.NR_NODE_STATS
        fds: dict[int, int] = {}
        try_get = folio_try_get_fn(arena)
        pc_dirtied = [0]
        xa_items = vm.xa.items

        def nid_of(pfn: int) -> int:
            return u8[PM + pfn * PAGE_META_SIZE + 7]

        def file_of(pfn: int) -> int:
            m = q[PM8 + pfn * MW8 + i_map]
            o = m & ~3
            if not o or m & 1 or (u32[(o + O_TYPE) >> 2] & 0xFFFF) != OBJ_VNODE:
                return -1
            return u32[(o + O_FILE) >> 2] - 1

        def fd_of(fid: int) -> int:
            f = fds.get(fid)
            if f is None:
                f = os.open(FM.file_path(arena, fid), os.O_WRONLY)
                fds[fid] = f
            return f

        def writepage(pfn: int) -> bool:
            """pageout() of a locked, unmapped-or-cleaned dirty file folio."""
            fid = file_of(pfn)
            if fid < 0 or not q[(T.file_off(arena, fid) + T.F_FLAGS) >> 3] & T.FILE_REAL:
                return False
            b4 = PM4 + pfn * MW4
            nid = nid_of(pfn)
            old = fetch_and32(b4 << 2, ~PG_dirty & _ALL32)
            if old & PG_dirty:
                i64[ns + nid * NS + VE.NR_DIRTY] -= 1
            fetch_or32(b4 << 2, PG_writeback)
            i64[ns + nid * NS + VE.NR_WRITEBACK] += 1
            try:
                o = PHYS + (pfn << PAGE_SHIFT)
                os.pwrite(fd_of(fid), bytes(u8[o : o + PAGE_SIZE]), q[PM8 + pfn * MW8 + i_idx] * PAGE_SIZE)
            finally:
                fetch_and32(b4 << 2, ~PG_writeback & _ALL32)
                i64[ns + nid * NS + VE.NR_WRITEBACK] -= 1
            i64[ns + nid * NS + VE.NR_WRITTEN] += 1
            q[ev + VE.PGPGOUT] += PAGE_SIZE >> 10
            return True

        def write_locked(pfn: int) -> int:
            """folio_clear_dirty_for_io + writepage of a folio locked by the caller."""
            if u32[PM4 + pfn * MW4 + 3] and rops.mkclean(pfn):
                vm.memory.set_dirty(pfn)
            if not u32[PM4 + pfn * MW4] & PG_dirty:
                return 0
            return 1 if writepage(pfn) else 0

        def write_folio(pfn: int) -> int:
            """WB_SYNC_NONE: a folio found in a file's tree, skipped if locked (reclaim or
            another writer has it)."""
            if not flock.trylock(pfn):
                return 0
            try:
                return write_locked(pfn)
            finally:
                flock.unlock(pfn)

        def write_folio_sync(pfn: int, obj: int, idx: int) -> int:
            """WB_SYNC_ALL (msync, fsync): a locked folio is waited for -- skipping it, as
            the flusher does, lost a store its PTE had made dirty whenever reclaim held
            the lock and kept the folio (the file kept the older data).  A reference
            first (the folio cannot be freed and reused while we wait) and a check that
            it is still the file's folio at idx (the tree was read without one: else a
            page reused meanwhile), then the lock and write_cache_pages' check again."""
            if not try_get(pfn):
                return 0                                 # being freed: written or dropped clean
            try:
                b8 = PM8 + pfn * MW8
                if q[b8 + i_map] & ~3 != obj or q[b8 + i_idx] != idx:
                    return 0                             # reused meanwhile: never lock a stranger
                flock.lock(pfn)
                try:
                    if q[b8 + i_map] & ~3 != obj or q[b8 + i_idx] != idx:    # (gone while we waited)
                        return 0
                    return write_locked(pfn)
                finally:
                    flock.unlock(pfn)
            finally:
                vm.mm.free_pages(pfn, 0)                 # folio_put

        def writeback_file(fid: int, first: int = 0, last: int = (1 << 63), sync: bool = False) -> int:
            fo = T.file_off(arena, fid)
            if q[(fo + T.F_STATE) >> 3] != FM.FILE_LIVE or not q[(fo + T.F_FLAGS) >> 3] & T.FILE_REAL:
                return 0
            obj = q[(fo + T.F_OBJ) >> 3]
            n = 0
            for idx, e in xa_items(obj + O_TREE, first, last):
                if not e or e & 3:
                    continue
                pfn = e >> 2
                if u32[PM4 + pfn * MW4] & PG_dirty or u32[PM4 + pfn * MW4 + 3]:
                    n += write_folio_sync(pfn, obj, idx) if sync else write_folio(pfn)
            return n

        def flush_dirty(budget: int = 1 << 30) -> int:
            """The flusher's pass: dirty folios of every real file, up to budget pages."""
            n = 0
            nf = q[(arena.off("vmhdr") + T.H_MAX_FILES) >> 3]
            for fid in range(nf):
                if n >= budget:
                    break
                n += writeback_file(fid)
            q[(base + R.H_WB_RUNS) >> 3] += 1
            return n

        def balance_dirty_pages() -> None:
            pause = 0.0
            while True:
                bg, th, dirty = dirty_limits(arena)
                q[(base + R.H_BG_THRESH) >> 3], q[(base + R.H_DIRTY_THRESH) >> 3] = bg, th
                if dirty > bg:
                    at.store64(base + R.H_FLUSH_WAKE, 1)
                freerun = (bg + th) // 2
                if dirty <= freerun or th <= 0:
                    return
                if not q[(base + R.H_KT_BASE) >> 3]:
                    flush_dirty(RATELIMIT_PAGES)           # no flusher: the writer writes
                pause = min(MAX_PAUSE_S, max(0.001, pause * 2 or 0.002 * (dirty - freerun) / max(1, th - freerun)))
                at.fetch_add64(base + R.H_THROTTLED, 1)
                at.fetch_add64(base + R.H_PAUSE_NS, int(pause * 1e9))
                t_end = time.monotonic() + pause
                while time.monotonic() < t_end:
                    vm.poll()
                    time.sleep(min(0.002, pause))
                if at.load64(AL.H_RUN_STATE) >= AL.RUN_STOP:        # STOP, ABORT, PAUSE
                    return              # a pause or stop of the machine: let the writer park
                if dirty <= th and pause >= MAX_PAUSE_S:
                    return

        def balance_dirty_pages_ratelimited(n: int = 1) -> None:
            pc_dirtied[0] += n
            i64[ns + VE.NR_DIRTIED] += n
            if pc_dirtied[0] >= RATELIMIT_PAGES:
                pc_dirtied[0] = 0
                balance_dirty_pages()

        def msync(mm_id: int, addr: int, length: int) -> int:
            """msync(MS_SYNC): write back the dirty file pages mapped in the range."""
            n = 0
            for vma in vm.vmas.between(mm_id, addr, addr + length) if hasattr(vm.vmas, "between") else \
                    [e for _f, _l, e in vm.vmas.tree(mm_id).mt_for_each(addr, addr + length - 1)]:
                fid = q[(vma + V.V_FILE) >> 3] - 1
                if fid < 0 or not q[(vma + V.V_FLAGS) >> 3] & V.VM_SHARED:
                    continue
                s, e = max(addr, q[(vma + V.V_START) >> 3]), min(addr + length, q[(vma + V.V_END) >> 3])
                pg = q[(vma + V.V_PGOFF) >> 3]
                first = pg + ((s - q[(vma + V.V_START) >> 3]) >> PAGE_SHIFT)
                n += writeback_file(fid, first, first + ((e - s) >> PAGE_SHIFT) - 1, sync=True)
            return n

        def fsync(fid: int) -> int:
            return writeback_file(fid, sync=True)

        def close() -> None:
            for f in fds.values():
                os.close(f)
            fds.clear()

        self.writepage, self.write_folio, self.writeback_file, self.flush_dirty = (writepage, write_folio,
                                                                                  writeback_file, flush_dirty)
        self.balance_dirty_pages = balance_dirty_pages
        self.balance_dirty_pages_ratelimited = balance_dirty_pages_ratelimited
        self.msync, self.fsync, self.close = msync, fsync, close
