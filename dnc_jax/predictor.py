"""The fitted kernel predictor ``f(x) = sum_j coefs_j k(x, centers_j)`` and its predictions.

Its centres are the training rows (exact solves) or ``m`` chosen centres (Nyström). With
a ``mesh``, the centres are row-sharded over it (padded with zero rows whose
coefficients are 0, so they add nothing), and predictions run as a ring over the centre
shards (``dnc_jax.sharding.ring_sum``): each device predicts its own rows.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import overload

import jax
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.blocks import map_row_blocks
from dnc_jax.kernels import Family, Kernel, family_of
from dnc_jax.precision import matmul
from dnc_jax.rows import REPLICATED, ROWS, Rows, num_shards, ring_sum
from dnc_jax.sharding import as_rows, replicate

# Rows per prediction block, by backend: on CPUs small blocks are as fast as large ones
# and make padding one row to a block cheap; accelerators need larger products
# (BENCHMARKS.md, "What batch invariance costs").
CPU_PREDICT_BLOCK = 128
ACCELERATOR_PREDICT_BLOCK = 1024


def predict_block() -> int:
    """The default rows per prediction block on the default backend."""
    return CPU_PREDICT_BLOCK if jax.default_backend() == "cpu" else ACCELERATOR_PREDICT_BLOCK


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["kernel", "centers", "coefs"],
    meta_fields=["mesh"],
)
@dataclasses.dataclass(frozen=True, eq=False)
class KernelPredictor:
    """A fitted kernel predictor ``f(x) = sum_j coefs_j k(x, centers_j)``.

    Attributes:
      kernel: the ``Kernel`` value ``k`` (family static; bandwidth and metric ``M`` array
        leaves: a new value reuses the compiled programs, and ``jax.grad`` reaches them).
      centers: ``(n, d)`` centres (training points, or Nyström centres).
      coefs: ``(n, C)`` coefficients ``alpha``.
      mesh: ``None``, or the mesh whose ``"data"`` axis row-shards ``centers`` and
        ``coefs`` (then ``n`` is padded to a multiple of the device count with zero rows
        and zero coefficients).
    """

    kernel: Kernel
    centers: jax.Array
    coefs: jax.Array
    mesh: Mesh | None = None

    def __post_init__(self):
        # the order up to 0.6.0 was (centers, coefs, M, kernel, bandwidth): an array here is
        # that call, refused rather than read as something else
        if isinstance(self.kernel, jax.Array | np.ndarray):
            raise TypeError("KernelPredictor(kernel, centers, coefs): kernel is a Kernel value, "
                            "e.g. Kernel('laplace', 2.0, M); got an array (the (centers, coefs, "
                            "M, kernel, bandwidth) order is gone).")

    @property
    def M(self) -> jax.Array | None:
        """The kernel's ``(d, d)`` metric, or ``None`` for the identity."""
        return None if self.kernel.M is None else jax.numpy.asarray(self.kernel.M)

    @property
    def bandwidth(self) -> ArrayLike:
        """The kernel's bandwidth ``L``."""
        return self.kernel.bandwidth

    @property
    def family(self) -> Family:
        """The kernel's family."""
        return family_of(self.kernel.family)

    @property
    def kernel_value(self) -> Kernel:
        """Deprecated: the predictor's kernel is ``KernelPredictor.kernel``."""
        warnings.warn("KernelPredictor.kernel_value is deprecated; use KernelPredictor.kernel "
                      "(a Kernel value).", DeprecationWarning, stacklevel=2)
        return self.kernel

    def __reduce__(self):
        """Pickled as host arrays without the mesh (``Device`` handles cannot be pickled):
        it unpickles onto the loader's default device (sharded centres keep their
        zero-coefficient padding rows, which add nothing)."""
        host = [None if a is None else np.asarray(a) for a in (self.centers, self.coefs, self.M)]
        return _unpickle_predictor, (*host, self.kernel.family, np.asarray(self.bandwidth))

    def predict_one(self, x: jax.Array) -> jax.Array:
        """Prediction for one example: ``(d,) -> (C,)``. Differentiable; vmap it to batch."""
        return block_outputs(self.kernel, x[None, :], self.centers, self.coefs)[0]

    @overload
    def predict(self, X: Rows, *, block_size: int | None = None, mesh: Mesh | None = None,
                transform: ArrayLike | None = None) -> Rows: ...

    @overload
    def predict(self, X: ArrayLike, *, block_size: int | None = None, mesh: Mesh | None = None,
                transform: ArrayLike | None = None) -> jax.Array: ...

    def predict(self, X: ArrayLike | Rows, *, block_size: int | None = None,
                mesh: Mesh | None = None, transform: ArrayLike | None = None
                ) -> jax.Array | Rows:
        """Predictions for a batch: ``(m, d) -> (m, C)``, in blocks of ``block_size`` rows.

        Every block has exactly ``block_size`` rows (the last is padded), so a row's
        prediction is the same, bit for bit, alone, in any batch, or in the whole set
        (on one device; with ``mesh``, also whichever device holds the row).
        Supports ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (through ``X``, the predictor's
        leaves and ``transform``).

        Args:
          X: ``(m, d')`` inputs, or ``Rows`` on a mesh (then the output is ``Rows``).
          block_size: rows per block (default ``predict_block()``: 128 on CPUs, 1,024
            on accelerators); the padding costs at most one block per call.
          mesh: shard the rows over this mesh (default: the predictor's, or that of
            ``Rows``); each device predicts its own rows.
          transform: optional ``(d', d)`` ``T``: predict at ``x T``, the product taken
            inside each block (an RFM's inputs), so that it is batch-invariant too.
        """
        mesh = self.mesh if mesh is None else mesh
        if isinstance(X, Rows):
            mesh = X.mesh
        else:
            X = _checks.as_float_matrix("X", X, dtype=self.centers.dtype)
        if transform is not None:
            transform = _checks.as_float_matrix("transform", transform, dtype=self.centers.dtype)
            if transform.shape != (X.shape[1], self.centers.shape[1]):
                raise ValueError(f"transform must have shape {(X.shape[1], self.centers.shape[1])}; "
                                 f"got {transform.shape}.")
        elif X.shape[1] != self.centers.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features but the predictor was fitted on "
                f"{self.centers.shape[1]}."
            )
        block_size = predict_block() if block_size is None else block_size
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int; got {block_size!r}.")
        if mesh is None:
            return _predict(self, X, transform, block_size)
        rows = as_rows(X, mesh, dtype=self.centers.dtype)
        if transform is not None:
            transform = replicate(transform, mesh)
        out = Rows(_predict_sharded(on_mesh(self, mesh), rows.data, transform, mesh, block_size),
                   rows.n)
        return out if isinstance(X, Rows) else out.valid()


