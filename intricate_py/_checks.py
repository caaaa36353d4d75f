"""Argument checks whose errors say what was expected and what was received."""

from __future__ import annotations

import json
import math
import numbers
import os

import numpy as np


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"expected a positive integer. Received: {name}={value!r}")
    return int(value)


def non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"expected a non-negative integer. Received: {name}={value!r}")
    return int(value)


def boolean(value, name: str) -> bool:
    """True or False (numpy's bools too), not a truthy value."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"expected True or False. Received: {name}={value!r}")
    return bool(value)


def positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"expected a positive finite number. Received: {name}={value!r}")
    return float(value)


def finite_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"expected a finite number. Received: {name}={value!r}")
    return float(value)


def non_negative_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"expected a non-negative finite number. Received: {name}={value!r}")
    return float(value)


def fraction(value, name: str, upper_inclusive: bool = False) -> float:
    """A number in [0, 1), or [0, 1] with ``upper_inclusive``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value
    ok = ok and (value <= 1 if upper_inclusive else value < 1)
    if not ok:
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"expected a number in {bound}. Received: {name}={value!r}")
    return float(value)


def as_array(x, name: str) -> np.ndarray:
    """``x`` as a numpy array: an array as it is; else what numpy reads of
    it (nested lists, a pandas object, a torch CPU tensor — one that
    requires grad through its ``detach()``). An array of Python objects
    that are all real numbers (pandas's nullable Float64 columns, a frame
    mixing floats and bools) becomes float64; ValueError naming the first
    object that is not a number, or saying why numpy could not read ``x``."""
    if type(x) is np.ndarray:
        a = x
    else:
        a = _read(x, name)
    if a.dtype.kind == "O":
        a = _object_numbers(a, name)
    return a


def _read(x, name: str) -> np.ndarray:
    try:
        return np.asarray(x)
    except (ValueError, TypeError, RuntimeError) as error:
        detach = getattr(x, "detach", None)
        if isinstance(error, RuntimeError) and callable(detach):  # a tensor that requires grad: its values
            return _read(detach(), name)
        raise ValueError(
            f"expected {name} as an array or nested lists of equal lengths. "
            f"Received: {type(x).__name__} that numpy cannot read ({type(error).__name__}: {error})"
        ) from None


def _object_numbers(a: np.ndarray, name: str) -> np.ndarray:
    """An object array of real numbers as float64; ValueError otherwise."""
    types = set(map(type, a.ravel()))
    if all(issubclass(t, (numbers.Real, np.bool_)) for t in types):
        try:
            return a.astype(np.float64)
        except (OverflowError, ValueError, TypeError) as error:
            raise ValueError(f"expected numbers that fit float64 in {name}. Received: {error}") from None
    flat = a.ravel()
    first = next(i for i, v in enumerate(flat) if not isinstance(v, (numbers.Real, np.bool_)))
    where = tuple(int(i) for i in np.unravel_index(first, a.shape))
    value = flat[first]
    raise ValueError(f"expected numbers in {name}. Received: {value!r} ({type(value).__name__}) at index {where}")


def numeric_array(x, name: str) -> np.ndarray:
    """``x`` (array or nested lists, see :func:`as_array`) as a non-empty
    numeric array of finite values."""
    a = as_array(x, name)
    kind = a.dtype.kind
    if kind not in "biuf":
        raise ValueError(f"expected numbers in {name}. Received: dtype={a.dtype}")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"expected at least one sample in {name}. Received: {name}.shape={a.shape}")
    if a.size == 0:
        raise ValueError(f"expected at least one value in each sample of {name}. Received: {name}.shape={a.shape}")
    if kind == "f" and not _sum_is_finite(a):
        finite = np.isfinite(a)
        if np.count_nonzero(finite) != a.size:
            where = np.argwhere(~finite)[0]
            raise ValueError(
                f"expected finite values in {name}. Received: {a[tuple(where)]} at index "
                f"{tuple(int(i) for i in where)}"
            )
    return a


def _sum_is_finite(a) -> bool:
    """Whether ``a`` certainly holds no NaN or ±inf, cheaply: for a large
    array, every row sum (a matrix-vector product with ones: one threaded
    BLAS pass, no big temporary) is finite. NaN propagates and inf only
    cancels into NaN; a sum that overflowed gets the exact check."""
    if a.size < 1 << 16:
        return False  # small: the exact check costs less than np.errstate
    rows = a.reshape(a.shape[0], -1)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(rows @ np.ones(rows.shape[1], a.dtype)).all())


