"""Issue 13's training half: divergence caught on every backend, interrupts
survived, inputs and targets checked before they cost anything."""

import os
import signal
import warnings

import numpy as np
import pytest

from intricate_py import MinLossReached, Model, fit_run, fitting
from intricate_py.callbacks import Callback
from intricate_py.layers import Dense, Dropout, ReLU, Sigmoid, Softmax
from intricate_py.losses import BinaryCrossEntropy, CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD, Adam
from xor_data import XOR_X, XOR_Y, xor_model, weights


def classification(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)).astype(np.float32), rng.integers(0, 4, n)


# ------------------------------------------------------------------ divergence
def test_divergence_is_caught_and_undone(device):
    """The issue's case: SGD(10) on scaled inputs. Clipping hid the NaN on the
    GPU; now both backends warn, stop and keep finite weights."""
    x, labels = classification()
    model = Model([Dense(16), ReLU(), Dense(4), Softmax()], input_size=8, device=device, seed=0)
    with pytest.warns(RuntimeWarning, match="training stopped and the weights from"):
        history = model.fit(5 * x, labels, loss=CategoricalCrossEntropy(), optimizer=SGD(10), epochs=20)
    assert len(history.epoch) < 20 and "learning rate (10)" in history.stop_reason
    assert all(np.isfinite(w).all() for w in weights(model))
    assert np.isfinite(model.predict(x)).all()
    *before, diverged = history.history["loss"]  # the History ends with the epoch that diverged, as in Keras
    assert all(np.isfinite(v) for v in before) and not np.isfinite(diverged)


def test_injected_nan_restores_the_last_weights_that_gave_a_finite_loss(device):
    """NaN written into the weights after epoch 2: epoch 3's first step gives
    NaN, so the weights that epoch 2 left are not trusted either (the
    poisoned ones stood in for them), and those of the end of epoch 1 come
    back, bit for bit."""
    x, labels = classification()
    kept = {}

    class Poison(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                kept["weights"] = weights(self.model)
            if epoch == 1:
                flat = self.model.store.flat.value
                self.model.device.write(flat, np.full(flat.shape, np.nan, np.float32))

    model = Model([Dense(16), ReLU(), Dense(4), Softmax()], input_size=8, device=device, seed=0)
    with pytest.warns(RuntimeWarning, match="the loss became nan in epoch 3.*end of epoch 1 were kept"):
        history = model.fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=Adam(1e-3), epochs=5,
                            callbacks=[Poison()])
    assert history.epoch == [0, 1, 2] and np.isnan(history.history["loss"][2])  # epoch 3 recorded, as in Keras
    for got, want in zip(weights(model), kept["weights"]):
        np.testing.assert_array_equal(got, want)


def test_a_late_divergence_keeps_the_previous_epoch(device, monkeypatch):
    """NaN only in the last step of epoch 3: the weights epoch 2 left gave
    a finite loss (epoch 3's first step), so they are kept."""
    x, labels = classification(64)
    kept = {}

    class PoisonLastStep(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                kept["weights"] = weights(self.model)

    model = Model([Dense(16), ReLU(), Dense(4), Softmax()], input_size=8, device=device, seed=0)
    real, calls = fitting.TrainStep.run, []

    def nan_in_step_12(step, data, batch, metrics, block, first_step):
        real(step, data, batch, metrics, block, first_step)
        calls.append(1)
        if len(calls) == 12:  # epoch 3's 4th and last step of 16 samples
            index = block + step.slots.of(0, step.slots.LOSS)
            step.backend.write(step.backend.rows(metrics, index, index + 1), np.array([np.nan], np.float32))

    monkeypatch.setattr(fitting.TrainStep, "run", nan_in_step_12)
    with pytest.warns(RuntimeWarning, match="the loss became nan in epoch 3.*end of epoch 2 were kept"):
        model.fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=5, batch_size=16,
                  shuffle=False, callbacks=[PoisonLastStep()])
    for got, want in zip(weights(model), kept["weights"]):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ interrupts
def reference_epochs(device, epochs=6):
    """Weights at the end of every epoch of an uninterrupted fit."""
    seen = []
    model = xor_model(device)
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.3, momentum=0.5), epochs=epochs, batch_size=2,
              callbacks=[lambda epoch, logs: seen.append(weights(model))])
    return seen


