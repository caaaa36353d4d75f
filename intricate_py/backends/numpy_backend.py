"""The CPU backend: every operation of :mod:`intricate_py.backends.base` as numpy calls.

Arrays are C-contiguous ``numpy.ndarray``s of the backend's dtype (int32 for
gather indices). Operations write into the caller's ``out`` arrays. The
optimizer updates work in scratch buffers kept per parameter shape (and per
thread: models sharing a backend may train in several threads), so they
allocate nothing; other operations may allocate temporaries the size of
their batch (a loss's terms, a comparison mask, a padded image).
"""

from __future__ import annotations

import math
import threading
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import special
from .base import (CLIP_EPSILON, OUTPUT_GRADIENTS, Backend, dropout_threshold, gradient_from_output, pcg, sides,
                   window_counts, window_positions)


def _sigmoid(x: np.ndarray, out: np.ndarray) -> None:
    # exp(-|x|) never overflows; pick the branch that is exact for each sign
    # (the sign is read first: out may be x)
    negative = x < 0
    e = np.exp(-np.abs(x))
    np.divide(1.0, 1.0 + e, out=out)
    out[negative] = e[negative] * out[negative]


def _softmax(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.subtract(x, x.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


# Each activation: f(x, out, param), out possibly x; each gradient from the
# output: (y, dy, out, param); from the input: (x, dy, out, param). GELU's
# are computed in float64 (Φ comes from special.py) and rounded once.
def _tanh(x, out, param) -> None:
    np.tanh(x, out=out)


def _sigmoid_of(x, out, param) -> None:
    _sigmoid(x, out)


def _relu(x, out, param) -> None:
    np.maximum(x, x.dtype.type(0), out=out)


def _leaky_relu(x, out, slope) -> None:
    np.copyto(out, np.where(x > 0, x, x * x.dtype.type(slope)))


def _elu(x, out, alpha) -> None:
    negative = np.expm1(np.minimum(x, x.dtype.type(0))) * x.dtype.type(alpha)
    np.copyto(out, np.where(x > 0, x, negative))


def _gelu(x, out, param) -> None:
    if x.dtype == np.float32 and out.dtype == np.float32:
        special.gelu32(x, out)
        return
    with np.errstate(invalid="ignore"):  # -inf · 0 is NaN, as in PyTorch
        np.copyto(out, x * special.normal_cdf(x), casting="same_kind")


def _gelu_tanh_arguments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2u, 2u') in float64, u = √(2/π) (x + 0.044715 x³)."""
    x = x.astype(np.float64)
    x2 = x * x
    with np.errstate(over="ignore"):
        return 2 * _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x2 * x), 2 * _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x2)


def _gelu_tanh(x, out, param) -> None:
    v, _ = _gelu_tanh_arguments(x)
    s = np.empty_like(v)
    _sigmoid(v, s)
    with np.errstate(invalid="ignore"):
        np.copyto(out, x * s, casting="same_kind")


def _silu(x, out, param) -> None:
    s = np.empty_like(x)
    _sigmoid(x, s)
    with np.errstate(invalid="ignore"):
        np.multiply(x, s, out=out)


def _softplus(x, out, param) -> None:
    np.copyto(out, np.maximum(x, x.dtype.type(0)) + np.log1p(np.exp(-np.abs(x))))


def _sigmoid_slope(x: np.ndarray) -> np.ndarray:
    """σ(x)(1 - σ(x)) = e / (1 + e)², e = e^-|x|: no 1 - σ that cancels."""
    e = np.exp(-np.abs(x))
    return e / ((1 + e) * (1 + e))


def _tanh_grad(y, dy, out, param) -> None:
    # (1 - y)(1 + y) rather than 1 - y², which cancels when y is near ±1
    one = y.dtype.type(1)  # a numpy scalar: cheaper in a ufunc call than an int
    np.subtract(one, y, out)
    np.multiply(out, np.add(one, y), out)
    np.multiply(out, dy, out)


def _sigmoid_grad(y, dy, out, param) -> None:
    np.subtract(y.dtype.type(1), y, out)
    np.multiply(out, y, out)
    np.multiply(out, dy, out)


def _relu_grad(y, dy, out, param) -> None:
    np.multiply(dy, y > 0, out)


def _leaky_relu_grad(y, dy, out, slope) -> None:
    np.multiply(dy, np.where(y > 0, y.dtype.type(1), y.dtype.type(slope)), out)


def _elu_grad(y, dy, out, alpha) -> None:
    np.multiply(dy, np.where(y > 0, y.dtype.type(1), y + y.dtype.type(alpha)), out)


def _softplus_grad(y, dy, out, param) -> None:
    np.multiply(dy, -np.expm1(-y), out)


def _tanh_grad_x(x, dy, out, param) -> None:
    np.multiply(dy, 4 * _sigmoid_slope(2 * x), out)  # 1 - tanh² x = 4 σ'(2x): no 1 - t that cancels


def _sigmoid_grad_x(x, dy, out, param) -> None:
    np.multiply(dy, _sigmoid_slope(x), out)


def _relu_grad_x(x, dy, out, param) -> None:
    np.multiply(dy, x > 0, out)


def _leaky_relu_grad_x(x, dy, out, slope) -> None:
    np.multiply(dy, np.where(x > 0, x.dtype.type(1), x.dtype.type(slope)), out)


def _elu_grad_x(x, dy, out, alpha) -> None:
    slope = np.exp(np.minimum(x, x.dtype.type(0))) * x.dtype.type(alpha)
    np.multiply(dy, np.where(x > 0, x.dtype.type(1), slope), out)


