"""The virtual-memory records in the arena: tasks, mm_structs, VMAs, vm_objects, files.

Models: include/linux/mm_types.h (mm_struct, vm_area_struct), include/linux/sched.h
(task_struct's memory part), the C kernel's include/mm/vm_object.h.  Unit: a record at
an arena byte offset; ids are small ints (task id, mm id, file id) or offsets (VMAs and
vm_objects are SLUB objects: their id is the arena offset of the object).

Sections (vm_sections; every record is cache-line aligned):

  vmhdr   the VM header (H_*): magic (written last by vm_init), parameters fixed at
          boot, next_pid (atomic), the zero page, lock-class and kmem_cache ids.
  vmtask  max_tasks x TASK_REC  (T_*)   task_struct: state, pid, tgid, ppid, comm, the
          mm it uses, the CPU it runs on, exit status (SIGSEGV reason and address).
  vmmm    max_mms x mm_rec_size (M_*)   mm_struct; mm id 0 is init_mm (kernel tables).
  vmcpu   nr_cpus x vmcpu_rec_size (C_*) per-CPU TLB and IPI state (tlb.py draws it).
  vmfile  max_files x FILE_REC (F_*)    simulated files (filemap.py).
  plus the sync sections the VM needs: "objlock" (embedded-lock classes) and "rcu".

Record layouts (offsets in bytes; "atomic" = changed with CAS / fetch_add by any CPU):

  task (128 B)
     0 state u32 (TASK_*) | 4 flags u32       8 pid u64     16 tgid u64   24 ppid u64
    32 mm id + 1 u64 (0 = no mm: a kernel thread)             40 cpu + 1 u64 (0 = none)
    48 comm 16 B        64 exit_signal u64  72 fault_addr u64  80 fault_reason u64
    88 oom_score_adj i64  96 mempolicy u64   104 numa u64      112 kstack u64 (the stack's lowest
       address: mm/vm/kstack.py)  120 stack_canary u64 (CONFIG_STACKPROTECTOR: san/stackprotector.py)
  mm (MM_REC_FIXED + cpumask words, padded to 64, + one rss line per CPU)
     0 state u64 (MM_FREE / MM_LIVE)    8 mm_users u64 (atomic)  16 mm_count u64 (atomic)
    24 pgd pfn u64      32..63 maple-tree root record (lib/maple_tree.py)
    64 mmap_lock (ObjRWSem word, owner at 72)  80 mm_lock_seq u64 (odd while mmap_lock is
       write-held: per-VMA locks)   88 vmacache_seqnum u64   96 map_count u64
   104 mmap_base u64  112 start_brk u64  120 brk u64
   128 rss[NR_MM_COUNTERS] u64 (atomic: file, anon, swapents, shmem; the shared part of
       each counter, see "rss" below)  160 pgtables_bytes
       (atomic)  168 tlb_gen u64 (atomic)  176 context id u64 (unique per lifetime: the
       TLB's ASID tag)  184 hiwater_rss (atomic max: update_hiwater_rss before RSS drops)
   192 total_vm 200 locked_vm 208 pinned_vm 216 data_vm 224 exec_vm 232 stack_vm
   240 def_flags 248 task_size              (guarded by mmap_lock for write)
   256 page_table_lock (ObjSpinLock word)  264 owner tid + 1  272 mmap_seq (seqcount:
       the speculative faults' sequence, bumped around every VMA-tree change)
   280 hiwater_vm  288..319 NUMA-balancing fields (mm/numa later)
   320 mm_cpumask: ceil(nr_cpus / 64) u64 words (atomic fetch_or: CPUs that ran it)
   rss_pcpu_base(nr_cpus) + cpu * 64: CPU cpu's parts of the four rss counters, u64 each
       (two's complement deltas; written by that CPU only, one cache line per CPU)

rss: the mm counters are percpu_counters, as Linux's since v6.2 (mm_struct.rss_stat):
a page faulted in or zapped on a CPU is counted in that CPU's line of the mm record
(memory.py: fault, map/unmap accounting, zap), so two CPUs faulting in one mm (threads)
write no common word per fault; rarer writers (reclaim, swap, migration) add to the
shared rss[] words.  A counter's value is the shared word plus every CPU's part
(get_mm_counter_sum, percpu_counter_sum: what /proc/<pid>/status reads since v6.16, and
the checker's RSS1), each term a wrapping u64; Linux's batch-folding into the shared
count is left out (the sum is taken on read, as vmstat's per-CPU deltas are).
  file (512 B)
     0 state u64   8 size (bytes) u64   16 vnode object offset u64   24 seed u64
    32 flags u64 (FILE_REAL: backed by a real file)   40 name (40 B)
   128 path of the real file (utf-8, NUL padded, up to FILE_PATH_MAX bytes)

The per-VMA and per-object layouts are the kmem_cache objects drawn in vma.py and
vm_object.py.  Ownership: a task record is written by the CPU running the task (and by
the creator before it runs); an mm record's fields follow the locks named above; free
records are claimed with a CAS on their state word (any CPU may create tasks and mms).
"""

