"""Learning rates checked where they are computed: a rate that overflows
stops training by the divergence rule on every device, a schedule that
returns something other than a rate gets a ValueError naming it and the
step; custom schedules in files."""

import math
import re

import numpy as np
import pytest

from intricate_py import FormatError, Model
from intricate_py.optimizers import SGD, Adagrad, Adam, AdamW
from intricate_py.schedules import SCHEDULES, CosineDecay, ExponentialDecay, LearningRateSchedule
from xor_data import XOR_X, XOR_Y, xor_model, weights


# ------------------------------------------------------------ overflowing rates
def test_exponential_decay_overflows_to_inf():
    schedule = ExponentialDecay(0.01, 1, 1e10)
    assert schedule(1) == pytest.approx(1e8)
    assert schedule(40) == math.inf and schedule(10**6) == math.inf
    assert ExponentialDecay(0.01, 1, 1e-10)(10**6) == 0.0


@pytest.mark.parametrize("optimizer, blamed", [
    (lambda: SGD(ExponentialDecay(0.01, 1, 1e10)),  # the OverflowError
     r"learning rate \((inf|[\d.e+]+), from ExponentialDecay\(initial_learning_rate=0.01, .* at step \d+\)"),
    (lambda: SGD(1e39), r"learning rate \(1e\+39\)"),  # "float too large to pack" on the GPU
    (lambda: Adam(1e39), r"learning rate \(1e\+39\)"),
    (lambda: Adagrad(1e39), r"learning rate \(1e\+39\)"),
    (lambda: SGD(0.1, weight_decay=1e39), r"weight decay \(1e\+39\)"),
    (lambda: AdamW(0.1, weight_decay=1e39), r"weight decay \(1e\+39\)"),
    (lambda: Adam(1e38, beta1=0.999), r"learning rate \(1e\+38\)"),  # its step size 1e41 overflows float32
])
def test_rates_too_large_stop_by_the_divergence_rule(device, optimizer, blamed):
    """No exception: training stops with the warning, and the weights kept
    are finite (the ones of the last epoch that left finite weights; the
    epoch that broke them is the History's last)."""
    model = xor_model(device)
    kept = []
    for callbacks in (None, [lambda epoch, logs: kept.append(weights(model))]):  # epochs read in runs, or one by one
        model = xor_model(device)
        with pytest.warns(RuntimeWarning, match=r"became (nan|inf|-inf|NaN or inf) in epoch (\d+), so training "
                                                r"stopped and the weights from .* were kept.*" + blamed) as caught:
            history = model.fit(XOR_X, XOR_Y, loss="mse", optimizer=optimizer(), epochs=50, batch_size=2,
                                callbacks=callbacks)
        diverged = int(re.search(r"in epoch (\d+)", str(caught[0].message)).group(1))
        assert history.epoch == list(range(diverged)) and len(history.epoch) < 50
        assert all(np.isfinite(w).all() for w in weights(model))
        if callbacks and diverged > 1:  # the weights of the end of the epoch before, or the one before that
            assert any(all(np.array_equal(a, b) for a, b in zip(weights(model), k)) for k in kept[-2:])


# --------------------------------------------------------------- bad schedules
class Scripted(LearningRateSchedule):
    """0.1 until ``at``, then ``value``."""

    def __init__(self, at, value):
        self.at, self.value = at, value

    def __call__(self, step):
        return 0.1 if step < self.at else self.value


@pytest.mark.parametrize("value, shown", [
    (-0.1, "-0.1"), (None, "None"), ("0.1", "'0.1'"), (np.array([0.1]), r"array\(\[0.1\]\)"),
    (np.array(0.1), r"array\(0.1\)"), (float("nan"), "nan"), (True, "True"), (1j, "1j"),
])
def test_a_schedule_returning_no_rate_is_named_with_its_step(device, value, shown):
    model = xor_model(device)
    model.compile(optimizer=SGD(Scripted(0, 0.1)), loss="mse")
    model.fit(XOR_X, XOR_Y, epochs=1, batch_size=2)
    kept = weights(model)
    model.optimizer.learning_rate = Scripted(5, value)
    with pytest.raises(ValueError, match=rf"expected the learning-rate schedule Scripted\(\) to return a "
                                         rf"non-negative number at step 5. Received: {shown}"):
        model.fit(XOR_X, XOR_Y, epochs=4, batch_size=2, callbacks=[lambda epoch, logs: kept.__setitem__(
            slice(None), weights(model))])
    assert model.optimizer.iterations == 4  # back to the end of the last epoch read
    for got, want in zip(weights(model), kept):
        np.testing.assert_array_equal(got, want)


