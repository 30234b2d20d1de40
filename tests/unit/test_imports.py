"""The import rules of src/kfgpu, checked by reading every module with ``ast`` (nothing runs).

Rules (STYLE.md, issue 20):

1. **No module uses another module's private name.** A private name is one that starts with
   ``_`` (dunders such as ``__version__`` are public). ``from kfgpu.x import _y`` and
   ``x._y`` (``x`` bound to a kfgpu module) are refused unless ``kfgpu.x._y`` is itself a
   module. A private *module* (``kfgpu/data/_atomic.py``) is internal to kfgpu, not to one
   file: any kfgpu module may import it and its public names, as ``from kfgpu.serving import
   _rest`` or ``from kfgpu.data._atomic import atomic_write_text``. A module may use its own
   private names (a deferred ``from kfgpu.x import _y`` inside ``kfgpu.x``).
2. **No import cycle among kfgpu modules**, counting every import the code can execute:
   module-level imports (run at import time) and imports deferred into a function (run
   later, but an arrow all the same: a deferred import is how an upward arrow such as
   components -> monitoring -> ops -> pipelines -> components hides). Imports under
   ``if TYPE_CHECKING:`` never run and are not counted. ``import kfgpu.a.b`` is an arrow to
   ``kfgpu.a.b`` only (Python runs the parent package's ``__init__`` first, but that is the
   package's own business); ``from kfgpu.a import name`` is an arrow to ``kfgpu.a.name``
   when that is a module, else to ``kfgpu.a``. A failure names each cycle and says which of
   its arrows are deferred.

``python tests/unit/test_imports.py [SRC_DIR]`` prints the findings for any tree.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass(frozen=True)
class Arrow:
    """One import of a kfgpu module by another."""

    source: str
    target: str
    line: int
    deferred: bool


@dataclass
class Findings:
    modules: dict[str, Path]
    arrows: list[Arrow] = field(default_factory=list)
    private: list[str] = field(default_factory=list)


def _modules(src: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((src / "kfgpu").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, deferred: bool, typing_only: bool) -> Iterator[tuple[ast.AST, bool, bool]]:
    """Every node with whether it sits in a function body and whether only type checkers see it."""
    for child in ast.iter_child_nodes(node):
        in_function = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, deferred, typing_only
            for stmt in child.body:
                yield stmt, deferred, True
                yield from _walk(stmt, deferred, True)
            for stmt in child.orelse:
                yield stmt, deferred, typing_only
                yield from _walk(stmt, deferred, typing_only)
            continue
        yield child, deferred, typing_only
        yield from _walk(child, in_function, typing_only)


def _package(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def analyse(src: Path = SRC) -> Findings:
    """Read every module under ``src/kfgpu``; collect its kfgpu arrows and private-name uses."""
    modules = _modules(src)
    found = Findings(modules)
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = f"{path.relative_to(src)}"
        bound: dict[str, str] = {}  # local name -> kfgpu module it names
        for node, deferred, typing_only in _walk(tree, False, False):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != "kfgpu":
                        continue
                    if alias.name in modules and not typing_only:
                        found.arrows.append(Arrow(module, alias.name, node.lineno, deferred))
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound["kfgpu"] = "kfgpu"
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _package(module, path).split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                if origin.split(".")[0] != "kfgpu":
                    continue
                for alias in node.names:
                    full = f"{origin}.{alias.name}"
                    target = full if full in modules else origin
                    if full in modules:
                        bound[alias.asname or alias.name] = full
                    elif _is_private(alias.name) and origin != module:
                        found.private.append(
                            f"{where}:{node.lineno}: from {origin} import {alias.name}"
                        )
                    if target in modules and target != module and not typing_only:
                        found.arrows.append(Arrow(module, target, node.lineno, deferred))
            elif isinstance(node, ast.Attribute) and _is_private(node.attr):
                owner = _dotted(node.value, bound)
                if owner and owner != module and f"{owner}.{node.attr}" not in modules:
                    found.private.append(f"{where}:{node.lineno}: {owner}.{node.attr}")
    return found


def _dotted(node: ast.expr, bound: dict[str, str]) -> str | None:
    """The kfgpu module an expression such as ``tracking`` or ``kfgpu.registry`` names."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _dotted(node.value, bound)
        return f"{owner}.{node.attr}" if owner else None
    return None


