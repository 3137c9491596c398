"""Strict JAX settings for the whole suite (STYLE.md): strict dtype promotion, no implicit
rank promotion, several CPU devices so that sharded code runs in CI, fresh PRNG keys.

Compiled programs are kept in JAX's persistent compilation cache (``XLA_CACHE`` below,
unless ``JAX_COMPILATION_CACHE_DIR`` names another folder), every program however quick
to compile: half of the quick tier's time is XLA compiling, and the cache lets the
parallel workers, the commands run as subprocesses and the next run on the same machine
share what one of them compiled. Its key is the program with the JAX, jaxlib and XLA
versions and flags, so an entry is only reused for the same program. It is not capped
(JAX's cap locks the folder on every read and write: the quick tier took 5 min 22 s warm
with it, against 1 min 36 s without); a suite's programs take about 30 MB. An entry read
while another worker writes it is compiled again with a warning (pyproject's
filterwarnings shows it, not an error). Delete the folder to start cold."""

import os
import zlib

XLA_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "dnc_jax", "xla-tests")
os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", XLA_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _seed_name(request) -> bytes:
    """What the per-test seeds hash: the node id without its file, ``test_x[param]`` (the
    files' paths once were part of it: the suite's draws are those of ``tests/<old file>``)."""
    return request.node.nodeid.split("::", 1)[1].encode()


@pytest.fixture
def key(request):
    """A fresh PRNG key per test, derived from the test's name and parameters (reproducible;
    not from its file, so that a test keeps its draws when it moves)."""
    return jax.random.key(zlib.crc32(_seed_name(request)))


@pytest.fixture
def rng(request):
    """A numpy Generator seeded per test (as ``key``)."""
    return np.random.default_rng(zlib.crc32(_seed_name(request)))


@pytest.fixture
def x64():
    """Run the test with 64-bit JAX arrays enabled."""
    with jax.enable_x64(True):
        yield


# ---------------------------------------------------------------- shared data fixtures
# One name, one meaning: each fixture below is the same object wherever a test asks for it.


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's digits, prepared (``PreparedData``): the embedded train/test split,
    standardised with the training statistics."""
    from dnc_jax.data import load_dataset, prepare

    Xtr, ytr = load_dataset("digits")
    Xte, yte = load_dataset("digits", split="test")
    return prepare(Xtr, ytr, Xte, yte)


@pytest.fixture(scope="module")
def digits_400():
    """The first 400 training and 100 test digits, prepared (``PreparedData``)."""
    from dnc_jax.data import load_dataset, prepare

    X, y = load_dataset("digits", n=400)
    Xt, yt = load_dataset("digits", split="test", n=100)
    return prepare(X, y, Xt, yt)


@pytest.fixture(scope="module")
def digits_300():
    """``(X, y)``: the first 300 training digits, standardised, ``X`` a float32 JAX array."""
    import jax.numpy as jnp

    from dnc_jax.data import load_dataset, prepare

    X, y = load_dataset("digits")
    data = prepare(X[:300], y[:300])
    return jnp.asarray(data.X_train, jnp.float32), np.asarray(data.y_train)


@pytest.fixture(scope="module")
def digits_rows():
    """``(X, y, Y)``: 402 standardised, unit-norm training digits (float32; not a multiple
    of 4, so that row padding on 4 devices is exercised), labels, ``{-1, +1}`` targets."""
    from dnc_jax.data import load_dataset, one_hot_pm1, prepare

    X, y = load_dataset("digits", "train", 402)
    data = prepare(X, y)
    X = data.X_train / np.linalg.norm(data.X_train, axis=1, keepdims=True)
    return X.astype(np.float32), data.y_train, one_hot_pm1(data.y_train, 10)
