"""The Gram matrix of class-sorted, centred, unit-norm features: the paper's first figure,
computed where the rows live (sharded over a mesh, reduced across devices and processes)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from dnc_jax.precision import matmul
from dnc_jax.rows import REPLICATED, Rows
from dnc_jax.sharding import as_rows, check_mesh

GRAM_PER_CLASS = 20  # samples per class in each layer's saved Gram matrix


def gram_indices(y, num_classes: int, per_class: int = GRAM_PER_CLASS):
    """The first ``per_class`` training rows of each class, class by class (the rows of
    each layer's saved Gram matrix)."""
    y = np.asarray(y)
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(num_classes)])


@functools.partial(jax.jit, static_argnames=("n", "mesh"))
def _feature_gram(X: jax.Array, idx: jax.Array, n: int, mesh: Mesh) -> jax.Array:
    U = X / jnp.maximum(jnp.linalg.norm(X, axis=1, keepdims=True), 1e-30)  # padding stays 0
    Z = U[idx] - jnp.sum(U, axis=0, keepdims=True) / n
    Z = Z / jnp.maximum(jnp.linalg.norm(Z, axis=1, keepdims=True), 1e-30)
    return jax.lax.with_sharding_constraint(matmul(Z, Z.T), NamedSharding(mesh, REPLICATED))


def feature_gram(X: np.ndarray | Rows, idx, mesh: Mesh | None = None) -> np.ndarray:
    """Gram matrix of rows ``idx`` of ``X`` after scaling rows to unit norm, centring by the
    mean of all rows and scaling to unit norm again (the paper's first figure); float32,
    ``(len(idx), len(idx))``. ``X``: numpy (placed on ``mesh``) or ``Rows``; computed where
    the rows live (the mean is reduced across devices and processes), every process gets
    the result."""
    rows = X if isinstance(X, Rows) else as_rows(np.asarray(X, np.float32), check_mesh(mesh))
    gram = _feature_gram(rows.data, jnp.asarray(idx, jnp.int32), rows.n, rows.mesh)
    return np.asarray(gram.addressable_data(0), dtype=np.float32)
