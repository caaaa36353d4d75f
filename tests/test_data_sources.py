"""Issue 27's data: fit, evaluate and predict take a Dataset, a generator,
an iterable of batches and a PyTorch DataLoader as Keras 3 does, arrays
too large to place whole stream in chunks, and the same data in the same
order trains bit for bit alike whatever its source."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from intricate_py import Input, Model, data
from intricate_py.data import Dataset
from intricate_py.layers import Concatenate, Dense, ReLU
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import SGD

ROWS, FEATURES, CLASSES = 37, 5, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=ROWS)
    return x, y


def _model(device, seed=3):
    model = Model([Dense(8), ReLU(), Dense(CLASSES)], input_size=FEATURES, device=device, seed=seed)
    model.compile(optimizer="adam", loss=CategoricalCrossEntropy(from_logits=True))
    return model


def _weights(model):
    return [model.device.to_numpy(p.value).copy() for p in model.parameters]


class Batches(Dataset):
    def __init__(self, x, y, batch):
        self.x, self.y, self.batch, self.ends = x, y, batch, 0

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        s = slice(i * self.batch, (i + 1) * self.batch)
        return self.x[s], self.y[s]

    def on_epoch_end(self):
        self.ends += 1


class Reiterable:
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def _generator(x, y, batch, epochs=1):
    for _ in range(epochs):
        for s in range(0, len(x), batch):
            yield x[s: s + batch], y[s: s + batch]


def _same(a, b):
    for u, v in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(u, v)
    assert a.history.history.keys() == b.history.history.keys()
    for key in a.history.history:
        np.testing.assert_array_equal(a.history.history[key], b.history.history[key])


# ---------------------------------------------------- every source, bit for bit
@pytest.mark.parametrize("source", ["generator", "dataset", "iterable", "dataset_with_validation"])
def test_each_source_trains_as_the_same_arrays_in_the_same_order(device, source):
    x, y = _data()
    reference, model = _model(device), _model(device)
    validation = None
    if source == "dataset_with_validation":
        validation = (x[:10], y[:10])
    reference.fit(x, y, epochs=3, batch_size=8, shuffle=False, validation_data=validation)
    if source == "generator":
        model.fit(_generator(x, y, 8, epochs=3), epochs=3, steps_per_epoch=5)
    elif source == "iterable":  # iterated afresh each epoch
        model.fit(Reiterable([(x[s: s + 8], y[s: s + 8]) for s in range(0, ROWS, 8)]), epochs=3)
    else:
        dataset = Batches(x, y, 8)
        model.fit(dataset, epochs=3, shuffle=False,
                  validation_data=None if validation is None else _generator(*validation, 8, epochs=3),
                  validation_steps=None if validation is None else 2)
        assert dataset.ends == 3
    _same(reference, model)


def test_a_dataset_is_shuffled_by_batches_from_the_models_generator(device):
    x, y = _data()
    a, b = _model(device), _model(device)
    a.fit(Batches(x, y, 8), epochs=2)
    b.fit(Batches(x, y, 8), epochs=2)
    _same(a, b)
    c = _model(device)
    c.fit(Batches(x, y, 8), epochs=2, shuffle=False)
    assert not all(np.array_equal(u, v) for u, v in zip(_weights(a), _weights(c)))


def test_evaluate_and_predict_take_sources(device):
    x, y = _data()
    model = _model(device)
    model.fit(x, y, epochs=2, batch_size=8)
    want = model.evaluate(x, y, batch_size=8)
    got = model.evaluate(Batches(x, y, 8))
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-6)
    assert model.evaluate(_generator(x, y, 8), steps=2) != got  # the first 16 samples only
    predicted = model.predict(x)
    np.testing.assert_allclose(model.predict(Batches(x, y, 8)), predicted, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict((x[s: s + 8] for s in range(0, ROWS, 8))), predicted,
                               rtol=1e-6, atol=1e-7)


def test_a_graph_model_takes_dicts_per_batch(device):
    x, y = _data()
    def make():  # its own layers
        a, b = Input((3,), name="a"), Input((2,), name="b")
        out = Dense(CLASSES, name="out")(Concatenate()([a, b]))
        model = Model([a, b], out, device=device, seed=2)
        model.compile(optimizer="sgd", loss=CategoricalCrossEntropy(from_logits=True))
        return model

    reference, model = make(), make()
    reference.fit({"a": x[:, :3], "b": x[:, 3:]}, y, epochs=2, batch_size=10, shuffle=False)
    batches = Reiterable([({"a": x[s: s + 10, :3], "b": x[s: s + 10, 3:]}, {"out": y[s: s + 10]})
                          for s in range(0, ROWS, 10)])
    model.fit(batches, epochs=2)
    _same(reference, model)
    tuples = Reiterable([((x[s: s + 10, :3], x[s: s + 10, 3:]), y[s: s + 10]) for s in range(0, ROWS, 10)])
    assert model.evaluate(tuples)["loss"] == pytest.approx(model.evaluate(batches)["loss"])


def test_a_torch_dataloader(device):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset
    x, y = _data()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8, shuffle=False)
    reference, model = _model(device), _model(device)
    reference.fit(x, y, epochs=2, batch_size=8, shuffle=False, validation_data=(x, y))
    model.fit(loader, epochs=2, validation_data=loader)
    _same(reference, model)
    assert model.evaluate(loader)["loss"] == pytest.approx(reference.evaluate(x, y)["loss"], rel=1e-6)
    np.testing.assert_allclose(model.predict(loader), reference.predict(x), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- clear errors
@pytest.mark.parametrize("call, match", [
    (lambda m, x, y: m.fit(_generator(x, y, 8), epochs=2), "expected steps_per_epoch with a generator"),
    (lambda m, x, y: m.fit(Batches(x, y, 8), batch_size=8), "expected no batch_size"),
    (lambda m, x, y: m.fit(Batches(x, y, 8), y), "expected no y"),
    (lambda m, x, y: m.fit(Batches(x, y, 8), validation_split=0.2), "validation_data rather than"),
    (lambda m, x, y: m.fit(iter([x[:8]])), r"expected batches \(x, y\)"),
    (lambda m, x, y: m.fit(iter([(x[:8], y[:8], None, 1)])), "Received: a tuple of 4"),
    (lambda m, x, y: m.fit(iter([(x[:8, :2], y[:8])])), "shape"),
    (lambda m, x, y: m.fit(x, y, steps_per_epoch=2), "steps_per_epoch only with"),
    (lambda m, x, y: m.fit(iter([])), "at least one batch"),
])
def test_sources_refuse_what_they_cannot_take(call, match):
    x, y = _data()
    with pytest.raises(ValueError, match=match):
        call(_model("cpu"), x, y)


def test_a_generator_that_runs_out_stops_training_with_a_warning():
    x, y = _data()
    model = _model("cpu")
    with pytest.warns(UserWarning, match="ran out of data before epoch 3"):
        history = model.fit(_generator(x, y, 8, epochs=2), epochs=4, steps_per_epoch=5)
    assert history.epoch == [0, 1]


# ----------------------------------------------------------------- streaming
def test_a_memmap_streams_and_trains_as_the_array_in_memory(device, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(301, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=301)
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mapped[:] = x
    mapped.flush()
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    reference, model = _model(device), _model(device)
    reference.fit(x, y, epochs=2, batch_size=16, validation_data=(x[:50], y[:50]))
    monkeypatch.setattr(data, "STREAM_BYTES", 1000)
    monkeypatch.setattr(data, "CHUNK_BYTES", 3 * 16 * FEATURES * 4)  # chunks of about 3 batches
    model.fit(mapped, y, epochs=2, batch_size=16, validation_data=(mapped[:50], y[:50]))
    assert isinstance(model.history, type(reference.history))
    _same(reference, model)
    assert model.evaluate(mapped, y)["loss"] == pytest.approx(reference.evaluate(x, y)["loss"], rel=1e-6)


_BOUNDED = """
import resource, sys
import numpy as np
from intricate_py import Model, data
from intricate_py.layers import Dense, ReLU
path, device, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.load(path, mmap_mode="r")
y = np.zeros(len(x), np.int64)
model = Model([Dense(8), ReLU(), Dense(3)], input_size=x.shape[1], device=device, seed=1)
model.compile(optimizer="sgd", loss="categorical_crossentropy")
data.STREAM_BYTES, data.CHUNK_BYTES = 2**20, 4 * 2**20  # peak: a few chunks of 4 MiB
model.fit(x[:8192], y[:8192], epochs=1, batch_size=256)  # pipelines, buffers, the backend: in place first
def data_bytes():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData"))
limit = data_bytes() + mib * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
try:
    np.ones(x.nbytes // 8, np.float32)  # a whole copy of the file as float32 does not fit
    print("copy fitted")
    sys.exit(2)
except MemoryError:
    pass
history = model.fit(x, y, epochs=1, batch_size=256)
print("loss", history.history["loss"][-1])
"""


def test_a_file_larger_than_the_memory_limit_trains_in_bounded_memory(device, tmp_path):
    """RLIMIT_DATA caps private memory (memmap pages are the file's and do
    not count): the fit streams a file larger than what it may allocate."""
    mib = 48
    # a 128 MiB file of float64 (64 MiB as the model's float32): more than what the fit may allocate,
    # whether the data is placed on the device whole or cast in memory
    rows, features = (128 * 2**20) // (8 * 256), 256
    path = tmp_path / "big.npy"
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, features))
    for s in range(0, rows, 8192):
        mapped[s: s + 8192] = np.float32(s % 7) / 7
    mapped.flush()
    del mapped
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_BOUNDED), str(path), device, str(mib)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "loss" in run.stdout


# ------------------------------------------------------------ sample weights
def _regression(device, seed=4):
    model = Model([Dense(4), ReLU(), Dense(2)], input_size=FEATURES, device=device, seed=seed)
    model.compile(optimizer=SGD(0.05), loss="mse")
    return model


def test_a_weighted_loss_is_the_weighted_sum_over_the_batch_size(device):
    """Keras's "sum_over_batch_size": Σ wᵢ lᵢ / n, not / Σ wᵢ."""
    x, _ = _data()
    t = np.random.default_rng(1).normal(size=(ROWS, 2)).astype(np.float32)
    w = np.random.default_rng(2).uniform(0, 3, size=ROWS).astype(np.float32)
    model = _regression(device)
    each = np.array([model.evaluate(x[i: i + 1], t[i: i + 1])["loss"] for i in range(ROWS)])
    got = model.evaluate(x, t, sample_weight=w)["loss"]
    assert got == pytest.approx(float(np.dot(w, each) / ROWS), rel=1e-5)
    assert model.evaluate(x, t, sample_weight=w[:, None])["loss"] == got


def test_weights_scale_each_samples_gradient(device):
    """Zero weights drop samples; the rest count over the whole batch size."""
    x, _ = _data()
    t = np.random.default_rng(1).normal(size=(ROWS, 2)).astype(np.float32)
    keep = np.arange(ROWS) % 3 != 0
    weighted, half = _regression(device), _regression(device)
    weighted.fit(x, t, batch_size=ROWS, epochs=3, shuffle=False, sample_weight=keep.astype(np.float32))
    half.fit(x[keep], t[keep], batch_size=ROWS, epochs=3, shuffle=False,
             optimizer=SGD(0.05 * keep.sum() / ROWS))
    for u, v in zip(_weights(weighted), _weights(half)):
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-6)


