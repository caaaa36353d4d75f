"""Activations are layers, as in Intricate. Their gradients come from the
saved output alone (1 - y² for TanH, y(1 - y) for Sigmoid, [y > 0] for ReLU),
so backward needs no copy of the input."""

from __future__ import annotations

from ..backends import Array
from .base import Layer, Shape


class Activation(Layer, abstract=True):
    """A parameter-free function of the input; ``kind`` names it for the backend.

    Shapes: x (n, *shape) -> y (n, *shape).
    """

    kind: str

    def forward(self, x: Array) -> Array:
        self._check_input(x)
        y = self._y = self._workspace.get("y", x.shape[0], self.input_shape)
        self._apply(x, y)
        return y

    def take(self, y: Array) -> Array:
        """Keep ``y``, this layer's output computed elsewhere (by a product
        whose epilogue applied this activation), for back_propagate."""
        self._check_input(y)
        self._y = y
        return y

    def back_propagate(self, grad_output: Array) -> Array:
        dx = self._workspace.get("dx", grad_output.shape[0], self.input_shape)
        self._gradient(self._y, grad_output, dx)
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
