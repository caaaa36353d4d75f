"""What fit, evaluate and predict take besides arrays, as Keras 3 does: a
:class:`Dataset` (Keras's ``PyDataset``: ``__len__`` batches, each
``__getitem__(index)``), a Python generator or other iterable of batches,
a PyTorch ``DataLoader`` (its tensors become numpy arrays); and arrays too
large to place on the device whole (a numpy memmap of a file larger than
memory), which stream in chunks.

A batch is ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; for
a model of several inputs or outputs, ``x`` and ``y`` are lists in order or
dicts by name, as fit takes them.

Streaming: arrays whose samples together take more than
:data:`STREAM_BYTES` bytes (in the model's dtype; :data:`MAPPED_STREAM_BYTES`
where one is a memmap) are never copied whole, neither into host memory
nor onto the device; smaller data is placed on the device once, as before. Each epoch's order (the
same permutation as for arrays that fit, from the same draw) is cut into
chunks of batches of about :data:`CHUNK_BYTES`; a chunk's rows are gathered
on the host (``np.take`` from the memmap) into a buffer of two halves on
the device, and the batches are gathered from it as from a placed dataset.
The next chunk is written into the other half before the steps of the
current one are submitted (double buffering), so the host's gathering and
the upload overlap the device's training, and peak memory is a few chunks
whatever the file's size. Training on streamed data gives bit for bit what
the same arrays in memory give.
"""

from __future__ import annotations

import itertools
import math
import mmap
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from .model_data import per_name, same_length

if TYPE_CHECKING:
    from .backends import Backend
    from .layers.base import Workspace
    from .model import Model

__all__ = ["Dataset", "STREAM_BYTES", "MAPPED_STREAM_BYTES", "CHUNK_BYTES", "is_batch_source", "BatchSource", "streams",
           "GatheredData"]

#: Arrays larger than this (all inputs and targets of a fit, in the model's
#: dtype) stream in chunks instead of being placed on the device whole.
STREAM_BYTES = 512 * 2**20
#: The same for data with a memmap among its arrays: a file is not copied
#: into memory (or onto the device) whole beyond this.
MAPPED_STREAM_BYTES = 64 * 2**20
#: About how many bytes of samples a streamed chunk holds (at least one batch).
CHUNK_BYTES = 16 * 2**20


class Dataset:
    """A source of batches, as Keras's ``PyDataset``: subclass it and define
    ``__len__`` (the number of batches in an epoch) and
    ``__getitem__(index)`` (batch ``index``: ``x``, ``(x, y)`` or
    ``(x, y, sample_weight)``); ``on_epoch_end()``, if defined, is called
    after each pass over it (an epoch of training, a validation, an
    evaluate), also one that an error or a batch hook ends early. With ``shuffle=True`` (fit's default)
    the batches come in an order drawn from the model's shuffling
    generator each epoch, as Keras shuffles a PyDataset's batches; each
    batch is used as it is."""

    def __len__(self) -> int:
        raise NotImplementedError("a Dataset defines __len__: the number of batches in an epoch")

    def __getitem__(self, index: int):
        raise NotImplementedError("a Dataset defines __getitem__(index): batch index")

    def on_epoch_end(self) -> None:
        pass


def _is_indexed(x) -> bool:
    """A :class:`Dataset`, or a Keras ``PyDataset`` (the same protocol)."""
    return isinstance(x, Dataset) or any(c.__name__ == "PyDataset" and c.__module__.startswith("keras")
                                         for c in type(x).__mro__)


def _is_torch_loader(x) -> bool:
    return any(c.__module__.startswith("torch.utils.data") and c.__name__ == "DataLoader" for c in type(x).__mro__)


def is_batch_source(x) -> bool:
    """Whether ``x`` yields batches (a Dataset, a DataLoader, a generator or
    another iterable that is not itself data) rather than being data."""
    if _is_indexed(x) or _is_torch_loader(x):
        return True
    if isinstance(x, (np.ndarray, list, tuple, dict, str, bytes, range)) or hasattr(x, "__array__"):
        return False
    if hasattr(x, "__array_interface__") or hasattr(x, "shape"):
        return False
    return hasattr(x, "__next__") or hasattr(x, "__iter__")


def refuse_with_source(x, y, batch_size) -> None:
    """ValueError for a ``y`` or a ``batch_size`` given beside ``x``, a
    batch source, which makes its batches and holds their targets."""
    what = type(x).__name__
    if y is not None:
        raise ValueError(f"expected no y with x={what}, whose batches hold the targets (x, y). "
                         f"Received: y of type {type(y).__name__}")
    if batch_size is not None:
        raise ValueError(f"expected no batch_size with x={what}, which makes its own batches. "
                         f"Received: batch_size={batch_size!r}")


