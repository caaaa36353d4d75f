"""The matmul strategies (large tiles, small tiles, split-K) against numpy on
odd shapes, the table that picks one, and split-K where it matters."""

import numpy as np
import pytest

from intricate_py.backends.matmul_plan import ENTRY_POINTS, H100, DeviceShape, MatmulPlan, plan_matmul

TOL = 2e-5


def f32(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def forced(kernel: str, splits: int, k: int) -> MatmulPlan:
    chunk = -(-k // splits)
    chunk = -(-chunk // 16) * 16
    return MatmulPlan(kernel, -(-k // chunk), chunk)


def check(got, want, scale):
    error = np.abs(got.astype(np.float64) - want) / np.maximum(scale, 1e-30)
    assert error.max(initial=0.0) <= TOL, f"max relative error {error.max():.3g}"


STRATEGIES = [("large", 1), ("small", 1), ("big", 1), ("large_subgroup", 1), ("small_subgroup", 1),
              ("large", 3), ("small", 7), ("big", 5), ("large_subgroup", 4), ("small_subgroup", 6)]


def force(gpu, monkeypatch, kernel: str, splits: int) -> None:
    """Make every product on ``gpu`` run ``kernel`` with ``splits`` splits of k."""
    if "subgroup" in kernel and not gpu.shape.subgroup_size:
        pytest.skip(f"{gpu.adapter} has no full subgroups of 8 to 64 (the subgroup kernel's)")
    monkeypatch.setattr(gpu, "matmul_plan", lambda m_, n_, k_: forced(kernel, splits, k_))


SHAPES = [(1, 1, 1), (3, 17, 129), (129, 3, 17), (17, 129, 3), (33, 1000, 65), (3, 40000, 5)]


@pytest.mark.parametrize("kernel, splits", STRATEGIES, ids=[f"{k}-{s}" for k, s in STRATEGIES])
@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True)])
def test_every_strategy_equals_numpy(gpu, rng, monkeypatch, kernel, splits, m, k, n, transpose_a, transpose_b):
    force(gpu, monkeypatch, kernel, splits)
    a = f32(rng, *((k, m) if transpose_a else (m, k)))
    b = f32(rng, *((n, k) if transpose_b else (k, n)))
    bias = f32(rng, n)
    opa, opb = (a.T if transpose_a else a).astype(np.float64), (b.T if transpose_b else b).astype(np.float64)
    out = gpu.empty((m, n))
    gpu.matmul(gpu.from_numpy(a), gpu.from_numpy(b), out, transpose_a, transpose_b, gpu.from_numpy(bias))
    check(gpu.to_numpy(out), opa @ opb + bias, np.abs(opa) @ np.abs(opb) + np.abs(bias))


@pytest.mark.parametrize("kernel, splits", STRATEGIES, ids=[f"{k}-{s}" for k, s in STRATEGIES])
@pytest.mark.parametrize("m, k, n", [(3, 17, 129), (33, 2000, 65)])
def test_every_strategy_runs_the_epilogues(gpu, cpu, rng, monkeypatch, kernel, splits, m, k, n):
    """An activation, an activation's gradient, and db out of a dW product
    packed as a model packs them: the same on every strategy as on numpy."""
    force(gpu, monkeypatch, kernel, splits)
    a, b, bias = f32(rng, m, k), f32(rng, k, n), f32(rng, n)
    scale = np.abs(a).astype(np.float64) @ np.abs(b) + np.abs(bias)
    for kind, param in (("tanh", 0.0), ("relu", 0.0), ("elu", 0.7), ("gelu", 0.0)):  # param: the epilogue's scalar
        want = np.empty((m, n), np.float32)
        cpu.matmul(a, b, want, bias=bias, activation=kind, activation_param=param)
        out = gpu.empty((m, n))
        gpu.matmul(gpu.from_numpy(a), gpu.from_numpy(b), out, bias=gpu.from_numpy(bias), activation=kind,
                   activation_param=param)
        check(gpu.to_numpy(out), want, scale)
    for kind, param in (("sigmoid", 0.0), ("leaky_relu", 0.25)):
        y = rng.uniform(-0.5, 1, (m, n)).astype(np.float32) if kind == "leaky_relu" else \
            rng.uniform(0, 1, (m, n)).astype(np.float32)
        want = np.empty((m, n), np.float32)
        cpu.matmul(a, b, want, grad_of=(kind, y), activation_param=param)
        out = gpu.empty((m, n))
        gpu.matmul(gpu.from_numpy(a), gpu.from_numpy(b), out, grad_of=(kind, gpu.from_numpy(y)), activation_param=param)
        check(gpu.to_numpy(out), want, scale)
    # dW = xᵀ dY with db, both in one buffer
    x, dy = f32(rng, k, m), f32(rng, k, n)
    packed = gpu.zeros((m * n + n,))
    dw, db = gpu.view(packed, 0, (m, n)), gpu.view(packed, m * n, (n,))
    gpu.matmul(gpu.from_numpy(x), gpu.from_numpy(dy), dw, transpose_a=True, bias_grad=db)
    check(gpu.to_numpy(dw), x.T.astype(np.float64) @ dy, np.abs(x.T).astype(np.float64) @ np.abs(dy))
    check(gpu.to_numpy(db), dy.sum(axis=0, dtype=np.float64), np.abs(dy).sum(axis=0))


@pytest.mark.parametrize("plain, subgroup", [("large", "large_subgroup"), ("small", "small_subgroup")])
def test_each_subgroup_kernel_sums_in_its_plain_kernels_order(gpu, rng, monkeypatch, plain, subgroup):
    """Each output adds its products in the same order in both kernels: on
    lavapipe the results agree bit for bit (a hardware compiler may fuse
    the multiply-adds differently, so there float32 rounding only)."""
    a, b = gpu.from_numpy(f32(rng, 300, 129)), gpu.from_numpy(f32(rng, 300, 70))
    results = []
    for kernel in (plain, subgroup):
        force(gpu, monkeypatch, kernel, 1)
        out = gpu.empty((129, 70))
        gpu.matmul(a, b, out, transpose_a=True)
        results.append(gpu.to_numpy(out))
    if gpu.adapter.adapter_type == "CPU":
        np.testing.assert_array_equal(results[1], results[0])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-5)


def test_split_k_is_deterministic(gpu, rng, monkeypatch):
    monkeypatch.setattr(gpu, "matmul_plan", lambda m, n, k: forced("small", 9, k))
    a, b = gpu.from_numpy(f32(rng, 5000, 32)), gpu.from_numpy(f32(rng, 5000, 25))
    results = []
    for _ in range(3):
        out = gpu.empty((32, 25))
        gpu.matmul(a, b, out, transpose_a=True)
        results.append(gpu.to_numpy(out))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


# ------------------------------------------------------------------ the table
def test_the_table_picks_split_k_for_a_long_thin_weight_gradient():
    """The CNN's first convolution at batch 64: a 32 × 25 dW over k = 36,864
    (batch × 24 × 24), one tile: on an H100 it is split to fill the device."""
    plan = plan_matmul(32, 25, 36864, H100)
    assert plan.kernel == "small" and plan.splits >= 64
    assert plan.k_chunk % 16 == 0 and plan.k_chunk * plan.splits >= 36864 > plan.k_chunk * (plan.splits - 1)
    assert plan_matmul(32, 25, 36864, DeviceShape("two cores", 4)).splits == 4
    # a software adapter keeps the large tiles for large products
    assert plan_matmul(1024, 1024, 1024, DeviceShape("two cores", 4)).kernel == "large"


def test_the_table_takes_the_subgroup_kernel_where_the_device_has_one():
    """Full subgroups (found at start-up) put the large- and small-tile
    products on their subgroup kernels; the big tiles keep theirs."""
    lavapipe = DeviceShape("two cores", 4, subgroup_size=8)
    assert plan_matmul(1024, 1024, 1024, lavapipe).kernel == "large_subgroup"
    assert plan_matmul(1024, 1024, 1024, DeviceShape("two cores", 4)).kernel == "large"
    assert plan_matmul(16, 16, 16, lavapipe).kernel == "small_subgroup"
    h100 = DeviceShape("H100", 528, big_tiles=True, subgroup_size=32)
    assert plan_matmul(4096, 4096, 4096, h100).kernel == "big"
    assert plan_matmul(2048, 2048, 2048, h100).kernel == "large_subgroup"
    assert str(plan_matmul(2048, 2048, 2048, h100)) == "large_subgroup 64×128"
    conv1_dw = plan_matmul(32, 25, 36864, h100)  # split-K keeps its splits on the subgroup tiles
    assert (conv1_dw.kernel, conv1_dw.splits) == ("small_subgroup", plan_matmul(32, 25, 36864, H100).splits)


def test_subgroups_are_found_at_start_up(gpu):
    """Where the adapter has the feature, the probe measures full subgroups
    (lavapipe: 8 invocations) and the products of large and small tiles
    use them; a device made without the feature compiles only the plain
    kernels."""
    from intricate_py.backends.shaders import Kernels, KernelFile, shader_dir

    extension = KernelFile.read(shader_dir() / "matmul_subgroup.wgsl")
    plain = KernelFile.read(shader_dir() / "matmul.wgsl")
    assert extension.requires == ("subgroup",) and plain.requires == ()
    assert (extension.bindings, extension.fields) == (plain.bindings, plain.fields)
    assert set(extension.entries) == {"matmul_subgroup", "matmul_small_subgroup", "subgroup_probe"}
    bare = gpu.adapter.handle.request_device_sync()
    entries = Kernels(bare).entry_file
    assert "matmul" in entries and "matmul_small" in entries
    assert not {"matmul_subgroup", "matmul_small_subgroup", "subgroup_probe"} & set(entries)
    if "subgroup" not in gpu.adapter.handle.features:
        assert gpu.shape.subgroup_size == 0
        return
    size = gpu.shape.subgroup_size
    assert size == 0 or (8 <= size <= 64 and size & (size - 1) == 0)
    if "llvmpipe" in gpu.adapter.handle.info["device"] and "256 bits" in gpu.adapter.handle.info["device"]:
        assert size == 8  # lavapipe on 256-bit vectors: 8 floats
    if size:
        assert gpu.matmul_plan(1024, 1024, 1024).kernel == "large_subgroup"
        assert gpu.matmul_plan(32, 128, 784).kernel == "small_subgroup"


@pytest.mark.parametrize("m, n, k, kernel, splits", [
    (4096, 4096, 4096, "big", 1),     # a big square: 128 × 128 tiles, no split
    (2048, 2048, 2048, "large", 1),   # too few big tiles: the large ones
    (128, 128, 784, "small", 1),      # the MLP's layer at batch 128: too few large tiles
    (32, 128, 784, "small", 1),       # batch 32
    (784, 128, 128, "small", 1),      # its dW: k too short to split
    (64, 800, 4096, "small", 9),      # the second convolution's dW at batch 64 (k = 64 · 8 · 8)
])
def test_the_table_on_an_h100(m, n, k, kernel, splits):
    plan = plan_matmul(m, n, k, H100)
    assert (plan.kernel, plan.splits >= splits, plan.splits == 1) == (kernel, True, splits == 1)


def test_a_conv_weight_gradient_runs_split_k(gpu, rng, monkeypatch):
    """On a device the size of an H100 the conv layer's dW product is split:
    two dispatches (the partial products, their sum) and numpy's result."""
    from intricate_py import Model
    from intricate_py.layers import Conv2D, Flatten, Dense, Softmax
    from intricate_py.losses import CategoricalCrossEntropy
    from intricate_py.optimizers import SGD

    monkeypatch.setattr(gpu, "shape", H100)
    images, labels = rng.random((16, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 16)
    plans = []
    real = gpu.matmul_plan

    def spy(m, n, k):
        plans.append(((m, n, k), real(m, n, k)))
        return plans[-1][1]

    monkeypatch.setattr(gpu, "matmul_plan", spy)
    models = [Model([Conv2D(32, 5), Flatten(), Dense(10), Softmax()], input_size=(1, 28, 28), device=d, seed=0)
              for d in ("gpu", "cpu")]
    for model in models:
        model.fit(images, labels, loss=CategoricalCrossEntropy(), optimizer=SGD(0.01), epochs=1, batch_size=16)
    dw = [plan for shape, plan in plans if shape == (32, 25, 16 * 24 * 24)]
    assert dw and dw[0].splits > 1
    got, want = models[0].layers[0].weights, models[1].layers[0].weights
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_profiling_times_each_entry_point(gpu, rng):
    """Timestamp queries around each dispatch (lavapipe offers them): the
    times come back by entry point, one entry a dispatch."""
    if "timestamp-query" not in gpu.device.features:
        pytest.skip("this adapter offers no timestamp queries")
    a = gpu.from_numpy(f32(rng, 64, 64))
    out, relu = gpu.empty((64, 64)), gpu.empty((64, 64))
    with gpu.profile() as profile:
        for _ in range(3):
            gpu.matmul(a, a, out)
        gpu.activation("relu", out, relu)
    times = profile.times()
    assert profile.entries.count("activation_forward") == 1 and len(profile.entries) == 4
    product = ENTRY_POINTS[gpu.last_matmul_plan.kernel]
    assert set(times) == {"activation_forward", product}
    assert all(t > 0 for t in times.values())
    np.testing.assert_allclose(gpu.to_numpy(relu), np.maximum(gpu.to_numpy(out), 0))