def _gelu_grad_x(x, dy, out, param) -> None:
    if x.dtype == dy.dtype == out.dtype == np.float32:
        special.gelu_grad32(x, dy, out)
        return
    slope = special.normal_cdf(x) + x * special.normal_pdf(x)
    np.multiply(dy, slope, out=out, casting="same_kind")


def _gelu_tanh_grad_x(x, dy, out, param) -> None:
    v, dv = _gelu_tanh_arguments(x)
    s = np.empty_like(v)
    _sigmoid(v, s)
    ds = _sigmoid_slope(v)
    # x dv σ'(v) is 0 where σ'(v) is (beyond x³'s float range dv is inf)
    with np.errstate(invalid="ignore", over="ignore"):
        slope = s + np.where(ds > 0, x * dv * ds, 0.0)
    np.multiply(dy, slope, out=out, casting="same_kind")


def _silu_grad_x(x, dy, out, param) -> None:
    s = np.empty_like(x)
    _sigmoid(x, s)
    np.multiply(dy, s + x * _sigmoid_slope(x), out)


def _softplus_grad_x(x, dy, out, param) -> None:
    s = np.empty_like(x)
    _sigmoid(x, s)
    np.multiply(dy, s, out)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = 0.044715

_ACTIVATION = {
    "tanh": _tanh, "sigmoid": _sigmoid_of, "relu": _relu, "leaky_relu": _leaky_relu, "elu": _elu,
    "gelu": _gelu, "gelu_tanh": _gelu_tanh, "silu": _silu, "softplus": _softplus,
}
_ACTIVATION_GRAD = {  # from the output, for the kinds in OUTPUT_GRADIENTS
    "tanh": _tanh_grad, "sigmoid": _sigmoid_grad, "relu": _relu_grad, "leaky_relu": _leaky_relu_grad,
    "elu": _elu_grad, "softplus": _softplus_grad,
}
_ACTIVATION_GRAD_X = {  # from the input, every kind
    "tanh": _tanh_grad_x, "sigmoid": _sigmoid_grad_x, "relu": _relu_grad_x, "leaky_relu": _leaky_relu_grad_x,
    "elu": _elu_grad_x, "gelu": _gelu_grad_x, "gelu_tanh": _gelu_tanh_grad_x, "silu": _silu_grad_x,
    "softplus": _softplus_grad_x,
}


def _output_gradient(kind: str, param: float):
    """The gradient-from-output function of ``kind``; ValueError where the
    output does not determine the gradient."""
    if not gradient_from_output(kind, param):
        raise ValueError(
            f"expected an activation whose output determines its gradient ({sorted(OUTPUT_GRADIENTS)}, "
            f"leaky_relu and elu with a parameter >= 0). Received: kind={kind!r}, param={param!r}: "
            "use activation_grad_from_input"
        )
    return _ACTIVATION_GRAD[kind]


def _clip(p: np.ndarray) -> np.ndarray:
    # two ufunc calls: np.clip costs several times more on small arrays
    t = p.dtype.type
    return np.minimum(np.maximum(p, t(CLIP_EPSILON)), t(1 - CLIP_EPSILON))


# Each loss: (p, t, g) -> (Σ l(p, t), the predictions accuracy is counted
# on), writing the unscaled gradient into g unless g is None (see Backend.loss).
def _squared(p, t, g):
    d = np.subtract(p, t, out=g).reshape(-1)
    return np.dot(d, d), p


def _absolute(p, t, g):
    d = np.subtract(p, t, out=g)
    total = np.abs(d).sum()
    if g is not None:
        np.sign(g, out=g)
    return total, p


def _cross_entropy_value(p, t):
    return -np.dot(t.reshape(-1), np.log(_clip(p)).reshape(-1))


def _binary_cross_entropy_value(p, t):
    c = _clip(p)
    return -np.sum(t * np.log(c) + (1 - t) * np.log(1 - c))


def _cross_entropy(p, t, g):
    if g is not None:
        np.divide(t, _clip(p), out=g)
        np.negative(g, out=g)
    return _cross_entropy_value(p, t), p


def _binary_cross_entropy(p, t, g):
    if g is not None:
        c = _clip(p)
        np.subtract(c, t, out=g)
        g /= c * (1 - c)
    return _binary_cross_entropy_value(p, t), p


def _softmax_cross_entropy(z, t, g):
    p = _softmax(z, np.empty_like(z))
    if g is not None:
        np.subtract(p, t, out=g)
    return _cross_entropy_value(p, t), p


def _sigmoid_cross_entropy(z, t, g):
    p = np.empty_like(z)
    _sigmoid(z, p)
    if g is not None:
        np.subtract(p, t, out=g)
    return _binary_cross_entropy_value(p, t), p


def _logits_cross_entropy(z, t, g):
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    sums = e.sum(axis=1, keepdims=True)
    if g is not None:
        np.divide(e, sums, out=g)
        g -= t
    # -Σ_j t_j (shifted_j - log Σ e) per row
    return np.dot(t.sum(axis=1), np.log(sums).reshape(-1)) - np.dot(t.reshape(-1), shifted.reshape(-1)), z


def _logits_binary_cross_entropy(z, t, g):
    if g is not None:
        _sigmoid(z, g)
        g -= t
    return np.sum(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))), z


