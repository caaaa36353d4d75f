"""Image layers on NCHW batches (n, channels, height, width): Conv2D and
MaxPool2D. Only output-side sizes are declared; input channels
and spatial sizes come from the previous layer or the model's input_size."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array
from ..backends.base import window_positions
from ..naming import shape_text
from .activations import KERAS_ACTIVATIONS, ActivationFunction, keras_activation
from .base import Context, Layer, Shape, WeightedLayer

#: Conv2D's activation= names: Keras's, but softmax (a Dense's, over a row of features)
_CONV_ACTIVATIONS = tuple(name for name in KERAS_ACTIVATIONS if name != "softmax")


def _pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each at least ``minimum``."""
    pair = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        h, w = pair
    except (TypeError, ValueError):
        raise ValueError(f"expected an integer or a pair of integers. Received: {name}={value!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            kind = "positive" if minimum == 1 else "non-negative"
            raise ValueError(f"expected {kind} integers. Received: {name}={value!r}")
    return int(h), int(w)


def _image_shape(input_shape: Shape) -> Shape:
    if len(input_shape) != 3:
        raise ValueError(
            f"expects images of shape (channels, height, width), received {shape_text(input_shape)}"
        )
    return input_shape


def _window_output(size: tuple[int, int], window, stride, padding, what: str) -> tuple[int, int]:
    """Output (height, width) of a sliding window; ValueError if it does not fit."""
    (h, w), (kh, kw), (ph, pw) = size, window, padding
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(
            f"has a {kh}×{kw} {what} larger than the {h}×{w} images"
            + (f" (padded by {ph}×{pw})" if ph or pw else "") + " it receives"
        )
    return window_positions(size, window, stride, padding)


def _geometry_text(window, stride, padding, default_stride) -> str:
    text = f"{window[0]}×{window[1]}"
    if stride != default_stride:
        text += f", stride {stride[0]}" if stride[0] == stride[1] else f", stride {stride}"
    if padding != (0, 0):
        text += f", padding {padding[0]}" if padding[0] == padding[1] else f", padding {padding}"
    return text


class Conv2D(WeightedLayer):
    """2-D convolution (cross-correlation, as PyTorch's Conv2d):
    ``y[n, f, i, j] = b[f] + Σ_{c, ki, kj} W[f, c, ki, kj] · x[n, c, i·s + ki - p, j·s + kj - p]``.

    ``weights`` has PyTorch's shape (filters, in_channels, kernel_h, kernel_w),
    ``biases`` (filters,). Computed as a matrix product of image patches
    (im2col), so it runs on the same matmul as Dense.

    ``activation`` (Keras's names, as Dense's, but for "softmax") makes it
    f of that, applied where the bias is added (where f's gradient comes
    from its output or the model predicts; else after it, keeping its input).

    Shapes: x (n, c, h, w) -> y (n, filters, oh, ow), oh = (h + 2p - k) // s + 1.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        input_shape: tuple[int, int, int] | None = None,
        weight_init: str = "glorot_uniform",
        bias_init: str = "zeros",
        name: str | None = None,
        activation: str | None = None,
    ):
        super().__init__(name)
        self.filters = _checks.positive_int(filters, "filters")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding", minimum=0)
        if input_shape is not None:
            self.input_shape = tuple(_checks.positive_int(s, "input_shape") for s in input_shape)
        self._use_initializers(weight_init, bias_init)
        self.activation = keras_activation(activation, _CONV_ACTIVATIONS)

    @property
    def function(self) -> ActivationFunction | None:
        """Its own activation (``activation=``), as the backends compute it."""
        return None if self.activation is None else KERAS_ACTIVATIONS[self.activation]

    def output_shape_for(self, input_shape: Shape) -> Shape:
        _, h, w = _image_shape(input_shape)
        return (self.filters, *_window_output((h, w), self.kernel_size, self.stride, self.padding, "kernel"))

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        c, (kh, kw) = self.input_shape[0], self.kernel_size
        return self._initial_values(rng, (self.filters, c, kh, kw), self.filters, c * kh * kw, self.filters * kh * kw)

    @property
    def _patch(self) -> int:
        return self.input_shape[0] * self.kernel_size[0] * self.kernel_size[1]

    def _matrix(self, param: Array) -> Array:
        """W (or dW) as the (filters, c·kh·kw) matrix of the product."""
        return self.backend.view(param, 0, (self.filters, self._patch))

    # -------------------------------------------------------------- computing
    def call(self, ctx: Context, x: Array) -> Array:
        n, pixels = x.shape[0], math.prod(self.output_shape[1:])
        backend, params = self.backend, self.params
        cols = ctx.cols = ctx.buffer("cols", n * pixels, (self._patch,))
        backend.im2col(x, cols, self.kernel_size, self.stride, self.padding)
        rows = ctx.buffer("rows", n * pixels, (self.filters,))
        backend.matmul(cols, self._matrix(params["W"].value), rows, transpose_b=True)  # patches · Wᵀ
        y = ctx.y = ctx.buffer("y", n, self.output_shape)
        function = self.function
        if function is None or function.from_output or not ctx.training:
            kind, param = (None, 0.0) if function is None else function
            backend.to_channels_first(rows, y, bias=params["b"].value, activation=kind, activation_param=param)
            return y
        # the activation after the reordering, which keeps its input z for the gradient
        z = ctx.z = ctx.buffer("z", n, self.output_shape)
        backend.to_channels_first(rows, z, bias=params["b"].value)
        function.apply(backend, z, y)
        return y

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        n, pixels = grad.shape[0], math.prod(self.output_shape[1:])
        W, b = self.params["W"], self.params["b"]
        # the forward's rows buffer is free once y is written: it takes dZ by
        # pixel, dZ = dY taken back through the activation (in the same pass
        # where its gradient comes from its output)
        dy = ctx.dy_rows = ctx.buffer("rows", n * pixels, (self.filters,))
        function = self.function
        if function is None:
            self.backend.to_channels_last(grad, dy)
        elif function.from_output:
            self.backend.to_channels_last(grad, dy, grad_of=(function.kind, ctx.y), activation_param=function.param)
        else:
            dz = ctx.buffer("dz", n, self.output_shape)
            function.gradient(self.backend, ctx.z, grad, dz)
            self.backend.to_channels_last(dz, dy)
        self.backend.matmul(dy, ctx.cols, self._matrix(W.grad), transpose_a=True)  # dW = dYᵀ · patches
        self.backend.sum_rows(dy, b.grad)  # db = Σ dY over samples and pixels

    def backward(self, ctx: Context, grad: Array) -> Array:
        self.parameter_gradients(ctx, grad)
        # dW has read the patches: their buffer now takes dpatchesᵀ = Wᵀ · dYᵀ,
        # by column, the layout col2im reads without reordering
        n, pixels = grad.shape[0], math.prod(self.output_shape[1:])
        dcols_t = self.backend.view(ctx.cols, 0, (self._patch, n * pixels))
        self.backend.matmul(self._matrix(self.params["W"].value), ctx.dy_rows, dcols_t,
                            transpose_a=True, transpose_b=True)
        dx = ctx.buffer("dx", n, self.input_shape)
        self.backend.col2im(dcols_t, dx, self.kernel_size, self.stride, self.padding)
        return dx

    # ------------------------------------------------------------ description
    def to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"weight": values["W"], "bias": values["b"]} if values else {}  # PyTorch's layout already

    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        kh, kw = self.kernel_size
        weight, bias = self._file_tensors(
            tensors,
            lambda w, b: w.ndim == 4 and w.shape[0] == self.filters and w.shape[2:] == self.kernel_size
            and b.shape == (self.filters,),
            f"({self.filters}, channels, {kh}, {kw})", self.filters,
        )
        if self.input_shape is None:
            raise ValueError(f"{self!r} needs its input_shape (channels, height, width) to take weights")
        return (weight.shape[1], *self.input_shape[1:]), {"W": weight, "b": bias}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"filters": self.filters, "kernel_size": list(self.kernel_size)}
        if self.stride != (1, 1):
            config["stride"] = list(self.stride)
        if self.padding != (0, 0):
            config["padding"] = list(self.padding)
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        config.update(self._initializer_config())
        if self.activation is not None:
            config["activation"] = self.activation
        return config

    def __repr__(self) -> str:
        geometry = _geometry_text(self.kernel_size, self.stride, self.padding, (1, 1))
        if self.activation is not None:
            geometry += f", {self.activation}"
        if self.input_shape is None:
            return f"Conv2D({self.filters}, {geometry})"
        return f"Conv2D({self.input_shape[0]}→{self.filters}, {geometry})"


class MaxPool2D(Layer):
    """The maximum of each ``pool_size`` window, at ``stride`` (the pool size
    by default), over zero-or-more ``padding`` that counts as -inf. The
    gradient goes to the first maximum of each window, as PyTorch's.

    Shapes: x (n, c, h, w) -> y (n, c, oh, ow), oh = (h + 2p - k) // s + 1.
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        name: str | None = None,
    ):
        super().__init__(name)
        self.pool_size = _pair(pool_size, "pool_size")
        self.stride = self.pool_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding", minimum=0)
        if self.padding[0] > self.pool_size[0] // 2 or self.padding[1] > self.pool_size[1] // 2:
            raise ValueError(
                f"expected padding at most half the pool size, as PyTorch requires. "
                f"Received: padding={padding!r} with pool_size={pool_size!r}"
            )

    def output_shape_for(self, input_shape: Shape) -> Shape:
        c, h, w = _image_shape(input_shape)
        return (c, *_window_output((h, w), self.pool_size, self.stride, self.padding, "pool"))

    def call(self, ctx: Context, x: Array) -> Array:
        n = x.shape[0]
        y = ctx.buffer("y", n, self.output_shape)
        ctx.argmax = ctx.buffer("argmax", n, self.output_shape, np.int32)
        self.backend.maxpool2d(x, y, ctx.argmax, self.pool_size, self.stride, self.padding)
        return y

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.maxpool2d_grad(grad, ctx.argmax, dx, self.pool_size, self.stride, self.padding)
        return dx

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"pool_size": list(self.pool_size)}
        if self.stride != self.pool_size:
            config["stride"] = list(self.stride)
        if self.padding != (0, 0):
            config["padding"] = list(self.padding)
        return config

    def __repr__(self) -> str:
        return f"MaxPool2D({_geometry_text(self.pool_size, self.stride, self.padding, self.pool_size)})"
