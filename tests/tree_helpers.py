"""Shared pieces of the lib/ tree tests: node callbacks over a real SLUB cache, a plain
range model, whole-tree snapshots, and the child-process bodies of the lock-free
reader tests (module level, so spawn can import them).

Multi-process protocol (section "treetest", u64 words):
  +0 seq (the writer's seqcount: odd while a store runs)   +8 stop    +16 go (barrier)
  +24 ops done   +32 writer errors   +40 nodes freed after a grace period
  +48 the tallest the tree got (maple)
  reader r at +64 + 64 r: qs counter (quiescent states: +1 after every lookup;
      QSBR_IDLE once the reader exits), lookups, exact checks, linearizable checks,
      mismatches, garbage answers, crashes, done
  log at +LOG_OFF: per version v (1..) three words (first, last, entry) -- or (index,
      entry, 0) for the XArray -- written before the writer makes seq odd for v.
The writer retires nodes into a quarantine and frees one only when every reader's qs
counter has moved past its value at retirement (an RCU grace period by QSBR).
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left, bisect_right
from typing import Any

from aerosync.arch.atomic import ACQUIRE, fence
from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena

ULONG_MAX = (1 << 64) - 1
R_BASE, R_SIZE = 64, 64
QS, LOOKUPS, EXACT, LINEAR, BAD, GARBAGE, CRASH, DONE = range(8)
LOG_OFF = 4096
QSBR_IDLE = 1 << 62
SECTION = 4 << 20                                # "treetest": control words + the op log
MAX_OPS = (SECTION - LOG_OFF) // 24 - 1         # the log's room
MIN_LINEAR = 50


class NodeCache:
    """alloc_node / free_node / rcu_free_node over a SLUB kmem_cache (by name).

    `fail_in = n`: the (n+1)-th allocation from now fails (ENOMEM injection).  rcu_free
    puts nodes in a quarantine that `grace()` (or the QSBR writer) empties.
    """

    def __init__(self, arena: Arena, cpu: int, name: str, size: int, align: int) -> None:
        from aerosync.mm.slab.slab_common import VBASE, kmem_cache_create, kmem_cache_lookup
        from aerosync.mm.slab.slub import Slub

        if kmem_cache_lookup(arena, name) < 0:
            kmem_cache_create(arena, name, size, align)
        self.arena = arena
        self.slub = Slub(arena, cpu)
        self.cache = self.slub.cache(name)
        self.delta = VBASE - arena.off("physmem")       # addr = off + delta
        self.size = size
        self.live: set[int] = set()
        self.quarantine: list[int] = []
        self.fail_in: int | None = None
        self.allocs = 0
        self.retired: list[int] = []                   # every node ever rcu-freed (for tests)

    def alloc(self) -> int:
        if self.fail_in is not None:
            if self.fail_in == 0:
                return -1
            self.fail_in -= 1
        addr = self.cache.alloc()
        if not addr:
            return -1
        off = addr - self.delta
        u8 = self.arena.u8
        u8[off: off + self.size] = b"\xa5" * self.size     # garbage: the trees must write every word
        self.live.add(off)
        self.allocs += 1
        return off

    def free(self, off: int) -> None:
        assert off in self.live, f"free of a node not allocated: {off:#x}"
        self.live.remove(off)
        self.cache.free(off + self.delta)

    def rcu_free(self, off: int) -> None:
        assert off in self.live, f"rcu_free of a node not allocated: {off:#x}"
        self.live.remove(off)
        self.quarantine.append(off)
        self.retired.append(off)

    def grace(self) -> None:
        """A grace period passed: the quarantine goes back to SLUB."""
        for off in self.quarantine:
            self.cache.free(off + self.delta)
        self.quarantine.clear()

    def close(self) -> None:
        self.grace()
        self.release()

    def release(self) -> None:
        """Drop the SLUB handles (before the arena closes)."""
        self.cache = self.slub = None  # type: ignore[assignment]


class RangeModel:
    """The reference: sorted disjoint ranges (first, last, entry) of non-zero entries."""

    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.lasts: list[int] = []
        self.vals: list[int] = []

    def store(self, f: int, l: int, e: int) -> None:
        i = bisect_left(self.lasts, f)
        j = bisect_right(self.firsts, l)
        new: list[tuple[int, int, int]] = []
        if i < j and self.firsts[i] < f:
            new.append((self.firsts[i], f - 1, self.vals[i]))
        if e:
            new.append((f, l, e))
        if i < j and self.lasts[j - 1] > l:
            new.append((l + 1, self.lasts[j - 1], self.vals[j - 1]))
        self.firsts[i:j] = [x[0] for x in new]
        self.lasts[i:j] = [x[1] for x in new]
        self.vals[i:j] = [x[2] for x in new]

    def load(self, i: int) -> int:
        k = bisect_left(self.lasts, i)
        return self.vals[k] if k < len(self.lasts) and self.firsts[k] <= i else 0

    def walk(self, i: int) -> tuple[int, int, int]:
        k = bisect_left(self.lasts, i)
        if k < len(self.lasts) and self.firsts[k] <= i:
            return (self.vals[k], self.firsts[k], self.lasts[k])
        lo = self.lasts[k - 1] + 1 if k else 0
        hi = self.firsts[k] - 1 if k < len(self.firsts) else ULONG_MAX
        return (0, lo, hi)

    def find(self, i: int, lim: int = ULONG_MAX) -> tuple[int, int, int]:
        k = bisect_left(self.lasts, i)
        if k < len(self.lasts) and self.firsts[k] <= lim and i <= lim:
            return (self.vals[k], self.firsts[k], self.lasts[k])
        return (0, 0, 0)

    def items(self) -> list[tuple[int, int, int]]:
        return list(zip(self.firsts, self.lasts, self.vals))

    def gaps(self) -> list[tuple[int, int]]:
        out, nxt = [], 0
        for f, l in zip(self.firsts, self.lasts):
            if f > nxt:
                out.append((nxt, f - 1))
            nxt = l + 1
        if nxt <= ULONG_MAX:
            out.append((nxt, ULONG_MAX))
        return out

    def empty_area(self, lo: int, hi: int, size: int, rev: bool) -> int:
        if lo > hi or size == 0 or hi - lo < size - 1:
            return -22
        best = None
        for a, b in self.gaps():
            a2, b2 = max(a, lo), min(b, hi)
            if b2 - a2 + 1 >= size:
                if not rev:
                    return a2
                best = b2 - size + 1
        return -16 if best is None else best


class Interleave:
    """A stand-in for arena.u64 that runs `action` (the writer) once, right after the
    reader's n-th word load (or its first load of a word index `when(k)` accepts): a
    forced interleaving for the lock-free read closures."""

    def __init__(self, u64: Any, when: Any, action: Any) -> None:
        self.u64, self.action, self.loads, self.done = u64, action, 0, False
        self.when = when if callable(when) else (lambda k: self.loads == when)

    def __getitem__(self, k: int) -> int:
        v = self.u64[k]
        self.loads += 1
        if not self.done and self.when(k):
            self.done = True
            self.action()
        return v


def snapshot(arena: Arena, root_off: int, nodes: list[int], size: int) -> dict[int, list[int]]:
    """Every node's words plus the root record (key -1): a tree's whole state."""
    u64 = arena.u64
    snap = {off: u64[off >> 3: (off + size) >> 3].tolist() for off in nodes}
    snap[-1] = u64[root_off >> 3: (root_off >> 3) + 2].tolist()
    return snap


def run_concurrent(machine: Any, spawn: Any, writer: Any, reader: Any, init: Any, nops: int,
                   span: int, extra_args: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Start writer + 2 readers on a fresh SLUB machine (conftest's `machine` and `spawn`
    factories), release them together, wait, and return the counters (and the arena)."""
    a = machine(slab=True, extra=[SectionSpec("treetest", SECTION)])
    ctl = a.off("treetest")
    root = ctl + 2048
    init(a, root)
    nreaders = 2
    w = spawn(writer, a.name, root, ctl, nreaders, nops, 7, span, *extra_args)
    rs = [spawn(reader, a.name, root, ctl, r, 100 + r, span) for r in range(nreaders)]
    while a.atomic.load64(ctl + 16) < nreaders + 1:
        time.sleep(0.01)
        assert w.exitcode is None and all(p.exitcode is None for p in rs), "a child died at start"
    a.atomic.store64(ctl + 16, 1000)
    w.join(240)
    for p in rs:
        p.join(60)
    assert w.exitcode == 0 and all(p.exitcode == 0 for p in rs), (w.exitcode, [p.exitcode for p in rs])
    u64 = a.u64
    res = {"errors": u64[(ctl + 32) >> 3], "freed": u64[(ctl + 40) >> 3], "height": u64[(ctl + 48) >> 3],
           "readers": []}
    for r in range(nreaders):
        b = (ctl + R_BASE + r * R_SIZE) >> 3
        res["readers"].append({k: u64[b + i] for i, k in enumerate(
            ("qs", "lookups", "exact", "linear", "bad", "garbage", "crash", "done"))})
    res["arena"] = a
    return res