def test_weighted_training_on_the_gpu_matches_numpy(gpu):
    x, y = _data()
    w = np.random.default_rng(2).uniform(0, 3, size=ROWS).astype(np.float32)
    models = [_model(device) for device in ("cpu", "gpu")]
    for model in models:
        model.fit(x, y, epochs=3, batch_size=8, sample_weight=w, validation_data=(x, y, w))
    for u, v in zip(_weights(models[0]), _weights(models[1])):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(models[0].history.history[key], models[1].history.history[key], rtol=1e-4)


def test_class_weight_is_the_sample_weight_of_each_class(device):
    x, y = _data()
    class_weight = {0: 0.5, 1: 2.0, 2: 1.0}
    a, b, c = _model(device), _model(device), _model(device)
    a.fit(x, y, epochs=2, batch_size=8, class_weight=class_weight)
    b.fit(x, y, epochs=2, batch_size=8, sample_weight=np.array([class_weight[c] for c in y], np.float32))
    _same(a, b)
    one_hot = np.eye(CLASSES, dtype=np.float32)[y]
    c.fit(x, one_hot, epochs=2, batch_size=8, class_weight=class_weight)
    for u, v in zip(_weights(a), _weights(c)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="class_weight for every class"):
        _model(device).fit(x, y, class_weight={0: 1.0, 1: 1.0})
    with pytest.raises(ValueError, match="not both"):
        _model(device).fit(x, y, class_weight=class_weight, sample_weight=np.ones(ROWS))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(37,\)"):
        _model(device).fit(x, y, sample_weight=np.ones(ROWS - 1))


