"""Model: a graph of layer calls (a path of layers being the common case)
that trains with mini-batch gradient descent."""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Sequence

import numpy as np

from . import _checks
from .backends import Backend, select_backend
from ._threads import holding
from .backends.base import BindingTooLarge
from .callbacks import PREDICT_HOOKS, TEST_HOOKS, Callback, Hooks, as_callbacks
from .data import (BatchSource, SourceData, batch_converter, is_batch_source, refuse_sample_weight,
                   refuse_with_source, sample_weights, split_batch)
from .fit_data import Evaluation, bind_metrics, metric_slots, metric_table, placed, step_arrays
from .fitting import Trainer
from .graph import Input, Symbol, add_node, as_shape, as_symbols, is_symbolic
from .layers import Layer
from .layers.base import ClassOrInstanceMethod, Recordings, Shape, same_device
from .losses import LOSSES, Loss
from .metrics import get as get_metric
from .model_data import per_name, sample_array, same_length, target_array
from .naming import batch_shape_text, checked_name, unique_name
from .optimizers import OPTIMIZERS, Optimizer
from .plan import Plan
from .store import ParameterStore, Snapshot
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

#: a method run holding the model's lock. A model's buffers (its plan's)
#: serve every call on it, so calls from several threads take turns: a
#: predict on one thread while another fits waits for the fit. The lock is
#: re-entrant: a callback of a fit may predict or save.
_one_call_at_a_time = holding("_lock")


