"""Class labels as the core takes them: 1-D int64 labels ``0..C-1`` checked once
(``as_class_labels``) and their ``{-1, +1}`` one-hot targets (``one_hot_pm1``)."""

from __future__ import annotations

import numpy as np


def as_class_labels(name: str, y) -> np.ndarray:
    """``y`` as 1-D int64 class labels ``0..C-1``, or one ``ValueError`` naming ``name``
    (integral floats are accepted; negative, fractional or non-finite labels are not)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        raise ValueError(f"{name} must be 1-D integer class labels; got shape {y.shape} (one-hot "
                         f"or {{-1, +1}} targets? pass their argmax along axis 1).")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class labels; got shape {y.shape}.")
    if y.size and not (np.issubdtype(y.dtype, np.integer)
                       or (np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all()
                           and np.all(y == np.round(y)))):
        raise ValueError(f"{name} must hold integer class labels 0..C-1; got {y.dtype} values "
                         "(encode other labels first, e.g. sklearn.preprocessing.LabelEncoder).")
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must hold class labels 0..C-1 (>= 0); got {int(y.min())}.")
    return y.astype(np.int64)


def one_hot_pm1(y: np.ndarray, num_classes: int) -> np.ndarray:
    """``(n,)`` labels to ``(n, C)`` float32 targets: ``+1`` for the class, ``-1`` elsewhere."""
    return np.where(np.arange(num_classes)[None, :] == np.asarray(y)[:, None], 1.0, -1.0).astype(
        np.float32
    )
