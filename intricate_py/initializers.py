"""Weight initializers, by name: each draws an array of a given shape from a
numpy Generator, with Keras's definitions of fan-in and fan-out."""

from __future__ import annotations

from typing import Callable

import numpy as np

Initializer = Callable[[np.random.Generator, tuple[int, ...], int, int], np.ndarray]


def glorot_uniform(rng, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def glorot_normal(rng, shape, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)


def he_uniform(rng, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape)


def he_normal(rng, shape, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def uniform(rng, shape, fan_in, fan_out):
    """Keras's RandomUniform default, in [-0.05, 0.05] (Embedding's initializer)."""
    return rng.uniform(-0.05, 0.05, shape)


def zeros(rng, shape, fan_in, fan_out):
    return np.zeros(shape)


INITIALIZERS: dict[str, Initializer] = {
    f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, uniform, zeros)
}


def get(name: str) -> Initializer:
    if name not in INITIALIZERS:
        raise ValueError(
            f"expected an initializer among {sorted(INITIALIZERS)}. Received: {name!r}"
        )
    return INITIALIZERS[name]
