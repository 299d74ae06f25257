"""Simulated files and their page cache: vnode objects, reads on a miss, readahead.

Models: mm/filemap.c (filemap_get_folio, filemap_fault's synchronous readahead,
filemap_map_pages = fault-around), mm/readahead.c (the window that doubles on
sequential access up to read_ahead_kb), the C kernel's UBC (one vnode vm_object per
file).  Unit: a file (a record in the "vmfile" section) and its pages; a page of the
cache is a folio in the file's vnode object (vm_object.py) at index = file offset / 4096.

File contents come from a real file on disk (read with os.pread on a miss, `path` given
at creation) or from a generated pattern: page i of file f holds the 16-byte stamp
(f, i) followed by 4080 bytes of a per-file seeded pattern, so any page read back can
be checked (`expected_page`).  A file is created by any CPU (its record is claimed by
CAS on the state word) -- usually by a workload's setup in the coordinator.

Locks: the vnode object's lock (write) while inserting pages (vm_object.insert); reads
of the cache are lock-free (RCU tree walks).  Disk reads happen with no lock held: two
CPUs missing the same page may both read it; the first insert wins and the other's page
is freed (as filemap_add_folio's -EEXIST path).

References (filemap_get_entry / filemap_get_folio): a lock-free lookup holds nothing, so
reclaim may free the folio it found (folio_ref_freeze from the tree's and its own
reference, then the entry becomes a shadow) and the pfn be reused -- even in this file
at another index.  get_folio therefore returns the folio with a reference: a found one
by folio_try_get (fails on a frozen refcount 0) and a re-load of the entry (still this
folio at this index, else put and look again); a folio it read in keeps its allocation
reference beside the cache's.  While the caller holds it, reclaim's freeze fails (the
folio is kept), so the caller may map or copy it; it drops it with folio_put.

Crash consistency (robust mode only, mm/intent.py): a folio read in is logged from its
allocation to its LRU add (vm_file_add: 1 allocated, in no cache -- freed; 2 in the
cache -- counted and put on the LRU), and the reference get_folio returns goes into the
faulting caller's vm_file_hold record right after it is taken (memory.py's do_fault;
recovery puts it): mm/vm/recover.py.

Counters: nr_file_pages (node of the page) on insert; pgmajfault by the caller when a
fault had to read; workingset and writeback come with reclaim.
"""

from __future__ import annotations

import os
import random
from typing import Any

from aerosync.arena import layout as L
from aerosync.mm import intent as I
from aerosync.mm.pmm import vm_event as VE
from aerosync.mm.pmm.gfp import GFP_HIGHUSER_MOVABLE
from aerosync.mm.pmm.page import PG_uptodate, folio_try_get_fn
from aerosync.mm.vm import mm_types as T
from aerosync.mm.vm.vm_object import O_NR_PAGES, O_SIZE, O_TREE, OBJ_VNODE, entry_pfn, is_folio_entry
from aerosync.params import PAGE_META_SIZE, PAGE_SHIFT, PAGE_SIZE

__all__ = ["FILE_FREE", "FILE_LIVE", "file_create", "file_lookup", "file_path", "expected_page", "Filemap"]

FILE_FREE, FILE_LIVE, FILE_CLAIMED = 0, 1, 2
_OP_FILE_ADD = I.OP["vm_file_add"]
P_FILEMAP_PAGE, P_FILEMAP_INSERTED = I.POINT_IDS["vm:filemap:page"], I.POINT_IDS["vm:filemap:inserted"]
_PATTERNS: dict[tuple[int, int], bytes] = {}


def _pattern(fid: int, seed: int) -> bytes:
    p = _PATTERNS.get((fid, seed))
    if p is None:
        p = random.Random(seed * 7919 + fid).randbytes(PAGE_SIZE - 16)
        _PATTERNS[(fid, seed)] = p
    return p


def expected_page(fid: int, seed: int, idx: int) -> bytes:
    """The 4096 bytes page idx of a pattern file holds until someone writes it."""
    return fid.to_bytes(8, "little") + idx.to_bytes(8, "little") + _pattern(fid, seed)


