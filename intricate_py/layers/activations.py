"""Activations are layers, as in Intricate, and Dense's and Conv2D's
``activation=`` (Keras's names). Most gradients come from the saved output
alone (1 - y² for TanH, y(1 - y) for Sigmoid, [y > 0] for ReLU; see
``Backend.activation_grad``), so backward needs no copy of the input; GELU
and SiLU, which are not one-to-one, keep their input instead (and so does
an ELU of negative alpha)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _checks
from ..backends import Array, Backend
from ..backends.base import ACTIVATIONS, gradient_from_output
from .base import Context, Layer

_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ActivationFunction(NamedTuple):
    """An activation as the backends compute it: ``kind``, one of
    ``backends.base.ACTIVATIONS`` or ``"softmax"`` (row by row), and its
    scalar ``param`` (LeakyReLU's negative slope, ELU's alpha)."""

    kind: str
    param: float = 0.0

    @property
    def in_epilogue(self) -> bool:
        """Whether a product's epilogue (and ``to_channels_first``) computes it."""
        return self.kind in ACTIVATIONS

    @property
    def from_output(self) -> bool:
        """Whether its gradient comes from its output y (which a product
        can then fold: ``grad_of``); otherwise it needs the input x."""
        return self.kind == "softmax" or gradient_from_output(self.kind, self.param)

    def apply(self, backend: Backend, x: Array, y: Array) -> None:
        """y = f(x); a softmax over the last axis."""
        if self.kind == "softmax":
            backend.softmax(*_last_axis_rows(backend, x, y))
        else:
            backend.activation(self.kind, x, y, self.param)

    def gradient(self, backend: Backend, saved: Array, dy: Array, dx: Array) -> None:
        """dx = dy · f'(x), ``saved`` the output y where :attr:`from_output`,
        else the input x."""
        if self.kind == "softmax":
            backend.softmax_grad(*_last_axis_rows(backend, saved, dy, dx))
        elif self.from_output:
            backend.activation_grad(self.kind, saved, dy, dx, self.param)
        else:
            backend.activation_grad_from_input(self.kind, saved, dy, dx, self.param)


def _last_axis_rows(backend: Backend, *arrays: Array) -> list[Array]:
    """Arrays (n, ..., k) as the matrices (rows, k) a row-wise softmax
    takes (views): a softmax acts on the last axis, as Keras's does."""
    return [backend.matrix(a, a.shape[-1]) for a in arrays]


#: Keras's names for ``activation=`` and what each computes, with Keras's
#: defaults (keras.activations.leaky_relu's slope is 0.2, the LeakyReLU
#: layer's 0.3); "linear" and None are no activation.
KERAS_ACTIVATIONS: dict[str, ActivationFunction] = {
    "tanh": ActivationFunction("tanh"),
    "sigmoid": ActivationFunction("sigmoid"),
    "relu": ActivationFunction("relu"),
    "leaky_relu": ActivationFunction("leaky_relu", 0.2),
    "elu": ActivationFunction("elu", 1.0),
    "gelu": ActivationFunction("gelu"),
    "silu": ActivationFunction("silu"),
    "swish": ActivationFunction("silu"),
    "softplus": ActivationFunction("softplus"),
    "softmax": ActivationFunction("softmax"),
}


def keras_activation(name: str | None, allowed: tuple[str, ...] = tuple(KERAS_ACTIVATIONS)) -> str | None:
    """``name`` checked among ``allowed`` Keras names, None for None and
    "linear" (no activation); ValueError saying which names there are."""
    if name is None or name == "linear":
        return None
    if not isinstance(name, str) or name not in allowed:
        names = ", ".join(repr(n) for n in sorted(allowed))
        raise ValueError(f"expected an activation among {names}, 'linear' or None. Received: activation={name!r}")
    return name


def _float32_number(value, name: str, non_negative: bool = False) -> float:
    """A finite number that float32 holds too (the GPU computes in float32)."""
    value = (_checks.non_negative_float if non_negative else _checks.finite_float)(value, name)
    if abs(value) > _FLOAT32_MAX:
        raise ValueError(f"expected a number within float32's range (±{_FLOAT32_MAX:.4g}). Received: {name}={value!r}")
    return value


