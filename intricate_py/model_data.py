"""What fit, evaluate and predict take for each of a model's inputs and
outputs: one array for a model of one input (or output), else a list in
order or a dict by name, as in Keras; each array checked and shaped."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import _checks
from .losses import Loss
from .naming import batch_shape_text


def per_name(value: Any, names: Sequence[str], what: str, optional: bool = False, data: bool = True) -> list:
    """``value`` as one entry per name: itself for a single name (unless it
    is a dict, or a list of one entry: for ``data`` a list holding one
    array, as nested lists are data too), a list or tuple in order, or a
    dict by name (missing names None where ``optional``). ValueError naming
    what was expected."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names), key=str)
        if unknown:
            raise ValueError(f"expected {what} keyed by {list(names)}. Received: unknown keys {unknown}")
        missing = [name for name in names if name not in value]
        if missing and not optional:
            raise ValueError(f"expected {what} for each of {list(names)}. Received: none for {missing}")
        return [value.get(name) for name in names]
    if len(names) == 1:  # the value itself, or a list holding it (as Keras takes it too)
        one = isinstance(value, (list, tuple)) and len(value) == 1 and (not data or isinstance(value[0], np.ndarray))
        return [value[0]] if one else [value]
    if isinstance(value, (list, tuple)) and len(value) == len(names):
        return list(value)
    count = f"a {type(value).__name__} of {len(value)}" if isinstance(value, (list, tuple)) else type(value).__name__
    raise ValueError(f"expected {what} as a list of {len(names)} (one per {list(names)}) or a dict by those "
                     f"names. Received: {count}")


def sample_array(x, shape: tuple[int, ...], dtype, name: str, what: str) -> np.ndarray:
    """``x`` as a finite array of shape (n, *shape) that fits ``dtype``: a
    single sample gets its batch axis, and one feature or channel left out
    is put back."""
    a = _checks.fits_dtype(_checks.numeric_array(x, name), dtype, name)
    if a.shape[1:] == shape:
        return a
    if a.shape == shape:
        return a[None]
    if shape[0] == 1 and a.shape[1:] == shape[1:]:  # one feature or channel, its axis left out
        return a.reshape(len(a), *shape)
    raise ValueError(
        f"expected {name} of shape {batch_shape_text(shape)} for {what} {shape}. Received: {name}.shape={a.shape}"
    )


def target_array(loss: Loss, y, shape: tuple[int, ...], dtype, name: str) -> np.ndarray:
    """Targets for the output of per-sample ``shape``, as the loss prepares
    them (``Loss.prepare_targets``): (n, values per sample), or class labels."""
    return _checks.fits_dtype(loss.prepare_targets(_checks.as_array(y, name), shape), dtype, name)


def same_length(arrays: list[tuple[str, np.ndarray]]) -> int:
    """The number of samples every array holds; ValueError if they differ."""
    first_name, first = arrays[0]
    for name, a in arrays[1:]:
        if len(a) != len(first):
            what = "targets as samples" if name.startswith("y") or "[1]" in name else "rows in every input"
            raise ValueError(f"expected as many {what}. Received: {first_name} has {len(first)} rows, "
                             f"{name} has {len(a)}")
    return len(first)


def split(arrays: list[np.ndarray], fraction: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, validation): the last ``fraction`` of the samples for
    validation, as Keras's validation_split."""
    n = len(arrays[0])
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"expected enough samples to split off a validation set. Received: {n} samples "
            f"with validation_split={fraction} ({n - split_at} for validation)"
        )
    return [a[:split_at] for a in arrays], [a[split_at:] for a in arrays]
