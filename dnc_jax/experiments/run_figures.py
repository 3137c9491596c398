"""The paper's Deep RFM figures from a run folder (``dnc-jax figures deep-rfm --run DIR``).

``DIR`` is one run (``results.json``) or a seeds folder (``seed-K/`` runs, from
``--seeds``). Drawn, in grayscale-readable styles:

- ``collapse``: NC1 and NC2 against layer at the input ``X_l``, the projection
  ``X_l M_l^(1/2)`` and the output ``X_{l+1}``, mean with a band of +- one standard
  deviation over the seeds;
- ``grams``: per layer, the Gram matrix of class-sorted, centred, unit-norm input features
  (``gram.GRAM_PER_CLASS`` samples per class; the paper's first figure), of the first seed;
- ``agop_spectra``: each layer's AGOP eigenvalues (divided by the largest), of the first
  seed.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from dnc_jax.experiments.deep_rfm import DeepRFMRun
from dnc_jax.experiments.seeds import aggregate_layers
from dnc_jax.figures import FORMATS, plot_agop_spectra, plot_collapse_bands, plot_grams


def load_runs(run_dir: str) -> list[str]:
    """The run folders under ``run_dir`` (its ``seed-K`` folders sorted by ``K``, or itself)."""
    seeds = sorted(glob.glob(os.path.join(run_dir, "seed-*")),
                   key=lambda p: int(p.rsplit("-", 1)[-1]))
    runs = [p for p in seeds if os.path.exists(os.path.join(p, "results.json"))]
    if not runs and os.path.exists(os.path.join(run_dir, "results.json")):
        runs = [run_dir]
    if not runs:
        raise FileNotFoundError(f"no Deep RFM run (results.json) in {run_dir!r} or its seed-K folders.")
    return runs


def deep_rfm_figures(run_dir: str, fmt: str = "png", script: str | None = None) -> list[str]:
    """Draw the three figures of the run(s) in ``run_dir`` into ``run_dir/figures``, NC1
    in the convention of the official ``script`` (``"deep_rfm.py"``) or ours (``None``);
    returns the paths written."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}.")
    runs = load_runs(run_dir)
    all_layers = [DeepRFMRun.load(r).layers for r in runs]
    summary = aggregate_layers(all_layers)
    if not summary:
        raise ValueError(f"the run(s) in {run_dir!r} have no completed layer.")
    out = os.path.join(run_dir, "figures")
    os.makedirs(out, exist_ok=True)
    seeds = f"{len(runs)} seed{'s' if len(runs) > 1 else ''}"
    paths = [os.path.join(out, f"collapse.{fmt}"), os.path.join(out, f"agop_spectra.{fmt}")]
    plot_collapse_bands(summary, paths[0], f"Deep RFM collapse by layer (mean +- std, {seeds})",
                        script)
    plot_agop_spectra(all_layers[0], paths[1], "AGOP spectrum per layer (darker: earlier)")
    extras = os.path.join(runs[0], "extras.npz")
    if os.path.exists(extras):
        with np.load(extras) as saved:
            grams = saved["grams"]
        paths.append(os.path.join(out, f"grams.{fmt}"))
        plot_grams(grams, paths[-1], "Gram matrices of class-sorted features")
    return paths
