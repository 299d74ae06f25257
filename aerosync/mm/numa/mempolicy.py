"""NUMA memory policies: which node a page comes from, in numactl's words.

Models: mm/mempolicy.c (mpol_new, mpol_set_nodemask, policy_nodemask, alloc_pages_mpol,
alloc_pages_preferred_many, interleave_nodes, weighted_interleave_nodes, interleave_nid,
weighted_interleave_nid, apply_policy_zone), include/uapi/linux/mempolicy.h (MPOL_*),
libnuma's numa_parse_nodestring() for the node-list syntax.  Unit: a policy per task;
here a task is one simulated CPU's worker (linux-mm.md 4.3).

API:
  parse_policy(text, nr_nodes, weights=(), *, mem_nodes=None) -> MemPolicy
  policy_for_cpu(policy, cpu_policy, cpu, nr_nodes, weights, *, mem_nodes=None) -> MemPolicy
  MemPolicy(mode, nodes, weights, flags, user_nodes): frozen; .to_text() gives numactl
      words back (MODE=FLAGS:NODES when mode flags are set, e.g. "bind=static:0-1")
  the kernel's rules as pure functions (mm/mempolicy.c names, nodemasks as ints):
      sanitize_mpol_flags, mpol_new_check, mpol_set_nodemask, mpol_relative_nodemask,
      nodes_fold, nodes_onto, node_remap, mpol_rebind, interleave_nid,
      weighted_interleave_nid, mpol_to_str (the numa_maps / tmpfs mount format)
  process memory (task, VMA and shared policies in the arena, mbind, migration,
  NUMA balancing): vm_policy.py, migrate.py, task_numa.py, numa_vm.py
  PolicyAllocator(mm, cpu, policy, cpu_to_node=None):
      .alloc_pages(gfp, order) -> pfn | -1        task policy, NO_INTERLEAVE_INDEX
      .folio_alloc(gfp, order) -> pfn | -1
      .alloc_pages_mpol(gfp, order, ilx=-1) -> pfn | -1   general path (VMA-style ilx)
  make_touch_cost(remote_access_ns, distance, cpu_node) -> touch(page_nid) | None
  touch_costs(remote_access_ns, distance, cpu_node) -> ns per node
  page_nid(arena, pfn), mem_nodes(mm), POLICY_WORDS, PolicyError

Semantics, per policy (what alloc_pages_mpol does; preferred nid and nodemask are what
MM.alloc_pages_nodemask gets, so MM's zone_statistics counts numastat as Linux does):

  mode             preferred nid       nodemask  fallback
  default / local  this CPU's node     none      full zonelist of that node
  preferred=N      N                   none      full zonelist of N
  preferred-many   this CPU's node     nodes     pass 1 within nodes (nearest to the local
                                                 node first, __GFP_NOWARN, no
                                                 __GFP_DIRECT_RECLAIM/__GFP_NOFAIL);
                                                 pass 2: full zonelist of the local node
  bind             this CPU's node     nodes     only within nodes, nearest first (-1 when
                                                 they are exhausted); requests for a zone
                                                 below policy_zone (GFP_DMA/DMA32 when some
                                                 node has Normal) are not restricted
  interleave       next node (il_prev) none      normal fallback; interleave_hit +1 on the
                                                 page's node when it is the chosen node
  weighted-inter.  il_prev for `weight` none      as interleave
                   allocations in a row

  * numastat follows (linux-mm.md 4.4): the "preferred zone" is the first zone of the
    zonelist after nodemask filtering, so bind={1} from a node-0 CPU counts numa_hit
    (and other_node) on node 1, never numa_miss, until node 1 runs out and the request
    fails; preferred=1 spilling to node 0 counts numa_miss on 0 and numa_foreign on 1;
    interleave's preferred node is the interleave target (hit when it got the page).
  * __GFP_THISNODE requests ignore the task policy (alloc_pages uses default_policy
    then), exactly as alloc_frozen_pages_noprof() does.
  * The interleave position is per allocator (per task: current->il_prev, il_weight),
    starting so that the first allocation goes to the first node of the set
    (do_set_mempolicy sets il_prev = MAX_NUMNODES - 1).
  * interleave_hit counts one per allocation (__count_numa_event on the page's zone),
    whatever the order.
  * Nodes without memory: a node list naming one explicitly is refused (numactl's "node
    argument out of range"); ranges and "all" skip them; an empty result is refused
    (the kernel's EINVAL from mpol_set_nodemask).  "+N" indexes the memory nodes
    (numactl's relative form), "!LIST" is every memory node not in LIST.
  * Weights (weighted interleave, `[numa] weights`): one per node, 1..255, default 1
    (the kernel's /sys/kernel/mm/mempolicy/weighted_interleave/nodeN).  Other modes keep
    weights = ().

Hot path: `PolicyAllocator.alloc_pages` is one closure specialised per mode at
construction (no per-call objects; locals bound once).  default/local, and preferred=
the local node, are MM.alloc_pages itself (zero overhead).  interleave counts its hit
with one plain increment on this CPU's mmstat record at the documented offset of the
page's zone (mm/pmm/mmzone.py: STAT_NUMA + nr_nodes*8 + zone*ZS_WORDS + ZS_INTERLEAVE,
zone = the page's P_ZONE byte), as alloc_pages_mpol counts it on page_zone(page), so
zoneinfo's numa_interleave is per zone as on Linux.  Measured (2-core box, 2-node
machine, PCP on, order-0 alloc + free pairs from a CPU on node 0): bare MM.alloc_pages
about 1.4 us; local/default the same function; bind=1 1.52-1.63, preferred=1 1.55-1.63
and preferred-many=1 1.60-1.69, now that MM caches nodemask plans and serves non-local
order-0 allocations from its inlined PCP pop (before that: 3.5, 2.2 and 3.6 us).  The
wrapper itself adds 0-0.2 us (interleave's round robin and hit count the most).

Owner-only data: il_prev / il_weight (a closure's locals, never in the arena); this
CPU's mmstat record (MM's rule: owner-only plain increments, summed on read).
Mode flags (MPOL_F_STATIC_NODES, MPOL_F_RELATIVE_NODES, MPOL_F_NUMA_BALANCING): the
words take them as the kernel's tmpfs "mpol=" option and mpol_to_str print them --
"interleave=static:0-2", "bind=relative:0-1", "bind=balancing:0-1" -- and the node list
after the colon is then the user's nodemask, not checked against memory nodes (numbers
0..MAX_NUMNODES-1): mpol_set_nodemask makes the policy's nodes from it (static: the
nodes with memory among them; relative: folded onto the allowed nodes).  AeroSync has
no cpusets, so the allowed nodes (cpuset_current_mems_allowed) are the memory nodes and
a rebind never happens on its own; mpol_rebind() is the rule a cpuset change would
apply, kept for the policy model tests.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aerosync.arch.cpu import format_cpulist
from aerosync.errors import AeroSyncError, UsageError
from aerosync.mm.pmm import mmzone as Z
from aerosync.mm.pmm.gfp import __GFP_COMP as _GFP_COMP
from aerosync.mm.pmm.gfp import __GFP_DIRECT_RECLAIM as _GFP_DIRECT_RECLAIM
from aerosync.mm.pmm.gfp import __GFP_DMA as _GFP_DMA
from aerosync.mm.pmm.gfp import __GFP_DMA32 as _GFP_DMA32
from aerosync.mm.pmm.gfp import __GFP_NOFAIL as _GFP_NOFAIL
from aerosync.mm.pmm.gfp import __GFP_NORETRY as _GFP_NORETRY
from aerosync.mm.pmm.gfp import __GFP_NOWARN as _GFP_NOWARN
from aerosync.mm.pmm.gfp import __GFP_THISNODE as _GFP_THISNODE
from aerosync.mm.pmm.gfp import MAX_NR_ZONES, ZONE_DMA, ZONE_DMA32, gfp_zone
from aerosync.mm.pmm.page import P_NODE, P_ZONE
from aerosync.params import MAX_NUMNODES, PAGE_META_SIZE

__all__ = [
    "MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_LOCAL",
    "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_MAX", "MPOL_NAMES", "NO_INTERLEAVE_INDEX",
    "MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES", "MPOL_F_NUMA_BALANCING", "MPOL_MODE_FLAGS", "MPOL_F_SHARED",
    "MPOL_F_MOF", "MPOL_F_MORON", "MPOL_MF_STRICT", "MPOL_MF_MOVE", "MPOL_MF_MOVE_ALL", "MPOL_MF_VALID",
    "MPOL_F_NODE", "MPOL_F_ADDR", "MPOL_F_MEMS_ALLOWED", "NUMA_NO_NODE", "sanitize_mpol_flags", "mpol_new_check",
    "mpol_set_nodemask", "mpol_relative_nodemask", "nodes_fold", "nodes_onto", "node_remap", "mpol_rebind",
    "interleave_nid", "weighted_interleave_nid", "mpol_to_str", "first_node", "next_node_in", "nodes_weight",
    "HPAGE_PMD_ORDER", "POLICY_WORDS", "PolicyError", "MemPolicy", "parse_policy", "parse_nodelist",
    "format_nodelist", "policy_for_cpu", "PolicyAllocator", "mem_nodes", "page_nid", "touch_costs",
    "make_touch_cost",
]

# include/uapi/linux/mempolicy.h
MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, MPOL_LOCAL, MPOL_PREFERRED_MANY, \
    MPOL_WEIGHTED_INTERLEAVE = range(7)
MPOL_NAMES = ("default", "preferred", "bind", "interleave", "local", "preferred-many", "weighted-interleave")
MPOL_MAX = 7
NO_INTERLEAVE_INDEX = -1              # (-1UL): a task allocation, round-robin on il_prev
NUMA_NO_NODE = -1
# mode flags (include/uapi/linux/mempolicy.h), or-ed into the mode argument
MPOL_F_STATIC_NODES = 1 << 15
MPOL_F_RELATIVE_NODES = 1 << 14
MPOL_F_NUMA_BALANCING = 1 << 13
MPOL_MODE_FLAGS = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING
# internal flags (include/linux/mempolicy.h's MPOL_F_* in pol->flags)
MPOL_F_SHARED = 1 << 0                # a shared policy (shmem)
MPOL_F_MOF = 1 << 3                   # "migrate on fault": NUMA balancing may move its pages
MPOL_F_MORON = 1 << 4                 # migrate towards the node referencing the page
# mbind() flags
MPOL_MF_STRICT, MPOL_MF_MOVE, MPOL_MF_MOVE_ALL = 1 << 0, 1 << 1, 1 << 2
MPOL_MF_VALID = MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL
# get_mempolicy() flags
MPOL_F_NODE, MPOL_F_ADDR, MPOL_F_MEMS_ALLOWED = 1 << 0, 1 << 1, 1 << 2
HPAGE_PMD_ORDER = 9                   # x86-64 PMD THP: THISNODE-first rule in alloc_pages_mpol
MAX_IL_WEIGHT = 255                   # weights are u8 in the kernel's iw_table

POLICY_WORDS = (
    "a numactl policy: default, local (or localalloc), bind=NODES (or membind=NODES), "
    "preferred=NODE, preferred-many=NODES, interleave=NODES, weighted-interleave=NODES; "
    "NODES is a node list like 0-1,3 or all, +LIST counts memory nodes relatively, "
    "!LIST means every memory node not in LIST; a leading -- is accepted")

_WORDS = {
    "default": MPOL_DEFAULT, "local": MPOL_LOCAL, "localalloc": MPOL_LOCAL,
    "bind": MPOL_BIND, "membind": MPOL_BIND, "preferred": MPOL_PREFERRED,
    "preferred-many": MPOL_PREFERRED_MANY, "interleave": MPOL_INTERLEAVE,
    "weighted-interleave": MPOL_WEIGHTED_INTERLEAVE,
}
_NODELESS = (MPOL_DEFAULT, MPOL_LOCAL)


class PolicyError(UsageError):
    """A policy text (or its weights) the machine cannot take.

    Fields for the coordinator's ScenarioError(file, key, value, allowed): `key` is
    "numa.policy", "numa.cpu_policy.<cpu>" or "numa.weights"; `value` the text (or the
    weights); `part` the offending piece; `allowed` the reason followed by POLICY_WORDS.
    """

    def __init__(self, key: str, value: object, part: str, reason: str, syntax: str = POLICY_WORDS) -> None:
        self.key, self.value, self.part, self.reason = key, value, part, reason
        self.allowed = f"{part!r} {reason}; allowed: {syntax}"
        super().__init__(f"memory policy {value!r}: {self.allowed}")


@dataclasses.dataclass(frozen=True, slots=True)
class MemPolicy:
    """struct mempolicy: mode (MPOL_*), nodes (bit n = node n), weights (per node, only
    for MPOL_WEIGHTED_INTERLEAVE, else ()), mode flags (MPOL_F_STATIC_NODES | ...) and the
    user's nodemask those flags keep (w.user_nodemask; 0 without mode flags)."""

    mode: int = MPOL_DEFAULT
    nodes: int = 0
    weights: tuple[int, ...] = ()
    flags: int = 0
    user_nodes: int = 0

    @property
    def node_list(self) -> tuple[int, ...]:
        return _bits(self.nodes)

    @property
    def name(self) -> str:
        return MPOL_NAMES[self.mode]

    def to_text(self) -> str:
        """numactl words that parse back to this policy (weights travel separately)."""
        if self.mode in _NODELESS:
            return self.name
        if self.flags & MPOL_MODE_FLAGS:
            return f"{self.name}={_flag_words(self.flags)}:{format_nodelist(_bits(self.user_nodes or self.nodes))}"
        return f"{self.name}={format_nodelist(self.node_list)}"

    def __str__(self) -> str:
        return self.to_text()


