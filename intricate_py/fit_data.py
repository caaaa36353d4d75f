"""The data of fit and evaluate on the device, and the metrics they add up
there: the batches gathered from each input and target, where each loss sum
and correct count goes, and the table of metrics they make once read back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .backends import Array
from .losses import Loss

if TYPE_CHECKING:
    from .model import Model


class Slots(NamedTuple):
    """Where an epoch's metrics go in a block of accumulators: a flag set
    when a parameter is not finite at the epoch's end, then for each output
    its training loss sum and correct count (of the steps but the first),
    those of the first step (kept apart: a finite first step shows that the
    weights the previous epoch left were usable), and the validation's."""

    outputs: int

    BAD = 0
    # each count right after its loss sum: a loss adds into index and index + 1
    LOSS, CORRECT, FIRST_LOSS, FIRST_CORRECT, VAL_LOSS, VAL_CORRECT = range(6)

    @property
    def size(self) -> int:
        return 1 + 6 * self.outputs

    def of(self, k: int, what: int) -> int:
        """The slot of ``what`` (LOSS, CORRECT, ...) for output ``k``."""
        return 1 + 6 * k + what


def metric_slots(outputs: int) -> Slots:
    return Slots(outputs)


def reports_accuracy(model: "Model", losses: list[Loss | None], k: int) -> bool:
    """Whether output ``k``'s accuracy is a metric: always for one output
    (as before graphs), else where its loss classifies."""
    return losses[k] is not None and (len(losses) == 1 or losses[k].classifies)


def metric_keys(model: "Model", losses: list[Loss | None], validation: bool) -> list[str]:
    """The names of the metrics of a fit or evaluation: ``loss`` and
    ``accuracy`` for one output; for several the total ``loss``, then
    ``{output}_loss`` and ``{output}_accuracy``; and their ``val_`` twins."""
    if len(losses) == 1:
        keys = ["loss", "accuracy"]
    else:
        names = model.output_names
        keys = ["loss"] + [f"{names[k]}_loss" for k, loss in enumerate(losses) if loss is not None]
        keys += [f"{names[k]}_accuracy" for k in range(len(losses)) if reports_accuracy(model, losses, k)]
    keys = keys + [f"val_{key}" for key in keys] if validation else keys
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"expected outputs whose metric names differ. Received: outputs {names} give {repeated} "
                         "twice: rename the layer that makes one of them")
    return keys


def accuracy_count(loss: Loss, shape: tuple[int, ...], n: int) -> int:
    """How many predictions n samples of an output of per-sample ``shape``
    make: one an element for a binary accuracy, else one a row of the loss
    (a sample, or a token of a sequence: ``Loss.layout``)."""
    rows, width = loss.layout(shape)
    return n * rows * width if loss.accuracy_kind(math.prod(shape)).startswith("binary") else n * rows


def metric_table(model: "Model", values: np.ndarray, losses: list[Loss | None], weights: list[float],
                 slots: Slots, n: int, n_val: int = 0) -> dict[str, np.ndarray]:
    """Per-epoch metrics (one value per row of ``values``, blocks of
    accumulators) by the names of :meth:`metric_keys`; validation's with
    ``n_val`` samples."""
    table: dict[str, np.ndarray] = {}
    for prefix, count, loss_at, correct_at, extra in (
        ("", n, slots.LOSS, slots.CORRECT, (slots.FIRST_LOSS, slots.FIRST_CORRECT)),
        ("val_", n_val, slots.VAL_LOSS, slots.VAL_CORRECT, None),
    ):
        if not count:
            continue
        total, parts, accuracies = 0.0, {}, {}
        for k, loss in enumerate(losses):
            if loss is None:
                continue
            loss_sum, correct = values[:, slots.of(k, loss_at)], values[:, slots.of(k, correct_at)]
            if extra is not None:
                loss_sum, correct = loss_sum + values[:, slots.of(k, extra[0])], correct + values[:, slots.of(k, extra[1])]
            parts[k] = loss_sum / count
            total = total + weights[k] * parts[k]
            accuracies[k] = correct / accuracy_count(loss, model.outputs[k].shape, count)
        if len(losses) == 1:
            table[prefix + "loss"], table[prefix + "accuracy"] = total, accuracies[0]
            continue
        names = model.output_names
        table[prefix + "loss"] = total
        table.update({f"{prefix}{names[k]}_loss": v for k, v in parts.items()})
        table.update({f"{prefix}{names[k]}_accuracy": accuracies[k] for k in parts
                      if reports_accuracy(model, losses, k)})
    return table


