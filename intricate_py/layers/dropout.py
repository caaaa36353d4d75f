"""Dropout: zeroes inputs at random while training."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array, dropout_key
from .base import Layer


class Dropout(Layer):
    """Inverted dropout, as PyTorch's and Keras's: while a model trains, each
    element is zeroed with probability ``rate`` and the others are scaled by
    1 / (1 - rate); in predict and evaluate it passes its input through.

    The random bits are a hash of (seed, training step, element index), the
    same on every backend, so a seed gives the same masks on the CPU and the
    GPU and a resumed or replayed step draws what it drew the first time. The
    seed comes from the model's seed unless given.

    Shapes: x (n, *shape) -> y (n, *shape).
    """

    def __init__(self, rate: float, seed: int | None = None):
        super().__init__()
        self.rate = _checks.fraction(rate, "rate")
        self.seed = None if seed is None else _checks.non_negative_int(seed, "seed") & 0xFFFFFFFF
        self.step = 0
        self.key: int | None = None  # of the current step, set by begin_step
        self._dropped = False

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.seed is None:
            self.seed = int(rng.integers(2**32))
        return {}

    def begin_step(self, step: int, key: int | None = None) -> None:
        """Draw this step's masks: from ``key``, or the key of (seed, step)."""
        self.step = step
        self.key = dropout_key(self.seed, step) if key is None else key

    def forward(self, x: Array) -> Array:
        self._check_input(x)
        self._dropped = self.training and self.rate > 0
        if not self._dropped:
            return x
        n, ws = x.shape[0], self._workspace
        y = ws.get("y", n, self.input_shape)
        self._mask = ws.get("mask", n, self.input_shape)
        if self.key is None:  # used outside fit, which calls begin_step
            self.key = dropout_key(self.seed, self.step)
        self.backend.dropout(x, y, self._mask, self.rate, self.key)
        return y

    def back_propagate(self, grad_output: Array) -> Array:
        if not self._dropped:
            return grad_output
        dx = self._workspace.get("dx", grad_output.shape[0], self.input_shape)
        self.backend.dropout_grad(grad_output, self._mask, dx)
        return dx

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"rate": self.rate}
        if self.seed is not None:
            config["seed"] = self.seed
        return config

    def __repr__(self) -> str:
        return f"Dropout({self.rate:g})"
