"""BatchNormalization and LayerNormalization: known answers by hand, the
backend operations on the GPU against numpy (odd shapes, channels of more
values than a workgroup's lanes, packed and separate arrays), float64
central differences of every gradient in training and inference, PyTorch
parity (float64 on the CPU, float32 on the GPU), the moving statistics
through fit (never touched by the optimizer or its weight decay), files
(PyTorch's BatchNorm2d state_dict in and out), EarlyStopping, the
exporters' fold of a batch normalization into the product before it, and
bad arguments."""

import re
import shutil

import numpy as np
import pytest

from export_models import ATOL, RTOL, build_c
from gradcheck import numeric_gradient
from intricate_py import Input, Model
from intricate_py.backends import NumpyBackend
from intricate_py.callbacks import Callback, EarlyStopping
from intricate_py.export.common import batch_norm_folds
from intricate_py.layers import BatchNormalization, Conv2D, Dense, Flatten, Layer, LayerNormalization, ReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import SGD, AdamW
from intricate_py.saving import FormatError

IMAGES = (3, 5, 3, 7)  # n, c, h, w: odd on purpose


def rng_of(seed=0):
    return np.random.default_rng(seed)


def built(layer: Layer, shape, backend, seed=1):
    """``layer`` built for samples of ``shape`` on ``backend``, with random
    gamma and beta (and moving statistics) where it has them."""
    layer.build(shape, backend)
    rng = rng_of(seed)
    c = layer.channels
    if layer.scale:
        layer.gamma = rng.uniform(0.5, 1.5, c)
    if layer.center:
        layer.beta = rng.normal(size=c)
    if isinstance(layer, BatchNormalization):
        layer.moving_mean = rng.normal(size=c)
        layer.moving_variance = rng.uniform(0.5, 2.0, c)
    return layer


def run(layer: Layer, x, dy, training: bool):
    """(y, dx, {name: gradient}) of one forward and backward on the layer's own."""
    backend = layer.backend
    layer.training = training
    y = backend.to_numpy(layer.forward(backend.from_numpy(x))).copy()
    dx = backend.to_numpy(layer.back_propagate(backend.from_numpy(dy))).copy()
    grads = {p.name: backend.to_numpy(p.grad).copy() for p in layer.parameters}
    return y, dx, grads


# ------------------------------------------------------------------ known answers
def test_batch_norm_by_hand_in_training_and_inference():
    x = rng_of().normal(size=IMAGES) * 3 + 2
    layer = built(BatchNormalization(momentum=0.8, epsilon=0.01), IMAGES[1:], NumpyBackend("float64"))
    gamma, beta, mm, mv = layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance
    per_channel = (-1, 1, 1)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))  # biased
    layer.training = True
    y = layer.forward(x)
    want = (x - mean.reshape(per_channel)) / np.sqrt(var.reshape(per_channel) + 0.01) * gamma.reshape(per_channel)
    np.testing.assert_allclose(y, want + beta.reshape(per_channel), rtol=1e-12, atol=1e-12)
    # Keras's update, with the biased batch variance
    np.testing.assert_allclose(layer.moving_mean, mm * 0.8 + mean * 0.2, rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance, mv * 0.8 + var * 0.2, rtol=1e-12)
    mm, mv = layer.moving_mean, layer.moving_variance
    inferred = layer(x)  # inference: the moving statistics, left as they are
    want = (x - mm.reshape(per_channel)) / np.sqrt(mv.reshape(per_channel) + 0.01) * gamma.reshape(per_channel)
    np.testing.assert_allclose(inferred, want + beta.reshape(per_channel), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.moving_mean, mm)


@pytest.mark.parametrize("shape, axis, reduced", [((7, 4), 1, (0,)), ((7, 4), -1, (0,)), ((2, 3, 4, 5), -1, (0, 1, 2)),
                                                  ((2, 3, 4), 2, (0, 1)), ((2, 3, 4), -2, (0, 2))])
