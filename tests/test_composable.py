"""The public functions compose with JAX's transformations: ``jit``, ``vmap``, ``grad``,
and Flax NNX modules read at call time."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dnc_jax import agop


class _TwoLayer(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(5, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def _jacobian_agop(model, X):
    """Plain ``vmap(jacrev)`` of the module as it is now: ``mean J^T J``."""
    J = jax.vmap(jax.jacrev(model))(X)
    return jnp.einsum("ncd,nce->de", J, J) / X.shape[0]


def test_agop_of_an_nnx_module_follows_its_training(key):
    """After each of 3 optimiser steps the AGOP is that of the current weights, eagerly and
    under ``nnx.jit`` (a module cached by identity would keep its first weights)."""
    k_x, k_y = jax.random.split(key)
    X = jax.random.normal(k_x, (32, 5))
    Y = jax.random.normal(k_y, (32, 3))
    model = _TwoLayer(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.mean((jax.vmap(m)(X) - Y) ** 2))(model)
        optimizer.update(model, grads)

    @nnx.jit
    def jitted(model, X):
        return agop(model, X)

    traces = []
    for _ in range(3):
        step(model, optimizer)
        ref = _jacobian_agop(model, X)
        for got in (agop(model, X), jitted(model, X)):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * float(jnp.abs(ref).max()))
        traces.append(float(jnp.trace(ref)))
    assert len(set(traces)) == 3  # the weights did move


def test_agop_under_jit_equals_eager(rng):
    X = jnp.asarray(rng.standard_normal((20, 4)), jnp.float32)
    B = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)

    def f(x, B):
        return jnp.tanh(B @ x)

    eager = agop(f, X, B, batch_size=8, centered=True)
    jitted = jax.jit(lambda X, B: agop(f, X, B, batch_size=8, centered=True))(X, B)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- kernels as values, fit

import pytest  # noqa: E402

from dnc_jax import Kernel, fit, fit_kernel_predictor, kernel_agop, matrix_power  # noqa: E402
from dnc_jax.kernels import KERNELS, radial_kernel  # noqa: E402

RADIAL = ("laplace", "gaussian", "matern32", "matern52")


def _problem(rng, dtype, n=40, d=4, C=2):
    X = rng.standard_normal((n, d)).astype(dtype)
    Y = np.sin(X[:, :C] * 1.3).astype(dtype)
    A = rng.standard_normal((d, d)) / np.sqrt(d)
    M = (A @ A.T + 0.5 * np.eye(d)).astype(dtype)
    return jnp.asarray(X), jnp.asarray(Y), jnp.asarray(M)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_jit_of_fit_predict_and_agops_equals_eager(rng, dtype, tol):
    with jax.enable_x64(dtype == np.float64):
        X, Y, M = _problem(rng, dtype)
        kernel = Kernel("laplace", 2.0, M)

        def run(X, Y, kernel):
            pred = fit(kernel, X, Y, 0.1)
            return pred.coefs, pred.predict(X[:7] * 0.9), kernel_agop(pred, X), \
                agop(pred.predict_one, X[:9])

        eager, jitted = run(X, Y, kernel), jax.jit(run)(X, Y, kernel)
        for a, b in zip(eager, jitted, strict=True):
            scale = float(jnp.abs(a).max())
            np.testing.assert_allclose(b, a, rtol=0, atol=tol * 10 * scale)


def test_vmap_over_eight_bandwidths_equals_a_loop(rng):
    X, Y, _ = _problem(rng, np.float32)
    bandwidths = jnp.linspace(0.5, 4.0, 8)

    def fitted(L):
        pred = fit(Kernel("gaussian", L), X, Y, 1e-2)
        return pred.predict(X[:5] + 0.1), kernel_agop(pred, X)

    batched = jax.vmap(fitted)(bandwidths)
    for i, L in enumerate(bandwidths):
        single = fitted(L)
        for a, b in zip(batched, single, strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6 * float(jnp.abs(b).max()))


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_grad_of_validation_error_equals_finite_differences(rng, x64, solver):
    """d/d log L, d/d log reg and d/dM of a validation MSE (float64, central differences)."""
    X, Y, M = _problem(rng, np.float64, n=30)
    Xv, Yv = X[:8] * 0.7 + 0.2, Y[:8]

    def loss(log_L, log_reg, M):
        pred = fit(Kernel("laplace", jnp.exp(log_L), M), X, Y, jnp.exp(log_reg), solver=solver,
                   tol=1e-13)
        return jnp.mean((pred.predict(Xv) - Yv) ** 2)

    args = (jnp.log(2.0), jnp.log(1e-2), M)
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    h = 1e-5
    for i in (0, 1):
        plus, minus = list(args), list(args)
        plus[i], minus[i] = args[i] + h, args[i] - h
        fd = (loss(*plus) - loss(*minus)) / (2 * h)
        assert abs(float(grads[i]) - float(fd)) <= 1e-6 * abs(float(fd)) + 1e-12
    E = jnp.zeros_like(M).at[0, 1].set(1.0).at[1, 0].set(1.0)  # a symmetric direction
    fd = (loss(args[0], args[1], M + h * E) - loss(args[0], args[1], M - h * E)) / (2 * h)
    directional = float(jnp.sum(grads[2] * E))
    assert abs(directional - float(fd)) <= 1e-6 * abs(float(fd)) + 1e-12


def test_a_bandwidth_sweep_compiles_each_program_once(rng):
    """Five bandwidths: fit, predict and the kernel AGOP each compile once (the bandwidth
    is data)."""
    from dnc_jax.gradient_outer_product import _kernel_agop
    from dnc_jax.predictor import _predict

    X, Y, _ = _problem(rng, np.float32, n=33)
    fit_jit = jax.jit(fit, static_argnames=("solver", "tol", "max_iter"))
    sizes = []
    for L in (0.5, 1.0, 2.0, 3.0, 5.0):
        pred = fit_jit(Kernel("laplace", L), X, Y, 1e-2)
        pred.predict(X[:11])
        kernel_agop(pred, X, batch_size=16)
        sizes.append((fit_jit._cache_size(), _predict._cache_size(), _kernel_agop._cache_size()))
    assert sizes[-1] == sizes[0]
    # the shell's Cholesky fit compiles its kernel matrix once too
    from dnc_jax.solvers.cholesky import train_kernel_matrix

    before = None
    for L in (0.5, 1.0, 2.0):
        fit_kernel_predictor(X, Y, bandwidth=L, reg=1e-2)
        before = before or train_kernel_matrix._cache_size()
    assert train_kernel_matrix._cache_size() == before


def _matern32_by_hand(t):
    return (1.0 + jnp.sqrt(3.0) * t) * jnp.exp(-jnp.sqrt(3.0) * t)


@pytest.mark.parametrize("family", [*RADIAL, "user_matern32", "l1_laplace"])
def test_every_family_closed_form_agop_equals_autodiff(rng, x64, family):
    X, Y, M = _problem(rng, np.float64, n=25, d=3)
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

    X, _, M = _problem(rng, np.float64, n=12, d=3)
    user = radial_kernel(_matern32_by_hand)
    np.testing.assert_allclose(Kernel(user, 1.3, M)(X, X), Kernel("matern32", 1.3, M)(X, X),
                               rtol=1e-13)
    d2 = squared_distances(X, X, M)
    np.testing.assert_allclose(user.gradient_weights(d2, 1.3)[1],
                               MATERN32.gradient_weights(d2, 1.3)[1], rtol=1e-12)
    assert not user.steep and radial_kernel(lambda t: jnp.exp(-t)).steep


def test_matrix_power_under_jit_equals_eager(rng, x64):
    A = rng.standard_normal((5, 5))
    M = jnp.asarray(A @ A.T)
    for s in (0.5, -0.5, 1.0):
        np.testing.assert_allclose(jax.jit(matrix_power, static_argnums=1)(M, s),
                                   matrix_power(M, s), rtol=1e-9, atol=1e-12)


def test_bad_kernel_values_raise_clear_errors(rng):
    X, Y, _ = _problem(rng, np.float32, n=10)
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
    assert set(RADIAL) | {"l1_laplace", "relu_ntk", "relu_nngp"} == set(KERNELS)
    assert Kernel("laplace", np.float32(2.0)).check(4).bandwidth == 2.0  # numpy scalars


# ---------------------------------------------------------------- Deep RFM as a model


@pytest.mark.parametrize("devices", [None, "all"])
def test_deep_rfm_model_reproduces_the_run(tmp_path, devices):
    """``DeepRFM.transform`` of the training rows gives each layer's recorded features bit
    for bit; ``predict`` gives each layer's recorded train and test accuracy; a saved and
    loaded model maps new data the same way."""
    from dnc_jax import data_mesh, deep_rfm
    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.deep_rfm_model import DeepRFM, DeepRFMConfig, deep_rfm_layers, host_rows

    X, y = load_dataset("digits")
    Xt, yt = load_dataset("digits", split="test")
    data = prepare(X[:250], y[:250], Xt[:150], yt[:150])
    mesh = None if devices is None else data_mesh(devices)
    config = DeepRFMConfig(depth=3, width=40)
    states = list(deep_rfm_layers(data.X_train, data.y_train, data.X_test, data.y_test,
                                  config=config, mesh=mesh))
    records, model = deep_rfm(data.X_train, data.y_train, data.X_test, data.y_test, depth=3,
                              width=40, mesh=mesh, return_model=True)
    assert model.depth == 3
    for l, (record, state) in enumerate(states):
        np.testing.assert_array_equal(host_rows(model.transform(data.X_train, l + 1, mesh=mesh)),
                                      host_rows(state.X_train))
        for split, Xs, ys in (("train", data.X_train, data.y_train),
                              ("test", data.X_test, data.y_test)):
            out = np.asarray(model.predict(Xs, l, mesh=mesh))
            assert float(np.mean(np.argmax(out, axis=1) == ys)) == record[f"{split}_accuracy"]
        assert records[l]["test_accuracy"] == record["test_accuracy"]
    path = str(tmp_path / "model.npz")
    model.save(path)
    loaded = DeepRFM.load(path)
    # on 4 devices the fit is CG with sharded centres (a ring of partial sums); the loaded
    # model holds them whole: equal up to float32 summation order
    want = np.asarray(model.predict(data.X_test, mesh=mesh))
    np.testing.assert_allclose(np.asarray(loaded.predict(data.X_test, mesh=mesh)), want,
                               rtol=0, atol=1e-5 * np.abs(want).max())
    with pytest.raises(ValueError, match="layer must be in 0..3"):
        model.transform(data.X_train, 4)
    with pytest.raises(ValueError, match="layer must be in -3..2"):
        model.predict(data.X_train, 3)
    with pytest.raises(ValueError, match="features; the model takes"):
        model.transform(data.X_train[:, :5])


def test_a_run_saves_its_model_and_resumes_it(tmp_path):
    """``run_deep_rfm(save_model=True)`` (``--save-model``) writes each layer as it is
    committed; an interrupted and resumed run's folder loads as the model that
    ``deep_rfm`` returns, and it reproduces the run's recorded test accuracies."""
    from dnc_jax import DeepRFM, deep_rfm
    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.deep_rfm_model import DeepRFMConfig
    from dnc_jax.experiments import run_deep_rfm

    config = DeepRFMConfig(depth=3, width=40)
    out = str(tmp_path / "run")
    options = dict(dataset="digits", n=250, n_test=150, config=config, progress=False,
                   save_model=True)
    run_deep_rfm(out, stop_after=2, **options)
    assert len(DeepRFM.load(out).layers) == 2
    results = run_deep_rfm(out, **options)
    loaded = DeepRFM.load(out)
    assert loaded.depth == 3
    X, y = load_dataset("digits")
    Xt, yt = load_dataset("digits", split="test")
    data = prepare(X[:250], y[:250], Xt[:150], yt[:150])
    _, model = deep_rfm(data.X_train, data.y_train, depth=3, width=40, return_model=True)
    for l, record in enumerate(results["layers"]):
        out_l = np.asarray(loaded.predict(data.X_test, l))
        assert float(np.mean(np.argmax(out_l, axis=1) == data.y_test)) == record["test_accuracy"]
        np.testing.assert_array_equal(loaded.layers[l].root, model.layers[l].root)
    with pytest.raises(ValueError, match="no saved model"):
        DeepRFM.load(str(tmp_path))


