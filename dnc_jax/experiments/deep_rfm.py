"""The resumable Deep RFM run behind ``dnc-jax run`` and ``dnc-jax deep-rfm``."""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from dnc_jax.conventions import convention_header, nc1_key
from dnc_jax.deep_rfm_files import (
    MODEL_FOLDER,
    PREPARATION_FILE,
    layer_arrays,
    layer_file_name,
    preparation_arrays,
)
from dnc_jax.deep_rfm_model import DeepRFMConfig, LayerState, deep_rfm_layers
from dnc_jax.experiments.common import load_prepared
from dnc_jax.figures import plot_layer_collapse
from dnc_jax.gram import feature_gram, gram_indices
from dnc_jax.layer_records import POINTS, LayerRecord
from dnc_jax.option_fields import recorded_config
from dnc_jax.process_data import load_process_data
from dnc_jax.records import (
    RunDirectory,
    atomic_save_npz,
    atomic_write_csv,
    ensure_writable,
    flatten_metrics,
    read_results,
)
from dnc_jax.run_loop import resumable_steps
from dnc_jax.sharding import (
    Rows,
    data_mesh,
    local_block,
    put_local_rows,
)

TABLE_METRICS = ("nc1", "nc2")


class DeepRFMRun(NamedTuple):
    """A Deep RFM run folder's ``results.json``: the recorded ``config`` (JSON), the
    ``environment`` (``records.environment``) and one ``LayerRecord`` per completed layer."""

    config: dict
    environment: dict
    layers: list[LayerRecord]

    def to_json(self) -> dict:
        """The run as ``results.json`` holds it."""
        return {"config": self.config, "environment": self.environment,
                "layers": [rec.to_json() for rec in self.layers]}

    @classmethod
    def from_json(cls, data: dict) -> DeepRFMRun:
        """The run from its ``to_json`` form."""
        return cls(data["config"], data["environment"],
                   [LayerRecord.from_json(rec) for rec in data["layers"]])

    @classmethod
    def load(cls, run_dir: str) -> DeepRFMRun:
        """The run in ``run_dir`` (its ``results.json``); ``ValueError`` naming the folder
        when it holds another command's run."""
        results = read_results(run_dir)
        if "layers" not in results:
            raise ValueError(f"{run_dir!r} is not a Deep RFM run.")
        return cls.from_json(results)


def deep_rfm_table(layers: list[LayerRecord], script: str | None = None) -> str:
    """A fixed-width per-layer table: NC1 / NC2 at the three points and the accuracies
    (with the refitted predictor's test accuracy when the run recorded it). NC1 in the
    convention of the official ``script`` a preset reproduces, or ours (``None``); the
    first line says which."""
    refit = bool(layers) and layers[0].refitted
    metrics = (nc1_key(script), "nc2")
    head = f"{'layer':>5} " + " ".join(
        f"{p[:4] + ' ' + m:>12}" for m in TABLE_METRICS for p in POINTS
    ) + f" {'train acc':>9} {'test acc':>8}" + (f" {'refit test':>10}" if refit else "") \
        + f" {'sec':>6}"
    lines = [convention_header(script), head]

    def acc(value, width):
        return f"{'' if value is None else f'{value:.4f}':>{width}}"

    for rec in layers:
        cells = " ".join(f"{getattr(rec.at(p), m):>12.4g}" for m in metrics for p in POINTS)
        extra = f" {acc(rec.refit_test_accuracy, 10)}" if refit else ""
        lines.append(f"{rec.layer:>5} {cells} {rec.train_accuracy:>9.4f} "
                     f"{acc(rec.test_accuracy, 8)}{extra} {rec.seconds:>6.1f}")
    return "\n".join(lines)


