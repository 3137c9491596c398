"""Where collapse happens in a trained MLP (DESIGN.md, The network side).

For each hidden layer ``l`` with input ``Phi_l(X)`` and weight ``W_l = U S V^T``:
collapse metrics on the input, on the right-singular step ``Phi_l(X) V S`` (``S V^T``
applied), on the AGOP projection ``Phi_l(X) V_a S_a`` (``AGOP_l = V_a S_a^2 V_a^T``: does
the AGOP alone do what the weight's right singular structure does? as the paper's
analysis, ``nc_nn.py`` lines 915-925 of ``dmbeaglehole/neural_collapse_rfm``) and on the
output ``act(Phi_l(X) W_l^T + b_l)``; and the Neural Feature Ansatz:
the Pearson correlation of flattened ``W_l^T W_l`` with flattened ``AGOP_l^(1/2)`` and
``AGOP_l``, ``AGOP_l`` being the AGOP of the sub-network from layer ``l`` up with respect
to its input ``h = Phi_l(x)``, all layers' from one shared backward pass
(``layer_agop.shared_layer_agops``; ``layer_agops`` keeps the per-layer autodiff route).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax.collapse import collapse_metrics
from dnc_jax.gradient_outer_product import agop
from dnc_jax.nets.layer_agop import shared_layer_agops
from dnc_jax.nets.measurements import HeadLayerRecord
from dnc_jax.nets.mlp import ACTIVATIONS, MLP, Layer, forward_from
from dnc_jax.nets.network import Network, head_inputs
from dnc_jax.precision import matmul

# One stable function object per activation, so that agop compiles once per shape.
_SUBNETWORK = {
    name: (lambda h, layers, _name=name: forward_from(h, layers, _name)) for name in ACTIVATIONS
}


def right_singular_step(inputs: jax.Array, W: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(Phi V S, U)`` for ``W = U S V^T`` (thin SVD, float64): ``Phi V S U^T = Phi W^T``.

    Args:
      inputs: ``(n, in)``; W: ``(out, in)``.

    Returns:
      ``((n, r), (out, r))`` with ``r = min(in, out)``, in ``inputs``' dtype.
    """
    U, S, Vt = np.linalg.svd(np.asarray(W, dtype=np.float64), full_matrices=False)
    VS = jnp.asarray(Vt.T * S, inputs.dtype)
    return matmul(inputs, VS), jnp.asarray(U, inputs.dtype)


