"""Typed Deep RFM records: their JSON form, and records written by earlier versions."""

import json

import numpy as np
import pytest

from dnc_jax.collapse import CollapseMetrics
from dnc_jax.layer_records import LayerRecord, LayerSummary, MeanStd, PhaseSeconds, Spectrum
from dnc_jax.solvers import SolveInfo


def _metrics(nc1: float) -> CollapseMetrics:
    return CollapseMetrics(**dict.fromkeys(CollapseMetrics._fields, 0.5)
                           | {"nc1": nc1, "nc3": None, "ncc_mismatch": None,
                              "nc1_pinv_rank": 3, "num_classes": 4, "num_samples": 40})


def _record(**changes) -> LayerRecord:
    record = LayerRecord(2, 16, _metrics(3.0), _metrics(2.0), _metrics(1.0), 0.75, None,
                         Spectrum.of(np.array([1.0, 4.0, 0.0])),
                         SolveInfo("cg", 7, 1e-7, 100, 0.25, 0.5, 200), 2.5,
                         PhaseSeconds(0.25, 0.5, 0.5, 0.25, 0.5, 0.25))
    return record._replace(**changes)


@pytest.mark.parametrize("changes", [{}, {"refit_train_accuracy": 1.0},
                                     {"refit_train_accuracy": 1.0, "refit_test_accuracy": 0.5}])
def test_a_layer_record_reads_back_from_its_json(changes):
    record = _record(**changes)
    data = json.loads(json.dumps(record.to_json()))
    assert LayerRecord.from_json(data) == record
    assert list(data)[:5] == ["layer", "input_dim", "input", "projected", "output"]
    assert ("refit_train_accuracy" in data) == bool(changes)  # only when recorded
    assert data["output"]["nc1_official"] == 1.0 / 4  # the official convention is kept
    assert data["agop"] == {"top_eigenvalues": [4.0, 1.0, 0.0], "effective_rank": 25 / 17,
                            "spectrum": [4.0, 1.0, 0.0]}


def test_records_of_earlier_versions_read():
    """Before 0.4 the AGOP record had no full spectrum and the solve no ``agop_rows``."""
    data = _record().to_json()
    del data["agop"]["spectrum"], data["solve"]["agop_rows"]
    old = LayerRecord.from_json(data)
    assert old.agop.spectrum is None and old.solve.agop_rows is None
    np.testing.assert_array_equal(old.agop.eigenvalues(), [4.0, 1.0, 0.0])  # the top ones
    assert old.to_json() == data | {"solve": data["solve"] | {"agop_rows": None}}
    with pytest.raises(ValueError, match="point must be one of"):
        old.at("right")


def test_a_layer_summary_in_json():
    stats = {"nc1": MeanStd.of([1.0, 3.0]), "cdnv": MeanStd.of([2.0])}
    summary = LayerSummary(0, 2, stats, stats, stats, None, MeanStd.of([0.5, None]))
    data = summary.to_json()
    assert data["input"] == {"nc1": {"mean": 2.0, "std": np.sqrt(2.0)},
                             "cdnv": {"mean": 2.0, "std": 0.0}}
    assert data["train_accuracy"] is None and data["test_accuracy"] is None
