"""Model: building, training, prediction, early stopping, and every bad input."""


import numpy as np
import pytest

from intricate_py import MinAccuracyReached, MinLossReached, Model
from intricate_py.layers import Dense, ReLU, Sigmoid, Softmax, TanH
from intricate_py.losses import BinaryCrossEntropy, CategoricalCrossEntropy, MeanAbsolute, MeanSquared
from intricate_py.optimizers import SGD, Adam

XOR_X = [[0, 0], [0, 1], [1, 0], [1, 1]]
XOR_Y = [[0], [1], [1], [0]]


def xor_model(**kwargs):
    return Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, **{"device": "cpu", "seed": 0, **kwargs})


# Tests taking `device` run on the numpy backend and on the GPU.


def blobs(n=120, classes=3, features=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, features)) * 3
    labels = rng.integers(0, classes, n)
    return centers[labels] + rng.normal(size=(n, features)), labels


# ----------------------------------------------------------------- training
def test_xor_converges(device):
    model = xor_model(device=device)
    history = model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=5000,
                        batch_size=4, halting_condition=MinLossReached(0.01))
    assert history.history["loss"][-1] <= 0.01
    assert len(history.history["loss"]) < 5000
    assert "MinLossReached" in history.stop_reason
    predictions = model.predict(XOR_X)
    assert predictions.shape == (4, 1)
    np.testing.assert_array_equal(predictions.round(), XOR_Y)
    assert model.evaluate(XOR_X, XOR_Y, metrics=["binary_accuracy"])["binary_accuracy"] == 1.0


def test_same_seed_gives_bit_identical_weights(device):
    x, y = blobs()
    runs = []
    for _ in range(2):
        model = Model([Dense(8), ReLU(), Dense(3), Softmax()], input_size=4, device=device, seed=42)
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=3, batch_size=16)
        runs.append([model.device.to_numpy(p.value) for p in model.parameters])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    other = Model([Dense(8), ReLU(), Dense(3), Softmax()], input_size=4, device=device, seed=43)
    assert not np.array_equal(other.layers[0].weights, runs[0][0])


def test_history_has_validation_metrics_and_learns_blobs(device):
    x, y = blobs(300)
    model = Model([Dense(16), ReLU(), Dense(3), Softmax()], device=device, seed=1)
    history = model.fit(x[:240], y[:240], loss=CategoricalCrossEntropy(), optimizer=SGD(0.1, momentum=0.9),
                        epochs=5, batch_size=32, validation_data=(x[240:], y[240:]))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 5 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    result = model.evaluate(x[240:], y[240:])
    assert result["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    assert result["accuracy"] == pytest.approx(history.history["val_accuracy"][-1])


def test_epoch_loss_is_the_sample_weighted_mean_of_batch_losses():
    x, y = blobs(10)
    model = Model([Dense(3), Softmax()], input_size=4, device="cpu", dtype="float64", seed=0)
    loss = CategoricalCrossEntropy()
    before = [l.weights.copy() for l in model.layers[:1]]
    # with a learning rate this small the weights barely move: the epoch loss is
    # the loss of the starting weights to within 1e-9
    expected = model.evaluate(x, y, loss)["loss"]
    history = model.fit(x, y, loss=loss, optimizer=SGD(1e-12), epochs=1, batch_size=4)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(model.layers[0].weights, before[0], rtol=1e-9)


def test_min_accuracy_halting_and_callbacks(device):
    x, y = blobs(200)
    model = Model([Dense(8), ReLU(), Dense(3), Softmax()], device=device, seed=2)
    history = model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.05), epochs=200,
                        batch_size=50, halting_condition=MinAccuracyReached(0.95))
    assert history.history["accuracy"][-1] >= 0.95 > max(history.history["accuracy"][:-1], default=0)
    seen = []

    def stop_at_third(epoch, logs):
        seen.append((epoch, sorted(logs)))
        return epoch == 2

    history = model.fit(x, y, epochs=10, callbacks=[stop_at_third])
    assert [e for e, _ in seen] == [0, 1, 2]
    assert seen[0][1] == ["accuracy", "loss"]
    assert history.epoch == [0, 1, 2]
    assert "stop_at_third" in history.stop_reason


def test_fit_defaults_to_the_last_loss_and_optimizer():
    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=1)
    history = model.fit(XOR_X, XOR_Y, epochs=2)
    assert len(history.history["loss"]) == 2


def test_zero_epochs_trains_nothing():
    model = xor_model()
    before = model.layers[0].weights
    history = model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=0)
    assert history.history["loss"] == []
    np.testing.assert_array_equal(model.layers[0].weights, before)


