"""Dropout: masks, scale, training versus inference, gradients, backends,
determinism and files."""

import numpy as np
import pytest

from gradcheck import assert_close, numeric_gradient
from intricate_py import Model
from intricate_py.backends import NumpyBackend, dropout_key, dropout_threshold
from intricate_py.backends.base import pcg
from intricate_py.layers import Dense, Dropout, Layer, ReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import Adam


def reference_pcg(v: int) -> int:
    """The hash written out afresh from the paper, on Python ints."""
    state = (v * 747796405 + 2891336453) % 2**32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) % 2**32
    return (word >> 22) ^ word


def test_pcg_matches_the_reference_on_ints_and_arrays():
    values = [0, 1, 2, 12345, 2**31, 2**32 - 1]
    expected = [reference_pcg(v) for v in values]
    assert [pcg(v) for v in values] == expected
    assert pcg(np.array(values, np.uint32)).tolist() == expected


def test_kept_fraction_and_scale():
    backend = NumpyBackend()
    x = np.ones((200, 500), np.float32)
    out, mask = np.empty_like(x), np.empty_like(x)
    backend.dropout(x, out, mask, 0.3, dropout_key(7, 0))
    assert abs((mask > 0).mean() - 0.7) < 0.005
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.7)}
    np.testing.assert_array_equal(out, mask)
    assert abs(out.mean() - 1.0) < 0.01  # inverted dropout keeps the mean
    again, other_step, other_seed = (np.empty_like(x) for _ in range(3))
    backend.dropout(x, out, again, 0.3, dropout_key(7, 0))
    backend.dropout(x, out, other_step, 0.3, dropout_key(7, 1))
    backend.dropout(x, out, other_seed, 0.3, dropout_key(8, 0))
    np.testing.assert_array_equal(again, mask)
    assert not np.array_equal(other_step, mask) and not np.array_equal(other_seed, mask)


def test_the_gpu_drops_the_same_elements(gpu, rng):
    x = rng.normal(size=(37, 29)).astype(np.float32)
    out, mask = np.empty_like(x), np.empty_like(x)
    NumpyBackend().dropout(x, out, mask, 0.4, dropout_key(2026, 11))
    g_out, g_mask = gpu.empty(x.shape), gpu.empty(x.shape)
    gpu.dropout(gpu.from_numpy(x), g_out, g_mask, 0.4, dropout_key(2026, 11))
    np.testing.assert_array_equal(gpu.to_numpy(g_mask), mask)
    np.testing.assert_allclose(gpu.to_numpy(g_out), out, rtol=1e-6)
    dy = rng.normal(size=x.shape).astype(np.float32)
    g_dx = gpu.empty(x.shape)
    gpu.dropout_grad(gpu.from_numpy(dy), g_mask, g_dx)
    np.testing.assert_allclose(gpu.to_numpy(g_dx), dy * mask, rtol=1e-6)


def test_threshold_of_the_draw():
    threshold, scale = dropout_threshold(0.25)
    assert threshold == 2**30 and scale == pytest.approx(4 / 3)
    assert dropout_threshold(0.999999999999)[0] == 2**32 - 1
    assert dropout_key(1, 2) != dropout_key(1, 3) and 0 <= dropout_key(1, 2) < 2**32


def test_gradient_while_training(cpu64, rng):
    layer = Dropout(0.5, seed=3)
    layer.build((4, 5), cpu64)
    layer.training = True
    x, r = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))

    def energy():
        return float(np.sum(r * layer.forward(x)))

    energy()
    assert_close(np.array(layer.back_propagate(r)), numeric_gradient(energy, x))


def test_inference_passes_inputs_through(rng):
    layer = Dropout(0.5)
    x = rng.normal(size=(3, 6)).astype(np.float32)
    assert layer.forward(x) is x
    assert layer.back_propagate(x) is x


def test_fit_trains_with_dropout_and_evaluates_without(device, rng):
    x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    model = Model([Dense(16), ReLU(), Dropout(0.5), Dense(3), Softmax()], input_size=6, device=device, seed=0)
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=2, batch_size=16)
    assert not any(layer.training for layer in model.layers)
    # without the dropout layer the same weights predict the same: no dropout at inference
    twin = Model([Dense(16), ReLU(), Dense(3), Softmax()], input_size=6, device="cpu")
    for src, dst in ((model.layers[0], twin.layers[0]), (model.layers[3], twin.layers[2])):
        dst.weights, dst.biases = src.weights, src.biases
    np.testing.assert_allclose(model.predict(x), twin.predict(x), rtol=1e-5, atol=1e-6)
    assert model.evaluate(x, y) == model.evaluate(x, y)


def test_same_seed_same_weights_on_both_backends(gpu, rng):
    x, y = rng.normal(size=(48, 6)).astype(np.float32), rng.integers(0, 3, 48)
    models = [Model([Dense(16), ReLU(), Dropout(0.3), Dense(3), Softmax()], input_size=6, device=d, seed=5)
              for d in ("cpu", "gpu")]
    for model in models:
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=3, batch_size=16)
    for a, b in zip(*(m.parameters for m in models)):
        wa, wb = models[0].device.to_numpy(a.value), models[1].device.to_numpy(b.value)
        np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-4 * np.abs(wa).max())


def test_training_resumed_from_a_file_draws_the_same_masks(tmp_path, rng):
    x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(0, 3, 64)

    def model():
        return Model([Dense(16), ReLU(), Dropout(0.4), Dense(3), Softmax()], input_size=6, device="cpu", seed=9)

    straight = model()
    straight.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=4, batch_size=16)
    half = model()
    half.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=2, batch_size=16)
    half.save(tmp_path / "half.safetensors", include_optimizer=True)
    resumed = Model.load(tmp_path / "half.safetensors", device="cpu")
    assert repr(resumed.layers[2]) == "Dropout(0.4)" and resumed.layers[2].seed == half.layers[2].seed
    resumed.fit(x, y, epochs=2, batch_size=16)
    for a, b in zip(resumed.parameters, straight.parameters):
        np.testing.assert_array_equal(a.value, b.value)


def test_dropout_file_and_bad_rates(tmp_path):
    Dropout(0.25, seed=4).save(tmp_path / "d.safetensors")
    loaded = Layer.load(tmp_path / "d.safetensors")
    assert (loaded.rate, loaded.seed) == (0.25, 4)
    for rate in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match="rate="):
            Dropout(rate)
