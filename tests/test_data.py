"""Datasets and the paper's preparation. No test touches the network."""

import sys

import numpy as np
import pytest

from dnc_jax import load_dataset, prepare
from dnc_jax.data import DatasetNotPreparedError, balanced_indices, one_hot_pm1


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


@pytest.mark.parametrize(
    "name,shape", [("mnist", 784), ("fashion_mnist", 784), ("cifar10", 3072), ("svhn", 3072)]
)
def test_tfds_path_with_mock_data(name, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        X, y = load_dataset(name, split="test", n=9)
    assert X.shape == (9, shape) and X.dtype == np.float32
    assert y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
    assert "tensorflow" not in sys.modules  # read without TensorFlow


def test_tfds_unprepared_message(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DatasetNotPreparedError, match="tfds build mnist"):
        load_dataset("mnist", data_dir=str(tmp_path))


def test_tfds_missing_extra_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(ImportError, match=r"dnc-jax\[tfds\]"):
        load_dataset("cifar10")


def test_synthetic_generators_are_deterministic():
    for name, options in [
        ("gaussian_mixture", {"separation": 2.0}),
        ("modular_arithmetic", {"p": 11, "op": "/"}),
        ("multi_index", {"k": 3}),
    ]:
        a = load_dataset(name, seed=3, **options)
        b = load_dataset(name, seed=3, **options)
        c = load_dataset(name, seed=4, **options)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], c[0]) or not np.array_equal(a[1], c[1])


def test_synthetic_tasks_are_what_they_say():
    from dnc_jax.data import modular_arithmetic, multi_index

    Xtr, ytr, Xte, yte = modular_arithmetic(p=7, op="*", train_fraction=0.5, seed=0)
    X = np.concatenate([Xtr, Xte])
    y = np.concatenate([ytr, yte])
    a, b = X[:, :7].argmax(1), X[:, 7:].argmax(1)
    np.testing.assert_array_equal(y, (a * b) % 7)
    assert len(y) == 49 and X.sum(1).tolist() == [2.0] * 49
    X, y, U = multi_index(n=200, d=10, k=3, seed=1)
    np.testing.assert_array_equal(y, np.argmax(X @ U.T, axis=1))
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=1e-12)
    # train and test of one seed share the task's hidden directions
    Xt, yt = load_dataset("multi_index", split="test", n=50, seed=1, d=10, k=3)
    np.testing.assert_array_equal(yt, np.argmax(Xt.astype(np.float64) @ U.T, axis=1))


def test_npz_dataset_round_trips(tmp_path):
    X, y = load_dataset("digits", "train", 120)
    Xt, yt = load_dataset("digits", "test", 30)
    path = str(tmp_path / "features.npz")
    np.savez(path, X_train=X.reshape(120, 8, 8), y_train=y, X_test=Xt, y_test=yt)
    X2, y2 = load_dataset(path, "train")
    np.testing.assert_array_equal(X2, X)  # rows flattened back
    np.testing.assert_array_equal(y2, y)
    Xt2, yt2 = load_dataset(path, "test", 10)
    np.testing.assert_array_equal(Xt2, Xt[:10])
    np.testing.assert_array_equal(yt2, yt[:10])
    Xa, ya = load_dataset(path, "all")
    assert Xa.shape == (150, 64) and np.array_equal(ya, np.concatenate([y, yt]))
    assert X2.dtype == np.float32 and y2.dtype == np.int64


@pytest.mark.parametrize("arrays,match", [
    ({"X": np.zeros((3, 2))}, "X_train and y_train"),
    ({"X_train": np.zeros((3, 2)), "y_train": np.zeros(4, int)}, "same n"),
    ({"X_train": np.zeros((3, 2)), "y_train": np.array([0.5, 1, 2])}, "integer"),
    ({"X_train": np.zeros((3, 2)), "y_train": np.array([0, -1, 2])}, ">= 0"),
    ({"X_train": np.full((3, 2), np.nan), "y_train": np.arange(3)}, "NaN"),
    ({"X_train": np.zeros((3, 2)), "y_train": np.arange(3), "X_test": np.zeros((1, 2))},
     "both X_test and y_test"),
])
def test_npz_dataset_bad_files(tmp_path, arrays, match):
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        load_dataset(path)


def test_npz_dataset_without_test_split(tmp_path):
    from dnc_jax.experiments import load_prepared

    path = str(tmp_path / "train_only.npz")
    X, y = load_dataset("digits", "train", 50)
    np.savez(path, X_train=X, y_train=y)
    with pytest.raises(ValueError, match="no test split"):
        load_dataset(path, "test")
    data = load_prepared(path, None, None, None, 0)
    assert data.X_test is None and data.X_train.shape == (50, 64)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.npz"))


def test_download_is_passed_to_tfds_only_when_asked(monkeypatch):
    """``download=True`` reaches tensorflow-datasets (a stand-in here: no network)."""
    calls = []

    class FakeTfds:
        @staticmethod
        def data_source(name, split, data_dir, download):
            calls.append((name, split, download))
            return [{"image": np.full((2, 2, 1), i, np.uint8), "label": i % 3} for i in range(5)]

    monkeypatch.setattr("dnc_jax.data.tfds_reader._import_tfds", lambda: FakeTfds)
    X, y = load_dataset("svhn", "train", 4, download=True)
    assert calls == [("svhn_cropped", "train", True)]
    assert X.shape == (4, 4) and y.tolist() == [0, 1, 2, 0]
    load_dataset("mnist", "test")
    assert calls[-1] == ("mnist", "test", False)


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


def test_modular_division_against_known_inverses():
    from dnc_jax.data import modular_arithmetic

    p = 7
    inverse = {1: 1, 2: 4, 3: 5, 4: 2, 5: 3, 6: 6}  # b * inverse[b] = 1 mod 7
    X, y, Xt, yt = modular_arithmetic(p, "/", 0.5, seed=0)
    X, y = np.concatenate([X, Xt]), np.concatenate([y, yt])
    a, b = np.argmax(X[:, :p], 1), np.argmax(X[:, p:], 1)
    assert len(y) == p * (p - 1) and np.all(b != 0)  # b = 0 left out
    assert all(int(y[i]) == (int(a[i]) * inverse[int(b[i])]) % p for i in range(len(y)))
    assert np.all((y * b) % p == a)


def test_gaussian_mixture_has_its_stated_separation():
    from dnc_jax.data import gaussian_mixture

    X, y = gaussian_mixture(8000, d=12, num_classes=4, separation=3.0, seed=2)
    means = np.stack([X[y == c].mean(0) for c in range(4)])
    dists = [np.linalg.norm(means[i] - means[j]) for i in range(4) for j in range(i + 1, 4)]
    # empirical means of 2,000 unit-variance samples in 12 dims: within ~0.15 of 3
    assert max(abs(np.array(dists) - 3.0)) < 0.2
    np.testing.assert_allclose(np.bincount(y), 2000)
    within = X - means[y]
    assert abs(within.var() - 1.0) < 0.05


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
