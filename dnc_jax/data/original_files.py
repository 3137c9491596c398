"""MNIST, Fashion-MNIST and CIFAR-10 read from their original files, in the files' order.

The official scripts take "the first n" images of torchvision's datasets, which read the
original files in their order (MNIST's first ten training labels: 5, 0, 4, 1, 9, 2, 1, 3,
1, 4). tensorflow-datasets shuffles records when it prepares a dataset, so its first ``n``
are other images. When ``data_dir`` holds the original files, ``load_dataset`` reads them
instead, so that a preset sees the scripts' images; these are the places torchvision keeps
them and the names they are distributed under:

- MNIST: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``) in ``data_dir``, ``data_dir/MNIST/raw``
  or ``data_dir/mnist``; Fashion-MNIST the same names in ``data_dir/FashionMNIST/raw`` or
  ``data_dir/fashion_mnist``;
- CIFAR-10: the python batches ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` in
  ``data_dir/cifar-10-batches-py`` (pickled dicts of ``data``, ``(10000, 3072)`` uint8 in
  channel-first order, and ``labels``).

Images come back as tensorflow-datasets gives them, flattened height x width x channels
(CIFAR's channel-first rows are transposed), pixels 0..255.
"""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np

ORIGINAL = ("mnist", "fashion_mnist", "cifar10")
_IDX_FOLDERS = {"mnist": ("", "MNIST/raw", "mnist"),
                "fashion_mnist": ("FashionMNIST/raw", "fashion_mnist")}
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                  "test": ("test_batch",)}


def _existing(path: str) -> str | None:
    for candidate in (path, path + ".gz"):
        if os.path.isfile(candidate):
            return candidate
    return None


def original_files(name: str, split: str, data_dir: str | None) -> list[str] | None:
    """The original files of ``name``'s ``split`` (``"train"`` or ``"test"``) under
    ``data_dir``, or ``None`` where they are not all there."""
    if data_dir is None or name not in ORIGINAL:
        return None
    if name == "cifar10":
        folder = os.path.join(data_dir, "cifar-10-batches-py")
        paths = [os.path.join(folder, b) for b in _CIFAR_BATCHES[split]]
        return paths if all(os.path.isfile(p) for p in paths) else None
    for sub in _IDX_FOLDERS[name]:
        found = [_existing(os.path.join(data_dir, sub, f)) for f in _IDX_FILES[split]]
        if all(found):
            return [str(p) for p in found]
    return None


def read_idx(path: str) -> np.ndarray:
    """An IDX file (the MNIST format: big-endian magic ``0x0000 08 ndim``, the dimensions,
    then unsigned bytes), optionally gzipped, as a uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {body.size} values for its shape {shape}.")
    return body.reshape(shape)


def read_original(name: str, split: str, data_dir: str | None
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(X (n, d) uint8, y (n,) int64)`` from the original files, in their order, or
    ``None`` where ``data_dir`` does not hold them (module docstring)."""
    paths = original_files(name, split, data_dir)
    if paths is None:
        return None
    if name == "cifar10":
        rows, labels = [], []
        for path in paths:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
            rows.append(data.transpose(0, 2, 3, 1).reshape(len(data), -1))
            labels.append(np.asarray(batch[b"labels"], np.int64))
        return np.concatenate(rows), np.concatenate(labels)
    images, labels = (read_idx(p) for p in paths)
    if len(images) != len(labels):
        raise ValueError(f"{paths[0]} holds {len(images)} images but {paths[1]} "
                         f"{len(labels)} labels.")
    return images.reshape(len(images), -1), labels.astype(np.int64)
