"""Reverse mapping (mm/vm/rmap.py): RM1 for every mapped folio the walk finds exactly
folio_mapcount PTEs -- after forks (shadow chains), COW, private and shared file
mappings, shared anonymous memory, mremap moves and partial unmaps."""

from __future__ import annotations

import random

import numpy as np

from aerosync.mm.pmm.page import page_array
from aerosync.mm.vm import mmap as M
from aerosync.mm.vm.vm import VM

PG = 4096
RW = M.PROT_READ | M.PROT_WRITE


def _check_rmap(a, cpu: VM) -> int:
    pages = page_array(a)
    mapped = np.flatnonzero(pages["mapcount"] > 0).tolist()
    counts = pages["mapcount"][mapped].tolist()
    del pages
    for pfn, mc in zip(mapped, counts):
        found = cpu.rmap.mapped_ptes(pfn)
        assert len(found) == mc, (pfn, mc, found)
        assert len(set(found)) == len(found)
    return len(mapped)


def test_RM1_rmap_finds_every_mapping(machine) -> None:
    a = machine(nr_pages=8192, nr_cpus=2, slab=True, vm={})
    cpu = VM(a, 0)
    rng = random.Random(5)
    root = cpu.task_create("root")
    cpu.switch_to(root)
    fid = cpu.file_create("f", 32 * PG, seed=1)
    tasks = [root]
    regions: dict[int, list[tuple[int, int]]] = {root: []}
    for _step in range(120):
        t = rng.choice(tasks)
        cpu.switch_to(t)
        op = rng.random()
        if op < 0.25 or not regions[t]:
            kind = rng.choice(["anon", "shared", "fpriv", "fshared"])
            n = rng.randint(1, 8)
            if kind == "anon":
                addr = cpu.mmap(0, n * PG, RW, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
            elif kind == "shared":
                addr = cpu.mmap(0, n * PG, RW, M.MAP_SHARED | M.MAP_ANONYMOUS)
            else:
                off = rng.randint(0, 32 - n) * PG
                addr = cpu.mmap(0, n * PG, RW, M.MAP_PRIVATE if kind == "fpriv" else M.MAP_SHARED, fid, off)
            regions[t].append((addr, n))
        elif op < 0.65:
            addr, n = rng.choice(regions[t])
            k = rng.randrange(n)
            if rng.random() < 0.6:
                cpu.store64(addr + k * PG, rng.randrange(1 << 40))
            else:
                cpu.load64(addr + k * PG)
        elif op < 0.75 and len(tasks) < 5:
            c = cpu.fork()
            tasks.append(c)
            regions[c] = list(regions[t])
        elif op < 0.85:
            i = rng.randrange(len(regions[t]))
            addr, n = regions[t][i]
            if n > 1 and rng.random() < 0.5:
                k = rng.randrange(1, n)
                cpu.munmap(addr + k * PG, (n - k) * PG)
                regions[t][i] = (addr, k)
            else:
                cpu.munmap(addr, n * PG)
                regions[t].pop(i)
        elif op < 0.92:
            i = rng.randrange(len(regions[t]))
            addr, n = regions[t][i]
            new = cpu.mremap(addr, n * PG, (n + 2) * PG, M.MREMAP_MAYMOVE)
            regions[t][i] = (new, n + 2)
        elif len(tasks) > 1 and t != root:
            cpu.exit(t)
            tasks.remove(t)
            del regions[t]
        if _step % 20 == 19:
            _check_rmap(a, cpu)
    assert _check_rmap(a, cpu) > 0
    for t in tasks:
        cpu.switch_to(t)
        cpu.exit()
    cpu.leave()
