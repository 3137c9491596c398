"""The package's import structure read from its source (``ast``; nothing is imported), and
the counts TESTING.md reports for the core / shell split (DESIGN.md, "A composable core").

``python tests/architecture.py`` prints the counts; ``test_architecture.py`` holds the
rules: no import cycle, and no core module importing the shell beyond the edges recorded
in ``REMAINING`` (each with the work that removes it).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dnc_jax"

# The shell (DESIGN.md): input checks and conversion at the entry, placement on the mesh,
# files, run folders, progress, figures, presets, the command line, the estimators' entry.
# Everything else in the package is the core.
SHELL = (
    "dnc_jax",  # the package's face: re-exports
    "dnc_jax._checks",
    "dnc_jax.cli",
    "dnc_jax.data",
    "dnc_jax.deep_rfm_files",
    "dnc_jax.estimators",
    "dnc_jax.experiments",
    "dnc_jax.figures",
    "dnc_jax.options",
    "dnc_jax.presets",
    "dnc_jax.process_data",
    "dnc_jax.records",
    "dnc_jax.run_loop",
    "dnc_jax.sharding",
    "dnc_jax.solvers.choice",
)

# Call-time imports kept for names on their way out (CHANGELOG, "Deprecated"): not edges
# of the structure, and listed here so that no other one hides among them.
DEPRECATED_ALIASES = {
    ("dnc_jax.deep_rfm_model", "dnc_jax.deep_rfm_files"):
        "DeepRFM.save / DeepRFM.load, deprecated for save_deep_rfm / load_deep_rfm",
}


class Import(NamedTuple):
    """One import of a package module by another: where it stands (``module``-level,
    under ``TYPE_CHECKING`` or inside a function, ``call``) and the line."""

    source: str
    target: str
    where: str
    line: int


def module_name(path: Path) -> str:
    """``dnc_jax/a/b.py`` -> ``dnc_jax.a.b``; ``dnc_jax/a/__init__.py`` -> ``dnc_jax.a``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package by name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_shell(name: str) -> bool:
    """Whether module ``name`` belongs to the shell (``SHELL``, a package counting with its
    submodules; the package face ``dnc_jax`` itself only)."""
    return any(name == s or (s != "dnc_jax" and name.startswith(s + ".")) for s in SHELL)


