"""Losses over sequences, as Keras 3's: a categorical cross-entropy on an
output of per-sample shape (seq, vocab) acts on the last axis (the mean over
the n · seq tokens, the accuracy counted per token), its integer targets
(n, seq) stay labels down to the backend's loss, whose results are those of
the one-hot rows bit for bit. Against PyTorch in float64 (skipped without
torch), by hand, and the GPU against numpy."""

import shutil

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.backends import NumpyBackend
from intricate_py.fit_data import placed, step_arrays
from intricate_py.layers import Dense, Reshape, Softmax, TanH
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD
from xor_data import weights

N, FEATURES, SEQ, VOCAB = 7, 6, 3, 5


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, FEATURES)).astype(np.float32)
    labels = rng.integers(0, VOCAB, (N, SEQ))
    return x, labels, np.eye(VOCAB, dtype=np.float32)[labels]


def _model(device="cpu", softmax=False, dtype="float32", seed=3):
    """6 -> Dense 8 -> TanH -> Dense 15 -> Reshape (3, 5) [-> Softmax]."""
    layers = [Dense(8), TanH(), Dense(SEQ * VOCAB), Reshape((SEQ, VOCAB))] + ([Softmax()] if softmax else [])
    return Model(layers, input_size=FEATURES, device=device, seed=seed, dtype=dtype)


def _loss(softmax):
    return CategoricalCrossEntropy() if softmax else CategoricalCrossEntropy(from_logits=True)


def _token_mean(logits, labels):
    """The mean over tokens of -log softmax(z)[label], in float64."""
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_q = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_q[np.arange(len(z)), labels.reshape(-1)].mean())


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _torch_twin(torch, model):
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    linears = []
    for layer in dense:
        linear = torch.nn.Linear(*layer.weights.shape).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.weights.T.astype(np.float64)))
            linear.bias.copy_(torch.from_numpy(layer.biases.astype(np.float64)))
        linears.append(linear)
    return linears


def _torch_logits(torch, linears, x):
    return linears[1](torch.tanh(linears[0](torch.from_numpy(x.astype(np.float64))))).reshape(-1, SEQ, VOCAB)