def test_a_custom_feature_map_is_a_function(tmp_path):
    """ReLU written as a function gives the built-in ReLU run bit for bit; ``tanh`` builds
    a model that transforms new data, saves, and loads given the function again."""
    from dnc_jax import DeepRFM, deep_rfm
    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.deep_rfm_model import DeepRFMConfig
    from dnc_jax.experiments import run_deep_rfm

    X, y = load_dataset("digits")
    data = prepare(X[:200], y[:200])

    def relu_by_hand(pre):
        return jnp.maximum(pre, 0.0)

    builtin = deep_rfm(data.X_train, data.y_train, depth=2, width=30)
    custom = deep_rfm(data.X_train, data.y_train, depth=2, width=30, features=relu_by_hand)
    for a, b in zip(builtin, custom, strict=True):
        assert a["output"] == b["output"] and a["train_accuracy"] == b["train_accuracy"]
    _, model = deep_rfm(data.X_train, data.y_train, depth=2, width=30, features=jnp.tanh,
                        return_model=True)
    H = np.asarray(model.transform(data.X_train))
    assert H.shape == (200, 30) and np.abs(H).max() < 1 and (H < 0).any()  # tanh, not relu
    path = str(tmp_path / "tanh.npz")
    model.save(path)
    with pytest.raises(ValueError, match="custom feature map"):
        DeepRFM.load(path)
    np.testing.assert_array_equal(DeepRFM.load(path, features=jnp.tanh).transform(data.X_train),
                                  H)
    with pytest.raises(ValueError, match="must be a name"):
        run_deep_rfm(str(tmp_path / "run"), dataset="digits", n=100, progress=False,
                     config=DeepRFMConfig(depth=1, features=jnp.tanh))
    with pytest.raises(ValueError, match="or a function"):
        DeepRFMConfig(features="tanh").validate()


