"""Typed records of Deep RFM runs, each with its JSON form (what ``results.json`` and
``summary.json`` hold).

The model yields a ``LayerRecord`` per layer; the run folder, the tables, the CSV, the
figures and the seed aggregate read its fields, never string keys. ``to_json`` gives the
plain dict a run folder stores (key order fixed, Python numbers, ``None`` where not
recorded) and ``from_json`` reads it back, accepting the records of earlier versions
(a spectrum recorded without its full eigenvalue list; no refitted accuracies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from dnc_jax.collapse import CollapseMetrics
from dnc_jax.solvers.ridge import SolveInfo

POINTS = ("input", "projected", "output")  # where each layer's collapse is measured


class Spectrum(NamedTuple):
    """Eigenvalues of a PSD matrix (a layer's AGOP), descending.

    Attributes:
      top_eigenvalues: the largest ``top`` eigenvalues.
      effective_rank: ``(sum l)^2 / sum l^2`` (0 for the zero matrix).
      spectrum: every eigenvalue, or ``None`` in records written before it was kept.
    """

    top_eigenvalues: tuple[float, ...]
    effective_rank: float
    spectrum: tuple[float, ...] | None = None

    @classmethod
    def of(cls, evals: np.ndarray, top: int = 10) -> Spectrum:
        """The spectrum of a PSD matrix from its eigenvalues ``evals`` (``(d,)``, any order)."""
        desc = np.sort(np.asarray(evals, dtype=np.float64))[::-1]
        total = desc.sum()
        rank = float(total**2 / np.sum(desc**2)) if total > 0 else 0.0
        return cls(tuple(desc[:top].tolist()), rank, tuple(desc.tolist()))

    def eigenvalues(self) -> np.ndarray:
        """Every eigenvalue recorded (the top ones for an earlier record), descending."""
        return np.asarray(self.spectrum if self.spectrum is not None else self.top_eigenvalues)

    def to_json(self) -> dict:
        """The spectrum as ``results.json`` holds it."""
        out = {"top_eigenvalues": list(self.top_eigenvalues), "effective_rank": self.effective_rank}
        if self.spectrum is not None:
            out["spectrum"] = list(self.spectrum)
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> Spectrum:
        """The spectrum from its ``to_json`` form (``spectrum`` may be missing)."""
        spectrum = data.get("spectrum")
        return cls(tuple(data["top_eigenvalues"]), data["effective_rank"],
                   None if spectrum is None else tuple(spectrum))


class PhaseSeconds(NamedTuple):
    """Seconds of one layer by phase: the kernel fit's preconditioner (``kernel``) and
    solve, the AGOP, the layer map, the collapse metrics and the predictions."""

    kernel: float
    solve: float
    agop: float
    map: float
    metrics: float
    predict: float


class LayerRecord(NamedTuple):
    """What one Deep RFM layer measured.

    Attributes:
      layer: the layer's index ``l`` (from 0).
      input_dim: the width of the layer's input features ``X_l``.
      input, projected, output: ``CollapseMetrics`` of the training features at the
        layer's input ``X_l``, its projection ``X_l M_l^(1/2)`` and its output ``X_{l+1}``.
      train_accuracy, test_accuracy: of the layer's kernel predictor (``None`` without
        test labels).
      agop: the spectrum of the layer's AGOP ``M_l``.
      solve: how the kernel fit was solved.
      seconds: the layer's wall time; ``phase_seconds`` splits it.
      refit_train_accuracy, refit_test_accuracy: of the predictor refitted on the projected
        features, when the run asked for them (``refit_accuracy``), else ``None``.
    """

    layer: int
    input_dim: int
    input: CollapseMetrics
    projected: CollapseMetrics
    output: CollapseMetrics
    train_accuracy: float
    test_accuracy: float | None
    agop: Spectrum
    solve: SolveInfo
    seconds: float
    phase_seconds: PhaseSeconds
    refit_train_accuracy: float | None = None
    refit_test_accuracy: float | None = None

    @property
    def refitted(self) -> bool:
        """Whether the run recorded the refitted predictor's accuracies."""
        return self.refit_train_accuracy is not None

    def at(self, point: str) -> CollapseMetrics:
        """The collapse metrics at ``point`` (one of ``POINTS``)."""
        if point not in POINTS:
            raise ValueError(f"point must be one of {POINTS}; got {point!r}.")
        return getattr(self, point)

    def to_json(self) -> dict:
        """The record as ``results.json`` holds it (the refitted accuracies only when
        recorded)."""
        out: dict = {"layer": self.layer, "input_dim": self.input_dim}
        out.update({p: self.at(p).to_dict() for p in POINTS})
        out.update(train_accuracy=self.train_accuracy, test_accuracy=self.test_accuracy)
        if self.refitted:
            out.update(refit_train_accuracy=self.refit_train_accuracy,
                       refit_test_accuracy=self.refit_test_accuracy)
        out.update(agop=self.agop.to_json(), solve=self.solve.to_dict(), seconds=self.seconds,
                   phase_seconds=self.phase_seconds._asdict())
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> LayerRecord:
        """The record from its ``to_json`` form."""
        metrics = {p: CollapseMetrics.from_dict(data[p]) for p in POINTS}
        return cls(
            layer=data["layer"], input_dim=data["input_dim"], **metrics,
            train_accuracy=data["train_accuracy"], test_accuracy=data["test_accuracy"],
            agop=Spectrum.from_json(data["agop"]),
            solve=SolveInfo(**data["solve"]), seconds=data["seconds"],
            phase_seconds=PhaseSeconds(**data["phase_seconds"]),
            refit_train_accuracy=data.get("refit_train_accuracy"),
            refit_test_accuracy=data.get("refit_test_accuracy"),
        )