def _bits(mask: int) -> tuple[int, ...]:
    out = []
    n = 0
    while mask:
        if mask & 1:
            out.append(n)
        mask >>= 1
        n += 1
    return tuple(out)


def format_nodelist(nodes: Iterable[int]) -> str:
    """`0-1,3` from [0, 1, 3] (the kernel's %*pbl, as for CPU lists)."""
    return format_cpulist(nodes)


def parse_nodelist(spec: str, nr_nodes: int, mem: Sequence[int], text: str, key: str = "numa.policy") -> int:
    """Models libnuma's numa_parse_nodestring(): a node list -> bitmask of memory nodes."""
    def bad(part: str, reason: str) -> PolicyError:
        return PolicyError(key, text, part, reason)

    s = spec.strip()
    if not s:
        raise bad(spec, "is an empty node list")
    invert = s.startswith("!")
    if invert:
        s = s[1:]
    relative = s.startswith("+")
    if relative:
        s = s[1:]
    memset = set(mem)
    mask = 0
    if s == "all":
        for n in mem:
            mask |= 1 << n
    else:
        for tok in s.split(","):
            tok = tok.strip()
            lo_s, dash, hi_s = tok.partition("-")
            if not lo_s.strip().isdigit() or (dash and not hi_s.strip().isdigit()):
                raise bad(tok, "is not a node number or a range N-M")
            lo, hi = int(lo_s), int(hi_s) if dash else int(lo_s)
            if lo > hi:
                raise bad(tok, "is a range whose end is below its start")
            if relative:
                if hi >= len(mem):
                    raise bad(tok, f"counts past the {len(mem)} memory node(s) (relative +N is 0..{len(mem) - 1})")
                rng = mem[lo : hi + 1]
            else:
                for n in (lo, hi):
                    if not 0 <= n < nr_nodes:
                        raise bad(tok, f"names node {n}, outside 0..{nr_nodes - 1} on this {nr_nodes}-node machine")
                    if n not in memset:
                        raise bad(tok, f"names node {n}, which has no memory (memory nodes: "
                                       f"{format_nodelist(mem) or 'none'})")
                rng = [n for n in range(lo, hi + 1) if n in memset]
            for n in rng:
                mask |= 1 << n
    if invert:
        allm = 0
        for n in mem:
            allm |= 1 << n
        mask = allm & ~mask
    if not mask:
        raise bad(spec, "leaves no memory node")
    return mask


