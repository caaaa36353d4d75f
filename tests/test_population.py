"""Populations: many networks trained at once, each member what its model
trained alone would be (within float32 rounding on the CPU, bit for bit on
the GPU), per-member hyper-parameters, freezing and early stopping per
member, members as plain models, one file for all."""

import numpy as np
import pytest

from intricate_py import Input, Model, Population
from intricate_py.backends.population import PopulationBackend
from intricate_py.callbacks import Callback, EarlyStopping, ModelCheckpoint
from intricate_py.layers import (Add, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Embedding, Flatten,
                                 LayerNormalization, MaxPool2D, MultiHeadAttention, ReLU, Sigmoid, TanH)
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD, Adam, AdamW
from intricate_py.saving import FormatError

from xor_data import XOR_X, XOR_Y


def mlp(device="cpu"):
    return lambda seed=None: Model([Dense(5), TanH(), Dense(3), Sigmoid(), Dense(2)], input_size=4, device=device,
                                   seed=seed)


def cnn(device="cpu"):
    return lambda seed=None: Model([Conv2D(3, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(4)], input_size=(2, 7, 7),
                                   device=device, seed=seed)


def data(rng, shape, n=24, classes=2):
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return x, y


def alone(build, seed) -> Model:
    """The member's model, to train alone: ``build``'s architecture drawn with ``seed``."""
    return build(seed)


def assert_member(population, i, model, exact):
    for got, want in zip(population[i].get_weights(), model.get_weights()):
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("make", [mlp, cnn], ids=["mlp", "cnn"])
def test_each_member_trains_as_its_model_alone(device, make, rng):
    """Members with their own seeds and learning rates, not shuffled: each
    ends with the weights of its model trained alone (the GPU bit for bit)."""
    build = make(device)
    shape = (4,) if make is mlp else (2, 7, 7)
    x, y = data(rng, shape, classes=2 if make is mlp else 4)
    rates = [0.05, 0.1, 0.2]
    population = Population(build, 3, seed=7)
    history = population.fit(x, y, loss=MeanSquared(), optimizer=Adam(rates), epochs=3, batch_size=10,
                             shuffle=False)
    assert history.history["loss"].shape == (3, 3)
    for i, rate in enumerate(rates):
        model = alone(build, 7 + i)
        h = model.fit(x, y, loss=MeanSquared(), optimizer=Adam(rate), epochs=3, batch_size=10, shuffle=False)
        assert_member(population, i, model, exact=device == "gpu")
        np.testing.assert_allclose(history.history["loss"][:, i], h.history["loss"], rtol=1e-5)


def test_the_first_member_shuffles_as_a_model_with_the_seed(device, rng):
    """Shuffled batches come in the order of a model with the population's
    seed: its first member is that model trained alone."""
    x, y = data(rng, (4,))
    population = Population(mlp(device), 2, seed=11)
    population.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1, momentum=[0.9, 0.5]), epochs=4, batch_size=8)
    model = alone(mlp(device), 11)
    model.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1, momentum=0.9), epochs=4, batch_size=8)
    assert_member(population, 0, model, exact=device == "gpu")


def test_members_start_from_the_weights_of_their_seeds():
    population = Population(mlp(), 4, seed=5)
    for i in range(4):
        for got, want in zip(population[i].get_weights(), alone(mlp(), 5 + i).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(population[0].get_weights()[0], population[1].get_weights()[0])


def test_an_unbuilt_model_is_built_by_the_data(rng):
    x, y = data(rng, (4,))
    population = Population(lambda: Model([Dense(3), TanH(), Dense(2)], device="cpu"), 2, seed=1)
    population.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, batch_size=6, shuffle=False)
    model = Model([Dense(3), TanH(), Dense(2)], input_size=4, device="cpu", seed=2)
    model.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, batch_size=6, shuffle=False)
    assert_member(population, 1, model, exact=False)


