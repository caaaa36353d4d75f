"""Conv2D's strides, "same" padding, dilation, groups and use_bias, and the
layers AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
UpSampling2D and ZeroPadding2D (and MaxPool2D's "same"): outputs and
gradients against PyTorch's functions (float64 on the CPU, float32 on the
GPU), answers worked by hand, configurations and files (older files keep
their bytes), arguments refused, and both exporters on a model using
them all."""

import json
import shutil

import numpy as np
import pytest
import safetensors.numpy

from export_models import ATOL, RTOL, build_c
from intricate_py import Input, Model
from intricate_py.layers import (AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D,
                                 GlobalMaxPooling2D, Layer, MaxPool2D, ReLU, TanH, UpSampling2D, ZeroPadding2D)

torch = pytest.importorskip("torch")
F = torch.nn.functional

CONVS = [  # (config, input shape): odd sizes, h != w
    (dict(filters=3, kernel_size=3, strides=2), (2, 7, 6)),
    (dict(filters=4, kernel_size=(2, 3), strides=3, padding="same"), (2, 8, 7)),  # even kernel rows
    (dict(filters=2, kernel_size=(4, 2), strides=(2, 3), padding="same"), (3, 9, 10)),
    (dict(filters=3, kernel_size=3, dilation_rate=2, padding=1), (2, 9, 7)),
    (dict(filters=2, kernel_size=(2, 3), dilation_rate=(2, 3), strides=2, padding="same"), (2, 7, 11)),
    (dict(filters=4, kernel_size=3, groups=2, padding="same"), (4, 6, 5)),
    (dict(filters=6, kernel_size=(3, 2), groups=2, strides=(1, 2)), (2, 7, 6)),
    (dict(filters=3, kernel_size=3, groups=3, padding="same", strides=2), (3, 7, 8)),  # depthwise
    (dict(filters=6, kernel_size=(2, 2), groups=3, dilation_rate=2, padding="same"), (3, 6, 5)),  # depthwise × 2
    (dict(filters=3, kernel_size=2, use_bias=False, strides=3), (2, 8, 7)),
    (dict(filters=4, kernel_size=3, groups=4, use_bias=False, padding="same"), (4, 5, 6)),
]


def conv_id(case) -> str:
    config, shape = case
    return ",".join(f"{k}={v}" for k, v in config.items()) + f"@{shape}"


def run_layer(layer: Layer, x: np.ndarray, r: np.ndarray, device: str):
    """The layer in a model of its own on ``device`` (float64 on the CPU):
    its output for ``x`` and the gradients of Σ r · output with respect to
    x and each parameter (by the names of its file)."""
    dtype = "float64" if device == "cpu" else "float32"
    model = Model([layer], input_size=x.shape[1:], device=device, dtype=dtype, seed=3)
    rng = np.random.default_rng(5)
    if "b" in layer.params:
        layer.biases = rng.normal(0, 0.5, layer.biases.shape)
    backend = model.device
    y = backend.to_numpy(layer.forward(backend.asarray(x.astype(dtype))))
    dx = backend.to_numpy(layer.back_propagate(backend.asarray(r.astype(dtype))))
    grads = {name: backend.to_numpy(p.grad) for name, p in layer.params.items()}
    names = {"W": "weight", "b": "bias"}
    return y, dx, {names[k]: v for k, v in grads.items()}


