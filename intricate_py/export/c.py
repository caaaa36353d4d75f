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
the multiply-adds need not wait for each other; TanH, ReLU and LeakyReLU
run over the padding too, whole registers at a time, and so do the
elementwise merge layers when all their inputs hold it. TanH is a
rational function without library calls (within 7 ulp of tanh), Sigmoid
uses expf on -|v| (exact for both signs, never overflows), Softmax is
shifted by its maximum; every other activation is a function of its own
(``leaky_relu``, ``elu`` with expm1f, ``gelu`` with erfcf, ``gelu_tanh``
and ``silu`` with ``sigmoid``, ``softplus`` with log1pf), and a Dense's or
Conv2D's activation= runs over its output in place. Add, Subtract and
Multiply combine their inputs left to right and Average multiplies their
sum by the float 1/k, as the numpy backend computes them. Concatenate
copies blocks. BatchNormalization computes ((x - mean) · r) · gamma +
beta from its moving statistics, r = 1 / sqrt(variance + epsilon) rounded
as the numpy backend rounds it (so, operation for operation, predict's);
one that reads the output channels of a Dense or Conv2D without an
activation of its own is folded into that product instead
(:func:`common.batch_norm_folds`: the product's arrays hold the folded
weights). LayerNormalization sums each row's values in order for its
mean and variance.

Images are row-major (channels, height, width) per sample, as NCHW batches
are. Conv2D sums over its group's channels and its (dilated) taps, and
the pooling layers over their windows, skipping the padding (which may
differ on each side, "same"); AveragePooling2D divides a window's sum by
the count of its pixels inside the image, as predict; UpSampling2D and
ZeroPadding2D copy.

Sequences (n, length, features) are row-major too, a position a row. A
Dense of them computes each position's product in turn (the output rows
unpadded, its activation= of each row; a softmax row by row), Embedding
copies its table's row of each id (the float cast to int; an id outside
the table gives zeros, so nothing is read outside it) and PositionEmbedding
its table's first rows, which are all its array holds. MultiHeadAttention
is refused (``REFUSED``: ValueError naming the layer, saying to export to
ONNX).
"""

from __future__ import annotations

import errno
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np

from ..layers import (ELU, GELU, ActivationFunction, Add, Average, AveragePooling2D, BatchNormalization, Concatenate,
                      Conv2D, Dense, Dropout, Embedding, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D,
                      LayerNormalization, LeakyReLU, MaxPool2D, MultiHeadAttention, Multiply, PositionEmbedding, ReLU,
                      Reshape, Sigmoid, SiLU, Softmax, Softplus, Subtract, TanH, UpSampling2D, ZeroPadding2D)
from ..saving import atomic_write_all
from .common import (Site, architecture_lines, batch_norm_folds, batch_norm_terms, exported_layers, exported_nodes,
                     layer_text as _text, product_arrays, sample_size, shape_text)

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
#: The helper functions a .c file may define, after its prefix ``{name}_``.
HELPERS = ("sigmoid", "fast_tanh", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "softplus")
#: The file-scope names of the .c file after its prefix ``{name}_``: the
#: weight arrays and the helper functions.
INTERNAL = re.compile(r"(weight|bias)\d+|layer\d+_\w+|" + "|".join(HELPERS))


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


LEAKY_RELU_HELPER = """\
/* v where v > 0, else slope * v */
static float $leaky_relu(float v, float slope)
{
    return v > 0.0f ? v : slope * v;
}
"""

ELU_HELPER = """\
/* v where v > 0, else alpha (e^v - 1), without the cancellation of expf(v) - 1 */
static float $elu(float v, float alpha)
{
    return v > 0.0f ? v : alpha * expm1f(v);
}
"""

GELU_HELPER = """\
/* v Phi(v), Phi(v) = erfc(-v / sqrt 2) / 2 the normal distribution (no 1 + erf that cancels for v < 0) */
static float $gelu(float v)
{
    return 0.5f * v * erfcf(-0.70710677f * v);
}
"""

GELU_TANH_HELPER = """\
/* v (1 + tanh u) / 2 = v sigmoid(2u), u = sqrt(2/pi) (v + 0.044715 v^3): no 1 + tanh that cancels */
static float $gelu_tanh(float v)
{
    return v * $sigmoid(1.5957692f * (v + 0.044715f * v * v * v));
}
"""

SILU_HELPER = """\
/* v sigmoid(v) (Swish) */
static float $silu(float v)
{
    return v * $sigmoid(v);
}
"""

SOFTPLUS_HELPER = """\
/* log(1 + e^v) as max(v, 0) + log1p(e^-|v|), which never overflows */
static float $softplus(float v)
{
    return (v > 0.0f ? v : 0.0f) + log1pf(expf(-fabsf(v)));
}
"""


def _c_activation(function: ActivationFunction) -> tuple[str, tuple[str, ...], bool]:
    """The C expression of ``function`` (not softmax) of a float ``v`` (its
    ``$`` the prefix of the file's names, as in the helpers), the helpers it calls, and whether it may run over a Dense's padding too
    (cheap, and 0 stays finite)."""
    kind, param = function
    if kind == "tanh":
        return "$fast_tanh(v)", (FAST_TANH,), True
    if kind == "relu":
        return "v > 0.0f ? v : 0.0f", (), True
    if kind == "leaky_relu":
        return f"$leaky_relu(v, {_float(np.float32(param))})", (LEAKY_RELU_HELPER,), True
    if kind == "elu":
        return f"$elu(v, {_float(np.float32(param))})", (ELU_HELPER,), False
    calls = {"sigmoid": (SIGMOID,), "gelu": (GELU_HELPER,), "gelu_tanh": (SIGMOID, GELU_TANH_HELPER),
             "silu": (SIGMOID, SILU_HELPER), "softplus": (SOFTPLUS_HELPER,)}
    return f"${kind}(v)", calls[kind], False


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

    def __init__(self, prefix: str, last_use: dict[int, int],
                 products: dict[int, tuple[np.ndarray, np.ndarray]] | None = None):
        self.prefix = prefix
        #: folded (weights, biases) of Dense and Conv2D layers, by id (common.batch_norm_folds)
        self.products = products or {}
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

    def product_weights(self, layer) -> tuple[np.ndarray, np.ndarray | None]:
        """A Dense or Conv2D layer's (weights, biases) (None for a layer
        without biases), folded with the batch normalization after it
        where there is one."""
        return self.products[id(layer)] if id(layer) in self.products else product_arrays(layer)

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
    if len(layer.input_shape) > 1:
        return _dense_rows(p, site, layer, xs)
    i = site.index
    inputs, units = layer.input_shape[0], layer.units
    width = _padded(units)
    weights, biases = p.product_weights(layer)
    w = np.zeros((inputs, width), np.float32)
    w[:, :units] = weights
    b = np.zeros(width, np.float32)  # zeros for a Dense made with use_bias=False
    if biases is not None:
        b[:units] = biases
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
    out = _Tensor(dst, width, buffer)
    _own_activation(p, site, layer, out, units)
    return out


def _dense_rows(p: _Program, site: Site, layer: Dense, xs: list[_Tensor]) -> _Tensor:
    """A Dense of samples of more axes (n, ..., inputs): the product of each
    position (a row of the last axis) in turn, into ``acc`` padded to a
    multiple of ``PAD`` (the weights padded with zeros, as a flat Dense's),
    of which the ``units`` outputs are copied to the position's row: the
    output stays row-major, without padding between the rows."""
    i = site.index
    inputs, units = layer.input_shape[-1], layer.units
    rows = int(np.prod(layer.input_shape[:-1]))
    width = _padded(units)
    weights, biases = p.product_weights(layer)
    w = np.zeros((inputs, width), np.float32)
    w[:, :units] = weights
    b = np.zeros(width, np.float32)
    if biases is not None:
        b[:units] = biases
    weight, bias = p.array(f"weight{i}", w), p.array(f"bias{i}", b)
    src, buffer = xs[0].array, p.place(rows * units)
    dst = buffer.name
    p.scratch = max(p.scratch, width)
    p.emit(f"{site.label}: {_text(layer)}: {dst}[r] = {src}[r] . {weight} + {bias} for each of "
           f"{_count(rows, 'position')} r, {_count(units, 'output')} each",
           f"for (int r = 0; r < {rows}; r++) {{",
           f"    float acc[{width}];",
           f"    for (int j = 0; j < {width}; j++)",
           f"        acc[j] = {bias}[j];",
           f"    for (int i = 0; i < {inputs}; i++)",
           f"        for (int j = 0; j < {width}; j++)",
           f"            acc[j] += {src}[r * {inputs} + i] * {weight}[i][j];",
           f"    for (int j = 0; j < {units}; j++)",
           f"        {dst}[r * {units} + j] = acc[j];",
           "}")
    out = _Tensor(dst, rows * units, buffer)
    _own_activation(p, site, layer, out, rows * units, row=units)
    return out


def _embedding(p: _Program, site: Site, layer: Embedding, xs: list[_Tensor]) -> _Tensor:
    """Each id's row of the table ``weight{i}`` (input_dim, output_dim): the
    id is the float cast to int; an id outside [0, input_dim) gives a row
    of zeros (predict refuses it; the C code reads no memory outside the
    table)."""
    ids, dim, vocab = int(np.prod(layer.input_shape)), layer.output_dim, layer.input_dim
    table = p.array(f"weight{site.index}", layer.embeddings)
    src, buffer = xs[0].array, p.place(ids * dim)
    dst = buffer.name
    p.emit(f"{site.label}: {_text(layer)}: {dst}[k] = {table}[(int){src}[k]] for each of {_count(ids, 'id')}, "
           "zeros for an id outside the table",
           f"for (int k = 0; k < {ids}; k++) {{",
           f"    int r = (int){src}[k];",
           f"    for (int j = 0; j < {dim}; j++)",
           f"        {dst}[k * {dim} + j] = r >= 0 && r < {vocab} ? {table}[r][j] : 0.0f;",
           "}")
    return _Tensor(dst, ids * dim, buffer)


def _position_embedding(p: _Program, site: Site, layer: PositionEmbedding, xs: list[_Tensor]) -> _Tensor:
    """The table's first ``length`` rows (the array ``weight{i}``, those
    rows only), copied: the input's values are not read."""
    length, features = layer.input_shape
    table = p.array(f"weight{site.index}", layer.embeddings[:length])
    buffer = p.place(length * features)
    dst = buffer.name
    p.emit(f"{site.label}: {_text(layer)}: {dst} = {table}, the first {_count(length, 'position')} of the table",
           f"for (int r = 0; r < {length}; r++)",
           f"    for (int j = 0; j < {features}; j++)",
           f"        {dst}[r * {features} + j] = {table}[r][j];")
    return _Tensor(dst, length * features, buffer)


