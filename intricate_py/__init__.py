"""intricate-py: neural networks whose layers run as WGSL compute shaders
through wgpu-py, with a numpy CPU fallback."""

from ._version import __version__
from .backends import Kernel, select_backend
from .device_choice import devices
from .graph import Input
from .model import Model
from .population import Population
from .plot import plot_model
from .saving import FormatError
from .training import History, HaltingCondition, MinAccuracyReached, MinLossReached
from .layers import register_layer
from . import callbacks, data, layers, losses, metrics, optimizers

__all__ = [
    "Model",
    "Population",
    "Input",
    "plot_model",
    "FormatError",
    "History",
    "HaltingCondition",
    "MinAccuracyReached",
    "MinLossReached",
    "callbacks",
    "data",
    "layers",
    "losses",
    "metrics",
    "optimizers",
    "select_backend",
    "register_layer",
    "Kernel",
    "devices",
    "__version__",
]