def torch_gradients(function, x: np.ndarray, r: np.ndarray, tensors: dict, dtype):
    """PyTorch's output of ``function(x, **tensors)`` and the gradients of
    Σ r · output with respect to x and each tensor."""
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    ts = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in tensors.items()}
    y = function(xt, **ts)
    (y * torch.tensor(r, dtype=dtype)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy(), {k: t.grad.numpy() for k, t in ts.items()}


def check_against_torch(make, function, shape, device, rng, weights=lambda layer: {}):
    """``make()``'s output and gradients on ``device`` against PyTorch's
    ``function(x, layer, **tensors)`` in float64 (CPU) or float32 (GPU)."""
    x = rng.normal(size=(3, *shape))
    layer = make()
    y_shape = layer.output_shape_for(shape)
    r = rng.normal(size=(3, *y_shape))
    y, dx, grads = run_layer(layer, x, r, device)
    tensors = layer.state_dict()
    dtype = torch.float64 if device == "cpu" else torch.float32
    want_y, want_dx, want_grads = torch_gradients(lambda xt, **ts: function(xt, layer, **ts), x, r, tensors, dtype)
    rtol, atol = (1e-10, 1e-12) if device == "cpu" else (1e-4, 1e-5)
    np.testing.assert_allclose(y, want_y, rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, want_dx, rtol=rtol, atol=atol)
    assert set(grads) == set(want_grads)
    for name in grads:
        np.testing.assert_allclose(grads[name], want_grads[name], rtol=rtol, atol=atol * 10, err_msg=name)


def torch_conv(xt, layer: Conv2D, weight, bias=None):
    """F.conv2d with the layer's padding made explicit by F.pad (PyTorch's
    own padding is the same on both sides; "same" may not be)."""
    top, bottom, left, right = layer.sides
    return F.conv2d(F.pad(xt, (left, right, top, bottom)), weight, bias, stride=layer.stride,
                    dilation=layer.dilation_rate, groups=layer.groups)


@pytest.mark.parametrize("case", CONVS, ids=conv_id)
def test_conv2d_equals_torch_conv2d(case, device, rng):
    config, shape = case
    check_against_torch(lambda: Conv2D(**config), torch_conv, shape, device, rng)


def torch_avg_pool(xt, layer: AveragePooling2D):
    """The sum of each window over the count of its pixels inside the image:
    both pooled from the image and a plane of ones framed by zeros."""
    top, bottom, left, right = layer.sides
    pads = (left, right, top, bottom)
    sums = F.avg_pool2d(F.pad(xt, pads), layer.pool_size, layer.stride, divisor_override=1)
    counts = F.avg_pool2d(F.pad(torch.ones_like(xt[:1, :1]), pads), layer.pool_size, layer.stride, divisor_override=1)
    return sums / counts


def torch_max_pool(xt, layer: MaxPool2D):
    top, bottom, left, right = layer.sides
    return F.max_pool2d(F.pad(xt, (left, right, top, bottom), value=-np.inf), layer.pool_size, layer.stride)


POOLS = [  # (layer, input shape)
    (lambda: AveragePooling2D(2), (2, 7, 6)),
    (lambda: AveragePooling2D((3, 2), strides=(2, 3), padding=1), (2, 7, 8)),
    (lambda: AveragePooling2D(2, strides=3, padding="same"), (2, 8, 7)),
    (lambda: AveragePooling2D((4, 3), strides=(3, 2), padding="same"), (3, 9, 10)),
    (lambda: MaxPool2D((2, 4), strides=3, padding="same"), (2, 8, 7)),
    (lambda: MaxPool2D(3, strides=(1, 2), padding="same"), (2, 6, 9)),
]


@pytest.mark.parametrize("k", range(len(POOLS)))
def test_pooling_equals_torch(k, device, rng):
    make, shape = POOLS[k]
    function = torch_avg_pool if isinstance(make(), AveragePooling2D) else torch_max_pool
    check_against_torch(make, function, shape, device, rng)


def test_average_pooling_with_an_int_padding_is_torchs_without_count_include_pad(device, rng):
    """And PyTorch's default (count_include_pad=True) differs at the borders only."""
    layer = AveragePooling2D(3, strides=2, padding=1)
    check_against_torch(lambda: layer, lambda xt, _: F.avg_pool2d(xt, 3, 2, 1, count_include_pad=False),
                        (2, 7, 9), device, rng)
    x = rng.normal(size=(2, 2, 7, 9))
    ours = Model([AveragePooling2D(3, strides=2, padding=1)], input_size=(2, 7, 9), device="cpu",
                 dtype="float64").predict(x)
    default = F.avg_pool2d(torch.tensor(x), 3, 2, 1).numpy()
    np.testing.assert_allclose(ours[:, :, 1:-1, 1:-1], default[:, :, 1:-1, 1:-1], rtol=1e-12)
    assert not np.allclose(ours[:, :, 0], default[:, :, 0])


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_global_pooling_equals_torch_adaptive_pooling(kind, keepdims, device, rng):
    make = GlobalAveragePooling2D if kind == "avg" else GlobalMaxPooling2D
    adaptive = F.adaptive_avg_pool2d if kind == "avg" else F.adaptive_max_pool2d

    def function(xt, layer):
        y = adaptive(xt, 1)
        return y if keepdims else y.flatten(1)

    check_against_torch(lambda: make(keepdims=keepdims), function, (3, 5, 7), device, rng)


@pytest.mark.parametrize("size, shape", [(2, (2, 3, 5)), ((3, 2), (3, 4, 3)), ((1, 3), (1, 2, 2))])
def test_upsampling_equals_torch_interpolate_nearest(size, shape, device, rng):
    factors = (size, size) if isinstance(size, int) else size
    check_against_torch(lambda: UpSampling2D(size),
                        lambda xt, _: F.interpolate(xt, scale_factor=factors, mode="nearest"), shape, device, rng)


@pytest.mark.parametrize("padding, pads", [(1, (1, 1, 1, 1)), ((2, 0), (0, 0, 2, 2)),
                                            (((1, 3), (0, 2)), (0, 2, 1, 3))])
def test_zero_padding_equals_torch_pad(padding, pads, device, rng):
    check_against_torch(lambda: ZeroPadding2D(padding), lambda xt, _: F.pad(xt, pads), (2, 3, 4), device, rng)


def test_a_cnn_with_every_new_layer_trains_in_parity_on_the_gpu(gpu, rng):
    from intricate_py.losses import CategoricalCrossEntropy
    from intricate_py.optimizers import Adam
    from intricate_py.layers import Softmax

    x, y = rng.random((24, 2, 9, 8)).astype(np.float32), rng.integers(0, 3, 24)

    def cnn(device):
        return Model([ZeroPadding2D(((1, 0), (0, 1))), Conv2D(4, 3, padding="same", groups=2), ReLU(),
                      AveragePooling2D(2, padding="same"), Conv2D(4, 3, groups=4, dilation_rate=2, padding="same"),
                      UpSampling2D(2), MaxPool2D(3, strides=2, padding="same"), Conv2D(6, 1, use_bias=False),
                      GlobalAveragePooling2D(), Dense(3), Softmax()],
                     input_size=(2, 9, 8), device=device, seed=1)

    models = [cnn("cpu"), cnn("gpu")]
    for model in models:
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=Adam(0.01), epochs=2, batch_size=8)
    for a, b in zip(models[0].parameters, models[1].parameters):
        wa, wb = models[0].device.to_numpy(a.value), models[1].device.to_numpy(b.value)
        np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-4 * np.abs(wa).max())


