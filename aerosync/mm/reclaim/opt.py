"""Belady's optimal replacement (OPT / MIN), the yardstick reclaim is measured against,
and the page access trace a run records for it.

Models: nothing in the kernel.  Belady 1966: on a fault with memory full, evict the
resident page whose next use is furthest in the future; no demand-paging policy takes
fewer faults on the same trace and number of page frames.  Unit: a page access trace (a
sequence of page ids) and a memory size in frames.

Yardsticks (all demand paging, all counting cold misses, all returning one miss flag per
access so that a caller can leave out whichever accesses it does not measure):

    opt_misses   OPT, O(n log n): each access's next use is precomputed (numpy), the
                 resident set is a max-heap on next use with lazy deletion
    lru_misses   exact LRU
    a0_misses    A0 (Aho, Denning, Ullman 1971): on a fault evict the resident page of
                 lowest probability.  Under the independent reference model (an IID
                 trace with known probabilities) no policy without lookahead has a lower
                 expected long-run fault rate, so on such a trace A0 / OPT is the floor
                 a real policy's ratio sits on.  A0 >= OPT on every trace.

Trace recording (a run's workload, one recorder per worker CPU; section "pagetrace"):
each CPU owns a preallocated block, header then `cap` entries of three u64::

    header (64 B): [0] entries written  [1] cap  [2] accesses not recorded (the block
                   was full)  [3] make_batch calls (epoch: a restarted CPU's new region
                   gets new page ids)
    entry:  ts     time.monotonic_ns() when the access began (CLOCK_MONOTONIC: one
                   clock for every process)
            key    epoch << 48 | space << 32 | page  (space 0: a page every CPU shares,
                   e.g. a shared file's; 1 + cpu: the CPU's own pages)
            aux    resident << 32 | swapins << 16 | majors  (resident: the LRU's folios,
                   sampled every 16 accesses; majors: this CPU's pgmajfault delta over
                   the access; swapins: its pswpin + zswpin delta, readahead included)

Owner: the block's CPU writes it without locks (single writer: TraceRecorder.begin()
before an access, end(key) after it, the entry then the count); the coordinator reads it
after every worker has left (read_traces copies it out).  `merge_traces` puts the CPUs' entries in time order (ties
by CPU) and, when a block overflowed, cuts every CPU at the earliest overflow time so the
merged trace has no hole.  `compare` then leaves out each page's first touch on both
sides (the policy's major faults of first touches -- a file page read the first time --
and OPT's cold misses) and gives OPT the frames the run had: the mean LRU size over the
measured accesses.
"""

from __future__ import annotations

import bisect
import heapq
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aerosync.arena.layout import SectionSpec

__all__ = ["opt_faults", "opt_misses", "lru_faults", "lru_misses", "a0_misses", "first_touches", "zipf_trace",
           "ZipfSampler", "lru_resident", "trace_section", "TraceRecorder", "read_traces", "merge_traces", "compare",
           "TRACE_SECTION", "TRACE_HDR", "TRACE_ENTRY"]

TRACE_SECTION = "pagetrace"
TRACE_HDR = 64
TRACE_ENTRY = 24
(T_COUNT, T_CAP, T_DROPPED, T_EPOCH) = range(4)
KEY_PAGE_BITS = 32
RESIDENT_SAMPLE = 16                       # accesses between two reads of the LRU size


# ---------------------------------------------------------------- the yardsticks

def _compact(trace: Sequence[int] | np.ndarray) -> tuple[list[int], int]:
    """Page ids renumbered 0..d-1 (list), and d."""
    arr = np.asarray(trace, dtype=np.int64)
    if arr.size == 0:
        return [], 0
    uniq, inv = np.unique(arr, return_inverse=True)
    return inv.reshape(-1).tolist(), int(uniq.size)


def _next_use(ids: list[int]) -> list[int]:
    """For access i, the index of the next access to the same page, or n + i (never
    again: a unique "infinity", so every heap key names one access)."""
    n = len(ids)
    a = np.asarray(ids, dtype=np.int64)
    order = np.argsort(a, kind="stable")
    nxt = np.arange(n, 2 * n, dtype=np.int64)
    if n > 1:
        same = a[order[1:]] == a[order[:-1]]
        nxt[order[:-1][same]] = order[1:][same]
    return nxt.tolist()