@pytest.mark.parametrize("watch_every_epoch", [True, False])
def test_nan_loss_stops_training_and_keeps_last_good_weights(watch_every_epoch, device):
    """The weights kept are exactly those of a twin model trained for the
    epochs whose weights gave a finite loss (same seed, so the same
    shuffles): with one step an epoch, the step that diverged used the
    weights of the last finite epoch, so the ones before are kept."""
    x, y = blobs(64)
    y = y.astype(float)
    a, b = (Model([Dense(8), ReLU(), Dense(1)], input_size=4, device=device, seed=0) for _ in range(2))
    callbacks = [lambda epoch, logs: None] if watch_every_epoch else []
    # the loss grows each epoch with this learning rate, reaching inf after a few
    with pytest.warns(RuntimeWarning, match=r"learning rate \(0.08\) is probably too large"):
        history = a.fit(x, y * 50, loss=MeanSquared(), optimizer=SGD(0.08), epochs=60,
                        batch_size=64, callbacks=callbacks)
    good = len(history.history["loss"]) - 1  # the History ends with the epoch that diverged, as in Keras
    assert 0 < good < 59 and history.epoch == list(range(good + 1))
    assert all(np.isfinite(v) for v in history.history["loss"][:good])
    assert not np.isfinite(history.history["loss"][good])
    assert f"weights from the end of epoch {good - 1}" in history.stop_reason
    b.fit(x, y * 50, loss=MeanSquared(), optimizer=SGD(0.08), epochs=good - 1, batch_size=64)
    for pa, pb in zip(a.parameters, b.parameters):
        np.testing.assert_array_equal(a.device.to_numpy(pa.value), b.device.to_numpy(pb.value))


def test_float64_and_lists_work():
    model = xor_model(dtype="float64")
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=3)
    assert model.predict(XOR_X).dtype == np.float64
    assert model.layers[0].weights.dtype == np.float64


def test_binary_cross_entropy_with_sigmoid_trains(device):
    x, y = blobs(200, classes=2)
    model = Model([Dense(8), TanH(), Dense(1), Sigmoid()], device=device, seed=0)
    history = model.fit(x, y, loss=BinaryCrossEntropy(), optimizer=Adam(0.02), epochs=30, batch_size=20)
    assert history.history["accuracy"][-1] > 0.95


def test_predict_single_sample_and_batches(device):
    model = xor_model(device=device)
    full = model.predict(XOR_X)
    assert model.predict([1, 0]).shape == (1, 1)
    np.testing.assert_array_equal(model.predict([1, 0]), full[2:3])
    np.testing.assert_allclose(model.predict(XOR_X, batch_size=3), full, rtol=1e-6)


def test_model_builds_from_first_data_without_input_size():
    model = Model([Dense(3), TanH(), Dense(1)], device="cpu", seed=0)
    assert not model.built
    model.fit(XOR_X, XOR_Y, loss=MeanAbsolute(), optimizer=SGD(0.1), epochs=1)
    assert model.layers[0].weights.shape == (2, 3)


def test_first_dense_input_size_builds_the_model():
    model = Model([Dense(3, input_size=2), TanH()], device="cpu")
    assert model.built and model.output_shape == (3,)


def test_summary_and_repr():
    model = xor_model()
    assert repr(model.layers[0]) == "Dense(2→3)"
    assert repr(Dense(5)) == "Dense(5)"
    text = str(model)
    assert "Dense(2→3)" in text and "(n, 3)" in text and "total parameters: 13" in text


# --------------------------------------------------------------- bad input
def test_dense_input_size_mismatch_names_layer_and_widths():
    with pytest.raises(ValueError) as error:
        Model([Dense(3), TanH(), Dense(1, input_size=4)], input_size=2)
    message = str(error.value)
    assert "layer 2" in message and "Dense(4→1)" in message
    assert "(4,)" in message and "(3,)" in message and "TanH()" in message


def test_dense_on_images_acts_on_the_last_axis_as_in_keras():
    model = Model([Dense(3)], input_size=(2, 4, 5))
    assert model.output_shape == (2, 4, 3)
    x = np.random.default_rng(0).normal(size=(3, 2, 4, 5))
    layer = model.layers[0]
    np.testing.assert_allclose(model.predict(x), x @ layer.weights + layer.biases, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0}, r"positive integer\. Received: units=0"),
        ({"units": 2.5}, "units=2.5"),
        ({"units": 3, "input_size": -1}, "input_size=-1"),
        ({"units": 3, "weight_init": "nope"}, "initializer"),
    ],
)
def test_dense_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Dense(**kwargs)


@pytest.mark.parametrize(
    "x, y, match",
    [
        ([[0, 0, 1]] * 4, XOR_Y, r"shape \(n, 2\).*Received: x.shape=\(4, 3\)"),
        (XOR_X, [[0], [1], [1]], "4 rows, y has 3"),
        ([[0, np.nan], [0, 1], [1, 0], [1, 1]], XOR_Y, r"finite values in x. Received: nan at index \(0, 1\)"),
        (XOR_X, [[0], [np.inf], [1], [0]], "finite values in y"),
        (np.zeros((0, 2)), np.zeros((0, 1)), "at least one sample in x"),
        ([[0, 0], [1]], XOR_Y, "nested lists of equal lengths"),
        ([["a", "b"]] * 4, XOR_Y, "numbers in x"),
        (XOR_X, [[0, 1]] * 4, r"targets of shape \(n, 1\)"),
    ],
    ids=["width", "lengths", "nan", "inf", "empty", "ragged", "strings", "target-width"],
)
def test_fit_rejects_bad_data(x, y, match, device):
    model = xor_model(device=device)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1))


