"""A seeded corpus of kernel memory bugs, run under whichever detectors the machine has.

Each bug is a small simulated kernel path that makes one classic mistake through the
kernel's own accesses (mm/vm/kaccess.py) and allocators:

  oob_read_1       read one byte past a kmalloc(13) object (a partial granule)
  oob_write_1      write one byte past it
  oob_granule      read the 8-byte granule just past a kmalloc(64) object
  uaf_read         read an object after kfree
  uaf_write        write an object after kfree
  double_free      kfree twice
  invalid_free     kfree of a pointer into the middle of an object
  vmalloc_oob      read one byte past a vmalloc(100) buffer
  freelist_corrupt a use-after-free write onto a freed object's free pointer, then the
                   allocation that follows the corrupted freelist
  stack_overflow   recursion until a push lands in the stack's guard page
  canary_smash     a buffer overflow in a call frame, up into its canary

What catches what: KASAN every memory bug (the shadow), KFENCE those whose object it
sampled (guard pages, freed pages, canaries at free), SLAB_FREELIST_HARDENED the
corrupted free pointer (and a double free of the object heading the CPU freelist), the
guard page and the stack protector the last two in every mode.  A bug is "caught" when
its path raised the detector's KernelBug or emitted a report (KFENCE's corruption report
at free does not stop the free).  A destructive bug (a double or invalid free, a write
onto a free pointer) is run only when a detector will stop it -- otherwise it would
really corrupt the allocator the run goes on with -- and counts as run and missed.
Whether the report names the right sites ("sites") is checked too: KASAN and KFENCE
reports must show the allocation (and free) stacks of this corpus (bug_<name> frames);
stack reports must name the task and CPU.

Operation = one bug (the corpus in order, each CPU starting at its own offset).
Counters per bug: <bug>_run, <bug>_caught, <bug>_sites.  The report gives them per
bug, the totals and detect_pct = 100 x caught / run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aerosync.arena.layout import SectionSpec
from aerosync.arena.segment import Arena
from aerosync.mm.san import report as R
from aerosync.mm.san.config import debug_params
from workers.workloads._common import counter_index
from workers.workloads._vm import cpu_vm

__all__ = ["Params", "COUNTERS", "BUGS", "Corpus", "sections", "setup", "make_batch", "report", "CORPUS_CACHE"]

BUGS = ("oob_read_1", "oob_write_1", "oob_granule", "uaf_read", "uaf_write", "double_free", "invalid_free",
        "vmalloc_oob", "freelist_corrupt", "stack_overflow", "canary_smash")
COUNTERS: tuple[str, ...] = tuple(f"{b}_{k}" for b in BUGS for k in ("run", "caught", "sites"))
CORPUS_CACHE = "bug_corpus_obj"
_STACK_BUGS = ("stack_overflow", "canary_smash")


@dataclass(frozen=True, slots=True)
class Params:
    quiet: bool = True            # keep the reports off stderr (they are counted and checked)

    def validate(self) -> str | None:
        return None


def sections(params: Params, nr_cpus: int) -> list[SectionSpec]:
    return []


def setup(arena: Arena, params: Params, nr_cpus: int) -> None:
    from aerosync.mm.slab.slab_common import kmem_cache_create, kmem_cache_lookup

    if kmem_cache_lookup(arena, CORPUS_CACHE) < 0:
        kmem_cache_create(arena, CORPUS_CACHE, 64, 8)


class Corpus:
    """The bugs, bound to one CPU's VM handle.  `run(bug)` -> (caught, sites_ok, ran)."""

    def __init__(self, vm: Any) -> None:
        from aerosync.mm.slab.kmalloc import Kmalloc
        from aerosync.mm.slab.slab_common import cache_info, kmem_cache_lookup

        self.vm = vm
        arena = vm.arena
        k = vm.kernel
        p = debug_params(arena.config)
        self.kasan, self.hardened = p["kasan"], p["freelist_hardened"]
        kf = k.kfence
        self.is_kfence: Callable[[int], bool] = kf.is_kfence if kf is not None else (lambda a: False)
        km = Kmalloc(vm.slub)
        self.kmalloc, self.kfree = km.kmalloc, km.kfree
        self.kmem, self.frames, self.vmalloc = k.kmem, k.frames, k.vmalloc
        cid = kmem_cache_lookup(arena, CORPUS_CACHE)
        self.cache = vm.slub.cache(cid) if cid >= 0 else None
        if cid >= 0:
            info = cache_info(arena, cid)
            self.fpoff = info["offset"]
        self.last: tuple[str, str] = ("", "")

    # -------------------------------------------------------- helpers (the alloc/free sites)
    def corpus_alloc(self, size: int) -> int:
        return self.kmalloc(size)

    def corpus_free(self, p: int) -> None:
        self.kfree(p)

    def stoppable(self, p: int) -> bool:
        """A destructive bug on p will be stopped before it does harm."""
        return self.kasan or self.is_kfence(p)

    # -------------------------------------------------------- the bugs
    def bug_oob_read_1(self) -> bool:
        p = self.corpus_alloc(13)
        try:
            self.kmem.load(p + 13, 1)
        finally:
            self.corpus_free(p)
        return True

    def bug_oob_write_1(self) -> bool:
        p = self.corpus_alloc(13)
        try:
            self.kmem.store(p + 13, b"\x5a")
        finally:
            self.corpus_free(p)                        # KFENCE sees the canary here
        return True

    def bug_oob_granule(self) -> bool:
        p = self.corpus_alloc(64)
        try:
            self.kmem.load(p + 64, 8)
        finally:
            self.corpus_free(p)
        return True

    def bug_uaf_read(self) -> bool:
        p = self.corpus_alloc(32)
        self.corpus_free(p)
        self.kmem.load64(p)
        return True

    def bug_uaf_write(self) -> bool:
        p = self.corpus_alloc(32)
        self.corpus_free(p)
        self.kmem.store64(p, 0x5A5A_5A5A_5A5A_5A5A)    # offset 0: not the free pointer (at 16)
        return True

    def bug_double_free(self) -> bool:
        p = self.corpus_alloc(32)
        self.corpus_free(p)
        if not self.stoppable(p):
            return False
        self.corpus_free(p)
        return True

    def bug_invalid_free(self) -> bool:
        p = self.corpus_alloc(64)
        if not self.stoppable(p):
            self.corpus_free(p)
            return False
        try:
            self.corpus_free(p + 8)
        finally:
            self.corpus_free(p)
        return True

    def bug_vmalloc_oob(self) -> bool:
        v = self.vmalloc.vmalloc(100)
        try:
            self.kmem.load(v + 100, 1)
        finally:
            self.vmalloc.vfree(v)
        return True

    def bug_freelist_corrupt(self) -> bool:
        kc = self.cache
        if kc is None:
            return False
        p = kc.alloc()
        kc.free(p)
        if not (self.kasan or self.hardened or self.is_kfence(p)):
            return False
        at = p + self.fpoff
        saved = self.kmem.raw_load(at, 4)
        try:
            self.kmem.store(at, b"\x41\x41\x41\x41")  # the use-after-free write
            q = kc.alloc()                            # follows the corrupted pointer
            kc.free(q)
        finally:
            self.kmem.raw_store(at, saved)            # repair, so the cache goes on
        return True

    def bug_stack_overflow(self) -> bool:
        try:
            for d in range(100_000):
                self.frames.call(f"recurse_{d % 4}", 512)
        finally:
            self.frames.reset()
        return True

    def bug_canary_smash(self) -> bool:
        try:
            loc = self.frames.call("copy_from_user_buf", 32)
            self.kmem.store(loc, b"\x61" * 48)        # 16 bytes past the buffer
            self.frames.ret()
        finally:
            self.frames.reset()
        return True

    # -------------------------------------------------------- one run
    def run(self, bug: str) -> tuple[bool, bool, bool]:
        """(caught, sites named right, ran): ran False = a destructive bug skipped."""
        before = R.emitted()
        caught = False
        text = ""
        try:
            ran = getattr(self, f"bug_{bug}")()
        except R.KernelBug as e:
            caught, ran, text = True, True, e.report
        if not caught and R.emitted() > before:         # a report without a stop (KFENCE at free)
            caught, text = True, R.recent()[-1][1]
        self.last = (bug, text)
        return caught, caught and _sites_ok(bug, text), ran


