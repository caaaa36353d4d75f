"""model.export(path) writes an ONNX file that onnx.checker accepts and
onnxruntime runs, at any batch size, to predict's outputs."""

import sys

import numpy as np
import pytest

from export_models import ATOL, MODELS, RTOL, Doubling, inputs, mlp

from intricate_py import Model
from intricate_py.layers import Dense, TanH

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