def test_class_labels_out_of_range_and_not_whole():
    model = Model([Dense(3), Softmax()], input_size=2, device="cpu")
    loss = CategoricalCrossEntropy()
    with pytest.raises(ValueError, match=r"labels in \[0, 2\].*Received: 3 at index 1"):
        model.fit(XOR_X, [0, 3, 1, 2], loss=loss, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="integer class labels"):
        model.fit(XOR_X, [0, 1.5, 1, 2], loss=loss, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="-1"):
        model.fit(XOR_X, [0, -1, 1, 2], loss=loss, optimizer=SGD(0.1))
    model.fit(XOR_X, [0, 1, 1, 2], loss=loss, optimizer=SGD(0.1))
    model.fit(XOR_X, np.eye(3)[[0, 1, 1, 2]], loss=loss, optimizer=SGD(0.1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": -1}, "epochs=-1"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"validation_data": [[0, 0]]}, r"validation_data=\(x_val, y_val\)"),
        ({"validation_data": ([[0, 0, 0]], [[1]])}, r"validation_data\[0\]"),
        ({"halting_condition": MinLossReached(0.1, monitor="val_loss")}, "monitor one of"),
    ],
)
def test_fit_rejects_bad_options(kwargs, match):
    model = xor_model()
    with pytest.raises(ValueError, match=match):
        model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), **kwargs)


def test_fit_needs_loss_and_optimizer():
    model = xor_model()
    with pytest.raises(ValueError, match="expected a loss"):
        model.fit(XOR_X, XOR_Y, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="expected an optimizer"):
        model.fit(XOR_X, XOR_Y, loss=MeanSquared())
    with pytest.raises(ValueError, match=r"expected a Loss object or one of \[.*'mse'.*Received: loss='msq'"):
        model.fit(XOR_X, XOR_Y, loss="msq", optimizer=SGD(0.1))
    with pytest.raises(ValueError, match=r"expected an Optimizer object or one of \['adagrad', 'adam', 'adamw', 'sgd'\]"):
        model.fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SGD(0), "learning_rate=0"),
        (lambda: SGD(float("nan")), "learning_rate=nan"),
        (lambda: SGD(0.1, momentum=1.5), "momentum=1.5"),
        (lambda: SGD(0.1, nesterov=True), "nesterov"),
        (lambda: Adam(beta1=1.0), "beta1=1.0"),
    ],
)
def test_optimizers_reject_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_model_rejects_bad_construction():
    with pytest.raises(ValueError, match="at least one layer"):
        Model([])
    with pytest.raises(TypeError, match="Layer objects"):
        Model([Dense(2), "relu"])
    shared = TanH()
    with pytest.raises(ValueError, match="appears twice"):
        Model([Dense(2), shared, Dense(2), shared])
    with pytest.raises(ValueError, match="device"):
        Model([Dense(2)], device="tpu")
    with pytest.raises(ValueError, match="dtype"):
        Model([Dense(2)], device="cpu", dtype="float16")
    with pytest.raises(ValueError, match="input_size"):
        Model([Dense(2)], input_size=0)


def test_weights_read_and_assign_with_checks(device):
    model = xor_model(device=device)
    dense = model.layers[0]
    w = np.arange(6, dtype=float).reshape(2, 3) / 10
    dense.weights = w
    dense.biases = [0.1, 0.2, 0.3]
    np.testing.assert_allclose(dense.weights, w, rtol=1e-7)
    np.testing.assert_allclose(model.predict([[1, 1]])[0], model.predict([[1, 1]])[0])
    with pytest.raises(ValueError, match=r"W of shape \(2, 3\). Received: shape=\(3, 2\)"):
        dense.weights = w.T
    with pytest.raises(ValueError, match="finite"):
        dense.biases = [np.nan, 0, 0]
    with pytest.raises(ValueError, match="no parameters yet"):
        Dense(3).weights


def test_layer_forward_on_its_own():
    dense = Dense(2, input_size=3)
    dense.weights = np.ones((3, 2))
    dense.biases = [1.0, -1.0]
    y = dense.forward(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    np.testing.assert_array_equal(y, [[7.0, 5.0]])
    with pytest.raises(ValueError, match=r"expects a batch of shape \(n, 3\). Received: shape=\(1, 4\)"):
        dense.forward(np.ones((1, 4), dtype=np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, "pair"])
def test_non_finite_values_in_large_inputs_are_found(bad):
    """Large inputs are screened by row sums first: NaN, ±inf and an inf/-inf
    pair that cancels in a row are all still reported with their index."""
    x = np.random.default_rng(0).random((70000, 2)).astype(np.float32)
    if bad == "pair":
        x[123, 0], x[123, 1] = np.inf, -np.inf
        where = r"\(123, 0\)"
    else:
        x[69999, 1] = bad
        where = r"\(69999, 1\)"
    with pytest.raises(ValueError, match=where):
        xor_model().predict(x)


def test_large_finite_inputs_whose_sum_overflows_are_accepted():
    x = np.full((70000, 2), 3e38, np.float32)
    assert xor_model().predict(x).shape == (70000, 1)