from __future__ import annotations

from typing import Any

from aerosync.arena.layout import SectionSpec, align_up
from aerosync.errors import AeroSyncError
from aerosync.params import CACHE_LINE, PAGE_SIZE
from aerosync.sync.lockclass import objlock_section
from aerosync.sync.rcu import rcu_section

__all__ = [
    "VM_MAGIC", "vm_params", "vm_sections", "VMError", "vm_ready",
    "TASK_REC", "TASK_FREE", "TASK_RUNNING", "TASK_STOPPED", "TASK_ZOMBIE", "TASK_STATE_NAMES",
    "T_STATE", "T_FLAGS", "T_PID", "T_TGID", "T_PPID", "T_MM", "T_CPU", "T_COMM", "T_EXIT_SIGNAL",
    "T_FAULT_ADDR", "T_FAULT_REASON", "T_OOM_SCORE_ADJ", "T_MEMPOLICY", "T_NUMA", "T_KSTACK", "T_CANARY",
    "MM_FREE", "MM_LIVE", "M_STATE", "M_USERS", "M_COUNT", "M_PGD", "M_MT", "M_MMAP_LOCK", "M_LOCK_SEQ",
    "M_VMACACHE_SEQ", "M_MAP_COUNT", "M_MMAP_BASE", "M_START_BRK", "M_BRK", "M_RSS", "M_PGTABLES_BYTES",
    "M_TLB_GEN", "M_CTX_ID", "M_HIWATER_RSS", "M_TOTAL_VM", "M_LOCKED_VM", "M_PINNED_VM", "M_DATA_VM",
    "M_EXEC_VM", "M_STACK_VM", "M_DEF_FLAGS", "M_TASK_SIZE", "M_PTL", "M_OWNER", "M_MMAP_SEQ",
    "M_HIWATER_VM", "M_NUMA", "M_CPUMASK", "MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES",
    "NR_MM_COUNTERS", "MM_COUNTER_NAMES", "mm_rec_size", "FILE_REC", "F_STATE", "F_SIZE", "F_OBJ", "F_SEED",
    "F_FLAGS", "F_NAME", "F_PATH", "FILE_REAL", "FILE_PATH_MAX",
    "H_MAGIC", "H_MAX_TASKS", "H_MAX_MMS", "H_MAX_FILES", "H_LEVELS", "H_PCID", "H_FAULT_LOCKING",
    "H_TLB_ENTRIES", "H_TLB_WAYS", "H_NEXT_PID", "H_ZERO_PFN", "H_MMAP_MIN_ADDR", "H_NEXT_CTX",
    "H_CLS_MMAP", "H_CLS_VMA", "H_CLS_OBJ", "H_CLS_PTL", "H_CLS_PTLOCK", "H_CACHE_VMA", "H_CACHE_OBJ",
    "H_CACHE_MAPLE", "H_CACHE_XA", "H_FAULT_AROUND", "H_RA_PAGES", "H_SHADOW_DEPTH", "H_MAP_COUNT_MAX",
    "H_TLB_CEILING", "H_VM_FLAGS",
    "FAULT_LOCKING", "FL_MMAP_LOCK", "FL_PER_VMA", "FL_SPECULATIVE",
    "task_off", "mm_off", "is_mmap_lock", "file_off", "vmcpu_off", "vmcpu_rec_size", "get_mm_rss", "update_hiwater_rss",
    "C_TASK",
    "rss_pcpu_base", "get_mm_counter_sum", "get_mm_counters",
]

