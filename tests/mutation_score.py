"""Mutation score of the core modules, with warm JAX processes.

    python tests/mutation_score.py                        # all five modules, 2 workers
    python tests/mutation_score.py --modules kernels agop --workers 1
    python tests/mutation_score.py --rerun survivors --budget 120 --first TEST...
    python tests/mutation_score.py --list-survivors       # what is left to kill or explain

(TESTING.md has the procedure and the recorded result.)

Why not mutmut: each mutant there is a fresh process that imports JAX and compiles every
function its tests call (20-60 s here), and mutmut 3's forking runner forks a process whose
XLA threads already run. This runner keeps the expensive part warm:

1. **Mutants** (``mutants``): mutmut's core operators on the AST of each module --
   arithmetic ``+ - * / // % **`` and ``& |`` swapped, comparisons flipped at their
   boundary (``<`` to ``<=``, ``==`` to ``!=``, ``is``/``in`` negated), ``and``/``or``
   swapped, ``not`` and unary minus removed, numbers ``n -> n + 1``, ``True``/``False``
   swapped. Docstrings, annotations, strings and the messages of ``raise`` are not mutated.
2. **Which tests run a line** (``coverage_map``): the suite once under coverage.py with one
   context per test and JAX's caches cleared before every test, so that each test traces
   (and so executes) every jitted line it uses. Durations come from the same run; an
   edited test file is mapped again.
3. **Each mutant** (``_worker``): written into the worker's private copy of the repository;
   the worker drops ``dnc_jax`` and the test modules from ``sys.modules``, clears JAX's
   caches and runs ``pytest -x`` in-process on the tests that execute the mutated line,
   up to ``--budget`` seconds of them (their durations in step 2): the fastest case of
   each test function, fastest function first, then the remaining cases. A line that runs
   only at import (a constant, a default, a decorator) gets the defaults test, the tests of
   its module's own test file and those of the functions that use the name it assigns. A
   persistent compilation cache makes the unchanged programs cheap to recompile (its key
   is the program, so a mutated program compiles afresh). A failing test kills the mutant;
   so does a run over its time limit ("timeout"); a mutant no test executes is "no tests".
4. Results are appended to ``OUT/<module>.jsonl`` as they come (a rerun resumes), and
   ``tests/mutation_equivalent.json`` lists the surviving mutants that cannot change a
   result, each with the reason; they leave the denominator:
   ``score = killed / (mutants - equivalent)``.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
MODULES = {
    "kernels": [
        "dnc_jax/kernels/distances.py",
        "dnc_jax/kernels/families.py",
        "dnc_jax/kernels/arccos.py",
        "dnc_jax/kernels/value.py",
    ],
    "agop": ["dnc_jax/gradient_outer_product.py"],
    "collapse": ["dnc_jax/collapse.py"],
    "solvers": [
        "dnc_jax/solvers/choice.py",
        "dnc_jax/solvers/ridge.py",
        "dnc_jax/solvers/core.py",
        "dnc_jax/solvers/cholesky.py",
        "dnc_jax/solvers/cg.py",
        "dnc_jax/solvers/nystrom.py",
    ],
    "deep_rfm": ["dnc_jax/deep_rfm_model.py", "dnc_jax/deep_rfm_files.py"],
}
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.json"
# Left out of the map: the notebook test (its code runs in a kernel process) and the
# backbones (they use none of the five modules, and are slow).
EXCLUDE = ["tests/test_notebooks.py", "tests/nets/test_backbones.py"]

# Code that only runs in child processes (coverage sees none of it): the tests that run it.
CHILD_PROCESS_TESTS = {
    ("dnc_jax/deep_rfm_model.py", "host_rows"): [
        "tests/test_distributed.py::test_two_processes_compute_the_same_deep_rfm_layer"],
}

# Tests that read default values from signatures and dataclass fields (they run no line
# of the function): added for every mutant of a line that runs only at import (a default
# argument, a class attribute, a module-level constant), with the tests of the module's own
# test file (``mirror_test_file``), where its declarations (a registry, a flag) are checked.
DEFAULTS_TESTS = ["tests/test_rfm.py::test_defaults_are_the_papers_and_agree_across_entry_points"]

BINOPS = {
    ast.Add: (ast.Sub, "+", "-"),
    ast.Sub: (ast.Add, "-", "+"),
    ast.Mult: (ast.Div, "*", "/"),
    ast.Div: (ast.Mult, "/", "*"),
    ast.FloorDiv: (ast.Div, "//", "/"),
    ast.Mod: (ast.Div, "%", "/"),
    ast.Pow: (ast.Mult, "**", "*"),
    ast.BitAnd: (ast.BitOr, "&", "|"),
    ast.BitOr: (ast.BitAnd, "|", "&"),
}
COMPARES = {
    ast.Lt: (ast.LtE, "<", "<="),
    ast.LtE: (ast.Lt, "<=", "<"),
    ast.Gt: (ast.GtE, ">", ">="),
    ast.GtE: (ast.Gt, ">=", ">"),
    ast.Eq: (ast.NotEq, "==", "!="),
    ast.NotEq: (ast.Eq, "!=", "=="),
    ast.Is: (ast.IsNot, "is", "is not"),
    ast.IsNot: (ast.Is, "is not", "is"),
    ast.In: (ast.NotIn, "in", "not in"),
    ast.NotIn: (ast.In, "not in", "in"),
}


class Mutant(NamedTuple):
    """One mutation: ``key`` is stable under edits elsewhere in the file."""

    path: str  # relative to the repository root
    index: int  # position in the file's site order
    key: str
    line: int
    end_line: int
    function: str  # qualified name of the enclosing function ("" at module level)
    names: tuple[str, ...]  # for a module-level constant: the name it is assigned to


def _is_type_union(node: ast.AST) -> bool:
    """``X | None`` or ``Literal[...] | ...`` outside an annotation (a type alias)."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
        return False
    return any((isinstance(s, ast.Constant) and s.value is None)
               or (isinstance(s, ast.Subscript) and getattr(s.value, "id", "") == "Literal")
               for s in (node.left, node.right))


