"""Backends: the array operations layers are written against (see ``base``)."""

from __future__ import annotations

import os

import numpy as np

from .base import Array, Backend
from .numpy_backend import NumpyBackend

DEVICES = ("auto", "cpu", "gpu")


def select_backend(device: "str | Backend" = "auto", dtype: str = "float32") -> Backend:
    """The backend for ``device``: "cpu" (numpy), "gpu" (wgpu) or "auto".

    "auto" (the default, or ``INTRICATE_DEVICE``) takes a hardware GPU and
    otherwise the CPU.
    """
    if isinstance(device, Backend):
        if device.dtype != np.dtype(dtype):
            raise ValueError(
                f"expected a backend of dtype {dtype}. Received: {device!r} ({device.dtype})"
            )
        return device
    if device == "auto":
        device = os.environ.get("INTRICATE_DEVICE", "auto") or "auto"
        if device not in DEVICES:
            raise ValueError(
                f"expected INTRICATE_DEVICE among {DEVICES}. Received: INTRICATE_DEVICE={device!r}"
            )
    if device not in DEVICES:
        raise ValueError(f"expected device among {DEVICES}. Received: device={device!r}")
    if device in ("cpu", "auto"):
        return NumpyBackend(dtype)
    raise ValueError("device='gpu' is not available yet")


__all__ = ["Array", "Backend", "NumpyBackend", "select_backend"]
