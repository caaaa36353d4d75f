"""The names of exported C (issue 26 item 6): a name that cannot work is
refused with a ValueError saying why, and every name accepted compiles, in
a program that includes every header of the C library beside it, under
gcc -std=c99 -pedantic, gcc -std=c2x with _GNU_SOURCE and g++; two names
that differ in case live in one program."""

import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import c_names
from export_models import ATOL, RTOL

from intricate_py import Model
from intricate_py.export import c as c_export
from intricate_py.graph import Input
from intricate_py.layers import Dense, Sigmoid, TanH

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("g++") is None,
                                reason="needs gcc and g++")

WARNINGS = ["-Wall", "-Wextra", "-Werror"]
#: The dialects the files must compile in, with the compiler of each.
DIALECTS = {
    "c99": ["gcc", "-x", "c", "-std=c99", "-pedantic", *WARNINGS],
    "c2x": ["gcc", "-x", "c", "-std=c2x", "-D_GNU_SOURCE", *WARNINGS],
    "c++": ["g++", "-x", "c++", "-std=c++2b", "-pedantic", *WARNINGS],
}


def tiny(seed: int = 0) -> Model:
    """A path of layers that uses both helpers (TanH, Sigmoid)."""
    return Model([Dense(3), TanH(), Dense(2), Sigmoid()], input_size=2, device="cpu", seed=seed)


def tiny_graph(seed: int = 0) -> Model:
    """Two inputs, two outputs, with names that C keeps."""
    a, b = Input(2, name="EOF"), Input(3, name="printf")
    h = Dense(4)(a)
    return Model(inputs=[a, b], outputs=[TanH(name="class")(h), Dense(2, name="stdin")(b)], device="cpu",
                 seed=seed)


# ------------------------------------------------------------------ refused
@pytest.mark.parametrize("name, reason", [
    *[(n, "C, C\\+\\+ and the C library leave free") for n in (
        "printf", "malloc", "exit", "abs", "isinff", "roundeven", "iszero", "class", "new", "template",
        "EOF", "errno", "size_t", "main", "printf_unlocked", "bool", "typeof", "read", "index", "time")],
    ("stddef", "whose stddef.h hides no header"), ("Stddef", "whose Stddef.h hides no header"),
    ("features", "whose features.h hides no header"), ("immintrin", "hides no header"),
    ("_net", "neither starts with _ nor holds __"), ("net__x", "neither starts with _ nor holds __"),
    ("net_", "'net_' makes 'net__batch'"),  # C++ keeps every name with __
    ("x", "other than the batch function's variables x, y, n, s"), ("s", "variables x, y, n, s"),
    ("my-net", "expected a C identifier"), ("2net", "expected a C identifier"), ("", "expected a C identifier"),
])
def test_names_that_cannot_work_are_refused(tmp_path, name, reason):
    with pytest.raises(ValueError, match=f"{reason}.*Received: name={re.escape(repr(name))}"):
        tiny().export(tmp_path, format="c", name=name)
    assert list(tmp_path.iterdir()) == []


def test_a_graph_may_be_named_like_a_path_s_parameters(tmp_path):
    """x and y are a path's parameters; a graph's are its inputs' and
    outputs' names, which move aside for the function's name."""
    tiny_graph().export(tmp_path, format="c", name="x")
    with pytest.raises(ValueError, match="variables n, s"):
        tiny_graph().export(tmp_path, format="c", name="n")


def test_a_free_name_that_makes_a_taken_identifier_is_refused(tmp_path, monkeypatch):
    """Should the C library take NET_H (a later version, say), the name net
    is refused: its include guard would be that macro."""
    identifiers, headers = c_export.reserved_names()
    monkeypatch.setattr(c_export, "reserved_names", lambda: (identifiers | {"NET_H"}, headers))
    with pytest.raises(ValueError, match="'net' makes 'NET_H'"):
        tiny().export(tmp_path, format="c", name="net")
    tiny().export(tmp_path, format="c", name="Net")  # Net_h is free


