"""Belady's optimal replacement (OPT / MIN): the fewest faults any policy could take.

Models: nothing in the kernel -- the yardstick reclaim is measured against (Belady 1966:
on a fault with memory full, evict the resident page whose next use is furthest in the
future).  Unit: a page access trace (a sequence of page ids, seeded and so reproducible)
and a memory size in pages.

`opt_faults(trace, frames)` counts the faults OPT takes, cold misses included, in
O(n log n): each access's next use is precomputed backwards; the resident set is a max
heap on next use with lazy deletion.  `zipf_trace(n_pages, length, seed, s)` is the
reclaim workload's access stream (the same generator, so a run's trace can be rebuilt
from its seed instead of being recorded page by page).
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Sequence

__all__ = ["opt_faults", "zipf_trace", "ZipfSampler", "lru_faults"]


def opt_faults(trace: Sequence[int], frames: int) -> int:
    if frames <= 0:
        return len(trace)
    n = len(trace)
    nxt = [0] * n
    last: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        p = trace[i]
        nxt[i] = last.get(p, n + i)            # never again: unique "infinity"
        last[p] = i
    resident: dict[int, int] = {}              # page -> its next use (current)
    heap: list[tuple[int, int]] = []           # (-next use, page), lazy
    faults = 0
    for i, p in enumerate(trace):
        if p in resident:
            resident[p] = nxt[i]
            heapq.heappush(heap, (-nxt[i], p))
            continue
        faults += 1
        if len(resident) >= frames:
            while True:
                nu, victim = heapq.heappop(heap)
                if resident.get(victim) == -nu:
                    del resident[victim]
                    break
        resident[p] = nxt[i]
        heapq.heappush(heap, (-nxt[i], p))
    return faults


def lru_faults(trace: Sequence[int], frames: int) -> int:
    """Exact LRU on the same trace (a second yardstick for the tests)."""
    from collections import OrderedDict

    od: OrderedDict[int, None] = OrderedDict()
    faults = 0
    for p in trace:
        if p in od:
            od.move_to_end(p)
            continue
        faults += 1
        if len(od) >= frames:
            od.popitem(last=False)
        od[p] = None
    return faults


class ZipfSampler:
    """Page ids 0..n-1 with probability proportional to 1 / (rank + 1)^s over a seeded
    random permutation (hot pages scattered over the region)."""

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
        self.rng = rng

    def __call__(self) -> int:
        k = bisect.bisect_left(self.cdf, self.rng.random())
        return self.perm[min(k, len(self.perm) - 1)]


def zipf_trace(n_pages: int, length: int, seed: int, s: float = 1.0) -> list[int]:
    rng = random.Random(seed)
    z = ZipfSampler(n_pages, s, rng)
    return [z() for _ in range(length)]
