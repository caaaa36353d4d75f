"""Populations: many networks of one architecture, trained at once.

``Population(build, size, seed)`` holds ``size`` members, each the model
``build()`` returns with the initial weights ``Model`` would draw with seed
``seed + i``. One set of operations trains them all: a batch of the data
goes through every member in each operation (batched products and
convolutions, element-wise operations, losses and optimizer updates; on the
GPU one dispatch for every member; see backends/population.py), so that a
population of small networks costs little more than one. Each member's
weights after ``fit`` are those of the member's model trained alone on the
same batches, within float32 rounding on the CPU and bit for bit on the GPU
(whose batched kernels compute each member as a model's do).

Hyper-parameters may differ from member to member: an optimizer's scalar
arguments given as arrays, one value per member (``Adam(learning_rate=
np.geomspace(1e-4, 1e-1, size))``), a schedule's rates and ``loss_weights``
too; ``fit(shuffle="members")`` gives each member its model's own order of
batches. ``fit`` returns a :class:`History` whose
entries hold one value per member per epoch: ``history.history["loss"]``
is (epochs, size). A member whose loss turns NaN or infinite is frozen at
its last good weights while the others go on; ``EarlyStopping`` stops
members one by one. ``population[i]`` is member i as a plain :class:`Model`;
``best()`` the member with the best final validation loss.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable

import numpy as np

from . import _checks
from .backends.base import MemberValues, member_values
from .backends.population import PopulationBackend
from .callbacks import Callback, EarlyStopping, FunctionCallback, TerminateOnNaN, as_callbacks
from .metrics import improves_upward
from .fit_data import Evaluation, metric_keys, metric_slots, metric_table, place, step_arrays
from .fitting import TrainStep, validation_arrays
from .layers import Dropout
from .layers.base import Workspace
from .model import Model, as_loss, as_optimizer
from .model_data import per_name
from .population_fit import Epochs, MemberData, MemberStopping
from .saving.fileio import FormatError, atomic_write, read_safetensors
from .training import History

__all__ = ["Population"]

#: rows a predict or evaluate pass takes by default
_PASS_ROWS = 1024


class Population:
    """``size`` networks made by ``build()`` (a :class:`Model`, built or not),
    member ``i`` starting from the weights a model with ``seed=seed + i``
    draws; trained, evaluated and run together (see the module)."""

    def __init__(self, build: Callable[[], Model], size: int, seed: int = 0):
        if not callable(build):
            raise ValueError(f"expected build, a function that returns a Model. Received: build={build!r}")
        self.size = _checks.positive_int(size, "size")
        self.seed = _checks.non_negative_int(seed, "seed")
        self.build_model = build
        model = _built_model(build)
        base = model.backend
        self.backend = PopulationBackend(base, self.size)
        model.place(self.backend)  # its layers move to the population
        self.model = model
        if model.built:
            self._draw()
        #: the History of the last fit
        self.history: History | None = None
        #: set True (by a callback) to stop fit after the current epoch
        self.stop_training = False
        # the orders of fit's batches, kept from fit to fit as a model keeps its own: the population's
        # (its first member's), and each member's for shuffle="members"
        self.shuffle_rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(2)[1])
        self.member_rngs = [self.shuffle_rng] + [
            np.random.default_rng(np.random.SeedSequence(self.seed + i).spawn(2)[1]) for i in range(1, self.size)]
        # the batch buffers: of batches every member shares, on the base backend; of each member's
        # own batches (shuffle="members"), on the population's
        self._shared, self._own = Workspace(base), Workspace(self.backend)
        self._held_epoch: np.ndarray | None = None

    # ---------------------------------------------------------------- members
    def _draw(self) -> None:
        """Each member's initial weights, drawn as ``Model(seed=seed + i)``
        draws them (and the seed of each Dropout not given one, which a
        model draws in its turn: the members' masks differ as their models' do)."""
        layers = self.model.plan.layers
        drawn: list[list[dict[str, np.ndarray]]] = []
        seeds: dict[int, list[int]] = {k: [] for k, layer in enumerate(layers)
                                       if isinstance(layer, Dropout) and not layer.seed_given}
        for i in range(self.size):
            rng = np.random.default_rng(np.random.SeedSequence(self.seed + i).spawn(2)[0])
            drawn.append([])
            for k, layer in enumerate(layers):
                if k in seeds:
                    layer.seed = None
                drawn[-1].append(layer.create_parameters(rng))
                if k in seeds:
                    seeds[k].append(layer.seed)
        self.backend.write_all([(p.value, np.stack([values[k][name] for values in drawn]))
                                for k, layer in enumerate(layers) for name, p in layer.params.items()])
        for k, seed in seeds.items():
            layers[k].seed = MemberValues(seed, np.int64)
        self.model.plan.built()  # the step values' keys changed

    def _build_from(self, x) -> None:
        if not self.model.built:
            self.model.input_arrays(x)
            self._draw()

    def member_weights(self, i: int) -> list[dict[str, np.ndarray]]:
        """Member ``i``'s parameters and state, layer by layer (as the model's plan orders them)."""
        self._check_built()
        i = self._index(i)
        return [{name: self.backend.member_numpy(p.value, i) for name, p in layer.params.items()}
                for layer in self.model.plan.layers]

    def __getitem__(self, i: int) -> Model:
        """Member ``i`` as a plain Model (built by ``build()``) with its
        weights; it shares nothing with the population."""
        weights = self.member_weights(i)
        model = _built_model(self.build_model)
        if model is self.model or model.backend.population:
            raise ValueError("expected build() to make a new Model each call (a member becomes one). "
                             f"Received: {model!r}, the population's own")
        if not model.built:
            model.build(self.model.input_shape)
        layers = model.plan.layers
        if [type(layer) for layer in layers] != [type(layer) for layer in self.model.plan.layers]:
            raise ValueError("expected build() to return the same architecture each time")
        for layer, values, mine in zip(layers, weights, self.model.plan.layers):
            for name, value in values.items():
                model.backend.write(layer.params[name].value, value)
            if isinstance(mine, Dropout) and isinstance(mine.seed, MemberValues):
                layer.seed = int(mine.seed[self._index(i)])
        model.loss, model.loss_weights = self.model.loss, _member_entries(self.model.loss_weights, self._index(i))
        return model

    def __len__(self) -> int:
        return self.size

    def _index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -self.size <= i < self.size:
            raise IndexError(f"expected a member index in [0, {self.size}). Received: {i!r}")
        return int(i) % self.size

    def best(self, monitor: str = "val_loss", mode: str = "auto") -> Model:
        """The member whose ``monitor`` is best at the epoch whose weights it
        holds (its last, or for a frozen or early-stopped member the epoch
        it kept), from the last fit's History, as a plain Model."""
        return self[self.best_index(monitor, mode)]

    def best_index(self, monitor: str = "val_loss", mode: str = "auto") -> int:
        """The index of :meth:`best`'s member."""
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"expected mode 'auto', 'min' or 'max'. Received: mode={mode!r}")
        values = self.scores(monitor)
        if np.isnan(values).all():
            raise ValueError(f"expected a member with a finite {monitor!r}. Received: NaN for every member")
        upward = improves_upward(monitor) if mode == "auto" else mode == "max"
        return int(np.nanargmax(values) if upward else np.nanargmin(values))

    def scores(self, monitor: str = "val_loss") -> np.ndarray:
        """Each member's ``monitor`` at the epoch whose weights it holds (its
        last, or for a frozen or early-stopped member the epoch it kept;
        NaN for one that holds the weights from before training), from the
        last fit's History: (size,)."""
        if self.history is None or not self.history.epoch:
            raise ValueError("expected a fit first: the members are scored by the last fit's History")
        if monitor not in self.history.history:
            raise ValueError(f"expected monitor among {sorted(self.history.history)}. Received: {monitor!r}")
        held = self._held_epoch  # -1: the weights from before training, which no epoch measured
        values = np.asarray(self.history.history[monitor])[np.maximum(held, 0), np.arange(self.size)]
        return np.where(held >= 0, values, np.nan)

    # ---------------------------------------------------------------- running
    def compile(self, optimizer=None, loss=None, loss_weights=None) -> None:
        """The optimizer (its scalar arguments may be arrays, one value per
        member), loss and ``loss_weights`` (each output's a number or an
        array, one value per member) that fit and evaluate use, as Model's compile."""
        if optimizer is not None:
            self.model.optimizer = as_optimizer(optimizer)
        if loss is not None:
            self.model.loss = loss if isinstance(loss, (dict, list, tuple)) else as_loss(loss)
        if loss_weights is not None:
            self.model.loss_weights = loss_weights

    def _output_weights(self, losses: list) -> list:
        """Each output's weight in the total loss, as Model's ``loss_weights``:
        a number, or one per member (an array of ``size``)."""
        weights = self.model.loss_weights
        if weights is None:
            return [1.0] * len(losses)
        entries = per_name(weights, self.model.output_names, "loss_weights", optional=True, data=False)
        values = [1.0 if w is None else member_values(w, _checks.non_negative_float, "loss_weights") for w in entries]
        wrong = [len(v) for v in values if isinstance(v, MemberValues) and len(v) != self.size]
        if wrong:
            raise ValueError(f"expected loss_weights with one value per member of a Population of {self.size}. "
                             f"Received: {wrong[0]} values")
        return values

    def fit(self, x, y=None, loss=None, optimizer=None, loss_weights=None, epochs: int = 1,
            batch_size: int | None = None, shuffle: bool | str = True, validation_data: tuple | None = None,
            validation_split: float = 0.0, verbose: bool | int = False, callbacks: Iterable[Callback] | None = None) -> History:
        """Train every member on the same batches, in the same order (that of
        a model with the population's seed), and return the History: each
        entry (epochs, size). The arguments are Model.fit's of those names
        (arrays of data, streamed in chunks where too large to place whole,
        as Model.fit's; no data sources or sample weights);
        ``shuffle="members"`` gives each member its own order, that of a
        model with its seed, so that each member is its model trained alone. Orders go on from fit to fit, as a model's. A
        member frozen in a fit (diverged, or stopped by EarlyStopping) keeps
        its weights, but its optimizer's state and the step count (the
        population's) go on with the others': a later fit continues it from
        there, not as its model alone would."""
        self.compile(optimizer, loss, loss_weights)
        model = self.model
        if model.optimizer is None:
            raise ValueError("expected an optimizer, e.g. optimizer='adam' (or compile(optimizer=...) first)")
        epochs = _checks.non_negative_int(epochs, "epochs")
        batch_size = _checks.positive_int(32 if batch_size is None else batch_size, "batch_size")
        verbose = _checks.verbosity(verbose)
        self._build_from(x)
        losses = model.output_losses()
        weights = self._output_weights(losses)
        xs, ts = model.data(x, y, losses)
        arrays, held = validation_arrays(model, losses, xs, ts, [], validation_data,
                                         _checks.fraction(validation_split, "validation_split"))
        validation = None if held is None else step_arrays(*held)
        watchers, others = _callbacks(callbacks, self)
        model.prepare_to_train()
        slots = metric_slots(len(model.outputs))
        keys = metric_keys(model, losses, validation is not None)
        step = TrainStep(model, losses, weights, slots)
        batch = min(batch_size, len(arrays[0]))
        if shuffle == "members":
            train = MemberData(self.backend, self._own, arrays, batch, self.member_rngs)
        elif isinstance(shuffle, (bool, np.bool_)):
            train = place(self.backend.base, self._shared, "train", arrays, batch, bool(shuffle))
        else:
            raise ValueError(f"expected shuffle True, False or 'members'. Received: shuffle={shuffle!r}")
        evaluation = None
        if validation is not None:
            evaluation = Evaluation(model, losses, place(self.backend.base, self._shared, "val", validation,
                                                         min(batch, len(validation[0]))))
        n, n_val = len(arrays[0]), 0 if validation is None else len(validation[0])
        self.stop_training = False
        for callback in others:
            callback.set_params({"epochs": epochs, "steps": train.steps, "verbose": verbose, "metrics": list(keys)})
        run = Epochs(self, step, train, evaluation, slots, losses, weights, n, n_val, keys, watchers, others, verbose,
                     epochs)
        # the order of the batches: that of a model with the population's seed (its first member's)
        history = self.history = run.run(self.shuffle_rng)
        self._held_epoch = run.held_epoch
        return history

    def evaluate(self, x, y=None, loss=None, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Each member's loss (and accuracy where the loss classifies) over
        ``x`` and ``y``: arrays of length ``size`` by name."""
        model = self.model
        self._build_from(x)
        losses = model.output_losses(loss)
        xs, ts = model.data(x, y, losses)
        arrays = step_arrays(xs, ts)
        rows = min(_checks.positive_int(batch_size or _PASS_ROWS, "batch_size"), len(arrays[0]))
        slots = metric_slots(len(model.outputs))
        acc = self.backend.zeros((slots.size,))
        Evaluation(model, losses, place(self.backend.base, self._shared, "eval", arrays, rows)).into(acc, 0, slots,
                                                                                                  False)
        values = self.backend.to_numpy(acc).astype(np.float64)
        return metric_table(model, values, losses, self._output_weights(losses), slots, len(arrays[0]))

    def predict(self, x, batch_size: int | None = None) -> np.ndarray | list[np.ndarray]:
        """Every member's outputs for ``x``: (size, n, *output shape), a list
        of them for several outputs."""
        model = self.model
        self._build_from(x)
        xs = model.input_arrays(x)
        rows = min(_checks.positive_int(batch_size or _PASS_ROWS, "batch_size"), len(xs[0]))
        data = place(self.backend.base, self._shared, "predict", xs, rows)
        inference = model.plan.pass_for(training=False)
        parts: list[list[np.ndarray]] = [[] for _ in model.outputs]
        for arrays in data.batches():
            for k, out in enumerate(model.plan.forward(inference, arrays, training=False)):
                parts[k].append(self.backend.to_numpy(out))
        outputs = [np.concatenate(p, axis=1) for p in parts]
        return outputs[0] if len(outputs) == 1 else outputs

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Every member's weights in one safetensors file: one tensor per
        parameter, the members along its first axis (``{layer}.{name}``,
        the layer's position in the model), and the population's size and
        seed. A failed save keeps the previous file."""
        from safetensors.numpy import save

        self._check_built()
        named = [(f"{k}.{name}", layer, name, p.value) for k, layer in enumerate(self.model.plan.layers)
                 for name, p in layer.params.items()]
        tensors = {}
        for (key, layer, name, _), value in zip(named, self.backend.read_all([n[3] for n in named])):
            if not np.isfinite(value).all():
                raise ValueError(f"expected finite weights to save. Received: NaN or inf in {layer!r}'s {name}")
            tensors[key] = np.ascontiguousarray(value)
        metadata = {"format": "intricate-py population", "size": str(self.size), "seed": str(self.seed),
                    "layers": json.dumps([repr(layer) for layer in self.model.plan.layers])}
        atomic_write(path, save(tensors, metadata=metadata))

    @classmethod
    def load(cls, path, build: Callable[[], Model]) -> "Population":
        """The population :meth:`save` wrote, its members made by ``build()``
        (the same architecture); FormatError for a file that does not fit."""
        tensors, metadata = read_safetensors(path)
        if not metadata or metadata.get("format") != "intricate-py population":
            raise FormatError(f"{path}: expected a population file (Population.save). Received: {metadata!r}")
        population = cls(build, int(metadata["size"]), int(metadata["seed"]))
        model = population.model
        if not model.built:
            raise FormatError(f"{path}: expected build() to return a built model (give it input_size) to load "
                              f"into. Received: an unbuilt {model!r}")
        wanted = {f"{k}.{name}": (population.size, *p.value.shape)
                  for k, layer in enumerate(model.plan.layers) for name, p in layer.params.items()}
        found = {name: tuple(t.shape) for name, t in tensors.items()}
        if found != wanted:
            raise FormatError(f"{path}: expected the tensors {wanted}. Received: {found}")
        population.backend.write_all([(p.value, tensors[f"{k}.{name}"]) for k, layer in enumerate(model.plan.layers)
                                      for name, p in layer.params.items()])
        return population

    def _check_built(self) -> None:
        if not self.model.built:
            raise ValueError("expected a built population: fit it first, or have build() give input_size")

    def __repr__(self) -> str:
        return f"Population({self.size} × {self.model!r}, seed={self.seed})"


def _built_model(build: Callable[[], Model]) -> Model:
    model = build()
    if not isinstance(model, Model):
        raise ValueError(f"expected build() to return a Model. Received: {model!r}")
    return model


def _member_entries(value, i: int):
    """Member ``i``'s ``loss_weights``: of each output's entry (a dict's
    values, a list's items), its own where the entry has one a member."""
    def entry(w):
        return float(np.asarray(w)[i]) if np.ndim(w) == 1 else w
    if isinstance(value, dict):
        return {key: entry(w) for key, w in value.items()}
    if isinstance(value, (list, tuple)):
        return [entry(w) for w in value]
    return entry(value)


def _callbacks(callbacks, population: Population) -> tuple[list[MemberStopping], list[Callback]]:
    """EarlyStopping rules, which act per member, and the other callbacks,
    which see each epoch's logs as arrays (one value per member).
    Callbacks made for one Model (checkpoints, schedulers, backups) are
    refused: they read and write a single model."""
    watchers, others = [], []
    for callback in as_callbacks(callbacks):
        if isinstance(callback, EarlyStopping):
            watchers.append(MemberStopping(callback))
        elif isinstance(callback, TerminateOnNaN):
            continue  # a population freezes each diverging member already
        elif isinstance(callback, (Callback, FunctionCallback)) and callback.population_ready:
            callback.set_model(population)
            others.append(callback)
        else:
            raise ValueError(f"expected callbacks that a Population can run: EarlyStopping (per member), "
                             f"TerminateOnNaN, or your own Callback subclasses (logs hold arrays, one value per "
                             f"member). Received: {callback!r}, which acts on a single Model")
    return watchers, others