def float_dtype(dtype, name: str = "dtype") -> str:
    """'float32' or 'float64' from a name or numpy dtype; ValueError otherwise."""
    try:
        resolved = np.dtype(dtype)
    except (TypeError, ValueError):
        resolved = None
    if resolved not in (np.float32, np.float64) or isinstance(dtype, bool):
        raise ValueError(f"expected {name} 'float32' or 'float64'. Received: {name}={dtype!r}")
    return resolved.name


def fits_dtype(a: np.ndarray, dtype, name: str) -> np.ndarray:
    """``a`` unchanged, or ValueError when a value is too large for ``dtype``
    (a float64 of 1e300 becomes inf in float32)."""
    dtype = np.dtype(dtype)
    if a.dtype.kind != "f" or a.dtype.itemsize <= dtype.itemsize:
        return a
    big = np.finfo(dtype).max
    if a.max() > big or a.min() < -big:
        where = tuple(int(i) for i in np.argwhere(np.abs(a) > big)[0])
        raise ValueError(
            f"expected values that fit {dtype.name} (at most {big:.4g} in size) in {name}. "
            f"Received: {a[where]:g} at index {where}"
        )
    return a


def verbosity(value) -> int:
    """fit's ``verbose``: 0/False, 1/True or 2."""
    if value in (0, 1, 2) and isinstance(value, (bool, int, np.integer)):
        return int(value)
    raise ValueError(f"expected verbose 0, 1 (or True) or 2. Received: verbose={value!r}")


def _memory_bytes() -> int | None:
    """The machine's physical memory, where the system tells it."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


class TooLarge(ValueError):
    """Sizes whose arrays cannot fit in this machine's memory."""


def fits_in_memory(nbytes: int, what: str) -> None:
    """TooLarge (a ValueError) when ``nbytes`` exceed the machine's memory."""
    memory = _memory_bytes()
    if memory is not None and nbytes > memory:
        raise TooLarge(
            f"expected sizes whose arrays fit in memory. Received: {what} need {_size_text(nbytes)}, "
            f"more than this machine's {_size_text(memory)}"
        )


def _size_text(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.3g} {unit}" if unit != "bytes" else f"{int(nbytes)} bytes"
        nbytes /= 1024
    return f"{nbytes:.3g} PiB"


def is_plain_config(config) -> bool:
    """Whether ``config`` is a dict by strings of plain values (numbers,
    strings, lists, dicts of them) that JSON writes: a get_config() a file
    can hold."""
    try:
        return isinstance(config, dict) and all(isinstance(k, str) for k in config) and \
            bool(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError):
        return False


def checked_values(value, shape: tuple[int, ...], dtype, owner: str, name: str) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``; ValueError ("``owner``
    ``name`` of shape ...") unless it holds real numbers of ``shape`` that
    stay finite in ``dtype``."""
    dtype = np.dtype(dtype)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(
            f"{owner} {name} as an array of numbers. Received: {type(value).__name__} that numpy "
            f"cannot read ({error})"
        ) from None
    if array.dtype.kind not in "biuf":
        found = "complex numbers" if array.dtype.kind == "c" else f"dtype={array.dtype}"
        raise ValueError(f"{owner} real numbers for {name}. Received: {found}")
    if array.shape != tuple(shape):
        raise ValueError(f"{owner} {name} of shape {tuple(shape)}. Received: shape={array.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = np.ascontiguousarray(array, dtype=dtype)
    where = first_non_finite(cast)
    if where is not None:
        found = array[where]
        if not np.isfinite(found):
            raise ValueError(f"{owner} finite values for {name}. Received: {found} at index {where}")
        raise ValueError(
            f"{owner} values for {name} that fit {dtype.name} (magnitudes up to {np.finfo(dtype).max:.4g}). "
            f"Received: {found} at index {where}, which does not fit {dtype.name}"
        )
    return cast


def first_non_finite(a: np.ndarray) -> tuple[int, ...] | None:
    """The index of the first NaN or infinity in ``a``, None if there is none."""
    finite = np.isfinite(a)
    if finite.all():
        return None
    return tuple(int(i) for i in np.argwhere(~finite)[0])
