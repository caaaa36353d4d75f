"""Every backend operation on the GPU against the numpy backend, on random
inputs and odd shapes.

Relative error is measured against the magnitude of the terms that make a
result (|A|·|B| + |bias| for a product, Σ|x| for a sum, |result| where
nothing cancels): near-cancelling sums make |result| itself meaningless as a
scale, while this is the bound float32 arithmetic guarantees.
"""

import math

import numpy as np
import pytest

TOL = 1e-5
# (m, k, n): ones, odd sizes around the 64 × 128 tiles and 16-deep slices, and
# multiples of 4 that take the vec4 staging path (a transposed, b not)
SHAPES = [(1, 1, 1), (3, 17, 129), (129, 3, 17), (17, 129, 3), (65, 130, 67), (1, 64, 1),
          (12, 9, 8), (64, 64, 64), (68, 33, 132), (128, 784, 128), (70, 20, 260)]


def assert_parity(got, want, scale=None, tol=TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = np.abs(want) if scale is None else np.asarray(scale, np.float64)
    error = np.abs(got - want) / np.maximum(scale, 1e-30)
    error[(got == want)] = 0.0
    assert error.max(initial=0.0) <= tol, f"max relative error {error.max():.3g}"


def f32(rng, *shape, scale=1.0):
    return (rng.normal(size=shape) * scale).astype(np.float32)


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul(gpu, cpu, rng, m, k, n, transpose_a, transpose_b, with_bias):
    a = f32(rng, *((k, m) if transpose_a else (m, k)))
    b = f32(rng, *((n, k) if transpose_b else (k, n)))
    bias = f32(rng, n) if with_bias else None
    want = np.empty((m, n), np.float32)
    cpu.matmul(a, b, want, transpose_a, transpose_b, bias)
    out = gpu.empty((m, n))
    gpu.matmul(gpu.from_numpy(a), gpu.from_numpy(b), out, transpose_a, transpose_b,
               gpu.from_numpy(bias) if with_bias else None)
    opa, opb = (a.T if transpose_a else a), (b.T if transpose_b else b)
    scale = np.abs(opa).astype(np.float64) @ np.abs(opb) + (np.abs(bias) if with_bias else 0)
    assert_parity(gpu.to_numpy(out), want, scale)


EPILOGUE_SHAPES = [(1, 1, 1), (3, 17, 129), (129, 3, 17), (65, 130, 67), (68, 33, 132)]


@pytest.mark.parametrize("m, k, n", EPILOGUE_SHAPES)
@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "relu"])
def test_matmul_with_an_activation(gpu, cpu, rng, m, k, n, kind):
    """f(x W + b) in one product equals the product then the activation."""
    a, b, bias = f32(rng, m, k), f32(rng, k, n), f32(rng, n)
    want = np.empty((m, n), np.float32)
    cpu.matmul(a, b, want, bias=bias)
    cpu.activation(kind, want.copy(), want)
    fused_cpu = np.empty((m, n), np.float32)
    cpu.matmul(a, b, fused_cpu, bias=bias, activation=kind)
    np.testing.assert_array_equal(fused_cpu, want)
    out = gpu.empty((m, n))
    gpu.matmul(gpu.from_numpy(a), gpu.from_numpy(b), out, bias=gpu.from_numpy(bias), activation=kind)
    scale = np.abs(a).astype(np.float64) @ np.abs(b) + np.abs(bias)
    assert_parity(gpu.to_numpy(out), want, scale)


@pytest.mark.parametrize("m, k, n", EPILOGUE_SHAPES)
@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "relu"])
def test_matmul_with_an_activation_gradient(gpu, cpu, rng, m, k, n, kind):
    """f'(y) · (dY Wᵀ) in one product equals the product then activation_grad."""
    dy, w = f32(rng, m, k), f32(rng, n, k)
    y = np.tanh(f32(rng, m, n)) if kind == "tanh" else rng.uniform(0, 1, (m, n)).astype(np.float32)
    if kind == "relu":
        y[y < 0.4] = 0
    product = np.empty((m, n), np.float32)
    cpu.matmul(dy, w, product, transpose_b=True)
    want = np.empty((m, n), np.float32)
    cpu.activation_grad(kind, y, product, want)
    fused_cpu = np.empty((m, n), np.float32)
    cpu.matmul(dy, w, fused_cpu, transpose_b=True, grad_of=(kind, y))
    np.testing.assert_array_equal(fused_cpu, want)
    out = gpu.empty((m, n))
    gpu.matmul(gpu.from_numpy(dy), gpu.from_numpy(w), out, transpose_b=True, grad_of=(kind, gpu.from_numpy(y)))
    scale = np.abs(dy).astype(np.float64) @ np.abs(w.T)
    assert_parity(gpu.to_numpy(out), want, scale)


