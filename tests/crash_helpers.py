"""Killing a simulated CPU at a fault point and recovering it, in a test.

A forked child of the test process acts as a simulated CPU (its pid is not the arena
owner's, so its handles log into that CPU's intent log and pass fault points); it is
armed to SIGKILL itself at a point and runs a driver -- the crash_soak workload's batch
function, with parameters that reach the point.  The test process then does what the
coordinator does: takeover (live CPUs would still run), recovery with the world stopped,
the CPU offline (mm/cpuhp.py), the checkers, and "nothing lost" accounting.
"""

from __future__ import annotations

import os
import random
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from aerosync.mm import intent as I

SOAK_BUDGET = 400         # batches of 64 ops a driver gets to reach its point


def soak_params(**kw: Any) -> Any:
    from workers.workloads import crash_soak

    return replace(crash_soak.Params(), **kw)


def soak_machine(machine: Callable[..., Any], params: Any, nr_cpus: int = 2, nr_pages: int = 4096,
                 **cfg: Any) -> Any:
    """A booted machine with SLUB, fault points on, crash_soak's sections and baselines."""
    from workers.workloads import crash_soak

    a = machine(nr_pages=nr_pages, nr_cpus=nr_cpus, slab=True, extra=crash_soak.sections(params, nr_cpus),
                fault={"test": 1}, **cfg)
    crash_soak.setup(a, params, nr_cpus)
    return a


def soak_driver(params: Any, seed: int = 1, budget: int = SOAK_BUDGET,
                before: Callable[[Any, int], None] | None = None) -> Callable[[Any, int], None]:
    """A driver: crash_soak's batches on `cpu` (after `before(arena, cpu)`), then its teardown."""
    from workers.workloads import crash_soak

    def drive(arena: Any, cpu: int) -> None:
        if before is not None:
            before(arena, cpu)
        batch = crash_soak.make_batch(arena, cpu, params, random.Random(seed))
        for _ in range(budget):
            batch(64)
        batch.teardown()

    return drive


@pytest.fixture(autouse=True)
def no_bad_pages() -> Iterator[None]:
    """An autouse fixture for the crash tests (imported into each module): no page freed
    badly in the test's own process -- a recovery's double free, or a free of a free
    page, is only a warning where it happens (page_alloc.py bad_page)."""
    from aerosync.mm.pmm.page_alloc import BadPageWarning

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", BadPageWarning)
        yield
    bad = [str(w.message) for w in seen if issubclass(w.category, BadPageWarning)]
    assert not bad, f"a page freed badly: {bad}"


def run_child(arena: Any, cpu: int, driver: Callable[[Any, int], None], point: str | None = None,
              skip: int = 0, poll: Callable[[], None] | None = None) -> tuple[int, bool]:
    """Fork a child that runs driver(arena, cpu) as simulated CPU `cpu`, armed to die at
    `point` (skip passes first).  Returns (child pid, killed by SIGKILL).  A child that
    raises -- a page freed badly included -- exits 3 with its traceback on stderr.
    `poll`: run while waiting for the child (a live CPU of the test process answering
    the child's TLB-shootdown IPIs)."""
    if point is not None:
        I.arm(arena, cpu, I.point_id(point), skip)
    pid = os.fork()
    if pid == 0:                                 # pragma: no cover (the child)
        code = 0
        try:
            from aerosync.mm.pmm.page_alloc import BadPageWarning

            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            warnings.simplefilter("error", BadPageWarning)   # a bad free fails the child
            driver(arena, cpu)
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    if poll is None:
        _, status = os.waitpid(pid, 0)
    else:
        while True:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                break
            poll()
            time.sleep(0.0002)
    I.disarm(arena, cpu)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3:
        raise AssertionError(f"the child driving cpu{cpu} raised (see its traceback above)")
    return pid, os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def recover(arena: Any, pid: int, cpu: int, params: Any, hook: Callable[..., Any] | None = None) -> Any:
    """What the coordinator does after a death: takeover, recovery, offline (`hook`: the
    workload's recover, crash_soak's by default)."""
    from aerosync.mm import recovery
    from aerosync.mm.cpuhp import cpuhp_offline_mm
    from workers.workloads import crash_soak

    rec = recovery.takeover(arena, pid, cpu)
    hook = hook or (lambda a, c, r, m, s: crash_soak.recover(a, params, c, r, m, s))
    return recovery.recover_cpu(arena, rec, hook, offline=cpuhp_offline_mm)


