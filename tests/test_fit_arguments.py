"""Issue 26's fit corners: a refused fit changes nothing, a resumed fit
counts its epochs on (initial_epoch), a diverged epoch is in the History,
and inputs that are plainly numbers are taken (others refused clearly)."""

import re

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.callbacks import Callback, CSVLogger, LearningRateScheduler, ModelCheckpoint
from intricate_py.losses import MeanSquared
from intricate_py.optimizers import SGD, Adam
from intricate_py.schedules import ExponentialDecay
from xor_data import XOR_X, XOR_Y, xor_model, weights


def optimizer_state(model):
    return [model.device.to_numpy(a).copy() for a in model.optimizer.state_arrays()]


# ------------------------------------------------------- a refused fit changes nothing
@pytest.mark.parametrize("bad, match", [
    (dict(batch_size=0), "positive integer. Received: batch_size=0"),
    (dict(epochs=-1), "non-negative integer. Received: epochs=-1"),
    (dict(verbose=3), "verbose 0, 1"),
    (dict(callbacks=[3]), "each callback"),
    (dict(validation_split=2), r"\[0, 1\). Received: validation_split=2"),
    (dict(halting_condition=0.1), "HaltingCondition"),
    (dict(initial_epoch=-1), "non-negative integer. Received: initial_epoch=-1"),
    (dict(y=np.zeros((3, 1))), "as many targets"),
    (dict(validation_data=(XOR_X, np.zeros((4, 5)))), r"shape \(n, 1\)"),
    (dict(loss="bogus"), "one of"),
    (dict(optimizer="bogus"), "one of"),
])
def test_a_refused_fit_keeps_the_loss_the_optimizer_and_its_state(bad, match):
    """The issue's case: fit(x, y, optimizer=SGD(0.1), batch_size=0) raised
    after replacing the trained Adam. Every argument is checked first."""
    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss="mse", optimizer=Adam(0.05), epochs=3, batch_size=2)
    adam, loss, iterations = model.optimizer, model.loss, model.optimizer.iterations
    state, before = optimizer_state(model), weights(model)
    arguments = dict(x=XOR_X, y=XOR_Y, loss="mae", optimizer=SGD(0.1), epochs=2)
    arguments.update(bad)
    with pytest.raises(ValueError, match=match):
        model.fit(**arguments)
    assert model.optimizer is adam and model.loss is loss and adam.iterations == iterations
    for got, want in zip(optimizer_state(model) + weights(model), state + before, strict=True):
        np.testing.assert_array_equal(got, want)
    # Adam goes on as if nothing had happened
    twin = xor_model()
    twin.fit(XOR_X, XOR_Y, loss="mse", optimizer=Adam(0.05), epochs=5, batch_size=2)
    model.fit(XOR_X, XOR_Y, epochs=2, batch_size=2)
    for got, want in zip(weights(model), weights(twin)):
        np.testing.assert_array_equal(got, want)


def test_a_refused_compile_changes_nothing():
    model = xor_model()
    model.compile(optimizer="adam", loss="mse")
    optimizer, loss = model.optimizer, model.loss
    with pytest.raises(ValueError, match="one of .*Received: 'bogus'"):
        model.compile(optimizer="sgd", loss="mae", metrics=["bogus"])
    with pytest.raises(ValueError, match="one of"):
        model.compile(optimizer="sgd", loss="bogus")
    assert model.optimizer is optimizer and model.loss is loss


