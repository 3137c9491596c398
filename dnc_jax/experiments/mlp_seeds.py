"""Several seeds of one network training: one resumable ``run_mlp`` per seed, aggregated
per measurement epoch, and the paper's training-curve figures with bands (mean +- std over
seeds, as ``gen_nn_plots.py`` of ``dmbeaglehole/neural_collapse_rfm`` draws them).

``OUT/seed-K/`` holds seed ``K``'s run; ``OUT/summary.json`` / ``summary.csv`` hold, per
measurement epoch and head layer, the mean and standard deviation (``ddof = 0``) over the
seeds of: NC1 at input / right-singular step / AGOP projection / output, the output's
``tr(Sigma_W)/tr(Sigma_T)`` and ``tr(Sigma_B)/tr(Sigma_T)``, the NFA correlations, and the
train loss and accuracies; ``OUT/training_seeds.png`` draws them.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from dnc_jax.experiments.mlp import POINTS, run_mlp
from dnc_jax.experiments.seeds import mean_std, seed_dir
from dnc_jax.plots import plt, save_figure
from dnc_jax.records import atomic_write_csv, atomic_write_json, ensure_writable

SCALARS = ("train_loss", "train_accuracy", "test_accuracy")


def _layer_values(rec: dict) -> dict:
    out = rec["output"]
    values = {f"nc1_{p}": rec[p]["nc1"] for p in POINTS}
    values["within_total"] = out["trace_within"] / out["trace_total"]
    values["between_total"] = out["trace_between"] / out["trace_total"]
    values["nfa_sqrt_agop"] = rec["nfa_sqrt_agop"]
    values["nfa_agop"] = rec["nfa_agop"]
    return values


def aggregate_measurements(runs: list[list[dict]]) -> list[dict]:
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
        epochs = {m["epoch"] for m in recs}
        if len(epochs) != 1:
            raise ValueError(f"The runs measured different epochs: {sorted(epochs)}.")
        entry = {"epoch": recs[0]["epoch"], "seeds": len(recs)}
        entry.update({k: mean_std([m[k] for m in recs]) for k in SCALARS})
        layers = []
        for layer in range(len(recs[0]["layers"])):
            values = [_layer_values(m["layers"][layer]) for m in recs]
            layers.append({"layer": layer, **{k: mean_std([v[k] for v in values])
                                              for k in values[0]}})
        entry["layers"] = layers
        summary.append(entry)
    return summary


def aggregate_losses(histories: list[list[dict]]) -> list[dict]:
    """Per epoch that every run has reached: ``{"epoch", "train_loss": {"mean", "std"}}``
    (``run_mlp``'s ``history``, one entry per epoch)."""
    count = min((len(h) for h in histories), default=0)
    return [{"epoch": histories[0][i]["epoch"],
             "train_loss": mean_std([h[i]["train_loss"] for h in histories])}
            for i in range(count)]


def mlp_summary_table(summary: list[dict]) -> str:
    """At the last common measurement, per head layer: NC1 mean +- std at the four points
    and the NFA correlation (square root of the AGOP)."""
    last = summary[-1]
    acc = last["train_accuracy"]
    lines = [f"epoch {last['epoch']}, {last['seeds']} seeds: train acc "
             f"{acc['mean']:.4f} +- {acc['std']:.4f}",
             f"{'layer':>5} " + " ".join(f"{'nc1 ' + p:>20}" for p in POINTS)
             + f" {'NFA sqrt':>16}"]
    for rec in last["layers"]:
        cells = " ".join(f"{rec['nc1_' + p]['mean']:>10.4g} +- {rec['nc1_' + p]['std']:<6.2g}"
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


def _band(ax, x, stats, label, log=False, **style):
    mean = np.array([s["mean"] for s in stats])
    std = np.array([s["std"] for s in stats])
    lower = np.maximum(mean - std, mean / 20) if log else mean - std  # as gen_nn_plots.py
    ax.plot(x, mean, label=label, **style)
    ax.fill_between(x, lower, mean + std, alpha=0.15, **style)


def plot_training_seeds(summary: list[dict], losses: list[dict], path: str, title: str) -> None:
    """Per head layer over epochs, mean with a +- std band: NC1 at the four points (log),
    ``tr(Sigma_W)/tr(Sigma_T)`` and ``tr(Sigma_B)/tr(Sigma_T)`` of the output (log), the NFA
    correlations; and a last column with the train loss of every epoch (``losses``, log)
    and the accuracies at the measurements."""
    epochs = [e["epoch"] for e in summary]
    num_layers = len(summary[-1]["layers"])
    fig, axes = plt.subplots(3, num_layers + 1, figsize=(3.2 * (num_layers + 1), 8.4),
                             squeeze=False)
    for layer in range(num_layers):
        recs = [e["layers"][layer] for e in summary]
        for point in POINTS:
            _band(axes[0, layer], epochs, [r["nc1_" + point] for r in recs], point, log=True)
        for key, label in (("within_total", "tr(S_W)/tr(S_T)"),
                           ("between_total", "tr(S_B)/tr(S_T)")):
            _band(axes[1, layer], epochs, [r[key] for r in recs], label, log=True)
        for key in ("nfa_sqrt_agop", "nfa_agop"):
            _band(axes[2, layer], epochs, [r[key] for r in recs], key)
        axes[0, layer].set_title(f"layer {layer}: NC1")
        axes[1, layer].set_title(f"layer {layer}: output traces")
        axes[2, layer].set_title(f"layer {layer}: NFA corr.")
        axes[0, layer].set_yscale("log")
        axes[1, layer].set_yscale("log")
        axes[2, layer].set_ylim(-0.05, 1.05)
        axes[2, layer].set_xlabel("epoch")
    side = axes[:, num_layers]
    _band(side[0], [e["epoch"] for e in losses], [e["train_loss"] for e in losses],
          "train loss", log=True)
    side[0].set_yscale("log")
    side[0].set_title("train loss")
    for key in ("train_accuracy", "test_accuracy"):
        if all(e[key] is not None for e in summary):
            _band(side[1], epochs, [e[key] for e in summary], key)
    side[1].set_title("accuracy")
    side[2].axis("off")
    for ax in (axes[0, 0], axes[1, 0], axes[2, 0], side[1]):
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def run_mlp_seeds(out: str, seeds: tuple[int, ...], *, config, progress: bool = True,
                  **run_options) -> list[dict]:
    """``run_mlp`` once per seed into ``OUT/seed-K`` (each resuming on its own), then the
    aggregate; returns the summary (also written to ``summary.json`` / ``.csv`` and drawn
    in ``training_seeds.png``)."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one; got {seeds}.")
    config.validate()
    ensure_writable(out)
    runs, histories = [], []
    for seed in seeds:
        results = run_mlp(seed_dir(out, seed), config=dataclasses.replace(config, seed=seed),
                          progress=progress, **run_options)
        runs.append(results["measurements"])
        histories.append(results["history"])
    summary = aggregate_measurements(runs)
    losses = aggregate_losses(histories)
    atomic_write_json(os.path.join(out, "summary.json"),
                      {"seeds": list(seeds), "config": dataclasses.asdict(config) | {"seed": None},
                       "measurements": summary, "losses": losses})
    atomic_write_csv(os.path.join(out, "summary.csv"), _summary_rows(summary))
    head = "MLP" if config.backbone == "none" else f"{config.backbone} + MLP head"
    plot_training_seeds(summary, losses, os.path.join(out, "training_seeds.png"),
                        f"{head} on {run_options.get('dataset', 'mnist5k')}, seeds {list(seeds)}")
    return summary
