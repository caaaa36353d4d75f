"""Models as C99 source: ``{name}.c`` and ``{name}.h`` with, for a path
of layers,

    void name(const float *x, float *y);                  /* one sample */
    void name_batch(const float *x, float *y, size_t n);  /* n samples, one after the other */

and for a graph model a pointer per input, then one per output, in the
model's order, named after them (:func:`parameter_names`):

    void name(const float *image, const float *extra, float *label, float *score);
    void name_batch(const float *image, const float *extra, float *label, float *score, size_t n);

The header defines the floats a sample of each: ``NAME_INPUTS`` and
``NAME_OUTPUTS`` (``NAME`` the name in capitals) for a path, and for a
graph ``NAME_IMAGE_INPUTS`` for each input and ``NAME_LABEL_OUTPUTS`` for
each output (its parameter's name in capitals), with ``NAME_INPUTS`` as
well when there is one input and ``NAME_OUTPUTS`` when there is one output;
its include guard is ``NAME_H``. A name with capitals keeps its case in
them, and their suffix is in lower case (``Net_inputs``, ``Net_h``), so
that two names that differ in case (``net``, ``NET``) share no macro.

Names. The functions take the name as it is given, and every other
file-scope name starts with it (``net_weight0``, ``net_sigmoid``: static,
so two models' files never clash). A name is refused (ValueError) only
where it cannot work: a name that C, C++ or the C library takes (a
keyword of either language, a function, variable, type or macro of the
standard or POSIX headers in C99, GNU C17, C2x with _GNU_SOURCE or C++, a
compiler's built-in: ``printf``, ``abs``, ``isinff``, ``roundeven``,
``iszero``, ``class``), one that starts with ``_`` or holds ``__``, one
whose ``{name}.h`` would hide a header of the C library or the compiler
under ``-I`` (``stddef``, compared without case), and the batch function's
own variables. ``c_reserved.txt`` holds these names, made by asking gcc and
g++ (tests/c_names.py). Two models in one program need names of which
neither is the other's followed by ``_`` (``net`` and ``net_batch`` clash).

The weights are ``static const float`` arrays, written so that they read
back bit for bit (once for a layer however many nodes call it); the
tensors between the layers live in arrays on the stack, so there is no
heap and no global that changes, and only ``<math.h>`` and ``<stddef.h>``
are included. A liveness pass places the tensors: an array is reused once
no later node reads what it holds (a path needs two, ``a`` and ``b``; a
graph as many as it keeps alive at once, then ``t2``, ``t3``, ...), an
elementwise layer writes over its input when no later node reads it, and
Flatten, Reshape and Dropout copy nothing. The outputs are copied out at
the end. The code compiles warning-free as strict C99 (``-std=c99 -Wall
-Wextra -Werror -pedantic``), a comment for each node.

It is laid out for the compiler to vectorise: every loop has constant
bounds; Dense outputs are padded with zero weights to a multiple of 8
floats (one 256-bit register) and accumulated row by row of W
(``y[j] += x[i] * W[i][j]``), in up to 4 independent partial sums so that
the multiply-adds need not wait for each other; TanH and ReLU run over the
padding too, whole registers at a time, and so do the elementwise merge
layers when all their inputs hold it. TanH is a rational function
without library calls (within 7 ulp of tanh), Sigmoid uses expf on
-|v| (exact for both signs, never overflows), Softmax is shifted by its
maximum, Add, Subtract and Multiply combine their inputs left to right
and Average multiplies their sum by the float 1/k, as the numpy backend
computes them. Concatenate copies blocks.

Images are row-major (channels, height, width) per sample, as NCHW batches
are.
"""

from __future__ import annotations

import errno
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np

from ..layers import (Add, Average, Concatenate, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Multiply, ReLU, Reshape,
                      Sigmoid, Softmax, Subtract, TanH)
from ..saving import atomic_write_all
from .common import Site, architecture_lines, exported_layers, exported_nodes, layer_text as _text, sample_size, shape_text

if TYPE_CHECKING:
    from ..graph import Symbol
    from ..model import Model

#: Dense outputs are padded to a multiple of this many floats.
PAD = 8
#: About how many floats of partial sums a Dense layer accumulates at once.
ACCUMULATORS = 128

#: The names that C, C++, the compilers and the C library take (keywords,
#: the macros, functions, variables and types of the standard and POSIX
#: headers, the compilers' built-ins), and the names of the C library's and
#: the compiler's headers: made by tests/c_names.py, which asks gcc and g++.
RESERVED_FILE = Path(__file__).with_name("c_reserved.txt")
#: Names that the generated code gives its own variables, or a parameter
#: must not take: the stack buffers, the variables of the loops and sums,
#: the batch function's n and s.
LOCALS = re.compile(r"[ab]|t\d+|acc|[cfijkmnrsuv]|oi|oj|ki|kj|ii|jj")
#: The file-scope names of the .c file after its prefix ``{name}_``: the
#: weight arrays and the helper functions.
INTERNAL = re.compile(r"(weight|bias)\d+|sigmoid|fast_tanh")


