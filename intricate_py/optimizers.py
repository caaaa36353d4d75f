"""Optimizers, each following PyTorch's update rule (torch.optim) exactly.

An optimizer is bound to a model's parameters the first time it trains them
and keeps its state (velocities, moment estimates, step count) for as long
as it trains the same parameters. ``learning_rate`` is a float or a
schedule of the step (:mod:`intricate_py.schedules`). ``weight_decay`` is
PyTorch's: an L2 term ``g + weight_decay · p`` for SGD, Adagrad and Adam;
decoupled, ``p · (1 - lr · weight_decay)`` before the step, for AdamW.

``clipnorm`` and ``global_clipnorm`` are Keras's: before the update, each
parameter's gradient is scaled by ``clipnorm / max(‖g‖, clipnorm)``, or
every gradient by ``global_clipnorm / max(‖all gradients‖, global_clipnorm)``
(as ``torch.nn.utils.clip_grad_norm_``, without its 1e-6); one of the two at
most. The norms are computed on the device (two operations a step, no
readback); a NaN or infinite norm makes the gradients NaN, and training then
stops by the divergence rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _checks
from .backends import Array, Backend
from .backends.base import MemberValues, member_values as _value
from .layers import Parameter
from .schedules import LearningRateSchedule, checked_rate, schedule_entry, schedule_from_entry

def _sqrt(x):
    return np.sqrt(x) if isinstance(x, MemberValues) else math.sqrt(x)  # both correctly rounded


def _power(x, t: int):
    """x ** t as Python computes it for a float, member by member for a population's."""
    return MemberValues([v ** t for v in x.tolist()]) if isinstance(x, MemberValues) else x ** t


