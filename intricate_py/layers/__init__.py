"""Layers, each with a forward and a backward pass: Dense, the activations,
the image layers Conv2D, MaxPool2D, AveragePooling2D, GlobalMaxPooling2D,
GlobalAveragePooling2D, UpSampling2D and ZeroPadding2D, Flatten and
Reshape, Dropout, the normalizations BatchNormalization and
LayerNormalization, and the merge layers Add, Subtract, Multiply, Average
and Concatenate, and for sequences Embedding, PositionEmbedding and
MultiHeadAttention."""

from .activations import (ELU, GELU, Activation, ActivationFunction, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Softplus,
                          Swish, TanH)
from .base import Context, Layer, Parameter
from .registry import LAYER_TYPES, register_layer
from .conv import Conv2D
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPool2D
from .resizing import UpSampling2D, ZeroPadding2D
from .dense import Dense
from .attention import MultiHeadAttention
from .embedding import Embedding, PositionEmbedding
from .dropout import Dropout
from .merge import Add, Average, Concatenate, Merge, Multiply, Subtract
from .normalization import BatchNormalization, LayerNormalization
from .reshape import Flatten, Reshape

__all__ = [
    "Layer",
    "Context",
    "Parameter",
    "Dense",
    "Activation",
    "TanH",
    "Sigmoid",
    "ReLU",
    "Softmax",
    "LeakyReLU",
    "ELU",
    "GELU",
    "SiLU",
    "Swish",
    "Softplus",
    "ActivationFunction",
    "Conv2D",
    "MaxPool2D",
    "AveragePooling2D",
    "GlobalMaxPooling2D",
    "GlobalAveragePooling2D",
    "UpSampling2D",
    "ZeroPadding2D",
    "Flatten",
    "Reshape",
    "Dropout",
    "BatchNormalization",
    "LayerNormalization",
    "Merge",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Concatenate",
    "Embedding",
    "PositionEmbedding",
    "MultiHeadAttention",
    "LAYER_TYPES",
    "register_layer",
]
