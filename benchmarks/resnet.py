"""A training epoch of the Fashion-MNIST residual network (the one of
``examples/mnist/main.py --model resnet``) against the same network in
PyTorch, and where our epoch's time goes.

    python benchmarks/resnet.py [--images 60000] [--rounds 1] [--profile-images 6000] [--gpu]
        [--json results.json]

Both networks start from the same weights (the example's PyTorch twin) and
train one epoch with Adam at batch 128 on the same images, alternating
round by round; the table gives each one's seconds (median over rounds)
and the ratio. Then one epoch on --profile-images images with every
operation of our numpy backend timed, grouped by family (the products,
im2col, col2im, the reorderings, normalization, ...). ``--gpu`` times
``device="gpu"`` too (slow on a software adapter: give it fewer images).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import intricate_py  # noqa: E402
from op_times import alternating, load_example, operation_times  # noqa: E402
from intricate_py.datasets import load_fashion_mnist  # noqa: E402
from intricate_py.losses import CategoricalCrossEntropy  # noqa: E402
from intricate_py.optimizers import Adam  # noqa: E402

BATCH = 128

#: operation families, by the start of the operation's name
FAMILIES = [("matmul", "products (matmul)"), ("im2col", "im2col"), ("col2im", "col2im"),
            ("to_channels", "reorderings (to_channels_first/last)"), ("batch_norm", "batch normalization"),
            ("activation", "activations"), ("sum_", "bias and channel sums"), ("add", "additions"),
            ("adam", "optimizer"), ("loss", "loss"), ("softmax", "softmax"), ("avgpool", "pooling")]


def images(count: int) -> tuple[np.ndarray, np.ndarray]:
    (x, y), _ = load_fashion_mnist()
    return (x[:count].astype(np.float32) / 255).reshape(-1, 1, 28, 28), y[:count].astype(np.int64)


def our_epoch(model, x, y) -> float:
    start = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)
    return time.perf_counter() - start


def torch_epoch(twin, optimizer, x, y) -> float:
    import torch

    modules, forward = twin
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    start = time.perf_counter()
    modules.train()
    for batch in torch.randperm(len(x)).split(BATCH):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(forward(xs[batch]), ys[batch]).backward()
        optimizer.step()
    return time.perf_counter() - start


def profile(model, x, y) -> dict[str, float]:
    """Seconds of each operation family in one epoch, every backend
    operation timed where the layers call it."""
    return operation_times(model.device, FAMILIES, lambda: our_epoch(model, x, y), "whole epoch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile-images", type=int, default=6000)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    mnist = load_example("mnist")
    x, y = images(args.images)
    devices = ["cpu", "gpu"] if args.gpu else ["cpu"]
    models = {}
    for device in devices:
        models[device] = mnist.residual_network(device, seed=0)
        models[device].compile(optimizer=Adam(2e-3), loss=CategoricalCrossEntropy())
    twin = mnist.torch_twin(models["cpu"])
    optimizer = torch.optim.Adam(twin[0].parameters(), 2e-3)
    print(f"intricate-py {intricate_py.__version__}, PyTorch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}, Python {platform.python_version()}; {len(x)} images, batch {BATCH}, "
          f"{args.rounds} round(s)")
    runs = {"PyTorch CPU": lambda: torch_epoch(twin, optimizer, x, y)}
    runs.update({f"intricate-py {d}": lambda d=d: our_epoch(models[d], x, y) for d in devices})
    times = alternating(runs, args.rounds, lambda r, label, seconds: print(
        f"  round {r + 1}: {label} {seconds:.1f} s", flush=True))
    medians = {label: statistics.median(values) for label, values in times.items()}
    print(f"\n{'':<20} {'s/epoch':>8} {'/ PyTorch':>10}")
    for label, seconds in medians.items():
        print(f"{label:<20} {seconds:8.1f} {seconds / medians['PyTorch CPU']:10.2f}")

    px, py = images(args.profile_images)
    spent = profile(models["cpu"], px, py)
    whole = spent.pop("whole epoch")
    print(f"\nwhere an epoch of {len(px)} images goes on the CPU ({whole:.2f} s):")
    for label, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {label:<40} {seconds:7.2f} s  {seconds / whole:6.1%}")
    rest = whole - sum(spent.values())
    print(f"  {'outside the operations (Python, plan)':<40} {rest:7.2f} s  {rest / whole:6.1%}")
    if args.json:
        args.json.write_text(json.dumps({"images": len(x), "rounds": args.rounds, "seconds": times,
                                         "medians": medians, "profile_images": len(px), "profile_epoch": whole,
                                         "profile": spent, "numpy": np.__version__, "torch": torch.__version__},
                                        indent=1))


if __name__ == "__main__":
    main()
