"""What ``Model.fit`` runs: the :class:`Trainer` (a fit's data, epochs,
callbacks and stopping) and its :class:`TrainStep`."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Iterable

import numpy as np

from . import _checks
from .backends import Array
from .backends.base import step_values
from .callbacks import Callback, Hooks, as_callbacks
from .data import (BatchSource, SourceData, batch_converter, is_batch_source, one_weighting, ran_out,
                   refuse_sample_weight, refuse_with_source, sample_weights, split_batch)
from .fit_data import (DeviceData, Evaluation, Slots, add_metrics, bind_metrics, metric_keys, metric_slots,
                       placed, step_arrays)
from .fit_run import Run
from .layers.base import Recordings
from .losses import Loss, warn_if_mismatched
from .model_data import same_length, split
from .training import HaltingCondition, History

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Trainer", "TrainStep", "validation_arrays"]

#: the loss kinds that take a fused layer's input, and the probabilities that layer would have made
_FUSED_PROBABILITIES = {"softmax_cross_entropy": "softmax", "sigmoid_cross_entropy": "sigmoid"}


class TrainStep:
    """One training step, with what does not change between steps worked
    out once: each output's loss kind, whether it fuses with the layer
    making the output, the plan's pass, the accuracy kinds.

    On a backend that records (the GPU), the first step of each batch size
    runs the layers' code while the backend records its dispatches; later
    steps replay that recording, with the values that change from step to
    step (the batch's first row, the metrics slots, the optimizer's
    scalars, the layers' step values such as Dropout's keys) written into
    their parameters, and run no layer code.
    """

    def __init__(self, model: "Model", losses: list[Loss | None], weights: list[float], slots: Slots):
        self.model, self.backend, self.plan = model, model.backend, model.plan
        self.losses, self.weights, self.slots = losses, weights, slots
        self.graded = [k for k, loss in enumerate(losses) if loss is not None]
        self.kinds, fused = {}, []
        for k, loss in enumerate(losses):
            node = self.plan.fusible_output(k)
            if loss is None:
                fused.append(None)
                continue
            self.kinds[k], fuses = loss.step_kind(node.layer) if node is not None else (loss.kind, False)
            fused.append(fuses)
        self.pass_ = self.plan.pass_for(training=True, fused=tuple(fused))
        for parameter in self.plan.untouched(self.pass_):  # no loss reaches them: no update but weight decay
            self.backend.clear(parameter.grad)
        self.accuracy = {k: losses[k].accuracy_kind(math.prod(model.outputs[k].shape)) for k in self.graded}
        self.replayable = self.plan.replayable
        self.recordings = Recordings()  # by batch rows
        self.optimizer_values = tuple(model.optimizer.step_values())
        self.n_inputs = len(model.inputs)
        # each graded output's (index, loss, kind, accuracy, weight, gradient buffer's name)
        self.terms = [(k, losses[k], self.kinds[k], self.accuracy[k], weights[k], f"loss_grad{k}")
                      for k in self.graded]
        # each graded output's loss slot in a block, on an epoch's first step (True) and the others
        self.offsets = {first: [slots.of(k, slots.FIRST_LOSS if first else slots.LOSS) for k in self.graded]
                        for first in (True, False)}
        # the metrics' region in a block, on an epoch's first step (True) and the others
        self.metric_offsets = {first: slots.metric_at(slots.FIRST_LOSS if first else slots.LOSS)
                               for first in (True, False)}
        # what the metrics apply to an output that is the input of a layer fused with its loss
        self.transforms = {k: _FUSED_PROBABILITIES.get(self.kinds[k], "none") for k in self.graded}

    def values(self, first: int, block: int, first_step: bool) -> dict[str, float | int]:
        """What changes from step to step, by the names the operations' arguments take."""
        optimizer = self.model.optimizer
        values = {"first": first, **optimizer.step_values(), **self.plan.step_values(optimizer.iterations)}
        for k, offset in zip(self.graded, self.offsets[first_step]):
            values[f"index{k}"] = block + offset
        values["metrics_at"] = block + self.metric_offsets[first_step]
        return values

    def run(self, data: DeviceData, batch: tuple, metrics: Array, block: int, first_step: bool) -> None:
        """One step on ``batch`` (first row, arrays) of ``data``, adding each
        output's loss sum and correct count into ``metrics``' block ``block``."""
        if not (self.replayable and self.backend.records):  # numpy: the layers every step, nothing marked
            if self.plan.stepped:
                self.plan.give_step_values(self.plan.step_values(self.model.optimizer.iterations))
            self._run(data, batch, metrics, batch[0], [block + offset for offset in self.offsets[first_step]], None,
                      block + self.metric_offsets[first_step])
            return
        values = self.values(batch[0], block, first_step)
        rows = batch[1][0].shape[0]
        recording = self.recordings.get(rows)
        if recording is not None:
            self.backend.replay(recording, values)
            self.model.optimizer.iterations += 1
            return
        marked = step_values(values)
        self.plan.give_step_values(marked)
        with self.backend.record() as recording:
            self._run(data, batch, metrics, marked["first"], [marked[f"index{k}"] for k in self.graded],
                      {k: marked[k] for k in self.optimizer_values}, marked["metrics_at"])
        if recording.complete:
            self.recordings.put(rows, recording)

    def _run(self, data: DeviceData, batch: tuple, metrics: Array, first: int, indexes: list[int],
             optimizer_values: dict | None, metrics_at: int = 0) -> None:
        """The step, layer by layer: the batch from row ``first`` of the
        order, each output's loss into ``metrics[indexes[k]]`` (and the
        metrics asked for from ``metrics[metrics_at]``), then the
        optimizer's update with ``optimizer_values`` (None: its own)."""
        backend, plan = self.backend, self.plan
        arrays = batch[1]
        data.gather(first, arrays)
        n_inputs = self.n_inputs
        reads = plan.forward(self.pass_, arrays[:n_inputs], True)
        grads: list[Array | None] = [None] * len(reads)
        graded = len(self.terms)
        # after the targets, each graded output's sample weights where the fit has them
        sample_weights = arrays[n_inputs + graded:] or [None] * graded
        for (k, loss, kind, accuracy, weight, name), t, w, index in zip(self.terms, arrays[n_inputs:],
                                                                         sample_weights, indexes):
            p = reads[k]
            g = grads[k] = plan.buffers.get(name, p.shape[0], p.shape[1:])
            loss.train_step(backend, kind, p, t, metrics, index, accuracy, g, weight, w)
        if self.slots.metrics:
            add_metrics(backend, self.slots, reads, dict(zip(self.graded, arrays[n_inputs:])), metrics, metrics_at,
                        self.transforms)
        plan.backward(self.pass_, grads)
        self.model.optimizer.step(optimizer_values)


