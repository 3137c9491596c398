"""Situations where a plausible wrong number once came back without an error: each is a
clear error, a checkify error or the documented NaN now, or the right answer.

One test per situation (TESTING.md lists them); the expected values are computed here,
independently of the code under test."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import adaptive_problem, assert_adaptive_rule_replayed
from jax.experimental import checkify

import dnc_jax as dj
from dnc_jax import gradient_outer_product as gop


def _jacobian_agop64(f, X):
    """``mean J^T J`` from ``vmap(jacrev(f))``, summed in float64."""
    J = np.asarray(jax.vmap(jax.jacrev(f))(jnp.asarray(X)), np.float64)
    J = J.reshape(J.shape[0], -1, J.shape[-1])
    return np.einsum("ncd,nce->de", J, J) / J.shape[0]


# -------------------------------------------------------------- closures read at call time


class _SmallCNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.head = nnx.Linear(8 * 8 * 4, 3, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv(x))
        return self.head(h.reshape(*h.shape[:-3], -1))


def test_agop_of_a_closure_follows_the_state_it_closes_over(rng):
    """``agop(lambda x: lin(x), X)`` after the weights change is the new AGOP (it once
    kept the first call's), and so is a closure over a plain array."""
    X = rng.standard_normal((30, 5)).astype(np.float32)
    lin = nnx.Linear(5, 2, rngs=nnx.Rngs(0))

    def f(x):
        return lin(x)

    first = dj.agop(f, X)
    lin.kernel[...] = lin.kernel[...] * 10.0
    np.testing.assert_allclose(dj.agop(f, X), _jacobian_agop64(f, X), rtol=1e-5)
    np.testing.assert_allclose(dj.agop(f, X), 100.0 * np.asarray(first), rtol=1e-5)
    B = jnp.asarray(rng.standard_normal((3, 5)), jnp.float32)
    g = lambda x: jnp.tanh(B @ x)  # noqa: E731
    before = dj.agop(g, X)
    B = B * 3.0  # the name g reads is rebound
    np.testing.assert_allclose(dj.agop(g, X), _jacobian_agop64(g, X), rtol=1e-5, atol=1e-7)
    assert not np.allclose(before, dj.agop(g, X))


def test_agop_of_a_cnn_wrapper_follows_training_and_compiles_once():
    """A closure reshaping flat rows for a CNN: after each of 3 optimiser steps its AGOP
    equals ``vmap(jacrev)`` of the same closure, and the AGOP program is compiled once."""
    cnn = _SmallCNN(nnx.Rngs(0))
    X = np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32)
    Y = jax.nn.one_hot(np.arange(16) % 3, 3)
    optimizer = nnx.Optimizer(cnn, optax.sgd(0.5), wrt=nnx.Param)

    @nnx.jit
    def step(cnn, optimizer):
        loss = lambda m: jnp.mean((m(X.reshape(-1, 8, 8, 1)) - Y) ** 2)  # noqa: E731
        optimizer.update(cnn, nnx.grad(loss)(cnn))

    f = lambda x: cnn(x.reshape(8, 8, 1))  # noqa: E731
    gop._agop_autodiff.clear_cache()
    traces = []
    for _ in range(3):
        step(cnn, optimizer)
        want = _jacobian_agop64(f, X)
        np.testing.assert_allclose(dj.agop(f, X), want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max())
        traces.append(np.trace(want))
    assert len(set(traces)) == 3  # the weights did move
    assert gop._agop_autodiff._cache_size() == 1


def test_agop_compiles_once_for_a_module_and_a_pure_function(rng):
    """New weights are new data: a module, a closure over it and a module-level function
    with its parameters as an argument each compile once over three weight values."""
    X = rng.standard_normal((10, 5)).astype(np.float32)
    lin = nnx.Linear(5, 2, rngs=nnx.Rngs(0))

    def pure(x, W):
        return jnp.tanh(W @ x)

    for fn, args in ((lin, ()), (lambda x: lin(x), ()), (pure, (lin.kernel[...].T,))):
        gop._agop_autodiff.clear_cache()
        for scale in (1.0, 2.0, 3.0):
            lin.kernel[...] = lin.kernel[...] * scale
            dj.agop(fn, X, *args)
        assert gop._agop_autodiff._cache_size() == 1