@functools.lru_cache(maxsize=None)
def reserved_names() -> tuple[frozenset[str], frozenset[str]]:
    """(the identifiers that the generated files cannot declare or define,
    the names in lower case that ``{name}.h`` cannot take) from
    ``RESERVED_FILE``."""
    sections: dict[str, set[str]] = {}
    current: set[str] = set()
    for line in RESERVED_FILE.read_text(encoding="ascii").splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), set())
        elif line and not line.startswith("#"):
            current.add(line)
    return frozenset(sections["identifiers"]), frozenset(sections["headers"])


SIGMOID = """\
/* 1 / (1 + e^-v) from e^-|v|, which never overflows: exact for both signs */
static float $sigmoid(float v)
{
    float e = expf(-fabsf(v));
    float s = 1.0f / (1.0f + e);
    return v < 0.0f ? e * s : s;
}
"""

FAST_TANH = """\
/* tanh(v) as the rational function of degrees 13 and 6 that Eigen, XLA and
 * ONNX Runtime use, on v clamped to [-9, 9] (beyond, tanh is +-1 in float):
 * within 7 ulp (4e-7 relative) of tanh for every float, and made of
 * multiply-adds and one division, which the compiler vectorises. */
static float $fast_tanh(float v)
{
    float x = v < -9.0f ? -9.0f : v > 9.0f ? 9.0f : v;
    float x2 = x * x;
    float p = -2.76076847742355e-16f;
    float q = 1.19825839466702e-06f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * (p / q);
}
"""


