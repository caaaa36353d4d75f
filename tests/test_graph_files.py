"""Graph models in files: the wiring saved and rebuilt, training resumed
exactly, architectures compared on load, and crafted wirings refused with
FormatError before anything is built."""

import json

import numpy as np
import pytest

from graph_models import wide_graph, wide_inputs
from intricate_py import FormatError, Input, Model
from intricate_py.layers import Add, Dense, ReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import Adam
from intricate_py.saving import read_file, write_file

LOSSES = [CategoricalCrossEntropy(from_logits=True), MeanSquared()]


def targets(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 3, n), rng.normal(size=(n, 2))]


def test_a_graph_model_file_rebuilds_the_same_model(tmp_path, device):
    model = wide_graph(device)
    path = tmp_path / "wide.safetensors"
    model.save(path)
    _, metadata = read_file(path, "model")
    assert "graph" in metadata and "input_shape" not in metadata
    loaded = Model.load(path, device=device)
    assert loaded.input_names == ["a", "b"] and loaded.output_names == ["logits", "reg"]
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    xs = wide_inputs(7)
    for got, want in zip(loaded.predict(xs), model.predict(xs)):
        np.testing.assert_array_equal(got, want)
    assert str(loaded).replace(loaded.device.name, "") == str(model).replace(model.device.name, "")


def test_a_path_models_file_is_as_before(tmp_path):
    """A chain saves its layer list and input shape, no graph: files that
    every earlier version reads, and reads back."""
    model = Model([Dense(3), ReLU(), Dense(2), Softmax()], input_size=4, seed=0, device="cpu")
    model.save(tmp_path / "path.safetensors")
    tensors, metadata = read_file(tmp_path / "path.safetensors", "model")
    assert "graph" not in metadata and json.loads(metadata["input_shape"]) == [4]
    assert json.loads(metadata["architecture"])[0] == {"type": "Dense", "config": {"units": 3, "input_size": 4}}
    assert sorted(tensors) == ["0.bias", "0.weight", "2.bias", "2.weight"]


