"""Which NC1 the printed tables show."""

import pytest

from dnc_jax.experiments.conventions import OFFICIAL_SCRIPTS, convention_header, nc1_key
from dnc_jax.experiments.seeds import summary_table


def test_each_official_script_names_its_convention():
    assert nc1_key(None) == "nc1"
    for script in OFFICIAL_SCRIPTS:
        assert nc1_key(script) == "nc1_official" and script in convention_header(script)
    with pytest.raises(ValueError, match="script"):
        nc1_key("train.py")


def test_the_seed_summary_prints_the_chosen_nc1():
    point = {"nc1": {"mean": 2.5, "std": 0.5}, "nc1_official": {"mean": 0.25, "std": 0.05}}
    summary = [{"layer": 0, "input": point, "projected": point, "output": point,
                "test_accuracy": {"mean": 0.9, "std": 0.01}}]
    ours, official = summary_table(summary), summary_table(summary, "deep_rfm.py")
    assert ours.splitlines()[2].split()[1] == "2.5" and "dnc_jax's convention" in ours
    assert official.splitlines()[2].split()[1] == "0.25" and "deep_rfm.py" in official