# ---------------------------------------------------------------- collapse metrics traced


def _features(rng, n=90, d=12, C=4):
    y = rng.permutation(np.arange(n) % C)
    return rng.standard_normal((C, d))[y] * 3 + rng.standard_normal((n, d)), y


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_collapse_metrics_under_jit_equal_eager(rng, dtype, tol):
    """The traced path (jit) against the eager one, whose C x C algebra is float64. In
    float32 a ratio of sums rounds at a few eps (6e-8) times its condition: the worst
    here is equinorm, std / mean of the C = 4 class-mean norms, whose relative error is
    about eps * mean / std, ~5e-7 for features like these (measured worst over 20 draws:
    7.5e-7, equinorm; the other metrics 3e-7 or less). Features whose class means have
    nearly equal norms (equinorm near 0) need a bound in proportion."""
    from dnc_jax import collapse_metrics

    with jax.enable_x64(dtype == np.float64):
        H, y = _features(rng)
        H = jnp.asarray(H, dtype)
        W = jnp.asarray(rng.standard_normal((4, 12)), dtype)
        preds = jnp.asarray(rng.integers(0, 4, len(y)))
        eager = collapse_metrics(H, y, classifier=W, predictions=preds, rtol=1e-6)
        jitted = jax.jit(lambda H, y, W, p: collapse_metrics(
            H, y, num_classes=4, classifier=W, predictions=p, rtol=1e-6))(H, jnp.asarray(y), W,
                                                                           preds)
        for name, value in eager._asdict().items():
            np.testing.assert_allclose(float(getattr(jitted, name)), float(value), rtol=tol,
                                       atol=tol * 1e-3, err_msg=name)


