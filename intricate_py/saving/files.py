"""Layer and model files: save, load into a new object, load into an
existing one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import spec
from .fileio import FormatError, PathLike

if TYPE_CHECKING:
    from ..layers import Layer
    from ..model import Model

#: Config entries that do not change what a layer computes: an existing
#: layer keeps its own when a file is loaded into it.
NOT_ARCHITECTURE = ("input_size", "input_shape", "weight_init", "bias_init", "seed")
#: optimizer state holding sums or averages of squares: never negative
NON_NEGATIVE_STATE = ("sum_sq", "v")


# ---------------------------------------------------------------- saving
def refuse_non_finite(tensors: dict[str, np.ndarray], owner: Callable[[str], str]) -> None:
    """ValueError naming the tensor (and ``owner(name)``) unless every value
    is finite: files hold finite numbers only, in both directions."""
    from ..layers.base import first_non_finite

    for name, t in tensors.items():
        where = first_non_finite(t)
        if where is not None:
            raise ValueError(f"cannot save {owner(name)}: its tensor {name!r} holds {t[where]} at index "
                             f"{where}; files hold finite numbers only (nothing was written)")


def save_layer(layer: "Layer", path: PathLike) -> None:
    tensors = layer.state_dict() if layer.built else {}
    refuse_non_finite(tensors, lambda name: repr(layer))
    dtype = layer.backend.dtype.name if layer.built else "float32"
    spec.write_file(path, tensors, {"kind": "layer", "layer_type": layer.type_name,
                                    "config": json.dumps(layer.get_config()), "dtype": dtype})


def model_tensors(model: "Model") -> dict[str, np.ndarray]:
    """Every layer's tensors as ``{layer index}.{name}``, as torch.nn.Sequential names them."""
    if not model.built:
        raise ValueError("the model has no weights yet: give input_size or train it first")
    tensors = {f"{i}.{name}": t for i, layer in enumerate(model.layers) for name, t in layer.state_dict().items()}
    refuse_non_finite(tensors, lambda name: _layer_text(model, name))
    return tensors


def _layer_text(model: "Model", name: str) -> str:
    i = int(name.split(".")[0])
    return f"layer {i} {model.layers[i]!r}"


def architecture(model: "Model") -> dict[str, str]:
    """The metadata that describes ``model``: a path as a list of layers
    and one input shape (the files of every version); a graph as its
    layers (with their names) and its wiring."""
    if model.is_path:
        return {"architecture": json.dumps([{"type": layer.type_name, "config": layer.get_config()}
                                            for layer in model.layers]),
                "input_shape": json.dumps(list(model.inputs[0].shape))}
    return {"architecture": json.dumps([{"type": layer.type_name, "config": layer.get_config(), "name": layer.name}
                                        for layer in model.layers]),
            "graph": json.dumps(wiring(model))}


def wiring(model: "Model") -> dict:
    """How a graph model's nodes connect: ``{"inputs": [{"name", "shape"}],
    "nodes": [{"layer": index, "inputs": [["input", k] or ["node", j], ...]}],
    "outputs": [["node", j], ...]}``, nodes in the model's order."""
    plan = model.plan
    layer_index = {id(layer): i for i, layer in enumerate(model.layers)}
    refs = {id(s): ["input", k] for k, s in enumerate(model.inputs)}
    refs.update({id(node.output): ["node", j] for j, node in enumerate(plan.nodes)})
    return {
        "inputs": [{"name": s.name, "shape": list(s.shape)} for s in model.inputs],
        "nodes": [{"layer": layer_index[id(node.layer)], "inputs": [refs[id(s)] for s in node.inputs]}
                  for node in plan.nodes],
        "outputs": [refs[id(s)] for s in model.outputs],
    }


def _spec(obj) -> dict:
    return {"type": type(obj).__name__, "config": obj.get_config()}


