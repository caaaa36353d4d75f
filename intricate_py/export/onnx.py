"""Models as ONNX files, built with the ``onnx`` package (the ``export``
extra): opset 17, float32, the weights as initializers, a symbolic batch
dimension ``n`` on every input and output. A path of layers has the input
``x`` of shape (n, *input_shape) and the output ``y`` of shape
(n, *output_shape); a graph has an input per model input and an output per
model output, named as the model names them (``model.input_names``,
``model.output_names``). ``onnx.checker`` (with shape inference) checks the
model before it is written.

Each node of the model's plan is one operator (Average and a Multiply of
more than two inputs a few): Dense -> Gemm (W is (inputs, units), as
Gemm's B; on samples of more axes (n, ..., inputs), MatMul then Add of the
biases, Gemm taking matrices only), Embedding -> Gather of its table at
the ids Cast to int64, PositionEmbedding -> Expand of its table's first
rows to the input's Shape, MultiHeadAttention -> the MatMul, Add, Reshape,
Transpose, Mul, Where (the causal mask: -inf above the diagonal) and
Softmax (axis -1) nodes of :func:`_attention`, Conv2D -> Conv (its strides, dilations, group, and pads (top,
left, bottom, right), which may differ on each side ("same"); no B without
a bias), MaxPool2D -> MaxPool and AveragePooling2D -> AveragePool with
count_include_pad=0 (ONNX's conventions agree with the layers':
cross-correlation, padding that MaxPool ignores and AveragePool leaves out
of its counts, floor mode), GlobalMaxPooling2D -> GlobalMaxPool and
GlobalAveragePooling2D -> GlobalAveragePool (then Flatten(axis=1) unless
keepdims), UpSampling2D -> Resize (nearest, asymmetric coordinates, floor:
pixel y reads y // s), ZeroPadding2D -> Pad (constant zeros), Flatten ->
Flatten(axis=1), Reshape -> Reshape to (0, *shape) (0
keeps the batch dimension), Dropout -> Identity, the activations to their
operators (LeakyReLU -> LeakyRelu, ELU -> Elu, Softplus -> Softplus), or,
where opset 17 has none, to their formulas: GELU -> x · (1 + Erf(x / √2)) / 2
(Gelu is opset 20's), its tanh form -> x · Sigmoid(2 √(2/π) (x + 0.044715 x³))
(as intricate computes it: the same as x (1 + tanh(...)) / 2 without its
cancellation), SiLU -> x · Sigmoid(x); a Dense's or Conv2D's activation=
follows its Gemm or Conv as the same nodes. Add -> Add (Sum for more than two), Subtract -> Sub, Multiply ->
Mul (a chain of them for more than two), Average -> Add or Sum, then Mul by
1/k (as intricate computes it: the sum times the float 1/k),
Concatenate -> Concat on the layer's axis (which, as ONNX's, counts the
batch as axis 0 and -1 as the last), LayerNormalization ->
LayerNormalization (axis -1), BatchNormalization -> BatchNormalization
(inference: the moving statistics) for axis 1, and for another axis Sub,
Mul, Mul, Add of per-channel constants (the mean, 1 / sqrt(variance +
epsilon) as the numpy backend rounds it, gamma, beta) shaped to broadcast
along that axis.

A BatchNormalization that reads a Dense or a Conv2D's output (of its
channels, read by nothing else, the layer called at that one node) is
folded into that product (:func:`common.batch_norm_folds`): the product's
initializers hold the folded weights and the normalization writes no
node.

Tensors are named ``{layer index}.{role}`` (the index in ``model.layers``):
``3.weight``, ``3.bias`` once for a layer however many nodes call it, and
``3.dense`` for a node's output (``3.dense.1`` for a shared layer's second
call).
"""

from __future__ import annotations

from pathlib import Path
import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..layers import (ELU, GELU, ActivationFunction, Add, Average, AveragePooling2D, BatchNormalization, Concatenate,
                      Conv2D, Dense, Dropout, Embedding, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D,
                      LayerNormalization, LeakyReLU, MaxPool2D, MultiHeadAttention, Multiply, PositionEmbedding, ReLU,
                      Reshape, Sigmoid, SiLU, Softmax, Softplus, Subtract, TanH, UpSampling2D, ZeroPadding2D)
