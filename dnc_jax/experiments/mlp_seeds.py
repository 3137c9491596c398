"""Several seeds of one network training: one resumable ``run_mlp`` per seed, aggregated
per measurement epoch, and the paper's training-curve figures with bands (mean +- std over
seeds, as ``gen_nn_plots.py`` of ``dmbeaglehole/neural_collapse_rfm`` draws them).

``OUT/seed-K/`` holds seed ``K``'s run; ``OUT/summary.json`` / ``summary.csv`` hold, per
measurement epoch and head layer, the mean and standard deviation (``n - 1``, as
``torch.std``) over the seeds of: NC1 at input / right-singular step / AGOP projection /
output (``nc1_<point>``; ``nc1_official_<point>`` in the official scripts' convention),
the trace ratios where the script the preset reproduces reads them
(``conventions.trace_ratio_point``: the layer's output for ``nc_nn.py`` and our own
presets, its input for ``nc_nn_ratio.py``; ``summary.json``'s ``trace_ratios_at`` says which):
``within_total`` = ``tr(Sigma_W)/tr(Sigma_T)`` (the same in both conventions) and
``between_total_official`` = ``C tr(Sigma_B)/tr(Sigma_T)`` (the script's convention,
``CollapseMetrics.between_total_official``), the NFA correlations, and the train loss and
accuracies; ``OUT/training_seeds.png`` draws them.
"""

from __future__ import annotations

import dataclasses
import os

from dnc_jax.conventions import convention_header, nc1_key, trace_ratio_point
from dnc_jax.experiments.mlp import run_mlp
from dnc_jax.experiments.seeds import checked_seeds, seed_dir
from dnc_jax.figures import plot_training_seeds
from dnc_jax.layer_records import MeanStd
from dnc_jax.nets.measurements import POINTS, EpochRecord
from dnc_jax.nets.summaries import SCALARS, EpochSummary, HeadLayerSummary, LossSummary
from dnc_jax.records import atomic_write_csv, atomic_write_json, ensure_writable


def aggregate_measurements(runs: list[list[EpochRecord]],
                           trace_point: str = "output") -> list[EpochSummary]:
    """Mean and std over runs at each measurement epoch that every run has reached.

    Args:
      runs: per seed, its ``measurements`` (``run_mlp``'s records).
      trace_point: where each layer's trace ratios are read, ``"input"`` or ``"output"``
        (``conventions.trace_ratio_point`` of the preset's script).

    Returns:
      One ``EpochSummary`` per epoch.
    """
    count = min((len(r) for r in runs), default=0)
    summary = []
    for i in range(count):
        recs = [r[i] for r in runs]
        epochs = {m.epoch for m in recs}
        if len(epochs) != 1:
            raise ValueError(f"The runs measured different epochs: {sorted(epochs)}.")
        layers = [HeadLayerSummary.of(layer, [(m.layers or [])[layer] for m in recs], trace_point)
                  for layer in range(len(recs[0].layers or []))]
        summary.append(EpochSummary(
            recs[0].epoch, len(recs), MeanStd.over([m.train_loss for m in recs]),
            MeanStd.over([m.train_accuracy for m in recs]),
            MeanStd.of([m.test_accuracy for m in recs]), layers))
    return summary


def aggregate_losses(histories: list[list[EpochRecord]]) -> list[LossSummary]:
    """Per epoch that every run has reached, the train loss over the runs (``run_mlp``'s
    ``history``, one entry per epoch)."""
    count = min((len(h) for h in histories), default=0)
    return [LossSummary(histories[0][i].epoch, MeanStd.over([h[i].train_loss for h in histories]))
            for i in range(count)]


def mlp_summary_table(summary: list[EpochSummary], script: str | None = None) -> str:
    """At the last common measurement, per head layer: NC1 mean +- std at the four points
    (in ``script``'s convention, as ``deep_rfm_table``) and the NFA correlation (square
    root of the AGOP)."""
    last = summary[-1]
    acc = last.train_accuracy
    key = nc1_key(script)
    lines = [convention_header(script),
             f"epoch {last.epoch}, {last.seeds} seeds: train acc "
             f"{acc.mean:.4f} +- {acc.std:.4f}",
             f"{'layer':>5} " + " ".join(f"{'nc1 ' + p:>20}" for p in POINTS)
             + f" {'NFA sqrt':>16}"]
    for rec in last.layers:
        nc1 = getattr(rec, key)
        cells = " ".join(f"{nc1[p].mean:>10.4g} +- {nc1[p].std:<6.2g}" for p in POINTS)
        nfa = rec.nfa_sqrt_agop
        lines.append(f"{rec.layer:>5} {cells} {nfa.mean:>8.3f} +- {nfa.std:.3f}")
    return "\n".join(lines)


def _summary_rows(summary: list[EpochSummary]) -> list[dict]:
    rows = []
    for entry in summary:
        for rec in entry.layers:
            row: dict = {"epoch": entry.epoch, "seeds": entry.seeds, "layer": rec.layer}
            for key in SCALARS:
                stats = getattr(entry, key)
                if stats is not None:
                    row[f"{key}_mean"], row[f"{key}_std"] = stats.mean, stats.std
            for key, stats in rec.values().items():
                row[f"{key}_mean"], row[f"{key}_std"] = stats.mean, stats.std
            rows.append(row)
    return rows


def run_mlp_seeds(out: str, seeds: tuple[int, ...], *, config, progress: bool = True,
                  script: str | None = None, **run_options) -> list[EpochSummary]:
    """``run_mlp`` once per seed into ``OUT/seed-K`` (each resuming on its own), then the
    aggregate; returns the summary (also written to ``summary.json`` / ``.csv`` and drawn
    in ``training_seeds.png``, its NC1 in the convention of the official ``script`` a
    preset reproduces, else ours)."""
    seeds = checked_seeds(seeds)
    ensure_writable(out)
    runs, histories = [], []
    for seed in seeds:
        results = run_mlp(seed_dir(out, seed), config=dataclasses.replace(config, seed=seed),
                          progress=progress, script=script, **run_options)
        runs.append(results.measurements)
        histories.append(results.history)
    point = trace_ratio_point(script)
    summary = aggregate_measurements(runs, point)
    losses = aggregate_losses(histories)
    atomic_write_json(os.path.join(out, "summary.json"),
                      {"seeds": list(seeds), "config": dataclasses.asdict(config) | {"seed": None},
                       "trace_ratios_at": point,
                       "measurements": [e.to_json() for e in summary],
                       "losses": [e.to_json() for e in losses]})
    atomic_write_csv(os.path.join(out, "summary.csv"), _summary_rows(summary))
    head = "MLP" if config.backbone == "none" else f"{config.backbone} + MLP head"
    plot_training_seeds(summary, losses, os.path.join(out, "training_seeds.png"),
                        f"{head} on {run_options.get('dataset', 'mnist5k')}, seeds {list(seeds)}",
                        script)
    return summary