def _pairwise(terms: list[str]) -> str:
    """``terms`` summed in pairs: (t0 + t1) + (t2 + t3)."""
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_pairwise(terms[:half])} + {_pairwise(terms[half:])})"


def _activation_layer(p: _Program, site: Site, layer, xs: list[_Tensor]) -> _Tensor:
    """An activation layer (but Softmax) over every value, in place where
    no later node reads the input, and over a Dense layer's padding as
    well where :func:`_c_activation` allows, so that the loop spans whole
    registers."""
    expression, helpers, padded = _c_activation(layer.function)
    n = int(np.prod(layer.input_shape))
    count = xs[0].valid if padded else n
    src, buffer = xs[0].array, p.place(count, xs)
    dst = buffer.name
    what = _count(n, "value") + (f" (and the padding, to {count})" if count != n else "")
    p.emit(f"{site.label}: {_text(layer)} of {what}", *_apply_lines(p, expression, helpers, src, dst, count))
    return _Tensor(dst, count, buffer)


def _apply_lines(p: _Program, expression: str, helpers: tuple[str, ...], src: str, dst: str, count: int) -> list[str]:
    """A loop setting ``dst[k]`` to ``expression`` of ``v = src[k]`` (its
    ``$`` the prefix of the file's names) for the first ``count`` values
    (the helpers it calls added to the program)."""
    for helper in helpers:
        p.helper(helper)
    return [f"for (int k = 0; k < {count}; k++) {{",
            f"    float v = {src}[k];",
            f"    {dst}[k] = {expression.replace('$', p.prefix)};",
            "}"]