def refuse_sample_weight(x, sample_weight) -> None:
    """ValueError for a ``sample_weight`` given beside ``x``, a batch source,
    whose batches hold their weights."""
    if sample_weight is not None:
        raise ValueError(f"expected no sample_weight with x={type(x).__name__}: its batches hold them, "
                         "as (x, y, sample_weight)")


def to_numpy(value):
    """A batch's parts with torch tensors (and anything else numpy reads)
    as numpy arrays, keeping lists, tuples and dicts."""
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_numpy(v) for v in value) if type(value) in (list, tuple) else value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def split_batch(batch, what: str, targets: bool = True) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of one batch (None where absent): a tuple
    of one to three entries, or ``x`` alone. ValueError saying what was
    expected."""
    batch = to_numpy(batch)
    if isinstance(batch, list):  # as Keras unpacks one (a DataLoader's batches are lists)
        batch = tuple(batch)
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ValueError(f"expected each batch of {what} as x, (x,), (x, y) or (x, y, sample_weight). "
                             f"Received: a tuple of {len(batch)}")
        parts = tuple(batch) + (None,) * (3 - len(batch))
    else:
        parts = (batch, None, None)
    if targets and parts[1] is None:
        raise ValueError(f"expected batches (x, y) or (x, y, sample_weight) from {what} (fit and evaluate need "
                         f"targets). Received: a batch of {_describe(batch)}")
    return parts


def _describe(batch) -> str:
    if isinstance(batch, tuple):
        return f"a tuple of {len(batch)}"
    shape = getattr(batch, "shape", None)
    return f"{type(batch).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


class BatchSource:
    """The batches of a Dataset, DataLoader, generator or iterable, epoch by
    epoch: ``steps`` a epoch (None: a whole pass, or until it runs out). A
    generator (an iterator) is read on across epochs, as Keras reads one. A
    Dataset and a re-iterable (a DataLoader) start a new pass (a Dataset's
    batches in a new order) each epoch; with ``steps`` below a pass, as
    Keras 3's ``EpochIterator``, an epoch goes on where the last one
    stopped, and a new pass begins only once one has been read whole (an
    epoch that reaches a pass's end ends there)."""

    def __init__(self, x, steps: int | None, what: str, epochs: int = 1, steps_name: str = "steps_per_epoch"):
        self.x, self.what, self.steps = x, what, steps
        self.indexed = _is_indexed(x)
        self.iterator: Iterator | None = None
        if self.indexed:
            length = len(x)
            if not isinstance(length, int) or length < 1:
                raise ValueError(f"expected a Dataset with at least one batch as {what}. Received: len={length!r}")
            self.length = length
        else:
            try:
                it = iter(x)
            except TypeError:
                raise ValueError(f"expected {what} as arrays, a Dataset, a generator or an iterable of batches. "
                                 f"Received: {type(x).__name__}") from None
            self.once = it is x  # a generator: read on, never restarted
            if self.once:
                self.iterator = it
            try:
                self.length = len(x)
            except TypeError:
                self.length = None
            if self.once and steps is None and epochs > 1:
                raise ValueError(
                    f"expected {steps_name} with a generator as {what} for more than one epoch: its length "
                    f"can't be known, and it can't be restarted. Received: {type(x).__name__} without "
                    f"{steps_name}, epochs to run={epochs}")
        self._pending: list = []
        # a Dataset's or re-iterable's pass under way (None: the next epoch starts one), and its batches read
        self._pass: Iterator | None = None
        self._seen = 0

    @property
    def known_steps(self) -> int | None:
        if self.steps is not None:
            return self.steps if self.length is None else min(self.steps, self.length)
        return self.length

    def first(self):
        """The first batch (kept: the first epoch yields it again)."""
        if self.indexed:
            return self.x[0]
        if not self._pending:
            it = self.iterator if self.iterator is not None else iter(self.x)
            try:
                self._pending = [next(it)]
            except StopIteration:
                raise ValueError(f"expected at least one batch from {self.what}. Received: none") from None
            if self.iterator is None:  # a re-iterable: that iteration is the first epoch's pass
                self._pass, self._seen = it, 0
        return self._pending[0]

    def has_more(self) -> bool:
        """Whether another epoch can get a batch (False: a generator ran out)."""
        if self.iterator is None or self._pending:
            return True
        try:
            self._pending = [next(self.iterator)]
        except StopIteration:
            return False
        return True

    def epoch(self, rng: np.random.Generator | None = None) -> Iterator:
        """The batches of one epoch (a new pass of a Dataset's in an order
        drawn from ``rng`` when given)."""
        if self.iterator is not None:  # a generator: read on
            pending, self._pending = self._pending, []
            batches = itertools.chain(pending, self.iterator)
            if self.steps is not None:
                batches = itertools.islice(batches, self.steps)
            yield from batches
            return
        count = 0
        try:
            while self.steps is None or count < self.steps:
                if self._pass is None:
                    if count:  # the pass ended within this epoch: the epoch ends with it (as Keras's)
                        break
                    self._pass, self._seen = self._new_pass(rng), 0
                if self._pending:
                    batch = self._pending.pop()
                else:
                    try:
                        batch = next(self._pass)
                    except StopIteration:
                        fresh, self._pass = self._seen == 0, None
                        if fresh:  # an empty pass: nothing this epoch
                            break
                        continue
                self._seen += 1
                if self.length is not None and self._seen >= self.length:
                    self._pass = None  # read whole: the next epoch starts a new pass
                count += 1
                yield batch
        finally:
            if self.steps is None:  # an epoch is a pass, even one a callback cut short
                self._pass, self._pending = None, []

    def _new_pass(self, rng: np.random.Generator | None) -> Iterator:
        if self.indexed:
            order = range(self.length) if rng is None else rng.permutation(self.length)
            return (self.x[int(i)] for i in order)
        return iter(self.x)

    def end_epoch(self) -> None:
        if self.indexed and callable(getattr(self.x, "on_epoch_end", None)):
            self.x.on_epoch_end()


def one_weighting(sample_weight, class_weight) -> None:
    """ValueError where both are given."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("expected sample_weight or class_weight, not both (as in Keras)")


def sample_weights(model: "Model", losses: list, ts: list, sample_weight=None, class_weight=None,
                   name: str = "sample_weight") -> list[np.ndarray]:
    """Each graded output's per-sample weights, (n, rows of its loss's
    layout) — a sample's weight repeated over its tokens — from
    ``sample_weight`` ((n,), (n, 1), or (n, tokens); for several outputs
    one array for all, or a list or dict by output name) or ``class_weight``
    (a dict class -> weight: a target's class is its label, or its row's
    argmax, or a binary target rounded, as Keras reads it); [] for neither."""
    if sample_weight is None and class_weight is None:
        return []
    one_weighting(sample_weight, class_weight)
    graded = [k for k, loss in enumerate(losses) if loss is not None]
    names = model.output_names
    out = []
    if class_weight is not None:
        if not isinstance(class_weight, dict) or not class_weight:
            raise ValueError(f"expected class_weight as a dict of class -> weight. Received: {class_weight!r}")
        if len(graded) != 1:
            raise ValueError("expected class_weight only for a model of one output with a loss (as in Keras). "
                             f"Received: {len(graded)} outputs with a loss; give sample_weight per output instead")
        keys = sorted(class_weight)
        if keys != list(range(len(keys))):
            raise ValueError("expected class_weight keyed by the classes 0 to n - 1. "
                             f"Received: keys {keys}")
        table = np.array([float(class_weight[c]) for c in keys], np.float64)
        if not np.all(np.isfinite(table)) or (table < 0).any():
            raise ValueError(f"expected non-negative finite class weights. Received: {class_weight!r}")
        k = graded[0]
        loss, t = losses[k], ts[k]
        rows, width = loss.layout(model.outputs[k].shape)
        m = t.reshape(len(t) * rows, -1)
        classes = m.argmax(axis=1) if m.shape[1] > 1 else np.rint(m[:, 0]).astype(np.int64)
        if classes.min() < 0 or classes.max() >= len(table):
            bad = int(classes[(classes < 0) | (classes >= len(table))][0])
            raise ValueError(f"expected class_weight for every class of the targets. Received: class {bad} "
                             f"without a weight (class_weight has {keys})")
        return [table[classes].astype(np.float32).reshape(len(t), rows)]
    entries = [sample_weight] * len(names)
    if isinstance(sample_weight, (dict, list, tuple)) and len(names) > 1:
        entries = per_name(sample_weight, names, name, optional=True, data=False)
    for k in graded:
        t, entry = ts[k], entries[k]
        rows, _ = losses[k].layout(model.outputs[k].shape)
        if entry is None:
            out.append(np.ones((len(t), rows), np.float32))
            continue
        w = np.asarray(to_numpy(entry))
        if w.dtype.kind not in "biuf":
            raise ValueError(f"expected numbers in {name}. Received: dtype={w.dtype}")
        if w.ndim == 1 or (w.ndim == 2 and w.shape[1] == 1):
            w = np.repeat(w.reshape(-1, 1), rows, axis=1)
        if w.shape != (len(t), rows):
            want = f"({len(t)},)" + (f" or ({len(t)}, {rows})" if rows > 1 else "")
            raise ValueError(f"expected {name} of shape {want}: a weight a sample. Received: {name}.shape="
                             f"{np.shape(to_numpy(entry))}")
        if not np.all(np.isfinite(w)) or (w < 0).any():
            raise ValueError(f"expected non-negative finite weights in {name}")
        out.append(w.astype(np.float32))
    return out


def batch_converter(model: "Model", losses: list, what: str, class_weight=None) -> Callable[[Any], list]:
    """A function of one batch of ``what`` to the arrays of a step: each
    input's, then each output's with a loss (its targets), then, where the
    batches have sample weights (all or none) or ``class_weight`` is given,
    those outputs' weights; checked as fit and evaluate check arrays."""
    graded = [k for k, loss in enumerate(losses) if loss is not None]
    weighted: list = []

    def convert(batch) -> list:
        bx, by, weights = split_batch(batch, what)
        if not weighted:
            weighted.append(weights is not None)
        elif weighted[0] != (weights is not None):
            had, has = ("with", "without") if weighted[0] else ("without", "with")
            raise ValueError(f"expected every batch of {what} with sample weights or none. Received: a batch "
                             f"{has} them after one {had}")
        xs = model.input_arrays(bx, f"{what} (a batch's x)")
        ts = model.target_arrays(by, losses, f"{what} (a batch's y)")
        same_length([("x", xs[0])] + [("y", t) for t in ts if t is not None])
        ws = sample_weights(model, losses, ts, weights, class_weight, f"{what} (a batch's sample_weight)")
        return xs + [ts[k] for k in graded] + ws

    return convert


