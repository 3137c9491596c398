"""Deep RFM: a network built layer by layer without backprop (DESIGN.md, Deep RFM).

For each layer ``l``: scale the rows of ``X_l`` to unit norm; fit a Laplace kernel
predictor (``L = 2``, ridge ``1e-3``) on ``(X_l, Y)``, ``Y`` in ``{-1, +1}``; take its AGOP
``M_l`` at the training points divided by its largest entry; measure collapse on ``X_l``,
``X_l M_l^(1/2)`` and ``X_{l+1}``; then ``X_{l+1} = relu(X_l M_l^(1/2) W_l^T)`` with a random
``W_l`` (``width x d``, uniform on ``(-1/sqrt(d), 1/sqrt(d))`` or Gaussian with that std), or
random Fourier features ``sqrt(2/D) cos(X_l M_l^(1/2) Omega + b)`` (Cauchy ``Omega``).
Test data follows the same maps.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.agop import power_from_eigh, psd_eigh
from dnc_jax.collapse import collapse_metrics
from dnc_jax.data import one_hot_pm1
from dnc_jax.rfm import fit_with_agop

FEATURES = ("relu", "cosine")
WEIGHTS = ("uniform", "gaussian")


@dataclasses.dataclass(frozen=True)
class DeepRFMConfig:
    """Hyperparameters of ``deep_rfm`` (the paper's defaults)."""

    depth: int = 10
    width: int = 512
    kernel: str = "laplace"
    bandwidth: float = 2.0
    reg: float = 1e-3
    features: str = "relu"
    gamma: float = 1.0
    weights: str = "uniform"
    seed: int = 0
    agop_batch: int = 1024

    def validate(self) -> None:
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1; got {self.depth}.")
        if self.width < 1:
            raise ValueError(f"width must be >= 1; got {self.width}.")
        if self.reg < 0:
            raise ValueError(f"reg must be >= 0; got {self.reg}.")
        if self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0; got {self.bandwidth}.")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}; got {self.features!r}.")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}; got {self.weights!r}.")
        if self.features == "cosine" and self.gamma <= 0:
            raise ValueError(f"gamma must be > 0; got {self.gamma}.")


@dataclasses.dataclass
class LayerState:
    """What the next layer needs: its index and the current train/test features."""

    layer: int
    X_train: np.ndarray
    X_test: np.ndarray | None


@jax.jit
def _unit_rows(X: jax.Array) -> jax.Array:
    """Rows scaled to unit Euclidean norm (zero rows stay zero)."""
    norms = jnp.linalg.norm(X, axis=1, keepdims=True)
    return X / jnp.where(norms > 0, norms, 1.0)


@functools.partial(jax.jit, static_argnames=("features",))
def _random_map(Xp: jax.Array, W: jax.Array, b: jax.Array, features: str) -> jax.Array:
    """``relu(Xp W^T)`` or ``sqrt(2/D) cos(Xp W^T + b)`` for projected features ``Xp``."""
    pre = Xp @ W.T
    if features == "relu":
        return jax.nn.relu(pre)
    return jnp.sqrt(2.0 / W.shape[0]) * jnp.cos(pre + b[None, :])


def random_weights(key: jax.Array, d: int, config: DeepRFMConfig) -> tuple[jax.Array, jax.Array]:
    """The layer's random ``W`` (``width x d``) and phase ``b`` (``(width,)``)."""
    k_w, k_b = jax.random.split(key)
    D = config.width
    if config.features == "cosine":
        W = jax.random.cauchy(k_w, (D, d)) * config.gamma
        return W, jax.random.uniform(k_b, (D,), maxval=2.0 * np.pi)
    bound = 1.0 / np.sqrt(d)
    if config.weights == "uniform":
        W = jax.random.uniform(k_w, (D, d), minval=-bound, maxval=bound)
    else:
        W = jax.random.normal(k_w, (D, d)) * bound
    return W, jnp.zeros((D,))


def _accuracy(pred: jax.Array, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(np.asarray(pred), axis=1) == y))


def spectrum_summary(evals: np.ndarray, top: int = 10) -> dict:
    """Top eigenvalues (descending) and effective rank ``(sum l)^2 / sum l^2`` of a PSD matrix."""
    desc = np.sort(evals)[::-1]
    total = desc.sum()
    return {
        "top_eigenvalues": desc[:top].tolist(),
        "effective_rank": float(total**2 / np.sum(desc**2)) if total > 0 else 0.0,
    }


