"""``dnc-jax probe``: the convolutional neural feature ansatz and per-layer collapse of the
official vanilla CNN (``nets.cnn.VanillaCNN``), at initialisation and after training, over
seeds, on the embedded 8x8 digits.

Per seed: build the CNN, probe every conv and the linear layer (``nets.probes.probe`` on
the training images: the patch AGOP against the filter covariance, collapse at each
layer's input and output), train it (cross-entropy, Adam, minibatches of 128, the
official ``trainer.py`` lines 9 and 28 and ``nfa.py`` line 176), probe again, and measure
test accuracy. Each seed is committed to ``results.json`` when done (a rerun resumes).
The official script trains up to 1,000 epochs on CIFAR-10 (``main.py`` line 26); the
default here is 30 epochs on digits, which a CPU runs in about a minute per seed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dnc_jax.experiments.common import image_split
from dnc_jax.figures import plot_cnfa
from dnc_jax.layer_records import MeanStd
from dnc_jax.nets.cnn import VanillaCNN
from dnc_jax.nets.probes import LayerProbe, probe
from dnc_jax.option_fields import option
from dnc_jax.records import RunDirectory, ensure_writable
from dnc_jax.run_loop import resumable_steps

CLASSES = 10
IMAGE = (8, 8, 1)


@dataclasses.dataclass(frozen=True)
class CNFAConfig:
    """The network (``nets.cnn``, official defaults), its training and the data size."""

    width: int = option(64, "channels of every conv layer (official k)")
    patch: int = option(3, "filter size q")
    depth: int = option(4, "conv layers")
    init: float = option(5e-3, "std of every initial weight")
    epochs: int = option(30, "training epochs")
    lr: float = option(1e-3, "Adam learning rate")
    batch_size: int = option(128, "training minibatch")
    n: int | None = option(None, "training images, the first n (default all 1,437)")
    probe_batch: int = option(256, "images per probe batch")

    def __post_init__(self) -> None:
        for name in ("width", "patch", "depth", "epochs", "batch_size", "probe_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if not (self.init > 0 and self.lr > 0):
            raise ValueError(f"init and lr must be > 0; got {self.init}, {self.lr}.")


class SeedRecord(NamedTuple):
    """One seed: per probed layer (``path``) its scalars at ``init`` and ``trained``
    (``LayerProbe.to_json``), and the trained network's ``test_accuracy``."""

    seed: int
    init: list[dict]
    trained: list[dict]
    test_accuracy: float

    def to_json(self) -> dict:
        return self._asdict()

    @classmethod
    def from_json(cls, data: dict) -> SeedRecord:
        return cls(**data)


def _batches(X, y, size):
    return [(X[s:s + size], y[s:s + size]) for s in range(0, len(X), size)]


def train_cnn(model: nnx.Module, X: np.ndarray, y: np.ndarray, config: CNFAConfig,
              seed: int) -> None:
    """Train ``model`` in place: cross-entropy, Adam, shuffled minibatches (the last one
    kept, as PyTorch's ``DataLoader``), epoch ``e`` shuffled by ``fold_in(key(seed), e)``."""
    graphdef, params = nnx.split(model)
    opt = optax.adam(config.lr)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss(p):
            logits = nnx.merge(graphdef, p)(xb)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1))

        grads = jax.grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = opt.init(params)
    key = jax.random.key(seed)
    for epoch in range(config.epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), len(X)))
        for s in range(0, len(X), config.batch_size):
            rows = order[s:s + config.batch_size]
            # optax's bias correction mixes int32 and float, which the strict promotion
            # some callers run under rejects: trace the step under "standard"
            with jax.numpy_dtype_promotion("standard"):
                params, opt_state = step(params, opt_state, X[rows], y[rows])
    nnx.update(model, params)


def _probe(model, X, y, config) -> list[LayerProbe]:
    return probe(model, _batches(X, y, config.probe_batch), num_classes=CLASSES)


def cnfa_seed(config: CNFAConfig, seed: int) -> SeedRecord:
    """One seed of the experiment (module docstring)."""
    X, y = image_split("digits", "train", config.n)
    Xt, yt = image_split("digits", "test")
    model = VanillaCNN(IMAGE, CLASSES, width=config.width, patch=config.patch,
                       depth=config.depth, init=config.init, rngs=nnx.Rngs(seed))
    at_init = _probe(model, X, y, config)
    train_cnn(model, X, y, config, seed)
    trained = _probe(model, X, y, config)
    accuracy = float(jnp.mean(jnp.argmax(model(jnp.asarray(Xt)), axis=1) == yt))
    return SeedRecord(seed, [p.to_json() for p in at_init], [p.to_json() for p in trained],
                      accuracy)


