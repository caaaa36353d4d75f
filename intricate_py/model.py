"""Model: a chain of layers that trains with mini-batch gradient descent."""

from __future__ import annotations

import contextlib
import math
from typing import Iterable, Sequence

import numpy as np

from . import _checks
from .backends import Array, Backend, select_backend
from .callbacks import Callback, as_callbacks
from .fitting import FIRST_LOSS, LOSS, VAL_LOSS, DeviceData, Run, StepPlan
from .layers import Layer, Parameter, chain
from .layers.base import Recordings, Shape, Workspace, _batch_shape_text, _ClassOrInstanceMethod
from .losses import LOSSES, Loss, warn_if_mismatched
from .optimizers import OPTIMIZERS, Optimizer
from .training import HaltingCondition, History

#: Rows per forward pass in predict and evaluate when no batch size is given.
PREDICT_BATCH = 1024

#: compile's names for losses and optimizers (Keras's), made with their defaults
LOSS_NAMES = {
    "mse": "MeanSquared", "mean_squared_error": "MeanSquared",
    "mae": "MeanAbsolute", "mean_absolute_error": "MeanAbsolute",
    "categorical_crossentropy": "CategoricalCrossEntropy",
    "sparse_categorical_crossentropy": "CategoricalCrossEntropy",
    "binary_crossentropy": "BinaryCrossEntropy",
}
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad"}


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
        if seed is not None:
            seed = _checks.non_negative_int(seed, "seed")
        self.backend = select_backend(device, _checks.float_dtype(dtype))
        self.seed = seed
        init_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(init_seed)
        self._shuffle_rng = np.random.default_rng(shuffle_seed)
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        #: set True (by a callback) to stop fit after the current epoch
        self.stop_training = False
        self._training = False  # True while fit runs
        self._workspace = Workspace(self.backend)
        self._predictions = Recordings()  # of predict's passes, by rows
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
            except _checks.TooLarge:
                raise
            except ValueError as error:
                raise ValueError(f"layer {i} {layer!r} {error} from {source}") from None
            shape = out
        self.input_shape, self.output_shape = input_shape, shape
        self._pack_parameters()
        self._chain = chain.links(self.layers)

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
        a = _checks.fits_dtype(_checks.numeric_array(x, name), self.dtype, name)
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
        t = _checks.fits_dtype(loss.prepare_targets(y, self.output_shape[0]), self.dtype, names[1])
        if len(x) != len(t):
            raise ValueError(
                f"expected as many targets as samples. Received: {names[0]} has {len(x)} "
                f"rows, {names[1]} has {len(t)}"
            )
        return x, t

    # --------------------------------------------------------------- running
    def _forward(self, x: Array) -> Array:
        return chain.forward(self._chain, x)

    def predict(self, x, batch_size: int | None = None) -> np.ndarray:
        """Outputs for inputs ``x`` (n, *input_shape) as a numpy array (n, outputs),
        computed ``batch_size`` rows at a time (1024 by default), always in
        inference mode (Dropout passes its input through), even when called
        from a callback during fit."""
        x = self._inputs(x)
        chunk = PREDICT_BATCH if batch_size is None else _checks.positive_int(batch_size, "batch_size")
        if self._training:  # called during fit
            with self._mode(training=False):
                return self._predict(x, chunk)
        return self._predict(x, chunk)

    def _predict(self, x: np.ndarray, chunk: int) -> np.ndarray:
        if len(x) <= chunk:  # the common, lean path: one pass
            return self._predict_chunk(x)
        out = np.empty((len(x), *self.output_shape), self.dtype)
        for start in range(0, len(x), chunk):
            out[start : start + chunk] = self._predict_chunk(x[start : start + chunk])
        return out

    def _predict_chunk(self, x: np.ndarray) -> np.ndarray:
        """One forward pass. On a backend that records (the GPU), the pass
        for each number of rows is recorded once and then replayed: the
        input goes into a buffer kept for it, then one submission and one
        readback."""
        backend = self.backend
        if not backend.records:
            return backend.to_numpy(self._forward(backend.asarray(x)))
        inputs = self._workspace.get("predict_x", len(x), self.input_shape)
        backend.write(inputs, x)
        replay = self._predictions.get(len(x))
        if replay is not None:
            recording, outputs = replay
            backend.replay(recording, {})
            return backend.to_numpy(outputs)
        with backend.record() as recording:
            outputs = self._forward(inputs)
        if recording.complete:
            self._predictions.put(len(x), (recording, outputs))
        return backend.to_numpy(outputs)

    def __call__(self, x) -> np.ndarray:
        """``model(x)`` is ``model.predict(x)``."""
        return self.predict(x)

    def evaluate(self, x, y, loss: Loss | None = None, batch_size: int | None = None) -> dict:
        """``{"loss": float, "accuracy": float}`` over ``x`` and targets ``y``."""
        loss = self._resolve_loss(loss)
        x, t = self._data(x, y, loss)
        chunk = PREDICT_BATCH if batch_size is None else _checks.positive_int(batch_size, "batch_size")
        acc = self.backend.zeros((2,))
        data = DeviceData(self, "eval", x, t, min(chunk, len(x)))
        self._accumulate_metrics(data, loss, acc, 0)
        loss_sum, correct = (float(v) for v in self.backend.to_numpy(acc))
        return {"loss": loss_sum / len(x), "accuracy": correct / self._accuracy_count(loss, len(x))}

    def _accumulate_metrics(self, data: DeviceData, loss: Loss, acc: Array, index: int) -> None:
        """``acc[index] +=`` the loss sum over ``data``, ``acc[index + 1] +=`` its correct count."""
        accuracy = loss.accuracy_kind(self.output_shape[0])
        with self._mode(training=False):
            for xb, tb in data.batches():
                loss.accumulate(self.backend, self._forward(xb), tb, acc, index, accuracy)

    @contextlib.contextmanager
    def _mode(self, training: bool):
        """Every layer's ``training`` flag (and the model's) set for a
        while, then restored."""
        before, model_before = [layer.training for layer in self.layers], self._training
        for layer in self.layers:
            layer.training = training
        self._training = training
        try:
            yield
        finally:
            for layer, flag in zip(self.layers, before):
                layer.training = flag
            self._training = model_before

    def _accuracy_count(self, loss: Loss, n: int) -> int:
        width = self.output_shape[0]
        return n * width if loss.accuracy_kind(width).startswith("binary") else n

    def _resolve_loss(self, loss: Loss | str | None) -> Loss:
        loss = _as_loss(loss) if loss is not None else self.loss
        if loss is None:
            raise ValueError(
                "expected a loss, e.g. loss=MeanSquared() (or model.compile(loss=...) first). "
                "Received: loss=None"
            )
        return loss

    # --------------------------------------------------------------- training
    def compile(
        self,
        optimizer: Optimizer | str | None = None,
        loss: Loss | str | None = None,
        metrics: Sequence[str] | None = None,
    ) -> None:
        """Set the optimizer and loss that fit and evaluate use, as Keras's
        compile: objects, or names with default settings — losses "mse",
        "mae", "categorical_crossentropy" (integer labels too, so also
        "sparse_categorical_crossentropy"), "binary_crossentropy";
        optimizers "sgd", "adam", "adamw", "adagrad". ``metrics`` may name
        "accuracy", which fit and evaluate always report."""
        if optimizer is not None:
            self.optimizer = _as_optimizer(optimizer)
        if loss is not None:
            self.loss = _as_loss(loss)
        for metric in metrics or ():
            if metric not in ("accuracy", "acc"):
                raise ValueError(
                    "expected metrics=['accuracy'] (fit and evaluate report the loss and the accuracy). "
                    f"Received: {metric!r}"
                )

    def fit(
        self,
        x,
        y,
        loss: Loss | str | None = None,
        optimizer: Optimizer | str | None = None,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_data: tuple | None = None,
        validation_split: float = 0.0,
        verbose: bool | int = False,
        halting_condition: HaltingCondition | None = None,
        callbacks: Iterable[Callback] | None = None,
    ) -> History:
        """Train with mini-batch gradient descent and return the History.

        ``x``: the inputs, (n, *input_shape) — for a Dense first layer
        (n, features), for images (n, channels, height, width) — as a numpy
        array, nested lists, or anything numpy reads as numbers (a pandas
        DataFrame, a torch CPU tensor); integers and float64 are cast to the
        model's dtype, and every value must be finite and fit it.
        ``y``: the targets, one row per sample of x. For MeanSquared and
        MeanAbsolute (n, outputs) values; for CategoricalCrossEntropy
        integer class labels (n,) or (n, 1) in [0, outputs), or one-hot or
        probability rows (n, outputs); for BinaryCrossEntropy values in
        [0, 1] of shape (n, outputs), or (n,) for one output. A pandas
        Series works as a 1-D array.

        ``loss`` and ``optimizer`` (objects, or compile's names) default to
        those of compile or of the last fit. ``validation_data=(x_val,
        y_val)`` is evaluated after each epoch; ``validation_split`` (in
        [0, 1)) takes that fraction from the end of x and y instead, before
        any shuffling, as Keras does. ``verbose``: 1 (or True) shows a
        progress bar per epoch, 2 one bar for the whole fit. Training stops
        early when ``halting_condition`` is reached, when a callback sets
        ``model.stop_training`` (a function callback by returning True), or
        when the loss or the weights become NaN or inf: the weights of the
        last epoch where both were finite are then kept, and a warning says
        so. An interrupt (Ctrl-C) or an error leaves the weights of the last
        epoch read back, which are those of a finished step.
        """
        self.loss = self._resolve_loss(loss)
        if optimizer is not None:
            self.optimizer = _as_optimizer(optimizer)
        if self.optimizer is None:
            raise ValueError(
                "expected an optimizer, e.g. optimizer=SGD(0.1) (or model.compile(optimizer=...) first). "
                "Received: optimizer=None"
            )
        epochs = _checks.non_negative_int(epochs, "epochs")
        batch_size = _checks.positive_int(batch_size, "batch_size")
        verbose = _checks.verbosity(verbose)
        callbacks = as_callbacks(callbacks)
        if halting_condition is not None and not isinstance(halting_condition, HaltingCondition):
            raise ValueError(
                "expected a HaltingCondition such as MinLossReached(0.01). "
                f"Received: halting_condition={halting_condition!r}"
            )
        x, t, validation = self._fit_data(x, y, validation_data, validation_split)
        warn_if_mismatched(self.loss, self.layers[-1])
        keys = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if validation else [])
        if halting_condition is not None and halting_condition.monitor not in keys:
            raise ValueError(
                f"expected the halting condition to monitor one of {keys}. "
                f"Received: monitor={halting_condition.monitor!r}"
            )
        batch = min(batch_size, len(x))
        data = DeviceData(self, "train", x, t, batch, shuffle)
        val = DeviceData(self, "val", *validation, min(batch, len(validation[0]))) if validation else None
        self.optimizer.bind(self.backend, self._trained_parameters())
        plan = StepPlan(self)

        def run_epoch(epoch: int, run: Run) -> None:
            if data.shuffling:
                data.shuffle(self._shuffle_rng)
            run.start_epoch(epoch)
            slot = run.slot(epoch)
            index = slot + FIRST_LOSS  # the first step's loss apart (see fitting.Run)
            for view in data.views:
                plan.train_step(data, view, run.metrics, index)
                index = slot + LOSS
                run.step_done()
            if val is not None:
                self._accumulate_metrics(val, self.loss, run.metrics, slot + VAL_LOSS)

        run = Run(self, data, val, epochs, keys, verbose, run_epoch)
        # per-epoch readbacks where an epoch's end must be seen; else a few a second
        watch_every_epoch = halting_condition is not None or bool(callbacks) or verbose == 1
        self.stop_training = False
        for callback in callbacks:
            callback.set_model(self)
            callback.set_params({"epochs": epochs, "steps": data.steps, "verbose": verbose})
            callback.on_train_begin({})
        # divergence is reported once, by the NaN check, not by numpy on the way
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), contextlib.closing(run), \
                self._mode(training=True):
            try:
                for epoch in range(epochs):
                    for callback in callbacks:
                        callback.on_epoch_begin(epoch, {})
                    run_epoch(epoch, run)
                    if watch_every_epoch or epoch == epochs - 1 or run.due(epoch):
                        if run.read_epochs(epoch, halting_condition, callbacks):
                            break
            except BaseException:  # Ctrl-C, or an error: back to a finished step
                run.abandon()
                raise
        last = {k: v[-1] for k, v in run.history.history.items() if v}
        for callback in callbacks:
            callback.on_train_end(last)
        return run.history

    def _fit_data(self, x, y, validation_data, validation_split) -> tuple:
        """fit's (samples, targets, (validation samples, targets) or None), checked."""
        x, t = self._data(x, y, self.loss)
        validation_split = _checks.fraction(validation_split, "validation_split")
        if validation_split:
            if validation_data is not None:
                raise ValueError("expected validation_data or validation_split, not both")
            x, t, validation_data = _split(x, t, validation_split)
        if validation_data is None:
            return x, t, None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(
                f"expected validation_data=(x_val, y_val). Received: {type(validation_data).__name__}"
            )
        names = ("validation_data[0]", "validation_data[1]")
        return x, t, self._data(*validation_data, self.loss, names)

    def _weights_copy(self, into: Array | None = None) -> Array | None:
        """A device copy of every parameter (into ``into`` when given, else
        a new array), for callbacks that keep the best weights."""
        if self._flat is None:
            return None
        into = into if into is not None else self.backend.empty(self._flat.value.shape)
        self.backend.copy(self._flat.value, into)
        return into

    def _restore_weights(self, copy: Array | None) -> None:
        """Put back the parameters of :meth:`_weights_copy` (bit for bit)."""
        if copy is not None:
            self.backend.copy(copy, self._flat.value)

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

    def export(self, path, format: str = "onnx", name: str | None = None) -> list:
        """Write the model for inference outside Python and return the paths
        written: ``format="onnx"`` an ONNX file at ``path`` (the ``export``
        extra), ``format="c"`` ``{name}.c`` and ``{name}.h`` in the folder
        ``path``. See :mod:`intricate_py.export`."""
        from .export import export_model

        return export_model(self, path, format, name)

    # ------------------------------------------------------------ description
    def summary(self) -> "Summary":
        """A table of the layers, their output shapes and parameter counts:
        a string that also shows as the table when typed at a prompt."""
        rows = [("#", "layer", "output shape", "parameters")]
        for i, layer in enumerate(self.layers):
            shape = "?" if layer.output_shape is None else _batch_shape_text(layer.output_shape)
            rows.append((str(i), repr(layer), shape, f"{layer.parameter_count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        total = sum(layer.parameter_count for layer in self.layers)
        lines.append(f"total parameters: {total:,}   device: {self.backend.name}")
        return Summary("\n".join(lines))

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return f"Model([{', '.join(map(repr, self.layers))}], device={self.backend.kind!r})"


class Summary(str):
    """A model's summary table: prints as itself, and a prompt shows it as
    the table (not as an escaped string)."""

    def __repr__(self) -> str:
        return str(self)


def _as_loss(loss) -> Loss:
    return _named(loss, Loss, LOSS_NAMES, LOSSES, "a Loss", "loss")


def _as_optimizer(optimizer) -> Optimizer:
    return _named(optimizer, Optimizer, OPTIMIZER_NAMES, OPTIMIZERS, "an Optimizer", "optimizer")


def _named(value, base: type, names: dict[str, str], classes: dict[str, type], what: str, argument: str):
    """``value`` if it is a ``base`` object, else a new one of the class its
    name (one of ``names``, any case) stands for."""
    if isinstance(value, base):
        return value
    if isinstance(value, str) and value.lower() in names:
        return classes[names[value.lower()]]()
    raise ValueError(f"expected {what} object or one of {sorted(names)}. Received: {argument}={value!r}")


def _split(x: np.ndarray, t: np.ndarray, fraction: float):
    """(x_train, t_train, (x_val, t_val)): the last ``fraction`` of the
    samples for validation, as Keras's validation_split."""
    n = len(x)
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"expected enough samples to split off a validation set. Received: {n} samples "
            f"with validation_split={fraction} ({n - split_at} for validation)"
        )
    return x[:split_at], t[:split_at], (x[split_at:], t[split_at:])


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
