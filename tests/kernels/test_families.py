"""Kernel families: the kernel matrices against their formulas, every family's closed-form
AGOP against autodiff, user profiles."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import RADIAL, agop_data, radial_problem
from tolerances import F64, ROUNDING

from dnc_jax import (
    Kernel,
    agop,
    fit,
    fit_kernel_predictor,
    gaussian_kernel,
    kernel_agop,
    kernel_matrix,
    laplace_kernel,
)
from dnc_jax.kernels import radial_kernel


@pytest.mark.slow
def test_kernels_match_direct_formula(rng, x64):
    X, _, M = agop_data(rng, np.float64)
    Z = rng.standard_normal((7, X.shape[1]))
    diff = X[:, None, :] - Z[None, :, :]
    dist_m = np.sqrt(np.einsum("nmd,de,nme->nm", diff, M, diff))
    np.testing.assert_allclose(laplace_kernel(X, Z, 2.0, M), np.exp(-dist_m / 2.0), rtol=ROUNDING[F64])
    dist = np.linalg.norm(diff, axis=-1)
    np.testing.assert_allclose(
        gaussian_kernel(X, Z, 1.5, block_size=3), np.exp(-(dist**2) / (2 * 1.5**2)), rtol=ROUNDING[F64]
    )
    # a point against itself is at distance exactly 0
    np.testing.assert_array_equal(np.diag(laplace_kernel(X, X, 1.0)), 1.0)


def _matern32_by_hand(t):
    return (1.0 + jnp.sqrt(3.0) * t) * jnp.exp(-jnp.sqrt(3.0) * t)


@pytest.mark.slow
@pytest.mark.parametrize("family", [*RADIAL, "user_matern32", "l1_laplace"])
def test_every_family_closed_form_agop_equals_autodiff(rng, x64, family):
    X, Y, M = radial_problem(rng, np.float64, n=25, d=3)
    metric = None if family == "l1_laplace" else M
    kind = radial_kernel(_matern32_by_hand) if family == "user_matern32" else family
    pred = fit(Kernel(kind, 1.5, metric), X, Y, 1e-3)
    points = jnp.concatenate([X[:10], X[:10] * 0.8 + 0.1])  # training points and fresh ones
    closed = kernel_agop(pred, points)
    auto = agop(pred.predict_one, points)
    np.testing.assert_allclose(closed, auto, rtol=0, atol=1e-10 * float(jnp.abs(auto).max()))


def test_user_profile_equals_the_named_family_and_gets_the_closed_form(rng, x64):
    """A hand-written Matérn 3/2 profile gives the library's Matérn 3/2 kernel matrix and,
    through the profile's derivative, the same closed-form gradient weights."""
    from dnc_jax.kernels import MATERN32, squared_distances

    X, _, M = radial_problem(rng, np.float64, n=12, d=3)
    user = radial_kernel(_matern32_by_hand)
    np.testing.assert_allclose(Kernel(user, 1.3, M)(X, X), Kernel("matern32", 1.3, M)(X, X),
                               rtol=1e-13)
    d2 = squared_distances(X, X, M)
    np.testing.assert_allclose(user.gradient_weights(d2, 1.3)[1],
                               MATERN32.gradient_weights(d2, 1.3)[1], rtol=ROUNDING[F64])
    assert not user.steep and radial_kernel(lambda t: jnp.exp(-t)).steep


def test_quadratic_kernel_is_rfm_grokkings(rng, x64):
    """``3 (x . z)^2`` (rfm-grokking's quadratic_M with M = I; a metric enters as x M^(1/2)),
    no bandwidth or metric taken, and its AGOP (autodiff) equals the hand gradient."""
    from dnc_jax.kernels import QUADRATIC, family_of

    X, Z = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    np.testing.assert_allclose(kernel_matrix(X, Z, "quadratic", 1.0), 3 * (X @ Z.T) ** 2,
                               rtol=1e-13)
    assert family_of("quadratic") is QUADRATIC
    with pytest.raises(ValueError, match="takes no metric"):
        kernel_matrix(X, Z, "quadratic", 1.0, M=np.eye(3))
    predictor = fit_kernel_predictor(Z, rng.standard_normal((4, 2)), kernel="quadratic", reg=0.1)
    alpha, C = np.asarray(predictor.coefs), np.asarray(predictor.centers)
    G = np.einsum("ij,jc,jd->icd", 6 * (X @ C.T), alpha, C)  # grad 3 (x.z)^2 = 6 (x.z) z
    np.testing.assert_allclose(kernel_agop(predictor, X), np.einsum("icd,ice->de", G, G) / 5,
                               rtol=1e-10)
