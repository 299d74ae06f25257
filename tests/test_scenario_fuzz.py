"""Input that cannot hurt (issue 13): a property-based fuzzer of `aerosync run`.

Hypothesis generates scenario files (mutations of the shipped scenarios, random TOML
documents, raw text and bytes) and `--set` values, and runs `aerosync run` on each in
this process.  Every input must end in one of two ways:

* it is valid: the run gets as far as starting its first worker (a small arena really is
  created, booted and set up for the workload, and removed by the run's own clean-up;
  a large one stops where its segment would be created), which the test intercepts
  (`_WouldCreate`); or
* it is refused with exit status 2 and one line, ``aerosync run: <ScenarioError>``,
  naming the file (or ``<command line>``), the key, the value and what is allowed.

Never a traceback, never another exit status, never anything left behind: no /dev/shm
object of this process, no run directory, no output file.

The example budget is fixed and small by default (CI, derandomized so a CI failure is
reproducible); ``pytest --soak`` runs a larger, random one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import math
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from multiprocessing import context as mp_context
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerosync import scenario as S
from aerosync.arena import segment
from aerosync.arena.cleanup import find_project_objects
from aerosync.cli import main
from aerosync.errors import ScenarioError, UsageError
from workers.workloads import registry

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))
CI_EXAMPLES, SOAK_EXAMPLES = 100, 5000       # examples per test (10-40 ms each)


class _WouldCreate(BaseException):
    """Raised where the arena's segment would be created: the input was valid."""


def _budget(soak: bool, ci: int = CI_EXAMPLES) -> Callable[[Any], Any]:
    return settings(max_examples=SOAK_EXAMPLES if soak else ci, derandomize=not soak, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], print_blob=True)


# ------------------------------------------------------------------------------ values

_SECTIONS = tuple(k for k in S._TOP_KEYS if k not in S._SCALAR_KEYS)
# Every [section]'s known keys, from scenario.py's own _<SECTION>_KEYS tables (a new
# section without one fails here, so the fuzzer never silently skips it).
_KEYS: dict[str, tuple[str, ...]] = {
    sec: tuple(getattr(S, f"_{sec.upper()}_KEYS")) for sec in _SECTIONS if sec != "workload"
} | {"workload": tuple(sorted({f.name for cls in registry().values() for f in dataclasses.fields(cls)}))}

# Strings the checks treat specially, so random mutation reaches past the first check.
_SPECIAL_STRINGS = [
    "all", "host", "fake:1", "fake:2", "fake:2:21", "fake:0", "fake:65", "fake:2:10", "fake:2:255", "fake:x",
    "fake:3:", "topologies/big-4node.toml", "nope.toml", "/", "4M", "8M", "64M", "1G", "64G", "128G", "3M", "64MB",
    "0", "-1", "local", "default", "bind=0", "bind=1", "bind=0-7", "interleave=all", "interleave=0-7",
    "preferred=1", "preferred-many=0,1", "weighted-interleave=all", "bind=", "nonsense=1", "FZPU", "ZP,kmalloc-64",
    "-", "Q", "page_storm", "null", "lock_storm", "counter_storm", "slub_churn", "percpu", "shared", "GFP_KERNEL",
    "", " ", "\x00", "é", "\U0001f600", "processes", "threads", "mmap_lock", "per_vma", "speculative",
    "aerosync", "linux", "exact", "batched", "tas", "qspinlock",
]
_SPECIAL_INTS = [0, 1, 2, 3, -1, 7, 8, 10, 11, 15, 16, 64, 100, 101, 255, 256, 1024, 4096, 65536, 2**20, 2**31,
                 2**63 - 1, -(2**63)]

_scalars = st.one_of(
    st.booleans(),
    st.sampled_from(_SPECIAL_INTS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.001, 0.01, 0.5, 1.0, 2.5, 3600.0, 1e300, -0.0]),
    st.sampled_from(_SPECIAL_STRINGS),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.dates(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.sampled_from(["0", "1", "2", "a", "x y", "9999"]), inner, max_size=3)),
    max_leaves=8,
)


