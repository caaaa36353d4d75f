"""Layers and models in safetensors files, safe against corruption and
interrupted writes.

A file holds tensors and string metadata:

* ``format`` "intricate-py", ``format_version``, ``library_version``;
* ``kind`` "layer" (``layer_type`` and ``config``) or "model"
  (``architecture``, ``input_shape``, and with the optimizer ``optimizer``,
  ``loss`` and ``shuffle_state``);
* ``dtype`` of the tensors;
* ``checksum``: SHA-256 over every tensor (name, dtype, shape, bytes) and
  every other metadata entry, verified by each load.

Tensors use PyTorch's names and layouts: a Dense layer stores ``weight``
(units, inputs) and ``bias``, and a model prefixes them with the layer's
index (``0.weight``), as ``torch.nn.Sequential`` does. Writes go to a
temporary file in the same folder, are flushed and fsync'd, then renamed
over the target: a save stopped at any moment leaves the previous file whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import safetensors.numpy

if TYPE_CHECKING:
    from .layers import Layer
    from .model import Model

FORMAT = "intricate-py"
FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


class FormatError(ValueError):
    """A file that is not a readable intricate-py file, or does not fit."""


# ---------------------------------------------------------------- the bytes
def checksum(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
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
    """Write tensors and metadata (a checksum added) atomically to ``path``."""
    from . import __version__

    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "library_version": __version__, **metadata}
    metadata["checksum"] = checksum(tensors, metadata)
    atomic_write(Path(path), safetensors.numpy.save(tensors, metadata=metadata))


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that it is always either the old
    file or the new one: temp file in the same folder, fsync, rename."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_file(path: PathLike, kind: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of an intricate-py file of ``kind``; FormatError
    naming the path and the fault for anything else (FileNotFoundError if
    there is no file)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        tensors = safetensors.numpy.load(data)
        (length,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
    except Exception as error:  # whatever the parser chokes on, the file is bad
        raise FormatError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise FormatError(f"{path}: a safetensors file, but not one written by intricate-py "
                          "(no 'format': 'intricate-py' in its metadata)")
    if metadata.get("checksum") != checksum(tensors, metadata):
        raise FormatError(f"{path}: checksum mismatch, the file is corrupt")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise FormatError(f"{path}: format version {version!r}; this intricate-py reads "
                          f"versions up to {FORMAT_VERSION}")
    if metadata.get("kind") != kind:
        other = "Model.load" if metadata.get("kind") == "model" else "Layer.load"
        raise FormatError(f"{path}: holds a {metadata.get('kind')}, not a {kind}: use {other}")
    return tensors, metadata


def _json(metadata: dict[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(metadata[key])
    except (KeyError, ValueError):
        raise FormatError(f"{path}: missing or unreadable '{key}' in the metadata") from None


# ---------------------------------------------------------------- layers
def layer_entry(layer: "Layer") -> dict[str, Any]:
    return {"type": layer.type_name, "config": layer.get_config()}


def make_layer(entry: Any, path: Path) -> "Layer":
    """A new layer from its {"type", "config"} entry."""
    from .layers import LAYER_TYPES

    if not isinstance(entry, dict) or entry.get("type") not in LAYER_TYPES:
        kind = entry.get("type") if isinstance(entry, dict) else entry
        raise FormatError(f"{path}: unknown layer type {kind!r} (a custom layer must be "
                          "imported before loading)")
    try:
        return LAYER_TYPES[entry["type"]](**entry.get("config", {}))
    except (TypeError, ValueError) as error:
        raise FormatError(f"{path}: cannot rebuild {entry['type']} from its config ({error})") from None


def fill_layer(layer: "Layer", tensors: dict[str, np.ndarray], path: Path, where: str = "") -> None:
    """Give ``layer`` the tensors of a file, checking names and shapes."""
    try:
        layer.load_state_dict(tensors)
    except ValueError as error:
        raise FormatError(f"{path}: {where}{error}") from None


def save_layer(layer: "Layer", path: PathLike) -> None:
    tensors = layer.state_dict()
    dtype = next(iter(tensors.values())).dtype.name if tensors else "float32"
    write_file(path, tensors, {"kind": "layer", "layer_type": layer.type_name,
                               "config": json.dumps(layer.get_config()), "dtype": dtype})


def load_layer(path: PathLike, into: "Layer | None" = None) -> "Layer":
    path = Path(path)
    tensors, metadata = read_file(path, "layer")
    layer_type = metadata.get("layer_type")
    if into is None:
        into = make_layer({"type": layer_type, "config": _json(metadata, "config", path)}, path)
    elif layer_type != into.type_name:
        raise FormatError(f"{path}: holds a {layer_type} layer, not {into.type_name}")
    fill_layer(into, tensors, path)
    return into


# ---------------------------------------------------------------- models
def save_model(model: "Model", path: PathLike, include_optimizer: bool = False) -> None:
    if not model.built:
        raise ValueError("the model has no weights yet: give input_size or train it before saving")
    tensors: dict[str, np.ndarray] = {}
    for i, layer in enumerate(model.layers):
        tensors.update({f"{i}.{name}": t for name, t in layer.state_dict().items()})
    metadata = {
        "kind": "model",
        "architecture": json.dumps([layer_entry(layer) for layer in model.layers]),
        "input_shape": json.dumps(list(model.input_shape)),
        "dtype": model.dtype.name,
    }
    if include_optimizer:
        optimizer = model.optimizer
        if optimizer is None:
            raise ValueError("include_optimizer=True needs a model that has been trained with fit")
        # state per parameter (the model packs it into one buffer per name)
        for name, packed in (optimizer.state[0].items() if optimizer.state else ()):
            for i, view in enumerate(model._parameter_views(packed)):
                tensors[f"optimizer.{i}.{name}"] = model.backend.to_numpy(view)
        metadata["optimizer"] = json.dumps({"type": type(optimizer).__name__,
                                            "config": optimizer.get_config(),
                                            "iterations": optimizer.iterations})
        metadata["loss"] = json.dumps({"type": type(model.loss).__name__, "config": model.loss.get_config()})
        metadata["shuffle_state"] = json.dumps(model._shuffle_rng.bit_generator.state)
    write_file(path, tensors, metadata)


def load_model(path: PathLike, device: str = "auto", dtype: str | None = None) -> "Model":
    from .losses import LOSSES
    from .model import Model
    from .optimizers import OPTIMIZERS

    path = Path(path)
    tensors, metadata = read_file(path, "model")
    architecture = _json(metadata, "architecture", path)
    if not isinstance(architecture, list) or not architecture:
        raise FormatError(f"{path}: the architecture lists no layers")
    layers = [make_layer(entry, path) for entry in architecture]
    try:
        model = Model(layers, input_size=_json(metadata, "input_shape", path), device=device,
                      dtype=dtype or metadata.get("dtype", "float32"))
    except ValueError as error:
        raise FormatError(f"{path}: the architecture does not build ({error})") from None
    known = set()  # every tensor a layer took (a layer rejects any it does not hold)
    for i, layer in enumerate(layers):
        prefix = f"{i}."
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        fill_layer(layer, own, path, f"layer {i} {layer!r}: ")
        known.update(prefix + name for name in own)
    if "optimizer" in metadata:
        _restore_training(model, tensors, metadata, path, LOSSES, OPTIMIZERS)
        known |= {k for k in tensors if k.startswith("optimizer.")}
    extra = sorted(set(tensors) - known)
    if extra:
        raise FormatError(f"{path}: tensors that no layer holds: {extra[:5]}")
    return model


def _restore_training(model, tensors, metadata, path, losses, optimizers) -> None:
    spec = _json(metadata, "optimizer", path)
    loss_spec = _json(metadata, "loss", path)
    try:
        optimizer = optimizers[spec["type"]].from_config(spec["config"])
        model.loss = losses[loss_spec["type"]](**loss_spec["config"])
        iterations = int(spec["iterations"])
    except (KeyError, TypeError, ValueError) as error:
        raise FormatError(f"{path}: cannot rebuild the optimizer or loss ({error})") from None
    optimizer.bind(model.backend, model._trained_parameters())
    optimizer.iterations = iterations
    for name, packed in (optimizer.state[0].items() if optimizer.state else ()):
        for i, (param, view) in enumerate(zip(model.parameters, model._parameter_views(packed))):
            key = f"optimizer.{i}.{name}"
            value = tensors.get(key)
            if value is None or value.shape != tuple(param.value.shape):
                raise FormatError(f"{path}: optimizer state {key} missing or of the wrong shape")
            model.backend.write(view, value)
    model.optimizer = optimizer
    try:
        model._shuffle_rng.bit_generator.state = _json(metadata, "shuffle_state", path)
    except (TypeError, ValueError, KeyError) as error:
        raise FormatError(f"{path}: unreadable shuffle state ({error})") from None
