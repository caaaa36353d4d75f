"""Learning-rate schedules: an optimizer's ``learning_rate`` as a function
of its step, with Keras 3's formulas.

``step`` counts the updates done before the one the rate is for (0 for
the first update), as Keras's ``optimizer.iterations``. A schedule is a
plain Python function of the step computed on the host, so on the GPU the
rate reaches the kernel as a parameter of its dispatch: no readback and no
buffer per step. The optimizer checks each rate as it computes it
(:func:`checked_rate`).

A custom schedule subclasses :class:`LearningRateSchedule`. To be saved
with an optimizer (``Model.save(..., include_optimizer=True)``, Ray Tune
checkpoints) it needs ``get_config()``, a dict of plain values that
rebuilds it as ``cls(**config)``, and its class must be defined (imported)
before the file is loaded, as a custom layer's.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from . import _checks
from .backends.base import MemberValues, member_values

#: Every LearningRateSchedule subclass by class name, for rebuilding
#: optimizers from files (custom ones too, once defined).
SCHEDULES: dict[str, type] = {}


class LearningRateSchedule:
    """Base class: ``schedule(step) -> float``; subclasses implement
    ``__call__`` and, to be saved in files, ``get_config``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        SCHEDULES[cls.__name__] = cls

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} has no get_config()")

    def __repr__(self) -> str:
        if not has_config(self):
            return f"{type(self).__name__}()"
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def has_config(schedule: LearningRateSchedule) -> bool:
    """Whether the schedule's class defines get_config."""
    return type(schedule).get_config is not LearningRateSchedule.get_config


def checked_rate(schedule: LearningRateSchedule, step: int) -> float:
    """``schedule(step)`` as a float; ValueError naming the schedule and the
    step unless it is a real number ≥ 0 (not NaN). Infinity passes: the
    weights it makes stop training by the divergence rule."""
    rate = schedule(step)
    if type(rate) is float and rate >= 0:  # the common case, cheaply
        return rate
    if isinstance(rate, MemberValues) and (rate >= 0).all():  # a Population's rates, one a member
        return rate
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not rate >= 0:
        raise ValueError(
            f"expected the learning-rate schedule {schedule!r} to return a non-negative number at step {step}. "
            f"Received: {rate!r}"
        )
    return float(rate)


def schedule_entry(schedule: LearningRateSchedule) -> dict[str, Any]:
    """What a file holds of ``schedule``: its class name and config.
    ValueError for a schedule that a file cannot rebuild: no get_config,
    a config that is not plain values, or one that does not rebuild it."""
    cls, name = type(schedule), type(schedule).__name__
    if not has_config(schedule):
        raise ValueError(
            "expected a learning-rate schedule with get_config() (a dict that rebuilds it as cls(**config)) "
            f"to save the optimizer. Received: {name}, which has none: define get_config, or save with "
            "include_optimizer=False (the model without its training state)"
        )
    config = schedule.get_config()
    if not _checks.is_plain_config(config):
        raise ValueError(f"expected {name}.get_config() to return a dict of plain values (numbers, strings, "
                         f"lists) to save the optimizer. Received: {config!r}")
    if SCHEDULES.get(name) is not cls:
        raise ValueError(f"expected one learning-rate schedule class named {name} to save the optimizer. "
                         f"Received: {cls!r}, whose name another class defined later took")
    try:
        cls(**config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"expected {name}.get_config() to rebuild the schedule to save the optimizer. "
                         f"Received: {name}(**{config!r}) does not rebuild it ({error})") from None
    return {"schedule": name, "config": config}


def schedule_from_entry(entry: Any) -> LearningRateSchedule:
    """The schedule of a file's entry (:func:`schedule_entry`); ValueError
    for one that names no schedule defined here."""
    if not (isinstance(entry, dict) and isinstance(entry.get("config"), dict)
            and isinstance(entry.get("schedule"), str)):
        raise ValueError(f"expected a learning-rate schedule as {{'schedule': name, 'config': {{...}}}}. "
                         f"Received: {entry!r}")
    if entry["schedule"] not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {entry['schedule'][:80]!r}: expected one of "
                         f"{sorted(SCHEDULES)} (a custom schedule must be imported before loading)")
    return SCHEDULES[entry["schedule"]](**entry["config"])


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` to ``alpha`` times it over
    ``decay_steps`` steps, then constant:
    ``rate = initial · ((1 - alpha) · ½ (1 + cos(π · min(step, decay_steps) / decay_steps)) + alpha)``.

    With ``warmup_target``, the rate first rises linearly from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``
    steps, and the decay then starts from ``warmup_target``. Both are
    keyword-only: Keras's fourth argument is ``name``, so a positional
    ``CosineDecay(0.1, 100, 0.0, 10)`` would silently mean something else.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        *,
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ):
        self.initial_learning_rate = member_values(initial_learning_rate, _checks.non_negative_float,
                                                   "initial_learning_rate")
        self.decay_steps = _checks.positive_int(decay_steps, "decay_steps")
        self.alpha = _checks.fraction(alpha, "alpha", upper_inclusive=True)
        self.warmup_steps = _checks.non_negative_int(warmup_steps, "warmup_steps")
        self.warmup_target = None if warmup_target is None else member_values(warmup_target, _checks.positive_float,
                                                                                "warmup_target")
        if self.warmup_steps and self.warmup_target is None:
            raise ValueError(
                "expected warmup_target with warmup_steps (the rate warms up from "
                f"initial_learning_rate to warmup_target). Received: warmup_steps={warmup_steps}, "
                "warmup_target=None"
            )

    def _decayed(self, step: float, start: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return start * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: int) -> float:
        if self.warmup_target is None:
            return self._decayed(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        return self._decayed(step - self.warmup_steps, self.warmup_target)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"initial_learning_rate": self.initial_learning_rate,
                                  "decay_steps": self.decay_steps, "alpha": self.alpha}
        if self.warmup_target is not None:
            config.update(warmup_target=self.warmup_target, warmup_steps=self.warmup_steps)
        return config


class ExponentialDecay(LearningRateSchedule):
    """``rate = initial · decay_rate ^ (step / decay_steps)``, the exponent
    floored with ``staircase``."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False):
        self.initial_learning_rate = member_values(initial_learning_rate, _checks.positive_float,
                                                   "initial_learning_rate")
        self.decay_steps = _checks.positive_int(decay_steps, "decay_steps")
        self.decay_rate = _checks.positive_float(decay_rate, "decay_rate")
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        try:
            factor = self.decay_rate**exponent
        except OverflowError:  # a decay_rate above 1 grows without bound: the divergence rule stops it
            factor = math.inf
        return self.initial_learning_rate * factor

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i - 1] < step <= boundaries[i]``, ``values[-1]`` after the
    last boundary; ``values`` has one more entry than ``boundaries``."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "expected one more value than boundaries. Received: "
                f"{len(boundaries)} boundaries and {len(values)} values"
            )
        for b in boundaries:
            _checks.non_negative_int(b, "boundaries")
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"expected strictly increasing boundaries. Received: boundaries={boundaries}")
        self.boundaries = [int(b) for b in boundaries]
        self.values = [_checks.non_negative_float(v, "values") for v in values]

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values}


__all__ = ["LearningRateSchedule", "CosineDecay", "ExponentialDecay", "PiecewiseConstantDecay", "SCHEDULES",
           "checked_rate", "schedule_entry", "schedule_from_entry"]
