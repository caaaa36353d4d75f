"""Optimizers, each following PyTorch's update rule (torch.optim) exactly.

An optimizer is bound to a model's parameters the first time it trains them
and keeps its state (velocities, moment estimates, step count) for as long
as it trains the same parameters.
"""

from __future__ import annotations

import math
from typing import Any

from . import _checks
from .backends import Array, Backend
from .layers import Parameter


class Optimizer:
    """Base class: holds one dict of state arrays per parameter."""

    #: names of the per-parameter state arrays
    state_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float):
        self.learning_rate = _checks.positive_float(learning_rate, "learning_rate")
        self.iterations = 0
        self.backend: Backend | None = None
        self.parameters: list[Parameter] = []
        self.state: list[dict[str, Array]] = []

    def bind(self, backend: Backend, parameters: list[Parameter]) -> None:
        """Attach to ``parameters``; fresh state unless already attached to them."""
        if self.backend is backend and len(parameters) == len(self.parameters) and all(
            a is b for a, b in zip(parameters, self.parameters)
        ):
            return
        self.backend, self.parameters, self.iterations = backend, list(parameters), 0
        self.state = [
            {name: backend.zeros(p.value.shape) for name in self.state_names} for p in parameters
        ]

    def step(self) -> None:
        """Update every parameter from its gradient."""
        raise NotImplementedError

    def state_arrays(self) -> list[Array]:
        return [a for s in self.state for a in s.values()]

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """``v = momentum v + g``; ``p -= lr v`` (or ``lr (g + momentum v)`` with
    Nesterov); without momentum ``p -= lr g``."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(learning_rate)
        self.momentum = _checks.fraction(momentum, "momentum")
        if nesterov and self.momentum == 0:
            raise ValueError("expected momentum > 0 with nesterov=True. Received: momentum=0")
        self.nesterov = bool(nesterov)
        self.state_names = ("velocity",) if self.momentum else ()

    def step(self) -> None:
        self.iterations += 1
        for p, s in zip(self.parameters, self.state):
            self.backend.sgd_step(
                p.value, p.grad, s.get("velocity"), self.learning_rate, self.momentum, self.nesterov
            )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adagrad(Optimizer):
    """``s += g²``; ``p -= lr g / (sqrt(s) + eps)``."""

    state_names = ("sum_sq",)

    def __init__(self, learning_rate: float = 0.01, epsilon: float = 1e-10):
        super().__init__(learning_rate)
        self.epsilon = _checks.positive_float(epsilon, "epsilon")

    def step(self) -> None:
        self.iterations += 1
        for p, s in zip(self.parameters, self.state):
            self.backend.adagrad_step(p.value, p.grad, s["sum_sq"], self.learning_rate, self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


class Adam(Optimizer):
    """``m += (1 - β1)(g - m)``; ``v = β2 v + (1 - β2) g²``;
    ``p -= lr / (1 - β1ᵗ) · m / (sqrt(v / (1 - β2ᵗ)) + eps)``."""

    state_names = ("m", "v")

    def __init__(
        self,
        learning_rate: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        super().__init__(learning_rate)
        self.beta1 = _checks.fraction(beta1, "beta1")
        self.beta2 = _checks.fraction(beta2, "beta2")
        self.epsilon = _checks.positive_float(epsilon, "epsilon")

    def step(self) -> None:
        self.iterations += 1
        t = self.iterations
        step_size = self.learning_rate / (1 - self.beta1**t)
        bias_correction2_sqrt = math.sqrt(1 - self.beta2**t)
        for p, s in zip(self.parameters, self.state):
            self.backend.adam_step(
                p.value, p.grad, s["m"], s["v"], step_size,
                self.beta1, self.beta2, self.epsilon, bias_correction2_sqrt,
            )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
        }


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adagrad, Adam)}

__all__ = ["Optimizer", "SGD", "Adagrad", "Adam", "OPTIMIZERS"]
