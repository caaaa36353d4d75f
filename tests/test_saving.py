"""Save and load: layers and models in safetensors files; corrupt files,
interrupted writes and files that do not fit."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import intricate_py
from intricate_py import FormatError, Model
from intricate_py.layers import Dense, Layer, ReLU, Sigmoid, Softmax, TanH
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD, Adagrad, Adam
from xor_data import XOR_X, XOR_Y


def trained_xor(device="cpu", epochs=50):
    model = Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=device, seed=0)
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=epochs, batch_size=4)
    return model


def blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return (rng.normal(size=(3, 5)) * 3)[labels] + rng.normal(size=(n, 5)), labels


def metadata(path):
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(length))["__metadata__"]


# ------------------------------------------------------------------ layers
def test_dense_round_trip_and_metadata(tmp_path):
    dense = trained_xor().layers[0]
    path = tmp_path / "dense.safetensors"
    dense.save(path)
    loaded = Layer.load(path)
    assert type(loaded) is Dense and repr(loaded) == "Dense(2→3)"
    np.testing.assert_array_equal(loaded.weights, dense.weights)
    np.testing.assert_array_equal(loaded.biases, dense.biases)
    meta = metadata(path)
    assert meta["format"] == "intricate-py" and meta["format_version"] == "1"
    assert meta["kind"] == "layer" and meta["layer_type"] == "Dense"
    assert json.loads(meta["config"]) == {"units": 3, "input_size": 2}
    assert meta["dtype"] == "float32" and meta["library_version"] == intricate_py.__version__
    assert meta["checksum"].startswith("sha256:")
    tensors = safetensors.numpy.load_file(str(path))
    assert tensors["weight"].shape == (3, 2)  # PyTorch's (units, inputs)


@pytest.mark.parametrize("layer_type", [TanH, Sigmoid, ReLU, Softmax])
def test_activations_save_their_type(tmp_path, layer_type):
    path = tmp_path / "act.safetensors"
    layer_type().save(path)
    assert type(Layer.load(path)) is layer_type
    assert safetensors.numpy.load_file(str(path)) == {}


def test_load_into_an_existing_layer_checks_type_and_shape(tmp_path):
    path = tmp_path / "dense.safetensors"
    trained_xor().layers[0].save(path)
    into = Dense(3)
    assert into.load(path) is into and into.weights.shape == (2, 3)
    with pytest.raises(FormatError, match=r"dense.safetensors: holds Dense\(2→3\), not Dense\(4\): units 3 in the file, 4 here"):
        Dense(4).load(path)
    with pytest.raises(FormatError, match=r"expects inputs of shape \(5,\)"):
        Dense(3, input_size=5).load(path)
    with pytest.raises(FormatError, match="holds a Dense layer, not TanH"):
        TanH().load(path)
    TanH().save(tmp_path / "tanh.safetensors")
    with pytest.raises(FormatError, match="holds a TanH layer, not Dense"):
        Dense.load(tmp_path / "tanh.safetensors")


def test_dense_file_loads_into_torch_linear(tmp_path):
    torch = pytest.importorskip("torch")
    dense = trained_xor().layers[0]
    path = tmp_path / "dense.safetensors"
    dense.save(path)
    linear = torch.nn.Linear(2, 3)
    linear.load_state_dict({k: torch.from_numpy(v) for k, v in safetensors.numpy.load_file(str(path)).items()})
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_allclose(linear(torch.from_numpy(x)).detach().numpy(), dense.forward(x), rtol=1e-6, atol=1e-7)


def test_xor_flow_of_intricates_readme(tmp_path):
    """Save the two Dense layers, rebuild the model from them by hand."""
    model = trained_xor()
    model.layers[0].save(tmp_path / "first.safetensors")
    model.layers[2].save(tmp_path / "second.safetensors")
    rebuilt = Model([Dense.load(tmp_path / "first.safetensors"), TanH(),
                     Dense.load(tmp_path / "second.safetensors"), TanH()], device="cpu")
    np.testing.assert_array_equal(rebuilt.predict(XOR_X), model.predict(XOR_X))


# ------------------------------------------------------------------ models
def test_model_round_trip_rebuilds_itself(tmp_path, device):
    model = trained_xor(device)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = Model.load(path, device=device)
    assert [repr(layer) for layer in loaded.layers] == [repr(layer) for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(XOR_X), model.predict(XOR_X))
    assert set(safetensors.numpy.load_file(str(path))) == {"0.weight", "0.bias", "2.weight", "2.bias"}


@pytest.mark.parametrize("source, target", [("cpu", "gpu"), ("gpu", "cpu")])
def test_model_moves_between_backends(tmp_path, gpu, source, target):
    x, y = blobs()
    model = Model([Dense(8), ReLU(), Dense(3), Softmax()], input_size=5, device=source, seed=0)
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=3, batch_size=16)
    model.save(tmp_path / "m.safetensors")
    moved = Model.load(tmp_path / "m.safetensors", device=target)
    assert moved.device.kind == target
    np.testing.assert_allclose(moved.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_sequential_state_dict_loads_into_torch(tmp_path):
    torch = pytest.importorskip("torch")
    x, y = blobs()
    model = Model([Dense(8), ReLU(), Dense(3), Softmax()], input_size=5, device="cpu", seed=0)
    model.save(tmp_path / "m.safetensors")
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), torch.nn.Softmax(dim=1))
    state = safetensors.numpy.load_file(str(tmp_path / "m.safetensors"))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    xs = x.astype(np.float32)
    np.testing.assert_allclose(net(torch.from_numpy(xs)).detach().numpy(), model.predict(xs), rtol=1e-5, atol=1e-6)


def test_a_layers_own_activation_takes_a_position_as_in_torch(tmp_path):
    """Dense(8, activation="relu") is nn.Linear then nn.ReLU: the next
    layer's tensors are at position 2, both ways, and a model file too."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    x, _ = blobs()
    xs = x.astype(np.float32)
    model = Model([Dense(8, activation="relu"), Dense(3), Softmax()], input_size=5, device="cpu", seed=0)
    model.save_weights(tmp_path / "w.safetensors")
    state = safetensors.numpy.load_file(str(tmp_path / "w.safetensors"))
    assert sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), torch.nn.Softmax(dim=1))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    np.testing.assert_allclose(net(torch.from_numpy(xs)).detach().numpy(), model.predict(xs), rtol=1e-5, atol=1e-6)
    torch.nn.init.normal_(net[2].weight)
    save_file(net.state_dict(), tmp_path / "net.safetensors")
    model.load_weights(tmp_path / "net.safetensors")
    np.testing.assert_allclose(model.predict(xs), net(torch.from_numpy(xs)).detach().numpy(), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(Model.load(tmp_path / "m.safetensors", device="cpu").predict(xs), model.predict(xs))
    plain = Model([Dense(8), Dense(3)], input_size=5, device="cpu")  # its second Dense at position 1: refused
    with pytest.raises(FormatError, match=r"positions \[0, 1\] in this model and \[0, 2\] in the file"):
        plain.load_weights(tmp_path / "net.safetensors")


class _Scaling(Layer):
    """A custom layer with a parameter and no file_tensors."""

    def create_parameters(self, rng):
        return {"s": np.ones(self.input_shape, np.float32)}

    def from_file(self, tensors):
        return None, dict(tensors)

    def call(self, ctx, x):
        return x


def test_a_model_file_without_a_custom_layers_tensors_is_refused(tmp_path):
    from intricate_py import register_layer
    from intricate_py.layers.registry import unregister_layer
    from intricate_py.saving import spec
    from intricate_py.saving.fileio import read_safetensors

    register_layer(_Scaling, package="tests")  # files name registered custom layers only
    try:
        _refuse_a_file_without_the_custom_layers_tensors(tmp_path, spec, read_safetensors)
    finally:
        unregister_layer(_Scaling)


def _refuse_a_file_without_the_custom_layers_tensors(tmp_path, spec, read_safetensors):
    Model([Dense(3, activation="tanh"), _Scaling()], input_size=2, device="cpu", seed=0).save(tmp_path / "m.safetensors")
    tensors, metadata = read_safetensors(tmp_path / "m.safetensors")
    del tensors["2.s"]  # position 2: the Dense's activation is position 1
    kept = {k: v for k, v in metadata.items() if k not in ("format", "format_version", "library_version", "checksum")}
    spec.write_file(tmp_path / "crafted.safetensors", tensors, kept)
    with pytest.raises(FormatError, match=r"layer 1 _Scaling\(\) holds parameters, but the file has no tensors "
                                          r"for it \(expected 2.s\)"):
        Model.load(tmp_path / "crafted.safetensors", device="cpu")


@pytest.mark.parametrize("make_optimizer", [lambda: SGD(0.05, momentum=0.9, nesterov=True), lambda: Adagrad(0.05),
                                            lambda: Adam(0.01)], ids=["nesterov", "adagrad", "adam"])
def test_training_resumed_from_a_file_matches_an_uninterrupted_run(tmp_path, device, make_optimizer):
    x, y = blobs()

    def model():
        return Model([Dense(8), ReLU(), Dense(3), Softmax()], input_size=5, device=device, seed=0)

    straight = model()
    straight.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=make_optimizer(), epochs=4, batch_size=16)
    first = model()
    first.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=make_optimizer(), epochs=2, batch_size=16)
    first.save(tmp_path / "half.safetensors", include_optimizer=True)
    resumed = Model.load(tmp_path / "half.safetensors", device=device)
    assert type(resumed.optimizer) is type(straight.optimizer)
    resumed.fit(x, y, epochs=2, batch_size=16)  # loss and optimizer come from the file
    for a, b in zip(resumed.parameters, straight.parameters):
        np.testing.assert_array_equal(resumed.device.to_numpy(a.value), straight.device.to_numpy(b.value))