def _softmax_lines(src: str, dst: str, n: int) -> list[str]:
    """``dst`` = the softmax of ``src``'s first ``n`` values, shifted by their maximum."""
    return ["{",
            f"    float m = {src}[0], s = 0.0f;",
            f"    for (int k = 1; k < {n}; k++)",
            f"        m = {src}[k] > m ? {src}[k] : m;",
            f"    for (int k = 0; k < {n}; k++) {{",
            f"        {dst}[k] = expf({src}[k] - m);",
            f"        s += {dst}[k];",
            "    }",
            f"    for (int k = 0; k < {n}; k++)",
            f"        {dst}[k] /= s;",
            "}"]


def _softmax(p: _Program, site: Site, layer: Softmax, xs: list[_Tensor]) -> _Tensor:
    n = layer.input_shape[-1]  # over the last axis, row by row
    rows = int(np.prod(layer.input_shape[:-1]))
    src, buffer = xs[0].array, p.place(rows * n, xs)
    dst = buffer.name
    if rows == 1:
        p.emit(f"{site.label}: {_text(layer)} of {_count(n, 'value')}, shifted by their maximum",
               *_softmax_lines(src, dst, n))
    else:
        p.emit(f"{site.label}: {_text(layer)} of each of {_count(rows, 'row')} of {n}, shifted by their maximum",
               f"for (int r = 0; r < {rows}; r++)",
               *_softmax_lines(f"({src} + r * {n})", f"({dst} + r * {n})", n))
    return _Tensor(dst, rows * n, buffer)


