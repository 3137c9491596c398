"""The data of the same-card comparison, in the form the official Deep RFM script reads.

    python benchmarks/official_data.py --n 50000 --out .official/data

``dmbeaglehole/neural_collapse_rfm``'s ``deep_rfm.py`` reads MNIST through
``torchvision.datasets.MNIST`` from the raw IDX files under ``$DATA_PATH/MNIST/MNIST/raw``
(it sets ``DATA_PATH`` itself, line 45) and takes the first ``n`` training images. The
device machine has no network, so this writes the images dnc_jax's benchmarks use,
``load_dataset("mnist_shifted", "train", n)`` (the embedded MNIST and its pixel shifts,
0-255) and the 1,000-image test split, as the four gzipped IDX files torchvision expects
(``train-images-idx3-ubyte.gz`` ...; unzip them there). Both programs then see the same
first ``n`` images in the same order. The IDX format: big-endian int32 magic (2051
images, 2049 labels), counts and sizes, then unsigned bytes.
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct

import numpy as np

from dnc_jax.data import load_dataset


def idx_bytes(images: np.ndarray | None, labels: np.ndarray | None) -> bytes:
    """An IDX file of ``(N, 28, 28)`` uint8 images, or of ``(N,)`` uint8 labels."""
    if images is not None:
        return struct.pack(">iiii", 2051, len(images), 28, 28) + images.tobytes()
    assert labels is not None
    return struct.pack(">ii", 2049, len(labels)) + labels.tobytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--out", default=".official/data")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for split, prefix, n in (("train", "train", args.n), ("test", "t10k", None)):
        X, y = load_dataset("mnist_shifted", split, n)
        images = np.asarray(X).reshape(-1, 28, 28)
        if not np.array_equal(images, np.round(images)) or images.min() < 0 or images.max() > 255:
            raise ValueError("mnist_shifted should hold whole pixel values in 0..255.")
        files = {f"{prefix}-images-idx3-ubyte.gz": idx_bytes(images.astype(np.uint8), None),
                 f"{prefix}-labels-idx1-ubyte.gz": idx_bytes(None, np.asarray(y, np.uint8))}
        for name, data in files.items():
            with gzip.open(os.path.join(args.out, name), "wb", compresslevel=9) as fh:
                fh.write(data)
        print(f"{split}: {len(y)} images -> {args.out}")


if __name__ == "__main__":
    main()