def test_batch_norm_normalizes_any_axis(shape, axis, reduced):
    x = rng_of(1).normal(size=shape) * 2 - 1
    layer = BatchNormalization(axis=axis, center=False, scale=False)
    layer.build(shape[1:], NumpyBackend("float64"))
    layer.training = True
    y = layer.forward(x)
    want = (x - x.mean(axis=reduced, keepdims=True)) / np.sqrt(x.var(axis=reduced, keepdims=True) + 1e-3)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert layer.moving_mean.shape == (shape[axis],) and layer.parameters == []


def test_layer_norm_by_hand_over_the_last_axis_of_sequences():
    x = rng_of(2).normal(size=(3, 4, 5)) * 2 + 1
    layer = built(LayerNormalization(), (4, 5), NumpyBackend("float64"))
    want = (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-3)
    want = want * layer.gamma + layer.beta
    np.testing.assert_allclose(layer(x), want, rtol=1e-12, atol=1e-12)
    layer.training = True
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-12, atol=1e-12)  # the same in training


# ------------------------------------------------------------------ float64 gradients
def _check_gradients(layer: Layer, x: np.ndarray, training: bool):
    """dx, dgamma and dbeta of ``layer`` against central differences of
    E = Σ r · y, in float64."""
    r = rng_of(5).normal(size=x.shape)
    mm, mv = (layer.moving_mean, layer.moving_variance) if isinstance(layer, BatchNormalization) else (None, None)

    def energy():
        if mm is not None:  # each training forward moves them: start every one from the same
            layer.moving_mean, layer.moving_variance = mm, mv
        layer.training = training
        return float(np.sum(r * layer.forward(x)))

    energy()
    _, dx, grads = run(layer, x, r, training)
    np.testing.assert_allclose(dx, numeric_gradient(energy, x), rtol=1e-6, atol=1e-8)
    for p in layer.parameters:
        np.testing.assert_allclose(grads[p.name], numeric_gradient(energy, p.value), rtol=1e-6, atol=1e-8,
                                   err_msg=p.name)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("options", [{}, {"center": False}, {"scale": False}])
def test_batch_norm_gradients_equal_central_differences(training, options):
    x = rng_of(3).normal(size=IMAGES) * 2 + 0.5
    _check_gradients(built(BatchNormalization(epsilon=0.01, **options), IMAGES[1:], NumpyBackend("float64")), x,
                     training)


@pytest.mark.parametrize("options", [{}, {"center": False, "scale": False}])
def test_layer_norm_gradients_equal_central_differences(options):
    x = rng_of(4).normal(size=(3, 4, 7)) * 2 - 0.5
    _check_gradients(built(LayerNormalization(epsilon=0.01, **options), (4, 7), NumpyBackend("float64")), x, True)


# ------------------------------------------------------------------ GPU operations
@pytest.mark.parametrize("shape, axis", [(IMAGES, 1), ((300, 3), 1), ((2, 9, 17, 3), 1), ((2, 3, 4), 2),
                                         ((5, 2, 3, 1), 3), ((1, 1), 1)])
