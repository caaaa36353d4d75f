"""The training images both benchmark scripts time on."""

from __future__ import annotations

import numpy as np


def mnist_data() -> tuple[np.ndarray, np.ndarray, str]:
    """(x (60000, 784) float32 in [0, 1], labels (60000,), a description):
    Fashion-MNIST from Debian's package, or random data of the same shapes
    when the package is missing."""
    from intricate_py.datasets import load_fashion_mnist

    try:
        (x, y), _ = load_fashion_mnist()
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        return rng.random((60000, 784), np.float32), rng.integers(0, 10, 60000), "synthetic 60000x784"
    return x.reshape(len(x), -1).astype(np.float32) / 255, y.astype(np.int64), "Fashion-MNIST"
