"""Activations are layers, as in Intricate. Their gradients come from the
saved output alone (1 - y² for TanH, y(1 - y) for Sigmoid, [y > 0] for ReLU),
so backward needs no copy of the input."""

from __future__ import annotations

from ..backends import Array
from .base import Context, Layer, Shape


class Activation(Layer, abstract=True):
    """A parameter-free function of the input; ``kind`` names it for the backend.

    Shapes: x (n, *shape) -> y (n, *shape).
    """

    kind: str

    def call(self, ctx: Context, x: Array) -> Array:
        y = ctx.y = ctx.buffer("y", x.shape[0], self.input_shape)
        self._apply(x, y)
        return y

    def take(self, ctx: Context, y: Array) -> Array:
        """Keep ``y``, this layer's output computed elsewhere (by a product
        whose epilogue applied this activation), for the backward."""
        ctx.y = y
        return y

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self._gradient(ctx.y, grad, dx)
        return dx

    def _apply(self, x: Array, y: Array) -> None:
        self.backend.activation(self.kind, x, y)

    def _gradient(self, y: Array, dy: Array, dx: Array) -> None:
        self.backend.activation_grad(self.kind, y, dy, dx)


class TanH(Activation):
    """y = tanh(x)."""

    kind = "tanh"


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x))."""

    kind = "sigmoid"


class ReLU(Activation):
    """y = max(x, 0)."""

    kind = "relu"


class Softmax(Activation):
    """Row-wise softmax over the features of (n, features) inputs.

    Followed by CategoricalCrossEntropy, a model skips this backward and
    uses the fused gradient (p - y) / n.
    """

    kind = "softmax"

    def output_shape_for(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(f"expects flat inputs of shape (features,), received {input_shape}")
        return input_shape

    def _apply(self, x: Array, y: Array) -> None:
        self.backend.softmax(x, y)

    def _gradient(self, y: Array, dy: Array, dx: Array) -> None:
        self.backend.softmax_grad(y, dy, dx)
