"""Keras's batch hooks, ReduceLROnPlateau, TerminateOnNaN, BackupAndRestore,
TensorBoard, resuming from a ModelCheckpoint, summary's printing, and
weights from a PyTorch state_dict object."""

import math
import os
import sys

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.callbacks import (
    BackupAndRestore, Callback, ModelCheckpoint, ReduceLROnPlateau, TensorBoard, TerminateOnNaN,
)
from intricate_py.layers import BatchNormalization, Conv2D, Dense, Dropout, ReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD, Adam
from intricate_py.saving import FormatError
from xor_data import XOR_X, XOR_Y, weights, xor_model


class Recorder(Callback):
    """Every hook it sees, with the logs' keys (or values)."""

    def __init__(self):
        self.calls = []

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("train_batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("train_batch_end", batch, dict(logs)))

    def on_test_begin(self, logs=None):
        self.calls.append(("test_begin",))

    def on_test_batch_end(self, batch, logs=None):
        self.calls.append(("test_batch_end", batch, sorted(logs)))

    def on_test_end(self, logs=None):
        self.calls.append(("test_end", dict(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, n)


def classifier(device="cpu", seed=1):
    """Batch statistics, Dropout's per-step keys and Adam: all of a fit's state."""
    return Model([Dense(8), BatchNormalization(), ReLU(), Dropout(0.25), Dense(3), Softmax()], input_size=6,
                 device=device, seed=seed)


def train(model, x, y, **kwargs):
    kwargs.setdefault("optimizer", Adam(0.01))
    kwargs.setdefault("epochs", 5)
    kwargs.setdefault("validation_split", 0.25)
    return model.fit(x, y, loss=CategoricalCrossEntropy(), batch_size=16, **kwargs)


# ------------------------------------------------------------ batch hooks
def test_batch_hooks_see_each_step_and_the_epochs_running_metrics(device):
    recorder = Recorder()
    model = xor_model(device)
    history = model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, batch_size=2,
                        validation_data=(XOR_X, XOR_Y), callbacks=[recorder])
    names = [call[0] for call in recorder.calls]
    assert names == ["train_batch_begin", "train_batch_end"] * 2 + ["test_begin"] + ["test_batch_end"] * 2 + [
        "test_end", "epoch_end"] + (["train_batch_begin", "train_batch_end"] * 2 + ["test_begin"]
                                    + ["test_batch_end"] * 2 + ["test_end", "epoch_end"])
    for epoch in range(2):
        calls = recorder.calls[9 * epoch : 9 * epoch + 9]
        assert [c[1] for c in calls if c[0] == "train_batch_end"] == [0, 1]
        last_batch, epoch_end = calls[3][2], calls[8][2]
        assert set(last_batch) == {k for k in epoch_end if not k.startswith("val_")}
        # the logs of a batch are the epoch's means so far, as Keras's: the last batch's are the epoch's
        assert last_batch["loss"] == pytest.approx(epoch_end["loss"], rel=1e-12)
        assert calls[7][1] == {k[4:]: v for k, v in epoch_end.items() if k.startswith("val_")}
        assert calls[5][2] == sorted(last_batch)
    assert history.history["loss"] == [c[2]["loss"] for c in recorder.calls if c[0] == "epoch_end"]


def test_batch_logs_count_the_samples_of_batches_of_any_size(device):
    """A source's batches may differ in size (here the first is the
    smallest): a batch's logs are the mean over the samples seen so far,
    so the last batch's are the epoch's."""
    x, y = data(40)
    sizes = [4, 12, 16, 8]
    starts = np.cumsum([0, *sizes])
    recorder = Recorder()
    history = classifier(device).fit(((x[a:b], y[a:b]) for a, b in zip(starts, starts[1:])), epochs=1,
                                     loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), callbacks=[recorder])
    batches = [c[2] for c in recorder.calls if c[0] == "train_batch_end"]
    assert len(batches) == 4
    for key in ("loss", "accuracy"):
        assert batches[-1][key] == pytest.approx(history.history[key][0], rel=1e-6)


def test_batch_hooks_change_no_bit_of_training(device):
    x, y = data()
    plain, hooked = classifier(device), classifier(device)
    train(plain, x, y, epochs=3)
    train(hooked, x, y, epochs=3, callbacks=[Recorder()])
    for a, b in zip(weights(plain), weights(hooked)):
        np.testing.assert_array_equal(a, b)
    assert plain.history.history == hooked.history.history


def test_a_batch_hook_that_stops_training_ends_the_epoch_there(device):
    class StopAtStep(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.logs = dict(logs)
            if batch == 2:
                self.model.stop_training = True

    x, y = data()
    stopper, model = StopAtStep(), classifier(device)
    history = train(model, x, y, epochs=4, callbacks=[stopper])
    assert history.epoch == [0] and model.optimizer.iterations == 3  # steps 0, 1, 2 of 72 / 16 = 5
    assert history.stop_reason == "StopAtStep() stopped training at epoch 1"
    # the epoch's metrics are those of its 3 steps (48 samples), as the last batch's logs were
    assert history.history["loss"][0] == pytest.approx(stopper.logs["loss"], rel=1e-12)
    assert "val_loss" in history.history  # the validation still runs, as in Keras


def test_evaluate_and_predict_call_their_hooks(device):
    class Seen(Callback):
        def __init__(self):
            self.outputs, self.tests = [], []

        def on_predict_batch_end(self, batch, logs=None):
            self.outputs.append(logs["outputs"])

        def on_test_batch_end(self, batch, logs=None):
            self.tests.append((batch, logs))

        def on_test_end(self, logs=None):
            self.final = logs

    model, seen = xor_model(device), Seen()
    predictions = model.predict(XOR_X, batch_size=3, callbacks=[seen])
    assert [len(o) for o in seen.outputs] == [3, 1]
    np.testing.assert_array_equal(np.concatenate(seen.outputs), predictions)
    np.testing.assert_array_equal(predictions, model.predict(XOR_X))
    result = model.evaluate(XOR_X, XOR_Y, loss=MeanSquared(), batch_size=3, callbacks=[seen])
    assert [b for b, _ in seen.tests] == [0, 1] and seen.final == result
    assert seen.tests[-1][1] == result


def test_a_callback_without_batch_hooks_adds_no_readback(gpu, tmp_path):
    """Replayed steps stay as they are: a readback an epoch with epoch hooks
    only (TensorBoard writing per epoch included), and one a step more only
    where a callback has a batch hook."""
    x, y = data(160)

    def readbacks(callbacks, tmp=None):
        model = classifier("gpu")
        train(model, x, y, epochs=2, validation_split=0.0, callbacks=[lambda epoch, logs: None])  # warm
        before = model.device.stats()
        train(model, x, y, epochs=3, validation_split=0.0, callbacks=callbacks)
        after = model.device.stats()
        return after["readbacks"] - before["readbacks"], after["submits"] - before["submits"]

    plain = readbacks([lambda epoch, logs: None])
    assert readbacks([ReduceLROnPlateau("loss"), lambda epoch, logs: None]) == plain
    pytest.importorskip("tensorboard")
    assert readbacks([TensorBoard(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"tb-{os.getpid()}"))]
                     )[0] == plain[0]
    hooked = readbacks([Recorder()])
    assert hooked[0] == plain[0] + 3 * 10  # one a step: 160 / 16 = 10 steps, 3 epochs
    # a batch hook that reads its logs every 5th step only (steps 21 to 50: 25, 30 ... 50) reads back then only
    board = TensorBoard(tmp_path / "tb", update_freq=5)
    assert readbacks([board])[0] == plain[0] + 6


# ------------------------------------------------------------ ReduceLROnPlateau
def run_plateau(values, **kwargs):
    """The learning rates after each epoch when the monitor takes ``values``."""
    reducer = ReduceLROnPlateau(monitor="loss", **kwargs)

    class FakeModel:
        stop_training = False
        optimizer = SGD(1.0)

    reducer.set_model(FakeModel())
    reducer.on_train_begin({})
    rates, logged = [], []
    for epoch, value in enumerate(values):
        logs = {"loss": value}
        reducer.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
        rates.append(FakeModel.optimizer.learning_rate)
    return rates, logged


def test_reduce_lr_on_plateau_follows_keras():
    rates, logged = run_plateau([1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5], factor=0.5, patience=2)
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert logged == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]  # the rate each epoch trained with
    # cooldown: epochs after a reduction in which nothing is counted
    assert run_plateau([1.0] * 7, factor=0.5, patience=1, cooldown=2)[0] == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    assert run_plateau([1.0] * 6, factor=0.5, patience=0, min_lr=0.2)[0] == [1.0, 0.5, 0.25, 0.2, 0.2, 0.2]
    # min_delta: an improvement smaller than it is none; mode="max" for accuracies
    assert run_plateau([1.0, 0.99, 0.98], factor=0.5, patience=1, min_delta=0.05)[0] == [1.0, 0.5, 0.25]
    assert run_plateau([1.0, 2.0, 3.0], factor=0.5, patience=1, mode="max")[0] == [1.0, 1.0, 1.0]
    for bad in ({"factor": 1.0}, {"factor": 0}, {"patience": -1}, {"min_lr": -1.0}, {"mode": "up"}):
        with pytest.raises(ValueError):
            ReduceLROnPlateau(**bad)