def _own_activation(p: _Program, site: Site, layer: Dense | Conv2D, out: _Tensor, values: int,
                    row: int | None = None) -> None:
    """A Dense's or Conv2D's activation= over its ``values`` outputs (and
    the padding where it may), in place; a softmax over each ``row`` of
    that many values where given (a Dense of sequences), else over all."""
    function = layer.function
    if function is None:
        return
    comment = f"{site.label}: its activation {layer.activation}"
    if function.kind == "softmax" and row is not None and row != values:
        rows, dst = values // row, f"({out.array} + r * {row})"
        p.emit(comment + f" of each of {_count(rows, 'row')} of {row}, shifted by its maximum",
               f"for (int r = 0; r < {rows}; r++)", *_softmax_lines(dst, dst, row))
        return
    if function.kind == "softmax":
        p.emit(comment + ", shifted by the maximum", *_softmax_lines(out.array, out.array, values))
        return
    expression, helpers, padded = _c_activation(function)
    count = out.valid if padded else values
    what = _count(values, "value") + (f" (and the padding, to {count})" if count != values else "")
    p.emit(f"{comment} of {what}", *_apply_lines(p, expression, helpers, out.array, out.array, count))


def _position(out: str, stride: int, k: str, pad: int, dilation: int = 1) -> str:
    """The input row (or column) of output ``out`` and window offset ``k``."""
    text = out + (f" * {stride}" if stride != 1 else "") + f" + {k}" + (f" * {dilation}" if dilation != 1 else "")
    return text + (f" - {pad}" if pad else "")


class _Window(NamedTuple):
    """A window sliding over a layer's input: its size, stride, padding
    (top, bottom, left, right) and dilation, and ``channels``, how many
    input channels each output sums over (None: it reads its own channel
    f, as a pooling layer)."""

    size: tuple[int, int]
    stride: tuple[int, int]
    sides: tuple[int, int, int, int]
    dilation: tuple[int, int] = (1, 1)
    channels: int | None = None


