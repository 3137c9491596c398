"""The resumable MLP training run behind ``dnc-jax mlp``."""

from __future__ import annotations

import dataclasses
import os

from dnc_jax.conventions import convention_header, nc1_key
from dnc_jax.experiments.common import load_prepared
from dnc_jax.figures import plot_training
from dnc_jax.nets.analysis import POINTS
from dnc_jax.records import RunDirectory, atomic_write_csv, ensure_writable, flatten_metrics
from dnc_jax.run_loop import resumable_steps


def _share(value) -> str:
    return "" if value is None else f"{value:.3f}"


def mlp_table(measurement: dict, script: str | None = None) -> str:
    """Per head layer at one measurement: NC1 at input / right-singular step / AGOP
    projection / output (in ``script``'s convention, as ``deep_rfm_table``), the
    right-singular and AGOP shares, the NFA correlations."""
    key = nc1_key(script)
    lines = [
        convention_header(script),
        f"epoch {measurement['epoch']}: train loss {measurement['train_loss']:.4g}, train acc "
        f"{measurement['train_accuracy']:.4f}"
        + ("" if measurement["test_accuracy"] is None
           else f", test acc {measurement['test_accuracy']:.4f}"),
        f"{'layer':>5} {'nc1 input':>10} {'nc1 right':>10} {'nc1 agop':>10} {'nc1 output':>10} "
        f"{'right share':>11} {'agop share':>10} {'NFA sqrt':>9} {'NFA agop':>9}",
    ]
    for rec in measurement["layers"]:
        nc1 = " ".join(f"{rec[p][key]:>10.4g}" for p in POINTS)
        lines.append(
            f"{rec['layer']:>5} {nc1} {_share(rec['right_share']):>11} "
            f"{_share(rec['agop_share']):>10} {rec['nfa_sqrt_agop']:>9.3f} {rec['nfa_agop']:>9.3f}"
        )
    return "\n".join(lines)


def _mlp_csv_rows(measurements: list[dict]) -> list[dict]:
    rows = []
    for m in measurements:
        for rec in m["layers"]:
            row = {k: m[k] for k in ("epoch", "train_loss", "train_accuracy", "test_accuracy")}
            row.update({k: rec[k] for k in ("layer", "nfa_sqrt_agop", "nfa_agop", "right_share",
                                            "agop_share")})
            for point in POINTS:
                row.update(flatten_metrics(point, rec[point]))
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
) -> dict:
    """Train the paper's MLP on ``dataset`` into ``out``, measuring every ``measure_every``
    epochs; checkpoints at each measurement and resumes from the last one. ``script``:
    the official script a preset reproduces; the run's figure then draws NC1 in its
    convention (the records hold both).

    ``stop_after`` stops after that many measurements of this call (to test interruption).
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
    results, state = run.resume()
    last_epoch = 0 if state is None else int(state["epoch"])
    results["history"] = [h for h in results.get("history", []) if h["epoch"] <= last_epoch]
    epochs = train_epochs(data.X_train, data.y_train, data.X_test, data.y_test, config=config,
                          measure_X=data.X_train[:m], measure_y=data.y_train[:m], resume=state,
                          image_shape=image_shape)
    for result in resumable_steps(
            epochs, total=config.total_epochs, initial=last_epoch, desc="MLP",
            progress=progress, stop_after=stop_after,
            counts=lambda result: result.layers is not None,  # stop_after counts measurements
            postfix=lambda result: {"loss": f"{result.train_loss:.4f}",
                                    "acc": f"{result.train_accuracy:.3f}"}):
        summary = {"epoch": result.epoch, "train_loss": result.train_loss,
                   "train_accuracy": result.train_accuracy, "test_accuracy": result.test_accuracy}
        results["history"].append(summary)
        if result.layers is None:
            continue
        results["measurements"].append({**summary, "layers": result.layers})
        run.commit(results, result.checkpoint)
        atomic_write_csv(os.path.join(out, "measurements.csv"),
                         _mlp_csv_rows(results["measurements"]))
        head = "MLP" if config.backbone == "none" else f"{config.backbone} + MLP head"
        plot_training(results["measurements"], os.path.join(out, "training.png"),
                      f"{head} on {dataset}", script)
    return results