GEOMETRIES = [  # (x shape, kernel, stride, (top, bottom, left, right), dilation, groups): odd, h != w
    ((2, 4, 7, 6), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2),
    ((3, 3, 8, 7), (2, 4), (3, 2), (0, 1, 1, 2), (1, 1), 3),       # "same" with even kernels: more after
    ((1, 2, 9, 10), (3, 2), (1, 3), (2, 2, 1, 2), (2, 2), 1),
    ((2, 6, 5, 9), (2, 3), (2, 1), (1, 1, 2, 2), (2, 1), 6),       # depthwise, dilated
]


@pytest.mark.parametrize("shape, kernel, stride, sides, dilation, groups", GEOMETRIES)
def test_image_operations_on_the_gpu_equal_numpy(gpu, cpu, rng, shape, kernel, stride, sides, dilation, groups):
    """Each image operation of the backends at once, on the same odd geometry."""
    from intricate_py.backends.base import window_positions

    n, c, h, w = shape
    oh, ow = window_positions((h, w), kernel, stride, sides, dilation)
    x = rng.normal(size=shape).astype(np.float32)
    patch = c // groups * kernel[0] * kernel[1]

    def both(op, inputs, out_shapes, *args, dtypes=None):
        """``op`` on numpy and on the GPU: its outputs, each (numpy, GPU)."""
        dtypes = dtypes or [np.float32] * len(out_shapes)
        want = [np.zeros(s, d) for s, d in zip(out_shapes, dtypes)]
        getattr(cpu, op)(*inputs, *want, *args)
        outs = [gpu.empty(s, d) for s, d in zip(out_shapes, dtypes)]
        getattr(gpu, op)(*[gpu.from_numpy(a) for a in inputs], *outs, *args)
        return [(a, gpu.to_numpy(b)) for a, b in zip(want, outs)]

    results = both("im2col", [x], [(groups * patch, n * oh * ow)], kernel, stride, sides, dilation)
    cols_t = rng.normal(size=(c * kernel[0] * kernel[1], n * oh * ow)).astype(np.float32)
    results += both("col2im", [cols_t], [shape], kernel, stride, sides, dilation)
    rows_t = rng.normal(size=(c, n * oh * ow)).astype(np.float32)
    results += both("to_channels_first", [rows_t], [(n, c, oh, ow)])
    results += both("to_channels_last", [rng.normal(size=(n, c, oh, ow)).astype(np.float32)], [rows_t.shape])
    results += both("sum_channels", [x], [(c,)])
    pool = (min(kernel[0], 2 * sides[0] + 1), min(kernel[1], 2 * sides[2] + 1))  # padding at most half the window
    pool = (max(pool[0], sides[1] + 1), max(pool[1], sides[3] + 1))
    ph, pw = window_positions((h, w), pool, stride, sides)
    results += both("avgpool2d", [x], [(n, c, ph, pw)], pool, stride, sides)
    dy = rng.normal(size=(n, c, ph, pw)).astype(np.float32)
    results += both("avgpool2d_grad", [dy], [shape], pool, stride, sides)
    (y, gy), (at, gat) = both("maxpool2d", [x], [(n, c, ph, pw)] * 2, pool, stride, sides,
                              dtypes=[np.float32, np.int32])
    np.testing.assert_array_equal(gat, at)
    results += [(y, gy)] + both("maxpool2d_grad", [dy, at], [shape], pool, stride, sides)
    results += both("upsample2d", [x], [(n, c, h * stride[0], w * stride[1])], stride)
    results += both("upsample2d_grad", [rng.normal(size=(n, c, h * stride[0], w * stride[1])).astype(np.float32)],
                    [shape], stride)
    padded = (n, c, h + sides[0] + sides[1], w + sides[2] + sides[3])
    results += both("pad2d", [x], [padded], sides)
    results += both("pad2d_grad", [rng.normal(size=padded).astype(np.float32)], [shape], sides)
    for k, (want, got) in enumerate(results):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(k))


