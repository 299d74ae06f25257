"""A rate limit for messages, as lib/ratelimit.c's ___ratelimit() (v6.19).

Models: include/linux/ratelimit_types.h (struct ratelimit_state, DEFINE_RATELIMIT_STATE)
and lib/ratelimit.c (___ratelimit).  Unit: one call that wants to print.  A state lets
`burst` calls through per `interval` seconds (Linux counts jiffies; HZ-independent
intervals like warn_alloc's 10*HZ are seconds here) and counts the rest as `missed`;
the first call let through after an interval has expired takes the count with it
(Linux prints "<func>: N callbacks suppressed" there), so no suppression goes unreported.
interval <= 0 never limits, burst <= 0 always limits, as in Linux.

Process-local, not in the arena: a state limits the calls of the process (one simulated
CPU's worker, or the coordinator) that owns it, where Linux's static state is shared by
every CPU; a machine of N CPUs may therefore print up to N messages per interval.
Lock: a threading.Lock (one process may drive a CPU's task and interrupt contexts from
two threads); Linux takes rs->lock with trylock and falls back to the atomic burst
count, which a cold path does not need.  The clock is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RatelimitState"]


class RatelimitState:
    """struct ratelimit_state + ___ratelimit(): `state()` is True when the caller may print."""

    __slots__ = ("interval", "burst", "begin", "n_left", "missed", "suppressed_total", "clock", "_lock")

    def __init__(self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.burst, self.clock = interval, burst, clock
        self.begin: float | None = None          # None: not RATELIMIT_INITIALIZED yet
        self.n_left = burst
        self.missed = 0                          # suppressed since the last report
        self.suppressed_total = 0                # suppressed over the state's life
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            if self.interval <= 0 or self.burst <= 0:
                ok = self.interval <= 0 or self.burst > 0
            else:
                now = self.clock()
                if self.begin is None or now >= self.begin + self.interval:
                    # first use, or time_is_before_jiffies(begin + interval): a new window
                    self.begin, self.n_left = now, self.burst
                ok = self.n_left > 0
                if ok:
                    self.n_left -= 1
            if not ok:                           # ratelimit_state_inc_miss()
                self.missed += 1
                self.suppressed_total += 1
            return ok

    def reset_miss(self) -> int:
        """ratelimit_state_reset_miss(): the calls suppressed since the last report."""
        with self._lock:
            m, self.missed = self.missed, 0
            return m