# ----------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("softmax", [False, True], ids=["logits", "softmax"])
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one_hot"])
def test_loss_and_sgd_steps_equal_torch_in_float64(torch, softmax, one_hot):
    x, labels, hot = _data()
    y = hot if one_hot else labels
    model = _model(softmax=softmax, dtype="float64")
    linears = _torch_twin(torch, model)
    target = torch.from_numpy(hot.reshape(-1, VOCAB).astype(np.float64)) if one_hot else \
        torch.from_numpy(labels.reshape(-1))
    params = [p for linear in linears for p in linear.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.5)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(_torch_logits(torch, linears, x).reshape(-1, VOCAB), target)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    assert model.evaluate(x, y, _loss(softmax))["loss"] == pytest.approx(losses[0], rel=1e-12)
    history = model.fit(x, y, loss=_loss(softmax), optimizer=SGD(0.5), epochs=3, batch_size=N, shuffle=False)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-12)
    for ours, linear in zip([layer for layer in model.layers if isinstance(layer, Dense)], linears):
        np.testing.assert_allclose(ours.weights.T, linear.weight.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.biases, linear.bias.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_the_gradient_is_torchs_over_tokens(torch, cpu64):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(N, SEQ, VOCAB)) * 3
    labels = rng.integers(0, VOCAB, (N, SEQ))
    loss = CategoricalCrossEntropy(from_logits=True)
    grad = np.empty_like(z)
    loss.gradient(cpu64, z, loss.prepare_targets(labels, (SEQ, VOCAB)), grad)
    logits = torch.from_numpy(z).requires_grad_()
    torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(labels.reshape(-1))).backward()
    np.testing.assert_allclose(grad, logits.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert loss(z, labels) == pytest.approx(_token_mean(z, labels), rel=1e-12)


def test_softmax_acts_on_the_last_axis_both_ways(torch):
    # MeanSquared does not fuse with Softmax: the layer's own forward and backward run
    x, _, hot = _data(1)
    model = _model(softmax=True, dtype="float64")
    linears = _torch_twin(torch, model)
    q = model.predict(x)
    np.testing.assert_allclose(q.sum(axis=-1), 1.0, rtol=1e-12)
    want = torch.softmax(_torch_logits(torch, linears, x), dim=-1)
    np.testing.assert_allclose(q, want.detach().numpy(), rtol=1e-12)
    torch.nn.functional.mse_loss(want, torch.from_numpy(hot.astype(np.float64))).backward()
    model.fit(x, hot, loss=MeanSquared(), optimizer=SGD(1.0), epochs=1, batch_size=N, shuffle=False)
    first = [layer for layer in model.layers if isinstance(layer, Dense)][0]
    with torch.no_grad():
        moved = linears[0].weight - 1.0 * linears[0].weight.grad
    np.testing.assert_allclose(first.weights.T, moved.numpy(), rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------ by hand
def test_per_token_accuracy_and_loss_by_hand():
    # an identity Dense passes the logits through: sample 0's tokens predict
    # (1, 2), sample 1's (0, 0); the labels (1, 0) and (0, 2): 2 of 4 tokens right
    model = Model([Dense(6), Reshape((2, 3))], input_size=6, dtype="float64")
    model.set_weights([np.eye(6), np.zeros(6)])
    logits = np.array([[0.0, 2.0, 1.0, 0.5, 0.0, 3.0], [4.0, 1.0, 0.0, 1.0, 0.0, -1.0]])
    labels = np.array([[1, 0], [0, 2]])
    result = model.evaluate(logits, labels, CategoricalCrossEntropy(from_logits=True))
    assert result["accuracy"] == 0.5
    assert result["loss"] == pytest.approx(_token_mean(logits.reshape(2, 2, 3), labels), rel=1e-12)
    # in batches of 2 samples, then 1: predicted (1, 2), (0, 0), (1, 2) against
    # (1, 1), (0, 0), (2, 2): 1 + 2 + 1 of the 6 tokens right
    labels3 = np.array([[1, 1], [0, 0], [2, 2]])
    x3 = np.concatenate([logits, logits[:1]])
    result = model.evaluate(x3, labels3, CategoricalCrossEntropy(from_logits=True), batch_size=2)
    assert result["accuracy"] == 4 / 6
    assert result["loss"] == pytest.approx(_token_mean(x3.reshape(3, 2, 3), labels3), rel=1e-12)


@pytest.mark.parametrize("batch_size", [7, 3])
def test_evaluate_history_and_call_are_the_mean_over_tokens(device, batch_size):
    x, labels, hot = _data(4)
    model = _model(device)
    loss = CategoricalCrossEntropy(from_logits=True)
    want = _token_mean(model.predict(x), labels)
    assert model.evaluate(x, labels, loss, batch_size=batch_size)["loss"] == pytest.approx(want, rel=1e-5)
    assert loss(model.predict(x), labels) == pytest.approx(want, rel=1e-12)
    assert loss(model.predict(x), hot) == pytest.approx(want, rel=1e-12)
    # a step too small to move the weights: the epoch's loss is the evaluation's, and so is validation's
    history = model.fit(x, labels, loss=loss, optimizer=SGD(1e-12), epochs=1, batch_size=batch_size,
                        validation_data=(x, hot)).history
    for key in ("loss", "val_loss"):
        assert history[key][0] == pytest.approx(want, rel=1e-5)
    predicted = model.predict(x).argmax(axis=-1)
    assert history["accuracy"][0] == history["val_accuracy"][0] == pytest.approx((predicted == labels).mean())


def test_element_wise_losses_keep_their_mean_over_elements():
    rng = np.random.default_rng(5)
    p, t = rng.normal(size=(4, SEQ, VOCAB)), rng.normal(size=(4, SEQ, VOCAB))
    assert MeanSquared()(p, t) == pytest.approx(np.mean((p - t) ** 2), rel=1e-12)


# ------------------------------------------------------ labels = one-hot
def _loss_results(backend, kind, accuracy, z, t):
    acc = backend.zeros((2,))
    grad = backend.empty(z.shape)
    p, t = backend.from_numpy(z), backend.from_numpy(t)
    backend.loss(kind, p, t, acc, 0, accuracy, 0.5, grad, 0.25)
    return backend.to_numpy(acc), backend.to_numpy(grad)


@pytest.mark.parametrize("kind", ["cross_entropy", "softmax_cross_entropy", "logits_cross_entropy"])
def test_the_loss_op_reads_labels_as_their_one_hot_rows_bit_for_bit(gpu, kind):
    rng = np.random.default_rng(6)
    z = rng.normal(size=(300, VOCAB)).astype(np.float32)  # more rows than the kernel's 256 invocations
    if kind == "cross_entropy":
        z = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = rng.integers(0, VOCAB, 300)
    hot = np.eye(VOCAB, dtype=np.float32)[labels]
    for backend in (NumpyBackend("float32"), gpu):
        for accuracy in ("categorical", "binary"):
            from_labels = _loss_results(backend, kind, accuracy, z, labels[:, None].astype(np.float32))
            from_hot = _loss_results(backend, kind, accuracy, z, hot)
            for a, b in zip(from_labels, from_hot):
                np.testing.assert_array_equal(a, b)
            assert from_labels[0][1] > 0


@pytest.mark.parametrize("softmax", [False, True], ids=["logits", "softmax"])
def test_training_on_labels_equals_one_hot_bit_for_bit(device, softmax):
    x, labels, hot = _data(7)
    runs = []
    for y in (labels, hot):
        model = _model(device, softmax)
        history = model.fit(x, y, loss=_loss(softmax), optimizer=SGD(0.3), epochs=3, batch_size=3,
                            validation_data=(x, y))
        runs.append((weights(model), history.history, model.evaluate(x, y, batch_size=4)))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]
    assert runs[0][2] == runs[1][2]


@pytest.mark.parametrize("softmax", [False, True], ids=["logits", "softmax"])
def test_the_gpu_trains_as_numpy(gpu, softmax):
    x, labels, _ = _data(8)
    results = []
    for device in ("cpu", "gpu"):
        model = _model(device, softmax)
        history = model.fit(x, labels, loss=_loss(softmax), optimizer=SGD(0.3), epochs=3, batch_size=3)
        results.append((weights(model), history.history))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results[0][1]["loss"], results[1][1]["loss"], rtol=1e-5)
    assert results[0][1]["accuracy"] == results[1][1]["accuracy"]