# ------------------------------------------------------------ worked by hand
def test_patches_are_columns_a_pixel_each(cpu):
    """im2col's layout by hand: a row per (channel, ki, kj), a column per
    output pixel (n, i, j); the reorderings between product rows and
    channels; sums per channel."""
    x = np.arange(2 * 2 * 2 * 3, dtype=np.float64).reshape(2, 2, 2, 3)  # n, c, h, w
    cols_t = np.empty((2 * 2 * 2, 2 * 1 * 2))
    cpu.im2col(x, cols_t, (2, 2), (1, 1), (0, 0, 0, 0))
    # image 0, channel 0 is [[0 1 2] [3 4 5]]: its first tap (0, 0) reads 0 then 1, image 1's 12 then 13
    np.testing.assert_array_equal(cols_t[0], [0, 1, 12, 13])
    np.testing.assert_array_equal(cols_t[3], [4, 5, 16, 17])  # channel 0, tap (1, 1)
    np.testing.assert_array_equal(cols_t[4], [6, 7, 18, 19])  # channel 1, tap (0, 0)
    planes = np.empty((2, 2, 1, 2))
    cpu.to_channels_first(cols_t[:2], planes, bias=np.array([10.0, 20.0]))
    np.testing.assert_array_equal(planes[:, :, 0], [[[10, 11], [21, 22]], [[22, 23], [33, 34]]])
    back = np.empty((2, 4))
    cpu.to_channels_last(planes, back)
    np.testing.assert_array_equal(back, cols_t[:2] + [[10], [20]])
    sums = np.empty(2)
    cpu.sum_channels(x, sums)
    np.testing.assert_array_equal(sums, [sum(range(6)) + sum(range(12, 18)), sum(range(6, 12)) + sum(range(18, 24))])