def test_reduce_lr_on_plateau_changes_the_replayed_steps_rate(device):
    x, y = data()
    model = classifier(device)
    history = train(model, x, y, optimizer=SGD(0.1), epochs=4,
                    callbacks=[ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=100.0)])
    # each epoch's rate, as Keras logs it: the first epoch sets the best value, each one after reduces
    assert history.history["learning_rate"] == [0.1, 0.1, 0.05, 0.025]
    assert model.optimizer.learning_rate == 0.0125
    # the same rates by hand, epoch by epoch: the same bits
    again = classifier(device)
    for epoch, rate in enumerate([0.1, 0.1, 0.05, 0.025]):
        optimizer = again.optimizer or SGD(rate)
        optimizer.learning_rate = rate
        train(again, x, y, optimizer=optimizer, epochs=epoch + 1, initial_epoch=epoch)
    for a, b in zip(weights(model), weights(again)):
        np.testing.assert_array_equal(a, b)


def test_reduce_lr_on_plateau_refuses_a_schedule():
    from intricate_py.schedules import ExponentialDecay

    with pytest.raises(ValueError, match="float learning_rate for ReduceLROnPlateau"):
        xor_model().fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(ExponentialDecay(0.1, 10, 0.9)),
                        callbacks=[ReduceLROnPlateau()])


