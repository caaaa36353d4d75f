"""Darknet's own files: a network from its ``.cfg``, its weights from a ``.weights`` file.

    model = intricate_py.darknet.load("darknet53.cfg", "darknet53.weights", device="auto")

The ``.cfg`` is a list of sections, ``[name]`` then ``key=value`` lines
(``#`` and ``;`` start comments). ``[net]`` gives the input (``width``,
``height``, ``channels``); each section after it is one Darknet layer,
counted from 0, whose output a later ``[shortcut]`` or ``[route]`` may name
by its index (or relative to itself, ``-3``):

==================  =============================================================
section             built from
==================  =============================================================
``[convolutional]`` Conv2D (``filters``, ``size``, ``stride``, ``pad=1`` for
                    size // 2 or ``padding``, ``groups``), with ``batch_normalize=1``
                    a BatchNormalization after it (the convolution then has no
                    bias), then the activation
``[shortcut]``      Add of the previous layer and ``from``, then the activation
``[route]``         the output of one layer, or Concatenate of several along channels
``[maxpool]``       MaxPool2D (``size``, ``stride``; Darknet pads ``size - 1``,
                    where that equals Keras's "same" padding)
``[avgpool]``       GlobalAveragePooling2D, keeping (n, c, 1, 1) as Darknet does
``[upsample]``      UpSampling2D (``stride``)
``[connected]``     Flatten, Dense (``output``), the activation
``[softmax]``       Flatten, Softmax
==================  =============================================================

Activations: ``linear``, ``leaky`` (LeakyReLU 0.1), ``relu``, ``logistic``
(Sigmoid), ``tanh``, ``mish`` (x · tanh(softplus(x)), as Softplus, TanH
and a Multiply). A section or key this module does not know is a
ValueError naming the file and line.

The ``.weights`` file: three int32 (major, minor, revision), then the
images seen, 64 bits from version 0.2 on, else 32; then, layer by layer,
each convolution's biases (its BatchNormalization's beta when normalized),
with ``batch_normalize`` its scales (gamma), rolling means and variances,
then its weights (filters, channels / groups, size, size); each connected
layer's biases and weights (outputs, inputs), then its normalization's
three arrays; all float32, little-endian. A file too short or too long for
the network is a FormatError naming both sizes.

Darknet normalizes in inference by ``(x - mean) / (sqrt(var) + 1e-6)``
(its epsilon outside the root); the BatchNormalization layers are built
with epsilon 1e-12 (= 1e-6²) and moving variances of ``(sqrt(var) + 1e-6)²
- 1e-12``, which computes the same to float32 rounding; in training, a
batch variance of 0 (one sample) divides by sqrt(1e-12) = 1e-6, as
Darknet's does.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .graph import Input, Symbol
from .layers import (Add, BatchNormalization, Concatenate, Conv2D, Dense, Flatten, GlobalAveragePooling2D, Layer,
                     LeakyReLU, MaxPool2D, Multiply, ReLU, Sigmoid, Softmax, Softplus, TanH, UpSampling2D)
from .model import Model
from .saving import FormatError

__all__ = ["load", "build", "parse_cfg", "read_weights", "Section", "DARKNET53"]

#: The cfg of Darknet-53 (the ImageNet classifier, 256 × 256 inputs) this package ships.
DARKNET53 = Path(__file__).resolve().parent / "cfg" / "darknet53.cfg"

#: Darknet's epsilon, added to the standard deviation (not the variance) in inference.
DARKNET_EPSILON = 1e-6
#: The BatchNormalization layers' epsilon: Darknet's, squared, under the root.
_VARIANCE_EPSILON = DARKNET_EPSILON**2

#: The keys each section may hold; those that change nothing in inference are accepted and ignored.
_TRAINING_KEYS = {
    "batch", "subdivisions", "momentum", "decay", "learning_rate", "burn_in", "max_batches", "policy", "steps",
    "scales", "step", "gamma", "power", "angle", "saturation", "exposure", "hue", "aspect", "max_crop", "min_crop",
    "max_ratio", "min_ratio", "center", "crop_width", "crop_height", "flip", "mosaic", "jitter", "random", "rate",
    "time_steps", "adam", "B1", "B2", "eps", "label_smooth_eps", "mixup", "blur", "cutmix", "letter_box", "seed",
}
KEYS: dict[str, set[str]] = {
    "net": {"width", "height", "channels", "inputs", *_TRAINING_KEYS},
    "convolutional": {"batch_normalize", "filters", "size", "stride", "pad", "padding", "activation", "groups"},
    "shortcut": {"from", "activation"},
    "route": {"layers"},
    "maxpool": {"size", "stride", "padding"},
    "avgpool": set(),
    "upsample": {"stride"},
    "connected": {"output", "activation", "batch_normalize"},
    "softmax": {"groups", "temperature"},
}
ACTIVATIONS = ("linear", "leaky", "relu", "logistic", "tanh", "mish")


class Section(NamedTuple):
    """One ``[name]`` of a cfg, its options, and the line it starts on."""

    name: str
    options: dict[str, str]
    line: int


# ---------------------------------------------------------------- the cfg
def parse_cfg(path) -> list[Section]:
    """The sections of a Darknet ``.cfg``, checked: known sections and keys,
    each key once. ValueError naming the file and line otherwise."""
    path = Path(path)
    sections: list[Section] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip().replace(" ", "").replace("\t", "")
        if not line:
            continue
        where = f"{path}, line {number}"
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ValueError(f"{where}: expected a section as [name]. Received: {raw.strip()!r}")
            name = line[1:-1].lower()
            name = "net" if name == "network" else name
            if name not in KEYS:
                raise ValueError(f"{where}: unknown section [{name}]; this loader reads "
                                 f"{', '.join(f'[{n}]' for n in KEYS)}")
            sections.append(Section(name, {}, number))
            continue
        if "=" not in line:
            raise ValueError(f"{where}: expected key=value. Received: {raw.strip()!r}")
        if not sections:
            raise ValueError(f"{where}: a key before the first section")
        key, value = line.split("=", 1)
        section = sections[-1]
        if key not in KEYS[section.name]:
            raise ValueError(f"{where}: unknown key {key!r} in [{section.name}]; expected one of "
                             f"{sorted(KEYS[section.name])}")
        if key in section.options:
            raise ValueError(f"{where}: {key!r} given twice in [{section.name}] (line {section.line})")
        section.options[key] = value
    if not sections or sections[0].name != "net":
        raise ValueError(f"{path}: expected [net] as the first section")
    return sections


def _int(section: Section, key: str, default: int | None = None, minimum: int = 0) -> int:
    value = section.options.get(key)
    if value is None:
        if default is None:
            raise ValueError(f"line {section.line}: [{section.name}] needs {key}=")
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"line {section.line}: expected an integer for {key} in [{section.name}]. "
                         f"Received: {value!r}") from None
    if number < minimum:
        raise ValueError(f"line {section.line}: expected {key} >= {minimum} in [{section.name}]. Received: {number}")
    return number


def _number(section: Section, key: str) -> float:
    try:
        return float(section.options[key])
    except ValueError:
        raise ValueError(f"line {section.line}: expected a number for {key} in [{section.name}]. "
                         f"Received: {section.options[key]!r}") from None


def _activation(section: Section) -> str:
    kind = section.options.get("activation", "linear")
    if kind not in ACTIVATIONS:
        raise ValueError(f"line {section.line}: activation={kind} in [{section.name}]; this loader knows "
                         f"{', '.join(ACTIVATIONS)}")
    return kind


# ---------------------------------------------------------------- the network
class _Builder:
    """The model's graph, one Darknet layer at a time: ``outputs[i]`` is the
    output of Darknet layer i; ``weighted`` the layers that read weights,
    in file order, with what they read."""

    def __init__(self, name_prefix: str = ""):
        self.outputs: list[Symbol] = []
        self.weighted: list[tuple[str, Section, list[Layer]]] = []
        self.prefix = name_prefix

    def name(self, kind: str) -> str:
        return f"{self.prefix}{len(self.outputs)}_{kind}"

    def activate(self, x: Symbol, kind: str) -> Symbol:
        if kind == "linear":
            return x
        if kind == "leaky":
            return LeakyReLU(0.1, name=self.name("leaky"))(x)
        if kind == "relu":
            return ReLU(name=self.name("relu"))(x)
        if kind == "logistic":
            return Sigmoid(name=self.name("logistic"))(x)
        if kind == "tanh":
            return TanH(name=self.name("tanh"))(x)
        soft = TanH(name=self.name("mish_tanh"))(Softplus(name=self.name("mish_softplus"))(x))  # mish
        return Multiply(name=self.name("mish"))([x, soft])

    def reference(self, section: Section, text: str) -> Symbol:
        """The output a ``from`` or ``layers`` entry names: an index, or relative (negative)."""
        here = len(self.outputs)
        try:
            index = int(text)
        except ValueError:
            raise ValueError(f"line {section.line}: expected layer indices in [{section.name}]. "
                             f"Received: {text!r}") from None
        index = here + index if index < 0 else index
        if not 0 <= index < here:
            raise ValueError(f"line {section.line}: [{section.name}] names layer {text}, but only layers 0 to "
                             f"{here - 1} come before it")
        return self.outputs[index]

    def add(self, section: Section, x: Symbol) -> Symbol:
        options, kind = section.options, section.name
        if kind == "convolutional":
            return self.convolutional(section, x)
        if kind == "shortcut":
            other = self.reference(section, options.get("from", ""))
            return self.activate(Add(name=self.name("shortcut"))([x, other]), _activation(section))
        if kind == "route":
            sources = [self.reference(section, t) for t in options.get("layers", "").split(",") if t]
            if not sources:
                raise ValueError(f"line {section.line}: [route] needs layers=")
            return sources[0] if len(sources) == 1 else Concatenate(name=self.name("route"))(sources)
        if kind == "maxpool":
            return self.maxpool(section, x)
        if kind == "avgpool":
            return GlobalAveragePooling2D(keepdims=True, name=self.name("avgpool"))(x)
        if kind == "upsample":
            return UpSampling2D(_int(section, "stride", 2, minimum=1), name=self.name("upsample"))(x)
        if kind == "connected":
            if len(x.shape) > 1:
                x = Flatten(name=self.name("flatten"))(x)
            dense = Dense(_int(section, "output", minimum=1), use_bias=not self._normalized(section),
                          name=self.name("connected"))
            layers = [dense]
            y = dense(x)
            if self._normalized(section):
                norm = BatchNormalization(epsilon=_VARIANCE_EPSILON, name=self.name("batchnorm"))
                layers.append(norm)
                y = norm(y)
            self.weighted.append(("connected", section, layers))
            return self.activate(y, _activation(section))
        # softmax
        for key in ("groups", "temperature"):
            if key in section.options and _number(section, key) != 1:
                raise ValueError(f"{key}={section.options[key]} in [softmax]: this loader reads a softmax over "
                                 f"all the outputs at temperature 1 only ({key}=1)")
        if len(x.shape) > 1:
            x = Flatten(name=self.name("flatten"))(x)
        return Softmax(name=self.name("softmax"))(x)

    @staticmethod
    def _normalized(section: Section) -> bool:
        return _int(section, "batch_normalize", 0) == 1

    def convolutional(self, section: Section, x: Symbol) -> Symbol:
        size = _int(section, "size", 1, minimum=1)
        padding = size // 2 if _int(section, "pad", 0) else _int(section, "padding", 0)
        normalized = self._normalized(section)
        conv = Conv2D(_int(section, "filters", 1, minimum=1), size, strides=_int(section, "stride", 1, minimum=1),
                      padding=padding, groups=_int(section, "groups", 1, minimum=1), use_bias=not normalized,
                      name=self.name("conv"))
        y = conv(x)
        layers: list[Layer] = [conv]
        if normalized:
            norm = BatchNormalization(epsilon=_VARIANCE_EPSILON, name=self.name("batchnorm"))
            y = norm(y)
            layers.append(norm)
        self.weighted.append(("convolutional", section, layers))
        return self.activate(y, _activation(section))

    def maxpool(self, section: Section, x: Symbol) -> Symbol:
        stride = _int(section, "stride", 1, minimum=1)
        size = _int(section, "size", stride, minimum=1)
        pad = _int(section, "padding", size - 1)
        h, w = x.shape[1:]
        out = ((h + pad - size) // stride + 1, (w + pad - size) // stride + 1)
        same = tuple(-(-d // stride) for d in (h, w))
        totals = [max((o - 1) * stride + size - d, 0) for o, d in zip(same, (h, w))]
        if out != same or any(total // 2 != pad // 2 for total in totals):
            raise ValueError(f"line {section.line}: [maxpool] size={size} stride={stride} padding={pad} on "
                             f"{h}x{w} images pads as Keras's 'same' cannot; this loader reads maxpools whose "
                             "padding matches it")
        return MaxPool2D(size, strides=stride, padding="same", name=self.name("maxpool"))(x)


def build(sections: list[Section], device="auto", dtype: str = "float32", seed: int | None = None,
          ) -> tuple[Model, list[tuple[str, Section, list[Layer]]]]:
    """The model the sections describe, and its layers that read weights."""
    net = sections[0]
    shape = (_int(net, "channels", 3, minimum=1), _int(net, "height", minimum=1), _int(net, "width", minimum=1))
    image = Input(shape, name="image")
    builder = _Builder()
    x = image
    for section in sections[1:]:
        try:
            x = builder.add(section, x)
        except ValueError as error:
            message = str(error)
            raise ValueError(message if message.startswith("line ") else f"line {section.line}: {message}") from None
        builder.outputs.append(x)
    if not builder.outputs:
        raise ValueError("expected at least one layer after [net]")
    model = Model(inputs=image, outputs=x, device=device, dtype=dtype, seed=seed, name="darknet")
    return model, builder.weighted


# ---------------------------------------------------------------- weights
def _reads(kind: str, layers: list[Layer]) -> list[tuple[Layer, str, tuple[int, ...]]]:
    """What one weighted Darknet layer reads, in the file's order: (layer,
    attribute, shape as stored). The biases go to the BatchNormalization's
    beta when the layer is normalized."""
    main, norm = layers[0], (layers[1] if len(layers) > 1 else None)
    units = main.filters if kind == "convolutional" else main.units
    biases = (norm, "beta", (units,)) if norm else (main, "biases", (units,))
    normalization = [(norm, "gamma", (units,)), (norm, "moving_mean", (units,)),
                     (norm, "moving_variance", (units,))] if norm else []
    if kind == "convolutional":
        return [biases, *normalization, (main, "weights", tuple(main.weights.shape))]
    return [biases, (main, "weights", (units, main.weights.shape[0])), *normalization]  # Darknet's (outputs, inputs)


def _owner(weighted: list[tuple[str, Section, list[Layer]]], index: int) -> str:
    """Which tensor float ``index`` of a file (after the header) fills."""
    offset = 0
    for kind, section, layers in weighted:
        for layer, attribute, shape in _reads(kind, layers):
            offset += int(np.prod(shape))
            if index < offset:
                return f"{layer.name}'s {attribute}, from the [{kind}] at line {section.line}"
    return "past the network's weights"


def read_weights(weighted: list[tuple[str, Section, list[Layer]]], path) -> dict[str, Any]:
    """Fill the weighted layers from a Darknet ``.weights`` file and return
    its header (major, minor, revision, seen). FormatError naming the file
    and both sizes when the file is not the size the network needs; nothing
    is changed then."""
    path = Path(path)
    plan = [(kind, layers, _reads(kind, layers)) for kind, _, layers in weighted]
    floats = sum(int(np.prod(shape)) for _, _, reads in plan for _, _, shape in reads)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12:
            raise FormatError(f"{path}: {size} bytes, too short for a Darknet weights file (a 16 or 20 byte header)")
        major, minor, revision = struct.unpack("<3i", head)
        wide = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
        header = 12 + (8 if wide else 4)
        expected = header + 4 * floats
        if size != expected:
            raise FormatError(f"{path}: {size:,} bytes, but this network's {floats:,} weights after a "
                              f"{header}-byte header (version {major}.{minor}) take {expected:,}")
        seen = struct.unpack("<Q" if wide else "<I", f.read(header - 12))[0]
        data = np.frombuffer(f.read(), dtype="<f4")
    bad = np.flatnonzero(~np.isfinite(data))
    if bad.size:
        raise FormatError(f"{path}: NaN or infinite values ({bad.size:,}), the first at float "
                          f"{bad[0]:,} after the header ({_owner(weighted, int(bad[0]))}); nothing was changed")
    transposed = major > 1000 or minor > 1000  # connected weights stored (inputs, outputs)
    values: list[tuple[Layer, str, np.ndarray]] = []
    offset = 0
    for kind, layers, reads in plan:
        for layer, attribute, shape in reads:
            count = int(np.prod(shape))
            array = data[offset : offset + count].astype(np.float32)
            offset += count
            if kind == "connected" and attribute == "weights":  # a Dense holds (inputs, units)
                array = array.reshape(shape[::-1]) if transposed else array.reshape(shape).T
            else:
                array = array.reshape(shape)
            if attribute == "moving_variance":  # Darknet's epsilon outside the root, as a variance
                deviation = np.sqrt(np.maximum(array.astype(np.float64), 0)) + DARKNET_EPSILON
                array = (deviation**2 - _VARIANCE_EPSILON).astype(np.float32)
            values.append((layer, attribute, array))
    for layer, attribute, value in values:
        setattr(layer, attribute, value)
    return {"major": major, "minor": minor, "revision": revision, "seen": seen}


def load(cfg_path, weights_path=None, device="auto", dtype: str = "float32", seed: int | None = None) -> Model:
    """A Model from a Darknet ``.cfg`` and, when given, its ``.weights``
    (without them the weights are drawn from ``seed`` as any model's)."""
    model, weighted = build(parse_cfg(cfg_path), device=device, dtype=dtype, seed=seed)
    if weights_path is not None:
        read_weights(weighted, weights_path)
    return model