# ------------------------------------------------------------------------- TOML writer


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif o < 0x20 or o == 0x7F:
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\u{o:04X}"))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _toml_str(k)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_doc(doc: dict[str, Any]) -> str:
    """TOML text: top-level non-tables first, then one [table] per dict value."""
    lines = [f"{_toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{_toml_key(k)}]")
            lines += [f"{_toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def test_toml_writer_round_trips() -> None:
    doc = {"name": "x", "run": {"workload": "null", "d": 1.5, "n": float("inf"), "s": 'a"\\\n\x01é'},
           "machine": {"cpus": [0, 1], "t": {"0": "bind=0", "x y": [True]}}, "when": dt.date(2020, 1, 2)}
    assert tomllib.loads(toml_doc(doc)) == doc


# --------------------------------------------------------------------------- documents

_BASES = [tomllib.loads(p.read_text()) for p in SCENARIOS]


_PARAMS = {name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in registry().items()}
_plausible = st.one_of(
    st.sampled_from(_SPECIAL_INTS), st.sampled_from(_SPECIAL_STRINGS), st.booleans(),
    st.sampled_from([0.0, 0.05, 0.5, 1.0, 3.0, -1.0, float("nan")]),
    st.lists(st.sampled_from([0, 1, 2, 3, 8, 10, 11, 64, 4096, -1]), max_size=4),
    st.dictionaries(st.sampled_from(["0", "1", "7"]), st.sampled_from(["bind=0", "local", "interleave=all", "x"]),
                    max_size=2),
)


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    """A shipped scenario with a few things changed: mostly one known key set to a
    plausible or random value, so the checks past the first are reached too."""
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in draw(st.sampled_from(_BASES)).items()}
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, 3]))):
        what = draw(st.sampled_from(["set"] * 8 + ["drop", "rare"]))
        section = draw(st.sampled_from(_SECTIONS))
        table = doc.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        run = doc.get("run")
        workload = run.get("workload") if isinstance(run, dict) else None
        workload = workload if isinstance(workload, str) else None
        known = _PARAMS.get(workload, _KEYS["workload"]) if section == "workload" else _KEYS[section]
        if what == "set":
            key = draw(st.sampled_from(known or ("x",)))
            table[key] = draw(st.one_of(_plausible, _plausible, _values))
        elif what == "drop":
            if table:
                del table[draw(st.sampled_from(sorted(table)))]
        else:                                       # the shallow mistakes, now and then
            where = draw(st.sampled_from(["bogus", section, "name", "description", "cpus"]))
            doc[where] = draw(_scalars)
    return toml_doc(doc)


_random_doc = st.dictionaries(
    st.one_of(st.sampled_from(S._TOP_KEYS), st.text(max_size=5)),
    st.one_of(_scalars, st.dictionaries(st.one_of(st.sampled_from(sum(_KEYS.values(), ())), st.text(max_size=5)),
                                        _values, max_size=6)),
    max_size=6,
).map(toml_doc)

_override = st.one_of(
    st.builds(lambda sec, key, val: f"{sec}.{key}={val}",
              st.sampled_from([*_SECTIONS, "name", "bogus"]),
              st.one_of(st.sampled_from(sum(_KEYS.values(), ())), st.text(max_size=4)),
              st.one_of(_values.map(toml_value), st.sampled_from(_SPECIAL_STRINGS), st.text(max_size=8))),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["name", "description", "run", "workload", ""]),
              st.one_of(_scalars.map(toml_value), st.text(max_size=8))),
    st.text(max_size=20),
)


# ------------------------------------------------------------------------------ harness


BOOT_LIMIT = 160 << 20      # arenas up to this size are really made and booted; larger ones stop at creation


@contextlib.contextmanager
def _no_workers(created: list[str]) -> Iterator[None]:
    """Valid input goes as far as it can without starting a worker: a small arena is
    really created, booted and set up for the workload (its name goes to `created`; the
    run's own clean-up removes it), then the first worker's start raises _WouldCreate.
    A larger arena raises _WouldCreate where its segment would be created."""
    real_open = segment._open_untracked

    def open_small(name: str, create: bool, size: int = 0) -> Any:
        if create and size > BOOT_LIMIT:
            raise _WouldCreate()
        shm = real_open(name, create, size)
        if create:
            created.append(name)
        return shm

    def no_start(self: Any) -> None:
        raise _WouldCreate()

    with mock.patch.object(segment, "_open_untracked", open_small), \
            mock.patch.object(mp_context.SpawnProcess, "start", no_start):
        yield


def _mine() -> set[str]:
    return {n for n, pid in find_project_objects() if pid == os.getpid()}


