"""Logits losses, weight decay and AdamW: against central differences in
float64, and against PyTorch (skipped without torch) on both backends."""

import numpy as np
import pytest

from gradcheck import assert_close, numeric_gradient
from intricate_py import Model
from intricate_py.layers import Dense, ReLU, Sigmoid, Softmax
from intricate_py.losses import BinaryCrossEntropy, CategoricalCrossEntropy
from intricate_py.optimizers import SGD, Adagrad, Adam, AdamW


@pytest.mark.parametrize("loss_type", [CategoricalCrossEntropy, BinaryCrossEntropy], ids=lambda c: c.__name__)
def test_logits_gradients(loss_type, cpu64, rng):
    loss = loss_type(from_logits=True)
    z = rng.normal(size=(5, 3)) * 4
    t = np.eye(3)[rng.integers(0, 3, 5)] if loss_type is CategoricalCrossEntropy else rng.uniform(0, 1, (5, 3))
    out = np.empty_like(z)
    loss.gradient(cpu64, z, t, out)
    assert_close(out, numeric_gradient(lambda: loss(z, t), z))


def test_logits_losses_by_hand():
    # one sample, logits (0, ln 3): softmax (1/4, 3/4); target class 1
    z = np.array([[0.0, np.log(3.0)]])
    assert CategoricalCrossEntropy(from_logits=True)(z, [1]) == pytest.approx(-np.log(0.75), rel=1e-12)
    # log(1 + e^-|z|) + max(z, 0) - z t at z = 2, t = 1: log(1 + e^-2)
    assert BinaryCrossEntropy(from_logits=True)([[2.0]], [[1.0]]) == pytest.approx(np.log1p(np.exp(-2.0)))
    # huge logits stay finite and exact: the stable forms
    assert CategoricalCrossEntropy(from_logits=True)([[1000.0, 0.0]], [0]) == pytest.approx(0.0, abs=1e-12)
    assert BinaryCrossEntropy(from_logits=True)([[-1000.0]], [[0.0]]) == pytest.approx(0.0, abs=1e-12)


def test_a_logits_classifier_predicts_logits_and_learns(device):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    model = Model([Dense(16), ReLU(), Dense(3)], input_size=4, device=device, seed=0)
    history = model.fit(x, labels, loss=CategoricalCrossEntropy(from_logits=True), optimizer=Adam(0.02),
                        epochs=30, batch_size=50)
    assert history.history["accuracy"][-1] > 0.9
    logits = model.predict(x[:5])
    assert np.abs(logits).max() > 1  # not probabilities
    assert np.abs(np.exp(logits).sum(axis=1) - 1).max() > 0.1


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _torch_twin(torch, model):
    """An nn.Sequential of Linear layers (and activations) with the model's weights."""
    modules = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            linear = torch.nn.Linear(*layer.weights.shape).double()
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.weights.T.astype(np.float64)))
                linear.bias.copy_(torch.from_numpy(layer.biases.astype(np.float64)))
            modules.append(linear)
        elif isinstance(layer, ReLU):
            modules.append(torch.nn.ReLU())
        elif isinstance(layer, Sigmoid):
            modules.append(torch.nn.Sigmoid())
        elif isinstance(layer, Softmax):
            modules.append(torch.nn.Softmax(dim=1))
    return torch.nn.Sequential(*modules)


def _weights(model):
    return [w for layer in model.layers if isinstance(layer, Dense) for w in (layer.weights.T, layer.biases)]


