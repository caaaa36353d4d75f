"""Sweeps on Ray Tune: reports, checkpoints, the best model, and a trial
that fails and resumes from its checkpoint. Ray starts once, for the module."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
from ray import tune  # noqa: E402

from intricate_py import Model  # noqa: E402
from intricate_py.layers import Dense, ReLU, Softmax  # noqa: E402
from intricate_py.optimizers import Adam  # noqa: E402
from intricate_py.tune import ReportToTune, load_best, resume  # noqa: E402


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    # Ray's workers import this module to run the trainables defined here
    here = str(Path(__file__).resolve().parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")),
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data():
    """2000 Fashion-MNIST images (random ones of the same shape without the
    Debian package), split 1600 / 400, as float32 rows."""
    from intricate_py.datasets import load_fashion_mnist

    try:
        (images, labels), _ = load_fashion_mnist()
        x, y = images[:2000].reshape(2000, -1).astype(np.float32) / 255, labels[:2000]
    except FileNotFoundError:
        if os.environ.get("INTRICATE_REQUIRE_DATA") == "1":
            raise
        rng = np.random.default_rng(0)
        x, y = rng.random((2000, 784), np.float32), rng.integers(0, 10, 2000)
    return (x[:1600], y[:1600]), (x[1600:], y[1600:])


def build(config):
    model = Model([Dense(config["width"]), ReLU(), Dense(10), Softmax()], input_size=784, device="cpu",
                  seed=config["seed"])
    model.compile(optimizer=Adam(config["lr"]), loss="categorical_crossentropy")
    return model


def run(trainable, tmp_path, name, param_space, **run_config):
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0, **run_config),
    )
    return tuner.fit()


def test_a_sweep_reports_every_epoch_and_its_best_checkpoint_reloads(local_ray, data, tmp_path):
    (x, y), (xv, yv) = data

    def trainable(config):
        model, done = resume(lambda: build(config), device="cpu")
        model.fit(x, y, epochs=2 - done, batch_size=64, validation_data=(xv, yv), callbacks=[ReportToTune()])

    results = run(tune.with_parameters(trainable), tmp_path, "sweep",
                  {"lr": tune.grid_search([1e-3, 3e-3]), "width": 16, "seed": 0})
    assert len(results) == 2 and not results.errors
    for result in results:
        frame = result.metrics_dataframe
        assert list(frame["epoch"]) == [1, 2]  # one row per epoch per trial
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(frame.columns)
    best = results.get_best_result("val_accuracy", "max")
    checkpoint, metrics = max(best.best_checkpoints, key=lambda pair: pair[1]["val_accuracy"])
    model = load_best(results, "val_accuracy", "max", device="cpu")
    assert model.evaluate(xv, yv)["accuracy"] == metrics["val_accuracy"]


def test_a_failed_trial_resumes_from_its_checkpoint(local_ray, data, tmp_path):
    """The trial raises in its second epoch the first time; Ray Tune runs it
    again, it starts from the checkpoint of epoch 1, and ends with the
    weights of an uninterrupted trial. (The reference runs as a trial too:
    Ray's workers set OMP_NUM_THREADS=1, and OpenBLAS on one thread rounds
    some products differently from OpenBLAS on this process's two.)"""
    (x, y), (xv, yv) = data
    log = tmp_path / "epochs.jsonl"
    config = {"lr": 1e-3, "width": 16, "seed": 3}

    def trainable(config):
        model, done = resume(lambda: build(config), device="cpu")

        class Crash(ReportToTune):
            def on_epoch_begin(self, epoch, logs=None):
                first_run = not (tmp_path / "crashed").exists()
                with log.open("a") as f:
                    f.write(json.dumps({"epoch": done + epoch + 1}) + "\n")
                if first_run and done + epoch + 1 == 2:
                    (tmp_path / "crashed").touch()
                    raise RuntimeError("the machine went away")

        model.fit(x, y, epochs=3 - done, batch_size=64, validation_data=(xv, yv),
                  callbacks=[Crash(start_epoch=done)])

    results = run(tune.with_parameters(trainable), tmp_path, "failing", config,
                  failure_config=tune.FailureConfig(max_failures=1))
    assert not results.errors
    runs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert runs == [1, 2, 2, 3]  # epoch 1 ran once: the retry began at epoch 2
    assert list(results[0].metrics_dataframe["epoch"])[-1] == 3

    def uninterrupted(config):
        build(config).fit(x, y, epochs=3, batch_size=64, validation_data=(xv, yv), callbacks=[ReportToTune()])

    straight = run(tune.with_parameters(uninterrupted), tmp_path, "straight", config)
    assert not straight.errors
    resumed = load_best(results[0], "epoch", "max", device="cpu")
    reference = load_best(straight[0], "epoch", "max", device="cpu")
    for a, b in zip(resumed.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_ray_the_module_names_the_extra(monkeypatch):
    import sys
    import importlib

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "intricate_py.tune", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'intricate-py\[tune\]'"):
        importlib.import_module("intricate_py.tune")
