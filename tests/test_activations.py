"""The activations: numpy's erf against math.erf, every kind against
PyTorch (float64 on the CPU, float32 on the GPU), the GPU's kernels (the
elementwise ones, a product's epilogue, a convolution's reorderings)
against numpy from 1e-6 to 30 in both signs, gradients from the output and
from the input, the layers and Keras's activation= on Dense and Conv2D
(files, errors, exports), and the plan fusing and folding by what each
kind declares."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from export_models import build_c
from graph_models import plan_gradients, torch
from intricate_py import Input, Model
from intricate_py.backends import special
from intricate_py.backends.base import ACTIVATIONS, gradient_from_output
from intricate_py.layers import (ELU, GELU, ActivationFunction, Conv2D, Dense, Flatten, Layer, LeakyReLU, ReLU, SiLU,
                                 Softmax, Softplus, Swish)
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD

#: (kind, param): every kind, leaky_relu and elu with parameters of both signs
KINDS = [("tanh", 0.0), ("sigmoid", 0.0), ("relu", 0.0), ("leaky_relu", 0.3), ("leaky_relu", 0.0),
         ("leaky_relu", -0.5), ("elu", 1.0), ("elu", -0.7), ("gelu", 0.0), ("gelu_tanh", 0.0), ("silu", 0.0),
         ("softplus", 0.0)]
FROM_OUTPUT = [(k, p) for k, p in KINDS if gradient_from_output(k, p)]


def kind_id(case) -> str:
    kind, param = case
    return f"{kind}({param:g})" if kind in ("leaky_relu", "elu") else kind


def spread(rng, *shape) -> np.ndarray:
    """Magnitudes from 1e-6 to 30 in both signs: series, exp and saturated ranges."""
    return np.sign(rng.normal(size=shape)) * 10 ** rng.uniform(-6, 1.5, size=shape)


def sig(v):
    """σ(v) in float64, accurate far out on both sides."""
    return np.exp(-np.logaddexp(0.0, -v))


def reference(kind: str, param: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f(x), f'(x), the magnitude of f'(x)'s terms) in float64, by the
    formulas of backends/base.py."""
    x = np.asarray(x, np.float64)
    v = 2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    dv = 2 * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
    cdf, pdf = special.normal_cdf(x), special.normal_pdf(x)
    table = {
        "tanh": (np.tanh(x), 4 * sig(2 * x) * sig(-2 * x), None),
        "sigmoid": (sig(x), sig(x) * sig(-x), None),
        "relu": (np.maximum(x, 0), (x > 0) * 1.0, None),
        "leaky_relu": (np.where(x > 0, x, param * x), np.where(x > 0, 1.0, param), None),
        "elu": (np.where(x > 0, x, param * np.expm1(np.minimum(x, 0))),
                np.where(x > 0, 1.0, param * np.exp(np.minimum(x, 0))), None),
        "gelu": (x * cdf, cdf + x * pdf, cdf + np.abs(x) * pdf),
        # the tanh form in float32 carries the rounding of v, |v| ulps of σ(v)
        "gelu_tanh": (x * sig(v), sig(v) + x * dv * sig(v) * sig(-v),
                      (sig(v) + np.abs(x * dv) * sig(v) * sig(-v)) * (1 + np.abs(v))),
        "silu": (x * sig(x), sig(x) + x * sig(x) * sig(-x), sig(x) + np.abs(x) * sig(x) * sig(-x)),
        "softplus": (np.logaddexp(0, x), sig(x), None),
    }
    y, slope, scale = table[kind]
    return y, slope, np.abs(slope) if scale is None else scale