def _window_loops(layer, window: _Window, first: str, update: tuple[str, ...], last: str) -> list[str]:
    """Loops over a sliding window's outputs (f, oi, oj) of ``layer``, with
    ``first`` before each window, ``update`` for each input (c, ii, jj) in
    it (Conv2D sums over the channels c of its group; a pooling layer
    reads its own channel f), padding skipped, and ``last`` after it."""
    _, h, w = layer.input_shape
    f, oh, ow = layer.output_shape
    (kh, kw), (sh, sw), (dh, dw) = window.size, window.stride, window.dilation
    top, bottom, left, right = window.sides
    lines = [(0, f"for (int f = 0; f < {f}; f++)"), (1, f"for (int oi = 0; oi < {oh}; oi++)"),
             (2, f"for (int oj = 0; oj < {ow}; oj++) {{"), (3, first)]
    d = 3
    if window.channels is not None:
        lines.append((3, f"for (int c = 0; c < {window.channels}; c++)"))
        d = 4
    lines += [(d, f"for (int ki = 0; ki < {kh}; ki++) {{"),
              (d + 1, f"int ii = {_position('oi', sh, 'ki', top, dh)};")]
    if top or bottom:  # rows of padding add nothing
        lines.append((d + 1, f"if (ii < 0 || ii >= {h}) continue;"))
    lines += [(d + 1, f"for (int kj = 0; kj < {kw}; kj++) {{"),
              (d + 2, f"int jj = {_position('oj', sw, 'kj', left, dw)};")]
    if left or right:
        lines.append((d + 2, f"if (jj < 0 || jj >= {w}) continue;"))
    lines += [*((d + 2, line) for line in update), (d + 1, "}"), (d, "}"), (3, last), (2, "}")]
    return ["    " * depth + text for depth, text in lines]


def _conv(p: _Program, site: Site, layer: Conv2D, xs: list[_Tensor]) -> _Tensor:
    """Each output a sum over its group's channels and the kernel's taps
    (channel c of the group is input channel f / (filters / groups) ·
    (channels / groups) + c), padding skipped."""
    i = site.index
    c, h, w = layer.input_shape
    weights, biases = p.product_weights(layer)
    weight = p.array(f"weight{i}", weights)
    bias = p.array(f"bias{i}", biases) if biases is not None else None
    out = int(np.prod(layer.output_shape))
    src, buffer = xs[0].array, p.place(out)
    dst = buffer.name
    _, oh, ow = layer.output_shape
    (sh, sw), (dh, dw) = layer.stride, layer.dilation_rate
    top, _, left, _ = layer.sides
    per_group = c // layer.groups
    channel = "c" if layer.groups == 1 else f"(f / {layer.filters // layer.groups} * {per_group} + c)"
    start = f"{bias}[f] + the sum" if bias else "the sum"
    p.emit(f"{site.label}: {_text(layer)}: {dst}[f][oi][oj] = {start} over c, ki, kj of "
           f"{weight}[f][c][ki][kj] * {src}[{channel}][{_position('oi', sh, 'ki', top, dh)}]"
           f"[{_position('oj', sw, 'kj', left, dw)}]",
           *_window_loops(layer, _Window(layer.kernel_size, layer.stride, layer.sides, layer.dilation_rate, per_group),
                          f"float acc = {bias}[f];" if bias else "float acc = 0.0f;",
                          (f"acc += {weight}[f][c][ki][kj] * {src}[({channel} * {h} + ii) * {w} + jj];",),
                          f"{dst}[(f * {oh} + oi) * {ow} + oj] = acc;"))
    result = _Tensor(dst, out, buffer)
    _own_activation(p, site, layer, result, out)
    return result


def _maxpool(p: _Program, site: Site, layer: MaxPool2D, xs: list[_Tensor]) -> _Tensor:
    _, h, w = layer.input_shape
    out = int(np.prod(layer.output_shape))
    src, buffer = xs[0].array, p.place(out)
    dst = buffer.name
    _, oh, ow = layer.output_shape
    p.emit(f"{site.label}: {_text(layer)}: the largest value of each window, padding left out",
           *_window_loops(layer, _Window(layer.pool_size, layer.stride, layer.sides),
                          "float m = -INFINITY;",
                          (f"float v = {src}[(f * {h} + ii) * {w} + jj];", "m = v > m ? v : m;"),
                          f"{dst}[(f * {oh} + oi) * {ow} + oj] = m;"))
    return _Tensor(dst, out, buffer)


