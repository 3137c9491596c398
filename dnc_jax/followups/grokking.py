"""Grokking modular arithmetic with RFM (Mallinar, Beaglehole, Zhu, Radhakrishnan, Pandit,
Belkin, 2024: *Emergence in non-neural models: grokking modular arithmetic via average
gradient outer product*).

An RFM on ``(a op b) mod p`` with one-hot inputs (``x = e_a (+) e_b``, ``2p`` features)
and one-hot targets: for ``t = 0 .. iters-1``, fit a Gaussian kernel machine in the metric
``M_t`` (``M_0 = I``), measure it, and set ``M_{t+1} = AGOP_t^(1/2)`` with ``AGOP_t`` the
centred AGOP of that machine at the training points. The published settings
(``nmallinar/rfm-grokking``, commit 73181df) are ``GrokkingConfig``'s defaults; each field
cites its source line. The solve is direct (Cholesky, with the float64 and jitter
fallbacks of ``solve_psd``): ridge 0 asks for interpolation, which the iterative solvers
cannot promise, and the task has at most ``p^2`` pairs.

Structure of the learned metric (the paper's "block-circulant features"):

- ``circulant_deviation(A)``: ``||A - circ(A)||_F^2 / ||A||_F^2``, where ``circ(A)``
  replaces each wrapped diagonal ``{A[i, (i + k) mod n]}`` by its mean (the nearest
  circulant matrix in Frobenius norm). It is the paper's measure, the variance of the
  entries along each wrapped diagonal, summed over diagonals, relative to the matrix's
  energy: 0 exactly when ``A`` is circulant, at most 1.
- ``block_deviations(M, p, op)``: it for each distinct ``p x p`` block of the ``2p x 2p``
  metric: ``aa`` and ``bb`` (each operand with itself) and ``ab`` (the operands together).
  The block-circulant form the paper finds is ``[[C_1, C_2], [C_2^T, C_1']]`` with circulant
  ``C``: Fourier features ``u_k (+) v_k`` with ``u_k(i) = e^(2 pi i k i / p)`` and
  ``v_k = u_k`` for ``+`` (``f`` depends on ``a + b``) or ``conj(u_k)`` for ``-``, whose
  outer products make ``C_2`` circulant for ``+`` and circulant after reversing its columns
  for ``-`` (``task_blocks`` does that). For ``*`` and ``/`` the same holds on the nonzero
  residues in discrete-log order (``discrete_log_order``), where multiplication is
  addition mod ``p - 1``. The ``circulant_deviation`` a run reports is that of ``ab``: at
  ``M = I`` every diagonal block is already circulant, so only ``ab``, which holds no energy
  at first, shows the features form (the diagonal blocks are reported too).
- ``alignment(A, B)``: ``<A, B>_F / (||A||_F ||B||_F)``, the cosine between the two
  matrices (1 when proportional); reported against the final metric.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax.followups.modular_task import MODULAR_OPS, modular_arithmetic
from dnc_jax.gradient_outer_product import (
    AGOP_BATCH,
    per_class_kernel_agop,
    power_from_eigh,
    psd_eigh,
)
from dnc_jax.kernels import Kernel, kernel_names
from dnc_jax.option_fields import option
from dnc_jax.precision import einsum, matmul
from dnc_jax.rfm import fit_with_agop_checked, rfm_loop
from dnc_jax.solvers import SolveInfo, SolverOptions

OPS = tuple(MODULAR_OPS)
GROKKING_KERNELS = ("gaussian", "laplace", "quadratic", "relu_ntk")  # the published --kernel_type


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % q for q in range(2, int(p**0.5) + 1))


@dataclasses.dataclass(frozen=True)
class GrokkingConfig:
    """The published RFM settings (``nmallinar/rfm-grokking``, ``train_kernel.py``):

    - ``p = 61`` (line 114), ``op = "+"`` (line 113, ``"x+y"``), ``train_fraction = 0.5``
      (line 115; the split is ``int(fraction * pairs)`` random pairs, ``data.py`` lines
      103-110; ours is seeded), ``iters = 50`` (line 116);
    - Gaussian kernel ``exp(-||x - z||_M^2 / (2 L^2))`` (line 119; ``models/gaussian_kernel.py``
      lines 36-47) with ``L = bandwidth = 2.5`` (line 118) and ridge ``reg = 0`` (line 117;
      solved directly, line 78); ``kernel`` ``"laplace"`` (``models/laplace_kernel.py``
      ``laplacian_M``: ``exp(-||x - z||_M / L)``) or ``"quadratic"``
      (``models/quadratic_kernel.py`` ``quadratic_M``: ``3 (x^T M z)^2``) as
      ``--kernel_type`` (line 120) chooses; or ``"relu_ntk"``, the NTK of a one-hidden-layer
      bias-free ReLU network (``kernels.ArcCosine``, on ``x M^(1/2)``). Not the published
      ``jax_ntk_nngp``, which is the NTK of a network with quadratic units
      (``models/jax_ntk_nngp.py`` lines 23-38) and whose update the repository's README
      marks as not working;
    - 0/1 one-hot targets and one-hot inputs of size ``2p`` (lines 142-146), float64
      (line 18);
    - centred gradients (line 177, ``centering=True``; ``gaussian_kernel.py`` line 92:
      the mean Jacobian over the training points is subtracted);
    - next metric ``M = AGOP^metric_power`` with ``metric_power = 0.5`` (line 123,
      ``--agop_power``; ``gaussian_kernel.py`` lines 119-120, ``sqrtm``), not normalised. In
      ``RFM``'s naming (the kernel sees ``x AGOP^p``) this is ``agop_power = 1/4``.
    """

    p: int = option(61, "prime modulus")
    op: str = option("+", "the operation mod p", choices=OPS)
    train_fraction: float = option(0.5, "share of the p^2 pairs trained on")
    iters: int = option(50, "RFM iterations")
    kernel: str = option("gaussian", "the kernel (train_kernel.py --kernel_type): gaussian "
                                     "exp(-||x - z||_M^2 / (2 L^2)), laplace "
                                     "exp(-||x - z||_M / L), quadratic 3 (x^T M z)^2, "
                                     "relu_ntk the one-hidden-layer ReLU NTK on x M^(1/2) "
                                     "(the published four; any registered kernel runs)",
                         choices=kernel_names)
    bandwidth: float = option(2.5, "the Gaussian and Laplace kernels' bandwidth L")
    reg: float = option(0.0, "ridge")
    metric_power: float = option(0.5, "next metric M = AGOP^metric_power (the published "
                                      "--agop_power)")
    centered: bool = option(True, "centre the gradients (subtract their mean Jacobian)")
    seed: int = option(0, "seeds the train/test split")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for an invalid field (run when the configuration is built)."""
        if self.kernel not in kernel_names():
            raise ValueError(f"kernel must be one of {kernel_names()}; got {self.kernel!r}.")
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}; got {self.op!r}.")
        if not _is_prime(int(self.p)):
            raise ValueError(f"p must be a prime (the task is arithmetic mod p); got {self.p}.")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1); got {self.train_fraction}.")
        if self.iters < 1:
            raise ValueError(f"iters must be >= 1; got {self.iters}.")
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0; got {self.bandwidth}.")
        if not self.reg >= 0:
            raise ValueError(f"reg must be >= 0; got {self.reg}.")
        if not self.metric_power > 0:
            raise ValueError(f"metric_power must be > 0; got {self.metric_power}.")