def _mem_list(nr_nodes: int, mem_nodes: Iterable[int] | None) -> list[int]:
    if mem_nodes is None:
        return list(range(nr_nodes))
    return sorted(n for n in set(mem_nodes) if 0 <= n < nr_nodes)


def _weights(weights: Sequence[int], nr_nodes: int) -> tuple[int, ...]:
    if not weights:
        return (1,) * nr_nodes
    w = tuple(weights)
    if len(w) != nr_nodes:
        raise PolicyError("numa.weights", list(w), str(list(w)), f"has {len(w)} weight(s) for {nr_nodes} node(s)",
                          f"one weight 1..{MAX_IL_WEIGHT} per node, or none (all 1)")
    for x in w:
        if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_IL_WEIGHT:
            raise PolicyError("numa.weights", list(w), str(x), f"is not a weight 1..{MAX_IL_WEIGHT}",
                              f"one weight 1..{MAX_IL_WEIGHT} per node, or none (all 1)")
    return w


def parse_policy(text: str, nr_nodes: int, weights: Sequence[int] = (), *,
                 mem_nodes: Iterable[int] | None = None, key: str = "numa.policy") -> MemPolicy:
    """Models mpol_new() + mpol_set_nodemask() for numactl's words (POLICY_WORDS).

    `mem_nodes`: nodes with memory (default: all).  Raises PolicyError (a UsageError)
    naming the text, the bad part and what is allowed.
    """
    if not isinstance(text, str):
        raise PolicyError(key, text, str(text), "is not text")
    if nr_nodes < 1:
        raise AeroSyncError(f"parse_policy: nr_nodes = {nr_nodes}")
    t = text.strip()
    word, eq, arg = t.partition("=")
    word = word.strip().lower()
    if word.startswith("--"):
        word = word[2:]
    mode = _WORDS.get(word)
    if mode is None:
        raise PolicyError(key, text, word or text, "is not a policy word")
    if mode in _NODELESS:
        if eq:
            raise PolicyError(key, text, t, f"takes no node list ({word} allocates on the CPU's own node)")
        return MemPolicy(mode)
    if not eq:
        raise PolicyError(key, text, t, f"needs a node list: {word}=NODES")
    mem = _mem_list(nr_nodes, mem_nodes)
    if not mem:
        raise PolicyError(key, text, t, "cannot apply: the machine has no memory node")
    fwords, colon, rest = arg.partition(":")
    if colon:
        return _parse_flagged(text, key, word, mode, fwords, rest, nr_nodes, mem, weights)
    mask = parse_nodelist(arg, nr_nodes, mem, text, key)
    if mode == MPOL_PREFERRED and mask & (mask - 1):
        raise PolicyError(key, text, arg.strip(), "names more than one node (preferred takes exactly one; "
                                                  "use preferred-many=NODES for a set)")
    w = _weights(weights, nr_nodes) if mode == MPOL_WEIGHTED_INTERLEAVE else ()
    return MemPolicy(mode, mask, w)