class CNFARun(NamedTuple):
    """``results.json`` of a probe run: ``config``, ``environment``, one ``SeedRecord`` per
    completed seed."""

    config: dict
    environment: dict
    seeds: list[SeedRecord]

    def to_json(self) -> dict:
        return {"config": self.config, "environment": self.environment,
                "seeds": [s.to_json() for s in self.seeds]}

    @classmethod
    def from_json(cls, data: dict) -> CNFARun:
        return cls(data["config"], data["environment"],
                   [SeedRecord.from_json(s) for s in data["seeds"]])


class LayerSummary(NamedTuple):
    """One layer over seeds: the CNFA cosine and NC1 at its output, at init and trained."""

    path: str
    cosine_init: MeanStd
    cosine_trained: MeanStd
    pearson_sqrt_trained: MeanStd | None
    nc1_init: MeanStd
    nc1_trained: MeanStd


def summarise(run: CNFARun) -> tuple[list[LayerSummary], MeanStd]:
    """Per layer mean and std over the seeds, and the test accuracy's."""
    first = run.seeds[0]
    rows = []
    for i, layer in enumerate(first.init):
        def over(point, key, i=i):
            return MeanStd.of([_seed_value(s, point, i, key) for s in run.seeds])

        rows.append(LayerSummary(layer["path"], over("init", "cosine"), over("trained", "cosine"),
                                 over("trained", "pearson_sqrt"), over("init", "nc1"),
                                 over("trained", "nc1")))
    return rows, MeanStd.over([s.test_accuracy for s in run.seeds])


def _seed_value(record: SeedRecord, point: str, layer: int, key: str):
    """One seed's ``key`` (``"nc1"``: at the layer's output) of layer ``layer`` at ``point``."""
    entry = getattr(record, point)[layer]
    return entry["output"]["nc1"] if key == "nc1" else entry[key]


def cnfa_table(run: CNFARun) -> str:
    """The summary as text: per layer, mean +- std over seeds."""
    rows, accuracy = summarise(run)

    def fmt(m: MeanStd | None, spec=".3f") -> str:
        return "-" if m is None else f"{m.mean:{spec}} +- {m.std:{spec}}"

    lines = [f"{'layer':<10} {'CNFA init':>16} {'CNFA trained':>16} {'sqrt, trained':>16} "
             f"{'NC1 out, init':>18} {'NC1 out, trained':>18}"]
    for r in rows:
        lines.append(f"{r.path:<10} {fmt(r.cosine_init):>16} {fmt(r.cosine_trained):>16} "
                     f"{fmt(r.pearson_sqrt_trained):>16} {fmt(r.nc1_init, '.3g'):>18} "
                     f"{fmt(r.nc1_trained, '.3g'):>18}")
    lines.append(f"test accuracy {fmt(accuracy)} over {len(run.seeds)} seeds")
    return "\n".join(lines)


def run_cnfa(out: str, *, config: CNFAConfig = CNFAConfig(), seeds: tuple[int, ...] = (0, 1, 2),
             progress: bool = True) -> CNFARun:
    """The experiment for each seed into ``out`` (resuming by seed): ``results.json`` and
    ``cnfa.png``. A shell call."""
    if not seeds:
        raise ValueError("pass at least one seed.")
    ensure_writable(out)
    run_config = {"experiment": "cnfa", **dataclasses.asdict(config)}  # seeds are its steps
    directory = RunDirectory(out, run_config, "seeds")
    saved, _ = directory.resume()
    run = CNFARun.from_json(saved)
    done = {s.seed for s in run.seeds}
    for seed in resumable_steps([s for s in seeds if s not in done], total=len(seeds),
                                initial=len(done), desc="CNFA seeds", progress=progress):
        run.seeds.append(cnfa_seed(config, seed))
        # the state marks the results as complete up to this seed (RunDirectory resumes
        # only from a step whose state it finds)
        directory.commit(run.to_json(), {"seeds": np.array([s.seed for s in run.seeds])})
    rows, accuracy = summarise(run)
    plot_cnfa(rows, os.path.join(out, "cnfa.png"),
              f"Vanilla CNN on digits (width {config.width}, {config.epochs} epochs, "
              f"{len(run.seeds)} seeds; test accuracy {accuracy.mean:.3f})")
    return run