def test_weighted_batches_from_a_generator_train_as_weighted_arrays(device):
    x, y = _data()
    w = np.random.default_rng(2).uniform(0, 3, size=ROWS).astype(np.float32)
    reference, model = _model(device), _model(device)
    reference.fit(x, y, epochs=2, batch_size=8, shuffle=False, sample_weight=w)
    batches = [(x[s: s + 8], y[s: s + 8], w[s: s + 8]) for s in range(0, ROWS, 8)]
    model.fit(Reiterable(batches), epochs=2)
    _same(reference, model)
    assert model.evaluate(Reiterable(batches))["loss"] == pytest.approx(
        reference.evaluate(x, y, sample_weight=w)["loss"], rel=1e-6)


def test_unweighted_training_is_unchanged_by_ones():
    """Weights of one give the same steps (up to the order of a sum)."""
    x, y = _data()
    a, b = _model("cpu"), _model("cpu")
    a.fit(x, y, epochs=2, batch_size=8)
    b.fit(x, y, epochs=2, batch_size=8, sample_weight=np.ones(ROWS))
    for u, v in zip(_weights(a), _weights(b)):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_progress_bars_take_sources_of_unknown_length(capsys):
    x, y = _data()
    model = _model("cpu")
    batches = Reiterable([(x[s: s + 8], y[s: s + 8]) for s in range(0, ROWS, 8)])
    history = model.fit(batches, epochs=2, verbose=1, validation_data=batches)
    assert history.epoch == [0, 1] and "val_loss" in history.history


