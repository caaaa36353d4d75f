"""Central-difference gradient checks in float64: every layer, every loss,
the fused output gradients and a whole three-layer model."""

import numpy as np
import pytest

from gradcheck import assert_close, numeric_gradient
from intricate_py import Model
from intricate_py.layers import Dense, ReLU, Sigmoid, Softmax, TanH
from intricate_py.losses import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    MeanAbsolute,
    MeanSquared,
)
from intricate_py.optimizers import SGD

LAYERS = [
    lambda: Dense(4, weight_init="glorot_normal", bias_init="glorot_normal"),
    TanH,
    Sigmoid,
    ReLU,
    Softmax,
]


@pytest.mark.parametrize("make_layer", LAYERS, ids=lambda f: f().__class__.__name__)
def test_layer_gradients(make_layer, cpu64, rng):
    layer = make_layer()
    layer.build((5,), cpu64, rng)
    x = rng.normal(size=(3, 5))
    x[np.abs(x) < 0.05] = 0.3  # keep away from ReLU's kink
    r = rng.normal(size=(3, *layer.output_shape))  # E = Σ r · y

    def energy():
        return float(np.sum(r * layer.forward(x)))

    energy()
    dx = np.array(layer.back_propagate(r))
    assert_close(dx, numeric_gradient(energy, x))
    for param in layer.parameters:
        energy()
        layer.back_propagate(r)
        assert_close(np.array(param.grad), numeric_gradient(energy, param.value))


LOSSES = [MeanSquared, MeanAbsolute, CategoricalCrossEntropy, BinaryCrossEntropy]


@pytest.mark.parametrize("loss_type", LOSSES, ids=lambda c: c.__name__)
def test_loss_gradients(loss_type, cpu64, rng):
    loss = loss_type()
    p = rng.uniform(0.05, 0.95, size=(4, 3))
    t = rng.uniform(0, 1, size=(4, 3))
    if loss_type is CategoricalCrossEntropy:
        t /= t.sum(axis=1, keepdims=True)  # probability rows
    if loss_type is MeanAbsolute:
        p[np.abs(p - t) < 0.05] += 0.1  # keep away from |·|'s kink
    out = np.empty_like(p)
    loss.gradient(cpu64, p, t, out)
    assert_close(out, numeric_gradient(lambda: loss(p, t), p))


@pytest.mark.parametrize(
    "loss_type, layer_type",
    [(CategoricalCrossEntropy, Softmax), (BinaryCrossEntropy, Sigmoid)],
    ids=["softmax+cce", "sigmoid+bce"],
)
def test_fused_output_gradient(loss_type, layer_type, cpu64, rng):
    loss, layer = loss_type(), layer_type()
    assert loss.step_kind(layer)[1], "fuses with the layer"
    layer.build((3,), cpu64)
    z = rng.normal(size=(4, 3)) * 3
    t = np.eye(3)[rng.integers(0, 3, size=4)]

    def energy():
        return loss(np.array(layer.forward(z)), t)

    out = np.empty_like(z)
    loss.gradient(cpu64, z, t, out, fused=True)
    assert_close(out, numeric_gradient(energy, z))


@pytest.mark.parametrize(
    "layers, loss",
    [
        (lambda: [Dense(5), TanH(), Dense(4), Sigmoid(), Dense(3), Softmax()], CategoricalCrossEntropy()),
        (lambda: [Dense(5), ReLU(), Dense(4), TanH(), Dense(2), Sigmoid()], BinaryCrossEntropy()),
        (lambda: [Dense(5), Sigmoid(), Dense(4), TanH(), Dense(2)], MeanSquared()),
    ],
    ids=["cce", "bce", "mse"],
)
def test_whole_model_gradients(layers, loss, rng):
    """One full-batch SGD step of learning rate 1 moves each parameter by
    exactly its gradient; compare that with central differences of the loss."""
    model = Model(layers(), input_size=3, dtype="float64", seed=3)
    x = rng.normal(size=(6, 3))
    y = np.eye(3)[rng.integers(0, 3, 6)] if isinstance(loss, CategoricalCrossEntropy) else rng.uniform(0, 1, (6, 2))
    before = [np.array(p.value) for p in model.parameters]

    numeric = []
    for p in model.parameters:
        numeric.append(numeric_gradient(lambda: model.evaluate(x, y, loss)["loss"], p.value))
    model.fit(x, y, loss=loss, optimizer=SGD(1.0), epochs=1, batch_size=6, shuffle=False)
    for b, p, n in zip(before, model.parameters, numeric):
        assert_close(b - np.array(p.value), n, rtol=1e-5, atol=1e-9)