def test_saving_the_optimizer_needs_one(tmp_path):
    with pytest.raises(ValueError, match="include_optimizer=True needs"):
        Model([Dense(2)], input_size=2, device="cpu").save(tmp_path / "m.safetensors", include_optimizer=True)


def test_model_file_is_not_a_layer_file(tmp_path):
    trained_xor().save(tmp_path / "m.safetensors")
    with pytest.raises(FormatError, match="holds a model, not a layer: use Model.load"):
        Layer.load(tmp_path / "m.safetensors")
    TanH().save(tmp_path / "t.safetensors")
    with pytest.raises(FormatError, match="holds a layer, not a model: use Layer.load"):
        Model.load(tmp_path / "t.safetensors", device="cpu")


# ------------------------------------------------------------------ bad files
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    trained_xor().save(path)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Model.load(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError):
        Layer.load(tmp_path / "nope.safetensors")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) - 7])
    with pytest.raises(FormatError, match=f"{saved.name}: .*truncated"):
        Model.load(saved, device="cpu")


def test_flipped_byte_in_the_tensors_is_caught_by_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    data[-5] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum mismatch"):
        Model.load(saved, device="cpu")


def test_edited_metadata_is_caught_by_the_checksum(saved):
    original = saved.read_bytes()
    data = original.replace(b'\\"units\\": 3', b'\\"units\\": 4')  # JSON inside a JSON string
    assert data != original
    saved.write_bytes(data)
    with pytest.raises(FormatError):
        Model.load(saved, device="cpu")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(FormatError, match="noise.safetensors"):
        Layer.load(path)


