"""Datasets prepared with tensorflow-datasets, read without TensorFlow."""

from __future__ import annotations

import logging

import numpy as np

TFDS = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10", "svhn": "svhn_cropped"}


class DatasetNotPreparedError(FileNotFoundError):
    """A tensorflow-datasets dataset is not prepared in ``data_dir`` and cannot be downloaded."""


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            "Loading MNIST, Fashion-MNIST, CIFAR-10 or SVHN needs the 'tfds' extra: "
            'pip install "dnc-jax[tfds]"'
        ) from err
    return tfds


def _tfds_source(name: str, split: str, data_dir: str | None, download: bool):
    """The random-access ``tfds.data_source`` of a split (``DatasetNotPreparedError`` when it
    is not prepared)."""
    tfds = _import_tfds()
    tfds_name = TFDS[name]
    tfds_split = "train+test" if split == "all" else split
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # tfds warns about every folder it probes
    try:
        return tfds.data_source(tfds_name, split=tfds_split, data_dir=data_dir,
                                download=download)
    except Exception as err:  # tfds raises several types for "not prepared here"
        where = data_dir or "~/tensorflow_datasets"
        raise DatasetNotPreparedError(
            f"{tfds_name} is not prepared in {where} (array_record format)"
            f"{' and could not be downloaded' if download else ' and downloads are off'}. "
            f"Pass --download (download=True) on a machine with network access, or there run "
            f"`tfds build {tfds_name} --data_dir {where} --file_format array_record` (or "
            f"tfds.data_source('{tfds_name}', data_dir='{where}')), then copy that folder here "
            f"and pass data_dir. ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        ) from err
    finally:
        absl_logger.setLevel(level)


def _tfds_records(source, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Records ``start:stop`` of a data source as ``(X (k, d) float32, y (k,) int64)``."""
    records = [source[i] for i in range(start, stop)]
    if not records:  # the width still comes from the data
        X, _ = _tfds_records(source, 0, 1)
        return X[:0], np.zeros(0, np.int64)
    X = np.stack([np.asarray(r["image"], dtype=np.float32).reshape(-1) for r in records])
    y = np.asarray([int(r["label"]) for r in records], dtype=np.int64)
    return X, y


def _tfds(name: str, split: str, n: int | None, data_dir: str | None, download: bool = False):
    source = _tfds_source(name, split, data_dir, download)
    return _tfds_records(source, 0, len(source) if n is None else min(n, len(source)))
