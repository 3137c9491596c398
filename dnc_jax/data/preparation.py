"""The Deep RFM paper's data preparation: the first ``n`` samples (or a class-balanced
subsample), per-feature standardisation, ``{-1, +1}`` one-hot targets (``prepare``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dnc_jax.labels import as_class_labels, one_hot_pm1
from dnc_jax.standardization import Standardization, apply_standardization


class PreparedData(NamedTuple):
    """Output of ``prepare``: standardised features, ``{-1,+1}`` targets, integer labels,
    and the ``Standardization`` that maps new raw rows as the training rows were mapped
    (``deep_rfm(..., preparation=data.standardization)`` keeps it with the model)."""

    X_train: np.ndarray  # (n, d) float32
    Y_train: np.ndarray  # (n, C) float32 in {-1, +1}
    y_train: np.ndarray  # (n,) int64
    X_test: np.ndarray | None
    Y_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int
    standardization: Standardization | None = None


TEST_STATISTICS = ("train", "own")


def check_test_statistics(test_statistics: str) -> None:
    """``ValueError`` unless ``test_statistics`` is one of ``TEST_STATISTICS``."""
    if test_statistics not in TEST_STATISTICS:
        raise ValueError(f"test_statistics must be one of {TEST_STATISTICS}; got {test_statistics!r}.")


def standardize(X_train: np.ndarray, X_test: np.ndarray | None = None, *,
                test_statistics: str = "train", ddof: int = 0):
    """Per-feature ``(x - mean) / std``; zero-variance features become 0.

    ``test_statistics="train"`` standardises ``X_test`` with the training mean and std (the
    default); ``"own"`` with its own, as the official Deep RFM script does (its
    ``preprocess`` is applied to each split separately). ``ddof``: the standard deviation's
    divisor ``n - ddof`` (``feature_statistics``).

    Returns ``(X_train, X_test)`` (``X_test`` ``None`` if not given), float32.
    """
    check_test_statistics(test_statistics)

    def fit(X):
        mean, std = feature_statistics(X, ddof)
        return lambda Z: apply_standardization(Z, mean, std)

    apply = fit(X_train)
    if X_test is None:
        return apply(X_train), None
    return apply(X_train), (apply if test_statistics == "train" else fit(X_test))(X_test)


def feature_statistics(X: np.ndarray, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of ``X``, float64 ``(d,)`` each; the
    deviation divides by ``n - ddof`` (``0``: the population one; ``1``: ``torch.std``'s
    default, which the official scripts' ``preprocess`` uses)."""
    X = np.asarray(X, dtype=np.float64)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1; got {ddof!r}.")
    if ddof == 1 and X.shape[0] < 2:
        raise ValueError("The unbiased standard deviation (ddof=1) needs at least 2 rows.")
    return X.mean(axis=0), X.std(axis=0, ddof=ddof)


def balanced_indices(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices with (as nearly as possible) equal counts per class, random per ``seed``."""
    y = np.asarray(y)
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    quota = np.full(len(classes), n // len(classes))
    quota[: n % len(classes)] += 1
    if any(q > len(idx) for q, idx in zip(quota, per_class, strict=True)):
        raise ValueError(f"Cannot draw a class-balanced subsample of {n}: a class is too small.")
    return np.sort(np.concatenate([idx[:q] for q, idx in zip(quota, per_class, strict=True)]))


def prepare(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    n: int | None = None,
    balanced: bool = False,
    seed: int = 0,
    standardize_features: bool = True,
    sort_by_class: bool = False,
    test_statistics: str = "train",
    num_classes: int | None = None,
    input_scale: float = 1.0,
    ddof: int = 0,
) -> PreparedData:
    """The paper's preparation, step by step (each step optional).

    Host-side (numpy); not traceable.

    0. multiply both splits by ``input_scale`` (``1/255``: torchvision's ``ToTensor``,
       8-bit pixels to ``[0, 1]``);
    1. keep the first ``n`` training samples (or, with ``balanced``, a class-balanced
       random subsample drawn with ``seed``);
    2. standardise each feature with the training mean and std (zero-variance -> 0; the
       test split with its own statistics when ``test_statistics="own"``; the std divides
       by ``n - ddof``: ``ddof=1`` is ``torch.std``'s, as the official scripts);
    3. optionally sort the training samples by class;
    4. labels to ``{-1, +1}`` one-hot targets.
    """
    X_train = np.asarray(X_train)
    y_train = as_class_labels("y_train", y_train)
    y_test = None if y_test is None else as_class_labels("y_test", y_test)
    if X_train.shape[0] != y_train.shape[0]:
        raise ValueError(f"X_train has {X_train.shape[0]} rows but y_train has {y_train.shape[0]}.")
    if (X_test is None) != (y_test is None):
        raise ValueError("Pass both X_test and y_test, or neither.")
    if not (np.isfinite(input_scale) and input_scale > 0):
        raise ValueError(f"input_scale must be a positive finite number; got {input_scale!r}.")
    if input_scale != 1.0:
        X_train = X_train.astype(np.float64) * input_scale
        X_test = None if X_test is None else np.asarray(X_test, np.float64) * input_scale
    if n is not None:
        if not 1 <= n <= X_train.shape[0]:
            raise ValueError(f"n={n} must be between 1 and the {X_train.shape[0]} training samples.")
        keep = balanced_indices(y_train, n, seed) if balanced else np.arange(n)
        X_train, y_train = X_train[keep], y_train[keep]
    mean = std = None
    if standardize_features:
        mean, std = feature_statistics(X_train, ddof)
        X_train, X_test = standardize(X_train, X_test, test_statistics=test_statistics,
                                      ddof=ddof)
    if sort_by_class:
        order = np.argsort(y_train, kind="stable")
        X_train, y_train = X_train[order], y_train[order]
    C = int(num_classes or max(y_train.max(), -1 if y_test is None else np.max(y_test)) + 1)
    return PreparedData(
        np.asarray(X_train, dtype=np.float32),
        one_hot_pm1(y_train, C),
        y_train.astype(np.int64),
        None if X_test is None else np.asarray(X_test, dtype=np.float32),
        None if y_test is None else one_hot_pm1(y_test, C),
        None if y_test is None else np.asarray(y_test).astype(np.int64),
        C,
        Standardization(mean, std, float(input_scale)),
    )
