"""Populations (issue 29): many networks trained at once against the same
networks trained one after the other.

    python benchmarks/population.py [--rounds 3] [--json results.json] [--gpu]

  a. 64 XoR networks (2-3-1 TanH, mean squared error, SGD(0.1), batch 4),
     2,000 epochs each: ``Population(build, 64).fit`` against a loop of 64
     ``Model.fit`` and the same 64 written by hand as one batched numpy loop;
  b. 16 Fashion-MNIST MLPs (784-128-10, Adam, batch 128), one epoch of
     12,000 images: the population's epoch against one model's;
  c. with ``--gpu`` (where wgpu finds an adapter): a training step of 1,024
     XoR networks against one network's step on ``device="gpu"``, with the
     dispatches a step takes.

Medians over ``--rounds`` rounds, the contenders alternating in each round
(the host's drift falls on all alike); ratios are of numbers from the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # mnist_data
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from intricate_py import Model, Population  # noqa: E402
from intricate_py.layers import Dense, ReLU, TanH  # noqa: E402
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared  # noqa: E402
from intricate_py.optimizers import SGD, Adam  # noqa: E402
from mnist_data import mnist_data  # noqa: E402
from op_times import alternating  # noqa: E402

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def xor_net(device: str = "cpu", seed: int | None = None) -> Model:
    return Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=device, seed=seed)


def mnist_net(seed: int | None = None) -> Model:
    return Model([Dense(128), ReLU(), Dense(10)], input_size=784, device="cpu", seed=seed)


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def hand_batched_xor(members: int, epochs: int) -> None:
    """The 64 networks as one batched numpy loop: what a person writes by hand."""
    rng = np.random.default_rng(0)
    w1 = rng.uniform(-1, 1, (members, 2, 3)).astype(np.float32)
    b1 = np.zeros((members, 1, 3), np.float32)
    w2 = rng.uniform(-1, 1, (members, 3, 1)).astype(np.float32)
    b2 = np.zeros((members, 1, 1), np.float32)
    for _ in range(epochs):
        h = np.tanh(XOR_X @ w1 + b1)
        y = np.tanh(h @ w2 + b2)
        dy = (y - XOR_Y) * (2 / 4) * (1 - y * y)
        dh = (dy @ w2.transpose(0, 2, 1)) * (1 - h * h)
        w2 -= 0.1 * (h.transpose(0, 2, 1) @ dy)
        b2 -= 0.1 * dy.sum(axis=1, keepdims=True)
        w1 -= 0.1 * (XOR_X.T @ dh)
        b1 -= 0.1 * dh.sum(axis=1, keepdims=True)


def xor_runs(members: int, epochs: int) -> dict:
    def population():
        Population(xor_net, members, seed=0).fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1),
                                                 epochs=epochs, batch_size=4)

    def loop():
        for i in range(members):
            xor_net(seed=i).fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=epochs, batch_size=4)
    return {"population": population, "loop of fit": loop, "hand-batched numpy": lambda: hand_batched_xor(members,
                                                                                                           epochs)}


def mnist_runs(members: int, rows: int) -> dict:
    x, labels, _ = mnist_data()
    x, labels = x[:rows], labels[:rows]
    loss = CategoricalCrossEntropy(from_logits=True)
    population = Population(mnist_net, members, seed=0)
    model = mnist_net(seed=0)
    population.fit(x[:256], labels[:256], loss=loss, optimizer=Adam(1e-3), epochs=1, batch_size=128)
    model.fit(x[:256], labels[:256], loss=loss, optimizer=Adam(1e-3), epochs=1, batch_size=128)
    return {"population": lambda: population.fit(x, labels, epochs=1, batch_size=128),
            "one model": lambda: model.fit(x, labels, epochs=1, batch_size=128)}


def gpu_steps(members: int, steps: int) -> dict:
    population = Population(lambda: xor_net("gpu"), members)
    model = xor_net("gpu")
    results = {}
    for name, fit in (("population", population.fit), ("one model", model.fit)):
        fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=1, batch_size=4)
        device = model.device
        before = device.stats()
        seconds = timed(lambda: fit(XOR_X, XOR_Y, epochs=steps, batch_size=4))
        after = device.stats()
        results[name] = {"ms_per_step": 1000 * seconds / steps,
                         "dispatches_per_step": (after["dispatches"] - before["dispatches"]) / steps}
    results["ratio"] = results["population"]["ms_per_step"] / results["one model"]["ms_per_step"]
    results["device"] = model.device.name
    return results


def medians(runs: dict, rounds: int) -> dict[str, float]:
    """Each run's median seconds over ``rounds`` rounds in rotating order."""
    times = alternating({name: lambda work=work: timed(work) for name, work in runs.items()}, rounds)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--gpu", action="store_true", help="also time 1,024 XoR networks per step on the GPU")
    args = parser.parse_args(argv)
    results: dict = {"machine": platform.platform(), "python": platform.python_version(), "numpy": np.__version__}

    xor = medians(xor_runs(64, 2000), args.rounds)
    results["xor_64_nets_2000_epochs_s"] = xor
    print("a. 64 XoR networks, 2,000 epochs each (s, median):")
    for name, seconds in xor.items():
        print(f"   {name:20s} {seconds:8.3f}   loop / this: {xor['loop of fit'] / seconds:6.1f}x")

    mnist = medians(mnist_runs(16, 12_000), args.rounds)
    results["mnist_16_mlps_epoch_12000_s"] = mnist
    ratio = mnist["population"] / mnist["one model"]
    results["mnist_ratio"] = ratio
    print("b. 16 Fashion-MNIST MLPs (784-128-10, batch 128), an epoch of 12,000 images (s, median):")
    for name, seconds in mnist.items():
        print(f"   {name:20s} {seconds:8.3f}")
    print(f"   population / one model: {ratio:.2f}x")

    if args.gpu:
        gpu = results["gpu_xor_1024"] = gpu_steps(1024, 5)
        print(f"c. {gpu['device']}: 1,024 XoR networks a step {gpu['population']['ms_per_step']:.2f} ms "
              f"({gpu['population']['dispatches_per_step']:.0f} dispatches), one network "
              f"{gpu['one model']['ms_per_step']:.2f} ms ({gpu['one model']['dispatches_per_step']:.0f}): "
              f"{gpu['ratio']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
