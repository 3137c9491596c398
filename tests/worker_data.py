"""The data and configuration shared by the distributed test and its worker processes."""

import numpy as np

from dnc_jax.data import load_dataset, prepare
from dnc_jax.deep_rfm_model import DeepRFMConfig


def small_digits():
    """402 standardised digits (not a multiple of the 4 devices: padding is exercised)."""
    X, y = load_dataset("digits", "train", 402)
    data = prepare(X, y)
    return data.X_train.astype(np.float32), data.y_train


def layer_config() -> dict:
    return dict(depth=1, width=64, solver="cg", precond_rank=100, tol=1e-7)


def run_options() -> dict:
    """``run_deep_rfm``'s data and configuration in the two-process run test: 402 shifted
    MNIST training images (padded to 404 rows, 202 a process) and 101 test images."""
    return dict(dataset="mnist_shifted", n=402, n_test=101,
                config=DeepRFMConfig(**{**layer_config(), "depth": 2}))
