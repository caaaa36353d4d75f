"""intricate-py: neural networks whose layers run as WGSL compute shaders
through wgpu-py, with a numpy CPU fallback."""

__version__ = "0.1.0"

from .backends import select_backend
from .device_choice import devices
from .graph import Input
from .model import Model
from .saving import FormatError
from .training import History, HaltingCondition, MinAccuracyReached, MinLossReached
from . import callbacks, layers, losses, optimizers

__all__ = [
    "Model",
    "Input",
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