@pytest.mark.parametrize("m, k, n", EPILOGUE_SHAPES + [(784, 1000, 10)])
def test_matmul_with_the_bias_gradient(gpu, cpu, rng, m, k, n):
    """dW = xᵀ dY and db = Σ_rows dY in one product."""
    x, dy = f32(rng, k, m), f32(rng, k, n)
    want_w, want_b = np.empty((m, n), np.float32), np.empty(n, np.float32)
    cpu.matmul(x, dy, want_w, transpose_a=True)
    cpu.sum_rows(dy, want_b)
    got_w, got_b = np.empty((m, n), np.float32), np.empty(n, np.float32)
    cpu.matmul(x, dy, got_w, transpose_a=True, bias_grad=got_b)
    np.testing.assert_array_equal(got_w, want_w)
    np.testing.assert_array_equal(got_b, want_b)
    # in one buffer, as a model packs dW and db (one dispatch), and apart (two)
    packed = gpu.zeros((m * n + n + 16,))
    apart = (gpu.empty((m, n)), gpu.empty((n,)))
    for out, db in [(gpu.view(packed, 0, (m, n)), gpu.view(packed, m * n + 16, (n,))), apart]:
        before = gpu.stats()["dispatches"]
        gpu.matmul(gpu.from_numpy(x), gpu.from_numpy(dy), out, transpose_a=True, bias_grad=db)
        assert gpu.stats()["dispatches"] - before == (1 if out.alloc is db.alloc else 2)
        assert_parity(gpu.to_numpy(out), want_w, np.abs(x.T).astype(np.float64) @ np.abs(dy))
        assert_parity(gpu.to_numpy(db), want_b, np.abs(dy).sum(axis=0))


def test_matmul_reads_views_at_offsets(gpu, cpu, rng):
    """Operands and output as row views inside bigger buffers."""
    a, b = f32(rng, 10, 7), f32(rng, 9, 5)
    want = np.empty((4, 5), np.float32)
    cpu.matmul(a[3:7], b[2:9], want)
    ga, gb, out = gpu.from_numpy(a), gpu.from_numpy(b), gpu.zeros((6, 5))
    gpu.matmul(gpu.rows(ga, 3, 7), gpu.rows(gb, 2, 9), gpu.rows(out, 1, 5))
    result = gpu.to_numpy(out)
    assert_parity(result[1:5], want, np.abs(a[3:7]) @ np.abs(b[2:9]))
    assert not result[0].any() and not result[5].any()


def test_matmul_rejects_shapes_that_do_not_fit(gpu):
    with pytest.raises(ValueError, match="matmul shapes"):
        gpu.matmul(gpu.empty((3, 4)), gpu.empty((5, 2)), gpu.empty((3, 2)))


@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (129, 3)])
def test_activation_and_gradient(gpu, cpu, rng, kind, shape):
    # magnitudes from 1e-6 to 30 in both signs: the series, exp and saturated ranges
    x = (np.sign(rng.normal(size=shape)) * 10 ** rng.uniform(-6, 1.5, size=shape)).astype(np.float32)
    want = np.empty_like(x)
    cpu.activation(kind, x, want)
    y = gpu.empty(shape)
    gpu.activation(kind, gpu.from_numpy(x), y)
    assert_parity(gpu.to_numpy(y), want)
    dy = f32(rng, *shape)
    want_dx = np.empty_like(x)
    cpu.activation_grad(kind, want, dy, want_dx)  # both from the same saved output
    dx = gpu.empty(shape)
    gpu.activation_grad(kind, gpu.from_numpy(want), gpu.from_numpy(dy), dx)
    assert_parity(gpu.to_numpy(dx), want_dx)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (129, 3), (7, 1000)])
def test_softmax_and_gradient(gpu, cpu, rng, shape):
    x = f32(rng, *shape, scale=5)
    want = np.empty_like(x)
    cpu.softmax(x, want)
    y = gpu.empty(shape)
    gpu.softmax(gpu.from_numpy(x), y)
    assert_parity(gpu.to_numpy(y), want)
    dy = f32(rng, *shape)
    want_dx = np.empty_like(x)
    cpu.softmax_grad(want, dy, want_dx)
    dx = gpu.empty(shape)
    gpu.softmax_grad(gpu.from_numpy(want), gpu.from_numpy(dy), dx)
    s = np.abs(dy * want).sum(axis=1, keepdims=True)
    assert_parity(gpu.to_numpy(dx), want_dx, (np.abs(dy) + s) * want)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (129, 3), (1000, 33)])
