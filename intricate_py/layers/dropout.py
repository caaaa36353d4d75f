"""Dropout: zeroes inputs at random while training."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array, dropout_key
from ..backends.base import MemberValues
from .base import Context, Layer

#: How far apart the seeds of a shared Dropout's calls are (the golden ratio in 32 bits).
CALL_STRIDE = 0x9E3779B9


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

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None):
        super().__init__(name)
        self.rate = _checks.fraction(rate, "rate")
        self.seed = None if seed is None else _checks.non_negative_int(seed, "seed") & 0xFFFFFFFF
        #: the seed was given, not drawn from the model's (a Population's members then share it)
        self.seed_given = seed is not None
        self.step = 0  # of the next forward on the layer's own, while training

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.seed is None:
            self.seed = int(rng.integers(2**32))
        return {}

    def step_values(self, step: int, call: int) -> dict[str, int]:
        """The key of this step's masks: from (seed, step), and for a second
        or later call of a shared layer from (seed + call, step) as well;
        in a Population whose members drew their own seeds, one key a member."""
        if isinstance(self.seed, MemberValues):
            return {"key": MemberValues([dropout_key((int(s) + call * CALL_STRIDE) & 0xFFFFFFFF, step)
                                         for s in self.seed], np.int64)}
        return {"key": dropout_key((self.seed + call * CALL_STRIDE) & 0xFFFFFFFF, step)}

    def begin_step(self, step: int) -> None:
        """Draw the masks of training step ``step`` in the next forward on
        the layer's own (a model's fit sets its steps itself)."""
        self.step = step

    def call(self, ctx: Context, x: Array) -> Array:
        ctx.dropped = ctx.training and self.rate > 0
        if not ctx.dropped:
            return x
        n = x.shape[0]
        y = ctx.buffer("y", n, self.input_shape)
        ctx.mask = ctx.buffer("mask", n, self.input_shape)
        self.backend.dropout(x, y, ctx.mask, self.rate, ctx.values["key"])
        return y

    def backward(self, ctx: Context, grad: Array) -> Array:
        if not ctx.dropped:
            return grad
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.dropout_grad(grad, ctx.mask, dx)
        return dx

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"rate": self.rate}
        if self.seed is not None:
            config["seed"] = self.seed
        return config

    def __repr__(self) -> str:
        return f"Dropout({self.rate:g})"