def assert_relative(got, want, scale, tol: float, floor=0.0) -> None:
    """|got - want| <= tol · scale + floor, elementwise (NaN where want has NaN)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    error = np.abs(got - want) - floor
    error = np.where((got == want) | np.isnan(want), 0.0, error / np.maximum(np.asarray(scale, np.float64), 1e-300))
    assert error.max(initial=0.0) <= tol, f"max relative error {error.max():.3g}"


# ------------------------------------------------------------------ erf
def test_numpy_erf_and_erfc_against_math():
    x = np.concatenate([np.linspace(-9, 9, 20001), np.geomspace(1e-300, 27, 2000), -np.geomspace(1e-300, 27, 2000)])
    erf = np.array([math.erf(v) for v in x])
    erfc = np.array([math.erfc(v) for v in x])
    assert_relative(special.erf(x), erf, np.abs(erf), 2e-15)
    tail = (x >= special.SERIES_BELOW) & (erfc > 1e-300)
    assert_relative(special.erfc(x[tail]), erfc[tail], erfc[tail], 1e-13)
    assert_relative(special.erfc(x[~tail]), erfc[~tail], erfc[~tail], 2e-12)  # 1 - erf there
    np.testing.assert_array_equal(special.erf(np.array([np.inf, -np.inf, 0.0, -0.0])), [1, -1, 0, -0.0])
    np.testing.assert_array_equal(special.erfc(np.array([np.inf, -np.inf])), [0, 2])
    assert np.isnan(special.erf(np.array([np.nan]))).all() and np.isnan(special.erfc(np.array([np.nan]))).all()
    assert special.normal_cdf(np.array([0.0]))[0] == 0.5
    np.testing.assert_allclose(special.normal_pdf(np.array([0.0, 1.0])), [1 / math.sqrt(2 * math.pi),
                                                                          math.exp(-0.5) / math.sqrt(2 * math.pi)])


def test_known_values(cpu64):
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    for kind, param, want in [
        ("leaky_relu", 0.3, [-0.6, -0.15, 0.0, 1.5]),
        ("elu", 2.0, [2 * (math.exp(-2) - 1), 2 * (math.exp(-0.5) - 1), 0.0, 1.5]),
        ("gelu", 0.0, [-2 * 0.5 * math.erfc(2 / math.sqrt(2)), -0.5 * 0.5 * math.erfc(0.5 / math.sqrt(2)), 0.0,
                       1.5 * 0.5 * math.erfc(-1.5 / math.sqrt(2))]),
        ("silu", 0.0, [-2 / (1 + math.exp(2)), -0.5 / (1 + math.exp(0.5)), 0.0, 1.5 / (1 + math.exp(-1.5))]),
        ("softplus", 0.0, [math.log1p(math.exp(-2)), math.log1p(math.exp(-0.5)), math.log(2),
                           math.log1p(math.exp(1.5))]),
    ]:
        out = np.empty_like(x)
        cpu64.activation(kind, x, out, param)
        np.testing.assert_allclose(out, want, rtol=4e-15, atol=0, err_msg=kind)


# -------------------------------------------------------- numpy vs PyTorch
def torch_function(kind: str, param: float):
    F = torch.nn.functional
    return {
        "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, param), "elu": lambda t: F.elu(t, param),
        "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu,
        "softplus": lambda t: F.softplus(t, threshold=50.0),  # exact below 50 (PyTorch returns x from 20)
    }[kind]


@pytest.mark.parametrize("case", KINDS, ids=kind_id)
def test_numpy_kinds_equal_pytorch_in_float64(cpu64, rng, case):
    if torch is None:
        pytest.skip("no PyTorch")
    kind, param = case
    x = spread(rng, 40, 30)
    dy = rng.normal(size=x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_function(kind, param)(xt)
    (yt * torch.tensor(dy)).sum().backward()
    y = np.empty_like(x)
    cpu64.activation(kind, x, y, param)
    y_ref, _, scale = reference(kind, param, x)
    # PyTorch's GELU, 1 + erf and 1 + tanh, loses what is below float64's ulp of 1
    assert_relative(y, yt.detach().numpy(), np.abs(y_ref), 1e-13, np.abs(x) * 2e-16)
    want = xt.grad.numpy()
    # and so do its 1 - tanh², Φ + x φ and (1 + tanh u) / 2 + x u' (1 - tanh² u) / 2
    # (far out, where f' is small), by ulps of their largest terms
    floor = np.abs(dy) * (1 + np.abs(x) ** 3) * 2e-16
    dx = np.empty_like(x)
    cpu64.activation_grad_from_input(kind, x, dy, dx, param)
    assert_relative(dx, want, np.abs(dy) * scale, 1e-13, floor)
    if gradient_from_output(kind, param):
        cpu64.activation_grad(kind, y, dy, dx, param)
        # from y: 1 ± y, and elu's y + alpha, carry y's rounding (ulps of 1 or of alpha)
        floor = np.abs(dy) * 4e-16 * max(1.0, abs(param))
        assert_relative(dx, want, np.abs(dy) * scale, 1e-13, floor)


@pytest.mark.parametrize("case", [c for c in KINDS if c not in FROM_OUTPUT], ids=kind_id)
def test_a_gradient_the_output_does_not_determine_is_refused(cpu, gpu, rng, case):
    """numpy raises; the GPU gives NaN, in activation_grad and in a
    product's grad_of (never another formula)."""
    kind, param = case
    y, dy = rng.normal(size=(3, 4)).astype(np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="activation_grad_from_input"):
        cpu.activation_grad(kind, y, dy, np.empty_like(y), param)
    with pytest.raises(ValueError, match="output determines its gradient"):
        cpu.matmul(y.T, dy, np.empty((4, 4), np.float32), grad_of=(kind, np.ones((4, 4), np.float32)),
                   activation_param=param)
    out = gpu.empty((3, 4))
    gpu.activation_grad(kind, gpu.from_numpy(y), gpu.from_numpy(dy), out, param)
    assert np.isnan(gpu.to_numpy(out)).all()
    product = gpu.empty((4, 4))
    gpu.matmul(gpu.from_numpy(y), gpu.from_numpy(dy), product, transpose_a=True,
               grad_of=(kind, gpu.from_numpy(np.ones((4, 4), np.float32))), activation_param=param)
    assert np.isnan(gpu.to_numpy(product)).all()