VM_MAGIC = 0x4D4D_5643_4E59_5341       # "ASYNCVMM"


class VMError(AeroSyncError):
    """A virtual-memory system call refused (errno name, what was asked, why), or a
    machine without the VM sections."""

    def __init__(self, errno_name: str, msg: str) -> None:
        self.errno_name = errno_name
        super().__init__(f"{msg}: {errno_name}")


# ------------------------------------------------------------------ header
(H_MAGIC, H_MAX_TASKS, H_MAX_MMS, H_MAX_FILES, H_LEVELS, H_PCID, H_FAULT_LOCKING, H_TLB_ENTRIES,
 H_TLB_WAYS, H_NEXT_PID, H_ZERO_PFN, H_MMAP_MIN_ADDR, H_NEXT_CTX, H_CLS_MMAP, H_CLS_VMA, H_CLS_OBJ,
 H_CLS_PTL, H_CLS_PTLOCK, H_CACHE_VMA, H_CACHE_OBJ, H_CACHE_MAPLE, H_CACHE_XA, H_FAULT_AROUND,
 H_RA_PAGES, H_SHADOW_DEPTH, H_MAP_COUNT_MAX, H_TLB_CEILING, H_VM_FLAGS) = (8 * i for i in range(28))
HDR_SIZE = PAGE_SIZE

FAULT_LOCKING = ("mmap_lock", "per_vma", "speculative")
FL_MMAP_LOCK, FL_PER_VMA, FL_SPECULATIVE = range(3)

# ------------------------------------------------------------------ task_struct
TASK_REC = 128
TASK_FREE, TASK_RUNNING, TASK_STOPPED, TASK_ZOMBIE = 0, 1, 2, 3
TASK_STATE_NAMES = ("free", "R (running)", "T (stopped)", "Z (zombie)")
(T_STATE, T_FLAGS) = (0, 4)
T_PID, T_TGID, T_PPID, T_MM, T_CPU, T_COMM = 8, 16, 24, 32, 40, 48
T_EXIT_SIGNAL, T_FAULT_ADDR, T_FAULT_REASON, T_OOM_SCORE_ADJ = 64, 72, 80, 88
T_MEMPOLICY, T_NUMA, T_KSTACK, T_CANARY = 96, 104, 112, 120

# ------------------------------------------------------------------ mm_struct
MM_FREE, MM_LIVE = 0, 1
M_STATE, M_USERS, M_COUNT, M_PGD, M_MT = 0, 8, 16, 24, 32
M_MMAP_LOCK, M_LOCK_SEQ, M_VMACACHE_SEQ, M_MAP_COUNT = 64, 80, 88, 96
M_MMAP_BASE, M_START_BRK, M_BRK = 104, 112, 120
M_RSS, M_PGTABLES_BYTES, M_TLB_GEN, M_CTX_ID, M_HIWATER_RSS = 128, 160, 168, 176, 184
M_TOTAL_VM, M_LOCKED_VM, M_PINNED_VM, M_DATA_VM, M_EXEC_VM, M_STACK_VM = 192, 200, 208, 216, 224, 232
M_DEF_FLAGS, M_TASK_SIZE = 240, 248
M_PTL, M_OWNER, M_MMAP_SEQ, M_HIWATER_VM, M_NUMA = 256, 264, 272, 280, 288
M_CPUMASK = 320
MM_REC_FIXED = M_CPUMASK
MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = range(4)
NR_MM_COUNTERS = 4
MM_COUNTER_NAMES = ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES")

# ------------------------------------------------------------------ files
FILE_REC = 512
F_STATE, F_SIZE, F_OBJ, F_SEED, F_FLAGS, F_NAME, F_PATH = 0, 8, 16, 24, 32, 40, 128
FILE_PATH_MAX = FILE_REC - F_PATH
FILE_REAL = 1


