"""Slab debugging: poisoning, red zones, user tracking, and the bug reports.

Models: mm/slub.c CONFIG_SLUB_DEBUG (init_object, check_object, check_bytes_and_report,
set_track, print_trailer, slab_bug, object_err, free_debug_processing,
alloc_debug_processing, on_freelist) and mm/kasan/report.c's layout for bad frees
(linux-mm.md 3.8, 8.7).  Unit: one object of a debug cache, under its node's list_lock
(debug caches take list_lock for every alloc and free, see slub.py).

Object layout of a debug cache (offsets from the slot start; slab_common.py:_layout,
which is calculate_sizes())::

    [left red zone: red_left_pad][object: object_size][right red zone .. inuse]
    [free pointer (8 B), when outside the object][track alloc][track free]
    [orig_size u32: kmalloc caches with SLAB_STORE_USER][padding word: SLAB_RED_ZONE]
    [alignment]

A track is struct track with CONFIG_STACKDEPOT (TRACK_SIZE 32): addr u64 (a stand-in
call-site address), handle u32 (stack depot), cpu u32, pid u32, pad, when u64 (ns).  The
"stack" is the call site text, kept once in the arena's stack depot (section
"slabdepot", depot_save / depot_fetch).  orig_size is the size kmalloc was asked for
(kmem_cache_alloc: object_size); bytes [orig_size, object_size) are a kmalloc red zone.

Byte values: POISON_FREE 0x6b with POISON_END 0xa5 as last object byte (a free object,
SLAB_POISON), SLUB_RED_INACTIVE 0xbb (red zones of a free object), SLUB_RED_ACTIVE 0xcc
(of an allocated one, and its kmalloc red zone).

Checks and what happens:
  alloc: red zones still 0xbb and poison intact, else "Redzone overwritten" /
         "Poison overwritten" (a write after free, found when the object is next
         allocated): report, the object is isolated (counted in slabmeta's isolated
         field, never handed out again) and allocation moves to the next object.
  free:  not a slab object / another cache's object / not an object start ->
         KASAN "invalid-free" report, nothing freed; already on the slab freelist ->
         KASAN "double-free" report, nothing freed; red zone (or the kmalloc red zone
         beyond orig_size) not 0xcc -> "Redzone overwritten" / "kmalloc Redzone
         overwritten" report, the object is isolated instead of freed.
Every report bumps the cache's nr_bugs, is kept in the handle's `reports` list and
printed to stderr.  The allocator stays consistent: isolated objects are accounted
(slab_check.py S5) and their slab is never discarded.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

from aerosync.mm.slab import layout as S

__all__ = ["POISON_FREE", "POISON_END", "POISON_INUSE", "SLUB_RED_INACTIVE", "SLUB_RED_ACTIVE",
           "TRACK_SIZE", "ORIG_SIZE_SIZE", "DebugOps", "hexdump_lines", "depot_save", "depot_fetch"]

POISON_INUSE = 0x5A
POISON_FREE = 0x6B
POISON_END = 0xA5
SLUB_RED_INACTIVE = 0xBB
SLUB_RED_ACTIVE = 0xCC
TRACK_SIZE = 32                      # sizeof(struct track) with CONFIG_STACKDEPOT
ORIG_SIZE_SIZE = 4                   # sizeof(unsigned int): kmalloc's requested size
_TRACK_ADDR_BASE = 0xFFFF_FFFF_8100_0000
_depot_cache: dict[tuple[int, str, str], tuple[int, int]] = {}   # (arena, name, site) -> (handle, addr)
_HERE = frozenset(os.path.join(os.path.dirname(os.path.abspath(__file__)), f)
                  for f in ("slub.py", "slab_common.py", "kmalloc.py", "slab_debug.py", "slab_check.py"))


def _call_site() -> str:
    """The first caller frame outside the allocator: 'func+line (file)'."""
    f = sys._getframe(2)
    while f is not None and os.path.abspath(f.f_code.co_filename) in _HERE:
        f = f.f_back
    if f is None:
        return "?"
    return f"{f.f_code.co_name}+{f.f_lineno} ({os.path.basename(f.f_code.co_filename)})"


def depot_save(arena: Any, site: str) -> tuple[int, int]:
    """stack_depot_save(): (handle, call-site address) of `site` in the arena's depot,
    stored once per process and arena (two processes may store the same text twice,
    which only costs a record).  Handle 0 when the depot is full, as a failed save."""
    key = (id(arena), arena.name, site)
    got = _depot_cache.get(key)
    if got is not None:
        return got
    g = arena.off("slabcaches")
    i = arena.atomic.fetch_add64(g + S.G_DEPOT_NEXT, 1)
    addr = _TRACK_ADDR_BASE + (zlib.crc32(site.encode()) & 0xFF_FFFF)
    if i >= arena.u64[(g + S.G_DEPOT_MAX) >> 3]:
        return 0, addr
    o = arena.off("slabdepot") + i * S.DEPOT_REC
    arena.u8[o : o + S.DEPOT_REC] = site.encode()[: S.DEPOT_REC].ljust(S.DEPOT_REC, b"\0")
    got = _depot_cache[key] = (i + 1, addr)
    return got


def depot_fetch(arena: Any, handle: int) -> str:
    """stack_depot_fetch(): the text of a handle ("" for 0 or an unknown one)."""
    g = arena.off("slabcaches")
    if not 0 < handle <= min(arena.u64[(g + S.G_DEPOT_NEXT) >> 3], arena.u64[(g + S.G_DEPOT_MAX) >> 3]):
        return ""
    o = arena.off("slabdepot") + (handle - 1) * S.DEPOT_REC
    return bytes(arena.u8[o : o + S.DEPOT_REC]).rstrip(b"\0").decode(errors="replace")


def hexdump_lines(tag: str, addr: int, data: bytes, limit: int = 128) -> list[str]:
    """print_section(): 16 bytes a line, `tag addr: hex  ascii`."""
    out = []
    for i in range(0, min(len(data), limit), 16):
        chunk = data[i : i + 16]
        asc = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{tag:<8} {addr + i:016x}: {' '.join(f'{b:02x}' for b in chunk):<47}  {asc}")
    if len(data) > limit:
        out.append(f"{tag:<8} ... {len(data) - limit} more bytes")
    return out


class DebugOps:
    """Debug processing of one cache for one CPU handle (built by slub.py:_build)."""

    def __init__(self, arena: Any, kc: Any, info: dict[str, Any], slub: Any, obj_addr: Callable[[int, int], int],
                 sm_of: Callable[[int], int], fp_get: Callable[[int, int], int],
                 fp_set: Callable[[int, int, int], None]) -> None:
        self.arena, self.kc, self.slub, self.S = arena, kc, slub, S
        self.obj_addr, self.sm_of, self.fp_get, self.fp_set = obj_addr, sm_of, fp_get, fp_set
        f = info["flags"]
        self.poison = bool(f & S.SLAB_POISON)
        self.redzone = bool(f & S.SLAB_RED_ZONE)
        self.user = bool(f & S.SLAB_STORE_USER)
        self.size, self.osize, self.red_left = info["size"], info["object_size"], info["red_left_pad"]
        self.inuse, self.track_off, self.objects = info["inuse"], info["track_off"], info["objects"]
        self.orig_off = info["orig_off"]          # 0: no orig_size field (not kmalloc + U)
        self.name, self.cid = info["name"], info["id"]
        self.phys = arena.off("physmem")
        self.free_pat = bytes([POISON_FREE]) * (self.osize - 1) + bytes([POISON_END])
        self.rz_l_free = bytes([SLUB_RED_INACTIVE]) * self.red_left
        self.rz_l_act = bytes([SLUB_RED_ACTIVE]) * self.red_left
        nr = self.inuse - self.osize
        self.rz_r_free, self.rz_r_act = bytes([SLUB_RED_INACTIVE]) * nr, bytes([SLUB_RED_ACTIVE]) * nr
        self.nr_bugs_off = S.cache_off(arena, self.cid) + S.C_NR_BUGS

    # ---------------------------------------------------------------- object bytes
    def _obj_off(self, pfn: int, idx: int) -> int:
        return self.phys + (pfn << 12) + idx * self.size + self.red_left

    def _set_free_state(self, o: int) -> None:
        u8 = self.arena.u8
        if self.poison:
            u8[o : o + self.osize] = self.free_pat
        if self.redzone:
            u8[o - self.red_left : o] = self.rz_l_free
            u8[o + self.osize : o + self.inuse] = self.rz_r_free

    def init_slab(self, pfn: int, n: int) -> None:
        """setup_object() for a new slab: every object free (poisoned, inactive zones)."""
        for i in range(n):
            o = self._obj_off(pfn, i)
            self._set_free_state(o)
            if self.user:
                end = self.track_off + 2 * TRACK_SIZE + (ORIG_SIZE_SIZE if self.orig_off else 0)
                self.arena.u8[o + self.track_off : o + end] = bytes(end - self.track_off)

    def _set_track(self, o: int, which: int) -> None:
        """set_track(): {addr, handle, cpu, pid, when} (struct track)."""
        if not self.user:
            return
        t = o + self.track_off + which * TRACK_SIZE
        a = self.arena
        handle, addr = depot_save(a, _call_site())
        a.u64[t >> 3] = addr
        a.u32[(t + 8) >> 2] = handle
        a.u32[(t + 12) >> 2] = self.slub.cpu
        a.u32[(t + 16) >> 2] = os.getpid()
        a.u32[(t + 20) >> 2] = 0
        a.u64[(t + 24) >> 3] = time.monotonic_ns()

    def _track_text(self, o: int, which: int) -> str | None:
        if not self.user:
            return None
        t = o + self.track_off + which * TRACK_SIZE
        a = self.arena
        when = a.u64[(t + 24) >> 3]
        if not when:
            return None
        site = depot_fetch(a, a.u32[(t + 8) >> 2]) or f"{a.u64[t >> 3]:#x} (no stack)"
        age = (time.monotonic_ns() - when) // 1_000_000
        return f"{site} age={age} cpu={a.u32[(t + 12) >> 2]} pid={a.u32[(t + 16) >> 2]}"

    def orig_size(self, pfn: int, idx: int) -> int:
        """get_orig_size(): the requested size (object_size without the field)."""
        if not self.orig_off:
            return self.osize
        return self.arena.u32[(self._obj_off(pfn, idx) + self.orig_off) >> 2] or self.osize

    # ---------------------------------------------------------------- checks
    def alloc_check(self, pfn: int, idx: int, orig: int = 0) -> bool:
        """alloc_debug_processing(): False = damaged, reported; the caller isolates it.
        `orig`: kmalloc's requested size (0: object_size), kept in orig_size."""
        o = self._obj_off(pfn, idx)
        u8 = self.arena.u8
        if self.redzone:
            for lo, hi, want, what in ((o - self.red_left, o, SLUB_RED_INACTIVE, "Left Redzone"),
                                       (o + self.osize, o + self.inuse, SLUB_RED_INACTIVE, "Right Redzone")):
                if bytes(u8[lo:hi]) != bytes([want]) * (hi - lo):
                    self._slub_report(pfn, idx, f"{what} overwritten", lo, hi, want)
                    return False
        if self.poison and bytes(u8[o : o + self.osize]) != self.free_pat:
            self._slub_report(pfn, idx, "Poison overwritten", o, o + self.osize, POISON_FREE)
            return False
        keep = self.osize
        if self.orig_off:                            # set_orig_size()
            keep = orig if 0 < orig < self.osize else self.osize
            self.arena.u32[(o + self.orig_off) >> 2] = keep
        if self.redzone:                             # init_object(SLUB_RED_ACTIVE)
            u8[o - self.red_left : o] = self.rz_l_act
            if keep == self.osize:
                u8[o + keep : o + self.inuse] = self.rz_r_act
            else:
                u8[o + keep : o + self.inuse] = bytes([SLUB_RED_ACTIVE]) * (self.inuse - keep)
        self._set_track(o, 0)
        return True

    def free_check(self, pfn: int, addr: int) -> int:
        """free_debug_processing(): index to free, -1 = refused (invalid or double free),
        -2 = damaged (reported; the caller isolates it)."""
        S = self.S
        rel = addr - S.VBASE - (pfn << 12) - self.red_left
        m = self.sm_of(pfn)
        n = (self.arena.atomic.load64(m) >> 48) & 0x7FFF
        if rel < 0 or rel % self.size or rel // self.size >= n:
            self._kasan_report("invalid-free", addr, pfn, max(0, rel // self.size),
                               f"{rel % self.size if rel >= 0 else rel} bytes inside of (not an object start)")
            return -1
        idx = rel // self.size
        i, seen = self.arena.atomic.load64(m) & 0xFFFF_FFFF, 0
        while i != S.NIL32 and seen <= n:           # on_freelist()
            if i == idx:
                self._kasan_report("double-free", addr, pfn, idx, "0 bytes inside of")
                return -1
            i = self.fp_get(pfn, i)
            seen += 1
        o = self._obj_off(pfn, idx)
        u8 = self.arena.u8
        if self.redzone:
            zones = [(o - self.red_left, o, "Left Redzone"), (o + self.osize, o + self.inuse, "Right Redzone")]
            if self.orig_off:
                zones.append((o + self.orig_size(pfn, idx), o + self.osize, "kmalloc Redzone"))
            for lo, hi, what in zones:
                if bytes(u8[lo:hi]) != bytes([SLUB_RED_ACTIVE]) * (hi - lo):
                    self._slub_report(pfn, idx, f"{what} overwritten", lo, hi, SLUB_RED_ACTIVE)
                    return -2
        self._set_free_state(o)
        self._set_track(o, 1)
        return idx

    # ---------------------------------------------------------------- reports
    def _bump(self) -> None:
        self.arena.atomic.fetch_add32(self.nr_bugs_off, 1)

    def _tracks(self, o: int) -> list[str]:
        out = []
        for which, word in ((0, "Allocated"), (1, "Freed")):
            t = self._track_text(o, which)
            out.append(f"{word} in {t}" if t else f"{word}: no track (SLAB_STORE_USER off or never)")
        return out

    def _slub_report(self, pfn: int, idx: int, bug: str, lo: int, hi: int, want: int) -> None:
        """slab_bug() + check_bytes_and_report() + print_trailer()."""
        a, u8, S = self.arena, self.arena.u8, self.S
        data = bytes(u8[lo:hi])
        first = next(i for i, b in enumerate(data) if b != want and not (want == POISON_FREE and i == len(data) - 1
                                                                             and b == POISON_END))
        end = max(i for i, b in enumerate(data) if b != (POISON_END if want == POISON_FREE and i == len(data) - 1
                                                          else want))
        v = lambda off: off - self.phys + S.VBASE
        o = self._obj_off(pfn, idx)
        word = a.atomic.load64(self.sm_of(pfn))
        slab_va = S.VBASE + (pfn << 12)
        lines = [f"[{bug}] 0x{v(lo + first):x}-0x{v(lo + end):x} @offset={lo + first - (o - self.red_left)}. "
                 f"First byte 0x{data[first]:x} instead of 0x{want:x}",
                 "=" * 77, f"BUG {self.name} (Not tainted): {'Object corrupt' if 'Redzone' in bug else bug}",
                 "-" * 77, ""]
        lines += self._tracks(o)
        lines.append(f"Slab 0x{slab_va:x} objects={(word >> 48) & 0x7FFF} used={(word >> 32) & 0xFFFF} "
                     f"fp=0x{word & 0xFFFF_FFFF:x} flags=slab")
        lines.append(f"Object 0x{v(o):x} @offset={o - self.phys - (pfn << 12)} fp=0x{self.fp_get(pfn, idx):x}")
        lines.append("")
        if self.red_left:
            lines += hexdump_lines("Redzone", v(o - self.red_left), bytes(u8[o - self.red_left : o]))
        else:
            lines += hexdump_lines("Bytes b4", v(o - 16), bytes(u8[max(o - 16, 0) : o]))
        lines += hexdump_lines("Object", v(o), bytes(u8[o : o + self.osize]))
        if self.inuse > self.osize:
            lines += hexdump_lines("Redzone", v(o + self.osize), bytes(u8[o + self.osize : o + self.inuse]))
        pad_lo = o + self.inuse
        pad_hi = o - self.red_left + self.size
        if pad_hi > pad_lo:
            lines += hexdump_lines("Padding", v(pad_lo), bytes(u8[pad_lo:pad_hi]), 32)
        lines.append(f"FIX {self.name}: Object 0x{v(o):x} isolated (never reused); allocator state kept consistent")
        self._bump()
        self.slub.report("\n".join(lines))

    def _kasan_report(self, kind: str, addr: int, pfn: int, idx: int, where: str) -> None:
        """mm/kasan/report.c layout for a bad free (linux-mm.md 8.7)."""
        S = self.S
        o_va = self.obj_addr(pfn, idx)
        o = self._obj_off(pfn, idx)
        lines = ["=" * 66, f"BUG: KASAN: {kind} in {_call_site()}",
                 f"Free of addr {addr:x} by task aero-cpu{self.slub.cpu}/{os.getpid()}", ""]
        for which, word in ((0, "Allocated"), (1, "Freed")):
            t = self._track_text(o, which) if pfn >= 0 else None
            lines.append(f"{word} by task: {t}" if t else f"{word} by task: (no track)")
        state = "freed " if kind == "double-free" else ""
        lines += ["", f"The buggy address belongs to the object at {o_va:x}",
                  f" which belongs to the cache {self.name} of size {self.osize}",
                  f"The buggy address is located {where}",
                  f" {state}{self.osize}-byte region [{o_va:x}, {o_va + self.osize:x})", "",
                  f"The buggy address belongs to the physical page: pfn:{pfn:#x} slab:{self.name}", "=" * 66]
        self._bump()
        self.slub.report("\n".join(lines))
        _ = S

    def report_invalid_free(self, addr: int, ccid: int, pfn: int, why: str) -> None:
        """kfree/kmem_cache_free of something that is not an object of this cache."""
        S = self.S
        other = S.cache_name(self.arena, ccid) if ccid >= 0 else "none"
        lines = ["=" * 66, f"BUG: KASAN: invalid-free in {_call_site()}",
                 f"Free of addr {addr:x} by task aero-cpu{self.slub.cpu}/{os.getpid()}", "",
                 f"kmem_cache_free({self.name}): {why} (page pfn:{pfn:#x} belongs to cache {other})", "=" * 66]
        self._bump()
        self.slub.report("\n".join(lines))
