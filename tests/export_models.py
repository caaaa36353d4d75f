"""The networks the export tests run in onnxruntime and as C: between them
they hold every layer type but the global max pooling (which
tests/test_conv_options.py exports), Conv2D and the pooling layers with
strides, padding ("same" too), dilation and groups, odd widths, and a
model that ends with logits."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np

from intricate_py import MinLossReached, Model
from intricate_py.layers import (AveragePooling2D, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D, Layer,
                                 MaxPool2D, ReLU, Sigmoid, Softmax, TanH, UpSampling2D, ZeroPadding2D)
from intricate_py.losses import MeanSquared
from intricate_py.optimizers import SGD

#: What the generated C must compile warning-free under.
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]

#: Within this relative difference of predict (the absolute term covers
#: values near 0, where sums that cancel round differently in any order).
RTOL, ATOL = 1e-5, 1e-6

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def random_biases(model: Model, seed: int) -> Model:
    """Nonzero biases (they start at zero), so that the tests see them."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if "b" in layer.params:
            layer.biases = rng.normal(0, 0.5, layer.biases.shape)
    return model


def mlp(device: str = "cpu", dtype: str = "float32") -> Model:
    return random_biases(Model([Dense(16), TanH(), Dense(13), Sigmoid(), Dense(10), ReLU(), Dense(4), Softmax()],
                                input_size=7, device=device, dtype=dtype, seed=1), 1)


def logits_mlp() -> Model:
    """A classifier without its Softmax, as trained with a from_logits loss."""
    return random_biases(Model([Dense(9), ReLU(), Dropout(0.5), Dense(3)], input_size=5, device="cpu", seed=2), 2)


def cnn() -> Model:
    return random_biases(Model(
        [Conv2D(4, 3, stride=2, padding=1), ReLU(), MaxPool2D(3, stride=2, padding=1),
         Conv2D(3, (2, 3), stride=(1, 2), padding=(1, 0)), TanH(), MaxPool2D((2, 1), stride=1),
         Flatten(), Dropout(0.25), Dense(7), Sigmoid(), Dense(5), Softmax()],
        input_size=(2, 11, 13), device="cpu", seed=3), 3)


def modern_cnn() -> Model:
    """Keras's newer image options on a path: "same" padding with strides
    and even kernels, dilation, groups and a depthwise convolution without
    bias, zero padding, upsampling, average and global average pooling."""
    return random_biases(Model(
        [ZeroPadding2D(((0, 1), (2, 0))), Conv2D(6, (2, 3), strides=(2, 3), padding="same", groups=2), ReLU(),
         Conv2D(6, 3, dilation_rate=2, padding="same", groups=6, use_bias=False), UpSampling2D((1, 2)),
         AveragePooling2D(3, strides=2, padding="same"), TanH(), MaxPool2D(2, padding="same"),
         AveragePooling2D(2, strides=1, padding=1), GlobalAveragePooling2D(), Dense(5), Softmax()],
        input_size=(2, 11, 13), device="cpu", seed=5), 5)


def xor() -> Model:
    """Intricate's XoR network, trained until the loss is below 0.01."""
    model = Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device="cpu", seed=0)
    history = model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=10_000, batch_size=4,
                        halting_condition=MinLossReached(0.01))
    assert history.history["loss"][-1] < 0.01
    return model


MODELS = {"mlp": mlp, "logits_mlp": logits_mlp, "cnn": cnn, "modern_cnn": modern_cnn, "xor": xor}


def inputs(model: Model, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random float32 samples for ``model``, spread beyond [-1, 1]."""
    return (np.random.default_rng(seed).normal(size=(n, *model.input_shape)) * 2).astype(np.float32)


class Doubling(Layer):
    """A layer no exporter knows."""

    def call(self, ctx, x):
        return x * 2


def build_c(model: Model, folder: Path, compiler: str, name: str = "net"):
    """Export ``model`` as C, compile it into a shared library and return
    ``run(xs) -> ys`` (a list of arrays per input and per output) through
    its batch function, and the library."""
    folder.mkdir(exist_ok=True)
    model.export(folder, format="c", name=name)
    library = folder / f"lib{name}.so"
    subprocess.run([compiler, *STRICT, "-O2", "-shared", "-fPIC", str(folder / f"{name}.c"), "-o", str(library),
                    "-lm"], check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(library))

    def run(xs: list[np.ndarray]) -> list[np.ndarray]:
        xs = [np.ascontiguousarray(x, np.float32) for x in xs]
        ys = [np.empty((len(xs[0]), *s.shape), np.float32) for s in model.outputs]
        pointers = [a.ctypes.data_as(ctypes.c_void_p) for a in xs + ys]
        lib[f"{name}_batch"](*pointers, ctypes.c_size_t(len(xs[0])))
        return ys

    return run, lib
