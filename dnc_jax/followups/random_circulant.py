"""Random circulant features (Mallinar et al. 2024, the experiment of
``nmallinar/rfm-grokking`` ``train_random_circulant_kernel.py``, commit 73181df): does a
kernel machine generalise on ``(a op b) mod p`` when its metric has the block-circulant
*form* RFM learns, but random entries in place of learned ones?

The metric (``random_circulant_metric``), as the script builds it (lines 120-145):

- a random column ``c`` of ``p`` uniform ``[0, 1)`` numbers minus their mean, and the
  ``p x p`` circulant ``C[i, j] = c[(i - j) mod p]`` (``scipy.linalg.circulant``) for ``+``,
  the same with its columns rotated (``rot90``: ``C[i, j] = c[(i + j + 1) mod p]``) for
  ``-``; for ``*`` and ``/`` the same on the nonzero residues in discrete-log order (a
  column of ``p - 1``; ``utils.gen_random_mult_circulant`` / ``gen_random_div_circulant``,
  lines 59-77, and ``unorder``), zero in the row and column of residue 0: with ``g`` the
  smallest primitive root, ``C[g^k, g^l] = c[(k - l) mod (p - 1)]`` for ``*`` and
  ``c[(k + l - 1) mod (p - 1)]`` for ``/`` (the script puts the rotated circulant at rows
  and columns ``1 .. p - 1`` and ``unorder`` sends position ``k`` to ``g^k``, which shifts
  both indices by one: the rotation's ``+ 1`` becomes ``- 1``);
- ``M = [[I - 11^T/p, C], [C^T, I - 11^T/p]]`` (``2p x 2p``), and the metric the kernel
  sees is ``real(sqrtm(M))`` (line 145). ``M`` is symmetric but not PSD (``C``'s spectrum
  pushes some eigenvalues below 0). On its positive eigenspace ``real(sqrtm(M))`` is
  ``V diag(sqrt(lambda)) V^T``; on the negative one it depends on the algorithm: a square
  root of ``lambda I`` on a repeated negative eigenvalue (the circulant's symmetric
  spectrum repeats them) can have a real part, and ``scipy``'s does for some draws. Here
  it is 0 there: ``V diag(sqrt(max(lambda, 0))) V^T``, the PSD square root of ``M``'s PSD
  part, the same for every implementation.

One kernel machine is fitted in that metric (no RFM iterations), with the settings of
``GrokkingConfig`` (Gaussian kernel, ``L = 2.5``, ridge 0, lines 88-94), and its train and
test accuracy reported. The draws are seeded here (the script's are not). The control
``structure="iid"`` (not in the script) draws every entry of ``C`` on its own.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from dnc_jax.followups.grokking import (
    GrokkingConfig,
    GrokkingIteration,
    discrete_log_order,
    grokking_steps,
)
from dnc_jax.gradient_outer_product import power_from_eigh

STRUCTURES = ("circulant", "iid")


def random_circulant_block(p: int, op: str, rng: np.random.Generator,
                           structure: str = "circulant") -> np.ndarray:
    """The ``p x p`` random block ``C`` of the metric (module docstring). ``structure="iid"``
    is the control: every entry drawn on its own (uniform, the mean of all subtracted), the
    same form of metric without the circulant structure."""
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}; got {structure!r}.")
    if structure == "iid":
        C = rng.uniform(size=(p, p))
        return C - C.mean()
    if op in ("+", "-"):
        n, idx = p, np.arange(p)
    else:  # on the nonzero residues in discrete-log order
        n, idx = p - 1, discrete_log_order(p)
    column = rng.uniform(size=n)
    column -= column.mean()
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    if op in ("+", "*"):
        circ = column[(i - j) % n]
    else:  # rot90 of the circulant; the discrete-log order shifts both indices (docstring)
        circ = column[(i + j + 1) % n] if op == "-" else column[(i + j - 1) % n]
    C = np.zeros((p, p))
    C[np.ix_(idx, idx)] = circ
    return C


def random_circulant_metric(p: int, op: str, seed: int = 0,
                            structure: str = "circulant") -> np.ndarray:
    """``real(sqrtm(M))`` for the block matrix ``M`` of the module docstring
    (``(2p, 2p)``, float64, PSD). NumPy, a shell call."""
    C = random_circulant_block(p, op, np.random.default_rng(seed), structure)
    centre = np.eye(p) - np.full((p, p), 1.0 / p)
    M = np.block([[centre, C], [C.T, centre]])
    return power_from_eigh(*np.linalg.eigh(M), 0.5)  # negative eigenvalues to 0


class RandomCirculantFit(NamedTuple):
    """One kernel machine in a random metric: its ``record`` as ``grokking_steps`` gives it
    (accuracies, losses, and the structure of the machine's AGOP), the metric's
    ``metric_seed`` and ``structure``."""

    record: GrokkingIteration
    metric_seed: int
    structure: str


def random_circulant_fit(config: GrokkingConfig = GrokkingConfig(), seed: int = 0,
                         structure: str = "circulant") -> RandomCirculantFit:
    """Fit one kernel machine in ``random_circulant_metric(config.p, config.op, seed,
    structure)`` on ``config``'s task and split (``RandomCirculantFit``). Needs float64
    (``jax_enable_x64``), as the grokking run. A shell call (NumPy metric, the grokking
    step's fit)."""
    metric = random_circulant_metric(config.p, config.op, seed, structure)
    one = dataclasses.replace(config, iters=1)
    record, _ = next(grokking_steps(one, M=metric))
    return RandomCirculantFit(record, seed, structure)
