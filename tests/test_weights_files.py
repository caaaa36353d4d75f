"""A model's weights as a list and as a file (Keras's get_weights,
set_weights, save_weights, load_weights, issue 14), and PyTorch
nn.Sequential state_dicts read into a Model (issue 15)."""

import json

import numpy as np
import pytest
import safetensors.numpy

from intricate_py import FormatError, Model
from intricate_py.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Softmax, TanH
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import Adam

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 6)).astype(np.float32)
Y = RNG.integers(0, 3, 32)


def mlp(device="cpu", seed=0, hidden=8, **kwargs):
    return Model([Dense(hidden), ReLU(), Dropout(0.2), Dense(3), Softmax()], input_size=6, device=device,
                 seed=seed, **kwargs)


def cnn(device="cpu", seed=0):
    return Model([Conv2D(4, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(5, 3), ReLU(), Flatten(), Dropout(0.25),
                  Dense(3), Softmax()], input_size=(2, 8, 8), device=device, seed=seed)


def assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------------ get_weights / set_weights
def test_get_weights_in_the_layers_own_layout_and_layer_order():
    model = cnn()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 2, 3, 3), (4,), (5, 4, 3, 3), (5,), (20, 3), (3,)]
    np.testing.assert_array_equal(weights[0], model.layers[0].weights)  # Conv2D: (filters, in, kh, kw)
    np.testing.assert_array_equal(weights[4], model.layers[7].weights)  # Dense: (inputs, units), as Keras
    np.testing.assert_array_equal(weights[5], model.layers[7].biases)
    weights[0][...] = 7  # copies: the model is untouched
    assert not (model.layers[0].weights == 7).any()
    assert Model([Dense(3), ReLU()], device="cpu").get_weights() == []  # unbuilt: nothing yet, as in Keras


def test_set_weights_takes_layer_weights_of_a_square_dense_as_they_are():
    """A square W fits either layout: set_weights must not transpose it."""
    model = Model([Dense(4), TanH(), Dense(4)], input_size=4, device="cpu", seed=0)
    other = Model([Dense(4), TanH(), Dense(4)], input_size=4, device="cpu", seed=1)
    square = np.arange(16.0).reshape(4, 4) / 16
    model.set_weights([square, model.layers[0].biases, *other.get_weights()[2:]])
    np.testing.assert_array_equal(model.layers[0].weights, square.astype(np.float32))
    model.set_weights(other.get_weights())
    np.testing.assert_array_equal(model.predict(X[:, :4]), other.predict(X[:, :4]))
    np.testing.assert_array_equal(model.get_weights()[0], other.layers[0].weights)
    # the files keep PyTorch's layout: a Linear's weight is (units, inputs)
    np.testing.assert_array_equal(model.layers[0].state_dict()["weight"], other.layers[0].weights.T)


def test_set_weights_round_trip(device):
    source, target = mlp(seed=1), mlp(device=device, seed=2)
    source.fit(X, Y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=2, batch_size=8)
    assert not np.allclose(target.predict(X), source.predict(X))
    target.set_weights(source.get_weights())
    np.testing.assert_allclose(target.predict(X), source.predict(X), rtol=1e-6, atol=1e-7)
    target.set_weights([w.tolist() for w in source.get_weights()])  # nested lists too
    assert_same(target.get_weights(), source.get_weights())


@pytest.mark.parametrize("change, message", [
    (lambda w: w[:3], r"expected 4 arrays, as get_weights\(\) gives .*Received: 3"),
    (lambda w: w + [w[0]], r"Received: 5"),
    (lambda w: [w[0].T, *w[1:]], r"layer 0 Dense\(6→8\) expects W \(weights\[0\]\) of shape \(6, 8\). "
                                 r"Received: shape=\(8, 6\)"),
    (lambda w: [*w[:3], np.array([np.nan, 0, 0])], r"layer 3 Dense\(8→3\) expects finite values for b "
                                                    r"\(weights\[3\]\). Received: nan at index \(0,\)"),
    (lambda w: [*w[:3], np.array([1e39, 0, 0])], r"b \(weights\[3\]\) that fit float32"),
    (lambda w: [*w[:3], ["a", "b", "c"]], r"expects real numbers for b \(weights\[3\]\)"),
    (lambda w: np.zeros(4), r"expected a list of arrays"),
])
def test_set_weights_checks_everything_before_changing_anything(change, message):
    model = mlp()
    before = model.get_weights()
    with pytest.raises(ValueError, match=message):
        model.set_weights(change(mlp(seed=5).get_weights()))
    assert_same(model.get_weights(), before)


