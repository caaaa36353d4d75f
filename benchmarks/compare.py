"""intricate-py against PyTorch (CPU) and a hand-written numpy loop.

    python benchmarks/compare.py [--rounds 5] [--gpu-rounds 1] [--json results.json] [--no-gpu] [--heavy]

Same data, architecture, batch size and optimizer for each, interleaved
round by round (so drifts in the machine's speed hit all alike), medians
reported with ratios:

  a. one Fashion-MNIST epoch of a 784-128-10 ReLU/softmax MLP with SGD(0.01),
     at batch 32 and 128 (synthetic data of that shape without the dataset);
  b. 10000 full-batch XoR steps (2-3-1 TanH, mean squared error, SGD(0.1));
  c. predicting one sample, with the XoR network and with the MNIST network;
  d. every device, side by side in one run: intricate-py on the CPU and on
     device="gpu" where wgpu finds an adapter, PyTorch CUDA (eager, fp32, TF32
     off) where torch sees a CUDA device: the XoR step, MLP epochs at batch 32
     and 128, one-sample predictions; on a hardware GPU (or with --heavy) also
     batch 1024, the 784-1024-1024-10 MLP at batch 256, the CNN epoch and
     square fp32 products of 2048 and 4096; with the ratio of our GPU to
     PyTorch CUDA, which of our devices is faster for each workload (the
     crossover), and the device counters per step;
  e. one epoch of the example's CNN (Conv 5x5 32 -> MaxPool 2 -> Conv 5x5 64 ->
     MaxPool 2 -> Dense 256 -> Dense 10, Adam, batch 64) against PyTorch
     (--cnn-rounds of it, 1 by default; not on a software GPU adapter).

PyTorch is optional (the `bench` extra); without it its column stays empty.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import intricate_py  # noqa: E402
from intricate_py import Model  # noqa: E402
from intricate_py.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Softmax, TanH  # noqa: E402
from intricate_py.losses import CategoricalCrossEntropy, MeanSquared  # noqa: E402
from intricate_py.optimizers import SGD, Adam  # noqa: E402
from mnist_data import mnist_data  # noqa: E402 (this folder)

try:
    import torch
except ImportError:  # the optional reference
    torch = None

MNIST_LR, XOR_LR, CNN_LR, CNN_BATCH, WIDE_BATCH = 0.01, 0.1, 1e-3, 64, 256
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def initial_mlp(seed=0):
    """784-128-10 weights, shared by all three implementations."""
    model = Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device="cpu", seed=seed)
    return [(layer.weights.copy(), layer.biases.copy()) for layer in model.layers[::2]]


# ---------------------------------------------------------------- intricate-py
class Intricate:
    name = "intricate-py"

    def __init__(self, device="cpu"):
        self.device = device

    def mnist_epoch(self, x, y, batch):
        if not hasattr(self, "mlp"):
            self.mlp = Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device=self.device, seed=0)
            self.mlp_opt = SGD(MNIST_LR)
        start = self.mlp.device.stats()
        t = time.perf_counter()
        self.mlp.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=self.mlp_opt, epochs=1, batch_size=batch)
        return time.perf_counter() - t, _per_step(start, self.mlp.device.stats(), -(-len(x) // batch))

    def cnn_epoch(self, x, y):
        if not hasattr(self, "cnn"):
            self.cnn = Model([Conv2D(32, 5), ReLU(), MaxPool2D(2), Conv2D(64, 5), ReLU(), MaxPool2D(2), Flatten(),
                              Dense(256), ReLU(), Dense(10), Softmax()], input_size=(1, 28, 28), device=self.device, seed=0)
            self.cnn_opt = Adam(CNN_LR)
        t = time.perf_counter()
        self.cnn.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=self.cnn_opt, epochs=1, batch_size=CNN_BATCH)
        return time.perf_counter() - t

    def wide_epoch(self, x, y):
        if not hasattr(self, "wide"):
            self.wide = Model([Dense(1024), ReLU(), Dense(1024), ReLU(), Dense(10), Softmax()], input_size=784,
                              device=self.device, seed=0)
            self.wide_opt = SGD(MNIST_LR)
        t = time.perf_counter()
        self.wide.fit(x, y, loss=CategoricalCrossEntropy(), optimizer=self.wide_opt, epochs=1, batch_size=WIDE_BATCH)
        return time.perf_counter() - t

    def matmul_tflops(self, size, repeats=5):
        backend = intricate_py.select_backend(self.device)
        a = backend.from_numpy(np.random.default_rng(0).normal(size=(size, size)).astype(np.float32))
        out = backend.empty((size, size))
        backend.matmul(a, a, out)
        backend.synchronize()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            backend.matmul(a, a, out)
            backend.synchronize()
            times.append(time.perf_counter() - t)
        return 2 * size**3 / statistics.median(times) / 1e12

    def xor_steps(self, steps):
        model = Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=self.device, seed=0)
        start = model.device.stats()
        t = time.perf_counter()
        model.fit(XOR_X, XOR_Y, loss=MeanSquared(), optimizer=SGD(XOR_LR), epochs=steps, batch_size=4)
        return time.perf_counter() - t, _per_step(start, model.device.stats(), steps)

    def predictor(self, which):
        if which == "xor":
            model = Model([Dense(3), TanH(), Dense(1), TanH()], input_size=2, device=self.device, seed=0)
            sample = XOR_X[1:2]
        else:
            model = Model([Dense(128), ReLU(), Dense(10), Softmax()], input_size=784, device=self.device, seed=0)
            sample = np.random.default_rng(0).random((1, 784), np.float32)
        return lambda: model.predict(sample)


def _per_step(before, after, steps):
    return {k: (after[k] - before[k]) / steps for k in ("submits", "readbacks", "bytes_read_back", "dispatches")}


# ---------------------------------------------------------------- numpy by hand
class HandNumpy:
    """The floor for any numpy implementation: the same maths in one loop,
    float32 throughout, preallocated buffers, matmul with out=."""

    name = "numpy by hand"

    def mnist_epoch(self, x, y, batch):
        if not hasattr(self, "w"):
            (w1, b1), (w2, b2) = initial_mlp()
            self.w = [w1, b1, w2, b2]
            self.rng = np.random.default_rng(1)
            self.onehot = np.eye(10, dtype=np.float32)[y]
        W1, b1, W2, b2 = self.w
        t = time.perf_counter()
        n = len(x)
        order = self.rng.permutation(n)
        h_buf, z_buf = np.empty((batch, 128), np.float32), np.empty((batch, 10), np.float32)
        dW1, dW2 = np.empty_like(W1), np.empty_like(W2)
        dh_buf = np.empty((batch, 128), np.float32)
        lr = np.float32(MNIST_LR)
        total = 0.0
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            xb, tb = x[idx], self.onehot[idx]
            m = len(idx)
            h, z, dh = h_buf[:m], z_buf[:m], dh_buf[:m]
            np.matmul(xb, W1, out=h)
            h += b1
            np.maximum(h, 0, out=h)
            np.matmul(h, W2, out=z)
            z += b2
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            total -= float(np.sum(tb * np.log(np.maximum(z, 1e-7))))
            z -= tb
            z *= np.float32(1 / m)  # dL/dlogits = (p - t) / m
            np.matmul(h.T, z, out=dW2)
            db2 = z.sum(axis=0)
            np.matmul(z, W2.T, out=dh)
            dh *= h > 0
            np.matmul(xb.T, dh, out=dW1)
            db1 = dh.sum(axis=0)
            dW1 *= lr
            W1 -= dW1
            b1 -= lr * db1
            dW2 *= lr
            W2 -= dW2
            b2 -= lr * db2
        return time.perf_counter() - t, None

    def xor_steps(self, steps):
        rng = np.random.default_rng(0)
        W1 = rng.uniform(-1, 1, (2, 3)).astype(np.float32)
        b1 = np.zeros(3, np.float32)
        W2 = rng.uniform(-1, 1, (3, 1)).astype(np.float32)
        b2 = np.zeros(1, np.float32)
        x, y, lr = XOR_X, XOR_Y, np.float32(XOR_LR)
        t = time.perf_counter()
        for _ in range(steps):
            h = np.tanh(x @ W1 + b1)
            p = np.tanh(h @ W2 + b2)
            d = p - y
            loss = float(np.mean(d * d))  # noqa: F841 (the loss an epoch reports)
            g2 = d * (2 / d.size) * (1 - p * p)
            g1 = (g2 @ W2.T) * (1 - h * h)
            W2 -= lr * (h.T @ g2)
            b2 -= lr * g2.sum(axis=0)
            W1 -= lr * (x.T @ g1)
            b1 -= lr * g1.sum(axis=0)
        return time.perf_counter() - t, None

    def predictor(self, which):
        if which == "xor":
            rng = np.random.default_rng(0)
            W1, b1 = rng.uniform(-1, 1, (2, 3)).astype(np.float32), np.zeros(3, np.float32)
            W2, b2 = rng.uniform(-1, 1, (3, 1)).astype(np.float32), np.zeros(1, np.float32)
            sample = XOR_X[1:2]
            return lambda: np.tanh(np.tanh(sample @ W1 + b1) @ W2 + b2)
        (W1, b1), (W2, b2) = initial_mlp()
        sample = np.random.default_rng(0).random((1, 784), np.float32)

        def forward():
            z = np.maximum(sample @ W1 + b1, 0) @ W2 + b2
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

        return forward


# ---------------------------------------------------------------- PyTorch
class Torch:
    """Idiomatic PyTorch, on the CPU or on a CUDA device (eager, fp32, TF32 off)."""

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        self.name = "PyTorch CUDA" if self.device.type == "cuda" else "PyTorch CPU"

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _tensors(self, *arrays):
        return [torch.from_numpy(a).to(self.device) for a in arrays]

    def mnist_epoch(self, x, y, batch):
        if not hasattr(self, "net"):
            (w1, b1), (w2, b2) = initial_mlp()
            self.net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
            with torch.no_grad():
                for layer, (w, b) in zip(self.net[::2], ((w1, b1), (w2, b2))):
                    layer.weight.copy_(torch.from_numpy(w.T))
                    layer.bias.copy_(torch.from_numpy(b))
            self.net.to(self.device)
            self.opt = torch.optim.SGD(self.net.parameters(), lr=MNIST_LR)
            self.x, self.y = self._tensors(x, y)
        return self._epoch(self.net, self.opt, self.x, self.y, batch), None

    def wide_epoch(self, x, y):
        if not hasattr(self, "wide"):
            nn = torch.nn
            self.wide = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                                      nn.Linear(1024, 10)).to(self.device)
            self.wide_opt = torch.optim.SGD(self.wide.parameters(), lr=MNIST_LR)
            self.wx, self.wy = self._tensors(x, y)
        return self._epoch(self.wide, self.wide_opt, self.wx, self.wy, WIDE_BATCH)

    def _epoch(self, net, opt, xs, ys, batch) -> float:
        """Seconds for one shuffled epoch of idiomatic PyTorch training."""
        self._sync()
        t = time.perf_counter()
        order = torch.randperm(len(xs), device=self.device)
        for s in range(0, len(xs), batch):
            idx = order[s : s + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xs[idx]), ys[idx]).backward()
            opt.step()
        self._sync()
        return time.perf_counter() - t

    def cnn_epoch(self, x, y):
        if not hasattr(self, "cnn"):
            nn = torch.nn
            self.cnn = nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(),
                                     nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 256), nn.ReLU(),
                                     nn.Linear(256, 10)).to(self.device)
            self.cnn_opt = torch.optim.Adam(self.cnn.parameters(), lr=CNN_LR)
            self.cx, self.cy = self._tensors(x, y)
        return self._epoch(self.cnn, self.cnn_opt, self.cx, self.cy, CNN_BATCH)

    def xor_steps(self, steps):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1),
                                  torch.nn.Tanh()).to(self.device)
        opt = torch.optim.SGD(net.parameters(), lr=XOR_LR)
        x, y = self._tensors(XOR_X, XOR_Y)
        self._sync()
        t = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            opt.step()
        self._sync()
        return time.perf_counter() - t, None

    def predictor(self, which):
        if which == "xor":
            net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1), torch.nn.Tanh())
            sample = torch.from_numpy(XOR_X[1:2])
        else:
            net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
                                      torch.nn.Softmax(dim=1))
            sample = torch.rand(1, 784)
        net, sample = net.to(self.device), sample.to(self.device)

        def forward():  # .cpu(): the result reaches the host, as predict's does
            with torch.no_grad():
                return net(sample).cpu().numpy()

        return forward

    def matmul_tflops(self, size, repeats=5):
        torch.backends.cuda.matmul.allow_tf32 = False
        a = torch.randn(size, size, device=self.device)
        out = a @ a
        self._sync()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            torch.matmul(a, a, out=out)
            self._sync()
            times.append(time.perf_counter() - t)
        return 2 * size**3 / statistics.median(times) / 1e12


# ---------------------------------------------------------------- running
def latency(fn, calls=2000) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def run(impls, rounds, x, y, xor_steps, predict_calls):
    """{workload: {impl: [seconds per unit, ...]}}, interleaved by round."""
    times: dict[str, dict[str, list[float]]] = {}
    counters: dict[str, dict] = {}
    predictors = {(impl.name, which): impl.predictor(which) for impl in impls for which in ("xor", "mnist")}
    for r in range(rounds):
        for impl in impls if r % 2 == 0 else impls[::-1]:
            for batch in (32, 128):
                seconds, per_step = impl.mnist_epoch(x, y, batch)
                times.setdefault(f"MNIST epoch, batch {batch} (s)", {}).setdefault(impl.name, []).append(seconds)
                if per_step:
                    counters[f"{impl.name}: MNIST epoch, batch {batch}"] = per_step
            seconds, per_step = impl.xor_steps(xor_steps)
            times.setdefault("XoR step (µs)", {}).setdefault(impl.name, []).append(seconds / xor_steps * 1e6)
            if per_step:
                counters[f"{impl.name}: XoR step"] = per_step
            for which, label in (("xor", "predict 1 sample, XoR (µs)"), ("mnist", "predict 1 sample, MNIST MLP (µs)")):
                t = latency(predictors[(impl.name, which)], predict_calls)
                times.setdefault(label, {}).setdefault(impl.name, []).append(t * 1e6)
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return times, counters


def run_cnn(impls, rounds, x, y):
    """{workload: {impl: [seconds, ...]}} for the CNN epoch, interleaved by round."""
    images = x.reshape(len(x), 1, 28, 28)
    times: dict[str, dict[str, list[float]]] = {}
    for r in range(rounds):
        for impl in impls if r % 2 == 0 else impls[::-1]:
            if hasattr(impl, "cnn_epoch"):
                seconds = impl.cnn_epoch(images, y)
                times.setdefault(f"CNN epoch, batch {CNN_BATCH} (s)", {}).setdefault(impl.name, []).append(seconds)
        print(f"  CNN round {r + 1}/{rounds} done", flush=True)
    return times


def table(times, columns) -> str:
    lines = ["| workload | " + " | ".join(columns) + " | vs PyTorch | vs numpy by hand |",
             "| --- |" + " ---: |" * (len(columns) + 2)]
    for workload, by_impl in times.items():
        med = {name: statistics.median(v) for name, v in by_impl.items()}
        ours = med.get("intricate-py")
        cells = [f"{med[c]:.4g}" if c in med else "" for c in columns]
        ratio = lambda ref: f"{ours / med[ref]:.2f}x" if ours and ref in med else ""  # noqa: E731
        lines.append(f"| {workload} | " + " | ".join(cells) + f" | {ratio('PyTorch CPU')} | {ratio('numpy by hand')} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- every device
def software_gpu() -> bool:
    return not any(a.is_hardware for a in intricate_py.devices().adapters)


def devices_present():
    """The implementations to run on every device here: intricate-py on the
    CPU and (where wgpu finds an adapter) the GPU, PyTorch on CUDA (where
    torch sees one); and the devices' names."""
    impls, names = [], {}
    cpu = Intricate("cpu")
    cpu.name = "intricate-py cpu"
    impls.append(cpu)
    names["cpu"] = platform.processor() or platform.machine()
    if intricate_py.devices().adapters:
        gpu = Intricate("gpu")
        gpu.name = "intricate-py gpu"
        impls.append(gpu)
        names["gpu (wgpu)"] = intricate_py.select_backend("gpu").name
    if torch is not None and torch.cuda.is_available():
        impls.append(Torch("cuda"))
        names["cuda (PyTorch)"] = torch.cuda.get_device_name()
    return impls, names


