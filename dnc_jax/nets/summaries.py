"""Typed summaries of several seeds' training records, each with its JSON form (what a
``mlp-seeds`` run's ``summary.json`` holds): per measurement epoch an ``EpochSummary``
with one ``HeadLayerSummary`` per head layer (``MeanStd`` over the seeds), and the train
loss of every epoch (``LossSummary``)."""

from __future__ import annotations

from typing import NamedTuple

from dnc_jax.layer_records import MeanStd, stats_from_json, stats_json
from dnc_jax.nets.measurements import POINTS, HeadLayerRecord

SCALARS = ("train_loss", "train_accuracy", "test_accuracy")


class HeadLayerSummary(NamedTuple):
    """One head layer at one measurement epoch over seeds (module docstring): NC1 at each
    of ``POINTS`` in our convention (``nc1``) and the official scripts' (``nc1_official``),
    the trace ratios (at the layer's input or output: ``trace_ratio_point``), the NFA
    correlations; each a ``MeanStd``."""

    layer: int
    nc1: dict[str, MeanStd]
    nc1_official: dict[str, MeanStd]
    within_total: MeanStd
    between_total_official: MeanStd
    nfa_sqrt_agop: MeanStd
    nfa_agop: MeanStd

    @classmethod
    def of(cls, layer: int, records: list[HeadLayerRecord],
           trace_point: str = "output") -> HeadLayerSummary:
        """Over the seeds' records of head layer ``layer``, the trace ratios read at
        ``trace_point`` (``"input"`` or ``"output"``)."""
        def stats(value):
            return MeanStd.over([value(r) for r in records])

        return cls(layer, {p: stats(lambda r, p=p: r.at(p).nc1) for p in POINTS},
                   {p: stats(lambda r, p=p: r.at(p).nc1_official) for p in POINTS},
                   stats(lambda r: r.at(trace_point).within_total_official),
                   stats(lambda r: r.at(trace_point).between_total_official),
                   stats(lambda r: r.nfa_sqrt_agop), stats(lambda r: r.nfa_agop))

    def values(self) -> dict[str, MeanStd]:
        """Every value by its ``summary.json`` name (``nc1_<point>``,
        ``nc1_official_<point>``, ``within_total``, ...), in the file's order."""
        out = {f"nc1_{p}": self.nc1[p] for p in POINTS}
        out.update({f"nc1_official_{p}": self.nc1_official[p] for p in POINTS})
        out.update(within_total=self.within_total,
                   between_total_official=self.between_total_official,
                   nfa_sqrt_agop=self.nfa_sqrt_agop, nfa_agop=self.nfa_agop)
        return out

    def to_json(self) -> dict:
        """As ``summary.json`` holds it: ``layer`` and ``{"mean", "std"}`` per value."""
        return {"layer": self.layer, **{k: v.to_json() for k, v in self.values().items()}}

    @classmethod
    def from_json(cls, data: dict) -> HeadLayerSummary:
        """The summary from its ``to_json`` form."""
        stats = {k: MeanStd(**v) for k, v in data.items() if k != "layer"}
        return cls(data["layer"], {p: stats[f"nc1_{p}"] for p in POINTS},
                   {p: stats[f"nc1_official_{p}"] for p in POINTS}, stats["within_total"],
                   stats["between_total_official"], stats["nfa_sqrt_agop"], stats["nfa_agop"])


class EpochSummary(NamedTuple):
    """One measurement epoch over ``seeds`` runs: the train loss and accuracies
    (``MeanStd``; ``None`` where a run has none) and one ``HeadLayerSummary`` per head
    layer."""

    epoch: int
    seeds: int
    train_loss: MeanStd
    train_accuracy: MeanStd
    test_accuracy: MeanStd | None
    layers: list[HeadLayerSummary]

    def to_json(self) -> dict:
        """As ``summary.json``'s ``measurements`` hold it."""
        out: dict = {"epoch": self.epoch, "seeds": self.seeds}
        out.update({k: stats_json(getattr(self, k)) for k in SCALARS})
        out["layers"] = [layer.to_json() for layer in self.layers]
        return out

    @classmethod
    def from_json(cls, data: dict) -> EpochSummary:
        """The summary from its ``to_json`` form."""
        return cls(data["epoch"], data["seeds"], MeanStd(**data["train_loss"]),
                   MeanStd(**data["train_accuracy"]), stats_from_json(data["test_accuracy"]),
                   [HeadLayerSummary.from_json(layer) for layer in data["layers"]])


class LossSummary(NamedTuple):
    """The train loss of one epoch over the seeds that reached it."""

    epoch: int
    train_loss: MeanStd

    def to_json(self) -> dict:
        """As ``summary.json``'s ``losses`` hold it."""
        return {"epoch": self.epoch, "train_loss": self.train_loss.to_json()}
