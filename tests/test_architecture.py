"""Imports run one way: no import cycle between packages (``synctalk_lib``'s subpackages and top-level modules,
``cuda_ext``, ``nodes``), and ``cuda_ext`` is a leaf that imports nothing but torch, Triton and the standard library
— reached by the library only through ``synctalk_lib.nerf.backends`` (never by its generic top-level name, which
another pack may shadow).

Every import statement counts, also those inside functions (a lazy import is still a dependency), and so do
``importlib.import_module("literal")`` calls. Top-level modules of ``synctalk_lib`` (``types.py``, ``cli.py``, ...)
are nodes of the graph too: a cycle through them counts as well.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
LIBRARY = "synctalk_lib"
LEAF_ALLOWED = {"torch", "triton", "__future__"} | set(sys.stdlib_module_names)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACK_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    return {name for name, _ in _import_statements(path)}


def _import_statements(path: Path) -> set[tuple[str, bool]]:
    """``(absolute name, written relatively)`` of every module ``path`` imports."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[tuple[str, bool]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update((alias.name, False) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add((base, bool(node.level)))
            found.update((f"{base}.{alias.name}", bool(node.level)) for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")):
            found.add((node.args[0].value, False))
    return found


def _unit(name: str) -> str | None:
    """The graph node a module belongs to: a subpackage or top-level module of the library, cuda_ext, nodes."""
    parts = name.split(".")
    if parts[0] == LIBRARY and len(parts) > 1:
        return f"{LIBRARY}.{parts[1]}"
    return parts[0] if parts[0] in ("cuda_ext", "nodes") else None


def _sources() -> list[Path]:
    return [p for top in (LIBRARY, "cuda_ext", "nodes") for p in sorted((PACK_DIR / top).rglob("*.py"))]


def _graph() -> dict[str, dict[str, list[str]]]:
    """unit -> {imported unit: [files that import it]}."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in _sources():
        source = _unit(_module_name(path))
        if source:
            graph.setdefault(source, {})
        for name in _imports(path):
            target = _unit(name)
            if source and target and target != source:
                graph.setdefault(source, {}).setdefault(target, []).append(str(path.relative_to(PACK_DIR)))
    return graph


def _strongly_connected(graph: dict[str, dict[str, list[str]]]) -> list[set[str]]:
    """Components of mutually reachable units (Tarjan's algorithm; recursive, the graph has a few dozen units)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        for target in graph.get(unit, {}):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == unit:
                    break
            components.append(component)

    for unit in sorted(set(graph) | {t for targets in graph.values() for t in targets}):
        if unit not in index:
            visit(unit)
    return components


def test_no_import_cycle():
    graph = _graph()
    assert {"cuda_ext", "nodes", f"{LIBRARY}.nerf", f"{LIBRARY}.types"} <= set(graph)
    problems = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            edges = [f"{a} -> {b} ({', '.join(sorted(set(files)))})" for a in sorted(component)
                     for b, files in sorted(graph.get(a, {}).items()) if b in component]
            problems.append(f"cycle between {sorted(component)}:\n  " + "\n  ".join(edges))
    assert not problems, "\n".join(problems)


def test_cuda_ext_is_a_leaf():
    """Kernels and twins take and return tensors; they import only torch, Triton, the standard library and each
    other (relatively, so the package works under the private name the library loads it with)."""
    foreign = {}
    for path in sorted((PACK_DIR / "cuda_ext").rglob("*.py")):
        # a script run directly (build.py) imports its own package by name; modules import each other relatively
        own = ("cuda_ext",) if path.name == "build.py" else ()
        bad = sorted(name for name, relative in _import_statements(path)
                     if not relative and name.split(".")[0] not in LEAF_ALLOWED | set(own))
        if bad:
            foreign[str(path.relative_to(PACK_DIR))] = bad
    assert not foreign, f"cuda_ext must import only torch, triton, the standard library and itself: {foreign}"


def test_the_library_reaches_cuda_ext_only_through_backends():
    """``cuda_ext`` is a generic name: the library and the nodes load the pack's copy by file location
    (``synctalk_lib.nerf.backends.cuda_ext_module``), never through ``sys.path``."""
    offenders = {}
    for path in _sources():
        if path.is_relative_to(PACK_DIR / "cuda_ext"):
            continue
        named = sorted(name for name in _imports(path) if name.split(".")[0] == "cuda_ext")
        if named:
            offenders[str(path.relative_to(PACK_DIR))] = named
    assert not offenders, offenders


def test_the_checks_see_a_cycle_and_a_foreign_import(tmp_path, monkeypatch):
    """The graph code itself: a made-up pack with a cycle between two packages and a leaf that imports the
    library is caught."""
    for name, text in {"synctalk_lib/__init__.py": "", "synctalk_lib/a/__init__.py": "from synctalk_lib.b import x\n",
                       "synctalk_lib/b/__init__.py": "def f():\n    from synctalk_lib.types import y\n",
                       "synctalk_lib/types.py": "import importlib\nimportlib.import_module('synctalk_lib.a')\n",
                       "cuda_ext/__init__.py": "from synctalk_lib.a import z\n", "nodes/__init__.py": ""}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setitem(globals(), "PACK_DIR", tmp_path)
    cycles = [c for c in _strongly_connected(_graph()) if len(c) > 1]
    assert cycles == [{"synctalk_lib.a", "synctalk_lib.b", "synctalk_lib.types"}]
    assert _imports(tmp_path / "cuda_ext" / "__init__.py") == {"synctalk_lib.a", "synctalk_lib.a.z"}
