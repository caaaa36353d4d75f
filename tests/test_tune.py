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
from intricate_py import FormatError  # noqa: E402
from intricate_py.tune import (ReportPopulationToTune, ReportToTune, load_best, load_best_member,  # noqa: E402
                               load_checkpoint, member_rates, resume, save_checkpoint)
from intricate_py import Population  # noqa: E402


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
        model.fit(x, y, epochs=2, initial_epoch=done, batch_size=64, validation_data=(xv, yv),
                  callbacks=[ReportToTune()])

    results = run(tune.with_parameters(trainable), tmp_path, "sweep",
                  {"lr": tune.grid_search([1e-3, 3e-3]), "width": 16, "seed": 0})
    assert len(results) == 2 and not results.errors
    for result in results:
        frame = result.metrics_dataframe
        assert list(frame["epoch"]) == [1, 2]  # one row per epoch per trial
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(frame.columns)
    best = max((pair for result in results for pair in result.best_checkpoints),
               key=lambda pair: pair[1]["val_accuracy"])
    model = load_best(results, "val_accuracy", "max", device="cpu")
    assert model.evaluate(xv, yv)["accuracy"] == best[1]["val_accuracy"]


def test_a_packed_trial_reports_its_best_member_and_that_member_reloads(local_ray, data, tmp_path):
    """Each trial trains three learning rates as one Population: reports
    carry the best member's logs, every member's, its index and its rate;
    load_best_member gives the best member of the best checkpoint."""
    (x, y), (xv, yv) = data

    def architecture(config):
        return build({**config, "lr": 1e-3, "seed": None})

    def trainable(config):
        population = Population(lambda: architecture(config), 3, seed=config["seed"])
        population.fit(x, y, optimizer=Adam(member_rates(config["seed"], 3)), epochs=2, batch_size=64,
                       validation_data=(xv, yv), callbacks=[ReportPopulationToTune("val_accuracy")])

    results = run(tune.with_parameters(trainable), tmp_path, "packed",
                  {"width": 16, "seed": tune.grid_search([0, 1])})
    assert len(results) == 2 and not results.errors
    scored = []
    for result in results:
        frame = result.metrics_dataframe
        assert list(frame["epoch"]) == [1, 2]
        for _, row in frame.iterrows():
            members = row["val_accuracy_members"]
            assert len(members) == 3 and row["val_accuracy"] == max(members)
            assert members[row["member"]] == row["val_accuracy"]
            rates = member_rates(result.config["seed"], 3)
            assert row["learning_rate"] == pytest.approx(rates[row["member"]])
        scored += [(metrics["val_accuracy"], metrics["member"]) for _, metrics in result.best_checkpoints]
    model = load_best_member(results, architecture, "val_accuracy", "max")
    assert model.evaluate(xv, yv)["accuracy"] == pytest.approx(max(scored)[0], abs=1e-6)


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
                super().on_epoch_begin(epoch, logs)
                first_run = not (tmp_path / "crashed").exists()
                with log.open("a") as f:
                    f.write(json.dumps({"epoch": epoch + 1}) + "\n")
                if first_run and epoch + 1 == 2:
                    (tmp_path / "crashed").touch()
                    raise RuntimeError("the machine went away")

        model.fit(x, y, epochs=3, initial_epoch=done, batch_size=64, validation_data=(xv, yv), callbacks=[Crash()])

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


def test_a_trial_that_checkpoints_every_other_epoch_still_checkpoints_its_last(local_ray, data, tmp_path):
    """With checkpoint_every=2 the last epoch gets a checkpoint too, also
    when a callback listed after ReportToTune stops the fit (the issue's
    EarlyStopping after it); every epoch is reported once."""
    (x, y), (xv, yv) = data

    def trainable(config):
        model, done = resume(lambda: build(config), device="cpu")

        def stop(epoch, logs):
            return epoch + 1 == config["stop"]

        model.fit(x[:256], y[:256], epochs=5, initial_epoch=done, batch_size=64, validation_data=(xv, yv),
                  callbacks=[ReportToTune(checkpoint_every=2), stop])

    results = run(tune.with_parameters(trainable), tmp_path, "every", {"lr": 1e-3, "width": 8, "seed": 0,
                                                                        "stop": tune.grid_search([0, 3])})
    assert not results.errors
    by_stop = {result.config["stop"]: result for result in results}
    assert list(by_stop[0].metrics_dataframe["epoch"]) == [1, 2, 3, 4, 5]
    assert list(by_stop[3].metrics_dataframe["epoch"]) == [1, 2, 3]
    assert sorted(m["epoch"] for _, m in by_stop[0].best_checkpoints) == [2, 4, 5]
    assert sorted(m["epoch"] for _, m in by_stop[3].best_checkpoints) == [2, 3]
    for result in results:  # the last checkpoint holds the model of the last epoch
        checkpoint, metrics = max(result.best_checkpoints, key=lambda pair: pair[1]["epoch"])
        model, done = load_checkpoint(checkpoint, device="cpu")
        assert done == metrics["epoch"] and model.evaluate(xv, yv)["loss"] == pytest.approx(metrics["val_loss"])


