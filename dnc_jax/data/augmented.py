"""``mnist_shifted``: the embedded MNIST grown by pixel shifts."""

from __future__ import annotations

import numpy as np

from dnc_jax.data.embedded import _embedded


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