def test_float32_gelu_takes_the_gpus_formula_within_its_bounds_in_chunks(cpu, rng):
    """A float32 model's GELU on numpy (special.gelu32: the GPU's float32
    formula, CHUNK values at a time) stays within 1e-6 of the float64
    functions, relative to f and to f''s terms, over sizes that end inside
    a chunk and on a strided view."""
    x = spread(rng, 3, special.CHUNK + 17).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    y_ref, slope, scale = reference("gelu", 0.0, x)
    y, dx = np.empty_like(x), np.empty_like(x)
    cpu.activation("gelu", x, y)
    cpu.activation_grad_from_input("gelu", x, dy, dx)
    assert_relative(y, y_ref, np.abs(y_ref), 1e-6, 1e-37)
    assert_relative(dx, dy * slope, np.abs(dy) * scale, 1e-6, 1e-37)
    strided, out = x[:, ::3], np.empty((3, x[:, ::3].shape[1]), np.float32)
    cpu.activation("gelu", strided, out)
    np.testing.assert_array_equal(out, y[:, ::3])


# ------------------------------------------------------------ GPU vs numpy
@pytest.mark.parametrize("case", KINDS, ids=kind_id)
@pytest.mark.parametrize("shape", [(1, 1), (129, 31)])
def test_the_gpu_computes_each_kind_as_numpy(gpu, cpu, rng, case, shape):
    """f, f' from the input and f' from the output (where it comes from
    there) within 1e-6 of numpy, relative to f, to the terms of f', or for
    the tanh form of GELU to those times 1 + |v| (the rounding of its
    argument v in float32)."""
    kind, param = case
    x = spread(rng, *shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    y_ref, _, scale = reference(kind, param, x)
    want = np.empty_like(x)
    cpu.activation(kind, x, want, param)
    y = gpu.empty(shape)
    gpu.activation(kind, gpu.from_numpy(x), y, param)
    v = 2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x.astype(np.float64) ** 3)
    y_scale = np.abs(y_ref) * (1 + np.abs(v) if kind == "gelu_tanh" else 1)
    assert_relative(gpu.to_numpy(y), want, y_scale, 1e-6, 1e-37)
    want_dx, dx = np.empty_like(x), gpu.empty(shape)
    cpu.activation_grad_from_input(kind, x, dy, want_dx, param)
    gpu.activation_grad_from_input(kind, gpu.from_numpy(x), gpu.from_numpy(dy), dx, param)
    assert_relative(gpu.to_numpy(dx), want_dx, np.abs(dy) * scale, 1e-6, 1e-37)
    if gradient_from_output(kind, param):
        cpu.activation_grad(kind, want, dy, want_dx, param)  # both from the same saved output
        gpu.activation_grad(kind, gpu.from_numpy(want), gpu.from_numpy(dy), dx, param)
        assert_relative(gpu.to_numpy(dx), want_dx, np.abs(want_dx), 1e-6, 1e-37)


