"""Layers: Dense and the activations, each with forward and back_propagate."""

from .activations import Activation, ReLU, Sigmoid, Softmax, TanH
from .base import LAYER_TYPES, Layer, Parameter
from .dense import Dense

__all__ = [
    "Layer",
    "Parameter",
    "Dense",
    "Activation",
    "TanH",
    "Sigmoid",
    "ReLU",
    "Softmax",
    "LAYER_TYPES",
]