from ..naming import encodes_as_utf8
from ..saving import atomic_write
from .common import (Site, architecture_lines, batch_norm_folds, batch_norm_terms, exported_layers, exported_nodes,
                     io_names, product_arrays)

if TYPE_CHECKING:
    from ..model import Model

OPSET = 17
#: The IR version of opset 17 (onnx 1.12), so that older runtimes read the files.
IR_VERSION = 8
#: TensorProto.INT64, Cast's ``to`` for the ids that Gather takes
_INT64 = 7


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "exporting to ONNX needs the onnx package, the optional extra 'export': "
            "pip install 'intricate-py[export]'"
        ) from None
    return onnx


class _Graph:
    """The nodes and initializers of a graph under construction; names are
    ``{layer index}.{role}``."""

    def __init__(self, helper, numpy_helper, products: dict[int, tuple[np.ndarray, np.ndarray]]):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []
        #: folded (weights, biases) of Dense and Conv2D layers, by id (common.batch_norm_folds)
        self.products = products

    def product_weights(self, site: Site, layer) -> tuple[str, str | None]:
        """The initializers of a Dense or Conv2D layer's weights and biases
        (None for a layer without biases), folded with the batch
        normalization after it where there is one."""
        weights, biases = self.products[id(layer)] if id(layer) in self.products else product_arrays(layer)
        bias = self.weight(f"{site.index}.bias", biases) if biases is not None else None
        return self.weight(f"{site.index}.weight", weights), bias

    def weight(self, name: str, value: np.ndarray) -> str:
        """The float32 initializer ``name``, added the first time (a shared
        layer's nodes read its one copy)."""
        return self.constant(name, np.asarray(value, np.float32))

    def constant(self, name: str, value: np.ndarray) -> str:
        """The initializer ``name`` holding ``value`` as it is (its dtype
        kept), added the first time."""
        if all(t.name != name for t in self.initializers):
            self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def rename(self, names: dict[str, str]) -> None:
        """Give the tensors named as the keys of ``names`` the values'
        names, in every node that makes or reads them, all at once."""
        for node in self.nodes:
            for k, tensor in enumerate(node.output):
                node.output[k] = names.get(tensor, tensor)
            for k, tensor in enumerate(node.input):
                node.input[k] = names.get(tensor, tensor)

    def tensor_names(self) -> set[str]:
        """The names of the initializers and of the nodes' outputs."""
        return {t.name for t in self.initializers} | {o for node in self.nodes for o in node.output}


# Each writer adds the nodes of one call of a layer (at ``site``) reading
# the tensors ``xs`` (one a layer input) and returns its output's name.
def _dense(g: _Graph, site: Site, layer: Dense, xs: list[str]) -> str:
    """Gemm for flat samples (n, inputs); for samples of more axes (n, ...,
    inputs), whose last axis the product acts on, MatMul then Add of the
    biases (Gemm takes matrices only)."""
    w, b = g.product_weights(site, layer)
    if len(layer.input_shape) == 1:
        y = g.node("Gemm", [xs[0], w] + ([b] if b is not None else []), _output(site, "dense"))
    elif b is None:
        y = g.node("MatMul", [xs[0], w], _output(site, "dense"))
    else:
        y = g.node("Add", [g.node("MatMul", [xs[0], w], _output(site, "product")), b], _output(site, "dense"))
    return _own_activation(g, site, layer, y, "dense")


def _embedding(g: _Graph, site: Site, layer: Embedding, xs: list[str]) -> str:
    """Gather of the table's rows (axis 0) at the ids cast to int64 (whole
    numbers: the cast is exact): (n, *shape) -> (n, *shape, output_dim)."""
    table = g.weight(f"{site.index}.weight", layer.embeddings)
    ids = g.node("Cast", [xs[0]], _output(site, "ids"), to=_INT64)
    return g.node("Gather", [table, ids], _output(site, "embedding"), axis=0)