def _sites(tree: ast.AST):
    """Yield ``(node, slot, new, description, function, names)`` for every mutation of
    ``tree``, in a fixed order (so that a deep copy yields the same sequence)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            args += [a for a in (node.args.vararg, node.args.kwarg) if a]
            skip.update(id(n) for a in args if a.annotation for n in ast.walk(a.annotation))
            if node.returns is not None:
                skip.update(id(n) for n in ast.walk(node.returns))
        elif isinstance(node, ast.AnnAssign):
            skip.update(id(n) for n in ast.walk(node.annotation))
        elif isinstance(node, (ast.Raise, ast.JoinedStr)) or _is_type_union(node):
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.add(id(body[0].value))  # docstring

    def visit(node, function, names):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            function = f"{function}.{node.name}" if function else node.name
        if isinstance(node, ast.Assign) and not function:  # ``A = ...`` or ``A, B = ...``
            names = tuple(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))
        if id(node) not in skip:
            if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINOPS:
                new, a, b = BINOPS[type(node.op)]
                yield node, "op", new, f"{a} -> {b}", function, names
            elif isinstance(node, ast.Compare):
                for j, op in enumerate(node.ops):
                    new, a, b = COMPARES[type(op)]
                    yield node, ("ops", j), new, f"{a} -> {b}", function, names
            elif isinstance(node, ast.BoolOp):
                new, a, b = (ast.Or, "and", "or") if isinstance(node.op, ast.And) else (ast.And, "or", "and")
                yield node, "op", new, f"{a} -> {b}", function, names
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
                sign = "not " if isinstance(node.op, ast.Not) else "-"
                yield node, "unwrap", None, f"drop {sign.strip()}", function, names
            elif isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
                v = node.value
                new = (not v) if isinstance(v, bool) else v + 1
                yield node, "value", new, f"{v!r} -> {new!r}", function, names
        for child in ast.iter_child_nodes(node):
            yield from visit(child, function, names)

    yield from visit(tree, "", ())


class _Unwrap(ast.NodeTransformer):
    def __init__(self, target):
        self.target = target

    def visit_UnaryOp(self, node):
        if node is self.target:
            return self.generic_visit(node).operand
        return self.generic_visit(node)


def mutants(path: str) -> list[Mutant]:
    """The mutants of one source file (relative path)."""
    source = (ROOT / path).read_text()
    tree = ast.parse(source)
    seen: dict[str, int] = {}
    out = []
    for i, (node, _, _, description, function, names) in enumerate(_sites(tree)):
        segment = ast.get_source_segment(source, node) or ""
        base = f"{path}:{function}:{description}:{' '.join(segment.split())}"
        seen[base] = seen.get(base, 0) + 1
        key = f"{base}#{seen[base]}"
        out.append(Mutant(path, i, key, node.lineno, node.end_lineno, function, names))
    return out


def mutated_source(path: str, index: int) -> str:
    """The source of ``path`` with mutation ``index`` applied (via ``ast.unparse``)."""
    tree = ast.parse((ROOT / path).read_text())
    for i, (node, slot, new, *_) in enumerate(_sites(tree)):
        if i != index:
            continue
        if slot == "op":
            node.op = new()
        elif slot == "value":
            node.value = new
        elif slot == "unwrap":
            tree = _Unwrap(node).visit(tree)
        else:
            node.ops[slot[1]] = new()
        return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
    raise IndexError(f"{path} has no mutation {index}")


# ---------------------------------------------------------------------------------------
# Step 2: which tests execute each line.


def _map_main(out: str, tests: list[str]) -> int:
    """Child process of ``coverage_map``: the tests under coverage, one context each."""
    import coverage

    files = [str(ROOT / p) for paths in MODULES.values() for p in paths]
    cov = coverage.Coverage(data_file=None, include=files, branch=False)
    cov.start()
    import jax
    import pytest

    durations: dict[str, float] = {}

    class Contexts:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item, nextitem):
            jax.clear_caches()
            cov.switch_context(item.nodeid)
            start = time.perf_counter()
            yield
            durations[item.nodeid] = time.perf_counter() - start
            cov.switch_context("")

    code = pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests], plugins=[Contexts()])
    cov.stop()
    data = cov.get_data()
    lines = {
        str(Path(f).relative_to(ROOT)): {
            str(k): sorted(c for c in v if c) for k, v in data.contexts_by_lineno(f).items()
        }
        for f in data.measured_files()
    }
    Path(out).write_text(json.dumps({"durations": durations, "lines": lines}))
    return int(code)


def coverage_map(out_dir: Path, workers: int) -> dict:
    """The coverage map ``{"durations": {test: s}, "lines": {path: {line: [tests]}}}``,
    saved in ``OUT/coverage_map.json``; tests not in it yet (new ones) are mapped and added."""
    target = out_dir / "coverage_map.json"
    merged = json.loads(target.read_text()) if target.exists() else {"durations": {}, "lines": {}}
    # a test file edited since it was mapped is mapped again, all of it
    hashes = {str(f.relative_to(ROOT)): hashlib.sha1(f.read_bytes()).hexdigest()
              for f in sorted((ROOT / "tests").rglob("test_*.py"))}
    stale = {f for f, h in hashes.items() if merged.get("files", {}).get(f) != h}
    if stale:
        merged["durations"] = {t: v for t, v in merged["durations"].items()
                               if t.split("::")[0] not in stale}
        for lines in merged["lines"].values():
            for line, tests in lines.items():
                lines[line] = [t for t in tests if t.split("::")[0] not in stale]
    merged["files"] = hashes
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", "tests", *[f"--ignore={p}" for p in EXCLUDE]],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    tests = [t for t in listed if "::" in t and t not in merged["durations"]]
    if not tests:
        _save(target, merged)
        return merged
    by_file: dict[str, list[str]] = {}
    for t in tests:
        by_file.setdefault(t.split("::")[0], []).append(t)
    files = sorted(by_file)
    # whole files where every test is new (shorter command lines), else the test ids
    parts = [[x for f in files[i::workers] for x in (
        [f] if len(by_file[f]) == sum(t.startswith(f + "::") for t in listed) else by_file[f])]
        for i in range(workers)]
    parts = [part for part in parts if part]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--_map", str(out_dir / f"map{i}.json"), *part],
            cwd=ROOT, env=_env(), stdout=open(out_dir / f"map{i}.log", "w"),
            stderr=subprocess.STDOUT,
        )
        for i, part in enumerate(parts)
    ]
    for p in procs:
        p.wait()
    for i in range(len(parts)):
        part = json.loads((out_dir / f"map{i}.json").read_text())
        merged["durations"].update(part["durations"])
        for path, lines in part["lines"].items():
            into = merged["lines"].setdefault(path, {})
            for line, found in lines.items():
                into[line] = sorted(set(into.get(line, [])) | set(found))
    _save(target, merged)
    return merged


def _save(target: Path, data: dict) -> None:
    """Write JSON atomically (a temporary file, then a rename)."""
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(target)


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", "/tmp/dnc_jax_mutation_jax_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@functools.cache
def _parsed(path: str) -> ast.Module:
    """The module's AST, parsed once per run (read only: the sites are found on it)."""
    return ast.parse((ROOT / path).read_text())


