"""model.export(folder, format="c", name=...) writes C99 that compiles
warning-free under gcc (and clang where present), keeps its promises (no
heap, no writable globals, two includes) and computes predict's outputs;
the XoR example exports it and examples/deploy builds a program from it."""

import ctypes
import errno
import importlib.util
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from export_models import ATOL, MODELS, RTOL, STRICT, Doubling, build_c, inputs, mlp, random_biases

import intricate_py
from intricate_py import Input, Model
from intricate_py.layers import (Add, Dense, Embedding, LayerNormalization, MultiHeadAttention, PositionEmbedding,
                                 Sigmoid, Softmax, TanH)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["cc", "clang"])
def compiler(request):
    path = shutil.which(request.param)
    if path is None:
        pytest.skip(f"no {request.param} on this machine")
    return path


def build(model: Model, folder: Path, compiler: str, name: str = "net"):
    """``run(x) -> y`` of the model's C through its batch function, and the library."""
    run, lib = build_c(model, folder, compiler, name)
    return (lambda x: run([x])[0]), lib


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_c_computes_predicts_outputs(kind, tmp_path, compiler):
    model = MODELS[kind]()
    run, lib = build(model, tmp_path, compiler)
    x = inputs(model, 1000)
    y = run(x)
    np.testing.assert_allclose(y, model.predict(x), rtol=RTOL, atol=ATOL)
    one = np.empty(model.output_shape, np.float32)  # the one-sample function
    lib.net(x[3].ctypes.data_as(ctypes.c_void_p), one.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_array_equal(one, y[3])


def test_c_activations_at_the_extremes(tmp_path):
    """The rational tanh, the two-sided sigmoid and the shifted softmax on
    values from 1e-30 to 1e4 of either sign, and on infinities and NaN."""
    magnitudes = np.concatenate([np.geomspace(1e-30, 1e4, 2000), np.linspace(0, 12, 2000)])
    x = np.concatenate([magnitudes, -magnitudes, [0.0, -0.0, 1.0, -1.0]]).astype(np.float32).reshape(-1, 4)
    for i, layer in enumerate((TanH(), Sigmoid(), Softmax())):
        model = Model([layer], input_size=4, device="cpu")
        run, _ = build(model, tmp_path / str(i), "cc")
        y = run(x)
        np.testing.assert_allclose(y, model.predict(x), rtol=1e-6 if i == 0 else RTOL, atol=0)
        if i == 0:  # exact where tanh is exact: odd, 0 at ±0, ±1 far out
            np.testing.assert_array_equal(np.signbit(y), np.signbit(x))
            assert np.all(np.abs(y[np.abs(x) > 10]) == 1)
            special = run(np.array([[np.inf, -np.inf, np.nan, 1e-45]], np.float32))
            np.testing.assert_array_equal(special, [[1, -1, np.nan, np.float32(1e-45)]])


def test_c_files_keep_their_promises(tmp_path):
    model = MODELS["cnn"]()
    model.export(tmp_path, format="c", name="vision")
    source, header = (tmp_path / "vision.c").read_text(), (tmp_path / "vision.h").read_text()
    assert re.findall(r"#include\s*(\S+)", source) == ["<math.h>", "<stddef.h>", '"vision.h"']
    assert re.findall(r"#include\s*(\S+)", header) == ["<stddef.h>"]
    assert not re.search(r"malloc|calloc|alloca|free\(", source)
    assert "void vision(const float *x, float *y);" in header
    assert "void vision_batch(const float *x, float *y, size_t n);" in header
    assert f"intricate-py {intricate_py.__version__}" in header
    assert "#define VISION_INPUTS 286" in header and "#define VISION_OUTPUTS 5" in header
    assert "input: 286 floats a sample, shape (2, 11, 13)" in header and "shape (5,)" in header
    assert "0: Conv2D(2->4, 3x3, stride 2, padding 1) -> (n, 4, 6, 7)" in header
    assert "11: Softmax() -> (n, 5)" in header
    assert source.isascii() and header.isascii()
    # file-scope data: read-only arrays only; the only external symbols are the two functions
    subprocess.run(["cc", *STRICT, "-O2", "-c", str(tmp_path / "vision.c"), "-o", str(tmp_path / "vision.o")],
                   check=True)
    symbols = subprocess.run(["nm", str(tmp_path / "vision.o")], capture_output=True, text=True, check=True).stdout
    kinds = {line.split()[-1]: line.split()[-2] for line in symbols.splitlines()}
    assert {s for s, k in kinds.items() if k.isupper() and k != "U"} == {"vision", "vision_batch"}
    assert not {s for s, k in kinds.items() if k in "DdBbCc"}  # nothing writable
    # and the same model writes the same text
    model.export(tmp_path, format="c", name="vision")
    assert (tmp_path / "vision.c").read_text() == source


def test_c_pads_dense_outputs_for_whole_registers(tmp_path):
    mlp().export(tmp_path, format="c", name="net")
    source = (tmp_path / "net.c").read_text()
    assert "static const float net_weight0[7][16]" in source  # 16 outputs: no padding
    assert "static const float net_weight2[16][16]" in source and "13 outputs (padded to 16)" in source
    assert re.search(r"for \(int k = 0; k < 16; k\+\+\) \{\n\s+float v = a\[k\];\n\s+a\[k\] = net_fast_tanh", source)


def test_c_refuses_an_unknown_layer_naming_it(tmp_path):
    model = Model([Dense(3), Doubling(), TanH()], input_size=2, device="cpu")
    with pytest.raises(ValueError, match=r"layer 1 Doubling\(\) to C: the C exporter knows .*Dense.*a Doubling layer"):
        model.export(tmp_path, format="c", name="net")
    assert list(tmp_path.iterdir()) == []


def test_c_computes_a_model_of_sequences(tmp_path, compiler):
    """Issue 25 item 9: Embedding (an id outside the table gives zeros),
    PositionEmbedding added, Dense of each position with its activation (a
    softmax of each position's row), LayerNormalization of each position."""
    T, V = 5, 9
    ids = Input((T,), name="ids")
    h = Embedding(V, 6)(ids)
    h = Add()([h, PositionEmbedding(8)(h)])
    h = Dense(7, activation="gelu")(LayerNormalization()(h))
    model = random_biases(Model(ids, Dense(3, activation="softmax")(Dense(11, use_bias=False)(h)), device="cpu",
                                seed=2), 3)
    run, lib = build(model, tmp_path, compiler)
    x = np.random.default_rng(0).integers(0, V, (50, T)).astype(np.float32)
    np.testing.assert_allclose(run(x), model.predict(x), rtol=RTOL, atol=ATOL)
    source = (tmp_path / "net.c").read_text()
    embedding, position = (next(layer for layer in model.layers if isinstance(layer, cls))
                           for cls in (Embedding, PositionEmbedding))
    i = model.layers.index(position)
    assert f"net_weight{i}[8][6]" not in source and f"net_weight{i}[5][6]" in source  # the rows it reads only
    # predict refuses an id outside the table; the C code reads zeros for it, not memory beyond the table:
    # what predict gives for id 0 once row 0 is zeros
    table = embedding.embeddings
    table[0] = 0
    embedding.embeddings = table
    outside = np.array([[1, 2, V, 3, 4]], np.float32)
    np.testing.assert_allclose(run(outside), model.predict(np.array([[1, 2, 0, 3, 4]])), rtol=RTOL, atol=ATOL)


def test_c_refuses_attention_saying_to_use_onnx(tmp_path):
    x = Input((4, 6), name="x")
    model = Model(x, MultiHeadAttention(2, 3)(x, x), device="cpu")
    with pytest.raises(ValueError, match=r"cannot export layer 0 MultiHeadAttention\(2×3\) to C: C export does not "
                                         r"support attention .*export the model to ONNX"):
        model.export(tmp_path, format="c", name="net")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["2net", "my-net", "int", "x", "", "tanh", "expf", "NAN", "round"])