@pytest.mark.parametrize("packed", [True, False])
def test_batch_norm_operations_on_the_gpu(gpu, cpu, shape, axis, packed):
    """Channels of more values than the 256 lanes of a workgroup, and pairs
    (mean and variance, moving mean and variance, dgamma and dbeta) in one
    buffer (as a model packs them) or in two."""
    rng = rng_of(6)
    c = shape[axis]
    x = (rng.normal(size=shape) * 3 + 1).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    gamma, beta = rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32)
    moving = np.concatenate([rng.normal(size=c), rng.uniform(0.5, 2, c)]).astype(np.float32)
    results = {}
    for backend in (cpu, gpu):
        def pair(values):
            if packed:
                both = backend.from_numpy(values)
                return backend.view(both, 0, (c,)), backend.view(both, c, (c,))
            return backend.from_numpy(values[:c]), backend.from_numpy(values[c:])

        mean, var = pair(np.zeros(2 * c, np.float32))
        mm, mv = pair(moving)
        dgamma, dbeta = pair(np.zeros(2 * c, np.float32))
        X, Y, DX, Y2, DX2 = backend.from_numpy(x), backend.empty(shape), backend.empty(shape), backend.empty(shape), \
            backend.empty(shape)
        G, B, DY = backend.from_numpy(gamma), backend.from_numpy(beta), backend.from_numpy(dy)
        backend.batch_norm_train(X, Y, mean, var, G, B, mm, mv, axis, 1e-3, 0.9)
        backend.batch_norm_grad(X, DY, mean, var, G, DX, dgamma, dbeta, axis, 1e-3)
        backend.batch_norm(X, Y2, mm, mv, None, B, axis, 1e-3)
        backend.batch_norm_grad(X, DY, mm, mv, None, DX2, None, None, axis, 1e-3, batch_statistics=False)
        results[backend.kind] = [backend.to_numpy(a) for a in (Y, mean, var, mm, mv, DX, dgamma, dbeta, Y2, DX2)]
    for name, got, want in zip("y mean var mm mv dx dgamma dbeta y2 dx2".split(), results["gpu"], results["cpu"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("rows, c", [(7, 5), (33, 17), (1, 1), (300, 3)])
def test_layer_norm_operations_on_the_gpu(gpu, cpu, rows, c):
    rng = rng_of(7)
    x = (rng.normal(size=(rows, c)) * 2 + 3).astype(np.float32)
    dy = rng.normal(size=(rows, c)).astype(np.float32)
    gamma, beta = rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32)
    results = {}
    for backend in (cpu, gpu):
        stats = backend.zeros((2 * rows,))
        mean, var = backend.view(stats, 0, (rows,)), backend.view(stats, rows, (rows,))
        X, Y, DX, G = backend.from_numpy(x), backend.empty((rows, c)), backend.empty((rows, c)), backend.from_numpy(gamma)
        grads = backend.zeros((2 * c,))
        dgamma, dbeta = backend.view(grads, 0, (c,)), backend.view(grads, c, (c,))
        backend.layer_norm(X, Y, mean, var, G, backend.from_numpy(beta), 1e-3)
        backend.layer_norm_grad(X, backend.from_numpy(dy), mean, var, G, DX, dgamma, dbeta, 1e-3)
        only_beta = backend.zeros((c,))
        backend.layer_norm_grad(X, backend.from_numpy(dy), mean, var, None, None, None, only_beta, 1e-3)
        results[backend.kind] = [backend.to_numpy(a) for a in (Y, stats, DX, grads, only_beta)]
    for name, got, want in zip("y stats dx grads dbeta".split(), results["gpu"], results["cpu"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_the_gpu_sums_in_a_fixed_order(gpu):
    """The same step twice gives the same bits."""
    x = rng_of(8).normal(size=(4, 3, 17, 9)).astype(np.float32)
    outputs = []
    for _ in range(2):
        layer = built(BatchNormalization(), (3, 17, 9), gpu)
        outputs.append(run(layer, x, x, training=True) + (layer.moving_variance,))
    for a, b in zip(outputs[0][:2] + outputs[0][3:], outputs[1][:2] + outputs[1][3:]):
        np.testing.assert_array_equal(a, b)
    for name in outputs[0][2]:
        np.testing.assert_array_equal(outputs[0][2][name], outputs[1][2][name])


# ------------------------------------------------------------------ PyTorch parity
def _torch_pair(device: str, request):
    """(backend, torch dtype, tolerances) for float64 on the CPU, float32 on the GPU."""
    torch = pytest.importorskip("torch")
    if device == "cpu":
        return NumpyBackend("float64"), torch.float64, dict(rtol=1e-10, atol=1e-12)
    return request.getfixturevalue("gpu"), torch.float32, dict(rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize("shape", [IMAGES, (9, 4)])
def test_batch_norm_equals_pytorch(device, shape, request):
    """Training: the outputs and every gradient equal torch.nn.BatchNorm2d's
    (BatchNorm1d's for vectors); the moving statistics follow Keras's
    formula, which PyTorch's running_var does not (it takes the unbiased
    variance, and its momentum is 1 - ours). Inference: the outputs, from
    the same moving statistics."""
    torch = pytest.importorskip("torch")
    backend, dtype, tol = _torch_pair(device, request)
    c, momentum, eps = shape[1], 0.9, 1e-5
    rng = rng_of(9)
    x = rng.normal(size=shape) * 2 + 1
    dy = rng.normal(size=shape)
    layer = built(BatchNormalization(momentum=momentum, epsilon=eps), shape[1:], backend)
    mm, mv = layer.moving_mean.astype(np.float64), layer.moving_variance.astype(np.float64)
    module = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(c, eps=eps, momentum=1 - momentum)
    module = module.to(dtype)
    module.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in layer.state_dict().items()}, strict=False)
    y, dx, grads = run(layer, x, dy, training=True)
    tx = torch.tensor(x, dtype=dtype, requires_grad=True)
    module.train()
    ty = module(tx)
    ty.backward(torch.tensor(dy, dtype=dtype))
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["gamma"], module.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["beta"], module.bias.grad.numpy(), **tol)
    axes = (0, 2, 3) if len(shape) == 4 else (0,)
    batch_mean, biased = x.mean(axis=axes), x.var(axis=axes)
    np.testing.assert_allclose(layer.moving_mean, mm * momentum + batch_mean * (1 - momentum), **tol)
    np.testing.assert_allclose(layer.moving_variance, mv * momentum + biased * (1 - momentum), **tol)
    np.testing.assert_allclose(module.running_mean.numpy(), layer.moving_mean, **tol)
    count = x.size // c
    unbiased = biased * count / (count - 1)
    np.testing.assert_allclose(module.running_var.numpy(), mv * momentum + unbiased * (1 - momentum), **tol)
    module.running_var.copy_(torch.tensor(layer.moving_variance, dtype=dtype))
    module.eval()
    np.testing.assert_allclose(layer(x), module(torch.tensor(x, dtype=dtype)).detach().numpy(), **tol)


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_layer_norm_equals_pytorch(device, request):
    torch = pytest.importorskip("torch")
    backend, dtype, tol = _torch_pair(device, request)
    shape = (3, 4, 7)
    rng = rng_of(10)
    x, dy = rng.normal(size=shape) * 2 - 1, rng.normal(size=shape)
    layer = built(LayerNormalization(epsilon=1e-5), shape[1:], backend)
    module = torch.nn.LayerNorm(7, eps=1e-5).to(dtype)
    module.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in layer.state_dict().items()})
    y, dx, grads = run(layer, x, dy, training=True)
    tx = torch.tensor(x, dtype=dtype, requires_grad=True)
    ty = module(tx)
    ty.backward(torch.tensor(dy, dtype=dtype))
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["gamma"], module.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["beta"], module.bias.grad.numpy(), **tol)
    np.testing.assert_allclose(layer(x), y, **tol)


