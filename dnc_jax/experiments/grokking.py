"""The resumable grokking run behind ``dnc-jax grokking``: one RFM iteration per step,
the metrics ``M_1 .. M_t`` kept in the state so that a rerun resumes where it stopped."""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import jax
import numpy as np

from dnc_jax.figures import plot_grokking, plot_matrices, plot_spectra
from dnc_jax.followups.grokking import (
    GrokkingConfig,
    GrokkingIteration,
    add_alignment,
    discrete_log_order,
    first_iteration_above,
    fourier_power,
    grokking_steps,
)
from dnc_jax.records import RunDirectory, atomic_write_csv, ensure_writable
from dnc_jax.run_loop import resumable_steps

CSV_KEYS = ("iter", "train_accuracy", "test_accuracy", "train_loss", "test_loss",
            "circulant_deviation", "alignment", "trace")


def grokking_table(records: list[GrokkingIteration], every: int = 5) -> str:
    """Every ``every``-th iteration (and the last): accuracies, test loss, structure."""
    lines = [f"{'iter':>4} {'train acc':>9} {'test acc':>8} {'test loss':>9} "
             f"{'circ. dev.':>10} {'alignment':>9}"]
    shown = [r for r in records if r.iter % every == 0 or r is records[-1]]
    for r in shown:
        align = "" if r.alignment is None else f"{r.alignment:.4f}"
        lines.append(f"{r.iter:>4} {r.train_accuracy:>9.4f} {r.test_accuracy:>8.4f} "
                     f"{r.test_loss:>9.4g} {r.circulant_deviation:>10.4f} {align:>9}")
    return "\n".join(lines)


class GrokkingSummary(NamedTuple):
    """When the test accuracy first passed 50% and 90% (``None``: never), the first and
    last test accuracy, and the ``ab`` block's circulant deviation before and after."""

    first_iter_over_half: int | None
    first_iter_over_nine_tenths: int | None
    final_test_accuracy: float
    initial_test_accuracy: float
    circulant_deviation_first: float
    circulant_deviation_last: float

    @classmethod
    def of(cls, records: list[GrokkingIteration]) -> GrokkingSummary:
        """The summary of a finished run's records."""
        return cls(first_iteration_above(records, "test_accuracy", 0.5),
                   first_iteration_above(records, "test_accuracy", 0.9),
                   records[-1].test_accuracy, records[0].test_accuracy,
                   records[0].circulant_deviation, records[-1].circulant_deviation)

    def to_json(self) -> dict:
        """As ``results.json``'s ``summary`` holds it (the levels in the key names)."""
        return {SUMMARY_KEYS.get(k, k): v for k, v in self._asdict().items()}

    @classmethod
    def from_json(cls, data: dict) -> GrokkingSummary:
        """The summary from its ``to_json`` form."""
        names = {v: k for k, v in SUMMARY_KEYS.items()}
        return cls(**{names.get(k, k): v for k, v in data.items()})


SUMMARY_KEYS = {"first_iter_over_half": "first_iter_test_acc_over_0.5",
                "first_iter_over_nine_tenths": "first_iter_test_acc_over_0.9"}


class GrokkingRun(NamedTuple):
    """A ``grokking`` run folder's ``results.json``: the recorded ``config`` (JSON), the
    ``environment``, one ``GrokkingIteration`` per iteration, and the ``summary`` once
    every iteration ran (``None`` before)."""

    config: dict
    environment: dict
    iterations: list[GrokkingIteration]
    summary: GrokkingSummary | None = None

    def to_json(self) -> dict:
        """The run as ``results.json`` holds it (no ``summary`` key before it is set)."""
        data = {"config": self.config, "environment": self.environment,
                "iterations": [r.to_json() for r in self.iterations]}
        if self.summary is not None:
            data["summary"] = self.summary.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> GrokkingRun:
        """The run from its ``to_json`` form."""
        summary = data.get("summary")
        return cls(data["config"], data["environment"],
                   [GrokkingIteration.from_json(r) for r in data["iterations"]],
                   None if summary is None else GrokkingSummary.from_json(summary))


def _ordered(M: np.ndarray, p: int, op: str) -> np.ndarray:
    """``M`` without its diagonal (as the official heatmaps), in discrete-log order for
    ``*`` and ``/``."""
    A = M - np.diag(np.diag(M))
    if op in ("*", "/"):
        idx = discrete_log_order(p)
        both = np.concatenate([idx, p + idx])
        A = A[np.ix_(both, both)]
    return A


def _figures(out: str, config: GrokkingConfig, records: list[GrokkingIteration],
             metrics: list) -> None:
    title = f"RFM on (a {config.op} b) mod {config.p}, train fraction {config.train_fraction}"
    plot_grokking(records, os.path.join(out, "grokking.png"), title)
    if len(records) < config.iters:
        return
    shown = sorted({0, len(metrics) // 4, len(metrics) // 2, len(metrics) - 1})
    plot_matrices([_ordered(metrics[t], config.p, config.op) for t in shown],
                  [f"M after iteration {t}" for t in shown],
                  os.path.join(out, "agop_heatmaps.png"), title + " (diagonal removed)")
    plot_spectra([fourier_power(metrics[t], config.p, config.op) for t in shown],
                 [f"iteration {t}" for t in shown], os.path.join(out, "agop_fourier.png"),
                 "Fourier power of the metric's a-b block", "frequency k")


def run_grokking(out: str, *, config: GrokkingConfig = GrokkingConfig(), progress: bool = True,
                 stop_after: int | None = None) -> GrokkingRun:
    """RFM grokking into ``out`` (resuming); returns the run (``GrokkingRun``: its
    ``to_json()`` is ``out/results.json``). At the end the records get their ``alignment``
    with the final metric and the run a ``summary``. ``stop_after`` stops after that many
    iterations of this call (to test interruption). A shell call."""
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("grokking runs in float64: call "
                         "jax.config.update('jax_enable_x64', True) first.")
    ensure_writable(out)
    run = RunDirectory(out, {"experiment": "grokking", **dataclasses.asdict(config)}, "iterations")
    saved, state = run.resume()
    results = GrokkingRun.from_json(saved)
    records = results.iterations
    metrics = [] if state is None else list(state["metrics"])
    steps = grokking_steps(config, start=len(records), M=metrics[-1] if metrics else None)
    for record, M in resumable_steps(
            steps, total=config.iters, initial=len(records), desc="grokking RFM",
            progress=progress, stop_after=stop_after,
            postfix=lambda step: {"test_acc": f"{step[0].test_accuracy:.3f}"}):
        records.append(record)
        metrics.append(M)
        if len(records) == config.iters:
            records[:] = add_alignment(records, metrics)
            results = results._replace(summary=GrokkingSummary.of(records))
        run.commit(results.to_json(), {"metrics": np.stack(metrics)})
        atomic_write_csv(os.path.join(out, "iterations.csv"),
                         [{k: getattr(r, k) for k in CSV_KEYS} for r in records])
    if records:
        _figures(out, config, records, metrics)
    return results
