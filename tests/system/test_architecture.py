"""The layout rules of docs/architecture.md, checked on the source: no import cycles (function-level imports
included), the store below the engine, heavy libraries only inside functions."""

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


def test_store_is_below_the_engine():
    graph = _graph()
    offenders = [(mod, dep) for mod, deps in graph.items() if mod.startswith("chainforget.store")
                 for dep in deps if dep.startswith(("chainforget.engine", "chainforget.benchmark",
                                                     "chainforget.commands", "chainforget.report"))]
    assert offenders == []


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