def test_agop_composes_with_jit_grad_and_vmap_through_what_f_closes_over(rng):
    """Closed-over arrays are arguments of the program, so an outer ``jit``, ``grad`` and
    ``vmap`` reach them as they reach ``*args``: the same values and gradients."""
    X = jnp.asarray(rng.standard_normal((10, 3)), jnp.float32)
    B = jnp.asarray(rng.standard_normal((2, 3)), jnp.float32)

    def closed(B):
        return jnp.trace(dj.agop(lambda x: jnp.tanh(B @ x), X))

    def passed(B):
        return jnp.trace(dj.agop(lambda x, B: jnp.tanh(B @ x), X, B))

    np.testing.assert_allclose(jax.jit(closed)(B), passed(B), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(closed)(B), jax.grad(passed)(B), rtol=1e-6)
    Bs = jnp.stack([B, 2.0 * B])
    np.testing.assert_allclose(jax.vmap(closed)(Bs), [passed(B), passed(2.0 * B)], rtol=1e-6)


def test_agop_keeps_programs_apart_that_differ_only_in_a_number(rng):
    """Closed-over Python numbers are part of the program: a different number is a
    different answer, never a cached one."""
    X = rng.standard_normal((6, 3)).astype(np.float32)
    for c in (1.0, 2.0):
        scaled = lambda x: c * x  # noqa: E731, B023 - c is read at call time, as tested
        np.testing.assert_allclose(dj.agop(scaled, X), c * c * np.eye(3), rtol=1e-6)


# -------------------------------------------------------------- NaN in, NaN or an error out


@pytest.mark.parametrize("family", ["laplace", "matern32", "matern52", "gaussian"])
def test_a_nan_row_predicts_nan_and_leaves_the_other_rows(rng, family):
    """``predict`` at a row holding a NaN is NaN in every output (the Laplace and Matérn
    kernels once gave finite values there: the square root's guard mapped NaN to 0); the
    other rows are what they are without it. The kernel AGOP's weights keep the NaN too."""
    X = rng.standard_normal((40, 4)).astype(np.float32)
    Y = rng.standard_normal((40, 3)).astype(np.float32)
    p = dj.fit(dj.Kernel(family, 2.0), X, Y, 1e-2)
    Xq = rng.standard_normal((3, 4)).astype(np.float32)
    Xn = Xq.copy()
    Xn[0, 1] = np.nan
    out = np.asarray(p.predict(Xn))
    assert np.isnan(out[0]).all()
    np.testing.assert_array_equal(out[1:], np.asarray(p.predict(Xq))[1:])
    G = np.asarray(dj.kernel_gradients(jnp.asarray(Xn), p.kernel, p.centers, p.coefs))
    assert np.isnan(G[0]).all() and np.isfinite(G[1:]).all()


