"""Per-block collapse of a ResNet-18 backbone with the MLP head, at initialisation and after
training, through ``dnc_jax.probe`` (every ``BasicBlock`` and the MLP head, by path):
the measurement behind docs/probes.md's ResNet table. (The head's own layers are applied
as a pure function of its weights, not as module calls: ``layer_analysis`` reads them.)

The network is ``train_epochs``' (``--preset official`` head: depth 3, width 512, no biases,
MSE on {-1, +1}; the backbone's batch norm measured with its running statistics), trained
with Adam at 1e-3 on the first ``--n`` embedded MNIST images (standardised, sorted by
class as the preset), for ``--epochs``; the probe reads the same images.

    python benchmarks/resnet_blocks.py [--n 500 --epochs 10 --seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from flax import nnx

from dnc_jax.data import load_dataset, prepare
from dnc_jax.nets import probe
from dnc_jax.nets.backbones import BasicBlock
from dnc_jax.nets.train import init_model, train_epochs
from dnc_jax.presets import mlp_preset


def measure(model: nnx.Module, X: np.ndarray, y: np.ndarray) -> dict:
    batches = [(X[s:s + 100], y[s:s + 100]) for s in range(0, len(X), 100)]
    paths = [p for p, m in nnx.iter_modules(model) if isinstance(m, BasicBlock)]
    names = ["/".join(map(str, p)) for p in paths] + ["head"]
    return {p.path: p for p in probe(model, batches, num_classes=10, layers=names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    preset = mlp_preset("official", "resnet18")
    X, y = load_dataset("mnist5k", "train", args.n)
    data = prepare(X, y, **preset.prepare_options)
    config = dataclasses.replace(preset.config, optimizer="adam", lr=1e-3, epochs=args.epochs,
                                 measure_every=args.epochs, seed=args.seed)
    start = time.perf_counter()
    points = {"init": measure(init_model(config, 784, 10, (28, 28, 1)), data.X_train,
                              data.y_train)}
    for result in train_epochs(data.X_train, data.y_train, config=config,
                               image_shape=(28, 28, 1)):
        last = result
    points["trained"] = measure(last.model, data.X_train, data.y_train)
    seconds = time.perf_counter() - start
    print(f"# {args.n} images, {args.epochs} epochs, seed {args.seed}; train accuracy "
          f"{last.record.train_accuracy:.4f}; {seconds:.0f} s in all")
    print(f"{'module':<18} {'NC1 out, init':>14} {'NC1 out, trained':>17}")
    for path, p in points["trained"].items():
        print(f"{path:<18} {points['init'][path].output.nc1:>14.4g} {p.output.nc1:>17.4g}")


if __name__ == "__main__":
    main()