def test_a_sequence_samples_weight_applies_to_each_of_its_tokens(device):
    """(n, tokens, classes) outputs: a weight (n,) is each token's."""
    from intricate_py.layers import Embedding
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 7, size=(12, 5))
    labels = rng.integers(0, 4, size=(12, 5))
    w = rng.uniform(0, 2, size=12).astype(np.float32)

    def make():
        model = Model([Embedding(7, 6), Dense(4)], input_size=5, device=device, seed=2)
        model.compile(optimizer="sgd", loss=CategoricalCrossEntropy(from_logits=True))
        return model

    a, b = make(), make()
    a.fit(ids, labels, epochs=2, batch_size=4, shuffle=False, sample_weight=w)
    b.fit(ids, labels, epochs=2, batch_size=4, shuffle=False, sample_weight=np.repeat(w[:, None], 5, axis=1))
    _same(a, b)
    each = np.array([a.evaluate(ids[i: i + 1], labels[i: i + 1])["loss"] for i in range(12)])
    assert a.evaluate(ids, labels, sample_weight=w)["loss"] == pytest.approx(float(np.dot(w, each) / 12), rel=1e-5)


def test_streamed_chunks_upload_each_epoch_on_the_gpu(gpu, monkeypatch):
    """Each epoch uploads its chunks (two at a time on the device), not
    the whole data once; the data that fits still goes up once."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(301, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=301)
    data_bytes = x.nbytes + 4 * len(y)
    monkeypatch.setattr(data, "CHUNK_BYTES", 3 * 16 * (FEATURES + 1) * 4)

    def uploaded(epochs):
        model = _model("gpu")
        model.fit(x[:16], y[:16], epochs=1, batch_size=16)  # the model's own buffers in place
        before = gpu.stats()["bytes_uploaded"]
        model.fit(x, y, epochs=epochs, batch_size=16)
        return gpu.stats()["bytes_uploaded"] - before

    placed = uploaded(3)
    monkeypatch.setattr(data, "STREAM_BYTES", 1000)
    streamed = uploaded(3)
    assert placed < 2 * data_bytes <= 3 * data_bytes <= streamed  # once (and each epoch's order); each epoch


def test_a_validation_generator_that_runs_out_stops_training_with_a_warning():
    x, y = _data()
    model = _model("cpu")
    with pytest.warns(UserWarning, match="validation_data ran out of data before epoch 2"):
        history = model.fit(x, y, epochs=3, validation_data=_generator(x, y, 8), validation_steps=5)
    assert history.epoch == [0] and "val_loss" in history.history


def test_validation_split_splits_the_sample_weights_too(device):
    x, y = _data()
    w = np.random.default_rng(2).uniform(0, 3, size=ROWS).astype(np.float32)
    cut = int(ROWS * 0.75)
    a, b = _model(device), _model(device)
    a.fit(x, y, epochs=2, batch_size=8, shuffle=False, sample_weight=w, validation_split=0.25)
    b.fit(x[:cut], y[:cut], epochs=2, batch_size=8, shuffle=False, sample_weight=w[:cut],
          validation_data=(x[cut:], y[cut:], w[cut:]))
    _same(a, b)


def test_a_memmap_streams_above_its_own_threshold(tmp_path, monkeypatch):
    from intricate_py.fit_data import placed
    x = np.ones((64, FEATURES), np.float32)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    model = _model("cpu")
    monkeypatch.setattr(data, "MAPPED_STREAM_BYTES", x.nbytes - 1)
    assert isinstance(placed(model, "t", model.input_arrays(mapped), 8), data.ChunkedData)
    assert not isinstance(placed(model, "t", model.input_arrays(x), 8), data.ChunkedData)


def test_the_next_chunk_uploads_before_the_current_one_trains(device, monkeypatch):
    """Double buffering: chunk c + 1 goes into the other half of the
    device's chunk buffer before the steps of chunk c are recorded (on the
    GPU the upload first submits the steps before it, which read the half
    it overwrites)."""
    from intricate_py.fitting import TrainStep
    x, y = _data()
    monkeypatch.setattr(data, "STREAM_BYTES", 100)
    monkeypatch.setattr(data, "CHUNK_BYTES", 2 * 8 * (FEATURES + 1) * 4)  # 2 batches a chunk
    events = []
    upload, run = data.ChunkedData._upload, TrainStep.run
    monkeypatch.setattr(data.ChunkedData, "_upload", lambda self, c: (events.append(("upload", c)), upload(self, c)))
    monkeypatch.setattr(TrainStep, "run", lambda self, d, view, *a: (events.append(("step", view[0])),
                                                                      run(self, d, view, *a)))
    _model(device).fit(x, y, epochs=1, batch_size=8)
    # 5 steps, chunks of 2: firsts 0 and 8 in half 0, 16 and 24 in half 1, 32 in half 0
    assert events == [("upload", 0), ("upload", 1), ("step", 0), ("step", 8), ("upload", 2), ("step", 16),
                      ("step", 24), ("step", 0)]


def test_batch_hooks_see_the_samples_of_a_source(device):
    from intricate_py.callbacks import Callback
    x, y = _data()
    seen = []

    class Batches_(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs["loss"])

    model = _model(device)
    model.fit(Reiterable([(x[s: s + 8], y[s: s + 8]) for s in range(0, ROWS, 8)]), epochs=1, callbacks=[Batches_()])
    reference = _model(device)
    reference.fit(x, y, epochs=1, batch_size=8, shuffle=False)
    assert len(seen) == 5 and seen[-1] == pytest.approx(reference.history.history["loss"][0], rel=1e-5)


def test_a_source_that_diverges_keeps_the_last_finite_weights(device):
    """A generator can't be replayed: its fit reads every epoch back, so a
    divergence goes back to a save without running epochs again."""
    x, y = _data()
    t = (x[:, :2] * 1e3).astype(np.float32)
    model = _regression(device)
    model.compile(optimizer=SGD(10.0), loss="mse")
    with pytest.warns(RuntimeWarning, match="training stopped"):
        history = model.fit(_generator(x, t, 8, epochs=6), epochs=6, steps_per_epoch=5)
    assert not np.isfinite(history.history["loss"][-1])
    assert all(np.isfinite(w).all() for w in _weights(model))


def test_class_weight_weighs_the_training_part_of_a_split_only(device):
    """As Keras: with validation_split, class_weight weighs the training
    samples; the held-out ones are evaluated unweighted."""
    x, y = _data()
    cut = int(ROWS * 0.75)
    model = _model(device)
    history = model.fit(x, y, epochs=1, batch_size=8, shuffle=False, validation_split=0.25,
                        class_weight={0: 0.0, 1: 0.0, 2: 0.0})
    assert history.history["loss"] == [0.0]
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[cut:], y[cut:])["loss"], rel=1e-6)
    class_weight = {0: 0.5, 1: 2.0, 2: 1.0}
    a, b = _model(device), _model(device)
    a.fit(x, y, epochs=2, batch_size=8, shuffle=False, validation_split=0.25, class_weight=class_weight)
    b.fit(x[:cut], y[:cut], epochs=2, batch_size=8, shuffle=False, class_weight=class_weight,
          validation_data=(x[cut:], y[cut:]))
    _same(a, b)


class _Recorded(Batches):
    """Batches that record which were read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = []

    def __getitem__(self, i):
        self.read.append(i)
        return super().__getitem__(i)


