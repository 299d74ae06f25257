"""Imports flow downward only (aerosync/__init__.py): arch < arena < sync (= lib) < mm <
workers < coordinator/cli/bench.  A module importing a higher layer fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RANK = {"aerosync.params": 0, "aerosync.errors": 0, "aerosync.arch": 1, "aerosync.arena": 2,
        "aerosync.sync": 3, "aerosync.lib": 3, "aerosync.mm": 4, "aerosync.scenario": 1, "workers": 5,
        "aerosync.coordinator": 6, "aerosync.bench": 7, "aerosync.report": 7, "aerosync.profile": 7,
        "aerosync.top": 7, "aerosync.doctor": 7, "aerosync.hotplug": 6, "aerosync.flamegraph": 0, "aerosync.pyspy": 0,
        "aerosync.procfs": 5, "aerosync.fidelity": 5, "aerosync.cli": 8}


def _rank(module: str) -> int | None:
    best = None
    for prefix, r in RANK.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), r)
    return None if best is None else best[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_imports_flow_downward() -> None:
    bad = []
    for path in [*ROOT.glob("aerosync/**/*.py"), *ROOT.glob("workers/**/*.py")]:
        me = _module_name(path)
        my_rank = _rank(me)
        if my_rank is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                r = _rank(n)
                if r is not None and r > my_rank:
                    bad.append(f"{me} (layer {my_rank}) imports {n} (layer {r})")
    assert bad == []


# ------------------------------------------------------------------------ import circles


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in [*ROOT.glob("aerosync/**/*.py"), *ROOT.glob("workers/**/*.py")]}


def _imported(me: str, path: Path, node: ast.AST, mods: dict[str, Path]) -> list[str]:
    """The project modules one import statement (anywhere: module level or inside a
    function) loads: `from pkg import mod` names pkg.mod, relative imports are resolved,
    and importlib.import_module("literal") counts too."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            pkg = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join([*pkg, base] if base else pkg)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
          and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        names = [node.args[0].value]
    out = []
    for n in names:
        while n and n not in mods:         # aerosync.mm.pmm.buddy.free_list -> the module that defines it
            n = n.rpartition(".")[0]
        if n and n != me:
            out.append(n)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for me, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            graph[me].update(_imported(me, path, node, mods))
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    """No module of aerosync/ or workers/ reaches itself through imports, counting the
    ones inside functions (a lazy import still ties the two layers together)."""
    assert import_circles(import_graph()) == []


def test_import_circle_detector_finds_circles() -> None:
    """The detector sees a circle through a lazy (function-level) import, and the
    report -> rundir -> plots -> samples chain stays a chain."""
    graph = import_graph()
    assert "aerosync.report.plots" in graph["aerosync.report.rundir"]       # rundir writes the plots
    assert "aerosync.report.rundir" not in graph["aerosync.report.plots"]
    looped = {k: set(v) for k, v in graph.items()}
    looped["aerosync.report.samples"].add("aerosync.report.rundir")
    assert ["aerosync.report.plots", "aerosync.report.rundir", "aerosync.report.samples"] in import_circles(looped)
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
