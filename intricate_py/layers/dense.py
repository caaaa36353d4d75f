"""Dense: a fully connected layer, y = x W + b."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array
from .activations import KERAS_ACTIVATIONS, ActivationFunction, keras_activation
from .base import Context, Shape, WeightedLayer


class Dense(WeightedLayer):
    """``y = x @ W + b`` with ``W`` of shape (inputs, units) and ``b`` (units,),
    read and assigned as numpy arrays through ``weights`` and ``biases``.

    Only ``units`` is required: the input width comes from the previous layer
    or the model's ``input_size``. ``input_size`` pins it, and a model whose
    chain disagrees raises ValueError at construction.

    ``activation`` (Keras's names: "relu", "tanh", "sigmoid", "softmax",
    "leaky_relu" (slope 0.2), "elu", "gelu", "silu" or "swish", "softplus";
    "linear" or None for none) makes it ``y = f(x @ W + b)``, in the
    product's epilogue where f's gradient comes from its output or the
    model predicts (else the product, then f, keeping its input).
    ``use_bias=False``: no ``b`` (a file holds ``weight`` alone), as
    before a BatchNormalization.

    Shapes: x (n, inputs) -> y (n, units); as in Keras, any rank acts on
    the last axis: x (n, ..., inputs) -> y (n, ..., units) (a sequence's
    positions each through the same product).
    """

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        *,
        input_size: int | None = None,
        weight_init: str = "glorot_uniform",
        bias_init: str = "zeros",
        name: str | None = None,
    ):
        super().__init__(name)
        self.units = _checks.positive_int(units, "units")
        if isinstance(activation, (int, np.integer)) and not isinstance(activation, bool):
            raise ValueError(f"expected an activation name as Dense's second argument (Keras's order: Dense(units, "
                             f"activation, use_bias)). Received: {activation!r}; the input width is a keyword, "
                             f"input_size={activation!r}")
        self._use_bias(use_bias)
        if input_size is not None:
            self.input_shape = (_checks.positive_int(input_size, "input_size"),)
        self._use_initializers(weight_init, bias_init)
        self.activation = keras_activation(activation)

    def output_shape_for(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.units)

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        inputs = self.input_shape[-1]
        return self._initial_values(rng, (inputs, self.units), self.units, inputs, self.units)

    # -------------------------------------------------------------- computing
    folds_activation_grad = True

    @property
    def fuses_activation(self) -> bool:
        """An activation layer after it can run in its product (not when it has its own)."""
        return self.activation is None

    @property
    def function(self) -> ActivationFunction | None:
        """Its own activation (``activation=``), as the backends compute it."""
        return None if self.activation is None else KERAS_ACTIVATIONS[self.activation]

    def _matrix(self, a: Array) -> Array:
        """A batch (n, ..., features) as the matrix (rows, features) of its
        positions: itself for flat samples."""
        return self.backend.matrix(a, a.shape[-1])

    def call(self, ctx: Context, x: Array, activation: ActivationFunction | None = None) -> Array:
        """y = x W + b, then its own activation; with ``activation`` (that of
        the activation layer that follows, which the plan fuses),
        y = f(x W + b) in the same product."""
        if activation is not None and self.activation is not None:
            raise ValueError(f"{self!r} applies its own activation: it fuses no other (fuses_activation is False)")
        function = activation if activation is not None else self.function
        y = ctx.buffer("y", x.shape[0], self.output_shape)
        ctx.x, ctx.y, x_rows, y_rows = x, y, self._matrix(x), self._matrix(y)
        params = self.params
        if function is None or (function.in_epilogue and (function.from_output or not ctx.training)):
            kind, param = (None, 0.0) if function is None else function
            self.backend.matmul(x_rows, params["W"].value, y_rows, bias=self._bias(), activation=kind,
                                activation_param=param)
            return y
        # the activation after the product, which keeps its input z for the gradient
        z = ctx.z = ctx.buffer("z", x.shape[0], self.output_shape)
        self.backend.matmul(x_rows, params["W"].value, self._matrix(z), bias=self._bias())
        function.apply(self.backend, self._matrix(z), y_rows)
        return y

    def _before_activation(self, ctx: Context, grad: Array) -> Array:
        """dE/dz of z = x W + b from dE/dy, as a matrix (rows, units):
        through its own activation, if any."""
        function = self.function
        if function is None:
            return self._matrix(grad)
        dz = self._matrix(ctx.buffer("dz", grad.shape[0], self.output_shape))
        function.gradient(self.backend, self._matrix(ctx.y if function.from_output else ctx.z), self._matrix(grad), dz)
        return dz

    def _weight_gradients(self, ctx: Context, dz: Array) -> None:
        # dW = xᵀ dz, and db = Σ_rows dz in the same product
        db = self.params["b"].grad if self.use_bias else None
        self.backend.matmul(self._matrix(ctx.x), dz, self.params["W"].grad, transpose_a=True, bias_grad=db)

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        self._weight_gradients(ctx, self._before_activation(ctx, grad))

    def backward(self, ctx: Context, grad: Array,
                 activation_grad: tuple[ActivationFunction, Array] | None = None) -> Array:
        """dE/dx = dz Wᵀ (dz: dy through its own activation); with
        ``activation_grad=(f, h)`` — the activation before this layer, whose
        gradient comes from its output h, this layer's input — the gradient
        of that activation's input, f'(h) · dz Wᵀ, in the same product."""
        dz = self._before_activation(ctx, grad)
        self._weight_gradients(ctx, dz)
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        grad_of, param = None, 0.0
        if activation_grad is not None:
            (kind, param), h = activation_grad
            grad_of = (kind, self._matrix(h))
        self.backend.matmul(dz, self.params["W"].value, self._matrix(dx), transpose_b=True, grad_of=grad_of,
                            activation_param=param)
        return dx

    # ------------------------------------------------------------ description
    def to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # PyTorch's Linear layout: weight (units, inputs)
        if not values:
            return {}
        return {"weight": values["W"].T, **({"bias": values["b"]} if "b" in values else {})}

    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        weight, bias = self._file_tensors(tensors, lambda w: w.ndim == 2 and w.shape[0] == self.units,
                                          f"({self.units}, inputs)", self.units)
        inputs = weight.shape[1]
        # a layer of sequences (or any rank) keeps its input shape when the widths agree
        shape = self.input_shape if self.input_shape is not None and self.input_shape[-1] == inputs else (inputs,)
        return shape, self._file_values(weight.T, bias)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"units": self.units}
        if self.input_shape is not None and len(self.input_shape) == 1:
            config["input_size"] = self.input_shape[0]
        config.update(self._initializer_config())
        if self.activation is not None:
            config["activation"] = self.activation
        if not self.use_bias:
            config["use_bias"] = False
        return config

    def __repr__(self) -> str:
        activation = ("" if self.activation is None else f", {self.activation}") + \
            ("" if self.use_bias else ", no bias")
        if self.input_shape is None:
            return f"Dense({self.units}{activation})"
        return f"Dense({self.input_shape[-1]}→{self.units}{activation})"
