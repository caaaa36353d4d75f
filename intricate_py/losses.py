"""Losses: each a mean over the batch, written against the backend's
``loss`` operation (value, correct count and gradient in one pass).

==========================  =====================================  ==========================
loss                        value                                  dE/dp
==========================  =====================================  ==========================
MeanSquared                 mean over elements of (p - t)²         2 (p - t) / (n k)
MeanAbsolute                mean over elements of |p - t|          sign(p - t) / (n k)
CategoricalCrossEntropy     mean over rows of -Σ t log p           -t / p / n
BinaryCrossEntropy          mean over elements of                  (p - t) / (p (1 - p)) / (n k)
                            -(t log p + (1 - t) log(1 - p))
==========================  =====================================  ==========================

(n rows of k values: each sample's outputs flattened into one row, but for
the categorical cross-entropy, which acts on the last axis as Keras's does:
an output of per-sample shape (seq, vocab) is seq rows (tokens) of a
distribution over vocab each, its loss the mean over the n · seq tokens and
its accuracy counted per token; ``Loss.layout``.) Integer class labels stay
labels, one per row, down to the backend's ``loss`` (which reads them as
one-hot rows): targets (n, seq) for a (seq, vocab) output take seq values a
sample, not seq · vocab. Probabilities are clipped to [1e-7, 1 - 1e-7]
before a log. After the layer each one is made for (Softmax, Sigmoid) the
two cross-entropies give the gradient with respect to that layer's input,
(p - t) / n and (p - t) / (n k), which never divides by a probability.

With ``from_logits=True`` the cross-entropies take the model's raw outputs
(logits z, as PyTorch's ``cross_entropy`` and
``binary_cross_entropy_with_logits`` do) and apply the stable log-softmax
(log-sigmoid) themselves; the gradient is (softmax(z) - t) / n
(sigmoid(z) - t) / (n k), and ``predict`` returns logits.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from . import _checks
from .backends import Array, Backend, NumpyBackend
from .layers import Layer, Sigmoid, Softmax
from .naming import batch_shape_text

#: layers whose outputs are probabilities, and the activation= names that make them
_PROBABILITY_LAYERS = (Softmax, Sigmoid)
_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


class Loss:
    """Base class. Subclasses set the backend kinds and scaling below."""

    #: the backend ``loss`` kind on the model's outputs
    kind: str
    #: the layer type whose input gradient ``fused_kind`` computes directly, if any
    fused_layer: type[Layer] | None = None
    fused_kind: str | None = None
    #: the value averages over every element (True) or sums over a sample's outputs
    per_element: bool = True
    #: constant factor of the gradient of ``kind`` (2 for the squared error)
    grad_factor: float = 1.0
    #: the model's outputs are logits (the cross-entropies' ``from_logits``)
    from_logits: bool = False
    #: the loss trains a classifier, whose accuracy is a metric
    classifies: bool = False

    # ---------------------------------------------------------------- layout
    def layout(self, shape: Sequence[int]) -> tuple[int, int]:
        """(rows, width): the loss takes each sample of an output of
        per-sample ``shape`` as ``rows`` rows of ``width`` values, here one
        row of all its values (the categorical cross-entropy's rows are the
        positions along every axis but the last)."""
        return 1, math.prod(shape)

    # --------------------------------------------------------------- targets
    def prepare_targets(self, y, shape: Sequence[int] | int) -> np.ndarray:
        """Targets for an output of per-sample ``shape`` (or of that many
        values) as a float array (n, values per sample), checked against
        the outputs (float inputs keep their dtype; integers become float32)."""
        shape = _per_sample(shape)
        width = math.prod(shape)
        t = _checks.numeric_array(y, "y")
        if len(shape) > 1 and t.shape[1:] == shape:
            t = t.reshape(len(t), width)
        if t.ndim == 1 and width == 1:
            t = t[:, None]
        if t.ndim != 2 or t.shape[1] != width:
            also = f" or {batch_shape_text(shape)}" if len(shape) > 1 else ""
            raise ValueError(
                f"expected targets of shape (n, {width}){also} for the model's {width} outputs. "
                f"Received: y.shape={t.shape}"
            )
        return t if t.dtype.kind == "f" else t.astype(np.float32)

    def accuracy_kind(self, width: int) -> str:
        """'binary' (threshold 0.5) for a single output, else 'categorical' (argmax)."""
        return "binary" if width == 1 else "categorical"

    def step_kind(self, last_layer: Layer) -> tuple[str, bool]:
        """The backend kind a training step uses after the model's last
        layer, and whether it fuses with that layer: the step then gives the
        kind that layer's input and skips the layer both ways (the kind does
        its work and gives the gradient of its input)."""
        if self.fused_layer is not None and type(last_layer) is self.fused_layer:
            return self.fused_kind, True
        return self.kind, False

    def check_last_layer(self, last_layer: Layer) -> str | None:
        """A warning for a last layer that does not fit this loss, or None."""
        return None

    # ------------------------------------------------------------ computation
    def _value_scale(self, rows: int, width: int) -> float:
        """What turns the sum of a sample's terms into its loss."""
        return 1.0 / (rows * width) if self.per_element else 1.0 / rows

    def accumulate(self, backend: Backend, p: Array, t: Array, acc: Array, index: int, accuracy: str,
                   sample_weight: Array | None = None) -> None:
        """``acc[index] +=`` the sum over the batch of each sample's loss;
        ``acc[index + 1] +=`` the number of correct predictions (of rows,
        or of elements for a binary accuracy). p is (n, *shape), t as
        :meth:`prepare_targets` made it; ``sample_weight`` (n, rows of
        :meth:`layout`) scales each sample's loss (Keras's sample weights)."""
        rows, width = self.layout(p.shape[1:])
        backend.loss(self.kind, _matrix(backend, p, rows), _matrix(backend, t, rows), acc, index, accuracy,
                     self._value_scale(rows, width), weights=_matrix(backend, sample_weight, rows))

    def train_step(
        self, backend: Backend, kind: str, p: Array, t: Array, acc: Array, index: int, accuracy: str,
        grad: Array, weight: float = 1.0, sample_weight: Array | None = None,
    ) -> None:
        """As :meth:`accumulate`, and the gradient of the batch's mean loss
        (times ``weight``, the output's share of a total loss) into ``grad``:
        dE/dp, or dE/d(input of the fused layer) for the kind :meth:`step_kind` gave."""
        rows, width = self.layout(p.shape[1:])
        n = p.shape[0] * rows
        count = n * width if self.per_element else n
        factor = self.grad_factor if kind == self.kind and not self.from_logits else 1.0
        backend.loss(kind, _matrix(backend, p, rows), _matrix(backend, t, rows), acc, index, accuracy,
                     self._value_scale(rows, width), _matrix(backend, grad, rows), weight * factor / count,
                     weights=_matrix(backend, sample_weight, rows))

    def gradient(self, backend: Backend, p: Array, t: Array, out: Array, fused: bool = False) -> None:
        """dE/dp of the batch's mean loss into ``out``; with ``fused``, p is
        the input z of the fused layer and the gradient is dE/dz."""
        kind = self.fused_kind if fused else self.kind
        acc = backend.zeros((2,))
        self.train_step(backend, kind, p, t, acc, 0, self.accuracy_kind(math.prod(p.shape[1:])), out)

    def __call__(self, predictions, targets) -> float:
        """The loss of ``predictions`` (n, k), or (n, *shape), against
        ``targets``, in float64."""
        p = _checks.numeric_array(predictions, "predictions").astype(np.float64)
        if p.ndim == 1:
            p = p[:, None]
        t = self.prepare_targets(targets, p.shape[1:]).astype(np.float64)
        if t.shape[0] != p.shape[0]:
            raise ValueError(
                f"expected as many targets as predictions ({p.shape[0]}). Received: {t.shape[0]}"
            )
        acc = np.zeros(2)
        self.accumulate(NumpyBackend("float64"), p, t, acc, 0, self.accuracy_kind(math.prod(p.shape[1:])))
        return float(acc[0]) / p.shape[0]

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MeanSquared(Loss):
    """Mean squared error over all elements, as PyTorch's MSELoss."""

    kind, grad_factor = "squared", 2.0


