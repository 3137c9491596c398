"""Kernels as values: ``Kernel(family, bandwidth, M)``, a pytree whose family is static and
whose bandwidth and metric are array leaves, so that a new bandwidth is new data for the
same compiled program and ``jax.grad`` reaches it; and the kernel matrices themselves."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.blocks import map_row_blocks
from dnc_jax.kernels.distances import NEAR_PAIRS, symmetric_distance_fill
from dnc_jax.kernels.families import Family, Radial, family_of, kernel_distances, uses_bandwidth


def kernel_matrix(
    X: jax.Array,
    Z: jax.Array,
    kernel: str | Family,
    bandwidth: ArrayLike,
    M: jax.Array | None = None,
    *,
    block_size: int | None = None,
) -> jax.Array:
    """``(n, m)`` kernel matrix ``k(x_i, z_j)``, ``block_size`` rows of ``X`` at a time.

    ``kernel`` is a name in ``KERNELS`` or a family; ``bandwidth`` a scalar (an array leaf:
    traceable and differentiable; ignored by the families without one). Supports ``jit``,
    ``vmap`` and ``grad``. A bandwidth that is not positive is a ``ValueError`` eagerly;
    traced, a ``dnc_jax.checked`` error, and NaN entries unchecked. A NaN in a row of ``X``
    or ``Z`` gives NaN in that row or column.
    """
    family = family_of(kernel)
    if uses_bandwidth(family):
        _checks.check_positive("bandwidth", bandwidth)
    X, Z = jnp.asarray(X), jnp.asarray(Z)  # numpy rows indexed by traced positions below
    if not isinstance(family, Radial):
        if M is not None:
            raise ValueError(f"the {family.name} kernel takes no metric M.")
        return map_row_blocks(lambda Xb: family.matrix(Xb, Z, bandwidth), X, block_size)
    return map_row_blocks(
        lambda Xb: family.kernel_values(kernel_distances(Xb, Z, family, M), bandwidth),
        X, block_size)


# Tile of the symmetric fill: 1.4x faster than row blocks of 2,048 at n = 20,000 on the
# CPU, where tiles of 1,024 and 2,048 lose the saving to their transposed writes
# (BENCHMARKS.md, "The RFM fit, phase by phase").
SYMMETRIC_TILE = 512


def symmetric_kernel_matrix(kernel: Kernel, X: jax.Array, *, tile: int = SYMMETRIC_TILE
                            ) -> jax.Array:
    """``kernel(X, X)`` (``(n, n)``) for a training set: for a radial family the distances'
    products over the upper triangle only (``distances.symmetric_distance_fill``: half the
    ``2 n^2 d`` flops, one ``n x n`` buffer), the near pairs and the kernel's values in a
    second pass; other families in row blocks of ``tile``. Equal to ``kernel(X, X)`` to
    the expansion's rounding. Traceable."""
    family = family_of(kernel.family)
    M = None if kernel.M is None else jnp.asarray(kernel.M)
    if not isinstance(family, Radial):
        return kernel_matrix(X, X, family, kernel.bandwidth, M, block_size=tile)
    if uses_bandwidth(family):
        _checks.check_positive("bandwidth", kernel.bandwidth)
    near = NEAR_PAIRS if family.steep else 0
    return symmetric_distance_fill(jnp.asarray(X), M, near=near, tile=tile,
                                   post=lambda d2: family.kernel_values(d2, kernel.bandwidth))


def laplace_kernel(X: jax.Array, Z: jax.Array, bandwidth: ArrayLike, M: jax.Array | None = None,
                   *, block_size: int | None = None) -> jax.Array:
    """Laplace kernel ``exp(-||x - z||_M / L)``; ``(n, d), (m, d) -> (n, m)``.

    Supports ``jit``, ``vmap`` and ``grad``.
    """
    return kernel_matrix(X, Z, "laplace", bandwidth, M, block_size=block_size)


def gaussian_kernel(X: jax.Array, Z: jax.Array, bandwidth: ArrayLike, M: jax.Array | None = None,
                    *, block_size: int | None = None) -> jax.Array:
    """Gaussian kernel ``exp(-||x - z||_M^2 / (2 L^2))``; ``(n, d), (m, d) -> (n, m)``.

    Supports ``jit``, ``vmap`` and ``grad``.
    """
    return kernel_matrix(X, Z, "gaussian", bandwidth, M, block_size=block_size)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["bandwidth", "M"],
                   meta_fields=["family"])
