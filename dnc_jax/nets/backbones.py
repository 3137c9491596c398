"""ResNet-18 and VGG-11 feature extractors in Flax NNX, laid out as the paper's code builds
them from torchvision (``dmbeaglehole/neural_collapse_rfm`` ``nc_nn.py``, commit eee0604).

- ``ResNet18`` (lines 642-647): torchvision's ``resnet18`` with its first convolution
  replaced by a fresh ``Conv2d(c, 64, 7, stride 2, padding 3, bias=False)`` for ``c`` input
  channels and the classifier replaced by the identity: stem conv 7x7/2, batch norm, ReLU,
  max pool 3x3/2; four stages of two basic blocks (64, 128, 256, 512 channels, stages 2-4
  starting at stride 2 with a 1x1 projection shortcut); global average pool. Output
  ``(n, 512)``. This is the ImageNet layout (not the 3x3-stem "CIFAR ResNet"): on 32x32
  inputs the last stage sees 1x1 maps, as in the paper's runs.
- ``VGG11`` (lines 675-687): torchvision's ``vgg11`` (no batch norm) cut after its 15th
  module, i.e. conv64, pool, conv128, pool, conv256, conv256, pool, conv512, conv512 (3x3,
  padding 1, ReLU after each), the first convolution replaced by a fresh bias-free
  ``Conv2d(c, 64, 3, padding 1)``; then adaptive average pooling to 4x4 and flattening.
  Output ``(n, 8192)``.

Initialisation follows torchvision: convolutions He-normal on ``fan_out`` (``std =
sqrt(2 / (k^2 out))``), batch-norm scale 1 and shift 0, VGG conv biases 0; the replaced
first convolution has PyTorch's default ``U(+-1/sqrt(fan_in))``. Batch norm: PyTorch's
``eps = 1e-5`` and ``momentum = 0.1`` (flax's 0.9); flax normalises with and tracks the
biased batch variance (PyTorch tracks the unbiased one, a factor ``m/(m-1)`` on the
running variance). Inputs are NHWC; every convolution computes at ``precision.PRECISION``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dnc_jax.nets.mlp import TORCH_LINEAR_INIT
from dnc_jax.precision import PRECISION

HE_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
BACKBONES = ("none", "resnet18", "vgg11")
FEATURES = {"resnet18": 512, "vgg11": 512 * 4 * 4}


def _conv(cin, cout, k, stride, pad, rngs, *, bias=False, init=HE_FAN_OUT):
    return nnx.Conv(cin, cout, (k, k), (stride, stride), padding=((pad, pad), (pad, pad)),
                    use_bias=bias, kernel_init=init, precision=PRECISION, rngs=rngs)


def _batch_norm(channels, rngs):
    return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)


class BasicBlock(nnx.Module):
    """``relu(bn(conv3x3(relu(bn(conv3x3_s(x))))) + shortcut(x))``; the shortcut is a 1x1
    stride-``s`` convolution with batch norm when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(cin, cout, 3, stride, 1, rngs)
        self.bn1 = _batch_norm(cout, rngs)
        self.conv2 = _conv(cout, cout, 3, 1, 1, rngs)
        self.bn2 = _batch_norm(cout, rngs)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.down = _conv(cin, cout, 1, stride, 0, rngs)
            self.down_bn = _batch_norm(cout, rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        h = self.bn2(self.conv2(h), use_running_average=not train)
        short = self.down_bn(self.down(x), use_running_average=not train) if self.project else x
        return jax.nn.relu(h + short)


class ResNet18(nnx.Module):
    """``(n, H, W, c) -> (n, 512)`` (module docstring); ``train`` uses batch statistics
    and updates the running ones, as PyTorch's ``.train()``."""

    def __init__(self, in_channels: int, *, rngs: nnx.Rngs):
        self.stem = _conv(in_channels, 64, 7, 2, 3, rngs, init=TORCH_LINEAR_INIT)
        self.stem_bn = _batch_norm(64, rngs)
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride, rngs=rngs), BasicBlock(cout, cout, 1, rngs=rngs)]
            cin = cout
        self.blocks = nnx.List(blocks)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = jax.nn.relu(self.stem_bn(self.stem(x), use_running_average=not train))
        h = nnx.max_pool(h, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            h = block(h, train)
        return jnp.mean(h, axis=(1, 2))


def adaptive_avg_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """PyTorch's ``AdaptiveAvgPool2d``: output cell ``i`` of an axis of length ``L`` averages
    rows ``floor(i L / s)`` to ``ceil((i + 1) L / s)`` (exclusive), which also upsamples
    when ``L < s``. ``(n, H, W, c) -> (n, s_h, s_w, c)``."""

    def bins(length, s):
        return [(i * length // s, -(-(i + 1) * length // s)) for i in range(s)]

    rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(x.shape[1], size[0])]
    h = jnp.stack(rows, axis=1)
    cols = [jnp.mean(h[:, :, a:b], axis=2) for a, b in bins(x.shape[2], size[1])]
    return jnp.stack(cols, axis=2)


class VGG11(nnx.Module):
    """``(n, H, W, c) -> (n, 8192)`` (module docstring). ``train`` is accepted for a common
    call signature; VGG-11 has no batch norm."""

    def __init__(self, in_channels: int, *, rngs: nnx.Rngs):
        zero = nnx.initializers.zeros_init()
        self.convs = nnx.List([
            _conv(in_channels, 64, 3, 1, 1, rngs, init=TORCH_LINEAR_INIT),
            *(nnx.Conv(cin, cout, (3, 3), padding=((1, 1), (1, 1)), kernel_init=HE_FAN_OUT,
                       bias_init=zero, precision=PRECISION, rngs=rngs)
              for cin, cout in ((64, 128), (128, 256), (256, 256), (256, 512), (512, 512)))
        ])

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train
        for i, conv in enumerate(self.convs):
            x = jax.nn.relu(conv(x))
            if i in (0, 1, 3):  # max pools after conv64, conv128 and the second conv256
                x = nnx.max_pool(x, (2, 2), (2, 2))
        return adaptive_avg_pool(x, (4, 4)).reshape(x.shape[0], -1)


def make_backbone(name: str, in_channels: int, rngs: nnx.Rngs) -> nnx.Module | None:
    """``"resnet18"``, ``"vgg11"`` or ``"none"`` (``None``)."""
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}; got {name!r}.")
    if name == "none":
        return None
    return (ResNet18 if name == "resnet18" else VGG11)(in_channels, rngs=rngs)
