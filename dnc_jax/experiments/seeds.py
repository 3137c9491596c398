"""Several seeds of one Deep RFM configuration: one resumable run per seed, aggregated.

``OUT/seed-K/`` holds seed ``K``'s run (as ``run_deep_rfm`` writes it); ``OUT/summary.json``
and ``OUT/summary.csv`` hold, per layer, measurement point and metric, the mean and
standard deviation (``n - 1``, ``layer_records.MeanStd``) over the seeds that have completed that layer.
"""

from __future__ import annotations

import dataclasses
import os

import jax

from dnc_jax.conventions import convention_header, nc1_key
from dnc_jax.deep_rfm_model import DeepRFMConfig
from dnc_jax.experiments.deep_rfm import run_deep_rfm
from dnc_jax.layer_records import POINTS, LayerRecord, LayerSummary, MeanStd
from dnc_jax.records import atomic_write_csv, atomic_write_json, ensure_writable

SUMMARY_METRICS = ("nc1", "nc1_official", "nc2", "cdnv")
SUMMARY_SCALARS = ("train_accuracy", "test_accuracy", "refit_train_accuracy", "refit_test_accuracy")


def seed_dir(out: str, seed: int) -> str:
    """The folder of one seed's run inside ``out``: ``out/seed-<seed>``."""
    return os.path.join(out, f"seed-{seed}")


def checked_seeds(seeds) -> tuple[int, ...]:
    """``seeds`` as a tuple of ints, or a ``ValueError`` unless distinct and at least one."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one; got {seeds}.")
    return seeds


def aggregate_layers(runs: list[list[LayerRecord]]) -> list[LayerSummary]:
    """Mean and std over runs, per layer that every run has completed.

    Args:
      runs: per seed, its list of layer records (``deep_rfm``'s records).

    Returns:
      One ``LayerSummary`` per layer: how many seeds, and at each point in ``POINTS`` the
      ``MeanStd`` of each metric in ``SUMMARY_METRICS``; the same for the accuracies
      (``None`` where a run has none), the refitted predictor's too.
    """
    depth = min((len(r) for r in runs), default=0)
    out = []
    for layer in range(depth):
        recs = [r[layer] for r in runs]
        points = {point: {m: MeanStd.of([getattr(rec.at(point), m) for rec in recs])
                          for m in SUMMARY_METRICS} for point in POINTS}
        out.append(LayerSummary(
            layer, len(recs), **points,
            train_accuracy=MeanStd.of([rec.train_accuracy for rec in recs]),
            test_accuracy=MeanStd.of([rec.test_accuracy for rec in recs]),
            refit_train_accuracy=MeanStd.of([rec.refit_train_accuracy for rec in recs]),
            refit_test_accuracy=MeanStd.of([rec.refit_test_accuracy for rec in recs])))
    return out


def summary_table(summary: list[LayerSummary], script: str | None = None) -> str:
    """Per layer: NC1 mean +- std at the three points (in ``script``'s convention, as
    ``deep_rfm_table``), the test accuracy of the predictor fitted before the AGOP step and,
    where the runs recorded it, of the one refitted on the projected features (the
    official script's last printed accuracy, ``recursive_feature_machine.py`` lines
    125-130)."""
    key = nc1_key(script)
    refit = bool(summary) and summary[0].refit_test_accuracy is not None
    lines = [convention_header(script),
             f"{'layer':>5} " + " ".join(f"{'nc1 ' + p:>22}" for p in POINTS) + f" {'test acc':>16}"
             + (f" {'refit test acc':>16}" if refit else "")]
    for entry in summary:
        cells = " ".join(_cell(entry.at(p)[key]) for p in POINTS)
        text = _accuracy(entry.test_accuracy)
        extra = f" {_accuracy(entry.refit_test_accuracy):>16}" if refit else ""
        lines.append(f"{entry.layer:>5} {cells} {text:>16}{extra}")
    if refit:
        lines.append("refit test acc: the predictor refitted on the projected features, the "
                     "accuracy the official script prints last")
    return "\n".join(lines)


def _accuracy(stats: MeanStd | None) -> str:
    return "" if stats is None else f"{stats.mean:.4f} +- {stats.std:.4f}"


def _cell(stats: MeanStd | None) -> str:
    return " " * 22 if stats is None else f"{stats.mean:>11.4g} +- {stats.std:<8.2g}"


def _summary_rows(summary: list[LayerSummary]) -> list[dict]:
    rows = []
    for entry in summary:
        row: dict[str, float] = {"layer": entry.layer, "seeds": entry.seeds}
        for point in POINTS:
            for m, stats in entry.at(point).items():
                if stats is not None:
                    row[f"{point}_{m}_mean"], row[f"{point}_{m}_std"] = stats
        for key in SUMMARY_SCALARS:
            stats = getattr(entry, key)
            if stats is not None:
                row[f"{key}_mean"], row[f"{key}_std"] = stats
        rows.append(row)
    return rows


def run_deep_rfm_seeds(out: str, seeds: tuple[int, ...], *, config: DeepRFMConfig = DeepRFMConfig(),
                       progress: bool = True, **run_options) -> list[LayerSummary]:
    """``run_deep_rfm`` once per seed into ``OUT/seed-K`` (each resuming on its own), then
    the aggregate; returns the summary (also written to ``summary.json`` / ``.csv``)."""
    seeds = checked_seeds(seeds)
    ensure_writable(out)
    runs = []
    for seed in seeds:
        results = run_deep_rfm(seed_dir(out, seed), config=dataclasses.replace(config, seed=seed),
                               progress=progress, **run_options)
        runs.append(results.layers)
    summary = aggregate_layers(runs)
    if jax.process_index() != 0:  # several processes: process 0 writes
        return summary
    atomic_write_json(os.path.join(out, "summary.json"),
                      {"seeds": list(seeds), "config": dataclasses.asdict(config) | {"seed": None},
                       "layers": [entry.to_json() for entry in summary]})
    atomic_write_csv(os.path.join(out, "summary.csv"), _summary_rows(summary))
    return summary
