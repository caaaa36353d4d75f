"""Layers that combine two or more inputs, as Keras's merge layers: Add,
Subtract, Multiply, Average (inputs of one shape) and Concatenate (along
any axis but the batch's).

Their backward passes hand each input its gradient; where one tensor feeds
several layers, the model's plan adds the gradients that meet there.
"""

from __future__ import annotations

import math
from typing import Any

from ..backends import Array
from ..naming import shape_text
from .base import Context, Layer, Shape


class Merge(Layer, abstract=True):
    """Two or more inputs of one shape to one output of that shape.

    Shapes: x₁ (n, *shape), x₂ (n, *shape), ... -> y (n, *shape).
    """

    n_inputs = None
    #: how many inputs the layer takes exactly (None: two or more)
    exact_inputs: int | None = None

    def output_shape_for(self, input_shape: tuple[Shape, ...]) -> Shape:
        self._check_count(input_shape)
        if any(shape != input_shape[0] for shape in input_shape):
            raise ValueError(f"expects inputs of one shape, received {', '.join(map(shape_text, input_shape))}")
        return input_shape[0]

    def _check_count(self, shapes: tuple) -> None:
        count = len(shapes)
        if self.exact_inputs is not None and count != self.exact_inputs:
            raise ValueError(f"expects exactly {self.exact_inputs} inputs, received {count}")
        if count < 2:
            raise ValueError(f"expects a list of at least 2 inputs, received {count}")

    def backward(self, ctx: Context, grad: Array) -> Array:
        raise TypeError(f"{self!r} has one gradient per input: use backward_inputs")

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        """A merge layer holds no parameters."""


class Add(Merge):
    """y = x₁ + x₂ + ...; each input's gradient is the output's."""

    def call(self, ctx: Context, *xs: Array) -> Array:
        y = ctx.buffer("y", xs[0].shape[0], self.output_shape)
        self.backend.add(xs[0], xs[1], y)
        for x in xs[2:]:
            self.backend.add(y, x, y)
        return y

    def backward_inputs(self, ctx: Context, grad: Array, needed: list[bool]) -> list[Array | None]:
        return [grad if need else None for need in needed]


class Subtract(Merge):
    """y = x₁ - x₂ (exactly two inputs)."""

    exact_inputs = 2

    def call(self, ctx: Context, a: Array, b: Array) -> Array:
        y = ctx.buffer("y", a.shape[0], self.output_shape)
        self.backend.scale(b, -1.0, y)
        self.backend.add(a, y, y)
        return y

    def backward_inputs(self, ctx: Context, grad: Array, needed: list[bool]) -> list[Array | None]:
        db = None
        if needed[1]:
            db = ctx.buffer("db", grad.shape[0], self.output_shape)
            self.backend.scale(grad, -1.0, db)
        return [grad if needed[0] else None, db]


class Multiply(Merge):
    """y = x₁ · x₂ · ... elementwise; input i's gradient is dy times the
    other inputs."""

    def call(self, ctx: Context, *xs: Array) -> Array:
        ctx.xs = xs
        y = ctx.buffer("y", xs[0].shape[0], self.output_shape)
        self.backend.multiply(xs[0], xs[1], y)
        for x in xs[2:]:
            self.backend.multiply(y, x, y)
        return y

    def backward_inputs(self, ctx: Context, grad: Array, needed: list[bool]) -> list[Array | None]:
        grads: list[Array | None] = []
        for i, need in enumerate(needed):
            if not need:
                grads.append(None)
                continue
            d = ctx.buffer(f"d{i}", grad.shape[0], self.output_shape)
            others = [x for j, x in enumerate(ctx.xs) if j != i]
            self.backend.multiply(grad, others[0], d)
            for x in others[1:]:
                self.backend.multiply(d, x, d)
            grads.append(d)
        return grads


