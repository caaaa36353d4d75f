"""Intricate's XoR data and network, which many tests train."""

import numpy as np

from intricate_py import Model
from intricate_py.layers import Dense, TanH

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def xor_model(device="cpu", seed=0) -> Model:
    """2 -> Dense 3 -> TanH -> Dense 1 -> TanH."""
    return Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=device, seed=seed)


def weights(model: Model) -> list[np.ndarray]:
    """Copies of every parameter's values."""
    return [model.device.to_numpy(p.value).copy() for p in model.parameters]
