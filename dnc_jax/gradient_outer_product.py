"""The average gradient outer product (AGOP): generic autodiff route and kernel closed form.

``AGOP = (1/m) sum_i J(x_i)^T J(x_i)`` with ``J = df/dx`` (``C x d``) (DESIGN.md, AGOP).
Both routes accumulate ``sum J^T J`` (and ``sum J`` when centred) over row batches, so
memory is ``O(batch * C * d + d^2)``; the options are shared:

- ``centered``: subtract the mean Jacobian, ``(1/m) sum (J_i - Jbar)^T (J_i - Jbar)``;
- ``diag``: return only the diagonal ``(d,)``;
- ``normalize``: ``None``, ``"max"`` (divide by the largest absolute entry) or ``"trace"``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.blocks import even_batch, pad_rows, row_chunk_sum
from dnc_jax.kernels import Kernel
from dnc_jax.kernels.distances import symmetric_part
from dnc_jax.precision import einsum, matmul
from dnc_jax.predictor import (
    KernelPredictor,
    block_outputs,
    centre_specs,
    on_mesh,
    over_centres,
)
from dnc_jax.programs import trace_program
from dnc_jax.rows import DATA, REPLICATED, ROWS, Rows, num_shards, row_mask
from dnc_jax.sharding import as_rows

Normalize = Literal["max", "trace"] | None
NORMALIZATIONS = (None, "none", "max", "trace")


# Training rows whose Jacobians the fits' AGOPs hold at once: the default of every fit
# (fit_with_agop, fit_rfm, the estimators, Deep RFM's agop_batch)
AGOP_BATCH = 1024

def jacobian_sums(jac_fn: Callable, arrays: tuple, batch_size: int, centered: bool, diag: bool,
                  *, pad: bool = True):
    """Sum ``J^T J`` (or its diagonal) and, when ``centered``, ``J`` over row batches.

    ``jac_fn`` maps ``batch_size`` rows of each array in ``arrays`` (row-aligned) to the
    ``(b, C, d)`` Jacobians of those samples. With ``pad`` the rows are split into batches
    of equal size, at most ``batch_size`` (``even_batch``), the last padded (``pad_rows``,
    fewer padding rows than batches) and its padding weighted out, so that every batch runs
    the same program and almost no padded work is thrown away; without it (for arrays too
    large to copy) the remainder is one smaller batch.

    Returns:
      ``(outer, total)``: ``(d, d)`` (or ``(d,)``) and ``(C, d)`` (or ``()``).
    """

    if pad:
        batch_size = even_batch(arrays[0].shape[0], batch_size)
    arrays, weights = pad_rows(arrays, batch_size if pad else 1)

    def sums(*blocks):
        *blocks, w = blocks
        J = jac_fn(*blocks) * w[:, None, None]
        Jflat = J.reshape(-1, J.shape[-1])
        outer = jnp.sum(Jflat * Jflat, axis=0) if diag else matmul(Jflat.T, Jflat)
        return outer, (jnp.sum(J, axis=0) if centered else jnp.zeros((), J.dtype))

    return row_chunk_sum(sums, (*arrays, weights), batch_size)


def finish_agop(outer, total, m, centered, diag, normalize, M=None):
    """Mean, centring, metric sandwich ``M A M`` and normalisation of accumulated sums.

    ``outer`` is the full ``(d, d)`` sum, or its diagonal ``(d,)``; with a metric ``M``
    it must be full (the diagonal of ``M A M`` needs all of ``A``).
    """
    A = outer / m
    if centered:
        mean_jac = total / m
        A = A - (jnp.sum(mean_jac * mean_jac, axis=0) if A.ndim == 1 else matmul(mean_jac.T, mean_jac))
    if M is not None:  # J = G M with G the metric-free gradient, so J^T J = M G^T G M
        M = symmetric_part(M)  # the metric's symmetric part, as the distances use
        A = matmul(matmul(M, A), M)
    if diag and A.ndim == 2:
        A = jnp.diagonal(A)
    if normalize == "max":
        scale = jnp.max(jnp.abs(A))
    elif normalize == "trace":
        scale = jnp.sum(A) if diag else jnp.trace(A)
    else:
        return A
    return jnp.where(scale > 0, A / jnp.where(scale > 0, scale, 1.0), A)


def check_normalize(normalize) -> Normalize:
    """``normalize`` with ``"none"`` as ``None``, or ``ValueError`` naming the choices (a
    misspelt option would otherwise mean no normalisation)."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}; got {normalize!r}.")
    return None if normalize == "none" else normalize


