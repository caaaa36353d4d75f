"""Kernels of your own: a layer's WGSL compute shader for the GPU, with a
numpy function per entry point for the CPU, run by whichever backend the
layer is on.

    SCALE = Kernel('''
    struct Params { count: u32, x_off: u32, s_off: u32, y_off: u32 }
    @group(0) @binding(0) var<uniform> params: Params;
    @group(0) @binding(1) var<storage, read> x: array<f32>;
    @group(0) @binding(2) var<storage, read> s: array<f32>;
    @group(0) @binding(3) var<storage, read_write> y: array<f32>;

    @compute @workgroup_size(256)
    fn scale(@builtin(global_invocation_id) id: vec3<u32>) {
      if (id.x < params.count) { y[params.y_off + id.x] = s[params.s_off] * x[params.x_off + id.x]; }
    }
    ''', numpy={"scale": lambda x, s, y, count: np.multiply(x, s[0], out=y)})

    # in a layer's call (or backward), on whatever device the layer is:
    SCALE.dispatch(self.backend, "scale", invocations=x.size, x=x, s=self.params["s"].value, y=y, count=x.size)

The WGSL is a kernel file as those of ``shaders/`` are (see
``backends/shaders.py``): binding 0 is ``var<uniform> params: Params``,
the others ``var<storage, read>`` or ``var<storage, read_write>`` arrays
of f32 (or i32, u32 for int32 arrays), ``struct Params`` holds u32, i32
and f32 fields, and header lines may include the library of activation
functions (``// includes: activation_functions.wgsl``: ``activate(kind,
x, param)`` and the others). Like every kernel file it is compiled after
the generated preamble (the ``ACTIVATION_*`` constants and
``unknown_kind()``), whose names it must leave alone.

The rules that keep it on the device and replayable:

* Arrays are views into pooled buffers (a layer's parameters share one
  buffer with the model's others, its gradients another), so every
  storage binding ``name`` has a field ``name_off: u32`` in Params, which
  ``dispatch`` fills with the array's first element: index
  ``name[params.name_off + i]``. A binding left out of a dispatch is bound
  to a small unused buffer.
* ``dispatch`` takes the arrays and the other Params fields by name (a
  field left out is 0) and either ``invocations=n``, which runs
  ceil(n / workgroup size) workgroups laid out as (x, y) with x ≤ 65535
  (invocation ``gid.x + gid.y * 65535 * workgroup size``; one y row
  unless n > 65535 workgroups), or ``workgroups=(x, y, z)``.
* A dispatch may not read a buffer through one binding and write it
  through another (WebGPU forbids it, whatever elements each view
  holds), nor write one element through two bindings: ValueError naming
  both, on every backend (a numpy array's buffer is the array that owns
  its memory).
* On the GPU a dispatch is recorded like the library's own: a model's
  training step that calls it is recorded once and replayed, with no copy
  to or from the host. A value that changes from step to step must come
  from ``Layer.step_values`` (``ctx.values``), as the library's own do.

The numpy backend calls ``numpy[entry](**arguments)`` with the same
arguments (numpy arrays, which the function writes into in place, and
the numbers), so the layer has one code path for both devices and its
gradients can be checked in float64 on the CPU.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from typing import Any, Callable

import numpy as np

_ELEMENT = re.compile(r"@group\(0\)\s*@binding\(\d+\)\s*var<storage[^>]*>\s*(\w+)\s*:\s*array<\s*(f32|i32|u32)\s*>")
#: the keyword arguments of dispatch itself, which no binding or field may take
_RESERVED = ("invocations", "workgroups")


class Kernel:
    """A compute kernel of your own: ``wgsl``, the source of a kernel file,
    and ``numpy``, a function per entry point that the numpy backend runs
    instead (an entry point without one runs on the GPU only). ``name``
    labels it in errors and profiles. Make it once, at module level, and
    dispatch it from a layer's ``call`` and ``backward`` with
    :meth:`dispatch`; ValueError if the source does not declare what a
    kernel needs (see the module's docstring). A device compiles it on its
    first dispatch there; Kernels of the same name and source share that
    compilation, which the device lets go a while after the last of them
    is gone."""

    def __init__(self, wgsl: str, numpy: dict[str, Callable] | None = None, name: str | None = None):
        from .shaders import KernelFile, shader_dir

        if not isinstance(wgsl, str) or not wgsl.strip():
            raise ValueError(f"expected the WGSL source of a kernel as a string. Received: {type(wgsl).__name__}")
        self.name = name or "kernel"
        # named by its name and source: Kernels of the same name and source
        # (made again and again) share one compilation per device
        digest = hashlib.sha256(f"{self.name}\0{wgsl}".encode()).hexdigest()[:16]
        try:
            self.file = KernelFile.parse(f"custom_{re.sub(r'[^A-Za-z0-9_]', '_', self.name)}_{digest}", wgsl,
                                         shader_dir())
        except (ValueError, OSError) as error:
            raise ValueError(f"{self!r}: {error}") from None
        if not self.file.entries:
            raise ValueError(f"{self!r}: no entry point (a function marked @compute @workgroup_size(...))")
        self.bindings = {name: access for _, access, name in self.file.bindings[1:]}
        self.elements = dict(_ELEMENT.findall(self.file.source))
        self.fields = list(self.file.fields)
        missing = [f"{name}_off" for name in self.bindings if f"{name}_off" not in self.fields]
        if missing:
            raise ValueError(f"{self!r}: Params needs {', '.join(f'{m}: u32' for m in missing)}: arrays are views "
                             "into shared buffers, so each storage binding is read from its own offset")
        clash = [n for n in [*self.bindings, *self.fields] if n in _RESERVED]
        if clash:
            raise ValueError(f"{self!r}: {clash} name dispatch's own arguments; rename them")
        self.numpy = dict(numpy or {})
        unknown = sorted(set(self.numpy) - set(self.file.entries))
        if unknown or not all(callable(f) for f in self.numpy.values()):
            raise ValueError(f"{self!r}: numpy= maps entry points ({sorted(self.file.entries)}) to functions. "
                             f"Received: {unknown or self.numpy}")

    def __repr__(self) -> str:
        return f"Kernel({self.name!r})"

    @property
    def entries(self) -> list[str]:
        """The entry points, in the source's order."""
        return list(self.file.entries)

    def dispatch(self, backend, entry: str, /, *, invocations: int | None = None,
                 workgroups: tuple[int, ...] | None = None, **arguments: Any) -> None:
        """Run ``entry`` on ``backend`` (a layer's ``self.backend``) with
        ``arguments``: the arrays by binding name, the numbers by Params
        field (the ``*_off`` fields are filled in), over ``invocations``
        invocations or ``workgroups`` workgroups. The same checks on every
        backend, so that what runs on the CPU runs on the GPU."""
        if entry not in self.file.entries:
            raise ValueError(f"{self!r} has entry points {self.entries}. Received: {entry!r}")
        if (invocations is None) == (workgroups is None):
            raise ValueError(f"{self!r}.dispatch takes invocations=n or workgroups=(x, y, z), one of them. "
                             f"Received: invocations={invocations!r}, workgroups={workgroups!r}")
        grid = self._grid(entry, invocations, workgroups)
        arrays, numbers_ = {}, {}
        for name, value in arguments.items():
            if name in self.bindings:
                arrays[name] = self._array(name, value, backend)
            elif name in self.fields and not (name.endswith("_off") and name[:-4] in self.bindings):
                numbers_[name] = self._number(name, value)
            else:
                given = [f for f in self.fields if not (f.endswith("_off") and f[:-4] in self.bindings)]
                raise ValueError(f"{self!r}: expected arrays among {list(self.bindings)} and numbers among "
                                 f"{given} (the *_off fields are filled in). Received: {name}=")
        self._check_aliases(arrays)
        backend.run_kernel(self, entry, grid, arrays, numbers_)

    def _check_aliases(self, arrays: dict[str, Any]) -> None:
        """ValueError where a binding written shares a buffer with another:
        one read and one written (any views of one buffer: WebGPU forbids
        it), or two written whose elements overlap."""
        extents = {name: _extent(a) for name, a in arrays.items()}
        names = list(arrays)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                (root_a, lo_a, hi_a), (root_b, lo_b, hi_b) = extents[a], extents[b]
                writes = (self.bindings[a] == "read_write") + (self.bindings[b] == "read_write")
                if not writes or root_a is None or root_a is not root_b:
                    continue
                if writes == 1:
                    read, written = (a, b) if self.bindings[a] != "read_write" else (b, a)
                    raise ValueError(f"{self!r}: {read} and {written} are views of one buffer, which a dispatch may "
                                     "not read through one binding and write through another: bind it once, "
                                     "read_write")
                if lo_a < hi_b and lo_b < hi_a and _overlap(arrays[a], arrays[b]):
                    raise ValueError(f"{self!r}: {a} and {b} are both written and overlap: give each read_write "
                                     "binding elements of its own")

    def _grid(self, entry: str, invocations, workgroups) -> tuple[int, int, int]:
        if workgroups is not None:
            groups = tuple(workgroups) if isinstance(workgroups, (tuple, list)) else (workgroups,)
            if not (1 <= len(groups) <= 3 and all(_count(g) and 0 <= g <= 65535 for g in groups)):
                raise ValueError(f"expected workgroups=(x, y, z), up to three counts in [0, 65535]. "
                                 f"Received: {workgroups!r}")
            return (*groups, 1, 1)[:3]
        if not (_count(invocations) and invocations >= 0):
            raise ValueError(f"expected invocations to be a count (an int ≥ 0). Received: {invocations!r}")
        size = math.prod(self.file.entries[entry])
        groups = max(1, -(-invocations // size))
        x = min(groups, 65535)
        return x, -(-groups // x), 1

    def _array(self, name: str, value, backend) -> Any:
        if not hasattr(value, "shape") or isinstance(value, numbers.Number):
            raise ValueError(f"{self!r}: {name} is a storage binding and takes an array of the backend. "
                             f"Received: {type(value).__name__}")
        integer = np.issubdtype(np.dtype(getattr(value, "dtype", np.float32)), np.integer)
        if integer != (self.elements.get(name, "f32") != "f32"):
            raise ValueError(f"{self!r}: {name} is an array<{self.elements.get(name, 'f32')}>. Received: an array "
                             f"of {np.dtype(value.dtype).name}")
        return value

    def _number(self, name: str, value) -> int | float:
        kind = self.file.packer.format[1 + self.fields.index(name)]
        if kind == "f":
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{self!r}: {name} is an f32. Received: {value!r}")
            return value
        low, high = (0, 2**32) if kind == "I" else (-2**31, 2**31)
        if not (_count(value) and low <= value < high):
            raise ValueError(f"{self!r}: {name} is {'a u32' if kind == 'I' else 'an i32'}: an int in [{low}, "
                             f"{high}). Received: {value!r}")
        return value


def _extent(array) -> tuple[Any, int, int]:
    """(the buffer ``array`` is a view of, its first and end position in it):
    a GPU array's allocation and elements, a numpy array's first owner of
    its memory and bytes; (None, 0, 0) for what is neither."""
    if hasattr(array, "alloc") and hasattr(array, "offset"):
        return array.alloc, array.offset, array.offset + array.size
    if isinstance(array, np.ndarray):
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        owner = root if root.base is None else root.base  # a view of bytes, an mmap...: that object
        low, high = np.lib.array_utils.byte_bounds(array) if hasattr(np.lib, "array_utils") else \
            np.byte_bounds(array)
        return owner, low, high
    return None, 0, 0


def _overlap(a, b) -> bool:
    """Whether two views of one buffer whose bounds overlap share an element
    (numpy's strided views may interleave without one)."""
    return not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or bool(np.shares_memory(a, b))


def _count(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