def validation_arrays(model: "Model", losses: list[Loss | None], xs: list, ts: list, ws: list, validation_data,
                      validation_split: float) -> tuple[list, tuple | None]:
    """A fit's arrays, checked, and its validation: (the training arrays:
    inputs, then targets with a loss, then their sample weights if any; the
    validation's (inputs, targets by output, sample weights) or None), from
    ``validation_data`` ((x, y) or (x, y, sample_weight)) or the last
    ``validation_split`` of the arrays, as Keras takes them."""
    graded = [k for k, t in enumerate(ts) if t is not None]
    arrays = step_arrays(xs, ts, ws)
    if validation_split:
        if validation_data is not None:
            raise ValueError("expected validation_data or validation_split, not both")
        arrays, held = split(arrays, validation_split)
        val_ts: list = [None] * len(ts)
        for k, a in zip(graded, held[len(xs):]):
            val_ts[k] = a
        return arrays, (held[: len(xs)], val_ts, held[len(xs) + len(graded):])
    if validation_data is None:
        return arrays, None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError(
            "expected validation_data=(x_val, y_val) or (x_val, y_val, sample_weight_val). "
            f"Received: {type(validation_data).__name__}"
        )
    val_xs = model.input_arrays(validation_data[0], "validation_data[0]")
    val_ts = model.target_arrays(validation_data[1], losses, "validation_data[1]")
    same_length([("validation_data[0]", val_xs[0])] + [("validation_data[1]", t) for t in val_ts if t is not None])
    val_ws = sample_weights(model, losses, val_ts, validation_data[2] if len(validation_data) > 2 else None,
                            name="validation_data[2]")
    return arrays, (val_xs, val_ts, val_ws)


