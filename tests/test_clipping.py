"""Keras's clipnorm and global_clipnorm: numbers worked by hand, PyTorch's
clip_grad_norm_ on the same network, the GPU against numpy, a clipped GPU
step that still replays without a readback, the argument checks and the
optimizer's file entry."""

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.backends import NumpyBackend
from intricate_py.layers import Dense, Parameter, ReLU, Softmax, TanH
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import OPTIMIZERS, SGD, Adagrad, Adam, AdamW
from test_gpu_training import assert_same_weights, count_dense_forwards, mlp, mlp_data
from xor_data import weights


# ------------------------------------------------------------------ by hand
def two_parameters(optimizer):
    """Two parameters bound to ``optimizer`` on float64 numpy: gradients
    (3, 4), norm 5, and (0.3, 0.4), norm 0.5; values zero."""
    backend = NumpyBackend("float64")
    params = [Parameter("a", np.zeros(2), np.array([3.0, 4.0])), Parameter("b", np.zeros(2), np.array([0.3, 0.4]))]
    optimizer.bind(backend, params)
    return params


def test_clipnorm_by_hand():
    optimizer = SGD(1.0, clipnorm=1.0)
    a, b = two_parameters(optimizer)
    optimizer.step()
    # a's norm 5 > 1: g = (3, 4) / 5; b's norm 0.5 ≤ 1: unchanged (p = 0 - 1 · g)
    np.testing.assert_allclose(a.value, [-0.6, -0.8], rtol=1e-15)
    np.testing.assert_array_equal(b.value, [-0.3, -0.4])


def test_global_clipnorm_by_hand():
    optimizer = SGD(1.0, global_clipnorm=2.0)
    a, b = two_parameters(optimizer)
    optimizer.step()
    # global norm sqrt(25 + 0.25) = 5.0249378...: every gradient times 2 / 5.0249378
    scale = 2.0 / np.sqrt(25.25)
    np.testing.assert_allclose(a.value, [-3 * scale, -4 * scale], rtol=1e-15)
    np.testing.assert_allclose(b.value, [-0.3 * scale, -0.4 * scale], rtol=1e-15)


def test_clipnorm_by_hand_with_packed_parts():
    """One packed parameter of two parts (a model's store), each clipped alone."""
    optimizer = SGD(1.0, clipnorm=1.0)
    p = Parameter("flat", np.zeros(6), np.array([3.0, 4.0, 0.0, 0.3, 0.4, 0.0]))
    optimizer.bind(NumpyBackend("float64"), [p], parts=[[3, 3]])
    optimizer.step()
    np.testing.assert_allclose(p.value, [-0.6, -0.8, 0, -0.3, -0.4, 0], rtol=1e-15)


def test_a_norm_under_the_clip_leaves_the_gradient_bit_for_bit():
    optimizer = Adam(0.1, global_clipnorm=10.0)
    a, b = two_parameters(optimizer)
    twin = Adam(0.1)
    c, d = two_parameters(twin)
    optimizer.step()
    twin.step()
    np.testing.assert_array_equal(a.value, c.value)
    np.testing.assert_array_equal(b.value, d.value)


def test_a_nan_norm_makes_the_gradients_nan():
    optimizer = SGD(1.0, global_clipnorm=1.0)
    a, b = two_parameters(optimizer)
    b.grad[0] = np.inf
    optimizer.step()
    assert np.isnan(a.value).all() and np.isnan(b.value).all()