@pytest.mark.parametrize("case", KINDS, ids=kind_id)
def test_infinities_nan_and_zeros_as_numpy(gpu, cpu, case):
    kind, param = case
    x = np.array([[np.inf, -np.inf, np.nan, 0.0, -0.0, 1e4, -1e4, 3e38]], np.float32)
    want = np.empty_like(x)
    with np.errstate(all="ignore"):
        cpu.activation(kind, x, want, param)
    y = gpu.empty(x.shape)
    gpu.activation(kind, gpu.from_numpy(x), y, param)
    np.testing.assert_allclose(gpu.to_numpy(y), want, rtol=1e-6, atol=0)  # NaN where numpy has NaN


@pytest.mark.parametrize("case", KINDS, ids=kind_id)
def test_a_products_epilogue_and_a_convolutions_reorderings(gpu, cpu, rng, case):
    """f(x W + b) and f'(y) · (dY Wᵀ) in one product; f of a reordering
    with a bias, and a gradient reordered through f' (to_channels_first
    and to_channels_last), on the GPU as on numpy."""
    kind, param = case
    m, k, n = 17, 33, 5
    a, b, bias = rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(k, n)).astype(np.float32), \
        rng.normal(size=n).astype(np.float32)
    want = np.empty((m, n), np.float32)
    cpu.matmul(a, b, want, bias=bias, activation=kind, activation_param=param)
    plain = np.empty((m, n), np.float32)
    cpu.matmul(a, b, plain, bias=bias)
    cpu.activation(kind, plain.copy(), plain, param)
    np.testing.assert_array_equal(want, plain)
    out = gpu.empty((m, n))
    gpu.matmul(gpu.from_numpy(a), gpu.from_numpy(b), out, bias=gpu.from_numpy(bias), activation=kind,
               activation_param=param)
    magnitude = np.abs(a).astype(np.float64) @ np.abs(b) + np.abs(bias)
    _, slope, scale = reference(kind, param, plain)
    np.testing.assert_allclose(gpu.to_numpy(out), want, rtol=1e-5, atol=1e-6 * magnitude.max())
    rows, planes = rng.normal(size=(3, 2 * 6)).astype(np.float32), np.empty((2, 3, 2, 3), np.float32)
    channel_bias = rng.normal(size=3).astype(np.float32)
    cpu.to_channels_first(rows, planes, bias=channel_bias, activation=kind, activation_param=param)
    got = gpu.empty(planes.shape)
    gpu.to_channels_first(gpu.from_numpy(rows), got, bias=gpu.from_numpy(channel_bias), activation=kind,
                          activation_param=param)
    np.testing.assert_allclose(gpu.to_numpy(got), planes, rtol=1e-5, atol=1e-7)
    if not gradient_from_output(kind, param):
        return
    dy, w = rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(n, k)).astype(np.float32)
    cpu.matmul(dy, w, want, transpose_b=True, grad_of=(kind, plain), activation_param=param)
    gpu.matmul(gpu.from_numpy(dy), gpu.from_numpy(w), out, transpose_b=True,
               grad_of=(kind, gpu.from_numpy(plain)), activation_param=param)
    np.testing.assert_allclose(gpu.to_numpy(out), want, rtol=1e-5,
                               atol=1e-6 * (np.abs(dy) @ np.abs(w.T)).max())
    grad = rng.normal(size=planes.shape).astype(np.float32)
    want_rows = np.empty_like(rows)
    cpu.to_channels_last(grad, want_rows, grad_of=(kind, planes), activation_param=param)
    dz = np.empty_like(grad)
    cpu.activation_grad(kind, planes, grad, dz, param)
    np.testing.assert_array_equal(want_rows, dz.transpose(1, 0, 2, 3).reshape(3, -1))
    got_rows = gpu.empty(rows.shape)
    gpu.to_channels_last(gpu.from_numpy(grad), got_rows, grad_of=(kind, gpu.from_numpy(planes)),
                         activation_param=param)
    np.testing.assert_allclose(gpu.to_numpy(got_rows), want_rows, rtol=1e-5, atol=1e-7)


