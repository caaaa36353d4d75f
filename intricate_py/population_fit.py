"""What ``Population.fit`` runs: epochs in blocks, each member's logs, and
the members that stop (diverged, or stopped by EarlyStopping).

The metrics of a block of epochs add up on the device, each epoch in its
own row, and are read once at the block's end, as Model.fit reads them. So
that a member that diverged or stopped inside a block can be put back to
the weights of the right epoch, the weights at the start of each epoch of
the block are kept (device copies, no readback): the block is as long as
that memory allows (``SNAPSHOT_BYTES``), and one epoch where a callback
other than EarlyStopping, or ``verbose``, wants each epoch's logs at once.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from .backends.base import MemberValues
from .callbacks import Callback, EarlyStopping
from .fit_data import DeviceData, Evaluation, Slots, metric_table
from .fitting import TrainStep
from .layers.base import Workspace
from .training import History

if TYPE_CHECKING:
    from .backends.population import PopulationBackend
    from .population import Population

#: the most bytes the weights kept through a block may take
SNAPSHOT_BYTES = 64 << 20
#: the most epochs a block runs
BLOCK_EPOCHS = 64


def keep(backend: "PopulationBackend", src: list, dst: list, members: np.ndarray) -> None:
    """``dst = src`` (lists of arrays) for ``members`` (indices) only."""
    if len(members):
        for a, b in zip(src, dst):
            backend.copy_members(a, b, members)


class MemberData(DeviceData):
    """A fit's arrays, each member taking its batches in its own order: the
    order a model with seed ``seed + i`` draws for member i (fit's
    ``shuffle="members"``), so that every member is its model alone to the
    bit. On the population's ``backend`` (batch ``buffers`` of its
    Workspace), so that the batches and the order are Members; ``rngs``:
    each member's generator."""

    def __init__(self, backend: "PopulationBackend", buffers: Workspace, arrays: list[np.ndarray], batch: int,
                 rngs: list[np.random.Generator]):
        super().__init__(backend, buffers, "members", arrays, batch, shuffle=True)
        self.rngs = rngs

    def shuffle(self, rng: np.random.Generator) -> None:
        """Each member's next order, from its own generator (``rng``, the population's, is not used)."""
        self.backend.write_members(self.index, np.stack([r.permutation(self.n) for r in self.rngs]).astype(np.int32))


