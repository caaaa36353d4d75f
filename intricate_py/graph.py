"""Graphs of layer calls, as Keras's functional API builds them.

``Input(shape)`` gives a symbolic tensor; calling a layer on symbolic
tensors checks their shapes right there (a ValueError names the layer, the
tensors' producers and their shapes), records a :class:`Node` and returns
the node's symbolic output. :func:`graph_nodes` then orders the nodes a
model's outputs depend on.

The order is creation order: a node is always made after the nodes that
make its inputs, so creation order is an order in which every node comes
after its inputs, and it is fixed by the code that built the graph (initial
weights, tensor names and Dropout keys follow it).
"""

from __future__ import annotations

import itertools
from typing import Sequence

from typing import TYPE_CHECKING

from . import _checks
from .naming import batch_shape_text, checked_name, unique_name

if TYPE_CHECKING:
    from .layers import Layer

Shape = tuple[int, ...]

#: Serial numbers of symbols and nodes, in creation order.
_SERIALS = itertools.count()


class Symbol:
    """A symbolic tensor: a batch of samples of ``shape`` that an ``Input``
    stands for or a layer call will compute. ``node`` is the call that
    makes it (None for an Input), ``name`` the Input's or the layer's."""

    __slots__ = ("shape", "node", "name", "serial")

    def __init__(self, shape: Shape, node: "Node | None", name: str):
        self.shape, self.node, self.name = shape, node, name
        self.serial = next(_SERIALS)

    @property
    def is_input(self) -> bool:
        return self.node is None

    def source(self) -> str:
        """Where the tensor comes from, for messages: ``the input 'image'`` or
        ``dense_1 Dense(64→10)``."""
        if self.node is None:
            return f"the input {self.name!r}"
        return f"{self.name} {self.node.layer!r}"

    def __repr__(self) -> str:
        return f"<Symbol {self.name}: {batch_shape_text(self.shape)}>"


class Node:
    """One call of a layer on symbolic inputs, and its symbolic output."""

    __slots__ = ("layer", "inputs", "output", "serial")

    def __init__(self, layer: "Layer", inputs: list[Symbol], output_shape: Shape):
        self.layer, self.inputs = layer, inputs
        self.serial = next(_SERIALS)
        self.output = Symbol(output_shape, self, layer.name)

    def __repr__(self) -> str:
        return f"Node({self.layer.name}: {', '.join(s.name for s in self.inputs)})"


def Input(shape, name: str | None = None) -> Symbol:
    """A model input of per-sample ``shape`` (an int for vectors, or a
    tuple: (channels, height, width) for images), named ``name`` (by
    default ``input_layer``, ``input_layer_1``, ...): the name that fit,
    evaluate and predict take its data by in a dict."""
    return Symbol(as_shape(shape, "shape"), None, unique_name("input_layer") if name is None else checked_name(name))


def as_shape(size, what: str = "input_size") -> Shape:
    """A per-sample shape from an int or a sequence of positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        return (_checks.positive_int(size, what),)
    try:
        shape = tuple(size)
    except TypeError:
        raise ValueError(f"expected {what} as a positive integer or a shape tuple. Received: {size!r}") from None
    if not shape:
        raise ValueError(f"expected {what} as a positive integer or a shape tuple. Received: ()")
    for s in shape:
        _checks.positive_int(s, what)
    return tuple(int(s) for s in shape)


def is_symbolic(inputs) -> bool:
    """Whether ``inputs`` is a symbolic tensor or a list of them."""
    if isinstance(inputs, Symbol):
        return True
    return isinstance(inputs, (list, tuple)) and bool(inputs) and all(isinstance(s, Symbol) for s in inputs)


def call_layer(layer: "Layer", inputs) -> Symbol:
    """``layer`` applied to symbolic ``inputs``: its output shape inferred
    now, a new node recorded, its symbolic output returned."""
    symbols = [inputs] if isinstance(inputs, Symbol) else list(inputs)
    if layer.n_inputs == 1 and len(symbols) != 1:
        raise ValueError(f"{layer.name} {layer!r} takes one input. Received: a list of {len(symbols)}")
    if layer.n_inputs is None and isinstance(inputs, Symbol):
        raise ValueError(f"{layer.name} {layer!r} takes a list of inputs, as [a, b]. Received: one tensor")
    shape = symbols[0].shape if layer.n_inputs == 1 else tuple(s.shape for s in symbols)
    return add_node(layer, symbols, shape, f"{layer.name} ", f". Received: {_sources(symbols)}")


def add_node(layer: "Layer", symbols: list[Symbol], shape, before: str, after: str) -> Symbol:
    """The node of ``layer`` on ``symbols`` (whose per-sample shapes
    ``shape`` holds); if the layer cannot take them, a ValueError that
    says ``before``, the layer and what is wrong, then ``after``."""
    try:
        output_shape = layer.infer(shape)
    except _checks.TooLarge:
        raise
    except ValueError as error:
        raise ValueError(f"{before}{layer!r} {error}{after}") from None
    if layer.input_shape is None:
        layer.input_shape = shape
    layer.output_shape = output_shape
    return Node(layer, symbols, output_shape).output


def _sources(symbols: Sequence[Symbol]) -> str:
    return ", ".join(f"{batch_shape_text(s.shape)} from {s.source()}" for s in symbols)


def graph_nodes(inputs: list[Symbol], outputs: list[Symbol]) -> list[Node]:
    """The nodes ``outputs`` depend on, in creation order; ValueError when
    an output depends on an Input that is not among ``inputs``."""
    given = {id(s) for s in inputs}
    seen: dict[int, Node] = {}
    stack = list(outputs)
    while stack:
        symbol = stack.pop()
        if symbol.node is None:
            if id(symbol) not in given:
                raise ValueError(
                    f"expected every input the outputs depend on among the model's inputs. Received: "
                    f"the outputs depend on the input {symbol.name!r} {batch_shape_text(symbol.shape)}, "
                    f"which is not in inputs={[s.name for s in inputs]}"
                )
            continue
        if id(symbol.node) not in seen:
            seen[id(symbol.node)] = symbol.node
            stack.extend(symbol.node.inputs)
    return sorted(seen.values(), key=lambda node: node.serial)


def as_symbols(value, what: str) -> list[Symbol]:
    """A symbolic tensor, or a list, tuple or dict of them, as a list."""
    items = list(value.values()) if isinstance(value, dict) else [value] if isinstance(value, Symbol) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(s, Symbol) for s in items):
        raise ValueError(f"expected {what} as a symbolic tensor (from Input or a layer call) or a list of them. "
                         f"Received: {what}={value!r}")
    return list(items)