def check_all(arena: Any) -> None:
    """Every checker passes (the LRU and swap ones too), and no offline CPU holds
    anything (H1)."""
    from aerosync.mm.cpuhp import cpuhp_check
    from aerosync.mm.pmm.check import check as mm_check
    from aerosync.mm.reclaim.check import reclaim_check
    from aerosync.mm.slab.slab_check import slab_check
    from aerosync.mm.vm.check import vm_check

    for rep in (mm_check(arena), slab_check(arena), vm_check(arena)):
        assert rep.ok, str(rep)
    bad = reclaim_check(arena)
    assert bad == [], bad
    bad = cpuhp_check(arena)
    assert bad == [], bad


def lost(arena: Any, params: Any, nr_cpus: int, files: tuple[int, ...] = ()) -> dict[str, int]:
    """Free what the rings and held tables still have (crash_soak.report's way), then
    the pages and objects neither free nor in use at the baseline; the page cache of
    `files` (its folios and its tree's nodes) is in use, not lost."""
    from aerosync.lib.xarray import XArray
    from aerosync.mm.vm import mm_types as T
    from aerosync.mm.vm.vm_object import O_NR_PAGES, O_TREE
    from workers.workloads import crash_soak

    res = {"cpus": [{"counters": dict.fromkeys(crash_soak.COUNTERS, 0)} for _ in range(nr_cpus)]}
    out = crash_soak.report(arena, params, res)
    pages, objects = out["lost_pages"], out["lost_objects"]
    for fid in files:
        obj = arena.u64[(T.file_off(arena, fid) + T.F_OBJ) >> 3]
        pages -= arena.u64[(obj + O_NR_PAGES) >> 3]
        objects -= XArray(arena, obj + O_TREE).xa_nr_nodes()
    return {"pages": pages, "objects": objects}


def feed_before(params: Any, seed: int = 5, batches: int = 40) -> Callable[[Any, int], None]:
    """Before the driver: CPU 1 allocates objects only and sends every one to CPU 0's
    ring, so CPU 0's driver frees them remotely (partial lists, discards, barn traffic)."""
    from workers.workloads import crash_soak

    def before(arena: Any, cpu: int) -> None:
        other = 1 - cpu
        p = replace(params, page_pct=0, cross_cpu_pct=100)
        b = crash_soak.make_batch(arena, other, p, random.Random(seed))
        for _ in range(batches):
            b(64)
        b.teardown()

    return before