def test_sum_rows(gpu, cpu, rng, shape):
    x = f32(rng, *shape)
    want = np.empty(shape[1], np.float32)
    cpu.sum_rows(x, want)
    out = gpu.empty((shape[1],))
    gpu.sum_rows(gpu.from_numpy(x), out)
    assert_parity(gpu.to_numpy(out), want, np.abs(x).sum(axis=0))


def probabilities(rng, shape):
    p = rng.uniform(0, 1, size=shape).astype(np.float32)
    p.flat[:2] = [0.0, 1.0]  # the clipped ends
    return p


LOSS_KINDS = ["squared", "absolute", "cross_entropy", "binary_cross_entropy", "softmax_cross_entropy",
              "sigmoid_cross_entropy", "logits_cross_entropy", "logits_binary_cross_entropy"]


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (129, 3), (1000, 10)])
def test_loss_value_correct_count_and_gradient(gpu, cpu, rng, kind, shape):
    """One pass: the loss adds into its slot, the count into the next, and
    the gradient is written; other slots are left alone."""
    logits = kind.startswith("logits")
    p = f32(rng, *shape) * 4 if logits else probabilities(rng, shape)
    t = rng.uniform(0, 1, size=shape).astype(np.float32)
    t[: shape[0] // 2] = p[: shape[0] // 2]  # some predictions right
    accuracy = "binary_logits" if kind == "logits_binary_cross_entropy" else (
        "categorical" if shape[1] > 1 else "binary")
    start = np.array([5.0, 2.0, 3.0, -1.0], np.float32)
    want, want_grad = start.copy(), np.empty_like(p)
    cpu.loss(kind, p, t, want, 1, accuracy, 0.5, want_grad, 0.37)
    acc, grad = gpu.from_numpy(start), gpu.empty(shape)
    gpu.loss(kind, gpu.from_numpy(p), gpu.from_numpy(t), acc, 1, accuracy, 0.5, grad, 0.37)
    got = gpu.to_numpy(acc)
    assert got[0] == 5.0 and got[3] == -1.0
    assert got[2] == want[2]  # counts are exact
    assert_parity(got[:2], want[:2])
    assert_parity(gpu.to_numpy(grad), want_grad, 0.37 * (np.abs(p) + np.abs(t) + 1))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's, on the way to NaN
@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_prediction_makes_the_loss_nan(gpu, cpu, kind, bad):
    """Clipping must not turn NaN or inf into a plausible number (WGSL's
    clamp and max promise nothing for NaN), on either backend."""
    p = np.full((3, 4), 0.25, np.float32)
    p[1, 2] = bad
    t = np.eye(4, dtype=np.float32)[[0, 2, 3]]
    for backend in (cpu, gpu):
        acc = backend.zeros((2,))
        backend.loss(kind, backend.from_numpy(p), backend.from_numpy(t), acc, 0, "categorical", 1.0)
        assert np.isnan(backend.to_numpy(acc)[0]), backend
        backend.loss(kind, backend.from_numpy(np.full_like(p, 0.25)), backend.from_numpy(t), acc, 0,
                     "categorical", 1.0)
        assert np.isnan(backend.to_numpy(acc)[0]), "a NaN sum stays NaN"


def test_count_correct_first_maximum_wins(gpu):
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4]], np.float32)
    t = np.array([[1, 0, 0], [0, 0, 1]], np.float32)  # argmax: 0 (tie), 1 (tie) vs 2
    acc = gpu.zeros((2,))
    gpu.loss("squared", gpu.from_numpy(p), gpu.from_numpy(t), acc, 0, "categorical", 1.0)
    assert gpu.to_numpy(acc)[1] == 1.0


@pytest.mark.parametrize("chunk_rows", [None, 3, 7])
def test_take_rows_from_a_dataset_split_over_buffers(gpu, cpu, rng, monkeypatch, chunk_rows):
    x = f32(rng, 37, 13)
    with monkeypatch.context() as patch:
        if chunk_rows:  # pretend the device binds only this many rows at a time
            patch.setattr(gpu, "max_binding_bytes", chunk_rows * 13 * 4)
        data = gpu.dataset(x)
    assert len(getattr(data, "chunks", [data])) == (math.ceil(37 / chunk_rows) if chunk_rows else 1)
    idx = rng.permutation(37)[:17].astype(np.int32)
    want = np.empty((17, 13), np.float32)
    cpu.take_rows(x, idx, want)
    out = gpu.empty((17, 13))
    gpu.take_rows(data, gpu.from_numpy(idx), out)
    np.testing.assert_array_equal(gpu.to_numpy(out), want)