def test_training_resumes_exactly_from_a_graph_checkpoint(tmp_path):
    xs, ys = wide_inputs(64), targets(64)

    def fit(model, epochs):
        model.fit(xs, ys, loss=LOSSES, loss_weights=[1.0, 0.25], optimizer=Adam(0.01), epochs=epochs, batch_size=16)

    straight = wide_graph(seed=1)
    fit(straight, 4)
    half = wide_graph(seed=1)
    fit(half, 2)
    half.save(tmp_path / "half.safetensors", include_optimizer=True)
    resumed = Model.load(tmp_path / "half.safetensors", device="cpu")
    assert resumed.loss_weights == [1.0, 0.25] and [type(one) for one in resumed.loss] == [type(one) for one in LOSSES]
    resumed.fit(xs, ys, epochs=2, batch_size=16)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_loading_into_a_model_checks_its_connections(tmp_path):
    def residual(skip: bool) -> Model:
        x = Input(4, name="x")
        h = Dense(4, name="h")(x)
        g = Dense(4, name="g")(h)
        return Model(x, Add(name="add")([h if skip else x, g]), seed=0, device="cpu")

    residual(True).save(tmp_path / "skip.safetensors")
    twin = residual(True)
    twin.load(tmp_path / "skip.safetensors")
    other = residual(False)
    before = other.get_weights()
    with pytest.raises(FormatError, match="connected otherwise"):
        other.load(tmp_path / "skip.safetensors")
    for a, b in zip(other.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_get_set_and_weights_files_of_a_graph(tmp_path):
    model, twin = wide_graph(seed=0), wide_graph(seed=9)
    weights = model.get_weights()
    assert len(weights) == 2 * 7  # seven Dense layers, the shared one once
    twin.set_weights(weights)
    xs = wide_inputs(3)
    for got, want in zip(twin.predict(xs), model.predict(xs)):
        np.testing.assert_array_equal(got, want)
    model.save_weights(tmp_path / "w.safetensors")
    third = wide_graph(seed=5)
    third.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(third.predict(xs)[0], model.predict(xs)[0])


# ------------------------------------------------------------------ crafted wirings
@pytest.fixture
def graph_file(tmp_path):
    path = tmp_path / "graph.safetensors"
    x = Input(3, name="x")
    h = Dense(4, name="h")(x)
    Model(x, [Dense(2, name="out")(ReLU(name="act")(h)), h], device="cpu", seed=0).save(path)  # not a path
    return path


def rewired(path, change):
    """The file with its wiring changed by ``change(graph)``, checksum renewed."""
    tensors, metadata = read_file(path, "model")
    graph = json.loads(metadata["graph"])
    change(graph)
    metadata = {k: v for k, v in metadata.items()
                if k not in ("format", "format_version", "library_version", "checksum")}
    write_file(path, tensors, {**metadata, "graph": json.dumps(graph)})


def _outputs(value):
    """A change of the outputs (their names with them)."""
    def change(graph):
        graph["outputs"] = value
        graph.pop("output_names")
    return change


@pytest.mark.parametrize("change, message", [
    (lambda g: g["nodes"][0].__setitem__("inputs", [["node", 2]]), r"graph node 0 takes \['node', 2\]; .*an earlier node"),
    (lambda g: g["nodes"][1].__setitem__("inputs", [["node", 1]]), r"graph node 1 takes \['node', 1\]"),
    (lambda g: g["nodes"][0].__setitem__("inputs", [["input", 1]]), r"\['input', 1\]; expected \['input', k\] with k < 1"),
    (lambda g: g["nodes"][0].__setitem__("layer", 7), "graph node 0 names layer 7; the architecture has 3"),
    (lambda g: g["nodes"][0].__setitem__("inputs", []), "1 to 64 references"),
    (lambda g: g["inputs"].append({"name": "x", "shape": [3]}), r"distinct names. Received: \['x', 'x'\]"),
    (lambda g: g["inputs"][0].__setitem__("shape", [0]), "positive sizes"),
    (lambda g: g["inputs"][0].__setitem__("name", "x" * 300), "short string"),
    (_outputs([["node", 1]]), r"graph nodes \[2\] lead to no output"),
    (_outputs([]), "1 to 64 outputs"),
    (_outputs([["input", 0]]), "outputs must be distinct nodes"),
    (_outputs([["node", 2], ["node", 2]]), "outputs must be distinct nodes"),
    (_outputs([["node", 3]]), r"a graph output takes \['node', 3\]"),
    (lambda g: g["nodes"].append({"layer": 0, "inputs": [["input", 0]]}), r"nodes \[3\] lead to no output"),
    (lambda g: g.__setitem__("nodes", [{"layer": 0, "inputs": [["input", 0]]}] * 100_000), "1 to 10000 nodes"),
    (lambda g: g["nodes"][0].__setitem__("inputs", [[[[[["node", 0]]]]]]), "graph node 0 takes"),
    (lambda g: g.__setitem__("extra", 1), "'graph' must hold 'inputs', 'nodes' and 'outputs'"),
    (lambda g: g.__setitem__("output_names", ["out", "out"]), "'output_names' must be 2 distinct short strings"),
    (lambda g: g.__setitem__("output_names", [{"deep": [1]}, "x"]), "'output_names' must be 2 distinct"),
    (lambda g: g["nodes"][0].__setitem__("layer", True), "graph node 0 must be"),
    (lambda g: g["nodes"][2].__setitem__("layer", 0), r"layers \[2\] of the architecture are called by no graph node"),
])
def test_crafted_wirings_are_refused_before_anything_is_built(graph_file, change, message):
    rewired(graph_file, change)
    with pytest.raises(FormatError, match=message):
        Model.load(graph_file, device="cpu")


def test_a_wiring_whose_shapes_do_not_fit_does_not_build(graph_file):
    def change(graph):  # out Dense(4→2) on x (3,); act an output, so that every node is still needed
        graph["nodes"][2]["inputs"] = [["input", 0]]
        graph["outputs"] = [["node", 2], ["node", 1]]
        graph["output_names"] = ["out", "act"]

    rewired(graph_file, change)
    with pytest.raises(FormatError, match=r"the architecture does not build \(out Dense\(4→2\) expects inputs"):
        Model.load(graph_file, device="cpu")


def test_deeply_nested_wiring_is_refused(graph_file):
    tensors, metadata = read_file(graph_file, "model")
    metadata = {k: v for k, v in metadata.items() if k not in ("format", "format_version", "library_version", "checksum")}
    write_file(graph_file, tensors, {**metadata, "graph": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(FormatError, match="nested too deeply|must hold"):
        Model.load(graph_file, device="cpu")


def test_a_graph_checkpoint_of_ray_tune_resumes(tmp_path):
    """tune's checkpoint files hold a graph model with its training state."""
    tune = pytest.importorskip("intricate_py.tune")
    from ray.tune import Checkpoint

    xs, ys = wide_inputs(32), targets(32)
    model = wide_graph(seed=2)
    model.fit(xs, ys, loss=LOSSES, optimizer=Adam(0.01), epochs=1, batch_size=16)
    tune.save_checkpoint(model, 1, tmp_path)
    loaded, done = tune.load_checkpoint(Checkpoint.from_directory(tmp_path), device="cpu")
    assert done == 1 and loaded.optimizer.iterations == 2
    for got, want in zip(loaded.predict(xs), model.predict(xs)):
        np.testing.assert_array_equal(got, want)


def test_a_chain_made_with_inputs_keeps_its_names(tmp_path):
    x = Input(4, name="pixels")
    model = Model(x, Dense(2, name="logits")(ReLU()(Dense(5, name="hidden")(x))), device="cpu", seed=0)
    model.save(tmp_path / "m.safetensors")
    loaded = Model.load(tmp_path / "m.safetensors", device="cpu")
    assert loaded.input_names == ["pixels"] and loaded.output_names == ["logits"]
    data = np.ones((2, 4))
    np.testing.assert_array_equal(loaded.predict({"pixels": data}), model.predict(data))


def test_a_path_model_refuses_a_graph_of_other_connections(tmp_path):
    x = Input(4, name="x")
    Model(x, [Dense(4, name="a")(x), Dense(4, name="b")(x)], device="cpu").save(tmp_path / "parallel.safetensors")
    for target in (Model([Dense(4), Dense(4)], input_size=4, device="cpu"), Model([Dense(4), Dense(4)], device="cpu")):
        with pytest.raises(FormatError, match="connected otherwise|not the path"):
            target.load(tmp_path / "parallel.safetensors")


def test_a_crafted_node_giving_a_dense_two_inputs_is_refused(graph_file):
    rewired(graph_file, lambda g: g["nodes"][0].__setitem__("inputs", [["input", 0], ["input", 0]]))
    with pytest.raises(FormatError, match="takes one input"):
        Model.load(graph_file, device="cpu")
