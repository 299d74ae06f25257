"""A CPU death in [vm] mm = "threads" mode: the survivors' TLBs.

Invariant (mm/vm/recover.py): when a CPU dies in a munmap of an mm that another CPU's
thread runs in, between clearing the PTEs and its TLB flush, recovery frees the gathered
pages only after a shootdown of the mm -- no live CPU can read a page, through an entry
its TLB still holds, once that page can be reused.  Then the run goes on: the live
thread faults (SIGSEGV: the range is gone), the checkers pass, nothing is lost.

The bad interleaving is forced: CPU 1 fills its TLB with the region and keeps loading
from it; CPU 0 dies at vm:zap:gathered; while recovery is between its flush and the
frees (hook recover:gather_flushed), the test overwrites the gathered pages as a reuse
would, and waits -- CPU 1 must have faulted, never read the new contents.
"""

from __future__ import annotations

import os
import signal
import struct
import time

import pytest

from aerosync.arena import layout as L
from aerosync.mm import hooks
from aerosync.mm import intent as I
from tests import crash_helpers as H
from tests.crash_helpers import no_bad_pages  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.timeout(120)

NP = 8
POISON = 0xDEAD_BEEF_0BAD_F00D
SEGV, STALE, TIMEOUT = 0, 7, 8          # CPU 1's exit codes


def _cpu0(w_info: int, r_ready: int):
    from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
    from aerosync.mm.vm.vm import VM

    def drive(arena, cpu) -> None:
        vm = VM(arena, cpu)
        vm.make_current()
        tid = vm.task_create("t0")
        vm.switch_to(tid)
        addr = vm.mmap(0, NP * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(NP):
            vm.store64(addr + i * 4096, 0x1000 + i)
        os.write(w_info, struct.pack("<QQ", vm.cur[1], addr))
        os.read(r_ready, 1)                       # CPU 1's TLB holds every page now
        vm.munmap(addr, NP * 4096)                # dies at vm:zap:gathered
        vm.exit()
        vm.reap(tid)
        vm.leave()

    return drive


def _cpu1(r_info: int, w_ready: int):
    def drive(arena, cpu) -> None:
        from aerosync.mm.vm.memory import SegmentationFault
        from aerosync.mm.vm.vm import VM

        mm, addr = struct.unpack("<QQ", os.read(r_info, 16))
        vm = VM(arena, cpu)
        vm.make_current()
        tid = vm.task_create("t1", mm=mm)
        vm.switch_to(tid)
        for i in range(NP):
            assert vm.load64(addr + i * 4096) == 0x1000 + i
        os.write(w_ready, b"r")
        code = TIMEOUT
        deadline = time.monotonic() + 60
        try:
            while code == TIMEOUT and time.monotonic() < deadline:
                for i in range(NP):
                    if vm.load64(addr + i * 4096) == POISON:
                        code = STALE
                        break
        except SegmentationFault:
            code = SEGV
        vm.exit()
        vm.reap(tid)
        vm.leave()
        os._exit(code)

    return drive


def test_threads_death_in_munmap_flushes_before_free(machine) -> None:
    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": "threads"})
    r_info, w_info = os.pipe()
    r_ready, w_ready = os.pipe()
    pid1 = H.start_child(a, 1, _cpu1(r_info, w_ready))
    phys = a.off("physmem")
    gathered: list[int] = []
    poisoned: list[int] = []

    def reuse(_name: str) -> None:
        """Between recovery's flush and its frees: the pages get new contents (a reuse),
        and CPU 1 gets time to read through any entry its TLB kept."""
        for pfn in gathered:
            o = phys + (pfn << 12)
            a.u8[o : o + 8] = POISON.to_bytes(8, "little")
            poisoned.append(pfn)
        time.sleep(0.3)

    try:
        pid0, killed = H.run_child(a, 0, _cpu0(w_info, r_ready), "vm:zap:gathered", 0)
        assert killed and I.died_at(a, 0) == "vm:zap:gathered"
        g = [r for r in I.read_records(a, 0) if r.name == "vm_gather"]
        assert len(g) == 1 and g[0].step == NP, I.read_records(a, 0)
        gathered += I.spill_items(a, 0, g[0].ctx, L.SPILL_GATHER + NP)[L.SPILL_GATHER:]
        hooks.set_point("recover:gather_flushed", reuse)
        try:
            H.recover(a, pid0, 0, p, H.vm_recover_hook)
        finally:
            hooks.clear_points()
        assert len(poisoned) == NP
        _, status = os.waitpid(pid1, 0)
        pid1 = 0
        assert os.WIFEXITED(status), status
        code = os.WEXITSTATUS(status)
        assert code != STALE, "cpu1 read a page through its TLB after recovery handed the page back"
        assert code == SEGV, f"cpu1 exit status {code}"
    finally:
        if pid1:
            os.kill(pid1, signal.SIGKILL)
            os.waitpid(pid1, 0)
        for fd in (r_info, w_info, r_ready, w_ready):
            os.close(fd)
    H.check_all(a)
    assert I.read_records(a, 0) == []
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}


