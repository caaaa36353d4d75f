"""Names of layers and inputs, and shapes as text for messages."""

from __future__ import annotations

import itertools
import re

#: How many automatic names each prefix has given ("dense", "dense_1", ...).
_NAME_COUNTS: dict[str, itertools.count] = {}


def snake_case(name: str) -> str:
    """Keras's automatic layer names: ``Dense`` -> ``dense``, ``MaxPool2D`` -> ``max_pool2d``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(prefix: str) -> str:
    """``prefix`` the first time, then ``prefix_1``, ``prefix_2``, ... (as Keras)."""
    n = next(_NAME_COUNTS.setdefault(prefix, itertools.count()))
    return prefix if n == 0 else f"{prefix}_{n}"


def checked_name(name, what: str = "name") -> str:
    """A name given by the user: a non-empty string of printable characters."""
    if not isinstance(name, str) or not name or len(name) > 200 or not name.isprintable():
        raise ValueError(f"expected a non-empty string of at most 200 printable characters. Received: {what}={name!r}")
    return name


def encodes_as_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: no lone surrogate (``"\\ud800"``,
    which is no character), as what files and protobufs hold must."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shape_text(shape: tuple[int, ...]) -> str:
    """``(3,)``, ``(1, 28, 28)``: a per-sample shape."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def batch_shape_text(shape: tuple[int, ...]) -> str:
    """``(n, 3)``: a batch of samples of ``shape``."""
    return "(" + ", ".join(["n", *(str(s) for s in shape)]) + ")"