def check_cli(file_text: str | bytes | None, overrides: list[str], extra: dict[str, str] | None = None) -> None:
    """Run `aerosync run FILE --set ...` in this process and check how it ended; `extra`
    files (name: text) are written beside the scenario."""
    with tempfile.TemporaryDirectory(prefix="aerosync-fuzz-") as d:
        root = Path(d)
        shutil.copytree(REPO / "scenarios" / "topologies", root / "topologies")
        for name, text in (extra or {}).items():
            (root / name).write_text(text)
        path = root / "s.toml"
        if isinstance(file_text, bytes):
            path.write_bytes(file_text)
        elif isinstance(file_text, str):
            path.write_text(file_text)
        runs, output = root / "runs", root / "out.json"
        argv = ["run", str(path), "--json", "--runs-dir", str(runs), "--output", str(output)]
        argv += [f"--set={o}" for o in overrides]       # "=": a value may start with "-"
        made: list[ScenarioError] = []
        real_init = ScenarioError.__init__

        def record(self: ScenarioError, *a: Any) -> None:
            real_init(self, *a)
            made.append(self)

        before = _mine()
        err, out = io.StringIO(), io.StringIO()
        rc: int | None = None
        created: list[str] = []
        with _no_workers(created), mock.patch.object(ScenarioError, "__init__", record), \
                contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), \
                contextlib.suppress(_WouldCreate):            # valid: it got as far as the arena
            rc = main(argv)
        text = err.getvalue()
        assert _mine() == before, "a shared-memory object was left behind"
        assert not runs.exists() and not output.exists(), "something was written"
        assert "Traceback" not in text, text
        if rc is None:
            return
        assert rc == 2, f"exit {rc}: {text}"
        assert not created, f"refused only after creating an arena: {text!r}"
        assert made, f"refused without a ScenarioError (no file/key/value/allowed): {text!r}"
        e = made[-1]
        assert text == f"aerosync run: {e}\n", f"not one ScenarioError line: {text!r}"
        assert e.file in (str(path), str(path.resolve()), S.COMMAND_LINE), e.file
        assert isinstance(e.key, str) and e.key.strip(), e.key
        assert isinstance(e.allowed, str) and e.allowed.strip(), e.allowed


# --------------------------------------------------------------------------------- tests


@pytest.mark.timeout(900)         # --soak budget
def test_fuzz_mutated_scenarios(soak: bool) -> None:
    @_budget(soak, ci=250)
    @given(_mutated())
    def fuzz(text: str) -> None:
        check_cli(text, [])

    fuzz()


@pytest.mark.timeout(900)         # --soak budget
def test_fuzz_random_documents(soak: bool) -> None:
    @_budget(soak)
    @given(_random_doc)
    def fuzz(text: str) -> None:
        check_cli(text, [])

    fuzz()


@pytest.mark.timeout(900)         # --soak budget
def test_fuzz_raw_files(soak: bool) -> None:
    @_budget(soak)
    @given(st.one_of(st.text(max_size=200), st.binary(max_size=200), st.none(),
                     st.sampled_from(["[run]\n", "[run", "x = ", "= 1", "[[run]]\nworkload = 1\n", "\ufeff[run]\n"])))
    def fuzz(raw: str | bytes | None) -> None:
        check_cli(raw, [])

    fuzz()


@pytest.mark.timeout(900)         # --soak budget
def test_fuzz_overrides(soak: bool) -> None:
    base = (REPO / "scenarios" / "page-storm.toml").read_text()
    texts = [b.read_text() for b in SCENARIOS[:6]] + [base]

    @_budget(soak, ci=200)
    @given(st.lists(_override, min_size=1, max_size=3), st.sampled_from(texts))
    def fuzz(overrides: list[str], text: str) -> None:
        check_cli(text, overrides)

    fuzz()


_TOPO_BASE = {"nodes": 2, "cpus_per_node": 1, "distance": [[10, 21], [21, 10]], "memory_weight": [1, 1]}


@st.composite
def _topology_scenario(draw: st.DrawFn) -> str:
    """A page storm on a topology file (written beside the scenario as topo.toml) that is
    a small valid one with a few keys changed."""
    topo: dict[str, Any] = dict(_TOPO_BASE)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(["nodes", "cpus_per_node", "cpus", "distance", "memory_weight", "bogus"]))
        if draw(st.booleans()) and key in topo:
            del topo[key]
        else:
            topo[key] = draw(st.one_of(_plausible, _values,
                                       st.lists(st.lists(st.sampled_from([0, 1, 10, 11, 21, 254, 255, -1]),
                                                         max_size=3), max_size=3)))
    cpus = draw(st.sampled_from([None, 1, 2, 4, "all", [0, 1]]))
    machine = {"topology": "topo.toml", "memory": "8M", **({} if cpus is None else {"cpus": cpus})}
    doc = {"run": {"workload": "page_storm", "duration": 1.0}, "machine": machine, "__topology__": toml_doc(topo)}
    return toml_doc({k: v for k, v in doc.items() if k != "__topology__"}) + "#TOPOLOGY\n" + doc["__topology__"]