def test_fit_refuses_nan_eagerly_and_reports_it_checked(rng):
    X = rng.standard_normal((20, 3)).astype(np.float32)
    Y = rng.standard_normal((20, 2)).astype(np.float32)
    Xn = X.copy()
    Xn[4, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        dj.fit(dj.Kernel("laplace", 2.0), Xn, Y)
    with pytest.raises(ValueError, match="Y contains NaN"):
        dj.fit(dj.Kernel("laplace", 2.0), X, np.where(np.arange(20)[:, None] == 3, np.inf, Y))
    traced = jax.jit(lambda X: dj.fit(dj.Kernel("laplace", 2.0), X, Y).coefs)
    assert np.isnan(np.asarray(traced(Xn))).any()  # unchecked: the documented NaN
    with pytest.raises(checkify.JaxRuntimeError, match="X contains NaN"):
        dj.checked(traced)(Xn)


# -------------------------------------------------------------- collapse metrics under jit


def _nc1_reference(H, y, C):
    """The paper's ``tr(Sigma_W) / tr(Sigma_B)`` in float64 (DESIGN.md's definitions)."""
    H = np.asarray(H, np.float64)
    means = np.stack([H[y == c].mean(0) for c in range(C)])
    within = sum(((H[y == c] - means[c]) ** 2).sum() for c in range(C)) / len(H)
    centred = means - means.mean(0)
    return within / ((centred ** 2).sum() / C)


@pytest.mark.slow
def test_traced_collapse_metrics_are_nan_or_an_error_for_labels_they_cannot_use(rng):
    """Under ``jit``: a class with no sample, or a label out of range, make every float
    field NaN (a stray label once gave a finite NC1 from part of the data) and
    ``dnc_jax.checked`` reports it; valid labels give the float64 reference."""
    H = rng.standard_normal((60, 5)).astype(np.float32)
    y = np.arange(60) % 3
    np.testing.assert_allclose(
        jax.jit(lambda H, y: dj.collapse_metrics(H, y, num_classes=3))(H, y).nc1,
        _nc1_reference(H, y, 3), rtol=1e-4)
    y_stray = y.copy()
    y_stray[0] = 7
    cases = ((4, y, "every class of 0..3 must occur"), (3, y_stray, "labels must lie in 0..2"),
             (3, y - 1, "labels must lie in 0..2"))
    for C, labels, message in cases:
        fn = jax.jit(lambda H, y, C=C: dj.collapse_metrics(H, y, num_classes=C))
        out = fn(H, labels)
        floats = [v for k, v in out._asdict().items()
                  if v is not None and k not in ("num_classes", "num_samples", "nc1_pinv_rank")]
        assert all(np.isnan(np.asarray(v)) for v in floats)
        assert int(out.nc1_pinv_rank) == -1
        with pytest.raises(checkify.JaxRuntimeError, match=message):
            dj.checked(fn)(H, labels)
    Hn = H.copy()
    Hn[3, 3] = np.inf
    with pytest.raises(checkify.JaxRuntimeError, match="features contain NaN"):
        dj.checked(jax.jit(lambda H: dj.collapse_metrics(H, y, num_classes=3)))(Hn)


# -------------------------------------------------------------- hyperparameters and options


def test_a_bandwidth_that_is_not_positive_is_refused_or_nan(rng):
    """``laplace_kernel(X, X, -1)`` once returned ``exp(+r)``: eagerly a ValueError, under
    jit NaN (the documented answer) or a checked error."""
    X = rng.standard_normal((4, 3)).astype(np.float32)
    for bad in (-1.0, 0.0):
        with pytest.raises(ValueError, match="bandwidth must be a positive"):
            dj.laplace_kernel(X, X, bad)
        for family in ("laplace", "gaussian", "l1_laplace", "matern32"):
            traced = jax.jit(lambda L, family=family: dj.kernel_matrix(X, X, family, L))
            assert np.isnan(np.asarray(traced(bad))).all()
            with pytest.raises(checkify.JaxRuntimeError, match="bandwidth must be a positive"):
                dj.checked(traced)(bad)
    with pytest.raises(ValueError, match="reg must be a non-negative"):
        dj.fit(dj.Kernel("laplace", 1.0), X, X, -1.0)
    with pytest.raises(checkify.JaxRuntimeError, match="reg must be a non-negative"):
        dj.checked(jax.jit(lambda r: dj.fit(dj.Kernel("laplace", 1.0), X, X, r).coefs))(-1.0)


def test_kernels_without_a_bandwidth_ignore_it_and_keep_their_registry_name(rng):
    """``Kernel("relu_ntk", -1.0)`` is the NTK (it once was refused, naming "relu_ntk_1"),
    and every built-in family's name maps back to the family."""
    X = rng.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(dj.Kernel("relu_ntk", -1.0).check()(X, X),
                                  dj.Kernel("relu_ntk", 1.0)(X, X))
    from dnc_jax.kernels import FAMILIES, ArcCosine, family_of, kernel_name

    for name, family in FAMILIES.items():
        assert kernel_name(family) == name and family_of(kernel_name(family)) == family
    deep = ArcCosine("nngp", 3)
    assert family_of(kernel_name(deep)) == deep


# -------------------------------------------------------------- layer_analysis's activation


class _TanhNet(nnx.Module):
    """A user's module: a ``layers`` list and a callable activation (``jnp.tanh``)."""

    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Linear(5, 8, use_bias=False, rngs=rngs),
                                nnx.Linear(8, 8, use_bias=False, rngs=rngs),
                                nnx.Linear(8, 3, use_bias=False, rngs=rngs)])
        self.activation = jnp.tanh

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


def test_layer_analysis_uses_the_modules_own_callable_activation(rng):
    """It once applied ReLU to a tanh network (NC1 0.614 against 0.420): the output
    point's NC1 equals a float64 reference through tanh, and the AGOP that of the module."""
    model = _TanhNet(nnx.Rngs(0))
    X = rng.standard_normal((60, 5)).astype(np.float32)
    y = np.arange(60) % 3
    records = dj.layer_analysis(model, X, y)
    W0 = np.asarray(model.layers[0].kernel[...], np.float64)
    want = _nc1_reference(np.tanh(X.astype(np.float64) @ W0), y, 3)
    np.testing.assert_allclose(records[0].output.nc1, want, rtol=1e-4)
    relu = _nc1_reference(np.maximum(X.astype(np.float64) @ W0, 0.0), y, 3)
    assert abs(relu - want) > 1e-2 * want  # the test can tell the two activations apart
    with pytest.raises(ValueError, match="do not reproduce its own outputs"):
        dj.layer_analysis(model, X, y, activation="relu")


# -------------------------------------------------------------- every kernel, self-contained models