def run_devices(impls, rounds, x, y, args, heavy: bool):
    """{workload: {impl: [value, ...]}} on every device, interleaved by round:
    the small workloads where the crossover lies, and with ``heavy`` the large
    ones of issue 11's table."""
    times: dict[str, dict[str, list[float]]] = {}
    counters: dict[str, dict] = {}

    def add(label, impl, value):
        times.setdefault(label, {}).setdefault(impl.name, []).append(value)

    predictors = {(impl.name, w): impl.predictor(w) for impl in impls for w in ("xor", "mnist")}
    images = x.reshape(len(x), 1, 28, 28)
    for r in range(rounds):
        for impl in impls if r % 2 == 0 else impls[::-1]:
            seconds, per_step = impl.xor_steps(args.xor_steps // 10)
            add("XoR step (µs)", impl, seconds / (args.xor_steps // 10) * 1e6)
            if per_step:
                counters[f"{impl.name}: XoR step"] = per_step
            for batch in (32, 128) + ((1024,) if heavy else ()):
                seconds, per_step = impl.mnist_epoch(x, y, batch)
                add(f"MNIST MLP epoch, batch {batch} (s)", impl, seconds)
                if per_step:
                    counters[f"{impl.name}: MNIST epoch, batch {batch}"] = per_step
            for which, label in (("xor", "predict 1 sample, XoR (µs)"), ("mnist", "predict 1 sample, MNIST MLP (µs)")):
                add(label, impl, latency(predictors[(impl.name, which)], args.predict_calls // 10) * 1e6)
            if heavy and impl.name != "intricate-py cpu":
                add(f"wide MLP 784-1024-1024-10 epoch, batch {WIDE_BATCH} (s)", impl, impl.wide_epoch(x, y))
                add(f"CNN epoch, batch {CNN_BATCH} (s)", impl, impl.cnn_epoch(images, y))
                for size in (2048, 4096):
                    add(f"square matmul {size}, fp32 (TFLOP/s)", impl, impl.matmul_tflops(size))
        print(f"  device round {r + 1}/{rounds} done", flush=True)
    return times, counters


def device_table(times, columns) -> str:
    """Medians, our GPU against PyTorch CUDA, and which of our devices is faster."""
    lines = ["| workload | " + " | ".join(columns) + " | ours gpu / PyTorch CUDA | faster here |",
             "| --- |" + " ---: |" * len(columns) + " ---: | --- |"]
    for workload, by_impl in times.items():
        med = {name: statistics.median(v) for name, v in by_impl.items()}
        cells = [f"{med[c]:.4g}" if c in med else "" for c in columns]
        higher_is_better = "TFLOP/s" in workload
        ours, cuda = med.get("intricate-py gpu"), med.get("PyTorch CUDA")
        ratio = f"{(cuda / ours if higher_is_better else ours / cuda):.2f}x" if ours and cuda else ""
        cpu = med.get("intricate-py cpu")
        faster = ""
        if ours and cpu and not higher_is_better:
            faster = "gpu" if ours < cpu else "cpu"
        lines.append(f"| {workload} | " + " | ".join(cells) + f" | {ratio} | {faster} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gpu-rounds", type=int, default=1)
    parser.add_argument("--xor-steps", type=int, default=10000)
    parser.add_argument("--predict-calls", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results.json")
    parser.add_argument("--no-gpu", action="store_true", help="the CPU table only")
    parser.add_argument("--cnn-rounds", type=int, default=1, help="0 leaves the CNN epoch out")
    parser.add_argument("--heavy", action="store_true",
                        help="the large workloads (batch 1024, the wide MLP, the CNN, 4096 products) on a software GPU too")
    args = parser.parse_args(argv)

    x, y, source = mnist_data()
    machine = {
        "python": platform.python_version(), "numpy": np.__version__, "intricate_py": intricate_py.__version__,
        "torch": torch.__version__ if torch else None, "cpu_threads": __import__("os").cpu_count(),
        "platform": platform.platform(), "data": source,
    }
    print(f"data: {source}; python {machine['python']}, numpy {np.__version__}, torch {machine['torch']}")
    impls = [Intricate("cpu"), HandNumpy()] + ([Torch()] if torch else [])
    times, counters = run(impls, args.rounds, x, y, args.xor_steps, args.predict_calls)
    if args.cnn_rounds:
        times.update(run_cnn([impl for impl in impls if hasattr(impl, "cnn_epoch")], args.cnn_rounds, x, y))
    columns = [impl.name for impl in impls]
    print("\n## CPU (medians of %d interleaved rounds)\n" % args.rounds)
    print(table(times, columns))

    device_times, device_counters, device_names = {}, {}, {}
    if not args.no_gpu:
        device_impls, device_names = devices_present()
        if len(device_impls) > 1:
            heavy = args.heavy or "cuda (PyTorch)" in device_names or not software_gpu()
            print("\n## Every device: " + "; ".join(f"{k}: {v}" for k, v in device_names.items()) + "\n")
            device_times, device_counters = run_devices(device_impls, args.gpu_rounds, x, y, args, heavy)
            print(device_table(device_times, [impl.name for impl in device_impls]))
            print("\ncounters per step:")
            for key, per in device_counters.items():
                print(f"  {key}: " + ", ".join(f"{k} {v:.4g}" for k, v in per.items()))

    args.json.write_text(json.dumps({
        "machine": machine, "rounds": args.rounds, "cpu": times, "devices": device_names,
        "device_rounds": args.gpu_rounds, "by_device": device_times, "device_counters_per_step": device_counters,
    }, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
