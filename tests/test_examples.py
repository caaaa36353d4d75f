"""The examples run to the end."""

import importlib.util
import json
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


def test_mnist_example_resnet_beside_its_pytorch_twin(tmp_path, fashion_mnist, capsys):
    pytest.importorskip("torch")
    args = ["--model", "resnet", "--device", "cpu", "--limit", "256", "--test-limit", "200", "--epochs", "2",
            "--compare-torch", "--out", str(tmp_path)]
    assert load_example("mnist").main(args) == 0
    out = capsys.readouterr().out
    difference = float(re.search(r"twin's probabilities differ from the model's by (\S+) at most", out).group(1))
    assert difference < 1e-5  # the same network, the same weights
    assert "median time per epoch: intricate-py (cpu) / PyTorch (CPU)" in out and "epoch 2 of 2, on newly" in out
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert len(comparison["intricate-py"]["val_accuracy"]) == len(comparison["pytorch"]["val_accuracy"]) == 2
    assert {p.name for p in tmp_path.iterdir()} == {"fashion-mnist-resnet.safetensors", "curves.png", "confusion.png",
                                                    "misclassified.png", "comparison.json"}
    from intricate_py import Model
    from intricate_py.layers import BatchNormalization

    saved = Model.load(tmp_path / "fashion-mnist-resnet.safetensors", device="cpu")
    assert saved.input_shape == (1, 28, 28) and isinstance(saved.layers[0], BatchNormalization)


def test_mnist_example_augmentation_shifts_and_flips_each_image():
    """Each augmented image is its original shifted by -2..2 pixels each
    way (zeros coming in), flipped left-right or not; the same (seed,
    epoch) gives the same images, another epoch others."""
    import numpy as np

    augmented = load_example("mnist").augmented
    images = np.random.default_rng(0).random((40, 1, 6, 7)).astype(np.float32) + 1  # no zeros inside
    out = augmented(images, 0, 3)
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for image, original in zip(out, padded):
        candidates = [window[:, :, ::-1] if flip else window for i in range(5) for j in range(5)
                      for window in [original[:, i:i + 6, j:j + 7]] for flip in (False, True)]
        assert any(np.array_equal(image, c) for c in candidates)
    assert np.array_equal(augmented(images, 0, 3), out) and not np.array_equal(augmented(images, 0, 4), out)


def sweep_example(tmp_path, *arguments: str):
    """The sweep example as a user runs it (a process and a Ray of its own),
    on the CPU, writing to ``tmp_path``: it must succeed."""
    pytest.importorskip("ray")
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(ROOT / "examples" / "sweep" / "main.py"), *arguments,
                          "--device", "cpu", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def test_sweep_example_runs_on_local_ray(tmp_path, fashion_mnist):
    """As a user runs it: a script, a Ray of its own, a table, files, the best model reloaded."""
    run = sweep_example(tmp_path, "--samples", "2", "--epochs", "2", "--limit", "1000")
    assert "best trials" in run.stdout
    accuracy = float(re.search(r"the best checkpoint reloaded: test accuracy ([\d.]+)", run.stdout).group(1))
    assert accuracy > 0.5
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("config/lr,config/width,config/seed,epoch,val_accuracy") and len(rows) == 3


def test_sweep_example_packs_configurations_into_populations(tmp_path, fashion_mnist):
    """--population 3: each trial trains three learning rates at once, the
    table names each trial's best member, and that member is reloaded."""
    run = sweep_example(tmp_path, "--samples", "2", "--epochs", "2", "--limit", "1000", "--population", "3")
    assert re.search(r"6 configurations in 2 trials, [\d.]+ s: [\d.]+ configurations a minute", run.stdout)
    accuracy = float(re.search(r"the best checkpoint reloaded: test accuracy ([\d.]+)", run.stdout).group(1))
    assert accuracy > 0.5
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("config/lr,config/width,config/seed,member,epoch,val_accuracy") and len(rows) == 3


