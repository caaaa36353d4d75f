"""Models as graphs of layer calls (Keras's functional API): building with
shapes checked at each call, names, merge layers, shared layers, gradients
(central differences in float64, PyTorch autograd), training with several
inputs and outputs, and the GPU's replayed steps."""

import re

import numpy as np
import pytest

from graph_models import TorchWideGraph, numeric_gradients, plan_gradients, torch, wide_graph, wide_inputs
from intricate_py import Input, MinAccuracyReached, Model
from intricate_py.callbacks import EarlyStopping, ModelCheckpoint
from intricate_py.layers import (Add, Average, Concatenate, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Multiply,
                                 ReLU, Reshape, Softmax, Subtract, TanH)
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD, Adam


# ------------------------------------------------------------------ building
def test_a_call_that_does_not_fit_fails_at_that_line_naming_layer_producers_and_shapes():
    x = Input(8, name="x")
    wide, narrow = Dense(32, name="wide")(x), Dense(16, name="narrow")(x)
    with pytest.raises(ValueError) as error:
        Add(name="sum")([wide, narrow])
    message = str(error.value)
    for part in ("sum Add()", "(32,), (16,)", "(n, 32) from wide Dense(8→32)", "(n, 16) from narrow Dense(8→16)"):
        assert part in message
    with pytest.raises(ValueError, match=r"head Conv2D\(3, 2×2\) expects images of shape \(channels, height, width\), "
                                         r"received \(8,\). Received: \(n, 8\) from the input 'x'"):
        Conv2D(3, 2, name="head")(x)


def test_layer_calls_take_the_inputs_they_are_made_for():
    x, y = Input(3), Input(3)
    with pytest.raises(ValueError, match="takes one input. Received: a list of 2"):
        Dense(2)([x, y])
    with pytest.raises(ValueError, match=r"takes a list of inputs, as \[a, b\]"):
        Add()(x)
    with pytest.raises(ValueError, match="at least 2 inputs, received 1"):
        Add()([x])
    with pytest.raises(ValueError, match="exactly 2 inputs, received 3"):
        Subtract()([x, y, x])
    with pytest.raises(ValueError, match="axis other than the batch's"):
        Concatenate(axis=0)


def test_output_shapes_of_merges_concatenations_and_reshapes():
    image, other = Input((2, 5, 7)), Input((3, 5, 7))
    assert Concatenate()([image, other]).shape == (5, 5, 7)
    assert Concatenate(axis=-1)([image, Input((2, 5, 1))]).shape == (2, 5, 8)
    assert Concatenate(axis=2)([image, Input((2, 4, 7))]).shape == (2, 9, 7)
    with pytest.raises(ValueError, match=r"agree except along axis 1, received \(2, 5, 7\), \(3, 5, 6\)"):
        Concatenate()([image, Input((3, 5, 6))])
    with pytest.raises(ValueError, match="axis=4, outside inputs of 4 axes"):
        Concatenate(axis=4)([image, image])
    assert Reshape((7, -1))(image).shape == (7, 10)
    assert Reshape((70,))(image).shape == (70,)
    with pytest.raises(ValueError, match=r"cannot reshape inputs of shape \(2, 5, 7\) \(70 values\) to \(3, -1\)"):
        Reshape((3, -1))(image)
    for bad in ((0, 2), (-1, -1), (), "ab", (2.5,)):
        with pytest.raises(ValueError, match="target_shape"):
            Reshape(bad)


def test_names_are_made_unique_as_keras_makes_them():
    first, second = Dense(2), Dense(2)
    assert re.fullmatch(r"dense(_\d+)?", first.name) and second.name != first.name
    assert MaxPool2D(2).name.startswith("max_pool2d") and ReLU().name.startswith("re_lu")
    x = Input(3, name="features")
    a, b = Dense(2, name="same")(x), Dense(2, name="same")(x)
    with pytest.raises(ValueError, match=r"its own name. Received: \['same'\]"):
        Model(inputs=x, outputs=[a, b])
    with pytest.raises(ValueError, match="non-empty string"):
        Dense(2, name="")


