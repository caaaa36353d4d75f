"""The exported C against intricate-py's predict and PyTorch, in nanoseconds
per sample.

    python benchmarks/export.py [--rounds 5] [--cc cc] [--json FILE]

Two networks: Intricate's XoR network (2-3-1, TanH, trained) and a
16-32-32-4 MLP (ReLU, ReLU, Softmax). Each is exported with
``model.export(folder, format="c")`` and compiled with ``-O3 -march=native``
into a small generated timing harness that reads the same 1024 random
samples that predict and PyTorch get. In each round (rounds interleave, so
drifts in the machine's speed hit all alike):

  - C, batch: ``name_batch`` over the 1024 samples, repeated;
  - C, one call: ``name`` called once per sample;
  - predict and PyTorch (``torch.inference_mode``), one sample per call and
    1024 samples per call.

The harness's outputs are checked against predict before any timing, and
each measurement starts after a pause (see per_call_ns).
Medians of the rounds are printed as a markdown table (all numbers in ns
per sample); ``--json`` also writes every round. PyTorch is optional.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import intricate_py  # noqa: E402
from intricate_py import MinLossReached, Model  # noqa: E402
from intricate_py.layers import Dense, ReLU, Softmax, TanH  # noqa: E402
from intricate_py.losses import MeanSquared  # noqa: E402
from intricate_py.optimizers import SGD  # noqa: E402

try:
    import torch
except ImportError:  # the optional reference
    torch = None

SAMPLES = 1024
PAUSE = 0.1  # seconds between implementations
FLAGS = ["-O3", "-march=native"]

HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "net.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* harness INPUTS OUTPUTS N REPS: reads N samples, writes the outputs, and
   prints the ns per sample of REPS batch calls and of REPS x N single calls */
int main(int argc, char **argv)
{
    size_t n = (size_t)atol(argv[3]), s;
    long reps = atol(argv[4]), r;
    float *x = malloc(n * NET_INPUTS * sizeof *x), *y = malloc(n * NET_OUTPUTS * sizeof *y);
    FILE *f = fopen(argv[1], "rb");
    double t, batch, single;
    if (argc != 5 || !f || fread(x, sizeof *x, n * NET_INPUTS, f) != n * NET_INPUTS)
        return 2;
    fclose(f);
    net_batch(x, y, n); /* warm up */
    t = now();
    for (r = 0; r < reps; r++)
        net_batch(x, y, n);
    batch = (now() - t) / reps / n * 1e9;
    t = now();
    for (r = 0; r < reps; r++)
        for (s = 0; s < n; s++)
            net(x + s * NET_INPUTS, y + s * NET_OUTPUTS);
    single = (now() - t) / reps / n * 1e9;
    f = fopen(argv[2], "wb");
    fwrite(y, sizeof *y, n * NET_OUTPUTS, f);
    fclose(f);
    printf("%.4f %.4f\n", batch, single);
    return 0;
}
"""


def xor_network() -> Model:
    model = Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device="cpu", seed=0)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    model.fit(x, [[0], [1], [1], [0]], loss=MeanSquared(), optimizer=SGD(0.1), epochs=10_000, batch_size=4,
              halting_condition=MinLossReached(0.01))
    return model


def mlp_network() -> Model:
    return Model([Dense(32), ReLU(), Dense(32), ReLU(), Dense(4), Softmax()], input_size=16, device="cpu", seed=0)


def torch_twin(model: Model):
    """The same network in PyTorch, with the same weights."""
    modules = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            linear = torch.nn.Linear(*layer.weights.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.weights.T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.biases))
            modules.append(linear)
        else:
            modules.append({TanH: torch.nn.Tanh, ReLU: torch.nn.ReLU}.get(type(layer), lambda: torch.nn.Softmax(1))())
    return torch.nn.Sequential(*modules).eval()


