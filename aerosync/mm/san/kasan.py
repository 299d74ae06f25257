"""KASAN, generic mode: every kernel load and store checked against the shadow; freed
objects held in a quarantine before SLUB may hand them out again; reports in the
kernel's format.

Models: mm/kasan/common.c (__kasan_slab_alloc / __kasan_kmalloc poisoning the kmalloc
tail, __kasan_slab_free's invalid-free and double-free checks, kasan_poison_slab),
mm/kasan/generic.c (check_region_inline, the alloc/free tracks), mm/kasan/quarantine.c
(qlist, quarantine_put / quarantine_reduce, kasan_cpu_offline), mm/kasan/report.c +
report_generic.c (bug types, describe_object, print_memory_metadata).  Unit: an access
(address, size, read/write); a slab object; a granule of shadow (shadow.py).

Object layout with KASAN (slab_common.calculate_sizes, from kasan_cache_create):
[object][alloc track 16 B][free track 16 B] then padding up to object_size +
optimal_redzone(object_size) -- the tracks sit in the redzone, which stays poisoned
KASAN_SLAB_REDZONE: an access one byte or one granule past the object is caught there
and never reaches the next object.  A track: pid u32 | stack depot handle u32 | cpu
u32 | pad (struct kasan_track with CONFIG_KASAN_EXTRA_INFO's cpu).

Shadow life of a slab object: a new slab is poisoned SLAB_REDZONE as a whole (its pages
came from the page allocator unpoisoned); allocation unpoisons the object (a kmalloc,
the requested size -- the partial last granule, then SLAB_REDZONE to object_size);
free poisons it SLAB_FREE and puts it in this CPU's quarantine.  Pages: unpoisoned when
allocated, KASAN_PAGE_FREE when freed (page_hooks.py), the tail of a large kmalloc
KASAN_PAGE_REDZONE; vmalloc areas: their pages' shadow, the tail of the last page
VMALLOC_INVALID (vmalloc.py), unmapped addresses VMALLOC_INVALID.

Checks (`Kasan.checker(...)` -> check(addr, size, write) for mm/vm/kaccess.py): a
direct-map address reads its granules (one load for an access inside one granule); a
vmalloc address walks init_mm to its page (unmapped: F8); a KFENCE address is left to
KFENCE; anything else is a wild access (null-ptr-deref below PAGE_SIZE,
user-memory-access below TASK_SIZE, wild-memory-access).  Frees (the KmemCache
wrappers) report invalid-free (not an object start) and double-free (the first byte's
shadow not accessible), as check_slab_allocation does.

Quarantine (per CPU, owner-only; section "kasanq"): a ring of freed object addresses
(QUARANTINE_SLOTS) with a byte count; a free pushes, and while the ring holds more than
this CPU's share of [debug] kasan_quarantine_kb (or is full) the oldest objects go back
to SLUB (the cache's free_raw).  FIFO: an object is reused only after the CPU freed
its share of bytes after it.  Linux batches per-CPU qlists into a global FIFO under
quarantine_lock; the per-CPU ring keeps the same order per CPU without a lock.
kasan_cpu_offline(arena, cpu) drains a CPU that left (the coordinator, for every CPU,
once the workers are gone; a VM handle's leave() for its own).  Ring header:
head u64 (next to release), tail u64 (next free slot), bytes u64; then the slots.

Cost: the switch is chosen when a cache handle or a kernel-access handle is built; the
hooks are wrappers around SLUB's closures (one more call per operation) plus the
shadow writes and a stack-depot save per allocation and free (`aerosync bench kvm`:
kasan_overhead_x).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aerosync.arena.layout import SectionSpec, align_up
from aerosync.mm.san import config as C
from aerosync.mm.san import report as R
from aerosync.mm.san import shadow as SH
from aerosync.mm.slab import layout as SL
from aerosync.params import CACHE_LINE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["Kasan", "kasan_sections", "kasan_init", "kasan_cpu_offline", "kasan_enabled", "bug_type",
           "TASK_SIZE_MAX", "quarantine_len", "quarantine_entries"]

TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE
_QHDR = CACHE_LINE
_QREC = _QHDR + 8 * C.QUARANTINE_SLOTS
_Q_HEAD, _Q_TAIL, _Q_BYTES = 0, 8, 16
_TRACK = 16
_ALLOC, _FREE = 0, 1


def kasan_enabled(config: dict[str, Any]) -> bool:
    return bool(C.debug_params(config)["kasan"])


def kasan_sections(config: dict[str, Any]) -> list[SectionSpec]:
    if not kasan_enabled(config):
        return []
    return [*SH.shadow_sections(config), SectionSpec("kasanq", align_up(int(config["nr_cpus"]) * _QREC, PAGE_SIZE))]


def kasan_init(arena: Any) -> None:
    """Boot (after mm_init): the shadow of every page, empty quarantines."""
    SH.shadow_init(arena)
    o, s = arena.sections["kasanq"]
    arena.u8[o : o + s] = bytes(s)


def quarantine_len(arena: Any, cpu: int) -> int:
    qo = arena.off("kasanq") + cpu * _QREC
    return arena.u64[(qo + _Q_TAIL) >> 3] - arena.u64[(qo + _Q_HEAD) >> 3]


def quarantine_entries(arena: Any, cpu: int) -> list[int]:
    """CPU `cpu`'s quarantined object addresses, oldest first (read without locks)."""
    q = arena.u64
    qo = arena.off("kasanq") + cpu * _QREC
    h, t = q[(qo + _Q_HEAD) >> 3], q[(qo + _Q_TAIL) >> 3]
    return [q[((qo + _QHDR) >> 3) + i % C.QUARANTINE_SLOTS] for i in range(h, t)]


