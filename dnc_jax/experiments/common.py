"""What every experiment command shares: the prepared data of a named dataset."""

from __future__ import annotations

from dnc_jax.data import load_dataset, prepare


def load_prepared(dataset: str, n: int | None, n_test: int | None, data_dir: str | None, seed: int):
    """Train and test data of ``dataset`` with the paper's preparation."""
    X, y = load_dataset(dataset, "train", n, data_dir=data_dir, seed=seed)
    Xt, yt = load_dataset(dataset, "test", n_test, data_dir=data_dir, seed=seed)
    return prepare(X, y, Xt, yt)
