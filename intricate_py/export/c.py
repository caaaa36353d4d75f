"""Models as C99 source: ``{name}.c`` and ``{name}.h`` with

    void name(const float *x, float *y);                  /* one sample */
    void name_batch(const float *x, float *y, size_t n);  /* n samples, one after the other */

The weights are ``static const float`` arrays, written so that they read
back bit for bit; the activations live in two arrays on the stack, so there
is no heap and no global that changes, and only ``<math.h>`` and
``<stddef.h>`` are included. The code compiles warning-free as strict C99
(``-std=c99 -Wall -Wextra -Werror -pedantic``), a comment for each layer.

It is laid out for the compiler to vectorise: every loop has constant
bounds; Dense outputs are padded with zero weights to a multiple of 8
floats (one 256-bit register) and accumulated row by row of W
(``y[j] += x[i] * W[i][j]``), in up to 4 independent partial sums so that
the multiply-adds need not wait for each other; TanH and ReLU run over the
padding too, whole registers at a time. TanH is a rational function
without library calls (within 7 ulp of tanh), Sigmoid uses expf on
-|v| (exact for both signs, never overflows), Softmax is shifted by its
maximum, as the numpy backend computes them.

Images are row-major (channels, height, width) per sample, as NCHW batches
are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sigmoid, Softmax, TanH
from ..saving import atomic_write
from . import architecture_lines, exported_layers, layer_text as _text, shape_text

if TYPE_CHECKING:
    from ..model import Model

#: Dense outputs are padded to a multiple of this many floats.
PAD = 8
#: About how many floats of partial sums a Dense layer accumulates at once.
ACCUMULATORS = 128

C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int "
    "long register restrict return short signed sizeof static struct switch typedef union unsigned void "
    "volatile while _Bool _Complex _Imaginary".split()
)
#: What the generated files' headers, <math.h> and <stddef.h>, declare
#: (C99, and the names glibc adds by default): a model named like one of
#: them would not compile.
_MATH_FUNCTIONS = (
    "acos asin atan atan2 cos sin tan acosh asinh atanh cosh sinh tanh exp exp2 expm1 exp10 frexp "
    "ilogb ldexp log log10 log1p log2 logb modf scalbn scalbln cbrt fabs hypot pow sqrt erf erfc "
    "lgamma tgamma gamma ceil floor nearbyint rint lrint llrint round lround llround trunc fmod "
    "remainder remquo copysign nan nextafter nexttoward fdim fmax fmin fma drem finite significand "
    "j0 j1 jn y0 y1 yn sincos pow10"
).split()
STANDARD_NAMES = frozenset(
    [f + suffix for f in _MATH_FUNCTIONS for suffix in ("", "f", "l")]
    + (
        "NAN INFINITY HUGE_VAL HUGE_VALF HUGE_VALL FP_INFINITE FP_NAN FP_NORMAL FP_SUBNORMAL FP_ZERO "
        "FP_FAST_FMA FP_FAST_FMAF FP_FAST_FMAL FP_ILOGB0 FP_ILOGBNAN MATH_ERRNO MATH_ERREXCEPT "
        "math_errhandling fpclassify isfinite isinf isnan isnormal signbit isgreater isgreaterequal "
        "isless islessequal islessgreater isunordered float_t double_t signgam M_E M_LOG2E M_LOG10E "
        "M_LN2 M_LN10 M_PI M_PI_2 M_PI_4 M_1_PI M_2_PI M_2_SQRTPI M_SQRT2 M_SQRT1_2 "
        "NULL offsetof ptrdiff_t size_t wchar_t max_align_t"
    ).split()
)
#: Names that the generated .c file uses where the model's function is
#: visible (its file-scope arrays and helpers, the batch function's
#: variables, the library functions it calls), which a model's name must not take.
INTERNAL = re.compile(r"(weight|bias)\d+|sigmoid|fast_tanh|expf|fabsf|[xyns]|size_t|main")

SIGMOID = """\
/* 1 / (1 + e^-v) from e^-|v|, which never overflows: exact for both signs */
static float sigmoid(float v)
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
static float fast_tanh(float v)
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


def _c_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"expected a C identifier (letters, digits, _) for name. Received: name={name!r}")
    if name in C_KEYWORDS or INTERNAL.fullmatch(name) or re.match(r"_[A-Z_]", name):
        raise ValueError(f"expected a name that is not a C keyword or reserved. Received: name={name!r}")
    if name in STANDARD_NAMES:
        raise ValueError(
            f"expected a name that <math.h> and <stddef.h> do not declare (the generated C includes "
            f"them). Received: name={name!r}"
        )
    return name


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