# ------------------------------------------------------------------ accepted
ACCEPTED = ["net", "NET", "Net", "xor_net", "sigmoid", "fast_tanh", "weight0", "bias1", "a", "b", "t2", "acc",
            "model", "tm_sec", "st_mode", "beta", "lerp", "module", "import", "final", "override", "net_2",
            "EOF_model", "Memcpy", "MEMCPY", "stddef_h", "math2", "N", "S", "X"]


def free_header_words(count: int, seed: int = 0) -> list[str]:
    """``count`` identifiers of the C library's headers that are no name
    of its own (struct members and the like), drawn with ``seed``: names
    near the edge of what is free."""
    words = sorted(c_names.header_words("c2x"))
    identifiers, headers = c_export.reserved_names()
    free = [w for w in words if w not in identifiers and w.lower() not in headers and "__" not in w
            and w not in ("x", "y", "n", "s") and not w.startswith("_")]
    return random.Random(seed).sample(free, count)


def random_accepted_names(count: int, seed: int = 0) -> list[str]:
    """``count`` identifiers of 1 to 12 letters, digits and _ drawn at
    random with ``seed`` among those the exporter accepts (a refusal is a
    ValueError)."""
    rng = random.Random(seed)
    alphabet = "abcxyzNETMQ_019"
    names: list[str] = []
    while len(names) < count:
        name = rng.choice("abcxyzNETMQ") + "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        try:
            c_export.c_source(tiny(), name)
        except ValueError:
            continue
        if name not in names:
            names.append(name)
    return names


def macro(name: str, *parts: str) -> str:
    """The header's macro of ``parts`` (``INPUTS``; ``image``, ``INPUTS``)
    for ``name``, as the C exporter's module docstring says: all in
    capitals for a name without capitals, else the name and the parts as
    they are but the last, in lower case."""
    if name == name.lower():
        return "_".join([name, *parts]).upper()
    return "_".join([name, *parts[:-1], parts[-1].lower()])


def program(names: list[str], graphs: list[str]) -> str:
    """A program that includes every header of the C library, then the
    header of each of ``names`` (paths) and ``graphs`` (``tiny_graph``),
    runs each on one sample (in arrays sized by the header's macros) and
    prints the outputs, a line a model."""
    lines = [c_names.includes(), *(f'#include "{n}.h"' for n in [*names, *graphs]), "int main(void)", "{"]
    for k, n in enumerate(names):
        lines += [f"    float x{k}[{macro(n, 'INPUTS')}] = {{0.5f, -1.0f}}, y{k}[{macro(n, 'OUTPUTS')}];",
                  f"    {n}(x{k}, y{k});",
                  f'    printf("%.9g %.9g\\n", (double)y{k}[0], (double)y{k}[1]);']
    for k, g in enumerate(graphs):
        lines += [f"    float a{k}[{macro(g, 'EOF_2', 'INPUTS')}] = {{0.5f, -1.0f}}, "
                  f"b{k}[{macro(g, 'printf_2', 'INPUTS')}] = {{1.0f, 2.0f, 3.0f}};",
                  f"    float c{k}[{macro(g, 'class_2', 'OUTPUTS')}], d{k}[{macro(g, 'stdin_2', 'OUTPUTS')}];",
                  f"    {g}_batch(a{k}, b{k}, c{k}, d{k}, 1);",
                  f'    printf("%.9g %.9g\\n", (double)c{k}[0], (double)d{k}[1]);']
    return "\n".join(lines + ["    return 0;", "}", ""])