def _position_embedding(g: _Graph, site: Site, layer: PositionEmbedding, xs: list[str]) -> str:
    """The table's first ``length`` rows (length, features), an initializer,
    Expanded to the input's Shape (n, length, features): the same rows for
    every sample, whatever the input's values."""
    rows = g.weight(f"{site.index}.weight", layer.embeddings[:layer.input_shape[0]])
    shape = g.node("Shape", [xs[0]], _output(site, "shape"))
    return g.node("Expand", [rows, shape], _output(site, "position_embedding"))


def _attention(g: _Graph, site: Site, layer: MultiHeadAttention, xs: list[str]) -> str:
    """Keras's attention in opset 17's operators. Each projection is a
    MatMul by its kernel as a matrix (features, heads · dim) and an Add of
    its flat bias, Reshaped to (n, length, heads, dim) and Transposed to
    (n, heads, length, dim) (the keys to (n, heads, dim, length)); the
    scores q kᵀ a MatMul, times the float 1 / sqrt(key_dim) (as the numpy
    backend scales them); with the causal mask, a Where puts -inf above the
    diagonal (query i sees the keys j ≤ i); Softmax over the keys (axis
    -1), a MatMul with the values, the heads Transposed back and Reshaped
    side by side to (n, length, heads · value_dim), in (head, value) order,
    and the output projection (MatMul, Add). Dropout is inference's: none."""
    i = site.index
    query, value = xs[0], xs[1]
    key = xs[2] if len(xs) == 3 else value
    h, d, dv = layer.num_heads, layer.key_dim, layer.value_dim
    tq, tk = layer.input_shape[0][0], layer.input_shape[1][0]
    values = dict(zip(layer.params, layer.get_weights()))

    def project(p: str, x: str, length: int, per_head: int, perm: list[int]) -> str:
        kernel = values[f"W{p}"]
        y = g.node("MatMul", [x, g.weight(f"{i}.{p}.weight", kernel.reshape(kernel.shape[0], -1))],
                   _output(site, f"{p}.product" if layer.use_bias else p))
        if layer.use_bias:
            y = g.node("Add", [y, g.weight(f"{i}.{p}.bias", values[f"b{p}"].reshape(-1))], _output(site, p))
        shape = g.constant(f"{i}.{p}.shape", np.array([0, length, h, per_head], np.int64))
        heads = g.node("Reshape", [y, shape], _output(site, f"{p}.heads"))
        return g.node("Transpose", [heads], _output(site, f"{p}.by_head"), perm=perm)

    q = project("q", query, tq, d, [0, 2, 1, 3])  # (n, h, tq, d)
    k = project("k", key, tk, d, [0, 2, 3, 1])  # (n, h, d, tk)
    v = project("v", value, tk, dv, [0, 2, 1, 3])  # (n, h, tk, dv)
    scores = g.node("MatMul", [q, k], _output(site, "dot"))
    scale = g.weight(f"{i}.scale", np.array(1.0 / math.sqrt(d), np.float32))
    scores = g.node("Mul", [scores, scale], _output(site, "scores"))
    if layer.use_causal_mask:
        above = g.constant(f"{i}.causal_mask", np.triu(np.ones((tq, tk), bool), 1))
        minus_inf = g.weight(f"{i}.minus_inf", np.array(-np.inf, np.float32))
        scores = g.node("Where", [above, minus_inf, scores], _output(site, "masked"))
    probs = g.node("Softmax", [scores], _output(site, "probs"), axis=-1)
    heads = g.node("MatMul", [probs, v], _output(site, "heads"))  # (n, h, tq, dv)
    heads = g.node("Transpose", [heads], _output(site, "heads.by_position"), perm=[0, 2, 1, 3])
    shape = g.constant(f"{i}.concat_shape", np.array([0, tq, h * dv], np.int64))
    joined = g.node("Reshape", [heads, shape], _output(site, "concat"))
    wo = values["Wo"]
    y = g.node("MatMul", [joined, g.weight(f"{i}.o.weight", wo.reshape(-1, wo.shape[-1]))],
               _output(site, "o.product" if layer.use_bias else "attention"))
    if layer.use_bias:
        y = g.node("Add", [y, g.weight(f"{i}.o.bias", values["bo"])], _output(site, "attention"))
    return y


