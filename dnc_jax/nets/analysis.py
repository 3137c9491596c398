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

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax.collapse import collapse_metrics
from dnc_jax.gradient_outer_product import agop
from dnc_jax.nets.layer_agop import shared_layer_agops
from dnc_jax.nets.measurements import HeadLayerRecord
from dnc_jax.nets.mlp import ACTIVATIONS, MLP, Layer, activation_function, forward_from
from dnc_jax.nets.network import Network, head_inputs
from dnc_jax.precision import matmul


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
    layers: tuple[Layer, ...], inputs: list[jax.Array], activation: str | Callable = "relu",
    batch_size: int = 512,
) -> list[jax.Array]:
    """``AGOP_l`` of the sub-network ``layers[l:]`` at ``inputs[l]``, for each given input.

    Per-sample Jacobians by ``vmap(jacrev)``, ``batch_size`` samples at a time;
    ``activation`` a key of ``ACTIVATIONS`` or an elementwise function.
    """
    act = activation_function(activation)

    def fn(h, layers):  # agop traces it at each call: one program per shape and activation
        return forward_from(h, layers, act)

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


def model_activation(model, activation: str | Callable | None = None) -> str | Callable:
    """The activation between ``model``'s layers: ``activation`` when given (a name in
    ``ACTIVATIONS`` or an elementwise function), else the model's ``activation`` attribute
    (a name or a function: an ``MLP``'s, or any module's), else ReLU for bare weights
    (a tuple of ``(W, b)``). A module that reads as layers but names no activation is
    refused: guessing one would measure a different network."""
    if activation is not None:
        activation_function(activation)  # ValueError for an unknown name
        return activation
    own = getattr(model, "activation", None)
    if own is not None:
        activation_function(own)
        return own
    if isinstance(model, tuple | list):
        return "relu"
    raise ValueError(
        f"{type(model).__name__} names no activation: pass layer_analysis(..., activation=...) "
        f"(one of {tuple(ACTIVATIONS)} or the function its layers apply), or give the module "
        "an 'activation' attribute.")


def check_reads_as_layers(model, layers: tuple[Layer, ...], act: Callable, X: jax.Array,
                          rows: int = 8) -> None:
    """``ValueError`` unless the layers read from an NNX ``model`` with activation ``act``
    reproduce the module's own outputs on the first ``rows`` rows of ``X``: an activation
    attribute that is not the one applied, or a call that does more than the layers
    (residuals, normalisation), would otherwise be measured as a different network.
    Tolerance: float32 rounding of the layers' products, ``1e-3`` of the outputs' scale.
    A module that cannot be called on a batch of rows is not compared."""
    from flax import nnx

    if not isinstance(model, nnx.Module):
        return
    rows_in = X[:rows]
    try:
        own = model(rows_in)
    except Exception:  # noqa: BLE001 - a module that takes one example at a time
        try:
            own = jax.vmap(model)(rows_in)
        except Exception:  # noqa: BLE001 - not callable on rows: nothing to compare
            return
    read = forward_from(rows_in, layers, act)
    own = np.asarray(own, np.float64)
    scale = max(float(np.abs(own).max()), 1e-30)
    if own.shape != read.shape or float(np.abs(own - np.asarray(read, np.float64)).max()) > 1e-3 * scale:
        raise ValueError(
            f"{type(model).__name__}'s layers with this activation do not reproduce its own "
            "outputs: pass the activation its layers apply (layer_analysis(..., activation=)), "
            "or analyse a module whose call is its layers with the activation between them.")


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
        ``layers`` list of ``nnx.Linear``).
      X: ``(n, d)`` inputs; y: ``(n,)`` integer labels.
      activation: a name in ``ACTIVATIONS`` or an elementwise function; default the
        model's ``activation`` attribute (a name or a function), ReLU for raw weights, and
        a ``ValueError`` for a module that names none (``model_activation``).
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
    layers = readable_layers(model)
    activation = model_activation(model, activation)
    act = activation_function(activation)
    X = jnp.asarray(X, layers[0][0].dtype)
    check_reads_as_layers(model, layers, act, X)
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
