"""Hyper-parameter and seed sweeps on Ray Tune (the optional extra ``tune``).

Ray Tune does the sweeping: search spaces, schedulers such as ASHA,
resources, retries of failed trials, result tables, clusters. This module
only joins a fit to it:

* :class:`ReportToTune`, a callback that reports each epoch's logs to Ray
  Tune and, every ``checkpoint_every`` epochs and at the last, a checkpoint:
  the model saved with its optimizer, loss and shuffling state
  (``Model.save(..., include_optimizer=True)``), so a trial that dies
  resumes exactly where it stopped;
* :func:`resume`, for the start of a trainable: the model of the trial's
  latest checkpoint and the epochs it had done, or a new model;
* :func:`load_best`, the model of a sweep's best checkpoint: of the best
  epoch with a checkpoint over all trials;
* for packed trials, where one trial trains a :class:`~intricate_py.Population`
  of configurations (seeds ``seed + i``, and per member the learning rates
  of :func:`member_rates`) so that one device serves them all:
  :class:`ReportPopulationToTune`, which reports the best member's logs
  (and every member's) with a checkpoint of the population, and
  :func:`load_best_member`, that member as a Model.

A trainable in full::

    def trainable(config):
        def build():
            model = Model([Dense(config["width"]), ReLU(), Dense(10), Softmax()],
                          input_size=784, seed=config["seed"])
            model.compile(optimizer=Adam(config["lr"]), loss="categorical_crossentropy")
            return model

        model, done = resume(build)
        model.fit(x, y, epochs=config["epochs"], initial_epoch=done, validation_data=(xv, yv),
                  callbacks=[ReportToTune()])

The loss and optimizer come from ``compile`` (or the checkpoint), not from
``fit``'s arguments: a resumed model keeps its optimizer's state.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

try:
    from ray import tune
except ImportError as error:  # the optional extra
    raise ImportError(
        "intricate_py.tune needs Ray Tune: pip install 'intricate-py[tune]' (ray[tune])"
    ) from error

import numpy as np

from . import _checks
from .callbacks import Callback, Logs
from .metrics import improves_upward
from .model import Model
from .population import Population
from .saving import FormatError

#: The files of a checkpoint: the model, and the epochs it had done.
MODEL_FILE = "model.safetensors"
STATE_FILE = "progress.json"
#: A packed trial's checkpoint holds its population here (with STATE_FILE).
POPULATION_FILE = "population.safetensors"


class ReportToTune(Callback):
    """Report each epoch's logs (loss, accuracy, and val_loss, val_accuracy
    with validation data) to Ray Tune, with ``epoch`` (counted from 1, over
    the whole trial); every ``checkpoint_every`` epochs of the trial, and
    at the last epoch of the fit, attach a checkpoint of the model with its
    training state.

    Epochs count over the whole trial: resume with ``fit(...,
    initial_epoch=done)`` (``done`` from :func:`resume`). ``start_epoch``,
    for fits that count from 0 each time, adds the epochs done before.

    Where it stands among the callbacks does not matter: when an epoch gets
    no checkpoint of its own, its report waits for the next epoch's start,
    where the fit has gone on; if the fit stopped there instead (a callback
    after this one set ``model.stop_training``, a halting condition, a
    divergence), it is reported at the end of training with a checkpoint of
    the model as fit leaves it. (A subclass that overrides
    ``on_epoch_begin`` or ``on_train_end`` calls ``super()``.)
    """

    population_ready = False  # a Population's fit reports with ReportPopulationToTune

    def __init__(self, checkpoint_every: int = 1, start_epoch: int = 0):
        self.checkpoint_every = _checks.positive_int(checkpoint_every, "checkpoint_every")
        self.start_epoch = _checks.non_negative_int(start_epoch, "start_epoch")
        self._pending: dict | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._pending = None

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        if self._pending is not None:  # the last epoch went on: it needs no checkpoint
            metrics, self._pending = self._pending, None
            tune.report(metrics)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        done = self.start_epoch + epoch + 1
        metrics = {**(logs or {}), "epoch": done}
        last = epoch + 1 == self.params.get("epochs") or self.model.stop_training
        if done % self.checkpoint_every == 0 or last:
            self._report_with_checkpoint(metrics)
        else:
            self._pending = metrics

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._pending is not None:  # training stopped after an epoch without a checkpoint
            metrics, self._pending = self._pending, None
            self._report_with_checkpoint(metrics)

    def _report_with_checkpoint(self, metrics: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(self.model, metrics["epoch"], Path(folder))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    def __repr__(self) -> str:
        return f"ReportToTune(checkpoint_every={self.checkpoint_every})"


def save_checkpoint(model: Model, epochs_done: int, folder: Path) -> None:
    """Write a checkpoint's files into ``folder``: the model with its
    optimizer, and ``progress.json`` with the epochs it had done."""
    model.save(folder / MODEL_FILE, include_optimizer=True)
    (folder / STATE_FILE).write_text(json.dumps({"epoch": epochs_done}))


def load_checkpoint(checkpoint: "tune.Checkpoint", device: str = "auto") -> tuple[Model, int]:
    """The model of a checkpoint of :class:`ReportToTune` and the epochs it
    had done; FormatError, naming the file, for a progress file that is not
    ``{"epoch": n}`` with n from 1 to the optimizer's step count (each
    epoch takes a step at least)."""
    shown = f"{str(checkpoint.path).rstrip('/')}/{STATE_FILE}"
    with checkpoint.as_directory() as folder:
        model = Model.load(Path(folder) / MODEL_FILE, device=device)
        epochs_done = read_progress(Path(folder) / STATE_FILE, shown, model)
    return model, epochs_done


def read_progress(path: Path, shown: str, model: Model) -> int:
    """The epochs done that the progress file at ``path`` (named ``shown``
    in errors) holds, checked against ``model``'s optimizer."""
    expected = "expected {'epoch': the epochs done}"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FormatError(f"{shown}: cannot read it ({error})") from None
    except ValueError as error:  # JSON, or the encoding
        raise FormatError(f"{shown}: not JSON ({error}); {expected}") from None
    if not isinstance(state, dict):
        raise FormatError(f"{shown}: {expected}. Received: {type(state).__name__}")
    if "epoch" not in state:
        raise FormatError(f"{shown}: {expected}. Received: no 'epoch' (keys {sorted(map(str, state))[:5]})")
    done = state["epoch"]
    steps = model.optimizer.iterations if model.optimizer is not None else None
    ok = isinstance(done, int) and not isinstance(done, bool) and 1 <= done and (steps is None or done <= steps)
    if not ok:
        bound = f"from 1 to {steps} (the optimizer's steps: each epoch takes one at least)" if steps is not None \
            else "of at least 1"
        raise FormatError(f"{shown}: expected 'epoch' as an integer {bound}. Received: {done!r}")
    return done


