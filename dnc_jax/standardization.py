"""The per-feature standardisation a model carries with it, to map new raw rows as its
training rows were mapped (``Standardization``; ``data.prepare`` makes one)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Standardization(NamedTuple):
    """What ``prepare`` did to the training features, to do again to new raw rows:
    ``x -> (input_scale x - mean) / std`` per feature (``std = 0``: the feature is 0).
    ``mean``, ``std``: ``(d,)`` float64 (``None`` when ``prepare`` did not standardise)."""

    mean: np.ndarray | None
    std: np.ndarray | None
    input_scale: float = 1.0

    def apply(self, X) -> np.ndarray:
        """Raw rows ``(m, d)`` prepared as the training rows were, float32."""
        X = np.asarray(X, dtype=np.float64) * self.input_scale
        if self.mean is None or self.std is None:
            return X.astype(np.float32)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"X must be (m, {self.mean.shape[0]}) raw rows; got shape {X.shape}.")
        return apply_standardization(X, self.mean, self.std)


def apply_standardization(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(X - mean) / std`` per feature in float64, features with ``std = 0`` set to 0;
    float32."""
    live = std > 0
    return np.where(live, (np.asarray(X, dtype=np.float64) - mean) / np.where(live, std, 1.0),
                    0.0).astype(np.float32)