def test_numpy_rates_and_zero_are_rates():
    optimizer = SGD(Scripted(1, np.float32(0.0)))
    assert optimizer.current_learning_rate() == 0.1
    optimizer.iterations = 1
    assert optimizer.current_learning_rate() == 0.0 and type(optimizer.current_learning_rate()) is float


# ------------------------------------------------------------ schedules in files
class HalfEvery(LearningRateSchedule):
    """A custom schedule that a file can rebuild: it has get_config."""

    def __init__(self, rate, steps):
        self.rate, self.steps = rate, steps

    def __call__(self, step):
        return self.rate * 0.5 ** (step // self.steps)

    def get_config(self):
        return {"rate": self.rate, "steps": self.steps}


def test_a_custom_schedule_with_get_config_is_saved_and_resumes(tmp_path):
    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss="mse", optimizer=Adam(HalfEvery(0.1, 3)), epochs=2, batch_size=2)
    model.save(tmp_path / "m.safetensors", include_optimizer=True)
    resumed = Model.load(tmp_path / "m.safetensors", device="cpu")
    assert isinstance(resumed.optimizer.learning_rate, HalfEvery)
    assert repr(resumed.optimizer) == "Adam(learning_rate=HalfEvery(rate=0.1, steps=3), beta1=0.9, beta2=0.999, epsilon=1e-08)"
    for m in (model, resumed):
        m.fit(XOR_X, XOR_Y, epochs=3, batch_size=2)
    np.testing.assert_array_equal(model.predict(XOR_X), resumed.predict(XOR_X))


def test_a_custom_schedule_without_get_config_is_refused_at_save(tmp_path):
    class NoConfig(LearningRateSchedule):
        def __call__(self, step):
            return 0.1

    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD(NoConfig()), epochs=1)
    assert repr(model.optimizer) == "SGD(learning_rate=NoConfig(), momentum=0.0, nesterov=False)"
    with pytest.raises(ValueError, match=r"schedule with get_config\(\).*Received: NoConfig, which has none.*"
                                         r"include_optimizer=False"):
        model.save(tmp_path / "m.safetensors", include_optimizer=True)
    assert not (tmp_path / "m.safetensors").exists()
    model.save(tmp_path / "m.safetensors")  # the model without its training state


def test_a_custom_schedule_whose_config_does_not_rebuild_it_is_refused_at_save(tmp_path):
    class WrongConfig(HalfEvery):
        def get_config(self):
            return {"rate": self.rate}

    class NotPlain(HalfEvery):
        def get_config(self):
            return {"rate": self.rate, "steps": object()}

    for schedule, match in ((WrongConfig(0.1, 2), r"WrongConfig\(\*\*\{'rate': 0.1\}\) does not rebuild it"),
                            (NotPlain(0.1, 2), "plain values")):
        model = xor_model()
        model.fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD(schedule), epochs=1)
        with pytest.raises(ValueError, match=match):
            model.save(tmp_path / "m.safetensors", include_optimizer=True)
        assert not (tmp_path / "m.safetensors").exists()


def test_a_schedule_unknown_when_loading_says_to_import_it(tmp_path, monkeypatch):
    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss="mse", optimizer=SGD(HalfEvery(0.1, 3)), epochs=1)
    model.save(tmp_path / "m.safetensors", include_optimizer=True)
    monkeypatch.delitem(SCHEDULES, "HalfEvery")
    with pytest.raises(FormatError, match=r"unknown learning-rate schedule 'HalfEvery'.*CosineDecay.*"
                                          r"a custom schedule must be imported before loading"):
        Model.load(tmp_path / "m.safetensors", device="cpu")


def test_built_in_schedules_are_registered():
    assert {"CosineDecay", "ExponentialDecay", "PiecewiseConstantDecay"} <= set(SCHEDULES)
    assert SCHEDULES["CosineDecay"] is CosineDecay