# ------------------------------------------------------------ TerminateOnNaN
def test_terminate_on_nan_stops_at_the_batch(device, capsys):
    class Steps(Callback):
        count = 0

        def on_train_batch_begin(self, batch, logs=None):
            self.count += 1

    x, y = data()
    model, steps = Model([Dense(8), ReLU(), Dense(1)], input_size=6, device=device, seed=0), Steps()
    target = (y[:, None] * 1e3).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="the loss became"):
        history = model.fit(x, target, loss=MeanSquared(), optimizer=SGD(1.0), epochs=5, batch_size=8,
                            callbacks=[TerminateOnNaN(), steps])
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    assert len(history.epoch) == 1 and not math.isfinite(history.history["loss"][-1])
    assert 0 < steps.count < 12  # stopped within the first epoch of 96 / 8 steps
    assert model.optimizer.iterations == 0  # back to the weights that gave a finite loss
    assert all(np.isfinite(w).all() for w in weights(model))  # the weights from before training


# ------------------------------------------------------------ BackupAndRestore
class Interrupt(Callback):
    def __init__(self, epoch, batch=None):
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch and self.batch is None:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if self.batch is not None and self.model.optimizer.iterations == self.epoch * 5 + self.batch:
            raise RuntimeError("the machine went away")


@pytest.mark.parametrize("interrupt", [Interrupt(2), Interrupt(2, batch=3)], ids=["at-epoch-3", "in-epoch-3"])
def test_backup_and_restore_resumes_exactly(device, tmp_path, interrupt):
    x, y = data()
    whole = classifier(device)
    train(whole, x, y, callbacks=[lambda epoch, logs: None])
    backup_dir = tmp_path / "backup"
    model, optimizer = classifier(device), Adam(0.01)
    with pytest.raises((KeyboardInterrupt, RuntimeError)):
        train(model, x, y, optimizer=optimizer, callbacks=[BackupAndRestore(backup_dir), interrupt])
    assert os.listdir(backup_dir) == ["backup.safetensors"] and model.history.epoch == [0, 1]
    history = train(model, x, y, optimizer=optimizer, callbacks=[BackupAndRestore(backup_dir)])
    for a, b in zip(weights(whole), weights(model)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(whole.get_weights(), model.get_weights()):  # the moving statistics too
        np.testing.assert_array_equal(a, b)
    assert history.epoch == whole.history.epoch == [0, 1, 2, 3, 4]
    assert history.history == whole.history.history
    assert model.optimizer is optimizer and optimizer.iterations == whole.optimizer.iterations == 25
    assert not backup_dir.exists()  # delete_checkpoint


def test_backup_and_restore_in_a_new_process_state(tmp_path):
    """New model and callback objects (as after a restart) with the same seed
    resume exactly, ReduceLROnPlateau's and EarlyStopping's counters
    included; delete_checkpoint=False keeps the backup of the last epoch."""
    from intricate_py.callbacks import EarlyStopping

    x, y = data()

    def callbacks():
        return [ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=0.02),
                EarlyStopping("loss", patience=3, min_delta=0.05)]

    whole = classifier()
    train(whole, x, y, optimizer=SGD(0.1, momentum=0.9), epochs=30, callbacks=callbacks())
    assert 5 < len(whole.history.epoch) < 30 and len(set(whole.history.history["learning_rate"])) > 2
    with pytest.raises(KeyboardInterrupt):
        train(classifier(), x, y, optimizer=SGD(0.1, momentum=0.9), epochs=30,
              callbacks=[*callbacks(), BackupAndRestore(tmp_path), Interrupt(4)])
    fresh = classifier()
    history = train(fresh, x, y, optimizer=SGD(0.1, momentum=0.9), epochs=30,
                    callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False), *callbacks()])
    assert history.epoch == whole.history.epoch and history.history == whole.history.history
    assert history.stop_reason == whole.history.stop_reason
    for a, b in zip(whole.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "backup.safetensors").is_file()


