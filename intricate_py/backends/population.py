"""A population's backend: every operation of another backend, applied to
``size`` networks at once.

An array of a population is :class:`Members`: one array of the same shape
per member, which layers, losses and optimizers see through its ``shape``
(a member's) exactly as they see a model's arrays, so that they run
unchanged. Arrays that every member shares (a batch of the data, which the
same data feeds to every member) stay the base backend's own arrays.

Each operation runs in one of two ways:

* batched, once for every member: on the CPU the members are one numpy
  array (member, *shape), and products with their epilogues, element-wise
  and row-wise operations, losses, optimizer updates and each member's
  gather of its own batch run as batched ``matmul``, broadcasting and
  ``take``; on the GPU the members' arrays lie one after the other in one
  buffer, and the products, losses, updates, the weights' check, the
  convolutions' data movement and pooling run as one dispatch with a member
  per z group (``WgpuBackend.matmul_members``, ``loss_members``,
  ``*_step_members``, ``run_members``),
  element-wise and row-wise operations over the whole buffer;
* member by member: every other operation (normalization, attention,
  embeddings, metrics, clipping, resizing, a user's kernels) calls the base
  backend once per member on that member's views.

Either way each member computes exactly what a model alone computes: on
the GPU the batched kernels are the model's, each member's operands at its
offsets, so its bits are the model's.

Per-member scalars (an optimizer's learning rates, momenta, betas, Dropout's
keys) reach the operations as :class:`MemberValues`, arrays of length
``size``, where plain models pass numbers.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .base import OPTIMIZER_SCALARS, Backend, MemberValues, member_values
from .numpy_backend import CLIPPED_LOSSES, CORRECT_ROWS, LOSS_TERMS, one_hot, row_losses

__all__ = ["Members", "MemberValues", "PopulationBackend", "member_values"]

#: the elements an optimizer update takes on at once on the CPU (whole members, at least one)
UPDATE_ELEMENTS = 1 << 16
#: the most members a GPU population holds: a dispatch's workgroups along z
MAX_GPU_MEMBERS = 65535


class Members:
    """One array of ``shape`` for each of ``count`` members of a population.

    On the CPU ``stack`` is the numpy array (count, *shape) of them all (a
    view where the array is a view). On the GPU ``first`` is member 0's
    array and ``stride`` the elements from one member's array to the
    next's in their buffer (the batched kernels' strides). ``each``, the
    base backend's array of each member, is made when first asked for (by
    the operations that run member by member)."""

    __slots__ = ("shape", "dtype", "count", "stack", "first", "stride", "_view", "_each")

    def __init__(self, shape: Sequence[int], dtype, count: int, stack: np.ndarray | None = None, first=None,
                 stride: int = 0, view=None):
        self.shape, self.dtype, self.count = tuple(shape), np.dtype(dtype), count
        self.stack, self.first, self.stride, self._view = stack, first, stride, view
        self._each: list | None = None

    @property
    def each(self) -> list:
        if self._each is None:
            self._each = list(self.stack) if self.stack is not None else \
                [self._view(self.first, p * self.stride, self.shape) for p in range(self.count)]
        return self._each

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Members({self.count} × {self.shape})"


def _stacked(stack: np.ndarray) -> Members:
    return Members(stack.shape[1:], stack.dtype, len(stack), stack=stack)


def _member(a, p: int):
    """Member ``p``'s part of an operation's argument: its array of a
    :class:`Members`, its entry of a per-member hyper-parameter, its parts
    of a tuple (a product's ``grad_of``); anything else as it is."""
    if isinstance(a, Members):
        return a.each[p]
    if isinstance(a, MemberValues):
        return a[p].item()
    if type(a) is tuple:
        return tuple(_member(v, p) for v in a)
    return a


def _named(operation, name: str, doc: str):
    """``operation`` as the population backend's ``name``, documented ``doc``."""
    operation.__name__, operation.__doc__ = name, doc
    return operation


def _per_member(name: str):
    def operation(self: "PopulationBackend", *args, **kwargs) -> None:
        base = getattr(self.base, name)
        for p in range(self.size):
            base(*[_member(a, p) for a in args], **{k: _member(v, p) for k, v in kwargs.items()})
    return _named(operation, name, f"The base backend's ``{name}``, member by member.")


def _first(a):
    """What a batched GPU kernel is given of an argument: member 0's array (the others
    follow at its stride), or a shared array as it is."""
    return a.first if isinstance(a, Members) else a


def _stride(a) -> int:
    return a.stride if isinstance(a, Members) else 0


def _nd(a):
    """The numpy form of an argument on the CPU: a stack for members, the
    array itself for a shared one."""
    return a.stack if isinstance(a, Members) else a


def _part(a, members: slice):
    """Members ``members`` of an optimizer's argument: of an array of
    every member's, those rows; a float as it is."""
    return a[members] if isinstance(a, np.ndarray) else a


def _hyper(v, ndim: int):
    """A per-member hyper-parameter as an array that broadcasts against
    (size, ...) of ``ndim`` axes after the first; a float as it is."""
    if isinstance(v, MemberValues):
        return np.asarray(v).reshape((-1,) + (1,) * ndim)
    return v


class PopulationBackend(Backend):
    """The operations of ``base`` over ``size`` members (see the module)."""

    def __init__(self, base: Backend, size: int):
        if base.kind == "gpu" and size > MAX_GPU_MEMBERS:
            raise ValueError(f"expected at most {MAX_GPU_MEMBERS:,} members on the GPU (a member a workgroup row of "
                             f"each dispatch). Received: size={size:,}: train them as several populations")
        self.base, self.size, self.members = base, size, size
        self.kind, self.dtype = base.kind, base.dtype
        self.batched = base.kind == "cpu"  # numpy: one call for every member where written below
        self.records = False  # the GPU's dispatches run as issued
        self._table = self._rows = None  # the GPU's table of per-member optimizer scalars, and what it holds
        self._targets: np.ndarray | None = None  # the CPU's copies of shared targets for the loss

    population = True

    def __repr__(self) -> str:
        return f"PopulationBackend({self.size} × {self.base!r})"

    @property
    def name(self) -> str:
        return f"{self.size} members on {self.base.name}"

    # ------------------------------------------------------------------ memory
    def _new(self, shape, dtype, fill) -> Members:
        shape = tuple(shape)
        dtype = np.dtype(dtype or self.dtype)
        if self.batched:
            stack = (np.zeros if fill else np.empty)((self.size, *shape), dtype)
            return _stacked(stack)
        size = math.prod(shape)
        flat = self.base.zeros((self.size * size,)) if fill else self.base.empty((self.size * size,), dtype)
        return Members(shape, dtype, self.size, first=self.base.view(flat, 0, shape), stride=size, view=self.base.view)

    def empty(self, shape, dtype=None) -> Members:
        return self._new(shape, dtype, False)

    def zeros(self, shape) -> Members:
        return self._new(shape, None, True)

    def from_numpy(self, a: np.ndarray) -> Members:
        """``a`` for every member."""
        a = np.asarray(a)
        dtype = np.int32 if np.issubdtype(a.dtype, np.integer) else self.dtype
        out = self.empty(a.shape, dtype)
        self.write(out, a)
        return out

    def asarray(self, a: np.ndarray):
        return self.base.asarray(a)

    def dataset(self, a: np.ndarray):
        return self.base.dataset(a)

    def to_numpy(self, a) -> np.ndarray:
        """(size, *shape) for members; a shared array's own shape. On the
        GPU one readback of the span the members' arrays lie in."""
        if not isinstance(a, Members):
            return self.base.to_numpy(a)
        return self.read_all([a])[0]

    def read_all(self, arrays: list[Members]) -> list[np.ndarray]:
        """Each of ``arrays`` as (size, *shape): on the GPU one readback for
        those in one buffer (a store's parameters), of the span they lie in."""
        if self.batched:
            return [np.array(a.stack) for a in arrays]
        found: dict[int, np.ndarray] = {}
        for group in self._by_buffer(arrays):
            span, start = self._span(group)
            values = self.base.to_numpy(span)
            for a in group:
                found[id(a)] = np.array(self._members_of(values, a, start)).reshape(self.size, *a.shape)
        return [found[id(a)] for a in arrays]

    def member_numpy(self, a: Members, i: int) -> np.ndarray:
        """Member ``i``'s array, read back alone."""
        return np.array(a.stack[i]) if self.batched else self.base.to_numpy(a.each[i])

    def flag_nonfinite(self, x, acc, index: int) -> None:
        """Each member's flag in its ``acc[index]``: at once on either device."""
        if self.batched:
            values = x.stack.reshape(self.size, -1)
            bad = ~np.isfinite(np.add.reduce(values, axis=1))  # a finite sum proves it cheaply
            if bad.any():
                bad[bad] = ~np.isfinite(values[bad]).all(axis=1)
                acc.stack[bad, index] = 1
            return
        self._flag_nonfinite(x, acc, index)

    def write(self, dst: Members, a: np.ndarray) -> None:
        """``a`` (one member's shape) into every member."""
        a = np.asarray(a)
        self.write_members(dst, np.broadcast_to(a, (self.size, *a.shape)))

    def write_members(self, dst: Members, a: np.ndarray) -> None:
        """``a[p]`` into member ``p``, ``a`` (size, *shape)."""
        self.write_all([(dst, a)])

    def write_all(self, pairs: list[tuple[Members, np.ndarray]]) -> None:
        """Each (dst, a) as :meth:`write_members`: on the GPU, for the arrays
        of one buffer, one upload of the span they lie in (after a readback
        of it where other data lies between them)."""
        if self.batched:
            for dst, a in pairs:
                np.copyto(dst.stack, a, casting="same_kind")
            return
        values_of = {id(dst): a for dst, a in pairs}
        for group in self._by_buffer([dst for dst, _ in pairs]):
            span, start = self._span(group)
            whole = len(group) == 1 and group[0].stride == group[0].size
            values = np.empty(span.size, np.dtype(span.dtype)) if whole else self.base.to_numpy(span)
            for dst in group:
                self._members_of(values, dst, start)[...] = np.asarray(values_of[id(dst)]).reshape(self.size, -1)
            self.base.write(span, values)

    def _by_buffer(self, arrays: list[Members]) -> list[list[Members]]:
        """``arrays`` grouped by the GPU buffer they lie in."""
        groups: dict[int, list[Members]] = {}
        for a in arrays:
            groups.setdefault(id(a.first.alloc), []).append(a)
        return list(groups.values())

    def _span(self, group: list[Members]) -> tuple:
        """The base array from the first element of ``group``'s arrays (of one
        buffer) to their last, and its first element's offset."""
        first = min(group, key=lambda a: a.first.offset).first
        end = max(a.first.offset + (self.size - 1) * a.stride + a.size for a in group)
        return self.base.view(first, 0, (end - first.offset,)), first.offset

    def _members_of(self, values: np.ndarray, a: Members, start: int) -> np.ndarray:
        """The (size, a.size) view of ``a``'s members in ``values``, a span read from ``start``."""
        item = values.itemsize
        return np.lib.stride_tricks.as_strided(values[a.first.offset - start:], (self.size, a.size),
                                               (a.stride * item, item))

    def copy(self, src, dst: Members) -> None:
        if self.batched:
            np.copyto(dst.stack, _nd(src))
            return
        whole = self._whole((src, dst), {})
        if whole is not None:  # one copy of every member's
            return self.base.copy(*whole[0])
        for p, e in enumerate(dst.each):
            self.base.copy(_member(src, p), e)

    def copy_members(self, src: Members, dst: Members, members: np.ndarray) -> None:
        """``dst = src`` for the members ``members`` (indices) only."""
        if self.batched:
            dst.stack[members] = src.stack[members]
            return
        for p in members:
            self.base.copy(src.each[p], dst.each[p])

    def clear(self, a: Members) -> None:
        if self.batched:
            a.stack.fill(0)
            return
        whole = self._whole((a,), {})
        if whole is not None:
            return self.base.clear(*whole[0])
        for e in a.each:
            self.base.clear(e)

    def rows(self, a, start: int, stop: int):
        if not isinstance(a, Members):
            return self.base.rows(a, start, stop)
        if self.batched:
            return _stacked(a.stack[:, start:stop])
        return Members((stop - start, *a.shape[1:]), a.dtype, self.size, first=self.base.rows(a.first, start, stop),
                       stride=a.stride, view=self.base.view)

    def view(self, a, offset: int, shape: Sequence[int]):
        if not isinstance(a, Members):
            return self.base.view(a, offset, shape)
        shape = tuple(shape)
        if self.batched:
            flat = a.stack.view()
            flat.shape = (self.size, a.size)  # AttributeError rather than a copy
            part = flat[:, offset: offset + math.prod(shape)].view()
            part.shape = (self.size, *shape)
            return _stacked(part)
        return Members(shape, a.dtype, self.size, first=self.base.view(a.first, offset, shape), stride=a.stride,
                       view=self.base.view)

    # ----------------------------------------------------------- dense algebra
    def matmul(self, a, b, out, transpose_a=False, transpose_b=False, bias=None, activation=None,
               grad_of=None, bias_grad=None, activation_param=0.0) -> None:
        if not self.batched:
            y = grad_of[1] if grad_of is not None else None
            if not self._one_dispatch(bias_grad, out):
                return self._matmul_each(a, b, out, transpose_a, transpose_b, bias, activation, grad_of, bias_grad,
                                         activation_param)
            strides = {"a": _stride(a), "b": _stride(b), "out": out.stride, "bias": _stride(bias), "aux": _stride(y),
                       "bias_grad": _stride(bias_grad)}
            self.base.matmul_members(self.size, strides, _first(a), _first(b), out.first, transpose_a, transpose_b,
                                     _first(bias), activation, None if grad_of is None else (grad_of[0], _first(y)),
                                     _first(bias_grad), activation_param)
            return
        left = a.stack if isinstance(a, Members) else a
        right = b.stack if isinstance(b, Members) else b
        if transpose_a:
            left = left.mT
        if transpose_b:
            right = right.mT
        result = out.stack
        product = result if grad_of is None else np.empty_like(result)
        np.matmul(left, right, out=product)
        if bias is not None:
            np.add(result, bias.stack[:, None, :] if isinstance(bias, Members) else bias, out=result)
        if activation is not None:
            self.base.activation(activation, result, result, activation_param)
        if grad_of is not None:
            kind, y = grad_of
            self.base.activation_grad(kind, _nd(y), product, result, activation_param)
        if bias_grad is not None:
            np.add.reduce(right, axis=-2, out=bias_grad.stack)

    _matmul_each = _per_member("matmul")

    def _one_dispatch(self, bias_grad, out) -> bool:
        """Whether a GPU product of every member is one dispatch: the base
        has batched products, and a bias gradient lies in the product's buffer."""
        matmul_members = getattr(self.base, "matmul_members", None)
        return matmul_members is not None and (bias_grad is None or self.base.shares_buffer(_first(bias_grad),
                                                                                             out.first))

    def sum_rows(self, x, out) -> None:
        if self.batched and isinstance(x, Members):
            np.add.reduce(x.stack, axis=1, out=out.stack)
        else:
            self._sum_rows_each(x, out)

    _sum_rows_each = _per_member("sum_rows")

    # ---------------------------------------------------- element-wise, batched
    def _elementwise(name: str):
        each = _per_member(name)

        def operation(self: "PopulationBackend", *args, **kwargs) -> None:
            if not self.batched:
                whole = self._whole(args, kwargs)
                if whole is None:
                    return each(self, *args, **kwargs)
                return getattr(self.base, name)(*whole[0], **whole[1])
            getattr(self.base, name)(*[_nd(a) for a in args], **{k: _nd(v) for k, v in kwargs.items()})
        return _named(operation, name, f"The base backend's ``{name}`` on every member at once.")

    add = _elementwise("add")
    multiply = _elementwise("multiply")
    scale = _elementwise("scale")
    activation = _elementwise("activation")
    activation_grad = _elementwise("activation_grad")
    activation_grad_from_input = _elementwise("activation_grad_from_input")
    dropout_grad = _elementwise("dropout_grad")

    def _scalar_table(self, scalars: dict):
        """The members' scalars of an optimizer update as the GPU's table
        (size × 16, base.OPTIMIZER_SCALARS' order), uploaded; None when every
        member has the same (the update's own arguments serve)."""
        if not any(isinstance(v, MemberValues) for v in scalars.values()):
            return None
        values = dict(scalars)
        if "beta1" in values:
            values["one_minus_beta1"], values["one_minus_beta2"] = 1 - values["beta1"], 1 - values["beta2"]
        table = np.zeros((self.size, 16), np.float64)
        for column, name in enumerate(OPTIMIZER_SCALARS):
            if name in values:
                table[:, column] = values[name]
        rows = table.astype(np.float32).reshape(-1)
        if self._table is None:
            self._table = self.base.empty((self.size * 16,))
        if self._rows is None or not np.array_equal(rows, self._rows):  # an upload submits the work before it
            self.base.write(self._table, rows)
            self._rows = rows
        return self._table

    def _whole(self, args, kwargs) -> tuple[list, dict] | None:
        """On the GPU, the arguments of an element-wise operation as one array
        each over every member's, where that is the same operation (each of
        them members one after the other in one buffer, and no per-member
        scalar); else None."""
        def whole(a):
            if isinstance(a, Members):
                shape = (self.size * a.shape[0], *a.shape[1:]) if a.shape else (self.size,)
                return self.base.view(a.first, 0, shape) if a.stride == a.size else None
            return a
        values = list(args) + list(kwargs.values())
        if any(isinstance(v, MemberValues) for v in values) or \
                any(not isinstance(v, Members) and hasattr(v, "shape") for v in values):
            return None  # a per-member scalar, or an array the members share
        arrays = [whole(a) for a in args]
        named = {k: whole(v) for k, v in kwargs.items()}
        if any(v is None and isinstance(a, Members) for v, a in zip(arrays + list(named.values()), values)):
            return None
        return arrays, named

    # ------------------------------------------------------------------ losses
    def loss(self, kind, p, t, acc, index, accuracy, scale, grad=None, grad_scale=1.0, weights=None) -> None:
        """The base backend's loss for every member: on the CPU the gradient
        of all in one call (the terms of the numpy backend's), and each
        member's sum and correct count from its rows."""
        if not self.batched and hasattr(self.base, "loss_members") and not isinstance(grad_scale, MemberValues):
            strides = {"p": _stride(p), "t": _stride(t), "acc": _stride(acc), "grad": _stride(grad),
                       "w": _stride(weights)}
            self.base.loss_members(self.size, strides, kind, _first(p), _first(t), _first(acc), index, accuracy,
                                   scale, _first(grad), grad_scale, _first(weights))
            return
        if not (self.batched and isinstance(p, Members) and weights is None):
            return self._loss_each(kind, p, t, acc, index, accuracy, scale, grad, grad_scale, weights)
        stack = p.stack
        rows, width = p.shape
        flat = stack.reshape(self.size * rows, width)  # a copy where p is a batch of fewer rows than its buffer
        if isinstance(t, Members):  # each member's own batch (fit's shuffle="members")
            targets = t.stack.reshape(self.size * rows, t.shape[1])
            if t.shape[1] != width:
                targets = one_hot(targets, np.empty((len(targets), width), stack.dtype))
        else:  # the members' copies of the batch's targets, in a buffer grown to the largest batch
            if self._targets is None or self._targets.size < stack.size:
                self._targets = np.empty(stack.size, stack.dtype)
            targets = self._targets[: stack.size].reshape(stack.shape)
            np.copyto(targets, t if t.shape[1] == width else one_hot(t, np.empty((len(t), width), stack.dtype)))
            targets = targets.reshape(self.size * rows, width)
        g = None
        if grad is not None:
            whole = grad.stack.flags.c_contiguous
            g = grad.stack.reshape(flat.shape) if whole else np.empty_like(flat)
        _, predictions = LOSS_TERMS[kind](flat, targets, g)
        if g is not None:
            if isinstance(grad_scale, MemberValues):  # a weight a member (loss_weights)
                members = g.reshape(self.size, -1)
                np.multiply(members, g.dtype.type(grad_scale)[:, None], members)
            elif grad_scale != 1.0:
                np.multiply(g, g.dtype.type(grad_scale), g)
            if not whole:
                np.copyto(grad.stack, g.reshape(grad.stack.shape))
        totals = row_losses(kind, flat, targets)[0].reshape(self.size, rows).sum(axis=1)
        finite = np.isfinite(totals)
        if kind in CLIPPED_LOSSES:
            finite &= np.isfinite(stack.reshape(self.size, -1)).all(axis=1)
        sums = acc.stack
        sums[:, index] += np.where(finite, scale * totals, np.nan).astype(sums.dtype)
        sums[:, index + 1] += CORRECT_ROWS[accuracy](predictions, targets).reshape(self.size, -1).sum(axis=1)

    _loss_each = _per_member("loss")

    # -------------------------------------------------------------- optimizers
    def _optimizer(name: str):
        each = _per_member(name)

        def operation(self: "PopulationBackend", p, *args, **kwargs) -> None:
            if not self.batched:
                whole = self._whole((p, *args), kwargs)
                if whole is not None:
                    return getattr(self.base, name)(*whole[0], **whole[1])
                members = getattr(self.base, f"{name}_members", None)
                arrays = [a for a in (p, *args) if isinstance(a, Members)]
                if members is None or any(a.stride != p.stride for a in arrays):
                    return each(self, p, *args, **kwargs)
                return members(self.size, p.stride, self._scalar_table(kwargs), _first(p),
                               *[_first(a) for a in args], **kwargs)
            ndim = p.stack.ndim - 1
            args = [p.stack] + [_hyper(_nd(a), ndim) for a in args]
            kwargs = {k: _hyper(_nd(v), ndim) for k, v in kwargs.items()}
            # a few members at a time, so that the update's passes over them stay in the cache
            chunk = max(1, UPDATE_ELEMENTS // max(1, p.size))
            if chunk >= self.size:
                return getattr(self.base, name)(*args, **kwargs)
            for first in range(0, self.size, chunk):
                part = slice(first, first + chunk)
                getattr(self.base, name)(*[_part(a, part) for a in args],
                                         **{k: _part(v, part) for k, v in kwargs.items()})
        return _named(operation, name, f"The base backend's ``{name}`` on every member at once (scalars per member).")

    sgd_step = _optimizer("sgd_step")
    adagrad_step = _optimizer("adagrad_step")
    adam_step = _optimizer("adam_step")

    def _strided(name: str):
        each = _per_member(name)

        def operation(self: "PopulationBackend", *args, **kwargs) -> None:
            roles = getattr(self.base, "MEMBER_OPERATIONS", {}).get(name)
            if self.batched or roles is None:
                return each(self, *args, **kwargs)
            strides = {f"{role}_stride": _stride(a) for role, a in zip(roles, args)}
            bias, grad_of = kwargs.get("bias"), kwargs.get("grad_of")
            strides.update(bias_stride=_stride(bias), aux_stride=_stride(grad_of[1] if grad_of else None))
            if grad_of is not None:
                kwargs = {**kwargs, "grad_of": (grad_of[0], _first(grad_of[1]))}
            self.base.run_members(name, self.size, strides, *[_first(a) for a in args],
                                  **{k: v if k == "grad_of" else _first(v) for k, v in kwargs.items()})
        return _named(operation, name, f"The base backend's ``{name}``: on the GPU every member in one dispatch.")

    im2col = _strided("im2col")
    col2im = _strided("col2im")
    to_channels_first = _strided("to_channels_first")
    to_channels_last = _strided("to_channels_last")
    maxpool2d = _strided("maxpool2d")
    maxpool2d_grad = _strided("maxpool2d_grad")
    avgpool2d = _strided("avgpool2d")
    avgpool2d_grad = _strided("avgpool2d_grad")
    _sum_channels = _strided("sum_channels")
    _flag_nonfinite = _strided("flag_nonfinite")

    def sum_channels(self, x, out) -> None:
        """Each member's sums over all but the channels of (n, c, ...), on the CPU at once."""
        if self.batched and isinstance(x, Members):
            n, c = x.shape[:2]
            np.add.reduce(x.stack.reshape(self.size, n, c, -1), axis=(1, 3), out=out.stack)
        else:
            self._sum_channels(x, out)

    def _rowwise(name: str):
        each = _per_member(name)

        def operation(self: "PopulationBackend", *args) -> None:
            if self.batched:
                if not all(isinstance(a, Members) and a.stack.flags.c_contiguous for a in args):
                    return each(self, *args)
                return getattr(self.base, name)(*[a.stack.reshape(self.size * a.shape[0], -1) for a in args])
            whole = self._whole(args, {})
            if whole is None:
                return each(self, *args)
            getattr(self.base, name)(*whole[0])
        return _named(operation, name, f"The base backend's ``{name}`` over the rows of every member at once.")

    softmax = _rowwise("softmax")
    softmax_grad = _rowwise("softmax_grad")

    del _elementwise, _optimizer, _rowwise, _strided

    def take_rows(self, src, indices, out, first=0, src2=None, out2=None) -> None:
        """Shared rows in each member's order (``indices`` one order a member) on the CPU at once."""
        if not (self.batched and isinstance(indices, Members) and not isinstance(src, Members)):
            return self._take_rows_each(src, indices, out, first, src2, out2)
        order = indices.stack[:, first: first + out.shape[0]]
        np.take(src, order, axis=0, out=out.stack, mode="clip")
        if src2 is not None:
            np.take(src2, order, axis=0, out=out2.stack, mode="clip")

    _take_rows_each = _per_member("take_rows")

    # ------------------------------------------------------- member by member
    copy_slice = _per_member("copy_slice")
    metric_counts = _per_member("metric_counts")
    metric_sums = _per_member("metric_sums")
    sum_squares = _per_member("sum_squares")
    clip_norm = _per_member("clip_norm")
    dropout = _per_member("dropout")
    batch_norm = _per_member("batch_norm")
    batch_norm_train = _per_member("batch_norm_train")
    batch_norm_grad = _per_member("batch_norm_grad")
    layer_norm = _per_member("layer_norm")
    layer_norm_grad = _per_member("layer_norm_grad")
    upsample2d = _per_member("upsample2d")
    upsample2d_grad = _per_member("upsample2d_grad")
    pad2d = _per_member("pad2d")
    pad2d_grad = _per_member("pad2d_grad")
    embedding = _per_member("embedding")
    embedding_grad = _per_member("embedding_grad")
    broadcast_rows = _per_member("broadcast_rows")
    attention_probs = _per_member("attention_probs")
    attention_apply = _per_member("attention_apply")
    attention_apply_grad = _per_member("attention_apply_grad")
    attention_probs_grad = _per_member("attention_probs_grad")
    run_kernel = _per_member("run_kernel")

    def norm_layouts(self, arrays, joint):
        return self.base.norm_layouts(arrays, joint)

    # -------------------------------------------------------------- scheduling
    def flush(self) -> None:
        self.base.flush()

    def discard(self) -> None:
        self.base.discard()

    def end_step(self) -> None:
        self.base.end_step()

    def stats(self) -> dict[str, int]:
        return self.base.stats()


