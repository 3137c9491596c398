""".npz datasets: round trips and bad files."""

import numpy as np
import pytest

from dnc_jax import load_dataset


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
