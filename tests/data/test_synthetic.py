"""The synthetic tasks are what they say."""

import numpy as np
from tolerances import F64, ROUNDING

from dnc_jax import load_dataset


def test_synthetic_generators_are_deterministic():
    for name, options in [
        ("gaussian_mixture", {"separation": 2.0}),
        ("modular_arithmetic", {"p": 11, "op": "/"}),
        ("multi_index", {"k": 3}),
    ]:
        a = load_dataset(name, seed=3, **options)
        b = load_dataset(name, seed=3, **options)
        c = load_dataset(name, seed=4, **options)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], c[0]) or not np.array_equal(a[1], c[1])


def test_synthetic_tasks_are_what_they_say():
    from dnc_jax.data import modular_arithmetic, multi_index

    Xtr, ytr, Xte, yte = modular_arithmetic(p=7, op="*", train_fraction=0.5, seed=0)
    X = np.concatenate([Xtr, Xte])
    y = np.concatenate([ytr, yte])
    a, b = X[:, :7].argmax(1), X[:, 7:].argmax(1)
    np.testing.assert_array_equal(y, (a * b) % 7)
    assert len(y) == 49 and X.sum(1).tolist() == [2.0] * 49
    X, y, U = multi_index(n=200, d=10, k=3, seed=1)
    np.testing.assert_array_equal(y, np.argmax(X @ U.T, axis=1))
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=ROUNDING[F64])
    # train and test of one seed share the task's hidden directions
    Xt, yt = load_dataset("multi_index", split="test", n=50, seed=1, d=10, k=3)
    np.testing.assert_array_equal(yt, np.argmax(Xt.astype(np.float64) @ U.T, axis=1))


def test_gaussian_mixture_has_its_stated_separation():
    from dnc_jax.data import gaussian_mixture

    X, y = gaussian_mixture(8000, d=12, num_classes=4, separation=3.0, seed=2)
    means = np.stack([X[y == c].mean(0) for c in range(4)])
    dists = [np.linalg.norm(means[i] - means[j]) for i in range(4) for j in range(i + 1, 4)]
    # empirical means of 2,000 unit-variance samples in 12 dims: within ~0.15 of 3
    assert max(abs(np.array(dists) - 3.0)) < 0.2
    np.testing.assert_allclose(np.bincount(y), 2000)
    within = X - means[y]
    assert abs(within.var() - 1.0) < 0.05