# ------------------------------------------------------------------ PyTorch
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def regression_data():
    """Targets of size 10-ish: gradient norms far above the clips below (so
    PyTorch's 1e-6 added to the norm changes its scale by under 1e-6 of it)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 4))
    return x, 10 * rng.normal(size=(24, 2))


def twins(torch):
    model = Model([Dense(5), TanH(), Dense(2)], input_size=4, device="cpu", dtype="float64", seed=1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    with torch.no_grad():
        for i, layer in ((0, model.layers[0]), (2, model.layers[2])):
            net[i].weight.copy_(torch.from_numpy(layer.weights.T))
            net[i].bias.copy_(torch.from_numpy(layer.biases))
    return model, net


CLIPPED = [
    ("sgd-global", lambda: SGD(0.01, momentum=0.9, global_clipnorm=1.5),
     lambda t, p: t.optim.SGD(p, lr=0.01, momentum=0.9), True),
    ("adam-global", lambda: Adam(0.05, global_clipnorm=0.5), lambda t, p: t.optim.Adam(p, lr=0.05), True),
    ("sgd-clipnorm", lambda: SGD(0.01, clipnorm=0.4), lambda t, p: t.optim.SGD(p, lr=0.01), False),
    ("adamw-clipnorm", lambda: AdamW(0.05, clipnorm=0.4), lambda t, p: t.optim.AdamW(p, lr=0.05), False),
]


@pytest.mark.parametrize("ours, theirs, joint", [c[1:] for c in CLIPPED], ids=[c[0] for c in CLIPPED])
def test_clipped_steps_equal_torch_clip_grad_norm(torch, ours, theirs, joint):
    """Four steps in float64 against torch.nn.utils.clip_grad_norm_ (over
    every parameter for global_clipnorm, over each alone for clipnorm).
    PyTorch divides by norm + 1e-6: with norms above 1.2 (asserted), its
    scale is within 1e-6 (relative) of Keras's, and the weights, which
    that scale moves by one step's update, far closer."""
    x, y = regression_data()
    model, net = twins(torch)
    unclipped, _ = twins(torch)
    torch_opt = theirs(torch, net.parameters())
    clip = ours().global_clipnorm or ours().clipnorm
    norms = []
    for s in range(0, 24, 6):
        torch_opt.zero_grad()
        torch.nn.functional.mse_loss(net(torch.from_numpy(x[s : s + 6])), torch.from_numpy(y[s : s + 6])).backward()
        groups = [list(net.parameters())] if joint else [[p] for p in net.parameters()]
        norms += [float(torch.nn.utils.clip_grad_norm_(g, clip)) for g in groups]
        torch_opt.step()
    assert min(norms) > 3 * clip  # every step clipped, PyTorch's 1e-6 negligible
    model.fit(x, y, loss=MeanSquared(), optimizer=ours(), epochs=1, batch_size=6, shuffle=False)
    for i, layer in ((0, model.layers[0]), (2, model.layers[2])):
        np.testing.assert_allclose(layer.weights, net[i].weight.detach().numpy().T, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(layer.biases, net[i].bias.detach().numpy(), rtol=1e-6, atol=1e-9)
    plain = ours()
    plain.clipnorm = plain.global_clipnorm = None
    unclipped.fit(x, y, loss=MeanSquared(), optimizer=plain, epochs=1, batch_size=6, shuffle=False)
    assert np.abs(unclipped.layers[0].weights - model.layers[0].weights).max() > 1e-3  # the clip mattered


# ---------------------------------------------------------------- GPU
@pytest.mark.parametrize("make_optimizer", [lambda: SGD(0.05, momentum=0.9, clipnorm=0.5),
                                            lambda: Adam(1e-3, global_clipnorm=0.3)],
                         ids=["sgd-clipnorm", "adam-global"])
def test_clipped_steps_on_the_gpu_match_numpy(gpu, make_optimizer):
    x, y = mlp_data(320)
    models = [mlp(d) for d in ("cpu", "gpu")]
    for model in models:
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=make_optimizer(), epochs=1,
                  batch_size=32, shuffle=False)  # 10 steps
    assert_same_weights(models[1], models[0])
    unclipped = mlp("cpu")
    plain = make_optimizer()
    plain.clipnorm = plain.global_clipnorm = None
    unclipped.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=plain, epochs=1, batch_size=32, shuffle=False)
    assert max(np.abs(a - b).max() for a, b in zip(weights(unclipped), weights(models[0]))) > 1e-4


def test_gpu_norms_over_many_chunks_match_numpy(gpu):
    """Parts of several 4096-value chunks, an empty one and a tiny one."""
    rng = np.random.default_rng(0)
    sizes = [[9000, 16, 0, 5000, 32]]
    x = rng.normal(size=sum(sizes[0])).astype(np.float32)
    for joint in (False, True):
        results = []
        for backend in (NumpyBackend("float32"), gpu):
            (layout,), slots = backend.norm_layouts(sizes, joint)
            acc, a = backend.zeros((slots,)), backend.from_numpy(x)
            backend.sum_squares(a, acc, layout)
            backend.clip_norm(a, acc, layout, 20.0)
            results.append(backend.to_numpy(a))
        want, start = x.astype(np.float64), 0
        for size in [sum(sizes[0])] if joint else sizes[0]:
            part = want[start : start + size]
            part *= 20.0 / max(np.linalg.norm(part), 20.0)
            start += size
        for got in results:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"global_clipnorm": 0.5}], ids=["clipnorm", "global"])
