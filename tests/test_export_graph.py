"""model.export for graph models (Input, merge layers, Reshape, shared
layers, several inputs and outputs): the ONNX file runs in onnxruntime and
the C source, compiled by gcc, runs as a library, both to predict's
outputs; a path of layers keeps its single ``x`` and ``y``."""

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export_models import ATOL, RTOL, STRICT, Doubling, build_c, random_biases

import intricate_py.layers
from intricate_py import Input, Model
from intricate_py.export.c import REFUSED, WRITERS, parameter_names
from intricate_py.export.onnx import NODES
from intricate_py.layers import (Add, Average, Concatenate, Conv2D, Dense, Dropout, Flatten, MaxPool2D,
                                 Multiply, ReLU, Reshape, Sigmoid, Softmax, Subtract, TanH)

def vision_graph() -> Model:
    """Two inputs (an image and a vector) and two outputs: Concatenate on
    the channels (axis 1), on the last axis and on the rows (axis 2), a
    Dense shared by a call on each branch, a residual block, Average and
    Multiply of three, Subtract, Reshape to an image and back (with -1),
    Dropout, and an output also read by another layer."""
    image, extra = Input((2, 6, 6), name="image"), Input(5, name="extra")
    c1 = ReLU(name="c1_relu")(Conv2D(3, 3, padding=1, name="c1")(image))
    c2 = Conv2D(2, 3, padding=1, name="c2")(image)
    channels = Concatenate(name="cat_channels")([c1, c2])                   # (5, 6, 6)
    wide = Concatenate(axis=-1, name="cat_last")([channels, channels])        # (5, 6, 12)
    tall = Concatenate(axis=2, name="cat_rows")([wide, wide])                 # (5, 12, 12)
    flat = Flatten(name="flat")(MaxPool2D(2, stride=(2, 3), name="pool")(tall))  # (5, 6, 4) -> 120
    shared = Dense(12, name="shared")
    e = TanH(name="e")(shared(Dense(120, name="lift")(extra)))
    f = TanH(name="f")(shared(flat))  # bounded, as e: no sums that cancel far below their terms
    block = Add(name="residual")([f, TanH(name="block_tanh")(Dense(12, name="block")(f))])
    mean = Average(name="mean")([block, e, f])
    product = Multiply(name="product")([mean, e, block])
    difference = Subtract(name="difference")([product, mean])
    squares = Reshape((3, 2, 2), name="to_image")(difference)
    back = Reshape((-1,), name="to_vector")(Sigmoid(name="squash")(Conv2D(2, 1, name="mix")(squares)))
    label = Softmax(name="label")(Dense(4, name="head")(back))
    score = Dense(1, name="score")(Dropout(0.5, name="drop")(TanH(name="bound")(difference)))
    again = Dense(3, name="again")(label)  # reads an output
    model = Model(inputs=[image, extra], outputs=[label, score, again], device="cpu", seed=3)
    return random_biases(model, 3)


def vector_graph() -> Model:
    """Two vector inputs: a Dense shared by a call on each, Add of three
    (Sum in ONNX), Average and Multiply of two, Subtract, Concatenate of
    vectors on axis 1 and on -1, a Dense's (padded) output reshaped into
    an image for a Conv2D, and an output (Sigmoid's) whose input is
    another output."""
    a, b = Input(7, name="a"), Input(7, name="b")
    twin = Dense(9, name="twin")
    ta, tb = TanH(name="ta")(twin(a)), TanH(name="tb")(twin(b))  # bounded: no sums that cancel far below their terms
    total = Add(name="total")([ta, tb, ReLU(name="relu")(ta)])
    mean = Average(name="mean")([ta, tb])
    both = Concatenate(name="both")([total, Multiply(name="times")([mean, tb])])   # 18
    tail = Concatenate(axis=-1, name="tail")([both, Subtract(name="minus")([ta, tb])])  # 27
    grid = Reshape((1, 4, 4), name="grid")(Dense(16, name="to_grid")(tail))
    pooled = Flatten(name="flat")(MaxPool2D(2, name="pool")(ReLU(name="grid_relu")(Conv2D(2, 3, padding=1,
                                                                                            name="conv")(grid))))
    logits = Dense(5, name="logits")(Concatenate(name="join")([pooled, tail]))
    model = Model(inputs=[a, b], outputs=[logits, Sigmoid(name="probability")(logits)], device="cpu", seed=4)
    return random_biases(model, 4)


GRAPHS = {"vision": vision_graph, "vector": vector_graph}


