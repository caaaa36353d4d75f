"""Layers run as a chain in which a Dense and the activation after it are
one product: the activation in the product's epilogue on the way forward,
and its gradient folded into the next Dense's dY·Wᵀ product on the way
back. Worked out once for a list of layers; both backends run the same
chain, through the backend operations' epilogues."""

from __future__ import annotations

from typing import NamedTuple, Sequence

from ..backends import Array
from ..backends.base import ACTIVATIONS
from .activations import Activation
from .base import Layer
from .dense import Dense


class Link(NamedTuple):
    """A layer, the activation computed in its product (or None), and
    whether the next link's product applies that activation's gradient."""

    layer: Layer
    activation: Activation | None
    folded: bool


def _is_dense(layer: Layer | None) -> bool:
    return type(layer) is Dense  # a subclass may change forward or back_propagate


def links(layers: Sequence[Layer]) -> list[Link]:
    """The chain of ``layers``: each Dense followed by a TanH, Sigmoid or
    ReLU is paired with it."""
    result: list[Link] = []
    i = 0
    while i < len(layers):
        layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if _is_dense(layer) and isinstance(after, Activation) and after.kind in ACTIVATIONS:
            result.append(Link(layer, after, _is_dense(layers[i + 2]) if i + 2 < len(layers) else False))
            i += 2
        else:
            result.append(Link(layer, None, False))
            i += 1
    return result


def forward(chain: Sequence[Link], x: Array) -> Array:
    """The chain's outputs for a batch x."""
    for link in chain:
        if link.activation is None:
            x = link.layer.forward(x)
        else:
            x = link.activation.take(link.layer.forward(x, activation=link.activation.kind))
    return x


def back_propagate(chain: Sequence[Link], grad: Array) -> None:
    """From dE/d(the chain's outputs), every parameter's gradient; the
    first link's input gradient is not computed."""
    for i in range(len(chain) - 1, -1, -1):
        link = chain[i]
        if link.activation is not None and not link.folded:
            grad = link.activation.back_propagate(grad)
        if i == 0:
            link.layer.compute_gradients(grad)
            return
        before = chain[i - 1]
        if before.folded:  # this link is a Dense: fold the activation before it
            grad = link.layer.back_propagate(grad, activation_grad=(before.activation.kind, before.activation._y))
        else:
            grad = link.layer.back_propagate(grad)
