"""The layer types files can name, and registering your own.

``LAYER_TYPES`` maps the name a file stores to the class that rebuilds
it: every concrete layer of intricate-py by its class name (``Layer``
adds each subclass defined inside the package here; a base class declared
``class Base(Layer, abstract=True)`` is left out), and every layer
registered with :func:`register_layer` by ``"package>name"``, as Keras's
``register_keras_serializable`` names them.

A Layer subclass defined outside the package trains like any other, but
files name only registered ones: saving an unregistered one raises a
ValueError saying how to register it, and a file naming a type that is
not registered (its module not imported yet) is refused with a
FormatError saying which type and how.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

from .. import _checks

LAYER_TYPES: dict[str, Any] = {}

#: Layer subclasses defined outside intricate-py, by class name (the last
#: defined), to say what to do when a file names one that is not registered
_DEFINED: "weakref.WeakValueDictionary[str, type]" = weakref.WeakValueDictionary()
#: every concrete Layer subclass defined outside intricate-py (what register_layer takes)
_CONCRETE: "weakref.WeakSet[type]" = weakref.WeakSet()


def is_built_in(cls: type) -> bool:
    """Whether ``cls`` is one of intricate-py's own layer classes."""
    return cls.__module__ == "intricate_py" or cls.__module__.startswith("intricate_py.")


def add_layer_type(cls: type) -> None:
    """What ``Layer.__init_subclass__`` does with a concrete subclass: a
    built-in goes into LAYER_TYPES by its class name; any other is noted,
    and files name it once it is registered (a user's class named Dense
    never takes the built-in Dense's place)."""
    if is_built_in(cls):
        LAYER_TYPES[cls.__name__] = cls
    else:
        _DEFINED[cls.__name__] = cls
        _CONCRETE.add(cls)