def graph_inputs(model: Model, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` random float32 samples for each input of ``model``."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, *s.shape)) * 2).astype(np.float32) for s in model.inputs]


def outputs_of(model: Model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """predict's outputs, as a list whatever their number."""
    ys = model.predict(xs)
    return ys if isinstance(ys, list) else [ys]


# ---------------------------------------------------------------------- tables
def test_every_concrete_layer_type_has_a_writer_in_both_formats():
    concrete = {getattr(intricate_py.layers, n) for n in intricate_py.layers.__all__
                if intricate_py.layers.LAYER_TYPES.get(n) is getattr(intricate_py.layers, n)}
    assert {Dense, TanH, Sigmoid, ReLU, Softmax, Conv2D, MaxPool2D, Flatten, Reshape, Dropout,
            Add, Subtract, Multiply, Average, Concatenate} <= concrete
    # a new layer type gets a writer in each (C may refuse one, saying why, in REFUSED)
    assert set(NODES) == concrete and set(WRITERS) | set(REFUSED) == concrete
    assert not set(WRITERS) & set(REFUSED) and all(isinstance(why, str) and why for why in REFUSED.values())


# ------------------------------------------------------------------------ ONNX
@pytest.fixture
def onnx():
    """The onnx package, or a skip (the C tests run without it)."""
    return pytest.importorskip("onnx")


def run_onnx(path: Path, model: Model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs for the inputs ``xs`` of ``model``, in order."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(model.output_names, dict(zip(model.input_names, xs)))


@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_onnx_graph_runs_to_predicts_outputs(kind, tmp_path, onnx):
    model = GRAPHS[kind]()
    path = tmp_path / f"{kind}.onnx"
    assert model.export(path) == [path]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == model.input_names
    assert [o.name for o in proto.graph.output] == model.output_names
    for value, symbol in zip([*proto.graph.input, *proto.graph.output], [*model.inputs, *model.outputs]):
        assert [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] == ["n", *symbol.shape]
    xs = graph_inputs(model, 500)
    for rows in (slice(None), slice(0, 1), slice(0, 7)):  # the batch dimension is free
        batch = [x[rows] for x in xs]
        for got, expected in zip(run_onnx(path, model, batch), outputs_of(model, batch)):
            np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_onnx_graph_operators_and_shared_weights(tmp_path, onnx):
    model = vision_graph()
    model.export(tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    ops = [n.op_type for n in graph.node]
    for op in ("Concat", "Add", "Sum", "Mul", "Sub", "Reshape", "Identity", "Conv", "MaxPool", "Flatten", "Gemm"):
        assert op in ops, op
    assert [n.attribute[0].i for n in graph.node if n.op_type == "Concat"] == [1, -1, 2]
    index = model.layers.index(next(layer for layer in model.layers if layer.name == "shared"))
    names = [t.name for t in graph.initializer]
    assert names.count(f"{index}.weight") == 1 and names.count(f"{index}.bias") == 1  # one copy
    readers = [n for n in graph.node if f"{index}.weight" in n.input]
    assert [n.output[0] for n in readers] == [f"{index}.dense", f"{index}.dense.1"]
    np.testing.assert_array_equal(
        onnx.numpy_helper.to_array(next(t for t in graph.initializer if t.name == f"{index}.weight")),
        model.layers[index].weights)
    average = model.layers.index(next(layer for layer in model.layers if layer.name == "mean"))
    scale = next(t for t in graph.initializer if t.name == f"{average}.scale")
    assert onnx.numpy_helper.to_array(scale) == np.float32(1 / 3)  # Sum, then times 1/k as intricate
    shapes = [onnx.numpy_helper.to_array(t).tolist() for t in graph.initializer if t.name.endswith(".shape")]
    assert shapes == [[0, 3, 2, 2], [0, 8]]  # the batch dimension copied, -1 resolved
    assert "output 'label' <-" in graph.doc_string and "shared Dense(120->12) <-" in graph.doc_string


def test_onnx_refuses_input_and_output_names_that_clash(tmp_path, onnx):
    x = Input(3, name="dense_out")
    model = Model(inputs=x, outputs=[Dense(2, name="dense_out")(x), TanH()(x)], device="cpu")
    with pytest.raises(ValueError, match=r"Received: the output name 'dense_out', also the name of an input"):
        model.export(tmp_path / "m.onnx")
    x = Input(3, name="0.weight")
    model = Model(inputs=x, outputs=[Dense(2)(x), TanH()(x)], device="cpu")
    with pytest.raises(ValueError, match=r"the input name '0.weight', also the name of a tensor inside the graph"):
        model.export(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_graph_with_an_unknown_layer_is_refused_naming_it(tmp_path, onnx):
    a, b = Input(2, name="a"), Input(2, name="b")
    model = Model(inputs=[a, b], outputs=Add()([Doubling()(a), b]), device="cpu")
    with pytest.raises(ValueError, match=r"layer 0 Doubling\(\) to ONNX: the ONNX exporter knows .*Conv2D, Dense.*"
                                         r"and the merge layers Add, .*a Doubling layer"):
        model.export(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"layer 0 Doubling\(\) to C: the C exporter knows .*a Doubling layer"):
        model.export(tmp_path, format="c", name="net")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- C
@pytest.fixture
def gcc():
    path = shutil.which("gcc")
    if path is None:
        pytest.skip("no gcc on this machine")
    return path


@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_c_graph_computes_predicts_outputs(kind, tmp_path, gcc):
    model = GRAPHS[kind]()
    run, lib = build_c(model, tmp_path, gcc)
    xs = graph_inputs(model, 500)
    ys = run(xs)
    for got, expected in zip(ys, outputs_of(model, xs)):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    ones = [np.empty(s.shape, np.float32) for s in model.outputs]  # the one-sample function
    lib.net(*[a.ctypes.data_as(ctypes.c_void_p) for a in [x[3] for x in xs] + ones])
    for one, y in zip(ones, ys):
        np.testing.assert_array_equal(one, y[3])


def test_c_graph_signature_macros_and_promises(tmp_path, gcc):
    model = vision_graph()
    model.export(tmp_path, format="c", name="vision")
    source, header = (tmp_path / "vision.c").read_text(), (tmp_path / "vision.h").read_text()
    signature = "const float *image, const float *extra, float *label, float *score, float *again"
    assert f"void vision({signature});" in header and f"void vision({signature})\n{{" in source
    assert f"void vision_batch({signature}, size_t n);" in header
    assert re.findall(r"#define (\w+) (\d+)", header) == [
        ("VISION_IMAGE_INPUTS", "72"), ("VISION_EXTRA_INPUTS", "5"),
        ("VISION_LABEL_OUTPUTS", "4"), ("VISION_SCORE_OUTPUTS", "1"), ("VISION_AGAIN_OUTPUTS", "3")]
    assert "input image: 72 floats a sample, shape (2, 6, 6) (channels, height, width), row-major" in header
    assert "output score: 1 floats a sample, shape (1,)" in header
    assert "9.1: shared Dense(120->12) <- 7 -> (n, 12)" in header and "output 'label' <- 23 (n, 4)" in header
    assert re.findall(r"#include\s*(\S+)", source) == ["<math.h>", "<stddef.h>", '"vision.h"']
    assert not re.search(r"malloc|calloc|alloca|free\(", source) and source.isascii() and header.isascii()
    assert [layer.name for layer in model.layers].index("shared") == 9
    assert source.count("static const float vision_weight9[") == 1  # the shared layer's weights, once
    assert len(re.findall(r"\. vision_weight9 \+ vision_bias9", source)) == 2  # read by its two calls
    # the liveness pass reuses arrays: fewer than the tensors that need one
    (declaration,) = re.findall(r"^    float (\w+\[\d+\](?:, \w+\[\d+\])*);$", source, re.M)
    assert len(declaration.split(", ")) <= 4
    subprocess.run([gcc, *STRICT, "-O2", "-c", str(tmp_path / "vision.c"), "-o", str(tmp_path / "vision.o")],
                   check=True)
    symbols = subprocess.run(["nm", str(tmp_path / "vision.o")], capture_output=True, text=True, check=True).stdout
    kinds = {line.split()[-1]: line.split()[-2] for line in symbols.splitlines()}
    assert {s for s, k in kinds.items() if k.isupper() and k != "U"} == {"vision", "vision_batch"}
    assert not {s for s, k in kinds.items() if k in "DdBbCc"}  # nothing writable
    model.export(tmp_path, format="c", name="vision")
    assert (tmp_path / "vision.c").read_text() == source  # the same model writes the same text


def test_c_single_input_and_output_graph_keeps_the_plain_macros(tmp_path, gcc):
    x = Input(6, name="features")
    h = Dense(8, name="hidden")(x)
    model = random_biases(Model(inputs=x, outputs=Softmax(name="probabilities")(Add()([h, TanH()(h)])),
                                 device="cpu", seed=5), 5)
    run, _ = build_c(model, tmp_path, gcc)
    header = (tmp_path / "net.h").read_text()
    assert "void net(const float *features, float *probabilities);" in header
    assert re.findall(r"#define (\w+) (\d+)", header) == [
        ("NET_INPUTS", "6"), ("NET_FEATURES_INPUTS", "6"), ("NET_OUTPUTS", "8"), ("NET_PROBABILITIES_OUTPUTS", "8")]
    xs = graph_inputs(model, 100)
    np.testing.assert_allclose(run(xs)[0], model.predict(xs), rtol=RTOL, atol=ATOL)


def test_c_parameters_are_names_made_into_identifiers(tmp_path, gcc):
    """Names that are not identifiers, or that C, C++ or the generated code
    keep, or that collide (even by case), become distinct parameters."""
    inputs = [Input(3, name=n) for n in ("my image", "2nd", "k", "class")]
    merged = Concatenate(name="IMAGE")([Dense(4, name="image")(inputs[0]), *inputs[1:]])
    outputs = [Dense(2, name="net")(merged), Dense(2, name="t2")(merged), TanH(name="NET_SCORE")(merged),
               Sigmoid(name="MY_IMAGE")(merged)]
    model = random_biases(Model(inputs=inputs, outputs=outputs, device="cpu", seed=6), 6)
    run, _ = build_c(model, tmp_path, gcc)
    header = (tmp_path / "net.h").read_text()
    assert ("void net(const float *my_image, const float *in_2nd, const float *k_2, const float *class_2, "
            "float *net_2, float *t2_2, float *out_NET_SCORE, float *MY_IMAGE_2);") in header
    assert "input my_image ('my image'): 3 floats" in header and "#define NET_OUT_NET_SCORE_OUTPUTS 13" in header
    xs = graph_inputs(model, 50)
    for got, expected in zip(run(xs), outputs_of(model, xs)):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_parameter_names_rules():
    assert parameter_names(["a-b", "a b", "__x__", "é", "+"], ["a_b", "n", "size_t", "acc"], "m") == (
        ["a_b", "a_b_2", "x", "in", "in_2"], ["a_b_3", "n_2", "size_t_2", "acc_2"])
    assert parameter_names(["M_x", "m_batch", "m", "M"], ["weight0", "NAN", "m_weight0", "m_sigmoid"], "m") == (
        ["in_M_x", "m_batch_2", "m_2", "M"], ["weight0", "NAN_2", "m_weight0_2", "m_sigmoid_2"])
    # a name with capitals: its macros keep its case (Net_...), and only they move a parameter
    assert parameter_names(["Net_x", "NET_x", "EOF", "time"], ["printf", "tm_sec"], "Net") == (
        ["in_Net_x", "NET_x", "EOF_2", "time_2"], ["printf_2", "tm_sec"])


def test_input_that_no_output_reads_and_names_in_comments(tmp_path, gcc, onnx):
    """An unused input compiles without a warning and stays an input of
    the ONNX graph; names that could end a C comment or are not ASCII stay
    inside the header's comments."""
    used, unused = Input(4, name="used */ /*"), Input(2, name="ünused??/")
    model = random_biases(Model(inputs=[used, unused], outputs=Dense(3, name="out")(used), device="cpu"), 7)
    run, _ = build_c(model, tmp_path, gcc)
    source, header = (tmp_path / "net.c").read_text(), (tmp_path / "net.h").read_text()
    assert "(void)nused;" in source and header.isascii()
    assert "input nused ('\\xfcnused? ?/')" in header and "'used * / / *'" in header
    xs = graph_inputs(model, 20)
    np.testing.assert_allclose(run(xs)[0], model.predict(xs), rtol=RTOL, atol=ATOL)
    model.export(tmp_path / "m.onnx")
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", model, xs)[0], model.predict(xs), rtol=RTOL, atol=ATOL)


# -------------------------------------------------------------------- a path
def test_a_path_keeps_x_and_y_in_both_formats(tmp_path, gcc, onnx):
    """A path of layers, from a list or from Input and calls, exports with
    its single input ``x`` and output ``y``, and both write the same C."""
    listed = random_biases(Model([Dense(5), TanH(), Dense(3), Softmax()], input_size=4, device="cpu", seed=8), 8)
    x = Input(4, name="image")
    h = x
    for layer in (Dense(5, name="first"), TanH(), Dense(3, name="second"), Softmax()):
        h = layer(h)
    called = Model(inputs=x, outputs=h, device="cpu")
    called.set_weights(listed.get_weights())
    assert listed.is_path and called.is_path
    texts = []
    for k, model in enumerate((listed, called)):
        model.export(tmp_path / f"{k}.onnx")
        graph = onnx.load(str(tmp_path / f"{k}.onnx")).graph
        assert [i.name for i in graph.input] == ["x"] and [o.name for o in graph.output] == ["y"]
        folder = tmp_path / str(k)
        run, _ = build_c(model, folder, gcc)
        header = (folder / "net.h").read_text()
        assert "void net(const float *x, float *y);" in header
        assert "void net_batch(const float *x, float *y, size_t n);" in header
        assert "#define NET_INPUTS 4" in header and "#define NET_OUTPUTS 3" in header
        xs = graph_inputs(model, 30)
        np.testing.assert_allclose(run(xs)[0], model.predict(xs[0]), rtol=RTOL, atol=ATOL)
        texts.append(((folder / "net.c").read_text(), header))
    assert texts[0] == texts[1]
