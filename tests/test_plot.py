"""plot_model: pictures of path and graph models, in each format, and its errors."""

import re
import shutil
import sys
from pathlib import Path

import pytest

from intricate_py import Input, Model, plot_model
from intricate_py.layers import Add, Dense, ReLU, TanH

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")

#: The layer names of the model below, and the output shapes its boxes show.
NAMES = ["left", "right", "shared", "merge", "act", "branch", "residual", "head"]
SHAPES = ["(n, 8)", "(n, 16)", "(n, 3)"]


@pytest.fixture
def graphviz():
    return pytest.importorskip("graphviz")


@pytest.fixture
def model():
    """Two inputs through one shared Dense, added, a residual branch, two outputs."""
    left, right = Input(8, name="left"), Input(8, name="right")
    shared = Dense(16, name="shared")
    merged = Add(name="merge")([shared(left), shared(right)])
    branch = Dense(16, name="branch")(ReLU(name="act")(merged))
    head = Dense(3, name="head")(Add(name="residual")([merged, branch]))
    return Model(inputs=[left, right], outputs=[head, merged], device="cpu", seed=0)


def edges(dot_text: str) -> list[tuple[str, str]]:
    """The edges of a .dot file, as (tail, head) pairs of node ids."""
    return re.findall(r"^\s*(\w+) -> (\w+)", dot_text, flags=re.M)


def labels(dot_text: str) -> dict[str, str]:
    """Each node id's label in a .dot file."""
    return dict(re.findall(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)"', dot_text, flags=re.M))


def test_dot_file_has_a_box_per_input_and_node_and_an_edge_per_node_input(graphviz, model, tmp_path):
    path = plot_model(model, str(tmp_path / "model.dot"))
    assert path == tmp_path / "model.dot" and isinstance(path, Path)
    text = path.read_text()
    boxes = labels(text)
    assert len(boxes) == 2 + len(model.plan.nodes) == 9
    ids = {label.split("\\n")[0]: node_id for node_id, label in boxes.items()}  # first line: the name
    first, second = "shared (call 1 of 2)", "shared (call 2 of 2)"
    expected = [("left", first), ("right", second), (first, "merge"), (second, "merge"),
                ("merge", "act"), ("act", "branch"), ("merge", "residual"), ("branch", "residual"),
                ("residual", "head")]
    found = edges(text)
    assert len(found) == 9
    assert sorted(found) == sorted((ids[a], ids[b]) for a, b in expected)


def test_dot_labels_name_type_shape_and_mark_outputs(graphviz, model, tmp_path):
    boxes = labels(plot_model(model, tmp_path / "model.dot").read_text())
    texts = sorted(boxes.values())
    assert "left\\nInput\\n(n, 8)" in texts
    assert "shared (call 1 of 2)\\nDense(8→16)\\n(n, 16)" in texts
    assert "shared (call 2 of 2)\\nDense(8→16)\\n(n, 16)" in texts
    assert "head\\nDense(16→3)\\n(n, 3)\\noutput 'head'" in texts
    assert "merge\\nAdd()\\n(n, 16)\\noutput 'merge'" in texts
    assert sum("output" in t for t in texts) == 2


def test_show_shapes_false_and_rankdir(graphviz, model, tmp_path):
    text = plot_model(model, tmp_path / "model.dot", show_shapes=False, rankdir="LR").read_text()
    assert "(n, " not in text
    assert "rankdir=LR" in text
    assert "head\\nDense(16→3)\\noutput 'head'" in labels(text).values()


@needs_dot
def test_svg_holds_every_layer_name_and_shape(graphviz, model, tmp_path):
    text = plot_model(model, tmp_path / "model.svg").read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    for name in NAMES:
        assert f">{name}" in text, name
    for shape in SHAPES:
        assert f">{shape}<" in text, shape
    assert "Dense(8→16)" in text or "Dense(8&#8594;16)" in text


@needs_dot
def test_png_and_pdf_files(graphviz, model, tmp_path):
    assert plot_model(model, tmp_path / "model.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert plot_model(model, tmp_path / "MODEL.PDF").read_bytes().startswith(b"%PDF")


@needs_dot
def test_path_model(graphviz, tmp_path):
    model = Model([Dense(3, name="hidden"), TanH(name="squash")], input_size=2, device="cpu")
    text = plot_model(model, tmp_path / "path.svg").read_text()
    assert ">hidden<" in text and ">squash<" in text and ">(n, 3)<" in text
    assert len(edges(plot_model(model, tmp_path / "path.dot").read_text())) == 2


def test_unbuilt_path_model_asks_for_input_size(graphviz, tmp_path):
    with pytest.raises(ValueError, match="input_size"):
        plot_model(Model([Dense(3)], device="cpu"), tmp_path / "model.svg")
    assert not (tmp_path / "model.svg").exists()


def test_unknown_suffix_lists_the_accepted_ones(model, tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf, \.dot.*'\.jpg'"):
        plot_model(model, tmp_path / "model.jpg")
    with pytest.raises(ValueError, match=r"suffix ''"):
        plot_model(model, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(graphviz, model, tmp_path):
    with pytest.raises(ValueError, match=r"TB, LR, BT, RL.*'sideways'"):
        plot_model(model, tmp_path / "model.dot", rankdir="sideways")
    with pytest.raises(TypeError, match="expected an intricate_py Model. Received: list"):
        plot_model([Dense(3)], tmp_path / "model.dot")


def test_without_the_graphviz_package(model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'intricate-py\[plot\]'"):
        plot_model(model, tmp_path / "model.svg")


def test_without_dot_says_to_install_graphviz_and_keeps_the_old_file(graphviz, model, tmp_path, monkeypatch):
    old = tmp_path / "model.svg"
    old.write_text("old picture")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match=r"Install Graphviz \(on Debian: apt-get install graphviz"):
        plot_model(model, old)
    assert old.read_text() == "old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.svg"]
    assert len(edges(plot_model(model, tmp_path / "model.dot").read_text())) == 9  # .dot needs no dot
