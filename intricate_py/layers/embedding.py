"""Embedding and PositionEmbedding: tables of learned vectors, looked up
by token id and by position."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks, initializers
from ..backends import Array
from .base import Context, Layer, Shape


class _Table(Layer, abstract=True):
    """A layer whose one parameter is a table of vectors, ``embeddings``
    (rows, output_dim), read and assigned as a numpy array; files hold it
    as PyTorch's ``weight``."""

    file_tensors = ("weight",)

    def _use_initializer(self, name: str) -> None:
        initializers.get(name)  # ValueError for an unknown name
        self.embeddings_initializer = name

    def _table(self, rng: np.random.Generator, rows: int, dim: int) -> dict[str, np.ndarray]:
        _checks.fits_in_memory(8 * rows * dim, f"{self!r}'s table")
        return {"embeddings": initializers.get(self.embeddings_initializer)(rng, (rows, dim), rows, dim)}

    @property
    def embeddings(self) -> np.ndarray:
        """The table, (rows, output_dim), as a numpy array."""
        return self._read("embeddings")

    @embeddings.setter
    def embeddings(self, value) -> None:
        self._assign("embeddings", value)

    def to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"weight": values["embeddings"]} if values else {}

    def _file_table(self, tensors: dict[str, np.ndarray], rows: int) -> np.ndarray:
        if sorted(tensors) != ["weight"]:
            raise ValueError(f"{self!r} expects tensors ['weight']. Received: {sorted(tensors)}")
        weight = tensors["weight"]
        if weight.ndim != 2 or weight.shape[0] != rows:
            raise ValueError(f"{self!r} expects weight of shape ({rows}, output_dim). Received: {weight.shape}")
        return weight


class Embedding(_Table):
    """Integer ids to vectors, as Keras's and PyTorch's Embedding: id i
    becomes row i of ``embeddings`` (input_dim, output_dim).

    Ids are whole numbers in [0, input_dim), given as integers or floats
    (a batch's data is the model's dtype, exact for ids below 2²⁴); a model
    checks them when the data is given (ValueError naming the largest id
    and input_dim). The table's gradient adds the rows of each id in the
    order of the ids, so a seed gives the same bits on every device; ids
    have no gradient (a layer before gets zeros). ``embeddings_initializer``
    is Keras's default, uniform in [-0.05, 0.05].

    Shapes: ids (n, *shape) -> y (n, *shape, output_dim).
    """

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer: str = "uniform",
                 name: str | None = None):
        super().__init__(name)
        self.input_dim = _checks.positive_int(input_dim, "input_dim")
        self.output_dim = _checks.positive_int(output_dim, "output_dim")
        self._use_initializer(embeddings_initializer)

    def output_shape_for(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.output_dim)

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self._table(rng, self.input_dim, self.output_dim)

    def check_data(self, ids: np.ndarray, name: str) -> None:
        """ValueError unless every id in ``ids`` is a whole number in [0, input_dim)."""
        if ids.size == 0:
            return
        whole = ids == np.floor(ids)
        if not whole.all():
            raise ValueError(f"{self!r} expects whole-number ids in {name}. Received: {ids[~whole].flat[0]:g}")
        low, high = ids.min(), ids.max()
        if low < 0 or high >= self.input_dim:
            bad = high if high >= self.input_dim else low
            raise ValueError(f"{self!r} expects ids in [0, {self.input_dim - 1}] (input_dim={self.input_dim}). "
                             f"Received: {name} holds the id {bad:g} (largest {high:g})")

    # -------------------------------------------------------------- computing
    def _ids(self, x: Array) -> Array:
        return self.backend.view(x, 0, (math.prod(x.shape),))

    def _vectors(self, a: Array) -> Array:
        return self.backend.matrix(a, self.output_dim)

    def call(self, ctx: Context, x: Array) -> Array:
        ctx.ids = self._ids(x)
        y = ctx.buffer("y", x.shape[0], self.output_shape)
        self.backend.embedding(ctx.ids, self.params["embeddings"].value, self._vectors(y))
        return y

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        self.backend.embedding_grad(ctx.ids, self._vectors(grad), self.params["embeddings"].grad)

    def backward(self, ctx: Context, grad: Array) -> Array:
        self.parameter_gradients(ctx, grad)
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.clear(dx)  # ids are whole numbers: nothing before changes them by a little
        return dx

    # ------------------------------------------------------------ description
    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        weight = self._file_table(tensors, self.input_dim)
        if weight.shape[1] != self.output_dim:
            raise ValueError(f"{self!r} expects weight of shape ({self.input_dim}, {self.output_dim}). "
                             f"Received: {weight.shape}")
        return self.input_shape, {"embeddings": weight}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"input_dim": self.input_dim, "output_dim": self.output_dim}
        if self.embeddings_initializer != "uniform":
            config["embeddings_initializer"] = self.embeddings_initializer
        return config

    def __repr__(self) -> str:
        return f"Embedding({self.input_dim}→{self.output_dim})"