def _resolve(node: ast.AST, known: dict[str, Path]) -> list[str]:
    """The package modules an ``import`` / ``from ... import`` statement loads by name."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
        return []
    if node.module not in known:
        return []
    subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
    return subs if subs else [node.module]


def _imports_of(name: str, node: ast.AST, where: str, known: dict[str, Path]):
    """The imports in ``node``'s children (recursively) of module ``name``; ``where`` the
    place of ``node`` itself."""
    for child in ast.iter_child_nodes(node):
        here = where
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            here = "call"
        elif (isinstance(child, ast.If) and where == "module"
              and "TYPE_CHECKING" in ast.unparse(child.test)):
            here = "type"
        for target in _resolve(child, known):
            if target != name:
                yield Import(name, target, here, child.lineno)
        yield from _imports_of(name, child, here, known)


def imports(known: dict[str, Path] | None = None) -> list[Import]:
    """Every import of a package module by a package module."""
    known = modules() if known is None else known
    return [e for name, path in known.items()
            for e in _imports_of(name, ast.parse(path.read_text()), "module", known)]


def core_to_shell(edges: list[Import]) -> list[Import]:
    """The imports of a shell module by a core module (deprecated aliases aside)."""
    return [e for e in edges if not is_shell(e.source) and is_shell(e.target)
            and (e.source, e.target) not in DEPRECATED_ALIASES]


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), the deprecated
    aliases' call-time imports left out: each an import cycle."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if (e.source, e.target) in DEPRECATED_ALIASES and e.where == "call":
            continue
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


# The public entries that take a kernel's parts as keywords, as a researcher writes them
# (``fit_rfm(X, Y, kernel="laplace", bandwidth=10.0)``), and build one ``Kernel`` from them
# at the entry; every function below them takes the ``Kernel``.
KERNEL_PART_ENTRIES = frozenset({"kernel_matrix", "fit_kernel_ridge", "fit_with_agop", "fit_rfm"})


def _calls(tree: ast.AST, test) -> int:
    return sum(1 for node in ast.walk(tree) if isinstance(node, ast.Call) and test(node))


def counts() -> dict[str, int]:
    """The counts of TESTING.md's "One path through the core" table, over core modules."""
    known = modules()
    edges = imports(known)
    shell_edges = core_to_shell(edges)
    core = {n: p for n, p in known.items() if not is_shell(n)}
    trees = {n: ast.parse(p.read_text()) for n, p in core.items()}
    checks_names = {a.asname or a.name for t in trees.values() for node in ast.walk(t)
                    if isinstance(node, ast.ImportFrom) and node.module == "dnc_jax._checks"
                    for a in node.names}

    def is_rows_check(node: ast.Call) -> bool:
        return (isinstance(node.func, ast.Name) and node.func.id == "isinstance"
                and len(node.args) == 2 and "Rows" in ast.unparse(node.args[1]))

    def is_checks_call(node: ast.Call) -> bool:
        f = node.func
        return ((isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                 and f.value.id == "_checks")
                or (isinstance(f, ast.Name) and f.id in checks_names))

    def takes_kernel_parts(fn: ast.AST) -> bool:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return False
        names = {a.arg for a in fn.args.args + fn.args.kwonlyargs + fn.args.posonlyargs}
        return {"kernel", "bandwidth"} <= names

    parts = [node.name for t in trees.values() for node in ast.walk(t) if takes_kernel_parts(node)]

    def loops_calling_a_step(tree: ast.AST) -> int:
        """``for`` / ``while`` loops whose own body (not a function defined in it) calls
        an RFM step: the RFM loop written out instead of ``rfm_loop``."""
        def calls_step(node: ast.AST) -> bool:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    continue
                if (isinstance(child, ast.Call) and isinstance(child.func, ast.Name)
                        and child.func.id in ("fit_with_agop", "fit_with_agop_checked",
                                              "rfm_step")):
                    return True
                if calls_step(child):
                    return True
            return False

        return sum(1 for node in ast.walk(tree)
                   if isinstance(node, (ast.For, ast.While)) and calls_step(node))

    return {
        "core modules": len(core),
        "loops calling an RFM step themselves (not through rfm_loop)":
            sum(loops_calling_a_step(t) for t in trees.values()),
        "isinstance(..., Rows) in core modules":
            sum(_calls(t, is_rows_check) for t in trees.values()),
        "_checks calls in core modules": sum(_calls(t, is_checks_call) for t in trees.values()),
        "core functions taking kernel and bandwidth separately (not a public entry)":
            sum(1 for name in parts if name not in KERNEL_PART_ENTRIES),
        "public entries taking them as keywords (each builds one Kernel)":
            sum(1 for name in parts if name in KERNEL_PART_ENTRIES),
        "core-to-shell imports": len(shell_edges),
        "core modules importing the shell": len({e.source for e in shell_edges}),
        "import cycles": len(cycles(edges)),
    }


def shell_imports_by_target(edges: list[Import] | None = None) -> dict[str, list[str]]:
    """Per shell module, the core modules that import it."""
    out: dict[str, list[str]] = {}
    for e in core_to_shell(imports() if edges is None else edges):
        out.setdefault(e.target, [])
        if e.source not in out[e.target]:
            out[e.target].append(e.source)
    return out


if __name__ == "__main__":
    for key, value in counts().items():
        print(f"{value:5d}  {key}")
    for target, sources in sorted(shell_imports_by_target().items()):
        print(f"  {target} <- {len(sources)}: {', '.join(sorted(sources))}")