def test_same_padding_sizes_as_keras():
    """ceil(in / stride) outputs; the total padding split with the odd row
    or column below or to the right."""
    layer = Conv2D(1, (4, 3), strides=(3, 1), padding="same", input_shape=(1, 7, 5))
    # rows: out 3, total (3 - 1)·3 + 4 - 7 = 3 -> 1 above, 2 below; columns: out 5, total 2 -> 1, 1
    assert layer.output_shape_for((1, 7, 5)) == (1, 3, 5) and layer.sides_for((7, 5)) == (1, 2, 1, 1)
    dilated = Conv2D(1, 2, dilation_rate=3, padding="same")  # spans 4: total 3 -> 1, 2
    assert dilated.output_shape_for((1, 6, 6)) == (1, 6, 6) and dilated.sides_for((6, 6)) == (1, 2, 1, 2)
    assert MaxPool2D(2, padding="same").output_shape_for((1, 5, 4)) == (1, 3, 2)
    assert MaxPool2D(2, padding="same").sides_for((5, 4)) == (0, 1, 0, 0)
    assert Conv2D(1, 3, strides=2, padding="same").sides_for((8, 8)) == (0, 1, 0, 1)  # total 1: after


def test_average_pooling_same_divides_by_the_pixels_inside_as_keras():
    """x = [[0 1 2] [3 4 5] [6 7 8]], 2×2 windows at stride 2, "same":
    one row and column of padding below and to the right, which counts for
    nothing: [[(0+1+3+4)/4, (2+5)/2], [(6+7)/2, 8/1]] (TensorFlow gives this)."""
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    layer = AveragePooling2D(2, padding="same")
    np.testing.assert_array_equal(layer.forward(x), [[[[2, 3.5], [6.5, 8]]]])
    dx = layer.back_propagate(np.ones((1, 1, 2, 2), np.float32))
    np.testing.assert_array_equal(dx[0, 0], [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1]])


def test_grouped_conv_by_hand():
    """Two groups of one channel each; filter 0 sees channel 0 only, filter 1 channel 1."""
    layer = Conv2D(2, 1, groups=2, use_bias=False, input_shape=(2, 1, 2))
    layer.weights = [[[[2]]], [[[-1]]]]
    x = np.array([[[[1, 2]], [[10, 20]]]], np.float32)
    np.testing.assert_array_equal(layer.forward(x), [[[[2, 4]], [[-10, -20]]]])
    assert layer.weights.shape == (2, 1, 1, 1) and "b" not in layer.params


def test_global_pooling_upsampling_and_padding_by_hand():
    x = np.array([[[[1, 5], [3, -2]], [[0, 0], [4, 4]]]], np.float32)
    np.testing.assert_array_equal(GlobalAveragePooling2D().forward(x), [[1.75, 2]])
    np.testing.assert_array_equal(GlobalMaxPooling2D(keepdims=True).forward(x), [[[[5]], [[4]]]])
    layer = GlobalMaxPooling2D()
    layer.forward(x)
    np.testing.assert_array_equal(layer.back_propagate(np.array([[1, 2]], np.float32)),
                                  [[[[0, 1], [0, 0]], [[0, 0], [2, 0]]]])  # the first maximum
    up = UpSampling2D((1, 2)).forward(x[:, :1])
    np.testing.assert_array_equal(up, [[[[1, 1, 5, 5], [3, 3, -2, -2]]]])
    padded = ZeroPadding2D(((1, 0), (0, 2))).forward(x[:, :1])
    np.testing.assert_array_equal(padded, [[[[0, 0, 0, 0], [1, 5, 0, 0], [3, -2, 0, 0]]]])


# ------------------------------------------------------------ configurations and files
OLD_CONFIGS = [  # what files of earlier versions hold, key for key
    (lambda: Conv2D(4, 3), {"filters": 4, "kernel_size": [3, 3]}),
    (lambda: Conv2D(4, (3, 2), stride=2, padding=1),
     {"filters": 4, "kernel_size": [3, 2], "stride": [2, 2], "padding": [1, 1]}),
    (lambda: Conv2D(4, 3, strides=(2, 1), padding="valid", input_shape=(1, 8, 8)),
     {"filters": 4, "kernel_size": [3, 3], "stride": [2, 1], "input_shape": [1, 8, 8]}),
    (lambda: Conv2D(4, 3, 2, (0, 1), None, "he_normal"),  # the old positional order
     {"filters": 4, "kernel_size": [3, 3], "stride": [2, 2], "padding": [0, 1], "weight_init": "he_normal"}),
    (lambda: MaxPool2D(2), {"pool_size": [2, 2]}),
    (lambda: MaxPool2D(3, stride=2, padding=1), {"pool_size": [3, 3], "stride": [2, 2], "padding": [1, 1]}),
    (lambda: MaxPool2D(3, strides=3, padding="valid"), {"pool_size": [3, 3]}),
]


