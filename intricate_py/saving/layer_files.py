"""Layer files: save a layer, load one into a new object or an existing one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .._checks import first_non_finite
from . import spec
from .fileio import FormatError, PathLike

if TYPE_CHECKING:
    from ..layers import Layer

#: Config entries that do not change what a layer computes: an existing
#: layer keeps its own when a file is loaded into it.
NOT_ARCHITECTURE = ("input_size", "input_shape", "weight_init", "bias_init", "seed")


# ---------------------------------------------------------------- saving
def refuse_non_finite(tensors: dict[str, np.ndarray], owner: Callable[[str], str]) -> None:
    """ValueError naming the tensor (and ``owner(name)``) unless every value
    is finite: files hold finite numbers only, in both directions."""
    for name, t in tensors.items():
        where = first_non_finite(t)
        if where is not None:
            raise ValueError(f"cannot save {owner(name)}: its tensor {name!r} holds {t[where]} at index "
                             f"{where}; files hold finite numbers only (nothing was written)")


def save_layer(layer: "Layer", path: PathLike) -> None:
    from ..layers.registry import file_entry

    entry = file_entry(layer)  # ValueError for a custom layer that is not registered
    tensors = layer.state_dict() if layer.built else {}
    refuse_non_finite(tensors, lambda name: repr(layer))
    dtype = layer.backend.dtype.name if layer.built else "float32"
    metadata = {"kind": "layer", "layer_type": entry["type"], "config": json.dumps(entry["config"]),
                "dtype": dtype}
    if layer.input_shape is not None:  # what the tensors do not say (an Embedding's ids, a sequence's length)
        metadata["input_shape"] = json.dumps(layer.input_shape)
    spec.write_file(path, tensors, metadata)


# ---------------------------------------------------------------- layers
def load_layer(path: PathLike, into: "Layer | None" = None) -> "Layer":
    """A new layer of the type the file names, or ``into`` filled from it."""
    from ..backends import NumpyBackend
    from ..layers.registry import layer_class

    path = Path(path)
    tensors, metadata = spec.read_file(path, "layer")
    kind = metadata.get("layer_type")
    if into is not None and kind != into.type_name and not (isinstance(kind, str) and layer_class(kind) is type(into)):
        raise FormatError(f"{path}: holds a {spec.clip(metadata.get('layer_type'))} layer, not {into.type_name}")
    layer = spec.make_layer({"type": metadata.get("layer_type"), "config": spec.field(metadata, "config", path)},
                            path)
    shape = spec.layer_input_shape(metadata, path)
    try:
        if shape is not None:
            layer.output_shape = layer.output_shape_for(shape)
            layer.input_shape = shape
        layer.load_state_dict(tensors, NumpyBackend(metadata["dtype"]))
    except ValueError as error:
        raise FormatError(f"{path}: {error}") from None
    return layer if into is None else _fill_layer(into, layer, path)


def _fill_layer(into: "Layer", loaded: "Layer", path: Path) -> "Layer":
    """Give ``into`` the parameters of ``loaded``, checking that they are the
    same layer (configuration and input shape)."""
    from ..backends import NumpyBackend

    differences = config_differences(loaded, into)
    if differences:
        raise FormatError(f"{path}: holds {loaded!r}, not {into!r}: {differences}")
    if not loaded.built:
        if into.params:
            raise FormatError(f"{path}: holds no weights for {into!r} (it was saved from an unbuilt "
                              f"{loaded.type_name})")
        return into
    try:
        if not into.built:
            into.build(loaded.input_shape, NumpyBackend(loaded.backend.dtype))
        into.load_state_dict(loaded.state_dict())
    except ValueError as error:
        raise FormatError(f"{path}: {error}") from None
    return into


def config_differences(loaded: "Layer", own: "Layer") -> str:
    """How the configurations of two layers differ, ignoring what does not
    change what they compute (initializers, Dropout seeds, input sizes)."""
    a, b = loaded.get_config(), own.get_config()
    keys = sorted((set(a) | set(b)) - set(NOT_ARCHITECTURE), key=str)
    return "; ".join(f"{k} {a.get(k, '(default)')} in the file, {b.get(k, '(default)')} here"
                     for k in keys if a.get(k) != b.get(k))


