"""Child body of the NUMA balancing stress test (tests/test_numa_balancing.py): one
simulated CPU, a thread of one shared address space with automatic NUMA balancing on,
doing verified accesses to its regions (first touched on the other node), balancing
scans, move_pages, mbind MPOL_MF_MOVE, fork + exit of a child, munmap + mmap.

Invariant it checks on its own: every word it wrote reads back unchanged, whatever
migrated its pages meanwhile (hinting faults, other CPUs' scans and shootdowns, its own
move_pages / mbind).
"""

from __future__ import annotations

import random
import time
import traceback

from aerosync.arena.segment import Arena

PG = 4096
C_GO, C_PAUSE = 0, 1
C_PARKED = 8                  # + cpu
C_OPS = 24                    # + cpu
C_BAD = 40                    # + cpu
C_DONE = 56                   # + cpu
C_MOVED = 72                  # + cpu: pages move_pages / mbind moved
ERR_OFF = 4096                # per cpu 2048 bytes of error text


def run(name: str, cpu: int, mm: int, ctl: int, nops: int, seed: int) -> None:
    from aerosync.mm.numa import mempolicy as MP
    from aerosync.mm.numa.numa_vm import attach
    from aerosync.mm.pmm.vm_event import fold_vm_events
    from aerosync.mm.vm import mmap as M
    from aerosync.mm.vm.vm import VM

    a = Arena.attach(name)
    q = a.u64
    c8 = ctl >> 3
    vm = None
    try:
        vm = VM(a, cpu)
        numa = attach(vm)
        tid = vm.task_create(f"numa{cpu}", mm=mm)
        vm.switch_to(tid)
        nr_nodes = numa.policy.nr_nodes
        mynid = a.config["sim"]["cpu_to_node"][cpu]
        other = (mynid + 1) % nr_nodes
        rng = random.Random(seed * 31 + cpu)
        regions: list[list] = []               # [addr, npages, {page: value}]
        seq = 0

        def new_region() -> None:
            n = rng.randint(4, 24)
            numa.set_mempolicy(MP.MPOL_BIND, 1 << other)
            addr = vm.mmap(0, n * PG, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
            vals = {}
            for p in range(n):
                v = cpu << 56 | 0xAB << 40 | p
                vm.store64(addr + p * PG + 8 * (p & 7), v)
                vals[p] = v
            numa.set_mempolicy(MP.MPOL_DEFAULT)
            regions.append([addr, n, vals])

        def park() -> None:                        # (a.u64: `q` is deleted before close)
            if a.u64[c8 + C_PAUSE]:
                a.u64[c8 + C_PARKED + cpu] = 1
                while a.u64[c8 + C_PAUSE]:
                    vm.poll()
                    time.sleep(0.0005)
                a.u64[c8 + C_PARKED + cpu] = 0

        def verify_all() -> None:
            for addr, _n, vals in regions:
                for p, v in vals.items():
                    if vm.load64(addr + p * PG + 8 * (p & 7)) != v:
                        a.u64[c8 + C_BAD + cpu] += 1

        while not q[c8 + C_GO]:
            time.sleep(0.001)
        new_region()
        for _op in range(nops):
            park()
            r = rng.random()
            reg = rng.choice(regions)
            addr, n, vals = reg
            if r < 0.40:
                p = rng.randrange(n)
                seq += 1
                v = cpu << 56 | seq
                vm.store64(addr + p * PG + 8 * (p & 7), v)
                vals[p] = v
            elif r < 0.75:
                p = rng.randrange(n)
                if vm.load64(addr + p * PG + 8 * (p & 7)) != vals[p]:
                    q[c8 + C_BAD + cpu] += 1
            elif r < 0.82:
                vm.task_work()
                if rng.random() < 0.3:
                    numa.balancing.task_numa_work(force=True)
            elif r < 0.87:
                pages = [addr + rng.randrange(n) * PG for _ in range(3)]
                _f, st = numa.move_pages(0, pages, [rng.randrange(nr_nodes)] * 3, MP.MPOL_MF_MOVE)
                q[c8 + C_MOVED + cpu] += sum(1 for s in st if s >= 0)
            elif r < 0.91:
                lo = rng.randrange(n)
                k = rng.randint(1, n - lo)
                q[c8 + C_MOVED + cpu] += numa.mbind(addr + lo * PG, k * PG, MP.MPOL_BIND,
                                                    1 << rng.randrange(nr_nodes), MP.MPOL_MF_MOVE)
                numa.mbind(addr + lo * PG, k * PG, MP.MPOL_DEFAULT)
            elif r < 0.94:
                child = vm.fork()
                vm.exit(child)
                vm.reap(child)
            elif r < 0.97 and len(regions) > 1:
                regions.remove(reg)
                for p, v in vals.items():
                    if vm.load64(addr + p * PG + 8 * (p & 7)) != v:
                        q[c8 + C_BAD + cpu] += 1
                vm.munmap(addr, n * PG)
            elif len(regions) < 4:
                new_region()
            q[c8 + C_OPS + cpu] += 1
        # The mix above reaches a hinting fault that migrates only if a scan marked a
        # page some access then hit while it was misplaced -- on a loaded host the 1-in-
        # 50 forced scans can all lose to the other threads (scan window CAS, mmap_lock
        # trylock) and the run end without one.  So, bounded: scan (forced) and touch
        # this CPU's pages again until the machine has counted a balancing migration.
        for _ in range(64):
            if fold_vm_events(a)["numa_pages_migrated"]:
                break
            park()
            numa.balancing.task_numa_work(force=True)
            verify_all()
        verify_all()
        for addr, n, _vals in regions:
            vm.munmap(addr, n * PG)
    except BaseException:
        err = traceback.format_exc().encode()[-2047:]
        a.u8[ctl + ERR_OFF + cpu * 2048 : ctl + ERR_OFF + cpu * 2048 + len(err)] = err
        q[c8 + C_BAD + cpu] += 1000
    finally:
        if vm is not None:
            try:
                if vm.current_task() >= 0:
                    vm.exit()
                vm.leave()
            except BaseException:
                pass
        q[c8 + C_DONE + cpu] = 1
        del q
        vm = None
        a.close()