def test_memory_operations_round_trip(gpu, rng):
    x = f32(rng, 6, 4)
    a = gpu.from_numpy(x)
    np.testing.assert_array_equal(gpu.to_numpy(a), x)
    np.testing.assert_array_equal(gpu.to_numpy(gpu.rows(a, 2, 5)), x[2:5])
    b = gpu.zeros((6, 4))
    np.testing.assert_array_equal(gpu.to_numpy(b), 0)
    gpu.copy(a, b)
    np.testing.assert_array_equal(gpu.to_numpy(b), x)
    gpu.write(gpu.rows(b, 1, 2), np.full((1, 4), 7.0))
    assert (gpu.to_numpy(b)[1] == 7).all() and (gpu.to_numpy(b)[0] == x[0]).all()
    idx = gpu.from_numpy(np.array([3, 1], dtype=np.int64))
    assert gpu.to_numpy(idx).dtype == np.int32
    with pytest.raises(ValueError, match="write needs data of shape"):
        gpu.write(b, np.zeros(5))


def test_elementwise_grid_beyond_65535_workgroups(gpu):
    """More than 65535 × 256 elements: the dispatch spreads over a second axis."""
    n = 65535 * 256 + 300
    x = np.linspace(-1, 1, n, dtype=np.float32)
    y = gpu.empty((n,))
    gpu.activation("relu", gpu.from_numpy(x), y)
    np.testing.assert_array_equal(gpu.to_numpy(y), np.maximum(x, 0))


@pytest.mark.parametrize(
    "step",
    [
        lambda b, p, g, s: b.sgd_step(p, g, None, 0.1, 0.0, False),
        lambda b, p, g, s: b.sgd_step(p, g, s[0], 0.1, 0.9, False),
        lambda b, p, g, s: b.sgd_step(p, g, s[0], 0.1, 0.9, True),
        # epsilons large enough to show in float32, so a misplaced one fails
        lambda b, p, g, s: b.adagrad_step(p, g, s[0], 0.1, 0.01),
        lambda b, p, g, s: b.adam_step(p, g, s[0], s[1], 0.1 / 0.19, 0.9, 0.999, 0.01, math.sqrt(0.001999)),
    ],
    ids=["sgd", "momentum", "nesterov", "adagrad", "adam"],
)
def test_optimizer_steps(gpu, cpu, rng, step):
    shape = (17, 3)
    p0 = f32(rng, *shape)
    p_cpu, states_cpu = p0.copy(), [np.zeros(shape, np.float32) for _ in range(2)]
    p_gpu, states_gpu = gpu.from_numpy(p0), [gpu.zeros(shape) for _ in range(2)]
    for _ in range(3):
        g = f32(rng, *shape)
        step(cpu, p_cpu, g, states_cpu)
        step(gpu, p_gpu, gpu.from_numpy(g), states_gpu)
    assert_parity(gpu.to_numpy(p_gpu), p_cpu, np.abs(p0) + 1)
    for s_gpu, s_cpu in zip(states_gpu, states_cpu):
        assert_parity(gpu.to_numpy(s_gpu), s_cpu, np.abs(s_cpu) + 1e-3)


@pytest.mark.parametrize("backend_name", ["cpu", "gpu"])
@pytest.mark.parametrize("fused, layer, plain", [("softmax_cross_entropy", "softmax", "cross_entropy"),
                                                 ("sigmoid_cross_entropy", "sigmoid", "binary_cross_entropy")])
def test_a_fused_loss_is_its_layer_then_the_loss(backend_name, gpu, cpu, rng, fused, layer, plain):
    """The fused kind on z gives the value and count of the layer's output
    fed to the plain loss (bit for bit on a backend), and the gradient p - t."""
    backend = gpu if backend_name == "gpu" else cpu
    z = f32(rng, 37, 5) * 3
    t = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 37)]
    accuracy = "categorical" if layer == "softmax" else "binary"
    p = backend.empty(z.shape)
    if layer == "softmax":
        backend.softmax(backend.from_numpy(z), p)
    else:
        backend.activation("sigmoid", backend.from_numpy(z), p)
    want, got = backend.zeros((2,)), backend.zeros((2,))
    backend.loss(plain, p, backend.from_numpy(t), want, 0, accuracy, 1.0)
    grad = backend.empty(z.shape)
    backend.loss(fused, backend.from_numpy(z), backend.from_numpy(t), got, 0, accuracy, 1.0, grad, 1.0)
    np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(want))
    np.testing.assert_array_equal(backend.to_numpy(grad), backend.to_numpy(p) - t)