def test_safetensors_file_from_another_library(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"weight": np.ones((3, 2), np.float32), "bias": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(FormatError, match="not one written by intricate-py"):
        Dense(3).load(path)


def test_newer_format_is_refused(tmp_path):
    from intricate_py.saving import write_file

    path = tmp_path / "future.safetensors"
    write_file(path, {}, {"kind": "layer", "layer_type": "TanH", "config": "{}", "format_version": "99"})
    with pytest.raises(FormatError, match="format version '99'"):
        Layer.load(path)


def test_unknown_layer_type(tmp_path):
    from intricate_py.saving import write_file

    path = tmp_path / "custom.safetensors"
    write_file(path, {}, {"kind": "layer", "layer_type": "Wobble", "config": "{}", "dtype": "float32"})
    with pytest.raises(FormatError, match="unknown layer type 'Wobble'"):
        Layer.load(path)


@pytest.mark.parametrize("name, message", [
    ("4.weight", r"tensors that no layer holds: \['4.weight'\]"),  # no layer 4
    ("9", r"tensors that no layer holds: \['9'\]"),
    ("1.weight", r"layer 1: TanH\(\) holds no parameters"),  # a layer without parameters
    ("0.scale", r"layer 0: Dense\(2→3\) expects tensors \['bias', 'weight'\]"),
])
def test_model_file_with_a_tensor_no_layer_takes(tmp_path, name, message):
    from intricate_py.saving import read_file, write_file

    path = tmp_path / "xor.safetensors"
    trained_xor(epochs=1).save(path)
    tensors, meta = read_file(path, "model")
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", "library_version", "checksum")}
    write_file(path, {**tensors, name: np.ones(3, np.float32)}, meta)
    with pytest.raises(FormatError, match=message):
        Model.load(path, device="cpu")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corruption_anywhere_raises_format_error_or_changes_nothing(tmp_path_factory, data):
    """Overwrite random bytes (random offset and length) or truncate: a load
    then raises FormatError, or (bytes rewritten to what they were) returns
    the same model. Nothing else ever happens."""
    folder = tmp_path_factory.mktemp("corrupt")
    path = folder / "m.safetensors"
    model = trained_xor(epochs=5)
    model.save(path)
    original = path.read_bytes()
    if data.draw(st.booleans(), label="truncate"):
        corrupted = original[: data.draw(st.integers(0, len(original) - 1), label="length")]
    else:
        offset = data.draw(st.integers(0, len(original) - 1), label="offset")
        length = data.draw(st.integers(1, 16), label="length")
        noise = data.draw(st.binary(min_size=length, max_size=length), label="noise")
        corrupted = original[:offset] + noise + original[offset + length:]
    path.write_bytes(corrupted)
    try:
        loaded = Model.load(path, device="cpu")
    except FormatError:
        return
    assert corrupted[: len(original)] == original or len(corrupted) > len(original)
    np.testing.assert_array_equal(loaded.predict(XOR_X), model.predict(XOR_X))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 400), noise=st.binary(min_size=1, max_size=8))