def test_load_best_ranks_trials_by_their_best_epoch_as_the_example_does(local_ray, data, tmp_path):
    """Trial A's best epoch beats trial B's, B's last result beats A's: the
    best checkpoint is A's best epoch, as in the example's table of each
    trial's best epoch (scripted accuracies, put in the logs before they
    are reported)."""
    (x, y), (xv, yv) = data

    def trainable(config):
        model = build({**config, "seed": config["trial"]["seed"]})

        def script(epoch, logs):
            logs["val_accuracy"] = config["trial"]["script"][epoch]

        model.fit(x[:256], y[:256], epochs=2, batch_size=64, validation_data=(xv, yv),
                  callbacks=[script, ReportToTune()])

    trials = [{"seed": 1, "script": [0.9, 0.1]}, {"seed": 2, "script": [0.5, 0.6]}]
    results = run(tune.with_parameters(trainable), tmp_path, "ranks",
                  {"lr": 1e-3, "width": 8, "trial": tune.grid_search(trials)})
    assert not results.errors
    table = results.get_dataframe(filter_metric="val_accuracy", filter_mode="max")
    assert table.sort_values("val_accuracy", ascending=False)["config/trial/seed"].iloc[0] == 1
    a = next(result for result in results if result.config["trial"]["seed"] == 1)
    checkpoint = next(cp for cp, m in a.best_checkpoints if m["epoch"] == 1)
    expected, _ = load_checkpoint(checkpoint, device="cpu")
    best = load_best(results, "val_accuracy", "max", device="cpu")
    for got, want in zip(best.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    lowest = load_best(results, "val_accuracy", "min", device="cpu")  # A's second epoch
    np.testing.assert_array_equal(lowest.get_weights()[0],
                                  load_checkpoint(next(cp for cp, m in a.best_checkpoints if m["epoch"] == 2),
                                                  device="cpu")[0].get_weights()[0])


@pytest.fixture(scope="module")
def trained(data):
    """A model trained for 3 epochs of 2 steps: its optimizer took 6."""
    (x, y), _ = data
    model = build({"width": 8, "seed": 0, "lr": 1e-3})
    model.fit(x[:128], y[:128], epochs=3, batch_size=64)
    return model


@pytest.mark.parametrize("progress, match", [
    ("garbage", "not JSON"),
    ('{"epoch": "2"}', "Received: '2'"),
    ('{"epoch": -3}', "Received: -3"),
    ('{"epoch": 0}', "Received: 0"),
    ('{"epoch": 1000000000}', "Received: 1000000000"),
    ('{"epoch": 7}', "Received: 7"),
    ('{"epoch": 2.5}', "Received: 2.5"),
    ('{"epoch": true}', "Received: True"),
    ('{"epochs": 2}', "Received: no 'epoch'"),
    ('[2]', "Received: list"),
])
def test_a_checkpoints_progress_file_is_checked(trained, tmp_path, progress, match):
    save_checkpoint(trained, 3, tmp_path)
    (tmp_path / "progress.json").write_text(progress)
    with pytest.raises(FormatError, match=rf"{tmp_path / 'progress.json'}: .*{match}"):
        load_checkpoint(tune.Checkpoint.from_directory(str(tmp_path)), device="cpu")


def test_a_checkpoints_progress_counts_at_most_the_optimizers_steps(trained, tmp_path):
    for done in (1, 3, 6):  # each epoch takes at least one step
        save_checkpoint(trained, done, tmp_path)
        model, epochs = load_checkpoint(tune.Checkpoint.from_directory(str(tmp_path)), device="cpu")
        assert epochs == done and model.optimizer.iterations == 6