def test_set_weights_needs_a_built_model():
    with pytest.raises(ValueError, match="no weights yet"):
        Model([Dense(3)], device="cpu").set_weights([])


def test_a_layers_own_get_weights_and_set_weights():
    """Keras's layer methods: its arrays in the order of its parameters,
    BatchNormalization's moving statistics included; all or nothing."""
    from intricate_py.layers import BatchNormalization

    model = Model([Dense(4, use_bias=False), BatchNormalization(), Dense(3, "relu")], input_size=6, device="cpu",
                  seed=0)
    first, norm, last = model.layers
    assert [w.shape for w in first.get_weights()] == [(6, 4)] and ReLU().get_weights() == []
    assert [w.shape for w in norm.get_weights()] == [(4,)] * 4
    np.testing.assert_array_equal(norm.get_weights()[3], norm.moving_variance)
    norm.set_weights([np.full(4, 2.0), np.ones(4), np.zeros(4), np.full(4, 4.0)])
    np.testing.assert_array_equal(norm.moving_variance, np.full(4, 4.0))
    before = last.get_weights()
    with pytest.raises(ValueError, match=r"Dense\(4→3, relu\) expects 2 arrays, as get_weights\(\) gives "
                                         r"\(W, b\). Received: 1"):
        last.set_weights(before[:1])
    with pytest.raises(ValueError, match=r"expects finite values for b \(weights\[1\]\)"):
        last.set_weights([before[0], np.full(3, np.nan)])
    assert_same(last.get_weights(), before)
    with pytest.raises(ValueError, match=r"expects moving_variance \(weights\[3\]\) without negative values"):
        norm.set_weights([np.ones(4), np.ones(4), np.zeros(4), -np.ones(4)])
    with pytest.raises(ValueError, match=r"layer 1 .*expects moving_variance \(weights\[4\]\) without negative"):
        model.set_weights([*model.get_weights()[:4], -np.ones(4), *model.get_weights()[5:]])
    np.testing.assert_array_equal(norm.moving_variance, np.full(4, 4.0))
    ReLU().set_weights([])  # a layer without parameters takes none, as in Keras
    assert [w.shape for w in model.get_weights()] == [(6, 4), (4,), (4,), (4,), (4,), (4, 3), (3,)]


def test_dense_as_keras_writes_it_and_without_biases_as_torch_linear():
    """Dense(units, activation, use_bias) in Keras's order; use_bias=False
    holds no b, and its file is nn.Linear(bias=False)'s state_dict."""
    torch = pytest.importorskip("torch")
    layer = Dense(4, "relu", False, input_size=6)
    assert repr(layer) == "Dense(6→4, relu, no bias)" and layer.get_config()["use_bias"] is False
    assert layer.get_weights() == []  # not built yet: a model draws them from its seed
    with pytest.raises(AttributeError, match="has no biases: it was made with use_bias=False"):
        layer.biases
    linear = torch.nn.Linear(6, 4, bias=False)
    layer.load_state_dict({k: v.detach().numpy() for k, v in linear.state_dict().items()})
    assert [w.shape for w in layer.get_weights()] == [(6, 4)] and list(layer.params) == ["W"]
    want = torch.relu(linear(torch.from_numpy(X))).detach().numpy()
    np.testing.assert_allclose(Model([layer], device="cpu").predict(X), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"expects tensors \['weight'\] \(it has no biases\). Received: "
                                         r"\['bias', 'weight'\]"):
        layer.load_state_dict({"weight": np.zeros((4, 6)), "bias": np.zeros(4)})
    with pytest.raises(ValueError, match="expected True or False. Received: use_bias='no'"):
        Dense(4, use_bias="no")
    with pytest.raises(ValueError, match=r"Keras's order: Dense\(units, activation, use_bias\)\). Received: 784; "
                                         r"the input width is a keyword, input_size=784"):
        Dense(10, 784)


