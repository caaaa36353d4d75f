"""The Layer base class: names, shapes, parameters, and the contexts that
hold what a call of a layer keeps between its forward and its backward."""

from __future__ import annotations

import itertools
import math
import types
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from .. import _checks, initializers
from .._checks import checked_values
from ..backends import Array, Backend, NumpyBackend
from ..graph import call_layer, is_symbolic
from .registry import add_layer_type
from ..naming import batch_shape_text, checked_name, shape_text, snake_case, unique_name

Shape = tuple[int, ...]

#: the values Workspace.generation takes, each once (so that two threads
#: growing workspaces at once never leave it at a value a recording saw)
_GENERATIONS = itertools.count(1)


class Parameter:
    """An array of a layer and, when ``trainable``, the gradient
    ``back_propagate`` leaves for it; non-trainable state (moving
    statistics) has no gradient and is never touched by an optimizer."""

    __slots__ = ("name", "value", "grad", "trainable")

    def __init__(self, name: str, value: Array, grad: Array | None, trainable: bool = True):
        self.name = name
        self.value = value
        self.grad = grad
        self.trainable = trainable

    def __repr__(self) -> str:
        kind = "" if self.trainable else ", non-trainable"
        return f"Parameter({self.name}, shape={tuple(self.value.shape)}{kind})"


class Workspace:
    """Reusable per-batch buffers, one per name.

    Each buffer holds ``rows`` rows; it grows when a larger batch arrives and
    never shrinks, and the view of the current batch is kept, so a training
    step allocates nothing once the first step has run.

    ``Workspace.generation`` counts the times any workspace grew: a
    recording of dispatches (which binds the buffers it used) is valid while
    it has not changed.
    """

    generation = 0

    def __init__(self, backend: Backend):
        self.backend = backend
        self._full: dict[str, Array] = {}
        self._views: dict[str, Array] = {}

    def get(self, name: str, rows: int, shape: Shape, dtype=None) -> Array:
        """A (rows, *shape) buffer for ``name`` (``dtype``: np.int32 for indices)."""
        view = self._views.get(name)
        if view is not None and view.shape[0] == rows:
            return view
        full = self._full.get(name)
        if full is None or full.shape[0] < rows:
            full = self._full[name] = self.backend.empty((rows, *shape), dtype)
            Workspace.invalidate()
        view = self._views[name] = self.backend.rows(full, 0, rows)
        return view

    @staticmethod
    def invalidate() -> None:
        """Buffers that recordings bind were replaced: recordings are made anew."""
        Workspace.generation = next(_GENERATIONS)


class Recordings:
    """Recordings of dispatches (or anything that binds workspace buffers)
    by key, forgotten whenever a workspace grows, since that makes new
    buffers and frees the old ones."""

    def __init__(self):
        self._by_key: dict = {}
        self._generation = Workspace.generation

    def _current(self) -> dict:
        if self._generation != Workspace.generation:
            self._by_key.clear()
            self._generation = Workspace.generation
        return self._by_key

    def get(self, key):
        return self._current().get(key)

    def put(self, key, value) -> None:
        self._current()[key] = value

    def __len__(self) -> int:
        return len(self._current())

    def keys(self):
        return self._current().keys()


class Context:
    """What one call of a layer keeps from its forward for its backward: its
    buffers (:meth:`buffer`) and the arrays it saves (as attributes, such as
    ``ctx.x``). A model's plan holds one context for each place where a
    layer is called, so one layer object can run at several places (shared
    weights); a layer used on its own keeps one of its own.

    ``training``: whether this call trains (Dropout drops only then).
    ``call``: which call of the layer this is, 0 for its first.
    ``values``: this step's values from :meth:`Layer.step_values`, marked
    for recording; empty outside training.
    """

    def __init__(self, backend: Backend, call: int = 0):
        self.backend = backend
        self.call = call
        self.training = False
        self.values: dict[str, Any] = {}
        #: ``buffer(name, rows, shape, dtype=None)``: a (rows, *shape) buffer
        #: of this call's, reused from batch to batch (Workspace.get)
        self.buffer = Workspace(backend).get


