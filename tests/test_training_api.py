"""The Keras habits: learning-rate schedules, compile, validation_split,
model(x), summary at a prompt, fit's inputs."""

import math

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.layers import Dense, ReLU, Softmax
from intricate_py.losses import CategoricalCrossEntropy, MeanAbsolute, MeanSquared
from intricate_py.optimizers import SGD, Adam, AdamW
from intricate_py.schedules import CosineDecay, ExponentialDecay, PiecewiseConstantDecay
from xor_data import XOR_X, XOR_Y, xor_model


# ------------------------------------------------------------------ schedules
def test_cosine_decay_by_hand():
    s = CosineDecay(1.0, decay_steps=10, alpha=0.1)
    assert s(0) == 1.0
    assert s(5) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(π/2) = 0
    assert s(10) == pytest.approx(0.1) and s(1000) == pytest.approx(0.1)
    warm = CosineDecay(0.0, decay_steps=10, warmup_target=2.0, warmup_steps=4)
    assert [warm(i) for i in range(5)] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert warm(9) == pytest.approx(1.0)  # 5 of 10 decay steps done
    with pytest.raises(ValueError, match="expected warmup_target with warmup_steps"):
        CosineDecay(0.1, 10, warmup_steps=5)
    with pytest.raises(TypeError):  # Keras's fourth argument is name: the warmup is keyword-only
        CosineDecay(0.1, 100, 0.0, 10)


def test_exponential_and_piecewise_by_hand():
    e = ExponentialDecay(0.8, decay_steps=4, decay_rate=0.5)
    assert e(0) == 0.8 and e(4) == pytest.approx(0.4) and e(2) == pytest.approx(0.8 / math.sqrt(2))
    stairs = ExponentialDecay(0.8, decay_steps=4, decay_rate=0.5, staircase=True)
    assert [stairs(i) for i in (3, 4, 7, 8)] == pytest.approx([0.8, 0.4, 0.4, 0.2])
    p = PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1])
    assert [p(i) for i in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="one more value than boundaries"):
        PiecewiseConstantDecay([2, 5], [1.0, 0.5])
    with pytest.raises(ValueError, match="strictly increasing"):
        PiecewiseConstantDecay([5, 2], [1.0, 0.5, 0.1])


def test_keras_formulas_when_keras_is_there():
    keras = pytest.importorskip("keras")
    k = keras.optimizers.schedules
    pairs = [
        (CosineDecay(0.3, 7, alpha=0.2, warmup_target=0.9, warmup_steps=3),
         k.CosineDecay(0.3, 7, alpha=0.2, warmup_target=0.9, warmup_steps=3)),
        (CosineDecay(0.3, 7, alpha=0.2), k.CosineDecay(0.3, 7, alpha=0.2)),
        (ExponentialDecay(0.3, 4, 0.7, staircase=True), k.ExponentialDecay(0.3, 4, 0.7, staircase=True)),
        (ExponentialDecay(0.3, 4, 0.7), k.ExponentialDecay(0.3, 4, 0.7)),
        (PiecewiseConstantDecay([2, 5], [0.3, 0.2, 0.1]), k.PiecewiseConstantDecay([2, 5], [0.3, 0.2, 0.1])),
    ]
    for ours, theirs in pairs:
        assert [ours(i) for i in range(12)] == pytest.approx([float(theirs(i)) for i in range(12)], rel=1e-6)


def test_a_schedule_drives_each_step(device):
    """SGD with a schedule equals SGD whose rate is set by hand before each
    step, and on the GPU costs no buffer and no readback a step."""
    schedule = PiecewiseConstantDecay([1, 3], [0.5, 0.1, 0.01])
    scheduled = xor_model(device)
    scheduled.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(schedule), epochs=1, batch_size=4)
    costs = []
    for epochs in (1, 5):  # what a warm fit costs does not grow with its steps
        before = scheduled.device.stats()
        scheduled.fit(XOR_X, XOR_Y, epochs=epochs, batch_size=4)
        after = scheduled.device.stats()
        costs.append({k: after[k] - before[k] for k in ("buffers_created", "readbacks")})
    assert costs[0] == costs[1]
    scheduled = xor_model(device)
    scheduled.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(schedule), epochs=6, batch_size=4)
    by_hand = xor_model(device)
    optimizer = SGD(0.5)
    for step in range(6):
        optimizer.learning_rate = schedule(step)
        by_hand.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=optimizer, epochs=1, batch_size=4)
    for a, b in zip(scheduled.parameters, by_hand.parameters):
        np.testing.assert_array_equal(scheduled.device.to_numpy(a.value), by_hand.device.to_numpy(b.value))
    assert scheduled.optimizer.current_learning_rate() == 0.01


