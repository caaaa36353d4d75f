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
                           ``to_numpy``, ``write``, ``copy``, ``clear``, ``rows``,
                           ``view``, ``take_rows``
dense algebra              ``matmul`` (transpose flags, optional bias),
                           ``sum_rows``, ``sum_channels``, ``flag_nonfinite``
elementwise                ``add``, ``multiply``, ``scale``, ``copy_slice``
activations                ``activation``, ``activation_grad``,
                           ``activation_grad_from_input``, ``softmax``, ``softmax_grad``
losses                     ``loss`` (value, correct count and gradient in one pass)
metrics                    ``metric_counts``, ``metric_sums``
optimizers                 ``sgd_step``, ``adagrad_step``, ``adam_step``
gradient clipping          ``norm_layouts``, ``sum_squares``, ``clip_norm``
regularisation             ``dropout``, ``dropout_grad``
images (NCHW)              ``im2col``, ``col2im``, ``to_channels_first``,
                           ``to_channels_last``, ``maxpool2d``,
                           ``maxpool2d_grad``, ``avgpool2d``, ``avgpool2d_grad``,
                           ``upsample2d``, ``upsample2d_grad``, ``pad2d``,
                           ``pad2d_grad``
normalization              ``batch_norm``, ``batch_norm_train``,
                           ``batch_norm_grad``, ``layer_norm``,
                           ``layer_norm_grad``