class MeanAbsolute(Loss):
    """Mean absolute error over all elements, as PyTorch's L1Loss."""

    kind = "absolute"


class _CrossEntropy(Loss):
    """What both cross-entropies share: ``from_logits`` and the check of
    the layer before them."""

    probability_kind: str
    logits_kind: str
    #: the layer a probability loss expects last, and the advice naming it
    expected_layer: type[Layer]

    classifies = True

    def __init__(self, from_logits: bool = False):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise ValueError(f"expected from_logits=True or False. Received: from_logits={from_logits!r}")
        self.from_logits = bool(from_logits)
        self.kind = self.logits_kind if self.from_logits else self.probability_kind

    def step_kind(self, last_layer: Layer) -> tuple[str, bool]:
        if self.from_logits:
            return self.kind, False
        return super().step_kind(last_layer)

    def check_last_layer(self, last_layer: Layer) -> str | None:
        name = type(self).__name__
        own = last_layer.activation in _PROBABILITY_ACTIVATIONS
        makes_probabilities = isinstance(last_layer, _PROBABILITY_LAYERS) or own
        if self.from_logits and makes_probabilities:
            remove = "remove its activation" if own else "remove it"
            return (
                f"{name}(from_logits=True) expects logits, but the model's last layer is "
                f"{last_layer!r}, which makes probabilities: {remove} (the loss applies "
                f"{self.expected_layer.__name__} itself), or use {name}() without from_logits"
            )
        if not self.from_logits and not makes_probabilities:
            return (
                f"{name}() expects probabilities, but the model's last layer is {last_layer!r}, "
                f"whose outputs are not: add {self.expected_layer.__name__}() as the last layer, "
                f"or use {name}(from_logits=True)"
            )
        return None

    def get_config(self) -> dict:
        return {"from_logits": True} if self.from_logits else {}