def opt_misses(trace: Sequence[int] | np.ndarray, frames: int) -> bytearray:
    """One byte per access: 1 where OPT with `frames` frames faults."""
    ids, d = _compact(trace)
    n = len(ids)
    if frames <= 0:
        return bytearray(b"\x01" * n)
    nxt = _next_use(ids)
    cur = [-1] * d                # page -> its current next use (-1: not resident)
    heap: list[int] = []          # -next use; stale when cur[page] moved on
    push, pop = heapq.heappush, heapq.heappop
    miss = bytearray(n)
    used = 0
    for i in range(n):
        p = ids[i]
        nu = nxt[i]
        if cur[p] < 0:
            miss[i] = 1
            if used >= frames:
                while True:
                    k = -pop(heap)
                    v = ids[k] if k < n else ids[k - n]
                    if cur[v] == k:
                        cur[v] = -1
                        break
            else:
                used += 1
        cur[p] = nu
        push(heap, -nu)
    return miss


def opt_faults(trace: Sequence[int] | np.ndarray, frames: int) -> int:
    """The faults OPT takes with `frames` frames, cold misses included."""
    return sum(opt_misses(trace, frames))


def lru_misses(trace: Sequence[int] | np.ndarray, frames: int) -> bytearray:
    """One byte per access: 1 where exact LRU with `frames` frames faults."""
    ids = np.asarray(trace, dtype=np.int64).tolist()
    od: OrderedDict[int, None] = OrderedDict()
    miss = bytearray(len(ids))
    if frames <= 0:
        return bytearray(b"\x01" * len(ids))
    for i, p in enumerate(ids):
        if p in od:
            od.move_to_end(p)
            continue
        miss[i] = 1
        if len(od) >= frames:
            od.popitem(last=False)
        od[p] = None
    return miss


def lru_faults(trace: Sequence[int] | np.ndarray, frames: int) -> int:
    """Exact LRU's faults on the same trace, cold misses included."""
    return sum(lru_misses(trace, frames))


def a0_misses(trace: Sequence[int], frames: int, rank: Sequence[float]) -> bytearray:
    """One byte per access: 1 where A0 faults; `rank[page]` orders the pages by
    probability (lower = more probable).  On a fault with memory full A0 evicts the
    resident page of highest rank, so it keeps the frames-1 most probable pages it has
    met plus the last one faulted in."""
    miss = bytearray(len(trace))
    if frames <= 0:
        return bytearray(b"\x01" * len(trace))
    resident: set[int] = set()
    heap: list[tuple[float, int]] = []      # (-rank, page): exactly the resident pages
    for i, p in enumerate(trace):
        if p in resident:
            continue
        miss[i] = 1
        if len(resident) >= frames:
            resident.discard(heapq.heappop(heap)[1])
        resident.add(p)
        heapq.heappush(heap, (-rank[p], p))
    return miss


def first_touches(trace: Sequence[int] | np.ndarray) -> np.ndarray:
    """Boolean mask: the accesses that touch their page for the first time (the
    warm-up: every demand policy faults there, OPT included)."""
    arr = np.asarray(trace, dtype=np.int64)
    mask = np.zeros(arr.size, dtype=bool)
    if arr.size:
        _, first = np.unique(arr, return_index=True)
        mask[first] = True
    return mask


# ---------------------------------------------------------------- the Zipf stream

