"""hiwater_rss (VmHWM): raised to the RSS before every drop, where Linux calls
update_hiwater_rss -- unmap_region (munmap, brk and mremap shrinks, MAP_FIXED over a
mapping), zap_page_range_single (MADV_DONTNEED), try_to_unmap_one (reclaim) -- and set
to the child's own RSS by fork (dup_mm), so /proc/<pid>/status keeps the peak."""

from __future__ import annotations

from typing import Any

import pytest

from aerosync.mm.reclaim.swapfile import swapoff
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm import task_mmu as TM
from aerosync.mm.vm.vm import VM

RW = M.PROT_READ | M.PROT_WRITE
ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS
PG = 4096
KB = PG >> 10


@pytest.fixture
def cpu(machine) -> Any:
    made: list[tuple[Any, VM, bool]] = []

    def make(**kw: Any) -> tuple[Any, VM]:
        a = machine(nr_pages=kw.pop("nr_pages", 4096), nr_cpus=2, slab=True, vm={}, **kw)
        c = VM(a, 0)
        made.append((a, c, "reclaim" in kw))
        c.switch_to(c.task_create("hwm"))
        return a, c

    yield make
    for a, c, swap in made:
        if c.current_task() >= 0:
            c.exit()
        c.leave()
        if swap:
            swapoff(a)


def _status(a: Any, c: VM) -> dict[str, Any]:
    pid = a.u64[(T.task_off(a, c.current_task()) + T.T_PID) >> 3]
    return TM.status_json(a, pid)


def _hiwater(a: Any, c: VM) -> int:
    return a.u64[(T.mm_off(a, c.current_mm()) + T.M_HIWATER_RSS) >> 3]


def _touch(c: VM, addr: int, n: int) -> None:
    for i in range(n):
        c.store64(addr + i * PG, i + 1)


@pytest.mark.parametrize("how", ["munmap", "dontneed", "brk", "mremap", "map_fixed"])
def test_vmhwm_keeps_the_peak_after_rss_drops(cpu, how: str) -> None:
    a, c = cpu()
    n = 24
    if how == "brk":
        base = c.brk(0)
        c.brk(base + n * PG)
        addr = base
    else:
        addr = c.mmap(0, n * PG, RW, ANON)
    _touch(c, addr, n)
    d = _status(a, c)
    assert d["VmRSS"] == d["VmHWM"] == n * KB and _hiwater(a, c) == 0     # nothing dropped yet
    if how == "munmap":
        c.munmap(addr, n * PG)
    elif how == "dontneed":
        c.madvise(addr, n * PG, M.MADV_DONTNEED)
    elif how == "brk":
        c.brk(base)
    elif how == "mremap":
        assert c.mremap(addr, n * PG, PG) == addr
    else:
        c.mmap(addr, n * PG, RW, ANON | M.MAP_FIXED)
    d = _status(a, c)
    assert d["VmRSS"] < n * KB
    assert _hiwater(a, c) == n and d["VmHWM"] == n * KB


def test_fork_child_starts_from_its_own_rss(cpu) -> None:
    a, c = cpu()
    big = c.mmap(0, 32 * PG, RW, ANON)
    _touch(c, big, 32)
    c.munmap(big, 32 * PG)                     # the parent's peak: 32 pages
    small = c.mmap(0, 8 * PG, RW, ANON)
    _touch(c, small, 8)
    assert _status(a, c)["VmHWM"] == 32 * KB
    parent = c.current_task()
    child = c.fork()
    c.switch_to(child)
    cm = T.mm_off(a, c.current_mm())
    assert _hiwater(a, c) == 8 and _status(a, c)["VmHWM"] == 8 * KB        # dup_mm: get_mm_rss
    assert a.u64[(cm + T.M_HIWATER_VM) >> 3] == a.u64[(cm + T.M_TOTAL_VM) >> 3]
    c.exit()
    c.switch_to(parent)


def test_swap_out_raises_hiwater_before_rss_drops(cpu) -> None:
    """Reclaim's try_to_unmap lowers RSS with no munmap at all: the peak it cut from is
    kept (before the fix VmHWM followed RSS down)."""
    a, c = cpu(nr_pages=2048, reclaim={"lru": "mglru", "swap_size": 8 << 20})
    n = 3000                                       # 1.5 x the machine
    addr = c.mmap(0, n * PG, RW, ANON)
    _touch(c, addr, n)
    d = _status(a, c)
    mo = T.mm_off(a, c.current_mm())
    assert T.get_mm_counter_sum(a.u64, mo, T.MM_SWAPENTS, int(a.config["nr_cpus"])) > 0   # pages went to swap
    assert _hiwater(a, c) > d["VmRSS"] // KB and d["VmHWM"] == _hiwater(a, c) * KB
    c.munmap(addr, n * PG)