class _Program:
    """The pieces of the .c file under construction: weight arrays, helper
    functions, and the one-sample function's statements. ``src`` names the
    array that holds the current activations: the input ``x`` at first,
    then the stack buffers ``a`` and ``b`` in turn."""

    def __init__(self, inputs: int):
        self.arrays: list[str] = []
        self.helpers: list[str] = []
        self.body: list[str] = []
        self.src = "x"
        self.valid = inputs  # floats computed at src: the values, and a Dense's padding
        self.sizes = {"a": 0, "b": 0}
        self.scratch = 0  # the largest array of partial sums, in floats

    def array(self, name: str, values: np.ndarray) -> str:
        dims = "".join(f"[{d}]" for d in values.shape)
        self.arrays.append(f"static const float {name}{dims} = {_initializer(values.astype(np.float32), '')};")
        return name

    def helper(self, code: str) -> None:
        if code not in self.helpers:
            self.helpers.append(code)

    def emit(self, comment: str, *lines: str) -> None:
        self.body.append(f"    /* {comment} */")
        self.body.extend("    " + line for line in lines)

    def into(self, size: int, in_place: bool = False) -> str:
        """The buffer a layer writes ``size`` floats to: the current one for
        an elementwise layer (unless that is the input), else the other."""
        if in_place and self.src != "x":
            dst = self.src
        else:
            dst = "b" if self.src == "a" else "a"
        self.sizes[dst] = max(self.sizes[dst], size)
        self.valid = size
        return dst


def _partial_sums(inputs: int, width: int) -> int:
    """How many partial sums a Dense layer keeps per output: a power of two
    that gives about ``ACCUMULATORS`` floats of independent multiply-add
    chains (a chain waits on its last multiply-add, so one sum per output
    leaves the floating-point units idle), at most 4 and at most ``inputs``."""
    u = 1
    while u < 4 and 2 * u * width <= ACCUMULATORS and 2 * u <= inputs:
        u *= 2
    return u


# Each writer adds layer ``i``'s code to the program, reading p.src, and
# moves p.src to where it wrote.
def _dense(p: _Program, i: int, layer: Dense) -> None:
    inputs, units = layer.input_shape[0], layer.units
    width = _padded(units)
    w = np.zeros((inputs, width), np.float32)
    w[:, :units] = layer.weights
    b = np.zeros(width, np.float32)
    b[:units] = layer.biases
    weight, bias = p.array(f"weight{i}", w), p.array(f"bias{i}", b)
    src, dst = p.src, p.into(width)
    padding = f" (padded to {width})" if width != units else ""
    comment = f"{i}: {_text(layer)}: {dst} = {src} . {weight} + {bias}, {_count(units, 'output')}{padding}"
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
    p.src = dst


def _pairwise(terms: list[str]) -> str:
    """``terms`` summed in pairs: (t0 + t1) + (t2 + t3)."""
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_pairwise(terms[:half])} + {_pairwise(terms[half:])})"


def _elementwise(expression: str, helper: str | None = None, padded: bool = False) -> Callable:
    """A writer for ``v -> expression`` applied to every value in place;
    ``padded``: to a Dense layer's padding as well, so that the loop spans
    whole registers (for a cheap expression that keeps 0 finite)."""
    def write(p: _Program, i: int, layer) -> None:
        if helper:
            p.helper(helper)
        n = int(np.prod(layer.input_shape))
        count = p.valid if padded else n
        src, dst = p.src, p.into(count, in_place=True)
        what = _count(n, "value") + (f" (and the padding, to {count})" if count != n else "")
        p.emit(f"{i}: {_text(layer)} of {what}",
               f"for (int k = 0; k < {count}; k++) {{",
               f"    float v = {src}[k];",
               f"    {dst}[k] = {expression};",
               "}")
        p.src = dst

    return write


