"""The core / shell split holds (DESIGN.md, "A composable core"): no import cycle, and no
core module imports the shell but through the edges recorded here, each with the work
that removes it. A new edge fails; so does a recorded one that is gone (strike it, and
TESTING.md's count with it)."""

from __future__ import annotations

import architecture

# Core modules that still convert or check their inputs themselves (the entry-once work):
# ``_checks`` (input checks), ``sharding`` (placing rows on the mesh: ``as_rows``,
# ``check_mesh``, ``replicate``), ``solvers.choice`` (the memory model and solver choice).
ENTRY_WORK = "the public entry converts and checks once; the core takes Rows and trusts them"
REMAINING = {
    ("dnc_jax.collapse", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.collapse", "dnc_jax.sharding"): ENTRY_WORK,
    ("dnc_jax.collapse_toolkit", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.deep_rfm_model", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.deep_rfm_model", "dnc_jax.sharding"): ENTRY_WORK,
    ("dnc_jax.gradient_outer_product", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.gradient_outer_product", "dnc_jax.sharding"): ENTRY_WORK,
    ("dnc_jax.gram", "dnc_jax.sharding"): ENTRY_WORK,
    ("dnc_jax.kernels.value", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.nets.layer_agop", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.nets.train", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.predictor", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.predictor", "dnc_jax.sharding"): ENTRY_WORK,
    ("dnc_jax.rfm", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.rfm", "dnc_jax.sharding"): ENTRY_WORK,
    ("dnc_jax.solvers", "dnc_jax.solvers.choice"):
        "the solver package's face re-exports the choice: it moves with fit_kernel_ridge",
    ("dnc_jax.solvers.core", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.solvers.ridge", "dnc_jax._checks"): ENTRY_WORK,
    ("dnc_jax.solvers.ridge", "dnc_jax.sharding"): ENTRY_WORK,
    ("dnc_jax.solvers.ridge", "dnc_jax.solvers.choice"):
        "fit_kernel_ridge chooses its solver: an entry point living in the core's module",
}


def test_the_import_graph_has_no_cycle():
    """No group of modules imports each other, at import, under ``TYPE_CHECKING`` or at
    call time (the deprecated aliases' call-time imports aside, listed in
    ``architecture.DEPRECATED_ALIASES``)."""
    assert architecture.cycles(architecture.imports()) == []


def test_the_core_imports_the_shell_only_where_recorded():
    """Every core-to-shell import is one of ``REMAINING``, and every recorded one is still
    there: the structure cannot grow a new dependency of the maths on the shell unseen."""
    edges = {(e.source, e.target) for e in architecture.core_to_shell(architecture.imports())}
    assert edges - set(REMAINING) == set(), "a core module imports the shell (DESIGN.md)"
    assert set(REMAINING) - edges == set(), "gone: strike it from REMAINING and TESTING.md"


def test_the_reader_sees_each_kind_of_import(tmp_path, monkeypatch):
    """The reader finds module-level, ``TYPE_CHECKING`` and call-time imports, resolves
    ``from package import module`` to the module, and finds a cycle through any of them."""
    package = tmp_path / "dnc_jax"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("from dnc_jax.core import f\n")
    (package / "core.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dnc_jax import data\n"
        "def f():\n    from dnc_jax.data import g\n")
    monkeypatch.setattr(architecture, "ROOT", tmp_path)
    monkeypatch.setattr(architecture, "PACKAGE", package)
    edges = architecture.imports()
    assert sorted((e.source, e.target, e.where) for e in edges) == [
        ("dnc_jax.core", "dnc_jax.data", "call"),
        ("dnc_jax.core", "dnc_jax.data", "type"),
        ("dnc_jax.data", "dnc_jax.core", "module"),
    ]
    assert architecture.cycles(edges) == [["dnc_jax.core", "dnc_jax.data"]]
    assert [(e.source, e.target) for e in architecture.core_to_shell(edges)] == [
        ("dnc_jax.core", "dnc_jax.data")] * 2


def test_below_the_public_entries_every_function_takes_a_kernel_value():
    """Only the public entries in ``architecture.KERNEL_PART_ENTRIES`` take a kernel's name
    and bandwidth apart (they build one ``Kernel``); no core function below them does."""
    counts = architecture.counts()
    assert counts["core functions taking kernel and bandwidth separately (not a public entry)"] == 0
    assert counts["public entries taking them as keywords (each builds one Kernel)"] == len(
        architecture.KERNEL_PART_ENTRIES)