def compile_and_run(folder: Path, dialect: str, sources: list[Path], main: str) -> list[str]:
    """The lines printed by ``main`` built with the exported ``sources``
    (found with ``-I`` their folder, as a user's program finds them),
    compiled in ``dialect`` (the C sources by gcc in C99 under g++'s), linked
    and run, in a folder of ``folder``."""
    build = folder / dialect
    build.mkdir()
    c_flags = DIALECTS["c99" if dialect == "c++" else dialect]
    subprocess.run([*c_flags, "-c", *map(str, sources)], cwd=build, check=True, capture_output=True, text=True)
    (build / "main.src").write_text(main)
    linker = "g++" if dialect == "c++" else "gcc"
    objects = sorted(str(p) for p in build.glob("*.o"))
    subprocess.run([*DIALECTS[dialect], f"-I{sources[0].parent}", "-c", "main.src", "-o", "main.obj"], cwd=build,
                   check=True, capture_output=True, text=True)
    subprocess.run([linker, "main.obj", *objects, "-o", "main", "-lm"], cwd=build, check=True, capture_output=True,
                   text=True)
    return subprocess.run([str(build / "main")], check=True, capture_output=True, text=True).stdout.splitlines()


def test_every_accepted_name_compiles_beside_every_header_in_c_and_c_plus_plus(tmp_path):
    """Issue 26 item 6: the issue's own names and their neighbours (names
    of the generated code, C++'s contextual keywords, names that differ
    only in case, struct members of the headers, 20 of them drawn at
    random, and 15 random identifiers), one path each, and a graph whose
    inputs and outputs C keeps (named in lower case, and with capitals), all
    in one program, in C99, C2x with _GNU_SOURCE and C++."""
    names = ACCEPTED + free_header_words(20)
    names += [n for n in random_accepted_names(15) if n.lower() not in {m.lower() for m in names}]
    folder = tmp_path / "out"
    for k, name in enumerate(names):
        tiny(seed=k).export(folder, format="c", name=name)
    graph = tiny_graph()
    for name in ("graph", "Graph"):
        graph.export(folder, format="c", name=name)
    sources = sorted(folder.glob("*.c"))
    assert len(sources) == len(names) + 2  # no two names wrote the same files
    main = program(names, ["graph", "Graph"])
    x = np.array([[0.5, -1.0]], np.float32)
    expected = [tiny(seed=k).predict(x)[0] for k in range(len(names))]
    graph_out = graph.predict([x, np.array([[1.0, 2.0, 3.0]], np.float32)])
    expected += [[graph_out[0][0, 0], graph_out[1][0, 1]]] * 2
    for dialect in DIALECTS:
        try:
            printed = compile_and_run(tmp_path, dialect, sources, main)
        except subprocess.CalledProcessError as error:
            pytest.fail(f"{dialect}: {' '.join(error.cmd)}\n{error.stderr[-3000:]}")
        got = np.array([[float(v) for v in line.split()] for line in printed])
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_names_that_differ_in_case_share_no_guard_and_no_macro(tmp_path):
    for name in ("net", "NET", "Net"):
        tiny().export(tmp_path, format="c", name=name)
    defined = {name: re.findall(r"#(?:ifndef|define) (\w+)", (tmp_path / f"{name}.h").read_text())
               for name in ("net", "NET", "Net")}
    assert defined["net"] == ["NET_H", "NET_H", "NET_INPUTS", "NET_OUTPUTS"]  # as before
    assert defined["NET"] == ["NET_h", "NET_h", "NET_inputs", "NET_outputs"]
    assert defined["Net"] == ["Net_h", "Net_h", "Net_inputs", "Net_outputs"]
    source = (tmp_path / "Net.c").read_text()
    assert "static const float Net_weight0[2][8]" in source and "static float Net_fast_tanh(float v)" in source


# ------------------------------------------------------------------ the stored list
@pytest.mark.slow
def test_the_stored_names_hold_every_name_this_machine_takes():
    """c_reserved.txt, made by tests/c_names.py, holds every name that this
    machine's gcc, g++ and C library take (a few seconds: the compilers are
    asked about every identifier of the headers and of gcc). If this fails
    after an upgrade of gcc or the C library, run python tests/c_names.py."""
    if shutil.which("strings") is None:
        pytest.skip("needs strings (binutils)")
    identifiers, headers = c_export.reserved_names()
    missing = sorted(c_names.reserved_identifiers() - identifiers)
    assert not missing, f"{len(missing)} names are taken but not stored, such as {missing[:20]}"
    missing = sorted(c_names.header_names() - headers)
    assert not missing, f"header names not stored: {missing[:20]}"