@dataclasses.dataclass(frozen=True)
class Kernel:
    """A kernel as a value: ``Kernel("laplace", 2.0)``, ``Kernel(radial_kernel(phi), L, M)``.

    Attributes:
      family: a name in ``KERNELS`` or a family (static: part of the program).
      bandwidth: ``L > 0``, a scalar array leaf (data: a sweep reuses one program).
      M: optional ``(d, d)`` symmetric PSD metric, an array leaf; ``None`` for the identity.

    Calling it gives the kernel matrix: ``Kernel("gaussian", 1.0)(X, Z)`` is ``(n, m)``.
    Supports ``jit``, ``vmap`` (over bandwidths or metrics) and ``grad``.
    """

    family: str | Family
    bandwidth: ArrayLike = 1.0
    M: ArrayLike | None = None

    def __post_init__(self):
        # only the static family here: JAX rebuilds the value with other leaves (tracers,
        # in_axes specs); the leaves are checked where they are used (check_kernel)
        family_of(self.family)

    def check(self, d: int | None = None) -> Kernel:
        """``self``, or ``ValueError`` for a bandwidth that is not a scalar or an ``M`` that
        is not ``(d, d)``; a concrete bandwidth must be positive and finite."""
        for name, leaf in (("bandwidth", self.bandwidth), ("M", self.M)):
            if leaf is not None and not isinstance(leaf, jax.Array | np.ndarray | np.generic
                                                   | float | int):
                raise ValueError(f"the kernel's {name} must be an array or a number; got "
                                 f"{type(leaf).__name__}.")
        if jnp.ndim(self.bandwidth) != 0:
            raise ValueError(f"bandwidth must be a scalar; got shape {jnp.shape(self.bandwidth)}.")
        if uses_bandwidth(self.family):  # the arc-cosine and quadratic kernels ignore it
            _checks.check_positive("bandwidth", self.bandwidth)
        if self.M is not None:
            shape = jnp.shape(self.M)
            if len(shape) != 2 or shape[0] != shape[1] or (d is not None and shape[0] != d):
                want = "(d, d)" if d is None else f"({d}, {d})"
                raise ValueError(f"M must be a square {want} matrix; got shape {shape}.")
            if not isinstance(family_of(self.family), Radial):
                raise ValueError(f"the {family_of(self.family).name} kernel takes no metric M.")
        return self

    @property
    def name(self) -> str:
        return family_of(self.family).name

    @property
    def radial(self) -> bool:
        """Whether the family is radial (``k = phi(||x - z||_M / L)``): a metric ``M`` and
        the closed-form AGOP are defined for it."""
        return isinstance(family_of(self.family), Radial)

    def distances(self, X: jax.Array, Z: jax.Array) -> jax.Array:
        """``(n, m)`` squared ``M``-distances as this radial kernel needs them
        (``families.kernel_distances``)."""
        M = None if self.M is None else jnp.asarray(self.M)
        return kernel_distances(X, Z, self.family, M)

    def gradient_weights(self, d2: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Kernel values ``K`` and gradient weights ``W`` from squared distances (``(b, n)``
        each): ``grad_x k(x, x_j) = W_j M (x_j - x)`` for a radial family (Laplace
        ``W = k / (L ||x - x_j||_M)``, 0 at distance 0: the self term; Gaussian
        ``W = k / L^2``; any profile ``phi``: ``W = -phi'(t) / (t L^2)``,
        ``kernels.families``). ``ValueError`` for a family that is not radial."""
        family = family_of(self.family)
        if not isinstance(family, Radial):
            raise ValueError(f"the {family.name} kernel has no closed-form AGOP (not radial).")
        return family.gradient_weights(d2, self.bandwidth)

    def __call__(self, X: jax.Array, Z: jax.Array, *, block_size: int | None = None) -> jax.Array:
        M = None if self.M is None else jnp.asarray(self.M)
        return kernel_matrix(X, Z, self.family, self.bandwidth, M, block_size=block_size)