def cycles(arrows: list[Arrow]) -> list[list[Arrow]]:
    """One shortest cycle through each strongly connected group of modules (Tarjan, then BFS)."""
    graph: dict[str, dict[str, Arrow]] = {}
    for a in arrows:
        if a.source != a.target:
            # A module-level arrow outranks a deferred one between the same two modules.
            known = graph.setdefault(a.source, {}).get(a.target)
            if known is None or (known.deferred and not a.deferred):
                graph[a.source][a.target] = a
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    out = []
    for group in groups:
        members = set(group)
        start = group[0]
        paths: dict[str, list[Arrow]] = {start: []}
        frontier = [start]
        loop: list[Arrow] | None = None
        while frontier and loop is None:
            nxt = []
            for v in frontier:
                for w, arrow in sorted(graph.get(v, {}).items()):
                    if w == start:
                        loop = [*paths[v], arrow]
                        break
                    if w in members and w not in paths:
                        paths[w] = [*paths[v], arrow]
                        nxt.append(w)
                if loop is not None:
                    break
            frontier = nxt
        assert loop is not None
        out.append(loop)
    return out


def describe(loop: list[Arrow]) -> str:
    steps = " -> ".join(
        f"{a.source} ({'deferred, ' if a.deferred else ''}line {a.line})" for a in loop
    )
    return f"{steps} -> {loop[0].source}"


def test_every_module_is_read() -> None:
    found = analyse()
    # The walk must see the package: a wrong SRC would make both rules pass vacuously.
    assert "kfgpu.cli" in found.modules and len(found.modules) > 80
    assert any(a.deferred for a in found.arrows) and any(not a.deferred for a in found.arrows)


def test_no_module_imports_another_modules_private_name() -> None:
    found = analyse()
    assert found.private == [], (
        f"{len(found.private)} use(s) of another module's private name (make the name public "
        "in its module, or move the code that needs it there):\n" + "\n".join(found.private)
    )


def test_no_import_cycle() -> None:
    loops = cycles(analyse().arrows)
    assert loops == [], f"{len(loops)} import cycle(s) among kfgpu modules:\n" + "\n".join(
        describe(loop) for loop in loops
    )


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    pkg = tmp_path / "kfgpu"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "_inner.py").write_text("X = 1\n")
    (pkg / "a" / "one.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from kfgpu.a import _inner\n"  # a private module: fine
        "from kfgpu.d import _hidden\n"  # a private name: refused
        "if TYPE_CHECKING:\n"
        "    from kfgpu.c import Only\n"  # never runs: no arrow
        "def f():\n"
        "    from kfgpu.b import public\n"  # deferred arrow one -> b
    )
    (pkg / "b.py").write_text(
        "import kfgpu.a.one as one\n"  # module-level arrow b -> one: a cycle with the above
        "def g():\n"
        "    return one._private()\n"  # private attribute of another module: refused
    )
    (pkg / "c.py").write_text("class Only: ...\n")
    (pkg / "d.py").write_text("_hidden = 1\n")
    found = analyse(tmp_path)
    assert found.private == [
        "kfgpu/a/one.py:3: from kfgpu.d import _hidden",
        "kfgpu/b.py:3: kfgpu.a.one._private",
    ]
    (loop,) = cycles(found.arrows)
    assert {(a.source, a.target, a.deferred) for a in loop} == {
        ("kfgpu.a.one", "kfgpu.b", True),
        ("kfgpu.b", "kfgpu.a.one", False),
    }


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else SRC
    result = analyse(src)
    loops = cycles(result.arrows)
    print(f"{len(result.modules)} modules, {len(result.arrows)} kfgpu arrows")
    print(f"{len(result.private)} private-name use(s):")
    print("\n".join(f"  {p}" for p in result.private))
    deferred_only = [loop for loop in loops if any(a.deferred for a in loop)]
    print(f"{len(loops)} cycle(s), {len(deferred_only)} through a deferred import:")
    print("\n".join(f"  {describe(loop)}" for loop in loops))
