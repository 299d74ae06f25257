"""Shared fixtures: every arena and process a test makes is cleaned up, even on failure.

Names are unique per test process (aerosync_<pid>_<random>), so pytest-xdist workers
never collide.  A session-level sweep removes what a crashed test might have left.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from aerosync.arena import layout as L
from aerosync.arena.cleanup import cleanup_stale, find_project_objects
from aerosync.arena.segment import Arena


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="run long stress soaks (default: short CI-sized versions)")


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak"))


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale() -> Iterator[None]:
    cleanup_stale()
    yield
    cleanup_stale()


@pytest.fixture(autouse=True)
def _no_wait_hook_left() -> Iterator[None]:
    """A VM handle installs its CPU's IPI poll as the process's lock-wait hook until it
    leaves (mm/vm/vm.py make_current); a test that drops one without leave() must not
    hand that hook -- bound to an arena closed at its teardown -- to the next test's
    lock waits in this worker ("operation forbidden on released memoryview")."""
    from aerosync.sync import waithook

    yield
    waithook.set_wait_hook(None)


def _kill_tree() -> None:
    me = psutil.Process()
    kids = [p for p in me.children(recursive=True) if "resource_tracker" not in " ".join(_cmd(p))]
    for p in kids:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(kids, timeout=5)


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.fixture(autouse=True)
def _no_stray_children() -> Iterator[None]:
    yield
    _kill_tree()


@pytest.fixture
def make_arena() -> Iterator[Callable[..., Arena]]:
    """Factory of small arenas owned by the test; closed and unlinked at teardown."""
    made: list[Arena] = []

    def factory(nr_cpus: int = 2, nr_pages: int = 16, extra: list[L.SectionSpec] | None = None,
                **config: Any) -> Arena:
        cfg = {"nr_cpus": nr_cpus, "nr_pages": nr_pages, "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
               **config}
        a = Arena.create(cfg, L.base_sections(nr_cpus, nr_pages) + list(extra or []))
        made.append(a)
        return a

    yield factory
    for a in made:
        try:
            a.close()
        finally:
            a.unlink()


_KERNEL_PROFILE: list[str | None] = [None]     # set by the both_profiles fixture


@pytest.fixture(params=["aerosync", "linux"])
def both_profiles(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per kernel profile: machines it makes (new_machine, machine, sa)
    default to that profile (a test's own kernel_profile= still wins).  Race and checker
    modules use it as `pytestmark = pytest.mark.usefixtures("both_profiles")`."""
    _KERNEL_PROFILE[0] = request.param
    try:
        yield request.param
    finally:
        _KERNEL_PROFILE[0] = None


def new_machine(nr_pages: int = 4096, nr_cpus: int = 2, nr_nodes: int = 1, weights: list[int] | None = None,
                distance: list[list[int]] | None = None, extra: list[L.SectionSpec] | None = None,
                slab: bool = False, **cfg: Any) -> Arena:
    """A booted machine (mm, and SLUB with slab=True) on a fake `nr_nodes` topology; the
    caller closes and unlinks it (the `machine` fixture does)."""
    from aerosync.mm.boot import create_machine
    from aerosync.mm.pmm.init import single_node_sim

    config = {"nr_cpus": nr_cpus, "nr_pages": nr_pages, "sim": single_node_sim(nr_cpus, nr_nodes, weights, distance),
              "test": os.environ.get("PYTEST_CURRENT_TEST", ""), **cfg}
    if _KERNEL_PROFILE[0] is not None and "kernel_profile" not in cfg:
        config["kernel_profile"] = _KERNEL_PROFILE[0]
    return create_machine(config, extra or (), slab=slab)


@pytest.fixture
def machine() -> Iterator[Callable[..., Arena]]:
    """Factory of booted machines (new_machine's arguments), closed and unlinked at teardown."""
    import gc

    made: list[Arena] = []

    def factory(*args: Any, **kw: Any) -> Arena:
        a = new_machine(*args, **kw)
        made.append(a)
        return a

    yield factory
    gc.collect()
    for a in made:
        try:
            a.close()
        finally:
            a.unlink()


@pytest.fixture
def rm(machine: Callable[..., Arena]) -> Iterator[Callable[..., Any]]:
    """Factory of reclaim machines: (arena, VM of CPU 0 running a task) with `[reclaim]`
    lru / swap_size (swap_mb) / other reclaim keys; every swap file is switched off and
    gone at teardown."""
    from aerosync.mm.reclaim import layout as R
    from aerosync.mm.reclaim.swapfile import swapoff
    from aerosync.mm.vm.vm import VM

    made: list[Arena] = []

    def make(nr_pages: int = 2048, lru: str = "mglru", swap_mb: int = 8, machine_kw: dict | None = None,
             **rec: object) -> tuple[Arena, Any]:
        kw = {"vm": {}, **(machine_kw or {})}
        a = machine(nr_pages=nr_pages, nr_cpus=2, slab=True,
                    reclaim={"lru": lru, "swap_size": swap_mb << 20, **rec}, **kw)
        made.append(a)
        cpu = VM(a, 0)
        cpu.switch_to(cpu.task_create("test"))
        return a, cpu

    yield make
    for a in made:
        swapoff(a)
        assert not os.path.exists(R.default_swap_path(a))


@pytest.fixture
def sa(machine: Callable[..., Arena]) -> Callable[..., Arena]:
    """Factory of booted machines with SLUB (new_machine's arguments, slab=True)."""

    def factory(**kw: Any) -> Arena:
        return machine(slab=True, **kw)

    return factory


@pytest.fixture
def spawn() -> Iterator[Callable[..., mp.process.BaseProcess]]:
    """Start helper processes with the spawn method; all are killed at teardown."""
    ctx = mp.get_context("spawn")
    procs: list[mp.process.BaseProcess] = []

    def start(target: Callable[..., Any], *args: Any) -> mp.process.BaseProcess:
        p = ctx.Process(target=target, args=args, daemon=True)
        p.start()
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.exitcode is None:
            p.kill()
        p.join(5)


def my_objects() -> list[str]:
    """AeroSync objects in /dev/shm owned by this test process."""
    return [n for n, pid in find_project_objects() if pid == os.getpid()]


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