def _small_task(rng, n=48, d=6, C=3):
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.arange(n) % C
    X[np.arange(n), y] += 2.0  # a learnable signal
    return X, y


CAUCHY = dj.radial_kernel(lambda t: 1.0 / (1.0 + t ** 2), name="cauchy")


def _deep_rfm_save_load_predict(X, y, kernel, tmp_path, **options):
    options.setdefault("bandwidth", 3.0)  # not the default 2.0: the saved one must be used
    records, model = dj.deep_rfm(X, y, depth=2, width=16, kernel=kernel, return_model=True,
                                 **options)
    path = str(tmp_path / f"model-{dj.kernels.kernel_name(kernel)}.npz")
    dj.save_deep_rfm(model, path)
    user = not isinstance(kernel, str) and kernel not in dj.kernels.FAMILIES.values()
    loaded = dj.load_deep_rfm(path, kernel=kernel if user else None)
    np.testing.assert_array_equal(np.asarray(loaded.predict(X)), np.asarray(model.predict(X)))
    return records, model, path


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["relu_ntk", CAUCHY])
def test_deep_rfm_fits_saves_and_loads_other_kernels(rng, tmp_path, kernel):
    """``deep_rfm(kernel="relu_ntk")`` once stopped ("runs on one device; pass ... without a
    mesh" with no mesh passed); saved, its name did not load back; a user radial kernel is
    given back at ``load(kernel=...)`` and refused without it."""
    X, y = _small_task(rng)
    records, _, path = _deep_rfm_save_load_predict(X, y, kernel, tmp_path)
    assert records[-1].train_accuracy > 0.9
    if kernel is CAUCHY:
        with pytest.raises(ValueError, match="user kernel .'cauchy'.*load\\(..., kernel="):
            dj.load_deep_rfm(path)
        with pytest.raises(ValueError, match="fitted with the kernel 'cauchy'"):
            dj.load_deep_rfm(path, kernel=dj.kernels.MATERN32)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", [*dj.kernels.KERNELS, CAUCHY])
def test_deep_rfm_with_every_family_saves_loads_and_predicts_alike(rng, tmp_path, kernel):
    """Every built-in family and a user radial kernel, at a non-default bandwidth (the
    saved bandwidth is the fitted one, not 2.0), through Deep RFM, save and load."""
    X, y = _small_task(rng)
    _, model, _ = _deep_rfm_save_load_predict(X, y, kernel, tmp_path, bandwidth=3.5)
    assert float(model.layers[0].predictor.bandwidth) == 3.5


@pytest.mark.slow
def test_a_model_fitted_on_four_devices_predicts_on_one_after_load(rng, tmp_path):
    """A ``DeepRFM`` built with ``mesh=`` once failed ``predict(X)`` ("sharded over another
    mesh than the one passed", none passed): it predicts on its own mesh, on another
    mesh, and on one device after save and load, all equal to the one-device fit."""
    X, y = _small_task(rng, n=50)
    mesh = dj.data_mesh("all")
    assert mesh.devices.size == 4
    _, sharded = dj.deep_rfm(X, y, depth=2, width=16, mesh=mesh, return_model=True)
    _, single = dj.deep_rfm(X, y, depth=2, width=16, return_model=True)
    want = np.asarray(single.predict(X))
    # the solve and the sums over 50 centres run in another order on 4 devices: float32
    # rounding of a well-conditioned (ridge 1e-3, unit rows) system, well inside 1e-4
    tol = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(sharded.predict(X)), want, **tol)
    np.testing.assert_allclose(np.asarray(sharded.predict(X, mesh=dj.data_mesh(2))), want, **tol)
    path = str(tmp_path / "sharded.npz")
    dj.save_deep_rfm(sharded, path)
    loaded = dj.load_deep_rfm(path)
    assert loaded.layers[0].predictor.mesh is None
    np.testing.assert_allclose(np.asarray(loaded.predict(X)), want, **tol)


