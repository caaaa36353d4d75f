"""Metrics, as Keras 3's: what ``compile(metrics=[...])`` (or fit's and
evaluate's ``metrics=``) reports beside the loss, per epoch in the History
and the logs, and for the validation data as ``val_`` twins.

A metric never reads predictions back: each training step (and each
validation or evaluation batch) adds counts or sums into accumulators on the
device, one dispatch a metric (``Backend.metric_counts``,
``Backend.metric_sums``: shaders/metrics.wgsl), beside the loss's; the host
reads them with the loss, once an epoch or less, and makes the values from
the epoch's totals (precision = TP / (TP + FP), ...). So a metric's value is
that of the whole epoch, exactly as Keras's stateful metrics give it.

==============================  =========================================  ==============================
metric (string names)           value over the epoch                       accumulated per batch
==============================  =========================================  ==============================
"accuracy", "acc"               the loss's accuracy: binary (threshold     the loss's correct count
                                0.5, 0 for logits) for a single output or
                                a binary cross-entropy, else categorical
Accuracy                        fraction of elements with p == t           hits, elements
BinaryAccuracy                  fraction of elements with                  hits, elements
("binary_accuracy")             (p > threshold) == (t > 0.5)
CategoricalAccuracy,            fraction of rows whose argmax is the       hits, rows
SparseCategoricalAccuracy       target's class (one-hot rows or labels)
TopKCategoricalAccuracy,        fraction of rows whose target class is     hits, rows
SparseTopKCategoricalAccuracy   among the k largest (k=5)
Precision, Recall               TP / (TP + FP), TP / (TP + FN) at          TP, FP, FN, TN
                                ``thresholds`` (0.5) over every element
                                (or one ``class_id``'s column)
F1Score, FBetaScore             (1 + β²) P R / (β² P + R) per class        TP, FP, FN, TN per class
                                (argmax, or ``threshold``), averaged
AUC                             area under the ROC (or PR) curve from      histograms of predictions
                                ``num_thresholds`` (200) thresholds,       over the thresholds, per
                                Keras's interpolation                      true and false target
MeanAbsoluteError ("mae")       Σ |p - t| / elements                       sum, elements
MeanSquaredError ("mse")        Σ (p - t)² / elements                      sum, elements
RootMeanSquaredError ("rmse")   √(Σ (p - t)² / elements)                   sum, elements
R2Score                         1 - Σ(t - p)² / Σ(t - mean t)² per         Σ t, Σ t², Σ (t - p)² per
                                column, averaged (class_aggregation)       column, rows
==============================  =========================================  ==============================

Predictions and targets are read as Keras reads them, on the output's last
axis: an output of per-sample shape (..., k) gives rows of k values (a
sequence's tokens are rows); integer class labels are read as their one-hot
rows; a target is true where it is > 0.5 (0 or 1 targets, as Keras expects).
After a Softmax or Sigmoid that a training step fuses with its loss, the
metrics see that layer's probabilities, as ``predict`` gives them; with a
loss of ``from_logits=True`` they see the logits, as Keras's do (``AUC(from_logits=True)``
applies the sigmoid itself).

Where this differs from Keras: ``F1Score``, ``FBetaScore`` and ``R2Score``
report one number an epoch, so F1Score's ``average`` is "macro" by default
(Keras's None, a value per class, is refused: the History holds numbers),
and R2Score's ``class_aggregation=None`` too; ``Precision`` and ``Recall``
take one threshold, not a list; ``AUC`` takes at most 511
thresholds and no ``multi_label``. As Keras's ``metrics`` (not its
``weighted_metrics``, which is not offered), sample weights do not weigh
them: each element or row counts once.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Sequence

import numpy as np

from .backends import Array, Backend

__all__ = [
    "Metric", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Precision", "Recall", "FBetaScore", "F1Score",
    "AUC", "MeanAbsoluteError", "MeanSquaredError", "RootMeanSquaredError", "R2Score", "METRICS", "get",
]

#: the most columns one per-class count covers (4 bins a column)
_CHUNK = 256


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (Keras's divide_no_nan)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), 0.0)


class Metric:
    """Base class: a metric's settings (no state: the accumulators live in
    the fit's block on the device, so one object may serve several outputs
    and fits, and calls on arrays; at most a cache of constants per backend
    that goes with the backend, as AUC's thresholds). Subclasses say how many accumulators an output of ``cols``
    columns needs (:meth:`size`), what a batch adds to them
    (:meth:`update`) and the value of their totals (:meth:`result`)."""

    #: the name in logs (an output's prefix and ``val_`` are added)
    name: str

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"expected a metric name as a non-empty string. Received: name={name!r}")
        self.name = name if name is not None else self.default_name

    default_name = "metric"

    def size(self, cols: int) -> int:
        """Accumulators for an output of ``cols`` columns (its last axis)."""
        raise NotImplementedError

    def update(self, backend: Backend, p: Array, t: Array, acc: Array, index: int, transform: str) -> None:
        """Add a batch's counts or sums into ``acc[index:]``: p (rows, cols), t
        (rows, cols) or (rows, 1) labels; ``transform`` is what turns p into
        the probabilities the model outputs ("none", or "softmax"/"sigmoid"
        where a training step fused that layer with the loss)."""
        raise NotImplementedError

    def result(self, sums: np.ndarray, cols: int) -> np.ndarray:
        """One value a row of ``sums`` (epochs, size) in float64."""
        raise NotImplementedError

    def check(self, cols: int, output: str) -> None:
        """ValueError where the metric cannot be counted on an output of ``cols`` columns."""

    def __call__(self, y_true, y_pred, backend: Backend | None = None) -> float:
        """The metric of predictions ``y_pred`` (n, ..., k) against targets
        ``y_true`` (the same shape, or integer class labels without the last
        axis or with a last axis of 1), as Keras's ``update_state`` then
        ``result`` on a fresh metric; counted by ``backend`` (by default
        numpy in float64, one backend for every call)."""
        backend = _float64_backend() if backend is None else backend
        p = np.asarray(y_pred, dtype=backend.dtype)
        p = p[:, None] if p.ndim == 1 else p
        cols = p.shape[-1]
        rows = p.size // cols
        t = np.asarray(y_true, dtype=backend.dtype)
        labels = cols > 1 and (t.ndim == p.ndim - 1 or (t.shape[-1] == 1 and t.size == rows))
        t = t.reshape(rows, 1) if labels else t.reshape(rows, cols)
        self.check(cols, "y_pred")
        acc = backend.zeros((max(self.size(cols), 1),))
        self.update(backend, backend.asarray(p.reshape(rows, cols)), backend.asarray(t), acc, 0, "none")
        return float(self.result(backend.to_numpy(acc).astype(np.float64)[None], cols)[0])

    def get_config(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        config = self.get_config()
        if config.get("name") == self.default_name:
            config.pop("name")
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


class LossAccuracy(Metric):
    """``"accuracy"`` and ``"acc"``: the accuracy the loss counts anyway
    (binary or categorical, as Keras picks for the string), no dispatch of
    its own."""

    default_name = "accuracy"

    def size(self, cols: int) -> int:
        return 0

    def __call__(self, y_true, y_pred, backend: Backend | None = None) -> float:
        """On arrays, as Keras's string picks: binary accuracy for one
        column, else categorical (labels or one-hot rows)."""
        p = np.asarray(y_pred)
        single = p.ndim == 1 or p.shape[-1] == 1
        return (BinaryAccuracy() if single else CategoricalAccuracy())(y_true, y_pred, backend)


class _Hits(Metric):
    """A fraction of hits: (hits, items) counted on the device."""

    kind: str
    threshold = 0.5
    k = 1

    def size(self, cols: int) -> int:
        return 2

    def update(self, backend, p, t, acc, index, transform) -> None:
        backend.metric_counts(self.kind, p, t, acc, index, 2, threshold=self.threshold, k=self.k,
                              transform=transform)

    def result(self, sums, cols):
        return _ratio(sums[:, 0], sums[:, 1])


class Accuracy(_Hits):
    """How often predictions equal targets exactly (Keras's ``Accuracy``:
    for class predictions; the string ``"accuracy"`` is the loss's accuracy)."""

    default_name, kind = "accuracy", "equal"


class BinaryAccuracy(_Hits):
    """How often (p > threshold) matches the target (> 0.5), over elements."""

    default_name, kind = "binary_accuracy", "binary"

    def __init__(self, name: str | None = None, threshold: float = 0.5):
        super().__init__(name)
        self.threshold = _float(threshold, "threshold")

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(_Hits):
    """How often a row's argmax is the target's class (one-hot rows or labels)."""

    default_name, kind = "categorical_accuracy", "categorical"


class SparseCategoricalAccuracy(CategoricalAccuracy):
    """CategoricalAccuracy of integer labels (one-hot rows work too)."""

    default_name = "sparse_categorical_accuracy"


class TopKCategoricalAccuracy(_Hits):
    """How often the target's class is among a row's ``k`` largest
    predictions (a tie with the k-th counts as in, as TensorFlow's in_top_k)."""

    default_name, kind = "top_k_categorical_accuracy", "top_k"

    def __init__(self, k: int = 5, name: str | None = None):
        super().__init__(name)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"expected k, a positive integer. Received: k={k!r}")
        self.k = int(k)

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """TopKCategoricalAccuracy of integer labels (one-hot rows work too)."""

    default_name = "sparse_top_k_categorical_accuracy"


