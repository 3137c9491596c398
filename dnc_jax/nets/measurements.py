"""Typed records of a network's training, each with its JSON form (what an ``mlp`` run's
``results.json`` holds): per epoch an ``EpochRecord``, which on measurement epochs holds
one ``HeadLayerRecord`` per hidden layer of the head (``layer_analysis``).

``to_json`` gives the plain dict a run folder stores (key order fixed, Python numbers,
``None`` where not measured); ``from_json`` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from dnc_jax.collapse import CollapseMetrics

POINTS = ("input", "right", "agop", "output")  # where each layer record measures collapse


class HeadLayerRecord(NamedTuple):
    """Where one hidden layer of a network's head collapses its data.

    Attributes:
      layer: the layer's index (from 0).
      input, right, agop, output: ``CollapseMetrics`` at the layer's input ``Phi_l(X)``,
        the right-singular step ``Phi_l(X) V S``, the AGOP projection ``Phi_l(X) V_a S_a``
        and the output ``act(Phi_l(X) W_l^T + b_l)``.
      nfa_sqrt_agop, nfa_agop: Pearson correlations of ``W_l^T W_l`` with ``AGOP_l^(1/2)``
        and ``AGOP_l`` (the Neural Feature Ansatz).
      right_share, agop_share: the share of the layer's NC1 reduction (log scale) made by
        the right-singular step, ``log(nc1_in / nc1_right) / log(nc1_in / nc1_out)``, and
        by the AGOP projection; ``None`` where the layer leaves NC1 unchanged.
    """

    layer: int
    input: CollapseMetrics
    right: CollapseMetrics
    agop: CollapseMetrics
    output: CollapseMetrics
    nfa_sqrt_agop: float
    nfa_agop: float
    right_share: float | None
    agop_share: float | None

    def at(self, point: str) -> CollapseMetrics:
        """The collapse metrics at ``point`` (one of ``POINTS``)."""
        if point not in POINTS:
            raise ValueError(f"point must be one of {POINTS}; got {point!r}.")
        return getattr(self, point)

    def to_json(self) -> dict:
        """The record as ``results.json`` holds it."""
        out: dict = {"layer": self.layer}
        out.update({p: self.at(p).to_dict() for p in POINTS})
        out.update(nfa_sqrt_agop=self.nfa_sqrt_agop, nfa_agop=self.nfa_agop,
                   right_share=self.right_share, agop_share=self.agop_share)
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> HeadLayerRecord:
        """The record from its ``to_json`` form."""
        metrics = {p: CollapseMetrics.from_dict(data[p]) for p in POINTS}
        return cls(layer=data["layer"], **metrics, nfa_sqrt_agop=data["nfa_sqrt_agop"],
                   nfa_agop=data["nfa_agop"], right_share=data["right_share"],
                   agop_share=data["agop_share"])


class EpochRecord(NamedTuple):
    """After epoch ``epoch`` (1-based): the mean training loss, the accuracies
    (``test_accuracy``: ``None`` without test data) and, on measurement epochs, one
    ``HeadLayerRecord`` per hidden layer of the head (``layers``; ``None`` otherwise)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None
    layers: list[HeadLayerRecord] | None = None

    def to_json(self) -> dict:
        """The record as ``results.json`` holds it: in ``history`` without ``layers``, in
        ``measurements`` with them."""
        out = self._asdict()
        if self.layers is None:
            del out["layers"]
        else:
            out["layers"] = [rec.to_json() for rec in self.layers]
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> EpochRecord:
        """The record from its ``to_json`` form."""
        layers = data.get("layers")
        return cls(data["epoch"], data["train_loss"], data["train_accuracy"],
                   data["test_accuracy"],
                   None if layers is None else [HeadLayerRecord.from_json(r) for r in layers])
