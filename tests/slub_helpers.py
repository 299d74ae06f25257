"""Child-process bodies for the SLUB multi-process tests (spawn imports them by module).

Rings: one single-producer single-consumer ring per destination CPU in the test's
"xfer" section: head u64 (producer) at +0, tail u64 (consumer) at +8, RING_SLOTS slots
of {addr u64, pattern u64} from +64.  Every object carries its (cpu, seq) pattern in its
first 16 bytes; the freer checks it, so an object handed out twice shows up as a
mismatch.  Results per CPU (u64 each) at res_off + cpu * 64: bad, allocs, remote frees,
cas_fail, done flag.
"""

from __future__ import annotations

import gc
import random
import time

from aerosync.arena.segment import Arena

RING_SLOTS = 4096
RING_BYTES = 64 + RING_SLOTS * 16


def ring_off(a: Arena, cpu: int) -> int:
    return a.off("xfer") + cpu * RING_BYTES


def _wait_go(a: Arena, go_off: int) -> None:
    a.atomic.fetch_add64(go_off, 1)
    while a.atomic.load64(go_off) < 1000:
        time.sleep(0.001)


def larson_child(name: str, cpu: int, nr_cpus: int, ops: int, seed: int, remote_pct: int,
                 res_off: int, go_off: int) -> None:
    """Server pattern: allocate, keep a working set, hand some objects to the next CPU,
    free the ones handed to us (remote frees) and our own (local)."""
    from aerosync.mm.slab.kmalloc import Kmalloc
    from aerosync.mm.slab.slab_common import VBASE
    from aerosync.mm.slab.slub import Slub

    a = Arena.attach(name)
    s = Slub(a, cpu)
    k = Kmalloc(s)
    kmalloc, kfree = k.kmalloc, k.kfree
    u64, at = a.u64, a.atomic
    PHYS = a.off("physmem")
    rnd = random.Random(seed)
    my_ring, peer_ring = ring_off(a, cpu), ring_off(a, (cpu + 1) % nr_cpus)
    held: list[tuple[int, int]] = []
    bad = allocs = remote = 0
    pat_base = cpu << 48
    _wait_go(a, go_off)

    def check_free(addr: int, pat: int) -> int:
        o = (addr - VBASE + PHYS) >> 3
        ok = u64[o] == pat and u64[o + 1] == pat ^ 0xFFFF
        kfree(addr)
        return 0 if ok else 1

    for seq in range(ops):
        r = rnd.random()
        if r < 0.5 or not held:
            addr = kmalloc(rnd.choice((16, 24, 64, 96, 200, 500)))
            if not addr:
                bad += 1000
                break
            pat = pat_base | seq
            o = (addr - VBASE + PHYS) >> 3
            u64[o] = pat
            u64[o + 1] = pat ^ 0xFFFF
            allocs += 1
            if rnd.randrange(100) < remote_pct:
                h, t = at.load64(peer_ring), at.load64(peer_ring + 8)
                if h - t < RING_SLOTS:
                    slot = peer_ring + 64 + (h % RING_SLOTS) * 16
                    u64[slot >> 3], u64[(slot + 8) >> 3] = addr, pat
                    at.store64(peer_ring, h + 1)
                    continue
            held.append((addr, pat))
            if len(held) > 300:
                bad += check_free(*held.pop(rnd.randrange(len(held))))
        else:
            bad += check_free(*held.pop(rnd.randrange(len(held))))
        h, t = at.load64(my_ring), at.load64(my_ring + 8)
        if h != t:
            slot = my_ring + 64 + (t % RING_SLOTS) * 16
            addr, pat = u64[slot >> 3], u64[(slot + 8) >> 3]
            at.store64(my_ring + 8, t + 1)
            bad += check_free(addr, pat)
            remote += 1
    for addr, pat in held:
        bad += check_free(addr, pat)
    _publish(a, res_off, cpu, bad, allocs, remote, s)


def _publish(a: Arena, res_off: int, cpu: int, bad: int, allocs: int, remote: int, s: object) -> None:
    from aerosync.mm.slab.slab_common import live_caches, slab_stats

    cas = sum(slab_stats(a, c, cpu)["cmpxchg_fail"] for c in live_caches(a))
    res = res_off + cpu * 64
    for i, v in enumerate((bad, allocs, remote, cas)):
        a.u64[(res + 8 * i) >> 3] = v
    a.atomic.store64(res + 32, 1)
    del s
    gc.collect()
    a.close()


def xmalloc_child(name: str, cpu: int, role: str, nobj: int, res_off: int, go_off: int) -> None:
    """role 'alloc': allocate nobj objects into the ring of cpu 1; role 'free': free them."""
    from aerosync.mm.slab.kmalloc import Kmalloc
    from aerosync.mm.slab.slab_common import VBASE
    from aerosync.mm.slab.slub import Slub

    a = Arena.attach(name)
    s = Slub(a, cpu)
    k = Kmalloc(s)
    u64, at = a.u64, a.atomic
    PHYS = a.off("physmem")
    ring = ring_off(a, 1)
    bad = allocs = remote = 0
    _wait_go(a, go_off)
    if role == "alloc":
        kmalloc = k.kmalloc
        for seq in range(nobj):
            addr = kmalloc(64 if seq % 3 else 128)
            pat = cpu << 48 | seq
            o = (addr - VBASE + PHYS) >> 3
            u64[o], u64[o + 1] = pat, pat ^ 0xFFFF
            allocs += 1
            while True:
                h, t = at.load64(ring), at.load64(ring + 8)
                if h - t < RING_SLOTS:
                    break
                time.sleep(0)
            slot = ring + 64 + (h % RING_SLOTS) * 16
            u64[slot >> 3], u64[(slot + 8) >> 3] = addr, pat
            at.store64(ring, h + 1)
    else:
        kfree = k.kfree
        while remote < nobj:
            h, t = at.load64(ring), at.load64(ring + 8)
            if h == t:
                time.sleep(0)
                continue
            for i in range(t, h):
                slot = ring + 64 + (i % RING_SLOTS) * 16
                addr, pat = u64[slot >> 3], u64[(slot + 8) >> 3]
                o = (addr - VBASE + PHYS) >> 3
                if u64[o] != pat or u64[o + 1] != pat ^ 0xFFFF:
                    bad += 1
                kfree(addr)
                remote += 1
            at.store64(ring + 8, h)
    _publish(a, res_off, cpu, bad, allocs, remote, s)
