"""GPU kernel benchmark: matmul strategies, a training epoch, per-kernel time.

    python benchmarks/gpu.py [--repeats 5] [--epoch-batch 128] [--profile] [--json out.json]

Times the matmul on this device at square sizes (256-1024 on a software
adapter, 1024-4096 on a hardware GPU) and at the shapes of the networks the
examples train (the MLP's layers and weight gradients, the wide MLP's, the
CNN's convolution weight gradients with their long k), each with the
strategy the table in intricate_py/backends/matmul_plan.py picks (printed)
beside the large-tile kernel alone, which is what every product ran before
the table: the two, measured in the same run, are the before and after.
Where the device has full subgroups, the table's pick without the subgroup
kernels (the same tiles, op(a) through workgroup memory) is timed too.
Square products also run a naive one-output-per-invocation kernel.
Then the second epoch of a Fashion-MNIST fit (synthetic data of the same
shape if the Debian package is missing) with the device counters per step.
With --profile, timestamp queries (where the adapter has them) give each
entry point's share of one training step of the MLP and of the CNN.
Medians of --repeats rounds; each round of a product times every variant
once, in turn, so that they share the device's drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from intricate_py import Model  # noqa: E402
from intricate_py.backends import select_backend  # noqa: E402
from intricate_py.backends.matmul_plan import MatmulPlan, plan_matmul  # noqa: E402
from intricate_py.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Softmax  # noqa: E402
from intricate_py.losses import CategoricalCrossEntropy  # noqa: E402
from intricate_py.optimizers import SGD, Adam  # noqa: E402
from mnist_data import mnist_data  # noqa: E402 (this folder)

NAIVE = """
struct Params { m: u32, n: u32, k: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= params.n || g.y >= params.m) { return; }
  var s = 0.0;
  for (var p = 0u; p < params.k; p = p + 1u) { s = s + a[g.y * params.k + p] * b[p * params.n + g.x]; }
  out[g.y * params.n + g.x] = s;
}
"""


def interleaved_seconds(runs: dict, repeats: int, sync) -> dict:
    """The median seconds of each of ``runs`` (name -> callable) over
    ``repeats`` rounds, each round timing every run once, in an order that
    rotates from round to round, so that a software adapter's drift from one
    minute to the next falls on all of them alike (after one warm-up each)."""
    names = list(runs)
    for name in names:
        runs[name]()
        sync()
    times = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runs[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def naive_matmul(gpu, a, b, out, m, k, n):
    """The naive kernel, dispatched through wgpu directly."""
    import wgpu

    device = gpu.device
    if not hasattr(naive_matmul, "pipeline"):
        naive_matmul.pipeline = device.create_compute_pipeline(
            layout="auto", compute={"module": device.create_shader_module(code=NAIVE), "entry_point": "main"}
        )
    params = device.create_buffer_with_data(
        data=np.array([m, n, k, 0], np.uint32), usage=wgpu.BufferUsage.UNIFORM
    )
    group = device.create_bind_group(
        layout=naive_matmul.pipeline.get_bind_group_layout(0),
        entries=[{"binding": 0, "resource": {"buffer": params}}]
        + [{"binding": i + 1, "resource": {"buffer": x.alloc.buffer}} for i, x in enumerate((a, b, out))],
    )
    gpu.flush()
    encoder = device.create_command_encoder()
    compute = encoder.begin_compute_pass()
    compute.set_pipeline(naive_matmul.pipeline)
    compute.set_bind_group(0, group)
    compute.dispatch_workgroups(-(-n // 16), -(-m // 16), 1)
    compute.end()
    device.queue.submit([encoder.finish()])


def matmul_cases(gpu) -> list[tuple]:
    """(name, m, k, n, transpose_a, transpose_b) of the products timed."""
    sizes = (256, 512, 1024) if gpu.adapter.adapter_type == "CPU" else (1024, 2048, 4096)
    return [("square", s, s, s, False, False) for s in sizes] + [
        ("MLP x·W1, batch 128", 128, 784, 128, False, False),
        ("MLP xᵀ·dY1 (dW1)", 784, 128, 128, True, False),
        ("MLP dY2·W2ᵀ (dx2)", 128, 10, 128, False, True),
        ("MLP x·W2, batch 128", 128, 128, 10, False, False),
        ("MLP x·W1, batch 32", 32, 784, 128, False, False),
        ("wide MLP x·W2, batch 256", 256, 1024, 1024, False, False),
        ("wide MLP dW2", 1024, 256, 1024, True, False),
        ("CNN conv1 patches·Wᵀ, batch 64", 64 * 24 * 24, 25, 32, False, True),
        ("CNN conv1 dW, batch 64", 32, 64 * 24 * 24, 25, True, False),
        ("CNN conv2 dW, batch 64", 64, 64 * 8 * 8, 800, True, False),
    ]


def bench_matmul(gpu, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for name, m, k, n, ta, tb in matmul_cases(gpu):
        a = gpu.from_numpy(rng.normal(size=(k, m) if ta else (m, k)).astype(np.float32))
        b = gpu.from_numpy(rng.normal(size=(n, k) if tb else (k, n)).astype(np.float32))
        out = gpu.empty((m, n))
        reps = max(1, int(5e8 / (2 * m * n * k)))
        flop = 2 * m * n * k
        chosen = gpu.matmul_plan(m, n, k)

        def run(product):
            for _ in range(reps):
                product()

        def forced(plan):  # a plan, whatever the table says
            def product():
                gpu.matmul_plan = lambda m_, n_, k_: plan
                try:
                    gpu.matmul(a, b, out, ta, tb)
                finally:
                    del gpu.matmul_plan
            return product

        runs = {"plan": lambda: run(lambda: gpu.matmul(a, b, out, ta, tb)),
                # the large tiles: the one kernel every product ran before the table
                "large": lambda: run(forced(MatmulPlan("large", 1, k)))}
        plain = plan_matmul(m, n, k, dataclasses.replace(gpu.shape, subgroup_size=0))
        if gpu.shape.subgroup_size:  # the table's pick without the subgroup kernels
            runs["plain"] = lambda: run(forced(plain))
        if not (ta or tb):
            runs["naive"] = lambda: run(lambda: naive_matmul(gpu, a, b, out, m, k, n))
        seconds = {name: s / reps for name, s in interleaved_seconds(runs, repeats, gpu.synchronize).items()}
        row = {"case": name, "m": m, "k": k, "n": n, "plan": str(chosen), "gflops": flop / seconds["plan"] / 1e9,
               "ms": seconds["plan"] * 1e3, "large_only_gflops": flop / seconds["large"] / 1e9}
        if "plain" in seconds:
            row.update(plain_plan=str(plain), plain_gflops=flop / seconds["plain"] / 1e9)
        if "naive" in seconds:
            row["naive_gflops"] = flop / seconds["naive"] / 1e9
        rows.append(row)
        print(f"  {name:26s} {m:5d}x{k:6d}x{n:5d}  {row['plan']:24s} {row['gflops']:8.2f} GFLOP/s "
              f"({row['ms']:.3f} ms)   large tiles alone {row['large_only_gflops']:8.2f}"
              + (f"   without subgroups ({row['plain_plan']}) {row['plain_gflops']:8.2f}" if "plain_gflops" in row else "")
              + (f"   naive {row['naive_gflops']:6.2f}" if "naive_gflops" in row else ""), flush=True)
    return rows


def profile_steps(gpu) -> dict:
    """Each entry point's GPU time in one training step of the MLP (batch
    128, SGD) and of the example's CNN (batch 64, Adam), from timestamp
    queries, after a warm-up step."""
    x, y, _ = mnist_data()
    networks = {
        "MLP 784-128-10, batch 128": (lambda: [Dense(128), ReLU(), Dense(10), Softmax()], 784, 128, SGD(0.1)),
        "CNN, batch 64": (lambda: [Conv2D(32, 5), ReLU(), MaxPool2D(2), Conv2D(64, 5), ReLU(), MaxPool2D(2),
                                   Flatten(), Dense(256), ReLU(), Dense(10), Softmax()], (1, 28, 28), 64, Adam(1e-3)),
    }
    results = {}
    for name, (layers, shape, batch, optimizer) in networks.items():
        model = Model(layers(), input_size=shape, device="gpu", seed=0)
        xb, yb = x[:batch].reshape(batch, *((shape,) if isinstance(shape, int) else shape)), y[:batch]
        model.fit(xb, yb, loss=CategoricalCrossEntropy(), optimizer=optimizer, epochs=1, batch_size=batch)
        with gpu.profile() as profile:
            model.fit(xb, yb, epochs=1, batch_size=batch)
        times = profile.times()
        total = sum(times.values())
        results[name] = {"total_ms": total * 1e3, "by_entry_ms": {k: v * 1e3 for k, v in times.items()}}
        print(f"  {name}: {total * 1e3:.3f} ms of GPU time in {len(profile.entries)} dispatches")
        for entry, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
            print(f"    {entry:20s} {seconds * 1e3:9.3f} ms  {100 * seconds / total:5.1f}%")
    return results


def bench_epoch(batch: int) -> dict:
    """Two epochs in one fit; the second is timed and counted (the first
    compiles pipelines and uploads the data)."""
    x, y, source = mnist_data()
    model = Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device="gpu", seed=0)
    marks = []

    def mark(epoch, logs):
        marks.append((time.perf_counter(), model.device.stats(), logs))

    model.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=SGD(0.1, momentum=0.9), batch_size=batch,
              epochs=2, callbacks=[mark])
    (t0, before, _), (t1, after, logs) = marks
    steps = -(-len(x) // batch)
    delta = {k: after[k] - before[k] for k in after}
    result = {
        "data": source, "batch": batch, "steps": steps, "seconds": t1 - t0,
        "loss": logs["loss"], "accuracy": logs["accuracy"],
        "per_step": {k: delta[k] / steps for k in ("submits", "readbacks", "bytes_read_back", "dispatches")},
        "buffers_created": delta["buffers_created"],
    }
    per = result["per_step"]
    print(f"  {source}, batch {batch}: {t1 - t0:.2f} s for {steps} steps ({(t1 - t0) / steps * 1e3:.2f} ms a step), "
          f"loss {logs['loss']:.4f}, accuracy {logs['accuracy']:.4f}")
    print(f"  per step: {per['submits']:.3f} submits, {per['readbacks']:.4f} readbacks, "
          f"{per['bytes_read_back']:.3f} bytes read back, {per['dispatches']:.1f} dispatches; "
          f"buffers created in the epoch: {delta['buffers_created']}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epoch-batch", type=int, default=128)
    parser.add_argument("--profile", action="store_true", help="per-kernel GPU time of a training step")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    gpu = select_backend("gpu")
    subgroups = f"full subgroups of {gpu.shape.subgroup_size}" if gpu.shape.subgroup_size else "no subgroup kernel"
    print(f"device: {gpu.name}; the matmul table sizes it as {gpu.shape.workgroups} workgroups, {subgroups}")
    results = {"device": gpu.name, "workgroups": gpu.shape.workgroups, "subgroup_size": gpu.shape.subgroup_size}
    if args.profile:
        print("GPU time by entry point, one training step:")
        results["profile"] = profile_steps(gpu)
    print("matmul (the strategy the table picks, and the alternatives in the same run):")
    results["matmul"] = bench_matmul(gpu, args.repeats)
    print("training epoch, 784-128-10 MLP, SGD(0.1, momentum=0.9):")
    results["epoch"] = bench_epoch(args.epoch_batch)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
