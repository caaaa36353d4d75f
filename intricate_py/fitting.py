"""What ``Model.fit`` runs: the training step, the data on the device, and
the bookkeeping of a fit (metrics, readbacks, progress, last good weights).

Metrics stay on the device: each epoch adds its loss sum, correct count
(and the validation's) into a slot of a small ring of accumulators, and a
readback reads the epochs since the last one. The ring's size bounds the
epochs between two readbacks, so memory does not grow with ``epochs``.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from .backends import Array, dropout_key
from .backends.base import step_values
from .layers import Dropout, Layer, chain
from .layers.base import Recordings
from .training import HaltingCondition, History

if TYPE_CHECKING:
    from .callbacks import Callback
    from .model import Model

#: Seconds between metric readbacks while training (progress, NaN checks).
REFRESH_SECONDS = 0.25
#: Accumulators an epoch: loss sum and correct count of its steps but the
#: first, the validation's, a flag set when a parameter is not finite at its
#: end, and the first step's loss sum and correct count (kept apart: a finite
#: first step shows that the weights the previous epoch left were usable).
SLOTS = 7
LOSS, CORRECT, VAL_LOSS, VAL_CORRECT, BAD_PARAMETERS, FIRST_LOSS, FIRST_CORRECT = range(SLOTS)
#: Epochs of metrics the device holds; a fit reads them back at least this often.
RING = 256


class StepPlan:
    """One training step, with what does not change between steps worked
    out once: the loss kind and whether it fuses with the last layer, the
    layers to back-propagate through, the accuracy kind.

    On a backend that records (the GPU), the first step of each batch size
    runs the layers' code while the backend records its dispatches; later
    steps replay that recording, with the values that change from step to
    step (the batch's first row, the metrics slot, the optimizer's scalars,
    Dropout's keys) written into their parameters, and run no layer code.
    """

    def __init__(self, model: "Model"):
        self.model, self.backend, self.loss = model, model.backend, model.loss
        self.kind, fused = self.loss.step_kind(model.layers[-1])
        # a fused loss takes the last layer's input and does that layer's work
        self.chain = chain.links(model.layers[:-1] if fused else model.layers)
        self.accuracy = self.loss.accuracy_kind(model.output_shape[0])
        # layers that draw from the step (Dropout); none in most models
        self.dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
        stepped = [layer for layer in model.layers if type(layer).begin_step is not Layer.begin_step]
        # a custom layer may do per-step work no recording sees
        self.replayable = all(type(layer).__module__.startswith("intricate_py.") for layer in model.layers) \
            and all(isinstance(layer, Dropout) for layer in stepped)
        self.recordings = Recordings()  # by batch rows
        self.optimizer_values = tuple(model.optimizer.step_values())  # their names

    def values(self, first: int, index: int) -> dict[str, float | int]:
        """What changes from step to step, by the names the operations' arguments take."""
        optimizer = self.model.optimizer
        values = {"first": first, "index": index, **optimizer.step_values()}
        for i, layer in enumerate(self.dropouts):
            values[f"key{i}"] = dropout_key(layer.seed, optimizer.iterations)
        return values

    def train_step(self, data: "DeviceData", batch: tuple, metrics: Array, index: int) -> None:
        """One step on ``batch`` (first row, samples, targets) of ``data``,
        adding its loss and correct count into ``metrics[index]`` and
        ``metrics[index + 1]``."""
        if not (self.replayable and self.backend.records):  # numpy: the layers every step
            self._run(data, batch, metrics, index, None)
            return
        values = self.values(batch[0], index)
        rows = batch[1].shape[0]
        recording = self.recordings.get(rows)
        if recording is not None:
            self.backend.replay(recording, values)
            self._begin_step(values)  # the host's part of a step
            self.model.optimizer.iterations += 1
            return
        with self.backend.record() as recording:
            self._run(data, batch, metrics, index, step_values(values))
        if recording.complete:
            self.recordings.put(rows, recording)

    def _begin_step(self, values: dict | None) -> None:
        step = self.model.optimizer.iterations
        for i, layer in enumerate(self.dropouts):
            layer.begin_step(step, None if values is None else values[f"key{i}"])

    def _run(self, data: "DeviceData", batch: tuple, metrics: Array, index: int, values: dict | None) -> None:
        """The step, layer by layer; ``values`` (those of :meth:`values`,
        marked for a recording) or None, each part then computing its own."""
        model, backend, loss = self.model, self.backend, self.loss
        first, x, t = batch
        if values is not None:
            first, index = values["first"], values["index"]
        data.gather(first, x, t)
        self._begin_step(values)
        p = chain.forward(self.chain, x)
        g = model._workspace.get("grad", p.shape[0], p.shape[1:])
        loss.train_step(backend, self.kind, p, t, metrics, index, self.accuracy, g)
        chain.back_propagate(self.chain, g)
        model.optimizer.step(None if values is None else {k: values[k] for k in self.optimizer_values})


class DeviceData:
    """Samples and targets on the device, and the batches gathered from them.

    Batch buffers come from the model's workspace under the data's ``role``
    ("train", "val", "eval"), so repeated fits reuse them; their views are
    made once, and shuffling rewrites only the row order, so an epoch
    allocates nothing. A single batch that is never shuffled is gathered once.
    """

    def __init__(self, model: "Model", role: str, x: np.ndarray, t: np.ndarray, batch: int, shuffle=False):
        backend = model.backend
        self.backend, self.n, self.batch = backend, len(x), batch
        self.x, self.t = backend.dataset(x), backend.dataset(t)
        self.order = backend.from_numpy(np.arange(self.n, dtype=np.int32))
        xb = model._workspace.get(role + "_x", batch, x.shape[1:])
        tb = model._workspace.get(role + "_t", batch, t.shape[1:])
        # (first row in the order, samples, targets) of each batch
        self.views = [
            (s, backend.rows(xb, 0, min(batch, self.n - s)), backend.rows(tb, 0, min(batch, self.n - s)))
            for s in range(0, self.n, batch)
        ]
        self.steps = len(self.views)
        self.shuffling = shuffle and self.steps > 1
        # a single batch that is never shuffled is gathered once, here
        self._gathered = self.steps == 1 and not self.shuffling
        if self._gathered:
            _, xb0, tb0 = self.views[0]
            self.backend.take_rows(self.x, self.order, xb0, 0, self.t, tb0)

    def shuffle(self, rng: np.random.Generator) -> None:
        self.backend.write(self.order, rng.permutation(self.n).astype(np.int32))

    def gather(self, first: int, xb, tb) -> None:
        """Samples and targets of the batch starting at row ``first`` of the order."""
        if not self._gathered:
            self.backend.take_rows(self.x, self.order, xb, first, self.t, tb)

    def batches(self):
        """(samples, targets) of each batch, gathered."""
        for first, xb, tb in self.views:
            self.gather(first, xb, tb)
            yield xb, tb


class _Save(NamedTuple):
    """Device copies of the weights and optimizer state, and the host state
    that goes with them, after epoch ``upto - 1``."""

    arrays: list
    upto: int
    iterations: int
    rng: dict


class Run:
    """The bookkeeping of one fit: metric accumulators on the device, their
    readback, progress bars, history, and the last good weights.

    Saves: at each readback that finds every epoch finite, the weights,
    optimizer state and shuffling state are copied on the device into one of
    three sets of buffers; the two newest saves are kept. A save becomes
    current in one assignment, so whatever interrupts a fit, :meth:`abandon`
    goes back to a complete one.

    Divergence: an epoch is good when its loss and the weights it leaves are
    finite. When epoch b is not, the weights kept are those of the end of
    epoch b - 1 if b's first step (which used them) gave a finite loss, else
    those of the end of epoch b - 2: weights kept have given a finite loss.
    """

    def __init__(self, model: "Model", data: DeviceData, val, epochs: int, keys, verbose,
                 run_epoch: Callable[[int, "Run"], None]):
        self.model, self.backend = model, model.backend
        self.n, self.n_val = data.n, (val.n if val is not None else 0)
        self.steps, self.batch = data.steps, data.batch
        self.epochs, self.run_epoch = epochs, run_epoch
        self.metrics = self.backend.zeros((RING * SLOTS,))
        self.history = History(keys)
        self.read_upto = 0  # epochs [0, read_upto) are in the history
        self.last_read = time.perf_counter()
        self.verbose = int(verbose)
        self.bar = None
        if self.verbose == 2:
            self.bar = tqdm(total=epochs, unit="epoch", dynamic_ncols=True)
        self.live = [p.value for p in model._trained_parameters()] + model.optimizer.state_arrays()
        self._sets = [[self.backend.empty(a.shape) for a in self.live] for _ in range(3)]
        self.saves = [self._save_into(self._sets[0], 0)]  # the newest last

    # ------------------------------------------------------------- saving
    def _save_into(self, arrays: list, upto: int) -> _Save:
        """Copy the live state into ``arrays`` (recorded: on the GPU the copies
        run with the next submission) and describe it as the state after
        ``upto`` epochs."""
        for a, s in zip(self.live, arrays):
            self.backend.copy(a, s)
        model = self.model
        return _Save(arrays, upto, model.optimizer.iterations,
                     copy.deepcopy(model._shuffle_rng.bit_generator.state))

    def _restore(self, save: _Save) -> None:
        for a, s in zip(self.live, save.arrays):
            self.backend.copy(s, a)
        self.model.optimizer.iterations = save.iterations
        self.model._shuffle_rng.bit_generator.state = copy.deepcopy(save.rng)

    def abandon(self) -> None:
        """After an interrupt or an error: go back to the last save (the
        end of a finished step). Work recorded and not yet started runs
        first (a part of a step changes nothing the save does not restore);
        work that cannot be submitted is dropped."""
        try:
            self.backend.flush()
        except Exception:
            self.backend.discard()
        self._restore(self.saves[-1])
        self.backend.flush()

    def _restore_upto(self, upto: int) -> None:
        """Back to the state after ``upto`` epochs: restore the newest save
        at or before it, then replay (training is deterministic) the epochs
        since, which the readbacks found finite."""
        save = next(s for s in reversed(self.saves) if s.upto <= upto)
        self._restore(save)
        verbose, self.verbose = self.verbose, 0
        for epoch in range(save.upto, upto):
            self.run_epoch(epoch, self)
        self.verbose = verbose

    # ------------------------------------------------------------- epochs
    @staticmethod
    def slot(epoch: int) -> int:
        """The first accumulator of ``epoch``."""
        return (epoch % RING) * SLOTS

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        if self.verbose == 1:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(
                total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                dynamic_ncols=True,
            )

    def step_done(self) -> None:
        self.backend.end_step()
        self.step += 1
        if self.verbose == 1:
            self.bar.update(1)
            if self.step < self.steps and self._refresh_due():
                self._show_running()

    def _refresh_due(self) -> bool:
        return time.perf_counter() - self.last_read >= REFRESH_SECONDS

    def due(self, epoch: int) -> bool:
        """Whether the epochs up to ``epoch`` must be read now: a few times
        a second, or before the ring of accumulators wraps."""
        return self._refresh_due() or epoch + 1 - self.read_upto >= RING

    def _show_running(self) -> None:
        """Running loss and accuracy of the epoch so far on the bar."""
        self.last_read = time.perf_counter()
        slot = self.slot(self.epoch)
        sums = self.backend.to_numpy(self.backend.rows(self.metrics, slot, slot + SLOTS))
        loss_sum, correct = sums[LOSS] + sums[FIRST_LOSS], sums[CORRECT] + sums[FIRST_CORRECT]
        seen = min(self.step * self.batch, self.n)
        model = self.model
        self.bar.set_postfix({"loss": float(loss_sum) / seen,
                              "accuracy": float(correct) / model._accuracy_count(model.loss, seen)},
                             refresh=False)

    # ------------------------------------------------------------- reading
    def _read_metrics(self, start: int, epoch: int) -> np.ndarray:
        """The accumulators of epochs start..epoch as rows of SLOTS, whose
        slots are then cleared for the epochs that take them next.

        The weights are checked only here, at the end of the last epoch
        read: a parameter that went NaN or inf in an earlier epoch made the
        loss of every epoch after it NaN."""
        backend, metrics = self.backend, self.metrics
        flat = self.model._flat
        if flat is not None:
            backend.flag_nonfinite(flat.value, metrics, self.slot(epoch) + BAD_PARAMETERS)
        first, last = self.slot(start), self.slot(epoch) + SLOTS
        if first < last:
            values = backend.to_numpy(backend.rows(metrics, first, last))
            backend.clear(backend.rows(metrics, first, last))
        else:  # the ring wrapped: read it whole and put the epochs in order
            ring = backend.to_numpy(metrics)
            values = np.concatenate([ring[first:], ring[:last]])
            backend.clear(metrics)
        return values.astype(np.float64).reshape(-1, SLOTS)

    def read_epochs(self, epoch: int, halting: HaltingCondition | None, callbacks: "list[Callback]") -> bool:
        """Read the metrics of the epochs up to ``epoch``; True stops training."""
        self.last_read = time.perf_counter()
        start = self.read_upto
        # the state at the end of `epoch`, copied by the readback's submission;
        # it becomes the newest save if every epoch read is good
        used = [save.arrays for save in self.saves]
        spare = next(arrays for arrays in self._sets if not any(arrays is u for u in used))
        candidate = self._save_into(spare, epoch + 1)
        values = self._read_metrics(start, epoch)
        table = self._table(values)
        good_epochs = np.isfinite(table["loss"]) & (values[:, BAD_PARAMETERS] == 0)
        good = len(good_epochs) if good_epochs.all() else int(np.argmin(good_epochs))
        if good < len(good_epochs):
            candidate = None
        if halting is None and not callbacks:  # nothing looks at single epochs: record them at once
            self.history.extend(range(start, start + good), {k: v[:good] for k, v in table.items()})
            self.read_upto = start + good
            if good:
                self._show(start + good - 1, {k: float(v[good - 1]) for k, v in table.items()})
        else:
            for i in range(good):
                e, logs = start + i, {k: float(v[i]) for k, v in table.items()}
                self.history.append(e, logs)
                self.read_upto = e + 1
                if candidate is not None and e == epoch:
                    self._keep(candidate)
                self._show(e, logs)
                if halting is not None and halting.reached(logs):
                    return self._stop(e, f"{halting!r} reached at epoch {e + 1}")
                stopper = None
                for callback in callbacks:  # every callback sees the epoch, as in Keras
                    callback.on_epoch_end(e, logs)
                    if self.model.stop_training and stopper is None:
                        stopper = callback
                if self.model.stop_training:
                    who = repr(stopper) if stopper is not None else "model.stop_training = True"
                    return self._stop(e, f"{who} stopped training at epoch {e + 1}")
        if good < len(good_epochs):
            bad = start + good
            first_step_ok = bool(np.isfinite(values[good, FIRST_LOSS]))
            self._diverged(bad, float(table["loss"][good]), first_step_ok)
            return True
        if candidate is not None:
            self._keep(candidate)
        return False

    def _keep(self, save: _Save) -> None:
        if self.saves[-1] is not save:
            self.saves = [self.saves[-1], save]  # one assignment

    def _table(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Per-epoch metrics from rows of accumulators."""
        model = self.model
        loss, correct = values[:, LOSS] + values[:, FIRST_LOSS], values[:, CORRECT] + values[:, FIRST_CORRECT]
        table = {"loss": loss / self.n, "accuracy": correct / model._accuracy_count(model.loss, self.n)}
        if self.n_val:
            table["val_loss"] = values[:, VAL_LOSS] / self.n_val
            table["val_accuracy"] = values[:, VAL_CORRECT] / model._accuracy_count(model.loss, self.n_val)
        return table

    def _show(self, epoch: int, logs: dict[str, float]) -> None:
        if self.bar is None:
            return
        # tqdm redraws at most every mininterval, on update or close
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
        if self.verbose == 2:
            self.bar.update(epoch + 1 - self.bar.n)

    def _stop(self, epoch: int, reason: str) -> bool:
        if epoch + 1 < self.epochs:
            self.history.stop_reason = reason
        return True

    def _diverged(self, epoch: int, loss: float, first_step_ok: bool) -> None:
        """Warn that epoch ``epoch`` (counted from 0) diverged, and go back
        to the last state that gave a finite loss."""
        upto = epoch if first_step_ok else max(epoch - 1, 0)
        self._restore_upto(upto)
        kept = f"the weights from the end of epoch {upto}" if upto else "the weights from before training"
        what = f"the loss became {loss}" if not np.isfinite(loss) else "the weights became NaN or inf"
        lr = self.model.optimizer.current_learning_rate()
        message = (
            f"{what} in epoch {epoch + 1}, so training stopped and {kept} "
            f"were kept. The learning rate ({lr:g}) is probably too large: try a smaller one "
            "(for example a tenth of it), or scale the inputs to small values."
        )
        self.history.stop_reason = message
        warnings.warn(message, RuntimeWarning, stacklevel=4)  # at the fit call

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
