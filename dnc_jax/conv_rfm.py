"""ConvRFM and Deep ConvRFM: a convolutional kernel machine whose patch metric ``M`` is
learned from the patch AGOP, layer after layer (the CNFA paper, Beaglehole, Radhakrishnan,
Pandit, Belkin, arXiv 2309.00570, and its code ``aradha/convrfm``, ``deep_conv_rfm/``).

The kernel compares two images patch by patch at the same positions, in the metric ``M``:

    K_M(x, x') = (1/S) sum_s exp(-||p_s(x) - p_s(x')||_M / L),

with ``p_s`` the ``q x q`` patches (channels last, the ``(q_1, q_2, c)`` order of a conv
kernel), ``S`` of them per image, ``||v||_M = sqrt(v^T M v)``. One ConvRFM step fits kernel
ridge regression ``alpha = (K + reg I)^-1 Y`` and replaces ``M`` by the patch AGOP of the
fitted predictor, every patch its own variable (``nets.probes``' definition):
``(1/n) sum_i sum_c sum_s grad_{p_s} f_c(x_i) grad_{p_s} f_c(x_i)^T``, rescaled so that
patches keep the spread they have under the identity metric the first fit uses
(``tr(M Sigma) = tr(Sigma)``, ``Sigma`` the covariance of all patches: the mean squared
distance between patches is unchanged, so the bandwidth keeps its meaning; rescaling to
trace ``q^2 c`` instead lost 4 points of test accuracy in a second layer on MNIST, where
the AGOP concentrates on few directions). Deep ConvRFM then maps the images
through a convolution with filters ``G M^(1/2)`` (``G`` standard Gaussian, ``width`` filters;
``deep_conv_rfm/utils.py`` ``get_layer_from_M`` with ``sqrtM``) and repeats on the new
feature maps.

Where this differs from the official ``deep_conv_rfm/main.py`` (commit 92d2f30), and why:
its kernel is neural-tangents' convolutional NTK of a vanilla CNN (``models.Vanilla``), not
reproduced here (neural-tangents is not a dependency); it picks the ridge among
``1e-8, 1e-5, 1e-3`` and the best ``M`` by **test** accuracy (lines 216-243), where this
module fixes both in advance; it takes the AGOP from 20 images (line 248) where the default
here is 200; it normalises ``M`` to unit Frobenius norm (line 260), a scale
the homogeneous NTK ignores and the Laplace kernel does not, hence the rescaling above. As
there, the map between layers is the convolution alone, without a nonlinearity (line 178):
the kernel is the nonlinear part.

The functions are pure and traceable (``jit``), shapes static; ``deep_conv_rfm`` is the
eager loop over layers and iterations.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax.collapse import collapse_metrics
from dnc_jax.gradient_outer_product import matrix_power
from dnc_jax.labels import one_hot_pm1
from dnc_jax.option_fields import option
from dnc_jax.precision import PRECISION, einsum, matmul

PADDINGS = ("VALID", "SAME")


def image_patches(x: jax.Array, patch: int, padding: str = "VALID") -> jax.Array:
    """``(n, H, W, c)`` images to ``(n, S, q^2 c)`` patches, stride 1, channels last in
    each patch (the order of a ``(q, q, c, C_out)`` conv kernel flattened)."""
    c = x.shape[-1]
    P = jax.lax.conv_general_dilated_patches(x, (patch, patch), (1, 1), padding,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                             precision=PRECISION)
    n, H, W, _ = P.shape
    # conv_general_dilated_patches orders each patch (c, q1, q2): move channels last
    P = P.reshape(n, H, W, c, patch, patch).transpose(0, 1, 2, 4, 5, 3)
    return P.reshape(n, H * W, patch * patch * c)


def _safe_norm(D: jax.Array) -> jax.Array:
    """``sqrt(D)`` for squared distances, 0 with a zero gradient where ``D <= 0`` (equal
    patches: the Laplace kernel's subgradient there, as this library's radial kernels)."""
    live = D > 0
    return jnp.where(live, jnp.sqrt(jnp.where(live, D, 1.0)), 0.0)


def conv_kernel(P: jax.Array, Q: jax.Array, root: jax.Array, bandwidth) -> jax.Array:
    """``K_M`` (module docstring) between patch sets ``P`` (``(n, S, p)``) and ``Q``
    (``(m, S, p)``) with ``root = M^(1/2)`` (``(p, p)``): ``(n, m)``, summed position by
    position (``lax.scan``: memory ``O(n m)``)."""
    A = einsum("nsp,pq->snq", P, root)
    B = einsum("msp,pq->smq", Q, root)

    def position(total, ab):
        a, b = ab
        D = (jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :]
             - 2.0 * matmul(a, b.T))
        return total + jnp.exp(-_safe_norm(D) / bandwidth), None

    total, _ = jax.lax.scan(position, jnp.zeros((P.shape[0], Q.shape[0]), P.dtype), (A, B))
    return total / P.shape[1]


def fit_conv_kernel(P: jax.Array, Y: jax.Array, root: jax.Array, bandwidth, reg) -> jax.Array:
    """``alpha = (K_M(P, P) + reg I)^-1 Y`` by Cholesky: ``(n, C)``."""
    K = conv_kernel(P, P, root, bandwidth)
    K = K + reg * jnp.eye(K.shape[0], dtype=K.dtype)
    return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(K), Y)


def patch_agop(P_at: jax.Array, P: jax.Array, alpha: jax.Array, root: jax.Array,
               bandwidth, chunk: int = 64) -> jax.Array:
    """The patch AGOP of ``f(x) = K_M(x, P) alpha`` at the images ``P_at`` (``(m, S, p)``):
    ``(1/m) sum_i sum_c sum_s g g^T``, ``g = df_c/dp_s(x_i)`` (``(p, p)``), by reverse-mode
    autodiff per image, ``chunk`` images at a time."""

    def f(patches):  # one image's patches (S, p) -> (C,)
        return matmul(conv_kernel(patches[None], P, root, bandwidth), alpha)[0]

    m = P_at.shape[0]
    pad = (-m) % chunk
    Pp = jnp.concatenate([P_at, jnp.zeros((pad,) + P_at.shape[1:], P_at.dtype)])
    # zero-padded images have nonzero gradients: their Jacobians are weighted by 0
    weights = jnp.concatenate([jnp.ones(m, P_at.dtype), jnp.zeros(pad, P_at.dtype)])

    def masked(total, xs):
        Pb, wb = xs
        J = jax.vmap(jax.jacrev(f))(Pb) * wb[:, None, None, None]  # (b, C, S, p)
        J = J.reshape(-1, J.shape[-1])
        return total + matmul(J.T, J), None

    d = P_at.shape[-1]
    total, _ = jax.lax.scan(masked, jnp.zeros((d, d), P_at.dtype),
                            (Pp.reshape(-1, chunk, *P_at.shape[1:]), weights.reshape(-1, chunk)))
    return total / m


@dataclasses.dataclass(frozen=True)
class DeepConvRFMConfig:
    """Deep ConvRFM on images (module docstring for each choice against the official code)."""

    depth: int = option(2, "layers (feature maps built from the learned M)")
    iters: int = option(2, "ConvRFM steps per layer (each: fit, patch AGOP)")
    patch: int = option(3, "patch size q")
    padding: str = option("VALID", "patches of the image only (VALID) or zero padded (SAME)",
                          choices=PADDINGS)
    width: int = option(16, "filters of each layer's map G M^(1/2)")
    bandwidth: float = option(4.0, "Laplace bandwidth L on patch distances")
    reg: float = option(1e-3, "ridge")
    agop_samples: int | None = option(200, "training images the patch AGOP is taken at, "
                                           "seeded (the official code: 20)")
    seed: int = option(0, "seeds the random filters G")

    def __post_init__(self) -> None:
        for name in ("depth", "iters", "patch", "width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}; got {self.padding!r}.")
        if not (self.bandwidth > 0 and self.reg >= 0):
            raise ValueError(f"bandwidth must be > 0 and reg >= 0; got {self.bandwidth}, {self.reg}.")
        if self.agop_samples is not None and self.agop_samples < 1:
            raise ValueError(f"agop_samples must be >= 1; got {self.agop_samples}.")


class ConvRFMStep(NamedTuple):
    """One fit at ``layer``, step ``step`` (step 0: the identity metric): train and test
    accuracy of the kernel machine, and NC1 of the layer's input images (flattened)."""

    layer: int
    step: int
    train_accuracy: float
    test_accuracy: float
    nc1: float

    def to_json(self) -> dict:
        return self._asdict()


