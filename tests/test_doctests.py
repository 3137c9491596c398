"""Every example in a docstring of the package runs as a doctest."""

import doctest
import importlib
import pkgutil

import pytest

import dnc_jax

MODULES = sorted(m.name for m in pkgutil.walk_packages(dnc_jax.__path__, "dnc_jax."))


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in MODULES if not m.endswith("__main__")])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
