"""Trained models out of Python: an ONNX file, or C source with the weights
baked in.

    model.export("net.onnx")                          # format="onnx", needs the `export` extra
    model.export("folder", format="c", name="net")    # folder/net.c and folder/net.h

Each format has one table from layer type to the function that writes that
layer (``onnx.NODES``, ``c.WRITERS``; a new layer type gets an entry in
each), so a layer the format does not know stops the export with a
ValueError naming it. Both formats compute in float32 whatever the model's
dtype, and both write each file atomically (a failed export leaves any
previous file whole).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..naming import batch_shape_text, shape_text as _shape_text

if TYPE_CHECKING:
    from ..layers import Layer
    from ..model import Model

__all__ = ["export_model"]


def export_model(model: "Model", path, format: str = "onnx", name: str | None = None) -> list[Path]:
    """Write ``model`` for inference outside intricate-py and return the
    paths written.

    ``format="onnx"``: ``path`` is the ``.onnx`` file (opset 17, a dynamic
    batch dimension ``n``); ``name`` names the graph. ``format="c"``:
    ``path`` is an existing folder that receives ``{name}.c`` and
    ``{name}.h`` (``name`` is a C identifier, "model" by default).
    """
    if format == "onnx":
        from .onnx import export_onnx

        return [export_onnx(model, Path(path), "model" if name is None else name)]
    if format == "c":
        from .c import export_c

        return export_c(model, Path(path), "model" if name is None else name)
    raise ValueError(f"expected format='onnx' or format='c'. Received: format={format!r}")


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
            known = ", ".join(sorted(t.__name__ for t in table))
            raise ValueError(
                f"cannot export layer {i} {layer!r} to {what}: the {what} exporter knows {known}. "
                f"Received: a {type(layer).__name__} layer"
            )
        for tensor, value in layer.state_dict().items():
            if not np.isfinite(value).all():
                raise ValueError(f"cannot export layer {i} {layer!r} to {what}: its {tensor} holds NaN or inf")
    return list(model.layers)


def architecture_lines(model: "Model") -> list[str]:
    """The layers and their output shapes, one line each, in ASCII."""
    lines = [f"input {batch_shape_text(model.input_shape)}"]
    for i, layer in enumerate(model.layers):
        lines.append(f"{i}: {layer_text(layer)} -> {batch_shape_text(layer.output_shape)}")
    return lines


def layer_text(layer: "Layer") -> str:
    """``repr(layer)`` in ASCII."""
    return repr(layer).replace("→", "->").replace("×", "x")


def shape_text(shape) -> str:
    return _shape_text(tuple(shape))
