"""Imports flow downward only (aerosync/__init__.py): arch < arena < sync (= lib) < mm <
workers < coordinator/cli/bench.  A module importing a higher layer fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RANK = {"aerosync.params": 0, "aerosync.errors": 0, "aerosync.arch": 1, "aerosync.arena": 2,
        "aerosync.sync": 3, "aerosync.lib": 3, "aerosync.mm": 4, "aerosync.scenario": 1, "workers": 5,
        "aerosync.coordinator": 6, "aerosync.bench": 7, "aerosync.report": 7, "aerosync.profile": 7,
        "aerosync.top": 7, "aerosync.doctor": 7, "aerosync.flamegraph": 0, "aerosync.pyspy": 0,
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