class ClassOrInstanceMethod:
    """A method that does one thing when called on the class and another on
    an instance: ``Layer.load(path)`` makes a layer, ``layer.load(path)``
    fills this one."""

    def __init__(self, on_class: Callable, on_instance: Callable):
        self.on_class, self.on_instance = on_class, on_instance
        self.__doc__ = f"{on_class.__doc__}\n\nOn an instance: {on_instance.__doc__}"

    def __get__(self, obj, owner):
        if obj is None:
            return types.MethodType(self.on_class, owner)
        return types.MethodType(self.on_instance, obj)


class Layer:
    """A step of a network: a forward pass maps inputs to outputs and a
    backward pass maps dE/d(outputs) to dE/d(inputs), leaving the gradients
    of the layer's parameters for the optimizer.

    Subclasses declare hyperparameters in ``__init__`` (passing ``name`` on
    to this class), compute their output shape in :meth:`output_shape_for`,
    create parameters in :meth:`create_parameters` and implement
    :meth:`call` and :meth:`backward`, keeping what the backward needs in
    the :class:`Context` both receive. Shapes are per sample: a batch adds a
    leading axis.

    What a layer declares, and everything that follows from it:

    * ``create_parameters``: its arrays, trainable unless named in
      ``non_trainable`` (state such as moving statistics: saved, restored,
      never updated by an optimizer); ``file_tensors`` names what a file
      holds of them (``to_file`` and ``from_file`` convert);
    * ``step_values``: scalars that change from training step to step
      (Dropout's key), so that a recorded step replays with new ones;
    * ``n_inputs``: 1, or None for two or more inputs (merge layers), whose
      ``call`` takes them all and whose ``backward_inputs`` returns one
      gradient each;
    * ``fuses_activation``: ``call`` takes ``activation=f``, f an
      ``ActivationFunction``, and computes it in the same pass (Dense's
      epilogue); ``folds_activation_grad``: ``backward`` takes
      ``activation_grad=(f, y)`` and returns the gradient of the input of
      the activation f whose output y is this layer's input (Dense's dY·Wᵀ);
    * ``activation``: the Keras name of an activation the layer applies to
      its own output (Dense's and Conv2D's ``activation=``), or None;
    * ``replayable``: False when ``call`` does per-step work that is not a
      backend operation or a step value (it then runs every step).

    A layer of your own (README, "Layers of your own") is saved and loaded
    once its class is registered (:func:`~intricate_py.register_layer`),
    may run WGSL of its own (:class:`~intricate_py.Kernel`, with numpy
    functions for the CPU), and exports through :meth:`onnx_nodes` and
    :meth:`c_code`.

    Calling a layer on symbolic tensors (``Input``) adds it to a graph and
    returns its symbolic output; on arrays it runs a forward pass in
    inference mode and returns a numpy array.
    """

    #: the name a file stores for this layer type: the class name, or
    #: "package>name" for a custom layer (:func:`~intricate_py.register_layer`)
    type_name: ClassVar[str]
    #: inputs a call takes: 1, or None for two or more (merge layers)
    n_inputs: ClassVar[int | None] = 1
    #: names of the arrays of create_parameters that are state, not trained
    non_trainable: ClassVar[tuple[str, ...]] = ()
    #: call(ctx, x, activation=f) works
    fuses_activation: bool = False
    #: backward(ctx, g, activation_grad=(f, y)) works
    folds_activation_grad: ClassVar[bool] = False
    #: the Keras name of the activation the layer ends with (Dense's activation=), if any
    activation: str | None = None
    #: a recorded training step may be replayed without running call again
    replayable: ClassVar[bool] = True
    #: the tensors a file holds for a built layer of this type (a file
    #: without them cannot fill it), by the names state_dict gives; an
    #: instance may narrow it (a Conv2D made with use_bias=False)
    file_tensors: ClassVar[tuple[str, ...]] = ()
    #: True while the layer trains on its own (a model's fit sets its contexts instead)
    training: bool = False
    #: the training step a forward on the layer's own draws for (Dropout's masks)
    step: int = 0

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__  # register_layer gives a custom layer its "package>name"
        if not abstract:
            add_layer_type(cls)

    def __init__(self, name: str | None = None) -> None:
        self.name = unique_name(snake_case(type(self).__name__)) if name is None else checked_name(name)
        self.backend: Backend | None = None
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.params: dict[str, Parameter] = {}
        self._context: Context | None = None
        self._calls = 0  # symbolic calls so far: each is a node of a graph

    # ---------------------------------------------------------------- building
    @property
    def built(self) -> bool:
        return self.backend is not None

    def output_shape_for(self, input_shape: Shape) -> Shape:
        """The per-sample output shape for ``input_shape`` (a tuple of shapes
        for a layer of several inputs); raises ValueError (saying what was
        expected) when the layer cannot take it."""
        return input_shape

    def infer(self, input_shape) -> Shape:
        """The output shape for ``input_shape``, checked against the input
        shape the layer already has (it takes one shape, whatever calls it)."""
        if self.input_shape is not None and self.input_shape != input_shape:
            raise ValueError(
                f"expects inputs of shape {_any_shape_text(self.input_shape)}, "
                f"received {_any_shape_text(input_shape)}"
            )
        return self.output_shape_for(input_shape)

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Initial values of the parameters (and of the state named in
        ``non_trainable``), by name, drawn from ``rng``."""
        return {}

    def build(
        self,
        input_shape: Shape | int,
        backend: Backend | None = None,
        rng: np.random.Generator | None = None,
    ) -> Shape:
        """Fix the input shape, place the parameters on ``backend`` and return
        the output shape. A layer that already holds parameters (loaded, or
        built before) keeps their values and moves them to ``backend``; on
        the same device it keeps its very parameters (a layer that two
        models share is one set of weights)."""
        input_shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        output_shape = self.infer(input_shape)
        backend = backend or self.backend or NumpyBackend()
        self.input_shape, self.output_shape = input_shape, output_shape
        if self.built and same_device(self.backend, backend):
            self.backend = backend
            return output_shape
        if self.params:
            values = {name: self.backend.to_numpy(p.value) for name, p in self.params.items()}
        else:
            values = self.create_parameters(rng if rng is not None else np.random.default_rng())
        self._place(values, backend)
        return output_shape

    def _place(self, values: dict[str, np.ndarray], backend: Backend) -> None:
        """Make the parameters from ``values`` on ``backend``."""
        self.backend = backend
        self.params = {}
        for name, v in values.items():
            trainable = name not in self.non_trainable
            grad = backend.zeros(v.shape) if trainable else None
            self.params[name] = Parameter(name, backend.from_numpy(v), grad, trainable)

    def _check_input(self, xs: list) -> None:
        """A standalone forward's first step: pass batches of the input
        shape, build on first use (as Keras does), or reject them saying
        what was expected."""
        shape = tuple(tuple(x.shape[1:]) for x in xs)
        shape = shape[0] if self.n_inputs == 1 else shape
        if self.built and shape == self.input_shape:
            return
        if not self.built:
            dtype = getattr(xs[0], "dtype", np.float32)
            self.build(shape, NumpyBackend(np.float64 if dtype == np.float64 else np.float32))
        if shape != self.input_shape:
            raise ValueError(
                f"{self!r} expects a batch of shape {_any_batch_shape_text(self.input_shape)}. "
                f"Received: shape={tuple(xs[0].shape) if self.n_inputs == 1 else [tuple(x.shape) for x in xs]}"
            )

    # --------------------------------------------------------------- calling
    def __call__(self, inputs):
        """On symbolic tensors, the symbolic output of this layer applied to
        them (a node of a graph); on arrays, :meth:`forward` in inference
        mode, as a numpy array."""
        if is_symbolic(inputs):
            return call_layer(self, inputs)
        arrays = [np.asarray(a) for a in (list(inputs) if self.n_inputs is None else [inputs])]
        self.check_data(arrays[0], "inputs")
        backend = self.backend or NumpyBackend()
        training, self.training = self.training, False
        try:
            out = self.forward([backend.asarray(np.asarray(a)) for a in arrays] if self.n_inputs is None
                               else backend.asarray(np.asarray(arrays[0])))
        finally:
            self.training = training
        return backend.to_numpy(out)

    def check_data(self, a: np.ndarray, name: str) -> None:
        """ValueError when data ``a`` (named ``name``) given to the layer as
        it is (a model's input that it reads) cannot be its input: an
        Embedding's ids outside its table. Nothing for most layers."""

    def call(self, ctx: Context, *inputs: Array) -> Array:
        """Outputs for a batch of each input, (n, *input_shape). The returned
        array is one of ``ctx``'s buffers (or a view of an input), reused
        by the next call with the same context."""
        raise NotImplementedError

    def backward(self, ctx: Context, grad: Array) -> Array:
        """dE/d(input) from dE/d(output) for the batch of the last ``call``
        with ``ctx``; also leaves each parameter's gradient in ``param.grad``."""
        raise NotImplementedError

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        """Leave the parameter gradients without computing dE/d(input)
        (where no layer before needs it); nothing for a layer without
        trainable parameters."""
        if any(p.trainable for p in self.params.values()):
            self.backward(ctx, grad)

    def backward_inputs(self, ctx: Context, grad: Array, needed: list[bool]) -> list[Array | None]:
        """dE/d(each input), None where ``needed`` says no one needs it: what
        a layer of several inputs implements (a plan calls ``backward`` or
        ``parameter_gradients`` of a layer of one input directly)."""
        if needed[0]:
            return [self.backward(ctx, grad)]
        self.parameter_gradients(ctx, grad)
        return [None]

    def step_values(self, step: int, call: int) -> dict[str, float | int]:
        """Scalars of training step ``step`` that this layer's call number
        ``call`` reads from ``ctx.values``; none for most layers."""
        return {}

    # ------------------------------------------------------------ on its own
    def _own_context(self) -> Context:
        if self._context is None or self._context.backend is not self.backend:
            self._context = Context(self.backend)
        self._context.training = self.training
        return self._context

    def forward(self, x):
        """Outputs for a batch ``x`` of shape (n, *input_shape) (a list of
        batches for a layer of several inputs), on this layer's own context.

        The returned array is the layer's own buffer, reused by the next call.
        """
        xs = list(x) if self.n_inputs is None else [x]
        self._check_input(xs)
        ctx = self._own_context()
        ctx.values = self.step_values(self.step, 0) if self.training else {}
        return self.call(ctx, *xs)

    def back_propagate(self, grad_output: Array):
        """dE/d(inputs) from dE/d(outputs) for the batch of the last ``forward``
        (a list, one per input, for a layer of several inputs); also leaves
        each parameter's gradient in ``param.grad``."""
        count = len(self.input_shape) if self.n_inputs is None else 1
        grads = self.backward_inputs(self._own_context(), grad_output, [True] * count)
        return grads if self.n_inputs is None else grads[0]

    def compute_gradients(self, grad_output: Array) -> None:
        """Leave the parameter gradients without computing dE/d(inputs)."""
        self.parameter_gradients(self._own_context(), grad_output)

    # -------------------------------------------------------------- values
    def _read(self, name: str) -> np.ndarray:
        self._ensure_parameters()
        return self.backend.to_numpy(self.params[name].value)

    def _assign(self, name: str, value) -> None:
        self._ensure_parameters()
        param = self.params[name]
        value = checked_values(value, tuple(param.value.shape), self.backend.dtype, f"{self!r} expects", name)
        self.backend.write(param.value, value)

    def get_weights(self) -> list[np.ndarray]:
        """Its parameters and state as numpy arrays (copies), as Keras's
        get_weights: in the order of ``params``, each in the layout its
        attribute gives (Dense: ``weights`` (inputs, units), then
        ``biases``; BatchNormalization: gamma, beta, moving_mean,
        moving_variance); [] for a layer that holds none, or none yet (not
        built: a model builds it, drawing from its seed)."""
        return [np.array(self.backend.to_numpy(p.value)) for p in self.params.values()]

    def set_weights(self, weights: Sequence) -> None:
        """Set them from a list laid out as :meth:`get_weights` gives it;
        all or nothing: ValueError naming the entry that does not fit."""
        for name, value in self.checked_weights(weights).items():
            self.backend.write(self.params[name].value, value)

    def checked_weights(self, weights: Sequence, where: str = "", first: int = 0) -> dict[str, np.ndarray]:
        """``weights`` laid out as :meth:`get_weights` gives them, by
        parameter name, each checked (its shape, finite values that fit the
        dtype); ValueError naming the entry as ``weights[first + k]``,
        after ``where`` (a model's "layer 3 ")."""
        if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
            raise ValueError(f"expected a list of arrays, as get_weights() gives. Received: {type(weights).__name__}")
        if not weights and not self.params and not self.file_tensors:
            return {}  # a layer without parameters (ReLU) takes []
        self._ensure_parameters()
        if len(weights) != len(self.params):
            raise ValueError(f"{where}{self!r} expects {len(self.params)} arrays, as get_weights() gives "
                             f"({', '.join(self.params) or 'none'}). Received: {len(weights)}")
        return {name: checked_values(value, tuple(p.value.shape), self.backend.dtype, f"{where}{self!r} expects",
                                     f"{name} (weights[{first + k}])")
                for k, ((name, p), value) in enumerate(zip(self.params.items(), weights))}

    def _ensure_parameters(self) -> None:
        if self.built:
            return
        if self.input_shape is None:
            raise ValueError(
                f"{self!r} has no parameters yet: they are made once its input shape is "
                "known (give input_size, put it in a Model, or call forward once)"
            )
        self.build(self.input_shape)

    # ------------------------------------------------------------------ files
    @property
    def sequential_modules(self) -> int:
        """The modules this layer is in the equivalent torch.nn.Sequential,
        whose positions name a file's tensors (``{position}.weight``): 2
        with its own activation (``Dense(8, activation="relu")``: nn.Linear,
        then nn.ReLU), else 1."""
        return 1 if self.activation is None else 2

    def state_dict(self) -> dict[str, np.ndarray]:
        """The parameters and state as numpy arrays, by the names and layouts
        files use (PyTorch's: a Dense gives ``weight`` (units, inputs) and ``bias``)."""
        values = {name: self.backend.to_numpy(p.value) for name, p in self.params.items()}
        return self.to_file(values)

    def load_state_dict(self, tensors: dict[str, np.ndarray], backend: Backend | None = None) -> None:
        """Set the parameters from ``tensors`` named and laid out as
        :meth:`state_dict` gives them: a built layer takes exactly its own
        tensors, an unbuilt one is built to fit them (on ``backend``, by
        default numpy in the tensors' precision). All or nothing: ValueError,
        and no parameter changed, when names, shapes or values do not fit
        (values must be finite in the layer's dtype)."""
        dtype = backend.dtype if backend is not None else None
        self.write_state(*self.check_state(tensors, dtype), backend)

    def check_state(self, tensors: dict[str, np.ndarray], dtype=None) -> tuple[Shape | None, dict[str, np.ndarray]]:
        """(the input shape ``tensors`` imply, the parameter values ready to
        write, in the layer's dtype or else ``dtype``); ValueError if they do
        not fit. Changes nothing."""
        input_shape, values = self.from_file(dict(tensors))
        if self.built and set(values) != set(self.params):
            raise ValueError(f"{self!r} expects tensors {sorted(self.file_shapes())}. Received: {sorted(tensors)}")
        if input_shape is not None and self.input_shape not in (None, input_shape):
            raise ValueError(
                f"{self!r} expects inputs of shape {shape_text(self.input_shape)}; "
                f"the tensors are for inputs of shape {shape_text(input_shape)}"
            )
        input_shape = input_shape or self.input_shape
        if self.built:
            dtype, shapes = self.backend.dtype, {name: tuple(p.value.shape) for name, p in self.params.items()}
        else:
            if values and input_shape is None:
                raise ValueError(f"{self!r} needs its input shape to take tensors {sorted(tensors)}")
            if values:
                self.output_shape_for(input_shape)  # ValueError if the layer cannot take them
            if dtype is None:
                dtype = np.float64 if any(np.asarray(v).dtype == np.float64 for v in values.values()) else np.float32
            shapes = {name: np.shape(v) for name, v in values.items()}
        owner = f"{self!r} expects"
        return input_shape, {name: checked_values(v, shapes[name], dtype, owner, name) for name, v in values.items()}

    def write_state(self, input_shape: Shape | None, values: dict[str, np.ndarray],
                    backend: Backend | None = None) -> None:
        """Write what :meth:`check_state` returned."""
        if self.built:
            for name, value in values.items():
                self.backend.write(self.params[name].value, value)
        elif values:
            self.input_shape, self.output_shape = input_shape, self.output_shape_for(input_shape)
            dtype = next(iter(values.values())).dtype
            self._place(values, backend or NumpyBackend(dtype))

    def file_shapes(self) -> dict[str, Shape]:
        """Names and shapes of the tensors :meth:`state_dict` gives, read from nothing."""
        stand_ins = {name: np.broadcast_to(np.float32(0), p.value.shape) for name, p in self.params.items()}
        return {name: tuple(t.shape) for name, t in self.to_file(stand_ins).items()}

    def save(self, path) -> None:
        """Write this layer (type, configuration, parameters) to a safetensors file."""
        from ..saving.layer_files import save_layer

        save_layer(self, path)

    def _load_new(cls, path) -> "Layer":
        """Read a layer file: a new layer of the type the file names."""
        from ..saving.fileio import FormatError
        from ..saving.layer_files import load_layer

        layer = load_layer(path)
        if not isinstance(layer, cls):
            raise FormatError(f"{path}: holds a {layer.type_name} layer, not {cls.__name__}")
        return layer

    def _load_into(self, path) -> "Layer":
        """Read a layer file into this layer, checking its type, configuration
        and shapes; FormatError, and the layer unchanged, if they differ."""
        from ..saving.layer_files import load_layer

        return load_layer(path, into=self)

    load = ClassOrInstanceMethod(_load_new, _load_into)

    def to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Parameter values -> file tensors (names, layouts); identity here."""
        return values

    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        """File tensors -> (the input shape they imply, parameter values).
        Here (a layer that does not convert): the tensors are the parameters
        themselves, by name, which must be those ``create_parameters`` makes
        (names and shapes, checked where the input shape is known)."""
        if not tensors:
            return None, {}
        expected = self._parameter_shapes()
        if expected == {} or type(self).create_parameters is Layer.create_parameters:
            raise ValueError(f"{self!r} holds no parameters. Received tensors {sorted(tensors)}")
        received = {name: tuple(np.shape(t)) for name, t in tensors.items()}
        if expected is not None and received != expected:
            raise ValueError(f"{self!r} expects tensors {_shapes_text(expected)}. Received: {_shapes_text(received)}")
        return None, dict(tensors)

    def _parameter_shapes(self) -> dict[str, Shape] | None:
        """The shape of each array of ``create_parameters`` (made to see them
        where the layer is not built), None while the input shape is unknown.

        The limit of this check: where the layer is not built (loading a
        file of a layer of your own whose tensors are its parameters), the
        layer's own ``create_parameters`` runs once at the input shape the
        file declares, so it allocates what the parameters take at that
        shape: a crafted file declaring a huge input shape makes it allocate
        that much (up to the machine's memory; beyond, a ValueError rather
        than a MemoryError). Load such files from sources you trust, as you
        would run their code."""
        if self.built:
            return {name: tuple(p.value.shape) for name, p in self.params.items()}
        if self.input_shape is None or type(self).create_parameters is Layer.create_parameters:
            return None if self.input_shape is None else {}
        if self.output_shape is None:
            self.output_shape = self.output_shape_for(self.input_shape)
        try:
            made = self.create_parameters(np.random.default_rng(0))
        except MemoryError:
            raise ValueError(f"{self!r}: expected an input shape whose parameters fit in memory. Received: "
                             f"{self.input_shape}, for which create_parameters ran out of memory") from None
        return {name: tuple(np.shape(v)) for name, v in made.items()}

    # ---------------------------------------------------------------- export
    def onnx_nodes(self, graph: Any, inputs: list[str]) -> str:
        """The hook by which a layer of your own exports to ONNX (the
        exporter's own layers have writers in its table): add the nodes of
        one call of the layer to ``graph`` and return the name of its output.

        ``inputs`` names the tensors the call reads (one per layer input),
        each (n, *input_shape). ``graph.node(op, inputs, role, **attributes)``
        adds an operator of opset 17 and returns its output's name (made
        from the layer's index and ``role``: give each node of the layer a
        role of its own); ``graph.weight(role, array)`` adds an initializer
        in float32 (``graph.constant(role, array)`` keeps the array's dtype:
        int64 shapes) and returns its name. For example, a PReLU::

            def onnx_nodes(self, graph, inputs):
                slope = graph.weight("slope", self.get_weights()[0])
                return graph.node("PRelu", [inputs[0], slope], "prelu")

        A layer that defines neither this nor a writer is refused with a
        ValueError naming it and this hook."""
        raise NotImplementedError

    def c_code(self, code: Any, inputs: list[str]) -> str:
        """The hook by which a layer of your own exports to C: write the C99
        statements computing one sample of one call of the layer and return
        the name of the float array that holds its output.

        ``inputs`` names the float arrays the call reads, one sample each
        (``prod(input_shape)`` floats, row-major). ``code.output(size)``
        gives an array of ``size`` floats to write to, ``code.weight(role,
        array)`` a ``static const float`` array of the values (its name
        returned; index it as the array's shape says), and
        ``code.emit(comment, *lines)`` adds statements (declare loop
        variables in the loop, ``for (int k = 0; ...)``). For example::

            def c_code(self, code, inputs):
                n = int(np.prod(self.input_shape))
                alpha, y = code.weight("alpha", self.get_weights()[0]), code.output(n)
                code.emit("PReLU", f"for (int k = 0; k < {n}; k++)",
                          f"    {y}[k] = {inputs[0]}[k] > 0.0f ? {inputs[0]}[k] : "
                          f"{alpha}[k % {self.input_shape[-1]}] * {inputs[0]}[k];")
                return y

        A layer that defines neither this nor a writer is refused with a
        ValueError naming it and this hook."""
        raise NotImplementedError

    # ------------------------------------------------------------ description
    @property
    def parameters(self) -> list[Parameter]:
        """The trainable parameters."""
        return [p for p in self.params.values() if p.trainable]

    @property
    def parameter_count(self) -> int:
        return sum(int(np.prod(p.value.shape)) for p in self.params.values())

    def get_config(self) -> dict[str, Any]:
        """The hyperparameters that ``type(self)(**config)`` rebuilds the layer
        from (its name aside, which model files store beside it)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _shapes_text(shapes: dict[str, Shape]) -> str:
    return "{" + ", ".join(f"{name!r}: {shape_text(shape)}" for name, shape in sorted(shapes.items())) + "}"


def same_device(a: Backend, b: Backend) -> bool:
    """Whether arrays of backend ``a`` serve backend ``b`` as they are: the
    same GPU backend, or numpy in the same dtype for as many members (a
    population's arrays hold one array per member)."""
    return a is b or (a.kind == b.kind == "cpu" and a.dtype == b.dtype and a.population == b.population
                      and a.members == b.members)


def _is_shapes(shape) -> bool:
    return bool(shape) and isinstance(shape[0], tuple)


def _any_shape_text(shape) -> str:
    return ", ".join(map(shape_text, shape)) if _is_shapes(shape) else shape_text(shape)


def _any_batch_shape_text(shape) -> str:
    return ", ".join(map(batch_shape_text, shape)) if _is_shapes(shape) else batch_shape_text(shape)


class WeightedLayer(Layer, abstract=True):
    """A layer with weights ``W`` and biases ``b`` (Dense, Conv2D), which
    read and assign as numpy arrays whatever the device; their shapes are
    in each layer's docstring. Initial values come from named initializers
    (:mod:`intricate_py.initializers`)."""

    file_tensors = ("weight", "bias")

    def _use_initializers(self, weight_init: str, bias_init: str) -> None:
        initializers.get(weight_init)  # ValueError for an unknown name
        initializers.get(bias_init)
        self.weight_init, self.bias_init = weight_init, bias_init

    def _use_bias(self, use_bias: bool) -> None:
        self.use_bias = _checks.boolean(use_bias, "use_bias")
        if not self.use_bias:
            self.file_tensors = ("weight",)

    def _initial_values(self, rng, weight_shape, bias_size: int, fan_in: int, fan_out: int) -> dict:
        # drawn in float64 on the host: refuse what cannot fit before trying
        _checks.fits_in_memory(8 * (math.prod(weight_shape) + bias_size), f"{self!r}'s parameters")
        values = {"W": initializers.get(self.weight_init)(rng, weight_shape, fan_in, fan_out)}
        if self.use_bias:
            values["b"] = initializers.get(self.bias_init)(rng, (bias_size,), fan_in, fan_out)
        return values

    def _bias(self) -> Array | None:
        """b's array, None for a layer made with use_bias=False."""
        return self.params["b"].value if self.use_bias else None

    @staticmethod
    def _file_values(weight: np.ndarray, bias: np.ndarray | None) -> dict[str, np.ndarray]:
        return {"W": weight} if bias is None else {"W": weight, "b": bias}

    def _initializer_config(self) -> dict[str, str]:
        """The initializers that differ from the defaults, for get_config."""
        config = {}
        if self.weight_init != "glorot_uniform":
            config["weight_init"] = self.weight_init
        if self.bias_init != "zeros":
            config["bias_init"] = self.bias_init
        return config

    @property
    def weights(self) -> np.ndarray:
        """W as a numpy array."""
        return self._read("W")

    @weights.setter
    def weights(self, value) -> None:
        self._assign("W", value)

    @property
    def biases(self) -> np.ndarray:
        """b as a numpy array; AttributeError for a layer made with use_bias=False."""
        self._check_bias()
        return self._read("b")

    @biases.setter
    def biases(self, value) -> None:
        self._check_bias()
        self._assign("b", value)

    def _check_bias(self) -> None:
        if not self.use_bias:
            raise AttributeError(f"{self!r} has no biases: it was made with use_bias=False")

    def _file_tensors(self, tensors: dict[str, np.ndarray], fits: Callable, weight_shape: str,
                      bias_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """A file's (weight, bias) (bias None for a layer made with
        use_bias=False), or ValueError unless there are exactly those
        tensors, ``fits(weight)`` (``weight_shape`` describes it) and the
        bias is (bias_size,)."""
        expected = ["bias", "weight"] if self.use_bias else ["weight"]
        if sorted(tensors) != expected:
            alone = "" if self.use_bias else " (it has no biases)"
            raise ValueError(f"{self!r} expects tensors {expected}{alone}. Received: {sorted(tensors)}")
        weight, bias = tensors["weight"], tensors.get("bias")
        if not fits(weight) or (bias is not None and bias.shape != (bias_size,)):
            bias_text = f" and bias of shape ({bias_size},)" if bias is not None else ""
            received = f", bias {bias.shape}" if bias is not None else ""
            raise ValueError(f"{self!r} expects weight of shape {weight_shape}{bias_text}. "
                             f"Received: weight {weight.shape}{received}")
        return weight, bias
