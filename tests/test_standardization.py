"""A model's standardisation maps new raw rows as its training rows were mapped."""

import numpy as np
import pytest

from dnc_jax.standardization import Standardization


def test_apply_is_the_float64_formula_with_constant_features_at_zero(rng):
    X = rng.standard_normal((5, 3)) * 10
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.0, 4.0])
    out = Standardization(mean, std, input_scale=0.5).apply(X)
    want = (0.5 * X - mean) / np.where(std > 0, std, 1.0)
    want[:, 1] = 0.0  # std = 0: the feature is 0
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, want.astype(np.float32))


def test_without_statistics_only_the_scale_applies_and_shapes_are_checked(rng):
    X = rng.standard_normal((4, 2))
    np.testing.assert_array_equal(Standardization(None, None, 2.0).apply(X),
                                  (2.0 * X).astype(np.float32))
    with pytest.raises(ValueError, match=r"\(m, 3\) raw rows"):
        Standardization(np.zeros(3), np.ones(3)).apply(X)
