"""The library page's "Use it in your own JAX code" examples (docs/library.md, the page the
README sends JAX users to) run as written."""

import pathlib
import re

import jax.numpy as jnp
import pytest

LIBRARY = pathlib.Path(__file__).resolve().parents[1] / "docs" / "library.md"


@pytest.mark.slow
def test_use_it_in_your_own_jax_code_runs():
    text = LIBRARY.read_text()
    section = text.split("### Use it in your own JAX code", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(LIBRARY), "exec"), namespace)
    assert namespace["agops"].shape == (4, 8, 8)
    assert namespace["d_M"].shape == (8, 8) and namespace["d_log_L"].shape == ()
    assert namespace["M_epoch"].shape == (8, 8)
    assert float(jnp.abs(namespace["M_too"] - namespace["M_epoch"]).max()) == 0.0
    assert "X contains NaN" in namespace["message"]