_FLAG_WORDS = {"static": MPOL_F_STATIC_NODES, "relative": MPOL_F_RELATIVE_NODES, "balancing": MPOL_F_NUMA_BALANCING}


def _flag_words(flags: int) -> str:
    """mpol_to_str()'s flag text: static or relative, then |balancing."""
    out = "static" if flags & MPOL_F_STATIC_NODES else "relative" if flags & MPOL_F_RELATIVE_NODES else ""
    if flags & MPOL_F_NUMA_BALANCING:
        out = f"{out}|balancing" if out else "balancing"
    return out


def _parse_flagged(text: str, key: str, word: str, mode: int, fwords: str, nodes_text: str, nr_nodes: int,
                   mem: Sequence[int], weights: Sequence[int]) -> MemPolicy:
    """MODE=FLAGS:NODES (mpol_parse_str's form): the user's nodemask, then the kernel's
    sanitize_mpol_flags / mpol_new / mpol_set_nodemask on it."""
    flags = 0
    for f in fwords.split("|"):
        bit = _FLAG_WORDS.get(f.strip().lower())
        if bit is None:
            raise PolicyError(key, text, f.strip() or fwords, "is not a mode flag (static, relative, balancing; "
                                                               "static|balancing combines)")
        flags |= bit
    user = 0
    s = nodes_text.strip()
    if not s:
        raise PolicyError(key, text, nodes_text, "is an empty node list")
    for tok in s.split(","):
        lo_s, dash, hi_s = tok.strip().partition("-")
        if not lo_s.strip().isdigit() or (dash and not hi_s.strip().isdigit()):
            raise PolicyError(key, text, tok, "is not a node number or a range N-M")
        lo, hi = int(lo_s), int(hi_s) if dash else int(lo_s)
        if lo > hi or hi >= MAX_NUMNODES:
            raise PolicyError(key, text, tok, f"is not a range of node numbers 0..{MAX_NUMNODES - 1}")
        for n in range(lo, hi + 1):
            user |= 1 << n
    try:
        sanitize_mpol_flags(mode | flags)
        mpol_new_check(mode, flags, user)
        nodes, user_mask = mpol_set_nodemask(mode, flags, user, sum(1 << n for n in mem))
    except PolicyError as e:
        raise PolicyError(key, text, e.part, e.reason) from None
    if mode == MPOL_PREFERRED and user & (user - 1) and not flags & MPOL_F_RELATIVE_NODES:
        raise PolicyError(key, text, nodes_text.strip(), "names more than one node (preferred takes exactly one)")
    w = _weights(weights, nr_nodes) if mode == MPOL_WEIGHTED_INTERLEAVE else ()
    return MemPolicy(mode, nodes, w, flags, user_mask)


