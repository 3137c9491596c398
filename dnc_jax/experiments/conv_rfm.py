"""``dnc-jax conv-rfm``: Deep ConvRFM against the same convolutional kernel with a fixed
(identity) patch metric, over seeds, on the embedded images (``conv_rfm``'s module
docstring for the method). Step 0 of layer 0 is the fixed-metric kernel; the seeds vary
the AGOP's image sample and the random filters of the maps between layers. Each seed is
committed to ``results.json`` when done (a rerun resumes)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from dnc_jax.conv_rfm import ConvRFMStep, DeepConvRFMConfig, deep_conv_rfm
from dnc_jax.experiments.common import image_split
from dnc_jax.layer_records import MeanStd
from dnc_jax.records import RunDirectory, ensure_writable
from dnc_jax.run_loop import resumable_steps


class ConvRFMRun(NamedTuple):
    """``results.json``: ``config``, ``environment``, per completed seed its steps."""

    config: dict
    environment: dict
    seeds: list[dict]

    def to_json(self) -> dict:
        return self._asdict()


def conv_rfm_table(run: ConvRFMRun) -> str:
    """Per layer and step, test accuracy mean +- std over the seeds (step 0 of layer 0: the
    fixed identity metric), and NC1 of each layer's input."""
    steps = [[ConvRFMStep(**r) for r in seed["steps"]] for seed in run.seeds]
    lines = [f"{'layer':>5} {'step':>4} {'metric':>9} {'test accuracy':>18} {'NC1 of the input':>17}"]
    for i, first in enumerate(steps[0]):
        acc = MeanStd.over([s[i].test_accuracy for s in steps])
        nc1 = MeanStd.over([s[i].nc1 for s in steps])
        metric = "identity" if first.step == 0 else f"AGOP {first.step}"
        lines.append(f"{first.layer:>5} {first.step:>4} {metric:>9} "
                     f"{acc.mean:>9.4f} +- {acc.std:.4f} {nc1.mean:>17.4g}")
    lines.append(f"{len(run.seeds)} seeds")
    return "\n".join(lines)


def run_conv_rfm(out: str, *, config: DeepConvRFMConfig = DeepConvRFMConfig(),
                 dataset: str = "mnist5k", n: int | None = 1000, n_test: int | None = 1000,
                 seeds: tuple[int, ...] = (0, 1, 2), progress: bool = True) -> ConvRFMRun:
    """Deep ConvRFM once per seed into ``out`` (resuming by seed). A shell call."""
    if not seeds:
        raise ValueError("pass at least one seed.")
    X, y = image_split(dataset, "train", n)
    Xt, yt = image_split(dataset, "test", n_test)
    ensure_writable(out)
    run_config = {"experiment": "conv_rfm", **dataclasses.asdict(config) | {"seed": None},
                  "dataset": dataset, "n": n, "n_test": n_test}
    directory = RunDirectory(out, run_config, "seeds")
    saved, _ = directory.resume()
    run = ConvRFMRun(saved["config"], saved["environment"], saved["seeds"])
    done = {s["seed"] for s in run.seeds}
    for seed in resumable_steps([s for s in seeds if s not in done], total=len(seeds),
                                initial=len(done), desc="Deep ConvRFM seeds", progress=progress):
        records = deep_conv_rfm(X, y, Xt, yt, dataclasses.replace(config, seed=seed))
        run.seeds.append({"seed": seed, "steps": [r.to_json() for r in records]})
        directory.commit(run.to_json(), {"seeds": np.array([s["seed"] for s in run.seeds])})
    return run
