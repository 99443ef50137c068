"""The package's shape: its modules import each other without cycles, the library does not
depend on the benchmarks, and the benchmark entry points still start.

The import graph is read from the source with `ast` (nothing is imported): an edge
``a -> b`` for every ``import``/``from ... import`` of a gradsparse module in module ``a``,
at module level or inside a function or class, relative imports resolved, and for
``from package import name`` the submodule ``name`` where there is one, else the package.
Importing ``gradsparse.x.y`` also runs ``gradsparse/x/__init__.py``: that is an edge too
(except to the importer's own enclosing packages, which are already being imported).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import gradsparse

PACKAGE = "gradsparse"
SOURCE = Path(__file__).resolve().parents[1] / "python" / PACKAGE
if not (SOURCE / "__init__.py").is_file():  # tests run against an installed copy
    SOURCE = Path(gradsparse.__file__).resolve().parent


def module_files() -> Dict[str, Path]:
    """Dotted module name -> source file, for every .py file of the package."""
    out = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PACKAGE] + parts)] = path
    return out


def _resolve(importer: str, is_package: bool, level: int, target: Optional[str]) -> str:
    """The absolute name of a (possibly relative) import target."""
    if level == 0:
        return target or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph() -> Dict[str, Set[str]]:
    """Module -> the gradsparse modules it imports (anywhere in its body)."""
    files = module_files()
    known = set(files) | {f"{PACKAGE}._core"}
    graph: Dict[str, Set[str]] = {m: set() for m in known}
    for mod, path in files.items():
        is_package = path.name == "__init__.py"
        targets: List[str] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_package, node.level, node.module)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in known else base)
        ancestors = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        for t in targets:
            if t != PACKAGE and not t.startswith(PACKAGE + "."):
                continue
            parts = t.split(".")
            for i in range(2, len(parts) + 1):  # the packages on the way run their __init__
                name = ".".join(parts[:i])
                if name in known and (name == t or name not in ancestors) and name != mod:
                    graph[mod].add(name)
            if t == PACKAGE and mod != PACKAGE:
                graph[mod].add(PACKAGE)
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as a list of modules (first == last), or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(m: str) -> Optional[List[str]]:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_graph_sees_the_known_imports():
    """The checker itself: it finds imports at module level, inside functions and relative ones."""
    g = import_graph()
    assert "gradsparse._convert" in g["gradsparse.costs"]
    assert "gradsparse.costs" in g["gradsparse.selection"]
    assert "gradsparse.bench.cli" in g["gradsparse.bench"]  # imported inside functions
    assert "gradsparse.bench.atomo" in g["gradsparse.bench_atomo"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_library_does_not_import_the_benchmarks():
    g = import_graph()
    bench = {m for m in g if m == "gradsparse.bench" or m.startswith("gradsparse.bench.")}
    shims = {"gradsparse.bench_atomo"}  # python -m gradsparse.bench_atomo, kept for old commands
    users = sorted(m for m in set(g) - bench - shims if g[m] & bench)
    assert not users, f"library modules importing gradsparse.bench: {users}"


def test_bench_entry_points_start():
    for mod in ("gradsparse.bench", "gradsparse.bench_atomo"):
        res = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{mod}: {res.stderr}"
        assert "--quick" in res.stdout, mod
    assert "--suite" in subprocess.run([sys.executable, "-m", "gradsparse.bench", "--help"],
                                       capture_output=True, text=True, timeout=120).stdout
