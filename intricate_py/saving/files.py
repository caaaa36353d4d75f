"""Model files: save, load into a new model or an existing one, with the
optimizer's state, the loss and the shuffling state when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import checked_values
from . import spec
from .fileio import FormatError, PathLike
from .layer_files import config_differences, refuse_non_finite

if TYPE_CHECKING:
    from ..layers import Layer
    from ..model import Model


def positions(layers: list) -> list[int]:
    """Each layer's position in the equivalent torch.nn.Sequential, the
    prefix of its tensors' names: a layer with its own activation
    (``Dense(8, activation="relu")``, nn.Linear then nn.ReLU) takes two."""
    at, out = 0, []
    for layer in layers:
        out.append(at)
        at += layer.sequential_modules
    return out


def model_tensors(model: "Model") -> dict[str, np.ndarray]:
    """Every layer's tensors as ``{position}.{name}``, as torch.nn.Sequential names them."""
    if not model.built:
        raise ValueError("the model has no weights yet: give input_size or train it first")
    tensors, owner = {}, {}
    for i, (layer, at) in enumerate(zip(model.layers, positions(model.layers))):
        for name, t in layer.state_dict().items():
            tensors[f"{at}.{name}"], owner[f"{at}.{name}"] = t, i
    refuse_non_finite(tensors, lambda name: f"layer {owner[name]} {model.layers[owner[name]]!r}")
    return tensors


def architecture(model: "Model") -> dict[str, str]:
    """The metadata that describes ``model``: a model made from a list of
    layers as that list and one input shape (the files of every version);
    a graph (a chain made with Input too, to keep its names) as its layers
    with their names, and its wiring."""
    from ..layers.registry import file_entry

    # ValueError for a custom layer that is not registered
    entries = [file_entry(layer, f"layer {i} ") for i, layer in enumerate(model.layers)]
    if model.path is not None:
        return {"architecture": json.dumps(entries), "input_shape": json.dumps(list(model.inputs[0].shape))}
    return {"architecture": json.dumps([{**entry, "name": layer.name} for entry, layer in zip(entries, model.layers)]),
            "graph": json.dumps(wiring(model))}


def wiring(model: "Model") -> dict:
    """How a graph model's nodes connect: ``{"inputs": [{"name", "shape"}],
    "nodes": [{"layer": index, "inputs": [["input", k] or ["node", j], ...]}],
    "outputs": [["node", j], ...], "output_names": [...]}``, nodes in the
    model's order."""
    plan = model.plan
    layer_index = {id(layer): i for i, layer in enumerate(model.layers)}
    refs = {id(s): ["input", k] for k, s in enumerate(model.inputs)}
    refs.update({id(node.output): ["node", j] for j, node in enumerate(plan.nodes)})
    return {
        "inputs": [{"name": name, "shape": list(s.shape)} for name, s in zip(model.input_names, model.inputs)],
        "nodes": [{"layer": layer_index[id(node.layer)], "inputs": [refs[id(s)] for s in node.inputs]}
                  for node in plan.nodes],
        "outputs": [refs[id(s)] for s in model.outputs],
        "output_names": model.output_names,
    }


def _spec(obj) -> dict:
    return {"type": type(obj).__name__, "config": obj.get_config()}


def save_model(model: "Model", path: PathLike, include_optimizer: bool = False,
               extra: dict[str, str] | None = None) -> None:
    """``extra``: more metadata entries (BackupAndRestore's ``backup``)."""
    tensors = model_tensors(model)
    metadata = {"kind": "model", **architecture(model), "dtype": model.dtype.name, **(extra or {})}
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
    try:
        # the wiring first: it gives each layer its input shape (a Dense's of sequences, an Embedding's)
        if graph is not None:
            inputs, outputs = _rebuild_graph(graph, layers)
            if "output_names" in graph:
                outputs = dict(zip(graph["output_names"], outputs))
        else:
            _chain_shapes(layers, shape)
    except (ValueError, TypeError, OverflowError) as error:
        raise FormatError(f"{path}: the architecture does not build ({error})") from None
    fill_layers(layers, per_layer, path, backend)
    try:
        if graph is None:
            model = model_class(layers, input_size=shape, device=backend, dtype=backend.dtype.name)
        else:
            model = model_class(inputs=inputs, outputs=outputs, device=backend, dtype=backend.dtype.name)
    except (ValueError, TypeError, OverflowError) as error:
        raise FormatError(f"{path}: the architecture does not build ({error})") from None
    for i, (layer, at) in enumerate(zip(layers, positions(layers))):  # a custom layer's parameters not in the file
        if layer.params and not per_layer[i]:
            raise FormatError(f"{path}: {_missing(i, at, layer)}")
    if "optimizer" in metadata:
        restore_training(model, rest, metadata, path)
    refuse_stray(rest, layers, per_layer, path)
    return model