def _name_of(arena: Any, fid: int) -> str:
    o = T.file_off(arena, fid) + T.F_NAME
    return bytes(arena.u8[o : o + 40]).rstrip(b"\0").decode()


def file_lookup(arena: Any, name: str) -> int:
    """The id of the live file called `name`, or -1."""
    q = arena.u64
    n = q[(arena.off("vmhdr") + T.H_MAX_FILES) >> 3]
    for fid in range(n):
        if q[(T.file_off(arena, fid) + T.F_STATE) >> 3] == FILE_LIVE and _name_of(arena, fid) == name:
            return fid
    return -1


def file_create(arena: Any, objs: Any, name: str, size: int, seed: int = 0, path: str | None = None) -> int:
    """Create a simulated file of `size` bytes (pattern from `seed`, or the real file at
    `path`, which must exist and be at least `size` bytes); returns its id.  `objs` is a
    VmObjects handle (the vnode object is allocated through it)."""
    raw = name.encode()
    if not 0 < len(raw) <= 40:
        raise T.VMError("ENAMETOOLONG", f"file_create({name!r}): a name of 1..40 bytes")
    if size <= 0 or size % PAGE_SIZE:
        raise T.VMError("EINVAL", f"file_create({name!r}, size={size}): size must be a positive multiple of 4096")
    if path is not None:
        try:
            st = os.stat(path)
        except OSError as e:
            raise T.VMError("ENOENT", f"file_create({name!r}, path={path!r}): {e.strerror}") from None
        if st.st_size < size:
            raise T.VMError("EINVAL", f"file_create({name!r}, path={path!r}): the file has {st.st_size} bytes, "
                                      f"fewer than size={size}")
        if len(path.encode()) > T.FILE_PATH_MAX:
            raise T.VMError("ENAMETOOLONG", f"file_create({name!r}): path too long")
    if file_lookup(arena, name) >= 0:
        raise T.VMError("EEXIST", f"file_create({name!r}): a file of that name exists")
    q, at = arena.u64, arena.atomic
    n = q[(arena.off("vmhdr") + T.H_MAX_FILES) >> 3]
    for fid in range(n):
        fo = T.file_off(arena, fid)
        if at.cas64(fo + T.F_STATE, FILE_FREE, FILE_CLAIMED) != FILE_FREE:
            continue
        obj = objs.alloc(OBJ_VNODE, size // PAGE_SIZE, 0, fid)
        if not obj:
            at.store64(fo + T.F_STATE, FILE_FREE)
            raise T.VMError("ENOMEM", f"file_create({name!r}): no memory for its vnode object")
        q[(fo + T.F_SIZE) >> 3] = size
        q[(fo + T.F_OBJ) >> 3] = obj
        q[(fo + T.F_SEED) >> 3] = seed
        q[(fo + T.F_FLAGS) >> 3] = T.FILE_REAL if path else 0
        arena.u8[fo + T.F_NAME : fo + T.F_NAME + 40] = raw.ljust(40, b"\0")
        _store_path(arena, fid, path or "")
        at.store64(fo + T.F_STATE, FILE_LIVE)
        return fid
    raise T.VMError("ENFILE", f"file_create({name!r}): all {n} file records in use ([vm] max_files)")


def _store_path(arena: Any, fid: int, path: str) -> None:
    o = T.file_off(arena, fid) + T.F_PATH
    arena.u8[o : o + T.FILE_PATH_MAX] = path.encode().ljust(T.FILE_PATH_MAX, b"\0")


def file_path(arena: Any, fid: int) -> str:
    o = T.file_off(arena, fid) + T.F_PATH
    return bytes(arena.u8[o : o + T.FILE_PATH_MAX]).rstrip(b"\0").decode()


class Filemap:
    """Simulated CPU `cpu`'s page-cache operations (closures):
      file_obj(fid) -> vnode object offset    file_size(fid) -> bytes
      get_folio(fid, idx, rh=-1) -> (pfn, major)  the cached page with a reference the
                                              caller drops (free_pages = folio_put); read on a
                                              miss, with readahead; -1 beyond the file or no
                                              memory; rh: the caller's vm_file_hold record
      add_finish(pfn)                         a folio just inserted is counted and on the LRU
                                              (recovery finishes a vm_file_add with it)
      get_page(fid, idx) -> (pfn, major)      get_folio without keeping the reference: the
                                              pfn may be gone at once (readahead only)
      cached(fid_obj, idx) -> pfn | -1        lock-free cache lookup, no read
    """

    def __init__(self, arena: Any, cpu: int, mm: Any, objs: Any) -> None:
        self.arena, self.cpu = arena, cpu
        self.ext: Any = None                    # VM.ext (memory.py's hooks: alloc_folio, lru_add)
        q, u8, i64, u32 = arena.u64, arena.u8, arena.i64, arena.u32
        fetch_add32, fetch_sub32 = arena.atomic.fetch_add32, arena.atomic.fetch_sub32
        PHYS = arena.off("physmem")
        PM = arena.off("pagemeta")
        hdr = arena.off("vmhdr")
        ra_max = max(1, q[(hdr + T.H_RA_PAGES) >> 3])
        ns = VE.node_stat_base(arena, cpu)
        NS = VE.NR_NODE_STATS
        alloc_pages, free_pages, give_back = mm.alloc_pages, mm.free_pages, mm.give_back
        insert, lookup = objs.insert, objs.lookup
        fds: dict[int, int] = {}
        ra_state: dict[int, list[int]] = {}       # fid -> [next expected index, window]
        # intent log (robust mode only, as memory.py's): begin is None otherwise
        lg = mm.log if L.robust_mode(arena.config) else None
        begin, log_end, fp = (lg.begin, lg.end, lg.fp) if lg is not None else (None, None, None)
        ho, pend = (lg.handoff, lg.pending) if lg is not None else (0, 0)   # mm/intent.py "Hand-off"

        def file_obj(fid: int) -> int:
            return q[(T.file_off(arena, fid) + T.F_OBJ) >> 3]

        def file_size(fid: int) -> int:
            return q[(T.file_off(arena, fid) + T.F_SIZE) >> 3]

        def fill(fid: int, idx: int, pfn: int) -> None:
            o = PHYS + (pfn << PAGE_SHIFT)
            fo = T.file_off(arena, fid)
            if q[(fo + T.F_FLAGS) >> 3] & T.FILE_REAL:
                fd = fds.get(fid)
                if fd is None:
                    fd = os.open(file_path(arena, fid), os.O_RDONLY)
                    fds[fid] = fd
                data = os.pread(fd, PAGE_SIZE, idx * PAGE_SIZE)
                u8[o : o + len(data)] = data
                if len(data) < PAGE_SIZE:
                    u8[o + len(data) : o + PAGE_SIZE] = bytes(PAGE_SIZE - len(data))
            else:
                u8[o : o + PAGE_SIZE] = expected_page(fid, q[(fo + T.F_SEED) >> 3], idx)

        def add_finish(pfn: int) -> None:
            """A folio now in the cache is counted (nr_file_pages) and put on the LRU."""
            nid = u8[PM + pfn * PAGE_META_SIZE + 7]
            i64[ns + nid * NS + VE.NR_FILE_PAGES] += 1
            ext = self.ext
            la = ext.lru_add if ext is not None else None
            if la is not None:
                la(pfn)

        def add_to_cache(fid: int, obj: int, idx: int, hold: bool, rh: int) -> int:
            """A new folio read in at idx: its pfn (with a reference for the caller when
            `hold`, recorded in the caller's vm_file_hold record rh >= 0), -1 without
            memory, or -2 when another CPU's folio got there first.  Robust mode logs
            it in a vm_file_add record (mm/intent.py; recovery: mm/vm/recover.py)."""
            ext = self.ext
            r = begin(_OP_FILE_ADD, obj, idx) if begin is not None else -1
            try:
                af = ext.alloc_folio if ext is not None else None
                if r >= 0:                          # the hand-off window: the page until step 1
                    q[ho] = 0
                    q[pend] = 1
                pfn = af(0, 0, idx) if af is not None else alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
                if pfn < 0:
                    if r >= 0:
                        q[pend] = 0
                    return -1
                if r >= 0:
                    q[r + 3] = pfn
                    q[r + 7] = 1                    # allocated, in no cache
                    q[pend] = 0
                    if fp:
                        fp(P_FILEMAP_PAGE)
                fill(fid, idx, pfn)
                b = PM + pfn * PAGE_META_SIZE
                u32[b >> 2] |= PG_uptodate
                if hold:
                    fetch_add32(b + 8, 1)           # the caller's, beside the cache's
                    if rh >= 0:
                        q[rh + 4] = pfn
                        q[rh + 7] = 1
                got = insert(obj, idx, pfn, False)
                if got != pfn:
                    u32[b >> 2] &= ~PG_uptodate & 0xFFFFFFFF
                    if hold:
                        if rh >= 0:
                            q[rh + 7] = 0
                        fetch_sub32(b + 8, 1)       # ours; the allocation's goes with the free
                    give_back(pfn, r + 7 if r >= 0 else -1)    # (its step 0 before the free)
                    return -2 if got >= 0 else -1
                if r >= 0:
                    q[r + 7] = 2                    # in the cache (the allocation's reference is its)
                    if fp:
                        fp(P_FILEMAP_INSERTED)
                add_finish(pfn)
                return pfn
            finally:
                if r >= 0:
                    log_end(r)

        def cached(obj: int, idx: int) -> int:
            e = lookup(obj, idx)
            return entry_pfn(e) if is_folio_entry(e) else -1

        folio_try_get = folio_try_get_fn(arena)

        def get_folio(fid: int, idx: int, rh: int = -1) -> tuple[int, bool]:
            """The folio at idx with a reference (module docstring); rh >= 0: the
            caller's vm_file_hold record, which gets the pfn and step 1 right after the
            reference is taken (step 0 again before one is dropped)."""
            if idx * PAGE_SIZE >= file_size(fid):
                return -1, False
            obj = file_obj(fid)
            major = False
            while True:
                e = lookup(obj, idx)
                if is_folio_entry(e):
                    pfn = entry_pfn(e)
                    if folio_try_get(pfn):
                        if rh >= 0:
                            q[rh + 4] = pfn
                            q[rh + 7] = 1
                        if lookup(obj, idx) == e:             # xas_reload: still ours here
                            if not major:
                                st = ra_state.get(fid)
                                if st is not None:
                                    st[0] = idx + 1
                            return pfn, major
                        if rh >= 0:
                            q[rh + 7] = 0
                        free_pages(pfn, 0)                   # moved on meanwhile: folio_put, look again
                    continue
                if major:                                     # read, then lost: read no more here
                    p = add_to_cache(fid, obj, idx, True, rh)
                    if p != -2:
                        return p, True
                    continue
                major = True
                # synchronous readahead (page_cache_sync_ra): a sequential miss doubles the
                # window, a random one starts over at 4 pages
                st = ra_state.get(fid)
                if st is not None and st[0] == idx:
                    st[1] = min(ra_max, st[1] * 2)
                else:
                    st = [idx, min(4, ra_max)]
                    ra_state[fid] = st
                last = min(idx + st[1], file_size(fid) // PAGE_SIZE)
                want = -1
                for i in range(idx, last):
                    if i != idx and cached(obj, i) >= 0:
                        continue
                    p = add_to_cache(fid, obj, i, i == idx, rh)
                    if i == idx:
                        want = p
                st[0] = idx + 1
                if want != -2:
                    return want, True
                # another CPU's folio went in first: take it with a reference (loop)

        def get_page(fid: int, idx: int) -> tuple[int, bool]:
            pfn, major = get_folio(fid, idx)
            if pfn >= 0:
                free_pages(pfn, 0)
            return pfn, major

        def nr_cached(fid: int) -> int:
            return q[(file_obj(fid) + O_NR_PAGES) >> 3]

        def close() -> None:
            for fd in fds.values():
                os.close(fd)
            fds.clear()

        self.file_obj, self.file_size, self.get_page, self.cached = file_obj, file_size, get_page, cached
        self.get_folio, self.add_finish = get_folio, add_finish
        self.nr_cached, self.close = nr_cached, close
        _ = (O_SIZE, O_TREE)
