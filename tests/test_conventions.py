"""Which NC1 the printed tables show."""

import pytest

from dnc_jax.collapse import CollapseMetrics
from dnc_jax.conventions import OFFICIAL_SCRIPTS, convention_header, nc1_key
from dnc_jax.experiments.seeds import summary_table
from dnc_jax.layer_records import LayerRecord, LayerSummary, MeanStd, PhaseSeconds, Spectrum
from dnc_jax.nets.measurements import EpochRecord, HeadLayerRecord
from dnc_jax.solvers import SolveInfo


def _summary(point: dict, test_accuracy: MeanStd | None = None) -> list[LayerSummary]:
    """One layer's summary with ``point``'s statistics at every measurement point."""
    return [LayerSummary(0, 1, point, point, point, None, test_accuracy)]


def _layer(nc1: float, num_classes: int, nc2: float) -> LayerRecord:
    """One layer's record with these metrics at every point (the others 0)."""
    point = CollapseMetrics(**dict.fromkeys(CollapseMetrics._fields, 0.0)
                            | {"nc1": nc1, "nc2": nc2, "num_classes": num_classes})
    return LayerRecord(0, 4, point, point, point, 1.0, None, Spectrum((1.0,), 1.0),
                       SolveInfo("cholesky", 0, None, None, 0.0, 0.0), 0.0,
                       PhaseSeconds(*[0.0] * 6))


def test_each_official_script_names_its_convention():
    assert nc1_key(None) == "nc1"
    for script in OFFICIAL_SCRIPTS:
        assert nc1_key(script) == "nc1_official" and script in convention_header(script)
    with pytest.raises(ValueError, match="script"):
        nc1_key("train.py")


def test_the_seed_summary_prints_the_chosen_nc1():
    point = {"nc1": MeanStd(2.5, 0.5), "nc1_official": MeanStd(0.25, 0.05)}
    summary = _summary(point, MeanStd(0.9, 0.01))
    ours, official = summary_table(summary), summary_table(summary, "deep_rfm.py")
    assert ours.splitlines()[2].split()[1] == "2.5" and "dnc_jax's convention" in ours
    assert official.splitlines()[2].split()[1] == "0.25" and "deep_rfm.py" in official


def test_the_figures_draw_the_chosen_nc1(monkeypatch):
    import dnc_jax.figures as figures  # the drawing functions

    drawn = {}
    monkeypatch.setattr(figures, "finish_layer_axes",
                        lambda fig, axes, labels, path, title: drawn.update(axes=axes, labels=labels))
    point = {"nc1": MeanStd(2.5, 0.5), "nc1_official": MeanStd(0.25, 0.05),
             "nc2": MeanStd(0.1, 0.0)}
    summary = _summary(point)
    for script, value, label in ((None, 2.5, "NC1"), ("deep_rfm.py", 0.25, "NC1 (deep_rfm.py)")):
        figures.plot_collapse_bands(summary, "unused.png", "title", script)
        assert drawn["labels"][0] == label
        assert {float(line.get_ydata()[0]) for line in drawn["axes"][0].get_lines()} == {value}


def test_a_single_runs_figures_draw_the_chosen_nc1(monkeypatch):
    import dnc_jax.figures as figures

    saved = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: saved.update(fig=fig))
    layers = [_layer(2.5, 10, 0.1)]  # nc1_official = nc1 / C = 0.25
    figures.plot_layer_collapse(layers, ("input", "output"), "unused.png", "t", "deep_rfm.py")
    ax = saved["fig"].axes[0]
    assert ax.get_ylabel() == "NC1 (deep_rfm.py)"
    assert {float(line.get_ydata()[0]) for line in ax.get_lines()} == {0.25}
    point = layers[0].input  # nc1 2.5, nc1_official 0.25
    head_layer = HeadLayerRecord(0, point, point, point, point, nfa_sqrt_agop=0.5, nfa_agop=0.4,
                                 right_share=None, agop_share=None)
    measurements = [EpochRecord(1, 0.5, 1.0, None, [head_layer])]
    for script, value in ((None, 2.5), ("nc_nn.py", 0.25)):
        figures.plot_training(measurements, "unused.png", "t", script)
        ax = saved["fig"].axes[0]
        assert {float(line.get_ydata()[0]) for line in ax.get_lines()} == {value}
