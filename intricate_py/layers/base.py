"""The Layer base class: shapes, parameters, reusable buffers."""

from __future__ import annotations

import math
import types
from typing import Any, Callable, ClassVar

import numpy as np

from .. import _checks, initializers
from ..backends import Array, Backend, NumpyBackend

Shape = tuple[int, ...]

#: Every concrete Layer subclass by class name, for rebuilding layers from
#: files (a base class declared ``class Base(Layer, abstract=True)`` is left out).
LAYER_TYPES: dict[str, type["Layer"]] = {}


class Parameter:
    """A trainable array and the gradient ``back_propagate`` leaves for it."""

    __slots__ = ("name", "value", "grad")

    def __init__(self, name: str, value: Array, grad: Array):
        self.name = name
        self.value = value
        self.grad = grad

    def __repr__(self) -> str:
        return f"Parameter({self.name}, shape={tuple(self.value.shape)})"


class Workspace:
    """A layer's reusable per-batch buffers, one per name.

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
            Workspace.generation += 1
        view = self._views[name] = self.backend.rows(full, 0, rows)
        return view


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


class _ClassOrInstanceMethod:
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
    """A step of a network: ``forward`` maps inputs to outputs and
    ``back_propagate`` maps dE/d(outputs) to dE/d(inputs), leaving the
    gradients of the layer's parameters for the optimizer.

    Subclasses declare hyperparameters in ``__init__``, compute their output
    shape in :meth:`output_shape_for`, create parameters in
    :meth:`create_parameters` and implement ``forward`` and
    ``back_propagate``. Shapes are per sample: a batch adds a leading axis.
    """

    #: the name a file stores for this layer type; set for every subclass
    type_name: ClassVar[str]
    #: True while a model trains (fit sets it, as PyTorch's ``module.train()``)
    training: bool = False

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__
        if not abstract:
            LAYER_TYPES[cls.__name__] = cls

    def __init__(self) -> None:
        self.backend: Backend | None = None
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.params: dict[str, Parameter] = {}
        self._workspace: Workspace | None = None

    # ---------------------------------------------------------------- building
    @property
    def built(self) -> bool:
        return self.backend is not None

    def output_shape_for(self, input_shape: Shape) -> Shape:
        """The per-sample output shape for ``input_shape``; raises ValueError
        (saying what was expected) when the layer cannot take it."""
        return input_shape

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Initial values of the parameters, by name, drawn from ``rng``."""
        return {}

    def build(
        self,
        input_shape: Shape | int,
        backend: Backend | None = None,
        rng: np.random.Generator | None = None,
    ) -> Shape:
        """Fix the input shape, place the parameters on ``backend`` and return
        the output shape. A layer that already holds parameters (loaded, or
        built before) keeps their values and moves them to ``backend``."""
        input_shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        if self.input_shape is not None and self.input_shape != input_shape:
            raise ValueError(
                f"expects inputs of shape {_shape_text(self.input_shape)}, "
                f"received {_shape_text(input_shape)}"
            )
        output_shape = self.output_shape_for(input_shape)
        backend = backend or self.backend or NumpyBackend()
        self.input_shape, self.output_shape = input_shape, output_shape
        if self.params:
            values = {name: self.backend.to_numpy(p.value) for name, p in self.params.items()}
        else:
            values = self.create_parameters(rng if rng is not None else np.random.default_rng())
        self._place(values, backend)
        return output_shape

    def _place(self, values: dict[str, np.ndarray], backend: Backend) -> None:
        """Make the parameters from ``values`` on ``backend``."""
        self.backend = backend
        self.params = {
            name: Parameter(name, backend.from_numpy(v), backend.zeros(v.shape))
            for name, v in values.items()
        }
        self._workspace = Workspace(backend)

    def _build_for(self, x: Array) -> None:
        """Build on first use from a batch, as Keras does."""
        dtype = getattr(x, "dtype", np.float32)
        self.build(tuple(x.shape[1:]), NumpyBackend(np.float64 if dtype == np.float64 else np.float32))

    def _check_input(self, x: Array) -> None:
        """Every forward's first step: pass a batch of the input shape, build
        on first use (as Keras does), or reject it saying what was expected."""
        if self._workspace is not None and x.shape[1:] == self.input_shape:
            return
        if not self.built:
            self._build_for(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self!r} expects a batch of shape {_batch_shape_text(self.input_shape)}. "
                f"Received: shape={tuple(x.shape)}"
            )

    # -------------------------------------------------------------- computing
    def forward(self, x: Array) -> Array:
        """Outputs for a batch ``x`` of shape (n, *input_shape).

        The returned array is the layer's own buffer, reused by the next call.
        """
        raise NotImplementedError

    def back_propagate(self, grad_output: Array) -> Array:
        """dE/d(inputs) from dE/d(outputs) for the batch of the last ``forward``;
        also leaves each parameter's gradient in ``param.grad``."""
        raise NotImplementedError

    def compute_gradients(self, grad_output: Array) -> None:
        """Leave the parameter gradients without computing dE/d(inputs)
        (what a model does for its first layer); nothing for a layer
        without parameters."""
        if self.params:
            self.back_propagate(grad_output)

    def begin_step(self, step: int) -> None:
        """Called before each training step's forward, for layers that
        override it (Dropout draws its masks from the step)."""

    def _read(self, name: str) -> np.ndarray:
        self._ensure_parameters()
        return self.backend.to_numpy(self.params[name].value)

    def _assign(self, name: str, value) -> None:
        self._ensure_parameters()
        param = self.params[name]
        value = checked_values(value, tuple(param.value.shape), self.backend.dtype, f"{self!r} expects", name)
        self.backend.write(param.value, value)

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
    def state_dict(self) -> dict[str, np.ndarray]:
        """The parameters as numpy arrays, by the names and layouts files use
        (PyTorch's: a Dense gives ``weight`` (units, inputs) and ``bias``)."""
        values = {name: self.backend.to_numpy(p.value) for name, p in self.params.items()}
        return self._to_file(values)

    def load_state_dict(self, tensors: dict[str, np.ndarray], backend: Backend | None = None) -> None:
        """Set the parameters from ``tensors`` named and laid out as
        :meth:`state_dict` gives them: a built layer takes exactly its own
        tensors, an unbuilt one is built to fit them (on ``backend``, by
        default numpy in the tensors' precision). All or nothing: ValueError,
        and no parameter changed, when names, shapes or values do not fit
        (values must be finite in the layer's dtype)."""
        dtype = backend.dtype if backend is not None else None
        self._write_state(*self._check_state(tensors, dtype), backend)

    def _check_state(self, tensors: dict[str, np.ndarray], dtype=None) -> tuple[Shape | None, dict[str, np.ndarray]]:
        """(the input shape ``tensors`` imply, the parameter values ready to
        write, in the layer's dtype or else ``dtype``); ValueError if they do
        not fit. Changes nothing."""
        input_shape, values = self._from_file(dict(tensors))
        if self.built and set(values) != set(self.params):
            raise ValueError(f"{self!r} expects tensors {sorted(self._file_shapes())}. Received: {sorted(tensors)}")
        if input_shape is not None and self.input_shape not in (None, input_shape):
            raise ValueError(
                f"{self!r} expects inputs of shape {_shape_text(self.input_shape)}; "
                f"the tensors are for inputs of shape {_shape_text(input_shape)}"
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

    def _write_state(self, input_shape: Shape | None, values: dict[str, np.ndarray],
                     backend: Backend | None = None) -> None:
        """Write what :meth:`_check_state` returned."""
        if self.built:
            for name, value in values.items():
                self.backend.write(self.params[name].value, value)
        elif values:
            self.input_shape, self.output_shape = input_shape, self.output_shape_for(input_shape)
            dtype = next(iter(values.values())).dtype
            self._place(values, backend or NumpyBackend(dtype))

    def _file_shapes(self) -> dict[str, Shape]:
        """Names and shapes of the tensors :meth:`state_dict` gives, read from nothing."""
        stand_ins = {name: np.broadcast_to(np.float32(0), p.value.shape) for name, p in self.params.items()}
        return {name: tuple(t.shape) for name, t in self._to_file(stand_ins).items()}

    def save(self, path) -> None:
        """Write this layer (type, configuration, parameters) to a safetensors file."""
        from ..saving import save_layer

        save_layer(self, path)

    def _load_new(cls, path) -> "Layer":
        """Read a layer file: a new layer of the type the file names."""
        from ..saving import FormatError, load_layer

        layer = load_layer(path)
        if not isinstance(layer, cls):
            raise FormatError(f"{path}: holds a {layer.type_name} layer, not {cls.__name__}")
        return layer

    def _load_into(self, path) -> "Layer":
        """Read a layer file into this layer, checking its type, configuration
        and shapes; FormatError, and the layer unchanged, if they differ."""
        from ..saving import load_layer

        return load_layer(path, into=self)

    load = _ClassOrInstanceMethod(_load_new, _load_into)

    def _to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Parameter values -> file tensors (names, layouts); identity here."""
        return values

    def _from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        """File tensors -> (the input shape they imply, parameter values)."""
        if tensors:
            raise ValueError(f"{self!r} holds no parameters. Received tensors {sorted(tensors)}")
        return None, {}

    # ------------------------------------------------------------ description
    @property
    def parameters(self) -> list[Parameter]:
        return list(self.params.values())

    @property
    def parameter_count(self) -> int:
        return sum(int(np.prod(p.value.shape)) for p in self.params.values())

    def get_config(self) -> dict[str, Any]:
        """The hyperparameters that ``type(self)(**config)`` rebuilds the layer from."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def checked_values(value, shape: Shape, dtype, owner: str, name: str) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``; ValueError ("``owner``
    ``name`` of shape ...") unless it holds real numbers of ``shape`` that
    stay finite in ``dtype``."""
    dtype = np.dtype(dtype)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(
            f"{owner} {name} as an array of numbers. Received: {type(value).__name__} that numpy "
            f"cannot read ({error})"
        ) from None
    if array.dtype.kind not in "biuf":
        found = "complex numbers" if array.dtype.kind == "c" else f"dtype={array.dtype}"
        raise ValueError(f"{owner} real numbers for {name}. Received: {found}")
    if array.shape != tuple(shape):
        raise ValueError(f"{owner} {name} of shape {tuple(shape)}. Received: shape={array.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = np.ascontiguousarray(array, dtype=dtype)
    where = first_non_finite(cast)
    if where is not None:
        found = array[where]
        if not np.isfinite(found):
            raise ValueError(f"{owner} finite values for {name}. Received: {found} at index {where}")
        raise ValueError(
            f"{owner} values for {name} that fit {dtype.name} (magnitudes up to {np.finfo(dtype).max:.4g}). "
            f"Received: {found} at index {where}, which does not fit {dtype.name}"
        )
    return cast


def first_non_finite(a: np.ndarray) -> tuple[int, ...] | None:
    """The index of the first NaN or infinity in ``a``, None if there is none."""
    finite = np.isfinite(a)
    if finite.all():
        return None
    return tuple(int(i) for i in np.argwhere(~finite)[0])


def _shape_text(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _batch_shape_text(shape: Shape) -> str:
    return "(" + ", ".join(["n", *(str(s) for s in shape)]) + ")"


class WeightedLayer(Layer, abstract=True):
    """A layer with weights ``W`` and biases ``b`` (Dense, Conv2D), which
    read and assign as numpy arrays whatever the device; their shapes are
    in each layer's docstring. Initial values come from named initializers
    (:mod:`intricate_py.initializers`)."""

    def _use_initializers(self, weight_init: str, bias_init: str) -> None:
        initializers.get(weight_init)  # ValueError for an unknown name
        initializers.get(bias_init)
        self.weight_init, self.bias_init = weight_init, bias_init

    def _initial_values(self, rng, weight_shape, bias_size: int, fan_in: int, fan_out: int) -> dict:
        # drawn in float64 on the host: refuse what cannot fit before trying
        _checks.fits_in_memory(8 * (math.prod(weight_shape) + bias_size), f"{self!r}'s parameters")
        return {
            "W": initializers.get(self.weight_init)(rng, weight_shape, fan_in, fan_out),
            "b": initializers.get(self.bias_init)(rng, (bias_size,), fan_in, fan_out),
        }

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
        """b as a numpy array."""
        return self._read("b")

    @biases.setter
    def biases(self, value) -> None:
        self._assign("b", value)

    def _file_tensors(self, tensors: dict[str, np.ndarray], fits: Callable, weight_shape: str,
                      bias_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A file's (weight, bias), or ValueError unless there are exactly
        those two and ``fits(weight, bias)`` (``weight_shape`` describes it)."""
        if set(tensors) != {"weight", "bias"}:
            raise ValueError(f"{self!r} expects tensors ['bias', 'weight']. Received: {sorted(tensors)}")
        weight, bias = tensors["weight"], tensors["bias"]
        if not fits(weight, bias):
            raise ValueError(
                f"{self!r} expects weight of shape {weight_shape} and bias of shape ({bias_size},). "
                f"Received: weight {weight.shape}, bias {bias.shape}"
            )
        return weight, bias
