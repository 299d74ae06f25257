"""Multi-process VM stress: simulated CPUs (real processes) share one address space
(threads mode) and hammer it with random mmap/munmap/mprotect/madvise/fork and verified
accesses, while the parent parks them now and then and checks the whole machine
mid-flight: the page checker, rmap (RM1: every mapped folio's mapcount equals the PTEs
the reverse map finds) and each CPU's own data checks.  CI runs a short version;
`--soak` a long one."""

from __future__ import annotations

import time

import numpy as np

from aerosync.arena import layout as L
from aerosync.mm.pmm.check import check
from aerosync.mm.pmm.page import page_array
from aerosync.mm.vm.vm import VM
from tests import vm_stress_child as C


def _wait(cond, what: str, procs, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for p in procs:
            assert p.exitcode in (None, 0), f"a stress CPU died ({p.exitcode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _rmap_ok(a, cpu: VM) -> tuple[int, list[str]]:
    pages = page_array(a)
    mapped = np.flatnonzero(pages["mapcount"] > 0).tolist()
    counts = pages["mapcount"][mapped].tolist()
    del pages
    bad = []
    for pfn, mc in zip(mapped, counts):
        n = len(cpu.rmap.mapped_ptes(pfn))
        if n != mc:
            bad.append(f"pfn {pfn}: mapcount {mc}, rmap finds {n}")
    return len(mapped), bad


def test_vm_threads_stress_with_live_checks(machine, spawn, soak: bool) -> None:
    nchild = 3
    nops = 4000 if soak else 500
    a = machine(nr_pages=16384, nr_cpus=nchild + 1, slab=True, vm={"mm": "threads"},
                extra=[L.SectionSpec("stressctl", 16384)])
    me = VM(a, nchild)                                  # the checking CPU: never runs the mm
    mm = me.forks.mm_alloc()
    fid = me.file_create("stress", 64 * 4096, seed=9)
    ctl = a.off("stressctl")
    c8 = ctl >> 3
    q = a.u64
    procs = [spawn(C.run, a.name, cpu, mm, ctl, nops, 1, fid) for cpu in range(nchild)]
    q[c8 + C.C_GO] = 1
    checks = 0
    while not all(q[c8 + C.C_DONE + c] for c in range(nchild)):
        time.sleep(0.3)
        if all(q[c8 + C.C_DONE + c] for c in range(nchild)):
            break
        q[c8 + C.C_PAUSE] = 1
        _wait(lambda: all(q[c8 + C.C_PARKED + c] or q[c8 + C.C_DONE + c] for c in range(nchild)),
              "every CPU parked", procs)
        r = check(a)
        assert r.ok, r.violations[:5]
        _nmapped, bad = _rmap_ok(a, me)
        assert not bad, bad[:5]
        checks += 1
        q[c8 + C.C_PAUSE] = 0
    for p in procs:
        p.join(60)
    errs = [bytes(a.u8[ctl + C.ERR_OFF + c * 3072 : ctl + C.ERR_OFF + (c + 1) * 3072]).rstrip(b"\0").decode()
            for c in range(nchild)]
    for e in errs:
        if e:
            print(e)
    assert [q[c8 + C.C_BAD + c] for c in range(nchild)] == [0] * nchild, [e for e in errs if e]
    assert all(p.exitcode == 0 for p in procs)
    assert sum(q[c8 + C.C_OPS + c] for c in range(nchild)) == nchild * nops
    me.forks.mmput(mm)
    me.leave()
    r = check(a)
    assert r.ok, r.violations[:5]
    assert checks >= 1 or nops < 1000
