"""GPU kernel benchmark: matmul GFLOP/s and a training epoch on device="gpu".

    python benchmarks/gpu.py [--repeats 5] [--epoch-batch 128] [--json out.json]

Times the matmul kernel at 256, 512 and 1024 square and at the shapes of the
784-128-10 MLP's layers (forward x·W, backward xᵀ·dY and dY·Wᵀ), next to a
naive one-output-per-invocation kernel compiled on the same device (software
adapters' speed drifts with the host's load: compare the two, measured in
the same run); then the second epoch of a Fashion-MNIST fit (synthetic data of
the same shape if the Debian package is missing) with the device counters per
step. Medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from intricate_py import Model  # noqa: E402
from intricate_py.backends import select_backend  # noqa: E402
from intricate_py.layers import Dense, ReLU, Softmax  # noqa: E402
from intricate_py.losses import CategoricalCrossEntropy  # noqa: E402
from intricate_py.optimizers import SGD  # noqa: E402
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


def median_seconds(run, repeats: int, sync) -> float:
    run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def bench_matmul(gpu, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    cases = [("square", s, s, s, False, False) for s in (256, 512, 1024)] + [
        ("x·W1 (batch 128)", 128, 784, 128, False, False),
        ("xᵀ·dY1 (dW1)", 784, 128, 128, True, False),
        ("dY2·W2ᵀ (dx2)", 128, 10, 128, False, True),
        ("x·W2", 128, 128, 10, False, False),
        ("x·W1 (batch 32)", 32, 784, 128, False, False),
    ]
    rows = []
    for name, m, k, n, ta, tb in cases:
        a = gpu.from_numpy(rng.normal(size=(k, m) if ta else (m, k)).astype(np.float32))
        b = gpu.from_numpy(rng.normal(size=(n, k) if tb else (k, n)).astype(np.float32))
        out = gpu.empty((m, n))
        reps = max(1, int(5e8 / (2 * m * n * k)))

        def tiled():
            for _ in range(reps):
                gpu.matmul(a, b, out, ta, tb)

        seconds = median_seconds(tiled, repeats, gpu.synchronize) / reps
        row = {"case": name, "m": m, "k": k, "n": n, "gflops": 2 * m * n * k / seconds / 1e9,
               "ms": seconds * 1e3}
        if not (ta or tb):
            def naive():
                for _ in range(reps):
                    naive_matmul(gpu, a, b, out, m, k, n)

            naive_s = median_seconds(naive, max(1, repeats // 2), gpu.synchronize) / reps
            row["naive_gflops"] = 2 * m * n * k / naive_s / 1e9
        rows.append(row)
        print(f"  {name:22s} {m:5d}x{k:5d}x{n:5d}  {row['gflops']:6.2f} GFLOP/s"
              + (f"   naive {row['naive_gflops']:5.2f}" if "naive_gflops" in row else ""), flush=True)
    return rows


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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    gpu = select_backend("gpu")
    print(f"device: {gpu.name}")
    print("matmul:")
    matmul = bench_matmul(gpu, args.repeats)
    print("training epoch, 784-128-10 MLP, SGD(0.1, momentum=0.9):")
    epoch = bench_epoch(args.epoch_batch)
    if args.json:
        args.json.write_text(json.dumps({"device": gpu.name, "matmul": matmul, "epoch": epoch}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