def deep_rfm_layers(
    X_train: ArrayLike,
    y_train: ArrayLike,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    *,
    config: DeepRFMConfig,
    start: LayerState | None = None,
    num_classes: int | None = None,
) -> Iterator[tuple[dict, LayerState]]:
    """Run Deep RFM one layer at a time, yielding ``(record, state after the layer)``.

    ``start`` resumes from a saved ``LayerState``: since layer ``l``'s random map depends
    only on ``(seed, l)``, a resumed run equals an uninterrupted one. Arguments as in
    ``deep_rfm``.
    """
    config.validate()
    y_train = np.asarray(y_train).astype(np.int64)
    C = int(num_classes or y_train.max() + 1)
    Y = one_hot_pm1(y_train, C)
    if start is None:
        X = _checks.as_float_matrix("X_train", X_train, dtype=jnp.float32)
        _checks.check_same_rows("X_train", X, "y_train", y_train)
        _checks.check_finite("X_train", X)
        Xt = None
        if X_test is not None:
            Xt = _checks.as_float_matrix("X_test", X_test, dtype=jnp.float32)
            _checks.check_finite("X_test", Xt)
            if Xt.shape[1] != X.shape[1]:
                raise ValueError("X_test and X_train must have the same number of features.")
        first = 0
    else:
        X, first = jnp.asarray(start.X_train), start.layer
        Xt = None if start.X_test is None else jnp.asarray(start.X_test)
    has_test = Xt is not None and y_test is not None
    y_test = None if y_test is None else np.asarray(y_test).astype(np.int64)
    key = jax.random.key(config.seed)

    for layer in range(first, config.depth):
        tic = time.perf_counter()
        X = _unit_rows(X)
        predictor, M = fit_with_agop(
            X, Y, kernel=config.kernel, bandwidth=config.bandwidth, reg=config.reg,
            batch_size=config.agop_batch, normalize="max",
        )
        evals, evecs = psd_eigh(M)
        root = jnp.asarray(power_from_eigh(evals, evecs, 0.5), jnp.float32)
        W, b = random_weights(jax.random.fold_in(key, layer), X.shape[1], config)
        projected = X @ root
        X_next = _random_map(projected, W, b, config.features)
        record = {
            "layer": layer,
            "input_dim": int(X.shape[1]),
            "input": collapse_metrics(X, y_train, num_classes=C).to_dict(),
            "projected": collapse_metrics(projected, y_train, num_classes=C).to_dict(),
            "output": collapse_metrics(X_next, y_train, num_classes=C).to_dict(),
            "train_accuracy": _accuracy(predictor.predict(X), y_train),
            "test_accuracy": None,
            "agop": spectrum_summary(evals),
        }
        if has_test:
            Xt = _unit_rows(Xt)
            record["test_accuracy"] = _accuracy(predictor.predict(Xt), y_test)
        if Xt is not None:
            Xt = _random_map(Xt @ root, W, b, config.features)
        X = X_next
        record["seconds"] = time.perf_counter() - tic
        yield record, LayerState(
            layer + 1, np.asarray(X), None if Xt is None else np.asarray(Xt)
        )


def deep_rfm(
    X_train: ArrayLike,
    y_train: ArrayLike,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    *,
    depth: int = 10,
    width: int = 512,
    kernel: str = "laplace",
    bandwidth: float = 2.0,
    reg: float = 1e-3,
    features: str = "relu",
    gamma: float = 1.0,
    weights: str = "uniform",
    seed: int = 0,
    agop_batch: int = 1024,
    num_classes: int | None = None,
    on_layer: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Deep RFM on prepared data (see the module docstring; ``prepare`` does the paper's
    standardisation and subsampling).

    Args:
      X_train: ``(n, d)`` features; y_train: ``(n,)`` integer labels.
      X_test, y_test: optional held-out data, mapped through the same layers.
      depth: layers; width: random features per layer (``D``).
      kernel, bandwidth, reg: the layer's kernel predictor.
      features: ``"relu"`` or ``"cosine"`` (random Fourier features, Cauchy scale ``gamma``).
      weights: ``"uniform"`` or ``"gaussian"`` for the ReLU map.
      seed: seeds every layer's random map (layer ``l`` uses ``fold_in(key(seed), l)``).
      agop_batch: training rows whose Jacobians are held at once.
      on_layer: called with each layer's record as it completes.

    Returns:
      One record per layer: ``layer``, ``input_dim``, collapse metrics (``to_dict``) on
      ``input`` (``X_l``), ``projected`` (``X_l M^(1/2)``), ``output`` (``X_{l+1}``);
      ``train_accuracy``, ``test_accuracy``; ``agop`` spectrum summary; ``seconds``.
    """
    config = DeepRFMConfig(depth, width, kernel, bandwidth, reg, features, gamma, weights, seed,
                           agop_batch)
    records = []
    for record, _ in deep_rfm_layers(X_train, y_train, X_test, y_test, config=config,
                                     num_classes=num_classes):
        records.append(record)
        if on_layer is not None:
            on_layer(record)
    return records
