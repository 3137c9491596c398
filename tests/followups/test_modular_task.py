"""The grokking follow-up's task: ``(a op b) mod p`` on all pairs."""

import numpy as np

from dnc_jax.followups.modular_task import modular_arithmetic


def test_modular_division_against_known_inverses():
    p = 7
    inverse = {1: 1, 2: 4, 3: 5, 4: 2, 5: 3, 6: 6}  # b * inverse[b] = 1 mod 7
    X, y, Xt, yt = modular_arithmetic(p, "/", 0.5, seed=0)
    X, y = np.concatenate([X, Xt]), np.concatenate([y, yt])
    a, b = np.argmax(X[:, :p], 1), np.argmax(X[:, p:], 1)
    assert len(y) == p * (p - 1) and np.all(b != 0)  # b = 0 left out
    assert all(int(y[i]) == (int(a[i]) * inverse[int(b[i])]) % p for i in range(len(y)))
    assert np.all((y * b) % p == a)
