"""The MLP, its training, and the per-layer analysis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dnc_jax.data import load_dataset, prepare
from dnc_jax.experiments import run_mlp
from dnc_jax.nets import MLP, TrainConfig, forward_from, layer_agops, layer_analysis, train_mlp
from dnc_jax.nets.analysis import right_singular_step


def test_mlp_shape_and_bias_layout():
    assert all(b is None for _, b in MLP(12, 16, 3, 3, rngs=nnx.Rngs(0)).weights())  # paper
    model = MLP(12, 16, 3, 3, bias=True, rngs=nnx.Rngs(0))
    layers = model.weights()
    assert [W.shape for W, _ in layers] == [(16, 12), (16, 16), (16, 16), (3, 16)]
    assert [b is None for _, b in layers] == [True, False, False, True]
    # PyTorch's nn.Linear default for the classifier: U(+-1/sqrt(fan_in)), gain-free
    torch_cls = MLP(12, 400, 3, 1, init_gain=0.1, classifier_init="torch",
                    rngs=nnx.Rngs(0)).weights()[-1][0]
    assert 0.9 / 20 < float(jnp.abs(torch_cls).max()) <= 1 / 20
    with pytest.raises(ValueError, match="classifier_init"):
        MLP(12, 16, 3, 1, classifier_init="he", rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 12)), jnp.float32)
    np.testing.assert_allclose(model(x), forward_from(x, layers), rtol=1e-6)
    # against the nnx.Linear modules applied by hand (not the function __call__ uses)
    h = x
    for i, layer in enumerate(model.layers):
        h = layer(h)
        h = jax.nn.relu(h) if i < len(model.layers) - 1 else h
    np.testing.assert_allclose(model(x), h, rtol=1e-5, atol=1e-6)
    # small init: Xavier-uniform bound times the gain
    bound = 0.1 * np.sqrt(6 / (12 + 16))
    assert float(jnp.abs(layers[0][0]).max()) <= bound


def test_right_singular_step_then_U_is_the_preactivation(rng):
    W = jnp.asarray(rng.standard_normal((7, 11)), jnp.float32)
    H = jnp.asarray(rng.standard_normal((20, 11)), jnp.float32)
    right, U = right_singular_step(H, W)
    assert right.shape == (20, 7)
    np.testing.assert_allclose(right @ U.T, H @ W.T, rtol=1e-4, atol=1e-4)


def _balanced_linear_layers(rng, k, num_layers):
    """W_l = Q_{l+1} S Q_l^T with orthogonal Q's: W_{l+1}^T W_{l+1} = W_l W_l^T (balanced)."""
    Q = [np.linalg.qr(rng.standard_normal((k, k)))[0] for _ in range(num_layers + 1)]
    S = np.diag(rng.uniform(0.5, 1.5, k))
    return tuple((jnp.asarray(Q[l + 1] @ S @ Q[l].T), None) for l in range(num_layers))


def test_nfa_on_balanced_deep_linear_network(rng, x64):
    """At a balanced point of a deep linear network with ``L`` layers, the sub-network from
    layer ``l`` has constant Jacobian ``J = W_{L-1} ... W_l``, and by balancedness
    (``W_{l+1}^T W_{l+1} = W_l W_l^T``)
    ``J^T J = W_l^T (W_l W_l^T)^(m-1) W_l = (W_l^T W_l)^m`` with ``m = L - l`` factors.
    So ``AGOP_l = (W_l^T W_l)^m`` exactly, and the NFA correlations must equal
    ``pearson(G, G^m)`` and ``pearson(G, G^(m/2))`` with ``G = W_l^T W_l``."""
    k, num_layers = 6, 4
    layers = _balanced_linear_layers(rng, k, num_layers)
    X = rng.standard_normal((30, k))
    y = np.arange(30) % 3
    records = layer_analysis(layers, X, y, activation="identity")
    H = jnp.asarray(X)
    for l, rec in enumerate(records):
        W = np.asarray(layers[l][0])
        G = W.T @ W
        m = num_layers - l
        A = np.asarray(layer_agops(layers, [H] * (l + 1), "identity")[l])
        np.testing.assert_allclose(A, np.linalg.matrix_power(G, m), rtol=1e-9, atol=1e-9)
        evals, evecs = np.linalg.eigh(G)
        sqrt_agop = (evecs * evals ** (m / 2)) @ evecs.T
        # expected values from numpy's corrcoef, not the library's own pearson (a cosine
        # without centring would pass a self-referential check)
        corr = np.corrcoef(G.ravel(), np.linalg.matrix_power(G, m).ravel())[0, 1]
        assert rec["nfa_agop"] == pytest.approx(corr, abs=1e-9)
        assert rec["nfa_sqrt_agop"] == pytest.approx(
            np.corrcoef(G.ravel(), sqrt_agop.ravel())[0, 1], abs=1e-9)
        H = H @ layers[l][0].T
    # with two factors left, AGOP^(1/2) is exactly W^T W: correlation 1
    assert records[-1]["nfa_sqrt_agop"] == pytest.approx(1.0, abs=1e-9)