# ---------------------------------------------------------------- the kernel's rules (pure)
def nodes_weight(mask: int) -> int:
    return bin(mask).count("1")


def first_node(mask: int) -> int:
    """first_node(): the lowest node in mask (MAX_NUMNODES when empty)."""
    return (mask & -mask).bit_length() - 1 if mask else MAX_NUMNODES


def next_node_in(nid: int, mask: int) -> int:
    """next_node_in(): the next node after nid in mask, wrapping (MAX_NUMNODES if empty)."""
    if not mask:
        return MAX_NUMNODES
    higher = mask >> (nid + 1) << (nid + 1) if nid + 1 < MAX_NUMNODES else 0
    return first_node(higher) if higher else first_node(mask)


def nodes_fold(mask: int, sz: int) -> int:
    """nodes_fold() (bitmap_fold): bit n of mask sets bit n % sz."""
    out = 0
    for n in _bits(mask):
        out |= 1 << (n % sz)
    return out


def nodes_onto(mask: int, rel: int) -> int:
    """nodes_onto() (bitmap_onto): bit n of mask sets the n-th set bit of rel."""
    rel_nodes = _bits(rel)
    out = 0
    for n in _bits(mask):
        if n < len(rel_nodes):
            out |= 1 << rel_nodes[n]
    return out


def mpol_relative_nodemask(orig: int, rel: int) -> int:
    """mpol_relative_nodemask(): fold the user's nodes into as many as rel has, then map
    the k-th onto rel's k-th node (MPOL_F_RELATIVE_NODES)."""
    w = nodes_weight(rel)
    if not w:
        return 0
    return nodes_onto(nodes_fold(orig, w), rel)


def node_remap(nid: int, old: int, new: int) -> int:
    """node_remap() (bitmap_bitremap): the n-th node of old maps to the (n mod weight)-th
    node of new; a node not in old (or an empty new) stays itself."""
    olds, news = _bits(old), _bits(new)
    if nid not in olds or not news:
        return nid
    return news[olds.index(nid) % len(news)]


def nodes_remap(mask: int, old: int, new: int) -> int:
    out = 0
    for n in _bits(mask):
        out |= 1 << node_remap(n, old, new)
    return out


def sanitize_mpol_flags(mode_arg: int) -> tuple[int, int]:
    """sanitize_mpol_flags(): split the mode argument into (mode, flags); EINVAL (as a
    PolicyError) for an unknown mode, static together with relative, or the balancing
    flag on a mode other than bind / preferred-many (which then get MOF | MORON)."""
    flags, mode = mode_arg & MPOL_MODE_FLAGS, mode_arg & ~MPOL_MODE_FLAGS
    if not 0 <= mode < MPOL_MAX:
        raise PolicyError("mode", mode_arg, str(mode), "is not a policy mode (0..6): EINVAL")
    if flags & MPOL_F_STATIC_NODES and flags & MPOL_F_RELATIVE_NODES:
        raise PolicyError("mode", mode_arg, "static|relative", "cannot be combined: EINVAL")
    if flags & MPOL_F_NUMA_BALANCING:
        if mode not in (MPOL_BIND, MPOL_PREFERRED_MANY):
            raise PolicyError("mode", mode_arg, "balancing", "applies to bind and preferred-many only: EINVAL")
        flags |= MPOL_F_MOF | MPOL_F_MORON
    return mode, flags


def mpol_new_check(mode: int, flags: int, nodes: int) -> int:
    """mpol_new()'s checks: the mode a policy really gets (preferred with no node is
    local), or a PolicyError carrying EINVAL.  MPOL_DEFAULT returns MPOL_DEFAULT (the
    caller stores no policy)."""
    if mode == MPOL_DEFAULT:
        if nodes:
            raise PolicyError("nodes", nodes, format_nodelist(_bits(nodes)), "must be empty for default: EINVAL")
        return MPOL_DEFAULT
    if mode == MPOL_PREFERRED:
        if not nodes:
            if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
                raise PolicyError("nodes", nodes, "", "preferred with static/relative needs a node: EINVAL")
            return MPOL_LOCAL
    elif mode == MPOL_LOCAL:
        if nodes or flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            raise PolicyError("nodes", nodes, format_nodelist(_bits(nodes)), "local takes no nodes or flags: EINVAL")
    elif not nodes:
        raise PolicyError("nodes", nodes, "", f"{MPOL_NAMES[mode]} needs at least one node: EINVAL")
    return mode


