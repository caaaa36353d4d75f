"""Callbacks: the Callback base class and its hooks, plain functions, errors."""

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.callbacks import Callback
from intricate_py.device_choice import adapters
from intricate_py.layers import Dense, TanH
from intricate_py.losses import MeanSquared
from intricate_py.optimizers import SGD
from xor_data import XOR_X, XOR_Y, xor_model


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", self.model is not None))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", sorted(logs)))


def test_hooks_run_in_order(device):
    recorder = Recorder()
    xor_model(device).fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2,
                          batch_size=4, callbacks=[recorder], metrics=["accuracy"])
    assert recorder.calls == [
        ("train_begin", True),
        ("epoch_begin", 0), ("epoch_end", 0, ["accuracy", "loss"]),
        ("epoch_begin", 1), ("epoch_end", 1, ["accuracy", "loss"]),
        ("train_end", ["accuracy", "loss"]),
    ]


def test_stop_training_stops_after_the_epoch(device):
    class StopAtTwo(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.model.stop_training = True

    seen = []
    model = xor_model(device)
    history = model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=10, batch_size=4,
                        callbacks=[StopAtTwo(), lambda epoch, logs: seen.append(epoch)])
    assert history.epoch == [0, 1, 2]
    assert seen == [0, 1, 2]  # every callback sees the last epoch, as in Keras
    assert "StopAtTwo() stopped training at epoch 3" == history.stop_reason
    assert model.optimizer.iterations == 3


def test_a_function_returning_true_stops():
    history = xor_model().fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=10, batch_size=4,
                              callbacks=[lambda epoch, logs: epoch == 1])
    assert history.epoch == [0, 1]
    assert history.stop_reason.startswith("callback <lambda> stopped training at epoch 2")


@pytest.mark.parametrize("bad", [print, Callback(), [None], [3], "abc", 5, [Callback]])
def test_bad_callbacks_say_what_was_expected(bad):
    with pytest.raises(ValueError, match="expected (callbacks as a list|each callback)"):
        xor_model().fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), callbacks=bad)


# ------------------------------------------------------------ the Keras callbacks
def run_early_stopping(values, **kwargs):
    """Epochs run and the best epoch when val_loss takes ``values`` in turn."""
    from intricate_py.callbacks import EarlyStopping

    stopper = EarlyStopping(**kwargs)

    class FakeModel:
        stop_training = False

    stopper.set_model(FakeModel())
    stopper.on_train_begin()
    ran = 0
    for epoch, value in enumerate(values):
        ran += 1
        stopper.on_epoch_end(epoch, {"val_loss": value, "loss": 0.0})
        if stopper.model.stop_training:
            break
    return ran, stopper.best_epoch


@pytest.mark.parametrize("values, kwargs, ran, best", [
    ([5, 4, 3, 3.5, 3.2, 3.1], dict(patience=0), 4, 2),     # stops at the first epoch without improvement
    ([5, 4, 3, 3.5, 3.2, 3.1], dict(patience=2), 5, 2),     # two epochs without: stops after the 2nd
    ([5, 4, 3, 3.5, 3.2, 2.9, 3], dict(patience=3), 7, 5),  # 2.9 restarts the count
    ([5, 4.95, 4.9, 4.85], dict(min_delta=0.1), 2, 0),       # improvements smaller than min_delta don't count
    ([5, 5, 4, 4], dict(patience=1, baseline=2.5), 2, 0),   # the first epoch counts: it misses the baseline
    ([5, 6, 7, 8], dict(start_from_epoch=2), 4, 2),         # the first two epochs are not watched
])
def test_early_stopping_counts_as_keras(values, kwargs, ran, best):
    assert run_early_stopping(values, **kwargs) == (ran, best)


def test_early_stopping_mode_follows_the_metric():
    from intricate_py.callbacks import EarlyStopping

    assert EarlyStopping(monitor="val_accuracy")._monitor.mode == "max"
    assert EarlyStopping(monitor="loss")._monitor.mode == "min"
    with pytest.raises(ValueError, match="expected mode 'auto', 'min' or 'max'. Received: mode='up'"):
        EarlyStopping(mode="up")


def classification(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)


def test_restore_best_weights_are_an_exact_copy(device):
    """The weights at the end of the best epoch, bit for bit: compared with
    a run stopped by hand after that epoch."""
    from intricate_py.callbacks import EarlyStopping
    from intricate_py.layers import ReLU, Softmax
    from intricate_py.losses import CategoricalCrossEntropy
    from intricate_py.optimizers import Adam

    x, y = classification()

    def model():
        return Model([Dense(32), ReLU(), Dense(3), Softmax()], input_size=6, device=device, seed=5)

    stopper = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    trained = model()
    history = trained.fit(x[:200], y[:200], loss=CategoricalCrossEntropy(), optimizer=Adam(0.05), epochs=40,
                          batch_size=20, validation_data=(x[200:], y[200:]), callbacks=[stopper])
    best = int(np.argmin(history.history["val_loss"]))
    assert stopper.best_epoch == best and len(history.epoch) < 40
    replay = model()
    replay.fit(x[:200], y[:200], loss=CategoricalCrossEntropy(), optimizer=Adam(0.05), epochs=best + 1,
               batch_size=20, validation_data=(x[200:], y[200:]))
    for a, b in zip(trained.parameters, replay.parameters):
        np.testing.assert_array_equal(trained.device.to_numpy(a.value), replay.device.to_numpy(b.value))


