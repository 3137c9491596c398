"""Each process's own rows of a dataset, for runs of several processes (DESIGN.md, Scale:
"each host loading its own rows").

Process ``k`` of ``P`` owns rows ``local_row_range(n, mesh)`` of the zero-padded global
array (``sharding``): it reads or builds only those (``data.load_dataset_rows``),
standardises them with the training mean and std that every process computes from the
per-process float64 sums (reduced across processes, so the statistics equal those of the
whole split up to the order of summation), and places them on its devices as ``Rows``.
The labels (8 bytes a row) are gathered to every process: the class statistics, the
preparation and the per-class Gram rows need them; the features never are.

Byte-exact gathers: ``multihost_utils.process_allgather`` turns numpy arrays into JAX
arrays, which would round float64 to float32 without ``jax_enable_x64``; ``allgather``
gathers the bytes instead.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from dnc_jax.data import (
    apply_standardization,
    check_test_statistics,
    has_test_split,
    load_dataset_rows,
)
from dnc_jax.sharding import Rows, local_row_range, padded_rows, put_local_rows

UNSUPPORTED_OPTIONS = ("balanced", "sort_by_class")


class ProcessData(NamedTuple):
    """``prepare``'s output where each process holds only its feature rows: ``X_train`` /
    ``X_test`` are ``Rows`` on the mesh, the labels are whole ``(n,)`` int64 arrays."""

    X_train: Rows
    y_train: np.ndarray
    X_test: Rows | None
    y_test: np.ndarray | None
    num_classes: int


def allgather(x: np.ndarray) -> np.ndarray:
    """Every process's ``x`` (same shape and dtype on each), stacked in process order:
    ``(P, *x.shape)``, bytes unchanged."""
    x = np.ascontiguousarray(x)
    if jax.process_count() == 1:
        return x[None]
    from jax.experimental import multihost_utils

    raw = np.frombuffer(x.tobytes(), np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(raw))
    return np.stack([row.view(x.dtype).reshape(x.shape) for row in gathered])


def process_sum(x: np.ndarray) -> np.ndarray:
    """The sum over processes of each process's ``x``, added in process order."""
    return allgather(x).sum(axis=0)


def global_statistics(X_local: np.ndarray, n: int, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (``1/(n - ddof)``) of the rows all processes hold together
    (``n`` of them; ``X_local``: this process's real rows), in float64, by two passes as
    ``data.feature_statistics`` computes them."""
    X = np.asarray(X_local, dtype=np.float64)
    mean = process_sum(X.sum(axis=0)) / n
    var = process_sum(((X - mean) ** 2).sum(axis=0)) / (n - ddof)
    return mean, np.sqrt(var)


class _Share(NamedTuple):
    """One split as this process holds it: its real rows ``X``, ``y``, the split's ``n``
    rows and the ``rows`` each process holds once padded."""

    X: np.ndarray
    y: np.ndarray
    n: int
    rows: int


def _labels(share: _Share) -> np.ndarray:
    padded = np.full(share.rows, -1, np.int64)
    padded[: len(share.y)] = share.y
    return allgather(padded).reshape(-1)[: share.n]


def _place(share: _Share, mesh: Mesh) -> Rows:
    block = np.zeros((share.rows, share.X.shape[1]), np.float32)
    block[: len(share.X)] = share.X
    return Rows(put_local_rows(block, mesh, share.n), share.n)


def load_process_data(dataset: str, n: int | None, n_test: int | None, data_dir: str | None,
                      seed: int, prepare_options: dict | None, download: bool, mesh: Mesh
                      ) -> ProcessData:
    """``experiments.common.load_prepared`` with each process loading only its rows.

    ``prepare_options`` as ``prepare`` takes them, except ``balanced`` and
    ``sort_by_class``, which choose rows by the labels of all of them (a ``ValueError``).
    """
    options = dict(prepare_options or {})
    asked = [k for k in UNSUPPORTED_OPTIONS if options.pop(k, False)]
    if asked:
        raise ValueError(f"{', '.join(asked)} cannot be used when each process loads only its "
                         "own rows (several processes); prepare the data beforehand.")
    standardize = options.pop("standardize_features", True)
    test_statistics = options.pop("test_statistics", "train")
    num_classes = options.pop("num_classes", None)
    ddof = options.pop("ddof", 0)
    if options:
        raise ValueError(f"Unknown preparation options {sorted(options)}.")
    check_test_statistics(test_statistics)

    def share(split: str, count: int | None) -> _Share:
        X, y, total = load_dataset_rows(dataset, split, count,
                                        lambda total: local_row_range(total, mesh),
                                        data_dir=data_dir, seed=seed, download=download)
        return _Share(X, y, total, padded_rows(total, mesh) // jax.process_count())

    train = share("train", n)
    test = share("test", n_test) if has_test_split(dataset) else None
    if standardize:
        stats = global_statistics(train.X, train.n, ddof)
        if test is not None:
            own = global_statistics(test.X, test.n, ddof) if test_statistics == "own" else stats
            test = test._replace(X=apply_standardization(test.X, *own))
        train = train._replace(X=apply_standardization(train.X, *stats))
    y_train = _labels(train)
    y_test = None if test is None else _labels(test)
    C = int(num_classes or max(y_train.max(), -1 if y_test is None else y_test.max()) + 1)
    return ProcessData(_place(train, mesh), y_train,
                       None if test is None else _place(test, mesh), y_test, C)