def mpol_set_nodemask(mode: int, flags: int, nodes: int, allowed: int) -> tuple[int, int]:
    """mpol_set_nodemask() + the mode's create(): (policy nodes, w.user_nodemask or
    w.cpuset_mems_allowed).  `allowed` = cpuset_current_mems_allowed & N_MEMORY.
    EINVAL (PolicyError) when nothing is left."""
    if mode in (MPOL_DEFAULT, MPOL_LOCAL):
        return 0, 0
    if flags & MPOL_F_RELATIVE_NODES:
        m2 = mpol_relative_nodemask(nodes, allowed)
    else:
        m2 = nodes & allowed
    user = nodes if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES) else allowed
    if not m2:
        raise PolicyError("nodes", nodes, format_nodelist(_bits(nodes)),
                          f"leaves no allowed memory node ({format_nodelist(_bits(allowed))}): EINVAL")
    if mode == MPOL_PREFERRED:
        return 1 << first_node(m2), user
    return m2, user


def mpol_rebind(mode: int, flags: int, nodes: int, user: int, newmask: int) -> tuple[int, int]:
    """mpol_rebind_policy() for a new set of allowed nodes (a cpuset change): static keeps
    the user's nodes that are allowed, relative re-folds them, otherwise the nodes are
    remapped from the old allowed set; an empty result takes all of newmask.  Preferred
    and preferred-many only remember the new allowed set.  `user` is the kernel's union
    w (user_nodemask with a mode flag, else cpuset_mems_allowed).  Returns (nodes, w)."""
    if mode in (MPOL_DEFAULT, MPOL_LOCAL):
        return nodes, user
    if mode in (MPOL_PREFERRED, MPOL_PREFERRED_MANY):
        return nodes, newmask               # mpol_rebind_preferred: w (a union) = newmask
    if flags & MPOL_F_STATIC_NODES:
        tmp = user & newmask
    elif flags & MPOL_F_RELATIVE_NODES:
        tmp = mpol_relative_nodemask(user, newmask)
    else:
        if user == newmask:
            return nodes, user
        tmp = nodes_remap(nodes, user, newmask)
        user = newmask
    return (tmp or newmask), user


def interleave_nid(nodes: int, ilx: int, local: int) -> int:
    """interleave_nid(): the (ilx mod weight)-th node of the policy's nodes."""
    ns = _bits(nodes)
    if not ns:
        return local
    return ns[ilx % len(ns)]


def weighted_interleave_nid(nodes: int, weights: Sequence[int], ilx: int, local: int) -> int:
    """weighted_interleave_nid(): walk the nodes, each taking `weight` consecutive
    indices, around the total weight."""
    ns = _bits(nodes)
    if not ns:
        return local
    total = sum(weights[n] for n in ns)
    target = ilx % total
    for n in ns:
        if target < weights[n]:
            return n
        target -= weights[n]
    return ns[-1]


# the kernel's policy_modes[] (mpol_to_str, numa_maps, tmpfs mount options)
_STR_MODES = ("default", "prefer", "bind", "interleave", "local", "prefer (many)", "weighted interleave")


def mpol_to_str(mode: int, flags: int, nodes: int) -> str:
    """mpol_to_str(): "interleave:0-1", "bind=static:0", "prefer:1", "local", "default"."""
    out = _STR_MODES[mode]
    if mode in (MPOL_DEFAULT, MPOL_LOCAL):
        nodes = 0
    if flags & MPOL_MODE_FLAGS:
        out += "=" + _flag_words(flags)
    if nodes:
        out += ":" + format_nodelist(_bits(nodes))
    return out


def policy_for_cpu(numa_spec_policy: str, cpu_policy: Mapping[int, str] | Iterable[tuple[int, str]], cpu: int,
                   nr_nodes: int, weights: Sequence[int] = (), *,
                   mem_nodes: Iterable[int] | None = None) -> MemPolicy:
    """The policy of simulated CPU `cpu`: its [numa] cpu_policy override, else [numa] policy
    (NumaSpec.cpu_policy's tuple of pairs or a mapping)."""
    per = dict(cpu_policy.items() if isinstance(cpu_policy, Mapping) else cpu_policy)
    if cpu in per:
        return parse_policy(per[cpu], nr_nodes, weights, mem_nodes=mem_nodes, key=f"numa.cpu_policy.{cpu}")
    return parse_policy(numa_spec_policy, nr_nodes, weights, mem_nodes=mem_nodes)


# ---------------------------------------------------------------- machine facts
def mem_nodes(mm: Any) -> tuple[int, ...]:
    """Nodes with at least one populated zone (node_states[N_MEMORY])."""
    return tuple(n for n in range(mm.nr_nodes)
                 if any(mm.populated[n * MAX_NR_ZONES + zi] for zi in range(MAX_NR_ZONES)))


def _policy_zone(mm: Any) -> int:
    """policy_zone: the highest zone index populated on any node (check_highest_zone)."""
    pz = 0
    for zid, pop in enumerate(mm.populated):
        if pop:
            pz = max(pz, zid % MAX_NR_ZONES)
    return pz


