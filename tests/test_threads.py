"""Models under threads and asynchronous exceptions: predict and evaluate
from any number of threads, fits of different models in different threads
giving the bits of the same fits run one after the other (on both devices),
a fit and a predict on one model at once (the predict waits), saving
without the umask, and a KeyboardInterrupt raised by a SIGALRM handler in
the middle of GPU work.

GPU cases run in a fresh process: a crash there (wgpu aborts the process
when two threads submit at once) fails the test instead of the runner."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from intricate_py import Model
from intricate_py.backends import NumpyBackend
from intricate_py.layers import Dense, Dropout, ReLU, TanH
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared
from intricate_py.optimizers import SGD, Adam

TESTS = Path(__file__).resolve().parent


# ----------------------------------------------------------------- helpers
def in_threads(functions: list) -> list:
    """Run each function in its own thread, all released at once; their
    results in order (the first exception of any is raised here)."""
    start = threading.Barrier(len(functions))
    results, errors = [None] * len(functions), []

    def run(i, f):
        start.wait()
        try:
            results[i] = f()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def isolated(call: str, timeout: float = 240) -> str:
    """Run ``call`` (an expression on this module, ``t``) in a fresh Python
    process, which prints it; the last line printed. A crash or a non-zero
    exit fails the test."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    source = f"import test_threads as t\nprint({call})"
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=TESTS)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout.strip().splitlines()[-1]


def scenario(device: str, function, *args) -> str:
    """``function(device, *args)`` as text: here on the CPU, in a fresh
    process (see :func:`isolated`) on the GPU."""
    if device == "cpu":
        return str(function("cpu", *args))
    return isolated(f"t.{function.__name__}('gpu', {', '.join(map(repr, args))})")


# --------------------------------------------------------------- scenarios
def predict_in_threads(device: str, rounds: int) -> int:
    """The issue's case: one model, thread A predicting ones and thread B
    minus ones; how many calls got other outputs than their own."""
    model = Model([Dense(256), ReLU(), Dense(4)], input_size=32, device=device, seed=0)
    xs = [np.ones((512, 32)), -np.ones((512, 32))]
    expected = [model.predict(x) for x in xs]

    def calls(x, want):
        return sum(not np.array_equal(model.predict(x), want) for _ in range(rounds))

    return sum(in_threads([lambda x=x, e=e: calls(x, e) for x, e in zip(xs, expected)]))


def two_models_predict_in_threads(device: str, rounds: int) -> int:
    """Two different models predicting in two threads at once."""
    rng = np.random.default_rng(0)
    models = [Model([Dense(16), TanH(), Dense(3)], input_size=5, device=device, seed=1),
              Model([Dense(7), ReLU(), Dense(2)], input_size=9, device=device, seed=2)]
    xs = [rng.normal(size=(37, 5)), rng.normal(size=(53, 9))]
    expected = [m.predict(x) for m, x in zip(models, xs)]

    def calls(m, x, want):
        return sum(not np.array_equal(m.predict(x), want) for _ in range(rounds))

    return sum(in_threads([lambda m=m, x=x, e=e: calls(m, x, e) for m, x, e in zip(models, xs, expected)]))


def evaluate_in_threads(device: str, rounds: int) -> int:
    """One model evaluated on two data sets from two threads at once."""
    rng = np.random.default_rng(3)
    model = Model([Dense(32), ReLU(), Dense(3)], input_size=6, device=device, seed=0)
    model.compile(loss=CategoricalCrossEntropy(from_logits=True))
    data = [(rng.normal(size=(70, 6)), rng.integers(0, 3, 70)), (rng.normal(size=(41, 6)), rng.integers(0, 3, 41))]
    expected = [model.evaluate(x, y, batch_size=16) for x, y in data]

    def calls(x, y, want):
        return sum(model.evaluate(x, y, batch_size=16) != want for _ in range(rounds))

    return sum(in_threads([lambda d=d, e=e: calls(*d, e) for d, e in zip(data, expected)]))


def first_gpu_models_in_threads(n: int) -> int:
    """n threads making the process's first GPU models at once: how many
    backends (devices) they got."""
    models = in_threads([lambda: Model([Dense(2)], input_size=3, device="gpu", seed=0) for _ in range(n)])
    return len({id(model.backend) for model in models})


def fit_job(device, k: int, epochs: int):
    """Model k of a pool of fits (each its own seed, data and optimizer) on
    ``device`` (a name, or a backend the models share): a function that
    trains it and returns its weights and History."""
    rng = np.random.default_rng(10 + k)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 2))
    layers = [Dense(96 + k % 2), TanH(), Dropout(0.25), Dense(2)]  # two models of each shape
    optimizer = Adam(0.01) if k % 2 else SGD(0.05, momentum=0.5)

    def fit():
        model = Model(layers, input_size=5, device=device, seed=k)
        history = model.fit(x[:32], y[:32], loss=MeanSquared(), optimizer=optimizer, epochs=epochs, batch_size=8,
                            validation_data=(x[32:], y[32:]))
        return model.get_weights(), history.history

    return fit


def fits_in_threads_match_sequential_fits(device, n: int, epochs: int) -> str:
    """n fits in n threads at once give the bits of the same fits run one
    after the other."""
    sequential = [fit_job(device, k, epochs)() for k in range(n)]
    threaded = in_threads([fit_job(device, k, epochs) for k in range(n)])
    for (weights, history), (want_weights, want_history) in zip(threaded, sequential):
        assert history == want_history
        for got, want in zip(weights, want_weights):
            np.testing.assert_array_equal(got, want)
    return "same"