def mirror_test_file(path: str) -> str:
    """The test module of a source module (tests mirror the package):
    ``dnc_jax/kernels/families.py`` -> ``tests/kernels/test_families.py``."""
    parts = Path(path).parts[1:]
    return str(Path("tests", *parts[:-1], "test_" + parts[-1]))


def tests_for(m: Mutant, cmap: dict, budget: float, first: tuple[str, ...] = ()) -> list[str]:
    """The tests that execute ``m``'s lines, up to ``budget`` seconds: those whose id starts
    with one of ``first``, then the fastest case of each test function, then the rest."""
    lines = cmap["lines"].get(m.path, {})
    found: set[str] = set()
    for line in range(m.line, m.end_line + 1):
        found.update(lines.get(str(line), []))
    if not found:  # a default argument or a module-level constant: runs at import
        tree = _parsed(m.path)
        defs = [f for f in ast.walk(tree)
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]

        def body_of(line):  # the body of the def or class whose header (decorators) holds ``line``
            return [(f.body[0].lineno, f.end_lineno) for f in defs
                    if min([f.lineno] + [d.lineno for d in f.decorator_list]) <= line < f.body[0].lineno]

        spans = body_of(m.line) if m.function else []
        found.update(DEFAULTS_TESTS)
        found.update(t for t in cmap["durations"] if t.split("::")[0] == mirror_test_file(m.path))
        if m.function and not spans:  # a class attribute (a dataclass field): the class
            inner = min((f for f in defs if f.lineno <= m.line <= f.end_lineno),
                        key=lambda f: f.end_lineno - f.lineno, default=None)
            spans = [(inner.lineno, inner.end_lineno)] if inner else []
        for node in ast.walk(tree):
            if m.names and isinstance(node, ast.Name) and node.id in m.names and node.lineno != m.line:
                spans += body_of(node.lineno) or [(node.lineno, node.end_lineno)]
        for a, b in spans:
            for line in range(a, b + 1):
                found.update(lines.get(str(line), []))
    found.update(CHILD_PROCESS_TESTS.get((m.path, m.function), []))
    durations = cmap["durations"]
    # one case of every test function first (its fastest), then the other cases: forty
    # parametrisations of one check must not crowd out a different test
    ordered = sorted(found, key=lambda t: (not t.startswith(first) if first else False,
                                           durations.get(t, 1e9), t))
    seen: set[str] = set()
    leads = [t for t in ordered if not (t.split("[")[0] in seen or seen.add(t.split("[")[0]))]
    chosen, total = [], 0.0
    for test in leads + [t for t in ordered if t not in set(leads)]:
        if chosen and total + durations.get(test, 1e9) > budget:
            break
        chosen.append(test)
        total += durations.get(test, 0.0)
    return chosen


