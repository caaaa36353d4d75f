"""The data of fit and evaluate on the device, and the metrics they add up
there: the batches gathered from each input and target, where each loss sum
and correct count goes, and the table of metrics they make once read back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .backends import Array, Backend
from .callbacks import TEST_HOOKS
from .data import ChunkedData, GatheredData, streams
from .losses import Loss
from .metrics import LossAccuracy, Metric
from .metrics import get as get_metric
from .layers.base import Workspace

if TYPE_CHECKING:
    from .callbacks import Hooks
    from .model import Model


class Slots(NamedTuple):
    """Where an epoch's metrics go in a block of accumulators: a flag set
    when a parameter is not finite at the epoch's end, then for each output
    its training loss sum and correct count (of the steps but the first),
    those of the first step (kept apart: a finite first step shows that the
    weights the previous epoch left were usable), and the validation's;
    then the accumulators of the metrics asked for (intricate_py.metrics),
    in three regions of ``metric_size`` each: training, first step,
    validation (or an evaluation's, in the training one)."""

    outputs: int
    #: the metrics asked for (:func:`bind_metrics`), or None for the default (the loss's accuracy where it classifies)
    metrics: "tuple[Bound, ...] | None" = None

    BAD = 0
    # each count right after its loss sum: a loss adds into index and index + 1
    LOSS, CORRECT, FIRST_LOSS, FIRST_CORRECT, VAL_LOSS, VAL_CORRECT = range(6)

    @property
    def metric_size(self) -> int:
        """The accumulators the metrics take in each of the three regions (training, first step, validation)."""
        return sum(b.size for b in self.metrics or ())

    @property
    def size(self) -> int:
        return 1 + 6 * self.outputs + 3 * self.metric_size

    def of(self, k: int, what: int) -> int:
        """The slot of ``what`` (LOSS, CORRECT, ...) for output ``k``."""
        return 1 + 6 * k + what

    def metric_at(self, what: int) -> int:
        """The first slot of the metrics' region of ``what`` (LOSS, FIRST_LOSS or VAL_LOSS): a metric's
        accumulators are from there plus its ``Bound.offset``."""
        return 1 + 6 * self.outputs + (what // 2) * self.metric_size


class Bound(NamedTuple):
    """A metric of a fit or evaluation: its output, its name in the logs
    (``{output}_`` added for several outputs), the metric, the output's
    columns, and its accumulators: ``size`` from ``offset`` in a region."""

    output: int
    key: str
    metric: Metric
    cols: int
    offset: int
    size: int


def metric_slots(outputs: int, metrics: "tuple[Bound, ...] | None" = None) -> Slots:
    return Slots(outputs, metrics)


def bind_metrics(model: "Model", losses: list[Loss | None], spec=None) -> tuple[Bound, ...] | None:
    """The metrics ``spec`` asks for (compile's or fit's ``metrics``), per
    output as Keras takes them: for one output a list (or one metric); for
    several a list with an entry per output (a list, or None) or a dict by
    output name (a metric or a list each), or a flat list of metrics, which
    every output with a loss reports. None (nothing asked): the default, the
    loss's accuracy where the loss classifies."""
    if spec is None:
        return None
    names = model.output_names
    several = len(losses) > 1
    if isinstance(spec, dict):
        unknown = [key for key in spec if key not in names]
        if unknown:
            raise ValueError(f"expected metrics by output name, of {names}. Received: {unknown}")
        per_output = [spec.get(name) for name in names]
    elif isinstance(spec, (list, tuple)) and several and not any(e is None or isinstance(e, (list, tuple, dict))
                                                                  for e in spec):
        # a flat list for several outputs: each metric for every output with a loss (as Keras 2 took it)
        per_output = [list(spec) if loss is not None else None for loss in losses]
    elif isinstance(spec, (list, tuple)) and several:
        if len(spec) != len(losses):
            raise ValueError(
                f"expected metrics with an entry per output ({len(losses)}: {names}), each a metric, a list of "
                f"them or None, or a dict by output name, as Keras takes them. Received: metrics={spec!r}")
        per_output = list(spec)
    else:
        per_output = [spec]
    bound, offset = [], 0
    for k, entries in enumerate(per_output):
        if entries is None:
            continue
        entries = list(entries) if isinstance(entries, (list, tuple)) else [entries]
        for entry in entries:
            if entry is None:
                continue
            name, metric = get_metric(entry)
            if losses[k] is None:
                raise ValueError(f"expected metrics only for outputs with a loss (their targets). Received: "
                                 f"{name!r} for the output {names[k]!r}, which has none")
            shape = model.outputs[k].shape
            cols = shape[-1] if shape else 1
            metric.check(cols, names[k])
            key = f"{names[k]}_{name}" if several else name
            bound.append(Bound(k, key, metric, cols, offset, metric.size(cols)))
            offset += bound[-1].size
    metric_keys(model, losses, False, tuple(bound))  # ValueError for a name given twice
    return tuple(bound)


def default_metrics(model: "Model", losses: list[Loss | None]) -> tuple[Bound, ...]:
    """With no ``metrics``: the loss's accuracy for each output whose loss classifies."""
    names = model.output_names
    several = len(losses) > 1
    return tuple(Bound(k, f"{names[k]}_accuracy" if several else "accuracy", LossAccuracy(), 0, 0, 0)
                 for k, loss in enumerate(losses) if loss is not None and loss.classifies)


def metric_keys(model: "Model", losses: list[Loss | None], validation: bool,
                metrics: "tuple[Bound, ...] | None" = None) -> list[str]:
    """The names of the metrics of a fit or evaluation: ``loss``; for
    several outputs then ``{output}_loss``; then each metric's
    (:func:`bind_metrics`; by default ``accuracy`` or ``{output}_accuracy``
    where the loss classifies); and their ``val_`` twins."""
    names = model.output_names
    keys = ["loss"]
    if len(losses) > 1:
        keys += [f"{names[k]}_loss" for k, loss in enumerate(losses) if loss is not None]
    keys += [b.key for b in (default_metrics(model, losses) if metrics is None else metrics)]
    keys = keys + [f"val_{key}" for key in keys] if validation else keys
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"expected metrics whose names differ. Received: {repeated} twice (outputs {names}): "
                         "give a metric another name (name=...), or rename the layer that makes an output")
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
        table[prefix + "loss"] = total
        if len(losses) > 1:
            names = model.output_names
            table.update({f"{prefix}{names[k]}_loss": v for k, v in parts.items()})
        start = slots.metric_at(loss_at)
        first = slots.metric_at(extra[0]) if extra is not None else None
        for b in default_metrics(model, losses) if slots.metrics is None else slots.metrics:
            if isinstance(b.metric, LossAccuracy):
                table[prefix + b.key] = accuracies[b.output]
                continue
            sums = values[:, start + b.offset : start + b.offset + b.size]
            if first is not None:
                sums = sums + values[:, first + b.offset : first + b.offset + b.size]
            table[prefix + b.key] = b.metric.result(sums, b.cols)
    return table


def add_metrics(backend, slots: Slots, outputs: list[Array], targets: dict[int, Array], acc: Array, index: int,
                transforms: dict[int, str]) -> None:
    """Each metric of ``slots`` (but the loss's accuracy, which the loss
    counts) adds a batch's counts into ``acc`` from ``index`` (the region's
    first slot; a step value on a replayed step) plus its offset: outputs[k]
    (n, *shape) against targets[k] as the loss prepared them, read as rows
    of the last axis; ``transforms[k]``: "softmax" or "sigmoid" where the
    output is the input of a layer a training step fused with its loss."""
    for b in slots.metrics or ():
        if isinstance(b.metric, LossAccuracy):
            continue
        p, t = outputs[b.output], targets[b.output]
        rows = math.prod(p.shape) // b.cols
        p = p if tuple(p.shape) == (rows, b.cols) else backend.view(p, 0, (rows, b.cols))
        t_shape = (rows, math.prod(t.shape) // rows)
        t = t if tuple(t.shape) == t_shape else backend.view(t, 0, t_shape)
        view = backend.rows(acc, b.offset, acc.shape[0]) if b.offset else acc
        b.metric.update(backend, p, t, view, index, transforms.get(b.output, "none"))


class DeviceData(GatheredData):
    """Arrays of samples (each input's, then each target's) on the device,
    and the batches gathered from them.

    Batch buffers come from ``buffers`` (a model's plan's) under the data's
    ``role`` ("train", "val", "eval"), so repeated fits reuse them; their views are
    made once, and shuffling rewrites only the row order, so an epoch
    allocates nothing. A single batch that is never shuffled is gathered
    once. Arrays are gathered two at a time (an input and a target in one
    dispatch for a model of one input and one output).
    """

    def __init__(self, backend: Backend, buffers: Workspace, role: str, arrays: list[np.ndarray], batch: int,
                 shuffle=False):
        self.backend, self.n, self.batch = backend, len(arrays[0]), batch
        self.sources = [backend.dataset(a) for a in arrays]
        # the order of the samples, by which batches are gathered (GatheredData.index)
        self.index = backend.from_numpy(np.arange(self.n, dtype=np.int32))
        # named by shape too: an output's targets may be class labels in one fit, one-hot rows in the next
        buffers = [buffers.get(f"{role}_{k}_{a.shape[1:]}", batch, a.shape[1:]) for k, a in enumerate(arrays)]
        # (first row in the order, [each array's rows]) of each batch
        self.views = [(s, [backend.rows(b, 0, min(batch, self.n - s)) for b in buffers])
                      for s in range(0, self.n, batch)]
        self.steps = len(self.views)
        self.shuffling = shuffle and self.steps > 1
        # a single batch that is never shuffled is gathered once, here
        if self.steps == 1 and not self.shuffling:
            self.gather(*self.views[0])
            self._gathered = True

    def shuffle(self, rng: np.random.Generator) -> None:
        self.backend.write(self.index, rng.permutation(self.n).astype(np.int32))

    def epoch(self):
        """The epoch's batches, (first row in the order, arrays), for :meth:`gather`."""
        yield from self.views


def placed(model: "Model", role: str, arrays: list, batch: int, shuffle=False) -> "DeviceData | ChunkedData":
    """The data of a fit or evaluation of ``model`` on its device, its batch
    buffers in the model's plan (:func:`place`)."""
    return place(model.backend, model.plan.buffers, role, arrays, batch, shuffle)


def place(backend: Backend, buffers: Workspace, role: str, arrays: list, batch: int,
          shuffle=False) -> "DeviceData | ChunkedData":
    """The data of a fit or evaluation on ``backend``: whole (:class:`DeviceData`),
    or streamed in chunks when it is too large (``data.ChunkedData``); batch
    buffers from ``buffers`` under ``role``."""
    if streams(arrays, np.dtype(backend.dtype).itemsize):
        return ChunkedData(backend, buffers, role, arrays, batch, shuffle)
    return DeviceData(backend, buffers, role, arrays, batch, shuffle)


def step_arrays(xs: list, ts: list, sample_weights: list | None = None) -> list:
    """The arrays of a step, in the order the data holds them: each input's,
    then the targets of each output with a loss (``ts[k]`` not None), then
    those outputs' sample weights where there are some."""
    return list(xs) + [t for t in ts if t is not None] + list(sample_weights or [])


class Evaluation:
    """The loss sums and correct counts of a model over fixed data, added
    up on the device, as often as asked (each epoch's validation). ``data``:
    its batches, as the caller made them (:func:`placed` of
    :func:`step_arrays`, or a ``data.SourceData``), with each graded
    output's sample weights after the targets where there are some."""

    def __init__(self, model: "Model", losses: list[Loss | None], data):
        self.model, self.losses, self.inputs, self.data = model, losses, len(model.inputs), data
        self.graded = [k for k, loss in enumerate(losses) if loss is not None]
        self.kinds = {k: losses[k].accuracy_kind(math.prod(model.outputs[k].shape)) for k in self.graded}

    def into(self, acc: Array, block: int, slots: Slots, validation: bool, hooks: "Hooks | None" = None) -> None:
        """Add each output's loss sum and correct count into ``acc``'s block
        starting at ``block``: the LOSS and CORRECT slots, or with
        ``validation`` the VAL_ ones. Always in inference mode. ``hooks``:
        callbacks whose test hooks see it (a readback a batch where one has
        ``on_test_batch_end``)."""
        backend, plan = self.model.backend, self.model.plan
        inference = plan.pass_for(training=False)
        at = slots.VAL_LOSS if validation else slots.LOSS
        if hooks is not None and not hooks.has(*TEST_HOOKS):
            hooks = None
        if hooks is not None:
            hooks.call("on_test_begin", {})
        seen = 0
        for i, arrays in enumerate(self.data.batches()):
            if hooks is not None:
                hooks.call("on_test_batch_begin", i, {})
            outputs = plan.forward(inference, arrays[: self.inputs], training=False)
            weights = arrays[self.inputs + len(self.graded):] or [None] * len(self.graded)
            for k, t, w in zip(self.graded, arrays[self.inputs:], weights):
                self.losses[k].accumulate(backend, outputs[k], t, acc, block + slots.of(k, at), self.kinds[k], w)
            add_metrics(backend, slots, outputs, dict(zip(self.graded, arrays[self.inputs:])), acc,
                        block + slots.metric_at(at), {})
            seen += arrays[0].shape[0]
            if hooks is not None:
                hooks.call("on_test_batch_end", i, lambda: self.logs(acc, block, slots, validation, seen), lazy=True)
        if hooks is not None:
            hooks.call("on_test_end", lambda: self.logs(acc, block, slots, validation, seen), lazy=True)

    def logs(self, acc: Array, block: int, slots: Slots, validation: bool, seen: int) -> dict[str, float]:
        """The metrics so far of :meth:`into` over ``seen`` samples, read
        back, named as evaluate names them (no ``val_``), for the test hooks."""
        model = self.model
        values = model.backend.to_numpy(model.backend.rows(acc, block, block + slots.size)).astype(np.float64)[None]
        weights = model.output_weights(self.losses)
        table = metric_table(model, values, self.losses, weights, slots, 0 if validation else seen,
                             seen if validation else 0)
        return {(k[4:] if validation else k): float(v[0]) for k, v in table.items()}
