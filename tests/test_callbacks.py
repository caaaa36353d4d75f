"""Callbacks: the Callback base class and its hooks, plain functions, errors."""

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.callbacks import Callback
from intricate_py.layers import Dense, TanH
from intricate_py.losses import MeanSquared
from intricate_py.optimizers import SGD

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def xor_model(device="cpu"):
    return Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=device, seed=0)


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
                          batch_size=4, callbacks=[recorder])
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
