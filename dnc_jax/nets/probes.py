"""Probes for any Flax NNX model: per-layer collapse, the AGOP above each dense or conv
layer, and the (convolutional) neural feature ansatz, in one streaming pass.

Pick layers by type (``nnx.Linear``, ``nnx.Conv``, a block class) or by path
(``"blocks/0"``). While the model runs, each chosen module's call is intercepted (the
mechanism ``nnx.capture`` uses: the module's class method is wrapped for the duration of
the trace and dispatched on the instance, so the user's model is not rewritten): its input
and output are recorded, and a zero perturbation ``delta`` is added to the output of every
dense and conv layer so that one backward pass gives ``g = df_c/dz`` at all of them.

The AGOP behind the feature ansatz (DESIGN.md, "Probes for any NNX model"). For a dense
layer ``z = W h`` (``nnx.Linear``: ``W = kernel^T``) the sub-network above has
``df_c/dh = W^T g``, so its AGOP with respect to ``h`` is ``W^T G W / n`` with
``G = sum_i sum_c g g^T`` (``C_out x C_out``). For a conv layer the same holds per output
position ``s``: with the patches ``p_s`` of its input (the layer's own padding, stride and
dilation) and ``z_s = W p_s`` (``W`` the kernel flattened to ``C_out x (q_1 q_2 C_in)``, in
the kernel's ``(q_1, q_2, C_in)`` order), treating every patch as its own variable as the
CNFA paper does (Beaglehole, Radhakrishnan, Pandit, Belkin, arXiv 2309.00570), the patch
AGOP is ``W^T G W / n`` with ``G`` summed over images, classes and positions. Dense layers
applied to sequences (``(b, T, d)``) are treated the same way, positions as patches.

Memory: per layer the class statistics of its input and output (``O(C d)``, ``d`` the
flattened feature size) and ``G`` (``C_out^2``); per batch one forward and one backward
pass per output class, ``classes_at_once`` of them vectorised together (the activation
gradients of that many passes are held at once). No per-sample Jacobian is formed:
the official code (``aradha/convrfm``, ``hyperparam_cnfa_verification/nfa.py``,
``egop_on_patches``) holds ``vmap(jacrev)`` of every patch, ``n x C x C_in q^2 x P x Q``
numbers per batch.

Correlations, per dense or conv layer, with ``F = W^T W`` (the filter covariance; the
official ``filter_covariances`` also divides by ``C_out``, which no correlation sees):
``cosine`` is the official ``corr`` (``nfa.py``: the uncentred cosine
``<F, A> / (||F|| ||A||)`` of the matrices); ``pearson`` the Pearson correlation of their
entries (the Deep RFM paper's NFA); ``pearson_sqrt`` that of ``F^(1/2)`` and ``A^(1/2)``.

The model must treat samples independently (batch norm with running averages, no
train-mode batch statistics, no dropout): the gradient of ``sum_i f_c(x_i)`` is then each
sample's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dnc_jax import class_statistics as cs
from dnc_jax.collapse import CollapseMetrics
from dnc_jax.gradient_outer_product import power_from_eigh, psd_eigh
from dnc_jax.nets.analysis import pearson
from dnc_jax.precision import matmul

Path = tuple


class LayerProbe(NamedTuple):
    """One probed layer.

    Attributes:
      path: the module's path in the model (``"blocks/0/conv1"``); kind: ``"dense"``,
        ``"conv"`` or ``"module"`` (any other module: collapse only).
      input, output: ``CollapseMetrics`` of the layer's input and output features, each
        sample flattened.
      agop: the AGOP of the network above with respect to the layer's input (dense,
        ``(d_in, d_in)``) or its patches (conv, ``(q_1 q_2 C_in,)*2``), float64; ``None``
        for ``"module"``.
      weight_gram: ``W^T W`` on the same space (``None`` for ``"module"``).
      cosine, pearson, pearson_sqrt: the correlations of the module docstring.
    """

    path: str
    kind: str
    input: CollapseMetrics
    output: CollapseMetrics
    agop: np.ndarray | None
    weight_gram: np.ndarray | None
    cosine: float | None
    pearson: float | None
    pearson_sqrt: float | None

    def to_json(self) -> dict:
        """The scalars (metrics as dicts, correlations), without the matrices."""
        return {"path": self.path, "kind": self.kind, "input": self.input.to_dict(),
                "output": self.output.to_dict(), "cosine": self.cosine,
                "pearson": self.pearson, "pearson_sqrt": self.pearson_sqrt}


def path_name(path: Path) -> str:
    """``("blocks", 0, "conv1")`` as ``"blocks/0/conv1"``."""
    return "/".join(str(p) for p in path)


def select_layers(model: nnx.Module, layers: type | tuple[type, ...] | Sequence[str] = (
        nnx.Linear, nnx.Conv)) -> list[Path]:
    """Paths of the modules of ``model`` chosen by type (a class or a tuple of classes) or
    by path (strings such as ``"blocks/0"``). Raises ``ValueError`` for a path the model
    does not have, or when nothing is chosen."""
    found = [(path, m) for path, m in nnx.iter_modules(model) if path != ()]
    if isinstance(layers, type) or (isinstance(layers, tuple) and layers
                                    and all(isinstance(t, type) for t in layers)):
        chosen = [path for path, m in found if isinstance(m, layers)]
        what = f"modules of type {layers}"
    else:
        by_name = {path_name(path): path for path, _ in found}
        missing = [name for name in layers if str(name) not in by_name]
        if missing:
            raise ValueError(f"{type(model).__name__} has no module at {missing}; its modules: "
                             f"{sorted(by_name)[:20]}.")
        chosen = [by_name[str(name)] for name in layers]
        what = f"paths {list(layers)}"
    if not chosen:
        raise ValueError(f"{type(model).__name__} has no {what} to probe.")
    return chosen


def layer_kind(module: nnx.Module) -> str:
    """``"dense"`` (``nnx.Linear``), ``"conv"`` (``nnx.Conv`` without groups) or ``"module"``."""
    if isinstance(module, nnx.Linear):
        return "dense"
    if isinstance(module, nnx.Conv):
        if module.feature_group_count != 1:
            raise ValueError("A grouped convolution (feature_group_count > 1) has no single "
                             "patch space; probe it as a module (kind 'module') by path of "
                             "its parent, or without it.")
        return "conv"
    return "module"


@contextlib.contextmanager
def _intercept(model: nnx.Module, paths: Sequence[Path], on_call: Callable):
    """While active, a call of a module of ``model`` at one of ``paths`` runs
    ``on_call(path, module, args, kwargs, call)`` instead (``call`` its own ``__call__``);
    every other instance of the same classes runs unchanged. Restored on exit."""
    modules = dict(nnx.iter_modules(model))
    targets = {id(modules[path]): path for path in paths}
    active: set[int] = set()
    patched: dict[type, Any] = {}
    for cls in {type(modules[path]) for path in paths}:
        patched[cls] = cls.__dict__.get("__call__")
        original = cls.__call__

        def wrapper(self, *args, _original=original, **kwargs):
            key = id(self)
            if key not in targets or key in active:
                return _original(self, *args, **kwargs)
            active.add(key)
            try:
                return on_call(targets[key], self, args, kwargs, _original)
            finally:
                active.discard(key)

        cls.__call__ = wrapper  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, own in patched.items():
            if own is None:
                del cls.__call__
            else:
                cls.__call__ = own  # type: ignore[method-assign]


def _default_apply(model, x):
    return model(x)


def _forward(graphdef, state, x, deltas: dict, paths, apply: Callable) -> tuple:
    """``(logits (b, C), inputs, outputs)``: the model on ``x`` with ``deltas[name]`` added
    to the output of each layer named in ``deltas``; ``inputs`` / ``outputs`` by path name
    (``path_name``), in call order."""
    model = nnx.merge(graphdef, state)
    inputs: dict = {}
    outputs: dict = {}

    def on_call(path, module, args, kwargs, call):
        name = path_name(path)
        if name in inputs:
            raise ValueError(f"{name} is called more than once in one forward "
                             "pass; probe a module that runs once per sample.")
        if not args:
            raise ValueError(f"{name} was called without a positional input.")
        out = call(module, *args, **kwargs)
        if not isinstance(out, jax.Array):
            raise ValueError(f"{name} returns {type(out).__name__}, not an array; "
                             "probe the modules inside it.")
        if name in deltas:
            out = out + deltas[name]
        inputs[name], outputs[name] = args[0], out
        return out

    with _intercept(model, paths, on_call):
        logits = apply(model, x)
    logits = jnp.asarray(logits)
    missing = [path_name(p) for p in paths if path_name(p) not in inputs]
    if missing:
        raise ValueError(f"{missing} did not run when the model was applied to the inputs.")
    return logits.reshape(logits.shape[0], -1), inputs, outputs


class _Accumulator(NamedTuple):
    inputs: dict
    outputs: dict
    grams: dict


def _batch_step(graphdef, paths, names, weighted, apply, classes_at_once, state, acc, x, y):
    """Fold one batch (rows with ``y == -1`` are padding) into the accumulator; ``paths``
    the chosen modules, ``names`` their path names in call order, ``weighted`` those of
    dense and conv layers; the backward passes ``classes_at_once`` output classes at a
    time (``None``: all)."""
    valid = (y >= 0).astype(jnp.float32)
    _, inputs, outputs = jax.eval_shape(lambda: _forward(graphdef, state, x, {}, paths, apply))
    deltas = {p: jnp.zeros(outputs[p].shape, outputs[p].dtype) for p in weighted}

    def run(d):
        logits, ins, outs = _forward(graphdef, state, x, d, paths, apply)
        return logits, (ins, outs)

    logits, pullback, (ins, outs) = jax.vjp(run, deltas, has_aux=True)
    C = logits.shape[1]

    k = C if classes_at_once is None else min(int(classes_at_once), C)
    chunks = -(-C // k)
    index = jnp.arange(chunks * k).reshape(chunks, k)
    index = jnp.where(index < C, index, -1)  # one_hot(-1) is 0: a padded class adds nothing

    def per_chunk(grams, classes):
        cot = (jax.nn.one_hot(classes, C, dtype=logits.dtype)[:, None, :]
               * valid.astype(logits.dtype)[None, :, None])
        (g,) = jax.vmap(pullback)(cot)  # k backward passes at once
        for p in weighted:
            flat = g[p].reshape(-1, g[p].shape[-1])
            grams[p] = grams[p] + matmul(flat.T, flat)
        return grams, None

    if chunks == 1:  # XLA runs a loop of one step about 2x slower than its body alone
        grams, _ = per_chunk(dict(acc.grams), index[0])
    else:
        grams, _ = jax.lax.scan(per_chunk, dict(acc.grams), index)
    return _Accumulator(
        {p: cs.update(acc.inputs[p], ins[p].reshape(x.shape[0], -1), y) for p in names},
        {p: cs.update(acc.outputs[p], outs[p].reshape(x.shape[0], -1), y) for p in names},
        grams)


def _residual_step(graphdef, paths, names, apply, state, res, x, y):
    _, ins, outs = _forward(graphdef, state, x, {}, paths, apply)
    return ({p: cs.update_residuals(res[0][p], ins[p].reshape(x.shape[0], -1), y) for p in names},
            {p: cs.update_residuals(res[1][p], outs[p].reshape(x.shape[0], -1), y) for p in names})


def _batches(batches) -> Iterable:
    return batches() if callable(batches) else batches


def cosine(A: np.ndarray, B: np.ndarray) -> float:
    """The official CNFA ``corr``: ``<A, B> / (||A|| ||B||)`` over all entries (float64)."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    return float(np.sum(A * B) / (np.linalg.norm(A) * np.linalg.norm(B)))