def test_outputs_need_all_their_inputs_among_the_models_inputs():
    a, b = Input(3, name="a"), Input(3, name="b")
    out = Add()([Dense(2)(a), Dense(2)(b)])
    with pytest.raises(ValueError, match=r"depend on the input 'b' \(n, 3\), which is not in inputs=\['a'\]"):
        Model(inputs=a, outputs=out)
    with pytest.raises(ValueError, match="outputs computed by layers"):
        Model(inputs=a, outputs=a)
    with pytest.raises(ValueError, match="Input"):
        Model(inputs=Dense(2)(a), outputs=out)


def test_a_path_written_as_a_graph_is_the_same_model(device):
    """Same initial weights (drawn in the same order), same predictions and
    bit-identical weights after training."""
    x, y = wide_inputs(64)[0], np.random.default_rng(1).integers(0, 3, 64)

    def build(functional):
        layers = [Dense(16), ReLU(), Dropout(0.2), Dense(3), Softmax()]
        if not functional:
            return Model(layers, input_size=6, device=device, seed=4)
        h = inputs = Input(6)
        for layer in layers:
            h = layer(h)
        return Model(inputs, h, device=device, seed=4)

    path, graph = build(False), build(True)
    assert graph.is_path and str(graph).splitlines()[0] == str(path).splitlines()[0]
    for model in (path, graph):
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=3, batch_size=16)
    for a, b in zip(path.get_weights(), graph.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ known answers
def test_merge_layers_compute_what_they_say(device):
    a, b, c = Input(3, name="a"), Input(3, name="b"), Input(3, name="c")
    outs = [Add()([a, b, c]), Subtract()([a, b]), Multiply()([a, b, c]), Average()([a, b]), Average()([a, b, c]),
            Concatenate()([a, c, b]), Reshape((3, 1))(a)]
    model = Model(inputs=[a, b, c], outputs=outs, device=device)
    x = [np.array([[1.0, 2.0, -3.0], [0.5, 0.0, 4.0]]), np.array([[2.0, -1.0, 1.0], [3.0, 1.0, 0.25]]),
         np.array([[-1.0, 5.0, 2.0], [2.0, 2.0, -2.0]])]
    got = model.predict(x)
    want = [x[0] + x[1] + x[2], x[0] - x[1], x[0] * x[1] * x[2], (x[0] + x[1]) / 2, (x[0] + x[1] + x[2]) / 3,
            np.concatenate([x[0], x[2], x[1]], axis=1), x[0][:, :, None]]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_concatenating_images_along_channels_rows_and_columns(device, rng):
    p, q = Input((2, 3, 4)), Input((1, 3, 4))
    outs = [Concatenate()([p, q]), Concatenate(axis=2)([p, p]), Concatenate(axis=-1)([p, p])]
    model = Model(inputs=[p, q], outputs=outs, device=device)
    xp, xq = rng.normal(size=(5, 2, 3, 4)), rng.normal(size=(5, 1, 3, 4))
    for got, axis, parts in zip(model.predict([xp, xq]), (1, 2, 3), ((xp, xq), (xp, xp), (xp, xp))):
        np.testing.assert_allclose(got, np.concatenate(parts, axis=axis), rtol=1e-6)


# ------------------------------------------------------------------ gradients
def test_gradients_of_a_graph_equal_central_differences_in_float64():
    """Every parameter of the wide graph: fan-out sums, a shared layer's two
    calls adding, every merge layer, fused and folded activations."""
    model = wide_graph(device="cpu", dtype="float64")
    xs = wide_inputs(5)
    rng = np.random.default_rng(7)
    rs = [rng.normal(size=(5, 3)), rng.normal(size=(5, 2))]
    _, grads = plan_gradients(model, xs, rs)
    numeric = numeric_gradients(model, xs, rs)
    assert len(numeric) == 14
    for key, value in numeric.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-6, atol=1e-8, err_msg=str(key))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_outputs_and_gradients_equal_pytorch_autograd(device, dtype):
    """The wide graph against the same computation in PyTorch: float64 on the
    CPU, float32 on each device (the GPU: lavapipe in CI)."""
    pytest.importorskip("torch")
    if device == "gpu" and dtype == "float64":
        pytest.skip("the GPU computes in float32")
    model = wide_graph(device=device, dtype=dtype)
    twin = TorchWideGraph(model, getattr(torch, dtype))
    xs, rng = wide_inputs(9), np.random.default_rng(3)
    rs = [rng.normal(size=(9, 3)), rng.normal(size=(9, 2))]
    outs, grads = plan_gradients(model, xs, rs)
    a, b = (torch.tensor(x, dtype=getattr(torch, dtype)) for x in xs)
    want = twin(a, b)
    sum(torch.sum(torch.tensor(r, dtype=getattr(torch, dtype)) * o) for r, o in zip(rs, want)).backward()
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-4, 1e-5)
    for got, w in zip(outs, want):
        np.testing.assert_allclose(got, w.detach().numpy(), rtol=rtol, atol=atol)
    for name, linear in twin.linear.items():
        np.testing.assert_allclose(grads[(name, "W")], linear.weight.grad.numpy().T, rtol=rtol, atol=atol,
                                   err_msg=name)
        np.testing.assert_allclose(grads[(name, "b")], linear.bias.grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


def test_a_shared_layers_gradient_is_the_sum_of_its_calls():
    x = Input(3, name="x")
    shared = Dense(2, name="shared")
    model = Model(x, Add()([shared(x), shared(TanH()(Dense(3, name="inner")(x)))]), device="cpu", dtype="float64")
    xs, r = [np.random.default_rng(0).normal(size=(4, 3))], [np.ones((4, 2))]
    _, grads = plan_gradients(model, xs, r)
    h = np.tanh(xs[0] @ model.layers[1].weights + model.layers[1].biases)  # the second call's input
    np.testing.assert_allclose(grads[("shared", "W")], xs[0].T @ r[0] + h.T @ r[0], rtol=1e-12)
    np.testing.assert_allclose(grads[("shared", "b")], 2 * r[0].sum(axis=0), rtol=1e-12)


# ------------------------------------------------------------------ training
def two_headed(device: str = "cpu", seed: int = 0) -> Model:
    image, extra = Input((1, 6, 6), name="image"), Input((3,), name="extra")
    h = Dense(16, name="features")(Flatten()(MaxPool2D(2)(ReLU()(Conv2D(4, 3, padding=1)(image)))))
    s = Add()([h, ReLU()(Dense(16)(h))])
    c = Concatenate()([s, extra])
    return Model(inputs=[image, extra], outputs=[Dense(4, name="label")(c), Dense(1, name="score")(s)],
                 device=device, seed=seed)


def two_headed_data(n: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    xi, xe = rng.normal(size=(n, 1, 6, 6)), rng.normal(size=(n, 3))
    label = (xi.reshape(n, -1)[:, :4].argmax(axis=1) + (xe[:, 0] > 1)) % 4
    score = xi.mean(axis=(1, 2, 3))[:, None] + xe[:, 1:2]
    return {"image": xi, "extra": xe}, {"label": label, "score": score}


LOSSES = {"label": CategoricalCrossEntropy(from_logits=True), "score": MeanSquared()}


def test_two_inputs_and_two_outputs_train_by_name(device):
    model = two_headed(device)
    x, y = two_headed_data()
    history = model.fit(x, y, loss=LOSSES, loss_weights={"label": 1.0, "score": 0.5}, optimizer=Adam(0.01),
                        epochs=8, batch_size=16, validation_split=0.25)
    assert list(history.history) == ["loss", "label_loss", "score_loss", "label_accuracy",
                                     "val_loss", "val_label_loss", "val_score_loss", "val_label_accuracy"]
    h = {k: np.array(v) for k, v in history.history.items()}
    np.testing.assert_allclose(h["loss"], h["label_loss"] + 0.5 * h["score_loss"], rtol=1e-6)
    assert h["loss"][-1] < h["loss"][0] and h["val_loss"][-1] < h["val_loss"][0]
    label, score = model.predict(x)
    assert label.shape == (96, 4) and score.shape == (96, 1)
    # a list in order takes the same data; evaluate reports the same names
    same = model.predict([x["image"], x["extra"]])
    np.testing.assert_array_equal(same[0], label)
    result = model.evaluate(x, [y["label"], y["score"]])
    assert set(result) == {"loss", "label_loss", "score_loss", "label_accuracy"}
    np.testing.assert_allclose(result["score_loss"], np.mean((score - y["score"]) ** 2), rtol=1e-4)


def test_an_output_without_a_loss_is_predicted_but_not_trained():
    model = two_headed()
    x, y = two_headed_data()
    score = model.layers[-1]  # "score": nothing trains it
    before = score.weights
    history = model.fit(x, {"label": y["label"]}, loss={"label": LOSSES["label"]}, optimizer=SGD(0.1), epochs=2)
    assert list(history.history) == ["loss", "label_loss", "label_accuracy"]
    np.testing.assert_array_equal(score.weights, before)
    assert len(model.predict(x)) == 2


def test_fit_says_what_data_and_losses_a_graph_takes():
    model = two_headed()
    x, y = two_headed_data(8)
    with pytest.raises(ValueError, match=r"keyed by \['image', 'extra'\]. Received: unknown keys \['pixels'\]"):
        model.fit({"pixels": x["image"], "extra": x["extra"]}, y, loss=LOSSES, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match=r"a list of 2 \(one per \['image', 'extra'\]\).*Received: ndarray"):
        model.fit(x["image"], y, loss=LOSSES, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match=r"x\['extra'\] of shape \(n, 3\) for the input 'extra'"):
        model.fit({"image": x["image"], "extra": x["extra"][:, :2]}, y, loss=LOSSES, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match=r"targets for the output 'score', which has a loss"):
        model.fit(x, {"label": y["label"]}, loss=LOSSES, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="rows"):
        model.fit({"image": x["image"], "extra": x["extra"][:5]}, y, loss=LOSSES, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match=r"loss keyed by \['label', 'score'\]"):
        model.fit(x, y, loss={"labels": "mse"}, optimizer=SGD(0.1))


def test_a_model_is_a_block_of_another_and_shares_its_weights(device):
    """A Siamese pair: one encoder model called on both inputs; training the
    pair trains the encoder, which then predicts with the trained weights."""
    inner = Input(5, name="inner")
    encoder = Model(inner, Dense(3, name="code")(TanH()(Dense(8, name="hidden")(inner))), device=device, seed=1)
    a, b = Input(5, name="left"), Input(5, name="right")
    distance = Subtract()([encoder(a), encoder(b)])
    pair = Model([a, b], Dense(1, name="similar")(Multiply()([distance, distance])), device=device, seed=2)
    assert all(a is b for a, b in zip(pair.layers, encoder.layers)) and len(pair.layers) == 3 + 3
    assert [node.layer.name for node in pair.plan.nodes].count("hidden") == 2
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(64, 5)), rng.normal(size=(64, 5))
    before = encoder.predict(xa)
    pair.fit([xa, xb], np.abs(xa - xb).sum(axis=1, keepdims=True), loss="mse", optimizer=Adam(0.01), epochs=3)
    after = encoder.predict(xa)
    assert not np.allclose(before, after)
    hidden, code = encoder.layers[0], encoder.layers[2]
    np.testing.assert_allclose(after, np.tanh(xa @ hidden.weights + hidden.biases) @ code.weights + code.biases,
                               rtol=1e-4, atol=1e-5)


def test_graphs_train_with_callbacks_halting_and_early_stopping(device):
    model = two_headed(device)
    x, y = two_headed_data()
    stopper = EarlyStopping(monitor="val_score_loss", patience=1, restore_best_weights=True)
    history = model.fit(x, y, loss=LOSSES, optimizer=Adam(0.05), epochs=40, batch_size=16, validation_split=0.25,
                        callbacks=[stopper], halting_condition=MinAccuracyReached(0.999, monitor="label_accuracy"))
    assert stopper.best_epoch is not None and len(history.epoch) < 40
    best = history.history["val_score_loss"][stopper.best_epoch]
    xv = {k: v[72:] for k, v in x.items()}
    yv = {k: v[72:] for k, v in y.items()}
    assert model.evaluate(xv, yv)["score_loss"] == pytest.approx(best, rel=1e-5)
    with pytest.raises(ValueError, match=r"monitor one of \[.*'label_accuracy'"):
        model.fit(x, y, epochs=1, halting_condition=MinAccuracyReached(0.9))


def test_graphs_take_validation_data_checkpoints_and_model_calls(tmp_path):
    model = two_headed()
    x, y = two_headed_data()
    checkpoint = ModelCheckpoint(tmp_path / "best.safetensors", monitor="val_label_loss", save_best_only=True)
    weights = []
    history = model.fit({k: v[:64] for k, v in x.items()}, {k: v[:64] for k, v in y.items()}, loss=LOSSES,
                        optimizer=Adam(0.01), epochs=4, validation_data=({k: v[64:] for k, v in x.items()},
                                                                          [y["label"][64:], y["score"][64:]]),
                        callbacks=[checkpoint, lambda epoch, logs: weights.append(model.get_weights())])
    best = int(np.argmin(history.history["val_label_loss"]))
    saved = Model.load(tmp_path / "best.safetensors", device="cpu")
    assert saved.output_names == ["label", "score"]
    for got, want in zip(saved.get_weights(), weights[best]):
        np.testing.assert_array_equal(got, want)
    label, score = model(x)  # model(x) is predict
    assert label.shape == (96, 4) and score.shape == (96, 1)


def test_an_interrupt_leaves_a_graph_at_a_finished_step(monkeypatch):
    from intricate_py import fitting

    x, y = two_headed_data()
    seen = []
    straight = two_headed(seed=4)
    straight.fit(x, y, loss=LOSSES, optimizer=SGD(0.05), epochs=3, batch_size=32,
                 callbacks=[lambda epoch, logs: seen.append(straight.get_weights())])
    model = two_headed(seed=4)
    real, calls = fitting.TrainStep.run, []

    def interrupted(step, *args):
        real(step, *args)
        calls.append(1)
        if len(calls) == 5:  # epoch 2's second step of 3
            raise KeyboardInterrupt

    monkeypatch.setattr(fitting.TrainStep, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, loss=LOSSES, optimizer=SGD(0.05), epochs=3, batch_size=32, callbacks=[lambda e, logs: None])
    monkeypatch.undo()
    assert model.optimizer.iterations == 3
    for got, want in zip(model.get_weights(), seen[0]):
        np.testing.assert_array_equal(got, want)
    model.fit(x, y, epochs=2, batch_size=32)
    for got, want in zip(model.get_weights(), seen[-1]):
        np.testing.assert_array_equal(got, want)


def test_divergence_on_a_graph_keeps_finite_weights(device):
    model = two_headed(device)
    x, y = two_headed_data()
    with pytest.warns(RuntimeWarning, match="training stopped"):
        model.fit({"image": x["image"] * 1e3, "extra": x["extra"]}, y, loss=LOSSES, optimizer=SGD(50.0), epochs=10)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_graph_training_is_bit_identical_for_a_seed_and_matches_across_devices(gpu):
    x, y = two_headed_data()
    runs = []
    for device in ("cpu", "cpu", "gpu", "gpu"):
        model = two_headed(device, seed=3)
        model.fit(x, y, loss=LOSSES, optimizer=Adam(0.01), epochs=2, batch_size=16)
        runs.append(model.get_weights())
    for same in ((0, 1), (2, 3)):
        for a, b in zip(runs[same[0]], runs[same[1]]):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(runs[0], runs[2]):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ the GPU
def test_a_residual_mlp_step_takes_fifteen_dispatches(gpu):
    """x -> Dense+ReLU (h, read twice) -> Dense+ReLU -> Add(h, ·) -> Dense ->
    Softmax with SGD: forward 6 (the batch's gather, two products with their
    ReLUs in the epilogue, the Add, a product, softmax and cross-entropy in
    one kernel); backward 8 (the last product's dW with db and its dx; the
    second ReLU's gradient, which reaches the Add and so cannot fold into a
    product; its product's dW and dx; the sum of h's two gradients; h's
    ReLU gradient; the first product's dW, whose input needs no gradient);
    and one optimizer update."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 20)), rng.integers(0, 10, 256)
    inputs = Input(20)
    h = ReLU()(Dense(32)(inputs))
    model = Model(inputs, Softmax()(Dense(10)(Add()([h, ReLU()(Dense(32)(h))]))), device="gpu", seed=0)
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.01), epochs=1, batch_size=128)
    before = model.device.stats()
    model.fit(x, y, epochs=4, batch_size=128)  # 2 steps an epoch, replayed
    after = model.device.stats()
    reads = after["readbacks"] - before["readbacks"]  # each read checks the weights first: one dispatch
    assert after["dispatches"] - before["dispatches"] == 4 * 2 * 15 + reads


def test_a_graph_with_shared_layers_replays_bit_identically(gpu, monkeypatch):
    """Recorded once and replayed, or run layer by layer every step: the same bits."""
    from intricate_py import fitting

    x, y = two_headed_data()

    def train(replay):
        real = fitting.TrainStep.__init__

        def init(step, *args):
            real(step, *args)
            step.replayable = replay

        monkeypatch.setattr(fitting.TrainStep, "__init__", init)
        model = wide_graph(device="gpu", seed=5)
        rng = np.random.default_rng(0)
        xs = wide_inputs(80)
        model.fit(xs, [rng.integers(0, 3, 80), rng.normal(size=(80, 2))],
                  loss=[CategoricalCrossEntropy(from_logits=True), MeanSquared()], optimizer=Adam(0.01), epochs=3,
                  batch_size=32)
        monkeypatch.undo()
        return model.get_weights()

    for a, b in zip(train(True), train(False)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ description
def test_summary_shows_what_each_node_takes():
    text = str(two_headed())
    assert text.splitlines()[0].split() == ["#", "layer", "output", "shape", "parameters", "connected", "to"]
    assert "image (Input)" in text and re.search(r"concatenate\S* Concatenate\(\)\s+\(n, 19\)\s+0\s+add\S*, extra", text)
    x = Input(3, name="x")
    shared = Dense(3, name="twice")
    text = str(Model(x, shared(shared(x))))
    assert "twice[0]" in text and re.search(r"1\s+twice Dense\(3→3\)\s+\(n, 3\)\s+0\s+twice\[0\]", text)


def test_model_repr_names_inputs_and_outputs():
    assert repr(two_headed()).startswith("Model(inputs=['image', 'extra'], outputs=['label', 'score']")


# ------------------------------------------------------------------ as Keras users find it
def test_a_layer_shared_by_two_models_trains_in_each():
    """Keras's encoder pattern: an autoencoder and its encoder share layers;
    fitting either trains the shared weights, and predicting with the other
    uses them."""
    x_data = np.random.default_rng(0).normal(size=(64, 6))
    x = Input(6)
    code = Dense(3, name="enc")(x)
    autoencoder = Model(x, Dense(6, name="dec")(code), device="cpu", seed=0)
    encoder = Model(x, code, device="cpu")
    enc = autoencoder.layers[0]
    before = enc.weights
    autoencoder.fit(x_data, x_data, loss="mse", optimizer="sgd", epochs=3)
    assert not np.allclose(enc.weights, before)
    np.testing.assert_allclose(encoder.predict(x_data), x_data @ enc.weights + enc.biases, rtol=1e-5, atol=1e-6)
    encoder.fit(x_data, np.zeros((64, 3)), loss="mse", optimizer="sgd", epochs=2)
    trained = enc.weights
    autoencoder.fit(x_data, x_data, epochs=2)
    assert not np.allclose(enc.weights, trained)
    np.testing.assert_allclose(encoder.predict(x_data), x_data @ enc.weights + enc.biases, rtol=1e-5, atol=1e-6)


def test_layers_no_loss_reaches_keep_their_weights():
    rng = np.random.default_rng(1)
    x = Input(4, name="x")
    h = Dense(8, name="h")(x)
    model = Model(x, [Dense(2, name="a")(h), Dense(3, name="b")(h)], device="cpu", seed=1)
    data, ya, yb = rng.normal(size=(64, 4)), rng.normal(size=(64, 2)), rng.normal(size=(64, 3))
    model.fit(data, [ya, yb], loss=MeanSquared(), optimizer=SGD(0.1), batch_size=16)
    b = model.layers[2].weights
    model.fit(data, {"a": ya}, loss={"a": MeanSquared()}, epochs=3, batch_size=16)
    np.testing.assert_array_equal(model.layers[2].weights, b)


def test_dict_inputs_and_outputs_name_them():
    features = Input(5)
    h = Dense(4)(features)
    model = Model(inputs={"feat": features}, outputs={"score": Dense(1)(h), "klass": Dense(3)(h)}, device="cpu")
    assert model.input_names == ["feat"] and model.output_names == ["score", "klass"]
    rng = np.random.default_rng(0)
    history = model.fit({"feat": rng.normal(size=(32, 5))}, {"score": rng.normal(size=(32, 1)),
                                                              "klass": rng.integers(0, 3, 32)},
                        loss={"score": "mse", "klass": CategoricalCrossEntropy(from_logits=True)}, optimizer="adam")
    assert "score_loss" in history.history and "klass_accuracy" in history.history


def test_compile_takes_lists_of_one_and_keeps_its_loss_when_it_refuses_one():
    model = Model([Dense(2)], input_size=3, device="cpu", seed=0)
    x, y = np.ones((8, 3)), np.zeros((8, 2))
    model.compile(optimizer="sgd", loss=["mse"], loss_weights=[2.0])
    weighted = model.evaluate(x, y)["loss"]
    model.compile(loss="mse")  # weights kept: the reported loss is the weighted one, as Keras reports it
    assert model.evaluate(x, y)["loss"] == pytest.approx(weighted)
    model.compile(loss_weights=[1.0])
    assert model.evaluate(x, y)["loss"] == pytest.approx(weighted / 2)
    with pytest.raises(ValueError, match=r"loss keyed by \["):
        model.compile(loss={"typo": "mse"})
    assert model.evaluate(x, y)["loss"] == pytest.approx(weighted / 2)  # the refused loss left nothing behind


def test_outputs_whose_metric_names_collide_are_refused():
    x = Input(3)
    model = Model(x, [Dense(1, name="val")(x), Dense(1, name="other")(x)], device="cpu")
    with pytest.raises(ValueError, match=r"\['val_loss'\] twice \(outputs \['val', 'other'\]\).*rename the layer"):
        model.fit(np.ones((8, 3)), [np.zeros((8, 1))] * 2, loss="mse", optimizer="sgd", validation_split=0.25)


def test_validation_data_is_placed_on_the_device_once_a_fit(gpu):
    model = two_headed("gpu")
    x, y = two_headed_data()
    xv, yv = {k: v[64:] for k, v in x.items()}, {k: v[64:] for k, v in y.items()}
    model.fit(x, y, loss=LOSSES, optimizer=SGD(0.05), epochs=1, validation_data=(xv, yv))
    before = model.device.stats()
    model.fit(x, y, epochs=6, validation_data=(xv, yv))
    uploads = model.device.stats()["uploads"] - before["uploads"]
    # each epoch's shuffled order, then once a fit each array (2 inputs, 2 targets) and the row order of
    # the training data and of the validation data; not the validation data every epoch
    assert uploads == 6 + 5 + 5
