"""Several seeds of one network training: one resumable ``run_mlp`` per seed, aggregated
per measurement epoch, and the paper's training-curve figures with bands (mean +- std over
seeds, as ``gen_nn_plots.py`` of ``dmbeaglehole/neural_collapse_rfm`` draws them).

``OUT/seed-K/`` holds seed ``K``'s run; ``OUT/summary.json`` / ``summary.csv`` hold, per
measurement epoch and head layer, the mean and standard deviation (``n - 1``, as
``torch.std``) over the seeds of: NC1 at input / right-singular step / AGOP projection /
output (``nc1_<point>``; ``nc1_official_<point>`` in the official scripts' convention),
the trace ratios at the layer's **input**, where ``nc_nn_ratio.py`` takes them
(``phiX = fmap(train_X)`` for layer ``l``, lines 355-361 at eee0604):
``within_total`` = ``tr(Sigma_W)/tr(Sigma_T)`` (the same in both conventions) and
``between_total_official`` = ``C tr(Sigma_B)/tr(Sigma_T)`` (the script's convention,
``CollapseMetrics.between_total_official``), the NFA correlations, and the train loss and
accuracies; ``OUT/training_seeds.png`` draws them.
"""

from __future__ import annotations

import dataclasses
import os

from dnc_jax.conventions import convention_header, nc1_key
from dnc_jax.experiments.mlp import run_mlp
from dnc_jax.experiments.seeds import checked_seeds, mean_std, seed_dir
from dnc_jax.figures import plot_training_seeds
from dnc_jax.nets.measurements import POINTS, EpochRecord, HeadLayerRecord
from dnc_jax.records import atomic_write_csv, atomic_write_json, ensure_writable

SCALARS = ("train_loss", "train_accuracy", "test_accuracy")


def _layer_values(rec: HeadLayerRecord) -> dict:
    values = {f"nc1_{p}": rec.at(p).nc1 for p in POINTS}
    values.update({f"nc1_official_{p}": rec.at(p).nc1_official for p in POINTS})
    inputs = rec.input  # where nc_nn_ratio.py takes its traces (module docstring)
    values["within_total"] = inputs.within_total_official
    values["between_total_official"] = inputs.between_total_official
    values["nfa_sqrt_agop"] = rec.nfa_sqrt_agop
    values["nfa_agop"] = rec.nfa_agop
    return values


def aggregate_measurements(runs: list[list[EpochRecord]]) -> list[dict]:
    """Mean and std over runs at each measurement epoch that every run has reached.

    Args:
      runs: per seed, its ``measurements`` (``run_mlp``'s records).

    Returns:
      One dict per epoch: ``epoch``, ``seeds``, each of ``SCALARS`` as ``{"mean", "std"}``
      (``None`` where a run has none), and ``layers``: per head layer, ``layer`` and
      ``{"mean", "std"}`` of each value (module docstring).
    """
    count = min((len(r) for r in runs), default=0)
    summary = []
    for i in range(count):
        recs = [r[i] for r in runs]
        epochs = {m.epoch for m in recs}
        if len(epochs) != 1:
            raise ValueError(f"The runs measured different epochs: {sorted(epochs)}.")
        entry: dict = {"epoch": recs[0].epoch, "seeds": len(recs)}
        entry.update({k: mean_std([getattr(m, k) for m in recs]) for k in SCALARS})
        layers = []
        for layer in range(len(recs[0].layers or [])):
            values = [_layer_values((m.layers or [])[layer]) for m in recs]
            layers.append({"layer": layer, **{k: mean_std([v[k] for v in values])
                                              for k in values[0]}})
        entry["layers"] = layers
        summary.append(entry)
    return summary


def aggregate_losses(histories: list[list[EpochRecord]]) -> list[dict]:
    """Per epoch that every run has reached: ``{"epoch", "train_loss": {"mean", "std"}}``
    (``run_mlp``'s ``history``, one entry per epoch)."""
    count = min((len(h) for h in histories), default=0)
    return [{"epoch": histories[0][i].epoch,
             "train_loss": mean_std([h[i].train_loss for h in histories])}
            for i in range(count)]


def mlp_summary_table(summary: list[dict], script: str | None = None) -> str:
    """At the last common measurement, per head layer: NC1 mean +- std at the four points
    (in ``script``'s convention, as ``deep_rfm_table``) and the NFA correlation (square
    root of the AGOP)."""
    last = summary[-1]
    acc = last["train_accuracy"]
    prefix = nc1_key(script) + "_"
    lines = [convention_header(script),
             f"epoch {last['epoch']}, {last['seeds']} seeds: train acc "
             f"{acc['mean']:.4f} +- {acc['std']:.4f}",
             f"{'layer':>5} " + " ".join(f"{'nc1 ' + p:>20}" for p in POINTS)
             + f" {'NFA sqrt':>16}"]
    for rec in last["layers"]:
        cells = " ".join(f"{rec[prefix + p]['mean']:>10.4g} +- {rec[prefix + p]['std']:<6.2g}"
                         for p in POINTS)
        nfa = rec["nfa_sqrt_agop"]
        lines.append(f"{rec['layer']:>5} {cells} {nfa['mean']:>8.3f} +- {nfa['std']:.3f}")
    return "\n".join(lines)


def _summary_rows(summary: list[dict]) -> list[dict]:
    rows = []
    for entry in summary:
        for rec in entry["layers"]:
            row = {"epoch": entry["epoch"], "seeds": entry["seeds"], "layer": rec["layer"]}
            for key in SCALARS:
                if entry[key] is not None:
                    row[f"{key}_mean"], row[f"{key}_std"] = entry[key]["mean"], entry[key]["std"]
            for key, stats in rec.items():
                if key != "layer":
                    row[f"{key}_mean"], row[f"{key}_std"] = stats["mean"], stats["std"]
            rows.append(row)
    return rows


def run_mlp_seeds(out: str, seeds: tuple[int, ...], *, config, progress: bool = True,
                  script: str | None = None, **run_options) -> list[dict]:
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
    summary = aggregate_measurements(runs)
    losses = aggregate_losses(histories)
    atomic_write_json(os.path.join(out, "summary.json"),
                      {"seeds": list(seeds), "config": dataclasses.asdict(config) | {"seed": None},
                       "measurements": summary, "losses": losses})
    atomic_write_csv(os.path.join(out, "summary.csv"), _summary_rows(summary))
    head = "MLP" if config.backbone == "none" else f"{config.backbone} + MLP head"
    plot_training_seeds(summary, losses, os.path.join(out, "training_seeds.png"),
                        f"{head} on {run_options.get('dataset', 'mnist5k')}, seeds {list(seeds)}",
                        script)
    return summary
