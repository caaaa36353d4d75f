"""What the image layers share: their arguments (sizes as an int or a pair,
padding as "valid", "same" or sizes) checked, the padding of each side
of an image, the output size of a sliding window, and the text of their
__repr__s. Images are NCHW batches; shapes here are per sample,
(channels, height, width)."""

from __future__ import annotations

import numbers

from ..backends.base import Pair, Sides, sides, window_positions
from ..naming import shape_text

Shape = tuple[int, ...]

#: what a window layer's ``padding`` holds once checked: "same", or (h, w)
#: rows and columns on each side ("valid" is (0, 0))
Padding = str | Pair


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pair(value, name: str, minimum: int = 1) -> Pair:
    """An int or a pair of ints (height, width), each at least ``minimum``."""
    pair_ = (value, value) if is_int(value) else value
    if isinstance(pair_, (str, bytes, dict)):
        pair_ = None
    try:
        h, w = pair_
    except (TypeError, ValueError):
        raise ValueError(f"expected an integer or a pair of integers. Received: {name}={value!r}") from None
    for v in (h, w):
        if not is_int(v) or v < minimum:
            kind = "positive" if minimum == 1 else "non-negative"
            raise ValueError(f"expected {kind} integers. Received: {name}={value!r}")
    return int(h), int(w)


def padding_argument(value, name: str = "padding") -> Padding:
    """A window layer's padding: "same", or a pair of non-negative ints from
    an int, a pair or "valid" (which is (0, 0)); case is ignored, as Keras."""
    if isinstance(value, str):
        kind = value.lower()
        if kind == "valid":
            return (0, 0)
        if kind == "same":
            return "same"
        raise ValueError(f"expected 'valid', 'same', an integer or a pair of integers. Received: {name}={value!r}")
    return pair(value, name, minimum=0)


def strides_argument(strides, stride, default) -> Pair | None:
    """The stride from ``strides`` (Keras's name) or ``stride`` (the older
    one, kept as an alias): None, when neither is given, for ``default``;
    ValueError when both are given and differ."""
    if stride is None:
        return default if strides is None else pair(strides, "strides")
    alias = pair(stride, "stride")
    if strides is not None and pair(strides, "strides") != alias:
        raise ValueError(f"expected strides or its alias stride, not both. Received: strides={strides!r}, "
                         f"stride={stride!r}")
    return alias


def same_sides(size: int, window: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after): Keras's (TensorFlow's) "same" padding along one
    axis: ceil(size / stride) outputs, the total padding that needs,
    max((out - 1)·stride + (window - 1)·dilation + 1 - size, 0), split with
    the odd row or column after (below, or to the right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (window - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def padding_sides(padding: Padding, size: Pair, window: Pair, stride: Pair, dilation: Pair = (1, 1)) -> Sides:
    """(top, bottom, left, right) of ``padding`` for images of ``size`` (h, w)."""
    if padding == "same":
        top, bottom = same_sides(size[0], window[0], stride[0], dilation[0])
        left, right = same_sides(size[1], window[1], stride[1], dilation[1])
        return top, bottom, left, right
    return sides(padding)


def image_shape(input_shape: Shape) -> Shape:
    """``input_shape`` if it is (channels, height, width), else ValueError."""
    if len(input_shape) != 3:
        raise ValueError(
            f"expects images of shape (channels, height, width), received {shape_text(input_shape)}"
        )
    return input_shape


def window_output(size: Pair, window: Pair, stride: Pair, padding: Sides, what: str,
                  dilation: Pair = (1, 1)) -> Pair:
    """Output (height, width) of a sliding window over images of ``size``
    padded by ``padding`` (top, bottom, left, right); ValueError if it does
    not fit."""
    (h, w), (kh, kw), (dh, dw) = size, window, dilation
    top, bottom, left, right = padding
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if h + top + bottom >= span_h and w + left + right >= span_w:
        return window_positions(size, window, stride, padding, dilation)
    message = f"has a {kh}×{kw} {what}"
    if dilation != (1, 1):
        message += f" (spanning {span_h}×{span_w} at dilation {dilation_text(dilation)})"
    message += f" larger than the {h}×{w} images"
    if (top, left) == (bottom, right) and any(padding):
        message += f" (padded by {top}×{left})"
    elif any(padding):
        message += f" (padded by {padding}: top, bottom, left, right)"
    raise ValueError(message + " it receives")


def dilation_text(value: Pair) -> str:
    return str(value[0]) if value[0] == value[1] else str(value)


def geometry_text(window: Pair, stride: Pair, padding: Padding, default_stride: Pair,
                  dilation: Pair = (1, 1)) -> str:
    """``3×3, stride 2, padding 1`` for a __repr__: the window, then what
    differs from the defaults."""
    text = f"{window[0]}×{window[1]}"
    if stride != default_stride:
        text += f", stride {stride[0]}" if stride[0] == stride[1] else f", stride {stride}"
    if padding == "same":
        text += ", padding same"
    elif padding != (0, 0):
        text += f", padding {padding[0]}" if padding[0] == padding[1] else f", padding {padding}"
    if dilation != (1, 1):
        text += f", dilation {dilation_text(dilation)}"
    return text
