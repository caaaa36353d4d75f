"""Backends: the array operations layers are written against (see ``base``)."""

from __future__ import annotations

import numpy as np

from .. import device_choice
from .base import Array, Backend, dropout_key, dropout_threshold
from .custom import Kernel
from .numpy_backend import NumpyBackend


def select_backend(device: "str | Backend" = "auto", dtype: str = "float32") -> Backend:
    """The backend for ``device``: "cpu" (numpy), "gpu" (wgpu) or "auto"
    (a hardware GPU if there is one, else the CPU; see :mod:`intricate_py.device_choice`).
    """
    if isinstance(device, Backend):
        if device.dtype != np.dtype(dtype):
            raise ValueError(
                f"expected a backend of dtype {dtype}. Received: {device!r} ({device.dtype})"
            )
        return device
    if not isinstance(device, str):
        raise ValueError(f"expected device among {device_choice.CHOICES}. Received: device={device!r}")
    if device_choice.resolve(device) == "cpu":
        return NumpyBackend(dtype)
    if np.dtype(dtype) != np.float32:
        if device != "gpu":  # "auto" found a GPU, but it computes in float32 only
            return NumpyBackend(dtype, reason="float64 runs on the CPU: GPUs compute in float32 (WGSL has no float64)")
        raise ValueError(
            f"expected dtype 'float32' on the GPU (WGSL has no float64). Received: dtype={dtype!r}"
        )
    from .wgpu_backend import WgpuBackend

    return WgpuBackend.for_adapter(device_choice.best_adapter())


__all__ = ["Array", "Backend", "Kernel", "NumpyBackend", "select_backend", "dropout_key", "dropout_threshold"]
