"""Deep RFM over seeds: aggregation, resume, figures."""

import json

import numpy as np
import pytest
from helpers import without_time

from dnc_jax.collapse import CollapseMetrics
from dnc_jax.deep_rfm_model import DeepRFMConfig
from dnc_jax.experiments import aggregate_layers, run_deep_rfm, run_deep_rfm_seeds
from dnc_jax.experiments.run_figures import deep_rfm_figures
from dnc_jax.experiments.seeds import summary_table
from dnc_jax.layer_records import LayerRecord, PhaseSeconds, Spectrum
from dnc_jax.solvers import SolveInfo


def test_aggregate_layers_mean_and_std():
    def rec(v):
        point = CollapseMetrics(**dict.fromkeys(CollapseMetrics._fields, 0.0)
                                | {"nc1": v, "nc2": 2 * v, "cdnv": 3 * v, "num_classes": 10})
        return LayerRecord(0, 4, point, point, point, train_accuracy=1.0, test_accuracy=v / 10,
                           agop=Spectrum((1.0,), 1.0), solve=SolveInfo("cholesky", 0, None, None,
                                                                      0.0, 0.0),
                           seconds=0.0, phase_seconds=PhaseSeconds(*[0.0] * 6))

    runs = [[rec(1.0), rec(2.0)], [rec(3.0), rec(5.0)], [rec(2.0)]]
    summary = aggregate_layers(runs)
    assert len(summary) == 1  # only layers every run completed
    # seed bands use n - 1, as torch.std in the official plots
    nc2 = summary[0].projected["nc2"]
    assert nc2.mean == 4.0 and nc2.std == pytest.approx(np.std([2, 6, 4], ddof=1))
    assert summary[0].to_json()["projected"]["nc2"] == {"mean": 4.0, "std": nc2.std}
    assert summary[0].test_accuracy.mean == pytest.approx(0.2)
    two = aggregate_layers(runs[:2])
    assert two[1].output["nc1"].mean == 3.5
    assert two[1].output["nc1_official"].mean == pytest.approx(0.35)
    assert two[1].output["nc1"].std == pytest.approx(1.5 * np.sqrt(2))
    assert aggregate_layers(runs[2:])[0].output["nc1"].std == 0.0  # one seed
    assert summary[0].refit_test_accuracy is None and "refit" not in summary_table(summary)


def test_the_summary_reports_the_refit_accuracy_the_script_prints_last():
    """deep_rfm.py (through rfm's recursive_feature_machine.py lines 125-130) prints the
    accuracy of the predictor refitted after the AGOP step last: the summary keeps both."""
    def rec(first, refit):
        point = CollapseMetrics(**dict.fromkeys(CollapseMetrics._fields, 1.0) | {"num_classes": 10})
        return LayerRecord(0, 4, point, point, point, train_accuracy=1.0, test_accuracy=first,
                           agop=Spectrum((1.0,), 1.0), solve=SolveInfo("cholesky", 0, None, None,
                                                                      0.0, 0.0),
                           seconds=0.0, phase_seconds=PhaseSeconds(*[0.0] * 6),
                           refit_train_accuracy=1.0, refit_test_accuracy=refit)

    (entry,) = aggregate_layers([[rec(0.80, 0.90)], [rec(0.82, 0.94)]])
    assert entry.test_accuracy.mean == pytest.approx(0.81)
    assert entry.refit_test_accuracy.mean == pytest.approx(0.92)
    assert entry.to_json()["refit_test_accuracy"]["mean"] == pytest.approx(0.92)
    table = summary_table([entry], "deep_rfm.py")
    assert "refit test acc" in table and "0.9200 +- 0.0283" in table


@pytest.mark.slow
def test_seeds_run_aggregates_resumes_and_draws(tmp_path):
    config = DeepRFMConfig(depth=2, width=32)
    kw = dict(dataset="digits", n=200, n_test=50, progress=False)
    out = str(tmp_path / "seeds")
    summary = run_deep_rfm_seeds(out, (0, 3), config=config, **kw)
    runs = [json.loads((tmp_path / "seeds" / f"seed-{s}" / "results.json").read_text())
            for s in (0, 3)]
    assert [r["config"]["seed"] for r in runs] == [0, 3]
    values = [r["layers"][1]["output"]["nc1"] for r in runs]
    assert values[0] != values[1]  # the seed changes the random maps
    assert summary[1].output["nc1"].mean == pytest.approx(np.mean(values))
    assert summary[1].output["nc1"].std == pytest.approx(np.std(values, ddof=1))
    saved = json.loads((tmp_path / "seeds" / "summary.json").read_text())
    assert saved["seeds"] == [0, 3] and saved["layers"] == [e.to_json() for e in summary]
    # a single seed's run equals the same seed run alone
    alone = run_deep_rfm(str(tmp_path / "alone"), config=DeepRFMConfig(depth=2, width=32, seed=3),
                         **kw)
    assert [without_time(r) for r in alone.layers] == [without_time(r) for r in runs[1]["layers"]]
    # rerunning resumes: nothing is recomputed (the records, times included, are unchanged)
    before = [(tmp_path / "seeds" / f"seed-{s}" / "results.json").read_bytes() for s in (0, 3)]
    again = run_deep_rfm_seeds(out, (0, 3), config=config, **kw)
    assert again == summary
    assert [(tmp_path / "seeds" / f"seed-{s}" / "results.json").read_bytes()
            for s in (0, 3)] == before
    paths = deep_rfm_figures(out, "svg")
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["agop_spectra.svg", "collapse.svg",
                                                           "grams.svg"]
    with np.load(tmp_path / "seeds" / "seed-0" / "extras.npz") as extras:
        grams, labels = extras["grams"], extras["gram_labels"]
    assert grams.shape[0] == 2 and np.all(np.diff(labels) >= 0)  # class-sorted rows
    np.testing.assert_allclose(np.diagonal(grams, axis1=1, axis2=2), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="distinct"):
        run_deep_rfm_seeds(out, (1, 1), config=config, **kw)
