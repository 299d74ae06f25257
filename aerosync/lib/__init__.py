"""Kernel library data structures in the arena, as Linux's lib/: the layer between sync and mm.

    maple_tree.py  lib/maple_tree.c: RCU-safe B-tree of ranges (an mm's VMAs; vmalloc areas)
    xarray.py      lib/xarray.c: RCU-safe radix tree of 64-slot nodes (page cache, vm_object pages)

Both live wholly in the shared arena and are named by the arena offset of a small root
record the caller embeds in its own structure.  They take no locks: writers are
serialised by the caller (mmap_lock, the object lock), readers walk lock-free, and nodes
come from caller-supplied callbacks (a SLUB kmem_cache in production), so lib/ imports
arch, arena, sync, params and errors only -- never mm (tests/test_layers.py, rank 3).
"""
