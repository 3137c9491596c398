"""The public surface: every exported name is documented, every name the README uses is
exported, and no public name hides the module it shares a name with."""

import importlib
import inspect
import pathlib
import pkgutil
import re
import subprocess
import sys
import types

import dnc_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
README, LIBRARY = ROOT / "README.md", ROOT / "docs" / "library.md"


def _submodules(package):
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        yield package, info.name, module
        if info.ispkg:
            yield from _submodules(module)


def test_no_public_name_shadows_its_module():
    for package, name, module in _submodules(dnc_jax):
        assert getattr(package, name) is module, (
            f"{package.__name__}.{name} is {type(getattr(package, name)).__name__}, "
            "not the module of that name")


def test_every_exported_name_exists_and_has_a_docstring():
    assert len(set(dnc_jax.__all__)) == len(dnc_jax.__all__)
    for name in dnc_jax.__all__:
        obj = getattr(dnc_jax, name)
        assert (inspect.getdoc(obj) or "").strip(), f"dnc_jax.{name} has no docstring"


def test_every_public_function_of_the_modules_has_a_docstring():
    """Module-level functions and classes defined in the package, not starting with ``_``."""
    missing = []
    for _, short, module in _submodules(dnc_jax):
        if short.startswith("_"):
            continue
        for name, obj in vars(module).items():
            if (name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj))
                    or getattr(obj, "__module__", None) != module.__name__):
                continue
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"public names without a docstring: {missing}"


def _readme_names() -> set[str]:
    text = README.read_text() + LIBRARY.read_text()
    names = set(re.findall(r"\bdj\.([A-Za-z_][A-Za-z0-9_]*)", text))
    library = LIBRARY.read_text().split("## The library", 1)[1].split("\n## ", 1)[0]
    for row in re.findall(r"^\| (.*?) \| .* \|$", library, flags=re.M):
        for span in re.findall(r"`([^`]+)`", row):
            match = re.match(r"([A-Za-z_][A-Za-z0-9_.]*)\(?", span)
            if match and not match.group(1)[0].isdigit():
                names.add(match.group(1))
    return names - {"name"}


def test_every_name_the_readme_uses_is_exported():
    names = _readme_names()
    assert {"fit_rfm", "fit_with_agop", "as_rows", "SolverOptions", "agop"} <= names
    for name in sorted(names):
        head, *rest = name.split(".")
        if not rest:
            assert name in dnc_jax.__all__, f"the README uses {name}, not in dnc_jax.__all__"
            continue
        obj = importlib.import_module(f"dnc_jax.{head}")
        for part in rest:
            obj = getattr(obj, part)
        assert not isinstance(obj, types.ModuleType) or rest, name


def test_the_package_type_checks():
    """mypy over the whole package (config in pyproject.toml) reports no error: the
    annotations a user's type checker reads (py.typed) are consistent."""
    root = pathlib.Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=root, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_fit_rfm_has_the_defaults_of_the_rfm_estimator():
    """``fit_rfm`` and ``RFM`` declare their defaults separately (a function and a
    scikit-learn constructor): they must not drift."""
    loop = inspect.signature(dnc_jax.fit_rfm).parameters
    estimator = inspect.signature(dnc_jax.RFM).parameters
    shared = (set(loop) & set(estimator)) - {"solver"}  # an option object in fit_rfm
    assert {"kernel", "bandwidth", "reg", "iters", "agop_power", "normalize", "batch_size",
            "agop_samples", "seed"} <= shared
    for name in shared:
        assert loop[name].default == estimator[name].default, name
    options = loop["solver"].default
    assert (options.solver, options.centers, options.tol, options.max_iter,
            options.precond_rank) == tuple(estimator[k].default for k in (
                "solver", "centers", "tol", "cg_max_iter", "precond_rank"))
