"""One CPU epoch of two convolutional networks on 6,000 Fashion-MNIST
images, for the library first on ``sys.path`` (the current folder's, or
another checkout's): to compare two versions of the library.

    cd other/checkout && python /path/to/benchmarks/conv_epoch.py

The networks: the plain CNN of ``examples/mnist/main.py --model cnn`` at
batch 64, and the first stage of the residual network (a 3×3 convolution
of 16 channels with batch normalization, then two residual blocks of
them) at batch 128, both with Adam, each after a warm-up fit of 256 images.
Prints the seconds of each as JSON, and which library ran.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())

import numpy as np  # noqa: E402

import intricate_py  # noqa: E402
from intricate_py import Input, Model  # noqa: E402
from intricate_py.datasets import load_fashion_mnist  # noqa: E402
from intricate_py.layers import (Add, BatchNormalization, Conv2D, Dense, Dropout, Flatten,  # noqa: E402
                                 GlobalAveragePooling2D, MaxPool2D, ReLU, Softmax)
from intricate_py.losses import CategoricalCrossEntropy  # noqa: E402
from intricate_py.optimizers import Adam  # noqa: E402


def conv_bn(h, filters):
    return BatchNormalization()(Conv2D(filters, 3, padding=1, use_bias=False)(h))


def residual_stage() -> Model:
    images = Input((1, 28, 28))
    h = ReLU()(conv_bn(images, 16))
    for _ in range(2):
        h = ReLU()(Add()([h, conv_bn(ReLU()(conv_bn(h, 16)), 16)]))
    return Model(images, Softmax()(Dense(10)(GlobalAveragePooling2D()(h))), device="cpu", seed=0)


def cnn() -> Model:
    layers = [Conv2D(32, 5), ReLU(), MaxPool2D(2), Conv2D(64, 5), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.25),
              Dense(256), ReLU(), Dropout(0.5), Dense(10), Softmax()]
    return Model(layers, input_size=(1, 28, 28), device="cpu", seed=0)


def main() -> None:
    (x, y), _ = load_fashion_mnist()
    x, y = (x[:6000].astype(np.float32) / 255).reshape(-1, 1, 28, 28), y[:6000]
    seconds = {}
    for name, model, batch in (("cnn", cnn(), 64), ("resnet stage", residual_stage(), 128)):
        model.fit(x[:256], y[:256], loss=CategoricalCrossEntropy(), optimizer=Adam(1e-3), epochs=1,
                  batch_size=batch, verbose=0)
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
        seconds[name] = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "library": os.path.dirname(intricate_py.__file__)}))


if __name__ == "__main__":
    main()