def _check_batch_and_normalize(batch_size, normalize):
    """``(batch_size, normalize with "none" as None)``, or ``ValueError``.

    ``None`` stays ``None`` (every row in one batch); a given ``batch_size`` is the most
    rows held at once (``jacobian_sums`` splits the rows evenly under it)."""
    normalize = check_normalize(normalize)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
    batch_size = None if batch_size is None else int(batch_size)
    return batch_size, normalize


def _check_options(X, batch_size, normalize):
    X = _checks.as_float_matrix("X", X)
    _checks.check_finite("X", X)
    return X, *_check_batch_and_normalize(batch_size, normalize)


@functools.partial(
    jax.jit, static_argnames=("program", "batch_size", "centered", "diag", "normalize", "forward")
)
def _agop_autodiff(program, consts, X, leaves, batch_size, centered, diag, normalize, forward):
    def f(x, *leaves):
        return program(consts, x, *leaves)

    jac = jax.jacfwd(f) if forward else jax.jacrev(f)

    def jac_fn(Xb):
        J = jax.vmap(jac, in_axes=(0,) + (None,) * len(leaves))(Xb, *leaves)
        return J.reshape(Xb.shape[0], -1, Xb.shape[1])

    outer, total = jacobian_sums(jac_fn, (X,), batch_size or X.shape[0], centered, diag)
    return finish_agop(outer, total, X.shape[0], centered, diag, normalize)


@dataclasses.dataclass(frozen=True)
class _MergedModule:
    """``x, state -> nnx.merge(graphdef, state)(x)``: a Flax NNX module as a pure function
    of its state, which is passed as an argument (read at each call, never cached)."""

    graphdef: Any

    def __call__(self, x, state, *args):
        from flax import nnx

        return nnx.merge(self.graphdef, state)(x, *args)


def as_pure_function(f: Callable, args: tuple) -> tuple[Callable, tuple]:
    """``(f, args)``, with a Flax NNX module split into its graph and its current state
    (the first argument): a module's call that updates its own state (batch statistics,
    RNG counts) then updates a merged copy, never the caller's module."""
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - flax is a dependency
        return f, args
    if isinstance(f, nnx.Module):
        graphdef, state = nnx.split(f)
        return _MergedModule(graphdef), (state, *args)
    return f, args


def agop(
    f: Callable[..., jax.Array],
    X: ArrayLike,
    *args,
    batch_size: int | None = None,
    centered: bool = False,
    diag: bool = False,
    normalize: Normalize = None,
) -> jax.Array:
    """AGOP of any function through vmapped per-sample Jacobians.

    Supports ``jax.jit`` and ``nnx.jit`` around it (value checks of ``X`` are then
    skipped), and ``jax.grad`` / ``jax.vmap`` through ``*args``.

    Args:
      f: maps one example ``x`` of shape ``(d,)`` (and ``*args``, e.g. parameters, passed
        unbatched) to ``(C,)`` or a scalar. It is traced at every call and whatever it
        closes over (a module's weights, arrays, numbers) is read then: the arrays go in
        as arguments of one compiled program per input shape and program text, so a
        closure over a model that trains gives the current AGOP without recompiling. A
        Flax NNX module is read through ``nnx.split`` (its state an argument; a module
        whose call updates its own state, e.g. batch statistics, updates a copy).
      X: ``(m, d)`` evaluation points, or ``(m, *shape)`` examples of any shape (images
        ``(m, H, W, C)``, sequences): ``f`` then takes one example of that shape, and the
        AGOP is taken with respect to the flattened example (``d = prod(shape)``).
      *args: pytrees passed to ``f`` after ``x``.
      batch_size: rows whose Jacobians are held at once (default: all).
      centered: subtract the mean Jacobian (module docstring).
      diag: return only the diagonal.
      normalize: ``None``, ``"max"`` or ``"trace"``.

    Returns:
      ``(d, d)`` AGOP, or ``(d,)`` when ``diag``; ``f``'s output of any shape counts as
      ``C`` outputs, ``C`` its size. ``jacfwd`` is used when ``C > d``.

    Example:
      >>> import jax.numpy as jnp
      >>> from dnc_jax import agop
      >>> B = jnp.array([[1.0, 2.0], [0.0, 1.0]])
      >>> agop(lambda x: B @ x, jnp.ones((3, 2))).tolist()  # B^T B for a linear map
      [[1.0, 2.0], [2.0, 5.0]]
    """
    f, args = as_pure_function(f, args)
    f, X = flat_examples(f, X)
    X, batch_size, normalize = _check_options(X, batch_size, normalize)
    program, consts, leaves = trace_program(f, jax.ShapeDtypeStruct(X.shape[1:], X.dtype), args)
    forward = int(np.prod(program.jaxpr.outvars[0].aval.shape)) > X.shape[1]
    A = _agop_autodiff(program, tuple(consts), X, tuple(leaves), batch_size, centered, diag,
                       normalize, forward)
    return nan_unless_finite(X, A)