def save_model(model: "Model", path: PathLike, include_optimizer: bool = False) -> None:
    tensors = model_tensors(model)
    metadata = {"kind": "model", **architecture(model), "dtype": model.dtype.name}
    if include_optimizer:
        optimizer = model.optimizer
        if optimizer is None:
            raise ValueError("include_optimizer=True needs a model that has been trained with fit")
        state = {}  # per parameter (the model packs it into one buffer per name)
        for name, packed in (optimizer.state[0].items() if optimizer.state else ()):
            for i, view in enumerate(model.store.views(packed)):
                state[f"optimizer.{i}.{name}"] = model.backend.to_numpy(view)
        refuse_non_finite(state, lambda name: f"the state of {optimizer!r}")
        tensors.update(state)
        metadata["optimizer"] = json.dumps({**_spec(optimizer), "iterations": optimizer.iterations})
        loss = model.loss
        if isinstance(loss, (dict, list, tuple)):  # by output: every output's, None for those without
            loss = {"outputs": [None if one is None else _spec(one) for one in model.output_losses()]}
        metadata["loss"] = json.dumps(loss if isinstance(loss, dict) else _spec(loss))
        if model.loss_weights is not None:
            metadata["loss_weights"] = json.dumps(model.output_weights(model.output_losses()))
        metadata["shuffle_state"] = json.dumps(model.shuffle_state)
    spec.write_file(path, tensors, metadata)


# ---------------------------------------------------------------- layers
def load_layer(path: PathLike, into: "Layer | None" = None) -> "Layer":
    """A new layer of the type the file names, or ``into`` filled from it."""
    from ..backends import NumpyBackend

    path = Path(path)
    tensors, metadata = spec.read_file(path, "layer")
    if into is not None and metadata.get("layer_type") != into.type_name:
        raise FormatError(f"{path}: holds a {spec.clip(metadata.get('layer_type'))} layer, not {into.type_name}")
    layer = spec.make_layer({"type": metadata.get("layer_type"), "config": spec.field(metadata, "config", path)},
                            path)
    try:
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


# ---------------------------------------------------------------- models
def load_model(path: PathLike, device: Any, dtype: str | None, model_class: type) -> "Model":
    """A new ``model_class`` (Model) as the file describes it, on ``device``.
    Everything is checked against the tensors actually in the file before a
    parameter is made: each layer's tensors are read, checked against its
    configuration and placed, and a layer with parameters but no tensors is
    refused, so that the model never allocates more than the file holds."""
    from ..backends import select_backend

    path = Path(path)
    tensors, metadata = spec.read_file(path, "model")
    entries = spec.architecture(metadata, path)
    graph = spec.graph(metadata, path, len(entries)) if "graph" in metadata else None
    shape = None if graph is not None else spec.input_shape(metadata, path)
    layers = [spec.make_layer(entry, path, f"layer {i}: ") for i, entry in enumerate(entries)]
    backend = select_backend(device, dtype or metadata["dtype"])
    per_layer, rest = split_by_layer(tensors, layers)
    fill_layers(layers, per_layer, path, backend)
    try:
        if graph is None:
            model = model_class(layers, input_size=shape, device=backend, dtype=backend.dtype.name)
        else:
            inputs, outputs = _rebuild_graph(graph, layers)
            model = model_class(inputs=inputs, outputs=outputs, device=backend, dtype=backend.dtype.name)
    except (ValueError, TypeError, OverflowError) as error:
        raise FormatError(f"{path}: the architecture does not build ({error})") from None
    for i, layer in enumerate(layers):  # a custom layer whose parameters are not in the file
        if layer.params and not per_layer[i]:
            raise FormatError(f"{path}: {_missing(i, layer)}")
    if "optimizer" in metadata:
        restore_training(model, rest, metadata, path)
    refuse_stray(rest, layers, per_layer, path)
    return model


