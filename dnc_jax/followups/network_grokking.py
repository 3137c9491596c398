"""Grokking modular arithmetic with a network, and its Neural Feature Ansatz per epoch
(``nmallinar/rfm-grokking``, ``train_net.py`` and ``models/neural_nets.py``, commit of the
mirror read 2026-12-01).

The network is the script's ``OneLayerFCN``: ``f(x) = act(x W1^T) W2^T`` on the ``2p``
concatenated one-hots, no biases, both weights uniform on ``+- init_scale / sqrt(fan_in)``
(``reset_params``), the activation ``x^2`` by default. It is trained with AdamW
(``lr = 1e-3``, betas ``(0.9, 0.98)``, weight decay 1.0; PyTorch's decoupled decay, which
optax's ``adamw`` shares) on the mean squared error of 0/1 one-hot targets, minibatches of
32 reshuffled each epoch with the last partial batch kept, in float64. Every
``measure_every`` epochs (counted from 0 after training, as the script's
``epoch % agop_display_freq == 0``) it records the NFA: the Pearson correlation of the
neural feature matrix ``W1^T W1`` with ``AGOP^(1/2)`` of the network at the training rows
(uncentred; the script's ``agop_loader`` drops the rows past a multiple of its batch), with
and without their diagonals (``nfa_corr``, ``nfa_no_diag_corr``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dnc_jax.followups.modular_task import MODULAR_OPS, modular_arithmetic
from dnc_jax.gradient_outer_product import agop, power_from_eigh, psd_eigh
from dnc_jax.option_fields import option
from dnc_jax.precision import matmul

NET_ACTIVATIONS = {"quadratic": jnp.square, "relu": jax.nn.relu, "swish": jax.nn.silu,
                   "softplus": jax.nn.softplus, "linear": lambda z: z}


@dataclasses.dataclass(frozen=True)
class NetGrokkingConfig:
    """``train_net.py``'s defaults (argparse lines 31-47): ``p = 61``, ``op = "+"``,
    ``train_fraction = 0.3``, batch 32, AGOP batch 32, 1,000 epochs, the NFA every 100,
    width 256, ``init_scale = 1``, quadratic activation, lr ``1e-3``, weight decay 1.0."""

    p: int = option(61, "prime modulus")
    op: str = option("+", "the operation mod p", choices=tuple(MODULAR_OPS))
    train_fraction: float = option(0.3, "share of the pairs trained on")
    width: int = option(256, "hidden width")
    init_scale: float = option(1.0, "scale of the uniform initialisation's bound")
    activation: str = option("quadratic", "hidden activation", choices=tuple(NET_ACTIVATIONS))
    lr: float = option(1e-3, "AdamW learning rate")
    weight_decay: float = option(1.0, "AdamW (decoupled) weight decay")
    batch_size: int = option(32, "training minibatch")
    agop_batch_size: int = option(32, "the AGOP's batch (rows past a multiple are dropped)")
    epochs: int = option(1000, "training epochs")
    measure_every: int = option(100, "the NFA after epochs 0, m, 2m, ... (0-based)")
    seed: int = option(0, "seeds the split, the initialisation and the batch order")

    def __post_init__(self) -> None:
        for name in ("p", "width", "batch_size", "agop_batch_size", "epochs", "measure_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.activation not in NET_ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(NET_ACTIVATIONS)}; got "
                             f"{self.activation!r}.")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.init_scale > 0):
            raise ValueError("lr and init_scale must be > 0 and weight_decay >= 0.")


def _forward(params, X, activation: str):
    W1, W2 = params
    return matmul(NET_ACTIVATIONS[activation](matmul(X, W1.T)), W2.T)


@functools.partial(jax.jit, static_argnames=("activation", "tx"))
def _step(params, opt_state, X, Y, activation: str, tx):
    def loss_fn(p):
        return jnp.mean((_forward(p, X, activation) - Y) ** 2)  # torch MSELoss: mean of all

    loss, grads = jax.value_and_grad(loss_fn)(params)
    # optax's bias correction raises a Python float to an int32 count: standard promotion
    # (what users run), also under a caller's strict mode (the test suite's)
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames=("activation",))
def _accuracy(params, X, y, activation: str):
    hits = jnp.argmax(_forward(params, X, activation), axis=1) == y
    return jnp.mean(hits.astype(X.dtype))


def _nfa(params, X_agop, activation: str) -> tuple[float, float]:
    """Pearson correlations of ``W1^T W1`` with ``AGOP^(1/2)``, with and without diagonals."""
    A = agop(lambda x: _forward(params, x[None], activation)[0], X_agop)
    root = power_from_eigh(*psd_eigh(A), 0.5)
    nfm = np.asarray(params[0].T @ params[0], np.float64)
    full = np.corrcoef(root.ravel(), nfm.ravel())[0, 1]
    off = np.corrcoef((root - np.diag(np.diag(root))).ravel(),
                      (nfm - np.diag(np.diag(nfm))).ravel())[0, 1]
    return float(full), float(off)


def grokking_net(config: NetGrokkingConfig = NetGrokkingConfig()) -> list[dict]:
    """Train the network; one record per epoch (0-based ``epoch``): ``train_loss`` (the
    mean of the epoch's minibatch losses), ``train_accuracy`` and ``test_accuracy`` after
    the epoch, and at the measured epochs ``nfa_corr`` and ``nfa_no_diag_corr``. Needs
    64-bit JAX (the script trains in float64). A shell function (a host loop over epochs
    of jitted steps): call it eagerly."""
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("the network grokking run is float64, as published: call "
                         "jax.config.update('jax_enable_x64', True) first.")
    X, y, Xt, yt = modular_arithmetic(config.p, config.op, config.train_fraction, config.seed)
    X, Xt = jnp.asarray(X, jnp.float64), jnp.asarray(Xt, jnp.float64)
    Y = jnp.asarray(np.eye(config.p)[y])
    d, n = X.shape[1], X.shape[0]
    k1, k2, k_order = jax.random.split(jax.random.key(config.seed), 3)
    bound1 = config.init_scale / math.sqrt(d)
    bound2 = config.init_scale / math.sqrt(config.width)
    params = (jax.random.uniform(k1, (config.width, d), jnp.float64, -bound1, bound1),
              jax.random.uniform(k2, (config.p, config.width), jnp.float64, -bound2, bound2))
    tx = optax.adamw(config.lr, b1=0.9, b2=0.98, eps=1e-8, weight_decay=config.weight_decay)
    opt_state = tx.init(params)
    batch = min(config.batch_size, math.ceil(n / 2))  # make_dataloader's cap
    agop_batch = min(config.agop_batch_size, math.ceil(n / 2))
    X_agop = X[: (n // agop_batch) * agop_batch]  # drop_last=True, unshuffled
    records = []
    for epoch in range(config.epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(k_order, epoch), n))
        losses = []
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            params, opt_state, loss = _step(params, opt_state, X[rows], Y[rows],
                                            config.activation, tx)
            losses.append(float(loss))
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                  "train_accuracy": float(_accuracy(params, X, jnp.asarray(y),
                                                    config.activation)),
                  "test_accuracy": float(_accuracy(params, Xt, jnp.asarray(yt),
                                                   config.activation))}
        if epoch % config.measure_every == 0 or epoch == config.epochs - 1:
            record["nfa_corr"], record["nfa_no_diag_corr"] = _nfa(params, X_agop,
                                                                  config.activation)
        records.append(record)
    return records