@pytest.mark.parametrize("k", range(len(OLD_CONFIGS)))
def test_settings_older_files_hold_keep_their_config(k):
    make, config = OLD_CONFIGS[k]
    layer = make()
    assert json.dumps(layer.get_config()) == json.dumps(config)  # key order too: the same bytes in a file
    again = type(layer)(**config)
    assert again.get_config() == config and repr(again) == repr(layer)


@pytest.mark.parametrize("make, extra", [
    (lambda: Conv2D(4, 3, padding="same"), {"padding": "same"}),
    (lambda: Conv2D(4, 3, dilation_rate=(2, 1)), {"dilation_rate": [2, 1]}),
    (lambda: Conv2D(4, 3, groups=2), {"groups": 2}),
    (lambda: Conv2D(4, 3, use_bias=False), {"use_bias": False}),
    (lambda: MaxPool2D(2, padding="SAME"), {"padding": "same"}),
    (lambda: AveragePooling2D(2, strides=1, padding="same"), {"stride": [1, 1], "padding": "same"}),
])
def test_new_options_add_keys_only_when_not_default(make, extra):
    layer = make()
    config = layer.get_config()
    assert {k: v for k, v in config.items() if k not in ("filters", "kernel_size", "pool_size")} == extra
    assert type(layer)(**config).get_config() == config


