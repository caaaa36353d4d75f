"""Conv2D, the convolution of NCHW batches (n, channels, height, width).
Only output-side sizes are declared; input channels and spatial sizes come
from the previous layer or the model's input_size. (The pooling layers,
MaxPool2D among them, are in :mod:`.pooling`; MaxPool2D is still importable
from here.)"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array
from ..backends.base import Sides
from .activations import KERAS_ACTIVATIONS, ActivationFunction, keras_activation
from .base import Context, Shape, WeightedLayer
from .images import Padding, geometry_text, image_shape, pair, padding_argument, padding_sides
from .images import strides_argument, window_output
from .pooling import MaxPool2D

__all__ = ["Conv2D", "MaxPool2D"]

#: Conv2D's activation= names: Keras's, but softmax (a Dense's, over a row of features)
CONV_ACTIVATIONS = tuple(name for name in KERAS_ACTIVATIONS if name != "softmax")


class Conv2D(WeightedLayer):
    """2-D convolution (cross-correlation, as PyTorch's Conv2d), Keras 3's
    arguments in PyTorch's layout:
    ``y[n, f, i, j] = b[f] + Σ_{c, ki, kj} W[f, c, ki, kj] · x[n, k·cg + c, i·sh + ki·dh - top, j·sw + kj·dw - left]``
    where k = f // (filters / groups) is the group of filter f and c runs
    over its cg = in_channels / groups channels.

    * ``strides`` (int or (h, w)); ``stride`` is its older name, still accepted;
    * ``padding``: "valid" (none), "same" (Keras's and TensorFlow's: ceil(in / stride)
      outputs, the total padding max((out - 1)·stride + (k - 1)·dilation + 1 - in, 0)
      split with the odd row or column below or to the right), or an int or
      (h, w) pair of rows and columns on every side (as PyTorch's);
    * ``dilation_rate`` (int or (h, w)): the kernel's taps that many pixels apart;
    * ``groups``: the channels and filters in that many groups, each filter
      seeing its group's channels only (both must divide by it);
      ``groups == in_channels`` is a depthwise convolution;
    * ``use_bias=False``: no ``b`` (a file holds ``weight`` alone);
    * ``activation`` (Keras's names, as Dense's, but for "softmax"): f of
      the result, applied where the bias is added (where f's gradient comes
      from its output or the model predicts; else after it, keeping its input).

    ``weights`` has PyTorch's shape (filters, in_channels / groups, kh, kw),
    ``biases`` (filters,). Computed as matrix products of image patches
    (im2col) on the same matmul as Dense: one product a pass, or one a group
    (``groups`` products of 1/groups the size, each a dispatch on the GPU).

    Shapes: x (n, c, h, w) -> y (n, filters, oh, ow),
    oh = (h + top + bottom - (kh - 1)·dh - 1) // sh + 1.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] | None = None,
        padding: str | int | tuple[int, int] = "valid",
        input_shape: tuple[int, int, int] | None = None,
        weight_init: str = "glorot_uniform",
        bias_init: str = "zeros",
        name: str | None = None,
        *,
        dilation_rate: int | tuple[int, int] = 1,
        groups: int = 1,
        use_bias: bool = True,
        stride: int | tuple[int, int] | None = None,
        activation: str | None = None,
    ):
        super().__init__(name)
        self.filters = _checks.positive_int(filters, "filters")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = strides_argument(strides, stride, (1, 1))
        self.padding: Padding = padding_argument(padding)
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        self.groups = _checks.positive_int(groups, "groups")
        if self.filters % self.groups:
            raise ValueError(f"expected filters divisible by groups. Received: filters={filters!r}, groups={groups!r}")
        self._use_bias(use_bias)
        if input_shape is not None:
            self.input_shape = tuple(_checks.positive_int(s, "input_shape") for s in input_shape)
        self._use_initializers(weight_init, bias_init)
        self.activation = keras_activation(activation, CONV_ACTIVATIONS)

    @property
    def function(self) -> ActivationFunction | None:
        """Its own activation (``activation=``), as the backends compute it."""
        return None if self.activation is None else KERAS_ACTIVATIONS[self.activation]

    @property
    def strides(self) -> tuple[int, int]:
        """The stride (height, width), Keras's name for ``stride``."""
        return self.stride

    def output_shape_for(self, input_shape: Shape) -> Shape:
        c, h, w = image_shape(input_shape)
        if c % self.groups:
            raise ValueError(f"expects input channels divisible by groups={self.groups}, "
                             f"received {c} channels")
        sides = self.sides_for((h, w))
        return (self.filters, *window_output((h, w), self.kernel_size, self.stride, sides, "kernel",
                                             self.dilation_rate))

    def sides_for(self, size: tuple[int, int]) -> Sides:
        """The padding (top, bottom, left, right) of images of ``size`` (h, w)."""
        return padding_sides(self.padding, size, self.kernel_size, self.stride, self.dilation_rate)

    @property
    def sides(self) -> Sides:
        """The padding (top, bottom, left, right) of the layer's input images."""
        return self.sides_for(self.input_shape[1:])

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        per_group, (kh, kw) = self.input_shape[0] // self.groups, self.kernel_size
        return self._initial_values(rng, (self.filters, per_group, kh, kw), self.filters,
                                    per_group * kh * kw, self.filters * kh * kw)

    @property
    def _patch(self) -> int:
        """The columns of a group's patches, c/groups · kh · kw."""
        return self.input_shape[0] // self.groups * self.kernel_size[0] * self.kernel_size[1]

    def _matrix(self, param: Array) -> Array:
        """W (or dW) as the (filters, c/groups·kh·kw) matrix of the product."""
        return self.backend.view(param, 0, (self.filters, self._patch))

    def _block(self, a: Array, k: int, rows: int, columns: int) -> Array:
        """Group ``k``'s (rows, columns) matrix of ``a``, which holds
        ``groups`` of them one after the other."""
        return self.backend.view(a, k * rows * columns, (rows, columns))

    def _pixel_columns(self, ctx: Context, name: str, rows: int, columns: int) -> Array:
        """A (rows, columns) matrix of the workspace whose columns, a pixel
        each, grow with the batch (the workspace grows buffers by their
        first dimension, here their size)."""
        return self.backend.view(ctx.buffer(name, rows * columns, ()), 0, (rows, columns))

    def _product(self, a: Array, b: Array, out: Array, shapes, transpose_a=False, transpose_b=False) -> None:
        """out = op(a)·op(b), or each group's block of out from the groups'
        blocks of a and b, ``shapes`` = the blocks' (rows, columns) in a, b
        and out."""
        backend = self.backend
        if self.groups == 1:
            backend.matmul(a, b, out, transpose_a=transpose_a, transpose_b=transpose_b)
            return
        for k in range(self.groups):
            backend.matmul(*(self._block(m, k, *shape) for m, shape in zip((a, b, out), shapes)),
                           transpose_a=transpose_a, transpose_b=transpose_b)

    # -------------------------------------------------------------- computing
    # The products' matrices have a column per output pixel (n, i, j): the
    # patches cols_t (c·kh·kw, n·p), rows_t = W·cols_t (filters, n·p); a
    # group's rows are a block of each, so a grouped convolution is the
    # groups' products side by side.
    def call(self, ctx: Context, x: Array) -> Array:
        n, pixels = x.shape[0], math.prod(self.output_shape[1:])
        backend, per_group = self.backend, self.filters // self.groups
        cols_t = ctx.cols_t = self._pixel_columns(ctx, "cols_t", self.groups * self._patch, n * pixels)
        backend.im2col(x, cols_t, self.kernel_size, self.stride, self.sides, self.dilation_rate)
        rows_t = self._pixel_columns(ctx, "rows_t", self.filters, n * pixels)
        self._product(self._matrix(self.params["W"].value), cols_t, rows_t,
                      ((per_group, self._patch), (self._patch, n * pixels), (per_group, n * pixels)))
        y = ctx.y = ctx.buffer("y", n, self.output_shape)
        function = self.function
        if function is None or function.from_output or not ctx.training:
            kind, param = (None, 0.0) if function is None else function
            backend.to_channels_first(rows_t, y, bias=self._bias(), activation=kind, activation_param=param)
            return y
        # the activation after the reordering, which keeps its input z for the gradient
        z = ctx.z = ctx.buffer("z", n, self.output_shape)
        backend.to_channels_first(rows_t, z, bias=self._bias())
        function.apply(backend, z, y)
        return y

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        n, pixels = grad.shape[0], math.prod(self.output_shape[1:])
        backend, per_group, W = self.backend, self.filters // self.groups, self.params["W"]
        # the forward's rows_t buffer is free once y is written: it takes dZ
        # as product rows, dZ = dY taken back through the activation (in the
        # same pass where its gradient comes from its output)
        dy_t = ctx.dy_t = self._pixel_columns(ctx, "rows_t", self.filters, n * pixels)
        function = self.function
        if function is None:
            backend.to_channels_last(grad, dy_t)
        elif function.from_output:
            backend.to_channels_last(grad, dy_t, grad_of=(function.kind, ctx.y), activation_param=function.param)
        else:
            dz = ctx.buffer("dz", n, self.output_shape)
            function.gradient(backend, ctx.z, grad, dz)
            backend.to_channels_last(dz, dy_t)
        # dW = dZ · patchesᵀ
        self._product(dy_t, ctx.cols_t, self._matrix(W.grad),
                      ((per_group, n * pixels), (self._patch, n * pixels), (per_group, self._patch)),
                      transpose_b=True)
        if self.use_bias:  # db = Σ dZ over samples and pixels
            backend.sum_channels(backend.view(dy_t, 0, (1, self.filters, n * pixels)), self.params["b"].grad)

    def backward(self, ctx: Context, grad: Array) -> Array:
        self.parameter_gradients(ctx, grad)
        # dW has read the patches: their buffer now takes dpatches = Wᵀ · dZ,
        # the layout col2im reads
        n, pixels = grad.shape[0], math.prod(self.output_shape[1:])
        per_group = self.filters // self.groups
        self._product(self._matrix(self.params["W"].value), ctx.dy_t, ctx.cols_t,
                      ((per_group, self._patch), (per_group, n * pixels), (self._patch, n * pixels)),
                      transpose_a=True)
        dx = ctx.buffer("dx", n, self.input_shape)
        self.backend.col2im(ctx.cols_t, dx, self.kernel_size, self.stride, self.sides, self.dilation_rate)
        return dx

    # ------------------------------------------------------------ description
    def to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not values:
            return {}
        return {"weight": values["W"], **({"bias": values["b"]} if "b" in values else {})}  # PyTorch's layout

    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        kh, kw = self.kernel_size
        shape_text = f"({self.filters}, channels / {self.groups}, {kh}, {kw})" if self.groups > 1 \
            else f"({self.filters}, channels, {kh}, {kw})"

        def fits(w: np.ndarray) -> bool:
            return w.ndim == 4 and w.shape[0] == self.filters and w.shape[2:] == self.kernel_size

        weight, bias = self._file_tensors(tensors, fits, shape_text, self.filters)
        if self.input_shape is None:
            raise ValueError(f"{self!r} needs its input_shape (channels, height, width) to take weights")
        return (weight.shape[1] * self.groups, *self.input_shape[1:]), self._file_values(weight, bias)

    def get_config(self) -> dict[str, Any]:
        # the keys a file of an older version holds keep their names and
        # forms; the newer options appear only when they are not the default
        config: dict[str, Any] = {"filters": self.filters, "kernel_size": list(self.kernel_size)}
        if self.stride != (1, 1):
            config["stride"] = list(self.stride)
        if self.padding == "same":
            config["padding"] = "same"
        elif self.padding != (0, 0):
            config["padding"] = list(self.padding)
        if self.dilation_rate != (1, 1):
            config["dilation_rate"] = list(self.dilation_rate)
        if self.groups != 1:
            config["groups"] = self.groups
        if not self.use_bias:
            config["use_bias"] = False
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        config.update(self._initializer_config())
        if self.activation is not None:
            config["activation"] = self.activation
        return config

    def __repr__(self) -> str:
        geometry = geometry_text(self.kernel_size, self.stride, self.padding, (1, 1), self.dilation_rate)
        if self.groups != 1:
            geometry += f", groups {self.groups}"
        if not self.use_bias:
            geometry += ", no bias"
        if self.activation is not None:
            geometry += f", {self.activation}"
        if self.input_shape is None:
            return f"Conv2D({self.filters}, {geometry})"
        return f"Conv2D({self.input_shape[0]}→{self.filters}, {geometry})"

