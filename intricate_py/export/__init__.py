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

A model is exported node by node (``model.plan.nodes``, in execution
order): a path of layers (``model.is_path``) keeps one input ``x`` and one
output ``y``; a graph names its inputs and outputs as the model does
(``model.input_names``, ``model.output_names``). A layer called at several
nodes (shared) has its weights written once, by its index in
``model.layers``; each node is labelled by that index and, after a shared
layer's first call, the call's number (``3``, then ``3.1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["export_model"]


def export_model(model: "Model", path, format: str = "onnx", name: str | None = None) -> list[Path]:
    """Write ``model`` for inference outside intricate-py and return the
    paths written.

    ``format="onnx"``: ``path`` is the ``.onnx`` file (opset 17, a dynamic
    batch dimension ``n``); ``name`` names the graph. It creates nothing but
    the file: its folder must exist, as for ``save``. ``format="c"``:
    ``path`` is a folder that receives ``{name}.c`` and ``{name}.h``
    (``name`` is a C identifier, "model" by default), created with the
    folders above it where they are missing; the two files are replaced
    together or not at all.
    """
    if format == "onnx":
        from .onnx import export_onnx

        return [export_onnx(model, Path(path), "model" if name is None else name)]
    if format == "c":
        from .c import export_c

        return export_c(model, Path(path), "model" if name is None else name)
    raise ValueError(f"expected format='onnx' or format='c'. Received: format={format!r}")