def frag_driver(params: Any) -> Callable[[Any, int], None]:
    """A driver for the buddy allocator's claim with a pageblock move: movable pages fill
    the machine, all but one page of each pageblock go back (no whole free pageblock is
    left), then unmovable allocations must claim a mostly free movable pageblock from a
    block below pageblock order (try_to_claim_block -> move_freepages_block).  Every
    page is in the crash_soak held table while held."""
    from aerosync.mm.pmm import gfp as G
    from aerosync.mm.pmm.page_alloc import MM
    from workers.workloads import crash_soak

    def drive(arena: Any, cpu: int) -> None:
        mm = MM(arena, cpu)
        q = arena.u64
        h0 = crash_soak._held0(arena, cpu, params.max_held)
        pb = mm.pb_order
        slots: dict[int, int] = {}
        i = 0
        while i < params.max_held:
            pfn = mm.alloc_pages(G.GFP_HIGHUSER_MOVABLE | G.__GFP_NOWARN, 0)
            if pfn < 0:
                break
            q[h0 + i] = (pfn << 4) << 2 | crash_soak.KIND_PAGE
            slots[pfn] = i
            i += 1
        keep = {}
        for pfn in sorted(slots):
            keep.setdefault(pfn >> pb, pfn)
        for pfn, s in slots.items():
            if keep[pfn >> pb] != pfn:
                q[h0 + s] = 0
                mm.free_pages(pfn)
        free = [s for s in range(params.max_held) if not q[h0 + s]]
        for s in free[: len(free) // 2]:
            pfn = mm.alloc_pages(G.GFP_KERNEL | G.__GFP_NOWARN, 0)
            if pfn < 0:
                break
            q[h0 + s] = (pfn << 4) << 2 | crash_soak.KIND_PAGE
        for s in range(params.max_held):
            e = q[h0 + s]
            if e:
                q[h0 + s] = 0
                mm.free_pages((e >> 6) & ((1 << 30) - 1))

    return drive


def start_child(arena: Any, cpu: int, driver: Callable[[Any, int], None], point: str | None = None,
                skip: int = 0) -> int:
    """run_child without waiting: returns the child's pid (the caller waitpid()s it)."""
    if point is not None:
        I.arm(arena, cpu, I.point_id(point), skip)
    pid = os.fork()
    if pid == 0:                                 # pragma: no cover (the child)
        code = 0
        try:
            from aerosync.mm.pmm.page_alloc import BadPageWarning

            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            warnings.simplefilter("error", BadPageWarning)   # a bad free fails the child
            driver(arena, cpu)
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    return pid


def task_vm(arena: Any, cpu: int, comm: str, mm: int = -1) -> tuple[Any, int]:
    """A VM handle of `cpu` running a new task: of its own address space, or a thread
    of `mm`."""
    from aerosync.mm.vm.vm import VM

    vm = VM(arena, cpu)
    vm.make_current()
    tid = vm.task_create(comm, mm=mm)
    vm.switch_to(tid)
    return vm, tid


def brk_grow_driver(mm: int, heap: int) -> Callable[[Any, int], None]:
    """A driver: a thread of `mm` grows the heap at `heap` by two pages (threads mode:
    a death inside leaves the mm to the live threads)."""

    def drive(arena: Any, cpu: int) -> None:
        vm, _ = task_vm(arena, cpu, "dies", mm)
        vm.brk(heap + 2 * 4096)

    return drive


def _task_exit(vm: Any, tid: int) -> None:
    """The task exits and is reaped; the CPU leaves the VM."""
    vm.exit()
    vm.reap(tid)
    vm.leave()


def vm_driver(pages: int = 24, rounds: int = 60, seed: int = 1) -> Callable[[Any, int], None]:
    """A VM driver: one task on `cpu` maps anonymous regions, writes every page (faults)
    and unmaps them, round after round; then exits."""
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    def drive(arena: Any, cpu: int) -> None:
        rng = random.Random(seed)
        vm, tid = task_vm(arena, cpu, "crash")
        for k in range(rounds):
            n = rng.randint(1, pages)
            a = vm.mmap(0, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
            for p in range(n):
                if p & 1:
                    vm.load64(a + p * 4096)     # the zero page first: the write is a COW (map_new)
                vm.store64(a + p * 4096, k)
            vm.munmap(a, n * 4096)
        _task_exit(vm, tid)

    return drive


def vm_split_driver(rounds: int = 30, seed: int = 1) -> Callable[[Any, int], None]:
    """A VM driver of splits and the break: one task on `cpu` maps an anonymous region,
    writes it, mprotects and unmaps pieces out of its middle (two splits each, a merge),
    moves its first page away (mremap), and
    grows and shrinks its break (do_brk_flags expands the heap VMA, a shrink splits it),
    round after round; then exits."""
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE

    def drive(arena: Any, cpu: int) -> None:
        rng = random.Random(seed)
        vm, tid = task_vm(arena, cpu, "crash")
        heap = vm.brk(0)
        for k in range(rounds):
            n = rng.randint(6, 24)
            a = vm.mmap(0, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
            for p in range(n):
                vm.store64(a + p * 4096, k)
            i = rng.randint(1, n - 4)
            vm.mprotect(a + i * 4096, 2 * 4096, PROT_READ)
            vm.mprotect(a + i * 4096, 4096, PROT_READ | PROT_WRITE)     # merges back into the left part
            vm.munmap(a + (i + 1) * 4096, 4096)
            b = vm.mremap(a, 4096, 2 * 4096, MREMAP_MAYMOVE)            # the next page is mapped: a move
            assert vm.load64(b) == k
            vm.munmap(b, 2 * 4096)
            g = rng.randint(1, 3)
            assert vm.brk(heap + g * 4096) == heap + g * 4096
            vm.store64(heap, k)
            assert vm.brk(heap + 4096) == heap + 4096
            vm.munmap(a, n * 4096)
        assert vm.brk(heap) == heap
        _task_exit(vm, tid)

    return drive


VM_FILE = "crash-file"
VM_FILE_PAGES = 40
VM_FILE_SEED = 3


def vm_file_setup(arena: Any, params: Any, nr_cpus: int = 2, name: str = VM_FILE, pages: int = VM_FILE_PAGES) -> int:
    """The generated file vm_file_driver maps (or `name` of `pages`), created by the test
    process (a CPU of the machine's, not the one that dies); then the baselines are taken
    again, so the file's vnode object is not counted as lost (its page cache is:
    `lost(files=...)`)."""
    from aerosync.mm.vm.vm import VM
    from workers.workloads import crash_soak

    vm = VM(arena, 0)
    try:
        fid = vm.file_create(name, pages * 4096, seed=VM_FILE_SEED)
    finally:
        vm.leave()
    crash_soak.setup(arena, params, nr_cpus)
    return fid


def vm_file_driver(rounds: int = 30, seed: int = 1) -> Callable[[Any, int], None]:
    """A VM driver of file faults: one task maps the file (private, or shared every third
    round), reads random pages -- a miss reads the page in with readahead, a hit maps the
    cached folio, fault-around maps neighbours -- checks each page's stamp, and writes some
    (a private COW copy of the held folio, or a shared page dirtied); then unmaps it."""
    from aerosync.mm.vm.filemap import expected_page
    from aerosync.mm.vm.mmap import MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE

    size = VM_FILE_PAGES * 4096

    def drive(arena: Any, cpu: int) -> None:
        rng = random.Random(seed)
        vm, tid = task_vm(arena, cpu, "crashf")
        fid = vm.file_lookup(VM_FILE)
        for k in range(rounds):
            a = vm.mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED if k % 3 == 2 else MAP_PRIVATE, fid, 0)
            for p in rng.sample(range(VM_FILE_PAGES), 12):
                stamp = int.from_bytes(expected_page(fid, VM_FILE_SEED, p)[:8], "little")
                got = vm.load64(a + p * 4096)
                assert got == stamp, f"file page {p}: {got:#x} != {stamp:#x}"
                if rng.random() < 0.4:
                    vm.store64(a + p * 4096 + 64, k)
            vm.munmap(a, size)
        _task_exit(vm, tid)

    return drive


def vm_file_fork_driver(rounds: int = 10, seed: int = 1) -> Callable[[Any, int], None]:
    """A file VMA forked and split (its copies join the file's i_mmap, which outlives the
    task): one task maps the file private, writes a page and reads another, forks -- the
    child reads the written page back and exits --, then mprotects a page in the middle
    (two splits) and unmaps."""
    from aerosync.mm.vm.mmap import MAP_PRIVATE, PROT_READ, PROT_WRITE

    size = VM_FILE_PAGES * 4096

    def drive(arena: Any, cpu: int) -> None:
        rng = random.Random(seed)
        vm, tid = task_vm(arena, cpu, "crashff")
        fid = vm.file_lookup(VM_FILE)
        for k in range(rounds):
            a = vm.mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fid, 0)
            p = rng.randrange(VM_FILE_PAGES)
            vm.store64(a + p * 4096 + 64, k)
            vm.load64(a + rng.randrange(VM_FILE_PAGES) * 4096)
            child = vm.fork()
            vm.switch_to(child)
            assert vm.load64(a + p * 4096 + 64) == k
            vm.exit()
            vm.switch_to(tid)
            vm.reap(child)
            vm.mprotect(a + (VM_FILE_PAGES // 2) * 4096, 4096, PROT_READ)
            vm.munmap(a, size)
        _task_exit(vm, tid)

    return drive


def vm_fork_driver(pages: int = 24, rounds: int = 30, seed: int = 1) -> Callable[[Any, int], None]:
    """A VM driver of forks: a task maps two anonymous regions (one private, one shared),
    writes them, forks; the parent writes half its private pages again (COW copies), the
    child runs, writes a page of each (COW, shared) and exits; the parent reaps it and
    unmaps.  Round after round, then exits."""
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE

    def drive(arena: Any, cpu: int) -> None:
        rng = random.Random(seed)
        vm, tid = task_vm(arena, cpu, "crashk")
        rw = PROT_READ | PROT_WRITE
        for k in range(rounds):
            n = rng.randint(1, pages)
            a = vm.mmap(0, n * 4096, rw, MAP_PRIVATE | MAP_ANONYMOUS)
            s = vm.mmap(0, 4096, rw, MAP_SHARED | MAP_ANONYMOUS)
            for p in range(n):
                vm.store64(a + p * 4096, k)
            vm.store64(s, k)
            child = vm.fork()
            for p in range(0, n, 2):
                vm.store64(a + p * 4096, ~k & 0xFFFF)
            vm.switch_to(child)
            assert vm.load64(a + (n - 1) * 4096) == k
            vm.store64(a, 7)
            vm.store64(s, k + 1)
            vm.exit()
            vm.switch_to(tid)
            vm.reap(child)
            assert vm.load64(s) == k + 1
            vm.munmap(a, n * 4096)
            vm.munmap(s, 4096)
        _task_exit(vm, tid)

    return drive


def _vmalloc_driver(rounds: int, seed: int, one: Callable[[Any, Any, int], int],
                    finish: Callable[[Any], Any]) -> Callable[[Any, int], None]:
    """A kernel driver: `rounds` times a = one(vmalloc handle, rng, k), vfree'd at once,
    then finish(vmalloc handle).  Between vmalloc's return and the start of vfree's
    record the area is the caller's alone, as in the kernel (a caller that dies there
    leaks it); so the driver names it in `drive.held` (a shared anonymous page: the
    test reads it after the death) and `free_held` does the dead caller's cleanup."""
    import mmap

    held = mmap.mmap(-1, 8)

    def drive(arena: Any, cpu: int) -> None:
        from aerosync.mm.vm.vm import VM

        rng = random.Random(seed)
        vm = VM(arena, cpu)
        vm.make_current()
        va = vm.kernel.vmalloc
        for k in range(rounds):
            addr = one(va, rng, k)
            held[:8] = addr.to_bytes(8, "little")      # (untraced: no kill in between)
            va.vfree(addr)
        held[:8] = bytes(8)
        finish(va)
        vm.leave()

    drive.held = held  # type: ignore[attr-defined]
    return drive


def free_held(arena: Any, cpu: int, drv: Any) -> int:
    """The cleanup of a dead vmalloc driver's caller (`_vmalloc_driver`): the area it
    held, if its vfree had not begun (the area still busy: a large one's vmap_area, a
    small one's used bit in its vmap_block), vfree'd on `cpu` in a child (recovery
    rolled forward a vfree whose record had begun).  Returns the address freed, or 0."""
    held = getattr(drv, "held", None)
    addr = int.from_bytes(held[:8], "little") if held is not None else 0
    if not addr:
        return 0

    def drive(arena: Any, cpu: int) -> None:
        from aerosync.mm.vm import vmalloc_layout as VL
        from aerosync.mm.vm.vm import VM

        vm = VM(arena, cpu)
        vm.make_current()
        va, q = vm.kernel.vmalloc, arena.u64
        vb = va.block_of(addr)
        if vb and q[(vb + VL.VB_START) >> 3] <= addr < q[(vb + VL.VB_START) >> 3] + VL.VMAP_BLOCK_SIZE:
            off = (addr - q[(vb + VL.VB_START) >> 3]) >> 12
            busy = (q[((vb + VL.VB_USED) >> 3) + (off >> 6)] >> (off & 63)) & 1
        else:
            v = va.find_vmap_area(addr)
            busy = v and arena.u32[(v + VL.VA_FLAGS) >> 2] & VL.VA_BUSY and q[(v + VL.VA_START) >> 3] == addr
        if busy:
            va.vfree(addr)
            held[:8] = bytes(8)                        # (tells the parent)
        vm.leave()

    _, killed = run_child(arena, cpu, drive)
    assert not killed
    freed = not any(held[:8])
    held[:8] = bytes(8)
    return addr if freed else 0


def vmalloc_driver(rounds: int = 400, seed: int = 1) -> Callable[[Any, int], None]:
    """vmalloc / vfree of areas of 256..384 pages -- above vmap_block_max, so never a
    per-CPU vmap_block's (those outlive a driver that does not end with
    vm_unmap_aliases) -- and now and then a huge one, until freed areas pile up lazy and
    purges run; ends with a purge."""
    return _vmalloc_driver(rounds, seed, lambda va, rng, k: va.vmalloc_huge(2 << 20) if k % 50 == 49
                           else va.vmalloc(rng.randint(256, 384) * 4096), lambda va: va.purge_vmap_area_lazy())


def vmalloc_huge_driver(rounds: int = 4) -> Callable[[Any, int], None]:
    """vmalloc_huge / vfree of one PMD-sized area a round (a fresh machine has the
    order-9 blocks: each is mapped by one PMD leaf); ends with a purge."""
    return _vmalloc_driver(rounds, 1, lambda va, rng, k: va.vmalloc_huge(2 << 20), lambda va: va.purge_vmap_area_lazy())


def vmblock_driver(rounds: int = 300, seed: int = 1, pages: int = 0) -> Callable[[Any, int], None]:
    """Small vmallocs (1..127 pages, or `pages`: the per-CPU vmap_blocks), so blocks
    fill with dirty ranges and retire (at the free that leaves one idle, or when every
    page is dirty; 127 pages and the guard fill a block's second half exactly); it ends
    with vm_unmap_aliases, which frees every block with nothing in use
    (purge_fragmented_blocks) and purges -- no block outlives the driver, on any CPU."""
    return _vmalloc_driver(rounds, seed, lambda va, rng, k: va.vmalloc((pages or rng.randint(1, 127)) * 4096
                                                                       - rng.randrange(4096)),
                           lambda va: va.vm_unmap_aliases())


def reclaim_driver(pages: int = 3000, seed: int = 1) -> Callable[[Any, int], None]:
    """A driver under memory pressure (a machine of 2048 pages with swap): one task
    writes `pages` anonymous pages -- its faults reclaim (direct reclaim: isolate,
    swap out, put back) -- reads every 7th back (swap-ins), unmaps and exits."""
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    def drive(arena: Any, cpu: int) -> None:
        vm, tid = task_vm(arena, cpu, "reclaim")
        a = vm.mmap(0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(pages):
            vm.store64(a + i * 4096, i + seed)
        for i in range(0, pages, 7):
            assert vm.load64(a + i * 4096) == i + seed
        vm.munmap(a, pages * 4096)
        _task_exit(vm, tid)

    return drive


def lazyfree_driver(pages: int = 2400, seed: int = 1) -> Callable[[Any, int], None]:
    """A driver of MADV_FREE under memory pressure (a machine of 2048 pages with swap): one
    task writes the first half of a region, frees it lazily (MADV_FREE), then writes the
    second half -- its faults reclaim, discarding the clean lazily freed folios
    (reclaim_lazyfree) -- reads the first half back (each page its old value or zero,
    as MADV_FREE allows), unmaps and exits."""
    from aerosync.mm.vm.mmap import MADV_FREE, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

    def drive(arena: Any, cpu: int) -> None:
        vm, tid = task_vm(arena, cpu, "lazyfree")
        half = pages // 2
        a = vm.mmap(0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(half):
            vm.store64(a + i * 4096, i + seed)
        vm.madvise(a, half * 4096, MADV_FREE)
        for i in range(half, pages):
            vm.store64(a + i * 4096, i + seed)
        for i in range(0, half, 5):
            assert vm.load64(a + i * 4096) in (0, i + seed)
        vm.munmap(a, pages * 4096)
        _task_exit(vm, tid)

    return drive


BIG_FILE, BIG_FILE_PAGES = "crash-bigfile", 2600


def file_reclaim_driver(rounds: int = 2) -> Callable[[Any, int], None]:
    """A driver of page-cache eviction (a machine of 2048 pages; the file BIG_FILE, made
    by vm_file_setup(name=BIG_FILE, pages=BIG_FILE_PAGES), larger than memory): one task
    maps it shared, reads every page `rounds` times -- its faults reclaim clean file
    folios (reclaim_file: frozen, their tree entry a shadow, freed) and refault them --
    checking each page's stamp, then unmaps it and exits."""
    from aerosync.mm.vm.filemap import expected_page
    from aerosync.mm.vm.mmap import MAP_SHARED, PROT_READ

    size = BIG_FILE_PAGES * 4096

    def drive(arena: Any, cpu: int) -> None:
        vm, tid = task_vm(arena, cpu, "filerec")
        fid = vm.file_lookup(BIG_FILE)
        a = vm.mmap(0, size, PROT_READ, MAP_SHARED, fid, 0)
        for _ in range(rounds):
            for p in range(BIG_FILE_PAGES):
                stamp = int.from_bytes(expected_page(fid, VM_FILE_SEED, p)[:8], "little")
                assert vm.load64(a + p * 4096) == stamp, f"file page {p}"
        vm.munmap(a, size)
        _task_exit(vm, tid)

    return drive


def migrate_driver(pages: int = 40, rounds: int = 6, seed: int = 1) -> Callable[[Any, int], None]:
    """A NUMA migration driver (a machine of two nodes): one task writes `pages`
    anonymous pages, then round after round moves them to the other node -- the even
    ones with move_pages (one batch, each folio's PTE its hint: the fast path), the odd
    ones one by one with migrate_to_node and no hint (the object walk: the general
    path) -- each move checked to succeed, and every page's contents; then unmaps and
    exits."""
    from aerosync.mm.numa.numa_vm import attach
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
    from aerosync.mm.vm.pgtable import PTE_PFN_MASK

    def drive(arena: Any, cpu: int) -> None:
        vm, tid = task_vm(arena, cpu, "migrate")
        numa = attach(vm)
        assert numa is not None
        mig, mm_id = numa.migrate, vm.cur[1]
        a = vm.mmap(0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for p in range(pages):
            vm.store64(a + p * 4096, p + seed)
        for r in range(rounds):
            dest = (r + 1) & 1
            even = [a + p * 4096 for p in range(0, pages, 2)]
            assert numa.move_pages(0, even, [dest] * len(even)) == (0, [dest] * len(even))
            for p in range(1, pages, 2):
                pfn = (mig.entry_at(mm_id, a + p * 4096) & PTE_PFN_MASK) >> 12
                assert mig.migrate_to_node(mm_id, pfn, dest) == 0
            for p in range(pages):
                assert vm.load64(a + p * 4096) == p + seed + r
                vm.store64(a + p * 4096, p + seed + r + 1)
        vm.munmap(a, pages * 4096)
        _task_exit(vm, tid)

    return drive


def vm_recover_hook(arena: Any, cpu: int, records: Any, mm: Any, slub: Any) -> dict[str, int]:
    from aerosync.mm.vm.recover import vm_recover

    return vm_recover(arena, cpu, mm, slub)


def vmap_driver(pfn_file: str, rounds: int = 600, npages: int = 3) -> Callable[[Any, int], None]:
    """A kernel driver of vmap(): each round allocates `npages` pages (their pfns
    appended to `pfn_file` first, so a test knows what a dead caller held), vmaps them,
    writes through the mapping, vunmaps and frees them; ends with a purge."""

    def drive(arena: Any, cpu: int) -> None:
        import os

        from aerosync.mm.pmm.gfp import GFP_KERNEL
        from aerosync.mm.vm.vm import VM

        vm = VM(arena, cpu)
        vm.make_current()
        v, kmem = vm.kernel.vmalloc, vm.kernel.kmem
        fd = os.open(pfn_file, os.O_WRONLY | os.O_APPEND)
        for k in range(rounds):
            pfns = [vm.mm.alloc_pages(GFP_KERNEL, 0) for _ in range(npages)]
            os.write(fd, (" ".join(map(str, pfns)) + "\n").encode())
            x = v.vmap(pfns)
            kmem.store64(x + (npages - 1) * 4096, k)
            v.vunmap(x)
            for p in pfns:
                vm.mm.free_pages(p, 0)
        os.close(fd)
        v.purge_vmap_area_lazy()
        vm.leave()

    return drive


def _code_roots() -> tuple[str, ...]:
    import aerosync
    import workers

    return tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (aerosync, workers))


def kill_between_points(run: Callable[[], None], nth: int,
                        match: Callable[[Any, str], bool] | None = None) -> None:
    """Run `run()` traced (sys.settrace) and SIGKILL this process just before the `nth`
    line executed in aerosync/ or workers/ that `match(frame, source line)` accepts
    (any line when None): a kill from outside, between fault points, made repeatable.
    Returns normally if `run` ends first."""
    import linecache
    import sys

    roots = _code_roots()
    seen = [0]

    def tr(frame: Any, ev: str, _arg: Any) -> Any:
        fn = frame.f_code.co_filename
        if not fn.startswith(roots):
            return None
        if ev == "line" and (match is None or match(frame, linecache.getline(fn, frame.f_lineno))):
            seen[0] += 1
            if seen[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        return tr

    sys.settrace(tr)
    try:
        run()
    finally:
        sys.settrace(None)


def at_line(func: str, text: str, cond: Callable[[Any], bool] | None = None) -> Callable[[Any, str], bool]:
    """A `kill_between_points` match: a line of function `func` containing `text`
    (and `cond(frame)`)."""
    def match(frame: Any, line: str) -> bool:
        return frame.f_code.co_name == func and text in line and (cond is None or cond(frame))

    return match


def async_soak_driver(params: Any, nth: int, match: Callable[[Any, str], bool] | None = None, warm: int = 30,
                      feed: bool = False, seed: int = 1) -> Callable[[Any, int], None]:
    """A driver: (CPU 1 feeding this CPU's ring first when `feed`) `warm` crash_soak
    batches untraced, then batches under `kill_between_points(nth, match)`."""
    from workers.workloads import crash_soak

    def drive(arena: Any, cpu: int) -> None:
        if feed:
            feed_before(params)(arena, cpu)
        batch = crash_soak.make_batch(arena, cpu, params, random.Random(seed))
        for _ in range(warm):
            batch(64)

        def run() -> None:
            for _ in range(SOAK_BUDGET):
                batch(64)

        kill_between_points(run, nth, match)
        batch.teardown()

    return drive


def async_vm_driver(nth: int, match: Callable[[Any, str], bool] | None = None,
                    inner: Callable[[Any, int], None] | None = None) -> Callable[[Any, int], None]:
    """A driver: vm_driver's rounds (map, fault, unmap), or `inner`'s, under
    `kill_between_points(nth, match)`: a kill from outside inside the VM and the locks
    it takes."""
    inner = inner or vm_driver()

    def drive(arena: Any, cpu: int) -> None:
        kill_between_points(lambda: inner(arena, cpu), nth, match)

    return drive
