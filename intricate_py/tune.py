"""Hyper-parameter and seed sweeps on Ray Tune (the optional extra ``tune``).

Ray Tune does the sweeping: search spaces, schedulers such as ASHA,
resources, retries of failed trials, result tables, clusters. This module
only joins a fit to it:

* :class:`ReportToTune`, a callback that reports each epoch's logs to Ray
  Tune and, every ``checkpoint_every`` epochs, a checkpoint: the model saved
  with its optimizer, loss and shuffling state (``Model.save(...,
  include_optimizer=True)``), so a trial that dies resumes exactly where it
  stopped;
* :func:`resume`, for the start of a trainable: the model of the trial's
  latest checkpoint and the epochs it had done, or a new model;
* :func:`load_best`, the model of a sweep's best checkpoint.

A trainable in full::

    def trainable(config):
        def build():
            model = Model([Dense(config["width"]), ReLU(), Dense(10), Softmax()],
                          input_size=784, seed=config["seed"])
            model.compile(optimizer=Adam(config["lr"]), loss="categorical_crossentropy")
            return model

        model, done = resume(build)
        model.fit(x, y, epochs=config["epochs"] - done, validation_data=(xv, yv),
                  callbacks=[ReportToTune(start_epoch=done)])

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

from . import _checks
from .callbacks import Callback, Logs
from .model import Model

#: The files of a checkpoint: the model, and the epochs it had done.
MODEL_FILE = "model.safetensors"
STATE_FILE = "progress.json"


class ReportToTune(Callback):
    """Report each epoch's logs (loss, accuracy, and val_loss, val_accuracy
    with validation data) to Ray Tune, with ``epoch`` (counted from 1, over
    the whole trial); every ``checkpoint_every`` epochs, and at the last
    one, attach a checkpoint of the model with its training state.

    ``start_epoch``: the epochs the trial had done before this fit (from
    :func:`resume`), so a resumed trial counts on.

    Callbacks run in the order given, so list one that stops training
    (EarlyStopping) before this one: then the epoch it stops at is known
    as the last here and gets its checkpoint.
    """

    def __init__(self, checkpoint_every: int = 1, start_epoch: int = 0):
        self.checkpoint_every = _checks.positive_int(checkpoint_every, "checkpoint_every")
        self.start_epoch = _checks.non_negative_int(start_epoch, "start_epoch")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        done = self.start_epoch + epoch + 1
        metrics = {**(logs or {}), "epoch": done}
        last = epoch + 1 == self.params.get("epochs") or self.model.stop_training
        if (epoch + 1) % self.checkpoint_every and not last:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(self.model, done, Path(folder))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    def __repr__(self) -> str:
        return f"ReportToTune(checkpoint_every={self.checkpoint_every})"


def save_checkpoint(model: Model, epochs_done: int, folder: Path) -> None:
    """Write a checkpoint's files into ``folder``."""
    model.save(folder / MODEL_FILE, include_optimizer=True)
    (folder / STATE_FILE).write_text(json.dumps({"epoch": epochs_done}))


def load_checkpoint(checkpoint: "tune.Checkpoint", device: str = "auto") -> tuple[Model, int]:
    """The model of a checkpoint of :class:`ReportToTune` and the epochs it had done."""
    with checkpoint.as_directory() as folder:
        model = Model.load(Path(folder) / MODEL_FILE, device=device)
        epochs_done = json.loads((Path(folder) / STATE_FILE).read_text())["epoch"]
    return model, epochs_done


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
    "min"): of the best trial of a ResultGrid, or of one trial's Result."""
    if mode not in ("max", "min"):
        raise ValueError(f"expected mode 'max' or 'min'. Received: mode={mode!r}")
    result = results.get_best_result(metric, mode) if isinstance(results, tune.ResultGrid) else results
    checkpoint = result.get_best_checkpoint(metric, mode)
    if checkpoint is None:
        raise ValueError(f"expected a trial with checkpoints reporting {metric!r}. Received: none in {result.path}")
    return load_checkpoint(checkpoint, device)[0]


__all__ = ["ReportToTune", "resume", "load_best", "load_checkpoint", "save_checkpoint"]
