"""Every figure this library draws (matplotlib, Agg backend: no display needed), each a
function of records already computed: per-layer collapse, training curves with seed
bands, the grokking and multi-index runs, and the paper's Deep RFM figures (collapse with
seed bands, class-mean Gram matrices, AGOP spectra). Reading run folders and choosing what
to draw is ``experiments.run_figures``' job."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dnc_jax.conventions import nc1_key, nc1_label  # noqa: E402
from dnc_jax.layer_records import LayerRecord, LayerSummary, MeanStd  # noqa: E402
from dnc_jax.nets.measurements import POINTS, EpochRecord  # noqa: E402
from dnc_jax.nets.summaries import EpochSummary, LossSummary  # noqa: E402
from dnc_jax.records import atomic_write_bytes  # noqa: E402

if TYPE_CHECKING:  # annotations only: the follow-ups import the kernel machinery
    from dnc_jax.followups.grokking import GrokkingIteration
    from dnc_jax.followups.multi_index import MultiIndexSize

FORMATS = ("png", "pdf", "svg")


def save_figure(fig, path: str) -> None:
    """Write ``fig`` atomically in the format named by ``path``'s extension (PNG, PDF, SVG)."""
    fmt = path.rsplit(".", 1)[-1].lower()
    if fmt not in FORMATS:
        raise ValueError(f"figure format must be one of {FORMATS}; got {path!r}.")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def finish_layer_axes(fig, axes, labels: tuple[str, ...], path: str, title: str) -> None:
    """Log-scale metric-by-layer axes: labels, grid, legend on the first, title; saved."""
    for ax, label in zip(axes, labels, strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    save_figure(fig, path)


def plot_layer_collapse(layers: list[LayerRecord], points: tuple[str, ...], path: str, title: str,
                        script: str | None = None) -> None:
    """NC1 (in the convention of the official ``script`` a preset reproduces, else ours)
    and NC2 per layer on a log scale, one line per measurement point."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = [rec.layer for rec in layers]
    for ax, metric in zip(axes, (nc1_key(script), "nc2"), strict=True):
        for point in points:
            ax.plot(x, [getattr(rec.at(point), metric) for rec in layers], marker="o",
                    label=point)
    finish_layer_axes(fig, axes, (nc1_label(script), "NC2"), path, title)


def plot_training(measurements: list[EpochRecord], path: str, title: str,
                  script: str | None = None) -> None:
    """Per layer over epochs: NC1 at input / right-singular step / AGOP projection / output
    (in the convention of the official ``script`` a preset reproduces, else ours), and the
    two NFA correlations."""
    layers = [m.layers or [] for m in measurements]
    num_layers = len(layers[-1])
    fig, axes = plt.subplots(2, num_layers, figsize=(3.2 * num_layers, 6), squeeze=False)
    epochs = [m.epoch for m in measurements]
    for layer in range(num_layers):
        ax = axes[0, layer]
        for point in POINTS:
            ax.plot(epochs, [getattr(m[layer].at(point), nc1_key(script)) for m in layers],
                    label=point)
        ax.set_yscale("log")
        ax.set_title(f"layer {layer}: {nc1_label(script)}")
        ax = axes[1, layer]
        for key in ("nfa_sqrt_agop", "nfa_agop"):
            ax.plot(epochs, [getattr(m[layer], key) for m in layers], label=key)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("epoch")
        ax.set_title(f"layer {layer}: NFA corr.")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def _band(ax, x, stats: list[MeanStd], label, log=False, **style):
    mean = np.array([s.mean for s in stats])
    std = np.array([s.std for s in stats])
    lower = np.maximum(mean - std, mean / 20) if log else mean - std  # as gen_nn_plots.py
    ax.plot(x, mean, label=label, **style)
    ax.fill_between(x, lower, mean + std, alpha=0.15, **style)


def plot_training_seeds(summary: list[EpochSummary], losses: list[LossSummary], path: str,
                        title: str, script: str | None = None) -> None:
    """Per head layer over epochs, mean with a +- std band: NC1 at the four points (log; in
    the convention of the official ``script`` a preset reproduces, else ours),
    ``tr(Sigma_W)/tr(Sigma_T)`` and ``tr(Sigma_B)/tr(Sigma_T)`` at the layer's input, the
    latter in the official scripts' convention (``C`` times ours; log), the NFA
    correlations; and a last column with the train loss of every epoch (``losses``, log)
    and the accuracies at the measurements."""
    epochs = [e.epoch for e in summary]
    num_layers = len(summary[-1].layers)
    key = nc1_key(script)
    fig, axes = plt.subplots(3, num_layers + 1, figsize=(3.2 * (num_layers + 1), 8.4),
                             squeeze=False)
    for layer in range(num_layers):
        recs = [e.layers[layer] for e in summary]
        for point in POINTS:
            _band(axes[0, layer], epochs, [getattr(r, key)[point] for r in recs], point,
                  log=True)
        for name, label in (("within_total", "tr(S_W)/tr(S_T)"),
                            ("between_total_official", "tr(S_B)/tr(S_T), official")):
            _band(axes[1, layer], epochs, [getattr(r, name) for r in recs], label, log=True)
        for name in ("nfa_sqrt_agop", "nfa_agop"):
            _band(axes[2, layer], epochs, [getattr(r, name) for r in recs], name)
        axes[0, layer].set_title(f"layer {layer}: {nc1_label(script)}")
        axes[1, layer].set_title(f"layer {layer}: input traces")
        axes[2, layer].set_title(f"layer {layer}: NFA corr.")
        axes[0, layer].set_yscale("log")
        axes[1, layer].set_yscale("log")
        axes[2, layer].set_ylim(-0.05, 1.05)
        axes[2, layer].set_xlabel("epoch")
    side = axes[:, num_layers]
    _band(side[0], [e.epoch for e in losses], [e.train_loss for e in losses],
          "train loss", log=True)
    side[0].set_yscale("log")
    side[0].set_title("train loss")
    for name in ("train_accuracy", "test_accuracy"):
        if all(getattr(e, name) is not None for e in summary):
            _band(side[1], epochs, [getattr(e, name) for e in summary], name)
    side[1].set_title("accuracy")
    side[2].axis("off")
    for ax in (axes[0, 0], axes[1, 0], axes[2, 0], side[1]):
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_grokking(records: list[GrokkingIteration], path: str, title: str) -> None:
    """Over RFM iterations: train / test accuracy, and the metric's circulant deviation
    (``ab`` block) with its alignment to the final metric (once set)."""
    its = [r.iter for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(its, [r.train_accuracy for r in records], "--", color="0.5", label="train")
    axes[0].plot(its, [r.test_accuracy for r in records], "-", color="k", label="test")
    axes[0].set_ylim(-0.03, 1.03)
    axes[0].set_ylabel("accuracy")
    axes[1].plot(its, [r.circulant_deviation for r in records], "-", color="k",
                 label="circulant deviation")
    if all(r.alignment is not None for r in records):
        axes[1].plot(its, [r.alignment for r in records], "--", color="0.5",
                     label="alignment with final")
    for ax in axes:
        ax.set_xlabel("RFM iteration")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def plot_matrices(matrices: list, labels: list[str], path: str, title: str) -> None:
    """Heatmaps side by side (each with its own symmetric colour range, grayscale)."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.4 * len(matrices), 3.4), squeeze=False)
    for ax, A, label in zip(axes[0], matrices, labels, strict=True):
        vmax = float(abs(A).max()) or 1.0
        ax.imshow(A, cmap="gray", vmin=-vmax, vmax=vmax)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    save_figure(fig, path)


def plot_spectra(spectra: list, labels: list[str], path: str, title: str, xlabel: str) -> None:
    """Several nonnegative spectra as lines with markers, on a log scale."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    styles = ("-", "--", ":", "-.")
    for i, (s, label) in enumerate(zip(spectra, labels, strict=True)):
        ax.plot(range(len(s)), s, styles[i % 4], color=str(0.6 * i / max(len(spectra) - 1, 1)),
                marker="o", markersize=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    save_figure(fig, path)


def plot_multi_index(sizes: list[MultiIndexSize], path: str, title: str) -> None:
    """Left: per step, the AGOP's distance to the hidden subspace, one line per ``n``.
    Right: after the last step, the distances and ``1 - captured`` against ``n`` (log)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, entry in enumerate(sizes):
        recs = entry.records
        axes[0].plot([r.step for r in recs], [r.leading_distance for r in recs],
                     marker="o", color=str(0.7 * i / max(len(sizes) - 1, 1)),
                     label=f"n = {entry.n}")
    axes[0].set_xlabel("RFM step")
    axes[0].set_ylabel("leading eigenvector's distance to span(U)")
    ns = [e.n for e in sizes]
    last = [e.records[-1] for e in sizes]
    first = [e.records[0] for e in sizes]
    axes[1].plot(ns, [r.leading_distance for r in last], "-o", color="k",
                 label="leading eigenvector, last step")
    axes[1].plot(ns, [r.leading_distance for r in first], "--o", color="0.5",
                 label="leading eigenvector, step 0 (kernel ridge)")
    axes[1].plot(ns, [r.subspace_distance for r in last], ":s", color="k",
                 label="top-r eigenspace, last step")
    axes[1].plot(ns, [1.0 - r.captured for r in last], "-.^", color="0.4",
                 label="1 - captured, last step")
    axes[1].axhline(last[0].random_baseline, color="0.7", lw=1, label="random subspace")
    axes[1].set_xscale("log")
    axes[1].minorticks_off()
    axes[1].set_xticks(ns, [str(n) for n in ns])
    axes[1].set_xlabel("n (training samples)")
    for ax in axes:
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_cnfa(layers: list, path: str, title: str) -> None:
    """Left: per layer, the CNFA correlation (the official cosine of the filter covariance
    and the patch AGOP) at initialisation and after training, mean and std over seeds.
    Right: NC1 at each layer's output, the same way (log scale). ``layers``: records with
    ``path`` and ``MeanStd`` fields ``cosine_init``, ``cosine_trained``, ``nc1_init``,
    ``nc1_trained`` (``experiments.cnfa.LayerSummary``; not imported: the experiments
    import this module)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(layers))
    names = [r.path for r in layers]
    for ax, (init, trained), label in (
            (axes[0], ("cosine_init", "cosine_trained"), "CNFA correlation (cosine)"),
            (axes[1], ("nc1_init", "nc1_trained"), "NC1 at the layer's output")):
        for key, style, colour, text in ((init, "--o", "0.55", "initialisation"),
                                        (trained, "-s", "0.0", "trained")):
            stats = [getattr(r, key) for r in layers]
            ax.errorbar(x, [m.mean for m in stats], yerr=[m.std for m in stats], fmt=style,
                        color=colour, capsize=3, label=text)
        ax.set_xticks(x, names, rotation=30, fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.suptitle(title)
    save_figure(fig, path)


# ------------------------------------------------ the paper's Deep RFM figures

# line, marker and grey of each Deep RFM measurement point, readable in greyscale
STYLES = {"input": ("-", "o", "0.0"), "projected": ("--", "s", "0.35"),
          "output": (":", "^", "0.6")}


def plot_collapse_bands(summary: list[LayerSummary], path: str, title: str,
                        script: str | None = None) -> None:
    """NC1 (in the convention of the official ``script`` a preset reproduces, else ours)
    and NC2 per layer, mean and seed band, one line per measurement point."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = [e.layer for e in summary]
    for ax, metric in zip(axes, (nc1_key(script), "nc2"), strict=True):
        for point, (line, marker, grey) in STYLES.items():
            mean, std = np.array([e.at(point)[metric] for e in summary], dtype=np.float64).T
            ax.plot(x, mean, line, marker=marker, color=grey, label=point)
            ax.fill_between(x, np.maximum(mean - std, mean * 1e-3), mean + std, color=grey,
                            alpha=0.2, lw=0)
    finish_layer_axes(fig, axes, (nc1_label(script), "NC2"), path, title)


def plot_grams(grams: np.ndarray, path: str, title: str, shown: int = 6) -> None:
    """The class-mean Gram matrices of up to ``shown`` evenly spaced layers."""
    layers = sorted({int(round(v)) for v in np.linspace(0, len(grams) - 1, min(shown, len(grams)))})
    fig, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers), 2.8), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        ax.imshow(grams[layer], cmap="gray", vmin=-1, vmax=1)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    save_figure(fig, path)


def plot_agop_spectra(layers: list[LayerRecord], path: str, title: str) -> None:
    """Each layer's AGOP spectrum, normalised by its largest eigenvalue."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    last = max(len(layers) - 1, 1)
    for rec in layers:
        spec = rec.agop.eigenvalues()
        spec = spec / spec[0]
        label = f"layer {rec.layer}" if rec.layer in (0, last // 2, last) else None
        ax.plot(np.arange(1, len(spec) + 1), np.maximum(spec, 1e-12),
                color=str(0.75 * rec.layer / last), lw=1, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue / largest")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    save_figure(fig, path)