class MemberStopping:
    """EarlyStopping's rule (Keras's), applied to each member on its own:
    a member that stops is frozen, at its best epoch's weights with
    ``restore_best_weights``."""

    def __init__(self, rule: EarlyStopping):
        self.rule = rule
        self.upward = rule.mode == "max"
        self.warned = False

    def begin(self, size: int, backend: "PopulationBackend", live: list) -> None:
        self.wait = np.zeros(size, np.int64)
        self.best = np.full(size, np.nan)
        self.best_epoch = np.full(size, -1)
        self.kept = [backend.empty(a.shape) for a in live] if self.rule.restore_best_weights else None

    def _improves(self, value: np.ndarray, reference: np.ndarray) -> np.ndarray:
        delta = self.rule.min_delta
        better = value - delta > reference if self.upward else value + delta < reference
        return np.where(np.isnan(reference), ~np.isnan(value), better)

    def epoch_end(self, epoch: int, logs: dict, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the members that improved, those that stop) at ``epoch``."""
        rule = self.rule
        current = logs.get(rule.monitor)
        if current is None and not self.warned:
            self.warned = True
            warnings.warn(f"{rule!r} monitors {rule.monitor!r}, which is not in the epoch's logs (they hold "
                          f"{sorted(logs)}): it does nothing", RuntimeWarning, stacklevel=2)
        if current is None or epoch < rule.start_from_epoch:
            none = np.zeros_like(active)
            return none, none
        self.wait[active] += 1
        improved = active & self._improves(current, self.best)
        self.best[improved], self.best_epoch[improved] = current[improved], epoch
        beats = improved if rule.baseline is None else \
            improved & self._improves(current, np.full_like(current, rule.baseline))
        self.wait[beats] = 0
        return improved, active & ~improved & (self.wait >= rule.patience) & (epoch > 0)


class Epochs:
    """A population's fit from its first epoch to its last: ``run`` trains
    and returns the History (entries (epochs, size)); ``held_epoch`` then
    says, for each member, the epoch whose weights it holds (-1: those
    from before training)."""

    def __init__(self, population: "Population", step: TrainStep, train, evaluation: Evaluation | None,
                 slots: Slots, losses: list, weights: list[float], n: int, n_val: int, keys: list[str],
                 watchers: list[MemberStopping], others: list[Callback], verbose: int, epochs: int):
        self.population, self.step, self.train, self.evaluation = population, step, train, evaluation
        self.epochs = epochs
        self.slots, self.losses, self.weights, self.n, self.n_val = slots, losses, weights, n, n_val
        self.keys, self.watchers, self.others, self.verbose = keys, watchers, others, verbose
        self.backend = backend = population.backend
        self.size = population.size
        self.live = population.model.store.arrays()
        weight_bytes = sum(a.size for a in self.live) * self.size * np.dtype(backend.dtype).itemsize
        self.block = 1 if others or verbose else max(1, min(BLOCK_EPOCHS, epochs,
                                                            SNAPSHOT_BYTES // max(1, weight_bytes)))
        # the weights at the start of each epoch of a block and of the epoch before it (epoch e's
        # at ring[e % len(ring)]), and those the frozen members hold
        self.ring = [[backend.empty(a.shape) for a in self.live] for _ in range(self.block + 1)]
        self.held = [backend.empty(a.shape) for a in self.live]
        self.acc = backend.zeros((self.block * slots.size,))
        self.frozen = np.zeros(self.size, bool)
        self.held_epoch = np.full(self.size, -1)

    def run(self, rng: np.random.Generator) -> History:
        population, backend, epochs = self.population, self.backend, self.epochs
        for callback in self.others:
            callback.on_train_begin({})
        for watcher in self.watchers:
            watcher.begin(self.size, backend, self.live)
        rows: dict[str, list[np.ndarray]] = {key: [] for key in self.keys}
        history = History(self.keys)
        epoch = 0
        with np.errstate(all="ignore"):  # a diverging member's overflows are its own
            while epoch < epochs and not self.frozen.all() and not population.stop_training:
                count = min(self.block, epochs - epoch)
                self._train(epoch, count, rng)
                logs, went_well, first_ok = self._logs(count)
                done = self._members_stop(epoch, count, logs, went_well, first_ok)
                for key in self.keys:
                    rows[key].append(logs[key][:done])
                history.epoch.extend(range(epoch, epoch + done))
                epoch += done
        for watcher in self.watchers:
            if watcher.kept is not None:  # restore_best_weights: each member's best epoch
                members = np.flatnonzero(watcher.best_epoch >= 0)
                keep(backend, watcher.kept, self.live, members)
                self.held_epoch[members] = watcher.best_epoch[members]
        for callback in self.others:
            callback.on_train_end({})
        if self.frozen.all() and epoch < epochs:
            history.stop_reason = "every member stopped (diverged or stopped by EarlyStopping)"
        elif population.stop_training and epoch < epochs:
            history.stop_reason = "a callback stopped training"
        history.history = {key: np.concatenate(parts) if parts else np.zeros((0, self.size))
                           for key, parts in rows.items()}
        return history

    def _train(self, first: int, count: int, rng: np.random.Generator) -> None:
        """``count`` epochs from ``first``, each one's metrics in its row of the block."""
        backend, step, train, size = self.backend, self.step, self.train, self.slots.size
        backend.clear(self.acc)
        for j in range(count):
            for live, copy in zip(self.live, self._start(first + j)):
                backend.copy(live, copy)
            for callback in self.others:
                callback.on_epoch_begin(first + j, {})
            if train.shuffling:
                train.shuffle(rng)
            for i, batch in enumerate(train.epoch()):
                step.run(train, batch, self.acc, j * size, i == 0)
                backend.end_step()
            if self.evaluation is not None:
                self.evaluation.into(self.acc, j * size, self.slots, validation=True)
            for a in self.live:  # weights NaN or inf, which a loss may not show (TanH makes ±1 of NaN)
                backend.flag_nonfinite(a, self.acc, j * size + self.slots.BAD)

    def _start(self, epoch: int) -> list:
        """The weights at the start of ``epoch`` (of this block, or the one before it)."""
        return self.ring[epoch % len(self.ring)]

    def _logs(self, count: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Each epoch's metrics of the block, (count, size) by name; whether
        each member's epoch went well: a finite loss and finite weights at
        its end (count, size); and whether its first step gave a finite loss
        (count, size): if not, the weights the epoch started from were no
        good already."""
        slots = self.slots
        values = self.backend.to_numpy(self.acc).astype(np.float64)  # (size, block · slots)
        values = values.reshape(self.size, self.block, slots.size)[:, :count].transpose(1, 0, 2)
        weights = [np.tile(w, count) if isinstance(w, MemberValues) else w for w in self.weights]  # rows: epochs
        table = metric_table(self.population.model, values.reshape(count * self.size, -1), self.losses,
                             weights, slots, self.n, self.n_val)
        first = [values[:, :, slots.of(k, slots.FIRST_LOSS)] for k, loss in enumerate(self.losses) if loss is not None]
        logs = {key: np.asarray(v, np.float64).reshape(count, self.size) for key, v in table.items()}
        went_well = np.isfinite(logs["loss"]) & (values[:, :, slots.BAD] == 0)
        return logs, went_well, np.isfinite(np.sum(first, axis=0))

    def _members_stop(self, first: int, count: int, logs: dict[str, np.ndarray], went_well: np.ndarray,
                      first_ok: np.ndarray) -> int:
        """Go through the block's epochs: mark the members that diverged or
        stopped, blank their logs from then on, keep the weights each must
        hold; call the callbacks. Returns the epochs of the block that
        count (fewer where a callback stopped training)."""
        backend, frozen, finite = self.backend, self.frozen, went_well
        if not (self.watchers or self.others or self.verbose) and finite[:, ~frozen].all():
            # nothing to watch and nothing diverged: the whole block at once
            self.held_epoch[~frozen] = first + count - 1
            for key in self.keys:
                logs[key][:, frozen] = np.nan
            keep(backend, self.held, self.live, np.flatnonzero(frozen))
            return count
        for j in range(count):
            epoch = first + j
            active = ~frozen
            good = active & finite[j]
            diverged = active & ~finite[j]
            # a diverged member holds the weights this epoch started from, or those of the epoch
            # before where the first step already failed (as Model.fit goes back)
            keep(backend, self._start(epoch), self.held, np.flatnonzero(diverged & first_ok[j]))
            keep(backend, self._start(max(epoch - 1, 0)), self.held, np.flatnonzero(diverged & ~first_ok[j]))
            self.held_epoch[diverged & ~first_ok[j]] = np.maximum(epoch - 2, -1)
            frozen |= diverged
            self.held_epoch[good] = epoch
            # a member's History ends with the epoch it diverged in (its loss, NaN or inf or with weights
            # that broke, as Keras records it); callbacks, as Model.fit's, never see that epoch
            for key in self.keys:
                logs[key][j] = np.where(active, logs[key][j], np.nan)
            day = {key: np.where(good, logs[key][j], np.nan) for key in self.keys}
            end = self._start(epoch + 1) if j + 1 < count else self.live  # the weights at this epoch's end
            for watcher in self.watchers:
                improved, stops = watcher.epoch_end(epoch, day, good)
                if watcher.kept is not None:
                    keep(backend, end, watcher.kept, np.flatnonzero(improved))
                keep(backend, end, self.held, np.flatnonzero(stops))
                frozen |= stops
                good &= ~stops
            if self.others:  # a block of one epoch: they see the frozen members' weights put back
                keep(backend, self.held, self.live, np.flatnonzero(frozen))
            for callback in self.others:
                callback.on_epoch_end(epoch, day)
            if self.verbose:
                _show(epoch, day, frozen, diverged)
            if self.population.stop_training or frozen.all():
                count = j + 1
                break
        keep(backend, self.held, self.live, np.flatnonzero(frozen))  # the frozen members' weights put back
        return count


def _show(epoch: int, logs: dict, frozen: np.ndarray, diverged: np.ndarray) -> None:
    loss = logs["loss"]
    if np.isnan(loss).all():
        text = f"Epoch {epoch + 1}: no member trains"
    else:
        text = f"Epoch {epoch + 1}: loss min {np.nanmin(loss):.4g}, median {np.nanmedian(loss):.4g}"
    if "val_loss" in logs and not np.isnan(logs["val_loss"]).all():
        text += f"; val_loss min {np.nanmin(logs['val_loss']):.4g}"
    text += f" ({int((~frozen).sum())} training" + (f", {int(diverged.sum())} diverged)" if diverged.any() else ")")
    print(text)


__all__ = ["Epochs", "MemberData", "MemberStopping", "keep"]
