"""Small helpers shared by several test files: record comparison, schema validation,
relative errors, sharding and batch-invariance assertions, and the small problems the
kernel, AGOP and solver tests fit."""

import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from dnc_jax.sharding import DATA


def without_time(record):
    """A run record less its wall-clock fields (any key containing "seconds"), which
    differ between otherwise identical runs); a typed record (``LayerRecord``) by its JSON
    form."""
    if hasattr(record, "to_json"):
        record = record.to_json()
    if not isinstance(record, dict):
        return record
    return {k: without_time(v) for k, v in record.items() if "seconds" not in k}


def assert_valid_results(path) -> dict:
    """Load a command's ``results.json`` and validate it against the package's schema."""
    import importlib.resources
    import json

    import jsonschema

    schema = json.loads(importlib.resources.files("dnc_jax").joinpath(
        "schemas/results.schema.json").read_text())
    with open(path) as fh:
        results = json.load(fh)
    jsonschema.validate(results, schema, cls=jsonschema.Draft202012Validator)
    return results


def rel64(a, b):
    """``||a - b|| / ||b||`` (Frobenius), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def coefs_of(predictor, n):
    """The predictor's coefficients of its first ``n`` rows (padding dropped), numpy."""
    return np.asarray(predictor.coefs)[:n]


def assert_row_sharded(array, mesh):
    """``array`` is split by rows over the 4 devices of ``mesh``, equal blocks (``P("data")``
    and ``P("data", None)`` alike: the same placement, spelt two ways)."""
    assert array.sharding.is_equivalent_to(NamedSharding(mesh, P(DATA)), array.ndim)
    assert len(array.addressable_shards) == 4
    assert {s.data.shape[0] for s in array.addressable_shards} == {array.shape[0] // 4}


def assert_batch_invariant(out, X, rng):
    """``out`` of row 5 alone, of rows 3..9 (a batch of 7), of a permutation and of
    slices of 7 equal the whole set's rows exactly."""
    full = np.asarray(out(X))
    np.testing.assert_array_equal(np.asarray(out(X[5:6]))[0], full[5])
    np.testing.assert_array_equal(np.asarray(out(X[3:10])), full[3:10])
    order = rng.permutation(len(X))
    np.testing.assert_array_equal(np.asarray(out(X[order])), full[order])
    # rows at other positions of their block than in the whole set
    tail = slice(len(X) - 7, len(X))
    np.testing.assert_array_equal(np.asarray(out(X[tail])), full[tail])


# the radial families with a closed-form AGOP
RADIAL = ("laplace", "gaussian", "matern32", "matern52")


def radial_problem(rng, dtype, n=40, d=4, C=2):
    """``(X, Y, M)`` JAX arrays: smooth targets of Gaussian inputs and a metric far from I."""
    X = rng.standard_normal((n, d)).astype(dtype)
    Y = np.sin(X[:, :C] * 1.3).astype(dtype)
    A = rng.standard_normal((d, d)) / np.sqrt(d)
    M = (A @ A.T + 0.5 * np.eye(d)).astype(dtype)
    return jnp.asarray(X), jnp.asarray(Y), jnp.asarray(M)


def agop_data(rng, dtype, n=40, d=6, C=3):
    """``(X, Y, M)`` numpy arrays of ``dtype``: Gaussian inputs and targets, a PSD metric."""
    X = rng.standard_normal((n, d)).astype(dtype)
    Y = rng.standard_normal((n, C)).astype(dtype)
    A = rng.standard_normal((d, d))
    M = (A @ A.T / d).astype(dtype)
    return X, Y, M


def adaptive_problem(rng, n=3000, d=6):
    """``(predictor, X)``: a Laplace fit (L = 3) on the first 400 of ``n`` normal rows of a
    ``tanh`` target, and the rows; the adaptive AGOP rule's test problem."""
    import jax.numpy as jnp

    from dnc_jax import Kernel, fit

    X = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    Y = jnp.tanh(X[:, :2] @ jnp.asarray(rng.standard_normal((2, 2)), jnp.float32))
    return fit(Kernel("laplace", 3.0), X[:400], Y[:400], 1e-2), X


def assert_adaptive_rule_replayed(pred, X, counts, changes, power, seed=5):
    """At tolerances 1% above and below each of the first three rounds' ``changes`` (the
    change from ``counts[k]`` rows to ``counts[k + 1]``, computed by the caller), the
    adaptive AGOP stops at the first round whose change is within the tolerance (all rows
    when none is), and a real gap separates every tolerance from every change."""
    from dnc_jax.gradient_outer_product import adaptive_kernel_agop

    for c in changes[:3]:
        for tol in (1.01 * c, 0.99 * c):
            assert all(abs(other - tol) > 1e-3 * tol for other in changes)  # a real gap
            expected = next((counts[k + 1] for k, ck in enumerate(changes) if ck <= tol),
                            counts[-1])
            _, used = adaptive_kernel_agop(pred, X, tol=tol, first=counts[0], power=power,
                                           seed=seed)
            assert used == expected
