"""MultiHeadAttention, as Keras's: query, key and value projected per head,
scaled dot-product attention (with an optional causal mask), and an output
projection."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks, initializers
from ..backends import Array, dropout_key
from .base import Context, Layer, Shape
from .dropout import CALL_STRIDE

#: the parameters in Keras's get_weights order: (name, file tensor) pairs
_PROJECTIONS = (("q", "query"), ("k", "key"), ("v", "value"), ("o", "output"))


class MultiHeadAttention(Layer):
    """Attention of ``num_heads`` heads, called as Keras's:
    ``mha(query, value, key=None, use_causal_mask=False)`` (``key`` defaults
    to ``value``; ``mha(x, x)`` is self-attention).

    Each head h projects the query to ``q = query W_q[:, h] + b_q[h]``
    (key_dim values), the key to k (key_dim) and the value to v
    (value_dim, by default key_dim); ``softmax(q kᵀ / sqrt(key_dim))``
    weights the values (with ``use_causal_mask`` a position sees itself and
    those before it only), ``dropout`` drops those weights while training,
    and the heads' results, side by side, are projected to ``output_shape``
    features (by default the query's). The scores never leave the device.

    ``get_weights()`` gives Keras's eight arrays in Keras's order and
    shapes: the query, key and value kernels (features, num_heads, key_dim
    or value_dim) and biases (num_heads, key_dim or value_dim), then the
    output kernel (num_heads, value_dim, output features) and bias
    (without biases for ``use_bias=False``). Files hold each projection as
    a PyTorch Linear: ``query.weight`` (num_heads · key_dim, features),
    ``query.bias``, then ``key.*``, ``value.*`` and ``output.*``.

    Shapes: query (n, tq, features), value (n, tv, value features), key (n,
    tv, key features) -> y (n, tq, output_shape).
    """

    n_inputs = None

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape: int | None = None,
        *,
        use_causal_mask: bool = False,
        seed: int | None = None,
        kernel_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        name: str | None = None,
    ):
        super().__init__(name)
        self.num_heads = _checks.positive_int(num_heads, "num_heads")
        self.key_dim = _checks.positive_int(key_dim, "key_dim")
        self.value_dim = self.key_dim if value_dim is None else _checks.positive_int(value_dim, "value_dim")
        self.dropout = _checks.fraction(dropout, "dropout")
        self.use_bias = _checks.boolean(use_bias, "use_bias")
        if isinstance(output_shape, (tuple, list)) and len(output_shape) == 1:
            output_shape = output_shape[0]
        self.output_features = None if output_shape is None else _checks.positive_int(output_shape, "output_shape")
        self.use_causal_mask = _checks.boolean(use_causal_mask, "use_causal_mask")
        self._masked_calls = 0  # calls that named use_causal_mask
        self.seed = None if seed is None else _checks.non_negative_int(seed, "seed") & 0xFFFFFFFF
        initializers.get(kernel_initializer)
        initializers.get(bias_initializer)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.file_tensors = tuple(f"{file}.{kind}" for _, file in _PROJECTIONS
                                  for kind in (("weight", "bias") if self.use_bias else ("weight",)))

    def __call__(self, query, value=None, key=None, use_causal_mask: bool | None = None):
        """The attention of ``query`` over ``value`` (and ``key``, by default
        ``value``): symbolic tensors give a graph's node, arrays a numpy
        result. A list ``[query, value(, key)]`` works too."""
        if value is None and isinstance(query, (list, tuple)):
            query, value, key = (*query, None)[:3]
        if value is None:
            raise ValueError(f"{self!r} takes a query and a value, as mha(query, value). Received: a query alone")
        if use_causal_mask is not None:
            mask = _checks.boolean(use_causal_mask, "use_causal_mask")
            if self._masked_calls and mask != self.use_causal_mask:
                raise ValueError(f"{self!r} applies one mask in all its calls: it was called with "
                                 f"use_causal_mask={self.use_causal_mask}. Received: use_causal_mask={mask}")
            self.use_causal_mask = mask
            self._masked_calls += 1
        return super().__call__([query, value] if key is None else [query, value, key])

    # ---------------------------------------------------------------- shapes
    def output_shape_for(self, input_shape) -> Shape:
        shapes = input_shape if input_shape and isinstance(input_shape[0], tuple) else (input_shape,)
        if len(shapes) not in (2, 3) or any(len(s) != 2 for s in shapes):
            raise ValueError(f"expects a query and a value (and a key), each of shape (length, features). "
                             f"Received: {list(shapes)}")
        if len(shapes) == 3 and shapes[2][0] != shapes[1][0]:
            raise ValueError(f"expects a key as long as the value ({shapes[1][0]}). Received: {shapes[2][0]}")
        query = shapes[0]
        return (query[0], self.output_features or query[1])

    @property
    def _widths(self) -> tuple[int, int, int, int]:
        """(query, value, key, output) features."""
        query, value = self.input_shape[0], self.input_shape[1]
        key = self.input_shape[2] if len(self.input_shape) == 3 else value
        return query[1], value[1], key[1], self.output_shape[1]

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """Each parameter's shape, by name, in Keras's order."""
        query, value, key, out = self._widths
        h, d, dv = self.num_heads, self.key_dim, self.value_dim
        kernels = {"q": (query, h, d), "k": (key, h, d), "v": (value, h, dv), "o": (h, dv, out)}
        biases = {"q": (h, d), "k": (h, d), "v": (h, dv), "o": (out,)}
        shapes = {}
        for p, _ in _PROJECTIONS:
            shapes[f"W{p}"] = kernels[p]
            if self.use_bias:
                shapes[f"b{p}"] = biases[p]
        return shapes

    def create_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.seed is None and self.dropout > 0:
            self.seed = int(rng.integers(2**32))
        values = {}
        for name, shape in self._shapes().items():
            fan_in, fan_out = (math.prod(shape[:-1]), shape[-1]) if name == "Wo" else (shape[0], math.prod(shape[1:]))
            init = self.kernel_initializer if name.startswith("W") else self.bias_initializer
            values[name] = initializers.get(init)(rng, shape, fan_in, fan_out)
        return values

    def step_values(self, step: int, call: int) -> dict[str, int]:
        """The key of this step's dropout masks (none without dropout)."""
        if self.dropout == 0:
            return {}
        return {"key": dropout_key((self.seed + call * CALL_STRIDE) & 0xFFFFFFFF, step)}

    # -------------------------------------------------------------- computing
    def _matrix(self, a: Array, width: int) -> Array:
        """(n, length, ...) as the matrix (n · length, width)."""
        return self.backend.matrix(a, width)

    def _kernel(self, name: str, grad: bool = False) -> Array:
        param = self.params[name]
        a = param.grad if grad else param.value
        # the input projections' (features, heads, dim) as (features, heads · dim); the output's
        # (heads, dim, features) as (heads · dim, features)
        return self.backend.matrix(a, a.shape[-1] if name == "Wo" else math.prod(a.shape[1:]))

    def _flat_bias(self, name: str, grad: bool = False) -> Array | None:
        if not self.use_bias:
            return None
        param = self.params[name]
        a = param.grad if grad else param.value
        return self.backend.view(a, 0, (math.prod(a.shape),))

    def _project(self, ctx: Context, name: str, x: Array, p: str, width: int, per_head: int) -> Array:
        n, length = x.shape[0], x.shape[1]
        out = ctx.buffer(name, n, (length, self.num_heads, per_head))
        self.backend.matmul(self._matrix(x, width), self._kernel(f"W{p}"),
                            self._matrix(out, self.num_heads * per_head), bias=self._flat_bias(f"b{p}"))
        return out

    def call(self, ctx: Context, query: Array, value: Array, key: Array | None = None) -> Array:
        key = value if key is None else key
        n, tq, tk = query.shape[0], query.shape[1], value.shape[1]
        q_width, v_width, k_width, out_width = self._widths
        d, dv, h = self.key_dim, self.value_dim, self.num_heads
        ctx.inputs = (query, value, key)
        ctx.q = self._project(ctx, "q", query, "q", q_width, d)
        ctx.k = self._project(ctx, "k", key, "k", k_width, d)
        ctx.v = self._project(ctx, "v", value, "v", v_width, dv)
        ctx.probs = ctx.buffer("probs", n, (h, tq, tk))
        self.backend.attention_probs(ctx.q, ctx.k, ctx.probs, 1.0 / math.sqrt(d), self.use_causal_mask)
        ctx.dropped = ctx.training and self.dropout > 0
        ctx.weights = ctx.probs
        if ctx.dropped:
            ctx.weights = ctx.buffer("dropped", n, (h, tq, tk))
            ctx.mask = ctx.buffer("mask", n, (h, tq, tk))
            self.backend.dropout(ctx.probs, ctx.weights, ctx.mask, self.dropout, ctx.values["key"])
        ctx.heads = ctx.buffer("heads", n, (tq, h, dv))
        self.backend.attention_apply(ctx.weights, ctx.v, ctx.heads)
        y = ctx.buffer("y", n, (tq, out_width))
        self.backend.matmul(self._matrix(ctx.heads, h * dv), self._kernel("Wo"), self._matrix(y, out_width),
                            bias=self._flat_bias("bo"))
        return y

    def _input_grad(self, ctx: Context, name: str, d_projected: Array, p: str, width: int, like: Array) -> Array:
        """dE/d(input) = d(projection) W_pᵀ into a buffer of the input's shape."""
        dx = ctx.buffer(name, like.shape[0], tuple(like.shape[1:]))
        per_head = d_projected.shape[-1] * self.num_heads
        self.backend.matmul(self._matrix(d_projected, per_head), self._kernel(f"W{p}"), self._matrix(dx, width),
                            transpose_b=True)
        return dx

    def backward_inputs(self, ctx: Context, grad: Array, needed: list[bool]) -> list[Array | None]:
        backend, (query, value, key) = self.backend, ctx.inputs
        q_width, v_width, k_width, out_width = self._widths
        h, dv = self.num_heads, self.value_dim
        n, tq, tk = query.shape[0], query.shape[1], value.shape[1]
        # the output projection
        dy = self._matrix(grad, out_width)
        backend.matmul(self._matrix(ctx.heads, h * dv), dy, self._kernel("Wo", grad=True), transpose_a=True,
                       bias_grad=self._flat_bias("bo", grad=True))
        d_heads = ctx.buffer("d_heads", n, (tq, h, dv))
        backend.matmul(dy, self._kernel("Wo"), self._matrix(d_heads, h * dv), transpose_b=True)
        # the attention
        d_weights = ctx.buffer("d_weights", n, (h, tq, tk))
        dv_ = ctx.buffer("d_v", n, (tk, h, dv))
        backend.attention_apply_grad(ctx.weights, ctx.v, d_heads, d_weights, dv_)
        d_probs = d_weights
        if ctx.dropped:
            d_probs = ctx.buffer("d_probs", n, (h, tq, tk))
            backend.dropout_grad(d_weights, ctx.mask, d_probs)
        dq = ctx.buffer("d_q", n, ctx.q.shape[1:])
        dk = ctx.buffer("d_k", n, ctx.k.shape[1:])
        backend.attention_probs_grad(ctx.q, ctx.k, ctx.probs, d_probs, dq, dk, 1.0 / math.sqrt(self.key_dim))
        # the input projections: their parameters, then the inputs'
        for p, x, d_projected, width in (("q", query, dq, q_width), ("k", key, dk, k_width), ("v", value, dv_, v_width)):
            backend.matmul(self._matrix(x, width), self._matrix(d_projected, d_projected.shape[-1] * h),
                           self._kernel(f"W{p}", grad=True), transpose_a=True, bias_grad=self._flat_bias(f"b{p}", True))
        grads: list[Array | None] = [None] * len(needed)
        if needed[0]:
            grads[0] = self._input_grad(ctx, "d_query", dq, "q", q_width, query)
        if needed[1]:
            grads[1] = self._input_grad(ctx, "d_value", dv_, "v", v_width, value)
            if len(needed) == 2:  # the key is the value: both gradients are its
                from_key = self._input_grad(ctx, "d_value_key", dk, "k", k_width, value)
                backend.add(grads[1], from_key, grads[1])
        if len(needed) == 3 and needed[2]:
            grads[2] = self._input_grad(ctx, "d_key", dk, "k", k_width, key)
        return grads

    def parameter_gradients(self, ctx: Context, grad: Array) -> None:
        self.backward_inputs(ctx, grad, [False] * len(self.input_shape))

    # ------------------------------------------------------------ description
    def to_file(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {}
        for p, file in _PROJECTIONS:
            if f"W{p}" not in values:
                continue
            kernel = values[f"W{p}"]
            matrix = kernel.reshape(-1, kernel.shape[-1]) if p == "o" else kernel.reshape(kernel.shape[0], -1)
            tensors[f"{file}.weight"] = matrix.T
            if f"b{p}" in values:
                tensors[f"{file}.bias"] = values[f"b{p}"].reshape(-1)
        return tensors

    def from_file(self, tensors: dict[str, np.ndarray]) -> tuple[Shape | None, dict[str, np.ndarray]]:
        if not tensors:
            return None, {}
        if sorted(tensors) != sorted(self.file_tensors):
            raise ValueError(f"{self!r} expects tensors {sorted(self.file_tensors)}. Received: {sorted(tensors)}")
        h, d, dv = self.num_heads, self.key_dim, self.value_dim
        per_head = {"q": d, "k": d, "v": dv}
        values = {}
        for p, file in _PROJECTIONS:
            weight, bias = tensors[f"{file}.weight"], tensors.get(f"{file}.bias")
            rows = h * dv if p == "o" else None
            if weight.ndim != 2 or (p == "o" and weight.shape[1] != rows) or (p != "o" and weight.shape[0] != h * per_head[p]):
                expected = f"(output features, {h * dv})" if p == "o" else f"({h * per_head[p]}, features)"
                raise ValueError(f"{self!r} expects {file}.weight of shape {expected}. Received: {weight.shape}")
            width = weight.shape[0] if p == "o" else h * per_head[p]
            if bias is not None and bias.shape != (width,):
                raise ValueError(f"{self!r} expects {file}.bias of shape ({width},). Received: {bias.shape}")
            if p == "o":
                values["Wo"] = weight.T.reshape(h, dv, weight.shape[0])
                if bias is not None:
                    values["bo"] = bias
            else:
                values[f"W{p}"] = weight.T.reshape(weight.shape[1], h, per_head[p])
                if bias is not None:
                    values[f"b{p}"] = bias.reshape(h, per_head[p])
        return self.input_shape, values

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"num_heads": self.num_heads, "key_dim": self.key_dim}
        if self.value_dim != self.key_dim:
            config["value_dim"] = self.value_dim
        if self.dropout:
            config["dropout"] = self.dropout
        if not self.use_bias:
            config["use_bias"] = False
        if self.output_features is not None:
            config["output_shape"] = self.output_features
        if self.use_causal_mask:
            config["use_causal_mask"] = True
        if self.seed is not None:
            config["seed"] = self.seed
        if self.kernel_initializer != "glorot_uniform":
            config["kernel_initializer"] = self.kernel_initializer
        if self.bias_initializer != "zeros":
            config["bias_initializer"] = self.bias_initializer
        return config

    def __repr__(self) -> str:
        mask = ", causal" if self.use_causal_mask else ""
        return f"MultiHeadAttention({self.num_heads}×{self.key_dim}{mask})"
