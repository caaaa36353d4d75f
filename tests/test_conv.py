"""Conv2D, MaxPool2D and Flatten: gradients, answers worked by hand, GPU
parity, files, and shapes that do not fit."""

import numpy as np
import pytest
import safetensors.numpy

from gradcheck import assert_close, numeric_gradient
from intricate_py import FormatError, Model
from intricate_py.layers import Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import SGD, Adam

CONVS = [
    dict(filters=3, kernel_size=3),
    dict(filters=2, kernel_size=(2, 3), stride=2),
    dict(filters=4, kernel_size=3, stride=(2, 1), padding=1),
    dict(filters=2, kernel_size=1, padding=(0, 2)),
]
POOLS = [dict(pool_size=2), dict(pool_size=3, stride=1), dict(pool_size=(3, 2), stride=2, padding=1)]


def check_layer_gradients(layer, x, rng):
    """E = Σ r · layer(x): back_propagate(r) and each param.grad against
    central differences, in float64."""
    r = rng.normal(size=(x.shape[0], *layer.output_shape))

    def energy():
        return float(np.sum(r * layer.forward(x)))

    energy()
    assert_close(np.array(layer.back_propagate(r)), numeric_gradient(energy, x))
    for param in layer.parameters:
        energy()
        layer.back_propagate(r)
        assert_close(np.array(param.grad), numeric_gradient(energy, param.value))


@pytest.mark.parametrize("config", CONVS, ids=lambda c: str(c))
def test_conv2d_gradients(config, cpu64, rng):
    layer = Conv2D(**config, bias_init="glorot_uniform")
    layer.build((3, 5, 6), cpu64, rng)
    check_layer_gradients(layer, rng.normal(size=(2, 3, 5, 6)), rng)


@pytest.mark.parametrize("config", POOLS, ids=lambda c: str(c))
def test_maxpool2d_gradients(config, cpu64, rng):
    layer = MaxPool2D(**config)
    layer.build((2, 6, 5), cpu64)
    check_layer_gradients(layer, rng.normal(size=(3, 2, 6, 5)), rng)


def test_flatten_gradients_and_order(cpu64, rng):
    layer = Flatten()
    layer.build((2, 3, 4), cpu64)
    x = rng.normal(size=(2, 2, 3, 4))
    np.testing.assert_array_equal(layer.forward(x), x.reshape(2, -1))  # channel, row, column
    check_layer_gradients(layer, x, rng)


def test_whole_cnn_gradients(rng):
    """Conv, pool, flatten and dense in one model: one SGD step of rate 1 moves
    each parameter by its gradient; compare with central differences."""
    model = Model([Conv2D(2, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(3, 2, stride=2), Flatten(),
                   Dense(4), Softmax()], input_size=(1, 6, 6), dtype="float64", seed=2)
    x, y = rng.normal(size=(5, 1, 6, 6)), rng.integers(0, 4, 5)
    loss = CategoricalCrossEntropy()
    before = [np.array(p.value) for p in model.parameters]
    numeric = [numeric_gradient(lambda: model.evaluate(x, y, loss)["loss"], p.value) for p in model.parameters]
    model.fit(x, y, loss=loss, optimizer=SGD(1.0), epochs=1, batch_size=5, shuffle=False)
    for b, p, n in zip(before, model.parameters, numeric):
        assert_close(b - np.array(p.value), n, rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------ worked by hand
def test_conv2d_by_hand():
    """x = [[1 2 3] [4 5 6] [7 8 9]], W = [[1 0] [0 -1]], b = 10:
    y[i, j] = x[i, j] - x[i+1, j+1] + 10 = -4 + 10 everywhere."""
    layer = Conv2D(1, 2, input_shape=(1, 3, 3))
    layer.weights = [[[[1, 0], [0, -1]]]]
    layer.biases = [10]
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(layer.forward(x), [[[[6, 6], [6, 6]]]])
    # padding 1, stride 2: xp is x framed by zeros (5 × 5) and
    # y[i, j] = xp[2i, 2j] - xp[2i+1, 2j+1] + 10: 0-1, 0-3, 0-7, 5-9 (+10)
    padded = Conv2D(1, 2, stride=2, padding=1, input_shape=(1, 3, 3))
    padded.weights, padded.biases = [[[[1, 0], [0, -1]]]], [10]
    np.testing.assert_array_equal(padded.forward(x), [[[[9, 7], [3, 6]]]])


def test_maxpool2d_by_hand():
    x = np.array([[1, 3, 2, 0], [4, 2, 1, 5], [0, 1, 9, 9], [7, 0, 3, 8]], np.float32).reshape(1, 1, 4, 4)
    layer = MaxPool2D(2)
    np.testing.assert_array_equal(layer.forward(x), [[[[4, 5], [7, 9]]]])
    # the gradient reaches each window's first maximum only (9 at (2, 2), not (2, 3))
    dx = layer.back_propagate(np.array([[[[1, 2], [3, 4]]]], np.float32))
    expected = np.zeros((4, 4))
    expected[1, 0], expected[1, 3], expected[3, 0], expected[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx[0, 0], expected)


# ------------------------------------------------------------ GPU parity
@pytest.mark.parametrize("config", CONVS, ids=lambda c: str(c))
def test_conv2d_matches_numpy_on_the_gpu(gpu, config, rng):
    check_gpu_parity(lambda: Conv2D(**config), (3, 7, 9), rng)


@pytest.mark.parametrize("config", POOLS, ids=lambda c: str(c))
def test_maxpool2d_matches_numpy_on_the_gpu(gpu, config, rng):
    check_gpu_parity(lambda: MaxPool2D(**config), (2, 7, 9), rng)


def check_gpu_parity(make, shape, rng):
    x = rng.normal(size=(3, *shape)).astype(np.float32)
    models = [Model([make()], input_size=shape, device=d, seed=4) for d in ("cpu", "gpu")]
    outs, grads = [], []
    r = None
    for model in models:
        layer, backend = model.layers[0], model.device
        y = backend.to_numpy(layer.forward(backend.asarray(x)))
        r = rng.normal(size=y.shape).astype(np.float32) if r is None else r
        dx = backend.to_numpy(layer.back_propagate(backend.asarray(r)))
        outs.append(y)
        grads.append([dx] + [backend.to_numpy(p.grad) for p in layer.parameters])
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for g, c in zip(grads[1], grads[0]):
        np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-4 * np.abs(c).max())


def test_cnn_trains_in_parity_on_the_gpu(gpu, rng):
    x, y = rng.random((48, 1, 10, 10)).astype(np.float32), rng.integers(0, 3, 48)

    def cnn(device):
        return Model([Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(3), Softmax()],
                     input_size=(1, 10, 10), device=device, seed=1)

    models = [cnn("cpu"), cnn("gpu")]
    for model in models:
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=2, batch_size=16)
    for a, b in zip(models[0].parameters, models[1].parameters):
        wa, wb = models[0].device.to_numpy(a.value), models[1].device.to_numpy(b.value)
        np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-4 * np.abs(wa).max())