def test_collapse_metrics_vmap_over_five_seeds_equals_a_loop(rng):
    from dnc_jax import collapse_metrics

    sets = [_features(np.random.default_rng(seed)) for seed in range(5)]
    H = jnp.asarray(np.stack([h for h, _ in sets]), jnp.float32)
    y = jnp.asarray(np.stack([labels for _, labels in sets]))
    batched = jax.vmap(lambda H, y: collapse_metrics(H, y, num_classes=4))(H, y)
    for i in range(5):
        single = collapse_metrics(H[i], np.asarray(y[i]))
        for name in ("nc1", "nc1_pinv", "nc2", "cdnv", "equinorm", "trace_total"):
            np.testing.assert_allclose(batched._asdict()[name][i], getattr(single, name),
                                       rtol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="needs num_classes"):
        jax.jit(lambda H, y: collapse_metrics(H, y))(H[0], y[0])


# ---------------------------------------------------------------- ReLU NTK and NNGP


def _arccos_reference(x, z, depth):
    """Independent float64 recursion on the correlation ``rho`` (norms are preserved with
    sigma_w^2 = 2): ``rho' = (sqrt(1 - rho^2) + (pi - arccos rho) rho) / pi`` (Cho & Saul's
    first-order arc-cosine kernel), ``Theta' = Sigma' + Theta (pi - arccos rho) / pi``."""
    d = len(x)
    sxx, szz = 2 * x @ x / d, 2 * z @ z / d
    sigma = 2 * x @ z / d
    theta = sigma
    for _ in range(depth):
        rho = np.clip(sigma / np.sqrt(sxx * szz), -1.0, 1.0)
        angle = np.arccos(rho)
        new_rho = (np.sqrt(1 - rho**2) + (np.pi - angle) * rho) / np.pi
        theta = new_rho * np.sqrt(sxx * szz) + theta * (np.pi - angle) / np.pi
        sigma = new_rho * np.sqrt(sxx * szz)
    return sigma, theta