def test_one_early_stopping_serves_models_of_other_sizes_dtypes_and_devices(device):
    """A stopper reused on another model keeps that model's best weights,
    not a buffer shaped for the first one (Keras takes them anew each fit)."""
    from intricate_py.callbacks import EarlyStopping
    from intricate_py.losses import CategoricalCrossEntropy
    from intricate_py.optimizers import Adam

    x, y = classification()
    stopper = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    other = "cpu" if device == "gpu" else "gpu"
    runs = [(8, "float32", device), (16, "float64", "cpu"), (4, "float32", device)]
    if other == "cpu" or adapters():
        runs.append((5, "float32", other))
    for width, dtype, where in runs:
        model = Model([Dense(width), TanH(), Dense(3)], input_size=6, device=where, dtype=dtype, seed=1)
        history = model.fit(x[:200], y[:200], loss=CategoricalCrossEntropy(from_logits=True),
                            optimizer=Adam(0.5), epochs=30, batch_size=50,
                            validation_data=(x[200:], y[200:]), callbacks=[stopper])
        best = stopper.best_epoch
        assert best == int(np.argmin(history.history["val_loss"]))
        restored = model.evaluate(x[200:], y[200:])["loss"]
        assert restored == pytest.approx(history.history["val_loss"][best], rel=1e-5), (width, dtype, where)


def test_model_checkpoint_saves_each_epoch_or_the_best(tmp_path):
    from intricate_py.callbacks import ModelCheckpoint

    x, y = classification()
    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=3, batch_size=4,
              callbacks=[ModelCheckpoint(tmp_path / "xor-{epoch:02d}-{loss:.3f}.safetensors", monitor="loss")])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and names[0].startswith("xor-01-") and names[2].startswith("xor-03-")
    best = tmp_path / "best.safetensors"
    losses, weights = [], []

    def spy(epoch, logs):  # runs after the checkpoint: the weights it saw
        losses.append(logs["loss"])
        weights.append(model.layers[0].weights.copy())

    model = xor_model()  # a large learning rate: the loss goes up and down
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(3.0), epochs=8, batch_size=4,
              callbacks=[ModelCheckpoint(best, monitor="loss", save_best_only=True), spy])
    assert int(np.argmin(losses)) < len(losses) - 1, "the best epoch should not be the last"
    saved = Model.load(best, device="cpu").layers[0].weights
    np.testing.assert_array_equal(saved, weights[int(np.argmin(losses))])


def test_csv_logger_writes_a_row_an_epoch(tmp_path):
    from intricate_py.callbacks import CSVLogger

    path = tmp_path / "log.csv"
    xor_model().fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=3, batch_size=4,
                    callbacks=[CSVLogger(path)])
    xor_model().fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, batch_size=4,
                    callbacks=[CSVLogger(path, append=True)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss"  # a regression reports no accuracy unless asked
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2", "0", "1"]


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    from intricate_py.callbacks import LearningRateScheduler

    rates = []
    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=4, batch_size=4,
              callbacks=[LearningRateScheduler(lambda epoch, rate: rate / 2),
                         lambda epoch, logs: rates.append(model.optimizer.learning_rate)])
    assert rates == [0.05, 0.025, 0.0125, 0.00625]
    model.fit(XOR_X, XOR_Y, epochs=2, batch_size=4,
              callbacks=[LearningRateScheduler(lambda epoch: 0.3 + epoch),
                         lambda epoch, logs: rates.append(model.optimizer.learning_rate)])
    assert rates[-2:] == [0.3, 1.3]
    with pytest.raises(ValueError, match="schedule <lambda> to return a positive finite number at epoch 0. Received: -1"):
        model.fit(XOR_X, XOR_Y, epochs=1, callbacks=[LearningRateScheduler(lambda epoch: -1)])


def test_model_checkpoint_can_save_the_weights_alone(tmp_path):
    from intricate_py.callbacks import ModelCheckpoint

    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, batch_size=4,
              callbacks=[ModelCheckpoint(tmp_path / "w.safetensors", monitor="loss", save_weights_only=True)])
    twin = xor_model(seed=9)
    twin.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(twin.predict(XOR_X), model.predict(XOR_X))


# --------------------------------------------- checked at construction, files closed
@pytest.mark.parametrize("filepath, match", [
    ("ck-{epoch.bogus}", r"plain field names.*'epoch.bogus'"),
    ("ck-{epoch[0]}", r"plain field names.*'epoch\[0\]'"),
    ("ck-{epoch.__class__}", r"plain field names.*'epoch.__class__'"),
    ("ck-{}", "plain field names"),
    ("ck-{0}", "plain field names"),
    ("ck-{epoch", "a format string"),
    ("ck-}", "a format string"),
    ("ck-{loss:d}", r"'\{loss:d\}' cannot format a metric"),
    ("ck-{epoch:x<>}", r"'\{epoch:x<>\}' cannot format the epoch"),
    ("ck-{epoch:{width}}", "nested"),
])
def test_model_checkpoint_filepaths_are_checked_when_made(filepath, match):
    from intricate_py.callbacks import ModelCheckpoint

    with pytest.raises(ValueError, match=match):
        ModelCheckpoint(filepath)


