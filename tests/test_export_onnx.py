"""model.export(path) writes an ONNX file that onnx.checker accepts and
onnxruntime runs, at any batch size, to predict's outputs."""

import sys

import numpy as np
import pytest

from export_models import ATOL, MODELS, RTOL, Doubling, inputs, mlp

from intricate_py import Input, Model
from intricate_py.layers import (Add, BatchNormalization, Dense, Embedding, LayerNormalization, MultiHeadAttention,
                                 PositionEmbedding, Reshape, TanH)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_onnx_runs_to_predicts_outputs(kind, tmp_path):
    model = MODELS[kind]()
    path = tmp_path / f"{kind}.onnx"
    assert model.export(path) == [path]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    x = inputs(model, 1000)
    for batch in (x, x[:1], x[:7]):  # the batch dimension is free
        np.testing.assert_allclose(run(path, batch), model.predict(batch), rtol=RTOL, atol=ATOL)


def test_onnx_graph_names_shapes_and_weights(tmp_path):
    model = mlp()
    model.export(tmp_path / "mlp.onnx", name="classifier")
    proto = onnx.load(str(tmp_path / "mlp.onnx"))
    assert proto.graph.name == "classifier" and proto.producer_name == "intricate-py"
    assert [o.version for o in proto.opset_import] == [17]
    (x,), (y,) = proto.graph.input, proto.graph.output
    assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["n", 7]
    assert [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim] == ["n", 4]
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Tanh", "Gemm", "Sigmoid", "Gemm", "Relu", "Gemm",
                                                     "Softmax"]
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    np.testing.assert_array_equal(weights["0.weight"], model.layers[0].weights)
    np.testing.assert_array_equal(weights["6.bias"], model.layers[6].biases)
    assert "Dense(7→16)" not in proto.graph.doc_string and "0: Dense(7->16) -> (n, 16)" in proto.graph.doc_string


def test_onnx_from_the_gpu_and_from_float64(tmp_path, device):
    for model in (mlp(device=device), mlp(dtype="float64") if device == "cpu" else None):
        if model is None:
            continue
        model.export(tmp_path / "m.onnx")
        x = inputs(model, 50)
        np.testing.assert_allclose(run(tmp_path / "m.onnx", x), model.predict(x), rtol=RTOL, atol=ATOL)


def test_onnx_refuses_an_unknown_layer_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    model = Model([Dense(3), Doubling(), TanH()], input_size=2, device="cpu")
    with pytest.raises(ValueError, match=r"layer 1 Doubling\(\) to ONNX.*knows .*Conv2D, Dense.*a Doubling layer"):
        model.export(path)
    assert path.read_bytes() == b"previous"


def test_onnx_without_the_onnx_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'intricate-py\[export\]'"):
        mlp().export(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_export_rejects_unknown_formats_and_unbuilt_models(tmp_path):
    with pytest.raises(ValueError, match=r"expected format='onnx' or format='c'. Received: format='tflite'"):
        mlp().export(tmp_path / "m.tflite", format="tflite")
    with pytest.raises(ValueError, match="input shape is not known yet"):
        Model([Dense(3)], device="cpu").export(tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mlp().export(tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="Received: name=''"):
        mlp().export(tmp_path / "m.onnx", name="")


def test_a_graph_name_that_is_not_text_is_refused(tmp_path):
    """Issue 26 item 9: a lone surrogate is no character; protobuf cannot
    hold it, and the export says so as a ValueError, writing nothing."""
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match=r"no lone surrogate\) for the graph's name. Received: name='\\ud800'"):
        mlp().export(tmp_path / "net.onnx", name="\ud800")
    assert list(tmp_path.iterdir()) == []


def test_a_causal_transformer_language_model_runs_to_predicts_logits(tmp_path):
    """Issue 25 item 9: token and position embeddings added, a pre-LayerNorm
    block (causal self-attention, a GELU MLP, residual Adds) and logits over
    the vocabulary, on sequences of an odd length, exported with every
    parameter nonzero: onnxruntime gives predict's logits, at any batch size."""
    T, V, E = 7, 13, 12
    ids = Input((T,), name="ids")
    h = Embedding(V, E)(ids)
    h = Add()([h, PositionEmbedding(9)(h)])  # a table longer than the sequences
    n = LayerNormalization()(h)
    h = Add()([h, MultiHeadAttention(3, 4, value_dim=5)(n, n, use_causal_mask=True)])
    h = Add()([h, Dense(E)(Dense(2 * E, activation="gelu")(LayerNormalization()(h)))])
    model = Model(ids, Dense(V)(LayerNormalization()(h)), device="cpu", seed=3)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        layer.set_weights([w + rng.normal(0, 0.3, w.shape) for w in layer.get_weights()])
    path = tmp_path / "lm.onnx"
    model.export(path)
    proto = onnx.load(str(path))
    ops = [node.op_type for node in proto.graph.node]
    assert {"Gather", "Expand", "Where", "Softmax", "LayerNormalization", "MatMul", "Erf"} <= set(ops)
    assert "Gemm" not in ops  # every Dense here acts on sequences
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    x = rng.integers(0, V, (20, T)).astype(np.float32)
    want = model.predict(x)
    assert want.shape == (20, T, V)
    for batch in (x, x[:1], x[:5]):
        np.testing.assert_allclose(session.run(None, {name: batch})[0], model.predict(batch), rtol=1e-5, atol=1e-5)
    # causal: changing the last token changes no earlier position's logits
    changed = x.copy()
    changed[:, -1] = (changed[:, -1] + 1) % V
    other = session.run(None, {name: changed})[0]
    np.testing.assert_allclose(other[:, :-1], session.run(None, {name: x})[0][:, :-1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(other[:, -1], want[:, -1])


def test_a_batch_normalization_of_positions_after_a_dense_of_sequences_is_not_folded(tmp_path):
    """BatchNormalization(axis=1) after a Dense of sequences normalizes the
    positions, not the Dense's units (here as many): it cannot fold into the
    product's columns."""
    x = Input(6, name="x")
    y = BatchNormalization(axis=1)(Dense(4)(Reshape((4, 4))(Dense(16)(x))))
    model = Model(x, y, device="cpu", seed=1)
    rng = np.random.default_rng(0)
    norm = model.layers[-1]
    norm.set_weights([w + rng.uniform(0.1, 1, w.shape) for w in norm.get_weights()])
    model.export(tmp_path / "m.onnx")
    assert "BatchNormalization" in [node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    batch = rng.normal(size=(9, 6)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": batch})[0], model.predict(batch), rtol=1e-5, atol=1e-6)
