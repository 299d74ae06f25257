"""will-it-scale mmap2: map 128 MiB of a file and unmap it, without touching.

Models tests/mmap2.c: each task mmaps its own MEMSIZE file (PROT_READ|PROT_WRITE,
MAP_PRIVATE) and munmaps it, in a loop.  Operation = one mmap + munmap pair.  Beside
mmap1's work, each mapping links its VMA into the file's i_mmap list (the vnode
object's VMA list, under the object's lock) and unlinks it again.  The files are
simulated pattern files, one per CPU, created by the coordinator at set-up
(_vm.setup_files).

Verification as mmap1 (the engine is mmap1.map_unmap_batch): the VMA must map this
CPU's file at offset 0 at the returned address; `probe_every` = k > 0 reads one random
page of every k-th region and checks it against filemap.expected_page.  Counters:
maps, probes, corrupt.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from aerosync.arena.segment import Arena
from workers.workloads._vm import recover, setup_files, setup_mm, vm_report
from workers.workloads.mmap1 import COUNTERS, Params, map_unmap_batch, sections

__all__ = ["Params", "COUNTERS", "sections", "setup", "make_batch", "report", "recover"]

NAME = "mmap2"


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    setup_mm(arena)
    setup_files(arena, NAME, nr_cpus, params.size_mb << 20)


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    return map_unmap_batch(arena, cpu, params, rng, NAME, file=True)


def report(arena: Arena, params: Params, result: dict) -> dict:
    return vm_report(arena, COUNTERS, result)