# ---------------------------------------------------------------- multi-process bodies
def _wait_go(a: Arena, ctl: int) -> None:
    a.atomic.fetch_add64(ctl + 16, 1)
    while a.atomic.load64(ctl + 16) < 1000:
        time.sleep(0.001)


def _qsbr_reclaim(a: Arena, ctl: int, nreaders: int, retired: list[tuple[int, tuple[int, ...]]],
                  nc: NodeCache) -> int:
    """Free the retired nodes every reader has passed a quiescent state since."""
    load = a.atomic.load64
    cur = [load(ctl + R_BASE + r * R_SIZE + 8 * QS) for r in range(nreaders)]
    keep, freed = [], 0
    for off, snap in retired:
        if all(c > s for c, s in zip(cur, snap)):
            nc.cache.free(off + nc.delta)
            freed += 1
        else:
            keep.append((off, snap))
    retired[:] = keep
    return freed


def _writer_loop(a: Arena, ctl: int, nreaders: int, nops: int, nc: NodeCache, apply: Any,
                 pick: Any, grace: bool) -> None:
    """Log op v, seq odd, apply it, seq even; reclaim after grace periods (grace=False:
    free at once, the bug RCU exists to prevent -- the negative control).  After nops,
    keep writing until every reader has checked MIN_LINEAR reads that overlapped a write
    (so a loaded machine still tests the overlap), within MAX_OPS and 60 s."""
    u64, at = a.u64, a.atomic
    load = at.load64
    retired: list[tuple[int, tuple[int, ...]]] = []

    def rcu_free(off: int) -> None:
        nc.live.discard(off)
        if not grace:
            nc.cache.free(off + nc.delta)
            return
        snap = tuple(load(ctl + R_BASE + r * R_SIZE + 8 * QS) for r in range(nreaders))
        retired.append((off, snap))

    def overlapped_enough() -> bool:
        return all(load(ctl + R_BASE + r * R_SIZE + 8 * LINEAR) >= MIN_LINEAR or
                   load(ctl + R_BASE + r * R_SIZE + 8 * DONE) for r in range(nreaders))

    nc.rcu_free = rcu_free  # type: ignore[method-assign]
    freed = errors = 0
    deadline = time.monotonic() + 60
    v = 0
    while v < MAX_OPS and (v < nops or (not overlapped_enough() and time.monotonic() < deadline)):
        v += 1
        op = pick(v)
        lw = (ctl + LOG_OFF) // 8 + 3 * v
        u64[lw], u64[lw + 1], u64[lw + 2] = op
        at.fetch_add64(ctl, 1)
        if apply(*op) < 0:
            errors += 1
        at.fetch_add64(ctl, 1)
        at.store64(ctl + 24, v)
        freed += _qsbr_reclaim(a, ctl, nreaders, retired, nc)
        if v % 64 == 0:
            time.sleep(0)
    at.store64(ctl + 32, errors)
    at.store64(ctl + 8, 1)                              # stop the readers
    deadline = time.monotonic() + 30
    while retired and time.monotonic() < deadline:
        freed += _qsbr_reclaim(a, ctl, nreaders, retired, nc)
        time.sleep(0.001)
    at.store64(ctl + 40, freed)


