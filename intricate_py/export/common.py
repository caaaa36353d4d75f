"""What both exporters share: the nodes of a model in order with their
labels, the names of its inputs and outputs, and the architecture as text
for the files' comments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from ..naming import batch_shape_text, shape_text as _shape_text

if TYPE_CHECKING:
    from ..graph import Node, Symbol
    from ..layers import Layer
    from ..model import Model


def exported_layers(model: "Model", table: dict[type, Callable], what: str) -> list["Layer"]:
    """The model's layers after checking that it is built and that ``table``
    (the ``what`` exporter's) has a writer for each layer's exact type: a
    subclass may compute something else, so it is not taken for its base."""
    if not model.built:
        raise ValueError(
            f"cannot export {model!r} to {what}: its input shape is not known yet "
            "(give input_size, or call predict or fit once)"
        )
    for i, layer in enumerate(model.layers):
        if type(layer) not in table:
            known = known_layers(table)
            raise ValueError(
                f"cannot export layer {i} {layer!r} to {what}: the {what} exporter knows {known}. "
                f"Received: a {type(layer).__name__} layer"
            )
        for tensor, value in layer.state_dict().items():
            _check_float32(value, f"cannot export layer {i} {layer!r} to {what}: its {tensor}")
    return list(model.layers)


def _check_float32(value: np.ndarray, what: str) -> None:
    """ValueError ("``what`` holds ...") unless every value is finite once
    cast to float32, which both formats hold: a float64 model's 1e39 is
    finite, its float32 is inf (as loading checks values after the cast)."""
    if not np.isfinite(value).all():
        raise ValueError(f"{what} holds NaN or inf")
    with np.errstate(over="ignore"):
        cast = value.astype(np.float32)
    if not np.isfinite(cast).all():
        k = tuple(int(j) for j in np.argwhere(~np.isfinite(cast))[0])
        raise ValueError(f"{what} holds {value[k]} at index {k}, which does not fit float32 (magnitudes up to "
                         f"{np.finfo(np.float32).max:.4g}), the exported files' precision")


class Site(NamedTuple):
    """Where a node is in the exported model: ``index``, its layer's in
    ``model.layers`` (the layer's weights are named by it), and ``call``,
    which call of that layer the node is (0 for the first; only a shared
    layer has more)."""

    index: int
    call: int

    @property
    def label(self) -> str:
        """``3`` for the first call of layer 3, ``3.1`` for its second."""
        return str(self.index) if self.call == 0 else f"{self.index}.{self.call}"


def known_layers(table: dict[type, Callable]) -> str:
    """The layer types of ``table`` for messages: those of one input in
    alphabetical order, then the merge layers (of several inputs)."""
    single = sorted(t.__name__ for t in table if t.n_inputs == 1)
    merging = sorted(t.__name__ for t in table if t.n_inputs != 1)
    if not merging:
        return ", ".join(single)
    return f"{', '.join(single)}, and the merge layers {', '.join(merging)}"


def exported_nodes(model: "Model") -> list[tuple[Site, "Node"]]:
    """Each of ``model.plan.nodes`` in execution order, with its Site."""
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    calls: dict[int, int] = {}
    nodes = []
    for node in model.plan.nodes:
        key = id(node.layer)
        calls[key] = calls.get(key, -1) + 1
        nodes.append((Site(index[key], calls[key]), node))
    return nodes


def io_names(model: "Model") -> tuple[list[str], list[str]]:
    """The names of the exported inputs and outputs: ``x`` and ``y`` for a
    path of layers, else the model's input and output names."""
    if model.is_path:
        return ["x"], ["y"]
    return list(model.input_names), list(model.output_names)


def architecture_lines(model: "Model") -> list[str]:
    """The layers (``layer_text``) and their output shapes, one line each.
    A path lists its layers in order; a graph its inputs, its nodes (each
    with its layer's name and what it reads: a node's label or an input's
    name) and its outputs. Names are as given, which may not be ASCII."""
    if model.is_path:
        lines = [f"input {batch_shape_text(model.input_shape)}"]
        for i, layer in enumerate(model.layers):
            lines.append(f"{i}: {layer_text(layer)} -> {batch_shape_text(layer.output_shape)}")
        return lines
    sources = {id(s): repr(s.name) for s in model.inputs}
    lines = [f"input {s.name!r} {batch_shape_text(s.shape)}" for s in model.inputs]
    for site, node in exported_nodes(model):
        reads = ", ".join(sources[id(s)] for s in node.inputs)
        lines.append(f"{site.label}: {node.layer.name} {layer_text(node.layer)} <- {reads} "
                     f"-> {batch_shape_text(node.output.shape)}")
        sources[id(node.output)] = site.label
    for name, symbol in zip(model.output_names, model.outputs):
        lines.append(f"output {name!r} <- {sources[id(symbol)]} {batch_shape_text(symbol.shape)}")
    return lines


def sample_size(symbol: "Symbol") -> int:
    """The values of one sample of ``symbol``."""
    return int(np.prod(symbol.shape))


def layer_text(layer: "Layer") -> str:
    """``repr(layer)`` in ASCII."""
    return repr(layer).replace("→", "->").replace("×", "x")


def shape_text(shape) -> str:
    return _shape_text(tuple(shape))