def test_backup_and_restore_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="save_freq='epoch'"):
        BackupAndRestore(tmp_path, save_freq=10)
    x, y = data()
    with pytest.raises(KeyboardInterrupt):
        train(classifier(), x, y, callbacks=[BackupAndRestore(tmp_path), Interrupt(1)])
    model = classifier()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"expected a fit with Adam, whose state the backup"):
        train(model, x, y, optimizer=SGD(0.1), callbacks=[BackupAndRestore(tmp_path)])
    for a, b in zip(before, model.get_weights()):  # refused before anything changed
        np.testing.assert_array_equal(a, b)
    other = Model([Dense(4), ReLU(), Dense(3), Softmax()], input_size=6, seed=0)
    with pytest.raises(FormatError):
        train(other, x, y, callbacks=[BackupAndRestore(tmp_path)])


def test_backup_and_restore_first_backs_up_what_the_callbacks_after_it_change(tmp_path):
    """The backup is written after every callback's epoch end, whatever the
    order: ReduceLROnPlateau's new rate and counters, and the learning_rate
    column it adds to the History, are in the backup of that epoch."""
    x, y = data()

    def plateau():
        return ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=100.0)

    whole = classifier()
    train(whole, x, y, optimizer=SGD(0.1), epochs=4, callbacks=[plateau()])
    assert whole.history.history["learning_rate"] == [0.1, 0.1, 0.05, 0.025]
    with pytest.raises(KeyboardInterrupt):
        train(classifier(), x, y, optimizer=SGD(0.1), epochs=4,
              callbacks=[BackupAndRestore(tmp_path), plateau(), Interrupt(2)])
    fresh = classifier()
    history = train(fresh, x, y, optimizer=SGD(0.1), epochs=4, callbacks=[BackupAndRestore(tmp_path), plateau()])
    assert history.history == whole.history.history and len(history.history["learning_rate"]) == 4
    assert fresh.optimizer.learning_rate == whole.optimizer.learning_rate == 0.0125
    for a, b in zip(whole.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


class FakeWeights:
    """A model whose weights are the number of the epoch that made them."""

    stop_training = False

    def __init__(self):
        self.epoch, self.restored = None, None

    def snapshot_weights(self, into=None):
        return self.epoch

    def restore_weights(self, snapshot):
        self.restored = snapshot


def early_stopping_run(stopper, model, values, start=0, state=None):
    """``values`` of the monitor from epoch ``start``, with the counters of
    a backup ``state`` where given; the backup state at the end."""
    stopper.set_model(model)
    stopper.on_train_begin({})
    if state is not None:
        stopper._set_backup_state(state)
    for epoch, value in enumerate(values, start):
        model.epoch = epoch
        stopper.on_epoch_end(epoch, {"loss": value})
    return stopper._backup_state()


def test_early_stopping_restores_the_best_epoch_since_a_resume():
    """A new EarlyStopping (a new process) resumed from a backup no longer
    has the best epoch's weights: it restores the best epoch since the
    resume, not the first one after it; the object that ran the fit still
    has them; a fit in between makes them another fit's."""
    from intricate_py.callbacks import EarlyStopping

    def stopper():
        return EarlyStopping("loss", patience=10, restore_best_weights=True)

    first, model = stopper(), FakeWeights()
    state = early_stopping_run(first, model, [5.0, 2.0, 3.0])  # the backup after epoch 3 (best: epoch 2)
    resumed, model = stopper(), FakeWeights()
    early_stopping_run(resumed, model, [4.0, 2.5, 2.7], start=3, state=state)
    assert resumed.best == 2.0 and resumed.best_epoch == 1  # the counters over the whole training
    resumed.on_train_end({})
    assert model.restored == 4  # 2.5: the best since the resume
    # the same object, resumed: it still holds the weights of epoch 2, the best
    early_stopping_run(first, model, [4.0, 2.5, 2.7], start=3, state=state)
    first.on_train_end({})
    assert model.restored == 1
    # after another fit, the object's weights are that fit's
    again = stopper()
    state = early_stopping_run(again, FakeWeights(), [5.0, 2.0, 3.0])
    early_stopping_run(again, FakeWeights(), [1.0, 9.0])
    model = FakeWeights()
    early_stopping_run(again, model, [4.0, 2.5, 2.7], start=3, state=state)
    again.on_train_end({})
    assert model.restored == 4
    # an improvement on the whole training's best after the resume is kept as usual
    last, model = stopper(), FakeWeights()
    early_stopping_run(last, model, [2.6, 1.0, 1.5], start=3, state=state)
    last.on_train_end({})
    assert model.restored == 4 and last.best_epoch == 4 and last.best == 1.0


# ------------------------------------------------------------ ModelCheckpoint
def test_a_checkpoint_holds_the_optimizer_and_resumes_exactly(device, tmp_path):
    x, y = data()
    whole = classifier(device)
    train(whole, x, y, callbacks=[ModelCheckpoint(tmp_path / "ck-{epoch}.safetensors")])
    assert sorted(os.listdir(tmp_path)) == [f"ck-{e}.safetensors" for e in range(1, 6)]
    resumed = Model.load(tmp_path / "ck-2.safetensors", device=device)
    assert type(resumed.optimizer) is Adam and resumed.optimizer.iterations == 10
    resumed.fit(x, y, epochs=5, initial_epoch=2, batch_size=16, validation_split=0.25)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.history.history["loss"] == whole.history.history["loss"][2:]


def test_a_checkpoint_that_could_not_be_written_refuses_the_fit_before_training(tmp_path):
    """A schedule without get_config cannot be saved with the optimizer:
    ModelCheckpoint and BackupAndRestore refuse the fit before its first
    epoch, saying why and what to do; save_weights_only=True trains."""
    from intricate_py.schedules import LearningRateSchedule

    class Halving(LearningRateSchedule):
        def __call__(self, step):
            return 0.01 / 2 ** (step // 10)

    x, y = data()
    for callback, remedy in ((ModelCheckpoint(tmp_path / "ck-{epoch}.safetensors"), "save_weights_only=True"),
                             (BackupAndRestore(tmp_path / "backup"), "a backup needs")):
        model = classifier()
        before = model.get_weights()
        with pytest.raises(ValueError, match=rf"{type(callback).__name__}\(.*saves the model and its optimizer.*"
                                             rf"Received: Halving, which has none.*Nothing was trained.*{remedy}"):
            train(model, x, y, optimizer=Adam(Halving()), callbacks=[callback])
        assert model.optimizer.iterations == 0 and list(tmp_path.iterdir()) == []
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)
    train(classifier(), x, y, optimizer=Adam(Halving()), epochs=2,
          callbacks=[ModelCheckpoint(tmp_path / "ck-{epoch}.safetensors", save_weights_only=True)])
    assert sorted(os.listdir(tmp_path)) == ["ck-1.safetensors", "ck-2.safetensors"]


# ------------------------------------------------------------ TensorBoard
def events(folder):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_writes_scalars_and_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    x, y = data()
    model = classifier()
    board = TensorBoard(tmp_path / "logs", histogram_freq=2, update_freq=2)
    history = train(model, x, y, epochs=3, callbacks=[board])
    train_run, validation = events(tmp_path / "logs" / "train"), events(tmp_path / "logs" / "validation")
    assert set(train_run.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "batch_loss",
                                                "batch_accuracy"}
    loss = train_run.Scalars("epoch_loss")
    assert [e.step for e in loss] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in loss], history.history["loss"], rtol=1e-6)
    assert [e.value for e in validation.Scalars("epoch_loss")] == pytest.approx(history.history["val_loss"], rel=1e-6)
    assert [e.step for e in train_run.Scalars("batch_loss")] == [2, 4, 6, 8, 10, 12, 14]  # every 2 of 15 steps
    names, dense, norm = train_run.Tags()["histograms"], model.layers[0].name, model.layers[1].name
    assert f"{dense}/weight" in names and f"{norm}/running_var" in names
    kernel = train_run.Histograms(f"{dense}/weight")
    assert [e.step for e in kernel] == [0, 2]
    assert kernel[-1].histogram_value.num == 8 * 6
    assert kernel[-1].histogram_value.max == pytest.approx(model.layers[0].weights.max(), rel=1e-6)