def kasan_cpu_offline(arena: Any, cpu: int, slub: Any) -> int:
    """kasan_cpu_offline(): every object in CPU `cpu`'s quarantine back to SLUB through
    `slub` (any CPU's handle; the CPU must be gone or be the caller).  Returns how many."""
    if "kasanq" not in arena.sections:
        return 0
    q = arena.u64
    qo = arena.off("kasanq") + cpu * _QREC
    n = 0
    while q[(qo + _Q_HEAD) >> 3] != q[(qo + _Q_TAIL) >> 3]:
        h = q[(qo + _Q_HEAD) >> 3]
        addr = q[(qo + _QHDR + 8 * (h % C.QUARANTINE_SLOTS)) >> 3]
        q[(qo + _Q_HEAD) >> 3] = h + 1
        cid, _pfn = slub.cache_of(addr)
        if cid >= 0:
            kc = slub.cache(cid)
            q[(qo + _Q_BYTES) >> 3] -= kc.object_size
            kc.free_raw(addr)
            n += 1
    q[(qo + _Q_BYTES) >> 3] = 0
    return n


def bug_type(v: int, addr: int) -> str:
    """report_generic.c get_shadow_bug_type() for the first bad granule's shadow byte
    (`v`, -1 for an address without shadow: get_wild_bug_type())."""
    if v < 0:
        return "null-ptr-deref" if addr < PAGE_SIZE else "user-memory-access" if addr < TASK_SIZE_MAX \
            else "wild-memory-access"
    if 0 < v < 8 or v == 0:
        return "out-of-bounds"
    return {SH.KASAN_PAGE_REDZONE: "slab-out-of-bounds", SH.KASAN_SLAB_REDZONE: "slab-out-of-bounds",
            SH.KASAN_GLOBAL_REDZONE: "global-out-of-bounds", SH.KASAN_PAGE_FREE: "use-after-free",
            SH.KASAN_SLAB_FREE: "slab-use-after-free", SH.KASAN_SLAB_FREETRACK: "slab-use-after-free",
            SH.KASAN_VMALLOC_INVALID: "vmalloc-out-of-bounds", 0xF1: "stack-out-of-bounds", 0xF2: "stack-out-of-bounds",
            0xF3: "stack-out-of-bounds", 0xF4: "stack-out-of-bounds", 0xCA: "alloca-out-of-bounds",
            0xCB: "alloca-out-of-bounds"}.get(v, "unknown-crash")