def flat_examples(f: Callable, X: ArrayLike) -> tuple[Callable, ArrayLike]:
    """``(f, X)`` with examples of any shape as flat rows: ``X`` of shape ``(m, *shape)``
    becomes ``(m, d)``, ``d = prod(shape)``, and ``f`` takes the flat row (reshaped back
    to ``shape`` inside), so the Jacobian is taken with respect to the flattened input.
    Rows ``(m, d)`` pass unchanged; fewer than 2 dimensions is a ``ValueError``."""
    X = X if isinstance(X, jax.Array) else np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"X must be (m, d) rows or (m, *shape) examples (images, sequences); "
                         f"got shape {X.shape}.")
    if X.ndim == 2:
        return f, X
    shape = X.shape[1:]

    def on_flat_rows(x, *args):
        return f(x.reshape(shape), *args)

    return on_flat_rows, X.reshape(X.shape[0], -1)


def nan_unless_finite(X, A: jax.Array) -> jax.Array:
    """``A``, or NaN when traced points ``X`` hold a NaN or an infinity (eager ``X`` was
    checked at the entry): a Jacobian at an infinite point can be finite (a saturated
    ``tanh``), which no average over the points should hide."""
    if not _checks.is_traced(X):
        return A
    return _checks.nan_unless(jnp.isfinite(X).all(), A)


def coef_outer_centers(coefs: jax.Array, centers: jax.Array) -> jax.Array:
    """Rows ``alpha_j (x) x_j``: ``(n, C), (n, d) -> (n, C * d)``."""
    n, C = coefs.shape
    return (coefs[:, :, None] * centers[:, None, :]).reshape(n, C * centers.shape[1])


def gradients_from_weights(
    W: jax.Array, coefs: jax.Array, coef_centers: jax.Array, Xb: jax.Array
) -> jax.Array:
    """Metric-free gradients ``G = W (alpha (x) X) - (W alpha) (.) x`` of a kernel predictor.

    ``grad f_c(x) = G[c] M``. Args: ``W`` ``(b, n)`` gradient weights, ``coefs`` ``(n, C)``,
    ``coef_centers`` ``(n, C * d)`` from ``coef_outer_centers``, ``Xb`` ``(b, d)``.
    Returns ``(b, C, d)``; no ``(b, n, d)`` tensor is formed.
    """
    b, d = Xb.shape
    first = matmul(W, coef_centers).reshape(b, -1, d)
    return first - matmul(W, coefs)[:, :, None] * Xb[:, None, :]


def kernel_gradients(
    Xb: jax.Array,
    kernel: Kernel,
    centers: jax.Array,
    coefs: jax.Array,
    coef_centers: jax.Array | None = None,
) -> jax.Array:
    """Metric-free gradients ``G`` of ``f(x) = sum_j coefs_j kernel(x, centers_j)`` at a
    block of points, for a radial ``kernel``.

    ``grad f_c(x) = G[c] M`` with ``G[c] = sum_j alpha_jc W(x, x_j) (x_j - x)`` (the gradient
    weights ``W``, ``Kernel.gradient_weights``): DESIGN.md's
    ``G = (1/L) [W (alpha (x) X) - (W alpha) (.) Z]``.

    Args:
      Xb: ``(b, d)`` evaluation points.
      kernel: a radial ``Kernel`` value (its metric ``M`` sets the distances).
      centers: ``(n, d)`` centres ``x_j``; coefs: ``(n, C)``.
      coef_centers: optional precomputed ``coef_outer_centers(coefs, centers)``.

    Returns:
      ``(b, C, d)``.
    """
    if not isinstance(kernel, Kernel):
        raise TypeError("kernel_gradients(Xb, kernel, centers, coefs): kernel is a Kernel value, "
                        "e.g. Kernel('laplace', 2.0, M); the (Xb, centers, coefs, kernel, "
                        "bandwidth, M) order is gone.")
    _, W = kernel.gradient_weights(kernel.distances(Xb, centers))
    if coef_centers is None:
        coef_centers = coef_outer_centers(coefs, centers)
    return gradients_from_weights(W, coefs, coef_centers, Xb)