# ------------------------------------------------------------------ fitting
def _classifier(device, momentum=0.9):
    """A BatchNormalization on the inputs (so that its batch statistics are
    the data's), then a Dense and a Softmax."""
    return Model([BatchNormalization(momentum=momentum, name="norm"), Dense(3), Softmax()], input_size=5,
                 device=device, seed=0)


def _data(n=48):
    rng = rng_of(11)
    return (rng.normal(size=(n, 5)) * 2 + 1).astype(np.float32), rng.integers(0, 3, n)


def test_fit_moves_the_statistics_only_by_the_layers_update(device):
    """Six steps of AdamW with weight decay: the moving statistics are
    Keras's update over the six batches (shuffle=False), computed by hand;
    gamma and beta train."""
    model = _classifier(device)
    x, y = _data()
    layer = model.layers[0]
    assert [p.name for p in model.parameters][:2] == ["gamma", "beta"] and layer.params["moving_mean"].grad is None
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=AdamW(0.05, weight_decay=0.5), epochs=2,
              batch_size=16, shuffle=False)
    mean, variance = np.zeros(5), np.ones(5)
    for _ in range(2):
        for start in range(0, 48, 16):
            batch = x[start : start + 16].astype(np.float64)
            mean = mean * 0.9 + batch.mean(axis=0) * 0.1
            variance = variance * 0.9 + batch.var(axis=0) * 0.1
    np.testing.assert_allclose(layer.moving_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance, variance, rtol=1e-5, atol=1e-6)
    assert not np.allclose(layer.gamma, 1) and not np.allclose(layer.beta, 0)
    model.predict(x)
    model.evaluate(x, y)
    np.testing.assert_allclose(layer.moving_mean, mean, rtol=1e-5, atol=1e-6)  # inference leaves them


