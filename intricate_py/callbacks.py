"""Callbacks: code that runs at fixed points of ``Model.fit``, as Keras's.

Subclass :class:`Callback` and override what you need; ``fit(callbacks=[...])``
calls, in order, ``set_model(model)``, ``set_params(params)`` (``epochs``,
``steps`` an epoch, ``verbose``), ``on_train_begin(logs)``, then for
every epoch ``on_epoch_begin(epoch, logs)`` and ``on_epoch_end(epoch, logs)``,
and ``on_train_end(logs)`` at the end. Setting ``model.stop_training = True``
stops training after the current epoch.

``on_epoch_end`` sees the model as it is at the end of that epoch (its
weights, its optimizer state): a fit with callbacks reads each epoch's
metrics back as it ends. ``logs`` holds that epoch's ``loss`` and
``accuracy`` (and ``val_loss``, ``val_accuracy`` with validation data).

A plain function ``callback(epoch, logs)`` works as a callback too: it runs
as ``on_epoch_end`` and stops training by returning True.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from . import _checks

if TYPE_CHECKING:
    from .model import Model

Logs = Mapping[str, float]


class Callback:
    """Base class: every hook does nothing. ``self.model`` is the model being trained."""

    model: "Model | None" = None
    #: the fit's settings, as Keras gives them: epochs, steps (an epoch), verbose
    params: dict[str, Any] = {}

    def set_model(self, model: "Model") -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Before epoch ``epoch`` (counted from 0) runs."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """After epoch ``epoch``, with its metrics in ``logs``."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """After the last epoch (also when training stopped early); ``logs``
        are the last epoch's metrics."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, logs) -> bool | None`` as a callback:
    it runs at each epoch's end, and returning True stops training."""

    def __init__(self, fn: Callable[[int, Logs], Any]):
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.fn(epoch, logs):
            self.model.stop_training = True

    def __repr__(self) -> str:
        return f"callback {getattr(self.fn, '__name__', repr(self.fn))}"