def _pads(sides: tuple[int, int, int, int]) -> list[int]:
    """ONNX's pads of an image's (top, bottom, left, right): the starts of
    both axes, then their ends."""
    top, bottom, left, right = sides
    return [top, left, bottom, right]


def _conv(g: _Graph, site: Site, layer: Conv2D, xs: list[str]) -> str:
    w, b = g.product_weights(site, layer)
    inputs = [xs[0], w] + ([b] if b is not None else [])
    extra = {}  # written where they are not ONNX's defaults: older models' files stay as they were
    if layer.dilation_rate != (1, 1):
        extra["dilations"] = list(layer.dilation_rate)
    if layer.groups != 1:
        extra["group"] = layer.groups
    y = g.node("Conv", inputs, _output(site, "conv"), kernel_shape=list(layer.kernel_size),
               strides=list(layer.stride), pads=_pads(layer.sides), **extra)
    return _own_activation(g, site, layer, y, "conv")


def _own_activation(g: _Graph, site: Site, layer: Dense | Conv2D, y: str, role: str) -> str:
    """The nodes of a Dense's or Conv2D's activation= after its product
    ``y``, named ``{i}.dense.relu`` and so on; ``y`` itself without one."""
    if layer.function is None:
        return y
    return _activation(g, site, layer.function, y, f"{role}.{layer.activation}")


#: the activations that are one operator of opset 17: (operator, the attribute taking the param)
_OPERATORS = {
    "tanh": ("Tanh", None), "sigmoid": ("Sigmoid", None), "relu": ("Relu", None),
    "leaky_relu": ("LeakyRelu", "alpha"), "elu": ("Elu", "alpha"), "softplus": ("Softplus", None),
}
_FRAC_1_SQRT_2 = 0.7071067811865476
_TWO_SQRT_2_OVER_PI = 1.5957691216057308


def _activation(g: _Graph, site: Site, function: ActivationFunction, x: str, role: str) -> str:
    """The nodes computing ``function`` of ``x``, the last (its output)
    named ``{i}.{role}``, those before it ``{i}.{role}.{part}``, its
    constants ``{i}.{role}.{name}``."""
    kind, param = function
    out = _output(site, role)
    if kind == "softmax":
        return g.node("Softmax", [x], out, axis=-1)
    if kind in _OPERATORS:
        op, attribute = _OPERATORS[kind]
        return g.node(op, [x], out, **({attribute: param} if attribute else {}))

    def part(name: str) -> str:
        return _output(site, f"{role}.{name}")

    def constant(name: str, value: float) -> str:
        return g.weight(f"{site.index}.{role}.{name}", np.array(value, np.float32))

    if kind == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x], part("sigmoid"))], out)
    if kind == "gelu_tanh":  # x σ(c (x + k x³)), c = 2 √(2/π)
        cube = g.node("Mul", [g.node("Mul", [x, x], part("square")), x], part("cube"))
        inner = g.node("Add", [x, g.node("Mul", [cube, constant("k", 0.044715)], part("kcube"))], part("inner"))
        argument = g.node("Mul", [inner, constant("c", _TWO_SQRT_2_OVER_PI)], part("arg"))
        return g.node("Mul", [x, g.node("Sigmoid", [argument], part("sigmoid"))], out)
    # gelu: x (1 + erf(x / √2)) / 2
    erf = g.node("Erf", [g.node("Mul", [x, constant("scale", _FRAC_1_SQRT_2)], part("scaled"))], part("erf"))
    cdf = g.node("Mul", [g.node("Add", [erf, constant("one", 1.0)], part("sum")), constant("half", 0.5)], part("cdf"))
    return g.node("Mul", [x, cdf], out)


def _function_of_layer(role: str) -> Callable:
    """A writer of an activation layer through :func:`_activation`."""
    def write(g: _Graph, site: Site, layer, xs: list[str]) -> str:
        return _activation(g, site, layer.function, xs[0], role)

    return write