# ------------------------------------------------------------ files
def test_conv2d_round_trip_and_torch_layout(tmp_path, rng):
    model = Model([Conv2D(5, 3, stride=2, padding=1), ReLU()], input_size=(2, 8, 8), device="cpu", seed=0)
    conv = model.layers[0]
    conv.save(tmp_path / "conv.safetensors")
    loaded = Layer.load(tmp_path / "conv.safetensors")
    assert repr(loaded) == "Conv2D(2→5, 3×3, stride 2, padding 1)"
    np.testing.assert_array_equal(loaded.weights, conv.weights)
    assert safetensors.numpy.load_file(str(tmp_path / "conv.safetensors"))["weight"].shape == (5, 2, 3, 3)
    x = rng.normal(size=(2, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), conv.forward(x))
    with pytest.raises(FormatError, match=r"not Conv2D\(2→6, 3×3\): filters 5 in the file, 6 here"):
        Conv2D(6, 3, input_shape=(2, 8, 8)).load(tmp_path / "conv.safetensors")


def test_conv2d_file_loads_into_torch_conv2d(tmp_path, rng):
    torch = pytest.importorskip("torch")
    conv = Model([Conv2D(5, (3, 2), stride=(2, 1), padding=1)], input_size=(2, 7, 6), device="cpu", seed=0).layers[0]
    conv.save(tmp_path / "conv.safetensors")
    twin = torch.nn.Conv2d(2, 5, (3, 2), stride=(2, 1), padding=1)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in safetensors.numpy.load_file(str(tmp_path / "conv.safetensors")).items()})
    x = rng.normal(size=(3, 2, 7, 6)).astype(np.float32)
    np.testing.assert_allclose(twin(torch.from_numpy(x)).detach().numpy(), conv.forward(x), rtol=1e-5, atol=1e-5)


def test_cnn_model_round_trip(tmp_path, device, rng):
    model = Model([Conv2D(3, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(2)], input_size=(1, 8, 8), device=device, seed=0)
    model.save(tmp_path / "cnn.safetensors")
    loaded = Model.load(tmp_path / "cnn.safetensors", device=device)
    x = rng.normal(size=(4, 8, 8)).astype(np.float32)  # the single channel's axis may be left out
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# ------------------------------------------------------------ shapes
def test_summary_shows_shapes_and_parameters():
    model = Model([Conv2D(32, 5), ReLU(), MaxPool2D(2), Flatten(), Dense(10)], input_size=(1, 28, 28))
    text = str(model)
    assert "Conv2D(1→32, 5×5)  (n, 32, 24, 24)  832" in text
    assert "MaxPool2D(2×2)" in text and "(n, 32, 12, 12)" in text and "(n, 4608)" in text
    assert [layer.output_shape for layer in model.layers][-2:] == [(4608,), (10,)]


@pytest.mark.parametrize(
    "layers, input_size, match",
    [
        ([Conv2D(4, 7)], (1, 5, 5), r"layer 0 Conv2D\(4, 7×7\) has a 7×7 kernel larger than the 5×5 images"),
        ([Conv2D(4, 3), MaxPool2D(4)], (1, 5, 5), r"layer 1 MaxPool2D\(4×4\) has a 4×4 pool larger than the 3×3"),
        ([Conv2D(4, 3), Flatten(), Conv2D(2, 1)], (1, 5, 5), r"layer 2 Conv2D\(2, 1×1\) expects images"),
        ([Conv2D(4, 3)], 25, r"layer 0 Conv2D\(4, 3×3\) expects images of shape \(channels, height, width\)"),
    ],
)
def test_chains_that_do_not_fit(layers, input_size, match):
    with pytest.raises(ValueError, match=match):
        Model(layers, input_size=input_size, device="cpu")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Conv2D(0, 3), "filters=0"),
        (lambda: Conv2D(2, 0), "kernel_size=0"),
        (lambda: Conv2D(2, (3,)), r"pair of integers. Received: kernel_size=\(3,\)"),
        (lambda: Conv2D(2, 3, padding=-1), "non-negative integers. Received: padding=-1"),
        (lambda: MaxPool2D(2, padding=2), "at most half the pool size"),
        (lambda: MaxPool2D(2, stride=0), "stride=0"),
    ],
)
def test_bad_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
