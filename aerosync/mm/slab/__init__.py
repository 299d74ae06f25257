"""Kernel object allocation (the seed's SLUB): the cache table, the allocator with its
lockless per-CPU fast path, magazines and sheaves, kmalloc, slub_debug and the slab checker.

Place in the lock tree (sync/__init__.py): slab_mutex -> c->lock -> &n->list_lock, all
above the page allocator's locks (new_slab and discard_slab call into mm/pmm).
"""
