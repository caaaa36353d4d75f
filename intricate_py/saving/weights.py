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
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from . import spec
from .fileio import FormatError, PathLike, read_safetensors
from .files import fill_layers, model_tensors, refuse_stray, split_by_layer

if TYPE_CHECKING:
    from ..model import Model


def get_weights(model: "Model") -> list[np.ndarray]:
    """Every layer's :meth:`~intricate_py.layers.Layer.get_weights` (its
    non-trainable state included) in layer order, each array as the
    layer's attribute gives it: a Dense gives W (inputs, units) then b
    (units,); a Conv2D W (filters, in_channels, kh, kw) then b; a
    BatchNormalization gamma, beta, moving_mean, moving_variance. Copies,
    not views."""
    return [w for layer in model.layers for w in layer.get_weights()]


def set_weights(model: "Model", weights: Sequence) -> None:
    """Set every parameter from a list laid out as :func:`get_weights`
    gives it. All or nothing: ValueError naming the list entry and the
    layer when a length, a shape or a value does not fit."""
    if not model.built:
        raise ValueError("the model has no weights yet: give input_size (or call build) before set_weights")
    if isinstance(weights, Mapping):  # a PyTorch state_dict: its names and layouts
        load_weights(model, weights)
        return
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
        raise ValueError(f"expected a list of arrays, as get_weights() gives. Received: {type(weights).__name__}")
    expected = sum(len(layer.params) for layer in model.layers)
    if len(weights) != expected:
        raise ValueError(f"expected {expected} arrays, as get_weights() gives (each layer's get_weights(), in "
                         f"order). Received: {len(weights)}")
    per_layer, first = [], 0
    for i, layer in enumerate(model.layers):
        count = len(layer.params)
        per_layer.append(layer.checked_weights(weights[first : first + count], f"layer {i} ", first))
        first += count
    for layer, values in zip(model.layers, per_layer):
        layer.write_state(layer.input_shape, values)


def save_weights(model: "Model", path: PathLike) -> None:
    spec.write_file(path, model_tensors(model), {"kind": "weights", "dtype": model.dtype.name})


def load_weights(model: "Model", path: "PathLike | Mapping[str, Any]") -> None:
    """Set every parameter from a file of intricate-py (a model or its
    weights) or a PyTorch ``nn.Sequential`` state_dict, a file or the
    object itself (torch tensors or numpy arrays by name), matching tensors
    ``{position}.{weight|bias}`` to the model's layers by their positions
    in the equivalent torch.nn.Sequential (a layer with its own
    ``activation=`` takes two); a BatchNorm's ``num_batches_tracked`` is
    taken and ignored. All or nothing: FormatError naming the first layer
    that differs."""
    if isinstance(path, Mapping):
        tensors, path = state_dict_arrays(path), Path("the state_dict")
    else:
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


def state_dict_arrays(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A state_dict object (a PyTorch module's: torch tensors by name, or
    numpy arrays) as numpy arrays, copied; FormatError for a name that is
    not a string or a value that is not an array of numbers."""
    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise FormatError(f"the state_dict: expected tensors by names such as '0.weight'. Received: the key {name!r}")
        if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, on any device
            value = value.detach().cpu()
            if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
                value = value.float()
            value = value.numpy()
        try:
            array = np.array(value)
        except (TypeError, ValueError) as error:
            raise FormatError(f"the state_dict: {name!r} is not an array ({error})") from None
        if array.dtype.kind not in "iuf":
            raise FormatError(f"the state_dict: {name!r} holds {array.dtype} values, not numbers")
        arrays[name] = array
    return arrays