def test_files_keep_the_moving_statistics(tmp_path):
    model = _classifier("cpu")
    x, y = _data()
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=1, batch_size=16)
    layer = model.layers[0]
    assert [w.shape for w in model.get_weights()] == [(5,)] * 4 + [(5, 3), (3,)]  # layer.weights layouts
    assert list(layer.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    model.save(tmp_path / "m.safetensors")
    loaded = Model.load(tmp_path / "m.safetensors", device="cpu")
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        np.testing.assert_array_equal(getattr(loaded.layers[0], name), getattr(layer, name))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    model.save_weights(tmp_path / "w.safetensors")
    other = _classifier("cpu")
    other.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(other.layers[0].moving_variance, layer.moving_variance)
    layer.save(tmp_path / "layer.safetensors")
    again = Layer.load(tmp_path / "layer.safetensors")
    assert again.get_config() == {"momentum": 0.9, "input_shape": [5]}
    np.testing.assert_array_equal(again.moving_mean, layer.moving_mean)


def test_early_stopping_puts_back_the_moving_statistics_of_the_best_epoch(device):
    model = _classifier(device)
    x, y = _data()
    seen = []

    class Watch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((self.model.layers[0].moving_mean, self.model.layers[0].moving_variance))

    stopper = EarlyStopping(monitor="loss", patience=100, restore_best_weights=True, mode="max")
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=3, batch_size=16,
              callbacks=[stopper, Watch()])
    assert stopper.best_epoch == 0 and not np.array_equal(seen[0][0], seen[-1][0])
    np.testing.assert_array_equal(model.layers[0].moving_mean, seen[0][0])
    np.testing.assert_array_equal(model.layers[0].moving_variance, seen[0][1])


# ------------------------------------------------------------------ PyTorch files
def _torch_sequential(torch):
    torch.manual_seed(0)
    sequential = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())
    with torch.no_grad():
        sequential[1].weight.uniform_(0.5, 1.5)
        sequential[1].bias.normal_()
    sequential.train()
    sequential(torch.randn(6, 2, 6, 7) * 2 + 1)  # running statistics that are not 0 and 1
    return sequential.eval()


def test_a_pytorch_batchnorm2d_state_dict_loads_and_a_saved_model_loads_into_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    sequential = _torch_sequential(torch)
    assert "1.num_batches_tracked" in sequential.state_dict()
    safetensors_torch.save_file(sequential.state_dict(), str(tmp_path / "torch.safetensors"))
    model = Model([Conv2D(3, 3), BatchNormalization(epsilon=1e-5), ReLU()], input_size=(2, 6, 7), device="cpu",
                  dtype="float64")
    model.load_weights(tmp_path / "torch.safetensors")
    np.testing.assert_array_equal(model.layers[1].moving_variance, sequential[1].running_var.numpy())
    x = rng_of(12).normal(size=(4, 2, 6, 7))
    with torch.no_grad():
        want = sequential.double()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-6, atol=1e-6)  # float32 weights from the file
    model.save_weights(tmp_path / "ours.safetensors")
    again = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU()).double()
    again.load_state_dict(safetensors_torch.load_file(str(tmp_path / "ours.safetensors")))  # strict
    with torch.no_grad():
        np.testing.assert_allclose(again.eval()(torch.tensor(x)).numpy(), model.predict(x), rtol=1e-12, atol=1e-12)