def _batch_norm(p: _Program, site: Site, layer: BatchNormalization, xs: list[_Tensor]) -> _Tensor:
    """Each value's ((x - mean) · r) · gamma + beta of its channel, from
    ``weight{i}`` (mean, r, gamma by row) and ``bias{i}`` (beta), in place
    where no later node reads the input."""
    i = site.index
    mean, r, gamma, beta = batch_norm_terms(layer)
    weight, bias = p.array(f"weight{i}", np.stack([mean, r, gamma])), p.array(f"bias{i}", beta)
    k = layer.batch_axis() - 1  # the channels' axis in a sample
    shape = layer.input_shape
    outer, c, inner = int(np.prod(shape[:k])), shape[k], int(np.prod(shape[k + 1:]))
    n = outer * c * inner
    src, buffer = xs[0].array, p.place(n, xs)
    dst = buffer.name
    at = f"(i * {c} + c) * {inner} + j"
    p.emit(f"{site.label}: {_text(layer)}: {dst} = (({src} - mean) * r) * gamma + beta of each channel c, "
           f"{weight} holding mean, r = 1 / sqrt(moving variance + {layer.epsilon:g}) and gamma by row",
           f"for (int i = 0; i < {outer}; i++)",
           f"    for (int c = 0; c < {c}; c++)",
           f"        for (int j = 0; j < {inner}; j++)",
           f"            {dst}[{at}] = ({src}[{at}] - {weight}[0][c]) * {weight}[1][c] * {weight}[2][c] + {bias}[c];")
    return _Tensor(dst, n, buffer)


def _layer_norm(p: _Program, site: Site, layer: LayerNormalization, xs: list[_Tensor]) -> _Tensor:
    """Each row of the last axis normalized by its mean and biased variance
    (summed in order), times ``weight{i}`` (gamma) plus ``bias{i}`` (beta),
    in place where no later node reads the input."""
    i = site.index
    c = layer.channels
    rows = int(np.prod(layer.input_shape[:-1]))
    gamma = layer.gamma if layer.scale else np.ones(c, np.float32)
    beta = layer.beta if layer.center else np.zeros(c, np.float32)
    weight, bias = p.array(f"weight{i}", gamma), p.array(f"bias{i}", beta)
    src, buffer = xs[0].array, p.place(rows * c, xs)
    dst = buffer.name
    p.emit(f"{site.label}: {_text(layer)}: {dst} = ({src} - m) / sqrt(v + {layer.epsilon:g}) * {weight} + {bias} "
           f"for each of {_count(rows, 'row')} of {c}, m and v its mean and variance",
           f"for (int r = 0; r < {rows}; r++) {{",
           "    float m = 0.0f, v = 0.0f, s;",
           f"    for (int k = 0; k < {c}; k++)",
           f"        m += {src}[r * {c} + k];",
           f"    m /= {_float(np.float32(c))};",
           f"    for (int k = 0; k < {c}; k++) {{",
           f"        float u = {src}[r * {c} + k] - m;",
           "        v += u * u;",
           "    }",
           f"    v /= {_float(np.float32(c))};",
           f"    s = 1.0f / sqrtf(v + {_float(np.float32(layer.epsilon))});",
           f"    for (int k = 0; k < {c}; k++)",
           f"        {dst}[r * {c} + k] = ({src}[r * {c} + k] - m) * s * {weight}[k] + {bias}[k];",
           "}")
    return _Tensor(dst, rows * c, buffer)