class Model:
    """A network: a path of layers, or a graph of layer calls (Keras's
    functional API).

    ``Model([layer, ...], input_size=...)``: the layers applied in order.
    ``input_size`` (an int, or a shape tuple for images) lets the model
    check the path and make every parameter at construction; without it the
    model is built by the first data it sees.

    ``Model(inputs=..., outputs=...)``: symbolic tensors from ``Input`` and
    layer calls (one, a list, or a dict); several inputs and outputs,
    merge layers and shared layers (a layer called twice shares its
    weights). Inputs take their data by ``Input`` name, outputs by the name
    of the layer that makes them.

    ``device`` is "auto", "cpu" or "gpu"; ``seed`` fixes the initial
    weights, Dropout's masks and the shuffling, so that the same seed and
    data give bit-identical weights.

    Threads: predict and evaluate may be called from any number of
    threads; calls on one model take turns (a predict while another
    thread fits that model waits for the fit to end), and fits of
    different models in different threads give the bits of the same fits
    run one after the other, on either device.
    """

    def __init__(
        self,
        layers: Sequence[Layer] | None = None,
        input_size: int | Sequence[int] | None = None,
        device: str | Backend = "auto",
        dtype: str = "float32",
        seed: int | None = None,
        *,
        inputs=None,
        outputs=None,
        name: str | None = None,
    ):
        if is_symbolic(layers):  # Model(inputs, outputs), as Keras takes them
            layers, inputs, outputs, input_size = None, layers, input_size, None
        if seed is not None:
            seed = _checks.non_negative_int(seed, "seed")
        self.name = unique_name("model") if name is None else checked_name(name)
        self._lock = threading.RLock()  # see _one_call_at_a_time
        self.backend = select_backend(device, _checks.float_dtype(dtype))
        self.seed = seed
        init_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(init_seed)
        #: draws the order of fit's batches
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        self.inputs: list[Symbol] | None = None
        self.outputs: list[Symbol] | None = None
        self.plan: Plan | None = None
        self.store: ParameterStore | None = None
        self.loss = None
        self.loss_weights = None
        #: compile's ``metrics`` (intricate_py.metrics): what fit and evaluate report beside the loss
        self.metrics = None
        self.optimizer: Optimizer | None = None
        #: set True (by a callback) to stop fit after the current epoch
        self.stop_training = False
        #: the History of the last fit (as Keras's): after Ctrl-C or an
        #: error, the epochs whose weights the model holds
        self.history: History | None = None
        self._predictions = Recordings()  # of predict's passes, by rows
        self._rows_per_pass = PREDICT_BATCH  # predict's and evaluate's, unless given; fewer where the device needs
        self._names: tuple[list[str] | None, list[str] | None] = (None, None)  # the keys of dicts given
        if layers is None:
            if inputs is None or outputs is None:
                raise ValueError("expected Model([layers], input_size=...) or Model(inputs=..., outputs=...). "
                                 f"Received: inputs={inputs!r}, outputs={outputs!r}")
            self.path = None
            self._names = (_keys(inputs, "inputs"), _keys(outputs, "outputs"))
            self._set_graph(as_symbols(inputs, "inputs"), as_symbols(outputs, "outputs"))
            return
        if inputs is not None or outputs is not None:
            raise ValueError("expected either a list of layers or inputs= and outputs=, not both")
        self.path = self.layers = _checked_path(layers)
        if input_size is not None:
            self.build(input_size)
        elif self.layers[0].input_shape is not None:
            self.build(self.layers[0].input_shape)

    # ---------------------------------------------------------------- building
    def build(self, input_size: int | Sequence[int]) -> None:
        """Check the path for ``input_size`` and make every parameter."""
        if self.path is None:
            raise ValueError("a model made from inputs and outputs is built already")
        shape = as_shape(input_size)
        symbol = Input(shape)
        x = symbol
        for i, layer in enumerate(self.path):
            source = "the model's input" if i == 0 else f"layer {i - 1} {self.path[i - 1]!r}"
            x = add_node(layer, [x], x.shape, f"layer {i} ", f" from {source}")
        self._set_graph([symbol], [x])

    def _set_graph(self, inputs: list[Symbol], outputs: list[Symbol]) -> None:
        """Order the graph, make every parameter in that order and pack them."""
        _check_io(inputs, outputs)
        plan = Plan(self.backend, inputs, outputs)
        names = [layer.name for layer in plan.layers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"expected each layer of a model to have its own name. Received: {repeated} "
                             "named more than once (pass name=... to the layers)")
        for layer in plan.layers:
            layer.build(layer.input_shape, self.backend, self._init_rng)
        self.inputs, self.outputs, self.plan = inputs, outputs, plan
        if self.path is None:
            self.layers = plan.layers
        self.store = ParameterStore(self.backend, plan.layers)
        plan.built()

    def place(self, backend: Backend) -> None:
        """Run on ``backend`` from now on: a built model's layers move their
        parameters there and are packed anew (a Population places the model
        it is given on its own backend)."""
        self.backend = backend
        if self.built:
            self._set_graph(self.inputs, self.outputs)

    def sync_weights(self) -> None:
        """Before training (or saving, or a snapshot): if a layer this model
        shares with another one was repacked by it or moved to another
        device, bring it back into this model's store. (A layer shared by
        two models is one set of weights, trained by one fit at a time.)"""
        if self.store.current():
            return
        for layer in self.layers:
            if not same_device(layer.backend, self.backend):
                layer.build(layer.input_shape, self.backend)
        self.store = ParameterStore(self.backend, self.layers)

    def _layers_here(self) -> None:
        """Before predict and evaluate, which read the layers' parameters
        wherever a store keeps them: layers moved to another device by
        another model come back (nothing is repacked otherwise, so a
        prediction never disturbs another model's fit)."""
        if any(not same_device(layer.backend, self.backend) for layer in self.layers):
            self.sync_weights()

    @property
    def built(self) -> bool:
        return self.plan is not None

    @property
    def device(self) -> Backend:
        """The backend the model runs on: ``kind``, ``name`` and ``stats()``."""
        return self.backend

    @property
    def dtype(self) -> np.dtype:
        return self.backend.dtype

    @property
    def parameters(self) -> list:
        """The trainable parameters, layer by layer."""
        return [p for layer in self.layers for p in layer.parameters]

    @property
    def input_names(self) -> list[str]:
        """Each input's name: its key where ``inputs`` was a dict, else its Input's name."""
        return self._names[0] or [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Each output's name: its key where ``outputs`` was a dict, else the
        name of the layer that makes it (twice the same layer: ``name``,
        ``name_1``)."""
        if self._names[1]:
            return self._names[1]
        names: list[str] = []
        for s in self.outputs:
            name, k = s.name, 0
            while name in names:
                k += 1
                name = f"{s.name}_{k}"
            names.append(name)
        return names

    @property
    def input_shape(self) -> Shape | list[Shape] | None:
        """The per-sample input shape (a list of them for several inputs)."""
        return _shapes(self.inputs)

    @property
    def output_shape(self) -> Shape | list[Shape] | None:
        """The per-sample output shape (a list of them for several outputs)."""
        return _shapes(self.outputs)

    @property
    def is_path(self) -> bool:
        """Whether the model is a path of layers: one input, one output, each
        layer once, each taking the one before."""
        if self.path is not None:
            return True
        nodes = self.plan.nodes
        if len(self.inputs) != 1 or len(self.outputs) != 1 or len(nodes) != len(self.layers):
            return False
        previous = self.inputs[0]
        for node in nodes:
            if node.inputs != [previous]:
                return False
            previous = node.output
        return previous is self.outputs[0]

    @property
    def shuffle_state(self) -> dict:
        """The state of the generator that shuffles fit's batches."""
        return self.shuffle_rng.bit_generator.state

    @shuffle_state.setter
    def shuffle_state(self, state: dict) -> None:
        self.shuffle_rng.bit_generator.state = state

    # ------------------------------------------------------------------- data
    def input_arrays(self, x, name: str = "x") -> list[np.ndarray]:
        """``x`` as one array (n, *shape) per input, building on first use."""
        if not self.built:
            first = _checks.numeric_array(x, name)
            self.build(first.shape[1:] if first.ndim > 1 else (1,))
        names = self.input_names
        entries = per_name(x, names, name)
        arrays = []
        for k, (entry, symbol) in enumerate(zip(entries, self.inputs)):
            label = name if len(names) == 1 else f"{name}[{names[k]!r}]"
            what = "the model's input" if len(names) == 1 else f"the input {names[k]!r}"
            arrays.append(sample_array(entry, symbol.shape, self.dtype, label, what))
            for node in self.plan.nodes:  # layers that take it as it is, such as an Embedding's ids
                if any(s is symbol for s in node.inputs):
                    node.layer.check_data(arrays[-1], label)
        same_length([(f"{name}[{names[k]!r}]" if len(names) > 1 else name, a) for k, a in enumerate(arrays)])
        return arrays

    def target_arrays(self, y, losses: list[Loss | None], name: str = "y") -> list[np.ndarray | None]:
        """``y`` as one target array per output with a loss (None for the others)."""
        names = self.output_names
        entries = per_name(y, names, name, optional=True)
        targets = []
        for k, (entry, loss, symbol) in enumerate(zip(entries, losses, self.outputs)):
            label = name if len(names) == 1 else f"{name}[{names[k]!r}]"
            if loss is None:
                targets.append(None)
                continue
            if entry is None:
                raise ValueError(f"expected targets for the output {names[k]!r}, which has a loss. Received: none")
            targets.append(target_array(loss, entry, symbol.shape, self.dtype, label))
        return targets

    def data(self, x, y, losses: list[Loss | None], names=("x", "y")) -> tuple[list[np.ndarray], list]:
        """Inputs and targets of fit or evaluate, checked: one array per input,
        one per output (None where an output has no loss)."""
        xs = self.input_arrays(x, names[0])
        ts = self.target_arrays(y, losses, names[1])
        same_length([(names[0], xs[0])] + [(names[1], t) for t in ts if t is not None])
        return xs, ts

    def output_losses(self, loss=None) -> list[Loss | None]:
        """The loss of each output: ``loss`` (or compile's, or the last fit's)
        resolved: one loss for every output, a list in order, or a dict by
        output name (an output left out has none)."""
        loss = self.loss if loss is None else loss
        if loss is None:
            raise ValueError(
                "expected a loss, e.g. loss=MeanSquared() (or model.compile(loss=...) first). "
                "Received: loss=None"
            )
        if isinstance(loss, (dict, list, tuple)):
            entries = per_name(loss, self.output_names, "loss", optional=True, data=False)
            losses = [None if e is None else as_loss(e) for e in entries]
            if all(e is None for e in losses):
                raise ValueError(f"expected a loss for at least one of the outputs {self.output_names}")
            return losses
        return [as_loss(loss)] * len(self.outputs)

    def output_weights(self, losses: list[Loss | None], weights=None) -> list[float]:
        """Each output's weight in the total loss (``loss_weights``, by
        default compile's, else 1)."""
        weights = self.loss_weights if weights is None else weights
        if weights is None:
            return [1.0] * len(losses)
        entries = per_name(weights, self.output_names, "loss_weights", optional=True, data=False)
        return [1.0 if w is None else _checks.non_negative_float(w, "loss_weights") for w in entries]

    # --------------------------------------------------------------- running
    def predict(self, x, batch_size: int | None = None, callbacks: Iterable[Callback] | None = None,
                steps: int | None = None) -> np.ndarray | list[np.ndarray]:
        """Outputs for inputs ``x`` as a numpy array (n, *output shape) — a
        list, one per output, for several outputs — computed ``batch_size``
        rows at a time (by default 1024, or as many as the device's
        largest binding holds), always in inference mode (Dropout passes
        its input through), even when called from a callback during fit.
        ``x``: an array, or for several inputs a list in order or a dict by
        Input name. ``callbacks``: their predict hooks run around each pass
        (``on_predict_batch_end`` gets its outputs as ``logs["outputs"]``).
        ``x`` may make its own batches (a ``data.Dataset``, a generator or
        iterable of ``x`` or ``(x,)`` batches, a PyTorch ``DataLoader``; a
        batch's targets are ignored), with ``steps`` batches (by default all)."""
        source = _source(x, None, batch_size, steps)
        if source is not None:
            with self._lock:
                return self._predict_batches(source, callbacks)
        with self._lock:  # as _one_call_at_a_time does, written out in the call served most often
            xs = self.input_arrays(x)
            self._layers_here()
            hooks = _hooks(self, callbacks, PREDICT_HOOKS, {"verbose": 0, "steps": None})
            if hooks is not None:
                hooks.call("on_predict_begin", {})
            outs = self._in_passes(batch_size, len(xs[0]), self._predict_all, xs, hooks)
            if hooks is not None:
                hooks.call("on_predict_end", {})
        return outs[0] if len(outs) == 1 else outs

    def _predict_batches(self, source: BatchSource, callbacks) -> np.ndarray | list[np.ndarray]:
        """predict on the batches of a Dataset, generator or DataLoader
        (their x; targets are ignored), concatenated."""
        hooks = None
        parts = []
        for i, batch in enumerate(source.epoch()):
            xs = self.input_arrays(split_batch(batch, "x", targets=False)[0], "x (a batch's x)")
            if i == 0:
                self._layers_here()
                hooks = _hooks(self, callbacks, PREDICT_HOOKS, {"verbose": 0, "steps": source.known_steps})
                if hooks is not None:
                    hooks.call("on_predict_begin", {})
            if hooks is not None:
                hooks.call("on_predict_batch_begin", i, {})
            outs = [np.array(o) for o in self._predict_chunk(xs)]
            if hooks is not None:
                hooks.call("on_predict_batch_end", i, {"outputs": outs[0] if len(outs) == 1 else outs})
            parts.append(outs)
        if not parts:
            raise ValueError(f"expected at least one batch from x. Received: none from {type(source.x).__name__}")
        if hooks is not None:
            hooks.call("on_predict_end", {})
        outs = [np.concatenate(column) for column in zip(*parts)]
        return outs[0] if len(outs) == 1 else outs

    def _in_passes(self, batch_size: int | None, n: int, work: Callable, *args):
        """``work(rows, *args)`` on ``n`` samples, whose passes take up to
        ``rows`` rows: ``batch_size``, or by default PREDICT_BATCH, fewer
        where an array of a pass would be larger than the device lets one
        binding hold (see :meth:`_in_fewer_rows`)."""
        rows = self._rows_per_pass if batch_size is None else _checks.positive_int(batch_size, "batch_size")
        try:
            return work(rows, *args)
        except BindingTooLarge as error:
            if batch_size is not None:
                raise
            return self._in_fewer_rows(error, min(rows, n), work, *args)

    def _in_fewer_rows(self, error: BindingTooLarge, rows: int, work: Callable, *args):
        """``work`` again after a pass of ``rows`` rows needed an array
        larger than a binding: with fewer rows (in proportion, and at least
        one fewer each time) until it fits; the model keeps the number."""
        while True:
            fewer = min(rows - 1, rows * error.limit // error.nbytes)
            if fewer < 1:
                raise error
            self._rows_per_pass = rows = fewer
            try:
                return work(rows, *args)
            except BindingTooLarge as again:
                error = again

    def _predict_all(self, rows: int, xs: list[np.ndarray], hooks=None) -> list[np.ndarray]:
        """Each output for inputs ``xs``, in passes of ``rows`` rows
        (``hooks``: callbacks with predict hooks, called around each)."""
        n = len(xs[0])
        if n <= rows and hooks is None:  # the common, lean path: one pass
            return self._predict_chunk(xs)
        outs = [np.empty((n, *s.shape), self.dtype) for s in self.outputs]
        for i, start in enumerate(range(0, n, rows)):
            if hooks is not None:
                hooks.call("on_predict_batch_begin", i, {})
            parts = self._predict_chunk([x[start : start + rows] for x in xs])
            for out, part in zip(outs, parts):
                out[start : start + rows] = part
            if hooks is not None:
                hooks.call("on_predict_batch_end", i, {"outputs": parts[0] if len(parts) == 1 else parts})
        return outs

    def _predict_chunk(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """One forward pass. On a backend that records (the GPU), the pass
        for each number of rows is recorded once and then replayed: the
        inputs go into buffers kept for them, then one submission and a
        readback per output."""
        backend, plan = self.backend, self.plan
        inference = plan.pass_for(training=False)
        if not backend.records:
            return [backend.to_numpy(a) for a in plan.forward(inference, [backend.asarray(x) for x in xs], False)]
        rows = len(xs[0])
        buffers = [plan.buffers.get(f"predict_x{k}", rows, s.shape) for k, s in enumerate(self.inputs)]
        for buffer, x in zip(buffers, xs):
            backend.write(buffer, x)
        replay = self._predictions.get(rows)
        if replay is not None:
            recording, outputs = replay
            backend.replay(recording, {})
            return [backend.to_numpy(a) for a in outputs]
        with backend.record() as recording:
            outputs = plan.forward(inference, buffers, False)
        if recording.complete:
            self._predictions.put(rows, (recording, outputs))
        return [backend.to_numpy(a) for a in outputs]

    def __call__(self, x):
        """On symbolic tensors, this model's graph applied to them (its
        layers, and so their weights, shared): a model as a block of
        another. On data, ``model.predict(x)``."""
        if not is_symbolic(x):
            return self.predict(x)
        given = as_symbols(x, "the inputs of a model called as a layer")
        if not self.built:
            self.build(given[0].shape)
        if len(given) != len(self.inputs):
            raise ValueError(f"{self.name} takes {len(self.inputs)} inputs {self.input_names}. "
                             f"Received: {len(given)}")
        mapping = {}
        for own, new in zip(self.inputs, given):
            if own.shape != new.shape:
                raise ValueError(f"{self.name} takes inputs of shape {batch_shape_text(own.shape)} as "
                                 f"{own.name!r}. Received: {batch_shape_text(new.shape)} from {new.source()}")
            mapping[id(own)] = new
        for node in self.plan.nodes:
            mapping[id(node.output)] = node.layer([mapping[id(s)] for s in node.inputs]
                                                  if node.layer.n_inputs is None else mapping[id(node.inputs[0])])
        outs = [mapping[id(s)] for s in self.outputs]
        return outs[0] if len(outs) == 1 else outs

    @_one_call_at_a_time
    def evaluate(self, x, y=None, loss=None, batch_size: int | None = None,
                 callbacks: Iterable[Callback] | None = None, steps: int | None = None, metrics=None,
                 return_dict: bool = True, sample_weight=None):
        """The loss and metrics over ``x`` and targets ``y``:
        ``{"loss": float, "accuracy": float}``, and for several outputs the
        total loss with each output's (``"label_loss"``) and metrics.
        ``metrics`` (by default compile's or the last fit's; see
        :mod:`intricate_py.metrics`) as fit reports them; with no metrics
        asked for, the accuracy where a loss classifies. ``return_dict=False``
        gives Keras's list, [loss, metric, ...] (the loss alone where nothing
        else is reported).
        ``callbacks``: their test hooks run around the evaluation and each
        batch (a readback a batch where one has ``on_test_batch_end``).
        ``x`` may make its own batches, as fit's may (then ``steps``
        batches, by default all). ``sample_weight`` weighs each sample's
        loss as fit's does."""
        source = _source(x, y, batch_size, steps)
        if source is not None:
            refuse_sample_weight(x, sample_weight)
            x, y = split_batch(source.first(), "x")[:2]
        losses = self.output_losses(loss)
        xs, ts = self.data(x, y, losses)
        ws = sample_weights(self, losses, ts, sample_weight)
        self._layers_here()
        slots = metric_slots(len(self.outputs), bind_metrics(self, losses, self.metrics if metrics is None else metrics))
        hooks = _hooks(self, callbacks, TEST_HOOKS,
                       {"verbose": 0, "steps": None if source is None else source.known_steps})
        if source is not None:  # batches of their own size: no passes of fewer rows
            data = SourceData(self, "eval", source, batch_converter(self, losses, "x"))
            values, n = self._metric_sums(1, lambda rows: data, losses, slots, hooks)
        else:
            arrays, n = step_arrays(xs, ts, ws), len(xs[0])
            values, n = self._in_passes(batch_size, n, self._metric_sums,
                                        lambda rows: placed(self, "eval", arrays, min(rows, n)), losses, slots, hooks)
        table = metric_table(self, values, losses, self.output_weights(losses), slots, n)
        return _evaluated(table, return_dict)

    def _metric_sums(self, rows: int, data: Callable, losses: list[Loss | None], slots,
                     hooks=None) -> tuple[np.ndarray, int]:
        """evaluate's loss sums and correct counts (one row of ``slots``) over
        ``data(rows)`` (the batches, of ``rows`` rows where they are arrays),
        and the number of samples they had."""
        acc = self.backend.zeros((slots.size,))
        evaluation = Evaluation(self, losses, data(rows))
        evaluation.into(acc, 0, slots, validation=False, hooks=hooks)
        return self.backend.to_numpy(acc).astype(np.float64)[None], evaluation.data.n

    # --------------------------------------------------------------- training
    @_one_call_at_a_time
    def compile(
        self,
        optimizer: Optimizer | str | None = None,
        loss=None,
        metrics=None,
        loss_weights=None,
    ) -> None:
        """Set the optimizer and loss that fit and evaluate use, as Keras's
        compile: objects, or names with default settings — losses "mse",
        "mae", "categorical_crossentropy" (integer labels too, so also
        "sparse_categorical_crossentropy"), "binary_crossentropy";
        optimizers "sgd", "adam", "adamw", "adagrad". For several outputs
        ``loss`` and ``loss_weights`` may be lists in output order or dicts
        by output name. ``metrics``: what fit and evaluate report beside the
        loss, as Keras's (:mod:`intricate_py.metrics`): Metric objects or
        names ("accuracy", "precision", "auc", "mae", ...), a list, or for
        several outputs a list with an entry per output or a dict by output
        name; by default (None, also after a compile that gave some) the
        accuracy where a loss classifies."""
        _checked_metrics(metrics)
        optimizer = self.optimizer if optimizer is None else as_optimizer(optimizer)
        loss, loss_weights = self._checked_loss(loss, loss_weights)
        if metrics is not None and self.built and loss is not None:
            bind_metrics(self, self.output_losses(loss), metrics)  # ValueError for entries that fit no output
        self.loss, self.loss_weights, self.optimizer = loss, loss_weights, optimizer
        self.metrics = metrics  # as Keras's compile: None drops an earlier compile's metrics

    @_one_call_at_a_time
    def fit(
        self,
        x,
        y=None,
        loss=None,
        optimizer: Optimizer | str | None = None,
        epochs: int = 1,
        batch_size: int | None = None,
        shuffle: bool = True,
        validation_data: tuple | None = None,
        validation_split: float = 0.0,
        verbose: bool | int = False,
        halting_condition: HaltingCondition | None = None,
        callbacks: Iterable[Callback] | None = None,
        loss_weights=None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        metrics=None,
        sample_weight=None,
        class_weight=None,
    ) -> History:
        """Train with mini-batch gradient descent and return the History.

        ``x``: the inputs, (n, *input_shape) — for a Dense first layer
        (n, features), for images (n, channels, height, width) — as a numpy
        array, nested lists, or anything numpy reads as numbers (a pandas
        DataFrame, a torch CPU tensor); integers and float64 are cast to the
        model's dtype, and every value must be finite and fit it. For
        several inputs, a list in order or a dict by Input name.
        ``y``: the targets, one row per sample of x. For MeanSquared and
        MeanAbsolute (n, outputs) values; for CategoricalCrossEntropy
        integer class labels (n,) or (n, 1) in [0, outputs), or one-hot or
        probability rows (n, outputs); for BinaryCrossEntropy values in
        [0, 1] of shape (n, outputs), or (n,) for one output. A pandas
        Series works as a 1-D array. For several outputs, a list in order
        or a dict by output name.

        ``x`` may instead make its own batches (then no ``y`` and no
        ``batch_size``, as in Keras): an ``intricate_py.data.Dataset``
        (Keras's PyDataset; its batches in a new order each epoch when
        ``shuffle``), a PyTorch ``DataLoader``, or a generator or other
        iterable of ``(x, y)`` batches; ``steps_per_epoch`` batches make an
        epoch (required for a generator over several epochs, whose length
        can't be known; below a Dataset's or DataLoader's length, an epoch
        goes on where the last one stopped, as Keras's do, and a new pass
        begins after a whole one). ``validation_data`` may be one too, with
        ``validation_steps``. Arrays larger than ``data.STREAM_BYTES`` (a
        memmap larger than ``data.MAPPED_STREAM_BYTES``) stream in chunks:
        see ``intricate_py.data``.

        ``sample_weight`` (n,) weighs each sample's loss and gradient, as
        Keras's: a batch's loss is Σ wᵢ lᵢ / n (the weights' sum is not the
        divisor), a sequence sample's weight applies to each of its tokens,
        and the reported loss is weighted (the accuracy is not);
        ``class_weight`` (a dict class -> weight) makes them from the
        targets' classes. ``validation_data`` may add its own sample
        weights as a third entry; batches as ``(x, y, sample_weight)``.

        ``loss`` and ``optimizer`` (objects, or compile's names) default to
        those of compile or of the last fit; for several outputs ``loss``
        and ``loss_weights`` may be lists or dicts by output name, and the
        loss trained is the weighted sum. ``validation_data=(x_val,
        y_val)`` is evaluated after each epoch; ``validation_split`` (in
        [0, 1)) takes that fraction from the end of x and y instead, before
        any shuffling, as Keras does. ``verbose``: 1 (or True) shows a
        progress bar per epoch, 2 one bar for the whole fit. Training stops
        early when ``halting_condition`` is reached, when a callback sets
        ``model.stop_training`` (a function callback by returning True), or
        when the loss or the weights become NaN or inf: the weights of the
        last epoch where both were finite are then kept, and a warning says
        so; the History then ends with the epoch that diverged (its loss NaN
        or inf, as Keras records it). An interrupt (Ctrl-C) or an error
        leaves the weights of the last epoch read back, which are those of
        a finished step, and ``model.history`` the epochs they had done.

        ``epochs`` is the number of the last epoch, as in Keras:
        ``initial_epoch`` (the epochs done before) continues a fit, so
        ``fit(..., epochs=10, initial_epoch=3)`` runs epochs 4 to 10; the
        History, the logs, the progress bars, the callbacks (their epoch
        numbers: ``ModelCheckpoint("ck-{epoch}")`` writes ck-4 on) and
        LearningRateScheduler count on from it. A schedule of the step
        continues from ``optimizer.iterations``.

        ``metrics`` (by default compile's or the last fit's), as compile
        takes them: reported per epoch in the History and the logs, named as
        Keras names them ("precision", "val_precision", per output
        "out_precision"), computed on the device with the loss.

        Every argument is checked before anything changes: a fit that
        raises ValueError keeps the model's loss and optimizer (and its
        state).
        """
        loss, loss_weights = self._checked_loss(loss, loss_weights)
        if loss is None:
            self.output_losses()  # ValueError saying a loss is needed
        optimizer = self.optimizer if optimizer is None else as_optimizer(optimizer)
        if optimizer is None:
            raise ValueError(
                "expected an optimizer, e.g. optimizer=SGD(0.1) (or model.compile(optimizer=...) first). "
                "Received: optimizer=None"
            )
        trainer = Trainer(self, x, y, loss, loss_weights, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                          validation_data=validation_data, validation_split=validation_split, verbose=verbose,
                          halting_condition=halting_condition, callbacks=callbacks, initial_epoch=initial_epoch,
                          steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                          metrics=_checked_metrics(metrics), sample_weight=sample_weight,
                          class_weight=class_weight)
        # every argument checked: now the model takes them
        self.loss, self.loss_weights, self.optimizer = loss, loss_weights, optimizer
        if metrics is not None:
            self.metrics = metrics
        return trainer.run()

    def _checked_loss(self, loss, loss_weights) -> tuple:
        """compile's and fit's ``loss`` and ``loss_weights`` (None: the
        model's), checked against the outputs once the model is built;
        nothing is kept."""
        if loss is not None and not isinstance(loss, (dict, list, tuple)):
            loss = as_loss(loss)
        if self.built:
            if loss is not None:
                self.output_losses(loss)  # ValueError for names that fit no output
            if loss_weights is not None:
                self.output_weights([None] * len(self.outputs), loss_weights)
        return (self.loss if loss is None else loss), (self.loss_weights if loss_weights is None else loss_weights)

    def prepare_to_train(self) -> None:
        """Before a fit's first step: the parameters in this model's store,
        the optimizer bound to them (its state kept if it trained them before)."""
        self.sync_weights()
        self.optimizer.bind(self.backend, [self.store.flat] if self.store.flat is not None else [],
                            parts=self.store.parts())

    @_one_call_at_a_time
    def snapshot_weights(self, into: Snapshot | None = None) -> Snapshot:
        """A copy, on the model's device, of every parameter and state (into
        ``into``, an earlier snapshot of this model, when it fits): what
        EarlyStopping keeps of the best epoch."""
        self.sync_weights()
        return self.store.snapshot(into if self.store.fits(into) else None)

    @_one_call_at_a_time
    def restore_weights(self, snapshot: Snapshot) -> None:
        """Put back the parameters and state of :meth:`snapshot_weights`, bit for bit."""
        self.sync_weights()
        self.store.restore(snapshot)

    # ------------------------------------------------------------------ files
    @_one_call_at_a_time
    def save(self, path, include_optimizer: bool = False) -> None:
        """Write every layer's tensors and the architecture to one safetensors
        file; ``include_optimizer`` adds the optimizer state, the loss and
        the shuffling state, so that training resumes exactly. ValueError
        (and the previous file kept) if a tensor holds NaN or inf."""
        from .saving import save_model

        self.sync_weights()
        save_model(self, path, include_optimizer)

    def _load_new(cls, path, device: str | Backend = "auto", dtype: str | None = None) -> "Model":
        """Rebuild a saved model on ``device`` (dtype: the file's, by default)."""
        from .saving import load_model

        return load_model(path, device, dtype, cls)

    @_one_call_at_a_time
    def _load_into(self, path) -> "Model":
        """Fill this model from a model file, checking that the architecture
        (layer types, configurations, input shapes, connections) is the
        same; the file's optimizer state, if any, comes too. FormatError,
        and the model unchanged, for anything that does not fit."""
        from .saving import load_model_into

        return load_model_into(self, path)

    load = ClassOrInstanceMethod(_load_new, _load_into)

    @_one_call_at_a_time
    def get_weights(self) -> list[np.ndarray]:
        """Every layer's ``get_weights()`` in layer order, each array as the
        layer's attributes give it (Keras's layout for Dense): Dense W
        (inputs, units) and b, Conv2D W (filters, in, kh, kw) and b,
        BatchNormalization gamma, beta, moving_mean, moving_variance. The
        files of :meth:`save_weights` keep PyTorch's layouts instead."""
        from .saving import get_weights

        return get_weights(self)

    @_one_call_at_a_time
    def set_weights(self, weights) -> None:
        """Set every parameter from a list laid out as :meth:`get_weights`
        gives it; ValueError naming the entry and layer that do not fit. A
        dict (a PyTorch ``state_dict()``: names and layouts of the files,
        torch tensors or numpy arrays) is read as :meth:`load_weights` reads it."""
        from .saving import set_weights

        set_weights(self, weights)

    @_one_call_at_a_time
    def save_weights(self, path) -> None:
        """Write the weights alone to a safetensors file: for a path of
        layers, the state_dict of the equivalent ``torch.nn.Sequential``."""
        from .saving import save_weights

        save_weights(self, path)

    @_one_call_at_a_time
    def load_weights(self, path) -> None:
        """Set every parameter from a file of :meth:`save_weights` or
        :meth:`save`, or from a PyTorch ``nn.Sequential`` state_dict, saved
        with ``safetensors.torch.save_file`` or given as it is
        (``module.state_dict()``, an OrderedDict of tensors): tensors
        ``{position}.weight`` and ``.bias`` matched to this model's layers by
        their positions in that Sequential (a layer with its own
        ``activation=`` takes two), every shape checked; a BatchNorm's
        ``num_batches_tracked`` is ignored. FormatError, and nothing
        changed, if one differs."""
        from .saving import load_weights

        load_weights(self, path)

    @_one_call_at_a_time
    def export(self, path, format: str = "onnx", name: str | None = None) -> list:
        """Write the model for inference outside Python and return the paths
        written: ``format="onnx"`` an ONNX file at ``path`` (the ``export``
        extra; its folder must exist), ``format="c"`` ``{name}.c`` and
        ``{name}.h`` in the folder ``path`` (created, with the folders above
        it, where missing). A path of layers has one input ``x`` and one
        output ``y``; a graph's inputs and outputs keep the model's names.
        See :mod:`intricate_py.export`."""
        from .export import export_model

        return export_model(self, path, format, name)

    # ------------------------------------------------------------ description
    def summary(self, print_fn: Callable[[str], object] | None = None) -> None:
        """Print a table of the layers, their output shapes and parameter
        counts (and, for a graph, what each takes its inputs from: Keras's
        "Connected to"), as Keras's: ``print_fn`` (``print`` by default) is
        called with each line. ``str(model)`` is the table as a string."""
        for line in self._summary_lines():
            (print if print_fn is None else print_fn)(line)

    def _summary_lines(self) -> list[str]:
        """The lines of :meth:`summary`'s table."""
        if self.is_path:
            rows = [("#", "layer", "output shape", "parameters")]
            for i, layer in enumerate(self.layers):
                shape = "?" if layer.output_shape is None else batch_shape_text(layer.output_shape)
                rows.append((str(i), repr(layer), shape, f"{layer.parameter_count:,}"))
        else:
            rows = [("#", "layer", "output shape", "parameters", "connected to")]
            rows += [("", f"{s.name} (Input)", batch_shape_text(s.shape), "0", "") for s in self.inputs]
            plan, counted = self.plan, set()
            calls = {id(layer): 0 for layer in self.layers}
            for node in plan.nodes:
                calls[id(node.layer)] += 1
            for i, node in enumerate(plan.nodes):
                layer = node.layer
                count = 0 if id(layer) in counted else layer.parameter_count
                counted.add(id(layer))
                sources = ", ".join(s.name if s.node is None or calls[id(s.node.layer)] == 1
                                    else f"{s.name}[{plan.contexts[plan.position[id(s.node)]].call}]"
                                    for s in node.inputs)
                rows.append((str(i), f"{layer.name} {layer!r}", batch_shape_text(node.output.shape), f"{count:,}",
                             sources))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        total = sum(layer.parameter_count for layer in self.layers)
        lines.append(f"total parameters: {total:,}   device: {self.backend.name}")
        return lines

    def __str__(self) -> str:
        return "\n".join(self._summary_lines())

    def __repr__(self) -> str:
        if self.path is not None:
            return f"Model([{', '.join(map(repr, self.layers))}], device={self.backend.kind!r})"
        return (f"Model(inputs={self.input_names}, outputs={self.output_names}, "
                f"{len(self.layers)} layers, device={self.backend.kind!r})")


def _hooks(model: Model, callbacks, hooks: tuple[str, ...], params: dict) -> Hooks | None:
    """evaluate's or predict's ``callbacks`` given the model, when one of
    them has one of ``hooks`` (else None: nothing to call)."""
    chosen = Hooks(as_callbacks(callbacks))
    if not chosen.has(*hooks):
        return None
    chosen.set_model(model, params)
    return chosen


def _source(x, y, batch_size, steps) -> BatchSource | None:
    """evaluate's and predict's batch source for ``x`` (None for arrays),
    with the arguments that go with it checked."""
    if not is_batch_source(x):
        if steps is not None:
            raise ValueError("expected steps only with x a Dataset, a generator or a DataLoader. "
                             f"Received: steps={steps!r}")
        return None
    refuse_with_source(x, y, batch_size)
    if steps is not None:
        _checks.positive_int(steps, "steps")
    return BatchSource(x, steps, "x")


def _keys(value, what: str) -> list[str] | None:
    """The keys of a dict of inputs or outputs (their names), else None."""
    if not isinstance(value, dict):
        return None
    return [checked_name(key, f"a key of {what}") for key in value]


def _shapes(symbols: list[Symbol] | None) -> Shape | list[Shape] | None:
    """The shape of one tensor, a list for several, None before a path is built."""
    if symbols is None:
        return None
    return symbols[0].shape if len(symbols) == 1 else [s.shape for s in symbols]


def _checked_path(layers) -> list[Layer]:
    layers = list(layers)
    if not layers:
        raise ValueError("expected at least one layer. Received: layers=[]")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"expected Layer objects. Received: {layer!r} at index {i}")
        if layer.n_inputs != 1:
            raise ValueError(f"expected layers of one input in a list of layers. Received: {layer!r} at index {i}, "
                             "which merges several: build the model from inputs and outputs")
    if len({id(layer) for layer in layers}) != len(layers):
        raise ValueError("expected each layer object once; the same one appears twice")
    return layers


def _check_io(inputs: list[Symbol], outputs: list[Symbol]) -> None:
    for s in inputs:
        if not s.is_input:
            raise ValueError(f"expected the model's inputs to come from Input(...). Received: {s.source()}")
    if len({id(s) for s in inputs}) != len(inputs):
        raise ValueError("expected each input once in inputs")
    names = [s.name for s in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"expected inputs of different names. Received: {names}")
    for s in outputs:
        if s.is_input:
            raise ValueError(f"expected outputs computed by layers. Received: the input {s.name!r} as an output")
    if len({id(s) for s in outputs}) != len(outputs):
        raise ValueError("expected each output once in outputs")


def _checked_metrics(metrics):
    """compile's and fit's ``metrics``, each entry checked (a Metric or a
    known name: ValueError listing the names otherwise); their fit to the
    outputs is checked where the outputs are known."""
    if metrics is None:
        return None
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple, dict)):
        entries = [metrics]
    else:
        entries = list(metrics.values()) if isinstance(metrics, dict) else list(metrics)
    for entry in entries:
        for metric in entry if isinstance(entry, (list, tuple)) else [entry]:
            if metric is not None:
                get_metric(metric)
    return metrics


def _evaluated(table: dict, return_dict: bool):
    """evaluate's result: the dict of its metrics, or Keras's list (the loss alone when it is all)."""
    values = {k: float(v[0]) for k, v in table.items()}
    if return_dict:
        return values
    return values["loss"] if len(values) == 1 else list(values.values())


def as_loss(loss) -> Loss:
    return _named(loss, Loss, LOSS_NAMES, LOSSES, "a Loss", "loss")


def as_optimizer(optimizer) -> Optimizer:
    return _named(optimizer, Optimizer, OPTIMIZER_NAMES, OPTIMIZERS, "an Optimizer", "optimizer")


def _named(value, base: type, names: dict[str, str], classes: dict[str, type], what: str, argument: str):
    """``value`` if it is a ``base`` object, else a new one of the class its
    name (one of ``names``, any case) stands for."""
    if isinstance(value, base):
        return value
    if isinstance(value, str) and value.lower() in names:
        return classes[names[value.lower()]]()
    raise ValueError(f"expected {what} object or one of {sorted(names)}. Received: {argument}={value!r}")