class Activation(Layer, abstract=True):
    """A parameter-free function of the input; ``kind`` names it for the
    backend and ``param`` is its scalar (see :class:`ActivationFunction`).

    Shapes: x (n, *shape) -> y (n, *shape).
    """

    kind: str
    param: float = 0.0

    @property
    def function(self) -> ActivationFunction:
        return ActivationFunction(self.kind, self.param)

    def call(self, ctx: Context, x: Array) -> Array:
        y = ctx.y = ctx.buffer("y", x.shape[0], self.input_shape)
        ctx.x = x  # what the gradient needs where the output does not determine it
        self.function.apply(self.backend, x, y)
        return y

    def take(self, ctx: Context, y: Array) -> Array:
        """Keep ``y``, this layer's output computed elsewhere (by a product
        whose epilogue applied this activation), for the backward (which
        then needs a gradient from the output: the plan fuses the others in
        inference only)."""
        ctx.y, ctx.x = y, None
        return y

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        function = self.function
        function.gradient(self.backend, ctx.y if function.from_output else ctx.x, grad, dx)
        return dx


class TanH(Activation):
    """y = tanh(x)."""

    kind = "tanh"


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x))."""

    kind = "sigmoid"


class ReLU(Activation):
    """y = max(x, 0)."""

    kind = "relu"


class LeakyReLU(Activation):
    """y = x where x > 0, else ``negative_slope`` · x (Keras's LeakyReLU: the
    slope is at least 0 and 0.3 by default). The gradient comes from the
    output: 1 where y > 0, else the slope."""

    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.3, name: str | None = None):
        super().__init__(name)
        self.negative_slope = _float32_number(negative_slope, "negative_slope", non_negative=True)

    @property
    def param(self) -> float:
        return self.negative_slope

    def get_config(self) -> dict[str, Any]:
        return {} if self.negative_slope == 0.3 else {"negative_slope": self.negative_slope}

    def __repr__(self) -> str:
        return "LeakyReLU()" if self.negative_slope == 0.3 else f"LeakyReLU(negative_slope={self.negative_slope:g})"


class ELU(Activation):
    """y = x where x > 0, else ``alpha`` · (exp(x) - 1) (Keras's and PyTorch's
    ELU). For alpha >= 0 the gradient comes from the output (1 where y > 0,
    else y + alpha); a negative alpha keeps the input instead."""

    kind = "elu"

    def __init__(self, alpha: float = 1.0, name: str | None = None):
        super().__init__(name)
        self.alpha = _float32_number(alpha, "alpha")

    @property
    def param(self) -> float:
        return self.alpha

    def get_config(self) -> dict[str, Any]:
        return {} if self.alpha == 1.0 else {"alpha": self.alpha}

    def __repr__(self) -> str:
        return "ELU()" if self.alpha == 1.0 else f"ELU(alpha={self.alpha:g})"


class GELU(Activation):
    """y = x Φ(x), Φ the standard normal distribution, (1 + erf(x / √2)) / 2;
    with ``approximate=True`` the tanh form x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2
    (PyTorch's GELU(approximate="tanh"), Keras's gelu(approximate=True)).
    Its gradient needs the input, which the layer keeps."""

    def __init__(self, approximate: bool = False, name: str | None = None):
        super().__init__(name)
        if not isinstance(approximate, (bool, np.bool_)):
            raise ValueError(f"expected approximate=True or False. Received: approximate={approximate!r}")
        self.approximate = bool(approximate)

    @property
    def kind(self) -> str:
        return "gelu_tanh" if self.approximate else "gelu"

    def get_config(self) -> dict[str, Any]:
        return {"approximate": True} if self.approximate else {}

    def __repr__(self) -> str:
        return "GELU(approximate=True)" if self.approximate else "GELU()"


class SiLU(Activation):
    """y = x σ(x) = x / (1 + exp(-x)), also called Swish. Its gradient,
    σ(x)(1 + x (1 - σ(x))), needs the input, which the layer keeps."""

    kind = "silu"


#: Keras's other name for SiLU (the same layer: files name it SiLU).
Swish = SiLU


class Softplus(Activation):
    """y = log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)). The
    gradient σ(x) comes from the output: 1 - exp(-y)."""

    kind = "softplus"


class Softmax(Activation):
    """Softmax over the last axis, as Keras's: over the features of
    (n, features) inputs, over each token's of (n, seq, features).

    Followed by CategoricalCrossEntropy, a model skips this backward and
    uses the fused gradient (p - y) / n (rows of the loss: samples, or tokens).
    """

    kind = "softmax"
