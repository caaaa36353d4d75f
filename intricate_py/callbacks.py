"""Callbacks: code that runs at fixed points of ``Model.fit``, as Keras's.

Subclass :class:`Callback` and override what you need; ``fit(callbacks=[...])``
calls, in order, ``set_model(model)``, ``on_train_begin(logs)``, then for
every epoch ``on_epoch_begin(epoch, logs)`` and ``on_epoch_end(epoch, logs)``,
and ``on_train_end(logs)`` at the end. Setting ``model.stop_training = True``
stops training after the current epoch.

``on_epoch_end`` sees the model as it is at the end of that epoch (its
weights, its optimizer state): a fit with callbacks reads each epoch's
metrics back as it ends. ``logs`` holds that epoch's ``loss`` and
``accuracy`` (and ``val_loss``, ``val_accuracy`` with validation data).

A plain function ``callback(epoch, logs)`` works as a callback too: it runs
as ``on_epoch_end`` and stops training by returning True.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from .model import Model

Logs = Mapping[str, float]


class Callback:
    """Base class: every hook does nothing. ``self.model`` is the model being trained."""

    model: "Model | None" = None

    def set_model(self, model: "Model") -> None:
        self.model = model

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Before epoch ``epoch`` (counted from 0) runs."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """After epoch ``epoch``, with its metrics in ``logs``."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """After the last epoch (also when training stopped early); ``logs``
        are the last epoch's metrics."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, logs) -> bool | None`` as a callback:
    it runs at each epoch's end, and returning True stops training."""

    def __init__(self, fn: Callable[[int, Logs], Any]):
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.fn(epoch, logs):
            self.model.stop_training = True

    def __repr__(self) -> str:
        return f"callback {getattr(self.fn, '__name__', repr(self.fn))}"


def as_callbacks(callbacks: Iterable | None) -> list[Callback]:
    """``fit``'s ``callbacks`` argument as a list of Callback objects;
    ValueError saying what was expected for anything else."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks) or isinstance(callbacks, (str, bytes)):
        raise ValueError(
            "expected callbacks as a list of Callback objects or functions callback(epoch, logs). "
            f"Received: callbacks={callbacks!r} (put it in a list: callbacks=[...])"
        )
    try:
        items = list(callbacks)
    except TypeError:
        raise ValueError(
            "expected callbacks as a list of Callback objects or functions callback(epoch, logs). "
            f"Received: callbacks={callbacks!r}"
        ) from None
    result = []
    for i, item in enumerate(items):
        if isinstance(item, Callback):
            result.append(item)
        elif callable(item) and not isinstance(item, type):
            result.append(FunctionCallback(item))
        else:
            raise ValueError(
                "expected each callback to be a Callback object or a function callback(epoch, logs). "
                f"Received: {item!r} at index {i}"
            )
    return result


__all__ = ["Callback", "FunctionCallback", "as_callbacks"]
