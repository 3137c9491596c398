"""A feature extractor (or none) with the paper's MLP head: what ``dnc-jax mlp`` trains.

``Network(x) = head(backbone(x as images))`` for flattened inputs ``x`` (``(n, H*W*C)``,
row-major HWC as ``data.load_dataset`` returns them). With ``backbone="none"`` it is the
MLP alone on the flat inputs. The layer analysis runs on the head, whose input is the
backbone's output features (``head_inputs``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dnc_jax.blocks import map_row_blocks
from dnc_jax.nets.backbones import FEATURES, make_backbone
from dnc_jax.nets.mlp import MLP

# (H, W, C) of the image datasets' flattened rows
IMAGE_SHAPES = {
    "mnist5k": (28, 28, 1), "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1),
    "mnist_shifted": (28, 28, 1), "cifar10": (32, 32, 3), "svhn": (32, 32, 3),
}


class Network(nnx.Module):
    """Backbone (``"resnet18"``, ``"vgg11"`` or ``"none"``) and ``MLP`` head.

    Args:
      in_dim: flattened input size; ``image_shape`` (``(H, W, C)``, product ``in_dim``) is
        needed with a backbone.
      num_classes: outputs; head: keyword arguments of ``MLP`` (width, depth, inits, ...).
      rngs: ``nnx.Rngs``; the backbone is drawn first, then the head.

    ``__call__(x, train=False)`` maps ``(n, in_dim)`` to ``(n, num_classes)``; ``train``
    switches batch norm to batch statistics.
    """

    def __init__(self, in_dim: int, num_classes: int, *, backbone: str = "none",
                 image_shape: tuple[int, int, int] | None = None, rngs: nnx.Rngs, **head):
        if backbone != "none":
            if image_shape is None or len(image_shape) != 3:
                raise ValueError("A backbone needs image_shape=(H, W, C) of the flattened "
                                 "inputs.")
            if int(image_shape[0] * image_shape[1] * image_shape[2]) != in_dim:
                raise ValueError(f"image_shape {tuple(image_shape)} has "
                                 f"{image_shape[0] * image_shape[1] * image_shape[2]} values; "
                                 f"the inputs have {in_dim}.")
        self.image_shape = None if image_shape is None else tuple(int(v) for v in image_shape)
        self.backbone = make_backbone(backbone, self.image_shape[2] if self.image_shape else 0,
                                      rngs)
        features = in_dim if self.backbone is None else FEATURES[backbone]
        self.head = MLP(features, out_dim=num_classes, rngs=rngs, **head)

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The head's inputs: ``(n, in_dim) -> (n, features)``."""
        if self.backbone is None or self.image_shape is None:
            return x
        return self.backbone(x.reshape(x.shape[0], *self.image_shape), train)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train))

    def weights(self):
        """The head's linear layers (``MLP.weights``)."""
        return self.head.weights()


@nnx.jit(static_argnames=("batch",))
def _features_batched(model: Network, X: jax.Array, batch: int) -> jax.Array:
    return map_row_blocks(model.features, X, batch)


def head_inputs(model: Network, X: jax.Array, batch: int = 256) -> jax.Array:
    """``model.features`` in evaluation mode (running batch-norm statistics), ``batch``
    rows at a time: ``(n, in_dim) -> (n, features)``."""
    if model.backbone is None:
        return jnp.asarray(X)
    return _features_batched(model, jnp.asarray(X), batch)