def maple_writer(name: str, root_off: int, ctl: int, nreaders: int, nops: int, seed: int,
                 span: int, prefill: int, grace: bool = True) -> None:
    """Ops 1..prefill build ranges [16 v, 16 v + 7] (a tall tree), then random stores and
    erases of ranges over [0, span)."""
    from aerosync.lib.maple_tree import MapleTree

    a = Arena.attach(name)
    nc = NodeCache(a, 0, "maple_node", 256, 256)
    t = MapleTree(a, root_off, nc.alloc, nc.free, lambda off: nc.rcu_free(off))  # rcu_free: set late
    rnd = random.Random(seed)

    def pick(v: int) -> tuple[int, int, int]:
        if v <= prefill:
            return (16 * v, 16 * v + 7, v << 8 | 0xA0)
        f = rnd.randrange(span)
        l = min(f + rnd.choice((0, 3, 40, 400, 4000)), ULONG_MAX)
        e = 0 if rnd.random() < 0.3 else (v << 8 | 0xA0)
        return (f, l, e)

    def apply(f: int, l: int, e: int) -> int:
        r = t.mas_store_range(f, l, e)
        a.u64[(ctl + 48) >> 3] = max(a.u64[(ctl + 48) >> 3], t.mt_height())   # the tallest it got
        return r

    _wait_go(a, ctl)
    _writer_loop(a, ctl, nreaders, nops, nc, apply, pick, grace)
    nc.release()
    a.close()


