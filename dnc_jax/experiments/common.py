"""What every experiment command shares: the prepared data of a named dataset."""

from __future__ import annotations

from dnc_jax.data import has_test_split, load_dataset, prepare


def load_prepared(dataset: str, n: int | None, n_test: int | None, data_dir: str | None,
                  seed: int, prepare_options: dict | None = None, download: bool = False):
    """Train and test data of ``dataset`` (the first ``n`` / ``n_test`` of each split) with
    the paper's preparation (``prepare``, with ``prepare_options``); no test data when an
    ``.npz`` dataset has none. ``download`` lets tensorflow-datasets fetch the data."""
    X, y = load_dataset(dataset, "train", n, data_dir=data_dir, seed=seed, download=download)
    Xt = yt = None
    if has_test_split(dataset):
        Xt, yt = load_dataset(dataset, "test", n_test, data_dir=data_dir, seed=seed,
                              download=download)
    return prepare(X, y, Xt, yt, **(prepare_options or {}))