class PositionEmbedding(_Table):
    """A learned vector for each position of a sequence, as KerasHub's
    PositionEmbedding: called on a batch of sequences (n, length, features)
    it returns the first ``length`` rows of ``embeddings``
    (sequence_length, features) for every sample, to be added to them
    (``x + PositionEmbedding(128)(x)``). Its output does not depend on the
    input's values (their gradient is 0).

    Shapes: x (n, length, features) -> y (n, length, features), length ≤ sequence_length.
    """

    def __init__(self, sequence_length: int, initializer: str = "glorot_uniform", name: str | None = None):
        super().__init__(name)
        self.sequence_length = _checks.positive_int(sequence_length, "sequence_length")
        self._use_initializer(initializer)

    def output_shape_for(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 2 or input_shape[0] > self.sequence_length:
            raise ValueError(f"expects sequences of shape (length, features) with length ≤ {self.sequence_length} "
                             f"(sequence_length), received {input_shape}")
        return input_shape

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self._table(rng, self.sequence_length, self.input_shape[1])

    def _used(self, a: Array) -> Array:
        """The rows of a table (or its gradient) that the inputs' length uses, flat."""
        return self.backend.view(a, 0, (math.prod(self.input_shape),))

    def call(self, ctx: Context, x: Array) -> Array:
        n = x.shape[0]
        y = ctx.buffer("y", n, self.input_shape)
        self.backend.broadcast_rows(self._used(self.params["embeddings"].value),
                                    self.backend.matrix(y, math.prod(self.input_shape)))
        return y

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        table = self.params["embeddings"].grad
        if self.input_shape[0] < self.sequence_length:
            self.backend.clear(table)  # the positions beyond the inputs' length get none
        self.backend.sum_rows(self.backend.matrix(grad, math.prod(self.input_shape)),
                              self._used(table))

    def backward(self, ctx: Context, grad: Array) -> Array:
        self.parameter_gradients(ctx, grad)
        dx = ctx.buffer("dx", grad.shape[0], self.input_shape)
        self.backend.clear(dx)
        return dx

    # ------------------------------------------------------------ description
    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        weight = self._file_table(tensors, self.sequence_length)
        if self.input_shape is not None and weight.shape[1] != self.input_shape[1]:
            raise ValueError(f"{self!r} expects weight of shape ({self.sequence_length}, {self.input_shape[1]}). "
                             f"Received: {weight.shape}")
        return self.input_shape or (self.sequence_length, weight.shape[1]), {"embeddings": weight}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"sequence_length": self.sequence_length}
        if self.embeddings_initializer != "glorot_uniform":
            config["initializer"] = self.embeddings_initializer
        return config

    def __repr__(self) -> str:
        return f"PositionEmbedding({self.sequence_length})"
