"""Which solver ``solver="auto"`` stands for, and whether the exact path fits the memory.

``solver="auto"`` takes ``"nystrom"`` when ``centers`` is given, ``"cg"`` on a mesh of
several devices, and on one device ``"cholesky"`` while the exact path fits the memory
that is free (``available_memory``: the device's free memory on a GPU or TPU, the host's
``MemAvailable`` on a CPU) and, on a CPU, ``n <= AUTO_CHOLESKY_MAX_N`` = 20,000 (a 1.6 GB
float32 matrix; BENCHMARKS.md, "RFM fit at scale"); ``"cg"`` otherwise.

The exact path's peak (``cholesky_peak_matrices``), in ``n x n`` buffers (the kernel
matrix, and the factorisation's copies and output), was measured by
``benchmarks/cholesky_memory.py``: on a CPU ``CHOLESKY_PEAK_MATRICES``, or
``CHOLESKY_AGOP_PEAK_MATRICES`` where ``fit_with_agop`` keeps the gradient weights too; on
an accelerator ``ACCELERATOR_CHOLESKY_PEAK_MATRICES`` for both, the smallest value that
refuses every size that ran out of memory there (the measurements: BENCHMARKS.md, "The
exact path's memory on a GPU"). An explicit ``solver="cholesky"`` that would not fit raises
a ``ValueError`` before any work.

Past ``LAPACK_CHOLESKY_MAX_N`` rows a CPU factors in blocks (LAPACK only on the diagonal
blocks, ``solvers.cholesky``): the LAPACK that jaxlib calls on a CPU crashed the process in
``spotrf`` above it (BENCHMARKS.md, "RFM fit at scale").
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh

from dnc_jax.sharding import num_shards

SOLVERS = ("auto", "cholesky", "cg", "nystrom")
AUTO_CHOLESKY_MAX_N = 20_000  # on a CPU backend
# n x n buffers at the exact path's peak, measured (module docstring)
CHOLESKY_PEAK_MATRICES = 3.4  # on a CPU
CHOLESKY_AGOP_PEAK_MATRICES = 4.4  # on a CPU, with the AGOP's gradient weights held too
ACCELERATOR_CHOLESKY_PEAK_MATRICES = 4.4  # on a GPU (measured) or TPU (assumed), either path
CPU_FALLBACK_BUDGET = 4 * 2**30  # bytes, where the host's free memory is unknown

def default_memory_budget() -> int:
    """Bytes of kernel rows a device may hold: half of its memory where JAX reports it
    (GPUs, TPUs); on a CPU, half of the host's free memory (``available_memory``) shared
    by the local CPU devices, else ``CPU_FALLBACK_BUDGET`` (4 GiB) when it is unknown."""
    devices = jax.local_devices()
    stats = devices[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if limit:
        return int(limit) // 2
    free = available_memory()
    return CPU_FALLBACK_BUDGET if free is None else free // (2 * len(devices))


def available_memory() -> int | None:
    """Bytes free for new arrays on the default device: its limit less what is in use where
    JAX reports them (GPUs, TPUs), else the host's ``MemAvailable`` (Linux); ``None`` when
    neither is known."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cholesky_peak_matrices(agop: bool = False) -> float:
    """``n x n`` buffers the exact path holds at its peak on the default backend (module
    docstring); ``agop``: ``fit_with_agop`` holding the AGOP's gradient weights as well."""
    if jax.default_backend() != "cpu":
        return ACCELERATOR_CHOLESKY_PEAK_MATRICES
    return CHOLESKY_AGOP_PEAK_MATRICES if agop else CHOLESKY_PEAK_MATRICES


def cholesky_fits(n: int, itemsize: int, matrices: float) -> tuple[bool, int, int | None]:
    """Whether ``matrices`` buffers of ``n x n`` of ``itemsize`` bytes fit the free memory:
    ``(fits, bytes needed, bytes free or None)``; unknown free memory counts as fitting."""
    need = int(matrices * n * n * itemsize)
    free = available_memory()
    return free is None or need <= free, need, free


def check_cholesky(n: int, itemsize: int, matrices: float | None = None) -> None:
    """A ``ValueError`` before any work when the exact path's peak (``matrices`` ``n x n``
    buffers; ``None``: a fit's, ``cholesky_peak_matrices()``) does not fit the free memory."""
    matrices = cholesky_peak_matrices() if matrices is None else matrices
    fits, need, free = cholesky_fits(n, itemsize, matrices)
    if not fits:
        raise ValueError(
            f"solver='cholesky' at n = {n} needs about {need / 2**30:.1f} GiB ({matrices:g} "
            f"n x n matrices: the kernel matrix and its factorisation) but {(free or 0) / 2**30:.1f} "
            "GiB is free; use solver='cg' (the same solution; memory_budget bounds the kernel "
            "rows it holds) or centers=m (a Nyström machine).")


def choose_solver(solver: str, n: int, mesh: Mesh | None, centers, *, itemsize: int = 4,
                  matrices: float | None = None) -> str:
    """The solver ``"auto"`` stands for (module docstring) for ``n`` rows of ``itemsize``
    bytes, the exact path holding ``matrices`` ``n x n`` buffers (``None``: a fit's,
    ``cholesky_peak_matrices()``); checks the name."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}.")
    if solver != "auto":
        if solver == "nystrom" and centers is None:
            raise ValueError("solver='nystrom' needs centers (an int m, or an (m, d) array).")
        return solver
    if centers is not None:
        return "nystrom"
    if mesh is not None and num_shards(mesh) > 1:
        return "cg"
    if jax.default_backend() == "cpu" and n > AUTO_CHOLESKY_MAX_N:
        return "cg"
    matrices = cholesky_peak_matrices() if matrices is None else matrices
    return "cholesky" if cholesky_fits(n, itemsize, matrices)[0] else "cg"
