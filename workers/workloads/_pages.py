"""Page helpers shared by the page workloads: verify stamps and the cross-CPU ring.

Stamps (stress-ng's verify mode): every page of an allocated block gets the word
`cpu << 48 | seq` in its first and last 8 bytes; the CPU that frees the block checks
both words of every page first.  A page handed to two CPUs at once is overwritten by the
second owner, so the first owner's check fails and the block is counted as corrupt.

Ring (cross-CPU frees): one ring per CPU in the arena section "pgring".  CPU c pushes
blocks it wants freed elsewhere into ring (c + 1) % n (or the ring `to_cpu` names);
CPU c pops from ring c and frees what it finds.  Layout per ring (RING_BYTES)::

    line 0   head u64  (consumer's: next slot to pop)
    line 1   tail u64  (producers': next slot to claim)
    128..    RING_SLOTS x u64 slots: ~entry (0 = empty; entry = pfn << 8 | order, order < 256)

Protocol: multi-producer, single-consumer.  A producer claims slot `tail` with a CAS on
tail (full: tail - head >= RING_SLOTS), then publishes the entry by storing its
complement (SEQ_CST) into the claimed slot; the consumer takes slots from head while
they are non-zero, zeroes each one, then stores head.  Several producers may share one
ring (xmalloc maps several producer CPUs to one consumer): with a plain "write slot
tail, then store tail + 1" two producers that read the same tail would write the same
slot and publish one entry -- the other lost (a leak) or, had the consumer already
taken the first, handed out twice.  Head and tail live on separate lines so producers
and the consumer don't false-share.  Full ring: the producer frees the block itself
(counted as a local free).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.pmm.page_alloc import MM
from aerosync.params import CACHE_LINE, PAGE_SHIFT

__all__ = ["RING_SLOTS", "RING_BYTES", "ring_section", "Ring", "Stamper", "drain_rings", "policy_alloc",
           "touch_fn"]

RING_SLOTS = 1024
RING_BYTES = 2 * CACHE_LINE + RING_SLOTS * 8


def ring_section(nr_cpus: int, name: str = "pgring") -> SectionSpec:
    return SectionSpec(name, nr_cpus * RING_BYTES)


class Ring:
    """One CPU's view of its inbound ring (pop) and its outbound ring (push), by default
    the next CPU's (`to_cpu` picks another).  Entries are any u64 but 2^64 - 1."""

    __slots__ = ("push", "pop_all", "pop")

    def __init__(self, arena: Arena, cpu: int, nr_cpus: int, section: str = "pgring",
                 to_cpu: int | None = None) -> None:
        at, q = arena.atomic, arena.u64
        load, store, cas = at.load64, at.store64, at.cas64
        base = arena.off(section)
        inb = base + cpu * RING_BYTES
        outb = base + ((cpu + 1) % nr_cpus if to_cpu is None else to_cpu) * RING_BYTES
        in_head, in_slots = inb, (inb + 2 * CACHE_LINE) >> 3
        out_head, out_tail, out_slots = outb, outb + CACHE_LINE, outb + 2 * CACHE_LINE
        mask, ones = RING_SLOTS - 1, (1 << 64) - 1

        def push(entry: int) -> bool:
            t = load(out_tail)
            while True:
                if t - load(out_head) >= RING_SLOTS:
                    return False
                seen = cas(out_tail, t, t + 1)      # claim slot t (other producers may race)
                if seen == t:
                    break
                t = seen
            store(out_slots + ((t & mask) << 3), entry ^ ones)     # publish: non-zero from now
            return True

        def pop_all() -> list[int]:
            h = load(in_head)
            out = []
            while len(out) < RING_SLOTS:
                i = in_slots + ((h + len(out)) & mask)
                v = q[i]
                if not v:                   # not claimed, or claimed and not yet written
                    break
                q[i] = 0
                out.append(v ^ ones)
            if out:
                store(in_head, h + len(out))     # slots zeroed before producers see them free
            return out

        def pop() -> int:
            h = load(in_head)
            i = in_slots + (h & mask)
            v = q[i]
            if not v:
                return -1
            q[i] = 0
            store(in_head, h + 1)
            return v ^ ones

        self.push, self.pop_all, self.pop = push, pop_all, pop


class Stamper:
    """Writes and checks the (cpu, seq) stamp words of a block's pages."""

    __slots__ = ("stamp", "check")

    def __init__(self, arena: Arena) -> None:
        q = arena.u64
        phys = arena.off("physmem") >> 3
        words = (1 << PAGE_SHIFT) >> 3

        def stamp(pfn: int, order: int, value: int) -> None:
            i = phys + pfn * words
            for _ in range(1 << order):
                q[i] = value
                q[i + words - 1] = value
                i += words

        def check(pfn: int, order: int, value: int) -> bool:
            i = phys + pfn * words
            for _ in range(1 << order):
                if q[i] != value or q[i + words - 1] != value:
                    return False
                i += words
            return True

        self.stamp, self.check = stamp, check


def stamp_of(pfn: int, arena: Arena) -> int:
    """The stamp word found on a block's first page (who wrote it: value >> 48 = cpu)."""
    return arena.u64[(arena.off("physmem") >> 3) + (pfn << (PAGE_SHIFT - 3))]


def drain_rings(arena: Arena, nr_cpus: int, free_pages: Callable[[int, int], None]) -> int:
    """Free every block still queued in any ring (coordinator, after the workers left)."""
    n = 0
    for c in range(nr_cpus):
        for entry in Ring(arena, c, nr_cpus).pop_all():
            free_pages(entry >> 8, entry & 0xFF)
            n += 1
    return n


def cpu_policy_allocator(arena: Arena, mm: MM) -> Any:
    """This CPU's [numa] policy as a PolicyAllocator (mm/numa/mempolicy.py), or None for
    default/local (no current->mempolicy)."""
    from aerosync.mm.numa.mempolicy import MPOL_DEFAULT, MPOL_LOCAL, PolicyAllocator, mem_nodes, policy_for_cpu

    numa = arena.config.get("numa") or {}
    cpu_policy = {int(c): p for c, p in (numa.get("cpu_policy") or {}).items()}
    pol = policy_for_cpu(numa.get("policy", "default"), cpu_policy, mm.cpu, mm.nr_nodes,
                         numa.get("weights") or (), mem_nodes=mem_nodes(mm))
    return None if pol.mode in (MPOL_DEFAULT, MPOL_LOCAL) else PolicyAllocator(mm, mm.cpu, pol)


def policy_alloc(arena: Arena, mm: MM) -> Callable[[int, int], int]:
    """This CPU's alloc_pages(gfp, order) under its [numa] policy: the bare MM fast path
    for default/local, a PolicyAllocator otherwise."""
    pa = cpu_policy_allocator(arena, mm)
    return mm.alloc_pages if pa is None else pa.alloc_pages


def touch_fn(arena: Arena, mm: MM) -> Callable[[int], None] | None:
    """touch(pfn): pay the page's remote-access cost ([machine] remote_access_ns scaled by
    the node distance); None when the cost is off, so callers skip it with one `if`."""
    from aerosync.arch.topology import SimTopology
    from aerosync.mm.numa.mempolicy import make_touch_cost
    from aerosync.mm.pmm.page import node_of_pfn

    sim = SimTopology.from_dict(arena.config["sim"])
    cost = make_touch_cost(int(arena.config.get("remote_access_ns", 0)), sim.distance, mm.nid)
    if cost is None:
        return None
    nid_of = node_of_pfn(arena)

    def touch(pfn: int) -> None:
        cost(nid_of(pfn))

    return touch
