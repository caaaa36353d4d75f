"""Where a model's parameters live: packed into a few device buffers.

Every trainable parameter is a view into one buffer of values, and its
gradient a view into one buffer of gradients, so an optimizer updates a
whole model in one operation (one dispatch on the GPU). Non-trainable
state (moving statistics) is packed into a third buffer that no optimizer
sees. Snapshots copy the values and the state together: what EarlyStopping
and fit's rollback put back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .backends import Array, Backend
from .layers import Parameter
from .layers.base import Workspace

if TYPE_CHECKING:
    from .layers import Layer

#: Each slot starts on a multiple of this many elements (aligned vec4 reads).
ALIGN = 16


def _slots(shapes: list[tuple[int, ...]]) -> tuple[list[int], int]:
    """Each shape's offset in a packed buffer, and the buffer's size."""
    offsets, total = [], 0
    for shape in shapes:
        offsets.append(total)
        total += -(-math.prod(shape) // ALIGN) * ALIGN
    return offsets, total


def packed_arrays(backend: Backend, shapes: list[tuple[int, ...]]) -> list[Array]:
    """Arrays of ``shapes`` (zeros), views of one buffer laid out as a store's."""
    offsets, total = _slots(shapes)
    flat = backend.zeros((total,))
    return [backend.view(flat, offset, shape) for offset, shape in zip(offsets, shapes)]


def _packed(backend: Backend, params: list[Parameter], with_grads: bool) -> tuple[Array | None, Array | None, list[int]]:
    """One buffer of every ``params`` value (and one of their gradients),
    each parameter now a view of it; and the parameters' offsets."""
    offsets, total = _slots([tuple(p.value.shape) for p in params])
    if not params:
        return None, None, offsets
    values = backend.zeros((total,))
    grads = backend.zeros((total,)) if with_grads else None
    for p, offset in zip(params, offsets):
        packed = backend.view(values, offset, p.value.shape)
        backend.copy(p.value, packed)
        p.value = packed
        if grads is not None:
            p.grad = backend.view(grads, offset, p.value.shape)
    return values, grads, offsets


class Snapshot(list):
    """Device copies of a store's values and state, and the backend they are on."""

    def __init__(self, arrays: list[Array], backend: Backend):
        super().__init__(arrays)
        self.backend = backend


class ParameterStore:
    """The packed parameters and state of ``layers`` on ``backend``.

    ``flat``: the one Parameter an optimizer updates (values and gradients
    of every trainable parameter), None for a model without any.
    """

    def __init__(self, backend: Backend, layers: list["Layer"]):
        self.backend = backend
        self.parameters = [p for layer in layers for p in layer.params.values() if p.trainable]
        self.state = [p for layer in layers for p in layer.params.values() if not p.trainable]
        values, grads, self._offsets = _packed(backend, self.parameters, with_grads=True)
        self.flat = Parameter("parameters", values, grads) if values is not None else None
        self.state_flat, _, _ = _packed(backend, self.state, with_grads=False)
        # what each layer holds now, to tell when another model took it over
        self._held = [(layer.params, name, p, p.value) for layer in layers for name, p in layer.params.items()]
        Workspace.invalidate()  # recordings bound the arrays these replace

    def current(self) -> bool:
        """Whether every layer still holds these parameters, each a view of
        this store (a layer shared with another model that packed it since,
        or moved it to another device, is not)."""
        return all(params.get(name) is p and p.value is view for params, name, p, view in self._held)

    def views(self, packed: Array) -> list[Array]:
        """Views of an array packed as the values (optimizer state), one per
        trainable parameter."""
        return [self.backend.view(packed, o, p.value.shape) for o, p in zip(self._offsets, self.parameters)]

    def parts(self) -> list[list[int]]:
        """For ``flat``, the size of each trainable parameter's slot in it
        (its padding, zeros, included), in order: what an optimizer's
        ``clipnorm`` clips one by one. Empty without parameters."""
        if self.flat is None:
            return []
        ends = self._offsets[1:] + [self.flat.value.size]
        return [[end - start for start, end in zip(self._offsets, ends)]]

    def arrays(self) -> list[Array]:
        """The live buffers a snapshot copies: values, then state."""
        return [a for a in (self.flat.value if self.flat is not None else None, self.state_flat) if a is not None]

    def snapshot(self, into: Snapshot | None = None) -> Snapshot:
        """Device copies of every value and state (into ``into``, a former
        snapshot of this store, when given): on the GPU no readback."""
        live = self.arrays()
        if into is None:
            into = Snapshot([self.backend.empty(a.shape) for a in live], self.backend)
        for a, copy in zip(live, into):
            self.backend.copy(a, copy)
        return into

    def restore(self, snapshot: Snapshot) -> None:
        """Put back the values and state of :meth:`snapshot` (bit for bit)."""
        for a, copy in zip(self.arrays(), snapshot):
            self.backend.copy(copy, a)

    def fits(self, snapshot: Snapshot | None) -> bool:
        """Whether ``snapshot`` was taken of a store of these sizes on this backend."""
        live = self.arrays()
        return isinstance(snapshot, Snapshot) and snapshot.backend is self.backend and len(snapshot) == len(live) \
            and all(s.shape == a.shape for s, a in zip(snapshot, live))
