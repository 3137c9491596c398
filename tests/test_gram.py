"""The feature Gram matrix of the paper's first figure, on one device and sharded."""

import numpy as np

from dnc_jax.gram import feature_gram, gram_indices
from dnc_jax.sharding import Rows, data_mesh, put_rows


def test_feature_gram_equals_a_float64_reference(rng):
    X = rng.standard_normal((101, 12)).astype(np.float32)
    idx = np.array([3, 50, 7, 100])
    U = X.astype(np.float64) / np.linalg.norm(X, axis=1, keepdims=True)
    Z = U[idx] - U.mean(axis=0)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    for where in (X, Rows(put_rows(X, data_mesh("all")), 101)):
        np.testing.assert_allclose(feature_gram(where, idx), Z @ Z.T, atol=1e-6)


def test_gram_indices_take_the_first_rows_of_each_class_in_class_order():
    y = np.array([2, 0, 1, 0, 2, 1, 0])
    np.testing.assert_array_equal(gram_indices(y, 3, per_class=2), [1, 3, 2, 5, 0, 4])