# ------------------------------------------------------------------ save_weights / load_weights
def test_save_weights_and_load_weights(tmp_path, device):
    path = tmp_path / "w.safetensors"
    source = mlp(seed=1)
    source.fit(X, Y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=2, batch_size=8)
    source.save_weights(path)
    with open(path, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    assert meta["kind"] == "weights" and "architecture" not in meta
    assert sorted(safetensors.numpy.load_file(str(path))) == ["0.bias", "0.weight", "3.bias", "3.weight"]
    target = mlp(device=device, seed=2)
    assert target.load_weights(path) is None
    np.testing.assert_allclose(target.predict(X), source.predict(X), rtol=1e-6, atol=1e-7)
    # Keras semantics: weights go by position and shape, not by configuration
    other = Model([Dense(8), TanH(), Dropout(0.5), Dense(3), Softmax()], input_size=6, device="cpu")
    other.load_weights(path)
    assert_same(other.get_weights(), source.get_weights())
    with pytest.raises(FormatError, match="holds a model's weights only, not a model: use model.load_weights"):
        Model.load(path)


def test_load_weights_reads_model_files_and_refuses_layer_files(tmp_path):
    source = mlp(seed=1)
    source.fit(X, Y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=1, batch_size=8)
    source.save(tmp_path / "m.safetensors", include_optimizer=True)
    target = mlp(seed=2)
    target.load_weights(tmp_path / "m.safetensors")  # its optimizer state is left out
    assert_same(target.get_weights(), source.get_weights())
    assert target.optimizer is None
    source.layers[0].save(tmp_path / "dense.safetensors")
    with pytest.raises(FormatError, match="holds a layer, not a model or a model's weights only: use Layer.load"):
        target.load_weights(tmp_path / "dense.safetensors")


def test_load_weights_refuses_other_shapes_and_changes_nothing(tmp_path):
    path = tmp_path / "w.safetensors"
    mlp(hidden=8).save_weights(path)
    model = mlp(hidden=9)
    before = model.get_weights()
    with pytest.raises(FormatError, match=r"w.safetensors: layer 0: Dense\(6→9\) expects weight of shape \(9, inputs\)"):
        model.load_weights(path)
    assert_same(model.get_weights(), before)
    with pytest.raises(ValueError, match="no weights yet"):
        Model([Dense(8), ReLU(), Dropout(0.2), Dense(3), Softmax()], device="cpu").load_weights(path)


def test_load_weights_is_all_or_nothing(tmp_path):
    """The first layer fits, the last does not: neither changes."""
    path = tmp_path / "w.safetensors"
    source = mlp(seed=3)
    tensors = {f"{i}.{name}": t for i in (0, 3) for name, t in source.layers[i].state_dict().items()}
    tensors["3.bias"] = np.array([0, np.inf, 0], np.float32)
    safetensors.numpy.save_file(tensors, str(path))
    model = mlp()
    before = model.get_weights()
    with pytest.raises(FormatError, match=r"layer 3: Dense\(8→3\) expects finite values for b"):
        model.load_weights(path)
    assert_same(model.get_weights(), before)


# ------------------------------------------------------------------ PyTorch state_dicts
def train_torch(torch, net, x, y, steps=20):
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()  # logits: no Softmax in the net
        optimizer.step()
    return net.eval()


def save_torch(torch, net, path):
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(path))


def test_a_trained_torch_mlp_loads_into_the_matching_model(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    train_torch(torch, net, torch.from_numpy(X), torch.from_numpy(Y))
    save_torch(torch, net, tmp_path / "mlp.safetensors")
    model = mlp()  # the same modules, and a Softmax after the logits
    model.load_weights(tmp_path / "mlp.safetensors")
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-5, atol=1e-6)