def xa_writer(name: str, root_off: int, ctl: int, nreaders: int, nops: int, seed: int, span: int,
              grace: bool = True) -> None:
    from aerosync.lib.xarray import XArray

    a = Arena.attach(name)
    nc = NodeCache(a, 0, "radix_tree_node", 576, 64)
    xa = XArray(a, root_off, nc.alloc, nc.free, lambda off: nc.rcu_free(off))  # rcu_free: set late
    rnd = random.Random(seed)

    def pick(v: int) -> tuple[int, int, int]:
        i = rnd.choice((rnd.randrange(span), rnd.randrange(64), rnd.randrange(1 << 20)))
        return (i, 0 if rnd.random() < 0.4 else v << 8 | 0xA0, 0)

    _wait_go(a, ctl)
    _writer_loop(a, ctl, nreaders, nops, nc, lambda i, e, _: xa.xa_store(i, e), pick, grace)
    nc.release()
    a.close()


def _reader_loop(a: Arena, ctl: int, r: int, seed: int, model_apply: Any, lookups: Any) -> None:
    """Look up random indices; check exact answers (seq unchanged) against the model at
    that version and single-walk answers against every version the read overlapped."""
    u64, at = a.u64, a.atomic
    rb = ctl + R_BASE + r * R_SIZE
    counts = [0] * 8
    rnd = random.Random(seed)
    applied = 0
    log = (ctl + LOG_OFF) // 8
    kinds = list(lookups)
    _wait_go(a, ctl)
    try:
        while not at.load64(ctl + 8):
            s0 = at.load64(ctl, ACQUIRE)
            kind = rnd.choice(kinds)
            fn, index_of, model_answer, value_of, linear = lookups[kind]
            i = index_of(rnd)
            got = fn(i)
            fence(ACQUIRE)
            s1 = at.load64(ctl, ACQUIRE)
            counts[LOOKUPS] += 1
            at.store64(rb + 8 * QS, counts[LOOKUPS])
            x = value_of(got)
            if x and x & 0xFF != 0xA0:
                counts[GARBAGE] += 1
            v0 = s0 // 2
            while applied < v0:
                applied += 1
                model_apply(u64[log + 3 * applied], u64[log + 3 * applied + 1], u64[log + 3 * applied + 2])
            if s0 == s1 and not s0 & 1:
                counts[EXACT] += 1
                if got != model_answer(i):
                    counts[BAD] += 1
            elif linear:
                # One walk: its entry was current at some version in [v0, v1].
                v1 = (s1 + 1) // 2
                ok = {value_of(model_answer(i))}
                for v in range(applied + 1, v1 + 1):
                    ok.add(_entry_at(u64, log, v, i, linear))
                counts[LINEAR] += 1
                if x not in ok:
                    counts[BAD] += 1
            if counts[LOOKUPS] % 256 == 0:
                u64[(rb >> 3) + LINEAR] = counts[LINEAR]      # progress, for the writer
                time.sleep(0)
    except Exception:
        counts[CRASH] += 1
    for k in range(1, 8):
        u64[(rb >> 3) + k] = counts[k]
    at.store64(rb + 8 * QS, QSBR_IDLE)
    at.store64(rb + 8 * DONE, 1)


