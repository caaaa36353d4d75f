"""A training step of the character-level transformer of
``examples/charlm/main.py`` against the same network in PyTorch CPU, and
where our step's time goes.

    python benchmarks/charlm.py [--steps 20] [--rounds 3] [--device cpu|gpu|both] [--width 64]
        [--heads 4] [--layers 2] [--context 64] [--batch-size 32] [--vocabulary 97] [--json results.json]

Both networks start from the same weights (the example's PyTorch twin) and
take --steps training steps (AdamW, global clipping at norm 1, batches of
random ids) a round, alternating round by round after one warm-up round
each; the table gives the median time a step over rounds and the ratio.
Then --steps more steps of ours on the CPU with every operation of the
numpy backend timed, grouped by family (the products, GELU, attention,
layer normalization, ...). ``--device gpu`` (or ``both``) times
``device="gpu"`` too; on this project's machine that is a software
adapter, so only a hardware GPU's numbers say anything about the GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import intricate_py  # noqa: E402
from op_times import alternating, load_example, operation_times  # noqa: E402
from intricate_py.losses import CategoricalCrossEntropy  # noqa: E402
from intricate_py.optimizers import AdamW  # noqa: E402

#: operation families, by the start of the operation's name
FAMILIES = [("matmul", "products (matmul)"), ("activation", "activations (GELU), forward and backward"),
            ("attention", "attention (scores, softmax, weighted sums)"), ("layer_norm", "layer normalization"),
            ("embedding", "embedding lookups and their gradients"), ("loss", "loss (softmax cross-entropy)"),
            ("adam", "optimizer"), ("clip", "gradient clipping"), ("sum_", "clipping norms, bias and position sums"),
            ("add", "additions"), ("broadcast", "position vectors"), ("copy", "copies"), ("take_rows", "batches")]


def our_steps(model, x, y, batch: int) -> float:
    """Seconds a step of one fit over x, y (shuffle=False: every step a full batch)."""
    start = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=batch, shuffle=False, verbose=0)
    return (time.perf_counter() - start) / (len(x) // batch)


def torch_steps(twin, optimizer, x, y, batch: int) -> float:
    import torch

    xs, ys = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
    twin.training = True
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        twin.step(optimizer, xs[i : i + batch], ys[i : i + batch], 1e-3)
    return (time.perf_counter() - start) / (len(x) // batch)


def profile(model, x, y, batch: int) -> dict[str, float]:
    """Seconds of each operation family in one fit over x, y, every backend
    operation timed where the layers call it."""
    return operation_times(model.device, FAMILIES, lambda: our_steps(model, x, y, batch) * (len(x) // batch), "whole fit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu", "both"])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocabulary", type=int, default=97,
                        help="ids in the random batches (the recorded runs took 97; the example at its defaults has 100)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    charlm = load_example("charlm")
    devices = ["cpu", "gpu"] if args.device == "both" else [args.device]
    rng = np.random.default_rng(0)
    batch, n = args.batch_size, args.batch_size * args.steps
    x = rng.integers(0, args.vocabulary, (n, args.context)).astype(np.int32)
    y = rng.integers(0, args.vocabulary, (n, args.context)).astype(np.int32)
    models = {}
    for device in devices:
        recipe = SimpleNamespace(width=args.width, heads=args.heads, layers=args.layers, context=args.context,
                                 dropout=0.0, device=device, seed=0)
        models[device] = charlm.build_model(args.vocabulary, recipe)
        models[device].compile(optimizer=AdamW(1e-3, global_clipnorm=1.0),
                               loss=CategoricalCrossEntropy(from_logits=True))
    twin = charlm.TorchTwin(next(iter(models.values())))
    optimizer = twin.optimizer(0.01)
    shape = (f"width {args.width}, {args.heads} heads, {args.layers} blocks, context {args.context}, batch {batch}, "
             f"{args.vocabulary} ids, {sum(p.numel() for p in twin.parameters()):,} parameters")
    print(f"intricate-py {intricate_py.__version__}, PyTorch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}, Python {platform.python_version()}; {shape}; {args.steps} steps a round, "
          f"{args.rounds} round(s)")
    runs = {"PyTorch CPU": lambda: torch_steps(twin, optimizer, x, y, batch)}
    runs.update({f"intricate-py {d}": lambda d=d: our_steps(models[d], x, y, batch) for d in devices})
    for run in runs.values():  # warm-up: plans, buffers, PyTorch's first allocations
        run()
    times = alternating(runs, args.rounds, lambda r, label, seconds: print(
        f"  round {r + 1}: {label} {1000 * seconds:.1f} ms a step", flush=True))
    medians = {label: statistics.median(values) for label, values in times.items()}
    print(f"\n{'':<20} {'ms/step':>8} {'/ PyTorch':>10}")
    for label, seconds in medians.items():
        print(f"{label:<20} {1000 * seconds:8.1f} {seconds / medians['PyTorch CPU']:10.2f}")

    spent: dict[str, float] = {}
    if "cpu" in models:
        spent = profile(models["cpu"], x, y, batch)
        whole = spent.pop("whole fit")
        print(f"\nwhere {args.steps} steps go on the CPU ({whole:.2f} s):")
        for label, seconds in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  {label:<45} {seconds:7.3f} s  {seconds / whole:6.1%}")
        rest = whole - sum(spent.values())
        print(f"  {'outside the operations (Python, plan)':<45} {rest:7.3f} s  {rest / whole:6.1%}")
        spent["whole fit"] = whole
    if args.json:
        args.json.write_text(json.dumps({"shape": shape, "steps": args.steps, "rounds": args.rounds,
                                         "seconds_a_step": times, "medians": medians, "profile": spent,
                                         "numpy": np.__version__, "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