def _c_name(name: str, path: bool) -> str:
    """``name`` if the functions and files of a model can take it (a path
    of layers if ``path``), else ValueError saying why."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"expected a C identifier (letters, digits, _) for name. Received: name={name!r}")
    if name.startswith("_") or "__" in name:
        raise ValueError(f"expected a name that neither starts with _ nor holds __ (C and C++ keep those for the "
                         f"compiler and the library). Received: name={name!r}")
    identifiers, headers = reserved_names()
    if name in identifiers:
        raise ValueError(f"expected a name that C, C++ and the C library leave free: not a keyword, nor a "
                         f"function, variable, type or macro of the standard or POSIX headers, nor a compiler's "
                         f"built-in (printf, abs, size_t, EOF, class). Received: name={name!r}")
    if name.lower() in headers:
        raise ValueError(f"expected a name whose {name}.h hides no header of the C library or the compiler "
                         f"(under -I its folder would be searched first, for <{name.lower()}.h> too). "
                         f"Received: name={name!r}")
    variables = ("x", "y", "n", "s") if path else ("n", "s")
    if name in variables:
        raise ValueError(f"expected a name other than the batch function's variables {', '.join(variables)}, "
                         f"which would hide the function it calls. Received: name={name!r}")
    return name


def _check_identifiers(name: str, identifiers: list[str]) -> None:
    """ValueError unless every identifier the files of ``name`` declare
    (``identifiers``: the functions, macros and arrays) is free as the name
    itself must be: a name that is free can still make a macro that the C
    library defines."""
    reserved = reserved_names()[0]
    for identifier in identifiers:
        if identifier in reserved or "__" in identifier:
            raise ValueError(f"expected a name whose files declare nothing that C, C++ or the C library keep: "
                             f"{name!r} makes {identifier!r}. Received: name={name!r}")


def _macro(name: str, *parts: str) -> str:
    """A macro of the header of ``name``: ``NAME_PARTS`` in capitals for a
    name without capitals (``xor_net``, ``"INPUTS"`` -> ``XOR_NET_INPUTS``),
    else the name and the parts as they are, the last in lower case
    (``Net``, ``"image"``, ``"INPUTS"`` -> ``Net_image_inputs``), so that
    names that differ in case never share a macro."""
    if name == name.lower():
        return _macro_prefix(name) + "_".join(parts).upper()
    *words, kind = parts
    return _macro_prefix(name) + "_".join([*words, kind.lower()])


def _macro_prefix(name: str) -> str:
    """What every macro of the header of ``name`` starts with: ``NAME_``,
    in capitals for a name without capitals, else as it is."""
    return (name.upper() if name == name.lower() else name) + "_"


def _float(v: np.float32) -> str:
    """The shortest decimal that reads back as the same float32, as a C literal."""
    text = str(v)  # numpy prints the shortest round-tripping digits
    return text + "f"


def _initializer(a: np.ndarray, indent: str = "    ") -> str:
    """A braced C initializer of ``a`` (float32), nested by dimension."""
    if a.ndim == 1:
        rows = [", ".join(_float(v) for v in a[s : s + PAD]) for s in range(0, len(a), PAD)]
        if len(rows) == 1:
            return "{" + rows[0] + "}"
        return "{\n" + ",\n".join(indent + "    " + r for r in rows) + "\n" + indent + "}"
    inner = (indent + "    " + _initializer(sub, indent + "    ") for sub in a)
    return "{\n" + ",\n".join(inner) + "\n" + indent + "}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("s" if n != 1 else "")


def _padded(n: int) -> int:
    return -(-n // PAD) * PAD


class _Buffer:
    """An array on the one-sample function's stack: its ``name`` and
    ``size``, the most floats that a tensor placed in it needs."""

    def __init__(self, name: str):
        self.name, self.size = name, 0


class _Tensor(NamedTuple):
    """Where a tensor's values are while the one-sample function runs:
    ``array``, the C name of an input parameter or of ``buffer``, the stack
    buffer (None for an input); ``valid``, how many floats from the start
    are computed (after a Dense, more than the tensor's values: its
    padding)."""

    array: str
    valid: int
    buffer: _Buffer | None


def _buffer_name(k: int) -> str:
    """The name of the ``k``-th stack buffer: ``a``, ``b``, then ``t2``, ``t3``, ..."""
    return "ab"[k] if k < 2 else f"t{k}"


class _Program:
    """The pieces of the .c file under construction: weight arrays, helper
    functions, the one-sample function's statements and its stack buffers.

    ``last_use``: for each tensor (by the ``id`` of its symbol) the step of
    the last node that reads it (the number of nodes for a model output,
    copied out after them); ``step``: the node being written. A buffer
    holds the tensors placed in it (a tensor, and the views of it that
    Flatten, Reshape and Dropout make) and is free again once no later node
    reads any of them."""

    def __init__(self, prefix: str, last_use: dict[int, int]):
        self.prefix = prefix
        self.arrays: list[str] = []
        self.array_names: set[str] = set()
        self.helpers: list[str] = []
        self.body: list[str] = []
        self.last_use = last_use
        self.step = 0
        self.buffers: list[_Buffer] = []
        self.free: list[_Buffer] = []
        self.held: dict[str, list[int]] = {}  # buffer name -> ids of the symbols placed in it
        self.scratch = 0  # the largest array of partial sums, in floats

    def array(self, name: str, values: np.ndarray) -> str:
        """The file-scope array ``{prefix}{name}`` of ``values`` (its name
        returned), written the first time (the nodes of a shared layer read
        one copy)."""
        name = self.prefix + name
        if name not in self.array_names:
            self.array_names.add(name)
            dims = "".join(f"[{d}]" for d in values.shape)
            self.arrays.append(f"static const float {name}{dims} = {_initializer(values.astype(np.float32), '')};")
        return name

    def helper(self, code: str) -> None:
        """Add the helper function ``code`` (its ``$`` the prefix), once."""
        code = code.replace("$", self.prefix)
        if code not in self.helpers:
            self.helpers.append(code)

    def emit(self, comment: str, *lines: str) -> None:
        self.body.append(f"    /* {comment} */")
        self.body.extend("    " + line for line in lines)

    def place(self, size: int, reads: Sequence[_Tensor] = ()) -> _Buffer:
        """The buffer a node writes ``size`` floats to: the buffer of the
        first of ``reads`` that no later node reads (an elementwise layer
        passes its inputs, to write in place), else a free buffer (the
        smallest that holds ``size`` floats, else the largest, which
        grows), else a new one."""
        buffer = None
        for tensor in reads:
            if tensor.buffer is not None and self.ends_here(tensor.buffer):
                buffer = tensor.buffer
                break
        if buffer is None:
            buffer = self.free_buffer(size)
        buffer.size = max(buffer.size, size)
        return buffer

    def free_buffer(self, size: int) -> _Buffer:
        """A free buffer, taken from the free ones (the smallest of at least
        ``size`` floats, else the largest), or a new one."""
        fits = [b for b in self.free if b.size >= size]
        if fits:
            buffer = min(fits, key=lambda b: b.size)
        elif self.free:
            buffer = max(self.free, key=lambda b: b.size)
        else:
            buffer = _Buffer(_buffer_name(len(self.buffers)))
            self.buffers.append(buffer)
            self.held[buffer.name] = []
            return buffer
        self.free.remove(buffer)
        return buffer

    def ends_here(self, buffer: _Buffer) -> bool:
        """Whether no node after the current one reads a tensor in ``buffer``."""
        return all(self.last_use[s] <= self.step for s in self.held[buffer.name])

    def hold(self, symbol: "Symbol", tensor: _Tensor) -> None:
        """Note that ``symbol``'s values are ``tensor``, in its buffer."""
        if tensor.buffer is not None:
            self.held[tensor.buffer.name].append(id(symbol))

    def release(self) -> None:
        """After the current node: free the buffers whose tensors no later
        node reads."""
        for buffer in self.buffers:
            if buffer not in self.free and self.ends_here(buffer):
                self.held[buffer.name] = []
                self.free.append(buffer)


def _partial_sums(inputs: int, width: int) -> int:
    """How many partial sums a Dense layer keeps per output: a power of two
    that gives about ``ACCUMULATORS`` floats of independent multiply-add
    chains (a chain waits on its last multiply-add, so one sum per output
    leaves the floating-point units idle), at most 4 and at most ``inputs``."""
    u = 1
    while u < 4 and 2 * u * width <= ACCUMULATORS and 2 * u <= inputs:
        u *= 2
    return u


