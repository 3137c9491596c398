"""Recovering the central subspace of a multi-index model from a kernel machine's AGOP
(Zhu, Davis, Drusvyatskiy, Fazel et al., *Average gradient outer product in kernel
regression provably recovers the central subspace for multi-index models*).

For ``y = h(U x) + noise`` (``data.multi_index_regression``), the AGOP of a kernel ridge
fit is concentrated on ``span(U^T)``: its top-``r`` eigenvectors estimate the hidden
subspace. The default task is the paper's setting (its abstract; the text was not
reachable): hypercube inputs, a random low-coherence ``U``, and
``h(z) = sum_{i<j} z_i z_j + prod_i z_i``, whose degree-2 part carries every direction
(``data.multi_index_target``), and the default run is the paper's algorithm, the AGOP of
one kernel ridge fit (``steps = 1``). ``multi_index_rfm`` runs ``steps`` AGOP steps (step
0 is plain kernel ridge with the identity metric; step ``t > 0`` fits on ``x T_t`` with
``T_t = AGOP_{t-1}^(1/2)``, the AGOP divided by its largest entry, i.e. ``RFM``'s
``agop_power = 1/2``) and reports at each the test error and how the AGOP sits relative
to ``span(U^T)``:

- ``subspace_distance``: between the AGOP's top-``r`` eigenspace and ``span(U^T)``
  (principal angles, below);
- ``leading_distance``: of the AGOP's leading eigenvector from ``span(U^T)`` (the sine of
  its angle to the subspace);
- ``captured``: ``tr(P_U A) / tr(A)``, the share of the AGOP inside ``span(U^T)``.

The earlier task (``subspace="coordinate", target="sum_prod"``) degenerates: on the
hypercube with ``h(z) = z1 + z2 + z3 + z1 z2 z3`` and ``U`` the first coordinates the
product is a function of ``s = z1 + z2 + z3`` (``z`` is +-1), so ``y`` depends on ``x``
only through ``s``: the central subspace is the line of ``e1 + e2 + e3``, and a correct
AGOP is rank one inside ``span(U^T)`` (``leading_distance`` and ``1 - captured`` near 0,
while ``subspace_distance`` of the top 3 cannot go below ``sqrt(2/3)``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from dnc_jax.followups.multi_index_task import (
    MULTI_INDEX_INPUTS,
    MULTI_INDEX_SUBSPACES,
    MULTI_INDEX_TARGETS,
    coherence,
    multi_index_regression,
)
from dnc_jax.gradient_outer_product import (
    AGOP_BATCH,
    check_agop_samples,
    power_from_eigh,
    psd_eigh,
)
from dnc_jax.kernels import Kernel, kernel_names
from dnc_jax.option_fields import option, parse_agop_samples
from dnc_jax.precision import matmul
from dnc_jax.rfm import fit_with_agop_checked, rfm_loop
from dnc_jax.solvers import SolverOptions


@dataclasses.dataclass(frozen=True)
class MultiIndexConfig(SolverOptions):
    """One multi-index experiment: the task (``d``, ``r``, ``inputs``, ``subspace``,
    ``target``, ``noise``, sizes) and the fit (``steps`` AGOP steps, Laplace kernel
    ``L = bandwidth``, ridge ``reg``, and the kernel solve's options, the fields it has
    from ``SolverOptions``)."""

    d: int = option(30, "input dimension")
    r: int = option(3, "rank of the hidden U")
    n: int = option(2000, "training samples; several values make a sweep", nargs="+")
    n_test: int = option(2000, "test samples")
    inputs: str = option("hypercube", "input distribution", choices=MULTI_INDEX_INPUTS)
    subspace: str = option("random", "U: random orthonormal rows (low coherence) or the first "
                                     "r coordinates", choices=MULTI_INDEX_SUBSPACES)
    target: str = option("pairs_prod", "the link h (data.multi_index_target)",
                         choices=MULTI_INDEX_TARGETS)
    noise: float = option(0.1, "label noise std")
    steps: int = option(1, "AGOP steps: 1 = the AGOP of one kernel ridge fit; more = RFM")
    kernel: str = option("laplace", "the kernel", choices=kernel_names)
    bandwidth: float = option(10.0, "its bandwidth L")
    reg: float = option(1e-3, "ridge")
    agop_samples: int | str | None = option(None, "AGOP from this many seeded training rows, "
                                                  "or 'auto' (default all)",
                                            parse=parse_agop_samples)
    seed: int = option(0, "seeds the task and the solver's samples")

    def validate(self) -> None:
        """Raise ``ValueError`` for an invalid field (run when the configuration is built)."""
        for name in ("d", "r", "n", "n_test", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.r > self.d:
            raise ValueError(f"r must be <= d; got r={self.r}, d={self.d}.")
        for name, allowed in (("inputs", MULTI_INDEX_INPUTS), ("subspace", MULTI_INDEX_SUBSPACES),
                              ("target", MULTI_INDEX_TARGETS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        if self.kernel not in kernel_names():
            raise ValueError(f"kernel must be one of {kernel_names()}; got {self.kernel!r}.")
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0; got {self.noise}.")
        super().validate()
        check_agop_samples(self.agop_samples)
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0; got {self.bandwidth}.")
        if not self.reg >= 0:
            raise ValueError(f"reg must be >= 0; got {self.reg}.")

    def solver_options(self) -> SolverOptions:
        """The fields from ``SolverOptions``, as one."""
        return SolverOptions.of(self)


def subspace_distance(A: np.ndarray, B: np.ndarray) -> float:
    """``sqrt(mean_i sin^2 theta_i)`` over the ``k`` principal angles between ``span(A)``
    (``(d, k)``) and ``span(B)`` (``(d, r)``, ``k <= r``), both of full column rank: 0 when
    ``span(A)`` lies in ``span(B)`` (for ``k = r``: the same subspace), 1 when they are
    orthogonal, independent of the bases. For ``k = r`` it equals
    ``||P_A - P_B||_F / sqrt(2 r)``; a random ``k``-dimensional subspace of ``R^d`` is at
    about ``sqrt(1 - r/d)``."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[0] or A.shape[1] > B.shape[1]:
        raise ValueError(f"A must be (d, k) and B (d, r) with k <= r; got {A.shape}, {B.shape}.")
    Qa, Qb = np.linalg.qr(A)[0], np.linalg.qr(B)[0]
    cosines = np.clip(np.linalg.svd(Qa.T @ Qb, compute_uv=False), 0.0, 1.0)
    return float(np.sqrt(np.mean(1.0 - cosines**2)))