def test_files_with_tensors_that_do_not_fit_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = _torch_sequential(torch).state_dict()
    model = Model([Conv2D(3, 3), BatchNormalization(), ReLU()], input_size=(2, 6, 7), device="cpu")
    cases = [({"1.running_var": -state["1.running_var"]}, "running_var without negative values"),
             ({"1.num_batches_tracked": torch.tensor([1, 2])}, "num_batches_tracked"),
             ({"1.running_mean": torch.zeros(4)}, r"expects running_mean of shape \(3,\)")]
    for change, message in cases:
        safetensors_torch.save_file({**state, **change}, str(tmp_path / "bad.safetensors"))
        with pytest.raises(FormatError, match=message):
            model.load_weights(tmp_path / "bad.safetensors")
    safetensors_torch.save_file({k: v for k, v in state.items() if k != "1.running_var"},
                                str(tmp_path / "bad.safetensors"))
    with pytest.raises(FormatError, match=r"expects tensors \['bias', 'running_mean', 'running_var', 'weight'\]"):
        model.load_weights(tmp_path / "bad.safetensors")
    safetensors_torch.save_file({**state, "0.num_batches_tracked": torch.tensor(3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(FormatError, match=r"expects tensors \['bias', 'weight'\]"):
        model.load_weights(tmp_path / "bad.safetensors")
    affine_free = Model([Conv2D(3, 3), BatchNormalization(center=False, scale=False)], input_size=(2, 6, 7),
                        device="cpu")
    assert list(affine_free.layers[1].state_dict()) == ["running_mean", "running_var"]


# ------------------------------------------------------------------ export
def _with_statistics(model: Model, seed: int) -> Model:
    """Random gamma, beta and moving statistics in every normalization, and biases."""
    rng = rng_of(seed)
    for layer in model.layers:
        if isinstance(layer, (Dense, Conv2D)) and "b" in layer.params:
            layer.biases = rng.normal(0, 0.5, layer.biases.shape)
        if isinstance(layer, (BatchNormalization, LayerNormalization)):
            built(layer, layer.input_shape, layer.backend, seed=int(rng.integers(100)))
    return model


def _fold_graph() -> Model:
    """Conv2D -> BatchNormalization (folds), Conv2D read twice -> one
    (does not fold), Dense -> BatchNormalization (folds), a
    BatchNormalization of the last axis (does not), LayerNormalization."""
    x = Input((2, 6, 5), name="x")
    conv = Conv2D(3, 3, padding=1, use_bias=False, name="conv")  # as Darknet's: the normalization's beta its bias
    a = ReLU()(BatchNormalization(name="folds_conv")(conv(x)))
    shared = Conv2D(3, 1, name="read_twice")(a)
    b = BatchNormalization(name="stays")(shared)
    c = Flatten()(ReLU()(BatchNormalization(axis=-1, name="last_axis")(b)))
    h = BatchNormalization(name="folds_dense", scale=False)(Dense(7, name="dense")(c))
    out = LayerNormalization(name="layer_norm")(h)
    skip = Dense(4, name="skip")(Flatten()(shared))
    model = Model(inputs=x, outputs=[out, skip], device="cpu", seed=4)
    return _with_statistics(model, 4)


def test_the_exporters_fold_batch_norms_into_the_products_before_them(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import onnx

    model = _fold_graph()
    folds = batch_norm_folds(model)
    names = {node.layer.name for node in model.plan.nodes if id(node) in folds.folded}
    assert names == {"folds_conv", "folds_dense"}
    x = (rng_of(13).normal(size=(5, 2, 6, 5)) * 2).astype(np.float32)
    want = model.predict(x)
    model.export(tmp_path / "net.onnx")
    ops = [node.op_type for node in onnx.load(str(tmp_path / "net.onnx")).graph.node]
    assert ops.count("BatchNormalization") == 1 and ops.count("LayerNormalization") == 1  # "stays"; the last
    assert ops.count("Sub") == 1  # the last axis's normalization, written as the numpy backend computes it
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    for got, w in zip(session.run(None, {"x": x}), want):
        np.testing.assert_allclose(got, w, rtol=RTOL, atol=ATOL)
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    run_c, _ = build_c(model, tmp_path / "c", compiler)
    source = (tmp_path / "c" / "net.c").read_text()
    assert len(re.findall(r"folded into the product before it", source)) == 2
    for got, w in zip(run_c([x]), want):
        np.testing.assert_allclose(got, w, rtol=RTOL, atol=ATOL)


def test_no_fold_where_it_would_change_what_is_computed():
    """A normalization of another axis than the product's channels, or
    after a layer whose weights serve another call too, stays."""
    x = Input((2, 4, 5), name="x")
    conv = Conv2D(3, 1, name="conv")
    width = BatchNormalization(axis=-1)(conv(x))
    shared = Dense(5, name="shared")
    twice = BatchNormalization()(shared(Dense(5, name="lift")(Flatten()(width))))
    model = Model(inputs=x, outputs=shared(twice), device="cpu")
    assert batch_norm_folds(model).folded == frozenset()


def test_a_path_of_conv_batch_norm_relu_exports_to_predict(tmp_path):
    """Both exporters on a path (Conv2D, BatchNormalization, ReLU, Dense,
    BatchNormalization of vectors, the last folded into the Dense), with
    trained moving statistics."""
    ort = pytest.importorskip("onnxruntime")
    model = Model([Conv2D(4, 3, stride=2), BatchNormalization(), ReLU(), Flatten(), Dense(5),
                   BatchNormalization(momentum=0.5), Softmax()], input_size=(3, 9, 8), device="cpu", seed=5)
    x = (rng_of(14).normal(size=(12, 3, 9, 8)) * 2 + 1).astype(np.float32)
    model.fit(x, rng_of(15).integers(0, 5, 12), loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=3,
              batch_size=4)
    want = model.predict(x)
    model.export(tmp_path / "net.onnx")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, rtol=RTOL, atol=ATOL)
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    run_c, _ = build_c(model, tmp_path / "c", compiler)
    np.testing.assert_allclose(run_c([x])[0], want, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize("make, message", [
    (lambda: BatchNormalization(axis=0), r"non-zero integer \(axis 0 is the batch's\). Received: axis=0"),
    (lambda: BatchNormalization(axis=1.0), "Received: axis=1.0"),
    (lambda: BatchNormalization(momentum=1.5), r"a number in \[0, 1\]. Received: momentum=1.5"),
    (lambda: BatchNormalization(epsilon=float("nan")), "non-negative finite number. Received: epsilon=nan"),
    (lambda: BatchNormalization(center=1), "True or False. Received: center=1"),
    (lambda: LayerNormalization(scale="yes"), "True or False. Received: scale='yes'"),
    (lambda: LayerNormalization(epsilon=-1.0), "Received: epsilon=-1.0"),
    (lambda: BatchNormalization(input_shape=(3, 0)), "positive integer. Received: input_shape=0"),
])
def test_bad_hyperparameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_axes_that_inputs_lack_are_refused_at_the_call():
    with pytest.raises(ValueError, match=r"normalizes axis 4 of its batches, which inputs of shape \(5,\)"):
        BatchNormalization(axis=4)(Input(5))
    with pytest.raises(ValueError, match="normalizes axis -3"):
        BatchNormalization(axis=-3)(Input(5))
    with pytest.raises(ValueError, match=r"the last axis of its inputs only: expected axis=-1 \(or 2"):
        LayerNormalization(axis=1)(Input((3, 4)))
    assert LayerNormalization(axis=2)(Input((3, 4))).shape == (3, 4)


def test_attributes_read_and_assign_as_numpy_arrays_with_checked_shapes():
    layer = BatchNormalization(scale=False)
    layer.build((4, 2, 2), NumpyBackend())
    assert layer.gamma is None and layer.beta.shape == (4,) and repr(layer) == "BatchNormalization(4, scale=False)"
    layer.beta = [1, 2, 3, 4]
    np.testing.assert_array_equal(layer.beta, [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"has no gamma: it was made with scale=False"):
        layer.gamma = np.ones(4)
    with pytest.raises(ValueError, match=r"moving_mean of shape \(4,\). Received: shape=\(3,\)"):
        layer.moving_mean = np.zeros(3)
    with pytest.raises(ValueError, match="moving_variance without negative values"):
        layer.moving_variance = [1, -1, 1, 1]
    with pytest.raises(ValueError, match="finite values"):
        layer.moving_variance = [1, np.inf, 1, 1]
    norm = LayerNormalization(center=False)
    assert norm.get_config() == {"center": False} and repr(norm) == "LayerNormalization(center=False)"
    with pytest.raises(ValueError, match="has no parameters yet"):
        norm.gamma
    assert BatchNormalization(**BatchNormalization(axis=-1, momentum=0.5).get_config()).axis == -1
