"""Model: a chain of layers that trains with mini-batch gradient descent."""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import _checks
from .backends import Array, Backend, select_backend
from .layers import Layer, Parameter
from .layers.base import Shape, Workspace, _batch_shape_text, _ClassOrInstanceMethod
from .losses import Loss
from .optimizers import Optimizer
from .callbacks import Callback, as_callbacks
from .training import HaltingCondition, History

#: Seconds between metric readbacks while training (progress, NaN checks).
REFRESH_SECONDS = 0.25
#: Rows per forward pass in predict and evaluate when no batch size is given.
PREDICT_BATCH = 1024

# Layout of the per-epoch metric accumulators: four slots an epoch.
LOSS, CORRECT, VAL_LOSS, VAL_CORRECT = range(4)


class Model:
    """A network: layers applied in order.

    ``input_size`` (an int, or a shape tuple for images) lets the model check
    the chain and make every parameter at construction; without it the model
    is built by the first data it sees. ``device`` is "auto", "cpu" or "gpu";
    ``seed`` fixes the initial weights and the shuffling, so that the same
    seed and data give bit-identical weights.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        input_size: int | Sequence[int] | None = None,
        device: str | Backend = "auto",
        dtype: str = "float32",
        seed: int | None = None,
    ):
        self.layers: list[Layer] = list(layers)
        if not self.layers:
            raise ValueError("expected at least one layer. Received: layers=[]")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"expected Layer objects. Received: {layer!r} at index {i}")
        if len({id(layer) for layer in self.layers}) != len(self.layers):
            raise ValueError("expected each layer object once; the same one appears twice")
        self.backend = select_backend(device, dtype)
        self.seed = seed
        init_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(init_seed)
        self._shuffle_rng = np.random.default_rng(shuffle_seed)
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self._workspace = Workspace(self.backend)
        if input_size is not None:
            self.build(input_size)
        elif self.layers[0].input_shape is not None:
            self.build(self.layers[0].input_shape)

    # ---------------------------------------------------------------- building
    def build(self, input_size: int | Sequence[int]) -> None:
        """Check the chain for ``input_size`` and make every parameter."""
        input_shape = shape = _as_shape(input_size)
        for i, layer in enumerate(self.layers):
            source = "the model's input" if i == 0 else f"layer {i - 1} {self.layers[i - 1]!r}"
            try:
                out = layer.build(shape, self.backend, self._init_rng)
            except ValueError as error:
                raise ValueError(f"layer {i} {layer!r} {error} from {source}") from None
            shape = out
        self.input_shape, self.output_shape = input_shape, shape
        self._pack_parameters()

    def _pack_parameters(self) -> None:
        """Lay every parameter out in one buffer, and every gradient in
        another: layers keep views of them, and an optimizer updates all of
        a model's parameters in one operation (one dispatch on the GPU).
        Each slot starts on a multiple of 16 elements (aligned vec4 reads)."""
        params = self.parameters
        offsets, total = [], 0
        for p in params:
            offsets.append(total)
            total += -(-math.prod(p.value.shape) // 16) * 16
        self._offsets = offsets
        if not params:
            self._flat = None
            return
        backend = self.backend
        values, grads = backend.zeros((total,)), backend.zeros((total,))
        for p, offset in zip(params, offsets):
            packed = backend.view(values, offset, p.value.shape)
            backend.copy(p.value, packed)
            p.value, p.grad = packed, backend.view(grads, offset, p.value.shape)
        self._flat = Parameter("parameters", values, grads)

    def _trained_parameters(self) -> list[Parameter]:
        """What the optimizer updates: the one packed parameter."""
        return [self._flat] if self._flat is not None else []

    def _parameter_views(self, flat: Array) -> list[Array]:
        """Views of a packed array (like optimizer state) for each parameter."""
        return [self.backend.view(flat, o, p.value.shape) for o, p in zip(self._offsets, self.parameters)]

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    @property
    def device(self) -> Backend:
        """The backend the model runs on: ``kind``, ``name`` and ``stats()``."""
        return self.backend

    @property
    def dtype(self) -> np.dtype:
        return self.backend.dtype

    @property
    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters]

    # ------------------------------------------------------------------- data
    def _inputs(self, x, name: str = "x") -> np.ndarray:
        """``x`` as an array of shape (n, *input_shape), building on first use."""
        a = _checks.numeric_array(x, name)
        if not self.built:
            self.build(a.shape[1:] if a.ndim > 1 else (1,))
        shape = self.input_shape
        if a.shape[1:] == shape:
            return a
        if a.shape == shape:
            return a[None]
        if shape[0] == 1 and a.shape[1:] == shape[1:]:  # one feature or channel, its axis left out
            return a.reshape(len(a), *shape)
        raise ValueError(
            f"expected {name} of shape {_batch_shape_text(shape)} for the model's input "
            f"{shape}. Received: {name}.shape={a.shape}"
        )

    def _data(self, x, y, loss: Loss, names=("x", "y")) -> tuple[np.ndarray, np.ndarray]:
        x = self._inputs(x, names[0])
        t = loss.prepare_targets(y, self.output_shape[0])
        if len(x) != len(t):
            raise ValueError(
                f"expected as many targets as samples. Received: {names[0]} has {len(x)} "
                f"rows, {names[1]} has {len(t)}"
            )
        return x, t

    # --------------------------------------------------------------- running
    def _forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def predict(self, x, batch_size: int | None = None) -> np.ndarray:
        """Outputs for inputs ``x`` (n, *input_shape) as a numpy array (n, outputs),
        computed ``batch_size`` rows at a time (1024 by default)."""
        x = self._inputs(x)
        chunk = PREDICT_BATCH if batch_size is None else _checks.positive_int(batch_size, "batch_size")
        backend = self.backend
        if len(x) <= chunk:  # the common, lean path: one pass
            return backend.to_numpy(self._forward(backend.asarray(x)))
        out = np.empty((len(x), *self.output_shape), self.dtype)
        for start in range(0, len(x), chunk):
            out[start : start + chunk] = backend.to_numpy(self._forward(backend.asarray(x[start : start + chunk])))
        return out

    def evaluate(self, x, y, loss: Loss | None = None, batch_size: int | None = None) -> dict:
        """``{"loss": float, "accuracy": float}`` over ``x`` and targets ``y``."""
        loss = self._resolve_loss(loss)
        x, t = self._data(x, y, loss)
        chunk = PREDICT_BATCH if batch_size is None else _checks.positive_int(batch_size, "batch_size")
        acc = self.backend.zeros((2,))
        data = _DeviceData(self, "eval", x, t, min(chunk, len(x)))
        self._accumulate_metrics(data, loss, acc, 0)
        loss_sum, correct = (float(v) for v in self.backend.to_numpy(acc))
        return {"loss": loss_sum / len(x), "accuracy": correct / self._accuracy_count(loss, len(x))}

    def _accumulate_metrics(self, data: "_DeviceData", loss: Loss, acc: Array, index: int) -> None:
        kind = loss.accuracy_kind(self.output_shape[0])
        with self._mode(training=False):
            for xb, tb in data.batches():
                p = self._forward(xb)
                loss.accumulate(self.backend, p, tb, acc, index)
                self.backend.count_correct(kind, p, tb, acc, index + 1)

    @contextlib.contextmanager
    def _mode(self, training: bool):
        """Every layer's ``training`` flag set for a while, then restored."""
        before = [layer.training for layer in self.layers]
        for layer in self.layers:
            layer.training = training
        try:
            yield
        finally:
            for layer, flag in zip(self.layers, before):
                layer.training = flag

    def _accuracy_count(self, loss: Loss, n: int) -> int:
        width = self.output_shape[0]
        return n * width if loss.accuracy_kind(width) == "binary" else n

    def _resolve_loss(self, loss: Loss | None) -> Loss:
        loss = loss or self.loss
        if loss is None:
            raise ValueError("expected a loss, e.g. loss=MeanSquared(). Received: loss=None")
        if not isinstance(loss, Loss):
            raise TypeError(f"expected a Loss object. Received: loss={loss!r}")
        return loss

    # --------------------------------------------------------------- training
    def fit(
        self,
        x,
        y,
        loss: Loss | None = None,
        optimizer: Optimizer | None = None,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_data: tuple | None = None,
        verbose: bool | int = False,
        halting_condition: HaltingCondition | None = None,
        callbacks: Iterable[Callback] | None = None,
    ) -> History:
        """Train with mini-batch gradient descent and return the History.

        ``loss`` and ``optimizer`` default to those of the last fit.
        ``verbose``: 1 (or True) shows a progress bar per epoch, 2 one bar for
        the whole fit. Training stops early when ``halting_condition`` is
        reached, when a callback ``callback(epoch, logs)`` returns True, or
        when the loss becomes NaN or inf (the weights of the last epoch with a
        finite loss are then kept, and a warning says so).
        """
        self.loss = self._resolve_loss(loss)
        self.optimizer = optimizer or self.optimizer
        if not isinstance(self.optimizer, Optimizer):
            raise TypeError(f"expected an Optimizer, e.g. SGD(0.1). Received: optimizer={optimizer!r}")
        epochs = _checks.non_negative_int(epochs, "epochs")
        batch_size = _checks.positive_int(batch_size, "batch_size")
        callbacks = as_callbacks(callbacks)
        x, t = self._data(x, y, self.loss)
        keys = ["loss", "accuracy"]
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(
                    "expected validation_data=(x_val, y_val). "
                    f"Received: {type(validation_data).__name__}"
                )
            xv, tv = self._data(*validation_data, self.loss, ("validation_data[0]", "validation_data[1]"))
            keys += ["val_loss", "val_accuracy"]
        if halting_condition is not None and halting_condition.monitor not in keys:
            raise ValueError(
                f"expected the halting condition to monitor one of {keys}. "
                f"Received: monitor={halting_condition.monitor!r}"
            )
        batch = min(batch_size, len(x))
        data = _DeviceData(self, "train", x, t, batch, shuffle)
        if validation_data is not None:
            val = _DeviceData(self, "val", xv, tv, min(batch, len(xv)))
        self.optimizer.bind(self.backend, self._trained_parameters())
        plan = _StepPlan(self)

        def run_epoch(epoch: int, run: _Run) -> None:
            if data.shuffling:
                data.shuffle(self._shuffle_rng)
            run.start_epoch(epoch)
            for xb, tb in data.batches():
                plan.train_step(xb, tb, run.metrics, 4 * epoch)
                run.step_done()
            if val is not None:
                self._accumulate_metrics(val, self.loss, run.metrics, 4 * epoch + VAL_LOSS)

        run = _Run(self, data, val, epochs, keys, verbose, run_epoch)
        # per-epoch readbacks where an epoch's end must be seen; else a few a second
        watch_every_epoch = halting_condition is not None or bool(callbacks) or verbose == 1
        self.stop_training = False
        for callback in callbacks:
            callback.set_model(self)
            callback.on_train_begin({})
        # divergence is reported once, by the NaN check, not by numpy on the way
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), contextlib.closing(run), \
                self._mode(training=True):
            for epoch in range(epochs):
                for callback in callbacks:
                    callback.on_epoch_begin(epoch, {})
                run_epoch(epoch, run)
                if watch_every_epoch or epoch == epochs - 1 or run.due():
                    if run.read_epochs(epoch, halting_condition, callbacks):
                        break
        last = {k: v[-1] for k, v in run.history.history.items() if v}
        for callback in callbacks:
            callback.on_train_end(last)
        return run.history

    # ------------------------------------------------------------------ files
    def save(self, path, include_optimizer: bool = False) -> None:
        """Write every layer's tensors and the architecture to one safetensors
        file; ``include_optimizer`` adds the optimizer state, the loss and
        the shuffling state, so that training resumes exactly. ValueError
        (and the previous file kept) if a tensor holds NaN or inf."""
        from .saving import save_model

        save_model(self, path, include_optimizer)

    def _load_new(cls, path, device: str | Backend = "auto", dtype: str | None = None) -> "Model":
        """Rebuild a saved model on ``device`` (dtype: the file's, by default)."""
        from .saving import load_model

        return load_model(path, device, dtype)

    def _load_into(self, path) -> "Model":
        """Fill this model from a model file, checking that the architecture
        (layer types, configurations, input shape) is the same; the file's
        optimizer state, if any, comes too. FormatError, and the model
        unchanged, for anything that does not fit."""
        from .saving import load_model_into

        return load_model_into(self, path)

    load = _ClassOrInstanceMethod(_load_new, _load_into)

    def get_weights(self) -> list[np.ndarray]:
        """Every layer's tensors in layer order, in PyTorch's layouts: Dense
        weight (units, inputs) and bias, Conv2D weight (filters, in, kh, kw)
        and bias."""
        from .saving import get_weights

        return get_weights(self)

    def set_weights(self, weights: Sequence) -> None:
        """Set every parameter from a list laid out as :meth:`get_weights`
        gives it; ValueError naming the entry and layer that do not fit."""
        from .saving import set_weights

        set_weights(self, weights)

    def save_weights(self, path) -> None:
        """Write the weights alone to a safetensors file: the state_dict of
        the equivalent ``torch.nn.Sequential``."""
        from .saving import save_weights

        save_weights(self, path)

    def load_weights(self, path) -> None:
        """Set every parameter from a file of :meth:`save_weights` or
        :meth:`save`, or from a PyTorch ``nn.Sequential`` state_dict saved
        with ``safetensors.torch.save_file``: tensors ``{layer index}.weight``
        and ``.bias`` matched to this model's layers by position, every
        shape checked. FormatError, and nothing changed, if one differs."""
        from .saving import load_weights

        load_weights(self, path)

    # ------------------------------------------------------------ description
    def summary(self) -> str:
        """A table of the layers, their output shapes and parameter counts."""
        rows = [("#", "layer", "output shape", "parameters")]
        for i, layer in enumerate(self.layers):
            shape = "?" if layer.output_shape is None else _batch_shape_text(layer.output_shape)
            rows.append((str(i), repr(layer), shape, f"{layer.parameter_count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        total = sum(layer.parameter_count for layer in self.layers)
        lines.append(f"total parameters: {total:,}   device: {self.backend.name}")
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self) -> str:
        return f"Model([{', '.join(map(repr, self.layers))}], device={self.backend.kind!r})"


class _StepPlan:
    """One training step, with what does not change between steps worked
    out once: whether the loss fuses with the last layer, the layers to
    back-propagate through, the accuracy kind."""

    def __init__(self, model: Model):
        self.model, self.backend, self.loss = model, model.backend, model.loss
        self.fused = self.loss.fuses_with(model.layers[-1])
        trained = model.layers[:-1] if self.fused else model.layers
        self.backward = list(reversed(trained[1:]))
        self.first = trained[0] if trained else None
        self.accuracy = self.loss.accuracy_kind(model.output_shape[0])
        # layers that draw from the step (Dropout); none in most models
        self.stepped = [layer for layer in model.layers if type(layer).begin_step is not Layer.begin_step]

    def train_step(self, x: Array, t: Array, metrics: Array, slot: int) -> None:
        model, backend, loss = self.model, self.backend, self.loss
        for layer in self.stepped:
            layer.begin_step(model.optimizer.iterations)
        p = model._forward(x)
        loss.accumulate(backend, p, t, metrics, slot + LOSS)
        backend.count_correct(self.accuracy, p, t, metrics, slot + CORRECT)
        g = model._workspace.get("grad", p.shape[0], model.output_shape)
        loss.write_gradient(backend, p, t, g, self.fused)
        for layer in self.backward:
            g = layer.back_propagate(g)
        if self.first is not None:
            self.first.compute_gradients(g)
        model.optimizer.step()


class _DeviceData:
    """Samples and targets on the device, and the batches gathered from them.

    Batch buffers come from the model's workspace under the data's ``role``
    ("train", "val", "eval"), so repeated fits reuse them; their views are
    made once, and shuffling rewrites only the row order, so an epoch
    allocates nothing. A single batch that is never shuffled is gathered once.
    """

    def __init__(self, model: Model, role: str, x: np.ndarray, t: np.ndarray, batch: int, shuffle=False):
        backend = model.backend
        self.backend, self.n, self.batch = backend, len(x), batch
        self.x, self.t = backend.dataset(x), backend.dataset(t)
        self.order = backend.from_numpy(np.arange(self.n, dtype=np.int32))
        xb = model._workspace.get(role + "_x", batch, x.shape[1:])
        tb = model._workspace.get(role + "_t", batch, t.shape[1:])
        self._views = [
            (backend.rows(self.order, s, min(s + batch, self.n)),
             backend.rows(xb, 0, min(batch, self.n - s)),
             backend.rows(tb, 0, min(batch, self.n - s)))
            for s in range(0, self.n, batch)
        ]
        self.steps = len(self._views)
        self.shuffling = shuffle and self.steps > 1
        self._gathered = False
        if self.steps == 1 and not self.shuffling:
            self._gather(*self._views[0])
            self._gathered = True

    def shuffle(self, rng: np.random.Generator) -> None:
        self.backend.write(self.order, rng.permutation(self.n).astype(np.int32))

    def _gather(self, idx, xb, tb) -> None:
        self.backend.take_rows(self.x, idx, xb)
        self.backend.take_rows(self.t, idx, tb)

    def batches(self):
        for idx, xb, tb in self._views:
            if not self._gathered:
                self._gather(idx, xb, tb)
            yield xb, tb


class _Run:
    """The bookkeeping of one fit: metric accumulators on the device, their
    readback, progress bars, history, and the last good weights."""

    def __init__(self, model: Model, data: _DeviceData, val, epochs: int, keys, verbose, run_epoch):
        self.model, self.backend = model, model.backend
        self.n, self.n_val = data.n, (val.n if val is not None else 0)
        self.steps, self.batch = data.steps, data.batch
        self.epochs, self.run_epoch = epochs, run_epoch
        self.metrics = self.backend.zeros((4 * max(epochs, 1),))
        self.history = History(keys)
        self.read_upto = 0  # epochs [0, read_upto) are in the history
        self.last_read = time.perf_counter()
        self.verbose = int(verbose)
        self.bar = None
        if self.verbose == 2:
            self.bar = tqdm(total=epochs, unit="epoch", dynamic_ncols=True)
        # the weights, optimizer state and shuffle state at the last readback
        # that found every loss finite
        self.live = [p.value for p in model._trained_parameters()] + model.optimizer.state_arrays()
        self.saved = [self.backend.empty(a.shape) for a in self.live]
        self._save()

    def _save(self) -> None:
        for a, s in zip(self.live, self.saved):
            self.backend.copy(a, s)
        self.saved_upto = self.read_upto
        self.saved_iterations = self.model.optimizer.iterations
        self.saved_rng = copy.deepcopy(self.model._shuffle_rng.bit_generator.state)

    def _restore_last_good(self) -> None:
        """Back to the end of the last epoch with a finite loss: restore the
        last save, then replay (training is deterministic) the epochs since
        it that the readback found finite."""
        for a, s in zip(self.live, self.saved):
            self.backend.copy(s, a)
        self.model.optimizer.iterations = self.saved_iterations
        self.model._shuffle_rng.bit_generator.state = self.saved_rng
        verbose, self.verbose = self.verbose, 0
        for epoch in range(self.saved_upto, self.read_upto):
            self.run_epoch(epoch, self)
        self.verbose = verbose

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
            if self.step < self.steps and self.due():
                self._show_running()

    def due(self) -> bool:
        return time.perf_counter() - self.last_read >= REFRESH_SECONDS

    def _show_running(self) -> None:
        """Running loss and accuracy of the epoch so far on the bar."""
        self.last_read = time.perf_counter()
        slot = 4 * self.epoch
        loss_sum, correct = self.backend.to_numpy(self.backend.rows(self.metrics, slot, slot + 2))
        seen = min(self.step * self.batch, self.n)
        model = self.model
        self.bar.set_postfix({"loss": float(loss_sum) / seen,
                              "accuracy": float(correct) / model._accuracy_count(model.loss, seen)},
                             refresh=False)

    def read_epochs(self, epoch: int, halting: HaltingCondition | None, callbacks) -> bool:
        """Read the metrics of the epochs up to ``epoch``; True stops training."""
        self.last_read = time.perf_counter()
        start = self.read_upto
        values = self.backend.to_numpy(self.backend.rows(self.metrics, 4 * start, 4 * (epoch + 1)))
        table = self._table(values.astype(np.float64).reshape(-1, 4))
        finite = np.isfinite(table["loss"])
        good = len(finite) if finite.all() else int(np.argmin(finite))
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
        if good < len(finite):
            self._diverged(start + good, float(table["loss"][good]))
            return True
        self._save()
        return False

    def _table(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Per-epoch metrics from rows of (loss sum, correct, val loss sum, val correct)."""
        model = self.model
        table = {"loss": values[:, LOSS] / self.n,
                 "accuracy": values[:, CORRECT] / model._accuracy_count(model.loss, self.n)}
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

    def _diverged(self, epoch: int, value: float) -> None:
        self._restore_last_good()
        good = self.read_upto
        kept = f"the weights from the end of epoch {good}" if good else "the weights from before training"
        lr = self.model.optimizer.learning_rate
        message = (
            f"the loss became {value} in epoch {epoch + 1}, so training stopped and {kept} "
            f"were kept. The learning rate ({lr:g}) is probably too large: try a smaller one "
            "(for example a tenth of it), or scale the inputs to small values."
        )
        self.history.stop_reason = message
        warnings.warn(message, RuntimeWarning, stacklevel=4)  # at the fit call

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _as_shape(size) -> Shape:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return (_checks.positive_int(int(size), "input_size"),)
    try:
        shape = tuple(size)
    except TypeError:
        raise ValueError(
            f"expected input_size as a positive integer or a shape tuple. Received: {size!r}"
        ) from None
    for s in shape:
        _checks.positive_int(s, "input_size")
    if not shape:
        raise ValueError("expected input_size as a positive integer or a shape tuple. Received: ()")
    return tuple(int(s) for s in shape)