def test_a_sharded_estimator_and_model_pickle_and_predict(rng):
    """``pickle`` of a fitted ``RFMClassifier(devices="all")`` once failed ("cannot pickle
    'Device' object"): it pickles, and the copy predicts what the original does."""
    import pickle

    X, y = _small_task(rng, n=50)
    est = dj.RFMClassifier(devices="all", iters=1, bandwidth=5.0).fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(copy.decision_function(X), est.decision_function(X),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(copy.predict(X), est.predict(X))
    _, model = dj.deep_rfm(X, y, depth=1, width=16, mesh=dj.data_mesh("all"), return_model=True)
    again = pickle.loads(pickle.dumps(model))  # on one device now: sums in another order
    np.testing.assert_allclose(np.asarray(again.predict(X)), np.asarray(model.predict(X)),
                               rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------- options and labels


def test_misspelt_options_are_refused_where_they_are_used(rng):
    """``RFMClassifier(normalize="l2")`` once fitted with no normalisation; the same option
    of ``fit_rfm`` and ``rfm_step``, and unknown kernels, are refused before any work."""
    X, y = _small_task(rng, n=30)
    with pytest.raises(ValueError, match="normalize must be one of .*got 'l2'"):
        dj.RFMClassifier(normalize="l2", iters=1).fit(X, y)
    Y = dj.data.one_hot_pm1(y, 3)
    with pytest.raises(ValueError, match="normalize must be one of"):
        dj.fit_rfm(X, Y, normalize="L2", iters=1)
    with pytest.raises(ValueError, match="normalize must be one of"):
        dj.rfm_step(dj.Kernel("laplace", 2.0), X, Y, normalize="maximum")
    with pytest.raises(ValueError, match="Unknown kernel 'laplacian'"):
        dj.RFMClassifier(kernel="laplacian", iters=1).fit(X, y)
    with pytest.raises(ValueError, match="iters must be an int >= 0"):
        dj.fit_rfm(X, Y, iters=-1)


def test_labels_that_are_not_class_indices_get_a_message_that_says_so(rng):
    """One-hot targets and string labels once failed deep inside numpy ("operands could
    not be broadcast", "invalid literal for int()", ``UFuncTypeError``)."""
    X, y = _small_task(rng, n=30)
    strings = np.array(["cat", "dog", "emu"])[y]
    for call in (lambda labels: dj.deep_rfm(X, labels, depth=1, width=8),
                 lambda labels: dj.prepare(X, labels)):
        with pytest.raises(ValueError, match="one-hot or .*argmax along axis 1"):
            call(dj.data.one_hot_pm1(y, 3))
        with pytest.raises(ValueError, match="integer class labels.*LabelEncoder"):
            call(strings)
    with pytest.raises(ValueError, match="y_train holds label 2 but num_classes is 2"):
        dj.deep_rfm(X, y, depth=1, width=8, num_classes=2)


# -------------------------------------------------------------- the gradient with respect to M


@pytest.mark.slow
def test_the_gradient_with_respect_to_the_metric_is_symmetric(rng):
    """A loss through the kernel in metric ``M`` once had ``max |g - g^T|`` 4.4e-3 against
    ``max |g|`` 7.2e-3: a gradient step left the symmetric matrices. Now ``g`` is
    symmetric, and equals the symmetric part of a float64 finite-difference gradient."""
    X = rng.standard_normal((10, 4))
    Z = rng.standard_normal((12, 4))
    weights = rng.standard_normal((10, 12))
    B = rng.standard_normal((4, 4))
    M0 = B @ B.T / 4 + np.eye(4)

    def loss(M):
        return jnp.sum(dj.Kernel("laplace", 2.0, M)(jnp.asarray(X, jnp.float32),
                                                     jnp.asarray(Z, jnp.float32)) * weights)

    g = np.asarray(jax.grad(loss)(jnp.asarray(M0, jnp.float32)), np.float64)
    assert np.abs(g - g.T).max() <= 1e-6 * np.abs(g).max()

    def reference(M):  # float64, the metric's symmetric part
        Ms = (M + M.T) / 2
        diff = X[:, None, :] - Z[None, :, :]
        r = np.sqrt(np.einsum("nmi,ij,nmj->nm", diff, Ms, diff))
        return np.sum(np.exp(-r / 2.0) * weights)

    h = 1e-6
    fd = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            E = np.zeros((4, 4))
            E[i, j] = h
            fd[i, j] = (reference(M0 + E) - reference(M0 - E)) / (2 * h)
    # float32 kernel values (relative rounding ~1e-7 per entry, 120 terms) against a
    # float64 central difference (error ~h^2): 1e-3 of the gradient's scale is ample
    np.testing.assert_allclose(g, fd, atol=1e-3 * np.abs(fd).max())


# -------------------------------------------------------------- values computed in the test


@pytest.mark.parametrize("family", ["laplace", "gaussian", "matern32"])
def test_a_fit_in_a_metric_equals_a_float64_solve_built_here(rng, family):
    """``fit(Kernel(family, L, M))`` against a kernel matrix built here in that metric
    (``k(x, z) = phi(sqrt((x - z)^T M (x - z)) / L)``) and ``numpy.linalg.solve``: the
    coefficients and the predictions at new points, so the solve and the prediction
    cannot disagree about ``M`` unnoticed."""
    profiles = {"laplace": lambda t: np.exp(-t), "gaussian": lambda t: np.exp(-t ** 2 / 2),
                "matern32": lambda t: (1 + np.sqrt(3) * t) * np.exp(-np.sqrt(3) * t)}
    X = rng.standard_normal((30, 4))
    Y = rng.standard_normal((30, 2))
    Xq = rng.standard_normal((5, 4))
    B = rng.standard_normal((4, 4))
    M, L, reg = B @ B.T / 4 + 0.5 * np.eye(4), 1.7, 1e-1

    def gram(P, Q):
        diff = P[:, None, :] - Q[None, :, :]
        return profiles[family](np.sqrt(np.einsum("nmi,ij,nmj->nm", diff, M, diff)) / L)

    coefs = np.linalg.solve(gram(X, X) + reg * np.eye(30), Y)
    f32 = np.float32
    p = dj.fit(dj.Kernel(family, L, M.astype(f32)), X.astype(f32), Y.astype(f32), reg)
    # float32 kernel entries (~1e-7 relative) through a system of condition number
    # ~ (1 + 30) / 0.1 ~ 300: coefficients to ~1e-4 relative, predictions likewise
    np.testing.assert_allclose(p.coefs, coefs, rtol=0, atol=3e-4 * np.abs(coefs).max())
    want = gram(Xq, X) @ coefs
    np.testing.assert_allclose(p.predict(Xq.astype(f32)), want, rtol=0,
                               atol=3e-4 * np.abs(want).max())


def _distance_change_here(old, new, pairs, power):
    """The adaptive rule's quantity computed here: ``r_p(A) = delta_p^T (A / tr A)^s delta_p``
    (``s = power``, the power from numpy's ``eigh``), rms change relative to the new rms."""
    def r(A):
        A = A / np.trace(A)
        w, V = np.linalg.eigh((A + A.T) / 2)
        P = (V * np.clip(w, 0, None) ** power) @ V.T
        return np.einsum("pi,ij,pj->p", pairs, P, pairs)

    r_old, r_new = r(old), r(new)
    return np.sqrt(np.mean((r_new - r_old) ** 2)) / np.sqrt(np.mean(r_new ** 2))


@pytest.mark.slow
@pytest.mark.parametrize("power", [0.5, 1.5])
def test_the_adaptive_rule_at_a_metric_power_replayed_with_a_power_computed_here(rng, power):
    """``adaptive_kernel_agop(power=s)`` stops at the round the rule gives when the metric
    ``(A / tr A)^s`` is computed in the test (tolerances 1% either side of each round's
    change), and the two powers' changes differ, so a power ignored would be seen."""
    from dnc_jax.gradient_outer_product import AUTO_PAIRS, row_order

    pred, X = adaptive_problem(rng)
    order = row_order(3000, 5)
    pairs = np.asarray(X[order[:AUTO_PAIRS]] - X[order[AUTO_PAIRS:2 * AUTO_PAIRS]], np.float64)
    counts = [200, 400, 800, 1600, 3000]
    fixed = [np.asarray(dj.kernel_agop(pred, X, samples=m, seed=5), np.float64) for m in counts]
    changes = [_distance_change_here(a, b, pairs, power) for a, b in zip(fixed, fixed[1:],
                                                                          strict=False)]
    at_one = [_distance_change_here(a, b, pairs, 1.0) for a, b in zip(fixed, fixed[1:],
                                                                       strict=False)]
    assert all(abs(c - c1) > 1e-2 * c for c, c1 in zip(changes, at_one, strict=True))
    assert_adaptive_rule_replayed(pred, X, counts, changes, power)


def test_fit_rfm_judges_its_adaptive_sample_in_the_metric_its_kernel_uses(rng, monkeypatch):
    """RFM's kernel sees ``x A^p``, so its metric is ``A^(2p)``: the adaptive rule must
    weigh distances at the power ``2 p`` (computed here), for every ``agop_power``."""
    import dnc_jax.rfm as rfm_module

    seen = []
    real = rfm_module.adaptive_kernel_agop_checked

    def spy(*args, **kwargs):
        seen.append(kwargs["power"])
        return real(*args, **kwargs)

    monkeypatch.setattr(rfm_module, "adaptive_kernel_agop_checked", spy)
    X, y = _small_task(rng, n=60)
    Y = dj.data.one_hot_pm1(y, 3)
    for p in (0.25, 0.5, 0.75):
        seen.clear()
        dj.fit_rfm(X, Y, iters=2, agop_power=p, agop_samples="auto")
        assert seen == [2 * p, 2 * p]


def test_prepare_scales_both_splits_before_the_statistics(rng):
    """``input_scale`` multiplies the training and the test split, before the training
    mean and std (computed here) standardise both."""
    X = rng.integers(0, 256, (40, 5)).astype(np.float64)
    Xt = rng.integers(0, 256, (10, 5)).astype(np.float64)
    y, yt = np.arange(40) % 2, np.arange(10) % 2
    s = 1 / 255
    raw = dj.prepare(X, y, Xt, yt, input_scale=s, standardize_features=False)
    np.testing.assert_allclose(raw.X_train, X * s, rtol=1e-6)
    np.testing.assert_allclose(raw.X_test, Xt * s, rtol=1e-6)
    std = dj.prepare(X, y, Xt, yt, input_scale=s)
    mean, sd = (X * s).mean(0), (X * s).std(0)
    np.testing.assert_allclose(std.X_train, (X * s - mean) / sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.X_test, (Xt * s - mean) / sd, rtol=1e-5, atol=1e-5)


def test_a_radial_family_is_the_profile_it_was_made_from(rng):
    """A family is static under jit: held by its profile's identity, a number the profile
    reads could change under a compiled program (its first value kept by some programs,
    the new one used by others). The family is a value now: the profile is read when the
    family is made; a later change needs a new family, which then gives the new kernel;
    families made from the same body are equal; arrays closed over are refused."""
    X = rng.standard_normal((20, 3)).astype(np.float32)
    Y = X[:, :1]
    scale = 2.0
    family = dj.radial_kernel(lambda t: 1.0 / (1.0 + scale * t ** 2), name="cauchy")
    first = dj.fit(dj.Kernel(family, 1.0), X, Y).predict(X)
    scale = 3.0
    np.testing.assert_array_equal(dj.fit(dj.Kernel(family, 1.0), X, Y).predict(X), first)
    np.testing.assert_array_equal(dj.fit(dj.Kernel(family, 1.0), X[:15], Y[:15]).predict(X),
                                  dj.fit(dj.Kernel(dj.radial_kernel(
                                      lambda t: 1.0 / (1.0 + 2.0 * t ** 2), name="cauchy"),
                                      1.0), X[:15], Y[:15]).predict(X))  # new shapes, same
    remade = dj.radial_kernel(lambda t: 1.0 / (1.0 + scale * t ** 2), name="cauchy")
    written = dj.radial_kernel(lambda t: 1.0 / (1.0 + 3.0 * t ** 2), name="cauchy")
    assert remade == written and hash(remade) == hash(written) and remade != family
    t = np.linspace(0.0, 3.0, 7, dtype=np.float32)
    np.testing.assert_allclose(remade.profile(t), 1.0 / (1.0 + 3.0 * t ** 2), rtol=1e-6)
    weights = jnp.ones(())
    with pytest.raises(ValueError, match="must not close over arrays"):
        dj.radial_kernel(lambda t: weights * jnp.exp(-t))


def test_a_custom_feature_map_reads_the_numbers_it_closes_over(rng):
    """Deep RFM's feature map is a static argument of its jitted map: compared by identity
    it kept the first value of a number its function reads."""
    X, y = _small_task(rng, n=30)
    slope = 1.0

    def leaky(pre):
        return jnp.where(pre > 0, pre, slope * 0.1 * pre)

    first = np.asarray(dj.deep_rfm(X, y, depth=1, width=8, features=leaky,
                                   return_model=True)[1].transform(X))
    slope = 2.0
    again = np.asarray(dj.deep_rfm(X, y, depth=1, width=8, features=leaky,
                                   return_model=True)[1].transform(X))
    written = np.asarray(dj.deep_rfm(
        X, y, depth=1, width=8, features=lambda pre: jnp.where(pre > 0, pre, 0.2 * pre),
        return_model=True)[1].transform(X))
    np.testing.assert_array_equal(again, written)
    assert not np.array_equal(first, again)


def test_a_model_keeps_its_preparation_and_takes_raw_rows(rng, tmp_path):
    """``prepare`` kept no mean or std, so a fitted model could not take raw new data: the
    ``Standardization`` it returns maps raw rows as the training rows were (checked with a
    mean and std computed here), and a model that keeps it predicts raw rows as the
    prepared ones, also after save and load; each call says which rows it passes."""
    X = rng.normal(3.0, 5.0, (40, 6))
    y = np.arange(40) % 3
    X[np.arange(40), y] += 10.0
    Xt = rng.normal(3.0, 5.0, (8, 6))
    data = dj.prepare(X, y, Xt, np.arange(8) % 3, input_scale=0.5)
    mean, std = (0.5 * X).mean(0), (0.5 * X).std(0)
    np.testing.assert_allclose(data.standardization.apply(Xt), (0.5 * Xt - mean) / std,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.standardization.apply(Xt), data.X_test)
    _, model = dj.deep_rfm(data.X_train, data.y_train, depth=1, width=8, return_model=True,
                           preparation=data.standardization)
    _, bare = dj.deep_rfm(data.X_train, data.y_train, depth=1, width=8, return_model=True)
    np.testing.assert_array_equal(np.asarray(model.predict(Xt, raw=True)),
                                  np.asarray(bare.predict(data.X_test)))
    np.testing.assert_array_equal(np.asarray(model.predict(data.X_test, raw=False)),
                                  np.asarray(bare.predict(data.X_test)))
    with pytest.raises(ValueError, match="pass raw=True for raw rows"):
        model.predict(Xt)  # which rows these are is not guessed
    with pytest.raises(ValueError, match="has no preparation"):
        bare.predict(Xt, raw=True)
    path = str(tmp_path / "prepared.npz")
    dj.save_deep_rfm(model, path)
    np.testing.assert_array_equal(np.asarray(dj.load_deep_rfm(path).predict(Xt, raw=True)),
                                  np.asarray(model.predict(Xt, raw=True)))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["relu_ntk", "l1_laplace", "quadratic"])
def test_a_non_radial_kernel_agop_on_four_devices_equals_one_device(rng, family):
    """The autodiff AGOP of a kernel without a closed form, on a mesh (replicated centres,
    and centres sharded by a CG fit on the mesh: a ring over the shards) equals the
    one-device ``vmap(jacrev)`` of the predictor, computed here in float64."""
    X, _, Y = _data_for_agop(rng)
    mesh = dj.data_mesh("all")
    one = dj.fit(dj.Kernel(family, 2.0), X, Y, 1e-1)
    want, bound = _agop_and_rounding_bound(one, X)
    np.testing.assert_array_less(np.abs(dj.kernel_agop(one, X, mesh=mesh) - want), bound)
    sharded, _ = dj.fit_kernel_ridge(X, Y, kernel=family, bandwidth=2.0, reg=1e-1, mesh=mesh,
                                     solver="cg", tol=1e-7)
    assert sharded.mesh is not None
    n = X.shape[0]  # the centres past n are the mesh's padding (zero coefficients)
    alone = dj.KernelPredictor(dj.Kernel(family, 2.0), jnp.asarray(np.asarray(sharded.centers)[:n]),
                               jnp.asarray(np.asarray(sharded.coefs)[:n]))
    want, bound = _agop_and_rounding_bound(alone, X)
    np.testing.assert_array_less(np.abs(dj.kernel_agop(sharded, X) - want), bound)


def _agop_and_rounding_bound(predictor, X):
    """``mean J^T J`` of the float32 ``vmap(jacrev)`` of ``predictor`` (summed in float64),
    and a bound on what float32 rounding in two such computations can move it by: each
    ``J_i = sum_j alpha_j grad k(x_i, x_j)`` is a float32 sum of ``m`` terms, off by at
    most ``(m + 4) eps`` times ``sum_j |alpha_j| |grad k(x_i, x_j)|`` (the per-centre
    gradients computed here in float64; a few ulps more for the kernel's own value), and
    ``A`` moves by ``(1/N) sum_i (|J_i|^T dJ_i + dJ_i^T |J_i|)``, twice (both sides)."""
    J = np.asarray(jax.vmap(jax.jacrev(predictor.predict_one))(jnp.asarray(X)), np.float64)
    want = np.einsum("ncd,nce->de", J, J) / X.shape[0]
    centers, coefs = (np.asarray(a, np.float64) for a in (predictor.centers, predictor.coefs))
    with jax.enable_x64(True):
        kernel = dj.Kernel(predictor.kernel.family, np.float64(predictor.bandwidth))

        def grad_k(x, z):
            return jax.grad(lambda x: kernel(x[None], z[None])[0, 0])(x)

        G = np.asarray(jax.vmap(lambda x: jax.vmap(lambda z: grad_k(x, z))(centers))(
            np.asarray(X, np.float64)))  # (N, m, d)
    eps = np.finfo(np.float32).eps
    dJ = (centers.shape[0] + 4) * eps * np.einsum("jc,njd->ncd", np.abs(coefs), np.abs(G))
    one_side = np.einsum("ncd,nce->de", np.abs(J), dJ) / X.shape[0]
    return want, 2 * (one_side + one_side.T) + np.finfo(np.float32).tiny


def _data_for_agop(rng, n=30, d=4):
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.arange(n) % 3
    return X, y, dj.data.one_hot_pm1(y, 3)