@pytest.mark.parametrize("depth", [1, 3])
def test_relu_ntk_and_nngp_equal_an_independent_recursion(rng, x64, depth):
    from dnc_jax.kernels import ArcCosine

    X = rng.standard_normal((6, 5))
    Z = np.concatenate([X[:2], rng.standard_normal((4, 5))])  # equal points included
    ntk = np.asarray(Kernel(ArcCosine("ntk", depth))(jnp.asarray(X), jnp.asarray(Z)))
    nngp = np.asarray(Kernel(ArcCosine("nngp", depth))(jnp.asarray(X), jnp.asarray(Z)))
    ref = np.array([[_arccos_reference(x, z, depth) for z in Z] for x in X])
    np.testing.assert_allclose(nngp, ref[..., 0], rtol=1e-6)  # the clip at +-1: ~1e-7
    np.testing.assert_allclose(ntk, ref[..., 1], rtol=1e-6)


def test_relu_ntk_equals_a_wide_networks_empirical_ntk(key):
    """The empirical NTK of random width-1024, two-hidden-layer ReLU networks (NTK
    parameterisation, sigma_w^2 = 2), averaged over 8 draws, is within 4 standard errors of
    the draws' spread of the analytic NTK."""
    from dnc_jax.kernels import ArcCosine

    d, width, draws = 4, 1024, 8
    X = jax.random.normal(jax.random.fold_in(key, 99), (3, d))

    def network(params, x):
        h = x
        for W in params[:-1]:
            h = jax.nn.relu(jnp.sqrt(2.0 / W.shape[1]) * W @ h)
        return jnp.sqrt(2.0 / params[-1].shape[0]) * params[-1] @ h

    def empirical(k):
        ks = jax.random.split(k, 3)
        params = [jax.random.normal(ks[0], (width, d)), jax.random.normal(ks[1], (width, width)),
                  jax.random.normal(ks[2], (width,))]
        J = jax.vmap(lambda x: jax.grad(network)(params, x))(X)
        flat = jnp.concatenate([j.reshape(3, -1) for j in J], axis=1)
        return flat @ flat.T

    samples = np.stack([np.asarray(empirical(k)) for k in jax.random.split(key, draws)])
    analytic = np.asarray(Kernel(ArcCosine("ntk", 2))(X, X))
    sem = samples.std(axis=0, ddof=1) / np.sqrt(draws)
    assert np.all(np.abs(samples.mean(axis=0) - analytic) <= 4 * sem + 1e-3 * np.abs(analytic))


# ---------------------------------------------------------------- layer_analysis protocol