class CategoricalCrossEntropy(_CrossEntropy):
    """Mean over rows (samples, or tokens) of -Σ t log p. Targets are
    one-hot (or any probability) rows, or integer class labels in [0, k). With
    ``from_logits=True`` the outputs are logits and the loss is
    -Σ t log softmax(z), as PyTorch's ``cross_entropy``.

    As Keras's, it acts on the last axis: an output of per-sample shape
    (seq, vocab) is seq distributions over vocab classes, the loss the mean
    over every sample's tokens, the accuracy counted per token; its targets
    are labels (n, seq) or one-hot rows (n, seq, vocab). Labels stay labels
    on the device (one value a token)."""

    probability_kind, logits_kind = "cross_entropy", "logits_cross_entropy"
    per_element = False
    fused_layer, fused_kind = Softmax, "softmax_cross_entropy"
    expected_layer = Softmax

    def layout(self, shape: Sequence[int]) -> tuple[int, int]:
        return (math.prod(shape[:-1]), shape[-1]) if len(shape) > 1 else super().layout(shape)

    def prepare_targets(self, y, shape: Sequence[int] | int) -> np.ndarray:
        """One-hot or probability rows as (n, rows · width) (see
        :meth:`Loss.layout`), or integer class labels as (n, rows): one a
        token, given as (n, *shape[:-1]) or with a last axis of 1."""
        shape = _per_sample(shape)
        rows, width = self.layout(shape)
        if width < 2:
            raise ValueError(
                f"expected a model with at least 2 outputs (one per class) for {self!r}. Received: "
                f"{width} output; a single output is a binary classifier: use BinaryCrossEntropy"
            )
        t = _checks.numeric_array(y, "y")
        is_labels = t.ndim >= 1 and t.shape[1:] in (shape[:-1], shape[:-1] + (1,))
        if not is_labels:
            t = super().prepare_targets(t, shape)
            _check_distributions(t.reshape(-1, width))
            return t
        labels = t.reshape(-1)
        whole = labels == np.round(labels)
        if not whole.all():
            bad = labels[~whole][0]
            raise ValueError(f"expected integer class labels in y. Received: {bad}")
        outside = (labels < 0) | (labels >= width)
        if outside.any():
            bad, at = labels[outside][0], int(np.argmax(outside))
            where = at if rows == 1 else tuple(int(i) for i in np.unravel_index(at, (len(t), rows)))
            raise ValueError(
                f"expected class labels in [0, {width - 1}] for the model's {width} outputs. "
                f"Received: {bad:g} at index {where}"
            )
        labels = labels.reshape(len(t), rows)  # labels, not one-hot rows: seq values a sample, not seq · vocab
        return labels if labels.dtype.kind == "f" else labels.astype(np.float32)

    def accuracy_kind(self, width: int) -> str:
        return "categorical"


