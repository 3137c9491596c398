"""The vanilla CNN of the CNFA paper's verification code, in Flax NNX.

``aradha/convrfm`` (commit 92d2f30), ``hyperparam_cnfa_verification/models.py``:
``VanillaCNN`` (line 242): four ``q x q`` convolutions of width ``k`` with zero padding
``q // 2`` and stride 1, no biases, ReLU after each, then one linear layer from the
flattened ``H x W x k`` map to the classes (line 262), every weight drawn from
``N(0, init^2)`` (line 274; ``main.py`` lines 27-30: ``q = 3``, ``k = 64``,
``init = 5e-3``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dnc_jax.precision import PRECISION


class VanillaCNN(nnx.Module):
    """``(n, H, W, c) -> (n, classes)`` (module docstring)."""

    def __init__(self, image_shape: tuple[int, int, int], classes: int, *, width: int = 64,
                 patch: int = 3, depth: int = 4, init: float = 5e-3, rngs: nnx.Rngs):
        H, W, c = image_shape
        normal = nnx.initializers.normal(init)
        pad = patch // 2
        convs, cin = [], c
        for _ in range(depth):
            convs.append(nnx.Conv(cin, width, (patch, patch), padding=((pad, pad), (pad, pad)),
                                  use_bias=False, kernel_init=normal, precision=PRECISION,
                                  rngs=rngs))
            cin = width
        self.convs = nnx.List(convs)
        size = jax.eval_shape(self.features, jnp.zeros((1, H, W, c))).shape
        self.head = nnx.Linear(size[1] * size[2] * size[3], classes, use_bias=False,
                               kernel_init=normal, precision=PRECISION, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.features(x)
        return self.head(h.reshape(h.shape[0], -1))
