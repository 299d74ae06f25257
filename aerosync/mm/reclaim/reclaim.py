"""One CPU's reclaim handle, plugged into its VM: the LRU, swap, ZMM, writeback, OOM.

Models: what a CPU's memory-pressure path is in Linux -- folio_add_lru on every new user
folio, do_swap_page on a swap PTE, swap_free on unmap, swap_duplicate on fork, the
allocation slow path's wakeup_kswapd / __alloc_pages_direct_reclaim / out_of_memory,
__folio_put's LRU unlink.  Unit: one simulated CPU (a worker, kswapd, the flusher, a
test), built by `attach(vm)`; mm/vm/vm.py calls it for every VM handle of an arena with
a "reclaim" section.

Hooks it sets:
  vm.ext.lru_add, swap_fault, zap_swap, dup_swap, obj_swap_fault   (mm/vm/memory.py)
  vm.objs.hooks.value_put / value_replaced                          (mm/vm/vm_object.py)
  vm.ext.mark_lazyfree (MADV_FREE), balance_dirty_pages_ratelimited (shared file write fault)
  vm.mm.reclaim = slowpath, vm.mm.reclaim_lru_del(_many) = lru_del(_many)         (mm/pmm/page_alloc.py)
  vm.mm.wakeup_kswapd = scan.wakeup_kswapd_zone (rmqueue's wake for a boosted zone)

The slow path (`slowpath(gfp, order, zids, attempt)`, called by __alloc_pages_slowpath):
wake kswapd (__GFP_KSWAPD_RECLAIM), retry at the MIN mark; then, for
__GFP_DIRECT_RECLAIM, direct reclaim (allocstall) and retry, up to MAX_RECLAIM_RETRIES
rounds without progress, sleeping a little between rounds without progress
(reclaim_throttle); then the OOM killer (oom_kill.py) and a last retry.  Reclaim never
recurses: an allocation made while this CPU reclaims (ZMM's zspages, a swap-in during
writeback) only retries at MIN (PF_MEMALLOC).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aerosync.mm.pmm.gfp import __GFP_DIRECT_RECLAIM as _GFP_DIRECT_RECLAIM
from aerosync.mm.pmm.gfp import __GFP_KSWAPD_RECLAIM as _GFP_KSWAPD_RECLAIM
from aerosync.mm.pmm.gfp import __GFP_NORETRY as _GFP_NORETRY
from aerosync.mm.pmm.gfp import MAX_NR_ZONES
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.lru_gen import LruGen
from aerosync.mm.reclaim.oom_kill import task_killed
from aerosync.mm.reclaim.page_writeback import Writeback
from aerosync.mm.reclaim.rmap_ops import RmapOps
from aerosync.mm.reclaim.swap import Lru
from aerosync.mm.reclaim.swap_state import FolioLock, SwapState
from aerosync.mm.reclaim.swapfile import SwapDev
from aerosync.mm.reclaim.vmscan import MAX_RECLAIM_RETRIES, Vmscan
from aerosync.mm.reclaim.workingset import Workingset, is_shadow
from aerosync.mm.reclaim.zmm import Zmm
from aerosync.mm.vm.pgtable import swp_offset, swp_type
from aerosync.sync.objlock import ObjSpinLock

__all__ = ["Reclaim", "attach"]


class Reclaim:
    """The reclaim subsystem as seen by one CPU (attributes are its parts: lru, dev, zmm,
    swap, scan, gen, writeback, ws, rops; see the module docstring)."""

    def __init__(self, vm: Any) -> None:
        arena, cpu = vm.arena, vm.cpu
        self.arena, self.cpu, self.vm = arena, cpu, vm
        off = R.Off(arena)
        self.off = off
        q = arena.u64
        base = off.base

        def cls(field: int) -> ObjSpinLock:
            return ObjSpinLock(arena, q[(base + field) >> 3], cpu)

        self.lru_lock, si_lock, ci_lock, zmm_lock = cls(R.H_CLS_LRU), cls(R.H_CLS_SI), cls(R.H_CLS_CI), cls(R.H_CLS_ZMM)
        self.lru = lru = Lru(arena, cpu, vm.mm, self.lru_lock)
        self.flock = flock = FolioLock(arena)
        self.dev = dev = SwapDev(arena, cpu, off, ci_lock, si_lock) if off.nr_slots else None
        self.zmm = zmm = Zmm(arena, cpu, vm.mm, off, zmm_lock, dev) if off.nr_slots else None
        if dev is not None and zmm is not None:
            dev.invalidate = zmm.invalidate
        self.ws = ws = Workingset(arena, cpu, lru)
        self.rops = rops = RmapOps(vm, dev.dup if dev is not None else _no_swap)
        self.swap = sst = SwapState(vm, lru, dev, zmm, ws, flock) if dev is not None else None
        if zmm is not None and sst is not None:
            zmm.write_slot = sst.write_slot
        self.writeback = wb = Writeback(vm, rops, flock)
        self.scan = scan = Vmscan(vm, lru, rops, sst, dev, ws, flock, wb)
        self.gen = None
        if lru.mglru:
            self.gen = LruGen(vm, lru, rops, scan, flock)
            scan.gen = self.gen
            lru.place = self.gen.place
        else:
            lru.place = scan.place_classic
        self.in_reclaim = False
        self.oom: Any = None
        from aerosync.mm.reclaim.oom_kill import OomKiller

        self.oom = OomKiller(vm, self)
        self._plug(vm)

    def _plug(self, vm: Any) -> None:
        ext = vm.ext
        ext.lru_add = self.lru.lru_add
        if self.swap is not None:
            ext.swap_fault = self.swap.do_swap_page
            ext.obj_swap_fault = self.swap.do_obj_swap
            dev = self.dev
            free_swap_and_cache = self.swap.free_swap_and_cache

            def zap_swap(mm_id: int, e: int) -> None:
                """An unmapped swap PTE: its count goes (and a swap-cache folio nothing
                else holds: free_swap_and_cache), and the mm's swap entries."""
                if swp_type(e) != 0:
                    return                                 # migration / hwpoison entries
                free_swap_and_cache(swp_offset(e))
                self.arena.atomic.fetch_add64(_swapents(self.arena, mm_id), (1 << 64) - 1)

            def dup_swap(e: int) -> None:
                if swp_type(e) == 0:
                    dev.dup(swp_offset(e))

            ext.zap_swap, ext.dup_swap = zap_swap, dup_swap
            vm.objs.hooks.value_put = self.swap.value_put
        vm.objs.hooks.value_replaced = self._value_replaced
        vm.mm.reclaim = self.slowpath
        vm.mm.wakeup_kswapd = self.scan.wakeup_kswapd_zone
        ext.mark_lazyfree = self.scan.mark_lazyfree
        ext.balance_dirty_pages_ratelimited = self.writeback.balance_dirty_pages_ratelimited
        vm.mm.reclaim_lru_del = self.lru.lru_del
        vm.mm.reclaim_lru_del_many = self.lru.lru_del_many
        if self.swap is not None:
            self.swap.lru_add = self.lru.lru_add

    def _value_replaced(self, obj: int, idx: int, old: int, pfn: int) -> None:
        """A folio enters an object's tree over a value entry: a page-cache refault over
        its shadow (workingset_refault)."""
        if is_shadow(old):
            self.ws.refault(pfn, old)

    # ------------------------------------------------------------------ slow path
    def slowpath(self, gfp: int, order: int, zids: tuple[int, ...], attempt: Callable[[], tuple[int, int]]
                 ) -> tuple[int, int]:
        if self.in_reclaim:
            return attempt()
        hz = max((z % MAX_NR_ZONES for z in zids), default=0)
        if gfp & _GFP_KSWAPD_RECLAIM:
            self.scan.wakeup_kswapd(zids, order, hz)
        r = attempt()
        if r[0] >= 0 or not gfp & _GFP_DIRECT_RECLAIM:
            return r
        no_progress = 0
        tid = self.vm.current_task()
        for _ in range(MAX_RECLAIM_RETRIES * 4):
            if tid >= 0 and task_killed(self.arena, tid):
                return r                               # an OOM victim does not loop (its fault
                #                                        ends, its VMA locks go, the reaper runs)
            self.in_reclaim = True
            try:
                n = self.scan.try_to_free_pages(zids, order, gfp)
            finally:
                self.in_reclaim = False
            r = attempt()
            if r[0] >= 0:
                return r
            if n:
                no_progress = 0
                continue
            no_progress += 1
            if no_progress >= MAX_RECLAIM_RETRIES:
                break
            self.vm.poll()
            time.sleep(0.0005 * no_progress)           # reclaim_throttle(VMSCAN_THROTTLE_NOPROGRESS)
        if gfp & _GFP_NORETRY or self.oom is None or order > 3:
            return r
        self.in_reclaim = True
        try:
            killed = self.oom.out_of_memory(gfp, order, zids)
        finally:
            self.in_reclaim = False
        if killed:
            if tid >= 0 and task_killed(self.arena, tid):
                return r                               # the victim is us: fail, the fault's exit
                #                                        delivers the SIGKILL (pagefault_out_of_memory)
            for _ in range(50):
                r = attempt()
                if r[0] >= 0:
                    return r
                self.vm.poll()
                time.sleep(0.002)
        return r

    # ------------------------------------------------------------------ teardown
    def leave(self) -> None:
        """This CPU stops: its LRU batch drained, its swap cluster given back, files closed."""
        self.lru.lru_add_drain()
        if self.dev is not None:
            self.dev.leave()
        if self.swap is not None:
            self.swap.close()
        self.writeback.close()


def _no_swap(offset: int, n: int = 1) -> None:
    raise AssertionError("swap_duplicate without a swap device")


def _swapents(arena: Any, mm_id: int) -> int:
    from aerosync.mm.vm import mm_types as T

    return T.mm_off(arena, mm_id) + T.M_RSS + 8 * T.MM_SWAPENTS


def attach(vm: Any) -> Reclaim | None:
    """Reclaim for this VM handle, when the arena has reclaim (mm/vm/vm.py calls this)."""
    if not R.reclaim_ready(vm.arena):
        return None
    return Reclaim(vm)