class SourceData:
    """A fit's or an evaluation's batches from a :class:`BatchSource`, each
    converted (``convert``: a batch to its arrays, inputs then targets)
    and written into the model's batch buffers before its step, with the
    interface of ``fit_data.DeviceData`` (gathering does nothing: the
    batch is already there). ``n``: the samples of the last epoch read."""

    replayable = False
    shuffling = False

    def __init__(self, model: "Model", role: str, source: BatchSource, convert: Callable[[Any], list],
                 shuffle_rng: np.random.Generator | None = None):
        self.model, self.backend, self.role, self.source, self.convert = model, model.backend, role, source, convert
        self.rng = shuffle_rng
        self.steps = source.known_steps
        first = convert(source.first())
        self.batch = len(first[0])
        # until an epoch has counted them: a bound for the running metrics of the first
        self.n = (self.steps or 2**31) * self.batch

    def shuffle(self, rng) -> None:
        pass

    def gather(self, first: int, arrays: list) -> None:
        pass

    def _place(self, arrays: list[np.ndarray]) -> list:
        buffers = self.model.plan.buffers
        placed = []
        for k, a in enumerate(arrays):
            b = buffers.get(f"{self.role}_{k}_{a.shape[1:]}", len(a), a.shape[1:])
            self.backend.write(b, a)
            placed.append(b)
        return placed

    def epoch(self) -> Iterator[tuple[int, list]]:
        """Each batch as (0, its arrays on the device), written there. A
        Dataset's ``on_epoch_end`` runs after the epoch, also one that a
        callback ended early (when the caller closes this generator)."""
        self.n = 0
        batches = self.source.epoch(self.rng)
        try:
            for raw in batches:
                arrays = self.convert(raw)
                self.n += len(arrays[0])
                yield 0, self._place(arrays)
        finally:
            batches.close()  # the source's pass keeps its place before on_epoch_end runs
            self.source.end_epoch()

    def batches(self):
        for _, arrays in self.epoch():
            yield arrays


