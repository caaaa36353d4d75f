"""Normalization layers: BatchNormalization (statistics per channel, over
the batch) and LayerNormalization (statistics per sample, over its last
axis), with Keras 3's semantics and PyTorch's file names and layouts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array
from ..naming import shape_text
from .base import Context, Layer, Shape


def _axis(value, name: str = "axis") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value == 0:
        raise ValueError(f"expected a non-zero integer (axis 0 is the batch's). Received: {name}={value!r}")
    return int(value)


def _input_shape(value) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        value = (value,)
    return tuple(_checks.positive_int(s, "input_shape") for s in value)


class Normalization(Layer, abstract=True):
    """What both normalizations share: ``epsilon`` (any finite value >= 0,
    as PyTorch takes it; 0 divides by zero where a variance is 0, so only
    for statistics known not to be, as Darknet's loaded ones), the optional
    scale ``gamma`` (``scale=True``) and offset ``beta`` (``center=True``)
    of one axis, their files (PyTorch's ``weight`` and ``bias``) and
    attributes."""

    #: file tensor name -> parameter name, in file order
    FILE_NAMES: dict[str, str] = {"weight": "gamma", "bias": "beta"}

    def __init__(self, epsilon: float, center: bool, scale: bool, input_shape, name: str | None):
        super().__init__(name)
        self.epsilon = _checks.non_negative_float(epsilon, "epsilon")
        self.center = _checks.boolean(center, "center")
        self.scale = _checks.boolean(scale, "scale")
        if input_shape is not None:
            self.input_shape = _input_shape(input_shape)

    @property
    def channels(self) -> int:
        """The size of the axis gamma and beta run along."""
        raise NotImplementedError

    def _affine_values(self) -> dict[str, np.ndarray]:
        """gamma (ones) and beta (zeros), those the layer has, as Keras starts them."""
        values = {}
        if self.scale:
            values["gamma"] = np.ones(self.channels)
        if self.center:
            values["beta"] = np.zeros(self.channels)
        return values

    def _value(self, name: str) -> Array | None:
        param = self.params.get(name)
        return None if param is None else param.value

    def _grad(self, name: str) -> Array | None:
        param = self.params.get(name)
        return None if param is None else param.grad

    # ------------------------------------------------------------- attributes
    def _read_optional(self, name: str, flag: str) -> np.ndarray | None:
        if not getattr(self, flag):
            return None
        return self._read(name)

    def _assign_optional(self, name: str, flag: str, value) -> None:
        if not getattr(self, flag):
            raise ValueError(f"{self!r} has no {name}: it was made with {flag}=False")
        self._assign(name, value)

    @property
    def gamma(self) -> np.ndarray | None:
        """The scale (channels,) as a numpy array; None with ``scale=False``."""
        return self._read_optional("gamma", "scale")

    @gamma.setter
    def gamma(self, value) -> None:
        self._assign_optional("gamma", "scale", value)

    @property
    def beta(self) -> np.ndarray | None:
        """The offset (channels,) as a numpy array; None with ``center=False``."""
        return self._read_optional("beta", "center")

    @beta.setter
    def beta(self, value) -> None:
        self._assign_optional("beta", "center", value)

    # ------------------------------------------------------------------ files
    def _file_names(self) -> dict[str, str]:
        """The file tensors this layer holds -> its parameter names."""
        present = {"gamma": self.scale, "beta": self.center}
        return {f: p for f, p in self.FILE_NAMES.items() if present.get(p, True)}

    def to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not values:
            return {}
        return {f: values[p] for f, p in self._file_names().items()}

    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        names = self._file_names()
        if set(tensors) != set(names):
            raise ValueError(f"{self!r} expects tensors {sorted(names)}. Received: {sorted(tensors)}")
        if self.input_shape is None:
            raise ValueError(f"{self!r} needs its input_shape to take tensors")
        c = self.channels
        for f in names:
            if np.shape(tensors[f]) != (c,):
                raise ValueError(f"{self!r} expects {f} of shape ({c},). Received: shape={np.shape(tensors[f])}")
        return self.input_shape, {p: tensors[f] for f, p in names.items()}

    def _options(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The hyperparameters that differ from ``defaults``, and the input
        shape where known, for get_config."""
        config = {k: getattr(self, k) for k, v in defaults.items() if getattr(self, k) != v}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    def _repr(self, defaults: dict[str, Any]) -> str:
        parts = [str(self.channels)] if self.input_shape is not None else []
        parts += [f"{k}={getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v]
        return f"{type(self).__name__}({', '.join(parts)})"


_BATCH_DEFAULTS = {"axis": 1, "momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True}


class BatchNormalization(Normalization):
    """Keras 3's batch normalization: each channel (the values along
    ``axis``, which counts the batch as 0: 1 for NCHW images and for
    (n, features) vectors, -1 for the last axis) normalized to
    ``y = (x - mean) / sqrt(var + epsilon) · gamma + beta``.

    In training (a model's fit) ``mean`` and ``var`` are the batch's: the
    mean and the biased variance (divided by the count, as Keras's
    ``ops.moments`` and PyTorch normalize with) of the channel over every
    other axis, (n, h, w) for images; and each step moves the moving
    statistics as Keras's ``BatchNormalization.call`` does, with the same
    biased batch variance: ``moving_mean = moving_mean · momentum + mean ·
    (1 - momentum)``, and ``moving_variance`` alike from ``var``. (PyTorch
    updates ``running_var`` with the unbiased variance, and its momentum is
    1 - this one.) In inference (predict, evaluate, a validation pass, a
    call on arrays) ``mean`` and ``var`` are the moving statistics.

    ``gamma`` (ones at first; none with ``scale=False``) and ``beta`` (zeros;
    none with ``center=False``) train; ``moving_mean`` (zeros) and
    ``moving_variance`` (ones) are non-trainable state: saved, put back by
    EarlyStopping and fit's rollback, never touched by an optimizer or its
    weight decay. All four read and assign as numpy arrays of shape
    (channels,). Files use PyTorch's BatchNorm names: ``weight``, ``bias``,
    ``running_mean``, ``running_var`` (and take, ignoring it, the
    ``num_batches_tracked`` of a PyTorch state_dict).

    Shapes: x (n, *shape) -> y (n, *shape).
    """

    non_trainable = ("moving_mean", "moving_variance")
    file_tensors = ("weight", "bias", "running_mean", "running_var")
    FILE_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                  "running_var": "moving_variance"}
    #: PyTorch's counter of the batches seen, an integer a state_dict holds
    COUNTER = "num_batches_tracked"

    def __init__(
        self,
        axis: int = 1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        input_shape: tuple[int, ...] | None = None,
        name: str | None = None,
    ):
        self.axis = _axis(axis)
        self.momentum = _checks.fraction(momentum, "momentum", upper_inclusive=True)
        super().__init__(epsilon, center, scale, input_shape, name)

    def batch_axis(self, input_shape: Shape | None = None) -> int:
        """``axis`` as an index into a batch's shape (n, *input_shape)."""
        shape = self.input_shape if input_shape is None else input_shape
        rank = len(shape) + 1
        k = self.axis if self.axis > 0 else rank + self.axis
        if not 1 <= k < rank:
            raise ValueError(
                f"normalizes axis {self.axis} of its batches, which inputs of shape {shape_text(shape)} "
                f"(batches of {rank} axes, the batch's axis 0) do not have"
            )
        return k

    @property
    def channels(self) -> int:
        return self.input_shape[self.batch_axis() - 1]

    def output_shape_for(self, input_shape: Shape) -> Shape:
        self.batch_axis(input_shape)
        return input_shape

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        c = self.channels
        return {**self._affine_values(), "moving_mean": np.zeros(c), "moving_variance": np.ones(c)}

    # -------------------------------------------------------------- computing
    def call(self, ctx: Context, x: Array) -> Array:
        backend, params, axis = self.backend, self.params, self.batch_axis()
        y = ctx.buffer("y", x.shape[0], self.input_shape)
        moving_mean, moving_var = params["moving_mean"].value, params["moving_variance"].value
        ctx.x, ctx.batch_statistics = x, ctx.training
        if not ctx.training:
            ctx.mean, ctx.var = moving_mean, moving_var
            backend.batch_norm(x, y, moving_mean, moving_var, self._value("gamma"), self._value("beta"), axis,
                               self.epsilon)
            return y
        c = self.channels
        stats = ctx.buffer("stats", 2, (c,))
        ctx.mean, ctx.var = backend.view(stats, 0, (c,)), backend.view(stats, c, (c,))
        backend.batch_norm_train(x, y, ctx.mean, ctx.var, self._value("gamma"), self._value("beta"),
                                 moving_mean, moving_var, axis, self.epsilon, self.momentum)
        return y

    def _gradients(self, ctx: Context, grad: Array, dx: Array | None) -> None:
        self.backend.batch_norm_grad(ctx.x, grad, ctx.mean, ctx.var, self._value("gamma"), dx,
                                     self._grad("gamma"), self._grad("beta"), self.batch_axis(), self.epsilon,
                                     ctx.batch_statistics)

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        if self.parameters:
            self._gradients(ctx, grad, None)

    def backward(self, ctx: Context, grad: Array) -> Array:
        """dE/dx and dE/dgamma, dE/dbeta; in training through the batch
        statistics too (they depend on x), after an inference forward with
        the moving statistics held fixed."""
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self._gradients(ctx, grad, dx)
        return dx

    # ------------------------------------------------------------- attributes
    @property
    def moving_mean(self) -> np.ndarray:
        """The moving mean (channels,) as a numpy array."""
        return self._read("moving_mean")

    @moving_mean.setter
    def moving_mean(self, value) -> None:
        self._assign("moving_mean", value)

    @property
    def moving_variance(self) -> np.ndarray:
        """The moving variance (channels,) as a numpy array (never negative)."""
        return self._read("moving_variance")

    @moving_variance.setter
    def moving_variance(self, value) -> None:
        self._check_variance(value, "moving_variance")
        self._assign("moving_variance", value)

    def checked_weights(self, weights, where: str = "", first: int = 0) -> dict[str, np.ndarray]:
        values = super().checked_weights(weights, where, first)
        self._check_variance(values["moving_variance"], f"moving_variance (weights[{first + 3}])", where)
        return values

    def _check_variance(self, value, name: str, where: str = "") -> None:
        """ValueError for a variance with negative values (which would make
        every output NaN)."""
        try:
            negative = bool(np.any(np.asarray(value) < 0))
        except (TypeError, ValueError):
            return  # checked_values says what is wrong with it
        if negative:
            raise ValueError(f"{where}{self!r} expects {name} without negative values (a variance). "
                             f"Received: a minimum of {np.min(value)}")

    # ------------------------------------------------------------------ files
    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        tensors = dict(tensors)
        counter = tensors.pop(self.COUNTER, None)
        if counter is not None:
            counter = np.asarray(counter)
            if counter.shape != () or counter.dtype.kind not in "iu" or counter < 0:
                raise ValueError(f"{self!r} expects {self.COUNTER} as a non-negative integer scalar, as PyTorch "
                                 f"writes it. Received: shape={counter.shape}, dtype={counter.dtype}")
        input_shape, values = super().from_file(tensors)
        if "moving_variance" in values:
            self._check_variance(values["moving_variance"], "running_var")
        return input_shape, values

    def get_config(self) -> dict[str, Any]:
        return self._options(_BATCH_DEFAULTS)

    def __repr__(self) -> str:
        return self._repr(_BATCH_DEFAULTS)


_LAYER_DEFAULTS = {"axis": -1, "epsilon": 1e-3, "center": True, "scale": True}


class LayerNormalization(Normalization):
    """Keras 3's layer normalization over the last axis: each sample's
    values along its last axis (each position of a sequence (seq, features)
    on its own) normalized to ``y = (x - mean) / sqrt(var + epsilon) ·
    gamma + beta``, with their mean and biased variance, in training and
    inference alike. ``gamma`` (ones; none with ``scale=False``) and
    ``beta`` (zeros; none with ``center=False``) have the last axis' size
    and read and assign as numpy arrays. ``axis`` must name the last axis
    (-1, or its index counting the batch as 0). Files: PyTorch's LayerNorm
    ``weight`` and ``bias``. (PyTorch's default epsilon is 1e-5, Keras's 1e-3.)

    Shapes: x (n, *shape) -> y (n, *shape), any rank.
    """

    file_tensors = ("weight", "bias")

    def __init__(
        self,
        axis: int = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        input_shape: tuple[int, ...] | None = None,
        name: str | None = None,
    ):
        self.axis = _axis(axis)
        super().__init__(epsilon, center, scale, input_shape, name)

    @property
    def channels(self) -> int:
        return self.input_shape[-1]

    def output_shape_for(self, input_shape: Shape) -> Shape:
        if self.axis not in (-1, len(input_shape)):
            raise ValueError(
                f"normalizes the last axis of its inputs only: expected axis=-1 (or {len(input_shape)} for inputs "
                f"of shape {shape_text(input_shape)}, counting the batch's axis 0). Received: axis={self.axis}"
            )
        return input_shape

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self._affine_values()

    def _rows(self, a: Array) -> Array:
        """A batch (n, *shape) as the matrix (rows, last axis) it normalizes by row."""
        c = self.channels
        return self.backend.matrix(a, c)

    # -------------------------------------------------------------- computing
    def call(self, ctx: Context, x: Array) -> Array:
        n, row_shape = x.shape[0], self.input_shape[:-1]
        y = ctx.buffer("y", n, self.input_shape)
        ctx.x = x
        ctx.mean = self.backend.view(ctx.buffer("mean", n, row_shape), 0, (n * math.prod(row_shape),))
        ctx.var = self.backend.view(ctx.buffer("var", n, row_shape), 0, (n * math.prod(row_shape),))
        self.backend.layer_norm(self._rows(x), self._rows(y), ctx.mean, ctx.var, self._value("gamma"),
                                self._value("beta"), self.epsilon)
        return y

    def _gradients(self, ctx: Context, grad: Array, dx: Array | None) -> None:
        self.backend.layer_norm_grad(self._rows(ctx.x), self._rows(grad), ctx.mean, ctx.var, self._value("gamma"),
                                     None if dx is None else self._rows(dx), self._grad("gamma"), self._grad("beta"),
                                     self.epsilon)

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        if self.parameters:
            self._gradients(ctx, grad, None)

    def backward(self, ctx: Context, grad: Array) -> Array:
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self._gradients(ctx, grad, dx)
        return dx

    def get_config(self) -> dict[str, Any]:
        return self._options(_LAYER_DEFAULTS)

    def __repr__(self) -> str:
        return self._repr(_LAYER_DEFAULTS)