class _Confusion(Metric):
    """Precision and Recall: TP, FP, FN, TN over every element at one
    threshold (or over one class's column); with ``top_k`` only a row's
    k largest predictions may be positive (ties to the lower class, as
    Keras's top_k)."""

    def __init__(self, thresholds: float | None = None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = None):
        super().__init__(name)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"expected top_k, a positive integer, or None. Received: top_k={top_k!r}")
        self.top_k = None if top_k is None else int(top_k)
        if isinstance(thresholds, (list, tuple, np.ndarray)):
            if len(thresholds) != 1:
                raise ValueError(f"expected one threshold ({type(self).__name__} reports one number an epoch). "
                                 f"Received: thresholds={thresholds!r}")
            thresholds = thresholds[0]
        # Keras's default: 0.5, or with top_k every one of a row's k largest (a threshold of -inf)
        default = 0.5 if top_k is None else -math.inf
        self.thresholds = default if thresholds is None else _float(thresholds, "thresholds")
        if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer))
                                     or class_id < 0):
            raise ValueError(f"expected class_id, a class number (≥ 0). Received: class_id={class_id!r}")
        self.class_id = None if class_id is None else int(class_id)

    def check(self, cols: int, output: str) -> None:
        if self.class_id is not None and self.class_id >= cols:
            raise ValueError(f"expected class_id below the {cols} classes of the output {output!r}. "
                             f"Received: class_id={self.class_id}")

    def size(self, cols: int) -> int:
        return 4

    def update(self, backend, p, t, acc, index, transform) -> None:
        columns = None if self.class_id is None else (self.class_id, self.class_id + 1)
        backend.metric_counts("confusion", p, t, acc, index, 4, threshold=self.thresholds, columns=columns,
                              transform=transform, top_k=self.top_k or 0)

    def get_config(self) -> dict:
        return {**super().get_config(), "thresholds": self.thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_Confusion):
    """TP / (TP + FP): of the elements predicted true (p > 0.5), how many are."""

    default_name = "precision"

    def result(self, sums, cols):
        return _ratio(sums[:, 0], sums[:, 0] + sums[:, 1])


