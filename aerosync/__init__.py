"""AeroSync: a multiprocess testbed of a kernel memory manager in one shared-memory arena.

Layering (imports flow downward only; tests/test_layers.py enforces it):

    arch      host facts and primitives: atomics, CPU pinning, topology
    arena     the shared segment and its byte layout
    sync      locks built on atomics in the arena, with lock_stat
    lib       kernel library data structures in the arena (maple tree, XArray); rank of sync
    mm        the memory manager proper, one module per kernel subsystem
    (workers) the simulated-CPU process: a thin layer over this library
    coordinator / cli   start and stop runs, render results

The library is importable and testable in one process without starting workers.
"""

__version__ = "0.1.0"
