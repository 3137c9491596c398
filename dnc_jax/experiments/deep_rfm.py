"""The resumable Deep RFM run behind ``dnc-jax run`` and ``dnc-jax deep-rfm``."""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np
from tqdm.auto import tqdm

from dnc_jax.deep_rfm import DeepRFMConfig, LayerState, deep_rfm_layers
from dnc_jax.experiments.common import load_prepared
from dnc_jax.plots import plot_layer_collapse
from dnc_jax.records import (
    RunDirectory,
    atomic_save_npz,
    atomic_write_csv,
    ensure_writable,
    flatten_metrics,
)

TABLE_METRICS = ("nc1", "nc2")
POINTS = ("input", "projected", "output")
GRAM_PER_CLASS = 20  # samples per class in each layer's saved Gram matrix


def deep_rfm_table(layers: list[dict]) -> str:
    """A fixed-width per-layer table: NC1 / NC2 at the three points and the accuracies
    (with the refitted predictor's test accuracy when the run recorded it)."""
    refit = bool(layers) and "refit_test_accuracy" in layers[0]
    head = f"{'layer':>5} " + " ".join(
        f"{p[:4] + ' ' + m:>12}" for m in TABLE_METRICS for p in POINTS
    ) + f" {'train acc':>9} {'test acc':>8}" + (f" {'refit test':>10}" if refit else "") \
        + f" {'sec':>6}"
    lines = [head]

    def acc(value, width):
        return f"{'' if value is None else f'{value:.4f}':>{width}}"

    for rec in layers:
        cells = " ".join(f"{rec[p][m]:>12.4g}" for m in TABLE_METRICS for p in POINTS)
        extra = f" {acc(rec['refit_test_accuracy'], 10)}" if refit else ""
        lines.append(f"{rec['layer']:>5} {cells} {rec['train_accuracy']:>9.4f} "
                     f"{acc(rec['test_accuracy'], 8)}{extra} {rec['seconds']:>6.1f}")
    return "\n".join(lines)


def gram_indices(y, num_classes: int, per_class: int = GRAM_PER_CLASS):
    """The first ``per_class`` training rows of each class, class by class (the rows of
    each layer's saved Gram matrix)."""
    y = np.asarray(y)
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(num_classes)])


def feature_gram(X, idx) -> np.ndarray:
    """Gram matrix of rows ``idx`` of ``X`` after scaling rows to unit norm, centring by the
    mean of all rows and scaling to unit norm again (the paper's first figure); float32."""
    X = np.asarray(X, dtype=np.float64)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
    Z = X[idx] - X.mean(axis=0)
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-300)
    return (Z @ Z.T).astype(np.float32)


def _deep_rfm_csv_rows(layers: list[dict]) -> list[dict]:
    rows = []
    for rec in layers:
        row = {k: rec[k] for k in ("layer", "input_dim", "train_accuracy", "test_accuracy", "seconds")}
        row.update({k: rec[k] for k in ("refit_train_accuracy", "refit_test_accuracy") if k in rec})
        row["agop_effective_rank"] = rec["agop"]["effective_rank"]
        for point in POINTS:
            row.update(flatten_metrics(point, rec[point]))
        rows.append(row)
    return rows


def run_deep_rfm(
    out: str,
    *,
    dataset: str = "mnist5k",
    n: int | None = None,
    n_test: int | None = None,
    data_dir: str | None = None,
    config: DeepRFMConfig = DeepRFMConfig(),
    progress: bool = True,
    stop_after: int | None = None,
    mesh=None,
    prepare_options: dict | None = None,
    download: bool = False,
) -> dict:
    """Deep RFM on ``dataset`` into ``out`` (resuming); returns the results dict.

    ``stop_after`` stops after that many layers of this call (to test interruption);
    ``mesh`` shards the rows over its devices (the results record how many). In a
    multi-process run every process computes and only process 0 writes.
    ``prepare_options`` go to ``prepare`` (``sort_by_class``, ``test_statistics``, ...).
    """
    config.validate()
    ensure_writable(out)  # before any work
    data = load_prepared(dataset, n, n_test, data_dir, config.seed, prepare_options, download)
    run_config = {"experiment": "deep_rfm", "dataset": dataset, "n": int(len(data.y_train)),
                  "n_test": 0 if data.y_test is None else int(len(data.y_test)),
                  **dataclasses.asdict(config),
                  "prepare": prepare_options or {},
                  "devices": 1 if mesh is None else int(mesh.devices.size),
                  "processes": jax.process_count()}
    run = RunDirectory(out, run_config, "layers")
    results, state = run.resume()
    start = None
    if state is not None:
        start = LayerState(len(results["layers"]), state["X_train"], state.get("X_test"))
    layers = results["layers"]
    extras_path = os.path.join(out, "extras.npz")
    grams = []
    if layers and os.path.exists(extras_path):
        with np.load(extras_path) as saved:
            grams = list(saved["grams"][: len(layers)])
    idx = gram_indices(data.y_train, data.num_classes)
    layer_input = data.X_train if state is None else state["X_train"]
    bar = tqdm(total=config.depth, initial=len(layers), desc="deep RFM", disable=not progress,
               file=sys.stderr)
    done = 0
    for record, next_state in deep_rfm_layers(
        data.X_train, data.y_train, data.X_test, data.y_test, config=config, start=start,
        num_classes=data.num_classes, mesh=mesh,
    ):
        layers.append(record)
        state = next_state.to_host()
        grams.append(feature_gram(layer_input, idx))
        layer_input = state["X_train"]
        if jax.process_index() != 0:
            continue
        run.commit(results, state)
        atomic_save_npz(extras_path, grams=np.stack(grams), gram_labels=data.y_train[idx])
        atomic_write_csv(os.path.join(out, "layers.csv"), _deep_rfm_csv_rows(layers))
        plot_layer_collapse(layers, POINTS,
                            os.path.join(out, "collapse.png"), f"Deep RFM on {dataset}")
        bar.update(1)
        bar.set_postfix(layer=record["layer"], nc1=f"{record['output']['nc1']:.3g}")
        done += 1
        if stop_after is not None and done >= stop_after:
            break
    bar.close()
    return results