@pytest.mark.parametrize("chunk_rows", [None, 4])
def test_take_rows_pairs_samples_and_targets_from_an_offset(gpu, cpu, rng, monkeypatch, chunk_rows):
    x, t = f32(rng, 23, 7), f32(rng, 23, 3)
    with monkeypatch.context() as patch:
        if chunk_rows:  # the samples split over buffers: one dispatch a buffer instead of the pair
            patch.setattr(gpu, "max_binding_bytes", chunk_rows * 7 * 4)
        data_x = gpu.dataset(x)
    data_t = gpu.dataset(t)
    order = rng.permutation(23).astype(np.int32)
    want_x, want_t = np.empty((6, 7), np.float32), np.empty((6, 3), np.float32)
    cpu.take_rows(x, order, want_x, 5, t, want_t)
    np.testing.assert_array_equal(want_x, x[order[5:11]])
    out_x, out_t = gpu.empty((6, 7)), gpu.empty((6, 3))
    before = gpu.stats()["dispatches"]
    gpu.take_rows(data_x, gpu.from_numpy(order), out_x, 5, data_t, out_t)
    dispatches = gpu.stats()["dispatches"] - before
    assert dispatches == (1 if chunk_rows is None else math.ceil(23 / chunk_rows) + 1)
    np.testing.assert_array_equal(gpu.to_numpy(out_x), want_x)
    np.testing.assert_array_equal(gpu.to_numpy(out_t), want_t)


@pytest.mark.parametrize("shape", [(1, 1), (37, 29), (3, 5, 7)])
def test_elementwise_operations_and_column_slices(gpu, cpu, rng, shape):
    a, b = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
    for backend in (gpu, cpu):
        ga, gb, out = backend.from_numpy(a), backend.from_numpy(b), backend.empty(shape)
        backend.add(ga, gb, out, scale=1 / 3)
        np.testing.assert_allclose(backend.to_numpy(out), (a + b) * np.float32(1 / 3), rtol=1e-6)
        backend.add(out, gb, out)  # in place, the operand read through out's binding on the GPU
        np.testing.assert_allclose(backend.to_numpy(out), (a + b) * np.float32(1 / 3) + b, rtol=1e-6)
        backend.multiply(ga, gb, out)
        backend.multiply(out, out, out)
        np.testing.assert_allclose(backend.to_numpy(out), (a * b) ** 2, rtol=1e-6)
        backend.scale(ga, -2.5, out)
        np.testing.assert_allclose(backend.to_numpy(out), -2.5 * a, rtol=1e-6)
        wide = backend.zeros((shape[0], 11))
        backend.copy_slice(backend.view(ga, 0, (shape[0], a[0].size)), wide, 0, 3, 1)
        want = np.zeros((shape[0], 11), np.float32)
        want[:, 3] = a.reshape(shape[0], -1)[:, 0]
        np.testing.assert_array_equal(backend.to_numpy(wide), want)


def test_shaders_take_the_activation_numbers_from_python(gpu, rng):
    """The kinds are numbered once (backends/base.py's ACTIVATIONS), the
    shaders get them as constants, and a kind no switch knows gives NaN,
    never another activation's values."""
    from intricate_py.backends.base import ACTIVATIONS
    from intricate_py.backends.shaders import preamble

    for i, kind in enumerate(ACTIVATIONS):
        assert f"const ACTIVATION_{kind.upper()}: u32 = {i}u;" in preamble()
    x = gpu.from_numpy(rng.normal(size=(4, 5)).astype(np.float32))
    out = gpu.empty((4, 5))
    for unknown in (len(ACTIVATIONS), 99):
        gpu._dispatch("activation_forward", gpu._grid(20), (x, None, out), count=20, kind=unknown,
                      a_off=x.offset, out_off=out.offset)
        assert np.isnan(gpu.to_numpy(out)).all()
        dy = gpu.from_numpy(np.ones((4, 5), np.float32))
        gpu._dispatch("activation_backward", gpu._grid(20), (x, dy, out), count=20, kind=unknown,
                      a_off=x.offset, b_off=dy.offset, out_off=out.offset)
        assert np.isnan(gpu.to_numpy(out)).all()