def test_layer_agop_equals_float64_autodiff(rng):
    model = MLP(9, 12, 4, 3, init_gain=1.0, rngs=nnx.Rngs(1))
    layers = model.weights()
    X = rng.standard_normal((25, 9)).astype(np.float32)
    inputs = [jnp.asarray(X)]
    for W, b in layers[:-2]:
        inputs.append(jax.nn.relu(inputs[-1] @ W.T + (0.0 if b is None else b[None, :])))
    got = layer_agops(layers, inputs, batch_size=7)
    with jax.enable_x64(True):
        layers64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), layers)
        for l, H in enumerate(inputs):
            H64 = np.asarray(H, np.float64)
            subnet = jax.jacrev(lambda h, above=layers64[l:]: forward_from(h, above))
            jac = [np.asarray(subnet(jnp.asarray(h))) for h in H64]
            ref = sum(J.T @ J for J in jac) / len(jac)
            np.testing.assert_allclose(got[l], ref, rtol=2e-4, atol=1e-6 * np.abs(ref).max())


@pytest.fixture(scope="module")
def small_digits():
    X, y = load_dataset("digits", n=400)
    Xt, yt = load_dataset("digits", split="test", n=100)
    return prepare(X, y, Xt, yt)


def test_training_reduces_loss_and_measures(small_digits):
    d = small_digits
    config = TrainConfig(depth=2, width=32, epochs=6, lr=3e-3, batch_size=50, init_gain=1.0,
                         measure_every=3)
    model, history = train_mlp(d.X_train, d.y_train, d.X_test, d.y_test, config=config)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    measured = [h for h in history if h["layers"] is not None]
    assert [h["epoch"] for h in measured] == [3, 6]
    rec = measured[-1]["layers"][0]
    assert {"input", "right", "output", "nfa_sqrt_agop", "nfa_agop", "right_share"} <= set(rec)
    sgd = TrainConfig(depth=2, width=32, epochs=2, lr=1e-2, batch_size=50, optimizer="sgd",
                      weight_decay=1e-4, loss="cross_entropy", measure_every=5)
    assert len(train_mlp(d.X_train, d.y_train, config=sgd)[1]) == 2


def test_mlp_resume_gives_same_parameters(tmp_path):
    config = TrainConfig(depth=2, width=16, epochs=6, lr=3e-3, batch_size=40, init_gain=1.0,
                         measure_every=2)
    kw = dict(dataset="digits", n=200, n_test=50, config=config, progress=False)
    full = run_mlp(str(tmp_path / "full"), **kw)
    run_mlp(str(tmp_path / "part"), stop_after=1, **kw)  # "killed" after epoch 2
    resumed = run_mlp(str(tmp_path / "part"), **kw)
    with np.load(tmp_path / "full" / "state-3.npz") as a, np.load(tmp_path / "part" / "state-3.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]
    assert (tmp_path / "part" / "training.png").exists()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("bias", [False, True])
def test_shared_pass_equals_per_layer_autodiff(rng, x64, activation, bias):
    """One backward pass for every layer's AGOP (``shared_layer_agops``) equals the
    per-layer ``vmap(jacrev)`` of the sub-network above it (``layer_agops``), float64."""
    from dnc_jax.nets.layer_agop import shared_layer_agops

    sizes = [12, 16, 9, 11, 4]  # three hidden layers of different widths, C = 4
    layers = []
    for i in range(len(sizes) - 1):
        W = jnp.asarray(rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]))
        last = i == len(sizes) - 2
        b = None if (last or not bias) else jnp.asarray(0.3 * rng.standard_normal(sizes[i + 1]))
        layers.append((W, b))
    layers = tuple(layers)
    X = jnp.asarray(rng.standard_normal((37, sizes[0])))
    inputs, h = [], X
    for W, b in layers[:-1]:
        inputs.append(h)
        z = h @ W.T + (0.0 if b is None else b[None, :])
        h = jnp.maximum(z, 0.0) if activation == "relu" else jnp.tanh(z)
    reference = layer_agops(layers, inputs, activation, batch_size=8)
    shared = shared_layer_agops(layers, X, activation, batch_size=8)  # 37 = 4 x 8 + 5
    assert len(shared) == 3
    for ours, ref in zip(shared, reference, strict=True):
        assert ours.shape == ref.shape
        assert float(jnp.linalg.norm(ours - ref) / jnp.linalg.norm(ref)) < 1e-12
    with pytest.raises(ValueError, match="features"):
        shared_layer_agops(layers, X[:, :5], activation)
    with pytest.raises(ValueError, match="NaN"):
        shared_layer_agops(layers, X.at[0, 0].set(jnp.nan), activation)