def _maxpool(g: _Graph, site: Site, layer: MaxPool2D, xs: list[str]) -> str:
    return g.node("MaxPool", [xs[0]], _output(site, "maxpool"), kernel_shape=list(layer.pool_size),
                  strides=list(layer.stride), pads=_pads(layer.sides))


def _avgpool(g: _Graph, site: Site, layer: AveragePooling2D, xs: list[str]) -> str:
    """AveragePool whose means leave the padding out (count_include_pad=0), as the layer's."""
    return g.node("AveragePool", [xs[0]], _output(site, "avgpool"), kernel_shape=list(layer.pool_size),
                  strides=list(layer.stride), pads=_pads(layer.sides), count_include_pad=0)


def _global_pool(op: str) -> Callable:
    """A writer of GlobalMaxPool or GlobalAveragePool, which give (n, c, 1, 1),
    then Flatten(axis=1) to (n, c) unless the layer keeps the dimensions."""
    def write(g: _Graph, site: Site, layer, xs: list[str]) -> str:
        role = op.lower()
        if layer.keepdims:
            return g.node(op, xs, _output(site, role))
        pooled = g.node(op, xs, _output(site, f"{role}_images"))
        return g.node("Flatten", [pooled], _output(site, role), axis=1)

    return write


def _upsample(g: _Graph, site: Site, layer: UpSampling2D, xs: list[str]) -> str:
    """Resize by the scales (1, 1, sh, sw), nearest: with asymmetric
    coordinates and floor rounding, output pixel y reads y // sh, exactly."""
    scales = g.constant(f"{site.index}.scales", np.array([1, 1, *layer.size], np.float32))
    return g.node("Resize", [xs[0], "", scales], _output(site, "resize"), mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _zero_pad(g: _Graph, site: Site, layer: ZeroPadding2D, xs: list[str]) -> str:
    top, bottom, left, right = layer.sides
    pads = g.constant(f"{site.index}.pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
    return g.node("Pad", [xs[0], pads], _output(site, "pad"), mode="constant")


def _reshape(g: _Graph, site: Site, layer: Reshape, xs: list[str]) -> str:
    """Reshape to (0, *output_shape): 0 copies the batch dimension, so that
    it stays free (the layer's -1, if any, is resolved already)."""
    shape = g.constant(f"{site.index}.shape", np.array([0, *layer.output_shape], np.int64))
    return g.node("Reshape", [xs[0], shape], _output(site, "reshape"))


def _sum(g: _Graph, site: Site, xs: list[str], role: str) -> str:
    """x₁ + x₂ + ... as intricate adds them, left to right: Add for two
    tensors, Sum (which adds in order) for more."""
    return g.node("Add" if len(xs) == 2 else "Sum", xs, _output(site, role))


def _add(g: _Graph, site: Site, layer: Add, xs: list[str]) -> str:
    return _sum(g, site, xs, "add")


def _subtract(g: _Graph, site: Site, layer: Subtract, xs: list[str]) -> str:
    return g.node("Sub", xs, _output(site, "sub"))


def _multiply(g: _Graph, site: Site, layer: Multiply, xs: list[str]) -> str:
    """((x₁ · x₂) · x₃) · ...: one Mul per input after the first, the last
    named ``{i}.mul``, the others ``{i}.mul1``, ``{i}.mul2``, ..."""
    y = xs[0]
    for k, x in enumerate(xs[1:], start=1):
        y = g.node("Mul", [y, x], _output(site, "mul" if k == len(xs) - 1 else f"mul{k}"))
    return y


def _average(g: _Graph, site: Site, layer: Average, xs: list[str]) -> str:
    """(x₁ + ... + x_k) · (1/k), the float32 1/k times the sum as intricate
    computes it (dividing by k may round differently)."""
    total = _sum(g, site, xs, "sum")
    scale = g.weight(f"{site.index}.scale", np.array(1.0 / len(xs), np.float32))
    return g.node("Mul", [total, scale], _output(site, "average"))


def _concatenate(g: _Graph, site: Site, layer: Concatenate, xs: list[str]) -> str:
    return g.node("Concat", xs, _output(site, "concat"), axis=layer.axis)


def _batch_norm(g: _Graph, site: Site, layer: BatchNormalization, xs: list[str]) -> str:
    """BatchNormalization in inference for axis 1 (ONNX's channels); for
    another axis ((x - mean) · r) · gamma + beta, the numpy backend's
    operations, with constants of shape (c, 1, ...) that broadcast along it."""
    i = site.index
    mean, r, gamma, beta = batch_norm_terms(layer)
    if layer.batch_axis() == 1:
        inputs = [xs[0], g.weight(f"{i}.weight", gamma), g.weight(f"{i}.bias", beta),
                  g.weight(f"{i}.running_mean", mean), g.weight(f"{i}.running_var", layer.moving_variance)]
        return g.node("BatchNormalization", inputs, _output(site, "batchnorm"), epsilon=layer.epsilon)
    shape = (-1,) + (1,) * (len(layer.input_shape) - layer.batch_axis())
    y = g.node("Sub", [xs[0], g.weight(f"{i}.mean", mean.reshape(shape))], _output(site, "centred"))
    y = g.node("Mul", [y, g.weight(f"{i}.rstd", r.reshape(shape))], _output(site, "normalized"))
    y = g.node("Mul", [y, g.weight(f"{i}.weight", gamma.reshape(shape))], _output(site, "scaled"))
    return g.node("Add", [y, g.weight(f"{i}.bias", beta.reshape(shape))], _output(site, "batchnorm"))


def _layer_norm(g: _Graph, site: Site, layer: LayerNormalization, xs: list[str]) -> str:
    """LayerNormalization over the last axis (opset 17); a scale of ones
    without gamma, no B without beta."""
    i = site.index
    c = layer.channels
    inputs = [xs[0], g.weight(f"{i}.weight", layer.gamma if layer.scale else np.ones(c))]
    if layer.center:
        inputs.append(g.weight(f"{i}.bias", layer.beta))
    return g.node("LayerNormalization", inputs, _output(site, "layernorm"), axis=-1, epsilon=layer.epsilon)


def _operator(op: str, **attributes) -> Callable:
    """A writer of the one-input operator ``op``."""
    def write(g: _Graph, site: Site, layer, xs: list[str]) -> str:
        return g.node(op, xs, _output(site, op.lower()), **attributes)

    return write


def _output(site: Site, role: str) -> str:
    """The name of a node's output: ``3.dense``, ``3.dense.1`` for the
    second call of a shared layer."""
    name = f"{site.index}.{role}"
    return name if site.call == 0 else f"{name}.{site.call}"


NODES: dict[type, Callable] = {
    Dense: _dense,
    TanH: _operator("Tanh"),
    Sigmoid: _operator("Sigmoid"),
    ReLU: _operator("Relu"),
    Softmax: _operator("Softmax", axis=-1),
    LeakyReLU: _function_of_layer("leakyrelu"),
    ELU: _function_of_layer("elu"),
    GELU: _function_of_layer("gelu"),
    SiLU: _function_of_layer("silu"),
    Softplus: _function_of_layer("softplus"),
    Conv2D: _conv,
    MaxPool2D: _maxpool,
    AveragePooling2D: _avgpool,
    GlobalMaxPooling2D: _global_pool("GlobalMaxPool"),
    GlobalAveragePooling2D: _global_pool("GlobalAveragePool"),
    UpSampling2D: _upsample,
    ZeroPadding2D: _zero_pad,
    Flatten: _operator("Flatten", axis=1),
    Reshape: _reshape,
    Dropout: _operator("Identity"),  # inference: passes its input through
    Add: _add,
    Subtract: _subtract,
    Multiply: _multiply,
    Average: _average,
    Concatenate: _concatenate,
    BatchNormalization: _batch_norm,
    LayerNormalization: _layer_norm,
    Embedding: _embedding,
    PositionEmbedding: _position_embedding,
    MultiHeadAttention: _attention,
}


class LayerGraph:
    """What a layer's ``onnx_nodes`` hook (:meth:`Layer.onnx_nodes`) adds its
    nodes through: names made from the layer's index and a role, as the
    exporter's own writers name theirs."""

    def __init__(self, g: _Graph, site: Site):
        self._g, self._site = g, site

    def node(self, op: str, inputs: list[str], role: str, **attributes) -> str:
        """Add the operator ``op`` of opset 17 reading ``inputs`` (names);
        the name of its output, ``{layer index}.{role}``."""
        return self._g.node(op, list(inputs), _output(self._site, _role(role)), **attributes)

    def weight(self, role: str, value) -> str:
        """The float32 initializer ``{layer index}.{role}`` of ``value`` (once
        for a layer called at several nodes)."""
        return self._g.weight(f"{self._site.index}.{_role(role)}", np.asarray(value))

    def constant(self, role: str, value) -> str:
        """The initializer ``{layer index}.{role}`` of ``value`` in its own
        dtype (int64 for shapes and axes)."""
        return self._g.constant(f"{self._site.index}.{_role(role)}", np.asarray(value))


def _role(role) -> str:
    if not isinstance(role, str) or not role or not role.isprintable():
        raise ValueError(f"expected a role, a short string naming a tensor of the layer. Received: {role!r}")
    return role


def _hook(g: _Graph, site: Site, layer, xs: list[str]) -> str:
    """The writer of a layer of the user's: its ``onnx_nodes`` hook."""
    out = layer.onnx_nodes(LayerGraph(g, site), list(xs))
    if not isinstance(out, str) or out not in g.tensor_names() | set(xs):
        raise ValueError(f"expected {type(layer).__name__}.onnx_nodes to return the name of its output, a tensor "
                         f"it made. Received: {out!r}")
    return out


def onnx_model(model: "Model", name: str = "model"):
    """The checked ``onnx.ModelProto`` of ``model``."""
    if not isinstance(name, str) or not name or not encodes_as_utf8(name):
        raise ValueError(f"expected a non-empty string of characters (UTF-8 text, no lone surrogate) for the "
                         f"graph's name. Received: name={name!r}")
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    from .._version import __version__

    exported_layers(model, NODES, "ONNX", "onnx_nodes")
    folds = batch_norm_folds(model)
    g = _Graph(helper, numpy_helper, folds.products)
    input_names, output_names = io_names(model)
    tensors = {id(s): name for s, name in zip(model.inputs, input_names)}
    for site, node in exported_nodes(model):
        xs = [tensors[id(s)] for s in node.inputs]
        # a folded normalization's output is the product's: it writes nothing
        tensors[id(node.output)] = xs[0] if id(node) in folds.folded else \
            NODES.get(type(node.layer), _hook)(g, site, node.layer, xs)
    made = [tensors[id(s)] for s in model.outputs]
    _check_names(input_names, output_names, g.tensor_names() - set(made))
    g.rename(dict(zip(made, output_names)))
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", *s.shape])
         for n, s in zip(input_names, model.inputs)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", *s.shape])
         for n, s in zip(output_names, model.outputs)],
        initializer=g.initializers,
        doc_string="\n".join(architecture_lines(model)),
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="intricate-py", producer_version=__version__)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _check_names(inputs: list[str], outputs: list[str], internal: set[str]) -> None:
    """ValueError unless the graph's input and output names differ from
    each other and from the names of the tensors inside it."""
    seen: dict[str, str] = {}
    for kind, names in (("input", inputs), ("output", outputs)):
        for name in names:
            if name in internal or name in seen:
                other = f"an {seen[name]}" if name in seen else "a tensor inside the graph"
                raise ValueError(
                    f"cannot export to ONNX: expected input and output names that differ from each other and "
                    f"from the graph's tensors (named like '0.weight'). Received: the {kind} name {name!r}, "
                    f"also the name of {other} (rename the Input or the layer with name=...)"
                )
            seen[name] = kind


def export_onnx(model: "Model", path: Path, name: str = "model") -> Path:
    """Write ``model`` to the ONNX file ``path`` (replacing it atomically)."""
    atomic_write(path, onnx_model(model, name).SerializeToString())
    return path