def page_nid(arena: Any, pfn: int) -> int:
    """page_to_nid(): the node of pfn (struct page's fixed node byte)."""
    return arena.u8[arena.off("pagemeta") + pfn * PAGE_META_SIZE + P_NODE]


# ---------------------------------------------------------------- allocator front end
class PolicyAllocator:
    """One task's (simulated CPU's) policy-aware allocation front end on `mm`.

    `alloc_pages` is specialised per mode (see the module docstring); `alloc_pages_mpol`
    is the general path with an optional interleave index.
    """

    __slots__ = ("mm", "cpu", "nid", "policy", "nodes", "alloc_pages", "folio_alloc", "alloc_pages_mpol",
                 "il_state")

    def __init__(self, mm: Any, cpu: int, policy: MemPolicy,
                 cpu_to_node: Sequence[int] | Callable[[int], int] | None = None) -> None:
        if mm.cpu != cpu:
            raise AeroSyncError(f"PolicyAllocator: mm handle is cpu{mm.cpu}'s, not cpu{cpu}'s")
        nid = mm.nid if cpu_to_node is None else (cpu_to_node(cpu) if callable(cpu_to_node)
                                                  else cpu_to_node[cpu])
        if nid != mm.nid:
            raise AeroSyncError(f"PolicyAllocator: cpu{cpu} is on node {nid} but its mm handle says node {mm.nid}")
        self.mm, self.cpu, self.nid, self.policy = mm, cpu, nid, policy
        mem = mem_nodes(mm)
        memmask = sum(1 << n for n in mem)
        nodes = policy.nodes & memmask          # mpol_set_nodemask: & node_states[N_MEMORY]
        if policy.mode not in _NODELESS:
            if policy.nodes >> mm.nr_nodes:
                raise PolicyError("numa.policy", policy.to_text(), format_nodelist(_bits(policy.nodes)),
                                  f"names nodes outside 0..{mm.nr_nodes - 1}")
            if not nodes:
                raise PolicyError("numa.policy", policy.to_text(), format_nodelist(_bits(policy.nodes)),
                                  f"has no node with memory (memory nodes: {format_nodelist(mem)})")
            if policy.mode == MPOL_WEIGHTED_INTERLEAVE and len(policy.weights) != mm.nr_nodes:
                raise PolicyError("numa.weights", list(policy.weights), str(list(policy.weights)),
                                  f"needs one weight per node ({mm.nr_nodes})")
        self.nodes = nodes
        self.il_state = [0, 0]                   # [il_prev position, il_weight] (for tests/reports)
        _build(self)


