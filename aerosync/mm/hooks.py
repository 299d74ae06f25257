"""Named points inside mm operations where tests (and fault injection) can run code.

Models: what Linux uses fault-injection and kprobe points for -- here, forcing one CPU to
stop at an exact step (after taking a VMA lock, between clearing a PTE and flushing the
TLB, ...) while another CPU does something, so a race can be replayed deterministically.
Unit: a point name such as "fault:vma_locked".

Cost: a module builds its closures with `tp = hooks.point_fn()`: None unless a handler is
registered at that moment, so production handles carry no check at all (`if tp: tp(...)`
on a None is one local test).  Tests register handlers, then build the CPU handles.
Handlers are process-wide and run on the thread that reaches the point.

Points (the module that fires them):
    fault:vma_found       memory.py   a per-VMA fault found its VMA (RCU), before vma_start_read
    fault:vma_locked      memory.py   a fault holds its VMA (read) lock, before handling
    fault:before_install  memory.py   a new page is ready, before the PTE lock is taken
    fault:file_folio      memory.py   a file fault holds its page-cache folio (a reference),
                                      before mapping or copying it
    cow:copied            memory.py   a COW copy is made, before the PTE is replaced
    spf:snapshot          memory.py   a speculative fault took its sequence snapshot
    zap:before_flush      memory.py   PTEs cleared, pages gathered, TLB not flushed yet
    zap:before_free       memory.py   TLBs flushed, gathered pages not yet released
    obj:inserted          vm_object.py  insert stored a folio in an object's tree (object
                                        lock held), before the workingset hook
    obj:chain_passed      vm_object.py  chain_lookup found nothing in one object (RCU read
                                        side), before reading its backing link
    obj:remove_batch      vm_object.py  page_remove dropped the object lock between two
                                        batches of a range (more of the range to go)
    munmap:detached       mmap.py     VMAs out of the tree, pages still mapped (mmap_lock write)
    munmap:downgraded     mmap.py     munmap/brk/mremap shrink: mmap_lock downgraded to read,
                                      zap not started
    fork:vma_copied       fork.py     one VMA copied into the child
    vmalloc:purge_taken   vmalloc.py  a purge took the lazy lists, before its TLB flush
    vmalloc:purge_flushed vmalloc.py  the purge's shootdown done, areas not erased yet
    swapin:new_cached     reclaim/swap_state.py  a swap-in's new folio is locked in the swap
                                      cache (PG_uptodate clear), before the read
    vmscan:swapcache      reclaim/vmscan.py  an isolated, locked anonymous folio is in the swap
                                      cache (a slot), still mapped
    vmscan:unmapped       reclaim/vmscan.py  its PTEs are swap PTEs (flushed), its object entry
                                      a swap value; not written out, not frozen yet
    unmap:before_flush    reclaim/rmap_ops.py  try_to_unmap changed every PTE, TLBs not flushed
    migrate:isolated      numa/migrate.py  a folio is locked and checked, not unmapped yet
    migrate:unmapped      numa/migrate.py  migration entries installed and flushed, before
                                           the reference check and the copy
    recover:gather_flushed  vm/recover.py  recovery of a dead CPU's mmu_gather flushed the
                                      mm's TLBs, its pages not yet freed
    kfence:push_read      san/kfence.py  a KFENCE free read the stack's top and linked its
                                         object to it, before the CAS that pushes it
    kfence:take_read      san/kfence.py  an allocation (freelist lock held, list empty) read
                                         the stack's top, before the CAS that takes it all
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["set_point", "clear_points", "point_fn", "fire"]

_handlers: dict[str, Callable[[str], None]] = {}


def set_point(name: str, fn: Callable[[str], None]) -> None:
    _handlers[name] = fn


def clear_points() -> None:
    _handlers.clear()


def fire(name: str) -> None:
    h = _handlers.get(name)
    if h is not None:
        h(name)


def point_fn() -> Callable[[str], None] | None:
    """What a module binds at build time: `fire` while any handler is set, else None."""
    return fire if _handlers else None