def agop_eigh(A: ArrayLike, W: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(evals, evecs)`` of the PSD AGOP ``A`` (``(d, d)``), float64, negative round-off
    eigenvalues set to 0 (as the paper's code does).

    With the layer's weight ``W`` (``(out, d)``) and ``out < d``: ``A = W^T B W`` lies in
    ``W``'s row space, so it is decomposed there, ``Q^T A Q`` for an orthonormal basis
    ``Q`` (``(d, out)``) of those rows: the same non-zero eigenpairs (the others are 0) in
    ``O(d^2 out)`` instead of ``O(d^3)`` (VGG-11's 8,192-wide head input: seconds, not
    minutes). Returns ``out`` pairs then, ``d`` otherwise.
    """
    A = np.asarray(A, dtype=np.float64)
    if W is not None and np.shape(W)[0] < np.shape(W)[1]:
        Q, _ = np.linalg.qr(np.asarray(W, dtype=np.float64).T)
        evals, V = np.linalg.eigh(Q.T @ A @ Q)
        evecs = Q @ V
    else:
        evals, evecs = np.linalg.eigh(A)
    return np.clip(evals, 0.0, None), evecs


def agop_projection(inputs: jax.Array, A: ArrayLike, W: ArrayLike | None = None) -> jax.Array:
    """``Phi V_a S_a`` for ``A = V_a S_a^2 V_a^T`` (``agop_eigh``; ``W`` the layer's weight,
    optional); NC1 and the other trace ratios equal those of ``Phi A^(1/2)``, which differs
    by the rotation ``V_a^T`` (and, with ``W``, by columns of zeros).

    Args:
      inputs: ``(n, d)``; A: ``(d, d)`` symmetric PSD; W: ``(out, d)``.

    Returns:
      ``(n, d)`` (``(n, out)`` with a ``W`` of ``out < d`` rows) in ``inputs``' dtype.
    """
    return matmul(inputs, jnp.asarray(_root_columns(*agop_eigh(A, W)), inputs.dtype))


def _root_columns(evals: np.ndarray, evecs: np.ndarray) -> np.ndarray:
    """``V_a S_a`` from ``agop_eigh`` (eigenvalues already >= 0): ``A^(1/2) = (V_a S_a)
    V_a^T`` and ``Phi V_a S_a`` the projection."""
    return evecs * np.sqrt(evals)


def pearson(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation of the flattened arrays (float64)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def layer_agops(
    layers: tuple[Layer, ...], inputs: list[jax.Array], activation: str = "relu",
    batch_size: int = 512,
) -> list[jax.Array]:
    """``AGOP_l`` of the sub-network ``layers[l:]`` at ``inputs[l]``, for each given input.

    Per-sample Jacobians by ``vmap(jacrev)``, ``batch_size`` samples at a time.
    """
    fn = _SUBNETWORK[activation]
    return [agop(fn, H, tuple(layers[l:]), batch_size=batch_size) for l, H in enumerate(inputs)]


def readable_layers(model) -> tuple[Layer, ...]:
    """The linear layers of ``model`` as ``(W (out, in), bias or None)``, input side first.

    The protocol a module follows to be analysed: a ``weights()`` method returning those
    pairs (as ``MLP`` does), or a ``layers`` attribute holding ``nnx.Linear`` modules applied
    in order with the activation between them; a tuple of pairs is taken as it is.
    """
    from flax import nnx

    weights = getattr(model, "weights", None)
    if callable(weights):
        return tuple(weights())
    linear = getattr(model, "layers", None)
    if linear is not None and len(linear) >= 2 and all(isinstance(m, nnx.Linear) for m in linear):
        return tuple((m.kernel[...].T, None if m.bias is None else m.bias[...]) for m in linear)
    if isinstance(model, tuple | list) and model and all(
            isinstance(pair, tuple | list) and len(pair) == 2 for pair in model):
        return tuple(model)
    raise ValueError(
        f"Cannot read the layers of {type(model).__name__}: give it a weights() method "
        "returning (W (out, in), bias or None) per linear layer, or a 'layers' attribute of "
        "at least two nnx.Linear applied in order (dnc_jax.nets.readable_layers)."
    )


def layer_analysis(
    model: Network | MLP | tuple[Layer, ...],
    X: ArrayLike,
    y: ArrayLike,
    *,
    activation: str | None = None,
    num_classes: int | None = None,
    batch_size: int = 512,
) -> list[HeadLayerRecord]:
    """Per hidden layer: collapse at input / right-singular step / output, and the NFA.

    Eager (host-side loop over layers and float64 metrics); not for use under ``jit``.

    Args:
      model: a ``Network`` (``train_mlp``'s; with a backbone its head is measured at the
        backbone's features of ``X``), an ``MLP`` or its ``weights()``, or any NNX module
        that exposes its layers (``readable_layers``: a ``weights()`` method or a
        ``layers`` list of ``nnx.Linear``; its ``activation`` attribute, if a name, is used).
      X: ``(n, d)`` inputs; y: ``(n,)`` integer labels.
      activation: the model's (taken from an ``MLP``; default ``"relu"`` for raw weights).
      batch_size: samples whose Jacobians are held at once.

    Returns:
      One ``HeadLayerRecord`` per hidden layer: ``layer``; ``CollapseMetrics`` at
      ``input``, ``right``, ``agop``, ``output``; ``nfa_sqrt_agop``, ``nfa_agop`` (Pearson
      correlations); ``right_share``: the share of the layer's NC1 reduction (on a log
      scale) made by the right-singular step, ``log(nc1_in / nc1_right) / log(nc1_in /
      nc1_out)``, and ``agop_share``, the same for the AGOP projection (``None`` where the
      layer leaves NC1 unchanged). ``record.to_json()`` is its form in ``results.json``.
    """
    if isinstance(model, Network):
        X, model = head_inputs(model, jnp.asarray(X)), model.head
    named = getattr(model, "activation", None)  # an MLP's, or any module's that names it
    if isinstance(named, str):
        activation = activation or named
    layers = readable_layers(model)
    activation = activation or "relu"
    act = ACTIVATIONS[activation]
    X = jnp.asarray(X, layers[0][0].dtype)
    H = X
    y = np.asarray(y)
    agops = shared_layer_agops(layers, X, activation, batch_size)
    records = []
    for l, ((W, b), A) in enumerate(zip(layers[:-1], agops, strict=True)):
        right, _ = right_singular_step(H, W)
        out = act(matmul(H, W.T) + (0.0 if b is None else b[None, :]))
        evals, evecs = agop_eigh(A, W)
        VS = _root_columns(evals, evecs)
        metrics = {point: collapse_metrics(features, y, num_classes=num_classes)
                   for point, features in (("input", H), ("right", right),
                                           ("agop", matmul(H, jnp.asarray(VS, H.dtype))),
                                           ("output", out))}
        W64 = np.asarray(W, dtype=np.float64)
        gram = W64.T @ W64
        total = np.log(metrics["input"].nc1 / metrics["output"].nc1)
        right_share, agop_share = (
            float(np.log(metrics["input"].nc1 / metrics[point].nc1) / total) if total != 0 else None
            for point in ("right", "agop"))
        records.append(HeadLayerRecord(
            l, metrics["input"], metrics["right"], metrics["agop"], metrics["output"],
            nfa_sqrt_agop=pearson(gram, VS @ evecs.T), nfa_agop=pearson(gram, A),
            right_share=right_share, agop_share=agop_share))
        H = out
    return records