def test_dead_writer_sequences_are_ended(machine) -> None:
    """CPU 0 dies in munmap holding the shared mm's mmap_lock for write (before the
    downgrade: mm_lock_seq and mmap_seq odd).  The takeover frees the rwsem; recovery
    moves both sequences on to even (vma_end_write_all), else the next writer would hold
    the lock with them even -- speculative faults would run under it."""
    from aerosync.mm.vm import mm_types as T
    from aerosync.sync.objlock import RW_WRITER

    p = H.soak_params()
    a = H.soak_machine(machine, p, vm={"mm": "threads"})
    r_info, w_info = os.pipe()
    r_ready, w_ready = os.pipe()
    r_go, w_go = os.pipe()

    def cpu1(arena, cpu) -> None:
        from aerosync.mm.vm.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
        from aerosync.mm.vm.vm import VM

        mm, _addr = struct.unpack("<QQ", os.read(r_info, 16))
        vm = VM(arena, cpu)
        vm.make_current()
        tid = vm.task_create("t1", mm=mm)             # keeps the mm alive past CPU 0's exit
        vm.switch_to(tid)
        own = vm.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        vm.store64(own, 1)
        os.write(w_ready, b"r")
        os.set_blocking(r_go, False)
        while True:                                   # running: answers IPIs at each access
            vm.load64(own)
            try:
                if os.read(r_go, 1):
                    break
            except BlockingIOError:
                time.sleep(0.001)
        vm.exit()
        vm.reap(tid)
        vm.leave()

    pid1 = H.start_child(a, 1, cpu1)
    try:
        pid0, killed = H.run_child(a, 0, _cpu0(w_info, r_ready), "vm:munmap:detached", 0)
        assert killed
        mm = T.mm_off(a, 1)
        seq = [a.u64[(mm + f) >> 3] for f in (T.M_LOCK_SEQ, T.M_MMAP_SEQ)]
        assert all(s & 1 for s in seq), seq                # the dead writer's hold
        rec = H.recover(a, pid0, 0, p, H.vm_recover_hook)
        assert rec.scan["mmap_write_ended"] == 1
        assert not a.atomic.load64(mm + T.M_MMAP_LOCK) & RW_WRITER
        assert [a.u64[(mm + f) >> 3] for f in (T.M_LOCK_SEQ, T.M_MMAP_SEQ)] == [s + 1 for s in seq]
        os.write(w_go, b"g")
        _, status = os.waitpid(pid1, 0)
        pid1 = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        if pid1:
            os.kill(pid1, signal.SIGKILL)
            os.waitpid(pid1, 0)
        for fd in (r_info, w_info, r_ready, w_ready, r_go, w_go):
            os.close(fd)
    H.check_all(a)
    assert H.lost(a, p, 2) == {"pages": 0, "objects": 0}
