"""The layout rules of docs/architecture.md, checked on the source: no import cycles (function-level imports
included), every room imports only the rooms below it (the table of floors), heavy libraries only inside
functions."""

from __future__ import annotations

import ast
from pathlib import Path

import chainforget

PACKAGE = Path(chainforget.__file__).resolve().parent
HEAVY = {"torch", "transformers", "avalanche", "peft", "accelerate", "matplotlib", "ray", "datasets"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported chainforget module, at module top level?) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            found.append((name, id(node) in top))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for name, _top in _imports(path):
            if name in files and name != mod:
                graph[mod].add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            # a package __init__ re-exporting its own modules is not a cycle between rooms
            members = [m for m in comp if not any(m != o and o.startswith(m + ".") for o in comp)]
            if len(members) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_a_module_that_imports_it_back():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_is_not_vacuous():
    assert _cycles({"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}) == [["a.x", "a.y"]]


# The floors of docs/architecture.md: what each room may import (function-level imports included). A room that is
# not listed fails the test, so a new room gets its floor here.
ALLOWED = {
    "errors": set(),
    "plugins": {"errors"},
    "testing": {"errors"},
    "config": {"errors", "plugins"},
    "tasks": {"errors", "plugins", "config"},
    "store": {"errors", "testing", "config"},
    "metrics": {"errors", "plugins", "config", "store"},
    "engine": {"errors", "plugins", "config", "tasks"},
    "strategies": {"errors", "plugins", "config", "tasks", "engine"},
    "benchmark": {"errors", "plugins", "testing", "config", "tasks", "store", "metrics", "engine", "strategies"},
    "launchers": {"errors", "plugins", "config", "engine", "benchmark"},
    "report": {"errors", "plugins", "config", "store", "metrics"},
    "commands": {"errors", "plugins", "config", "tasks", "store", "metrics", "engine", "benchmark", "report"},
    "cli": {"errors", "plugins", "config", "store", "engine", "benchmark", "report", "commands"},
    "api": {"errors", "plugins", "config", "store", "metrics", "benchmark", "report", "commands"},
    "__main__": {"cli"},
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _upward(graph: dict[str, set[str]], allowed: dict[str, set[str]]) -> list[str]:
    """Every import of a room outside its floor, as 'module -> module'."""
    out = []
    for mod, deps in sorted(graph.items()):
        room = _room(mod)
        for dep in sorted(deps):
            target = _room(dep)
            if room and target and target != room and target not in allowed.get(room, set()):
                out.append(f"{mod} -> {dep}")
    return out


def test_every_room_imports_only_the_rooms_below_it():
    graph = _graph()
    rooms = {_room(m) for m in graph} - {""}
    assert rooms <= set(ALLOWED), f"rooms without a floor in ALLOWED: {sorted(rooms - set(ALLOWED))}"
    assert _upward(graph, ALLOWED) == []


def test_the_floors_are_floors():
    """The table is a strict order (no two rooms may import each other, directly or around a loop), and the check
    catches an upward import."""
    assert _cycles({room: set(deps) for room, deps in ALLOWED.items()}) == []
    assert _upward({"chainforget.store.x": {"chainforget.engine.y"}}, ALLOWED) == [
        "chainforget.store.x -> chainforget.engine.y"]


def test_heavy_libraries_are_imported_inside_functions_only():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        mod = _module_name(path)
        if mod.startswith("chainforget.engine") or mod.startswith("chainforget.strategies"):
            continue  # the engine and strategies are torch code; the CLI reaches them only lazily
        for name, top in _imports(path):
            if top and name.split(".")[0] in HEAVY:
                offenders.append(f"{mod}: {name}")
    assert offenders == []


def test_report_formats_and_holds_no_resampling_or_random_numbers():
    """report/ formats what metrics/ computes: no random generator, resampling, permutation or seed-combining
    statistics of its own (they live in metrics.inference / metrics.estimates, shared by every table)."""
    banned = ("numpy.random", "np.random", "default_rng", "import random", "from random", "bootstrap(",
              "permutation_pvalue", "combine_seeds", "percentile_ci", ".permuted(", ".integers(")
    offenders = []
    for path in sorted((PACKAGE / "report").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.name}: {word}" for word in banned if word in text]
    assert offenders == []


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chainforget"):
                offenders += [f"{_module_name(path)}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []
