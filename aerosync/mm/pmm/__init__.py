"""Physical memory (the seed's PMM): struct page, nodes and zones, GFP, the buddy
allocator with per-CPU page lists, vmstat/numastat counters, mm_init and the page checker.

Place in the lock tree (sync/__init__.py): the innermost mm locks -- pcp state words,
then &zone->lock.  Every other subsystem allocates pages through page_alloc.MM and never
holds a lock of its own while this package waits for one of its callers'.
"""
