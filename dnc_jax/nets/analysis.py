"""Where collapse happens in a trained MLP (DESIGN.md, The network side).

For each hidden layer ``l`` with input ``Phi_l(X)`` and weight ``W_l = U S V^T``:
collapse metrics on the input, on the right-singular step ``Phi_l(X) V S`` (``S V^T``
applied) and on the output ``act(Phi_l(X) W_l^T + b_l)``; and the Neural Feature Ansatz:
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

from dnc_jax.agop import agop, matrix_power
from dnc_jax.collapse import collapse_metrics
from dnc_jax.nets.layer_agop import shared_layer_agops
from dnc_jax.nets.mlp import ACTIVATIONS, MLP, Layer, forward_from
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


def layer_analysis(
    model: MLP | tuple[Layer, ...],
    X: ArrayLike,
    y: ArrayLike,
    *,
    activation: str | None = None,
    num_classes: int | None = None,
    batch_size: int = 512,
) -> list[dict]:
    """Per hidden layer: collapse at input / right-singular step / output, and the NFA.

    Args:
      model: an ``MLP`` or its ``weights()``.
      X: ``(n, d)`` inputs; y: ``(n,)`` integer labels.
      activation: the model's (taken from an ``MLP``; default ``"relu"`` for raw weights).
      batch_size: samples whose Jacobians are held at once.

    Returns:
      One dict per hidden layer: ``layer``; ``input``, ``right``, ``output`` (collapse
      metrics as dicts); ``nfa_sqrt_agop``, ``nfa_agop`` (Pearson correlations);
      ``right_share``: the share of the layer's NC1 reduction (on a log scale) made by the
      right-singular step, ``log(nc1_in / nc1_right) / log(nc1_in / nc1_out)``.
    """
    if isinstance(model, MLP):
        activation = activation or model.activation
        layers = model.weights()
    else:
        layers = tuple(model)
    activation = activation or "relu"
    act = ACTIVATIONS[activation]
    X = jnp.asarray(X, layers[0][0].dtype)
    H = X
    y = np.asarray(y)
    records = []
    for W, b in layers[:-1]:
        right, _ = right_singular_step(H, W)
        out = act(matmul(H, W.T) + (0.0 if b is None else b[None, :]))
        records.append({
            "input": collapse_metrics(H, y, num_classes=num_classes).to_dict(),
            "right": collapse_metrics(right, y, num_classes=num_classes).to_dict(),
            "output": collapse_metrics(out, y, num_classes=num_classes).to_dict(),
        })
        H = out
    agops = shared_layer_agops(layers, X, activation, batch_size)
    for l, (record, A) in enumerate(zip(records, agops, strict=True)):
        W = np.asarray(layers[l][0], dtype=np.float64)
        gram = W.T @ W
        record["layer"] = l
        record["nfa_sqrt_agop"] = pearson(gram, matrix_power(np.asarray(A, np.float64), 0.5))
        record["nfa_agop"] = pearson(gram, A)
        nc1 = [record[p]["nc1"] for p in ("input", "right", "output")]
        total = np.log(nc1[0] / nc1[2])
        record["right_share"] = float(np.log(nc1[0] / nc1[1]) / total) if total != 0 else None
    return [{"layer": r.pop("layer"), **r} for r in records]