class BinaryCrossEntropy(_CrossEntropy):
    """Mean over all elements of -(t log p + (1 - t) log(1 - p)), p clipped;
    targets in [0, 1]. With ``from_logits=True`` the outputs are logits and
    p = sigmoid(z), computed stably, as PyTorch's
    ``binary_cross_entropy_with_logits``."""

    probability_kind, logits_kind = "binary_cross_entropy", "logits_binary_cross_entropy"
    fused_layer, fused_kind = Sigmoid, "sigmoid_cross_entropy"
    expected_layer = Sigmoid

    def prepare_targets(self, y, shape: Sequence[int] | int) -> np.ndarray:
        t = super().prepare_targets(y, shape)
        outside = (t < 0) | (t > 1)
        if outside.any():
            where = tuple(int(i) for i in np.argwhere(outside)[0])
            raise ValueError(
                f"expected targets in [0, 1] for {self!r}. Received: {t[where]:g} at index {where}"
            )
        return t

    def accuracy_kind(self, width: int) -> str:
        return "binary_logits" if self.from_logits else "binary"


def _per_sample(shape: Sequence[int] | int) -> tuple[int, ...]:
    """An output's per-sample shape, from itself or its number of values."""
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)


def _matrix(backend: Backend, a: Array | None, rows: int) -> Array | None:
    """``a`` (n, ...) as the matrix of n · rows rows that the backend's
    ``loss`` takes (a view; None stays None)."""
    if a is None:
        return None
    m = a.shape[0] * rows
    shape = (m, math.prod(a.shape) // max(m, 1))
    return a if tuple(a.shape) == shape else backend.view(a, 0, shape)


def _check_distributions(t: np.ndarray) -> None:
    """Rows of a categorical target must be probability distributions."""
    negative = t < 0
    if negative.any():
        where = tuple(int(i) for i in np.argwhere(negative)[0])
        raise ValueError(
            "expected one-hot or probability rows (entries ≥ 0, each row summing to 1) in y. "
            f"Received: {t[where]:g} at index {where}"
        )
    sums = t.sum(axis=1, dtype=np.float64)
    off = np.abs(sums - 1) > 1e-3
    if off.any():
        row = int(np.argmax(off))
        raise ValueError(
            "expected one-hot or probability rows (entries ≥ 0, each row summing to 1) in y. "
            f"Received: row {row} sums to {sums[row]:g}"
        )


def warn_if_mismatched(loss: Loss, last_layer: Layer, stacklevel: int = 3) -> None:
    """Warn (at the fit call, ``stacklevel`` frames up) when the loss does
    not fit the layer that makes its output."""
    message = loss.check_last_layer(last_layer)
    if message:
        warnings.warn(message, UserWarning, stacklevel=stacklevel)


LOSSES = {cls.__name__: cls for cls in (MeanSquared, MeanAbsolute, CategoricalCrossEntropy, BinaryCrossEntropy)}

__all__ = [
    "Loss",
    "MeanSquared",
    "MeanAbsolute",
    "CategoricalCrossEntropy",
    "BinaryCrossEntropy",
    "LOSSES",
]