def test_steps_per_epoch_below_a_pass_goes_on_where_the_last_epoch_stopped(device):
    """As Keras 3's EpochIterator: a Dataset or DataLoader with
    steps_per_epoch below its length is read on across epochs; a new pass
    (a new order) begins once one has been read whole, and an epoch that
    reaches a pass's end ends there."""
    x, y = _data()
    dataset = _Recorded(x, y, 8)  # 5 batches
    model = _model(device)
    model.fit(dataset, epochs=4, steps_per_epoch=2, shuffle=False)
    assert dataset.read[2:] == [0, 1, 2, 3, 4, 0, 1]  # (the first batch is read twice before)
    assert dataset.ends == 4
    # the same batches as arrays in that order
    reference = _model(device)
    for rows in (slice(0, 16), slice(16, 32), slice(32, ROWS), slice(0, 16)):
        reference.fit(x[rows], y[rows], epochs=1, batch_size=8, shuffle=False)
    for u, v in zip(_weights(model), _weights(reference), strict=True):
        np.testing.assert_array_equal(u, v)
    # shuffled: each pass is a permutation of the batches, drawn once a pass
    shuffled = _Recorded(x, y, 8)
    _model(device).fit(shuffled, epochs=3, steps_per_epoch=2)
    assert sorted(shuffled.read[2:7]) == [0, 1, 2, 3, 4]
    # a re-iterable (a DataLoader) the same way
    batches = [(x[s: s + 8], y[s: s + 8]) for s in range(0, ROWS, 8)]
    iterable = _model(device)
    iterable.fit(Reiterable(batches), epochs=4, steps_per_epoch=2)
    for u, v in zip(_weights(iterable), _weights(reference), strict=True):
        np.testing.assert_array_equal(u, v)