# ------------------------------------------------------------------------ structure


def primitive_root(p: int) -> int:
    """The smallest generator of the multiplicative group mod the prime ``p``."""
    if not _is_prime(p):
        raise ValueError(f"p must be a prime; got {p}.")
    if p == 2:
        return 1
    factors = {q for q in range(2, p) if (p - 1) % q == 0 and _is_prime(q)}
    for g in range(2, p):
        if all(pow(g, (p - 1) // q, p) != 1 for q in factors):
            return g
    raise AssertionError("unreachable: every prime has a primitive root")


def discrete_log_order(p: int) -> np.ndarray:
    """The nonzero residues in discrete-log order: ``order[k] = g^k mod p`` for
    ``k = 0 .. p-2`` (``g = primitive_root(p)``). Indexing a table of ``a * b`` by it turns
    products into sums of exponents mod ``p - 1``."""
    g = primitive_root(p)
    return np.array([pow(g, k, p) for k in range(p - 1)], dtype=np.int64)


def circulant_projection(A: np.ndarray) -> np.ndarray:
    """The nearest circulant matrix to the square ``A`` in Frobenius norm: each wrapped
    diagonal ``{A[i, (i + k) mod n]}`` replaced by its mean."""
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    i = np.arange(n)[:, None]
    shift = (np.arange(n)[None, :] - i) % n  # diagonal index of each entry
    means = np.bincount(shift.ravel(), weights=A.ravel(), minlength=n) / n
    return means[shift]


def circulant_deviation(A: np.ndarray) -> float:
    """``||A - circ(A)||_F^2 / ||A||_F^2`` (module docstring); 0 for a zero matrix."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix; got shape {A.shape}.")
    total = float(np.sum(A * A))
    return float(np.sum((A - circulant_projection(A)) ** 2)) / total if total > 0 else 0.0


def task_blocks(M: np.ndarray, p: int, op: str) -> dict[str, np.ndarray]:
    """The ``aa``, ``bb`` and ``ab`` blocks of a ``2p x 2p`` metric, indexed so that the
    ideal metric's blocks are circulant (module docstring)."""
    M = np.asarray(M, dtype=np.float64)
    if M.shape != (2 * p, 2 * p):
        raise ValueError(f"M must be ({2 * p}, {2 * p}) for p = {p}; got {M.shape}.")
    idx = discrete_log_order(p) if op in ("*", "/") else np.arange(p)
    aa = M[np.ix_(idx, idx)]
    bb = M[np.ix_(p + idx, p + idx)]
    ab = M[np.ix_(idx, p + idx)]
    if op in ("-", "/"):  # f depends on a - b (or log a - log b): reverse b's order
        ab = ab[:, ::-1]
    return {"aa": aa, "bb": bb, "ab": ab}


def block_deviations(M: np.ndarray, p: int, op: str) -> dict[str, float]:
    """``circulant_deviation`` of each of ``task_blocks``."""
    return {name: circulant_deviation(B) for name, B in task_blocks(M, p, op).items()}


def alignment(A: np.ndarray, B: np.ndarray) -> float:
    """``<A, B>_F / (||A||_F ||B||_F)``."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    denom = np.linalg.norm(A) * np.linalg.norm(B)
    return float(np.sum(A * B) / denom) if denom > 0 else 0.0


def fourier_power(M: np.ndarray, p: int, op: str, block: str = "ab") -> np.ndarray:
    """``|F B F^*|_kk`` per frequency ``k`` of one of ``task_blocks`` (default ``ab``, the
    block that carries the learned features; ``(p,)``, or ``(p - 1,)`` in discrete-log
    order for ``*`` and ``/``), with ``F`` the unitary DFT: for a circulant ``B`` these are
    the magnitudes of its eigenvalues, the weight of each Fourier feature."""
    B = task_blocks(M, p, op)[block]
    F = np.fft.fft(np.eye(B.shape[0])) / np.sqrt(B.shape[0])
    return np.abs(np.diag(F @ B @ F.conj().T))


# ------------------------------------------------------------------------ the RFM


def grokking_data(config: GrokkingConfig):
    """``(X_train, Y_train, y_train, X_test, Y_test, y_test)`` in float64, ``Y`` 0/1 one-hot."""
    X, y, Xt, yt = modular_arithmetic(config.p, config.op, config.train_fraction, config.seed)
    eye = np.eye(config.p)
    return (X.astype(np.float64), eye[y], y, Xt.astype(np.float64), eye[yt], yt)


def _scores(pred: np.ndarray, Y: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(accuracy, mean squared error over all entries)`` as ``train_kernel.py`` lines 24-38."""
    return float(np.mean(np.argmax(pred, axis=1) == y)), float(np.mean((pred - Y) ** 2))


class GrokkingIteration(NamedTuple):
    """One RFM iteration of the grokking run (``grokking_steps``).

    ``iter`` (``t``); the train and test accuracy and mean squared error (``_scores``) of
    the machine fitted in the metric ``M_t``; the structure of the next metric
    ``M_{t+1}``: ``block_deviations`` (``aa``, ``bb``, ``ab``), ``circulant_deviation``
    (its ``ab`` block), ``trace`` (of ``M_{t+1}``); ``top_eigenvalues`` (the 8 largest of
    the AGOP ``M_{t+1}`` is a power of);
    ``solve_seconds`` (kernel and solve); ``alignment`` of ``M_{t+1}`` with the run's last
    metric, set when the run ends (``add_alignment``), ``None`` before.
    """

    iter: int
    train_accuracy: float
    train_loss: float
    test_accuracy: float
    test_loss: float
    block_deviations: dict[str, float]
    circulant_deviation: float
    trace: float
    top_eigenvalues: list[float]
    solve_seconds: float
    alignment: float | None = None

    def to_json(self) -> dict:
        """The record as ``results.json`` holds it (no ``alignment`` key before it is set)."""
        data = self._asdict()
        if self.alignment is None:
            del data["alignment"]
        return data

    @classmethod
    def from_json(cls, data: dict) -> GrokkingIteration:
        """The record from its ``to_json`` form."""
        return cls(**data)


def grokking_steps(config: GrokkingConfig, *, start: int = 0, M: np.ndarray | None = None):
    """Yield ``(GrokkingIteration, M_next)`` for iterations ``start .. iters-1`` (module
    docstring).

    ``M`` is the metric iteration ``start`` uses (identity when ``start == 0``); the run
    is deterministic, so resuming from a saved ``M_next`` equals an uninterrupted run.
    """
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("grokking runs in float64, as published: call "
                         "jax.config.update('jax_enable_x64', True) first.")
    X, Y, y, Xt, Yt, yt = grokking_data(config)
    M = np.eye(X.shape[1]) if M is None else np.asarray(M, np.float64)
    Xj, Xtj = jnp.asarray(X), jnp.asarray(Xt)
    direct = SolverOptions("cholesky")
    kernel = Kernel(config.kernel, config.bandwidth)  # checked with the configuration

    def step(T, _):  # the task's rows, finite by construction: no check per step
        return fit_with_agop_checked(matmul(Xj, T), jnp.asarray(Y, Xj.dtype), kernel, config.reg,
                                     transform=T, centered=config.centered, solver=direct,
                                     batch_size=AGOP_BATCH)

    def next_metric(A):
        return power_from_eigh(*psd_eigh(A), config.metric_power)

    # the kernel in the metric M is the kernel on x T, T = M^(1/2) (RFM's step); T is
    # taken from M alone, so that a run resumed from a saved M repeats it to the bit
    def root(M):
        return jnp.asarray(power_from_eigh(*psd_eigh(M), 0.5))

    for s in rfm_loop(step, lambda A: root(next_metric(A)), config.iters - start, root(M)):
        T, info = s.transform, cast(SolveInfo, s.info)  # the step says how it solved
        train_acc, train_loss = _scores(np.asarray(s.predictor.predict(Xj, transform=T)), Y, y)
        test_acc, test_loss = _scores(np.asarray(s.predictor.predict(Xtj, transform=T)), Yt, yt)
        evals, evecs = psd_eigh(s.agop)
        M = power_from_eigh(evals, evecs, config.metric_power)  # next_metric(A), bit for bit
        blocks = block_deviations(M, config.p, config.op)
        record = GrokkingIteration(
            iter=start + s.step, train_accuracy=train_acc, train_loss=train_loss,
            test_accuracy=test_acc, test_loss=test_loss, block_deviations=blocks,
            circulant_deviation=blocks["ab"], trace=float(np.trace(M)),
            top_eigenvalues=np.sort(evals)[::-1][:8].tolist(),
            solve_seconds=info.kernel_seconds + info.solve_seconds)
        yield record, M


def per_class_agops(config: GrokkingConfig, M: np.ndarray | None = None) -> np.ndarray:
    """The per-class AGOPs (``(p, 2p, 2p)``, float64) of the machine fitted in the metric
    ``M`` (default the identity, iteration 0), at the training points, centred as
    ``config.centered``: class ``c``'s AGOP from the gradients of output ``c`` only, so
    that they sum to the AGOP ``grokking_steps`` takes (``per_class_kernel_agop``). The
    published code reports their square roots (``models/gaussian_kernel.py`` lines
    107-117): ``power_from_eigh(*psd_eigh(A_c), 0.5)``."""
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("grokking runs in float64: call "
                         "jax.config.update('jax_enable_x64', True) first.")
    X, Y, *_ = grokking_data(config)
    M = np.eye(X.shape[1]) if M is None else np.asarray(M, np.float64)
    T = jnp.asarray(power_from_eigh(*psd_eigh(M), 0.5))
    Z = matmul(jnp.asarray(X), T)
    predictor, _, _ = fit_with_agop_checked(
        Z, jnp.asarray(Y, Z.dtype), Kernel(config.kernel, config.bandwidth), config.reg,
        centered=config.centered, solver=SolverOptions("cholesky"), batch_size=AGOP_BATCH)
    per = per_class_kernel_agop(predictor, Z, centered=config.centered)
    return np.asarray(einsum("de,cef,fg->cdg", T, per, T))  # w.r.t. x: T A_z T


def grokking_rfm(config: GrokkingConfig = GrokkingConfig()
                 ) -> tuple[list[GrokkingIteration], list[np.ndarray]]:
    """Run every iteration: ``(records, metrics M_1 .. M_iters)``, each record with its
    ``alignment`` to the final metric set."""
    records, metrics = [], []
    for record, M in grokking_steps(config):
        records.append(record)
        metrics.append(M)
    return add_alignment(records, metrics), metrics


def add_alignment(records: list[GrokkingIteration], metrics: list[np.ndarray]
                  ) -> list[GrokkingIteration]:
    """The records with their ``alignment`` (of each one's ``M_{t+1}`` with the last metric)."""
    return [r._replace(alignment=alignment(M, metrics[-1]))
            for r, M in zip(records, metrics, strict=True)]


def first_iteration_above(records: list[GrokkingIteration], field: str, level: float
                          ) -> int | None:
    """The first ``iter`` whose ``field`` (e.g. ``"test_accuracy"``) exceeds ``level``
    (``None`` if never)."""
    return next((r.iter for r in records if getattr(r, field) > level), None)
