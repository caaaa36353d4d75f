"""What both exporters share: the nodes of a model in order with their
labels, the names of its inputs and outputs, the architecture as text for
the files' comments, and the batch normalizations folded into the
products before them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from ..layers import BatchNormalization, Conv2D, Dense
from ..naming import batch_shape_text, shape_text as _shape_text

if TYPE_CHECKING:
    from ..graph import Node, Symbol
    from ..layers import Layer
    from ..model import Model


def exported_layers(model: "Model", table: dict[type, Callable], what: str, hook: str) -> list["Layer"]:
    """The model's layers after checking that it is built and that ``table``
    (the ``what`` exporter's) has a writer for each layer's exact type (a
    subclass may compute something else, so it is not taken for its base),
    or the layer defines the exporter's ``hook`` (``onnx_nodes``, ``c_code``)."""
    if not model.built:
        raise ValueError(
            f"cannot export {model!r} to {what}: its input shape is not known yet "
            "(give input_size, or call predict or fit once)"
        )
    for i, layer in enumerate(model.layers):
        if type(layer) not in table and not has_hook(layer, hook):
            known = known_layers(table)
            name = type(layer).__name__
            raise ValueError(
                f"cannot export layer {i} {layer!r} to {what}: the {what} exporter knows {known}. "
                f"Received: a {name} layer, which does not define {name}.{hook} (the hook by which a layer of "
                f"your own writes its {what} code: see Layer.{hook})"
            )
        for tensor, value in layer.state_dict().items():
            _check_float32(value, f"cannot export layer {i} {layer!r} to {what}: its {tensor}")
    return list(model.layers)


def has_hook(layer: "Layer", hook: str) -> bool:
    """Whether ``layer``'s class defines the export hook ``hook`` (Layer's own raises)."""
    from ..layers import Layer

    return getattr(type(layer), hook, None) is not getattr(Layer, hook)


def _check_float32(value: np.ndarray, what: str) -> None:
    """ValueError ("``what`` holds ...") unless every value is finite once
    cast to float32, which both formats hold: a float64 model's 1e39 is
    finite, its float32 is inf (as loading checks values after the cast)."""
    if not np.isfinite(value).all():
        raise ValueError(f"{what} holds NaN or inf")
    with np.errstate(over="ignore"):
        cast = value.astype(np.float32)
    if not np.isfinite(cast).all():
        k = tuple(int(j) for j in np.argwhere(~np.isfinite(cast))[0])
        raise ValueError(f"{what} holds {value[k]} at index {k}, which does not fit float32 (magnitudes up to "
                         f"{np.finfo(np.float32).max:.4g}), the exported files' precision")


class Site(NamedTuple):
    """Where a node is in the exported model: ``index``, its layer's in
    ``model.layers`` (the layer's weights are named by it), and ``call``,
    which call of that layer the node is (0 for the first; only a shared
    layer has more)."""

    index: int
    call: int

    @property
    def label(self) -> str:
        """``3`` for the first call of layer 3, ``3.1`` for its second."""
        return str(self.index) if self.call == 0 else f"{self.index}.{self.call}"


def known_layers(table: dict[type, Callable]) -> str:
    """The layer types of ``table`` for messages: those of one input in
    alphabetical order, then the merge layers (of several inputs)."""
    single = sorted(t.__name__ for t in table if t.n_inputs == 1)
    merging = sorted(t.__name__ for t in table if t.n_inputs != 1)
    if not merging:
        return ", ".join(single)
    return f"{', '.join(single)}, and the merge layers {', '.join(merging)}"


def exported_nodes(model: "Model") -> list[tuple[Site, "Node"]]:
    """Each of ``model.plan.nodes`` in execution order, with its Site."""
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    calls: dict[int, int] = {}
    nodes = []
    for node in model.plan.nodes:
        key = id(node.layer)
        calls[key] = calls.get(key, -1) + 1
        nodes.append((Site(index[key], calls[key]), node))
    return nodes


def io_names(model: "Model") -> tuple[list[str], list[str]]:
    """The names of the exported inputs and outputs: ``x`` and ``y`` for a
    path of layers, else the model's input and output names."""
    if model.is_path:
        return ["x"], ["y"]
    return list(model.input_names), list(model.output_names)


def architecture_lines(model: "Model") -> list[str]:
    """The layers (``layer_text``) and their output shapes, one line each.
    A path lists its layers in order; a graph its inputs, its nodes (each
    with its layer's name and what it reads: a node's label or an input's
    name) and its outputs. Names are as given, which may not be ASCII."""
    if model.is_path:
        lines = [f"input {batch_shape_text(model.input_shape)}"]
        for i, layer in enumerate(model.layers):
            lines.append(f"{i}: {layer_text(layer)} -> {batch_shape_text(layer.output_shape)}")
        return lines
    sources = {id(s): repr(s.name) for s in model.inputs}
    lines = [f"input {s.name!r} {batch_shape_text(s.shape)}" for s in model.inputs]
    for site, node in exported_nodes(model):
        reads = ", ".join(sources[id(s)] for s in node.inputs)
        lines.append(f"{site.label}: {node.layer.name} {layer_text(node.layer)} <- {reads} "
                     f"-> {batch_shape_text(node.output.shape)}")
        sources[id(node.output)] = site.label
    for name, symbol in zip(model.output_names, model.outputs):
        lines.append(f"output {name!r} <- {sources[id(symbol)]} {batch_shape_text(symbol.shape)}")
    return lines


def sample_size(symbol: "Symbol") -> int:
    """The values of one sample of ``symbol``."""
    return int(np.prod(symbol.shape))


def layer_text(layer: "Layer") -> str:
    """``repr(layer)`` in ASCII."""
    return repr(layer).replace("→", "->").replace("×", "x")


def shape_text(shape) -> str:
    return _shape_text(tuple(shape))


class Folds(NamedTuple):
    """Batch normalizations folded into the Dense or Conv2D before them:
    ``products`` maps the ``id`` of such a product's layer (called at one
    node) to its folded (weights, biases), and ``folded`` holds the ``id``
    of each batch normalization's node that the product now computes."""

    products: dict[int, tuple[np.ndarray, np.ndarray]]
    folded: frozenset[int]


def batch_norm_folds(model: "Model") -> Folds:
    """The batch normalizations that can fold, in inference, into the
    product before them: a BatchNormalization of the product's output
    channels (axis 1) whose node reads a Dense or Conv2D node whose output
    nothing else reads (no other node, no model output), of a layer called
    at that one node (a shared layer's weights serve its other calls
    unchanged). Then ``y = a · (product) + (beta - a · mean)``, with
    ``a = gamma / sqrt(moving_variance + epsilon)`` per channel, is one
    product: ``W'[f] = a[f] · W[f]``, ``b' = a · (b - mean) + beta``,
    exact up to rounding (computed in float64, written in float32)."""
    plan = model.plan
    calls: dict[int, int] = {}
    for node in plan.nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    products: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    folded = set()
    for j, node in enumerate(plan.nodes):
        source = node.inputs[0].node if type(node.layer) is BatchNormalization else None
        if source is None or type(source.layer) not in (Dense, Conv2D) or calls[id(source.layer)] != 1 \
                or source.layer.activation is not None:  # its own activation comes between
            continue
        if type(source.layer) is Dense and len(source.layer.output_shape) != 1:
            continue  # a Dense of sequences: axis 1 is its positions, not its units
        alone = plan.consumers[id(source.output)] == [j] and all(s is not source.output for s in model.outputs)
        if alone and node.layer.batch_axis() == 1:
            products[id(source.layer)] = folded_product(source.layer, node.layer)
            folded.add(id(node))
    return Folds(products, frozenset(folded))


def product_arrays(product: "Layer") -> tuple[np.ndarray, np.ndarray | None]:
    """A Dense's or Conv2D's (weights, biases), biases None where it has none."""
    return product.weights, product.biases if getattr(product, "use_bias", True) else None


def folded_product(product: "Layer", norm: BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """The (weights, biases) of ``product`` (a Dense or a Conv2D, in its
    ``weights`` layout) followed by ``norm`` in inference, in float32."""
    weights, biases = product_arrays(product)
    c = norm.channels
    weights = weights.astype(np.float64)
    biases = biases.astype(np.float64) if biases is not None else np.zeros(c)
    gamma = norm.gamma.astype(np.float64) if norm.scale else np.ones(c)
    beta = norm.beta.astype(np.float64) if norm.center else np.zeros(c)
    mean = norm.moving_mean.astype(np.float64)
    a = gamma * _inverse_deviation(norm, np.float64, "")
    # Dense's W is (inputs, units): a scales its columns; Conv2D's (filters, ...): its first axis
    scaled = weights * a if isinstance(product, Dense) else weights * a.reshape(-1, *(1,) * (weights.ndim - 1))
    biases = (biases - mean) * a + beta
    what = f"cannot export {product.name} {product!r} with {norm.name} {norm!r} folded into it: its folded"
    _check_float32(scaled, f"{what} weight")
    _check_float32(biases, f"{what} bias")
    return scaled.astype(np.float32), biases.astype(np.float32)


def _inverse_deviation(norm: BatchNormalization, dtype, precision: str) -> np.ndarray:
    """r = 1 / sqrt(moving_variance + epsilon) of ``norm`` in ``dtype``;
    ValueError naming the channel (``precision`` after its value) where it
    is not finite."""
    t = np.dtype(dtype).type
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        r = np.divide(t(1), np.sqrt(norm.moving_variance.astype(t) + t(norm.epsilon)))
    if not np.isfinite(r).all():
        k = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ValueError(f"cannot export {norm.name} {norm!r}: 1 / sqrt(moving_variance + epsilon) of channel {k} "
                         f"is {r[k]}{precision} (moving_variance {norm.moving_variance[k]}, epsilon {norm.epsilon})")
    return r


def batch_norm_terms(norm: BatchNormalization) -> tuple[np.ndarray, ...]:
    """(mean, r, gamma, beta) of ``norm`` in inference, in float32, r =
    1 / sqrt(moving_variance + epsilon) computed as the numpy backend
    computes it: ``((x - mean) · r) · gamma + beta`` in float32 is then
    predict's output on the CPU, operation for operation."""
    t = np.float32
    c = norm.channels
    mean = norm.moving_mean.astype(t)
    r = _inverse_deviation(norm, t, " in float32, the exported files' precision")
    gamma = norm.gamma.astype(t) if norm.scale else np.ones(c, t)
    beta = norm.beta.astype(t) if norm.center else np.zeros(c, t)
    return mean, r, gamma, beta