def test_tensorboard_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard.compat", None)
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto", None)
    with pytest.raises(ImportError, match=r"intricate-py\[tensorboard\]"):
        TensorBoard("logs")


# ------------------------------------------------------------ weights from a state_dict object
def test_load_weights_and_set_weights_take_a_state_dict_object():
    torch = pytest.importorskip("torch")
    sequential = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())
    sequential.train()
    sequential(torch.randn(5, 2, 6, 7) * 2 + 1)  # running statistics, and num_batches_tracked = 1
    sequential.eval()
    state = sequential.state_dict()
    assert "1.num_batches_tracked" in state
    x = np.random.default_rng(3).normal(size=(4, 2, 6, 7)).astype(np.float32)
    with torch.no_grad():
        want = sequential(torch.tensor(x)).numpy()
    for load in ("load_weights", "set_weights"):
        model = Model([Conv2D(3, 3), BatchNormalization(epsilon=1e-5), ReLU()], input_size=(2, 6, 7), device="cpu")
        getattr(model, load)(state)
        np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)
    as_numpy = {k: v.numpy() for k, v in state.items()}
    model.set_weights(as_numpy)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)
    before = model.get_weights()
    with pytest.raises(FormatError, match="expects running_mean of shape"):
        model.load_weights({**state, "1.running_mean": torch.zeros(4)})
    with pytest.raises(FormatError, match="not numbers"):
        model.set_weights({**as_numpy, "0.bias": np.array(["a", "b", "c"])})
    for a, b in zip(before, model.get_weights()):  # all or nothing
        np.testing.assert_array_equal(a, b)