def one_hot(labels: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` (rows, classes) as the one-hot rows (0 and 1, exact in any
    dtype) of the class ``labels`` (rows, 1); returns it."""
    out.fill(0)
    out[np.arange(len(out)), labels[:, 0].astype(np.intp)] = 1
    return out


def row_losses(kind, p, t) -> tuple[np.ndarray, np.ndarray]:
    """Each row's loss (the sum of its terms), for weighted rows and a
    population's members; and the predictions accuracy is counted on (as
    :data:`LOSS_TERMS`'s functions give them)."""
    if kind in ("softmax_cross_entropy", "sigmoid_cross_entropy"):
        q = np.empty_like(p)
        (_softmax if kind == "softmax_cross_entropy" else _sigmoid)(p, q)
        p, kind = q, kind.replace("softmax_", "").replace("sigmoid_", "binary_")
    if kind == "squared":
        return ((p - t) ** 2).sum(axis=1), p
    if kind == "absolute":
        return np.abs(p - t).sum(axis=1), p
    if kind == "cross_entropy":
        return -(t * np.log(_clip(p))).sum(axis=1), p
    if kind == "binary_cross_entropy":
        c = _clip(p)
        return -(t * np.log(c) + (1 - t) * np.log(1 - c)).sum(axis=1), p
    if kind == "logits_cross_entropy":
        shifted = p - p.max(axis=1, keepdims=True)
        return t.sum(axis=1) * np.log(np.exp(shifted).sum(axis=1)) - (t * shifted).sum(axis=1), p
    return (np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))).sum(axis=1), p


#: the kinds whose value clips p (or its softmax or sigmoid) and so can hide ±inf
CLIPPED_LOSSES = frozenset({"cross_entropy", "binary_cross_entropy", "softmax_cross_entropy", "sigmoid_cross_entropy"})

#: each loss kind's function (p, t, g) -> (Σ l(p, t), predictions), as above
LOSS_TERMS = {
    "squared": _squared,
    "absolute": _absolute,
    "cross_entropy": _cross_entropy,
    "binary_cross_entropy": _binary_cross_entropy,
    "softmax_cross_entropy": _softmax_cross_entropy,
    "sigmoid_cross_entropy": _sigmoid_cross_entropy,
    "logits_cross_entropy": _logits_cross_entropy,
    "logits_binary_cross_entropy": _logits_binary_cross_entropy,
}

_HALF, _ZERO = np.float32(0.5), np.float32(0)  # exact in both dtypes
#: each accuracy kind's hits: per element for the binary ones, per row for categorical
CORRECT_ROWS = {
    "binary": lambda p, t: np.equal(np.greater(p, _HALF), np.greater(t, _HALF)),
    "binary_logits": lambda p, t: np.equal(np.greater(p, _ZERO), np.greater(t, _HALF)),
    "categorical": lambda p, t: p.argmax(axis=1) == t.argmax(axis=1),
}


def _correct(accuracy: str, p: np.ndarray, t: np.ndarray) -> int:
    return np.count_nonzero(CORRECT_ROWS[accuracy](p, t))


def _all_finite(a: np.ndarray) -> bool:
    # a finite sum proves it cheaply; only a sum that is not needs the exact check
    return bool(np.isfinite(np.add.reduce(a, axis=None))) or bool(np.isfinite(a).all())


def _padded(x: np.ndarray, padding, fill) -> np.ndarray:
    """x (n, c, h, w) with ``padding`` (top, bottom, left, right, or a pair
    (h, w)) rows and columns of ``fill`` around each image."""
    top, bottom, left, right = sides(padding)
    if top or bottom or left or right:
        return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    return x


def _whole_plane(x_shape, out_shape, pool, padding) -> bool:
    """Whether a pooling window is each image's whole plane (global pooling)."""
    return out_shape[2:] == (1, 1) and tuple(pool) == tuple(x_shape[2:]) and not any(sides(padding))


def _window_views(x: np.ndarray, pool, stride, out_hw):
    """(ki, kj, view) for each offset of a ``pool`` window sliding at
    ``stride`` over the (already padded) x: the view (n, c, oh, ow) of the
    pixels at that offset of every window, row-major over the offsets."""
    (kh, kw), (sh, sw), (oh, ow) = pool, stride, out_hw
    for ki in range(kh):
        for kj in range(kw):
            yield ki, kj, x[:, :, _span(ki, sh, oh), _span(kj, sw, ow)]


def _counts(image_hw, pool, stride, padding, out_hw, dtype) -> np.ndarray:
    """(oh, ow): the pixels of each window inside the image (base.window_counts each way)."""
    top, _, left, _ = sides(padding)
    rows = window_counts(image_hw[0], pool[0], stride[0], top, out_hw[0])
    columns = window_counts(image_hw[1], pool[1], stride[1], left, out_hw[1])
    return np.multiply.outer(np.array(rows, dtype), np.array(columns, dtype))


def _span(start: int, step: int, count: int) -> slice:
    """``count`` positions from ``start`` at ``step``."""
    return slice(start, start + step * (count - 1) + 1, step)


def _channels(x: np.ndarray, axis: int) -> np.ndarray:
    """x seen as (outer, c, inner) around ``axis`` (a view)."""
    shape = x.shape
    return x.reshape(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))


def _per_channel(v: np.ndarray | None) -> np.ndarray | None:
    """A (c,) array broadcast against (outer, c, inner)."""
    return None if v is None else v.reshape(1, -1, 1)


def _normalized(x: np.ndarray, mean: np.ndarray, var: np.ndarray, epsilon: float, out: np.ndarray) -> np.ndarray:
    """out = (x - mean) · 1 / sqrt(var + epsilon), the statistics broadcast
    against x; returns out."""
    t = x.dtype.type
    rstd = np.divide(t(1), np.sqrt(var + t(epsilon)))
    np.subtract(x, mean, out=out)
    np.multiply(out, rstd, out=out)
    return out


def _affine(out: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None) -> None:
    """out = out · gamma + beta in place, either left out when None."""
    if gamma is not None:
        np.multiply(out, gamma, out=out)
    if beta is not None:
        np.add(out, beta, out=out)


class _Scratch(threading.local):
    """Scratch buffers by (shape, slot), each thread its own."""

    def __init__(self):
        self.buffers: dict[tuple, np.ndarray] = {}


class NumpyBackend(Backend):
    """numpy on the CPU, in float32 or float64."""

    kind = "cpu"

    def __init__(self, dtype: str | np.dtype = "float32", reason: str | None = None):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"expected dtype 'float32' or 'float64'. Received: dtype={dtype!r}")
        #: why this backend was chosen over the one asked for, if it was
        self.reason = reason
        self._scratch = _Scratch()
        self._buffers_created = 0

    def __repr__(self) -> str:
        return f"NumpyBackend(cpu, {self.dtype.name})"

    @property
    def name(self) -> str:
        name = f"cpu (numpy {np.__version__}, {self.dtype.name})"
        return f"{name}: {self.reason}" if self.reason else name

    def _tmp(self, like: np.ndarray, slot: int = 0) -> np.ndarray:
        """A scratch buffer shaped like ``like``, one per (shape, slot) and thread."""
        key = (like.shape, slot)
        scratch = self._scratch.buffers
        buf = scratch.get(key)
        if buf is None:
            buf = scratch[key] = np.empty(like.shape, self.dtype)
        return buf

    # ------------------------------------------------------------------ memory
    def empty(self, shape: Sequence[int], dtype=None) -> np.ndarray:
        self._buffers_created += 1
        return np.empty(tuple(shape), dtype or self.dtype)

    def zeros(self, shape: Sequence[int]) -> np.ndarray:
        self._buffers_created += 1
        return np.zeros(tuple(shape), self.dtype)

    def from_numpy(self, a: np.ndarray) -> np.ndarray:
        self._buffers_created += 1
        dtype = np.int32 if np.issubdtype(np.asarray(a).dtype, np.integer) else self.dtype
        return np.array(a, dtype=dtype, order="C")

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype)  # no copy when a already fits

    dataset = asarray  # take_rows reads plain arrays

    def to_numpy(self, a: np.ndarray) -> np.ndarray:
        return np.array(a)

    def write(self, dst: np.ndarray, a: np.ndarray) -> None:
        np.copyto(dst, a, casting="same_kind")

    def copy(self, src: np.ndarray, dst: np.ndarray) -> None:
        np.copyto(dst, src)

    def clear(self, a: np.ndarray) -> None:
        a.fill(0)

    def rows(self, a: np.ndarray, start: int, stop: int) -> np.ndarray:
        return a[start:stop]

    def view(self, a: np.ndarray, offset: int, shape: Sequence[int]) -> np.ndarray:
        return a.reshape(-1)[offset : offset + math.prod(shape)].reshape(shape)

    def take_rows(self, src, indices, out, first=0, src2=None, out2=None) -> None:
        rows = indices[first : first + len(out)]
        # mode="clip": "raise" (the default) buffers every take into out
        np.take(src, rows, axis=0, out=out, mode="clip")
        if src2 is not None:
            np.take(src2, rows, axis=0, out=out2, mode="clip")

    # ----------------------------------------------------------- dense algebra
    def matmul(self, a, b, out, transpose_a=False, transpose_b=False, bias=None, activation=None,
               grad_of=None, bias_grad=None, activation_param=0.0) -> None:
        op_b = b.T if transpose_b else b
        # the product goes to a scratch buffer when an activation's gradient follows
        product = out if grad_of is None else self._tmp(out, 3)
        # np.dot has less overhead for small arrays, but is slower than matmul
        # with a large transposed first operand (x.T @ dy of a weight gradient)
        if transpose_a and a.size >= 4096:
            np.matmul(a.T, op_b, out=product)
        else:
            np.dot(a.T if transpose_a else a, op_b, product)
        if bias is not None:
            np.add(out, bias, out)
        if activation is not None:
            _ACTIVATION[activation](out, out, activation_param)
        if grad_of is not None:
            kind, y = grad_of
            _output_gradient(kind, activation_param)(y, product, out, activation_param)
        if bias_grad is not None:
            np.add.reduce(op_b, axis=0, out=bias_grad)

    def sum_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        np.add.reduce(x, axis=0, out=out)

    def sum_channels(self, x: np.ndarray, out: np.ndarray) -> None:
        n, c = x.shape[:2]
        np.add.reduce(x.reshape(n, c, -1), axis=(0, 2), out=out)

    def flag_nonfinite(self, x: np.ndarray, acc: np.ndarray, index: int) -> None:
        if not _all_finite(x):
            acc[index] = 1

    # ------------------------------------------------------------- elementwise
    def add(self, a, b, out, scale=1.0) -> None:
        np.add(a, b, out=out)
        if scale != 1.0:
            np.multiply(out, out.dtype.type(scale), out=out)

    def multiply(self, a, b, out) -> None:
        np.multiply(a, b, out=out)

    def scale(self, a, factor, out) -> None:
        np.multiply(a, a.dtype.type(factor), out=out)

    def copy_slice(self, src, dst, src_start, dst_start, width) -> None:
        np.copyto(dst[:, dst_start : dst_start + width], src[:, src_start : src_start + width])

    # ------------------------------------------------------------- activations
    def activation(self, kind: str, x: np.ndarray, out: np.ndarray, param: float = 0.0) -> None:
        _ACTIVATION[kind](x, out, param)

    def activation_grad(self, kind: str, y, dy, out, param: float = 0.0) -> None:
        _output_gradient(kind, param)(y, dy, out, param)

    def activation_grad_from_input(self, kind: str, x, dy, out, param: float = 0.0) -> None:
        _ACTIVATION_GRAD_X[kind](x, dy, out, param)

    def softmax(self, x: np.ndarray, out: np.ndarray) -> None:
        _softmax(x, out)

    def softmax_grad(self, y, dy, out) -> None:
        np.multiply(dy, y, out=out)
        s = out.sum(axis=1, keepdims=True)
        np.subtract(dy, s, out=out)
        np.multiply(out, y, out=out)

    # ------------------------------------------------------------------ losses
    def loss(self, kind, p, t, acc, index, accuracy, scale, grad=None, grad_scale=1.0, weights=None) -> None:
        if t.shape[1] == 1 and p.shape[1] > 1:  # class labels: their one-hot rows, so the same sums
            t = self._one_hot(t, p)
        total, predictions = LOSS_TERMS[kind](p, t, grad)
        if weights is not None:  # each row's loss and gradient scaled by its weight
            w = weights.reshape(-1)
            total = np.dot(w, row_losses(kind, p, t)[0])
            if grad is not None:
                np.multiply(grad, w[:, None].astype(grad.dtype, copy=False), out=grad)
        # a non-finite p gives a non-finite total, but where p is clipped
        if not math.isfinite(total) or (kind in CLIPPED_LOSSES and not _all_finite(p)):
            total = math.nan
        acc[index] += scale * total
        acc[index + 1] += _correct(accuracy, predictions, t)
        if grad is not None and grad_scale != 1.0:
            np.multiply(grad, grad.dtype.type(grad_scale), grad)

    def _one_hot(self, labels: np.ndarray, like: np.ndarray) -> np.ndarray:
        """The one-hot rows of ``labels`` (rows, 1), shaped like ``like``, in a scratch buffer."""
        return one_hot(labels, self._tmp(like, 5))

    # ----------------------------------------------------------------- metrics
    def _metric_inputs(self, p, t, transform, then_sigmoid) -> tuple[np.ndarray, np.ndarray]:
        """(q, t as full rows) of the metric operations (new arrays: metrics run once a step at most)."""
        if t.shape[1] == 1 and p.shape[1] > 1:
            t = one_hot(t, np.empty_like(p))
        q = np.array(p)
        if transform == "softmax":
            _softmax(p, q)
        elif transform == "sigmoid":
            _sigmoid(p, q)
        if then_sigmoid:
            _sigmoid(q, q)
        return q, t

    def metric_counts(self, kind, p, t, acc, index, bins, threshold=0.5, k=1, thresholds=None, per_class=False,
                      row_max=False, columns=None, transform="none", then_sigmoid=False, top_k=0) -> None:
        q, t = self._metric_inputs(p, t, transform, then_sigmoid)
        truth = t > 0.5
        counts = np.zeros(bins, np.int64)
        if kind == "confusion":
            if row_max:
                positive = (q >= q.max(axis=1, keepdims=True)) & (np.abs(q) > q.dtype.type(1e-9))
            else:
                positive = q > q.dtype.type(threshold)
            if top_k:  # ranks in the row, ties to the lower column (a stable sort of -q)
                rank = np.empty(q.shape, np.intp)
                np.put_along_axis(rank, np.argsort(-q, axis=1, kind="stable"), np.arange(q.shape[1])[None], axis=1)
                positive &= rank < top_k
            lo, hi = columns if columns is not None else (0, q.shape[1])
            positive, truth = positive[:, lo:hi], truth[:, lo:hi]
            table = np.stack([positive & truth, positive & ~truth, ~positive & truth, ~positive & ~truth], -1)
            sums = table.sum(axis=0)  # (columns, 4)
            counts[: sums.size] = sums.reshape(-1) if per_class else 0
            if not per_class:
                counts[:4] = sums.sum(axis=0)
        elif kind == "buckets":
            edges = np.asarray(thresholds)
            b = np.searchsorted(edges, q.reshape(-1), side="left")
            b[np.isnan(q.reshape(-1))] = 0
            n = len(edges)
            counts[:] = np.bincount(np.where(truth.reshape(-1), n + 1 + b, b), minlength=2 * (n + 1))[:bins]
        elif kind in ("binary", "equal"):
            hits = ((q > q.dtype.type(threshold)) == truth) if kind == "binary" else (q == t)
            counts[:2] = hits.sum(), hits.size
        else:
            wanted = t.argmax(axis=1)
            if kind == "categorical":
                hits = q.argmax(axis=1) == wanted
            else:
                mine = q[np.arange(len(q)), wanted][:, None]
                hits = (q > mine).sum(axis=1) < k
            counts[:2] = hits.sum(), len(hits)
        acc[index : index + bins] += counts.astype(acc.dtype)

    def metric_sums(self, kind, p, t, acc, index, transform="none") -> None:
        q, t = self._metric_inputs(p, t, transform, False)
        if kind == "columns":
            cols = q.shape[1]
            sums = np.stack([t.sum(axis=0), (t * t).sum(axis=0), ((t - q) ** 2).sum(axis=0)], -1)
            acc[index : index + 3 * cols] += sums.reshape(-1).astype(acc.dtype)
            acc[index + 3 * cols] += len(q)
            return
        d = q - t
        acc[index] += (np.abs(d) if kind == "absolute" else d * d).sum()
        acc[index + 1] += d.size

    # -------------------------------------------------------------- optimizers
    # The scalars are rounded to the arrays' dtype first (numpy does so for a
    # Python float): a population's per-member arrays of them then give each
    # member the bits of a model alone.
    def _decayed_gradient(self, p, g, weight_decay):
        """g + weight_decay · p in a scratch buffer (g itself when 0)."""
        if not np.any(weight_decay):
            return g
        decayed = self._tmp(p, 2)
        np.multiply(p, p.dtype.type(weight_decay), out=decayed)
        decayed += g
        return decayed

    def sgd_step(self, p, g, velocity, lr, momentum, nesterov, weight_decay=0.0) -> None:
        t = p.dtype.type
        g = self._decayed_gradient(p, g, weight_decay)
        step = self._tmp(p)
        if velocity is None:
            np.multiply(g, t(lr), out=step)
        else:
            velocity *= t(momentum)
            velocity += g
            if nesterov:
                np.multiply(velocity, t(momentum), out=step)
                step += g
                step *= t(lr)
            else:
                np.multiply(velocity, t(lr), out=step)
        p -= step

    # The update orders follow ATen's kernels term by term: addcmul computes
    # self + (value * t1) * t2 and addcdiv self + (value * t1) / t2.
    def adagrad_step(self, p, g, sum_sq, lr, eps, weight_decay=0.0) -> None:
        t = p.dtype.type
        g = self._decayed_gradient(p, g, weight_decay)
        step = self._tmp(p)
        np.multiply(g, g, out=step)
        sum_sq += step
        np.sqrt(sum_sq, out=step)
        step += t(eps)
        scaled = self._tmp(p, 1)
        np.multiply(g, t(lr), out=scaled)
        np.divide(scaled, step, out=step)
        p -= step

    def adam_step(self, p, g, m, v, step_size, beta1, beta2, eps, bias_correction2_sqrt,
                  weight_decay=0.0, decay=1.0) -> None:
        t = p.dtype.type
        g = self._decayed_gradient(p, g, weight_decay)
        if np.any(decay != 1.0):
            p *= t(decay)
        step = self._tmp(p)
        np.subtract(g, m, out=step)
        step *= t(1 - beta1)
        m += step
        v *= t(beta2)
        np.multiply(g, t(1 - beta2), out=step)
        step *= g
        v += step
        np.sqrt(v, out=step)
        step /= t(bias_correction2_sqrt)
        step += t(eps)
        scaled = self._tmp(p, 1)
        np.multiply(m, t(step_size), out=scaled)
        np.divide(scaled, step, out=step)
        p -= step

    # ------------------------------------------------------- gradient clipping
    def sum_squares(self, x, acc, layout) -> None:
        flat = x.reshape(-1)
        for start, stop, slot in layout.sums:
            acc[slot] = np.dot(flat[start:stop], flat[start:stop])

    def clip_norm(self, x, acc, layout, clip) -> None:
        flat, clip = x.reshape(-1), x.dtype.type(clip)
        for start, stop, first, end in layout.groups:
            total = np.add.reduce(acc[first:end])
            scale = clip / np.maximum(np.sqrt(total), clip) if np.isfinite(total) else x.dtype.type(np.nan)
            flat[start:stop] *= scale

    # ---------------------------------------------------------- regularisation
    def dropout(self, x, out, mask, rate, key) -> None:
        threshold, scale = dropout_threshold(rate)
        index = np.arange(x.size, dtype=np.uint32).reshape(x.shape)
        kept = pcg(index ^ np.uint32(key)) >= np.uint32(threshold)
        np.multiply(kept, mask.dtype.type(scale), out=mask)
        np.multiply(x, mask, out)

    def dropout_grad(self, dy, mask, out) -> None:
        np.multiply(dy, mask, out)

    # ---------------------------------------------------------- images (NCHW)
    def im2col(self, x, cols_t, kernel, stride, padding, dilation=(1, 1)) -> None:
        n, c, h, w = x.shape
        (kh, kw), (dh, dw) = kernel, dilation
        oh, ow = window_positions((h, w), kernel, stride, padding, dilation)
        # every window at the stride, its taps at the dilation: a view
        # (n, c, oh, ow, kh, kw) copying nothing
        span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
        windows = sliding_window_view(_padded(x, padding, 0), span, axis=(2, 3))
        windows = windows[:, :, _span(0, stride[0], oh), _span(0, stride[1], ow), ::dh, ::dw]
        np.copyto(cols_t.reshape(c, kh, kw, n, oh, ow), windows.transpose(1, 4, 5, 0, 2, 3))

    def col2im(self, cols_t, out, kernel, stride, padding, dilation=(1, 1)) -> None:
        n, c, h, w = out.shape
        (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
        top, bottom, left, right = sides(padding)
        oh, ow = window_positions((h, w), kernel, stride, padding, dilation)
        slabs = cols_t.reshape(c, kh, kw, n, oh, ow)
        padded = np.zeros((n, c, h + top + bottom, w + left + right), out.dtype)
        by_channel = padded.transpose(1, 0, 2, 3)  # (c, n, h, w): the slabs' order
        for ki in range(kh):  # a loop over kernel offsets, never over pixels
            for kj in range(kw):
                by_channel[:, :, _span(ki * dh, sh, oh), _span(kj * dw, sw, ow)] += slabs[:, ki, kj]
        np.copyto(out, padded[:, :, top : top + h, left : left + w])

    def to_channels_first(self, rows_t, out, bias=None, activation=None, activation_param=0.0) -> None:
        n, f = out.shape[:2]
        planes = out.reshape(n, f, -1)
        np.copyto(planes, rows_t.reshape(f, n, -1).transpose(1, 0, 2))
        if bias is not None:
            planes += bias.reshape(f, 1)
        if activation is not None:
            _ACTIVATION[activation](out, out, activation_param)

    def to_channels_last(self, x, rows_t, grad_of=None, activation_param=0.0) -> None:
        n, f = x.shape[:2]
        if grad_of is not None:
            kind, y = grad_of
            dz = self._tmp(x, 4)
            _output_gradient(kind, activation_param)(y, x, dz, activation_param)
            x = dz
        np.copyto(rows_t.reshape(f, n, -1), x.reshape(n, f, -1).transpose(1, 0, 2))

    def maxpool2d(self, x, out, argmax, pool, stride, padding) -> None:
        n, c, h, w = x.shape
        if _whole_plane(x.shape, out.shape, pool, padding):
            flat = x.reshape(n, c, h * w)
            np.copyto(argmax.reshape(n, c), flat.argmax(axis=2), casting="unsafe")  # the first maximum
            np.max(flat, axis=2, out=out.reshape(n, c))
            return
        top, _, left, _ = sides(padding)
        (sh, sw), (oh, ow) = stride, out.shape[2:]
        x = _padded(x, padding, -np.inf)
        # position y·w + x of each window's top-left corner in the unpadded plane
        corner = (np.arange(oh).reshape(oh, 1) * sh - top) * w + np.arange(ow) * sw - left
        # one strided view a window offset; a strictly greater value takes over,
        # so each window keeps its first maximum (row-major), as PyTorch
        for ki, kj, view in _window_views(x, pool, stride, (oh, ow)):
            if ki == kj == 0:
                np.copyto(out, view)
                np.copyto(argmax, corner, casting="unsafe")
                continue
            better = view > out
            np.copyto(out, view, where=better)
            np.copyto(argmax, corner + (ki * w + kj), where=better, casting="unsafe")

    def maxpool2d_grad(self, dy, argmax, dx, pool, stride, padding) -> None:
        n, c, h, w = dx.shape
        planes = (np.arange(n * c) * (h * w)).reshape(n, c, 1, 1)
        sums = np.bincount((argmax + planes).ravel(), weights=dy.ravel(), minlength=dx.size)
        np.copyto(dx, sums.reshape(dx.shape), casting="unsafe")

    # ----------------------------------------------------------- normalization
    def batch_norm(self, x, out, mean, var, gamma, beta, axis, epsilon) -> None:
        y = _normalized(_channels(x, axis), _per_channel(mean), _per_channel(var), epsilon, _channels(out, axis))
        _affine(y, _per_channel(gamma), _per_channel(beta))

    def batch_norm_train(self, x, out, mean, var, gamma, beta, moving_mean, moving_var, axis, epsilon,
                         momentum) -> None:
        x3 = _channels(x, axis)
        np.mean(x3, axis=(0, 2), out=mean)
        centred = np.subtract(x3, _per_channel(mean))
        np.mean(np.square(centred, out=centred), axis=(0, 2), out=var)
        t = x.dtype.type
        for moving, batch in ((moving_mean, mean), (moving_var, var)):
            np.multiply(moving, t(momentum), out=moving)
            moving += batch * t(1 - momentum)
        self.batch_norm(x, out, mean, var, gamma, beta, axis, epsilon)

    def batch_norm_grad(self, x, dy, mean, var, gamma, dx, dgamma, dbeta, axis, epsilon,
                        batch_statistics=True) -> None:
        x3, dy3 = _channels(x, axis), _channels(dy, axis)
        x_hat = _normalized(x3, _per_channel(mean), _per_channel(var), epsilon, np.empty_like(x3))
        sum_dy = dy3.sum(axis=(0, 2))
        sum_dy_x_hat = np.multiply(dy3, x_hat).sum(axis=(0, 2))
        if dgamma is not None:
            np.copyto(dgamma, sum_dy_x_hat)
        if dbeta is not None:
            np.copyto(dbeta, sum_dy)
        if dx is None:
            return
        t = x.dtype.type
        scale = np.divide(t(1), np.sqrt(var + t(epsilon)))  # r, then gamma · r
        if gamma is not None:
            scale *= gamma
        out = _channels(dx, axis)
        if batch_statistics:
            m = t(x3.shape[0] * x3.shape[2])
            np.multiply(x_hat, _per_channel(sum_dy_x_hat / m), out=out)
            np.subtract(dy3 - _per_channel(sum_dy / m), out, out=out)
        else:
            np.copyto(out, dy3)
        np.multiply(out, _per_channel(scale), out=out)

    def layer_norm(self, x, out, mean, var, gamma, beta, epsilon) -> None:
        np.mean(x, axis=1, out=mean)
        centred = np.subtract(x, mean[:, None])
        np.mean(np.square(centred, out=centred), axis=1, out=var)
        _normalized(x, mean[:, None], var[:, None], epsilon, out)
        _affine(out, gamma, beta)

    def layer_norm_grad(self, x, dy, mean, var, gamma, dx, dgamma, dbeta, epsilon) -> None:
        x_hat = _normalized(x, mean[:, None], var[:, None], epsilon, np.empty_like(x))
        if dgamma is not None:
            np.sum(np.multiply(dy, x_hat), axis=0, out=dgamma)
        if dbeta is not None:
            np.sum(dy, axis=0, out=dbeta)
        if dx is None:
            return
        t = x.dtype.type
        g = dy * gamma if gamma is not None else dy.copy()
        c = t(x.shape[1])
        mean_g = g.sum(axis=1, keepdims=True) / c
        mean_g_x_hat = np.multiply(g, x_hat).sum(axis=1, keepdims=True) / c
        np.multiply(x_hat, mean_g_x_hat, out=dx)
        np.subtract(g - mean_g, dx, out=dx)
        np.multiply(dx, np.divide(t(1), np.sqrt(var + t(epsilon)))[:, None], out=dx)

    # ---------------------------------------------------------- images (NCHW)
    def avgpool2d(self, x, out, pool, stride, padding) -> None:
        n, c, h, w = x.shape
        if _whole_plane(x.shape, out.shape, pool, padding):
            np.add.reduce(x.reshape(n, c, h * w), axis=2, out=out.reshape(n, c))
            out /= out.dtype.type(h * w)
            return
        oh, ow = out.shape[2:]
        # the padding adds zeros to the sums, and the counts leave it out
        for ki, kj, view in _window_views(_padded(x, padding, 0), pool, stride, (oh, ow)):
            if ki == kj == 0:
                np.copyto(out, view)
            else:
                out += view
        out /= _counts((h, w), pool, stride, padding, (oh, ow), out.dtype)

    def avgpool2d_grad(self, dy, dx, pool, stride, padding) -> None:
        n, c, h, w = dx.shape
        oh, ow = dy.shape[2:]
        shares = dy / _counts((h, w), pool, stride, padding, (oh, ow), dx.dtype)
        if _whole_plane(dx.shape, dy.shape, pool, padding):
            np.copyto(dx, shares)  # broadcast over the plane
            return
        top, bottom, left, right = sides(padding)
        padded = np.zeros((n, c, h + top + bottom, w + left + right), dx.dtype)
        for _, _, view in _window_views(padded, pool, stride, (oh, ow)):
            view += shares
        np.copyto(dx, padded[:, :, top : top + h, left : left + w])

    def upsample2d(self, x, out, size) -> None:
        n, c, h, w = x.shape
        (sh, sw) = size
        np.copyto(out.reshape(n, c, h, sh, w, sw), x.reshape(n, c, h, 1, w, 1))

    def upsample2d_grad(self, dy, dx, size) -> None:
        n, c, h, w = dx.shape
        (sh, sw) = size
        np.add.reduce(dy.reshape(n, c, h, sh, w, sw), axis=(3, 5), out=dx)

    def pad2d(self, x, out, padding) -> None:
        h, w = x.shape[2:]
        top, _, left, _ = padding
        out.fill(0)
        np.copyto(out[:, :, top : top + h, left : left + w], x)

    def pad2d_grad(self, dy, dx, padding) -> None:
        h, w = dx.shape[2:]
        top, _, left, _ = padding
        np.copyto(dx, dy[:, :, top : top + h, left : left + w])

    # --------------------------------------------------------------- sequences
    def embedding(self, ids, table, out) -> None:
        np.take(table, ids.reshape(-1).astype(np.intp), axis=0, out=out)

    def embedding_grad(self, ids, dy, dtable) -> None:
        dtable.fill(0)
        np.add.at(dtable, ids.reshape(-1).astype(np.intp), dy)  # in the order of the ids

    def broadcast_rows(self, src, out) -> None:
        np.copyto(out, src)

    # the attention's (n, t, h, d) tensors seen as (n, h, t, d) stacks of matrices
    @staticmethod
    def _heads(a):
        return a.transpose(0, 2, 1, 3)

    def attention_probs(self, q, k, probs, scale, causal) -> None:
        # the queries scaled first (as Keras does): (n, tq, h, d) values rather than (n, h, tq, tk)
        np.matmul(self._heads(q * q.dtype.type(scale)), k.transpose(0, 2, 3, 1), out=probs)
        if causal:
            tq, tk = probs.shape[2:]
            probs += np.triu(np.full((tq, tk), -np.inf, probs.dtype), 1)
        probs -= probs.max(axis=-1, keepdims=True)
        np.exp(probs, out=probs)
        probs /= probs.sum(axis=-1, keepdims=True)

    def attention_apply(self, probs, v, out) -> None:
        np.matmul(probs, self._heads(v), out=self._heads(out))

    def attention_apply_grad(self, probs, v, dout, dprobs, dv) -> None:
        np.matmul(self._heads(dout), v.transpose(0, 2, 3, 1), out=dprobs)
        np.matmul(probs.transpose(0, 1, 3, 2), self._heads(dout), out=self._heads(dv))

    def attention_probs_grad(self, q, k, probs, dprobs, dq, dk, scale) -> None:
        dprobs -= (dprobs * probs).sum(axis=-1, keepdims=True)
        dprobs *= probs
        factor = dprobs.dtype.type(scale)
        np.matmul(dprobs, self._heads(k), out=self._heads(dq))
        dq *= factor
        np.matmul(dprobs.transpose(0, 1, 3, 2), self._heads(q), out=self._heads(dk))
        dk *= factor

    # ---------------------------------------------------------- custom kernels
    def run_kernel(self, kernel, entry, workgroups, arrays, params) -> None:
        function = kernel.numpy.get(entry)
        if function is None:
            raise NotImplementedError(f"{kernel!r} has no numpy version of its entry point {entry!r}, so it runs on "
                                      f"the GPU only: give Kernel(..., numpy={{{entry!r}: function}}) to run it on "
                                      "the CPU")
        function(**arrays, **params)

    # -------------------------------------------------------------- scheduling
    def stats(self) -> dict[str, int]:
        return {
            "submits": 0,
            "readbacks": 0,
            "bytes_read_back": 0,
            "buffers_created": self._buffers_created,
            "dispatches": 0,
        }