@functools.partial(jax.jit, static_argnames=("batch_size", "centered", "diag", "normalize"))
def _kernel_agop(predictor, X, batch_size, centered, diag, normalize):
    coef_centers = coef_outer_centers(predictor.coefs, predictor.centers)

    def jac_fn(Xb):
        return kernel_gradients(Xb, predictor.kernel, predictor.centers, predictor.coefs,
                                coef_centers)

    diag_sums = diag and predictor.M is None  # with a metric, diag(M A M) needs all of A
    outer, total = jacobian_sums(jac_fn, (X,), batch_size or X.shape[0], centered, diag_sums)
    return finish_agop(outer, total, X.shape[0], centered, diag, normalize, predictor.M)


def centre_gradients(kernel: Kernel, Xb: jax.Array, centers: jax.Array, coefs: jax.Array
                     ) -> jax.Array:
    """``(b, C, d)`` gradients at ``Xb`` of ``sum_j coefs_j kernel(x, centers_j)`` over the
    given centres: the metric-free closed form ``G`` of a radial kernel
    (``kernel_gradients``; ``grad f = G M``), autodiff of the predictor's block for the
    others (no metric)."""
    if kernel.radial:
        return kernel_gradients(Xb, kernel, centers, coefs)

    def outputs(x):
        return block_outputs(kernel, x[None, :], centers, coefs)[0]

    return jax.vmap(jax.jacrev(outputs))(Xb)


@functools.partial(
    jax.jit, static_argnames=("mesh", "n", "batch_size", "centered", "diag", "normalize"))
def _kernel_agop_sharded(predictor, X, mesh, n, batch_size, centered, diag, normalize):
    """The AGOP at row-sharded points ``X`` (``(n_pad, d)``, ``n`` real rows): each device
    sums ``J^T J`` over its own rows, the gradients summed over the centres (a ring when
    they are sharded too; ``centre_gradients``: closed form or autodiff, both linear in
    the centres' coefficients), and the sums are added across devices."""
    p = num_shards(mesh)
    rows = X.shape[0] // p
    diag_sums = diag and predictor.M is None

    def local(X_local, centers, coefs, kernel):
        mask = row_mask(rows, n, X_local.dtype)

        def jac_fn(Xb, mb):
            G = over_centres(predictor, lambda c, a: centre_gradients(kernel, Xb, c, a),
                             centers, coefs, p)
            return jnp.where(mb[:, None, None] > 0, G, 0.0)  # padding rows: 0, even if NaN

        sums = jacobian_sums(jac_fn, (X_local, mask), batch_size or rows, centered, diag_sums)
        return jax.lax.psum(sums, DATA)

    outer, total = jax.shard_map(
        local, mesh=mesh, in_specs=(ROWS, *centre_specs(predictor)), out_specs=REPLICATED,
        check_vma=False)(X, predictor.centers, predictor.coefs, predictor.kernel)
    return finish_agop(outer, total, n, centered, diag, normalize, predictor.M)


def check_agop_samples(samples) -> None:
    """``ValueError`` unless ``samples`` is ``None``, ``"auto"`` or a positive int."""
    if samples is None or samples == "auto":
        return
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ValueError(f"agop_samples must be a positive int, 'auto' or None; got "
                         f"{samples!r}.")


def row_order(n: int, seed: int) -> np.ndarray:
    """The seeded random order in which sampled AGOPs draw rows: a sample of ``m`` rows is
    the first ``m`` of it, so that a larger sample contains every smaller one."""
    return np.random.default_rng(seed).permutation(n)