class _UsersNet(nnx.Module):
    """A user's own module: a ``layers`` list of ``nnx.Linear`` with ReLU between."""

    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Linear(6, 10, use_bias=False, rngs=rngs),
                                nnx.Linear(10, 10, use_bias=False, rngs=rngs),
                                nnx.Linear(10, 3, use_bias=False, rngs=rngs)])

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


def test_layer_analysis_reads_any_module_that_exposes_its_layers(rng):
    from dnc_jax import layer_analysis

    model = _UsersNet(nnx.Rngs(0))
    X = jnp.asarray(rng.standard_normal((60, 6)), jnp.float32)
    y = np.arange(60) % 3
    weights = tuple((m.kernel[...].T, None) for m in model.layers)
    got, ref = layer_analysis(model, X, y), layer_analysis(weights, X, y)
    assert len(got) == 2
    for a, b in zip(got, ref, strict=True):
        assert a["nfa_agop"] == b["nfa_agop"] and a["output"]["nc1"] == b["output"]["nc1"]
    # the forward pass the protocol assumes is the module's own
    from dnc_jax.nets import forward_from

    np.testing.assert_allclose(forward_from(X, weights), jax.vmap(model)(X), rtol=1e-5,
                               atol=1e-6)

    class NoLayers(nnx.Module):
        def __call__(self, x):
            return x

    with pytest.raises(ValueError, match="Cannot read the layers of NoLayers"):
        layer_analysis(NoLayers(), X, y)


# ------------------------------------------------------------------ the RFM step and loop

from dnc_jax.rfm import fit_rfm, fit_with_agop, rfm_step  # noqa: E402
from dnc_jax.solvers import SolverOptions  # noqa: E402


def test_rfm_step_is_the_step_of_every_loop(rng, x64):
    """The pure step equals the shell's step (``fit_with_agop``, which fit_rfm, Deep RFM,
    grokking and multi-index call) in float64: the same formulas, rounding apart."""
    X, Y, M = _problem(rng, np.float64)
    T = matrix_power(M, 0.5)
    for kernel, centered in (("laplace", False), ("gaussian", True)):
        pred, A = rfm_step(Kernel(kernel, 2.0), X, Y, 1e-2, T, centered=centered,
                           normalize="max")
        shell, A_shell, _ = fit_with_agop(X @ T, Y, kernel=kernel, bandwidth=2.0, reg=1e-2,
                                          transform=T, centered=centered, normalize="max",
                                          solver=SolverOptions("cholesky"))
        np.testing.assert_allclose(pred.coefs, shell.coefs, rtol=0,
                                   atol=1e-10 * float(jnp.abs(shell.coefs).max()))
        np.testing.assert_allclose(A, A_shell, rtol=0, atol=1e-12)
        jitted = jax.jit(lambda X, Y, T, k=kernel, c=centered: rfm_step(
            Kernel(k, 2.0), X, Y, 1e-2, T, centered=c, normalize="max")[1])(X, Y, T)
        np.testing.assert_allclose(jitted, A, rtol=0, atol=1e-12)


def test_fit_rfm_under_jit_vmap_and_grad(rng, x64):
    """The whole loop traced: jit equals the eager loop; vmap over bandwidths equals a
    Python loop; the gradient of a validation MSE with respect to log L equals central
    differences (float64; the eigendecompositions are differentiated by JAX's eigh rule)."""
    X, Y, _ = _problem(rng, np.float64, n=30)
    Xv, Yv = X[:8] * 0.7 + 0.2, Y[:8]
    options = dict(kernel="gaussian", reg=1e-2, iters=2, agop_power=0.5)
    eager = fit_rfm(X, Y, bandwidth=2.0, **options)
    jitted = jax.jit(lambda X, Y, L: fit_rfm(X, Y, bandwidth=L, **options))(X, Y, 2.0)
    np.testing.assert_allclose(jitted.transform, eager.transform, rtol=0, atol=1e-10)
    np.testing.assert_allclose(jitted.predictor.coefs, eager.predictor.coefs, rtol=0,
                               atol=1e-8 * float(jnp.abs(eager.predictor.coefs).max()))

    def loss(log_L):
        fitted = fit_rfm(X, Y, bandwidth=jnp.exp(log_L), **options)
        return jnp.mean((fitted.predictor.predict(Xv, transform=fitted.transform) - Yv) ** 2)

    bandwidths = jnp.log(jnp.array([1.5, 2.0, 3.0]))
    np.testing.assert_allclose(jax.vmap(loss)(bandwidths),
                               jnp.stack([loss(b) for b in bandwidths]), rtol=1e-10)
    h = 1e-5
    fd = (loss(jnp.log(2.0) + h) - loss(jnp.log(2.0) - h)) / (2 * h)
    assert abs(float(jax.grad(loss)(jnp.log(2.0))) - float(fd)) <= 1e-6 * abs(float(fd))