# Each writer adds the code of one call of a layer (at ``site``) to the
# program, reading the tensors ``xs`` (one a layer input), and returns
# where it wrote the output.
def _dense(p: _Program, site: Site, layer: Dense, xs: list[_Tensor]) -> _Tensor:
    i = site.index
    inputs, units = layer.input_shape[0], layer.units
    width = _padded(units)
    w = np.zeros((inputs, width), np.float32)
    w[:, :units] = layer.weights
    b = np.zeros(width, np.float32)
    b[:units] = layer.biases
    weight, bias = p.array(f"weight{i}", w), p.array(f"bias{i}", b)
    src, buffer = xs[0].array, p.place(width)
    dst = buffer.name
    padding = f" (padded to {width})" if width != units else ""
    comment = f"{site.label}: {_text(layer)}: {dst} = {src} . {weight} + {bias}, {_count(units, 'output')}{padding}"
    u = _partial_sums(inputs, width)
    if u == 1:
        p.emit(comment,
               f"for (int j = 0; j < {width}; j++)",
               f"    {dst}[j] = {bias}[j];",
               f"for (int i = 0; i < {inputs}; i++)",
               f"    for (int j = 0; j < {width}; j++)",
               f"        {dst}[j] += {src}[i] * {weight}[i][j];")
    else:
        main = inputs - inputs % u
        p.scratch = max(p.scratch, u * width)
        rest = [f"    for (int i = {main}; i < {inputs}; i++)",
                f"        for (int j = 0; j < {width}; j++)",
                f"            acc[0][j] += {src}[i] * {weight}[i][j];"] if main < inputs else []
        p.emit(comment + f", summed in {u} parts (inputs i mod {u}) that do not wait on each other",
               "{",
               f"    float acc[{u}][{width}] = {{{{0.0f}}}};",
               f"    for (int i = 0; i < {main}; i += {u})",
               f"        for (int u = 0; u < {u}; u++)",
               f"            for (int j = 0; j < {width}; j++)",
               f"                acc[u][j] += {src}[i + u] * {weight}[i + u][j];",
               *rest,
               f"    for (int j = 0; j < {width}; j++)",
               f"        {dst}[j] = {bias}[j] + {_pairwise([f'acc[{k}][j]' for k in range(u)])};",
               "}")
    return _Tensor(dst, width, buffer)


def _pairwise(terms: list[str]) -> str:
    """``terms`` summed in pairs: (t0 + t1) + (t2 + t3)."""
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_pairwise(terms[:half])} + {_pairwise(terms[half:])})"


def _elementwise(expression: str, helper: str | None = None, padded: bool = False) -> Callable:
    """A writer for ``v -> expression`` (its ``$`` the prefix of the
    file's names, as in ``helper``) applied to every value, in place
    where no later node reads the input; ``padded``: to a Dense layer's
    padding as well, so that the loop spans whole registers (for a cheap
    expression that keeps 0 finite)."""
    def write(p: _Program, site: Site, layer, xs: list[_Tensor]) -> _Tensor:
        if helper:
            p.helper(helper)
        n = int(np.prod(layer.input_shape))
        count = xs[0].valid if padded else n
        src, buffer = xs[0].array, p.place(count, xs)
        dst = buffer.name
        what = _count(n, "value") + (f" (and the padding, to {count})" if count != n else "")
        p.emit(f"{site.label}: {_text(layer)} of {what}",
               f"for (int k = 0; k < {count}; k++) {{",
               f"    float v = {src}[k];",
               f"    {dst}[k] = {expression.replace('$', p.prefix)};",
               "}")
        return _Tensor(dst, count, buffer)

    return write


def _softmax(p: _Program, site: Site, layer: Softmax, xs: list[_Tensor]) -> _Tensor:
    n = layer.input_shape[0]
    src, buffer = xs[0].array, p.place(n, xs)
    dst = buffer.name
    p.emit(f"{site.label}: {_text(layer)} of {_count(n, 'value')}, shifted by their maximum",
           "{",
           f"    float m = {src}[0], s = 0.0f;",
           f"    for (int k = 1; k < {n}; k++)",
           f"        m = {src}[k] > m ? {src}[k] : m;",
           f"    for (int k = 0; k < {n}; k++) {{",
           f"        {dst}[k] = expf({src}[k] - m);",
           f"        s += {dst}[k];",
           "    }",
           f"    for (int k = 0; k < {n}; k++)",
           f"        {dst}[k] /= s;",
           "}")
    return _Tensor(dst, n, buffer)


def _position(out: str, stride: int, k: str, pad: int) -> str:
    """The input row (or column) of output ``out`` and window offset ``k``."""
    text = out + (f" * {stride}" if stride != 1 else "") + f" + {k}"
    return text + (f" - {pad}" if pad else "")


