"""Kernels as values: bad leaves and profiles get clear errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import RADIAL, radial_problem

from dnc_jax import Kernel, fit
from dnc_jax.kernels import KERNELS, radial_kernel


def test_bad_kernel_values_raise_clear_errors(rng):
    X, Y, _ = radial_problem(rng, np.float32, n=10)
    with pytest.raises(ValueError, match="Unknown kernel"):
        Kernel("cosine", 1.0)
    with pytest.raises(ValueError, match="bandwidth must be a scalar"):
        fit(Kernel("laplace", jnp.ones(3)), X, Y)
    with pytest.raises(ValueError, match=r"M must be a square \(4, 4\)"):
        fit(Kernel("laplace", 1.0, jnp.eye(3)), X, Y)
    with pytest.raises(ValueError, match="must be an array or a number"):
        fit(Kernel("laplace", "wide"), X, Y)
    with pytest.raises(ValueError, match="bandwidth must be a positive"):
        fit(Kernel("laplace", -1.0), X, Y)
    with pytest.raises(ValueError, match="must be a dnc_jax.Kernel"):
        fit("laplace", X, Y)
    with pytest.raises(ValueError, match="profile must be a callable"):
        radial_kernel(3.0)
    with pytest.raises(ValueError, match="takes no metric"):
        fit(Kernel("l1_laplace", 1.0, jnp.eye(4)), X, Y)
    assert set(RADIAL) | {"l1_laplace", "quadratic", "relu_ntk", "relu_nngp"} == set(KERNELS)
    assert Kernel("laplace", np.float32(2.0)).check(4).bandwidth == 2.0  # numpy scalars