def test_model_checkpoint_fields_are_checked_before_training(tmp_path):
    from intricate_py.callbacks import ModelCheckpoint

    model = xor_model()
    with pytest.raises(ValueError, match=r"metrics in \['epoch', 'loss'\].*'val_loss'"):
        model.fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", epochs=2,
                  callbacks=[ModelCheckpoint(tmp_path / "ck-{epoch}-{val_loss:.3f}")])
    assert model.optimizer is None and not list(tmp_path.iterdir())  # nothing trained, nothing written
    model.fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", epochs=2, validation_data=(XOR_X, XOR_Y),
              callbacks=[ModelCheckpoint(tmp_path / "ck-{epoch!r}-{val_loss:.3f}.safetensors")])
    assert sorted(p.name[:5] for p in tmp_path.iterdir()) == ["ck-1-", "ck-2-"]


@pytest.mark.parametrize("separator", [", ", "", 1, "\n", '"', None])
def test_csv_logger_separators_are_checked_when_made(tmp_path, separator):
    from intricate_py.callbacks import CSVLogger

    with pytest.raises(ValueError, match="a single character.*Received: separator="):
        CSVLogger(tmp_path / "log.csv", separator=separator)


def test_csv_logger_closes_its_file_whatever_happens(tmp_path):
    """Checked by the descriptors this process holds (Linux)."""
    import os

    from intricate_py.callbacks import CSVLogger

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd")
    path = tmp_path / "log.csv"

    def open_here():
        return [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == str(path)]

    def fail(epoch, logs):
        assert not open_here()  # not even during training
        if epoch == 1:
            raise RuntimeError("a callback failed")

    with pytest.raises(RuntimeError, match="a callback failed"):
        xor_model().fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", epochs=3, callbacks=[CSVLogger(path, separator=";"), fail])
    assert not open_here()
    assert path.read_text().splitlines()[0] == "epoch;loss"
    assert [row.split(";")[0] for row in path.read_text().splitlines()] == ["epoch", "0", "1"]


def test_learning_rate_scheduler_never_hides_the_schedules_own_errors():
    from intricate_py.callbacks import LearningRateScheduler

    def buggy(epoch, rate):
        return rate * "0.5"  # the user's own TypeError

    with pytest.raises(TypeError, match="can't multiply sequence"):
        xor_model().fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD(0.1), callbacks=[LearningRateScheduler(buggy)])

    def buggy_one(epoch):
        return len(epoch)

    with pytest.raises(TypeError, match="has no len"):
        xor_model().fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD(0.1), callbacks=[LearningRateScheduler(buggy_one)])


@pytest.mark.parametrize("schedule", [lambda: 0.1, lambda a, b, c: 0.1, 0.1])
def test_learning_rate_scheduler_takes_a_function_of_the_epoch(schedule):
    from intricate_py.callbacks import LearningRateScheduler

    with pytest.raises(ValueError, match=r"expected a function schedule\(epoch, rate\) or schedule\(epoch\)"):
        LearningRateScheduler(schedule)


@pytest.mark.parametrize("value, shown", [(-1, "-1"), (None, "None"), ("0.1", "'0.1'"), (float("nan"), "nan"),
                                          (np.array([0.1]), r"array\(\[0.1\]\)")])
def test_learning_rate_scheduler_names_the_schedule_and_epoch_of_a_bad_rate(value, shown):
    from intricate_py.callbacks import LearningRateScheduler

    def halve(epoch):
        return 0.1 if epoch < 2 else value

    model = xor_model()
    with pytest.raises(ValueError, match=rf"schedule halve to return a positive finite number at epoch 2. Received: {shown}"):
        model.fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD(0.1), epochs=4, callbacks=[LearningRateScheduler(halve)])
    assert model.optimizer.learning_rate == 0.1


def test_learning_rate_scheduler_puts_the_rate_in_the_logs():
    from intricate_py.callbacks import LearningRateScheduler

    seen = []
    history = xor_model().fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD(0.1), epochs=3, batch_size=4,
                              callbacks=[LearningRateScheduler(lambda epoch, rate: rate / 2),
                                         lambda epoch, logs: seen.append(logs["learning_rate"])])
    assert seen == history.history["learning_rate"] == [0.05, 0.025, 0.0125]


def test_callbacks_see_the_epoch_a_halting_condition_stops_at(device):
    from intricate_py import MinLossReached

    seen = []
    history = xor_model(device).fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=10,
                                    halting_condition=MinLossReached(100.0),
                                    callbacks=[lambda epoch, logs: seen.append(epoch)])
    assert history.epoch == seen == [0]
    assert history.stop_reason.startswith("MinLossReached(100")