class _Monitor:
    """A metric to watch and the direction that improves it (``mode``
    "min", "max", or "auto": max for accuracies, min for losses)."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        if not isinstance(monitor, str):
            raise ValueError(f"expected monitor as a metric name such as 'val_loss'. Received: monitor={monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"expected mode 'auto', 'min' or 'max'. Received: mode={mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor, self.mode = monitor, mode
        self.min_delta = abs(_checks.finite_float(min_delta, "min_delta"))
        self._warned = False

    def value(self, logs: Logs | None, who: str) -> float | None:
        """The monitored value in ``logs``, or None (and a warning, once)."""
        value = (logs or {}).get(self.monitor)
        if value is None and not self._warned:
            self._warned = True
            warnings.warn(
                f"{who} monitors {self.monitor!r}, which is not in the epoch's logs "
                f"(they hold {sorted(logs or {})}): it does nothing",
                RuntimeWarning, stacklevel=2,
            )
        return value

    def improves(self, value: float, reference: float | None) -> bool:
        """Whether ``value`` beats ``reference`` by more than min_delta."""
        if reference is None:
            return not math.isnan(value)
        if self.mode == "max":
            return value - self.min_delta > reference
        return value + self.min_delta < reference


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has stopped improving, as Keras's.

    After an epoch that does not improve the best value so far by more than
    ``min_delta``, a counter starts; training stops when it reaches
    ``patience`` (0: at the first such epoch). ``baseline``: the counter
    only restarts on improvements that also beat it. Epochs before
    ``start_from_epoch`` are not watched. With ``restore_best_weights`` the
    weights of the best epoch are put back at the end of training (bit for
    bit: a copy kept on the model's device), whether or not it stopped early.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        verbose: int = 0,
    ):
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.patience = _checks.non_negative_int(patience, "patience")
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else _checks.finite_float(baseline, "baseline")
        self.start_from_epoch = _checks.non_negative_int(start_from_epoch, "start_from_epoch")
        self.verbose = verbose
        self._best_weights = None  # device copies, reused from fit to fit while they fit the model

    @property
    def monitor(self) -> str:
        return self._monitor.monitor

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.stopped_epoch = 0, None
        self.best, self.best_epoch = None, None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = self._monitor.value(logs, repr(self))
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_epoch is None:
            self._keep_weights(epoch)  # until something beats them, these are the best
        self.wait += 1
        if self._monitor.improves(current, self.best):
            self.best = current
            if self.restore_best_weights:
                self._keep_weights(epoch)
            self.best_epoch = epoch
            if self.baseline is None or self._monitor.improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _keep_weights(self, epoch: int) -> None:
        self._best_weights = self.model.snapshot_weights(into=self._best_weights)
        self.best_epoch = epoch

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_epoch is not None:
            if self.verbose:
                print(f"Restoring the weights from the end of the best epoch: {self.best_epoch + 1}")
            self.model.restore_weights(self._best_weights)

    def __repr__(self) -> str:
        return f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience})"


class ModelCheckpoint(Callback):
    """Save the model after each epoch, as Keras's: ``filepath`` may hold
    ``{epoch}`` (counted from 1) and any metric, ``"model-{epoch:02d}-{val_loss:.3f}.safetensors"``.

    ``save_best_only``: save only when ``monitor`` improves (a fixed
    filepath then always holds the best model). ``save_weights_only``: the
    weights file of ``model.save_weights`` instead of the whole model.
    Saves are atomic, as ``Model.save``: a checkpoint interrupted at any
    moment leaves the previous file whole.
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        verbose: int = 0,
    ):
        self.filepath = os.fspath(filepath)
        self._monitor = _Monitor(monitor, mode)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.best: float | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_best_only:
            current = self._monitor.value(logs, repr(self))
            if current is None or not self._monitor.improves(current, self.best):
                return
            self.best = current
        try:
            path = self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"expected a filepath whose fields are 'epoch' or metrics in {sorted(logs or {})}. "
                f"Received: filepath={self.filepath!r} ({error})"
            ) from None
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved {path}")

    def __repr__(self) -> str:
        return f"ModelCheckpoint({self.filepath!r})"


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file (columns ``epoch``,
    counted from 0 as Keras does, then the metrics in name order), flushed
    every epoch; ``append`` continues an existing file."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._file = self._writer = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        continuing = self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer, self._header_due = None, not continuing

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = dict(logs or {})
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch", *sorted(logs)], delimiter=self.separator)
            if self._header_due:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **logs})
        self._file.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

    def __repr__(self) -> str:
        return f"CSVLogger({self.filename!r})"


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch to
    ``schedule(epoch, rate)`` (or ``schedule(epoch)``), as Keras's.

    For a rate that changes with every step, give the optimizer a schedule
    from :mod:`intricate_py.schedules` instead.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0):
        if not callable(schedule):
            raise ValueError(f"expected a function schedule(epoch, rate). Received: schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        optimizer = self.model.optimizer
        if not isinstance(optimizer.learning_rate, float):
            raise ValueError(
                "expected an optimizer with a float learning_rate for LearningRateScheduler. "
                f"Received: {optimizer!r}, whose rate is a schedule already"
            )
        try:
            rate = self.schedule(epoch, optimizer.learning_rate)
        except TypeError:  # a function of the epoch alone
            rate = self.schedule(epoch)
        optimizer.learning_rate = rate  # a positive finite number, or ValueError saying so
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {optimizer.learning_rate:g}")

    def __repr__(self) -> str:
        return f"LearningRateScheduler({getattr(self.schedule, '__name__', self.schedule)!r})"


def as_callbacks(callbacks: Iterable | None) -> list[Callback]:
    """``fit``'s ``callbacks`` argument as a list of Callback objects;
    ValueError saying what was expected for anything else."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks) or isinstance(callbacks, (str, bytes)):
        raise ValueError(
            "expected callbacks as a list of Callback objects or functions callback(epoch, logs). "
            f"Received: callbacks={callbacks!r} (put it in a list: callbacks=[...])"
        )
    try:
        items = list(callbacks)
    except TypeError:
        raise ValueError(
            "expected callbacks as a list of Callback objects or functions callback(epoch, logs). "
            f"Received: callbacks={callbacks!r}"
        ) from None
    result = []
    for i, item in enumerate(items):
        if isinstance(item, Callback):
            result.append(item)
        elif callable(item) and not isinstance(item, type):
            result.append(FunctionCallback(item))
        else:
            raise ValueError(
                "expected each callback to be a Callback object or a function callback(epoch, logs). "
                f"Received: {item!r} at index {i}"
            )
    return result


__all__ = [
    "Callback",
    "FunctionCallback",
    "EarlyStopping",
    "ModelCheckpoint",
    "CSVLogger",
    "LearningRateScheduler",
    "as_callbacks",
]
