"""Strict JAX settings for the whole suite (STYLE.md): strict dtype promotion, no implicit
rank promotion, several CPU devices so that sharded code runs in CI, fresh PRNG keys."""

import os
import zlib

os.environ.setdefault("XLA_FLAGS", "")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Relative tolerances per dtype (float32 looser than float64), as in neural-tangents.
RTOL = {np.dtype("float32"): 1e-4, np.dtype("float64"): 1e-5}


@pytest.fixture
def key(request):
    """A fresh PRNG key per test, derived from the test's name (reproducible)."""
    return jax.random.key(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def rng(request):
    """A numpy Generator seeded per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def x64():
    """Run the test with 64-bit JAX arrays enabled."""
    with jax.enable_x64(True):
        yield
