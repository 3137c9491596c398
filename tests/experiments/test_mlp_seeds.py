"""MLP training over seeds: aggregation."""

import json

import numpy as np
import pytest

from dnc_jax.collapse import CollapseMetrics
from dnc_jax.nets.measurements import POINTS, EpochRecord, HeadLayerRecord


def _measurement(epoch, nc1_in, nfa, loss):
    point = CollapseMetrics(**dict.fromkeys(CollapseMetrics._fields, 0.0)
                            | {"nc1": nc1_in, "trace_within": 1.0, "trace_between": 3.0,
                               "trace_total": 4.0, "num_classes": 10})
    deeper = point._replace(trace_within=2.0)  # right, agop and output: another within trace
    layer = HeadLayerRecord(0, point, deeper, deeper, deeper, nfa_sqrt_agop=nfa,
                            nfa_agop=nfa / 2, right_share=None, agop_share=None)
    return EpochRecord(epoch, loss, 1.0, None, [layer])


def test_mlp_seeds_aggregate_mean_and_std():
    from dnc_jax.experiments.mlp_seeds import EpochSummary, aggregate_losses, aggregate_measurements

    runs = [[_measurement(5, 2.0, 0.6, 0.3), _measurement(10, 1.0, 0.7, 0.1)],
            [_measurement(5, 4.0, 0.8, 0.5)]]  # the second run has one measurement so far
    (entry,) = aggregate_measurements(runs)
    assert entry.epoch == 5 and entry.seeds == 2
    root2 = pytest.approx(np.sqrt(2))  # the n - 1 std of two values 2 apart
    layer = entry.layers[0]
    assert layer.nc1["input"] == (3.0, root2)
    assert layer.nc1_official["input"].mean == pytest.approx(0.3)
    assert layer.nfa_sqrt_agop.mean == pytest.approx(0.7)
    assert layer.within_total == (0.5, 0.0)  # at the layer's output, as nc_nn.py
    (at_input,) = aggregate_measurements(runs, "input")  # as nc_nn_ratio.py
    assert at_input.layers[0].within_total == (0.25, 0.0)
    # the script's convention: C tr(S_B) / tr(S_T)
    assert layer.between_total_official == (7.5, 0.0)
    assert entry.train_loss == (pytest.approx(0.4), pytest.approx(0.1 * np.sqrt(2)))
    assert entry.test_accuracy is None
    # summary.json's form: the same keys as before the records were typed, and back
    data = json.loads(json.dumps(entry.to_json()))
    assert list(data) == ["epoch", "seeds", "train_loss", "train_accuracy", "test_accuracy",
                          "layers"]
    assert data["layers"][0]["nc1_input"] == {"mean": 3.0, "std": pytest.approx(np.sqrt(2))}
    assert list(data["layers"][0]) == ["layer", *(f"nc1_{p}" for p in POINTS),
                                       *(f"nc1_official_{p}" for p in POINTS), "within_total",
                                       "between_total_official", "nfa_sqrt_agop", "nfa_agop"]
    assert EpochSummary.from_json(data) == entry
    with pytest.raises(ValueError, match="different epochs"):
        aggregate_measurements([[_measurement(5, 1.0, 0.5, 0.1)], [_measurement(6, 1.0, 0.5, 0.1)]])
    losses = aggregate_losses([[EpochRecord(1, 1.0, 1.0, None), EpochRecord(2, 0.5, 1.0, None)],
                               [EpochRecord(1, 3.0, 1.0, None)]])
    assert [e.to_json() for e in losses] == [{"epoch": 1, "train_loss": {"mean": 2.0, "std": root2}}]


def test_each_preset_reads_the_trace_ratios_where_its_script_does():
    """nc_nn.py takes them at the layer's output (lines 511-517), nc_nn_ratio.py at its input
    (lines 360, 369): the official and paper presets reproduce nc_nn.py, ratio the other."""
    from dnc_jax.conventions import trace_ratio_point
    from dnc_jax.presets import mlp_preset

    points = {name: trace_ratio_point(mlp_preset(name, "none").script)
              for name in ("default", "fast", "official", "paper", "ratio")}
    assert points == {"default": "output", "fast": "output", "official": "output",
                      "paper": "output", "ratio": "input"}
    with pytest.raises(ValueError, match="script must be one of"):
        trace_ratio_point("nc_nn_v2.py")