def rss_pcpu_base(nr_cpus: int) -> int:
    """Byte offset in an mm record of CPU 0's line of rss counter parts."""
    return align_up(MM_REC_FIXED + 8 * ((nr_cpus + 63) // 64), CACHE_LINE)


def mm_rec_size(nr_cpus: int) -> int:
    return rss_pcpu_base(nr_cpus) + nr_cpus * CACHE_LINE


def get_mm_counter_sum(q: Any, mo: int, k: int, nr_cpus: int) -> int:
    """get_mm_counter_sum(): counter k of the mm at mo -- its shared word plus every
    CPU's part (u64 wrapping terms; a negative total reads as 0 as percpu_counter_sum_positive)."""
    n = q[(mo + M_RSS + 8 * k) >> 3]
    w = (mo + rss_pcpu_base(nr_cpus) + 8 * k) >> 3
    for c in range(nr_cpus):
        n += q[w + c * (CACHE_LINE >> 3)]
    n &= (1 << 64) - 1
    return 0 if n >> 63 else n


def get_mm_counters(q: Any, mo: int, nr_cpus: int) -> list[int]:
    """All NR_MM_COUNTERS counters (file, anon, swapents, shmem) summed."""
    return [get_mm_counter_sum(q, mo, k, nr_cpus) for k in range(NR_MM_COUNTERS)]


# vmcpu: the TLB's record (tlb.py draws it) but for this word of line 1: a task of this
# CPU that names no CPU + 1 -- the one that exited here, from its exit (vm.py exit) to
# the CPU's next switch_to; the one switch_to switches out, until the next one's T_CPU
# names the CPU; one task_create made while the CPU ran none, until switch_to runs it
# (or that task's release, task_free).  Meanwhile the CPU's tasks
# (that one, its stopped parent or child) have T_CPU 0: recovery finds a dead CPU's
# tasks from here too (mm/vm/recover.py exit_tasks).
C_TASK = 96


def vmcpu_rec_size(nr_cpus: int) -> int:
    """Per-CPU TLB/IPI record (tlb.py): 4 fixed lines + the IPI source bitmap."""
    return 4 * CACHE_LINE + align_up(8 * ((nr_cpus + 63) // 64), CACHE_LINE)


def vm_params(config: dict[str, Any]) -> dict[str, Any]:
    """The [vm] configuration (config key "vm", a dict) with defaults; raises ValueError
    naming the key for a bad value (the scenario parser checked the types)."""
    vm = dict(config.get("vm") or {})
    nr_cpus = int(config["nr_cpus"])
    p = {
        "mm": vm.get("mm", "processes"),                    # processes | threads
        "fault_locking": vm.get("fault_locking", "per_vma"),
        "pcid": bool(vm.get("pcid", True)),
        "pgtable_levels": int(vm.get("pgtable_levels", 4)),
        "tlb_entries": int(vm.get("tlb_entries", 1536)),    # second-level TLB of a modern x86 core
        "tlb_ways": int(vm.get("tlb_ways", 12)),
        "max_tasks": int(vm.get("max_tasks", max(64, 8 * nr_cpus))),
        "max_mms": int(vm.get("max_mms", max(32, 4 * nr_cpus))),
        "max_files": int(vm.get("max_files", 64)),
        "mmap_min_addr": int(vm.get("mmap_min_addr", 65536)),
        "fault_around_bytes": int(vm.get("fault_around_bytes", 65536)),
        "read_ahead_kb": int(vm.get("read_ahead_kb", 128)),
        "shadow_depth_limit": int(vm.get("shadow_depth_limit", 8)),
        "max_map_count": int(vm.get("max_map_count", 65530)),
        "tlb_single_page_flush_ceiling": int(vm.get("tlb_single_page_flush_ceiling", 33)),
    }
    checks = {
        "mm": (p["mm"] in ("processes", "threads"), '"processes" or "threads"'),
        "fault_locking": (p["fault_locking"] in FAULT_LOCKING, " | ".join(f'"{x}"' for x in FAULT_LOCKING)),
        "pgtable_levels": (p["pgtable_levels"] in (4, 5), "4 or 5"),
        "tlb_entries": (16 <= p["tlb_entries"] <= 1 << 16, "16..65536"),
        "tlb_ways": (1 <= p["tlb_ways"] <= 64 and p["tlb_entries"] % p["tlb_ways"] == 0,
                     "1..64, dividing tlb_entries"),
        "max_tasks": (2 <= p["max_tasks"] <= 1 << 20, "2..1048576"),
        "max_mms": (2 <= p["max_mms"] <= 1 << 20, "2..1048576"),
        "max_files": (1 <= p["max_files"] <= 1 << 16, "1..65536"),
        "mmap_min_addr": (0 <= p["mmap_min_addr"] < 1 << 32 and p["mmap_min_addr"] % PAGE_SIZE == 0,
                          "a multiple of 4096 below 4 GiB"),
        "fault_around_bytes": (PAGE_SIZE <= p["fault_around_bytes"] <= 1 << 21
                               and not p["fault_around_bytes"] & (p["fault_around_bytes"] - 1),
                               "a power of two 4096..2097152"),
        "read_ahead_kb": (0 <= p["read_ahead_kb"] <= 65536, "0..65536"),
        "shadow_depth_limit": (2 <= p["shadow_depth_limit"] <= 32, "2..32"),
        "max_map_count": (16 <= p["max_map_count"] <= 1 << 24, "16..16777216"),
        "tlb_single_page_flush_ceiling": (0 <= p["tlb_single_page_flush_ceiling"] <= 1 << 20, "0..1048576"),
    }
    for key, (ok, allowed) in checks.items():
        if not ok:
            raise ValueError(f"vm.{key} = {p[key]!r}: allowed {allowed}")
    return p


def vm_sections(config: dict[str, Any]) -> list[SectionSpec]:
    """The sections virtual memory adds after the page allocator's and SLUB's."""
    p = vm_params(config)
    nr_cpus = int(config["nr_cpus"])
    return [
        SectionSpec("vmhdr", HDR_SIZE),
        SectionSpec("vmtask", p["max_tasks"] * TASK_REC),
        SectionSpec("vmmm", p["max_mms"] * mm_rec_size(nr_cpus)),
        SectionSpec("vmcpu", nr_cpus * vmcpu_rec_size(nr_cpus)),
        SectionSpec("vmfile", p["max_files"] * FILE_REC),
        objlock_section(nr_cpus),
        rcu_section(nr_cpus),
    ]


def vm_ready(arena: Any) -> bool:
    return "vmhdr" in arena.sections and arena.atomic.load64(arena.off("vmhdr") + H_MAGIC) == VM_MAGIC


def task_off(arena: Any, tid: int) -> int:
    return arena.off("vmtask") + tid * TASK_REC


def mm_off(arena: Any, mm_id: int) -> int:
    return arena.off("vmmm") + mm_id * mm_rec_size(int(arena.config["nr_cpus"]))


def is_mmap_lock(arena: Any, off: int) -> bool:
    """Is the lock word at `off` some mm's mmap_lock?  (A robust-list entry names only
    its offset: mm/recovery.py keeps a dead CPU's mmap_lock holds over its recovery.)"""
    if "vmmm" not in arena.sections:
        return False
    rel = off - arena.off("vmmm")
    size = mm_rec_size(int(arena.config["nr_cpus"]))
    return 0 <= rel < arena.u64[(arena.off("vmhdr") + H_MAX_MMS) >> 3] * size and rel % size == M_MMAP_LOCK


def file_off(arena: Any, fid: int) -> int:
    return arena.off("vmfile") + fid * FILE_REC


def vmcpu_off(arena: Any, cpu: int) -> int:
    return arena.off("vmcpu") + cpu * vmcpu_rec_size(int(arena.config["nr_cpus"]))


def require_vm(arena: Any) -> None:
    if not vm_ready(arena):
        raise VMError("ENOSYS", f"arena {arena.name}: no virtual memory (vm_init was not run)")


def get_mm_rss(arena: Any, mo: int) -> int:
    """get_mm_rss(): file + anon + shmem pages mapped (swap entries are not resident)."""
    c = get_mm_counters(arena.u64, mo, int(arena.config["nr_cpus"]))
    return c[MM_FILEPAGES] + c[MM_ANONPAGES] + c[MM_SHMEMPAGES]


def update_hiwater_rss(arena: Any, mo: int) -> None:
    """update_hiwater_rss(): raise hiwater_rss to the current RSS, called before RSS drops
    (unmap_region, zap_page_range_single, MADV_FREE, try_to_unmap_one, as Linux does), so
    VmHWM keeps the peak.  A CAS max: several CPUs may unmap in one mm at once (under
    mmap_lock for read, or reclaim under none), where Linux's plain store may lose a raise."""
    at = arena.atomic
    rss = get_mm_rss(arena, mo)
    off = mo + M_HIWATER_RSS
    cur = at.load64(off)
    while rss > cur:
        got = at.cas64(off, cur, rss)
        if got == cur:
            return
        cur = got
