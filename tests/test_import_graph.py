"""The package's modules import each other one way: no cycle in the graph of ``from .x import`` statements.

Every module of inclr_fastreid is imported (each must import on its own), and the graph is read from the AST of
each file: every ``from ... import`` that names a module of the package, at the top level, in a function or under
``if TYPE_CHECKING`` alike, is an edge. A plain ``import inclr_fastreid`` is not one: it is the root package,
which every module's import runs first anyway (compat re-runs it in spawned processes).
"""
import ast
import importlib
import os
from typing import Dict, List, Set

from tests.helpers import ROOT

PACKAGE = "inclr_fastreid"


def package_modules() -> Dict[str, str]:
    """Dotted module name -> file, for every .py file of the package (a package is its __init__.py)."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                modules[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return modules


def imported_modules(name: str, path: str, modules: Dict[str, str]) -> Set[str]:
    """The package's modules that ``from ... import`` statements anywhere in the file name: ``from .x import y``
    is an edge to ``.x.y`` when that is a module, else to ``.x``."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = name.split(".") if path.endswith("__init__.py") else name.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target != PACKAGE and not target.startswith(PACKAGE + "."):
            continue
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            found.add(sub if sub in modules else target)
    found.discard(name)
    return found


def import_graph() -> Dict[str, Set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan), each as its sorted members: every
    module of one imports, directly or not, every other."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def one_cycle(graph: Dict[str, Set[str]], members: List[str]) -> List[str]:
    """One import path a -> ... -> a inside a strongly connected component (depth first from its first member)."""
    start, inside = members[0], set(members)
    path, seen = [start], {start}
    while True:
        here = path[-1]
        if start in graph[here] and len(path) > 1:
            return path + [start]
        nxt = sorted((w for w in graph[here] & inside if w not in seen), key=lambda w: (start not in graph[w], w))
        if not nxt:  # dead end inside the component: back up
            path.pop()
            continue
        path.append(nxt[0])
        seen.add(nxt[0])


def describe(graph: Dict[str, Set[str]], found: List[List[str]]) -> str:
    return "\n".join(f"{' -> '.join(one_cycle(graph, c))}  (all of: {', '.join(c)})" for c in found)


def test_every_module_of_the_package_imports():
    for name in sorted(package_modules()):
        importlib.import_module(name)


def test_the_cycle_detector_finds_a_loop_and_only_a_loop():
    graph = {"a": {"b", "d"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": set(), "f": {"g"}, "g": {"f", "e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["f", "g"]]
    assert one_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"] and one_cycle(graph, ["f", "g"]) == ["f", "g", "f"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    modules = package_modules()
    edges = imported_modules(f"{PACKAGE}.pseudo_labels.generate", modules[f"{PACKAGE}.pseudo_labels.generate"], modules)
    assert f"{PACKAGE}.pseudo_labels.params" in edges and f"{PACKAGE}.errors" in edges  # from .params / from ..errors


def test_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + describe(graph, found)