class Average(Merge):
    """y = (x₁ + x₂ + ... + x_k) / k; each input's gradient is dy / k."""

    def call(self, ctx: Context, *xs: Array) -> Array:
        k = len(xs)
        y = ctx.buffer("y", xs[0].shape[0], self.output_shape)
        if k == 2:
            self.backend.add(xs[0], xs[1], y, scale=1.0 / k)
            return y
        self.backend.add(xs[0], xs[1], y)
        for x in xs[2:-1]:
            self.backend.add(y, x, y)
        self.backend.add(y, xs[-1], y, scale=1.0 / k)
        return y

    def backward_inputs(self, ctx: Context, grad: Array, needed: list[bool]) -> list[Array | None]:
        d = ctx.buffer("dx", grad.shape[0], self.output_shape)
        self.backend.scale(grad, 1.0 / len(needed), d)
        return [d if need else None for need in needed]


class Concatenate(Merge):
    """The inputs side by side along ``axis`` of the batch (n, ...): 1, the
    default, is the features of vectors and the channels of NCHW images;
    any axis but the batch's, -1 the last. The inputs' shapes agree on
    every other axis.

    Shapes: (n, c₁, h, w), (n, c₂, h, w) -> (n, c₁ + c₂, h, w) on axis 1.
    """

    def __init__(self, axis: int = 1, name: str | None = None):
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"expected an axis other than the batch's (0): 1, 2, ... or -1, -2, ... "
                             f"Received: axis={axis!r}")
        self.axis = axis

    def _sample_axis(self, rank: int) -> int:
        """The axis within a sample's shape (0 for the batch's axis 1)."""
        k = self.axis - 1 if self.axis > 0 else rank + self.axis
        if not 0 <= k < rank:
            raise ValueError(f"has axis={self.axis}, outside inputs of {rank + 1} axes (n and {rank} more)")
        return k

    def output_shape_for(self, input_shape: tuple[Shape, ...]) -> Shape:
        self._check_count(input_shape)
        ranks = {len(shape) for shape in input_shape}
        k = self._sample_axis(len(input_shape[0]))
        if len(ranks) != 1 or any(s[:k] + s[k + 1:] != input_shape[0][:k] + input_shape[0][k + 1:]
                                  for s in input_shape):
            raise ValueError(
                f"expects inputs whose shapes agree except along axis {self.axis}, received "
                f"{', '.join(map(shape_text, input_shape))}"
            )
        first = input_shape[0]
        return first[:k] + (sum(s[k] for s in input_shape),) + first[k + 1:]

    def _blocks(self, n: int) -> tuple[int, list[int], int]:
        """(rows, each input's row width, the output's row width) of the
        matrices concatenation copies between: rows = n · the sizes before the axis."""
        k = self._sample_axis(len(self.output_shape))
        rows = n * math.prod(self.output_shape[:k])
        return rows, [math.prod(s[k:]) for s in self.input_shape], math.prod(self.output_shape[k:])

    def call(self, ctx: Context, *xs: Array) -> Array:
        n, backend = xs[0].shape[0], self.backend
        y = ctx.buffer("y", n, self.output_shape)
        rows, widths, total = self._blocks(n)
        matrix = backend.view(y, 0, (rows, total))
        start = 0
        for x, width in zip(xs, widths):
            backend.copy_slice(backend.view(x, 0, (rows, width)), matrix, 0, start, width)
            start += width
        return y

    def backward_inputs(self, ctx: Context, grad: Array, needed: list[bool]) -> list[Array | None]:
        n, backend = grad.shape[0], self.backend
        rows, widths, total = self._blocks(n)
        matrix = backend.view(grad, 0, (rows, total))
        grads: list[Array | None] = []
        start = 0
        for i, (need, width, shape) in enumerate(zip(needed, widths, self.input_shape)):
            d = None
            if need:
                d = ctx.buffer(f"d{i}", n, shape)
                backend.copy_slice(matrix, backend.view(d, 0, (rows, width)), start, 0, width)
            grads.append(d)
            start += width
        return grads

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis} if self.axis != 1 else {}

    def __repr__(self) -> str:
        return "Concatenate()" if self.axis == 1 else f"Concatenate(axis={self.axis})"