class Trainer:
    """One fit: the data checked and placed on the device, the epochs run
    with their callbacks, halting condition and readbacks, and the History.
    Made by ``Model.fit`` with its arguments; :meth:`run` trains."""

    def __init__(self, model: "Model", x, y, loss, loss_weights=None, epochs: int = 1, batch_size: int = 32,
                 shuffle: bool = True, validation_data=None, validation_split: float = 0.0, verbose=False,
                 halting_condition: HaltingCondition | None = None, callbacks: Iterable[Callback] | None = None,
                 initial_epoch: int = 0, steps_per_epoch: int | None = None, validation_steps: int | None = None,
                 metrics=None, sample_weight=None, class_weight=None):
        self.model = model
        self.epochs = _checks.non_negative_int(epochs, "epochs")
        self.initial_epoch = _checks.non_negative_int(initial_epoch, "initial_epoch")
        if self.initial_epoch > self.epochs:
            raise ValueError(
                "expected initial_epoch at most epochs, the number of the last epoch (as in Keras: "
                "fit(epochs=10, initial_epoch=3) runs epochs 4 to 10). "
                f"Received: initial_epoch={initial_epoch}, epochs={epochs}"
            )
        to_run = self.epochs - self.initial_epoch
        source, val_source = self._sources(x, y, batch_size, validation_data, validation_split, steps_per_epoch,
                                           validation_steps, to_run)
        if source is not None:  # the first batch builds the model and is checked as arrays are
            refuse_sample_weight(source.x, sample_weight)
            x, y, sample_weight = split_batch(source.first(), "x")
        if val_source is not None:
            validation_data = split_batch(val_source.first(), "validation_data")
        batch_size = _checks.positive_int(32 if batch_size is None else batch_size, "batch_size")
        self.verbose = _checks.verbosity(verbose)
        self.callbacks = as_callbacks(callbacks)
        if halting_condition is not None and not isinstance(halting_condition, HaltingCondition):
            raise ValueError(
                "expected a HaltingCondition such as MinLossReached(0.01). "
                f"Received: halting_condition={halting_condition!r}"
            )
        self.halting = halting_condition
        validation_split = _checks.fraction(validation_split, "validation_split")
        xs = model.input_arrays(x)
        self.losses = model.output_losses(loss)
        self.weights = model.output_weights(self.losses, loss_weights)
        ts = model.target_arrays(y, self.losses)
        same_length([("x", xs[0])] + [("y", t) for t in ts if t is not None])
        one_weighting(sample_weight, class_weight)
        ws = sample_weights(model, self.losses, ts, sample_weight)
        train, validation = validation_arrays(model, self.losses, xs, ts, ws, validation_data, validation_split)
        if class_weight is not None and source is None:  # as Keras: the training part's weights only
            graded = [k for k, t in enumerate(ts) if t is not None]
            train_ts = [None] * len(ts)
            for k, t in zip(graded, train[len(xs):]):
                train_ts[k] = t
            train = train + sample_weights(model, self.losses, train_ts, class_weight=class_weight)
        for k, loss in enumerate(self.losses):
            if loss is not None:
                warn_if_mismatched(loss, model.outputs[k].node.layer, stacklevel=4)
        # the metrics asked for (fit's, else compile's), checked against the outputs
        self.metrics = bind_metrics(model, self.losses, getattr(model, "metrics", None) if metrics is None else metrics)
        self.keys = metric_keys(model, self.losses, validation is not None, self.metrics)
        if halting_condition is not None and halting_condition.monitor not in self.keys:
            raise ValueError(
                f"expected the halting condition to monitor one of {self.keys}. "
                f"Received: monitor={halting_condition.monitor!r}"
            )
        self.n_inputs = len(xs)
        if source is not None:
            rng = model.shuffle_rng if shuffle and source.indexed else None  # a Dataset's batches in a new order
            self.data = SourceData(model, "train", source, batch_converter(model, self.losses, "x", class_weight),
                                   rng)
            batch = self.data.batch
        else:
            batch = min(batch_size, len(train[0]))
            self.data = placed(model, "train", train, batch, shuffle)
        self.validation = None
        if validation is not None:  # placed once for the whole fit
            if val_source is not None:
                val_data = SourceData(model, "val", val_source, batch_converter(model, self.losses, "validation_data"))
            else:
                val_xs, val_ts, val_ws = validation
                val_data = placed(model, "val", step_arrays(val_xs, val_ts, val_ws), min(batch, len(val_xs[0])))
            self.validation = Evaluation(model, self.losses, val_data)
        params = {"epochs": self.epochs, "steps": self.data.steps, "verbose": self.verbose, "metrics": list(self.keys)}
        for callback in self.callbacks:  # as Keras's, before training; a callback may refuse the fit here
            callback.set_model(model)
            callback.set_params(dict(params))

    @staticmethod
    def _sources(x, y, batch_size, validation_data, validation_split, steps, validation_steps,
                 epochs: int) -> tuple[BatchSource | None, BatchSource | None]:
        """fit's batch sources (a Dataset, generator, DataLoader) for x and
        validation_data, or None where they are arrays; the arguments that
        go with them checked."""
        for value, name in ((steps, "steps_per_epoch"), (validation_steps, "validation_steps")):
            if value is not None:
                _checks.positive_int(value, name)
        source = val_source = None
        if is_batch_source(x):
            refuse_with_source(x, y, batch_size)
            if validation_split:
                raise ValueError(f"expected validation_data rather than validation_split with x={type(x).__name__} "
                                 f"(its samples can't be split). Received: validation_split={validation_split}")
            source = BatchSource(x, steps, "x", epochs)
        elif steps is not None:
            raise ValueError("expected steps_per_epoch only with x a Dataset, a generator or a DataLoader "
                             f"(arrays make len(x) / batch_size steps). Received: steps_per_epoch={steps}")
        if is_batch_source(validation_data):
            val_source = BatchSource(validation_data, validation_steps, "validation_data", epochs,
                                     "validation_steps")
        elif validation_steps is not None:
            raise ValueError("expected validation_steps only with validation_data a Dataset, a generator or a "
                             f"DataLoader. Received: validation_steps={validation_steps}")
        return source, val_source

    def run(self) -> History:
        """Train, and return the History."""
        model, data, callbacks = self.model, self.data, self.callbacks
        model.prepare_to_train()
        slots = metric_slots(len(model.outputs), self.metrics)
        step = TrainStep(model, self.losses, self.weights, slots)
        val = self.validation
        hooks = Hooks(callbacks)
        batch_hooks = hooks.has("on_train_batch_begin", "on_train_batch_end")

        def run_epoch(epoch: int, run: Run) -> None:
            if data.shuffling:
                data.shuffle(model.shuffle_rng)
            run.start_epoch(epoch)
            block = run.block(epoch)
            hooked = batch_hooks and not run.replaying  # a readback at each step whose logs a hook reads
            # closed at the end, also when a hook ends the epoch early (a Dataset's on_epoch_end then runs)
            with contextlib.closing(data.epoch()) as views:
                for i, view in enumerate(views):
                    stopper = hooks.call("on_train_batch_begin", i, {}) if hooked else None
                    step.run(data, view, run.metrics, block, i == 0)
                    run.step_done(view[1][0].shape[0])  # the batch's rows: the running metrics' count
                    if hooked:
                        ended = hooks.call("on_train_batch_end", i, run.running_logs, lazy=True)
                        stopper = stopper or ended  # the hook that stopped first is named
                        if model.stop_training:  # as Keras: the step runs, then the epoch ends
                            run.cut_short(stopper)
                            break
            run.n = data.n  # batches from a source: the samples this epoch had
            if not run.n:  # an iterable whose new iterator was empty (a spent stream)
                raise ValueError(f"expected x to give at least one batch each epoch. Received: none in epoch "
                                 f"{epoch + 1} from {type(data.source.x).__name__}")
            if val is not None:
                val.into(run.metrics, block, slots, validation=True,
                         hooks=None if run.replaying else hooks)
                run.n_val = val.data.n
                if not run.n_val:
                    raise ValueError(f"expected validation_data to give at least one batch each epoch. Received: "
                                     f"none in epoch {epoch + 1} from {type(val.data.source.x).__name__}")

        model.stop_training = False
        resumed = None
        for callback in callbacks:
            callback.on_train_begin({})
        for callback in callbacks:  # BackupAndRestore's, once every callback has begun
            resume = getattr(callback, "resume_fit", None)
            resumed = (resume(callbacks) if resume is not None else None) or resumed
        history = None
        if resumed is not None:  # (the epochs done, their History): the fit goes on from there
            self.initial_epoch, history = min(resumed[0], self.epochs), resumed[1]
        n_val = val.data.n if val is not None else 0
        run = Run(model, self.losses, self.weights, slots, data.n, n_val, data.steps, data.batch,
                  range(self.initial_epoch, self.epochs), self.keys, self.verbose, run_epoch)
        if history is not None:
            run.history.epoch, run.history.history = list(history.epoch), {k: list(v) for k, v in
                                                                           history.history.items()}
        model.history = run.history
        # per-epoch readbacks where an epoch's end must be seen; else a few a second
        watch_every_epoch = self.halting is not None or bool(callbacks) or self.verbose == 1
        # batches from a generator or a Dataset cannot be run again (as a rollback replays epochs)
        watch_every_epoch = watch_every_epoch or not data.replayable or (val is not None and not val.data.replayable)
        # divergence is reported once, by the NaN check, not by numpy on the way
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), contextlib.closing(run):
            try:
                for epoch in range(self.initial_epoch, self.epochs):
                    if not data.replayable and not data.source.has_more():
                        ran_out("x", epoch)
                        break
                    if val is not None and not val.data.replayable and not val.data.source.has_more():
                        ran_out("validation_data", epoch)
                        break
                    for callback in callbacks:
                        callback.on_epoch_begin(epoch, {})
                    run_epoch(epoch, run)
                    if watch_every_epoch or epoch == self.epochs - 1 or run.due(epoch):
                        if run.read_epochs(epoch, self.halting, callbacks):
                            break
            except BaseException:  # Ctrl-C, or an error: back to a finished step
                run.abandon()
                raise
        last = {k: v[-1] for k, v in run.history.history.items() if v}
        for callback in callbacks:
            callback.on_train_end(last)
        return run.history