def top_eigenspace(M: np.ndarray, r: int) -> np.ndarray:
    """The ``r`` leading eigenvectors of a symmetric PSD ``M`` (``(d, r)``, float64)."""
    return psd_eigh(M)[1][:, ::-1][:, :r]


class MultiIndexStep(NamedTuple):
    """One AGOP step of ``multi_index_rfm``: ``step``; the kernel machine's ``test_mse``
    and ``relative_error`` (``test_mse / var(y_test)``); of its AGOP (module docstring)
    the ``subspace_distance`` of the top-``r`` eigenspace to ``span(U)``, the
    ``leading_distance`` of the leading eigenvector, the share ``captured`` in ``span(U)``
    and ``agop_top`` (the ``r + 3`` leading eigenvalues, largest first); the
    ``random_baseline`` (``sqrt(1 - r/d)``, a random subspace's distance) and the
    ``coherence`` of ``U`` (``data.coherence``)."""

    step: int
    test_mse: float
    relative_error: float
    subspace_distance: float
    leading_distance: float
    captured: float
    random_baseline: float
    coherence: float
    agop_top: list[float]

    def to_json(self) -> dict:
        """The record as ``results.json`` holds it."""
        return self._asdict()

    @classmethod
    def from_json(cls, data: dict) -> MultiIndexStep:
        """The record from its ``to_json`` form."""
        return cls(**data)


class MultiIndexSize(NamedTuple):
    """The RFM run at one training-set size ``n``: one ``MultiIndexStep`` per step."""

    n: int
    records: list[MultiIndexStep]

    def to_json(self) -> dict:
        """As ``results.json``'s ``sizes`` hold it."""
        return {"n": self.n, "records": [r.to_json() for r in self.records]}

    @classmethod
    def from_json(cls, data: dict) -> MultiIndexSize:
        """The size from its ``to_json`` form."""
        return cls(data["n"], [MultiIndexStep.from_json(r) for r in data["records"]])


def multi_index_rfm(config: MultiIndexConfig = MultiIndexConfig()) -> list[MultiIndexStep]:
    """Run the AGOP steps: one ``MultiIndexStep`` per step. A shell call."""

    def task(n: int, sample_seed: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return multi_index_regression(n, config.d, config.r, inputs=config.inputs,
                                      subspace=config.subspace, target=config.target,
                                      noise=config.noise, seed=config.seed, sample_seed=sample_seed)

    X, y, U = task(config.n, None)
    Xt, yt, _ = task(config.n_test, 1)
    Xj, Xtj = jnp.asarray(X), jnp.asarray(Xt)

    kernel = Kernel(config.kernel, config.bandwidth)  # checked with the configuration
    options = config.solver_options()

    def step(T, _):  # the task's rows, finite by construction: no check per step
        return fit_with_agop_checked(
            Xj if T is None else matmul(Xj, T), jnp.asarray(y[:, None], Xj.dtype), kernel,
            config.reg, transform=T, normalize="max", solver=options,
            agop_samples=config.agop_samples, seed=config.seed, batch_size=AGOP_BATCH)

    def root(A):
        return jnp.asarray(power_from_eigh(*psd_eigh(np.asarray(A, np.float64)), 0.5),
                           jnp.float32)

    records = []
    for s in rfm_loop(step, root, config.steps):
        T = s.transform
        pred = np.asarray(s.predictor.predict(Xtj if T is None else matmul(Xtj, T)))[:, 0]
        mse = float(np.mean((pred - yt) ** 2))
        A = np.asarray(s.agop, np.float64)
        evals, evecs = psd_eigh(A)
        top = evecs[:, ::-1][:, : config.r]
        records.append(MultiIndexStep(
            step=s.step, test_mse=mse, relative_error=mse / float(np.var(yt)),
            subspace_distance=subspace_distance(top, U.T),
            leading_distance=subspace_distance(top[:, :1], U.T),
            captured=float(np.trace(U @ A @ U.T) / np.trace(A)),
            random_baseline=float(np.sqrt(1.0 - config.r / config.d)),
            coherence=coherence(U),
            agop_top=evals[::-1][: config.r + 3].tolist(),
        ))
    return records