def test_the_shaders_share_one_library(gpu):
    """activation_functions.wgsl is no kernel file of its own; each file
    that includes it gets it once (matmul_subgroup through matmul too),
    and the number of every kind is the preamble's."""
    from intricate_py.backends.shaders import KernelFile, shader_dir

    assert "activation_functions" not in gpu.kernels.files
    for name in ("activations", "matmul", "matmul_subgroup", "conv", "losses"):
        source = KernelFile.read(shader_dir() / f"{name}.wgsl").source
        assert source.count("fn normal_cdf(") == 1, name
    x = gpu.from_numpy(np.ones((2, 3), np.float32))
    out = gpu.empty((2, 3))
    for entry in ("activation_forward", "activation_backward", "activation_input_backward"):
        gpu._dispatch(entry, gpu._grid(6), (x, x, out), count=6, kind=len(ACTIVATIONS), a_off=x.offset,
                      b_off=x.offset, out_off=out.offset)
        assert np.isnan(gpu.to_numpy(out)).all(), entry


# ------------------------------------------------------------------ layers
def test_layer_arguments_are_checked():
    for bad, match in [(lambda: LeakyReLU(-0.1), "non-negative finite number. Received: negative_slope=-0.1"),
                       (lambda: LeakyReLU(math.inf), "negative_slope=inf"),
                       (lambda: LeakyReLU(1e39), "float32's range"),
                       (lambda: ELU(math.nan), "finite number. Received: alpha=nan"),
                       (lambda: ELU("1"), "alpha='1'"),
                       (lambda: GELU(approximate="tanh"), "approximate=True or False. Received: approximate='tanh'"),
                       (lambda: Dense(3, activation="relu6"), r"among 'elu', .* 'linear' or None. Received: "
                                                              r"activation='relu6'"),
                       (lambda: Dense(3, activation=ReLU), "Received: activation=<class"),
                       (lambda: Conv2D(2, 3, activation="softmax"), "Received: activation='softmax'")]:
        with pytest.raises(ValueError, match=match):
            bad()
    assert Swish is SiLU
    assert repr(LeakyReLU()) == "LeakyReLU()" and repr(LeakyReLU(0.1)) == "LeakyReLU(negative_slope=0.1)"
    assert repr(ELU(alpha=-0.5)) == "ELU(alpha=-0.5)" and repr(GELU(True)) == "GELU(approximate=True)"
    assert repr(Dense(4, input_size=3, activation="gelu")) == "Dense(3→4, gelu)"
    assert repr(Conv2D(2, 3, activation="elu")) == "Conv2D(2, 3×3, elu)"


def test_activation_configs_are_written_only_when_given(tmp_path):
    assert "activation" not in Dense(3).get_config() and "activation" not in Conv2D(2, 3).get_config()
    assert Dense(3, activation="linear").activation is None
    assert "activation" not in Dense(3, activation=None).get_config()
    assert LeakyReLU().get_config() == {} and LeakyReLU(0.01).get_config() == {"negative_slope": 0.01}
    assert ELU().get_config() == {} and GELU().get_config() == {}
    for layer in (Dense(3, input_size=2, activation="swish"), Conv2D(2, 3, activation="leaky_relu"),
                  LeakyReLU(0.2), ELU(alpha=-1.5), GELU(approximate=True)):
        layer.save(tmp_path / "layer.safetensors")
        again = Layer.load(tmp_path / "layer.safetensors")
        assert type(again) is type(layer) and again.get_config() == layer.get_config()


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "softmax", "leaky_relu", "elu", "gelu", "silu",
                                  "swish", "softplus"])