def sample_rows(n: int, samples: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of ``samples`` rows out of ``n``, drawn without replacement with
    ``seed`` (the first ``samples`` of ``row_order``; ``None`` when ``samples`` is ``None``
    or ``>= n``: use every row)."""
    check_agop_samples(samples)
    if samples is None or samples == "auto":
        return None
    if samples >= n:
        return None
    return np.sort(row_order(n, seed)[: int(samples)])


# adaptive AGOP sample (agop_samples="auto"): the first round's rows, and the tolerance on
# the rms relative change, between rounds, of the squared distances the next kernel computes
AUTO_FIRST_ROWS = 1000
AUTO_TOL = 1e-2
AUTO_PAIRS = 500  # pairs of rows on which the distances are compared


def adaptive_kernel_agop(
    predictor: KernelPredictor,
    X: ArrayLike | Rows,
    *,
    tol: float = AUTO_TOL,
    first: int = AUTO_FIRST_ROWS,
    power: float = 1.0,
    seed: int = 0,
    batch_size: int | None = None,
    diag: bool = False,
    mesh: Mesh | None = None,
) -> tuple[jax.Array, int]:
    """The kernel AGOP from as many rows as it needs: ``(AGOP, rows used)``.

    Rows are drawn in ``row_order(n, seed)``: ``first`` rows, then doubling rounds
    (``2 first``, ``4 first``, ... up to ``n``). Each round adds the new rows' AGOP to the
    running mean (the uncentred AGOP is a mean over rows) and stops when the metric it
    makes has settled where the next kernel uses it: on ``P = AUTO_PAIRS`` fixed pairs of
    rows (the first ``2 P`` of the row order, or all when ``n < 2 P``),
    ``delta_p = x_a - x_b``, the squared distances
    ``r_p(A) = delta_p^T (A / tr A)^s delta_p`` (``s = power``, the metric's power)
    moved by at most ``tol`` in rms, relative to their rms:

        ``sqrt(mean_p (r_p(A_m) - r_p(A_h))^2) <= tol sqrt(mean_p r_p(A_m)^2)``  (``h = m / 2``).

    The next RFM iteration or Deep RFM layer sees the AGOP only through these distances (a
    radial kernel of ``delta^T M delta``): a change ``eps`` of ``r`` changes a Laplace
    kernel entry ``exp(-sqrt(r) / L)`` by about ``eps sqrt(r) / (2 L)`` relative. A test on
    every entry of ``A`` (the Frobenius norm) would wait for the sampling noise of its
    many small entries, which the distances average out. ``tol = 0`` runs until the
    distances do not move at all: to all ``n`` rows unless the AGOP is 0 (a constant
    predictor). The defaults (``AUTO_TOL``, ``AUTO_FIRST_ROWS``, ``AUTO_PAIRS``): 1%, from
    1,000 rows, on 500 pairs. The result equals ``kernel_agop(..., samples=rows used,
    seed=seed)`` (the same rows) up to summation order. Uncentred only; eager (the rounds
    are decided on the host).
    """
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0; got {tol!r}.")
    if isinstance(first, bool) or not isinstance(first, int | np.integer) or first < 1:
        raise ValueError(f"first must be a positive int; got {first!r}.")
    if not (np.isfinite(power) and power > 0):
        raise ValueError(f"power must be a finite number > 0; got {power!r}.")
    X, mesh = checked_points(predictor, X, mesh)
    batch_size, _ = _check_batch_and_normalize(batch_size, None)
    return adaptive_kernel_agop_checked(predictor, X, tol=tol, first=first, power=power,
                                        seed=seed, batch_size=batch_size, diag=diag, mesh=mesh)


def adaptive_kernel_agop_checked(predictor: KernelPredictor, X: jax.Array | Rows, *,
                                 tol: float = AUTO_TOL, first: int = AUTO_FIRST_ROWS,
                                 power: float = 1.0, seed: int = 0, batch_size: int | None = None,
                                 diag: bool = False, mesh: Mesh | None = None
                                 ) -> tuple[jax.Array, int]:
    """``adaptive_kernel_agop`` on points and options its entry has checked: the fits
    that checked their rows once call it."""
    n = X.n if isinstance(X, Rows) else int(np.shape(X)[0])
    order = row_order(n, seed)
    data = X.data if isinstance(X, Rows) else jnp.asarray(X)  # placed once, not per round
    A, done, m = None, 0, min(int(first), n)
    half = min(AUTO_PAIRS, n // 2)
    pairs = np.asarray(data[order[:half]] - data[order[half:2 * half]], np.float64)
    r = None  # the previous round's distances, computed once per round
    while True:
        new = np.sort(order[done:m])
        rows = Rows(data[new], len(new)) if isinstance(X, Rows) else data[new]
        part = kernel_agop_checked(predictor, rows, batch_size=batch_size, centered=False,
                                   diag=diag, normalize=None, samples=None, seed=seed, mesh=mesh)
        A = part if A is None else (done * A + (m - done) * part) / m
        if m == n and r is None:
            return A, m
        r, r_previous = pair_distances(A, pairs, power), r
        if r_previous is not None and _rms_change(r_previous, r) <= tol:
            return A, m
        if m == n:
            return A, m
        done, m = m, min(2 * m, n)


def pair_distances(A: ArrayLike, pairs: np.ndarray, power: float = 1.0) -> np.ndarray:
    """The squared distances ``r_p = delta_p^T (A / tr A)^s delta_p`` (``s = power``) of the
    rows ``delta_p`` of ``pairs`` (``(P, d)``), ``(P,)``; ``A``: a ``(d, d)`` AGOP or its
    ``(d,)`` diagonal. A NumPy shell call in float64 on the host (an eigendecomposition;
    not traceable)."""
    A = np.asarray(A, np.float64)
    trace = A.sum() if A.ndim == 1 else np.trace(A)
    unit = A / (trace if trace > 0 else 1.0)
    if A.ndim == 1:
        return (pairs ** 2) @ (np.clip(unit, 0.0, None) ** power)
    metric = power_from_eigh(*psd_eigh(unit), power)
    return np.einsum("pi,ij,pj->p", pairs, metric, pairs)


def _rms_change(r_old: np.ndarray, r_new: np.ndarray) -> float:
    """``sqrt(mean (r_new - r_old)^2) / sqrt(mean r_new^2)`` (0 when ``r_new`` is 0)."""
    scale = float(np.sqrt(np.mean(r_new ** 2))) if r_new.size else 0.0
    return float(np.sqrt(np.mean((r_new - r_old) ** 2))) / scale if scale > 0 else 0.0


def distance_change(old: ArrayLike, new: ArrayLike, pairs: np.ndarray, power: float = 1.0
                    ) -> float:
    """The rms change of the squared distances ``pair_distances`` from ``A = old`` to
    ``A = new``, relative to the rms of the new ones: the quantity ``adaptive_kernel_agop``
    compares with its tolerance. A NumPy shell call in float64 on the host (not
    traceable). ``old``, ``new``: ``(d, d)`` AGOPs, or ``(d,)`` diagonals."""
    return _rms_change(pair_distances(old, pairs, power), pair_distances(new, pairs, power))


def kernel_agop(
    predictor: KernelPredictor,
    X: ArrayLike | Rows,
    *,
    batch_size: int | None = None,
    centered: bool = False,
    diag: bool = False,
    normalize: Normalize = None,
    samples: int | None = None,
    seed: int = 0,
    mesh: Mesh | None = None,
) -> jax.Array:
    """Closed-form AGOP of a ``KernelPredictor`` of a radial kernel at ``X`` (autodiff for
    the others, on one device or on a mesh alike).

    Equal to ``agop(predictor.predict_one, X, ...)`` to rounding, at cost
    ``O(m n d C + m C d^2)`` for ``m`` points and ``n`` centres (see ``kernel_gradients``).
    Supports ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (one device; ``samples`` draws
    its rows on the host, so it must be concrete).

    Args:
      predictor: a fitted ``KernelPredictor`` (any metric ``M``).
      X: ``(m, d)`` evaluation points (training points allowed: the self term is 0), or
        ``Rows`` on a mesh.
      batch_size: as in ``agop``.
      centered: as in ``agop``.
      diag: as in ``agop``.
      normalize: as in ``agop``.
      samples: estimate the AGOP from this many of the points, drawn uniformly without
        replacement with ``seed`` (xRFM's default is 20,000): an unbiased estimate of the
        mean of ``J^T J`` over all points; ``None`` uses them all.
      mesh: shard the points over this mesh's ``"data"`` axis (default: the predictor's
        mesh, or that of ``Rows``; ``None`` everywhere means one device).

    Returns:
      ``(d, d)`` AGOP, or ``(d,)`` when ``diag``.
    """
    X, mesh = checked_points(predictor, X, mesh)
    batch_size, normalize = _check_batch_and_normalize(batch_size, normalize)
    return kernel_agop_checked(predictor, X, batch_size=batch_size, centered=centered, diag=diag,
                               normalize=normalize, samples=samples, seed=seed, mesh=mesh)


def checked_points(predictor: KernelPredictor, X: ArrayLike | Rows, mesh: Mesh | None
                   ) -> tuple[jax.Array | Rows, Mesh | None]:
    """The kernel AGOPs' input contract: ``X`` as a float matrix (or ``Rows``, whose mesh
    it returns) of the predictor's width, finite (eager; traced points give a NaN AGOP,
    ``nan_unless_finite``), or a ``ValueError``."""
    if isinstance(X, Rows):
        mesh = X.mesh
        _checks.check_finite("X", X.data)
    else:
        X = _checks.as_float_matrix("X", X)
        _checks.check_finite("X", X)
    if X.shape[1] != predictor.centers.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but the predictor has {predictor.centers.shape[1]}."
        )
    return X, mesh


def kernel_agop_checked(predictor: KernelPredictor, X: jax.Array | Rows, *,
                        batch_size: int | None, centered: bool, diag: bool, normalize: Normalize,
                        samples: int | None, seed: int, mesh: Mesh | None) -> jax.Array:
    """``kernel_agop`` on points and options its entry has checked (``checked_points``,
    ``_check_batch_and_normalize``): the fits that checked their rows once call it."""
    if isinstance(X, Rows):
        idx = sample_rows(X.n, samples, seed)
        X = X if idx is None else Rows(X.data[idx], len(idx))
    else:
        idx = sample_rows(X.shape[0], samples, seed)
        X = X if idx is None else X[idx]
    mesh = predictor.mesh if mesh is None else mesh
    if mesh is None and not predictor.kernel.radial:  # autodiff
        assert not isinstance(X, Rows)  # Rows set the mesh above
        return agop(predictor.predict_one, X.astype(predictor.centers.dtype),
                    batch_size=batch_size, centered=centered, diag=diag, normalize=normalize)
    if mesh is None:
        assert not isinstance(X, Rows)  # Rows set the mesh above
        X = X.astype(predictor.centers.dtype)
        return nan_unless_finite(X, _kernel_agop(predictor, X, batch_size, centered, diag,
                                                 normalize))
    rows = as_rows(X, mesh, dtype=predictor.centers.dtype)
    return _kernel_agop_sharded(on_mesh(predictor, mesh), rows.data, mesh, rows.n, batch_size,
                                centered, diag, normalize)


@functools.partial(jax.jit, static_argnames=("batch_size", "radial"))
def _per_class_sums(predictor, X, batch_size, radial):
    """``(sum_i J_i[c]^T J_i[c] per class (C, d, d), sum_i J_i (C, d))`` over padded blocks
    (metric-free closed-form gradients when ``radial``)."""
    coef_centers = coef_outer_centers(predictor.coefs, predictor.centers)

    def sums(Xb, w):
        if radial:  # closed form; the metric applied below
            J = kernel_gradients(Xb, predictor.kernel, predictor.centers, predictor.coefs,
                                 coef_centers)
        else:
            J = jax.vmap(jax.jacrev(predictor.predict_one))(Xb)
        J = J * w[:, None, None]
        return einsum("bcd,bce->cde", J, J), J.sum(0)

    batch_size = even_batch(X.shape[0], batch_size)
    (X,), weights = pad_rows((X,), batch_size)
    return row_chunk_sum(sums, (X, weights), batch_size)


def per_class_kernel_agop(predictor: KernelPredictor, X: ArrayLike, *,
                          batch_size: int | None = None, centered: bool = False) -> jax.Array:
    """The AGOP of each output of a ``KernelPredictor`` at ``X`` (``(m, d)``): ``(C, d, d)``
    with ``A_c = (1/m) sum_i grad f_c(x_i) grad f_c(x_i)^T`` (``centered``: the gradients
    less their mean over the points), so that ``sum_c A_c = kernel_agop(predictor, X)``
    (un-normalised). ``nmallinar/rfm-grokking``'s per-class AGOPs (``agop_utils.py``
    ``calc_batch_agop``, ``models/gaussian_kernel.py`` ``get_grads`` lines 107-116: they
    report each one's square root). Closed-form gradients for radial kernels, autodiff for
    the others; one device; composes with ``jit`` (``batch_size`` static)."""
    X = _checks.as_float_matrix("X", X)
    _checks.check_finite("X", X)
    if X.shape[1] != predictor.centers.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but the predictor has {predictor.centers.shape[1]}.")
    batch_size, _ = _check_batch_and_normalize(batch_size, None)
    m = X.shape[0]
    radial = predictor.kernel.radial
    outer, total = _per_class_sums(predictor, X.astype(predictor.centers.dtype),
                                   batch_size or m, radial)
    A = outer / m
    if centered:  # (1/m) sum (g - gbar)(g - gbar)^T = (1/m) sum g g^T - gbar gbar^T
        mean = total / m
        A = A - mean[:, :, None] * mean[:, None, :]
    if radial and predictor.M is not None:  # grad f_c = G_c M
        A = einsum("de,cef,fg->cdg", predictor.M, A, predictor.M)
    return A


def psd_eigh(M: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the symmetrised ``M`` in float64, negative eigenvalues set to 0.

    Returns:
      ``(eigenvalues (d,), eigenvectors (d, d))`` as float64 numpy arrays, ascending.
    """
    A = np.asarray(M, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"M must be a square matrix; got shape {A.shape}.")
    if not np.isfinite(A).all():
        raise ValueError("M contains NaN or infinite values.")
    evals, evecs = np.linalg.eigh((A + A.T) / 2.0)
    return np.clip(evals, 0.0, None), evecs


