"""Per-CPU TLBs, address-space switches and TLB shootdowns by simulated IPI.

Models: arch/x86/mm/tlb.c (switch_mm_irqs_off with PCID/ASIDs and tlb_gen,
flush_tlb_mm_range, flush_tlb_func, native_flush_tlb_multi skipping lazy CPUs,
tlb_single_page_flush_ceiling, flush_tlb_kernel_range), kernel/smp.c
(smp_call_function_many: per-source request + per-target queue + wait for every
acknowledgement), mm/mmu_gather.c (tlb_gather_mmu, tlb_finish_mmu: free only after the
flush).  Unit: one CPU's TLB (entries keyed by ASID and virtual page), one flush request.

The TLB itself is owner-only data: it lives in this CPU's process (a dict of entries and
a FIFO per set, set-associative as hardware: `tlb_entries` / `tlb_ways`), because only
this CPU ever reads or changes it -- remote CPUs ask, by IPI, and the owner flushes.
An entry is what an access needs, computed once at fill (`tlb_entry`): the arena u64
index of the page's first word << 12 | the leaf's low 12 bits (P, RW, U/S, PWT, PCD, A,
D, PS, G, software).  A hit then addresses the page with one shift and one add instead
of a mask, two shifts and two adds (bench vm tlb_hit_access_ns, A/B medians: 553 -> 486 ns).
NX and the protection key (bits 59-63) are not kept: no access this MMU models executes.
What other CPUs must see is in the arena record "vmcpu" (mm_types.vmcpu_rec_size)::

    line 0   0 ipi_pending u64      senders store 1 after setting their bit below;
                                    the owner polls it (one load per MMU access) and xchg's 0
    line 1  64 loaded_mm u64        mm id + 1 whose tables this CPU uses (0: none)
            72 is_lazy u64          1: the CPU runs no task of loaded_mm (shootdowns skip it;
                                    it flushes on switch back if loaded_mm's tlb_gen moved)
            80 online u64           1 while the CPU answers IPIs (0 after teardown or death)
            88 ctx_id u64           context id of loaded_mm (mm_types M_CTX_ID)
            96 task u64             (vm.py's, not the TLB's: mm_types C_TASK)
    line 2 128 f_ctx u64            this CPU's request as an initiator: context id of the mm
           136 f_start 144 f_end    range to flush (f_end == FLUSH_ALL: the whole context)
           152 f_new_gen            the mm's tlb_gen after the change
           160 f_kind               FLUSH_USER or FLUSH_KERNEL (global entries, any context)
    line 3 192 statistics (owner only): ipis sent, received
    line 4 256 source bitmap: bit s = CPU s has a request pending for this CPU (senders
           fetch_or); then the ack bitmap: bit t = target t has not yet acknowledged this
           CPU's current request (targets fetch_and)

Shootdown protocol (SEQ_CST atomics throughout):
  initiator s:  new_gen = fetch_add(mm.tlb_gen, 1) + 1; flush locally; targets = CPUs in
                mm_cpumask, not s, online, loaded_mm == mm and not lazy (read after the
                fetch_add); write f_*; set the ack bits of every target; for each target t:
                fetch_or(t.source[s]); store(t.ipi_pending, 1).  Wait until the ack bitmap
                is empty, answering its own IPIs meanwhile (two initiators never deadlock)
                and dropping targets that died or went offline (their TLB died with them).
  target t:     xchg(ipi_pending, 0); for each word of its source bitmap, xchg it to 0; for
                each source s: read s's f_*, flush, fetch_and(s.ack[t], ~bit).
  switch_mm:    fetch_or(next.mm_cpumask, cpu); store loaded_mm, ctx_id, is_lazy = 0; then
                load next.tlb_gen: with PCID the ASID holding next's context is kept unless
                its generation is behind (then flushed); without PCID everything
                non-global is flushed (a CR3 write).
  Why no flush is missed: the initiator bumps tlb_gen before reading loaded_mm; a CPU
  switching in stores loaded_mm before reading tlb_gen.  Sequential consistency means
  one of them sees the other: the initiator sends the IPI, or the switching CPU sees the
  new generation and flushes.  A lazy CPU does not use the mm's entries until it switches
  back, which compares generations.
  Where IPIs are answered: at the start of every simulated access (mmu.py), in every lock
  wait (sync/waithook.py hook), while waiting for acknowledgements, between batches and
  while parked at a pause barrier (workers/cpu.py's poll hook).  A CPU is therefore never
  in the middle of a hardware walk or a TLB lookup when it acknowledges.

Invariants (tests/test_tlb.py): TLB1 after flush_tlb_mm_range returns, no online CPU
holds an entry of that mm in the range; TLB2 a page unmapped by zap is freed only after
TLB1 holds for its address (mmu_gather); TLB3 a CPU's entries all belong to loaded_mm's
context or to a kept ASID, or are global.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from aerosync.errors import AeroSyncError
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.pgtable import PTE_PFN_MASK
from aerosync.params import CACHE_LINE, PAGE_SHIFT

__all__ = ["tlb_entry", "tlb_entry_pfn", "FLUSH_ALL", "FLUSH_USER", "FLUSH_KERNEL", "TLB_NR_DYN_ASIDS",
           "KERNEL_ASID", "Tlb", "C_PENDING", "C_LOADED_MM", "C_LAZY", "C_ONLINE", "C_CTX", "cpu_mark_offline"]

FLUSH_ALL = (1 << 64) - 1
FLUSH_USER, FLUSH_KERNEL = 0, 1
TLB_NR_DYN_ASIDS = 6                 # arch/x86/mm/tlb.c
KERNEL_ASID = 0xFFFF                 # key space of global (kernel) entries
C_PENDING, C_LOADED_MM, C_LAZY, C_ONLINE, C_CTX = 0, 64, 72, 80, 88
C_F_CTX, C_F_START, C_F_END, C_F_GEN, C_F_KIND = 128, 136, 144, 152, 160
C_SENT, C_RECEIVED = 192, 200
C_SRC = 4 * CACHE_LINE
_ACK_WAIT_S = 30.0
_ASID_SHIFT = 48


def tlb_entry(e: int, p8: int) -> int:
    """The TLB entry of leaf e (p8: the arena u64 index of physmem); mmu.py and
    kaccess.py inline it."""
    return (p8 + ((e & PTE_PFN_MASK) >> 3)) << 12 | (e & 0xFFF)


def tlb_entry_pfn(x: int, p8: int) -> int:
    """The pfn a TLB entry maps."""
    return ((x >> 12) - p8) >> 9


def cpu_mark_offline(arena: Any, cpu: int) -> None:
    """A CPU that left (teardown, death, hot-unplug) answers no more IPIs: initiators
    stop waiting for it.  Its TLB is gone with it."""
    base = T.vmcpu_off(arena, cpu)
    arena.atomic.store64(base + C_ONLINE, 0)
    arena.atomic.store64(base + C_LOADED_MM, 0)


class Tlb:
    """Simulated CPU `cpu`'s TLB and IPI handling.  Closures (bound once):
    lookup via `entries` (dict: key -> leaf entry; key = asid << 48 | vpn, see `key_base`),
    fill(va, e), flush_one(va), flush_range_local(ctx, start, end), flush_all_local(),
    handle_ipi() (cheap when nothing is pending), switch_mm(mm_id) / enter_lazy() /
    leave(), flush_tlb_mm_range(mm_id, start, end), flush_tlb_kernel_range(start, end).
    `key_base` is the current ASID's key prefix; `pend_i` the u64 index of this CPU's
    ipi_pending word (mmu.py polls it inline)."""

    def __init__(self, arena: Any, cpu: int) -> None:
        self.arena, self.cpu = arena, cpu
        q, at = arena.u64, arena.atomic
        load, store, xchg, fetch_or, fetch_and, fetch_add = (at.load64, at.store64, at.xchg64, at.fetch_or64,
                                                            at.fetch_and64, at.fetch_add64)
        hdr = arena.off("vmhdr")
        nr_cpus = int(arena.config["nr_cpus"])
        nwords = (nr_cpus + 63) // 64
        n_entries = q[(hdr + T.H_TLB_ENTRIES) >> 3]
        ways = q[(hdr + T.H_TLB_WAYS) >> 3]
        nsets = max(1, n_entries // ways)
        pcid = bool(q[(hdr + T.H_PCID) >> 3])
        ceiling = q[(hdr + T.H_TLB_CEILING) >> 3]
        rec = [T.vmcpu_off(arena, c) for c in range(nr_cpus)]
        me = rec[cpu]
        src = [r + C_SRC for r in rec]                    # source bitmap of each CPU
        ack = [r + C_SRC + 8 * nwords for r in rec]       # ack bitmap of each CPU (as initiator)
        my_src = [src[cpu] + 8 * w for w in range(nwords)]
        pend_off = me + C_PENDING
        self.pend_i = pend_off >> 3
        word, bit = cpu // 64, 1 << (cpu % 64)
        nbit_and = ((1 << 64) - 1) ^ bit
        mm_base = arena.off("vmmm")
        mm_size = T.mm_rec_size(nr_cpus)
        ev = VE.vm_event_base(arena, cpu)
        ev_sent, ev_recv = ev + VE.NR_TLB_REMOTE_FLUSH, ev + VE.NR_TLB_REMOTE_FLUSH_RECEIVED
        ev_all, ev_one = ev + VE.NR_TLB_LOCAL_FLUSH_ALL, ev + VE.NR_TLB_LOCAL_FLUSH_ONE
        cpu_area = arena.off("cpu")
        from aerosync.arena import layout as L
        from aerosync.params import CPU_AREA_SIZE

        cpu_pid = [(cpu_area + c * CPU_AREA_SIZE + L.CPU_PID) >> 3 for c in range(nr_cpus)]

        entries: dict[int, int] = {}
        sets: list[list[int]] = [[] for _ in range(nsets)]
        set_mask = nsets - 1 if nsets & (nsets - 1) == 0 else -1
        # ASIDs (owner-only): slot -> [ctx_id, seen tlb_gen]; the current slot's key prefix
        asids: list[list[int]] = [[0, 0] for _ in range(TLB_NR_DYN_ASIDS)]
        cur = {"slot": 0, "ctx": 0, "mm": -1, "next_rr": 0}
        self.entries, self.sets, self.asids, self.cur = entries, sets, asids, cur
        self.key_base = 0

        def set_of(key: int) -> list[int]:
            vpn = key & ((1 << _ASID_SHIFT) - 1)
            return sets[vpn & set_mask] if set_mask >= 0 else sets[vpn % nsets]

        def fill(key: int, e: int) -> None:
            """Insert a translation; a full set evicts its oldest entry (FIFO).  set_of()
            inlined for power-of-two set counts (every fault fills: ~15 bytecodes less)."""
            s = sets[key & set_mask] if set_mask >= 0 else set_of(key)    # set_mask < 2^48: vpn bits
            if key in entries:
                entries[key] = e
                return
            if len(s) >= ways:
                old = s.pop(0)
                entries.pop(old, None)
            s.append(key)
            entries[key] = e

        def drop(key: int) -> None:
            if entries.pop(key, None) is not None:
                s = set_of(key)
                s.remove(key)

        def flush_asid_slot(slot: int) -> None:
            """Every entry of one ASID slot (a full flush of a context: munmap's zap of
            more than the ceiling, switch_mm): one pass over the dict and one over the
            sets, each set keeping its FIFO order -- not a drop() (dict pop + list
            remove) per entry, ~0.5 us a page of a page_fault1 munmap."""
            ks = [k for k in entries if k >> _ASID_SHIFT == slot]
            if not ks:
                return
            if len(ks) == len(entries):                # the common case: one context cached
                entries.clear()
                for s in sets:
                    s.clear()
                return
            for k in ks:
                del entries[k]
            for s in sets:
                if s:
                    s[:] = [k for k in s if k >> _ASID_SHIFT != slot]

        def flush_all_local() -> None:
            """CR3 write without PCID / INVPCID all-non-global: every non-global entry."""
            for k in [k for k in entries if k >> _ASID_SHIFT != KERNEL_ASID]:
                drop(k)
            q[ev_all] += 1

        def flush_slot_range(slot: int, start: int, end: int) -> None:
            if end == FLUSH_ALL or (end - start) >> PAGE_SHIFT > ceiling:
                flush_asid_slot(slot)
                q[ev_all] += 1
                return
            pre = slot << _ASID_SHIFT
            n = 0
            for vpn in range(start >> PAGE_SHIFT, (end + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT):
                drop(pre | vpn)
                n += 1
            q[ev_one] += n

        def flush_kernel_local(start: int, end: int) -> None:
            if end == FLUSH_ALL or (end - start) >> PAGE_SHIFT > ceiling:
                for k in [k for k in entries if k >> _ASID_SHIFT == KERNEL_ASID]:
                    drop(k)
                q[ev_all] += 1
                return
            pre = KERNEL_ASID << _ASID_SHIFT
            for vpn in range(start >> PAGE_SHIFT, (end + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT):
                drop(pre | vpn)
            q[ev_one] += (end - start) >> PAGE_SHIFT

        def flush_ctx_range(ctx: int, start: int, end: int, gen: int) -> None:
            """flush_tlb_func(): flush a context's range in whichever ASID holds it."""
            for slot in range(TLB_NR_DYN_ASIDS):
                a = asids[slot]
                if a[0] == ctx:
                    flush_slot_range(slot, start, end)
                    if gen > a[1] and (end == FLUSH_ALL or a[1] + 1 == gen):
                        a[1] = gen
                    return

        def handle_ipi() -> None:
            """Answer every pending flush request (cheap when none is pending)."""
            if not q[pend_i]:
                return
            xchg(pend_off, 0)
            for wi, w_off in enumerate(my_src):
                bits = xchg(w_off, 0)
                while bits:
                    low = bits & -bits
                    bits ^= low
                    s = wi * 64 + low.bit_length() - 1
                    r = rec[s]
                    kind = load(r + C_F_KIND)
                    if kind == FLUSH_KERNEL:
                        flush_kernel_local(load(r + C_F_START), load(r + C_F_END))
                    else:
                        flush_ctx_range(load(r + C_F_CTX), load(r + C_F_START), load(r + C_F_END),
                                        load(r + C_F_GEN))
                    q[ev_recv] += 1
                    q[(me + C_RECEIVED) >> 3] += 1
                    fetch_and(ack[s] + 8 * word, nbit_and)

        pend_i = self.pend_i

        def target_gone(t: int) -> bool:
            if not load(rec[t] + C_ONLINE):
                return True
            pid = q[cpu_pid[t]]
            if not pid:
                return False
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False

        def send_and_wait(targets: list[int], ctx: int, start: int, end: int, gen: int, kind: int) -> None:
            store(me + C_F_CTX, ctx)
            store(me + C_F_START, start)
            store(me + C_F_END, end)
            store(me + C_F_GEN, gen)
            store(me + C_F_KIND, kind)
            my_ack = [ack[cpu] + 8 * w for w in range(nwords)]
            for t in targets:
                fetch_or(my_ack[t // 64], 1 << (t % 64))
            for t in targets:
                fetch_or(src[t] + 8 * word, bit)
                store(rec[t] + C_PENDING, 1)
            q[ev_sent] += 1
            q[(me + C_SENT) >> 3] += 1
            deadline = time.monotonic() + _ACK_WAIT_S
            spins = 0
            next_check = time.monotonic() + 0.05
            while True:
                waiting = 0
                for w_off in my_ack:
                    waiting |= load(w_off)
                if not waiting:
                    return
                handle_ipi()
                spins += 1
                if spins > 64:
                    os.sched_yield() if spins < 256 else time.sleep(20e-6)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 0.05
                    for wi, w_off in enumerate(my_ack):
                        bits = load(w_off)
                        while bits:
                            low = bits & -bits
                            bits ^= low
                            t = wi * 64 + low.bit_length() - 1
                            if target_gone(t):
                                fetch_and(w_off, ((1 << 64) - 1) ^ low)
                    if now > deadline:
                        stuck = [wi * 64 + b for wi, w_off in enumerate(my_ack) for b in range(64)
                                 if load(w_off) >> b & 1]
                        raise AeroSyncError(f"cpu{cpu}: TLB shootdown not acknowledged in {_ACK_WAIT_S:g} s by "
                                            f"cpus {stuck} (stopped or not answering IPIs)")

        def flush_tlb_mm_range(mm_id: int, start: int, end: int) -> None:
            """flush_tlb_mm_range(): this CPU and every other CPU that may cache the mm."""
            mo = mm_base + mm_id * mm_size
            gen = fetch_add(mo + T.M_TLB_GEN, 1) + 1
            ctx = load(mo + T.M_CTX_ID)
            flush_ctx_range(ctx, start, end, gen)
            mine1 = mm_id + 1
            targets = []
            for w in range(nwords):
                bits = load(mo + T.M_CPUMASK + 8 * w)
                while bits:
                    low = bits & -bits
                    bits ^= low
                    t = w * 64 + low.bit_length() - 1
                    if t == cpu:
                        continue
                    r = rec[t]
                    if load(r + C_LOADED_MM) == mine1 and not load(r + C_LAZY) and load(r + C_ONLINE):
                        targets.append(t)
            if targets:
                send_and_wait(targets, ctx, start, end, gen, FLUSH_USER)

        def flush_tlb_kernel_range(start: int, end: int) -> None:
            """flush_tlb_kernel_range(): global entries on every online CPU."""
            flush_kernel_local(start, end)
            targets = [t for t in range(nr_cpus) if t != cpu and load(rec[t] + C_ONLINE)]
            if targets:
                send_and_wait(targets, 0, start, end, 0, FLUSH_KERNEL)

        def switch_mm(mm_id: int) -> None:
            """switch_mm_irqs_off(): load mm_id's tables (mm_id -1: none, go lazy)."""
            if mm_id < 0:
                enter_lazy()
                return
            mo = mm_base + mm_id * mm_size
            ctx = load(mo + T.M_CTX_ID)
            if cur["mm"] == mm_id and cur["ctx"] == ctx and not q[(me + C_LAZY) >> 3]:
                return
            if not load(mo + T.M_CPUMASK + 8 * word) & bit:
                fetch_or(mo + T.M_CPUMASK + 8 * word, bit)
            store(me + C_CTX, ctx)
            store(me + C_LOADED_MM, mm_id + 1)
            store(me + C_LAZY, 0)
            gen = load(mo + T.M_TLB_GEN)
            slot = -1
            if pcid:
                for i, a in enumerate(asids):
                    if a[0] == ctx:
                        slot = i
                        break
                if slot < 0:
                    slot = cur["next_rr"]
                    cur["next_rr"] = (slot + 1) % TLB_NR_DYN_ASIDS
                    flush_asid_slot(slot)
                    asids[slot][0], asids[slot][1] = ctx, gen
                elif asids[slot][1] < gen:
                    flush_asid_slot(slot)
                    q[ev_all] += 1
                    asids[slot][1] = gen
            else:
                slot = 0
                flush_all_local()
                asids[0][0], asids[0][1] = ctx, gen
            cur["slot"], cur["ctx"], cur["mm"] = slot, ctx, mm_id
            self.key_base = slot << _ASID_SHIFT
            if self.on_switch is not None:
                self.on_switch()

        def enter_lazy() -> None:
            """The CPU runs no task of loaded_mm now (enter_lazy_tlb)."""
            store(me + C_LAZY, 1)

        def online() -> None:
            store(me + C_ONLINE, 1)

        def leave() -> None:
            """Teardown: answer what is pending, then stop being a shootdown target."""
            handle_ipi()
            cpu_mark_offline(arena, cpu)
            handle_ipi()
            entries.clear()
            for s in sets:
                s.clear()
            cur["mm"] = -1

        def fill_va(va: int, e: int) -> None:
            fill(self.key_base | (va >> PAGE_SHIFT), e)

        def fill_kernel(va: int, e: int) -> None:
            fill((KERNEL_ASID << _ASID_SHIFT) | (va >> PAGE_SHIFT), e)

        def flush_one(va: int) -> None:
            """invlpg on this CPU (current ASID)."""
            drop(self.key_base | (va >> PAGE_SHIFT))
            q[ev_one] += 1

        self.on_switch: Callable[[], None] | None = None
        self.fill, self.fill_va, self.fill_kernel, self.drop = fill, fill_va, fill_kernel, drop
        self.flush_one, self.flush_all_local, self.handle_ipi = flush_one, flush_all_local, handle_ipi
        self.flush_tlb_mm_range, self.flush_tlb_kernel_range = flush_tlb_mm_range, flush_tlb_kernel_range
        self.switch_mm, self.enter_lazy, self.online, self.leave = switch_mm, enter_lazy, online, leave
        self.kernel_key_base = KERNEL_ASID << _ASID_SHIFT

    def current_mm(self) -> int:
        return self.cur["mm"]
