"""Layers that make NCHW images larger: UpSampling2D (nearest neighbour)
and ZeroPadding2D. Neither has parameters."""

from __future__ import annotations

from typing import Any

from ..backends import Array
from ..backends.base import Sides
from .base import Context, Layer, Shape
from .images import image_shape, is_int, pair


class UpSampling2D(Layer):
    """Each pixel repeated ``size`` (an int, or (rows, columns)) times in
    each direction: nearest-neighbour upsampling, as Keras's UpSampling2D
    and PyTorch's ``F.interpolate(mode="nearest", scale_factor=size)``. The
    gradient of a pixel is the sum over its copies.

    Shapes: x (n, c, h, w) -> y (n, c, h·sh, w·sw).
    """

    def __init__(self, size: int | tuple[int, int] = 2, name: str | None = None):
        super().__init__(name)
        self.size = pair(size, "size")

    def output_shape_for(self, input_shape: Shape) -> Shape:
        c, h, w = image_shape(input_shape)
        return (c, h * self.size[0], w * self.size[1])

    def call(self, ctx: Context, x: Array) -> Array:
        y = ctx.buffer("y", x.shape[0], self.output_shape)
        self.backend.upsample2d(x, y, self.size)
        return y

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.upsample2d_grad(grad, dx, self.size)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"size": list(self.size)}

    def __repr__(self) -> str:
        return f"UpSampling2D({self.size[0]}×{self.size[1]})"


def zero_padding_sides(value) -> Sides:
    """(top, bottom, left, right) from an int (every side), a pair (h, w)
    (rows above and below, columns left and right) or a pair of pairs
    ((top, bottom), (left, right)), as Keras's ZeroPadding2D takes."""
    if is_int(value) or _int_pair(value):
        h, w = pair(value, "padding", minimum=0)
        return h, h, w, w
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_int_pair(part) for part in value):
        (top, bottom), (left, right) = (pair(part, "padding", minimum=0) for part in value)
        return top, bottom, left, right
    raise ValueError("expected a non-negative integer, a pair of them or a pair of pairs ((top, bottom), "
                     f"(left, right)). Received: padding={value!r}")


def _int_pair(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value)


class ZeroPadding2D(Layer):
    """Rows and columns of zeros around each image, as Keras's
    ZeroPadding2D and PyTorch's ``F.pad(x, (left, right, top, bottom))``:
    ``padding`` an int (every side), (h, w) (h rows above and below, w
    columns left and right) or ((top, bottom), (left, right)). The
    gradient is the padded gradient cropped.

    Shapes: x (n, c, h, w) -> y (n, c, top + h + bottom, left + w + right).
    """

    def __init__(self, padding=1, name: str | None = None):
        super().__init__(name)
        self.sides: Sides = zero_padding_sides(padding)

    @property
    def padding(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)), as Keras's."""
        top, bottom, left, right = self.sides
        return (top, bottom), (left, right)

    def output_shape_for(self, input_shape: Shape) -> Shape:
        c, h, w = image_shape(input_shape)
        top, bottom, left, right = self.sides
        return (c, top + h + bottom, left + w + right)

    def call(self, ctx: Context, x: Array) -> Array:
        y = ctx.buffer("y", x.shape[0], self.output_shape)
        self.backend.pad2d(x, y, self.sides)
        return y

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.pad2d_grad(grad, dx, self.sides)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"padding": [list(side) for side in self.padding]}

    def __repr__(self) -> str:
        top, bottom, left, right = self.sides
        if top == bottom == left == right:
            return f"ZeroPadding2D({top})"
        if (top, left) == (bottom, right):
            return f"ZeroPadding2D(({top}, {left}))"
        return f"ZeroPadding2D({self.padding})"