def probe(model: nnx.Module, batches, *, num_classes: int,
          layers: type | tuple[type, ...] | Sequence[str] = (nnx.Linear, nnx.Conv),
          apply: Callable | None = None, second_pass: bool = True,
          classes_at_once: int | None = None) -> list[LayerProbe]:
    """Per chosen layer: collapse at its input and output, and for dense and conv layers the
    AGOP above it against ``W^T W`` (module docstring). Eager; each batch runs as one
    compiled program (compiled once per probe call and batch shape).

    Args:
      model: any NNX module (read through ``nnx.split`` now: later changes to it are not
        seen).
      batches: ``(x, y)`` pairs, ``x`` the model's input batch and ``y`` ``(b,)`` integer
        labels (``-1`` marks padding rows, which count nowhere). An iterable that can be
        iterated twice (a list, a dataset object) or a function returning a fresh iterator;
        a one-shot iterator only with ``second_pass=False``. Batches placed on several
        devices (rows sharded) run sharded: XLA partitions the pass and reduces the sums.
      num_classes: ``C``, the number of label classes.
      layers: types or paths (``select_layers``).
      apply: ``apply(model, x) -> logits (b, ...)`` (default ``model(x)``); its output is
        flattened to ``(b, C_out)`` and every output is differentiated.
      second_pass: run the batches again for ``nc1_pinv`` and the nearest-class-centre
        agreement; without it those fields are NaN (``class_statistics.metrics``).
      classes_at_once: output classes whose backward passes run together (vectorised);
        default all. Memory grows with it: about this many copies of the batch's
        activation gradients. ``1`` is the least memory.

    Returns:
      ``LayerProbe`` per chosen layer, in the order the forward pass calls them.
    """
    if classes_at_once is not None and int(classes_at_once) < 1:
        raise ValueError(f"classes_at_once must be >= 1 (or None: all); got {classes_at_once}.")
    if second_pass and not callable(batches) and iter(batches) is batches:
        raise ValueError("batches is a one-shot iterator but second_pass=True reads it twice: "
                         "pass a list or a function returning a fresh iterator, or "
                         "second_pass=False.")
    chosen = tuple(select_layers(model, layers))
    modules = {path_name(p): m for p, m in nnx.iter_modules(model)}
    kinds = {path_name(p): layer_kind(modules[path_name(p)]) for p in chosen}
    graphdef, state = nnx.split(model)
    snapshot = {path_name(p): m for p, m in nnx.iter_modules(nnx.merge(graphdef, state))}
    apply = apply or _default_apply
    iterator = iter(_batches(batches))
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("batches is empty.") from None
    x0 = jnp.asarray(first[0])
    _, ins, outs = jax.eval_shape(lambda: _forward(graphdef, state, x0, {}, chosen, apply))
    order = tuple(p for p in ins if p in kinds)  # call order
    weighted = tuple(p for p in order if kinds[p] != "module")
    acc = _Accumulator(
        {p: cs.ClassStatistics.zeros(num_classes, int(np.prod(ins[p].shape[1:])), ins[p].dtype)
         for p in order},
        {p: cs.ClassStatistics.zeros(num_classes, int(np.prod(outs[p].shape[1:])), outs[p].dtype)
         for p in order},
        {p: jnp.zeros((outs[p].shape[-1],) * 2, outs[p].dtype) for p in weighted})
    step = jax.jit(lambda s, a, x, y: _batch_step(graphdef, chosen, order, weighted, apply,
                                                  classes_at_once, s, a, x, y))
    n = 0
    for x, y in _chain(first, iterator):
        y = _labels(y, x)
        acc = step(state, acc, x, y)
        n += int(np.sum(np.asarray(y) >= 0))
    residuals = None
    if second_pass:
        rstep = jax.jit(lambda s, r, x, y: _residual_step(graphdef, chosen, order, apply, s, r, x, y))
        residuals = ({p: cs.residual_pass(acc.inputs[p]) for p in order},
                     {p: cs.residual_pass(acc.outputs[p]) for p in order})
        for x, y in _batches(batches):
            residuals = rstep(state, residuals, x, _labels(y, x))
    results = []
    for p in order:
        metrics_in = cs.metrics(acc.inputs[p], None if residuals is None else residuals[0][p])
        metrics_out = cs.metrics(acc.outputs[p], None if residuals is None else residuals[1][p])
        agop = gram = None
        correlations: tuple[float | None, ...] = (None, None, None)
        if kinds[p] != "module":
            layer: Any = snapshot[p]  # nnx.Linear or nnx.Conv, as split at the call
            kernel = np.asarray(layer.kernel[...], np.float64)
            W_t = kernel.reshape(-1, kernel.shape[-1])  # W^T: (d_in or q1 q2 C_in, C_out)
            agop = W_t @ np.asarray(acc.grams[p], np.float64) @ W_t.T / n
            gram = W_t @ W_t.T
            correlations = (cosine(gram, agop), pearson(gram, agop),
                            pearson(power_from_eigh(*psd_eigh(gram), 0.5),
                                    power_from_eigh(*psd_eigh(agop), 0.5)))
        results.append(LayerProbe(p, kinds[p], metrics_in, metrics_out, agop, gram,
                                  *correlations))
    return results


def _chain(first, rest):
    yield first
    yield from rest


def _labels(y, x) -> jax.Array:
    y = jnp.asarray(y)
    if y.ndim != 1 or y.shape[0] != np.shape(x)[0] or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"labels must be ({np.shape(x)[0]},) integers per batch; got shape "
                         f"{y.shape}, dtype {y.dtype}.")
    return y.astype(jnp.int32)