def _sites_ok(bug: str, text: str) -> bool:
    """The report names where it happened: the object's allocation (and free) stacks are
    this corpus' bug_<name> frames; a stack report names the task and the CPU."""
    if bug in _STACK_BUGS:
        return "Comm: " in text and "CPU: " in text
    if "Freechain corrupt" in text:
        return "BUG bug_corpus_obj" in text
    if "vmalloc" in bug:
        return f"bug_{bug}" in text
    alloc = text.partition("llocated by task")[2]
    if f"bug_{bug}" not in alloc.partition("reed by task")[0] and f"bug_{bug}" not in alloc:
        return False
    if bug in ("uaf_read", "uaf_write", "double_free"):
        return "reed by task" in text and f"bug_{bug}" in text.partition("reed by task")[2]
    return True


def make_batch(arena: Arena, cpu: int, params: Params, rng: random.Random) -> Callable[[int], None]:
    vm, _tid = cpu_vm(arena, cpu, "bug_corpus")
    if params.quiet:
        R.set_console(False)
    corpus = Corpus(vm)
    q = arena.u64
    c0 = counter_index(arena, cpu, 0)
    nxt = [cpu % len(BUGS)]

    def batch(n: int) -> None:
        for _ in range(n):
            i = nxt[0]
            nxt[0] = (i + 1) % len(BUGS)
            caught, sites, _ran = corpus.run(BUGS[i])
            q[c0 + 3 * i] += 1
            q[c0 + 3 * i + 1] += caught
            q[c0 + 3 * i + 2] += sites

    def teardown() -> None:
        vm.exit()
        vm.leave()

    batch.teardown = teardown  # type: ignore[attr-defined]
    batch.poll = vm.poll  # type: ignore[attr-defined]
    return batch


def report(arena: Arena, params: Params, result: dict) -> dict:
    tot = {k: sum(c["counters"][k] for c in result["cpus"]) for k in COUNTERS}
    bugs = {b: {"run": tot[f"{b}_run"], "caught": tot[f"{b}_caught"], "sites": tot[f"{b}_sites"]} for b in BUGS}
    run = sum(v["run"] for v in bugs.values())
    caught = sum(v["caught"] for v in bugs.values())
    p = debug_params(arena.config)
    mode = ",".join(k for k in ("kasan", "freelist_hardened", "stack_protector") if p[k])
    if p["kfence_sample_interval"]:
        mode += f",kfence/{p['kfence_sample_interval']}"
    return {"bugs": bugs, "run": run, "caught": caught, "detect_pct": 100.0 * caught / run if run else 0.0,
            "mode": mode.strip(",") or "none", "reports": R.bug_counts(arena)}