def test_rfm_step_refuses_bad_input(rng):
    X, Y, M = _problem(rng, np.float32)
    with pytest.raises(ValueError, match="Y must be"):
        rfm_step(Kernel("laplace", 2.0), X, Y[:5])
    with pytest.raises(ValueError, match="normalize must be"):
        rfm_step(Kernel("laplace", 2.0), X, Y, normalize="l2")
    with pytest.raises(ValueError, match="without M"):
        rfm_step(Kernel("laplace", 2.0, M), X, Y)
    with pytest.raises(ValueError, match="Kernel value"):
        rfm_step("laplace", X, Y)


def test_fit_rfm_under_jit_refuses_what_only_the_shell_does(rng):
    X, Y, _ = _problem(rng, np.float32)
    with pytest.raises(ValueError, match="one device"):
        jax.jit(lambda X: fit_rfm(X, Y, agop_samples=10).transform)(X)
    with pytest.raises(ValueError, match="solves by"):
        jax.jit(lambda X: fit_rfm(X, Y, solver=SolverOptions("nystrom", 10)).transform)(X)


def test_nystrom_fit_is_traceable_and_equals_the_shell(rng, x64):
    """The traced Nyström fit equals the shell's (Falkon PCG) on the same centres to the
    CG tolerance, its gradient with respect to log L equals central differences, and with
    every row a centre it is the exact fit."""
    from dnc_jax import fit_kernel_ridge

    X, Y, _ = _problem(rng, np.float64, n=60)
    Z = X[::3]
    Xv, Yv = X[:8] * 0.7 + 0.2, Y[:8]
    pred = fit(Kernel("laplace", 2.0), X, Y, 1e-2, solver="nystrom", centers=Z, tol=1e-12)
    shell, _ = fit_kernel_ridge(X, Y, kernel="laplace", bandwidth=2.0, reg=1e-2,
                                solver="nystrom", centers=Z, tol=1e-12)
    np.testing.assert_allclose(pred.predict(Xv), shell.predict(Xv), rtol=0, atol=1e-9)
    jitted = jax.jit(lambda L: fit_kernel_predictor(X, Y, kernel="laplace", bandwidth=L,
                                                    reg=1e-2, centers=Z, tol=1e-12).coefs)(2.0)
    np.testing.assert_allclose(jitted, pred.coefs, rtol=0,
                               atol=1e-9 * float(jnp.abs(pred.coefs).max()))
    exact = fit(Kernel("laplace", 2.0), X, Y, 1e-2)
    full = fit(Kernel("laplace", 2.0), X, Y, 1e-2, solver="nystrom", centers=X, tol=1e-13)
    np.testing.assert_allclose(full.predict(Xv), exact.predict(Xv), rtol=0, atol=1e-7)

    def loss(log_L):
        p = fit(Kernel("gaussian", jnp.exp(log_L)), X, Y, 1e-2, solver="nystrom", centers=Z,
                tol=1e-13)
        return jnp.mean((p.predict(Xv) - Yv) ** 2)

    h = 1e-5
    fd = (loss(jnp.log(2.0) + h) - loss(jnp.log(2.0) - h)) / (2 * h)
    assert abs(float(jax.grad(loss)(jnp.log(2.0))) - float(fd)) <= 1e-6 * abs(float(fd))
    with pytest.raises(ValueError, match="needs centers"):
        fit(Kernel("laplace", 2.0), X, Y, 1e-2, solver="nystrom")