def _chain_shapes(layers: list, shape: tuple[int, ...]) -> None:
    """Give each layer of a chain the input shape the layers before it make."""
    for i, layer in enumerate(layers):
        try:
            output_shape = layer.infer(shape)
        except ValueError as error:
            raise ValueError(f"layer {i} {layer!r} {error}") from None
        layer.input_shape, layer.output_shape = shape, output_shape
        shape = output_shape


def _rebuild_graph(graph: dict, layers: list) -> tuple[list, list]:
    """The inputs and outputs of the wiring ``graph`` (checked by
    spec.graph), each node made by calling its layer again."""
    from ..graph import Input

    symbols = {("input", k): Input(tuple(entry["shape"]), name=entry["name"])
               for k, entry in enumerate(graph["inputs"])}
    for j, node in enumerate(graph["nodes"]):
        layer = layers[node["layer"]]
        symbols[("node", j)] = layer([symbols[tuple(ref)] for ref in node["inputs"]])
    inputs = [symbols[("input", k)] for k in range(len(graph["inputs"]))]
    return inputs, [symbols[tuple(ref)] for ref in graph["outputs"]]


def split_by_layer(tensors: dict[str, np.ndarray], layers: list) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Tensors named ``{position}.{name}`` by layer (as ``{name}``), and the rest."""
    per_layer: list[dict[str, np.ndarray]] = [{} for _ in layers]
    layer_at = {at: i for i, at in enumerate(positions(layers))}
    rest = {}
    for name, t in tensors.items():
        i = layer_at.get(_position(name))
        if i is not None:
            per_layer[i][name.partition(".")[2]] = t
        else:
            rest[name] = t
    return per_layer, rest


def _position(name: str) -> int | None:
    """i for a tensor named "{i}.{something}" (no sign, no leading zero)."""
    head, _, tail = name.partition(".")
    if tail and len(head) <= 18 and head.isascii() and head.isdigit() and head == str(int(head)):
        return int(head)
    return None


def _holds_tensors(layer: "Layer") -> bool:
    return bool(layer.params or layer.file_tensors)


def fill_layers(layers: list, per_layer: list[dict], path: Path, backend=None) -> None:
    """Check every layer's tensors, then write them all (all or nothing);
    unbuilt layers are built on ``backend``."""
    staged = []
    for i, (layer, own, at) in enumerate(zip(layers, per_layer, positions(layers))):
        if not own and _holds_tensors(layer):
            raise FormatError(f"{path}: {_missing(i, at, layer)}{alignment_hint(layers, per_layer)}")
        try:
            staged.append(layer.check_state(own, backend.dtype if backend is not None else None))
        except ValueError as error:
            raise FormatError(f"{path}: layer {i}: {error}{alignment_hint(layers, per_layer)}") from None
    for layer, (shape, values) in zip(layers, staged):
        layer.write_state(shape, values, backend)


def _missing(i: int, at: int, layer: "Layer") -> str:
    names = sorted(layer.file_shapes()) if layer.params else sorted(layer.file_tensors)
    return f"layer {i} {layer!r} holds parameters, but the file has no tensors for it " \
           f"(expected {', '.join(f'{at}.{n}' for n in names)})"


def alignment_hint(layers: list, per_layer: list[dict], stray: tuple = ()) -> str:
    """When the layers holding parameters sit at other positions in the
    file than in the model, a sentence saying so."""
    at = positions(layers)
    ours = [at[i] for i, layer in enumerate(layers) if _holds_tensors(layer)]
    theirs = sorted({at[i] for i, own in enumerate(per_layer) if own} | set(stray))
    if ours == theirs:
        return ""
    return (f". The layers with parameters are at positions {ours} in this model and {theirs} in the file: "
            "in a torch.nn.Sequential every module takes a position (activations, Dropout and Flatten too, "
            "and a layer's own activation= after it), so both must list the same layers in the same order")


def refuse_stray(rest: dict, layers: list, per_layer: list[dict], path: Path) -> None:
    if not rest:
        return
    names = sorted(rest)
    numbered = [i for i in map(_position, names) if i is not None]
    if numbered:
        hint = alignment_hint(layers, per_layer, tuple(numbered))
        last = positions(layers)[-1] + layers[-1].sequential_modules - 1 if layers else -1
        where = f" (this model's layers are at positions 0 to {last}{hint})"
    else:
        where = " (tensors are named '{position}.{weight|bias}', as in the state_dict of a torch.nn.Sequential)"
    raise FormatError(f"{path}: tensors that no layer holds: {names[:5]}{where}")


def restore_training(model: "Model", rest: dict[str, np.ndarray], metadata: dict[str, str], path: Path) -> None:
    """Give ``model`` the file's optimizer (with its state), loss and
    shuffling state, taking the optimizer's tensors out of ``rest``."""
    optimizer, iterations = optimizer_of(metadata, path)
    loss = loss_of(metadata, path, model.output_names)
    weights = loss_weights_of(metadata, path, len(model.outputs))
    shuffle = shuffle_state_of(metadata, path)
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
    if not loaded.is_path and not model.built:
        raise FormatError(f"{path}: holds a graph model, not the path of layers this one is")
    if model.built and _connections(wiring(model)) != _connections(wiring(loaded)):
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
    """A graph's wiring without its names."""
    return (tuple(tuple(e["shape"]) for e in graph["inputs"]), json.dumps(graph["nodes"]), json.dumps(graph["outputs"]))