def test_a_clipped_gpu_step_replays_without_readback(gpu, monkeypatch, clip):
    """Two dispatches more a step than the same step unclipped (the sums of
    squares, then the scaling), no readback in a step, no buffer made after
    the first step, and no layer code run once the step is recorded."""
    x, y = mlp_data(256)
    counts = {}
    for name, kwargs in (("plain", {}), ("clipped", clip)):
        model = Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device="gpu", seed=0)
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.01, **kwargs), epochs=1, batch_size=128)
        calls = count_dense_forwards(monkeypatch)
        before = model.device.stats()
        model.fit(x, y, epochs=4, batch_size=128)  # 2 steps an epoch
        after = model.device.stats()
        monkeypatch.undo()
        assert len(calls) == 2  # the two Dense layers once, while the fit's first step was recorded
        counts[name] = {k: after[k] - before[k] for k in ("dispatches", "readbacks", "buffers_created")}
    assert counts["clipped"]["readbacks"] == counts["plain"]["readbacks"]
    assert counts["clipped"]["buffers_created"] == counts["plain"]["buffers_created"] == 0
    assert counts["clipped"]["dispatches"] == counts["plain"]["dispatches"] + 4 * 2 * 2


# -------------------------------------------------------------- arguments
@pytest.mark.parametrize("cls", [SGD, Adagrad, Adam, AdamW])
def test_every_optimizer_takes_the_clips(cls):
    assert cls(clipnorm=1.0).clipnorm == 1.0
    assert cls(global_clipnorm=2).global_clipnorm == 2.0
    assert cls().clipnorm is None and cls().global_clipnorm is None
    assert "clipnorm" not in cls().get_config() and "global_clipnorm=2.0" in repr(cls(global_clipnorm=2))


@pytest.mark.parametrize("name", ["clipnorm", "global_clipnorm"])
@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), "1", True])
def test_a_clip_must_be_positive(name, value):
    with pytest.raises(ValueError, match=f"positive finite number. Received: {name}={value!r}"):
        SGD(0.1, **{name: value})


def test_only_one_clip():
    with pytest.raises(ValueError, match="only one of clipnorm and global_clipnorm.*Received: clipnorm=1.0, "
                                         "global_clipnorm=2.0"):
        Adam(clipnorm=1.0, global_clipnorm=2.0)


def test_parts_must_cover_the_parameters():
    p = Parameter("p", np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"add up to each parameter's size \(\[4\]\). Received: parts=\[\[3\]\]"):
        SGD(clipnorm=1.0).bind(NumpyBackend("float64"), [p], parts=[[3]])


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("make", [lambda: Adam(0.01, clipnorm=0.5), lambda: SGD(0.05, momentum=0.9,
                                                                               global_clipnorm=0.25)],
                         ids=["adam-clipnorm", "sgd-global"])
def test_the_clip_is_saved_and_resumed(tmp_path, make):
    optimizer = make()
    assert type(optimizer).from_config(optimizer.get_config()).get_config() == optimizer.get_config()
    x, y = mlp_data(96)

    def model():
        return Model([Dense(8), ReLU(), Dense(10), Softmax()], input_size=784, device="cpu", seed=0)

    straight = model()
    straight.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=make(), epochs=2, batch_size=32, shuffle=False)
    first = model()
    first.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=make(), epochs=1, batch_size=32, shuffle=False)
    first.save(tmp_path / "half.safetensors", include_optimizer=True)
    resumed = Model.load(tmp_path / "half.safetensors", device="cpu")
    assert resumed.optimizer.get_config() == optimizer.get_config()
    assert type(resumed.optimizer) is OPTIMIZERS[type(optimizer).__name__]
    resumed.fit(x, y, epochs=1, batch_size=32, shuffle=False)
    for a, b in zip(weights(resumed), weights(straight)):
        np.testing.assert_array_equal(a, b)
