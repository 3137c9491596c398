"""The resumable MLP training run behind ``dnc-jax mlp``."""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

from dnc_jax.conventions import convention_header, nc1_key
from dnc_jax.experiments.common import load_prepared
from dnc_jax.figures import plot_training
from dnc_jax.nets.measurements import POINTS, EpochRecord
from dnc_jax.records import RunDirectory, atomic_write_csv, ensure_writable, flatten_metrics
from dnc_jax.run_loop import resumable_steps


def _share(value) -> str:
    return "" if value is None else f"{value:.3f}"


class MLPRun(NamedTuple):
    """An ``mlp`` run folder's ``results.json``: the recorded ``config`` (JSON), the
    ``environment``, the ``measurements`` (``EpochRecord`` with ``layers``, one per
    measurement epoch) and the ``history`` (one ``EpochRecord`` per epoch, without)."""

    config: dict
    environment: dict
    measurements: list[EpochRecord]
    history: list[EpochRecord]

    def to_json(self) -> dict:
        """The run as ``results.json`` holds it."""
        return {"config": self.config, "environment": self.environment,
                "measurements": [m.to_json() for m in self.measurements],
                "history": [h.to_json() for h in self.history]}

    @classmethod
    def from_json(cls, data: dict) -> MLPRun:
        """The run from its ``to_json`` form (``history`` may be missing: a fresh run)."""
        return cls(data["config"], data["environment"],
                   [EpochRecord.from_json(m) for m in data["measurements"]],
                   [EpochRecord.from_json(h) for h in data.get("history", [])])


def mlp_table(measurement: EpochRecord, script: str | None = None) -> str:
    """Per head layer at one measurement: NC1 at input / right-singular step / AGOP
    projection / output (in ``script``'s convention, as ``deep_rfm_table``), the
    right-singular and AGOP shares, the NFA correlations."""
    key = nc1_key(script)
    lines = [
        convention_header(script),
        f"epoch {measurement.epoch}: train loss {measurement.train_loss:.4g}, train acc "
        f"{measurement.train_accuracy:.4f}"
        + ("" if measurement.test_accuracy is None
           else f", test acc {measurement.test_accuracy:.4f}"),
        f"{'layer':>5} {'nc1 input':>10} {'nc1 right':>10} {'nc1 agop':>10} {'nc1 output':>10} "
        f"{'right share':>11} {'agop share':>10} {'NFA sqrt':>9} {'NFA agop':>9}",
    ]
    for rec in measurement.layers or []:
        nc1 = " ".join(f"{getattr(rec.at(p), key):>10.4g}" for p in POINTS)
        lines.append(
            f"{rec.layer:>5} {nc1} {_share(rec.right_share):>11} "
            f"{_share(rec.agop_share):>10} {rec.nfa_sqrt_agop:>9.3f} {rec.nfa_agop:>9.3f}"
        )
    return "\n".join(lines)


def _mlp_csv_rows(measurements: list[EpochRecord]) -> list[dict]:
    rows = []
    for m in measurements:
        for rec in m.layers or []:
            row = {"epoch": m.epoch, "train_loss": m.train_loss,
                   "train_accuracy": m.train_accuracy, "test_accuracy": m.test_accuracy,
                   "layer": rec.layer, "nfa_sqrt_agop": rec.nfa_sqrt_agop,
                   "nfa_agop": rec.nfa_agop, "right_share": rec.right_share,
                   "agop_share": rec.agop_share}
            for point in POINTS:
                row.update(flatten_metrics(point, rec.at(point).to_dict()))
            rows.append(row)
    return rows


def image_shape_of(dataset: str, d: int) -> tuple[int, int, int]:
    """``(H, W, C)`` of a dataset's flattened rows: the named image datasets', or for a
    ``.npz`` file a square ``d = s^2`` (one channel) or ``3 s^2`` (three)."""
    from dnc_jax.nets.network import IMAGE_SHAPES

    if dataset in IMAGE_SHAPES:
        return IMAGE_SHAPES[dataset]
    for channels in (1, 3):
        side = int(round((d / channels) ** 0.5))
        if side * side * channels == d:
            return (side, side, channels)
    raise ValueError(f"A backbone needs images: {dataset!r} has {d} features, neither s^2 nor "
                     f"3 s^2.")


def run_mlp(
    out: str,
    *,
    dataset: str = "mnist5k",
    n: int | None = None,
    n_test: int | None = None,
    data_dir: str | None = None,
    config=None,
    measure_n: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    download: bool = False,
    prepare_options: dict | None = None,
    script: str | None = None,
) -> MLPRun:
    """Train the paper's MLP on ``dataset`` into ``out``, measuring every ``measure_every``
    epochs; checkpoints at each measurement and resumes from the last one. ``script``:
    the official script a preset reproduces; the run's figure then draws NC1 in its
    convention (the records hold both).

    ``stop_after`` stops after that many measurements of this call (to test interruption).
    Returns the run (``MLPRun``: its ``to_json()`` is ``out/results.json``).
    """
    from dnc_jax.nets.train import TrainConfig, train_epochs

    config = config or TrainConfig()
    ensure_writable(out)  # before any work, as the other commands
    data = load_prepared(dataset, n, n_test, data_dir, config.seed, prepare_options, download)
    m = len(data.y_train) if measure_n is None else min(measure_n, len(data.y_train))
    image_shape = (None if config.backbone == "none"
                   else image_shape_of(dataset, data.X_train.shape[1]))
    run_config = {"experiment": "mlp", "dataset": dataset, "n": int(len(data.y_train)),
                  "n_test": 0 if data.y_test is None else int(len(data.y_test)),
                  "measure_n": m, "prepare": prepare_options or {},
                  **dataclasses.asdict(config)}
    run = RunDirectory(out, run_config, "measurements")
    saved, state = run.resume()
    results = MLPRun.from_json(saved)
    last_epoch = 0 if state is None else int(state["epoch"])
    results.history[:] = [h for h in results.history if h.epoch <= last_epoch]
    epochs = train_epochs(data.X_train, data.y_train, data.X_test, data.y_test, config=config,
                          measure_X=data.X_train[:m], measure_y=data.y_train[:m], resume=state,
                          image_shape=image_shape)
    for result in resumable_steps(
            epochs, total=config.total_epochs, initial=last_epoch, desc="MLP",
            progress=progress, stop_after=stop_after,
            counts=lambda result: result.record.layers is not None,  # counts measurements
            postfix=lambda result: {"loss": f"{result.record.train_loss:.4f}",
                                    "acc": f"{result.record.train_accuracy:.3f}"}):
        record = result.record
        results.history.append(record._replace(layers=None))
        if record.layers is None:
            continue
        results.measurements.append(record)
        run.commit(results.to_json(), result.checkpoint)
        atomic_write_csv(os.path.join(out, "measurements.csv"),
                         _mlp_csv_rows(results.measurements))
        head = "MLP" if config.backbone == "none" else f"{config.backbone} + MLP head"
        plot_training(results.measurements, os.path.join(out, "training.png"),
                      f"{head} on {dataset}", script)
    return results