# ---------------------------------------------------------------- training state
#: optimizer state holding sums or averages of squares: never negative
NON_NEGATIVE_STATE = ("sum_sq", "v")


def optimizer_of(metadata: dict[str, str], path: Path) -> tuple[Any, int]:
    """The optimizer the file names, unbound, and its iteration count."""
    from ..optimizers import OPTIMIZERS

    entry = spec.field(metadata, "optimizer", path)
    if not (isinstance(entry, dict) and set(entry) == {"type", "config", "iterations"}):
        raise FormatError(f"{path}: 'optimizer' must hold 'type', 'config' and 'iterations'")
    if not (isinstance(entry["type"], str) and entry["type"] in OPTIMIZERS):
        raise FormatError(f"{path}: unknown optimizer {spec.clip(entry['type'])!r}: expected one of {sorted(OPTIMIZERS)}")
    iterations = entry["iterations"]
    if type(iterations) is not int or not 0 <= iterations <= spec.MAX_ITERATIONS:
        raise FormatError(f"{path}: the optimizer's iterations must be an integer in [0, 2**53]. "
                          f"Received: {iterations if type(iterations) is int else type(iterations).__name__}")
    return spec.construct(OPTIMIZERS[entry["type"]], entry["config"], path, "the optimizer: "), iterations


def loss_of(metadata: dict[str, str], path: Path, outputs: list[str]) -> Any:
    """The loss: one for every output, or {"outputs": [one per output or None]}."""
    entry = spec.field(metadata, "loss", path)
    if isinstance(entry, dict) and set(entry) == {"outputs"}:
        entries = entry["outputs"]
        if not (isinstance(entries, list) and len(entries) == len(outputs)):
            raise FormatError(f"{path}: 'loss' must list one entry per output ({len(outputs)})")
        losses = [None if one is None else _one_loss(one, path) for one in entries]
        if all(one is None for one in losses):
            raise FormatError(f"{path}: 'loss' gives no output a loss")
        return losses
    return _one_loss(entry, path)


def _one_loss(entry: Any, path: Path) -> Any:
    from ..losses import LOSSES

    if not (isinstance(entry, dict) and set(entry) == {"type", "config"}):
        raise FormatError(f"{path}: 'loss' must hold 'type' and 'config'")
    if not (isinstance(entry["type"], str) and entry["type"] in LOSSES):
        raise FormatError(f"{path}: unknown loss {spec.clip(entry['type'])!r}: expected one of {sorted(LOSSES)}")
    return spec.construct(LOSSES[entry["type"]], entry["config"], path, "the loss: ")


def loss_weights_of(metadata: dict[str, str], path: Path, outputs: int) -> list[float] | None:
    """The outputs' weights in the total loss, if the file gives them."""
    if "loss_weights" not in metadata:
        return None
    weights = spec.field(metadata, "loss_weights", path)
    if not (isinstance(weights, list) and len(weights) == outputs
            and all(type(w) in (int, float) and 0 <= w < 1e30 for w in weights)):
        raise FormatError(f"{path}: 'loss_weights' must list {outputs} non-negative numbers")
    return [float(w) for w in weights]


def shuffle_state_of(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    """The state of a PCG64 generator (numpy's default), each number in its range."""
    state = spec.field(metadata, "shuffle_state", path)
    ok = (isinstance(state, dict) and set(state) == {"bit_generator", "state", "has_uint32", "uinteger"}
          and state["bit_generator"] == "PCG64" and isinstance(state["state"], dict)
          and set(state["state"]) == {"state", "inc"}
          and all(type(v) is int and 0 <= v < 2**128 for v in state["state"].values())
          and state["has_uint32"] in (0, 1) and type(state["has_uint32"]) is int
          and type(state["uinteger"]) is int and 0 <= state["uinteger"] < 2**32)
    if not ok:
        raise FormatError(f"{path}: 'shuffle_state' is not the state of a PCG64 generator")
    return state
