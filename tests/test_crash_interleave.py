"""Crash recovery against what live CPUs did after the death (forced interleavings).

Between a CPU's death and the world stopping for its recovery, the live CPUs run on
(mm/recovery.py phase A): whatever the dead CPU's records name but had already
published may have been taken by a live CPU.  Recovery must repair only what the dead
CPU held alone.
"""

from __future__ import annotations

from aerosync.mm import intent as I
from aerosync.mm.slab.slab_common import FROZEN, K_SLAB, M_WORD, NIL32, SMETA, ST_FREE, _cpu_off, _geo
from aerosync.mm.slab.slub import Slub
from tests import crash_helpers as H

CACHE = "kmalloc-512"


def _exhaust(arena, cpu: int) -> None:
    """Allocate from CACHE on `cpu` and never free: every cpu slab runs out with no
    remote frees, so the slow path finds no freelist to take (get_freelist: NIL)."""
    kc = Slub(arena, cpu).cache(CACHE)
    held = []
    for _ in range(4096):
        held.append(kc.alloc())


def test_full_slab_published_by_the_dead_cpu_is_not_unfrozen(machine) -> None:
    """cpu1 dies at slab:alloc:freelist right after get_freelist() found its cpu slab X
    full: X is unfrozen, full and on no list -- public: a free on cpu0 puts it on cpu0's
    partial list, and cpu0's next allocation freezes it and installs it as c->slab.  The
    dead CPU's record (slab_alloc_slow step 1, slab X, chain NIL) must then leave X
    alone: splicing an empty chain would unfreeze cpu0's cpu slab (S3)."""
    p = H.soak_params()
    a = H.soak_machine(machine, p)
    pid, killed = H.run_child(a, 1, _exhaust, "slab:alloc:freelist", 0)
    assert killed
    (rec,) = I.read_records(a, 1)
    assert (I.OP_NAMES[rec.op], rec.step, rec.args[2]) == ("slab_alloc_slow", 1, NIL32)
    x = rec.args[1]
    kc0 = Slub(a, 0).cache(CACHE)
    kc0.free_slow(x, 0)                       # __slab_free (as a magazine spill does): X to
    kc0.stat(ST_FREE)                         # cpu0's partial list; kfree counted it
    addr = kc0.alloc()                        # cpu0 takes X from c->partial, installs it
    assert kc0.obj_index(x, addr) == 0
    _, nr_cpus, _, mag, _ = _geo(a)
    assert a.u64[(_cpu_off(a, kc0.id, 0, nr_cpus, mag) + K_SLAB) >> 3] == x
    H.recover(a, pid, 1, p)
    H.check_all(a)
    assert a.u64[(a.off("slabmeta") + x * SMETA + M_WORD) >> 3] & FROZEN
    kc0.free(addr)
    kc0.flush_cpu(0)
    H.check_all(a)