def assert_finished_step_and_resumes(model, seen):
    """The model holds the weights of some epoch's end, and fitting the
    remaining epochs ends bit-identical to the uninterrupted fit."""
    if model.optimizer is None:  # interrupted before fit took its arguments: nothing trained, nothing changed
        assert model.history is None
        model.compile(optimizer=SGD(0.3, momentum=0.5), loss=MeanSquared())
    done = model.optimizer.iterations // 2  # two steps an epoch
    now = weights(model)
    if done:
        for got, want in zip(now, seen[done - 1]):
            np.testing.assert_array_equal(got, want)
    model.fit(XOR_X, XOR_Y, epochs=len(seen) - done, batch_size=2)
    for got, want in zip(weights(model), seen[-1]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("at_step", [1, 4, 7])
def test_an_interrupt_between_steps_leaves_a_finished_step(device, monkeypatch, at_step):
    seen = reference_epochs(device)
    model = xor_model(device)
    real, calls = fitting.TrainStep.run, []

    def interrupted(step, *args):
        real(step, *args)  # the step is recorded (or done), then Ctrl-C
        calls.append(1)
        if len(calls) == at_step:
            raise KeyboardInterrupt

    monkeypatch.setattr(fitting.TrainStep, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.3, momentum=0.5), epochs=6, batch_size=2,
                  callbacks=[lambda epoch, logs: None])
    monkeypatch.undo()
    assert_finished_step_and_resumes(model, seen)


def test_an_interrupt_in_a_callback_leaves_that_epoch(device):
    seen = reference_epochs(device)

    def stop(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    model = xor_model(device)
    with pytest.raises(KeyboardInterrupt):
        model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.3, momentum=0.5), epochs=6, batch_size=2,
                  callbacks=[stop])
    assert model.optimizer.iterations == 6
    assert_finished_step_and_resumes(model, seen)


class SignallingQueue:
    """A wgpu queue whose n-th submission gets Ctrl-C (a real SIGINT) as it
    starts, or raises ``error``."""

    def __init__(self, queue, at, error=None):
        self._queue, self._at, self._calls, self._error = queue, at, 0, error

    def submit(self, buffers):
        self._calls += 1
        if self._calls == self._at:
            if self._error is not None:
                raise self._error
            os.kill(os.getpid(), signal.SIGINT)
        return self._queue.submit(buffers)

    def __getattr__(self, name):
        return getattr(self._queue, name)


@pytest.mark.parametrize("at", [1, 2, 3, 5])
def test_ctrl_c_inside_submit_leaves_a_finished_step(gpu, monkeypatch, at):
    """The issue's case: Ctrl-C landing in queue.submit left a finished
    encoder behind and every later GPU call failed."""
    seen = reference_epochs("gpu")
    model = xor_model("gpu")
    monkeypatch.setattr(gpu, "queue", SignallingQueue(gpu.queue, at))
    with pytest.raises(KeyboardInterrupt):
        model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.3, momentum=0.5), epochs=6, batch_size=2,
                  callbacks=[lambda epoch, logs: None])
    monkeypatch.undo()
    fresh = xor_model("gpu", seed=1)  # the backend still works for everyone
    fresh.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.3), epochs=2, batch_size=4)
    assert np.isfinite(fresh.predict(XOR_X)).all()
    assert_finished_step_and_resumes(model, seen)


def test_a_failed_submission_leaves_the_gpu_usable(gpu, monkeypatch):
    model = xor_model("gpu")
    monkeypatch.setattr(gpu, "queue", SignallingQueue(gpu.queue, 1, RuntimeError("device lost")))
    with pytest.raises(RuntimeError, match="device lost"):
        model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.3), epochs=6, batch_size=2)
    monkeypatch.undo()
    fresh = xor_model("gpu", seed=1)
    fresh.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.3), epochs=2, batch_size=4)
    assert np.isfinite(fresh.predict(XOR_X)).all()


# --------------------------------------------------------- memory and epochs
def test_epochs_do_not_cost_memory(device):
    model = xor_model(device)
    history = model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=10**10, batch_size=4,
                        halting_condition=MinLossReached(1e9))
    assert history.epoch == [0]


def test_the_metric_ring_wraps_without_losing_epochs(device, monkeypatch):
    """Read back only when the ring is full: every epoch still lands in the
    history, with the values a per-epoch readback gives."""
    monkeypatch.setattr(fit_run, "REFRESH_SECONDS", 1e9)
    epochs = 2 * fit_run.RING + 37
    lazy = xor_model(device).fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=epochs,
                                 batch_size=4)
    eager = xor_model(device).fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=epochs,
                                  batch_size=4, callbacks=[lambda epoch, logs: None])
    assert lazy.epoch == list(range(epochs))
    assert lazy.history == eager.history