def _rebuild_graph(graph: dict, layers: list) -> tuple[list, list]:
    """The inputs and outputs of the wiring ``graph`` (checked by
    spec.graph), each node made by calling its layer again."""
    from ..graph import Input

    symbols = {("input", k): Input(tuple(entry["shape"]), name=entry["name"])
               for k, entry in enumerate(graph["inputs"])}
    for j, node in enumerate(graph["nodes"]):
        layer = layers[node["layer"]]
        args = [symbols[tuple(ref)] for ref in node["inputs"]]
        symbols[("node", j)] = layer(args if layer.n_inputs is None else args[0])
    inputs = [symbols[("input", k)] for k in range(len(graph["inputs"]))]
    return inputs, [symbols[tuple(ref)] for ref in graph["outputs"]]


def split_by_layer(tensors: dict[str, np.ndarray], layers: list) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Tensors named ``{layer index}.{name}`` by layer (as ``{name}``), and the rest."""
    per_layer: list[dict[str, np.ndarray]] = [{} for _ in layers]
    rest = {}
    for name, t in tensors.items():
        i = _layer_index(name)
        if i is not None and i < len(layers):
            per_layer[i][name.partition(".")[2]] = t
        else:
            rest[name] = t
    return per_layer, rest


def _layer_index(name: str) -> int | None:
    """i for a tensor named "{i}.{something}" (no sign, no leading zero)."""
    head, _, tail = name.partition(".")
    if tail and len(head) <= 18 and head.isascii() and head.isdigit() and head == str(int(head)):
        return int(head)
    return None


def _holds_tensors(layer: "Layer") -> bool:
    return bool(layer.params or type(layer).file_tensors)


def fill_layers(layers: list, per_layer: list[dict], path: Path, backend=None) -> None:
    """Check every layer's tensors, then write them all (all or nothing);
    unbuilt layers are built on ``backend``."""
    staged = []
    for i, (layer, own) in enumerate(zip(layers, per_layer)):
        if not own and _holds_tensors(layer):
            raise FormatError(f"{path}: {_missing(i, layer)}{alignment_hint(layers, per_layer)}")
        try:
            staged.append(layer.check_state(own, backend.dtype if backend is not None else None))
        except ValueError as error:
            raise FormatError(f"{path}: layer {i}: {error}{alignment_hint(layers, per_layer)}") from None
    for layer, (shape, values) in zip(layers, staged):
        layer.write_state(shape, values, backend)


def _missing(i: int, layer: "Layer") -> str:
    names = sorted(layer.file_shapes()) if layer.params else sorted(type(layer).file_tensors)
    return f"layer {i} {layer!r} holds parameters, but the file has no tensors for it " \
           f"(expected {', '.join(f'{i}.{n}' for n in names)})"


def alignment_hint(layers: list, per_layer: list[dict], stray: tuple = ()) -> str:
    """When the layers holding parameters sit at other positions in the
    file than in the model, a sentence saying so."""
    ours = [i for i, layer in enumerate(layers) if _holds_tensors(layer)]
    theirs = sorted({i for i, own in enumerate(per_layer) if own} | set(stray))
    if ours == theirs:
        return ""
    return (f". The layers with parameters are at positions {ours} in this model and {theirs} in the file: "
            "in a torch.nn.Sequential every module takes a position (activations, Dropout and Flatten too), "
            "so both must list the same layers in the same order")


def refuse_stray(rest: dict, layers: list, per_layer: list[dict], path: Path) -> None:
    if not rest:
        return
    names = sorted(rest)
    numbered = [i for i in map(_layer_index, names) if i is not None]
    if numbered:
        hint = alignment_hint(layers, per_layer, tuple(numbered))
        where = f" (this model's layers are 0 to {len(layers) - 1}{hint})"
    else:
        where = " (tensors are named '{layer index}.{weight|bias}', as in the state_dict of a torch.nn.Sequential)"
    raise FormatError(f"{path}: tensors that no layer holds: {names[:5]}{where}")


def restore_training(model: "Model", rest: dict[str, np.ndarray], metadata: dict[str, str], path: Path) -> None:
    """Give ``model`` the file's optimizer (with its state), loss and
    shuffling state, taking the optimizer's tensors out of ``rest``."""
    from ..layers.base import checked_values

    optimizer, iterations = spec.optimizer(metadata, path)
    loss = spec.loss(metadata, path, model.output_names)
    weights = spec.loss_weights(metadata, path, len(model.outputs))
    shuffle = spec.shuffle_state(metadata, path)
    backend = model.backend
    optimizer.bind(backend, [model.store.flat] if model.store.flat is not None else [])
    staged = []
    for name, packed in (optimizer.state[0].items() if optimizer.state else ()):
        for i, (param, view) in enumerate(zip(model.parameters, model.store.views(packed))):
            key = f"optimizer.{i}.{name}"
            if key not in rest:
                raise FormatError(f"{path}: no tensor {key!r} for the state of {type(optimizer).__name__}")
            try:
                value = checked_values(rest.pop(key), tuple(param.value.shape), backend.dtype,
                                       f"the state of {type(optimizer).__name__} expects", repr(key))
            except ValueError as error:
                raise FormatError(f"{path}: {error}") from None
            if name in NON_NEGATIVE_STATE and (value < 0).any():
                raise FormatError(f"{path}: {key!r} holds negative values; {name} sums squares and is never "
                                  "negative")
            staged.append((view, value))
    for view, value in staged:
        backend.write(view, value)
    optimizer.iterations = iterations
    model.optimizer, model.loss, model.loss_weights = optimizer, loss, weights
    model.shuffle_state = shuffle


