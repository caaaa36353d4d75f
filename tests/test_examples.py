"""The examples run to the end."""

import importlib.util
import os
import re
from pathlib import Path

import pytest

from intricate_py.datasets import FASHION_MNIST

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


@pytest.fixture
def fashion_mnist():
    if not FASHION_MNIST.is_dir():
        message = f"no Fashion-MNIST in {FASHION_MNIST} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("INTRICATE_REQUIRE_DATA") == "1":
            pytest.fail(message + "; INTRICATE_REQUIRE_DATA=1 makes this a failure")
        pytest.skip(message)


def test_mnist_example_trains_plots_and_reloads(tmp_path, device, fashion_mnist, capsys):
    args = ["--device", device, "--limit", "2000", "--epochs", "2", "--out", str(tmp_path)]
    assert load_example("mnist").main(args) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"reloaded it: test loss [\d.]+, test accuracy ([\d.]+)", out).group(1))
    assert accuracy > 0.7
    assert "Ankle boot" in out and "T-shirt/top" in out  # the per-class table
    written = {p.name for p in tmp_path.iterdir()}
    assert written == {"fashion-mnist-mlp.safetensors", "curves.png", "confusion.png", "misclassified.png"}
    for png in ("curves.png", "confusion.png", "misclassified.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mnist_example_without_data_says_what_to_install(tmp_path, capsys):
    assert load_example("mnist").main(["--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and "--data" in err


def test_mnist_example_cnn_runs(tmp_path, fashion_mnist, capsys):
    args = ["--model", "cnn", "--device", "cpu", "--limit", "300", "--epochs", "1", "--out", str(tmp_path)]
    assert load_example("mnist").main(args) == 0
    out = capsys.readouterr().out
    assert "Conv2D(1→32, 5×5)" in out and "(n, 64, 4, 4)" in out  # the summary table
    assert (tmp_path / "fashion-mnist-cnn.safetensors").is_file()


def test_sweep_example_runs_on_local_ray(tmp_path, fashion_mnist):
    """As a user runs it: a script, a Ray of its own, a table, files, the best model reloaded."""
    pytest.importorskip("ray")
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sweep" / "main.py"), "--samples", "2", "--epochs", "2",
         "--limit", "1000", "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "best trials" in run.stdout
    accuracy = float(re.search(r"the best checkpoint reloaded: test accuracy ([\d.]+)", run.stdout).group(1))
    assert accuracy > 0.5
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("config/lr,config/width,config/seed,epoch,val_accuracy") and len(rows) == 3


def test_sweep_example_sweeps_the_cnn(tmp_path, fashion_mnist):
    """--model cnn: the trials train the CNN, whose checkpoints hold it."""
    pytest.importorskip("ray")
    import subprocess
    import sys

    from intricate_py import Model
    from intricate_py.layers import Conv2D

    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sweep" / "main.py"), "--model", "cnn", "--samples", "1",
         "--epochs", "1", "--limit", "300", "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.search(r"the best checkpoint reloaded: test accuracy [\d.]+", run.stdout)
    checkpoints = sorted((tmp_path / "ray" / "fashion-mnist-cnn").rglob("model.safetensors"))
    assert checkpoints
    model = Model.load(checkpoints[0], device="cpu")
    assert isinstance(model.layers[0], Conv2D) and model.input_shape == (1, 28, 28)
