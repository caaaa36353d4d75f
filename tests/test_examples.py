"""The examples run to the end."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / name / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xor_example_converges_and_reloads(tmp_path, device, capsys):
    assert load_example("xor").main(["--device", device, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "loaded them back" in out
    assert {p.name for p in tmp_path.iterdir()} == {"xor-first-dense.safetensors", "xor-second-dense.safetensors"}
