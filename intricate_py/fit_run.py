"""The bookkeeping of one fit: metric accumulators on the device, their
readback, progress bars, history, and the last good weights.

Metrics stay on the device: each epoch adds its loss sums, correct counts
(and the validation's) into a block of a small ring of accumulators, and a
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

from .fit_data import Slots, metric_table
from .losses import Loss
from .training import HaltingCondition, History

if TYPE_CHECKING:
    from .callbacks import Callback
    from .model import Model

#: Seconds between metric readbacks while training (progress, NaN checks).
REFRESH_SECONDS = 0.25
#: Epochs of metrics the device holds; a fit reads them back at least this often.
RING = 256


class _Save(NamedTuple):
    """Device copies of the weights, state and optimizer state, and the host
    state that goes with them, after epoch ``upto - 1``."""

    arrays: list
    upto: int
    iterations: int
    rng: dict


class Run:
    """The bookkeeping of one fit.

    Saves: at each readback that finds every epoch finite, the weights,
    state, optimizer state and shuffling state are copied on the device into
    one of three sets of buffers; the two newest saves are kept. A save
    becomes current in one assignment, so whatever interrupts a fit,
    :meth:`abandon` goes back to a complete one.

    Divergence: an epoch is good when its loss and the weights it leaves are
    finite. When epoch b is not, the weights kept are those of the end of
    epoch b - 1 if b's first step (which used them) gave a finite loss, else
    those of the end of epoch b - 2: weights kept have given a finite loss.
    The History gets epoch b's metrics (a NaN or inf loss), its callbacks do
    not (its weights are gone).

    Epochs are numbered over the whole training, as Keras's: ``epochs``
    runs from the fit's initial epoch to the number of the last.
    """

    def __init__(self, model: "Model", losses: list[Loss | None], weights: list[float], slots: Slots,
                 n: int, n_val: int, steps: int, batch: int, epochs: range, keys: list[str], verbose: int,
                 run_epoch: Callable[[int, "Run"], None]):
        self.model, self.backend = model, model.backend
        self.losses, self.weights, self.slots = losses, weights, slots
        self.n, self.n_val, self.steps, self.batch = n, n_val, steps, batch
        self.initial_epoch, self.epochs, self.run_epoch = epochs.start, epochs.stop, run_epoch
        self.metrics = self.backend.zeros((RING * slots.size,))
        self.history = History(keys)
        self.read_upto = self.initial_epoch  # epochs [initial_epoch, read_upto) are in the history
        self.last_read = time.perf_counter()
        self.verbose = int(verbose)
        self.bar = None
        if self.verbose == 2:
            self.bar = tqdm(total=self.epochs, initial=self.initial_epoch, unit="epoch", dynamic_ncols=True)
        self.live = model.store.arrays() + model.optimizer.state_arrays()
        #: True while epochs are replayed (after a divergence): no callback sees them
        self.replaying = False
        #: (epoch, samples) of an epoch that a batch hook stopped before its end
        self.cut: tuple[int, int] | None = None
        #: the callback whose batch hook set model.stop_training
        self.stopper: "Callback | None" = None
        self._sets = [[self.backend.empty(a.shape) for a in self.live] for _ in range(3)]
        self.saves = [self._save_into(self._sets[0], self.initial_epoch)]  # the newest last

    # ------------------------------------------------------------- saving
    def _save_into(self, arrays: list, upto: int) -> _Save:
        """Copy the live state into ``arrays`` (recorded: on the GPU the copies
        run with the next submission) and describe it as the state after
        ``upto`` epochs."""
        for a, s in zip(self.live, arrays):
            self.backend.copy(a, s)
        model = self.model
        return _Save(arrays, upto, model.optimizer.iterations, copy.deepcopy(model.shuffle_state))

    def _restore(self, save: _Save) -> None:
        for a, s in zip(self.live, save.arrays):
            self.backend.copy(s, a)
        self.model.optimizer.iterations = save.iterations
        self.model.shuffle_state = copy.deepcopy(save.rng)

    def abandon(self) -> None:
        """After an interrupt or an error: go back to the last save (the
        end of a finished step). Work recorded and not yet started runs
        first (a part of a step changes nothing the save does not restore);
        work that cannot be submitted is dropped by the failed submission
        itself (never by discard(), which would drop what other threads'
        models have recorded since)."""
        try:
            self.backend.flush()
        except Exception:  # noqa: BLE001 - the error that stopped the fit is the one raised
            pass
        self._restore(self.saves[-1])
        self.backend.flush()

    def _first_broken(self, start: int, stop: int) -> int | None:
        """The first of epochs start..stop-1 (read back with finite losses)
        that left a weight NaN or inf, found by replaying them from the
        newest save and checking the weights after each (only after a
        divergence). A network can hide a NaN weight from its loss (on the
        GPU, TanH may make ±1 of NaN), so finite losses alone do not show
        that the weights were. None if every one left finite weights."""
        save = next(s for s in reversed(self.saves) if s.upto <= start)
        self._restore(save)
        verbose, self.verbose, self.replaying = self.verbose, 0, True
        try:
            for epoch in range(save.upto, stop):
                self.run_epoch(epoch, self)
                if epoch >= start and self._weights_broken(epoch):
                    return epoch
        finally:
            self.verbose, self.replaying = verbose, False
        return None

    def _weights_broken(self, epoch: int) -> bool:
        """Whether a weight is NaN or inf now, at the end of ``epoch`` (its
        accumulators, which this reads, are cleared)."""
        backend, block = self.backend, self.block(epoch)
        for a in self.model.store.arrays():
            backend.flag_nonfinite(a, self.metrics, block + Slots.BAD)
        rows = backend.rows(self.metrics, block, block + self.slots.size)
        flag = backend.to_numpy(rows)[Slots.BAD]
        backend.clear(rows)
        return bool(flag)

    def _restore_upto(self, upto: int) -> None:
        """Back to the state after ``upto`` epochs: restore the newest save
        at or before it, then replay (training is deterministic) the epochs
        since, which the readbacks found finite."""
        save = next(s for s in reversed(self.saves) if s.upto <= upto)
        self._restore(save)
        verbose, self.verbose, self.replaying = self.verbose, 0, True
        for epoch in range(save.upto, upto):
            self.run_epoch(epoch, self)
        self.verbose, self.replaying = verbose, False

    # ------------------------------------------------------------- epochs
    def block(self, epoch: int) -> int:
        """The first accumulator of ``epoch``."""
        return (epoch % RING) * self.slots.size

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.step, self.samples = epoch, 0, 0
        if self.verbose == 1:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(
                total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                dynamic_ncols=True,
            )

    def step_done(self, rows: int) -> None:
        """A step of ``rows`` samples has run."""
        self.backend.end_step()
        self.step += 1
        self.samples += rows
        if self.verbose == 1:
            self.bar.update(1)
            if (self.steps is None or self.step < self.steps) and self._refresh_due():  # None: a generator's
                self._show_running()

    def _refresh_due(self) -> bool:
        return time.perf_counter() - self.last_read >= REFRESH_SECONDS

    def due(self, epoch: int) -> bool:
        """Whether the epochs up to ``epoch`` must be read now: a few times
        a second, or before the ring of accumulators wraps."""
        return self._refresh_due() or epoch + 1 - self.read_upto >= RING

    def _show_running(self) -> None:
        """Running metrics of the epoch so far on the bar."""
        self.bar.set_postfix(self.running_logs(), refresh=False)

    def running_logs(self) -> dict[str, float]:
        """The metrics of the epoch so far (its steps up to the last one
        run), read back: the progress bar's, and the logs of the batch hooks."""
        self.last_read = time.perf_counter()
        block = self.block(self.epoch)
        sums = self.backend.to_numpy(self.backend.rows(self.metrics, block, block + self.slots.size))
        table = metric_table(self.model, sums.astype(np.float64)[None], self.losses, self.weights, self.slots,
                             self.seen())
        return {k: float(v[0]) for k, v in table.items()}

    def seen(self) -> int:
        """The samples of the current epoch's steps so far (counted: a
        source's batches may have any sizes)."""
        return self.samples

    def cut_short(self, stopper: "Callback | None") -> None:
        """The current epoch ends here: a batch hook (of ``stopper``) set
        ``model.stop_training``; its metrics are those of its steps so far."""
        self.cut, self.stopper = (self.epoch, self.seen()), stopper

    # ------------------------------------------------------------- reading
    def _read_metrics(self, start: int, epoch: int) -> np.ndarray:
        """The accumulators of epochs start..epoch as rows of blocks, whose
        slots are then cleared for the epochs that take them next.

        The weights are checked only here, at the end of the last epoch
        read: a parameter that went NaN or inf in an earlier epoch made the
        loss of every epoch after it NaN."""
        backend, metrics = self.backend, self.metrics
        for a in self.model.store.arrays():
            backend.flag_nonfinite(a, metrics, self.block(epoch) + Slots.BAD)
        first, last = self.block(start), self.block(epoch) + self.slots.size
        if first < last:
            values = backend.to_numpy(backend.rows(metrics, first, last))
            backend.clear(backend.rows(metrics, first, last))
        else:  # the ring wrapped: read it whole and put the epochs in order
            ring = backend.to_numpy(metrics)
            values = np.concatenate([ring[first:], ring[:last]])
            backend.clear(metrics)
        return values.astype(np.float64).reshape(-1, self.slots.size)

    def table(self, values: np.ndarray, start: int) -> dict[str, np.ndarray]:
        """The metrics of the epochs from ``start`` whose accumulators are ``values``."""
        table = metric_table(self.model, values, self.losses, self.weights, self.slots, self.n, self.n_val)
        if self.cut is not None and 0 <= self.cut[0] - start < len(values):  # an epoch ended early
            i, seen = self.cut[0] - start, self.cut[1]
            part = metric_table(self.model, values[i : i + 1], self.losses, self.weights, self.slots, seen,
                                self.n_val)
            for key, column in table.items():
                column[i] = part[key][0]
        return table

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
        table = self.table(values, start)
        good_epochs = np.isfinite(table["loss"]) & (values[:, Slots.BAD] == 0)
        good = len(good_epochs) if good_epochs.all() else int(np.argmin(good_epochs))
        if good < len(good_epochs):
            candidate = None
            if good:  # the weights were checked at the last epoch read only: find the first that broke them
                broke = self._first_broken(start, start + good)
                if broke is not None:
                    good = broke - start
                    good_epochs[good] = False
        if halting is None and not callbacks:  # nothing looks at single epochs: record them at once
            self.history.extend(range(start, start + good), {k: v[:good] for k, v in table.items()})
            self.read_upto = start + good
            if good:
                self._show(start + good - 1, {k: float(v[good - 1]) for k, v in table.items()})
        else:
            for i in range(good):
                e, logs = start + i, {k: float(v[i]) for k, v in table.items()}
                if self._epoch_end(e, logs, candidate if e == epoch else None, halting, callbacks):
                    return True
        if good < len(good_epochs):
            first_step_ok = all(np.isfinite(values[good, self.slots.of(k, Slots.FIRST_LOSS)])
                                for k, loss in enumerate(self.losses) if loss is not None)
            # the History ends with the epoch that diverged, as Keras records the NaN
            self.history.append(start + good, {k: float(v[good]) for k, v in table.items()})
            self._diverged(start + good, float(table["loss"][good]), first_step_ok)
            return True
        if candidate is not None:
            self._keep(candidate)
        return False

    def _epoch_end(self, e: int, logs: dict[str, float], save: _Save | None, halting: HaltingCondition | None,
                   callbacks: "list[Callback]") -> bool:
        """Epoch ``e`` read back and good: its state kept (``save``, when it
        is the state at its end), the History, the bar, every callback (as
        in Keras, each sees the epoch, also the one a halting condition stops
        at), BackupAndRestore's ``backup_epoch`` after all of them (the state
        they leave, whatever their order), then the stopping rules; True
        stops training."""
        self.history.append(e, logs)
        self.read_upto = e + 1
        if save is not None:
            self._keep(save)
        self._show(e, logs)
        reported = set(logs)
        stopper = self.stopper
        for callback in callbacks:
            was_stopping = self.model.stop_training
            callback.on_epoch_end(e, logs)
            if self.model.stop_training and not was_stopping and stopper is None:
                stopper = callback  # the one that set it, not one that ran after
        added = {k: v for k, v in logs.items() if k not in reported}
        if added:  # what callbacks put in the logs (LearningRateScheduler's learning_rate), as Keras's History
            self.history.add(added)
        for callback in callbacks:  # BackupAndRestore's backup: once every callback has ended the epoch
            backup = getattr(callback, "backup_epoch", None)
            if backup is not None:
                backup(e, logs)
        if halting is not None and halting.reached(logs):
            return self._stop(e, f"{halting!r} reached at epoch {e + 1}")
        if self.model.stop_training:
            who = repr(stopper) if stopper is not None else "model.stop_training = True"
            return self._stop(e, f"{who} stopped training at epoch {e + 1}")
        return False

    def _keep(self, save: _Save) -> None:
        if self.saves[-1] is not save:
            self.saves = [self.saves[-1], save]  # one assignment

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
        upto = epoch if first_step_ok else max(epoch - 1, self.initial_epoch)
        advice = self._advice()  # the rates of the steps that diverged, before going back
        self._restore_upto(upto)
        kept = f"the weights from the end of epoch {upto}" if upto else "the weights from before training"
        what = f"the loss became {loss}" if not np.isfinite(loss) else "the weights became NaN or inf"
        message = f"{what} in epoch {epoch + 1}, so training stopped and {kept} were kept. {advice}"
        self.history.stop_reason = message
        warnings.warn(message, RuntimeWarning, stacklevel=5)  # at the fit call

    def _advice(self) -> str:
        """What probably made training diverge: the learning rate, or the
        weight decay when a step's decay (rate × decay) alone is above 1."""
        optimizer = self.model.optimizer
        lr = optimizer.current_learning_rate()
        decay = optimizer.weight_decay
        rate = f"{lr:g}"
        if not isinstance(optimizer.learning_rate, float):
            rate += f", from {optimizer.learning_rate!r} at step {optimizer.iterations}"
        if decay and lr * decay > 1:
            return (f"The weight decay ({decay:g}) is probably too large for the learning rate ({rate}): "
                    "try a much smaller one (rate × decay well below 1).")
        return (f"The learning rate ({rate}) is probably too large: try a smaller one "
                "(for example a tenth of it), or scale the inputs to small values.")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