# ---------------------------------------------------------------------------------------
# Step 3: the warm workers.


def _purge() -> None:
    for name in list(sys.modules):
        top = name.split(".")[0]
        if top == "dnc_jax" or top.startswith("test_") or top in ("helpers", "worker_data"):
            del sys.modules[name]


def _worker_main(copy_root: str) -> None:
    """Child process: read ``{"path", "key", "source", "tests"}`` lines on stdin, answer
    ``{"code", "failed"}`` (pytest's exit code, the first failing test) on the real stdout;
    pytest's own output goes to stderr (the worker's log)."""
    answer = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    os.chdir(copy_root)
    sys.path.insert(0, copy_root)
    import jax
    import pytest

    class FirstFailure:
        nodeid = None

        def pytest_runtest_logreport(self, report):
            if report.failed and FirstFailure.nodeid is None:
                FirstFailure.nodeid = report.nodeid

    for line in sys.stdin:
        job = json.loads(line)
        target = Path(copy_root) / job["path"]
        original = target.read_text()
        target.write_text(job["source"])
        try:
            _purge()
            jax.clear_caches()
            print(f"=== {job['key']}", flush=True)
            FirstFailure.nodeid = None
            code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *job["tests"]],
                               plugins=[FirstFailure()])
        finally:
            target.write_text(original)
        answer.write(json.dumps({"code": int(code), "failed": FirstFailure.nodeid}) + "\n")


