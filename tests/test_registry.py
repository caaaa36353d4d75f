"""Every layer type the library ships, walked one by one: each must have a
case here, and with it a numpy-versus-GPU parity check on odd shapes, a
float64 gradient check (central differences), a save/load round trip (the
layer's own file and a model's), and a writer in both exporters (ONNX and
C), checked by running the export. A new layer type fails
``test_every_layer_type_has_a_case`` until it is added to ``CASES``, which
DEVELOPERS.md's "Adding a layer" checklist walks through.

A case builds a small model around the layer: Dense or Conv2D layers before
it, so that a layer without parameters still has its backward pass
checked through the gradients of the parameters before it.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pytest

import intricate_py.layers as layers_module
from graph_models import numeric_gradients, plan_gradients
from intricate_py import Input, Model
from intricate_py.export import c as c_export
from intricate_py.export import onnx as onnx_export
from intricate_py.layers import (ELU, GELU, Add, Average, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Dense,
                                 Dropout, Embedding, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Layer,
                                 LayerNormalization, LeakyReLU, MaxPool2D, MultiHeadAttention, Multiply, PositionEmbedding,
                                 ReLU, Reshape, Sigmoid, SiLU, Softmax, Softplus, Subtract, TanH, UpSampling2D, ZeroPadding2D)


def _dense_then(layer_factory: Callable[[], Layer], width: int = 6):
    def build():
        x = Input(5, name="x")
        return [x], [layer_factory()(Dense(width, name="before")(x))]
    return build


def _image_then(layer_factory: Callable[[], Layer], channels: int = 3):
    def build():
        x = Input((2, 7, 5), name="x")
        return [x], [layer_factory()(Conv2D(channels, 1, name="before")(x))]
    return build


def _merge(layer_factory: Callable[[], Layer], count: int = 2):
    def build():
        inputs = [Input(3 + 2 * k, name=f"x{k}") for k in range(count)]
        return inputs, [layer_factory()([Dense(4, name=f"before{k}")(x) for k, x in enumerate(inputs)])]
    return build


def _concatenate(axis: int):
    """Images of 2 and 1 channels side by side along ``axis`` (for an axis
    other than the channels', both convolutions make 2 channels)."""
    def build():
        a, b = Input((2, 3, 5), name="a"), Input((1, 3, 5), name="b")
        parts = [Conv2D(2, 1, name="before_a")(a), Conv2D(1 if axis == 1 else 2, 1, name="before_b")(b)]
        return [a, b], [Concatenate(axis=axis)(parts)]
    return build


def _sequence_then(layer_factory: Callable[[], Layer]):
    """(3, 5) sequences of 3 positions and 5 features, a Dense's outputs
    reshaped: a layer of the last axis on a rank-2 sample."""
    def build():
        x = Input(5, name="x")
        return [x], [layer_factory()(Reshape((3, 5))(Dense(15, name="before")(x)))]
    return build


def _sequence(width: int = 5, length: int = 3, name: str = "x"):
    """An input and (length, width) sequences made from it by a Dense and a Reshape."""
    x = Input(6, name=name)
    return x, Reshape((length, width))(Dense(length * width, name=f"before_{name}")(x))


def _embedding():
    """Ids of 4 positions, 7 possible, to vectors of 5, then a Dense of each position."""
    ids = Input(4, name="ids")
    return [ids], [Dense(3, name="after")(Embedding(7, 5)(ids))]


def _position_embedding():
    """x + PositionEmbedding(x) on sequences shorter than its table."""
    x, h = _sequence()
    return [x], [Add()([h, PositionEmbedding(4)(h)])]


def _self_attention(**options):
    def build():
        x, h = _sequence()
        return [x], [MultiHeadAttention(2, 3, **options)(h, h, use_causal_mask=True)]
    return build


def _cross_attention():
    """A query of 3 positions over a value of 4 and a key of its own, value_dim
    and output_shape given, no biases."""
    (x, q), (y, v), (z, k) = _sequence(5, 3, "q"), _sequence(6, 4, "v"), _sequence(2, 4, "k")
    mha = MultiHeadAttention(3, 2, value_dim=4, output_shape=7, use_bias=False)
    return [x, y, z], [mha(q, v, key=k)]


def _batch_norm_between():
    """A Conv2D, a BatchNormalization and a ReLU (the fold's pattern in the
    exporters), then a Dense and a BatchNormalization of its units, then
    one of the last axis."""
    x = Input((2, 5, 3), name="x")
    h = ReLU()(BatchNormalization()(Conv2D(3, 2, name="before")(x)))
    h = BatchNormalization(axis=-1, center=False)(Dense(4, name="dense")(Flatten()(h)))
    return [x], [BatchNormalization(axis=-1, momentum=0.5, scale=False)(h)]


def _conv():
    x = Input((2, 7, 5), name="x")
    return [x], [Conv2D(3, (3, 2), stride=(2, 1), padding=1)(x)]


def _dense(activation: str | None = None):
    def build():
        x = Input(7, name="x")
        return [x], [Dense(5, activation=activation)(x)]
    return build


def _dense_without_bias_then_batch_norm():
    """Dense(use_bias=False) before a BatchNormalization, as Keras users
    write it: the exporters fold the normalization into the product."""
    x = Input(7, name="x")
    return [x], [BatchNormalization(momentum=0.8)(Dense(5, use_bias=False)(x))]


def _conv_with(activation: str):
    """A Conv2D with its own activation, then a Dense (which folds nothing: the
    activation is the convolution's own)."""
    def build():
        x = Input((2, 5, 4), name="x")
        h = Conv2D(3, 2, padding=1, activation=activation)(x)
        return [x], [Dense(3, name="after")(Flatten()(h))]
    return build


def _dense_then_dense(activation: str):
    """Dense(activation=) between two Dense layers, after a TanH: its own
    activation, and TanH's gradient folded into its dY·Wᵀ product."""
    def build():
        x = Input(5, name="x")
        h = Dense(6, name="before")(x)
        return [x], [Dense(4, name="after")(Dense(7, activation=activation)(TanH()(h)))]
    return build


#: layer type -> (builds (inputs, outputs) around it, the shapes are odd on purpose)
CASES: dict[type, list[Callable]] = {
    Dense: [_sequence_then(lambda: Dense(4, activation="gelu")), _sequence_then(lambda: Dense(4, "softmax")),
            _dense(), _dense("leaky_relu"), _dense("softmax"), _dense_then_dense("gelu"),
            _dense_then_dense("elu"), _dense_then_dense("swish"), _dense_then(lambda: Dense(4, "tanh", False)),
            _dense_without_bias_then_batch_norm],
    TanH: [_dense_then(TanH)],
    Sigmoid: [_dense_then(Sigmoid)],
    ReLU: [_dense_then(ReLU)],
    Softmax: [_dense_then(Softmax)],
    LeakyReLU: [_dense_then(LeakyReLU), _dense_then(lambda: LeakyReLU(negative_slope=0.0))],
    ELU: [_dense_then(ELU), _dense_then(lambda: ELU(alpha=-0.7)), _image_then(lambda: ELU(alpha=0.5))],
    GELU: [_dense_then(GELU), _dense_then(lambda: GELU(approximate=True)), _image_then(GELU)],
    SiLU: [_dense_then(SiLU), _image_then(SiLU)],
    Softplus: [_dense_then(Softplus)],
    Conv2D: [
        _conv,
        _conv_with("relu"), _conv_with("gelu"), _conv_with("softplus"), _conv_with("sigmoid"),
        _image_then(lambda: Conv2D(4, (2, 4), strides=(3, 2), padding="same")),  # even kernel: more padding after
        _image_then(lambda: Conv2D(3, (3, 2), dilation_rate=(2, 3), padding=1, strides=(1, 2))),
        _image_then(lambda: Conv2D(6, 3, groups=2, strides=2, padding="same"), channels=4),
        _image_then(lambda: Conv2D(3, (2, 3), groups=3, dilation_rate=2, padding="same")),  # depthwise
        _image_then(lambda: Conv2D(6, (3, 1), groups=3, strides=(2, 3), use_bias=False)),  # depthwise, 2 a channel
        _image_then(lambda: Conv2D(2, 2, use_bias=False, padding="same")),
        _image_then(lambda: Conv2D(6, 3, groups=2, padding="same", activation="elu"), channels=4),
    ],
    MaxPool2D: [_image_then(lambda: MaxPool2D(3, stride=2, padding=1)), _image_then(lambda: MaxPool2D((2, 1))),
                _image_then(lambda: MaxPool2D((2, 4), strides=(3, 2), padding="same"))],
    AveragePooling2D: [_image_then(lambda: AveragePooling2D(3, strides=2, padding=1)),
                       _image_then(lambda: AveragePooling2D((2, 4), strides=(3, 2), padding="same")),
                       _image_then(lambda: AveragePooling2D((3, 2)))],
    GlobalAveragePooling2D: [_image_then(GlobalAveragePooling2D),
                             _image_then(lambda: GlobalAveragePooling2D(keepdims=True))],
    GlobalMaxPooling2D: [_image_then(GlobalMaxPooling2D), _image_then(lambda: GlobalMaxPooling2D(keepdims=True))],
    UpSampling2D: [_image_then(UpSampling2D), _image_then(lambda: UpSampling2D((3, 2)))],
    ZeroPadding2D: [_image_then(ZeroPadding2D), _image_then(lambda: ZeroPadding2D(((2, 0), (1, 3))))],
    Flatten: [_image_then(Flatten)],
    Reshape: [_dense_then(lambda: Reshape((2, -1)))],
    Dropout: [_dense_then(lambda: Dropout(0.4, seed=3), width=9)],
    Add: [_merge(Add), _merge(Add, 3)],
    Subtract: [_merge(Subtract)],
    Multiply: [_merge(Multiply), _merge(Multiply, 3)],
    Average: [_merge(Average), _merge(Average, 3)],
    Concatenate: [_concatenate(1), _concatenate(-1), _concatenate(2)],
    BatchNormalization: [_image_then(BatchNormalization), _dense_then(lambda: BatchNormalization(momentum=0.7)),
                         _image_then(lambda: BatchNormalization(axis=-1, epsilon=0.01)),
                         _image_then(lambda: BatchNormalization(axis=2, center=False, scale=False)),
                         _batch_norm_between],
    Embedding: [_embedding],
    PositionEmbedding: [_position_embedding],
    MultiHeadAttention: [_self_attention(), _self_attention(dropout=0.3, seed=5), _cross_attention],
    LayerNormalization: [_dense_then(LayerNormalization), _image_then(lambda: LayerNormalization(epsilon=0.1)),
                         _sequence_then(lambda: LayerNormalization(scale=False))],
}

CASE_IDS = [(cls, i) for cls, builds in CASES.items() for i in range(len(builds))]


def shipped_layer_types() -> set[type]:
    """The concrete layer types of ``intricate_py.layers``."""
    from intricate_py.layers.registry import LAYER_TYPES

    public = [getattr(layers_module, name) for name in layers_module.__all__]
    return {cls for cls in LAYER_TYPES.values() if any(cls is p for p in public)}


def test_every_layer_type_has_a_case():
    missing = sorted(cls.__name__ for cls in shipped_layer_types() - set(CASES))
    assert missing == [], f"add a case to tests/test_registry.py CASES for {missing} (DEVELOPERS.md: Adding a layer)"


def model_of(cls: type, i: int, device: str = "cpu", dtype: str = "float32", seed: int = 0) -> Model:
    inputs, outputs = CASES[cls][i]()
    model = Model(inputs=inputs, outputs=outputs, device=device, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 7)  # nonzero biases
    for layer in model.layers:
        if "b" in layer.params:
            layer.biases = rng.normal(0, 0.3, layer.biases.shape)
    assert any(isinstance(layer, cls) for layer in model.layers)
    return model


def _ids_for(model: Model, symbol) -> int | None:
    """The table size of an Embedding that reads ``symbol``, if one does."""
    for node in model.plan.nodes:
        if isinstance(node.layer, Embedding) and any(s is symbol for s in node.inputs):
            return node.layer.input_dim
    return None


def data_for(model: Model, n: int = 7, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    xs = []
    for s in model.inputs:
        vocab = _ids_for(model, s)
        xs.append(rng.normal(size=(n, *s.shape)) if vocab is None else rng.integers(0, vocab, (n, *s.shape)).astype(float))
    rs = [rng.normal(size=(n, *s.shape)) for s in model.outputs]
    return xs, rs


def case_id(case) -> str:
    return f"{case[0].__name__}-{case[1]}"


@pytest.mark.parametrize("case", CASE_IDS, ids=case_id)
def test_gradients_equal_central_differences_in_float64(case):
    model = model_of(*case, dtype="float64")
    xs, rs = data_for(model, n=3)
    _, grads = plan_gradients(model, xs, rs)
    numeric = numeric_gradients(model, xs, rs)
    assert numeric, "a case needs a parameter before (or in) the layer"
    for key, value in numeric.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-6, atol=1e-8, err_msg=str(key))


@pytest.mark.parametrize("case", CASE_IDS, ids=case_id)
def test_the_gpu_computes_what_numpy_computes(gpu, case):
    cpu, on_gpu = model_of(*case, device="cpu"), model_of(*case, device="gpu")
    xs, rs = data_for(cpu)
    want_outs, want_grads = plan_gradients(cpu, xs, rs)
    outs, grads = plan_gradients(on_gpu, xs, rs)
    for got, want in zip(outs, want_outs):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(want_grads)
    for (key, got), want in zip(grads.items(), want_grads.values()):  # the same layers, in order
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=str(key))
    np.testing.assert_allclose(on_gpu.predict(xs), cpu.predict(xs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASE_IDS, ids=case_id)
def test_files_round_trip(tmp_path, case):
    model = model_of(*case)
    model.save(tmp_path / "model.safetensors")
    loaded = Model.load(tmp_path / "model.safetensors", device="cpu")
    xs, _ = data_for(model)
    np.testing.assert_array_equal(loaded.predict(xs), model.predict(xs))
    layer = next(layer for layer in model.layers if isinstance(layer, case[0]))
    layer.save(tmp_path / "layer.safetensors")
    again = Layer.load(tmp_path / "layer.safetensors")
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    for name, tensor in layer.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], tensor)


