"""Every concrete Layer subclass by class name, for rebuilding layers from
files: ``Layer`` adds each subclass it sees here (a base class declared
``class Base(Layer, abstract=True)`` is left out)."""

from __future__ import annotations

from typing import Any

LAYER_TYPES: dict[str, Any] = {}