# ------------------------------------------------------------- memory
def test_labels_stay_one_value_a_token_on_the_device(device):
    x, labels, hot = _data()
    model = _model(device)
    losses = model.output_losses(CategoricalCrossEntropy(from_logits=True))
    ts = model.target_arrays(labels, losses)
    assert ts[0].shape == (N, SEQ)
    # the batches gathered on the device: SEQ values a sample, not SEQ * VOCAB
    data = placed(model, "eval", step_arrays([x], ts), 4)
    assert [arrays[-1].shape for arrays in data.batches()] == [(4, SEQ), (3, SEQ)]
    assert model.target_arrays(hot, losses)[0].shape == (N, SEQ * VOCAB)
    # today's flat outputs take their labels as one value a sample too
    flat = Model([Dense(VOCAB)], input_size=FEATURES, device=device)
    assert flat.target_arrays(labels[:, 0], flat.output_losses(CategoricalCrossEntropy()))[0].shape == (N, 1)


def test_the_c_export_takes_the_softmax_over_the_last_axis(tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("no cc on this machine")
    from export_models import ATOL, RTOL, build_c

    model = _model(softmax=True)
    run, _ = build_c(model, tmp_path, "cc", "tokens")
    x, _, _ = _data(9)
    np.testing.assert_allclose(run([x])[0], model.predict(x), rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------- checks
def test_bad_sequence_targets_are_refused_clearly():
    x, labels, hot = _data()
    model = _model()
    loss = CategoricalCrossEntropy(from_logits=True)
    wrong = labels.copy()
    wrong[2, 1] = VOCAB
    with pytest.raises(ValueError, match=r"class labels in \[0, 4\].*Received: 5 at index \(2, 1\)"):
        model.evaluate(x, wrong, loss)
    with pytest.raises(ValueError, match=r"expected integer class labels in y. Received: \d\.5"):
        model.evaluate(x, labels + 0.5, loss)
    with pytest.raises(ValueError, match=r"expected targets of shape \(n, 15\) or \(n, 3, 5\)"):
        model.evaluate(x, hot[:, :, :4], loss)
    with pytest.raises(ValueError, match="each row summing to 1"):
        model.evaluate(x, hot * 2, loss)
