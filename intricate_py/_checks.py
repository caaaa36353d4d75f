"""Argument checks whose errors say what was expected and what was received."""

from __future__ import annotations

import numbers
import math


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"expected a positive integer. Received: {name}={value!r}")
    return int(value)


def non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"expected a non-negative integer. Received: {name}={value!r}")
    return int(value)


def positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"expected a positive finite number. Received: {name}={value!r}")
    return float(value)


def fraction(value, name: str, upper_inclusive: bool = False) -> float:
    """A number in [0, 1), or [0, 1] with ``upper_inclusive``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value
    ok = ok and (value <= 1 if upper_inclusive else value < 1)
    if not ok:
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"expected a number in {bound}. Received: {name}={value!r}")
    return float(value)


def numeric_array(x, name: str) -> "np.ndarray":
    """``x`` (array or nested lists) as a non-empty numeric array of finite values."""
    import numpy as np

    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"expected {name} as an array or nested lists of equal lengths. "
            f"Received: {type(x).__name__} that numpy cannot read ({error})"
        ) from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"expected numbers in {name}. Received: dtype={a.dtype}")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"expected at least one sample in {name}. Received: {name}.shape={a.shape}")
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            where = np.argwhere(~finite)[0]
            raise ValueError(
                f"expected finite values in {name}. Received: {a[tuple(where)]} at index "
                f"{tuple(int(i) for i in where)}"
            )
    return a