def test_c_needs_a_usable_identifier(tmp_path, name):
    with pytest.raises(ValueError, match="Received: name="):
        mlp().export(tmp_path, format="c", name=name)


def test_c_creates_its_folder_and_the_folders_above_it(tmp_path):
    """Issue 26 item 22: the C export creates its folder (an ONNX export,
    like save, creates nothing but its file)."""
    written = mlp().export(tmp_path / "a" / "b", format="c", name="net")
    assert written == [tmp_path / "a" / "b" / "net.c", tmp_path / "a" / "b" / "net.h"]
    assert all(path.is_file() for path in written)
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(NotADirectoryError, match="expected a folder for the C files"):
        mlp().export(tmp_path / "plain", format="c", name="net")
    with pytest.raises(ValueError, match="the C exporter knows"):  # a refused model creates nothing
        Model([Dense(3), Doubling()], input_size=2, device="cpu").export(tmp_path / "never", format="c", name="net")
    assert not (tmp_path / "never").exists()


def fail_at_call(n: int, real):
    """``real``, except that its ``n``-th call raises OSError (ENOSPC)."""
    calls = []

    def call(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real(*args, **kwargs)

    return call


@pytest.mark.parametrize("fault", ["the .h write", "the .h rename", "the .h rename, without hard links",
                                   "a folder named net.h"])
@pytest.mark.parametrize("before", ["an old pair", "nothing"])
def test_c_files_are_replaced_together_or_not_at_all(tmp_path, monkeypatch, fault, before):
    """Issue 26 item 8: a failure while the .h is written (or renamed) left a
    new .c beside the old .h; now it leaves what was there, both files."""
    if before == "an old pair":
        MODELS["logits_mlp"]().export(tmp_path, format="c", name="net")
    old = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    if fault == "a folder named net.h":
        if before == "an old pair":
            (tmp_path / "net.h").unlink()
            del old["net.h"]
        (tmp_path / "net.h").mkdir()
        expected = IsADirectoryError
    else:
        call = "fsync" if fault == "the .h write" else "replace"
        monkeypatch.setattr(os, call, fail_at_call(2, getattr(os, call)))
        if fault.endswith("without hard links"):  # FAT, say: the old .c is kept as a copy
            monkeypatch.setattr(os, "link", fail_at_call(1, os.link))
        expected = OSError
    with pytest.raises(expected):
        mlp().export(tmp_path, format="c", name="net")
    monkeypatch.undo()
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == old
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary file left


def test_xor_example_exports_and_the_deploy_program_runs(tmp_path, capsys):
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("needs make and cc")
    spec = importlib.util.spec_from_file_location("example_xor", ROOT / "examples" / "xor" / "main.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "out"
    assert example.main(["--device", "cpu", "--out", str(out), "--export", str(out)]) == 0
    assert "exported the network to" in capsys.readouterr().out
    assert {"xor_net.c", "xor_net.h", "xor_net.onnx"} <= {p.name for p in out.iterdir()}
    subprocess.run(["make", "-C", str(ROOT), "deploy-build", f"DEPLOY={out}"], check=True, capture_output=True)
    # the example's model, rebuilt from its saved layers, against the program
    model = Model([intricate_py.layers.Layer.load(out / "xor-first-dense.safetensors"), TanH(),
                   intricate_py.layers.Layer.load(out / "xor-second-dense.safetensors"), TanH()], device="cpu")
    for a, b in [(0, 0), (0, 1), (1, 0), (1, 1), (0.25, -3)]:
        printed = subprocess.run([str(out / "xor"), str(a), str(b)], capture_output=True, text=True, check=True)
        np.testing.assert_allclose(float(printed.stdout), model.predict([[a, b]])[0, 0], rtol=RTOL, atol=ATOL)
    usage = subprocess.run([str(out / "xor"), "1"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    # issue 26 item 22: what is not a finite number is refused, not read as 0
    for a, b in [("a", "b"), ("1", ""), ("1x", "0"), ("0", "nan"), ("1e99", "0"), ("inf", "1")]:
        refused = subprocess.run([str(out / "xor"), a, b], capture_output=True, text=True)
        bad = a if a in ("a", "1x", "1e99", "inf") else b
        assert refused.returncode == 2 and refused.stdout == "", (a, b)
        assert f'expected a finite number for x{1 if bad == a else 2}. Received: "{bad}"' in refused.stderr


def test_export_refuses_weights_that_are_not_finite(tmp_path):
    model = mlp()
    weights = model.layers[2].weights
    weights[1, 2] = np.nan
    model.backend.write(model.layers[2].params["W"].value, weights)  # what training gone wrong could leave
    with pytest.raises(ValueError, match=r"layer 2 Dense\(16→13\) to C: its weight holds NaN or inf"):
        model.export(tmp_path, format="c", name="net")


@pytest.mark.parametrize("format", ["c", "onnx"])
def test_export_refuses_float64_weights_beyond_float32(tmp_path, format):
    """Issue 26 item 7: 1e39 is finite in float64 and inf in float32, the
    precision of both formats (C wrote `inff`, ONNX an inf initializer)."""
    if format == "onnx":
        pytest.importorskip("onnx")
    model = Model([Dense(2), Sigmoid()], input_size=2, device="cpu", dtype="float64", seed=0)
    weights = model.layers[0].weights
    weights[1, 0] = 1e39
    model.layers[0].weights = weights
    target = tmp_path / "net.onnx" if format == "onnx" else tmp_path
    with pytest.raises(ValueError, match=r"layer 0 Dense\(2→2\) to (C|ONNX): its weight holds 1e\+39 at index "
                                         r"\(0, 1\), which does not fit float32"):
        model.export(target, format=format, name="net")
    assert list(tmp_path.iterdir()) == []
    weights[1, 0] = -3.4e38  # within float32: exports
    model.layers[0].weights = weights
    model.export(target, format=format, name="net")


@pytest.mark.parametrize("format", ["c", "onnx"])
def test_export_refuses_normalization_terms_beyond_float32(tmp_path, format):
    """The arrays an exporter computes are checked as the stored ones:
    1 / sqrt(moving_variance + epsilon) and a folded product's weights."""
    from intricate_py.layers import BatchNormalization

    if format == "onnx":
        pytest.importorskip("onnx")
    target = tmp_path / "net.onnx" if format == "onnx" else tmp_path
    alone = Model([Dense(2, activation="relu"), BatchNormalization(epsilon=0.0)], input_size=2, device="cpu",
                  dtype="float64", seed=0)
    alone.layers[1].moving_variance = [1e-50, 1.0]  # 0 in float32: 1 / sqrt(0)
    with pytest.raises(ValueError, match=r"1 / sqrt\(moving_variance \+ epsilon\) of channel 0 is inf in float32"):
        alone.export(target, format=format, name="net")
    folded = Model([Dense(2), BatchNormalization()], input_size=2, device="cpu", dtype="float64", seed=0)
    folded.layers[0].weights = np.full((2, 2), 1e36)
    folded.layers[1].gamma = [1e6, 1.0]  # 1e42 once folded
    with pytest.raises(ValueError, match=r"with \w+ BatchNormalization.* folded into it: its folded weight holds "
                                         r"[\d.]+e\+4[12] at index \(0, 0\), which does not fit float32"):
        folded.export(target, format=format, name="net")
    zero = Model([Dense(2), BatchNormalization(epsilon=0.0)], input_size=2, device="cpu", seed=0)
    zero.layers[1].moving_variance = [0.0, 1.0]  # folded: 1 / sqrt(0), said without a warning first
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"1 / sqrt\(moving_variance \+ epsilon\) of channel 0 is inf "
                                             r"\(moving_variance 0.0, epsilon 0.0\)"):
            zero.export(target, format=format, name="net")
    assert list(tmp_path.iterdir()) == []