class DeviceData:
    """Arrays of samples (each input's, then each target's) on the device,
    and the batches gathered from them.

    Batch buffers come from the model's plan under the data's ``role``
    ("train", "val", "eval"), so repeated fits reuse them; their views are
    made once, and shuffling rewrites only the row order, so an epoch
    allocates nothing. A single batch that is never shuffled is gathered
    once. Arrays are gathered two at a time (an input and a target in one
    dispatch for a model of one input and one output).
    """

    def __init__(self, model: "Model", role: str, arrays: list[np.ndarray], batch: int, shuffle=False):
        backend = model.backend
        self.backend, self.n, self.batch = backend, len(arrays[0]), batch
        self.sources = [backend.dataset(a) for a in arrays]
        self.order = backend.from_numpy(np.arange(self.n, dtype=np.int32))
        # named by shape too: an output's targets may be class labels in one fit, one-hot rows in the next
        buffers = [model.plan.buffers.get(f"{role}_{k}_{a.shape[1:]}", batch, a.shape[1:])
                   for k, a in enumerate(arrays)]
        # (first row in the order, [each array's rows]) of each batch
        self.views = [(s, [backend.rows(b, 0, min(batch, self.n - s)) for b in buffers])
                      for s in range(0, self.n, batch)]
        self.steps = len(self.views)
        self.shuffling = shuffle and self.steps > 1
        # a single batch that is never shuffled is gathered once, here
        self._gathered = False
        if self.steps == 1 and not self.shuffling:
            self.gather(*self.views[0])
            self._gathered = True

    def shuffle(self, rng: np.random.Generator) -> None:
        self.backend.write(self.order, rng.permutation(self.n).astype(np.int32))

    def gather(self, first: int, arrays: list[Array]) -> None:
        """The batch starting at row ``first`` of the order, into ``arrays``."""
        if self._gathered:
            return
        sources, take = self.sources, self.backend.take_rows
        for k in range(0, len(sources) - 1, 2):
            take(sources[k], self.order, arrays[k], first, sources[k + 1], arrays[k + 1])
        if len(sources) % 2:
            take(sources[-1], self.order, arrays[-1], first)

    def batches(self):
        """Each batch's arrays, gathered."""
        for first, arrays in self.views:
            self.gather(first, arrays)
            yield arrays


class Evaluation:
    """The loss sums and correct counts of a model over fixed data, added
    up on the device: the data (inputs, and targets for the outputs with a
    loss) placed once, evaluated as often as asked (each epoch's validation)."""

    def __init__(self, model: "Model", role: str, xs: list[np.ndarray], ts: list, losses: list[Loss | None],
                 batch: int):
        self.model, self.losses, self.inputs = model, losses, len(xs)
        self.graded = [k for k, t in enumerate(ts) if t is not None]
        self.data = DeviceData(model, role, xs + [ts[k] for k in self.graded], batch)
        self.kinds = {k: losses[k].accuracy_kind(math.prod(model.outputs[k].shape)) for k in self.graded}

    def into(self, acc: Array, block: int, slots: Slots, validation: bool) -> None:
        """Add each output's loss sum and correct count into ``acc``'s block
        starting at ``block``: the LOSS and CORRECT slots, or with
        ``validation`` the VAL_ ones. Always in inference mode."""
        backend, plan = self.model.backend, self.model.plan
        inference = plan.pass_for(training=False)
        at = slots.VAL_LOSS if validation else slots.LOSS
        for arrays in self.data.batches():
            outputs = plan.forward(inference, arrays[: self.inputs], training=False)
            for k, t in zip(self.graded, arrays[self.inputs:]):
                self.losses[k].accumulate(backend, outputs[k], t, acc, block + slots.of(k, at), self.kinds[k])
