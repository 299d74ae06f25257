"""Memory pressure: LRUs (MGLRU and classic), kswapd and direct reclaim, workingset
refault detection, swap to a real file, the seed's ZMM compressor, writeback, OOM.

Modules (Linux file each models):

    layout.py        the "reclaim" section: parameters, per-node lruvec records, per-CPU
                     folio batches, swap device and cluster records, per-slot arrays,
                     ZMM size classes (include/linux/mmzone.h, swap.h, swap_table.h)
    swap.py          LRU lists, per-CPU folio batches, isolation and putback, the
                     free-path unlink (mm/swap.c, include/linux/mm_inline.h)
    lru_gen.py       the multi-generational LRU: aging (walk_mm), eviction, tiers, the
                     refault PID controller, /sys/kernel/debug/lru_gen (mm/vmscan.c)
    vmscan.py        shrink_folio_list, the classic active/inactive LRU, shrink_node,
                     try_to_free_pages, balance_pgdat (mm/vmscan.c)
    rmap_ops.py      folio_referenced / try_to_unmap / folio_mkclean over mm/vm's rmap
    workingset.py    shadow entries and refault distance (mm/workingset.c)
    swapfile.py      the swap device: swap_map, clusters with per-CPU clusters,
                     /proc/swaps (mm/swapfile.c)
    swap_state.py    the swap cache, swap-in (do_swap_page) and readahead
                     (mm/swap_state.c, mm/memory.c do_swap_page, mm/page_io.c)
    zmm.py           the seed's ZMM: a zsmalloc-style pool with lz4/zstd (mm/zswap.c,
                     mm/zsmalloc.c)
    page_writeback.py  dirty limits, balance_dirty_pages, the flusher's writeback,
                     msync / fsync (mm/page-writeback.c, fs/fs-writeback.c)
    oom_kill.py      badness, the OOM report, killing and reaping a task (mm/oom_kill.c)
    kthread.py       kswapd (one per node) and the flusher as processes (kernel/kthread.c)
    reclaim.py       one CPU's handle: everything above composed and plugged into a VM
                     (Memory.ext hooks, the page allocator's slow-path hook)
    check.py         the reclaim invariants (LRU1.., SW1..)
    opt.py           Belady's optimal replacement over a recorded page trace

Lock order (outer first; mm/vm/__init__.py has the VM's part, sync/__init__.py the
whole-system tree):

    PG_locked (folio lock: reclaim holds it from isolation to the end of pageout;
               swap-in holds it from allocation to mapping)
      mmap_lock (read, trylock only: MGLRU's walk_mm)
        obj->lock (rmap walks; replacing a folio by a swap or shadow value entry)
          ptlock (PTE changes, TLB flushes issued under it)
            &lruvec->lru_lock (per node: LRU lists and MGLRU generations)
            &si->lock (swap device: cluster lists)
              &ci->lock (one swap cluster: its swap_map counts and swap-table slots)
            &zmm->lock (the ZMM pool: size classes, zspages, its LRU)
              the page allocator (pcp, zone.lock) and SLUB
A folio is isolated (taken off its LRU) under lru_lock with a reference; everything
after that -- rmap walks, I/O, compression -- runs without lru_lock.  I/O (pread /
pwrite on the swap file or a file's backing file) and compression happen with only the
folio lock held.  Nothing here holds lru_lock, si->lock or ci->lock while waiting for
a TLB-shootdown acknowledgement; waits for a folio lock answer IPIs (sync/waithook.py).
"""
