"""MNIST and CIFAR-10 from their original files, in the files' order (the official
scripts' "first n"), written here in the formats torchvision reads."""

import gzip
import pickle

import numpy as np
import pytest

from dnc_jax.data import data_source, load_dataset
from dnc_jax.data.original_files import read_idx

TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's first ten, in the original files


def write_idx(path, array, compress):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def mnist_dir(tmp_path, rng):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = rng.integers(0, 256, (10, 28, 28))
    write_idx(raw / "train-images-idx3-ubyte", images, compress=True)
    write_idx(raw / "train-labels-idx1-ubyte", TRAIN_LABELS, compress=False)
    write_idx(raw / "t10k-images-idx3-ubyte", images[:3], compress=False)
    write_idx(raw / "t10k-labels-idx1-ubyte", [7, 2, 1], compress=True)
    return tmp_path, images


def test_mnist_in_the_original_order(mnist_dir, capsys):
    folder, images = mnist_dir
    X, y = load_dataset("mnist", "train", 4, data_dir=str(folder))
    assert y.tolist() == TRAIN_LABELS[:4]
    np.testing.assert_array_equal(X, images[:4].reshape(4, -1).astype(np.float32))
    Xa, ya = load_dataset("mnist", "all", data_dir=str(folder))
    assert ya.tolist() == TRAIN_LABELS + [7, 2, 1] and Xa.shape == (13, 784)
    assert data_source("mnist", "train", str(folder)) == "original files"
    assert data_source("mnist", "train", str(folder / "elsewhere")) == "tfds"
    assert data_source("mnist5k") == "built in"
    from dnc_jax.data import load_dataset_rows  # one process's rows of a multi-process run

    Xr, yr, total = load_dataset_rows("mnist", "train", None, lambda n: (2, 5),
                                      data_dir=str(folder))
    assert total == 10 and yr.tolist() == TRAIN_LABELS[2:5]
    np.testing.assert_array_equal(Xr, images[2:5].reshape(3, -1).astype(np.float32))
    from dnc_jax.experiments.common import load_prepared

    load_prepared("mnist", 10, 3, str(folder), 0)
    assert "from the original files" in capsys.readouterr().err


def test_cifar10_batches_as_tfds_lays_images_out(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        chw = rng.integers(0, 256, (2, 3, 32, 32)).astype(np.uint8)
        batches[name] = chw
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": chw.reshape(2, -1), b"labels": [3, 8]}, f)
    X, y = load_dataset("cifar10", "train", data_dir=str(tmp_path))
    assert X.shape == (10, 3072) and y.tolist() == [3, 8] * 5
    hwc = batches["data_batch_1"][0].transpose(1, 2, 0)  # height, width, channel
    np.testing.assert_array_equal(X[0], hwc.reshape(-1).astype(np.float32))
    Xt, _ = load_dataset("cifar10", "test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(Xt[1], batches["test_batch"][1].transpose(1, 2, 0).reshape(-1))


def test_a_file_that_is_not_idx_is_refused(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        read_idx(str(path))
    path.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="holds 3 values for its shape"):
        read_idx(str(path))