# ------------------------------------------------------------ inference mode
def test_predict_in_a_callback_runs_without_dropout(device):
    x, labels = classification()
    model = Model([Dense(32), ReLU(), Dropout(0.5), Dense(4), Softmax()], input_size=8, device=device, seed=0)
    during = []
    model.fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=Adam(1e-2), epochs=2,
              callbacks=[lambda epoch, logs: during.append(model.predict(x))])
    np.testing.assert_array_equal(during[-1], model.predict(x))
    assert all(layer.training is False for layer in model.layers)


# ----------------------------------------------------------- values and types
def test_values_too_large_for_float32_are_refused():
    model = Model([Dense(3)], input_size=2, device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"fit float32 .* in x. Received: 1e\+300 at index \(0, 0\)"):
        model.predict([[1e300, 0]])
    with pytest.raises(ValueError, match="fit float32"):
        model.fit([[1e300, 0]], [[0, 0, 0]], loss=MeanSquared(), optimizer=SGD(0.1))
    with pytest.raises(ValueError, match=r"fit float32 .* in y"):
        model.fit([[1.0, 0]], [[0, -1e300, 0]], loss=MeanSquared(), optimizer=SGD(0.1))
    big = Model([Dense(3)], input_size=2, device="cpu", dtype="float64", seed=0)
    assert np.isfinite(big.predict([[1e300, 0]])).any()  # float64 holds it


@pytest.mark.parametrize("make, match", [
    (lambda: Model([Dense(2)], seed=-1), "non-negative integer. Received: seed=-1"),
    (lambda: Model([Dense(2)], seed="abc"), "non-negative integer. Received: seed='abc'"),
    (lambda: Model([Dense(2)], seed=1.5), "non-negative integer. Received: seed=1.5"),
    (lambda: Model([Dense(2)], dtype="garbage"), "dtype 'float32' or 'float64'. Received: dtype='garbage'"),
    (lambda: Model([Dense(2)], dtype="int32"), "dtype 'float32' or 'float64'. Received: dtype='int32'"),
    (lambda: MinLossReached("abc"), "finite number. Received: threshold='abc'"),
    (lambda: Model([Dense(10**12)], input_size=3), r"fit in memory.*Dense\(3→1000000000000\)'s parameters need"),
    (lambda: xor_model().fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", verbose="yes"),
     "verbose 0, 1 \\(or True\\) or 2. Received: verbose='yes'"),
    (lambda: xor_model().fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", halting_condition=0.01),
     "expected a HaltingCondition"),
])
def test_arguments_get_our_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ------------------------------------------------------------------- targets
@pytest.mark.parametrize("loss, width, y, match", [
    (CategoricalCrossEntropy(), 3, [[1.2, -0.2, 0.0]], r"entries ≥ 0.*Received: -0.2 at index \(0, 1\)"),
    (CategoricalCrossEntropy(), 3, [[0.0, 0.0, 0.0]], "row 0 sums to 0"),
    (CategoricalCrossEntropy(), 1, [[1.0]], "at least 2 outputs .*use BinaryCrossEntropy"),
    (BinaryCrossEntropy(), 1, [[2.0]], r"targets in \[0, 1\].*Received: 2 at index \(0, 0\)"),
    (BinaryCrossEntropy(), 2, [[0.0, -1.0]], r"Received: -1 at index \(0, 1\)"),
])
def test_targets_that_do_not_fit_the_loss(loss, width, y, match):
    last = [Softmax()] if isinstance(loss, CategoricalCrossEntropy) and width > 1 else [Sigmoid()]
    model = Model([Dense(width)] + last, input_size=2, device="cpu", seed=0)
    with pytest.raises(ValueError, match=match):
        model.fit([[0.5, 0.5]], y, loss=loss, optimizer=SGD(0.1))


def test_a_probability_loss_after_logits_warns_with_the_fix():
    x, labels = classification()
    model = Model([Dense(16), ReLU(), Dense(4)], input_size=8, device="cpu", seed=0)
    with pytest.warns(UserWarning, match=r"expects probabilities, but the model's last layer is Dense\(16→4\).*"
                                         r"add Softmax\(\) as the last layer, or use .*from_logits=True"):
        model.fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1))
    softmax = Model([Dense(4), Softmax()], input_size=8, device="cpu", seed=0)
    with pytest.warns(UserWarning, match=r"from_logits=True\) expects logits, but the model's last layer is Softmax"):
        softmax.fit(x, labels, loss=CategoricalCrossEntropy(from_logits=True), optimizer=SGD(0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        softmax.fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1))
        model.fit(x, labels, loss=CategoricalCrossEntropy(from_logits=True), optimizer=SGD(0.1))
