"""Whole training runs on the GPU: parity with numpy, and the structural facts
that keep training on the device (submissions, readbacks, buffers)."""

import numpy as np
import pytest

from intricate_py import Model, fit_data, fitting
from intricate_py.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Softmax, TanH
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD, Adam
from xor_data import XOR_X, XOR_Y, weights


def assert_same_weights(a, b, rtol=1e-4):
    for wa, wb in zip(weights(a), weights(b)):
        np.testing.assert_allclose(wa, wb, rtol=rtol, atol=rtol * np.abs(wb).max())


def mlp_data(n=640, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 784)).astype(np.float32), rng.integers(0, 10, n)


def mlp(device, seed=0):
    return Model([Dense(64), ReLU(), Dense(10), Softmax()], input_size=784, device=device, seed=seed)


def test_xor_weights_match_numpy(gpu):
    models = [Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=d, seed=0) for d in ("cpu", "gpu")]
    for model in models:
        model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=300, batch_size=4)
    assert_same_weights(models[1], models[0])


@pytest.mark.parametrize("make_optimizer", [lambda: SGD(0.05, momentum=0.9), lambda: Adam(1e-3)],
                         ids=["sgd-momentum", "adam"])
def test_mlp_20_steps_match_numpy(gpu, make_optimizer):
    x, y = mlp_data()
    models = [mlp(d) for d in ("cpu", "gpu")]
    for model in models:
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=make_optimizer(), epochs=1,
                  batch_size=32, shuffle=False)  # 640 / 32 = 20 steps
    assert_same_weights(models[1], models[0])


def test_mlp_with_shuffling_matches_numpy(gpu):
    x, y = mlp_data(200)
    models = [mlp(d, seed=7) for d in ("cpu", "gpu")]
    for model in models:
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.05), epochs=2, batch_size=24)
    assert_same_weights(models[1], models[0])


def test_training_stays_on_the_device(gpu):
    """At most one submission a step, no readback a step, and no buffer made
    after the first step (nor by a second, warm fit)."""
    x, y = mlp_data(320)
    model = mlp("gpu")
    stats = []

    def record(epoch, logs):  # runs after each epoch (forcing a readback per epoch)
        stats.append(model.device.stats())

    before = model.device.stats()
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(1e-3), epochs=4, batch_size=32,
              callbacks=[record])
    steps = 4 * 10
    first, last = stats[0], stats[-1]
    assert last["buffers_created"] == first["buffers_created"]
    assert last["submits"] - before["submits"] <= steps
    # one readback an epoch: its metrics (a block of accumulators, 7 floats for one output)
    assert last["readbacks"] - before["readbacks"] == 4
    assert last["bytes_read_back"] - before["bytes_read_back"] == 4 * 4 * fit_data.metric_slots(1).size == 4 * 4 * 7

    # a warm fit with the same shapes reuses pooled buffers: none created
    warm = model.device.stats()
    model.fit(x, y, epochs=3, batch_size=32)
    after = model.device.stats()
    assert after["buffers_created"] == warm["buffers_created"]
    assert after["readbacks"] - warm["readbacks"] <= 3  # at epoch ends, a few a second at most
    assert after["submits"] - warm["submits"] <= 3 * 10


def test_several_steps_share_a_submission(gpu):
    model = Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device="gpu", seed=0)
    before = model.device.stats()
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=200, batch_size=4)
    after = model.device.stats()
    submits = after["submits"] - before["submits"]
    assert submits * 5 <= 200, f"{submits} submissions for 200 steps"
    assert after["dispatches"] - before["dispatches"] >= 200 * 8


def test_dataset_larger_than_a_binding_trains_in_parity(gpu, monkeypatch):
    """Data split over several buffers (here: a binding pretended to hold 100
    samples) trains exactly as numpy does."""
    x, y = mlp_data(320)
    cpu_model = mlp("cpu")
    cpu_model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.05), epochs=2, batch_size=32)
    gpu_model = mlp("gpu")
    monkeypatch.setattr(gpu, "max_binding_bytes", 100 * 784 * 4)
    gpu_model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.05), epochs=2, batch_size=32)
    assert_same_weights(gpu_model, cpu_model)


def test_batch_larger_than_a_binding_says_what_to_do(gpu, monkeypatch):
    x, y = mlp_data(320)
    model = mlp("gpu")
    monkeypatch.setattr(gpu, "max_binding_bytes", 250 * 784 * 4)
    with pytest.raises(ValueError, match="smaller batch_size"):
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.05), batch_size=300)


def test_predict_and_evaluate_match_numpy(gpu):
    x, y = mlp_data(100)
    a, b = mlp("cpu", seed=3), mlp("gpu", seed=3)
    np.testing.assert_allclose(b.predict(x), a.predict(x), rtol=1e-5, atol=1e-7)
    ea, eb = a.evaluate(x, y, CategoricalCrossEntropy()), b.evaluate(x, y, CategoricalCrossEntropy())
    assert eb["loss"] == pytest.approx(ea["loss"], rel=1e-5)
    assert eb["accuracy"] == ea["accuracy"]


def test_the_device_asks_the_adapter_for_its_largest_bindings(gpu):
    """Not wgpu's defaults (bindings of 128 MiB, buffers of 256 MiB): the
    adapter's own limits, which a hardware GPU puts at gigabytes."""
    offered = gpu.adapter.handle.limits
    for name in ("max-storage-buffer-binding-size", "max-buffer-size"):
        assert gpu.device.limits[name] == offered[name]
    assert gpu.max_binding_bytes == min(offered["max-storage-buffer-binding-size"], offered["max-buffer-size"])


def small_cnn(device):
    return Model([Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(5)], input_size=(1, 10, 10), device=device,
                 seed=0)