def test_dense_activation_is_the_layer_after_it(name):
    """Dense(activation=name) computes what Dense then the layer computes,
    forward and backward, bit for bit on numpy (Keras's defaults: leaky_relu's
    slope 0.2, elu's alpha 1, gelu exact)."""
    layer = {"relu": ReLU, "softmax": Softmax, "leaky_relu": lambda: LeakyReLU(0.2), "swish": SiLU,
             "silu": SiLU, "elu": ELU, "gelu": GELU, "softplus": Softplus}.get(name)
    if layer is None:
        from intricate_py.layers import Sigmoid, TanH
        layer = {"tanh": TanH, "sigmoid": Sigmoid}[name]
    own = Model([Dense(6, activation=name), Dense(3)], input_size=4, dtype="float64", seed=3)
    apart = Model([Dense(6), layer(), Dense(3)], input_size=4, dtype="float64", seed=3)
    apart.set_weights(own.get_weights())
    rng = np.random.default_rng(0)
    xs, rs = [rng.normal(size=(5, 4))], [rng.normal(size=(5, 3))]
    outs, grads = plan_gradients(own, xs, rs)
    want_outs, want_grads = plan_gradients(apart, xs, rs)
    np.testing.assert_array_equal(outs[0], want_outs[0])
    for got, want in zip(grads.values(), want_grads.values()):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(own.predict(xs[0]), apart.predict(xs[0]))


def torch_module(function: ActivationFunction):
    """PyTorch's module for an activation (softplus exact below 50)."""
    nn = torch.nn
    kind, param = function
    return {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(param), "elu": lambda: nn.ELU(param),
            "gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "silu": nn.SiLU,
            "softplus": lambda: nn.Softplus(threshold=50.0)}[kind]()


def torch_twin(model: Model, dtype):
    """The model's Dense layers and activations as a torch.nn.Sequential."""
    modules = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            state = layer.state_dict()
            linear = torch.nn.Linear(*state["weight"].shape[::-1]).to(dtype)
            linear.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in state.items()})
            modules.append(linear)
            if layer.function is not None:
                modules.append(torch_module(layer.function))
        else:
            modules.append(torch_module(layer.function))
    return torch.nn.Sequential(*modules)


PARITY = [lambda: LeakyReLU(), lambda: LeakyReLU(0.0), lambda: ELU(), lambda: ELU(alpha=-0.7), lambda: GELU(),
          lambda: GELU(approximate=True), lambda: SiLU(), lambda: Softplus(), "leaky_relu", "gelu", "silu"]


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize("make", PARITY, ids=lambda m: m if isinstance(m, str) else repr(m()))
def test_layers_equal_pytorch(device, make, request):
    """A Dense, the activation (a layer, or the Dense's activation=), a
    Dense: the outputs and every parameter's gradient as PyTorch's
    modules give them, float64 on the CPU, float32 on the GPU."""
    if torch is None:
        pytest.skip("no PyTorch")
    if device == "gpu":
        request.getfixturevalue("gpu")
    dtype = "float64" if device == "cpu" else "float32"
    first = Dense(7, activation=make) if isinstance(make, str) else Dense(7)
    layers = [first, Dense(3)] if isinstance(make, str) else [first, make(), Dense(3)]
    model = Model(layers, input_size=5, device=device, dtype=dtype, seed=2)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, Dense):
            layer.biases = rng.normal(0, 0.5, layer.biases.shape)
    x, r = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 3))
    outs, grads = plan_gradients(model, [x], [r])
    twin = torch_twin(model, torch.float64)
    y = twin(torch.tensor(x))
    (y * torch.tensor(r)).sum().backward()
    rtol, atol = (1e-12, 1e-13) if device == "cpu" else (1e-4, 1e-5)
    np.testing.assert_allclose(outs[0], y.detach().numpy(), rtol=rtol, atol=atol)
    linears = [m for m in twin if isinstance(m, torch.nn.Linear)]
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    for layer, linear in zip(dense, linears):
        np.testing.assert_allclose(grads[(layer.name, "W")], linear.weight.grad.numpy().T, rtol=rtol, atol=atol)
        np.testing.assert_allclose(grads[(layer.name, "b")], linear.bias.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "gelu", "softplus"])