class Kasan:
    """Simulated CPU `cpu`'s KASAN: the checks, the slab hooks, its quarantine.  `slub`
    is that CPU's Slub handle (objects leave the quarantine through it)."""

    def __init__(self, arena: Any, cpu: int, slub: Any) -> None:
        from aerosync.mm.pmm.page import PG_slab, PG_tail
        from aerosync.mm.slab.slab_common import cache_info
        from aerosync.mm.slab.slab_debug import depot_fetch
        from aerosync.params import PAGE_META_SIZE

        self.arena, self.cpu, self.slub = arena, cpu, slub
        p = C.debug_params(arena.config)
        q, u32, u8 = arena.u64, arena.u32, arena.u8
        sh = SH.Shadow(arena)
        self.shadow = sh
        poison, unpoison = sh.poison, sh.unpoison
        SHB = sh.base
        PHYS = arena.off("physmem")
        VBASE = SL.VBASE
        VOFF = VBASE - PHYS
        DM_HI = VBASE + arena.sections["physmem"][1]
        nr_cpus = int(arena.config["nr_cpus"])
        qo = arena.off("kasanq") + cpu * _QREC
        qh, qt, qb = (qo + _Q_HEAD) >> 3, (qo + _Q_TAIL) >> 3, (qo + _Q_BYTES) >> 3
        slots = (qo + _QHDR) >> 3
        budget = (p["kasan_quarantine_kb"] << 10) // nr_cpus
        nslots = C.QUARANTINE_SLOTS
        pid = os.getpid()
        PM32 = arena.off("pagemeta") >> 2
        PMW = PAGE_META_SIZE >> 2
        SM = arena.off("slabmeta")
        infos: dict[int, dict[str, Any]] = {}

        def info(cid: int) -> dict[str, Any]:
            d = infos.get(cid)
            if d is None:
                d = infos[cid] = cache_info(arena, cid)
            return d

        # -------------------------------------------------------- tracks
        track = R.stack_tracker(arena)

        def save_track(obj_off: int, meta: int, which: int) -> None:
            """kasan_save_track(): pid, stack (depot), cpu in the object's redzone."""
            t = obj_off + meta + which * _TRACK
            u32[t >> 2] = pid
            u32[(t + 4) >> 2] = track()
            u32[(t + 8) >> 2] = cpu + 1

        def track_text(obj_off: int, meta: int, which: int, word: str) -> list[str]:
            t = obj_off + meta + which * _TRACK
            if not u32[(t + 8) >> 2]:
                return []
            stack = depot_fetch(arena, u32[(t + 4) >> 2])
            lines = [f"{word} by task {u32[t >> 2]}:"]
            lines += [f" {f}" for f in stack.split(";")] if stack else ["(stack is not available)"]
            return [*lines, ""]

        # -------------------------------------------------------- the quarantine
        def release_oldest() -> None:
            h = q[qh]
            addr = q[slots + h % nslots]
            q[qh] = h + 1
            cid, _ = slub.cache_of(addr)
            kc = slub.cache(cid)
            q[qb] -= kc.object_size
            kc.free_raw(addr)

        def quarantine_put(addr: int, size: int) -> None:
            """quarantine_put() + quarantine_reduce(): FIFO; the oldest leave while the
            ring is over this CPU's byte budget or out of slots."""
            if not budget:
                cid, _ = slub.cache_of(addr)
                slub.cache(cid).free_raw(addr)
                return
            t = q[qt]
            if t - q[qh] >= nslots:
                release_oldest()
            q[slots + t % nslots] = addr
            q[qt] = t + 1
            q[qb] += size
            while q[qb] > budget and q[qh] != q[qt]:
                release_oldest()

        # -------------------------------------------------------- reports
        def page_dump(pfn: int) -> list[str]:
            fl = u32[PM32 + pfn * PMW]
            ref = u32[PM32 + pfn * PMW + 2]
            what = "slab" if fl & PG_slab else "buddy" if fl & 2 else "page"
            head = u32[PM32 + pfn * PMW + 6] if fl & PG_tail else pfn
            return [f"page: refcount:{ref} mapcount:0 mapping:0000000000000000 index:0x0 pfn:{pfn:#x}",
                    f"head: pfn:{head:#x}" if head != pfn else f"flags: {fl:#x}({what})",
                    "page dumped because: kasan: bad access detected"]

        def shadow_of_va(a: int, to_pfn: Callable[[int], int] | None) -> int:
            """The shadow byte for address a (-1: none)."""
            if VBASE <= a < DM_HI:
                return u8[SHB + ((a - VBASE) >> 3)]
            if to_pfn is not None:
                pfn = to_pfn(a)
                if pfn == -2:
                    return -1
                if pfn < 0:
                    return SH.KASAN_VMALLOC_INVALID
                return u8[SHB + (pfn << (PAGE_SHIFT - 3)) + ((a & (PAGE_SIZE - 1)) >> 3)]
            return -1

        def memory_state(addr: int, to_pfn: Callable[[int], int] | None) -> list[str]:
            """print_memory_metadata(): 5 rows of 16 shadow bytes, the guilty one marked."""
            row0 = (addr & ~127) - 2 * 128
            out = ["Memory state around the buggy address:"]
            for i in range(5):
                r = row0 + i * 128
                vals = [shadow_of_va(r + 8 * k, to_pfn) for k in range(16)]
                if any(v < 0 for v in vals):
                    continue
                mark = ">" if r <= addr < r + 128 else " "
                out.append(f"{mark}{r:016x}: " + " ".join(f"{v:02x}" for v in vals))
                if mark == ">":
                    out.append(" " * (3 + 16 + ((addr - r) // 8) * 3) + "^")
            return out

        def describe(addr: int, bug: str, to_pfn: Callable[[int], int] | None,
                     vm_area: Callable[[int], tuple[int, int, str] | None] | None) -> list[str]:
            """print_address_description(): the object and its tracks, the vmalloc mapping,
            the page."""
            lines: list[str] = []
            pfn = -1
            if VBASE <= addr < DM_HI:
                pfn = (addr - VBASE) >> PAGE_SHIFT
                hp = u32[PM32 + pfn * PMW + 6] if u32[PM32 + pfn * PMW] & PG_tail else pfn
                if u32[PM32 + hp * PMW] & PG_slab:
                    cid = u32[(SM + hp * SL.SMETA + SL.M_CACHE) >> 2] - 1
                    d = info(cid)
                    size, rl = d["size"], d["red_left_pad"]
                    idx = max(0, (addr - VBASE - (hp << PAGE_SHIFT) - rl) // size)
                    idx = min(idx, (q[(SM + hp * SL.SMETA + SL.M_WORD) >> 3] >> 48 & 0x7FFF) - 1)
                    obj = VBASE + (hp << PAGE_SHIFT) + idx * size + rl
                    oo = obj - VOFF
                    meta = d.get("kasan_meta", 0)
                    if meta:
                        lines += track_text(oo, meta, _ALLOC, "Allocated")
                        if bug == "slab-use-after-free" or u8[SHB + ((obj - VBASE) >> 3)] == SH.KASAN_SLAB_FREE:
                            lines += track_text(oo, meta, _FREE, "Freed")
                    osz = d["object_size"]
                    asz = osz
                    if u8[SHB + ((obj - VBASE) >> 3)] < 0x80:   # allocated: kasan_get_alloc_size()
                        asz = 0
                        while asz < osz:
                            v = u8[SHB + ((obj + asz - VBASE) >> 3)]
                            if v >= 0x80:
                                break
                            if v:
                                asz += v
                                break
                            asz += 8
                        asz = min(asz, osz)
                    if addr < obj:
                        rel, n = "to the left", obj - addr
                    elif addr >= obj + asz:
                        rel, n = "to the right", addr - obj - asz
                    else:
                        rel, n = "inside", addr - obj
                    state = "allocated " if bug == "slab-out-of-bounds" else "freed " if bug == "slab-use-after-free" \
                        else ""
                    lines += [f"The buggy address belongs to the object at {obj:016x}",
                              f" which belongs to the cache {d['name']} of size {osz}",
                              f"The buggy address is located {n} bytes {rel} of",
                              f" {state}{asz}-byte region [{obj:016x}, {obj + asz:016x})", ""]
            elif vm_area is not None:
                got = vm_area(addr)
                if got is not None:
                    s, e, caller = got
                    lines += ["The buggy address belongs to the virtual mapping at",
                              f" [{s:016x}, {e:016x}) created by:", f" {caller or '?'}", ""]
                if to_pfn is not None:
                    pfn = to_pfn(addr)
            if pfn >= 0:
                lines += ["The buggy address belongs to the physical page:", *page_dump(pfn), ""]
            return lines

        def report(kind_line: str, bug: str, addr: int, access: str, who: tuple[str, int],
                   to_pfn: Callable[[int], int] | None = None,
                   vm_area: Callable[[int], tuple[int, int, str] | None] | None = None,
                   first_bad: int = -1) -> R.KernelBug:
            comm, tpid = who
            site = R.call_site()
            lines = ["=" * 66, f"BUG: KASAN: {kind_line} in {site}", access.format(comm=comm, pid=tpid), "",
                     R.cpu_line(cpu, comm, tpid), "Call Trace:", *(f" {f}" for f in R.call_trace()), ""]
            if bug not in ("null-ptr-deref", "user-memory-access", "wild-memory-access"):
                lines += describe(addr, bug, to_pfn, vm_area)
                lines += memory_state(first_bad if first_bad >= 0 else addr, to_pfn)
            lines.append("=" * 66)
            return R.oops(arena, "kasan", "\n".join(lines), bug)

        self.report = report

        # -------------------------------------------------------- the access check
        def checker(to_pfn: Callable[[int], int] | None, who: Callable[[], tuple[str, int]],
                    vm_area: Callable[[int], tuple[int, int, str] | None] | None = None,
                    kf_lo: int = 0, kf_hi: int = 0) -> Callable[[int, int, bool], None]:
            """check_region_inline() for mm/vm/kaccess.py: `to_pfn(addr)` maps a vmalloc
            address to its pfn (-1 unmapped, -2 not a vmalloc address); `vm_area(addr)`
            names the mapping for the report."""
            zeros = bytes(PAGE_SIZE // 8 + 2)

            def slow_check(addr: int, n: int, write: bool) -> None:
                """Granule by granule (a page's shadow found once): report the first bad byte."""
                a, end, fb, v = addr, addr + n, -1, 0
                while a < end and fb < 0:
                    pend = min(end, (a | (PAGE_SIZE - 1)) + 1)
                    if VBASE <= a < DM_HI:
                        sb = SHB + (((a & ~(PAGE_SIZE - 1)) - VBASE) >> 3)
                    else:
                        pfn = to_pfn(a) if to_pfn is not None else -2
                        if pfn < 0:
                            fb, v = a, (-1 if pfn == -2 else SH.KASAN_VMALLOC_INVALID)
                            break
                        sb = SHB + (pfn << (PAGE_SHIFT - 3))
                    while a < pend:
                        v = u8[sb + ((a & (PAGE_SIZE - 1)) >> 3)]
                        if not v:
                            a = (a | 7) + 1
                        elif v < 8 and (a & 7) < v:
                            a += 1
                        else:
                            fb = a
                            break
                if fb < 0:
                    return
                if 0 < v < 8:                           # a partial granule: the next one says why
                    v = shadow_of_va((fb | 7) + 1, to_pfn)
                bug = bug_type(v, fb)
                raise report(bug, bug, addr, f"{'Write' if write else 'Read'} of size {n} at addr {addr:016x} "
                             "by task {comm}/{pid}", who(), to_pfn, vm_area, fb)

            def check(addr: int, n: int, write: bool) -> None:
                if addr >= VBASE and addr + n <= DM_HI:
                    s = SHB + ((addr - VBASE) >> 3)
                    if (addr & 7) + n <= 8:
                        v = u8[s]
                        if not v or (v < 8 and (addr & 7) + n <= v):
                            return
                    else:
                        e = SHB + ((addr + n - 1 - VBASE) >> 3)
                        if u8[s : e + 1] == zeros[: e + 1 - s]:
                            return
                elif kf_lo <= addr < kf_hi:
                    return                               # KFENCE's pages: its own checks
                slow_check(addr, n, write)

            return check

        self.checker = checker

        # -------------------------------------------------------- slab hooks
        def slab_install(kc: Any, raw: dict[str, Callable[..., Any]], init_on_free: bool) -> None:
            """The KmemCache's entry points become KASAN's (kasan_slab_alloc / kmalloc /
            slab_free); `raw` holds SLUB's own closures (free_raw is what the quarantine
            calls)."""
            d = info(kc.id)
            meta = d.get("kasan_meta", 0)
            osz, size, rl = kc.object_size, d["size"], d["red_left_pad"]
            g8 = (osz + 7) & ~7
            zero = bytes(osz)
            r_alloc, r_alloc_node, r_bulk = raw["alloc"], raw["alloc_node"], raw["alloc_bulk"]
            r_orig = raw.get("alloc_orig")
            r_from_sheaf = raw["alloc_from_sheaf"]
            name = kc.name

            def on_alloc(a: int, n: int) -> int:
                o = a - VOFF
                unpoison(o, n)
                if n < g8:
                    poison(o + ((n + 7) & ~7), g8 - ((n + 7) & ~7), SH.KASAN_SLAB_REDZONE)
                if meta:
                    save_track(o, meta, _ALLOC)
                    u32[(o + meta + _TRACK + 8) >> 2] = 0     # no free track yet
                return a

            def alloc(gfp: int = 0) -> int:
                a = r_alloc(gfp)
                return on_alloc(a, osz) if a else 0

            def alloc_node(nid: int, gfp: int = 0) -> int:
                a = r_alloc_node(nid, gfp)
                return on_alloc(a, osz) if a else 0

            def alloc_orig(n: int, gfp: int = 0) -> int:
                a = r_orig(n, gfp) if r_orig is not None else r_alloc(gfp)
                return on_alloc(a, min(n, osz)) if a else 0

            def alloc_bulk(n: int, gfp: int = 0) -> list[int]:
                got = r_bulk(n, gfp)
                for a in got:
                    on_alloc(a, osz)
                return got

            def alloc_from_sheaf(s: int, gfp: int = 0) -> int:
                a = r_from_sheaf(s, gfp)
                return on_alloc(a, osz) if a else 0

            def bad_free(addr: int, kind: str, pfn: int) -> R.KernelBug:
                t = "invalid-free" if kind == "invalid" else "double-free"
                return report(t, t, addr, f"Free of addr {addr:016x} by task {{comm}}/{{pid}}",
                              (f"aero-cpu{cpu}", pid))

            def free_pfn(pfn: int, addr: int) -> None:
                """__kasan_slab_free(): checks, poison, track, quarantine."""
                rel = addr - VBASE - (pfn << PAGE_SHIFT) - rl
                nobj = (q[(SM + pfn * SL.SMETA + SL.M_WORD) >> 3] >> 48) & 0x7FFF
                if rel < 0 or rel % size or rel // size >= nobj:
                    raise bad_free(addr, "invalid", pfn)
                o = addr - VOFF
                if u8[SHB + ((o - PHYS) >> 3)] >= 0x80:
                    raise bad_free(addr, "double", pfn)
                if init_on_free:
                    u8[o : o + osz] = zero
                poison(o, g8, SH.KASAN_SLAB_FREE)
                if meta:
                    save_track(o, meta, _FREE)
                quarantine_put(addr, osz)

            def free(addr: int) -> None:
                pfn = (addr - VBASE) >> PAGE_SHIFT
                if not 0 <= pfn < (DM_HI - VBASE) >> PAGE_SHIFT:
                    raise bad_free(addr, "invalid", -1)
                if u32[PM32 + pfn * PMW] & PG_tail:
                    pfn = u32[PM32 + pfn * PMW + 6]
                if not u32[PM32 + pfn * PMW] & PG_slab:
                    raise bad_free(addr, "invalid", pfn)
                free_pfn(pfn, addr)

            kc.alloc, kc.alloc_node, kc.alloc_bulk, kc.alloc_from_sheaf = alloc, alloc_node, alloc_bulk, \
                alloc_from_sheaf
            kc.alloc_orig = alloc_orig
            kc.free, kc.free_pfn = free, free_pfn
            _ = name

        self.slab_install = slab_install

        def new_slab(pfn: int, order: int) -> None:
            """kasan_poison_slab(): a new slab is redzone until its objects are handed out."""
            poison(PHYS + (pfn << PAGE_SHIFT), PAGE_SIZE << order, SH.KASAN_SLAB_REDZONE)

        self.new_slab = new_slab

        def kmalloc_large(addr: int, size: int) -> None:
            """__kasan_kmalloc_large(): past the requested size, KASAN_PAGE_REDZONE."""
            o = addr - VOFF
            end = align_up(size, PAGE_SIZE)
            unpoison(o, size)
            g = (size + 7) & ~7
            if g < end:
                poison(o + g, end - g, SH.KASAN_PAGE_REDZONE)

        def kfree_large_check(addr: int) -> None:
            """check_page_allocation(): a large kmalloc freed twice (or not its start)."""
            if VBASE <= addr < DM_HI and u8[SHB + ((addr - VBASE) >> 3)] >= 0x80:
                t = "double-free" if not addr & (PAGE_SIZE - 1) else "invalid-free"
                raise report(t, t, addr, f"Free of addr {addr:016x} by task {{comm}}/{{pid}}",
                             (f"aero-cpu{cpu}", pid))

        self.kmalloc_large, self.kfree_large_check = kmalloc_large, kfree_large_check
        self.quarantine_put = quarantine_put
        self.shadow_of_va = shadow_of_va
        _ = (C.KASAN_META_SIZE, PAGE_META_SIZE)
