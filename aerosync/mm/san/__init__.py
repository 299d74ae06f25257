"""Memory sanitizers and hardening (the seed's mm/san/): what catches a kernel memory bug
in the act, and the switches Linux has to make one harder to exploit.

Modules (Linux file each models):

    config.py          the [debug] switches (kasan, kfence_sample_interval, init_on_alloc,
                       init_on_free, freelist_hardened, stack_protector, ...) and the
                       sizes they imply (KASAN redzones, the KFENCE pool, the shadow)
    shadow.py          KASAN's shadow memory: one byte per 8-byte granule of physical
                       memory, Linux's generic encoding (mm/kasan/kasan.h, generic.c)
    report.py          the oops path shared by every detector: KernelBug, the report
                       sink, call sites as %pS, the task and CPU (mm/kasan/report.c's
                       frame, lib/dump_stack.c)
    kasan.py           KASAN: slab/page/vmalloc poisoning hooks, the checked access,
                       the quarantine, reports (mm/kasan/{common,generic,quarantine,report}.c)
    kfence.py          KFENCE: the guarded object pool, sampling, canaries, reports
                       (mm/kfence/{core,report}.c)
    stackprotector.py  simulated call frames with a per-task canary, __stack_chk_fail
                       (kernel/panic.c, include/linux/stackprotector.h)
    page_hooks.py      the page allocator's hooks: KASAN page poisoning, init_on_alloc /
                       init_on_free (mm/page_alloc.c post_alloc_hook / free_pages_prepare)

Where they hook in (each choice made once, when a per-CPU handle is built, so a machine
with the switches off runs the code it ran before: no test on any hot path):
  page_alloc.py's MM handle wraps its entry points (page_hooks.install), SLUB's
  KmemCache gets sanitizer closures at the end of slub.py's _build (kasan / kfence /
  init_on_*; SLAB_FREELIST_HARDENED swaps the free-pointer closures there), vmalloc.py
  poisons the tail of an area, and mm/vm/kaccess.py (the kernel's loads and stores)
  calls the checks.

Lock tree (sync/__init__.py has the whole system's):
  kfence_freelist_lock (SpinLock, one per machine): the KFENCE pool's free list, taken by
    allocations only (a free pushes onto a lock-free stack, kfence.py); a leaf taken
    with no other lock held (kfence_alloc runs before the slab allocator's).
  The KASAN quarantine is per CPU and owner-only (no lock): a CPU puts freed objects in
  its own ring and releases the oldest into SLUB itself; an offline CPU's ring is
  drained by the coordinator after every worker left (kasan_cpu_offline), as Linux's
  kasan_cpu_offline drains a CPU's qlist.
  Shadow bytes are written by whoever owns the memory at that moment (the allocating or
  freeing CPU) and read without locks by checks; a check racing with a free may see
  either state, as KASAN's unsynchronised shadow reads do.

Imports: config.py, shadow.py and report.py import nothing from mm (page_alloc, slab and
vm import them); kasan.py and kfence.py import slab and vm modules, never the reverse
except through the install functions their callers look up.
"""
