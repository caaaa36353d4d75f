"""Each optimizer's update on numbers worked by hand, and (where torch is
installed) against torch.optim on the same network."""


import numpy as np
import pytest

from intricate_py.backends import NumpyBackend
from intricate_py.layers import Parameter
from intricate_py.optimizers import SGD, Adagrad, Adam


def run_steps(optimizer, grads, start=1.0):
    """Apply ``optimizer`` to one scalar parameter for each gradient in turn."""
    backend = NumpyBackend("float64")
    p = Parameter("p", np.array([start]), np.zeros(1))
    optimizer.bind(backend, [p])
    values = []
    for g in grads:
        p.grad[:] = g
        optimizer.step()
        values.append(float(p.value[0]))
    return values


def test_sgd_by_hand():
    # p = 1 - 0.1 * 0.5 = 0.95, then 0.95 - 0.1 * 0.5 = 0.9
    assert run_steps(SGD(0.1), [0.5, 0.5]) == pytest.approx([0.95, 0.9], abs=1e-15)


def test_sgd_momentum_by_hand():
    # v1 = 0.5, p1 = 1 - 0.05 = 0.95; v2 = 0.9 * 0.5 + 0.5 = 0.95, p2 = 0.95 - 0.095 = 0.855
    assert run_steps(SGD(0.1, momentum=0.9), [0.5, 0.5]) == pytest.approx([0.95, 0.855], abs=1e-15)


def test_sgd_nesterov_by_hand():
    # v1 = 0.5: p1 = 1 - 0.1 * (0.5 + 0.45) = 0.905
    # v2 = 0.95: p2 = 0.905 - 0.1 * (0.5 + 0.855) = 0.7695
    values = run_steps(SGD(0.1, momentum=0.9, nesterov=True), [0.5, 0.5])
    assert values == pytest.approx([0.905, 0.7695], abs=1e-15)


def test_adagrad_by_hand():
    # s1 = 0.25: p1 = 1 - 0.1 * 0.5 / (0.5 + 1e-10) = 0.9 (+1e-11)
    # s2 = 0.5:  p2 = p1 - 0.05 / (0.70710678... + 1e-10) = 0.829289321881...
    values = run_steps(Adagrad(0.1), [0.5, 0.5])
    assert values == pytest.approx([0.90000000001, 0.82928932189], abs=1e-10)


def test_adam_by_hand():
    # step 1, g = 0.5: m = 0.05, v = 0.00025; step size 0.1/(1-0.9) = 1,
    #   sqrt(v / (1-0.999)) = 0.5: p1 = 1 - 0.05 / (0.5 + 1e-8) = 0.900000002
    # step 2, g = -0.25: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225
    #   step size 0.1/0.19 = 0.526315789, sqrt(0.00031225/0.001999) = 0.395225380
    #   p2 = 0.900000002 - 0.526315789 * 0.02 / 0.395225380 = 0.873366299
    values = run_steps(Adam(0.1), [0.5, -0.25])
    assert values == pytest.approx([0.900000002, 0.873366299], abs=2e-9)


def test_optimizer_keeps_state_across_fits_on_the_same_parameters():
    backend = NumpyBackend("float64")
    p = Parameter("p", np.array([1.0]), np.array([0.5]))
    opt = SGD(0.1, momentum=0.9)
    opt.bind(backend, [p])
    opt.step()
    opt.bind(backend, [p])  # a second fit of the same model
    opt.step()
    assert float(p.value[0]) == pytest.approx(0.855, abs=1e-15)


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (lambda: SGD(0.1), {}),
        (lambda: SGD(0.1, momentum=0.9), {}),
        (lambda: SGD(0.05, momentum=0.8, nesterov=True), {}),
        (lambda: Adagrad(0.05), {}),
        (lambda: Adam(0.01), {}),
        (lambda: Adam(0.02, beta1=0.8, beta2=0.99, epsilon=1e-6), {}),
    ],
    ids=["sgd", "momentum", "nesterov", "adagrad", "adam", "adam-custom"],
)
def test_matches_torch_optim(make, kwargs):
    torch = pytest.importorskip("torch")
    from intricate_py import Model
    from intricate_py.layers import Dense, Softmax, TanH
    from intricate_py.losses import CategoricalCrossEntropy

    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 7)).astype(np.float32)
    labels = rng.integers(0, 4, 64)
    model = Model([Dense(6), TanH(), Dense(4), Softmax()], input_size=7, seed=1)
    opt = make()

    net = torch.nn.Sequential(torch.nn.Linear(7, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4))
    with torch.no_grad():
        for i, layer in ((0, model.layers[0]), (2, model.layers[2])):
            net[i].weight.copy_(torch.from_numpy(layer.weights.T))
            net[i].bias.copy_(torch.from_numpy(layer.biases))
    cfg = opt.get_config()
    torch_opt = {
        "SGD": lambda: torch.optim.SGD(net.parameters(), lr=cfg["learning_rate"], momentum=cfg.get("momentum", 0), nesterov=cfg.get("nesterov", False)),
        "Adagrad": lambda: torch.optim.Adagrad(net.parameters(), lr=cfg["learning_rate"], eps=cfg.get("epsilon", 1e-10)),
        "Adam": lambda: torch.optim.Adam(net.parameters(), lr=cfg["learning_rate"], betas=(cfg.get("beta1", 0.9), cfg.get("beta2", 0.999)), eps=cfg.get("epsilon", 1e-8)),
    }[type(opt).__name__]()
    for epoch in range(3):
        for start in range(0, 64, 16):
            xb, yb = torch.from_numpy(x[start : start + 16]), torch.from_numpy(labels[start : start + 16])
            torch_opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xb), yb).backward()
            torch_opt.step()
    model.fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=opt, epochs=3, batch_size=16, shuffle=False)
    for i, layer in ((0, model.layers[0]), (2, model.layers[2])):
        np.testing.assert_allclose(layer.weights, net[i].weight.detach().numpy().T, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(layer.biases, net[i].bias.detach().numpy(), rtol=2e-5, atol=2e-6)