def test_population_example_trains_exports_and_plots(tmp_path, device, capsys):
    args = ["--members", "9", "--epochs", "15", "--device", device, "--out", str(tmp_path)]
    assert load_example("population").main(args) == 0
    out = capsys.readouterr().out
    assert "9 networks trained" in out
    best = float(re.search(r"validation loss ([\d.]+), accuracy", out).group(1))
    medians = [float(v) for v in re.findall(r"median validation loss ([\d.]+)", out)]
    assert len(medians) == 3 and best <= min(medians)
    assert (tmp_path / "moons.c").is_file() and (tmp_path / "population.safetensors").is_file()
    if "ns a sample" in out:  # a C compiler was found
        assert float(re.search(r"largest difference from predict ([\d.e-]+)", out).group(1)) < 1e-4
    assert (tmp_path / "population.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_example_sweeps_the_cnn(tmp_path, fashion_mnist):
    """--model cnn: the trials train the CNN, whose checkpoints hold it."""
    from intricate_py import Model
    from intricate_py.layers import Conv2D

    run = sweep_example(tmp_path, "--model", "cnn", "--samples", "1", "--epochs", "1", "--limit", "300")
    assert re.search(r"the best checkpoint reloaded: test accuracy [\d.]+", run.stdout)
    checkpoints = sorted((tmp_path / "ray" / "fashion-mnist-cnn").rglob("model.safetensors"))
    assert checkpoints
    model = Model.load(checkpoints[0], device="cpu")
    assert isinstance(model.layers[0], Conv2D) and model.input_shape == (1, 28, 28)


# ------------------------------------------------------------------ charlm
def fake_fortunes(folder: Path) -> Path:
    """A folder laid out as /usr/share/games/fortunes: plain-text files of
    fortunes between lines holding '%', their .dat indexes (here full of a
    character no fortune holds) and .u8 links."""
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and we saw it run to our door while you ate all my bread".split()
    for name in ("people", "science"):
        fortunes = [" ".join(rng.choice(words, rng.integers(5, 20))).capitalize() + "." for _ in range(150)]
        (folder / name).write_text("\n%\n".join(fortunes) + "\n%\n")
        (folder / f"{name}.dat").write_text("ÿ" * 200)
        (folder / f"{name}.u8").symlink_to(name)
    return folder


def test_charlm_example_trains_saves_and_samples_from_the_saved_model(tmp_path, device, capsys):
    charlm = load_example("charlm")
    data, out = fake_fortunes(tmp_path / "fortunes"), tmp_path / "out"
    args = ["--device", device, "--data", str(data), "--limit", "3000", "--epochs", "1", "--context", "16",
            "--width", "16", "--heads", "2", "--layers", "1", "--batch-size", "8", "--length", "40",
            "--out", str(out)]
    assert charlm.main(args) == 0
    printed = capsys.readouterr().out
    assert re.search(r"epoch 1/1: training loss [\d.]+, validation loss [\d.]+ bits per character", printed)
    assert {p.name for p in out.iterdir()} == {"charlm.safetensors", "charlm.vocab.json", "curves.png", "sample.txt"}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    characters = json.loads((out / "charlm.vocab.json").read_text())["characters"]
    assert "ÿ" not in characters and "%" in characters and "\n" in characters  # no .dat read; the separators kept
    assert charlm.main(["--load", str(out / "charlm.safetensors"), "--device", "cpu", "--prompt", "The cat",
                        "--length", "30", "--top-k", "5"]) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("The cat") and len(sample.rstrip("\n")) >= len("The cat") + 30 - sample.count("\n")
    assert set(sample[len("The cat"):]) <= set(characters) | {"\n"}


def test_charlm_example_without_fortunes_says_what_to_install(tmp_path, capsys):
    assert load_example("charlm").main(["--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "apt-get install fortunes" in capsys.readouterr().err
    assert load_example("charlm").main(["--load", str(tmp_path / "none.safetensors")]) == 2


def test_charlm_example_reads_fortunes_between_percent_lines(tmp_path):
    charlm = load_example("charlm")
    folder = tmp_path / "fortunes"
    folder.mkdir()
    (folder / "a").write_text("First one,\ntwo lines.\n%\nS_\bt_\bo_\bp underlined.\n%\n\n%\nLast\n")
    (folder / "a.dat").write_bytes(b"\x00\x01%\n")
    (folder / "a.u8").symlink_to("a")
    assert charlm.read_fortunes(folder) == ["First one,\ntwo lines.", "Stop underlined.", "Last"]
    train, validation = charlm.corpus(folder)
    assert sorted((train + validation).split("\n%\n")[:-1]) == sorted(charlm.read_fortunes(folder))


def test_charlm_torch_twin_computes_and_trains_as_the_model():
    """The PyTorch twin of --compare-torch, in float64, gives the model's
    logits from the same weights, and after the same two AdamW steps
    (warmup rates, clipped gradients) the same logits again."""
    pytest.importorskip("torch")
    from types import SimpleNamespace

    import numpy as np
    import torch

    from intricate_py.losses import CategoricalCrossEntropy
    from intricate_py.optimizers import AdamW

    charlm = load_example("charlm")
    args = SimpleNamespace(width=16, heads=2, layers=2, context=12, dropout=0.0, device="cpu", seed=3,
                           learning_rate=1e-2, warmup=2, weight_decay=0.1)
    model = charlm.build_model(11, args, dtype="float64")
    twin = charlm.TorchTwin(model)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 11, (2, 8, 12)), rng.integers(0, 11, (2, 8, 12))
    np.testing.assert_allclose(twin.logits(x[0]), model.predict(x[0]), rtol=0, atol=1e-12)
    schedule = charlm.recipe(args, 10)
    model.compile(optimizer=AdamW(schedule, weight_decay=0.1, global_clipnorm=1.0),
                  loss=CategoricalCrossEntropy(from_logits=True))
    optimizer = twin.optimizer(0.1)
    twin.training = True
    for step in range(2):
        model.fit(x[step], y[step], batch_size=8, shuffle=False)
        twin.step(optimizer, torch.from_numpy(x[step]), torch.from_numpy(y[step]), schedule(step))
    twin.training = False
    assert not np.allclose(twin.logits(x[0]), charlm.TorchTwin(charlm.build_model(11, args, "float64")).logits(x[0]))
    np.testing.assert_allclose(twin.logits(x[0]), model.predict(x[0]), rtol=0, atol=1e-10)


def test_custom_layer_example_checks_trains_saves_and_times_its_kernel(tmp_path, device, capsys):
    from intricate_py.layers import LAYER_TYPES

    registered = dict(LAYER_TYPES)
    try:  # the example registers its PReLU: the registry is put back as it was
        args = ["--device", device, "--epochs", "2", "--samples", "300", "--out", str(tmp_path)]
        assert load_example("custom_layer").main(args) == 0
    finally:
        LAYER_TYPES.clear()
        LAYER_TYPES.update(registered)
    out = capsys.readouterr().out
    assert "against its numpy version: largest relative difference" in out
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        assert "against PyTorch's nn.PReLU: largest relative difference" in out
    assert "loaded back: the same predictions" in out and "'examples>PReLU'" in out
    assert re.search(r"one epoch of 300 samples .*PReLU \(custom kernel\) \d+ ms, LeakyReLU \(built in\) \d+ ms", out)
    if device == "gpu":
        assert "the steps replayed" in out
