"""The fitted kernel predictor ``f(x) = sum_j coefs_j k(x, centers_j)`` and its predictions.

Its centres are the training rows (exact solves) or ``m`` chosen centres (Nyström). With
a ``mesh``, the centres are row-sharded over it (padded with zero rows whose
coefficients are 0, so they add nothing), and predictions run as a ring over the centre
shards (``dnc_jax.sharding.ring_sum``): each device predicts its own rows.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import overload

import jax
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.blocks import map_row_blocks
from dnc_jax.kernels import Family, Kernel, kernel_matrix
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
    data_fields=["centers", "coefs", "M", "bandwidth"],
    meta_fields=["kernel", "mesh"],
)
@dataclasses.dataclass(frozen=True, eq=False)
class KernelPredictor:
    """A fitted kernel predictor ``f(x) = sum_j coefs_j k(x, centers_j)``.

    Attributes:
      centers: ``(n, d)`` centres (training points, or Nyström centres).
      coefs: ``(n, C)`` coefficients ``alpha``.
      M: ``(d, d)`` metric of the kernel, or ``None`` for the identity.
      kernel: a name in ``dnc_jax.kernels.KERNELS`` or a family (static).
      bandwidth: ``L``, an array leaf: a new value reuses the compiled programs, and
        ``jax.grad`` reaches it.
      mesh: ``None``, or the mesh whose ``"data"`` axis row-shards ``centers`` and
        ``coefs`` (then ``n`` is padded to a multiple of the device count with zero rows
        and zero coefficients).
    """

    centers: jax.Array
    coefs: jax.Array
    M: jax.Array | None
    kernel: str | Family
    bandwidth: ArrayLike
    mesh: Mesh | None = None

    def __reduce__(self):
        """Pickled as host arrays without the mesh (``Device`` handles cannot be pickled):
        it unpickles onto the loader's default device (sharded centres keep their
        zero-coefficient padding rows, which add nothing)."""
        host = [None if a is None else np.asarray(a) for a in (self.centers, self.coefs, self.M)]
        return _unpickle_predictor, (*host, self.kernel, np.asarray(self.bandwidth))

    @property
    def kernel_value(self) -> Kernel:
        """The predictor's kernel as a value: ``Kernel(kernel, bandwidth, M)``."""
        return Kernel(self.kernel, self.bandwidth, self.M)

    def predict_one(self, x: jax.Array) -> jax.Array:
        """Prediction for one example: ``(d,) -> (C,)``. Differentiable; vmap it to batch."""
        k = kernel_matrix(x[None, :], self.centers, self.kernel, self.bandwidth, self.M)
        return matmul(k, self.coefs)[0]

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


def _unpickle_predictor(centers, coefs, M, kernel, bandwidth) -> KernelPredictor:
    """``KernelPredictor.__reduce__``'s inverse, on the default device."""
    return KernelPredictor(jax.numpy.asarray(centers), jax.numpy.asarray(coefs),
                           None if M is None else jax.numpy.asarray(M), kernel,
                           jax.numpy.asarray(bandwidth))


def block_outputs(Xb, centers, coefs, kernel, bandwidth, M):
    """``K(Xb, centers) coefs``: ``(b, d) -> (b, C)``."""
    return matmul(kernel_matrix(Xb, centers, kernel, bandwidth, M), coefs)


def _transformed(Xb, transform):
    return Xb if transform is None else matmul(Xb, transform)


@functools.partial(jax.jit, static_argnames=("block_size",))
def _predict(predictor: KernelPredictor, X: jax.Array, transform, block_size: int) -> jax.Array:
    def block(Xb):
        return block_outputs(_transformed(Xb, transform), predictor.centers, predictor.coefs,
                             predictor.kernel, predictor.bandwidth, predictor.M)

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
        M = None if predictor.M is None else replicate(np.asarray(predictor.M), mesh)
        return dataclasses.replace(predictor, centers=centers.data, coefs=coefs.data, M=M,
                                   mesh=mesh)
    M = None if predictor.M is None else replicate(predictor.M, mesh)
    return dataclasses.replace(predictor, centers=replicate(predictor.centers, mesh),
                               coefs=replicate(predictor.coefs, mesh), M=M)


def sharded_centers(predictor: KernelPredictor) -> bool:
    """Whether the predictor's centres are row-sharded (else replicated)."""
    return predictor.mesh is not None


def centre_specs(predictor: KernelPredictor):
    """``shard_map`` specs of ``(centers, coefs, M)``."""
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
    c_spec, a_spec, m_spec = centre_specs(predictor)

    def local(X_local, centers, coefs, M, transform):
        def block(Xb):
            Zb = _transformed(Xb, transform)
            return over_centres(
                predictor,
                lambda c, a: block_outputs(Zb, c, a, predictor.kernel, predictor.bandwidth, M),
                centers, coefs, p)

        return map_row_blocks(block, X_local, block_size)

    return jax.shard_map(local, mesh=mesh, in_specs=(ROWS, c_spec, a_spec, m_spec, REPLICATED),
                         out_specs=ROWS, check_vma=False)(X, predictor.centers, predictor.coefs,
                                                          predictor.M, transform)