# ------------------------------------------------------------- initial_epoch
class Rates(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((epoch, logs["learning_rate"], self.model.optimizer.current_learning_rate()))


def resumable_fit(model, folder, epochs, **kwargs):
    """A fit whose callbacks all count epochs: checkpoints, a CSV log, an
    epoch schedule, and a step schedule in the optimizer."""
    rates = Rates()
    callbacks = [ModelCheckpoint(folder / "ck-{epoch}.safetensors", monitor="loss"), CSVLogger(folder / "log.csv", append=True),
                 LearningRateScheduler(lambda epoch: 0.5 / (1 + epoch)), rates]
    history = model.fit(XOR_X, XOR_Y, epochs=epochs, batch_size=2, callbacks=callbacks, **kwargs)
    return history, rates.seen


def test_initial_epoch_continues_epochs_history_schedules_and_checkpoints(tmp_path, device):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir(), resumed.mkdir()
    model = xor_model(device)
    model.compile(optimizer=SGD(0.1, momentum=0.5), loss=MeanSquared())
    history, seen = resumable_fit(model, straight, 5)
    assert history.epoch == [0, 1, 2, 3, 4]

    other = xor_model(device)
    other.compile(optimizer=SGD(0.1, momentum=0.5), loss=MeanSquared())
    first, _ = resumable_fit(other, resumed, 2)
    early = {p.name: p.read_bytes() for p in resumed.glob("ck-*")}
    second, seen_again = resumable_fit(other, resumed, 5, initial_epoch=2)
    assert first.epoch == [0, 1] and second.epoch == [2, 3, 4]
    assert seen_again == seen[2:]  # epochs and the epoch schedule continue
    assert second.history["loss"] == history.history["loss"][2:]
    assert second.history["learning_rate"] == history.history["learning_rate"][2:]
    assert sorted(p.name for p in resumed.glob("ck-*")) == [f"ck-{e}.safetensors" for e in range(1, 6)]
    assert all((resumed / name).read_bytes() == data for name, data in early.items())  # nothing overwritten
    for e in range(1, 6):
        np.testing.assert_array_equal(Model.load(straight / f"ck-{e}.safetensors", device="cpu").get_weights()[0],
                                      Model.load(resumed / f"ck-{e}.safetensors", device="cpu").get_weights()[0])
    assert [row.split(",")[0] for row in (resumed / "log.csv").read_text().splitlines()[1:]] == list("01234")
    for got, want in zip(weights(other), weights(model)):
        np.testing.assert_array_equal(got, want)


def test_resuming_after_ctrl_c_with_the_history_fit_left_on_the_model(device):
    """The README's recipe: Ctrl-C (here in a callback), then fit again from
    model.history's last epoch; the end is bit-identical to a fit without
    the interrupt, and so is the step schedule."""
    def make():
        model = xor_model(device)
        model.compile(optimizer=Adam(ExponentialDecay(0.1, 3, 0.5)), loss="mse")
        return model

    straight = make()
    straight.fit(XOR_X, XOR_Y, epochs=6, batch_size=2)

    def interrupt(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    model = make()
    with pytest.raises(KeyboardInterrupt):
        model.fit(XOR_X, XOR_Y, epochs=6, batch_size=2, callbacks=[interrupt])
    assert model.history.epoch == [0, 1, 2]
    history = model.fit(XOR_X, XOR_Y, epochs=6, batch_size=2, initial_epoch=model.history.epoch[-1] + 1)
    assert history.epoch == [3, 4, 5] and model.history is history
    assert model.optimizer.iterations == straight.optimizer.iterations == 12
    for got, want in zip(weights(model), weights(straight)):
        np.testing.assert_array_equal(got, want)


def test_initial_epoch_shows_in_progress_bars(capsys):
    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", epochs=3, initial_epoch=2, verbose=1)
    assert "epoch 3/3" in capsys.readouterr().err
    model.fit(XOR_X, XOR_Y, epochs=4, initial_epoch=2, verbose=2)
    assert re.search(r"\b4/4\b", capsys.readouterr().err)


@pytest.mark.parametrize("initial_epoch, match", [
    (6, r"initial_epoch at most epochs.*Received: initial_epoch=6, epochs=5"),
    (1.5, "non-negative integer. Received: initial_epoch=1.5"),
    (True, "non-negative integer. Received: initial_epoch=True"),
])
def test_initial_epoch_is_checked(initial_epoch, match):
    with pytest.raises(ValueError, match=match):
        xor_model().fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", epochs=5, initial_epoch=initial_epoch)


def test_initial_epoch_equal_to_epochs_trains_nothing():
    model = xor_model()
    before = weights(model)
    history = model.fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", epochs=3, initial_epoch=3)
    assert history.epoch == [] and model.optimizer.iterations == 0
    for got, want in zip(weights(model), before):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------- a diverged epoch is recorded
def test_divergence_in_the_first_epoch_is_in_the_history(device):
    """As Keras records the NaN: the History holds the epoch that diverged,
    and the weights are those from before training."""
    class Poison(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            flat = self.model.store.flat.value
            self.model.device.write(flat, np.full(flat.shape, np.nan, np.float32))

    model = xor_model(device)
    before = weights(model)
    ends = []
    with pytest.warns(RuntimeWarning, match="became (nan|NaN or inf) in epoch 1.*weights from before training"):
        history = model.fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD(0.1), epochs=3, batch_size=2,
                            callbacks=[Poison(), lambda epoch, logs: ends.append(epoch)])
    assert history.epoch == [0] and len(history.history["loss"]) == 1 and list(history.history) == ["loss"]
    if device == "cpu":  # (on the GPU, TanH may turn NaN into ±1 and the loss stay finite: the weights tell)
        assert np.isnan(history.history["loss"][0])
    assert ends == []  # callbacks do not see an epoch whose weights were thrown away
    for got, want in zip(weights(model), before):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ inputs
def fitted(x, y=XOR_Y):
    model = xor_model()
    model.fit(x, y, loss="mse", optimizer=SGD(0.1), epochs=2, batch_size=2, shuffle=False)
    return weights(model)


def assert_same_fit(x, y=XOR_Y):
    for got, want in zip(fitted(x, y), fitted(XOR_X, XOR_Y), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(4, 0), (4, 2, 0)])
def test_zero_size_samples_are_refused(shape):
    model = xor_model()
    message = re.escape(f"expected at least one value in each sample of x. Received: x.shape={shape}")
    for dtype in (np.float64, np.float32, np.int64):
        with pytest.raises(ValueError, match=message):
            model.fit(np.zeros(shape, dtype), XOR_Y, loss="mse", optimizer="sgd")
        with pytest.raises(ValueError, match=message):
            model.predict(np.zeros(shape, dtype))
    with pytest.raises(ValueError, match=r"at least one value in each sample of y. Received: y.shape=\(4, 0\)"):
        model.fit(XOR_X, np.zeros((4, 0)), loss="mse", optimizer="sgd")


def test_arrays_of_python_numbers_are_numbers():
    """What pandas gives for nullable Float64 columns or a frame of floats
    and bools: an object array that holds only numbers."""
    assert_same_fit(XOR_X.astype(object))
    mixed = XOR_X.astype(object)
    mixed[:, 1] = XOR_X[:, 1] == 1  # a bool column
    assert_same_fit(mixed, XOR_Y.astype(object))


@pytest.mark.parametrize("value, shown", [("1", "'1'"), (None, "None"), (1j, r"1j"), ([1.0], r"\[1.0\]")])
def test_objects_that_are_not_numbers_are_named(value, shown):
    x = XOR_X.astype(object)
    x[2, 1] = value
    with pytest.raises(ValueError, match=rf"expected numbers in x. Received: {shown} \(\w+\) at index \(2, 1\)"):
        xor_model().fit(x, XOR_Y, loss="mse", optimizer="sgd")


def test_pandas_nullable_and_mixed_frames():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": pd.array(XOR_X[:, 0], dtype="Float64"), "b": pd.array(XOR_X[:, 1], dtype="Float64")})
    assert_same_fit(frame, pd.Series(XOR_Y[:, 0], dtype="Float64"))
    assert_same_fit(pd.DataFrame({"a": XOR_X[:, 0].astype(np.float64), "b": XOR_X[:, 1] == 1}))
    frame.loc[1, "b"] = pd.NA
    with pytest.raises(ValueError, match=r"expected (numbers|finite values) in x. Received: (<NA>|nan).* at index \(1, 1\)"):
        xor_model().fit(frame, XOR_Y, loss="mse", optimizer="sgd")


def test_a_torch_tensor_that_requires_grad_is_read():
    torch = pytest.importorskip("torch")
    x = torch.tensor(XOR_X, requires_grad=True)
    assert_same_fit(x, torch.tensor(XOR_Y, requires_grad=True))
    np.testing.assert_array_equal(xor_model().predict(x), xor_model().predict(XOR_X))


def test_an_object_numpy_cannot_read_gets_our_error():
    class Broken:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("the device went away")

    with pytest.raises(ValueError, match=r"numpy cannot read \(RuntimeError: the device went away\)"):
        xor_model().fit(Broken(), XOR_Y, loss="mse", optimizer="sgd")
