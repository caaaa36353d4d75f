"""256 small networks trained at once on the two moons: zsmallnet's advice
(new random states, hand-tuned learning rates, 7, 15 or 31 hidden units)
as three populations, one per width, each member with its own seed and
learning rate. The best member by validation loss is exported to C,
compiled and timed per sample; a plot shows every member's validation loss
against its learning rate.

    python examples/population/main.py [--members 256] [--epochs 200] [--device auto|cpu|gpu]
        [--seed 0] [--out DIR] [--cc cc]

Writes population.png (with the ``plots`` extra), the best network as
moons.c and moons.h, and population.safetensors (the widest population, in
one file) to --out.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from intricate_py import Model, Population
from intricate_py.callbacks import EarlyStopping
from intricate_py.layers import Dense, TanH
from intricate_py.losses import CategoricalCrossEntropy
from intricate_py.optimizers import Adam

WIDTHS = (7, 15, 31)

HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "moons.h"

/* harness INPUTS OUTPUTS N: the outputs of N samples, and the ns a sample one call at a time */
int main(int argc, char **argv)
{
    size_t n = (size_t)atol(argv[3]), s, r, reps = 200;
    float *x = malloc(n * MOONS_INPUTS * sizeof *x), *y = malloc(n * MOONS_OUTPUTS * sizeof *y);
    FILE *f = fopen(argv[1], "rb");
    struct timespec a, b;
    if (argc != 4 || !f || fread(x, sizeof *x, n * MOONS_INPUTS, f) != n * MOONS_INPUTS)
        return 2;
    fclose(f);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (r = 0; r < reps; r++)
        for (s = 0; s < n; s++)
            moons(x + s * MOONS_INPUTS, y + s * MOONS_OUTPUTS);
    clock_gettime(CLOCK_MONOTONIC, &b);
    f = fopen(argv[2], "wb");
    fwrite(y, sizeof *y, n * MOONS_OUTPUTS, f);
    fclose(f);
    printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / reps / n);
    return 0;
}
"""


def two_moons(n: int, rng: np.random.Generator, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of two interleaving half circles with Gaussian noise, and their labels (0 or 1)."""
    labels = rng.integers(0, 2, n)
    angle = rng.uniform(0, np.pi, n)
    x = np.where(labels[:, None] == 0, np.stack([np.cos(angle), np.sin(angle)], 1),
                 np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], 1))
    x = x + rng.normal(0, noise, x.shape)
    return ((x - [0.5, 0.25]) / [0.9, 0.5]).astype(np.float32), labels


def network(width: int, device: str):
    def build() -> Model:
        model = Model([Dense(width), TanH(), Dense(2)], input_size=2, device=device)
        model.compile(loss=CategoricalCrossEntropy(from_logits=True))
        return model
    return build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=256, help="networks in all, split among the widths")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--cc", default="cc", help="the C compiler that builds the exported network")
    args = parser.parse_args(argv)
    if args.members < len(WIDTHS):
        parser.error(f"expected --members of at least {len(WIDTHS)}. Received: {args.members}")
    rng = np.random.default_rng(args.seed)
    (x, y), (xv, yv), (xt, yt) = (two_moons(n, rng) for n in (1000, 500, 1000))
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []  # (width, member, learning rate, validation loss, validation accuracy)
    populations = {}
    start = time.perf_counter()
    for k, width in enumerate(WIDTHS):
        size = args.members // len(WIDTHS) + (k < args.members % len(WIDTHS))
        rates = np.geomspace(1e-3, 1.0, size)
        population = populations[width] = Population(network(width, args.device), size, seed=args.seed + 1000 * k)
        population.fit(x, y, optimizer=Adam(rates), epochs=args.epochs, batch_size=100, validation_data=(xv, yv),
                       callbacks=[EarlyStopping(patience=20, restore_best_weights=True)])
        losses, accuracies = population.scores("val_loss"), population.scores("val_accuracy")
        rows += [(width, i, rates[i], losses[i], accuracies[i]) for i in range(size)]
    seconds = time.perf_counter() - start
    print(f"{args.members} networks trained in {seconds:.1f} s ({args.epochs} epochs at most, early stopping), "
          f"on {populations[WIDTHS[0]].backend.base.name}")

    trained = [r for r in rows if np.isfinite(r[3])]
    print(f"{len(rows) - len(trained)} diverged before their first good epoch")
    width, member, rate, loss, accuracy = min(trained, key=lambda r: r[3])
    best = populations[width][member]
    test = best.evaluate(xt, yt)
    print(f"best: width {width}, learning rate {rate:.3g} (member {member}): validation loss {loss:.4f}, "
          f"accuracy {accuracy:.3f}; test accuracy {test['accuracy']:.3f}")
    for w in WIDTHS:
        losses = [r[3] for r in trained if r[0] == w]
        print(f"  width {w:2d}: median validation loss {np.median(losses):.4f}, best {min(losses):.4f}")
    populations[WIDTHS[-1]].save(args.out / "population.safetensors")

    files = best.export(args.out, format="c", name="moons")
    print("exported", ", ".join(str(f) for f in files))
    time_c(args, best, xt)
    plot(rows, args.out / "population.png")
    return 0


def time_c(args, model: Model, x: np.ndarray) -> None:
    """Compile the exported network with a small harness, check its outputs
    against predict and print the time a sample takes."""
    if shutil.which(args.cc) is None:
        print(f"no C compiler {args.cc!r}: the exported C is not timed")
        return
    out = args.out
    (out / "harness.c").write_text(HARNESS)
    program = out / "moons_harness"
    subprocess.run([args.cc, "-O2", "-std=c99", "-o", str(program), str(out / "harness.c"), str(out / "moons.c"),
                    "-lm"], check=True)
    x.astype(np.float32).tofile(out / "inputs.bin")
    done = subprocess.run([str(program), str(out / "inputs.bin"), str(out / "outputs.bin"), str(len(x))],
                          check=True, capture_output=True, text=True)
    outputs = np.fromfile(out / "outputs.bin", np.float32).reshape(len(x), -1)
    difference = float(np.abs(outputs - model.predict(x)).max())
    print(f"the C network: {float(done.stdout):.1f} ns a sample (one call each), largest difference from "
          f"predict {difference:.2g}")


def plot(rows: list, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("no matplotlib (the plots extra): no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for width in WIDTHS:
        mine = [r for r in rows if r[0] == width and np.isfinite(r[3])]
        ax.scatter([r[2] for r in mine], [r[3] for r in mine], s=10, label=f"{width} hidden units")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate (Adam)")
    ax.set_ylabel("validation loss (its best epoch)")
    ax.set_title("256 networks trained as three populations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