def _deep_rfm_csv_rows(layers: list[LayerRecord]) -> list[dict]:
    rows = []
    for rec in layers:
        row = {"layer": rec.layer, "input_dim": rec.input_dim,
               "train_accuracy": rec.train_accuracy, "test_accuracy": rec.test_accuracy,
               "seconds": rec.seconds}
        if rec.refitted:
            row.update(refit_train_accuracy=rec.refit_train_accuracy,
                       refit_test_accuracy=rec.refit_test_accuracy)
        row["agop_effective_rank"] = rec.agop.effective_rank
        for point in POINTS:
            row.update(flatten_metrics(point, rec.at(point).to_dict()))
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
    save_model: bool = False,
    script: str | None = None,
) -> DeepRFMRun:
    """Deep RFM on ``dataset`` into ``out`` (resuming); returns the run (``DeepRFMRun``:
    its ``to_json()`` is ``out/results.json``).

    ``script``: the official script a preset reproduces (``"deep_rfm.py"``); the run's
    figure then draws NC1 in its convention (the records hold both).

    ``save_model`` writes each layer of the ``DeepRFM`` as it completes to
    ``out/model/layer-NNNN.npz`` (its centres are the layer's training features: about
    ``n x width`` numbers per layer) and the data's preparation to
    ``out/model/preparation.npz``; ``load_deep_rfm(out)`` reads the model back, and it takes
    raw rows of the data set.

    ``stop_after`` stops after that many layers of this call (to test interruption);
    ``mesh`` shards the rows over its devices (the results record how many).
    ``prepare_options`` go to ``prepare`` (``sort_by_class``, ``test_statistics``, ...).

    In a run of several processes (``jax.distributed``) every process calls this with the
    same arguments; ``mesh`` defaults to all their devices; each process loads, keeps and
    checkpoints only its own rows (``process_data``; ``balanced`` and ``sort_by_class``
    cannot be used there); process 0 writes the results, and ``out`` must be a folder
    they all share.
    """
    if callable(config.features):
        raise ValueError("a run records its configuration in results.json, so its feature "
                         "map must be a name (relu, cosine); call deep_rfm(..., "
                         "features=fn) for a custom map.")
    ensure_writable(out)  # before any work
    if jax.process_count() > 1:
        mesh = data_mesh("all") if mesh is None else mesh
        data = load_process_data(dataset, n, n_test, data_dir, config.seed, prepare_options,
                                 download, mesh)
    else:
        data = load_prepared(dataset, n, n_test, data_dir, config.seed, prepare_options,
                             download)
    n_train = int(len(data.y_train))
    n_test_rows = 0 if data.y_test is None else int(len(data.y_test))
    # memory_budget changes where kernel rows live, not the numbers: a run resumes under
    # another budget, so it is not part of the recorded configuration
    run_config = {"experiment": "deep_rfm", "dataset": dataset, "n": n_train,
                  "n_test": n_test_rows, **recorded_config(config),
                  "prepare": prepare_options or {},
                  "devices": 1 if mesh is None else int(mesh.devices.size),
                  "processes": jax.process_count()}
    if save_model:  # only when set: runs written before the option resume as they were
        run_config["save_model"] = True
    run = RunDirectory(out, run_config, "layers")
    saved, state = run.resume()
    results = DeepRFMRun.from_json(saved)
    layers = results.layers
    start = None
    if state is not None:
        start = LayerState(len(layers), _saved_rows(state["X_train"], n_train, mesh),
                           _saved_rows(state.get("X_test"), n_test_rows, mesh))
    extras_path = os.path.join(out, "extras.npz")
    grams = []
    if layers and os.path.exists(extras_path):
        with np.load(extras_path) as saved:
            grams = list(saved["grams"][: len(layers)])
    idx = gram_indices(data.y_train, data.num_classes)
    layer_input = data.X_train if start is None else start.X_train
    steps = deep_rfm_layers(data.X_train, data.y_train, data.X_test, data.y_test,
                            config=config, start=start, num_classes=data.num_classes, mesh=mesh)
    for record, next_state in resumable_steps(
            steps, total=config.depth, initial=len(layers), desc="deep RFM",
            progress=progress and jax.process_index() == 0, stop_after=stop_after,
            postfix=lambda step: {"layer": step[0].layer, "nc1": f"{step[0].output.nc1:.3g}"}):
        layers.append(record)
        grams.append(feature_gram(layer_input, idx, mesh))
        layer_input = next_state.X_train
        if save_model:  # before the commit: a committed layer always has its file
            assert next_state.fitted is not None  # deep_rfm_layers sets it on every layer
            arrays = layer_arrays(next_state.fitted)  # every process: gathers sharded rows
            preparation = getattr(data, "standardization", None)
            if jax.process_index() == 0 and record.layer == 0 and preparation is not None:
                atomic_save_npz(os.path.join(out, MODEL_FOLDER, PREPARATION_FILE),
                                **preparation_arrays(preparation))
            if jax.process_index() == 0:
                atomic_save_npz(os.path.join(out, MODEL_FOLDER,
                                             layer_file_name(record.layer)), **arrays)
        run.commit(results.to_json(), _state_to_save(next_state))
        if jax.process_index() == 0:
            atomic_save_npz(extras_path, grams=np.stack(grams), gram_labels=data.y_train[idx])
            atomic_write_csv(os.path.join(out, "layers.csv"), _deep_rfm_csv_rows(layers))
            plot_layer_collapse(layers, POINTS,
                                os.path.join(out, "collapse.png"), f"Deep RFM on {dataset}", script)
    return results


def _state_to_save(state: LayerState) -> dict:
    """What this process checkpoints: every row (numpy) in a one-process run, else its own
    block of the padded rows."""
    if jax.process_count() == 1:
        return state.to_host()
    blocks = {}
    for key, X in (("X_train", state.X_train), ("X_test", state.X_test)):
        assert X is None or isinstance(X, Rows)  # a several-process run holds Rows
        blocks[key] = None if X is None else local_block(X.data)
    return blocks


def _saved_rows(saved: np.ndarray | None, n: int, mesh: Mesh | None):
    """A checkpoint's features back: numpy in a one-process run, else ``Rows`` assembled
    from each process's block."""
    if saved is None or jax.process_count() == 1:
        return saved
    assert mesh is not None  # run_deep_rfm sets the mesh of a several-process run
    return Rows(put_local_rows(saved, mesh, n), n)
