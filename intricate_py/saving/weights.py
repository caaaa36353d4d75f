"""A model's weights as a list of arrays or a file, Keras's
get_weights / set_weights / save_weights / load_weights.

The list is in the layers' own layout, the one ``layer.weights`` and
``layer.biases`` have (Keras's for Dense: W is (inputs, units)); the files
are in PyTorch's layouts and names: the file of ``save_weights`` is the
state_dict of the equivalent ``torch.nn.Sequential`` (a Dense's ``weight``
is (units, inputs)), and ``load_weights`` reads such a state_dict saved by
``safetensors.torch.save_file``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .._checks import checked_values
from . import spec
from .fileio import PathLike, read_safetensors
from .files import fill_layers, model_tensors, refuse_stray, split_by_layer

if TYPE_CHECKING:
    from ..model import Model


def get_weights(model: "Model") -> list[np.ndarray]:
    """Every layer's parameters (its non-trainable state included) in layer
    order, each as ``layer.weights`` and ``layer.biases`` give it: a Dense
    gives W (inputs, units) then b (units,); a Conv2D W (filters,
    in_channels, kh, kw) then b. Copies, not views."""
    return [np.array(layer.backend.to_numpy(p.value)) for layer in model.layers for p in layer.params.values()]


def set_weights(model: "Model", weights: Sequence) -> None:
    """Set every parameter from a list laid out as :func:`get_weights`
    gives it. All or nothing: ValueError naming the list entry and the
    layer when a length, a shape or a value does not fit."""
    if not model.built:
        raise ValueError("the model has no weights yet: give input_size (or call build) before set_weights")
    slots = [(i, layer, name, tuple(p.value.shape)) for i, layer in enumerate(model.layers)
             for name, p in layer.params.items()]
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
        raise ValueError(f"expected a list of arrays, as get_weights() gives. Received: {type(weights).__name__}")
    if len(weights) != len(slots):
        raise ValueError(f"expected {len(slots)} arrays, as get_weights() gives (the weight and bias of each "
                         f"layer with parameters, in order). Received: {len(weights)}")
    per_layer: list[dict] = [{} for _ in model.layers]
    for k, ((i, layer, name, shape), value) in enumerate(zip(slots, weights)):
        per_layer[i][name] = checked_values(value, shape, model.dtype, f"layer {i} {layer!r} expects",
                                            f"{name} (weights[{k}])")
    for layer, values in zip(model.layers, per_layer):
        layer.write_state(layer.input_shape, values)


def save_weights(model: "Model", path: PathLike) -> None:
    spec.write_file(path, model_tensors(model), {"kind": "weights", "dtype": model.dtype.name})


def load_weights(model: "Model", path: PathLike) -> None:
    """Set every parameter from a file of intricate-py (a model or its
    weights) or a PyTorch ``nn.Sequential`` state_dict, matching tensors
    ``{position}.{weight|bias}`` to the model's layers by their positions
    in the equivalent torch.nn.Sequential (a layer with its own
    ``activation=`` takes two). All or nothing: FormatError naming the
    first layer that differs."""
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    if metadata is not None and metadata.get("format") == spec.FORMAT:
        spec.check_metadata(path, tensors, metadata, ("model", "weights"))
        tensors = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    if not model.built:
        raise ValueError("the model has no weights yet: give input_size (or call build) before load_weights")
    per_layer, rest = split_by_layer(tensors, model.layers)
    refuse_stray(rest, model.layers, per_layer, path)
    fill_layers(model.layers, per_layer, path)
