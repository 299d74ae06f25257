"""Reclaim's boot: the "reclaim" section's records initialised, the swap device
switched on, the ZMM classes set up (single process, after vm_init; mm/boot.py).

Separate from layout.py so that the layout stays a leaf every reclaim module can
import (the swap device and ZMM modules import the layout; boot imports them all).
"""

from __future__ import annotations

import time
from typing import Any

from aerosync.mm.pmm.init import sim_of
from aerosync.mm.reclaim import layout as R
from aerosync.mm.reclaim.swapfile import swapon
from aerosync.mm.reclaim.zmm import zmm_init
from aerosync.params import PAGE_SIZE
from aerosync.sync.lockclass import OBJ_SPIN, objlock_class

__all__ = ["reclaim_init"]


def reclaim_init(arena: Any) -> None:
    """Boot (single process, after vm_init): parameters, lock classes, empty lists, the
    swap device (its file created and sized: swapon), ZMM classes.  Magic stored last."""
    p = R.reclaim_params(arena.config)
    sim = sim_of(arena.config)
    base = arena.off("reclaim")
    o, s = arena.sections["reclaim"]
    arena.u8[o : o + s] = bytes(s)
    q = arena.u64
    slots = R.nr_swap_slots(p)
    clusters = (slots + R.SWAPFILE_CLUSTER - 1) // R.SWAPFILE_CLUSTER

    def put(f: int, v: int) -> None:
        q[(base + f) >> 3] = v

    put(R.H_LRU_MODE, R.LRU_MGLRU if p["lru"] == "mglru" else R.LRU_CLASSIC)
    put(R.H_SWAPPINESS, p["swappiness"])
    put(R.H_CLS_LRU, objlock_class(arena, "&lruvec->lru_lock", OBJ_SPIN))
    put(R.H_CLS_SI, objlock_class(arena, "&si->lock", OBJ_SPIN))
    put(R.H_CLS_CI, objlock_class(arena, "&ci->lock", OBJ_SPIN))
    put(R.H_CLS_ZMM, objlock_class(arena, "&zmm->lock", OBJ_SPIN))
    put(R.H_NR_NODES, sim.nr_nodes)
    put(R.H_NR_CPUS, int(arena.config["nr_cpus"]))
    put(R.H_KT_BASE, p["kthread_cpu"] + 1)
    put(R.H_MIN_TTL, p["min_ttl_ms"])
    put(R.H_PAGE_CLUSTER, p["page_cluster"])
    put(R.H_DIRTY_RATIO, p["dirty_ratio"])
    put(R.H_DIRTY_BG_RATIO, p["dirty_background_ratio"])
    put(R.H_DIRTY_WB_CS, p["dirty_writeback_centisecs"])
    put(R.H_DIRTY_EXPIRE_CS, p["dirty_expire_centisecs"])
    put(R.H_OOM_KILL, int(p["oom_kill"]))
    nr_pages = int(arena.config["nr_pages"])
    put(R.H_ZMM_FLAGS, (R.ZMM_ON if p["zmm"] and slots else 0) | (R.ZMM_WRITEBACK if p["zmm_writeback"] else 0))
    put(R.H_ZMM_COMP, R.COMPRESSORS.index(p["zmm_compressor"]))
    maxp = max(1, nr_pages * p["zmm_max_pool_percent"] // 100)
    put(R.H_ZMM_MAX_PAGES, maxp)
    put(R.H_ZMM_ACCEPT_PAGES, maxp * p["zmm_accept_threshold_percent"] // 100)
    put(R.H_ZMM_THRESHOLD, PAGE_SIZE * p["zmm_threshold_percent"] // 100)
    put(R.H_SWAP_SLOTS, slots)
    put(R.H_SWAP_CLUSTERS, clusters)
    off = R.Off(arena)
    for nid in range(sim.nr_nodes):
        lv = off.lruvec(nid)
        for li in range(R.NR_LISTS):
            arena.u32[(lv + R.L_LISTS + 16 * li) >> 2] = 0xFFFF_FFFF
            arena.u32[(lv + R.L_LISTS + 16 * li + 4) >> 2] = 0xFFFF_FFFF
        # MGLRU starts with MIN_NR_GENS + 1 generations: seq 0..2 (lru_gen_init_lruvec)
        q[(lv + R.L_MAX_SEQ) >> 3] = 2
        now = time.monotonic_ns()
        for g in range(4):
            q[(lv + R.L_TIMESTAMPS + 8 * g) >> 3] = now
    for c in range(int(arena.config["nr_cpus"])):
        q[(off.pcpu(c) + R.PC_CLUSTER) >> 3] = 0
    zmm_init(arena, off)
    if slots:
        path = p["swap_file"] or R.default_swap_path(arena)
        swapon(arena, off, path, slots)
    arena.atomic.store64(base + R.H_MAGIC, R.RMAGIC)