@pytest.mark.parametrize("case", CASE_IDS, ids=case_id)
def test_both_exporters_write_it(tmp_path, case):
    """A writer in each format's table; the ONNX file runs in onnxruntime and
    gives predict's outputs (the C exporter's numbers are checked by
    tests/test_export_c.py and tests/test_export_graph.py, compiled). A
    layer type that the C exporter lists in ``REFUSED`` is refused with a
    ValueError naming the layer and saying why."""
    cls = case[0]
    assert cls in onnx_export.NODES, f"no ONNX writer for {cls.__name__}"
    model = model_of(*case)
    if cls in c_export.REFUSED:
        assert cls not in c_export.WRITERS
        index = next(i for i, layer in enumerate(model.layers) if isinstance(layer, cls))
        with pytest.raises(ValueError, match=rf"cannot export layer {index} .* to C: {re.escape(c_export.REFUSED[cls])}"):
            c_export.c_source(model, "net")
    else:
        assert cls in c_export.WRITERS, f"no C writer for {cls.__name__}"
        source, header = c_export.c_source(model, "net")
        assert "void net(" in header
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model.export(tmp_path / "net.onnx")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    xs, _ = data_for(model)
    feeds = {i.name: x.astype(np.float32) for i, x in zip(session.get_inputs(), xs)}
    want = model.predict(xs)
    for got, w in zip(session.run(None, feeds), want if len(model.outputs) > 1 else [want]):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)
