"""The operations every backend provides.

Layers, losses and optimizers are written once against this list; a backend
(numpy on the CPU, WGSL kernels through wgpu on the GPU) implements it. An
``Array`` is whatever the backend stores data in (``numpy.ndarray`` for the
CPU, a buffer handle for the GPU); code outside a backend only passes arrays
between operations and reads their ``shape``.

Conventions:

* every operation writes into an ``out`` array the caller owns, so that
  training allocates nothing after its first step;
* matrices are row-major ``(rows, columns)``; a batch is a matrix whose rows
  are samples;
* scalars (learning rates, loss scales) are plain Python floats;
* accumulators (loss sums, correct-prediction counts) are 1-D arrays that an
  operation adds into at a given index, so that metrics stay on the device
  until :meth:`Backend.to_numpy` reads them.

The list:

=========================  ===============================================
memory                     ``empty``, ``zeros``, ``from_numpy``, ``asarray``, ``dataset``,
                           ``to_numpy``, ``write``, ``copy``, ``rows``,
                           ``view``, ``take_rows``
dense algebra              ``matmul`` (transpose flags, optional bias),
                           ``sum_rows``
activations                ``activation``, ``activation_grad``, ``softmax``,
                           ``softmax_grad``
losses                     ``loss_grad``, ``loss_sum``, ``count_correct``
optimizers                 ``sgd_step``, ``adagrad_step``, ``adam_step``
scheduling                 ``flush``, ``end_step``, ``stats``
=========================  ===============================================
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np

Array = Any  # numpy.ndarray on the CPU, a GPU buffer handle on the GPU

ACTIVATIONS = ("tanh", "sigmoid", "relu")
LOSS_GRADIENTS = ("difference", "sign", "cross_entropy", "binary_cross_entropy")
LOSS_VALUES = ("squared", "absolute", "cross_entropy", "binary_cross_entropy")
ACCURACIES = ("binary", "categorical")

#: Probabilities are clipped to [CLIP_EPSILON, 1 - CLIP_EPSILON] before a log.
CLIP_EPSILON = 1e-7


class Backend(abc.ABC):
    """A device and the array operations that run on it."""

    #: "cpu" or "gpu"
    kind: str
    dtype: np.dtype

    # ------------------------------------------------------------------ memory
    @abc.abstractmethod
    def empty(self, shape: Sequence[int]) -> Array:
        """A new array of ``shape`` with undefined contents."""

    @abc.abstractmethod
    def zeros(self, shape: Sequence[int]) -> Array:
        """A new array of ``shape`` filled with zeros."""

    @abc.abstractmethod
    def from_numpy(self, a: np.ndarray) -> Array:
        """A new array holding a copy of ``a``: floats in the backend's dtype,
        integers as int32."""

    @abc.abstractmethod
    def asarray(self, a: np.ndarray) -> Array:
        """``a``'s values for operations to read (never write): numpy shares
        ``a``'s memory when its dtype and layout fit; the GPU uploads it."""

    @abc.abstractmethod
    def dataset(self, a: np.ndarray) -> Array:
        """Read-only rows of ``a`` for :meth:`take_rows` to gather batches from.

        May share memory with ``a`` (numpy) or span several device buffers
        (the GPU, when ``a`` is larger than one storage binding); only
        ``take_rows`` accepts it.
        """

    @abc.abstractmethod
    def to_numpy(self, a: Array) -> np.ndarray:
        """A host copy of ``a``; on the GPU this is a readback."""

    @abc.abstractmethod
    def write(self, dst: Array, a: np.ndarray) -> None:
        """Overwrite ``dst`` with host data ``a`` of the same shape."""

    @abc.abstractmethod
    def copy(self, src: Array, dst: Array) -> None:
        """``dst[...] = src`` for arrays of the same shape."""

    @abc.abstractmethod
    def rows(self, a: Array, start: int, stop: int) -> Array:
        """A view of rows ``start:stop`` of ``a`` (no copy)."""

    @abc.abstractmethod
    def view(self, a: Array, offset: int, shape: Sequence[int]) -> Array:
        """Elements ``offset .. offset + prod(shape)`` of the 1-D array ``a``
        as an array of ``shape`` (no copy): how a model packs every
        parameter into one buffer."""

    @abc.abstractmethod
    def take_rows(self, src: Array, indices: Array, out: Array) -> None:
        """``out[i] = src[indices[i]]``: gathers a batch, ``indices`` of int32."""

    # ----------------------------------------------------------- dense algebra
    @abc.abstractmethod
    def matmul(
        self,
        a: Array,
        b: Array,
        out: Array,
        transpose_a: bool = False,
        transpose_b: bool = False,
        bias: Array | None = None,
    ) -> None:
        """``out = op(a) @ op(b) (+ bias)``, ``op`` transposing where asked.

        ``op(a)`` is (m, k), ``op(b)`` is (k, n), ``out`` and the optional
        ``bias`` row-broadcast are (m, n) and (n,).
        """

    @abc.abstractmethod
    def sum_rows(self, x: Array, out: Array) -> None:
        """Column sums: ``out[j] = sum_i x[i, j]``; x (m, n), out (n,)."""

    # ------------------------------------------------------------- activations
    @abc.abstractmethod
    def activation(self, kind: str, x: Array, out: Array) -> None:
        """``out = f(x)`` elementwise, ``kind`` one of :data:`ACTIVATIONS`."""

    @abc.abstractmethod
    def activation_grad(self, kind: str, y: Array, dy: Array, out: Array) -> None:
        """``out = dy * f'(x)`` written from the saved output ``y = f(x)``.

        tanh: (1 - y)(1 + y), sigmoid: y(1 - y), relu: 1 where y > 0 else 0.
        """

    @abc.abstractmethod
    def softmax(self, x: Array, out: Array) -> None:
        """Row-wise, max-shifted softmax of x (m, n)."""

    @abc.abstractmethod
    def softmax_grad(self, y: Array, dy: Array, out: Array) -> None:
        """``out = y * (dy - sum(dy * y, axis=1))`` from the saved output y."""

    # ------------------------------------------------------------------ losses
    @abc.abstractmethod
    def loss_grad(self, kind: str, p: Array, t: Array, scale: float, out: Array) -> None:
        """``out = scale * g(p, t)`` elementwise, ``kind`` in :data:`LOSS_GRADIENTS`.

        difference: p - t; sign: sign(p - t);
        cross_entropy: -t / clip(p); binary_cross_entropy:
        (clip(p) - t) / (clip(p) (1 - clip(p))), clip to
        [CLIP_EPSILON, 1 - CLIP_EPSILON].
        """

    @abc.abstractmethod
    def loss_sum(
        self, kind: str, p: Array, t: Array, scale: float, acc: Array, index: int
    ) -> None:
        """``acc[index] += scale * sum(l(p, t))``, ``kind`` in :data:`LOSS_VALUES`.

        squared: (p - t)²; absolute: |p - t|; cross_entropy: -t log clip(p);
        binary_cross_entropy: -(t log clip(p) + (1 - t) log(1 - clip(p))).
        """

    @abc.abstractmethod
    def count_correct(self, kind: str, p: Array, t: Array, acc: Array, index: int) -> None:
        """``acc[index] +=`` the number of correct predictions in the batch.

        binary: elements where (p > 0.5) == (t > 0.5);
        categorical: rows where argmax p == argmax t (first maximum wins).
        """

    # -------------------------------------------------------------- optimizers
    @abc.abstractmethod
    def sgd_step(
        self,
        p: Array,
        g: Array,
        velocity: Array | None,
        lr: float,
        momentum: float,
        nesterov: bool,
    ) -> None:
        """PyTorch's SGD: ``v = momentum v + g``; ``p -= lr (g + momentum v)``
        with nesterov, else ``p -= lr v``; without velocity ``p -= lr g``."""

    @abc.abstractmethod
    def adagrad_step(self, p: Array, g: Array, sum_sq: Array, lr: float, eps: float) -> None:
        """PyTorch's Adagrad: ``s += g²``; ``p -= lr g / (sqrt(s) + eps)``."""

    @abc.abstractmethod
    def adam_step(
        self,
        p: Array,
        g: Array,
        m: Array,
        v: Array,
        step_size: float,
        beta1: float,
        beta2: float,
        eps: float,
        bias_correction2_sqrt: float,
    ) -> None:
        """PyTorch's Adam: ``m += (1 - b1)(g - m)``; ``v = b2 v + (1 - b2) g²``;
        ``p -= step_size m / (sqrt(v) / bias_correction2_sqrt + eps)``."""

    # -------------------------------------------------------------- scheduling
    def flush(self) -> None:
        """Start the work recorded so far (the GPU submits; numpy has none)."""

    def end_step(self) -> None:
        """A training step ended: the backend may start the work recorded so
        far (the GPU submits once several steps have gathered)."""

    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: submits, readbacks, bytes_read_back, buffers_created,
        dispatches."""
