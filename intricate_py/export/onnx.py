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
Gemm's B), Conv2D -> Conv and MaxPool2D -> MaxPool (PyTorch's and ONNX's
conventions agree: cross-correlation, padding that MaxPool ignores, floor
mode), Flatten -> Flatten(axis=1), Reshape -> Reshape to (0, *shape) (0
keeps the batch dimension), Dropout -> Identity, the activations to their
operators; Add -> Add (Sum for more than two), Subtract -> Sub, Multiply ->
Mul (a chain of them for more than two), Average -> Add or Sum, then Mul by
1/k (as intricate computes it: the sum times the float 1/k),
Concatenate -> Concat on the layer's axis (which, as ONNX's, counts the
batch as axis 0 and -1 as the last).

Tensors are named ``{layer index}.{role}``, as in the library's files:
``3.weight``, ``3.bias`` once for a layer however many nodes call it, and
``3.dense`` for a node's output (``3.dense.1`` for a shared layer's second
call).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..layers import (Add, Average, Concatenate, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Multiply, ReLU, Reshape,
                      Sigmoid, Softmax, Subtract, TanH)
from ..naming import encodes_as_utf8
from ..saving import atomic_write
from .common import Site, architecture_lines, exported_layers, exported_nodes, io_names

if TYPE_CHECKING:
    from ..model import Model

OPSET = 17
#: The IR version of opset 17 (onnx 1.12), so that older runtimes read the files.
IR_VERSION = 8


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
    ``{layer index}.{role}``, as in the library's files."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []

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
    i = site.index
    w, b = g.weight(f"{i}.weight", layer.weights), g.weight(f"{i}.bias", layer.biases)
    return g.node("Gemm", [xs[0], w, b], _output(site, "dense"))


def _conv(g: _Graph, site: Site, layer: Conv2D, xs: list[str]) -> str:
    i = site.index
    w, b = g.weight(f"{i}.weight", layer.weights), g.weight(f"{i}.bias", layer.biases)
    return g.node("Conv", [xs[0], w, b], _output(site, "conv"), kernel_shape=list(layer.kernel_size),
                  strides=list(layer.stride), pads=list(layer.padding) * 2)


def _maxpool(g: _Graph, site: Site, layer: MaxPool2D, xs: list[str]) -> str:
    return g.node("MaxPool", [xs[0]], _output(site, "maxpool"), kernel_shape=list(layer.pool_size),
                  strides=list(layer.stride), pads=list(layer.padding) * 2)


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
    Conv2D: _conv,
    MaxPool2D: _maxpool,
    Flatten: _operator("Flatten", axis=1),
    Reshape: _reshape,
    Dropout: _operator("Identity"),  # inference: passes its input through
    Add: _add,
    Subtract: _subtract,
    Multiply: _multiply,
    Average: _average,
    Concatenate: _concatenate,
}


def onnx_model(model: "Model", name: str = "model"):
    """The checked ``onnx.ModelProto`` of ``model``."""
    if not isinstance(name, str) or not name or not encodes_as_utf8(name):
        raise ValueError(f"expected a non-empty string of characters (UTF-8 text, no lone surrogate) for the "
                         f"graph's name. Received: name={name!r}")
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    from .._version import __version__

    exported_layers(model, NODES, "ONNX")
    g = _Graph(helper, numpy_helper)
    input_names, output_names = io_names(model)
    tensors = {id(s): name for s, name in zip(model.inputs, input_names)}
    for site, node in exported_nodes(model):
        tensors[id(node.output)] = NODES[type(node.layer)](g, site, node.layer, [tensors[id(s)] for s in node.inputs])
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