def _avgpool(p: _Program, site: Site, layer: AveragePooling2D, xs: list[_Tensor]) -> _Tensor:
    _, h, w = layer.input_shape
    out = int(np.prod(layer.output_shape))
    src, buffer = xs[0].array, p.place(out)
    dst = buffer.name
    _, oh, ow = layer.output_shape
    p.emit(f"{site.label}: {_text(layer)}: the mean of each window's values inside the image "
           "(the sum in row-major order over their count; the padding left out of both)",
           *_window_loops(layer, _Window(layer.pool_size, layer.stride, layer.sides),
                          "float s = 0.0f; int k = 0;",
                          (f"s += {src}[(f * {h} + ii) * {w} + jj];", "k++;"),
                          f"{dst}[(f * {oh} + oi) * {ow} + oj] = s / (float)k;"))
    return _Tensor(dst, out, buffer)


def _global_pool(kind: str) -> Callable:
    """A writer of GlobalMaxPooling2D (``kind`` "max") or
    GlobalAveragePooling2D ("mean"): one value a channel, from its plane
    in row-major order (the mean: the sum over the count)."""
    def write(p: _Program, site: Site, layer, xs: list[_Tensor]) -> _Tensor:
        c, h, w = layer.input_shape
        src, buffer = xs[0].array, p.place(c)
        dst = buffer.name
        if kind == "max":
            lines = ("float m = -INFINITY;", f"for (int k = 0; k < {h * w}; k++)",
                     f"    m = {src}[c * {h * w} + k] > m ? {src}[c * {h * w} + k] : m;", f"{dst}[c] = m;")
        else:
            lines = ("float s = 0.0f;", f"for (int k = 0; k < {h * w}; k++)",
                     f"    s += {src}[c * {h * w} + k];", f"{dst}[c] = s / {_float(np.float32(h * w))};")
        p.emit(f"{site.label}: {_text(layer)}: the {kind} of each channel's {h}x{w} values",
               f"for (int c = 0; c < {c}; c++) {{", *("    " + line for line in lines), "}")
        return _Tensor(dst, c, buffer)

    return write


def _upsample(p: _Program, site: Site, layer: UpSampling2D, xs: list[_Tensor]) -> _Tensor:
    c, h, w = layer.input_shape
    _, oh, ow = layer.output_shape
    (sh, sw) = layer.size
    out = c * oh * ow
    src, buffer = xs[0].array, p.place(out)
    dst = buffer.name
    p.emit(f"{site.label}: {_text(layer)}: {dst}[c][i][j] = {src}[c][i / {sh}][j / {sw}]",
           f"for (int c = 0; c < {c}; c++)",
           f"    for (int i = 0; i < {oh}; i++)",
           f"        for (int j = 0; j < {ow}; j++)",
           f"            {dst}[(c * {oh} + i) * {ow} + j] = {src}[(c * {h} + i / {sh}) * {w} + j / {sw}];")
    return _Tensor(dst, out, buffer)


def _zero_pad(p: _Program, site: Site, layer: ZeroPadding2D, xs: list[_Tensor]) -> _Tensor:
    c, h, w = layer.input_shape
    _, oh, ow = layer.output_shape
    top, _, left, _ = layer.sides
    out = c * oh * ow
    src, buffer = xs[0].array, p.place(out)
    dst = buffer.name
    p.emit(f"{site.label}: {_text(layer)}: zeros, then {src}[c][i][j] at {dst}[c][{top} + i][{left} + j]",
           f"for (int k = 0; k < {out}; k++)",
           f"    {dst}[k] = 0.0f;",
           f"for (int c = 0; c < {c}; c++)",
           f"    for (int i = 0; i < {h}; i++)",
           f"        for (int j = 0; j < {w}; j++)",
           f"            {dst}[(c * {oh} + i + {top}) * {ow} + j + {left}] = {src}[(c * {h} + i) * {w} + j];")
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
    TanH: _activation_layer,
    Sigmoid: _activation_layer,
    ReLU: _activation_layer,
    LeakyReLU: _activation_layer,
    ELU: _activation_layer,
    GELU: _activation_layer,
    SiLU: _activation_layer,
    Softplus: _activation_layer,
    Softmax: _softmax,
    Conv2D: _conv,
    MaxPool2D: _maxpool,
    AveragePooling2D: _avgpool,
    GlobalMaxPooling2D: _global_pool("max"),
    GlobalAveragePooling2D: _global_pool("mean"),
    UpSampling2D: _upsample,
    ZeroPadding2D: _zero_pad,
    Flatten: _nothing("(channels, height, width) in row-major order is already flat"),
    Reshape: _nothing("the same values in row-major order, in another shape"),
    Dropout: _nothing("passes its input through in inference"),
    Add: _merge("+"),
    Subtract: _merge("-"),
    Multiply: _merge("*"),
    Average: _merge("+", scale=True),
    Concatenate: _concatenate,
    BatchNormalization: _batch_norm,
    LayerNormalization: _layer_norm,
    Embedding: _embedding,
    PositionEmbedding: _position_embedding,
}