def test_kerass_older_batch_hook_names_work():
    class Old(Callback):
        seen = []

        def on_batch_end(self, batch, logs=None):
            self.seen.append((batch, sorted(logs)))

    history = xor_model().fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=1, batch_size=2,
                              callbacks=[Old()])
    assert Old.seen == [(0, sorted(history.history)), (1, sorted(history.history))]


def test_the_callback_that_set_stop_training_is_the_one_named():
    """A stop set in on_test_end (the validation) is not blamed on a
    callback whose on_epoch_end ran after it."""
    class Quiet(Callback):
        def __repr__(self):
            return "Quiet()"

    class StopsInValidation(Callback):
        def on_test_end(self, logs=None):
            self.model.stop_training = True

    model = xor_model(seed=0)
    history = model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=3, batch_size=4,
                        validation_data=(XOR_X, XOR_Y), callbacks=[Quiet(), StopsInValidation()])
    assert history.epoch == [0]
    assert history.stop_reason == "model.stop_training = True stopped training at epoch 1"


def test_logs_tested_for_truth_are_not_read_back(gpu):
    """`logs = logs or {}`, a Keras habit, costs no readback: batch logs are never empty."""
    class Habit(Callback):
        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}

    model = xor_model("gpu", seed=0)
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, batch_size=1)
    before = model.device.stats()
    model.fit(XOR_X, XOR_Y, epochs=3, batch_size=1, callbacks=[Habit()])
    assert model.device.stats()["readbacks"] - before["readbacks"] <= 3  # the epochs' ends, not 12 steps