def test_a_trained_torch_cnn_loads_into_the_matching_model(tmp_path, device):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU(),
                        nn.Flatten(), nn.Dropout(0.25), nn.Linear(20, 3))
    images = RNG.normal(size=(16, 2, 8, 8)).astype(np.float32)
    train_torch(torch, net, torch.from_numpy(images), torch.from_numpy(Y[:16]))
    save_torch(torch, net, tmp_path / "cnn.safetensors")
    model = cnn(device=device)
    model.load_weights(tmp_path / "cnn.safetensors")
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(images)), dim=1).numpy()
    np.testing.assert_allclose(model.predict(images), expected, rtol=1e-5, atol=1e-6)


def test_half_precision_torch_weights(tmp_path):
    """bfloat16 and float16 state_dicts widen exactly to float32."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    nn = torch.nn
    for dtype in (torch.bfloat16, torch.float16):
        net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3)).to(dtype)
        save_torch(torch, net, tmp_path / "half.safetensors")
        model = mlp()
        model.load_weights(tmp_path / "half.safetensors")
        files = [t for layer in model.layers for t in layer.state_dict().values()]
        for ours, theirs in zip(files, net.state_dict().values()):
            np.testing.assert_array_equal(ours, theirs.float().numpy())


def test_torch_layers_out_of_position_are_named(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    path = tmp_path / "net.safetensors"
    save_torch(torch, nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), path)  # no Dropout
    with pytest.raises(FormatError, match=r"layer 2: Dropout\(0.2\) holds no parameters. Received tensors "
                                          r"\['bias', 'weight'\]. The layers with parameters are at positions "
                                          r"\[0, 3\] in this model and \[0, 2\] in the file: in a "
                                          r"torch.nn.Sequential every module takes a position"):
        mlp().load_weights(path)
    save_torch(torch, nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 3)), path)
    with pytest.raises(FormatError, match=r"tensors that no layer holds: \['3.bias', '3.weight'\] \(this model's "
                                          r"layers are at positions 0 to 2. The layers with parameters are at positions \[0\] in "
                                          r"this model and \[0, 3\] in the file"):
        Model([Dense(8), ReLU(), Softmax()], input_size=6, device="cpu").load_weights(path)
    save_torch(torch, nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 4)), path)
    with pytest.raises(FormatError, match=r"layer 3: Dense\(8→3\) expects weight of shape \(3, inputs\) and bias of "
                                          r"shape \(3,\). Received: weight \(4, 8\), bias \(4,\)"):
        mlp().load_weights(path)
    save_torch(torch, nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Dropout(), nn.Linear(8, 3)), path)
    with pytest.raises(FormatError, match=r"layer 0: Dense\(6→8\) expects tensors \['bias', 'weight'\]. "
                                          r"Received: \['weight'\]"):
        mlp().load_weights(path)


def test_nested_torch_modules_are_refused_with_the_naming_rule(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential()
    net.add_module("features", nn.Sequential(nn.Linear(6, 8), nn.ReLU()))
    path = tmp_path / "nested.safetensors"
    save_torch(torch, net, path)
    with pytest.raises(FormatError, match=r"tensors that no layer holds: \['features.0.bias', 'features.0.weight'\] "
                                          r"\(tensors are named '\{position\}.\{weight\|bias\}'"):
        mlp().load_weights(path)


def test_a_saved_model_loads_into_torch_and_back(tmp_path):
    """save_weights gives the Sequential's state_dict; load_weights takes it back."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    nn = torch.nn
    model = cnn(seed=4)
    model.save_weights(tmp_path / "w.safetensors")
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU(),
                        nn.Flatten(), nn.Dropout(0.25), nn.Linear(20, 3), nn.Softmax(dim=1)).eval()
    net.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    images = RNG.normal(size=(4, 2, 8, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(images)).numpy(), model.predict(images), rtol=1e-5, atol=1e-6)
    save_torch(torch, net, tmp_path / "back.safetensors")
    twin = cnn(seed=9)
    twin.load_weights(tmp_path / "back.safetensors")
    assert_same(twin.get_weights(), model.get_weights())