def test_numpy_runs_one_batched_operation_for_every_member(rng, monkeypatch):
    """On the CPU a step of a population calls the numpy backend as often
    as a model's step does: the members are one array."""
    x, y = data(rng, (4,))
    calls = {"population": 0, "model": 0}
    population = Population(mlp(), 16, seed=0)
    model = mlp()()
    for name, backend in (("population", population.backend.base), ("model", model.device)):
        for op in ("matmul", "loss", "adam_step", "activation", "activation_grad"):
            original = getattr(backend, op)

            def counted(*args, _original=original, _name=name, **kwargs):
                calls[_name] += 1
                return _original(*args, **kwargs)
            monkeypatch.setattr(backend, op, counted)
    population.fit(x, y, loss=MeanSquared(), optimizer=Adam(0.01), epochs=1, batch_size=24)
    model.fit(x, y, loss=MeanSquared(), optimizer=Adam(0.01), epochs=1, batch_size=24)
    assert 0 < calls["population"] <= calls["model"]


# --------------------------------------------------- per-member behaviour
def test_a_diverging_member_is_frozen_at_its_last_good_weights(device):
    """One member's learning rate makes it diverge: it keeps the weights a
    model alone keeps when fit stops on the NaN, the others train on."""
    def build(seed=None):
        return Model([Dense(4), ReLU(), Dense(1)], input_size=2, device=device, seed=seed)
    rates = [0.05, 1e4, 0.1]
    population = Population(build, 3, seed=2)
    history = population.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(rates), epochs=30, batch_size=4)
    losses = history.history["loss"]
    assert np.isfinite(losses[:, [0, 2]]).all()
    bad = np.flatnonzero(~np.isfinite(losses[:, 1]))
    assert len(bad) and bad[0] > 0 and np.isnan(losses[bad[0]:, 1]).all()
    model = alone(build, 3)
    with pytest.warns(RuntimeWarning, match="training stopped"):
        h = model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(1e4), epochs=30, batch_size=4)
    assert len(h.epoch) == bad[0] + 1
    assert_member(population, 1, model, exact=device == "gpu")
    trained = alone(build, 4)
    trained.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=30, batch_size=4)
    assert_member(population, 2, trained, exact=device == "gpu")


def test_early_stopping_stops_each_member_as_alone(rng):
    x, y = data(rng, (4,), n=40)
    vx, vy = data(rng, (4,), n=16)
    rates = [0.3, 0.01, 0.1, 0.5]
    population = Population(mlp(), 4, seed=3)
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    history = population.fit(x, y, loss=MeanSquared(), optimizer=Adam(rates), epochs=40, batch_size=8,
                             validation_data=(vx, vy), callbacks=[stop], shuffle=False)
    lengths = []
    for i, rate in enumerate(rates):
        model = alone(mlp(), 3 + i)
        h = model.fit(x, y, loss=MeanSquared(), optimizer=Adam(rate), epochs=40, batch_size=8,
                      validation_data=(vx, vy), callbacks=[EarlyStopping(patience=2, restore_best_weights=True)],
                      shuffle=False)
        lengths.append(len(h.epoch))
        assert_member(population, i, model, exact=False)
        trained = history.history["val_loss"][: len(h.epoch), i]
        np.testing.assert_allclose(trained, h.history["val_loss"], rtol=1e-5)
        assert np.isnan(history.history["val_loss"][len(h.epoch):, i]).all()
    assert len(set(lengths)) > 1, "the members should stop at different epochs"
    assert history.history["loss"].shape[0] == max(lengths)


def test_callbacks_see_one_value_per_member(rng):
    x, y = data(rng, (4,))
    seen = []

    class Watch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, logs["loss"].shape))
            if epoch == 2:
                self.model.stop_training = True
    population = Population(mlp(), 3)
    history = population.fit(x, y, loss=MeanSquared(), optimizer="adam", epochs=10, callbacks=[Watch()])
    assert seen == [(0, (3,)), (1, (3,)), (2, (3,))]
    assert history.history["loss"].shape == (3, 3)
    with pytest.raises(ValueError, match="acts on a single Model"):
        population.fit(x, y, epochs=1, callbacks=[ModelCheckpoint("never.safetensors")])