class ZipfSampler:
    """Page ids 0..n-1 with probability proportional to 1 / (rank + 1)^s over a seeded
    random permutation (hot pages scattered over the region): `perm[rank]` is the page,
    `rank_of[page]` its rank (A0's order)."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        w = [1.0 / (k + 1) ** s for k in range(n)]
        tot = sum(w)
        acc, c = [], 0.0
        for x in w:
            c += x / tot
            acc.append(c)
        self.cdf = acc
        self.perm = list(range(n))
        rng.shuffle(self.perm)
        self.rank_of = [0] * n
        for k, p in enumerate(self.perm):
            self.rank_of[p] = k
        self.rng = rng

    def __call__(self) -> int:
        k = bisect.bisect_left(self.cdf, self.rng.random())
        return self.perm[min(k, len(self.perm) - 1)]


def zipf_trace(n_pages: int, length: int, seed: int, s: float = 1.0) -> list[int]:
    rng = random.Random(seed)
    z = ZipfSampler(n_pages, s, rng)
    return [z() for _ in range(length)]


# ---------------------------------------------------------------- recording a run's trace

def lru_resident(arena: Any) -> Callable[[], int]:
    """A reader of the folios on the LRU lists of every node plus those waiting in the
    per-CPU lru_add batches: the page frames user memory has (page tables, slabs and the
    ZMM pool's pages are not on it).  Lockless racy reads of counters lru_lock guards:
    a snapshot.  Without a reclaim section: the machine's pages."""
    from aerosync.mm.reclaim import layout as R

    if not R.reclaim_ready(arena):
        nr = int(arena.config["nr_pages"])
        return lambda: nr
    off = R.Off(arena)
    q = arena.u64
    lists = [(off.lruvec(nid) + R.L_LISTS + 16 * li + 8) >> 3 for nid in range(off.nr_nodes)
             for li in range(R.NR_LISTS)]
    batches = [(off.pcpu(c) + R.PC_BATCH_N) >> 3 for c in range(off.nr_cpus)]
    cap = R.FOLIO_BATCH

    def read() -> int:
        return sum([q[i] for i in lists]) + sum([min(q[i], cap) for i in batches])

    return read


def trace_section(nr_cpus: int, cap: int) -> SectionSpec:
    """The "pagetrace" section: one block of `cap` entries per CPU."""
    return SectionSpec(TRACE_SECTION, nr_cpus * _block_size(cap))


def _block_size(cap: int) -> int:
    return TRACE_HDR + cap * TRACE_ENTRY


class TraceRecorder:
    """One CPU's writer of its trace block (the only writer: no lock).  Per access:
    `begin()` before it (start time, this CPU's fault counters), `end(key)` after it.
    `record(ts, key, majors, swapins)` appends an entry directly; `key(space, page)`
    builds a page id.  The three are closures over one state list (hot path: no
    attribute lookups, no tuple per access)."""

    __slots__ = ("epoch", "begin", "end", "record")

    def __init__(self, arena: Any, cpu: int, cap: int) -> None:
        from aerosync.mm.pmm import vm_event as VE

        off, size = arena.sections[TRACE_SECTION]
        blk = _block_size(cap)
        nblocks = size // blk
        if cpu >= nblocks:
            raise ValueError(f"TraceRecorder: cpu {cpu} has no block ({nblocks} blocks of {cap} entries)")
        q = arena.u64
        hdr = (off + cpu * blk) >> 3
        base = hdr + (TRACE_HDR >> 3)
        q[hdr + T_CAP] = cap
        q[hdr + T_EPOCH] += 1
        self.epoch = q[hdr + T_EPOCH]
        read_resident = lru_resident(arena)
        ev = VE.vm_event_base(arena, cpu)
        ev_maj, ev_swp, ev_zswp = ev + VE.PGMAJFAULT, ev + VE.PSWPIN, ev + VE.ZSWPIN
        now = time.monotonic_ns
        # ts, majors, swapins at begin(); entries written (a restarted CPU appends); LRU size
        st = [0, 0, 0, q[hdr + T_COUNT], read_resident()]
        mask = RESIDENT_SAMPLE - 1

        def record(ts: int, key: int, majors: int, swapins: int = 0) -> None:
            n = st[3]
            if n >= cap:
                q[hdr + T_DROPPED] += 1
                return
            if not n & mask:
                st[4] = read_resident()
            i = base + 3 * n
            q[i] = ts
            q[i + 1] = key
            q[i + 2] = (st[4] << 32) | ((swapins if swapins < 0xFFFF else 0xFFFF) << 16) | (
                majors if majors < 0xFFFF else 0xFFFF)
            st[3] = n + 1
            q[hdr + T_COUNT] = n + 1

        def begin() -> None:
            st[0] = now()
            st[1] = q[ev_maj]
            st[2] = q[ev_swp] + q[ev_zswp]

        def end(key: int) -> None:
            record(st[0], key, q[ev_maj] - st[1], q[ev_swp] + q[ev_zswp] - st[2])

        self.begin, self.end, self.record = begin, end, record

    def key(self, space: int, page: int) -> int:
        """Page `page` of `space` (0: shared by every CPU, the same id whatever the epoch;
        1 + cpu: one CPU's own, new ids after the CPU restarted).  key(space, 0) | page
        is key(space, page)."""
        return ((self.epoch << 48) | (space << KEY_PAGE_BITS) | page) if space else page


def read_traces(arena: Any, cap: int) -> list[dict[str, Any]]:
    """Every CPU's recorded block (copies), after the workers left: one dict per CPU
    that recorded, {"cpu", "ts", "key", "majors", "swapins", "resident" (numpy int64 arrays),
    "dropped" (accesses not recorded: the block was full)}."""
    if TRACE_SECTION not in arena.sections:
        return []
    off, size = arena.sections[TRACE_SECTION]
    q = arena.u64
    bsize = _block_size(cap)
    out = []
    for cpu in range(size // bsize):
        h = (off + cpu * bsize) >> 3
        n, dropped = min(int(q[h + T_COUNT]), cap), int(q[h + T_DROPPED])
        if not n and not dropped:
            continue
        view = arena.array(TRACE_SECTION, np.uint64, 3 * n, cpu * bsize + TRACE_HDR)
        ent = view.reshape(n, 3).copy()
        del view
        out.append({"cpu": cpu, "ts": ent[:, 0].astype(np.int64), "key": ent[:, 1].astype(np.int64),
                    "majors": (ent[:, 2] & 0xFFFF).astype(np.int64),
                    "swapins": ((ent[:, 2] >> 16) & 0xFFFF).astype(np.int64),
                    "resident": (ent[:, 2] >> 32).astype(np.int64),
                    "dropped": dropped})
    return out


def merge_traces(per_cpu: list[dict[str, Any]]) -> dict[str, Any]:
    """The CPUs' traces as one, in time order (ties: lower CPU first).  A CPU whose block
    overflowed stopped recording at its last entry's time: every CPU is cut there, so
    the merged trace is complete up to `cut_ns` (None: nothing was cut)."""
    cut = None
    for t in per_cpu:
        if t["dropped"] and len(t["ts"]):
            last = int(t["ts"][-1])
            cut = last if cut is None else min(cut, last)
    fields = ("ts", "key", "majors", "swapins", "resident")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*fields, "cpu")}
    total = 0
    for t in per_cpu:
        keep = slice(None) if cut is None else t["ts"] <= cut
        total += len(t["ts"]) + t["dropped"]
        for k in fields:
            parts[k].append(t[k][keep] if k in t else np.zeros(len(t["ts"][keep]), dtype=np.int64))
        parts["cpu"].append(np.full(len(parts["ts"][-1]), t["cpu"], dtype=np.int64))
    cat = {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in parts.items()}
    order = np.lexsort((cat["cpu"], cat["ts"]))
    out = {k: v[order] for k, v in cat.items()}
    out["cut_ns"] = cut
    out["accesses_total"] = total
    return out