def test_conv2d_activation_equals_pytorch(name, cpu64):
    if torch is None:
        pytest.skip("no PyTorch")
    x = Input((2, 5, 6), name="x")
    conv = Conv2D(3, (3, 2), stride=(2, 1), padding=1, activation=name)
    model = Model(inputs=x, outputs=Dense(2)(Flatten()(conv(x))), dtype="float64", seed=4)
    rng = np.random.default_rng(2)
    conv.biases = rng.normal(0, 0.5, 3)
    xs, rs = [rng.normal(size=(3, 2, 5, 6))], [rng.normal(size=(3, 2))]
    outs, grads = plan_gradients(model, xs, rs)
    state = {k: torch.tensor(v) for k, v in conv.state_dict().items()}
    head = {k: torch.tensor(v) for k, v in model.layers[-1].state_dict().items()}
    for t in (*state.values(), *head.values()):
        t.requires_grad_(True)
    h = torch.nn.functional.conv2d(torch.tensor(xs[0]), state["weight"], state["bias"], stride=(2, 1), padding=1)
    h = torch_module(conv.function)(h)
    y = torch.nn.functional.linear(h.flatten(1), head["weight"], head["bias"])
    (y * torch.tensor(rs[0])).sum().backward()
    np.testing.assert_allclose(outs[0], y.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads[(conv.name, "W")], state["weight"].grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads[(conv.name, "b")], state["bias"].grad.numpy(), rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------- the plan
def step_dispatches(gpu, middle: list, first: Dense | None = None) -> int:
    """Dispatches of a training step (SGD, squared error) of ``first``
    (Dense(16)), ``middle``, Dense(3)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 7)).astype(np.float32), rng.normal(size=(32, 3)).astype(np.float32)
    model = Model([first or Dense(16), *middle, Dense(3)], input_size=7, device="gpu", seed=0)
    model.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.01), epochs=1, batch_size=16)
    before = model.device.stats()
    model.fit(x, y, epochs=2, batch_size=16)  # 4 steps
    after = model.device.stats()
    reads = after["readbacks"] - before["readbacks"]
    return (after["dispatches"] - before["dispatches"] - reads) // 4


def test_the_plan_fuses_and_folds_where_a_kind_allows(gpu):
    """An activation whose gradient comes from its output (LeakyReLU, ELU
    of alpha >= 0, Softplus) runs in the Dense's product and its gradient
    in the next one's, as ReLU does; GELU, SiLU and an ELU of negative
    alpha keep their input: a dispatch each way more. A Dense's own
    activation= costs what the layer after it costs."""
    relu = step_dispatches(gpu, [ReLU()])
    assert step_dispatches(gpu, []) == relu
    for layer in (LeakyReLU(), LeakyReLU(0.0), ELU(), Softplus()):
        assert step_dispatches(gpu, [layer]) == relu, layer
    for layer in (GELU(), GELU(approximate=True), SiLU(), ELU(alpha=-0.5)):
        assert step_dispatches(gpu, [layer]) == relu + 2, layer
    # a Dense's own activation: in its product forward, its own dispatch back
    # (nothing folds it), while the ReLU before that Dense folds into its dY·Wᵀ
    assert step_dispatches(gpu, [], Dense(16, activation="elu")) == relu + 1
    apart = step_dispatches(gpu, [ReLU(), Dense(8), ReLU()])
    assert step_dispatches(gpu, [ReLU(), Dense(8, activation="relu")]) == apart + 1
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 7)).astype(np.float32), rng.normal(size=(32, 3)).astype(np.float32)
    trained = []
    for device in ("gpu", "cpu"):  # the fold trains as numpy does
        model = Model([Dense(16), LeakyReLU(), Dense(3)], input_size=7, device=device, seed=0)
        history = model.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.05), epochs=5, batch_size=16, verbose=0)
        trained.append((history.history["loss"], model.predict(x)))
    assert trained[0][0][-1] < trained[0][0][0]
    np.testing.assert_allclose(trained[0][0], trained[1][0], rtol=1e-5)
    np.testing.assert_allclose(trained[0][1], trained[1][1], rtol=1e-4, atol=1e-5)
    own = Model([Dense(16, activation="leaky_relu"), Dense(3)], input_size=7, device="gpu", seed=0)
    own.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.01), epochs=1, batch_size=16)
    apart = Model([Dense(16), LeakyReLU(0.2), Dense(3)], input_size=7, device="gpu", seed=0)
    apart.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.01), epochs=1, batch_size=16)
    np.testing.assert_allclose(own.predict(x), apart.predict(x), rtol=1e-5, atol=1e-6)


def test_gelu_fuses_into_the_product_in_inference(gpu):
    """In inference no gradient needs GELU's input: Dense and GELU are one
    product there, as Dense and ReLU."""
    x = np.random.default_rng(0).normal(size=(9, 7)).astype(np.float32)
    counts = []
    for middle in (ReLU(), GELU()):
        model = Model([Dense(16), middle, Dense(3)], input_size=7, device="gpu", seed=0)
        model.predict(x)
        before = gpu.stats()["dispatches"]
        got = model.predict(x)
        counts.append(gpu.stats()["dispatches"] - before)
    assert counts[0] == counts[1]
    cpu = Model([Dense(16), GELU(), Dense(3)], input_size=7, device="cpu", seed=0)
    np.testing.assert_allclose(got, cpu.predict(x), rtol=1e-5, atol=1e-6)


def test_a_dense_softmax_is_a_classifier_for_cross_entropy():
    model = Model([Dense(4, activation="softmax")], input_size=3, seed=0)
    x = np.random.default_rng(0).normal(size=(8, 3))
    y = np.eye(4)[np.arange(8) % 4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1), epochs=1, batch_size=8, verbose=0)
    with pytest.warns(UserWarning, match="remove its activation"):
        Model([Dense(4, activation="softmax")], input_size=3).fit(
            x, y, loss=CategoricalCrossEntropy(from_logits=True), optimizer=SGD(0.1), epochs=1, verbose=0)


# ------------------------------------------------------------------ export
def test_c_and_onnx_compute_each_activation(tmp_path):
    """Every activation layer and activation= as C (compiled) and in
    onnxruntime, against predict from -6 to 6 and at ±1e4, ±1e30 and ±0."""
    values = np.concatenate([np.linspace(-6, 6, 1194), [1e4, -1e4, 1e30, -1e30, 0.0, -0.0]])
    x = values.astype(np.float32).reshape(-1, 4)
    models = [Model([layer], input_size=4, device="cpu") for layer in
              (LeakyReLU(), ELU(alpha=0.6), GELU(), GELU(approximate=True), SiLU(), Softplus())]
    for name in ("leaky_relu", "elu", "gelu", "silu", "softplus", "softmax"):
        dense = Dense(4, input_size=4, activation=name)
        models.append(Model([dense], device="cpu", seed=1))
    ort = pytest.importorskip("onnxruntime")
    for i, model in enumerate(models):
        want = model.predict(x)
        run, _ = build_c(model, tmp_path / str(i), "cc")
        np.testing.assert_allclose(run([x])[0], want, rtol=1e-5, atol=1e-30, err_msg=repr(model.layers[0]))
        model.export(tmp_path / f"{i}.onnx")
        session = ort.InferenceSession(str(tmp_path / f"{i}.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=repr(model.layers[0]))


def test_conv2d_activation_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = Model([Conv2D(3, 2, padding=1, activation="gelu"), Flatten(), Dense(2, activation="elu")],
                  input_size=(2, 4, 5), device="cpu", seed=5)
    x = np.random.default_rng(0).normal(size=(6, 2, 4, 5)).astype(np.float32) * 2
    want = model.predict(x)
    run, _ = build_c(model, tmp_path, "cc")
    np.testing.assert_allclose(run([x])[0], want, rtol=1e-5, atol=1e-6)
    model.export(tmp_path / "net.onnx")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)