def _window_loops(layer, window, stride, padding, first: str, update: tuple[str, ...], last: str) -> list[str]:
    """Loops over a sliding window's outputs (f, oi, oj) of ``layer``, with
    ``first`` before each window, ``update`` for each input (c, ii, jj) in
    it (Conv2D sums over every channel c; MaxPool2D reads its own channel
    f), padding skipped, and ``last`` after it."""
    _, h, w = layer.input_shape
    f, oh, ow = layer.output_shape
    (kh, kw), (sh, sw), (ph, pw) = window, stride, padding
    lines = [(0, f"for (int f = 0; f < {f}; f++)"), (1, f"for (int oi = 0; oi < {oh}; oi++)"),
             (2, f"for (int oj = 0; oj < {ow}; oj++) {{"), (3, first)]
    d = 3
    if isinstance(layer, Conv2D):
        lines.append((3, f"for (int c = 0; c < {layer.input_shape[0]}; c++)"))
        d = 4
    lines += [(d, f"for (int ki = 0; ki < {kh}; ki++) {{"), (d + 1, f"int ii = {_position('oi', sh, 'ki', ph)};")]
    if ph:  # rows of padding add nothing
        lines.append((d + 1, f"if (ii < 0 || ii >= {h}) continue;"))
    lines += [(d + 1, f"for (int kj = 0; kj < {kw}; kj++) {{"), (d + 2, f"int jj = {_position('oj', sw, 'kj', pw)};")]
    if pw:
        lines.append((d + 2, f"if (jj < 0 || jj >= {w}) continue;"))
    lines += [*((d + 2, line) for line in update), (d + 1, "}"), (d, "}"), (3, last), (2, "}")]
    return ["    " * depth + text for depth, text in lines]


def _conv(p: _Program, site: Site, layer: Conv2D, xs: list[_Tensor]) -> _Tensor:
    i = site.index
    c, h, w = layer.input_shape
    weight, bias = p.array(f"weight{i}", layer.weights), p.array(f"bias{i}", layer.biases)
    out = int(np.prod(layer.output_shape))
    src, buffer = xs[0].array, p.place(out)
    dst = buffer.name
    _, oh, ow = layer.output_shape
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    p.emit(f"{site.label}: {_text(layer)}: {dst}[f][oi][oj] = {bias}[f] + the sum over c, ki, kj of "
           f"{weight}[f][c][ki][kj] * {src}[c][{_position('oi', sh, 'ki', ph)}][{_position('oj', sw, 'kj', pw)}]",
           *_window_loops(layer, layer.kernel_size, layer.stride, layer.padding,
                          f"float acc = {bias}[f];",
                          (f"acc += {weight}[f][c][ki][kj] * {src}[(c * {h} + ii) * {w} + jj];",),
                          f"{dst}[(f * {oh} + oi) * {ow} + oj] = acc;"))
    return _Tensor(dst, out, buffer)


def _maxpool(p: _Program, site: Site, layer: MaxPool2D, xs: list[_Tensor]) -> _Tensor:
    _, h, w = layer.input_shape
    out = int(np.prod(layer.output_shape))
    src, buffer = xs[0].array, p.place(out)
    dst = buffer.name
    _, oh, ow = layer.output_shape
    p.emit(f"{site.label}: {_text(layer)}: the largest value of each window, padding left out",
           *_window_loops(layer, layer.pool_size, layer.stride, layer.padding,
                          "float m = -INFINITY;",
                          (f"float v = {src}[(f * {h} + ii) * {w} + jj];", "m = v > m ? v : m;"),
                          f"{dst}[(f * {oh} + oi) * {ow} + oj] = m;"))
    return _Tensor(dst, out, buffer)


def _nothing(why: str) -> Callable:
    """A writer of a layer that computes nothing: its output is its input,
    seen in another shape or passed through (``why`` says which)."""
    def write(p: _Program, site: Site, layer, xs: list[_Tensor]) -> _Tensor:
        p.emit(f"{site.label}: {_text(layer)}: {why}")
        return xs[0]

    return write


def _merge(operator: str, scale: bool = False) -> Callable:
    """A writer of an elementwise merge layer: its inputs combined by
    ``operator`` (``+``, ``-``, ``*``) from left to right, as the numpy
    backend combines them, and the result times the float 1/k where
    ``scale`` (Average). It writes in place over an input that no later
    node reads, and over the padding too where every input holds a
    Dense's."""
    def write(p: _Program, site: Site, layer, xs: list[_Tensor]) -> _Tensor:
        n = int(np.prod(layer.output_shape))
        count = min(x.valid for x in xs)
        buffer = p.place(count, xs)
        dst = buffer.name
        terms = f" {operator} ".join(f"{x.array}[k]" for x in xs)
        expression = f"({terms}) * {_float(np.float32(1.0 / len(xs)))}" if scale else terms
        what = _count(n, "value") + (f" (and the padding, to {count})" if count != n else "")
        p.emit(f"{site.label}: {_text(layer)} of {what}",
               f"for (int k = 0; k < {count}; k++)",
               f"    {dst}[k] = {expression};")
        return _Tensor(dst, count, buffer)

    return write


