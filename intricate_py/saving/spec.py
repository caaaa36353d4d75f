"""The intricate-py file format: what its metadata may say, checked before
anything is built from it.

Every entry is a string; several hold JSON. Each is checked for type and
range here (a layer type must be a concrete layer, a configuration plain
values, an input shape a few positive sizes, an iteration count an integer
in [0, 2**53]), so that a crafted file raises FormatError naming the file
and the fault instead of RecursionError, TypeError or an allocation of
terabytes. The checksum catches accidental corruption; nothing relies on it
for safety, since anyone can recompute it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.numpy

from ..naming import encodes_as_utf8
from .fileio import FormatError, PathLike, atomic_write, parse_json, read_safetensors

if TYPE_CHECKING:
    from ..layers import Layer

FORMAT = "intricate-py"
FORMAT_VERSION = 1
DTYPE_NAMES = ("float32", "float64")
#: how each kind of file is loaded
LOADERS = {"layer": "Layer.load", "model": "Model.load", "weights": "model.load_weights"}
_WHAT = {"layer": "a layer", "model": "a model", "weights": "a model's weights only"}
#: nesting allowed in a configuration (lists of lists of numbers, say)
MAX_CONFIG_DEPTH = 4
MAX_INPUT_DIMENSIONS = 4
#: a model's layers (each costs memory well beyond its bytes in the header)
MAX_LAYERS = 10_000
#: a graph's inputs, outputs, and the inputs of one node
MAX_PORTS = 64
MAX_ITERATIONS = 2**53


def checksum(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes) and every
    metadata entry but the checksum itself."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(f"{name}\0{t.dtype.str}\0{t.shape}\0".encode())
        h.update(t.tobytes())
    for key in sorted(metadata):
        if key != "checksum":
            h.update(f"{key}\0{metadata[key]}\0".encode())
    return "sha256:" + h.hexdigest()


def write_file(path: PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write tensors and metadata (format, versions and checksum added)
    atomically to ``path``."""
    from .._version import __version__

    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    for text in [*tensors, *metadata, *metadata.values()]:
        if not encodes_as_utf8(text):
            raise ValueError(f"cannot save {clip(text)!r}: it holds a lone surrogate, which is not a character "
                             "(files hold UTF-8 text; nothing was written)")
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "library_version": __version__, **metadata}
    metadata["checksum"] = checksum(tensors, metadata)
    atomic_write(path, safetensors.numpy.save(tensors, metadata=metadata))


