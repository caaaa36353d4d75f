"""A chain of layers three ways: as ``Model([...])``, as the same path written
with ``Input`` and layer calls, and with a residual connection added.

    python benchmarks/graph.py [--rounds 7] [--json results.json] [--no-gpu] [--path-only]

For each, interleaved round by round in rotating order (the host's drift
falls on all alike), medians of:

  a. one Fashion-MNIST epoch of the 784-128-10 ReLU/softmax MLP with
     SGD(0.01) on the CPU, at batch 32 and 128;
  b. 2000 full-batch XoR steps (2-3-1 TanH, mean squared error, SGD(0.1));
  c. on device="gpu" (where wgpu finds an adapter): dispatches, submissions
     and readbacks per step of the MLP at batch 128, and its epoch time.

``--path-only`` times ``Model([...])`` alone, with nothing but the API that
every version has: run it on two checkouts (``PYTHONPATH=other/checkout``)
to compare the library before and after a change.
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
if "--path-only" not in sys.argv:  # another checkout may be first on PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import intricate_py  # noqa: E402
from intricate_py import Model  # noqa: E402
from intricate_py.layers import Dense, ReLU, Softmax, TanH  # noqa: E402
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared  # noqa: E402
from intricate_py.optimizers import SGD  # noqa: E402
from mnist_data import mnist_data  # noqa: E402

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def mlp(kind: str, device: str) -> Model:
    """784-128-10 as ``kind``: "path" (a list of layers), "functional" (the
    same path as a graph) or "residual" (a 128-wide ReLU block added back)."""
    if kind == "path":
        return Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device=device, seed=0)
    from intricate_py import Input
    from intricate_py.layers import Add

    x = Input(784)
    h = ReLU()(Dense(128)(x))
    if kind == "residual":
        h = Add()([h, ReLU()(Dense(128)(h))])
    return Model(x, Softmax()(Dense(10)(h)), device=device, seed=0)


def xor(kind: str) -> Model:
    layers = [Dense(3), TanH(), Dense(1), TanH()]
    if kind == "path":
        return Model(layers, input_size=2, device="cpu", seed=0)
    from intricate_py import Input

    h = x = Input(2)
    for layer in layers:
        h = layer(h)
    return Model(x, h, device="cpu", seed=0)


def epoch_seconds(model: Model, x, y, batch: int) -> float:
    start = time.perf_counter()
    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.01), epochs=1, batch_size=batch)
    return time.perf_counter() - start


def xor_seconds(model: Model, steps: int = 2000) -> float:
    start = time.perf_counter()
    model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(0.1), epochs=steps, batch_size=4)
    return time.perf_counter() - start


def gpu_counters(kind: str, x, y) -> dict:
    """Per step of the MLP at batch 128 on the GPU, after a warm epoch."""
    model = mlp(kind, "gpu")
    epoch_seconds(model, x, y, 128)
    before, start = model.device.stats(), time.perf_counter()
    epoch_seconds(model, x, y, 128)
    seconds, after = time.perf_counter() - start, model.device.stats()
    steps = -(-len(x) // 128)
    counts = {k: (after[k] - before[k]) / steps for k in ("dispatches", "submits", "readbacks")}
    return {**counts, "epoch_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--path-only", action="store_true")
    args = parser.parse_args()
    x, y, source = mnist_data()
    kinds = ["path"] if args.path_only else ["path", "functional", "residual"]
    print(f"intricate-py {intricate_py.__version__} from {Path(intricate_py.__file__).parent}, {source}, "
          f"{args.rounds} rounds, numpy {np.__version__}, Python {platform.python_version()}")
    models = {(kind, batch): mlp(kind, "cpu") for kind in kinds for batch in (32, 128)}
    xors = {kind: xor(kind) for kind in kinds if kind != "residual"}
    times: dict[str, list[float]] = {}
    for r in range(args.rounds):
        order = kinds[r % len(kinds):] + kinds[: r % len(kinds)]
        for kind in order:
            for batch in (32, 128):
                times.setdefault(f"{kind} epoch batch {batch}", []).append(
                    epoch_seconds(models[kind, batch], x, y, batch))
            if kind in xors:
                times.setdefault(f"{kind} 2000 XoR steps", []).append(xor_seconds(xors[kind]))
    results = {"library": str(Path(intricate_py.__file__).parent), "data": source, "rounds": args.rounds,
               "cpu_seconds": {k: statistics.median(v) for k, v in times.items()}, "cpu_all": times}
    print(f"\n{'workload (CPU, median s)':<40}" + "".join(f"{k:>12}" for k in kinds))
    for workload in ("epoch batch 32", "epoch batch 128", "2000 XoR steps"):
        cells = [results["cpu_seconds"].get(f"{k} {workload}") for k in kinds]
        print(f"{workload:<40}" + "".join(f"{c:>12.3f}" if c is not None else f"{'':>12}" for c in cells))
    if not args.no_gpu and intricate_py.devices().adapters:
        results["gpu_per_step"] = {kind: gpu_counters(kind, x, y) for kind in kinds}
        print(f"\nGPU ({intricate_py.select_backend('gpu').name}), MLP at batch 128, per step:")
        for kind, counts in results["gpu_per_step"].items():
            print(f"  {kind:<12} " + ", ".join(f"{k} {v:.3g}" for k, v in counts.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