class Optimizer:
    """Base class: holds one dict of state arrays per parameter.

    For a :class:`~intricate_py.Population`, a scalar argument (learning
    rate, momentum, betas, epsilon, weight decay) may be an array with one
    value per member."""

    #: names of the per-parameter state arrays
    state_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float | LearningRateSchedule, weight_decay: float = 0.0,
                 clipnorm: float | None = None, global_clipnorm: float | None = None):
        self.learning_rate = learning_rate
        self.weight_decay = _value(weight_decay, _checks.non_negative_float, "weight_decay")
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("only one of clipnorm and global_clipnorm can be set. "
                             f"Received: clipnorm={clipnorm!r}, global_clipnorm={global_clipnorm!r}")
        self.clipnorm = None if clipnorm is None else _checks.positive_float(clipnorm, "clipnorm")
        self.global_clipnorm = (None if global_clipnorm is None
                                else _checks.positive_float(global_clipnorm, "global_clipnorm"))
        self.iterations = 0
        self._float32_limit: float | None = None
        self.backend: Backend | None = None
        self.parameters: list[Parameter] = []
        self.state: list[dict[str, Array]] = []
        # each parameter's parts (clipnorm clips each alone), and the clipping's layouts and sums
        self._parts: list[list[int]] | None = None
        self._clipping: tuple | None = None

    @property
    def learning_rate(self) -> float | LearningRateSchedule:
        """A float, or a schedule called with the step (``iterations``) of each update."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        if not isinstance(value, LearningRateSchedule):
            value = _value(value, _checks.positive_float, "learning_rate")
        self._learning_rate = value

    def current_learning_rate(self) -> float:
        """The rate the next update uses: a schedule's checked where it is
        computed, every step (ValueError naming the schedule and the step
        for anything but a number ≥ 0; infinity stops training by the
        divergence rule)."""
        rate = self._learning_rate
        if not isinstance(rate, LearningRateSchedule):
            return rate
        return checked_rate(rate, self.iterations)

    def bind(self, backend: Backend, parameters: list[Parameter], parts: list[list[int]] | None = None) -> None:
        """Attach to ``parameters``; fresh state unless already attached to
        them. ``parts``: for each parameter the sizes of the parameters
        packed into it, in order (a model's store), which ``clipnorm``
        clips one by one; by default each parameter is one."""
        owners = [vars(self), getattr(self._learning_rate, "__dict__", {})]  # and a schedule's
        members = {len(v) for owner in owners for v in owner.values() if isinstance(v, MemberValues)}
        if members and not backend.population:
            raise ValueError(f"expected numbers: hyper-parameters as arrays (one value per member) train a "
                             f"Population, not a Model. Received: {self!r}")
        if members and members != {backend.members}:
            raise ValueError(f"expected one value per member of a Population of {backend.members}. "
                             f"Received: {self!r}")
        # a backend that packs the step's scalars into float32 parameters (the GPU's recordings) gets
        # those beyond float32's range as ±inf, as numpy's float32 arithmetic makes them
        self._float32_limit = float(np.finfo(np.float32).max) if backend.kind == "gpu" else None
        if parts is not None:
            if [sum(sizes) for sizes in parts] != [p.grad.size for p in parameters]:
                raise ValueError("expected parts whose sizes add up to each parameter's size "
                                 f"({[p.grad.size for p in parameters]}). Received: parts={parts!r}")
            self._parts = [[int(size) for size in sizes] for sizes in parts]
        if self.backend is backend and len(parameters) == len(self.parameters) and all(
            a is b for a, b in zip(parameters, self.parameters)
        ):
            self._clip_layouts()
            return
        if parts is None:
            self._parts = None
        self._clipping = None
        self.backend, self.parameters, self.iterations = backend, list(parameters), 0
        self.state = [
            {name: backend.zeros(p.value.shape) for name in self.state_names} for p in parameters
        ]
        self._clip_layouts()

    def _clip_layouts(self) -> tuple | None:
        """(clip, a layout per parameter, the partial sums) of the clipping
        set, None without: made at ``bind`` (the GPU uploads a table), again
        only when the clipping's kind or the parts change."""
        clip = self.clipnorm if self.clipnorm is not None else self.global_clipnorm
        if clip is None or not self.parameters:
            return None
        joint = self.clipnorm is None
        sizes = self._parts if self._parts is not None else [[p.grad.size] for p in self.parameters]
        key = (joint, sizes)
        if self._clipping is None or self._clipping[0] != key:
            layouts, slots = self.backend.norm_layouts(sizes, joint)
            self._clipping = (key, layouts, self.backend.zeros((slots,)))
        _, layouts, sums = self._clipping
        return clip, layouts, sums

    def clip_gradients(self) -> None:
        """Scale the gradients by ``clipnorm`` or ``global_clipnorm`` (see the
        module), on the device; nothing without either."""
        clipping = self._clip_layouts()
        if clipping is None:
            return
        clip, layouts, sums = clipping
        for p, layout in zip(self.parameters, layouts):
            self.backend.sum_squares(p.grad, sums, layout)
        for p, layout in zip(self.parameters, layouts):
            self.backend.clip_norm(p.grad, sums, layout, clip)

    def step_values(self) -> dict[str, float]:
        """The scalars of the next update, by the names of the backend
        operation's arguments (a schedule's rate, Adam's bias corrections):
        all a step needs from the optimizer besides its arrays. On a
        backend that packs them as float32, a value too large for it is
        ±inf (and training then stops by the divergence rule)."""
        values = self.scalars(self.current_learning_rate())
        if self._float32_limit is not None:
            limit = self._float32_limit
            for name, value in values.items():
                if isinstance(value, MemberValues):  # a population's, one a member
                    values[name] = MemberValues(np.where(np.abs(value) > limit, np.copysign(np.inf, value), value))
                elif not -limit <= value <= limit and value == value:
                    values[name] = math.copysign(math.inf, value)
        return values

    def scalars(self, lr: float) -> dict[str, float]:
        """:meth:`step_values` for the rate ``lr``."""
        raise NotImplementedError

    def step(self, values: dict[str, float] | None = None) -> None:
        """Update every parameter from its gradient with ``values`` (those of
        :meth:`step_values` by default), then count the step. The gradients
        are clipped first where ``clipnorm`` or ``global_clipnorm`` is set."""
        values = self.step_values() if values is None else values
        self.iterations += 1
        self.clip_gradients()
        for p, s in zip(self.parameters, self.state):
            self._update(p, s, values)

    def _update(self, p: Parameter, state: dict[str, Array], values: dict[str, float]) -> None:
        raise NotImplementedError

    def state_arrays(self) -> list[Array]:
        return [a for s in self.state for a in s.values()]

    def settings(self) -> dict[str, Any]:
        """The hyperparameters besides the learning rate, as the constructor takes them."""
        settings = {"weight_decay": self.weight_decay} if np.any(self.weight_decay) or type(self) is AdamW else {}
        for name in ("clipnorm", "global_clipnorm"):
            if getattr(self, name) is not None:
                settings[name] = getattr(self, name)
        return settings

    def get_config(self) -> dict[str, Any]:
        """What rebuilds the optimizer (:meth:`from_config`); ValueError for
        a learning-rate schedule that a file cannot rebuild."""
        rate = self._learning_rate
        if isinstance(rate, LearningRateSchedule):
            rate = schedule_entry(rate)
        return {"learning_rate": rate, **self.settings()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Optimizer":
        """The optimizer ``get_config`` describes (a schedule rebuilt from its entry)."""
        config = dict(config)
        rate = config.get("learning_rate")
        if isinstance(rate, dict):
            config["learning_rate"] = schedule_from_entry(rate)
        return cls(**config)

    def __repr__(self) -> str:
        config = {"learning_rate": self._learning_rate, **self.settings()}
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """``v = momentum v + g``; ``p -= lr v`` (or ``lr (g + momentum v)`` with
    Nesterov); without momentum ``p -= lr g``; g includes ``weight_decay · p``."""

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        clipnorm: float | None = None,
        global_clipnorm: float | None = None,
    ):
        super().__init__(learning_rate, weight_decay, clipnorm, global_clipnorm)
        self.momentum = _value(momentum, _checks.fraction, "momentum")
        if nesterov and np.any(self.momentum == 0):
            raise ValueError("expected momentum > 0 with nesterov=True. Received: momentum=0")
        self.nesterov = bool(nesterov)
        self.state_names = ("velocity",) if np.any(self.momentum) else ()

    def scalars(self, lr: float) -> dict[str, float]:
        return {"lr": lr, "momentum": self.momentum, "weight_decay": self.weight_decay}

    def _update(self, p: Parameter, state: dict[str, Array], values: dict[str, float]) -> None:
        self.backend.sgd_step(p.value, p.grad, state.get("velocity"), nesterov=self.nesterov, **values)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adagrad(Optimizer):
    """``s += g²``; ``p -= lr g / (sqrt(s) + eps)``; g includes ``weight_decay · p``."""

    state_names = ("sum_sq",)

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.01,
        epsilon: float = 1e-10,
        weight_decay: float = 0.0,
        clipnorm: float | None = None,
        global_clipnorm: float | None = None,
    ):
        super().__init__(learning_rate, weight_decay, clipnorm, global_clipnorm)
        self.epsilon = _value(epsilon, _checks.positive_float, "epsilon")

    def scalars(self, lr: float) -> dict[str, float]:
        return {"lr": lr, "eps": self.epsilon, "weight_decay": self.weight_decay}

    def _update(self, p: Parameter, state: dict[str, Array], values: dict[str, float]) -> None:
        self.backend.adagrad_step(p.value, p.grad, state["sum_sq"], **values)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "epsilon": self.epsilon}