class MeanStd(NamedTuple):
    """Mean and standard deviation of one value over seeds (``std``: ``n - 1``, as
    ``torch.std`` gives the official plots' bands, ``gen_nn_plots.py``; 0 for one seed)."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> MeanStd | None:
        """Over ``values`` (one per seed); ``None`` if any is ``None``."""
        if any(v is None for v in values):
            return None
        return cls.over([float(v) for v in values if v is not None])

    @classmethod
    def over(cls, values: Sequence[float]) -> MeanStd:
        """Over ``values`` (one per seed, every one known)."""
        a = np.asarray(values, dtype=np.float64)
        return cls(float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0)

    def to_json(self) -> dict:
        """``{"mean", "std"}``, as ``summary.json`` holds it."""
        return self._asdict()


def stats_json(stats: MeanStd | None) -> dict | None:
    """``stats.to_json()``, or ``None`` for a value some run lacks."""
    return None if stats is None else stats.to_json()


def stats_from_json(data: dict | None) -> MeanStd | None:
    """The inverse of ``stats_json``."""
    return None if data is None else MeanStd(**data)


class LayerSummary(NamedTuple):
    """One layer over several seeds' runs.

    Attributes:
      layer: the layer's index; ``seeds``: how many runs completed it.
      input, projected, output: per metric name (``SUMMARY_METRICS`` of
        ``experiments.seeds``), its ``MeanStd`` at that point.
      train_accuracy, test_accuracy: ``MeanStd``, ``None`` where a run has none: the
        predictor fitted before the AGOP step.
      refit_train_accuracy, refit_test_accuracy: the same of the predictor refitted on the
        projected features, where every run recorded it (``refit_accuracy``): the official
        script's last printed accuracy ("Final Test Acc"), else ``None``.
    """

    layer: int
    seeds: int
    input: dict[str, MeanStd | None]
    projected: dict[str, MeanStd | None]
    output: dict[str, MeanStd | None]
    train_accuracy: MeanStd | None
    test_accuracy: MeanStd | None
    refit_train_accuracy: MeanStd | None = None
    refit_test_accuracy: MeanStd | None = None

    def at(self, point: str) -> dict[str, MeanStd | None]:
        """The summarised metrics at ``point`` (one of ``POINTS``)."""
        if point not in POINTS:
            raise ValueError(f"point must be one of {POINTS}; got {point!r}.")
        return getattr(self, point)

    def to_json(self) -> dict:
        """The summary as ``summary.json`` holds it."""
        out: dict = {"layer": self.layer, "seeds": self.seeds}
        out.update({p: {m: stats_json(s) for m, s in self.at(p).items()} for p in POINTS})
        out.update(train_accuracy=stats_json(self.train_accuracy),
                   test_accuracy=stats_json(self.test_accuracy))
        if self.refit_test_accuracy is not None:
            out.update(refit_train_accuracy=stats_json(self.refit_train_accuracy),
                       refit_test_accuracy=stats_json(self.refit_test_accuracy))
        return out
