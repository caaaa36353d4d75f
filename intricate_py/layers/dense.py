"""Dense: a fully connected layer, y = x W + b."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, initializers
from ..backends import Array
from .base import Layer, Shape


class Dense(Layer):
    """``y = x @ W + b`` with ``W`` of shape (inputs, units) and ``b`` (units,).

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
    ):
        super().__init__()
        self.units = _checks.positive_int(units, "units")
        if input_size is not None:
            self.input_shape = (_checks.positive_int(input_size, "input_size"),)
        initializers.get(weight_init)
        initializers.get(bias_init)
        self.weight_init, self.bias_init = weight_init, bias_init

    def output_shape_for(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(
                f"expects flat inputs of shape (features,), received {input_shape}: "
                "put a Flatten() layer before it"
            )
        return (self.units,)

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        inputs = self.input_shape[0]
        return {
            "W": initializers.get(self.weight_init)(rng, (inputs, self.units), inputs, self.units),
            "b": initializers.get(self.bias_init)(rng, (self.units,), inputs, self.units),
        }

    # -------------------------------------------------------------- computing
    def forward(self, x: Array) -> Array:
        if self._workspace is None or x.shape[1:] != self.input_shape:
            self._accept(x)
        self._x = x
        y = self._workspace.get("y", x.shape[0], self.output_shape)
        params = self.params
        self.backend.matmul(x, params["W"].value, y, bias=params["b"].value)
        return y

    def compute_gradients(self, grad_output: Array) -> None:
        W, b = self.params["W"], self.params["b"]
        self.backend.matmul(self._x, grad_output, W.grad, transpose_a=True)  # dW = xᵀ dy
        self.backend.sum_rows(grad_output, b.grad)  # db = Σ_rows dy

    def back_propagate(self, grad_output: Array) -> Array:
        self.compute_gradients(grad_output)
        dx = self._workspace.get("dx", grad_output.shape[0], self.input_shape)
        self.backend.matmul(grad_output, self.params["W"].value, dx, transpose_b=True)  # dx = dy Wᵀ
        return dx

    # ------------------------------------------------------------ description
    @property
    def weights(self) -> np.ndarray:
        """W as a numpy array of shape (inputs, units)."""
        return self._read("W")

    @weights.setter
    def weights(self, value) -> None:
        self._assign("W", value)

    @property
    def biases(self) -> np.ndarray:
        """b as a numpy array of shape (units,)."""
        return self._read("b")

    @biases.setter
    def biases(self, value) -> None:
        self._assign("b", value)

    def _to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # PyTorch's Linear layout: weight (units, inputs)
        return {"weight": values["W"].T, "bias": values["b"]} if values else {}

    def _from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        if set(tensors) != {"weight", "bias"}:
            raise ValueError(f"{self!r} expects tensors ['bias', 'weight']. Received: {sorted(tensors)}")
        weight, bias = tensors["weight"], tensors["bias"]
        if weight.ndim != 2 or weight.shape[0] != self.units or bias.shape != (self.units,):
            raise ValueError(
                f"{self!r} expects weight of shape ({self.units}, inputs) and bias of shape "
                f"({self.units},). Received: weight {weight.shape}, bias {bias.shape}"
            )
        return (weight.shape[1],), {"W": weight.T, "b": bias}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"units": self.units}
        if self.input_shape is not None:
            config["input_size"] = self.input_shape[0]
        if self.weight_init != "glorot_uniform":
            config["weight_init"] = self.weight_init
        if self.bias_init != "zeros":
            config["bias_init"] = self.bias_init
        return config

    def __repr__(self) -> str:
        if self.input_shape is None:
            return f"Dense({self.units})"
        return f"Dense({self.input_shape[0]}→{self.units})"
