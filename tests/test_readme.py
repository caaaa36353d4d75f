"""The README's Python blocks run, in order, in one namespace."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_a_tour():
    assert len(python_blocks()) >= 2


def test_readme_code_runs(tmp_path, monkeypatch):
    from intricate_py.layers import LAYER_TYPES

    monkeypatch.chdir(tmp_path)  # files the tour writes land here
    namespace: dict = {}
    registered = dict(LAYER_TYPES)
    try:
        for block in python_blocks():
            exec(compile(block, str(README), "exec"), namespace)
    finally:  # the README's own layers leave the registry as it was
        LAYER_TYPES.clear()
        LAYER_TYPES.update(registered)
