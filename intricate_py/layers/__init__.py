"""Layers, each with forward and back_propagate: Dense, the activations, and
the image layers Conv2D, MaxPool2D and Flatten, and Dropout."""

from .activations import Activation, ReLU, Sigmoid, Softmax, TanH
from .base import LAYER_TYPES, Layer, Parameter
from .conv import Conv2D, Flatten, MaxPool2D
from .dense import Dense
from .dropout import Dropout

__all__ = [
    "Layer",
    "Parameter",
    "Dense",
    "Activation",
    "TanH",
    "Sigmoid",
    "ReLU",
    "Softmax",
    "Conv2D",
    "MaxPool2D",
    "Flatten",
    "Dropout",
    "LAYER_TYPES",
]