def test_corrupt_layer_files_raise_format_error(tmp_path_factory, offset, noise):
    path = tmp_path_factory.mktemp("layer") / "d.safetensors"
    dense = trained_xor(epochs=5).layers[0]
    dense.save(path)
    original = path.read_bytes()
    offset %= len(original)
    corrupted = original[:offset] + noise + original[offset + len(noise):]
    path.write_bytes(corrupted)
    try:
        loaded = Layer.load(path)
    except FormatError:
        return
    assert corrupted == original
    np.testing.assert_array_equal(loaded.weights, dense.weights)


# ------------------------------------------------------------------ writes
def test_saving_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trained_xor().save(tmp_path / "no" / "such" / "m.safetensors")


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    trained_xor(epochs=1).save(path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        trained_xor(epochs=20).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_saving_keeps_the_file_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    trained_xor(epochs=1).save(path)
    os.chmod(path, 0o640)
    trained_xor(epochs=2).save(path)
    assert path.stat().st_mode & 0o777 == 0o640


SAVER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from intricate_py import Model
    from intricate_py.layers import Dense, ReLU
    where = sys.argv[2]
    if where != "random":
        real = getattr(os, where)
        def pause(*args):          # stop here, the point the parent kills us at
            print("ready", flush=True)
            time.sleep(60)
            return real(*args)
        setattr(os, where, pause)
    model = Model([Dense(512), ReLU(), Dense(512)], input_size=512, device="cpu", seed=1)
    print("saving", flush=True)
    while True:
        model.save(sys.argv[1])
""")


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_save_killed_midway_leaves_the_previous_file(tmp_path, where):
    path = tmp_path / "m.safetensors"
    model = trained_xor()
    model.save(path)
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path), where], stdout=subprocess.PIPE, text=True)
    try:
        assert saver.stdout.readline().strip() == "saving"
        assert saver.stdout.readline().strip() == "ready"  # mid-save: temp file written, not renamed
        saver.send_signal(signal.SIGKILL)
    finally:
        saver.kill()
        saver.wait()
    np.testing.assert_array_equal(Model.load(path, device="cpu").predict(XOR_X), model.predict(XOR_X))


def test_saves_killed_at_random_moments_leave_a_loadable_file(tmp_path):
    path = tmp_path / "m.safetensors"
    trained_xor().save(path)
    rng = np.random.default_rng(0)
    for _ in range(5):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path), "random"], stdout=subprocess.PIPE, text=True)
        try:
            assert saver.stdout.readline().strip() == "saving"
            try:
                saver.wait(timeout=rng.uniform(0.05, 0.4))
            except subprocess.TimeoutExpired:
                pass
            saver.send_signal(signal.SIGKILL)
        finally:
            saver.kill()
            saver.wait()
        loaded = Model.load(path, device="cpu")  # the old file or a whole new one
        assert [repr(layer) for layer in loaded.layers] in (
            ["Dense(2→3)", "TanH()", "Dense(3→1)", "TanH()"],
            ["Dense(512→512)", "ReLU()", "Dense(512→512)"],
        )
