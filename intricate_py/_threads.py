"""Methods that take turns between threads."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

_Method = TypeVar("_Method", bound=Callable)


def holding(lock: str) -> Callable[[_Method], _Method]:
    """A decorator: the method runs holding its object's lock, the
    attribute named ``lock`` (a ``threading.RLock``, so that a method may
    call another)."""

    def decorate(method: _Method) -> _Method:
        @functools.wraps(method)
        def held(self, *args, **kwargs):
            with getattr(self, lock):
                return method(self, *args, **kwargs)

        return held

    return decorate