def _part(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 100 or not value.isprintable() or ">" in value:
        raise ValueError(f"expected {what} to be a non-empty string of at most 100 printable characters without "
                         f"'>'. Received: {what}={value!r}")
    return value


def register_layer(cls: type | None = None, *, package: str = "Custom", name: str | None = None) -> Any:
    """Make a Layer subclass of your own saveable and loadable, under the
    name ``"package>name"`` (``name`` defaults to the class's name), as
    Keras's ``register_keras_serializable``. Use it as a decorator::

        @intricate_py.register_layer(package="my_project")
        class Scale(Layer):
            ...

    (``@register_layer`` alone registers under the package "Custom"), or
    call it: ``register_layer(Scale, package="my_project")``. Returns the
    class.

    Files then store the layer's type as that name and its ``get_config()``
    (which must give every argument of ``__init__`` that has no default,
    as plain values); loading rebuilds it as ``cls(**config)`` once the
    module defining the class is imported. Its parameters are saved as
    ``to_file`` gives them: by default each parameter (and each state
    array named in ``non_trainable``) as it is, named as in
    ``create_parameters``.

    ValueError for a class that is not a concrete Layer subclass, for one
    of intricate-py's own layers (files name them already), and for a name
    that another class holds (a class of the same module and name, a cell
    run again or a module reloaded, takes its place)."""
    def register(layer_class: type) -> type:
        if isinstance(layer_class, type) and is_built_in(layer_class) and layer_class in LAYER_TYPES.values():
            raise ValueError(f"{layer_class.__name__} is one of intricate-py's own layers: files name it already "
                             "(register_layer is for layers defined outside the library)")
        if not isinstance(layer_class, type) or layer_class not in _CONCRETE:
            raise ValueError(f"expected a subclass of intricate_py.layers.Layer to register (a concrete one, not "
                             f"declared abstract=True). Received: {layer_class!r}")
        if getattr(layer_class.call, "__qualname__", "") == "Layer.call":
            raise ValueError(f"expected a concrete layer (one that defines call) to register. Received: "
                             f"{layer_class.__name__}, which has no call")
        registered = f"{_part(package, 'package')}>{_part(layer_class.__name__ if name is None else name, 'name')}"
        held = LAYER_TYPES.get(registered)
        if held is not None and held is not layer_class and not _same_definition(held, layer_class):
            raise ValueError(f"cannot register {_where(layer_class)} as {registered!r}: {_where(held)} holds that "
                             "name. Choose another package= or name=")
        for key, other in list(LAYER_TYPES.items()):  # registered again under a new name: the old one goes
            if other is layer_class and key != registered:
                del LAYER_TYPES[key]
        LAYER_TYPES[registered] = layer_class
        layer_class.type_name = registered
        return layer_class

    return register if cls is None else register(cls)


def unregister_layer(cls: type) -> None:
    """Undo :func:`register_layer` for ``cls`` (tests do, to leave the
    registry as they found it): files no longer name it."""
    for key, other in list(LAYER_TYPES.items()):
        if other is cls and not is_built_in(cls):
            del LAYER_TYPES[key]
            cls.type_name = cls.__name__


def _same_definition(a: type, b: type) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def is_registered(cls: type) -> bool:
    """Whether files can name ``cls``: built in, or registered as it is."""
    return LAYER_TYPES.get(getattr(cls, "type_name", None)) is cls


def how_to_register(cls_name: str) -> str:
    return (f"decorate its class with @intricate_py.register_layer(package=...) (or call "
            f"intricate_py.register_layer({cls_name})), and import it before loading")


def file_entry(layer: Any, where: str = "") -> dict[str, Any]:
    """``{"type": name, "config": config}`` of ``layer`` for a file;
    ValueError (``where`` before the layer: "layer 3 ") for a layer of a
    class that is not registered, or whose ``get_config()`` cannot rebuild
    it: a dict of plain values giving every argument of ``__init__``
    without a default, and no argument it does not take."""
    cls = type(layer)
    if not is_registered(cls):
        raise ValueError(f"cannot save {where}{layer!r}: {cls.__name__} is a custom layer that is not registered, "
                         f"so a file could not name it; {how_to_register(cls.__name__)} (nothing was written)")
    config = layer.get_config()
    if is_built_in(cls):
        return {"type": layer.type_name, "config": config}
    if not _checks.is_plain_config(config):
        raise ValueError(f"cannot save {where}{layer!r}: expected {cls.__name__}.get_config() to return a dict of "
                         f"plain values (numbers, strings, lists). Received: {config!r} (nothing was written)")
    try:
        inspect.signature(cls).bind(**config)
    except TypeError as error:
        raise ValueError(f"cannot save {where}{layer!r}: {cls.__name__}.get_config() must give what "
                         f"{cls.__name__}(**config) rebuilds it from: {error}. Received: {config!r} "
                         "(nothing was written)") from None
    except ValueError:  # no signature to read (a class made in C): trust the config
        pass
    return {"type": layer.type_name, "config": config}


def layer_class(kind: str) -> type | None:
    """The class a file's layer type names, None if none does. A name
    without a package that no built-in layer has (a custom layer in a file
    written before register_layer existed) names the one registered class
    of that class name."""
    cls = LAYER_TYPES.get(kind)
    if cls is not None or ">" in kind:
        return cls
    same = [c for key, c in LAYER_TYPES.items() if ">" in key and c.__name__ == kind]
    return same[0] if len(same) == 1 else None


def unknown_type_hint(kind: str) -> str:
    """What to do about a file's layer type that names no class."""
    if ">" in kind:
        package, _, name = kind.partition(">")
        return (f"a custom layer registered as {kind!r}: import the module that defines it, its class decorated "
                f"with @intricate_py.register_layer(package={package!r}, name={name!r})")
    defined = _DEFINED.get(kind)
    if defined is not None:
        return f"{_where(defined)} is defined but not registered: {how_to_register(kind)}"
    built_in = sorted(k for k in LAYER_TYPES if ">" not in k)
    registered = sorted(k for k in LAYER_TYPES if ">" in k)
    return (f"expected one of {built_in}" + (f" or a registered layer {registered}" if registered else "")
            + f"; a custom layer must be registered and imported before loading ({how_to_register(kind)})")


__all__ = ["LAYER_TYPES", "register_layer", "unregister_layer"]
