"""Non-trainable state, a kind of tensor a layer declares (as BatchNorm's
moving statistics will be): packed apart from the parameters, never given
to the optimizer (nor its weight decay), saved and loaded, and put back by
EarlyStopping and by fit's rollback after a divergence."""

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.callbacks import Callback, EarlyStopping
from intricate_py.layers import Dense, Softmax
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import SGD, AdamW


class CountingDense(Dense):
    """A Dense that sums, in its state ``seen``, the columns of every batch
    it trains on."""

    non_trainable = ("seen",)
    file_tensors = ("weight", "bias", "seen")

    def create_parameters(self, rng):
        return {**super().create_parameters(rng), "seen": np.zeros(self.input_shape[0])}

    def call(self, ctx, x, activation=None):
        if ctx.training:
            column_sums = ctx.buffer("sums", self.input_shape[0], ())
            self.backend.sum_rows(x, column_sums)
            seen = self.params["seen"].value
            self.backend.add(seen, column_sums, seen)
        return super().call(ctx, x, activation)

    @property
    def seen(self) -> np.ndarray:
        return self._read("seen")

    def to_file(self, values):
        return {**super().to_file({k: v for k, v in values.items() if k != "seen"}), "seen": values["seen"]} \
            if values else {}

    def from_file(self, tensors):
        if not tensors:
            return None, {}
        shape, values = super().from_file({k: v for k, v in tensors.items() if k != "seen"})
        return shape, {**values, "seen": tensors["seen"]}


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, 3, n)


def counting(device, seed=0):
    return Model([CountingDense(3, name="counting"), Softmax()], input_size=5, device=device, seed=seed)


def test_state_is_packed_apart_and_no_optimizer_touches_it(device):
    model = counting(device)
    layer = model.layers[0]
    assert [p.name for p in model.parameters] == ["W", "b"] and not layer.params["seen"].trainable
    assert layer.params["seen"].grad is None and model.store.state_flat is not None
    x, y = data()
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=AdamW(0.1, weight_decay=0.5), epochs=3,
              batch_size=16, shuffle=False)
    # only the layer's own update moved it: three epochs of column sums, no decay, no Adam step
    np.testing.assert_allclose(layer.seen, 3 * x.sum(axis=0), rtol=1e-5)
    assert sum(a.shape[0] for a in model.optimizer.state_arrays()) == 2 * model.store.flat.value.shape[0]
    model.predict(x)
    model.evaluate(x, y)
    np.testing.assert_allclose(layer.seen, 3 * x.sum(axis=0), rtol=1e-5)  # inference keeps it


def test_state_is_saved_and_loaded(tmp_path):
    from intricate_py import register_layer
    from intricate_py.layers.registry import unregister_layer

    model = counting("cpu")
    x, y = data()
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=1)
    register_layer(CountingDense, package="tests")  # files name registered custom layers only
    try:
        model.save(tmp_path / "m.safetensors", include_optimizer=True)
        loaded = Model.load(tmp_path / "m.safetensors", device="cpu")
    finally:
        unregister_layer(CountingDense)
    np.testing.assert_array_equal(loaded.layers[0].seen, model.layers[0].seen)
    assert [w.shape for w in model.get_weights()] == [(5, 3), (3,), (5,)]  # W as layer.weights has it


def test_early_stopping_puts_back_the_state_of_the_best_epoch(device):
    model = counting(device)
    x, y = data()
    seen_at = []

    class Watch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen_at.append(self.model.layers[0].seen)

    stopper = EarlyStopping(monitor="loss", patience=100, restore_best_weights=True, mode="max")
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=4, batch_size=16,
              callbacks=[stopper, Watch()])
    assert stopper.best_epoch == 0  # the loss falls: its largest value is the first
    np.testing.assert_array_equal(model.layers[0].seen, seen_at[0])


def test_a_divergence_rolls_the_state_back_with_the_weights(device):
    model = counting(device)
    x, y = data()
    seen_at = []

    class Poison(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen_at.append(self.model.layers[0].seen)
            if epoch == 1:
                flat = self.model.store.flat.value
                self.model.device.write(flat, np.full(flat.shape, np.nan, np.float32))

    with pytest.warns(RuntimeWarning, match="end of epoch 1 were kept"):
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=5, batch_size=16,
                  callbacks=[Poison()])
    np.testing.assert_array_equal(model.layers[0].seen, seen_at[0])
