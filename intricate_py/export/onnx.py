"""Models as ONNX files, built with the ``onnx`` package (the ``export``
extra): opset 17, float32, input ``x`` of shape (n, *input_shape) and
output ``y`` of shape (n, *output_shape) with a symbolic batch dimension
``n``, the weights as initializers. ``onnx.checker`` (with shape
inference) checks the model before it is written.

Layers map to single operators: Dense -> Gemm (W is (inputs, units), as
Gemm's B), Conv2D -> Conv and MaxPool2D -> MaxPool (PyTorch's and ONNX's
conventions agree: cross-correlation, padding that MaxPool ignores, floor
mode), Flatten -> Flatten(axis=1), Dropout -> Identity, the activations to
their operators.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sigmoid, Softmax, TanH
from ..saving import atomic_write
from . import architecture_lines, exported_layers

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
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attributes))
        return name


# Each writer adds layer ``i``'s nodes reading ``x`` and returns its output's name.
def _dense(g: _Graph, i: int, layer: Dense, x: str) -> str:
    w, b = g.weight(f"{i}.weight", layer.weights), g.weight(f"{i}.bias", layer.biases)
    return g.node("Gemm", [x, w, b], f"{i}.dense")


def _conv(g: _Graph, i: int, layer: Conv2D, x: str) -> str:
    w, b = g.weight(f"{i}.weight", layer.weights), g.weight(f"{i}.bias", layer.biases)
    return g.node("Conv", [x, w, b], f"{i}.conv", kernel_shape=list(layer.kernel_size),
                  strides=list(layer.stride), pads=list(layer.padding) * 2)


def _maxpool(g: _Graph, i: int, layer: MaxPool2D, x: str) -> str:
    return g.node("MaxPool", [x], f"{i}.maxpool", kernel_shape=list(layer.pool_size),
                  strides=list(layer.stride), pads=list(layer.padding) * 2)


def _operator(op: str, **attributes) -> Callable:
    def write(g: _Graph, i: int, layer, x: str) -> str:
        return g.node(op, [x], f"{i}.{op.lower()}", **attributes)

    return write


NODES: dict[type, Callable] = {
    Dense: _dense,
    TanH: _operator("Tanh"),
    Sigmoid: _operator("Sigmoid"),
    ReLU: _operator("Relu"),
    Softmax: _operator("Softmax", axis=-1),
    Conv2D: _conv,
    MaxPool2D: _maxpool,
    Flatten: _operator("Flatten", axis=1),
    Dropout: _operator("Identity"),  # inference: passes its input through
}


def onnx_model(model: "Model", name: str = "model"):
    """The checked ``onnx.ModelProto`` of ``model``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"expected a non-empty string for the graph's name. Received: name={name!r}")
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    from .. import __version__

    layers = exported_layers(model, NODES, "ONNX")
    g = _Graph(helper, numpy_helper)
    x = "x"
    for i, layer in enumerate(layers):
        x = NODES[type(layer)](g, i, layer, x)
    g.nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *model.input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", *model.output_shape])],
        initializer=g.initializers,
        doc_string="\n".join(architecture_lines(model)),
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="intricate-py", producer_version=__version__)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: "Model", path: Path, name: str = "model") -> Path:
    """Write ``model`` to the ONNX file ``path`` (replacing it atomically)."""
    atomic_write(path, onnx_model(model, name).SerializeToString())
    return path