custom kernels             ``run_kernel`` (a user's :class:`~intricate_py.backends.custom.Kernel`)
populations                ``members`` (1 for a model's backend; see backends/population.py,
                           whose backend runs these operations for many networks at once)
scheduling                 ``flush``, ``discard``, ``end_step``, ``stats``,
                           ``record``, ``replay`` (optional: the GPU's)
=========================  ===============================================
"""

from __future__ import annotations

import abc
import contextlib
import math
from typing import Any, Sequence

import numpy as np

Array = Any  # numpy.ndarray on the CPU, a GPU buffer handle on the GPU
Pair = tuple[int, int]  # (height, width) of a kernel, stride or dilation
#: Padding of an image's sides, (top, bottom, left, right); where an
#: operation takes padding, a pair (h, w) means (h, h, w, w).
Sides = tuple[int, int, int, int]

#: Activations a product's epilogue and ``activation`` apply, numbered by
#: position here and nowhere else: the GPU's shaders receive these numbers as
#: constants named ``ACTIVATION_TANH`` and so on (backends/shaders.py). Two
#: take a scalar ``param``: leaky_relu its negative slope, elu its alpha.
ACTIVATIONS = ("tanh", "sigmoid", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "softplus")
#: The kinds whose gradient their output determines (see :func:`gradient_from_output`).
OUTPUT_GRADIENTS = frozenset({"tanh", "sigmoid", "relu", "leaky_relu", "elu", "softplus"})
LOSSES = (
    "squared", "absolute", "cross_entropy", "binary_cross_entropy",
    "softmax_cross_entropy", "sigmoid_cross_entropy",
    "logits_cross_entropy", "logits_binary_cross_entropy",
)
ACCURACIES = ("binary", "binary_logits", "categorical")
#: the kinds of :meth:`Backend.metric_counts`, numbered by position (metrics.wgsl)
METRIC_COUNTS = ("confusion", "buckets", "binary", "equal", "categorical", "top_k")
#: the most bins one :meth:`Backend.metric_counts` adds
METRIC_BINS = 1024
#: the prediction transforms of the metric operations, numbered by position
METRIC_TRANSFORMS = ("none", "softmax", "sigmoid")

#: The scalars of the optimizer updates, in the order of a population's table of
#: them on the GPU (optimizers.wgsl's ``scalars``, 16 a member).
OPTIMIZER_SCALARS = ("lr", "momentum", "one_minus_beta1", "beta2", "one_minus_beta2", "eps", "step_size",
                     "bias_correction2_sqrt", "weight_decay", "decay")

#: Probabilities are clipped to [CLIP_EPSILON, 1 - CLIP_EPSILON] before a log.
CLIP_EPSILON = 1e-7


def gradient_from_output(kind: str, param: float = 0.0) -> bool:
    """Whether f'(x) of activation ``kind`` follows from its output y = f(x)
    alone, so that :meth:`Backend.activation_grad` (and a product's
    ``grad_of``) can write the gradient without keeping x: tanh, sigmoid,
    relu and softplus always; leaky_relu and elu when ``param >= 0`` (a
    negative slope or alpha gives positive outputs for negative inputs,
    so y no longer tells the two sides apart); gelu, gelu_tanh and silu
    never (they are not one-to-one). The others need
    :meth:`Backend.activation_grad_from_input`."""
    if kind in ("leaky_relu", "elu"):
        return param >= 0
    return kind in OUTPUT_GRADIENTS


class MemberValues(np.ndarray):
    """A scalar argument with one value per member: a hyper-parameter
    (float64) as the optimizers hand them to the operations, or a key
    (int64) as a population's Dropout layers draw them."""

    def __new__(cls, values, dtype=np.float64) -> "MemberValues":
        return np.asarray(values, dtype).view(cls)

    def __repr__(self) -> str:
        return repr(self.tolist())


def member_values(value, check, name: str):
    """A hyper-parameter: what ``check(value, name)`` accepts (a float), or
    for a Population one value per member, a 1-D sequence or array whose
    every entry ``check`` accepts (:class:`MemberValues`)."""
    if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) == 1:
        return MemberValues([check(v.item() if isinstance(v, np.generic) else v, f"{name}[{i}]")
                             for i, v in enumerate(value)])
    return check(value, name)


class NormLayout:
    """One array's cut for :meth:`Backend.sum_squares` and
    :meth:`Backend.clip_norm` (made by :meth:`Backend.norm_layouts`):
    ``sums``, each partial sum's (start, stop, accumulator slot);
    ``groups``, each group's (start, stop) and the (first, end) slots whose
    total is its squared norm; ``size``, the array's; ``table``, the
    backend's own form of it (the GPU's device table), None on the CPU."""

    def __init__(self, sums: list[tuple[int, int, int]], groups: list[tuple[int, int, int, int]], size: int):
        self.sums, self.groups, self.size = sums, groups, size
        self.table: Any = None


class BindingTooLarge(ValueError):
    """An array larger than the device lets one binding (one buffer) hold:
    ``nbytes`` asked for, ``limit`` the most. predict and evaluate retry
    with fewer rows; elsewhere the message says what to do."""

    def __init__(self, nbytes: int, limit: int):
        super().__init__(f"an array of {nbytes:,} bytes is larger than the device's largest storage "
                         f"binding ({limit:,} bytes): use a smaller batch_size")
        self.nbytes, self.limit = nbytes, limit


class Backend(abc.ABC):
    """A device and the array operations that run on it.

    One backend may serve several models, each trained or called on its own
    thread: what its operations keep between calls is kept per thread (the
    numpy backend's scratch buffers) or guarded by a lock (the GPU's)."""

    #: "cpu" or "gpu"
    kind: str
    dtype: np.dtype
    #: whether :meth:`record` records work that :meth:`replay` can run again
    records: bool = False
    #: how many networks its arrays hold each (a population's size; 1 for a model's)
    members: int = 1
    #: whether it is a population's (its arrays one per member, however many)
    population: bool = False

    # ------------------------------------------------------------------ memory
    @abc.abstractmethod
    def empty(self, shape: Sequence[int], dtype=None) -> Array:
        """A new array of ``shape`` with undefined contents: the backend's
        float dtype, or ``np.int32`` for indices."""

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
    def clear(self, a: Array) -> None:
        """``a[...] = 0``, in order with the other operations (no upload)."""

    @abc.abstractmethod
    def rows(self, a: Array, start: int, stop: int) -> Array:
        """A view of rows ``start:stop`` of ``a`` (no copy)."""

    @abc.abstractmethod
    def view(self, a: Array, offset: int, shape: Sequence[int]) -> Array:
        """Elements ``offset .. offset + prod(shape)`` of the contiguous array
        ``a``, in row-major order, as an array of ``shape`` (no copy): how a
        model packs every parameter into one buffer, and how Flatten works."""

    def matrix(self, a: Array, width: int) -> Array:
        """The contiguous array ``a`` as the matrix of ``width`` columns it
        holds, (size / width, width): ``a`` itself where it has that shape,
        else a :meth:`view` (a batch of sequences (n, length, features) as
        the rows of its positions)."""
        shape = (math.prod(a.shape) // width, width)
        return a if tuple(a.shape) == shape else self.view(a, 0, shape)

    @abc.abstractmethod
    def take_rows(
        self, src: Array, indices: Array, out: Array, first: int = 0,
        src2: Array | None = None, out2: Array | None = None,
    ) -> None:
        """``out[i] = src[indices[first + i]]`` for every row i of ``out``:
        gathers a batch, ``indices`` of int32; with ``src2`` and ``out2``,
        also ``out2[i] = src2[indices[first + i]]`` in the same pass (a
        batch's samples and targets in one dispatch)."""

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
        activation: str | None = None,
        grad_of: tuple[str, Array] | None = None,
        bias_grad: Array | None = None,
        activation_param: float = 0.0,
    ) -> None:
        """``out = op(a) @ op(b) (+ bias)``, ``op`` transposing where asked,
        with an optional epilogue in the same pass:

        * ``activation`` (one of :data:`ACTIVATIONS`, its scalar
          ``activation_param``): ``out = f(op(a) op(b) + bias)``, a Dense and
          the activation after it in one product;
        * ``grad_of=(kind, y)``, y shaped like out, kind one whose gradient
          comes from its output (:func:`gradient_from_output` of kind and
          ``activation_param``): ``out = f'(x) · (op(a) op(b))`` from the saved
          output y = f(x), with activation_grad's formulas: the gradient dY·Wᵀ
          of a Dense folded with that of the activation before it;
        * ``bias_grad`` (n,): also the column sums of op(b), ``Σ_p op(b)[p, j]``:
          a Dense's bias gradient out of its dW = xᵀ·dY product.

        ``op(a)`` is (m, k), ``op(b)`` is (k, n), ``out`` and the optional
        ``bias`` row-broadcast are (m, n) and (n,). bias and bias_grad are
        never both given, nor activation and grad_of.
        """

    @abc.abstractmethod
    def sum_rows(self, x: Array, out: Array) -> None:
        """Column sums: ``out[j] = sum_i x[i, j]``; x (m, n), out (n,)."""

    @abc.abstractmethod
    def sum_channels(self, x: Array, out: Array) -> None:
        """Sums per channel: ``out[c] = sum over n and q of x[n, c, q]``;
        x (n, c, *spatial), out (c,) (a convolution's bias gradient)."""

    @abc.abstractmethod
    def flag_nonfinite(self, x: Array, acc: Array, index: int) -> None:
        """``acc[index] = 1`` when any element of ``x`` is NaN or ±inf
        (``acc`` is left alone otherwise)."""

    # ------------------------------------------------------------- elementwise
    @abc.abstractmethod
    def add(self, a: Array, b: Array, out: Array, scale: float = 1.0) -> None:
        """``out = scale · (a + b)``, arrays of one size; ``out`` may be ``a``
        or ``b`` (a gradient accumulating in place)."""

    @abc.abstractmethod
    def multiply(self, a: Array, b: Array, out: Array) -> None:
        """``out = a · b`` elementwise; ``out`` may be ``a`` or ``b``."""

    @abc.abstractmethod
    def scale(self, a: Array, factor: float, out: Array) -> None:
        """``out = factor · a``; ``out`` may be ``a``."""

    @abc.abstractmethod
    def copy_slice(self, src: Array, dst: Array, src_start: int, dst_start: int, width: int) -> None:
        """``dst[:, dst_start : dst_start + width] = src[:, src_start : src_start + width]``
        for matrices src (rows, a) and dst (rows, b), which are different
        arrays: a Concatenate's inputs into its output, and its output's
        gradient back into its inputs'."""

    # ------------------------------------------------------------- activations
    @abc.abstractmethod
    def activation(self, kind: str, x: Array, out: Array, param: float = 0.0) -> None:
        """``out = f(x)`` elementwise, ``kind`` one of :data:`ACTIVATIONS`:

        ==========  ==============================================================
        tanh        tanh x
        sigmoid     1 / (1 + e^-x)
        relu        max(x, 0)
        leaky_relu  x where x > 0, else param · x (param: the negative slope)
        elu         x where x > 0, else param · (e^x - 1) (param: alpha)
        gelu        x Φ(x), Φ(x) = (1 + erf(x / √2)) / 2 the normal distribution
        gelu_tanh   x σ(2u) = x (1 + tanh u) / 2, u = √(2/π) (x + 0.044715 x³)
        silu        x σ(x) (Swish)
        softplus    log(1 + e^x), as max(x, 0) + log1p(e^-|x|)
        ==========  ==============================================================
        """

    @abc.abstractmethod
    def activation_grad(self, kind: str, y: Array, dy: Array, out: Array, param: float = 0.0) -> None:
        """``out = dy * f'(x)`` written from the saved output ``y = f(x)``,
        for the kinds where y determines f'(x) (:func:`gradient_from_output`):

        ==========  ==============================================================
        tanh        (1 - y)(1 + y)
        sigmoid     y (1 - y)
        relu        1 where y > 0, else 0
        leaky_relu  1 where y > 0, else param (param >= 0)
        elu         1 where y > 0, else y + param (param >= 0; = param · e^x)
        softplus    1 - e^-y (= σ(x)), as -expm1(-y)
        ==========  ==============================================================

        Another kind, or leaky_relu or elu with param < 0, is refused
        (ValueError on the CPU, NaN on the GPU, never another formula).
        """

    @abc.abstractmethod
    def activation_grad_from_input(self, kind: str, x: Array, dy: Array, out: Array, param: float = 0.0) -> None:
        """``out = dy * f'(x)`` from the input ``x``, for every kind: what the
        kinds whose output does not determine f'(x) use (gelu: Φ(x) + x φ(x),
        φ the normal density; gelu_tanh: σ(2u) + 2 x u' σ(2u)(1 - σ(2u));
        silu: σ(x) (1 + x (1 - σ(x))); leaky_relu and elu with a negative
        param: 1 where x > 0, else param and param · e^x)."""

    @abc.abstractmethod
    def softmax(self, x: Array, out: Array) -> None:
        """Row-wise, max-shifted softmax of x (m, n)."""

    @abc.abstractmethod
    def softmax_grad(self, y: Array, dy: Array, out: Array) -> None:
        """``out = y * (dy - sum(dy * y, axis=1))`` from the saved output y."""

    # ------------------------------------------------------------------ losses
    @abc.abstractmethod
    def loss(
        self,
        kind: str,
        p: Array,
        t: Array,
        acc: Array,
        index: int,
        accuracy: str,
        scale: float,
        grad: Array | None = None,
        grad_scale: float = 1.0,
        weights: Array | None = None,
    ) -> None:
        """A batch's loss, correct predictions and gradient, in one pass.

        ``weights`` (n, 1), when given, scales row i's loss (the sum of its
        terms) and its gradient by ``weights[i]`` (sample weights; the
        accuracy stays unweighted); without it nothing is scaled.

        p and t are (n, k), or t is (n, 1) class labels where k > 1
        (integers as floats, in [0, k); for the categorical kinds and
        accuracy): then every result is that of t's one-hot rows, bit for
        bit, without them in memory. ``acc[index] += scale · Σ l(p, t)``, NaN when
        any p or any term is not finite (divergence is never hidden);
        ``acc[index + 1] +=`` the number of correct predictions of
        ``accuracy`` (one of :data:`ACCURACIES`); and, when ``grad`` (n, k)
        is given, ``grad = grad_scale · g(p, t)``. ``kind`` is one of
        :data:`LOSSES`; with c = clip(p) to [CLIP_EPSILON, 1 - CLIP_EPSILON]:

        ===========================  ===================================  ===================
        kind                         l (per element, or per row)          g
        ===========================  ===================================  ===================
        squared                      (p - t)²                             p - t
        absolute                     |p - t|                              sign(p - t)
        cross_entropy                -t log c                             -t / c
        binary_cross_entropy         -(t log c + (1 - t) log(1 - c))      (c - t) / (c (1 - c))
        softmax_cross_entropy        -t log c, c = clip(softmax(z))       softmax(z) - t
        sigmoid_cross_entropy        as binary_cross_entropy of           sigmoid(z) - t
                                     c = clip(sigmoid(z))
        logits_cross_entropy         row: -Σ t (z - logsumexp(z))         softmax(z) - t
        logits_binary_cross_entropy  max(z, 0) - z t + log(1 + e^-|z|)    sigmoid(z) - t
        ===========================  ===================================  ===================

        The last four kinds take p as z, the input of a Softmax or Sigmoid:
        the softmax and sigmoid kinds are that layer and a probability loss
        fused (the same value as the layer followed by cross_entropy or
        binary_cross_entropy, the gradient with respect to its input, the
        accuracy counted on its output); the logits kinds are the losses of
        ``from_logits=True``. Accuracies: binary, elements where (p > 0.5) == (t > 0.5);
        binary_logits, where (p > 0) == (t > 0.5); categorical, rows where
        the first argmax of p equals the first argmax of t.
        """

    # ----------------------------------------------------------------- metrics
    # What intricate_py.metrics adds up: counts and sums of a batch added into
    # accumulators (``acc[index + b]``), never read here. p and t are (rows,
    # cols), or t (rows, 1) class labels where cols > 1 (read as one-hot rows);
    # the counts are taken on q: p, or with ``transform`` "softmax" the row's
    # softmax of p, with "sigmoid" sigmoid(p) (p is then a fused layer's
    # input); ``then_sigmoid`` applies a sigmoid after that. A target is true
    # where t > 0.5.

    @abc.abstractmethod
    def metric_counts(self, kind: str, p: Array, t: Array, acc: Array, index: int, bins: int,
                      threshold: float = 0.5, k: int = 1, thresholds: Array | None = None,
                      per_class: bool = False, row_max: bool = False, columns: tuple[int, int] | None = None,
                      transform: str = "none", then_sigmoid: bool = False, top_k: int = 0) -> None:
        """Integer counts of one of :data:`METRIC_COUNTS`, ``acc[index + b] +=``
        bin b for b < ``bins`` (at most :data:`METRIC_BINS`):

        * confusion: each element (r, j) of ``columns`` (lo, hi; all by
          default) is positive where q > ``threshold`` (or, with
          ``row_max``, where q is the row's largest and |q| > 1e-9; with
          ``top_k`` > 0, only where q is also among the row's top_k
          largest, ties going to the lower column);
          bins 0 TP, 1 FP, 2 FN, 3 TN, per column from ``4 (j - lo)``
          with ``per_class``;
        * buckets: b = how many of the ascending ``thresholds`` (a 1-D
          array of T) are below q (0 for NaN): bin b for a false target,
          T + 1 + b for a true one;
        * binary, equal: bin 0 the elements where (q > threshold) == (t >
          0.5), or where q == t; bin 1 every element;
        * categorical, top_k: bin 0 the rows whose first argmax of q is the
          target's class (its label, or the first argmax of t), or where
          fewer than ``k`` values of q exceed the target class's; bin 1
          every row.
        """

    @abc.abstractmethod
    def metric_sums(self, kind: str, p: Array, t: Array, acc: Array, index: int,
                    transform: str = "none") -> None:
        """``acc[index] +=`` Σ |q - t| (kind "absolute") or Σ (q - t)²
        ("squared") over every element, ``acc[index + 1] +=`` their number;
        kind "columns": per column j, ``acc[index + 3j : index + 3j + 3] +=``
        (Σ t, Σ t², Σ (t - q)²) and ``acc[index + 3 cols] +=`` rows."""

    # -------------------------------------------------------------- optimizers
    # Each update reads the gradient as g = grad + weight_decay · p (PyTorch's
    # L2 term; the gradient array itself is left as it is).
    @abc.abstractmethod
    def sgd_step(
        self,
        p: Array,
        g: Array,
        velocity: Array | None,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float = 0.0,
    ) -> None:
        """PyTorch's SGD: ``v = momentum v + g``; ``p -= lr (g + momentum v)``
        with nesterov, else ``p -= lr v``; without velocity ``p -= lr g``."""

    @abc.abstractmethod
    def adagrad_step(
        self, p: Array, g: Array, sum_sq: Array, lr: float, eps: float, weight_decay: float = 0.0
    ) -> None:
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
        weight_decay: float = 0.0,
        decay: float = 1.0,
    ) -> None:
        """PyTorch's Adam and AdamW: ``p *= decay`` (AdamW's decoupled weight
        decay, 1 - lr · wd); ``m += (1 - b1)(g - m)``; ``v = b2 v + (1 - b2) g²``;
        ``p -= step_size m / (sqrt(v) / bias_correction2_sqrt + eps)``."""

    # ------------------------------------------------------- gradient clipping
    # Keras's clipnorm and global_clipnorm, on the device: an array is cut
    # into groups (one parameter each, or a whole model's); ``sum_squares``
    # writes partial sums of squares into an accumulator, ``clip_norm`` scales
    # each group by clip / max(its norm, clip). No readback, two operations.
    #: elements one partial sum covers at most (None: a whole group)
    NORM_CHUNK: int | None = None

    def norm_layouts(self, arrays: Sequence[Sequence[int]], joint: bool) -> tuple[list["NormLayout"], int]:
        """How :meth:`sum_squares` and :meth:`clip_norm` cut arrays: for each
        array the sizes of its groups (consecutive, their sum the array's
        size); ``joint``, one norm over every group of every array (Keras's
        global_clipnorm), else one per group (clipnorm). Returns a layout
        per array and how many partial sums an accumulator must hold. Made
        once, outside a training step (the GPU uploads a table)."""
        chunk = self.NORM_CHUNK
        layouts, slot = [], 0
        for sizes in arrays:
            sums, groups, start = [], [], 0
            for size in sizes:
                first = slot
                pieces = max(1, -(-size // chunk)) if chunk else 1
                for j in range(pieces):
                    lo = start + (j * size) // pieces
                    sums.append((lo, start + ((j + 1) * size) // pieces, slot))
                    slot += 1
                groups.append((start, start + size, first, slot))
                start += size
            layouts.append(NormLayout(sums, groups, start))
        if joint:
            for layout in layouts:
                layout.groups = [(start, stop, 0, slot) for start, stop, _, _ in layout.groups]
        return layouts, slot

    @abc.abstractmethod
    def sum_squares(self, x: Array, acc: Array, layout: "NormLayout") -> None:
        """``acc[k] = Σ x[i]²`` over the elements ``layout.sums`` gives each
        partial sum k (x contiguous, read flat; a fixed summation order)."""

    @abc.abstractmethod
    def clip_norm(self, x: Array, acc: Array, layout: "NormLayout", clip: float) -> None:
        """``x[i] *= clip / max(sqrt(Σ acc[first:end]), clip)`` for each of
        ``layout.groups`` (start, stop, first, end) and its elements i, in
        place: the norm of a group is at most ``clip`` after. A sum that is
        NaN or ±inf makes the group NaN (as Keras's global clipping), which
        the divergence rule then stops."""

    # ---------------------------------------------------------- regularisation
    @abc.abstractmethod
    def dropout(self, x: Array, out: Array, mask: Array, rate: float, key: int) -> None:
        """Inverted dropout: ``mask = [pcg(i ^ key) >= rate·2³²] / (1 - rate)``
        (see :func:`pcg`; ``key`` is :func:`dropout_key` of a seed and a
        step), ``out = x · mask``; the same bits on every backend."""

    @abc.abstractmethod
    def dropout_grad(self, dy: Array, mask: Array, out: Array) -> None:
        """``out = dy · mask``."""

    # ---------------------------------------------------------- images (NCHW)
    # Windows slide over images padded by ``padding`` = (top, bottom, left,
    # right) (or a pair (h, w) for (h, h, w, w)); an output (i, j) reads the
    # window whose top-left corner is (i·sh - top, j·sw - left), and there
    # are window_positions(...) of them each way.
    @abc.abstractmethod
    def im2col(self, x: Array, cols_t: Array, kernel: Pair, stride: Pair, padding: Sides | Pair,
               dilation: Pair = (1, 1)) -> None:
        """Patches as columns: x (n, c, h, w) -> cols_t (c·kh·kw, n·oh·ow) with
        ``cols_t[(c, ki, kj), (n, i, j)] = x[n, c, i·sh + ki·dh - top, j·sw + kj·dw - left]``
        (0 in the padding). The rows of a group of c/g channels are a block
        of their own (the k-th c/g·kh·kw rows): a grouped product reads its
        group's block as it is. Consecutive entries of a row read
        neighbouring pixels, so the copy runs along image rows."""

    @abc.abstractmethod
    def col2im(self, cols_t: Array, out: Array, kernel: Pair, stride: Pair, padding: Sides | Pair,
               dilation: Pair = (1, 1)) -> None:
        """The adjoint of im2col: ``cols_t`` (c·kh·kw, n·oh·ow) in im2col's
        layout (what Wᵀ·dY gives directly); out (n, c, h, w) = the sum, over
        every patch entry, of ``cols_t`` at the pixel it was read from
        (overwrites out)."""

    @abc.abstractmethod
    def to_channels_first(self, rows_t: Array, out: Array, bias: Array | None = None,
                          activation: str | None = None, activation_param: float = 0.0) -> None:
        """rows_t (f, n·p) -> out (n, f, *spatial) of p = prod(spatial)
        pixels, ``out[n, f, q] = rows_t[f, n·p + q] (+ bias[f])`` (what the
        product W·cols_t writes; groups' products write their blocks of
        rows). With ``activation`` (one of :data:`ACTIVATIONS`, its scalar
        ``activation_param``), f of that in the same pass (a Conv2D's own
        activation)."""

    @abc.abstractmethod
    def to_channels_last(self, x: Array, rows_t: Array, grad_of: tuple[str, Array] | None = None,
                         activation_param: float = 0.0) -> None:
        """x (n, f, *spatial) -> rows_t (f, n·p): the inverse of
        to_channels_first; with ``grad_of=(kind, y)``, y shaped like x, the
        values are first multiplied by f'(z) from the saved output y = f(z),
        as :meth:`activation_grad` computes it (a Conv2D's dY reordered and
        taken back through its own activation in one pass)."""

    @abc.abstractmethod
    def maxpool2d(self, x: Array, out: Array, argmax: Array, pool: Pair, stride: Pair,
                  padding: Sides | Pair) -> None:
        """out (n, c, oh, ow): the maximum of each window of x (n, c, h, w)
        (padding counts as -inf); argmax (int32, shape of out) gets the
        position ``y·w + x`` of the first maximum in its (h, w) plane."""

    @abc.abstractmethod
    def maxpool2d_grad(self, dy: Array, argmax: Array, dx: Array, pool: Pair, stride: Pair,
                       padding: Sides | Pair) -> None:
        """dx (n, c, h, w): each pixel gets the sum of dy over the windows
        whose maximum it was (overwrites dx)."""

    # ----------------------------------------------------------- normalization
    # x is a batch (n, *shape) seen as (outer, c, inner) around ``axis`` (which
    # counts the batch as 0): outer = prod(shape before the axis), c its size,
    # inner = prod(shape after it). Batch normalization has one pair of
    # statistics per channel, over outer · inner values; variances are biased
    # (divided by the count), as Keras's and PyTorch's normalizations use.
    # gamma and beta (c,) may be None: 1 and 0.
    @abc.abstractmethod
    def batch_norm(self, x: Array, out: Array, mean: Array, var: Array, gamma: Array | None,
                   beta: Array | None, axis: int, epsilon: float) -> None:
        """``out = (x - mean[ch]) / sqrt(var[ch] + epsilon) · gamma[ch] + beta[ch]``
        with given statistics (c,): a batch normalization in inference, from
        its moving statistics."""

    @abc.abstractmethod
    def batch_norm_train(self, x: Array, out: Array, mean: Array, var: Array, gamma: Array | None,
                         beta: Array | None, moving_mean: Array, moving_var: Array, axis: int,
                         epsilon: float, momentum: float) -> None:
        """A batch normalization in training, in one pass: ``mean`` and
        ``var`` (c,) get each channel's batch mean and biased variance (the
        mean of (x - mean)², summed in a fixed order); ``moving_mean =
        moving_mean · momentum + mean · (1 - momentum)`` and the same for
        ``moving_var`` from ``var`` (Keras's update); ``out`` as
        :meth:`batch_norm` with the batch statistics."""

    @abc.abstractmethod
    def batch_norm_grad(self, x: Array, dy: Array, mean: Array, var: Array, gamma: Array | None,
                        dx: Array | None, dgamma: Array | None, dbeta: Array | None, axis: int,
                        epsilon: float, batch_statistics: bool = True) -> None:
        """The gradients of :meth:`batch_norm` from dE/d(out) ``dy``, for the
        ``mean`` and ``var`` its forward used. With x̂ = (x - mean) · r,
        r = 1 / sqrt(var + epsilon), per channel over its m = outer · inner
        values: ``dbeta = Σ dy``, ``dgamma = Σ dy · x̂`` (each written where
        given), and where ``dx`` is given, with ``batch_statistics`` (the
        statistics were the batch's, so they depend on x)
        ``dx = gamma · r · (dy - Σ dy / m - x̂ · Σ dy · x̂ / m)``, else
        ``dx = gamma · r · dy``."""

    # Layer normalization: x and out (rows, c), one pair of statistics per
    # row, over its c values; gamma and beta (c,) as above.
    @abc.abstractmethod
    def layer_norm(self, x: Array, out: Array, mean: Array, var: Array, gamma: Array | None,
                   beta: Array | None, epsilon: float) -> None:
        """``mean`` and ``var`` (rows,) get each row's mean and biased
        variance, and ``out[i, j] = (x[i, j] - mean[i]) / sqrt(var[i] +
        epsilon) · gamma[j] + beta[j]``."""

    @abc.abstractmethod
    def layer_norm_grad(self, x: Array, dy: Array, mean: Array, var: Array, gamma: Array | None,
                        dx: Array | None, dgamma: Array | None, dbeta: Array | None, epsilon: float) -> None:
        """The gradients of :meth:`layer_norm` from ``dy`` (rows, c): with
        x̂ = (x - mean) · r, r = 1 / sqrt(var + epsilon) per row and
        g = dy · gamma, ``dx = r · (g - Σ_j g / c - x̂ · Σ_j g · x̂ / c)``
        (sums over the row), ``dgamma[j] = Σ_i dy · x̂`` and ``dbeta[j] =
        Σ_i dy`` (sums over the rows); each written where given."""
    @abc.abstractmethod
    def avgpool2d(self, x: Array, out: Array, pool: Pair, stride: Pair, padding: Sides | Pair) -> None:
        """out (n, c, oh, ow): the mean of each window of x (n, c, h, w) over
        its pixels inside the image: the sum of those, in row-major order,
        divided by their count (padding is left out of both, as Keras's
        average pooling; no window lies in the padding alone)."""

    @abc.abstractmethod
    def avgpool2d_grad(self, dy: Array, dx: Array, pool: Pair, stride: Pair, padding: Sides | Pair) -> None:
        """dx (n, c, h, w): each pixel gets the sum, over the windows that
        hold it, of dy divided by the window's count (overwrites dx)."""

    @abc.abstractmethod
    def upsample2d(self, x: Array, out: Array, size: Pair) -> None:
        """Nearest-neighbour upsampling by whole factors: x (n, c, h, w) ->
        out (n, c, h·sh, w·sw), ``out[n, c, y, x] = x[n, c, y // sh, x // sw]``."""

    @abc.abstractmethod
    def upsample2d_grad(self, dy: Array, dx: Array, size: Pair) -> None:
        """The adjoint of upsample2d: dx (n, c, h, w) = the sum of each
        sh × sw block of dy (n, c, h·sh, w·sw) (overwrites dx)."""

    @abc.abstractmethod
    def pad2d(self, x: Array, out: Array, padding: Sides) -> None:
        """x (n, c, h, w) framed by zeros: out (n, c, top + h + bottom,
        left + w + right), ``out[n, c, top + y, left + x] = x[n, c, y, x]``."""

    @abc.abstractmethod
    def pad2d_grad(self, dy: Array, dx: Array, padding: Sides) -> None:
        """The adjoint of pad2d, a crop: dx (n, c, h, w) =
        ``dy[n, c, top : top + h, left : left + w]``."""

    # --------------------------------------------------------------- sequences
    # Token ids come as floats holding integers (a batch's data is the
    # backend's dtype); a model checks them against the table's rows when
    # the data is given, and the GPU writes NaN for an id outside them
    # (never a read outside the table, never a clamped id).

    @abc.abstractmethod
    def embedding(self, ids: Array, table: Array, out: Array) -> None:
        """``out[i] = table[ids[i]]``: ids (rows,), table (vocab, d), out (rows, d)."""

    @abc.abstractmethod
    def embedding_grad(self, ids: Array, dy: Array, dtable: Array) -> None:
        """``dtable[r] = Σ dy[i]`` over the i with ``ids[i] = r``, added in the
        order of i from zero (rows no id names are 0), so the sums are the
        same bits on every device: ids (rows,), dy (rows, d), dtable (vocab, d)."""

    @abc.abstractmethod
    def broadcast_rows(self, src: Array, out: Array) -> None:
        """``out[i] = src`` for every row i: src (m,), out (n, m)."""

    # Attention of several heads: q (n, tq, h, d), k (n, tk, h, d) and v (n,
    # tk, h, dv), as the projections lay them out; probs (n, h, tq, tk). With
    # ``causal`` a query i sees the keys j <= i only (their probabilities are
    # exactly 0 otherwise), as Keras's use_causal_mask.

    @abc.abstractmethod
    def attention_probs(self, q: Array, k: Array, probs: Array, scale: float, causal: bool) -> None:
        """``probs = softmax_j(scale · q[i] · k[j])`` per sample and head (the
        scores never leave the operation)."""

    @abc.abstractmethod
    def attention_apply(self, probs: Array, v: Array, out: Array) -> None:
        """``out[n, i, h] = Σ_j probs[n, h, i, j] · v[n, j, h]``: out (n, tq, h, dv)."""

    @abc.abstractmethod
    def attention_apply_grad(self, probs: Array, v: Array, dout: Array, dprobs: Array, dv: Array) -> None:
        """The gradients of :meth:`attention_apply`: ``dprobs[n, h, i, j] =
        dout[n, i, h] · v[n, j, h]`` and ``dv[n, j, h] = Σ_i probs[n, h, i, j] · dout[n, i, h]``."""

    @abc.abstractmethod
    def attention_probs_grad(self, q: Array, k: Array, probs: Array, dprobs: Array, dq: Array, dk: Array,
                             scale: float) -> None:
        """The gradients of :meth:`attention_probs` from dE/dprobs: the
        scores' ``ds = probs · (dprobs - Σ_j dprobs · probs)`` (written over
        ``dprobs``), then ``dq = scale · ds k`` and ``dk = scale · dsᵀ q``."""

    # ---------------------------------------------------------- custom kernels
    def run_kernel(self, kernel: Any, entry: str, workgroups: tuple[int, int, int], arrays: dict[str, Array],
                   params: dict[str, float | int]) -> None:
        """Run the entry point ``entry`` of a user's kernel
        (:class:`~intricate_py.backends.custom.Kernel`, whose ``dispatch``
        checks the arguments and calls this): on ``workgroups`` workgroups,
        ``arrays`` by binding name, ``params`` by Params field. The numpy
        backend runs the kernel's numpy function of that entry instead."""
        raise NotImplementedError(f"{type(self).__name__} runs no custom kernels")

    # -------------------------------------------------------------- scheduling
    def flush(self) -> None:
        """Start the work recorded so far (the GPU submits; numpy has none)."""

    def record(self):
        """A context in which the operations run as usual and are also
        recorded, yielding a :class:`Recording` (None for a backend that does
        not replay, such as numpy). Scalar arguments marked with
        :func:`step_values` are recorded by name; the rest is fixed."""
        return contextlib.nullcontext(None)

    def replay(self, recording, values: dict[str, float | int]) -> None:
        """Run a complete recording again, its marked arguments taking ``values``."""
        raise NotImplementedError(f"{type(self).__name__} does not record")

    def discard(self) -> None:
        """Drop the work recorded and not yet started (after an interrupt);
        numpy has none."""

    def end_step(self) -> None:
        """A training step ended: the backend may start the work recorded so
        far (the GPU submits once several steps have gathered)."""

    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: submits, readbacks, bytes_read_back, buffers_created,
        dispatches."""


class StepFloat(float):
    """A float argument that changes from step to step (a learning rate):
    the value now, and the ``name`` a replay (:meth:`Backend.record`)
    supplies the next values by."""

    name: str

    def __new__(cls, value: float, name: str) -> "StepFloat":
        self = super().__new__(cls, value)
        self.name = name
        return self


class StepInt(int):
    """An int argument that changes from step to step (a batch's first row)."""

    name: str

    def __new__(cls, value: int, name: str) -> "StepInt":
        self = super().__new__(cls, value)
        self.name = name
        return self


def step_values(values: dict[str, float | int]) -> dict[str, StepFloat | StepInt]:
    """``values`` marked as changing from step to step, each by its key."""
    return {k: (StepInt(v, k) if isinstance(v, int) else StepFloat(v, k)) for k, v in values.items()}


def sides(padding: Sides | Pair) -> Sides:
    """(top, bottom, left, right) of ``padding``: itself, or (h, h, w, w) for a pair (h, w)."""
    padding = tuple(padding)
    return padding if len(padding) == 4 else (padding[0], padding[0], padding[1], padding[1])


def window_positions(size: Pair, window: Pair, stride: Pair, padding: Sides | Pair,
                     dilation: Pair = (1, 1)) -> Pair:
    """(oh, ow): how many places a ``window`` with taps ``dilation`` apart
    (spanning (k - 1)·d + 1) takes sliding at ``stride`` over a (h, w)
    plane padded by ``padding``: ``(h + top + bottom - span) // s + 1``."""
    (h, w), (kh, kw), (sh, sw), (dh, dw) = size, window, stride, dilation
    top, bottom, left, right = sides(padding)
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    return (h + top + bottom - span_h) // sh + 1, (w + left + right - span_w) // sw + 1


def window_counts(size: int, window: int, stride: int, before: int, positions: int) -> list[int]:
    """For each of ``positions`` windows along one axis of ``size`` pixels
    (padded by ``before`` in front), how many of its ``window`` pixels lie
    inside the image."""
    counts = []
    for i in range(positions):
        start = i * stride - before
        counts.append(min(start + window, size) - max(start, 0))
    return counts


def pcg(v):
    """The PCG hash of 32-bit unsigned integers (Jarzynski and Olano, "Hash
    Functions for GPU Rendering", 2020), in wrapping uint32 arithmetic: for
    Python ints and numpy uint32 arrays alike, and written the same in
    dropout.wgsl."""
    if isinstance(v, int):
        s = (v * 747796405 + 2891336453) & 0xFFFFFFFF
        w = (((s >> ((s >> 28) + 4)) ^ s) * 277803737) & 0xFFFFFFFF
        return (w >> 22) ^ w
    s = v * np.uint32(747796405) + np.uint32(2891336453)
    w = ((s >> ((s >> np.uint32(28)) + np.uint32(4))) ^ s) * np.uint32(277803737)
    return (w >> np.uint32(22)) ^ w


def dropout_key(seed: int, step: int) -> int:
    """The key of a dropout draw: ``pcg(seed ^ pcg(step))``, 32 bits."""
    return pcg((seed ^ pcg(step & 0xFFFFFFFF)) & 0xFFFFFFFF)


def dropout_threshold(rate: float) -> tuple[int, float]:
    """(threshold, scale) of a dropout of ``rate``: bits below ``rate·2³²``
    drop an element, the others are scaled by 1 / (1 - rate)."""
    return min(int(rate * 2**32), 2**32 - 1), 1.0 / (1.0 - rate)