class Adam(Optimizer):
    """``m += (1 - β1)(g - m)``; ``v = β2 v + (1 - β2) g²``;
    ``p -= lr / (1 - β1ᵗ) · m / (sqrt(v / (1 - β2ᵗ)) + eps)``; g includes
    ``weight_decay · p`` (PyTorch's Adam; AdamW decouples it)."""

    state_names = ("m", "v")
    #: the weight decay is decoupled from the gradient (AdamW)
    decoupled = False

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.0,
        clipnorm: float | None = None,
        global_clipnorm: float | None = None,
    ):
        super().__init__(learning_rate, weight_decay, clipnorm, global_clipnorm)
        self.beta1 = _value(beta1, _checks.fraction, "beta1")
        self.beta2 = _value(beta2, _checks.fraction, "beta2")
        self.epsilon = _value(epsilon, _checks.positive_float, "epsilon")

    def scalars(self, lr: float) -> dict[str, float]:
        t = self.iterations + 1
        l2, decay = (0.0, 1 - lr * self.weight_decay) if self.decoupled else (self.weight_decay, 1.0)
        return {
            "step_size": lr / (1 - _power(self.beta1, t)), "beta1": self.beta1, "beta2": self.beta2,
            "eps": self.epsilon, "bias_correction2_sqrt": _sqrt(1 - _power(self.beta2, t)),
            "weight_decay": l2, "decay": decay,
        }

    def _update(self, p: Parameter, state: dict[str, Array], values: dict[str, float]) -> None:
        self.backend.adam_step(p.value, p.grad, state["m"], state["v"], **values)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), as
    ``torch.optim.AdamW``: ``p *= 1 - lr · weight_decay``, then Adam's step
    on the plain gradient."""

    decoupled = True

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 1e-3,
        weight_decay: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        clipnorm: float | None = None,
        global_clipnorm: float | None = None,
    ):
        super().__init__(learning_rate, beta1, beta2, epsilon, weight_decay, clipnorm, global_clipnorm)


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adagrad, Adam, AdamW)}

__all__ = ["Optimizer", "SGD", "Adagrad", "Adam", "AdamW", "OPTIMIZERS"]