@pytest.mark.timeout(900)         # --soak budget
def test_fuzz_topology_files(soak: bool) -> None:
    @_budget(soak)
    @given(_topology_scenario())
    def fuzz(both: str) -> None:
        scenario_text, topo_text = both.split("#TOPOLOGY\n")
        check_cli(scenario_text, [], {"topo.toml": topo_text})

    fuzz()


def test_harness_sees_valid_and_refused_input() -> None:
    """The harness can fail: a valid scenario ends at _WouldCreate, a bad one in exit 2,
    and a traceback or a non-ScenarioError refusal is caught."""
    check_cli((REPO / "scenarios" / "page-storm.toml").read_text(), ["machine.cpus=1"])
    check_cli("[run]\nworkload = 3\n", [])
    with pytest.raises(AssertionError, match="without a ScenarioError"), \
            mock.patch.object(S, "load_scenario", side_effect=UsageError("x")):
        check_cli("[run]\n", [])
    with pytest.raises(ZeroDivisionError), mock.patch.object(S, "load_scenario", side_effect=ZeroDivisionError):
        check_cli("[run]\n", [])


# ------------------------------------------------------------------- what fuzzing found


def test_found_an_empty_key_is_named_quoted(capsys: pytest.CaptureFixture[str]) -> None:
    """`"" = false` was refused with an empty key in the message; a key TOML must quote
    is shown quoted."""
    check_cli('"" = false\n', [])
    check_cli('[run]\nworkload = "null"\n"a b" = 1\n', [])
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.toml"
        p.write_text('[run]\nworkload = "null"\n"a b" = 1\n')
        assert main(["run", str(p), "--no-save"]) == 2
    assert f'{p}: run."a b" = 1: known [run] keys' in capsys.readouterr().err


def test_found_slab_max_order_0_boots_like_linux(machine: Callable[..., Any]) -> None:
    """slab.max_order = 0 (slub_max_order=0) could not boot: kmalloc-8k was refused.  As
    Linux's calculate_order(), a cache whose objects no slab of slab_max_order holds
    falls back to get_order(size)."""
    from aerosync.mm.slab.slab_common import cache_info, kmem_cache_lookup

    a = machine(nr_pages=4096, slab=True, slab_max_order=0)
    assert cache_info(a, kmem_cache_lookup(a, "kmalloc-8k"))["order"] == 1
    assert cache_info(a, kmem_cache_lookup(a, "kmalloc-64"))["order"] == 0


@pytest.mark.parametrize(("sets", "key", "allowed"), [
    (["machine.max_page_order=1", 'slab.debug="FZPU"'], "machine.max_page_order",
     "an 8 KiB object (kmalloc-8k) padded to 24576 B by slub_debug = 'FZPU' needs a slab of order 3"),
    (["machine.max_page_order=2"], "workload.orders", "orders 0..2: the machine's MAX_PAGE_ORDER"),
])
def test_found_sections_that_do_not_fit_together(sets: list[str], key: str, allowed: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Keys each valid alone but not together with machine.max_page_order booted a
    machine and then failed (SLUB's kmalloc-8k under slub_debug padding, exit 1 after the
    arena was made) or flooded the output with allocation failures (page_storm asking
    for orders above MAX_PAGE_ORDER).  Both are refused before anything is created."""
    check_cli((REPO / "scenarios" / "page-storm.toml").read_text(), ["machine.cpus=1", *sets])
    assert main(["run", str(REPO / "scenarios" / "page-storm.toml"), "--no-save", "--cpus", "1",
                 *(f"--set={s}" for s in sets)]) == 2
    err = capsys.readouterr().err
    assert f"<command line>: {key} = " in err and allowed in err, err


@pytest.mark.parametrize(("text", "overrides"), [
    ('[run]\nworkload = "null"\n[machine]\ntopology = "\\u0000"\n', []),   # a path with a NUL byte
    ((REPO / "scenarios" / "null.toml").read_text(), ["--"]),              # argparse hands "--" over as []
])
def test_found_by_the_soak(text: str, overrides: list[str]) -> None:
    """Two tracebacks the --soak budget found: a topology path holding a NUL byte
    (ValueError from the file system call), and `--set=--`."""
    check_cli(text, overrides)

