"""intricate-py: neural networks whose layers run as WGSL compute shaders
through wgpu-py, with a numpy CPU fallback."""

from ._version import __version__
from .backends import select_backend
from .device_choice import devices
from .graph import Input
from .model import Model
from .plot import plot_model
from .saving import FormatError
from .training import History, HaltingCondition, MinAccuracyReached, MinLossReached
from . import callbacks, layers, losses, optimizers

__all__ = [
    "Model",
    "Input",
    "plot_model",
    "FormatError",
    "History",
    "HaltingCondition",
    "MinAccuracyReached",
    "MinLossReached",
    "callbacks",
    "layers",
    "losses",
    "optimizers",
    "select_backend",
    "devices",
    "__version__",
]
