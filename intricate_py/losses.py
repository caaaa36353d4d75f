"""Losses: each a mean over the batch, written against the backend's
``loss_sum`` / ``loss_grad`` operations.

==========================  =====================================  ==========================
loss                        value                                  dE/dp
==========================  =====================================  ==========================
MeanSquared                 mean over elements of (p - t)²         2 (p - t) / (n k)
MeanAbsolute                mean over elements of |p - t|          sign(p - t) / (n k)
CategoricalCrossEntropy     mean over samples of -Σ t log p        -t / p / n
BinaryCrossEntropy          mean over elements of                  (p - t) / (p (1 - p)) / (n k)
                            -(t log p + (1 - t) log(1 - p))
==========================  =====================================  ==========================

(n samples of k outputs.) Probabilities are clipped to [1e-7, 1 - 1e-7]
before a log. After the layer each one is made for (Softmax, Sigmoid) the
two cross-entropies give the gradient with respect to that layer's input,
(p - t) / n and (p - t) / (n k), which never divides by a probability.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .backends import Array, Backend, NumpyBackend
from .layers import Layer, Sigmoid, Softmax


class Loss:
    """Base class. Subclasses set the backend kinds and scaling below."""

    #: backend ``loss_sum`` kind and ``loss_grad`` kind
    value_kind: str
    grad_kind: str
    #: the value averages over every element (True) or sums over a sample's outputs
    per_element: bool = True
    #: constant factor of the gradient (2 for the squared error)
    grad_factor: float = 1.0
    #: the layer type whose input gradient this loss computes directly, if any
    fused_layer: type[Layer] | None = None

    # --------------------------------------------------------------- targets
    def prepare_targets(self, y, width: int) -> np.ndarray:
        """Targets as a float array (n, width), checked against the outputs
        (float inputs keep their dtype; integers become float32)."""
        t = _checks.numeric_array(y, "y")
        if t.ndim == 1 and width == 1:
            t = t[:, None]
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(
                f"expected targets of shape (n, {width}) for the model's {width} outputs. "
                f"Received: y.shape={t.shape}"
            )
        return t if t.dtype.kind == "f" else t.astype(np.float32)

    def accuracy_kind(self, width: int) -> str:
        """'binary' (threshold 0.5) for a single output, else 'categorical' (argmax)."""
        return "binary" if width == 1 else "categorical"

    def fuses_with(self, layer: Layer) -> bool:
        return self.fused_layer is not None and type(layer) is self.fused_layer

    # ------------------------------------------------------------ computation
    def accumulate(self, backend: Backend, p: Array, t: Array, acc: Array, index: int) -> None:
        """``acc[index] +=`` the sum over the batch of each sample's loss."""
        scale = 1.0 / p.shape[1] if self.per_element else 1.0
        backend.loss_sum(self.value_kind, p, t, scale, acc, index)

    def write_gradient(
        self, backend: Backend, p: Array, t: Array, out: Array, fused: bool = False
    ) -> None:
        """dE/dp into ``out``; with ``fused``, dE/d(input of the fused layer)."""
        n, k = p.shape
        count = n * k if self.per_element else n
        if fused:
            backend.loss_grad("difference", p, t, 1.0 / count, out)
        else:
            backend.loss_grad(self.grad_kind, p, t, self.grad_factor / count, out)

    def __call__(self, predictions, targets) -> float:
        """The loss of ``predictions`` (n, k) against ``targets``, in float64."""
        p = _checks.numeric_array(predictions, "predictions").astype(np.float64)
        if p.ndim == 1:
            p = p[:, None]
        t = self.prepare_targets(targets, p.shape[1])
        if t.shape[0] != p.shape[0]:
            raise ValueError(
                f"expected as many targets as predictions ({p.shape[0]}). Received: {t.shape[0]}"
            )
        acc = np.zeros(1)
        self.accumulate(NumpyBackend("float64"), p, t, acc, 0)
        return float(acc[0]) / p.shape[0]

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MeanSquared(Loss):
    """Mean squared error over all elements, as PyTorch's MSELoss."""

    value_kind, grad_kind, grad_factor = "squared", "difference", 2.0


class MeanAbsolute(Loss):
    """Mean absolute error over all elements, as PyTorch's L1Loss."""

    value_kind, grad_kind = "absolute", "sign"


class CategoricalCrossEntropy(Loss):
    """Mean over samples of -Σ t log p. Targets are one-hot (or any
    probability) rows, or integer class labels in [0, k)."""

    value_kind = grad_kind = "cross_entropy"
    per_element = False
    fused_layer = Softmax

    def prepare_targets(self, y, width: int) -> np.ndarray:
        t = _checks.numeric_array(y, "y")
        is_labels = t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1 and width > 1)
        if not is_labels:
            return super().prepare_targets(t, width)
        labels = t.reshape(-1)
        whole = labels == np.round(labels)
        if not whole.all():
            bad = labels[~whole][0]
            raise ValueError(f"expected integer class labels in y. Received: {bad}")
        outside = (labels < 0) | (labels >= width)
        if outside.any():
            bad = labels[outside][0]
            raise ValueError(
                f"expected class labels in [0, {width - 1}] for the model's {width} outputs. "
                f"Received: {bad:g} at index {int(np.argmax(outside))}"
            )
        one_hot = np.zeros((labels.size, width), np.float32)  # 0 and 1: exact in any dtype
        one_hot[np.arange(labels.size), labels.astype(np.int64)] = 1.0
        return one_hot

    def accuracy_kind(self, width: int) -> str:
        return "categorical"


class BinaryCrossEntropy(Loss):
    """Mean over all elements of -(t log p + (1 - t) log(1 - p)), p clipped."""

    value_kind = grad_kind = "binary_cross_entropy"
    fused_layer = Sigmoid

    def accuracy_kind(self, width: int) -> str:
        return "binary"


LOSSES = {cls.__name__: cls for cls in (MeanSquared, MeanAbsolute, CategoricalCrossEntropy, BinaryCrossEntropy)}

__all__ = [
    "Loss",
    "MeanSquared",
    "MeanAbsolute",
    "CategoricalCrossEntropy",
    "BinaryCrossEntropy",
    "LOSSES",
]
