"""Pooling layers on NCHW batches: MaxPool2D and AveragePooling2D over
sliding windows, GlobalMaxPooling2D and GlobalAveragePooling2D over each
image's whole plane. None has parameters."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array
from ..backends.base import Sides
from .base import Context, Layer, Shape
from .images import Padding, geometry_text, image_shape, pair, padding_argument, padding_sides, strides_argument
from .images import window_output


class _Pool2D(Layer, abstract=True):
    """A window of ``pool_size`` sliding at ``strides`` (the pool size by
    default; ``stride`` is the older name, still accepted) over images
    padded by ``padding``: "valid" (none), "same" (Keras's: ceil(in /
    stride) outputs, the padding that needs split with the odd row or
    column below or to the right), or an int or (h, w) pair on every side
    (at most half the pool size, as PyTorch requires)."""

    def __init__(
        self,
        pool_size: int | tuple[int, int],
        strides: int | tuple[int, int] | None = None,
        padding: str | int | tuple[int, int] = "valid",
        name: str | None = None,
        *,
        stride: int | tuple[int, int] | None = None,
    ):
        super().__init__(name)
        self.pool_size = pair(pool_size, "pool_size")
        given = strides_argument(strides, stride, None)
        self.stride = self.pool_size if given is None else given
        self.padding: Padding = padding_argument(padding)
        if self.padding != "same" and (self.padding[0] > self.pool_size[0] // 2
                                       or self.padding[1] > self.pool_size[1] // 2):
            raise ValueError(
                f"expected padding at most half the pool size, as PyTorch requires. "
                f"Received: padding={padding!r} with pool_size={pool_size!r}"
            )

    @property
    def strides(self) -> tuple[int, int]:
        """The stride (height, width), Keras's name for ``stride``."""
        return self.stride

    def output_shape_for(self, input_shape: Shape) -> Shape:
        c, h, w = image_shape(input_shape)
        return (c, *window_output((h, w), self.pool_size, self.stride, self.sides_for((h, w)), "pool"))

    def sides_for(self, size: tuple[int, int]) -> Sides:
        """The padding (top, bottom, left, right) of images of ``size`` (h, w)."""
        return padding_sides(self.padding, size, self.pool_size, self.stride)

    @property
    def sides(self) -> Sides:
        """The padding (top, bottom, left, right) of the layer's input images."""
        return self.sides_for(self.input_shape[1:])

    def get_config(self) -> dict[str, Any]:
        # the keys of older files ("stride", and "padding" as a pair) as they were
        config: dict[str, Any] = {"pool_size": list(self.pool_size)}
        if self.stride != self.pool_size:
            config["stride"] = list(self.stride)
        if self.padding == "same":
            config["padding"] = "same"
        elif self.padding != (0, 0):
            config["padding"] = list(self.padding)
        return config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({geometry_text(self.pool_size, self.stride, self.padding, self.pool_size)})"


class MaxPool2D(_Pool2D):
    """The maximum of each ``pool_size`` window; the padding counts as
    -inf (it never wins, as in Keras and PyTorch). The gradient goes to the
    first maximum of each window (row-major), as PyTorch's.

    Shapes: x (n, c, h, w) -> y (n, c, oh, ow), oh = (h + top + bottom - kh) // sh + 1
    ("same": oh = ceil(h / sh)).
    """

    def call(self, ctx: Context, x: Array) -> Array:
        n = x.shape[0]
        y = ctx.buffer("y", n, self.output_shape)
        ctx.argmax = ctx.buffer("argmax", n, self.output_shape, np.int32)
        self.backend.maxpool2d(x, y, ctx.argmax, self.pool_size, self.stride, self.sides)
        return y

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.maxpool2d_grad(grad, ctx.argmax, dx, self.pool_size, self.stride, self.sides)
        return dx


class AveragePooling2D(_Pool2D):
    """The mean of each ``pool_size`` window, as Keras's AveragePooling2D:
    the padding is left out, each window's sum of the pixels inside the
    image divided by how many they are (TensorFlow's avg_pool with "SAME";
    an int padding is treated the same way).

    PyTorch's AvgPool2d divides by the whole window, padding included, by
    default (count_include_pad=True), so its means are smaller in
    magnitude where a window overlaps the padding (they agree where none
    does, and everywhere for "valid"); with count_include_pad=False it
    computes what this layer computes for an int padding. ONNX exports it
    as AveragePool with count_include_pad=0.

    Shapes: x (n, c, h, w) -> y (n, c, oh, ow), as MaxPool2D's.
    """

    def call(self, ctx: Context, x: Array) -> Array:
        y = ctx.buffer("y", x.shape[0], self.output_shape)
        self.backend.avgpool2d(x, y, self.pool_size, self.stride, self.sides)
        return y

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.avgpool2d_grad(grad, dx, self.pool_size, self.stride, self.sides)
        return dx


class _GlobalPool2D(Layer, abstract=True):
    """A pooling window as large as each image: (n, c, h, w) -> (n, c), or
    (n, c, 1, 1) with ``keepdims=True``, as Keras's."""

    def __init__(self, keepdims: bool = False, name: str | None = None):
        super().__init__(name)
        self.keepdims = _checks.boolean(keepdims, "keepdims")

    def output_shape_for(self, input_shape: Shape) -> Shape:
        c, _, _ = image_shape(input_shape)
        return (c, 1, 1) if self.keepdims else (c,)

    @property
    def _plane(self) -> tuple[int, int]:
        return self.input_shape[1], self.input_shape[2]

    def _as_images(self, a: Array) -> Array:
        """(n, c) or (n, c, 1, 1) as (n, c, 1, 1), what the pooling operations take."""
        return self.backend.view(a, 0, (a.shape[0], self.input_shape[0], 1, 1))

    def _as_output(self, y: Array) -> Array:
        return y if self.keepdims else self.backend.view(y, 0, (y.shape[0], self.input_shape[0]))

    def get_config(self) -> dict[str, Any]:
        return {"keepdims": True} if self.keepdims else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keepdims=True)" if self.keepdims else f"{type(self).__name__}()"


class GlobalMaxPooling2D(_GlobalPool2D):
    """The maximum of each image's plane, per channel. The gradient goes to
    the plane's first maximum (row-major; TensorFlow shares it among tied
    maxima, which random inputs do not have).

    Shapes: x (n, c, h, w) -> y (n, c), or (n, c, 1, 1) with keepdims.
    """

    def call(self, ctx: Context, x: Array) -> Array:
        n, c = x.shape[:2]
        y = ctx.buffer("y", n, (c, 1, 1))
        ctx.argmax = ctx.buffer("argmax", n, (c, 1, 1), np.int32)
        self.backend.maxpool2d(x, y, ctx.argmax, self._plane, self._plane, (0, 0, 0, 0))
        return self._as_output(y)

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.maxpool2d_grad(self._as_images(grad), ctx.argmax, dx, self._plane, self._plane, (0, 0, 0, 0))
        return dx


class GlobalAveragePooling2D(_GlobalPool2D):
    """The mean of each image's plane, per channel.

    Shapes: x (n, c, h, w) -> y (n, c), or (n, c, 1, 1) with keepdims.
    """

    def call(self, ctx: Context, x: Array) -> Array:
        n, c = x.shape[:2]
        y = ctx.buffer("y", n, (c, 1, 1))
        self.backend.avgpool2d(x, y, self._plane, self._plane, (0, 0, 0, 0))
        return self._as_output(y)

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.avgpool2d_grad(self._as_images(grad), dx, self._plane, self._plane, (0, 0, 0, 0))
        return dx
