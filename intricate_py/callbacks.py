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
``accuracy`` (and ``val_loss``, ``val_accuracy`` with validation data);
``params["metrics"]`` names them before the first epoch. Epochs are counted
over the whole training: from ``initial_epoch`` in a resumed fit.

A plain function ``callback(epoch, logs)`` works as a callback too: it runs
as ``on_epoch_end`` and stops training by returning True.
"""

from __future__ import annotations

import csv
import inspect
import math
import numbers
import os
import string
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
    ``{epoch}`` (counted from 1, over the whole training: a fit with
    ``initial_epoch=3`` writes epoch 4 on) and any metric of the logs, with
    a format spec: ``"model-{epoch:02d}-{val_loss:.3f}.safetensors"``.

    The filepath is checked when the checkpoint is made (a format string of
    plain field names whose specs format numbers) and its metrics when the
    fit starts, so that a mistake costs no epoch.

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
        self.fields = filepath_fields(self.filepath)
        self._monitor = _Monitor(monitor, mode)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.best: float | None = None

    def set_params(self, params: dict[str, Any]) -> None:
        """The fit's settings; ValueError, before any epoch runs, for a
        field of the filepath that is neither ``epoch`` nor one of its
        metrics (or ``learning_rate``, which LearningRateScheduler logs)."""
        super().set_params(params)
        if "metrics" in params:
            self._check_fields(["epoch", "learning_rate", *params["metrics"]])

    def _check_fields(self, known: Iterable[str]) -> None:
        unknown = [field for field in self.fields if field not in known]
        if unknown:
            names = sorted(k for k in known if k != "learning_rate")
            raise ValueError(
                f"expected a filepath whose fields are 'epoch' or metrics in {names}. "
                f"Received: filepath={self.filepath!r}, whose field {unknown[0]!r} is not one"
            )

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_best_only:
            current = self._monitor.value(logs, repr(self))
            if current is None or not self._monitor.improves(current, self.best):
                return
            self.best = current
        logs = dict(logs or {})
        self._check_fields(["epoch", *logs])
        path = self.filepath.format(**{**logs, "epoch": epoch + 1})
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
    counted from 0 as Keras does, then the metrics in name order);
    ``append`` continues an existing file. ``separator``: one character.

    The file is open only while a row is written, so nothing is left open
    whatever ends a fit (an error, Ctrl-C), and every finished epoch's row
    is on disk.
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        self.filename = os.fspath(filename)
        self.separator = csv_separator(separator)
        self.append = bool(append)
        self._columns: list[str] | None = None
        self._header_due = True

    def on_train_begin(self, logs: Logs | None = None) -> None:
        continuing = self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0
        if not continuing:
            with open(self.filename, "w", newline="", encoding="utf-8"):
                pass  # a new, empty log
        self._columns, self._header_due = None, not continuing

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = dict(logs or {})
        if self._columns is None:
            self._columns = ["epoch", *sorted(logs)]
        with open(self.filename, "a", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=self._columns, delimiter=self.separator)
            if self._header_due:
                writer.writeheader()
                self._header_due = False
            writer.writerow({"epoch": epoch, **logs})

    def __repr__(self) -> str:
        return f"CSVLogger({self.filename!r})"


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch to
    ``schedule(epoch, rate)`` (or ``schedule(epoch)``), as Keras's, and put
    it in the epoch's logs as ``learning_rate`` (so in the History too).

    Which of the two the function takes is read from its signature when
    the callback is made; an error the function raises is its own and
    reaches the caller as it is. A rate that is not a positive finite
    number is refused with the function's name and the epoch.

    For a rate that changes with every step, give the optimizer a schedule
    from :mod:`intricate_py.schedules` instead.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0):
        self.takes_rate = _takes_rate(schedule)
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        optimizer = self.model.optimizer
        if not isinstance(optimizer.learning_rate, float):
            raise ValueError(
                "expected an optimizer with a float learning_rate for LearningRateScheduler. "
                f"Received: {optimizer!r}, whose rate is a schedule already"
            )
        rate = self.schedule(epoch, optimizer.learning_rate) if self.takes_rate else self.schedule(epoch)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not (math.isfinite(rate) and rate > 0):
            raise ValueError(
                f"expected the schedule {_name(self.schedule)} to return a positive finite number at epoch "
                f"{epoch}. Received: {rate!r}"
            )
        optimizer.learning_rate = float(rate)
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {optimizer.learning_rate:g}")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if isinstance(logs, dict):
            logs["learning_rate"] = self.model.optimizer.current_learning_rate()

    def __repr__(self) -> str:
        return f"LearningRateScheduler({getattr(self.schedule, '__name__', self.schedule)!r})"


def _name(function) -> str:
    return getattr(function, "__name__", repr(function))


def _takes_rate(schedule) -> bool:
    """Whether ``schedule`` is called (epoch, rate) rather than (epoch), from
    its signature; ValueError for something that takes neither."""
    expected = "expected a function schedule(epoch, rate) or schedule(epoch)"
    if not callable(schedule):
        raise ValueError(f"{expected}. Received: schedule={schedule!r}")
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):  # no signature to read (some built-ins): Keras's call
        return True
    for arguments, takes_rate in (((0, 0.1), True), ((0,), False)):
        try:
            signature.bind(*arguments)
        except TypeError:
            continue
        return takes_rate
    raise ValueError(f"{expected}. Received: {_name(schedule)}{signature}")


_FORMAT_PROBES = {"epoch": 1, "metric": 0.5}


def filepath_fields(filepath: str) -> list[str]:
    """The field names of a checkpoint's ``filepath``; ValueError unless it
    is a format string of plain names (no attributes, indexes or positions)
    whose format specs format the epoch (an int) and metrics (floats)."""
    try:
        parts = list(string.Formatter().parse(filepath))
    except ValueError as error:
        raise ValueError(f"expected filepath as a format string such as 'ck-{{epoch:02d}}.safetensors'. "
                         f"Received: {filepath!r} ({error})") from None
    fields = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(
                "expected plain field names in filepath, such as {epoch} or {val_loss:.3f}. Received: "
                f"{filepath!r}, whose field {field!r} is not one (no attributes, indexes or positions)"
            )
        if "{" in spec:
            raise ValueError(f"expected no nested fields in filepath's format specs. Received: {filepath!r}")
        text = "{" + field + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
        what = "the epoch" if field == "epoch" else "a metric"
        try:
            text.format(**{field: _FORMAT_PROBES["epoch" if field == "epoch" else "metric"]})
        except (ValueError, TypeError) as error:
            raise ValueError(f"expected filepath fields that format numbers. Received: {filepath!r}, whose "
                             f"{text!r} cannot format {what} ({error})") from None
        fields.append(field)
    return fields


def csv_separator(separator) -> str:
    """CSVLogger's ``separator``: one character, not a line break or the quote."""
    if not (isinstance(separator, str) and len(separator) == 1 and separator not in '\r\n"'):
        raise ValueError(
            "expected separator as a single character such as ',' or ';' (not a line break or '\"'). "
            f"Received: separator={separator!r}"
        )
    return separator


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