# ------------------------------------------------------ members and files
def test_members_predict_evaluate_and_best(device, rng, tmp_path):
    x, y = data(rng, (4,))
    vx, vy = data(rng, (4,), n=10)
    population = Population(mlp(device), 5, seed=1)
    history = population.fit(x, y, loss=CategoricalCrossEntropy(from_logits=True),
                             optimizer=Adam(np.geomspace(1e-3, 1e-1, 5)), epochs=5, batch_size=8,
                             validation_data=(vx, vy))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    predictions = population.predict(vx)
    scores = population.evaluate(vx, vy)
    assert predictions.shape == (5, 10, 2) and scores["loss"].shape == (5,)
    for i in range(5):
        member = population[i]
        np.testing.assert_allclose(predictions[i], member.predict(vx), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(scores["loss"][i], member.evaluate(vx, vy)["loss"], rtol=1e-5)
    np.testing.assert_allclose(scores["loss"], history.history["val_loss"][-1], rtol=1e-5)
    best = int(np.argmin(history.history["val_loss"][-1]))
    assert population.best_index() == best
    np.testing.assert_array_equal(population.best().get_weights()[0], population[best].get_weights()[0])
    # a member shares nothing with the population
    member = population[0]
    member.fit(x, y, loss=CategoricalCrossEntropy(from_logits=True), optimizer="adam", epochs=1)
    assert not np.array_equal(member.get_weights()[0], population[0].get_weights()[0])


def test_one_file_holds_the_population(tmp_path, rng):
    x, y = data(rng, (4,))
    population = Population(mlp(), 3, seed=4)
    population.fit(x, y, loss=MeanSquared(), optimizer="adam", epochs=2)
    path = tmp_path / "population.safetensors"
    population.save(path)
    from safetensors.numpy import load_file
    tensors = load_file(path)
    assert tensors["0.W"].shape == (3, 4, 5)
    loaded = Population.load(path, mlp())
    assert loaded.size == 3 and loaded.seed == 4
    np.testing.assert_array_equal(loaded.predict(x), population.predict(x))
    with pytest.raises(FormatError, match="expected the tensors"):
        Population.load(path, lambda: Model([Dense(6), Dense(2)], input_size=4, device="cpu"))
    # a population with a NaN weight is refused, and the previous file stays
    layer = population.model.plan.layers[0]
    population.backend.write(layer.params["W"].value, np.full((4, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="finite"):
        population.save(path)
    np.testing.assert_array_equal(load_file(path)["0.W"], tensors["0.W"])


# ------------------------------------------------------------------ errors
def test_clear_errors():
    with pytest.raises(ValueError, match="expected build"):
        Population(42, 3)
    with pytest.raises(ValueError, match="return a Model"):
        Population(lambda: "model", 3)
    with pytest.raises(ValueError, match="positive integer"):
        Population(mlp(), 0)
    population = Population(mlp(), 3)
    with pytest.raises(ValueError, match="one value per member of a Population of 3"):
        population.fit(np.zeros((4, 4)), np.zeros((4, 2)), loss="mse", optimizer=Adam([0.1, 0.2]))
    with pytest.raises(ValueError, match="Population"):
        mlp()().fit(np.zeros((4, 4)), np.zeros((4, 2)), loss="mse", optimizer=Adam([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"learning_rate\[1\]"):
        Adam([0.1, -1.0])
    with pytest.raises(IndexError, match="member index"):
        population[3]
    with pytest.raises(ValueError, match="expected a fit"):
        population.best()
    assert isinstance(population.backend, PopulationBackend) and "3 ×" in repr(population)


def test_each_member_may_shuffle_as_its_model_alone(device, rng):
    """shuffle="members": each member takes the batches in the order of a
    model with its seed, and so ends with that model's weights, shuffled
    batches, integer labels and all."""
    x = rng.normal(size=(30, 4)).astype(np.float32)
    labels = rng.integers(0, 2, 30)
    population = Population(mlp(device), 3, seed=20)
    loss = CategoricalCrossEntropy(from_logits=True)
    history = population.fit(x, labels, loss=loss, optimizer=Adam([0.01, 0.02, 0.03]), epochs=3, batch_size=8,
                             shuffle="members")
    for i in range(3):
        model = alone(mlp(device), 20 + i)
        h = model.fit(x, labels, loss=loss, optimizer=Adam(0.01 * (i + 1)), epochs=3, batch_size=8)
        assert_member(population, i, model, exact=device == "gpu")
        np.testing.assert_allclose(history.history["loss"][:, i], h.history["loss"], rtol=1e-5)
    with pytest.raises(ValueError, match="shuffle True, False or 'members'"):
        population.fit(x, labels, shuffle="each")


def test_schedules_and_every_scalar_of_an_optimizer_may_differ_per_member(device, rng):
    from intricate_py.schedules import CosineDecay

    x, y = data(rng, (4,))
    starts, targets, momenta, decays = [0.01, 0.05], [0.1, 0.2], [0.5, 0.9], [0.0, 1e-3]
    optimizer = SGD(CosineDecay(starts, 20, warmup_steps=3, warmup_target=targets), momentum=momenta,
                    weight_decay=decays)
    population = Population(mlp(device), 2, seed=30)
    population.fit(x, y, loss=MeanSquared(), optimizer=optimizer, epochs=3, batch_size=8, shuffle=False)
    for i in range(2):
        model = alone(mlp(device), 30 + i)
        model.fit(x, y, loss=MeanSquared(), shuffle=False, epochs=3, batch_size=8,
                  optimizer=SGD(CosineDecay(starts[i], 20, warmup_steps=3, warmup_target=targets[i]),
                                momentum=momenta[i], weight_decay=decays[i]))
        assert_member(population, i, model, exact=device == "gpu")


def residual(device):
    def build(seed=None):
        x = Input((6,))
        h = ReLU()(BatchNormalization()(Dense(8)(x)))
        h = LayerNormalization()(Add()([h, Dense(8)(h)]))
        return Model(inputs=x, outputs=Dense(3)(h), device=device, seed=seed)
    return build


def attention(device):
    def build(seed=None):
        ids = Input((5,))
        e = Embedding(11, 8)(ids)
        return Model(inputs=ids, outputs=Dense(11)(MultiHeadAttention(2, 4)(e, e, use_causal_mask=True)),
                     device=device, seed=seed)
    return build


def normalized_cnn(device):
    return lambda seed=None: Model([Conv2D(4, 3, padding="same"), BatchNormalization(), ReLU(), AveragePooling2D(2),
                                    Flatten(), Dense(3)], input_size=(1, 6, 6), device=device, seed=seed)


def dropped(device):
    return lambda seed=None: Model([Dense(8), Dropout(0.3), Dense(3)], input_size=6, device=device, seed=seed)


@pytest.mark.parametrize("make", [residual, attention, normalized_cnn, dropped],
                         ids=["residual graph", "attention", "batch-normalized cnn", "dropout"])
def test_every_kind_of_layer_trains_per_member_as_alone(device, make, rng):
    """Graphs, normalization (its moving statistics per member), sequences
    and attention, and Dropout (each member its own masks, drawn as its
    model draws them): each member, shuffled its own way, is its model alone."""
    if make is attention:
        x, y, loss = rng.integers(0, 11, (20, 5)), rng.integers(0, 11, (20, 5)), CategoricalCrossEntropy(True)
    else:
        shape = (1, 6, 6) if make is normalized_cnn else (6,)
        x, y, loss = rng.normal(size=(20, *shape)).astype(np.float32), rng.normal(size=(20, 3)), MeanSquared()
    population = Population(make(device), 3, seed=5)
    population.fit(x, y, loss=loss, optimizer=Adam([0.01, 0.02, 0.03]), epochs=2, batch_size=8, shuffle="members")
    for i in (0, 2):
        model = alone(make(device), 5 + i)
        model.fit(x, y, loss=loss, optimizer=Adam(0.01 * (i + 1)), epochs=2, batch_size=8)
        assert_member(population, i, model, exact=device == "gpu")


@pytest.mark.parametrize("rates", [0.01, [0.01, 0.02, 0.03, 0.04, 0.05]], ids=["one rate", "a rate a member"])
@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_a_gpu_step_of_a_population_takes_a_models_dispatches(gpu, rng, rates, network):
    """On the GPU a population of MLPs or CNNs trains in one dispatch an
    operation: batched products, convolutions' data movement, pooling,
    losses and updates (per-member scalars in a table), element-wise
    operations over every member at once: its steps take a model's
    dispatches (beside one an epoch that checks its weights)."""
    shape = (6,) if network == "mlp" else (2, 8, 8)
    x, labels = rng.normal(size=(64, *shape)).astype(np.float32), rng.integers(0, 3, 64)

    def build(seed=None):
        if network == "mlp":
            layers = [Dense(16), ReLU(), Dense(3, activation="softmax")]
        else:
            layers = [Conv2D(4, 3, padding="same", activation="relu"), MaxPool2D(2), Conv2D(4, 3),
                      AveragePooling2D(2), Flatten(), Dense(3, activation="softmax")]
        return Model(layers, input_size=shape, device="gpu", seed=seed)
    population, model = Population(build, 5), build()
    counts = []
    for fit, optimizer in ((population.fit, Adam(rates)), (model.fit, Adam(0.01))):
        fit(x, labels, loss=CategoricalCrossEntropy(), optimizer=optimizer, epochs=1, batch_size=16)
        before = gpu.stats()["dispatches"]
        fit(x, labels, epochs=3, batch_size=16)
        counts.append(gpu.stats()["dispatches"] - before)
    assert 0 < counts[0] <= counts[1] + 3


# ------------------------------------------------------- review findings
def test_weights_that_break_while_the_loss_stays_finite_freeze_the_member(device):
    """A member whose weights turn inf while a saturated Sigmoid keeps its
    loss finite is frozen where a model alone goes back to."""
    import warnings

    def build(seed=None):
        return Model([Dense(1), Sigmoid()], input_size=1, device=device, seed=seed)
    x, y = np.array([[10.0], [9.0], [8.0], [10.0]], np.float32), np.array([[0.0], [1.0], [0.0], [1.0]], np.float32)
    population = Population(build, 2)
    history = population.fit(x, y, loss=MeanSquared(), optimizer=AdamW(0.5, weight_decay=[0.0, 1e30]), epochs=6,
                             batch_size=4, shuffle=False)
    model = build(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = model.fit(x, y, loss=MeanSquared(), optimizer=AdamW(0.5, weight_decay=1e30), epochs=6, batch_size=4,
                      shuffle=False)
    # the History as the model's: up to the epoch whose weights broke, with its finite loss; then NaN
    np.testing.assert_allclose(history.history["loss"][: len(h.epoch), 1], h.history["loss"], rtol=1e-6)
    assert np.isnan(history.history["loss"][len(h.epoch):, 1]).all()
    assert np.isfinite(history.history["loss"][:, 0]).all()
    assert_member(population, 1, model, exact=True)


def test_callbacks_see_the_frozen_members_weights_put_back(tmp_path):
    """A callback that saves the population every epoch works while a member diverges."""
    saved = []

    class Save(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.save(tmp_path / "p.safetensors")
            saved.append(epoch)

    def build(seed=None):
        return Model([Dense(4), ReLU(), Dense(1)], input_size=2, device="cpu", seed=seed)
    population = Population(build, 3, seed=2)
    history = population.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD([0.05, 1e4, 0.1]), epochs=10,
                             batch_size=1, callbacks=[Save()])
    assert saved == list(range(10)) and np.isnan(history.history["loss"][-1, 1])


def test_fits_go_on_with_the_shuffling_as_a_models_do(rng):
    x, y = data(rng, (4,))
    for shuffle in (True, "members"):
        population = Population(mlp(), 2, seed=3)
        model = alone(mlp(), 3)
        for _ in range(2):
            population.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=1, batch_size=8, shuffle=shuffle)
            model.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=1, batch_size=8)
        assert_member(population, 0, model, exact=False)


def test_single_model_callbacks_and_misuse_are_refused(rng):
    class Checkpoint(ModelCheckpoint):
        pass
    x, y = data(rng, (4,))
    population = Population(mlp(), 3)
    for callback in (Checkpoint("x.safetensors"), ModelCheckpoint("x.safetensors")):
        with pytest.raises(ValueError, match="acts on a single Model"):
            population.fit(x, y, loss=MeanSquared(), optimizer="adam", callbacks=[callback])
    from intricate_py.schedules import ExponentialDecay
    with pytest.raises(ValueError, match="one value per member of a Population of 3"):
        population.fit(x, y, loss=MeanSquared(), optimizer=SGD(ExponentialDecay([0.1, 0.2], 10, 0.5)))
    shared = mlp()()
    same = Population(lambda: shared, 2)
    with pytest.raises(ValueError, match="make a new Model each call"):
        same[0]
    seen = []
    population.fit(x, y, optimizer="adam", epochs=2, callbacks=[lambda epoch, logs: seen.append(logs["loss"].shape)])
    assert seen == [(3,), (3,)]


def test_a_population_of_one_takes_arrays_and_the_gpu_says_how_many_members_it_holds(gpu, rng):
    x, y = data(rng, (4,))
    one = Population(mlp(), 1, seed=4)
    one.fit(x, y, loss=MeanSquared(), optimizer=Adam([0.01]), loss_weights=[2.0], epochs=2, shuffle=False)
    model = alone(mlp(), 4)
    model.fit(x, y, loss=MeanSquared(), optimizer=Adam(0.01), loss_weights=2.0, epochs=2, shuffle=False)
    assert_member(one, 0, model, exact=False)
    with pytest.raises(ValueError, match="at most 65,535 members on the GPU"):
        PopulationBackend(gpu, 70_000)


def test_loss_weights_may_differ_per_member(device, rng):
    """Two outputs, their weights in the total loss one a member: each
    member trains as its model with its weights."""
    def build(seed=None):
        x = Input((4,))
        h = Dense(6, activation="tanh")(x)
        return Model(inputs=x, outputs=[Dense(2, name="a")(h), Dense(1, name="b")(h)], device=device, seed=seed)
    x = rng.normal(size=(24, 4)).astype(np.float32)
    ys = [rng.normal(size=(24, 2)).astype(np.float32), rng.normal(size=(24, 1)).astype(np.float32)]
    weights = [[1.0, 0.2, 3.0], 0.5]
    population = Population(build, 3, seed=9)
    history = population.fit(x, ys, loss=MeanSquared(), optimizer=Adam(0.01), loss_weights=weights, epochs=2,
                             batch_size=8, shuffle=False)
    for i in range(3):
        model = alone(build, 9 + i)
        h = model.fit(x, ys, loss=MeanSquared(), optimizer=Adam(0.01), loss_weights=[weights[0][i], 0.5], epochs=2,
                      batch_size=8, shuffle=False)
        assert_member(population, i, model, exact=device == "gpu")
        np.testing.assert_allclose(history.history["loss"][:, i], h.history["loss"], rtol=1e-5)
    assert population[2].loss_weights == [3.0, 0.5]  # a member takes its own
    with pytest.raises(ValueError, match="one value per member of a Population of 3"):
        population.fit(x, ys, loss_weights=[[1.0, 2.0], 1.0])


def test_validation_is_taken_as_model_fit_takes_it(rng):
    """validation_data with sample weights, and the same refusals as Model.fit's."""
    x, y = data(rng, (4,))
    vx, vy = data(rng, (4,), n=10)
    vw = rng.random(10).astype(np.float32)
    population = Population(mlp(), 2, seed=6)
    history = population.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, validation_data=(vx, vy, vw))
    model = alone(mlp(), 6)
    h = model.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, validation_data=(vx, vy, vw))
    np.testing.assert_allclose(history.history["val_loss"][:, 0], h.history["val_loss"], rtol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        population.fit(x, y, validation_data=(vx, vy), validation_split=0.2)


def test_arrays_too_large_to_place_whole_stream_as_a_models_do(device, rng, monkeypatch):
    """Above data.STREAM_BYTES a population's shared batches stream in
    chunks, as Model.fit's do: the same members as with the arrays whole."""
    from intricate_py import data as data_module

    x, y = data(rng, (4,), n=60)
    whole = Population(mlp(device), 2, seed=8)
    whole.fit(x, y, loss=MeanSquared(), optimizer=Adam(0.01), epochs=2, batch_size=8, validation_split=0.25)
    monkeypatch.setattr(data_module, "STREAM_BYTES", 1000)
    monkeypatch.setattr(data_module, "CHUNK_BYTES", 3 * 8 * (4 + 2) * 4)  # chunks of about 3 batches
    streamed = Population(mlp(device), 2, seed=8)
    streamed.fit(x, y, loss=MeanSquared(), optimizer=Adam(0.01), epochs=2, batch_size=8, validation_split=0.25)
    for got, want in zip(streamed[1].get_weights(), whole[1].get_weights()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(streamed.predict(x), whole.predict(x))
