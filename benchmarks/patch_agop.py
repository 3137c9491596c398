"""The patch AGOP of one conv layer two ways, same run, same layer, same images:

- ``probe``: ``W^T G W`` with ``G`` from one backward pass per class
  (``dnc_jax.nets.probes``; memory: the batch's activations and ``C_out x C_out``);
- ``per-sample Jacobians``: the official code's approach (``aradha/convrfm``,
  ``hyperparam_cnfa_verification/nfa.py``, ``egop_on_patches``), written in JAX: unfold the
  layer's input into patches, ``vmap(jacrev)`` of the network above with respect to every
  patch of every image (``b x C x P Q x C_in q^2`` numbers per batch), then
  ``sum J^T J``.

Both run on the official vanilla CNN (width 64, 3x3 filters, zero padding 1) at the
second conv layer, in batches of 64 images (the official ``mb_size_egop`` for <= 10
classes, nfa.py line 135). Prints seconds per call after one warm-up (compilation
excluded), the compiled batch programs' temporary memory (``probe``'s includes the
collapse statistics of the layer's input and output), the ratio, and the largest entrywise
difference of the two AGOPs relative to the largest entry.

    python benchmarks/patch_agop.py [--images 256] [--size 16] [--channels 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dnc_jax import class_statistics as cs
from dnc_jax.nets.cnn import VanillaCNN
from dnc_jax.nets.probes import _Accumulator, _batch_step, probe
from dnc_jax.precision import matmul


def probe_step_memory(model: VanillaCNN, x: np.ndarray, y: np.ndarray) -> int:
    """Temporary memory of the compiled batch step ``probe`` runs for ``convs/1`` alone."""
    graphdef, state = nnx.split(model)
    h = jax.eval_shape(lambda v: jax.nn.relu(model.convs[0](v)), x)
    z = jax.eval_shape(lambda v: model.convs[1](v), h)
    name = "convs/1"
    acc = _Accumulator({name: cs.ClassStatistics.zeros(10, int(np.prod(h.shape[1:])))},
                       {name: cs.ClassStatistics.zeros(10, int(np.prod(z.shape[1:])))},
                       {name: jnp.zeros((z.shape[-1],) * 2)})
    step = jax.jit(lambda s, a, xb, yb: _batch_step(graphdef, (("convs", 1),), (name,), (name,),
                                                    lambda m, v: m(v), None, s, a, xb, yb))
    return step.lower(state, acc, x, y).compile().memory_analysis().temp_size_in_bytes


def per_sample_patch_agop(model: VanillaCNN, layer: int, batch_size: int):
    """The official approach as a jitted batch function ``x -> sum_i sum_c J^T J``."""
    conv = model.convs[layer]
    K = conv.kernel[...]
    q1, q2, cin, cout = K.shape
    Wf = K.reshape(-1, cout)

    def below(x):
        for c in model.convs[:layer]:
            x = jax.nn.relu(c(x))
        return x

    def above(patches):  # (H, W, q1 q2 cin) of one image -> (C,)
        h = jax.nn.relu(matmul(patches, Wf))
        for c in model.convs[layer + 1:]:
            h = jax.nn.relu(c(h[None])[0])
        return model.head(h.reshape(1, -1))[0]

    @jax.jit
    def batch(x):
        h = below(x)
        P = jax.lax.conv_general_dilated_patches(h, (q1, q2), (1, 1), ((1, 1), (1, 1)),
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
        n, H, W, _ = P.shape
        P = P.reshape(n, H, W, cin, q1, q2).transpose(0, 1, 2, 4, 5, 3).reshape(n, H, W, -1)
        J = jax.vmap(jax.jacrev(above))(P)  # (b, C, H, W, q1 q2 cin): held whole
        J = J.reshape(-1, J.shape[-1])
        return matmul(J.T, J)

    return batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--size", type=int, default=16, help="image height and width")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    shape = (args.size, args.size, args.channels)
    model = VanillaCNN(shape, 10, width=64, init=0.05, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.images, *shape)).astype(np.float32)
    y = rng.integers(0, 10, args.images).astype(np.int32)
    y[:10] = np.arange(10)
    batches = [(X[s:s + args.batch], y[s:s + args.batch]) for s in range(0, args.images, args.batch)]

    def ours():
        return probe(model, batches, num_classes=10, layers=["convs/1"], second_pass=False)[0].agop

    official_batch = per_sample_patch_agop(model, 1, args.batch)

    def official():
        total = sum(official_batch(xb) for xb, _ in batches)
        return np.asarray(total, np.float64) / args.images

    def timed(fn):
        fn()  # warm-up: compile
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return out, min(times)

    A_ours, t_ours = timed(ours)
    A_official, t_official = timed(official)
    memory = official_batch.lower(jnp.asarray(batches[0][0])).compile().memory_analysis()
    ours_memory = probe_step_memory(model, *batches[0])
    jac_bytes = args.batch * 10 * args.size ** 2 * 9 * 64 * 4
    diff = float(np.abs(A_ours - A_official).max() / np.abs(A_official).max())
    print(f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}; {args.images} images {shape}, batches of {args.batch}, "
          f"layer convs/1 (64 -> 64 channels, 3x3)")
    print(f"{'method':<24} {'s per call':>11} {'ratio':>7} {'temp memory':>12}")
    print(f"{'probe (W^T G W)':<24} {t_ours:>11.3f} {1.0:>7.2f} "
          f"{ours_memory / 2**20:>9.0f} MiB")
    print(f"{'per-sample Jacobians':<24} {t_official:>11.3f} {t_official / t_ours:>7.2f} "
          f"{memory.temp_size_in_bytes / 2**20:>9.0f} MiB")
    print(f"per-sample Jacobian held per batch: {jac_bytes / 2**20:.0f} MiB; "
          f"max |A_probe - A_jacobians| / max |A| = {diff:.1e}")


if __name__ == "__main__":
    main()