def test_a_dataset_ends_its_epoch_when_a_batch_hook_stops_training(device):
    from intricate_py.callbacks import Callback
    x, y = _data()

    class Stop(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    dataset = _Recorded(x, y, 8)
    _model(device).fit(dataset, epochs=3, shuffle=False, callbacks=[Stop()])
    assert dataset.read[2:] == [0, 1] and dataset.ends == 1


class _SpentStream:
    """An iterable whose every new iterator reads one stream, spent after its first epoch."""

    def __init__(self, batches):
        self.stream = iter(batches)

    def __iter__(self):
        return self.stream


def test_an_iterable_spent_after_its_first_epoch_is_a_clear_error():
    x = np.random.default_rng(0).normal(size=(8, 4))
    y = np.random.default_rng(1).integers(0, 3, 8)
    model = Model([Dense(3)], input_size=4, seed=0)
    with pytest.raises(ValueError, match=r"at least one batch each epoch. Received: none in epoch 2 from _SpentStream"):
        model.fit(_SpentStream([(x, y)]), loss=CategoricalCrossEntropy(from_logits=True), optimizer="sgd", epochs=2)
    assert model.history.epoch == [0]  # the first epoch's weights are kept
    with pytest.raises(ValueError, match="at least one batch from x. Received: none from _SpentStream"):
        model.predict(_SpentStream([]))