class Worker:
    """A warm worker process with its own copy of the repository."""

    def __init__(self, i: int, out_dir: Path):
        self.root = out_dir / f"copy{i}"
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        for part in ("dnc_jax", "tests", "pyproject.toml"):
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, self.root / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(src, self.root / part)
        self.log = open(out_dir / f"worker{i}.log", "a")
        self.proc = None
        self.jobs = 0

    def start(self) -> None:
        env = _env()
        env["PYTHONPATH"] = str(self.root)  # child processes of a test import the mutant too
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--_worker", str(self.root)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )
        self.jobs = 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def run(self, job: dict, timeout: float) -> str:
        """The mutant's status; ``self.failed`` is the first failing test, if any."""
        self.failed = None
        if self.proc is None or self.jobs >= 40:  # a fresh process now and then: memory
            self.stop()
            self.start()
        self.jobs += 1
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        reply: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: reply.put(self.proc.stdout.readline()), daemon=True)
        reader.start()
        try:
            line = reply.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            return "timeout"
        if not line:
            self.stop()
            return "crashed"
        reply = json.loads(line)
        self.failed = reply["failed"]
        return {0: "survived", 1: "killed"}.get(reply["code"], f"error {reply['code']}")


def run_module(name: str, cmap: dict, out_dir: Path, workers: list[Worker], budget: float,
               first: tuple[str, ...] = ()) -> None:
    """Run every mutant of module ``name`` not yet in ``OUT/name.jsonl``."""
    results = out_dir / f"{name}.jsonl"
    done = set()
    if results.exists():
        done = {json.loads(line)["key"] for line in results.read_text().splitlines()}
    todo: queue.Queue = queue.Queue()
    for path in MODULES[name]:
        for m in mutants(path):
            if m.key not in done:
                todo.put(m)
    lock = threading.Lock()
    total = todo.qsize()
    print(f"{name}: {total} mutants to run", flush=True)

    def serve(worker: Worker):
        while True:
            try:
                m = todo.get_nowait()
            except queue.Empty:
                return
            tests = tests_for(m, cmap, budget, first)
            start = time.perf_counter()
            if not tests:
                status = "no tests"
            else:
                expected = sum(cmap["durations"].get(t, 30.0) for t in tests)
                job = {"path": m.path, "key": m.key, "tests": tests,
                       "source": mutated_source(m.path, m.index)}
                status = worker.run(job, timeout=60.0 + 4.0 * expected)
            record = {"key": m.key, "status": status, "line": m.line, "tests": len(tests),
                      "seconds": round(time.perf_counter() - start, 1),
                      "killed_by": worker.failed if tests else None}
            with lock:
                with open(results, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(f"  [{todo.qsize():4d} left] {status:9s} {m.key}", flush=True)

    threads = [threading.Thread(target=serve, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# A failing test, a run past the time limit, a worker killed by the mutant (segfault),
# pytest's exit code 2 (a test module that no longer imports) or 4 (the conftest no longer
# imports: a module-level mutant that breaks ``import dnc_jax``): the mutant was noticed.
KILLED = ("killed", "timeout", "crashed", "error 2", "error 4")


def summary(out_dir: Path, names: list[str]) -> list[dict]:
    """Per module: mutants, killed (incl. timeouts), survived, no tests, equivalent, score."""
    equivalent = {e["key"] for e in json.loads(EQUIVALENT.read_text())} if EQUIVALENT.exists() else set()
    rows = []
    for name in names:
        path = out_dir / f"{name}.jsonl"
        if not path.exists():
            continue
        latest = {}
        for line in path.read_text().splitlines():
            r = json.loads(line)
            latest[r["key"]] = r
        keys = {m.key for p in MODULES[name] for m in mutants(p)}
        records = [r for k, r in latest.items() if k in keys]
        dead = [r["status"] in KILLED for r in records]
        killed = sum(dead)
        equiv = sum(not x and r["key"] in equivalent for x, r in zip(dead, records, strict=True))
        alive = [r for x, r in zip(dead, records, strict=True) if not x and r["key"] not in equivalent]
        rows.append({
            "module": name, "mutants": len(keys), "run": len(records), "killed": killed,
            "equivalent": equiv, "alive": alive,
            "score": killed / max(len(records) - equiv, 1),
        })
    return rows


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_map"]:  # internal: a coverage-map child
        return _map_main(argv[1], argv[2:])
    if argv[:1] == ["--_worker"]:  # internal: a warm worker
        _worker_main(argv[1])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modules", nargs="+", default=list(MODULES), choices=list(MODULES))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--budget", type=float, default=40.0, help="seconds of tests per mutant")
    p.add_argument("--out", default="mutation-results")
    p.add_argument("--rerun", choices=["survivors"], help="run the surviving mutants again")
    p.add_argument("--first", nargs="+", default=[], metavar="TEST",
                   help="test ids (or their prefixes) to try first where they run the line, "
                        "e.g. the tests written against the last survivors")
    p.add_argument("--list-survivors", action="store_true")
    args = p.parse_args(argv)
    out_dir = (ROOT / args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.list_survivors:
        cmap = coverage_map(out_dir, args.workers)
        if args.rerun == "survivors":
            for row in summary(out_dir, args.modules):
                keys = {r["key"] for r in row["alive"]}
                path = out_dir / f"{row['module']}.jsonl"
                kept = [ln for ln in path.read_text().splitlines() if json.loads(ln)["key"] not in keys]
                path.write_text("".join(ln + "\n" for ln in kept))
        workers = [Worker(i, out_dir) for i in range(args.workers)]
        try:
            for name in args.modules:
                run_module(name, cmap, out_dir, workers, args.budget, tuple(args.first))
        finally:
            for w in workers:
                w.stop()
    rows = summary(out_dir, args.modules)
    print("\n| module | mutants | killed | equivalent | alive | score |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['module']} | {r['mutants']} | {r['killed']} | {r['equivalent']} "
              f"| {len(r['alive'])} | {100 * r['score']:.1f}% |")
    if args.list_survivors:
        for r in rows:
            for a in r["alive"]:
                print(f"{a['status']:9s} line {a['line']:4d}  {a['key']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