class Recall(_Confusion):
    """TP / (TP + FN): of the true targets, how many are predicted (p > 0.5)."""

    default_name = "recall"

    def result(self, sums, cols):
        return _ratio(sums[:, 0], sums[:, 0] + sums[:, 2])


class FBetaScore(Metric):
    """(1 + β²) · precision · recall / (β² · precision + recall), per class,
    as Keras's: a row's largest prediction is its positive (ties all are;
    ``threshold=None``) or every prediction above ``threshold``; ``average``
    "micro" (the counts of every class together), "macro" (the mean over
    classes) or "weighted" (by each class's true targets). Keras's default
    None (one value per class) is not offered: the History holds numbers."""

    default_name = "fbeta_score"

    def __init__(self, average: str | None = "macro", beta: float = 1.0, threshold: float | None = None,
                 name: str | None = None):
        super().__init__(name)
        if average not in ("micro", "macro", "weighted"):
            extra = (" (None, a value per class, is Keras's default, but logs here hold one number a metric)"
                     if average is None else "")
            raise ValueError(f"expected average='micro', 'macro' or 'weighted'{extra}. Received: average={average!r}")
        beta = _float(beta, "beta")
        if beta <= 0:
            raise ValueError(f"expected beta > 0. Received: beta={beta}")
        if threshold is not None:
            threshold = _float(threshold, "threshold")
            if not 0 < threshold <= 1:
                raise ValueError(f"expected 0 < threshold <= 1. Received: threshold={threshold}")
        self.average, self.beta, self.threshold = average, beta, threshold

    def size(self, cols: int) -> int:
        return 4 * cols

    def update(self, backend, p, t, acc, index, transform) -> None:
        cols = p.shape[1]
        for lo in range(0, cols, _CHUNK):
            hi = min(cols, lo + _CHUNK)
            # the chunk's accumulators by the array's offset: index is a step value, kept as it is
            at = backend.rows(acc, 4 * lo, acc.shape[0]) if lo else acc
            backend.metric_counts("confusion", p, t, at, index, 4 * (hi - lo),
                                  threshold=0.5 if self.threshold is None else self.threshold,
                                  per_class=True, row_max=self.threshold is None, columns=(lo, hi),
                                  transform=transform)

    def result(self, sums, cols):
        counts = sums.reshape(len(sums), cols, 4)
        tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
        support = tp + fn
        if self.average == "micro":
            tp, fp, fn = tp.sum(1, keepdims=True), fp.sum(1, keepdims=True), fn.sum(1, keepdims=True)
        eps = 1e-7  # Keras's backend.epsilon()
        precision, recall = tp / (tp + fp + eps), tp / (tp + fn + eps)
        b2 = self.beta ** 2
        score = precision * recall / (b2 * precision + recall + eps) * (1 + b2)
        if self.average == "weighted":
            return (score * support / (support.sum(1, keepdims=True) + eps)).sum(1)
        return score.mean(1)

    def get_config(self) -> dict:
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """FBetaScore with β = 1: the harmonic mean of precision and recall."""

    default_name = "f1_score"

    def __init__(self, average: str | None = "macro", threshold: float | None = None, name: str | None = None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["beta"]
        return config


class AUC(Metric):
    """The area under the ROC curve (``curve="ROC"``) or the
    precision-recall curve ("PR"), as Keras's: ``num_thresholds`` (200)
    thresholds, -1e-7, 1/(n-1), ..., (n-2)/(n-1), 1 + 1e-7 (or ``thresholds``
    in [0, 1] with those two ends added), the counts at each over every
    element (a prediction above a threshold is positive), and
    ``summation_method`` "interpolation" (the trapezoids of the ROC curve;
    Davis and Goadrich's interpolation for PR), "minoring" or "majoring".
    ``from_logits=True`` applies a sigmoid to the predictions first."""

    default_name = "auc"

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation",
                 name: str | None = None, thresholds: Sequence[float] | None = None, multi_label: bool = False,
                 num_labels: int | None = None, label_weights=None, from_logits: bool = False):
        super().__init__(name)
        if multi_label or num_labels is not None or label_weights is not None:
            raise ValueError("AUC(multi_label=True), num_labels and label_weights are not supported here: "
                             "the AUC is that of every prediction flattened (multi_label=False)")
        if str(curve).upper() not in ("ROC", "PR"):
            raise ValueError(f"expected curve='ROC' or 'PR'. Received: curve={curve!r}")
        if str(summation_method).lower() not in ("interpolation", "minoring", "majoring"):
            raise ValueError("expected summation_method='interpolation', 'minoring' or 'majoring'. "
                             f"Received: summation_method={summation_method!r}")
        self.curve, self.summation_method = str(curve).upper(), str(summation_method).lower()
        self.from_logits = bool(from_logits)
        eps = 1e-7
        if thresholds is not None:
            inner = sorted(_float(v, "thresholds") for v in thresholds)
            self._given = list(inner)
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) \
                    or num_thresholds <= 1:
                raise ValueError(f"expected num_thresholds, an integer > 1. Received: num_thresholds={num_thresholds!r}")
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._given = None
        self.num_thresholds = len(inner) + 2
        if 2 * (self.num_thresholds + 1) > 1024:
            raise ValueError(f"expected at most 511 thresholds for AUC. Received: {self.num_thresholds}")
        #: the thresholds compared with the predictions, as float32 (Keras's, cast to the predictions' dtype)
        self.thresholds = np.array([0.0 - eps] + inner + [1.0 + eps], np.float32)
        # the thresholds on each backend (a cache: gone with the backend)
        self._on: weakref.WeakKeyDictionary[Backend, Array] = weakref.WeakKeyDictionary()

    def size(self, cols: int) -> int:
        return 2 * (self.num_thresholds + 1)

    def update(self, backend, p, t, acc, index, transform) -> None:
        thresholds = self._on.get(backend)
        if thresholds is None:
            thresholds = self._on[backend] = backend.from_numpy(self.thresholds)
        backend.metric_counts("buckets", p, t, acc, index, self.size(0), thresholds=thresholds,
                              transform=transform, then_sigmoid=self.from_logits)

    def confusion(self, sums: np.ndarray) -> tuple[np.ndarray, ...]:
        """(TP, FP, FN, TN), each (epochs, num_thresholds), from the histograms."""
        n = self.num_thresholds
        negatives, positives = sums[:, : n + 1], sums[:, n + 1:]
        # prediction q is above threshold i where its bucket b > i
        above_pos = np.cumsum(positives[:, ::-1], axis=1)[:, ::-1][:, 1:]
        above_neg = np.cumsum(negatives[:, ::-1], axis=1)[:, ::-1][:, 1:]
        tp, fp = above_pos, above_neg
        fn, tn = positives.sum(1, keepdims=True) - tp, negatives.sum(1, keepdims=True) - fp
        return tp, fp, fn, tn

    def result(self, sums, cols):
        tp, fp, fn, tn = self.confusion(sums)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr(tp, fp, fn)
        recall = _ratio(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _ratio(fp, fp + tn), recall
        else:
            x, y = recall, _ratio(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:, :-1] + y[:, 1:]) / 2
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:, :-1], y[:, 1:])
        else:
            heights = np.maximum(y[:, :-1], y[:, 1:])
        return ((x[:, :-1] - x[:, 1:]) * heights).sum(1)

    @staticmethod
    def _interpolate_pr(tp, fp, fn):
        dtp = tp[:, :-1] - tp[:, 1:]
        p = tp + fp
        dp = p[:, :-1] - p[:, 1:]
        slope = _ratio(dtp, np.maximum(dp, 0))
        intercept = tp[:, 1:] - slope * p[:, 1:]
        both = (p[:, :-1] > 0) & (p[:, 1:] > 0)
        ratio = np.where(both, _ratio(p[:, :-1], np.maximum(p[:, 1:], 0)), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = slope * (dtp + intercept * np.log(ratio))
        return _ratio(terms, np.maximum(tp[:, 1:] + fn[:, 1:], 0)).sum(1)

    def get_config(self) -> dict:
        config = {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "from_logits": self.from_logits}
        if self._given is not None:
            config["thresholds"] = self._given
        return config


class _MeanError(Metric):
    kind: str

    def size(self, cols: int) -> int:
        return 2

    def update(self, backend, p, t, acc, index, transform) -> None:
        backend.metric_sums(self.kind, p, t, acc, index, transform=transform)

    def result(self, sums, cols):
        return _ratio(sums[:, 0], sums[:, 1])


class MeanAbsoluteError(_MeanError):
    """The mean of |p - t| over every element."""

    default_name, kind = "mean_absolute_error", "absolute"


class MeanSquaredError(_MeanError):
    """The mean of (p - t)² over every element."""

    default_name, kind = "mean_squared_error", "squared"


class RootMeanSquaredError(_MeanError):
    """√(mean of (p - t)²) over every element."""

    default_name, kind = "root_mean_squared_error", "squared"

    def result(self, sums, cols):
        return np.sqrt(super().result(sums, cols))


class R2Score(Metric):
    """The coefficient of determination per column of the output's last
    axis, 1 - Σ (t - p)² / Σ (t - mean t)² over the epoch (a column whose
    value is infinite counts 0, as Keras's), aggregated by
    ``class_aggregation``: "uniform_average" (the mean) or
    "variance_weighted_average"; ``num_regressors`` > 0 gives the adjusted
    R². Keras's class_aggregation=None (a value per column) is not offered."""

    default_name = "r2_score"

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str | None = None):
        super().__init__(name)
        if class_aggregation not in ("uniform_average", "variance_weighted_average"):
            extra = (" (None, a value per column, is Keras's, but logs here hold one number a metric)"
                     if class_aggregation is None else "")
            raise ValueError("expected class_aggregation='uniform_average' or 'variance_weighted_average'"
                             f"{extra}. Received: class_aggregation={class_aggregation!r}")
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, (int, np.integer)) \
                or num_regressors < 0:
            raise ValueError(f"expected num_regressors ≥ 0. Received: num_regressors={num_regressors!r}")
        self.class_aggregation, self.num_regressors = class_aggregation, int(num_regressors)

    def size(self, cols: int) -> int:
        return 3 * cols + 1

    def update(self, backend, p, t, acc, index, transform) -> None:
        backend.metric_sums("columns", p, t, acc, index, transform=transform)

    def result(self, sums, cols):
        per = sums[:, : 3 * cols].reshape(len(sums), cols, 3)
        total_sum, squared_sum, residual = per[..., 0], per[..., 1], per[..., 2]
        count = sums[:, 3 * cols : 3 * cols + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total_sum / count
            total = squared_sum - total_sum * mean
            raw = 1 - residual / total
        raw = np.where(np.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            score = raw.mean(1)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                score = (total * raw).sum(1) / total.sum(1)
        if self.num_regressors:
            n, k = count[:, 0] * cols, self.num_regressors
            adjust = k < n - 1
            with np.errstate(divide="ignore", invalid="ignore"):
                adjusted = 1 - (1 - score) * (n - 1) / (n - k - 1)
            score = np.where(adjust, adjusted, score)
        return score

    def get_config(self) -> dict:
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}


#: parts of a metric's name that say it grows as it improves (a monitor's mode="auto")
_UPWARD = ("acc", "precision", "recall", "f1", "fbeta", "auc", "r2")


def improves_upward(key: str) -> bool:
    """Whether the metric logged as ``key`` improves as it grows (accuracies,
    precision, recall, F-scores, AUC, R²), as Keras's metrics' direction; not
    losses and errors."""
    name = key.lower()
    return not name.endswith("loss") and any(part in name for part in _UPWARD)


_BACKEND: list = []
_BACKEND_LOCK = threading.Lock()


def _float64_backend() -> Backend:
    """The numpy backend in float64 that :meth:`Metric.__call__` counts
    with, made once (it keeps its scratch buffers per thread)."""
    with _BACKEND_LOCK:
        if not _BACKEND:
            from .backends import NumpyBackend

            _BACKEND.append(NumpyBackend("float64"))
        return _BACKEND[0]


def _float(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"expected {what}, a finite number. Received: {what}={value!r}")
    return float(value)


_CLASSES = (Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
            SparseTopKCategoricalAccuracy, Precision, Recall, FBetaScore, F1Score, AUC, MeanAbsoluteError,
            MeanSquaredError, RootMeanSquaredError, R2Score)
#: the metric classes by name
METRICS = {cls.__name__: cls for cls in _CLASSES}
#: the string names (any case) compile's ``metrics`` takes, as Keras's: snake_case class names and aliases
NAMES: dict[str, type[Metric]] = {cls.default_name: cls for cls in _CLASSES if cls is not Accuracy}
NAMES.update({"accuracy": LossAccuracy, "acc": LossAccuracy, "mae": MeanAbsoluteError, "mse": MeanSquaredError,
              "rmse": RootMeanSquaredError})


def get(identifier) -> tuple[str, Metric]:
    """(the name in logs, the metric) of a Metric object, a Metric class, or
    a name: one of :data:`NAMES` (any case) or a class name ("AUC"). As in
    Keras, a string is its own name in the logs ("mae" reports "mae")."""
    if isinstance(identifier, Metric):
        return identifier.name, identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric) and identifier is not Metric:
        metric = identifier()
        return metric.name, metric
    if isinstance(identifier, str):
        cls = NAMES.get(identifier.lower()) or METRICS.get(identifier)
        if cls is not None:
            return identifier, cls(name=identifier) if cls is LossAccuracy else cls()
    raise ValueError(f"expected a Metric object or one of {sorted(NAMES)} (or a class name of "
                     f"intricate_py.metrics). Received: {identifier!r}")
