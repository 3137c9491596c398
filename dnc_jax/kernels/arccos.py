"""The NNGP and NTK of a deep bias-free ReLU network: the arc-cosine recursion.

For ``f(x) = w^T relu(W_L ... relu(W_1 x))`` in the NTK parameterisation with weight
variance ``sigma_w^2 = 2`` (He), the infinite-width kernels follow (Cho & Saul 2009;
Jacot et al. 2018; Arora et al. 2019, eq. 7-8; the official Deep RFM code's ``ntk.py``):

    Sigma_1(x, z) = sigma_w^2 x.z / d,          Theta_1 = Sigma_1
    E_h  = (1/2pi) sqrt(S_xx S_zz) (sin t + (pi - t) cos t),   t = arccos(S_xz / sqrt(S_xx S_zz))
    Ed_h = (1/2pi) (pi - t)
    Sigma_{h+1} = sigma_w^2 E_h,               Theta_{h+1} = Sigma_{h+1} + sigma_w^2 Ed_h Theta_h

for ``h = 1 .. depth`` hidden ReLU layers; the NNGP is ``Sigma_{depth+1}``, the NTK
``Theta_{depth+1}``. They are dot-product kernels, not radial: no bandwidth (the value is
ignored), no metric, AGOP by autodiff. The cosine is clipped just inside ``(-1, 1)``
before ``arccos`` (``_angle``): at a point against itself ``arccos``'s derivative is
infinite, and the clip makes it 0 there.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dnc_jax.kernels.distances import safe_sqrt
from dnc_jax.precision import matmul

SIGMA_W2 = 2.0


def _angle(cos):
    """``arccos`` of cosines clipped into ``(-1, 1)`` (finite derivative at +-1)."""
    limit = 1.0 - 1e-7 if cos.dtype == jnp.float32 else 1.0 - 1e-15
    return jnp.arccos(jnp.clip(cos, -limit, limit))


def arccos_kernels(X: jax.Array, Z: jax.Array, depth: int) -> tuple[jax.Array, jax.Array]:
    """``(NNGP, NTK)`` matrices ``(n, m)`` of a ``depth``-hidden-layer ReLU network."""
    d = X.shape[1]
    sxz = SIGMA_W2 * matmul(X, Z.T) / d
    sxx = SIGMA_W2 * jnp.sum(X * X, axis=1) / d
    szz = SIGMA_W2 * jnp.sum(Z * Z, axis=1) / d
    ntk = sxz
    for _ in range(depth):
        # sqrt's derivative at 0 is infinite: a zero row (a mesh's padding) would make
        # every gradient through it NaN, though its kernel values are 0
        norm = safe_sqrt(sxx[:, None] * szz[None, :])
        safe = jnp.where(norm > 0, norm, 1.0)
        t = _angle(sxz / safe)
        expectation = norm * (jnp.sin(t) + (jnp.pi - t) * jnp.cos(t)) / (2 * jnp.pi)
        derivative = (jnp.pi - t) / (2 * jnp.pi)
        sxz = SIGMA_W2 * expectation
        ntk = sxz + SIGMA_W2 * derivative * ntk
        sxx, szz = SIGMA_W2 * sxx / 2, SIGMA_W2 * szz / 2  # E[relu(u)^2] = S/2
    return sxz, ntk


@dataclasses.dataclass(frozen=True)
class ArcCosine:
    """The ``"nngp"`` or ``"ntk"`` kernel of a ``depth``-hidden-layer ReLU network."""

    kind: str = "ntk"
    depth: int = 1

    def __post_init__(self):
        if self.kind not in ("nngp", "ntk"):
            raise ValueError(f"kind must be 'nngp' or 'ntk'; got {self.kind!r}.")
        if int(self.depth) < 1:
            raise ValueError(f"depth must be >= 1; got {self.depth}.")

    @property
    def name(self) -> str:
        """``relu_ntk`` / ``relu_nngp`` for one hidden layer (the registry's keys),
        ``relu_ntk_<depth>`` beyond: names ``family_of`` maps back to this family."""
        return f"relu_{self.kind}" if self.depth == 1 else f"relu_{self.kind}_{self.depth}"

    def matrix(self, X: jax.Array, Z: jax.Array, bandwidth=None) -> jax.Array:
        nngp, ntk = arccos_kernels(X, Z, int(self.depth))
        return ntk if self.kind == "ntk" else nngp