def test_a_schedule_survives_save_and_load(tmp_path):
    model = xor_model()
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=Adam(CosineDecay(0.1, 50)), epochs=5, batch_size=4)
    model.save(tmp_path / "m.safetensors", include_optimizer=True)
    resumed = Model.load(tmp_path / "m.safetensors", device="cpu")
    assert isinstance(resumed.optimizer.learning_rate, CosineDecay)
    assert resumed.optimizer.current_learning_rate() == model.optimizer.current_learning_rate()
    for m in (model, resumed):
        m.fit(XOR_X, XOR_Y, epochs=3, batch_size=4)
    np.testing.assert_array_equal(model.predict(XOR_X), resumed.predict(XOR_X))


# -------------------------------------------------------------------- compile
def test_compile_takes_names_and_objects(device):
    model = xor_model(device)
    model.compile(loss="mse", optimizer="sgd")
    assert isinstance(model.loss, MeanSquared) and isinstance(model.optimizer, SGD)
    history = model.fit(XOR_X, XOR_Y, epochs=2, batch_size=4)
    assert len(history.epoch) == 2
    assert set(model.evaluate(XOR_X, XOR_Y)) == {"loss"}  # a regression: no accuracy unless asked for
    model.compile(optimizer=AdamW(), loss=MeanAbsolute(), metrics=["accuracy"])
    assert set(model.evaluate(XOR_X, XOR_Y)) == {"loss", "accuracy"}
    assert isinstance(model.optimizer, AdamW) and isinstance(model.loss, MeanAbsolute)
    for name, kind in [("adam", Adam), ("adamw", AdamW), ("Adagrad", None)]:
        model.compile(optimizer=name)
        assert kind is None or type(model.optimizer) is kind
    model.compile(loss="sparse_categorical_crossentropy")
    assert isinstance(model.loss, CategoricalCrossEntropy)


def test_compile_rejects_unknown_names():
    model = xor_model()
    with pytest.raises(ValueError, match=r"one of \['adagrad', 'adam', 'adamw', 'sgd'\]. Received: optimizer='rmsprop'"):
        model.compile(optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"'binary_crossentropy', 'categorical_crossentropy'.*Received: loss='hinge'"):
        model.compile(loss="hinge")
    with pytest.raises(ValueError, match=r"one of \[.*'f1_score'.*Received: 'f1'"):
        model.compile(metrics=["f1"])


# ------------------------------------------------------------ validation_split
def test_validation_split_takes_the_end_before_shuffling():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.integers(0, 3, 50)

    def model():
        return Model([Dense(8), ReLU(), Dense(3), Softmax()], input_size=4, device="cpu", seed=1)

    split = model().fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=3,
                        validation_split=0.2)
    explicit = model().fit(x[:40], y[:40], loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=3,
                           validation_data=(x[40:], y[40:]))
    assert split.history == explicit.history


def test_validation_split_errors():
    model = xor_model()
    with pytest.raises(ValueError, match="validation_data or validation_split, not both"):
        model.fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", validation_split=0.5,
                  validation_data=(XOR_X, XOR_Y))
    with pytest.raises(ValueError, match="enough samples to split off a validation set. Received: 4 samples"):
        model.fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", validation_split=0.8)  # none left to train on
    with pytest.raises(ValueError, match=r"number in \[0, 1\). Received: validation_split=1"):
        model.fit(XOR_X, XOR_Y, loss="mse", optimizer="sgd", validation_split=1)


# ------------------------------------------------------- model(x) and summary
def test_calling_a_model_predicts():
    model = xor_model()
    np.testing.assert_array_equal(model(XOR_X), model.predict(XOR_X))


def test_summary_prints_the_table_as_keras_does(capsys):
    model = xor_model()
    assert model.summary() is None  # a script or a prompt shows the printed table, nothing else
    printed = capsys.readouterr().out
    assert printed == str(model) + "\n" and "Dense(2→3)" in printed and printed.count("\n") > 3
    lines = []
    model.summary(print_fn=lines.append)  # Keras's print_fn: called with each line
    assert lines == str(model).splitlines() and capsys.readouterr().out == ""


def test_fit_reads_pandas():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(XOR_X, columns=["a", "b"])
    labels = pd.Series(XOR_Y[:, 0])
    history = xor_model().fit(frame, labels, loss="mse", optimizer="sgd", epochs=1, batch_size=4)
    assert len(history.epoch) == 1