def _concatenate(p: _Program, site: Site, layer: Concatenate, xs: list[_Tensor]) -> _Tensor:
    """The inputs side by side along the layer's axis. Each input is a
    matrix of ``rows`` rows (the product of the sizes before the axis,
    the same for all) of its own width (the product of its sizes from the
    axis on); its rows are copied into the output's, after the columns of
    the inputs before it."""
    shape = layer.output_shape
    k = _sample_axis(layer.axis, len(shape))
    rows, total = int(np.prod(shape[:k])), int(np.prod(shape[k:]))
    buffer = p.place(rows * total)
    dst = buffer.name
    lines: list[str] = []
    start = 0
    for x, input_shape in zip(xs, layer.input_shape):
        width = int(np.prod(input_shape[k:]))
        lines += _copy_rows(x.array, dst, rows, width, total, start)
        start += width
    where = f"{_count(rows, 'row')} of {total}" if rows > 1 else f"{total} values"
    p.emit(f"{site.label}: {_text(layer)}: {dst} = {', '.join(x.array for x in xs)} side by side, {where}",
           *lines)
    return _Tensor(dst, rows * total, buffer)


def _sample_axis(axis: int, rank: int) -> int:
    """The index, within a sample's shape of ``rank`` axes, of the batch's
    ``axis`` (which counts the batch as 0 and -1 as the last)."""
    return axis - 1 if axis > 0 else rank + axis


def _copy_rows(src: str, dst: str, rows: int, width: int, total: int, start: int) -> list[str]:
    """Loops that copy ``rows`` rows of ``width`` floats from ``src`` into
    the rows of ``total`` floats of ``dst``, from column ``start``."""
    column = f"{start} + k" if start else "k"
    if rows == 1:
        return [f"for (int k = 0; k < {width}; k++)",
                f"    {dst}[{column}] = {src}[k];"]
    return [f"for (int r = 0; r < {rows}; r++)",
            f"    for (int k = 0; k < {width}; k++)",
            f"        {dst}[r * {total} + {column}] = {src}[r * {width} + k];"]


WRITERS: dict[type, Callable] = {
    Dense: _dense,
    TanH: _elementwise("$fast_tanh(v)", FAST_TANH, padded=True),
    Sigmoid: _elementwise("$sigmoid(v)", SIGMOID),
    ReLU: _elementwise("v > 0.0f ? v : 0.0f", padded=True),
    Softmax: _softmax,
    Conv2D: _conv,
    MaxPool2D: _maxpool,
    Flatten: _nothing("(channels, height, width) in row-major order is already flat"),
    Reshape: _nothing("the same values in row-major order, in another shape"),
    Dropout: _nothing("passes its input through in inference"),
    Add: _merge("+"),
    Subtract: _merge("-"),
    Multiply: _merge("*"),
    Average: _merge("+", scale=True),
    Concatenate: _concatenate,
}


class _Port(NamedTuple):
    """A model input or output as the C functions take it: ``parameter``,
    its pointer's name; ``name``, the model's name for it; ``symbol``, its
    tensor."""

    parameter: str
    name: str
    symbol: "Symbol"


def c_source(model: "Model", name: str = "model") -> tuple[str, str]:
    """The text of ``{name}.c`` and ``{name}.h`` for ``model``."""
    name = _c_name(name, model.is_path)
    exported_layers(model, WRITERS, "C")
    inputs, outputs = _ports(model, name)
    p, results = _program(model, inputs, name + "_")
    macros = _macro_values(name, inputs, outputs, model.is_path)
    _check_identifiers(name, [name, f"{name}_batch", _macro(name, "H"), *(m for m, _ in macros),
                              *sorted(p.array_names), f"{p.prefix}sigmoid", f"{p.prefix}fast_tanh"])
    stack = 4 * (sum(b.size for b in p.buffers) + p.scratch)
    return (_source(model, name, p, inputs, outputs, results),
            _header(model, name, inputs, outputs, macros, stack))


def _ports(model: "Model", name: str) -> tuple[list[_Port], list[_Port]]:
    """The inputs and the outputs of the functions: ``x`` and ``y`` for a
    path of layers, else one for each model input and output, in order."""
    if model.is_path:
        return [_Port("x", "x", model.inputs[0])], [_Port("y", "y", model.outputs[0])]
    inputs, outputs = parameter_names(model.input_names, model.output_names, name)
    return ([_Port(c, n, s) for c, n, s in zip(inputs, model.input_names, model.inputs)],
            [_Port(c, n, s) for c, n, s in zip(outputs, model.output_names, model.outputs)])


def parameter_names(inputs: list[str], outputs: list[str], name: str) -> tuple[list[str], list[str]]:
    """The C parameters for the inputs and the outputs of a graph model
    (the model's names for them) in the functions ``name`` and
    ``name_batch``, made from the names deterministically:

    1. each run of characters other than ASCII letters and digits becomes
       one ``_``, and a ``_`` at either end is dropped (``my image`` ->
       ``my_image``);
    2. a name that is then empty, starts with a digit or starts with the
       header's macros' ``NAME_`` (``name`` in capitals, or as it is if it
       has capitals: :func:`_macro`) gets ``in_`` or ``out_`` before it
       (``2d`` -> ``in_2d``);
    3. a name that C, C++ or the C library takes (``reserved_names``: a
       keyword, a macro, a library function), that the generated code uses
       itself (``LOCALS``, ``name``, ``name_batch``, the file's arrays and
       helpers) or that a parameter before it took, compared without case
       (the macros may be in capitals), gets ``_2``, ``_3``, ... after it
       (``k`` -> ``k_2``).
    """
    prefix = _macro_prefix(name)
    taken: set[str] = set()
    chosen: tuple[list[str], list[str]] = ([], [])
    for names, role, parameters in ((inputs, "in", chosen[0]), (outputs, "out", chosen[1])):
        for original in names:
            parameter = _unused(_identifier(original, role, prefix), name, taken)
            taken.add(parameter.upper())
            parameters.append(parameter)
    return chosen