def test_files_of_new_layers_round_trip_and_load_into_torch(tmp_path, rng):
    image = Input((4, 9, 8), name="image")
    h = Conv2D(6, 3, strides=2, padding="same", groups=2, dilation_rate=(1, 2), use_bias=False, name="grouped")(image)
    h = AveragePooling2D(2, padding="same")(ZeroPadding2D(((1, 0), (2, 1)))(UpSampling2D((1, 2))(h)))
    out = Dense(3)(GlobalMaxPooling2D()(Conv2D(5, 2, groups=5 // 5)(h)))
    model = Model(inputs=image, outputs=out, device="cpu", seed=2)
    model.save(tmp_path / "m.safetensors")
    loaded = Model.load(tmp_path / "m.safetensors", device="cpu")
    x = rng.normal(size=(2, 4, 9, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    grouped = model.layers[0]
    assert repr(grouped) == "Conv2D(4→6, 3×3, stride 2, padding same, dilation (1, 2), groups 2, no bias)"
    grouped.save(tmp_path / "conv.safetensors")
    tensors = safetensors.numpy.load_file(str(tmp_path / "conv.safetensors"))
    assert list(tensors) == ["weight"] and tensors["weight"].shape == (6, 2, 3, 3)
    twin = torch.nn.Conv2d(4, 6, 3, stride=2, dilation=(1, 2), groups=2, bias=False)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    top, bottom, left, right = grouped.sides
    want = twin(F.pad(torch.from_numpy(x), (left, right, top, bottom))).detach().numpy()
    np.testing.assert_allclose(grouped(x), want, rtol=1e-5, atol=1e-5)
    assert Layer.load(tmp_path / "conv.safetensors").get_config() == grouped.get_config()
    with pytest.raises(ValueError, match=r"expects tensors \['weight'\] \(it has no biases\)"):
        grouped.load_state_dict({"weight": tensors["weight"], "bias": np.zeros(6, np.float32)})
    with pytest.raises(AttributeError, match="has no biases: it was made with use_bias=False"):
        grouped.biases


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2D(3, 3, groups=2), r"filters divisible by groups. Received: filters=3, groups=2"),
    (lambda: Conv2D(4, 3, groups=0), "groups=0"),
    (lambda: Conv2D(4, 3, padding="full"), r"'valid', 'same', an integer or a pair.*padding='full'"),
    (lambda: Conv2D(4, 3, padding=(1, 2, 3)), r"padding=\(1, 2, 3\)"),
    (lambda: Conv2D(4, 3, dilation_rate=0), "dilation_rate=0"),
    (lambda: Conv2D(4, 3, strides=2, stride=3), "strides or its alias stride, not both"),
    (lambda: Conv2D(4, 3, use_bias="no"), "use_bias='no'"),
    (lambda: MaxPool2D(2, strides=0), "strides=0"),
    (lambda: AveragePooling2D(2, padding=2), "at most half the pool size"),
    (lambda: AveragePooling2D(2, padding="full"), "padding='full'"),
    (lambda: GlobalMaxPooling2D(keepdims=1), "keepdims=1"),
    (lambda: UpSampling2D(0), "size=0"),
    (lambda: ZeroPadding2D(-1), "padding=-1"),
    (lambda: ZeroPadding2D(((1, 2), 3)), r"pair of pairs.*padding=\(\(1, 2\), 3\)"),
    (lambda: ZeroPadding2D("same"), "padding='same'"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"layer 0 Conv2D\(4, 3×3, groups 2\) expects input channels divisible "
                                         r"by groups=2, received 3 channels"):
        Model([Conv2D(4, 3, groups=2)], input_size=(3, 8, 8), device="cpu")
    with pytest.raises(ValueError, match=r"has a 3×3 kernel \(spanning 5×5 at dilation 2\) larger than the 4×4"):
        Model([Conv2D(4, 3, dilation_rate=2)], input_size=(1, 4, 4), device="cpu")
    with pytest.raises(ValueError, match=r"expects images of shape \(channels, height, width\)"):
        Model([GlobalAveragePooling2D()], input_size=8, device="cpu")


# ------------------------------------------------------------ export
def everything() -> Model:
    """Every new layer and option between two inputs' worth of images."""
    image = Input((4, 9, 8), name="image")
    h = ZeroPadding2D(((1, 0), (2, 1)))(image)                                            # (4, 10, 11)
    h = ReLU()(Conv2D(6, (2, 3), strides=(3, 2), padding="same", groups=2, name="grouped")(h))  # (6, 4, 6)
    h = Conv2D(6, 3, dilation_rate=2, padding="same", groups=6, use_bias=False, name="depthwise")(h)
    h = UpSampling2D((2, 1))(h)                                                            # (6, 8, 6)
    h = AveragePooling2D(3, strides=2, padding="same")(h)                                  # (6, 4, 3)
    a = AveragePooling2D((2, 3), strides=1, padding=(1, 1))(h)                              # (6, 5, 3)
    m = MaxPool2D(2, strides=(1, 2), padding="same")(TanH()(Conv2D(5, 1, use_bias=False)(a)))  # (5, 5, 2)
    pooled = GlobalAveragePooling2D()(m)
    kept = Flatten()(GlobalMaxPooling2D(keepdims=True)(a))
    maxed = GlobalMaxPooling2D()(h)
    out = Dense(4, name="head")(Dense(7)(Flatten()(m)))
    model = Model(inputs=image, outputs=[out, pooled, kept, maxed], device="cpu", seed=6)
    rng = np.random.default_rng(6)
    for layer in model.layers:
        if "b" in layer.params:
            layer.biases = rng.normal(0, 0.5, layer.biases.shape)
    return model


def test_onnx_and_c_compute_predict_on_a_model_of_every_new_layer(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = everything()
    x = (np.random.default_rng(0).normal(size=(40, 4, 9, 8)) * 2).astype(np.float32)
    want = model.predict(x)
    model.export(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for got, expected in zip(session.run(model.output_names, {"image": x}), want):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc on this machine")
    run, _ = build_c(model, tmp_path / "c", gcc)
    for got, expected in zip(run([x]), want):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_onnx_operators_and_attributes(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = everything()
    model.export(tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    nodes = {n.name: n for n in graph.node}
    names = [layer.name for layer in model.layers]

    def attributes(name):
        return {a.name: onnx.helper.get_attribute_value(a) for a in nodes[name].attribute}

    grouped, depthwise = names.index("grouped"), names.index("depthwise")
    assert attributes(f"{grouped}.conv") == {"kernel_shape": [2, 3], "strides": [3, 2], "pads": [0, 1, 1, 1],
                                             "group": 2}
    assert attributes(f"{depthwise}.conv") == {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [2, 2, 2, 2],
                                               "dilations": [2, 2], "group": 6}
    assert len(nodes[f"{depthwise}.conv"].input) == 2  # no bias
    ops = [n.op_type for n in graph.node]
    for op in ("Pad", "Resize", "AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "Flatten"):
        assert op in ops, op
    assert all(attributes(n.name)["count_include_pad"] == 0 for n in graph.node if n.op_type == "AveragePool")