def resume(build: Callable[[], Model], device: str = "auto") -> tuple[Model, int]:
    """Inside a trainable: the model of the trial's latest checkpoint (after
    a failure, when Ray Tune runs the trial again) and the epochs it had
    done, or ``build()`` and 0 for a trial's first run."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return build(), 0
    return load_checkpoint(checkpoint, device)


def load_best(
    results: "tune.ResultGrid | tune.Result",
    metric: str = "val_accuracy",
    mode: str = "max",
    device: str = "auto",
) -> Model:
    """The model of the best checkpoint by ``metric`` (``mode`` "max" or
    "min") among every checkpoint the sweep kept, over all trials (or of
    one trial's Result): the best epoch that has a checkpoint. With
    ReportToTune's ``checkpoint_every=1`` every epoch has one, so this is
    the best epoch of the sweep, as the example's table ranks each trial by
    its best epoch. (Ray's ``get_best_result`` ranks trials by their last
    result unless told ``scope="all"``.)"""
    if mode not in ("max", "min"):
        raise ValueError(f"expected mode 'max' or 'min'. Received: mode={mode!r}")
    trials = list(results) if isinstance(results, tune.ResultGrid) else [results]
    scored = [(metrics[metric], checkpoint) for result in trials for checkpoint, metrics in result.best_checkpoints
              if isinstance(metrics.get(metric), (int, float)) and metrics[metric] == metrics[metric]]
    if not scored:
        where = trials[0].path if len(trials) == 1 else "the sweep"
        raise ValueError(f"expected a trial with checkpoints reporting {metric!r}. Received: none in {where}")
    pick = max if mode == "max" else min
    best = pick(range(len(scored)), key=lambda i: scored[i][0])  # the first of equals
    return load_checkpoint(scored[best][1], device)[0]


def member_rates(seed: int, size: int, low: float = 1e-4, high: float = 3e-2) -> np.ndarray:
    """``size`` learning rates drawn log-uniformly in [low, high) from
    ``seed`` (a trial's sampled seed, so that a seeded search draws the
    same ones): what a packed trial gives its population's optimizer."""
    low, high = _checks.positive_float(low, "low"), _checks.positive_float(high, "high")
    if low >= high:
        raise ValueError(f"expected low < high. Received: low={low}, high={high}")
    rng = np.random.default_rng(_checks.non_negative_int(seed, "seed"))
    return np.exp(rng.uniform(np.log(low), np.log(high), _checks.positive_int(size, "size")))


class ReportPopulationToTune(Callback):
    """For ``Population.fit`` in a packed trial: report each epoch to Ray
    Tune as the logs of the member best by ``metric`` (``mode`` "max" or
    "min"; by default as the metric improves) that epoch, with ``member``
    (its index), ``epoch`` (from 1), every member's values as
    ``{key}_members`` lists, and ``members_training`` (those not frozen);
    every ``checkpoint_every`` epochs and at the last, a checkpoint: the
    population's file and the epochs done. Schedulers (ASHA) then judge a
    trial by its best configuration. A packed trial that fails starts
    again from its first epoch (a population's file keeps no optimizer
    state)."""

    def __init__(self, metric: str = "val_loss", mode: str | None = None, checkpoint_every: int = 1):
        if not isinstance(metric, str):
            raise ValueError(f"expected metric as a name such as 'val_loss'. Received: metric={metric!r}")
        if mode not in (None, "max", "min"):
            raise ValueError(f"expected mode 'max', 'min' or None. Received: mode={mode!r}")
        self.metric = metric
        self.mode = mode or ("max" if improves_upward(metric) else "min")
        self.checkpoint_every = _checks.positive_int(checkpoint_every, "checkpoint_every")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self.metric not in logs:
            raise ValueError(f"expected {self.metric!r} among the logs {sorted(logs)} (validation_data gives "
                             "val_ metrics)")
        values = np.asarray(logs[self.metric], np.float64)
        if np.isnan(values).all():
            return
        best = int(np.nanargmax(values) if self.mode == "max" else np.nanargmin(values))
        metrics = {key: float(np.asarray(v)[best]) for key, v in logs.items()}
        metrics.update({f"{key}_members": [float(x) for x in np.asarray(v)] for key, v in logs.items()})
        metrics.update(member=best, epoch=epoch + 1, members_training=int(np.isfinite(values).sum()))
        rate = self.model.model.optimizer.learning_rate  # the population's optimizer
        if isinstance(rate, (float, np.ndarray)):  # not a schedule
            metrics["learning_rate"] = float(np.broadcast_to(rate, (self.model.size,))[best])
        if (epoch + 1) % self.checkpoint_every and not self.model.stop_training:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            self.model.save(Path(folder) / POPULATION_FILE)
            (Path(folder) / STATE_FILE).write_text(json.dumps({"epoch": epoch + 1}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    def __repr__(self) -> str:
        return f"ReportPopulationToTune({self.metric!r}, mode={self.mode!r})"


def load_best_member(results: "tune.ResultGrid | tune.Result", build: Callable[[dict], Model],
                     metric: str = "val_loss", mode: str = "min") -> Model:
    """The best member of the best checkpoint of packed trials (as
    :func:`load_best` ranks checkpoints, by the best member's ``metric``),
    as a Model made by ``build(config)`` (the architecture of the trial of
    ``config``) with that member's weights."""
    if mode not in ("max", "min"):
        raise ValueError(f"expected mode 'max' or 'min'. Received: mode={mode!r}")
    trials = list(results) if isinstance(results, tune.ResultGrid) else [results]
    scored = [(metrics[metric], metrics["member"], checkpoint, result.config) for result in trials
              for checkpoint, metrics in result.best_checkpoints
              if isinstance(metrics.get(metric), (int, float)) and metrics[metric] == metrics[metric]
              and "member" in metrics]
    if not scored:
        raise ValueError(f"expected packed trials (ReportPopulationToTune) with checkpoints reporting {metric!r}")
    pick = max if mode == "max" else min
    value, member, checkpoint, config = scored[pick(range(len(scored)), key=lambda i: scored[i][0])]
    with checkpoint.as_directory() as folder:
        population = Population.load(Path(folder) / POPULATION_FILE, lambda: build(config))
    return population[member]


__all__ = ["ReportToTune", "resume", "load_best", "load_checkpoint", "save_checkpoint", "read_progress",
           "ReportPopulationToTune", "load_best_member", "member_rates"]
