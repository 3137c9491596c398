"""Several seeds of one Deep RFM configuration: one resumable run per seed, aggregated.

``OUT/seed-K/`` holds seed ``K``'s run (as ``run_deep_rfm`` writes it); ``OUT/summary.json``
and ``OUT/summary.csv`` hold, per layer, measurement point and metric, the mean and
standard deviation (``n - 1``, ``mean_std``) over the seeds that have completed that layer.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from dnc_jax.conventions import convention_header, nc1_key
from dnc_jax.deep_rfm_model import DeepRFMConfig
from dnc_jax.experiments.deep_rfm import POINTS, run_deep_rfm
from dnc_jax.records import atomic_write_csv, atomic_write_json, ensure_writable

SUMMARY_METRICS = ("nc1", "nc1_official", "nc2", "cdnv")
SUMMARY_SCALARS = ("train_accuracy", "test_accuracy")


def seed_dir(out: str, seed: int) -> str:
    """The folder of one seed's run inside ``out``: ``out/seed-<seed>``."""
    return os.path.join(out, f"seed-{seed}")


def checked_seeds(seeds) -> tuple[int, ...]:
    """``seeds`` as a tuple of ints, or a ``ValueError`` unless distinct and at least one."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one; got {seeds}.")
    return seeds


def aggregate_layers(runs: list[list[dict]]) -> list[dict]:
    """Mean and std over runs, per layer that every run has completed.

    Args:
      runs: per seed, its list of layer records (``deep_rfm``'s records).

    Returns:
      One dict per layer: ``layer``, ``seeds`` (how many), and for each point in
      ``POINTS`` and metric in ``SUMMARY_METRICS`` ``{"mean", "std"}``; the same for the
      accuracies (``None`` where a run has none).
    """
    depth = min((len(r) for r in runs), default=0)
    out = []
    for layer in range(depth):
        recs = [r[layer] for r in runs]
        entry: dict = {"layer": layer, "seeds": len(recs)}
        for point in POINTS:
            entry[point] = {m: mean_std([rec[point][m] for rec in recs]) for m in SUMMARY_METRICS}
        for key in SUMMARY_SCALARS:
            entry[key] = mean_std([rec[key] for rec in recs])
        out.append(entry)
    return out


def mean_std(values: list) -> dict | None:
    """``{mean, std}`` of ``values`` over seeds; ``None`` if any is ``None``. The std is
    the unbiased one (``n - 1``), as ``torch.std`` gives the official plots' bands
    (``gen_nn_plots.py``); 0 for one seed."""
    if any(v is None for v in values):
        return None
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def summary_table(summary: list[dict], script: str | None = None) -> str:
    """Per layer: NC1 mean +- std at the three points (in ``script``'s convention, as
    ``deep_rfm_table``), and the test accuracy."""
    key = nc1_key(script)
    lines = [convention_header(script),
             f"{'layer':>5} " + " ".join(f"{'nc1 ' + p:>22}" for p in POINTS) + f" {'test acc':>16}"]
    for entry in summary:
        cells = " ".join(f"{entry[p][key]['mean']:>11.4g} +- {entry[p][key]['std']:<8.2g}"
                         for p in POINTS)
        acc = entry["test_accuracy"]
        acc = "" if acc is None else f"{acc['mean']:.4f} +- {acc['std']:.4f}"
        lines.append(f"{entry['layer']:>5} {cells} {acc:>16}")
    return "\n".join(lines)


def _summary_rows(summary: list[dict]) -> list[dict]:
    rows = []
    for entry in summary:
        row = {"layer": entry["layer"], "seeds": entry["seeds"]}
        for point in POINTS:
            for m in SUMMARY_METRICS:
                row[f"{point}_{m}_mean"] = entry[point][m]["mean"]
                row[f"{point}_{m}_std"] = entry[point][m]["std"]
        for key in SUMMARY_SCALARS:
            if entry[key] is not None:
                row[f"{key}_mean"], row[f"{key}_std"] = entry[key]["mean"], entry[key]["std"]
        rows.append(row)
    return rows


def run_deep_rfm_seeds(out: str, seeds: tuple[int, ...], *, config: DeepRFMConfig = DeepRFMConfig(),
                       progress: bool = True, **run_options) -> list[dict]:
    """``run_deep_rfm`` once per seed into ``OUT/seed-K`` (each resuming on its own), then
    the aggregate; returns the summary (also written to ``summary.json`` / ``.csv``)."""
    seeds = checked_seeds(seeds)
    ensure_writable(out)
    runs = []
    for seed in seeds:
        results = run_deep_rfm(seed_dir(out, seed), config=dataclasses.replace(config, seed=seed),
                               progress=progress, **run_options)
        runs.append(results["layers"])
    summary = aggregate_layers(runs)
    if jax.process_index() != 0:  # several processes: process 0 writes
        return summary
    atomic_write_json(os.path.join(out, "summary.json"),
                      {"seeds": list(seeds), "config": dataclasses.asdict(config) | {"seed": None},
                       "layers": summary})
    atomic_write_csv(os.path.join(out, "summary.csv"), _summary_rows(summary))
    return summary
