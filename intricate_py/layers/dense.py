"""Dense: a fully connected layer, y = x W + b."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array
from .base import Context, Shape, WeightedLayer


class Dense(WeightedLayer):
    """``y = x @ W + b`` with ``W`` of shape (inputs, units) and ``b`` (units,),
    read and assigned as numpy arrays through ``weights`` and ``biases``.

    Only ``units`` is required: the input width comes from the previous layer
    or the model's ``input_size``. ``input_size`` pins it, and a model whose
    chain disagrees raises ValueError at construction.

    Shapes: x (n, inputs) -> y (n, units).
    """

    def __init__(
        self,
        units: int,
        input_size: int | None = None,
        weight_init: str = "glorot_uniform",
        bias_init: str = "zeros",
        name: str | None = None,
    ):
        super().__init__(name)
        self.units = _checks.positive_int(units, "units")
        if input_size is not None:
            self.input_shape = (_checks.positive_int(input_size, "input_size"),)
        self._use_initializers(weight_init, bias_init)

    def output_shape_for(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(
                f"expects flat inputs of shape (features,), received {input_shape}: "
                "put a Flatten() layer before it"
            )
        return (self.units,)

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        inputs = self.input_shape[0]
        return self._initial_values(rng, (inputs, self.units), self.units, inputs, self.units)

    # -------------------------------------------------------------- computing
    fuses_activation = True

    def call(self, ctx: Context, x: Array, activation: str | None = None) -> Array:
        """y = x W + b; with ``activation`` (the kind of the activation layer
        that follows), y = f(x W + b) in the same product."""
        ctx.x = x
        y = ctx.buffer("y", x.shape[0], self.output_shape)
        params = self.params
        self.backend.matmul(x, params["W"].value, y, bias=params["b"].value, activation=activation)
        return y

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        W, b = self.params["W"], self.params["b"]
        # dW = xᵀ dy, and db = Σ_rows dy in the same product
        self.backend.matmul(ctx.x, grad, W.grad, transpose_a=True, bias_grad=b.grad)

    def backward(self, ctx: Context, grad: Array, activation_grad: tuple[str, Array] | None = None) -> Array:
        """dE/dx = dy Wᵀ; with ``activation_grad=(kind, h)`` — the activation
        before this layer and its output h, this layer's input — the gradient
        of that activation's input, f'(h) · dy Wᵀ, in the same product."""
        self.parameter_gradients(ctx, grad)
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.matmul(grad, self.params["W"].value, dx, transpose_b=True, grad_of=activation_grad)
        return dx

    # ------------------------------------------------------------ description
    def to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # PyTorch's Linear layout: weight (units, inputs)
        return {"weight": values["W"].T, "bias": values["b"]} if values else {}

    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        weight, bias = self._file_tensors(
            tensors, lambda w, b: w.ndim == 2 and w.shape[0] == self.units and b.shape == (self.units,),
            f"({self.units}, inputs)", self.units,
        )
        return (weight.shape[1],), {"W": weight.T, "b": bias}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"units": self.units}
        if self.input_shape is not None:
            config["input_size"] = self.input_shape[0]
        return {**config, **self._initializer_config()}

    def __repr__(self) -> str:
        if self.input_shape is None:
            return f"Dense({self.units})"
        return f"Dense({self.input_shape[0]}→{self.units})"
