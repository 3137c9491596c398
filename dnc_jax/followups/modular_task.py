"""The grokking follow-up's task: ``(a op b) mod p`` on all pairs, inputs as concatenated
one-hots (``modular_arithmetic``)."""

from __future__ import annotations

import numpy as np

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