def power_from_eigh(evals: np.ndarray, evecs: np.ndarray, s: float) -> np.ndarray:
    """``V diag(lambda^s) V^T`` in float64; for ``s < 0`` zero eigenvalues stay 0 (the
    pseudo-power), counting as zero those within round-off of it, ``lambda <= d eps
    lambda_max`` (numpy's ``pinv`` cut-off): powered, they would dominate."""
    cutoff = 0.0
    if s < 0 and evals.size:
        cutoff = evals.size * np.finfo(np.float64).eps * max(float(evals.max()), 0.0)
    positive = evals > cutoff
    powered = np.where(positive, np.where(positive, evals, 1.0) ** s, 0.0)
    return (evecs * powered) @ evecs.T


def matrix_power(M: ArrayLike, s: float) -> jax.Array:
    """``M^s`` of a symmetric PSD matrix through ``eigh`` in float64 (negative eigenvalues clipped).

    Under ``jax.jit``, ``vmap`` or ``grad`` (a traced ``M`` or ``s``) the same formula runs
    in JAX in ``M``'s dtype (float64 only with x64 on), and an ``M`` holding a NaN or an
    infinity gives NaN (``dnc_jax.checked`` reports it); eagerly, in numpy float64, and
    such an ``M`` is a ``ValueError``.

    Args:
      M: ``(d, d)``.
      s: any real power.

    Returns:
      ``(d, d)`` in ``M``'s float dtype.
    """
    if _checks.is_traced(M, s):
        M = jnp.asarray(M)
        _checks.check_finite("M", M)
        return _checks.nan_unless(jnp.isfinite(M).all(), _traced_matrix_power(M, s))
    dtype = np.asarray(M).dtype
    dtype = jax.dtypes.canonicalize_dtype(dtype if np.issubdtype(dtype, np.floating) else np.float32)
    return jnp.asarray(power_from_eigh(*psd_eigh(M), s), dtype=dtype)


def _traced_matrix_power(M: jax.Array, s) -> jax.Array:
    """``psd_eigh`` and ``power_from_eigh`` in JAX (traceable), in ``M``'s float dtype."""
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be a square matrix; got shape {M.shape}.")
    if not jnp.issubdtype(M.dtype, jnp.floating):
        M = M.astype(jnp.float32)
    evals, evecs = jnp.linalg.eigh((M + M.T) / 2.0)
    evals = jnp.clip(evals, 0.0, None)
    eps = jnp.finfo(M.dtype).eps
    cutoff = jnp.where(jnp.asarray(s) < 0, M.shape[0] * eps * jnp.max(evals), 0.0)
    positive = evals > cutoff
    powered = jnp.where(positive, jnp.where(positive, evals, 1.0) ** s, 0.0)
    return matmul(evecs * powered[None, :], evecs.T)