def _identifier(text: str, role: str, prefix: str) -> str:
    """Steps 1 and 2 of :func:`parameter_names`: ``text`` as an identifier,
    ``role`` (``in`` or ``out``) before it where it is empty, starts with a
    digit or with ``prefix``."""
    base = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    if not base:
        return role
    if base[0].isdigit() or base.startswith(prefix):
        return f"{role}_{base}"
    return base


def _unused(base: str, name: str, taken: set[str]) -> str:
    """Step 3 of :func:`parameter_names`: ``base``, or ``base_2``,
    ``base_3``, ..., the first that is neither reserved nor in ``taken``
    (names in capitals)."""
    candidate, k = base, 1
    while _reserved(candidate, name) or candidate.upper() in taken:
        k += 1
        candidate = f"{base}_{k}"
    return candidate


def _reserved(candidate: str, name: str) -> bool:
    """Whether a parameter of the functions ``name`` and ``name_batch``
    cannot be called ``candidate``."""
    internal = candidate.startswith(f"{name}_") and INTERNAL.fullmatch(candidate[len(name) + 1:]) is not None
    return (candidate in reserved_names()[0] or LOCALS.fullmatch(candidate) is not None or internal
            or candidate in (name, f"{name}_batch"))


def _last_uses(model: "Model") -> dict[int, int]:
    """For each tensor (by the ``id`` of its symbol), the step of the last
    node that reads it; a model output's is the number of nodes, since it
    is copied out after them."""
    nodes = model.plan.nodes
    last = {id(node.output): step for step, node in enumerate(nodes)}
    for step, node in enumerate(nodes):
        for symbol in node.inputs:
            last[id(symbol)] = step
    for symbol in model.outputs:
        last[id(symbol)] = len(nodes)
    return last


def _program(model: "Model", inputs: list[_Port], prefix: str) -> tuple[_Program, list[_Tensor]]:
    """The program of ``model``'s nodes, in order, its file-scope names
    after ``prefix``, and where it leaves each model output."""
    p = _Program(prefix, _last_uses(model))
    tensors = {id(port.symbol): _Tensor(port.parameter, sample_size(port.symbol), None) for port in inputs}
    for step, (site, node) in enumerate(exported_nodes(model)):
        p.step = step
        tensor = WRITERS[type(node.layer)](p, site, node.layer, [tensors[id(s)] for s in node.inputs])
        tensors[id(node.output)] = tensor
        p.hold(node.output, tensor)
        p.release()
    return p, [tensors[id(s)] for s in model.outputs]


def _comment_text(text: str) -> str:
    """``text`` made safe inside a C comment of an ASCII file: other
    characters as backslash escapes, and no ``*/``, ``/*`` or ``??``
    (which could start a trigraph)."""
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    text = text.replace("*/", "* /").replace("/*", "/ *")
    while "??" in text:
        text = text.replace("??", "? ?")
    return text


