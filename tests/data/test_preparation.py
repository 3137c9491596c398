"""prepare: the paper's standardisation, subsampling and targets."""

import numpy as np
import pytest

from dnc_jax import prepare
from dnc_jax.data import balanced_indices, one_hot_pm1


def test_prepare_matches_numpy(rng):
    X = rng.standard_normal((50, 6)).astype(np.float32) * 3 + 1
    X[:, 2] = 4.0  # zero variance
    y = rng.integers(0, 3, 50)
    Xt = rng.standard_normal((10, 6)).astype(np.float32)
    yt = rng.integers(0, 3, 10)
    data = prepare(X, y, Xt, yt, n=40)
    mean, std = X[:40].astype(np.float64).mean(0), X[:40].astype(np.float64).std(0)
    expect = (X[:40] - mean) / np.where(std > 0, std, 1)
    expect[:, 2] = 0
    np.testing.assert_allclose(data.X_train, expect, rtol=1e-5, atol=1e-6)
    expect_t = (Xt - mean) / np.where(std > 0, std, 1)
    expect_t[:, 2] = 0
    np.testing.assert_allclose(data.X_test, expect_t, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(data.Y_train, np.where(np.eye(3)[y[:40]] > 0, 1.0, -1.0))
    assert data.num_classes == 3
    sorted_data = prepare(X, y, sort_by_class=True)
    assert np.all(np.diff(sorted_data.y_train) >= 0)
    idx = balanced_indices(np.repeat(np.arange(3), 20), 30, seed=1)
    np.testing.assert_array_equal(np.bincount(np.repeat(np.arange(3), 20)[idx]), [10, 10, 10])
    assert one_hot_pm1(np.array([1]), 3).tolist() == [[-1.0, 1.0, -1.0]]
    with pytest.raises(ValueError, match="n="):
        prepare(X, y, n=51)


def test_standardize_test_with_own_statistics(rng):
    X = rng.standard_normal((40, 5)) * 3 + 1
    Xt = rng.standard_normal((20, 5)) * 2 - 4
    from dnc_jax.data import standardize

    _, own = standardize(X, Xt, test_statistics="own")
    np.testing.assert_allclose(own.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(own.std(axis=0), 1, atol=1e-5)
    _, train = standardize(X, Xt)
    np.testing.assert_allclose(train, (Xt - X.mean(0)) / X.std(0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="test_statistics"):
        standardize(X, Xt, test_statistics="test")


def test_prepare_balanced_subsample(rng):
    y = np.repeat(np.arange(4), [50, 30, 40, 80])
    X = rng.standard_normal((200, 3))
    data = prepare(X, y, n=40, balanced=True, seed=3)
    np.testing.assert_array_equal(np.bincount(data.y_train), [10, 10, 10, 10])
    uneven = prepare(X, y, n=42, balanced=True, seed=3)  # n not a multiple of C: still n
    np.testing.assert_array_equal(np.bincount(uneven.y_train), [11, 11, 10, 10])
    again = prepare(X, y, n=40, balanced=True, seed=3)
    np.testing.assert_array_equal(again.X_train, data.X_train)
    other = prepare(X, y, n=40, balanced=True, seed=4)
    assert not np.array_equal(other.X_train, data.X_train)
    np.testing.assert_allclose(data.X_train.mean(0), 0, atol=1e-6)  # standardised after


def test_unbiased_standardisation_as_torch_std(rng):
    """ddof=1: the official scripts' preprocess divides by X.std(dim=0), torch's unbiased
    std (deep_rfm.py line 106, nc_nn.py line 122); each split with its own statistics."""
    X = rng.standard_normal((30, 4)) * 2 + 5
    Xt = rng.standard_normal((12, 4)) - 1
    y, yt = np.arange(30) % 3, np.arange(12) % 3
    data = prepare(X, y, Xt, yt, test_statistics="own", ddof=1)
    for got, raw in ((data.X_train, X), (data.X_test, Xt)):
        n = len(raw)
        mean = raw.sum(axis=0) / n
        unbiased = np.sqrt(((raw - mean) ** 2).sum(axis=0) / (n - 1))
        np.testing.assert_allclose(got, (raw - mean) / unbiased, rtol=1e-5, atol=1e-6)
    assert data.standardization.std == pytest.approx(X.std(axis=0, ddof=1))
    population = prepare(X, y, ddof=0).X_train
    np.testing.assert_allclose(data.X_train, population * np.sqrt(29 / 30), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ddof must be 0 or 1"):
        prepare(X, y, ddof=2)


def test_dividing_by_255_only_for_8_bit_images(tmp_path):
    """The ratio preset's input_scale = 1/255 is ToTensor's on 8-bit pixels: refused for
    data that are not (the digits hold 0..16; float features of an .npz)."""
    from dnc_jax.experiments.common import load_prepared

    options = {"standardize_features": False, "input_scale": 1 / 255}
    with pytest.raises(ValueError, match="digits holds float32 values in \\[0, 16\\]"):
        load_prepared("digits", 50, 20, None, 0, options)
    images = load_prepared("mnist5k", 50, 20, None, 0, options)
    assert images.X_train.min() == 0 and images.X_train.max() == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    floats, pixels = tmp_path / "floats.npz", tmp_path / "pixels.npz"
    np.savez(floats, X_train=rng.normal(size=(20, 4)), y_train=np.arange(20) % 2)
    np.savez(pixels, X_train=rng.integers(0, 256, (20, 4)).astype(np.uint8),
             y_train=np.arange(20) % 2)
    with pytest.raises(ValueError, match="not 8-bit pixels"):
        load_prepared(str(floats), None, None, None, 0, options)
    assert load_prepared(str(pixels), None, None, None, 0, options).X_train.max() <= 1.0
