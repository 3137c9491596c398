"""fit_kernel_ridge / fit_kernel_predictor: interpolation, bad input, edges and what SolveInfo reports."""

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import agop_data, rel64

from dnc_jax import (
    agop,
    data_mesh,
    fit_kernel_predictor,
    fit_kernel_ridge,
    kernel_agop,
)
from dnc_jax.sharding import as_rows


def test_interpolation_on_duplicates_never_nan(rng):
    X, Y, _ = agop_data(rng, np.float32, n=20)
    X = np.concatenate([X, X[:5]])
    Y = np.concatenate([Y, Y[:5]])
    with pytest.warns(RuntimeWarning, match="jitter"):
        pred = fit_kernel_predictor(X, Y, bandwidth=1.0, reg=0.0)
    assert np.isfinite(np.asarray(pred.coefs)).all()


@pytest.mark.slow
def test_interpolation_reproduces_targets(rng, x64):
    X, Y, _ = agop_data(rng, np.float64, n=25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = fit_kernel_predictor(X, Y, kernel="laplace", bandwidth=1.0, reg=0.0)
    np.testing.assert_allclose(pred.predict(X, block_size=7), Y, atol=1e-8)
    np.testing.assert_allclose(jax.vmap(pred.predict_one)(jnp.asarray(X)), Y, atol=1e-8)


def test_bad_inputs_raise(rng):
    X, Y, _ = agop_data(rng, np.float32)
    with pytest.raises(ValueError, match="rows"):
        fit_kernel_predictor(X, Y[:-1], bandwidth=1.0)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_kernel_predictor(bad, Y, bandwidth=1.0)
    with pytest.raises(ValueError, match="NaN"):
        agop(lambda x: x, bad)
    with pytest.raises(ValueError, match="bandwidth"):
        fit_kernel_predictor(X, Y, bandwidth=0.0)
    with pytest.raises(ValueError, match="reg"):
        fit_kernel_predictor(X, Y, bandwidth=1.0, reg=-1.0)
    with pytest.raises(ValueError, match="kernel"):
        fit_kernel_predictor(X, Y, kernel="cosine", bandwidth=1.0)
    with pytest.raises(ValueError, match="2-D"):
        fit_kernel_predictor(X[0], Y, bandwidth=1.0)
    pred = fit_kernel_predictor(X, Y, bandwidth=1.0)
    with pytest.raises(ValueError, match="features"):
        kernel_agop(pred, X[:, :3])
    with pytest.raises(ValueError, match="normalize"):
        kernel_agop(pred, X, normalize="sum")


@pytest.mark.slow
def test_fit_edges_rows_without_a_mesh_and_what_info_reports(digits_rows):
    """Rows carry their mesh when ``mesh`` is omitted; Cholesky runs on a one-device mesh
    and refuses two; one centre and all ``n`` are valid counts; ``SolveInfo`` reports what
    ran, with phase seconds inside the call's wall time; a metric reaches the CG solve."""
    X, _, Y = digits_rows
    mesh = data_mesh("all")
    fit, _ = fit_kernel_ridge(as_rows(X, mesh), as_rows(Y, mesh), bandwidth=2.0, solver="cg",
                              precond_rank=50)
    assert fit.mesh is mesh
    two = data_mesh(2)
    assert fit_kernel_ridge(X, Y, bandwidth=2.0, solver="cg", precond_rank=50,
                            mesh=two)[0].mesh is two
    with pytest.raises(ValueError, match="different mesh"):  # the mesh passed wins, and checks
        fit_kernel_ridge(as_rows(X, mesh), as_rows(Y, mesh), mesh=two, solver="cg")
    with pytest.raises(ValueError, match="Rows"):
        fit_kernel_ridge(as_rows(X, mesh), Y, bandwidth=2.0, solver="cg")
    with pytest.raises(ValueError, match="Rows"):
        fit_kernel_ridge(as_rows(X, mesh), as_rows(Y[:-4], mesh), bandwidth=2.0, solver="cg")
    with pytest.raises(ValueError, match="one device"):
        fit_kernel_ridge(X, Y, bandwidth=2.0, solver="cholesky", mesh=data_mesh(2))
    M = np.diag(np.linspace(0.5, 1.5, X.shape[1])).astype(np.float32)
    fits = {}
    for name, options in (("one-device mesh", dict(solver="cholesky", mesh=data_mesh(1))),
                          ("cg", dict(solver="cg", M=M, precond_rank=100)),
                          ("one centre", dict(centers=1)), ("n centres", dict(centers=len(X))),
                          ("cholesky", dict(solver="cholesky", M=M))):
        start = time.perf_counter()
        fits[name], info = fit_kernel_ridge(X, Y, bandwidth=2.0, **options)
        wall = time.perf_counter() - start
        assert 0 <= info.kernel_seconds <= wall and 0 <= info.solve_seconds <= wall
        if info.solver == "cholesky":
            assert (info.iterations, info.residual, info.rank) == (0, None, None)
    # CG with the metric, off the training points (where any near-interpolating fit gives ~Y)
    Xt = 0.9 * X[:20]
    assert rel64(fits["cg"].predict(Xt), fits["cholesky"].predict(Xt)) <= 1e-4


def test_solver_options_of_a_flat_configuration():
    """``SolverOptions.of`` reads each field by its name (or a renamed attribute) and
    keeps the default where the source has none; the options check themselves."""
    from types import SimpleNamespace

    from dnc_jax.solvers import SolverOptions

    flat = SimpleNamespace(solver="cg", tol=1e-4, cg_max_iter=7, precond_rank=9, seed=3)
    options = SolverOptions.of(flat, max_iter="cg_max_iter")
    assert options == SolverOptions("cg", None, 1e-4, 7, 9, None)
    assert SolverOptions.of(SimpleNamespace()) == SolverOptions()
    with pytest.raises(ValueError, match="solver must be one of"):
        SolverOptions.of(SimpleNamespace(solver="lu"))
