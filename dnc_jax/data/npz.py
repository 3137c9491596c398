"""Datasets in ``.npz`` files (``X_train``, ``y_train``, optionally ``X_test``, ``y_test``),
checked, and read row range by row range without loading the rest."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from dnc_jax.data.preparation import as_class_labels
from dnc_jax.records import load_npz


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