@pytest.mark.parametrize("change,match", [
    (lambda X, y: (X.at[3, 2].set(jnp.nan), y), "NaN"),
    (lambda X, y: (X, y.at[0].set(-1)), "0..C-1"),
    (lambda X, y: (X, y.astype(jnp.float32) + 0.5), "integer"),
    (lambda X, y: (X, y[:-1]), "rows"),
    (lambda X, y: (X[0], y), "2-D"),
    (lambda X, y: (X, y[:, None]), "1-D"),
])
def test_train_mlp_checks_inputs_first(change, match):
    """Bad data is one clear ValueError at the entry, never a failure inside an SVD."""
    X = jnp.asarray(np.random.default_rng(0).standard_normal((40, 6)), jnp.float32)
    y = jnp.arange(40) % 3
    bad_X, bad_y = change(X, y)
    with pytest.raises(ValueError, match=match):
        train_mlp(bad_X, bad_y, config=TrainConfig(depth=1, width=8, epochs=1, batch_size=8))
    with pytest.raises(ValueError, match="features"):
        train_mlp(X, y, X[:, :5], y, config=TrainConfig(depth=1, width=8, epochs=1, batch_size=8))


def test_last_partial_batch_is_a_step_when_kept():
    """``last_batch="keep"``: 20 samples in batches of 16 make two SGD steps per epoch,
    the second on the 4 left over; an independent replay of those two steps matches."""
    from dnc_jax.data import one_hot_pm1
    from dnc_jax.nets.train import init_model

    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.standard_normal((20, 5)), jnp.float32)
    y = np.arange(20) % 3
    config = TrainConfig(depth=1, width=6, epochs=1, batch_size=16, optimizer="sgd",
                         momentum=0.0, lr=0.05, last_batch="keep", seed=3)
    kept, _ = train_mlp(X, y, config=config)
    dropped, _ = train_mlp(X, y, config=TrainConfig(**{**config.__dict__, "last_batch": "drop"}))
    model = init_model(config, 5, 3)
    graphdef, params = nnx.split(model, nnx.Param)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(3), 1), 20))
    Y = jnp.asarray(one_hot_pm1(y, 3))

    def loss(p, idx):
        return jnp.mean((nnx.merge(graphdef, p)(X[idx]) - Y[idx]) ** 2)

    for idx in (perm[:16], perm[16:]):
        params = jax.tree.map(lambda p, g: p - 0.05 * g, params, jax.grad(loss)(params, idx))
        if len(idx) == 16:
            after_one = params
    for (W, _), (W_ref, _) in zip(kept.weights(), nnx.merge(graphdef, params).weights(),
                                  strict=True):
        np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=1e-6)
    for (W, _), (W_ref, _) in zip(dropped.weights(), nnx.merge(graphdef, after_one).weights(),
                                  strict=True):
        np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [{"optimizer": "sgd", "momentum": 0.9, "lr": 0.01},
                                     {"loss": "cross_entropy", "lr": 1e-3}])
def test_sgd_and_cross_entropy_training_lower_a_finite_loss(small_digits, options):
    X, y = small_digits.X_train, small_digits.y_train
    config = TrainConfig(depth=2, width=32, epochs=8, batch_size=32, measure_every=8,
                         init_gain=1.0, **options)
    _, history = train_mlp(X, y, config=config)
    losses = [h["train_loss"] for h in history]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0], losses