def wide_mlp(device):
    return Model([Dense(64), ReLU(), Dense(5)], input_size=3, device=device, seed=0)


@pytest.mark.parametrize("make, shape", [(wide_mlp, (3,)), (small_cnn, (1, 10, 10))])
def test_predict_and_evaluate_fit_their_passes_to_the_device(gpu, monkeypatch, make, shape):
    """The README's CNN trained on a GPU, then its final evaluate asked for
    a 200 MB array (1024 rows a pass) where a binding holds 128 MB. Here a
    binding pretended to hold 16 KiB: predict and evaluate take fewer rows
    a pass (a pass of 1024 rows of either model needs 256 KiB)."""
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(1100, *shape)), rng.integers(0, 5, 1100)
    cpu_model, gpu_model = make("cpu"), make("gpu")
    monkeypatch.setattr(gpu, "max_binding_bytes", 16 * 1024)
    np.testing.assert_allclose(gpu_model.predict(x), cpu_model.predict(x), rtol=1e-5, atol=1e-6)
    loss = CategoricalCrossEntropy(from_logits=True)
    got, want = gpu_model.evaluate(x, labels, loss), cpu_model.evaluate(x, labels, loss)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert got["accuracy"] == want["accuracy"]
    with pytest.raises(ValueError, match="smaller batch_size"):  # a batch_size given is kept
        gpu_model.predict(x, batch_size=1024)


def test_float64_on_the_gpu_is_refused():
    with pytest.raises(ValueError, match="float32.*WGSL has no float64"):
        Model([Dense(2)], device="gpu", dtype="float64")


def test_replayed_steps_equal_steps_run_layer_by_layer(gpu, monkeypatch):
    """A step recorded once and replayed (batch offsets, metrics slots,
    Adam's bias corrections, a schedule's rate and Dropout's keys written
    into the recorded parameters) trains bit-identically to running the
    layers' code every step; the last, smaller batch has its own recording."""
    from intricate_py.layers import Dropout
    from intricate_py.schedules import ExponentialDecay

    x, y = mlp_data(150)

    def train(replay):
        model = Model([Dense(24), ReLU(), Dropout(0.3), Dense(10), Softmax()], input_size=784, device="gpu", seed=5)
        plans = []
        real = fitting.TrainStep.__init__

        def init(plan, *args):
            real(plan, *args)
            plan.replayable = replay
            plans.append(plan)

        monkeypatch.setattr(fitting.TrainStep, "__init__", init)
        history = model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(ExponentialDecay(0.01, 5, 0.5)),
                            epochs=3, batch_size=32, validation_split=0.2)
        monkeypatch.undo()
        return model, history, plans[0]

    replayed, history, plan = train(True)
    assert sorted(plan.recordings.keys()) == [24, 32]  # 120 samples: 3 batches of 32 and one of 24
    by_layers, twin_history, _ = train(False)
    assert history.history == twin_history.history
    for a, b in zip(weights(replayed), weights(by_layers)):
        np.testing.assert_array_equal(a, b)


def count_dense_forwards(monkeypatch) -> list:
    """Dense.call calls (forward passes) from now on, one entry each."""
    calls = []
    real = Dense.call

    def counted(layer, ctx, x, **kwargs):
        calls.append(1)
        return real(layer, ctx, x, **kwargs)

    monkeypatch.setattr(Dense, "call", counted)
    return calls


def test_a_replayed_step_runs_no_layer_code(gpu, monkeypatch):
    calls = count_dense_forwards(monkeypatch)
    x, y = mlp_data(320)
    model = mlp("gpu")
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.05), epochs=2, batch_size=32)
    assert len(calls) == 2  # the two Dense layers, once, while the first step was recorded


def test_predict_is_recorded_once_and_replayed(gpu, monkeypatch):
    """A warm one-sample predict: no buffer made, no layer code run, one
    upload, one submission, one readback; rows of other sizes and a grown
    workspace in between still give the right answers."""
    x, _ = mlp_data(64)
    model, twin = mlp("gpu", seed=2), mlp("cpu", seed=2)
    first = model.predict(x[:1])
    calls = count_dense_forwards(monkeypatch)
    before = gpu.stats()
    again = model.predict(x[1:2])
    after = gpu.stats()
    assert calls == []
    assert {k: after[k] - before[k] for k in ("buffers_created", "submits", "readbacks", "uploads")} == {
        "buffers_created": 0, "submits": 1, "readbacks": 1, "uploads": 1}
    for rows in (1, 64, 3, 1, 64):  # a larger batch grows the workspaces: recordings are made anew
        np.testing.assert_allclose(model.predict(x[:rows]), twin.predict(x[:rows]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first, twin.predict(x[:1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again, twin.predict(x[1:2]), rtol=1e-5, atol=1e-6)


def test_an_mlp_step_takes_at_most_eight_dispatches(gpu):
    """Issue 12's count for the 784-128-10 MLP with SGD: one gather for the
    batch's samples and targets, each Dense with its ReLU in one product,
    softmax and cross-entropy (value, gradient, correct count) in one
    kernel, dW and db in one product, the ReLU's gradient folded into dY·Wᵀ,
    and one optimizer update."""
    x, y = mlp_data(256)
    model = Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device="gpu", seed=0)
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.01), epochs=1, batch_size=128)
    before = model.device.stats()
    model.fit(x, y, epochs=4, batch_size=128)  # 2 steps an epoch
    after = model.device.stats()
    reads = after["readbacks"] - before["readbacks"]  # each read checks the weights first: one dispatch
    assert after["dispatches"] - before["dispatches"] == 4 * 2 * 8 + reads
