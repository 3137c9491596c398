"""load_dataset: the embedded sets, names and bad arguments."""

import numpy as np
import pytest

from dnc_jax import load_dataset


def test_mnist5k_offline():
    X, y = load_dataset("mnist5k", split="all")
    assert X.shape == (5000, 784) and X.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 500))
    assert X.min() == 0 and X.max() == 255
    Xtr, ytr = load_dataset("mnist5k")
    Xte, yte = load_dataset("mnist5k", split="test")
    assert Xtr.shape == (4000, 784) and Xte.shape == (1000, 784)
    np.testing.assert_array_equal(np.bincount(yte), np.full(10, 100))
    # the split is a partition of the 5,000 images, and the first n mix the classes
    rows = {r.tobytes() for r in np.concatenate([Xtr, Xte])}
    assert len(rows) == len({r.tobytes() for r in X})
    assert len(np.unique(ytr[:50])) == 10
    np.testing.assert_array_equal(load_dataset("mnist5k", n=100)[0], Xtr[:100])


def test_digits_and_bad_arguments():
    X, y = load_dataset("digits", split="all")
    assert X.shape == (1797, 64) and set(np.unique(y)) == set(range(10))
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="only"):
        load_dataset("digits", n=10**6)
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", split="val")
