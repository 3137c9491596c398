"""Resumable experiments behind the ``dnc-jax`` command, one module per command.

Each writes ``OUT/results.json``, a CSV and PNG figures, atomically, after every completed
step (a layer, a measurement, an iteration), and resumes from the last one when rerun
with the same ``OUT`` and configuration.
"""

from dnc_jax.experiments.common import load_prepared
from dnc_jax.experiments.deep_rfm import DeepRFMRun, deep_rfm_table, run_deep_rfm
from dnc_jax.experiments.grokking import GrokkingRun, GrokkingSummary, grokking_table, run_grokking
from dnc_jax.experiments.mlp import MLPRun, mlp_table, run_mlp
from dnc_jax.experiments.multi_index import (
    MultiIndexRun,
    MultiIndexSize,
    multi_index_table,
    run_multi_index,
)
from dnc_jax.experiments.run_figures import deep_rfm_figures
from dnc_jax.experiments.seeds import aggregate_layers, run_deep_rfm_seeds, summary_table

__all__ = [
    "DeepRFMRun",
    "GrokkingRun",
    "GrokkingSummary",
    "MLPRun",
    "MultiIndexRun",
    "MultiIndexSize",
    "aggregate_layers",
    "deep_rfm_figures",
    "deep_rfm_table",
    "grokking_table",
    "load_prepared",
    "mlp_table",
    "multi_index_table",
    "run_deep_rfm",
    "run_grokking",
    "run_mlp",
    "run_deep_rfm_seeds",
    "run_multi_index",
    "summary_table",
]
