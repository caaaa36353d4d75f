"""What ``Model.fit`` returns and the ways to stop it early."""

from __future__ import annotations

from typing import Mapping

from . import _checks

Logs = Mapping[str, float]


class History:
    """Per-epoch metrics of a fit, as Keras's History.

    ``history["loss"]`` holds one float per epoch; ``"accuracy"``,
    ``"val_loss"`` and ``"val_accuracy"`` too where they apply, and what
    callbacks put in the logs (LearningRateScheduler's ``"learning_rate"``).
    ``epoch`` numbers the epochs over the whole training (from a fit's
    ``initial_epoch``). After a divergence the last epoch is the one that
    diverged, with its NaN or inf loss, as Keras records it.
    ``stop_reason`` says why training ended before its last epoch, if it did.
    """

    def __init__(self, keys: list[str]):
        self.history: dict[str, list[float]] = {key: [] for key in keys}
        self.epoch: list[int] = []
        self.stop_reason: str | None = None

    def append(self, epoch: int, logs: Logs) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def add(self, logs: Logs) -> None:
        """Values for the last epoch under keys its metrics do not have:
        what callbacks put in the logs (``learning_rate``)."""
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def extend(self, epochs: range, columns: Mapping) -> None:
        """Several epochs at once: ``columns[key]`` holds one value an epoch."""
        self.epoch.extend(epochs)
        for key, values in columns.items():
            self.history[key].extend(float(v) for v in values)

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self.history.items() if v)
        return f"History(epochs={len(self.epoch)}, {last})"


class HaltingCondition:
    """Stops training after the first epoch whose ``monitor`` metric reaches
    ``threshold`` (Intricate's HaltingCondition)."""

    default_monitor: str

    def __init__(self, threshold: float, monitor: str | None = None):
        threshold = _checks.finite_float(threshold, "threshold")
        if monitor is not None and not isinstance(monitor, str):
            raise ValueError(f"expected monitor as a metric name such as 'val_loss'. Received: monitor={monitor!r}")
        self.threshold = float(threshold)
        self.monitor = monitor or self.default_monitor

    def reached(self, logs: Logs) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threshold:g}, monitor={self.monitor!r})"


class MinLossReached(HaltingCondition):
    """Stop once the loss is at most ``threshold``."""

    default_monitor = "loss"

    def reached(self, logs: Logs) -> bool:
        return logs[self.monitor] <= self.threshold


class MinAccuracyReached(HaltingCondition):
    """Stop once the accuracy is at least ``threshold``."""

    default_monitor = "accuracy"

    def reached(self, logs: Logs) -> bool:
        return logs[self.monitor] >= self.threshold