def _softmax(p: _Program, i: int, layer: Softmax) -> None:
    n = layer.input_shape[0]
    src, dst = p.src, p.into(n, in_place=True)
    p.emit(f"{i}: {_text(layer)} of {_count(n, 'value')}, shifted by their maximum",
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
    p.src = dst


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


def _conv(p: _Program, i: int, layer: Conv2D) -> None:
    c, h, w = layer.input_shape
    weight, bias = p.array(f"weight{i}", layer.weights), p.array(f"bias{i}", layer.biases)
    src, dst = p.src, p.into(int(np.prod(layer.output_shape)))
    _, oh, ow = layer.output_shape
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    p.emit(f"{i}: {_text(layer)}: {dst}[f][oi][oj] = {bias}[f] + the sum over c, ki, kj of "
           f"{weight}[f][c][ki][kj] * {src}[c][{_position('oi', sh, 'ki', ph)}][{_position('oj', sw, 'kj', pw)}]",
           *_window_loops(layer, layer.kernel_size, layer.stride, layer.padding,
                          f"float acc = {bias}[f];",
                          (f"acc += {weight}[f][c][ki][kj] * {src}[(c * {h} + ii) * {w} + jj];",),
                          f"{dst}[(f * {oh} + oi) * {ow} + oj] = acc;"))
    p.src = dst


def _maxpool(p: _Program, i: int, layer: MaxPool2D) -> None:
    _, h, w = layer.input_shape
    src, dst = p.src, p.into(int(np.prod(layer.output_shape)))
    _, oh, ow = layer.output_shape
    p.emit(f"{i}: {_text(layer)}: the largest value of each window, padding left out",
           *_window_loops(layer, layer.pool_size, layer.stride, layer.padding,
                          "float m = -INFINITY;",
                          (f"float v = {src}[(f * {h} + ii) * {w} + jj];", "m = v > m ? v : m;"),
                          f"{dst}[(f * {oh} + oi) * {ow} + oj] = m;"))
    p.src = dst


def _nothing(why: str) -> Callable:
    def write(p: _Program, i: int, layer) -> None:
        p.emit(f"{i}: {_text(layer)}: {why}")

    return write


WRITERS: dict[type, Callable] = {
    Dense: _dense,
    TanH: _elementwise("fast_tanh(v)", FAST_TANH, padded=True),
    Sigmoid: _elementwise("sigmoid(v)", SIGMOID),
    ReLU: _elementwise("v > 0.0f ? v : 0.0f", padded=True),
    Softmax: _softmax,
    Conv2D: _conv,
    MaxPool2D: _maxpool,
    Flatten: _nothing("(channels, height, width) in row-major order is already flat"),
    Dropout: _nothing("passes its input through in inference"),
}


def c_source(model: "Model", name: str = "model") -> tuple[str, str]:
    """The text of ``{name}.c`` and ``{name}.h`` for ``model``."""
    from .. import __version__

    name = _c_name(name)
    layers = exported_layers(model, WRITERS, "C")
    inputs, outputs = int(np.prod(model.input_shape)), int(np.prod(model.output_shape))
    p = _Program(inputs)
    for i, layer in enumerate(layers):
        WRITERS[type(layer)](p, i, layer)
    upper = name.upper()
    buffers = [f"{b}[{n}]" for b, n in p.sizes.items() if n]
    stack = 4 * (sum(p.sizes.values()) + p.scratch)
    header_comment = "\n".join(
        ["/* " + f"{name}.h: a neural network exported by intricate-py {__version__}.", " *",
         *(" *   " + line for line in architecture_lines(model)), " *",
         f" * input: {inputs} floats a sample, shape {shape_text(model.input_shape)}"
         + (" (channels, height, width), row-major" if len(model.input_shape) == 3 else ""),
         f" * output: {outputs} floats a sample, shape {shape_text(model.output_shape)}",
         f" * {name}() keeps {stack} bytes of arrays on the stack; no heap, no global that changes.", " */"])
    header = f"""{header_comment}
#ifndef {upper}_H
#define {upper}_H

#include <stddef.h>

#define {upper}_INPUTS {inputs}
#define {upper}_OUTPUTS {outputs}

#ifdef __cplusplus
extern "C" {{
#endif

/* y[0..{outputs}) = the network's output for the sample x[0..{inputs}) */
void {name}(const float *x, float *y);
/* the same for n samples: x holds n * {inputs} floats, y receives n * {outputs} */
void {name}_batch(const float *x, float *y, size_t n);

#ifdef __cplusplus
}}
#endif

#endif /* {upper}_H */
"""
    declarations = [f"    float {', '.join(buffers)};"] if buffers else []
    body = "\n".join([
        f"/* {name}.c: generated by intricate-py {__version__}; the architecture is in {name}.h. */",
        "#include <math.h>", "#include <stddef.h>", "", f'#include "{name}.h"', "",
        *[a + "\n" for a in p.arrays], *p.helpers,
        f"void {name}(const float *x, float *y)", "{", *declarations, *p.body,
        f"    for (int k = 0; k < {outputs}; k++)", f"        y[k] = {p.src}[k];", "}", "",
        f"void {name}_batch(const float *x, float *y, size_t n)", "{",
        "    for (size_t s = 0; s < n; s++)",
        f"        {name}(x + s * {inputs}, y + s * {outputs});", "}", "",
    ])
    return body, header


def export_c(model: "Model", folder: Path, name: str = "model") -> list[Path]:
    """Write ``{name}.c`` and ``{name}.h`` for ``model`` into ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"expected an existing folder for the C files. Received: path={str(folder)!r}"
        )
    source, header = c_source(model, name)
    paths = [folder / f"{name}.c", folder / f"{name}.h"]
    for path, text in zip(paths, (source, header)):
        atomic_write(path, text.encode("ascii"))
    return paths