def _build(pa: PolicyAllocator) -> None:
    mm = pa.mm
    pol = pa.policy
    mode = pol.mode
    mynid = pa.nid
    mask = pa.nodes
    nodes_t = _bits(mask)
    nn = len(nodes_t)
    ap = mm.alloc_pages
    anm = mm.alloc_pages_nodemask
    arena = mm.arena
    u8, u64 = arena.u8, arena.u64
    pnode = arena.off("pagemeta") + P_NODE
    pzone = pnode - P_NODE + P_ZONE
    # numa_interleave is counted on the page's zone (__count_numa_event(page_zone(page), ..)):
    # word ih0 + global zone id * ZS_WORDS of this CPU's mmstat record.
    ih0 = ((Z.stat_off(arena, mm.cpu, mm.nr_nodes) >> 3) + Z.STAT_NUMA + mm.nr_nodes * 8
           + Z.ZS_INTERLEAVE)
    ZSW = Z.ZS_WORDS
    assert PAGE_META_SIZE == 64
    pz = _policy_zone(mm)
    low_zone_bits = (_GFP_DMA if pz > ZONE_DMA else 0) | (_GFP_DMA32 if pz > ZONE_DMA32 else 0)
    pm_strip = ~(_GFP_DIRECT_RECLAIM | _GFP_NOFAIL)
    THISNODE = _GFP_THISNODE
    weights = tuple(pol.weights[n] for n in nodes_t) if mode == MPOL_WEIGHTED_INTERLEAVE else (1,) * nn
    wtotal = sum(weights)
    st = pa.il_state
    st[0] = nn - 1                               # il_prev = MAX_NUMNODES - 1: first pick is nodes_t[0]

    # -------------------------------------------------- general path (alloc_pages_mpol)
    def policy_nodemask(gfp: int, ilx: int) -> tuple[int, int | None]:
        """Models policy_nodemask(): (preferred nid, nodemask or None)."""
        if mode == MPOL_PREFERRED:
            return nodes_t[0], None
        if mode == MPOL_PREFERRED_MANY:
            return mynid, mask
        if mode == MPOL_BIND:
            return mynid, (mask if gfp_zone(gfp) >= pz else None)
        if mode == MPOL_INTERLEAVE:
            if ilx == NO_INTERLEAVE_INDEX:
                i = st[0] + 1
                if i == nn:
                    i = 0
                st[0] = i
                return nodes_t[i], None
            return nodes_t[ilx % nn], None
        if mode == MPOL_WEIGHTED_INTERLEAVE:
            if ilx == NO_INTERLEAVE_INDEX:
                if not st[1]:
                    i = st[0] + 1
                    if i == nn:
                        i = 0
                    st[0] = i
                    st[1] = weights[i]
                st[1] -= 1
                return nodes_t[st[0]], None
            target = ilx % wtotal
            i = 0
            while target >= weights[i]:
                target -= weights[i]
                i += 1
            return nodes_t[i], None
        return mynid, None

    def alloc_pages_mpol(gfp: int, order: int, ilx: int = NO_INTERLEAVE_INDEX) -> int:
        """Models alloc_pages_mpol() (with alloc_frozen_pages_noprof's __GFP_THISNODE rule)."""
        if gfp & THISNODE:
            return ap(gfp, order)
        nid, nmask = policy_nodemask(gfp, ilx)
        if mode == MPOL_PREFERRED_MANY:
            pfn = anm((gfp | _GFP_NOWARN) & pm_strip, order, nid, nmask)
            return pfn if pfn >= 0 else anm(gfp, order, nid, None)
        if (order == HPAGE_PMD_ORDER and ilx != NO_INTERLEAVE_INDEX
                and mode not in (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE)
                and (nmask is None or nmask >> nid & 1)):
            pfn = anm(gfp | THISNODE | _GFP_NORETRY, order, nid, None)
            if pfn >= 0 or not gfp & _GFP_DIRECT_RECLAIM:
                return pfn
        pfn = anm(gfp, order, nid, nmask)
        if pfn >= 0 and mode in (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE) and u8[pnode + (pfn << 6)] == nid:
            u64[ih0 + u8[pzone + (pfn << 6)] * ZSW] += 1
        return pfn

    # -------------------------------------------------- hot path, one closure per mode
    alloc: Callable[[int, int], int]
    if mode in _NODELESS or (mode == MPOL_PREFERRED and nodes_t[0] == mynid):
        alloc = ap
    elif mode == MPOL_PREFERRED:
        pn = nodes_t[0]

        def alloc(gfp: int, order: int) -> int:
            if gfp & THISNODE:
                return ap(gfp, order)
            return anm(gfp, order, pn, None)
    elif mode == MPOL_BIND:
        skip = THISNODE | low_zone_bits

        def alloc(gfp: int, order: int) -> int:
            if gfp & skip:
                return ap(gfp, order)
            return anm(gfp, order, mynid, mask)
    elif mode == MPOL_PREFERRED_MANY:
        def alloc(gfp: int, order: int) -> int:
            if gfp & THISNODE:
                return ap(gfp, order)
            pfn = anm((gfp | _GFP_NOWARN) & pm_strip, order, mynid, mask)
            if pfn < 0:
                return ap(gfp, order)
            return pfn
    elif mode == MPOL_INTERLEAVE:
        def alloc(gfp: int, order: int) -> int:
            if gfp & THISNODE:
                return ap(gfp, order)
            i = st[0] + 1
            if i == nn:
                i = 0
            st[0] = i
            nid = nodes_t[i]
            pfn = ap(gfp, order) if nid == mynid else anm(gfp, order, nid, None)
            if pfn >= 0 and u8[pnode + (pfn << 6)] == nid:
                u64[ih0 + u8[pzone + (pfn << 6)] * ZSW] += 1
            return pfn
    else:                                        # MPOL_WEIGHTED_INTERLEAVE
        def alloc(gfp: int, order: int) -> int:
            if gfp & THISNODE:
                return ap(gfp, order)
            i = st[0]
            if not st[1]:
                i += 1
                if i == nn:
                    i = 0
                st[0] = i
                st[1] = weights[i]
            st[1] -= 1
            nid = nodes_t[i]
            pfn = ap(gfp, order) if nid == mynid else anm(gfp, order, nid, None)
            if pfn >= 0 and u8[pnode + (pfn << 6)] == nid:
                u64[ih0 + u8[pzone + (pfn << 6)] * ZSW] += 1
            return pfn

    def folio_alloc(gfp: int, order: int) -> int:
        """folio_alloc() under the task policy: a compound block."""
        return alloc(gfp | _GFP_COMP, order)

    pa.alloc_pages = alloc
    pa.alloc_pages_mpol = alloc_pages_mpol
    pa.folio_alloc = folio_alloc


# ---------------------------------------------------------------- remote access cost
def touch_costs(remote_access_ns: int, distance: Sequence[Sequence[int]], cpu_node: int) -> tuple[int, ...]:
    """Extra ns per touch of a page on each node: remote_access_ns * (d - 10) / 10, where d
    is the SLIT distance from cpu_node (LOCAL_DISTANCE 10 costs nothing)."""
    if remote_access_ns < 0:
        raise UsageError(f"remote_access_ns = {remote_access_ns}: allowed >= 0")
    return tuple(max(0, remote_access_ns * (d - 10) // 10) for d in distance[cpu_node])


def make_touch_cost(remote_access_ns: int, distance: Sequence[Sequence[int]],
                    cpu_node: int) -> Callable[[int], None] | None:
    """touch(page_nid) busy-waits the page's remote-access cost (time.perf_counter_ns
    spin, no sleep: the CPU stays busy as a stalled load would); None when
    remote_access_ns == 0, so callers skip it with one `if`."""
    if not remote_access_ns:
        return None
    costs = touch_costs(remote_access_ns, distance, cpu_node)
    clock = time.perf_counter_ns

    def touch(page_nid: int) -> None:
        ns = costs[page_nid]
        if ns:
            end = clock() + ns
            while clock() < end:
                pass

    return touch
