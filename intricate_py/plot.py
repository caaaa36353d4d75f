"""Pictures of models, as Keras's ``keras.utils.plot_model`` draws them.

:func:`plot_model` draws one box per model input and one per node (a layer
called twice, shared weights, has two boxes), an arrow from each tensor to
each node that takes it, and marks the outputs. It needs the ``graphviz``
Python package (the optional extra ``plot``) and, except for ``.dot``
files, Graphviz's ``dot`` program.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .model import Model
from .naming import batch_shape_text
from .saving import atomic_write

if TYPE_CHECKING:
    import graphviz

    from .graph import Node

#: File suffixes and the Graphviz format each is rendered in.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".dot": "dot"}
#: Graphviz's directions: top to bottom, left to right, and their reverses.
RANKDIRS = ("TB", "LR", "BT", "RL")

_INPUT_STYLE = {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbeafe", "color": "#1e40af"}
_NODE_STYLE = {"shape": "box", "style": "rounded,filled", "fillcolor": "#f3f4f6", "color": "#374151"}
_OUTPUT_STYLE = {"peripheries": "2", "fillcolor": "#dcfce7", "color": "#166534"}


def plot_model(model: Model, path: str | os.PathLike, show_shapes: bool = True, rankdir: str = "TB") -> Path:
    """Draw ``model``'s graph to ``path`` and return the path.

    The format follows the suffix: ``.png``, ``.svg``, ``.pdf`` (rendered by
    Graphviz's ``dot``) or ``.dot`` (the graph's source, no ``dot`` needed).
    Each box names the layer and shows its type (``Dense(16→32)``), and with
    ``show_shapes`` the shape of its output (``(n, 32)``); outputs have a
    double border and name the output. ``rankdir`` is "TB" (top to bottom),
    "LR", "BT" or "RL". The file is replaced atomically.
    """
    path = Path(path)
    fmt = _format_of(path)
    if rankdir not in RANKDIRS:
        raise ValueError(f"expected rankdir as one of {', '.join(RANKDIRS)}. Received: rankdir={rankdir!r}")
    _check_model(model)
    graph = model_graph(model, show_shapes, rankdir)
    data = graph.source.encode("utf-8") if fmt == "dot" else _render(graph, fmt)
    atomic_write(path, data)
    return path


def model_graph(model: Model, show_shapes: bool = True, rankdir: str = "TB") -> "graphviz.Digraph":
    """``model``'s graph as a ``graphviz.Digraph`` (not yet rendered)."""
    graphviz = _graphviz()
    _check_model(model)
    graph = graphviz.Digraph(name=model.name, graph_attr={"rankdir": rankdir, "fontname": "Helvetica"},
                             node_attr={"fontname": "Helvetica", "fontsize": "11"},
                             edge_attr={"color": "#4b5563", "arrowsize": "0.7"})
    ids = _tensor_ids(model)
    marks = _output_marks(model)
    for symbol in model.inputs:
        lines = [symbol.name, "Input", *([batch_shape_text(symbol.shape)] if show_shapes else [])]
        _add_box(graph, graphviz, ids[id(symbol)], lines, _INPUT_STYLE, marks.get(id(symbol), []))
    calls = _call_labels(model.plan.nodes)
    for node, call in zip(model.plan.nodes, calls):
        lines = [node.layer.name + call, repr(node.layer),
                 *([batch_shape_text(node.output.shape)] if show_shapes else [])]
        _add_box(graph, graphviz, ids[id(node.output)], lines, _NODE_STYLE, marks.get(id(node.output), []))
        for symbol in node.inputs:
            graph.edge(ids[id(symbol)], ids[id(node.output)])
    return graph


def _format_of(path: Path) -> str:
    """The Graphviz format for ``path``'s suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"expected a path ending in one of {', '.join(FORMATS)}. "
                         f"Received: {str(path)!r} (suffix {path.suffix!r})")
    return fmt


def _check_model(model) -> None:
    """A Model whose graph is known: a path model needs its input size."""
    if not isinstance(model, Model):
        raise TypeError(f"expected an intricate_py Model. Received: {type(model).__name__} {model!r}")
    if not model.built:
        raise ValueError(f"cannot plot {model!r}: its input shape is not known yet, so neither are the shapes "
                         "(give input_size, as Model([...], input_size=...), or call build, predict or fit once)")


def _graphviz():
    """The graphviz Python package, or an ImportError that says how to get it."""
    try:
        import graphviz
    except ImportError:
        raise ImportError("plot_model needs the graphviz Python package, the optional extra 'plot': "
                          "pip install 'intricate-py[plot]' (and Graphviz's dot program: "
                          "on Debian, apt-get install graphviz)") from None
    return graphviz


def _render(graph, fmt: str) -> bytes:
    """``graph`` rendered by Graphviz's ``dot`` in ``fmt``."""
    graphviz = _graphviz()
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RuntimeError(f"plot_model needs Graphviz's dot program to write .{fmt} files, and it was not "
                           "found on PATH. Install Graphviz (on Debian: apt-get install graphviz; elsewhere: "
                           "https://graphviz.org/download/), or write a .dot file, which needs no dot") from None


def _tensor_ids(model: Model) -> dict[int, str]:
    """Graphviz node ids of the inputs and node outputs, by ``id`` of the symbol."""
    ids = {id(s): f"input_{k}" for k, s in enumerate(model.inputs)}
    ids.update({id(node.output): f"node_{i}" for i, node in enumerate(model.plan.nodes)})
    return ids


def _output_marks(model: Model) -> dict[int, list[str]]:
    """Each output tensor's output names (one tensor may be two outputs)."""
    marks: dict[int, list[str]] = {}
    for symbol, name in zip(model.outputs, model.output_names):
        marks.setdefault(id(symbol), []).append(name)
    return marks


def _call_labels(nodes: "list[Node]") -> list[str]:
    """`` (call 2 of 2)`` after the name of a shared layer's nodes, else ``""``."""
    totals: dict[int, int] = {}
    for node in nodes:
        totals[id(node.layer)] = totals.get(id(node.layer), 0) + 1
    seen: dict[int, int] = {}
    labels = []
    for node in nodes:
        key = id(node.layer)
        seen[key] = seen.get(key, 0) + 1
        labels.append(f" (call {seen[key]} of {totals[key]})" if totals[key] > 1 else "")
    return labels


def _add_box(graph, graphviz, node_id: str, lines: list[str], style: dict, outputs: list[str]) -> None:
    """A box of ``lines``; an output's box also names the output(s) and has a double border."""
    if outputs:
        lines = [*lines, "output " + ", ".join(repr(n) for n in outputs)]
        style = {**style, **_OUTPUT_STYLE}
    label = "\\n".join(graphviz.escape(line) for line in lines)
    graph.node(node_id, label=label, **style)
