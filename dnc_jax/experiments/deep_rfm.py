"""The resumable Deep RFM run behind ``dnc-jax run`` and ``dnc-jax deep-rfm``."""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
from tqdm.auto import tqdm

from dnc_jax.deep_rfm import DeepRFMConfig, LayerState, deep_rfm_layers
from dnc_jax.experiments.common import load_prepared
from dnc_jax.plots import plot_layer_collapse
from dnc_jax.records import RunDirectory, atomic_write_csv, ensure_writable, flatten_metrics

TABLE_METRICS = ("nc1", "nc2")


def deep_rfm_table(layers: list[dict]) -> str:
    """A fixed-width per-layer table: NC1 / NC2 at the three points and the accuracies."""
    head = f"{'layer':>5} " + " ".join(
        f"{p[:4] + ' ' + m:>12}" for m in TABLE_METRICS for p in ("input", "projected", "output")
    ) + f" {'train acc':>9} {'test acc':>8} {'sec':>6}"
    lines = [head]
    for rec in layers:
        cells = " ".join(
            f"{rec[p][m]:>12.4g}" for m in TABLE_METRICS for p in ("input", "projected", "output")
        )
        test = "" if rec["test_accuracy"] is None else f"{rec['test_accuracy']:.4f}"
        lines.append(
            f"{rec['layer']:>5} {cells} {rec['train_accuracy']:>9.4f} {test:>8} {rec['seconds']:>6.1f}"
        )
    return "\n".join(lines)


def _deep_rfm_csv_rows(layers: list[dict]) -> list[dict]:
    rows = []
    for rec in layers:
        row = {k: rec[k] for k in ("layer", "input_dim", "train_accuracy", "test_accuracy", "seconds")}
        row["agop_effective_rank"] = rec["agop"]["effective_rank"]
        for point in ("input", "projected", "output"):
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
) -> dict:
    """Deep RFM on ``dataset`` into ``out`` (resuming); returns the results dict.

    ``stop_after`` stops after that many layers of this call (to test interruption);
    ``mesh`` shards the rows over its devices (the results record how many). In a
    multi-process run every process computes and only process 0 writes.
    """
    config.validate()
    ensure_writable(out)  # before any work
    data = load_prepared(dataset, n, n_test, data_dir, config.seed)
    run_config = {"experiment": "deep_rfm", "dataset": dataset, "n": int(len(data.y_train)),
                  "n_test": int(len(data.y_test)), **dataclasses.asdict(config),
                  "devices": 1 if mesh is None else int(mesh.devices.size),
                  "processes": jax.process_count()}
    run = RunDirectory(out, run_config, "layers")
    results, state = run.resume()
    start = None
    if state is not None:
        start = LayerState(len(results["layers"]), state["X_train"], state.get("X_test"))
    layers = results["layers"]
    bar = tqdm(total=config.depth, initial=len(layers), desc="deep RFM", disable=not progress,
               file=sys.stderr)
    done = 0
    for record, next_state in deep_rfm_layers(
        data.X_train, data.y_train, data.X_test, data.y_test, config=config, start=start,
        num_classes=data.num_classes, mesh=mesh,
    ):
        layers.append(record)
        state = next_state.to_host()
        if jax.process_index() != 0:
            continue
        run.commit(results, state)
        atomic_write_csv(os.path.join(out, "layers.csv"), _deep_rfm_csv_rows(layers))
        plot_layer_collapse(layers, ("input", "projected", "output"),
                            os.path.join(out, "collapse.png"), f"Deep RFM on {dataset}")
        bar.update(1)
        bar.set_postfix(layer=record["layer"], nc1=f"{record['output']['nc1']:.3g}")
        done += 1
        if stop_after is not None and done >= stop_after:
            break
    bar.close()
    return results