def _entry_at(u64: Any, log: int, v: int, i: int, linear: str) -> int:
    """The entry at index i right after op v, if op v covers i (else a value no answer has)."""
    a0, a1, a2 = u64[log + 3 * v], u64[log + 3 * v + 1], u64[log + 3 * v + 2]
    if linear == "xa":
        return a1 if a0 == i else -1
    return a2 if a0 <= i <= a1 else -1


def maple_reader(name: str, root_off: int, ctl: int, r: int, seed: int, span: int) -> None:
    from aerosync.lib.maple_tree import MapleTree

    a = Arena.attach(name)
    t = MapleTree(a, root_off)
    m = RangeModel()
    idx = lambda rnd: rnd.randrange(span + 5000)
    lookups = {                 # mt_find may walk twice: exact checks only
        "load": (t.mtree_load, idx, m.load, lambda x: x, "range"),
        "walk": (t.mas_walk, idx, m.walk, lambda x: x[0], "range"),
        "find": (t.mt_find, idx, m.find, lambda x: x[0], None),
    }
    _reader_loop(a, ctl, r, seed, m.store, lookups)
    a.close()


def xa_reader(name: str, root_off: int, ctl: int, r: int, seed: int, span: int) -> None:
    from aerosync.lib.xarray import XArray

    a = Arena.attach(name)
    xa = XArray(a, root_off)
    model: dict[int, int] = {}
    keys: list[int] = []

    def apply(i: int, e: int, _: int) -> None:
        if e:
            if i not in model:
                keys.insert(bisect_left(keys, i), i)
            model[i] = e
        elif i in model:
            del model[i]
            keys.pop(bisect_left(keys, i))

    def find(i: int) -> tuple[int, int]:
        k = bisect_left(keys, i)
        return (keys[k], model[keys[k]]) if k < len(keys) else (0, 0)

    idx = lambda rnd: rnd.choice((rnd.randrange(span), rnd.randrange(64)))
    lookups = {
        "load": (xa.xa_load, idx, lambda i: model.get(i, 0), lambda x: x, "xa"),
        "find": (lambda i: xa.xa_find(i) or (0, 0), idx, find, lambda x: x[1], None),
    }
    _reader_loop(a, ctl, r, seed, apply, lookups)
    a.close()
