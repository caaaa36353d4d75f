"""Layers that change a batch's shape without copying: Flatten and Reshape."""

from __future__ import annotations

import math
from typing import Any

from ..backends import Array
from ..naming import shape_text
from .base import Context, Layer, Shape


class _View(Layer, abstract=True):
    """A layer whose output is its input seen in another shape: both ways it
    returns a view of the array it was given."""

    def call(self, ctx: Context, x: Array) -> Array:
        return self.backend.view(x, 0, (x.shape[0], *self.output_shape))

    def backward(self, ctx: Context, grad: Array) -> Array:
        return self.backend.view(grad, 0, (grad.shape[0], *self.input_shape))


class Flatten(_View):
    """(n, *shape) -> (n, prod(shape)) in row-major order: channel, then row,
    then column, as PyTorch's ``flatten(1)``. Copies nothing."""

    def output_shape_for(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)


class Reshape(_View):
    """(n, *shape) -> (n, *target_shape), the same values in row-major
    order, as Keras's Reshape; one entry of ``target_shape`` may be -1, the
    size that makes the counts agree. Copies nothing."""

    def __init__(self, target_shape, name: str | None = None):
        super().__init__(name)
        try:
            target = tuple(target_shape)
        except TypeError:
            target = None
        if not target or any(isinstance(s, bool) or not isinstance(s, int) or s == 0 or s < -1 for s in target) \
                or target.count(-1) > 1:
            raise ValueError("expected target_shape as a tuple of positive sizes (one may be -1). "
                             f"Received: target_shape={target_shape!r}")
        self.target_shape = target

    def output_shape_for(self, input_shape: Shape) -> Shape:
        count, known = math.prod(input_shape), math.prod(s for s in self.target_shape if s != -1)
        if -1 in self.target_shape:
            if count % known:
                raise ValueError(f"cannot reshape inputs of shape {shape_text(input_shape)} ({count} values) "
                                 f"to {shape_text(self.target_shape)}")
            return tuple(count // known if s == -1 else s for s in self.target_shape)
        if known != count:
            raise ValueError(f"cannot reshape inputs of shape {shape_text(input_shape)} ({count} values) "
                             f"to {shape_text(self.target_shape)} ({known} values)")
        return self.target_shape

    def get_config(self) -> dict[str, Any]:
        return {"target_shape": list(self.target_shape)}

    def __repr__(self) -> str:
        return f"Reshape({shape_text(self.target_shape)})"