_patch_agop = jax.jit(patch_agop, static_argnames=("chunk",))  # one program per shape


@jax.jit
def _spread_scale(P: jax.Array, A: jax.Array) -> jax.Array:
    """``tr(Sigma) / tr(A Sigma)``, ``Sigma`` the covariance of the patches ``P`` (module
    docstring): the factor that gives ``A`` the identity's mean squared patch distance."""
    flat = P.reshape(-1, P.shape[-1])
    centred = flat - jnp.mean(flat, axis=0, keepdims=True)
    return jnp.sum(centred * centred) / jnp.sum(centred * matmul(centred, A))


@jax.jit
def _accuracies(P, Y, Pt, root, bandwidth, reg):
    alpha = fit_conv_kernel(P, Y, root, bandwidth, reg)
    train = matmul(conv_kernel(P, P, root, bandwidth), alpha)
    test = matmul(conv_kernel(Pt, P, root, bandwidth), alpha)
    return alpha, jnp.argmax(train, axis=1), jnp.argmax(test, axis=1)


def deep_conv_rfm(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray,
                  config: DeepConvRFMConfig = DeepConvRFMConfig()) -> list[ConvRFMStep]:
    """Deep ConvRFM on ``(n, H, W, c)`` training images ``X`` with labels ``y`` and test
    images ``Xt``, ``yt``: per layer, ``config.iters + 1`` fits (the identity metric, then
    each learned ``M``), the layer's map built from the last ``M``. Eager."""
    X, Xt = jnp.asarray(X, jnp.float32), jnp.asarray(Xt, jnp.float32)
    y, yt = np.asarray(y), np.asarray(yt)
    C = int(max(y.max(), yt.max())) + 1
    Y = jnp.asarray(one_hot_pm1(y, C))
    key = jax.random.key(config.seed)
    records = []
    agop_rows = len(X) if config.agop_samples is None else min(config.agop_samples, len(X))
    agop_at = np.sort(np.random.default_rng(config.seed).permutation(len(X))[:agop_rows])
    for layer in range(config.depth):
        P, Pt = (image_patches(Z, config.patch, config.padding) for Z in (X, Xt))
        d = P.shape[-1]
        nc1 = float(collapse_metrics(np.asarray(X).reshape(len(X), -1), y, num_classes=C).nc1)
        M = jnp.eye(d, dtype=jnp.float32)
        for step in range(config.iters + 1):
            root = matrix_power(M, 0.5)  # eigh in float64
            alpha, train_pred, test_pred = _accuracies(P, Y, Pt, root, config.bandwidth,
                                                       config.reg)
            records.append(ConvRFMStep(layer, step, float(np.mean(np.asarray(train_pred) == y)),
                                       float(np.mean(np.asarray(test_pred) == yt)), nc1))
            if step < config.iters:
                A = _patch_agop(P[agop_at], P, alpha, root, config.bandwidth)
                M = A * _spread_scale(P, A)
        if layer + 1 < config.depth:
            key, sub = jax.random.split(key)
            G = jax.random.normal(sub, (config.width, d), jnp.float32)
            filters = matmul(G, root).T.reshape(config.patch, config.patch, X.shape[-1],
                                                config.width)
            X, Xt = (jax.lax.conv_general_dilated(
                Z, filters, (1, 1), config.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                precision=PRECISION) / np.sqrt(d) for Z in (X, Xt))
    return records