def _header(model: "Model", name: str, inputs: list[_Port], outputs: list[_Port],
            macros: list[tuple[str, int]], stack: int) -> str:
    """The text of ``{name}.h``, ``macros`` its ``#define`` lines."""
    from .._version import __version__

    guard = _macro(name, "H")
    path = model.is_path
    io_lines = [_io_line(kind, port, path) for kind, ports in (("input", inputs), ("output", outputs))
                for port in ports]
    comment = "\n".join(
        ["/* " + f"{name}.h: a neural network exported by intricate-py {__version__}.", " *",
         *(" *   " + _comment_text(line) for line in architecture_lines(model)), " *",
         *(" * " + _comment_text(line) for line in io_lines),
         f" * {name}() keeps {stack} bytes of arrays on the stack; no heap, no global that changes.", " */"])
    defines = "\n".join(f"#define {macro} {value}" for macro, value in macros)
    prototypes = "\n".join(_prototypes(name, inputs, outputs, path))
    return f"""{comment}
#ifndef {guard}
#define {guard}

#include <stddef.h>

{defines}

#ifdef __cplusplus
extern "C" {{
#endif

{prototypes}

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""


def _io_line(kind: str, port: _Port, path: bool) -> str:
    """The header's line on an input or output (``kind``): its floats a
    sample and its shape (``input: ...`` for a path, else
    ``input image: ...``)."""
    shape = port.symbol.shape
    label = kind
    if not path:
        label += f" {port.parameter}" + (f" ({port.name!r})" if port.name != port.parameter else "")
    images = len(shape) == 3 and (kind == "input" or not path)  # a path's output line has never said it
    layout = " (channels, height, width), row-major" if images else ""
    return f"{label}: {sample_size(port.symbol)} floats a sample, shape {shape_text(shape)}{layout}"


def _macro_values(name: str, inputs: list[_Port], outputs: list[_Port], path: bool) -> list[tuple[str, int]]:
    """The header's macros of the floats a sample, with their values:
    ``NAME_INPUTS`` and ``NAME_OUTPUTS`` for one input and one output, and
    for a graph ``NAME_{PARAMETER}_INPUTS`` and ``NAME_{PARAMETER}_OUTPUTS``
    for each (as :func:`_macro` spells them)."""
    macros = []
    for kind, ports in (("INPUTS", inputs), ("OUTPUTS", outputs)):
        if len(ports) == 1:
            macros.append((_macro(name, kind), sample_size(ports[0].symbol)))
        if not path:
            macros += [(_macro(name, port.parameter, kind), sample_size(port.symbol)) for port in ports]
    return macros


def _prototypes(name: str, inputs: list[_Port], outputs: list[_Port], path: bool) -> list[str]:
    """The two functions' declarations, each after a comment on what it
    computes."""
    if path:
        n_in, n_out = sample_size(inputs[0].symbol), sample_size(outputs[0].symbol)
        return [f"/* y[0..{n_out}) = the network's output for the sample x[0..{n_in}) */",
                f"void {name}(const float *x, float *y);",
                f"/* the same for n samples: x holds n * {n_in} floats, y receives n * {n_out} */",
                f"void {name}_batch(const float *x, float *y, size_t n);"]
    parameters = _parameter_list(inputs, outputs)
    ranges = [f"{port.parameter}[0..{sample_size(port.symbol)})" for port in outputs]
    samples = [f"{port.parameter}[0..{sample_size(port.symbol)})" for port in inputs]
    held = [f"{port.parameter} holds n * {sample_size(port.symbol)} floats" for port in inputs]
    received = [f"{port.parameter} receives n * {sample_size(port.symbol)}" for port in outputs]
    what = "output" if len(outputs) == 1 else "outputs"
    return [f"/* {', '.join(ranges)} = the network's {what} for the sample {', '.join(samples)} */",
            f"void {name}({parameters});",
            f"/* the same for n samples, one after the other: {', '.join(held + received)} */",
            f"void {name}_batch({parameters}, size_t n);"]


def _parameter_list(inputs: list[_Port], outputs: list[_Port]) -> str:
    """``const float *image, ..., float *label, ...``."""
    return ", ".join([f"const float *{port.parameter}" for port in inputs]
                     + [f"float *{port.parameter}" for port in outputs])


def _source(model: "Model", name: str, p: _Program, inputs: list[_Port], outputs: list[_Port],
            results: list[_Tensor]) -> str:
    """The text of ``{name}.c``: the weights, the helpers, the one-sample
    function (its stack buffers, the nodes, the outputs copied out) and the
    batch function."""
    from .._version import __version__

    buffers = [f"{b.name}[{b.size}]" for b in p.buffers if b.size]
    declarations = [f"    float {', '.join(buffers)};"] if buffers else []
    read = {id(symbol) for node in model.plan.nodes for symbol in node.inputs}
    unused = [f"    (void){port.parameter}; /* no output depends on this input */"
              for port in inputs if id(port.symbol) not in read]
    copies = []
    for port, tensor in zip(outputs, results):
        if not model.is_path:
            copies.append(f"    /* the output {port.parameter} */")
        copies += [f"    for (int k = 0; k < {sample_size(port.symbol)}; k++)",
                   f"        {port.parameter}[k] = {tensor.array}[k];"]
    parameters = _parameter_list(inputs, outputs)
    offsets = ", ".join(f"{port.parameter} + s * {sample_size(port.symbol)}" for port in inputs + outputs)
    return "\n".join([
        f"/* {name}.c: generated by intricate-py {__version__}; the architecture is in {name}.h. */",
        "#include <math.h>", "#include <stddef.h>", "", f'#include "{name}.h"', "",
        *[a + "\n" for a in p.arrays], *p.helpers,
        f"void {name}({parameters})", "{", *declarations, *unused, *p.body, *copies, "}", "",
        f"void {name}_batch({parameters}, size_t n)", "{",
        "    for (size_t s = 0; s < n; s++)",
        f"        {name}({offsets});", "}", "",
    ])


def export_c(model: "Model", folder: Path, name: str = "model") -> list[Path]:
    """Write ``{name}.c`` and ``{name}.h`` for ``model`` into ``folder``,
    creating the folder (and the folders above it) where it is missing.
    The two files are written as a pair: both are replaced, each
    atomically, or neither is (a failure leaves the old pair)."""
    source, header = c_source(model, name)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "expected a folder for the C files, not a file", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.c", folder / f"{name}.h"]
    atomic_write_all([(path, text.encode("ascii")) for path, text in zip(paths, (source, header))])
    return paths