def read_file(path: PathLike, kinds: str | tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of an intricate-py file of one of ``kinds``, its
    format, version, checksum, kind and dtype checked."""
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    return tensors, check_metadata(path, tensors, metadata, (kinds,) if isinstance(kinds, str) else kinds)


def check_metadata(path: Path, tensors: dict, metadata: dict[str, str] | None,
                   kinds: tuple[str, ...]) -> dict[str, str]:
    """``metadata`` if it is an intricate-py file's of one of ``kinds``:
    format, version, checksum, kind and dtype checked."""
    if metadata is None or metadata.get("format") != FORMAT:
        raise FormatError(f"{path}: a safetensors file, but not one written by intricate-py "
                          "(no 'format': 'intricate-py' in its metadata)")
    version = metadata.get("format_version", "")
    if not re.fullmatch("[0-9]{1,9}", version) or not 1 <= int(version) <= FORMAT_VERSION:
        raise FormatError(f"{path}: format version {clip(version)!r}; this intricate-py reads "
                          f"versions 1 to {FORMAT_VERSION}")
    if metadata.get("checksum") != checksum(tensors, metadata):
        raise FormatError(f"{path}: checksum mismatch, the file is corrupt")
    kind = metadata.get("kind")
    if kind not in kinds:
        wanted = " or ".join(_WHAT[k] for k in kinds)
        if kind not in LOADERS:
            raise FormatError(f"{path}: holds an unknown kind {clip(kind)!r}, not {wanted}")
        raise FormatError(f"{path}: holds {_WHAT[kind]}, not {wanted}: use {LOADERS[kind]}")
    if metadata.get("dtype") not in DTYPE_NAMES:
        raise FormatError(f"{path}: dtype {clip(metadata.get('dtype'))!r}; expected one of {DTYPE_NAMES}")
    return metadata


def field(metadata: dict[str, str], key: str, path: Path) -> Any:
    """The JSON value of the metadata entry ``key``."""
    if key not in metadata:
        raise FormatError(f"{path}: no '{key}' in the metadata")
    return parse_json(metadata[key], f"{path}: '{key}' in the metadata")


def clip(text: Any, length: int = 60) -> Any:
    """A string cut short for an error message (anything else as it is)."""
    return text[:length] + "…" if isinstance(text, str) and len(text) > length else text


# ---------------------------------------------------------------- objects
def make_layer(entry: Any, path: Path, where: str = "") -> "Layer":
    """A new, unbuilt layer from its {"type", "config"} entry (and its
    "name", in a graph model's file)."""
    from ..layers.registry import layer_class, unknown_type_hint
    from ..naming import checked_name

    if not (isinstance(entry, dict) and isinstance(entry.get("type"), str)
            and {"type"} <= set(entry) <= {"type", "config", "name"}):
        raise FormatError(f"{path}: {where}expected a layer as {{'type': name, 'config': {{...}}}}. "
                          f"Received: {type(entry).__name__}")
    kind = entry["type"]
    cls = layer_class(kind)
    if cls is None:
        raise FormatError(f"{path}: {where}unknown layer type {clip(kind)!r}: {unknown_type_hint(clip(kind))}")
    layer = construct(cls, entry.get("config", {}), path, where)
    if "name" in entry:
        try:
            layer.name = checked_name(entry["name"])
        except ValueError as error:
            raise FormatError(f"{path}: {where}{error}") from None
    return layer


def construct(cls: type, config: Any, path: Path, where: str = "") -> Any:
    """``cls(**config)``, FormatError unless ``config`` holds plain values that
    the constructor accepts."""
    if not (isinstance(config, dict) and _plain(config, MAX_CONFIG_DEPTH)):
        raise FormatError(f"{path}: {where}the configuration of {cls.__name__} must map names to plain "
                          f"values (numbers, strings, short lists)")
    try:  # an optimizer rebuilds a learning-rate schedule from its config
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
    except (TypeError, ValueError, OverflowError) as error:
        raise FormatError(f"{path}: {where}cannot rebuild {cls.__name__} from its config ({error})") from None


def _plain(value: Any, depth: int) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if depth == 0:
        return False
    if isinstance(value, list):
        return all(_plain(v, depth - 1) for v in value)
    return isinstance(value, dict) and all(_plain(v, depth - 1) for v in value.values())


def architecture(metadata: dict[str, str], path: Path) -> list:
    """The model's layer entries: a list of 1 to MAX_LAYERS."""
    entries = field(metadata, "architecture", path)
    if not isinstance(entries, list) or not entries:
        raise FormatError(f"{path}: the architecture lists no layers")
    if len(entries) > MAX_LAYERS:
        raise FormatError(f"{path}: the architecture lists {len(entries)} layers, more than the {MAX_LAYERS} read")
    return entries


def input_shape(metadata: dict[str, str], path: Path) -> tuple[int, ...]:
    return _shape(field(metadata, "input_shape", path), path, "'input_shape'")


def layer_input_shape(metadata: dict[str, str], path: Path) -> tuple | None:
    """A layer file's input shape (a tuple of shapes for a layer of several
    inputs), None where the file names none (the tensors then imply it)."""
    if "input_shape" not in metadata:
        return None
    shape = field(metadata, "input_shape", path)
    if isinstance(shape, list) and shape and all(isinstance(s, list) for s in shape):
        if len(shape) > MAX_PORTS:
            raise FormatError(f"{path}: 'input_shape' lists at most {MAX_PORTS} shapes. Received: {len(shape)}")
        return tuple(_shape(s, path, "each of 'input_shape'") for s in shape)
    return _shape(shape, path, "'input_shape'")


def _shape(shape: Any, path: Path, what: str) -> tuple[int, ...]:
    if not (isinstance(shape, list) and 1 <= len(shape) <= MAX_INPUT_DIMENSIONS
            and all(type(s) is int and 1 <= s < 2**31 for s in shape)):
        raise FormatError(f"{path}: {what} must list 1 to {MAX_INPUT_DIMENSIONS} positive sizes "
                          f"below 2**31. Received: {type(shape).__name__}"
                          + (f" {shape}" if isinstance(shape, list) and len(shape) <= 8 else ""))
    return tuple(shape)


def graph(metadata: dict[str, str], path: Path, layers: int) -> dict:
    """A graph model's wiring, checked before anything is built: inputs with
    distinct names and valid shapes; nodes that each name one of the
    ``layers`` and take inputs or earlier nodes (so the graph has no cycle);
    every layer used by a node, every node needed by an output; at most
    MAX_LAYERS nodes and MAX_PORTS inputs, outputs and node inputs."""
    wiring = field(metadata, "graph", path)
    if not (isinstance(wiring, dict) and {"inputs", "nodes", "outputs"} <= set(wiring)
            <= {"inputs", "nodes", "outputs", "output_names"}):
        raise FormatError(f"{path}: 'graph' must hold 'inputs', 'nodes' and 'outputs' (and may hold 'output_names')")
    inputs, nodes, outputs = wiring["inputs"], wiring["nodes"], wiring["outputs"]
    if not (isinstance(inputs, list) and 1 <= len(inputs) <= MAX_PORTS):
        raise FormatError(f"{path}: the graph must list 1 to {MAX_PORTS} inputs")
    names = []
    for k, entry in enumerate(inputs):
        if not (isinstance(entry, dict) and set(entry) == {"name", "shape"} and isinstance(entry["name"], str)
                and 0 < len(entry["name"]) <= 200 and entry["name"].isprintable()):
            raise FormatError(f"{path}: graph input {k} must be {{'name': a short string, 'shape': [...]}}")
        _shape(entry["shape"], path, f"the shape of graph input {k}")
        names.append(entry["name"])
    if len(set(names)) != len(names):
        raise FormatError(f"{path}: the graph's inputs must have distinct names. Received: {[clip(n) for n in names]}")
    if not (isinstance(nodes, list) and 1 <= len(nodes) <= MAX_LAYERS):
        raise FormatError(f"{path}: the graph must list 1 to {MAX_LAYERS} nodes. Received: "
                          f"{len(nodes) if isinstance(nodes, list) else type(nodes).__name__}")
    used, needs = set(), []
    for j, node in enumerate(nodes):
        if not (isinstance(node, dict) and set(node) == {"layer", "inputs"} and type(node["layer"]) is int
                and isinstance(node["inputs"], list) and 1 <= len(node["inputs"]) <= MAX_PORTS):
            raise FormatError(f"{path}: graph node {j} must be {{'layer': index, 'inputs': [1 to {MAX_PORTS} "
                              "references]}}")
        if not 0 <= node["layer"] < layers:
            raise FormatError(f"{path}: graph node {j} names layer {node['layer']}; the architecture has {layers}")
        used.add(node["layer"])
        needs.append([_reference(ref, len(inputs), j, path, f"graph node {j}") for ref in node["inputs"]])
    missing = sorted(set(range(layers)) - used)
    if missing:
        raise FormatError(f"{path}: layers {missing[:5]} of the architecture are called by no graph node")
    if not (isinstance(outputs, list) and 1 <= len(outputs) <= MAX_PORTS):
        raise FormatError(f"{path}: the graph must list 1 to {MAX_PORTS} outputs")
    ends = [_reference(ref, len(inputs), len(nodes), path, "a graph output") for ref in outputs]
    if any(kind == "input" for kind, _ in ends) or len(set(ends)) != len(ends):
        raise FormatError(f"{path}: the graph's outputs must be distinct nodes")
    names = wiring.get("output_names", [f"output {k}" for k in range(len(ends))])
    if not (isinstance(names, list) and len(names) == len(ends) and len(set(map(str, names))) == len(names)
            and all(isinstance(n, str) and 0 < len(n) <= 200 and n.isprintable() for n in names)):
        raise FormatError(f"{path}: the graph's 'output_names' must be {len(ends)} distinct short strings")
    reached, stack = set(), [j for _, j in ends]
    while stack:
        j = stack.pop()
        if j not in reached:
            reached.add(j)
            stack.extend(i for kind, i in needs[j] if kind == "node")
    dangling = sorted(set(range(len(nodes))) - reached)
    if dangling:
        raise FormatError(f"{path}: graph nodes {dangling[:5]} lead to no output")
    return wiring


def _reference(ref: Any, inputs: int, before: int, path: Path, where: str) -> tuple[str, int]:
    """("input", k) or ("node", j) from a reference to an input or to a node before ``before``."""
    if isinstance(ref, list) and len(ref) == 2 and type(ref[1]) is int:
        kind, index = ref
        if kind == "input" and 0 <= index < inputs:
            return kind, index
        if kind == "node" and 0 <= index < before:
            return kind, index
    raise FormatError(f"{path}: {where} takes {clip(repr(ref))}; expected ['input', k] with k < {inputs} "
                      f"or ['node', j] with j < {before} (an earlier node)")
