"""Figures of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dnc_jax.records import atomic_write_bytes  # noqa: E402


def _save(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_layer_collapse(layers: list[dict], points: tuple[str, ...], path: str, title: str) -> None:
    """NC1 and NC2 per layer on a log scale, one line per measurement point."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = [rec["layer"] for rec in layers]
    for ax, metric in zip(axes, ("nc1", "nc2"), strict=True):
        for point in points:
            ax.plot(x, [rec[point][metric] for rec in layers], marker="o", label=point)
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel(metric.upper())
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    _save(fig, path)


def plot_training(measurements: list[dict], path: str, title: str) -> None:
    """Per layer over epochs: NC1 at input / right / output, and the two NFA correlations."""
    num_layers = len(measurements[-1]["layers"])
    fig, axes = plt.subplots(2, num_layers, figsize=(3.2 * num_layers, 6), squeeze=False)
    epochs = [m["epoch"] for m in measurements]
    for layer in range(num_layers):
        ax = axes[0, layer]
        for point in ("input", "right", "output"):
            ax.plot(epochs, [m["layers"][layer][point]["nc1"] for m in measurements], label=point)
        ax.set_yscale("log")
        ax.set_title(f"layer {layer}: NC1")
        ax = axes[1, layer]
        for key in ("nfa_sqrt_agop", "nfa_agop"):
            ax.plot(epochs, [m["layers"][layer][key] for m in measurements], label=key)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("epoch")
        ax.set_title(f"layer {layer}: NFA corr.")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