def _assert_matches_torch(model, net, rtol=2e-5):
    for ours, theirs in zip(_weights(model), net.parameters()):
        want = theirs.detach().numpy()
        np.testing.assert_allclose(ours, want, rtol=rtol, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("binary", [False, True], ids=["cross_entropy", "bce_with_logits"])
def test_logits_loss_gradient_and_adam_step_equal_torch(torch, device, binary):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    width = 3
    model = Model([Dense(8), ReLU(), Dense(width)], input_size=5, device=device, seed=2)
    net = _torch_twin(torch, model)
    if binary:
        y = rng.integers(0, 2, (12, width)).astype(np.float32)
        loss, torch_loss = BinaryCrossEntropy(from_logits=True), torch.nn.functional.binary_cross_entropy_with_logits
        target = torch.from_numpy(y.astype(np.float64))
    else:
        y = rng.integers(0, width, 12)
        loss, torch_loss = CategoricalCrossEntropy(from_logits=True), torch.nn.functional.cross_entropy
        target = torch.from_numpy(y)
    logits = net(torch.from_numpy(x.astype(np.float64)))
    want = torch_loss(logits, target)
    assert model.evaluate(x, y, loss)["loss"] == pytest.approx(want.item(), rel=1e-5)
    # the gradient with respect to the logits
    logits.retain_grad()
    want.backward()
    p = model.device.asarray(model.predict(x))
    t = model.device.from_numpy(loss.prepare_targets(y, width))
    grad = model.device.empty((12, width))
    loss.gradient(model.device, p, t, grad)
    np.testing.assert_allclose(model.device.to_numpy(grad), logits.grad.numpy(), rtol=1e-4, atol=1e-7)
    # one Adam step
    torch_opt = torch.optim.Adam(net.parameters(), lr=0.01)
    torch_opt.zero_grad()
    torch_loss(net(torch.from_numpy(x.astype(np.float64))), target).backward()
    torch_opt.step()
    model.fit(x, y, loss=loss, optimizer=Adam(0.01), epochs=1, batch_size=12, shuffle=False)
    _assert_matches_torch(model, net)


OPTIMIZERS = [
    ("sgd-decay", lambda: SGD(0.1, weight_decay=0.05), lambda t, p: t.optim.SGD(p, lr=0.1, weight_decay=0.05)),
    ("sgd-momentum-decay", lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
     lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("adagrad-decay", lambda: Adagrad(0.1, weight_decay=0.05),
     lambda t, p: t.optim.Adagrad(p, lr=0.1, weight_decay=0.05)),
    ("adam-decay", lambda: Adam(0.01, weight_decay=0.05), lambda t, p: t.optim.Adam(p, lr=0.01, weight_decay=0.05)),
    ("adamw", lambda: AdamW(0.01, weight_decay=0.05), lambda t, p: t.optim.AdamW(p, lr=0.01, weight_decay=0.05)),
    ("adamw-default", lambda: AdamW(), lambda t, p: t.optim.AdamW(p)),
]


@pytest.mark.parametrize("ours, theirs", [o[1:] for o in OPTIMIZERS], ids=[o[0] for o in OPTIMIZERS])
def test_five_steps_equal_torch(torch, device, ours, theirs):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = Model([Dense(7), ReLU(), Dense(3), Softmax()], input_size=6, device=device, seed=4)
    net = _torch_twin(torch, model)
    torch_opt = theirs(torch, net.parameters())
    xs, ys = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y)
    for s in range(0, 40, 8):  # five steps of 8, in order
        torch_opt.zero_grad()
        torch.nn.functional.nll_loss(torch.log(net(xs[s : s + 8])), ys[s : s + 8]).backward()
        torch_opt.step()
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=ours(), epochs=1, batch_size=8, shuffle=False)
    _assert_matches_torch(model, net, rtol=1e-4)


def test_adamw_decays_even_without_gradient():
    """Decoupled decay: a weight whose gradient is zero shrinks by
    (1 - lr·wd) each step, and Adam's own step on it is 0."""
    model = Model([Dense(1, weight_init="he_uniform")], input_size=2, device="cpu", seed=0)
    model.layers[0].weights = [[2.0], [0.0]]
    x = np.zeros((4, 2), np.float32)  # no input: dW is 0
    model.fit(x, np.zeros((4, 1)), loss="mse", optimizer=AdamW(0.1, weight_decay=0.5), epochs=3, batch_size=4)
    assert model.layers[0].weights[0, 0] == pytest.approx(2.0 * (1 - 0.05) ** 3, rel=1e-6)


def test_weight_decay_is_checked():
    with pytest.raises(ValueError, match="non-negative finite number. Received: weight_decay=-1"):
        SGD(0.1, weight_decay=-1)
    assert "weight_decay=0.01" in repr(AdamW())