#: The layer types that the C exporter refuses, with why (ValueError naming
#: the layer); every other layer type has a writer in ``WRITERS``.
REFUSED: dict[type, str] = {
    MultiHeadAttention: "C export does not support attention (MultiHeadAttention); export the model to ONNX "
                        "instead (model.export(path), format='onnx')",
}


class LayerCode:
    """What a layer's ``c_code`` hook (:meth:`Layer.c_code`) writes through:
    arrays named after the layer's index (``{name}_layer3_alpha``), stack
    buffers placed as the exporter's own writers place theirs."""

    def __init__(self, p: _Program, site: Site):
        self._p, self._site = p, site
        self.outputs: dict[str, _Tensor] = {}

    def output(self, size: int) -> str:
        """The name of a float array of ``size`` floats to write an output to."""
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"expected an output size, a positive int. Received: {size!r}")
        buffer = self._p.place(int(size))
        self.outputs[buffer.name] = _Tensor(buffer.name, int(size), buffer)
        return buffer.name

    def weight(self, role: str, values) -> str:
        """The name of a ``static const float`` array holding ``values``
        (indexed as their shape says: ``name[i][j]`` for a matrix)."""
        if not isinstance(role, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", role):
            raise ValueError(f"expected a role of letters, digits and _ for the array's name. Received: {role!r}")
        values = np.asarray(values, np.float64)
        if values.ndim == 0:
            values = values.reshape(1)
        return self._p.array(f"layer{self._site.index}_{role}", values)

    def emit(self, comment: str, *lines: str) -> None:
        """Add C statements, after a comment saying what they compute."""
        self._p.emit(f"{self._site.label}: {_comment_text(str(comment))}", *lines)


def _hook(p: _Program, site: Site, layer, xs: list[_Tensor]) -> _Tensor:
    """The writer of a layer of the user's: its ``c_code`` hook."""
    code = LayerCode(p, site)
    out = layer.c_code(code, [x.array for x in xs])
    tensor = code.outputs.get(out) or next((x for x in xs if x.array == out), None)
    if tensor is None:
        raise ValueError(f"expected {type(layer).__name__}.c_code to return the name of its output, an array of "
                         f"code.output() or an input. Received: {out!r}")
    return tensor


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
    for i, layer in enumerate(model.layers):
        if type(layer) in REFUSED:
            raise ValueError(f"cannot export layer {i} {layer!r} to C: {REFUSED[type(layer)]}")
    exported_layers(model, WRITERS, "C", "c_code")
    inputs, outputs = _ports(model, name)
    p, results = _program(model, inputs, name + "_")
    macros = _macro_values(name, inputs, outputs, model.is_path)
    _check_identifiers(name, [name, f"{name}_batch", _macro(name, "H"), *(m for m, _ in macros),
                              *sorted(p.array_names), *(p.prefix + helper for helper in HELPERS)])
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
    folds = batch_norm_folds(model)
    p = _Program(prefix, _last_uses(model), folds.products)
    tensors = {id(port.symbol): _Tensor(port.parameter, sample_size(port.symbol), None) for port in inputs}
    for step, (site, node) in enumerate(exported_nodes(model)):
        p.step = step
        xs = [tensors[id(s)] for s in node.inputs]
        if id(node) in folds.folded:
            tensor = _nothing("folded into the product before it (its weights and biases)")(p, site, node.layer, xs)
        else:
            tensor = WRITERS.get(type(node.layer), _hook)(p, site, node.layer, xs)
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
