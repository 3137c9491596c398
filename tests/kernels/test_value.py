"""Kernels as values: bad leaves and profiles get clear errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import RADIAL, radial_problem
from tolerances import F64, ROUNDING

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


@pytest.mark.parametrize("kernel,metric", [("laplace", False), ("laplace", True),
                                           ("gaussian", False), ("relu_ntk", False)])
def test_symmetric_kernel_matrix_equals_the_kernel_matrix(rng, x64, kernel, metric):
    """The training kernel matrix from the upper triangle's tiles (several tiles, the last
    overlapping, and the near pairs from whole rows) equals a float64 reference written
    here, to the expansion's rounding; a duplicated row and every self term give exactly
    1 for the Laplace kernel; under jit alike; non-radial families by row blocks."""
    import jax

    from dnc_jax.kernels import kernel_matrix
    from dnc_jax.kernels.value import symmetric_kernel_matrix

    X = rng.standard_normal((45, 6))
    X[7] = X[30]
    B = rng.standard_normal((6, 6))
    M = B @ B.T / 6 if metric else None
    got = np.asarray(symmetric_kernel_matrix(Kernel(kernel, 2.0, M), X, tile=16))
    if kernel == "relu_ntk":
        expected = np.asarray(kernel_matrix(X, X, kernel, 2.0))
    else:
        diff = X[:, None, :] - X[None, :, :]
        dist2 = np.einsum("ijd,de,ije->ij", diff, np.eye(6) if M is None else M, diff)
        expected = (np.exp(-np.sqrt(dist2) / 2.0) if kernel == "laplace"
                    else np.exp(-dist2 / (2 * 2.0**2)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=ROUNDING[F64] * 100)
    jitted = jax.jit(lambda X: symmetric_kernel_matrix(Kernel(kernel, 2.0, M), X, tile=16))(X)
    np.testing.assert_allclose(np.asarray(jitted), got, rtol=0, atol=ROUNDING[F64])
    if kernel == "laplace":
        np.testing.assert_array_equal(np.diag(got), 1.0)
        assert got[7, 30] == got[30, 7] == 1.0
