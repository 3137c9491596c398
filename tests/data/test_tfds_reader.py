"""tensorflow-datasets, mocked: reading, messages, downloads only when asked."""

import sys

import numpy as np
import pytest

from dnc_jax import load_dataset
from dnc_jax.data import DatasetNotPreparedError


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