def _file_backed(a) -> bool:
    """Whether ``a`` is (a view of) a memory-mapped file."""
    seen = 0
    while a is not None and seen < 64:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a, seen = getattr(a, "base", None), seen + 1
    return False


def streams(arrays: list, itemsize: int) -> bool:
    """Whether ``arrays`` (samples in rows) are too large to place whole:
    more than :data:`STREAM_BYTES` in a dtype of ``itemsize`` bytes, or
    more than :data:`MAPPED_STREAM_BYTES` where one is a memmap."""
    nbytes = sum(math.prod(a.shape) for a in arrays) * itemsize
    return nbytes > STREAM_BYTES or (nbytes > MAPPED_STREAM_BYTES and any(_file_backed(a) for a in arrays))


class GatheredData:
    """What ``fit_data.DeviceData`` and :class:`ChunkedData` share: batches
    gathered on the device from ``sources`` (each array's rows there) by
    ``index`` (the row of a batch's samples in them, from its first
    position), two arrays a dispatch; ``epoch()`` gives each batch's (first
    position, buffers)."""

    #: an epoch can be run again (a rollback replays epochs)
    replayable = True
    sources: list
    index: Any
    #: the batch is in its buffers already (a single batch never shuffled)
    _gathered = False

    def gather(self, first: int, arrays: list) -> None:
        """The batch starting at position ``first`` into ``arrays``."""
        if self._gathered:
            return
        sources, index, take = self.sources, self.index, self.backend.take_rows
        for k in range(0, len(sources) - 1, 2):
            take(sources[k], index, arrays[k], first, sources[k + 1], arrays[k + 1])
        if len(sources) % 2:
            take(sources[-1], index, arrays[-1], first)

    def epoch(self) -> Iterator[tuple[int, list]]:
        raise NotImplementedError

    def batches(self):
        """Each batch's arrays, gathered."""
        for first, arrays in self.epoch():
            self.gather(first, arrays)
            yield arrays