def predict_during_a_fit_waits(device: str) -> str:
    """A predict on another thread while the model fits: it waits for the
    fit and gives the trained model's outputs, never a mix."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(64, 4)), rng.normal(size=(64, 1))
    model = Model([Dense(8), TanH(), Dense(1)], input_size=4, device=device, seed=0)
    started, got = threading.Event(), []

    def fit():
        model.fit(x, y, loss=MeanSquared(), optimizer=SGD(0.05), epochs=30, batch_size=8,
                  callbacks=[lambda epoch, logs: started.set()])

    def predict():
        started.wait()
        got.append(model.predict(x))

    in_threads([fit, predict])
    np.testing.assert_array_equal(got[0], model.predict(x))
    return "waited"


def alarms_during_gpu_fits(seconds: float) -> str:
    """pytest-timeout's way: a SIGALRM handler raising KeyboardInterrupt,
    at random moments during repeated GPU fits and predictions. Afterwards
    the backend gives the bits of an undisturbed fit."""

    def alarm(signum, frame):
        raise KeyboardInterrupt

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(48, 6)), rng.normal(size=(48, 2))

    def train():
        model = Model([Dense(16), TanH(), Dense(2)], input_size=6, device="gpu", seed=0)
        model.fit(x, y, loss=MeanSquared(), optimizer=Adam(0.01), epochs=4, batch_size=8)
        return model.get_weights() + [model.predict(x)]

    reference = train()
    previous = signal.signal(signal.SIGALRM, alarm)
    interrupted, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0002, 0.03))
            train()
            signal.setitimer(signal.ITIMER_REAL, 0)
        except KeyboardInterrupt:
            interrupted += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
    for got, want in zip(train(), reference):
        np.testing.assert_array_equal(got, want)
    return f"usable after {interrupted} interrupts"


# ------------------------------------------------------------------- tests
def test_the_first_gpu_models_made_in_threads_share_one_device(gpu):
    assert isolated("t.first_gpu_models_in_threads(4)") == "1"


def test_one_model_predicts_from_two_threads(device):
    assert scenario(device, predict_in_threads, 150 if device == "cpu" else 15) == "0"


def test_two_models_predict_in_two_threads(device):
    assert scenario(device, two_models_predict_in_threads, 200 if device == "cpu" else 20) == "0"


def test_one_model_evaluates_from_two_threads(device):
    assert scenario(device, evaluate_in_threads, 60 if device == "cpu" else 8) == "0"


def test_fits_in_a_thread_pool_match_sequential_fits(device):
    """Four fits in four threads on the CPU; two, of fewer epochs, on the GPU."""
    assert scenario(device, fits_in_threads_match_sequential_fits, *((4, 20) if device == "cpu" else (2, 3))) == "same"


def test_fits_sharing_one_cpu_backend_in_threads_match_sequential_fits():
    """Models given one NumpyBackend object share its scratch buffers."""
    assert fits_in_threads_match_sequential_fits(NumpyBackend("float32"), 4, 20) == "same"


def test_a_predict_during_a_fit_on_another_thread_waits_for_it(device):
    assert scenario(device, predict_during_a_fit_waits) == "waited"


def test_a_predict_from_a_callback_of_the_same_fit_still_works(device):
    x = np.random.default_rng(0).normal(size=(16, 3))
    model = Model([Dense(4), TanH(), Dense(1)], input_size=3, device=device, seed=0)
    seen = []
    model.fit(x, x[:, :1], loss=MeanSquared(), optimizer=SGD(0.1), epochs=2, batch_size=8,
              callbacks=[lambda epoch, logs: seen.append(model.predict(x))])
    assert len(seen) == 2 and np.isfinite(seen[-1]).all()
    np.testing.assert_array_equal(seen[-1], model.predict(x))


def test_a_block_of_gpu_work_holds_every_python_signal_handler():
    """Not Ctrl-C's alone: a SIGALRM handler raising inside the block runs
    once the block is done, and every handler is back as it was."""
    from intricate_py.backends.wgpu_recording import uninterrupted

    done = []

    def alarm(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGALRM, alarm)
    ctrl_c = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt, match=f"signal {int(signal.SIGALRM)}"):
            with uninterrupted():
                signal.raise_signal(signal.SIGALRM)
                with uninterrupted():  # blocks nest
                    done.append("inner")
                done.append("outer")
        assert done == ["inner", "outer"]
        assert signal.getsignal(signal.SIGALRM) is alarm and signal.getsignal(signal.SIGINT) is ctrl_c
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_a_sigalrm_keyboard_interrupt_during_gpu_fits_leaves_the_backend_usable(gpu):
    """The issue's abort: "Buffer with '' label is still mapped", then SIGABRT."""
    assert isolated("t.alarms_during_gpu_fits(6)").startswith("usable after")


# ------------------------------------------------------------------- umask
def current_umask() -> int:
    """The process's umask, read without setting it (Linux), else set and restored."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_saving_never_changes_the_umask(tmp_path, monkeypatch):
    """Another thread creating a file while a save runs gets the process's
    umask, not 0: saving never sets it, and a new file gets the mode the
    umask gives (an existing file keeps its own)."""
    mask = current_umask()
    model = Model([Dense(3)], input_size=2, device="cpu", seed=0)

    def refuse(mask):
        raise AssertionError("os.umask was called")

    monkeypatch.setattr(os, "umask", refuse)
    model.save(tmp_path / "m.safetensors")
    model.save_weights(tmp_path / "w.safetensors")
    for name in ("m.safetensors", "w.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
    (tmp_path / "m.safetensors").chmod(0o640)
    model.save(tmp_path / "m.safetensors")
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o640
