"""Kernel families: the kernel matrices against their formulas, every family's closed-form
AGOP against autodiff, user profiles."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import RADIAL, agop_data, radial_problem
from tolerances import F32, F64, ROUNDING

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


def test_each_named_family_is_its_formula(x64):
    """The profiles, the Laplace and Gaussian exact formulas (values and gradient weights
    from squared distances) and the L1 Laplace matrix against their textbook formulas in
    numpy (Rasmussen & Williams 2006, eq. 4.17); the weights ``-phi'(t) / (t L^2)`` are
    finite at distance 0 (0 on the generic path); a family is steep exactly when
    ``phi'(0) != 0``; families are hashable and immutable (static under ``jit``)."""
    import dataclasses

    import jax

    from dnc_jax.kernels import FAMILIES, GAUSSIAN, LAPLACE, MATERN32, MATERN52
    from dnc_jax.kernels.families import Radial

    t = np.array([0.0, 0.3, 1.0, 2.5])
    s3, s5 = np.sqrt(3.0), np.sqrt(5.0)
    formulas = {LAPLACE: np.exp(-t), GAUSSIAN: np.exp(-(t**2) / 2),
                MATERN32: (1 + s3 * t) * np.exp(-s3 * t),
                MATERN52: (1 + s5 * t + 5 * t**2 / 3) * np.exp(-s5 * t)}
    L = 1.7
    d2 = jnp.asarray((t * L) ** 2)
    for family, phi in formulas.items():
        np.testing.assert_allclose(family.profile(jnp.asarray(t)), phi, rtol=1e-14)
        np.testing.assert_allclose(family.kernel_values(d2, L), phi, rtol=1e-14)
        slope = np.asarray(jax.vmap(jax.grad(family.profile))(jnp.asarray(t)))
        K, W = family.gradient_weights(d2, L)
        np.testing.assert_allclose(K, phi, rtol=1e-14)
        assert np.isfinite(W).all()  # at distance 0 too (no 0/0), where z - x = 0
        np.testing.assert_allclose(W[1:], -slope[1:] / (t[1:] * L**2), rtol=1e-12)
        assert family.steep == (slope[0] != 0.0), family.name
        # the profile alone (the generic path) gives the exact formulas' numbers, and 0 at 0
        generic = Radial(family.name, family.profile, family.steep).gradient_weights(d2, L)[1]
        np.testing.assert_allclose(generic[1:], W[1:], rtol=1e-12)
        assert generic[0] == 0.0
    rng = np.random.default_rng(0)
    X, Z = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    l1 = np.abs(X[:, None, :] - Z[None, :, :]).sum(-1)
    np.testing.assert_allclose(FAMILIES["l1_laplace"].matrix(jnp.asarray(X), jnp.asarray(Z), L),
                               np.exp(-l1 / L), rtol=1e-14)
    for family in FAMILIES.values():  # static values: hashable, immutable
        hash(family)
        with pytest.raises(dataclasses.FrozenInstanceError):
            family.name = "other"  # type: ignore[misc]


def test_relu_kernel_names_are_the_one_hidden_layer_kernels(rng):
    """``"relu_ntk"`` and ``"relu_nngp"`` name the arc-cosine kernels of depth 1 (their
    formulas are tested in ``test_arccos.py``)."""
    from dnc_jax.kernels import ArcCosine

    X = jnp.asarray(rng.standard_normal((4, 5)), jnp.float32)
    for kind in ("ntk", "nngp"):
        np.testing.assert_allclose(kernel_matrix(X, X, f"relu_{kind}", 1.0),
                                   Kernel(ArcCosine(kind, 1))(X, X), rtol=ROUNDING[F32])


@pytest.fixture
def registry(monkeypatch):
    """A copy of the kernel registry for one test: what it registers is gone after."""
    from dnc_jax.kernels import families

    monkeypatch.setattr(families, "FAMILIES", dict(families.FAMILIES))


def _cauchy(t):
    return 1.0 / (1.0 + t**2)


def test_register_kernel_names_a_family_once(registry):
    from dnc_jax.kernels import KERNELS, family_of, kernel_names, register_kernel

    family = radial_kernel(_cauchy, name="cauchy_registered")
    assert register_kernel(family) is family
    assert family_of("cauchy_registered") == family
    assert kernel_names() == (*KERNELS, "cauchy_registered")
    register_kernel(radial_kernel(_cauchy, name="cauchy_registered"))  # an equal family: no-op
    with pytest.raises(ValueError, match="another family is registered"):
        register_kernel(radial_kernel(lambda t: jnp.exp(-t), name="cauchy_registered"))
    for taken in ("laplace", "relu_ntk_3"):
        with pytest.raises(ValueError, match="built-in kernel"):
            register_kernel(radial_kernel(_cauchy, name=taken))
    with pytest.raises(ValueError, match="takes a kernel family"):
        register_kernel("cauchy_registered")  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_family_registered_in_one_place_runs_everywhere_by_name(registry, tmp_path, capsys):
    """One ``register_kernel`` line, and the name works in the fit, RFM, Deep RFM (whose
    saved model loads with no ``kernel=``) and the command line's ``--kernel``; by name the
    answers are the family value's bit for bit."""
    import json

    from dnc_jax import (
        deep_rfm,
        fit_kernel_ridge,
        fit_rfm,
        load_dataset,
        load_deep_rfm,
        prepare,
        save_deep_rfm,
    )
    from dnc_jax.cli import main
    from dnc_jax.kernels import register_kernel

    family = register_kernel(radial_kernel(_cauchy, name="cauchy_everywhere"))
    X, y = load_dataset("digits")
    data = prepare(X[:150], y[:150], X[150:200], y[150:200])
    by_name, _ = fit_kernel_ridge(data.X_train, data.Y_train, kernel="cauchy_everywhere",
                                  bandwidth=10.0)
    by_value, _ = fit_kernel_ridge(data.X_train, data.Y_train, kernel=family, bandwidth=10.0)
    np.testing.assert_array_equal(np.asarray(by_name.coefs), np.asarray(by_value.coefs))
    rfm_name = fit_rfm(data.X_train, data.Y_train, kernel="cauchy_everywhere", iters=1)
    rfm_value = fit_rfm(data.X_train, data.Y_train, kernel=family, iters=1)
    np.testing.assert_array_equal(np.asarray(rfm_name.transform), np.asarray(rfm_value.transform))
    _, model = deep_rfm(data.X_train, data.y_train, depth=1, width=20,
                        kernel="cauchy_everywhere", return_model=True)
    path = str(tmp_path / "model.npz")
    save_deep_rfm(model, path)
    np.testing.assert_array_equal(np.asarray(load_deep_rfm(path).predict(data.X_test)),
                                  np.asarray(model.predict(data.X_test)))
    out = tmp_path / "run"
    assert main(["deep-rfm", "--dataset", "digits", "--n", "100", "--n-test", "50", "--depth",
                 "1", "--width", "16", "--kernel", "cauchy_everywhere", "--out", str(out),
                 "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["kernel"] == "cauchy_everywhere"
    with pytest.raises(SystemExit):  # an unregistered name: argparse's invalid choice
        main(["deep-rfm", "--kernel", "cauchy_nowhere", "--out", str(tmp_path / "no")])
    assert "invalid choice: 'cauchy_nowhere'" in capsys.readouterr().err
