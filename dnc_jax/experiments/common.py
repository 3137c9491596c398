"""What every experiment command shares: the prepared data of a named dataset."""

from __future__ import annotations

import sys
import zipfile

import numpy as np

from dnc_jax.data import (
    EIGHT_BIT_IMAGES,
    data_source,
    has_test_split,
    is_npz_path,
    load_dataset,
    prepare,
)

# the embedded image datasets and what divides their pixels into [0, 1]
IMAGE_DATASETS = {"mnist5k": (28, 255.0), "digits": (8, 16.0)}


def image_split(dataset: str, split: str, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An embedded image dataset's split (the first ``n``) as ``(n, H, W, 1)`` float32
    images in ``[0, 1]`` and int32 labels (``dnc-jax probe``, ``dnc-jax conv-rfm``)."""
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"dataset must be one of {tuple(IMAGE_DATASETS)}; got {dataset!r}.")
    side, scale = IMAGE_DATASETS[dataset]
    X, y = load_dataset(dataset, split, n)
    return (np.asarray(X, np.float32) / scale).reshape(-1, side, side, 1), np.asarray(y, np.int32)


def _stored_dtype(path: str) -> np.dtype:
    """The dtype ``X_train`` has in the ``.npz`` file (the loader gives float32), read from
    the member's header without reading its data."""
    with zipfile.ZipFile(path) as archive, archive.open("X_train.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        return read_header(member)[2]


def check_eight_bit(dataset: str, X: np.ndarray) -> None:
    """``ValueError`` unless ``dataset`` holds 8-bit images (a named image dataset, or an
    ``.npz`` of ``uint8``): what dividing by 255, as torchvision's ``ToTensor``, assumes."""
    X = np.asarray(X)
    lo, hi = float(X.min()), float(X.max())
    stored = _stored_dtype(dataset) if is_npz_path(dataset) else X.dtype
    if (dataset in EIGHT_BIT_IMAGES or stored == np.uint8) and 0 <= lo and hi <= 255:
        return
    raise ValueError(
        f"This preset divides inputs by 255, as torchvision's ToTensor does for 8-bit images, "
        f"but {dataset} holds {stored} values in [{lo:g}, {hi:g}], not 8-bit pixels: use an "
        f"image dataset ({', '.join(EIGHT_BIT_IMAGES)}) or an .npz of uint8 images.")


def report_source(dataset: str, data_dir: str | None) -> None:
    """Say on stderr which order a tensorflow-datasets name's rows come in: the first ``n``
    of the original files are the official scripts' images, tfds' first ``n`` are not."""
    source = data_source(dataset, "train", data_dir)
    if source == "original files":
        print(f"data: {dataset} from the original files in {data_dir}, in their order (the "
              "official scripts' first n)", file=sys.stderr)
    elif source == "tfds":
        print(f"data: {dataset} from tensorflow-datasets, whose order is not the original "
              "files' (put those in --data-dir for the official scripts' first n)",
              file=sys.stderr)


def load_prepared(dataset: str, n: int | None, n_test: int | None, data_dir: str | None,
                  seed: int, prepare_options: dict | None = None, download: bool = False):
    """Train and test data of ``dataset`` (the first ``n`` / ``n_test`` of each split) with
    the paper's preparation (``prepare``, with ``prepare_options``); no test data when an
    ``.npz`` dataset has none. ``download`` lets tensorflow-datasets fetch the data."""
    X, y = load_dataset(dataset, "train", n, data_dir=data_dir, seed=seed, download=download)
    report_source(dataset, data_dir)
    if (prepare_options or {}).get("input_scale", 1.0) != 1.0:
        check_eight_bit(dataset, X)
    Xt = yt = None
    if has_test_split(dataset):
        Xt, yt = load_dataset(dataset, "test", n_test, data_dir=data_dir, seed=seed,
                              download=download)
    return prepare(X, y, Xt, yt, **(prepare_options or {}))