class ChunkedData(GatheredData):
    """Arrays too large to place whole (see the module's docstring), with
    the interface of ``fit_data.DeviceData``: the same order, drawn the same
    way, and batches gathered on the device from a two-half chunk buffer
    (``index``: its rows in order)."""

    def __init__(self, backend: Backend, buffers: Workspace, role: str, arrays: list, batch: int, shuffle=False):
        self.backend, self.arrays, self.n, self.batch = backend, arrays, len(arrays[0]), batch
        self.steps = -(-self.n // batch)
        self.shuffling = shuffle and self.steps > 1
        self.order = np.arange(self.n)
        row_bytes = sum(math.prod(a.shape[1:]) for a in arrays) * np.dtype(backend.dtype).itemsize
        self.per_chunk = max(1, min(self.steps, CHUNK_BYTES // max(1, batch * row_bytes)))  # batches a chunk
        rows = self.per_chunk * batch
        self.sources = [backend.empty((2 * rows, *a.shape[1:])) for a in arrays]
        self.index = backend.from_numpy(np.arange(2 * rows, dtype=np.int32))
        buffers = [buffers.get(f"{role}_{k}_{a.shape[1:]}", batch, a.shape[1:]) for k, a in enumerate(arrays)]
        self.views = []
        for i in range(self.steps):
            chunk, j = divmod(i, self.per_chunk)
            first = (chunk % 2) * rows + j * batch
            self.views.append((first, [backend.rows(b, 0, min(batch, self.n - i * batch)) for b in buffers]))

    def shuffle(self, rng: np.random.Generator) -> None:
        self.order = rng.permutation(self.n).astype(np.int32)

    def _upload(self, chunk: int) -> None:
        """Chunk ``chunk``'s rows, in the order, into its half of the sources.
        The steps recorded before it (the ones reading that half) are
        submitted first, so the device trains while the host gathers."""
        self.backend.flush()
        rows = self.per_chunk * self.batch
        index = self.order[chunk * rows: (chunk + 1) * rows]
        if not self.shuffling:  # in order: a slice reads the file sequentially
            index = slice(chunk * rows, chunk * rows + len(index))
            count = index.stop - index.start
        else:
            count = len(index)
        at = (chunk % 2) * rows
        for a, source in zip(self.arrays, self.sources):
            host = a[index] if isinstance(index, slice) else np.take(a, index, axis=0)
            self.backend.write(self.backend.rows(source, at, at + count), host)

    def epoch(self) -> Iterator[tuple[int, list]]:
        """The epoch's batches (first position, buffers): chunk c + 1 is
        uploaded (after the steps before it were submitted, into the half
        they no longer read) before the steps of chunk c are recorded."""
        chunks = -(-self.steps // self.per_chunk)
        self._upload(0)
        for c in range(chunks):
            if c + 1 < chunks:
                self._upload(c + 1)
            yield from self.views[c * self.per_chunk: (c + 1) * self.per_chunk]


def ran_out(what: str, epoch: int) -> None:
    steps = "validation_steps" if what == "validation_data" else "steps_per_epoch"
    warnings.warn(f"{what} ran out of data before epoch {epoch + 1}: training stopped (give {steps} so that "
                  f"it holds {steps} × epochs batches)", UserWarning, stacklevel=5)