def test_xavier_normal_and_torch_input_init():
    """``init="xavier_normal"``: untruncated normal, std ``gain sqrt(2/(fan_in+fan_out))``
    (kurtosis 3, not the uniform's 1.8); ``input_init="torch"``: the first layer uniform on
    ``+-1/sqrt(fan_in)``, as the paper's backbone heads leave it."""
    model = MLP(400, 300, 10, 2, init_gain=0.1, init="xavier_normal", input_init="torch",
                rngs=nnx.Rngs(0))
    (W0, _), (W1, _), _ = model.weights()
    W1 = np.asarray(W1, np.float64).ravel()
    assert abs(W1.std() / (0.1 * np.sqrt(2 / 600)) - 1) < 0.02
    assert abs(np.mean(W1**4) / np.mean(W1**2) ** 2 - 3.0) < 0.1
    W0 = np.asarray(W0, np.float64).ravel()
    assert np.abs(W0).max() <= 1 / np.sqrt(400)
    assert abs(W0.std() * np.sqrt(3 * 400) - 1) < 0.02
    with pytest.raises(ValueError, match="init"):
        MLP(4, 3, 2, 1, init="he", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers_follow_pytorchs_weight_decay(name):
    """First step, by the PyTorch formulas: Adam adds ``wd w`` to the gradient before the
    step ``lr g/(|g|+eps)``; AdamW steps on ``g`` and decays ``lr wd w`` apart; SGD steps
    ``lr (g + wd w)``."""
    from dnc_jax.nets.train import make_optimizer

    lr, wd, eps = 0.1, 0.5, 1e-8
    w = jnp.asarray([1.0, -3.0, 2.5])
    g = jnp.asarray([0.3, 0.1, -0.2])
    tx = make_optimizer(TrainConfig(optimizer=name, lr=lr, weight_decay=wd, momentum=0.0))
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes dtypes
        update, _ = tx.update(g, tx.init(w), w)
    if name == "adam":
        gd = g + wd * w
        expect = -lr * gd / (jnp.abs(gd) + eps)
    elif name == "adamw":
        expect = -lr * (g / (jnp.abs(g) + eps) + wd * w)
    else:
        expect = -lr * (g + wd * w)
    # float32 bias correction (1 - 0.999 rounds by 1.3e-5) moves the Adam step by lr * 7e-6
    np.testing.assert_allclose(update, expect, rtol=1e-5, atol=1e-6)


def test_agop_projection_is_the_agop_square_root_up_to_rotation(rng):
    """``Phi V_a S_a (Phi V_a S_a)^T = Phi A Phi^T``; so NC1 equals that of ``Phi A^(1/2)``."""
    from dnc_jax.collapse import collapse_metrics
    from dnc_jax.gradient_outer_product import matrix_power
    from dnc_jax.nets.analysis import agop_projection

    G = rng.standard_normal((5, 6))
    A = G.T @ G  # (6, 6), rank 5, PSD
    Phi = jnp.asarray(rng.standard_normal((40, 6)), jnp.float32)
    y = np.arange(40) % 4
    P = np.asarray(agop_projection(Phi, A), np.float64)
    Phi64 = np.asarray(Phi, np.float64)
    np.testing.assert_allclose(P @ P.T, Phi64 @ A @ Phi64.T, rtol=1e-4, atol=1e-4)
    root = jnp.asarray(matrix_power(A, 0.5), jnp.float32)
    assert collapse_metrics(P, y).nc1 == pytest.approx(collapse_metrics(Phi @ root, y).nc1,
                                                       rel=1e-4)


def test_agop_eigh_in_the_weights_row_space(rng, x64):
    """For ``A = W^T B W`` with a wide ``W`` (3 x 10), the decomposition in ``W``'s row
    space gives back ``A`` and ``A^(1/2)`` (as the full ``eigh`` does) from 3 pairs."""
    from dnc_jax.gradient_outer_product import matrix_power
    from dnc_jax.nets.analysis import agop_eigh, agop_projection

    W = rng.standard_normal((3, 10))
    C = rng.standard_normal((3, 3))
    A = W.T @ (C @ C.T) @ W
    evals, evecs = agop_eigh(A, W)
    assert evals.shape == (3,) and evecs.shape == (10, 3)
    np.testing.assert_allclose((evecs * evals) @ evecs.T, A, atol=1e-10)
    np.testing.assert_allclose((evecs * np.sqrt(evals)) @ evecs.T, matrix_power(A, 0.5),
                               atol=1e-7)
    Phi = jnp.asarray(rng.standard_normal((7, 10)))
    P = np.asarray(agop_projection(Phi, A, W))
    np.testing.assert_allclose(P @ P.T, np.asarray(Phi) @ A @ np.asarray(Phi).T, atol=1e-9)


def test_layer_analysis_of_what_train_mlp_returns(small_digits):
    """``train_mlp`` returns a ``Network``; ``layer_analysis`` takes it as the README does,
    and measures its head as it measures the bare MLP."""
    d = small_digits
    config = TrainConfig(depth=2, width=16, epochs=1, batch_size=50, measure_every=1)
    model, history = train_mlp(d.X_train, d.y_train, config=config)
    direct = layer_analysis(model, d.X_train, d.y_train)
    assert direct == layer_analysis(model.head, d.X_train, d.y_train) == history[-1]["layers"]