def _unpickle_predictor(*stored) -> KernelPredictor:
    """``KernelPredictor.__reduce__``'s inverse, on the default device: ``stored`` is
    ``(centers, coefs, M, family, bandwidth)`` as host arrays (the pickle's layout, which
    predictors pickled by earlier versions share)."""
    centers, coefs, M, family, bandwidth = stored
    kernel = Kernel(family, jax.numpy.asarray(bandwidth), None if M is None else jax.numpy.asarray(M))
    return KernelPredictor(kernel, jax.numpy.asarray(centers), jax.numpy.asarray(coefs))


def block_outputs(kernel: Kernel, Xb: jax.Array, centers: jax.Array, coefs: jax.Array
                  ) -> jax.Array:
    """``kernel(Xb, centers) coefs``: ``(b, d) -> (b, C)``."""
    return matmul(kernel(Xb, centers), coefs)


def _transformed(Xb, transform):
    return Xb if transform is None else matmul(Xb, transform)


@functools.partial(jax.jit, static_argnames=("block_size",))
def _predict(predictor: KernelPredictor, X: jax.Array, transform, block_size: int) -> jax.Array:
    def block(Xb):
        return block_outputs(predictor.kernel, _transformed(Xb, transform), predictor.centers,
                             predictor.coefs)

    return map_row_blocks(block, X, block_size)


def on_mesh(predictor: KernelPredictor, mesh: Mesh) -> KernelPredictor:
    """The predictor ready for ``shard_map`` on ``mesh``: replicated centres are placed on
    every device of it; centres sharded over another mesh are sharded anew over this one
    (their zero-coefficient padding rows add nothing wherever they fall)."""
    if predictor.mesh is not None:
        if predictor.mesh == mesh:
            return predictor
        centers, coefs = as_rows(np.asarray(predictor.centers), mesh), as_rows(
            np.asarray(predictor.coefs), mesh)
        return dataclasses.replace(predictor, kernel=_replicated_kernel(predictor.kernel, mesh),
                                   centers=centers.data, coefs=coefs.data, mesh=mesh)
    return dataclasses.replace(predictor, kernel=_replicated_kernel(predictor.kernel, mesh),
                               centers=replicate(predictor.centers, mesh),
                               coefs=replicate(predictor.coefs, mesh))


def _replicated_kernel(kernel: Kernel, mesh: Mesh) -> Kernel:
    """``kernel`` with its metric placed on every device of ``mesh``."""
    return kernel if kernel.M is None else dataclasses.replace(
        kernel, M=replicate(np.asarray(kernel.M), mesh))


def sharded_centers(predictor: KernelPredictor) -> bool:
    """Whether the predictor's centres are row-sharded (else replicated)."""
    return predictor.mesh is not None


def centre_specs(predictor: KernelPredictor):
    """``shard_map`` specs of ``(centers, coefs, kernel)``."""
    spec = ROWS if sharded_centers(predictor) else REPLICATED
    return spec, spec, REPLICATED


def over_centres(predictor: KernelPredictor, fn, centers, coefs, p: int):
    """Inside ``shard_map``: ``sum over all centres`` of ``fn(centers_j, coefs_j)``, a ring
    over the shards when the centres are sharded, one call when replicated."""
    if sharded_centers(predictor):
        return ring_sum(lambda shard, _: fn(*shard), (centers, coefs), p)
    return fn(centers, coefs)


@functools.partial(jax.jit, static_argnames=("mesh", "block_size"))
def _predict_sharded(predictor, X, transform, mesh, block_size):
    p = num_shards(mesh)
    c_spec, a_spec, k_spec = centre_specs(predictor)

    def local(X_local, centers, coefs, kernel, transform):
        def block(Xb):
            Zb = _transformed(Xb, transform)
            return over_centres(predictor, lambda c, a: block_outputs(kernel, Zb, c, a),
                                centers, coefs, p)

        return map_row_blocks(block, X_local, block_size)

    return jax.shard_map(local, mesh=mesh, in_specs=(ROWS, c_spec, a_spec, k_spec, REPLICATED),
                         out_specs=ROWS, check_vma=False)(X, predictor.centers, predictor.coefs,
                                                          predictor.kernel, transform)