def load_model_into(model: "Model", path: PathLike) -> "Model":
    """Fill ``model`` from a model file: the same architecture (layer types
    and configurations, input shapes, connections) or FormatError, and
    ``model`` unchanged unless every check passes. The file's optimizer
    state, if any, comes too."""
    path = Path(path)
    loaded = load_model(path, model.backend, model.dtype.name, type(model))
    if len(loaded.layers) != len(model.layers):
        raise FormatError(f"{path}: holds a model of {len(loaded.layers)} layers, this one has {len(model.layers)}")
    if model.built and model.input_shape != loaded.input_shape:
        raise FormatError(f"{path}: holds a model for inputs of shape {loaded.input_shape}, "
                          f"this one takes {model.input_shape}")
    for i, (theirs, ours) in enumerate(zip(loaded.layers, model.layers)):
        differences = config_differences(theirs, ours) if theirs.type_name == ours.type_name else "another type"
        if not differences and ours.input_shape not in (None, theirs.input_shape):
            differences = f"inputs of shape {theirs.input_shape} in the file, {ours.input_shape} here"
        if differences:
            raise FormatError(f"{path}: layer {i} is {theirs!r} in the file, {ours!r} here ({differences})")
    if model.built and not model.is_path and _connections(wiring(model)) != _connections(wiring(loaded)):
        raise FormatError(f"{path}: holds a model whose layers are connected otherwise than this one's")
    if not model.built:  # the same layers and input sizes: this builds
        try:
            model.build(loaded.input_shape)
        except ValueError as error:
            raise FormatError(f"{path}: {error}") from None
    backend = model.backend
    model.sync_weights()
    theirs = [p for layer in loaded.layers for p in layer.params.values()]
    for source, target in zip(theirs, (p for layer in model.layers for p in layer.params.values())):
        backend.copy(source.value, target.value)
    if loaded.optimizer is not None:
        optimizer, state = loaded.optimizer, loaded.optimizer.state_arrays()
        iterations = optimizer.iterations
        optimizer.bind(backend, [model.store.flat] if model.store.flat is not None else [])
        for source, target in zip(state, optimizer.state_arrays()):
            backend.copy(source, target)
        optimizer.iterations = iterations
        model.optimizer, model.loss, model.loss_weights = optimizer, loaded.loss, loaded.loss_weights
        model.shuffle_state = loaded.shuffle_state
    return model


def _connections(graph: dict) -> tuple:
    """A graph's wiring without its input names."""
    return (tuple(tuple(e["shape"]) for e in graph["inputs"]), json.dumps(graph["nodes"]), json.dumps(graph["outputs"]))