class CProgram:
    """The exported network compiled into the timing harness."""

    def __init__(self, model: Model, folder: Path, cc: str, x: np.ndarray):
        model.export(folder, format="c", name="net")
        (folder / "harness.c").write_text(HARNESS)
        self.binary, self.inputs, self.outputs = folder / "harness", folder / "x.bin", folder / "y.bin"
        subprocess.run([cc, *FLAGS, "-I", str(folder), str(folder / "harness.c"), str(folder / "net.c"),
                        "-o", str(self.binary), "-lm"], check=True)
        x.astype(np.float32).tofile(self.inputs)
        self.n, self.output_shape = len(x), model.output_shape

    def time(self, reps: int) -> tuple[float, float]:
        """ns per sample: (batch calls, one call per sample)."""
        time.sleep(PAUSE)
        out = subprocess.run([str(self.binary), str(self.inputs), str(self.outputs), str(self.n), str(reps)],
                             capture_output=True, text=True, check=True).stdout
        batch, single = map(float, out.split())
        return batch, single

    def last_outputs(self) -> np.ndarray:
        return np.fromfile(self.outputs, np.float32).reshape(self.n, *self.output_shape)


def per_call_ns(f, calls: int) -> float:
    """ns per call of ``f``, after a pause and a warm-up call: OpenBLAS's and
    PyTorch's worker threads spin for a while after each job, and on a
    2-core machine one library's spinning threads slow the other's several
    times over (PyTorch at batch 1024 took 3.7 µs a sample instead of 0.12
    right after predict)."""
    time.sleep(PAUSE)
    f()
    start = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - start) / calls * 1e9


def measure(name: str, model: Model, folder: Path, cc: str, rounds: int, calls: int) -> dict[str, list[float]]:
    x = np.random.default_rng(0).normal(size=(SAMPLES, *model.input_shape)).astype(np.float32)
    c = CProgram(model, folder, cc, x)
    c.time(1)
    np.testing.assert_allclose(c.last_outputs(), model.predict(x), rtol=1e-5, atol=1e-6)
    one = x[:1]
    net = torch_twin(model) if torch else None
    if net is not None:
        with torch.inference_mode():
            np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), model.predict(x), rtol=1e-4, atol=1e-6)
    times: dict[str, list[float]] = {}

    def record(key, value):
        times.setdefault(key, []).append(value)

    reps = max(1, int(2e8 / SAMPLES / 50))  # about 0.2 s at 50 ns a sample
    for r in range(rounds):
        batch, single = c.time(reps)
        record("C, batch of 1024", batch)
        record("C, one call a sample", single)
        record("predict, 1 sample", per_call_ns(lambda: model.predict(one), calls))
        record("predict, 1024 samples", per_call_ns(lambda: model.predict(x), max(1, calls // 50)) / SAMPLES)
        if net is not None:
            with torch.inference_mode():
                t1, tx = torch.from_numpy(one), torch.from_numpy(x)
                record("PyTorch, 1 sample", per_call_ns(lambda: net(t1), calls))
                record("PyTorch, 1024 samples", per_call_ns(lambda: net(tx), max(1, calls // 50)) / SAMPLES)
        print(f"  {name}: round {r + 1}/{rounds} done", flush=True)
    return times


def table(results: dict[str, dict[str, list[float]]]) -> str:
    columns = list(next(iter(results.values())))
    lines = ["| ns per sample | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for name, times in results.items():
        cells = [f"{statistics.median(times[c]):.4g}" if c in times else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compiler_version(cc: str) -> str:
    return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="predict and PyTorch calls a round, one sample each")
    parser.add_argument("--cc", default="cc")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    machine = {"cpu": cpu_name(), "cpu_threads": __import__("os").cpu_count(), "compiler": compiler_version(args.cc),
               "flags": FLAGS, "python": platform.python_version(), "numpy": np.__version__,
               "intricate_py": intricate_py.__version__, "torch": torch.__version__ if torch else None,
               "torch_threads": torch.get_num_threads() if torch else None, "platform": platform.platform()}
    print(f"{machine['cpu']}, {machine['compiler']} {' '.join(FLAGS)}; torch {machine['torch']}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in [("XoR 2-3-1", xor_network), ("MLP 16-32-32-4", mlp_network)]:
            folder = Path(tmp) / name.split()[0]
            folder.mkdir()
            results[name] = measure(name, build(), folder, args.cc, args.rounds, args.calls)
    print(f"\n## ns per sample, medians of {args.rounds} interleaved rounds\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rounds": args.rounds, "ns_per_sample": results},
                                        indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
