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
its metrics (``accuracy`` where the loss classifies, or compile's
``metrics``; and ``val_loss``, ``val_accuracy`` ... with validation data);
``params["metrics"]`` names them before the first epoch. Epochs are counted
over the whole training: from ``initial_epoch`` in a resumed fit.

A plain function ``callback(epoch, logs)`` works as a callback too: it runs
as ``on_epoch_end`` and stops training by returning True.

Batch hooks, as Keras's: ``on_train_batch_begin(batch, logs)`` and
``on_train_batch_end(batch, logs)`` around each training step (``batch``
counted from 0 in each epoch; the end's logs hold the epoch's metrics so
far, the mean over its batches up to this one, as Keras's);
``on_test_begin``, ``on_test_batch_begin/end`` and ``on_test_end`` around a
fit's validation and ``evaluate(callbacks=...)`` (logs without ``val_``);
``on_predict_begin``, ``on_predict_batch_begin/end`` and
``on_predict_end`` around ``predict(callbacks=...)``'s passes
(``logs["outputs"]``: the batch's outputs). A hook is called only on the
callbacks that override it (in their class, or as an attribute of their
own): a fit whose callbacks have none replays its steps on the GPU with one
readback an epoch, as without callbacks. One that has
``on_train_batch_end`` or ``on_test_batch_end`` gets logs made when it
first reads them (:class:`LazyLogs`): a readback of the metrics (a
submission and a wait on the GPU) after each batch whose logs a hook
reads or keeps, none after one whose logs none does (TensorBoard's
``update_freq`` steps between two writes). A batch hook that sets ``model.stop_training`` ends the epoch after
that step (its metrics are then those of its steps so far; the validation
still runs, as in Keras).
"""

from __future__ import annotations

import csv
import inspect
import math
import numbers
import os
import string
import sys
import warnings
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from . import _checks
from .metrics import improves_upward

if TYPE_CHECKING:
    from .model import Model

Logs = Mapping[str, float]


class Callback:
    """Base class: every hook does nothing. ``self.model`` is the model being trained.

    ``population_ready``: whether it can watch a Population's fit, where
    ``self.model`` is the Population and the logs hold arrays (one value per
    member); the built-in callbacks made for one Model say False."""

    population_ready = True

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

    # the batch hooks: a fit calls them only where a callback overrides them (see the module)
    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before training step ``batch`` (counted from 0 in each epoch);
        calls ``on_batch_begin``, as Keras's."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After training step ``batch``; ``logs`` hold the epoch's metrics
        so far (the mean over its batches up to this one, as Keras's).
        Calls ``on_batch_end``, as Keras's."""
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Keras's older name of ``on_train_batch_begin``."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Keras's older name of ``on_train_batch_end``."""

    def on_test_begin(self, logs: Logs | None = None) -> None:
        """Before ``evaluate``, or a fit's validation at an epoch's end."""

    def on_test_end(self, logs: Logs | None = None) -> None:
        """After ``evaluate`` or a validation, with its metrics (evaluate's)."""

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before batch ``batch`` of an evaluation."""

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After batch ``batch`` of an evaluation, with its metrics so far."""

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        """Before ``predict``."""

    def on_predict_end(self, logs: Logs | None = None) -> None:
        """After ``predict``."""

    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before pass ``batch`` of ``predict`` (``batch_size`` rows)."""

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After pass ``batch`` of ``predict``; ``logs["outputs"]`` holds its
        outputs (an array, a list for several outputs)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def with_hook(callbacks: "Iterable[Callback]", hook: str) -> "list[Callback]":
    """The callbacks that override ``hook`` (a method of :class:`Callback`
    that does nothing), in their class or as an attribute of their own:
    only these are called, so that a fit whose callbacks have no batch hook
    runs each step as without them."""
    hooks = (hook, *_ALIASES.get(hook, ()))
    return [c for c in callbacks
            if any(getattr(getattr(c, h), "__func__", None) is not getattr(Callback, h) for h in hooks)]


#: the hooks that Callback's own call by default (Keras's older names)
_ALIASES = {"on_train_batch_begin": ("on_batch_begin",), "on_train_batch_end": ("on_batch_end",)}


#: the hooks of an evaluation (``evaluate``, a fit's validation)
TEST_HOOKS = ("on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end")
#: the hooks of ``predict``
PREDICT_HOOKS = ("on_predict_begin", "on_predict_batch_begin", "on_predict_batch_end", "on_predict_end")


class Hooks:
    """The callbacks of a fit, an evaluate or a predict, by hook: each hook
    calls only the callbacks that override it (:func:`with_hook`)."""

    def __init__(self, callbacks: "Iterable[Callback]"):
        self.callbacks = list(callbacks)
        self._by: dict[str, list[Callback]] = {}

    def of(self, hook: str) -> "list[Callback]":
        if hook not in self._by:
            self._by[hook] = with_hook(self.callbacks, hook)
        return self._by[hook]

    def has(self, *hooks: str) -> bool:
        """Whether a callback overrides one of ``hooks``."""
        return any(self.of(hook) for hook in hooks)

    def call(self, hook: str, *args, lazy: bool = False) -> "Callback | None":
        """Call ``hook`` on the callbacks that override it; with ``lazy``
        the last argument is a function that makes the logs, given to the
        hooks as :class:`LazyLogs`: called once, when a hook first looks
        at them (the logs may cost a readback), never when none does.
        Returns the first callback after which its model's
        ``stop_training`` is set, if any."""
        chosen = self.of(hook)
        if not chosen:
            return None
        logs = None
        if lazy:
            logs = LazyLogs(args[-1])
            args = (*args[:-1], logs)
            held = _references(logs)
        stopper = None
        try:
            for callback in chosen:
                was_stopping = getattr(callback.model, "stop_training", False)
                getattr(callback, hook)(*args)
                if stopper is None and not was_stopping and getattr(callback.model, "stop_training", False):
                    stopper = callback  # the one that set it, not one that ran after
        except BaseException:
            if logs is not None:
                logs.expire()
            raise
        if logs is not None:  # logs a hook kept, unread, are made now: later they would be another step's
            kept = held < 0 or _references(logs) != held  # counted as before the hooks (no bound method yet)
            logs.expire(make=kept)
        return stopper

    def set_model(self, model: "Model", params: dict[str, Any]) -> None:
        """Give every callback the model and ``params`` (evaluate's and predict's)."""
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(dict(params))


class LazyLogs(MutableMapping):
    """A batch hook's logs, made on first use: ``make()`` (a readback of
    the metrics on the GPU) runs when a hook first reads them, once for
    every hook of that call, and never where no hook does (TensorBoard's
    batch hook between two writes). They are a dict's: read, copied
    (``dict(logs)``), kept or added to. Logs that a hook keeps without
    reading them are made when the hooks return (:meth:`Hooks.call`
    counts the references to them), so that they hold that step's values."""

    def __init__(self, make: Callable[[], dict[str, float]]):
        self._make: Callable[[], dict[str, float]] | None = make
        self._logs: dict[str, float] | None = None

    def _get(self) -> dict[str, float]:
        if self._logs is None:
            if self._make is None:
                raise RuntimeError("a hook's logs were read after the hooks had stopped with an error")
            self._logs = dict(self._make())
        return self._logs

    def expire(self, make: bool = False) -> None:
        """The hooks have returned: the logs are made now with ``make``
        (a hook kept them), and can no longer be made after."""
        if make and self._logs is None:
            self._get()
        self._make = None

    def __getitem__(self, key: str) -> float:
        return self._get()[key]

    def __setitem__(self, key: str, value: float) -> None:
        self._get()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __bool__(self) -> bool:
        return True  # batch logs always hold the loss: `logs or {}` reads nothing back

    def __repr__(self) -> str:
        return repr(self._get()) if self._logs is not None or self._make is not None else "LazyLogs(expired)"


def _references(obj: Any) -> int:
    """How many references ``obj`` has (-1 where Python does not count
    them: then every call's logs count as kept)."""
    count = getattr(sys, "getrefcount", None)
    return count(obj) if count is not None else -1


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
    "min", "max", or "auto": max for the metrics that grow as they improve
    (accuracies, precision, recall, F-scores, AUC, R²), min for losses and errors)."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        if not isinstance(monitor, str):
            raise ValueError(f"expected monitor as a metric name such as 'val_loss'. Received: monitor={monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"expected mode 'auto', 'min' or 'max'. Received: mode={mode!r}")
        if mode == "auto":
            mode = "max" if improves_upward(monitor) else "min"
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
    A fit that BackupAndRestore resumes gets the counters back (``best``
    and ``best_epoch`` are the whole training's) but, in a new object,
    not the best epoch's weights: it then restores the best epoch since
    the resume (its epoch and value: ``_kept_epoch``, ``_kept_value``).
    Each fit starts with no weights kept.
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
        self._fit, self._kept_epoch, self._kept_value = None, None, None  # set by on_train_begin

    @property
    def monitor(self) -> str:
        return self._monitor.monitor

    @property
    def mode(self) -> str:
        """"min" or "max": the direction that improves ``monitor`` ("auto" resolved)."""
        return self._monitor.mode

    @property
    def min_delta(self) -> float:
        return self._monitor.min_delta

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.stopped_epoch = 0, None
        self.best, self.best_epoch = None, None
        # the weights kept (their epoch, monitored value and fit), and the last fit's: a backup of that
        # fit (BackupAndRestore) may resume it with them
        self._previous = (self._fit, self._kept_epoch, self._kept_value)
        self._fit = os.urandom(8).hex()
        self._kept_epoch, self._kept_value = None, None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = self._monitor.value(logs, repr(self))
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self._kept_epoch is None:
            self._keep_weights(epoch, None)  # until something beats them, these are the best
        self.wait += 1
        if self._monitor.improves(current, self.best):
            self.best = current
            if self.restore_best_weights:
                self._keep_weights(epoch, current)
            self.best_epoch = epoch
            if self.baseline is None or self._monitor.improves(current, self.baseline):
                self.wait = 0
            return
        if self.restore_best_weights and self._monitor.improves(current, self._kept_value):
            # only after a resume that lost the best epoch's weights: the best epoch since the resume
            self._keep_weights(epoch, current)
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _keep_weights(self, epoch: int, value: float | None) -> None:
        """Keep the weights of ``epoch`` (monitored ``value``; None: kept
        for want of better) for the end of training."""
        if epoch != self._kept_epoch:
            self._best_weights = self.model.snapshot_weights(into=self._best_weights)
        self._kept_epoch, self._kept_value = epoch, value

    def _backup_state(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": None if self.best is None else _json_float(self.best),
                "best_epoch": self.best_epoch, "fit": self._fit, "kept_epoch": self._kept_epoch,
                "kept_value": None if self._kept_value is None else _json_float(self._kept_value)}

    def _set_backup_state(self, state: dict[str, Any]) -> None:
        """The counters of a backup (``best``, ``best_epoch``: over the
        whole training). The weights to restore are the kept ones of the
        backup where this object still holds them (it ran the fit the
        backup is of, and kept that epoch's weights last); else they are
        gone, and the weights restored at the end are those of the best
        epoch since the resume (``_kept_epoch``, ``_kept_value``), which
        may be worse than ``best``."""
        self.wait = int(state["wait"])
        self.best = None if state["best"] is None else float(state["best"])
        self.best_epoch = state["best_epoch"]
        fit, kept_epoch, kept_value = self._previous
        kept = state.get("kept_epoch", self.best_epoch)
        if fit is not None and fit == state.get("fit") and kept is not None and kept_epoch == kept:
            self._kept_epoch, self._kept_value = kept_epoch, kept_value  # this object holds them still
        else:
            self._kept_epoch, self._kept_value = None, None  # gone: the best from here on
        self._fit = state.get("fit") or self._fit  # the training this fit goes on with

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self._kept_epoch is not None:
            if self.verbose:
                print(f"Restoring the weights from the end of the best epoch: {self._kept_epoch + 1}")
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
    weights file of ``model.save_weights`` instead of the whole model;
    otherwise the file is ``model.save(include_optimizer=True)``'s: the
    optimizer's state and step count, the loss and the shuffling state
    come with the weights, so that ``Model.load(file).fit(...,
    initial_epoch=epoch)`` goes on exactly as the fit would have.
    Saves are atomic, as ``Model.save``: a checkpoint interrupted at any
    moment leaves the previous file whole.
    """

    population_ready = False  # it reads or writes one Model

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

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """ValueError before the first epoch where the checkpoint could not
        be written at its end (see :func:`refuse_unsavable`)."""
        if not self.save_weights_only:
            refuse_unsavable(self.model, repr(self), "or pass save_weights_only=True (the weights file alone; "
                                                     "ModelCheckpoint has no include_optimizer=False)")

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
            self.model.save(path, include_optimizer=True)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved {path}")

    def __repr__(self) -> str:
        return f"ModelCheckpoint({self.filepath!r})"


def refuse_unsavable(model: "Model", who: str, remedy: str) -> None:
    """ValueError, naming ``who`` (a callback that saves the model with its
    optimizer at each epoch's end), the cause and ``remedy``, where the
    file could not be written: a custom layer that is not registered, a
    learning-rate schedule without a ``get_config`` that rebuilds it. A
    fit's callbacks check this in ``on_train_begin``, so that the fit is
    refused before training rather than after its first epoch."""
    from .saving.files import architecture

    try:
        architecture(model)  # what a file says of each layer
        if model.optimizer is not None:
            model.optimizer.get_config()  # and of the optimizer's schedule
    except ValueError as error:
        raise ValueError(f"{who} saves the model and its optimizer at each epoch's end, and could not: {error}. "
                         f"Nothing was trained: register the layer or give the schedule a get_config, {remedy}"
                         ) from None


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file (columns ``epoch``,
    counted from 0 as Keras does, then the metrics in name order);
    ``append`` continues an existing file. ``separator``: one character.

    The file is open only while a row is written, so nothing is left open
    whatever ends a fit (an error, Ctrl-C), and every finished epoch's row
    is on disk.
    """

    population_ready = False  # it reads or writes one Model

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

    population_ready = False  # it reads or writes one Model

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


def _float_rate(optimizer, who: str) -> float:
    """The optimizer's float learning rate; ValueError for a schedule."""
    if not isinstance(optimizer.learning_rate, float):
        raise ValueError(f"expected an optimizer with a float learning_rate for {who}. "
                         f"Received: {optimizer!r}, whose rate is a schedule already")
    return optimizer.learning_rate


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not
    improved (by more than ``min_delta``) for ``patience`` epochs, as
    Keras's: then wait ``cooldown`` epochs before counting again, and never
    go below ``min_lr``. ``mode``: "min", "max" or "auto" (max for the
    metrics that grow as they improve: accuracies, precision, recall,
    F-scores, AUC, R², with or without ``val_``; min for the rest, losses
    and errors). Each epoch's logs (and so the History) get the
    ``learning_rate`` it trained with.

    The optimizer's ``learning_rate`` must be a float: the new rate is read
    at the next step, also by a step the GPU replays (``step_values``).
    """

    population_ready = False  # it reads or writes one Model

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0 < factor < 1:
            raise ValueError(f"expected factor in (0, 1): the rate is multiplied by it. Received: factor={factor!r}")
        self.factor = float(factor)
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.patience = _checks.non_negative_int(patience, "patience")
        self.cooldown = _checks.non_negative_int(cooldown, "cooldown")
        self.min_lr = _checks.non_negative_float(min_lr, "min_lr")
        self.verbose = verbose
        self._reset()

    @property
    def monitor(self) -> str:
        return self._monitor.monitor

    def _reset(self) -> None:
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        _float_rate(self.model.optimizer, repr(self))
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        optimizer = self.model.optimizer
        rate = _float_rate(optimizer, repr(self))
        if isinstance(logs, dict):
            logs["learning_rate"] = rate
        current = self._monitor.value(logs, repr(self))
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improves(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and rate > self.min_lr:
                new = max(rate * self.factor, self.min_lr)
                if new > 0:
                    optimizer.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new:g}.")
                self.cooldown_counter, self.wait = self.cooldown, 0

    def _backup_state(self) -> dict[str, Any]:
        return {"best": None if self.best is None else _json_float(self.best), "wait": self.wait,
                "cooldown_counter": self.cooldown_counter}

    def _set_backup_state(self, state: dict[str, Any]) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])

    def __repr__(self) -> str:
        return f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor:g}, patience={self.patience})"


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss (the epoch's mean so
    far) is NaN or infinite, as Keras's. Its batch hook reads the loss back
    after every step. Without it a fit stops at the end of such an epoch
    anyway; in both cases it keeps the last weights that gave a finite
    loss and warns (see ``Model.fit``)."""

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class BackupAndRestore(Callback):
    """Back up the training state at each epoch's end into ``backup_dir``,
    and restore it when a fit starts, as Keras's: a fit interrupted (by an
    error, Ctrl-C, a killed process) and called again with a
    BackupAndRestore of the same ``backup_dir`` goes on from the last epoch
    backed up, and ends with the weights an uninterrupted fit gives, bit
    for bit, where its data are arrays or a ``Dataset`` read a whole pass
    an epoch (indexed batches, shuffled by the model's generator, which the
    backup holds; with ``steps_per_epoch`` below its length a pass spans
    epochs, and the pass under way is not backed up). A generator or a
    DataLoader is not: the resumed fit reads its batches
    from wherever a new iteration of it starts (a DataLoader's shuffling
    is PyTorch's), which the backup cannot restore, so the fit goes on
    from the epoch backed up but not bit for bit.

    The backup is written after every callback's ``on_epoch_end`` (fit
    calls :meth:`backup_epoch`), wherever this one is in ``callbacks``: the
    learning rate and counters the others set at the epoch's end are in it.

    The backup is one file (written atomically: an interrupted backup
    leaves the previous one whole) holding the weights and layer state, the
    optimizer's state, step count and float learning rate, the shuffling
    generator's state, the number of epochs done and their History; the
    resumed fit's History holds every epoch. The counters of the fit's
    ``ReduceLROnPlateau`` and ``EarlyStopping`` callbacks come back too
    (matched by type and order), so that they decide as they would have;
    not EarlyStopping's best weights (with ``restore_best_weights``, a
    resumed fit restores the weights of the best epoch since it resumed,
    unless the same callback object, after the interrupted fit, still
    holds those of the best epoch), nor any other callback's state.

    ``save_freq``: "epoch" (backups within an epoch are not supported).
    ``delete_checkpoint``: remove the backup when the fit ends (not when it
    is interrupted). The resumed fit must train the same model (the same
    layers; a file of another architecture is refused with FormatError)
    with an optimizer of the same type.
    """

    population_ready = False  # it reads or writes one Model

    FILE = "backup.safetensors"

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str = "epoch", delete_checkpoint: bool = True):
        if save_freq != "epoch":
            raise ValueError("expected save_freq='epoch' (a backup at each epoch's end; backups within an epoch "
                             f"are not supported). Received: save_freq={save_freq!r}")
        self.backup_dir = os.fspath(backup_dir)
        if not self.backup_dir:
            raise ValueError("expected backup_dir as a folder's path. Received: backup_dir=''")
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self._resumed = None
        self._callbacks: list[Callback] = []

    @property
    def path(self) -> str:
        return os.path.join(self.backup_dir, self.FILE)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._resumed = None
        refuse_unsavable(self.model, repr(self), "which a backup needs (it holds the optimizer's state)")
        if os.path.isfile(self.path):
            self._resumed = self._restore()

    def resume_fit(self, callbacks: "list[Callback]") -> "tuple[int, Any] | None":
        """Called by fit after every callback's ``on_train_begin``: give the
        fit's other callbacks their backed-up state, and return (the epochs
        done, their History) when the fit resumes from a backup."""
        self._callbacks = [c for c in callbacks if c is not self]
        if self._resumed is None:
            return None
        epochs, history, states = self._resumed
        for callback, state in zip(_stateful(self._callbacks), states):
            if state["type"] == type(callback).__name__:
                callback._set_backup_state(state["state"])
        return epochs, history

    def _restore(self) -> tuple[int, Any, list]:
        """Put the backup into the model; (epochs done, their History, the
        other callbacks' states)."""
        import json

        from .saving import read_file
        from .saving.fileio import FormatError
        from .training import History

        model = self.model
        _, metadata = read_file(self.path, "model")
        try:
            entry = json.loads(metadata["backup"])
            epochs, columns = int(entry["epoch"]), entry["history"]
            history = History(list(columns))
            history.epoch = [int(e) for e in entry["epochs"]]
            history.history = {k: [float(v) for v in values] for k, values in columns.items()}
            states = list(entry.get("callbacks", []))
            kind = json.loads(metadata["optimizer"])["type"]
        except (KeyError, TypeError, ValueError) as error:
            raise FormatError(f"{self.path}: not a backup of BackupAndRestore ({error!r})") from None
        optimizer, loss, loss_weights = model.optimizer, model.loss, model.loss_weights
        expected = f"expected a fit with {kind}, whose state the backup {self.path} holds. Received: {optimizer!r}"
        if kind != type(optimizer).__name__:  # refused before anything changes
            raise ValueError(expected)
        model.load(self.path)  # the weights, the file's optimizer with its state, the shuffling state
        restored = model.optimizer
        try:
            if len(restored.state_arrays()) != len(optimizer.state_arrays()):  # SGD with and without momentum
                raise ValueError(expected.replace(f"with {kind}", f"with {restored!r}"))
            # the state into the fit's own optimizer (bound to the same parameters)
            for source, target in zip(restored.state_arrays(), optimizer.state_arrays()):
                model.backend.copy(source, target)
            optimizer.iterations = restored.iterations
            if isinstance(optimizer.learning_rate, float) and isinstance(restored.learning_rate, float):
                optimizer.learning_rate = restored.learning_rate
        finally:
            model.optimizer, model.loss, model.loss_weights = optimizer, loss, loss_weights
        return epochs, history, states

    def backup_epoch(self, epoch: int, logs: Logs | None = None) -> None:
        """Write the backup of epoch ``epoch``: called by fit after every
        callback's ``on_epoch_end`` (not in it: the learning rate and the
        counters that the callbacks after this one change at the epoch's
        end come too, whatever the order of ``callbacks``)."""
        import json

        from .saving import save_model

        model = self.model
        history = model.history
        columns = {k: list(v) for k, v in history.history.items()} if history is not None else {}
        epochs = list(history.epoch) if history is not None else [epoch]
        for key, value in (logs or {}).items():  # what callbacks added to this epoch's logs
            column = columns.setdefault(key, [])
            if len(column) < len(epochs):
                column.append(value)
        entry = {"epoch": epoch + 1, "epochs": epochs,
                 "history": {k: [_json_float(v) for v in values] for k, values in columns.items()},
                 "callbacks": [{"type": type(c).__name__, "state": c._backup_state()}
                               for c in _stateful(self._callbacks)]}
        os.makedirs(self.backup_dir, exist_ok=True)
        model.sync_weights()
        save_model(model, self.path, include_optimizer=True, extra={"backup": json.dumps(entry)})

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.delete_checkpoint and os.path.isfile(self.path):
            os.remove(self.path)
            try:
                os.rmdir(self.backup_dir)  # when nothing else is in it
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"BackupAndRestore({self.backup_dir!r})"


def _stateful(callbacks: "list[Callback]") -> "list[Callback]":
    """The callbacks whose counters BackupAndRestore backs up."""
    return [c for c in callbacks if hasattr(c, "_backup_state")]


def _json_float(value: float) -> float | str:
    """A float for JSON: NaN and infinities as "nan", "inf", "-inf" (which float() reads)."""
    value = float(value)
    return value if math.isfinite(value) else repr(value)


class TensorBoard(Callback):
    """Write each epoch's metrics, and the weights' histograms every
    ``histogram_freq`` epochs, as TensorBoard event files, as Keras's:
    ``log_dir/train`` gets ``epoch_loss``, ``epoch_accuracy`` and the
    ``epoch_learning_rate``, ``log_dir/validation`` the ``val_`` metrics
    under the same names, at step = epoch (counted from 0). Histograms are
    named ``{layer name}/{tensor}`` with PyTorch's tensor names
    (``dense/weight``). ``update_freq``: "epoch", or a number of batches:
    then also ``batch_loss`` (the epoch's mean so far) every that many
    steps, at the step's global count (a readback at each of those steps
    only: the batch hook reads its logs then). View with ``tensorboard --logdir log_dir``.

    Needs the ``tensorboard`` package (the ``tensorboard`` extra:
    ``pip install "intricate-py[tensorboard]"``), not TensorFlow. Each write
    opens its file, appends and closes it, so nothing is left open however
    a fit ends.
    """

    population_ready = False  # it reads or writes one Model

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0,
                 update_freq: str | int = "epoch"):
        _tensorboard()  # ImportError naming the extra, at once
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = _checks.non_negative_int(histogram_freq, "histogram_freq")
        if update_freq != "epoch":
            if update_freq == "batch":
                update_freq = 1
            update_freq = _checks.positive_int(update_freq, "update_freq")
        self.update_freq = update_freq
        if update_freq != "epoch":  # the batch hook only then (a readback at each step it writes)
            self.on_train_batch_end = self._batch_end
        self._files: dict[str, str] = {}
        self._batches = 0

    def _write(self, run: str, step: int, values: list) -> None:
        """Append one event of summary ``values`` to ``run``'s file (made, with its version event, on first use)."""
        import socket
        import time

        tb = _tensorboard()
        path = self._files.get(run)
        events = []
        if path is None:
            folder = os.path.join(self.log_dir, run)
            os.makedirs(folder, exist_ok=True)
            stamp = time.time()
            path = os.path.join(folder, f"events.out.tfevents.{int(stamp)}.{socket.gethostname()}.{os.getpid()}."
                                        f"{id(self)}.v2")
            self._files[run] = path
            events.append(tb.event_pb2.Event(wall_time=stamp, file_version="brain.Event:2"))
        events.append(tb.event_pb2.Event(wall_time=time.time(), step=int(step),
                                         summary=tb.summary_pb2.Summary(value=values)))
        with open(path, "ab") as file:
            writer = tb.RecordWriter(file)
            for event in events:
                writer.write(event.SerializeToString())

    def _scalars(self, logs: Logs, prefix: str) -> dict[str, list]:
        tb = _tensorboard()
        runs: dict[str, list] = {}
        for key, value in logs.items():
            run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            runs.setdefault(run, []).append(tb.summary_pb2.Summary.Value(tag=f"{prefix}{name}",
                                                                         simple_value=float(value)))
        return runs

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._files, self._batches = {}, self.model.optimizer.iterations if self.model.optimizer else 0

    def _batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._batches += 1
        if self._batches % self.update_freq:
            return
        for run, values in self._scalars({k: v for k, v in (logs or {}).items() if not k.startswith("val_")},
                                         "batch_").items():
            self._write(run, self._batches, values)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = dict(logs or {})
        if "learning_rate" not in logs and self.model.optimizer is not None:
            logs["learning_rate"] = self.model.optimizer.current_learning_rate()
        for run, values in self._scalars(logs, "epoch_").items():
            self._write(run, epoch, values)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write("train", epoch, self._histograms())

    def _histograms(self) -> list:
        tb = _tensorboard()
        values = []
        for layer in self.model.layers:
            for name, tensor in layer.state_dict().items():
                t = np.asarray(tensor, dtype=np.float64).ravel()
                if not t.size:
                    continue
                counts, edges = np.histogram(t, bins=30)
                histogram = tb.summary_pb2.HistogramProto(
                    min=float(t.min()), max=float(t.max()), num=float(t.size), sum=float(t.sum()),
                    sum_squares=float(np.dot(t, t)), bucket_limit=[float(e) for e in edges[1:]],
                    bucket=[float(c) for c in counts])
                values.append(tb.summary_pb2.Summary.Value(tag=f"{layer.name}/{name}", histo=histogram))
        return values

    def __repr__(self) -> str:
        return f"TensorBoard({self.log_dir!r})"


def _tensorboard():
    """The tensorboard package's protos and record writer (no TensorFlow needed)."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as error:
        raise ImportError(
            "TensorBoard needs the tensorboard package: pip install \"intricate-py[tensorboard]\" "
            f"(or pip install tensorboard). ({error})"
        ) from None

    class Modules:
        pass

    modules = Modules()
    modules.event_pb2, modules.summary_pb2, modules.RecordWriter = event_pb2, summary_pb2, RecordWriter
    return modules


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
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "BackupAndRestore",
    "TensorBoard",
    "Hooks",
    "as_callbacks",
]