def compare(keys: np.ndarray, majors: np.ndarray, resident: np.ndarray,
            swapins: np.ndarray | None = None) -> dict[str, Any]:
    """The policy's major faults beside OPT's (and exact LRU's) on one merged trace.

    Measured accesses: every access but a page's first touch.  Policy faults: the major
    faults taken on measured accesses (and, beside them, the pages swapped in then,
    readahead included: one major fault may read several pages, OPT reads one).
    Frames: the mean LRU size sampled on measured accesses (rounded; the memory the
    traced pages actually had).  OPT's and LRU's faults: their misses on measured
    accesses, the simulation run over the whole trace.
    """
    n = len(keys)
    first = first_touches(keys)
    measured = ~first
    m = int(measured.sum())
    out: dict[str, Any] = {"accesses": n, "measured_accesses": m, "distinct_pages": int(first.sum()),
                           "first_touch_major_faults": int(majors[first].sum()) if n else 0}
    if not m:
        out.update(frames=0, policy_major_faults=0, opt_faults=0, exact_lru_faults=0, ratio=None,
                   exact_lru_ratio=None)
        return out
    res = resident[measured]
    frames = max(1, round(float(res.mean())))
    pol = int(majors[measured].sum())
    if swapins is not None:
        out["policy_swapins"] = int(swapins[measured].sum())
    t0 = time.perf_counter()
    opt = int(np.frombuffer(opt_misses(keys, frames), dtype=np.uint8)[measured].sum())
    lru = int(np.frombuffer(lru_misses(keys, frames), dtype=np.uint8)[measured].sum())
    out.update(frames=frames, frames_min=int(res.min()), frames_max=int(res.max()), policy_major_faults=pol,
               opt_faults=opt, exact_lru_faults=lru, ratio=_ratio(pol, opt), exact_lru_ratio=_ratio(lru, opt),
               compute_s=round(time.perf_counter() - t0, 3))
    return out


def _ratio(a: int, b: int) -> float | None:
    """a / b; equal zero counts are 1.0, a positive count over zero has no ratio (None)."""
    if b:
        return a / b
    return 1.0 if not a else None
